//! The rest of seed 002's auxiliary-modality learning: the polynomial feature map and the
//! dual-modality trainer's structure-only regulariser.

use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::error::{Error, Result, check_range, same_shape};
use crate::reduction::Reduction;

/// The polynomial feature map of seed 002, `E_x = [E; E⊙E; E⊙E⊙E]` for `degree = 3` (the
/// paper's), in general `[E; E^⊙2; …; E^⊙degree]` concatenated along the feature axis. It gives the
/// linear encoders (and the closed-form ridge fit) finite-order nonlinearity.
///
/// # Shapes
/// `e`: `[.., D]` → `[.., degree · D]`, power `p` in columns `(p − 1)·D .. p·D`.
///
/// # Errors
/// [`Error::InvalidConfig`] for `degree = 0`; [`Error::ShapeMismatch`] for a scalar `e`.
pub fn polynomial_features(e: &Tensor, degree: usize) -> Result<Tensor> {
    if degree == 0 {
        return Err(Error::InvalidConfig {
            field: "degree",
            value: "0".into(),
            expected: "at least 1",
        });
    }
    if e.dim() == 0 {
        return Err(Error::ShapeMismatch {
            op: "polynomial_features",
            expected: "[.., D]".into(),
            got: e.size(),
        });
    }
    let mut powers = Vec::with_capacity(degree);
    powers.push(e.shallow_clone());
    for p in 1..degree {
        let next = &powers[p - 1] * e;
        powers.push(next);
    }
    Ok(Tensor::cat(&powers, -1))
}

/// The point loss `L` of the structure-only regulariser.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PointLoss {
    /// `|ŷ − y|` (seed 002 trains with L1 on a log10 scale).
    #[default]
    L1,
    /// `(ŷ − y)²`.
    Mse,
}

/// Settings of [`StructureOnlyRegulariser`]; [`check`](Self::check) validates them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StructureRegConfig {
    /// `λ_b` (≥ 0): the weight of the structure-only term.
    pub lambda_b: f64,
    /// The point loss `L`.
    pub loss: PointLoss,
    /// Reduction of both terms.
    pub reduction: Reduction,
}

impl Default for StructureRegConfig {
    fn default() -> Self {
        Self {
            lambda_b: 1.0,
            loss: PointLoss::L1,
            reduction: Reduction::Mean,
        }
    }
}

impl StructureRegConfig {
    /// Validates the settings.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a negative or non-finite `lambda_b`.
    pub fn check(self) -> Result<StructureOnlyRegulariser> {
        check_range(
            "lambda_b",
            self.lambda_b,
            |v| v >= 0.0,
            "a finite number ≥ 0",
        )?;
        Ok(StructureOnlyRegulariser { cfg: self })
    }
}

/// The terms of the dual-modality trainer's loss, as returned by
/// [`StructureOnlyRegulariser::forward`].
#[derive(Debug)]
pub struct StructureRegTerms {
    /// `L(ŷ, y)`: the prediction from both modalities (`H = H_p + H_{x,T}`).
    pub full: Tensor,
    /// `L(ŷ_struct, y)`: the prediction from the structure (+ temperature) path alone.
    pub structure: Tensor,
    /// `full + λ_b · structure`.
    pub total: Tensor,
}

/// The dual-modality trainer's structure-only regulariser (seed 002, "Dual-modality Trainer g +
/// Structure-only Regularization"): `L(ŷ, y) + λ_b L(ŷ_{x,T}, y)`, which keeps the structure
/// encoder useful so that there is something to distil from it. Built by
/// [`StructureRegConfig::check`].
#[derive(Debug, Clone)]
pub struct StructureOnlyRegulariser {
    cfg: StructureRegConfig,
}

impl StructureOnlyRegulariser {
    /// The validated settings.
    pub fn config(&self) -> &StructureRegConfig {
        &self.cfg
    }

    /// `L(ŷ, y) + λ_b L(ŷ_struct, y)` (seed 002).
    ///
    /// # Shapes
    /// `y_hat`, `y_hat_struct`, `y`: the same shape. Each field of the result is a scalar, or that
    /// shape for [`Reduction::None`].
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] when the shapes differ.
    pub fn forward(
        &self,
        y_hat: &Tensor,
        y_hat_struct: &Tensor,
        y: &Tensor,
    ) -> Result<StructureRegTerms> {
        same_shape("StructureOnlyRegulariser::forward (y_hat)", y, y_hat)?;
        same_shape(
            "StructureOnlyRegulariser::forward (y_hat_struct)",
            y,
            y_hat_struct,
        )?;
        let point = |p: &Tensor| {
            let diff = p - y;
            match self.cfg.loss {
                PointLoss::L1 => diff.abs(),
                PointLoss::Mse => diff.square(),
            }
        };
        let full = self.cfg.reduction.apply(point(y_hat));
        let structure = self.cfg.reduction.apply(point(y_hat_struct));
        let total = &full + &structure * self.cfg.lambda_b;
        Ok(StructureRegTerms {
            full,
            structure,
            total,
        })
    }
}
