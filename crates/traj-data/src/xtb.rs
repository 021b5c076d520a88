//! MD17-style trajectories with real semi-empirical physics: GFN2-xTB (tblite through ase)
//! Langevin dynamics at 500 K with 0.5 fs steps from an RDKit geometry, run by the Python driver
//! [`DRIVER_SCRIPT`] (`datasets/md17_xtb.py`) in resumable chunks and assembled into an
//! MD17-format `.npz` (`theory = "GFN2-xTB"`).
//!
//! The steps, each a function so that a caller can report between them:
//! 1. [`has_packages`]: does the interpreter have ase, tblite and rdkit?
//! 2. if not, [`is_virtualenv`] then [`install_packages`] (never into a system Python);
//! 3. [`XtbRun::run`]: the driver (resuming after the last complete chunk of an earlier run in
//!    the same work directory), then the chunks truncated to the steps asked for and written.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::formats::md17::{read_md17_chunks, write_md17};
use crate::fsutil::atomic_write;
use crate::import_error::{ImportError, ImportResult};
use crate::molecule::Md17Molecule;
use crate::sources::run_command;

/// The driver `datasets/md17_xtb.py`, built in; [`XtbRun::run`] writes it into the work directory
/// before each run.
pub const DRIVER_SCRIPT: &str = include_str!("../../../datasets/md17_xtb.py");

/// The pinned packages [`install_packages`] installs.
pub const PACKAGES: [&str; 3] = ["ase==3.29.0", "tblite==0.8.0", "rdkit"];

/// Whether `python` can import ase, tblite's ase calculator and rdkit.
///
/// # Errors
/// [`ImportError::Command`] when `python` cannot be started.
pub fn has_packages(python: &Path) -> ImportResult<bool> {
    let out = Command::new(python)
        .args(["-c", "import ase, tblite.ase, rdkit"])
        .output()
        .map_err(|e| ImportError::Command {
            command: format!("{} -c 'import ase, tblite.ase, rdkit'", python.display()),
            problem: format!("could not start: {e}"),
        })?;
    Ok(out.status.success())
}

/// Whether `python` runs inside a virtual environment (`sys.prefix != sys.base_prefix`).
pub fn is_virtualenv(python: &Path) -> bool {
    Command::new(python)
        .args([
            "-c",
            "import sys; sys.exit(0 if sys.prefix != sys.base_prefix else 1)",
        ])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Installs [`PACKAGES`] with pip into `python`'s environment, which must be a virtual
/// environment.
///
/// # Errors
/// [`ImportError::Unusable`] naming `python` when it is not a virtual environment;
/// [`ImportError::Command`] when pip fails.
pub fn install_packages(python: &Path) -> ImportResult<()> {
    if !is_virtualenv(python) {
        return Err(ImportError::unusable(
            python,
            "lacks ase, tblite or rdkit and is not a virtual environment; run through \
             `cargo xtask data` (the project venv) or pass a venv's python",
        ));
    }
    run_command(
        Command::new(python)
            .args(["-m", "pip", "install", "-q"])
            .args(PACKAGES),
    )?;
    Ok(())
}

/// One xTB run: which molecule, how many steps, where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XtbRun {
    /// The molecule (its SMILES are in the driver).
    pub molecule: Md17Molecule,
    /// MD steps of 0.5 fs (one saved frame per step, as MD17).
    pub steps: usize,
    /// Seed of the start geometry, velocities and Langevin noise.
    pub seed: u64,
    /// Steps per chunk (a killed run loses at most one chunk).
    pub chunk: usize,
    /// Work directory for the chunks and `progress.json`.
    pub work: PathBuf,
    /// The `.npz` to write.
    pub out: PathBuf,
}

/// What [`XtbRun::run`] wrote.
#[derive(Clone, Debug, PartialEq)]
pub struct XtbReport {
    /// Frames written (= steps).
    pub num_frames: usize,
    /// Atoms of the molecule.
    pub num_atoms: usize,
    /// Milliseconds of xTB time per step (this and earlier runs), from `progress.json`; NaN when
    /// the driver did not record it.
    pub ms_per_step: f64,
    /// Size of the written `.npz`.
    pub bytes: u64,
}

