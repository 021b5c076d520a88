//! One trajectory of a particle system, and its (fixed, undirected) edge list.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::ops::Range;

use crate::error::{Element, Error, Result, check_finite};

/// Free-form metadata: a JSON object (string keys, JSON values). Stored verbatim in the file header.
pub type MetadataMap = BTreeMap<String, serde_json::Value>;

/// A fixed undirected edge list with optional per-edge attributes (e.g. spring constant, bond type).
///
/// Each edge is stored once, as `[a, b]` with `a < b`; self-loops and duplicates (in either
/// orientation) are rejected. Attributes are row-major `E × A`.
#[derive(Clone, Debug, PartialEq)]
pub struct EdgeList {
    pairs: Vec<[usize; 2]>,
    attributes: Vec<f64>,
    num_attributes: usize,
}

impl EdgeList {
    /// An edge list without attributes. Pairs are reordered to `[min, max]`.
    ///
    /// # Errors
    /// [`Error::SelfLoop`] or [`Error::DuplicateEdge`].
    pub fn new(pairs: Vec<[usize; 2]>) -> Result<Self> {
        let mut seen: HashMap<[usize; 2], usize> = HashMap::with_capacity(pairs.len());
        let mut canonical = Vec::with_capacity(pairs.len());
        for (edge, &[a, b]) in pairs.iter().enumerate() {
            if a == b {
                return Err(Error::SelfLoop { edge, node: a });
            }
            let key = [a.min(b), a.max(b)];
            if let Some(&first) = seen.get(&key) {
                return Err(Error::DuplicateEdge { edge, first, a, b });
            }
            seen.insert(key, edge);
            canonical.push(key);
        }
        Ok(Self {
            pairs: canonical,
            attributes: Vec::new(),
            num_attributes: 0,
        })
    }

    /// An edge list of pairs already `[a, b]` with `a < b` and distinct (a builder that makes
    /// them so, like [`crate::convert::contact_edges`]).
    pub(crate) fn from_canonical(pairs: Vec<[usize; 2]>) -> Self {
        debug_assert!(pairs.iter().all(|&[a, b]| a < b));
        Self {
            pairs,
            attributes: Vec::new(),
            num_attributes: 0,
        }
    }

    /// The complete graph on `n` nodes: every pair `[i, j]`, `i < j`, in the order `(i, j)`
    /// ascending (as `spectral_core::Graph::complete`), without attributes.
    pub fn complete(n: usize) -> Self {
        Self::from_canonical(
            (0..n)
                .flat_map(|i| (i + 1..n).map(move |j| [i, j]))
                .collect(),
        )
    }

    /// The edges in both directions, `(a, b)` then `(b, a)` for each edge in order, as the
    /// `(receiver, sender)` pairs of a message-passing graph (e.g. `graph_nets::GraphBatch`).
    pub fn directed(&self) -> Vec<(i64, i64)> {
        self.pairs
            .iter()
            .flat_map(|&[a, b]| [(a as i64, b as i64), (b as i64, a as i64)])
            .collect()
    }

    /// Attaches `E × num_attributes` attributes (row-major). `num_attributes = 0` removes them.
    ///
    /// # Errors
    /// [`Error::Length`] on a size mismatch, [`Error::NonFinite`] on NaN/Inf.
    pub fn with_attributes(mut self, attributes: Vec<f64>, num_attributes: usize) -> Result<Self> {
        let expected = self.pairs.len() * num_attributes;
        if attributes.len() != expected {
            return Err(Error::Length {
                what: format!(
                    "edge attributes [E={}, A={num_attributes}]",
                    self.pairs.len()
                ),
                expected,
                got: attributes.len(),
            });
        }
        let a = num_attributes.max(1);
        check_finite("edge attributes", &attributes, |i| Element::Edge {
            edge: i / a,
            column: i % a,
        })?;
        self.attributes = attributes;
        self.num_attributes = num_attributes;
        Ok(self)
    }

    /// Number of edges `E`.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// Whether there are no edges.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// The edges, each `[a, b]` with `a < b`.
    pub fn pairs(&self) -> &[[usize; 2]] {
        &self.pairs
    }

