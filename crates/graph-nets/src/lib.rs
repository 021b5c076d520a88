//! Graph networks over `tch` for long-horizon particle dynamics: the networks of SGDD
//! (Spectral-Guided Dynamics Distillation, seed 000).
//!
//! | SGDD role | type | reads | gives |
//! |---|---|---|---|
//! | teacher `E_dyn` | [`Stsgnn`] | the trajectory `G_0, G_{1:T}` ([`Trajectory`]) | `z_dyn`: `[T, N, d]` |
//! | student `E_init` | [`InitEncoder`] = [`Gat`] + [`TemporalLift`] | `G_0` ([`InitialState`]) | `z_init`: `[T, N, d]` |
//! | decoder | [`Egno`] or [`GfNode`] (conditioned on `z^sg`) | `G_0` and `z_cond: [T, N, d]` | `x_{1:T}`: `[T, N, 3]` |
//!
//! Grid forecasters for SDKD's Navier–Stokes setting: [`GridNet`] (FNO-2d teacher, ResNet and
//! U-Net students; `[B, T_in, H, W]` → `[B, T_out, H, W]`).
//!
//! Building blocks: [`EgnnLayer`] (Satorras et al. 2021), the Fourier temporal convolutions
//! [`SpectralTimeConv`] / [`EquivariantTimeConv`] (EGNO, Xu et al. 2024), and [`GraphBatch`]
//! (block-diagonal batching, segment reductions, radius / k-NN / multi-hop edges).
//!
//! # Conventions
//! - A batch of graphs is one graph of `N_total` nodes ([`GraphBatch`]); an edge `(i, j)` sends
//!   a message from `j` to `i`.
//! - Per-node, per-frame tensors are `[T, N_total, d]`; flattened, row `t·N_total + n`
//!   (SPEC §4). For a single graph this is SGE's `t·N + n`; per-graph SGE outputs are put side by
//!   side along the node axis with [`GraphBatch::f_cat_frames`].
//! - **Symmetry.** Encoders read coordinates only through distances and norms, so `z_dyn` and
//!   `z_init` are E(3)-invariant; the decoder's positions rotate, reflect and translate with
//!   `x_0` (velocities rotate and reflect). The integration tests check all of this.
//! - Every layer follows `FooConfig` (serde, defaults, unknown keys rejected) →
//!   `.build(path)` → `forward`. `f_forward` validates its inputs and returns [`Error`];
//!   `forward` panics with the same message. Models live on the device of their `nn::Path`;
//!   inputs must be on that device and of the store's floating kind.
//!
//! # Example
//! ```no_run
//! use graph_nets::{EgnoConfig, GraphBatch, InitialState};
//! use tch::{Device, Kind, Tensor, nn};
//!
//! let device = Device::cuda_if_available();
//! let vs = nn::VarStore::new(device);
//! let decoder = EgnoConfig { node_in: 1, cond_dim: 16, horizon: 8, ..Default::default() }
//!     .build(vs.root() / "decoder")?;
//! let graph = GraphBatch::batch(&[
//!     GraphBatch::complete(&[5], device)?,
//!     GraphBatch::from_undirected(3, &[(0, 1), (1, 2)], device)?,
//! ])?;
//! let opts = (Kind::Float, device);
//! let (x, v, h) = (Tensor::randn([8, 3], opts), Tensor::randn([8, 3], opts), Tensor::ones([8, 1], opts));
//! let state = InitialState { x: &x, v: Some(&v), h: &h, graph: &graph, edge_attr: None };
//! let z = Tensor::randn([8, 8, 16], opts); // [T, N_total, d]
//! let out = decoder.f_forward(&state, Some(&z))?;
//! assert_eq!(out.x.size(), [8, 8, 3]);
//! # Ok::<(), graph_nets::Error>(())
//! ```

mod batch;
mod egnn;
mod egno;
mod error;
mod fourier;
mod gat;
mod gfnode;
mod grid;
mod mlp;
pub mod ode;
mod stsgnn;

pub use batch::{GraphBatch, one_hot, segment_mean, segment_softmax, segment_sum};
pub use egnn::{EgnnLayer, EgnnLayerConfig, EgnnState, EgnnStyle};
pub use egno::{
    Egno, EgnoConfig, EgnoOutput, InitialState, sinusoidal_embedding, sinusoidal_time_embedding,
};
pub use error::{Error, Result, check_shape, ensure_at_least, ensure_config};
pub use fourier::{
    EquivariantTimeConv, EquivariantTimeConvConfig, SpectralTimeConv, SpectralTimeConvConfig,
};
pub use gat::{Gat, GatConfig, InitEncoder, InitEncoderConfig, TemporalLift, TemporalLiftConfig};
pub use gfnode::{GfNode, GfNodeConfig, ModeInteraction, OdeTime, VectorDynamics};
pub use grid::{GridArch, GridNet, GridNetConfig};
pub use mlp::{Activation, Mlp, linear, xavier_uniform};
pub use stsgnn::{Stsgnn, StsgnnConfig, Trajectory};
