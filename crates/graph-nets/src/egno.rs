//! The Equivariant Graph Neural Operator decoder (Xu, Han, Lou, Kossaifi, Ramanathan,
//! Azizzadenesheli, Leskovec, Ermon & Anandkumar, ICML 2024), with SGDD's per-node, per-frame
//! conditioning.

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor, nn};

use crate::batch::GraphBatch;
use crate::egnn::{EgnnLayer, EgnnLayerConfig, check_edge_attr};
use crate::error::{Error, Result, check_kind, check_shape, ensure_at_least};
use crate::fourier::{
    EquivariantTimeConv, EquivariantTimeConvConfig, SpectralTimeConv, SpectralTimeConvConfig,
};
use crate::mlp::Activation;

/// The initial state `G_0` of a batch of particle systems: what the student encoder and the
/// decoder read.
#[derive(Debug, Clone, Copy)]
pub struct InitialState<'a> {
    /// `[N_total, 3]` positions `x_0`.
    pub x: &'a Tensor,
    /// `[N_total, 3]` velocities `v_0`, for models built `with_velocity`.
    pub v: Option<&'a Tensor>,
    /// `[N_total, F]` invariant node features (atom types, charges, masses, …).
    pub h: &'a Tensor,
    /// The batched graph.
    pub graph: &'a GraphBatch,
    /// `[E, edge_dim]` invariant edge attributes (bond types, hop counts, initial distances …),
    /// for models built with `edge_dim > 0`.
    pub edge_attr: Option<&'a Tensor>,
}

impl InitialState<'_> {
    /// Checks the shapes against the graph, `F = node_in` and the velocity/edge settings.
    pub(crate) fn check(
        &self,
        op: &'static str,
        node_in: i64,
        with_velocity: bool,
        edge_dim: i64,
        kind: Kind,
    ) -> Result<()> {
        let n = Some(self.graph.num_nodes());
        check_shape(op, "x", self.x, &[n, Some(3)])?;
        check_kind(op, "x", self.x, kind)?;
        check_shape(op, "h", self.h, &[n, Some(node_in)])?;
        check_kind(op, "h", self.h, kind)?;
        check_velocity(op, self.v, with_velocity, &[n, Some(3)])?;
        if self.x.device() != self.graph.device() {
            return Err(Error::Input {
                op,
                reason: format!(
                    "x is on {:?}, the graph on {:?}",
                    self.x.device(),
                    self.graph.device()
                ),
            });
        }
        check_edge_attr(op, self.edge_attr, edge_dim, self.graph.num_edges())
    }
}

/// Checks an optional velocity input against the configuration.
pub(crate) fn check_velocity(
    op: &'static str,
    v: Option<&Tensor>,
    with_velocity: bool,
    shape: &[Option<i64>],
) -> Result<()> {
    match (v, with_velocity) {
        (Some(v), true) => check_shape(op, "v", v, shape),
        (None, false) => Ok(()),
        (Some(_), false) => Err(Error::Input {
            op,
            reason: "velocities given to a model built without `with_velocity`".into(),
        }),
        (None, true) => Err(Error::Input {
            op,
            reason: "the model was built `with_velocity` but got no velocities".into(),
        }),
    }
}

/// Checks a decoder's optional conditioning `z_cond` (`[T, N, d]` or flattened `[T·N, d]`)
/// against its `cond_dim = d` and returns it as `[T, N, d]`.
pub(crate) fn check_cond(
    op: &'static str,
    z_cond: Option<&Tensor>,
    cond_dim: i64,
    t: i64,
    n: i64,
    kind: Kind,
) -> Result<Option<Tensor>> {
    match (z_cond, cond_dim) {
        (None, _) => Ok(None),
        (Some(z), 0) => Err(Error::Input {
            op,
            reason: format!(
                "conditioning of shape {:?} given to a decoder built with cond_dim = 0",
                z.size()
            ),
        }),
        (Some(z), d) => {
            if z.dim() == 2 {
                check_shape(op, "z_cond", z, &[Some(t * n), Some(d)])?;
            } else {
                check_shape(op, "z_cond", z, &[Some(t), Some(n), Some(d)])?;
            }
            check_kind(op, "z_cond", z, kind)?;
            Ok(Some(z.view([t, n, d])))
        }
    }
}

