//! Multi-head attention with RMS qk-normalisation, the pre-norm attention blocks of the codec,
//! and rotary position encodings for the flow model.
//!
//! - [`rms_norm`]: `x / √(mean(x²) + 10⁻⁶) · γ` over the last axis (Zhang & Sennrich 2019);
//!   applied per head to queries and keys ("qk-norm"), it bounds the attention logits.
//! - [`AttentionBlock`]: `x ← x + Attn(LN(x), LN(c))`, `x ← x + FF(LN(x))` — self-attention
//!   when built without a context dimension (`c = x`), cross-attention otherwise.
//! - [`Rope`]: rotary encodings (Su et al. 2021): channel pair `(2i, 2i+1)` of a query or key at
//!   position `p` is rotated by the angle `p·θ^(−2i/d)`, so that `⟨R_p q, R_s k⟩` depends on
//!   `p − s` only.

use graph_nets::{Activation, Mlp, xavier_uniform};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor, nn};

use crate::error::{Result, check_shape, ensure_at_least};

/// `x · rsqrt(mean(x², −1) + 10⁻⁶) · scale` over the last axis.
///
/// # Shapes
/// `x: [.., d]`, `scale: [d]` → `[.., d]`.
pub fn rms_norm(x: &Tensor, scale: &Tensor) -> Tensor {
    let ms = x.square().mean_dim(&[-1i64][..], true, x.kind());
    x * (ms + 1e-6).rsqrt() * scale
}

/// The learned scales of RMS qk-normalisation (ones at start).
#[derive(Debug)]
pub(crate) struct QkNorm {
    q: Tensor,
    k: Tensor,
}

impl QkNorm {
    pub(crate) fn new(p: &nn::Path<'_>, head_dim: i64) -> Self {
        Self {
            q: p.sub("query_norm").ones("scale", &[head_dim]),
            k: p.sub("key_norm").ones("scale", &[head_dim]),
        }
    }

    /// `(q, k)` each `[.., head_dim]`, normalised.
    pub(crate) fn apply(&self, q: &Tensor, k: &Tensor) -> (Tensor, Tensor) {
        (rms_norm(q, &self.q), rms_norm(k, &self.k))
    }
}

/// `[B, L, H·d] → [B, H, L, d]`.
pub(crate) fn split_heads(x: &Tensor, heads: i64) -> Tensor {
    let s = x.size();
    x.view([s[0], s[1], heads, -1]).transpose(1, 2)
}

/// `[B, H, L, d] → [B, L, H·d]`.
pub(crate) fn merge_heads(x: &Tensor) -> Tensor {
    let s = x.size();
    x.transpose(1, 2).reshape([s[0], s[2], s[1] * s[3]])
}

/// Scaled dot-product attention `softmax(q kᵀ / √d) v`.
///
/// # Shapes
/// `q: [B, H, Lq, d]`, `k, v: [B, H, Lk, d]` → `[B, H, Lq, d]`.
pub(crate) fn sdpa(q: &Tensor, k: &Tensor, v: &Tensor) -> Tensor {
    Tensor::scaled_dot_product_attention(q, k, v, None::<Tensor>, 0.0, false, None, false)
}

/// Settings of an [`AttentionBlock`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AttentionBlockConfig {
    /// Width of the token stream `x`.
    pub dim: i64,
    /// Width of the context tokens; `None` = self-attention.
    pub context_dim: Option<i64>,
    /// Attention heads.
    pub heads: i64,
    /// Width of each head.
    pub head_dim: i64,
    /// RMS-normalise queries and keys per head.
    pub qk_norm: bool,
}

impl Default for AttentionBlockConfig {
    fn default() -> Self {
        Self {
            dim: 64,
            context_dim: None,
            heads: 4,
            head_dim: 16,
            qk_norm: true,
        }
    }
}

