//! `graph-nets` benchmark (issue 4 / SPEC §6): one full training step (forward, MSE loss,
//! backward, Adam) of the EGNO decoder in tch, against the same model in eager PyTorch.
//!
//! `cargo xtask bench nets` runs this (criterion), which writes `$SGDD_BENCH_OUT/nets-rust.json`
//! (the configuration, thread count, per-step times and the first-step loss) and, under
//! `$SGDD_BENCH_OUT/nets/`, the exact inputs and initial weights as safetensors; then the peer
//! `benches/peers/nets.py` loads both into the PyTorch reference model
//! (`crates/graph-nets/tests/golden/reference.py`, the one the golden tests check the crate
//! against), checks it computes the same first loss, times the same step on the same number of
//! CPU threads, and writes `nets.json` with `egno_step_speedup_vs_port` = PyTorch time / ours
//! (and, with `SGDD_EGNO_OFFICIAL` naming a checkout of MinkaiXu/EGNO, the authors' class timed
//! on the same inputs and mapped weights: `egno_step_speedup_vs_official`).
//!
//! Setting: EGNO's MD17 configuration (hidden 64, 5 layers, T = 8, 2 Fourier modes, time
//! embedding 32, velocities, temporal convolution on), a batch of 16 aspirin-sized systems
//! (21 atoms) on 8-nearest-neighbour graphs, float32, CPU. Threads: `SGDD_BENCH_THREADS`
//! (default: all cores), which `cargo xtask bench nets --threads 1,all` sets for both sides.
//!
//! The same for the GF-NODE decoder (`gfnode_step_speedup_vs_pytorch`), against the authors' own
//! `FourierMD` class (FrancoTSolis/GF-NODE-code, imported by the peer from the checkout named by
//! `GFNODE_CODE`; skipped when it is not set): their MD17 configuration (hidden 64, 5 + 5 EGNN
//! layers, 2 graph Fourier modes, attention between modes, time concatenated, time embedding 32)
//! on the same batch, targets every 375 of Δ = 3000 frames, except the integrator: fixed-grid
//! RK4 (3/8 rule) on the target times instead of Dopri5, so that both sides take exactly the same
//! steps and compute the same first loss (an adaptive solver that clips steps to the output
//! times, as ours does, and one that interpolates, as torchdiffeq does, take different steps).

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode};
use graph_nets::ode::{OdeOptions, Solver};
use graph_nets::{EgnoConfig, GfNodeConfig, GraphBatch, InitialState};
use sgdd_benches::{bench_output_dir, machine, median, pin_threads, thread_context};
use tch::{Device, Kind, Tensor, nn, nn::OptimizerConfig};

const GRAPHS: i64 = 16;
const NODES: i64 = 21;
const KNN: i64 = 8;
const LR: f64 = 5e-4;

/// Per-iteration seconds of every criterion sample.
static TIMES: Mutex<Vec<f64>> = Mutex::new(Vec::new());
/// The same for the GF-NODE step.
static GFNODE_TIMES: Mutex<Vec<f64>> = Mutex::new(Vec::new());
/// GF-NODE's first-step loss and configuration.
static GFNODE_INITIAL: Mutex<Option<(f64, GfNodeConfig)>> = Mutex::new(None);
/// GF-NODE's frames per target interval and total (the authors' `delta_frame`).
const GFNODE_STRIDE: f64 = 375.0;

fn gfnode_config() -> GfNodeConfig {
    GfNodeConfig {
        node_in: 2,
        edge_dim: 2,
        hidden: 64,
        layers: 5,
        num_modes: 2,
        time_emb_dim: 32,
        horizon: 8,
        time_scale: 8.0 * GFNODE_STRIDE,
        ode: OdeOptions {
            solver: Solver::Rk4ThreeEighths,
            ..OdeOptions::default()
        },
        ..GfNodeConfig::default()
    }
}

fn config() -> EgnoConfig {
    EgnoConfig {
        node_in: 1,
        edge_dim: 2,
        hidden: 64,
        layers: 5,
        horizon: 8,
        num_modes: 2,
        time_emb_dim: 32,
        time_conv: true,
        with_velocity: true,
        cond_dim: 0,
        ..EgnoConfig::default()
    }
}

struct Inputs {
    graph: GraphBatch,
    x0: Tensor,
    v0: Tensor,
    h0: Tensor,
    edge_attr: Tensor,
    target: Tensor,
}

fn inputs(cfg: &EgnoConfig) -> Inputs {
    let opts = (Kind::Float, Device::Cpu);
    let n = GRAPHS * NODES;
    let x0 = Tensor::randn([n, 3], opts) * 1.5;
    let v0 = Tensor::randn([n, 3], opts);
    let sizes = vec![NODES; GRAPHS as usize];
    let graph = GraphBatch::f_knn(&x0, &sizes, KNN).expect("finite positions");
    // Atom-type-like node scalar; edge attributes: initial distance and a bond flag.
    let h0 = Tensor::randint(4, [n, 1], (Kind::Int64, Device::Cpu)).to_kind(Kind::Float);
    let dist = graph.edge_sq_distances(&x0).sqrt();
    let bond =
        Tensor::randint(2, [graph.num_edges(), 1], (Kind::Int64, Device::Cpu)).to_kind(Kind::Float);
    let edge_attr = Tensor::cat(&[dist, bond], 1);
    let steps = Tensor::arange_start(1, cfg.horizon + 1, opts).view([-1, 1, 1]);
    let target = x0.unsqueeze(0)
        + steps * v0.unsqueeze(0) * 0.05
        + Tensor::randn([cfg.horizon, n, 3], opts) * 0.01;
    Inputs {
        graph,
        x0,
        v0,
        h0,
        edge_attr,
        target,
    }
}

