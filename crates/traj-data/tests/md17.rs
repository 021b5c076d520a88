//! The MD17 / rMD17 reader (numpy-written fixtures and our own writer) and the two settings.

use std::path::{Path, PathBuf};

use traj_data::convert::write_splits;
use traj_data::formats::md17::{Md17, Md17Flavor, parse_md17, read_md17, write_md17};
use traj_data::formats::npz::{NpzArray, encode_npz};
use traj_data::molecule::{
    EgnoMd17Spec, GeoTdmMd17Spec, Md17Molecule, Md17Setting, Rmd17Molecule, convert_md17,
    egno_start_frames, egno_windows, geotdm_windows, md17_egno, md17_geotdm,
};
use traj_data::{Error, ImportError, Split, load_split};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The closed forms of `make_md17_fixture.py`.
fn tiny_expected() -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let mut r = Vec::new();
    for m in 0..4 {
        for i in 0..3 {
            for k in 0..3 {
                r.push(m as f64 + 0.25 * i as f64 - 0.5 * k as f64);
            }
        }
    }
    let f = r.iter().map(|x| -2.0 * x).collect();
    let e = (0..4).map(|m| -1000.0 - m as f64).collect();
    (r, f, e)
}

#[test]
fn reads_numpy_written_md17_and_rmd17() {
    let (r, f, e) = tiny_expected();
    let md = read_md17(fixture("md17_tiny.npz")).unwrap();
    assert_eq!(md.flavor, Md17Flavor::Md17);
    assert_eq!(
        (md.num_frames, md.atomic_numbers.clone()),
        (4, vec![8, 1, 1])
    );
    assert_eq!(md.positions, r);
    assert_eq!(md.forces.as_deref(), Some(&f[..]));
    assert_eq!(md.energies.as_deref(), Some(&e[..]));
    assert_eq!(
        (md.name.as_deref(), md.theory.as_deref()),
        (Some("water"), Some("test"))
    );
    let rmd = read_md17(fixture("rmd17_tiny.npz")).unwrap();
    assert_eq!(rmd.flavor, Md17Flavor::Revised);
    assert_eq!(
        (
            rmd.positions.clone(),
            rmd.forces.clone(),
            rmd.energies.clone()
        ),
        (r, Some(f), Some(e))
    );
    assert_eq!(rmd.atomic_numbers, vec![8, 1, 1]);
}

/// A made-up 9-atom molecule (2 C, 1 O, 6 H) oscillating in time.
fn ethanol_like(frames: usize) -> Md17 {
    let base: [[f64; 3]; 9] = [
        [0.0, 0.0, 0.0],
        [1.52, 0.0, 0.0],
        [2.0, 1.35, 0.0], // C C O: C-C 1.52, C-O ~1.43
        [-0.5, 0.9, 0.3],
        [-0.5, -0.9, 0.3],
        [-0.4, 0.0, -1.0],
        [1.9, -0.5, 0.9],
        [1.9, -0.5, -0.9],
        [2.9, 1.4, 0.0],
    ];
    let mut positions = Vec::new();
    for t in 0..frames {
        for (i, p) in base.iter().enumerate() {
            for (k, x) in p.iter().enumerate() {
                positions.push(x + 0.01 * ((t as f64) * 0.1 + i as f64 + k as f64).sin());
            }
        }
    }
    Md17 {
        flavor: Md17Flavor::Md17,
        name: Some("ethanol-like".into()),
        theory: Some("made up".into()),
        atomic_numbers: vec![6, 6, 8, 1, 1, 1, 1, 1, 1],
        num_frames: frames,
        positions,
        energies: Some((0..frames).map(|t| -97000.0 + t as f64).collect()),
        forces: Some((0..frames * 27).map(|i| (i % 13) as f64 - 6.0).collect()),
    }
}

#[test]
fn writer_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let md = ethanol_like(7);
    let p = dir.path().join("e.npz");
    write_md17(&p, &md).unwrap();
    assert_eq!(read_md17(&p).unwrap(), md);
    // without energies, forces and strings
    let bare = Md17 {
        energies: None,
        forces: None,
        name: None,
        theory: None,
        ..md
    };
    write_md17(&p, &bare).unwrap();
    assert_eq!(read_md17(&p).unwrap(), bare);
}

