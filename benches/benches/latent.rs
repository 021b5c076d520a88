//! `latent-ids` benchmark (issue 13 / SPEC §6): the stage-2 flow model of LaM-SLidE
//! ([`latent_ids::LatentFlow`]) against the same model in eager PyTorch, one training step and
//! one Euler sampling run, measured alternately in one run.
//!
//! `cargo xtask bench latent` runs this; it
//! 1. builds the flow model at the quick N-body setting (`configs/repro/nbody-geotdm-quick.toml`:
//!    `T = 30` frames of which 10 are given, `L × D = 8 × 64` latents, hidden 64, depth 2,
//!    4 heads, MLP ratio 2, residual output; batch 32, float32, CPU) and writes its initial
//!    weights and one batch (`x_1`, the conditioning, `t`, `x_0`, the sampling noise) under
//!    `$SGDD_BENCH_OUT/latent/` as safetensors, with the first-step loss and the Euler sample
//!    of that batch;
//! 2. starts the peer `benches/peers/latent.py --serve`, which loads both into its PyTorch port
//!    of the model, checks that it computes the same first loss and the same sample, and then
//!    times its side on request;
//! 3. measures in rounds, alternating the order of the two sides from round to round (so slow
//!    drifts of the machine's load fall on both): a training step — draw `t ~ U[ε, 1 − ε]` and
//!    `x_0 ~ N(0, I)`, interpolate, forward, the interpolant MSE, backward, one AdamW step (the
//!    trainer's [`sgdd_train::Adam`] here, `torch.optim.AdamW` there) — and sampling — Gaussian
//!    noise integrated by Euler over 10 time points ([`latent_ids::sample_latents`], the
//!    sampler of `sgdd eval`), the given frames put back;
//! 4. writes `$SGDD_BENCH_OUT/latent.json`: `flow_step_speedup_vs_pytorch` and
//!    `sampling_speedup_vs_pytorch` (median PyTorch time / median ours), the fastest-sample
//!    ratios beside them, a row timing the step's random draws alone (ours: ChaCha8 streams per
//!    sample, as the trainer draws them; PyTorch: `torch.rand` / `torch.randn`), every sample of
//!    both sides and the context.
//!
//! The step leaves out the decoded losses of [`latent_ids::flow_loss`] (they run the codec's
//! decoder, a model the peer does not port) and the encoding of the targets (the codec is frozen
//! in stage 2): it is the flow model's own step. Threads: `SGDD_BENCH_THREADS` (the runner
//! passes `--threads 1` on to both sides); the peer inherits the variables.
//!
//! Without `--bench` (`cargo test --benches`) one step and one sample run and nothing is written.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Instant;

use latent_ids::random::{Purpose, normal, uniform};
use latent_ids::{Conditioning, Gvp, LatentFlow, LatentFlowConfig, SamplerConfig, sample_latents};
use serde_json::{Value, json};
use sgdd_benches::{
    RatioRow, bench_output_dir, machine, median, pin_threads, render_table, thread_context,
    workspace_root,
};
use sgdd_train::{Adam, AdamConfig};
use tch::{Device, Kind, Tensor, nn};

const BATCH: i64 = 32;
const FRAMES: i64 = 30;
const GIVEN: i64 = 10;
const LATENTS: i64 = 8;
/// The quick configs' stage-2 learning rate and AdamW weight decay.
const LR: f64 = 3e-4;
const WEIGHT_DECAY: f64 = 0.01;
/// Interpolation times are drawn in `[ε, 1 − ε]`.
const EPS: f64 = 1e-3;
/// Seed of the sampling noise (its streams are the sample indices `0..BATCH`).
const NOISE_SEED: u64 = 7;
/// Alternating rounds; each round times both sides on both tasks.
const ROUNDS: usize = 10;
/// Seconds each side spends on one task in one round (iterations fixed from our first step).
const ROUND_SECONDS: f64 = 1.0;

fn config() -> LatentFlowConfig {
    LatentFlowConfig {
        latent_dim: 64,
        hidden: 64,
        depth: 2,
        heads: 4,
        mlp_ratio: 2.0,
        residual: true,
        ..LatentFlowConfig::default()
    }
}

/// The exported batch.
struct Batch {
    x1: Tensor,
    cond: Conditioning,
    t: Tensor,
    x0: Tensor,
    noise: Tensor,
}

