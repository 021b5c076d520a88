//! Closed-form ridge distillation (seed 002, "Closed-form Ridge Regression Distillation
//! Initialization"; SPEC §4.5). Pure f64 on faer; batches and fits as tensors, and loading a fit
//! into a tch `Linear`, are the tch half (`ridge/tensor.rs`, feature `tch`).

use faer::linalg::solvers::Solve;
use faer::{Mat, MatRef, Side};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, check_finite, check_range};

#[cfg(feature = "tch")]
mod tensor;

/// A Cholesky pivot `L_kk²` at or below this fraction of its diagonal entry `A_kk` counts as a
/// failure: column `k` is numerically a combination of the earlier ones (the ratio is invariant
/// to feature scaling), so the jitter path takes over.
const PIVOT_TOL: f64 = 1e-13;
/// The first jitter, relative to the mean diagonal; each retry multiplies it by 100.
const FIRST_JITTER: f64 = 1e-12;

/// The solution of a regularised normal system, as returned by [`solve_normal_equations`].
#[derive(Debug, Clone)]
pub struct NormalSolution {
    /// `X` of `(A + diag(r)) X = B`, `[D, H]`.
    pub x: Mat<f64>,
    /// The diagonal jitter that made the Cholesky factorisation succeed (0 when none was needed).
    pub jitter: f64,
}

/// Solves `(A + diag(r)) X = B` for a symmetric positive semi-definite `A` by Cholesky (faer),
/// the solve of seed 002's `W = (Σ XᵢᵀXᵢ + λI)⁻¹ Σ XᵢᵀHᵢ`.
///
/// When the factorisation fails or a pivot is numerically zero (`L_kk² ≤ 1e-13 · A_kk`), it is
/// retried with a diagonal jitter `δ = 1e-12 · mean diag · 100^t` for `t = 0 .. max_jitter_tries`.
/// One step of iterative refinement against the unjittered system follows
/// (`X += (A + diag(r) + δI)⁻¹ (B − (A + diag(r)) X)`), which removes most of the jitter's bias.
///
/// # Shapes
/// `a`: `[D, D]`; `ridge`: `D` diagonal additions (≥ 0); `b`: `[D, H]` → `x`: `[D, H]`.
///
/// # Errors
/// [`Error::ShapeMismatch`] for inconsistent shapes; [`Error::NonFinite`] for NaN/inf entries;
/// [`Error::NotPositiveDefinite`] with the failing minor and the largest jitter tried when every
/// attempt fails.
pub fn solve_normal_equations(
    a: MatRef<'_, f64>,
    ridge: &[f64],
    b: MatRef<'_, f64>,
    max_jitter_tries: u32,
) -> Result<NormalSolution> {
    let d = a.nrows();
    if a.ncols() != d || ridge.len() != d || b.nrows() != d {
        return Err(Error::ShapeMismatch {
            op: "solve_normal_equations",
            expected: format!("a [D, D], ridge [D], b [D, H] with D = {d}"),
            got: vec![
                a.nrows() as i64,
                a.ncols() as i64,
                ridge.len() as i64,
                b.nrows() as i64,
                b.ncols() as i64,
            ],
        });
    }
    let op = "solve_normal_equations";
    let what = "the normal equations";
    check_finite(op, what, a)?;
    check_finite(op, what, b)?;
    check_finite(op, what, MatRef::from_column_major_slice(ridge, d, 1))?;
    let system = Mat::from_fn(d, d, |i, j| {
        0.5 * (a[(i, j)] + a[(j, i)]) + if i == j { ridge[i] } else { 0.0 }
    });
    if d == 0 {
        return Ok(NormalSolution {
            x: Mat::zeros(0, b.ncols()),
            jitter: 0.0,
        });
    }
    let mean_diag = (0..d).map(|i| system[(i, i)]).sum::<f64>() / d as f64;
    let scale = if mean_diag > 0.0 { mean_diag } else { 1.0 };
    let mut jitter = 0.0;
    let mut last_minor = 0;
    for attempt in 0..=max_jitter_tries {
        if attempt > 0 {
            jitter = scale * FIRST_JITTER * 100f64.powi(attempt as i32 - 1);
        }
        let jittered = Mat::from_fn(d, d, |i, j| {
            system[(i, j)] + if i == j { jitter } else { 0.0 }
        });
        let llt = match jittered.llt(Side::Lower) {
            Ok(llt) => llt,
            Err(e) => {
                last_minor = match e {
                    faer::linalg::cholesky::llt::factor::LltError::NonPositivePivot { index } => {
                        index
                    }
                };
                continue;
            }
        };
        let l = llt.L();
        if let Some(k) = (0..d).find(|&k| l[(k, k)] * l[(k, k)] <= PIVOT_TOL * jittered[(k, k)]) {
            last_minor = k;
            continue;
        }
        let mut x = llt.solve(b);
        // One step of iterative refinement against the unjittered system.
        let residual = b - &system * &x;
        x += llt.solve(&residual);
        return Ok(NormalSolution { x, jitter });
    }
    Err(Error::NotPositiveDefinite {
        minor: last_minor,
        jitter_tried: jitter,
    })
}