#[test]
fn bad_md17_files_are_rejected_with_file_and_array() {
    let p = Path::new("m.npz");
    let r = [0.0; 6];
    let cases: Vec<(Vec<NpzArray<'_>>, &str)> = vec![
        (
            vec![NpzArray::I64("z", vec![2], &[1, 1])],
            "neither `R` (MD17) nor `coords` (rMD17)",
        ),
        (
            vec![NpzArray::F64("R", vec![1, 2, 3], &r)],
            "array `z` (atomic numbers) is missing",
        ),
        (
            vec![
                NpzArray::F64("R", vec![1, 2, 3], &r),
                NpzArray::I64("z", vec![2], &[1, 0]),
            ],
            "`z`[1] = 0 is not an atomic number",
        ),
        (
            vec![
                NpzArray::F64("R", vec![2, 3], &r),
                NpzArray::I64("z", vec![2], &[1, 1]),
            ],
            "`R` has shape [2, 3], expected (M, 2, 3)",
        ),
        (
            vec![
                NpzArray::F64("R", vec![1, 2, 3], &r),
                NpzArray::I64("z", vec![2], &[1, 1]),
                NpzArray::F64("F", vec![1, 6], &r),
            ],
            "`F` has shape [1, 6]",
        ),
        (
            vec![
                NpzArray::F64("R", vec![1, 2, 3], &r),
                NpzArray::I64("z", vec![2], &[1, 1]),
                NpzArray::F64("E", vec![2], &[1.0, 2.0]),
            ],
            "`E` has shape [2]",
        ),
    ];
    for (arrays, needle) in cases {
        let bytes = encode_npz(&arrays, p).unwrap();
        let msg = parse_md17(&bytes, p).unwrap_err().to_string();
        assert!(
            msg.starts_with("m.npz: not a valid MD17 npz file: "),
            "{msg}"
        );
        assert!(msg.contains(needle), "{needle}: {msg}");
    }
    let mut bad = r;
    bad[4] = f64::NAN;
    let bytes = encode_npz(
        &[
            NpzArray::F64("R", vec![1, 2, 3], &bad),
            NpzArray::I64("z", vec![2], &[1, 1]),
        ],
        p,
    )
    .unwrap();
    let err = parse_md17(&bytes, p).unwrap_err();
    assert!(
        matches!(err, ImportError::Data(Error::InFile { .. })),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "m.npz: positions: non-finite value NaN at frame 0, node 1, component y"
    );
    let msg = parse_md17(b"PK\x03\x04 not really", p)
        .unwrap_err()
        .to_string();
    assert!(
        msg.starts_with("m.npz: not a valid npz file: not a zip archive"),
        "{msg}"
    );
}

#[test]
fn geotdm_setting() {
    let md = ethanol_like(1000);
    let splits = md17_geotdm(&md, "e", &GeoTdmMd17Spec::default(), Path::new("e.npz")).unwrap();
    // 1000 raw frames → every 10th: 100 frames → 60 / 20 / 20
    let frames: Vec<usize> = splits
        .iter()
        .map(|d| d.trajectories()[0].num_frames())
        .collect();
    assert_eq!(frames, vec![60, 20, 20]);
    assert_eq!(splits[0].meta().dt, 5.0);
    assert_eq!(splits[0].num_nodes(), 9);
    let w = geotdm_windows().check().unwrap();
    assert_eq!(w.index(&splits[0]).unwrap().len(), 60 - 30 + 1);
    assert_eq!(w.index(&splits[1]).unwrap().len(), 0);
    // the same anchors recorded for models given one frame: frames 9 ..= 60 − 21
    let anchors = splits[0].trajectories()[0].start_frames().unwrap();
    assert_eq!(anchors, (9..=39).collect::<Vec<_>>());
    let one = geotdm_windows()
        .condition_frames(1)
        .metadata_starts()
        .check()
        .unwrap();
    let (ten, ones) = (w.index(&splits[0]).unwrap(), one.index(&splits[0]).unwrap());
    assert_eq!(ten.len(), ones.len());
    for (a, b) in ten.iter().zip(&ones) {
        let (sa, sb) = (
            w.sample(&splits[0], *a).unwrap(),
            one.sample(&splits[0], *b).unwrap(),
        );
        assert_eq!(
            (sa.anchor, &sa.target_frames),
            (sb.anchor, &sb.target_frames)
        );
        assert_eq!(sa.target_positions, sb.target_positions);
    }
    assert!(
        splits[1].trajectories()[0]
            .start_frames()
            .unwrap()
            .is_empty()
    );
    // normalised: the training scale is recorded and undoes exactly
    let rec = splits[0].meta().normalization.clone().unwrap();
    assert!(
        rec.params.scale > 0.5 && rec.params.scale < 2.0,
        "{}",
        rec.params.scale
    );
    let back = splits[0].denormalize().unwrap();
    let x = back.trajectories()[0].position(1, 2);
    let raw = &md.positions[(10 * 9 + 2) * 3..(10 * 9 + 2) * 3 + 3];
    for k in 0..3 {
        assert!((x[k] - raw[k]).abs() < 1e-12, "{x:?} vs {raw:?}");
    }
    // velocity from consecutive raw frames, before downsampling, in original units after undoing
    let v = back.trajectories()[0].velocities().unwrap();
    let expected = (md.positions[(11 * 9 + 2) * 3] - md.positions[(10 * 9 + 2) * 3]) / 0.5;
    assert!(
        (v[(9 + 2) * 3] - expected).abs() < 1e-9,
        "{} vs {expected}",
        v[(9 + 2) * 3]
    );
}

