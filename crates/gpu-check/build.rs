//! Links libtorch (rpath, CUDA) and records the version built against (see `libtorch-env`).

fn main() {
    libtorch_env::emit_link_args();
    libtorch_env::emit_build_version();
}