    /// Attributes per edge `A` (0 when there are none).
    pub fn num_attributes(&self) -> usize {
        self.num_attributes
    }

    /// All attributes, row-major `E × A`.
    pub fn attributes(&self) -> &[f64] {
        &self.attributes
    }

    /// The attributes of edge `e` (`A` values).
    ///
    /// # Panics
    /// If `e >= self.len()`.
    #[track_caller]
    pub fn attribute(&self, e: usize) -> &[f64] {
        &self.attributes[e * self.num_attributes..(e + 1) * self.num_attributes]
    }

    fn check_nodes(&self, num_nodes: usize) -> Result<()> {
        for (edge, &[a, b]) in self.pairs.iter().enumerate() {
            // pairs are [min, max], so only `b` can be out of range first
            if b >= num_nodes {
                return Err(Error::EdgeOutOfRange {
                    edge,
                    a,
                    b,
                    node: b,
                    num_nodes,
                });
            }
        }
        Ok(())
    }
}

/// The undirected edges as `(a, b)` tuples, `a < b`, in edge order: the form
/// `spectral_core::Graph::from_edges` and the spatial Laplacian take.
impl From<&EdgeList> for Vec<(usize, usize)> {
    fn from(e: &EdgeList) -> Self {
        e.pairs.iter().map(|&[a, b]| (a, b)).collect()
    }
}

/// [`EdgeList::new`] (either orientation; self-loops and duplicates rejected).
impl TryFrom<Vec<[usize; 2]>> for EdgeList {
    type Error = Error;

    fn try_from(pairs: Vec<[usize; 2]>) -> Result<Self> {
        Self::new(pairs)
    }
}

/// [`EdgeList::new`] from `(a, b)` tuples (e.g. `spectral_core::Graph`'s edges without weights).
impl TryFrom<&[(usize, usize)]> for EdgeList {
    type Error = Error;

    fn try_from(pairs: &[(usize, usize)]) -> Result<Self> {
        Self::new(pairs.iter().map(|&(a, b)| [a, b]).collect())
    }
}

/// One trajectory: `T` frames of `N` nodes in 3D, with optional velocities, per-node features and
/// integer types, a fixed undirected edge list and a metadata map.
///
/// Coordinates are `f64`: the simulators integrate in `f64`, energies and normalisation statistics
/// are computed in `f64`, and the file round trip is then exact; models convert to `f32` when they
/// batch.
///
/// # Shapes
/// - positions, velocities: `T × N × 3`, row-major (frame, node, xyz)
/// - node features: `N × F`, node types: `N`
/// - edges: `E` pairs, edge attributes `E × A`
#[derive(Clone, Debug, PartialEq)]
pub struct Trajectory {
    num_frames: usize,
    num_nodes: usize,
    positions: Vec<f64>,
    velocities: Option<Vec<f64>>,
    node_features: Option<Vec<f64>>,
    num_node_features: usize,
    node_types: Option<Vec<i64>>,
    edges: Option<EdgeList>,
    metadata: MetadataMap,
}

fn check_frames(what: &'static str, values: &[f64], num_nodes: usize) -> Result<()> {
    check_finite(what, values, |i| Element::Frame {
        frame: i / (3 * num_nodes),
        node: (i / 3) % num_nodes,
        component: i % 3,
    })
}

impl Trajectory {
    /// A trajectory from `num_frames × num_nodes × 3` positions (row-major).
    ///
    /// # Errors
    /// [`Error::Length`] when the length does not match or either count is 0,
    /// [`Error::NonFinite`] naming frame, node and component of the first NaN/Inf.
    pub fn new(num_frames: usize, num_nodes: usize, positions: Vec<f64>) -> Result<Self> {
        let expected = num_frames * num_nodes * 3;
        if num_frames == 0 || num_nodes == 0 || positions.len() != expected {
            return Err(Error::Length {
                what: format!("positions [T={num_frames}, N={num_nodes}, 3] (T, N >= 1)"),
                expected,
                got: positions.len(),
            });
        }
        check_frames("positions", &positions, num_nodes)?;
        Ok(Self {
            num_frames,
            num_nodes,
            positions,
            velocities: None,
            node_features: None,
            num_node_features: 0,
            node_types: None,
            edges: None,
            metadata: MetadataMap::new(),
        })
    }

