//! Data-parallel benchmark (issue 16 / SPEC §8): throughput of 2 Gloo workers against one
//! process on the same global batch, and the all-reduce bandwidth of the c10d binding.
//!
//! `cargo xtask bench ddp` runs this and writes `$SGDD_BENCH_OUT/ddp.json`:
//! - `ddp2_throughput_ratio`: training samples per second of 2 worker processes × 1 thread
//!   (each on half of every global batch, gradients averaged by [`DataParallel::reduce_step`],
//!   the trainer's own code path) over 1 process × 1 thread on the whole global batch; the
//!   model is the EGNO decoder of the `nets` bench (hidden 64, 5 layers, T = 8) on
//!   aspirin-sized graphs (21 atoms, 8 neighbours), the optimiser the trainer's Adam;
//! - `all_reduce`: seconds per call and bandwidth (bytes of the tensor / seconds) of a float32
//!   sum over 2 ranks for a few sizes.
//!
//! Each configuration runs in fresh processes, one after the other; the load average of the
//! machine before and after is recorded, since a busy machine lowers the ratio. Knobs:
//! `SGDD_BENCH_DDP_STEPS` (timed steps, default 20), `SGDD_BENCH_DDP_BATCH` (global batch,
//! default 32 graphs).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use graph_nets::{EgnoConfig, GraphBatch, InitialState};
use sgdd_benches::bench_output_dir;
use sgdd_train::{Adam, AdamConfig, DataParallel, StepTerms, shard};
use tch::{Device, Kind, Tensor, nn};
use torch_dist::{DistEnv, LocalLaunch, ProcessGroup, ReduceOp};

const ROLE: &str = "SGDD_BENCH_DDP_ROLE";
const NODES: i64 = 21;
const KNN: i64 = 8;
const WARMUP: usize = 3;
const SIZES: [i64; 4] = [1 << 10, 1 << 16, 1 << 20, 1 << 22];

