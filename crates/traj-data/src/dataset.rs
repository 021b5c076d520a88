//! A dataset: trajectories sharing a node count and feature layout, plus dataset metadata.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::normalize::NormalizationRecord;
use crate::split::Split;
use crate::trajectory::Trajectory;

/// What every trajectory of a dataset has in common: node count and which arrays are present.
///
/// The number of frames and the edge list itself may differ between trajectories (e.g. each
/// springs trajectory has its own random springs); whether there is an edge list, and its number
/// of attributes, may not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetLayout {
    /// Nodes per frame `N`.
    pub num_nodes: usize,
    /// Features per node `F` (0: no node features).
    pub num_node_features: usize,
    /// Whether velocities are stored.
    pub has_velocities: bool,
    /// Whether integer node types are stored.
    pub has_node_types: bool,
    /// Whether each trajectory carries an edge list.
    pub has_edges: bool,
    /// Attributes per edge `A` (0 when there are none, or no edges).
    pub num_edge_attributes: usize,
}

impl DatasetLayout {
    /// The layout of one trajectory.
    pub fn of(trajectory: &Trajectory) -> Self {
        Self {
            num_nodes: trajectory.num_nodes(),
            num_node_features: trajectory.num_node_features(),
            has_velocities: trajectory.velocities().is_some(),
            has_node_types: trajectory.node_types().is_some(),
            has_edges: trajectory.edges().is_some(),
            num_edge_attributes: trajectory.edges().map_or(0, |e| e.num_attributes()),
        }
    }

    /// Checks that `trajectory` has this layout.
    ///
    /// # Errors
    /// [`Error::LayoutMismatch`] naming the first difference.
    pub fn check(&self, trajectory: &Trajectory) -> Result<()> {
        let got = Self::of(trajectory);
        let fields: [(&'static str, String, String); 6] = [
            (
                "number of nodes",
                self.num_nodes.to_string(),
                got.num_nodes.to_string(),
            ),
            (
                "number of node features",
                self.num_node_features.to_string(),
                got.num_node_features.to_string(),
            ),
            (
                "velocities present",
                self.has_velocities.to_string(),
                got.has_velocities.to_string(),
            ),
            (
                "node types present",
                self.has_node_types.to_string(),
                got.has_node_types.to_string(),
            ),
            (
                "edge list present",
                self.has_edges.to_string(),
                got.has_edges.to_string(),
            ),
            (
                "number of edge attributes",
                self.num_edge_attributes.to_string(),
                got.num_edge_attributes.to_string(),
            ),
        ];
        for (what, expected, got) in fields {
            if expected != got {
                return Err(Error::LayoutMismatch {
                    what,
                    expected,
                    got,
                });
            }
        }
        Ok(())
    }
}

/// Dataset-level metadata, stored in the file header.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetMeta {
    /// Dataset name, e.g. `nbody-charged`.
    pub name: String,
    /// Physical system, e.g. `charged`, `springs`, `gravity`, `md17-aspirin`.
    pub system: String,
    /// Time between consecutive saved frames, in `time_unit`.
    pub dt: f64,
    /// Length unit of positions (e.g. `dimensionless`, `angstrom`).
    pub length_unit: String,
    /// Time unit of `dt` (e.g. `dimensionless`, `fs`).
    pub time_unit: String,
    /// Names of the node feature columns (empty, or exactly `F` names).
    #[serde(default)]
    pub node_feature_names: Vec<String>,
    /// Names of the edge attribute columns (empty, or exactly `A` names).
    #[serde(default)]
    pub edge_attribute_names: Vec<String>,
    /// Generator parameters (for generated data) or source description; any JSON.
    #[serde(default)]
    pub generator: serde_json::Value,
    /// Seed the data was generated with, if any.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Which split these trajectories are, if known.
    #[serde(default)]
    pub split: Option<Split>,
    /// The normalisation applied to positions and velocities, if any (see [`crate::Normalization`]).
    #[serde(default)]
    pub normalization: Option<NormalizationRecord>,
}

