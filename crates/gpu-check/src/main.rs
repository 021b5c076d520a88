//! `sgdd-gpu-check`: proves the CUDA path of the training library on the machine it runs on.
//!
//! 1. **What libtorch sees**: the libtorch loaded (and the one built against), CUDA
//!    availability, device count, cuDNN, and the GPUs `nvidia-smi` lists (name, memory). No
//!    visible GPU is an error naming the likely cause — unless `--allow-cpu`, which runs
//!    everything on the CPU and says so (how the packaging is proven on a CPU machine).
//! 2. **Device checks** (`sgdd_train::device_checks`, the functions the test suite runs on the
//!    CPU): graph networks forward and backward, the SGE layer, one SGDD-EGNO training step
//!    with every tensor audited, checkpoints written on the device, read on the CPU and back —
//!    each compared with the CPU.
//! 3. **Training on the device against the CPU**: EGNO and SGDD-EGNO on the charged N-body
//!    data of `sgdd repro nbody --quick` for a few epochs on the device and on the CPU, from the
//!    same initial weights; the losses and metrics compared (tolerances in [`training`]) and the
//!    time per epoch.
//! 4. **A timed `--quick`-sized run** of SGDD-EGNO on the device (the table's full budget).
//!
//! Everything goes to `OUT/gpu-check.json` and `OUT/gpu-check.md`; the exit status is 0 when
//! every part passed. Built and bundled for a machine without Rust by `cargo xtask gpu-package`,
//! run where Rust is by `cargo xtask gpu-check`.

mod system;
mod training;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Parser;
use serde::Serialize;
use sgdd_train::DeviceCheck;
use tch::Device;

use system::SystemReport;
use training::{Comparison, RunReport};

/// Proves the CUDA path: what libtorch sees, device checks against the CPU, CPU-vs-GPU
/// trainings, a timed `--quick`-sized run; writes OUT/gpu-check.json and OUT/gpu-check.md.
#[derive(Debug, Parser)]
#[command(name = "sgdd-gpu-check", version)]
struct Args {
    /// Where the report, the generated data, the checkpoints and the runs go.
    #[arg(long, default_value = "target/gpu-check")]
    out: PathBuf,
    /// When libtorch sees no GPU, check the CPU path instead of failing (and say so).
    #[arg(long)]
    allow_cpu: bool,
    /// The GPU to check (`cuda:N`).
    #[arg(long, default_value_t = 0)]
    gpu: usize,
    /// Epochs of the short device-vs-CPU trainings.
    #[arg(long, default_value_t = 5)]
    epochs: usize,
    /// Epochs of the timed `--quick`-sized run (default: the `--quick` table's budget; 0 skips
    /// it).
    #[arg(long)]
    full_epochs: Option<usize>,
    /// Training trajectories generated (default: the `--quick` table's).
    #[arg(long, default_value_t = training::QUICK_SIZES.0)]
    train_trajectories: usize,
    /// Validation and test trajectories generated (default: the `--quick` table's).
    #[arg(long, default_value_t = training::QUICK_SIZES.1)]
    eval_trajectories: usize,
}

/// One part's outcome in the report.
#[derive(Debug, Serialize)]
struct Part<T> {
    name: String,
    passed: bool,
    error: Option<String>,
    result: Option<T>,
}

impl<T> Part<T> {
    fn of(name: &str, r: Result<T>) -> Self {
        match r {
            Ok(v) => Self {
                name: name.to_owned(),
                passed: true,
                error: None,
                result: Some(v),
            },
            Err(e) => Self {
                name: name.to_owned(),
                passed: false,
                error: Some(format!("{e:#}")),
                result: None,
            },
        }
    }
}

/// The device-vs-CPU trainings.
#[derive(Debug, Serialize)]
struct TrainingPart {
    epochs: usize,
    runs: Vec<RunReport>,
    comparisons: Vec<Comparison>,
}