impl AttentionBlockConfig {
    /// Builds the block under `p` (`norm`, `norm_context`, `to_q`, `to_kv`, `qk`, `to_out`,
    /// `ff_norm`, `ff`).
    pub fn build(&self, p: nn::Path<'_>) -> Result<AttentionBlock> {
        const C: &str = "AttentionBlockConfig";
        ensure_at_least(C, "dim", self.dim, 1)?;
        ensure_at_least(C, "heads", self.heads, 1)?;
        ensure_at_least(C, "head_dim", self.head_dim, 1)?;
        if let Some(c) = self.context_dim {
            ensure_at_least(C, "context_dim", c, 1)?;
        }
        let inner = self.heads * self.head_dim;
        let ctx = self.context_dim.unwrap_or(self.dim);
        let no_bias = |fan_in, fan_out, gain| nn::LinearConfig {
            ws_init: xavier_uniform(fan_in, fan_out, gain),
            bs_init: None,
            bias: false,
        };
        let gain = std::f64::consts::FRAC_1_SQRT_2;
        Ok(AttentionBlock {
            norm: nn::layer_norm(&p / "norm", vec![self.dim], Default::default()),
            norm_context: self
                .context_dim
                .map(|c| nn::layer_norm(&p / "norm_context", vec![c], Default::default())),
            to_q: nn::linear(&p / "to_q", self.dim, inner, no_bias(self.dim, inner, gain)),
            to_kv: nn::linear(&p / "to_kv", ctx, 2 * inner, no_bias(ctx, 2 * inner, gain)),
            to_out: nn::linear(
                &p / "to_out",
                inner,
                self.dim,
                nn::LinearConfig {
                    ws_init: xavier_uniform(inner, self.dim, 1.0),
                    bs_init: Some(nn::Init::Const(0.0)),
                    bias: true,
                },
            ),
            qk: self
                .qk_norm
                .then(|| QkNorm::new(&(&p / "qk"), self.head_dim)),
            ff_norm: nn::layer_norm(&p / "ff_norm", vec![self.dim], Default::default()),
            ff: Mlp::new(
                &(&p / "ff"),
                &[self.dim, self.dim, self.dim],
                Activation::Gelu,
                false,
                None,
            ),
            config: self.clone(),
        })
    }
}

/// A pre-norm transformer block: attention (self or cross, RMS qk-norm) then a GELU
/// feed-forward, each residual.
#[derive(Debug)]
pub struct AttentionBlock {
    norm: nn::LayerNorm,
    norm_context: Option<nn::LayerNorm>,
    to_q: nn::Linear,
    to_kv: nn::Linear,
    to_out: nn::Linear,
    qk: Option<QkNorm>,
    ff_norm: nn::LayerNorm,
    ff: Mlp,
    config: AttentionBlockConfig,
}

impl AttentionBlock {
    /// The block applied to `x` attending to `context` (cross-attention; required exactly when
    /// built with a `context_dim`).
    ///
    /// # Shapes
    /// `x: [B, Lq, dim]`, `context: [B, Lk, context_dim]` → `[B, Lq, dim]`.
    pub fn f_forward(&self, x: &Tensor, context: Option<&Tensor>) -> Result<Tensor> {
        const OP: &str = "AttentionBlock::forward";
        let c = &self.config;
        check_shape(OP, "x", x, &[None, None, Some(c.dim)])?;
        let h = x.apply(&self.norm);
        let ctx = match (context, &self.norm_context) {
            (Some(ctx), Some(norm)) => {
                check_shape(
                    OP,
                    "context",
                    ctx,
                    &[Some(x.size()[0]), None, c.context_dim],
                )?;
                ctx.apply(norm)
            }
            (None, None) => h.shallow_clone(),
            (Some(_), None) => {
                return Err(crate::Error::Input {
                    op: OP,
                    reason: "a self-attention block got a context".into(),
                });
            }
            (None, Some(_)) => {
                return Err(crate::Error::Input {
                    op: OP,
                    reason: "a cross-attention block needs a context".into(),
                });
            }
        };
        let q = split_heads(&h.apply(&self.to_q), c.heads);
        let kv = ctx.apply(&self.to_kv).chunk(2, -1);
        let (k, v) = (split_heads(&kv[0], c.heads), split_heads(&kv[1], c.heads));
        let (q, k) = match &self.qk {
            Some(n) => n.apply(&q, &k),
            None => (q, k),
        };
        let x = x + merge_heads(&sdpa(&q, &k, &v)).apply(&self.to_out);
        Ok(&x + self.ff.forward(&x.apply(&self.ff_norm)))
    }

    /// [`f_forward`](Self::f_forward), panicking on its errors.
    ///
    /// # Shapes
    /// As [`f_forward`](Self::f_forward).
    pub fn forward(&self, x: &Tensor, context: Option<&Tensor>) -> Tensor {
        self.f_forward(x, context).unwrap_or_else(|e| panic!("{e}"))
    }
}

/// Rotary position encodings of head width `d` (even) with base `θ`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rope {
    head_dim: i64,
    theta: f64,
}

impl Rope {
    /// # Panics
    /// When `head_dim` is odd or not positive.
    pub fn new(head_dim: i64, theta: f64) -> Self {
        assert!(
            head_dim > 0 && head_dim % 2 == 0,
            "rotary encodings need an even head width, got {head_dim}"
        );
        Self { head_dim, theta }
    }

