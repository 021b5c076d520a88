//! Band analysis: where in the joint spectrum a signal's (or an error's) energy lies, and an
//! energy criterion for choosing `K` — the paper names the choice of `K` as its open problem.

use crate::error::{Error, Result, invalid};
use crate::float::Float;
use crate::joint::JointBasis;

/// Energy per selected mode: `e_k = Σ_{b,c} a[b,k,c]²` with `a = B_Kᵀ z`, in the basis's
/// selection order (ascending `μ`). Accumulated in `f64`.
///
/// # Panics
/// When `z.len() != batch·T·N·d`.
#[track_caller]
pub fn mode_energy<T: Float>(
    basis: &JointBasis,
    z: &[T],
    batch: usize,
    channels: usize,
) -> Vec<f64> {
    let a = basis.project(z, batch, channels);
    let k = basis.k();
    let mut e = vec![0.0f64; k];
    if channels == 0 {
        return e;
    }
    for (row, coeffs) in a.chunks_exact(channels).enumerate() {
        e[row % k] += coeffs.iter().map(|&x| x.to_f64() * x.to_f64()).sum::<f64>();
    }
    e
}

/// Energy of a signal per joint-frequency band.
#[derive(Debug, Clone, PartialEq)]
pub struct BandEnergy {
    /// Band edges in `μ`, ascending; band `b` is `[edges[b], edges[b+1])`, the last band
    /// closed on the right.
    pub edges: Vec<f64>,
    /// Energy per band (`edges.len() − 1` values).
    pub energy: Vec<f64>,
    /// Energy of selected modes whose `μ` falls outside `[edges[0], edges[last]]`.
    pub outside: f64,
    /// Energy outside the span of `B_K` (`‖z‖² − ‖a‖²`, clamped at 0): the part above the
    /// truncation.
    pub residual: f64,
    /// `‖z‖²`.
    pub total: f64,
}

/// `n` equal-width band edges from `lo` to `hi` (`n + 1` values).
pub fn uniform_band_edges(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    (0..=n)
        .map(|b| lo + (hi - lo) * b as f64 / n.max(1) as f64)
        .collect()
}

/// Splits the energy of `z` over joint-frequency bands (e.g. of a prediction error, for
/// "where is the error" plots).
///
/// # Errors
/// [`Error::InvalidParameter`] when `edges` has fewer than 2 values, is not strictly ascending,
/// or is not finite; [`Error::ShapeMismatch`] when `z.len() != batch·T·N·d`.
pub fn band_energy<T: Float>(
    basis: &JointBasis,
    z: &[T],
    batch: usize,
    channels: usize,
    edges: &[f64],
) -> Result<BandEnergy> {
    if edges.len() < 2
        || edges.iter().any(|e| !e.is_finite())
        || edges.windows(2).any(|w| w[0] >= w[1])
    {
        return Err(invalid(
            "edges",
            format!("{edges:?}"),
            "≥ 2 finite, strictly ascending values",
        ));
    }
    check_signal(basis, z, batch, channels, "band_energy")?;
    let e = mode_energy(basis, z, batch, channels);
    let total: f64 = z.iter().map(|&x| x.to_f64() * x.to_f64()).sum();
    let mut energy = vec![0.0; edges.len() - 1];
    let mut outside = 0.0;
    let last = edges.len() - 1;
    for (&mu, &ek) in basis.eigenvalues().iter().zip(&e) {
        if mu < edges[0] || mu > edges[last] {
            outside += ek;
        } else {
            let b = edges
                .partition_point(|&x| x <= mu)
                .saturating_sub(1)
                .min(last - 1);
            energy[b] += ek;
        }
    }
    let captured: f64 = e.iter().sum();
    Ok(BandEnergy {
        edges: edges.to_vec(),
        energy,
        outside,
        residual: (total - captured).max(0.0),
        total,
    })
}