/// `gpu-check.json`.
#[derive(Debug, Serialize)]
struct Report {
    /// `passed`, `failed` or `no-gpu`.
    status: String,
    /// The device checked (`cuda:0`, or `cpu` with `--allow-cpu` on a machine without GPU).
    device: String,
    /// Whether a GPU was checked.
    gpu_checked: bool,
    note: Option<String>,
    command: Vec<String>,
    system: SystemReport,
    device_checks: Vec<Part<DeviceCheck>>,
    training: Option<Part<TrainingPart>>,
    full_run: Option<Part<RunReport>>,
    total_seconds: f64,
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("sgdd-gpu-check: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn say(msg: impl AsRef<str>) {
    eprintln!("gpu-check: {}", msg.as_ref());
}

fn run(args: Args) -> Result<bool> {
    let started = Instant::now();
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let system = SystemReport::query();
    say(format!(
        "libtorch {} from {} (built against {}); CUDA available: {}, {} device(s), cuDNN: {}",
        system.libtorch_version.as_deref().unwrap_or("?"),
        system
            .libtorch_dir
            .as_deref()
            .map_or_else(|| "?".into(), |p| p.display().to_string()),
        system.built_against_torch,
        system.cuda_available,
        system.cuda_device_count,
        system.cudnn_available
    ));
    for g in &system.gpus {
        say(format!(
            "GPU {}: {}, {} MiB ({} MiB in use), driver {}",
            g.index, g.name, g.memory_total_mib, g.memory_used_mib, g.driver
        ));
    }
    let mut report = Report {
        status: "failed".into(),
        device: "cpu".into(),
        gpu_checked: false,
        note: None,
        command: std::env::args().collect(),
        system,
        device_checks: Vec::new(),
        training: None,
        full_run: None,
        total_seconds: 0.0,
    };
    if let Some(problem) = report.system.version_mismatch() {
        report.note = Some(problem.clone());
        write_report(&args.out, &mut report, started)?;
        anyhow::bail!(problem);
    }
    let gpu_visible =
        report.system.cuda_available && (args.gpu as i64) < report.system.cuda_device_count;
    let device = if gpu_visible {
        report.gpu_checked = true;
        Device::Cuda(args.gpu)
    } else {
        let why = format!(
            "libtorch sees no GPU cuda:{} ({} device(s)): {}",
            args.gpu,
            report.system.cuda_device_count,
            report.system.why_no_gpu()
        );
        if !args.allow_cpu {
            report.status = "no-gpu".into();
            report.note = Some(why.clone());
            write_report(&args.out, &mut report, started)?;
            anyhow::bail!("{why}. On a machine without a GPU, --allow-cpu checks the CPU path");
        }
        say(format!(
            "{why}; --allow-cpu: checking the CPU path (the device runs below are CPU runs)"
        ));
        report.note = Some(format!(
            "no GPU: {why}; the CPU path was checked (--allow-cpu)"
        ));
        Device::Cpu
    };
    report.device = training::device_name(device);

    say(format!("device checks on {}", report.device));
    for (name, result) in sgdd_train::device_checks(device, &args.out.join("checkpoints")) {
        let part = Part::of(name, result);
        match (&part.result, &part.error) {
            (Some(c), _) => say(format!(
                "  {name}: ok ({} tensors on the device, max relative difference from the CPU \
                 {:.2e} ≤ {:.0e}, {:.1} s)",
                c.tensors_checked, c.max_rel_diff, c.tolerance, c.seconds
            )),
            (_, Some(e)) => say(format!("  {name}: FAILED: {e}")),
            _ => {}
        }
        report.device_checks.push(part);
    }

    let data = training::ensure_dataset(
        &args.out.join(format!(
            "data/nbody-charged-{}-{}",
            args.train_trajectories, args.eval_trajectories
        )),
        args.train_trajectories,
        args.eval_trajectories,
    );
    let data = match data {
        Ok(d) => d,
        Err(e) => {
            report.training = Some(Part::of("training", Err(e)));
            write_report(&args.out, &mut report, started)?;
            return Ok(false);
        }
    };
    report.training = Some(Part::of(
        "device vs CPU training",
        compare_training(&args, &data, device),
    ));
    let full_epochs = args.full_epochs.unwrap_or_else(quick_epochs);
    if full_epochs > 0 {
        say(format!(
            "timed run: SGDD-EGNO, the --quick budget ({full_epochs} epochs) on {}",
            report.device
        ));
        let r = training::train(
            &data,
            "sgdd",
            device,
            &[format!("train.epochs={full_epochs}")],
            &args.out.join("runs/full-sgdd"),
        );
        if let Ok(r) = &r {
            say(format!(
                "  {:.1} s in all, {:.2} s per epoch, test S2S {:.5}",
                r.wall_seconds, r.seconds_per_epoch, r.test.s2s
            ));
        }
        report.full_run = Some(Part::of("timed --quick-sized run", r));
    }
    let passed = report.device_checks.iter().all(|p| p.passed)
        && report.training.as_ref().is_none_or(|p| p.passed)
        && report.full_run.as_ref().is_none_or(|p| p.passed);
    report.status = if passed { "passed" } else { "failed" }.into();
    write_report(&args.out, &mut report, started)?;
    Ok(passed)
}

/// The `--quick` table's epochs (`train.epochs` of its base config).
fn quick_epochs() -> usize {
    sgdd_train::RunConfig::parse(training::QUICK_CONFIG, &[])
        .map(|c| c.train.epochs)
        .unwrap_or(30)
}

fn compare_training(args: &Args, data: &Path, device: Device) -> Result<TrainingPart> {
    let set = [
        format!("train.epochs={}", args.epochs),
        format!("train.eval_every={}", args.epochs),
    ];
    let mut runs = Vec::new();
    let mut comparisons = Vec::new();
    let mut failures = Vec::new();
    for model in ["egno", "sgdd"] {
        let mut pair = Vec::new();
        for (dev, dir) in [
            (
                device,
                format!("{model}-{}", training::device_name(device).replace(':', "")),
            ),
            (Device::Cpu, format!("{model}-cpu-reference")),
        ] {
            let name = training::device_name(dev);
            say(format!(
                "training {model} on {name} ({} epochs)",
                args.epochs
            ));
            let r = training::train(data, model, dev, &set, &args.out.join("runs").join(dir))?;
            say(format!(
                "  {:.2} s per epoch, losses {:?}, test S2S {:.5}",
                r.seconds_per_epoch, r.epoch_loss, r.test.s2s
            ));
            pair.push(r);
        }
        let c = training::compare(&pair[0], &pair[1]);
        say(format!(
            "  {model}: {} vs cpu: loss differs by {:.2e} (≤ {}), metrics by {:.2e} (≤ {}), \
             {:.2}× the CPU's speed",
            pair[0].device,
            c.loss_rel_diff,
            c.loss_tolerance,
            c.metric_rel_diff,
            c.metric_tolerance,
            c.speedup
        ));
        if !c.passed {
            failures.push(format!(
                "{model}: loss differs by {:.3e} (tolerance {}), metrics by {:.3e} (tolerance {})",
                c.loss_rel_diff, c.loss_tolerance, c.metric_rel_diff, c.metric_tolerance
            ));
        }
        runs.extend(pair);
        comparisons.push(c);
    }
    anyhow::ensure!(
        failures.is_empty(),
        "the device's training differs from the CPU's: {}",
        failures.join("; ")
    );
    Ok(TrainingPart {
        epochs: args.epochs,
        runs,
        comparisons,
    })
}

fn write_report(out: &Path, report: &mut Report, started: Instant) -> Result<()> {
    report.total_seconds = started.elapsed().as_secs_f64();
    let json = out.join("gpu-check.json");
    let mut text = serde_json::to_string_pretty(report)?;
    text.push('\n');
    std::fs::write(&json, text).with_context(|| format!("writing {}", json.display()))?;
    let md = out.join("gpu-check.md");
    std::fs::write(&md, markdown(report)).with_context(|| format!("writing {}", md.display()))?;
    say(format!(
        "{} in {:.0} s: wrote {} and {}",
        report.status,
        report.total_seconds,
        json.display(),
        md.display()
    ));
    Ok(())
}

fn markdown(r: &Report) -> String {
    let s = &r.system;
    let mut m = String::new();
    let _ = writeln!(m, "# sgdd-gpu-check: {} on {}\n", r.status, r.device);
    if let Some(note) = &r.note {
        let _ = writeln!(m, "**Note:** {note}\n");
    }
    let _ = writeln!(
        m,
        "libtorch {} loaded from `{}` (built against {}); CUDA available: {}, {} device(s); \
         cuDNN: {}{}.",
        s.libtorch_version.as_deref().unwrap_or("?"),
        s.libtorch_dir
            .as_deref()
            .map_or_else(|| "?".into(), |p| p.display().to_string()),
        s.built_against_torch,
        s.cuda_available,
        s.cuda_device_count,
        s.cudnn_available,
        s.cuda_runtime_version
            .map(|v| format!("; CUDA runtime {v}"))
            .unwrap_or_default()
    );
    for g in &s.gpus {
        let _ = writeln!(
            m,
            "- GPU {}: {}, {} MiB, driver {}",
            g.index, g.name, g.memory_total_mib, g.driver
        );
    }
    let _ = writeln!(
        m,
        "\n## Device checks (against the CPU)\n\n| check | result | tensors on device | max rel. diff | tolerance | s |\n|---|---|---|---|---|---|"
    );
    for p in &r.device_checks {
        match &p.result {
            Some(c) => {
                let _ = writeln!(
                    m,
                    "| {} | ok | {} | {:.2e} | {:.0e} | {:.1} |",
                    p.name, c.tensors_checked, c.max_rel_diff, c.tolerance, c.seconds
                );
            }
            None => {
                let _ = writeln!(
                    m,
                    "| {} | **failed**: {} | | | | |",
                    p.name,
                    p.error.as_deref().unwrap_or("").replace('|', "/")
                );
            }
        }
    }
    if let Some(t) = &r.training {
        let _ = writeln!(m, "\n## Training on {} against the CPU\n", r.device);
        match &t.result {
            Some(tp) => {
                let _ = writeln!(
                    m,
                    "Charged N-body (`configs/repro/nbody-quick.toml`), {} epochs, same initial \
                     weights.\n\n| model | device | s / epoch | last loss | val S2S | test S2S | \
                     test S2T |\n|---|---|---|---|---|---|---|",
                    tp.epochs
                );
                for run in &tp.runs {
                    let _ = writeln!(
                        m,
                        "| {} | {} | {:.3} | {:.5} | {:.5} | {:.5} | {:.5} |",
                        run.model,
                        run.device,
                        run.seconds_per_epoch,
                        run.epoch_loss.last().copied().unwrap_or(f64::NAN),
                        run.val.s2s,
                        run.test.s2s,
                        run.test.s2t
                    );
                }
                let _ = writeln!(
                    m,
                    "\n| model | loss rel. diff (tol.) | metric rel. diff (tol.) | speed-up |\n|---|---|---|---|"
                );
                for c in &tp.comparisons {
                    let _ = writeln!(
                        m,
                        "| {} | {:.2e} ({}) | {:.2e} ({}) | {:.2}× |",
                        c.model,
                        c.loss_rel_diff,
                        c.loss_tolerance,
                        c.metric_rel_diff,
                        c.metric_tolerance,
                        c.speedup
                    );
                }
            }
            None => {
                let _ = writeln!(
                    m,
                    "**Failed:** {}",
                    t.error.as_deref().unwrap_or("(no message)")
                );
            }
        }
    }
    if let Some(f) = &r.full_run {
        let _ = writeln!(m, "\n## Timed `--quick`-sized run on {}\n", r.device);
        match &f.result {
            Some(run) => {
                let _ = writeln!(
                    m,
                    "SGDD-EGNO, {} epochs ({} steps): {:.1} s in all, {:.1} s training, {:.3} s \
                     per epoch, {:.0} samples/s; test S2S {:.5}, S2T {:.5}{}.",
                    run.epochs,
                    run.steps,
                    run.wall_seconds,
                    run.train_seconds,
                    run.seconds_per_epoch,
                    run.samples_per_second,
                    run.test.s2s,
                    run.test.s2t,
                    run.gpu_memory_mib
                        .map(|mib| format!("; the process held {mib} MiB of GPU memory"))
                        .unwrap_or_default()
                );
            }
            None => {
                let _ = writeln!(
                    m,
                    "**Failed:** {}",
                    f.error.as_deref().unwrap_or("(no message)")
                );
            }
        }
    }
    let _ = writeln!(m, "\nTotal: {:.0} s.", r.total_seconds);
    m
}
