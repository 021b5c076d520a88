//! Factored projection kernels: `B_Kᵀ z`, `B_K a`, `(I − B_K B_Kᵀ) z` and SGE, without ever
//! forming `B_K` (SPEC §4.2–§4.3). The factorisation is documented on [`JointBasis::project`].

use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use rayon::prelude::*;

use crate::float::Float;
use crate::joint::JointBasis;

/// What [`JointBasis::sge_forward`] returns.
///
/// # Shapes
/// `z_sg`: `B×T×N×d`; `a_tilde` and `a`: `B×K×d` (row-major).
#[derive(Debug, Clone, PartialEq)]
pub struct SgeOutput<T> {
    /// `z^sg = z + B_K((w − 1) ⊙ a)`.
    pub z_sg: Vec<T>,
    /// `ã = w ⊙ a`.
    pub a_tilde: Vec<T>,
    /// `a = B_Kᵀ z`, kept for [`JointBasis::sge_backward`].
    pub a: Vec<T>,
}

/// Gradients from [`JointBasis::sge_backward`].
///
/// # Shapes
/// `z`: `B×T×N×d`; `w`: `K` (summed over the batch).
#[derive(Debug, Clone, PartialEq)]
pub struct SgeGrad<T> {
    /// `∂L/∂z`.
    pub z: Vec<T>,
    /// `∂L/∂w`.
    pub w: Vec<T>,
}

/// Lengths of one sample in signal and coefficient space.
#[derive(Clone, Copy)]
struct Dims {
    t: usize,
    n: usize,
    d: usize,
    k: usize,
    j_max: usize,
}

impl Dims {
    fn signal(&self) -> usize {
        self.t * self.n * self.d
    }
    fn coeffs(&self) -> usize {
        self.k * self.d
    }
    fn work(&self) -> usize {
        self.j_max * self.n * self.d + self.k * self.d
    }
}

impl JointBasis {
    fn dims(&self, channels: usize) -> Dims {
        Dims {
            t: self.n_frames(),
            n: self.n_nodes(),
            d: channels,
            k: self.k(),
            j_max: self.n_temporal_modes(),
        }
    }

    /// Spectral coefficients `a = B_Kᵀ z` (paper: `a := B_Kᵀ z`), factored.
    ///
    /// # The factorisation
    ///
    /// For one sample and channel, with `Z_c ∈ R^{T×N}` (`Z_c[t, n] = z[(t·N + n)·d + c]`),
    /// `a_k = (u_t,j ⊗ u_s,i)ᵀ vec(Z_c) = u_t,jᵀ Z_c u_s,i`. All channels at once, temporal axis
    /// first:
    ///
    /// 1. `W = U_t[:, :j_max]ᵀ Z` — one GEMM, `Z` viewed as the row-major `T × (N·d)` matrix
    ///    (`W` is `j_max × (N·d)`, i.e. `j_max` blocks `W_j ∈ R^{N×d}`);
    /// 2. for each `j < j_max`: `A_j = U_s[:, :m_j]ᵀ W_j ∈ R^{m_j × d}` — exactly the selected
    ///    `(j, i)`, because for a fixed `j` the selection is the prefix `i < m_j`; the `j` are
    ///    independent and run in parallel;
    /// 3. scatter the rows of `A_j` to their positions `k` in the selection order.
    ///
    /// Cost `2·N·d·(T·j_max + K)` flops against `2·N·T·K·d` for `B_Kᵀ z`: up to
    /// `T·K/(T·j_max + K)` times fewer (≈ 3.5× for `T = 4`, growing with `T`).
    /// [`reconstruct`](Self::reconstruct) is the transpose, in reverse order. Memory held: the
    /// factors, `O(N·i_max + T·j_max)`; per call a `j_max·N·d + K·d` work buffer per sample in
    /// flight.
    ///
    /// # Parallelism
    ///
    /// With several samples, samples run in parallel on rayon; a single sample parallelises over
    /// temporal modes and inside large GEMMs. The `*_into` variants take an explicit [`Par`].
    ///
    /// # Shapes
    /// `z`: `batch×T×N×d` row-major → `a`: `batch×K×d`.
    ///
    /// # Panics
    /// When `z.len() != batch·T·N·d`.
    #[track_caller]
    pub fn project<T: Float>(&self, z: &[T], batch: usize, channels: usize) -> Vec<T> {
        let mut a = vec![T::zero(); batch * self.k() * channels];
        self.project_into(z, &mut a, batch, channels, Par::rayon(0));
        a
    }

