//! Privileged-information alignment (SGDD, seed 000): `L_align = L_rep + L_spec` with the teacher
//! detached.

use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::error::{Error, Result, check_range, same_shape};
use crate::reduction::Reduction;

/// Squared error between a student tensor and a teacher tensor, with the teacher detached
/// (stop-gradient): `reduce((s − sg(t))²)`.
///
/// This is the `MSE(·, sg(·))` building block of SGDD's alignment loss (seed 000, "Loss & Training":
/// `L_align = L_rep + L_spec`, SPEC §4.4). The teacher gets no gradient from it, whatever its
/// `requires_grad`.
///
/// # Shapes
/// `student` and `teacher`: the same shape, any rank. The result is a scalar, or that shape for
/// [`Reduction::None`].
///
/// # Errors
/// [`Error::ShapeMismatch`] when the shapes differ.
pub fn detached_mse(student: &Tensor, teacher: &Tensor, reduction: Reduction) -> Result<Tensor> {
    same_shape("detached_mse", student, teacher)?;
    let diff = student - teacher.detach();
    Ok(reduction.apply(diff.square()))
}

/// Settings of [`PiAlignment`]; [`check`](Self::check) validates them.
///
/// The total is `lambda · (rep_weight · L_rep + spec_weight · L_spec)`; SGDD uses all three = 1
/// and mean reductions (SPEC §4.4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PiAlignConfig {
    /// The distillation weight λ of `L = L_pred + λ L_align` (≥ 0).
    pub lambda: f64,
    /// Weight of the spatio-temporal term `L_rep(z^sg_init, sg(z^sg_dyn))` (≥ 0).
    pub rep_weight: f64,
    /// Weight of the spectral term `L_spec(ã_init, sg(ã_dyn))` (≥ 0).
    pub spec_weight: f64,
    /// Reduction of `L_rep`: `mean` or `sum` (the total must be a scalar).
    pub rep_reduction: Reduction,
    /// Reduction of `L_spec`: `mean` or `sum`.
    pub spec_reduction: Reduction,
}

impl Default for PiAlignConfig {
    fn default() -> Self {
        Self {
            lambda: 1.0,
            rep_weight: 1.0,
            spec_weight: 1.0,
            rep_reduction: Reduction::Mean,
            spec_reduction: Reduction::Mean,
        }
    }
}

impl PiAlignConfig {
    /// Validates the settings.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a negative or non-finite weight, or a `none` reduction.
    pub fn check(self) -> Result<PiAlignment> {
        check_range("lambda", self.lambda, |v| v >= 0.0, "a finite number ≥ 0")?;
        check_range(
            "rep_weight",
            self.rep_weight,
            |v| v >= 0.0,
            "a finite number ≥ 0",
        )?;
        check_range(
            "spec_weight",
            self.spec_weight,
            |v| v >= 0.0,
            "a finite number ≥ 0",
        )?;
        for (field, r) in [
            ("rep_reduction", self.rep_reduction),
            ("spec_reduction", self.spec_reduction),
        ] {
            if !r.is_scalar() {
                return Err(Error::InvalidConfig {
                    field,
                    value: "none".into(),
                    expected: "`mean` or `sum` (the total is a scalar; use `detached_mse` for element-wise terms)",
                });
            }
        }
        Ok(PiAlignment { cfg: self })
    }
}

/// The two alignment terms and their weighted total, as returned by [`PiAlignment::forward`].
#[derive(Debug)]
pub struct AlignTerms {
    /// `L_rep = MSE(z^sg_init, sg(z^sg_dyn))` (unweighted), a scalar.
    pub rep: Tensor,
    /// `L_spec = MSE(ã_init, sg(ã_dyn))` (unweighted), a scalar.
    pub spec: Tensor,
    /// `λ · (w_rep L_rep + w_spec L_spec)`: the term to add to `L_pred`.
    pub total: Tensor,
}

/// Privileged-information alignment of SGDD (seed 000, "Dual-layer Alignment"; SPEC §4.4, §4.5):
/// `L_align = L_rep(z^sg_init, sg(z^sg_dyn)) + L_spec(ã_init, sg(ã_dyn))`, weighted by λ.
///
/// The teacher (`E_dyn`, which read the privileged future) gets no gradient from this loss; the
/// student (`E_init`) does. Built by [`PiAlignConfig::check`].
#[derive(Debug, Clone, Default)]
pub struct PiAlignment {
    cfg: PiAlignConfig,
}

impl PiAlignment {
    /// The validated settings.
    pub fn config(&self) -> &PiAlignConfig {
        &self.cfg
    }

    /// The alignment loss (seed 000, `L_align = L_rep + L_spec`, the total loss
    /// `L_pred + λ L_align` with teacher-side gradients detached).
    ///
    /// # Shapes
    /// - `z_student`, `z_teacher`: the SGE outputs `z^sg_init`, `z^sg_dyn`, same shape, e.g.
    ///   `[B, T, N, d]` or `[T, N, d]`.
    /// - `a_student`, `a_teacher`: the reweighted spectral coefficients `ã_init`, `ã_dyn`, same
    ///   shape, e.g. `[B, K, d]` or `[K, d]`.
    /// - Every field of the result is a scalar.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] when a student/teacher pair differs in shape.
    pub fn forward(
        &self,
        z_student: &Tensor,
        z_teacher: &Tensor,
        a_student: &Tensor,
        a_teacher: &Tensor,
    ) -> Result<AlignTerms> {
        let rep = detached_mse(z_student, z_teacher, self.cfg.rep_reduction)?;
        let spec = detached_mse(a_student, a_teacher, self.cfg.spec_reduction)?;
        let total = (&rep * self.cfg.rep_weight + &spec * self.cfg.spec_weight) * self.cfg.lambda;
        Ok(AlignTerms { rep, spec, total })
    }
}
