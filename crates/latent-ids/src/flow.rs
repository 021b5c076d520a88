//! Stage 2 of LaM-SLidE (seed 004, §3.3): a transformer over the latent trajectory
//! `[T, L, D]` that predicts the data `x̂_1` from the interpolant state `x_t`, the interpolation
//! time `t` and the conditioning.
//!
//! Input tokens `h = W_x x_t + W_c x_cond + m[mask]` (the conditioning latents and a learned
//! embedding of whether the frame is given). Each of `depth` layers alternates
//!
//! 1. attention across the `L` tokens of each frame (rotary encodings over the token index),
//! 2. attention across the `T` frames of each token (rotary encodings over the frame index),
//!
//! each a parallel attention + MLP block (`W_2 [Attn(q, k, v); GELU(u)]` with
//! `[q, k, v, u] = W_1 x`, RMS qk-norm) behind an adaptive LayerNorm
//! `x ← x + g ⊙ Block((1 + s) ⊙ LN(x) + b)` whose shift `b`, scale `s` and gate `g` are
//! linear in `SiLU(emb(t))` (DiT, Peebles & Xie 2023). The output layer is modulated the same
//! way and maps back to `D` (with `residual`, added to `x_cond`).

use graph_nets::{Activation, Mlp, linear};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor, nn};

use crate::attention::{QkNorm, Rope, merge_heads, sdpa, split_heads};
use crate::error::{Error, Result, check_shape, ensure_at_least, ensure_config};

/// Settings of a [`LatentFlow`]. `Default` is a small model for CPU training; the authors'
/// MD17 sizes are `hidden = 256`, `depth = 4`, `heads = 16`, `mlp_ratio = 2`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LatentFlowConfig {
    /// `D`, the width of a latent token (the codec's `latent_dim`).
    pub latent_dim: i64,
    /// Width of the transformer.
    pub hidden: i64,
    /// Layers (each a frame-wise and a token-wise attention block).
    pub depth: i64,
    /// Attention heads (`hidden / heads` must be even, for the rotary encodings).
    pub heads: i64,
    /// MLP width as a multiple of `hidden`.
    pub mlp_ratio: f64,
    /// Base `θ` of the rotary encodings.
    pub theta: f64,
    /// Width of the sinusoidal embedding of `t`.
    pub time_dim: i64,
    /// Predict the data as the conditioning plus a correction, `x̂_1 = x_cond + out(h)`, the
    /// output layer starting at zero: the untrained model predicts its conditioning (the given
    /// latents at the given frames, the fill elsewhere) and training learns the correction.
    /// `false`: `x̂_1 = out(h)` (the authors').
    pub residual: bool,
}

impl Default for LatentFlowConfig {
    fn default() -> Self {
        Self {
            latent_dim: 16,
            hidden: 64,
            depth: 2,
            heads: 4,
            mlp_ratio: 2.0,
            theta: 10_000.0,
            time_dim: 64,
            residual: false,
        }
    }
}

