//! Training and evaluation of one run: the loop, validation-based model selection, checkpoints
//! (atomic, resumable exactly), metrics as JSON lines, and the run's figures.
//!
//! A run directory holds `config.toml`, `metrics.jsonl` (one JSON object per epoch),
//! `checkpoint.safetensors` (the latest, with the optimiser), `best.safetensors` (the best on
//! validation S2T), `result.json` (test metrics of the best model), `loss.png` and
//! `trajectory.png`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, nn::VarStore};
use traj_data::Split;

use crate::checkpoint::{self, CheckpointMeta};
use crate::config::RunConfig;
use crate::data::{self, GraphCache, Prepared};
use crate::metrics::{MetricSums, Metrics};
use crate::model::{Model, ProblemDims};
use crate::optim::Adam;
use crate::{DeviceChoice, plots};

/// What a finished run reports (`result.json`).
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
    /// Validation metrics of that model.
    pub val: Metrics,
    /// Test metrics of that model (original units).
    pub test: Metrics,
    /// Optimiser steps.
    pub steps: i64,
    /// Wall-clock seconds of training.
    pub train_seconds: f64,
    /// Learned spectral weights `w` (SGDD with SGE).
    pub spectral_weights: Option<Vec<f64>>,
    /// SGDD only, a diagnostic: test metrics of the decoder conditioned on the teacher, which
    /// reads the future (what the student would reach with perfect distillation).
    pub teacher_oracle_test: Option<Metrics>,
}

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct EpochLog {
    epoch: usize,
    step: i64,
    loss: f64,
    pred: f64,
    rep: f64,
    spec: f64,
    samples_per_second: f64,
    val: Option<Metrics>,
}

/// Options beside the config.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Continue from `out/checkpoint.safetensors`.
    pub resume: bool,
    /// No progress bar.
    pub quiet: bool,
    /// Stop after this many epochs of this invocation (to test resuming).
    pub stop_after_epochs: Option<usize>,
}

struct Splits {
    train: Prepared,
    val: Prepared,
    test: Prepared,
}

fn load_splits(cfg: &RunConfig) -> Result<Splits> {
    let (_, train) = data::load(&cfg.data, Split::Train, cfg.data.max_train)?;
    let (_, val) = data::load(&cfg.data, Split::Val, cfg.data.max_eval)?;
    let (_, test) = data::load(&cfg.data, Split::Test, cfg.data.max_eval)?;
    ensure!(
        ProblemDims::of(&train) == ProblemDims::of(&val)
            && ProblemDims::of(&train) == ProblemDims::of(&test),
        "train/val/test splits disagree on nodes, frames or features"
    );
    Ok(Splits { train, val, test })
}

fn step_seed(seed: u64, iteration: u64) -> i64 {
    (seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ iteration.wrapping_add(1)) as i64 & i64::MAX
}

/// Builds the model of `cfg` for the data's dimensions, on `device`.
pub fn build_model(cfg: &RunConfig, p: &Prepared, device: Device) -> Result<(VarStore, Model)> {
    tch::manual_seed(cfg.train.seed as i64);
    let vs = VarStore::new(device);
    let model = Model::build(
        &vs,
        &cfg.model,
        ProblemDims::of(p),
        &p.undirected,
        p.target_times.clone(),
    )?;
    Ok((vs, model))
}

/// Mean metrics of `model` on a prepared split (original units).
pub fn evaluate(model: &Model, p: &Prepared, batch_size: usize, device: Device) -> Result<Metrics> {
    evaluate_with(p, batch_size, device, |b| model.predict(b))
}

/// Metrics of the decoder conditioned on the teacher (an oracle that reads the future: a
/// diagnostic of the distillation gap), for models with a teacher.
pub fn evaluate_teacher(
    model: &Model,
    p: &Prepared,
    batch_size: usize,
    device: Device,
) -> Result<Option<Metrics>> {
    if model.kind() != crate::ModelKind::Sgdd {
        return Ok(None);
    }
    let m = evaluate_with(p, batch_size, device, |b| {
        model
            .predict_with_teacher(b)?
            .context("the model has no teacher")
    })?;
    Ok(Some(m))
}

fn evaluate_with(
    p: &Prepared,
    batch_size: usize,
    device: Device,
    predict: impl Fn(&crate::Batch) -> Result<tch::Tensor>,
) -> Result<Metrics> {
    let _guard = tch::no_grad_guard();
    let mut sums = MetricSums::default();
    let mut graphs = GraphCache::default();
    let idx: Vec<i64> = (0..p.samples).collect();
    for chunk in idx.chunks(batch_size) {
        let batch = p.batch(chunk, device, &mut graphs)?;
        let pred = predict(&batch)?;
        ensure!(
            pred.isfinite().all().int64_value(&[]) == 1,
            "the model predicted NaN or Inf"
        );
        sums.add(
            &data::to_original(&pred, &batch, p.n),
            &data::to_original(&batch.y, &batch, p.n),
        );
    }
    Ok(sums.finish())
}