/// Settings of [`RidgeAccumulator`]; [`check`](Self::check) validates them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RidgeConfig {
    /// `λ` (≥ 0), relative: the penalty is `λ_eff = λ · mean(diag Σ XᵀX)`, so it does not depend
    /// on the features' scale.
    pub lambda: f64,
    /// Fit an unpenalised intercept (a bias) too.
    pub intercept: bool,
    /// Jitter retries when the normal matrix is not numerically positive definite.
    pub max_jitter_tries: u32,
}

impl Default for RidgeConfig {
    fn default() -> Self {
        Self {
            lambda: 1e-3,
            intercept: false,
            max_jitter_tries: 6,
        }
    }
}

impl RidgeConfig {
    /// Validates the settings and starts an empty accumulator for `in_features → out_features`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a negative or non-finite `lambda`.
    pub fn check(self, in_features: usize, out_features: usize) -> Result<RidgeAccumulator> {
        check_range("lambda", self.lambda, |v| v >= 0.0, "a finite number ≥ 0")?;
        let cols = in_features + usize::from(self.intercept);
        Ok(RidgeAccumulator {
            cfg: self,
            in_features,
            out_features,
            xtx: Mat::zeros(cols, cols),
            xth: Mat::zeros(cols, out_features),
            rows: 0,
        })
    }
}

/// Streaming accumulator of closed-form ridge distillation (seed 002):
/// `W = (Σᵢ XᵢᵀXᵢ + λ_eff I)⁻¹ Σᵢ XᵢᵀHᵢ`, which maps student inputs `X` (e.g. structure
/// embeddings) to teacher representations `H`.
///
/// Batches are folded into `Σ XᵀX` (`D × D`) and `Σ XᵀH` (`D × H`) in f64 faer matrices, so memory
/// is `O(D² + D·H)` whatever the number of samples. [`push_rows`](Self::push_rows) takes a batch
/// as faer matrices; with the `tch` feature, `push` takes tensors and forms the per-batch products
/// in tch on the batch's device. Built by [`RidgeConfig::check`].
#[derive(Debug, Clone)]
pub struct RidgeAccumulator {
    cfg: RidgeConfig,
    in_features: usize,
    out_features: usize,
    /// `[D(+1), D(+1)]`, the intercept column last.
    xtx: Mat<f64>,
    /// `[D(+1), H]`.
    xth: Mat<f64>,
    rows: u64,
}

impl RidgeAccumulator {
    /// The validated settings.
    pub fn config(&self) -> &RidgeConfig {
        &self.cfg
    }

