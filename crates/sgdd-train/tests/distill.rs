//! `Distiller` end to end on a tiny generated N-body dataset with tiny trained teachers: frozen
//! teachers get no gradient, a distilled student's loss falls, the A2D step's wiring (weights on
//! the capped simplex, the combined gradient is the weighted sum of the teachers' gradients),
//! bit-exact resume, protected run directories, teachers trained on other windows refused.
//!
//! libtorch's generator is process-global: every test holds [`serial`].

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock};

use sgdd_train::{
    CheckedDistillConfig, DistillConfig, DistillOptions, Distiller, RunConfig, RunMode, Trainer,
    TrainerOptions,
};
use tch::{Kind, Tensor};
use traj_data::nbody::{NBodySpec, System, generate_dataset_dir};

fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("sgdd-distill-test-{}", std::process::id()))
}

/// A tiny charged dataset and three teachers trained on it: EGNO (3 epochs), a no-teacher
/// control (2 epochs) and a weak EGNO (1 epoch, another seed). Built once per test binary.
fn fixture() -> &'static (PathBuf, Vec<PathBuf>) {
    static F: OnceLock<(PathBuf, Vec<PathBuf>)> = OnceLock::new();
    F.get_or_init(|| {
        let _ = std::fs::remove_dir_all(root());
        let data = root().join("data");
        let mut spec = NBodySpec::new(System::Charged);
        spec.n_train = 12;
        spec.n_val = 6;
        spec.n_test = 6;
        spec.seed = 7;
        generate_dataset_dir(&spec, &data, &|_, _| {}).expect("generate");
        let mut teachers = Vec::new();
        for (name, kind, epochs, seed) in [
            ("egno", "egno", 3, 0),
            ("no-teacher", "no-teacher", 2, 0),
            ("weak", "egno", 1, 9),
        ] {
            let text = format!(
                "[data]\ndir = {data:?}\n[model]\nkind = \"{kind}\"\nhidden = 8\n\
                 decoder_layers = 1\nz_dim = 4\nstudent_layers = 1\nheads = 2\nk = 6\n\
                 [train]\nepochs = {epochs}\nbatch_size = 6\neval_every = 1\ndevice = \"cpu\"\n\
                 threads = 1\nseed = {seed}\ntensorboard = false\n"
            );
            let cfg = RunConfig::from_toml(&text, &[]).unwrap();
            let out = root().join("teachers").join(name);
            let mut t = Trainer::new(cfg, &out, TrainerOptions::default()).unwrap();
            t.train(None).unwrap();
            t.finish().unwrap();
            teachers.push(out.join("best.safetensors"));
        }
        (data, teachers)
    })
}

fn config(set: &[&str]) -> CheckedDistillConfig {
    let (data, teachers) = fixture();
    let text = format!(
        "[data]\ndir = {data:?}\n[student]\nkind = \"mlp\"\nhidden = 8\nlayers = 1\n\
         [distill]\nteachers = {teachers:?}\n[train]\nepochs = 3\nbatch_size = 5\n\
         eval_every = 1\ndevice = \"cpu\"\nthreads = 1\n"
    );
    let set: Vec<String> = set.iter().map(|s| (*s).to_owned()).collect();
    DistillConfig::from_toml(&text, &set).unwrap()
}

fn new(cfg: &CheckedDistillConfig, out: &Path, mode: RunMode) -> anyhow::Result<Distiller> {
    Distiller::new(
        cfg.clone(),
        out,
        DistillOptions {
            mode,
            observer: None,
        },
    )
}

/// Variables of a store in name order, copied.
fn weights(vs: &tch::nn::VarStore) -> Vec<Tensor> {
    let vars: std::collections::BTreeMap<String, Tensor> = vs.variables().into_iter().collect();
    vars.into_values().map(|t| t.detach().copy()).collect()
}

fn teacher_weights(d: &Distiller) -> Vec<Tensor> {
    d.teachers().iter().flat_map(|t| weights(&t.vs)).collect()
}

