//! From a dataset directory to model-ready tensors: windows cut as the config says, node and
//! edge features, per-sample transforms back to original units, and batches.
//!
//! N-body systems (`charged`, `springs`, `gravity`) use the complete graph, as EGNO does; an edge
//! carries the product of its ends' first node feature (charges, or masses) and, when the dataset
//! has an edge list (springs), that edge's attribute (0 for pairs without a spring). Other
//! datasets use their own edge list with its attributes.

use std::collections::HashMap;

use anyhow::{Context, Result, bail, ensure};
use graph_nets::GraphBatch;
use tch::{Device, Kind, Tensor};
use traj_data::{Dataset, EdgeList, Split};

use crate::config::DataConfig;

/// All windows of one split, as tensors (on the CPU until batched).
#[derive(Debug)]
pub struct Prepared {
    /// Samples S.
    pub samples: i64,
    /// Nodes per sample N.
    pub n: i64,
    /// Predicted frames T.
    pub t: i64,
    /// `[S, N, 3]` positions at the condition frame.
    pub x0: Tensor,
    /// `[S, N, 3]` velocities at the condition frame.
    pub v0: Tensor,
    /// `[S, N, F]` invariant node features.
    pub h: Tensor,
    /// `[S, T, N, 3]` target positions.
    pub y: Tensor,
    /// `[S, T, N, 3]` target velocities (the teacher reads them).
    pub vy: Tensor,
    /// `[S, E, A]` edge attributes, in the order of [`Prepared::edges`].
    pub edge_attr: Tensor,
    /// Directed edges `(receiver, sender)` of each sample's graph.
    pub edges: Vec<(i64, i64)>,
    /// Undirected edges of the spatial graph (for the Laplacian).
    pub undirected: Vec<(usize, usize)>,
    /// `[S, 3]` centres and `[S]` scales: original = normalised · scale + centre.
    pub center: Tensor,
    /// See `center`.
    pub scale: Tensor,
    /// Time from the condition frame to each target, in the dataset's time unit, `[T]`.
    pub target_times: Vec<f64>,
}

/// One batch on a device.
#[derive(Debug)]
pub struct Batch {
    /// Samples B.
    pub b: i64,
    /// `[B·N, 3]`.
    pub x0: Tensor,
    /// `[B·N, 3]`.
    pub v0: Tensor,
    /// `[B·N, F]`.
    pub h: Tensor,
    /// `[T, B·N, 3]`.
    pub y: Tensor,
    /// `[T, B·N, 3]`.
    pub vy: Tensor,
    /// `[B·E, A]`.
    pub edge_attr: Tensor,
    /// The block-diagonal graph of the B samples.
    pub graph: GraphBatch,
    /// `[B, 3]`, `[B]`.
    pub center: Tensor,
    /// See `center`.
    pub scale: Tensor,
}

fn is_nbody(ds: &Dataset) -> bool {
    matches!(ds.meta().system.as_str(), "charged" | "springs" | "gravity")
}

/// Loads a split (checksum verified) and cuts its windows.
pub fn load(cfg: &DataConfig, split: Split, limit: Option<usize>) -> Result<(Dataset, Prepared)> {
    let ds = traj_data::load_split(&cfg.dir, split)
        .with_context(|| format!("loading the {split:?} split of {}", cfg.dir.display()))?;
    let ds = match limit {
        Some(n) if n < ds.len() => ds.select(&(0..n).collect::<Vec<_>>())?,
        _ => ds,
    };
    let per_trajectory = match split {
        Split::Train => cfg.train_windows_per_trajectory,
        Split::Val | Split::Test => None,
    };
    let prepared = prepare_windows(&ds, cfg, per_trajectory)?;
    Ok((ds, prepared))
}

/// Cuts the EGNO-style windows of a dataset into tensors.
pub fn prepare(ds: &Dataset, cfg: &DataConfig) -> Result<Prepared> {
    prepare_windows(ds, cfg, None)
}

