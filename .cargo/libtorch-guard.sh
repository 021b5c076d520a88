#!/usr/bin/env bash
# (bash, not sh: dash drops environment variables whose names are not shell identifiers, such as
# the CARGO_BIN_EXE_<bin-name> cargo sets for integration tests of a binary with a `-` in its name)
# rustc wrapper (see config.toml): passes every compilation straight to rustc, except that before
# torch-sys's build script is compiled it checks that libtorch can be found, the way torch-sys 0.26
# will look for it (LIBTORCH, or LIBTORCH_USE_PYTORCH with `python` in a venv / `python3`), and
# otherwise stops the build with a message that says what to run. Without it the build would
# fail later inside torch-sys with a Python traceback. The torch version it expects is 2.13.0
# (tch 0.26); `cargo xtask gpu-package`, which builds against torch 2.11 with tch 0.24, sets
# SGDD_TORCH_VERSION=2.11.0.
case "$*" in
*"--crate-name build_script_build"*torch-sys-*build.rs*) ;;
*) exec "$@" ;;
esac
if [ -n "${LIBTORCH:-}" ]; then
    [ -e "$LIBTORCH/lib/libtorch.so" ] && exec "$@"
    problem="LIBTORCH=$LIBTORCH has no lib/libtorch.so"
else
    py=python3
    [ -n "${VIRTUAL_ENV:-}" ] && py=python
    want=${SGDD_TORCH_VERSION:-2.13.0}
    version=$("$py" -c "import torch; print(torch.__version__.split('+')[0])" 2>/dev/null)
    [ "$version" = "$want" ] && exec "$@"
    if [ -n "$version" ]; then
        problem="\`$py\` on PATH has torch $version, but this build needs exactly $want (tch 0.26: 2.13.0)"
    else
        problem="\`$py\` on PATH cannot \`import torch\`"
    fi
fi
root=$(cd "$(dirname "$0")/.." && pwd)
if [ -x "$root/.venv/bin/python" ]; then
    fix="the project venv exists ($root/.venv) but this build does not use it: build through
       \`cargo xtask cargo build ...\` / \`cargo xtask test\`, or \`source .venv/bin/activate\` first"
else
    fix="run \`cargo xtask setup\` once (it installs the PyPI wheel torch==2.13.0 into the
       project-local venv .venv/, about a minute), then build through \`cargo xtask ...\`"
fi
printf 'error: libtorch not found: %s.\n  To fix it: %s.\n' "$problem" "$fix" >&2
exit 1
