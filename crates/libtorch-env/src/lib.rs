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
//!
//! # A binary for another machine's libtorch
//! The rpath is the absolute path of the build machine's `torch/lib`. A binary meant to run
//! elsewhere against that machine's own libtorch (`cargo xtask gpu-package`) is built with
//! `SGDD_LIBTORCH_RPATH` set: empty for no rpath at all (the loader path then comes from
//! `LD_LIBRARY_PATH`, set by the launcher that travels with it), or to the rpath to record
//! instead (e.g. `$ORIGIN/torch-lib`). [`emit_build_version`] records which libtorch a crate
//! was built against, so such a binary can refuse another version at run time.

use std::path::Path;

/// The environment variable `torch-sys` (`links = "tch"`) sets for its direct dependents.
pub const LIBTORCH_LIB_VAR: &str = "DEP_TCH_LIBTORCH_LIB";

/// Build-time override of the rpath (see the crate docs): empty for none, else the rpath.
pub const RPATH_VAR: &str = "SGDD_LIBTORCH_RPATH";

/// The compile-time environment variable [`emit_build_version`] sets: the version of the
/// libtorch built against, as its `torch/version.py` says (`2.13.0+cu130`).
pub const BUILD_VERSION_VAR: &str = "SGDD_LIBTORCH_BUILD_VERSION";

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
    let rpath = std::env::var(RPATH_VAR).ok();
    for directive in link_args(Path::new(&dir), rpath.as_deref()) {
        println!("{directive}");
    }
}

/// The directives [`emit_link_args`] prints, for a libtorch library directory and an rpath
/// override (`None`: the directory itself; `Some("")`: no rpath; `Some(p)`: `p`).
pub fn link_args(lib_dir: &Path, rpath: Option<&str>) -> Vec<String> {
    let mut out = vec![
        format!("cargo::rerun-if-env-changed={LIBTORCH_LIB_VAR}"),
        format!("cargo::rerun-if-env-changed={RPATH_VAR}"),
    ];
    match rpath {
        None => out.push(format!(
            "cargo::rustc-link-arg=-Wl,-rpath,{}",
            lib_dir.display()
        )),
        Some("") => {}
        Some(p) => out.push(format!("cargo::rustc-link-arg=-Wl,-rpath,{p}")),
    }
    if lib_dir.join("libtorch_cuda.so").exists() {
        out.push("cargo::rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed".to_owned());
    }
    out
}

/// Sets [`BUILD_VERSION_VAR`] for the calling crate (read it with `env!`): the version in
/// `torch/version.py` beside the libtorch directory `torch-sys` found, or `unknown`.
///
/// # Panics
/// As [`emit_link_args`], outside a build script of a direct dependent of `torch-sys`.
pub fn emit_build_version() {
    let dir = std::env::var(LIBTORCH_LIB_VAR).unwrap_or_else(|_| {
        panic!("{LIBTORCH_LIB_VAR} is not set: the calling crate must depend on torch-sys directly")
    });
    let version = torch_version(Path::new(&dir)).unwrap_or_else(|| "unknown".to_owned());
    println!("cargo::rustc-env={BUILD_VERSION_VAR}={version}");
}

/// The version of the torch installation whose library directory is `lib_dir`
/// (`…/torch/lib`), from `…/torch/version.py` (`__version__ = '2.13.0+cu130'`).
pub fn torch_version(lib_dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(lib_dir.parent()?.join("version.py")).ok()?;
    text.lines().find_map(|line| {
        let rest = line.trim().strip_prefix("__version__")?;
        let value = rest.trim_start().strip_prefix('=')?.trim();
        let unquoted = value
            .strip_prefix('\'')
            .and_then(|v| v.strip_suffix('\''))
            .or_else(|| value.strip_prefix('"').and_then(|v| v.strip_suffix('"')))?;
        Some(unquoted.to_owned())
    })
}

/// The header directories of the libtorch whose library directory is `lib_dir` (`…/torch/lib`):
/// `…/torch/include` and `…/torch/include/torch/csrc/api/include`, for a C++ shim compiled
/// against the wheel the way torch-sys compiles its own wrapper.
pub fn include_dirs(lib_dir: &Path) -> Vec<std::path::PathBuf> {
    let include = lib_dir
        .parent()
        .map_or_else(|| lib_dir.join("../include"), |torch| torch.join("include"));
    vec![include.join("torch/csrc/api/include"), include]
}

/// The `_GLIBCXX_USE_CXX11_ABI` value libtorch was compiled with: `1` when `libc10.so` names
/// the C++11 ABI's `std::__cxx11` types, `0` when it does not, `None` when it cannot be read.
pub fn cxx11_abi(lib_dir: &Path) -> Option<u8> {
    let bytes = std::fs::read(lib_dir.join("libc10.so")).ok()?;
    let needle = b"__cxx11";
    Some(u8::from(bytes.windows(needle.len()).any(|w| w == needle)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpath_always_cuda_only_when_shipped() {
        let dir = tempfile::tempdir().unwrap();
        let args = link_args(dir.path(), None);
        assert!(
            args.iter()
                .any(|a| a.contains("-rpath,") && a.ends_with(&*dir.path().to_string_lossy()))
        );
        assert!(!args.iter().any(|a| a.contains("torch_cuda")));
        std::fs::write(dir.path().join("libtorch_cuda.so"), b"").unwrap();
        let args = link_args(dir.path(), None);
        assert!(
            args.iter()
                .any(|a| a.contains("--no-as-needed,-ltorch_cuda"))
        );
    }

    #[test]
    fn the_rpath_can_be_replaced_or_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let none = link_args(dir.path(), Some(""));
        assert!(!none.iter().any(|a| a.contains("rpath")), "{none:?}");
        let origin = link_args(dir.path(), Some("$ORIGIN/torch-lib"));
        assert!(
            origin
                .iter()
                .any(|a| a.ends_with("-Wl,-rpath,$ORIGIN/torch-lib")),
            "{origin:?}"
        );
        assert!(
            !origin
                .iter()
                .any(|a| a.contains(&*dir.path().to_string_lossy()))
        );
    }

    #[test]
    fn headers_beside_the_library_and_the_abi_from_c10() {
        let torch = tempfile::tempdir().unwrap();
        let lib = torch.path().join("lib");
        std::fs::create_dir(&lib).unwrap();
        let dirs = include_dirs(&lib);
        assert_eq!(dirs[1], torch.path().join("include"));
        assert!(dirs[0].ends_with("torch/csrc/api/include"));
        assert_eq!(cxx11_abi(&lib), None);
        std::fs::write(lib.join("libc10.so"), b"\0_ZNSt7__cxx1112basic_string\0").unwrap();
        assert_eq!(cxx11_abi(&lib), Some(1));
        std::fs::write(lib.join("libc10.so"), b"\0_ZNSs4_Rep\0").unwrap();
        assert_eq!(cxx11_abi(&lib), Some(0));
    }

    #[test]
    fn reads_the_version_beside_the_library() {
        let torch = tempfile::tempdir().unwrap();
        let lib = torch.path().join("lib");
        std::fs::create_dir(&lib).unwrap();
        assert_eq!(torch_version(&lib), None);
        std::fs::write(
            torch.path().join("version.py"),
            "from typing import Optional\n__version__ = '2.11.0+cu130'\ngit_version = 'abc'\n",
        )
        .unwrap();
        assert_eq!(torch_version(&lib).as_deref(), Some("2.11.0+cu130"));
    }
}
