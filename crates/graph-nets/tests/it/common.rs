//! Shared fixtures: a two-graph batch, random rigid motions, comparisons.

use graph_nets::GraphBatch;
use tch::{Device, Kind, Tensor, nn};

pub const CPU: Device = Device::Cpu;
pub const F64: (Kind, Device) = (Kind::Double, CPU);

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
