#!/usr/bin/env python3
"""Peer side of the spectral-core benchmarks (benches/benches/spectral.rs): numpy and scipy.

Reads what the Rust side wrote under --out: spectral-rust.json (its median times, Rust-side
ratios, memory figures, machine) and spectral/*.json (the exact sparse Laplacians, as triplets),
so both sides see identical input. Times, on those matrices:

* numpy ``eigh`` (LAPACK ``syevd``) of the ADK spatial Laplacian (N = 855), of the 4,000-node
  graph's Laplacian, and of the joint ``L_t ⊗ I + I ⊗ L_s`` at T = 4 (3420²);
* scipy ``eigh(subset_by_index=[0, 127])`` (LAPACK ``syevr``) of the ADK Laplacian: the 128
  smallest pairs, what the joint basis needs;
* scipy ``eigsh`` in shift-invert mode (``sigma`` just below 0, ``which="LM"``) for the 32
  smallest eigenpairs of the 4,000-node graph — the standard Python route to the bottom of a
  Laplacian spectrum.

Each time is the median of several runs after one warm-up (two runs, no warm-up, for the two
eigen-decompositions that take tens of seconds). Writes spectral.json — the headline ratios
(``basis_vs_joint_eigh_speedup``, ``projection_speedup_min``, ``dense_eigh_vs_numpy``,
``partial_vs_dense_speedup``, ``partial_vs_scipy``, each baseline time / ours) plus every row and
the context — and prints the table.

Threads: the count in SGDD_BENCH_THREADS (set by the runner for both sides), pinned on numpy's BLAS
with threadpoolctl (bench_env.py), which also records which BLAS numpy runs. Set-up: numpy, scipy
and threadpoolctl are installed (pinned, bench_env.PINNED) into the running interpreter with pip
when missing.

Usage (normally through `cargo xtask bench spectral`): python benches/peers/spectral.py --out target/bench
"""

import argparse
import json
import os
import pathlib
import platform
import statistics
import sys
import time

sys.dont_write_bytecode = True
import bench_env  # noqa: E402


def load(path):
    import numpy as np
    import scipy.sparse as sp

    d = json.loads(pathlib.Path(path).read_text())
    n = d["n"]
    return sp.csr_matrix((np.array(d["vals"]), (np.array(d["rows"]), np.array(d["cols"]))), shape=(n, n))


