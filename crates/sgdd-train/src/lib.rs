//! SGDD as a library: everything the `sgdd` CLI runs, without the CLI.
//!
//! - **Models** ([`Model`], from a [`ModelConfig`]): plain EGNO, SGDD-EGNO (teacher STSGNN,
//!   student GAT, the SGE layer over the joint spatio-temporal basis, alignment) and its
//!   ablations, and the untrained constant-velocity and static baselines.
//! - **The SGE layer** ([`Sge`], [`joint_basis`]; SPEC §4.3).
//! - **Training** ([`Trainer`]: `new → epoch … → finish`) from a [`CheckedRunConfig`] — the only
//!   config it accepts, produced by [`RunConfig::check`]: protected, locked run directories,
//!   bit-exact resume at every epoch boundary, learning-rate schedules, early stopping,
//!   fine-tuning from a checkpoint, a stop before a non-finite or diverging step, TensorBoard
//!   event files ([`EventWriter`]); data-parallel over a c10d process group
//!   ([`DataParallel`], `TrainerOptions::data_parallel`; SPEC §8) with the same results as
//!   one process on the same global batch.
//! - **Devices** ([`DeviceChoice`]; [`DeviceAudit`] names every tensor of a training step that
//!   is not on the model's device, and [`device_checks`] run the networks, SGE, an SGDD step
//!   and checkpoints on a device against the CPU — what `sgdd-gpu-check` runs on a GPU).
//! - **Distillation** ([`Distiller`] from a [`CheckedDistillConfig`]; SPEC §4.8): frozen
//!   teachers of any model kind teach a light student (a small EGNO or SDKD's MLP) with the
//!   frequency-aligned or plain output KD loss, several teachers weighted per step by A2D or
//!   averaged, the MLP's readout optionally solved in closed form first.
//! - **Evaluation** ([`evaluate`], [`predict_split`]) in original units with the papers' metrics
//!   ([`Metrics`]: S2S, S2T, ADE, FDE), and checkpoints that carry their config, the dataset's
//!   fingerprint and a checksum of their own tensors.
//!
//! ```no_run
//! use sgdd_train::{RunConfig, RunMode, Trainer, TrainerOptions};
//! # fn main() -> anyhow::Result<()> {
//! let cfg = RunConfig::load("configs/nbody-charged.toml".as_ref(), &["train.epochs=5".into()])?;
//! let mut trainer = Trainer::new(cfg, "runs/charged".as_ref(), TrainerOptions::default())?;
//! trainer.train(None)?;
//! let result = trainer.finish()?;
//! println!("test S2S {:.4}", result.test.s2s);
//! # Ok(()) }
//! ```

mod checkpoint;
mod config;
mod data;
mod ddp;
mod device;
mod device_check;
mod distill;
mod eval;
mod lam_slide;
mod metrics;
mod model;
mod optim;
mod rundir;
mod runlog;
mod sge;
mod tensorboard;
mod trainer;

pub use checkpoint::{
    CheckpointMeta, load as load_checkpoint, restore as restore_checkpoint, save as save_checkpoint,
};
pub use config::{
    AlignGate, CheckedRunConfig, DataConfig, DecoderKind, GfNodeSettings, LambdaDecay, LrSchedule,
    ModelConfig, ModelKind, OnDivergence, RESUMABLE_KEYS, RunConfig, ScheduleName, SelectMetric,
    StudentKind, TeacherPath, TrainConfig, WindowGraph,
};
pub use data::{
    Batch, GraphCache, Horizon, Prepared, SampleGraphs, load as load_split, prepare, to_original,
};
pub use ddp::{DataParallel, StepTerms, shard};
pub use device::DeviceChoice;
pub use device_check::{
    DeviceAudit, DeviceCheck, FORWARD_TOLERANCE, GRADIENT_TOLERANCE, Misplaced, StepAudit,
    audit_training_step, check_checkpoint_round_trip, check_graph_nets, check_sgdd_step, check_sge,
    device_checks, max_rel_diff,
};
pub use distill::{
    BandsKind, CheckedDistillConfig, CheckedGridConfig, CoordMlp, DistillConfig, DistillEpochLog,
    DistillOptions, DistillResult, DistillStep, DistillTiming, Distiller, GridDataConfig,
    GridDistillConfig, GridDistiller, GridMetrics, GridResult, GridTeacher, GridTeacherReport,
    GridWindows, InitKind, KdConfig, KdLoss, Student, StudentArch, StudentConfig, Teacher,
    TeacherReport,
};
pub use eval::{
    ErrorSpectrum, Predictions, Rollout, error_spectrum, evaluate, evaluate_on, evaluate_teacher,
    imitation_r2, imitation_r2_on, predict_split, rollout,
};
pub use lam_slide::{
    LamEpochLog, LamSlide, LamSlideConfig, LamSlideResult, LamSlideTrainer, LamWindows, Stage,
    StageChoice, StageMetrics, const_vel_metrics, restore_lam_slide,
};
pub use metrics::{
    BatchSums, ImitationSums, MetricSums, Metrics, SampledMetricSums, SampledMetrics,
};
pub use model::{Model, ProblemDims, StepLoss};
pub use optim::{Adam, AdamConfig, StepInfo};
pub use rundir::{RUN_FILES, RunDir, RunMode};
pub use sge::{Sge, SplitterCache, joint_basis, splitter, splitter_leading};
pub use tensorboard::EventWriter;
pub use trainer::{
    Best, EpochLog, Event, Observer, RunResult, Splits, Timing, Trainer, TrainerOptions,
    build_model, checkpoint_config, dataset_fingerprint, frames_of, lr_at, restore_model,
};
