//! The truncated joint spatio-temporal (Kronecker) basis `B_K` (SPEC §4.2).

use std::any::Any;
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use faer::{Mat, MatRef};

use crate::eigen::EigenPairs;
use crate::error::{Error, Result, invalid};
use crate::float::Float;
use crate::graph::Graph;
use crate::laplacian::{Laplacian, LaplacianKind};
use crate::partial::PartialEigenConfig;

/// One joint mode `u_t,j ⊗ u_s,i`: `temporal` is `j`, `spatial` is `i`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModePair {
    /// Temporal frequency index `j` (column of `U_t`).
    pub temporal: usize,
    /// Spatial frequency index `i` (column of `U_s`).
    pub spatial: usize,
}

/// How the spatial eigenpairs are computed by [`JointBasis::from_laplacians`].
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum SpatialSolver {
    /// The `min(K, N)` smallest, densely ([`Laplacian::eigen_leading`]).
    Dense,
    /// The `min(K, N)` smallest, by [`Laplacian::partial_eigen`].
    Partial(PartialEigenConfig),
    /// Dense up to `N = 2048` nodes (or when `min(K, N)` is over a quarter of `N`), partial
    /// above.
    #[default]
    Auto,
}

/// Settings for building a basis from graphs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JointBasisConfig {
    /// Number of joint modes `K` kept.
    pub k: usize,
    /// Laplacian of both the spatial and the temporal graph (the paper: normalised).
    pub kind: LaplacianKind,
    /// Spatial eigensolver.
    pub solver: SpatialSolver,
}

impl JointBasisConfig {
    /// `K` modes, normalised Laplacians, automatic solver choice.
    pub fn new(k: usize) -> Self {
        Self {
            k,
            kind: LaplacianKind::Normalized,
            solver: SpatialSolver::Auto,
        }
    }
}

/// The leading columns of `U_t` and `U_s` in one precision.
#[derive(Debug, Clone)]
pub(crate) struct Factors<T> {
    /// `T × j_max`.
    pub(crate) u_t: Mat<T>,
    /// `N × i_max`.
    pub(crate) u_s: Mat<T>,
}

impl<T: Float> Factors<T> {
    fn cast(u_t: MatRef<'_, f64>, u_s: MatRef<'_, f64>) -> Self {
        Self {
            u_t: Mat::from_fn(u_t.nrows(), u_t.ncols(), |r, c| T::from_f64(u_t[(r, c)])),
            u_s: Mat::from_fn(u_s.nrows(), u_s.ncols(), |r, c| T::from_f64(u_s[(r, c)])),
        }
    }
}

/// The truncated joint basis `B_K = [u_t,j_k ⊗ u_s,i_k]_{k<K}` of the Cartesian product graph
/// `L = L_t ⊗ I_N + I_T ⊗ L_s`, never materialised.
///
/// Keeps the `K` pairs `(j, i)` with the smallest `μ = λ_t,j + λ_s,i`, in the order
/// `(μ, j, i)` ascending (so ties go to the lower temporal, then spatial, index). For a fixed
/// `j` the selected `i` form a prefix `0..m_j`, and `m_0 ≥ m_1 ≥ …` (a staircase), so the basis
/// needs only the leading `i_max = m_0` columns of `U_s` and `j_max` columns of `U_t`; it keeps
/// those in `f64` and `f32`, and nothing else of size `N` or `T`. Immutable and `Sync`: build it
/// once per graph and share it (e.g. in an `Arc`, see [`BasisCache`](crate::BasisCache)) across
/// a batch.
///
/// Signals are `z ∈ R^{T×N×d}` stored row-major, flat index `(t·N + n)·d + c`; coefficients are
/// `a ∈ R^{K×d}`, flat index `k·d + c`, in the selection order above. See the kernels
/// ([`project`](Self::project), [`reconstruct`](Self::reconstruct),
/// [`residual`](Self::residual), [`sge_forward`](Self::sge_forward),
/// [`sge_backward`](Self::sge_backward)).
#[derive(Debug, Clone)]
pub struct JointBasis {
    n_nodes: usize,
    n_frames: usize,
    pairs: Vec<ModePair>,
    mu: Vec<f64>,
    temporal_values: Vec<f64>,
    spatial_values: Vec<f64>,
    /// `m_j` for `j < j_max`.
    counts: Vec<usize>,
    /// `offset_j = Σ_{j' < j} m_j'`.
    offsets: Vec<usize>,
    /// Position `offset_j + i` in j-major order → selection index `k`.
    jmajor_to_k: Vec<usize>,
    f64s: Factors<f64>,
    f32s: Factors<f32>,
}

