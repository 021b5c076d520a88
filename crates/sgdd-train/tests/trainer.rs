//! The trainer end to end on a tiny generated N-body dataset: no future leak at inference, bit
//! exact resume at every epoch boundary of every model and schedule stage, protected run
//! directories, what a resume may change, the non-finite and diverging-loss stops, early
//! stopping, fine-tuning, TensorBoard logs.
//!
//! libtorch's generator is process-global and the trainer seeds it: every test that builds or
//! trains a model holds [`serial`] so tests running in parallel threads cannot interleave
//! their draws (the suite is run with `--test-threads=8` to show it).

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock};

use sgdd_train::{
    CheckedRunConfig, Event, GraphCache, Model, RunConfig, RunMode, RunResult, Trainer,
    TrainerOptions,
};
use tch::{Device, Kind};
use traj_data::nbody::{NBodySpec, System, generate_dataset_dir};

/// Serialises the tests that touch libtorch's global generator.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

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

fn config_with(kind: &str, epochs: usize, set: &[&str]) -> CheckedRunConfig {
    let text = format!(
        "[data]\ndir = {:?}\n[model]\nkind = \"{kind}\"\nhidden = 8\ndecoder_layers = 1\nz_dim = 4\n\
         teacher_layers = 1\nstudent_layers = 1\nheads = 2\nk = 6\n[train]\nepochs = {epochs}\n\
         batch_size = 5\neval_every = 1\ndevice = \"cpu\"\nthreads = 1\n",
        dataset()
    );
    let set: Vec<String> = set.iter().map(|s| (*s).to_owned()).collect();
    RunConfig::from_toml(&text, &set).unwrap()
}

fn config(kind: &str, epochs: usize) -> CheckedRunConfig {
    config_with(kind, epochs, &[])
}

/// Trains `cfg` into `out` (at most `stop_after` epochs) and finishes; the notes it printed.
fn train(
    cfg: &CheckedRunConfig,
    out: &Path,
    mode: RunMode,
    stop_after: Option<usize>,
) -> anyhow::Result<(RunResult, Vec<String>)> {
    let notes = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let sink = notes.clone();
    let mut t = Trainer::new(
        cfg.clone(),
        out,
        TrainerOptions {
            mode,
            init_from: None,
            observer: Some(Box::new(move |e| {
                if let Event::Note(s) = e {
                    sink.borrow_mut().push(s.to_owned());
                }
            })),
            data_parallel: None,
        },
    )?;
    t.train(stop_after)?;
    let r = t.finish()?;
    drop(t);
    let notes = notes.borrow().clone();
    Ok((r, notes))
}

/// Every student — the paper's GAT, the GAT with direction invariants, the constant-velocity
/// future through the teacher's architecture — and the no-teacher control predict from `G_0`
/// only: NaN future frames change nothing.
#[test]
fn inference_never_reads_the_future() {
    let _g = serial();
    for (kind, set) in [
        ("sgdd", vec![]),
        ("sgdd", vec!["model.student_directions=true"]),
        ("sgdd", vec!["model.student=\"cv-future\""]),
        ("no-teacher", vec!["model.student=\"cv-future\""]),
        ("sgdd", vec!["model.decoder=\"gf-node\""]),
    ] {
        let cfg = config_with(kind, 1, &set);
        let (_, test) = sgdd_load(&cfg);
        let (_vs, model) = sgdd_train::build_model(&cfg, &test, Device::Cpu).unwrap();
        assert_eq!(model.kind(), cfg.model.kind);
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
            "{kind} {set:?}: predictions changed when the future frames became NaN"
        );
    }
}

/// The constant-velocity student trains, and its imitation R² is reported.
#[test]
fn the_cv_future_student_trains_and_reports_imitation() {
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config_with(
        "sgdd",
        2,
        &[
            "model.student=\"cv-future\"",
            "model.align_standardize=true",
        ],
    );
    let (r, _) = train(&cfg, &tmp.path().join("run"), RunMode::Fresh, None).unwrap();
    assert!(r.imitation_r2_test.is_some_and(f64::is_finite), "{r:?}");
    let log = std::fs::read_to_string(tmp.path().join("run/metrics.jsonl")).unwrap();
    assert!(log.contains("\"imitation_r2\":"), "{log}");
}

fn sgdd_load(cfg: &RunConfig) -> (traj_data::Dataset, sgdd_train::Prepared) {
    let ds = traj_data::load_split(&cfg.data.dir, traj_data::Split::Test).unwrap();
    let p = sgdd_prepare(&ds, cfg);
    (ds, p)
}

