//! Graph attention (Veličković et al. 2018, with edge features) over invariant inputs, the linear
//! temporal lift, and SGDD's student encoder `E_init` built from them.

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor, nn, nn::Module};

use crate::batch::{GraphBatch, segment_softmax};
use crate::egno::InitialState;
use crate::error::{Result, check_kind, check_shape, ensure_at_least, ensure_config};
use crate::mlp::{Activation, linear};

/// Settings of a [`Gat`] stack.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatConfig {
    /// Input node features.
    pub node_in: i64,
    /// Edge attribute width (0: none).
    pub edge_dim: i64,
    /// Hidden width (all heads together; a multiple of `heads`).
    pub hidden: i64,
    /// Attention heads per layer.
    pub heads: i64,
    /// Attention layers.
    pub layers: i64,
    /// Output width `d`.
    pub out_dim: i64,
    /// Slope of the leaky ReLU on attention scores.
    pub negative_slope: f64,
    /// Let every node attend to itself too.
    pub self_loops: bool,
    /// Non-linearity after each attention layer.
    pub activation: Activation,
}

impl Default for GatConfig {
    fn default() -> Self {
        Self {
            node_in: 1,
            edge_dim: 0,
            hidden: 64,
            heads: 4,
            layers: 2,
            out_dim: 64,
            negative_slope: 0.2,
            self_loops: true,
            activation: Activation::Elu,
        }
    }
}

impl GatConfig {
    /// Validates the settings.
    ///
    /// # Errors
    /// A non-positive width, `hidden` not a multiple of `heads`, or a negative slope or size.
    pub fn check(&self) -> Result<()> {
        const C: &str = "GatConfig";
        ensure_at_least(C, "node_in", self.node_in, 0)?;
        ensure_at_least(C, "edge_dim", self.edge_dim, 0)?;
        ensure_at_least(C, "heads", self.heads, 1)?;
        ensure_config(
            self.hidden > 0 && self.hidden % self.heads == 0,
            C,
            "hidden",
            || {
                format!(
                    "must be a positive multiple of heads = {}, got {}",
                    self.heads, self.hidden
                )
            },
        )?;
        ensure_at_least(C, "layers", self.layers, 0)?;
        ensure_at_least(C, "out_dim", self.out_dim, 1)?;
        ensure_config(self.negative_slope >= 0.0, C, "negative_slope", || {
            format!("must be ≥ 0, got {}", self.negative_slope)
        })
    }

    /// Creates `embed`, `layers.i.{lin, att_src, att_dst, att_edge, bias, norm}` and `out` under `p`.
    ///
    /// # Errors
    /// As [`GatConfig::check`].
    pub fn build(&self, p: nn::Path<'_>) -> Result<Gat> {
        self.check()?;
        let (hid, heads) = (self.hidden, self.heads);
        let dh = hid / heads;
        let embed = linear(&p / "embed", self.node_in, hid, true);
        let glorot = |fan_in: i64, fan_out: i64| crate::mlp::xavier_uniform(fan_in, fan_out, 1.0);
        let layers = (0..self.layers)
            .map(|i| {
                let q = &p / "layers" / i;
                GatLayer {
                    lin: linear(&q / "lin", hid, hid, false),
                    att_src: q.var("att_src", &[heads, dh], glorot(dh, 1)),
                    att_dst: q.var("att_dst", &[heads, dh], glorot(dh, 1)),
                    att_edge: (self.edge_dim > 0)
                        .then(|| linear(&q / "att_edge", self.edge_dim, heads, false)),
                    bias: q.zeros("bias", &[hid]),
                    norm: nn::layer_norm(&q / "norm", vec![hid], Default::default()),
                }
            })
            .collect();
        let out = linear(&p / "out", hid, self.out_dim, true);
        Ok(Gat {
            cfg: self.clone(),
            embed,
            layers,
            out,
        })
    }
}

#[derive(Debug)]
struct GatLayer {
    lin: nn::Linear,
    att_src: Tensor,
    att_dst: Tensor,
    att_edge: Option<nn::Linear>,
    bias: Tensor,
    norm: nn::LayerNorm,
}

