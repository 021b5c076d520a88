//! A space-time-separable graph network (after Sofianos et al., "Space-Time-Separable Graph
//! Convolutional Network for Pose Forecasting", ICCV 2021), SGDD's teacher encoder `E_dyn`.

use serde::{Deserialize, Serialize};
use tch::{Tensor, nn, nn::Module};

use crate::batch::GraphBatch;
use crate::egnn::check_edge_attr;
use crate::egno::check_velocity;
use crate::error::{Error, Result, check_kind, check_shape, ensure_at_least};
use crate::gat::norm;
use crate::mlp::{Activation, Mlp, linear};

/// A trajectory of a batch of particle systems, frame 0 (the initial state) included: what the
/// teacher encoder reads.
#[derive(Debug, Clone, Copy)]
pub struct Trajectory<'a> {
    /// `[T+1, N_total, 3]` positions of frames `0..=T`.
    pub x: &'a Tensor,
    /// `[T+1, N_total, 3]` velocities, for encoders built `with_velocity`.
    pub v: Option<&'a Tensor>,
    /// `[N_total, F]` invariant node features.
    pub h: &'a Tensor,
    /// The batched graph (the same edges in every frame).
    pub graph: &'a GraphBatch,
    /// `[E, edge_dim]` invariant edge attributes, for encoders built with `edge_dim > 0`.
    pub edge_attr: Option<&'a Tensor>,
}

/// Settings of an [`Stsgnn`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StsgnnConfig {
    /// Invariant node features `F`.
    pub node_in: i64,
    /// Edge attribute width (0: none).
    pub edge_dim: i64,
    /// Read `‖v_t‖` as a node feature (the trajectory then needs velocities).
    pub with_velocity: bool,
    /// Hidden width `H`.
    pub hidden: i64,
    /// Space-time layers.
    pub layers: i64,
    /// Output width `d`.
    pub out_dim: i64,
    /// Future frames `T` (the input has `T + 1`).
    pub horizon: i64,
    /// Non-linearity of the MLPs.
    pub activation: Activation,
}

impl Default for StsgnnConfig {
    fn default() -> Self {
        Self {
            node_in: 1,
            edge_dim: 0,
            with_velocity: true,
            hidden: 64,
            layers: 3,
            out_dim: 64,
            horizon: 8,
            activation: Activation::Silu,
        }
    }
}

impl StsgnnConfig {
    /// Validates the settings.
    ///
    /// # Errors
    /// A non-positive width, layer count or horizon, or a negative input width.
    pub fn check(&self) -> Result<()> {
        const C: &str = "StsgnnConfig";
        ensure_at_least(C, "node_in", self.node_in, 0)?;
        ensure_at_least(C, "edge_dim", self.edge_dim, 0)?;
        ensure_at_least(C, "hidden", self.hidden, 1)?;
        ensure_at_least(C, "layers", self.layers, 1)?;
        ensure_at_least(C, "out_dim", self.out_dim, 1)?;
        ensure_at_least(C, "horizon", self.horizon, 1)
    }

    /// Creates `embed`, per layer `layers.i.{phi_e, phi_h, norm_s, mix, lin_t, norm_t}`, and `out`.
    ///
    /// # Errors
    /// As [`StsgnnConfig::check`].
    pub fn build(&self, p: nn::Path<'_>) -> Result<Stsgnn> {
        self.check()?;
        let (h, act, frames) = (self.hidden, self.activation, self.horizon + 1);
        let node_feats = self.node_in + 2 + i64::from(self.with_velocity);
        let embed = linear(&p / "embed", node_feats, h, true);
        let layers = (0..self.layers)
            .map(|i| {
                let q = &p / "layers" / i;
                StLayer {
                    phi_e: Mlp::new(
                        &(&q / "phi_e"),
                        &[2 * h + 1 + self.edge_dim, h, h],
                        act,
                        true,
                        None,
                    ),
                    phi_h: Mlp::new(&(&q / "phi_h"), &[2 * h, h, h], act, false, None),
                    norm_s: nn::layer_norm(&q / "norm_s", vec![h], Default::default()),
                    // Starts as the identity: frames are first processed apart, and learn to mix.
                    mix: q.var_copy("mix", &Tensor::eye(frames, (q.kind(), q.device()))),
                    lin_t: linear(&q / "lin_t", h, h, true),
                    norm_t: nn::layer_norm(&q / "norm_t", vec![h], Default::default()),
                }
            })
            .collect();
        let out = linear(&p / "out", h, self.out_dim, true);
        Ok(Stsgnn {
            cfg: self.clone(),
            embed,
            layers,
            out,
        })
    }
}

#[derive(Debug)]
struct StLayer {
    phi_e: Mlp,
    phi_h: Mlp,
    norm_s: nn::LayerNorm,
    mix: Tensor,
    lin_t: nn::Linear,
    norm_t: nn::LayerNorm,
}

