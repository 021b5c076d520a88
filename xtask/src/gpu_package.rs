//! `cargo xtask gpu-package`: `sgdd-gpu-check` built for a GPU machine that has no Rust
//! toolchain and its own PyTorch, bundled, and proven here on the CPU.
//!
//! The GPU machine's only libtorch is its own torch wheel (2.11, a CUDA 13 build), so the binary
//! is built against the same torch version, from a second venv (`.venv-torch-2.11/`), with the
//! `tch` release that expects it (0.24; tch N ↔ torch: 0.24 ↔ 2.11, 0.25 ↔ 2.12, 0.26 ↔ 2.13 as
//! tch's changelog says). A cargo feature cannot switch `tch` versions — `torch-sys` declares
//! `links = "tch"`, and cargo refuses two of those in one lock file even when one is optional —
//! so the build runs in a generated workspace, `target/gpu-package/ws/`: the root manifest with
//! `tch`/`torch-sys` replaced and `crates/gpu-check` the only member, the real `crates/` and
//! `configs/` linked in, its own lock file (the main one with tch and torch-sys moved) and its
//! own target directory. The default build stays on tch 0.26 + torch 2.13.
//!
//! The binary is built with the `gpu-package` profile (release, stripped, no debug information)
//! and *without* an rpath (`SGDD_LIBTORCH_RPATH=`): it finds libtorch through
//! `LD_LIBRARY_PATH`, which the launcher `gpu-check.sh` beside it sets to the `torch/lib` of the
//! machine's own torch (found with `python3 -c 'import torch'`, or given as `SGDD_TORCH_LIB`)
//! after checking its version. The bundle `target/gpu-package/bundle/` (binary, launcher,
//! `BUILD.json`) must stay under 64 MiB. The proof runs the bundle's launcher here with only the
//! second venv's python on PATH and nothing else on the loader path (`--allow-cpu`), and checks
//! in its report that the libtorch it loaded was that venv's.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};

use crate::env::{self, project_root};
use crate::setup;

/// The tch release that expects each torch major.minor (tch's CHANGELOG).
const TCH_FOR_TORCH: &[(&str, &str)] = &[
    ("2.10", "0.23"),
    ("2.11", "0.24"),
    ("2.12", "0.25"),
    ("2.13", "0.26"),
];
/// The most the bundle may weigh (what may travel to the GPU machine beside the sources).
const MAX_BUNDLE_BYTES: u64 = 64 * 1024 * 1024;

/// Settings of `cargo xtask gpu-package`.
#[derive(Debug, Clone)]
pub struct Options {
    /// The torch version of the GPU machine (`2.11.0`).
    pub torch: String,
    /// Skip the run of the bundle on this machine's CPU.
    pub skip_proof: bool,
}

fn major_minor(version: &str) -> &str {
    match version.match_indices('.').nth(1) {
        Some((i, _)) => &version[..i],
        None => version,
    }
}

/// A venv with exactly `torch==version`, created or reused; its `torch/lib`.
fn ensure_venv(venv: &Path, version: &str) -> Result<PathBuf> {
    let python = venv.join("bin/python");
    let stamp = venv.join("sgdd-gpu-package.stamp");
    if let Ok(text) = std::fs::read_to_string(&stamp) {
        let lib = PathBuf::from(text.trim());
        if text.starts_with('/') && lib.join("libtorch.so").exists() && python.exists() {
            return Ok(lib);
        }
    }
    if !python.exists() {
        let base = std::env::var("SGDD_PYTHON").unwrap_or_else(|_| "python3".to_owned());
        println!(
            "gpu-package: creating the venv {} with {base}",
            venv.display()
        );
        let mut cmd = Command::new(&base);
        cmd.args(["-m", "venv"]).arg(venv);
        env::run(cmd)?;
    }
    println!(
        "gpu-package: installing torch=={version} into {} (about 3 minutes and 4.6 GB the \
         first time)",
        venv.display()
    );
    setup::pip_install(&python, false, &[format!("torch=={version}")])?;
    let lib = setup::query_lib_dir(&python, version)?;
    setup::write_atomic(&stamp, format!("{}\n", lib.display()).as_bytes())?;
    Ok(lib)
}

