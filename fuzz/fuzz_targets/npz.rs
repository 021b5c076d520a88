//! npz and MD17 readers on arbitrary bytes: errors, never panics or runaway allocations.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use traj_data::formats::md17::parse_md17;
use traj_data::formats::npz::Npz;

fuzz_target!(|data: &[u8]| {
    let p = Path::new("fuzz.npz");
    if let Ok(md) = parse_md17(data, p) {
        assert_eq!(md.positions.len(), md.num_frames * md.num_atoms() * 3);
    }
    if let Ok(mut npz) = Npz::from_bytes(data, p) {
        for name in npz.names() {
            let _ = npz.f64(&name);
            let _ = npz.i64(&name);
            let _ = npz.string(&name);
        }
    }
});