fn sgdd_prepare(ds: &traj_data::Dataset, cfg: &RunConfig) -> sgdd_train::Prepared {
    sgdd_train::prepare(ds, &cfg.data).unwrap()
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

/// Resume after every epoch boundary 1..E−1 of a short run equals the uninterrupted run:
/// the same per-epoch losses and validation metrics, and a byte-identical `result.json`. The
/// SGDD run goes through both stages of the teacher-forcing schedule (teacher-forced, then a
/// coin flip per step), so on some steps the teacher gets no gradient at all — the case an
/// optimiser that moves gradient-less parameters by momentum gets wrong after a restart.
fn resume_at_every_boundary(kind: &str, epochs: usize, set: &[&str]) {
    let _g = serial();
    let cfg = config_with(kind, epochs, set);
    let tmp = tempfile::tempdir().unwrap();
    let full = tmp.path().join("full");
    let (whole, _) = train(&cfg, &full, RunMode::Fresh, None).unwrap();
    let expected = std::fs::read(full.join("result.json")).unwrap();
    for k in 1..epochs {
        let out = tmp.path().join(format!("stop{k}"));
        let (_, _) = train(&cfg, &out, RunMode::Fresh, Some(k)).unwrap();
        assert_eq!(losses(&out).len(), k);
        assert!(
            !out.join("result.json").exists(),
            "an unfinished run wrote a result"
        );
        let (resumed, _) = train(&cfg, &out, RunMode::Resume, None).unwrap();
        assert_eq!(
            losses(&full),
            losses(&out),
            "{kind}: resumed after epoch {k}"
        );
        assert_eq!(whole, resumed, "{kind}: resumed after epoch {k}");
        assert_eq!(
            std::fs::read(out.join("result.json")).unwrap(),
            expected,
            "{kind}: result.json after a resume at epoch {k}"
        );
    }
}

#[test]
fn sgdd_resumes_exactly_at_every_epoch_boundary() {
    // the paper's path: 12 training windows in batches of 5: 3 steps per epoch, 18 steps;
    // stage 1 = 6 steps
    resume_at_every_boundary(
        "sgdd",
        6,
        &[
            "model.teacher_path=\"scheduled\"",
            "model.lambda=1.0",
            "model.align_gate=\"all\"",
        ],
    );
    // the defaults: the teacher's own decoder and the running gate, whose running errors are
    // non-trainable state the checkpoint carries
    resume_at_every_boundary("sgdd", 4, &[]);
}

/// The same with the running statistics of standardised alignment (non-trainable state the
/// checkpoint must carry), SGE's own learning rate, the constant-velocity student and the
/// closed-form warm start (done once, at the end of epoch 2 — resumed runs neither skip nor
/// repeat it).
#[test]
fn sgdd_with_every_option_resumes_exactly() {
    resume_at_every_boundary(
        "sgdd",
        4,
        &[
            "model.align_standardize=true",
            "model.sge_lr_scale=10.0",
            "model.ridge_warm_start=true",
            "model.student=\"cv-future\"",
        ],
    );
}

#[test]
fn no_teacher_control_resumes_exactly_and_has_no_teacher() {
    resume_at_every_boundary("no-teacher", 3, &[]);
    let _g = serial();
    let cfg = config("no-teacher", 1);
    let (_, test) = sgdd_load(&cfg);
    let (vs, model) = sgdd_train::build_model(&cfg, &test, Device::Cpu).unwrap();
    let names: Vec<String> = vs.variables().into_keys().collect();
    assert!(names.iter().any(|n| n.starts_with("student.")), "{names:?}");
    assert!(
        !names.iter().any(|n| n.starts_with("teacher.")),
        "{names:?}"
    );
    let batch = test
        .batch(&[0, 1], Device::Cpu, &mut GraphCache::default())
        .unwrap();
    assert!(model.predict_with_teacher(&batch).unwrap().is_none());
}

#[test]
fn egno_resumes_exactly_at_every_epoch_boundary() {
    resume_at_every_boundary("egno", 4, &[]);
}

#[test]
fn a_run_directory_is_never_overwritten_without_force() {
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let cfg = config("egno", 1);
    train(&cfg, &out, RunMode::Fresh, None).unwrap();
    let before = std::fs::read(out.join("result.json")).unwrap();
    let err = train(&config("egno", 2), &out, RunMode::Fresh, None).unwrap_err();
    assert!(
        format!("{err:#}").contains("already holds a run"),
        "{err:#}"
    );
    assert_eq!(std::fs::read(out.join("result.json")).unwrap(), before);
    // --force replaces it: no stale result of the old run is left beside the new one
    let two = config("egno", 2);
    let (r, _) = train(&two, &out, RunMode::Force, None).unwrap();
    assert_eq!(r.epochs, 2);
    assert_eq!(losses(&out).len(), 2);
}

#[test]
fn resume_may_change_the_budget_but_not_the_model() {
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    train(&config("egno", 2), &out, RunMode::Fresh, None).unwrap();
    // a finished run: resuming it is a no-op that says so
    let (_, notes) = train(&config("egno", 2), &out, RunMode::Resume, None).unwrap();
    assert!(
        notes.iter().any(|n| n.contains("already finished")),
        "{notes:?}"
    );
    assert_eq!(losses(&out).len(), 2);
    // extend it, with a lower learning rate: allowed and reported
    let more = config_with("egno", 4, &["train.adam.lr=1e-4"]);
    let (r, notes) = train(&more, &out, RunMode::Resume, None).unwrap();
    assert_eq!(r.epochs, 4);
    assert!(
        notes.iter().any(|n| n.contains("train.epochs"))
            && notes.iter().any(|n| n.contains("train.adam.lr")),
        "{notes:?}"
    );
    // a model or data change is refused, naming the key
    for (set, key) in [
        ("model.hidden=16", "model.hidden"),
        ("train.batch_size=4", "train.batch_size"),
        ("train.seed=3", "train.seed"),
        ("data.num_targets=4", "data.num_targets"),
    ] {
        let err = train(&config_with("egno", 4, &[set]), &out, RunMode::Resume, None).unwrap_err();
        assert!(format!("{err:#}").contains(key), "{set}: {err:#}");
    }
    // nothing to resume
    let err = train(
        &config("egno", 2),
        &tmp.path().join("none"),
        RunMode::Resume,
        None,
    )
    .unwrap_err();
    assert!(format!("{err:#}").contains("nothing to resume"), "{err:#}");
}

#[test]
fn a_non_finite_loss_stops_and_the_named_checkpoint_resumes() {
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let cfg = config("egno", 3);
    train(&cfg, &out, RunMode::Fresh, Some(1)).unwrap();
    let ck = out.join("checkpoint.safetensors");
    let good = std::fs::read(&ck).unwrap();
    let exploding = config_with(
        "egno",
        3,
        &["train.adam.lr=1e30", "train.divergence_factor=0"],
    );
    let err = train(&exploding, &out, RunMode::Resume, None).unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        (msg.contains("loss became")
            || msg.contains("non-finite")
            || msg.contains("gradient norm"))
            && msg.contains("checkpoint.safetensors"),
        "{msg}"
    );
    assert_eq!(
        std::fs::read(&ck).unwrap(),
        good,
        "the last good checkpoint was overwritten"
    );
    assert!(sgdd_train::load_checkpoint(&ck).is_ok());
    // it resumes with a lower learning rate and finishes
    let (r, _) = train(&cfg, &out, RunMode::Resume, None).unwrap();
    assert_eq!(r.epochs, 3);
    assert!(r.test.s2s.is_finite());
}

