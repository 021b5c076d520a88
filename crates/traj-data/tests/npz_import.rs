//! `npz_import`: files written by numpy (`fixtures/make_npz_import_fixture.py`, run here with the
//! project's venv) imported, read back and compared exactly with the script's closed forms; and
//! every bad file refused with an error naming the file, the array and the problem.

use std::path::{Path, PathBuf};
use std::process::Command;

use traj_data::convert::finite_difference_velocities;
use traj_data::npz_import::{EdgeSource, NpzImportSpec, VelocitySource, import_npz};
use traj_data::{Dataset, Error, ImportError, Split, SplitMethod, Trajectory, load_split};

/// The project's Python: the active venv's, else the workspace `.venv`'s, else `python3`.
fn python() -> PathBuf {
    if let Some(venv) = std::env::var_os("VIRTUAL_ENV") {
        return Path::new(&venv).join("bin/python");
    }
    let project = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    if project.exists() {
        project
    } else {
        PathBuf::from("python3")
    }
}

/// Runs the fixture script into a fresh temporary directory.
fn fixtures() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/make_npz_import_fixture.py");
    let out = Command::new(python())
        .arg(&script)
        .arg(dir.path())
        .output()
        .expect("the project's python (cargo xtask setup makes the venv, with numpy)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}

/// The train, val and test splits of a dataset directory.
fn splits(dir: &Path) -> [Dataset; 3] {
    Split::ALL.map(|s| load_split(dir, s).unwrap())
}

#[test]
fn multi_trajectory_file_round_trips_exactly() {
    let fx = fixtures();
    let out = fx.path().join("multi");
    let spec = NpzImportSpec {
        dt: 0.5,
        length_unit: "angstrom".into(),
        time_unit: "fs".into(),
        ..NpzImportSpec::default()
    };
    let report = import_npz(&fx.path().join("multi.npz"), &spec, &out).unwrap();
    assert_eq!(
        (report.num_trajectories, report.num_frames, report.num_nodes),
        (5, 60, 4)
    );
    assert_eq!(
        (report.velocities, report.edges, report.num_edges),
        (VelocitySource::File, EdgeSource::File, 4)
    );
    assert_eq!(report.split.method, SplitMethod::TrajectoryChronological);
    assert_eq!(report.split_trajectories, [3, 1, 1]);
    assert_eq!(report.manifest.files.len(), 3);
    let parts = splits(&out);
    let all: Vec<&Trajectory> = parts.iter().flat_map(|d| d.trajectories()).collect();
    assert_eq!(all.len(), 5);
    for (s, t) in all.iter().enumerate() {
        assert_eq!(
            t.metadata()["trajectory"],
            serde_json::json!(s),
            "file order"
        );
        assert_eq!((t.num_frames(), t.num_nodes()), (12, 4));
        let mut pos = Vec::new();
        let mut vel = Vec::new();
        for f in 0..12 {
            for n in 0..4 {
                for k in 0..3 {
                    pos.push(s as f64 + 0.5 * f as f64 + 0.25 * n as f64 - 0.125 * k as f64);
                    vel.push(f64::from(0.5f32 + 0.25 * n as f32 + 0.0625 * k as f32));
                }
            }
        }
        assert_eq!(t.positions(), &pos[..]);
        assert_eq!(t.velocities(), Some(&vel[..]));
        assert_eq!(
            t.node_features(),
            Some(&[0.0, 1.0, 1.0, 1.5, 2.0, 2.0, 3.0, 2.5][..])
        );
        assert_eq!(t.node_types(), Some(&[1, 2, 1, 2][..]));
        let e = t.edges().unwrap();
        assert_eq!(e.pairs(), &[[0, 1], [1, 2], [2, 3], [0, 3]]);
        assert_eq!(e.attributes(), &[1.0, 2.0, 3.0, 4.0]);
    }
    let meta = parts[0].meta();
    assert_eq!(
        (meta.dt, meta.length_unit.as_str(), meta.time_unit.as_str()),
        (0.5, "angstrom", "fs")
    );
    assert_eq!((meta.name.as_str(), meta.system.as_str()), ("multi", "npz"));
    assert_eq!(
        meta.generator["sha256"],
        serde_json::json!(traj_data::sha256_file(&fx.path().join("multi.npz")).unwrap())
    );
}

#[test]
fn one_trajectory_splits_by_frame_with_derived_velocities_and_a_cutoff_graph() {
    let fx = fixtures();
    let out = fx.path().join("single");
    let spec = NpzImportSpec {
        dt: 2.0,
        cutoff: Some(1.5),
        ..NpzImportSpec::default()
    };
    let report = import_npz(&fx.path().join("single.npz"), &spec, &out).unwrap();
    assert_eq!(report.split.method, SplitMethod::FrameChronological);
    assert_eq!(report.split_frames, [24, 8, 8]);
    assert_eq!(report.velocities, VelocitySource::FiniteDifferences);
    assert_eq!(report.edges, EdgeSource::Cutoff(1.5));
    let pos: Vec<f64> = (0..40)
        .flat_map(|t| {
            (0..3).flat_map(move |n| {
                (0..3).map(move |k| {
                    let v =
                        if k == 0 { n as f32 } else { 0.0 } + 0.5 * k as f32 + 0.0625 * t as f32;
                    f64::from(v)
                })
            })
        })
        .collect();
    let vel = finite_difference_velocities(&pos, 40, 2.0);
    assert!(
        vel.iter().all(|&v| v == 0.03125),
        "x moves 0.0625 per frame of 2"
    );
    let parts = splits(&out);
    let mut start = 0;
    for (d, frames) in parts.iter().zip([24, 8, 8]) {
        let t = &d.trajectories()[0];
        let r = start * 9..(start + frames) * 9;
        assert_eq!(t.positions(), &pos[r.clone()]);
        assert_eq!(t.velocities(), Some(&vel[r][..]));
        assert_eq!(t.node_types(), Some(&[6, 8, 1][..]));
        // nodes 1 apart along x in the first frame: 0–1 and 1–2 closer than 1.5, 0–2 not
        assert_eq!(t.edges().unwrap().pairs(), &[[0, 1], [1, 2]]);
        start += frames;
    }
}

#[test]
fn concatenated_trajectories_by_length_split_by_frame() {
    let fx = fixtures();
    let out = fx.path().join("concat");
    let spec = NpzImportSpec {
        fractions: [0.5, 0.25, 0.25],
        split_by: Some(SplitMethod::FrameChronological),
        ..NpzImportSpec::default()
    };
    let report = import_npz(&fx.path().join("concat.npz"), &spec, &out).unwrap();
    assert_eq!((report.num_trajectories, report.num_frames), (2, 16));
    assert_eq!(report.edges, EdgeSource::None);
    let parts = splits(&out);
    for (i, frames) in [7usize, 9].into_iter().enumerate() {
        let pos: Vec<f64> = (0..frames)
            .flat_map(|t| {
                (0..3).flat_map(move |n| {
                    (0..3).map(move |k| {
                        let x = if k == 0 { n } else { 0 };
                        x as f64 + 0.5 * k as f64 + 0.01 * t as f64 * t as f64
                    })
                })
            })
            .collect();
        // velocities of the whole trajectory, before its frames were split
        let vel = finite_difference_velocities(&pos, frames, 1.0);
        let mut got_pos = Vec::new();
        let mut got_vel = Vec::new();
        for d in &parts {
            let t = &d.trajectories()[i];
            assert!(t.edges().is_none());
            got_pos.extend_from_slice(t.positions());
            got_vel.extend_from_slice(t.velocities().unwrap());
        }
        assert_eq!(got_pos, pos);
        assert_eq!(got_vel, vel);
    }
    // two trajectories cannot fill three splits by trajectory: refused, naming the file
    let err = import_npz(
        &fx.path().join("concat.npz"),
        &NpzImportSpec::default(),
        &fx.path().join("refused"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains(
            "concat.npz: the test split of 2 trajectories at fractions [0.6, 0.2, 0.2] is empty"
        ),
        "{err}"
    );
}

#[test]
fn bad_files_name_the_file_the_array_and_the_problem() {
    let fx = fixtures();
    let spec = NpzImportSpec::default();
    for (file, expected) in [
        ("missing.npz", "array `positions` is missing"),
        ("nan.npz", "array `positions`[1, 2, 0] = NaN: not finite"),
        (
            "inf_velocities.npz",
            "array `velocities`[0, 1, 2] = inf: not finite",
        ),
        (
            "shape.npz",
            "array `positions` has shape [4, 3, 2], expected [frames, N, 3] or [trajectories, frames, N, 3], each >= 1",
        ),
        (
            "dtype.npz",
            "array `positions` has dtype int64, expected float32 or float64",
        ),
        (
            "edges_dtype.npz",
            "array `edges` has dtype float64, expected an integer type",
        ),
        (
            "edges_range.npz",
            "array `edges`[1, 1] = 5: not a node index (N = 3)",
        ),
        ("self_loop.npz", "array `edges`[1] = [1, 1]: a self-loop"),
        (
            "duplicate_edge.npz",
            "array `edges`[1] = [1, 0]: duplicates edge 0",
        ),
        (
            "typo.npz",
            "unknown array `velocity` (known: positions, velocities",
        ),
        (
            "lengths.npz",
            "array `trajectory_lengths`[] = [3, 3] (sum 6): must sum to the 5 frames of `positions`",
        ),
        (
            "negative_type.npz",
            "array `node_types`[1] = -1: a node type must be >= 0",
        ),
    ] {
        let path = fx.path().join(file);
        let err = import_npz(&path, &spec, &fx.path().join("never")).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!("{}: ", path.display())) && msg.contains(expected),
            "{file}: {msg}"
        );
        assert!(
            matches!(err, ImportError::Data(_)),
            "{file}: typed: {err:?}"
        );
    }
    assert!(!fx.path().join("never").exists(), "nothing written");
    // typed variants carry the datum
    let err = import_npz(&fx.path().join("nan.npz"), &spec, &fx.path().join("x")).unwrap_err();
    assert!(matches!(
        err,
        ImportError::Data(Error::ArrayValue { ref key, ref index, .. })
            if key == "positions" && index == &[1, 2, 0]
    ));
    // edges and a cutoff together are refused
    let err = import_npz(
        &fx.path().join("multi.npz"),
        &NpzImportSpec {
            cutoff: Some(1.0),
            ..NpzImportSpec::default()
        },
        &fx.path().join("y"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("multi.npz: the file has `edges`, so a cutoff"),
        "{err}"
    );
    // a missing file
    let err = import_npz(&fx.path().join("absent.npz"), &spec, &fx.path().join("z"))
        .unwrap_err()
        .to_string();
    assert!(err.ends_with("absent.npz: file not found"), "{err}");
}
