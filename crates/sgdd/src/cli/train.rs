//! `sgdd train`: the library's [`Trainer`] with a progress bar, a summary and the run's figures.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sgdd_train::{
    CheckedRunConfig, DataParallel, Event, Observer, RunConfig, RunMode, RunResult, Timing,
    Trainer, TrainerOptions, frames_of,
};
use tch::Device;

use crate::plots;

/// Options shared by commands that read a run config.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// A TOML run config (`[data]`, `[model]`, `[train]`).
    #[arg(long, short)]
    pub config: PathBuf,
    /// Override any config key, e.g. `--set model.kind=egno --set train.epochs=20` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Shorthand for `--set train.device=...`: auto, cpu, cuda or cuda:N.
    #[arg(long)]
    pub device: Option<String>,
    /// Shorthand for `--set train.seed=...`.
    #[arg(long)]
    pub seed: Option<u64>,
}

impl ConfigArgs {
    /// The config with all overrides applied, checked.
    pub fn load(&self) -> Result<CheckedRunConfig> {
        RunConfig::load(&self.config, &self.overrides())
    }

    /// The `--set` overrides with `--device` and `--seed` added.
    pub fn overrides(&self) -> Vec<String> {
        let mut set = self.set.clone();
        if let Some(d) = &self.device {
            set.push(format!("train.device=\"{d}\""));
        }
        if let Some(s) = self.seed {
            set.push(format!("train.seed={s}"));
        }
        set
    }
}

/// `sgdd train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Run directory (checkpoints, metrics.jsonl, result.json, tensorboard/, figures).
    #[arg(long, short)]
    pub out: PathBuf,
    /// Continue the run in OUT from its checkpoint, bit for bit. The config may change
    /// `train.epochs` (to extend the run), threads, device, the learning rate and its schedule,
    /// patience; any other change is refused.
    #[arg(long, conflicts_with = "force")]
    pub resume: bool,
    /// Replace the run OUT holds (its run files are deleted first; other files are kept).
    #[arg(long)]
    pub force: bool,
    /// Fine-tune: start from the weights of this checkpoint (same model settings), with a fresh
    /// optimiser. LaM-SLidE: take the trained codec (stage 1) of this checkpoint — same codec
    /// settings and dataset — and start at stage 2.
    #[arg(long, value_name = "CHECKPOINT", conflicts_with = "resume")]
    pub init_from: Option<PathBuf>,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
    /// Stop after this many epochs (resume later with `--resume`).
    #[arg(long, hide = true)]
    pub stop_after_epochs: Option<usize>,
    /// Train data-parallel over N local worker processes (Gloo on 127.0.0.1): the same run
    /// as one process, `train.batch_size` being the global batch shared by the workers.
    /// Under an external launcher (torchrun, srun) leave it out: a worker joins the group its
    /// environment describes (MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE, LOCAL_RANK).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub nproc: Option<u16>,
    /// Seconds a data-parallel worker waits for the rendezvous and for each collective before
    /// failing (a dead or stuck peer).
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub dist_timeout: u64,
    /// The collective engine of a data-parallel run: `nccl` (CUDA tensors on the GPUs; needs
    /// an sgdd built with the `nccl` feature), `gloo` (CPU tensors, CUDA ones through host
    /// copies), or `auto`: NCCL when the workers train on CUDA and this sgdd has it, else Gloo.
    /// On CUDA, worker `LOCAL_RANK` of a machine takes device `cuda:(N + LOCAL_RANK)` for a
    /// configured `cuda:N` (`cuda` and `auto` are N = 0).
    #[arg(long, value_enum, default_value = "auto")]
    pub dist_backend: DistBackendArg,
    /// LaM-SLidE (`model.kind = "lam-slide"`): train stage 1 (`codec`), stage 2 (`flow`, once
    /// the codec is trained) or both in turn (`both`); each resumes with `--resume`.
    #[arg(long, value_enum, default_value = "both")]
    pub stage: crate::cli::lam_slide::StageArg,
}

/// `--dist-backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DistBackendArg {
    /// NCCL on CUDA when available in this build, else Gloo.
    Auto,
    /// Gloo.
    Gloo,
    /// NCCL.
    Nccl,
}

