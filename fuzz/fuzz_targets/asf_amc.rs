//! ASF and AMC readers and forward kinematics on arbitrary text: the input is split at the first
//! `\0` into an ASF and an AMC; errors, never panics.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use traj_data::formats::asf_amc::{parse_amc, parse_asf};

fuzz_target!(|data: &[u8]| {
    let (asf, amc) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b""[..]),
    };
    if let Ok(asf) = parse_asf(asf, Path::new("fuzz.asf")) {
        if let Ok(amc) = parse_amc(amc, Path::new("fuzz.amc"), &asf) {
            let x = asf.forward_kinematics(&amc);
            assert_eq!(x.len(), amc.frames.len() * asf.num_joints() * 3);
        }
    }
});
