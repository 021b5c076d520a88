//! Temporal convolutions in Fourier space (EGNO, Xu et al. 2024, §4.2): an FNO-style spectral
//! layer along the time axis, for invariant features and, equivariantly, for stacked vectors.

use serde::{Deserialize, Serialize};
use tch::{Tensor, nn};

use crate::error::{Result, check_shape, ensure_at_least};
use crate::mlp::Activation;

/// `irfft_T( W · rfft_T(u)[:modes] )`: a channel mixing `W ∈ ℂ^{C_in × C_out × modes}` applied
/// to the lowest `modes` temporal frequencies (the rest are zeroed), back to `T` frames.
///
/// `equation` contracts `(u_ft [m, ..., c_in], W [c_in, c_out, m])`.
fn spectral_mix(u: &Tensor, w_re: &Tensor, w_im: &Tensor, equation: &str) -> Tensor {
    let t = u.size()[0];
    let modes = w_re.size()[2].min(t / 2 + 1);
    let u_ft = u.fft_rfft(None, 0, "backward").narrow(0, 0, modes);
    let w = Tensor::complex(&w_re.narrow(2, 0, modes), &w_im.narrow(2, 0, modes));
    let out_ft = Tensor::einsum(equation, &[u_ft, w], None::<i64>);
    // irfft zero-pads the missing high frequencies up to T/2 + 1.
    out_ft.fft_irfft(t, 0, "backward")
}

/// Settings of a [`SpectralTimeConv`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpectralTimeConvConfig {
    /// Feature channels `C` (input and output).
    pub channels: i64,
    /// Temporal Fourier modes kept (at most `T/2 + 1` are used for `T` frames).
    pub num_modes: i64,
    /// Non-linearity on the convolution output (EGNO: leaky ReLU).
    pub activation: Activation,
}

impl Default for SpectralTimeConvConfig {
    fn default() -> Self {
        Self {
            channels: 64,
            num_modes: 2,
            activation: Activation::LeakyRelu,
        }
    }
}

impl SpectralTimeConvConfig {
    /// Validates the settings.
    ///
    /// # Errors
    /// Non-positive `channels` or `num_modes`.
    pub fn check(&self) -> Result<()> {
        const C: &str = "SpectralTimeConvConfig";
        ensure_at_least(C, "channels", self.channels, 1)?;
        ensure_at_least(C, "num_modes", self.num_modes, 1)
    }

    /// Creates `weight_re`, `weight_im` (`[C, C, modes]`, uniform in `[0, 1/C²)` as in FNO).
    ///
    /// # Errors
    /// As [`SpectralTimeConvConfig::check`].
    pub fn build(&self, p: nn::Path<'_>) -> Result<SpectralTimeConv> {
        self.check()?;
        let (c, m) = (self.channels, self.num_modes);
        let scale = 1.0 / (c * c) as f64;
        let w_re = p.var(
            "weight_re",
            &[c, c, m],
            nn::Init::Uniform { lo: 0.0, up: scale },
        );
        let w_im = p.var(
            "weight_im",
            &[c, c, m],
            nn::Init::Uniform { lo: 0.0, up: scale },
        );
        Ok(SpectralTimeConv {
            cfg: self.clone(),
            w_re,
            w_im,
        })
    }
}

/// Fourier temporal convolution of invariant features with a residual:
/// `h' = h + act(irfft_T(W · rfft_T(h)[:modes]))`, the same complex weights at every node.
#[derive(Debug)]
pub struct SpectralTimeConv {
    cfg: SpectralTimeConvConfig,
    w_re: Tensor,
    w_im: Tensor,
}

impl SpectralTimeConv {
    /// Validating forward pass.
    ///
    /// # Shapes
    /// `h: [T, N, C]` → `[T, N, C]`.
    ///
    /// # Errors
    /// A wrong shape.
    pub fn f_forward(&self, h: &Tensor) -> Result<Tensor> {
        check_shape(
            "SpectralTimeConv::forward",
            "h",
            h,
            &[None, None, Some(self.cfg.channels)],
        )?;
        Ok(self.forward_unchecked(h))
    }