    /// [`project`](Self::project) into a caller's buffer, with explicit parallelism.
    ///
    /// # Panics
    /// When `z.len() != batch·T·N·d` or `a.len() != batch·K·d`.
    #[track_caller]
    pub fn project_into<T: Float>(
        &self,
        z: &[T],
        a: &mut [T],
        batch: usize,
        channels: usize,
        par: Par,
    ) {
        let dims = self.dims(channels);
        check_len("project", "z", z.len(), batch, dims.signal());
        check_len("project", "a", a.len(), batch, dims.coeffs());
        for_samples(dims, batch, par, z, a, |z, a, work, par| {
            self.project_one(z, a, work, par)
        });
    }

    /// Synthesis `z = B_K a`, factored.
    ///
    /// # Shapes
    /// `a`: `batch×K×d` → `z`: `batch×T×N×d`.
    ///
    /// # Panics
    /// When `a.len() != batch·K·d`.
    #[track_caller]
    pub fn reconstruct<T: Float>(&self, a: &[T], batch: usize, channels: usize) -> Vec<T> {
        let mut z = vec![T::zero(); batch * self.n_frames() * self.n_nodes() * channels];
        self.reconstruct_into(a, &mut z, batch, channels, Par::rayon(0));
        z
    }

    /// [`reconstruct`](Self::reconstruct) into a caller's buffer (overwritten).
    ///
    /// # Panics
    /// When `a.len() != batch·K·d` or `z.len() != batch·T·N·d`.
    #[track_caller]
    pub fn reconstruct_into<T: Float>(
        &self,
        a: &[T],
        z: &mut [T],
        batch: usize,
        channels: usize,
        par: Par,
    ) {
        let dims = self.dims(channels);
        check_len("reconstruct", "a", a.len(), batch, dims.coeffs());
        check_len("reconstruct", "z", z.len(), batch, dims.signal());
        for_samples(dims, batch, par, a, z, |a, z, work, par| {
            self.reconstruct_one(a, z, work, Accum::Replace, par)
        });
    }

    /// The part of `z` outside the span of `B_K`: `(I − B_K B_Kᵀ) z` (paper: `(I − P) z`).
    ///
    /// # Shapes
    /// `z`: `batch×T×N×d` → same.
    ///
    /// # Panics
    /// When `z.len() != batch·T·N·d`.
    #[track_caller]
    pub fn residual<T: Float>(&self, z: &[T], batch: usize, channels: usize) -> Vec<T> {
        let mut r = vec![T::zero(); z.len()];
        self.residual_into(z, &mut r, batch, channels, Par::rayon(0));
        r
    }

    /// [`residual`](Self::residual) into a caller's buffer (overwritten).
    ///
    /// # Panics
    /// When `z.len()` or `r.len()` is not `batch·T·N·d`.
    #[track_caller]
    pub fn residual_into<T: Float>(
        &self,
        z: &[T],
        r: &mut [T],
        batch: usize,
        channels: usize,
        par: Par,
    ) {
        let dims = self.dims(channels);
        check_len("residual", "z", z.len(), batch, dims.signal());
        check_len("residual", "r", r.len(), batch, dims.signal());
        let mut a = vec![T::zero(); batch * dims.coeffs()];
        for_samples(dims, batch, par, z, &mut a, |z, a, work, par| {
            self.project_one(z, a, work, par)
        });
        // r = z − B_K a
        for (ri, &zi) in r.iter_mut().zip(z) {
            *ri = zi;
        }
        for_samples(dims, batch, par, &a, r, |a, r, work, par| {
            self.reconstruct_one_scaled(a, r, work, -T::one(), par)
        });
    }

