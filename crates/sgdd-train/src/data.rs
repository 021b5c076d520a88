//! From a dataset directory to model-ready tensors: windows cut as the config says, node and
//! edge features, per-sample transforms back to original units, and batches.
//!
//! N-body systems (`charged`, `springs`, `gravity`) use the complete graph, as EGNO does; an edge
//! carries the product of its ends' first node feature (charges, or masses) and, when the dataset
//! has an edge list (springs), that edge's attribute (0 for pairs without a spring). Other
//! datasets use their own edge list with its attributes. With `data.graph = "radius" | "knn"`
//! every window has a graph of its own, built from its condition frame (attributes as above, 0
//! for pairs the dataset's edge list does not have).

use std::collections::HashMap;

use anyhow::{Context, Result, bail, ensure};
use graph_nets::GraphBatch;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tch::{Device, Kind, Tensor};
use traj_data::{Dataset, EdgeList, Split, TargetFrames};

use crate::config::{DataConfig, WindowGraph};

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
    /// The directed edges of each sample's graph and their attributes.
    pub graphs: SampleGraphs,
    /// Undirected edges of the spatial graph (for the Laplacian): every sample's, or with a
    /// graph per sample ([`SampleGraphs::PerSample`]) the first sample's, which sizes the
    /// model's spectral layer (each sample's own basis is built when it is met).
    pub undirected: Vec<(usize, usize)>,
    /// Each sample's undirected graph for SGDD's spectral basis when it is not the
    /// message-passing graph (`data.spectral_graph`); [`Prepared::undirected`] is then the first
    /// sample's.
    pub spectral: Option<Vec<Vec<(usize, usize)>>>,
    /// `[S, 3]` centres and `[S]` scales: original = normalised · scale + centre.
    pub center: Tensor,
    /// See `center`.
    pub scale: Tensor,
    /// Time from the condition frame to each target, in the dataset's time unit, `[T]`.
    pub target_times: Vec<f64>,
    /// Every frame of each window's horizon, when `data.uneven_targets` asks for random targets
    /// in training (the training split only); see [`Prepared::train_batch`].
    pub horizon: Option<Horizon>,
}

/// The samples' graphs: directed edges `(receiver, sender)` with their attributes.
#[derive(Debug)]
pub enum SampleGraphs {
    /// One graph for every sample.
    Shared {
        /// The edges.
        edges: Vec<(i64, i64)>,
        /// `[S, E, A]` attributes, in the order of `edges`.
        attr: Tensor,
    },
    /// A graph per sample (`data.graph = "radius" | "knn"`).
    PerSample {
        /// Sample `s`'s edges.
        edges: Vec<Vec<(i64, i64)>>,
        /// Sample `s`'s `[E_s, A]` attributes.
        attr: Vec<Tensor>,
    },
}

impl SampleGraphs {
    /// Attribute width A.
    pub fn edge_dim(&self) -> i64 {
        match self {
            Self::Shared { attr, .. } => attr.size()[2],
            Self::PerSample { attr, .. } => attr[0].size()[1],
        }
    }

    /// The graphs of the samples at `idx` (a CPU index tensor `sel` of the same).
    fn select(&self, idx: &[i64], sel: &Tensor) -> Self {
        match self {
            Self::Shared { edges, attr } => Self::Shared {
                edges: edges.clone(),
                attr: attr.index_select(0, sel),
            },
            Self::PerSample { edges, attr } => Self::PerSample {
                edges: idx.iter().map(|&i| edges[i as usize].clone()).collect(),
                attr: idx
                    .iter()
                    .map(|&i| attr[i as usize].shallow_clone())
                    .collect(),
            },
        }
    }
}

/// Every frame `a + 1, …, a + Δ` of each window's horizon (`a` the condition frame), from which
/// [`Prepared::train_batch`] draws uneven targets.
#[derive(Debug)]
pub struct Horizon {
    /// `[S, Δ, N, 3]` positions, normalised as [`Prepared::y`].
    pub y: Tensor,
    /// `[S, Δ, N, 3]` velocities.
    pub vy: Tensor,
    /// Time of one frame, in the dataset's time unit.
    pub dt: f64,
}

