//! `sgdd distill`: the library's [`Distiller`] with a progress bar and a summary of the student
//! beside its teachers.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use sgdd_train::{
    CheckedDistillConfig, CheckedGridConfig, DistillConfig, DistillOptions, DistillResult,
    DistillTiming, Distiller, GridDistillConfig, GridDistiller, GridMetrics, GridResult, RunMode,
};

use super::train::{ConfigArgs, progress};

/// `sgdd distill`.
#[derive(Debug, Args)]
pub struct DistillArgs {
    /// A TOML distillation config (`[data]`, `[student]`, `[distill]`, `[train]`), and overrides.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// A trained teacher's checkpoint (repeatable; replaces `distill.teachers`).
    #[arg(long = "teacher", value_name = "CHECKPOINT")]
    pub teachers: Vec<PathBuf>,
    /// Run directory (checkpoints, metrics.jsonl, result.json, timing.json, tensorboard/).
    #[arg(long, short)]
    pub out: PathBuf,
    /// Continue the run in OUT from its checkpoint, bit for bit (the budget, threads, device
    /// and learning rate may change; the teachers may not).
    #[arg(long, conflicts_with = "force")]
    pub resume: bool,
    /// Replace the run OUT holds.
    #[arg(long)]
    pub force: bool,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
    /// Stop after this many epochs (resume later with `--resume`).
    #[arg(long, hide = true)]
    pub stop_after_epochs: Option<usize>,
}

impl DistillArgs {
    /// Every override, `--teacher` last.
    fn overrides(&self) -> Vec<String> {
        let mut set = self.config.overrides();
        if !self.teachers.is_empty() {
            let list: Vec<String> = self
                .teachers
                .iter()
                .map(|p| toml_string(&p.display().to_string()))
                .collect();
            set.push(format!("distill.teachers=[{}]", list.join(", ")));
        }
        set
    }

    /// The config with every override applied, checked.
    pub fn load(&self) -> Result<CheckedDistillConfig> {
        DistillConfig::load(&self.config.config, &self.overrides())
    }

    /// The config as a grid run's (`sgdd distill-grid`), checked.
    pub fn load_grid(&self) -> Result<CheckedGridConfig> {
        GridDistillConfig::load(&self.config.config, &self.overrides())
    }

    fn mode(&self) -> RunMode {
        if self.resume {
            RunMode::Resume
        } else if self.force {
            RunMode::Force
        } else {
            RunMode::Fresh
        }
    }
}

/// `s` as a TOML basic string (quoted, escaped).
fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Refuses to run under a launcher (`WORLD_SIZE > 1`, as torchrun or SLURM set it): a
/// distillation run is one process, and several would race for one run directory.
fn single_process(command: &str) -> Result<()> {
    if let Some(env) = torch_dist::DistEnv::from_env()?
        && env.world_size > 1
    {
        anyhow::bail!(
            "`sgdd {command}` trains in one process (data-parallel distillation is not built), \
             but it was started under a launcher (WORLD_SIZE = {}): run it without torchrun or \
             srun",
            env.world_size
        );
    }
    Ok(())
}

/// Distils `args`' config into its run directory; the result and timing.
pub fn run(args: &DistillArgs) -> Result<(DistillResult, DistillTiming)> {
    single_process("distill")?;
    let cfg = args.load()?;
    let (bar, observer) = progress(args.quiet, cfg.train.epochs);
    let mut d = Distiller::new(
        cfg,
        &args.out,
        DistillOptions {
            mode: args.mode(),
            observer: Some(observer),
        },
    )?;
    d.train(args.stop_after_epochs)?;
    bar.finish_and_clear();
    d.finish()
}

pub fn distill(args: &DistillArgs) -> Result<()> {
    let (result, timing) = run(args).with_context(|| format!("run {}", args.out.display()))?;
    if !args.quiet {
        eprintln!("{}", summary(&args.out, &result, &timing));
    }
    println!("{}", serde_json::to_string(&result)?);
    Ok(())
}

