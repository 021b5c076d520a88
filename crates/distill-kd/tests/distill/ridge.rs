//! Closed-form ridge distillation (seed 002), the pure half: streaming accumulation of faer
//! batches, the Cholesky solve with jitter retry, and prediction, against the normal equations
//! solved directly by LU. The tensor side is in `ridge_tensor`.

use distill_kd::{Error, RidgeConfig, solve_normal_equations};
use faer::Mat;
use faer::linalg::solvers::Solve;
use proptest::prelude::*;

use crate::common::{max_abs_diff_mat, rand_mat};

/// The reference: `(XᵀX + λ_eff I) W = XᵀH` with `λ_eff = λ · mean diag XᵀX`, solved by LU with
/// partial pivoting (a different factorisation from the crate's Cholesky).
fn direct(x: &Mat<f64>, h: &Mat<f64>, lambda: f64) -> Mat<f64> {
    let xtx = x.transpose() * x;
    let d = xtx.nrows();
    let lambda_eff = lambda * (0..d).map(|i| xtx[(i, i)]).sum::<f64>() / d as f64;
    let a = Mat::from_fn(d, d, |i, j| {
        xtx[(i, j)] + if i == j { lambda_eff } else { 0.0 }
    });
    a.partial_piv_lu().solve(&(x.transpose() * h))
}

/// `max |m|`.
fn max_abs(m: &Mat<f64>) -> f64 {
    max_abs_diff_mat(m, &Mat::zeros(m.nrows(), m.ncols()))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn ridge_equals_the_direct_normal_equation_solution(
        seed in any::<u64>(),
        n in 1usize..40,
        d in 1usize..8,
        o in 1usize..5,
        lambda in prop::sample::select(vec![1e-4, 1e-2, 0.5, 3.0]),
    ) {
        let x = rand_mat(seed, n, d);
        let h = rand_mat(seed ^ 0x5555, n, o);
        let mut acc = RidgeConfig { lambda, ..Default::default() }.check(d, o).unwrap();
        acc.push_rows(x.as_ref(), h.as_ref()).unwrap();
        let sol = acc.solve().unwrap();
        let reference = direct(&x, &h, lambda);
        let scale = max_abs(&reference).max(1.0);
        let err = max_abs_diff_mat(&sol.weight, &reference);
        prop_assert!(err < 1e-9 * scale, "{}", err);
        prop_assert_eq!(sol.rows, n as u64);
    }
}

#[test]
fn streaming_over_batches_equals_one_batch() {
    let (n, d, o) = (50, 6, 3);
    let x = rand_mat(1, n, d);
    let h = rand_mat(2, n, o);
    let cfg = RidgeConfig {
        lambda: 1e-2,
        intercept: true,
        ..Default::default()
    };
    let mut whole = cfg.clone().check(d, o).unwrap();
    whole.push_rows(x.as_ref(), h.as_ref()).unwrap();
    let mut streamed = cfg.check(d, o).unwrap();
    let mut start = 0;
    for len in [7, 1, 20, 0, 22] {
        streamed
            .push_rows(
                x.as_ref().subrows(start, len),
                h.as_ref().subrows(start, len),
            )
            .unwrap();
        start += len;
    }
    assert_eq!(streamed.rows(), n as u64);
    let (a, b) = (whole.solve().unwrap(), streamed.solve().unwrap());
    let diff = max_abs_diff_mat(&a.weight, &b.weight);
    assert!(diff < 1e-12, "{diff}");
    let (ba, bb) = (a.bias.unwrap(), b.bias.unwrap());
    assert!(ba.iter().zip(&bb).all(|(p, q)| (p - q).abs() < 1e-12));
}