    /// Forward pass; see [`SpectralTimeConv::f_forward`].
    ///
    /// # Panics
    /// Where [`SpectralTimeConv::f_forward`] returns an error.
    #[track_caller]
    pub fn forward(&self, h: &Tensor) -> Tensor {
        self.f_forward(h).unwrap_or_else(|e| panic!("{e}"))
    }

    pub(crate) fn forward_unchecked(&self, h: &Tensor) -> Tensor {
        h + self
            .cfg
            .activation
            .apply(&spectral_mix(h, &self.w_re, &self.w_im, "mnc,com->mno"))
    }
}

/// Settings of an [`EquivariantTimeConv`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EquivariantTimeConvConfig {
    /// Vectors per node `K` (EGNO: 2, the centred position and the velocity).
    pub vectors: i64,
    /// Temporal Fourier modes kept.
    pub num_modes: i64,
}

impl Default for EquivariantTimeConvConfig {
    fn default() -> Self {
        Self {
            vectors: 2,
            num_modes: 2,
        }
    }
}

impl EquivariantTimeConvConfig {
    /// Validates the settings.
    ///
    /// # Errors
    /// Non-positive `vectors` or `num_modes`.
    pub fn check(&self) -> Result<()> {
        const C: &str = "EquivariantTimeConvConfig";
        ensure_at_least(C, "vectors", self.vectors, 1)?;
        ensure_at_least(C, "num_modes", self.num_modes, 1)
    }

    /// Creates `weight_re`, `weight_im` (`[K, K, modes]`, uniform in `[0, 0.1)` as in EGNO).
    ///
    /// # Errors
    /// As [`EquivariantTimeConvConfig::check`].
    pub fn build(&self, p: nn::Path<'_>) -> Result<EquivariantTimeConv> {
        self.check()?;
        let (k, m) = (self.vectors, self.num_modes);
        let w_re = p.var(
            "weight_re",
            &[k, k, m],
            nn::Init::Uniform { lo: 0.0, up: 0.1 },
        );
        let w_im = p.var(
            "weight_im",
            &[k, k, m],
            nn::Init::Uniform { lo: 0.0, up: 0.1 },
        );
        Ok(EquivariantTimeConv {
            cfg: self.clone(),
            w_re,
            w_im,
        })
    }
}

/// Equivariant Fourier temporal convolution of `K` stacked vectors per node with a residual:
/// `X' = X + irfft_T(W · rfft_T(X)[:modes])`, where `W ∈ ℂ^{K×K×modes}` mixes the vectors and
/// acts identically on each spatial axis. It is linear and commutes with any orthogonal map of the
/// spatial axes, so it is O(3)-equivariant; feed it translation-invariant vectors (positions minus
/// the centroid, velocities) and add the centroid back for E(3).
///
/// No non-linearity: a pointwise one would break equivariance.
#[derive(Debug)]
pub struct EquivariantTimeConv {
    cfg: EquivariantTimeConvConfig,
    w_re: Tensor,
    w_im: Tensor,
}

impl EquivariantTimeConv {
    /// Validating forward pass.
    ///
    /// # Shapes
    /// `vectors: [T, N, 3, K]` → `[T, N, 3, K]`.
    ///
    /// # Errors
    /// A wrong shape.
    pub fn f_forward(&self, vectors: &Tensor) -> Result<Tensor> {
        check_shape(
            "EquivariantTimeConv::forward",
            "vectors",
            vectors,
            &[None, None, Some(3), Some(self.cfg.vectors)],
        )?;
        Ok(self.forward_unchecked(vectors))
    }

    /// Forward pass; see [`EquivariantTimeConv::f_forward`].
    ///
    /// # Panics
    /// Where [`EquivariantTimeConv::f_forward`] returns an error.
    #[track_caller]
    pub fn forward(&self, vectors: &Tensor) -> Tensor {
        self.f_forward(vectors).unwrap_or_else(|e| panic!("{e}"))
    }

    pub(crate) fn forward_unchecked(&self, vectors: &Tensor) -> Tensor {
        vectors + spectral_mix(vectors, &self.w_re, &self.w_im, "mndk,kom->mndo")
    }
}
