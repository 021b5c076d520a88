//! The `k` smallest eigenpairs of a symmetric tridiagonal matrix: the `k` smallest eigenvalues
//! of each unreduced block by bisection on Sturm counts (LAPACK's `dstebz`), their eigenvectors
//! by inverse iteration (`dstein`) — so that a dense solve for a few leading eigenvectors does
//! not pay for all `n` (see [`self_adjoint_eigen_leading`](crate::self_adjoint_eigen_leading)).
//!
//! The Sturm recurrence is a chain of dependent divisions, so the bisections of all wanted
//! eigenvalues of a block run in lockstep: one pass over the block updates every sequence, and
//! the independent divisions pipeline (and vectorise) instead of waiting on each other.

/// Relative gap under which inverse-iteration vectors of one block are reorthogonalised against
/// each other (LAPACK `dstein`'s `ORTOL`).
const CLUSTER_GAP: f64 = 1e-3;
const MAX_ITERS: usize = 6;

/// Tridiagonal `T` with diagonal `d` (`n`) and off-diagonal `e` (`n − 1`).
pub(crate) struct Tridiagonal<'a> {
    pub(crate) d: &'a [f64],
    pub(crate) e: &'a [f64],
}

/// Eigenvalues (ascending) and eigenvectors (`vectors[c]` has length `n`) of the `k` smallest,
/// or `None` when inverse iteration failed to converge for some vector (the caller falls back
/// to a full decomposition).
pub(crate) struct Leading {
    pub(crate) values: Vec<f64>,
    pub(crate) vectors: Vec<Vec<f64>>,
}

