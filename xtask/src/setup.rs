//! `cargo xtask setup`: the project venv with the PyPI wheel `torch==2.13.0` (SPEC §3).
//!
//! Idempotent: a stamp file in the venv records what was installed; when it matches and the
//! library is still there, a second run returns at once.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::env::{self, project_root};

/// The wheel `tch 0.26` is built against.
pub const TORCH_VERSION: &str = "2.13.0";
/// Python packages the project's scripts use beside torch (fixtures, peer benchmarks).
/// `tensorboard`: tests read the trainer's event files back with its own reader.
/// `torchdiffeq` (and its dependency `scipy`): the GF-NODE fixture script and peer benchmark run
/// the authors' model class, which integrates with it.
/// `nvidia-cuda-crt`, `nvidia-cuda-cccl` (CUDA 13.0, as the torch wheel; 3 MB together): the CUDA
/// headers that, beside the wheel's runtime headers and `nccl.h`, let torch-dist's `nccl` feature
/// compile against `ProcessGroupNCCL.hpp`.
const EXTRA_PACKAGES: &[&str] = &[
    "numpy==2.3.5",
    "safetensors==0.7.0",
    "tensorboard==2.21.0",
    "scipy==1.17.1",
    "torchdiffeq==0.2.5",
    "nvidia-cuda-crt==13.0.88",
    "nvidia-cuda-cccl==13.0.85",
];
const STAMP: &str = "sgdd-setup.stamp";

/// The located libtorch.
#[derive(Debug, Clone)]
pub struct Torch {
    /// The venv (`<root>/.venv`).
    pub venv: PathBuf,
    /// `torch/lib` inside it.
    pub lib_dir: PathBuf,
}

fn venv_dir() -> PathBuf {
    project_root().join(".venv")
}

fn stamp_contents() -> String {
    let mut packages = vec![format!("torch=={TORCH_VERSION}")];
    packages.extend(EXTRA_PACKAGES.iter().map(|p| p.to_string()));
    packages.join("\n")
}

/// The venv, when a previous setup completed and nothing has changed since.
fn existing() -> Option<Torch> {
    let venv = venv_dir();
    let stamp = std::fs::read_to_string(venv.join(STAMP)).ok()?;
    let (packages, lib_dir) = stamp.rsplit_once("\nlib=")?;
    let lib_dir = PathBuf::from(lib_dir.trim());
    (packages == stamp_contents()
        && venv.join("bin/python").exists()
        && lib_dir.join("libtorch.so").exists())
    .then_some(Torch { venv, lib_dir })
}

/// Runs setup when it has not been done, quietly otherwise.
pub fn ensure() -> Result<Torch> {
    match existing() {
        Some(t) => Ok(t),
        None => run(false),
    }
}

/// `cargo xtask setup [--force]`.
pub fn run(force: bool) -> Result<Torch> {
    if !force && let Some(t) = existing() {
        println!(
            "setup: nothing to do: torch {TORCH_VERSION} is installed in {} (libtorch: {})",
            t.venv.display(),
            t.lib_dir.display()
        );
        return Ok(t);
    }
    let started = Instant::now();
    let venv = venv_dir();
    let python = venv.join("bin/python");
    if !python.exists() {
        let base = std::env::var("SGDD_PYTHON").unwrap_or_else(|_| "python3".to_owned());
        println!("setup: creating the venv {} with {base}", venv.display());
        let mut cmd = Command::new(&base);
        cmd.args(["-m", "venv"]).arg(&venv);
        env::run(cmd).with_context(|| {
            format!(
                "could not create a venv with `{base}` (set SGDD_PYTHON to another Python ≥ 3.10)"
            )
        })?;
    } else {
        println!("setup: reusing the venv {}", venv.display());
    }
    println!(
        "setup: installing torch=={TORCH_VERSION} {} from PyPI (about 4.7 GB the first time; pip's cache makes later runs fast)",
        EXTRA_PACKAGES.join(" ")
    );
    let mut packages = vec![format!("torch=={TORCH_VERSION}")];
    packages.extend(EXTRA_PACKAGES.iter().map(|p| p.to_string()));
    pip_install(&python, true, &packages)?;

    let lib_dir = query_lib_dir(&python, TORCH_VERSION)?;
    let stamp = format!("{}\nlib={}\n", stamp_contents(), lib_dir.display());
    write_atomic(&venv.join(STAMP), stamp.as_bytes())?;
    println!(
        "setup: done in {:.0?}: libtorch {TORCH_VERSION} at {}{}",
        started.elapsed(),
        lib_dir.display(),
        if lib_dir.join("libtorch_cuda.so").exists() {
            " (CUDA build: binaries use a GPU when one is present)"
        } else {
            ""
        }
    );
    Ok(Torch { venv, lib_dir })
}

/// Asks a venv's torch for its version and library directory, checking the version.
pub fn query_lib_dir(python: &Path, expected: &str) -> Result<PathBuf> {
    let mut cmd = Command::new(python);
    cmd.args([
        "-c",
        "import os, torch; print(torch.__version__.split('+')[0]); \
         print(os.path.join(os.path.dirname(torch.__file__), 'lib'))",
    ]);
    let out = env::output(cmd)?;
    let mut lines = out.lines();
    let version = lines.next().unwrap_or_default().trim();
    let lib = lines.next().unwrap_or_default().trim();
    if version != expected {
        bail!(
            "{} has torch {version}, but the build needs {expected}: run `cargo xtask setup --force` \
             (for .venv) or remove that venv",
            python.display()
        );
    }
    let lib = PathBuf::from(lib);
    if !lib.join("libtorch.so").exists() {
        bail!(
            "torch is installed but {} has no libtorch.so",
            lib.display()
        );
    }
    Ok(lib)
}

/// Writes `bytes` to `path` through a temporary file and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

/// `python -m pip install PACKAGES` (the project venv's, or the GPU package's second venv).
pub fn pip_install(python: &Path, progress: bool, packages: &[String]) -> Result<()> {
    let mut pip = Command::new(python);
    pip.args([
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--progress-bar",
        if progress { "on" } else { "off" },
    ])
    .args(packages);
    env::run(pip)
}
