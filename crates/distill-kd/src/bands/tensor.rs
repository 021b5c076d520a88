//! The tch half of the band splitters (SDKD eq. 10; SPEC §4.5): `Ψ_l` / `Ψ_h` on tensors, by the
//! joint graph basis of SPEC §4.2 for graph signals and by a DFT cutoff for time series and grids.

use tch::{Device, Kind, Tensor};

use super::{DftSplitter, LOW_EXCESS};
use crate::error::{Error, Result};

/// The low band `Ψ_l(x)` and high band `Ψ_h(x) = x − Ψ_l(x)` of a signal.
#[derive(Debug)]
pub struct Bands {
    /// `Ψ_l(x)`, same shape as `x`.
    pub low: Tensor,
    /// `Ψ_h(x) = x − Ψ_l(x)`, same shape as `x`.
    pub high: Tensor,
}

/// A split of a signal into a low-frequency band and its high-frequency residual (SDKD eq. 10:
/// `Ψ_l`, `Ψ_h`).
///
/// # Contract
/// [`low_band`](Self::low_band) is a **linear orthogonal projection** (symmetric and idempotent)
/// applied independently to every channel/batch entry, so `Ψ_h = I − Ψ_l` is one too, the bands are
/// orthogonal, `Ψ_l(x) + Ψ_h(x) = x`, and `Ψ(s) − Ψ(t) = Ψ(s − t)` (which
/// [`FreqAlignedLoss`](crate::FreqAlignedLoss) uses to split once instead of twice). Both bands
/// must be differentiable in tch.
pub trait BandSplitter {
    /// The low band `Ψ_l(x)`, the same shape as `x`.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] when `x` does not fit the splitter.
    fn low_band(&self, x: &Tensor) -> Result<Tensor>;

    /// Both bands: `Ψ_l(x)` and the residual `Ψ_h(x) = x − Ψ_l(x)` (so they sum to `x` up to one
    /// rounding).
    ///
    /// # Errors
    /// As [`low_band`](Self::low_band).
    fn split(&self, x: &Tensor) -> Result<Bands> {
        let low = self.low_band(x)?;
        let high = x - &low;
        Ok(Bands { low, high })
    }
}

impl<S: BandSplitter + ?Sized> BandSplitter for &S {
    fn low_band(&self, x: &Tensor) -> Result<Tensor> {
        (**self).low_band(x)
    }
}

impl<S: BandSplitter + ?Sized> BandSplitter for Box<S> {
    fn low_band(&self, x: &Tensor) -> Result<Tensor> {
        (**self).low_band(x)
    }
}

/// Largest `|UᵀU − I|` accepted for the basis columns, by floating kind.
fn orthonormality_tolerance(kind: Kind) -> f64 {
    match kind {
        Kind::Double => 1e-9,
        _ => 1e-4,
    }
}

/// The joint spatio-temporal graph band splitter (SPEC §4.2, seed 000 "Joint Spatiotemporal
/// Basis"): low band `Ψ_l(z) = B_K B_Kᵀ z`, high band the residual `(I − B_K B_Kᵀ) z`, with
/// `B_K = [u_t,j ⊗ u_s,i]` over the selected `(j, i)` pairs.
///
/// `B_K` is never formed: per channel `Z_c ∈ R^{T×N}` the coefficients are
/// `C = U_tᵀ Z_c U_s` over the leading `J` temporal and `I` spatial columns that the selection
/// touches, the unselected entries are zeroed, and `Ψ_l(Z_c) = U_t C U_sᵀ` — `O(T·N·d·(J + I))`
/// work and no `NT × K` matrix. The eigenvectors come from the caller (e.g. `spectral-core`'s
/// truncated joint basis, converted to tensors); they are stored detached and never trained.
///
/// Index convention (SPEC §4.1–4.2): `z ∈ R^{T×N×d}` flattened with index `t·N + n`, so column
/// `(j, i)` of `B_K` is `(u_t,j ⊗ u_s,i)[t·N + n] = U_t[t, j] · U_s[n, i]`.
#[derive(Debug)]
pub struct JointBasisSplitter {
    /// `[T, J]`: the used leading temporal eigenvectors.
    u_t: Tensor,
    /// `[N, I]`: the used leading spatial eigenvectors.
    u_s: Tensor,
    /// `[J, I]`: 1 at the selected pairs, 0 elsewhere.
    mask: Tensor,
    /// `[K]` (int64): `j · I + i` for each selected pair, in selection order.
    flat_index: Tensor,
    pairs: Vec<(usize, usize)>,
}

