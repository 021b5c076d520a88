//! Stage 1 of LaM-SLidE (seed 004, §3.2): the codec between a set of `N` entities and a fixed
//! set of `L` latent tokens of width `D`.
//!
//! **Encoder.** Each entity `i` becomes a token `c_i = MLP([φ(x_i), τ(a_i), e_{π(i)}])`: the
//! position features `φ` (sines and cosines of `2^k·π·x` beside `x`, then a linear layer), the
//! type embedding `τ` (merged with `φ` by an MLP), and its identifier embedding `e_{π(i)}`
//! ([`IdentifierPool`]). `L` learned latent queries cross-attend to the entity tokens, then
//! self-attend; a bottleneck `z = LN(W h)` (layer norm without affine parameters) gives the
//! latent set `z ∈ R^{L×D}`. Cross-attention over the entities makes `z` independent of their
//! order: only the identifiers tell them apart.
//!
//! **Decoder.** `h = W' LN(z)`, self-attention over the `L` tokens, then each identifier
//! `e_{π(i)}` (through a linear layer) queries the latents by cross-attention; one MLP head per
//! output: positions `x̂_i ∈ R³` and type logits (cross-entropy).
//!
//! **Losses** ([`CodecLoss`]): position MSE, inter-distance MSE (`‖x̂_i − x̂_j‖` against
//! `‖x_i − x_j‖` over all pairs), type cross-entropy, with configurable weights (the authors'
//! MD17 weights 1 / 1 / 0.1). Trained on single frames under random rigid motions
//! ([`augment_rigid`]).

use graph_nets::{Activation, Mlp, linear};
use serde::{Deserialize, Serialize};
use tch::{Kind, Reduction, Tensor, nn};

use crate::attention::{AttentionBlock, AttentionBlockConfig};
use crate::error::{Error, Result, check_shape, ensure_at_least, ensure_in};
use crate::ids::{IdentifierPool, IdentifierPoolConfig};
use crate::random::{Purpose, random_rotation};

/// The weights of the codec's loss terms.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CodecLossWeights {
    /// Position MSE.
    pub position: f64,
    /// Inter-distance MSE.
    pub inter_distance: f64,
    /// Type cross-entropy (ignored without types).
    pub types: f64,
}

impl Default for CodecLossWeights {
    /// The authors' MD17 weights: 1 / 1 / 0.1.
    fn default() -> Self {
        Self {
            position: 1.0,
            inter_distance: 1.0,
            types: 0.1,
        }
    }
}

/// Settings of a [`Codec`]. `Default` is a small codec for CPU training; the authors' MD17
/// sizes are `latents = 192`, `latent_dim = 32`, `ids.dim = 128`, `query_dim = 128`,
/// `heads_cross = 8`, `heads_latent = 2`, `head_dim = 16`, `input_dim = 128`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CodecConfig {
    /// The identifier pool shared by encoder and decoder.
    pub ids: IdentifierPoolConfig,
    /// Number of entity types (`0`: the entities carry no type; no type head).
    pub num_types: i64,
    /// Width of the type embedding.
    pub type_dim: i64,
    /// Frequencies `2^k·π`, `k = 0..pos_frequencies`, of the position features, per axis.
    pub pos_frequencies: i64,
    /// Width of the position features.
    pub pos_dim: i64,
    /// Width of an entity's merged position and type features.
    pub input_dim: i64,
    /// `L`, the number of latent tokens.
    pub latents: i64,
    /// `D`, the width of a latent token.
    pub latent_dim: i64,
    /// Width of the decoder's identifier queries.
    pub query_dim: i64,
    /// Heads of the cross-attention blocks (entities ↔ latents).
    pub heads_cross: i64,
    /// Heads of the self-attention blocks over the latents.
    pub heads_latent: i64,
    /// Width of each head.
    pub head_dim: i64,
    /// Encoder: cross-attention blocks (latents ← entities).
    pub encoder_cross_blocks: i64,
    /// Encoder: self-attention blocks over the latents.
    pub encoder_self_blocks: i64,
    /// Decoder: self-attention blocks over the latents.
    pub decoder_self_blocks: i64,
    /// Decoder: cross-attention blocks latents ← identifier queries, before the output block.
    pub decoder_cross_blocks: i64,
    /// RMS qk-normalisation in every attention.
    pub qk_norm: bool,
    /// The loss weights.
    pub loss: CodecLossWeights,
}

