//! What a distillation run does whatever its data (particles: [`Distiller`](super::Distiller);
//! grids: [`GridDistiller`](super::GridDistiller)): the optimiser and the teachers' weighting,
//! the epoch loop (data order, learning rate, per-step seeds, step checks, logs, validation,
//! model selection, checkpoints), resume, and the end-of-run selection. The data-specific side
//! gives the loss pieces of a batch and the validation metrics.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use distill_kd::{A2d, A2dConfig};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tch::{Device, Tensor, nn::VarStore};

use super::{
    DistillEpochLog, DistillOptions, DistillState, DistillStep, DistillTiming, EpochSums, InitKind,
    KdConfig, KdLoss, check_step, step_scalars, weighted_step,
};
use crate::checkpoint::{self, CheckpointMeta};
use crate::config::TrainConfig;
use crate::metrics::Metrics;
use crate::optim::Adam;
use crate::rundir::{RunDir, RunMode};
use crate::runlog;
use crate::tensorboard::EventWriter;
use crate::trainer::{Best, Event, Observer, lr_at, step_seed, write_json};

/// Validation metrics a run selects on.
pub(super) trait ValMetrics: Copy + Serialize + DeserializeOwned {
    /// The selection score (lower is better) under `t`, and its name.
    fn score(&self, t: &TrainConfig) -> (f64, String);
    /// TensorBoard scalars (`val/...`).
    fn scalars(&self) -> Vec<(&'static str, f64)>;
    /// The epoch line's account of them.
    fn describe(&self) -> String;
}

impl ValMetrics for Metrics {
    fn score(&self, t: &TrainConfig) -> (f64, String) {
        (t.select.of(self), format!("{:?}", t.select))
    }

    fn scalars(&self) -> Vec<(&'static str, f64)> {
        vec![
            ("val/s2s", self.s2s),
            ("val/s2t", self.s2t),
            ("val/ade", self.ade),
            ("val/fde", self.fde),
        ]
    }

    fn describe(&self) -> String {
        format!("val S2S {:.4e} S2T {:.4e}", self.s2s, self.s2t)
    }
}

/// The loss pieces of a batch: the task loss, each teacher's `L_KD`, and an unweighted extra
/// term (the hidden-state KD), with their graphs to the student's variables.
pub(super) type Pieces = (Tensor, Vec<Tensor>, Option<Tensor>);

/// The data-independent half of a distillation run.
pub(super) struct KdRun<M> {
    pub train: TrainConfig,
    lambda: f64,
    distilled: bool,
    config_text: String,
    pub dir: RunDir,
    /// The student's trainable variables, in the optimiser's order.
    params: Vec<Tensor>,
    pub opt: Adam,
    a2d: A2d,
    steps_per_epoch: u64,
    pub state: DistillState<M>,
    dataset_sha256: Option<String>,
    tensorboard: Option<EventWriter>,
    observer: Option<Observer>,
    resumed: bool,
}

/// The config differences `(key, was, now)` of a run from a stored config text.
pub(super) type Differences<'a> = &'a dyn Fn(&str) -> Result<Vec<(String, String, String)>>;

/// Claims the run directory `out` (see [`RunMode`]), resolves the device of `t` and sets
/// libtorch's threads: how every distillation run starts.
pub(super) fn claim(out: &Path, mode: RunMode, t: &TrainConfig) -> Result<(RunDir, Device)> {
    let dir = RunDir::claim(out, mode)?;
    let device = t.device.resolve()?;
    if t.threads > 0 {
        tch::set_num_threads(t.threads);
    }
    Ok((dir, device))
}

/// What [`KdRun::open`] needs beside the student's variables.
pub(super) struct OpenRun<'a> {
    pub dir: RunDir,
    pub out: &'a Path,
    /// The mode and the observer.
    pub opts: DistillOptions,
    pub train: TrainConfig,
    pub kd: &'a KdConfig,
    pub config_text: String,
    pub samples: i64,
    pub teachers_sha256: Vec<String>,
    pub dataset_sha256: Option<String>,
    /// "distilled" / "trained": the verb of a refused resume's message.
    pub what: &'static str,
    /// The config differences `(key, was, now)` from a stored config text.
    pub differences: Differences<'a>,
}

