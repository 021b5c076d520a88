//! End-to-end distillation (SPEC §4.8; SDKD seeds 001/003, closed-form ridge seed 002): frozen
//! teachers loaded from checkpoints of any model kind teach a light student.
//!
//! The student minimises (SDKD eq. 11–14)
//!
//! ```text
//! L = ‖S(X) − Y‖² + λ Σ_m α_m L_KD(S(X), T_m(X))
//! L_KD(S, T) = ‖Ψ_h(S) − Ψ_h(T)‖² + α ‖Ψ_l(S) − Ψ_l(T)‖²      (freq; or MSE(S, T): output)
//! ```
//!
//! on the predicted trajectories, with `Ψ_l` the projection onto the dataset graph's lowest
//! joint spatio-temporal modes (SPEC §4.2) or a DFT cutoff along time. With several teachers the
//! weights `α` are A2D's (eq. 13: the capped-simplex min-norm point of the teachers' KD-loss
//! gradients `g_m = ∇_θ L_KD(S, T_m)`, recomputed every step, and the student descends along
//! `∇_θ‖S − Y‖² + λ Σ α_m g_m`) or the plain average (AVER-MKD). Without KD (`loss = "none"`) the
//! same code trains the student alone. The MLP student's readout can start from the closed-form
//! ridge fit onto a teacher's predictions (`init = "ridge"`).
//!
//! A run directory holds what a training run's does (`config.toml`, `metrics.jsonl`,
//! `checkpoint.safetensors`, `best.safetensors`, `result.json`, `timing.json`, `tensorboard/`,
//! with the same guarantees: locked, never overwritten without [`RunMode::Force`], bit-exact
//! resume, a stop before a non-finite step), plus the teachers' test metrics, parameter counts and
//! the inference throughput of student and teachers measured in one process.

mod config;
mod grid;
mod student;
mod teachers;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use distill_kd::{
    A2d, A2dConfig, BandSplitter, DftSplitterConfig, FreqAlignConfig, FreqAlignedLoss, Reduction,
    Weighting, flat_gradient, gradient_surrogate,
};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::{Device, Tensor, nn::VarStore};

pub use config::{
    BandsKind, CheckedDistillConfig, DistillConfig, InitKind, KdConfig, KdLoss, StudentArch,
    StudentConfig,
};
pub use grid::{
    CheckedGridConfig, GridDataConfig, GridDistillConfig, GridDistiller, GridMetrics, GridResult,
    GridTeacher, GridTeacherReport, GridWindows,
};
pub use student::{CoordMlp, Student};
pub use teachers::Teacher;

use crate::checkpoint::{self, CheckpointMeta};
use crate::data::{Batch, GraphCache, Prepared};
use crate::eval;
use crate::metrics::Metrics;
use crate::optim::Adam;
use crate::rundir::{RunDir, RunMode};
use crate::runlog;
use crate::sge::gap_splitter;
use crate::tensorboard::EventWriter;
use crate::trainer::{
    Best, Event, Observer, Splits, dataset_fingerprint, lr_at, step_seed, write_json,
};

/// The distillation loss between the student's and a teacher's predictions.
enum Kd {
    None,
    Output,
    Freq(FreqAlignedLoss<Box<dyn BandSplitter>>),
}

impl Kd {
    fn new(cfg: &KdConfig, p: &Prepared, device: Device) -> Result<Self> {
        Ok(match cfg.loss {
            KdLoss::None => Self::None,
            KdLoss::Output => Self::Output,
            KdLoss::Freq => {
                let splitter: Box<dyn BandSplitter> = match cfg.bands {
                    BandsKind::Joint => Box::new(gap_splitter(
                        p.n as usize,
                        &p.undirected,
                        p.t as usize,
                        cfg.k.min((p.n * p.t) as usize),
                        true,
                        "distill.k",
                        device,
                    )?),
                    // signals [B, T, N, 3]: time is axis -3
                    BandsKind::TimeDft => Box::new(
                        DftSplitterConfig {
                            dims: vec![-3],
                            cutoffs: vec![cfg.time_cutoff],
                            mask: Default::default(),
                        }
                        .check()?,
                    ),
                    BandsKind::Dft => bail!(
                        "distill.bands = \"dft\" (space and time) is for grid data; particle \
                         runs use \"joint\" or \"time-dft\""
                    ),
                };
                Self::freq(cfg, splitter)?
            }
        })
    }

