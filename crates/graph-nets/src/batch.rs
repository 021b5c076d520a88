//! Graph batching: graphs of different sizes as one block-diagonal graph, segment reductions, and
//! edge construction (complete, radius, k-nearest-neighbour, multi-hop) on tensors.

use tch::{Device, Kind, Tensor};

use crate::error::{Error, Result, check_kind, check_shape};

/// A batch of directed graphs stored as one block-diagonal graph.
///
/// Node `n` of graph `g` has the global id `offset_g + n`, where `offset_g` is the number of nodes
/// of the graphs before it; an edge `(i, j)` carries a message from the **sender** `j` to the
/// **receiver** `i` (messages are aggregated at `i`). An undirected bond is two edges.
///
/// A `GraphBatch` of one graph is a graph; [`GraphBatch::batch`] concatenates any number of them.
#[derive(Debug)]
pub struct GraphBatch {
    /// `[E]` int64, global receiver ids.
    receivers: Tensor,
    /// `[E]` int64, global sender ids.
    senders: Tensor,
    /// `[N_total]` int64, the graph of each node.
    node_graph: Tensor,
    /// `[N_total]` int64, the number of edges each node receives.
    in_degree: Tensor,
    graph_sizes: Vec<i64>,
    edge_counts: Vec<i64>,
}

impl Clone for GraphBatch {
    fn clone(&self) -> Self {
        Self {
            receivers: self.receivers.shallow_clone(),
            senders: self.senders.shallow_clone(),
            node_graph: self.node_graph.shallow_clone(),
            in_degree: self.in_degree.shallow_clone(),
            graph_sizes: self.graph_sizes.clone(),
            edge_counts: self.edge_counts.clone(),
        }
    }
}

const INT: Kind = Kind::Int64;

impl GraphBatch {
    /// A single graph of `num_nodes` nodes from its edge index (local ids).
    ///
    /// # Shapes
    /// - `edge_index`: `[2, E]` int64; row 0 the receivers `i`, row 1 the senders `j`.
    ///
    /// # Errors
    /// A wrong shape or kind, a negative `num_nodes`, or an edge naming a node `∉ [0, num_nodes)`.
    pub fn f_from_edge_index(num_nodes: i64, edge_index: &Tensor) -> Result<Self> {
        const OP: &str = "GraphBatch::from_edge_index";
        check_shape(OP, "edge_index", edge_index, &[Some(2), None])?;
        check_kind(OP, "edge_index", edge_index, INT)?;
        if num_nodes < 0 {
            return Err(Error::Input {
                op: OP,
                reason: format!("num_nodes must be ≥ 0, got {num_nodes}"),
            });
        }
        let num_edges = edge_index.size()[1];
        if num_edges > 0 {
            let bad = edge_index.lt(0).logical_or(&edge_index.ge(num_nodes));
            let bad_edges = bad.any_dim(0, false).nonzero();
            if bad_edges.size()[0] > 0 {
                let edge = bad_edges.int64_value(&[0, 0]);
                let pair = edge_index.select(1, edge);
                let node = if bad.int64_value(&[0, edge]) != 0 {
                    pair.int64_value(&[0])
                } else {
                    pair.int64_value(&[1])
                };
                return Err(Error::EdgeOutOfRange {
                    op: OP,
                    edge,
                    node,
                    num_nodes,
                });
            }
        }
        let device = edge_index.device();
        let receivers = edge_index.select(0, 0).contiguous();
        let senders = edge_index.select(0, 1).contiguous();
        let node_graph = Tensor::zeros([num_nodes], (INT, device));
        let in_degree = receivers.bincount::<Tensor>(None, num_nodes);
        Ok(Self {
            receivers,
            senders,
            node_graph,
            in_degree,
            graph_sizes: vec![num_nodes],
            edge_counts: vec![num_edges],
        })
    }

    /// A single graph from a list of directed edges `(receiver, sender)` (local ids).
    ///
    /// # Errors
    /// As [`GraphBatch::f_from_edge_index`].
    pub fn from_edges(num_nodes: i64, edges: &[(i64, i64)], device: Device) -> Result<Self> {
        let flat: Vec<i64> = edges
            .iter()
            .map(|e| e.0)
            .chain(edges.iter().map(|e| e.1))
            .collect();
        let edge_index = Tensor::from_slice(&flat)
            .view([2, edges.len() as i64])
            .to_device(device);
        Self::f_from_edge_index(num_nodes, &edge_index)
    }

    /// A single graph from undirected edges (bonds): each pair `{a, b}` becomes the two directed
    /// edges `a ← b` and `b ← a` (a self-loop `{a, a}` becomes one edge).
    ///
    /// # Errors
    /// As [`GraphBatch::f_from_edge_index`].
    pub fn from_undirected(num_nodes: i64, bonds: &[(i64, i64)], device: Device) -> Result<Self> {
        let mut edges = Vec::with_capacity(2 * bonds.len());
        for &(a, b) in bonds {
            edges.push((a, b));
            if a != b {
                edges.push((b, a));
            }
        }
        Self::from_edges(num_nodes, &edges, device)
    }

