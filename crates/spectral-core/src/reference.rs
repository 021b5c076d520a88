//! Materialised references, for tests and benchmarks only: the explicit `B_K ∈ R^{NT×K}` and
//! the dense joint Laplacian `L_t ⊗ I_N + I_T ⊗ L_s`. The hot path never uses these
//! (SPEC §4.2); they are what the factored kernels are checked and timed against.

use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, MatMut, MatRef, Par};
use rayon::prelude::*;

use crate::float::Float;
use crate::joint::JointBasis;
use crate::laplacian::Laplacian;

/// `B_K` as an explicit `NT×K` matrix (column `k` is `u_t,j_k ⊗ u_s,i_k`, row `t·N + n`).
#[derive(Debug, Clone)]
pub struct MaterialisedBasis<T> {
    b: Mat<T>,
}

impl JointBasis {
    /// Forms `B_K` explicitly (`N·T·K` numbers) — the reference the factored kernels are
    /// compared with. Not for the hot path.
    pub fn materialise<T: Float>(&self) -> MaterialisedBasis<T> {
        let (n, t) = (self.n_nodes(), self.n_frames());
        let (ut, us) = (self.temporal_modes(), self.spatial_modes());
        let pairs = self.pairs();
        let b = Mat::from_fn(n * t, pairs.len(), |row, k| {
            let p = pairs[k];
            T::from_f64(ut[(row / n, p.temporal)] * us[(row % n, p.spatial)])
        });
        MaterialisedBasis { b }
    }
}

impl<T: Float> MaterialisedBasis<T> {
    /// The matrix `B_K` (`NT×K`).
    pub fn matrix(&self) -> MatRef<'_, T> {
        self.b.as_ref()
    }

    /// `a = B_Kᵀ z` by one GEMM per sample (`batch×T×N×d` → `batch×K×d`), samples in parallel.
    ///
    /// # Panics
    /// When `z.len() != batch·N·T·d`.
    #[track_caller]
    pub fn project(&self, z: &[T], batch: usize, channels: usize) -> Vec<T> {
        let (nt, k, d) = (self.b.nrows(), self.b.ncols(), channels);
        assert_eq!(
            z.len(),
            batch * nt * d,
            "MaterialisedBasis::project: z has the wrong length"
        );
        let mut a = vec![T::zero(); batch * k * d];
        if k * d == 0 {
            return a;
        }
        self.per_sample(&mut a, k * d, |b, out, par| {
            matmul(
                MatMut::from_row_major_slice_mut(out, k, d),
                Accum::Replace,
                self.b.as_ref().transpose(),
                MatRef::from_row_major_slice(&z[b * nt * d..(b + 1) * nt * d], nt, d),
                T::one(),
                par,
            )
        });
        a
    }

    /// `z = B_K a` (`batch×K×d` → `batch×T×N×d`).
    ///
    /// # Panics
    /// When `a.len() != batch·K·d`.
    #[track_caller]
    pub fn reconstruct(&self, a: &[T], batch: usize, channels: usize) -> Vec<T> {
        let (nt, k, d) = (self.b.nrows(), self.b.ncols(), channels);
        assert_eq!(
            a.len(),
            batch * k * d,
            "MaterialisedBasis::reconstruct: a has the wrong length"
        );
        let mut z = vec![T::zero(); batch * nt * d];
        if nt * d == 0 {
            return z;
        }
        self.per_sample(&mut z, nt * d, |b, out, par| {
            matmul(
                MatMut::from_row_major_slice_mut(out, nt, d),
                Accum::Replace,
                self.b.as_ref(),
                MatRef::from_row_major_slice(&a[b * k * d..(b + 1) * k * d], k, d),
                T::one(),
                par,
            )
        });
        z
    }

    /// `(I − B_K B_Kᵀ) z`.
    ///
    /// # Panics
    /// When `z.len() != batch·N·T·d`.
    #[track_caller]
    pub fn residual(&self, z: &[T], batch: usize, channels: usize) -> Vec<T> {
        let p = self.reconstruct(&self.project(z, batch, channels), batch, channels);
        z.iter().zip(p).map(|(&x, y)| x - y).collect()
    }

    fn per_sample(&self, out: &mut [T], chunk: usize, f: impl Fn(usize, &mut [T], Par) + Sync) {
        let batch = out.len() / chunk;
        if batch > 1 {
            out.par_chunks_mut(chunk)
                .enumerate()
                .for_each(|(b, o)| f(b, o, Par::Seq));
        } else {
            for (b, o) in out.chunks_mut(chunk).enumerate() {
                f(b, o, Par::rayon(0));
            }
        }
    }
}

/// The dense joint Laplacian `L_t ⊗ I_N + I_T ⊗ L_s` (`NT×NT`, row `t·N + n`): the naive route
/// whose eigen-decomposition costs `O((NT)³)`.
pub fn joint_laplacian_dense(temporal: &Laplacian, spatial: &Laplacian) -> Mat<f64> {
    let (t, n) = (temporal.dim(), spatial.dim());
    let (lt, ls) = (temporal.to_dense(), spatial.to_dense());
    Mat::from_fn(n * t, n * t, |r, c| {
        let (tr, nr, tc, nc) = (r / n, r % n, c / n, c % n);
        let mut v = 0.0;
        if nr == nc {
            v += lt[(tr, tc)];
        }
        if tr == tc {
            v += ls[(nr, nc)];
        }
        v
    })
}
