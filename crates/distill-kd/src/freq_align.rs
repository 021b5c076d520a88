//! The frequency-aligned distillation loss of SDKD (seed 001/003, eq. 10–11).

use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::bands::BandSplitter;
use crate::error::{Result, check_range, same_shape};
use crate::reduction::Reduction;

/// Settings of [`FreqAlignedLoss`]; [`check`](Self::check) validates them and attaches a band
/// splitter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FreqAlignConfig {
    /// α of eq. 10: the weight of the low band relative to the high band (≥ 0).
    pub alpha: f64,
    /// λ of eq. 11: the weight of `L_KD` against the task loss (≥ 0).
    pub lambda: f64,
    /// Stop the gradient into the teacher's features (the teacher is pre-trained and frozen in
    /// SDKD). Default `true`.
    pub detach_teacher: bool,
}

impl Default for FreqAlignConfig {
    fn default() -> Self {
        Self {
            alpha: 1.0,
            lambda: 1.0,
            detach_teacher: true,
        }
    }
}

impl FreqAlignConfig {
    /// Validates the settings and attaches the band splitter `Ψ`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`](crate::Error::InvalidConfig) for a negative or non-finite `alpha`
    /// or `lambda`.
    pub fn check<S: BandSplitter>(self, splitter: S) -> Result<FreqAlignedLoss<S>> {
        check_range("alpha", self.alpha, |v| v >= 0.0, "a finite number ≥ 0")?;
        check_range("lambda", self.lambda, |v| v >= 0.0, "a finite number ≥ 0")?;
        Ok(FreqAlignedLoss {
            cfg: self,
            splitter,
        })
    }
}

/// The terms of the SDKD objective (eq. 11), as returned by [`FreqAlignedLoss::objective`].
#[derive(Debug)]
pub struct FreqAlignedTerms {
    /// The task loss `‖S(X) − Y‖²` (reduced).
    pub task: Tensor,
    /// The frequency-aligned distillation loss `L_KD` (eq. 10, reduced, unweighted).
    pub kd: Tensor,
    /// `task + λ · kd`.
    pub total: Tensor,
}

/// The frequency-aligned distillation loss (SDKD eq. 10):
/// `L_KD = ‖Ψ_h(S) − Ψ_h(T)‖² + α ‖Ψ_l(S) − Ψ_l(T)‖²`, with pluggable band splitters
/// ([`JointBasisSplitter`](crate::JointBasisSplitter), [`DftSplitter`](crate::DftSplitter), or any
/// [`BandSplitter`]).
///
/// Since `Ψ` is linear, the difference is split once: `Ψ(S) − Ψ(T) = Ψ(S − T)`. Built by
/// [`FreqAlignConfig::check`].
#[derive(Debug)]
pub struct FreqAlignedLoss<S> {
    cfg: FreqAlignConfig,
    splitter: S,
}

impl<S: BandSplitter> FreqAlignedLoss<S> {
    /// The validated settings.
    pub fn config(&self) -> &FreqAlignConfig {
        &self.cfg
    }

    /// The band splitter `Ψ`.
    pub fn splitter(&self) -> &S {
        &self.splitter
    }

    /// `L_KD` of SDKD eq. 10 between student features `S = G(X)` and teacher features `T = F(X)`.
    ///
    /// The element-wise loss is `Ψ_h(S − T)² + α Ψ_l(S − T)²`; [`Reduction::Sum`] gives the
    /// squared norms of eq. 10, [`Reduction::Mean`] divides both by the element count.
    ///
    /// # Shapes
    /// `student`, `teacher`: the same shape, one the splitter accepts. The result is a scalar, or
    /// that shape for [`Reduction::None`].
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`](crate::Error::ShapeMismatch) when the shapes differ or do not fit
    /// the splitter.
    pub fn forward(
        &self,
        student: &Tensor,
        teacher: &Tensor,
        reduction: Reduction,
    ) -> Result<Tensor> {
        same_shape("FreqAlignedLoss::forward", student, teacher)?;
        let diff = if self.cfg.detach_teacher {
            student - teacher.detach()
        } else {
            student - teacher
        };
        let bands = self.splitter.split(&diff)?;
        let elementwise = bands.high.square() + bands.low.square() * self.cfg.alpha;
        Ok(reduction.apply(elementwise))
    }

    /// The SDKD objective (eq. 11): `‖S(X) − Y‖² + λ L_KD(S_feat, T_feat)`; with one teacher `m`
    /// this is also the per-teacher loss `ℓ_m` of eq. 12 that [`A2d`](crate::A2d) weighs.
    ///
    /// Pass the student's prediction as both `prediction` and `student` to distil outputs (as
    /// SDKD does), or intermediate features as `student`/`teacher`.
    ///
    /// # Shapes
    /// `prediction`, `target`: the same shape; `student`, `teacher`: the same shape, one the
    /// splitter accepts. Every field of the result is a scalar, or element-wise for
    /// [`Reduction::None`] (then `total` needs the two shapes to broadcast).
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`](crate::Error::ShapeMismatch) as in [`forward`](Self::forward), or
    /// when `prediction` and `target` differ in shape.
    pub fn objective(
        &self,
        prediction: &Tensor,
        target: &Tensor,
        student: &Tensor,
        teacher: &Tensor,
        reduction: Reduction,
    ) -> Result<FreqAlignedTerms> {
        same_shape("FreqAlignedLoss::objective", prediction, target)?;
        let task = reduction.apply((prediction - target).square());
        let kd = self.forward(student, teacher, reduction)?;
        let total = task.f_add(&(&kd * self.cfg.lambda))?;
        Ok(FreqAlignedTerms { task, kd, total })
    }
}
