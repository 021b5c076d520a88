//! Closed-form ridge distillation, the polynomial feature map and the structure-only regulariser
//! (seed 002).

use distill_kd::{
    Error, PointLoss, Reduction, RidgeConfig, StructureRegConfig, polynomial_features,
};
use proptest::prelude::*;
use tch::{Kind, Tensor, nn, nn::Module};

use crate::common::{max_abs_diff, rand_f64, scalar};

/// The reference: the normal equations solved directly (LU, tch f64).
fn direct(x: &Tensor, h: &Tensor, lambda: f64) -> Tensor {
    let xtx = x.tr().matmul(x);
    let d = xtx.size()[0];
    let lambda_eff = lambda * xtx.diagonal(0, 0, 1).mean(Kind::Double).double_value(&[]);
    let a = &xtx + Tensor::eye(d, (Kind::Double, tch::Device::Cpu)) * lambda_eff;
    Tensor::linalg_solve(&a, &x.tr().matmul(h), true)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn ridge_equals_the_direct_normal_equation_solution(
        seed in any::<u64>(),
        n in 1i64..40,
        d in 1i64..8,
        o in 1i64..5,
        lambda in prop::sample::select(vec![1e-4, 1e-2, 0.5, 3.0]),
    ) {
        let x = rand_f64(seed, &[n, d]);
        let h = rand_f64(seed ^ 0x5555, &[n, o]);
        let mut acc = RidgeConfig { lambda, ..Default::default() }.check(d as usize, o as usize).unwrap();
        acc.push(&x, &h).unwrap();
        let sol = acc.solve().unwrap();
        let w = sol.weight_tensor(Kind::Double, tch::Device::Cpu).tr();
        let reference = direct(&x, &h, lambda);
        let scale = reference.abs().max().double_value(&[]).max(1.0);
        prop_assert!(max_abs_diff(&w, &reference) < 1e-9 * scale, "{}", max_abs_diff(&w, &reference));
        prop_assert_eq!(sol.rows, n as u64);
    }
}

#[test]
fn streaming_over_batches_equals_one_batch() {
    let (n, d, o) = (50, 6, 3);
    let x = rand_f64(1, &[n, d]);
    let h = rand_f64(2, &[n, o]);
    let cfg = RidgeConfig {
        lambda: 1e-2,
        intercept: true,
        ..Default::default()
    };
    let mut whole = cfg.clone().check(d as usize, o as usize).unwrap();
    whole.push(&x, &h).unwrap();
    let mut streamed = cfg.check(d as usize, o as usize).unwrap();
    let mut start = 0;
    for len in [7, 1, 20, 0, 22] {
        streamed
            .push(&x.narrow(0, start, len), &h.narrow(0, start, len))
            .unwrap();
        start += len;
    }
    assert_eq!(streamed.rows(), n as u64);
    let (a, b) = (whole.solve().unwrap(), streamed.solve().unwrap());
    let diff = (0..d as usize)
        .flat_map(|i| (0..o as usize).map(move |j| (i, j)))
        .map(|(i, j)| (a.weight[(i, j)] - b.weight[(i, j)]).abs())
        .fold(0.0, f64::max);
    assert!(diff < 1e-12, "{diff}");
    let (ba, bb) = (a.bias.unwrap(), b.bias.unwrap());
    assert!(ba.iter().zip(&bb).all(|(p, q)| (p - q).abs() < 1e-12));
    // Leading batch dimensions are flattened into rows.
    let mut shaped = RidgeConfig::default()
        .check(d as usize, o as usize)
        .unwrap();
    shaped
        .push(&x.view([5, 10, d]), &h.view([5, 10, o]))
        .unwrap();
    assert_eq!(shaped.rows(), n as u64);
}

