//! `sgdd data ...`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use traj_data::nbody::{NBodySpec, System};

#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Generate a dataset.
    #[command(subcommand)]
    Generate(Generate),
}

#[derive(Debug, Subcommand)]
pub enum Generate {
    /// N-body systems (charged particles, springs, gravity) with the published generators'
    /// parameters; deterministic for a seed.
    Nbody(NBodyArgs),
}

#[derive(Debug, Args)]
pub struct NBodyArgs {
    /// Which system.
    #[arg(long, default_value = "charged")]
    pub system: System,
    /// Training trajectories.
    #[arg(long, default_value_t = 3000)]
    pub train: usize,
    /// Validation trajectories.
    #[arg(long, default_value_t = 2000)]
    pub val: usize,
    /// Test trajectories.
    #[arg(long, default_value_t = 2000)]
    pub test: usize,
    /// Seed: the same seed gives byte-identical files.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Integration steps (dt = 0.001).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Save every this many steps.
    #[arg(long)]
    pub sample_every: Option<usize>,
    /// Output directory (created).
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(cmd: DataCommand) -> Result<()> {
    match cmd {
        DataCommand::Generate(Generate::Nbody(args)) => generate_nbody(&args),
    }
}

fn generate_nbody(args: &NBodyArgs) -> Result<()> {
    let mut spec = NBodySpec::new(args.system);
    spec.n_train = args.train;
    spec.n_val = args.val;
    spec.n_test = args.test;
    spec.seed = args.seed;
    if let Some(s) = args.steps {
        spec.steps = s;
    }
    if let Some(s) = args.sample_every {
        spec.sample_every = s;
    }
    let total = (args.train + args.val + args.test) as u64;
    let bar = ProgressBar::new(total).with_style(
        ProgressStyle::with_template(
            "{msg} [{elapsed_precise}] {wide_bar} {pos}/{len} trajectories ({per_sec}, eta {eta})",
        )
        .expect("valid template"),
    );
    bar.set_message(format!("{} ", args.system));
    let started = std::time::Instant::now();
    let manifest = traj_data::nbody::generate_dataset_dir(&spec, &args.out, &|done, _| {
        bar.set_position(done as u64)
    })
    .with_context(|| format!("generating {} into {}", args.system, args.out.display()))?;
    bar.finish();
    println!(
        "wrote {} ({} train / {} val / {} test trajectories) in {:.1?}",
        args.out.display(),
        args.train,
        args.val,
        args.test,
        started.elapsed()
    );
    println!("{}", serde_json::to_string_pretty(&manifest)?);
    Ok(())
}