impl Default for CodecConfig {
    fn default() -> Self {
        Self {
            ids: IdentifierPoolConfig::default(),
            num_types: 0,
            type_dim: 16,
            pos_frequencies: 6,
            pos_dim: 64,
            input_dim: 64,
            latents: 16,
            latent_dim: 16,
            query_dim: 64,
            heads_cross: 4,
            heads_latent: 2,
            head_dim: 16,
            encoder_cross_blocks: 1,
            encoder_self_blocks: 1,
            decoder_self_blocks: 1,
            decoder_cross_blocks: 0,
            qk_norm: true,
            loss: CodecLossWeights::default(),
        }
    }
}

impl CodecConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        const C: &str = "CodecConfig";
        self.ids.validate()?;
        ensure_at_least(C, "num_types", self.num_types, 0)?;
        for (field, v) in [
            ("type_dim", self.type_dim),
            ("pos_dim", self.pos_dim),
            ("input_dim", self.input_dim),
            ("latents", self.latents),
            ("latent_dim", self.latent_dim),
            ("query_dim", self.query_dim),
            ("heads_cross", self.heads_cross),
            ("heads_latent", self.heads_latent),
            ("head_dim", self.head_dim),
        ] {
            ensure_at_least(C, field, v, 1)?;
        }
        ensure_at_least(C, "pos_frequencies", self.pos_frequencies, 0)?;
        ensure_at_least(C, "encoder_cross_blocks", self.encoder_cross_blocks, 1)?;
        for (field, v) in [
            ("encoder_self_blocks", self.encoder_self_blocks),
            ("decoder_self_blocks", self.decoder_self_blocks),
            ("decoder_cross_blocks", self.decoder_cross_blocks),
        ] {
            ensure_at_least(C, field, v, 0)?;
        }
        for (field, w) in [
            ("loss.position", self.loss.position),
            ("loss.inter_distance", self.loss.inter_distance),
            ("loss.types", self.loss.types),
        ] {
            ensure_in(C, field, w, 0.0, f64::MAX)?;
        }
        Ok(())
    }

    /// Builds the codec under `p` (`ids`, `encoder`, `decoder`).
    pub fn build(&self, p: nn::Path<'_>) -> Result<Codec> {
        self.validate()?;
        let ids = self.ids.build(&p / "ids")?;
        let e = &p / "encoder";
        let d = &p / "decoder";
        let ctx = self.input_dim + self.ids.dim;
        let block = |path: nn::Path<'_>, dim, context_dim, heads| {
            AttentionBlockConfig {
                dim,
                context_dim,
                heads,
                head_dim: self.head_dim,
                qk_norm: self.qk_norm,
            }
            .build(path)
        };
        let blocks = |path: nn::Path<'_>, n, dim, context_dim, heads| {
            (0..n)
                .map(|i| block(&path / i, dim, context_dim, heads))
                .collect::<Result<Vec<_>>>()
        };
        let gelu = Activation::Gelu;
        let pos_in = 6 * self.pos_frequencies + 3;
        let merge_in = self.pos_dim + if self.num_types > 0 { self.type_dim } else { 0 };
        let encoder = Encoder {
            type_embed: (self.num_types > 0).then(|| {
                nn::embedding(
                    &e / "type_embed",
                    self.num_types,
                    self.type_dim,
                    Default::default(),
                )
            }),
            pos_embed: linear(&e / "pos_embed", pos_in, self.pos_dim, true),
            merge: Mlp::new(
                &(&e / "merge"),
                &[merge_in, self.input_dim, self.input_dim],
                gelu,
                false,
                None,
            ),
            context: Mlp::new(
                &(&e / "context"),
                &[ctx, self.latent_dim, ctx],
                gelu,
                false,
                None,
            ),
            queries: e.var(
                "latents",
                &[self.latents, self.latent_dim],
                nn::Init::Randn {
                    mean: 0.0,
                    stdev: 1.0,
                },
            ),
            cross: blocks(
                &e / "cross",
                self.encoder_cross_blocks,
                self.latent_dim,
                Some(ctx),
                self.heads_cross,
            )?,
            latent: blocks(
                &e / "self",
                self.encoder_self_blocks,
                self.latent_dim,
                None,
                self.heads_latent,
            )?,
            bottleneck: linear(&e / "bottleneck", self.latent_dim, self.latent_dim, true),
        };
        let decoder = Decoder {
            unbottleneck: linear(&d / "unbottleneck", self.latent_dim, self.latent_dim, true),
            query: linear(&d / "query", self.ids.dim, self.query_dim, true),
            latent: blocks(
                &d / "self",
                self.decoder_self_blocks,
                self.latent_dim,
                None,
                self.heads_latent,
            )?,
            cross: blocks(
                &d / "cross",
                self.decoder_cross_blocks,
                self.latent_dim,
                Some(self.query_dim),
                self.heads_cross,
            )?,
            output: block(
                &d / "output",
                self.query_dim,
                Some(self.latent_dim),
                self.heads_cross,
            )?,
            position_head: Mlp::new(
                &(&d / "position_head"),
                &[self.query_dim, self.query_dim, 3],
                gelu,
                false,
                None,
            ),
            type_head: (self.num_types > 0).then(|| {
                Mlp::new(
                    &(&d / "type_head"),
                    &[self.query_dim, self.query_dim, self.num_types],
                    gelu,
                    false,
                    None,
                )
            }),
        };
        Ok(Codec {
            ids,
            encoder,
            decoder,
            config: self.clone(),
        })
    }
}

