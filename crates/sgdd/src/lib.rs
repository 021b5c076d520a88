//! Spectral-Guided Dynamics Distillation (SGDD): the app crate behind the `sgdd` CLI.
//!
//! It wires the workspace's crates into the product: the SGE layer over
//! [`spectral_core`]'s joint bases ([`Sge`], [`joint_basis`]), the SGDD model and its baselines
//! ([`Model`]: plain EGNO, SGDD-EGNO and its ablations, constant velocity), training with exact
//! resume and atomic checkpoints ([`train::run`]), the metrics of the papers ([`Metrics`]: S2S,
//! S2T, ADE, FDE in original units), and the figures of a run.

mod checkpoint;
pub mod cli;
mod config;
mod data;
mod device;
mod metrics;
mod model;
mod optim;
mod plots;
mod sge;
pub mod train;

pub use checkpoint::{
    CheckpointMeta, load as load_checkpoint, restore as restore_checkpoint, save as save_checkpoint,
};
pub use config::{
    DataConfig, ModelConfig, ModelKind, RunConfig, StartsKind, TargetsKind, TrainConfig,
};
pub use data::{Batch, GraphCache, Prepared, prepare};
pub use device::DeviceChoice;
pub use metrics::{MetricSums, Metrics};
pub use model::{Model, ProblemDims, StepLoss};
pub use optim::{Adam, AdamConfig};
pub use plots::{Bars, Series, grouped_bars, loss_curve, trajectories};
pub use sge::{BasisCache, Sge, joint_basis, splitter};