impl Horizon {
    /// The sorted frame offsets (in `1..=Δ`, distinct) of sample `sample`'s targets in epoch
    /// `epoch`: `t` of the `Δ` offsets drawn uniformly without replacement by a generator seeded
    /// from `(seed, epoch, sample)` alone, so a draw does not depend on the batch or the order.
    pub fn offsets(&self, seed: u64, epoch: u64, sample: i64, t: usize) -> Vec<usize> {
        let delta = self.y.size()[1] as usize;
        let key = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17)
            ^ epoch.wrapping_mul(0xA24B_AED4_963E_E407)
            ^ (sample as u64).wrapping_mul(0xD6E8_FEB8_6659_FD93);
        let mut rng = ChaCha8Rng::seed_from_u64(key);
        let mut picked: Vec<usize> = rand::seq::index::sample(&mut rng, delta, t.min(delta))
            .into_iter()
            .map(|k| k + 1)
            .collect();
        picked.sort_unstable();
        picked
    }
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
    /// `[B·E, A]` (`[ΣE_b, A]` with a graph per sample), in the order of the graph's edges.
    pub edge_attr: Tensor,
    /// The block-diagonal graph of the B samples.
    pub graph: GraphBatch,
    /// Whether every sample has the dataset's one graph (else each has its own, and spectral
    /// layers take each sample's basis).
    pub shared_graph: bool,
    /// The graphs of the spectral basis when they are not [`Batch::graph`]
    /// (`data.spectral_graph`): each sample's own.
    pub spectral_graph: Option<GraphBatch>,
    /// `[B, 3]`, `[B]`.
    pub center: Tensor,
    /// See `center`.
    pub scale: Tensor,
    /// `[B, T]` (`Kind::Double`) each sample's own target times, in the dataset's time unit, when
    /// they differ from [`Prepared::target_times`] (uneven training targets); `None` otherwise.
    pub times: Option<Tensor>,
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
    let mut prepared = prepare_windows(&ds, cfg, per_trajectory)?;
    if cfg.uneven_targets && split == Split::Train {
        prepared.horizon = Some(horizon(&ds, cfg, per_trajectory, &prepared)?);
    }
    Ok((ds, prepared))
}