/// A stack of multi-head graph-attention layers with edge features:
///
/// ```text
/// s_ij^k = LeakyReLU( a_dst^k·W^k h_i + a_src^k·W^k h_j + a_e^k·e_ij )
/// α_ij^k = softmax_{j → i}(s_ij^k)          (over the edges into i, and i itself with self-loops)
/// h_i'   = LayerNorm( h_i + act( ‖_k Σ_j α_ij^k W^k h_j + b ) )
/// ```
///
/// between a linear input embedding and a linear output map. Its inputs are invariant, so is its
/// output.
#[derive(Debug)]
pub struct Gat {
    cfg: GatConfig,
    embed: nn::Linear,
    layers: Vec<GatLayer>,
    out: nn::Linear,
}

impl Gat {
    /// The settings it was built with.
    pub fn config(&self) -> &GatConfig {
        &self.cfg
    }

    /// Validating forward pass.
    ///
    /// # Shapes
    /// `h: [N_total, node_in]`, `edge_attr: [E, edge_dim]` (exactly when `edge_dim > 0`) →
    /// `[N_total, out_dim]`.
    ///
    /// # Errors
    /// A wrong shape or kind, or edge attributes given/missing against the configuration.
    pub fn f_forward(
        &self,
        h: &Tensor,
        graph: &GraphBatch,
        edge_attr: Option<&Tensor>,
    ) -> Result<Tensor> {
        const OP: &str = "Gat::forward";
        check_shape(
            OP,
            "h",
            h,
            &[Some(graph.num_nodes()), Some(self.cfg.node_in)],
        )?;
        check_kind(OP, "h", h, self.embed.ws.kind())?;
        crate::egnn::check_edge_attr(OP, edge_attr, self.cfg.edge_dim, graph.num_edges())?;
        Ok(self.forward_unchecked(h, graph, edge_attr))
    }

    /// Forward pass; see [`Gat::f_forward`].
    ///
    /// # Panics
    /// Where [`Gat::f_forward`] returns an error.
    #[track_caller]
    pub fn forward(&self, h: &Tensor, graph: &GraphBatch, edge_attr: Option<&Tensor>) -> Tensor {
        self.f_forward(h, graph, edge_attr)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn forward_unchecked(
        &self,
        h: &Tensor,
        graph: &GraphBatch,
        edge_attr: Option<&Tensor>,
    ) -> Tensor {
        let cfg = &self.cfg;
        let n = graph.num_nodes();
        let (heads, dh) = (cfg.heads, cfg.hidden / cfg.heads);
        let (receivers, senders) = if cfg.self_loops {
            let nodes = Tensor::arange(n, (Kind::Int64, graph.device()));
            (
                Tensor::cat(&[graph.receivers(), &nodes], 0),
                Tensor::cat(&[graph.senders(), &nodes], 0),
            )
        } else {
            (
                graph.receivers().shallow_clone(),
                graph.senders().shallow_clone(),
            )
        };
        let mut h = self.embed.forward(h);
        for layer in &self.layers {
            let wh = layer.lin.forward(&h).view([n, heads, dh]);
            let a_src = (&wh * &layer.att_src).sum_dim_intlist(-1, false, None);
            let a_dst = (&wh * &layer.att_dst).sum_dim_intlist(-1, false, None);
            let node_term = a_dst.index_select(0, &receivers) + a_src.index_select(0, &senders);
            let score = match (&layer.att_edge, edge_attr) {
                (Some(att_edge), Some(e)) => {
                    // Self-loops carry no edge attributes: their edge term is zero.
                    let edge_term = att_edge.forward(e);
                    let pad = node_term.size()[0] - edge_term.size()[0];
                    node_term + edge_term.constant_pad_nd([0, 0, 0, pad])
                }
                _ => node_term,
            };
            let alpha = segment_softmax(&leaky_relu(&score, cfg.negative_slope), &receivers, n);
            let msg = wh.index_select(0, &senders) * alpha.unsqueeze(-1);
            let agg = Tensor::zeros([n, heads, dh], (msg.kind(), msg.device()))
                .index_add(0, &receivers, &msg)
                .view([n, cfg.hidden]);
            h = layer
                .norm
                .forward(&(&h + cfg.activation.apply(&(agg + &layer.bias))));
        }
        self.out.forward(&h)
    }
}

/// Leaky ReLU with a chosen slope, `max(x, 0) + slope·min(x, 0)` (tch's `leaky_relu` has the
/// fixed slope 0.01).
fn leaky_relu(x: &Tensor, slope: f64) -> Tensor {
    x.relu() - (-x).relu() * slope
}

/// Settings of a [`TemporalLift`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TemporalLiftConfig {
    /// Input width per node.
    pub dim_in: i64,
    /// Output width per node and frame.
    pub dim_out: i64,
    /// Frames `T`.
    pub horizon: i64,
}

