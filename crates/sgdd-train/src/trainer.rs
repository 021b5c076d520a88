//! The trainer every model plugs into: `Trainer::new → (resume) → epoch … → finish`.
//!
//! A run directory holds `config.toml`, `metrics.jsonl` (one JSON object per epoch),
//! `checkpoint.safetensors` (the latest, with the optimiser; written at the start and after every
//! epoch), `best.safetensors` (the best on the validation metric `train.select`), `result.json`
//! (test metrics of the best model; byte-identical for identical runs), `timing.json` (wall-clock
//! seconds) and `tensorboard/` (event files). Figures are the CLI's business.
//!
//! Guarantees (SPEC §7, §9): the directory is locked and never overwritten without
//! [`RunMode::Force`]; resuming at any epoch boundary continues bit for bit (the data order, the
//! teacher-forcing draws and libtorch's generator are functions of the seed and the step); a
//! resumed run may change how long, where and how fast it learns ([`RESUMABLE_KEYS`](crate::RESUMABLE_KEYS)) and
//! refuses every other change naming the key; a non-finite or diverging loss stops before the
//! step is taken, leaving the last checkpoint loadable and resumable with a lower learning rate.
//!
//! Data-parallel ([`TrainerOptions::data_parallel`], SPEC §8): every rank builds the same
//! trainer, takes rank 0's weights and optimiser moments, trains on its share of each global
//! batch with gradients averaged over the ranks ([`crate::DataParallel`]), and evaluates the
//! validation split itself (the same numbers on every rank, so early stopping agrees); only
//! rank 0 claims the directory and writes files, and only rank 0 may [`Trainer::finish`].
//!
//! libtorch's random generator is global to the process and the trainer seeds it (weights from
//! `train.seed`, each step from the seed and the step): run trainers that must be reproducible
//! in separate processes, not in threads of one.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use distill_kd::TeacherForcingSchedule;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, nn::VarStore};
use traj_data::Split;

use crate::checkpoint::{self, CheckpointMeta};
use crate::config::{CheckedRunConfig, LrSchedule, OnDivergence, RunConfig, TrainConfig};
use crate::data::{self, GraphCache, Prepared};
use crate::ddp::{DataParallel, StepTerms, shard};
use crate::eval::{self, Predictions};
use crate::metrics::Metrics;
use crate::model::{Model, ProblemDims};
use crate::optim::Adam;
use crate::rundir::{RunDir, RunMode};
use crate::runlog;
use crate::tensorboard::EventWriter;

/// What a finished run reports (`result.json`): nothing in it depends on the clock, so two
/// identical runs write identical files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    /// `const-vel`, `static`, `egno` or `sgdd`.
    pub model: String,
    /// Dataset directory.
    pub dataset: PathBuf,
    /// The seed.
    pub seed: u64,
    /// Epoch (1-based) of the model evaluated; 0 for the untrained baseline.
    pub best_epoch: usize,
    /// Epochs trained (fewer than configured after early stopping).
    pub epochs: usize,
    /// Validation metrics of that model.
    pub val: Metrics,
    /// Test metrics of that model (original units).
    pub test: Metrics,
    /// Optimiser steps.
    pub steps: i64,
    /// Joint spectral modes K used by SGE (`model.k`, lowered to an eigenvalue gap).
    pub spectral_k: Option<usize>,
    /// Learned spectral weights `w` (SGDD with SGE).
    pub spectral_weights: Option<Vec<f64>>,
    /// SGDD only, a diagnostic: test metrics of the decoder conditioned on the teacher, which
    /// reads the future (what the student would reach with perfect distillation).
    pub teacher_oracle_test: Option<Metrics>,
    /// SGDD only: the student's imitation R² of the teacher's `z^sg` on the test split.
    pub imitation_r2_test: Option<f64>,
    /// Why training ended before `train.epochs` (early stopping), if it did.
    pub stopped_early: Option<String>,
}

/// Wall-clock figures of a run (`timing.json`), kept apart from [`RunResult`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Timing {
    /// Seconds spent in training epochs, over every invocation of the run.
    pub train_seconds: f64,
    /// Training samples per second over the whole run.
    pub samples_per_second: f64,
}

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochLog {
    /// 1-based epoch.
    pub epoch: usize,
    /// Optimiser steps after the epoch.
    pub step: i64,
    /// Mean training loss `L_pred + λ L_align` (normalised units).
    pub loss: f64,
    /// Mean `L_pred`.
    pub pred: f64,
    /// Mean `L_rep` (0 without SGDD).
    pub rep: f64,
    /// Mean `L_spec` (0 without SGDD).
    pub spec: f64,
    /// Mean fraction of the samples the alignment read (1 unless `model.align_gate =
    /// "teacher-better"`, 0 without a teacher; absent in logs older than the gate).
    #[serde(default)]
    pub aligned: Option<f64>,
    /// Learning rate of the epoch's last step.
    pub lr: f64,
    /// Mean global gradient norm (before clipping).
    pub grad_norm: f64,
    /// Training throughput (wall clock).
    pub samples_per_second: f64,
    /// Validation metrics (original units), on evaluation epochs.
    pub val: Option<Metrics>,
    /// SGDD: the student's imitation R² of the teacher's `z^sg` on the validation split, on
    /// evaluation epochs.
    #[serde(default)]
    pub imitation_r2: Option<f64>,
}