/// Trains (or, for the baseline, only evaluates) the run of `cfg` into `out`.
pub fn run(cfg: &RunConfig, out: &Path, opts: &RunOptions) -> Result<RunResult> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let device = cfg
        .train
        .device
        .parse::<DeviceChoice>()
        .map_err(anyhow::Error::msg)?
        .resolve()?;
    if cfg.train.threads > 0 {
        tch::set_num_threads(cfg.train.threads);
    }
    let config_text = cfg.to_toml();
    let splits = load_splits(cfg)?;
    let (mut vs, model) = build_model(cfg, &splits.train, device)?;
    let bs = cfg.train.batch_size;
    let kind = serde_json::to_value(cfg.model.kind)?
        .as_str()
        .unwrap_or_default()
        .to_owned();

    if !model.trainable() {
        std::fs::write(out.join("config.toml"), &config_text)?;
        let result = RunResult {
            model: kind,
            dataset: cfg.data.dir.clone(),
            seed: cfg.train.seed,
            best_epoch: 0,
            val: evaluate(&model, &splits.val, bs, device)?,
            test: evaluate(&model, &splits.test, bs, device)?,
            steps: 0,
            train_seconds: 0.0,
            spectral_weights: None,
            teacher_oracle_test: None,
        };
        write_json(&out.join("result.json"), &result)?;
        draw_trajectory(&model, &splits.test, device, out)?;
        return Ok(result);
    }

    let train = &splits.train;
    let steps_per_epoch = (train.samples as usize).div_ceil(bs) as u64;
    let total = steps_per_epoch * cfg.train.epochs as u64;
    let schedule = Model::schedule(&cfg.model, cfg.train.seed, total)?;
    let mut opt = Adam::new(&vs, cfg.train.adam);
    let ck_path = out.join("checkpoint.safetensors");
    let best_path = out.join("best.safetensors");
    let log_path = out.join("metrics.jsonl");

    let mut history: Vec<EpochLog> = Vec::new();
    let mut best: Option<(f64, usize, Metrics)> = None;
    let mut start_epoch = 0usize;
    if opts.resume && ck_path.exists() {
        let meta = checkpoint::restore(&ck_path, &mut vs, Some(&mut opt))?;
        ensure!(
            meta.config == config_text,
            "cannot resume {}: it was trained with another config (compare {}/config.toml)",
            ck_path.display(),
            out.display()
        );
        history =
            serde_json::from_value(meta.history["epochs"].clone()).context("checkpoint history")?;
        best = serde_json::from_value(meta.history["best"].clone()).context("checkpoint best")?;
        start_epoch = (meta.step as u64 / steps_per_epoch) as usize;
    } else {
        std::fs::write(out.join("config.toml"), &config_text)?;
        std::fs::write(&log_path, b"")?;
    }

    let bar = ProgressBar::new(total).with_style(
        ProgressStyle::with_template(
            "{msg} [{elapsed_precise}] {wide_bar} {pos}/{len} steps ({per_sec}, eta {eta})",
        )
        .expect("valid template"),
    );
    if opts.quiet {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar.set_position(opt.steps() as u64);
    let started = Instant::now();
    let mut graphs = GraphCache::default();
    let mut epochs_done = 0;
    for epoch in start_epoch..cfg.train.epochs {
        if opts.stop_after_epochs.is_some_and(|n| epochs_done >= n) {
            break;
        }
        let epoch_start = Instant::now();
        let mut order: Vec<i64> = (0..train.samples).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(
            cfg.train.seed ^ (epoch as u64).wrapping_mul(0xA24B_AED4_963E_E407),
        ));
        let (mut sum, mut sum_pred, mut sum_rep, mut sum_spec, mut count) =
            (0.0, 0.0, 0.0, 0.0, 0.0);
        for chunk in order.chunks(bs) {
            let iteration = opt.steps() as u64;
            tch::manual_seed(step_seed(cfg.train.seed, iteration));
            let batch = train.batch(chunk, device, &mut graphs)?;
            let loss = model.loss(&batch, iteration, &schedule)?;
            let value = loss.total.double_value(&[]);
            if !value.is_finite() {
                bail!(
                    "the loss became {value} at step {iteration} (epoch {}); training stopped. The last good \
                     checkpoint is {}",
                    epoch + 1,
                    if ck_path.exists() {
                        ck_path.display().to_string()
                    } else {
                        "none (first epoch)".into()
                    }
                );
            }
            opt.backward_step(&loss.total);
            let w = chunk.len() as f64;
            sum += value * w;
            sum_pred += loss.pred * w;
            sum_rep += loss.rep * w;
            sum_spec += loss.spec * w;
            count += w;
            bar.set_message(format!(
                "epoch {}/{} loss {:.4e}",
                epoch + 1,
                cfg.train.epochs,
                value
            ));
            bar.inc(1);
        }
        let last = epoch + 1 == cfg.train.epochs;
        let val = if (epoch + 1) % cfg.train.eval_every == 0 || last {
            let m = evaluate(&model, &splits.val, bs, device)?;
            if best.as_ref().is_none_or(|(b, _, _)| m.s2t < *b) {
                best = Some((m.s2t, epoch + 1, m));
                checkpoint::save(
                    &best_path,
                    &vs,
                    None,
                    &CheckpointMeta::new(opt.steps(), config_text.clone(), serde_json::Value::Null),
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
            samples_per_second: count / epoch_start.elapsed().as_secs_f64(),
            val,
        };
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&log_path)?;
        writeln!(f, "{}", serde_json::to_string(&log)?)?;
        history.push(log);
        let meta_history = serde_json::json!({ "epochs": history, "best": best });
        checkpoint::save(
            &ck_path,
            &vs,
            Some(&opt),
            &CheckpointMeta::new(opt.steps(), config_text.clone(), meta_history),
        )?;
        epochs_done += 1;
    }
    bar.finish_and_clear();
    let train_seconds = started.elapsed().as_secs_f64();

    let Some((_, best_epoch, val)) = best else {
        bail!(
            "training stopped before the first validation (epochs = {})",
            cfg.train.epochs
        );
    };
    // interrupted on purpose (stop_after_epochs): report the current weights, write no result
    let finished = history.len() == cfg.train.epochs;
    if finished {
        checkpoint::restore(&best_path, &mut vs, None)?;
    }
    let result = RunResult {
        model: kind.clone(),
        dataset: cfg.data.dir.clone(),
        seed: cfg.train.seed,
        best_epoch,
        val,
        test: evaluate(&model, &splits.test, bs, device)?,
        steps: opt.steps(),
        train_seconds,
        spectral_weights: model.spectral_weights(),
        teacher_oracle_test: evaluate_teacher(&model, &splits.test, bs, device)?,
    };
    if !finished {
        return Ok(result);
    }
    write_json(&out.join("result.json"), &result)?;
    let series = [
        plots::Series {
            label: "train loss",
            points: history.iter().map(|h| (h.epoch as f64, h.loss)).collect(),
        },
        plots::Series {
            label: "train L_pred",
            points: history.iter().map(|h| (h.epoch as f64, h.pred)).collect(),
        },
        plots::Series {
            label: "val S2T (original units)",
            points: history
                .iter()
                .filter_map(|h| h.val.map(|v| (h.epoch as f64, v.s2t)))
                .collect(),
        },
    ];
    plots::loss_curve(
        &out.join("loss.png"),
        &format!("{kind} on {}", cfg.data.dir.display()),
        "epoch",
        &series,
    )?;
    draw_trajectory(&model, &splits.test, device, out)?;
    Ok(result)
}

