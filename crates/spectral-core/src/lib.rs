//! Graph Laplacians, dense and partial eigensolvers, truncated joint spatio-temporal
//! (Kronecker) bases, and factored projection kernels — the numeric heart of SGDD
//! (*Spectral-Guided Physical Dynamics Distillation*, "Joint Spatiotemporal Basis" and
//! "SGE"). Pure Rust over [`faer`] and [`rayon`]; no libtorch.
//!
//! # The maths
//!
//! ## Graphs and Laplacians
//!
//! A spatial graph on `N` nodes (bonds, a radius cutoff, k nearest neighbours, or complete:
//! [`Graph`]) with weights `w_ij > 0` and degrees `d_i = Σ_j w_ij` has the Laplacians
//!
//! $$L = I − D^{-1/2} A D^{-1/2} \quad\text{(normalised)},\qquad L = D − A \quad\text{(combinatorial)},$$
//!
//! both symmetric positive semi-definite ([`Laplacian`]). The normalised spectrum lies in
//! `[0, 2]`; an isolated node keeps the identity's row (eigenvalue 1) in the normalised form and
//! a zero row (eigenvalue 0) in the combinatorial one. Each connected component contributes one
//! eigenvalue 0, so disconnected graphs have a *degenerate* bottom of the spectrum. The temporal
//! graph over `T` frames is the path graph; its normalised eigenvalues are
//! `1 − cos(π j/(T−1))`, `j = 0..T`.
//!
//! ## Eigen-decomposition
//!
//! `L = U Λ Uᵀ` with `Λ` ascending and `U` orthonormal ([`EigenPairs`]). Eigenvectors are only
//! defined up to sign — and, for a repeated eigenvalue, up to a rotation of its eigenspace — so
//! [`canonicalize_eigenvectors`] fixes them: largest-magnitude entry positive (ties → lowest
//! index), and for a degenerate eigenvalue the basis obtained by pivoted Gram–Schmidt on the
//! rows of the eigenspace, which depends only on the eigenspace. Bases are therefore
//! reproducible run to run and solver to solver.
//!
//! * Dense: [`Laplacian::eigen`] / [`self_adjoint_eigen`] (faer's tridiagonal divide and
//!   conquer), `O(N³)`; [`Laplacian::eigen_leading`] / [`self_adjoint_eigen_leading`] for only
//!   the `k` smallest (tridiagonalisation, bisection, inverse iteration, back-transformation of
//!   `k` vectors), about half the cost.
//! * Partial: [`Laplacian::partial_eigen`] returns the `k` smallest pairs of a large sparse `L`
//!   by Chebyshev-filtered block subspace iteration — only sparse × block products, never a
//!   dense `N×N` — with residuals `‖Lv − λv‖` and a typed error when it does not converge. The
//!   method and why it was chosen are documented on [`Laplacian::partial_eigen`].
//!
//! ## The joint basis
//!
//! The spatio-temporal graph is the Cartesian product, with Laplacian
//!
//! $$L = L_t ⊗ I_N + I_T ⊗ L_s,$$
//!
//! whose eigenvectors are `u_t,j ⊗ u_s,i` with eigenvalues `μ_ij = λ_t,j + λ_s,i` (because
//! `(L_t ⊗ I)(u ⊗ v) = (L_t u) ⊗ v`). This is the paper's `B = U_t ⊗ U_s` with the joint
//! ordering made explicit. [`JointBasis`] keeps the `K` pairs with the smallest `μ`, ties broken
//! by `(μ, j, i)` ascending. For a fixed `j` the kept `i` are a prefix `0..m_j`, so only the
//! leading `i_max = m_0` columns of `U_s` and `j_max` columns of `U_t` are ever needed: building
//! a basis costs two small eigenproblems (`O(N³ + T³)`, or a partial solve) instead of the
//! `O((NT)³)` of the joint one.
//!
//! ## Factored kernels
//!
//! With `z ∈ R^{T×N×d}` stored row-major (flat index `(t·N + n)·d + c`) and one channel's
//! `Z_c ∈ R^{T×N}`, the coefficient of mode `(j, i)` is `u_t,jᵀ Z_c u_s,i`. The kernels
//! ([`JointBasis::project`], [`reconstruct`](JointBasis::reconstruct),
//! [`residual`](JointBasis::residual)) compute `a = B_Kᵀ z`, `B_K a` and `(I − B_K B_Kᵀ) z`
//! through `U_tᵀ Z` followed by one small GEMM per temporal mode, on `f32` or `f64`, for
//! batches, in parallel — never forming `B_K` (the materialised [`MaterialisedBasis`] exists
//! for tests and benchmarks only).
//!
//! ## Spectral-Guided Enhancement
//!
//! With learnable `w ∈ R^K` (initialised to 1):
//!
//! $$a = B_K^⊤ z,\quad ã = w ⊙ a,\quad z^{sg} = B_K ã + (I − B_K B_K^⊤) z = z + B_K((w − 1) ⊙ a).$$
//!
//! [`JointBasis::sge_forward`] returns `z^sg` and `ã` (identity at `w = 1`);
//! [`JointBasis::sge_backward`] is its adjoint: for upstream gradients `g = ∂L/∂z^sg`,
//! `h̃ = ∂L/∂ã`,
//!
//! $$∂L/∂z = g + B_K((w − 1) ⊙ B_K^⊤ g + w ⊙ h̃),\qquad ∂L/∂w_k = Σ_c a_{kc}((B_K^⊤ g)_{kc} + h̃_{kc}).$$
//!
//! ## Choosing K
//!
//! [`band_energy`] splits a signal's energy `Σ a²` over `μ`-bands plus the residual above the
//! truncation; [`suggest_k`] returns the smallest `K` whose lowest modes capture a given
//! fraction of a signal set's energy.
//!
//! # Example
//!
//! ```
//! use spectral_core::{Graph, JointBasis, JointBasisConfig};
//!
//! // A 6-node ring over T = 4 frames, K = 8 joint modes.
//! let ring = Graph::from_edges(6, &[(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (5, 0)])?;
//! let basis = JointBasis::from_graph(&ring, 4, &JointBasisConfig::new(8))?;
//! assert_eq!(basis.pairs()[0].temporal, 0); // μ = 0 first
//!
//! let d = 3;
//! let z: Vec<f32> = (0..4 * 6 * d).map(|x| (x as f32 * 0.37).sin()).collect();
//! let a = basis.project(&z, 1, d); // K×d
//! let sge = basis.sge_forward(&z, &vec![1.0; 8], 1, d);
//! assert!(sge.z_sg.iter().zip(&z).all(|(p, q)| (p - q).abs() < 1e-5)); // w = 1: identity
//! assert_eq!(a.len(), 8 * d);
//! # Ok::<(), spectral_core::Error>(())
//! ```

mod band;
mod cache;
mod eigen;
mod error;
mod float;
mod graph;
mod joint;
mod kernels;
mod laplacian;
mod partial;
mod reference;
mod tridiagonal;

pub use band::{BandEnergy, KSuggestion, band_energy, mode_energy, suggest_k, uniform_band_edges};
pub use cache::BasisCache;
pub use eigen::{
    CLUSTER_TOLERANCE, EigenPairs, TIE_TOLERANCE, canonicalize_eigenvectors, self_adjoint_eigen,
    self_adjoint_eigen_leading,
};
pub use error::{Error, Result};
pub use float::Float;
pub use graph::Graph;
pub use joint::{JointBasis, JointBasisConfig, ModePair, SpatialSolver, cut_at_gap};
pub use kernels::{SgeGrad, SgeOutput};
pub use laplacian::{Laplacian, LaplacianKind};
pub use partial::{PartialEigen, PartialEigenConfig};
pub use reference::{MaterialisedBasis, joint_laplacian_dense};

/// Re-exported so users can name the parallelism of the `*_into` kernels without depending on
/// faer directly.
pub use faer::Par;