    /// Frequency-aligned KD (SDKD eq. 10) with `splitter`'s bands and `cfg`'s `α`.
    fn freq(cfg: &KdConfig, splitter: Box<dyn BandSplitter>) -> Result<Self> {
        Ok(Self::Freq(
            FreqAlignConfig {
                alpha: cfg.alpha,
                lambda: cfg.lambda,
                detach_teacher: true,
            }
            .check(splitter)?,
        ))
    }

    /// `L_KD` (mean over elements) between predictions of the splitter's layout, the teacher's
    /// detached.
    fn loss_shaped(&self, student: &Tensor, teacher: &Tensor) -> Result<Option<Tensor>> {
        let teacher = teacher.detach();
        Ok(match self {
            Self::None => None,
            Self::Output => Some(student.mse_loss(&teacher, tch::Reduction::Mean)),
            Self::Freq(loss) => Some(loss.forward(student, &teacher, Reduction::Mean)?),
        })
    }

    /// `L_KD` (mean over elements) between predictions `[T, B·N, 3]`.
    fn loss(&self, student: &Tensor, teacher: &Tensor, b: i64, n: i64) -> Result<Option<Tensor>> {
        let t = student.size()[0];
        let shape = |x: &Tensor| x.reshape([t, b, n, 3]).permute([1, 0, 2, 3]);
        match self {
            Self::Freq(_) => self.loss_shaped(&shape(student), &shape(teacher)),
            _ => self.loss_shaped(student, teacher),
        }
    }
}

/// One line of a distillation run's `metrics.jsonl` (`M`: the validation metrics, [`Metrics`]
/// for particles, [`GridMetrics`] for grids).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DistillEpochLog<M = Metrics> {
    /// 1-based epoch.
    pub epoch: usize,
    /// Optimiser steps after the epoch.
    pub step: i64,
    /// Mean training objective `L_task + λ Σ α_m L_KD,m` (normalised units).
    pub loss: f64,
    /// Mean task loss `‖S(X) − Y‖²` (mean over elements).
    pub task: f64,
    /// Mean `L_KD` per teacher (empty without KD).
    pub kd: Vec<f64>,
    /// Mean weight `α_m` per teacher over the epoch's steps (empty without KD).
    pub alpha: Vec<f64>,
    /// Learning rate of the epoch's last step.
    pub lr: f64,
    /// Mean global gradient norm (before clipping).
    pub grad_norm: f64,
    /// Training throughput (wall clock).
    pub samples_per_second: f64,
    /// Validation metrics (original units), on evaluation epochs.
    pub val: Option<M>,
}

/// A teacher in a [`DistillResult`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TeacherReport {
    /// Its checkpoint.
    pub checkpoint: PathBuf,
    /// Its model kind.
    pub kind: String,
    /// Its parameters.
    pub parameters: i64,
    /// Its test metrics (the same evaluation code as the student's).
    pub test: Metrics,
    /// Its mean A2D / average weight over every step of the run (absent without KD).
    pub mean_alpha: Option<f64>,
}

/// What a finished distillation run reports (`result.json`; nothing in it depends on the clock).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DistillResult {
    /// `egno` or `mlp`.
    pub student: String,
    /// `none`, `output` or `freq`.
    pub kd: KdLoss,
    /// `a2d` or `average`.
    pub weighting: Weighting,
    /// `random` or `ridge`.
    pub init: InitKind,
    /// Dataset directory.
    pub dataset: PathBuf,
    /// The seed.
    pub seed: u64,
    /// Epoch (1-based) of the student evaluated.
    pub best_epoch: usize,
    /// Epochs trained.
    pub epochs: usize,
    /// Optimiser steps.
    pub steps: i64,
    /// Validation metrics of the student evaluated.
    pub val: Metrics,
    /// Its test metrics (original units).
    pub test: Metrics,
    /// The student's parameters.
    pub student_parameters: i64,
    /// The teachers.
    pub teachers: Vec<TeacherReport>,
    /// Rows of the closed-form initialisation, when done.
    pub ridge_rows: Option<u64>,
    /// Why training ended before `train.epochs`, if it did.
    pub stopped_early: Option<String>,
}

/// Wall-clock figures of a distillation run (`timing.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DistillTiming {
    /// Seconds spent in training epochs, over every invocation of the run.
    pub train_seconds: f64,
    /// Training samples per second over the run.
    pub samples_per_second: f64,
    /// Test samples per second of the student's prediction (the best of three passes over the
    /// test split, this process).
    pub student_inference: f64,
    /// The same for each teacher, measured beside it.
    pub teacher_inference: Vec<f64>,
}