/// The best validation so far (`M`: the validation metrics; grids' [`GridMetrics`](crate::GridMetrics)).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Best<M = Metrics> {
    /// The selection metric's value.
    pub score: f64,
    /// 1-based epoch.
    pub epoch: usize,
    /// All validation metrics of that epoch.
    pub val: M,
}

/// Everything of a run that a checkpoint carries beside the tensors.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct RunState {
    epochs: Vec<EpochLog>,
    best: Option<Best>,
    /// Validations since the best one (early stopping).
    stale_evals: usize,
    /// Set when early stopping ended the run.
    stopped_early: Option<String>,
    train_seconds: f64,
    samples_seen: f64,
    /// Rows of the closed-form warm start, once done.
    #[serde(default)]
    warm_start_rows: Option<u64>,
}

/// What the trainer reports while it works (the CLI draws a progress bar from it).
#[derive(Debug)]
pub enum Event<'a> {
    /// Training starts or continues: `done` of `total` steps are behind.
    Start {
        /// Steps of the whole run.
        total: u64,
        /// Steps already done (a resumed run).
        done: u64,
    },
    /// One optimiser step.
    Step {
        /// 1-based epoch.
        epoch: usize,
        /// Loss of the step.
        loss: f64,
    },
    /// An epoch ended.
    Epoch(&'a EpochLog),
    /// Something the user should read (resume changes, early stopping, no-op resume).
    Note(&'a str),
}

/// Receives [`Event`]s.
pub type Observer = Box<dyn FnMut(Event<'_>)>;

/// Options beside the config.
#[derive(Default)]
pub struct TrainerOptions {
    /// New run, replace a run, or continue one.
    pub mode: RunMode,
    /// Start from the weights of this checkpoint (fine-tuning; a fresh optimiser).
    pub init_from: Option<PathBuf>,
    /// Progress and notes.
    pub observer: Option<Observer>,
    /// Train data-parallel over this group (SPEC §8, [`crate::DataParallel`]): rank 0 holds
    /// and writes the run directory, every rank trains on its share of each global batch of
    /// `train.batch_size` windows.
    pub data_parallel: Option<DataParallel>,
}

impl std::fmt::Debug for TrainerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrainerOptions")
            .field("mode", &self.mode)
            .field("init_from", &self.init_from)
            .field("data_parallel", &self.data_parallel)
            .finish_non_exhaustive()
    }
}

/// The train / validation / test windows of a run.
#[derive(Debug)]
pub struct Splits {
    /// Training windows.
    pub train: Prepared,
    /// Validation windows.
    pub val: Prepared,
    /// Test windows.
    pub test: Prepared,
}

impl Splits {
    /// Loads (checksums verified) and cuts the three splits of `cfg.data`.
    pub fn load(cfg: &RunConfig) -> Result<Self> {
        let (_, train) = data::load(&cfg.data, Split::Train, cfg.data.max_train)?;
        let (_, val) = data::load(&cfg.data, Split::Val, cfg.data.max_eval)?;
        let (_, test) = data::load(&cfg.data, Split::Test, cfg.data.max_eval)?;
        ensure!(
            ProblemDims::of(&train) == ProblemDims::of(&val)
                && ProblemDims::of(&train) == ProblemDims::of(&test),
            "the train/val/test splits of {} disagree on nodes, frames or features",
            cfg.data.dir.display()
        );
        Ok(Self { train, val, test })
    }
}

/// The sha256 of a dataset directory's `manifest.json` (its fingerprint: the manifest holds the
/// sha256 of every split file).
pub fn dataset_fingerprint(dir: &Path) -> Result<String> {
    traj_data::sha256_file(&dir.join("manifest.json"))
        .with_context(|| format!("fingerprinting the dataset {}", dir.display()))
}

pub(crate) fn step_seed(seed: u64, iteration: u64) -> i64 {
    (seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ iteration.wrapping_add(1)) as i64 & i64::MAX
}

/// The learning rate at optimiser step `step` (0-based) of a run of `total` steps.
pub fn lr_at(t: &TrainConfig, step: u64, steps_per_epoch: u64, total: u64) -> f64 {
    let base = t.adam.lr;
    let warm = (t.warmup_epochs * steps_per_epoch as f64).round() as u64;
    if step < warm {
        return base * (step + 1) as f64 / warm as f64;
    }
    match t.lr_schedule {
        LrSchedule::Constant => base,
        LrSchedule::Cosine => {
            let span = total.saturating_sub(warm).max(1) as f64;
            let p = ((step - warm) as f64 / span).min(1.0);
            t.min_lr + 0.5 * (base - t.min_lr) * (1.0 + (std::f64::consts::PI * p).cos())
        }
        LrSchedule::Step => {
            let epoch = step / steps_per_epoch.max(1);
            base * t.gamma.powi((epoch / t.step_epochs as u64) as i32)
        }
    }
}