fn batch(d: i64) -> Batch {
    let opts = (Kind::Float, Device::Cpu);
    let x1 = Tensor::randn([BATCH, FRAMES, LATENTS, d], opts);
    let cond = Conditioning::new(&x1.narrow(1, 0, GIVEN), FRAMES).expect("given ≤ frames");
    let (t, x0) = draws(0);
    let shape = [FRAMES, LATENTS, d];
    let noise = Tensor::stack(
        &(0..BATCH as u64)
            .map(|i| normal(&mut Purpose::SamplingNoise.rng(NOISE_SEED, i), &shape, opts))
            .collect::<Vec<_>>(),
        0,
    );
    Batch {
        x1,
        cond,
        t,
        x0,
        noise,
    }
}

/// One training step's draws, as [`latent_ids::flow_loss`] makes them: per sample, `t` and
/// `x_0` from the stream `(step, sample)` of [`Purpose::Interpolant`].
fn draws(step: u64) -> (Tensor, Tensor) {
    let opts = (Kind::Float, Device::Cpu);
    let shape = [FRAMES, LATENTS, config().latent_dim];
    let mut t = Vec::with_capacity(BATCH as usize);
    let mut x0 = Vec::with_capacity(BATCH as usize);
    for sample in 0..BATCH as u64 {
        let mut rng = Purpose::Interpolant.rng(step, sample);
        t.extend(uniform(&mut rng, 1, EPS, 1.0 - EPS));
        x0.push(normal(&mut rng, &shape, opts));
    }
    (
        Tensor::from_slice(&t).to_kind(Kind::Float),
        Tensor::stack(&x0, 0),
    )
}

/// The interpolant's data-prediction MSE at `(t, x_0)`.
fn loss(flow: &LatentFlow, b: &Batch, t: &Tensor, x0: &Tensor) -> Tensor {
    let xt = Gvp::interpolate(x0, &b.x1, t);
    flow.forward(&xt, t, &b.cond.x_cond, &b.cond.mask)
        .mse_loss(&b.x1, tch::Reduction::Mean)
}

fn sample(flow: &LatentFlow, b: &Batch) -> Tensor {
    let samples: Vec<u64> = (0..BATCH as u64).collect();
    sample_latents(
        flow,
        &b.cond,
        &SamplerConfig::default(),
        NOISE_SEED,
        &samples,
    )
    .expect("valid sampler and conditioning")
}

/// The peer process, driven line by line: `flow N` / `sample N` → seconds per iteration.
struct Peer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Peer {
    fn start(out: &Path) -> (Self, Value) {
        let python = std::env::var_os("SGDD_BENCH_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace_root().join(".venv/bin/python"));
        let script = workspace_root().join("benches/peers/latent.py");
        let mut child = Command::new(&python)
            .arg(&script)
            .arg("--out")
            .arg(out)
            .arg("--serve")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("latent: could not start {}: {e}", python.display()));
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut peer = Self {
            child,
            stdin,
            stdout,
        };
        let hello = peer.read_line("its model check");
        (peer, hello)
    }

    fn read_line(&mut self, what: &str) -> Value {
        let mut line = String::new();
        let n = self
            .stdout
            .read_line(&mut line)
            .unwrap_or_else(|e| panic!("latent: reading the peer's {what}: {e}"));
        if n == 0 {
            let status = self.child.wait().ok();
            panic!(
                "latent: the peer exited ({status:?}) before sending {what}; see its message above"
            );
        }
        serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("latent: the peer's {what} is not JSON ({e}): {line:?}"))
    }

    /// Seconds per iteration of `iters` iterations of `task` on the peer's side.
    fn time(&mut self, task: &str, iters: usize) -> f64 {
        writeln!(self.stdin, "{task} {iters}")
            .and_then(|()| self.stdin.flush())
            .unwrap_or_else(|e| panic!("latent: writing to the peer: {e}"));
        self.read_line(task)["seconds_per_iter"]
            .as_f64()
            .unwrap_or_else(|| {
                panic!("latent: the peer's answer to `{task}` has no seconds_per_iter")
            })
    }

    fn quit(mut self) {
        let _ = writeln!(self.stdin, "quit");
        let _ = self.stdin.flush();
        let _ = self.child.wait();
    }
}

