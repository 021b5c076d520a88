//! The data layer as the trainer sees it: the `[data]` keys of every shipped config, the window
//! spec they make, and edge lists built by traj-data agreeing with the graph builders of
//! spectral-core and graph-nets.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use graph_nets::GraphBatch;
use rand::{Rng, SeedableRng};
use sgdd_train::{DistillConfig, GridDistillConfig, RunConfig};
use tch::{Device, Kind, Tensor};
use traj_data::convert::{bones_and_two_hop, contact_edges};
use traj_data::{EdgeList, Starts, TargetFrames};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The project's Python: the active venv's, else the workspace `.venv`'s, else `python3`.
fn python() -> PathBuf {
    if let Some(venv) = std::env::var_os("VIRTUAL_ENV") {
        return Path::new(&venv).join("bin/python");
    }
    let project = workspace().join(".venv/bin/python");
    if project.exists() {
        project
    } else {
        PathBuf::from("python3")
    }
}

/// A user's npz written by numpy (traj-data's `make_npz_import_fixture.py`: `multi.npz` holds
/// 5 trajectories of 12 frames of 4 nodes, positions `s + 0.5 f + 0.25 n − 0.125 k`, velocities
/// and edges), imported with `sgdd data import npz`'s library call, trains: a run config's
/// `prepare` cuts its windows.
#[test]
fn an_imported_npz_prepares_for_training() {
    let dir = tempfile::tempdir().unwrap();
    let script = workspace().join("crates/traj-data/tests/fixtures/make_npz_import_fixture.py");
    let out = std::process::Command::new(python())
        .arg(&script)
        .arg(dir.path())
        .output()
        .expect("the project's python, with numpy");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let data = dir.path().join("multi");
    traj_data::npz_import::import_npz(
        &dir.path().join("multi.npz"),
        &traj_data::npz_import::NpzImportSpec::default(),
        &data,
    )
    .unwrap();
    let toml = format!(
        "[data]\ndir = {:?}\nstarts = \"sliding\"\nstride = 2\ndelta_frame = 4\nnum_targets = 2\n[model]\nkind = \"egno\"\n",
        data.display().to_string()
    );
    let cfg = RunConfig::from_toml(&toml, &[]).unwrap();
    let (ds, p) = sgdd_train::load_split(&cfg.data, traj_data::Split::Train, None).unwrap();
    assert_eq!(ds.len(), 3);
    // 12 frames, horizon 4: anchors 0, 2, 4, 6 in each of the 3 training trajectories
    assert_eq!((p.samples, p.n, p.t), (12, 4, 2));
    assert_eq!(p.target_times, vec![2.0, 4.0]);
    assert_eq!(p.undirected, vec![(0, 1), (1, 2), (2, 3), (0, 3)]);
    // [2 node features, types 1/2 one-hot, ‖v_0‖]
    assert_eq!((p.node_dim(), p.edge_dim()), (2 + 2 + 1, 1));
    assert_eq!(
        Vec::<f32>::try_from(p.h.get(0).narrow(1, 2, 2).flatten(0, -1)).unwrap(),
        [1., 0., 0., 1., 1., 0., 0., 1.]
    );
    // sample 5: trajectory 1, anchor 2; node 3, component x
    let x = p.x0.double_value(&[5, 3, 0]);
    assert_eq!(x, 1.0 + 0.5 * 2.0 + 0.25 * 3.0);
    let y = p.y.double_value(&[5, 1, 3, 0]);
    assert_eq!(
        y,
        1.0 + 0.5 * 6.0 + 0.25 * 3.0,
        "the second target, frame 2 + 4"
    );
    // EGNO's mocap rule: the first windows of each training trajectory only; evaluation keeps all
    let capped =
        RunConfig::from_toml(&toml, &["data.train_windows_per_trajectory=3".to_owned()]).unwrap();
    let (_, p3) = sgdd_train::load_split(&capped.data, traj_data::Split::Train, None).unwrap();
    assert_eq!(p3.samples, 9);
    // trajectory 1's first window (anchor 0) is now sample 3 (it was sample 4)
    assert_eq!(p3.x0.double_value(&[3, 3, 0]), 1.0 + 0.25 * 3.0);
    assert_eq!(
        p3.x0.double_value(&[2, 0, 0]),
        p.x0.double_value(&[2, 0, 0])
    );
    let (_, v_all) = sgdd_train::load_split(&cfg.data, traj_data::Split::Val, None).unwrap();
    let (_, v_cap) = sgdd_train::load_split(&capped.data, traj_data::Split::Val, None).unwrap();
    assert_eq!(v_cap.samples, v_all.samples);
}

