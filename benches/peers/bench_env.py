"""What every peer script of `cargo xtask bench` shares: its pinned packages and its threads.

The runner (xtask/src/bench.rs) runs the Rust side and the peer once per thread setting with the
same count in SGDD_BENCH_THREADS, OMP_NUM_THREADS, OPENBLAS_NUM_THREADS, MKL_NUM_THREADS and
RAYON_NUM_THREADS. A peer calls, before timing anything:

    import bench_env
    bench_env.ensure_packages("numpy", "scipy")   # pip-installs the pinned versions when missing
    threads = bench_env.pin_threads(torch)         # torch (or None): set_num_threads + BLAS limits
    ...
    report["context"]["threads"] = bench_env.thread_report(threads, torch)

thread_report records what the process really runs: threadpoolctl's view of every BLAS and
OpenMP library loaded (which BLAS numpy uses, its version and thread count), torch's intra-op
threads, and the environment variables. A library not at the requested count is flagged.
"""

import importlib
import importlib.util
import os
import pathlib
import subprocess
import sys

# The versions the peers install when a module is missing (numpy: the one `cargo xtask setup`
# installs).
PINNED = {
    "numpy": "numpy==2.3.5",
    "scipy": "scipy==1.17.1",
    "threadpoolctl": "threadpoolctl==3.6.0",
}

THREAD_VARS = ("SGDD_BENCH_THREADS", "RAYON_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
               "MKL_NUM_THREADS")

_limits = None  # keeps threadpoolctl's limits alive for the process


def ensure_packages(*modules):
    """Installs the pinned requirement of each missing module (threadpoolctl always) with pip."""
    wanted = dict.fromkeys((*modules, "threadpoolctl"))
    missing = [m for m in wanted if importlib.util.find_spec(m) is None]
    if missing:
        reqs = [PINNED.get(m, m) for m in missing]
        print(f"bench peer: installing {' '.join(reqs)} with pip", file=sys.stderr)
        subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet", *reqs])
        importlib.invalidate_caches()


def cores():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def bench_threads():
    """SGDD_BENCH_THREADS (a positive integer), else every core available to the process."""
    v = os.environ.get("SGDD_BENCH_THREADS", "").strip()
    if not v:
        return cores()
    try:
        t = int(v)
    except ValueError:
        t = 0
    if t <= 0:
        sys.exit(f"bench peer: SGDD_BENCH_THREADS={v!r}: expected a positive number of threads")
    return t


def pin_threads(torch=None):
    """Pins this process to bench_threads(): torch's intra-op pool (when torch is given) and,
    through threadpoolctl, every BLAS/OpenMP pool already loaded (import numpy first). Returns the
    count."""
    global _limits
    t = bench_threads()
    if torch is not None:
        torch.set_num_threads(t)
    from threadpoolctl import threadpool_limits

    _limits = threadpool_limits(limits=t)
    return t


def thread_report(requested, torch=None):
    """What each thread pool is set to; `mismatch` lists the pools not at `requested`."""
    import threadpoolctl

    pools = [
        {k: p.get(k) for k in ("user_api", "internal_api", "version", "num_threads", "threading_layer",
                               "architecture", "filepath")}
        for p in threadpoolctl.threadpool_info()
    ]
    mismatch = [f"{p['internal_api']} ({p['filepath']}): {p['num_threads']} threads"
                for p in pools if p["num_threads"] != requested]
    report = {
        "requested": requested,
        "threadpoolctl": threadpoolctl.__version__,
        "pools": pools,
        "env": {k: os.environ.get(k) for k in THREAD_VARS},
        "mismatch": mismatch,
    }
    try:
        import numpy

        blas = [p for p in pools if p["user_api"] == "blas"]
        report["numpy_blas"] = [f"{p['internal_api']} {p['version']} ({pathlib.Path(p['filepath']).name}, "
                                f"{p['num_threads']} threads)" for p in blas]
        report["numpy"] = numpy.__version__
    except ImportError:
        pass
    if torch is not None:
        report["torch_intra_op"] = torch.get_num_threads()
        if torch.get_num_threads() != requested:
            mismatch.append(f"torch intra-op: {torch.get_num_threads()} threads")
    for m in mismatch:
        print(f"WARNING (bench peer): a thread pool is not at the requested {requested}: {m}", file=sys.stderr)
    return report