impl Default for TemporalLiftConfig {
    fn default() -> Self {
        Self {
            dim_in: 64,
            dim_out: 64,
            horizon: 8,
        }
    }
}

impl TemporalLiftConfig {
    /// Validates the settings.
    ///
    /// # Errors
    /// A non-positive size.
    pub fn check(&self) -> Result<()> {
        const C: &str = "TemporalLiftConfig";
        ensure_at_least(C, "dim_in", self.dim_in, 1)?;
        ensure_at_least(C, "dim_out", self.dim_out, 1)?;
        ensure_at_least(C, "horizon", self.horizon, 1)
    }

    /// Creates `lin` (`dim_in → T·dim_out`) under `p`.
    ///
    /// # Errors
    /// As [`TemporalLiftConfig::check`].
    pub fn build(&self, p: nn::Path<'_>) -> Result<TemporalLift> {
        self.check()?;
        let lin = linear(&p / "lin", self.dim_in, self.horizon * self.dim_out, true);
        Ok(TemporalLift {
            cfg: self.clone(),
            lin,
        })
    }
}

/// SGDD's lift of a per-node representation to a per-node, per-frame one: one fully connected
/// layer `R^{d_in} → R^{T·d_out}` shared by all nodes, reshaped so frame `t` of node `n` is
/// row `(t, n)`.
#[derive(Debug)]
pub struct TemporalLift {
    cfg: TemporalLiftConfig,
    lin: nn::Linear,
}

impl TemporalLift {
    /// Validating forward pass.
    ///
    /// # Shapes
    /// `z: [N, dim_in]` → `[T, N, dim_out]` (contiguous, so `.view([T·N, dim_out])` is the
    /// flattening `t·N + n`).
    ///
    /// # Errors
    /// A wrong shape.
    pub fn f_forward(&self, z: &Tensor) -> Result<Tensor> {
        check_shape(
            "TemporalLift::forward",
            "z",
            z,
            &[None, Some(self.cfg.dim_in)],
        )?;
        let n = z.size()[0];
        Ok(self
            .lin
            .forward(z)
            .view([n, self.cfg.horizon, self.cfg.dim_out])
            .permute([1, 0, 2])
            .contiguous())
    }

    /// Forward pass; see [`TemporalLift::f_forward`].
    ///
    /// # Panics
    /// Where [`TemporalLift::f_forward`] returns an error.
    #[track_caller]
    pub fn forward(&self, z: &Tensor) -> Tensor {
        self.f_forward(z).unwrap_or_else(|e| panic!("{e}"))
    }
}

/// Settings of the [`InitEncoder`] (SGDD's student `E_init`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InitEncoderConfig {
    /// Invariant node features `F` of the initial state.
    pub node_in: i64,
    /// Edge attribute width of the initial state (0: none).
    pub edge_dim: i64,
    /// Read `‖v_0‖` as a node feature (the state then needs velocities).
    pub with_velocity: bool,
    /// GAT hidden width.
    pub hidden: i64,
    /// GAT heads.
    pub heads: i64,
    /// GAT layers.
    pub layers: i64,
    /// Output width `d` per node and frame.
    pub out_dim: i64,
    /// Frames `T`.
    pub horizon: i64,
    /// Add direction-aware invariants of the initial state. Per edge (attention): the radial
    /// relative velocity `u_ij = (v_i − v_j)·(x_i − x_j)/‖x_i − x_j‖` (approaching < 0 <
    /// receding) and the tangential relative speed `‖(v_i − v_j) − u_ij r̂_ij‖`; per node: the
    /// mean of `u_ij` and of `u_ij/‖x_i − x_j‖` over its neighbours (how fast, and how close,
    /// its neighbourhood closes in). Without them the student sees only lengths and cannot tell
    /// approaching from receding pairs (needs `with_velocity`).
    pub direction_invariants: bool,
}

