//! A2D ("Agree to Disagree") multi-teacher weighting (SDKD seed 001/003, eq. 12–15): an exact
//! solve of the min-norm QP over the capped simplex, plus AVER-MKD. Pure f64 on faer; the step
//! from gradient tensors and the gradient helpers are the tch half
//! (`a2d/tensor.rs`, feature `tch`).

use faer::linalg::solvers::Solve;
use faer::{Mat, MatRef, Side};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, check_finite, check_range};

#[cfg(feature = "tch")]
mod tensor;
#[cfg(feature = "tch")]
pub use tensor::{A2dStep, flat_gradient, gradient_surrogate};

/// Options of [`solve_capped_simplex_qp`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QpOptions {
    /// `τ` of the tie-break: the solver minimises `½ αᵀ(G/s + τI)α` with `s = max diag G`, so the
    /// minimiser is unique; when the optimum of `G` is not (e.g. identical teachers), it is the one
    /// of least norm. Must be > 0; 1e-10 moves the optimum by about that much.
    pub tie_break: f64,
    /// Active-set iteration budget.
    pub max_iterations: usize,
}

impl Default for QpOptions {
    fn default() -> Self {
        Self {
            tie_break: 1e-10,
            max_iterations: 1000,
        }
    }
}

/// The solution of the capped-simplex QP (SDKD eq. 13).
#[derive(Debug, Clone)]
pub struct QpSolution {
    /// `α*`, `M` weights with `Σα = 1`, `0 ≤ α ≤ C`.
    pub alpha: Vec<f64>,
    /// `½ α*ᵀ G α* = ½ ‖Σ α*_m g_m‖²` on the given (unscaled) Gram matrix.
    pub objective: f64,
    /// Active-set iterations taken.
    pub iterations: usize,
    /// The KKT residual of the (scaled, tie-broken) problem at `α*`: the largest violation of
    /// stationarity on free weights, dual feasibility on bound weights, and primal feasibility.
    pub kkt_residual: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bound {
    Free,
    Lower,
    Upper,
}

/// Below this (`|p|∞`, weights are O(1)) an active-set step is zero.
const STEP_TOL: f64 = 1e-13;
/// Below this a multiplier of the scaled problem (Hessian entries O(1)) counts as negative.
const MULTIPLIER_TOL: f64 = 1e-12;

/// Solves SDKD eq. 13 exactly on a Gram matrix: `min_α ½ αᵀ G α` s.t. `Σ α_m = 1`,
/// `0 ≤ α_m ≤ C` — the A2D weights of `M` teachers whose loss gradients `g_m` have Gram matrix
/// `G_mn = ⟨g_m, g_n⟩`.
///
/// A primal active-set method (Nocedal & Wright, Alg. 16.3) from the feasible point `α = 1/M`:
/// each step minimises over the free weights with the bound weights fixed, in the null space of
/// `Σα = 1` (so the reduced Hessian stays well conditioned even when `G` is rank one), takes the
/// longest feasible step, and frees the bound weight with the most negative multiplier. It ends
/// at a point satisfying the KKT conditions to rounding (see [`QpSolution::kkt_residual`]) in
/// finitely many steps. `G` is scaled by `s = max diag G` and regularised by `τI` (see
/// [`QpOptions::tie_break`]); `G = 0` gives uniform weights.
///
/// # Shapes
/// `gram`: `[M, M]`, symmetric positive semi-definite (it is used through `(G + Gᵀ)/2`).
///
/// # Errors
/// [`Error::NoTeachers`] for `M = 0`; [`Error::ShapeMismatch`] when `gram` is not square;
/// [`Error::NonFinite`] for NaN/inf entries; [`Error::InvalidConfig`] when `cap ≤ 0` or
/// `tie_break ≤ 0`; [`Error::InfeasibleCap`] when `C·M < 1`; [`Error::QpNotConverged`] when the
/// iteration budget runs out.
pub fn solve_capped_simplex_qp(
    gram: MatRef<'_, f64>,
    cap: f64,
    options: &QpOptions,
) -> Result<QpSolution> {
    let m = gram.nrows();
    if m == 0 {
        return Err(Error::NoTeachers);
    }
    if gram.ncols() != m {
        return Err(Error::ShapeMismatch {
            op: "solve_capped_simplex_qp",
            expected: "a square [M, M] Gram matrix".into(),
            got: vec![gram.nrows() as i64, gram.ncols() as i64],
        });
    }
    check_range("cap", cap, |v| v > 0.0, "a number > 0 (C ∈ (0, 1])")?;
    check_range("tie_break", options.tie_break, |v| v > 0.0, "a number > 0")?;
    check_finite("solve_capped_simplex_qp", "the Gram matrix", gram)?;
    let cap = cap.min(1.0);
    if cap * (m as f64) < 1.0 - 1e-12 {
        return Err(Error::InfeasibleCap { cap, teachers: m });
    }

    let scale = (0..m).map(|i| gram[(i, i)]).fold(0.0, f64::max);
    let scale = if scale > 0.0 { scale } else { 1.0 };
    let h = Mat::from_fn(m, m, |i, j| {
        0.5 * (gram[(i, j)] + gram[(j, i)]) / scale + if i == j { options.tie_break } else { 0.0 }
    });

    let mut alpha = vec![1.0 / m as f64; m];
    let mut bound = vec![Bound::Free; m];
    if cap * (m as f64) <= 1.0 + 1e-12 {
        // C·M = 1: the capped simplex is the single point α = 1/M = C.
        let objective = quadratic(gram, &alpha) * 0.5;
        return Ok(QpSolution {
            alpha,
            objective,
            iterations: 0,
            kkt_residual: 0.0,
        });
    }

    for iteration in 0..options.max_iterations {
        let free: Vec<usize> = (0..m).filter(|&i| bound[i] == Bound::Free).collect();
        // The working-set minimiser depends on the working set only (not on the iterate), so
        // once reached it is reproduced bit for bit and the step below is exactly zero.
        let target = working_set_minimiser(h.as_ref(), &alpha, &free, options.max_iterations)?;
        let p: Vec<f64> = free
            .iter()
            .zip(&target)
            .map(|(&i, &x)| x - alpha[i])
            .collect();
        let p_norm = p.iter().fold(0.0f64, |a, v| a.max(v.abs()));
        if p_norm > STEP_TOL {
            // Longest step along p that keeps the free weights inside [0, C].
            let (mut step, mut blocking) = (1.0, None);
            for (k, &i) in free.iter().enumerate() {
                let (limit, to) = if p[k] < 0.0 {
                    (-alpha[i] / p[k], Bound::Lower)
                } else if p[k] > 0.0 {
                    ((cap - alpha[i]) / p[k], Bound::Upper)
                } else {
                    continue;
                };
                let limit = limit.max(0.0);
                if limit < step {
                    step = limit;
                    blocking = Some((i, to));
                }
            }
            match blocking {
                None => {
                    for (k, &i) in free.iter().enumerate() {
                        alpha[i] = target[k];
                    }
                }
                Some((b, to)) => {
                    for (k, &i) in free.iter().enumerate() {
                        alpha[i] += step * p[k];
                    }
                    alpha[b] = if to == Bound::Lower { 0.0 } else { cap };
                    bound[b] = to;
                }
            }
            continue;
        }
        let g = mat_vec(h.as_ref(), &alpha);
        // p = 0: optimal on the working set. Check the bound multipliers.
        match most_negative_multiplier(&g, &bound) {
            Release::None => {
                let kkt_residual = kkt_residual(&g, &alpha, &bound, cap);
                let objective = quadratic(gram, &alpha) * 0.5;
                return Ok(QpSolution {
                    alpha,
                    objective,
                    iterations: iteration,
                    kkt_residual,
                });
            }
            Release::One(i) => bound[i] = Bound::Free,
            Release::Pair(i, j) => {
                bound[i] = Bound::Free;
                bound[j] = Bound::Free;
            }
        }
    }
    let g = mat_vec(h.as_ref(), &alpha);
    Err(Error::QpNotConverged {
        iterations: options.max_iterations,
        kkt_residual: kkt_residual(&g, &alpha, &bound, cap),
    })
}

/// `αᵀ G α`.
fn quadratic(gram: MatRef<'_, f64>, alpha: &[f64]) -> f64 {
    let m = alpha.len();
    let mut acc = 0.0;
    for i in 0..m {
        for j in 0..m {
            acc += alpha[i] * 0.5 * (gram[(i, j)] + gram[(j, i)]) * alpha[j];
        }
    }
    acc
}

fn mat_vec(h: MatRef<'_, f64>, x: &[f64]) -> Vec<f64> {
    (0..h.nrows())
        .map(|i| (0..h.ncols()).map(|j| h[(i, j)] * x[j]).sum())
        .collect()
}

/// The free weights minimising `½ αᵀHα` with the bound weights fixed at their bounds and
/// `Σα = 1`, by the null-space method: from `x₀ = (1 − Σ_B α_B)/|F| · 1` along
/// `Z = [e_k − e_last]`, `(Zᵀ H_FF Z) q = −Zᵀ (H α̃)_F` with `α̃` = `α` with `x₀` on `F`, and
/// `α_F = x₀ + Z q`. Working in the null space of `Σα = 1` keeps the reduced Hessian well
/// conditioned when `G` is rank one (e.g. identical teachers).
fn working_set_minimiser(
    h: MatRef<'_, f64>,
    alpha: &[f64],
    free: &[usize],
    budget: usize,
) -> Result<Vec<f64>> {
    let f = free.len();
    if f == 0 {
        return Ok(Vec::new());
    }
    let bound_sum: f64 = (0..alpha.len())
        .filter(|i| !free.contains(i))
        .map(|i| alpha[i])
        .sum();
    let x0 = (1.0 - bound_sum) / f as f64;
    if f == 1 {
        return Ok(vec![x0]);
    }
    let mut anchored = alpha.to_vec();
    for &i in free {
        anchored[i] = x0;
    }
    let g = mat_vec(h, &anchored);
    let r = f - 1;
    let last = free[r];
    // (ZᵀHZ)_{ab} = H_ab − H_a,last − H_last,b + H_last,last ; (Zᵀg)_a = g_a − g_last.
    let reduced = Mat::from_fn(r, r, |a, b| {
        let (ia, ib) = (free[a], free[b]);
        h[(ia, ib)] - h[(ia, last)] - h[(last, ib)] + h[(last, last)]
    });
    let rhs = Mat::from_fn(r, 1, |a, _| -(g[free[a]] - g[last]));
    let llt = reduced
        .llt(Side::Lower)
        .map_err(|_| Error::QpNotConverged {
            iterations: budget,
            kkt_residual: f64::NAN,
        })?;
    let q = llt.solve(&rhs);
    let mut x: Vec<f64> = (0..r).map(|a| x0 + q[(a, 0)]).collect();
    x.push(x0 - (0..r).map(|a| q[(a, 0)]).sum::<f64>());
    Ok(x)
}

enum Release {
    None,
    One(usize),
    Pair(usize, usize),
}

/// The bound weight(s) to free at a working-set optimum, if any multiplier is negative.
///
/// With free weights, `ν = −mean(g_F)` and the multipliers are `g_i + ν` (at 0) and `−(g_i + ν)`
/// (at C). With none free, `ν` may be anything in `[−min_L g, −max_U g]`; when that interval is
/// empty, moving weight from the upper-bound weight of largest gradient to the lower-bound weight
/// of smallest gradient descends, so both are freed.
fn most_negative_multiplier(g: &[f64], bound: &[Bound]) -> Release {
    let free: Vec<usize> = (0..g.len()).filter(|&i| bound[i] == Bound::Free).collect();
    if free.is_empty() {
        let lower = (0..g.len())
            .filter(|&i| bound[i] == Bound::Lower)
            .min_by(|&a, &b| g[a].total_cmp(&g[b]));
        let upper = (0..g.len())
            .filter(|&i| bound[i] == Bound::Upper)
            .max_by(|&a, &b| g[a].total_cmp(&g[b]));
        return match (lower, upper) {
            (Some(l), Some(u)) if g[u] > g[l] + MULTIPLIER_TOL => Release::Pair(u, l),
            _ => Release::None,
        };
    }
    let nu = -free.iter().map(|&i| g[i]).sum::<f64>() / free.len() as f64;
    let mut worst = (-MULTIPLIER_TOL, None);
    for (i, b) in bound.iter().enumerate() {
        let lambda = match b {
            Bound::Free => continue,
            Bound::Lower => g[i] + nu,
            Bound::Upper => -(g[i] + nu),
        };
        if lambda < worst.0 {
            worst = (lambda, Some(i));
        }
    }
    match worst.1 {
        Some(i) => Release::One(i),
        None => Release::None,
    }
}

fn kkt_residual(g: &[f64], alpha: &[f64], bound: &[Bound], cap: f64) -> f64 {
    let free: Vec<usize> = (0..g.len()).filter(|&i| bound[i] == Bound::Free).collect();
    let nu = if free.is_empty() {
        let lo = (0..g.len())
            .filter(|&i| bound[i] == Bound::Lower)
            .map(|i| g[i])
            .fold(f64::INFINITY, f64::min);
        let hi = (0..g.len())
            .filter(|&i| bound[i] == Bound::Upper)
            .map(|i| g[i])
            .fold(f64::NEG_INFINITY, f64::max);
        match (lo.is_finite(), hi.is_finite()) {
            (true, true) => -(lo + hi) / 2.0,
            (true, false) => -lo,
            (false, true) => -hi,
            (false, false) => 0.0,
        }
    } else {
        -free.iter().map(|&i| g[i]).sum::<f64>() / free.len() as f64
    };
    let mut r = (alpha.iter().sum::<f64>() - 1.0).abs();
    for i in 0..g.len() {
        r = r.max((-alpha[i]).max(alpha[i] - cap).max(0.0));
        r = r.max(match bound[i] {
            Bound::Free => (g[i] + nu).abs(),
            Bound::Lower => (-(g[i] + nu)).max(0.0),
            Bound::Upper => (g[i] + nu).max(0.0),
        });
    }
    r
}

/// How the teachers are weighted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Weighting {
    /// A2D: the capped-simplex min-norm weights of SDKD eq. 13.
    #[default]
    A2d,
    /// AVER-MKD: the plain average `α_m = 1/M` (SDKD's baseline).
    Average,
}