    /// Rows folded in so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Folds one batch of rows into the sums (seed 002, `Σᵢ (Xⁱ)ᵀXⁱ` and `Σᵢ (Xⁱ)ᵀHⁱ`).
    ///
    /// # Shapes
    /// `x`: `[n, D]`, `h`: `[n, H]`, one row per sample (`n = 0` is allowed and changes nothing).
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] for wrong feature sizes or different row counts;
    /// [`Error::NonFinite`] for NaN/inf inputs (the sums are left unchanged).
    pub fn push_rows(&mut self, x: MatRef<'_, f64>, h: MatRef<'_, f64>) -> Result<()> {
        let (d, o) = (self.in_features, self.out_features);
        if x.ncols() != d || h.ncols() != o || x.nrows() != h.nrows() {
            return Err(Error::ShapeMismatch {
                op: "RidgeAccumulator::push_rows",
                expected: format!(
                    "x [n, D={d}] and h [n, H={o}] with the same n (x is [{}, {}])",
                    x.nrows(),
                    x.ncols()
                ),
                got: vec![h.nrows() as i64, h.ncols() as i64],
            });
        }
        check_finite("RidgeAccumulator::push_rows", "x", x)?;
        check_finite("RidgeAccumulator::push_rows", "h", h)?;
        let with_ones;
        let x = if self.cfg.intercept {
            with_ones = Mat::from_fn(x.nrows(), d + 1, |i, j| if j < d { x[(i, j)] } else { 1.0 });
            with_ones.as_ref()
        } else {
            x
        };
        self.fold(
            (x.transpose() * x).as_ref(),
            (x.transpose() * h).as_ref(),
            x.nrows() as u64,
        );
        Ok(())
    }

    /// Adds one batch's `XᵀX` (`[D(+1), D(+1)]`) and `XᵀH` (`[D(+1), H]`) of `rows` rows to the
    /// sums; the callers have checked the shapes.
    fn fold(&mut self, xtx: MatRef<'_, f64>, xth: MatRef<'_, f64>, rows: u64) {
        self.xtx += xtx;
        self.xth += xth;
        self.rows += rows;
    }

    /// Accumulated `Σ XᵀX` (`[D(+1), D(+1)]`, intercept column last).
    pub fn gram(&self) -> MatRef<'_, f64> {
        self.xtx.as_ref()
    }

    /// Accumulated `Σ XᵀH` (`[D(+1), H]`).
    pub fn cross(&self) -> MatRef<'_, f64> {
        self.xth.as_ref()
    }

    /// The closed-form ridge solution (seed 002):
    /// `W = (Σ XᵀX + λ_eff I)⁻¹ Σ XᵀH` with `λ_eff = λ · mean(diag Σ XᵀX)` over the features (the
    /// intercept is not penalised), by Cholesky with jitter retry and one refinement step (see
    /// [`solve_normal_equations`]).
    ///
    /// # Errors
    /// [`Error::NoData`] before any row; [`Error::NotPositiveDefinite`] when every jitter fails.
    pub fn solve(&self) -> Result<RidgeSolution> {
        if self.rows == 0 {
            return Err(Error::NoData);
        }
        let d = self.in_features;
        let mean_diag = if d == 0 {
            0.0
        } else {
            (0..d).map(|i| self.xtx[(i, i)]).sum::<f64>() / d as f64
        };
        let lambda_eff = self.cfg.lambda * mean_diag;
        let mut ridge = vec![lambda_eff; d];
        if self.cfg.intercept {
            ridge.push(0.0);
        }
        let sol = solve_normal_equations(
            self.xtx.as_ref(),
            &ridge,
            self.xth.as_ref(),
            self.cfg.max_jitter_tries,
        )?;
        let weight = Mat::from_fn(d, self.out_features, |i, j| sol.x[(i, j)]);
        let bias = self
            .cfg
            .intercept
            .then(|| (0..self.out_features).map(|j| sol.x[(d, j)]).collect());
        Ok(RidgeSolution {
            weight,
            bias,
            lambda_eff,
            jitter: sol.jitter,
            rows: self.rows,
        })
    }
}

/// A fitted closed-form ridge map `x ↦ x W + b`, as returned by [`RidgeAccumulator::solve`].
#[derive(Debug, Clone)]
pub struct RidgeSolution {
    /// `W`, `[D, H]`.
    pub weight: Mat<f64>,
    /// `b`, `H` values, when an intercept was fitted.
    pub bias: Option<Vec<f64>>,
    /// The penalty used, `λ · mean(diag Σ XᵀX)`.
    pub lambda_eff: f64,
    /// The Cholesky jitter that was needed (0 when none).
    pub jitter: f64,
    /// Rows the fit saw.
    pub rows: u64,
}

impl RidgeSolution {
    /// `x W + b` on rows given as a faer matrix (seed 002's distilled encoder applied to student
    /// inputs).
    ///
    /// # Shapes
    /// `x`: `[n, D]` → `[n, H]`.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] when `x` does not have `D` columns.
    pub fn predict_rows(&self, x: MatRef<'_, f64>) -> Result<Mat<f64>> {
        let d = self.weight.nrows();
        if x.ncols() != d {
            return Err(Error::ShapeMismatch {
                op: "RidgeSolution::predict_rows",
                expected: format!("[n, D={d}]"),
                got: vec![x.nrows() as i64, x.ncols() as i64],
            });
        }
        let mut y = x * &self.weight;
        if let Some(b) = &self.bias {
            for (j, bj) in b.iter().enumerate() {
                for i in 0..y.nrows() {
                    y[(i, j)] += bj;
                }
            }
        }
        Ok(y)
    }
}