    /// `(cos, sin)` of the angles `p·θ^(−2i/d)` for positions `p = 0..positions`.
    ///
    /// # Shapes
    /// → two `[positions, d/2]` tensors, of `kind` on `device`.
    pub fn angles(&self, positions: i64, (kind, device): (Kind, tch::Device)) -> (Tensor, Tensor) {
        let half = self.head_dim / 2;
        let i = Tensor::arange(half, (Kind::Double, device));
        let omega = (i * (-2.0 * self.theta.ln() / self.head_dim as f64)).exp();
        let p = Tensor::arange(positions, (Kind::Double, device));
        let a = p.unsqueeze(1) * omega.unsqueeze(0);
        (a.cos().to_kind(kind), a.sin().to_kind(kind))
    }

    /// Rotates channel pairs `(2i, 2i+1)` of `x` at position `p` (the second-last axis) by the
    /// angles of [`angles`](Self::angles).
    ///
    /// # Shapes
    /// `x: [.., P, d]`, `cos, sin: [P, d/2]` → `[.., P, d]`.
    pub fn apply(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Tensor {
        let s = x.size();
        let mut pairs = s.clone();
        let d = pairs.pop().expect("rope: x needs an axis");
        pairs.extend([d / 2, 2]);
        let xp = x.view(pairs.as_slice());
        let (x0, x1) = (xp.select(-1, 0), xp.select(-1, 1));
        let out0 = &x0 * cos - &x1 * sin;
        let out1 = &x0 * sin + &x1 * cos;
        Tensor::stack(&[out0, out1], -1).view(s.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{Draws, F64, model_lock};
    use tch::nn::VarStore;

    #[test]
    fn rms_norm_has_unit_root_mean_square() {
        let mut d = Draws::new(1);
        let x = d.normal(&[5, 8]) * 3.0;
        let y = rms_norm(&x, &Tensor::ones([8], F64));
        let rms = y
            .square()
            .mean_dim(&[-1i64][..], false, Kind::Double)
            .sqrt();
        assert!(rms.allclose(&Tensor::ones([5], F64), 1e-5, 1e-5, false));
    }

    #[test]
    fn rope_scores_depend_on_relative_position_only() {
        let rope = Rope::new(8, 100.0);
        let mut d = Draws::new(2);
        let (q, k) = (d.normal(&[1, 8]), d.normal(&[1, 8]));
        let (cos, sin) = rope.angles(12, F64);
        let at = |x: &Tensor, p: i64| {
            Rope::apply(&x.expand([12, 8], true).contiguous(), &cos, &sin).get(p)
        };
        let score = |p, s| at(&q, p).dot(&at(&k, s)).double_value(&[]);
        assert!((score(3, 1) - score(9, 7)).abs() < 1e-9);
        assert!((score(0, 0) - q.get(0).dot(&k.get(0)).double_value(&[])).abs() < 1e-9);
        // rotations keep norms
        let n = at(&q, 5).norm().double_value(&[]);
        assert!((n - q.norm().double_value(&[])).abs() < 1e-9);
    }

    #[test]
    fn self_attention_is_permutation_equivariant_and_cross_attention_invariant_to_context_order() {
        let _g = model_lock(3);
        let vs = VarStore::new(tch::Device::Cpu);
        let sa = AttentionBlockConfig {
            dim: 12,
            heads: 3,
            head_dim: 4,
            ..Default::default()
        }
        .build(vs.root() / "sa")
        .unwrap();
        let ca = AttentionBlockConfig {
            dim: 12,
            context_dim: Some(6),
            heads: 2,
            head_dim: 5,
            qk_norm: false,
        }
        .build(vs.root() / "ca")
        .unwrap();
        let mut vs = vs;
        vs.double();
        let mut d = Draws::new(4);
        let (x, c) = (d.normal(&[2, 7, 12]), d.normal(&[2, 5, 6]));
        let perm = Tensor::from_slice(&[3i64, 0, 6, 1, 5, 2, 4]);
        let y = sa.forward(&x, None);
        let yp = sa.forward(&x.index_select(1, &perm), None);
        assert!(yp.allclose(&y.index_select(1, &perm), 1e-10, 1e-10, false));
        let cperm = Tensor::from_slice(&[4i64, 2, 0, 1, 3]);
        let z = ca.forward(&x, Some(&c));
        let zp = ca.forward(&x, Some(&c.index_select(1, &cperm)));
        assert!(zp.allclose(&z, 1e-10, 1e-10, false));
        assert!(sa.f_forward(&x, Some(&c)).is_err());
        assert!(ca.f_forward(&x, None).is_err());
        assert!(sa.f_forward(&c, None).is_err());
    }
}
