//! LaM-SLidE (seed 004): latent space dynamics of entity sets through identifiers.
//!
//! A system of `N` entities per frame (atoms, particles, joints) has no canonical order and
//! may change size, so LaM-SLidE does not model it directly: each sample draws an injection of
//! identifiers `π(i)` from a pool of `u ≥ N` ([`IdentifierPool`]), and a codec ([`Codec`])
//! maps a frame to a fixed set of `L` latent tokens by cross-attention from learned queries to
//! the entity tokens, and back by cross-attention from the identifiers to the latents. A
//! trajectory of `T` frames becomes a latent trajectory `[T, L, D]` on which a transformer
//! flow model ([`LatentFlow`]) learns the stochastic interpolant from Gaussian noise to the
//! data conditioned on the given frames ([`Gvp`]); samples are drawn by integrating its
//! probability-flow ODE with graph-nets' one integrator ([`graph_nets::ode`]) and decoded.
//!
//! | stage | type | reads | gives |
//! |---|---|---|---|
//! | identifiers | [`IdentifierPool`] | `N`, a seed, sample indices | `[B, N]` identifiers |
//! | 1: codec | [`Codec`] | positions `[B, N, 3]`, types, identifiers | `z: [B, L, D]`, and back |
//! | 2: flow | [`LatentFlow`] | `x_t, t, x_cond, mask`: `[B, T, L, D]` | `x̂_1: [B, T, L, D]` |
//! | sampling | [`sample_latents`], [`sample_trajectories`] | given frames, a noise seed | `[B, T, L, D]`, `[B, T, N, 3]` |
//!
//! # Conventions
//! - Every layer follows `FooConfig` (serde, defaults, unknown keys rejected) → `.build(path)`.
//!   `f_` methods validate their inputs and return [`Error`]; the others panic with its message.
//! - All randomness of the method (identifier draws, rigid augmentations, interpolation times,
//!   noise) comes from explicit ChaCha8 streams ([`random`]), never from libtorch's global
//!   generator: a seed gives the same draws on every run and in any batch composition.
//! - Entities of one batch share `N`; frames are flattened sample-major (`b·T + t`).

mod attention;
mod codec;
mod ema;
mod error;
mod flow;
mod ids;
mod interpolant;
pub mod random;
mod sample;
#[cfg(test)]
mod test_util;

pub use attention::{AttentionBlock, AttentionBlockConfig, Rope, rms_norm};
pub use codec::{
    Codec, CodecConfig, CodecLoss, CodecLossWeights, Decoded, augment_rigid, inter_distance_mse,
    pairwise_distances, position_mse, type_cross_entropy,
};
pub use ema::Ema;
pub use error::{Error, Result};
pub use flow::{LatentFlow, LatentFlowConfig};
pub use ids::{IdentifierKind, IdentifierPool, IdentifierPoolConfig, repeat_frames};
pub use interpolant::Gvp;
pub use sample::{
    Conditioning, Fill, FlowLoss, FlowLossWeights, SamplerConfig, TrajectoryBatch, conditioning,
    const_vel_frames, encode_frames, flow_loss, sample_latents, sample_trajectories,
};
