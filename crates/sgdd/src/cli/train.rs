//! `sgdd train` and `sgdd eval`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use crate::config::RunConfig;
use crate::train::{self, RunOptions};

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
    /// The config with all overrides applied.
    pub fn load(&self) -> Result<RunConfig> {
        let mut set = self.set.clone();
        if let Some(d) = &self.device {
            set.push(format!("train.device=\"{d}\""));
        }
        if let Some(s) = self.seed {
            set.push(format!("train.seed={s}"));
        }
        RunConfig::load(&self.config, &set)
    }
}

/// `sgdd train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Run directory (checkpoints, metrics.jsonl, result.json, figures).
    #[arg(long, short)]
    pub out: PathBuf,
    /// Continue from `OUT/checkpoint.safetensors` (same config): the losses continue exactly as
    /// an uninterrupted run's.
    #[arg(long)]
    pub resume: bool,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
    /// Stop after this many epochs (resume later with `--resume`).
    #[arg(long, hide = true)]
    pub stop_after_epochs: Option<usize>,
}

pub fn train(args: &TrainArgs) -> Result<()> {
    let cfg = args.config.load()?;
    let opts = RunOptions {
        resume: args.resume,
        quiet: args.quiet,
        stop_after_epochs: args.stop_after_epochs,
    };
    let result = train::run(&cfg, &args.out, &opts)
        .with_context(|| format!("run {}", args.out.display()))?;
    println!("{}", serde_json::to_string(&result)?);
    Ok(())
}