/// A data-parallel worker's device and backend: on CUDA the worker takes `cuda:(N + local)`
/// for a configured `cuda:N`; `auto` chooses NCCL for CUDA when this build has it.
fn worker_setup(
    device: Device,
    local_rank: usize,
    choice: DistBackendArg,
) -> Result<(Device, torch_dist::Backend)> {
    let device = match device {
        Device::Cuda(n) => Device::Cuda(n + local_rank),
        other => other,
    };
    let nccl = match device {
        Device::Cuda(d) => Some(torch_dist::Backend::Nccl { device: d }),
        _ => None,
    };
    let backend = match (choice, nccl) {
        (DistBackendArg::Gloo, _) => torch_dist::Backend::Gloo,
        (DistBackendArg::Nccl, Some(b)) => b,
        (DistBackendArg::Nccl, None) => anyhow::bail!(
            "--dist-backend nccl reduces CUDA tensors, but the workers train on {device:?} \
             (set --device cuda, or use --dist-backend gloo)"
        ),
        (DistBackendArg::Auto, Some(b)) if b.is_built() => b,
        (DistBackendArg::Auto, _) => torch_dist::Backend::Gloo,
    };
    Ok((device, backend))
}

/// A progress bar fed by the trainer's events.
pub(crate) fn progress(quiet: bool, epochs: usize) -> (ProgressBar, Observer) {
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template(
            "{msg} [{elapsed_precise}] {wide_bar} {pos}/{len} steps ({per_sec}, eta {eta})",
        )
        .expect("valid template"),
    );
    if quiet {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    let b = bar.clone();
    let observer = Box::new(move |e: Event<'_>| match e {
        Event::Start { total, done } => {
            b.set_length(total);
            b.set_position(done);
        }
        Event::Step { epoch, loss } => {
            b.set_message(format!("epoch {epoch}/{epochs} loss {loss:.4e}"));
            b.inc(1);
        }
        Event::Epoch(log) => {
            if let Some(v) = &log.val {
                b.println(format!(
                    "epoch {:>4}: loss {:.4e}, val S2S {:.4e} S2T {:.4e}",
                    log.epoch, log.loss, v.s2s, v.s2t
                ));
            }
        }
        // notes are printed even without a bar: what a resume changed, early stopping, …
        Event::Note(s) if quiet => eprintln!("{s}"),
        Event::Note(s) => b.println(s),
    });
    (bar, observer)
}

/// Trains (or, for an untrained baseline, scores) `cfg` into `out`, draws the figures and
/// returns the result; `stop_after` epochs of this invocation at most.
pub fn run(
    cfg: CheckedRunConfig,
    out: &Path,
    mode: RunMode,
    init_from: Option<PathBuf>,
    quiet: bool,
    stop_after: Option<usize>,
) -> Result<(RunResult, Timing)> {
    let opts = TrainerOptions {
        mode,
        init_from,
        ..Default::default()
    };
    let (trainer, result) = run_with(cfg, out, opts, quiet, stop_after)?;
    Ok((result, trainer.timing()))
}

/// As [`run`], with the trainer's options: a data-parallel rank other than 0 trains and
/// returns `None` (rank 0 scores, writes and draws).
fn run_with(
    cfg: CheckedRunConfig,
    out: &Path,
    mut opts: TrainerOptions,
    quiet: bool,
    stop_after: Option<usize>,
) -> Result<(Trainer, RunResult)> {
    let (bar, observer) = progress(quiet, cfg.train.epochs);
    opts.observer = Some(observer);
    let mut trainer = Trainer::new(cfg, out, opts)?;
    trainer.train(stop_after)?;
    bar.finish_and_clear();
    let result = trainer.finish()?;
    if trainer.finished() {
        draw(&trainer)?;
    }
    Ok((trainer, result))
}

