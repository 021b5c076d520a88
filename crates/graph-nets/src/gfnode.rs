//! The GF-NODE decoder: a graph Fourier neural ODE (arXiv 2411.01600, TMLR), as its authors
//! define it in their `FourierMD` model (FrancoTSolis/GF-NODE-code), with SGDD's per-node,
//! per-frame conditioning.
//!
//! 1. **Encode** the initial state: `h = W_in h_0`, then `layers` EGNN layers
//!    ([`EgnnStyle::GfNode`]) on `(x_0, v_0, h)`.
//! 2. **Graph Fourier transform**: `U_M ∈ R^{N×M}`, the `M` eigenvectors of the molecule graph's
//!    combinatorial Laplacian `L = D − A` with the smallest eigenvalues (spectral-core,
//!    deterministic signs, computed once per distinct graph and cached). The coefficients of the
//!    features and of the centred vectors are `ĥ = U_Mᵀ h ∈ R^{M×H}` and
//!    `X̂ = U_Mᵀ [x − x̄_0, v] ∈ R^{M×3×2}`.
//! 3. **Neural ODE in time** on the coefficients, one per path:
//!    `dĉ/dt = W_m · A(ĉ ‖ t)` per mode `m`, where `‖ t` appends `time_emb_dim` copies of `t`
//!    ([`OdeTime::Concat`]) and `A` is single-head self-attention across the `M` modes followed
//!    by a linear layer ([`ModeInteraction::Attention`]); integrated by [`crate::ode::odeint`]
//!    from `t = 0` to every requested target time `τ/τ_s` (`τ_s = time_scale`) of every graph
//!    (the union of the graphs' times, so each graph may have its own, uneven, targets).
//! 4. **Back to the nodes** with the residual of the authors' `TimeConvODE`:
//!    `h(τ) = h + σ(U_M ĉ_h(τ))`, `[x − x̄_0, v](τ) = [x − x̄_0, v] + σ(U_M ĉ_x(τ))` (σ the
//!    activation), `x̄_0` the centroid of the input positions added back.
//! 5. **Decode** every target frame with `layers` EGNN layers on `[h(τ), emb(τ), z_cond(τ)]`
//!    (`emb` the sinusoidal embedding of the raw target time, [`sinusoidal_embedding`]).
//!
//! # Symmetry
//! Translations: exact (the vector path sees `x − x̄_0`). Node permutations: exact whenever the
//! `M` leading Laplacian eigenvectors are unique (no eigenvalue tie at `M`, and a unique
//! largest-magnitude entry per vector, which fixes the sign). Rotations and reflections: the
//! authors' vector dynamics ([`VectorDynamics::Authors`]) act on each Cartesian component
//! separately — the attention, the appended time channels and σ are not equivariant — so only
//! [`VectorDynamics::Equivariant`] (a mode-wise linear ODE on `[x̂, v̂]` and no σ on that path)
//! gives an E(3)-equivariant decoder.

use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use spectral_core::{BasisCache, JointBasisConfig, LaplacianKind, SpatialSolver};
use tch::{Device, Kind, Tensor, nn};

use crate::batch::{GraphBatch, segment_sum};
use crate::egnn::{EgnnLayer, EgnnLayerConfig, EgnnStyle};
use crate::egno::{EgnoOutput, InitialState, check_cond, sinusoidal_embedding};
use crate::error::{Error, Result, check_shape, ensure_at_least, ensure_config};
use crate::mlp::{Activation, linear};
use crate::ode::{OdeOptions, odeint};

/// How the spectral modes interact inside the ODE's vector field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModeInteraction {
    /// Each mode evolves on its own (`dĉ_m/dt = W_m ĉ_m`).
    None,
    /// Single-head self-attention across the modes, then a linear layer (the authors' MD17
    /// setting, `mode_interaction: attention`).
    #[default]
    Attention,
}

/// How the ODE's vector field sees the time `t`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OdeTime {
    /// Autonomous: `f(ĉ)`.
    None,
    /// `time_emb_dim` copies of `t` appended to every mode's channels (the authors'
    /// `time_mode: concat`).
    #[default]
    Concat,
}

