//! A2D multi-teacher weighting (SDKD eq. 12–15), the pure half: the exact capped-simplex QP
//! against brute force over active sets, KKT conditions, and the settings. The step from gradient
//! tensors is in `a2d_step`.

use distill_kd::{A2dConfig, Error, QpOptions, Weighting, solve_capped_simplex_qp};
use faer::Mat;
use proptest::prelude::*;

use crate::common::rand_vec;

/// The Gram matrix `G_mn = ⟨g_m, g_n⟩` of rows.
fn gram_of(rows: &[Vec<f64>]) -> Mat<f64> {
    let m = rows.len();
    Mat::from_fn(m, m, |i, j| {
        rows[i].iter().zip(&rows[j]).map(|(a, b)| a * b).sum()
    })
}

fn objective(g: &Mat<f64>, a: &[f64]) -> f64 {
    let m = a.len();
    0.5 * (0..m)
        .flat_map(|i| (0..m).map(move |j| (i, j)))
        .map(|(i, j)| a[i] * g[(i, j)] * a[j])
        .sum::<f64>()
}

/// Solves `A x = b` by Gaussian elimination with partial pivoting; `None` when a pivot is below
/// `tol`.
fn gauss(mut a: Vec<Vec<f64>>, mut b: Vec<f64>, tol: f64) -> Option<Vec<f64>> {
    let n = b.len();
    for c in 0..n {
        let p = (c..n).max_by(|&x, &y| a[x][c].abs().total_cmp(&a[y][c].abs()))?;
        if a[p][c].abs() < tol {
            return None;
        }
        a.swap(c, p);
        b.swap(c, p);
        for r in c + 1..n {
            let f = a[r][c] / a[c][c];
            let pivot_row = a[c].clone();
            for (v, p) in a[r][c..].iter_mut().zip(&pivot_row[c..]) {
                *v -= f * p;
            }
            b[r] -= f * b[c];
        }
    }
    let mut x = vec![0.0; n];
    for r in (0..n).rev() {
        x[r] = (b[r] - (r + 1..n).map(|k| a[r][k] * x[k]).sum::<f64>()) / a[r][r];
    }
    Some(x)
}

/// Brute force over all 3^M active sets (each weight at 0, at C, or free): solve the
/// equality-constrained QP on the free weights through its KKT system, keep feasible candidates,
/// return the best one.
fn brute_force(g: &Mat<f64>, cap: f64) -> (Vec<f64>, f64) {
    let m = g.nrows();
    let scale = (0..m).map(|i| g[(i, i)]).fold(1e-300, f64::max);
    let mut best: Option<(Vec<f64>, f64)> = None;
    for code in 0..3usize.pow(m as u32) {
        let status: Vec<usize> = (0..m).map(|i| code / 3usize.pow(i as u32) % 3).collect();
        let mut alpha: Vec<f64> = status
            .iter()
            .map(|&s| if s == 1 { cap } else { 0.0 })
            .collect();
        let free: Vec<usize> = (0..m).filter(|&i| status[i] == 2).collect();
        let rest = 1.0 - alpha.iter().sum::<f64>();
        if free.is_empty() {
            if rest.abs() > 1e-12 {
                continue;
            }
        } else {
            let f = free.len();
            let mut kkt = vec![vec![0.0; f + 1]; f + 1];
            let mut rhs = vec![0.0; f + 1];
            for (a, &i) in free.iter().enumerate() {
                for (b, &j) in free.iter().enumerate() {
                    kkt[a][b] = g[(i, j)];
                }
                kkt[a][f] = 1.0;
                kkt[f][a] = 1.0;
                rhs[a] = -(0..m)
                    .filter(|&j| status[j] == 1)
                    .map(|j| g[(i, j)] * cap)
                    .sum::<f64>();
            }
            rhs[f] = rest;
            let Some(x) = gauss(kkt, rhs, 1e-11 * scale.min(1.0)) else {
                continue;
            };
            for (a, &i) in free.iter().enumerate() {
                alpha[i] = x[a];
            }
            if free
                .iter()
                .any(|&i| alpha[i] < -1e-12 || alpha[i] > cap + 1e-12)
            {
                continue;
            }
        }
        let obj = objective(g, &alpha);
        if best.as_ref().is_none_or(|b| obj < b.1) {
            best = Some((alpha, obj));
        }
    }
    best.expect("the capped simplex is non-empty")
}