/// The `K` an energy criterion suggests.
#[derive(Debug, Clone, PartialEq)]
pub struct KSuggestion {
    /// Smallest `K` whose leading modes capture at least the requested fraction.
    pub k: usize,
    /// Fraction of the energy those `K` modes capture.
    pub captured: f64,
    /// `cumulative[k]`: fraction captured by the first `k + 1` modes of the basis offered
    /// (the curve to plot).
    pub cumulative: Vec<f64>,
}

/// Relative tolerance under which two joint eigenvalues count as one (degenerate) eigenvalue.
const GAP_TOL: f64 = 1e-9;

/// Smallest `K` such that the `K` lowest joint modes capture at least `fraction` of the total
/// energy of a signal set: `Σ_{k<K} e_k ≥ fraction · Σ_b ‖z_b‖²`, with `e_k` from
/// [`mode_energy`], then moved to the end of its eigenspace so it never cuts through a
/// degenerate eigenvalue ([`cut_at_gap`](crate::cut_at_gap); relative tolerance 1e-9) — when
/// that eigenspace runs past the basis offered, `K` is cut down to the gap before it instead and
/// `captured` says what it keeps. The candidate `K` range is that of the basis offered (build it
/// with the largest `K` you would consider, up to `N·T`). A signal set with no energy suggests
/// `K = 0`.
///
/// # Errors
/// [`Error::InvalidParameter`] when `fraction ∉ (0, 1]`; [`Error::ShapeMismatch`];
/// [`Error::EnergyNotReached`] when even all modes of `basis` fall short.
pub fn suggest_k<T: Float>(
    basis: &JointBasis,
    signals: &[T],
    batch: usize,
    channels: usize,
    fraction: f64,
) -> Result<KSuggestion> {
    if !(fraction > 0.0 && fraction <= 1.0) {
        return Err(invalid("fraction", fraction, "a value in (0, 1]"));
    }
    check_signal(basis, signals, batch, channels, "suggest_k")?;
    let e = mode_energy(basis, signals, batch, channels);
    let total: f64 = signals.iter().map(|&x| x.to_f64() * x.to_f64()).sum();
    if total == 0.0 {
        return Ok(KSuggestion {
            k: 0,
            captured: 1.0,
            cumulative: vec![1.0; e.len()],
        });
    }
    let mut acc = 0.0;
    let cumulative: Vec<f64> = e
        .iter()
        .map(|&x| {
            acc += x;
            acc / total
        })
        .collect();
    // Rounding can leave a full basis a hair under 1: allow a relative 1e-12.
    let target = fraction * (1.0 - 1e-12);
    match cumulative.iter().position(|&c| c >= target) {
        Some(i) => {
            let mu = basis.eigenvalues();
            let complete = mu.len() == basis.n_frames() * basis.n_nodes();
            let up = (i + 1..=mu.len())
                .find(|&c| crate::cut_at_gap(mu, c, GAP_TOL, complete) == c && c > 0);
            let k = up.unwrap_or_else(|| crate::cut_at_gap(mu, i + 1, GAP_TOL, complete));
            Ok(KSuggestion {
                k,
                captured: if k == 0 { 0.0 } else { cumulative[k - 1] },
                cumulative,
            })
        }
        None => Err(Error::EnergyNotReached {
            fraction,
            captured: cumulative.last().copied().unwrap_or(0.0),
            k_max: basis.k(),
        }),
    }
}

fn check_signal<T>(
    basis: &JointBasis,
    z: &[T],
    batch: usize,
    channels: usize,
    op: &'static str,
) -> Result<()> {
    let expected = batch * basis.n_frames() * basis.n_nodes() * channels;
    if z.len() != expected {
        return Err(Error::ShapeMismatch {
            op,
            expected: format!(
                "{batch}×{}×{}×{channels} = {expected} values",
                basis.n_frames(),
                basis.n_nodes()
            ),
            got: format!("{} values", z.len()),
        });
    }
    Ok(())
}
