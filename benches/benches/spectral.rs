//! `spectral-core` benchmarks (issue 3 / SPEC §6), each a ratio against a baseline measured in
//! the same run:
//!
//! * **basis**: factored joint-basis construction (`eigh(L_s)` + `eigh(L_t)` + selection,
//!   K = 128) vs eigen-decomposing the joint `NT×NT` Laplacian, on the ADK backbone's 8 Å
//!   contact graph (N = 855), T = 4 (criterion) and T = 8, 10 (one timed run each of the joint
//!   route: it takes minutes there);
//! * **projection**: factored `B_Kᵀ z` vs the materialised GEMM, N = 855, T ∈ {4, 10, 20},
//!   K ∈ {64, 128, 512}, d = 64, f32, with the memory each holds;
//! * **dense_eigh**: faer on the ADK Laplacian and on a 4,000-node sparse graph (the peer times
//!   numpy `eigh` on the same matrices), and the K = 128 smallest pairs of the ADK Laplacian
//!   (`self_adjoint_eigen_leading`, what the basis calls; the peer times scipy's
//!   `eigh(subset_by_index=…)`, LAPACK `syevr`);
//! * **partial**: the 32 smallest eigenpairs of the 4,000-node graph (vs dense here, vs scipy
//!   `eigsh` shift-invert in the peer).
//!
//! `cargo xtask bench spectral` runs this, which writes `$SGDD_BENCH_OUT/spectral-rust.json`
//! (every median time, the Rust-side ratios, the memory figures, the machine) and the exact
//! Laplacians under `$SGDD_BENCH_OUT/spectral/`; then the peer `benches/peers/spectral.py`
//! times numpy/scipy on those matrices and writes `spectral.json` with all the ratios and prints
//! the table. The runner runs both sides once per thread setting with the same thread count
//! ([`pin_threads`]). Knobs: `SGDD_ADK_PDB` (path of `adk_open.pdb`; by default the one `cargo
//! xtask data fetch adk` extracts into `datasets/cache/`, else a synthetic chain of the same size,
//! flagged in the report and on screen), `SGDD_BENCH_SKIP_GROWTH=1` (skip the one-shot T = 8, 10
//! joint runs, ≈ 5 minutes on two cores).

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, SamplingMode};
use sgdd_benches::{
    RatioRow, adk_backbone, bench_output_dir, geometric_graph, machine, median, pin_threads,
    render_table, thread_context, write_laplacian,
};
use spectral_core::{
    Graph, JointBasis, Laplacian, LaplacianKind, PartialEigenConfig, SpatialSolver,
    joint_laplacian_dense, self_adjoint_eigen, self_adjoint_eigen_leading,
};

/// Per-iteration seconds of every sample criterion took, by benchmark id.
static TIMES: Mutex<BTreeMap<String, Vec<f64>>> = Mutex::new(BTreeMap::new());

const K_BASIS: usize = 128;
const D: usize = 64;
const PARTIAL_K: usize = 32;

/// A criterion group that also records, per benchmark, the per-iteration time of every sample
/// (for the ratio report; criterion's own statistics are printed as usual).
struct Group<'a> {
    g: BenchmarkGroup<'a, WallTime>,
    name: String,
}

impl<'a> Group<'a> {
    fn new(c: &'a mut Criterion, name: &str) -> Self {
        Self {
            g: c.benchmark_group(name),
            name: name.into(),
        }
    }

    fn finish(self) {
        self.g.finish();
    }

    fn timed<R>(&mut self, key: &str, mut f: impl FnMut() -> R) {
        let full = format!("{}/{key}", self.name);
        self.g.bench_function(key, |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(f());
                }
                let el = start.elapsed();
                TIMES
                    .lock()
                    .unwrap()
                    .entry(full.clone())
                    .or_default()
                    .push(el.as_secs_f64() / iters.max(1) as f64);
                el
            })
        });
    }
}

fn slow(g: &mut Group<'_>) {
    g.g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(5));
}

fn time_of(key: &str) -> Option<f64> {
    TIMES.lock().unwrap().get(key).map(|v| median(v))
}

struct Fixtures {
    adk: Graph,
    adk_source: String,
    adk_synthetic: bool,
    big: Graph,
}

