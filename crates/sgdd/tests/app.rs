//! End-to-end tests of the app on a tiny generated N-body dataset: no future leak at inference,
//! exact resume, the non-finite-loss stop, and the CLI.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use sgdd::train::{self, RunOptions};
use sgdd::{GraphCache, Model, ModelKind, RunConfig};
use tch::{Device, Kind};
use traj_data::nbody::{NBodySpec, System, generate_dataset_dir};

/// A tiny charged dataset shared by the tests (generated once per test binary).
fn dataset() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("sgdd-app-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut spec = NBodySpec::new(System::Charged);
        spec.n_train = 12;
        spec.n_val = 6;
        spec.n_test = 6;
        spec.seed = 7;
        generate_dataset_dir(&spec, &dir, &|_, _| {}).expect("generate");
        dir
    })
}

fn config(kind: &str, epochs: usize) -> RunConfig {
    let text = format!(
        "[data]\ndir = {:?}\n[model]\nkind = \"{kind}\"\nhidden = 8\ndecoder_layers = 1\nz_dim = 4\n\
         teacher_layers = 1\nstudent_layers = 1\nheads = 2\nk = 6\n[train]\nepochs = {epochs}\n\
         batch_size = 5\neval_every = 1\ndevice = \"cpu\"\nthreads = 1\n",
        dataset()
    );
    RunConfig::from_toml(&text, &[]).unwrap()
}

#[test]
fn inference_never_reads_the_future() {
    let cfg = config("sgdd", 1);
    let (_, test) = sgdd_load(&cfg);
    let (_vs, model) = train::build_model(&cfg, &test, Device::Cpu).unwrap();
    assert_eq!(model.kind(), ModelKind::Sgdd);
    let idx: Vec<i64> = (0..test.samples).collect();
    let mut batch = test
        .batch(&idx, Device::Cpu, &mut GraphCache::default())
        .unwrap();
    let before = tch::no_grad(|| model.predict(&batch)).unwrap();
    let _ = batch.y.fill_(f64::NAN);
    let _ = batch.vy.fill_(f64::NAN);
    let after = tch::no_grad(|| model.predict(&batch)).unwrap();
    assert_eq!(before.isfinite().all().int64_value(&[]), 1);
    assert!(
        before.equal(&after),
        "predictions changed when the future frames became NaN"
    );
}

fn sgdd_load(cfg: &RunConfig) -> (traj_data::Dataset, sgdd::Prepared) {
    let ds = traj_data::load_split(&cfg.data.dir, traj_data::Split::Test).unwrap();
    let p = sgdd_prepare(&ds, cfg);
    (ds, p)
}

fn sgdd_prepare(ds: &traj_data::Dataset, cfg: &RunConfig) -> sgdd::Prepared {
    sgdd::prepare(ds, &cfg.data).unwrap()
}