#[test]
fn recovers_a_planted_map_exactly_without_noise_or_penalty() {
    let (n, d, o) = (30, 5, 4);
    let x = rand_f64(3, &[n, d]);
    let w = rand_f64(4, &[d, o]);
    let b = rand_f64(5, &[o]);
    let h = x.matmul(&w) + &b;
    let mut acc = RidgeConfig {
        lambda: 0.0,
        intercept: true,
        ..Default::default()
    }
    .check(d as usize, o as usize)
    .unwrap();
    acc.push(&x, &h).unwrap();
    let sol = acc.solve().unwrap();
    assert_eq!(sol.jitter, 0.0);
    assert!(max_abs_diff(&sol.weight_tensor(Kind::Double, tch::Device::Cpu), &w.tr()) < 1e-11);
    assert!(
        max_abs_diff(
            &sol.bias_tensor(Kind::Double, tch::Device::Cpu).unwrap(),
            &b
        ) < 1e-11
    );
    assert!(max_abs_diff(&sol.predict(&x).unwrap(), &h) < 1e-11);
    // A small penalty shrinks the fit, a little.
    let mut pen = RidgeConfig {
        lambda: 1e-3,
        ..Default::default()
    }
    .check(d as usize, o as usize)
    .unwrap();
    pen.push(&x, &x.matmul(&w)).unwrap();
    let sol = pen.solve().unwrap();
    let err = max_abs_diff(&sol.weight_tensor(Kind::Double, tch::Device::Cpu), &w.tr());
    assert!(err > 1e-8 && err < 1e-1, "{err}");
}

#[test]
fn rank_deficient_features_go_through_the_jitter_path() {
    // Column 3 duplicates column 0 and column 4 is their sum: Σ XᵀX has rank 3.
    let (n, o) = (25, 2);
    let base = rand_f64(6, &[n, 3]);
    let x = Tensor::cat(
        &[
            base.shallow_clone(),
            base.narrow(1, 0, 1),
            base.narrow(1, 0, 1) + base.narrow(1, 1, 1),
        ],
        1,
    );
    let h = x.matmul(&rand_f64(7, &[5, o]));
    let mut acc = RidgeConfig {
        lambda: 0.0,
        ..Default::default()
    }
    .check(5, o as usize)
    .unwrap();
    acc.push(&x, &h).unwrap();
    let sol = acc.solve().unwrap();
    assert!(sol.jitter > 0.0, "the singular system must be jittered");
    let w = sol.weight_tensor(Kind::Double, tch::Device::Cpu);
    assert!(bool::try_from(w.isfinite().all()).unwrap());
    assert!(
        w.abs().max().double_value(&[]) < 100.0,
        "no blow-up along the null space"
    );
    let fit = max_abs_diff(&sol.predict(&x).unwrap(), &h) / h.abs().max().double_value(&[]);
    assert!(fit < 1e-6, "relative fit error {fit}");
    // With retries forbidden the same system is a clear error.
    let mut strict = RidgeConfig {
        lambda: 0.0,
        max_jitter_tries: 0,
        ..Default::default()
    }
    .check(5, o as usize)
    .unwrap();
    strict.push(&x, &h).unwrap();
    assert!(
        matches!(strict.solve(), Err(Error::NotPositiveDefinite { jitter_tried, .. }) if jitter_tried == 0.0)
    );
}

#[test]
fn loads_into_a_tch_linear() {
    let (n, d, o) = (20, 4, 3);
    let x = rand_f64(8, &[n, d]);
    let h = rand_f64(9, &[n, o]);
    for intercept in [false, true] {
        let mut acc = RidgeConfig {
            intercept,
            ..Default::default()
        }
        .check(d as usize, o as usize)
        .unwrap();
        acc.push(&x, &h).unwrap();
        let sol = acc.solve().unwrap();
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let mut lin = nn::linear(vs.root() / "enc", d, o, Default::default());
        sol.load_into(&mut lin).unwrap();
        let xf = x.to_kind(Kind::Float);
        let got = lin.forward(&xf);
        let want = sol.predict(&xf).unwrap();
        assert!(max_abs_diff(&got, &want) < 1e-5, "intercept = {intercept}");
        // Still trainable after loading.
        assert!(vs.trainable_variables().iter().all(|v| v.requires_grad()));
    }
    let mut acc = RidgeConfig {
        intercept: true,
        ..Default::default()
    }
    .check(d as usize, o as usize)
    .unwrap();
    acc.push(&x, &h).unwrap();
    let sol = acc.solve().unwrap();
    let vs = nn::VarStore::new(tch::Device::Cpu);
    let mut no_bias = nn::linear(
        vs.root(),
        d,
        o,
        nn::LinearConfig {
            bias: false,
            ..Default::default()
        },
    );
    assert!(matches!(
        sol.load_into(&mut no_bias),
        Err(Error::ShapeMismatch { .. })
    ));
    let mut wrong = nn::linear(vs.root() / "w", o, d, Default::default());
    assert!(matches!(
        sol.load_into(&mut wrong),
        Err(Error::ShapeMismatch { .. })
    ));
}