/// The ODE of the vector path `[x − x̄_0, v]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VectorDynamics {
    /// As the authors: the same vector field as the feature path (interaction, time channels)
    /// on each Cartesian component, and σ on the way back. Translation-equivariant only.
    #[default]
    Authors,
    /// A mode-wise linear ODE `d[x̂, v̂]_m/dt = [x̂, v̂]_m W_m` and no σ: E(3)-equivariant.
    Equivariant,
}

/// Settings of the [`GfNode`] decoder. The defaults are the authors' MD17 configuration
/// (`config_md17_no.json`: 5 layers, hidden 64, 2 modes, time embedding 32, attention between
/// modes, time concatenated, Dopri5 with rtol 1e-3 / atol 1e-4), with EGNN layers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GfNodeConfig {
    /// Invariant node features `F` of the initial state.
    pub node_in: i64,
    /// Edge attribute width (0: none).
    pub edge_dim: i64,
    /// Hidden width `H` of the encoder and of the feature ODE.
    pub hidden: i64,
    /// EGNN layers of the encoder, and again of the decoder.
    pub layers: i64,
    /// Graph Fourier modes `M` kept (a graph with fewer nodes keeps all of its own).
    pub num_modes: i64,
    /// Width of the sinusoidal target-time embedding of the decoder and of the time channels
    /// of the ODE (≥ 4).
    pub time_emb_dim: i64,
    /// Target frames `T` when no target times are given (then `τ_k = k·time_scale/T`,
    /// `k = 1..=T`, EGNO's evenly spaced targets).
    pub horizon: i64,
    /// `τ_s`: target times are divided by it before integration (the authors' `delta_frame`,
    /// keeping ODE times in `(0, 1]`).
    pub time_scale: f64,
    /// See [`ModeInteraction`].
    pub mode_interaction: ModeInteraction,
    /// See [`OdeTime`].
    pub ode_time: OdeTime,
    /// See [`VectorDynamics`].
    pub vector_dynamics: VectorDynamics,
    /// The integrator (default: Dopri5, rtol 1e-3, atol 1e-4).
    pub ode: OdeOptions,
    /// Read and predict velocities.
    pub with_velocity: bool,
    /// Width `d` of the conditioning `z_cond` (SGDD's `z^sg`); 0 for plain GF-NODE.
    pub cond_dim: i64,
    /// Non-linearity of the EGNN MLPs and σ of step 4.
    pub activation: Activation,
    /// See [`EgnnLayerConfig::coord_clamp`].
    pub coord_clamp: Option<f64>,
}

impl Default for GfNodeConfig {
    fn default() -> Self {
        Self {
            node_in: 1,
            edge_dim: 0,
            hidden: 64,
            layers: 5,
            num_modes: 2,
            time_emb_dim: 32,
            horizon: 8,
            time_scale: 8.0,
            mode_interaction: ModeInteraction::Attention,
            ode_time: OdeTime::Concat,
            vector_dynamics: VectorDynamics::Authors,
            ode: OdeOptions::default(),
            with_velocity: true,
            cond_dim: 0,
            activation: Activation::Silu,
            coord_clamp: Some(100.0),
        }
    }
}

impl GfNodeConfig {
    /// Validates the settings.
    ///
    /// # Errors
    /// [`Error::Config`] for a non-positive size, `time_emb_dim < 4`, a non-positive or
    /// non-finite `time_scale`, invalid ODE options or an invalid `coord_clamp`.
    pub fn check(&self) -> Result<()> {
        const C: &str = "GfNodeConfig";
        ensure_at_least(C, "node_in", self.node_in, 0)?;
        ensure_at_least(C, "hidden", self.hidden, 1)?;
        ensure_at_least(C, "layers", self.layers, 1)?;
        ensure_at_least(C, "num_modes", self.num_modes, 1)?;
        ensure_at_least(C, "time_emb_dim", self.time_emb_dim, 4)?;
        ensure_at_least(C, "horizon", self.horizon, 1)?;
        ensure_at_least(C, "cond_dim", self.cond_dim, 0)?;
        ensure_config(
            self.time_scale.is_finite() && self.time_scale > 0.0,
            C,
            "time_scale",
            || format!("must be finite and > 0, got {}", self.time_scale),
        )?;
        self.ode.validate()?;
        self.egnn(self.decoder_width()).check()
    }