impl DatasetMeta {
    /// Metadata with the given name, system and frame spacing; units `dimensionless`, the rest empty.
    pub fn new(name: impl Into<String>, system: impl Into<String>, dt: f64) -> Self {
        Self {
            name: name.into(),
            system: system.into(),
            dt,
            length_unit: "dimensionless".into(),
            time_unit: "dimensionless".into(),
            node_feature_names: Vec::new(),
            edge_attribute_names: Vec::new(),
            generator: serde_json::Value::Null,
            seed: None,
            split: None,
            normalization: None,
        }
    }

    fn check(&self, layout: &DatasetLayout, num_trajectories: usize) -> Result<()> {
        let bad = |reason: String| Err(Error::InvalidMetadata { reason });
        if !(self.dt.is_finite() && self.dt > 0.0) {
            return bad(format!("dt must be finite and > 0, got {}", self.dt));
        }
        if !self.node_feature_names.is_empty()
            && self.node_feature_names.len() != layout.num_node_features
        {
            return bad(format!(
                "{} node feature names for {} node features",
                self.node_feature_names.len(),
                layout.num_node_features
            ));
        }
        if !self.edge_attribute_names.is_empty()
            && self.edge_attribute_names.len() != layout.num_edge_attributes
        {
            return bad(format!(
                "{} edge attribute names for {} edge attributes",
                self.edge_attribute_names.len(),
                layout.num_edge_attributes
            ));
        }
        if let Some(record) = &self.normalization {
            record.check(num_trajectories)?;
        }
        Ok(())
    }
}

/// A list of trajectories sharing a [`DatasetLayout`], with [`DatasetMeta`].
///
/// Constructed only through validating constructors, so every `Dataset` holds finite values,
/// consistent shapes and in-range edges.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    meta: DatasetMeta,
    layout: DatasetLayout,
    trajectories: Vec<Trajectory>,
}

impl Dataset {
    /// A dataset whose layout is taken from the first trajectory.
    ///
    /// # Errors
    /// [`Error::InvalidMetadata`] when `trajectories` is empty (use [`Dataset::with_layout`]) or the
    /// metadata is inconsistent; [`Error::InTrajectory`] around a [`Error::LayoutMismatch`].
    pub fn new(meta: DatasetMeta, trajectories: Vec<Trajectory>) -> Result<Self> {
        let Some(first) = trajectories.first() else {
            return Err(Error::InvalidMetadata {
                reason: "a dataset built with Dataset::new needs at least one trajectory".into(),
            });
        };
        let layout = DatasetLayout::of(first);
        Self::with_layout(meta, layout, trajectories)
    }

    /// A dataset with an explicit layout; `trajectories` may be empty.
    ///
    /// # Errors
    /// As [`Dataset::new`].
    pub fn with_layout(
        meta: DatasetMeta,
        layout: DatasetLayout,
        trajectories: Vec<Trajectory>,
    ) -> Result<Self> {
        if layout.num_nodes == 0 {
            return Err(Error::InvalidMetadata {
                reason: "layout.num_nodes must be >= 1".into(),
            });
        }
        if !layout.has_edges && layout.num_edge_attributes != 0 {
            return Err(Error::InvalidMetadata {
                reason: "layout has edge attributes but no edges".into(),
            });
        }
        for (i, t) in trajectories.iter().enumerate() {
            layout.check(t).map_err(|e| e.in_trajectory(i))?;
        }
        meta.check(&layout, trajectories.len())?;
        Ok(Self {
            meta,
            layout,
            trajectories,
        })
    }

    /// The metadata.
    pub fn meta(&self) -> &DatasetMeta {
        &self.meta
    }

    /// The shared layout.
    pub fn layout(&self) -> &DatasetLayout {
        &self.layout
    }

    /// Nodes per frame `N`.
    pub fn num_nodes(&self) -> usize {
        self.layout.num_nodes
    }

    /// The trajectories.
    pub fn trajectories(&self) -> &[Trajectory] {
        &self.trajectories
    }

    /// Trajectory `i`.
    ///
    /// # Errors
    /// [`Error::IndexOutOfRange`].
    pub fn trajectory(&self, i: usize) -> Result<&Trajectory> {
        self.trajectories.get(i).ok_or(Error::IndexOutOfRange {
            what: "trajectory",
            index: i,
            len: self.trajectories.len(),
        })
    }