fn fixtures(dir: &Path) -> Fixtures {
    let backbone = adk_backbone();
    if backbone.synthetic {
        eprintln!("\nWARNING (spectral bench): {}\n", backbone.source);
    }
    let adk = Graph::radius(&backbone.positions, 8.0).expect("finite coordinates");
    let big = geometric_graph(4000, 0.1, 7);
    write_laplacian(
        dir,
        "adk_ls",
        &Laplacian::normalized(&adk),
        &backbone.source,
    );
    write_laplacian(
        dir,
        "geo4000",
        &Laplacian::normalized(&big),
        "4,000 uniform points in the unit cube, cutoff 0.1 (seed 7)",
    );
    for t in [4, 8, 10] {
        write_laplacian(
            dir,
            &format!("path_t{t}"),
            &Laplacian::temporal_path(t, LaplacianKind::Normalized),
            "temporal path graph",
        );
    }
    Fixtures {
        adk,
        adk_source: backbone.source,
        adk_synthetic: backbone.synthetic,
        big,
    }
}

fn bench_basis(c: &mut Criterion, fx: &Fixtures) {
    let ls = Laplacian::normalized(&fx.adk);
    let mut g = Group::new(c, "basis");
    slow(&mut g);
    for t in [4usize, 8, 10] {
        let lt = Laplacian::temporal_path(t, LaplacianKind::Normalized);
        g.timed(&format!("factored_T{t}"), || {
            JointBasis::from_laplacians(&ls, &lt, K_BASIS, SpatialSolver::Dense).expect("basis")
        });
    }
    let lt = Laplacian::temporal_path(4, LaplacianKind::Normalized);
    g.timed("joint_eigh_T4", || joint_eigh(&lt, &ls));
    g.finish();
}

/// The naive route: form `L_t ⊗ I + I ⊗ L_s` densely and eigen-decompose it.
fn joint_eigh(lt: &Laplacian, ls: &Laplacian) -> spectral_core::EigenPairs {
    let l = joint_laplacian_dense(lt, ls);
    self_adjoint_eigen(l.as_ref(), faer::get_global_parallelism()).expect("joint eigh")
}

fn bench_projection(c: &mut Criterion, fx: &Fixtures) -> BTreeMap<String, serde_json::Value> {
    let ls = Laplacian::normalized(&fx.adk);
    let spatial = ls.eigen().expect("eigh");
    let mut memory = BTreeMap::new();
    let mut g = Group::new(c, "projection");
    g.g.sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    for t in [4usize, 10, 20] {
        let temporal = Laplacian::temporal_path(t, LaplacianKind::Normalized)
            .eigen()
            .expect("eigh");
        for k in [64usize, 128, 512] {
            let basis = JointBasis::new(&spatial, &temporal, k).expect("basis");
            let reference = basis.materialise::<f32>();
            let n = basis.n_nodes();
            let z: Vec<f32> = (0..t * n * D).map(|i| ((i as f32) * 0.618).sin()).collect();
            g.timed(&format!("factored_T{t}_K{k}"), || basis.project(&z, 1, D));
            g.timed(&format!("materialised_T{t}_K{k}"), || {
                reference.project(&z, 1, D)
            });
            memory.insert(
                format!("T{t}_K{k}"),
                serde_json::json!({
                    "i_max": basis.n_spatial_modes(),
                    "j_max": basis.n_temporal_modes(),
                    "factored_bytes_f32": basis.factored_bytes::<f32>(),
                    "materialised_bytes_f32": basis.materialised_bytes::<f32>(),
                }),
            );
        }
    }
    g.finish();
    memory
}

fn bench_eigen(c: &mut Criterion, fx: &Fixtures) {
    let adk = Laplacian::normalized(&fx.adk).to_dense();
    let big = Laplacian::normalized(&fx.big);
    let big_dense = big.to_dense();
    let mut g = Group::new(c, "dense_eigh");
    slow(&mut g);
    g.timed("adk855", || {
        self_adjoint_eigen(adk.as_ref(), faer::get_global_parallelism())
    });
    g.timed("geo4000", || {
        self_adjoint_eigen(big_dense.as_ref(), faer::get_global_parallelism())
    });
    // What the basis calls for the spatial modes: the K smallest pairs only.
    g.timed(&format!("adk855_leading{K_BASIS}"), || {
        self_adjoint_eigen_leading(adk.as_ref(), K_BASIS, faer::get_global_parallelism())
    });
    g.finish();
    let mut g = Group::new(c, "partial");
    slow(&mut g);
    let cfg = PartialEigenConfig::default();
    g.timed("geo4000_k32", || {
        big.partial_eigen(PARTIAL_K, &cfg).expect("converges")
    });
    g.finish();
}

