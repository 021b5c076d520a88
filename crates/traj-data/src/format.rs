//! The on-disk format: one safetensors file per dataset (split), with a versioned JSON header in
//! `__metadata__`. See the crate documentation for the layout.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::path::Path;

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};

use crate::dataset::{Dataset, DatasetLayout, DatasetMeta};
use crate::error::{Element, Error, Result};
use crate::fsutil::atomic_write;
use crate::trajectory::{EdgeList, MetadataMap, Trajectory};

/// The format name stored in the header.
pub const FORMAT_NAME: &str = "traj-data";
/// The format version this crate writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// The `__metadata__` key holding the JSON header.
pub const HEADER_KEY: &str = "traj_data";

const POSITIONS: &str = "positions";
const VELOCITIES: &str = "velocities";
const NODE_FEATURES: &str = "node_features";
const NODE_TYPES: &str = "node_types";
const EDGE_INDEX: &str = "edge_index";
const EDGE_ATTR: &str = "edge_attr";

/// The JSON header (format version 1).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    format: String,
    version: u64,
    layout: DatasetLayout,
    num_frames: Vec<usize>,
    num_edges: Vec<usize>,
    dataset: DatasetMeta,
    trajectory_metadata: Vec<MetadataMap>,
}

fn f64_bytes<'a>(parts: impl Iterator<Item = &'a [f64]>) -> Vec<u8> {
    parts.flatten().flat_map(|x| x.to_le_bytes()).collect()
}

fn i64_bytes(values: impl Iterator<Item = i64>) -> Vec<u8> {
    values.flat_map(i64::to_le_bytes).collect()
}

fn le_f64(data: &[u8]) -> Vec<f64> {
    data.chunks_exact(8)
        .map(|c| f64::from_le_bytes(<[u8; 8]>::try_from(c).expect("chunks of 8")))
        .collect()
}

fn le_i64(data: &[u8]) -> Vec<i64> {
    data.chunks_exact(8)
        .map(|c| i64::from_le_bytes(<[u8; 8]>::try_from(c).expect("chunks of 8")))
        .collect()
}

/// Writes `dataset` to `path` atomically (temporary file, fsync, rename).
///
/// # Errors
/// [`Error::Io`] on I/O failure, [`Error::Container`] if serialisation fails.
pub fn write_dataset(path: impl AsRef<Path>, dataset: &Dataset) -> Result<()> {
    let path = path.as_ref();
    let bytes = encode(dataset, path)?;
    atomic_write(path, &bytes)
}

