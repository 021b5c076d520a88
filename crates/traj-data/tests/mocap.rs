//! The CMU mocap "run" import: a synthetic folder the test writes, and the real published folder
//! beside the repository when this machine has it (`../shared/data/cmu-mocap-09-run`).

use std::path::Path;

use traj_data::formats::npz::{NpzArray, write_npz};
use traj_data::mocap::{import_mocap_run, read_mocap_run, run_window_spec};
use traj_data::{Error, ImportError, Split, load_split};

fn write_folder(dir: &Path, trials: &[usize], split_json: &str) {
    // a 4-joint chain 0-1-2-3
    let edges = [1i64, 0, 2, 1, 3, 2];
    let data: Vec<Vec<f64>> = trials
        .iter()
        .map(|&t| {
            (0..t * 4 * 3)
                .map(|i| (i as f64 * 0.37).sin() * 10.0)
                .collect()
        })
        .collect();
    let names: Vec<String> = (0..trials.len()).map(|i| format!("trial_{i:02}")).collect();
    let mut arrays = vec![NpzArray::I64("edges", vec![3, 2], &edges)];
    for (i, d) in data.iter().enumerate() {
        arrays.push(NpzArray::F64(&names[i], vec![trials[i] as u64, 4, 3], d));
    }
    write_npz(dir.join("motion_run.npz"), &arrays).unwrap();
    std::fs::write(dir.join("split_run.json"), split_json).unwrap();
}