/// Seconds per iteration of `iters` runs of `f`.
fn time_ours(iters: usize, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..iters {
        f();
    }
    start.elapsed().as_secs_f64() / iters.max(1) as f64
}

fn min(xs: &[f64]) -> f64 {
    xs.iter().copied().fold(f64::INFINITY, f64::min)
}

fn main() {
    let bench_mode = std::env::args().any(|a| a == "--bench");
    let threads = pin_threads();
    tch::manual_seed(0);

    let cfg = config();
    let vs = nn::VarStore::new(Device::Cpu);
    let flow = cfg.build(vs.root()).expect("valid config");
    // The residual output layer starts at zero, which would make the first loss blind to every
    // other layer: give it small weights so that the loss check covers the whole model.
    tch::no_grad(|| {
        for name in ["out.weight", "out.bias"] {
            let v = &vs.variables()[name];
            v.shallow_clone().copy_(&(v.randn_like() * 0.02));
        }
    });
    let b = batch(cfg.latent_dim);
    let initial_loss = tch::no_grad(|| loss(&flow, &b, &b.t, &b.x0).double_value(&[]));
    let initial_sample = sample(&flow, &b);

    let adam = AdamConfig {
        lr: LR,
        weight_decay: WEIGHT_DECAY,
        ..AdamConfig::default()
    };
    let mut opt = Adam::new(&vs, adam);
    let mut step_no = 1u64;
    let mut step = || {
        let (t, x0) = draws(step_no);
        step_no += 1;
        let l = loss(&flow, &b, &t, &x0);
        opt.backward_step(&l).expect("gradients");
    };
    if !bench_mode {
        step();
        let _ = sample(&flow, &b);
        return; // `cargo test --benches`: the routines ran once; no report.
    }

    let dir = std::env::var_os("SGDD_BENCH_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(bench_output_dir);
    let fixtures = dir.join("latent");
    std::fs::create_dir_all(&fixtures).expect("create the bench output directory");
    vs.save(fixtures.join("weights.safetensors"))
        .expect("write the initial weights");
    let mask = b.cond.mask.shallow_clone();
    Tensor::write_safetensors(
        &[
            ("x1", &b.x1),
            ("x_cond", &b.cond.x_cond),
            ("mask", &mask),
            ("t", &b.t),
            ("x0", &b.x0),
            ("noise", &b.noise),
            ("sample", &initial_sample),
        ],
        fixtures.join("inputs.safetensors"),
    )
    .expect("write the inputs");
    let setting = json!({
        "config": cfg,
        "batch": BATCH,
        "frames": FRAMES,
        "given": GIVEN,
        "latents": LATENTS,
        "kind": "float32",
        "adamw": {"lr": LR, "weight_decay": WEIGHT_DECAY, "betas": [adam.beta1, adam.beta2], "eps": adam.eps},
        "interpolant_eps": EPS,
        "sampler": SamplerConfig::default(),
        "initial_loss": initial_loss,
        "threads": threads,
    });
    std::fs::write(
        fixtures.join("setting.json"),
        serde_json::to_vec_pretty(&setting).expect("serialise"),
    )
    .expect("write the setting");

    let (mut peer, hello) = Peer::start(&dir);
    println!(
        "latent: peer ready — first loss ours {initial_loss:.6} / PyTorch {:.6}, Euler sample max |Δ| {:.2e}",
        hello["first_loss"].as_f64().unwrap_or(f64::NAN),
        hello["sample_max_abs_diff"].as_f64().unwrap_or(f64::NAN)
    );

    // Warm-up, then iterations per round from our own time.
    for _ in 0..3 {
        step();
    }
    let _ = sample(&flow, &b);
    let _ = peer.time("flow", 3);
    let _ = peer.time("sample", 1);
    let per = |s: f64| ((ROUND_SECONDS / s).round() as usize).max(1);
    let flow_iters = per(time_ours(1, &mut step));
    let sample_iters = per(time_ours(1, || {
        let _ = sample(&flow, &b);
    }));

    let draw_iters = per(time_ours(1, || {
        let _ = draws(0);
    }));

    let (mut ours_flow, mut peer_flow, mut ours_sample, mut peer_sample) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut ours_draws, mut peer_draws) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let peer_first = round % 2 == 1;
        if peer_first {
            peer_flow.push(peer.time("flow", flow_iters));
        }
        ours_flow.push(time_ours(flow_iters, &mut step));
        if !peer_first {
            peer_flow.push(peer.time("flow", flow_iters));
        }
        if peer_first {
            peer_sample.push(peer.time("sample", sample_iters));
        }
        ours_sample.push(time_ours(sample_iters, || {
            let _ = sample(&flow, &b);
        }));
        if !peer_first {
            peer_sample.push(peer.time("sample", sample_iters));
        }
        // the step's own random draws, to tell them apart from the model's compute
        if peer_first {
            peer_draws.push(peer.time("draws", draw_iters));
        }
        ours_draws.push(time_ours(draw_iters, || {
            let _ = draws(round as u64);
        }));
        if !peer_first {
            peer_draws.push(peer.time("draws", draw_iters));
        }
        eprintln!(
            "latent: round {round}: step {:.2} / {:.2} ms, sampling {:.1} / {:.1} ms (PyTorch / ours)",
            peer_flow[round] * 1e3,
            ours_flow[round] * 1e3,
            peer_sample[round] * 1e3,
            ours_sample[round] * 1e3
        );
    }
    peer.quit();

    let ratio = |p: &[f64], o: &[f64]| median(p) / median(o);
    let flow_ratio = ratio(&peer_flow, &ours_flow);
    let sample_ratio = ratio(&peer_sample, &ours_sample);
    let rows = vec![
        RatioRow {
            what: "flow training step (draws, fwd, MSE, bwd, AdamW), median".into(),
            baseline_s: median(&peer_flow),
            ours_s: median(&ours_flow),
            ratio: flow_ratio,
            target: Some(1.0),
        },
        RatioRow {
            what: "flow training step, fastest sample".into(),
            baseline_s: min(&peer_flow),
            ours_s: min(&ours_flow),
            ratio: min(&peer_flow) / min(&ours_flow),
            target: None,
        },
        RatioRow {
            what: "the step's draws alone (t, x_0; ChaCha8 vs torch), median".into(),
            baseline_s: median(&peer_draws),
            ours_s: median(&ours_draws),
            ratio: median(&peer_draws) / median(&ours_draws),
            target: None,
        },
        RatioRow {
            what: "sampling (noise, Euler on 10 time points), median".into(),
            baseline_s: median(&peer_sample),
            ours_s: median(&ours_sample),
            ratio: sample_ratio,
            target: Some(1.0),
        },
        RatioRow {
            what: "sampling, fastest sample".into(),
            baseline_s: min(&peer_sample),
            ours_s: min(&ours_sample),
            ratio: min(&peer_sample) / min(&ours_sample),
            target: None,
        },
    ];
    let report = json!({
        "flow_step_speedup_vs_pytorch": flow_ratio,
        "flow_step_speedup_vs_pytorch_best_sample": min(&peer_flow) / min(&ours_flow),
        "sampling_speedup_vs_pytorch": sample_ratio,
        "sampling_speedup_vs_pytorch_best_sample": min(&peer_sample) / min(&ours_sample),
        "rows": &rows,
        "context": {
            "setting": setting,
            "rounds": ROUNDS,
            "order": "alternating: ours first in even rounds, the peer first in odd ones",
            "iterations_per_round": {"flow_step": flow_iters, "sampling": sample_iters, "draws": draw_iters},
            "initial_loss": {"rust": initial_loss, "pytorch": hello["first_loss"]},
            "sample_max_abs_diff": hello["sample_max_abs_diff"],
            "rust_flow_samples_s": ours_flow,
            "pytorch_flow_samples_s": peer_flow,
            "rust_sampling_samples_s": ours_sample,
            "pytorch_sampling_samples_s": peer_sample,
            "rust_draws_samples_s": ours_draws,
            "pytorch_draws_samples_s": peer_draws,
            "thread_context": thread_context(threads),
            "peer": hello["context"],
            "machine": machine(),
            "fixtures": fixtures,
            "command": "cargo xtask bench latent",
        },
    });
    let path = dir.join("latent.json");
    std::fs::write(
        &path,
        serde_json::to_vec_pretty(&report).expect("serialise"),
    )
    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    print!("{}", render_table(&rows));
    println!("latent: wrote {}", path.display());
}