impl Tridiagonal<'_> {
    fn norm(&self) -> f64 {
        let n = self.d.len();
        (0..n)
            .map(|i| {
                self.d[i].abs()
                    + if i > 0 { self.e[i - 1].abs() } else { 0.0 }
                    + if i + 1 < n { self.e[i].abs() } else { 0.0 }
            })
            .fold(0.0, f64::max)
    }

    /// The `k` smallest eigenpairs, or `None` if inverse iteration did not converge.
    pub(crate) fn leading(&self, k: usize) -> Option<Leading> {
        let n = self.d.len();
        let k = k.min(n);
        let tnorm = self.norm().max(f64::MIN_POSITIVE);
        let eps = f64::EPSILON;
        // Split where an off-diagonal is negligible (perturbs eigenvalues by ≤ ε‖T‖).
        let mut blocks = Vec::new();
        let mut start = 0;
        for i in 0..n {
            if i + 1 == n || self.e[i].abs() <= eps * tnorm {
                blocks.push(start..i + 1);
                start = i + 1;
            }
        }
        // The k smallest of each block, merged.
        let pivmin = f64::MIN_POSITIVE * self.e.iter().fold(1.0f64, |m, x| m.max(x * x));
        let mut cands: Vec<(f64, usize, usize)> = Vec::new();
        for (b, r) in blocks.iter().enumerate() {
            let values = self.bisect_smallest(r.clone(), k.min(r.len()), tnorm, pivmin);
            cands.extend(values.into_iter().enumerate().map(|(j, v)| (v, b, j)));
        }
        cands.sort_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)).then(x.2.cmp(&y.2)));
        cands.truncate(k);
        // Vectors per block, in ascending order inside the block (clusters are consecutive).
        let mut vectors = vec![Vec::new(); cands.len()];
        for (b, r) in blocks.iter().enumerate() {
            let mut mine: Vec<(usize, f64)> = cands
                .iter()
                .enumerate()
                .filter(|(_, c)| c.1 == b)
                .map(|(pos, c)| (pos, c.0))
                .collect();
            mine.sort_by(|x, y| x.1.total_cmp(&y.1).then(x.0.cmp(&y.0)));
            let mut cluster: Vec<Vec<f64>> = Vec::new();
            let mut prev: Option<f64> = None;
            for (pos, lambda) in mine {
                if prev.is_none_or(|p| lambda - p > CLUSTER_GAP * tnorm) {
                    cluster.clear();
                }
                let local = self.inverse_iteration(r.clone(), lambda, tnorm, pos, &cluster)?;
                let mut full = vec![0.0; n];
                full[r.clone()].copy_from_slice(&local);
                vectors[pos] = full;
                cluster.push(local);
                prev = Some(lambda);
            }
        }
        Some(Leading {
            values: cands.iter().map(|c| c.0).collect(),
            vectors,
        })
    }

    /// The `count` smallest eigenvalues of block `r`, ascending, by simultaneous bisection from
    /// the block's Gershgorin interval to an absolute accuracy of about `ε‖T‖`.
    fn bisect_smallest(
        &self,
        r: std::ops::Range<usize>,
        count: usize,
        tnorm: f64,
        pivmin: f64,
    ) -> Vec<f64> {
        let (mut glo, mut ghi) = (f64::INFINITY, f64::NEG_INFINITY);
        for i in r.clone() {
            let rad = if i > r.start {
                self.e[i - 1].abs()
            } else {
                0.0
            } + if i + 1 < r.end { self.e[i].abs() } else { 0.0 };
            glo = glo.min(self.d[i] - rad);
            ghi = ghi.max(self.d[i] + rad);
        }
        let pad = 2.0 * f64::EPSILON * tnorm + 2.0 * pivmin;
        let mut lo = vec![glo - pad; count];
        let mut hi = vec![ghi + pad; count];
        let mut mid = vec![0.0; count];
        let mut q = vec![0.0; count];
        let mut below = vec![0usize; count];
        let abstol = f64::EPSILON * tnorm;
        let done =
            |lo: f64, hi: f64| hi - lo <= abstol.max(4.0 * f64::EPSILON * lo.abs().max(hi.abs()));
        for _ in 0..200 {
            if (0..count).all(|j| done(lo[j], hi[j])) {
                break;
            }
            for j in 0..count {
                mid[j] = 0.5 * (lo[j] + hi[j]);
                below[j] = 0;
            }
            // Sturm counts at every midpoint in one pass over the block.
            for i in r.clone() {
                let (di, e2) = (
                    self.d[i],
                    if i > r.start {
                        self.e[i - 1] * self.e[i - 1]
                    } else {
                        0.0
                    },
                );
                let first = i == r.start;
                for j in 0..count {
                    let mut v = if first {
                        di - mid[j]
                    } else {
                        di - mid[j] - e2 / q[j]
                    };
                    if v.abs() < pivmin {
                        v = -pivmin;
                    }
                    q[j] = v;
                    below[j] += usize::from(v < 0.0);
                }
            }
            for j in 0..count {
                if below[j] > j {
                    hi[j] = mid[j];
                } else {
                    lo[j] = mid[j];
                }
            }
        }
        (0..count).map(|j| 0.5 * (lo[j] + hi[j])).collect()
    }

    /// An eigenvector of block `r` for the (accurate) eigenvalue `lambda` by inverse iteration,
    /// orthogonalised against `cluster` (vectors of nearby eigenvalues of the same block).
    fn inverse_iteration(
        &self,
        r: std::ops::Range<usize>,
        lambda: f64,
        tnorm: f64,
        seed: usize,
        cluster: &[Vec<f64>],
    ) -> Option<Vec<f64>> {
        let m = r.len();
        if m == 1 {
            return Some(vec![1.0]);
        }
        let lu = TriLu::new(
            &self.d[r.clone()],
            &self.e[r.start..r.end - 1],
            lambda,
            tnorm,
        );
        // Deterministic start: a fixed pseudo-random vector per eigenvalue position.
        let mut state =
            0x9E37_79B9_7F4A_7C15u64 ^ (seed as u64).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        let mut b: Vec<f64> = (0..m)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5
            })
            .collect();
        orthogonalise(&mut b, cluster);
        normalise(&mut b)?;
        let target = 10.0 * (m as f64).sqrt() * f64::EPSILON * tnorm;
        let mut converged_at = None;
        for it in 0..MAX_ITERS {
            let mut x = lu.solve(&b);
            orthogonalise(&mut x, cluster);
            let growth = normalise(&mut x)?;
            b = x;
            if converged_at.is_none() && 1.0 / growth <= target {
                converged_at = Some(it);
            }
            // One more iteration after convergence, like LAPACK's dstein.
            if converged_at.is_some_and(|c| it > c) {
                return Some(b);
            }
        }
        converged_at.map(|_| b)
    }
}

fn orthogonalise(x: &mut [f64], against: &[Vec<f64>]) {
    for _ in 0..2 {
        for v in against {
            let dot: f64 = x.iter().zip(v).map(|(a, b)| a * b).sum();
            for (xi, vi) in x.iter_mut().zip(v) {
                *xi -= dot * vi;
            }
        }
    }
}

/// Normalises `x` in place and returns its former norm, or `None` for a zero or non-finite one.
fn normalise(x: &mut [f64]) -> Option<f64> {
    let norm = x.iter().map(|v| v * v).sum::<f64>().sqrt();
    if !(norm.is_finite() && norm > 0.0) {
        return None;
    }
    x.iter_mut().for_each(|v| *v /= norm);
    Some(norm)
}

/// `T − λI = P L U` for a tridiagonal `T` by Gaussian elimination with partial pivoting (`U` has
/// two super-diagonals); zero pivots are replaced by `ε‖T‖` (the matrix is singular to working
/// precision by construction, which is what inverse iteration wants).
struct TriLu {
    diag: Vec<f64>,
    sup: Vec<f64>,
    sup2: Vec<f64>,
    mult: Vec<f64>,
    swapped: Vec<bool>,
}

