//! The crate's error type.

/// Everything that can go wrong in `distill-kd`. Each variant carries the datum that explains it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A tensor's or matrix's shape does not fit the operation.
    #[error("{op}: expected shape {expected}, got {got:?}")]
    ShapeMismatch {
        /// The operation that checked the shape.
        op: &'static str,
        /// What was expected, in words or as a shape (e.g. `"[.., T=8, N=5, d]"`).
        expected: String,
        /// The shape that was passed.
        got: Vec<i64>,
    },
    /// A configuration value is outside its valid range.
    #[error("invalid config: `{field}` = {value}, expected {expected}")]
    InvalidConfig {
        /// The field's name as it appears in the serialised config.
        field: &'static str,
        /// The offending value, printed.
        value: String,
        /// The valid range, in words.
        expected: &'static str,
    },
    /// A2D: the capped simplex `{Σα = 1, 0 ≤ α ≤ C}` is empty because `C·M < 1`.
    #[error("A2D cap C = {cap} is infeasible for {teachers} teachers (needs C·M ≥ 1)")]
    InfeasibleCap {
        /// The cap `C`.
        cap: f64,
        /// The number of teachers `M`.
        teachers: usize,
    },
    /// A2D was given no teacher gradients.
    #[error("A2D needs at least one teacher gradient, got none")]
    NoTeachers,
    /// A2D: the active-set solver did not reach the KKT conditions within its iteration budget.
    #[error(
        "A2D QP did not converge in {iterations} active-set iterations (KKT residual {kkt_residual:e})"
    )]
    QpNotConverged {
        /// Iterations spent.
        iterations: usize,
        /// The KKT residual at the last iterate.
        kkt_residual: f64,
    },
    /// Ridge: the regularised normal matrix stayed not positive definite after every jitter.
    #[error(
        "ridge normal matrix is not positive definite (failing leading minor {minor}) even with jitter {jitter_tried:e}"
    )]
    NotPositiveDefinite {
        /// The index of the leading minor where Cholesky failed, at the last attempt.
        minor: usize,
        /// The largest diagonal jitter tried (0 when no retry was allowed).
        jitter_tried: f64,
    },
    /// Ridge: solve was asked of an accumulator that saw no rows.
    #[error("ridge accumulator has seen no rows")]
    NoData,
    /// A NaN or infinity where a finite number is needed.
    #[error("{op}: {what} contains NaN or infinity")]
    NonFinite {
        /// The operation that found it.
        op: &'static str,
        /// Which input.
        what: &'static str,
    },
    /// Joint basis: a selected `(j, i)` pair is out of range of the given eigenvectors.
    #[error(
        "joint basis: pair (j={j}, i={i}) out of range for U_t with {temporal} columns and U_s with {spatial}"
    )]
    PairOutOfRange {
        /// Temporal index.
        j: usize,
        /// Spatial index.
        i: usize,
        /// Columns of `U_t`.
        temporal: usize,
        /// Columns of `U_s`.
        spatial: usize,
    },
    /// Joint basis: a `(j, i)` pair is selected twice, so `B_K` would not have orthonormal columns.
    #[error("joint basis: pair (j={j}, i={i}) selected twice")]
    DuplicatePair {
        /// Temporal index.
        j: usize,
        /// Spatial index.
        i: usize,
    },
    /// Joint basis: the given eigenvector columns are not orthonormal.
    #[error(
        "joint basis: columns of {which} are not orthonormal (max |UᵀU − I| = {max_deviation:e})"
    )]
    NotOrthonormal {
        /// `"u_t"` or `"u_s"`.
        which: &'static str,
        /// The largest entry of `|UᵀU − I|` over the used columns.
        max_deviation: f64,
    },
    /// An error from libtorch (only with the `tch` feature).
    #[cfg(feature = "tch")]
    #[error(transparent)]
    Torch(#[from] tch::TchError),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Checks that a float config value lies in a range; the error names the field.
pub(crate) fn check_range(
    field: &'static str,
    value: f64,
    ok: impl FnOnce(f64) -> bool,
    expected: &'static str,
) -> Result<()> {
    if value.is_finite() && ok(value) {
        Ok(())
    } else {
        Err(Error::InvalidConfig {
            field,
            value: value.to_string(),
            expected,
        })
    }
}

/// Checks that every entry of a matrix is finite; the error names the operation and the input.
pub(crate) fn check_finite(
    op: &'static str,
    what: &'static str,
    m: faer::MatRef<'_, f64>,
) -> Result<()> {
    let finite = (0..m.ncols()).all(|j| (0..m.nrows()).all(|i| m[(i, j)].is_finite()));
    if finite {
        Ok(())
    } else {
        Err(Error::NonFinite { op, what })
    }
}

/// Checks that two tensors have the same shape.
#[cfg(feature = "tch")]
pub(crate) fn same_shape(
    op: &'static str,
    reference: &tch::Tensor,
    other: &tch::Tensor,
) -> Result<()> {
    let (a, b) = (reference.size(), other.size());
    if a == b {
        Ok(())
    } else {
        Err(Error::ShapeMismatch {
            op,
            expected: format!("{a:?}"),
            got: b,
        })
    }
}