fn main() {
    let threads = pin_threads();
    let bench_mode = std::env::args().any(|a| a == "--bench");
    let dir = bench_output_dir().join("spectral");
    let fx = fixtures(&dir);
    let mut c = Criterion::default().configure_from_args();
    bench_basis(&mut c, &fx);
    let memory = bench_projection(&mut c, &fx);
    bench_eigen(&mut c, &fx);
    c.final_summary();
    if !bench_mode {
        return; // `cargo test --benches`: criterion ran each routine once; no report.
    }

    // One timed run each of the joint route at T = 8, 10 (minutes on two cores).
    let mut growth = BTreeMap::new();
    let ls = Laplacian::normalized(&fx.adk);
    for t in [4usize, 8, 10] {
        let factored = time_of(&format!("basis/factored_T{t}"));
        let joint = if t == 4 {
            time_of("basis/joint_eigh_T4")
        } else if std::env::var_os("SGDD_BENCH_SKIP_GROWTH").is_none() && factored.is_some() {
            let lt = Laplacian::temporal_path(t, LaplacianKind::Normalized);
            eprintln!(
                "one timed run of the joint {}² eigen-decomposition (T = {t}) …",
                fx.adk.n_nodes() * t
            );
            let start = Instant::now();
            black_box(joint_eigh(&lt, &ls));
            Some(start.elapsed().as_secs_f64())
        } else {
            None
        };
        growth.insert(
            format!("T{t}"),
            serde_json::json!({
                "factored_s": factored,
                "joint_eigh_s": joint,
                "speedup": joint.zip(factored).map(|(j, f)| j / f),
                "joint_measured": if t == 4 { "criterion median" } else { "one run" },
            }),
        );
    }

    let mut rows = Vec::new();
    let mut row = |what: &str,
                   baseline: Option<f64>,
                   ours: Option<f64>,
                   target: Option<f64>|
     -> Option<f64> {
        let (b, o) = (baseline?, ours?);
        rows.push(RatioRow {
            what: what.into(),
            baseline_s: b,
            ours_s: o,
            ratio: b / o,
            target,
        });
        Some(b / o)
    };
    let mut headline: BTreeMap<&str, Option<f64>> = BTreeMap::new();
    headline.insert(
        "basis_vs_joint_eigh_speedup",
        row(
            "basis: joint NT×NT eigh / factored (N=855, T=4, K=128)",
            time_of("basis/joint_eigh_T4"),
            time_of("basis/factored_T4"),
            Some(50.0),
        ),
    );
    for t in [8usize, 10] {
        let g = &growth[&format!("T{t}")];
        row(
            &format!("basis: joint eigh (one run) / factored (T={t})"),
            g["joint_eigh_s"].as_f64(),
            g["factored_s"].as_f64(),
            None,
        );
    }
    let mut proj_min: Option<f64> = None;
    for t in [4usize, 10, 20] {
        for k in [64usize, 128, 512] {
            let r = row(
                &format!("projection f32: materialised / factored (T={t}, K={k}, d=64)"),
                time_of(&format!("projection/materialised_T{t}_K{k}")),
                time_of(&format!("projection/factored_T{t}_K{k}")),
                Some(1.0),
            );
            if let Some(r) = r {
                proj_min = Some(proj_min.map_or(r, |m: f64| m.min(r)));
            }
        }
    }
    headline.insert("projection_speedup_min", proj_min);
    headline.insert(
        "partial_vs_dense_speedup",
        row(
            "partial (k=32) vs dense eigh, N=4000: dense / partial",
            time_of("dense_eigh/geo4000"),
            time_of("partial/geo4000_k32"),
            Some(5.0),
        ),
    );

    let medians: BTreeMap<String, f64> = TIMES
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), median(v)))
        .collect();
    let out = serde_json::json!({
        "rust_median_s": medians,
        "headline": headline,
        "rows": rows,
        "basis_growth": growth,
        "projection_memory": memory,
        "graphs_dir": dir,
        "context": {
            "machine": machine(),
            "threads": thread_context(threads),
            "adk_graph": {
                "source": fx.adk_source,
                "synthetic_fallback": fx.adk_synthetic,
                "nodes": fx.adk.n_nodes(),
                "edges_8A": fx.adk.n_edges(),
            },
            "geo4000_edges": fx.big.n_edges(),
            "command": "cargo xtask bench spectral",
        },
    });
    let path = bench_output_dir().join("spectral-rust.json");
    std::fs::create_dir_all(bench_output_dir()).expect("create the bench output dir");
    std::fs::write(&path, serde_json::to_string_pretty(&out).expect("json"))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    println!(
        "\nspectral-core, Rust-side ratios (baseline / ours, this run) on {}",
        machine()
    );
    print!("{}", render_table(&rows));
    println!(
        "written to {} (the peer adds the numpy/scipy ratios)",
        path.display()
    );
    if fx.adk_synthetic {
        println!(
            "WARNING: the ADK rows ran on a synthetic chain: {}",
            fx.adk_source
        );
    }
}