/// Teachers are frozen: none of their variables requires a gradient, and after training steps
/// every one of them is unchanged, while the student's moved and its training loss fell.
#[test]
fn frozen_teachers_get_no_gradient_and_the_student_learns() {
    let _g = serial();
    let out = root().join("runs/frozen");
    let cfg = config(&[
        "train.epochs=8",
        "train.adam.lr=0.01",
        "distill.weighting=\"a2d\"",
    ]);
    let mut d = new(&cfg, &out, RunMode::Fresh).unwrap();
    assert_eq!(d.teachers().len(), 3);
    for t in d.teachers() {
        assert!(t.parameters() > 0);
        assert!(
            t.vs.variables().values().all(|v| !v.requires_grad()),
            "{}",
            t.checkpoint.display()
        );
    }
    let before = teacher_weights(&d);
    let student_before = weights(d.var_store());
    d.train(None).unwrap();
    for (a, b) in before.iter().zip(teacher_weights(&d)) {
        assert!(a.equal(&b), "a teacher variable changed");
    }
    let moved = weights(d.var_store())
        .iter()
        .zip(&student_before)
        .any(|(a, b)| !a.equal(b));
    assert!(moved, "the student did not train");
    let h = d.history();
    assert!(
        h.last().unwrap().loss < 0.5 * h[0].loss,
        "training loss {} → {}",
        h[0].loss,
        h.last().unwrap().loss
    );
    for e in h {
        assert_eq!(e.alpha.len(), 3);
        assert!((e.alpha.iter().sum::<f64>() - 1.0).abs() < 1e-9);
    }
    let (r, timing) = d.finish().unwrap();
    assert_eq!(r.teachers.len(), 3);
    assert!(r.student_parameters > 0);
    let alphas: f64 = r.teachers.iter().map(|t| t.mean_alpha.unwrap()).sum();
    assert!((alphas - 1.0).abs() < 1e-9);
    assert_eq!(timing.teacher_inference.len(), 3);
    for f in [
        "result.json",
        "timing.json",
        "metrics.jsonl",
        "best.safetensors",
    ] {
        assert!(out.join(f).exists(), "{f}");
    }
    let lines = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 8);
}

/// Checks one A2D step on samples `idx`: the weights lie on the simplex capped at `cap`, and the
/// step's gradient is `∇L_task + λ Σ α_m ∇L_KD,m`, recomputed from the losses one by one.
fn check_a2d_step(d: &mut Distiller, idx: &[i64], cap: f64, lambda: f64) {
    let step = d.step_gradients(idx).unwrap();
    assert_eq!(step.alpha.len(), 3);
    assert!(
        (step.alpha.iter().sum::<f64>() - 1.0).abs() < 1e-9,
        "{:?}",
        step.alpha
    );
    assert!(
        step.alpha
            .iter()
            .all(|&a| (-1e-12..=cap + 1e-9).contains(&a)),
        "{:?}",
        step.alpha
    );
    let pieces = d.loss_pieces(idx).unwrap();
    let params: Vec<Tensor> = {
        let vars: std::collections::BTreeMap<String, Tensor> =
            d.var_store().variables().into_iter().collect();
        vars.into_values().collect()
    };
    let grad = |l: &Tensor| Tensor::run_backward(&[l], &params, true, false);
    let task = grad(&pieces.0);
    let kd: Vec<Vec<Tensor>> = pieces.1.iter().map(grad).collect();
    for (i, g) in step.gradients.iter().enumerate() {
        let mut want = task[i].to_kind(Kind::Double);
        for (m, a) in step.alpha.iter().enumerate() {
            want += kd[m][i].to_kind(Kind::Double) * (lambda * a);
        }
        let g = g.as_ref().unwrap().to_kind(Kind::Double);
        let err = (g - &want).abs().max().double_value(&[]);
        let scale = want.abs().max().double_value(&[]).max(1e-12);
        assert!(err < 1e-4 * scale, "parameter {i}: {err} vs {scale}");
    }
}

