//! The tch half of A2D: the whole multi-teacher step from gradient tensors (SDKD eq. 12–14) and the
//! helpers that flatten parameter gradients and write a combined gradient back.

use faer::Mat;
use tch::{Kind, Tensor};

use super::A2d;
use crate::error::{Error, Result};

/// One multi-teacher step, as returned by [`A2d::step`].
#[derive(Debug)]
pub struct A2dStep {
    /// `α*` (eq. 13), one weight per teacher.
    pub alpha: Vec<f64>,
    /// The Gram matrix `G_mn = ⟨g_m, g_n⟩` of the (optionally normalised) gradients, `[M, M]`.
    pub gram: Mat<f64>,
    /// `Σ α*_m g_m`, shaped like the input gradients, in their kind: the gradient to descend.
    pub combined_gradient: Tensor,
    /// `½ ‖Σ α*_m g_m‖²`.
    pub objective: f64,
    /// Active-set iterations (0 for the plain average).
    pub iterations: usize,
}

impl A2dStep {
    /// The student's update direction `d = −Σ α*_m g_m` (SDKD eq. 14); the update is
    /// `θ ← θ + η d`. (Eq. 15 as printed, `θ ← θ − η d`, has the sign flipped: with eq. 14's `d`
    /// it would ascend.)
    pub fn direction(&self) -> Tensor {
        -&self.combined_gradient
    }
}

impl A2d {
    /// One multi-teacher step (SDKD eq. 12–14): the Gram matrix of the teachers' loss gradients,
    /// `α*` of eq. 13, and the combined gradient `Σ α*_m g_m` (whose negative is eq. 14's `d`).
    ///
    /// The gradients may be over the student's parameters (see [`flat_gradient`]) or with respect
    /// to the student's output (cheaper; the Gram matrix is then that of output-space gradients).
    /// The Gram matrix is formed in f64 on the gradients' device.
    ///
    /// # Shapes
    /// `grads`: `M` tensors with the same number of elements `P` (any shapes); the combined
    /// gradient has the shape and kind of `grads[0]`.
    ///
    /// # Errors
    /// [`Error::NoTeachers`], [`Error::ShapeMismatch`] when the element counts differ,
    /// [`Error::NonFinite`] for NaN/inf gradients, and the errors of
    /// [`solve_capped_simplex_qp`](super::solve_capped_simplex_qp) (e.g. [`Error::InfeasibleCap`]
    /// when `C·M < 1`).
    pub fn step(&self, grads: &[Tensor]) -> Result<A2dStep> {
        let first = grads.first().ok_or(Error::NoTeachers)?;
        let p = first.numel();
        let mut rows = Vec::with_capacity(grads.len());
        for g in grads {
            if g.numel() != p {
                return Err(Error::ShapeMismatch {
                    op: "A2d::step",
                    expected: format!("{p} elements, like the first gradient {:?}", first.size()),
                    got: g.size(),
                });
            }
            rows.push(
                g.detach()
                    .to_device(first.device())
                    .to_kind(Kind::Double)
                    .reshape([-1]),
            );
        }
        let mut s = Tensor::stack(&rows, 0); // [M, P]
        if !bool::try_from(s.isfinite().all())? {
            return Err(Error::NonFinite {
                op: "A2d::step",
                what: "a teacher gradient",
            });
        }
        if self.cfg.unit_normalise {
            let norms = s.norm_scalaropt_dim(2.0, [1], true);
            let safe = norms.where_scalarother(&norms.gt(0.0), 1.0);
            s /= safe;
        }
        let m = grads.len();
        let g: Vec<f64> =
            Vec::try_from(s.matmul(&s.tr()).to_device(tch::Device::Cpu).reshape([-1]))?;
        let gram = Mat::from_fn(m, m, |i, j| g[i * m + j]);
        let sol = self.weights(gram.as_ref())?;
        let alpha_t = Tensor::from_slice(&sol.alpha)
            .to_device(s.device())
            .unsqueeze(1);
        let combined = (alpha_t * &s).sum_dim_intlist([0i64].as_slice(), false, Kind::Double);
        let combined_gradient = combined.to_kind(first.kind()).reshape(first.size());
        Ok(A2dStep {
            alpha: sol.alpha,
            gram,
            combined_gradient,
            objective: sol.objective,
            iterations: sol.iterations,
        })
    }
}

/// The gradient of `loss` with respect to `params`, flattened and concatenated: one teacher's
/// `∇_θ ℓ_m` of SDKD eq. 13. The graph is kept, so it can be called once per teacher loss.
/// A parameter that `loss` does not depend on contributes zeros.
///
/// # Shapes
/// `loss`: a scalar; `params`: any tensors requiring grad (e.g. `vs.trainable_variables()`) →
/// `[Σ numel]`, in the parameters' kind.
///
/// # Errors
/// [`Error::ShapeMismatch`] when `loss` is not a scalar; [`Error::Torch`] when a parameter does
/// not require grad or `loss` has no graph.
pub fn flat_gradient(loss: &Tensor, params: &[Tensor]) -> Result<Tensor> {
    if loss.numel() != 1 {
        return Err(Error::ShapeMismatch {
            op: "flat_gradient",
            expected: "a scalar loss".into(),
            got: loss.size(),
        });
    }
    let grads = Tensor::f_run_backward(&[loss], params, true, false)?;
    let flat: Vec<Tensor> = grads
        .iter()
        .zip(params)
        .map(|(g, p)| {
            if g.defined() {
                g.reshape([-1])
            } else {
                p.zeros_like().detach().reshape([-1])
            }
        })
        .collect();
    Ok(Tensor::cat(&flat, 0))
}

/// A scalar whose gradient with respect to `params` is `combined` (unflattened in order):
/// `Σ_p ⟨p, sg(c_p)⟩`. After `optimizer.zero_grad()`, `surrogate.backward()` and
/// `optimizer.step()` apply the A2D update of SDKD eq. 14–15 with any tch optimiser.
///
/// # Shapes
/// `params`: the tensors `combined` was flattened from (as in [`flat_gradient`]); `combined`:
/// `[Σ numel]` → a scalar.
///
/// # Errors
/// [`Error::ShapeMismatch`] when `combined` does not have `Σ numel` elements.
pub fn gradient_surrogate(params: &[Tensor], combined: &Tensor) -> Result<Tensor> {
    let total: i64 = params.iter().map(|p| p.numel() as i64).sum();
    if combined.numel() as i64 != total {
        return Err(Error::ShapeMismatch {
            op: "gradient_surrogate",
            expected: format!("[{total}] (Σ numel of the parameters)"),
            got: combined.size(),
        });
    }
    let flat = combined.detach().reshape([-1]);
    let mut offset = 0i64;
    let mut acc: Option<Tensor> = None;
    for p in params {
        let n = p.numel() as i64;
        let chunk = flat
            .narrow(0, offset, n)
            .view(p.size().as_slice())
            .to_kind(p.kind())
            .to_device(p.device());
        offset += n;
        let term = (p * chunk).sum(p.kind());
        acc = Some(match acc {
            None => term,
            Some(a) => a + term,
        });
    }
    Ok(acc.unwrap_or_else(|| Tensor::zeros([], (Kind::Float, combined.device()))))
}