impl JointBasisSplitter {
    /// Builds the splitter from the leading eigenvectors and the selected pairs.
    ///
    /// Only the leading `J = 1 + max j` columns of `u_t` and `I = 1 + max i` of `u_s` are kept.
    /// Both are converted to `u_t`'s kind and device.
    ///
    /// # Shapes
    /// - `u_t`: `[T, J₀]`, orthonormal columns (temporal Laplacian eigenvectors, ascending).
    /// - `u_s`: `[N, I₀]`, orthonormal columns (spatial Laplacian eigenvectors, ascending).
    /// - `pairs`: `K` distinct `(j, i)` with `j < J₀`, `i < I₀`, in the order of `B_K`'s columns
    ///   (e.g. ascending `μ_ij = λ_t,j + λ_s,i`, ties by `(j, i)`). `K = 0` gives a zero low band.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] when a basis is not a floating matrix, [`Error::PairOutOfRange`],
    /// [`Error::DuplicatePair`], or [`Error::NotOrthonormal`] when the used columns are not
    /// orthonormal (tolerance 1e-9 in f64, 1e-4 otherwise).
    pub fn new(u_t: &Tensor, u_s: &Tensor, pairs: &[(usize, usize)]) -> Result<Self> {
        for (what, u) in [
            ("JointBasisSplitter::new (u_t)", u_t),
            ("JointBasisSplitter::new (u_s)", u_s),
        ] {
            if u.dim() != 2 || !u.is_floating_point() {
                return Err(Error::ShapeMismatch {
                    op: what,
                    expected: "a floating [rows, cols] matrix".into(),
                    got: u.size(),
                });
            }
        }
        let (temporal, spatial) = (u_t.size()[1] as usize, u_s.size()[1] as usize);
        let mut seen = std::collections::HashSet::with_capacity(pairs.len());
        for &(j, i) in pairs {
            if j >= temporal || i >= spatial {
                return Err(Error::PairOutOfRange {
                    j,
                    i,
                    temporal,
                    spatial,
                });
            }
            if !seen.insert((j, i)) {
                return Err(Error::DuplicatePair { j, i });
            }
        }
        let j_used = pairs.iter().map(|p| p.0 + 1).max().unwrap_or(0);
        let i_used = pairs.iter().map(|p| p.1 + 1).max().unwrap_or(0);
        let (kind, device) = (u_t.kind(), u_t.device());
        let u_t = u_t.detach().narrow(1, 0, j_used as i64).contiguous();
        let u_s = u_s
            .detach()
            .narrow(1, 0, i_used as i64)
            .to_device(device)
            .to_kind(kind)
            .contiguous();
        let tol = orthonormality_tolerance(kind);
        for (which, u) in [("u_t", &u_t), ("u_s", &u_s)] {
            let cols = u.size()[1];
            if cols == 0 {
                continue;
            }
            let eye = Tensor::eye(cols, (kind, device));
            let dev = (u.tr().matmul(u) - eye).abs().max().double_value(&[]);
            if dev.is_nan() || dev > tol {
                return Err(Error::NotOrthonormal {
                    which,
                    max_deviation: dev,
                });
            }
        }
        let mut mask = vec![0f64; j_used * i_used];
        let flat: Vec<i64> = pairs
            .iter()
            .map(|&(j, i)| {
                mask[j * i_used + i] = 1.0;
                (j * i_used + i) as i64
            })
            .collect();
        let mask = Tensor::from_slice(&mask)
            .view([j_used as i64, i_used as i64])
            .to_kind(kind)
            .to_device(device);
        let flat_index = Tensor::from_slice(&flat).to_device(device);
        Ok(Self {
            u_t,
            u_s,
            mask,
            flat_index,
            pairs: pairs.to_vec(),
        })
    }