/// Settings of [`A2d`]; [`check`](Self::check) validates them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct A2dConfig {
    /// A2D or the plain average.
    pub weighting: Weighting,
    /// The cap `C ∈ (0, 1]` of eq. 13 (`C = 1`: the plain simplex, MGDA's min-norm point);
    /// `C·M ≥ 1` is needed at solve time.
    pub cap: f64,
    /// Normalise each teacher's gradient to unit length before weighting (and combine the
    /// normalised gradients). Zero gradients stay zero.
    pub unit_normalise: bool,
    /// See [`QpOptions::tie_break`].
    pub tie_break: f64,
    /// See [`QpOptions::max_iterations`].
    pub max_iterations: usize,
}

impl Default for A2dConfig {
    fn default() -> Self {
        let qp = QpOptions::default();
        Self {
            weighting: Weighting::A2d,
            cap: 1.0,
            unit_normalise: false,
            tie_break: qp.tie_break,
            max_iterations: qp.max_iterations,
        }
    }
}

impl A2dConfig {
    /// Validates the settings.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for `cap ∉ (0, 1]`, `tie_break ≤ 0` or `max_iterations = 0`.
    pub fn check(self) -> Result<A2d> {
        check_range(
            "cap",
            self.cap,
            |v| v > 0.0 && v <= 1.0,
            "a number in (0, 1]",
        )?;
        check_range(
            "tie_break",
            self.tie_break,
            |v| v > 0.0,
            "a finite number > 0",
        )?;
        if self.max_iterations == 0 {
            return Err(Error::InvalidConfig {
                field: "max_iterations",
                value: "0".into(),
                expected: "at least 1",
            });
        }
        Ok(A2d { cfg: self })
    }
}