impl<M: ValMetrics> KdRun<M> {
    /// The optimiser and weighting over `vs`'s trainable variables; with [`RunMode::Resume`],
    /// the weights, optimiser state and history from the checkpoint after checking what
    /// changed (the teachers may not).
    pub fn open(mut o: OpenRun<'_>, vs: &mut VarStore) -> Result<Self> {
        let params: Vec<Tensor> = vs
            .variables()
            .into_iter()
            .collect::<std::collections::BTreeMap<_, _>>()
            .into_values()
            .filter(Tensor::requires_grad)
            .collect();
        let opt = Adam::new(vs, o.train.adam);
        let a2d = A2dConfig {
            weighting: o.kd.weighting,
            cap: o.kd.cap,
            unit_normalise: o.kd.a2d_normalise,
            ..Default::default()
        }
        .check()?;
        let steps_per_epoch = (o.samples as u64).div_ceil(o.train.batch_size as u64);
        let mut run = Self {
            lambda: o.kd.lambda,
            distilled: o.kd.loss != KdLoss::None,
            config_text: o.config_text,
            dir: o.dir,
            params,
            opt,
            a2d,
            steps_per_epoch,
            state: DistillState::new(o.teachers_sha256.clone()),
            dataset_sha256: o.dataset_sha256,
            tensorboard: None,
            observer: o.opts.observer.take(),
            resumed: o.opts.mode == RunMode::Resume,
            train: o.train,
        };
        if run.resumed {
            let ck = run.dir.join("checkpoint.safetensors");
            let (tensors, meta) = checkpoint::load(&ck)?;
            let diffs = (o.differences)(&meta.config)
                .with_context(|| format!("the config stored in {}", ck.display()))?;
            for n in runlog::resume_changes(o.out, o.what, &diffs)? {
                run.note(&n);
            }
            checkpoint::apply(&ck, &tensors, meta.step, vs, Some(&mut run.opt))?;
            run.state = serde_json::from_value(meta.history)
                .with_context(|| format!("{}: the run history", ck.display()))?;
            ensure!(
                run.state.teachers_sha256 == o.teachers_sha256,
                "cannot resume {}: a teacher checkpoint changed since the run started",
                o.out.display()
            );
            run.opt.set_lr(run.train.adam.lr);
        }
        Ok(run)
    }

    /// `Debug` of a run named `name`: its directory, teachers and epochs done.
    pub fn debug(&self, f: &mut std::fmt::Formatter<'_>, name: &str) -> std::fmt::Result {
        f.debug_struct(name)
            .field("dir", &self.dir.path())
            .field("teachers", &self.state.teachers_sha256.len())
            .field("epochs_done", &self.state.epochs.len())
            .finish_non_exhaustive()
    }

    /// The closed-form initialisation of a new run with `init = "ridge"` (nothing otherwise, and
    /// nothing on resume: the checkpoint holds the fitted weights): `solve` fits the readout and
    /// says over how many rows and onto what; the run records and announces it.
    pub fn ridge_init(
        &mut self,
        init: InitKind,
        solve: &mut dyn FnMut() -> Result<(u64, String)>,
    ) -> Result<()> {
        if self.resumed || init != InitKind::Ridge {
            return Ok(());
        }
        let (rows, onto) = solve()?;
        self.state.ridge_rows = Some(rows);
        self.note(&format!(
            "the readout solved in closed form (ridge onto {onto} over {rows} rows)"
        ));
        Ok(())
    }