fn out_dir() -> PathBuf {
    std::env::var_os("SGDD_BENCH_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(bench_output_dir)
}

fn main() {
    let bench_mode = std::env::args().any(|a| a == "--bench");
    let threads = pin_threads();
    tch::manual_seed(0);

    let cfg = config();
    let data = inputs(&cfg);
    let vs = nn::VarStore::new(Device::Cpu);
    let egno = cfg.build(vs.root()).expect("valid config");
    let dir = out_dir();
    let fixtures = dir.join("nets");
    if bench_mode {
        std::fs::create_dir_all(&fixtures).expect("create the bench output directory");
        vs.save(fixtures.join("weights.safetensors"))
            .expect("write the initial weights");
        let ei = data.graph.edge_index();
        let named = [
            ("x0", &data.x0),
            ("v0", &data.v0),
            ("h0", &data.h0),
            ("edge_attr", &data.edge_attr),
            ("target", &data.target),
            ("edge_index", &ei),
        ];
        Tensor::write_safetensors(&named, fixtures.join("inputs.safetensors"))
            .expect("write the inputs");
    }

    let state = InitialState {
        x: &data.x0,
        v: Some(&data.v0),
        h: &data.h0,
        graph: &data.graph,
        edge_attr: Some(&data.edge_attr),
    };
    let loss = || {
        (egno.forward(&state, None).x - &data.target)
            .square()
            .mean(Kind::Float)
    };
    let initial_loss = tch::no_grad(|| loss().double_value(&[]));
    let mut opt = nn::Adam::default().build(&vs, LR).expect("optimizer");

    let mut c = Criterion::default().configure_from_args();
    {
        let mut g = c.benchmark_group("nets");
        g.sample_size(10)
            .sampling_mode(SamplingMode::Flat)
            .warm_up_time(Duration::from_secs(2))
            .measurement_time(Duration::from_secs(10));
        g.bench_function("egno_train_step", |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    let l = loss();
                    opt.backward_step(&l);
                    black_box(&l);
                }
                let el = start.elapsed();
                TIMES
                    .lock()
                    .unwrap()
                    .push(el.as_secs_f64() / iters.max(1) as f64);
                el
            })
        });

        // GF-NODE: its own weights and node features ([|v_0|, atom type / 3], as the authors').
        let gcfg = gfnode_config();
        let gvs = nn::VarStore::new(Device::Cpu);
        let gfnode = gcfg.build(gvs.root()).expect("valid config");
        let h2 = Tensor::cat(
            &[
                data.v0.square().sum_dim_intlist(1, true, None).sqrt(),
                &data.h0 / 3.0,
            ],
            1,
        );
        let gstate = InitialState { h: &h2, ..state };
        let gloss = || {
            (gfnode.forward(&gstate, None, None).x - &data.target)
                .square()
                .mean(Kind::Float)
        };
        let ginitial = tch::no_grad(|| gloss().double_value(&[]));
        if bench_mode {
            let basis = gfnode
                .f_graph_basis(&data.graph)
                .expect("basis")
                .to_kind(Kind::Float);
            gvs.save(fixtures.join("gfnode-weights.safetensors"))
                .expect("write the initial weights");
            Tensor::write_safetensors(
                &[("h0", &h2), ("basis", &basis)],
                fixtures.join("gfnode-inputs.safetensors"),
            )
            .expect("write the inputs");
        }
        let mut gopt = nn::Adam::default().build(&gvs, LR).expect("optimizer");
        g.bench_function("gfnode_train_step", |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    let l = gloss();
                    gopt.backward_step(&l);
                    black_box(&l);
                }
                let el = start.elapsed();
                GFNODE_TIMES
                    .lock()
                    .unwrap()
                    .push(el.as_secs_f64() / iters.max(1) as f64);
                el
            })
        });
        g.finish();
        GFNODE_INITIAL.lock().unwrap().replace((ginitial, gcfg));
    }
    c.final_summary();
    if !bench_mode {
        return; // `cargo test --benches`: the routine ran once; no report.
    }

    let samples = TIMES.lock().unwrap().clone();
    let gsamples = GFNODE_TIMES.lock().unwrap().clone();
    let (ginitial, gcfg) = GFNODE_INITIAL
        .lock()
        .unwrap()
        .clone()
        .expect("the GF-NODE bench ran");
    let mut context = BTreeMap::new();
    context.insert("graphs", serde_json::json!(GRAPHS));
    context.insert("nodes_per_graph", serde_json::json!(NODES));
    context.insert("knn", serde_json::json!(KNN));
    context.insert("num_edges", serde_json::json!(data.graph.num_edges()));
    let report = serde_json::json!({
        "egno_train_step_s": median(&samples),
        "egno_train_step_min_s": samples.iter().copied().fold(f64::INFINITY, f64::min),
        "samples_s": samples,
        "threads": threads,
        "thread_context": thread_context(threads),
        "machine": machine(),
        "lr": LR,
        "initial_loss": initial_loss,
        "config": cfg,
        "batch": context,
        "fixtures": fixtures,
        "gfnode": {
            "train_step_s": median(&gsamples),
            "train_step_min_s": gsamples.iter().copied().fold(f64::INFINITY, f64::min),
            "samples_s": gsamples,
            "initial_loss": ginitial,
            "config": gcfg,
            "target_stride": GFNODE_STRIDE,
        },
    });
    let path = dir.join("nets-rust.json");
    std::fs::write(
        &path,
        serde_json::to_vec_pretty(&report).expect("serialise"),
    )
    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    println!("nets: wrote {}", path.display());
}