#[test]
fn a_diverging_loss_stops_before_the_step() {
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    train(&config("egno", 3), &out, RunMode::Fresh, Some(1)).unwrap();
    let ck = out.join("checkpoint.safetensors");
    let good = std::fs::read(&ck).unwrap();
    let wild = config_with(
        "egno",
        3,
        &["train.adam.lr=1e3", "train.divergence_factor=2.0"],
    );
    let err = train(&wild, &out, RunMode::Resume, None).unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("diverged") && msg.contains("train.divergence_factor"),
        "{msg}"
    );
    assert_eq!(std::fs::read(&ck).unwrap(), good);
}

/// `train.on_divergence = "stop"`: the diverging epoch is discarded and the run ends at its last
/// good epoch, scored at its best validation, with the weights of that epoch's checkpoint.
#[test]
fn on_divergence_stop_ends_the_run_at_its_last_good_epoch() {
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    train(&config("egno", 3), &out, RunMode::Fresh, Some(1)).unwrap();
    let ck = out.join("checkpoint.safetensors");
    let (good, _) = sgdd_train::load_checkpoint(&ck).unwrap();
    let wild = config_with(
        "egno",
        3,
        &[
            "train.adam.lr=1e3",
            "train.divergence_factor=2.0",
            "train.on_divergence=\"stop\"",
        ],
    );
    let (r, notes) = train(&wild, &out, RunMode::Resume, None).unwrap();
    assert_eq!((r.epochs, r.best_epoch), (1, 1), "{notes:?}");
    assert!(r.test.s2s.is_finite());
    let why = r.stopped_early.unwrap_or_default();
    assert!(
        why.contains("diverged") && why.contains("ends at epoch 1"),
        "{why}"
    );
    assert!(
        notes.iter().any(|n| n.contains("on_divergence")),
        "{notes:?}"
    );
    let (kept, _) = sgdd_train::load_checkpoint(&ck).unwrap();
    assert_eq!(kept.len(), good.len());
    for (name, t) in &good {
        assert!(t.equal(&kept[name]), "{name} changed");
    }
    // a finished run: resuming it again trains nothing more
    let (again, _) = train(&wild, &out, RunMode::Resume, None).unwrap();
    assert_eq!(again.epochs, 1);
}