    /// The block-diagonal union of `graphs`, in order: node ids of graph `g` are shifted by the
    /// number of nodes before it.
    ///
    /// # Errors
    /// An empty list, or graphs on different devices.
    pub fn batch(graphs: &[GraphBatch]) -> Result<Self> {
        const OP: &str = "GraphBatch::batch";
        let first = graphs.first().ok_or_else(|| Error::Input {
            op: OP,
            reason: "no graphs to batch".into(),
        })?;
        let device = first.device();
        if let Some(g) = graphs.iter().find(|g| g.device() != device) {
            return Err(Error::Input {
                op: OP,
                reason: format!("graphs on {device:?} and {:?}", g.device()),
            });
        }
        let mut receivers = Vec::with_capacity(graphs.len());
        let mut senders = Vec::with_capacity(graphs.len());
        let mut node_graph = Vec::with_capacity(graphs.len());
        let (mut node_offset, mut graph_offset) = (0i64, 0i64);
        for g in graphs {
            receivers.push(&g.receivers + node_offset);
            senders.push(&g.senders + node_offset);
            node_graph.push(&g.node_graph + graph_offset);
            node_offset += g.num_nodes();
            graph_offset += g.num_graphs();
        }
        let in_degree = Tensor::cat(&graphs.iter().map(|g| &g.in_degree).collect::<Vec<_>>(), 0);
        Ok(Self {
            receivers: Tensor::cat(&receivers, 0),
            senders: Tensor::cat(&senders, 0),
            node_graph: Tensor::cat(&node_graph, 0),
            in_degree,
            graph_sizes: graphs
                .iter()
                .flat_map(|g| g.graph_sizes.iter().copied())
                .collect(),
            edge_counts: graphs
                .iter()
                .flat_map(|g| g.edge_counts.iter().copied())
                .collect(),
        })
    }

    /// Builds a batch graph by graph from `(receivers, senders)` local index pairs per graph.
    fn from_local_parts(sizes: &[i64], parts: Vec<(Tensor, Tensor)>, device: Device) -> Self {
        let mut receivers = Vec::with_capacity(parts.len());
        let mut senders = Vec::with_capacity(parts.len());
        let mut edge_counts = Vec::with_capacity(parts.len());
        let mut offset = 0;
        for (&n, (r, s)) in sizes.iter().zip(parts) {
            edge_counts.push(r.size()[0]);
            receivers.push(r.to_device(device) + offset);
            senders.push(s.to_device(device) + offset);
            offset += n;
        }
        let cat = |v: Vec<Tensor>| {
            if v.is_empty() {
                Tensor::zeros([0], (INT, device))
            } else {
                Tensor::cat(&v, 0)
            }
        };
        let receivers = cat(receivers);
        let senders = cat(senders);
        let graph_ids = Tensor::arange(sizes.len() as i64, (INT, device));
        let node_graph = graph_ids.repeat_interleave_self_tensor(
            &Tensor::from_slice(sizes).to_device(device),
            0,
            offset,
        );
        let in_degree = receivers.bincount::<Tensor>(None, offset);
        Self {
            receivers,
            senders,
            node_graph,
            in_degree,
            graph_sizes: sizes.to_vec(),
            edge_counts,
        }
    }

    /// Complete graphs (every ordered pair `i ≠ j` of the same graph), one per entry of `sizes`.
    ///
    /// # Errors
    /// A negative size.
    pub fn complete(sizes: &[i64], device: Device) -> Result<Self> {
        check_sizes("GraphBatch::complete", sizes)?;
        let parts = sizes
            .iter()
            .map(|&n| {
                let mask = Tensor::ones([n, n], (Kind::Bool, Device::Cpu))
                    .logical_and(&Tensor::eye(n, (Kind::Bool, Device::Cpu)).logical_not());
                pairs(&mask)
            })
            .collect();
        Ok(Self::from_local_parts(sizes, parts, device))
    }

    /// Radius graphs: within each graph, `j → i` for every `i ≠ j` with `‖x_i − x_j‖ < cutoff`.
    ///
    /// # Shapes
    /// - `x`: `[Σ sizes, 3]` (any floating kind), nodes of the graphs one after the other.
    ///
    /// # Errors
    /// A wrong shape, a negative size, a non-positive cutoff or non-finite coordinates.
    pub fn f_radius(x: &Tensor, sizes: &[i64], cutoff: f64) -> Result<Self> {
        const OP: &str = "GraphBatch::radius";
        let blocks = position_blocks(OP, x, sizes)?;
        if !(cutoff > 0.0 && cutoff.is_finite()) {
            return Err(Error::Input {
                op: OP,
                reason: format!("cutoff must be positive and finite, got {cutoff}"),
            });
        }
        let parts = blocks
            .iter()
            .map(|b| {
                let n = b.size()[0];
                let off_diag = Tensor::eye(n, (Kind::Bool, b.device())).logical_not();
                pairs(
                    &Tensor::cdist(b, b, 2.0, None)
                        .lt(cutoff)
                        .logical_and(&off_diag),
                )
            })
            .collect();
        Ok(Self::from_local_parts(sizes, parts, x.device()))
    }