impl Default for InitEncoderConfig {
    fn default() -> Self {
        Self {
            node_in: 1,
            edge_dim: 0,
            with_velocity: true,
            hidden: 64,
            heads: 4,
            layers: 2,
            out_dim: 64,
            horizon: 8,
            direction_invariants: false,
        }
    }
}

impl InitEncoderConfig {
    fn gat(&self) -> GatConfig {
        GatConfig {
            node_in: self.node_in
                + 1
                + i64::from(self.with_velocity)
                + 2 * i64::from(self.direction_invariants),
            edge_dim: self.edge_dim + 1 + 2 * i64::from(self.direction_invariants),
            hidden: self.hidden,
            heads: self.heads,
            layers: self.layers,
            out_dim: self.out_dim,
            ..GatConfig::default()
        }
    }

    /// Creates `gat` and `lift` under `p`.
    ///
    /// # Errors
    /// Invalid settings (see [`GatConfig::check`], [`TemporalLiftConfig::check`]).
    pub fn build(&self, p: nn::Path<'_>) -> Result<InitEncoder> {
        ensure_at_least("InitEncoderConfig", "node_in", self.node_in, 0)?;
        ensure_at_least("InitEncoderConfig", "edge_dim", self.edge_dim, 0)?;
        ensure_config(
            !self.direction_invariants || self.with_velocity,
            "InitEncoderConfig",
            "direction_invariants",
            || "needs with_velocity (the invariants are built from v_0)".into(),
        )?;
        let gat = self.gat().build(&p / "gat")?;
        let lift = TemporalLiftConfig {
            dim_in: self.out_dim,
            dim_out: self.out_dim,
            horizon: self.horizon,
        }
        .build(&p / "lift")?;
        Ok(InitEncoder {
            cfg: self.clone(),
            gat,
            lift,
        })
    }
}

/// SGDD's student encoder `E_init`: reads only `G_0`, through invariants — node features
/// `[h_0, ‖x_0 − centroid‖, ‖v_0‖]` and edge features `[‖x_i − x_j‖, e_ij]` — runs a [`Gat`] to
/// `[N, d]` and lifts it with a [`TemporalLift`] to `z_init ∈ R^{T×N×d}`, E(3)-invariant.
#[derive(Debug)]
pub struct InitEncoder {
    cfg: InitEncoderConfig,
    gat: Gat,
    lift: TemporalLift,
}

impl InitEncoder {
    /// The settings it was built with.
    pub fn config(&self) -> &InitEncoderConfig {
        &self.cfg
    }

    /// The per-node encoding before the lift.
    ///
    /// # Shapes
    /// `state` as in [`InitialState`] with `h: [N_total, node_in]` → `[N_total, d]`.
    ///
    /// # Errors
    /// A wrong shape or kind, or a missing/unexpected velocity or edge attribute.
    pub fn f_encode_nodes(&self, state: &InitialState<'_>) -> Result<Tensor> {
        let cfg = &self.cfg;
        state.check(
            "InitEncoder::forward",
            cfg.node_in,
            cfg.with_velocity,
            cfg.edge_dim,
            self.gat.embed.ws.kind(),
        )?;
        let g = state.graph;
        let mut node = vec![
            state.h.shallow_clone(),
            norm(&(state.x - g.graph_mean_per_node(state.x))),
        ];
        if let Some(v) = state.v {
            node.push(norm(v));
        }
        let r = g.edge_vectors(state.x);
        let dist = norm(&r);
        let mut edge = vec![dist.shallow_clone()];
        if let Some(e) = state.edge_attr {
            edge.push(e.shallow_clone());
        }
        if cfg.direction_invariants {
            let v = state
                .v
                .expect("checked: direction invariants need velocities");
            let dv = g.edge_vectors(v);
            let unit = &r / &dist;
            let radial = (&dv * &unit).sum_dim_intlist(-1, true, None);
            node.push(g.mean_at_receivers(&radial));
            node.push(g.mean_at_receivers(&(&radial / &dist)));
            edge.push(radial.shallow_clone());
            edge.push(norm(&(&dv - &radial * &unit)));
        }
        let (node, edge) = (Tensor::cat(&node, -1), Tensor::cat(&edge, -1));
        Ok(self.gat.forward_unchecked(&node, g, Some(&edge)))
    }

