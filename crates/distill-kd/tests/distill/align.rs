//! Privileged-information alignment (SGDD, seed 000).

use distill_kd::{Error, PiAlignConfig, Reduction, detached_mse};
use tch::Kind;

use crate::tensors::{max_abs_diff, rand_f64, scalar};

#[test]
fn alignment_teacher_gets_no_gradient_and_student_gets_the_mse_gradient() {
    let (b, t, n, d, k) = (2, 4, 3, 5, 6);
    let zs = rand_f64(1, &[b, t, n, d]).set_requires_grad(true);
    let zt = rand_f64(2, &[b, t, n, d]).set_requires_grad(true);
    let a_s = rand_f64(3, &[b, k, d]).set_requires_grad(true);
    let a_t = rand_f64(4, &[b, k, d]).set_requires_grad(true);
    let align = PiAlignConfig {
        lambda: 0.5,
        rep_weight: 2.0,
        spec_weight: 3.0,
        ..Default::default()
    }
    .check()
    .unwrap();
    let terms = align.forward(&zs, &zt, &a_s, &a_t).unwrap();
    let rep = scalar(&(&zs - &zt).square().mean(Kind::Double));
    let spec = scalar(&(&a_s - &a_t).square().mean(Kind::Double));
    assert!((scalar(&terms.rep) - rep).abs() < 1e-14);
    assert!((scalar(&terms.spec) - spec).abs() < 1e-14);
    assert!((scalar(&terms.total) - 0.5 * (2.0 * rep + 3.0 * spec)).abs() < 1e-14);
    terms.total.backward();
    assert!(
        !zt.grad().defined(),
        "teacher z^sg_dyn must not get a gradient"
    );
    assert!(
        !a_t.grad().defined(),
        "teacher ã_dyn must not get a gradient"
    );
    // d/dz_s of λ w MSE = λ w · 2 (z_s − z_t) / numel.
    let gz = (&zs - &zt).detach() * (0.5 * 2.0 * 2.0 / (b * t * n * d) as f64);
    let ga = (&a_s - &a_t).detach() * (0.5 * 3.0 * 2.0 / (b * k * d) as f64);
    assert!(max_abs_diff(&zs.grad(), &gz) < 1e-15);
    assert!(max_abs_diff(&a_s.grad(), &ga) < 1e-15);
}

#[test]
fn alignment_is_zero_iff_equal() {
    let align = PiAlignConfig::default().check().unwrap();
    let z = rand_f64(5, &[3, 4, 2]);
    let a = rand_f64(6, &[7, 2]);
    assert_eq!(scalar(&align.forward(&z, &z, &a, &a).unwrap().total), 0.0);
    let z2 = &z + rand_f64(7, &[3, 4, 2]) * 1e-4;
    let a2 = &a + rand_f64(8, &[7, 2]) * 1e-4;
    assert!(scalar(&align.forward(&z2, &z, &a, &a).unwrap().total) > 0.0);
    assert!(scalar(&align.forward(&z, &z, &a2, &a).unwrap().total) > 0.0);
    // Sum reduction and the element-wise building block.
    let sum = PiAlignConfig {
        rep_reduction: Reduction::Sum,
        ..Default::default()
    }
    .check()
    .unwrap();
    let expect = scalar(&(&z2 - &z).square().sum(Kind::Double));
    assert!((scalar(&sum.forward(&z2, &z, &a, &a).unwrap().rep) - expect).abs() < 1e-18);
    assert_eq!(
        detached_mse(&z2, &z, Reduction::None).unwrap().size(),
        [3, 4, 2]
    );
}

#[test]
fn alignment_rejects_bad_shapes_and_configs() {
    let align = PiAlignConfig::default().check().unwrap();
    let z = rand_f64(5, &[3, 4, 2]);
    let a = rand_f64(6, &[7, 2]);
    let err = align.forward(&z, &z.narrow(0, 0, 2), &a, &a).unwrap_err();
    assert!(
        matches!(err, Error::ShapeMismatch { op: "detached_mse", ref got, .. } if got == &[2, 4, 2])
    );
    assert!(matches!(
        PiAlignConfig {
            lambda: -1.0,
            ..Default::default()
        }
        .check(),
        Err(Error::InvalidConfig {
            field: "lambda",
            ..
        })
    ));
    assert!(matches!(
        PiAlignConfig {
            spec_reduction: Reduction::None,
            ..Default::default()
        }
        .check(),
        Err(Error::InvalidConfig {
            field: "spec_reduction",
            ..
        })
    ));
    let cfg: PiAlignConfig =
        serde_json::from_str(r#"{"lambda": 2.0, "spec_reduction": "sum"}"#).unwrap();
    assert_eq!(
        (cfg.lambda, cfg.rep_weight, cfg.spec_reduction),
        (2.0, 1.0, Reduction::Sum)
    );
    assert!(serde_json::from_str::<PiAlignConfig>(r#"{"lamda": 2.0}"#).is_err());
}