/// Builds the model of `cfg` for the data's dimensions, on `device`. libtorch's generator is
/// seeded with `train.seed` first and the weights are drawn on the CPU (a GPU's generator draws
/// other numbers for the same seed) and copied to `device`, so the initial weights are a function
/// of the seed alone, the same on every device.
pub fn build_model(cfg: &RunConfig, p: &Prepared, device: Device) -> Result<(VarStore, Model)> {
    seeded_on_cpu(cfg.train.seed, device, &|vs| {
        Model::build(
            vs,
            &cfg.model,
            ProblemDims::of(p),
            &p.undirected,
            p.target_times.clone(),
        )
    })
}

/// libtorch's CPU generator is one per process: seeding it and drawing from it must not
/// interleave with another thread's seeding or drawing (tests run in threads), so every
/// "seed, then draw" section holds this lock. Re-entrant on one thread (a section may call
/// another), released when the guard drops.
static TORCH_RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

thread_local! {
    static TORCH_RNG_HELD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Holds [`TORCH_RNG`] (see there) until dropped.
pub(crate) struct TorchRngGuard(Option<std::sync::MutexGuard<'static, ()>>);

impl Drop for TorchRngGuard {
    fn drop(&mut self) {
        if self.0.is_some() {
            TORCH_RNG_HELD.with(|h| h.set(false));
        }
    }
}

/// Takes libtorch's generator for a "seed, then draw" section (a no-op when this thread holds it).
pub(crate) fn torch_rng() -> TorchRngGuard {
    if TORCH_RNG_HELD.with(std::cell::Cell::get) {
        return TorchRngGuard(None);
    }
    let guard = TORCH_RNG
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    TORCH_RNG_HELD.with(|h| h.set(true));
    TorchRngGuard(Some(guard))
}

/// `build` on a fresh `VarStore` on `device` after seeding libtorch's generator with `seed`;
/// on another device than the CPU the weights are drawn again on the CPU and copied, so they
/// are a function of the seed alone (a GPU's generator draws other numbers for a seed).
pub(crate) fn seeded_on_cpu<T>(
    seed: u64,
    device: Device,
    build: &dyn Fn(&VarStore) -> Result<T>,
) -> Result<(VarStore, T)> {
    let make = |device: Device| -> Result<(VarStore, T)> {
        let _rng = torch_rng();
        tch::manual_seed(seed as i64);
        let vs = VarStore::new(device);
        let model = build(&vs)?;
        Ok((vs, model))
    };
    let (mut vs, model) = make(device)?;
    if device != Device::Cpu {
        let (cpu, _) = make(Device::Cpu)?;
        vs.copy(&cpu)
            .context("copying the CPU-drawn initial weights to the device")?;
    }
    Ok((vs, model))
}

/// One run: its directory, data, model, optimiser and history.
pub struct Trainer {
    cfg: CheckedRunConfig,
    config_text: String,
    dir: RunDir,
    device: Device,
    splits: Splits,
    vs: VarStore,
    model: Model,
    opt: Option<Adam>,
    schedule: Option<TeacherForcingSchedule>,
    steps_per_epoch: u64,
    state: RunState,
    dataset_sha256: Option<String>,
    graphs: GraphCache,
    tensorboard: Option<EventWriter>,
    observer: Option<Observer>,
    ddp: Option<DataParallel>,
}

impl std::fmt::Debug for Trainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trainer")
            .field("dir", &self.dir.path())
            .field("device", &self.device)
            .field("epochs_done", &self.state.epochs.len())
            .finish_non_exhaustive()
    }
}