    /// k-nearest-neighbour graphs: within each graph, every node `i` receives from its `k`
    /// nearest other nodes (fewer when its graph has at most `k` nodes), nearest first.
    ///
    /// # Shapes
    /// - `x`: `[Σ sizes, 3]`.
    ///
    /// # Errors
    /// A wrong shape, a negative size, `k < 1` or non-finite coordinates.
    pub fn f_knn(x: &Tensor, sizes: &[i64], k: i64) -> Result<Self> {
        const OP: &str = "GraphBatch::knn";
        let blocks = position_blocks(OP, x, sizes)?;
        if k < 1 {
            return Err(Error::Input {
                op: OP,
                reason: format!("k must be ≥ 1, got {k}"),
            });
        }
        let parts = blocks
            .iter()
            .map(|b| {
                let n = b.size()[0];
                let k = k.min(n - 1).max(0);
                let d = Tensor::cdist(b, b, 2.0, None)
                    .masked_fill(&Tensor::eye(n, (Kind::Bool, b.device())), f64::INFINITY);
                let nearest = if k == 0 {
                    Tensor::zeros([n, 0], (INT, b.device()))
                } else {
                    d.topk(k, 1, false, true).1
                };
                let receivers = Tensor::arange(n, (INT, b.device()))
                    .unsqueeze(1)
                    .expand([n, k], false)
                    .reshape([-1]);
                (receivers, nearest.reshape([-1]))
            })
            .collect();
        Ok(Self::from_local_parts(sizes, parts, x.device()))
    }

    /// The multi-hop graph of this (bond) graph: `j → i` whenever `i ≠ j` and `i` can be reached
    /// from `j` in at most `max_hop` steps along edges, with the hop count as the edge type.
    ///
    /// Returns the new graph and the types `[E']` int64 in `1..=max_hop` (1 = an edge of `self`).
    /// Duplicate and self-loop edges of `self` are dropped. Each graph is processed densely
    /// (`O(N_g²)` memory per graph), as suits molecules and proteins' bond graphs.
    ///
    /// # Errors
    /// `max_hop < 1`.
    pub fn f_with_hops(&self, max_hop: i64) -> Result<(Self, Tensor)> {
        if max_hop < 1 {
            return Err(Error::Input {
                op: "GraphBatch::with_hops",
                reason: format!("max_hop must be ≥ 1, got {max_hop}"),
            });
        }
        let device = self.device();
        let receivers = self.receivers.to_device(Device::Cpu);
        let senders = self.senders.to_device(Device::Cpu);
        let (mut parts, mut types) = (Vec::new(), Vec::new());
        let (mut node_offset, mut edge_offset) = (0i64, 0i64);
        for (&n, &e) in self.graph_sizes.iter().zip(&self.edge_counts) {
            let r = receivers.narrow(0, edge_offset, e) - node_offset;
            let s = senders.narrow(0, edge_offset, e) - node_offset;
            let adj = Tensor::zeros([n, n], (Kind::Float, Device::Cpu)).index_put(
                &[Some(r), Some(s)],
                &Tensor::ones([e], (Kind::Float, Device::Cpu)),
                false,
            );
            let off_diag = Tensor::eye(n, (Kind::Bool, Device::Cpu)).logical_not();
            let mut hops = Tensor::zeros([n, n], (INT, Device::Cpu));
            let mut reach = adj.gt(0.0);
            let mut seen = reach.logical_and(&off_diag);
            hops = hops.masked_fill(&seen, 1);
            for k in 2..=max_hop {
                reach = reach.to_kind(Kind::Float).matmul(&adj).gt(0.0);
                let new = reach
                    .logical_and(&off_diag)
                    .logical_and(&seen.logical_not());
                hops = hops.masked_fill(&new, k);
                seen = seen.logical_or(&new);
            }
            let (pr, ps) = pairs(&seen);
            types.push(hops.index(&[Some(&pr), Some(&ps)]));
            parts.push((pr, ps));
            node_offset += n;
            edge_offset += e;
        }
        let graph = Self::from_local_parts(&self.graph_sizes, parts, device);
        let types = if types.is_empty() {
            Tensor::zeros([0], (INT, device))
        } else {
            Tensor::cat(&types, 0).to_device(device)
        };
        Ok((graph, types))
    }

    /// The graph of `frames` disconnected copies of this batch, copy `t` holding the nodes
    /// `t·N_total + n` (the flattening of `[frames, N_total, ..]`) and counting as its own graphs
    /// (graph `t·G + g`), so segment means stay within one frame of one graph.
    pub fn repeat_frames(&self, frames: i64) -> Self {
        let device = self.device();
        let (n, g) = (self.num_nodes(), self.num_graphs());
        let shift = |t: &Tensor, step: i64| {
            let steps = Tensor::arange(frames, (INT, device)) * step;
            (t.unsqueeze(0) + steps.unsqueeze(1)).reshape([-1])
        };
        Self {
            receivers: shift(&self.receivers, n),
            senders: shift(&self.senders, n),
            node_graph: shift(&self.node_graph, g),
            in_degree: self.in_degree.repeat([frames]),
            graph_sizes: self.graph_sizes.repeat(frames as usize),
            edge_counts: self.edge_counts.repeat(frames as usize),
        }
    }