#[test]
fn egno_setting() {
    let md = ethanol_like(500);
    let spec = EgnoMd17Spec {
        delta_frame: 80,
        num_targets: 8,
        counts: [5, 3, 2],
        margin: 100,
        ..EgnoMd17Spec::default()
    };
    let splits = md17_egno(&md, "e", &spec, Path::new("e.npz")).unwrap();
    // EGNO's draw order is kept: the first train window starts where numpy's first draw fell
    let firsts: Vec<u64> = splits
        .iter()
        .map(|d| {
            d.trajectories()[0].metadata()["start_frame"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(firsts, vec![321, 178, 315], "see egno_split_reference.json");
    assert_eq!(
        splits.iter().map(|d| d.len()).collect::<Vec<_>>(),
        vec![5, 3, 2]
    );
    let t = &splits[0].trajectories()[0];
    assert_eq!(
        (t.num_nodes(), t.num_frames()),
        (3, 9),
        "heavy atoms; start + 8 targets"
    );
    // bonds C-C and C-O (< 1.6 Å) and the 2-hop C..O
    let e = t.edges().unwrap();
    assert_eq!(e.pairs(), &[[0, 1], [1, 2], [0, 2]]);
    assert_eq!(e.attributes(), &[1.0, 1.0, 2.0]);
    assert_eq!(t.node_types().unwrap(), &[6, 6, 8]);
    assert_eq!(splits[0].meta().dt, 5.0, "Δ/T = 10 raw frames of 0.5 fs");
    // every window's frames are the raw frames start + 10 k
    let start = t.metadata()["start_frame"].as_u64().unwrap() as usize;
    assert_eq!(
        t.position(3, 2)[1],
        md.positions[((start + 30) * 9 + 2) * 3 + 1]
    );
    // start frames are distinct across the splits
    let mut all: Vec<u64> = splits
        .iter()
        .flat_map(|d| {
            d.trajectories()
                .iter()
                .map(|t| t.metadata()["start_frame"].as_u64().unwrap())
        })
        .collect();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), 10);
    assert_eq!(
        egno_windows(8)
            .check()
            .unwrap()
            .index(&splits[1])
            .unwrap()
            .len(),
        3
    );
    // written and read back through the manifest
    let dir = tempfile::tempdir().unwrap();
    write_splits("e", &splits, dir.path()).unwrap();
    assert_eq!(load_split(dir.path(), Split::Test).unwrap(), splits[2]);
    // too short for EGNO's margins
    let msg = md17_egno(&md, "e", &EgnoMd17Spec::default(), Path::new("e.npz"))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("e.npz: 500 frames leave nothing between the margins of 10000 frames"),
        "{msg}"
    );
    // a horizon that runs past the end
    let spec = EgnoMd17Spec {
        delta_frame: 200,
        num_targets: 8,
        margin: 100,
        ..EgnoMd17Spec::default()
    };
    let msg = md17_egno(&md, "e", &spec, Path::new("e.npz"))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("plus the horizon 200 passes"), "{msg}");
}

/// The start frames equal numpy's own draws of EGNO's procedure
/// (`tests/fixtures/make_egno_split_fixture.py`), including at the lengths of the project's xTB
/// trajectories and of MD17 aspirin.
#[test]
fn egno_start_frames_match_numpy() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/egno_split_reference.json"),
    )
    .unwrap();
    let reference: serde_json::Value = serde_json::from_str(&text).unwrap();
    let cases = reference["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 3);
    let as_vec = |v: &serde_json::Value| -> Vec<usize> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as usize)
            .collect()
    };
    for case in cases {
        let counts = as_vec(&case["counts"]);
        let spec = EgnoMd17Spec {
            margin: case["margin"].as_u64().unwrap() as usize,
            counts: [counts[0], counts[1], counts[2]],
            delta_frame: 80,
            ..EgnoMd17Spec::default()
        };
        let n = case["num_frames"].as_u64().unwrap() as usize;
        let splits = egno_start_frames(n, &spec).unwrap();
        for (k, split) in splits.iter().enumerate() {
            let first = as_vec(&case["first"][k]);
            assert_eq!(&split[..first.len()], &first[..], "{n} frames, split {k}");
            assert_eq!(
                split.len(),
                as_vec(&case["lengths"])[k],
                "{n} frames, split {k}"
            );
            assert_eq!(
                split.iter().sum::<usize>(),
                as_vec(&case["sums"])[k],
                "{n} frames, split {k}"
            );
        }
    }
}

