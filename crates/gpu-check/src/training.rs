//! Training on the device against training on the CPU, and the timed `--quick`-sized run.
//!
//! Both runs of a pair start from the same weights (`sgdd_train::build_model` draws them on the
//! CPU for every device), read the same data in the same order and take the same
//! teacher-forcing draws; what differs is only the order in which the device sums (CUDA's
//! scatter/index-add reductions are not even ordered run to run). Adam amplifies those
//! differences where a gradient is near zero (its step is about `lr·sign(g)` whatever `|g|`),
//! so after a few epochs the two runs agree to [`LOSS_TOLERANCE`] on each epoch's mean training
//! loss and to [`METRIC_TOLERANCE`] on the validation and test errors — loose enough for
//! honest float noise, tight enough to catch a model that learns something else on the device
//! (a wrong or missing input, a step that does not update, a stale buffer).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use serde::Serialize;
use sgdd_train::{DeviceAudit, Metrics, RunConfig, RunMode, Trainer, TrainerOptions};
use tch::Device;
use traj_data::nbody::{NBodySpec, System};

/// The base config of the `sgdd repro nbody --quick` table (EGNO's N-body windows, its small
/// models and budget), whose runs these are.
pub const QUICK_CONFIG: &str = include_str!("../../../configs/repro/nbody-quick.toml");
/// Trajectories per split of the `--quick` table's generated data: training, and validation
/// (= test). The same sizes as `sgdd repro nbody --quick` (seed 42).
pub const QUICK_SIZES: (usize, usize) = (400, 200);
/// Relative tolerance on each epoch's mean training loss, device against CPU.
pub const LOSS_TOLERANCE: f64 = 0.05;
/// Relative tolerance on the validation and test S2S / S2T, device against CPU.
pub const METRIC_TOLERANCE: f64 = 0.15;

/// The charged-particle dataset of the runs: generated into `dir` (seed 42), or reused when a
/// complete one with intact checksums is there.
pub fn ensure_dataset(dir: &Path, train: usize, eval: usize) -> Result<PathBuf> {
    let intact = traj_data::Manifest::read(dir)
        .ok()
        .is_some_and(|m| m.verify_all(dir).is_ok());
    if !intact {
        let mut spec = NBodySpec::new(System::Charged);
        spec.n_train = train;
        spec.n_val = eval;
        spec.n_test = eval;
        spec.seed = 42;
        eprintln!(
            "gpu-check: generating charged N-body data ({train} / {eval} / {eval} trajectories) \
             into {}",
            dir.display()
        );
        traj_data::nbody::generate_dataset_dir(&spec, dir, &|_, _| {})
            .with_context(|| format!("generating {}", dir.display()))?;
    }
    Ok(dir.to_path_buf())
}

/// One training run.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// `egno` or `sgdd`.
    pub model: String,
    /// `cpu` or `cuda:N`.
    pub device: String,
    /// Epochs trained.
    pub epochs: usize,
    /// Optimiser steps.
    pub steps: i64,
    /// Mean training loss of each epoch.
    pub epoch_loss: Vec<f64>,
    /// Validation metrics of the model evaluated (original units).
    pub val: Metrics,
    /// Test metrics of that model.
    pub test: Metrics,
    /// Seconds in training epochs.
    pub train_seconds: f64,
    /// `train_seconds / epochs`.
    pub seconds_per_epoch: f64,
    /// Training samples per second.
    pub samples_per_second: f64,
    /// Wall-clock seconds of the whole run (building, training, validation, test).
    pub wall_seconds: f64,
    /// Tensors of the trained model and its optimiser found on the run's device.
    pub tensors_on_device: usize,
    /// GPU memory the process held after the run (MiB, `nvidia-smi`), on a GPU.
    pub gpu_memory_mib: Option<u64>,
}

/// Trains `model` (`egno` or `sgdd`) on the `--quick` config with `set` on `device` into
/// `out` (replacing what is there), checks that every tensor of the trained model is on
/// `device`, and reports.
pub fn train(
    data: &Path,
    model: &str,
    device: Device,
    set: &[String],
    out: &Path,
) -> Result<RunReport> {
    let started = Instant::now();
    let device_name = device_name(device);
    let mut overrides = vec![
        format!("data.dir={:?}", data.display().to_string()),
        format!("model.kind={model:?}"),
        format!("train.device={device_name:?}"),
        "train.tensorboard=false".to_owned(),
    ];
    overrides.extend(set.iter().cloned());
    let cfg = RunConfig::from_toml(QUICK_CONFIG, &overrides)
        .context("configs/repro/nbody-quick.toml with the gpu-check settings")?;
    let mut trainer = Trainer::new(
        cfg,
        out,
        TrainerOptions {
            mode: RunMode::Force,
            ..Default::default()
        },
    )
    .with_context(|| format!("{model} on {device_name}"))?;
    ensure!(
        trainer.device() == device,
        "the trainer runs on {:?}, not on {device:?}",
        trainer.device()
    );
    trainer
        .train(None)
        .with_context(|| format!("training {model} on {device_name}"))?;
    let tensors_on_device = DeviceAudit::new(device)
        .trainer(&trainer)
        .finish()
        .with_context(|| format!("{model} trained on {device_name}"))?;
    let result = trainer
        .finish()
        .with_context(|| format!("testing {model} on {device_name}"))?;
    let timing = trainer.timing();
    let epoch_loss: Vec<f64> = trainer.history().iter().map(|e| e.loss).collect();
    let epochs = epoch_loss.len();
    Ok(RunReport {
        model: model.to_owned(),
        device: device_name,
        epochs,
        steps: result.steps,
        epoch_loss,
        val: result.val,
        test: result.test,
        train_seconds: timing.train_seconds,
        seconds_per_epoch: timing.train_seconds / epochs.max(1) as f64,
        samples_per_second: timing.samples_per_second,
        wall_seconds: started.elapsed().as_secs_f64(),
        tensors_on_device,
        gpu_memory_mib: if device.is_cuda() {
            crate::system::process_gpu_memory_mib()
        } else {
            None
        },
    })
}