#[test]
fn early_stopping_ends_a_run_that_stopped_improving() {
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    // a learning rate so small the weights cannot change: the validation metric never improves
    let cfg = config_with("egno", 6, &["train.adam.lr=1e-30", "train.patience=2"]);
    let (r, notes) = train(&cfg, &tmp.path().join("run"), RunMode::Fresh, None).unwrap();
    assert_eq!(r.epochs, 3, "{notes:?}");
    assert_eq!(r.best_epoch, 1);
    assert!(
        r.stopped_early
            .as_deref()
            .is_some_and(|s| s.contains("early stopping"))
    );
    assert!(notes.iter().any(|n| n.contains("early stopping")));
}

#[test]
fn fine_tuning_starts_from_the_checkpoint_weights() {
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let (src, _) = train(
        &config("egno", 2),
        &tmp.path().join("src"),
        RunMode::Fresh,
        None,
    )
    .unwrap();
    let cfg = config_with("egno", 1, &["train.adam.lr=1e-30", "train.seed=9"]);
    let mut t = Trainer::new(
        cfg,
        &tmp.path().join("tuned"),
        TrainerOptions {
            init_from: Some(tmp.path().join("src/best.safetensors")),
            ..Default::default()
        },
    )
    .unwrap();
    t.train(None).unwrap();
    let tuned = t.finish().unwrap();
    assert_eq!(tuned.test, src.test);
}

#[test]
fn tensorboard_logs_read_back() {
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    train(&config("sgdd", 2), &out, RunMode::Fresh, None).unwrap();
    let script = r#"
import sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
acc = EventAccumulator(sys.argv[1]); acc.Reload()
for tag in sorted(acc.Tags()["scalars"]):
    print(tag, len(acc.Scalars(tag)))
"#;
    let res = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(out.join("tensorboard"))
        .output()
        .expect("python3 (the project venv, with tensorboard)");
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    let text = String::from_utf8(res.stdout).unwrap();
    // 12 windows, batch 5: 3 steps per epoch, 2 epochs, validation every epoch
    for line in [
        "train/loss 6",
        "train/lr 6",
        "train/grad_norm 6",
        "train/L_rep 6",
        "val/s2s 2",
        "val/s2t 2",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing `{line}` in\n{text}"
        );
    }
}

#[test]
fn baseline_and_egno_are_scored_by_the_same_code() {
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let (cv, _) = train(
        &config("const-vel", 1),
        &tmp.path().join("cv"),
        RunMode::Fresh,
        None,
    )
    .unwrap();
    assert_eq!(cv.steps, 0);
    assert!(cv.test.s2s > 0.0 && cv.test.s2t > 0.0 && cv.test.s2s.is_finite());
    let (eg, _) = train(
        &config("egno", 2),
        &tmp.path().join("eg"),
        RunMode::Fresh,
        None,
    )
    .unwrap();
    assert!(eg.test.s2t.is_finite() && eg.steps == 2 * 3);
}

