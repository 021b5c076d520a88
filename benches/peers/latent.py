#!/usr/bin/env python3
"""Peer side of the latent-ids benchmark (benches/benches/latent.rs): LaM-SLidE's stage-2 flow model
in eager PyTorch.

The Rust side writes, under --out/latent/, the setting (setting.json), the initial weights
(weights.safetensors) and one batch with its Euler sample (inputs.safetensors), then starts this
script with --serve. The script loads the weights into `LatentFlow` below — a port of
crates/latent-ids/src/flow.rs with the same parameter names (strict load) — checks that it computes
the Rust side's first loss and the Rust side's Euler sample from the same noise, prints one JSON line
(first loss, max |Δ| of the sample, thread report) and then answers, one JSON line each,

    flow N     N training steps: draw t ~ U[ε, 1 − ε] and x_0 ~ N(0, I), interpolate, forward, MSE,
               backward, AdamW  → {"seconds_per_iter": ...}
    sample N   N samplings: Gaussian noise, Euler over 10 time points, given frames put back
    draws N    N times the random draws of a training step alone (t and x_0)
    quit

so that the Rust side alternates the two sides round by round. Threads: SGDD_BENCH_THREADS, pinned
by bench_env.py (the Rust side passes its environment on).

Usage: started by `cargo xtask bench latent`; by hand, after a run of it:
    python benches/peers/latent.py --out target/bench/latent/threads-1 --check
"""

import argparse
import json
import math
import pathlib
import platform
import sys
import time

sys.dont_write_bytecode = True

import bench_env  # noqa: E402

bench_env.ensure_packages()
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from safetensors.numpy import load_file  # noqa: E402  (safetensors.torch needs `packaging`)


def rms_norm(x, scale):
    return x * torch.rsqrt(x.square().mean(-1, keepdim=True) + 1e-6) * scale


class Norm(torch.nn.Module):
    def __init__(self, d):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(d))


class QkNorm(torch.nn.Module):
    def __init__(self, d):
        super().__init__()
        self.query_norm = Norm(d)
        self.key_norm = Norm(d)