/// A heap entry: a joint mode `(μ, j, i)`, or a sentinel standing for modes that were not
/// supplied — `mu` is then a lower bound on their `μ` and `(j, i)` a lower bound on their
/// indices, so if a sentinel reaches the top before `K` modes are selected, the selection cannot
/// be decided from the supplied eigenpairs.
struct Candidate {
    mu: f64,
    j: usize,
    i: usize,
    missing: Option<&'static str>,
}
impl PartialEq for Candidate {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Candidate {}
impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> Ordering {
        self.mu
            .total_cmp(&other.mu)
            .then(self.j.cmp(&other.j))
            .then(self.i.cmp(&other.i))
    }
}

impl JointBasis {
    /// Selects the `K` smallest joint modes from spatial eigenpairs (`N`-dimensional, the
    /// smallest `k_s ≤ N` of them, ascending) and temporal eigenpairs (`T`-dimensional, `k_t ≤ T`).
    ///
    /// Partial eigenpairs are enough when they decide the selection; `min(K, N)` spatial and
    /// `min(K, T)` temporal pairs always are. Selection is a `K`-step merge of the `k_t` sorted
    /// rows `μ_j,· = λ_t,j + λ_s,·` (`O(K log T)`).
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for `K > N·T`; [`Error::InsufficientModes`] when the
    /// selection would need a mode beyond those supplied.
    pub fn new(spatial: &EigenPairs, temporal: &EigenPairs, k: usize) -> Result<Self> {
        let (n, t) = (spatial.dim(), temporal.dim());
        if k > n * t {
            return Err(invalid("K", k, format!("≤ N·T = {n}·{t} = {}", n * t)));
        }
        let (ls, lt) = (spatial.values(), temporal.values());
        let (ks, kt) = (ls.len(), lt.len());
        let mut heap = BinaryHeap::new();
        let push_row_start = |heap: &mut BinaryHeap<Reverse<Candidate>>, j: usize| {
            if ks > 0 {
                heap.push(Reverse(Candidate {
                    mu: lt[j] + ls[0],
                    j,
                    i: 0,
                    missing: None,
                }));
            } else if n > 0 {
                heap.push(Reverse(Candidate {
                    mu: f64::NEG_INFINITY,
                    j,
                    i: 0,
                    missing: Some("spatial"),
                }));
            }
        };
        for j in 0..kt {
            push_row_start(&mut heap, j);
        }
        if kt < t {
            // Rows j ≥ k_t: μ ≥ λ_t,k_t−1 + λ_s,0, indices ≥ (k_t, 0).
            heap.push(Reverse(Candidate {
                mu: match (kt, ks) {
                    (0, _) | (_, 0) => f64::NEG_INFINITY,
                    _ => lt[kt - 1] + ls[0],
                },
                j: kt,
                i: 0,
                missing: Some("temporal"),
            }));
        }
        let mut pairs = Vec::with_capacity(k);
        let mut mu = Vec::with_capacity(k);
        while pairs.len() < k {
            let c = match heap.pop() {
                Some(Reverse(c)) => c,
                None => break,
            };
            if let Some(axis) = c.missing {
                let (available, total) = if axis == "spatial" { (ks, n) } else { (kt, t) };
                return Err(Error::InsufficientModes {
                    axis,
                    k,
                    available,
                    total,
                });
            }
            if c.i + 1 < ks {
                heap.push(Reverse(Candidate {
                    mu: lt[c.j] + ls[c.i + 1],
                    j: c.j,
                    i: c.i + 1,
                    missing: None,
                }));
            } else if ks < n {
                // Row j continues with unsupplied modes: μ ≥ this one's, indices (j, k_s).
                heap.push(Reverse(Candidate {
                    mu: c.mu,
                    j: c.j,
                    i: ks,
                    missing: Some("spatial"),
                }));
            }
            pairs.push(ModePair {
                temporal: c.j,
                spatial: c.i,
            });
            mu.push(c.mu);
        }
        // K ≤ N·T and every unsupplied mode has a sentinel, so the heap cannot run dry early.
        debug_assert_eq!(pairs.len(), k);
        Ok(Self::from_selection(spatial, temporal, pairs, mu))
    }