#[derive(Debug)]
struct Encoder {
    type_embed: Option<nn::Embedding>,
    pos_embed: nn::Linear,
    merge: Mlp,
    context: Mlp,
    queries: Tensor,
    cross: Vec<AttentionBlock>,
    latent: Vec<AttentionBlock>,
    bottleneck: nn::Linear,
}

#[derive(Debug)]
struct Decoder {
    unbottleneck: nn::Linear,
    query: nn::Linear,
    latent: Vec<AttentionBlock>,
    cross: Vec<AttentionBlock>,
    output: AttentionBlock,
    position_head: Mlp,
    type_head: Option<Mlp>,
}

/// What the decoder gives for each queried entity.
#[derive(Debug)]
pub struct Decoded {
    /// `[B, N, 3]`: positions.
    pub positions: Tensor,
    /// `[B, N, num_types]`: type logits (`None` without types).
    pub type_logits: Option<Tensor>,
}

/// The codec's loss and its parts (scalars).
#[derive(Debug)]
pub struct CodecLoss {
    /// The weighted sum.
    pub total: Tensor,
    /// Position MSE.
    pub position: Tensor,
    /// Inter-distance MSE.
    pub inter_distance: Tensor,
    /// Type cross-entropy (`None` without types).
    pub types: Option<Tensor>,
}

/// The stage-1 codec: identifier pool, encoder and decoder.
#[derive(Debug)]
pub struct Codec {
    ids: IdentifierPool,
    encoder: Encoder,
    decoder: Decoder,
    config: CodecConfig,
}

/// `[sin(2^k π x), cos(2^k π x), x]` per entity, frequencies per axis.
///
/// # Shapes
/// `x: [.., 3]` → `[.., 6F + 3]`.
fn fourier_features(x: &Tensor, frequencies: i64) -> Tensor {
    if frequencies == 0 {
        return x.shallow_clone();
    }
    let f = (Tensor::arange(frequencies, (Kind::Double, x.device())) * 2f64.ln()).exp()
        * std::f64::consts::PI;
    let proj = (x.unsqueeze(-1) * f.to_kind(x.kind())).flatten(-2, -1); // [.., 3F]
    Tensor::cat(&[proj.sin(), proj.cos(), x.shallow_clone()], -1)
}

impl Codec {
    /// The settings it was built with.
    pub fn config(&self) -> &CodecConfig {
        &self.config
    }

    /// The identifier pool.
    pub fn ids(&self) -> &IdentifierPool {
        &self.ids
    }