fn encode(dataset: &Dataset, path: &Path) -> Result<Vec<u8>> {
    let layout = *dataset.layout();
    let trajs = dataset.trajectories();
    let n = layout.num_nodes;
    let total_frames = dataset.total_frames();
    let edges = |t: &Trajectory| t.edges().cloned();
    let total_edges: usize = trajs.iter().filter_map(edges).map(|e| e.len()).sum();

    let mut tensors: Vec<(&str, Dtype, Vec<usize>, Vec<u8>)> = vec![(
        POSITIONS,
        Dtype::F64,
        vec![total_frames, n, 3],
        f64_bytes(trajs.iter().map(Trajectory::positions)),
    )];
    if layout.has_velocities {
        tensors.push((
            VELOCITIES,
            Dtype::F64,
            vec![total_frames, n, 3],
            f64_bytes(trajs.iter().filter_map(Trajectory::velocities)),
        ));
    }
    if layout.num_node_features > 0 {
        tensors.push((
            NODE_FEATURES,
            Dtype::F64,
            vec![trajs.len(), n, layout.num_node_features],
            f64_bytes(trajs.iter().filter_map(Trajectory::node_features)),
        ));
    }
    if layout.has_node_types {
        tensors.push((
            NODE_TYPES,
            Dtype::I64,
            vec![trajs.len(), n],
            i64_bytes(
                trajs
                    .iter()
                    .filter_map(Trajectory::node_types)
                    .flatten()
                    .copied(),
            ),
        ));
    }
    if layout.has_edges {
        tensors.push((
            EDGE_INDEX,
            Dtype::I64,
            vec![total_edges, 2],
            i64_bytes(
                trajs
                    .iter()
                    .filter_map(Trajectory::edges)
                    .flat_map(|e| e.pairs().iter().flatten().map(|&i| i as i64)),
            ),
        ));
        if layout.num_edge_attributes > 0 {
            tensors.push((
                EDGE_ATTR,
                Dtype::F64,
                vec![total_edges, layout.num_edge_attributes],
                f64_bytes(
                    trajs
                        .iter()
                        .filter_map(Trajectory::edges)
                        .map(EdgeList::attributes),
                ),
            ));
        }
    }

    let header = Header {
        format: FORMAT_NAME.into(),
        version: FORMAT_VERSION.into(),
        layout,
        num_frames: trajs.iter().map(Trajectory::num_frames).collect(),
        num_edges: if layout.has_edges {
            trajs.iter().filter_map(edges).map(|e| e.len()).collect()
        } else {
            Vec::new()
        },
        dataset: dataset.meta().clone(),
        trajectory_metadata: trajs.iter().map(|t| t.metadata().clone()).collect(),
    };
    let container = |reason: String| Error::Container {
        path: path.to_path_buf(),
        reason,
    };
    let json = serde_json::to_string(&header).map_err(|e| container(e.to_string()))?;
    let views = tensors
        .iter()
        .map(|(name, dtype, shape, data)| {
            TensorView::new(*dtype, shape.clone(), data).map(|v| (*name, v))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| container(e.to_string()))?;
    safetensors::serialize(views, Some(HashMap::from([(HEADER_KEY.to_string(), json)])))
        .map_err(|e| container(e.to_string()))
}

/// Reads a dataset written by [`write_dataset`], validating everything.
///
/// # Errors
/// Each with the file name: [`Error::NotFound`]; [`Error::Container`] for a truncated or
/// corrupt safetensors container; [`Error::CorruptHeader`], [`Error::WrongFormat`],
/// [`Error::UnsupportedVersion`] for the JSON header; [`Error::MissingTensor`],
/// [`Error::UnexpectedTensor`], [`Error::WrongDtype`], [`Error::TensorShape`] when tensors disagree
/// with the header; [`Error::InFile`] around data errors (non-finite values, bad edges, bad
/// metadata), which name the trajectory, frame and node.
pub fn read_dataset(path: impl AsRef<Path>) -> Result<Dataset> {
    let path = path.as_ref();
    let bytes = fs::read(path).map_err(|e| Error::io(path, "read", e))?;
    decode(&bytes, path)
}

/// Parses a safetensors container and the JSON header under `key` of `__metadata__`, checking
/// its `format` and `version` fields (the shared first half of every reader in this crate).
pub(crate) fn header_json<'a>(
    bytes: &'a [u8],
    path: &Path,
    key: &str,
    format: &'static str,
    version: u32,
) -> Result<(SafeTensors<'a>, serde_json::Value)> {
    let p = || path.to_path_buf();
    let corrupt = |reason: String| Error::CorruptHeader { path: p(), reason };
    let st = SafeTensors::deserialize(bytes).map_err(|e| Error::Container {
        path: p(),
        reason: e.to_string(),
    })?;
    let (_, container_meta) = SafeTensors::read_metadata(bytes).map_err(|e| Error::Container {
        path: p(),
        reason: e.to_string(),
    })?;
    let json = container_meta
        .metadata()
        .as_ref()
        .and_then(|m| m.get(key))
        .ok_or_else(|| {
            corrupt(format!(
                "no `{key}` entry in __metadata__ (not a {format} file?)"
            ))
        })?;
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|e| corrupt(format!("header is not JSON: {e}")))?;
    match value.get("format").and_then(|f| f.as_str()) {
        None => return Err(corrupt("header has no string field `format`".into())),
        Some(f) if f == format => {}
        Some(other) => {
            return Err(Error::WrongFormat {
                path: p(),
                found: other.into(),
                expected: format,
            });
        }
    }
    match value.get("version").and_then(|v| v.as_u64()) {
        None => return Err(corrupt("header has no integer field `version`".into())),
        Some(v) if v == u64::from(version) => {}
        Some(found) => {
            return Err(Error::UnsupportedVersion {
                path: p(),
                found,
                supported: version,
            });
        }
    }
    Ok((st, value))
}