impl LatentFlowConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        const C: &str = "LatentFlowConfig";
        ensure_at_least(C, "latent_dim", self.latent_dim, 1)?;
        ensure_at_least(C, "hidden", self.hidden, 2)?;
        ensure_at_least(C, "depth", self.depth, 1)?;
        ensure_at_least(C, "heads", self.heads, 1)?;
        ensure_at_least(C, "time_dim", self.time_dim, 2)?;
        ensure_config(self.time_dim % 2 == 0, C, "time_dim", || {
            format!("must be even, got {}", self.time_dim)
        })?;
        let hd = self.hidden / self.heads;
        ensure_config(
            self.hidden % self.heads == 0 && hd % 2 == 0,
            C,
            "heads",
            || {
                format!(
                    "hidden / heads must be an even integer (rotary encodings), got {} / {}",
                    self.hidden, self.heads
                )
            },
        )?;
        ensure_config(
            self.mlp_ratio.is_finite() && self.mlp_ratio > 0.0,
            C,
            "mlp_ratio",
            || format!("must be finite and > 0, got {}", self.mlp_ratio),
        )?;
        ensure_config(
            self.theta.is_finite() && self.theta > 1.0,
            C,
            "theta",
            || format!("must be finite and > 1, got {}", self.theta),
        )?;
        Ok(())
    }

    /// Builds the model under `p`.
    pub fn build(&self, p: nn::Path<'_>) -> Result<LatentFlow> {
        self.validate()?;
        let h = self.hidden;
        let mlp = (h as f64 * self.mlp_ratio) as i64;
        let head_dim = h / self.heads;
        let block = |p: nn::Path<'_>| ParallelBlock {
            linear1: linear(&p / "linear1", h, 3 * h + mlp, true),
            linear2: linear(&p / "linear2", h + mlp, h, true),
            qk: QkNorm::new(&(&p / "qk"), head_dim),
            heads: self.heads,
            mlp,
        };
        let layers = (0..self.depth)
            .map(|i| {
                let q = &p / "layers" / i;
                FlowLayer {
                    modulation: linear(&q / "modulation", h, 6 * h, true),
                    spatial: block(&q / "spatial"),
                    temporal: block(&q / "temporal"),
                }
            })
            .collect();
        Ok(LatentFlow {
            x_in: linear(&p / "x_in", self.latent_dim, h, true),
            cond_in: linear(&p / "cond_in", self.latent_dim, h, true),
            mask_embed: nn::embedding(&p / "mask_embed", 2, h, Default::default()),
            time_in: Mlp::new(
                &(&p / "time_in"),
                &[self.time_dim, h, h],
                Activation::Silu,
                false,
                None,
            ),
            layers,
            final_modulation: linear(&p / "final_modulation", h, 2 * h, true),
            out: if self.residual {
                let zero = nn::LinearConfig {
                    ws_init: nn::Init::Const(0.0),
                    bs_init: Some(nn::Init::Const(0.0)),
                    bias: true,
                };
                nn::linear(&p / "out", h, self.latent_dim, zero)
            } else {
                linear(&p / "out", h, self.latent_dim, true)
            },
            rope: Rope::new(head_dim, self.theta),
            config: self.clone(),
        })
    }
}

#[derive(Debug)]
struct ParallelBlock {
    linear1: nn::Linear,
    linear2: nn::Linear,
    qk: QkNorm,
    heads: i64,
    mlp: i64,
}

impl ParallelBlock {
    /// `x: [B', P, H]`, rotary `cos, sin: [P, d/2]` → `[B', P, H]`.
    fn forward(&self, x: &Tensor, cos: &Tensor, sin: &Tensor) -> Tensor {
        let hidden = x.size()[2];
        let both = x.apply(&self.linear1);
        let parts = both.split_with_sizes([3 * hidden, self.mlp], -1);
        let qkv = parts[0].chunk(3, -1);
        let q = split_heads(&qkv[0], self.heads);
        let k = split_heads(&qkv[1], self.heads);
        let v = split_heads(&qkv[2], self.heads);
        let (q, k) = self.qk.apply(&q, &k);
        let (q, k) = (Rope::apply(&q, cos, sin), Rope::apply(&k, cos, sin));
        let attn = merge_heads(&sdpa(&q, &k, &v));
        Tensor::cat(&[attn, parts[1].gelu("none")], -1).apply(&self.linear2)
    }
}

#[derive(Debug)]
struct FlowLayer {
    modulation: nn::Linear,
    spatial: ParallelBlock,
    temporal: ParallelBlock,
}

/// The latent flow transformer.
#[derive(Debug)]
pub struct LatentFlow {
    x_in: nn::Linear,
    cond_in: nn::Linear,
    mask_embed: nn::Embedding,
    time_in: Mlp,
    layers: Vec<FlowLayer>,
    final_modulation: nn::Linear,
    out: nn::Linear,
    rope: Rope,
    config: LatentFlowConfig,
}