impl XtbRun {
    /// A run of `steps` steps of `molecule` with seed 0, chunks of 1000 steps, the work directory
    /// `datasets/cache/md17-xtb-<molecule>-seed0` and the output
    /// `target/data/md17xtb_<molecule>.npz` (both relative to the working directory).
    pub fn new(molecule: Md17Molecule, steps: usize) -> Self {
        Self {
            molecule,
            steps,
            seed: 0,
            chunk: 1000,
            work: Self::default_work(molecule, 0),
            out: PathBuf::from(format!("target/data/md17xtb_{molecule}.npz")),
        }
    }

    /// The default work directory of `molecule` and `seed`:
    /// `datasets/cache/md17-xtb-<molecule>-seed<seed>`.
    pub fn default_work(molecule: Md17Molecule, seed: u64) -> PathBuf {
        PathBuf::from(format!("datasets/cache/md17-xtb-{molecule}-seed{seed}"))
    }

    /// Runs the driver with `python` (one OpenMP thread: xTB on a 9–21-atom molecule does not
    /// gain from more, and single-threaded runs are reproducible; the driver's output goes to
    /// this process's stdout and stderr), then assembles the chunks, keeps the first
    /// [`XtbRun::steps`] frames (a work directory may hold chunks of an earlier, longer run) and
    /// writes them as an MD17 `.npz` named after the molecule with theory `GFN2-xTB`.
    ///
    /// # Errors
    /// [`ImportError::Command`] when the driver fails (running the same call again resumes);
    /// reader errors naming a chunk; I/O errors naming the file.
    pub fn run(&self, python: &Path) -> ImportResult<XtbReport> {
        let work = &self.work;
        std::fs::create_dir_all(work).map_err(|e| ImportError::io(work, "create directory", e))?;
        let script = work.join("md17_xtb.py");
        atomic_write(&script, DRIVER_SCRIPT.as_bytes())?;
        let mut cmd = Command::new(python);
        cmd.arg(&script)
            .args(["--molecule", self.molecule.name()])
            .args(["--steps", &self.steps.to_string()])
            .args(["--seed", &self.seed.to_string()])
            .args(["--chunk", &self.chunk.to_string()])
            .arg("--out")
            .arg(work)
            .env("OMP_NUM_THREADS", "1")
            .env("PYTHONWARNINGS", "ignore::FutureWarning");
        let line = format!(
            "{} {} --molecule {} --steps {} --seed {} --chunk {} --out {}",
            python.display(),
            script.display(),
            self.molecule,
            self.steps,
            self.seed,
            self.chunk,
            work.display()
        );
        let status = cmd.status().map_err(|e| ImportError::Command {
            command: line.clone(),
            problem: format!("could not start: {e}"),
        })?;
        if !status.success() {
            return Err(ImportError::Command {
                command: line,
                problem: format!(
                    "{status}; run the same command again to resume from {}",
                    work.display()
                ),
            });
        }
        let mut md = read_md17_chunks(work)?;
        md.truncate(self.steps);
        md.name = Some(self.molecule.name().into());
        md.theory = Some("GFN2-xTB".into());
        if let Some(dir) = self.out.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| ImportError::io(dir, "create directory", e))?;
        }
        write_md17(&self.out, &md)?;
        let progress = work.join("progress.json");
        let ms_per_step = std::fs::read_to_string(&progress)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v["ms_per_step"].as_f64())
            .unwrap_or(f64::NAN);
        let bytes = std::fs::metadata(&self.out)
            .map_err(|e| ImportError::io(&self.out, "stat", e))?
            .len();
        Ok(XtbReport {
            num_frames: md.num_frames,
            num_atoms: md.num_atoms(),
            ms_per_step,
            bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_driver_knows_every_molecule() {
        assert!(DRIVER_SCRIPT.contains("GFN2-xTB"));
        for m in Md17Molecule::ALL {
            assert!(DRIVER_SCRIPT.contains(&format!("\"{m}\":")), "{m}");
        }
        let run = XtbRun::new(Md17Molecule::SalicylicAcid, 10);
        assert_eq!(
            run.work,
            PathBuf::from("datasets/cache/md17-xtb-salicylic_acid-seed0")
        );
        assert_eq!(
            run.out,
            PathBuf::from("target/data/md17xtb_salicylic_acid.npz")
        );
    }
}