/// Trains or distils the grid run of `args`' config into its run directory; the result and
/// timing.
pub fn run_grid(args: &DistillArgs) -> Result<(GridResult, DistillTiming)> {
    single_process("distill-grid")?;
    let cfg = args.load_grid()?;
    let (bar, observer) = progress(args.quiet, cfg.train.epochs);
    let mut d = GridDistiller::new(
        cfg,
        &args.out,
        DistillOptions {
            mode: args.mode(),
            observer: Some(observer),
        },
    )?;
    d.train(args.stop_after_epochs)?;
    bar.finish_and_clear();
    d.finish()
}

pub fn distill_grid(args: &DistillArgs) -> Result<()> {
    let (r, t) = run_grid(args).with_context(|| format!("run {}", args.out.display()))?;
    if !args.quiet {
        let mut s = format!(
            "{} on {}, KD {:?}, {:?} weighting, {:?} init (seed {}): {} epochs in {:.1} s; best \
             epoch {} on validation MSE.\n  {:<40} {:>12} {:>8} {:>10} {:>12} {:>8}\n",
            r.arch,
            r.dataset.display(),
            r.kd,
            r.weighting,
            r.init,
            r.seed,
            r.epochs,
            t.train_seconds,
            r.best_epoch,
            "model",
            "test MSE",
            "rel L2",
            "params",
            "samples/s",
            "mean α"
        );
        let mut row = |name: String, m: &GridMetrics, params: i64, sps: f64, a: Option<f64>| {
            s.push_str(&format!(
                "  {name:<40} {:>12.4e} {:>8.4} {params:>10} {sps:>12.0} {:>8}\n",
                m.mse,
                m.rel_l2,
                a.map(|a| format!("{a:.3}")).unwrap_or_default()
            ));
        };
        row(
            r.arch.clone(),
            &r.test,
            r.parameters,
            t.student_inference,
            None,
        );
        for (teacher, sps) in r.teachers.iter().zip(&t.teacher_inference) {
            let name = format!(
                "teacher {} ({})",
                teacher.arch,
                run_name(&teacher.checkpoint)
            );
            row(
                name,
                &teacher.test,
                teacher.parameters,
                *sps,
                teacher.mean_alpha,
            );
        }
        eprint!("{s}");
    }
    println!("{}", serde_json::to_string(&r)?);
    Ok(())
}

/// The run directory that names a checkpoint (`RUN/best.safetensors` → `RUN`).
fn run_name(checkpoint: &std::path::Path) -> String {
    checkpoint.parent().and_then(|p| p.file_name()).map_or_else(
        || checkpoint.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// The student beside its teachers: test S2S / S2T (×10⁻²), parameters, inference throughput.
fn summary(out: &std::path::Path, r: &DistillResult, t: &DistillTiming) -> String {
    let mut s = format!(
        "{} student, KD {:?}, {:?} weighting, {:?} init (seed {}): {} epochs, {} steps in \
         {:.1} s; best epoch {} on validation.\n",
        r.student,
        r.kd,
        r.weighting,
        r.init,
        r.seed,
        r.epochs,
        r.steps,
        t.train_seconds,
        r.best_epoch
    );
    s.push_str(&format!(
        "  {:<40} {:>10} {:>10} {:>10} {:>12} {:>8}\n",
        "model", "S2S e-2", "S2T e-2", "params", "samples/s", "mean α"
    ));
    s.push_str(&format!(
        "  {:<40} {:>10.4} {:>10.4} {:>10} {:>12.0} {:>8}\n",
        "student",
        r.test.s2s * 100.0,
        r.test.s2t * 100.0,
        r.student_parameters,
        t.student_inference,
        ""
    ));
    for (teacher, sps) in r.teachers.iter().zip(&t.teacher_inference) {
        let name = format!(
            "teacher {} ({})",
            teacher.kind,
            run_name(&teacher.checkpoint)
        );
        s.push_str(&format!(
            "  {:<40} {:>10.4} {:>10.4} {:>10} {:>12.0} {:>8}\n",
            name,
            teacher.test.s2s * 100.0,
            teacher.test.s2t * 100.0,
            teacher.parameters,
            sps,
            teacher
                .mean_alpha
                .map(|a| format!("{a:.3}"))
                .unwrap_or_default()
        ));
    }
    if let Some(e) = &r.stopped_early {
        s.push_str(&format!("  {e}\n"));
    }
    s.push_str(&format!(
        "  run directory {}: result.json, timing.json, metrics.jsonl, best.safetensors, \
         tensorboard/",
        out.display()
    ));
    s
}
