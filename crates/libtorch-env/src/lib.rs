//! Where libtorch lives, for the build scripts of the crates that link it.
//!
//! libtorch comes from the PyPI wheel `torch==2.13.0` in the project venv `.venv/`
//! (`cargo xtask setup`, SPEC §3). `torch-sys` finds it through that venv's python and publishes
//! the directory as `DEP_TCH_LIBTORCH_LIB` to the crates that depend on it directly. Every crate
//! that links libtorch depends on `torch-sys` and calls [`emit_link_args`] from the `main` of its
//! build script (`build.rs`):
//!
//! ```no_run
//! libtorch_env::emit_link_args();
//! ```
//!
//! so that its binaries, tests, benches and examples find libtorch at run time (an rpath), and use
//! CUDA where the machine has a GPU.
//!
//! # CUDA
//! The wheel is a CUDA build. Nothing in a CPU-only program refers to a symbol of
//! `libtorch_cuda.so`, so a linker running with `--as-needed` (the default for Rust on Linux)
//! drops it, and `tch::Cuda::is_available()` then answers `false` even on a GPU machine. We link it
//! with `--no-as-needed` so that the same binary runs on CPU machines (where the CUDA runtime is
//! loaded but unused) and on GPU machines (`--device auto|cpu|cuda:N`).

use std::path::Path;

/// The environment variable `torch-sys` (`links = "tch"`) sets for its direct dependents.
pub const LIBTORCH_LIB_VAR: &str = "DEP_TCH_LIBTORCH_LIB";

/// Prints the cargo directives that make this package's binaries/tests find libtorch at run time
/// (`-rpath`) and keep `libtorch_cuda` linked (`--no-as-needed`), when the wheel ships it.
///
/// # Panics
/// When called outside a build script of a crate that depends on `torch-sys` directly: the
/// variable [`LIBTORCH_LIB_VAR`] is then missing, which is a bug in that crate's manifest.
pub fn emit_link_args() {
    let dir = std::env::var(LIBTORCH_LIB_VAR).unwrap_or_else(|_| {
        panic!("{LIBTORCH_LIB_VAR} is not set: the calling crate must depend on torch-sys directly")
    });
    for directive in link_args(Path::new(&dir)) {
        println!("{directive}");
    }
}

/// The directives [`emit_link_args`] prints, for a libtorch library directory.
pub fn link_args(lib_dir: &Path) -> Vec<String> {
    let mut out = vec![
        format!("cargo::rerun-if-env-changed={LIBTORCH_LIB_VAR}"),
        format!("cargo::rustc-link-arg=-Wl,-rpath,{}", lib_dir.display()),
    ];
    if lib_dir.join("libtorch_cuda.so").exists() {
        out.push("cargo::rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed".to_owned());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpath_always_cuda_only_when_shipped() {
        let dir = tempfile::tempdir().unwrap();
        let args = link_args(dir.path());
        assert!(
            args.iter()
                .any(|a| a.contains("-rpath,") && a.ends_with(&*dir.path().to_string_lossy()))
        );
        assert!(!args.iter().any(|a| a.contains("torch_cuda")));
        std::fs::write(dir.path().join("libtorch_cuda.so"), b"").unwrap();
        let args = link_args(dir.path());
        assert!(
            args.iter()
                .any(|a| a.contains("--no-as-needed,-ltorch_cuda"))
        );
    }
}