    /// The same splitter with its tensors on `device`.
    pub fn to_device(&self, device: Device) -> Self {
        Self {
            u_t: self.u_t.to_device(device),
            u_s: self.u_s.to_device(device),
            mask: self.mask.to_device(device),
            flat_index: self.flat_index.to_device(device),
            pairs: self.pairs.clone(),
        }
    }

    /// The selected `(j, i)` pairs, in coefficient order.
    pub fn pairs(&self) -> &[(usize, usize)] {
        &self.pairs
    }

    /// The splitter's tensors by name (`u_t`, `u_s`, `mask`, `flat_index`), e.g. to check which
    /// device they live on.
    pub fn tensors(&self) -> [(&'static str, &Tensor); 4] {
        [
            ("u_t", &self.u_t),
            ("u_s", &self.u_s),
            ("mask", &self.mask),
            ("flat_index", &self.flat_index),
        ]
    }

    /// `K`, the number of selected pairs.
    pub fn k(&self) -> usize {
        self.pairs.len()
    }

    /// `T`, the number of frames.
    pub fn frames(&self) -> i64 {
        self.u_t.size()[0]
    }

    /// `N`, the number of nodes.
    pub fn nodes(&self) -> i64 {
        self.u_s.size()[0]
    }

    /// The basis in `x`'s kind and device (no copy when they already match).
    fn basis_for(&self, x: &Tensor) -> (Tensor, Tensor, Tensor, Tensor) {
        let (k, d) = (x.kind(), x.device());
        (
            self.u_t.to_device(d).to_kind(k),
            self.u_s.to_device(d).to_kind(k),
            self.mask.to_device(d).to_kind(k),
            self.flat_index.to_device(d),
        )
    }

    fn check_signal(&self, op: &'static str, x: &Tensor) -> Result<()> {
        let s = x.size();
        let (t, n) = (self.frames(), self.nodes());
        if s.len() < 3 || s[s.len() - 3] != t || s[s.len() - 2] != n || !x.is_floating_point() {
            return Err(Error::ShapeMismatch {
                op,
                expected: format!("a floating [.., T={t}, N={n}, d]"),
                got: s,
            });
        }
        Ok(())
    }

    /// All `J × I` coefficients `C = U_tᵀ Z_c U_s`, as `[.., d, J, I]`.
    fn full_coefficients(&self, x: &Tensor, u_t: &Tensor, u_s: &Tensor) -> Tensor {
        u_t.tr().matmul(&x.movedim(-1, -3)).matmul(u_s)
    }

    /// Spectral coefficients `a = B_Kᵀ z` (seed 000 SGE, `a := B_Kᵀ z`; SPEC §4.2–4.3), computed
    /// factored as `C = U_tᵀ Z_c U_s` and read at the selected pairs.
    ///
    /// # Shapes
    /// `z`: `[.., T, N, d]` → `[.., K, d]`, column `k` of `B_K` being pair `pairs()[k]`.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] when `z` is not `[.., T, N, d]`.
    pub fn coefficients(&self, z: &Tensor) -> Result<Tensor> {
        self.check_signal("JointBasisSplitter::coefficients", z)?;
        let (u_t, u_s, _, index) = self.basis_for(z);
        let c = self.full_coefficients(z, &u_t, &u_s).flatten(-2, -1);
        Ok(c.index_select(-1, &index).transpose(-1, -2))
    }

    /// Reconstruction `z = B_K a` (SPEC §4.2, "reconstruction is the transpose"), factored as
    /// `U_t C U_sᵀ` with `C` holding `a` at the selected pairs.
    ///
    /// # Shapes
    /// `a`: `[.., K, d]` → `[.., T, N, d]`.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] when `a` is not `[.., K, d]` (rank ≥ 2) or not floating.
    pub fn reconstruct(&self, a: &Tensor) -> Result<Tensor> {
        let s = a.size();
        if s.len() < 2 || s[s.len() - 2] != self.k() as i64 || !a.is_floating_point() {
            return Err(Error::ShapeMismatch {
                op: "JointBasisSplitter::reconstruct",
                expected: format!("a floating [.., K={}, d]", self.k()),
                got: s,
            });
        }
        let (u_t, u_s, _, index) = self.basis_for(a);
        let (j, i) = (u_t.size()[1], u_s.size()[1]);
        let src = a.transpose(-1, -2); // [.., d, K]
        let mut shape = src.size();
        *shape.last_mut().expect("rank ≥ 2") = j * i;
        let c = Tensor::zeros(&shape, (a.kind(), a.device())).index_add(-1, &index, &src);
        shape.pop();
        shape.extend([j, i]);
        Ok(u_t
            .matmul(&c.view(shape.as_slice()))
            .matmul(&u_s.tr())
            .movedim(-3, -1))
    }
}

impl BandSplitter for JointBasisSplitter {
    /// `Ψ_l(z) = B_K B_Kᵀ z` (SPEC §4.2 "P = B_K B_Kᵀ", SDKD eq. 10 low band), factored.
    ///
    /// # Shapes
    /// `z`: `[.., T, N, d]` → the same.
    fn low_band(&self, z: &Tensor) -> Result<Tensor> {
        self.check_signal("JointBasisSplitter::low_band", z)?;
        let (u_t, u_s, mask, _) = self.basis_for(z);
        let c = self.full_coefficients(z, &u_t, &u_s) * mask;
        Ok(u_t.matmul(&c).matmul(&u_s.tr()).movedim(-3, -1))
    }
}

impl DftSplitter {
    /// The 0/1 mask for a signal of shape `shape`, broadcastable against it.
    fn mask(&self, shape: &[i64], dims: &[usize], kind: Kind, device: Device) -> Tensor {
        let rank = shape.len();
        let mut excess: Option<Tensor> = None;
        for (axis, &d) in dims.iter().enumerate() {
            let n = shape[d];
            // Per-bin excess along this axis, broadcast along the others: summed, it is ≤ 1
            // exactly for the low bins (see `DftSplitter::is_low`).
            let term: Vec<f64> = (0..n)
                .map(|b| self.excess(axis, signed_frequency(b, n).unsigned_abs()))
                .collect();
            let mut view = vec![1i64; rank];
            view[d] = n;
            let t = Tensor::from_slice(&term).view(view.as_slice());
            excess = Some(match excess {
                None => t,
                Some(e) => e + t,
            });
        }
        let excess = excess.expect("dims is non-empty");
        excess.le(LOW_EXCESS).to_kind(kind).to_device(device)
    }