def timeit(fn, repeats, warmup=True):
    if warmup:
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def fmt(s):
    if s is None:
        return "—"
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.2f} ms"
    return f"{s * 1e6:.1f} µs"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="target/bench", help="the directory the Rust bench wrote to")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    out_dir = pathlib.Path(args.out)
    rust_path = out_dir / "spectral-rust.json"
    if not rust_path.exists():
        sys.exit(f"spectral peer: {rust_path} is missing; run the Rust side first (cargo xtask bench spectral)")
    rust = json.loads(rust_path.read_text())
    graphs = pathlib.Path(rust["graphs_dir"])
    ours = rust["rust_median_s"]

    bench_env.ensure_packages("numpy", "scipy")
    import numpy as np
    import scipy
    import scipy.sparse as sp
    from scipy.sparse.linalg import eigsh

    threads = bench_env.pin_threads()
    if threads != rust["context"]["threads"]["requested"]:
        sys.exit(f"spectral peer: {threads} threads here but the Rust side ran at "
                 f"{rust['context']['threads']['requested']}: not the same setting")

    adk = load(graphs / "adk_ls.json").toarray()
    geo = load(graphs / "geo4000.json")
    lt4 = load(graphs / "path_t4.json").toarray()
    geo_dense = geo.toarray()

    def measured(*keys):
        """Whether the Rust side measured any of `keys` (a criterion filter may have skipped them):
        the peer times only what has a counterpart."""
        return any(k in ours for k in keys)

    peer = {"numpy_eigh_s": {}, "scipy_eigsh_s": {}, "scipy_eigh_subset_s": {}}
    if measured("dense_eigh/adk855"):
        peer["numpy_eigh_s"]["adk_ls"] = timeit(lambda: np.linalg.eigh(adk), args.repeats)
    if measured("dense_eigh/adk855_leading128"):
        import scipy.linalg

        # The basis needs only the K = 128 smallest pairs: LAPACK syevr through scipy.
        peer["scipy_eigh_subset_s"]["adk_ls_k128"] = timeit(
            lambda: scipy.linalg.eigh(adk, subset_by_index=[0, 127]), args.repeats)
    if measured("dense_eigh/geo4000"):
        peer["numpy_eigh_s"]["geo4000"] = timeit(lambda: np.linalg.eigh(geo_dense), 2, warmup=False)
    if measured("basis/joint_eigh_T4", "basis/factored_T4"):
        joint = np.kron(lt4, np.eye(adk.shape[0])) + np.kron(np.eye(4), adk)
        peer["numpy_eigh_s"]["joint_t4"] = timeit(lambda: np.linalg.eigh(joint), 2, warmup=False)

    # 32 smallest of a PSD Laplacian by shift-invert just below 0 (L − σI is then nonsingular).
    k = 32
    geo_csc = sp.csc_matrix(geo)

    def si():
        return eigsh(geo_csc, k=k, sigma=-1e-3, which="LM", tol=1e-9)

    if measured("partial/geo4000_k32"):
        peer["scipy_eigsh_s"]["geo4000"] = timeit(si, args.repeats)
        vals, vecs = si()
        order = np.argsort(vals)
        vals, vecs = vals[order], vecs[:, order]
        resid = np.linalg.norm(geo_csc @ vecs - vecs * vals, axis=0)
        dense_vals = np.linalg.eigvalsh(geo_dense)[:k]
        peer["scipy_eigsh_check"] = {
            "max_residual": float(resid.max()),
            "max_abs_diff_vs_dense": float(np.abs(vals - dense_vals).max()),
        }
    peer["versions"] = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "cpus_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
    }
    peer["threads"] = bench_env.thread_report(threads)

    rows = list(rust["rows"])
    headline = dict(rust["headline"])

    def row(what, baseline, mine, target=None):
        if baseline is None or mine is None:
            return None
        rows.append({"what": what, "baseline_s": baseline, "ours_s": mine, "ratio": baseline / mine, "target": target})
        return baseline / mine

    headline["dense_eigh_vs_numpy"] = row(
        "dense eigh: numpy / faer (ADK L_s, N=855)", peer["numpy_eigh_s"].get("adk_ls"), ours.get("dense_eigh/adk855"), 1 / 1.5
    )
    headline["dense_eigh_vs_numpy_n4000"] = row(
        "dense eigh: numpy / faer (N=4000)", peer["numpy_eigh_s"].get("geo4000"), ours.get("dense_eigh/geo4000"), 1 / 1.5
    )
    headline["dense_leading_vs_scipy_subset"] = row(
        "dense 128 smallest: scipy eigh subset / faer leading (ADK)",
        peer["scipy_eigh_subset_s"].get("adk_ls_k128"), ours.get("dense_eigh/adk855_leading128"), 1 / 1.5
    )
    headline["partial_vs_scipy"] = row(
        "partial (k=32): scipy eigsh shift-invert / ours, N=4000",
        peer["scipy_eigsh_s"].get("geo4000"),
        ours.get("partial/geo4000_k32"),
    )
    headline["joint_eigh_numpy_vs_faer_t4"] = row(
        "joint 3420² eigh: numpy / faer (the naive route, reference)",
        peer["numpy_eigh_s"].get("joint_t4"),
        ours.get("basis/joint_eigh_T4"),
    )
    basis_t4 = ours.get("basis/factored_T4")
    headline["basis_vs_numpy_joint_eigh_speedup"] = row(
        "basis: numpy joint eigh / factored (N=855, T=4)", peer["numpy_eigh_s"].get("joint_t4"), basis_t4, 50.0
    )

    report = dict(headline)
    report["rows"] = rows
    report["context"] = {**rust["context"], "peer": peer, "basis_growth": rust["basis_growth"],
                         "projection_memory": rust["projection_memory"]}
    (out_dir / "spectral.json").write_text(json.dumps(report, indent=2))

    print(f"\nspectral-core ratios (baseline / ours, measured in this run, {threads} thread(s) each) "
          f"on {rust['context']['machine']}; numpy BLAS: {', '.join(peer['threads'].get('numpy_blas', ['?']))}")
    print(f"{'comparison':<62} {'baseline':>10} {'ours':>10} {'ratio':>9} {'target':>8}")
    for r in rows:
        target = f"≥{r['target']:.2g}×" if r.get("target") else ""
        print(f"{r['what']:<62} {fmt(r['baseline_s']):>10} {fmt(r['ours_s']):>10} {r['ratio']:>8.2f}× {target:>8}")
    missing = [k for k, v in headline.items() if v is None]
    if missing:
        print(f"not measured in this run (filtered or skipped): {', '.join(missing)}")
    print("memory held by the projection (f32): factored O(N·i_max + T·j_max) vs materialised N·T·K")
    for key, m in rust["projection_memory"].items():
        print(f"  {key:<9} i_max={m['i_max']:<4} j_max={m['j_max']:<3} "
              f"factored {m['factored_bytes_f32'] / 1024:8.1f} KiB   materialised {m['materialised_bytes_f32'] / 1024:9.1f} KiB")
    print(f"written to {out_dir / 'spectral.json'}")


if __name__ == "__main__":
    main()