    fn check_entities(
        &self,
        op: &'static str,
        positions: &Tensor,
        types: Option<&Tensor>,
        ids: &Tensor,
    ) -> Result<()> {
        check_shape(op, "positions", positions, &[None, None, Some(3)])?;
        let (b, n) = (positions.size()[0], positions.size()[1]);
        check_shape(op, "ids", ids, &[Some(b), Some(n)])?;
        match (types, self.config.num_types) {
            (None, 0) => Ok(()),
            (Some(t), c) if c > 0 => {
                check_shape(op, "types", t, &[Some(b), Some(n)])?;
                check_types(op, t, c)
            }
            (Some(_), _) => Err(Error::Input {
                op,
                reason: "the codec was built without types (num_types = 0) but got types".into(),
            }),
            (None, c) => Err(Error::Input {
                op,
                reason: format!("the codec was built with {c} types but got none"),
            }),
        }
    }

    /// Encodes single frames into latent sets.
    ///
    /// # Shapes
    /// `positions: [B, N, 3]`, `types: [B, N]` int64 (with types), `ids: [B, N]` int64 →
    /// `[B, L, D]`.
    pub fn f_encode(
        &self,
        positions: &Tensor,
        types: Option<&Tensor>,
        ids: &Tensor,
    ) -> Result<Tensor> {
        self.check_entities("Codec::encode", positions, types, ids)?;
        let e = &self.encoder;
        let c = &self.config;
        let mut feats = vec![fourier_features(positions, c.pos_frequencies).apply(&e.pos_embed)];
        if let (Some(emb), Some(t)) = (&e.type_embed, types) {
            // PyTorch's `max_norm = 1` on the type embedding, as the authors'
            let mut w = emb.ws.shallow_clone();
            tch::no_grad(|| {
                let _ = w.f_embedding_renorm_(&t.flatten(0, -1), 1.0, 2.0);
            });
            feats.insert(0, t.apply(emb));
        }
        let x = e.merge.forward(&Tensor::cat(&feats, -1));
        let ctx = e
            .context
            .forward(&Tensor::cat(&[x, self.ids.f_embed(ids)?], -1));
        let b = positions.size()[0];
        let mut h = e.queries.unsqueeze(0).expand([b, -1, -1], true);
        for blk in &e.cross {
            h = blk.f_forward(&h, Some(&ctx))?;
        }
        for blk in &e.latent {
            h = blk.f_forward(&h, None)?;
        }
        Ok(h.apply(&e.bottleneck).layer_norm(
            [c.latent_dim],
            None::<Tensor>,
            None::<Tensor>,
            1e-5,
            false,
        ))
    }

    /// Decodes latent sets at the entities named by `ids`.
    ///
    /// # Shapes
    /// `z: [B, L, D]`, `ids: [B, N]` int64 → [`Decoded`] (`positions: [B, N, 3]`,
    /// `type_logits: [B, N, num_types]`).
    pub fn f_decode(&self, z: &Tensor, ids: &Tensor) -> Result<Decoded> {
        const OP: &str = "Codec::decode";
        let c = &self.config;
        check_shape(OP, "z", z, &[None, Some(c.latents), Some(c.latent_dim)])?;
        check_shape(OP, "ids", ids, &[Some(z.size()[0]), None])?;
        let d = &self.decoder;
        let queries = self.ids.f_embed(ids)?.apply(&d.query);
        let mut h = z
            .layer_norm([c.latent_dim], None::<Tensor>, None::<Tensor>, 1e-5, false)
            .apply(&d.unbottleneck);
        for blk in &d.latent {
            h = blk.f_forward(&h, None)?;
        }
        for blk in &d.cross {
            h = blk.f_forward(&h, Some(&queries))?;
        }
        let out = d.output.f_forward(&queries, Some(&h))?;
        Ok(Decoded {
            positions: d.position_head.forward(&out),
            type_logits: d.type_head.as_ref().map(|m| m.forward(&out)),
        })
    }

    /// Encode then decode.
    ///
    /// # Shapes
    /// As [`f_encode`](Self::f_encode) and [`f_decode`](Self::f_decode).
    pub fn f_reconstruct(
        &self,
        positions: &Tensor,
        types: Option<&Tensor>,
        ids: &Tensor,
    ) -> Result<Decoded> {
        let z = self.f_encode(positions, types, ids)?;
        self.f_decode(&z, ids)
    }