impl TriLu {
    fn new(d: &[f64], e: &[f64], lambda: f64, tnorm: f64) -> Self {
        let m = d.len();
        let mut diag: Vec<f64> = d.iter().map(|x| x - lambda).collect();
        let mut sup = e.to_vec();
        let mut sub = e.to_vec();
        let mut sup2 = vec![0.0; m.saturating_sub(2)];
        let mut mult = vec![0.0; m - 1];
        let mut swapped = vec![false; m - 1];
        let tiny = f64::EPSILON * tnorm;
        for k in 0..m - 1 {
            if sub[k].abs() > diag[k].abs() {
                swapped[k] = true;
                // Rows k and k+1 trade places.
                std::mem::swap(&mut diag[k], &mut sub[k]);
                let (a, b) = (sup[k], diag[k + 1]);
                sup[k] = b;
                diag[k + 1] = a;
                if k + 1 < m - 1 {
                    sup2[k] = sup[k + 1];
                    sup[k + 1] = 0.0;
                }
            }
            if diag[k] == 0.0 {
                diag[k] = tiny;
            }
            let t = sub[k] / diag[k];
            mult[k] = t;
            diag[k + 1] -= t * sup[k];
            if k + 1 < m - 1 {
                sup[k + 1] -= t * sup2[k];
            }
        }
        if diag[m - 1] == 0.0 {
            diag[m - 1] = tiny;
        }
        Self {
            diag,
            sup,
            sup2,
            mult,
            swapped,
        }
    }

    fn solve(&self, rhs: &[f64]) -> Vec<f64> {
        let m = self.diag.len();
        let mut b = rhs.to_vec();
        for k in 0..m - 1 {
            if self.swapped[k] {
                b.swap(k, k + 1);
            }
            b[k + 1] -= self.mult[k] * b[k];
        }
        let mut x = vec![0.0; m];
        for k in (0..m).rev() {
            let mut v = b[k];
            if k + 1 < m {
                v -= self.sup[k] * x[k + 1];
            }
            if k + 2 < m {
                v -= self.sup2[k] * x[k + 2];
            }
            x[k] = v / self.diag[k];
        }
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lu_solves_tridiagonal_systems_with_pivoting() {
        // Small diagonal forces row swaps.
        let d = [1e-3, 2.0, -1.0, 0.5, 3.0];
        let e = [4.0, 1.0, -2.0, 0.7];
        let lu = TriLu::new(&d, &e, 0.0, 10.0);
        let b = [1.0, -2.0, 0.5, 3.0, -1.0];
        let x = lu.solve(&b);
        for i in 0..5 {
            let mut ax = d[i] * x[i];
            if i > 0 {
                ax += e[i - 1] * x[i - 1];
            }
            if i + 1 < 5 {
                ax += e[i] * x[i + 1];
            }
            assert!((ax - b[i]).abs() < 1e-12, "row {i}: {ax} vs {}", b[i]);
        }
    }

    #[test]
    fn bisection_and_inverse_iteration_on_a_split_matrix() {
        // Path-graph block (eigenvalues 2 − 2cos(πj/4)) ⊕ a 1×1 block ⊕ an identical path block:
        // a degenerate spectrum across blocks.
        let d = [1.0, 2.0, 2.0, 1.0, 0.5, 1.0, 2.0, 2.0, 1.0];
        let e = [-1.0, -1.0, -1.0, 0.0, 0.0, -1.0, -1.0, -1.0];
        let t = Tridiagonal { d: &d, e: &e };
        let l = t.leading(5).unwrap();
        let expect = [
            0.0,
            0.0,
            0.5,
            2.0 - 2.0 * (std::f64::consts::PI / 4.0).cos(),
        ];
        assert!((l.values[0] - expect[0]).abs() < 1e-14);
        assert!((l.values[1] - expect[1]).abs() < 1e-14);
        assert!((l.values[2] - expect[2]).abs() < 1e-14);
        assert!((l.values[3] - expect[3]).abs() < 1e-14);
        assert!((l.values[4] - expect[3]).abs() < 1e-14);
        for (c, v) in l.vectors.iter().enumerate() {
            for i in 0..9 {
                let mut tv = d[i] * v[i];
                if i > 0 {
                    tv += e[i - 1] * v[i - 1];
                }
                if i + 1 < 9 {
                    tv += e[i] * v[i + 1];
                }
                assert!((tv - l.values[c] * v[i]).abs() < 1e-13);
            }
            for (c2, w) in l.vectors.iter().enumerate() {
                let dot: f64 = v.iter().zip(w).map(|(a, b)| a * b).sum();
                assert!((dot - if c == c2 { 1.0 } else { 0.0 }).abs() < 1e-13);
            }
        }
    }
}