/// Multi-teacher gradient weighting: A2D (SDKD eq. 12–14) or AVER-MKD. Built by
/// [`A2dConfig::check`].
///
/// [`weights`](Self::weights) works on a Gram matrix and needs no libtorch; with the `tch` feature,
/// `step` does the whole step from the teachers' gradient tensors.
#[derive(Debug, Clone, Default)]
pub struct A2d {
    cfg: A2dConfig,
}

impl A2d {
    /// The validated settings.
    pub fn config(&self) -> &A2dConfig {
        &self.cfg
    }

    /// Weights from a Gram matrix (SDKD eq. 13; the plain average for [`Weighting::Average`]).
    ///
    /// # Shapes
    /// `gram`: `[M, M]`.
    ///
    /// # Errors
    /// As [`solve_capped_simplex_qp`].
    pub fn weights(&self, gram: MatRef<'_, f64>) -> Result<QpSolution> {
        match self.cfg.weighting {
            Weighting::A2d => solve_capped_simplex_qp(
                gram,
                self.cfg.cap,
                &QpOptions {
                    tie_break: self.cfg.tie_break,
                    max_iterations: self.cfg.max_iterations,
                },
            ),
            Weighting::Average => {
                let m = gram.nrows();
                if m == 0 {
                    return Err(Error::NoTeachers);
                }
                let alpha = vec![1.0 / m as f64; m];
                let objective = 0.5 * quadratic(gram, &alpha);
                Ok(QpSolution {
                    alpha,
                    objective,
                    iterations: 0,
                    kkt_residual: 0.0,
                })
            }
        }
    }
}
