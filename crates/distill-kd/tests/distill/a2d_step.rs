//! A2D multi-teacher weighting (SDKD eq. 12–15), the tch half: the whole step from gradient
//! tensors, flattened parameter gradients and the surrogate that writes the combined gradient.

use distill_kd::{A2dConfig, Error, Weighting, flat_gradient, gradient_surrogate};
use tch::{Kind, Tensor, nn};

use crate::tensors::{max_abs_diff, rand_f64};

#[test]
fn identical_teachers_get_equal_weights() {
    let g = rand_f64(9, &[40]);
    let grads = vec![g.shallow_clone(), g.shallow_clone(), g.shallow_clone()];
    for cap in [1.0, 0.5, 1.0 / 3.0] {
        let step = A2dConfig {
            cap,
            ..Default::default()
        }
        .check()
        .unwrap()
        .step(&grads)
        .unwrap();
        for a in &step.alpha {
            assert!((a - 1.0 / 3.0).abs() < 1e-9, "{:?}", step.alpha);
        }
        assert!(max_abs_diff(&step.combined_gradient, &g) < 1e-12);
    }
    // All-zero gradients: uniform too.
    let zeros: Vec<Tensor> = (0..4)
        .map(|_| Tensor::zeros([5], (Kind::Float, tch::Device::Cpu)))
        .collect();
    let step = A2dConfig::default().check().unwrap().step(&zeros).unwrap();
    assert!(step.alpha.iter().all(|a| (a - 0.25).abs() < 1e-12));
}

#[test]
fn conflicting_teacher_is_down_weighted() {
    // Teachers 0 and 1 agree; teacher 2 pulls hard the other way.
    let grads = vec![
        Tensor::from_slice(&[1.0f64, 0.1, 0.0]),
        Tensor::from_slice(&[0.9f64, 0.0, 0.1]),
        Tensor::from_slice(&[-3.0f64, 0.2, 0.1]),
    ];
    let step = A2dConfig::default().check().unwrap().step(&grads).unwrap();
    let a = &step.alpha;
    assert!(a[2] < 1.0 / 3.0 && a[2] < a[0] && a[2] < a[1], "α = {a:?}");
    // The combined step is shorter than the plain average's.
    let avg = A2dConfig {
        weighting: Weighting::Average,
        ..Default::default()
    }
    .check()
    .unwrap()
    .step(&grads)
    .unwrap();
    assert_eq!(avg.alpha, vec![1.0 / 3.0; 3]);
    assert!(step.objective < avg.objective);
    // Combined gradient and eq. 14's direction.
    let expect = &grads[0] * a[0] + &grads[1] * a[1] + &grads[2] * a[2];
    assert!(max_abs_diff(&step.combined_gradient, &expect) < 1e-14);
    assert!(max_abs_diff(&step.direction(), &(-expect)) < 1e-14);
    assert!(
        (step.objective
            - 0.5
                * step
                    .combined_gradient
                    .square()
                    .sum(Kind::Double)
                    .double_value(&[]))
        .abs()
            < 1e-12
    );
}

#[test]
fn unit_normalised_weights_ignore_gradient_scale() {
    let base = [
        rand_f64(1, &[2, 3]),
        rand_f64(2, &[2, 3]),
        rand_f64(3, &[2, 3]),
    ];
    let scaled = [&base[0] * 100.0, &base[1] * 0.01, base[2].shallow_clone()];
    let unit = A2dConfig {
        unit_normalise: true,
        ..Default::default()
    }
    .check()
    .unwrap();
    let a = unit.step(&base).unwrap();
    let b = unit.step(&scaled).unwrap();
    for (x, y) in a.alpha.iter().zip(&b.alpha) {
        assert!((x - y).abs() < 1e-9);
    }
    assert!((0..3).all(|i| (a.gram[(i, i)] - 1.0).abs() < 1e-12));
    let plain = A2dConfig::default().check().unwrap().step(&scaled).unwrap();
    assert!(
        plain
            .alpha
            .iter()
            .zip(&b.alpha)
            .any(|(x, y)| (x - y).abs() > 1e-3)
    );
    assert_eq!(b.combined_gradient.size(), [2, 3]);
}