/// Every frame of the horizon of each window [`prepare_windows`] cut into `p`: the same windows
/// with `T = Δ` consecutive targets.
fn horizon(
    ds: &Dataset,
    cfg: &DataConfig,
    per_trajectory: Option<usize>,
    p: &Prepared,
) -> Result<Horizon> {
    let all = DataConfig {
        num_targets: cfg.delta_frame,
        targets: TargetFrames::Consecutive,
        uneven_targets: false,
        ..cfg.clone()
    };
    let dense = prepare_windows(ds, &all, per_trajectory)?;
    ensure!(
        dense.samples == p.samples,
        "the horizon frames cut {} windows, the targets {}",
        dense.samples,
        p.samples
    );
    let dt = dense.target_times.first().copied().unwrap_or(f64::NAN);
    ensure!(
        dt.is_finite() && dt > 0.0,
        "uneven targets need a positive frame time, got {dt}"
    );
    Ok(Horizon {
        y: dense.y,
        vy: dense.vy,
        dt,
    })
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
    let shared = if cfg.graph.per_window() {
        None
    } else if nbody {
        Some(EdgeList::complete(n))
    } else {
        match ds.trajectories()[0].edges() {
            Some(e) => Some(e.clone()),
            None => bail!(
                "dataset `{}` has no edge list and is not an N-body system: set data.graph = \
                 \"radius\" or \"knn\" to build each window's graph from its positions",
                ds.meta().name
            ),
        }
    };
    // one edge list for every window, or each window's own
    let shared_edges = shared.as_ref().map(EdgeList::directed);
    let own = if shared.is_some() {
        Vec::new()
    } else {
        windows
            .iter()
            .map(|s| window_graph(s, cfg.graph))
            .collect::<Result<Vec<EdgeList>>>()?
    };
    let spectral = cfg
        .spectral_graph
        .map(|how| {
            windows
                .iter()
                .map(|s| window_graph(s, how).map(|g| Vec::<(usize, usize)>::from(&g)))
                .collect::<Result<Vec<_>>>()
        })
        .transpose()?;
    let undirected = match (&spectral, &shared) {
        (Some(each), _) => each[0].clone(),
        (None, Some(g)) => Vec::<(usize, usize)>::from(g),
        (None, None) => Vec::<(usize, usize)>::from(&own[0]),
    };

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
    let (mut x0, mut v0, mut h, mut y, mut vy) = (vec![], vec![], vec![], vec![], vec![]);
    let (mut sample_edges, mut sample_attr) = (Vec::new(), Vec::<Vec<f64>>::new());
    let (mut center, mut scale) = (vec![], vec![]);
    let mut target_times = vec![];
    let mut feat_dim = 0;
    let mut attr_dim = 0;
    for (k, s) in windows.iter().enumerate() {
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
        let directed = shared_edges.is_none().then(|| own[k].directed());
        let edges = directed
            .as_deref()
            .or(shared_edges.as_deref())
            .context("internal: no edges for a window")?;
        let mut ea = Vec::with_capacity(edges.len() * attr_dim);
        for &(r, snd) in edges {
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
        if let Some(d) = directed {
            sample_edges.push(d);
        }
        sample_attr.push(ea);
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
    let f32s = |v: &[f64], shape: &[i64]| Tensor::from_slice(v).to_kind(Kind::Float).reshape(shape);
    let a = attr_dim as i64;
    let graphs = if let Some(edges) = shared_edges {
        let e = edges.len() as i64;
        SampleGraphs::Shared {
            edges,
            attr: f32s(&sample_attr.concat(), &[samples, e, a]),
        }
    } else {
        SampleGraphs::PerSample {
            attr: sample_attr
                .iter()
                .zip(&sample_edges)
                .map(|(ea, e)| f32s(ea, &[e.len() as i64, a]))
                .collect(),
            edges: sample_edges,
        }
    };
    Ok(Prepared {
        samples,
        n,
        t,
        x0: f32s(&x0, &[samples, n, 3]),
        v0: f32s(&v0, &[samples, n, 3]),
        h: f32s(&h, &[samples, n, feat_dim as i64]),
        y: f32s(&y, &[samples, t, n, 3]),
        vy: f32s(&vy, &[samples, t, n, 3]),
        graphs,
        undirected,
        spectral,
        center: Tensor::from_slice(&center).reshape([samples, 3]),
        scale: Tensor::from_slice(&scale),
        target_times,
        horizon: None,
    })
}

impl Prepared {
    /// Node feature width F.
    pub fn node_dim(&self) -> i64 {
        self.h.size()[2]
    }

    /// Edge attribute width A.
    pub fn edge_dim(&self) -> i64 {
        self.graphs.edge_dim()
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
            graphs: self.graphs.select(idx, &sel),
            undirected: self.undirected.clone(),
            spectral: self
                .spectral
                .as_ref()
                .map(|each| idx.iter().map(|&i| each[i as usize].clone()).collect()),
            center: take(&self.center),
            scale: take(&self.scale),
            target_times: self.target_times.clone(),
            horizon: self.horizon.as_ref().map(|h| Horizon {
                y: take(&h.y),
                vy: take(&h.vy),
                dt: h.dt,
            }),
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
            edge_attr: match &self.graphs {
                SampleGraphs::Shared { edges, attr } => {
                    take(attr).reshape([b * edges.len() as i64, self.edge_dim()])
                }
                SampleGraphs::PerSample { attr, .. } => {
                    let parts: Vec<&Tensor> = idx.iter().map(|&i| &attr[i as usize]).collect();
                    Tensor::cat(&parts, 0).to_device(device)
                }
            },
            graph: graphs.get(self, idx, device)?,
            shared_graph: matches!(self.graphs, SampleGraphs::Shared { .. }),
            spectral_graph: self
                .spectral
                .as_ref()
                .map(|each| {
                    let graphs = idx
                        .iter()
                        .map(|&i| {
                            let bonds: Vec<(i64, i64)> = each[i as usize]
                                .iter()
                                .map(|&(a, b)| (a as i64, b as i64))
                                .collect();
                            GraphBatch::from_undirected(self.n, &bonds, device)
                        })
                        .collect::<graph_nets::Result<Vec<_>>>()?;
                    GraphBatch::batch(&graphs)
                })
                .transpose()?,
            center: take(&self.center),
            scale: take(&self.scale),
            times: None,
        })
    }

    /// The training batch of the samples at `idx` in epoch `epoch` (0-based): [`Prepared::batch`]
    /// when the split has no [`Prepared::horizon`]; otherwise each sample's targets are the
    /// frames [`Horizon::offsets`] draws for `(seed, epoch, sample)`, and [`Batch::times`] carries
    /// their times.
    pub fn train_batch(
        &self,
        idx: &[i64],
        seed: u64,
        epoch: u64,
        device: Device,
        graphs: &mut GraphCache,
    ) -> Result<Batch> {
        let mut batch = self.batch(idx, device, graphs)?;
        let Some(hz) = &self.horizon else {
            return Ok(batch);
        };
        let (b, t) = (idx.len() as i64, self.t);
        let offsets: Vec<i64> = idx
            .iter()
            .flat_map(|&i| hz.offsets(seed, epoch, i, t as usize))
            .map(|o| o as i64)
            .collect();
        ensure!(
            offsets.len() as i64 == b * t,
            "the horizon has {} frames, fewer than the {t} targets",
            hz.y.size()[1]
        );
        let rows = Tensor::from_slice(&offsets).view([b, t]);
        let sel = Tensor::from_slice(idx);
        let pick = |dense: &Tensor| {
            let gather = (&rows - 1)
                .view([b, t, 1, 1])
                .expand([b, t, self.n, 3], false);
            dense
                .index_select(0, &sel)
                .gather(1, &gather, false)
                .permute([1, 0, 2, 3])
                .reshape([t, b * self.n, 3])
                .to_device(device)
        };
        batch.y = pick(&hz.y);
        batch.vy = pick(&hz.vy);
        batch.times = Some((rows.to_kind(Kind::Double) * hz.dt).to_device(device));
        Ok(batch)
    }
}

