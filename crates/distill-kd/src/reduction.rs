//! How an element-wise loss is reduced.

use serde::{Deserialize, Serialize};
use tch::Tensor;

/// How an element-wise loss is reduced, as in PyTorch (`reduction="none" | "mean" | "sum"`).
///
/// Serialised in lower case (`"none"`, `"mean"`, `"sum"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reduction {
    /// Keep the element-wise loss, with the input's shape.
    None,
    /// The mean over all elements (an MSE for squared errors).
    #[default]
    Mean,
    /// The sum over all elements (a squared norm `‖·‖²` for squared errors).
    Sum,
}

impl Reduction {
    /// Reduces an element-wise loss.
    pub fn apply(self, elementwise: Tensor) -> Tensor {
        match self {
            Reduction::None => elementwise,
            Reduction::Mean => elementwise.mean(elementwise.kind()),
            Reduction::Sum => elementwise.sum(elementwise.kind()),
        }
    }

    /// Whether the result is a scalar.
    pub fn is_scalar(self) -> bool {
        !matches!(self, Reduction::None)
    }
}

impl From<Reduction> for tch::Reduction {
    fn from(r: Reduction) -> Self {
        match r {
            Reduction::None => tch::Reduction::None,
            Reduction::Mean => tch::Reduction::Mean,
            Reduction::Sum => tch::Reduction::Sum,
        }
    }
}