    /// This batch on `device`.
    pub fn to_device(&self, device: Device) -> Self {
        Self {
            receivers: self.receivers.to_device(device),
            senders: self.senders.to_device(device),
            node_graph: self.node_graph.to_device(device),
            in_degree: self.in_degree.to_device(device),
            graph_sizes: self.graph_sizes.clone(),
            edge_counts: self.edge_counts.clone(),
        }
    }

    /// The device of the index tensors.
    pub fn device(&self) -> Device {
        self.receivers.device()
    }
    /// `N_total`, the number of nodes of all graphs.
    pub fn num_nodes(&self) -> i64 {
        self.graph_sizes.iter().sum()
    }
    /// `E`, the number of directed edges of all graphs.
    pub fn num_edges(&self) -> i64 {
        self.edge_counts.iter().sum()
    }
    /// `G`, the number of graphs.
    pub fn num_graphs(&self) -> i64 {
        self.graph_sizes.len() as i64
    }
    /// The number of nodes of each graph.
    pub fn graph_sizes(&self) -> &[i64] {
        &self.graph_sizes
    }
    /// The number of edges of each graph.
    pub fn edge_counts(&self) -> &[i64] {
        &self.edge_counts
    }
    /// The global id of each graph's first node, `[G]`.
    pub fn node_offsets(&self) -> Vec<i64> {
        self.graph_sizes
            .iter()
            .scan(0, |acc, &n| Some(std::mem::replace(acc, *acc + n)))
            .collect()
    }
    /// `[2, E]` int64: row 0 the receivers, row 1 the senders (global ids).
    pub fn edge_index(&self) -> Tensor {
        Tensor::stack(&[&self.receivers, &self.senders], 0)
    }
    /// `[E]` int64 receivers `i` (global ids).
    pub fn receivers(&self) -> &Tensor {
        &self.receivers
    }
    /// `[E]` int64 senders `j` (global ids).
    pub fn senders(&self) -> &Tensor {
        &self.senders
    }
    /// `[N_total]` int64, the graph of each node.
    pub fn node_graph(&self) -> &Tensor {
        &self.node_graph
    }
    /// `[N_total]` int64, the number of edges each node receives.
    pub fn in_degree(&self) -> &Tensor {
        &self.in_degree
    }

    /// Edge vectors `x_i − x_j` (receiver minus sender).
    ///
    /// # Shapes
    /// `x: [N_total, C]` → `[E, C]`.
    ///
    /// # Panics
    /// When `x` does not have `N_total` rows.
    #[track_caller]
    pub fn edge_vectors(&self, x: &Tensor) -> Tensor {
        self.assert_nodes("edge_vectors", x);
        x.index_select(0, &self.receivers) - x.index_select(0, &self.senders)
    }

    /// Squared edge lengths `‖x_i − x_j‖²`.
    ///
    /// # Shapes
    /// `x: [N_total, 3]` → `[E, 1]`.
    ///
    /// # Panics
    /// When `x` does not have `N_total` rows.
    #[track_caller]
    pub fn edge_sq_distances(&self, x: &Tensor) -> Tensor {
        self.edge_vectors(x)
            .square()
            .sum_dim_intlist(-1, true, None)
    }

    /// Sum of edge messages at their receivers.
    ///
    /// # Shapes
    /// `messages: [E, ..]` → `[N_total, ..]`.
    ///
    /// # Panics
    /// When `messages` does not have `E` rows.
    #[track_caller]
    pub fn sum_at_receivers(&self, messages: &Tensor) -> Tensor {
        self.assert_edges("sum_at_receivers", messages);
        segment_sum(messages, &self.receivers, self.num_nodes())
    }

    /// Mean of edge messages at their receivers (zero at nodes that receive nothing).
    ///
    /// # Shapes
    /// `messages: [E, ..]` → `[N_total, ..]`.
    ///
    /// # Panics
    /// When `messages` does not have `E` rows.
    #[track_caller]
    pub fn mean_at_receivers(&self, messages: &Tensor) -> Tensor {
        let sum = self.sum_at_receivers(messages);
        sum / broadcast_counts(&self.in_degree, messages)
    }

    /// Softmax of edge scores over the edges each receiver receives.
    ///
    /// # Shapes
    /// `scores: [E, ..]` → `[E, ..]`.
    ///
    /// # Panics
    /// When `scores` does not have `E` rows.
    #[track_caller]
    pub fn softmax_at_receivers(&self, scores: &Tensor) -> Tensor {
        self.assert_edges("softmax_at_receivers", scores);
        segment_softmax(scores, &self.receivers, self.num_nodes())
    }