/// Batched graphs by batch size, when all samples share one graph (a graph per sample is
/// batched anew for each batch).
#[derive(Debug, Default)]
pub struct GraphCache {
    by_size: HashMap<i64, GraphBatch>,
}

impl GraphCache {
    fn get(&mut self, p: &Prepared, idx: &[i64], device: Device) -> Result<GraphBatch> {
        let b = idx.len() as i64;
        let edges = match &p.graphs {
            SampleGraphs::Shared { edges, .. } => edges,
            SampleGraphs::PerSample { edges, .. } => {
                let each = idx
                    .iter()
                    .map(|&i| GraphBatch::from_edges(p.n, &edges[i as usize], device))
                    .collect::<graph_nets::Result<Vec<_>>>()?;
                return Ok(GraphBatch::batch(&each)?);
            }
        };
        if let Some(g) = self.by_size.get(&b) {
            return Ok(g.clone());
        }
        let one = GraphBatch::from_edges(p.n, edges, device)?;
        let g = GraphBatch::batch(&vec![one; b as usize])?;
        self.by_size.insert(b, g.clone());
        Ok(g)
    }
}

/// The graph of one window's condition frame (`data.graph`): its radius or k-NN graph, with the
/// cutoff in the dataset's length unit (the window's coordinates may be normalised). A radius
/// may leave nodes, or a whole window, without edges: message passing then leaves them alone.
fn window_graph(s: &traj_data::Sample, how: WindowGraph) -> Result<EdgeList> {
    let n = s.num_nodes;
    let last = (s.condition_frames.len() - 1) * n * 3;
    let scale = s.transform.scale;
    let points: Vec<[f64; 3]> = s.condition_positions[last..last + n * 3]
        .chunks_exact(3)
        .map(|p| [p[0] * scale, p[1] * scale, p[2] * scale])
        .collect();
    let graph = match how {
        WindowGraph::Dataset => bail!("window_graph: the dataset's graph is not per window"),
        WindowGraph::Radius { cutoff } => spectral_core::Graph::radius(&points, cutoff),
        WindowGraph::Knn { k } => spectral_core::Graph::knn(&points, k),
    }
    .with_context(|| {
        format!(
            "data.graph: the graph of trajectory {}'s window at frame {}",
            s.trajectory, s.anchor
        )
    })?;
    let pairs: Vec<[usize; 2]> = graph.edges().iter().map(|&(i, j, _)| [i, j]).collect();
    Ok(EdgeList::new(pairs)?)
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