/// Everything of a run that a checkpoint carries beside the tensors.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct DistillState<M = Metrics> {
    epochs: Vec<DistillEpochLog<M>>,
    best: Option<Best<M>>,
    stale_evals: usize,
    stopped_early: Option<String>,
    train_seconds: f64,
    samples_seen: f64,
    ridge_rows: Option<u64>,
    /// The teachers' tensor checksums: a resume refuses changed teachers.
    teachers_sha256: Vec<String>,
    /// Σ over steps of each teacher's weight, and the steps summed.
    alpha_sums: Vec<f64>,
    alpha_steps: u64,
}

impl<M> DistillState<M> {
    /// A fresh run's state for teachers of these tensor checksums.
    fn new(teachers_sha256: Vec<String>) -> Self {
        Self {
            epochs: Vec::new(),
            best: None,
            stale_evals: 0,
            stopped_early: None,
            train_seconds: 0.0,
            samples_seen: 0.0,
            ridge_rows: None,
            alpha_sums: vec![0.0; teachers_sha256.len()],
            teachers_sha256,
            alpha_steps: 0,
        }
    }
}

/// Options beside the config.
#[derive(Default)]
pub struct DistillOptions {
    /// New run, replace a run, or continue one.
    pub mode: RunMode,
    /// Progress and notes (epochs arrive as notes).
    pub observer: Option<Observer>,
}

impl std::fmt::Debug for DistillOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DistillOptions")
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

/// What one training step computed.
#[derive(Debug)]
pub struct DistillStep {
    /// The objective `L_task + λ Σ α_m L_KD,m (+ β L_hidden)`.
    pub loss: f64,
    /// `L_task`.
    pub task: f64,
    /// `β L_hidden`, the weighted hidden-state KD term (0 without it).
    pub hidden: f64,
    /// `L_KD,m` per teacher.
    pub kd: Vec<f64>,
    /// `α_m` per teacher.
    pub alpha: Vec<f64>,
    /// The gradient of the step, one slot per trainable variable of the student (in the
    /// optimiser's order: variable name order).
    pub gradients: Vec<Option<Tensor>>,
}

/// The weights, objective and gradient of one step from its pieces (SDKD eq. 11–14): the task
/// loss and each teacher's `L_KD` with their graphs to `params`; the weights are the average with
/// one teacher or `average` weighting, else A2D's on the Gram matrix of the KD-loss gradients;
/// the gradient is `∇L_task + λ Σ α_m ∇L_KD,m (+ ∇ hidden)`, one slot per variable of `opt`.
/// `hidden` is an unweighted extra term (the hidden-state KD, already times β).
fn weighted_step(
    task: &Tensor,
    kd: &[Tensor],
    hidden: Option<&Tensor>,
    lambda: f64,
    a2d: &A2d,
    params: &[Tensor],
    opt: &Adam,
) -> Result<DistillStep> {
        let base = match hidden {
            Some(h) => task + h,
            None => task.shallow_clone(),
        };
        let task = &base;
        let m = kd.len();
        let (alpha, objective) = if m == 0 {
            (Vec::new(), task.shallow_clone())
        } else if m == 1 || a2d.config().weighting == Weighting::Average {
            let alpha = vec![1.0 / m as f64; m];
            let sum = kd
                .iter()
                .fold(task.shallow_clone(), |acc, l| acc + l * (lambda / m as f64));
            (alpha, sum)
        } else {
            // A2D (SDKD eq. 13–14) on the teachers' KD-loss gradients
            let grads = kd
                .iter()
                .map(|l| flat_gradient(l, params))
                .collect::<distill_kd::Result<Vec<_>>>()?;
            let step = a2d.step(&grads)?;
            // the weights may come from unit-normalised gradients (distill.a2d_normalise); the
            // direction always combines the teachers' own gradients, so λ keeps eq. 11's scale
            let combined = if a2d.config().unit_normalise {
                step.alpha
                    .iter()
                    .zip(&grads)
                    .map(|(a, g)| g * *a)
                    .reduce(|x, y| x + y)
                    .context("at least two teachers")?
            } else {
                step.combined_gradient
            };
            let surrogate = task + gradient_surrogate(params, &combined)? * lambda;
            (step.alpha, surrogate)
        };
        let kd_values: Vec<f64> = kd.iter().map(|l| l.double_value(&[])).collect();
        let hidden = hidden.map_or(0.0, |h| h.double_value(&[]));
        let task_value = task.double_value(&[]) - hidden;
        let loss = task_value
            + hidden
            + lambda
                * kd_values
                    .iter()
                    .zip(&alpha)
                    .map(|(l, a)| l * a)
                    .sum::<f64>();
        let gradients = opt.gradients(&objective)?;
        Ok(DistillStep {
            loss,
            task: task_value,
            hidden,
            kd: kd_values,
            alpha,
            gradients,
        })
    }


