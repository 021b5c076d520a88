//! The sources manifest (`datasets/manifest.toml`) parser on arbitrary text.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use traj_data::sources::Sources;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Sources::parse(text, Path::new("fuzz.toml"));
    }
});