    fn egnn(&self, hidden: i64) -> EgnnLayerConfig {
        EgnnLayerConfig {
            hidden,
            edge_dim: self.edge_dim,
            with_velocity: self.with_velocity,
            coord_clamp: self.coord_clamp,
            activation: self.activation,
            style: EgnnStyle::GfNode,
        }
    }

    /// Width of the decoder's features: `H + time_emb_dim + cond_dim`.
    pub fn decoder_width(&self) -> i64 {
        self.hidden + self.time_emb_dim + self.cond_dim
    }

    fn vectors(&self) -> i64 {
        if self.with_velocity { 2 } else { 1 }
    }

    /// Creates the decoder's variables under `p`: `embed`, `encoder.i`, `ode_h`, `ode_x` (each
    /// `weights` `[M, C + time channels, C]` and, with attention, `attn.{in_proj_weight,
    /// in_proj_bias, out_proj}` and `post_attn`), `decoder.i`.
    ///
    /// # Errors
    /// As [`GfNodeConfig::check`].
    pub fn build(&self, p: nn::Path<'_>) -> Result<GfNode> {
        self.check()?;
        let embed = linear(&p / "embed", self.node_in, self.hidden, true);
        let encoder = (0..self.layers)
            .map(|i| self.egnn(self.hidden).build(&p / "encoder" / i))
            .collect::<Result<_>>()?;
        let decoder = (0..self.layers)
            .map(|i| self.egnn(self.decoder_width()).build(&p / "decoder" / i))
            .collect::<Result<_>>()?;
        let ode_h = ModeOde::new(
            &(&p / "ode_h"),
            self.num_modes,
            self.hidden,
            self.mode_interaction,
            self.ode_time,
            self.time_emb_dim,
        );
        let ode_x = match self.vector_dynamics {
            VectorDynamics::Authors => ModeOde::new(
                &(&p / "ode_x"),
                self.num_modes,
                self.vectors(),
                self.mode_interaction,
                self.ode_time,
                self.time_emb_dim,
            ),
            VectorDynamics::Equivariant => ModeOde::new(
                &(&p / "ode_x"),
                self.num_modes,
                self.vectors(),
                ModeInteraction::None,
                OdeTime::None,
                self.time_emb_dim,
            ),
        };
        Ok(GfNode {
            cfg: self.clone(),
            embed,
            encoder,
            decoder,
            ode_h,
            ode_x,
            device: p.device(),
            bases: BasisCache::new(),
            last: Mutex::new(None),
        })
    }
}

/// Single-head self-attention across the modes (PyTorch's `nn.MultiheadAttention` with one
/// head, sequence = modes), then a linear layer.
#[derive(Debug)]
struct ModeAttention {
    in_proj_weight: Tensor,
    in_proj_bias: Tensor,
    out_proj: nn::Linear,
    post: nn::Linear,
}

impl ModeAttention {
    fn new(p: &nn::Path<'_>, width: i64) -> Self {
        let a = p / "attn";
        let bound = (6.0 / (4 * width) as f64).sqrt(); // xavier-uniform of [3E, E]
        let in_proj_weight = a.var(
            "in_proj_weight",
            &[3 * width, width],
            nn::Init::Uniform {
                lo: -bound,
                up: bound,
            },
        );
        let in_proj_bias = a.zeros("in_proj_bias", &[3 * width]);
        let out_proj = nn::linear(
            &a / "out_proj",
            width,
            width,
            nn::LinearConfig {
                bs_init: Some(nn::Init::Const(0.0)),
                ..crate::mlp::torch_default(width, true)
            },
        );
        let post = linear(p / "post_attn", width, width, true);
        Self {
            in_proj_weight,
            in_proj_bias,
            out_proj,
            post,
        }
    }