/// `loss.png` and `trajectory.png` of a finished run.
fn draw(trainer: &Trainer) -> Result<()> {
    let out = trainer.dir();
    let cfg = trainer.config();
    let history = trainer.history();
    if !history.is_empty() {
        let epochs = |f: &dyn Fn(&sgdd_train::EpochLog) -> Option<f64>| -> Vec<(f64, f64)> {
            history
                .iter()
                .filter_map(|h| f(h).map(|v| (h.epoch as f64, v)))
                .collect()
        };
        plots::loss_curve(
            &out.join("loss.png"),
            &format!("{} on {}", cfg.model.kind.name(), cfg.data.dir.display()),
            "epoch",
            &[
                plots::Panel {
                    y_label: "training loss (normalised units)",
                    series: vec![
                        plots::Series {
                            label: "train loss",
                            points: epochs(&|h| Some(h.loss)),
                        },
                        plots::Series {
                            label: "train L_pred",
                            points: epochs(&|h| Some(h.pred)),
                        },
                    ],
                },
                plots::Panel {
                    y_label: "validation MSE (original units²)",
                    series: vec![
                        plots::Series {
                            label: "val S2T (all frames)",
                            points: epochs(&|h| h.val.map(|v| v.s2t)),
                        },
                        plots::Series {
                            label: "val S2S (final frame)",
                            points: epochs(&|h| h.val.map(|v| v.s2s)),
                        },
                    ],
                },
            ],
        )?;
    }
    let p = trainer.test_predictions(1)?;
    let start = frames_of(&p.start.unsqueeze(1))?.remove(0).remove(0);
    plots::trajectories(
        &out.join("trajectory.png"),
        "test sample 0: true and predicted paths (original units)",
        &start,
        &frames_of(&p.truth)?.remove(0),
        &frames_of(&p.pred)?.remove(0),
    )
}

pub fn train(args: &TrainArgs) -> Result<()> {
    let mut cfg = args.config.load()?;
    if let Some(n) = args.nproc.filter(|&n| n > 1) {
        return launch_local(usize::from(n), args);
    }
    let mode = if args.resume {
        RunMode::Resume
    } else if args.force {
        RunMode::Force
    } else {
        RunMode::Fresh
    };
    if cfg.model.kind == sgdd_train::ModelKind::LamSlide {
        anyhow::ensure!(
            torch_dist::DistEnv::from_env()?.is_none_or(|e| e.world_size <= 1),
            "model.kind = \"lam-slide\" trains in one process (data-parallel LaM-SLidE is not \
             built yet)"
        );
        return crate::cli::lam_slide::train(args, cfg, mode);
    }
    let timeout = Duration::from_secs(args.dist_timeout.max(1));
    let data_parallel = match torch_dist::DistEnv::from_env()? {
        Some(env) if env.world_size > 1 => {
            let (device, backend) = worker_setup(
                cfg.train.device.resolve()?,
                env.local_rank,
                args.dist_backend,
            )?;
            if let Device::Cuda(d) = device {
                // this worker's GPU (the config text rank 0 stores keeps its own device)
                let mut set = args.config.overrides();
                set.push(format!("train.device=\"cuda:{d}\""));
                cfg = RunConfig::load(&args.config.config, &set)?;
            }
            let group = torch_dist::ProcessGroup::new(&env, backend, timeout)
                .context("joining the data-parallel group")?;
            Some(DataParallel::new(group))
        }
        _ => None,
    };
    if let Some(d) = data_parallel.as_ref().filter(|d| d.rank() != 0) {
        // a worker: it trains its share silently; rank 0 scores, writes, draws and prints
        let rank = d.rank();
        let mut trainer = Trainer::new(
            cfg,
            &args.out,
            TrainerOptions {
                mode,
                data_parallel,
                ..Default::default()
            },
        )
        .with_context(|| format!("rank {rank}: run {}", args.out.display()))?;
        return trainer
            .train(args.stop_after_epochs)
            .with_context(|| format!("rank {rank}: run {}", args.out.display()));
    }
    let opts = TrainerOptions {
        mode,
        init_from: args.init_from.clone(),
        data_parallel,
        ..Default::default()
    };
    let (trainer, result) = run_with(cfg, &args.out, opts, args.quiet, args.stop_after_epochs)
        .with_context(|| format!("run {}", args.out.display()))?;
    let timing = trainer.timing();
    if !args.quiet {
        eprintln!("{}", summary(&args.out, &result, &timing));
    }
    println!("{}", serde_json::to_string(&result)?);
    Ok(())
}

