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
//! same code trains the student alone. The student's readout (the MLP's linear readout, or the
//! EGNO's last coordinate heads) can start from the closed-form ridge fit onto a teacher's
//! predictions (`init = "ridge"`, seed 002).
//!
//! A run directory holds what a training run's does (`config.toml`, `metrics.jsonl`,
//! `checkpoint.safetensors`, `best.safetensors`, `result.json`, `timing.json`, `tensorboard/`,
//! with the same guarantees: locked, never overwritten without [`RunMode::Force`], bit-exact
//! resume, a stop before a non-finite step), plus the teachers' test metrics, parameter counts and
//! the inference throughput of student and teachers measured in one process.

mod config;
mod grid;
mod run;
mod student;
mod teachers;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use distill_kd::{
    A2d, BandSplitter, DftSplitterConfig, FreqAlignConfig, FreqAlignedLoss, Reduction, Weighting,
    flat_gradient, gradient_surrogate,
};
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

use run::{KdRun, OpenRun, timed};

use crate::data::{Batch, GraphCache, Prepared};
use crate::eval;
use crate::metrics::Metrics;
use crate::optim::Adam;
use crate::rundir::RunMode;
use crate::sge::gap_splitter;
use crate::tensorboard::EventWriter;
use crate::trainer::{Best, Observer, Splits, dataset_fingerprint};

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
    device: Device,
    splits: Splits,
    teachers: Vec<Teacher>,
    vs: VarStore,
    student: Student,
    kd: Kd,
    graphs: GraphCache,
    run: KdRun<Metrics>,
}

impl std::fmt::Debug for Distiller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.run.debug(f, "Distiller")
    }
}

impl Distiller {
    /// Claims the run directory, loads the data and the frozen teachers, builds the student
    /// (solving its readout in closed form with `init = "ridge"`) or, with [`RunMode::Resume`],
    /// restores it from the checkpoint after checking what changed.
    pub fn new(cfg: CheckedDistillConfig, out: &Path, opts: DistillOptions) -> Result<Self> {
        let t = &cfg.train;
        let (dir, device) = run::claim(out, opts.mode, t)?;
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
        let kd = Kd::new(&cfg.distill, &splits.train, device)?;
        let differences = |text: &str| -> Result<Vec<(String, String, String)>> {
            Ok(cfg.differences(&DistillConfig::parse(text, &[])?))
        };
        let mut run = KdRun::open(
            OpenRun {
                dir,
                out,
                opts,
                train: t.clone(),
                kd: &cfg.distill,
                config_text: cfg.to_toml(),
                samples: splits.train.samples,
                teachers_sha256: teachers.iter().map(|t| t.tensors_sha256.clone()).collect(),
                dataset_sha256,
                what: "distilled",
                differences: &differences,
            },
            &mut vs,
        )?;
        run.ridge_init(cfg.distill.init, &mut || {
            let teacher = &teachers[cfg.distill.ridge_teacher];
            let rows = student.ridge_init(
                &splits.train,
                t.batch_size,
                device,
                cfg.distill.ridge_lambda,
                &|idx| Ok(teacher.train_targets(idx, device)),
            )?;
            Ok((
                rows,
                format!("teacher {}'s predictions", teacher.checkpoint.display()),
            ))
        })?;
        run.start(&vs, out)?;
        Ok(Self {
            cfg,
            device,
            splits,
            teachers,
            vs,
            student,
            kd,
            graphs: GraphCache::default(),
            run,
        })
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
        &self.run.state.epochs
    }

    /// The run directory.
    pub fn dir(&self) -> &Path {
        self.run.dir.path()
    }

    /// Whether all epochs are done (or early stopping ended the run).
    pub fn finished(&self) -> bool {
        self.run.finished()
    }