#[test]
fn synthetic_run_folder() {
    let dir = tempfile::tempdir().unwrap();
    write_folder(
        dir.path(),
        &[40, 35, 50],
        r#"{"train": {"0": [0, 3, 9], "2": [1]}, "val": {"1": [4]}, "test": {}}"#,
    );
    let [train, val, test] = read_mocap_run(
        &dir.path().join("motion_run.npz"),
        &dir.path().join("split_run.json"),
    )
    .unwrap();
    assert_eq!((train.len(), val.len(), test.len()), (2, 1, 0));
    let t = &train.trajectories()[0];
    assert_eq!((t.num_frames(), t.num_nodes()), (40, 4));
    let e = t.edges().unwrap();
    assert_eq!(e.pairs(), &[[0, 1], [1, 2], [2, 3], [0, 2], [1, 3]]);
    assert_eq!(e.attributes(), &[1.0, 1.0, 1.0, 2.0, 2.0]);
    assert_eq!(t.metadata()["start_frames"], serde_json::json!([0, 3, 9]));
    assert_eq!(t.metadata()["trial"], serde_json::json!(0));
    assert_eq!(
        train.trajectories()[1].metadata()["trial"],
        serde_json::json!(2)
    );
    assert_eq!(
        run_window_spec().check().unwrap().target_offsets(),
        &[26, 27, 28, 29, 30]
    );

    // a start frame without room for the 30-frame horizon names the split and trial
    write_folder(
        dir.path(),
        &[40, 35, 50],
        r#"{"train": {"0": [9]}, "val": {"1": [5]}, "test": {}}"#,
    );
    let msg = read_mocap_run(
        &dir.path().join("motion_run.npz"),
        &dir.path().join("split_run.json"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        msg.contains("split_run.json: val: trial_01 start frame 5 + 30 is past its last frame 34"),
        "{msg}"
    );
    // a start frame near usize::MAX (start + 30 must not overflow)
    write_folder(
        dir.path(),
        &[40],
        r#"{"train": {"0": [18446744073709551615]}, "val": {}, "test": {}}"#,
    );
    let msg = read_mocap_run(
        &dir.path().join("motion_run.npz"),
        &dir.path().join("split_run.json"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        msg.contains("start frame 18446744073709551615 + 30 is past"),
        "{msg}"
    );
    // a trial the split names but the archive lacks
    write_folder(
        dir.path(),
        &[40],
        r#"{"train": {"3": [0]}, "val": {}, "test": {}}"#,
    );
    let msg = read_mocap_run(
        &dir.path().join("motion_run.npz"),
        &dir.path().join("split_run.json"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        msg.contains("motion_run.npz: not a valid npz file: array `trial_03`"),
        "{msg}"
    );
    // the published checksums are enforced by the importer
    let err = import_mocap_run(dir.path(), &dir.path().join("out")).unwrap_err();
    assert!(
        matches!(err, ImportError::Data(Error::ChecksumMismatch { .. })),
        "{err}"
    );
}

#[test]
fn real_run_folder_when_present() {
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/cmu-mocap-09-run");
    if !from.join("motion_run.npz").exists() {
        eprintln!(
            "{} is not on this machine; the synthetic test covers the importer",
            from.display()
        );
        return;
    }
    let out = tempfile::tempdir().unwrap();
    let manifest = import_mocap_run(&from, out.path()).unwrap();
    assert_eq!(
        manifest
            .files
            .iter()
            .map(|f| f.num_trajectories)
            .collect::<Vec<_>>(),
        vec![5, 3, 3]
    );
    let train = load_split(out.path(), Split::Train).unwrap();
    let t = &train.trajectories()[0];
    assert_eq!(t.num_nodes(), 31);
    assert_eq!(t.metadata()["trial"], serde_json::json!(1));
    assert_eq!(t.num_frames(), 138);
    let e = t.edges().unwrap();
    assert_eq!(
        e.attributes().iter().filter(|&&a| a == 1.0).count(),
        30,
        "bones"
    );
    let windows: usize = Split::ALL
        .iter()
        .map(|&s| {
            let ds = load_split(out.path(), s).unwrap();
            ds.trajectories()
                .iter()
                .map(|t| t.metadata()["start_frames"].as_array().unwrap().len())
                .sum::<usize>()
        })
        .sum();
    assert_eq!(windows, 11 * 80);
}

/// A 3-bone skeleton (root → a → b, root → c) in ASF, and AMC motions of `frames` frames.
const ASF: &str = ":version 1.10\n:name T\n:units\n  length 1\n  angle deg\n:root\n  order TX TY TZ RX RY RZ\n  axis XYZ\n  position 0 0 0\n  orientation 0 0 0\n:bonedata\n  begin\n    id 1\n    name a\n    direction 0 1 0\n    length 2\n    axis 0 0 0 XYZ\n    dof rx rz\n    limits (-180 180)\n           (-180 180)\n  end\n  begin\n    id 2\n    name b\n    direction 0 1 0\n    length 1\n    axis 0 0 0 XYZ\n    dof rx\n  end\n  begin\n    id 3\n    name c\n    direction 1 0 0\n    length 1.5\n    axis 0 0 0 XYZ\n  end\n:hierarchy\n  begin\n    root a c\n    a b\n  end\n";

fn amc(frames: usize, phase: f64) -> String {
    let mut s = String::from("#!OML:ASF t.asf\n:FULLY-SPECIFIED\n:DEGREES\n");
    for t in 1..=frames {
        let x = t as f64 * 0.1 + phase;
        s += &format!("{t}\nroot {x} 0 0 0 0 0\na {} 0\nb 0\n", 10.0 * x.sin());
    }
    s
}

#[test]
fn asf_amc_to_a_run_dataset() {
    use traj_data::mocap::{RUN_TRIAL_SPLIT, write_asf_amc_dir};
    let dir = tempfile::tempdir().unwrap();
    let asf = dir.path().join("09.asf");
    std::fs::write(&asf, ASF).unwrap();
    let amcs: Vec<_> = (1..=11)
        .map(|i| {
            let p = dir.path().join(format!("09_{i:02}.amc"));
            std::fs::write(&p, amc(40 + i, i as f64)).unwrap();
            p
        })
        .collect();
    let out = dir.path().join("out");
    let manifest = write_asf_amc_dir("cmu-09-run", &asf, &amcs, RUN_TRIAL_SPLIT, &out).unwrap();
    let counts: Vec<usize> = manifest.files.iter().map(|f| f.num_trajectories).collect();
    assert_eq!(counts, vec![5, 3, 3]);
    let test = load_split(&out, Split::Test).unwrap();
    let t = &test.trajectories()[0]; // trial index 3 = 09_04.amc
    assert_eq!((t.num_frames(), t.num_nodes()), (44, 4));
    // bones (1,0), (2,1), (3,0) and 2-hop (0,2), (1,3)
    assert_eq!(t.edges().unwrap().len(), 5);
    // frame 0 of 09_04: root at x = 0.1 + 4; bone c points along +x with length 1.5
    let root = t.position(0, 0);
    assert!((root[0] - 4.1).abs() < 1e-12, "{root:?}");
    let c = t.position(0, 3);
    assert!((c[0] - 5.6).abs() < 1e-12 && c[1].abs() < 1e-12, "{c:?}");
    // a broken AMC names its file and line
    std::fs::write(&amcs[2], "1\nroot 0 0 0 0 0 0\na 1\nb 0\n").unwrap();
    let msg = write_asf_amc_dir("x", &asf, &amcs, RUN_TRIAL_SPLIT, &out)
        .unwrap_err()
        .to_string();
    assert!(
        msg.ends_with("09_03.amc: not a valid AMC file: line 3: \"a\" has 1 values, its dof has 2"),
        "{msg}"
    );
}