    /// Adds velocities, `T × N × 3` like the positions.
    ///
    /// # Errors
    /// [`Error::Length`], [`Error::NonFinite`].
    pub fn with_velocities(mut self, velocities: Vec<f64>) -> Result<Self> {
        if velocities.len() != self.positions.len() {
            return Err(Error::Length {
                what: format!(
                    "velocities [T={}, N={}, 3]",
                    self.num_frames, self.num_nodes
                ),
                expected: self.positions.len(),
                got: velocities.len(),
            });
        }
        check_frames("velocities", &velocities, self.num_nodes)?;
        self.velocities = Some(velocities);
        Ok(self)
    }

    /// Adds per-node features, `N × num_features` (row-major), `num_features >= 1`.
    ///
    /// # Errors
    /// [`Error::Length`], [`Error::NonFinite`].
    pub fn with_node_features(mut self, features: Vec<f64>, num_features: usize) -> Result<Self> {
        let expected = self.num_nodes * num_features;
        if num_features == 0 || features.len() != expected {
            return Err(Error::Length {
                what: format!(
                    "node features [N={}, F={num_features}] (F >= 1)",
                    self.num_nodes
                ),
                expected,
                got: features.len(),
            });
        }
        check_finite("node features", &features, |i| Element::Node {
            node: i / num_features,
            column: i % num_features,
        })?;
        self.node_features = Some(features);
        self.num_node_features = num_features;
        Ok(self)
    }

    /// Adds integer node types (`N` values, each `>= 0`).
    ///
    /// # Errors
    /// [`Error::Length`], [`Error::InvalidValue`] for a negative type.
    pub fn with_node_types(mut self, types: Vec<i64>) -> Result<Self> {
        if types.len() != self.num_nodes {
            return Err(Error::Length {
                what: format!("node types [N={}]", self.num_nodes),
                expected: self.num_nodes,
                got: types.len(),
            });
        }
        if let Some(node) = types.iter().position(|&t| t < 0) {
            return Err(Error::InvalidValue {
                what: "node types",
                at: Element::Node { node, column: 0 },
                value: types[node].to_string(),
                reason: "node types must be >= 0",
            });
        }
        self.node_types = Some(types);
        Ok(self)
    }

    /// Attaches a fixed undirected edge list.
    ///
    /// # Errors
    /// [`Error::EdgeOutOfRange`] when an endpoint is `>= N`.
    pub fn with_edges(mut self, edges: EdgeList) -> Result<Self> {
        edges.check_nodes(self.num_nodes)?;
        self.edges = Some(edges);
        Ok(self)
    }

    /// Replaces the metadata map.
    pub fn with_metadata(mut self, metadata: MetadataMap) -> Self {
        self.metadata = metadata;
        self
    }

    /// Number of frames `T`.
    pub fn num_frames(&self) -> usize {
        self.num_frames
    }

    /// Number of nodes `N`.
    pub fn num_nodes(&self) -> usize {
        self.num_nodes
    }

    /// Positions, `T × N × 3` row-major.
    pub fn positions(&self) -> &[f64] {
        &self.positions
    }

    /// Positions of frame `t`, `N × 3`.
    ///
    /// # Panics
    /// If `t >= T`.
    #[track_caller]
    pub fn frame_positions(&self, t: usize) -> &[f64] {
        let n3 = self.num_nodes * 3;
        &self.positions[t * n3..(t + 1) * n3]
    }

    /// Position of node `n` at frame `t`.
    ///
    /// # Panics
    /// If `t >= T` or `n >= N`.
    #[track_caller]
    pub fn position(&self, t: usize, n: usize) -> [f64; 3] {
        assert!(n < self.num_nodes, "node {n} out of range");
        let i = (t * self.num_nodes + n) * 3;
        [
            self.positions[i],
            self.positions[i + 1],
            self.positions[i + 2],
        ]
    }

    /// Velocities, `T × N × 3`, if stored.
    pub fn velocities(&self) -> Option<&[f64]> {
        self.velocities.as_deref()
    }