/// The sinusoidal embedding of frame indices `t = 0..frames` (Transformer / DDPM style, as EGNO):
/// [`sinusoidal_embedding`] of `0, 1, …, frames − 1`.
///
/// # Shapes
/// → `[frames, dim]`.
///
/// # Panics
/// When `dim < 4`.
#[track_caller]
pub fn sinusoidal_time_embedding(frames: i64, dim: i64, options: (Kind, tch::Device)) -> Tensor {
    sinusoidal_embedding(&Tensor::arange(frames, options), dim)
}

/// The sinusoidal embedding of arbitrary (real) times `t`: `[sin(t·ω_k), cos(t·ω_k)]` with
/// `ω_k = 10000^{−k/(dim/2 − 1)}`, `k < dim/2`, zero-padded to an odd `dim` (EGNO's frame
/// embedding; GF-NODE's `get_timestep_embedding` of its target frames).
///
/// # Shapes
/// `times: [*]` → `[*, dim]`, in the kind of `times`.
///
/// # Panics
/// When `dim < 4`.
#[track_caller]
pub fn sinusoidal_embedding(times: &Tensor, dim: i64) -> Tensor {
    assert!(dim >= 4, "sinusoidal_embedding: dim must be ≥ 4, got {dim}");
    let half = dim / 2;
    let step = (10000f64).ln() / (half - 1) as f64;
    let freqs = (Tensor::arange(half, (times.kind(), times.device())) * -step).exp();
    let angles = times.unsqueeze(-1) * freqs;
    let emb = Tensor::cat(&[angles.sin(), angles.cos()], -1);
    if dim % 2 == 1 {
        emb.constant_pad_nd([0, 1])
    } else {
        emb
    }
}

/// Settings of the [`Egno`] decoder. The defaults are EGNO's MD17 settings with the temporal
/// convolution switched on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EgnoConfig {
    /// Invariant node features `F` of the initial state.
    pub node_in: i64,
    /// Edge attribute width (0: none).
    pub edge_dim: i64,
    /// Hidden width `H`.
    pub hidden: i64,
    /// Number of (temporal convolution + EGNN) layers.
    pub layers: i64,
    /// Predicted frames `T`.
    pub horizon: i64,
    /// Temporal Fourier modes of each temporal convolution.
    pub num_modes: i64,
    /// Width of the sinusoidal frame embedding (≥ 4).
    pub time_emb_dim: i64,
    /// Apply the Fourier temporal convolutions (the public EGNO MD17 script turns them off;
    /// here they are on by default).
    pub time_conv: bool,
    /// Read and predict velocities.
    pub with_velocity: bool,
    /// Width `d` of the conditioning `z_cond` (SGDD's `z^sg`); 0 for plain EGNO.
    pub cond_dim: i64,
    /// Non-linearity of the EGNN MLPs.
    pub activation: Activation,
    /// Non-linearity after the feature temporal convolution.
    pub time_conv_activation: Activation,
    /// See [`EgnnLayerConfig::coord_clamp`].
    pub coord_clamp: Option<f64>,
}

impl Default for EgnoConfig {
    fn default() -> Self {
        Self {
            node_in: 1,
            edge_dim: 0,
            hidden: 64,
            layers: 5,
            horizon: 8,
            num_modes: 2,
            time_emb_dim: 32,
            time_conv: true,
            with_velocity: true,
            cond_dim: 0,
            activation: Activation::Silu,
            time_conv_activation: Activation::LeakyRelu,
            coord_clamp: Some(100.0),
        }
    }
}