    fn from_selection(
        spatial: &EigenPairs,
        temporal: &EigenPairs,
        pairs: Vec<ModePair>,
        mu: Vec<f64>,
    ) -> Self {
        let j_max = pairs.iter().map(|p| p.temporal + 1).max().unwrap_or(0);
        let mut counts = vec![0usize; j_max];
        for p in &pairs {
            counts[p.temporal] += 1;
        }
        let i_max = counts.first().copied().unwrap_or(0);
        let mut offsets = vec![0usize; j_max];
        for j in 1..j_max {
            offsets[j] = offsets[j - 1] + counts[j - 1];
        }
        let mut jmajor_to_k = vec![0usize; pairs.len()];
        for (k, p) in pairs.iter().enumerate() {
            // The staircase property: for fixed j the selected i are 0..m_j.
            debug_assert!(p.spatial < counts[p.temporal]);
            jmajor_to_k[offsets[p.temporal] + p.spatial] = k;
        }
        let u_t = temporal.vectors().subcols(0, j_max);
        let u_s = spatial.vectors().subcols(0, i_max);
        Self {
            n_nodes: spatial.dim(),
            n_frames: temporal.dim(),
            temporal_values: temporal.values()[..j_max].to_vec(),
            spatial_values: spatial.values()[..i_max].to_vec(),
            pairs,
            mu,
            counts,
            offsets,
            jmajor_to_k,
            f64s: Factors::cast(u_t, u_s),
            f32s: Factors::cast(u_t, u_s),
        }
    }

    /// Eigen-decomposes `L_s` (its `min(K, N)` smallest pairs, per `solver`) and `L_t` (densely:
    /// `T` is small) and selects `K`.
    ///
    /// # Errors
    /// Those of the eigensolvers and of [`new`](Self::new).
    pub fn from_laplacians(
        spatial: &Laplacian,
        temporal: &Laplacian,
        k: usize,
        solver: SpatialSolver,
    ) -> Result<Self> {
        let n = spatial.dim();
        let need = k.min(n);
        let use_dense = match solver {
            SpatialSolver::Dense => true,
            SpatialSolver::Partial(_) => false,
            SpatialSolver::Auto => n <= 2048 || 4 * need > n,
        };
        let spatial_pairs = if use_dense {
            spatial.eigen_leading(need)?
        } else {
            let cfg = match solver {
                SpatialSolver::Partial(cfg) => cfg,
                _ => PartialEigenConfig::default(),
            };
            spatial.partial_eigen(need, &cfg)?.pairs
        };
        let temporal_pairs = temporal.eigen()?;
        Self::new(&spatial_pairs, &temporal_pairs, k)
    }

    /// From a spatial graph and a number of frames (temporal path graph), with `config`.
    ///
    /// # Errors
    /// As [`from_laplacians`](Self::from_laplacians).
    pub fn from_graph(spatial: &Graph, n_frames: usize, config: &JointBasisConfig) -> Result<Self> {
        Self::from_laplacians(
            &Laplacian::new(spatial, config.kind),
            &Laplacian::temporal_path(n_frames, config.kind),
            config.k,
            config.solver,
        )
    }

    /// `N`.
    pub fn n_nodes(&self) -> usize {
        self.n_nodes
    }