    /// The weighted stage-1 loss of a decoded batch against its targets.
    ///
    /// # Shapes
    /// `decoded.positions`, `positions: [B, N, 3]`; `types: [B, N]` int64 (with types).
    pub fn f_loss(
        &self,
        decoded: &Decoded,
        positions: &Tensor,
        types: Option<&Tensor>,
    ) -> Result<CodecLoss> {
        const OP: &str = "Codec::loss";
        check_shape(OP, "positions", positions, &[None, None, Some(3)])?;
        check_shape(
            OP,
            "decoded.positions",
            &decoded.positions,
            &[
                Some(positions.size()[0]),
                Some(positions.size()[1]),
                Some(3),
            ],
        )?;
        let w = self.config.loss;
        let position = position_mse(&decoded.positions, positions);
        let inter_distance = inter_distance_mse(&decoded.positions, positions);
        let mut total = &position * w.position + &inter_distance * w.inter_distance;
        let types = match (&decoded.type_logits, types) {
            (Some(logits), Some(t)) => {
                check_types(OP, t, self.config.num_types)?;
                let ce = type_cross_entropy(logits, t);
                total += &ce * w.types;
                Some(ce)
            }
            (None, None) => None,
            _ => {
                return Err(Error::Input {
                    op: OP,
                    reason: "types and type logits must be given together".into(),
                });
            }
        };
        Ok(CodecLoss {
            total,
            position,
            inter_distance,
            types,
        })
    }
}

fn check_types(op: &'static str, t: &Tensor, num_types: i64) -> Result<()> {
    if t.kind() != Kind::Int64 {
        return Err(Error::Input {
            op,
            reason: format!("types must be int64, got {:?}", t.kind()),
        });
    }
    if t.numel() > 0 {
        let (lo, hi) = (t.min().int64_value(&[]), t.max().int64_value(&[]));
        if lo < 0 || hi >= num_types {
            return Err(Error::Input {
                op,
                reason: format!("types must be in 0..{num_types}, got values in {lo}..={hi}"),
            });
        }
    }
    Ok(())
}

/// Mean squared error over entities and coordinates.
///
/// # Shapes
/// `pred`, `target`: `[.., N, 3]` → scalar.
pub fn position_mse(pred: &Tensor, target: &Tensor) -> Tensor {
    pred.mse_loss(target, Reduction::Mean)
}

/// Pairwise distances `‖x_i − x_j‖`, with a floor of 10⁻⁶ on the diagonal's square root so that
/// the gradient stays finite there (it cancels between prediction and target).
///
/// # Shapes
/// `x: [.., N, 3]` → `[.., N, N]`.
pub fn pairwise_distances(x: &Tensor) -> Tensor {
    let diff = x.unsqueeze(-2) - x.unsqueeze(-3);
    diff.square()
        .sum_dim_intlist(&[-1i64][..], false, x.kind())
        .clamp_min(1e-12)
        .sqrt()
}

/// `mean_{i,j} (‖x̂_i − x̂_j‖ − ‖x_i − x_j‖)²` over all ordered pairs (the authors'
/// `InterDistanceLoss`).
///
/// # Shapes
/// `pred`, `target`: `[.., N, 3]` → scalar.
pub fn inter_distance_mse(pred: &Tensor, target: &Tensor) -> Tensor {
    pairwise_distances(pred).mse_loss(&pairwise_distances(target), Reduction::Mean)
}

/// Mean cross-entropy of type logits against type indices.
///
/// # Shapes
/// `logits: [.., N, C]`, `types: [.., N]` int64 → scalar.
pub fn type_cross_entropy(logits: &Tensor, types: &Tensor) -> Tensor {
    let c = logits.size()[logits.dim() - 1];
    logits.reshape([-1, c]).cross_entropy_loss(
        &types.reshape([-1]),
        None::<Tensor>,
        Reduction::Mean,
        -100,
        0.0,
    )
}