/// The space-time-separable encoder `E_dyn`: it reads a whole trajectory through E(3)
/// invariants only, so `z_dyn` is invariant.
///
/// - Node features per frame `t`: `[h, ‖x_t − centroid_t‖, ‖x_t − x_0‖, ‖v_t‖]`, embedded to `H`.
/// - Per layer, **space**: message passing within each frame, edge features from that frame's
///   distances, `m_ij = φ_e(h_i, h_j, ‖x_i^t − x_j^t‖², e_ij)`,
///   `h ← LN(h + φ_h(h, mean_{j→i} m_ij))`; then **time**: a learnable `(T+1)×(T+1)` mixing
///   `A` per node across frames, `h ← LN(h + act(W (A h)))`.
/// - Output: frames `1..=T` mapped linearly to `d`.
#[derive(Debug)]
pub struct Stsgnn {
    cfg: StsgnnConfig,
    embed: nn::Linear,
    layers: Vec<StLayer>,
    out: nn::Linear,
}

impl Stsgnn {
    /// The settings it was built with.
    pub fn config(&self) -> &StsgnnConfig {
        &self.cfg
    }

    /// Validating forward pass: `z_dyn`.
    ///
    /// # Shapes
    /// - `traj.x`, `traj.v`: `[T+1, N_total, 3]`; `traj.h`: `[N_total, node_in]`;
    ///   `traj.edge_attr`: `[E, edge_dim]`;
    /// - returns `[T, N_total, d]` (frames `1..=T`; contiguous, so `.view([T·N, d])` is the
    ///   flattening `t·N + n`).
    ///
    /// # Errors
    /// A wrong shape or kind, or a missing/unexpected optional input.
    pub fn f_forward(&self, traj: &Trajectory<'_>) -> Result<Tensor> {
        self.check_inputs(traj)?;
        Ok(self.forward_unchecked(traj))
    }

    fn check_inputs(&self, traj: &Trajectory<'_>) -> Result<()> {
        const OP: &str = "Stsgnn::forward";
        let cfg = &self.cfg;
        let (f, n) = (Some(cfg.horizon + 1), Some(traj.graph.num_nodes()));
        let kind = self.embed.ws.kind();
        check_shape(OP, "x", traj.x, &[f, n, Some(3)])?;
        check_kind(OP, "x", traj.x, kind)?;
        check_shape(OP, "h", traj.h, &[n, Some(cfg.node_in)])?;
        check_kind(OP, "h", traj.h, kind)?;
        check_velocity(OP, traj.v, cfg.with_velocity, &[f, n, Some(3)])?;
        check_edge_attr(OP, traj.edge_attr, cfg.edge_dim, traj.graph.num_edges())?;
        if traj.x.device() != traj.graph.device() {
            return Err(Error::Input {
                op: OP,
                reason: format!(
                    "x is on {:?}, the graph on {:?}",
                    traj.x.device(),
                    traj.graph.device()
                ),
            });
        }
        Ok(())
    }

    /// Forward pass; see [`Stsgnn::f_forward`].
    ///
    /// # Panics
    /// Where [`Stsgnn::f_forward`] returns an error.
    #[track_caller]
    pub fn forward(&self, traj: &Trajectory<'_>) -> Tensor {
        self.f_forward(traj).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The features the output layer reads: `[T, N_total, hidden]` for frames `1..=T` (so
    /// `forward = out(hidden)`), e.g. to fit the output layer in closed form.
    ///
    /// # Errors
    /// As [`Stsgnn::f_forward`].
    pub fn f_hidden(&self, traj: &Trajectory<'_>) -> Result<Tensor> {
        self.check_inputs(traj)?;
        Ok(self.hidden_unchecked(traj))
    }

    /// The output layer `hidden → d` (to load a closed-form fit into it).
    pub fn out_linear_mut(&mut self) -> &mut nn::Linear {
        &mut self.out
    }

    fn forward_unchecked(&self, traj: &Trajectory<'_>) -> Tensor {
        self.out.forward(&self.hidden_unchecked(traj)).contiguous()
    }

    fn hidden_unchecked(&self, traj: &Trajectory<'_>) -> Tensor {
        let cfg = &self.cfg;
        let (f, n, hid) = (cfg.horizon + 1, traj.graph.num_nodes(), cfg.hidden);
        let frames = traj.graph.repeat_frames(f);
        let x = traj.x.reshape([f * n, 3]);

        let mut node = vec![
            traj.h.repeat([f, 1]),
            norm(&(&x - frames.graph_mean_per_node(&x))),
            norm(&(&x - traj.x.select(0, 0).repeat([f, 1]))),
        ];
        if let Some(v) = traj.v {
            node.push(norm(&v.reshape([f * n, 3])));
        }
        let mut h = self.embed.forward(&Tensor::cat(&node, -1));

        let mut edge = vec![frames.edge_sq_distances(&x)];
        if let Some(e) = traj.edge_attr {
            edge.push(e.repeat([f, 1]));
        }
        let edge = Tensor::cat(&edge, -1);

        for layer in &self.layers {
            let m = layer.phi_e.forward_edges(&h, &frames, &edge);
            let agg = frames.mean_at_receivers(&m);
            h = layer
                .norm_s
                .forward(&(&h + layer.phi_h.forward(&Tensor::cat(&[&h, &agg], -1))));

            let mixed = layer.mix.matmul(&h.view([f, n * hid])).view([f * n, hid]);
            h = layer
                .norm_t
                .forward(&(&h + cfg.activation.apply(&layer.lin_t.forward(&mixed))));
        }
        h.view([f, n, hid]).narrow(0, 1, cfg.horizon)
    }
}