    fn axes(&self, x: &Tensor) -> Result<Vec<usize>> {
        let rank = x.dim() as i64;
        let bad = || Error::ShapeMismatch {
            op: "DftSplitter::low_band",
            expected: format!(
                "a real floating tensor with axes {:?} (distinct)",
                self.cfg.dims
            ),
            got: x.size(),
        };
        if !x.is_floating_point() {
            return Err(bad());
        }
        let mut axes = Vec::with_capacity(self.cfg.dims.len());
        for &d in &self.cfg.dims {
            let a = if d < 0 { d + rank } else { d };
            if !(0..rank).contains(&a) || axes.contains(&(a as usize)) {
                return Err(bad());
            }
            axes.push(a as usize);
        }
        Ok(axes)
    }
}

impl BandSplitter for DftSplitter {
    /// `Ψ_l(x) = Re F⁻¹(M ⊙ F x)` over the configured axes (SDKD eq. 10 low band).
    ///
    /// # Shapes
    /// `x`: any real floating tensor having the configured axes → the same shape.
    fn low_band(&self, x: &Tensor) -> Result<Tensor> {
        let axes = self.axes(x)?;
        let dims: Vec<i64> = axes.iter().map(|&a| a as i64).collect();
        let mask = self.mask(&x.size(), &axes, x.kind(), x.device());
        let spectrum = x.f_fft_fftn(None::<&[i64]>, dims.as_slice(), "backward")?;
        let low = (spectrum * mask).f_fft_ifftn(None::<&[i64]>, dims.as_slice(), "backward")?;
        Ok(low.real().contiguous())
    }
}

/// The signed integer frequency of bin `b` of a length-`n` DFT: `b` up to `n/2`, `b − n` above.
fn signed_frequency(b: i64, n: i64) -> i64 {
    if 2 * b <= n { b } else { b - n }
}
