//! Shared fixtures: a two-graph batch, seeded random tensors, random rigid motions, comparisons,
//! and the lock on libtorch's global generator.
//!
//! # Randomness and parallel tests
//! Cargo runs the tests of this binary on parallel threads of one process, and libtorch has one
//! global CPU generator per process: every layer's random initialisation (`build`) and every
//! `Tensor::randn` draws from it, so a test that calls `tch::manual_seed` and then draws gets
//! different numbers whenever another test draws in between. Hence:
//! - test inputs and random parameters come from explicit ChaCha streams ([`Draws`],
//!   [`randomise`]), never from the global generator, so they are the same on every run;
//! - a test whose assertions depend on the global generator's draws (a model's initialisation)
//!   seeds it through [`seed_global_rng`], which holds the generator exclusively, and every test
//!   that draws from it (every test that builds a model) holds [`global_rng`] while it runs.
//!   Those run in parallel with each other, never beside a seeded test.

use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use graph_nets::GraphBatch;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use tch::{Device, Kind, Tensor, nn};

pub const CPU: Device = Device::Cpu;
pub const F64: (Kind, Device) = (Kind::Double, CPU);

/// Guards libtorch's global generator; see the module doc.
static GLOBAL_RNG: RwLock<()> = RwLock::new(());

/// Shared use of libtorch's global generator, for a test that draws from it (builds a model) but
/// does not depend on what it draws. Hold it for the whole test.
pub fn global_rng() -> RwLockReadGuard<'static, ()> {
    // A panicking test poisons the lock; the generator itself is still fine.
    GLOBAL_RNG.read().unwrap_or_else(PoisonError::into_inner)
}

/// Exclusive use of libtorch's global generator, seeded with `seed`, for a test whose assertions
/// depend on its draws. Hold it for the whole test.
pub fn seed_global_rng(seed: i64) -> RwLockWriteGuard<'static, ()> {
    let guard = GLOBAL_RNG.write().unwrap_or_else(PoisonError::into_inner);
    tch::manual_seed(seed);
    guard
}

/// An explicit, seeded source of random test tensors (ChaCha8), drawn in call order.
#[derive(Debug)]
pub struct Draws(ChaCha8Rng);

impl Draws {
    /// The stream of `seed`.
    pub fn new(seed: u64) -> Self {
        Self(ChaCha8Rng::seed_from_u64(seed))
    }

    /// A float64 CPU tensor of standard-normal draws.
    pub fn normal(&mut self, shape: &[i64]) -> Tensor {
        let n: i64 = shape.iter().product();
        let v: Vec<f64> = (0..n).map(|_| self.0.sample(StandardNormal)).collect();
        Tensor::from_slice(&v).view(shape)
    }

    /// [`normal`](Self::normal) in another kind and on another device.
    pub fn normal_in(&mut self, shape: &[i64], (kind, device): (Kind, Device)) -> Tensor {
        self.normal(shape).to_kind(kind).to_device(device)
    }
}

/// Random positions `[N, 3]`, velocities `[N, 3]`, node features `[N, node_in]` and edge
/// features `[E, edge_dim]` for `graph`, from `draws`.
pub fn random_inputs(
    draws: &mut Draws,
    graph: &GraphBatch,
    node_in: i64,
    edge_dim: i64,
) -> (Tensor, Tensor, Tensor, Tensor) {
    let n = graph.num_nodes();
    (
        draws.normal(&[n, 3]),
        draws.normal(&[n, 3]),
        draws.normal(&[n, node_in]),
        draws.normal(&[graph.num_edges(), edge_dim]),
    )
}

/// Overwrites every trainable parameter with N(0, 0.3²) from `draws` (parameters in creation
/// order), so that near-zero-initialised heads (EGNN's coordinate weights) matter as much as the
/// rest, and the parameters are the same on every run.
pub fn randomise(vs: &nn::VarStore, draws: &mut Draws) {
    tch::no_grad(|| {
        for mut t in vs.trainable_variables() {
            let r = draws.normal_in(&t.size(), (t.kind(), t.device())) * 0.3;
            t.copy_(&r);
        }
    });
}