fn losses(dir: &Path) -> Vec<(f64, f64)> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["loss"].as_f64().unwrap(),
                v["val"]["s2t"].as_f64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn resume_continues_exactly() {
    let cfg = config("sgdd", 4);
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let full = train::run(
        &cfg,
        &a,
        &RunOptions {
            quiet: true,
            ..Default::default()
        },
    )
    .unwrap();
    let opts = RunOptions {
        quiet: true,
        stop_after_epochs: Some(2),
        ..Default::default()
    };
    train::run(&cfg, &b, &opts).unwrap();
    assert_eq!(losses(&b).len(), 2);
    let resumed = train::run(
        &cfg,
        &b,
        &RunOptions {
            quiet: true,
            resume: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(losses(&a), losses(&b));
    assert_eq!(full.test, resumed.test);
    assert!(b.join("loss.png").exists() && b.join("trajectory.png").exists());

    // a resumed run must have the same config
    let mut other = cfg.clone();
    other.train.adam.lr *= 2.0;
    let err = train::run(
        &other,
        &b,
        &RunOptions {
            quiet: true,
            resume: true,
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(format!("{err:#}").contains("another config"), "{err:#}");
}

#[test]
fn a_non_finite_loss_stops_training_and_keeps_the_last_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let cfg = config("egno", 3);
    train::run(
        &cfg,
        &out,
        &RunOptions {
            quiet: true,
            stop_after_epochs: Some(1),
            ..Default::default()
        },
    )
    .unwrap();
    let ck = out.join("checkpoint.safetensors");
    let good = std::fs::read(&ck).unwrap();
    let mut exploding = cfg.clone();
    exploding.train.adam.lr = 1e30;
    let err = train::run(
        &exploding,
        &out,
        &RunOptions {
            quiet: true,
            ..Default::default()
        },
    )
    .unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("loss became") && msg.contains("checkpoint.safetensors"),
        "{msg}"
    );
    assert_eq!(
        std::fs::read(&ck).unwrap(),
        good,
        "the last good checkpoint was overwritten"
    );
    assert!(sgdd::load_checkpoint(&ck).is_ok());
}

#[test]
fn baseline_and_egno_are_scored_by_the_same_code() {
    let tmp = tempfile::tempdir().unwrap();
    let cv = run_quiet(&config("const-vel", 1), &tmp.path().join("cv"));
    assert_eq!(cv.steps, 0);
    assert!(cv.test.s2s > 0.0 && cv.test.s2t > 0.0 && cv.test.s2s.is_finite());
    let eg = run_quiet(&config("egno", 2), &tmp.path().join("eg"));
    assert!(eg.test.s2t.is_finite() && eg.steps == 2 * 3);
}

/// The static baseline (initial positions held) scores exactly the mean squared displacement
/// from the condition frame, computed here from the raw trajectories in original units.
#[test]
fn static_baseline_scores_the_displacement_from_the_condition_frame() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config("static", 1);
    let r = run_quiet(&cfg, &tmp.path().join("static"));
    assert_eq!(r.steps, 0);
    let ds = traj_data::load_split(&cfg.data.dir, traj_data::Split::Test).unwrap();
    // condition on frame 30, targets 32, 34, …, 40 (the default N-body windows)
    let (start, last) = (
        cfg.data.start_frame,
        cfg.data.start_frame + cfg.data.delta_frame,
    );
    let msd = |a: &[f64], b: &[f64]| {
        a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum::<f64>() / a.len() as f64
    };
    let s2s = ds
        .trajectories()
        .iter()
        .map(|tr| msd(tr.frame_positions(start), tr.frame_positions(last)))
        .sum::<f64>()
        / ds.len() as f64;
    assert!(s2s > 1e-3, "the windows do move: {s2s}");
    assert!(
        (r.test.s2s - s2s).abs() <= 1e-4 * s2s,
        "static S2S {} vs direct {s2s}",
        r.test.s2s
    );
    let cv = run_quiet(&config("const-vel", 1), &tmp.path().join("cv"));
    assert!(
        (cv.test.s2s - r.test.s2s).abs() > 1e-6,
        "static and constant velocity must differ"
    );
}

/// A full run without a progress bar.
fn run_quiet(cfg: &RunConfig, out: &Path) -> train::RunResult {
    train::run(
        cfg,
        out,
        &RunOptions {
            quiet: true,
            ..Default::default()
        },
    )
    .unwrap()
}

fn sgdd_bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sgdd"))
}