    /// The run's [`DistillTiming`] with the inference throughputs measured at its end, and for
    /// a `finished` run `result.json` (`result`) and `timing.json` written.
    pub fn report<R: Serialize>(
        &self,
        result: &R,
        finished: bool,
        student_inference: f64,
        teacher_inference: Vec<f64>,
    ) -> Result<DistillTiming> {
        let (train_seconds, samples_per_second) = self.train_rate();
        let timing = DistillTiming {
            train_seconds,
            samples_per_second,
            student_inference,
            teacher_inference,
        };
        if finished {
            write_json(&self.dir.join("result.json"), result)?;
            write_json(&self.dir.join("timing.json"), &timing)?;
        }
        Ok(timing)
    }

    /// Writes `config.toml`, opens TensorBoard, rewrites `metrics.jsonl` from the history,
    /// writes the first checkpoint of a new run, and announces the start.
    pub fn start(&mut self, vs: &VarStore, out: &Path) -> Result<()> {
        traj_data::atomic_write(&self.dir.join("config.toml"), self.config_text.as_bytes())?;
        if self.train.tensorboard {
            self.tensorboard = Some(EventWriter::create(&self.dir.join("tensorboard"))?);
        }
        let done = self.state.epochs.len();
        ensure!(
            done <= self.train.epochs,
            "cannot resume {}: it has trained {done} epochs, more than train.epochs = {}",
            out.display(),
            self.train.epochs
        );
        runlog::rewrite_log(&self.dir.join("metrics.jsonl"), &self.state.epochs)?;
        if !self.resumed {
            self.save_checkpoint(vs)?;
        }
        let total = self.steps_per_epoch * self.train.epochs as u64;
        let done = self.opt.steps() as u64;
        self.emit(Event::Start { total, done });
        Ok(())
    }

    pub fn emit(&mut self, e: Event<'_>) {
        if let Some(o) = self.observer.as_mut() {
            o(e);
        }
    }

    pub fn note(&mut self, s: &str) {
        self.emit(Event::Note(s));
    }

    /// Whether all epochs are done (or early stopping ended the run).
    pub fn finished(&self) -> bool {
        self.state.stopped_early.is_some() || self.state.epochs.len() >= self.train.epochs
    }