/// The sums over one epoch's steps that its [`DistillEpochLog`] reports.
struct EpochSums {
    loss: f64,
    task: f64,
    norm: f64,
    count: f64,
    steps: f64,
    kd: Vec<f64>,
    alpha: Vec<f64>,
}

impl EpochSums {
    fn new(teachers: usize) -> Self {
        Self {
            loss: 0.0,
            task: 0.0,
            norm: 0.0,
            count: 0.0,
            steps: 0.0,
            kd: vec![0.0; teachers],
            alpha: vec![0.0; teachers],
        }
    }

    /// Adds a step over `w` samples; the run's α sums (`alpha_sums`, `alpha_steps`) too.
    fn add(
        &mut self,
        step: &DistillStep,
        w: f64,
        norm: f64,
        alpha_sums: &mut [f64],
        alpha_steps: &mut u64,
    ) {
        self.loss += step.loss * w;
        self.task += step.task * w;
        self.norm += norm;
        self.steps += 1.0;
        self.count += w;
        for (i, (l, a)) in step.kd.iter().zip(&step.alpha).enumerate() {
            self.kd[i] += l * w;
            self.alpha[i] += a;
            alpha_sums[i] += a;
        }
        if !step.alpha.is_empty() {
            *alpha_steps += 1;
        }
    }

    /// The epoch's log line (0-based `epoch`).
    fn log<M>(
        &self,
        epoch: usize,
        step: i64,
        lr: f64,
        seconds: f64,
        distilled: bool,
        val: Option<M>,
    ) -> DistillEpochLog<M> {
        let mean = |v: &[f64], by: f64| -> Vec<f64> {
            if distilled {
                v.iter().map(|s| s / by).collect()
            } else {
                Vec::new()
            }
        };
        DistillEpochLog {
            epoch: epoch + 1,
            step,
            loss: self.loss / self.count,
            task: self.task / self.count,
            kd: mean(&self.kd, self.count),
            alpha: mean(&self.alpha, self.steps),
            lr,
            grad_norm: self.norm / self.steps,
            samples_per_second: self.count / seconds.max(1e-9),
            val,
        }
    }
}

/// The gradient norm of a step that may be taken, or why it must not be: a non-finite loss or
/// gradient, or a loss above `train.divergence_factor` times the best epoch loss (0-based
/// `epoch`).
fn check_step(
    t: &crate::config::TrainConfig,
    step: &DistillStep,
    best_loss: f64,
    iteration: u64,
    epoch: usize,
) -> std::result::Result<f64, String> {
    if !step.loss.is_finite() {
        return Err(format!(
            "the loss became {} at step {iteration} (epoch {})",
            step.loss,
            epoch + 1
        ));
    }
    if t.divergence_factor > 0.0 && step.loss > t.divergence_factor * best_loss {
        return Err(format!(
            "the loss diverged at step {iteration} (epoch {}): {:.4e} is more than \
             train.divergence_factor = {} times the best epoch loss {best_loss:.4e}",
            epoch + 1,
            step.loss,
            t.divergence_factor
        ));
    }
    let norm = Adam::grad_norm(&step.gradients);
    if !norm.is_finite() {
        return Err(format!(
            "the gradient norm became {norm} at step {iteration} (epoch {})",
            epoch + 1
        ));
    }
    Ok(norm)
}

/// A step's TensorBoard scalars: loss, task loss, learning rate, gradient norm, throughput, and
/// per teacher `L_KD` and `α`.
fn step_scalars(
    tb: &mut EventWriter,
    iteration: u64,
    step: &DistillStep,
    lr: f64,
    norm: f64,
    samples_per_second: f64,
) -> Result<()> {
    let mut scalars: Vec<(String, f64)> = vec![
        ("train/loss".into(), step.loss),
        ("train/L_task".into(), step.task),
        ("train/hidden".into(), step.hidden),
        ("train/lr".into(), lr),
        ("train/grad_norm".into(), norm),
        ("train/samples_per_second".into(), samples_per_second),
    ];
    for (i, (l, a)) in step.kd.iter().zip(&step.alpha).enumerate() {
        scalars.push((format!("train/L_kd/teacher{i}"), *l));
        scalars.push((format!("train/alpha/teacher{i}"), *a));
    }
    let refs: Vec<(&str, f64)> = scalars.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    tb.scalars(iteration as i64 + 1, &refs)
}