    /// The mean of `x` over the nodes of each graph.
    ///
    /// # Shapes
    /// `x: [N_total, ..]` → `[G, ..]`.
    ///
    /// # Panics
    /// When `x` does not have `N_total` rows.
    #[track_caller]
    pub fn graph_mean(&self, x: &Tensor) -> Tensor {
        self.assert_nodes("graph_mean", x);
        let sizes = Tensor::from_slice(&self.graph_sizes).to_device(x.device());
        segment_sum(x, &self.node_graph, self.num_graphs()) / broadcast_counts(&sizes, x)
    }

    /// The mean of `x` over each node's graph, repeated at every node (e.g. the centroid).
    ///
    /// # Shapes
    /// `x: [N_total, ..]` → `[N_total, ..]`.
    ///
    /// # Panics
    /// When `x` does not have `N_total` rows.
    #[track_caller]
    pub fn graph_mean_per_node(&self, x: &Tensor) -> Tensor {
        self.graph_mean(x).index_select(0, &self.node_graph)
    }

    /// Splits a batched tensor into one tensor per graph along the node dimension `dim`.
    ///
    /// # Shapes
    /// `t: [.., N_total, ..]` → `G` tensors `[.., N_g, ..]`.
    ///
    /// # Panics
    /// When `t.size()[dim] ≠ N_total`.
    #[track_caller]
    pub fn split_nodes(&self, t: &Tensor, dim: i64) -> Vec<Tensor> {
        let got = t.size()[dim.rem_euclid(t.dim() as i64) as usize];
        assert_eq!(
            got,
            self.num_nodes(),
            "GraphBatch::split_nodes: dimension {dim} has {got} entries, the batch {} nodes",
            self.num_nodes()
        );
        t.split_with_sizes(&self.graph_sizes, dim)
    }

    /// Per-graph, per-frame tensors (e.g. one SGE output per graph) as the batched `[T, N_total, d]`
    /// that [`Egno`](crate::Egno) takes as conditioning. Each part is either `[T, N_g, d]` or the
    /// flattened `[T·N_g, d]` with row `t·N_g + n` (SPEC §4).
    ///
    /// # Errors
    /// A part count other than `G`, or a part of the wrong shape.
    pub fn f_cat_frames(&self, parts: &[Tensor], frames: i64) -> Result<Tensor> {
        const OP: &str = "GraphBatch::cat_frames";
        if parts.len() != self.graph_sizes.len() {
            return Err(Error::Input {
                op: OP,
                reason: format!(
                    "{} parts for {} graphs",
                    parts.len(),
                    self.graph_sizes.len()
                ),
            });
        }
        let mut views = Vec::with_capacity(parts.len());
        for (p, &n) in parts.iter().zip(&self.graph_sizes) {
            let v = match p.dim() {
                2 => {
                    check_shape(OP, "part", p, &[Some(frames * n), None])?;
                    p.view([frames, n, -1])
                }
                _ => {
                    check_shape(OP, "part", p, &[Some(frames), Some(n), None])?;
                    p.shallow_clone()
                }
            };
            views.push(v);
        }
        let d = views[0].size()[2];
        if let Some(v) = views.iter().find(|v| v.size()[2] != d) {
            return Err(Error::Shape {
                op: OP,
                what: "part",
                expected: format!("[{frames}, _, {d}]"),
                got: v.size(),
            });
        }
        Ok(Tensor::cat(&views, 1))
    }

    #[track_caller]
    fn assert_nodes(&self, op: &str, x: &Tensor) {
        let n = x.size().first().copied();
        assert_eq!(
            n,
            Some(self.num_nodes()),
            "GraphBatch::{op}: expected {} node rows, got shape {:?}",
            self.num_nodes(),
            x.size()
        );
    }

    #[track_caller]
    fn assert_edges(&self, op: &str, x: &Tensor) {
        let n = x.size().first().copied();
        assert_eq!(
            n,
            Some(self.num_edges()),
            "GraphBatch::{op}: expected {} edge rows, got shape {:?}",
            self.num_edges(),
            x.size()
        );
    }
}

/// `Σ_{e : index[e] = s} src[e]` for every segment `s < num_segments`.
///
/// # Shapes
/// `src: [E, ..]`, `index: [E]` int64 → `[num_segments, ..]`.
pub fn segment_sum(src: &Tensor, index: &Tensor, num_segments: i64) -> Tensor {
    let mut shape = src.size();
    shape[0] = num_segments;
    Tensor::zeros(&shape, (src.kind(), src.device())).index_add(0, index, src)
}

/// The mean of `src` over each segment (zero for an empty segment).
///
/// # Shapes
/// `src: [E, ..]`, `index: [E]` int64 → `[num_segments, ..]`.
pub fn segment_mean(src: &Tensor, index: &Tensor, num_segments: i64) -> Tensor {
    let counts = index.bincount::<Tensor>(None, num_segments);
    segment_sum(src, index, num_segments) / broadcast_counts(&counts, src)
}

/// Softmax of `scores` within each segment: `exp(s_e − max) / Σ_{segment} exp(s − max)`.
///
/// # Shapes
/// `scores: [E, ..]`, `index: [E]` int64 → `[E, ..]`.
pub fn segment_softmax(scores: &Tensor, index: &Tensor, num_segments: i64) -> Tensor {
    // The softmax is shift-invariant, so the (non-differentiable) max is detached.
    let max = segment_max(&scores.detach(), index, num_segments);
    let exp = (scores - max.index_select(0, index)).exp();
    let denom = segment_sum(&exp, index, num_segments).index_select(0, index);
    exp / denom
}