#[test]
fn recovers_a_planted_map_exactly_without_noise_or_penalty() {
    let (n, d, o) = (30, 5, 4);
    let x = rand_mat(3, n, d);
    let w = rand_mat(4, d, o);
    let b = rand_mat(5, 1, o);
    let xw = &x * &w;
    let h = Mat::from_fn(n, o, |i, j| xw[(i, j)] + b[(0, j)]);
    let mut acc = RidgeConfig {
        lambda: 0.0,
        intercept: true,
        ..Default::default()
    }
    .check(d, o)
    .unwrap();
    acc.push_rows(x.as_ref(), h.as_ref()).unwrap();
    let sol = acc.solve().unwrap();
    assert_eq!(sol.jitter, 0.0);
    assert!(max_abs_diff_mat(&sol.weight, &w) < 1e-11);
    let bias = sol.bias.as_ref().unwrap();
    assert!((0..o).all(|j| (bias[j] - b[(0, j)]).abs() < 1e-11));
    assert!(max_abs_diff_mat(&sol.predict_rows(x.as_ref()).unwrap(), &h) < 1e-11);
    // A small penalty shrinks the fit, a little.
    let mut pen = RidgeConfig {
        lambda: 1e-3,
        ..Default::default()
    }
    .check(d, o)
    .unwrap();
    pen.push_rows(x.as_ref(), xw.as_ref()).unwrap();
    let err = max_abs_diff_mat(&pen.solve().unwrap().weight, &w);
    assert!(err > 1e-8 && err < 1e-1, "{err}");
}

#[test]
fn rank_deficient_features_go_through_the_jitter_path() {
    // Column 3 duplicates column 0 and column 4 is their sum: Σ XᵀX has rank 3.
    let (n, o) = (25, 2);
    let base = rand_mat(6, n, 3);
    let x = Mat::from_fn(n, 5, |i, j| match j {
        0..3 => base[(i, j)],
        3 => base[(i, 0)],
        _ => base[(i, 0)] + base[(i, 1)],
    });
    let h = &x * &rand_mat(7, 5, o);
    let mut acc = RidgeConfig {
        lambda: 0.0,
        ..Default::default()
    }
    .check(5, o)
    .unwrap();
    acc.push_rows(x.as_ref(), h.as_ref()).unwrap();
    let sol = acc.solve().unwrap();
    assert!(sol.jitter > 0.0, "the singular system must be jittered");
    let w = &sol.weight;
    assert!((0..o).all(|j| (0..5).all(|i| w[(i, j)].is_finite())));
    assert!(max_abs(w) < 100.0, "no blow-up along the null space");
    let fit = max_abs_diff_mat(&sol.predict_rows(x.as_ref()).unwrap(), &h) / max_abs(&h);
    assert!(fit < 1e-6, "relative fit error {fit}");
    // With retries forbidden the same system is a clear error.
    let mut strict = RidgeConfig {
        lambda: 0.0,
        max_jitter_tries: 0,
        ..Default::default()
    }
    .check(5, o)
    .unwrap();
    strict.push_rows(x.as_ref(), h.as_ref()).unwrap();
    assert!(
        matches!(strict.solve(), Err(Error::NotPositiveDefinite { jitter_tried, .. }) if jitter_tried == 0.0)
    );
}

#[test]
fn ridge_rejects_bad_input() {
    let mut acc = RidgeConfig::default().check(3, 2).unwrap();
    assert!(matches!(acc.solve(), Err(Error::NoData)));
    assert!(matches!(
        acc.push_rows(rand_mat(0, 4, 3).as_ref(), rand_mat(1, 5, 2).as_ref()),
        Err(Error::ShapeMismatch { .. })
    ));
    assert!(matches!(
        acc.push_rows(rand_mat(0, 4, 2).as_ref(), rand_mat(1, 4, 2).as_ref()),
        Err(Error::ShapeMismatch { .. })
    ));
    let mut bad = rand_mat(0, 1, 3);
    bad[(0, 1)] = f64::INFINITY;
    assert!(matches!(
        acc.push_rows(bad.as_ref(), rand_mat(1, 1, 2).as_ref()),
        Err(Error::NonFinite { .. })
    ));
    assert_eq!(acc.rows(), 0);
    acc.push_rows(rand_mat(2, 6, 3).as_ref(), rand_mat(3, 6, 2).as_ref())
        .unwrap();
    let sol = acc.solve().unwrap();
    assert!(matches!(
        sol.predict_rows(rand_mat(0, 4, 2).as_ref()),
        Err(Error::ShapeMismatch { .. })
    ));
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
    // The solver on its own: inconsistent shapes and non-finite entries.
    let a = Mat::<f64>::identity(3, 3);
    let b = rand_mat(4, 3, 2);
    assert!(matches!(
        solve_normal_equations(a.as_ref(), &[0.0; 2], b.as_ref(), 0),
        Err(Error::ShapeMismatch { .. })
    ));
    assert!(matches!(
        solve_normal_equations(a.as_ref(), &[0.0, f64::NAN, 0.0], b.as_ref(), 0),
        Err(Error::NonFinite { .. })
    ));
}
