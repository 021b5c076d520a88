use tch::{Device, Kind, Tensor};
use traj_data::nbody::{NBodySpec, System};

use super::student::{readout, ridge_rows};
use super::*;
use crate::data::prepare;

/// The closed form `θ = (XᵀX + diag(λ_eff, …, [0]))⁻¹ XᵀH` over every training row in one f64
/// solve (not streamed), `λ_eff = λ · mean diag XᵀX` over the features, with a trailing
/// unpenalised intercept column when `intercept`.
fn closed_form(x: &Tensor, h: &Tensor, lambda: f64, intercept: bool) -> Tensor {
    let d = x.size()[1];
    let lambda_eff = lambda
        * x.square()
            .sum_dim_intlist([0i64].as_slice(), false, Kind::Double)
            .mean(Kind::Double)
            .double_value(&[]);
    let mut ridge = vec![lambda_eff; d as usize];
    let x = if intercept {
        ridge.push(0.0);
        Tensor::cat(&[x, &x.ones_like().narrow(1, 0, 1)], 1)
    } else {
        x.shallow_clone()
    };
    let a = x.tr().matmul(&x) + Tensor::from_slice(&ridge).diag(0);
    Tensor::linalg_solve(&a, &x.tr().matmul(h), true)
}

/// The ridge initialisation leaves the student's readout at the closed form over every
/// training sample: the MLP's readout weights and bias (rows: hidden features → the teacher's
/// displacements), and the EGNO's predictions `base + feats · θ` (rows: the last layer's
/// coordinate-head features per frame, node and axis → the teacher's positions), which also
/// checks that those rows are the EGNO forward pass.
#[test]
fn the_ridge_init_equals_the_closed_form() {
    let _rng = crate::trainer::torch_rng();
    let mut spec = NBodySpec::new(System::Charged);
    spec.n_train = 7;
    spec.seed = 5;
    let ds = spec.generate_split(traj_data::Split::Train).unwrap();
    let cfg = crate::RunConfig::from_toml("[data]\ndir = \"unused\"\n", &[]).unwrap();
    let p = prepare(&ds, &cfg.data).unwrap();
    // a teacher: any fixed function of the sample
    let teacher = Tensor::randn([p.samples, p.t, p.n, 3], (Kind::Float, Device::Cpu)) * 0.1;
    let target = |idx: &[i64]| -> Result<Tensor> {
        let x = teacher.index_select(0, &Tensor::from_slice(idx));
        let (b, t, n) = (x.size()[0], x.size()[1], x.size()[2]);
        Ok(x.permute([1, 0, 2, 3]).reshape([t, b * n, 3]))
    };
    let idx: Vec<i64> = (0..p.samples).collect();
    let batch = p
        .batch(&idx, Device::Cpu, &mut GraphCache::default())
        .unwrap();
    let lambda = 0.1;
    let err = |a: &Tensor, b: &Tensor| {
        (a - b).abs().max().double_value(&[]) / b.abs().max().double_value(&[])
    };
    for kind in [StudentArch::Mlp, StudentArch::Egno] {
        let scfg = StudentConfig {
            kind,
            hidden: 6,
            layers: 2,
            num_modes: 1,
        };
        let (_vs, mut student) = Student::build(&scfg, &p, 3, Device::Cpu).unwrap();
        let rows = student
            .ridge_init(&p, 3, Device::Cpu, lambda, &target)
            .unwrap();
        let (x, h) = ridge_rows(&student, &batch, &target(&idx).unwrap());
        assert_eq!(rows, x.size()[0] as u64, "{kind:?}");
        match &student {
            Student::Mlp(mlp) => {
                assert_eq!(rows, p.samples as u64);
                let sol = closed_form(&x, &h, lambda, true);
                let d = x.size()[1];
                let (w, b) = readout(mlp);
                let (want_w, want_b) = (sol.narrow(0, 0, d).tr(), sol.select(0, d));
                // the readout stores f32
                assert!(err(&w, &want_w) < 1e-4, "weight: {}", err(&w, &want_w));
                assert!(err(&b, &want_b) < 1e-4, "bias: {}", err(&b, &want_b));
            }
            Student::Egno(_) => {
                assert_eq!(rows, (p.samples * p.t * p.n * 3) as u64);
                let sol = closed_form(&x, &h, lambda, false);
                let got = tch::no_grad(|| student.predict(&batch))
                    .unwrap()
                    .to_kind(Kind::Double)
                    .reshape([-1, 1]);
                // base = target − h on these rows
                let base = target(&idx).unwrap().to_kind(Kind::Double).reshape([-1, 1]) - &h;
                let want = base + x.matmul(&sol);
                assert!(err(&got, &want) < 1e-4, "predictions: {}", err(&got, &want));
            }
        }
    }
}

/// The joint-basis KD loss is zero for identical trajectories, weighs the low band by α, and
/// with α = 1 is the plain MSE (Ψ_l + Ψ_h is an orthogonal split).
#[test]
fn the_frequency_aligned_loss_splits_the_mse() {
    let _rng = crate::trainer::torch_rng();
    let mut spec = NBodySpec::new(System::Charged);
    spec.n_train = 2;
    let ds = spec.generate_split(traj_data::Split::Train).unwrap();
    let cfg = crate::RunConfig::from_toml("[data]\ndir = \"unused\"\n", &[]).unwrap();
    let p = prepare(&ds, &cfg.data).unwrap();
    let (t, b, n) = (p.t, 2, p.n);
    let s = Tensor::randn([t, b * n, 3], (Kind::Float, Device::Cpu));
    let y = Tensor::randn([t, b * n, 3], (Kind::Float, Device::Cpu));
    let mse = s.mse_loss(&y, tch::Reduction::Mean).double_value(&[]);
    for bands in [BandsKind::Joint, BandsKind::TimeDft] {
        let kd = |alpha: f64| {
            let cfg = KdConfig {
                alpha,
                bands,
                k: 4,
                ..Default::default()
            };
            Kd::new(&cfg, &p, Device::Cpu).unwrap()
        };
        let one = kd(1.0)
            .loss(&s, &y, b, n)
            .unwrap()
            .unwrap()
            .double_value(&[]);
        assert!((one - mse).abs() < 1e-5 * mse, "{bands:?}: {one} vs {mse}");
        let zero = kd(0.0)
            .loss(&s, &y, b, n)
            .unwrap()
            .unwrap()
            .double_value(&[]);
        let three = kd(3.0)
            .loss(&s, &y, b, n)
            .unwrap()
            .unwrap()
            .double_value(&[]);
        let low = one - zero;
        assert!(
            low > 0.0 && zero > 0.0,
            "{bands:?}: both bands carry energy"
        );
        assert!(
            (three - (zero + 3.0 * low)).abs() < 1e-4 * three,
            "{bands:?}"
        );
        let same = kd(2.0)
            .loss(&s, &s, b, n)
            .unwrap()
            .unwrap()
            .double_value(&[]);
        assert!(same.abs() < 1e-12);
    }
}
