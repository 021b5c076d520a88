//! PSF reader on arbitrary bytes: an error or a topology whose bonds refer to its atoms.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use traj_data::formats::psf::parse_psf;

fuzz_target!(|data: &[u8]| {
    if let Ok(psf) = parse_psf(data, Path::new("fuzz.psf")) {
        let n = psf.atoms.len();
        assert!(psf.bonds.iter().all(|&[a, b]| a < n && b < n));
    }
});
