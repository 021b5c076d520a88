use std::path::Path;

use tch::{Device, Kind, Tensor};
use traj_data::navier_stokes::{NavierStokesSpec, NsDatasetSpec};

use super::*;
use crate::RunMode;

/// A tiny Navier–Stokes dataset: 8², 6 frames, 6 / 2 / 2 sequences.
fn tiny_data(dir: &Path) {
    NsDatasetSpec {
        ns: NavierStokesSpec {
            resolution: 8,
            dt: 1e-2,
            steps_per_frame: 10,
            frames: 5,
            ..Default::default()
        },
        train: 6,
        val: 2,
        test: 2,
    }
    .generate_dir(dir, &|_, _| {})
    .unwrap();
}

fn config(data: &Path, set: &[&str]) -> CheckedGridConfig {
    let text = format!(
        "[data]\ndir = {data:?}\nt_in = 3\nt_out = 2\nstride = 1\n[model]\narch = \"resnet\"\n\
         width = 4\nlayers = 1\n[train]\nepochs = 3\nbatch_size = 4\nthreads = 1\n\
         tensorboard = false\n[train.adam]\nlr = 0.003\n"
    );
    let set: Vec<String> = set.iter().map(|s| (*s).to_owned()).collect();
    GridDistillConfig::from_toml(&text, &set).unwrap()
}

fn run(cfg: CheckedGridConfig, out: &Path) -> (GridDistiller, GridResult) {
    let mut d = GridDistiller::new(cfg, out, DistillOptions::default()).unwrap();
    d.train(None).unwrap();
    let (r, _) = d.finish().unwrap();
    (d, r)
}

/// A teacher trained alone, then students taught by it and by a second teacher: the teachers
/// stay frozen and unchanged, the frequency-aligned student's loss falls, A2D's weights sum to 1
/// within the cap, and a resumed run ends bit-identical to an uninterrupted one.
#[test]
fn grid_teachers_teach_students_end_to_end() {
    let _rng = crate::trainer::torch_rng();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("ns");
    tiny_data(&data);
    // windows: 6 sequences × (6 − 5 + 1) starts
    let (_, teacher) = run(
        config(
            &data,
            &[
                "model.arch=\"fno\"",
                "model.width=6",
                "model.modes=2",
                "distill.loss=\"none\"",
            ],
        ),
        &tmp.path().join("teacher"),
    );
    assert_eq!(teacher.kd, KdLoss::None);
    assert!(teacher.test.mse.is_finite() && teacher.test.rel_l2 > 0.0);
    let (_, weak) = run(
        config(
            &data,
            &["train.epochs=1", "model.width=2", "distill.loss=\"none\""],
        ),
        &tmp.path().join("weak"),
    );
    assert!(weak.parameters < teacher.parameters);
    let teachers = format!(
        "distill.teachers=[{:?}, {:?}]",
        tmp.path().join("teacher/best.safetensors"),
        tmp.path().join("weak/best.safetensors")
    );
    let student = |extra: &[&str]| {
        let mut set = vec![
            teachers.as_str(),
            "distill.loss=\"freq\"",
            "distill.bands=\"dft\"",
            "distill.time_cutoff=0",
            "distill.space_cutoff=1",
            "distill.cap=0.9",
        ];
        set.extend_from_slice(extra);
        config(&data, &set)
    };
    let (d, r) = run(student(&[]), &tmp.path().join("student"));
    for t in d.teachers() {
        assert!(
            t.vs.variables().values().all(|v| !v.requires_grad()),
            "a teacher is frozen"
        );
    }
    let h = d.history();
    assert!(h.last().unwrap().loss < h[0].loss, "{h:?}");
    for e in h {
        assert_eq!(e.alpha.len(), 2);
        assert!((e.alpha.iter().sum::<f64>() - 1.0).abs() < 1e-9);
    }
    let mean: Vec<f64> = r.teachers.iter().map(|t| t.mean_alpha.unwrap()).collect();
    assert!(mean.iter().all(|a| *a <= 0.9 + 1e-9), "{mean:?}");
    // the teacher's reported test metrics are its own run's (to f32 round-off)
    let rel = (r.teachers[0].test.mse - teacher.test.mse).abs() / teacher.test.mse;
    assert!(rel < 1e-5, "{:?} vs {:?}", r.teachers[0].test, teacher.test);

    // hidden-state KD: the adapter (student width 4 → FNO features 12) gets gradients, the
    // teacher none, and training leaves the teacher's weights as they were
    let before = d.teachers()[0].vs.variables();
    let (mut h, _) = run(
        student(&["distill.hidden_weight=0.5", "train.epochs=1"]),
        &tmp.path().join("hidden"),
    );
    let adapter = h.var_store().variables()["adapter.weight"].shallow_clone();
    assert_eq!(adapter.size(), [12, 4]);
    let idx = [0i64, 1, 2];
    let (_, _, hidden) = h.loss_pieces(&idx).unwrap();
    let hidden = hidden.expect("hidden_weight > 0");
    let g = Tensor::run_backward(&[&hidden], &[&adapter], false, false);
    assert!(g[0].abs().sum(Kind::Double).double_value(&[]) > 0.0);
    let step = h.step_gradients(&idx).unwrap();
    assert!(step.hidden > 0.0 && step.loss > step.task + step.hidden);
    for t in h.teachers() {
        assert!(t.vs.variables().values().all(|v| !v.requires_grad()));
    }
    for (name, v) in h.teachers()[0].vs.variables() {
        assert!(v.equal(&before[&name]), "teacher weight {name} changed");
    }
    // the adapter is not counted as the student's parameters
    assert_eq!(
        h.finish().unwrap().0.parameters,
        r.parameters,
        "same net, with and without the adapter"
    );

    // resume: 2 epochs, then 1 more, equals 3 in one go
    let out = tmp.path().join("resumed");
    let mut part = GridDistiller::new(student(&[]), &out, DistillOptions::default()).unwrap();
    part.train(Some(2)).unwrap();
    drop(part);
    let opts = DistillOptions {
        mode: RunMode::Resume,
        ..Default::default()
    };
    let mut rest = GridDistiller::new(student(&[]), &out, opts).unwrap();
    rest.train(None).unwrap();
    let a = d.var_store().variables();
    for (name, v) in rest.var_store().variables() {
        assert!(v.equal(&a[&name]), "{name} differs after resume");
    }
    drop(rest);
    // a changed teacher set is refused on resume
    let opts = DistillOptions {
        mode: RunMode::Resume,
        ..Default::default()
    };
    let e = GridDistiller::new(student(&["distill.lambda=2.0"]), &out, opts).unwrap_err();
    assert!(format!("{e:#}").contains("distill.lambda"), "{e:#}");
}