    /// Spectral-Guided Enhancement forward (SPEC §4.3): `a = B_Kᵀ z`, `ã = w ⊙ a`,
    /// `z^sg = B_K ã + (I − B_K B_Kᵀ) z = z + B_K((w − 1) ⊙ a)`. With `w = 1` it is the
    /// identity on `z`.
    ///
    /// # Shapes
    /// `z`: `batch×T×N×d`, `w`: `K` → [`SgeOutput`].
    ///
    /// # Panics
    /// When `z.len() != batch·T·N·d` or `w.len() != K`.
    #[track_caller]
    pub fn sge_forward<T: Float>(
        &self,
        z: &[T],
        w: &[T],
        batch: usize,
        channels: usize,
    ) -> SgeOutput<T> {
        let dims = self.dims(channels);
        check_len("sge_forward", "z", z.len(), batch, dims.signal());
        assert_eq!(
            w.len(),
            dims.k,
            "sge_forward: w has {} weights, the basis has K = {}",
            w.len(),
            dims.k
        );
        let par = Par::rayon(0);
        let a = self.project(z, batch, channels);
        let mut a_tilde = a.clone();
        let mut delta = a.clone();
        scale_rows(&mut a_tilde, w, channels, |wk| wk);
        scale_rows(&mut delta, w, channels, |wk| wk - T::one());
        let mut z_sg = z.to_vec();
        for_samples(dims, batch, par, &delta, &mut z_sg, |x, y, work, par| {
            self.reconstruct_one_scaled(x, y, work, T::one(), par)
        });
        SgeOutput { z_sg, a_tilde, a }
    }

    /// Adjoint of [`sge_forward`](Self::sge_forward): given `a` from the forward pass, `w`, and
    /// the upstream gradients `g = ∂L/∂z^sg` and `h̃ = ∂L/∂ã`,
    ///
    /// * `∂L/∂z = g + B_K((w − 1) ⊙ B_Kᵀ g + w ⊙ h̃)`,
    /// * `∂L/∂w_k = Σ_{b,c} a[b,k,c] · ((B_Kᵀ g)[b,k,c] + h̃[b,k,c])` (summed over the batch).
    ///
    /// # Shapes
    /// `a`, `grad_a_tilde`: `batch×K×d`; `w`: `K`; `grad_z_sg`: `batch×T×N×d`.
    ///
    /// # Panics
    /// When a length does not match those shapes.
    #[track_caller]
    pub fn sge_backward<T: Float>(
        &self,
        a: &[T],
        w: &[T],
        grad_z_sg: &[T],
        grad_a_tilde: &[T],
        batch: usize,
        channels: usize,
    ) -> SgeGrad<T> {
        let dims = self.dims(channels);
        check_len("sge_backward", "a", a.len(), batch, dims.coeffs());
        check_len(
            "sge_backward",
            "grad_a_tilde",
            grad_a_tilde.len(),
            batch,
            dims.coeffs(),
        );
        check_len(
            "sge_backward",
            "grad_z_sg",
            grad_z_sg.len(),
            batch,
            dims.signal(),
        );
        assert_eq!(
            w.len(),
            dims.k,
            "sge_backward: w has {} weights, the basis has K = {}",
            w.len(),
            dims.k
        );
        let par = Par::rayon(0);
        let h = self.project(grad_z_sg, batch, channels);
        let d = channels;
        let mut grad_w = vec![T::zero(); dims.k];
        let mut q = vec![T::zero(); h.len()];
        for b in 0..batch {
            for k in 0..dims.k {
                let base = (b * dims.k + k) * d;
                let mut acc = T::zero();
                for c in base..base + d {
                    acc += a[c] * (h[c] + grad_a_tilde[c]);
                    q[c] = (w[k] - T::one()) * h[c] + w[k] * grad_a_tilde[c];
                }
                grad_w[k] += acc;
            }
        }
        let mut grad_z = grad_z_sg.to_vec();
        for_samples(dims, batch, par, &q, &mut grad_z, |x, y, work, par| {
            self.reconstruct_one_scaled(x, y, work, T::one(), par)
        });
        SgeGrad {
            z: grad_z,
            w: grad_w,
        }
    }