/// `cpu` or `cuda:N`, as configs spell it.
pub fn device_name(device: Device) -> String {
    match device {
        Device::Cuda(n) => format!("cuda:{n}"),
        _ => "cpu".to_owned(),
    }
}

/// A device run against the CPU run of the same model.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// `egno` or `sgdd`.
    pub model: String,
    /// Largest relative difference of an epoch's mean training loss.
    pub loss_rel_diff: f64,
    /// Largest relative difference of validation and test S2S / S2T.
    pub metric_rel_diff: f64,
    /// The tolerances those had to meet ([`LOSS_TOLERANCE`], [`METRIC_TOLERANCE`]).
    pub loss_tolerance: f64,
    /// See `loss_tolerance`.
    pub metric_tolerance: f64,
    /// CPU seconds per epoch over device seconds per epoch.
    pub speedup: f64,
    /// Whether both differences are within tolerance.
    pub passed: bool,
}

fn rel(a: f64, b: f64) -> f64 {
    let scale = a.abs().max(b.abs());
    if scale == 0.0 {
        0.0
    } else {
        (a - b).abs() / scale
    }
}

/// Compares a device run with the CPU run of the same model and settings.
pub fn compare(device: &RunReport, cpu: &RunReport) -> Comparison {
    let mut loss = if device.epoch_loss.len() == cpu.epoch_loss.len() {
        0.0
    } else {
        f64::INFINITY
    };
    for (a, b) in device.epoch_loss.iter().zip(&cpu.epoch_loss) {
        loss = f64::max(loss, rel(*a, *b));
    }
    let metric = [
        (device.val.s2s, cpu.val.s2s),
        (device.val.s2t, cpu.val.s2t),
        (device.test.s2s, cpu.test.s2s),
        (device.test.s2t, cpu.test.s2t),
    ]
    .into_iter()
    .map(|(a, b)| rel(a, b))
    .fold(0.0, f64::max);
    Comparison {
        model: device.model.clone(),
        loss_rel_diff: loss,
        metric_rel_diff: metric,
        loss_tolerance: LOSS_TOLERANCE,
        metric_tolerance: METRIC_TOLERANCE,
        speedup: cpu.seconds_per_epoch / device.seconds_per_epoch.max(1e-12),
        passed: loss <= LOSS_TOLERANCE && metric <= METRIC_TOLERANCE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(device: &str, losses: &[f64], s2s: f64, seconds: f64) -> RunReport {
        let m = Metrics {
            samples: 10,
            s2s,
            s2t: s2s / 2.0,
            ade: 0.1,
            fde: 0.2,
        };
        RunReport {
            model: "egno".into(),
            device: device.into(),
            epochs: losses.len(),
            steps: 8,
            epoch_loss: losses.to_vec(),
            val: m,
            test: m,
            train_seconds: seconds * losses.len() as f64,
            seconds_per_epoch: seconds,
            samples_per_second: 1.0,
            wall_seconds: 1.0,
            tensors_on_device: 1,
            gpu_memory_mib: None,
        }
    }

    #[test]
    fn comparison_uses_the_largest_relative_difference() {
        let cpu = run("cpu", &[1.0, 0.5], 0.02, 2.0);
        let close = run("cuda:0", &[1.01, 0.51], 0.021, 0.5);
        let c = compare(&close, &cpu);
        assert!((c.loss_rel_diff - 0.01 / 0.51).abs() < 1e-12, "{c:?}");
        assert!((c.metric_rel_diff - 0.001 / 0.021).abs() < 1e-12, "{c:?}");
        assert!((c.speedup - 4.0).abs() < 1e-12);
        assert!(c.passed);
        let far = run("cuda:0", &[1.0, 0.8], 0.02, 0.5);
        assert!(!compare(&far, &cpu).passed);
        let short = run("cuda:0", &[1.0], 0.02, 0.5);
        assert!(!compare(&short, &cpu).passed);
        assert!(compare(&cpu, &cpu).passed);
        assert_eq!(compare(&cpu, &cpu).loss_rel_diff, 0.0);
    }

    #[test]
    fn the_quick_config_parses_with_the_check_settings() {
        let cfg = RunConfig::from_toml(
            QUICK_CONFIG,
            &[
                "data.dir=\"x\"".into(),
                "model.kind=\"sgdd\"".into(),
                "train.device=\"cuda:0\"".into(),
                "train.epochs=5".into(),
            ],
        )
        .unwrap();
        assert_eq!(cfg.train.epochs, 5);
    }
}
