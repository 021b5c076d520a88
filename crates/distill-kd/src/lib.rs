//! Distillation across observability: the distillation tools of the SGDD workspace (SPEC §4.4,
//! §4.5). Losses are tch (differentiable, any device); the closed form and the A2D QP are f64 on
//! faer, and need no libtorch (see [Features](#features)).
//!
//! # Privileged-information alignment (SGDD, seed 000)
//! A teacher `E_dyn` that reads the future trajectory and a student `E_init` that reads only `G_0`
//! both pass through SGE, giving `(z^sg_dyn, ã_dyn)` and `(z^sg_init, ã_init)`. The alignment is
//!
//! ```text
//! L = L_pred + λ ( MSE(z^sg_init, sg(z^sg_dyn)) + MSE(ã_init, sg(ã_dyn)) ),   λ = 1,
//! ```
//!
//! with `sg` the stop-gradient: [`PiAlignment`] (from [`PiAlignConfig`]). Which representation
//! the decoder reads is a staged schedule, [`TeacherForcingSchedule`] (from
//! [`TeacherForcingConfig`]), deterministic in `(seed, iteration)`: the paper's reads `z^sg_dyn`
//! for the first third of training (teacher-forcing ratio 1.0), then either representation with
//! probability 0.5 ([`TeacherForcingConfig::paper`]); the default ends with a third on the
//! student path ([`TeacherForcingConfig::student_end`]).
//!
//! # Frequency-aligned distillation (SDKD, seeds 001/003, eq. 10–11)
//! ```text
//! L_KD = ‖Ψ_h(S) − Ψ_h(T)‖² + α ‖Ψ_l(S) − Ψ_l(T)‖²,    min ‖S(X) − Y‖² + λ L_KD
//! ```
//! [`FreqAlignedLoss`] over any [`BandSplitter`]: `Ψ_l` is an orthogonal projection onto a
//! low-frequency subspace and `Ψ_h = I − Ψ_l`. Two are provided:
//! - [`JointBasisSplitter`]: the joint spatio-temporal graph basis of SPEC §4.2,
//!   `B_K = [u_t,j ⊗ u_s,i]` over selected pairs, `Ψ_l = B_K B_Kᵀ`, applied factored
//!   (`C = U_tᵀ Z_c U_s`, never `B_K`); it also gives the SGE coefficients `a = B_Kᵀ z` and the
//!   reconstruction `B_K a`.
//! - [`DftSplitter`]: a DFT cutoff along time, or along several axes of a grid signal.
//!
//! # A2D multi-teacher weighting (SDKD eq. 12–15)
//! With teacher losses `ℓ_m` and gradients `g_m = ∇_θ ℓ_m`,
//! ```text
//! α* = argmin ½ ‖Σ α_m g_m‖²   s.t.  Σ α_m = 1,  0 ≤ α_m ≤ C,      d = −Σ α*_m g_m,
//! ```
//! solved exactly on the `M × M` Gram matrix by an active-set method
//! ([`solve_capped_simplex_qp`]); [`A2d::step`] does the whole step from gradients (also AVER-MKD
//! and unit-normalised gradients). `C·M < 1` is [`Error::InfeasibleCap`].
//!
//! # Closed-form ridge distillation (seed 002)
//! ```text
//! W = (Σ_i X_iᵀ X_i + λ_eff I)⁻¹ Σ_i X_iᵀ H_i,     λ_eff = λ · mean(diag Σ XᵀX),
//! ```
//! accumulated over batches in f64 ([`RidgeAccumulator`]), solved by Cholesky with jitter retry and
//! one refinement step ([`solve_normal_equations`]), loaded into a tch `Linear`
//! ([`RidgeSolution::load_into`]). With it: the polynomial feature map `[E; E⊙E; E⊙E⊙E]`
//! ([`polynomial_features`]) and the structure-only regulariser `L(ŷ, y) + λ_b L(ŷ_struct, y)`
//! ([`StructureOnlyRegulariser`]).
//!
//! # Features
//! - `tch` (default): everything on tensors — the losses ([`PiAlignment`], [`FreqAlignedLoss`]
//!   with its [`BandSplitter`]s, [`StructureOnlyRegulariser`], [`polynomial_features`]), the A2D
//!   step from gradient tensors ([`A2d::step`], [`flat_gradient`], [`gradient_surrogate`]), and
//!   the ridge fit's tensor side ([`RidgeAccumulator::push`], [`RidgeSolution::predict`],
//!   [`RidgeSolution::load_into`]). It builds `tch`/`torch-sys`, so it needs libtorch (SPEC §3),
//!   and [`Error`] gains `Torch`.
//!
//! Without it (`distill-kd = { .., default-features = false }`) the crate is pure Rust, with no
//! libtorch to find, build or link: [`solve_capped_simplex_qp`] and [`A2d::weights`] on a Gram
//! matrix; [`RidgeAccumulator::push_rows`], [`RidgeAccumulator::solve`] and
//! [`RidgeSolution::predict_rows`] on faer matrices, and [`solve_normal_equations`]; the
//! [`TeacherForcingSchedule`]; and the DFT band definition ([`DftSplitterConfig`],
//! [`DftSplitter::is_low`]).

// Without `tch` the links above to the tch half have no target; they resolve in the default build.
#![cfg_attr(not(feature = "tch"), allow(rustdoc::broken_intra_doc_links))]

mod a2d;
#[cfg(feature = "tch")]
mod align;
#[cfg(feature = "tch")]
mod aml;
mod bands;
mod error;
#[cfg(feature = "tch")]
mod freq_align;
#[cfg(feature = "tch")]
mod reduction;
mod ridge;
mod schedule;

pub use a2d::{A2d, A2dConfig, QpOptions, QpSolution, Weighting, solve_capped_simplex_qp};
#[cfg(feature = "tch")]
pub use a2d::{A2dStep, flat_gradient, gradient_surrogate};
#[cfg(feature = "tch")]
pub use align::{AlignTerms, PiAlignConfig, PiAlignment, detached_mse};
#[cfg(feature = "tch")]
pub use aml::{
    PointLoss, StructureOnlyRegulariser, StructureRegConfig, StructureRegTerms, polynomial_features,
};
#[cfg(feature = "tch")]
pub use bands::{BandSplitter, Bands, JointBasisSplitter};
pub use bands::{DftSplitter, DftSplitterConfig, FreqMask};
pub use error::{Error, Result};
#[cfg(feature = "tch")]
pub use freq_align::{FreqAlignConfig, FreqAlignedLoss, FreqAlignedTerms};
#[cfg(feature = "tch")]
pub use reduction::Reduction;
pub use ridge::{
    NormalSolution, RidgeAccumulator, RidgeConfig, RidgeSolution, solve_normal_equations,
};
pub use schedule::{DecoderInput, ForcingStage, TeacherForcingConfig, TeacherForcingSchedule};