/// The maximum of `src` over each segment (`−∞` for an empty segment; NaN propagates).
///
/// libtorch's `scatter_reduce(.., "amax", include_self = false)` (tch's
/// `internal_scatter_reduce`), which gives the same values as `index_reduce(.., "amax", false)`
/// without that op's "index_reduce() is in beta" warning.
///
/// # Shapes
/// `src: [E, ..]`, `index: [E]` int64 → `[num_segments, ..]`.
fn segment_max(src: &Tensor, index: &Tensor, num_segments: i64) -> Tensor {
    let mut shape = src.size();
    shape[0] = num_segments;
    let mut per_entry = vec![1i64; src.dim()];
    per_entry[0] = -1;
    let index = index.view(per_entry.as_slice()).expand_as(src);
    Tensor::full(&shape, f64::NEG_INFINITY, (src.kind(), src.device()))
        .internal_scatter_reduce(0, &index, src, "amax", false)
}

/// One-hot edge (or node) types: `[E]` int64 in `0..num_types` → `[E, num_types]` of `kind`.
///
/// # Errors
/// A type outside `0..num_types`.
pub fn one_hot(types: &Tensor, num_types: i64, kind: Kind) -> Result<Tensor> {
    const OP: &str = "one_hot";
    check_kind(OP, "types", types, INT)?;
    check_shape(OP, "types", types, &[None])?;
    if types.numel() > 0 {
        let (lo, hi) = (types.min().int64_value(&[]), types.max().int64_value(&[]));
        if lo < 0 || hi >= num_types {
            return Err(Error::Input {
                op: OP,
                reason: format!("types must lie in 0..{num_types}, got {lo}..={hi}"),
            });
        }
    }
    Ok(types.one_hot(num_types).to_kind(kind))
}

/// Counts `[S]` as a float divisor broadcastable against `like: [S, ..]`, at least 1.
fn broadcast_counts(counts: &Tensor, like: &Tensor) -> Tensor {
    let mut shape = vec![1i64; like.dim()];
    shape[0] = -1;
    counts
        .clamp_min(1)
        .to_kind(like.kind())
        .view(shape.as_slice())
}

/// The `(row, column)` indices of the `true` entries of a square boolean mask.
fn pairs(mask: &Tensor) -> (Tensor, Tensor) {
    let nz = mask.nonzero();
    (nz.select(1, 0).contiguous(), nz.select(1, 1).contiguous())
}

fn check_sizes(op: &'static str, sizes: &[i64]) -> Result<()> {
    match sizes.iter().find(|&&n| n < 0) {
        Some(n) => Err(Error::Input {
            op,
            reason: format!("graph sizes must be ≥ 0, got {n}"),
        }),
        None => Ok(()),
    }
}

