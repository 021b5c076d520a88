//! Band definitions for the frequency-aligned loss (SDKD eq. 10; SPEC §4.5): which DFT bins a
//! cutoff keeps in the low band `Ψ_l`. The splitters that apply a split to tensors — the joint
//! graph basis of SPEC §4.2 for graph signals and the DFT cutoff for time series and grids — are
//! the tch half (`bands/tensor.rs`, feature `tch`).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

#[cfg(feature = "tch")]
mod tensor;
#[cfg(feature = "tch")]
pub use tensor::{BandSplitter, Bands, JointBasisSplitter};

/// A bin is low when the sum of its per-axis excesses ([`DftSplitter::excess`]) is at most this.
const LOW_EXCESS: f64 = 1.0 + 1e-12;

/// Which DFT bins a [`DftSplitter`] keeps in the low band.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FreqMask {
    /// Keep a bin when `|k_a| ≤ c_a` along every split axis `a`.
    #[default]
    Box,
    /// Keep a bin when `Σ_a (k_a / c_a)² ≤ 1` (a radial cutoff when all `c_a` are equal); an axis
    /// with `c_a = 0` keeps only `k_a = 0`.
    Ellipse,
}

/// Settings of a [`DftSplitter`]; [`check`](Self::check) validates them.
///
/// E.g. a time cutoff on `[B, T, N, d]` signals: `dims = [-3]`, `cutoffs = [2]`; a space-time
/// cutoff on grid signals `[B, T, H, W, C]`: `dims = [1, 2, 3]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DftSplitterConfig {
    /// The axes to transform (negative counts from the end), distinct.
    pub dims: Vec<i64>,
    /// The cutoff frequency per axis, in integer cycles over the axis length: bins with signed
    /// frequency `|k| ≤ cutoff` are low.
    pub cutoffs: Vec<usize>,
    /// How the per-axis cutoffs combine.
    #[serde(default)]
    pub mask: FreqMask,
}

impl DftSplitterConfig {
    /// Validates the settings.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when `dims` is empty, has repeats, or differs in length from
    /// `cutoffs`.
    pub fn check(self) -> Result<DftSplitter> {
        if self.dims.is_empty() || self.dims.len() != self.cutoffs.len() {
            return Err(Error::InvalidConfig {
                field: "dims",
                value: format!("{:?} (cutoffs {:?})", self.dims, self.cutoffs),
                expected: "a non-empty list of axes, one cutoff per axis",
            });
        }
        let mut sorted = self.dims.clone();
        sorted.sort_unstable();
        sorted.dedup();
        if sorted.len() != self.dims.len() {
            return Err(Error::InvalidConfig {
                field: "dims",
                value: format!("{:?}", self.dims),
                expected: "distinct axes",
            });
        }
        Ok(DftSplitter { cfg: self })
    }
}

/// A DFT cutoff band splitter (SDKD eq. 10 `Ψ_l`, `Ψ_h` with a cutoff `ω_c`, as in the paper's
/// Plancherel split `Σ_{|ω| ≤ ω_c} + Σ_{|ω| > ω_c}`; SPEC §4.5 "a DFT cutoff along time (and space
/// for grids)").
///
/// `Ψ_l(x) = Re F⁻¹(M ⊙ F x)` with `F` the DFT over the configured axes and `M` a 0/1 mask on the
/// signed integer frequencies, symmetric under `k → −k`. It is therefore an orthogonal projection
/// that maps real signals to real signals (the projection onto the real Fourier modes with
/// `|k| ≤ cutoff`), and `Ψ_h = I − Ψ_l`. Built by [`DftSplitterConfig::check`].
///
/// The mask `M` is [`is_low`](Self::is_low) and needs no libtorch; applying the split to tensors
/// (`BandSplitter`) needs the `tch` feature.
#[derive(Debug, Clone)]
pub struct DftSplitter {
    cfg: DftSplitterConfig,
}

impl DftSplitter {
    /// The validated settings.
    pub fn config(&self) -> &DftSplitterConfig {
        &self.cfg
    }

    /// Whether the DFT bin with signed integer frequencies `k` (one per configured axis, in the
    /// order of [`DftSplitterConfig::dims`]) is in the low band: `|k_a| ≤ c_a` on every axis for
    /// [`FreqMask::Box`], `Σ_a (k_a / c_a)² ≤ 1` for [`FreqMask::Ellipse`]. This is the mask `M`
    /// of `Ψ_l(x) = Re F⁻¹(M ⊙ F x)`; it is symmetric under `k → −k`.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] when `k` does not have one entry per configured axis.
    pub fn is_low(&self, k: &[i64]) -> Result<bool> {
        if k.len() != self.cfg.dims.len() {
            return Err(Error::ShapeMismatch {
                op: "DftSplitter::is_low",
                expected: format!("one frequency per axis of {:?}", self.cfg.dims),
                got: vec![k.len() as i64],
            });
        }
        let excess: f64 = k
            .iter()
            .enumerate()
            .map(|(axis, &k)| self.excess(axis, k.unsigned_abs()))
            .sum();
        Ok(excess <= LOW_EXCESS)
    }

    /// The "excess" of frequency `±k` along configured axis `axis`: summed over the axes it is at
    /// most 1 exactly for the low bins (a Box axis contributes 0 inside its cutoff and 2 outside;
    /// an Ellipse axis `(k / c)²`, or 0/2 when `c = 0`).
    fn excess(&self, axis: usize, k: u64) -> f64 {
        let (k, c) = (k as f64, self.cfg.cutoffs[axis] as f64);
        let outside = match self.cfg.mask {
            FreqMask::Box => k > c,
            FreqMask::Ellipse if c == 0.0 => k > 0.0,
            FreqMask::Ellipse => return (k / c) * (k / c),
        };
        if outside { 2.0 } else { 0.0 }
    }
}