    /// One sample: `a = B_Kᵀ z`. `work` has `Dims::work()` elements.
    fn project_one<T: Float>(&self, z: &[T], a: &mut [T], work: &mut [T], par: Par) {
        let f = self.factors::<T>();
        let (t, n, d, j_max) = (
            self.n_frames(),
            self.n_nodes(),
            a.len() / self.k().max(1),
            self.n_temporal_modes(),
        );
        if self.k() == 0 || d == 0 {
            return;
        }
        let nd = n * d;
        let (w, ajm) = work.split_at_mut(j_max * nd);
        // 1. W = U_tᵀ Z.
        matmul(
            MatMut::from_row_major_slice_mut(w, j_max, nd),
            Accum::Replace,
            f.u_t.as_ref().transpose(),
            MatRef::from_row_major_slice(z, t, nd),
            T::one(),
            gemm_par(par, j_max, nd, t),
        );
        // 2. A_j = U_s[:, :m_j]ᵀ W_j, one independent GEMM per temporal mode.
        let w = &*w;
        let blocks = split_blocks(ajm, self.counts(), d);
        let one = |(j, blk): (usize, &mut [T]), par: Par| {
            let m = self.counts()[j];
            matmul(
                MatMut::from_row_major_slice_mut(blk, m, d),
                Accum::Replace,
                f.u_s.as_ref().subcols(0, m).transpose(),
                MatRef::from_row_major_slice(&w[j * nd..(j + 1) * nd], n, d),
                T::one(),
                gemm_par(par, m, d, n),
            );
        };
        if par.degree() > 1 && j_max > 1 {
            blocks.into_par_iter().for_each(|b| one(b, Par::Seq));
        } else {
            blocks.into_iter().for_each(|b| one(b, par));
        }
        // 3. j-major → selection order.
        for (p, &k) in self.jmajor_to_k().iter().enumerate() {
            a[k * d..(k + 1) * d].copy_from_slice(&ajm[p * d..(p + 1) * d]);
        }
    }

    /// One sample: `z = B_K a` (`Replace`) or `z += B_K a` (`Add`).
    fn reconstruct_one<T: Float>(
        &self,
        a: &[T],
        z: &mut [T],
        work: &mut [T],
        beta: Accum,
        par: Par,
    ) {
        self.synthesise(a, z, work, beta, T::one(), par);
    }

    /// One sample: `z += alpha · B_K a`.
    fn reconstruct_one_scaled<T: Float>(
        &self,
        a: &[T],
        z: &mut [T],
        work: &mut [T],
        alpha: T,
        par: Par,
    ) {
        self.synthesise(a, z, work, Accum::Add, alpha, par);
    }

