//! `cargo xtask gpu-check [ARGS]`: runs a build of `sgdd-gpu-check` made beforehand.
//!
//! The check is meant for a short GPU loan, so it never compiles: it runs the binary already in
//! `target/release/` (or `target/debug/` with `SGDD_XTASK_PROFILE=dev`), and when there is none
//! (or the sources are newer) it says which command builds it. On a GPU machine without a Rust
//! toolchain, the bundle of `cargo xtask gpu-package` runs the same binary (`gpu-check.sh`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use anyhow::{Result, bail};

use crate::env::{self, project_root};

/// The command that makes the build this runs.
pub const BUILD_COMMAND: &str = "cargo xtask cargo build --release -p sgdd-gpu-check";

/// The binary of the profile `SGDD_XTASK_PROFILE` names (release by default).
fn binary() -> Result<(PathBuf, &'static str)> {
    let (dir, build) = match std::env::var("SGDD_XTASK_PROFILE").as_deref() {
        Ok("dev") | Ok("debug") => ("debug", "cargo xtask cargo build -p sgdd-gpu-check"),
        Ok("release") | Err(_) => ("release", BUILD_COMMAND),
        Ok(other) => bail!("SGDD_XTASK_PROFILE={other:?}: expected release or dev"),
    };
    Ok((
        project_root()
            .join("target")
            .join(dir)
            .join("sgdd-gpu-check"),
        build,
    ))
}

/// The newest modification time of the sources the binary is built from.
fn newest_source(dir: &Path, newest: &mut Option<SystemTime>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            newest_source(&path, newest);
        } else if path
            .extension()
            .is_some_and(|e| e == "rs" || e == "toml" || e == "lock")
            && let Ok(t) = entry.metadata().and_then(|m| m.modified())
        {
            *newest = Some(newest.map_or(t, |n| n.max(t)));
        }
    }
}

pub fn run(args: &[String]) -> Result<()> {
    let (bin, build) = binary()?;
    if !bin.exists() {
        bail!(
            "no build of sgdd-gpu-check at {}: the check reuses a build made beforehand, so run \
             first\n    {build}\n(for a GPU machine without Rust: `cargo xtask gpu-package`, see \
             the README)",
            bin.display()
        );
    }
    let root = project_root();
    let mut newest = None;
    newest_source(&root.join("crates"), &mut newest);
    newest_source(&root.join("configs"), &mut newest);
    let built = std::fs::metadata(&bin).and_then(|m| m.modified()).ok();
    if let (Some(src), Some(built)) = (newest, built)
        && src > built
    {
        eprintln!(
            "gpu-check: warning: sources changed after {} was built; `{build}` brings it up to \
             date",
            bin.display()
        );
    }
    eprintln!("gpu-check: running {}", bin.display());
    let mut cmd = Command::new(&bin);
    cmd.args(args).current_dir(&root);
    env::run(cmd)
}