/// A random rigid motion per sample — a rotation uniform on SO(3) and a Gaussian translation of
/// standard deviation `translation_std` — drawn from the stream `(seed, samples[b])` of [`Purpose::RigidMotion`]
/// and applied to every frame and entity of sample `b`: `x ↦ R x + s`.
///
/// # Shapes
/// `x: [B, .., 3]` → same.
pub fn augment_rigid(
    x: &Tensor,
    translation_std: f64,
    seed: u64,
    samples: &[u64],
) -> Result<Tensor> {
    let size = x.size();
    if size.len() < 2 || size[size.len() - 1] != 3 || size[0] != samples.len() as i64 {
        return Err(crate::error::shape_error(
            "augment_rigid",
            "x",
            format!("[{}, .., 3]", samples.len()),
            size,
        ));
    }
    let mut rot = Vec::with_capacity(samples.len() * 9);
    let mut shift = Vec::with_capacity(samples.len() * 3);
    for &s in samples {
        let mut rng = Purpose::RigidMotion.rng(seed, s);
        rot.extend(random_rotation(&mut rng).concat());
        let t = crate::random::normal(&mut rng, &[3], (Kind::Double, tch::Device::Cpu));
        shift.extend(Vec::<f64>::try_from(t * translation_std)?);
    }
    let b = samples.len() as i64;
    let opts = (x.kind(), x.device());
    let r = Tensor::from_slice(&rot)
        .view([b, 3, 3])
        .to_kind(opts.0)
        .to_device(opts.1);
    let s = Tensor::from_slice(&shift)
        .view([b, 1, 3])
        .to_kind(opts.0)
        .to_device(opts.1);
    let flat = x.reshape([b, -1, 3]);
    Ok((flat.matmul(&r.transpose(1, 2)) + s).view(size.as_slice()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{Draws, model_lock};
    use tch::{Device, nn::OptimizerConfig, nn::VarStore};

    fn tiny(num_types: i64) -> CodecConfig {
        CodecConfig {
            ids: IdentifierPoolConfig {
                size: 8,
                dim: 16,
                ..Default::default()
            },
            num_types,
            type_dim: 4,
            pos_frequencies: 2,
            pos_dim: 16,
            input_dim: 16,
            latents: 4,
            latent_dim: 8,
            query_dim: 16,
            heads_cross: 2,
            heads_latent: 2,
            head_dim: 4,
            ..Default::default()
        }
    }

    #[test]
    fn permuting_entities_permutes_the_decoded_entities() {
        let _g = model_lock(11);
        let mut vs = VarStore::new(Device::Cpu);
        let codec = tiny(3).build(vs.root()).unwrap();
        vs.double();
        let mut d = Draws::new(12);
        let x = d.normal(&[2, 6, 3]);
        let types = Tensor::from_slice(&[0i64, 1, 2, 0, 1, 2, 2, 2, 1, 0, 0, 1]).view([2, 6]);
        let ids = codec.ids().draw(6, 3, &[0, 1]).unwrap();
        let out = codec.f_reconstruct(&x, Some(&types), &ids).unwrap();
        let perm = Tensor::from_slice(&[4i64, 2, 0, 5, 1, 3]);
        let moved = codec
            .f_reconstruct(
                &x.index_select(1, &perm),
                Some(&types.index_select(1, &perm)),
                &ids.index_select(1, &perm),
            )
            .unwrap();
        let tol = 1e-10;
        assert!(
            moved
                .positions
                .allclose(&out.positions.index_select(1, &perm), tol, tol, false)
        );
        let (a, b) = (moved.type_logits.unwrap(), out.type_logits.unwrap());
        assert!(a.allclose(&b.index_select(1, &perm), tol, tol, false));
        // the latents do not depend on the entities' order at all
        let z = codec.f_encode(&x, Some(&types), &ids).unwrap();
        assert_eq!(z.size(), [2, 4, 8]);
        let zp = codec
            .f_encode(
                &x.index_select(1, &perm),
                Some(&types.index_select(1, &perm)),
                &ids.index_select(1, &perm),
            )
            .unwrap();
        assert!(zp.allclose(&z, tol, tol, false));
        // other identifiers, other decoding: the identifiers carry who is who
        let other = codec.ids().draw(6, 4, &[0, 1]).unwrap();
        let o = codec.f_decode(&z, &other).unwrap();
        assert!(!o.positions.allclose(&out.positions, 1e-3, 1e-3, false));
    }

    #[test]
    fn tiny_codec_overfits_a_tiny_set() {
        let _g = model_lock(21);
        tch::set_num_threads(1);
        let vs = VarStore::new(Device::Cpu);
        let codec = tiny(2).build(vs.root()).unwrap();
        let mut d = Draws::new(22);
        let x = d.normal(&[4, 5, 3]).to_kind(Kind::Float);
        let types = Tensor::from_slice(&[0i64, 1, 1, 0, 1]).repeat([4, 1]);
        let ids = codec.ids().draw(5, 9, &[0, 1, 2, 3]).unwrap();
        let err = || {
            tch::no_grad(|| {
                let out = codec.f_reconstruct(&x, Some(&types), &ids).unwrap();
                position_mse(&out.positions, &x).double_value(&[])
            })
        };
        let before = err();
        let mut opt = nn::AdamW::default().build(&vs, 1e-2).unwrap();
        // at most 400 steps, checked every 20 (how fast depends on the identifiers drawn)
        let mut after = before;
        for step in 1..=400 {
            let out = codec.f_reconstruct(&x, Some(&types), &ids).unwrap();
            let loss = codec.f_loss(&out, &x, Some(&types)).unwrap();
            opt.backward_step(&loss.total);
            if step % 20 == 0 {
                after = err();
                if before / after > 10.0 {
                    break;
                }
            }
        }
        assert!(before / after > 10.0, "position MSE {before} → {after}");
    }

    #[test]
    fn losses_match_slow_references() {
        let mut d = Draws::new(5);
        let (p, t) = (d.normal(&[2, 4, 3]), d.normal(&[2, 4, 3]));
        let mut sum = 0.0;
        for b in 0..2 {
            for i in 0..4 {
                for j in 0..4 {
                    let dist =
                        |x: &Tensor| (x.get(b).get(i) - x.get(b).get(j)).norm().double_value(&[]);
                    sum += (dist(&p) - dist(&t)).powi(2);
                }
            }
        }
        let fast = inter_distance_mse(&p, &t).double_value(&[]);
        assert!((fast - sum / 32.0).abs() < 1e-9, "{fast} vs {}", sum / 32.0);
        assert_eq!(inter_distance_mse(&t, &t).double_value(&[]), 0.0);
        // distances are invariant to rigid motions, positions move
        let moved = augment_rigid(&t, 2.0, 1, &[0, 1]).unwrap();
        assert!(inter_distance_mse(&moved, &t).double_value(&[]) < 1e-20);
        assert!(position_mse(&moved, &t).double_value(&[]) > 1e-3);
        // the same motion for every frame of a sample
        let frames = Tensor::stack(&[t.shallow_clone(), t.shallow_clone()], 1); // [2, 2, 4, 3]
        let mf = augment_rigid(&frames, 2.0, 1, &[0, 1]).unwrap();
        assert!(mf.select(1, 0).allclose(&moved, 1e-12, 1e-12, false));
        assert!(mf.select(1, 1).allclose(&moved, 1e-12, 1e-12, false));
        assert!(augment_rigid(&t, 1.0, 1, &[0]).is_err());
        // cross-entropy of uniform logits is ln C
        let ce = type_cross_entropy(
            &Tensor::zeros([2, 4, 3], crate::test_util::F64),
            &Tensor::zeros([2, 4], (Kind::Int64, Device::Cpu)),
        );
        assert!((ce.double_value(&[]) - 3f64.ln()).abs() < 1e-12);
    }

    #[test]
    fn bad_inputs_are_typed_errors() {
        let _g = model_lock(1);
        let vs = VarStore::new(Device::Cpu);
        let codec = tiny(2).build(vs.root()).unwrap();
        let x = Tensor::zeros([1, 3, 3], (Kind::Float, Device::Cpu));
        let ids = codec.ids().first(1, 3).unwrap();
        let bad_types = Tensor::from_slice(&[0i64, 2, 1]).view([1, 3]);
        let e = codec.f_encode(&x, Some(&bad_types), &ids).unwrap_err();
        assert!(e.to_string().contains("0..2"), "{e}");
        assert!(codec.f_encode(&x, None, &ids).is_err());
        let e = codec.f_encode(&x.narrow(2, 0, 2), None, &ids).unwrap_err();
        assert!(e.to_string().contains("positions"), "{e}");
        assert!(
            CodecConfig {
                latents: 0,
                ..tiny(0)
            }
            .build(vs.root() / "x")
            .is_err()
        );
    }
}