#[test]
fn cli_generates_trains_and_rejects_unknown_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("springs");
    let out = sgdd_bin()
        .args([
            "data", "generate", "nbody", "--system", "springs", "--train", "6", "--val", "3",
            "--test", "3", "--out",
        ])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(data.join("manifest.json").exists());

    let cfg = tmp.path().join("run.toml");
    std::fs::write(
        &cfg,
        format!("[data]\ndir = {data:?}\n[model]\nkind = \"egno\"\nhidden = 8\ndecoder_layers = 1\n[train]\nepochs = 1\nbatch_size = 3\n"),
    )
    .unwrap();
    let run = tmp.path().join("run");
    let out = sgdd_bin()
        .args(["train", "--quiet", "--device", "cpu", "-c"])
        .arg(&cfg)
        .arg("-o")
        .arg(&run)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("result.json")).unwrap()).unwrap();
    assert_eq!(result["model"], "egno");

    let out = sgdd_bin()
        .args(["train", "-q", "-c"])
        .arg(&cfg)
        .args(["-o"])
        .arg(&run)
        .args(["--set", "model.hiden=3"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("hiden"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn predictions_are_deterministic_for_a_seed() {
    let cfg = config("sgdd", 1);
    let (_, test) = sgdd_load(&cfg);
    let run = |_: ()| {
        let (_vs, model) = train::build_model(&cfg, &test, Device::Cpu).unwrap();
        let batch = test
            .batch(&[0, 1], Device::Cpu, &mut GraphCache::default())
            .unwrap();
        tch::no_grad(|| model.predict(&batch))
            .unwrap()
            .to_kind(Kind::Double)
    };
    assert!(run(()).equal(&run(())));
    let _ = Model::schedule(&cfg.model, 0, 10).unwrap();
}

#[test]
fn sliding_and_metadata_windows() {
    let mut cfg = config("egno", 1);
    let ds = traj_data::load_split(&cfg.data.dir, traj_data::Split::Val).unwrap();
    // 50 frames, horizon 10: sliding anchors 0, 5, …, 35 → 8 per trajectory
    cfg.data.starts = sgdd::StartsKind::Sliding;
    cfg.data.stride = 5;
    let p = sgdd::prepare(&ds, &cfg.data).unwrap();
    assert_eq!(p.samples, 8 * ds.len() as i64);
    // per-trajectory start frames from metadata, consecutive targets
    cfg.data.starts = sgdd::StartsKind::Metadata;
    cfg.data.targets = sgdd::TargetsKind::Consecutive;
    let (meta, _, trajs) = ds.clone().into_parts();
    let trajs: Vec<_> = trajs
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            let mut m = t.metadata().clone();
            m.insert(
                "start_frames".into(),
                serde_json::json!((0..=i).collect::<Vec<_>>()),
            );
            t.with_metadata(m)
        })
        .collect();
    let with_starts = traj_data::Dataset::new(meta, trajs).unwrap();
    let p = sgdd::prepare(&with_starts, &cfg.data).unwrap();
    let n = ds.len() as i64;
    assert_eq!(p.samples, n * (n + 1) / 2);
    // consecutive targets: the last T frames up to the horizon
    assert_eq!(p.target_times.len(), 5);
    let err = sgdd::prepare(&ds, &cfg.data).unwrap_err();
    assert!(format!("{err:#}").contains("start_frames"), "{err:#}");
}

/// A batch that mixes a 5-node and a 3-node graph runs through SGDD (a joint basis per distinct
/// graph), and the 5-node graph's prediction equals the one it gets in a batch of its own.
#[test]
fn sgdd_predicts_batches_of_graphs_of_different_sizes() {
    let cfg = config("sgdd", 1);
    let (_, test) = sgdd_load(&cfg);
    let (_vs, model) = train::build_model(&cfg, &test, Device::Cpu).unwrap();
    let alone = test
        .batch(&[0], Device::Cpu, &mut GraphCache::default())
        .unwrap();
    let expected = tch::no_grad(|| model.predict(&alone)).unwrap();

    // graph 0: sample 0 (5 nodes, complete); graph 1: its first 3 nodes, complete
    let keep = tch::Tensor::from_slice(&[0i64, 1, 2]);
    let three = |t: &tch::Tensor, dim: i64| t.index_select(dim, &keep);
    let edges3: Vec<(i64, i64)> = (0..3)
        .flat_map(|i| (0..3).filter(move |&j| j != i).map(move |j| (i, j)))
        .collect();
    let graph = graph_nets::GraphBatch::batch(&[
        alone.graph.clone(),
        graph_nets::GraphBatch::from_edges(3, &edges3, Device::Cpu).unwrap(),
    ])
    .unwrap();
    let a = alone.edge_attr.size()[1];
    let mixed = sgdd::Batch {
        b: 2,
        x0: tch::Tensor::cat(&[&alone.x0, &three(&alone.x0, 0)], 0),
        v0: tch::Tensor::cat(&[&alone.v0, &three(&alone.v0, 0)], 0),
        h: tch::Tensor::cat(&[&alone.h, &three(&alone.h, 0)], 0),
        y: tch::Tensor::cat(&[&alone.y, &three(&alone.y, 1)], 1),
        vy: tch::Tensor::cat(&[&alone.vy, &three(&alone.vy, 1)], 1),
        edge_attr: tch::Tensor::cat(
            &[
                &alone.edge_attr,
                &tch::Tensor::ones([6, a], (Kind::Float, Device::Cpu)),
            ],
            0,
        ),
        graph,
        center: tch::Tensor::cat(&[&alone.center, &alone.center], 0),
        scale: tch::Tensor::cat(&[&alone.scale, &alone.scale], 0),
    };
    let got = tch::no_grad(|| model.predict(&mixed)).unwrap();
    assert_eq!(got.size(), [5, 8, 3]);
    assert_eq!(got.isfinite().all().int64_value(&[]), 1);
    assert!(got.narrow(1, 0, 5).allclose(&expected, 1e-4, 1e-5, false));
}