    /// The task loss `‖S(X) − Y‖²` and each teacher's `L_KD` (none without KD) on training
    /// samples `idx`, as scalars with their graphs to the student's variables.
    pub fn loss_pieces(&mut self, idx: &[i64]) -> Result<(Tensor, Vec<Tensor>)> {
        particle_pieces(
            &self.splits.train,
            &self.student,
            &self.teachers,
            &self.kd,
            &mut self.graphs,
            self.device,
            idx,
        )
    }

    /// The objective and gradient of one step on training samples `idx` (no update): the task
    /// loss, each teacher's `L_KD`, their weights (A2D on the Gram matrix of the KD-loss
    /// gradients, or the average) and the gradient `∇L_task + λ Σ α_m ∇L_KD,m`.
    pub fn step_gradients(&mut self, idx: &[i64]) -> Result<DistillStep> {
        let (task, kd) = self.loss_pieces(idx)?;
        self.run.weighted(&(task, kd, None))
    }

    /// Trains one epoch (validating when due), logs it and writes the checkpoint.
    pub fn epoch(&mut self) -> Result<&DistillEpochLog> {
        let Self {
            cfg,
            device,
            splits,
            teachers,
            vs,
            student,
            kd,
            graphs,
            run,
        } = self;
        let (device, bs) = (*device, cfg.train.batch_size);
        run.epoch(
            vs,
            splits.train.samples,
            &mut |idx: &[i64]| {
                let (task, kd) =
                    particle_pieces(&splits.train, student, teachers, kd, graphs, device, idx)?;
                Ok((task, kd, None))
            },
            &|| eval::metrics_with(&splits.val, bs, device, &|b: &Batch| student.predict(b)),
        )
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
    /// inference throughput of each (the best of three passes, this process), and (for a
    /// finished run) writes `result.json` and `timing.json`.
    pub fn finish(&mut self) -> Result<(DistillResult, DistillTiming)> {
        let (best, finished) = self.run.select_best(&mut self.vs)?;
        let bs = self.cfg.train.batch_size;
        let test = &self.splits.test;
        let score = |predict: &dyn Fn(&Batch) -> Result<Tensor>| {
            timed(test.samples, &|| {
                eval::metrics_with(test, bs, self.device, predict)
            })
        };
        let (student_test, student_sps) = score(&|b| self.student.predict(b))?;
        let mut teachers = Vec::new();
        let mut teacher_sps = Vec::new();
        for (i, t) in self.teachers.iter().enumerate() {
            let (m, sps) = score(&|b| t.model.predict(b))?;
            teacher_sps.push(sps);
            teachers.push(TeacherReport {
                checkpoint: t.checkpoint.clone(),
                kind: t.kind.clone(),
                parameters: t.parameters(),
                test: m,
                mean_alpha: self.run.mean_alpha(i),
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
            epochs: self.run.state.epochs.len(),
            steps: self.run.opt.steps(),
            val: best.val,
            test: student_test,
            student_parameters: Student::parameters(&self.vs),
            teachers,
            ridge_rows: self.run.state.ridge_rows,
            stopped_early: self.run.state.stopped_early.clone(),
        };
        let timing = self
            .run
            .report(&result, finished, student_sps, teacher_sps)?;
        Ok((result, timing))
    }
}

/// The task loss and each teacher's `L_KD` of the student on samples `idx` of `p`.
fn particle_pieces(
    p: &Prepared,
    student: &Student,
    teachers: &[Teacher],
    kd: &Kd,
    graphs: &mut GraphCache,
    device: Device,
    idx: &[i64],
) -> Result<(Tensor, Vec<Tensor>)> {
    let batch = p.batch(idx, device, graphs)?;
    let pred = student.predict(&batch)?;
    let task = pred.mse_loss(&batch.y, tch::Reduction::Mean);
    let mut out = Vec::with_capacity(teachers.len());
    for t in teachers {
        let target = tch::no_grad(|| t.train_targets(idx, device));
        if let Some(l) = kd.loss(&pred, &target, batch.b, p.n)? {
            out.push(l);
        }
    }
    Ok((task, out))
}

#[cfg(test)]
mod tests;