    /// `T`.
    pub fn n_frames(&self) -> usize {
        self.n_frames
    }

    /// `K`.
    pub fn k(&self) -> usize {
        self.pairs.len()
    }

    /// The selected `(j, i)` in selection order: coefficient `k` belongs to `pairs()[k]`.
    pub fn pairs(&self) -> &[ModePair] {
        &self.pairs
    }

    /// `(j_k)_k` and `(i_k)_k` as two index vectors (e.g. for an index-select in tch).
    pub fn pair_indices(&self) -> (Vec<usize>, Vec<usize>) {
        self.pairs.iter().map(|p| (p.temporal, p.spatial)).unzip()
    }

    /// Joint eigenvalues `μ_k = λ_t,j_k + λ_s,i_k`, ascending.
    pub fn eigenvalues(&self) -> &[f64] {
        &self.mu
    }

    /// The largest `K' ≤ k` that does not cut through a degenerate eigenspace of this basis's
    /// spectrum: `μ_{K'−1} < μ_{K'}` up to `rel_tol · max(1, |μ|)` (see [`cut_at_gap`]). Build
    /// the basis with at least `k + 1` modes so the eigenvalue after the cut is known (with
    /// exactly `k` modes, `k` itself is taken as a gap when `k = N·T`).
    pub fn k_at_gap(&self, k: usize, rel_tol: f64) -> usize {
        let full = self.n_frames * self.n_nodes;
        cut_at_gap(
            &self.mu,
            k.min(self.mu.len()),
            rel_tol,
            self.mu.len() == full,
        )
    }

    /// `j_max`: number of leading temporal modes the selection touches.
    pub fn n_temporal_modes(&self) -> usize {
        self.counts.len()
    }

    /// `i_max`: number of leading spatial modes the selection touches.
    pub fn n_spatial_modes(&self) -> usize {
        self.counts.first().copied().unwrap_or(0)
    }

    /// `m_j` for `j < j_max`: how many spatial modes are selected with temporal mode `j`.
    pub fn spatial_modes_per_temporal(&self) -> &[usize] {
        &self.counts
    }

    /// `λ_t,j` for `j < j_max`.
    pub fn temporal_eigenvalues(&self) -> &[f64] {
        &self.temporal_values
    }

    /// `λ_s,i` for `i < i_max`.
    pub fn spatial_eigenvalues(&self) -> &[f64] {
        &self.spatial_values
    }

    /// Leading temporal eigenvectors `U_t[:, :j_max]` (`T × j_max`).
    pub fn temporal_modes(&self) -> MatRef<'_, f64> {
        self.f64s.u_t.as_ref()
    }

    /// Leading spatial eigenvectors `U_s[:, :i_max]` (`N × i_max`).
    pub fn spatial_modes(&self) -> MatRef<'_, f64> {
        self.f64s.u_s.as_ref()
    }

    /// `U_t[:, :j_max]` as a row-major `T × j_max` buffer in `T` (ready for a tensor).
    pub fn temporal_modes_row_major<T: Float>(&self) -> Vec<T> {
        row_major(self.f64s.u_t.as_ref())
    }

    /// `U_s[:, :i_max]` as a row-major `N × i_max` buffer in `T` (ready for a tensor).
    pub fn spatial_modes_row_major<T: Float>(&self) -> Vec<T> {
        row_major(self.f64s.u_s.as_ref())
    }

    /// Bytes of the factors the kernels use in precision `T`: `(N·i_max + T·j_max)·size_of::<T>()`.
    pub fn factored_bytes<T: Float>(&self) -> usize {
        (self.n_nodes * self.n_spatial_modes() + self.n_frames * self.n_temporal_modes())
            * std::mem::size_of::<T>()
    }

    /// Bytes a materialised `B_K ∈ R^{NT×K}` takes in precision `T`.
    pub fn materialised_bytes<T: Float>(&self) -> usize {
        self.n_nodes * self.n_frames * self.k() * std::mem::size_of::<T>()
    }

    pub(crate) fn factors<T: Float>(&self) -> &Factors<T> {
        let any: &dyn Any = if std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>() {
            &self.f32s
        } else {
            &self.f64s
        };
        any.downcast_ref::<Factors<T>>()
            .expect("Float is sealed to f32 and f64")
    }

    pub(crate) fn counts(&self) -> &[usize] {
        &self.counts
    }

    pub(crate) fn offsets(&self) -> &[usize] {
        &self.offsets
    }

    pub(crate) fn jmajor_to_k(&self) -> &[usize] {
        &self.jmajor_to_k
    }
}