    /// Velocities of frame `t`, `N × 3`, if stored.
    ///
    /// # Panics
    /// If `t >= T`.
    #[track_caller]
    pub fn frame_velocities(&self, t: usize) -> Option<&[f64]> {
        let n3 = self.num_nodes * 3;
        self.velocities.as_deref().map(|v| &v[t * n3..(t + 1) * n3])
    }

    /// Node features, `N × F`, if stored.
    pub fn node_features(&self) -> Option<&[f64]> {
        self.node_features.as_deref()
    }

    /// Features per node `F` (0 when there are none).
    pub fn num_node_features(&self) -> usize {
        self.num_node_features
    }

    /// Integer node types, `N`, if stored.
    pub fn node_types(&self) -> Option<&[i64]> {
        self.node_types.as_deref()
    }

    /// The fixed edge list, if any.
    pub fn edges(&self) -> Option<&EdgeList> {
        self.edges.as_ref()
    }

    /// The metadata map.
    pub fn metadata(&self) -> &MetadataMap {
        &self.metadata
    }

    /// The anchors of this trajectory's own windows: the metadata entry
    /// [`crate::START_FRAMES_KEY`] (`start_frames`), a list of frame indices, in the order listed.
    ///
    /// # Errors
    /// [`Error::InvalidMetadata`] when the entry is absent, not a list, or holds something other
    /// than a non-negative integer.
    pub fn start_frames(&self) -> Result<Vec<usize>> {
        let key = crate::window::START_FRAMES_KEY;
        let bad = |reason: String| Error::InvalidMetadata { reason };
        let list = match self.metadata.get(key) {
            None => {
                return Err(bad(format!(
                    "no `{key}` in the trajectory's metadata (the window spec starts windows there)"
                )));
            }
            Some(serde_json::Value::Array(list)) => list,
            Some(other) => {
                return Err(bad(format!(
                    "`{key}` is {other}, not a list of frame indices"
                )));
            }
        };
        list.iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_u64()
                    .and_then(|a| usize::try_from(a).ok())
                    .ok_or_else(|| bad(format!("`{key}` entry {i} is {v}, not a frame index")))
            })
            .collect()
    }

    /// Records the anchors of this trajectory's own windows under [`crate::START_FRAMES_KEY`]
    /// (see [`Trajectory::start_frames`]).
    pub fn with_start_frames(mut self, anchors: &[usize]) -> Self {
        self.metadata.insert(
            crate::window::START_FRAMES_KEY.into(),
            serde_json::Value::from(anchors.to_vec()),
        );
        self
    }

    /// Mutable access to the metadata map.
    pub fn metadata_mut(&mut self) -> &mut MetadataMap {
        &mut self.metadata
    }

    /// The frames `range` of this trajectory (everything else is kept).
    ///
    /// # Errors
    /// [`Error::IndexOutOfRange`] when the range is empty or past the end.
    pub fn slice_frames(&self, range: Range<usize>) -> Result<Trajectory> {
        if range.start >= range.end || range.end > self.num_frames {
            return Err(Error::IndexOutOfRange {
                what: "frame range end",
                index: range.end,
                len: self.num_frames,
            });
        }
        let n3 = self.num_nodes * 3;
        let cut = |v: &[f64]| v[range.start * n3..range.end * n3].to_vec();
        Ok(Trajectory {
            num_frames: range.len(),
            positions: cut(&self.positions),
            velocities: self.velocities.as_deref().map(cut),
            ..self.clone()
        })
    }

    /// Mutable positions and velocities, for in-crate transforms that keep values finite.
    pub(crate) fn coordinates_mut(&mut self) -> (&mut [f64], Option<&mut [f64]>) {
        (&mut self.positions, self.velocities.as_deref_mut())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edge_list_conversions() {
        let k4 = EdgeList::complete(4);
        assert_eq!(
            Vec::<(usize, usize)>::from(&k4),
            vec![(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
        );
        assert!(EdgeList::complete(0).is_empty() && EdgeList::complete(1).is_empty());
        let e = EdgeList::try_from(vec![[2, 0], [1, 2]]).unwrap();
        assert_eq!(e.pairs(), &[[0, 2], [1, 2]]);
        assert_eq!(e.directed(), vec![(0, 2), (2, 0), (1, 2), (2, 1)]);
        let tuples = Vec::<(usize, usize)>::from(&e);
        assert_eq!(EdgeList::try_from(&tuples[..]).unwrap(), e);
        assert!(matches!(
            EdgeList::try_from(vec![[1, 1]]),
            Err(Error::SelfLoop { node: 1, .. })
        ));
        assert!(matches!(
            EdgeList::try_from(&[(0, 1), (1, 0)][..]),
            Err(Error::DuplicateEdge {
                edge: 1,
                first: 0,
                ..
            })
        ));
    }

    fn line(t: usize, n: usize) -> Vec<f64> {
        (0..t * n * 3).map(|i| i as f64).collect()
    }

    #[test]
    fn nan_position_names_frame_node_component() {
        let mut p = line(4, 3);
        p[(2 * 3 + 1) * 3 + 2] = f64::NAN;
        let err = Trajectory::new(4, 3, p).unwrap_err();
        assert_eq!(
            err.to_string(),
            "positions: non-finite value NaN at frame 2, node 1, component z"
        );
    }

    #[test]
    fn shape_errors() {
        assert!(matches!(
            Trajectory::new(4, 3, line(4, 2)),
            Err(Error::Length {
                expected: 36,
                got: 24,
                ..
            })
        ));
        assert!(Trajectory::new(0, 3, vec![]).is_err());
        let t = Trajectory::new(4, 3, line(4, 3)).unwrap();
        assert!(t.clone().with_velocities(line(3, 3)).is_err());
        assert!(t.clone().with_node_features(vec![1.0; 5], 2).is_err());
        assert!(t.clone().with_node_features(vec![], 0).is_err());
        assert!(t.clone().with_node_types(vec![0, 1]).is_err());
        let err = t.clone().with_node_types(vec![0, -1, 2]).unwrap_err();
        assert!(err.to_string().contains("node 1"), "{err}");
        let err = t
            .clone()
            .with_node_features(vec![1.0, 2.0, f64::INFINITY, 0.0, 0.0, 0.0], 2)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "node features: non-finite value inf at node 1, column 0"
        );
    }

    #[test]
    fn edges_are_checked() {
        assert!(matches!(
            EdgeList::new(vec![[1, 1]]),
            Err(Error::SelfLoop { edge: 0, node: 1 })
        ));
        assert!(matches!(
            EdgeList::new(vec![[0, 1], [2, 0], [1, 0]]),
            Err(Error::DuplicateEdge {
                edge: 2,
                first: 0,
                ..
            })
        ));
        let e = EdgeList::new(vec![[2, 0], [0, 5]]).unwrap();
        assert_eq!(e.pairs(), &[[0, 2], [0, 5]]);
        let t = Trajectory::new(1, 3, vec![0.0; 9]).unwrap();
        let err = t.with_edges(e.clone()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "edge 1 (0, 5) refers to node 5, but there are only 3 nodes"
        );
        assert!(e.clone().with_attributes(vec![1.0], 1).is_err());
        let err = e.with_attributes(vec![1.0, f64::NAN], 1).unwrap_err();
        assert!(err.to_string().contains("edge 1, column 0"), "{err}");
    }

    #[test]
    fn slicing_keeps_everything_else() {
        let t = Trajectory::new(5, 2, line(5, 2))
            .unwrap()
            .with_velocities(line(5, 2))
            .unwrap()
            .with_node_types(vec![3, 4])
            .unwrap();
        let s = t.slice_frames(1..3).unwrap();
        assert_eq!(s.num_frames(), 2);
        assert_eq!(s.frame_positions(0), t.frame_positions(1));
        assert_eq!(s.frame_velocities(1), t.frame_velocities(2));
        assert_eq!(s.node_types(), t.node_types());
        assert_eq!(s.position(1, 1), t.position(2, 1));
        assert!(t.slice_frames(3..3).is_err());
        assert!(t.slice_frames(2..6).is_err());
    }
}