    /// `s: [M, R, E]` (sequence, batch, embedding) → `[M, R, E]`.
    fn forward(&self, s: &Tensor) -> Tensor {
        let e = s.size()[2];
        let qkv = s
            .linear(&self.in_proj_weight, Some(&self.in_proj_bias))
            .permute([1, 0, 2]); // [R, M, 3E]
        let (q, k, v) = (
            qkv.narrow(2, 0, e),
            qkv.narrow(2, e, e),
            qkv.narrow(2, 2 * e, e),
        );
        let scores = q.matmul(&k.transpose(1, 2)) / (e as f64).sqrt();
        let out = scores.softmax(-1, s.kind()).matmul(&v).permute([1, 0, 2]);
        out.apply(&self.out_proj).apply(&self.post)
    }
}

/// The vector field of one path's ODE on the mode coefficients: `f(t, ĉ)_m = A(ĉ ‖ t)_m W_m`.
#[derive(Debug)]
struct ModeOde {
    /// `[M, C + time channels, C]`.
    weights: Tensor,
    attention: Option<ModeAttention>,
    time: OdeTime,
    time_channels: i64,
}

impl ModeOde {
    fn new(
        p: &nn::Path<'_>,
        modes: i64,
        channels: i64,
        interaction: ModeInteraction,
        time: OdeTime,
        time_emb_dim: i64,
    ) -> Self {
        let time_channels = match time {
            OdeTime::None => 0,
            OdeTime::Concat => time_emb_dim,
        };
        let width = channels + time_channels;
        // The authors' `scale · rand`, scale = 1 / (C_in · C_out) over the state channels.
        let scale = 1.0 / (channels * channels) as f64;
        let weights = p.var(
            "weights",
            &[modes, width, channels],
            nn::Init::Uniform { lo: 0.0, up: scale },
        );
        let attention = match interaction {
            ModeInteraction::None => None,
            ModeInteraction::Attention => Some(ModeAttention::new(p, width)),
        };
        Self {
            weights,
            attention,
            time,
            time_channels,
        }
    }

    /// `s: [M, R, C]` → `ds/dt: [M, R, C]`.
    fn eval(&self, t: f64, s: &Tensor) -> Tensor {
        let size = s.size();
        let mut u = match self.time {
            OdeTime::None => s.shallow_clone(),
            OdeTime::Concat => Tensor::cat(
                &[
                    s.shallow_clone(),
                    Tensor::full(
                        [size[0], size[1], self.time_channels],
                        t,
                        (s.kind(), s.device()),
                    ),
                ],
                -1,
            ),
        };
        if let Some(attn) = &self.attention {
            u = attn.forward(&u);
        }
        u.matmul(&self.weights)
    }

    /// Integrates from `t = ts[0] = 0` and returns the states at `ts[1..]`.
    ///
    /// # Shapes
    /// `s0: [M, R, C]` → `[L, M, R, C]`, `L = ts.len() − 1`.
    fn solve(&self, s0: &Tensor, ts: &[f64], opts: &OdeOptions) -> Result<Tensor> {
        let sol = odeint(|t, y| Ok(self.eval(t, y)), s0, ts, opts)?;
        Ok(sol.ys.narrow(0, 1, ts.len() as i64 - 1))
    }
}

/// The stacked graph Fourier basis of the last batch, reused while the batch's graphs repeat.
type LastBasis = (Vec<i64>, Vec<i64>, Tensor);