/// Graph 0: a 5-ring with one chord; graph 1: a complete graph on 4 nodes. Edges `(i, j)`.
pub fn two_graph_edges() -> Vec<(i64, Vec<(i64, i64)>)> {
    let ring = vec![
        (0, 1),
        (1, 0),
        (1, 2),
        (2, 1),
        (2, 3),
        (3, 2),
        (3, 4),
        (4, 3),
        (4, 0),
        (0, 4),
        (0, 2),
        (2, 0),
    ];
    let mut complete = Vec::new();
    for i in 0..4 {
        for j in 0..4 {
            if i != j {
                complete.push((i, j));
            }
        }
    }
    vec![(5, ring), (4, complete)]
}

pub fn batch_of(graphs: &[(i64, Vec<(i64, i64)>)]) -> GraphBatch {
    let parts: Vec<_> = graphs
        .iter()
        .map(|(n, e)| GraphBatch::from_edges(*n, e, CPU).unwrap())
        .collect();
    GraphBatch::batch(&parts).unwrap()
}

pub fn two_graphs() -> GraphBatch {
    batch_of(&two_graph_edges())
}

/// A float64 VarStore on the CPU (`set_kind` also makes float64 the kind of new variables).
pub fn store() -> nn::VarStore {
    let mut vs = nn::VarStore::new(CPU);
    vs.set_kind(Kind::Double);
    vs
}

/// `R_z(a) R_y(b) R_z(c)`, times `diag(-1, 1, 1)` when `reflect`: any element of O(3).
pub fn orthogonal(angles: [f64; 3], reflect: bool) -> Tensor {
    let rz = |a: f64| {
        Tensor::from_slice(&[a.cos(), -a.sin(), 0.0, a.sin(), a.cos(), 0.0, 0.0, 0.0, 1.0])
            .view([3, 3])
    };
    let ry = |b: f64| {
        Tensor::from_slice(&[b.cos(), 0.0, b.sin(), 0.0, 1.0, 0.0, -b.sin(), 0.0, b.cos()])
            .view([3, 3])
    };
    let q = rz(angles[0]).matmul(&ry(angles[1])).matmul(&rz(angles[2]));
    if reflect {
        q.matmul(&Tensor::from_slice(&[-1.0, 1.0, 1.0]).diag(0))
    } else {
        q
    }
}

/// A rigid motion `x ↦ Q x + s` per graph, `Q = orthogonal(angles, reflect)`.
#[derive(Debug, Clone)]
pub struct Motion {
    pub rotation: Vec<([f64; 3], bool)>,
    pub shift: Vec<[f64; 3]>,
}

impl Motion {
    /// Applies the motion of graph `g` to its nodes; `x: [.., N_total, 3]` (node axis second to
    /// last). Vectors (velocities) are rotated but not shifted.
    pub fn apply(&self, graph: &GraphBatch, x: &Tensor, translate: bool) -> Tensor {
        let parts: Vec<Tensor> = graph
            .split_nodes(x, -2)
            .iter()
            .enumerate()
            .map(|(g, p)| {
                let (angles, reflect) = self.rotation[g];
                let r = p.matmul(&orthogonal(angles, reflect).tr());
                if translate {
                    r + Tensor::from_slice(&self.shift[g])
                } else {
                    r
                }
            })
            .collect();
        Tensor::cat(&parts, -2)
    }
}

pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size(), "shapes differ");
    (a - b).abs().max().double_value(&[])
}

/// `|a − b| ≤ tol·(1 + |b|)` elementwise.
#[track_caller]
pub fn assert_close(a: &Tensor, b: &Tensor, tol: f64, what: &str) {
    assert_eq!(a.size(), b.size(), "{what}: shapes differ");
    let excess = ((a - b).abs() - (b.abs() + 1.0) * tol)
        .max()
        .double_value(&[]);
    assert!(
        excess <= 0.0,
        "{what}: max |a − b| = {:e} above tolerance {tol:e}",
        max_abs_diff(a, b)
    );
}

/// A fixture written by a committed Python script: `tests/<dir>/<stem>.json` (metadata) and
/// `tests/<dir>/<stem>.safetensors` (tensors by name), with the path of the latter.
pub fn read_fixture(
    dir: &str,
    stem: &str,
) -> (
    serde_json::Value,
    std::collections::HashMap<String, Tensor>,
    std::path::PathBuf,
) {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(dir);
    let meta =
        serde_json::from_str(&std::fs::read_to_string(dir.join(format!("{stem}.json"))).unwrap())
            .unwrap();
    let path = dir.join(format!("{stem}.safetensors"));
    let tensors = Tensor::read_safetensors(&path)
        .unwrap()
        .into_iter()
        .collect();
    (meta, tensors, path)
}