    fn synthesise<T: Float>(
        &self,
        a: &[T],
        z: &mut [T],
        work: &mut [T],
        beta: Accum,
        alpha: T,
        par: Par,
    ) {
        let f = self.factors::<T>();
        let (t, n, j_max) = (self.n_frames(), self.n_nodes(), self.n_temporal_modes());
        let d = z.len().checked_div(t * n).unwrap_or(0);
        if self.k() == 0 || d == 0 {
            if matches!(beta, Accum::Replace) {
                z.fill(T::zero());
            }
            return;
        }
        let nd = n * d;
        let (v, ajm) = work.split_at_mut(j_max * nd);
        // selection order → j-major.
        for (p, &k) in self.jmajor_to_k().iter().enumerate() {
            ajm[p * d..(p + 1) * d].copy_from_slice(&a[k * d..(k + 1) * d]);
        }
        // V_j = U_s[:, :m_j] A_j, one independent GEMM per temporal mode.
        let ajm = &*ajm;
        let blocks: Vec<(usize, &mut [T])> = v.chunks_mut(nd).enumerate().collect();
        let one = |(j, blk): (usize, &mut [T]), par: Par| {
            let (m, off) = (self.counts()[j], self.offsets()[j]);
            matmul(
                MatMut::from_row_major_slice_mut(blk, n, d),
                Accum::Replace,
                f.u_s.as_ref().subcols(0, m),
                MatRef::from_row_major_slice(&ajm[off * d..(off + m) * d], m, d),
                T::one(),
                gemm_par(par, n, d, m),
            );
        };
        if par.degree() > 1 && j_max > 1 {
            blocks.into_par_iter().for_each(|b| one(b, Par::Seq));
        } else {
            blocks.into_iter().for_each(|b| one(b, par));
        }
        // Z (+)= alpha · U_t V.
        matmul(
            MatMut::from_row_major_slice_mut(z, t, nd),
            beta,
            f.u_t.as_ref(),
            MatRef::from_row_major_slice(v, j_max, nd),
            alpha,
            gemm_par(par, t, nd, j_max),
        );
    }
}

/// Below this many flops a GEMM runs sequentially: splitting it across threads costs more than
/// it saves (measured on the 2-core bench machine; faer's own heuristics are tuned for larger
/// products).
const PARALLEL_GEMM_FLOPS: usize = 1 << 23;

fn gemm_par(par: Par, m: usize, n: usize, k: usize) -> Par {
    if 2 * m * n * k < PARALLEL_GEMM_FLOPS {
        Par::Seq
    } else {
        par
    }
}

/// Splits `buf` into consecutive blocks of `counts[j] · d` elements, tagged with `j`.
fn split_blocks<'a, T>(
    mut buf: &'a mut [T],
    counts: &[usize],
    d: usize,
) -> Vec<(usize, &'a mut [T])> {
    let mut out = Vec::with_capacity(counts.len());
    for (j, &m) in counts.iter().enumerate() {
        let (head, tail) = std::mem::take(&mut buf).split_at_mut(m * d);
        out.push((j, head));
        buf = tail;
    }
    out
}

fn scale_rows<T: Float>(x: &mut [T], w: &[T], d: usize, f: impl Fn(T) -> T) {
    if d == 0 {
        return;
    }
    for (row, v) in x.chunks_exact_mut(d).enumerate() {
        let s = f(w[row % w.len()]);
        for e in v {
            *e *= s;
        }
    }
}

#[track_caller]
fn check_len(op: &str, name: &str, len: usize, batch: usize, per_sample: usize) {
    assert!(
        len == batch * per_sample,
        "{op}: `{name}` has {len} elements, expected batch {batch} × {per_sample}"
    );
}

/// Runs `f(input_b, output_b, work, par)` for each sample `b`: in parallel over samples (with
/// sequential GEMMs) when there are several and `par` allows it, otherwise one after the other
/// with `par` handed to the GEMMs.
fn for_samples<T: Float>(
    dims: Dims,
    batch: usize,
    par: Par,
    input: &[T],
    output: &mut [T],
    f: impl Fn(&[T], &mut [T], &mut [T], Par) + Sync,
) {
    if batch == 0 {
        return;
    }
    let (in_len, out_len) = (input.len() / batch, output.len() / batch);
    if out_len == 0 {
        return;
    }
    let parallel_samples = batch > 1 && par.degree() > 1;
    if parallel_samples {
        output.par_chunks_mut(out_len).enumerate().for_each_init(
            || vec![T::zero(); dims.work()],
            |work, (b, out)| {
                let inp = &input[b * in_len..(b + 1) * in_len];
                f(inp, out, work, Par::Seq)
            },
        );
    } else {
        let mut work = vec![T::zero(); dims.work()];
        for (b, out) in output.chunks_mut(out_len).enumerate() {
            f(&input[b * in_len..(b + 1) * in_len], out, &mut work, par);
        }
    }
}