fn knob(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// EGNO's MD17 setting (the decoder's defaults), with distance and bond-flag edge attributes.
fn config() -> EgnoConfig {
    EgnoConfig {
        edge_dim: 2,
        ..EgnoConfig::default()
    }
}

/// One graph's inputs (seeded by its index, the same on every rank).
struct Sample {
    x0: Tensor,
    v0: Tensor,
    h0: Tensor,
    target: Tensor,
}

fn sample(i: usize, horizon: i64) -> Sample {
    tch::manual_seed(1000 + i as i64);
    let opts = (Kind::Float, Device::Cpu);
    let x0 = Tensor::randn([NODES, 3], opts) * 1.5;
    let v0 = Tensor::randn([NODES, 3], opts);
    let h0 = Tensor::randint(4, [NODES, 1], (Kind::Int64, Device::Cpu)).to_kind(Kind::Float);
    let steps = Tensor::arange_start(1, horizon + 1, opts).view([-1, 1, 1]);
    let target = x0.unsqueeze(0) + steps * v0.unsqueeze(0) * 0.05;
    Sample { x0, v0, h0, target }
}

/// Samples per second of `steps` timed training steps on this rank's share of each global
/// batch (all of it without a group).
fn train(group: Option<DataParallel>, steps: usize, global: usize) -> f64 {
    tch::set_num_threads(1);
    let cfg = config();
    let samples: Vec<Sample> = (0..global).map(|i| sample(i, cfg.horizon)).collect();
    tch::manual_seed(0);
    let vs = nn::VarStore::new(Device::Cpu);
    let egno = cfg.build(vs.root()).expect("valid config");
    let mut opt = Adam::new(&vs, AdamConfig::default());
    let idx: Vec<usize> = (0..global).collect();
    let (rank, world) = group
        .as_ref()
        .map_or((0, 1), |g| (g.rank(), g.world_size()));
    let mine: Vec<&Sample> = shard(&idx, rank, world)
        .iter()
        .map(|&i| &samples[i])
        .collect();
    let cat = |f: &dyn Fn(&Sample) -> Tensor, dim| {
        Tensor::cat(&mine.iter().map(|s| f(s)).collect::<Vec<_>>(), dim)
    };
    let x0 = cat(&|s| s.x0.shallow_clone(), 0);
    let v0 = cat(&|s| s.v0.shallow_clone(), 0);
    let h0 = cat(&|s| s.h0.shallow_clone(), 0);
    let target = cat(&|s| s.target.shallow_clone(), 1);
    let graph = GraphBatch::f_knn(&x0, &vec![NODES; mine.len()], KNN).expect("finite positions");
    let dist = graph.edge_sq_distances(&x0).sqrt();
    let edge_attr = Tensor::cat(&[&dist, &dist.zeros_like()], 1);
    let state = InitialState {
        x: &x0,
        v: Some(&v0),
        h: &h0,
        graph: &graph,
        edge_attr: Some(&edge_attr),
    };
    let mut started = Instant::now();
    for step in 0..WARMUP + steps {
        if step == WARMUP {
            if let Some(g) = &group {
                g.barrier().expect("barrier");
            }
            started = Instant::now();
        }
        let loss = (egno.forward(&state, None).x - &target)
            .square()
            .mean(Kind::Float);
        let grads = opt.gradients(&loss).expect("gradients");
        let grads = match &group {
            None => grads,
            Some(g) => {
                let n = mine.len() as f64;
                let terms = StepTerms {
                    total: loss.double_value(&[]) * n,
                    ..StepTerms::default()
                };
                g.reduce_step(grads, opt.params(), terms, mine.len(), global)
                    .expect("all-reduce")
                    .0
            }
        };
        opt.step_with(grads);
    }
    if let Some(g) = &group {
        g.barrier().expect("barrier");
    }
    (global * steps) as f64 / started.elapsed().as_secs_f64()
}

/// Seconds per float32 sum of each size in [`SIZES`].
fn all_reduce(group: &ProcessGroup) -> Vec<f64> {
    tch::set_num_threads(1);
    SIZES
        .iter()
        .map(|&n| {
            let mut t = [Tensor::ones([n], (Kind::Float, Device::Cpu))];
            let reps = (((1 << 24) / n) as usize).clamp(5, 200);
            group.all_reduce(&mut t, ReduceOp::Sum).expect("warm-up");
            group.barrier().expect("barrier");
            let started = Instant::now();
            for _ in 0..reps {
                group.all_reduce(&mut t, ReduceOp::Sum).expect("all-reduce");
            }
            started.elapsed().as_secs_f64() / reps as f64
        })
        .collect()
}

fn worker(role: &str, out: &Path) {
    let steps = knob("SGDD_BENCH_DDP_STEPS", 20);
    let global = knob("SGDD_BENCH_DDP_BATCH", 32);
    let group = DistEnv::from_env()
        .expect("torchrun variables")
        .map(|env| ProcessGroup::gloo(&env, Duration::from_secs(300)).expect("rendezvous"));
    let rank = group.as_ref().map_or(0, ProcessGroup::rank);
    let value = match role {
        "train" => serde_json::json!(train(group.map(DataParallel::new), steps, global)),
        "all_reduce" => serde_json::json!(all_reduce(group.as_ref().expect("a group"))),
        other => panic!("unknown role {other}"),
    };
    if rank == 0 {
        std::fs::write(out, value.to_string()).expect("write the worker's figure");
    }
}

fn run(role: &str, world: usize, out: &Path, [steps, batch]: [usize; 2]) -> serde_json::Value {
    let exe = std::env::current_exe().expect("the bench binary");
    let make = |_| {
        let mut c = Command::new(&exe);
        c.env(ROLE, role)
            .env("SGDD_BENCH_DDP_OUT", out)
            .env("OMP_NUM_THREADS", "1")
            .env("SGDD_BENCH_DDP_STEPS", steps.to_string())
            .env("SGDD_BENCH_DDP_BATCH", batch.to_string())
            .stdout(Stdio::null());
        c
    };
    if world == 1 {
        let status = make(0).status().expect("start the worker");
        assert!(status.success(), "{role} × 1 failed: {status}");
    } else {
        LocalLaunch::spawn(world, make)
            .expect("launch")
            .wait(Duration::from_secs(1800), Duration::from_secs(30))
            .expect("workers")
            .success()
            .expect("workers succeed");
    }
    serde_json::from_str(&std::fs::read_to_string(out).expect("the worker's figure"))
        .expect("a JSON figure")
}

fn load_average() -> Vec<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| {
            s.split_whitespace()
                .take(3)
                .filter_map(|v| v.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn main() {
    if let Ok(role) = std::env::var(ROLE) {
        let out = std::env::var_os("SGDD_BENCH_DDP_OUT").expect("SGDD_BENCH_DDP_OUT");
        worker(&role, Path::new(&out));
        return;
    }
    let bench_mode = std::env::args().any(|a| a == "--bench");
    // `cargo test --benches`: one small step of each role, no report
    let (steps, batch) = if bench_mode {
        (
            knob("SGDD_BENCH_DDP_STEPS", 20),
            knob("SGDD_BENCH_DDP_BATCH", 32),
        )
    } else {
        (1, 4)
    };
    let knobs = [steps, batch];
    let dir = bench_output_dir();
    std::fs::create_dir_all(&dir).expect("create the bench output directory");
    let scratch = dir.join("ddp-worker.json");
    let load_before = load_average();
    let single = run("train", 1, &scratch, knobs)
        .as_f64()
        .expect("samples/s");
    let two = run("train", 2, &scratch, knobs)
        .as_f64()
        .expect("samples/s");
    let seconds: Vec<f64> =
        serde_json::from_value(run("all_reduce", 2, &scratch, knobs)).expect("times");
    let load_after = load_average();
    let _ = std::fs::remove_file(&scratch);
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let all_reduce: Vec<serde_json::Value> = SIZES
        .iter()
        .zip(&seconds)
        .map(|(&n, &s)| {
            serde_json::json!({
                "floats": n,
                "bytes": n * 4,
                "seconds_per_call": s,
                "gigabytes_per_second": (n * 4) as f64 / s / 1e9,
            })
        })
        .collect();
    let report = serde_json::json!({
        "ddp2_throughput_ratio": two / single,
        "samples_per_second_1x1": single,
        "samples_per_second_2x1": two,
        "global_batch_graphs": batch,
        "timed_steps": steps,
        "threads_per_process": 1,
        "backend": "gloo (c10d of the libtorch wheel), 127.0.0.1",
        "model": "EGNO decoder, hidden 64, 5 layers, T = 8, 21-node graphs, 8 neighbours",
        "all_reduce": all_reduce,
        "cores": cores,
        "load_average_before": load_before,
        "load_average_after": load_after,
        "note": "load averages are the machine's 1/5/15-minute figures; on a machine shared \
                 with other jobs (load above its core count) the 2-process ratio is lowered \
                 by the cores the others take",
    });
    println!(
        "{}",
        serde_json::to_string_pretty(&report).expect("serialise")
    );
    if bench_mode {
        let path = dir.join("ddp.json");
        std::fs::write(
            &path,
            serde_json::to_vec_pretty(&report).expect("serialise"),
        )
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        println!("ddp: wrote {}", path.display());
    }
}
