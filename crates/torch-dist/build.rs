//! Compiles `shim/dist.cpp` against the headers of the wheel's libtorch (C++17, the wheel's C++
//! ABI), with `shim/` first on the include path for the gloo declarations the wheel does not
//! ship (see `shim/gloo/README.md`). With the `nccl` feature it also compiles `shim/nccl.cpp`
//! against the CUDA and NCCL headers of the wheel's companion packages (`nvidia-nccl-cu13`, a
//! dependency of the torch wheel; `nvidia-cuda-crt` and `nvidia-cuda-cccl`, which
//! `cargo xtask setup` pins) and links `libtorch_cuda`.

use std::path::{Path, PathBuf};

fn shim_build(lib: &Path, abi: u8) -> cc::Build {
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .include("shim")
        .std("c++17")
        .define("_GLIBCXX_USE_CXX11_ABI", abi.to_string().as_str())
        .define("GLOG_USE_GLOG_EXPORT", None)
        .flag_if_supported("-Wno-unused-parameter")
        .flag_if_supported("-Wno-deprecated-declarations")
        .warnings(false);
    for dir in libtorch_env::include_dirs(lib) {
        build.include(dir);
    }
    build
}

/// The CUDA and NCCL include directories beside the wheel (`site-packages/nvidia/...`), each
/// checked for the header the NCCL group needs.
fn cuda_includes(lib: &Path) -> Vec<PathBuf> {
    let site = lib
        .ancestors()
        .nth(2)
        .expect("libtorch's lib directory is site-packages/torch/lib");
    let nvidia = site.join("nvidia");
    let cuda = std::fs::read_dir(&nvidia)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("include"))
        .find(|d| d.join("cuda_runtime_api.h").exists());
    let wanted = [
        (
            "cuda_runtime_api.h",
            "the CUDA runtime headers (nvidia-cuda-runtime)",
        ),
        ("crt/host_config.h", "nvidia-cuda-crt"),
        ("nv/target", "nvidia-cuda-cccl"),
    ];
    let Some(cuda) = cuda else {
        panic!(
            "feature `nccl`: no CUDA headers under {} (is the wheel a CUDA build? run `cargo \
             xtask setup`)",
            nvidia.display()
        )
    };
    for (file, package) in wanted {
        assert!(
            cuda.join(file).exists(),
            "feature `nccl`: {} is missing: install {package} (`cargo xtask setup` pins it)",
            cuda.join(file).display()
        );
    }
    let nccl = nvidia.join("nccl/include");
    assert!(
        nccl.join("nccl.h").exists(),
        "feature `nccl`: {} is missing (nvidia-nccl-cu13, a dependency of the torch wheel)",
        nccl.join("nccl.h").display()
    );
    assert!(
        lib.join("libtorch_cuda.so").exists(),
        "feature `nccl`: {} is missing: the wheel is not a CUDA build",
        lib.join("libtorch_cuda.so").display()
    );
    vec![cuda, nccl]
}

fn main() {
    libtorch_env::emit_link_args();
    let lib = PathBuf::from(
        std::env::var(libtorch_env::LIBTORCH_LIB_VAR).expect("torch-sys publishes libtorch's lib"),
    );
    let abi = libtorch_env::cxx11_abi(&lib).unwrap_or(1);
    println!("cargo::rerun-if-changed=shim");
    shim_build(&lib, abi)
        .file("shim/dist.cpp")
        .define("USE_C10D_GLOO", None)
        .compile("torch_dist_shim");
    let nccl = std::env::var_os("CARGO_FEATURE_NCCL").is_some();
    if nccl {
        let mut build = shim_build(&lib, abi);
        build
            .file("shim/nccl.cpp")
            .define("USE_C10D_NCCL", None)
            .define("USE_CUDA", None);
        for dir in cuda_includes(&lib) {
            build.include(dir);
        }
        build.compile("torch_dist_nccl");
    }
    println!("cargo::rustc-link-search=native={}", lib.display());
    if nccl {
        println!("cargo::rustc-link-lib=dylib=torch_cuda");
        println!("cargo::rustc-link-lib=dylib=c10_cuda");
    }
    println!("cargo::rustc-link-lib=dylib=torch_cpu");
    println!("cargo::rustc-link-lib=dylib=c10");
}
