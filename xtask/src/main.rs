//! `cargo xtask`: the project's automation (set-up, tests, data), in the style of rust-analyzer's
//! xtask: one module per command, few dependencies, outputs under `target/`.

mod bench;
mod env;
mod gpu_check;
mod gpu_package;
mod setup;

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    about = "Project automation for the SGDD workspace"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Create the project venv `.venv/` with the PyPI wheel torch==2.13.0 (idempotent).
    Setup {
        /// Reinstall even when the venv looks complete.
        #[arg(long)]
        force: bool,
    },
    /// Run the whole workspace's tests (runs `setup` first when needed).
    Test {
        /// Extra arguments for `cargo test`, e.g. `-p traj-data` or `-- name_filter`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Datasets: generate, fetch, import.
    Data {
        /// Passed to `sgdd data ...`, e.g. `generate nbody --system charged --out DIR`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        args: Vec<String>,
    },
    /// Reproduce a paper table: `repro nbody|mocap-run|adk|nbody-geotdm [--quick]`,
    /// `repro md17-xtb|md17-geotdm --molecule M [--quick]` (runs `sgdd repro ...` in release).
    Repro {
        /// Passed to `sgdd repro ...`, e.g. `nbody --quick`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        args: Vec<String>,
    },
    /// Benchmark an area against its peer baseline, writing `target/bench/NAME.json`.
    ///
    /// For each thread setting (`--threads 1,all`, the default: one thread, then all cores) runs
    /// the criterion bench `NAME` of `benches/` and then, when it exists, the peer script
    /// `benches/peers/NAME.py`, both pinned to the same thread count (RAYON/OMP/OPENBLAS/MKL
    /// `_NUM_THREADS`, `SGDD_BENCH_THREADS`), recording the load average before and after each
    /// side and warning when the machine was not quiet; `--settle SECS` (default 120) is the
    /// longest wait for a quiet machine before a side. Merges the settings into
    /// `target/bench/NAME.json` (ratios keyed by thread count) and prints the tables.
    Bench {
        /// The area, e.g. `spectral` or `nets`.
        name: String,
        /// `--threads LIST`, `--settle SECS`, then arguments for the criterion bench.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run the `sgdd` CLI (built in release with the libtorch environment), e.g.
    /// `cargo xtask sgdd train -c configs/nbody-charged.toml -o target/runs/charged`.
    Sgdd {
        /// Passed to `sgdd ...`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        args: Vec<String>,
    },
    /// Prove the CUDA path on this machine with a build of `sgdd-gpu-check` made beforehand
    /// (`cargo xtask cargo build --release -p sgdd-gpu-check`): what libtorch sees, the device
    /// checks against the CPU, EGNO and SGDD-EGNO trained on the GPU and on the CPU and compared,
    /// a timed `--quick`-sized run; writes `OUT/gpu-check.json` and `OUT/gpu-check.md`.
    ///
    /// Arguments go to the binary: `--out DIR` (default target/gpu-check), `--allow-cpu` (on a
    /// machine without GPU, check the CPU path instead of failing), `--epochs N`, `--help`.
    GpuCheck {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Build `sgdd-gpu-check` for a GPU machine without Rust whose only libtorch is its own
    /// torch wheel (default 2.11.0): a second venv with that torch, the matching tch, a stripped
    /// binary without rpath and its launcher in `target/gpu-package/bundle/` (< 64 MiB), then
    /// run the bundle here on the CPU against that venv's libtorch only (`--allow-cpu`).
    GpuPackage {
        /// The GPU machine's torch version.
        #[arg(long, default_value = "2.11.0")]
        torch: String,
        /// Build and bundle without the run on this CPU.
        #[arg(long)]
        skip_proof: bool,
    },
    /// Run any cargo command with the libtorch environment, e.g. `cargo xtask cargo build --release`.
    Cargo {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        args: Vec<String>,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `sgdd FIRST ARGS...`, built with the libtorch environment: in release, or in the dev
/// profile when `SGDD_XTASK_PROFILE=dev` (CI runs the README's commands that way, reusing the
/// test build instead of compiling everything again).
fn sgdd<const N: usize>(first: [&str; N], args: &[String]) -> Result<()> {
    let torch = setup::ensure()?;
    let mut cmd = env::cargo(&torch);
    cmd.arg("run");
    match std::env::var("SGDD_XTASK_PROFILE").as_deref() {
        Ok("dev") | Ok("debug") => {}
        Ok("release") | Err(_) => {
            cmd.arg("--release");
        }
        Ok(other) => anyhow::bail!("SGDD_XTASK_PROFILE={other:?}: expected release or dev"),
    }
    cmd.args(["--quiet", "--package", "sgdd", "--bin", "sgdd", "--"]);
    cmd.args(first).args(args);
    env::run(cmd)
}

fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Setup { force } => setup::run(force).map(drop),
        Cmd::Test { args } => {
            let torch = setup::ensure()?;
            let mut cmd = env::cargo(&torch);
            cmd.arg("test");
            if !args
                .iter()
                .any(|a| a == "-p" || a == "--package" || a.starts_with("--package="))
            {
                cmd.arg("--workspace");
            }
            cmd.args(args);
            env::run(cmd)
        }
        Cmd::Data { args } => sgdd(["data"], &args),
        Cmd::Repro { args } => sgdd(["repro"], &args),
        Cmd::Sgdd { args } => sgdd([], &args),
        Cmd::Bench { name, args } => bench::run(&name, &args),
        Cmd::GpuCheck { args } => gpu_check::run(&args),
        Cmd::GpuPackage { torch, skip_proof } => {
            gpu_package::run(&gpu_package::Options { torch, skip_proof })
        }
        Cmd::Cargo { args } => {
            let torch = setup::ensure()?;
            let mut cmd = env::cargo(&torch);
            cmd.args(args);
            env::run(cmd)
        }
    }
}
