//! The crate's error type: everything that can go wrong because of what a user passed in, or
//! because an iterative method did not converge.

/// Errors returned by `spectral-core`.
///
/// Shape mismatches inside the hot kernels ([`JointBasis::project`](crate::JointBasis::project)
/// and friends) are contract violations and panic instead (see their `# Panics` sections); every
/// other bad input is reported here, with the datum that makes it bad.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An edge names a node that does not exist.
    #[error("edge ({i}, {j}) names node {node}, but the graph has {n_nodes} nodes")]
    NodeOutOfRange {
        /// First endpoint of the edge.
        i: usize,
        /// Second endpoint of the edge.
        j: usize,
        /// The offending endpoint.
        node: usize,
        /// Number of nodes in the graph.
        n_nodes: usize,
    },
    /// An edge joins a node to itself; graph Laplacians here are for simple graphs.
    #[error("edge ({node}, {node}) is a self-loop; Laplacians here are for simple graphs")]
    SelfLoop {
        /// The node.
        node: usize,
    },
    /// An edge weight is not a finite, strictly positive number.
    #[error("edge ({i}, {j}) has weight {weight}; weights must be finite and > 0")]
    InvalidWeight {
        /// First endpoint.
        i: usize,
        /// Second endpoint.
        j: usize,
        /// The weight.
        weight: f64,
    },
    /// The same undirected edge is listed twice with different weights.
    #[error("edge ({i}, {j}) is listed twice with different weights ({first} and {second})")]
    ConflictingEdge {
        /// Smaller endpoint.
        i: usize,
        /// Larger endpoint.
        j: usize,
        /// Weight seen first.
        first: f64,
        /// Weight seen second.
        second: f64,
    },
    /// A coordinate is NaN or infinite.
    #[error("position of node {node} has a non-finite coordinate ({value}) on axis {axis}")]
    NonFinitePosition {
        /// The node.
        node: usize,
        /// Axis (0, 1, 2).
        axis: usize,
        /// The value.
        value: f64,
    },
    /// A matrix or vector handed to a solver holds NaN or infinity.
    #[error("{what} holds a non-finite value ({value}) at ({row}, {col})")]
    NonFiniteInput {
        /// What was checked.
        what: &'static str,
        /// Row of the first non-finite entry.
        row: usize,
        /// Column of the first non-finite entry.
        col: usize,
        /// The value.
        value: f64,
    },
    /// A parameter is out of its valid range.
    #[error("invalid {name} = {value}: expected {expected}")]
    InvalidParameter {
        /// Parameter name as in the API.
        name: &'static str,
        /// The value given, formatted.
        value: String,
        /// What would have been valid.
        expected: String,
    },
    /// Two inputs that must agree in shape do not.
    #[error("{op}: shape mismatch, expected {expected}, got {got}")]
    ShapeMismatch {
        /// The operation.
        op: &'static str,
        /// What was expected.
        expected: String,
        /// What was given.
        got: String,
    },
    /// Eigenvalues handed to [`JointBasis::new`](crate::JointBasis::new) are not ascending.
    #[error("{axis} eigenvalues are not ascending: λ[{index}] = {value} < λ[{}] = {previous}", index - 1)]
    NotAscending {
        /// `"spatial"` or `"temporal"`.
        axis: &'static str,
        /// Index of the first value smaller than its predecessor.
        index: usize,
        /// The value at `index`.
        value: f64,
        /// The value at `index - 1`.
        previous: f64,
    },
    /// The K smallest joint eigenvalues cannot be decided from the eigenpairs supplied: the
    /// selection reached the last supplied mode of an axis that has more modes than that.
    #[error(
        "the {k} smallest joint eigenvalues need more {axis} modes than the {available} supplied \
         (the graph has {total}); compute at least min(K, {total}) = {} {axis} eigenpairs",
        (*k).min(*total)
    )]
    InsufficientModes {
        /// `"spatial"` or `"temporal"`.
        axis: &'static str,
        /// Requested K.
        k: usize,
        /// Eigenpairs supplied for that axis.
        available: usize,
        /// Dimension of that axis (N or T).
        total: usize,
    },
    /// The dense self-adjoint eigensolver hit its iteration limit.
    #[error("dense self-adjoint eigendecomposition of a {n}×{n} matrix did not converge")]
    DenseNoConvergence {
        /// Matrix dimension.
        n: usize,
    },
    /// The partial eigensolver did not reach the requested residual.
    #[error(
        "partial eigensolver: {converged} of {requested} smallest eigenpairs converged after \
         {iterations} filter sweeps (largest residual ‖Lv − λv‖ = {max_residual:.3e}, \
         tolerance {tolerance:.3e}); raise max_iters or the filter degree, or relax tol"
    )]
    PartialNoConvergence {
        /// Eigenpairs asked for.
        requested: usize,
        /// Leading eigenpairs whose residual met the tolerance.
        converged: usize,
        /// Filter sweeps done.
        iterations: usize,
        /// Largest residual among the requested pairs at the end.
        max_residual: f64,
        /// The absolute residual tolerance that was applied.
        tolerance: f64,
    },
    /// No `K` up to the basis size captures the requested energy fraction.
    #[error(
        "the largest basis offered (K = {k_max}) captures {captured:.4} of the signal energy, \
         less than the requested {fraction}; offer a basis with more modes"
    )]
    EnergyNotReached {
        /// Requested fraction.
        fraction: f64,
        /// Fraction captured by all `k_max` modes.
        captured: f64,
        /// Modes in the basis offered.
        k_max: usize,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn invalid(name: &'static str, value: impl ToString, expected: impl ToString) -> Error {
    Error::InvalidParameter {
        name,
        value: value.to_string(),
        expected: expected.to_string(),
    }
}
