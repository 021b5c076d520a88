//! Closed-form ridge distillation (seed 002, "Closed-form Ridge Regression Distillation
//! Initialization"; SPEC §4.5).

use faer::linalg::solvers::Solve;
use faer::{Mat, MatRef, Side};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor, nn};

use crate::error::{Error, Result, check_range};

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
    let finite = (0..d).all(|i| (0..d).all(|j| a[(i, j)].is_finite()))
        && (0..d).all(|i| (0..b.ncols()).all(|j| b[(i, j)].is_finite()))
        && ridge.iter().all(|r| r.is_finite());
    if !finite {
        return Err(Error::NonFinite {
            op: "solve_normal_equations",
            what: "the normal equations",
        });
    }
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
/// Batches are folded into `Σ XᵀX` (`D × D`) and `Σ XᵀH` (`D × H`) in f64 — the per-batch products
/// run in tch on the batch's device, the sums live in faer matrices — so memory is
/// `O(D² + D·H)` whatever the number of samples. Built by [`RidgeConfig::check`].
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

fn to_f64_vec(t: &Tensor) -> Result<Vec<f64>> {
    Ok(Vec::<f64>::try_from(
        t.to_device(Device::Cpu)
            .to_kind(Kind::Double)
            .contiguous()
            .reshape([-1]),
    )?)
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

    /// Folds one batch into the sums (seed 002, `Σᵢ (Xⁱ)ᵀXⁱ` and `Σᵢ (Xⁱ)ᵀHⁱ`).
    ///
    /// # Shapes
    /// `x`: `[.., D]`, `h`: `[.., H]` with the same leading dimensions (flattened into rows).
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] for wrong feature sizes or different row counts;
    /// [`Error::NonFinite`] for NaN/inf inputs (the sums are left unchanged).
    pub fn push(&mut self, x: &Tensor, h: &Tensor) -> Result<()> {
        let (d, o) = (self.in_features as i64, self.out_features as i64);
        let (xs, hs) = (x.size(), h.size());
        if xs.last() != Some(&d)
            || hs.last() != Some(&o)
            || xs[..xs.len() - 1] != hs[..hs.len() - 1]
        {
            return Err(Error::ShapeMismatch {
                op: "RidgeAccumulator::push",
                expected: format!(
                    "x [.., D={d}] and h [.., H={o}] with equal leading dims (x is {xs:?})"
                ),
                got: hs,
            });
        }
        let x = x.detach().to_kind(Kind::Double).reshape([-1, d]);
        let h = h
            .detach()
            .to_device(x.device())
            .to_kind(Kind::Double)
            .reshape([-1, o]);
        if !bool::try_from(x.isfinite().all())? || !bool::try_from(h.isfinite().all())? {
            return Err(Error::NonFinite {
                op: "RidgeAccumulator::push",
                what: "a batch",
            });
        }
        let n = x.size()[0];
        let x = if self.cfg.intercept {
            Tensor::cat(
                &[
                    x.shallow_clone(),
                    Tensor::ones([n, 1], (Kind::Double, x.device())),
                ],
                1,
            )
        } else {
            x
        };
        let cols = self.xtx.nrows();
        let xtx = to_f64_vec(&x.tr().matmul(&x))?;
        let xth = to_f64_vec(&x.tr().matmul(&h))?;
        for j in 0..cols {
            for i in 0..cols {
                self.xtx[(i, j)] += xtx[i * cols + j];
            }
        }
        let oc = self.out_features;
        for j in 0..oc {
            for i in 0..cols {
                self.xth[(i, j)] += xth[i * oc + j];
            }
        }
        self.rows += n as u64;
        Ok(())
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
    /// `Wᵀ` as a tensor in tch `Linear` layout.
    ///
    /// # Shapes
    /// `[H, D]`.
    pub fn weight_tensor(&self, kind: Kind, device: Device) -> Tensor {
        let (d, h) = (self.weight.nrows(), self.weight.ncols());
        let flat: Vec<f64> = (0..h)
            .flat_map(|o| (0..d).map(move |i| (o, i)))
            .map(|(o, i)| self.weight[(i, o)])
            .collect();
        Tensor::from_slice(&flat)
            .view([h as i64, d as i64])
            .to_kind(kind)
            .to_device(device)
    }

    /// The intercept as a tensor, when one was fitted.
    ///
    /// # Shapes
    /// `[H]`.
    pub fn bias_tensor(&self, kind: Kind, device: Device) -> Option<Tensor> {
        self.bias
            .as_ref()
            .map(|b| Tensor::from_slice(b).to_kind(kind).to_device(device))
    }

    /// `x W + b` (seed 002's distilled encoder applied to student inputs).
    ///
    /// # Shapes
    /// `x`: `[.., D]` → `[.., H]`, in `x`'s kind.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] when the last dimension is not `D`.
    pub fn predict(&self, x: &Tensor) -> Result<Tensor> {
        let d = self.weight.nrows() as i64;
        if x.size().last() != Some(&d) {
            return Err(Error::ShapeMismatch {
                op: "RidgeSolution::predict",
                expected: format!("[.., D={d}]"),
                got: x.size(),
            });
        }
        let w = self.weight_tensor(x.kind(), x.device());
        let y = x.matmul(&w.tr());
        Ok(match self.bias_tensor(x.kind(), x.device()) {
            Some(b) => y + b,
            None => y,
        })
    }

    /// Loads the fit into a tch `Linear` as its initial weights (seed 002: the closed form
    /// initialises the student's encoder `W^trj` before fine-tuning). Without a fitted intercept
    /// the layer's bias, if it has one, is set to zero so that the layer computes `x W`.
    ///
    /// # Shapes
    /// `linear.ws`: `[H, D]`; `linear.bs`: `[H]`.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] when the layer's shape differs, or an intercept was fitted and the
    /// layer has no bias.
    pub fn load_into(&self, linear: &mut nn::Linear) -> Result<()> {
        let (d, h) = (self.weight.nrows() as i64, self.weight.ncols() as i64);
        if linear.ws.size() != [h, d] {
            return Err(Error::ShapeMismatch {
                op: "RidgeSolution::load_into",
                expected: format!("a Linear with weight [H={h}, D={d}]"),
                got: linear.ws.size(),
            });
        }
        let w = self.weight_tensor(linear.ws.kind(), linear.ws.device());
        let bias = match (&mut linear.bs, &self.bias) {
            (Some(bs), _) => {
                if bs.size() != [h] {
                    return Err(Error::ShapeMismatch {
                        op: "RidgeSolution::load_into",
                        expected: format!("a Linear bias [H={h}]"),
                        got: bs.size(),
                    });
                }
                let b = self.bias_tensor(bs.kind(), bs.device());
                Some((bs, b))
            }
            (None, Some(_)) => {
                return Err(Error::ShapeMismatch {
                    op: "RidgeSolution::load_into",
                    expected: format!("a Linear with a bias [H={h}] for the fitted intercept"),
                    got: vec![],
                });
            }
            (None, None) => None,
        };
        tch::no_grad(|| -> Result<()> {
            linear.ws.f_copy_(&w)?;
            if let Some((bs, b)) = bias {
                match b {
                    Some(b) => bs.f_copy_(&b)?,
                    None => {
                        let _ = bs.f_zero_()?;
                    }
                }
            }
            Ok(())
        })
    }
}