/// The A2D wiring, with weights from the raw gradients and from unit-normalised ones (the step
/// still combines the raw gradients), and the average's 1/M through the same code.
#[test]
fn a2d_weights_respect_the_cap_and_combine_the_teacher_gradients() {
    let _g = serial();
    let (cap, lambda) = (0.45, 0.7);
    let idx = [0i64, 3, 4, 7, 11];
    for (name, normalise) in [("a2d", false), ("a2d-normalised", true)] {
        let cfg = config(&[
            &format!("distill.cap={cap}"),
            &format!("distill.lambda={lambda}"),
            "distill.loss=\"freq\"",
            &format!("distill.a2d_normalise={normalise}"),
        ]);
        let mut d = new(&cfg, &root().join("runs").join(name), RunMode::Fresh).unwrap();
        check_a2d_step(&mut d, &idx, cap, lambda);
    }
    let cfg = config(&["distill.weighting=\"average\""]);
    let mut d = new(&cfg, &root().join("runs/average"), RunMode::Fresh).unwrap();
    let step = d.step_gradients(&idx).unwrap();
    assert!(step.alpha.iter().all(|&a| (a - 1.0 / 3.0).abs() < 1e-12));
}

fn tensors(path: &Path) -> Vec<(String, Vec<f64>)> {
    let (t, _) = sgdd_train::load_checkpoint(path).unwrap();
    t.into_iter()
        .map(|(k, v)| {
            (
                k,
                Vec::<f64>::try_from(v.to_kind(Kind::Double).flatten(0, -1)).unwrap(),
            )
        })
        .collect()
}

/// Stopping after any epoch and resuming gives bit for bit the uninterrupted run (student
/// weights, optimiser state, metrics), for A2D with an EGNO student and the ridge-initialised
/// MLP; a resume that changes the objective is refused naming the key.
#[test]
fn resume_is_bit_exact() {
    let _g = serial();
    for (name, set) in [
        (
            "egno-a2d",
            vec!["student.kind=\"egno\"", "distill.bands=\"time-dft\""],
        ),
        (
            "mlp-ridge",
            vec!["distill.init=\"ridge\"", "distill.loss=\"output\""],
        ),
    ] {
        let cfg = config(&set);
        let whole = root().join(format!("runs/resume-{name}-whole"));
        let mut d = new(&cfg, &whole, RunMode::Fresh).unwrap();
        d.train(None).unwrap();
        let (want, _) = d.finish().unwrap();
        drop(d);
        let parts = root().join(format!("runs/resume-{name}-parts"));
        let mut d = new(&cfg, &parts, RunMode::Fresh).unwrap();
        d.train(Some(1)).unwrap();
        drop(d);
        for _ in 0..2 {
            let mut d = new(&cfg, &parts, RunMode::Resume).unwrap();
            d.train(Some(1)).unwrap();
        }
        let mut d = new(&cfg, &parts, RunMode::Resume).unwrap();
        let (got, _) = d.finish().unwrap();
        assert_eq!(got, want, "{name}");
        assert_eq!(
            tensors(&whole.join("checkpoint.safetensors")),
            tensors(&parts.join("checkpoint.safetensors")),
            "{name}"
        );
        let strip = |p: &Path| {
            std::fs::read_to_string(p.join("metrics.jsonl"))
                .unwrap()
                .lines()
                .map(|l| {
                    let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                    v.as_object_mut().unwrap().remove("samples_per_second");
                    v
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(strip(&whole), strip(&parts), "{name}");
        drop(d);
        let mut changed = set.clone();
        changed.push("distill.lambda=2.0");
        let e = new(&config(&changed), &parts, RunMode::Resume).unwrap_err();
        assert!(format!("{e:#}").contains("distill.lambda"), "{e:#}");
        // a finished run is never replaced without --force
        let e = new(&cfg, &parts, RunMode::Fresh).unwrap_err();
        assert!(
            format!("{e:#}").contains("--force") || format!("{e:#}").contains("force"),
            "{e:#}"
        );
    }
}

/// A teacher trained on other windows is refused, naming it.
#[test]
fn teachers_of_other_windows_are_refused() {
    let _g = serial();
    let cfg = config(&["data.num_targets=2"]);
    let e = new(&cfg, &root().join("runs/windows"), RunMode::Fresh).unwrap_err();
    let msg = format!("{e:#}");
    assert!(
        msg.contains("other windows") && msg.contains("best.safetensors"),
        "{msg}"
    );
}