/// The ridge initialisation leaves the readout at the closed form
/// `[W; b] = ([X 1]ᵀ[X 1] + diag(λ_eff, …, 0))⁻¹ [X 1]ᵀ H` over every window and grid point.
#[test]
fn the_grid_ridge_init_equals_the_closed_form() {
    let _rng = crate::trainer::torch_rng();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("ns");
    tiny_data(&data);
    let cfg = config(&data, &["distill.loss=\"none\""]);
    let d = GridData::load(&cfg.data).unwrap();
    tch::manual_seed(2);
    let vs = VarStore::new(Device::Cpu);
    let mut net = cfg.model.build(vs.root()).unwrap();
    let teacher = Tensor::randn(d.train.y.size(), (Kind::Float, Device::Cpu));
    let target = |idx: &[i64]| teacher.index_select(0, &Tensor::from_slice(idx));
    let lambda = 0.05;
    let rows = ridge_init(&mut net, &d.train, 5, Device::Cpu, lambda, &target).unwrap();
    let s = d.train.samples();
    assert_eq!(rows, (s * 64) as u64);
    let _guard = tch::no_grad_guard();
    let f = net.config().features();
    let x = net
        .f_features(&d.train.x)
        .unwrap()
        .reshape([-1, f])
        .to_kind(Kind::Double);
    let h = teacher
        .permute([0, 2, 3, 1])
        .reshape([-1, 2])
        .to_kind(Kind::Double);
    let x1 = Tensor::cat(&[&x, &x.ones_like().narrow(1, 0, 1)], 1);
    let lambda_eff = lambda
        * x.square()
            .sum_dim_intlist([0i64].as_slice(), false, Kind::Double)
            .mean(Kind::Double)
            .double_value(&[]);
    let mut ridge = vec![lambda_eff; f as usize];
    ridge.push(0.0);
    let a = x1.tr().matmul(&x1) + Tensor::from_slice(&ridge).diag(0);
    let sol = Tensor::linalg_solve(&a, &x1.tr().matmul(&h), true);
    let w = net.readout().ws.to_kind(Kind::Double);
    let b = net.readout().bs.as_ref().unwrap().to_kind(Kind::Double);
    let err = |a: &Tensor, b: &Tensor| {
        (a - b).abs().max().double_value(&[]) / b.abs().max().double_value(&[])
    };
    let (ew, eb) = (
        err(&w, &sol.narrow(0, 0, f).tr()),
        err(&b, &sol.select(0, f)),
    );
    assert!(ew < 1e-4 && eb < 1e-4, "weight {ew}, bias {eb}");
}

/// Bad settings are errors naming their key; windows longer than the sequences too.
#[test]
fn grid_config_errors_name_their_key() {
    let _rng = crate::trainer::torch_rng();
    let base = "[data]\ndir = \"d\"\n";
    for (set, key) in [
        ("data.t_in=0", "data.t_in"),
        ("model.width=0", "width"),
        ("train.batch_size=0", "train.batch_size"),
        ("distill.bands=\"joint\"", "distill.bands"),
        ("distill.lambda=-1.0", "distill.lambda"),
    ] {
        let mut s = vec![set.to_owned()];
        if key == "distill.bands" || key == "distill.lambda" {
            s.push("distill.teachers=[\"t\"]".into());
        } else {
            s.push("distill.loss=\"none\"".into());
        }
        let e = format!("{:#}", GridDistillConfig::from_toml(base, &s).unwrap_err());
        assert!(e.contains(key), "{set}: {e}");
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("ns");
    tiny_data(&data);
    let cfg = config(&data, &["distill.loss=\"none\"", "data.t_out=4"]);
    let e = GridDistiller::new(cfg, &tmp.path().join("r"), DistillOptions::default()).unwrap_err();
    assert!(
        format!("{e:#}").contains("t_in + data.t_out = 7 frames"),
        "{e:#}"
    );
}