/// A distillation run: `new → (resume) → epoch … → finish`.
pub struct Distiller {
    cfg: CheckedDistillConfig,
    config_text: String,
    dir: RunDir,
    device: Device,
    splits: Splits,
    teachers: Vec<Teacher>,
    vs: VarStore,
    student: Student,
    /// The student's trainable variables, in the optimiser's order.
    params: Vec<Tensor>,
    opt: Adam,
    kd: Kd,
    a2d: A2d,
    steps_per_epoch: u64,
    state: DistillState,
    dataset_sha256: Option<String>,
    graphs: GraphCache,
    tensorboard: Option<EventWriter>,
    observer: Option<Observer>,
}

impl std::fmt::Debug for Distiller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Distiller")
            .field("dir", &self.dir.path())
            .field("teachers", &self.teachers.len())
            .field("epochs_done", &self.state.epochs.len())
            .finish_non_exhaustive()
    }
}

impl Distiller {
    /// Claims the run directory, loads the data and the frozen teachers, builds the student
    /// (solving its readout in closed form with `init = "ridge"`) or, with [`RunMode::Resume`],
    /// restores it from the checkpoint after checking what changed.
    pub fn new(cfg: CheckedDistillConfig, out: &Path, mut opts: DistillOptions) -> Result<Self> {
        let dir = RunDir::claim(out, opts.mode)?;
        let t = &cfg.train;
        let device = t.device.resolve()?;
        if t.threads > 0 {
            tch::set_num_threads(t.threads);
        }
        let data_cfg = crate::RunConfig {
            data: cfg.data.clone(),
            model: cfg.student.egno(),
            train: t.clone(),
        };
        let splits = Splits::load(&data_cfg)?;
        let dataset_sha256 = dataset_fingerprint(&cfg.data.dir).ok();
        let teachers = cfg
            .distill
            .teachers
            .iter()
            .map(|p| {
                Teacher::load(
                    p,
                    &cfg,
                    &splits,
                    dataset_sha256.as_deref(),
                    t.batch_size,
                    device,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let (mut vs, mut student) = Student::build(&cfg.student, &splits.train, t.seed, device)?;
        let params: Vec<Tensor> = vs
            .variables()
            .into_iter()
            .collect::<std::collections::BTreeMap<_, _>>()
            .into_values()
            .filter(Tensor::requires_grad)
            .collect();
        let mut opt = Adam::new(&vs, t.adam);
        let kd = Kd::new(&cfg.distill, &splits.train, device)?;
        let a2d = A2dConfig {
            weighting: cfg.distill.weighting,
            cap: cfg.distill.cap,
            unit_normalise: cfg.distill.a2d_normalise,
            ..Default::default()
        }
        .check()?;
        let steps_per_epoch = (splits.train.samples as u64).div_ceil(t.batch_size as u64);
        let mut observer = opts.observer.take();
        let mut note = |s: &str| {
            if let Some(o) = observer.as_mut() {
                o(Event::Note(s));
            }
        };
        let teachers_sha256: Vec<String> =
            teachers.iter().map(|t| t.tensors_sha256.clone()).collect();
        let mut state = DistillState::new(teachers_sha256.clone());
        if opts.mode == RunMode::Resume {
            let ck = dir.join("checkpoint.safetensors");
            let (tensors, meta) = checkpoint::load(&ck)?;
            let before = DistillConfig::parse(&meta.config, &[])
                .with_context(|| format!("the config stored in {}", ck.display()))?;
            for n in runlog::resume_changes(out, "distilled", &cfg.differences(&before))? {
                note(&n);
            }
            checkpoint::apply(&ck, &tensors, meta.step, &mut vs, Some(&mut opt))?;
            state = serde_json::from_value(meta.history)
                .with_context(|| format!("{}: the run history", ck.display()))?;
            ensure!(
                state.teachers_sha256 == teachers_sha256,
                "cannot resume {}: a teacher checkpoint changed since the run started",
                out.display()
            );
            opt.set_lr(t.adam.lr);
        } else if cfg.distill.init == InitKind::Ridge {
            let teacher = &teachers[cfg.distill.ridge_teacher];
            let rows = student.ridge_init(
                &splits.train,
                t.batch_size,
                device,
                cfg.distill.ridge_lambda,
                &|idx| Ok(teacher.train_targets(idx, device)),
            )?;
            state.ridge_rows = Some(rows);
            note(&format!(
                "the student's readout solved in closed form (ridge onto teacher {}'s \
                 predictions over {rows} samples)",
                teacher.checkpoint.display()
            ));
        }
        let config_text = cfg.to_toml();
        traj_data::atomic_write(&dir.join("config.toml"), config_text.as_bytes())?;
        let tensorboard = if t.tensorboard {
            Some(EventWriter::create(&dir.join("tensorboard"))?)
        } else {
            None
        };
        let mut d = Self {
            cfg,
            config_text,
            dir,
            device,
            splits,
            teachers,
            vs,
            student,
            params,
            opt,
            kd,
            a2d,
            steps_per_epoch,
            state,
            dataset_sha256,
            graphs: GraphCache::default(),
            tensorboard,
            observer,
        };
        let done = d.state.epochs.len();
        ensure!(
            done <= d.cfg.train.epochs,
            "cannot resume {}: it has trained {done} epochs, more than train.epochs = {}",
            out.display(),
            d.cfg.train.epochs
        );
        runlog::rewrite_log(&d.dir.join("metrics.jsonl"), &d.state.epochs)?;
        if opts.mode != RunMode::Resume {
            d.save_checkpoint()?;
        }
        let total = d.steps_per_epoch * d.cfg.train.epochs as u64;
        let done = d.opt.steps() as u64;
        d.emit(Event::Start { total, done });
        Ok(d)
    }

    fn emit(&mut self, e: Event<'_>) {
        if let Some(o) = self.observer.as_mut() {
            o(e);
        }
    }

    /// The checked config.
    pub fn config(&self) -> &CheckedDistillConfig {
        &self.cfg
    }

    /// The student.
    pub fn student(&self) -> &Student {
        &self.student
    }

    /// The student's variables.
    pub fn var_store(&self) -> &VarStore {
        &self.vs
    }

    /// The frozen teachers.
    pub fn teachers(&self) -> &[Teacher] {
        &self.teachers
    }

    /// The run's data.
    pub fn splits(&self) -> &Splits {
        &self.splits
    }

    /// Epoch logs so far.
    pub fn history(&self) -> &[DistillEpochLog] {
        &self.state.epochs
    }

    /// The run directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Whether all epochs are done (or early stopping ended the run).
    pub fn finished(&self) -> bool {
        self.state.stopped_early.is_some() || self.state.epochs.len() >= self.cfg.train.epochs
    }

    fn save_checkpoint(&self) -> Result<()> {
        checkpoint::save(
            &self.dir.join("checkpoint.safetensors"),
            &self.vs,
            Some(&self.opt),
            &CheckpointMeta::new(
                self.opt.steps(),
                self.config_text.clone(),
                serde_json::to_value(&self.state)?,
            )
            .with_dataset(self.dataset_sha256.clone()),
        )
    }

    fn stop(&self, what: String) -> anyhow::Error {
        runlog::stopped(
            &self.dir.join("checkpoint.safetensors"),
            self.state.epochs.len(),
            what,
        )
    }

    /// The task loss `‖S(X) − Y‖²` and each teacher's `L_KD` (none without KD) on training
    /// samples `idx`, as scalars with their graphs to the student's variables.
    pub fn loss_pieces(&mut self, idx: &[i64]) -> Result<(Tensor, Vec<Tensor>)> {
        let batch = self
            .splits
            .train
            .batch(idx, self.device, &mut self.graphs)?;
        let pred = self.student.predict(&batch)?;
        let task = pred.mse_loss(&batch.y, tch::Reduction::Mean);
        let n = self.splits.train.n;
        let mut kd = Vec::with_capacity(self.teachers.len());
        for t in &self.teachers {
            let target = tch::no_grad(|| t.train_targets(idx, self.device));
            if let Some(l) = self.kd.loss(&pred, &target, batch.b, n)? {
                kd.push(l);
            }
        }
        Ok((task, kd))
    }

    /// The objective and gradient of one step on training samples `idx` (no update): the task
    /// loss, each teacher's `L_KD`, their weights (A2D on the Gram matrix of the KD-loss
    /// gradients, or the average) and the gradient `∇L_task + λ Σ α_m ∇L_KD,m`.
    pub fn step_gradients(&mut self, idx: &[i64]) -> Result<DistillStep> {
        let (task, kd) = self.loss_pieces(idx)?;
        weighted_step(
            &task,
            &kd,
            None,
            self.cfg.distill.lambda,
            &self.a2d,
            &self.params,
            &self.opt,
        )
    }

    /// Trains one epoch (validating when due), logs it and writes the checkpoint.
    pub fn epoch(&mut self) -> Result<&DistillEpochLog> {
        ensure!(!self.finished(), "the run is finished");
        let epoch = self.state.epochs.len();
        let t = self.cfg.train.clone();
        let total = self.steps_per_epoch * t.epochs as u64;
        let started = Instant::now();
        let mut order: Vec<i64> = (0..self.splits.train.samples).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(
            t.seed ^ (epoch as u64).wrapping_mul(0xA24B_AED4_963E_E407),
        ));
        let best_loss = self
            .state
            .epochs
            .iter()
            .map(|e| e.loss)
            .fold(f64::INFINITY, f64::min);
        let mut sums = EpochSums::new(self.teachers.len());
        let mut lr = t.adam.lr;
        for chunk in order.chunks(t.batch_size) {
            let step_started = Instant::now();
            let iteration = self.opt.steps() as u64;
            lr = lr_at(&t, iteration, self.steps_per_epoch, total);
            self.opt.set_lr(lr);
            tch::manual_seed(step_seed(t.seed, iteration));
            let step = self.step_gradients(chunk)?;
            let norm = match check_step(&t, &step, best_loss, iteration, epoch) {
                Ok(norm) => norm,
                Err(what) => return Err(self.stop(what)),
            };
            let w = chunk.len() as f64;
            sums.add(&step, w, norm, &mut self.state.alpha_sums, &mut self.state.alpha_steps);
            if let Some(tb) = self.tensorboard.as_mut() {
                let sps = w / step_started.elapsed().as_secs_f64().max(1e-9);
                step_scalars(tb, iteration, &step, lr, norm, sps)?;
            }
            self.opt.step_with(step.gradients);
            let loss = step.loss;
            self.emit(Event::Step {
                epoch: epoch + 1,
                loss,
            });
        }
        let finite = self
            .vs
            .variables()
            .values()
            .all(|v| v.isfinite().all().int64_value(&[]) == 1);
        if !finite || !self.opt.is_finite() {
            return Err(self.stop(format!(
                "the weights or the optimiser state became non-finite in epoch {}",
                epoch + 1
            )));
        }
        let seconds = started.elapsed().as_secs_f64();
        self.state.train_seconds += seconds;
        self.state.samples_seen += sums.count;
        let last = epoch + 1 == t.epochs;
        let val = if (epoch + 1).is_multiple_of(t.eval_every) || last {
            let mv = self.evaluate(&self.splits.val)?;
            let mut selection = runlog::Selection {
                best: &mut self.state.best,
                stale_evals: &mut self.state.stale_evals,
                stopped_early: &mut self.state.stopped_early,
            };
            if selection.record(&t, mv, epoch + 1, last) {
                checkpoint::save(
                    &self.dir.join("best.safetensors"),
                    &self.vs,
                    None,
                    &CheckpointMeta::new(
                        self.opt.steps(),
                        self.config_text.clone(),
                        serde_json::Value::Null,
                    )
                    .with_dataset(self.dataset_sha256.clone()),
                )?;
            }
            Some(mv)
        } else {
            None
        };
        let distilled = self.cfg.distill.loss != KdLoss::None;
        let log = sums.log(epoch, self.opt.steps(), lr, seconds, distilled, val);
        runlog::append_log(&self.dir.join("metrics.jsonl"), &log)?;
        if let Some(tb) = self.tensorboard.as_mut() {
            let mut scalars: Vec<(String, f64)> = vec![
                ("epoch/loss".into(), log.loss),
                ("epoch/L_task".into(), log.task),
            ];
            for (i, a) in log.alpha.iter().enumerate() {
                scalars.push((format!("epoch/alpha/teacher{i}"), *a));
            }
            if let Some(v) = &log.val {
                scalars.extend([
                    ("val/s2s".into(), v.s2s),
                    ("val/s2t".into(), v.s2t),
                    ("val/ade".into(), v.ade),
                    ("val/fde".into(), v.fde),
                ]);
            }
            let refs: Vec<(&str, f64)> = scalars.iter().map(|(k, v)| (k.as_str(), *v)).collect();
            tb.scalars(log.step, &refs)?;
            tb.flush()?;
        }
        let line = match &log.val {
            Some(v) => format!(
                "epoch {:>4}: loss {:.4e} (task {:.4e}), val S2S {:.4e} S2T {:.4e}{}",
                log.epoch,
                log.loss,
                log.task,
                v.s2s,
                v.s2t,
                if log.alpha.len() > 1 {
                    format!(
                        ", α {:?}",
                        log.alpha
                            .iter()
                            .map(|a| (a * 1000.0).round() / 1000.0)
                            .collect::<Vec<_>>()
                    )
                } else {
                    String::new()
                }
            ),
            None => format!("epoch {:>4}: loss {:.4e}", log.epoch, log.loss),
        };
        self.state.epochs.push(log);
        self.save_checkpoint()?;
        self.emit(Event::Note(&line));
        if let Some(msg) = self.state.stopped_early.clone() {
            self.emit(Event::Note(&msg));
        }
        self.state.epochs.last().context("an epoch was logged")
    }

    /// Trains until [`Distiller::finished`] (or `max_epochs` more epochs, when given).
    pub fn train(&mut self, max_epochs: Option<usize>) -> Result<()> {
        let mut n = 0;
        while !self.finished() && max_epochs.is_none_or(|m| n < m) {
            self.epoch()?;
            n += 1;
        }
        Ok(())
    }

    /// The student's metrics on a split (the evaluation code of every run).
    pub fn evaluate(&self, p: &Prepared) -> Result<Metrics> {
        let bs = self.cfg.train.batch_size;
        eval::metrics_with(p, bs, self.device, &|b: &Batch| self.student.predict(b))
    }

    /// Scores the validation-selected student and the teachers on the test split, measures the
    /// inference throughput of each, and (for a finished run) writes `result.json` and
    /// `timing.json`.
    pub fn finish(&mut self) -> Result<(DistillResult, DistillTiming)> {
        let Some(best) = self.state.best else {
            bail!(
                "training stopped before the first validation (epochs = {})",
                self.state.epochs.len()
            );
        };
        let finished = self.finished();
        if finished {
            checkpoint::restore(&self.dir.join("best.safetensors"), &mut self.vs, None)?;
        }
        let bs = self.cfg.train.batch_size;
        let test = &self.splits.test;
        // throughput: the best of three passes (a pass on a busy machine only undercounts)
        let timed = |predict: &dyn Fn(&Batch) -> Result<Tensor>| -> Result<(Metrics, f64)> {
            let mut best = 0.0f64;
            let mut metrics = None;
            for _ in 0..3 {
                let started = Instant::now();
                let m = eval::metrics_with(test, bs, self.device, predict)?;
                best = best.max(test.samples as f64 / started.elapsed().as_secs_f64().max(1e-9));
                metrics = Some(m);
            }
            Ok((metrics.context("three passes")?, best))
        };
        let (student_test, student_sps) = timed(&|b| self.student.predict(b))?;
        let mut teachers = Vec::new();
        let mut teacher_sps = Vec::new();
        for (i, t) in self.teachers.iter().enumerate() {
            let (m, sps) = timed(&|b| t.model.predict(b))?;
            teacher_sps.push(sps);
            teachers.push(TeacherReport {
                checkpoint: t.checkpoint.clone(),
                kind: t.kind.clone(),
                parameters: t.parameters(),
                test: m,
                mean_alpha: (self.state.alpha_steps > 0)
                    .then(|| self.state.alpha_sums[i] / self.state.alpha_steps as f64),
            });
        }
        let result = DistillResult {
            student: match self.cfg.student.kind {
                StudentArch::Egno => "egno".into(),
                StudentArch::Mlp => "mlp".into(),
            },
            kd: self.cfg.distill.loss,
            weighting: self.cfg.distill.weighting,
            init: self.cfg.distill.init,
            dataset: self.cfg.data.dir.clone(),
            seed: self.cfg.train.seed,
            best_epoch: best.epoch,
            epochs: self.state.epochs.len(),
            steps: self.opt.steps(),
            val: best.val,
            test: student_test,
            student_parameters: Student::parameters(&self.vs),
            teachers,
            ridge_rows: self.state.ridge_rows,
            stopped_early: self.state.stopped_early.clone(),
        };
        let timing = DistillTiming {
            train_seconds: self.state.train_seconds,
            samples_per_second: self.state.samples_seen / self.state.train_seconds.max(1e-9),
            student_inference: student_sps,
            teacher_inference: teacher_sps,
        };
        if finished {
            write_json(&self.dir.join("result.json"), &result)?;
            write_json(&self.dir.join("timing.json"), &timing)?;
        }
        Ok((result, timing))
    }
}

#[cfg(test)]
mod tests;