impl Trainer {
    /// Claims the run directory, loads the data, builds the model and, with
    /// [`RunMode::Resume`], restores the checkpoint (after checking what changed). In a
    /// data-parallel run every rank then takes rank 0's weights and optimiser moments.
    pub fn new(cfg: CheckedRunConfig, out: &Path, mut opts: TrainerOptions) -> Result<Self> {
        let ddp = opts.data_parallel.take();
        let writes = ddp.as_ref().is_none_or(|d| d.rank() == 0);
        let dir = if writes {
            RunDir::claim(out, opts.mode)?
        } else {
            RunDir::follow(out, opts.mode)?
        };
        let device = cfg.train.device.resolve()?;
        if cfg.train.threads > 0 {
            tch::set_num_threads(cfg.train.threads);
        }
        let splits = Splits::load(&cfg)?;
        let dataset_sha256 = dataset_fingerprint(&cfg.data.dir).ok();
        let (mut vs, model) = build_model(&cfg, &splits.train, device)?;
        let trainable = model.trainable();
        let steps_per_epoch = (splits.train.samples as u64).div_ceil(cfg.train.batch_size as u64);
        let mut opt = trainable.then(|| {
            let mut o = Adam::new(&vs, cfg.train.adam);
            o.set_lr_scale("sge.", cfg.model.sge_lr_scale);
            o
        });
        let mut observer = opts.observer.take();
        let mut note = |s: &str| {
            if let Some(o) = observer.as_mut() {
                o(Event::Note(s));
            }
        };
        let mut state = RunState::default();
        if opts.mode == RunMode::Resume {
            let ck = dir.join("checkpoint.safetensors");
            let (tensors, meta) = checkpoint::load(&ck)?;
            let before = RunConfig::parse(&meta.config, &[])
                .with_context(|| format!("the config stored in {}", ck.display()))?;
            let diffs = cfg.differences(&before);
            for n in runlog::resume_changes(out, "trained", &diffs)? {
                note(&n);
            }
            for (k, _, _) in &diffs {
                if k == "train.epochs" && cfg.model.kind == crate::ModelKind::Sgdd {
                    note(
                        "resume: the teacher-forcing stages (model.schedule) are laid over \
                         the new number of epochs",
                    );
                }
            }
            if let (Some(was), Some(now)) = (&meta.dataset_sha256, &dataset_sha256) {
                ensure!(
                    was == now,
                    "cannot resume {}: the dataset {} has changed since the run started \
                     (manifest sha256 {now}, the run was trained on {was})",
                    out.display(),
                    cfg.data.dir.display()
                );
            }
            checkpoint::apply(&ck, &tensors, meta.step, &mut vs, opt.as_mut())?;
            state = serde_json::from_value(meta.history)
                .with_context(|| format!("{}: the run history", ck.display()))?;
            if let Some(o) = opt.as_mut() {
                o.set_lr(cfg.train.adam.lr);
            }
        } else if let Some(init) = &opts.init_from {
            checkpoint::restore(init, &mut vs, None).with_context(|| {
                format!(
                    "--init-from {}: its weights do not fit this model",
                    init.display()
                )
            })?;
            note(&format!("initialised the weights from {}", init.display()));
        }
        if let Some(k) = model.spectral_k()
            && k != cfg.model.k
        {
            note(&format!(
                "model.k = {} would cut a degenerate eigenspace of the joint spectrum: SGE uses \
                 K = {k} (model.k_at_gap = false keeps {})",
                cfg.model.k, cfg.model.k
            ));
        }
        let schedule = if trainable {
            let total = steps_per_epoch * cfg.train.epochs as u64;
            Some(Model::schedule(&cfg.model, cfg.train.seed, total)?)
        } else {
            None
        };
        let config_text = cfg.to_toml();
        if writes {
            traj_data::atomic_write(&dir.join("config.toml"), config_text.as_bytes())?;
        }
        if let Some(d) = &ddp {
            d.broadcast_from_root(&vs, opt.as_ref())?;
        }
        let tensorboard = if cfg.train.tensorboard && trainable && writes {
            Some(EventWriter::create(&dir.join("tensorboard"))?)
        } else {
            None
        };
        let mut t = Self {
            cfg,
            config_text,
            dir,
            device,
            splits,
            vs,
            model,
            opt,
            schedule,
            steps_per_epoch,
            state,
            dataset_sha256,
            graphs: GraphCache::default(),
            tensorboard,
            observer,
            ddp,
        };
        if trainable {
            let done = t.state.epochs.len();
            ensure!(
                done <= t.cfg.train.epochs,
                "cannot resume {}: it has trained {done} epochs, more than train.epochs = {}",
                out.display(),
                t.cfg.train.epochs
            );
            if writes {
                runlog::rewrite_log(&t.dir.join("metrics.jsonl"), &t.state.epochs)?;
                if opts.mode != RunMode::Resume {
                    t.save_checkpoint()?;
                }
            }
            let total = t.steps_per_epoch * t.cfg.train.epochs as u64;
            let done = t.opt.as_ref().map_or(0, |o| o.steps() as u64);
            t.emit(Event::Start { total, done });
            if t.finished() {
                let msg = format!(
                    "{} is already finished ({} epochs{}): nothing to train",
                    out.display(),
                    t.state.epochs.len(),
                    t.state
                        .stopped_early
                        .as_ref()
                        .map(|s| format!(", {s}"))
                        .unwrap_or_default()
                );
                t.emit(Event::Note(&msg));
            }
        }
        Ok(t)
    }

    fn emit(&mut self, e: Event<'_>) {
        if let Some(o) = self.observer.as_mut() {
            o(e);
        }
    }

    /// The checked config of the run.
    pub fn config(&self) -> &CheckedRunConfig {
        &self.cfg
    }

    /// The model.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The device it runs on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// The model's variables (on [`Trainer::device`]).
    pub fn var_store(&self) -> &VarStore {
        &self.vs
    }

    /// The optimiser (`None` for the untrained baselines).
    pub fn optimizer(&self) -> Option<&Adam> {
        self.opt.as_ref()
    }