#[test]
fn step_rejects_infeasible_caps_and_bad_gradients() {
    let grads: Vec<Tensor> = (0..3).map(|s| rand_f64(s, &[4])).collect();
    let a2d = A2dConfig {
        cap: 0.3,
        ..Default::default()
    }
    .check()
    .unwrap();
    assert!(
        matches!(a2d.step(&grads), Err(Error::InfeasibleCap { cap, teachers: 3 }) if cap == 0.3)
    );
    let a2d = A2dConfig::default().check().unwrap();
    assert!(matches!(a2d.step(&[]), Err(Error::NoTeachers)));
    assert!(matches!(
        a2d.step(&[rand_f64(0, &[4]), rand_f64(1, &[5])]),
        Err(Error::ShapeMismatch { .. })
    ));
    let nan = Tensor::from_slice(&[1.0f64, f64::NAN]);
    assert!(matches!(
        a2d.step(&[nan, rand_f64(1, &[2])]),
        Err(Error::NonFinite { .. })
    ));
}

#[test]
fn flat_gradients_and_surrogate_apply_the_a2d_step() {
    let vs = nn::VarStore::new(tch::Device::Cpu);
    let mut lin = nn::linear(vs.root() / "student", 3, 2, Default::default());
    // Weights from an explicit stream rather than libtorch's global generator (shared with the
    // tests on other threads), so the student is the same on every run.
    tch::no_grad(|| {
        lin.ws.copy_(&rand_f64(2, &[2, 3]).to_kind(Kind::Float));
        if let Some(bs) = lin.bs.as_mut() {
            bs.copy_(&rand_f64(3, &[2]).to_kind(Kind::Float));
        }
    });
    let params = vs.trainable_variables();
    let x = rand_f64(1, &[8, 3]).to_kind(Kind::Float);
    let out = x.apply(&lin);
    // Two teachers' targets.
    let losses: Vec<Tensor> = (0..2)
        .map(|s| {
            (&out - rand_f64(10 + s, &[8, 2]).to_kind(Kind::Float))
                .square()
                .mean(Kind::Float)
        })
        .collect();
    let grads: Vec<Tensor> = losses
        .iter()
        .map(|l| flat_gradient(l, &params).unwrap())
        .collect();
    assert_eq!(grads[0].size(), [3 * 2 + 2]);
    let step = A2dConfig::default().check().unwrap().step(&grads).unwrap();
    // The flattened gradient of Σ α_m ℓ_m equals the combined gradient.
    let weighted = &losses[0] * step.alpha[0] + &losses[1] * step.alpha[1];
    let direct = flat_gradient(&weighted, &params).unwrap();
    assert!(max_abs_diff(&direct, &step.combined_gradient) < 1e-6);
    // The surrogate writes the combined gradient into .grad.
    let surrogate = gradient_surrogate(&params, &step.combined_gradient).unwrap();
    surrogate.backward();
    let written = Tensor::cat(
        &params
            .iter()
            .map(|p| p.grad().reshape([-1]))
            .collect::<Vec<_>>(),
        0,
    );
    assert!(max_abs_diff(&written, &step.combined_gradient) < 1e-7);
    assert!(matches!(
        gradient_surrogate(&params, &rand_f64(0, &[3])),
        Err(Error::ShapeMismatch { .. })
    ));
    // An unused parameter contributes zeros.
    let unused = Tensor::zeros([2], (Kind::Float, tch::Device::Cpu)).set_requires_grad(true);
    let g = flat_gradient(&losses[0], &[params[0].shallow_clone(), unused]).unwrap();
    assert_eq!(
        g.narrow(0, g.size()[0] - 2, 2)
            .abs()
            .sum(Kind::Float)
            .double_value(&[]),
        0.0
    );
}
