//! The environment every cargo invocation of xtask gets (SPEC §3): `LIBTORCH_USE_PYTORCH=1` and
//! the project venv's python first on PATH, so torch-sys finds the wheel's libtorch.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::setup::Torch;

/// The workspace root (xtask lives one level below it).
pub fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask is inside the workspace")
        .to_path_buf()
}

/// A `cargo` command in the project root with the libtorch environment.
pub fn cargo(torch: &Torch) -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut cmd = Command::new(cargo);
    cmd.current_dir(project_root());
    with_torch_env(&mut cmd, torch);
    cmd
}

/// Adds `LIBTORCH_USE_PYTORCH=1`, `VIRTUAL_ENV` and the venv's `bin/` at the head of PATH.
pub fn with_torch_env(cmd: &mut Command, torch: &Torch) {
    let bin = torch.venv.join("bin");
    let mut paths = vec![bin];
    if let Some(path) = std::env::var_os("PATH") {
        paths.extend(std::env::split_paths(&path));
    }
    let path = std::env::join_paths(paths).expect("PATH entries contain no separator");
    cmd.env("LIBTORCH_USE_PYTORCH", "1")
        .env("VIRTUAL_ENV", &torch.venv)
        .env("PATH", path)
        .env_remove("LIBTORCH")
        .env_remove("PYTHONHOME");
}

/// Runs a command to completion, failing with the command line when it fails.
pub fn run(mut cmd: Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("could not start {cmd:?}"))?;
    if !status.success() {
        bail!("{} failed ({status})", describe(&cmd));
    }
    Ok(())
}

/// Runs a command and returns its stdout.
pub fn output(mut cmd: Command) -> Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("could not start {}", describe(&cmd)))?;
    if !out.status.success() {
        bail!(
            "{} failed ({}): {}",
            describe(&cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `program arg arg ...` for messages.
pub fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|s| s.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}