    /// Number of trajectories.
    pub fn len(&self) -> usize {
        self.trajectories.len()
    }

    /// Whether there are no trajectories.
    pub fn is_empty(&self) -> bool {
        self.trajectories.is_empty()
    }

    /// Total number of frames over all trajectories.
    pub fn total_frames(&self) -> usize {
        self.trajectories.iter().map(Trajectory::num_frames).sum()
    }

    /// Splits into metadata, layout and trajectories.
    pub fn into_parts(self) -> (DatasetMeta, DatasetLayout, Vec<Trajectory>) {
        (self.meta, self.layout, self.trajectories)
    }

    /// The trajectories at `indices` (in that order), with metadata (and any per-trajectory
    /// normalisation record) carried along.
    ///
    /// # Errors
    /// [`Error::IndexOutOfRange`].
    pub fn select(&self, indices: &[usize]) -> Result<Dataset> {
        let mut trajectories = Vec::with_capacity(indices.len());
        for &i in indices {
            trajectories.push(self.trajectory(i)?.clone());
        }
        let mut meta = self.meta.clone();
        if let Some(record) = &mut meta.normalization {
            *record = record.select(indices);
        }
        Dataset::with_layout(meta, self.layout, trajectories)
    }

    /// Replaces the metadata (re-validated).
    ///
    /// # Errors
    /// [`Error::InvalidMetadata`].
    pub fn with_meta(mut self, meta: DatasetMeta) -> Result<Dataset> {
        meta.check(&self.layout, self.trajectories.len())?;
        self.meta = meta;
        Ok(self)
    }

    /// Mutable trajectories and metadata, for in-crate transforms that keep the layout.
    pub(crate) fn parts_mut(&mut self) -> (&mut DatasetMeta, &mut [Trajectory]) {
        (&mut self.meta, &mut self.trajectories)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trajectory::EdgeList;

    fn traj(n: usize) -> Trajectory {
        Trajectory::new(2, n, vec![0.5; 2 * n * 3]).unwrap()
    }

    #[test]
    fn layout_mismatch_names_trajectory() {
        let meta = DatasetMeta::new("t", "test", 0.1);
        let err = Dataset::new(meta.clone(), vec![traj(3), traj(3), traj(4)]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "trajectory 2: layout mismatch in number of nodes: the dataset has 3, this trajectory has 4"
        );
        let with_edges = traj(3)
            .with_edges(EdgeList::new(vec![[0, 1]]).unwrap())
            .unwrap();
        let err = Dataset::new(meta, vec![with_edges, traj(3)]).unwrap_err();
        assert!(err.to_string().contains("edge list present"), "{err}");
    }

    #[test]
    fn metadata_is_checked() {
        let mut meta = DatasetMeta::new("t", "test", 0.0);
        assert!(Dataset::new(meta.clone(), vec![traj(2)]).is_err());
        meta.dt = 0.1;
        meta.node_feature_names = vec!["charge".into()];
        let err = Dataset::new(meta.clone(), vec![traj(2)]).unwrap_err();
        assert!(
            err.to_string().contains("1 node feature names for 0"),
            "{err}"
        );
        meta.node_feature_names.clear();
        let ds = Dataset::new(meta.clone(), vec![traj(2), traj(2)]).unwrap();
        assert_eq!(ds.len(), 2);
        assert_eq!(ds.total_frames(), 4);
        assert!(Dataset::new(meta, vec![]).is_err());
    }

    #[test]
    fn select_reorders_and_checks_range() {
        let meta = DatasetMeta::new("t", "test", 0.1);
        let a = traj(2);
        let b = Trajectory::new(3, 2, vec![1.0; 18]).unwrap();
        let ds = Dataset::new(meta, vec![a.clone(), b.clone()]).unwrap();
        let s = ds.select(&[1, 0, 1]).unwrap();
        assert_eq!(s.trajectories(), &[b.clone(), a, b]);
        assert!(matches!(
            ds.select(&[2]),
            Err(Error::IndexOutOfRange {
                index: 2,
                len: 2,
                ..
            })
        ));
        let empty = ds.select(&[]).unwrap();
        assert!(empty.is_empty());
        assert_eq!(empty.num_nodes(), 2);
    }
}