impl EgnoConfig {
    /// Validates the settings.
    ///
    /// # Errors
    /// A non-positive size, `time_emb_dim < 4`, or an invalid `coord_clamp`.
    pub fn check(&self) -> Result<()> {
        const C: &str = "EgnoConfig";
        ensure_at_least(C, "node_in", self.node_in, 0)?;
        ensure_at_least(C, "hidden", self.hidden, 1)?;
        ensure_at_least(C, "layers", self.layers, 1)?;
        ensure_at_least(C, "horizon", self.horizon, 1)?;
        ensure_at_least(C, "num_modes", self.num_modes, 1)?;
        ensure_at_least(C, "time_emb_dim", self.time_emb_dim, 4)?;
        ensure_at_least(C, "cond_dim", self.cond_dim, 0)?;
        self.egnn().check()
    }

    fn egnn(&self) -> EgnnLayerConfig {
        EgnnLayerConfig {
            hidden: self.hidden,
            edge_dim: self.edge_dim,
            with_velocity: self.with_velocity,
            coord_clamp: self.coord_clamp,
            activation: self.activation,
            style: crate::egnn::EgnnStyle::Egno,
        }
    }

    /// Creates the decoder's variables under `p`: `embed`, and per layer `i`
    /// `layers.i.{egnn, time_conv_h, time_conv_x}`.
    ///
    /// # Errors
    /// As [`EgnoConfig::check`].
    pub fn build(&self, p: nn::Path<'_>) -> Result<Egno> {
        self.check()?;
        let embed = crate::mlp::linear(
            &p / "embed",
            self.node_in + self.time_emb_dim + self.cond_dim,
            self.hidden,
            true,
        );
        let vectors = if self.with_velocity { 2 } else { 1 };
        let layers = (0..self.layers)
            .map(|i| {
                let q = &p / "layers" / i;
                let time_conv = if self.time_conv {
                    let h = SpectralTimeConvConfig {
                        channels: self.hidden,
                        num_modes: self.num_modes,
                        activation: self.time_conv_activation,
                    }
                    .build(&q / "time_conv_h")?;
                    let x = EquivariantTimeConvConfig {
                        vectors,
                        num_modes: self.num_modes,
                    }
                    .build(&q / "time_conv_x")?;
                    Some((h, x))
                } else {
                    None
                };
                Ok(EgnoLayer {
                    time_conv,
                    egnn: self.egnn().build(&q / "egnn")?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Egno {
            cfg: self.clone(),
            embed,
            layers,
        })
    }
}

/// The input of the last layer's EGNN (see `Egno::trunk`).
struct Trunk {
    x: Tensor,
    h: Tensor,
    v: Option<Tensor>,
    frames: GraphBatch,
    edge_attr: Option<Tensor>,
}

#[derive(Debug)]
struct EgnoLayer {
    time_conv: Option<(SpectralTimeConv, EquivariantTimeConv)>,
    egnn: EgnnLayer,
}

/// What [`Egno`] and [`GfNode`](crate::GfNode) predict.
#[derive(Debug)]
pub struct EgnoOutput {
    /// `[T, N_total, 3]` positions of frames `1..=T`.
    pub x: Tensor,
    /// `[T, N_total, 3]` velocities, for a decoder built `with_velocity`.
    pub v: Option<Tensor>,
    /// `[T, N_total, H]` final invariant features (`H` the decoder's width).
    pub h: Tensor,
}

/// The EGNO decoder: predicts the `T` future frames of every node at once.
///
/// 1. The initial state is copied to `T` frames; frame `t` (`t = 0..T`, predicting `x_{t+1}`)
///    gets `[h_0, time_emb(t), z_cond[t]]`, embedded linearly to width `H`.
/// 2. Per layer: (optionally) the Fourier temporal convolutions — [`SpectralTimeConv`] on `h`
///    and [`EquivariantTimeConv`] on `[x − centroid(x_0), v]`, centroid added back — then an
///    [`EgnnLayer`] on the graph of `T` disconnected copies ([`GraphBatch::repeat_frames`]).
///
/// Positions and velocities are E(3)-equivariant functions of `(x_0, v_0)` (the centroid is
/// per graph), since `h_0`, the edge attributes and `z_cond` are invariant.
///
/// In the first layer the vectors are the same in every frame, so its vector convolution sees
/// only the zero frequency (a real coefficient): there it scales `[x − centroid, v]` by the real
/// weights, and its imaginary weights receive no gradient (as in EGNO).
///
/// **Conditioning.** With `cond_dim = d > 0`, `z_cond` enters the input embedding. `None` means
/// `z_cond = 0`, which is exactly plain EGNO (the conditioning weights then multiply zeros).
#[derive(Debug)]
pub struct Egno {
    cfg: EgnoConfig,
    embed: nn::Linear,
    layers: Vec<EgnoLayer>,
}

impl Egno {
    /// The settings it was built with.
    pub fn config(&self) -> &EgnoConfig {
        &self.cfg
    }

    /// Validating forward pass.
    ///
    /// # Shapes
    /// - `state`: see [`InitialState`] (`x`, `v`: `[N_total, 3]`, `h`: `[N_total, node_in]`);
    /// - `z_cond`: `[T, N_total, d]`, or flattened `[T·N_total, d]` with row `t·N_total + n`
    ///   (the batched layout: graphs concatenated along the node axis within each frame — build
    ///   it from per-graph `[T·N_g, d]` SGE outputs with [`GraphBatch::f_cat_frames`]);
    /// - returns [`EgnoOutput`]: `x`, `v`: `[T, N_total, 3]`, `h`: `[T, N_total, H]`.
    ///
    /// # Errors
    /// A wrong shape or kind, a missing/unexpected optional input, or `z_cond` given to a
    /// decoder built with `cond_dim = 0`.
    pub fn f_forward(
        &self,
        state: &InitialState<'_>,
        z_cond: Option<&Tensor>,
    ) -> Result<EgnoOutput> {
        let z = self.check_inputs("Egno::forward", state, z_cond)?;
        Ok(self.forward_unchecked(state, z.as_ref()))
    }

    /// Checks the inputs of a forward pass (see [`Egno::f_forward`]); `z_cond` as `[T, N, d]`.
    fn check_inputs(
        &self,
        op: &'static str,
        state: &InitialState<'_>,
        z_cond: Option<&Tensor>,
    ) -> Result<Option<Tensor>> {
        let cfg = &self.cfg;
        state.check(
            op,
            cfg.node_in,
            cfg.with_velocity,
            cfg.edge_dim,
            self.embed.ws.kind(),
        )?;
        let (t, n) = (cfg.horizon, state.graph.num_nodes());
        check_cond(op, z_cond, cfg.cond_dim, t, n, self.embed.ws.kind())
    }

    /// Forward pass; see [`Egno::f_forward`] for the shapes.
    ///
    /// # Panics
    /// Where [`Egno::f_forward`] returns an error.
    #[track_caller]
    pub fn forward(&self, state: &InitialState<'_>, z_cond: Option<&Tensor>) -> EgnoOutput {
        self.f_forward(state, z_cond)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Every layer but the last layer's EGNN: the input that layer reads.
    fn trunk(&self, s: &InitialState<'_>, z: Option<&Tensor>) -> Trunk {
        let cfg = &self.cfg;
        let (t, n, hid) = (cfg.horizon, s.graph.num_nodes(), cfg.hidden);
        let opts = (s.x.kind(), s.x.device());

        let temb = sinusoidal_time_embedding(t, cfg.time_emb_dim, opts);
        let mut inputs = vec![
            s.h.unsqueeze(0).expand([t, n, cfg.node_in], false),
            temb.unsqueeze(1).expand([t, n, cfg.time_emb_dim], false),
        ];
        if cfg.cond_dim > 0 {
            inputs.push(z.map_or_else(
                || Tensor::zeros([t, n, cfg.cond_dim], opts),
                Tensor::shallow_clone,
            ));
        }
        let mut h = Tensor::cat(&inputs, -1)
            .view([t * n, -1])
            .apply(&self.embed);

        let centroid = s.graph.graph_mean_per_node(s.x).repeat([t, 1]);
        let mut x = s.x.repeat([t, 1]);
        let mut v = s.v.map(|v| v.repeat([t, 1]));
        let frames = s.graph.repeat_frames(t);
        let edge_attr = s.edge_attr.map(|e| e.repeat([t, 1]));

        let last = self.layers.len() - 1;
        for (i, layer) in self.layers.iter().enumerate() {
            if let Some((conv_h, conv_x)) = &layer.time_conv {
                h = conv_h
                    .forward_unchecked(&h.view([t, n, hid]))
                    .view([t * n, hid]);
                let centred = &x - &centroid;
                let stacked = match &v {
                    Some(v) => Tensor::stack(&[&centred, v], -1),
                    None => centred.unsqueeze(-1),
                };
                let k = stacked.size()[2];
                let out = conv_x.forward_unchecked(&stacked.view([t, n, 3, k]));
                x = out.select(3, 0).reshape([t * n, 3]) + &centroid;
                if v.is_some() {
                    v = Some(out.select(3, 1).reshape([t * n, 3]));
                }
            }
            if i < last {
                let next =
                    layer
                        .egnn
                        .forward_unchecked(&x, &h, v.as_ref(), &frames, edge_attr.as_ref());
                (x, h, v) = (next.x, next.h, next.v);
            }
        }
        Trunk {
            x,
            h,
            v,
            frames,
            edge_attr,
        }
    }

    /// The decoder's predicted positions as a linear function of the last weights of its last
    /// layer's coordinate heads (seed 002's closed-form readout, see
    /// [`EgnnLayer::set_readout`](crate::EgnnLayer::set_readout)):
    /// `x = base + feats · θ`, exact while the last layer's coordinate clamp does not bind.
    ///
    /// # Shapes
    /// As [`Egno::f_forward`] → `base: [T, N_total, 3]`, `feats: [T, N_total, 3, P]`,
    /// `P` = [`Egno::readout_width`].
    ///
    /// # Errors
    /// As [`Egno::f_forward`].
    pub fn f_readout_rows(
        &self,
        state: &InitialState<'_>,
        z_cond: Option<&Tensor>,
    ) -> Result<(Tensor, Tensor)> {
        let z = self.check_inputs("Egno::readout_rows", state, z_cond)?;
        let (t, n) = (self.cfg.horizon, state.graph.num_nodes());
        let k = self.trunk(state, z.as_ref());
        let last = &self.layers[self.layers.len() - 1].egnn;
        let (base, feats) =
            last.readout_rows_unchecked(&k.x, &k.h, k.v.as_ref(), &k.frames, k.edge_attr.as_ref());
        Ok((base.view([t, n, 3]), feats.view([t, n, 3, -1])))
    }

    /// `P`, the weights of the last layer's coordinate heads that [`Egno::f_readout_rows`]
    /// is linear in.
    pub fn readout_width(&self) -> i64 {
        self.layers[self.layers.len() - 1].egnn.readout_width()
    }

    /// Loads `θ` (`[P]`) into the last layer's coordinate heads (see
    /// [`Egno::f_readout_rows`]).
    ///
    /// # Errors
    /// `θ` not of `P` values.
    pub fn set_readout(&self, theta: &Tensor) -> Result<()> {
        self.layers[self.layers.len() - 1].egnn.set_readout(theta)
    }

    fn forward_unchecked(&self, s: &InitialState<'_>, z: Option<&Tensor>) -> EgnoOutput {
        let (t, n, hid) = (self.cfg.horizon, s.graph.num_nodes(), self.cfg.hidden);
        let k = self.trunk(s, z);
        let last = &self.layers[self.layers.len() - 1].egnn;
        let next =
            last.forward_unchecked(&k.x, &k.h, k.v.as_ref(), &k.frames, k.edge_attr.as_ref());
        let (x, h, v) = (next.x, next.h, next.v);
        EgnoOutput {
            x: x.view([t, n, 3]),
            v: v.map(|v| v.view([t, n, 3])),
            h: h.view([t, n, hid]),
        }
    }
}