/// The sinusoidal embedding of interpolation times `t ∈ [0, 1]`, scaled by 1000 (DiT / Flux):
/// `[cos(1000 t ω_k), sin(1000 t ω_k)]`, `ω_k = 10000^{−k/(dim/2)}`, `k < dim/2`.
///
/// # Shapes
/// `t: [B]` → `[B, dim]`.
pub(crate) fn time_embedding(t: &Tensor, dim: i64) -> Tensor {
    let half = dim / 2;
    let freqs = (Tensor::arange(half, (Kind::Double, t.device()))
        * (-(10_000f64).ln() / half as f64))
        .exp()
        .to_kind(t.kind());
    let args = (t * 1000.0).unsqueeze(1) * freqs.unsqueeze(0);
    Tensor::cat(&[args.cos(), args.sin()], 1)
}

/// `(1 + scale) ⊙ LN(x) + shift`, LN without affine parameters (ε = 10⁻⁶); `shift` and `scale`
/// are per sample.
///
/// # Shapes
/// `x: [B, T, L, H]`, `shift`, `scale`: `[B, H]` → `[B, T, L, H]`.
fn modulate(x: &Tensor, shift: &Tensor, scale: &Tensor) -> Tensor {
    let h = x.size()[3];
    let n = x.layer_norm([h], None::<Tensor>, None::<Tensor>, 1e-6, false);
    let per = |t: &Tensor| t.unsqueeze(1).unsqueeze(1);
    n * (per(scale) + 1.0) + per(shift)
}

impl LatentFlow {
    /// The settings it was built with.
    pub fn config(&self) -> &LatentFlowConfig {
        &self.config
    }

    /// Predicts the data `x̂_1` of every frame.
    ///
    /// # Shapes
    /// `x_t: [B, T, L, D]`, `t: [B]` (interpolation times), `x_cond: [B, T, L, D]`,
    /// `mask: [B, T, L]` int64 (1: the frame is given) → `[B, T, L, D]`.
    pub fn f_forward(
        &self,
        x_t: &Tensor,
        t: &Tensor,
        x_cond: &Tensor,
        mask: &Tensor,
    ) -> Result<Tensor> {
        const OP: &str = "LatentFlow::forward";
        let d = self.config.latent_dim;
        check_shape(OP, "x_t", x_t, &[None, None, None, Some(d)])?;
        let s = x_t.size();
        let (b, tt, l) = (s[0], s[1], s[2]);
        check_shape(OP, "t", t, &[Some(b)])?;
        check_shape(OP, "x_cond", x_cond, &[Some(b), Some(tt), Some(l), Some(d)])?;
        check_shape(OP, "mask", mask, &[Some(b), Some(tt), Some(l)])?;
        if mask.kind() != Kind::Int64 {
            return Err(Error::Input {
                op: OP,
                reason: format!("mask must be int64, got {:?}", mask.kind()),
            });
        }
        let h = self.config.hidden;
        let mut x =
            x_t.apply(&self.x_in) + x_cond.apply(&self.cond_in) + mask.apply(&self.mask_embed);
        let vec = self.time_in.forward(&time_embedding(
            &t.to_kind(x_t.kind()),
            self.config.time_dim,
        ));
        let opts = (x_t.kind(), x_t.device());
        let (cos_l, sin_l) = self.rope.angles(l, opts);
        let (cos_t, sin_t) = self.rope.angles(tt, opts);
        for layer in &self.layers {
            let m = vec.silu().apply(&layer.modulation).chunk(6, -1);
            let gate = |g: &Tensor| g.unsqueeze(1).unsqueeze(1);
            // across the L tokens of each frame
            let y = modulate(&x, &m[0], &m[1]).reshape([b * tt, l, h]);
            let y = layer
                .spatial
                .forward(&y, &cos_l, &sin_l)
                .view([b, tt, l, h]);
            x = &x + gate(&m[2]) * y;
            // across the T frames of each token
            let y = modulate(&x, &m[3], &m[4])
                .permute([0, 2, 1, 3])
                .reshape([b * l, tt, h]);
            let y = layer
                .temporal
                .forward(&y, &cos_t, &sin_t)
                .view([b, l, tt, h])
                .permute([0, 2, 1, 3]);
            x = &x + gate(&m[5]) * y;
        }
        let m = vec.silu().apply(&self.final_modulation).chunk(2, -1);
        let y = modulate(&x, &m[0], &m[1]).apply(&self.out);
        Ok(if self.config.residual { y + x_cond } else { y })
    }