fn row_major<T: Float>(m: MatRef<'_, f64>) -> Vec<T> {
    let mut out = Vec::with_capacity(m.nrows() * m.ncols());
    for r in 0..m.nrows() {
        for c in 0..m.ncols() {
            out.push(T::from_f64(m[(r, c)]));
        }
    }
    out
}

/// The largest `K' ≤ k` such that the ascending eigenvalues `mu` have a gap after the first
/// `K'`: `mu[K'] − mu[K'−1] > rel_tol · max(1, |mu[K']|)`. A truncated basis that keeps part of
/// a degenerate eigenspace depends on an arbitrary choice of vectors inside it (on a complete
/// graph, one eigenvalue has multiplicity `N − 1`: keeping some of its vectors breaks the
/// symmetry between particles once they are weighted differently). When `k` is the whole
/// spectrum (`complete`, `k = mu.len()`), `k` is returned; `K' = 0` only when the first
/// eigenspace itself extends past `k`.
pub fn cut_at_gap(mu: &[f64], k: usize, rel_tol: f64, complete: bool) -> usize {
    let k = k.min(mu.len());
    if k == mu.len() && complete {
        return k;
    }
    (1..=k)
        .rev()
        .find(|&c| match mu.get(c) {
            Some(&next) => next - mu[c - 1] > rel_tol * next.abs().max(1.0),
            None => false,
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod gap_tests {
    use super::*;

    #[test]
    fn cuts_fall_between_eigenspaces() {
        let mu = [0.0, 1.0, 1.0, 1.0, 2.0, 2.5];
        assert_eq!(cut_at_gap(&mu, 3, 1e-9, false), 1);
        assert_eq!(cut_at_gap(&mu, 4, 1e-9, false), 4);
        assert_eq!(cut_at_gap(&mu, 5, 1e-9, false), 5);
        assert_eq!(
            cut_at_gap(&mu, 6, 1e-9, false),
            5,
            "the 6th is last: unknown next"
        );
        assert_eq!(cut_at_gap(&mu, 6, 1e-9, true), 6);
        assert_eq!(cut_at_gap(&[1.0, 1.0, 1.0], 2, 1e-9, false), 0);
        // nearly equal within the tolerance counts as degenerate
        assert_eq!(cut_at_gap(&[0.0, 1.0, 1.0 + 1e-12, 3.0], 2, 1e-9, false), 1);
    }

    /// A complete graph on 5 nodes has spatial eigenvalues 0 and 1.25 (×4) for the normalised
    /// Laplacian; with T = 1 the joint spectrum is the spatial one: K = 3 falls back to 1.
    #[test]
    fn a_complete_graph_keeps_whole_eigenspaces() {
        let edges: Vec<(usize, usize)> = (0..5)
            .flat_map(|i| (i + 1..5).map(move |j| (i, j)))
            .collect();
        let g = Graph::from_edges(5, &edges).unwrap();
        let b = JointBasis::from_graph(&g, 1, &JointBasisConfig::new(5)).unwrap();
        assert_eq!(b.k_at_gap(3, 1e-9), 1);
        assert_eq!(b.k_at_gap(5, 1e-9), 5);
        // a zero-mean signal lives in the degenerate eigenspace: suggest_k keeps all of it
        let signal = [1.0f64, -2.0, 0.5, 0.25, 0.25];
        let s = crate::suggest_k(&b, &signal, 1, 1, 0.3).unwrap();
        assert_eq!(s.k, 5);
        assert!((s.captured - 1.0).abs() < 1e-12);
    }
}