/// The static baseline (initial positions held) scores exactly the mean squared displacement
/// from the condition frame, computed here from the raw trajectories in original units.
#[test]
fn static_baseline_scores_the_displacement_from_the_condition_frame() {
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config("static", 1);
    let (r, _) = train(&cfg, &tmp.path().join("static"), RunMode::Fresh, None).unwrap();
    assert_eq!(r.steps, 0);
    let ds = traj_data::load_split(&cfg.data.dir, traj_data::Split::Test).unwrap();
    // condition on frame 30, targets 32, 34, …, 40 (the default N-body windows)
    let traj_data::Starts::Fixed(ref anchors) = cfg.data.starts else {
        panic!("fixed windows")
    };
    let (start, last) = (anchors[0], anchors[0] + cfg.data.delta_frame);
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
    let (cv, _) = train(
        &config("const-vel", 1),
        &tmp.path().join("cv"),
        RunMode::Fresh,
        None,
    )
    .unwrap();
    assert!(
        (cv.test.s2s - r.test.s2s).abs() > 1e-6,
        "static and constant velocity must differ"
    );
}

/// Plain GF-NODE (the authors' adaptive Dopri5) and SGDD-GFNODE (SGDD's student, teacher and
/// SGE, the GF-NODE decoder; fixed-step RK4) train and resume exactly like the other kinds.
#[test]
fn gf_node_and_sgdd_gfnode_resume_exactly() {
    resume_at_every_boundary("gf-node", 3, &[]);
    resume_at_every_boundary(
        "sgdd",
        2,
        &[
            "model.decoder=\"gf-node\"",
            "model.gf_node.ode.solver=\"rk4\"",
        ],
    );
    let _g = serial();
    let cfg = config_with("sgdd", 1, &["model.decoder=\"gf-node\""]);
    let (_, test) = sgdd_load(&cfg);
    let (vs, _) = sgdd_train::build_model(&cfg, &test, Device::Cpu).unwrap();
    let names: Vec<String> = vs.variables().into_keys().collect();
    for part in [
        "decoder.ode_h.",
        "decoder.encoder.",
        "teacher.",
        "student.",
        "sge.",
    ] {
        assert!(
            names.iter().any(|n| n.starts_with(part)),
            "{part}: {names:?}"
        );
    }
}

/// `data.uneven_targets` (GF-NODE's uneven sampling). Off (the default): training batches are
/// the fixed ones and the config writes no key. On: each training window predicts sorted,
/// distinct frames of its horizon drawn per (seed, epoch, sample) — the horizon holds the fixed
/// targets' very frames — with their times in the batch; validation and test keep the fixed
/// targets; a GF-NODE trains on them and resumes exactly; other kinds are refused.
#[test]
fn uneven_training_targets() {
    use traj_data::Split;
    let _g = serial();
    let all = |p: &sgdd_train::Prepared| (0..p.samples).collect::<Vec<i64>>();
    let mut graphs = GraphCache::default();
    // off: bit-identical batches, no key written
    let off = config("gf-node", 1);
    assert!(!off.to_toml().contains("uneven"), "{}", off.to_toml());
    let (_, p) = sgdd_train::load_split(&off.data, Split::Train, None).unwrap();
    assert!(p.horizon.is_none());
    let fixed = p.batch(&all(&p), Device::Cpu, &mut graphs).unwrap();
    let drawn = p
        .train_batch(&all(&p), 3, 5, Device::Cpu, &mut graphs)
        .unwrap();
    assert!(drawn.times.is_none());
    assert!(fixed.y.equal(&drawn.y) && fixed.vy.equal(&drawn.vy));

    // on: the horizon of charged N-body windows (Δ = 10, T = 5)
    let on = config_with("gf-node", 2, &["data.uneven_targets=true"]);
    assert!(on.to_toml().contains("uneven_targets = true"));
    let (_, p) = sgdd_train::load_split(&on.data, Split::Train, None).unwrap();
    let (_, val) = sgdd_train::load_split(&on.data, Split::Val, None).unwrap();
    assert!(val.horizon.is_none(), "evaluation keeps the fixed targets");
    let hz = p.horizon.as_ref().unwrap();
    assert_eq!(hz.y.size(), [p.samples, 10, p.n, 3]);
    for (k, o) in [2i64, 4, 6, 8, 10].into_iter().enumerate() {
        assert!(hz.y.select(1, o - 1).equal(&p.y.select(1, k as i64)));
        assert!(hz.vy.select(1, o - 1).equal(&p.vy.select(1, k as i64)));
    }
    let mut differs = false;
    for sample in 0..p.samples {
        for epoch in 0..4 {
            let o = hz.offsets(1, epoch, sample, 5);
            assert_eq!(o.len(), 5);
            assert!(o.windows(2).all(|w| w[0] < w[1]), "{o:?}");
            assert!(o.iter().all(|&f| (1..=10).contains(&f)), "{o:?}");
            assert_eq!(o, hz.offsets(1, epoch, sample, 5));
            differs |= o != hz.offsets(1, epoch + 1, sample, 5);
        }
    }
    assert!(differs, "the draws never change across epochs");
    let idx = [3i64, 0, 7];
    let b = p.train_batch(&idx, 1, 2, Device::Cpu, &mut graphs).unwrap();
    let times = b.times.as_ref().unwrap();
    assert_eq!(times.size(), [3, 5]);
    for (j, &i) in idx.iter().enumerate() {
        let o = hz.offsets(1, 2, i, 5);
        for (k, &f) in o.iter().enumerate() {
            let (j, k) = (j as i64, k as i64);
            let want = hz.y.get(i).get(f as i64 - 1);
            let got = b.y.get(k).narrow(0, j * p.n, p.n);
            assert!(got.equal(&want), "sample {i}, target {k}");
            let t = times.double_value(&[j, k]);
            assert!((t - f as f64 * hz.dt).abs() < 1e-12, "{t} vs frame {f}");
        }
    }
    // a GF-NODE trains on them, resumes exactly, and learns from other frames than the fixed
    drop(_g);
    resume_at_every_boundary("gf-node", 2, &["data.uneven_targets=true"]);
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let one = |set: &[&str], dir: &str| {
        train(
            &config_with("gf-node", 1, set),
            &tmp.path().join(dir),
            RunMode::Fresh,
            None,
        )
        .unwrap();
        losses(&tmp.path().join(dir))[0].0
    };
    let (even, uneven) = (
        one(&[], "even"),
        one(&["data.uneven_targets=true"], "uneven"),
    );
    assert!(uneven.is_finite() && even != uneven, "{even} vs {uneven}");
    // other kinds predict fixed frames
    let set = vec!["data.uneven_targets=true".to_owned()];
    for kind in ["egno", "sgdd"] {
        let t = format!(
            "[data]\ndir = {:?}\n[model]\nkind = \"{kind}\"\n",
            dataset()
        );
        let err = format!("{:#}", RunConfig::from_toml(&t, &set).unwrap_err());
        assert!(
            err.contains("data.uneven_targets") && err.contains(kind),
            "{err}"
        );
    }
}