    /// The run's data.
    pub fn splits(&self) -> &Splits {
        &self.splits
    }

    /// Epoch logs so far.
    pub fn history(&self) -> &[EpochLog] {
        &self.state.epochs
    }

    /// The run directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Whether this process writes the run's files: always, except on the ranks other than 0
    /// of a data-parallel run.
    pub fn writes(&self) -> bool {
        self.ddp.as_ref().is_none_or(|d| d.rank() == 0)
    }

    /// Whether there is nothing left to train (all epochs done, early-stopped, or a model
    /// without weights).
    pub fn finished(&self) -> bool {
        !self.model.trainable()
            || self.state.stopped_early.is_some()
            || self.state.epochs.len() >= self.cfg.train.epochs
    }

    fn save_checkpoint(&self) -> Result<()> {
        let opt = self
            .opt
            .as_ref()
            .context("the model has nothing to train")?;
        checkpoint::save(
            &self.dir.join("checkpoint.safetensors"),
            &self.vs,
            Some(opt),
            &CheckpointMeta::new(
                opt.steps(),
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

    /// A divergence in the epoch under way (`what` says where): an error naming the last good
    /// checkpoint, or with `train.on_divergence = "stop"` (after at least one epoch) the end of
    /// the run at its last finished epoch — the weights and the optimiser go back to that
    /// epoch's checkpoint, so the run's files stay those of a run stopped there.
    fn diverged(&mut self, what: String) -> Result<&EpochLog> {
        if self.cfg.train.on_divergence == OnDivergence::Error || self.state.epochs.is_empty() {
            return Err(self.stop(what));
        }
        if self.writes() {
            let opt = self
                .opt
                .as_mut()
                .context("the model has nothing to train")?;
            checkpoint::restore(
                &self.dir.join("checkpoint.safetensors"),
                &mut self.vs,
                Some(opt),
            )?;
        }
        let msg = format!(
            "{what}; the run ends at epoch {} (train.on_divergence = \"stop\"), scored at its \
             best validation",
            self.state.epochs.len()
        );
        self.state.stopped_early = Some(msg.clone());
        if self.writes() {
            self.save_checkpoint()?;
        }
        self.emit(Event::Note(&msg));
        self.state.epochs.last().context("an epoch was logged")
    }

    /// Trains one epoch (validating when due), logs it and writes the checkpoint.
    pub fn epoch(&mut self) -> Result<&EpochLog> {
        ensure!(!self.finished(), "the run is finished");
        let epoch = self.state.epochs.len();
        let cfg = self.cfg.clone();
        let t = &cfg.train;
        let bs = t.batch_size;
        let total = self.steps_per_epoch * t.epochs as u64;
        let started = Instant::now();
        let train = &self.splits.train;
        let mut order: Vec<i64> = (0..train.samples).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(
            t.seed ^ (epoch as u64).wrapping_mul(0xA24B_AED4_963E_E407),
        ));
        let best_loss = self
            .state
            .epochs
            .iter()
            .map(|e| e.loss)
            .fold(f64::INFINITY, f64::min);
        let (mut sum, mut sum_pred, mut sum_rep, mut sum_spec, mut sum_norm, mut count) =
            (0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
        let mut sum_aligned = 0.0;
        let mut steps = 0.0;
        let mut lr = t.adam.lr;
        for chunk in order.chunks(bs) {
            let step_started = Instant::now();
            let opt = self
                .opt
                .as_mut()
                .context("the model has nothing to train")?;
            let iteration = opt.steps() as u64;
            lr = lr_at(t, iteration, self.steps_per_epoch, total);
            opt.set_lr(lr);
            tch::manual_seed(step_seed(t.seed, iteration));
            let mine = match &self.ddp {
                Some(d) => shard(chunk, d.rank(), d.world_size()),
                None => chunk,
            };
            let schedule = self.schedule.as_ref().context("no schedule")?;
            // one process: the batch's mean loss; data-parallel: this rank's share, then the
            // global batch's mean from the reduction
            let (mut terms, mut grads, mut value) = (StepTerms::default(), None, f64::NAN);
            if !mine.is_empty() {
                let batch =
                    train.train_batch(mine, t.seed, epoch as u64, self.device, &mut self.graphs)?;
                let loss = self.model.loss(&batch, iteration, schedule)?;
                let n = mine.len() as f64;
                value = loss.total.double_value(&[]);
                terms = StepTerms {
                    total: value * n,
                    pred: loss.pred * n,
                    rep: loss.rep * n,
                    spec: loss.spec * n,
                    aligned: loss.aligned * n,
                    teacher_forced: loss.teacher_forced,
                };
                grads = Some(opt.gradients(&loss.total)?);
            }
            let w = chunk.len() as f64;
            let grads = match &self.ddp {
                None => grads.context("a batch of windows")?,
                Some(d) => {
                    let local =
                        grads.unwrap_or_else(|| opt.params().iter().map(|_| None).collect());
                    let (g, all) =
                        d.reduce_step(local, opt.params(), terms, mine.len(), chunk.len())?;
                    terms = all;
                    value = terms.total / w;
                    g
                }
            };
            if !value.is_finite() {
                return self.diverged(format!(
                    "the loss became {value} at step {iteration} (epoch {})",
                    epoch + 1
                ));
            }
            if t.divergence_factor > 0.0 && value > t.divergence_factor * best_loss {
                return self.diverged(format!(
                    "the loss diverged at step {iteration} (epoch {}): {value:.4e} is more than \
                     train.divergence_factor = {} times the best epoch loss {best_loss:.4e}",
                    epoch + 1,
                    t.divergence_factor
                ));
            }
            let opt = self
                .opt
                .as_mut()
                .context("the model has nothing to train")?;
            let norm = Adam::grad_norm(&grads);
            if !norm.is_finite() {
                return self.diverged(format!(
                    "the gradient norm became {norm} at step {iteration} (epoch {})",
                    epoch + 1
                ));
            }
            opt.step_with(grads);
            sum += terms.total;
            sum_pred += terms.pred;
            sum_rep += terms.rep;
            sum_spec += terms.spec;
            sum_aligned += terms.aligned;
            sum_norm += norm;
            steps += 1.0;
            count += w;
            if let Some(tb) = self.tensorboard.as_mut() {
                tb.scalars(
                    iteration as i64 + 1,
                    &[
                        ("train/loss", value),
                        ("train/L_pred", terms.pred / w),
                        ("train/L_rep", terms.rep / w),
                        ("train/L_spec", terms.spec / w),
                        ("train/aligned", terms.aligned / w),
                        (
                            "train/teacher_forced",
                            f64::from(u8::from(terms.teacher_forced)),
                        ),
                        ("train/lr", lr),
                        ("train/grad_norm", norm),
                        (
                            "train/samples_per_second",
                            w / step_started.elapsed().as_secs_f64().max(1e-9),
                        ),
                    ],
                )?;
            }
            if let Some(o) = self.observer.as_mut() {
                o(Event::Step {
                    epoch: epoch + 1,
                    loss: value,
                });
            }
        }
        let opt = self
            .opt
            .as_ref()
            .context("the model has nothing to train")?;
        let finite_weights = self
            .vs
            .variables()
            .values()
            .all(|v| v.isfinite().all().int64_value(&[]) == 1);
        if !finite_weights || !opt.is_finite() {
            return Err(self.stop(format!(
                "the weights or the optimiser state became non-finite in epoch {}",
                epoch + 1
            )));
        }
        // the closed-form warm start, at the first epoch boundary after the first stage
        let stage1_end = self
            .schedule
            .as_ref()
            .and_then(|s| s.stage_ends().first().copied())
            .unwrap_or(0);
        if cfg.model.ridge_warm_start
            && self.state.warm_start_rows.is_none()
            && opt.steps() as u64 >= stage1_end
            && let Some(rows) = self.model.ridge_warm_start(
                &self.splits.train,
                bs,
                self.device,
                cfg.model.ridge_lambda,
            )?
        {
            self.state.warm_start_rows = Some(rows);
            let msg = format!(
                "epoch {}: the student's last layer solved in closed form (ridge onto the \
                     teacher's z over {rows} rows)",
                epoch + 1
            );
            if let Some(o) = self.observer.as_mut() {
                o(Event::Note(&msg));
            }
        }
        let opt = self
            .opt
            .as_ref()
            .context("the model has nothing to train")?;
        let seconds = started.elapsed().as_secs_f64();
        self.state.train_seconds += seconds;
        self.state.samples_seen += count;
        let last = epoch + 1 == t.epochs;
        let mut imitation_r2 = None;
        let val = if (epoch + 1).is_multiple_of(t.eval_every) || last {
            // sharded over the ranks of a data-parallel run; every rank gets the split's metrics
            let ranks = self.ddp.as_ref();
            let m = eval::evaluate_on(&self.model, &self.splits.val, bs, self.device, ranks)?;
            imitation_r2 =
                eval::imitation_r2_on(&self.model, &self.splits.val, bs, self.device, ranks)?;
            let mut selection = runlog::Selection {
                best: &mut self.state.best,
                stale_evals: &mut self.state.stale_evals,
                stopped_early: &mut self.state.stopped_early,
            };
            // every rank keeps the selection state; rank 0 writes
            if selection.record(t, m, epoch + 1, last) && self.writes() {
                checkpoint::save(
                    &self.dir.join("best.safetensors"),
                    &self.vs,
                    None,
                    &CheckpointMeta::new(
                        opt.steps(),
                        self.config_text.clone(),
                        serde_json::Value::Null,
                    )
                    .with_dataset(self.dataset_sha256.clone()),
                )?;
            }
            Some(m)
        } else {
            None
        };
        let log = EpochLog {
            epoch: epoch + 1,
            step: opt.steps(),
            loss: sum / count,
            pred: sum_pred / count,
            rep: sum_rep / count,
            spec: sum_spec / count,
            aligned: Some(sum_aligned / count),
            lr,
            grad_norm: sum_norm / steps,
            samples_per_second: count / seconds.max(1e-9),
            val,
            imitation_r2,
        };
        if self.writes() {
            runlog::append_log(&self.dir.join("metrics.jsonl"), &log)?;
        }
        if let Some(tb) = self.tensorboard.as_mut() {
            let mut scalars = vec![("epoch/loss", log.loss), ("epoch/L_pred", log.pred)];
            if let Some(v) = &log.val {
                scalars.extend([
                    ("val/s2s", v.s2s),
                    ("val/s2t", v.s2t),
                    ("val/ade", v.ade),
                    ("val/fde", v.fde),
                ]);
            }
            if let Some(r2) = log.imitation_r2 {
                scalars.push(("val/imitation_r2", r2));
            }
            tb.scalars(log.step, &scalars)?;
            tb.flush()?;
        }
        self.state.epochs.push(log);
        if self.writes() {
            self.save_checkpoint()?;
        }
        if let Some(msg) = self.state.stopped_early.clone() {
            self.emit(Event::Note(&msg));
        }
        let log = self.state.epochs.last().context("an epoch was logged")?;
        if let Some(o) = self.observer.as_mut() {
            o(Event::Epoch(log));
        }
        Ok(log)
    }

    /// Trains until [`Trainer::finished`] (or `max_epochs` more epochs, when given).
    pub fn train(&mut self, max_epochs: Option<usize>) -> Result<()> {
        let mut n = 0;
        while !self.finished() && max_epochs.is_none_or(|m| n < m) {
            self.epoch()?;
            n += 1;
        }
        Ok(())
    }

    /// Scores the best model (validation-selected) on the test split and writes `result.json`
    /// and `timing.json`. For an unfinished run it scores the current weights and writes
    /// nothing. In a data-parallel run, rank 0's business (the other ranks hold no run files).
    pub fn finish(&mut self) -> Result<RunResult> {
        ensure!(
            self.writes(),
            "finish is rank 0's in a data-parallel run: this rank writes no run files"
        );
        let bs = self.cfg.train.batch_size;
        let finished = self.finished();
        let (best_epoch, val) = match (&self.state.best, self.model.trainable()) {
            (Some(b), true) => (b.epoch, b.val),
            (None, true) => bail!(
                "training stopped before the first validation (epochs = {})",
                self.state.epochs.len()
            ),
            (_, false) => (
                0,
                eval::evaluate(&self.model, &self.splits.val, bs, self.device)?,
            ),
        };
        if finished && self.model.trainable() {
            checkpoint::restore(&self.dir.join("best.safetensors"), &mut self.vs, None)?;
        }
        let result = RunResult {
            model: self.cfg.model.kind.name().to_owned(),
            dataset: self.cfg.data.dir.clone(),
            seed: self.cfg.train.seed,
            best_epoch,
            epochs: self.state.epochs.len(),
            val,
            test: eval::evaluate(&self.model, &self.splits.test, bs, self.device)?,
            steps: self.opt.as_ref().map_or(0, Adam::steps),
            spectral_k: self.model.spectral_k(),
            spectral_weights: self.model.spectral_weights(),
            teacher_oracle_test: eval::evaluate_teacher(
                &self.model,
                &self.splits.test,
                bs,
                self.device,
            )?,
            imitation_r2_test: eval::imitation_r2(&self.model, &self.splits.test, bs, self.device)?,
            stopped_early: self.state.stopped_early.clone(),
        };
        if finished {
            write_json(&self.dir.join("result.json"), &result)?;
            let timing = Timing {
                train_seconds: self.state.train_seconds,
                samples_per_second: self.state.samples_seen / self.state.train_seconds.max(1e-9),
            };
            write_json(&self.dir.join("timing.json"), &timing)?;
        }
        Ok(result)
    }

    /// Wall-clock figures so far.
    pub fn timing(&self) -> Timing {
        Timing {
            train_seconds: self.state.train_seconds,
            samples_per_second: self.state.samples_seen / self.state.train_seconds.max(1e-9),
        }
    }

    /// Predictions of the current weights for the first `samples` test windows (for figures).
    pub fn test_predictions(&self, samples: usize) -> Result<Predictions> {
        let p = &self.splits.test;
        let n = (samples as i64).min(p.samples).max(1);
        let idx: Vec<i64> = (0..n).collect();
        let sub = p.select(&idx)?;
        eval::predict_split(&self.model, &sub, n as usize, self.device)
    }
}

/// Writes `value` as pretty JSON to `path`, atomically.
pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    traj_data::atomic_write(path, text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

/// The config stored in a checkpoint as a training run's, and the checkpoint's dataset
/// fingerprint. A checkpoint of `sgdd distill` with an EGNO student is the plain EGNO it is
/// (`[data]`, `[model]` from `[student]`, `[train]`), so everything that reads trained models
/// (`sgdd eval`, `predict`, `spectrum`, a teacher of another distillation) reads it too; an MLP
/// student or a grid run (`sgdd distill-grid`) is an error that says where their scores are.
pub fn checkpoint_config(checkpoint: &Path) -> Result<(CheckedRunConfig, Option<String>)> {
    let (_, meta) = checkpoint::load(checkpoint)?;
    let cfg = run_config_of(&meta.config, checkpoint)
        .with_context(|| format!("the config stored in {}", checkpoint.display()))?;
    Ok((cfg, meta.dataset_sha256))
}

/// See [`checkpoint_config`]: `text` is the config stored in `checkpoint`.
fn run_config_of(text: &str, checkpoint: &Path) -> Result<CheckedRunConfig> {
    let table: toml::Table = toml::from_str(text).context("not TOML")?;
    let run = checkpoint
        .parent()
        .map_or_else(|| Path::new(".").to_owned(), Path::to_owned);
    let scores = format!(
        "its test metrics are in {} (written when the run finished)",
        run.join("result.json").display()
    );
    if table.contains_key("student") {
        let d = crate::DistillConfig::parse(text, &[])?;
        anyhow::ensure!(
            d.student.kind == crate::StudentArch::Egno,
            "{} is a `sgdd distill` checkpoint of an MLP student, which `sgdd eval`, `predict` \
             and `spectrum` do not rebuild (they read models of `sgdd train` and EGNO \
             students); {scores}",
            checkpoint.display()
        );
        return RunConfig {
            data: d.data.clone(),
            model: d.student.egno(),
            train: d.train.clone(),
        }
        .check();
    }
    anyhow::ensure!(
        !table.contains_key("distill"),
        "{} is a checkpoint of a grid forecaster (`sgdd distill-grid`), which `sgdd eval`, \
         `predict` and `spectrum` (particle models) do not read; {scores}, and a grid teacher \
         is passed to `sgdd distill-grid --teacher`",
        checkpoint.display()
    );
    RunConfig::from_toml(text, &[])
}

/// A trained model rebuilt from a checkpoint (its config is read from the checkpoint) for the
/// data in `p`.
pub fn restore_model(
    checkpoint: &Path,
    p: &Prepared,
    device: Device,
) -> Result<(CheckedRunConfig, VarStore, Model)> {
    let (cfg, _) = checkpoint_config(checkpoint)?;
    let (mut vs, model) = build_model(&cfg, p, device)?;
    if model.trainable() {
        checkpoint::restore(checkpoint, &mut vs, None)?;
    }
    Ok((cfg, vs, model))
}

/// `[S, T, N, 3]` → rows of frames of `[x, y, z]` points (for figures).
pub fn frames_of(t: &tch::Tensor) -> Result<Vec<Vec<Vec<[f64; 3]>>>> {
    let size = t.size();
    ensure!(
        size.len() == 4 && size[3] == 3,
        "expected [S, T, N, 3], got {size:?}"
    );
    let v = Vec::<f64>::try_from(
        t.to_kind(Kind::Double)
            .to_device(Device::Cpu)
            .flatten(0, -1),
    )?;
    let (tt, n) = (size[1] as usize, size[2] as usize);
    Ok(v.chunks(tt * n * 3)
        .map(|s| {
            s.chunks(n * 3)
                .map(|f| f.chunks(3).map(|c| [c[0], c[1], c[2]]).collect())
                .collect()
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::run_config_of;
    use crate::{DistillConfig, GridDistillConfig};

    /// A distilled EGNO student reads as the plain EGNO it is; an MLP student and a grid run are
    /// errors that say where their scores are.
    #[test]
    fn distillation_checkpoints_read_as_models_or_say_where_to_look() {
        let _rng = crate::trainer::torch_rng();
        let ck = Path::new("runs/d/best.safetensors");
        let distill = |kind: &str| {
            DistillConfig::from_toml(
                "[data]\ndir = \"d\"\n[distill]\nloss = \"none\"\n",
                &[
                    format!("student.kind=\"{kind}\""),
                    "student.hidden=8".into(),
                ],
            )
            .unwrap()
            .to_toml()
        };
        let cfg = run_config_of(&distill("egno"), ck).unwrap();
        assert_eq!(cfg.model.kind, crate::ModelKind::Egno);
        assert_eq!(cfg.model.hidden, 8);
        let e = format!("{:#}", run_config_of(&distill("mlp"), ck).unwrap_err());
        assert!(
            e.contains("MLP student") && e.contains("result.json"),
            "{e}"
        );
        let grid =
            GridDistillConfig::from_toml("[data]\ndir = \"g\"\n[distill]\nloss = \"none\"\n", &[])
                .unwrap()
                .to_toml();
        let e = format!("{:#}", run_config_of(&grid, ck).unwrap_err());
        assert!(
            e.contains("distill-grid") && e.contains("result.json"),
            "{e}"
        );
    }
}