/// `convert_md17` writes the GeoTDM setting and refuses, naming the file, a trajectory too short
/// for EGNO's margins.
#[test]
fn convert_md17_writes_both_settings() {
    let dir = tempfile::tempdir().unwrap();
    // a 3-atom molecule (C, O, H) vibrating, 60 frames
    let frames = 60;
    let positions = (0..frames)
        .flat_map(|t| {
            let s = 0.01 * (t as f64 * 0.3).sin();
            [0.0, 0.0, 0.0, 1.2 + s, 0.0, 0.0, -0.6, 0.9 + s, 0.0]
        })
        .collect();
    let md = Md17 {
        flavor: Md17Flavor::Md17,
        name: Some("tiny".into()),
        theory: None,
        atomic_numbers: vec![6, 8, 1],
        num_frames: frames,
        positions,
        energies: None,
        forces: None,
    };
    let npz = dir.path().join("tiny.npz");
    write_md17(&npz, &md).unwrap();
    let out = dir.path().join("geotdm");
    let c = convert_md17(&npz, "tiny", Md17Setting::Geotdm, 0, &out).unwrap();
    assert_eq!(
        (c.num_frames, c.num_atoms, c.num_nodes, c.num_trajectories),
        (60, 3, 3, [1, 1, 1])
    );
    assert_eq!(c.manifest.files.len(), 3);
    let train = load_split(&out, Split::Train).unwrap();
    assert_eq!(
        train.trajectories()[0].num_frames(),
        4,
        "60 frames / 10 → 6 → 4 train"
    );
    // the EGNO setting leaves 10,000 frames at each end: refused, naming the file
    let err = convert_md17(
        &npz,
        "tiny",
        Md17Setting::Egno,
        100,
        &dir.path().join("egno"),
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("tiny.npz: 60 frames leave nothing between the margins"),
        "{err}"
    );
}

#[test]
fn molecule_names_round_trip() {
    for m in Md17Molecule::ALL {
        assert_eq!(m.to_string().parse::<Md17Molecule>().unwrap(), m);
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(json, format!("\"{m}\""));
        assert_eq!(serde_json::from_str::<Md17Molecule>(&json).unwrap(), m);
    }
    assert_eq!(Md17Molecule::SalicylicAcid.name(), "salicylic_acid");
    assert_eq!(
        Md17Molecule::SalicylicAcid.source_name(),
        "md17-salicylic_acid"
    );
    let err = "water".parse::<Md17Molecule>().unwrap_err().to_string();
    assert!(
        err.starts_with("unknown MD17 molecule \"water\" (expected one of: aspirin, benzene"),
        "{err}"
    );
    // rMD17 names salicylic acid `salicylic` and has two more molecules
    for (input, file) in [
        ("salicylic_acid", "rmd17_salicylic.npz"),
        ("salicylic", "rmd17_salicylic.npz"),
        ("paracetamol", "rmd17_paracetamol.npz"),
        ("uracil", "rmd17_uracil.npz"),
    ] {
        assert_eq!(input.parse::<Rmd17Molecule>().unwrap().file_name(), file);
    }
    assert!("water".parse::<Rmd17Molecule>().is_err());
    for s in [Md17Setting::Geotdm, Md17Setting::Egno] {
        assert_eq!(s.to_string().parse::<Md17Setting>().unwrap(), s);
    }
    assert!("dft".parse::<Md17Setting>().is_err());
}

#[test]
fn truncation_keeps_the_first_frames() {
    let mut md = ethanol_like(10);
    md.energies = Some((0..10).map(f64::from).collect());
    md.forces = Some(md.positions.clone());
    let full = md.clone();
    md.truncate(20);
    assert_eq!(md, full, "longer than the trajectory: unchanged");
    md.truncate(4);
    let n3 = full.num_atoms() * 3;
    assert_eq!(md.num_frames, 4);
    assert_eq!(md.positions, full.positions[..4 * n3]);
    assert_eq!(md.forces.as_deref(), Some(&full.positions[..4 * n3]));
    assert_eq!(md.energies, Some(vec![0.0, 1.0, 2.0, 3.0]));
}