#[test]
fn gf_node_settings_are_checked_with_their_key() {
    let text = |set: &[&str]| {
        let set: Vec<String> = set.iter().map(|s| (*s).to_owned()).collect();
        let t = format!("[data]\ndir = {:?}\n", dataset());
        format!("{:#}", RunConfig::from_toml(&t, &set).unwrap_err())
    };
    let err = text(&["model.kind=\"egno\"", "model.decoder=\"gf-node\""]);
    assert!(err.contains("model.decoder"), "{err}");
    let err = text(&["model.kind=\"gf-node\"", "model.gf_node.ode.rtol=-1.0"]);
    assert!(
        err.contains("model.gf_node.ode") && err.contains("rtol"),
        "{err}"
    );
    let err = text(&["model.kind=\"gf-node\"", "model.gf_node.time_emb_dim=2"]);
    assert!(err.contains("model.gf_node.time_emb_dim"), "{err}");
    let err = text(&["model.gf_node.vector_dynamics=\"rotating\""]);
    assert!(
        err.contains("vector_dynamics") || err.contains("rotating"),
        "{err}"
    );
}

#[test]
fn k_beyond_the_joint_basis_is_an_error_naming_the_key() {
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    // 5 nodes × 5 frames = 25 joint modes
    let err = train(
        &config_with("sgdd", 1, &["model.k=26"]),
        &tmp.path().join("r"),
        RunMode::Fresh,
        None,
    )
    .unwrap_err();
    assert!(format!("{err:#}").contains("model.k = 26"), "{err:#}");
}