#[test]
fn ridge_rejects_bad_input() {
    let mut acc = RidgeConfig::default().check(3, 2).unwrap();
    assert!(matches!(acc.solve(), Err(Error::NoData)));
    assert!(matches!(
        acc.push(&rand_f64(0, &[4, 3]), &rand_f64(1, &[5, 2])),
        Err(Error::ShapeMismatch { .. })
    ));
    assert!(matches!(
        acc.push(&rand_f64(0, &[4, 2]), &rand_f64(1, &[4, 2])),
        Err(Error::ShapeMismatch { .. })
    ));
    let bad = Tensor::from_slice(&[1.0f64, f64::INFINITY, 0.0]).view([1, 3]);
    assert!(matches!(
        acc.push(&bad, &rand_f64(1, &[1, 2])),
        Err(Error::NonFinite { .. })
    ));
    assert_eq!(acc.rows(), 0);
    assert!(matches!(
        RidgeConfig {
            lambda: -1.0,
            ..Default::default()
        }
        .check(3, 2),
        Err(Error::InvalidConfig {
            field: "lambda",
            ..
        })
    ));
    assert!(serde_json::from_str::<RidgeConfig>(r#"{"lambda": 0.1, "intercep": true}"#).is_err());
}

#[test]
fn polynomial_features_stack_the_powers() {
    let e = Tensor::from_slice(&[2.0f64, -1.0, 0.5, 3.0]).view([2, 2]);
    let f = polynomial_features(&e, 3).unwrap();
    let want = Tensor::from_slice(&[
        2.0f64, -1.0, 4.0, 1.0, 8.0, -1.0, 0.5, 3.0, 0.25, 9.0, 0.125, 27.0,
    ])
    .view([2, 6]);
    assert_eq!(max_abs_diff(&f, &want), 0.0);
    assert_eq!(
        polynomial_features(&rand_f64(1, &[2, 3, 5]), 2)
            .unwrap()
            .size(),
        [2, 3, 10]
    );
    assert!(matches!(
        polynomial_features(&e, 0),
        Err(Error::InvalidConfig {
            field: "degree",
            ..
        })
    ));
}

#[test]
fn structure_only_regulariser_adds_the_weighted_structure_term() {
    let y = rand_f64(1, &[6, 2]);
    let full = rand_f64(2, &[6, 2]).set_requires_grad(true);
    let structure = rand_f64(3, &[6, 2]).set_requires_grad(true);
    let reg = StructureRegConfig {
        lambda_b: 0.4,
        ..Default::default()
    }
    .check()
    .unwrap();
    let terms = reg.forward(&full, &structure, &y).unwrap();
    let l1 = |p: &Tensor| scalar(&(p - &y).abs().mean(Kind::Double));
    assert!((scalar(&terms.full) - l1(&full)).abs() < 1e-14);
    assert!((scalar(&terms.structure) - l1(&structure)).abs() < 1e-14);
    assert!((scalar(&terms.total) - (l1(&full) + 0.4 * l1(&structure))).abs() < 1e-14);
    terms.total.backward();
    // The structure path gets λ_b times the gradient it would get alone.
    let expect = (&structure - &y).sign().detach() * (0.4 / 12.0);
    assert!(max_abs_diff(&structure.grad(), &expect) < 1e-15);
    let mse = StructureRegConfig {
        lambda_b: 0.0,
        loss: PointLoss::Mse,
        reduction: Reduction::Sum,
    }
    .check()
    .unwrap();
    let t = mse.forward(&full, &structure, &y).unwrap();
    assert!((scalar(&t.total) - scalar(&(&full - &y).square().sum(Kind::Double))).abs() < 1e-12);
    assert!(matches!(
        reg.forward(&full, &structure, &y.narrow(0, 0, 3)),
        Err(Error::ShapeMismatch { .. })
    ));
}