    /// [`f_forward`](Self::f_forward), panicking on its errors.
    ///
    /// # Shapes
    /// As [`f_forward`](Self::f_forward).
    pub fn forward(&self, x_t: &Tensor, t: &Tensor, x_cond: &Tensor, mask: &Tensor) -> Tensor {
        self.f_forward(x_t, t, x_cond, mask)
            .unwrap_or_else(|e| panic!("{e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{Draws, model_lock};
    use tch::{Device, nn::VarStore};

    fn tiny() -> LatentFlowConfig {
        LatentFlowConfig {
            latent_dim: 4,
            hidden: 16,
            depth: 2,
            heads: 2,
            time_dim: 8,
            ..Default::default()
        }
    }

    #[test]
    fn shapes_and_token_axis_order() {
        let _g = model_lock(5);
        let mut vs = VarStore::new(Device::Cpu);
        let flow = tiny().build(vs.root()).unwrap();
        vs.double();
        let mut d = Draws::new(6);
        let (x, c) = (d.normal(&[2, 5, 3, 4]), d.normal(&[2, 5, 3, 4]));
        let mask = Tensor::zeros([2, 5, 3], (Kind::Int64, Device::Cpu));
        let t = Tensor::from_slice(&[0.2, 0.7]);
        let y = flow.forward(&x, &t, &c, &mask);
        assert_eq!(y.size(), [2, 5, 3, 4]);
        // samples do not interact
        let y0 = flow.forward(
            &x.narrow(0, 0, 1),
            &t.narrow(0, 0, 1),
            &c.narrow(0, 0, 1),
            &mask.narrow(0, 0, 1),
        );
        assert!(y0.allclose(&y.narrow(0, 0, 1), 1e-10, 1e-10, false));
        // rotary encodings make the output depend on the frame order
        let rev = Tensor::from_slice(&[4i64, 3, 2, 1, 0]);
        let yr = flow.forward(
            &x.index_select(1, &rev),
            &t,
            &c.index_select(1, &rev),
            &mask,
        );
        assert!(!yr.allclose(&y.index_select(1, &rev), 1e-6, 1e-6, false));
        // errors
        assert!(
            flow.f_forward(&x, &t, &c, &mask.to_kind(Kind::Float))
                .is_err()
        );
        assert!(flow.f_forward(&x, &t.narrow(0, 0, 1), &c, &mask).is_err());
        assert!(LatentFlowConfig { heads: 3, ..tiny() }.validate().is_err());
    }

    #[test]
    fn a_residual_flow_starts_at_its_conditioning() {
        let _g = model_lock(7);
        let mut vs = VarStore::new(Device::Cpu);
        let flow = LatentFlowConfig {
            residual: true,
            ..tiny()
        }
        .build(vs.root())
        .unwrap();
        vs.double();
        let mut d = Draws::new(8);
        let (x, c) = (d.normal(&[2, 3, 2, 4]), d.normal(&[2, 3, 2, 4]));
        let mask = Tensor::ones([2, 3, 2], (Kind::Int64, Device::Cpu));
        let t = Tensor::from_slice(&[0.1, 0.9]);
        assert!(flow.forward(&x, &t, &c, &mask).equal(&c));
        // a step on the output layer moves it off the conditioning
        tch::no_grad(|| {
            let _ = vs.variables()["out.bias"].shallow_clone().fill_(0.5);
        });
        assert!(
            !flow
                .forward(&x, &t, &c, &mask)
                .allclose(&c, 1e-6, 1e-6, false)
        );
    }
}
