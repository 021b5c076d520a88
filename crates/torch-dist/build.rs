//! Compiles `shim/dist.cpp` against the headers of the wheel's libtorch (C++17, the wheel's C++
//! ABI), with `shim/` first on the include path for the gloo declarations the wheel does not
//! ship (see `shim/gloo/README.md`).

use std::path::PathBuf;

fn main() {
    libtorch_env::emit_link_args();
    let lib = PathBuf::from(
        std::env::var(libtorch_env::LIBTORCH_LIB_VAR).expect("torch-sys publishes libtorch's lib"),
    );
    let abi = libtorch_env::cxx11_abi(&lib).unwrap_or(1);
    println!("cargo::rerun-if-changed=shim");
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .file("shim/dist.cpp")
        .include("shim")
        .std("c++17")
        .define("USE_C10D_GLOO", None)
        .define("_GLIBCXX_USE_CXX11_ABI", abi.to_string().as_str())
        .define("GLOG_USE_GLOG_EXPORT", None)
        .flag_if_supported("-Wno-unused-parameter")
        .flag_if_supported("-Wno-deprecated-declarations")
        .warnings(false);
    for dir in libtorch_env::include_dirs(&lib) {
        build.include(dir);
    }
    build.compile("torch_dist_shim");
    println!("cargo::rustc-link-search=native={}", lib.display());
    println!("cargo::rustc-link-lib=dylib=torch_cpu");
    println!("cargo::rustc-link-lib=dylib=c10");
}