/// `sgdd train --nproc N`: this command line again, without `--nproc`, as `n` workers of a
/// rendezvous on 127.0.0.1; fails naming the first worker that failed.
fn launch_local(n: usize, args: &TrainArgs) -> Result<()> {
    let exe = std::env::current_exe().context("locating the sgdd binary")?;
    let mut forwarded = Vec::new();
    let mut it = std::env::args_os().skip(1);
    while let Some(a) = it.next() {
        if a == "--nproc" {
            it.next();
        } else if !a.to_string_lossy().starts_with("--nproc=") {
            forwarded.push(a);
        }
    }
    let threads = args.config.load()?.train.threads;
    let workers = torch_dist::LocalLaunch::spawn(n, |_| {
        let mut c = Command::new(&exe);
        c.args(&forwarded);
        if threads == 0 {
            // the workers share the machine's cores
            let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
            c.env("OMP_NUM_THREADS", (cores / n).max(1).to_string());
        }
        c
    })?;
    let grace = Duration::from_secs(args.dist_timeout.max(1) + 30);
    let exit = workers.wait(Duration::MAX, grace)?;
    exit.success()
        .with_context(|| format!("sgdd train --nproc {n}: {}", args.out.display()))
}

/// The human summary printed at the end of `train`.
fn summary(out: &Path, r: &RunResult, t: &Timing) -> String {
    let mut s = format!("{} on {} (seed {}): ", r.model, r.dataset.display(), r.seed);
    if r.best_epoch > 0 {
        s.push_str(&format!(
            "{} epochs, {} steps in {:.1} s ({:.0} samples/s); best epoch {} on validation.\n",
            r.epochs, r.steps, t.train_seconds, t.samples_per_second, r.best_epoch
        ));
    } else {
        s.push_str("untrained baseline.\n");
    }
    s.push_str(&format!(
        "  test S2S {:.4} S2T {:.4} (×10⁻²), ADE {:.4} FDE {:.4}; validation S2S {:.4} S2T {:.4} (×10⁻²)\n",
        r.test.s2s * 100.0,
        r.test.s2t * 100.0,
        r.test.ade,
        r.test.fde,
        r.val.s2s * 100.0,
        r.val.s2t * 100.0
    ));
    if let Some(o) = &r.teacher_oracle_test {
        s.push_str(&format!(
            "  teacher-oracle test S2S {:.4} (×10⁻²; the decoder on the teacher, which reads the future)\n",
            o.s2s * 100.0
        ));
    }
    if let Some(e) = &r.stopped_early {
        s.push_str(&format!("  {e}\n"));
    }
    s.push_str(&format!(
        "  run directory {}: result.json, metrics.jsonl, best.safetensors, tensorboard/ (tensorboard --logdir {})",
        out.display(),
        out.join("tensorboard").display()
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use torch_dist::Backend;

    #[test]
    fn workers_take_their_gpu_and_the_backend_that_fits() {
        let setup = |d, local, choice| worker_setup(d, local, choice).unwrap();
        assert_eq!(
            setup(Device::Cpu, 1, DistBackendArg::Auto),
            (Device::Cpu, Backend::Gloo)
        );
        let nccl_or_gloo = |device| {
            if (Backend::Nccl { device }).is_built() {
                Backend::Nccl { device }
            } else {
                Backend::Gloo
            }
        };
        assert_eq!(
            setup(Device::Cuda(0), 1, DistBackendArg::Auto),
            (Device::Cuda(1), nccl_or_gloo(1))
        );
        assert_eq!(
            setup(Device::Cuda(2), 1, DistBackendArg::Gloo),
            (Device::Cuda(3), Backend::Gloo)
        );
        assert_eq!(
            setup(Device::Cuda(0), 3, DistBackendArg::Nccl),
            (Device::Cuda(3), Backend::Nccl { device: 3 })
        );
        let err = worker_setup(Device::Cpu, 0, DistBackendArg::Nccl).unwrap_err();
        assert!(err.to_string().contains("CUDA tensors"), "{err}");
    }
}