/// Every config under `configs/` and `configs/repro/` parses, checks, and survives the round
/// trip through `to_toml` (what a checkpoint stores and a resume reads back).
#[test]
fn every_shipped_config_parses_unchanged() {
    let (mut seen, mut grids) = (0, 0);
    for dir in ["configs", "configs/repro"] {
        let mut files: Vec<PathBuf> = std::fs::read_dir(workspace().join(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        files.sort();
        for path in files {
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            if name.starts_with("distill-ns") {
                // grid distillation (`sgdd distill-grid`): frames in, frames out, no windows
                // teachers come from `--teacher` on the command line
                let teachers = ["distill.teachers=[\"teacher.safetensors\"]".to_owned()];
                let cfg =
                    GridDistillConfig::load(&path, &teachers).unwrap_or_else(|e| panic!("{e:#}"));
                let again = GridDistillConfig::from_toml(&cfg.to_toml(), &[]).unwrap();
                assert_eq!(again, cfg, "{}", path.display());
                grids += 1;
                continue;
            }
            // distillation configs (`sgdd distill`) have their own sections around [data]
            let d = if name.starts_with("distill-") {
                // teachers come from `--teacher` on the command line
                let teachers = ["distill.teachers=[\"teacher.safetensors\"]".to_owned()];
                let cfg = DistillConfig::load(&path, &teachers).unwrap_or_else(|e| panic!("{e:#}"));
                let again = DistillConfig::from_toml(&cfg.to_toml(), &[]).unwrap();
                assert_eq!(again, cfg, "{}", path.display());
                assert!(cfg.differences(&again.into_inner()).is_empty());
                cfg.data.clone()
            } else {
                let cfg = RunConfig::load(&path, &[]).unwrap_or_else(|e| panic!("{e:#}"));
                let again = RunConfig::from_toml(&cfg.to_toml(), &[]).unwrap();
                assert_eq!(again, cfg, "{}", path.display());
                assert!(cfg.differences(&again.into_inner()).is_empty());
                cfg.data.clone()
            };
            let expected = match name.as_str() {
                "nbody-charged"
                | "nbody"
                | "nbody-quick"
                | "nbody-standard"
                | "distill-nbody-charged"
                | "distill-nbody"
                | "distill-nbody-quick" => (Starts::Fixed(vec![30]), 10, 5, TargetFrames::Strided),
                "adk" | "adk-quick" | "adk-standard" => {
                    (Starts::Sliding { stride: 1 }, 15, 4, TargetFrames::Strided)
                }
                "md17-xtb" | "md17-xtb-quick" | "md17-xtb-standard" => {
                    (Starts::Fixed(vec![0]), 8, 8, TargetFrames::Strided)
                }
                "mocap-run" | "mocap-run-quick" | "mocap-run-standard" | "mocap-run-paper" => {
                    (Starts::Metadata, 30, 5, TargetFrames::Consecutive)
                }
                // GeoTDM's protocol: frames 0–9 given, 10–29 predicted
                "lam-slide-charged" | "nbody-geotdm-quick" | "nbody-geotdm-standard" => {
                    (Starts::Fixed(vec![9]), 20, 20, TargetFrames::Consecutive)
                }
                // GeoTDM's MD17 windows: the anchors the conversion records (frames 9, 10, …)
                "md17-geotdm-quick" | "md17-geotdm-standard" => {
                    (Starts::Metadata, 20, 20, TargetFrames::Consecutive)
                }
                other => panic!("a new config {other}: add its windows here"),
            };
            assert_eq!(
                (d.starts.clone(), d.delta_frame, d.num_targets, d.targets),
                expected,
                "{}",
                path.display()
            );
            d.window_spec().check().unwrap();
            // EGNO's 200 training windows of 5 trials at its published mocap budget only
            let cap = (name == "mocap-run-paper").then_some(40);
            assert_eq!(d.train_windows_per_trajectory, cap, "{}", path.display());
            seen += 1;
        }
    }
    assert_eq!((seen, grids), (22, 3));
}

/// The flat `[data]` keys map onto the typed window starts, defaults included; keys a choice
/// does not use are accepted; bad values name their key.
#[test]
fn data_keys_map_to_typed_window_starts() {
    let data = |keys: &str| {
        RunConfig::from_toml(&format!("[data]\ndir = \"d\"\n{keys}"), &[]).map(|c| c.data.clone())
    };
    let d = data("").unwrap();
    assert_eq!(
        (d.starts.clone(), d.delta_frame, d.num_targets, d.targets),
        (Starts::Fixed(vec![30]), 10, 5, TargetFrames::Strided)
    );
    assert_eq!(
        d.window_spec(),
        traj_data::WindowSpec::egno(30, 10, 5),
        "the defaults are EGNO's N-body windows"
    );
    assert_eq!(
        data("starts = \"sliding\"\nstride = 4\nstart_frame = 0")
            .unwrap()
            .starts,
        Starts::Sliding { stride: 4 }
    );
    assert_eq!(
        data("starts = \"sliding\"").unwrap().starts,
        Starts::Sliding { stride: 1 }
    );
    assert_eq!(
        data("starts = \"fixed\"\nstride = 1\nstart_frame = 7")
            .unwrap()
            .starts,
        Starts::Fixed(vec![7])
    );
    assert_eq!(
        data("starts = \"metadata\"\ntargets = \"consecutive\"")
            .unwrap()
            .window_spec(),
        traj_data::WindowSpec::egno(0, 10, 5)
            .targets(TargetFrames::Consecutive)
            .metadata_starts()
    );
    for (keys, key) in [
        ("starts = \"sometimes\"", "data.starts"),
        ("targets = \"all\"", "data.targets"),
        ("stride = \"two\"", "data.stride"),
        ("starts = \"sliding\"\nstride = 0", "data.stride"),
        ("strides = 2", "strides"),
    ] {
        let err = format!("{:#}", data(keys).unwrap_err());
        assert!(err.contains(key), "{keys}: {err}");
    }
    let mut two = RunConfig::from_toml("[data]\ndir = \"d\"\n", &[])
        .unwrap()
        .into_inner();
    two.data.starts = Starts::Fixed(vec![3, 9]);
    let err = format!("{:#}", two.check().unwrap_err());
    assert!(
        err.contains("data.start_frame: a run config has one start frame"),
        "{err}"
    );
}

/// `(receiver, sender)` pairs of a graph batch, in edge order.
fn directed(g: &GraphBatch) -> Vec<(i64, i64)> {
    let r = Vec::<i64>::try_from(g.receivers()).unwrap();
    let s = Vec::<i64>::try_from(g.senders()).unwrap();
    r.into_iter().zip(s).collect()
}

/// The same, as a set.
fn directed_set(g: &GraphBatch) -> BTreeSet<(i64, i64)> {
    directed(g).into_iter().collect()
}

/// The contact graph of traj-data, the radius graph of spectral-core (a cell list) and the
/// radius graph of graph-nets (on tensors) are the same graph; so are the complete graphs, and
/// traj-data's bones + 2-hop edges and graph-nets' 2-hop graph with its hop types.
#[test]
fn the_edge_builders_agree() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    for n in [0usize, 1, 2, 7, 30] {
        let points: Vec<f64> = (0..3 * n).map(|_| rng.random_range(-2.0..2.0)).collect();
        let xyz: Vec<[f64; 3]> = points.chunks_exact(3).map(|c| [c[0], c[1], c[2]]).collect();
        for cutoff in [0.5, 1.3, 10.0] {
            let ours = contact_edges(&points, cutoff);
            if n > 0 {
                let spectral = spectral_core::Graph::radius(&xyz, cutoff).unwrap();
                let theirs: Vec<(usize, usize)> =
                    spectral.edges().iter().map(|&(i, j, _)| (i, j)).collect();
                assert_eq!(
                    Vec::<(usize, usize)>::from(&ours),
                    theirs,
                    "n {n}, {cutoff}"
                );
                let x = Tensor::from_slice(&points)
                    .to_kind(Kind::Double)
                    .reshape([n as i64, 3]);
                let g = GraphBatch::f_radius(&x, &[n as i64], cutoff).unwrap();
                let ours_directed: BTreeSet<(i64, i64)> = ours.directed().into_iter().collect();
                assert_eq!(directed_set(&g), ours_directed, "n {n}, {cutoff}");
            }
        }
        assert_eq!(
            Vec::<(usize, usize)>::from(&EdgeList::complete(n)),
            spectral_core::Graph::complete(n)
                .edges()
                .iter()
                .map(|&(i, j, _)| (i, j))
                .collect::<Vec<_>>()
        );
    }
    // a chain with a branch: 0-1-2-3, 1-4
    let bones = [[0, 1], [1, 2], [2, 3], [1, 4]];
    let ours = bones_and_two_hop(&bones, 5).unwrap();
    let chain: Vec<(i64, i64)> = bones.iter().map(|&[a, b]| (a as i64, b as i64)).collect();
    let (g, types) = GraphBatch::from_undirected(5, &chain, Device::Cpu)
        .unwrap()
        .f_with_hops(2)
        .unwrap();
    let types = Vec::<i64>::try_from(&types).unwrap();
    let theirs: BTreeSet<(i64, i64, i64)> = directed(&g)
        .into_iter()
        .zip(types)
        .map(|((r, s), t)| (r, s, t))
        .collect();
    let ours_typed: BTreeSet<(i64, i64, i64)> = ours
        .pairs()
        .iter()
        .enumerate()
        .flat_map(|(e, &[a, b])| {
            let t = ours.attribute(e)[0] as i64;
            [(a as i64, b as i64, t), (b as i64, a as i64, t)]
        })
        .collect();
    assert_eq!(ours_typed, theirs);
}
