//! DCD reader on arbitrary bytes: an error or a trajectory, never a panic; a trajectory it
//! accepts re-encodes to bytes it reads back identically.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use traj_data::formats::dcd::{encode_dcd, parse_dcd};

fuzz_target!(|data: &[u8]| {
    if let Ok(dcd) = parse_dcd(data, Path::new("fuzz.dcd")) {
        let again = parse_dcd(&encode_dcd(&dcd), Path::new("re.dcd")).expect("re-encoded DCD reads");
        assert_eq!(again.num_frames(), dcd.num_frames());
        assert_eq!(
            again.positions().iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            dcd.positions().iter().map(|x| x.to_bits()).collect::<Vec<_>>()
        );
    }
});
