//! A2D multi-teacher weighting (SDKD eq. 12–15): the exact capped-simplex QP against brute force
//! over active sets, KKT conditions, and the tch-level step.

use distill_kd::{
    A2dConfig, Error, QpOptions, Weighting, flat_gradient, gradient_surrogate,
    solve_capped_simplex_qp,
};
use faer::Mat;
use proptest::prelude::*;
use tch::{Kind, Tensor, nn};

use crate::common::{max_abs_diff, rand_f64};

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

fn random_rows(seed: u64, m: usize, p: usize) -> Vec<Vec<f64>> {
    let t = rand_f64(seed, &[m as i64, p as i64]);
    Vec::<Vec<f64>>::try_from(&t).unwrap()
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
fn infeasible_cap_and_bad_inputs_are_errors() {
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
    assert!(matches!(
        A2dConfig {
            cap: 0.0,
            ..Default::default()
        }
        .check(),
        Err(Error::InvalidConfig { field: "cap", .. })
    ));
    assert!(matches!(
        A2dConfig {
            cap: 1.5,
            ..Default::default()
        }
        .check(),
        Err(Error::InvalidConfig { field: "cap", .. })
    ));
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
    let cfg: A2dConfig = serde_json::from_str(r#"{"weighting": "average", "cap": 0.5}"#).unwrap();
    assert_eq!(
        (cfg.weighting, cfg.cap, cfg.unit_normalise),
        (Weighting::Average, 0.5, false)
    );
}

#[test]
fn flat_gradients_and_surrogate_apply_the_a2d_step() {
    let vs = nn::VarStore::new(tch::Device::Cpu);
    let lin = nn::linear(vs.root() / "student", 3, 2, Default::default());
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