/// [`prepare`], keeping only the first `per_trajectory` windows of each trajectory (in the
/// index's order) when given.
fn prepare_windows(
    ds: &Dataset,
    cfg: &DataConfig,
    per_trajectory: Option<usize>,
) -> Result<Prepared> {
    ensure!(!ds.is_empty(), "the dataset is empty");
    let spec = cfg.window_spec().check()?;
    let mut index = spec.index(ds)?;
    if let Some(cap) = per_trajectory {
        let mut seen: HashMap<usize, usize> = HashMap::new();
        index.retain(|w| {
            let c = seen.entry(w.trajectory).or_default();
            *c += 1;
            *c <= cap
        });
    }
    ensure!(
        !index.is_empty(),
        "no window fits: trajectories are too short for the horizon (delta_frame {})",
        cfg.delta_frame
    );
    let windows = index
        .iter()
        .map(|&w| spec.sample(ds, w))
        .collect::<traj_data::Result<Vec<_>>>()?;
    let n = ds.num_nodes();
    let nbody = is_nbody(ds);
    let graph = if nbody {
        EdgeList::complete(n)
    } else {
        match ds.trajectories()[0].edges() {
            Some(e) => e.clone(),
            None => bail!(
                "dataset `{}` has no edge list and is not an N-body system",
                ds.meta().name
            ),
        }
    };
    let undirected = Vec::<(usize, usize)>::from(&graph);
    let edges = graph.directed();

    // node types one-hot over the types of the first trajectory (a molecule's elements)
    let vocabulary: Vec<i64> = match (cfg.type_one_hot, ds.trajectories()[0].node_types()) {
        (true, Some(types)) => {
            let mut v = types.to_vec();
            v.sort_unstable();
            v.dedup();
            v
        }
        _ => Vec::new(),
    };
    let (mut x0, mut v0, mut h, mut y, mut vy, mut ea) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    let (mut center, mut scale) = (vec![], vec![]);
    let mut target_times = vec![];
    let mut feat_dim = 0;
    let mut attr_dim = 0;
    for s in &windows {
        let c = s.condition_frames.len();
        let last = (c - 1) * n * 3;
        x0.extend_from_slice(&s.condition_positions[last..last + n * 3]);
        let vel = s
            .condition_velocities
            .as_ref()
            .context("the dataset has no velocities (the decoder needs v_0)")?;
        v0.extend_from_slice(&vel[last..last + n * 3]);
        y.extend_from_slice(&s.target_positions);
        vy.extend_from_slice(
            s.target_velocities
                .as_ref()
                .context("no target velocities")?,
        );
        let feats = s.node_features.clone().unwrap_or_else(|| vec![1.0; n]);
        let raw_dim = if s.node_features.is_some() {
            s.num_node_features
        } else {
            1
        };
        let types = if vocabulary.is_empty() {
            None
        } else {
            let t = ds.trajectories()[s.trajectory]
                .node_types()
                .context("node types are missing from a trajectory")?;
            Some(t)
        };
        let cond_vel = &vel[last..last + n * 3];
        for i in 0..n {
            h.extend_from_slice(&feats[i * raw_dim..(i + 1) * raw_dim]);
            if let Some(types) = types {
                let k = vocabulary.binary_search(&types[i]).map_err(|_| {
                    anyhow::anyhow!(
                        "trajectory {}: node {i} has type {}, not among the types of the first \
                         trajectory {vocabulary:?}",
                        s.trajectory,
                        types[i]
                    )
                })?;
                h.extend((0..vocabulary.len()).map(|j| f64::from(u8::from(j == k))));
            }
            if cfg.speed_feature {
                let v = &cond_vel[i * 3..i * 3 + 3];
                h.push((v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt());
            }
        }
        feat_dim = raw_dim + vocabulary.len() + usize::from(cfg.speed_feature);
        // edge attributes
        let lookup: HashMap<(usize, usize), Vec<f64>> = s
            .edges
            .as_ref()
            .map(|e| {
                e.pairs()
                    .iter()
                    .enumerate()
                    .map(|(k, p)| ((p[0], p[1]), e.attribute(k).to_vec()))
                    .collect()
            })
            .unwrap_or_default();
        let n_attr = s.edges.as_ref().map_or(0, |e| e.num_attributes());
        attr_dim = usize::from(nbody) + n_attr;
        for &(r, snd) in &edges {
            let (r, snd) = (r as usize, snd as usize);
            if nbody {
                ea.push(feats[r * raw_dim] * feats[snd * raw_dim]);
            }
            if n_attr > 0 {
                let key = (r.min(snd), r.max(snd));
                match lookup.get(&key) {
                    Some(a) => ea.extend_from_slice(a),
                    None => ea.extend(std::iter::repeat_n(0.0, n_attr)),
                }
            }
        }
        center.extend_from_slice(&s.transform.center);
        scale.push(s.transform.scale);
        if target_times.is_empty() {
            target_times = s
                .target_offsets()
                .iter()
                .map(|&o| o as f64 * s.dt)
                .collect();
        }
    }
    let samples = windows.len() as i64;
    let (n, t) = (n as i64, cfg.num_targets as i64);
    let e = edges.len() as i64;
    let f32s = |v: &[f64], shape: &[i64]| Tensor::from_slice(v).to_kind(Kind::Float).reshape(shape);
    Ok(Prepared {
        samples,
        n,
        t,
        x0: f32s(&x0, &[samples, n, 3]),
        v0: f32s(&v0, &[samples, n, 3]),
        h: f32s(&h, &[samples, n, feat_dim as i64]),
        y: f32s(&y, &[samples, t, n, 3]),
        vy: f32s(&vy, &[samples, t, n, 3]),
        edge_attr: f32s(&ea, &[samples, e, attr_dim as i64]),
        edges,
        undirected,
        center: Tensor::from_slice(&center).reshape([samples, 3]),
        scale: Tensor::from_slice(&scale),
        target_times,
    })
}

impl Prepared {
    /// Node feature width F.
    pub fn node_dim(&self) -> i64 {
        self.h.size()[2]
    }

    /// Edge attribute width A.
    pub fn edge_dim(&self) -> i64 {
        self.edge_attr.size()[2]
    }

    /// The samples at `idx` (on the CPU) as a prepared split of their own.
    pub fn select(&self, idx: &[i64]) -> Result<Prepared> {
        ensure!(
            idx.iter().all(|&i| (0..self.samples).contains(&i)),
            "sample index out of range 0..{}",
            self.samples
        );
        let sel = Tensor::from_slice(idx);
        let take = |t: &Tensor| t.index_select(0, &sel);
        Ok(Prepared {
            samples: idx.len() as i64,
            n: self.n,
            t: self.t,
            x0: take(&self.x0),
            v0: take(&self.v0),
            h: take(&self.h),
            y: take(&self.y),
            vy: take(&self.vy),
            edge_attr: take(&self.edge_attr),
            edges: self.edges.clone(),
            undirected: self.undirected.clone(),
            center: take(&self.center),
            scale: take(&self.scale),
            target_times: self.target_times.clone(),
        })
    }

    /// The samples at `idx` on `device`, with the batched graph (cached per batch size).
    pub fn batch(&self, idx: &[i64], device: Device, graphs: &mut GraphCache) -> Result<Batch> {
        let b = idx.len() as i64;
        let sel = Tensor::from_slice(idx);
        let take = |t: &Tensor| t.index_select(0, &sel).to_device(device);
        let nodes = |t: &Tensor| take(t).reshape([b * self.n, -1]);
        let frames = |t: &Tensor| {
            take(t)
                .permute([1, 0, 2, 3])
                .reshape([self.t, b * self.n, 3])
        };
        Ok(Batch {
            b,
            x0: nodes(&self.x0),
            v0: nodes(&self.v0),
            h: nodes(&self.h),
            y: frames(&self.y),
            vy: frames(&self.vy),
            edge_attr: take(&self.edge_attr)
                .reshape([b * self.edges.len() as i64, self.edge_dim()]),
            graph: graphs.get(self, b, device)?,
            center: take(&self.center),
            scale: take(&self.scale),
        })
    }
}

/// Batched graphs by batch size (all samples share one graph).
#[derive(Debug, Default)]
pub struct GraphCache {
    by_size: HashMap<i64, GraphBatch>,
}

impl GraphCache {
    fn get(&mut self, p: &Prepared, b: i64, device: Device) -> Result<GraphBatch> {
        if let Some(g) = self.by_size.get(&b) {
            return Ok(g.clone());
        }
        let one = GraphBatch::from_edges(p.n, &p.edges, device)?;
        let g = GraphBatch::batch(&vec![one; b as usize])?;
        self.by_size.insert(b, g.clone());
        Ok(g)
    }
}

/// `[T, B·N, 3]` normalised positions → `[B, T, N, 3]` in original units.
pub fn to_original(x: &Tensor, batch: &Batch, n: i64) -> Tensor {
    let t = x.size()[0];
    let x = x
        .to_kind(Kind::Double)
        .reshape([t, batch.b, n, 3])
        .permute([1, 0, 2, 3]);
    let scale = batch.scale.to_device(x.device()).view([batch.b, 1, 1, 1]);
    let center = batch.center.to_device(x.device()).view([batch.b, 1, 1, 3]);
    x * scale + center
}