/// Validates positions for edge construction and splits them per graph.
fn position_blocks(op: &'static str, x: &Tensor, sizes: &[i64]) -> Result<Vec<Tensor>> {
    check_sizes(op, sizes)?;
    check_shape(op, "x", x, &[Some(sizes.iter().sum()), Some(3)])?;
    if !x.is_floating_point() {
        return Err(Error::Kind {
            op,
            what: "x",
            expected: Kind::Float,
            got: x.kind(),
        });
    }
    if x.numel() > 0 && !bool::try_from(x.isfinite().all()).map_err(Error::Torch)? {
        return Err(Error::Input {
            op,
            reason: "x holds NaN or infinite coordinates".into(),
        });
    }
    Ok(x.split_with_sizes(sizes, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CPU: Device = Device::Cpu;

    fn edge_set(g: &GraphBatch) -> Vec<(i64, i64)> {
        let r = Vec::<i64>::try_from(g.receivers()).unwrap();
        let s = Vec::<i64>::try_from(g.senders()).unwrap();
        let mut v: Vec<_> = r.into_iter().zip(s).collect();
        v.sort_unstable();
        v
    }

    #[test]
    fn batch_offsets_node_ids_and_graph_ids() {
        let a = GraphBatch::from_undirected(3, &[(0, 1), (1, 2)], CPU).unwrap();
        let b = GraphBatch::from_edges(2, &[(0, 1)], CPU).unwrap();
        let g = GraphBatch::batch(&[a, b]).unwrap();
        assert_eq!(g.num_nodes(), 5);
        assert_eq!(g.num_edges(), 5);
        assert_eq!(g.graph_sizes(), &[3, 2]);
        assert_eq!(g.node_offsets(), vec![0, 3]);
        assert_eq!(edge_set(&g), vec![(0, 1), (1, 0), (1, 2), (2, 1), (3, 4)]);
        assert_eq!(
            Vec::<i64>::try_from(g.node_graph()).unwrap(),
            vec![0, 0, 0, 1, 1]
        );
        assert_eq!(
            Vec::<i64>::try_from(g.in_degree()).unwrap(),
            vec![1, 2, 1, 1, 0]
        );
    }

    #[test]
    fn out_of_range_edges_are_errors_naming_edge_and_node() {
        let e = GraphBatch::from_edges(3, &[(0, 1), (1, 3)], CPU).unwrap_err();
        assert!(
            matches!(
                e,
                Error::EdgeOutOfRange {
                    edge: 1,
                    node: 3,
                    num_nodes: 3,
                    ..
                }
            ),
            "{e}"
        );
        let e = GraphBatch::from_edges(3, &[(-1, 0)], CPU).unwrap_err();
        assert!(
            matches!(
                e,
                Error::EdgeOutOfRange {
                    edge: 0,
                    node: -1,
                    ..
                }
            ),
            "{e}"
        );
        let bad_shape = Tensor::zeros([3, 2], (INT, CPU));
        assert!(matches!(
            GraphBatch::f_from_edge_index(3, &bad_shape),
            Err(Error::Shape { .. })
        ));
        let bad_kind = Tensor::zeros([2, 2], (Kind::Float, CPU));
        assert!(matches!(
            GraphBatch::f_from_edge_index(3, &bad_kind),
            Err(Error::Kind { .. })
        ));
    }

    #[test]
    fn segment_reductions_match_loops() {
        let src = Tensor::from_slice(&[1.0f64, 2.0, 3.0, 4.0, 5.0]).view([5, 1]);
        let index = Tensor::from_slice(&[0i64, 2, 0, 2, 2]);
        let sum = Vec::<f64>::try_from(segment_sum(&src, &index, 4).view([-1])).unwrap();
        assert_eq!(sum, vec![4.0, 0.0, 11.0, 0.0]);
        let mean = Vec::<f64>::try_from(segment_mean(&src, &index, 4).view([-1])).unwrap();
        assert_eq!(mean, vec![2.0, 0.0, 11.0 / 3.0, 0.0]);
        let sm = Vec::<f64>::try_from(segment_softmax(&src, &index, 4).view([-1])).unwrap();
        let (z0, z2) = (
            1f64.exp() + 3f64.exp(),
            2f64.exp() + 4f64.exp() + 5f64.exp(),
        );
        let want = [
            1f64.exp() / z0,
            2f64.exp() / z2,
            3f64.exp() / z0,
            4f64.exp() / z2,
            5f64.exp() / z2,
        ];
        for (a, b) in sm.iter().zip(want) {
            assert!((a - b).abs() < 1e-12, "{a} vs {b}");
        }
        // Large scores do not overflow.
        let big = segment_softmax(&(src * 1000.0), &index, 4);
        assert!(bool::try_from(big.isfinite().all()).unwrap());
    }

    /// `segment_max` equals the op it replaced, `index_reduce(.., "amax", false)` (which prints
    /// a beta warning once per process), bit for bit: random scores with NaN and ±∞, empty
    /// segments, no entries at all, trailing dimensions, f32 and f64.
    #[test]
    fn segment_max_equals_index_reduce_amax() {
        // any values will do: the global generator is left unseeded
        for kind in [Kind::Float, Kind::Double] {
            for (e, s, trailing) in [
                (0i64, 3i64, vec![]),
                (1, 1, vec![]),
                (7, 5, vec![3]),
                (40, 9, vec![2, 2]),
                (64, 200, vec![4]),
            ] {
                let mut size = vec![e];
                size.extend(&trailing);
                let src = Tensor::randn(size.as_slice(), (kind, CPU));
                if e > 3 {
                    let _ = src.get(1).fill_(f64::NEG_INFINITY);
                    let _ = src.get(2).fill_(f64::NAN);
                    let _ = src.get(3).fill_(f64::INFINITY);
                }
                let index = Tensor::randint(s, [e], (INT, CPU));
                let mut shape = size.clone();
                shape[0] = s;
                let old = Tensor::full(shape.as_slice(), f64::NEG_INFINITY, (kind, CPU))
                    .index_reduce(0, &index, &src, "amax", false);
                let new = segment_max(&src, &index, s);
                assert_eq!(new.size(), old.size());
                // equal values, NaN where the old op had NaN
                assert!(old.isnan().equal(&new.isnan()), "{kind:?} E={e}");
                assert!(
                    old.nan_to_num(0.0, None, None)
                        .equal(&new.nan_to_num(0.0, None, None)),
                    "{kind:?} E={e}"
                );
                let counts = Vec::<i64>::try_from(index.bincount::<Tensor>(None, s)).unwrap();
                if let Some(empty) = counts.iter().position(|&c| c == 0) {
                    let row = Vec::<f64>::try_from(new.get(empty as i64).flatten(0, -1)).unwrap();
                    assert!(row.iter().all(|&v| v == f64::NEG_INFINITY));
                }
            }
        }
    }

    #[test]
    fn complete_radius_knn_match_brute_force() {
        use rand::{Rng, SeedableRng};

        let sizes = [4i64, 1, 3];
        // Points from an explicit stream, not libtorch's global generator (which the tests of
        // this binary share across threads): the same on every run.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(8);
        let xs: Vec<f64> = (0..24)
            .map(|_| rng.sample(rand_distr::StandardNormal))
            .collect();
        let x = Tensor::from_slice(&xs).view([8, 3]);
        let dist = |a: i64, b: i64| -> f64 {
            (0..3)
                .map(|c| (xs[(3 * a + c) as usize] - xs[(3 * b + c) as usize]).powi(2))
                .sum::<f64>()
                .sqrt()
        };
        let offsets = [0i64, 4, 5];
        let within = |f: &dyn Fn(i64, i64) -> bool| {
            let mut v = Vec::new();
            for (&o, &n) in offsets.iter().zip(&sizes) {
                for i in o..o + n {
                    for j in o..o + n {
                        if i != j && f(i, j) {
                            v.push((i, j));
                        }
                    }
                }
            }
            v
        };
        assert_eq!(
            edge_set(&GraphBatch::complete(&sizes, CPU).unwrap()),
            within(&|_, _| true)
        );
        let cutoff = 1.5;
        assert_eq!(
            edge_set(&GraphBatch::f_radius(&x, &sizes, cutoff).unwrap()),
            within(&|i, j| dist(i, j) < cutoff)
        );
        let knn = GraphBatch::f_knn(&x, &sizes, 2).unwrap();
        let want = within(&|i, j| {
            let g = offsets.iter().rposition(|&o| o <= i).unwrap();
            let others = (offsets[g]..offsets[g] + sizes[g]).filter(|&m| m != i && m != j);
            others.filter(|&m| dist(i, m) < dist(i, j)).count() < 2
        });
        assert_eq!(edge_set(&knn), want);
        assert_eq!(knn.edge_counts(), &[8, 0, 6]);
    }

    #[test]
    fn non_finite_positions_are_rejected() {
        let x = Tensor::from_slice(&[0.0f32, 0.0, f32::NAN, 1.0, 0.0, 0.0]).view([2, 3]);
        let e = GraphBatch::f_radius(&x, &[2], 1.0).unwrap_err();
        assert!(e.to_string().contains("NaN"), "{e}");
    }

    #[test]
    fn hops_of_a_path_graph() {
        // 0 - 1 - 2 - 3
        let g = GraphBatch::from_undirected(4, &[(0, 1), (1, 2), (2, 3), (1, 2)], CPU).unwrap();
        let (h, types) = g.f_with_hops(2).unwrap();
        let r = Vec::<i64>::try_from(h.receivers()).unwrap();
        let s = Vec::<i64>::try_from(h.senders()).unwrap();
        let t = Vec::<i64>::try_from(&types).unwrap();
        let mut got: Vec<_> = r
            .into_iter()
            .zip(s)
            .zip(t)
            .map(|((a, b), c)| (a, b, c))
            .collect();
        got.sort_unstable();
        let want = vec![
            (0, 1, 1),
            (0, 2, 2),
            (1, 0, 1),
            (1, 2, 1),
            (1, 3, 2),
            (2, 0, 2),
            (2, 1, 1),
            (2, 3, 1),
            (3, 1, 2),
            (3, 2, 1),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn repeat_frames_shifts_nodes_and_graphs() {
        let a = GraphBatch::from_edges(2, &[(0, 1)], CPU).unwrap();
        let b = GraphBatch::from_edges(1, &[], CPU).unwrap();
        let g = GraphBatch::batch(&[a, b]).unwrap().repeat_frames(2);
        assert_eq!(edge_set(&g), vec![(0, 1), (3, 4)]);
        assert_eq!(
            Vec::<i64>::try_from(g.node_graph()).unwrap(),
            vec![0, 0, 1, 2, 2, 3]
        );
        assert_eq!(g.graph_sizes(), &[2, 1, 2, 1]);
    }

    #[test]
    fn graph_means_and_frame_concatenation() {
        let g = GraphBatch::batch(&[
            GraphBatch::complete(&[2], CPU).unwrap(),
            GraphBatch::complete(&[1], CPU).unwrap(),
        ])
        .unwrap();
        let x = Tensor::from_slice(&[1.0f64, 3.0, 10.0]).view([3, 1]);
        assert_eq!(
            Vec::<f64>::try_from(g.graph_mean_per_node(&x).view([-1])).unwrap(),
            vec![2.0, 2.0, 10.0]
        );
        // Flattened parts use the row t·N_g + n.
        let p0 = Tensor::arange(4, (Kind::Double, CPU)).view([4, 1]);
        let p1 = Tensor::from_slice(&[100.0f64, 101.0]).view([2, 1, 1]);
        let z = g.f_cat_frames(&[p0, p1], 2).unwrap();
        assert_eq!(z.size(), vec![2, 3, 1]);
        assert_eq!(
            Vec::<f64>::try_from(z.view([-1])).unwrap(),
            vec![0.0, 1.0, 100.0, 2.0, 3.0, 101.0]
        );
        let split = g.split_nodes(&z, 1);
        assert_eq!(split[1].size(), vec![2, 1, 1]);
        assert!(
            g.f_cat_frames(&[Tensor::zeros([3, 1], (Kind::Double, CPU))], 2)
                .is_err()
        );
    }
}