#[test]
fn predictions_are_deterministic_for_a_seed() {
    let _g = serial();
    let cfg = config("sgdd", 1);
    let (_, test) = sgdd_load(&cfg);
    let run = |_: ()| {
        let (_vs, model) = sgdd_train::build_model(&cfg, &test, Device::Cpu).unwrap();
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
    let mut cfg = config("egno", 1).into_inner();
    let ds = traj_data::load_split(&cfg.data.dir, traj_data::Split::Val).unwrap();
    // 50 frames, horizon 10: sliding anchors 0, 5, …, 35 → 8 per trajectory
    cfg.data.starts = traj_data::Starts::Sliding { stride: 5 };
    let p = sgdd_train::prepare(&ds, &cfg.data).unwrap();
    assert_eq!(p.samples, 8 * ds.len() as i64);
    // per-trajectory start frames from metadata, consecutive targets
    cfg.data.starts = traj_data::Starts::Metadata;
    cfg.data.targets = traj_data::TargetFrames::Consecutive;
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
    let p = sgdd_train::prepare(&with_starts, &cfg.data).unwrap();
    let n = ds.len() as i64;
    assert_eq!(p.samples, n * (n + 1) / 2);
    // consecutive targets: the last T frames up to the horizon
    assert_eq!(p.target_times.len(), 5);
    let err = sgdd_train::prepare(&ds, &cfg.data).unwrap_err();
    assert!(format!("{err:#}").contains("start_frames"), "{err:#}");
}

/// A batch that mixes a 5-node and a 3-node graph runs through SGDD (a joint basis per distinct
/// graph), and the 5-node graph's prediction equals the one it gets in a batch of its own.
#[test]
fn sgdd_predicts_batches_of_graphs_of_different_sizes() {
    let _g = serial();
    let cfg = config("sgdd", 1);
    let (_, test) = sgdd_load(&cfg);
    let (_vs, model) = sgdd_train::build_model(&cfg, &test, Device::Cpu).unwrap();
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
    let mixed = sgdd_train::Batch {
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
        shared_graph: false,
        spectral_graph: None,
        center: tch::Tensor::cat(&[&alone.center, &alone.center], 0),
        scale: tch::Tensor::cat(&[&alone.scale, &alone.scale], 0),
        times: None,
    };
    let got = tch::no_grad(|| model.predict(&mixed)).unwrap();
    assert_eq!(got.size(), [5, 8, 3]);
    assert_eq!(got.isfinite().all().int64_value(&[]), 1);
    assert!(got.narrow(1, 0, 5).allclose(&expected, 1e-4, 1e-5, false));
}

/// Brute-force undirected edges `(i, j)`, `i < j`, of `[N, 3]` points: pairs closer than
/// `cutoff`, or (with `k`) the symmetrised k-nearest-neighbour graph.
fn brute_graph(x: &[f64], cutoff: Option<f64>, k: usize) -> Vec<(usize, usize)> {
    let n = x.len() / 3;
    let d = |i: usize, j: usize| {
        (0..3)
            .map(|c| (x[3 * i + c] - x[3 * j + c]).powi(2))
            .sum::<f64>()
    };
    let mut set = std::collections::BTreeSet::new();
    for i in 0..n {
        let mut others: Vec<usize> = (0..n).filter(|&j| j != i).collect();
        others.sort_by(|&a, &b| d(i, a).total_cmp(&d(i, b)).then(a.cmp(&b)));
        for (rank, &j) in others.iter().enumerate() {
            let keep = match cutoff {
                Some(c) => d(i, j) < c * c,
                None => rank < k,
            };
            if keep {
                set.insert((i.min(j), i.max(j)));
            }
        }
    }
    set.into_iter().collect()
}

/// `data.graph = "knn" | "radius"`: every window has the graph of its own condition frame
/// (checked against a brute force, the radius in original units), a batch carries each
/// sample's edges, and SGDD predicts a batch of such windows as it predicts each alone (each
/// with its own spectral basis).
#[test]
fn windows_have_graphs_of_their_own() {
    let _g = serial();
    let undirected_of = |edges: &[(i64, i64)]| -> Vec<(usize, usize)> {
        let mut u: Vec<(usize, usize)> = edges
            .iter()
            .filter(|(r, s)| r < s)
            .map(|&(r, s)| (r as usize, s as usize))
            .collect();
        u.sort_unstable();
        u
    };
    for (set, cutoff, k) in [
        (["data.graph=\"knn\"", "data.graph_k=2"], None, 2),
        (
            ["data.graph=\"radius\"", "data.graph_radius=3.0"],
            Some(3.0),
            0,
        ),
        // the spectral basis only: message passing keeps the complete graph
        (
            ["data.spectral_graph=\"knn\"", "data.spectral_graph_k=2"],
            None,
            2,
        ),
    ] {
        let cfg = config_with("sgdd", 1, &set);
        let (_, p) = sgdd_load(&cfg);
        let graphs: Vec<Vec<(usize, usize)>> = match (&p.graphs, &p.spectral) {
            (sgdd_train::SampleGraphs::PerSample { edges, .. }, None) => {
                edges.iter().map(|e| undirected_of(e)).collect()
            }
            (sgdd_train::SampleGraphs::Shared { edges, .. }, Some(each)) => {
                assert_eq!(edges.len(), 20, "the complete graph of 5 nodes");
                each.iter()
                    .map(|u| {
                        let mut u = u.clone();
                        u.sort_unstable();
                        u
                    })
                    .collect()
            }
            _ => panic!("{set:?}: expected a graph per window"),
        };
        let mut distinct = std::collections::BTreeSet::new();
        for s in 0..p.samples {
            let scale = p.scale.double_value(&[s]);
            let x: Vec<f64> =
                Vec::try_from((p.x0.get(s).to_kind(Kind::Double) * scale).flatten(0, -1)).unwrap();
            let want = brute_graph(&x, cutoff, k);
            assert_eq!(graphs[s as usize], want, "{set:?}: sample {s}");
            distinct.insert(want);
        }
        assert!(
            distinct.len() > 1,
            "{set:?}: every window has the same graph"
        );
        let (_vs, model) = sgdd_train::build_model(&cfg, &p, Device::Cpu).unwrap();
        let idx: Vec<i64> = (0..p.samples).collect();
        let batch = p
            .batch(&idx, Device::Cpu, &mut GraphCache::default())
            .unwrap();
        if p.spectral.is_none() {
            let total: usize = graphs.iter().map(|g| 2 * g.len()).sum();
            assert_eq!(batch.graph.num_edges(), total as i64);
            assert_eq!(batch.edge_attr.size()[0], total as i64);
        }
        let together = tch::no_grad(|| model.predict(&batch)).unwrap();
        for s in [0, p.samples - 1] {
            let alone = p
                .batch(&[s], Device::Cpu, &mut GraphCache::default())
                .unwrap();
            let got = tch::no_grad(|| model.predict(&alone)).unwrap();
            let want = together.narrow(1, s * p.n, p.n);
            assert!(
                got.allclose(&want, 1e-4, 1e-5, false),
                "{set:?}: sample {s}"
            );
        }
    }
}

/// EGNO's inputs reach every model: the speed ‖v_0‖ as a node feature, and node types one-hot.
#[test]
fn speed_and_type_features_reach_the_models() {
    let _g = serial();
    let cfg = config("egno", 1);
    let ds = traj_data::load_split(&cfg.data.dir, traj_data::Split::Test).unwrap();
    let p = sgdd_train::prepare(&ds, &cfg.data).unwrap();
    // charged particles: [charge, mass, ‖v_0‖]
    assert_eq!(p.node_dim(), 3);
    let speed = p.v0.square().sum_dim_intlist(-1, false, Kind::Float).sqrt();
    assert!(p.h.select(2, 2).allclose(&speed, 1e-6, 1e-6, false));
    let mut plain = cfg.clone().into_inner();
    plain.data.speed_feature = false;
    assert_eq!(sgdd_train::prepare(&ds, &plain.data).unwrap().node_dim(), 2);

    // node types 7, 1, 7, 8, 1 → one-hot over [1, 7, 8] after the raw features, before the speed
    let (meta, layout, trajs) = ds.clone().into_parts();
    let _ = layout;
    let trajs: Vec<_> = trajs
        .into_iter()
        .map(|t| t.with_node_types(vec![7, 1, 7, 8, 1]).unwrap())
        .collect();
    let typed = traj_data::Dataset::new(meta, trajs).unwrap();
    let p = sgdd_train::prepare(&typed, &cfg.data).unwrap();
    assert_eq!(p.node_dim(), 2 + 3 + 1);
    let one_hot = Vec::<f32>::try_from(p.h.get(0).narrow(1, 2, 3).flatten(0, -1)).unwrap();
    assert_eq!(
        one_hot,
        [0., 1., 0., 1., 0., 0., 0., 1., 0., 0., 0., 1., 1., 0., 0.]
    );
    // and the model is built for (and runs on) that width
    let (_vs, model) = sgdd_train::build_model(&cfg, &p, Device::Cpu).unwrap();
    let batch = p
        .batch(&[0], Device::Cpu, &mut GraphCache::default())
        .unwrap();
    assert!(tch::no_grad(|| model.predict(&batch)).is_ok());
}