    fn save_checkpoint(&self, vs: &VarStore) -> Result<()> {
        checkpoint::save(
            &self.dir.join("checkpoint.safetensors"),
            vs,
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

    /// The objective and gradient of one step from its pieces (see `weighted_step`).
    pub fn weighted(&self, pieces: &Pieces) -> Result<DistillStep> {
        let (task, kd, hidden) = pieces;
        weighted_step(
            task,
            kd,
            hidden.as_ref(),
            self.lambda,
            &self.a2d,
            &self.params,
            &self.opt,
        )
    }

    /// Trains one epoch over `samples` training samples (`pieces` gives a batch's loss
    /// pieces), validates when due (`validate`), logs it and writes the checkpoint.
    pub fn epoch(
        &mut self,
        vs: &VarStore,
        samples: i64,
        pieces: &mut dyn FnMut(&[i64]) -> Result<Pieces>,
        validate: &dyn Fn() -> Result<M>,
    ) -> Result<&DistillEpochLog<M>> {
        ensure!(!self.finished(), "the run is finished");
        let epoch = self.state.epochs.len();
        let t = self.train.clone();
        let total = self.steps_per_epoch * t.epochs as u64;
        let started = Instant::now();
        let mut order: Vec<i64> = (0..samples).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(
            t.seed ^ (epoch as u64).wrapping_mul(0xA24B_AED4_963E_E407),
        ));
        let best_loss = self
            .state
            .epochs
            .iter()
            .map(|e| e.loss)
            .fold(f64::INFINITY, f64::min);
        let mut sums = EpochSums::new(self.state.teachers_sha256.len());
        let mut lr = t.adam.lr;
        for chunk in order.chunks(t.batch_size) {
            let step_started = Instant::now();
            let iteration = self.opt.steps() as u64;
            lr = lr_at(&t, iteration, self.steps_per_epoch, total);
            self.opt.set_lr(lr);
            tch::manual_seed(step_seed(t.seed, iteration));
            let step = self.weighted(&pieces(chunk)?)?;
            let norm = match check_step(&t, &step, best_loss, iteration, epoch) {
                Ok(norm) => norm,
                Err(what) => return Err(self.stop(what)),
            };
            let w = chunk.len() as f64;
            sums.add(
                &step,
                w,
                norm,
                &mut self.state.alpha_sums,
                &mut self.state.alpha_steps,
            );
            if let Some(tb) = self.tensorboard.as_mut() {
                let sps = w / step_started.elapsed().as_secs_f64().max(1e-9);
                step_scalars(tb, iteration, &step, lr, norm, sps)?;
            }
            self.opt.step_with(step.gradients);
            self.emit(Event::Step {
                epoch: epoch + 1,
                loss: step.loss,
            });
        }
        let finite = vs
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
            let mv = validate()?;
            let (score, metric) = mv.score(&t);
            let mut selection = runlog::Selection {
                best: &mut self.state.best,
                stale_evals: &mut self.state.stale_evals,
                stopped_early: &mut self.state.stopped_early,
            };
            if selection.record_score(&t, &metric, score, mv, epoch + 1, last) {
                checkpoint::save(
                    &self.dir.join("best.safetensors"),
                    vs,
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
        let log = sums.log(epoch, self.opt.steps(), lr, seconds, self.distilled, val);
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
                scalars.extend(v.scalars().into_iter().map(|(k, x)| (k.to_owned(), x)));
            }
            let refs: Vec<(&str, f64)> = scalars.iter().map(|(k, v)| (k.as_str(), *v)).collect();
            tb.scalars(log.step, &refs)?;
            tb.flush()?;
        }
        let line = match &log.val {
            Some(v) => format!(
                "epoch {:>4}: loss {:.4e} (task {:.4e}), {}{}",
                log.epoch,
                log.loss,
                log.task,
                v.describe(),
                if log.alpha.len() > 1 {
                    format!(", α {:.3?}", log.alpha)
                } else {
                    String::new()
                }
            ),
            None => format!("epoch {:>4}: loss {:.4e}", log.epoch, log.loss),
        };
        self.state.epochs.push(log);
        self.save_checkpoint(vs)?;
        self.note(&line);
        if let Some(msg) = self.state.stopped_early.clone() {
            self.note(&msg);
        }
        self.state.epochs.last().context("an epoch was logged")
    }

    /// The validation-selected epoch, with `best.safetensors` loaded into `vs` when the run is
    /// finished; and whether it is.
    pub fn select_best(&self, vs: &mut VarStore) -> Result<(Best<M>, bool)> {
        let Some(best) = self.state.best else {
            bail!(
                "training stopped before the first validation (epochs = {})",
                self.state.epochs.len()
            );
        };
        let finished = self.finished();
        if finished {
            checkpoint::restore(&self.dir.join("best.safetensors"), vs, None)?;
        }
        Ok((best, finished))
    }

    /// Each teacher's mean weight over every step of the run (absent without KD).
    pub fn mean_alpha(&self, teacher: usize) -> Option<f64> {
        (self.state.alpha_steps > 0)
            .then(|| self.state.alpha_sums[teacher] / self.state.alpha_steps as f64)
    }

    /// Training seconds and samples per second over the run.
    pub fn train_rate(&self) -> (f64, f64) {
        (
            self.state.train_seconds,
            self.state.samples_seen / self.state.train_seconds.max(1e-9),
        )
    }
}

/// `metrics` of `samples` test samples, the best throughput of three passes (a pass on a busy
/// machine only undercounts).
pub(super) fn timed<M>(samples: i64, metrics: &dyn Fn() -> Result<M>) -> Result<(M, f64)> {
    let mut best = 0.0f64;
    let mut out = None;
    for _ in 0..3 {
        let started = Instant::now();
        let m = metrics()?;
        best = best.max(samples as f64 / started.elapsed().as_secs_f64().max(1e-9));
        out = Some(m);
    }
    Ok((out.context("three passes")?, best))
}
