//! The `sgdd` command line.

pub mod data;
pub mod distill;
pub mod eval;
pub mod lam_slide;
pub mod repro;
pub mod repro_distill;
pub mod repro_distill_ns;
pub mod repro_geotdm;
pub mod train;

use clap::{Parser, Subcommand};

/// Learning long-horizon physical dynamics by spectral-guided distillation.
#[derive(Debug, Parser)]
#[command(name = "sgdd", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Datasets: generate N-body systems.
    #[command(subcommand)]
    Data(data::DataCommand),
    /// Train a model (or evaluate an untrained baseline: constant velocity, static) from a TOML
    /// config.
    Train(train::TrainArgs),
    /// Distil trained teachers into a light student (frequency-aligned or output KD, A2D or
    /// average weighting of several teachers, optional closed-form ridge initialisation).
    Distill(distill::DistillArgs),
    /// Train a grid forecaster (FNO, ResNet, U-Net) on a Navier–Stokes dataset, alone or
    /// distilled from grid teachers (checkpoints of such runs): the `sgdd distill` objective with
    /// DFT bands over time and space (`distill.bands = "dft"`).
    DistillGrid(distill::DistillArgs),
    /// Score a checkpoint on a split of its dataset (S2S, S2T, ADE, FDE in original units).
    Eval(eval::EvalArgs),
    /// Predict trajectories for a dataset file with a checkpoint; writes an `.npz` (key `x`).
    Predict(eval::PredictArgs),
    /// Where in the joint spectrum a model's error lies: error energy per joint-frequency band
    /// of one or more checkpoints, as JSON and a PNG.
    Spectrum(eval::SpectrumArgs),
    /// Reproduce a paper table (N-body: EGNO vs SGDD-EGNO over seeds, with ablations).
    #[command(subcommand)]
    Repro(ReproCommand),
}

#[derive(Debug, Subcommand)]
pub enum ReproCommand {
    /// The three N-body systems (generated), with the ablation on charged particles.
    Nbody(repro::NbodyReproArgs),
    /// Real CMU motion capture, subject 09 "run" (after `sgdd data import mocap-run`).
    MocapRun(repro::MocapReproArgs),
    /// Real protein MD, ADK (after `sgdd data fetch adk`).
    Adk(repro::AdkReproArgs),
    /// MD17-format molecular dynamics by GFN2-xTB, EGNO's setting (after
    /// `sgdd data generate md17-xtb --molecule M --steps 60000`).
    Md17Xtb(repro::Md17ReproArgs),
    /// Light students distilled from the charged N-body table's EGNO and SGDD-EGNO (and a weak
    /// teacher): no KD / output KD / frequency-aligned KD / average vs A2D / ridge init.
    DistillNbody(repro::ReproArgs),
    /// SDKD's own setting, 2-D Navier–Stokes (generated): a light grid student alone / + output
    /// KD / + frequency-aligned KD / two teachers (one weak) by average and by A2D / + ridge
    /// init, beside an FNO teacher.
    DistillNs(repro::ReproArgs),
    /// GeoTDM's N-body protocol (frames 0–9 given, 10–29 predicted): LaM-SLidE beside EGNO,
    /// SGDD-EGNO and constant velocity, and LaM-SLidE's published Table 1 rows.
    NbodyGeotdm(repro::ReproArgs),
    /// GeoTDM's MD17 setting (all atoms, every 10th frame, 10 given + 20 predicted frames
    /// sliding by one) on a GFN2-xTB trajectory (after `sgdd data generate md17-xtb --molecule
    /// M --steps 20000`): LaM-SLidE beside EGNO, SGDD-EGNO and constant velocity.
    Md17Geotdm(repro::Md17ReproArgs),
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Repro(cmd) = &cli.command {
        cmd.check_table_options()?;
    }
    match cli.command {
        Command::Data(cmd) => data::run(cmd),
        Command::Train(args) => train::train(&args),
        Command::Distill(args) => distill::distill(&args),
        Command::DistillGrid(args) => distill::distill_grid(&args),
        Command::Eval(args) => eval::eval(&args),
        Command::Predict(args) => eval::predict(&args),
        Command::Spectrum(args) => eval::spectrum(&args),
        Command::Repro(ReproCommand::Nbody(args)) => repro::run(&args),
        Command::Repro(ReproCommand::MocapRun(args)) => repro::run_mocap(&args),
        Command::Repro(ReproCommand::Adk(args)) => repro::run_adk(&args),
        Command::Repro(ReproCommand::Md17Xtb(args)) => repro::run_md17_xtb(&args),
        Command::Repro(ReproCommand::DistillNbody(args)) => repro_distill::run(&args),
        Command::Repro(ReproCommand::DistillNs(args)) => repro_distill_ns::run(&args),
        Command::Repro(ReproCommand::NbodyGeotdm(args)) => repro_geotdm::run(&args),
        Command::Repro(ReproCommand::Md17Geotdm(args)) => repro_geotdm::run_md17(&args),
    }
}