    /// The lift's linear layer `d → T·d` (to load a closed-form fit into it: output row `n`
    /// viewed as `[T, d]` is node `n`'s `z_init`).
    pub fn lift_linear_mut(&mut self) -> &mut nn::Linear {
        &mut self.lift.lin
    }

    /// Validating forward pass: `z_init`.
    ///
    /// # Shapes
    /// `state` as in [`InitialState`] → `[T, N_total, d]` (contiguous; flattened row `t·N + n`).
    ///
    /// # Errors
    /// As [`InitEncoder::f_encode_nodes`].
    pub fn f_forward(&self, state: &InitialState<'_>) -> Result<Tensor> {
        self.lift.f_forward(&self.f_encode_nodes(state)?)
    }

    /// Forward pass; see [`InitEncoder::f_forward`].
    ///
    /// # Panics
    /// Where [`InitEncoder::f_forward`] returns an error.
    #[track_caller]
    pub fn forward(&self, state: &InitialState<'_>) -> Tensor {
        self.f_forward(state).unwrap_or_else(|e| panic!("{e}"))
    }
}

/// Row norms `‖u‖` of `[N, 3]` → `[N, 1]`.
pub(crate) fn norm(u: &Tensor) -> Tensor {
    // sqrt(·) has an infinite derivative at 0; a tiny floor keeps gradients finite for zero
    // vectors (e.g. a one-node graph's offset from its centroid) without changing values above 1e-12.
    (u.square().sum_dim_intlist(-1, true, None) + 1e-24).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::GraphBatch;
    use tch::{Device, Kind, Tensor};

    /// Two particles with the same distance and speeds, approaching in one state and receding in
    /// the other: only the direction-aware invariants tell them apart, and they stay invariant
    /// under a rotation and a translation.
    #[test]
    fn direction_invariants_tell_approaching_from_receding() {
        let edges = [(0, 1), (1, 0)];
        let graph = GraphBatch::from_edges(2, &edges, Device::Cpu).unwrap();
        let x = Tensor::from_slice(&[0.0f64, 0.0, 0.0, 1.0, 0.0, 0.0]).view([2, 3]);
        let toward = Tensor::from_slice(&[0.5f64, 0.1, 0.0, -0.5, 0.1, 0.0]).view([2, 3]);
        let away = -&toward;
        let h = Tensor::ones([2, 1], (Kind::Double, Device::Cpu));
        let encode = |direction_invariants: bool| {
            let vs = nn::VarStore::new(Device::Cpu);
            let enc = InitEncoderConfig {
                node_in: 1,
                hidden: 8,
                heads: 2,
                layers: 1,
                out_dim: 3,
                horizon: 2,
                direction_invariants,
                ..Default::default()
            }
            .build(vs.root())
            .unwrap();
            let mut vs = vs;
            vs.double();
            let (h, graph) = (h.shallow_clone(), graph.clone());
            move |x: &Tensor, v: &Tensor| {
                enc.forward(&InitialState {
                    x,
                    v: Some(v),
                    h: &h,
                    graph: &graph,
                    edge_attr: None,
                })
            }
        };
        let plain = encode(false);
        assert!(plain(&x, &toward).allclose(&plain(&x, &away), 1e-12, 1e-12, false));
        let aware = encode(true);
        let (a, b) = (aware(&x, &toward), aware(&x, &away));
        assert!(
            !a.allclose(&b, 1e-6, 1e-6, false),
            "approaching and receding look alike"
        );
        // a rotation about z by 90° and a translation leave the encoding unchanged
        let q = Tensor::from_slice(&[0.0f64, -1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0]).view([3, 3]);
        let shift = Tensor::from_slice(&[3.0f64, -2.0, 0.5]);
        let moved = aware(&(x.matmul(&q.tr()) + &shift), &toward.matmul(&q.tr()));
        assert!(moved.allclose(&a, 1e-9, 1e-9, false));
    }
}