/// The GF-NODE decoder: predicts positions (and velocities) at arbitrary target times from the
/// initial state. See the [module docs](self) for the equations.
///
/// **Conditioning.** With `cond_dim = d > 0`, `z_cond[k]` is appended to the decoder's input
/// features at target frame `k` (beside the time embedding); `None` means `z_cond = 0`, exactly
/// plain GF-NODE.
#[derive(Debug)]
pub struct GfNode {
    cfg: GfNodeConfig,
    embed: nn::Linear,
    encoder: Vec<EgnnLayer>,
    decoder: Vec<EgnnLayer>,
    ode_h: ModeOde,
    ode_x: ModeOde,
    device: Device,
    /// `U_M` per distinct graph, `[N_g, M]` float64 on `device` (zero columns past `N_g`).
    bases: BasisCache<Tensor>,
    /// The last batch's (sizes, edge index, stacked basis).
    last: Mutex<Option<LastBasis>>,
}

impl GfNode {
    /// The settings it was built with.
    pub fn config(&self) -> &GfNodeConfig {
        &self.cfg
    }

    /// Number of distinct graphs whose Fourier basis has been computed (and cached).
    pub fn cached_bases(&self) -> usize {
        self.bases.len()
    }

    /// Validating forward pass.
    ///
    /// # Shapes
    /// - `state`: see [`InitialState`] (`x`, `v`: `[N_total, 3]`, `h`: `[N_total, node_in]`);
    /// - `times`: `[G, T]` target times of each of the `G` graphs (any float kind, finite,
    ///   `> 0`, e.g. frames after the initial one), or `None` for `τ_k = k·time_scale/T`,
    ///   `T = horizon`;
    /// - `z_cond`: `[T, N_total, d]` or flattened `[T·N_total, d]` (as [`crate::Egno`]);
    /// - returns [`EgnoOutput`]: `x`, `v`: `[T, N_total, 3]`, `h`: `[T, N_total, H']` with
    ///   `H' =` [`GfNodeConfig::decoder_width`]; frame `k` is graph `g`'s time `times[g, k]`.
    ///
    /// # Errors
    /// A wrong shape or kind, a missing/unexpected optional input, non-positive or non-finite
    /// times, `z_cond` given with `cond_dim = 0`, a graph whose basis fails, or the integrator
    /// failing ([`Error::Ode`], e.g. step-size underflow).
    pub fn f_forward(
        &self,
        state: &InitialState<'_>,
        times: Option<&Tensor>,
        z_cond: Option<&Tensor>,
    ) -> Result<EgnoOutput> {
        const OP: &str = "GfNode::forward";
        let cfg = &self.cfg;
        let kind = self.embed.ws.kind();
        state.check(OP, cfg.node_in, cfg.with_velocity, cfg.edge_dim, kind)?;
        let g = state.graph.num_graphs();
        let n = state.graph.num_nodes();
        let (t, host_times) = match times {
            Some(ts) => {
                check_shape(OP, "times", ts, &[Some(g), None])?;
                let t = ts.size()[1];
                if t < 1 || !ts.is_floating_point() {
                    return Err(Error::Input {
                        op: OP,
                        reason: format!(
                            "times must be a float [G, T] tensor with T ≥ 1, got {:?} {:?}",
                            ts.kind(),
                            ts.size()
                        ),
                    });
                }
                let host = Vec::<f64>::try_from(ts.to_kind(Kind::Double).reshape([-1]))?;
                if let Some((i, bad)) = host
                    .iter()
                    .enumerate()
                    .find(|(_, v)| !(v.is_finite() && **v > 0.0))
                {
                    return Err(Error::Input {
                        op: OP,
                        reason: format!(
                            "times[{}, {}] = {bad}: target times must be finite and > 0",
                            i as i64 / t,
                            i as i64 % t
                        ),
                    });
                }
                (t, host)
            }
            None => {
                let t = cfg.horizon;
                let one: Vec<f64> = (1..=t)
                    .map(|k| k as f64 * cfg.time_scale / t as f64)
                    .collect();
                (t, one.repeat(g as usize))
            }
        };
        let z = check_cond(OP, z_cond, cfg.cond_dim, t, n, kind)?;
        let basis = self.f_graph_basis(state.graph)?.to_kind(kind);
        self.forward_unchecked(state, &basis, t, &host_times, z.as_ref())
    }