/// Replaces the one line of `manifest` that starts with `key` by `line`.
fn replace_line(manifest: &str, key: &str, line: &str) -> Result<String> {
    let hits = manifest
        .lines()
        .filter(|l| l.trim_start().starts_with(key))
        .count();
    ensure!(
        hits == 1,
        "the root Cargo.toml has {hits} lines starting with `{key}`, expected one"
    );
    Ok(manifest
        .lines()
        .map(|l| {
            if l.trim_start().starts_with(key) {
                line.to_owned()
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n")
}

/// The root manifest for the generated workspace: `tch`/`torch-sys` at `tch`, one member.
fn package_manifest(root_manifest: &str, tch: &str) -> Result<String> {
    let m = replace_line(
        root_manifest,
        "members = ",
        "members = [\"crates/gpu-check\"]",
    )?;
    let m = replace_line(&m, "default-members = ", "")?;
    let m = replace_line(&m, "tch = ", &format!("tch = \"{tch}\""))?;
    replace_line(&m, "torch-sys = ", &format!("torch-sys = \"{tch}\""))
}

fn symlink(target: &Path, link: &Path) -> Result<()> {
    if link.symlink_metadata().is_ok() {
        std::fs::remove_file(link).with_context(|| format!("removing {}", link.display()))?;
    }
    std::os::unix::fs::symlink(target, link)
        .with_context(|| format!("linking {} to {}", link.display(), target.display()))
}

/// The launcher that travels with the binary.
fn launcher(built_against: &str) -> String {
    let want = major_minor(built_against);
    format!(
        r#"#!/usr/bin/env bash
# Runs sgdd-gpu-check (beside this script) against this machine's own libtorch: the torch/lib
# of `python3 -c 'import torch'` (SGDD_PYTHON names another python), or SGDD_TORCH_LIB. The
# binary was built against torch {built_against} and needs a torch {want}.x; it has no rpath, so
# the libtorch it loads is the one put on LD_LIBRARY_PATH here. Arguments go to the binary,
# e.g. `--out DIR` (default target/gpu-check) or `--allow-cpu`. Made by `cargo xtask gpu-package`.
set -euo pipefail
here=$(cd "$(dirname "${{BASH_SOURCE[0]}}")" && pwd)
want={want}
if [ -n "${{SGDD_TORCH_LIB:-}}" ]; then
    lib=$SGDD_TORCH_LIB
    version=$(sed -n "s/^__version__ = '\(.*\)'$/\1/p" "$lib/../version.py" 2>/dev/null || true)
else
    py=${{SGDD_PYTHON:-python3}}
    if ! found=$("$py" -c 'import os, torch; print(torch.__version__); print(os.path.join(os.path.dirname(torch.__file__), "lib"))' 2>/dev/null); then
        echo "gpu-check.sh: \`$py\` cannot import torch. Set SGDD_PYTHON to a python with torch $want, or SGDD_TORCH_LIB to its torch/lib." >&2
        exit 2
    fi
    version=$(printf '%s\n' "$found" | sed -n 1p)
    lib=$(printf '%s\n' "$found" | sed -n 2p)
fi
case "$version" in
"$want" | "$want".*) ;;
*)
    echo "gpu-check.sh: this binary was built against torch {built_against}; the torch at $lib is '$version'. Use a torch $want (SGDD_PYTHON / SGDD_TORCH_LIB) or rebuild with \`cargo xtask gpu-package --torch <version>\`." >&2
    exit 2
    ;;
esac
if [ ! -e "$lib/libtorch_cpu.so" ]; then
    echo "gpu-check.sh: $lib has no libtorch_cpu.so" >&2
    exit 2
fi
export LD_LIBRARY_PATH="$lib${{LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}}"
missing=$(ldd "$here/sgdd-gpu-check" | grep 'not found' || true)
if [ -n "$missing" ]; then
    echo "gpu-check.sh: libraries the binary needs are missing with LD_LIBRARY_PATH=$LD_LIBRARY_PATH:" >&2
    echo "$missing" >&2
    exit 2
fi
echo "gpu-check.sh: torch $version from $lib" >&2
exec "$here/sgdd-gpu-check" "$@"
"#
    )
}

fn git(args: &[&str]) -> String {
    let mut cmd = Command::new("git");
    cmd.args(args).current_dir(project_root());
    env::output(cmd)
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned())
}

pub fn run(opts: &Options) -> Result<()> {
    let started = Instant::now();
    let root = project_root();
    let mm = major_minor(&opts.torch);
    let Some(&(_, tch)) = TCH_FOR_TORCH.iter().find(|(t, _)| *t == mm) else {
        bail!(
            "no tch release is known for torch {}: known are {}",
            opts.torch,
            TCH_FOR_TORCH
                .iter()
                .map(|(t, c)| format!("torch {t} (tch {c})"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    };
    let venv = root.join(format!(".venv-torch-{mm}"));
    let lib = ensure_venv(&venv, &opts.torch)?;
    let installed = format!("{:.0?}", started.elapsed());

    // the generated workspace
    let pkg = root.join("target/gpu-package");
    let ws = pkg.join("ws");
    std::fs::create_dir_all(&ws).with_context(|| format!("creating {}", ws.display()))?;
    let manifest = std::fs::read_to_string(root.join("Cargo.toml"))?;
    setup::write_atomic(
        &ws.join("Cargo.toml"),
        package_manifest(&manifest, tch)?.as_bytes(),
    )?;
    std::fs::copy(root.join("Cargo.lock"), ws.join("Cargo.lock")).context("copying Cargo.lock")?;
    symlink(Path::new("../../../crates"), &ws.join("crates"))?;
    symlink(Path::new("../../../configs"), &ws.join("configs"))?;

    // the build
    let target = pkg.join("target");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .args(["build", "--profile", "gpu-package", "-p", "sgdd-gpu-check"])
        .current_dir(&ws);
    env::with_torch_env(
        &mut build,
        &setup::Torch {
            venv: venv.clone(),
            lib_dir: lib.clone(),
        },
    );
    build
        .env("SGDD_TORCH_VERSION", &opts.torch)
        .env("SGDD_LIBTORCH_RPATH", "")
        .env("CARGO_TARGET_DIR", &target);
    println!(
        "gpu-package: building sgdd-gpu-check against torch {} (tch {tch}) in {}",
        opts.torch,
        ws.display()
    );
    let build_started = Instant::now();
    env::run(build)?;
    let build_seconds = build_started.elapsed().as_secs_f64();

    // the bundle
    let bundle = pkg.join("bundle");
    if bundle.exists() {
        std::fs::remove_dir_all(&bundle)
            .with_context(|| format!("removing {}", bundle.display()))?;
    }
    std::fs::create_dir_all(&bundle)?;
    let built_against = libtorch_version(&lib).unwrap_or_else(|| opts.torch.clone());
    let bin = bundle.join("sgdd-gpu-check");
    std::fs::copy(target.join("gpu-package/sgdd-gpu-check"), &bin)
        .context("copying the built binary")?;
    let script = bundle.join("gpu-check.sh");
    std::fs::write(&script, launcher(&built_against))?;
    let mut perms = std::fs::metadata(&script)?.permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&script, perms)?;
    let binary_bytes = std::fs::metadata(&bin)?.len();
    let build_info = format!(
        "{{\n  \"binary\": \"sgdd-gpu-check\",\n  \"torch\": \"{built_against}\",\n  \"tch\": \
         \"{tch}\",\n  \"profile\": \"gpu-package\",\n  \"rpath\": \"none (LD_LIBRARY_PATH from \
         gpu-check.sh)\",\n  \"commit\": \"{}\",\n  \"dirty\": {},\n  \"binary_bytes\": \
         {binary_bytes},\n  \"build_seconds\": {build_seconds:.0}\n}}\n",
        git(&["rev-parse", "HEAD"]),
        !git(&["status", "--porcelain", "--untracked-files=no"]).is_empty(),
    );
    std::fs::write(bundle.join("BUILD.json"), build_info)?;
    let bundle_bytes: u64 = std::fs::read_dir(&bundle)?
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum();
    ensure!(
        bundle_bytes <= MAX_BUNDLE_BYTES,
        "the bundle {} is {:.1} MiB, over the 64 MiB that may travel",
        bundle.display(),
        mib(bundle_bytes)
    );
    println!(
        "gpu-package: bundle {} ({:.1} MiB; binary {:.1} MiB) built in {build_seconds:.0} s \
         (venv: {installed})",
        bundle.display(),
        mib(bundle_bytes),
        mib(binary_bytes)
    );

    if !opts.skip_proof {
        prove(&bundle, &venv, &lib, &pkg.join("proof"))?;
    }
    println!(
        "gpu-package: done in {:.0} s. On the GPU machine (from the repository root, with the \
         bundle at the same path):\n    target/gpu-package/bundle/gpu-check.sh",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn libtorch_version(lib: &Path) -> Option<String> {
    let text = std::fs::read_to_string(lib.parent()?.join("version.py")).ok()?;
    text.lines().find_map(|l| {
        let v = l.trim().strip_prefix("__version__ = ")?;
        Some(v.trim_matches(['\'', '"']).to_owned())
    })
}

/// Runs the bundle's launcher on this CPU with only `venv`'s python on PATH and no
/// `LD_LIBRARY_PATH`, and checks that the binary loaded `lib` and passed `--allow-cpu`.
fn prove(bundle: &Path, venv: &Path, lib: &Path, out: &Path) -> Result<()> {
    let mut path = vec![venv.join("bin")];
    if let Some(p) = std::env::var_os("PATH") {
        path.extend(
            std::env::split_paths(&p).filter(|d| !d.starts_with(project_root().join(".venv"))),
        );
    }
    let mut cmd = Command::new(bundle.join("gpu-check.sh"));
    cmd.arg("--allow-cpu")
        .arg("--out")
        .arg(out)
        .current_dir(project_root())
        .env("PATH", std::env::join_paths(path)?)
        .env_remove("LD_LIBRARY_PATH")
        .env_remove("VIRTUAL_ENV")
        .env_remove("LIBTORCH")
        .env_remove("SGDD_TORCH_LIB")
        .env_remove("SGDD_PYTHON");
    println!(
        "gpu-package: proving the bundle on this CPU: {} --allow-cpu --out {}",
        bundle.join("gpu-check.sh").display(),
        out.display()
    );
    let started = Instant::now();
    env::run(cmd).context("the bundle's run with --allow-cpu")?;
    let seconds = started.elapsed().as_secs_f64();
    let report = std::fs::read_to_string(out.join("gpu-check.json"))
        .with_context(|| format!("reading {}/gpu-check.json", out.display()))?;
    let loaded = format!("\"libtorch_dir\": \"{}\"", lib.display());
    ensure!(
        report.contains(&loaded),
        "the proof run did not load libtorch from {} (see {}/gpu-check.json)",
        lib.display(),
        out.display()
    );
    ensure!(
        report.contains("\"status\": \"passed\""),
        "the proof run did not pass (see {}/gpu-check.json)",
        out.display()
    );
    println!(
        "gpu-package: proof passed in {seconds:.0} s: the bundle loaded libtorch from {} and \
         passed --allow-cpu ({}/gpu-check.md)",
        lib.display(),
        out.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manifest_switches_tch_and_keeps_the_rest() {
        let root = std::fs::read_to_string(project_root().join("Cargo.toml")).unwrap();
        let m = package_manifest(&root, "0.24").unwrap();
        assert!(m.contains("\ntch = \"0.24\"\n") && m.contains("\ntorch-sys = \"0.24\"\n"));
        assert!(m.contains("members = [\"crates/gpu-check\"]"));
        assert!(!m.contains("default-members"));
        assert!(m.contains("[profile.gpu-package]"));
        assert_eq!(m.lines().count(), root.lines().count());
        assert!(replace_line("a = 1\na = 2\n", "a = ", "x").is_err());
    }

    #[test]
    fn every_torch_has_its_tch() {
        assert_eq!(major_minor("2.11.0"), "2.11");
        assert_eq!(major_minor("2.11"), "2.11");
        let tch = |t: &str| {
            TCH_FOR_TORCH
                .iter()
                .find(|(v, _)| *v == major_minor(t))
                .map(|p| p.1)
        };
        assert_eq!(tch("2.11.0"), Some("0.24"));
        assert_eq!(tch(setup::TORCH_VERSION), Some("0.26"));
    }

    #[test]
    fn the_launcher_checks_the_version_it_was_built_for() {
        let s = launcher("2.11.0+cu130");
        assert!(s.starts_with("#!/usr/bin/env bash\n"));
        assert!(s.contains("\nwant=2.11\n"));
        assert!(s.contains("exec \"$here/sgdd-gpu-check\" \"$@\""));
        assert!(!s.contains("{{"));
    }
}
