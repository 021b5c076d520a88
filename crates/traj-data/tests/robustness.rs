//! Every reader returns an error, never panics, on random, truncated and bit-flipped input
//! (a short proptest; the cargo-fuzz targets in `fuzz/` run the same readers for longer).

use std::path::Path;

use proptest::prelude::*;
use traj_data::formats::asf_amc::{parse_amc, parse_asf};
use traj_data::formats::dcd::{Dcd, DcdHeader, Endian, encode_dcd, parse_dcd};
use traj_data::formats::md17::{Md17, Md17Flavor, parse_md17, write_md17};
use traj_data::formats::npz::Npz;
use traj_data::formats::psf::parse_psf;
use traj_data::sources::Sources;
use traj_data::{Dataset, DatasetMeta, Trajectory, read_dataset, write_dataset};

fn dcd_bytes(endian: Endian, cell: bool, fixed: bool) -> Vec<u8> {
    let mut h = DcdHeader::charmm(4);
    h.endian = endian;
    h.has_cell = cell;
    h.free_atoms = fixed.then(|| vec![1, 3]);
    h.title = vec!["* proptest".into()];
    let mut pos: Vec<f32> = (0..3 * 4 * 3).map(|i| i as f32).collect();
    if fixed {
        for t in 1..3 {
            for i in [0, 2] {
                for k in 0..3 {
                    pos[(t * 4 + i) * 3 + k] = pos[i * 3 + k];
                }
            }
        }
    }
    let cells = cell.then(|| vec![[1.0; 6]; 3]);
    encode_dcd(&Dcd::new(h, pos, cells).unwrap())
}

const PSF: &str = "PSF EXT\n\n       1 !NTITLE\n* p\n\n       3 !NATOM\n       1 A 1 ALA N  NH1 -0.47 14.007 0\n       2 A 1 ALA CA CT1 0.07 12.011 0\n       3 A 1 ALA C  C 0.51 12.011 0\n\n       2 !NBOND: bonds\n       1       2       2       3\n";

fn md17_bytes() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m.npz");
    let md = Md17 {
        flavor: Md17Flavor::Md17,
        name: Some("m".into()),
        theory: Some("t".into()),
        atomic_numbers: vec![6, 1],
        num_frames: 2,
        positions: (0..12).map(f64::from).collect(),
        energies: Some(vec![1.0, 2.0]),
        forces: Some(vec![0.5; 12]),
    };
    write_md17(&p, &md).unwrap();
    std::fs::read(&p).unwrap()
}

fn safetensors_bytes() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("d.safetensors");
    let t = Trajectory::new(2, 2, (0..12).map(f64::from).collect()).unwrap();
    write_dataset(
        &p,
        &Dataset::new(DatasetMeta::new("d", "test", 1.0), vec![t]).unwrap(),
    )
    .unwrap();
    std::fs::read(&p).unwrap()
}

const ASF: &str = ":root\n order TX TY TZ RX RY RZ\n axis XYZ\n:bonedata\n begin\n  id 1\n  name a\n  direction 1 0 0\n  length 2\n  axis 0 0 30 XYZ\n  dof rx rz\n end\n begin\n  name b\n  direction 0 1 0\n  length 1\n  axis 0 0 0 XYZ\n end\n:hierarchy\n begin\n  root a\n  a b\n end\n";
const AMC: &str =
    ":FULLY-SPECIFIED\n:DEGREES\n1\nroot 0 1 2 3 4 5\na 10 20\n2\nroot 0 1 2 3 4 5\na 30 40\n";

const SOURCES: &str = "version = 1\n[[source]]\nname = \"a\"\nfile = \"a.bin\"\nurl = \"http://127.0.0.1/a\"\nbytes = 3\n";

/// Runs every reader on `bytes`; each may fail, none may panic.
fn all_readers(bytes: &[u8], dir: &Path) {
    let p = Path::new("x");
    let _ = parse_dcd(bytes, p);
    let _ = parse_psf(bytes, p);
    let _ = parse_md17(bytes, p);
    if let Ok(asf) = parse_asf(bytes, p)
        && let Ok(amc) = parse_amc(AMC.as_bytes(), p, &asf)
    {
        assert_eq!(
            asf.forward_kinematics(&amc).len(),
            amc.frames.len() * asf.num_joints() * 3
        );
    }
    let asf = parse_asf(ASF.as_bytes(), p).unwrap();
    if let Ok(amc) = parse_amc(bytes, p, &asf) {
        assert_eq!(asf.forward_kinematics(&amc).len(), amc.frames.len() * 3 * 3);
    }
    if let Ok(mut npz) = Npz::from_bytes(bytes, p) {
        for name in npz.names() {
            let _ = npz.f64(&name);
            let _ = npz.i64(&name);
            let _ = npz.string(&name);
        }
    }
    if let Ok(text) = std::str::from_utf8(bytes) {
        let _ = Sources::parse(text, p);
    }
    let f = dir.join("x.safetensors");
    std::fs::write(&f, bytes).unwrap();
    let _ = read_dataset(&f);
}

/// The valid inputs that mutations start from.
fn seeds() -> &'static [Vec<u8>] {
    static SEEDS: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
    SEEDS.get_or_init(|| {
        vec![
            dcd_bytes(Endian::Little, false, false),
            dcd_bytes(Endian::Big, true, false),
            dcd_bytes(Endian::Little, true, true),
            PSF.as_bytes().to_vec(),
            md17_bytes(),
            safetensors_bytes(),
            SOURCES.as_bytes().to_vec(),
            ASF.as_bytes().to_vec(),
            AMC.as_bytes().to_vec(),
        ]
    })
}

#[test]
fn seeds_are_valid() {
    let s = seeds();
    for b in &s[..3] {
        parse_dcd(b, Path::new("x")).unwrap();
    }
    parse_psf(&s[3], Path::new("x")).unwrap();
    parse_md17(&s[4], Path::new("x")).unwrap();
    Sources::parse(SOURCES, Path::new("x")).unwrap();
    let asf = parse_asf(&s[7], Path::new("x")).unwrap();
    assert_eq!(
        parse_amc(&s[8], Path::new("x"), &asf).unwrap().frames.len(),
        2
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let dir = tempfile::tempdir().unwrap();
        all_readers(&bytes, dir.path());
    }

    #[test]
    fn truncated_valid_files(which in 0usize..9, cut in 0.0f64..1.0) {
        let dir = tempfile::tempdir().unwrap();
        let seed = &seeds()[which];
        let len = (seed.len() as f64 * cut) as usize;
        all_readers(&seed[..len], dir.path());
        // a truncated DCD is an error, unless the cut falls on a frame boundary (NSET is not
        // trusted): then it reads as the first frames of the full file
        if which < 3
            && len < seed.len()
            && let Ok(short) = parse_dcd(&seed[..len], Path::new("x"))
        {
            let full = parse_dcd(seed, Path::new("x")).unwrap();
            prop_assert!(short.num_frames() < full.num_frames());
            prop_assert_eq!(short.positions(), &full.positions()[..short.positions().len()]);
        }
    }

    #[test]
    fn bit_flipped_valid_files(which in 0usize..9, flips in proptest::collection::vec((any::<prop::sample::Index>(), 0u8..8), 1..6)) {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = seeds()[which].clone();
        for (i, bit) in flips {
            let i = i.index(bytes.len());
            bytes[i] ^= 1 << bit;
        }
        all_readers(&bytes, dir.path());
    }
}
