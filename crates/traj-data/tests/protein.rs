//! DCD/PSF readers and the protein conversion: the real ADK fixture (bytes of `adk_dims.dcd`,
//! values from MDAnalysis, see `fixtures/make_adk_fixture.py`), synthetic files in every DCD
//! variant, and the errors for bad input.

use std::path::{Path, PathBuf};

use traj_data::formats::dcd::{Dcd, DcdHeader, Endian, encode_dcd, parse_dcd, read_dcd};
use traj_data::formats::psf::{parse_psf, read_psf};
use traj_data::protein::{
    ProteinSpec, egno_protein_windows, select_atoms, write_protein_dataset_dir,
};
use traj_data::{ImportError, Split, SplitMethod, SplitSpec, load_split};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn reference() -> serde_json::Value {
    let text = std::fs::read_to_string(fixtures().join("adk_reference.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Compares coordinates of `dcd`'s frame `t` with MDAnalysis's (float32 values printed as f64:
/// the match is exact; sums over all atoms agree to 1e-9 relative).
fn check_frame(dcd: &Dcd, t: usize, reference: &serde_json::Value) {
    let atoms = reference["atoms"].as_array().unwrap();
    let positions = reference["positions"].as_array().unwrap();
    let frame = dcd.frame(t);
    for (a, p) in atoms.iter().zip(positions) {
        let i = a.as_u64().unwrap() as usize;
        for k in 0..3 {
            let expected = p[k].as_f64().unwrap();
            assert_eq!(
                f64::from(frame[3 * i + k]),
                expected,
                "frame {t} atom {i} axis {k}"
            );
        }
    }
    for k in 0..3 {
        let sum: f64 = (0..dcd.num_atoms())
            .map(|i| f64::from(frame[3 * i + k]))
            .sum();
        let expected = reference["sum"][k].as_f64().unwrap();
        assert!(
            (sum - expected).abs() <= 1e-9 * expected.abs().max(1.0),
            "frame {t} sum {k}: {sum} vs {expected}"
        );
    }
}

#[test]
fn adk_excerpts_match_mdanalysis() {
    // the real header (NSET = 500) + the real first and last frames of adk_dims.dcd (CHARMM c35)
    let all = reference();
    let r = &all["adk_dims.dcd"];
    let dcd = read_dcd(fixtures().join("adk_dims_excerpt.dcd")).unwrap();
    assert_eq!(
        dcd.num_frames(),
        2,
        "frames come from the file size, not NSET"
    );
    assert_eq!(dcd.header.nset_in_header, 500);
    assert_eq!(dcd.header.charmm_version, 35);
    assert_eq!(dcd.header.endian, Endian::Little);
    assert!(!dcd.header.has_cell);
    assert_eq!(dcd.num_atoms() as u64, r["n_atoms"].as_u64().unwrap());
    assert!((dcd.header.frame_interval_fs() - 1000.0).abs() < 1e-3);
    check_frame(&dcd, 0, &r["frames"]["first"]);
    check_frame(&dcd, 1, &r["frames"]["last"]);
    // the same values byte-swapped read the same
    let mut be = dcd.clone();
    be.header.endian = Endian::Big;
    let swapped = parse_dcd(&encode_dcd(&be), Path::new("be.dcd")).unwrap();
    assert_eq!(swapped.positions(), dcd.positions());

    // adk_dims2.dcd: version 24 with a unit-cell block (all zeros in this file)
    let r = &all["adk_dims2.dcd"];
    let dcd = read_dcd(fixtures().join("adk_dims2_excerpt.dcd")).unwrap();
    assert_eq!((dcd.num_frames(), dcd.header.charmm_version), (2, 24));
    assert!(dcd.header.has_cell);
    assert_eq!(dcd.cells().unwrap(), &[[0.0; 6]; 2]);
    check_frame(&dcd, 0, &r["frames"]["first"]);
    check_frame(&dcd, 1, &r["frames"]["last"]);
}

/// The full real files, when `cargo xtask data fetch adk` has put them in the cache.
#[test]
fn adk_full_files_when_cached() {
    let cache = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/cache");
    if !cache.join("adk_dims.dcd").exists() || !cache.join("adk.psf").exists() {
        eprintln!(
            "datasets/cache has no ADK files (run `cargo xtask data fetch adk`); the excerpt test covers the reader"
        );
        return;
    }
    let all = reference();
    for file in ["adk_dims.dcd", "adk_dims2.dcd"] {
        let r = &all[file];
        let dcd = read_dcd(cache.join(file)).unwrap();
        assert_eq!(dcd.num_frames() as u64, r["n_frames"].as_u64().unwrap());
        check_frame(&dcd, 0, &r["frames"]["first"]);
        check_frame(&dcd, dcd.num_frames() - 1, &r["frames"]["last"]);
    }
    let psf = read_psf(cache.join("adk.psf")).unwrap();
    assert_eq!(psf.atoms.len(), 3341);
    assert_eq!(psf.bonds.len(), 3365);
    let backbone = select_atoms(&psf, &ProteinSpec::default().atom_names);
    assert_eq!(
        backbone.len() as u64,
        all["backbone_atoms"].as_u64().unwrap()
    );
    assert_eq!(backbone.len(), 855);
    for (file, frames, cell, version) in [
        ("adk_dims2.dcd", 102, true, 24),
        ("adk_gbis_tmd-fast1_NAMD.dcd", 100, false, 24),
    ] {
        let d = read_dcd(cache.join(file)).unwrap();
        assert_eq!(
            (d.num_frames(), d.header.has_cell, d.header.charmm_version),
            (frames, cell, version),
            "{file}"
        );
    }
}

/// A small PSF: `residues` residues of N, HN, CA, CB, C, O (+ OT1/OT2 instead of O at the end).
fn small_psf(residues: usize) -> (String, usize) {
    let mut atoms = Vec::new();
    for r in 0..residues {
        let last = r + 1 == residues;
        let names: &[&str] = if last {
            &["N", "HN", "CA", "CB", "C", "OT1", "OT2"]
        } else {
            &["N", "HN", "CA", "CB", "C", "O"]
        };
        for n in names {
            atoms.push((r + 1, *n));
        }
    }
    let mut s = String::from("PSF EXT\n\n       1 !NTITLE\n* synthetic\n\n");
    s += &format!("{:>8} !NATOM\n", atoms.len());
    for (i, (res, name)) in atoms.iter().enumerate() {
        let charge = if name.starts_with('O') { -0.5 } else { 0.25 };
        s += &format!(
            "{:>8} PROT {:<4} ALA  {:<4} {:<4} {:>10.6} {:>13.4}           0\n",
            i + 1,
            res,
            name,
            "X",
            charge,
            12.011
        );
    }
    let bonds: Vec<[usize; 2]> = (1..atoms.len()).map(|i| [i, i + 1]).collect();
    s += &format!("\n{:>8} !NBOND: bonds\n", bonds.len());
    for chunk in bonds.chunks(4) {
        for b in chunk {
            s += &format!("{:>8}{:>8}", b[0], b[1]);
        }
        s += "\n";
    }
    let backbone = 4 * residues - 1;
    (s, backbone)
}

fn synthetic_dcd(
    n: usize,
    frames: usize,
    endian: Endian,
    version: i32,
    cell: bool,
    fixed: bool,
) -> Dcd {
    let mut h = DcdHeader::charmm(n);
    h.endian = endian;
    h.charmm_version = version;
    h.has_cell = cell;
    h.delta_akma = 10.0 / traj_data::formats::dcd::AKMA_FS; // 10 fs per step
    h.nsavc = 100; // 1 ps per frame
    // fix every third atom
    h.free_atoms = fixed.then(|| (0..n).filter(|i| i % 3 != 0).collect());
    let mut pos = Vec::with_capacity(frames * n * 3);
    for t in 0..frames {
        for i in 0..n {
            let moving = !fixed || i % 3 != 0;
            let dt = if moving { t as f32 * 0.01 } else { 0.0 };
            pos.extend([
                1.5 * i as f32 + dt,
                (i % 7) as f32 - dt,
                0.5 * (i % 5) as f32,
            ]);
        }
    }
    let cells = cell.then(|| vec![[50.0, 0.0, 50.0, 0.0, 0.0, 50.0]; frames]);
    Dcd::new(h, pos, cells).unwrap()
}

#[test]
fn synthetic_protein_every_dcd_variant() {
    let dir = tempfile::tempdir().unwrap();
    let (psf_text, backbone) = small_psf(6);
    let psf_path = dir.path().join("p.psf");
    std::fs::write(&psf_path, &psf_text).unwrap();
    let psf = read_psf(&psf_path).unwrap();
    assert_eq!(
        select_atoms(&psf, &ProteinSpec::default().atom_names).len(),
        backbone
    );
    let split = SplitSpec::new(SplitMethod::FrameChronological)
        .check()
        .unwrap();
    let windows = egno_protein_windows().check().unwrap();
    let frames = 50;
    for endian in [Endian::Little, Endian::Big] {
        for (version, cell, fixed) in [
            (35, false, false),
            (36, true, true),
            (24, true, false),
            (24, false, true),
        ] {
            let dcd = synthetic_dcd(psf.atoms.len(), frames, endian, version, cell, fixed);
            let mut bytes = encode_dcd(&dcd);
            // NSET is not trusted
            let nset_at = 8;
            let wrong: [u8; 4] = match endian {
                Endian::Little => 999i32.to_le_bytes(),
                Endian::Big => 999i32.to_be_bytes(),
            };
            bytes[nset_at..nset_at + 4].copy_from_slice(&wrong);
            let dcd_path = dir.path().join("p.dcd");
            std::fs::write(&dcd_path, &bytes).unwrap();
            let out = dir
                .path()
                .join(format!("out-{endian:?}-{version}-{cell}-{fixed}"));
            let manifest = write_protein_dataset_dir(
                "syn",
                &psf_path,
                &dcd_path,
                &ProteinSpec::default(),
                &split,
                &out,
            )
            .unwrap();
            assert_eq!(manifest.files.len(), 3);
            // 50 frames → 30 / 10 / 10; windows need 16 frames: 15 / 0 / 0
            let mut got = Vec::new();
            for s in Split::ALL {
                let ds = load_split(&out, s).unwrap();
                let t = &ds.trajectories()[0];
                assert_eq!(t.num_nodes(), backbone);
                assert_eq!(ds.meta().dt, 1.0);
                assert_eq!(ds.meta().length_unit, "angstrom");
                got.push((t.num_frames(), windows.index(&ds).unwrap().len()));
                // the charge feature is scaled by the largest |charge|: O → -1, others 0.5
                let f = t.node_features().unwrap();
                assert!(f.iter().all(|&x| x == -1.0 || x == 0.5), "{f:?}");
                // positions are the DCD's, in topology order of the backbone atoms
                let sel = select_atoms(&psf, &ProteinSpec::default().atom_names);
                let first_frame = match s {
                    Split::Train => 0,
                    Split::Val => 30,
                    Split::Test => 40,
                };
                let src = dcd.frame(first_frame);
                assert_eq!(
                    t.position(0, 1),
                    [0, 1, 2].map(|k| f64::from(src[3 * sel[1] + k]))
                );
            }
            assert_eq!(
                got,
                vec![(30, 15), (10, 0), (10, 0)],
                "{endian:?} v{version} cell {cell} fixed {fixed}"
            );
        }
    }
}

#[test]
fn bad_files_get_errors_naming_file_and_problem() {
    let dir = tempfile::tempdir().unwrap();
    let dcd = synthetic_dcd(4, 3, Endian::Little, 35, true, false);
    let good = encode_dcd(&dcd);
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (Vec::new(), "only 0 bytes"),
        (b"garbage!".repeat(20), "not 84 in either byte order"),
        (
            {
                let mut b = good.clone();
                b[4..8].copy_from_slice(b"VELD");
                b
            },
            "velocity DCD",
        ),
        (
            {
                let mut b = good.clone();
                b.truncate(b.len() - 10);
                b
            },
            "truncated",
        ),
        (
            {
                let mut b = good.clone();
                b.truncate(200);
                b
            },
            "frame 0 is truncated",
        ),
        (
            {
                let mut b = good.clone();
                b.extend_from_slice(&[0; 7]);
                b
            },
            "trailing bytes",
        ),
    ];
    for (bytes, needle) in cases {
        let p = dir.path().join("bad.dcd");
        std::fs::write(&p, &bytes).unwrap();
        let err = read_dcd(&p).unwrap_err();
        assert!(matches!(err, ImportError::Malformed { .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!("{}: not a valid DCD file: ", p.display())),
            "{msg}"
        );
        assert!(msg.contains(needle), "{needle}: {msg}");
    }
    // a corrupt record length inside frame 1 names the frame
    let header_len = good.len() - 3 * (56 + 3 * (16 + 8));
    let mut b = good.clone();
    let at = header_len + (56 + 3 * 24) + 56; // frame 1, X record
    b[at..at + 4].copy_from_slice(&12i32.to_le_bytes());
    let msg = parse_dcd(&b, Path::new("x.dcd")).unwrap_err().to_string();
    assert!(msg.contains("frame 1: X record: record length 12"), "{msg}");
    // a duplicated free atom
    let mut h = DcdHeader::charmm(4);
    h.free_atoms = Some(vec![1, 1]);
    let b = encode_dcd(&Dcd::new(h, vec![0.0; 12], None).unwrap());
    let msg = parse_dcd(&b, Path::new("x.dcd")).unwrap_err().to_string();
    assert!(msg.contains("free-atom index 2 is listed twice"), "{msg}");
    // fixed atoms expand frames: 100,000 atoms with one free atom over 8,000 tiny frames would
    // need 9 GiB, refused before allocating
    let n = 100_000;
    let mut h = DcdHeader::charmm(n);
    h.free_atoms = Some(vec![0]);
    let mut b = encode_dcd(&Dcd::new(h, vec![0.5; 3 * n], None).unwrap());
    let record: Vec<u8> = [4i32.to_le_bytes(), 1.0f32.to_le_bytes(), 4i32.to_le_bytes()].concat();
    for _ in 0..8_000 * 3 {
        b.extend_from_slice(&record);
    }
    let msg = parse_dcd(&b, Path::new("x.dcd")).unwrap_err().to_string();
    assert!(
        msg.contains("8001 frames of 100000 atoms would need 8.9 GiB in memory"),
        "{msg}"
    );
    // missing file
    let err = read_dcd(dir.path().join("none.dcd"))
        .unwrap_err()
        .to_string();
    assert!(err.ends_with("none.dcd: file not found"), "{err}");
    // topology and trajectory disagree
    let (psf_text, _) = small_psf(2);
    let psf_path = dir.path().join("p.psf");
    std::fs::write(&psf_path, psf_text).unwrap();
    let dcd_path = dir.path().join("p.dcd");
    std::fs::write(&dcd_path, &good).unwrap();
    let split = SplitSpec::new(SplitMethod::FrameChronological)
        .check()
        .unwrap();
    let err = write_protein_dataset_dir(
        "x",
        &psf_path,
        &dcd_path,
        &ProteinSpec::default(),
        &split,
        &dir.path().join("o"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("p.dcd: the trajectory has 4 atoms but the topology has 13"),
        "{err}"
    );
    // PSF errors
    for (text, needle) in [
        ("", "expected the `PSF` header line"),
        (
            "PSF\n\n       2 !NATOM\n       1 A 1 ALA N X 0.1 14.0 0\n",
            "section NATOM is truncated",
        ),
        (
            "PSF\n\n       1 !NATOM\n       2 A 1 ALA N X 0.1 14.0 0\n",
            "atom id 2, expected 1",
        ),
        (
            "PSF\n\n       1 !NATOM\n       1 A 1 ALA N X nan 14.0 0\n",
            "charge \"nan\" is not a finite number",
        ),
        (
            "PSF\n\n       1 !NBOND\n 1 2\n",
            "NBOND section comes before NATOM",
        ),
        ("PSF\n\n    many !NATOM\n", "count \"many\""),
        // a count near usize::MAX (found by reading the code after fuzzing: 2·count overflowed)
        (
            "PSF\n\n       1 !NATOM\n       1 A 1 ALA N X 0.1 14.0 0\n 18446744073709551615 !NBOND\n 1 1\n",
            "section NBOND is truncated",
        ),
    ] {
        let msg = parse_psf(text.as_bytes(), Path::new("t.psf"))
            .unwrap_err()
            .to_string();
        assert!(msg.starts_with("t.psf: not a valid PSF file"), "{msg}");
        assert!(msg.contains(needle), "{needle}: {msg}");
    }
}