def rope_angles(positions, head_dim, theta):
    """(cos, sin) of p·θ^(−2i/d), each [positions, d/2], computed in float64 as ours."""
    i = torch.arange(head_dim // 2, dtype=torch.float64)
    omega = torch.exp(i * (-2.0 * math.log(theta) / head_dim))
    a = torch.arange(positions, dtype=torch.float64)[:, None] * omega[None, :]
    return a.cos().float(), a.sin().float()


def rope(x, cos, sin):
    """Rotates channel pairs (2i, 2i+1) of x [.., P, d] at position P."""
    xp = x.reshape(*x.shape[:-1], x.shape[-1] // 2, 2)
    x0, x1 = xp[..., 0], xp[..., 1]
    return torch.stack([x0 * cos - x1 * sin, x0 * sin + x1 * cos], -1).reshape(x.shape)


class ParallelBlock(torch.nn.Module):
    def __init__(self, h, heads, mlp):
        super().__init__()
        self.linear1 = torch.nn.Linear(h, 3 * h + mlp)
        self.linear2 = torch.nn.Linear(h + mlp, h)
        self.qk = QkNorm(h // heads)
        self.heads, self.mlp = heads, mlp

    def forward(self, x, cos, sin):
        b, p, h = x.shape
        qkv, u = self.linear1(x).split([3 * h, self.mlp], -1)
        q, k, v = (z.view(b, p, self.heads, -1).transpose(1, 2) for z in qkv.chunk(3, -1))
        q = rope(rms_norm(q, self.qk.query_norm.scale), cos, sin)
        k = rope(rms_norm(k, self.qk.key_norm.scale), cos, sin)
        attn = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, p, h)
        return self.linear2(torch.cat([attn, F.gelu(u)], -1))


class FlowLayer(torch.nn.Module):
    def __init__(self, h, heads, mlp):
        super().__init__()
        self.modulation = torch.nn.Linear(h, 6 * h)
        self.spatial = ParallelBlock(h, heads, mlp)
        self.temporal = ParallelBlock(h, heads, mlp)


def time_embedding(t, dim):
    half = dim // 2
    freqs = torch.exp(torch.arange(half, dtype=torch.float64) * (-math.log(10_000.0) / half)).to(t.dtype)
    args = (t * 1000.0)[:, None] * freqs[None, :]
    return torch.cat([args.cos(), args.sin()], 1)


def modulate(x, shift, scale):
    n = F.layer_norm(x, (x.shape[-1],), eps=1e-6)
    return n * (scale[:, None, None] + 1.0) + shift[:, None, None]


class LatentFlow(torch.nn.Module):
    """crates/latent-ids/src/flow.rs in PyTorch (same parameter names)."""

    def __init__(self, cfg):
        super().__init__()
        h, d = cfg["hidden"], cfg["latent_dim"]
        mlp = int(h * cfg["mlp_ratio"])
        self.cfg = cfg
        self.x_in = torch.nn.Linear(d, h)
        self.cond_in = torch.nn.Linear(d, h)
        self.mask_embed = torch.nn.Embedding(2, h)
        self.time_in = torch.nn.ModuleList([torch.nn.Linear(cfg["time_dim"], h), torch.nn.Linear(h, h)])
        self.layers = torch.nn.ModuleList([FlowLayer(h, cfg["heads"], mlp) for _ in range(cfg["depth"])])
        self.final_modulation = torch.nn.Linear(h, 2 * h)
        self.out = torch.nn.Linear(h, d)

    def forward(self, x_t, t, x_cond, mask):
        b, tt, l, _ = x_t.shape
        h = self.cfg["hidden"]
        x = self.x_in(x_t) + self.cond_in(x_cond) + self.mask_embed(mask)
        vec = self.time_in[1](F.silu(self.time_in[0](time_embedding(t.to(x_t.dtype), self.cfg["time_dim"]))))
        head_dim, theta = h // self.cfg["heads"], self.cfg["theta"]
        cos_l, sin_l = rope_angles(l, head_dim, theta)
        cos_t, sin_t = rope_angles(tt, head_dim, theta)
        for layer in self.layers:
            m = layer.modulation(F.silu(vec)).chunk(6, -1)
            y = modulate(x, m[0], m[1]).reshape(b * tt, l, h)
            y = layer.spatial(y, cos_l, sin_l).view(b, tt, l, h)
            x = x + m[2][:, None, None] * y
            y = modulate(x, m[3], m[4]).permute(0, 2, 1, 3).reshape(b * l, tt, h)
            y = layer.temporal(y, cos_t, sin_t).view(b, l, tt, h).permute(0, 2, 1, 3)
            x = x + m[5][:, None, None] * y
        m = self.final_modulation(F.silu(vec)).chunk(2, -1)
        y = self.out(modulate(x, m[0], m[1]))
        return y + x_cond if self.cfg["residual"] else y


def interpolate(x0, x1, t):
    """GVP: x_t = sin(πt/2) x_1 + cos(πt/2) x_0."""
    a = (t * (math.pi / 2)).view(-1, 1, 1, 1)
    return a.sin() * x1 + a.cos() * x0


def euler_sample(model, x0, x_cond, mask, sampler):
    """The probability-flow ODE of the data-predicting model from t = ε to 1 − ε, Euler on the
    sampler's time points; the given frames put back."""
    eps, points = sampler["eps"], sampler["points"]
    ts = [eps + (1 - 2 * eps) * i / (points - 1) for i in range(points)]
    b = x0.shape[0]
    x = x0
    with torch.no_grad():
        for t0, t1 in zip(ts, ts[1:]):
            x1 = model(x, torch.full((b,), t0, dtype=x.dtype), x_cond, mask)
            a, s = math.sin(math.pi / 2 * t0), math.cos(math.pi / 2 * t0)
            da, ds = math.pi / 2 * math.cos(math.pi / 2 * t0), -math.pi / 2 * math.sin(math.pi / 2 * t0)
            v = x1 * da + (x - x1 * a) * (ds / s)
            x = x + v * (t1 - t0)
    given = mask.unsqueeze(-1).bool()
    return torch.where(given, x_cond, x)


def load_tensors(path):
    return {k: torch.from_numpy(v.copy()) for k, v in load_file(str(path)).items()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True, help="the directory the Rust side wrote to")
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--serve", action="store_true", help="check, then time on request (stdin)")
    mode.add_argument("--check", action="store_true", help="check the first loss and the sample only")
    args = ap.parse_args()
    fixtures = pathlib.Path(args.out) / "latent"
    setting = json.loads((fixtures / "setting.json").read_text())
    threads = bench_env.pin_threads(torch)
    if threads != setting["threads"]:
        sys.exit(f"latent peer: {threads} threads here but the Rust side ran at {setting['threads']}: not the same setting")
    cfg = setting["config"]
    model = LatentFlow(cfg)
    model.load_state_dict(load_tensors(fixtures / "weights.safetensors"), strict=True)
    inp = load_tensors(fixtures / "inputs.safetensors")
    x1, x_cond, mask = inp["x1"], inp["x_cond"], inp["mask"]

    def loss(t, x0):
        return F.mse_loss(model(interpolate(x0, x1, t), t, x_cond, mask), x1)

    with torch.no_grad():
        first = loss(inp["t"], inp["x0"]).item()
    want = setting["initial_loss"]
    if abs(first - want) > 1e-4 * (1 + abs(want)):
        sys.exit(f"latent peer: the PyTorch model's first loss {first} differs from Rust's {want}: not the same model")
    sampler = setting["sampler"]
    sample = euler_sample(model, inp["noise"], x_cond, mask, sampler)
    diff = (sample - inp["sample"]).abs().max().item()
    if not diff <= 1e-3 * (1 + inp["sample"].abs().max().item()):
        sys.exit(f"latent peer: the Euler sample differs from Rust's by up to {diff}: not the same sampler")
    hello = {
        "first_loss": first,
        "sample_max_abs_diff": diff,
        "context": {
            "threads": bench_env.thread_report(threads, torch),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "cpu": platform.processor() or platform.machine(),
        },
    }
    if args.check:
        print(json.dumps(hello, indent=2))
        return
    print(json.dumps(hello), flush=True)

    adamw = setting["adamw"]
    opt = torch.optim.AdamW(model.parameters(), lr=adamw["lr"], betas=tuple(adamw["betas"]), eps=adamw["eps"],
                            weight_decay=adamw["weight_decay"])
    gen = torch.Generator().manual_seed(0)
    b, eps = x1.shape[0], setting["interpolant_eps"]

    def step():
        t = eps + (1 - 2 * eps) * torch.rand(b, generator=gen)
        x0 = torch.randn(x1.shape, generator=gen)
        opt.zero_grad()
        l = loss(t, x0)
        l.backward()
        opt.step()

    def draw():
        euler_sample(model, torch.randn(x1.shape, generator=gen), x_cond, mask, sampler)

    def noise():
        eps + (1 - 2 * eps) * torch.rand(b, generator=gen)
        torch.randn(x1.shape, generator=gen)

    tasks = {"flow": step, "sample": draw, "draws": noise}
    for line in sys.stdin:
        words = line.split()
        if not words or words[0] == "quit":
            break
        task, iters = tasks[words[0]], int(words[1])
        t0 = time.perf_counter()
        for _ in range(iters):
            task()
        print(json.dumps({"seconds_per_iter": (time.perf_counter() - t0) / iters}), flush=True)


if __name__ == "__main__":
    main()