/// `trajectory.png`: predicted vs true paths of the first test sample.
fn draw_trajectory(model: &Model, p: &Prepared, device: Device, out: &Path) -> Result<()> {
    let _guard = tch::no_grad_guard();
    let batch = p.batch(&[0], device, &mut GraphCache::default())?;
    let pred = data::to_original(&model.predict(&batch)?, &batch, p.n).to_device(Device::Cpu);
    let truth = data::to_original(&batch.y, &batch, p.n).to_device(Device::Cpu);
    let x0 = data::to_original(&batch.x0.unsqueeze(0), &batch, p.n).to_device(Device::Cpu);
    let frames = |t: &tch::Tensor| -> Vec<Vec<[f64; 3]>> {
        let v = Vec::<f64>::try_from(t.to_kind(Kind::Double).flatten(0, -1)).unwrap_or_default();
        v.chunks(p.n as usize * 3)
            .map(|f| f.chunks(3).map(|c| [c[0], c[1], c[2]]).collect())
            .collect()
    };
    let start = frames(&x0).remove(0);
    plots::trajectories(
        &out.join("trajectory.png"),
        "test sample 0: true (solid) vs predicted (×, dashed)",
        &start,
        &frames(&truth),
        &frames(&pred),
    )
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    std::fs::write(path, serde_json::to_string_pretty(value)?)
        .with_context(|| format!("writing {}", path.display()))
}

/// A trained model rebuilt from a checkpoint (its config is read from the checkpoint) for the
/// data in `p`.
pub fn restore_model(
    checkpoint: &Path,
    p: &Prepared,
    device: Device,
) -> Result<(RunConfig, VarStore, Model)> {
    let cfg = checkpoint_config(checkpoint)?;
    let (mut vs, model) = build_model(&cfg, p, device)?;
    if model.trainable() {
        checkpoint::restore(checkpoint, &mut vs, None)?;
    }
    Ok((cfg, vs, model))
}

/// The config stored in a checkpoint.
pub fn checkpoint_config(checkpoint: &Path) -> Result<RunConfig> {
    let (_, meta) = checkpoint::load(checkpoint)?;
    RunConfig::from_toml(&meta.config, &[])
        .with_context(|| format!("the config stored in {}", checkpoint.display()))
}
