//! Run directories users can trust (SPEC §9): one training per directory (an OS file lock that
//! dies with its process), and an existing run is never replaced unless asked.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// The files (and folders) a run writes; `--force` removes exactly these, nothing else.
pub const RUN_FILES: &[&str] = &[
    "config.toml",
    "metrics.jsonl",
    "checkpoint.safetensors",
    "best.safetensors",
    "result.json",
    "timing.json",
    "loss.png",
    "trajectory.png",
    "tensorboard",
];

const LOCK: &str = ".lock";

/// How a training treats its run directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RunMode {
    /// A new run; the directory must not hold one.
    #[default]
    Fresh,
    /// A new run replacing whatever run the directory holds (its run files are removed).
    Force,
    /// Continue the run in the directory from its `checkpoint.safetensors`.
    Resume,
}

/// A run directory held by this process: the lock is released when this is dropped (or the
/// process dies).
#[derive(Debug)]
pub struct RunDir {
    path: PathBuf,
    /// `None` for a follower ([`RunDir::follow`]).
    _lock: Option<File>,
}

impl RunDir {
    /// Creates (if needed) and locks `path` for `mode`; a second training in the same directory
    /// gets a clear error instead of interleaving its logs with the first's.
    pub fn claim(path: &Path, mode: RunMode) -> Result<Self> {
        if mode == RunMode::Resume && !path.join("checkpoint.safetensors").is_file() {
            bail!(
                "nothing to resume in {}: it holds no checkpoint.safetensors (start the run \
                 without --resume)",
                path.display()
            );
        }
        std::fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))?;
        let lock_path = path.join(LOCK);
        let mut lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .read(true)
            .open(&lock_path)
            .with_context(|| format!("opening {}", lock_path.display()))?;
        if lock.try_lock().is_err() {
            let holder = std::fs::read_to_string(&lock_path).unwrap_or_default();
            bail!(
                "another training is running in {} (it holds {}{}); wait for it or choose \
                 another directory",
                path.display(),
                lock_path.display(),
                if holder.trim().is_empty() {
                    String::new()
                } else {
                    format!(": pid {}", holder.trim())
                }
            );
        }
        lock.set_len(0)?;
        write!(lock, "{}", std::process::id())?;
        let existing = existing_run_files(path);
        match mode {
            RunMode::Fresh if !existing.is_empty() => bail!(
                "{} already holds a run ({}); continue it with --resume, replace it with \
                 --force, or choose another directory",
                path.display(),
                existing.join(", ")
            ),
            RunMode::Force => {
                for name in &existing {
                    let p = path.join(name);
                    let removed = if p.is_dir() {
                        std::fs::remove_dir_all(&p)
                    } else {
                        std::fs::remove_file(&p)
                    };
                    removed.with_context(|| format!("removing {}", p.display()))?;
                }
            }
            _ => {}
        }
        Ok(Self {
            path: path.to_owned(),
            _lock: Some(lock),
        })
    }

    /// The directory of a run another process holds and writes (rank 0 of a data-parallel
    /// run): nothing is created, locked or removed. With [`RunMode::Resume`] the checkpoint
    /// must be readable here (a directory every rank sees).
    pub fn follow(path: &Path, mode: RunMode) -> Result<Self> {
        if mode == RunMode::Resume && !path.join("checkpoint.safetensors").is_file() {
            bail!(
                "nothing to resume in {} as seen from this rank: a data-parallel run resumes                  from a run directory every rank can read",
                path.display()
            );
        }
        Ok(Self {
            path: path.to_owned(),
            _lock: None,
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `dir/name`.
    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

fn existing_run_files(path: &Path) -> Vec<String> {
    RUN_FILES
        .iter()
        .filter(|f| path.join(f).exists())
        .map(|f| (*f).to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_existing_run_is_kept_unless_forced() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        drop(RunDir::claim(&run, RunMode::Fresh).unwrap());
        std::fs::write(run.join("config.toml"), "x").unwrap();
        std::fs::write(run.join("notes.txt"), "mine").unwrap();
        let err = RunDir::claim(&run, RunMode::Fresh).unwrap_err().to_string();
        assert!(
            err.contains("already holds a run") && err.contains("config.toml"),
            "{err}"
        );
        drop(RunDir::claim(&run, RunMode::Force).unwrap());
        assert!(!run.join("config.toml").exists());
        assert_eq!(
            std::fs::read_to_string(run.join("notes.txt")).unwrap(),
            "mine"
        );
    }

    #[test]
    fn a_second_claim_of_a_locked_directory_fails() {
        let dir = tempfile::tempdir().unwrap();
        let held = RunDir::claim(dir.path(), RunMode::Fresh).unwrap();
        let err = RunDir::claim(dir.path(), RunMode::Force)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("another training") && err.contains(".lock"),
            "{err}"
        );
        drop(held);
        RunDir::claim(dir.path(), RunMode::Force).unwrap();
    }

    #[test]
    fn resuming_nothing_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = RunDir::claim(&dir.path().join("missing"), RunMode::Resume)
            .unwrap_err()
            .to_string();
        assert!(err.contains("nothing to resume"), "{err}");
        assert!(!dir.path().join("missing").exists());
    }
}