    /// Forward pass; see [`GfNode::f_forward`] for the shapes.
    ///
    /// # Panics
    /// Where [`GfNode::f_forward`] returns an error.
    #[track_caller]
    pub fn forward(
        &self,
        state: &InitialState<'_>,
        times: Option<&Tensor>,
        z_cond: Option<&Tensor>,
    ) -> EgnoOutput {
        self.f_forward(state, times, z_cond)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The graph Fourier basis `U_M` of every graph of the batch, stacked along the nodes:
    /// rows `n` of graph `g` hold that graph's `M` leading eigenvectors of `L = D − A` (the
    /// graph's edges taken as undirected), zero columns past its node count. Built once per
    /// distinct graph (cached, see [`GfNode::cached_bases`]) and reused while batches repeat.
    ///
    /// # Shapes
    /// → `[N_total, M]`, float64, on the model's device.
    ///
    /// # Errors
    /// [`Error::Spectral`] when an eigen-decomposition fails.
    pub fn f_graph_basis(&self, graph: &GraphBatch) -> Result<Tensor> {
        let sizes = graph.graph_sizes().to_vec();
        let edges = Vec::<i64>::try_from(graph.edge_index().to_device(Device::Cpu).reshape([-1]))?;
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((s, e, u)) = last.as_ref()
            && *s == sizes
            && *e == edges
        {
            return Ok(u.shallow_clone());
        }
        let m = self.cfg.num_modes;
        let num_edges = edges.len() / 2;
        let (recv, send) = edges.split_at(num_edges);
        let mut parts = Vec::with_capacity(sizes.len());
        let (mut node0, mut edge0) = (0i64, 0usize);
        for (&size, &count) in sizes.iter().zip(graph.edge_counts()) {
            let count = count as usize;
            let local: Vec<(usize, usize)> = (edge0..edge0 + count)
                .map(|e| ((recv[e] - node0) as usize, (send[e] - node0) as usize))
                .filter(|(i, j)| i != j)
                .collect();
            parts.push(self.graph_basis(size, &local, m)?);
            node0 += size;
            edge0 += count;
        }
        let u = Tensor::cat(&parts, 0);
        *last = Some((sizes, edges, u.shallow_clone()));
        Ok(u)
    }

    /// `U_M` of one graph: `[n, M]`, float64, zero columns past `n`.
    fn graph_basis(&self, n: i64, edges: &[(usize, usize)], m: i64) -> Result<Tensor> {
        if n == 0 {
            return Ok(Tensor::zeros([0, m], (Kind::Double, self.device)));
        }
        let graph = spectral_core::Graph::from_edges(n as usize, edges)?;
        let k = m.min(n) as usize;
        let config = JointBasisConfig {
            k,
            kind: LaplacianKind::Combinatorial,
            solver: SpatialSolver::Dense,
        };
        let device = self.device;
        let u = self
            .bases
            .get_or_build_with::<Error>(&graph, 1, &config, |basis| {
                let modes = basis.spatial_modes_row_major::<f64>();
                let u = Tensor::from_slice(&modes).view([n, k as i64]);
                Ok(u.constant_pad_nd([0, m - k as i64]).to_device(device))
            })?;
        Ok(u.shallow_clone())
    }

    fn forward_unchecked(
        &self,
        s: &InitialState<'_>,
        basis: &Tensor,
        t: i64,
        host_times: &[f64],
        z: Option<&Tensor>,
    ) -> Result<EgnoOutput> {
        let cfg = &self.cfg;
        let (g, n) = (s.graph.num_graphs(), s.graph.num_nodes());
        let opts = (s.x.kind(), s.x.device());
        let node_graph = s.graph.node_graph();

        // 1. Encoder.
        let mut h = s.h.apply(&self.embed);
        let (mut x, mut v) = (s.x.shallow_clone(), s.v.map(Tensor::shallow_clone));
        for layer in &self.encoder {
            let next = layer.forward_unchecked(&x, &h, v.as_ref(), s.graph, s.edge_attr);
            (x, h, v) = (next.x, next.h, next.v);
        }

        // Target times: their sorted union, and each graph's index into it.
        let mut union: Vec<f64> = host_times.to_vec();
        union.sort_by(f64::total_cmp);
        union.dedup();
        let index: Vec<i64> = host_times
            .iter()
            .enumerate()
            .map(|(i, tau)| {
                let pos = union.partition_point(|u| u < tau) as i64;
                (i as i64 / t) * union.len() as i64 + pos
            })
            .collect();
        let index = Tensor::from_slice(&index).to_device(s.x.device());
        let mut ts = vec![0.0];
        ts.extend(union.iter().map(|tau| tau / cfg.time_scale));
        let modes = basis.size()[1];

        // 2–4. Both paths through the graph Fourier ODE.
        let at_targets = |ode: &ModeOde, signal: &Tensor, rows: i64| -> Result<Tensor> {
            // signal [N, C] → coefficients [G, M, C] → ODE state [M, G·rows, C/rows].
            let c = signal.size()[1];
            let coeff = segment_sum(&(basis.unsqueeze(2) * signal.unsqueeze(1)), node_graph, g);
            let s0 = coeff
                .permute([1, 0, 2])
                .reshape([modes, g * rows, c / rows]);
            let ys = ode.solve(&s0, &ts, &cfg.ode)?; // [L, M, G·rows, C/rows]
            let l = ys.size()[0];
            let per_graph = ys.reshape([l, modes, g, c]).permute([2, 0, 1, 3]); // [G, L, M, C]
            let picked = per_graph
                .reshape([g * l, modes, c])
                .index_select(0, &index)
                .view([g, t, modes, c]);
            // Inverse transform: [T, N, C].
            Ok(Tensor::einsum(
                "ntmc,nm->tnc",
                &[picked.index_select(0, node_graph), basis.shallow_clone()],
                None::<i64>,
            ))
        };
        let h_t = h.unsqueeze(0) + cfg.activation.apply(&at_targets(&self.ode_h, &h, 1)?);

        let centroid = s.graph.graph_mean_per_node(s.x);
        let k = cfg.vectors();
        let centred = &x - &centroid;
        let vectors = match &v {
            Some(v) => Tensor::stack(&[&centred, v], -1),
            None => centred.unsqueeze(-1),
        }; // [N, 3, K]
        let low = at_targets(&self.ode_x, &vectors.reshape([n, 3 * k]), 3)?.view([t, n, 3, k]);
        let low = match cfg.vector_dynamics {
            VectorDynamics::Authors => cfg.activation.apply(&low),
            VectorDynamics::Equivariant => low,
        };
        let moved = vectors.unsqueeze(0) + low; // [T, N, 3, K]
        let mut x = (moved.select(3, 0) + centroid.unsqueeze(0)).reshape([t * n, 3]);
        let mut v = (k == 2).then(|| moved.select(3, 1).reshape([t * n, 3]));

        // 5. Decoder on every target frame.
        let taus = Tensor::from_slice(host_times)
            .to_kind(opts.0)
            .to_device(opts.1);
        let emb = sinusoidal_embedding(&taus.view([g, t]), cfg.time_emb_dim) // [G, T, E]
            .index_select(0, node_graph)
            .permute([1, 0, 2]);
        let mut inputs = vec![h_t, emb];
        if cfg.cond_dim > 0 {
            inputs.push(z.map_or_else(
                || Tensor::zeros([t, n, cfg.cond_dim], opts),
                Tensor::shallow_clone,
            ));
        }
        let mut h = Tensor::cat(&inputs, -1).view([t * n, -1]);
        let frames = s.graph.repeat_frames(t);
        let edge_attr = s.edge_attr.map(|e| e.repeat([t, 1]));
        for layer in &self.decoder {
            let next = layer.forward_unchecked(&x, &h, v.as_ref(), &frames, edge_attr.as_ref());
            (x, h, v) = (next.x, next.h, next.v);
        }
        Ok(EgnoOutput {
            x: x.view([t, n, 3]),
            v: v.map(|v| v.view([t, n, 3])),
            h: h.view([t, n, -1]),
        })
    }
}