/// Checks the KKT conditions of `min ½αᵀGα, Σα = 1, 0 ≤ α ≤ C` at `alpha`, to `tol · scale`.
fn assert_kkt(g: &Mat<f64>, cap: f64, alpha: &[f64], tol: f64) {
    let m = alpha.len();
    let scale = (0..m).map(|i| g[(i, i)]).fold(1e-300, f64::max);
    let grad: Vec<f64> = (0..m)
        .map(|i| (0..m).map(|j| g[(i, j)] * alpha[j]).sum())
        .collect();
    assert!((alpha.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    let at_lo = |i: usize| alpha[i] <= 1e-9;
    let at_hi = |i: usize| alpha[i] >= cap - 1e-9;
    for &a in alpha {
        assert!(
            (-1e-15..=cap + 1e-15).contains(&a),
            "α = {a} outside [0, {cap}]"
        );
    }
    // ν must satisfy: grad_i + ν = 0 (free), ≥ 0 (at 0), ≤ 0 (at C). Feasible interval for −ν:
    let (mut lo, mut hi) = (f64::NEG_INFINITY, f64::INFINITY);
    for (i, &gi) in grad.iter().enumerate() {
        if !at_lo(i) {
            lo = lo.max(gi); // free or upper: grad_i ≤ −ν
        }
        if !at_hi(i) {
            hi = hi.min(gi); // free or lower: grad_i ≥ −ν
        }
    }
    assert!(
        lo <= hi + tol * scale,
        "KKT violated: max over non-lower {lo} > min over non-upper {hi} (α = {alpha:?})"
    );
}

/// `m` seeded rows of `p ≥ 1` entries uniform in [-1, 1).
fn random_rows(seed: u64, m: usize, p: usize) -> Vec<Vec<f64>> {
    rand_vec(seed, m * p)
        .chunks(p)
        .map(<[f64]>::to_vec)
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn qp_matches_brute_force_over_active_sets(
        seed in any::<u64>(),
        m in 1usize..=4,
        extra in 0usize..4,
        cap_frac in 0.0f64..=1.0,
        scale in prop::sample::select(vec![1e-6, 1.0, 1e4]),
    ) {
        let cap = 1.0 / m as f64 + cap_frac * (1.0 - 1.0 / m as f64);
        let rows: Vec<Vec<f64>> =
            random_rows(seed, m, m + extra).into_iter().map(|r| r.into_iter().map(|v| v * scale).collect()).collect();
        let g = gram_of(&rows);
        let sol = solve_capped_simplex_qp(g.as_ref(), cap, &QpOptions::default()).unwrap();
        let (alpha_ref, obj_ref) = brute_force(&g, cap);
        let s = scale * scale;
        prop_assert!((sol.objective - obj_ref).abs() <= 1e-9 * s, "{} vs {}", sol.objective, obj_ref);
        // G is positive definite (P ≥ M random rows): the minimiser is unique.
        for (a, b) in sol.alpha.iter().zip(&alpha_ref) {
            prop_assert!((a - b).abs() < 1e-6, "α {:?} vs brute force {:?}", sol.alpha, alpha_ref);
        }
        assert_kkt(&g, cap, &sol.alpha, 1e-9);
        prop_assert!(sol.kkt_residual < 1e-9);
    }

    #[test]
    fn qp_matches_brute_force_objective_on_rank_deficient_grams(
        seed in any::<u64>(),
        m in 2usize..=4,
        rank in 1usize..=2,
        cap_frac in 0.0f64..=1.0,
    ) {
        let cap = 1.0 / m as f64 + cap_frac * (1.0 - 1.0 / m as f64);
        let g = gram_of(&random_rows(seed, m, rank));
        let sol = solve_capped_simplex_qp(g.as_ref(), cap, &QpOptions::default()).unwrap();
        let (_, obj_ref) = brute_force(&g, cap);
        prop_assert!((sol.objective - obj_ref).abs() <= 1e-9, "{} vs {}", sol.objective, obj_ref);
        assert_kkt(&g, cap, &sol.alpha, 1e-8);
    }
}

#[test]
fn qp_with_two_teachers_matches_a_dense_grid() {
    for (seed, cap) in [(1u64, 1.0), (2, 0.7), (3, 0.5), (4, 0.55)] {
        let g = gram_of(&random_rows(seed, 2, 3));
        let sol = solve_capped_simplex_qp(g.as_ref(), cap, &QpOptions::default()).unwrap();
        let (lo, hi) = (1.0 - cap, cap);
        let grid_min = (0..=20_000)
            .map(|k| lo + (hi - lo) * k as f64 / 20_000.0)
            .map(|a| objective(&g, &[a, 1.0 - a]))
            .fold(f64::INFINITY, f64::min);
        assert!(
            sol.objective <= grid_min + 1e-14,
            "solver {} above grid {grid_min}",
            sol.objective
        );
        assert!(
            grid_min - sol.objective < 1e-7,
            "grid {grid_min} far above solver {}",
            sol.objective
        );
    }
}

#[test]
fn infeasible_cap_and_bad_settings_are_errors() {
    let g = gram_of(&random_rows(0, 3, 4));
    assert!(matches!(
        solve_capped_simplex_qp(g.as_ref(), 0.3, &QpOptions::default()),
        Err(Error::InfeasibleCap { cap, teachers: 3 }) if cap == 0.3
    ));
    let a2d = A2dConfig {
        cap: 0.3,
        ..Default::default()
    }
    .check()
    .unwrap();
    assert!(matches!(
        a2d.weights(g.as_ref()),
        Err(Error::InfeasibleCap { teachers: 3, .. })
    ));
    for cap in [0.0, 1.5, f64::NAN] {
        assert!(matches!(
            A2dConfig {
                cap,
                ..Default::default()
            }
            .check(),
            Err(Error::InvalidConfig { field: "cap", .. })
        ));
    }
    assert!(matches!(
        A2dConfig {
            max_iterations: 0,
            ..Default::default()
        }
        .check(),
        Err(Error::InvalidConfig {
            field: "max_iterations",
            ..
        })
    ));
    let empty = Mat::<f64>::zeros(0, 0);
    assert!(matches!(
        solve_capped_simplex_qp(empty.as_ref(), 1.0, &QpOptions::default()),
        Err(Error::NoTeachers)
    ));
    let wide = Mat::<f64>::zeros(2, 3);
    assert!(matches!(
        solve_capped_simplex_qp(wide.as_ref(), 1.0, &QpOptions::default()),
        Err(Error::ShapeMismatch { .. })
    ));
    let mut nan = g.clone();
    nan[(1, 2)] = f64::NAN;
    assert!(matches!(
        solve_capped_simplex_qp(nan.as_ref(), 1.0, &QpOptions::default()),
        Err(Error::NonFinite { .. })
    ));
    let cfg: A2dConfig = serde_json::from_str(r#"{"weighting": "average", "cap": 0.5}"#).unwrap();
    assert_eq!(
        (cfg.weighting, cfg.cap, cfg.unit_normalise),
        (Weighting::Average, 0.5, false)
    );
}

#[test]
fn average_weighting_is_uniform_and_reports_its_objective() {
    let g = gram_of(&random_rows(5, 4, 6));
    let avg = A2dConfig {
        weighting: Weighting::Average,
        ..Default::default()
    }
    .check()
    .unwrap()
    .weights(g.as_ref())
    .unwrap();
    assert_eq!(avg.alpha, vec![0.25; 4]);
    assert!((avg.objective - objective(&g, &avg.alpha)).abs() < 1e-14);
    // A2D's weights are never worse than the average's.
    let a2d = A2dConfig::default()
        .check()
        .unwrap()
        .weights(g.as_ref())
        .unwrap();
    assert!(a2d.objective <= avg.objective + 1e-9);
}
