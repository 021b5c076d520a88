#!/usr/bin/env python3
"""Peer side of the graph-nets benchmark (benches/benches/nets.rs): the EGNO training step in eager PyTorch.

Reads what the Rust side wrote under --out: nets-rust.json (configuration, threads, learning rate,
first-step loss, per-step times) and nets/{inputs,weights}.safetensors (the exact batch and the
initial weights). Loads them into the PyTorch port of our model (crates/graph-nets/tests/golden/
reference.py, which the crate's golden tests check the Rust model against), verifies that it
computes the same first loss, then times the same step — forward, MSE, backward, Adam — on the same
number of CPU threads (SGDD_BENCH_THREADS, pinned by bench_env.py). Writes nets.json with
egno_step_speedup_vs_port = port time / ours, and prints the table.

The authors' model as a second peer: with SGDD_EGNO_OFFICIAL=/path/to/EGNO (a checkout of
https://github.com/MinkaiXu/EGNO; nothing of it is part of this repository), the official class
`model.egno.EGNO` is built at the same size, our initial weights are mapped into it (official_egno.py)
and the same step is timed on the same inputs: egno_step_speedup_vs_official = official time / ours.
Without the variable that figure is null and the report says the port was the only peer.

The GF-NODE step (`gfnode_step_speedup_vs_pytorch`) runs the authors' own `FourierMD` class,
imported from the checkout of FrancoTSolis/GF-NODE-code named by GFNODE_CODE (skipped when unset),
with the Rust side's weights mapped onto its parameter names by crates/graph-nets/tests/fixtures/
gfnode_fixture.py (the script of the fidelity fixture) and the Rust side's graph Fourier basis.

Usage (normally through `cargo xtask bench nets`): python benches/peers/nets.py --out target/bench
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
ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "crates/graph-nets/tests/golden"))

import bench_env  # noqa: E402

bench_env.ensure_packages()
import torch  # noqa: E402
from safetensors.numpy import load_file  # noqa: E402  (safetensors.torch needs `packaging`)

import official_egno  # noqa: E402
import reference as ref  # noqa: E402


def load_tensors(path):
    return {k: torch.from_numpy(v.copy()) for k, v in load_file(str(path)).items()}


def fmt(s):
    return f"{s * 1e3:.2f} ms" if s < 1 else f"{s:.2f} s"


def time_steps(step, n_samples, sample_seconds):
    """Median-able per-step seconds: a warm-up, then `n_samples` samples of about `sample_seconds`."""
    for _ in range(5):  # warm-up
        step()
    t0 = time.perf_counter()
    step()
    iters = max(1, int(sample_seconds / (time.perf_counter() - t0)))
    samples = []
    for _ in range(n_samples):
        t0 = time.perf_counter()
        for _ in range(iters):
            step()
        samples.append((time.perf_counter() - t0) / iters)
    return samples


def gfnode_step(rust, inputs, out, args):
    """The authors' FourierMD on the Rust side's weights and batch: (first loss, step samples)."""
    sys.path.insert(0, str(ROOT / "crates/graph-nets/tests/fixtures"))
    import gfnode_fixture as fixture  # noqa: E402

    gf = rust["gfnode"]
    cfg = gf["config"]
    batch = rust["batch"]
    b, n, t = batch["graphs"], batch["nodes_per_graph"], cfg["horizon"]
    assert cfg["ode"]["solver"] == "rk4-three-eighths" and cfg["ode"].get("step_size") is None
    FourierMD = fixture.import_authors_model()
    interaction = {"attention": "attention", "none": "no_interaction"}[cfg["mode_interaction"]]
    model = FourierMD(
        n_layers=cfg["layers"],
        in_node_nf=cfg["node_in"],
        in_edge_nf=cfg["edge_dim"],
        hidden_nf=cfg["hidden"],
        activation=torch.nn.SiLU(),
        device="cpu",
        with_v=True,
        num_modes=cfg["num_modes"],
        num_timesteps=t,
        time_emb_dim=cfg["time_emb_dim"],
        num_atoms=n,
        solver="rk4",  # torchdiffeq's rk4 is the 3/8 rule; its grid = the target times
        delta_frame=cfg["time_scale"],
        fourier_basis="graph",
        gnn_ablation_mode="EGNN",
        mode_interaction=interaction,
        time_mode=cfg["ode_time"],
    )
    fixture.load_ours(model, load_tensors(out / "nets" / "gfnode-weights.safetensors"), cfg["hidden"], cfg["time_emb_dim"])
    extra = load_tensors(out / "nets" / "gfnode-inputs.safetensors")
    x0, v0, ea, target = (inputs[k] for k in ("x0", "v0", "edge_attr", "target"))
    h0, basis = extra["h0"], extra["basis"]  # basis [B·N, M]
    m = basis.shape[1]
    u = torch.zeros(b, n, n)
    u[:, :, :m] = basis.view(b, n, m)  # only the leading M columns are read
    edges = [inputs["edge_index"][0], inputs["edge_index"][1]]
    loc_mean = x0.view(b, n, 3).mean(1, keepdim=True).repeat(1, n, 1).view(-1, 3)
    times = (torch.arange(1, t + 1, dtype=torch.float32) * gf["target_stride"]).repeat(b, 1)

    def loss():
        x, _, _, _ = model(x0, h0, edges, ea, v=v0, loc_mean=loc_mean, timeframes=times, U_batch=u)
        return ((x.view(t, b * n, 3) - target) ** 2).mean()

    with torch.no_grad():
        first = loss().item()
    if abs(first - gf["initial_loss"]) > 1e-4 * (1 + abs(gf["initial_loss"])):
        sys.exit(f"nets peer: FourierMD's first loss {first} differs from Rust's GF-NODE {gf['initial_loss']}: not the same model")
    opt = torch.optim.Adam(model.parameters(), lr=rust["lr"])

    def step():
        opt.zero_grad()
        l = loss()
        l.backward()
        opt.step()

    return first, time_steps(step, args.samples, args.sample_seconds)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True, help="the directory the Rust side wrote to (target/bench)")
    ap.add_argument("--samples", type=int, default=10)
    ap.add_argument("--sample-seconds", type=float, default=1.0)
    args = ap.parse_args()
    out = pathlib.Path(args.out)
    rust = json.loads((out / "nets-rust.json").read_text())
    cfg, threads = rust["config"], bench_env.pin_threads(torch)
    if threads != rust["threads"]:
        sys.exit(f"nets peer: {threads} threads here but the Rust side ran at {rust['threads']}: not the same setting")

    inputs = load_tensors(out / "nets" / "inputs.safetensors")
    batch = rust["batch"]
    sizes = [batch["nodes_per_graph"]] * batch["graphs"]
    graph = ref.Graph.from_edge_index(inputs["edge_index"], sizes)
    model = ref.Egno(cfg)
    model.load_state_dict(load_tensors(out / "nets" / "weights.safetensors"), strict=True)
    x0, v0, h0, ea, target = (inputs[k] for k in ("x0", "v0", "h0", "edge_attr", "target"))

    def loss():
        x, _, _ = model(x0, v0, h0, graph, ea)
        return ((x - target) ** 2).mean()

    with torch.no_grad():
        first = loss().item()
    agree = abs(first - rust["initial_loss"]) <= 1e-4 * (1 + abs(rust["initial_loss"]))
    if not agree:
        sys.exit(f"nets peer: the PyTorch model's first loss {first} differs from Rust's {rust['initial_loss']}: not the same model")

    def adam_steps(params, loss_fn):
        """Per-step seconds of `args.samples` samples of forward + MSE + backward + Adam."""
        opt = torch.optim.Adam(params, lr=rust["lr"])

        def step():
            opt.zero_grad()
            l = loss_fn()
            l.backward()
            opt.step()

        return time_steps(step, args.samples, args.sample_seconds)

    # The authors' class, when a checkout is named; built before the port trains (it maps the
    # initial weights).
    official_dir = os.environ.get("SGDD_EGNO_OFFICIAL")
    official = None
    if official_dir:
        off_model, official_loss, official = official_egno.build(
            official_dir, cfg, model, graph, x0, v0, h0, ea, target, inputs["edge_index"])

    samples = adam_steps(model.parameters(), loss)
    torch_s, rust_s = statistics.median(samples), rust["egno_train_step_s"]
    ratio = torch_s / rust_s
    # On a shared machine other load only ever adds time: the fastest sample of each side is a
    # cross-check of the median-based headline.
    best_ratio = min(samples) / rust["egno_train_step_min_s"]
    rows = [
        {"what": "EGNO step (fwd+bwd+Adam): our PyTorch port / ours, median", "baseline_s": torch_s, "ours_s": rust_s, "ratio": ratio, "target": 1.0},
        {"what": "EGNO step: our PyTorch port / ours, fastest sample", "baseline_s": min(samples), "ours_s": rust["egno_train_step_min_s"], "ratio": best_ratio, "target": None},
    ]
    official_ratio = official_best = None
    official_samples = None
    if official is not None:
        official_samples = adam_steps(off_model.parameters(), official_loss)
        off_s = statistics.median(official_samples)
        official_ratio = off_s / rust_s
        official_best = min(official_samples) / rust["egno_train_step_min_s"]
        rows += [
            {"what": "EGNO step: official MinkaiXu/EGNO class / ours, median", "baseline_s": off_s, "ours_s": rust_s, "ratio": official_ratio, "target": 1.0},
            {"what": "EGNO step: official class / ours, fastest sample", "baseline_s": min(official_samples), "ours_s": rust["egno_train_step_min_s"], "ratio": official_best, "target": None},
        ]
        official["samples_s"] = official_samples
    else:
        official = {"used": False, "why": "SGDD_EGNO_OFFICIAL is not set: the only peer is our PyTorch port "
                    "(crates/graph-nets/tests/golden/reference.py); set it to a checkout of "
                    "https://github.com/MinkaiXu/EGNO to time the authors' class too"}
    report = {
        "egno_step_speedup_vs_port": ratio,
        "egno_step_speedup_vs_port_best_sample": best_ratio,
        "egno_step_speedup_vs_official": official_ratio,
        "egno_step_speedup_vs_official_best_sample": official_best,
        "rows": rows,
        "context": {
            "threads": bench_env.thread_report(threads, torch),
            "config": cfg,
            "batch": batch,
            "initial_loss": {"rust": rust["initial_loss"], "pytorch": first},
            "official_peer": official,
            "pytorch_samples_s": samples,
            "rust_samples_s": rust["samples_s"],
            "torch": torch.__version__,
            "python": platform.python_version(),
            "cpu": platform.processor() or platform.machine(),
            "command": "cargo xtask bench nets",
        },
    }
    if os.environ.get("GFNODE_CODE"):
        g_first, g_samples = gfnode_step(rust, inputs, out, args)
        gf = rust["gfnode"]
        g_ratio = statistics.median(g_samples) / gf["train_step_s"]
        g_best = min(g_samples) / gf["train_step_min_s"]
        report["gfnode_step_speedup_vs_pytorch"] = g_ratio
        report["gfnode_step_speedup_vs_pytorch_best_sample"] = g_best
        report["rows"] += [
            {"what": "GF-NODE training step vs the authors' FourierMD, median", "baseline_s": statistics.median(g_samples), "ours_s": gf["train_step_s"], "ratio": g_ratio, "target": 1.0},
            {"what": "GF-NODE training step, fastest sample", "baseline_s": min(g_samples), "ours_s": gf["train_step_min_s"], "ratio": g_best, "target": None},
        ]
        report["context"]["gfnode"] = {
            "config": gf["config"],
            "target_stride": gf["target_stride"],
            "initial_loss": {"rust": gf["initial_loss"], "pytorch": g_first},
            "pytorch_samples_s": g_samples,
            "rust_samples_s": gf["samples_s"],
            "authors_code": os.environ["GFNODE_CODE"],
        }
    else:
        print("nets peer: GFNODE_CODE is not set (a checkout of FrancoTSolis/GF-NODE-code): GF-NODE step not compared", file=sys.stderr)
    (out / "nets.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"{'comparison':<58} {'baseline':>12} {'ours':>12} {'ratio':>9} {'target':>8}")
    for r in report["rows"]:
        target = f"≥{r['target']}×" if r["target"] else ""
        print(f"{r['what']:<58} {fmt(r['baseline_s']):>12} {fmt(r['ours_s']):>12} {r['ratio']:>8.2f}× {target:>8}")
    sides = [("PyTorch port", samples), ("ours", rust["samples_s"])]
    if official_samples is not None:
        sides.append(("official EGNO", official_samples))
    for side, xs in sides:
        if max(xs) > 1.5 * min(xs):
            hint = (" (with several threads, libtorch's OpenMP barriers stall badly when a core is taken: "
                    "compare the 1-thread setting)") if threads > 1 else ""
            print(f"warning: {side} samples spread {min(xs) * 1e3:.0f}–{max(xs) * 1e3:.0f} ms: other load on the "
                  f"machine; compare the fastest-sample row{hint}", file=sys.stderr)
    if official.get("used"):
        print(f"official EGNO ({official['checkout']}): weights mapped, module checks max |Δ| "
              f"{max(official['module_check_max_abs_diff'].values()):.2e}; first loss {official['first_loss']:.6g} "
              f"= port with the official layer semantics {official['first_loss_port_with_official_semantics']:.6g}")
    else:
        print(f"note: {official['why']}")
    print(f"threads {threads}; first loss rust {rust['initial_loss']:.6g} / pytorch {first:.6g}; wrote {out / 'nets.json'}")


if __name__ == "__main__":
    main()