/// The bytes of tensor `name`, checked to have `dtype` and `shape`.
pub(crate) fn typed_view<'a>(
    st: &SafeTensors<'a>,
    path: &Path,
    name: &str,
    dtype: Dtype,
    shape: &[usize],
) -> Result<&'a [u8]> {
    let view = st.tensor(name).map_err(|_| Error::MissingTensor {
        path: path.to_path_buf(),
        tensor: name.into(),
    })?;
    if view.dtype() != dtype {
        return Err(Error::WrongDtype {
            path: path.to_path_buf(),
            tensor: name.into(),
            expected: format!("{dtype:?}"),
            got: format!("{:?}", view.dtype()),
        });
    }
    if view.shape() != shape {
        return Err(Error::TensorShape {
            path: path.to_path_buf(),
            tensor: name.into(),
            expected: shape.to_vec(),
            got: view.shape().to_vec(),
        });
    }
    Ok(view.data())
}

fn decode(bytes: &[u8], path: &Path) -> Result<Dataset> {
    let p = || path.to_path_buf();
    let corrupt = |reason: String| Error::CorruptHeader { path: p(), reason };
    let (st, value) = header_json(bytes, path, HEADER_KEY, FORMAT_NAME, FORMAT_VERSION)?;
    let header: Header = serde_json::from_value(value).map_err(|e| corrupt(e.to_string()))?;
    let layout = header.layout;
    let num_traj = header.num_frames.len();
    if header.trajectory_metadata.len() != num_traj {
        return Err(corrupt(format!(
            "{} trajectory metadata entries for {num_traj} trajectories",
            header.trajectory_metadata.len()
        )));
    }
    let expected_edge_counts = if layout.has_edges { num_traj } else { 0 };
    if header.num_edges.len() != expected_edge_counts {
        return Err(corrupt(format!(
            "{} edge counts for {expected_edge_counts} trajectories with edges",
            header.num_edges.len()
        )));
    }
    let sum = |v: &[usize], what: &str| {
        v.iter()
            .try_fold(0usize, |a, &b| a.checked_add(b))
            .ok_or_else(|| corrupt(format!("{what} overflow")))
    };
    let total_frames = sum(&header.num_frames, "frame count")?;
    let total_edges = sum(&header.num_edges, "edge count")?;
    let n = layout.num_nodes;

    let mut expected: Vec<(&str, Dtype, Vec<usize>)> =
        vec![(POSITIONS, Dtype::F64, vec![total_frames, n, 3])];
    if layout.has_velocities {
        expected.push((VELOCITIES, Dtype::F64, vec![total_frames, n, 3]));
    }
    if layout.num_node_features > 0 {
        expected.push((
            NODE_FEATURES,
            Dtype::F64,
            vec![num_traj, n, layout.num_node_features],
        ));
    }
    if layout.has_node_types {
        expected.push((NODE_TYPES, Dtype::I64, vec![num_traj, n]));
    }
    if layout.has_edges {
        expected.push((EDGE_INDEX, Dtype::I64, vec![total_edges, 2]));
        if layout.num_edge_attributes > 0 {
            expected.push((
                EDGE_ATTR,
                Dtype::F64,
                vec![total_edges, layout.num_edge_attributes],
            ));
        }
    }
    let wanted: BTreeSet<&str> = expected.iter().map(|(name, ..)| *name).collect();
    let mut present: Vec<&str> = st.names();
    present.sort_unstable();
    if let Some(extra) = present.iter().find(|name| !wanted.contains(**name)) {
        return Err(Error::UnexpectedTensor {
            path: p(),
            tensor: (*extra).into(),
        });
    }
    let mut data: HashMap<&str, &[u8]> = HashMap::new();
    for (name, dtype, shape) in &expected {
        data.insert(name, typed_view(&st, path, name, *dtype, shape)?);
    }

    let get = |name: &str| data.get(name).copied().unwrap_or_default();
    let positions = le_f64(get(POSITIONS));
    let velocities = layout.has_velocities.then(|| le_f64(get(VELOCITIES)));
    let features = le_f64(get(NODE_FEATURES));
    let types = le_i64(get(NODE_TYPES));
    let edge_index = le_i64(get(EDGE_INDEX));
    let edge_attr = le_f64(get(EDGE_ATTR));

    let f = layout.num_node_features;
    let a = layout.num_edge_attributes;
    let (mut frame0, mut edge0) = (0usize, 0usize);
    let mut trajectories = Vec::with_capacity(num_traj);
    for (i, (&t, meta)) in header
        .num_frames
        .iter()
        .zip(header.trajectory_metadata)
        .enumerate()
    {
        let build = || -> Result<Trajectory> {
            let frames = frame0 * n * 3..(frame0 + t) * n * 3;
            let mut traj = Trajectory::new(t, n, positions[frames.clone()].to_vec())?;
            if let Some(v) = &velocities {
                traj = traj.with_velocities(v[frames].to_vec())?;
            }
            if f > 0 {
                traj = traj.with_node_features(features[i * n * f..(i + 1) * n * f].to_vec(), f)?;
            }
            if layout.has_node_types {
                traj = traj.with_node_types(types[i * n..(i + 1) * n].to_vec())?;
            }
            if layout.has_edges {
                let e = header.num_edges[i];
                let raw = &edge_index[edge0 * 2..(edge0 + e) * 2];
                let mut pairs = Vec::with_capacity(e);
                for (k, pair) in raw.chunks_exact(2).enumerate() {
                    let idx = |x: i64| {
                        usize::try_from(x).map_err(|_| Error::InvalidValue {
                            what: "edge index",
                            at: Element::Edge { edge: k, column: 0 },
                            value: x.to_string(),
                            reason: "node indices must be >= 0",
                        })
                    };
                    pairs.push([idx(pair[0])?, idx(pair[1])?]);
                }
                let list = EdgeList::new(pairs)?
                    .with_attributes(edge_attr[edge0 * a..(edge0 + e) * a].to_vec(), a)?;
                traj = traj.with_edges(list)?;
            }
            Ok(traj.with_metadata(meta))
        };
        let traj = build().map_err(|e| e.in_trajectory(i).in_file(path))?;
        frame0 += t;
        if layout.has_edges {
            edge0 += header.num_edges[i];
        }
        trajectories.push(traj);
    }
    Dataset::with_layout(header.dataset, layout, trajectories).map_err(|e| e.in_file(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_dataset_round_trips() {
        let layout = DatasetLayout {
            num_nodes: 4,
            num_node_features: 2,
            has_velocities: true,
            has_node_types: true,
            has_edges: true,
            num_edge_attributes: 1,
        };
        let ds = Dataset::with_layout(DatasetMeta::new("e", "test", 0.5), layout, vec![]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("e.safetensors");
        write_dataset(&p, &ds).unwrap();
        assert_eq!(read_dataset(&p).unwrap(), ds);
    }

    #[test]
    fn zero_length_trajectory_in_header_is_rejected_with_file_name() {
        // a header claiming a trajectory of 0 frames, with matching (empty) tensors
        let header = serde_json::json!({
            "format": FORMAT_NAME, "version": 1,
            "layout": {"num_nodes": 2, "num_node_features": 0, "has_velocities": false,
                       "has_node_types": false, "has_edges": false, "num_edge_attributes": 0},
            "num_frames": [0], "num_edges": [],
            "dataset": DatasetMeta::new("z", "test", 1.0),
            "trajectory_metadata": [{}]
        });
        let view = TensorView::new(Dtype::F64, vec![0, 2, 3], &[]).unwrap();
        let bytes = safetensors::serialize(
            [("positions", view)],
            Some(HashMap::from([(
                HEADER_KEY.to_string(),
                header.to_string(),
            )])),
        )
        .unwrap();
        let err = decode(&bytes, Path::new("z.safetensors")).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("z.safetensors: trajectory 0: positions"),
            "{msg}"
        );
    }
}
