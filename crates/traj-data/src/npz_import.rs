//! Users' own trajectories from a numpy `.npz` into a dataset directory (`sgdd data import npz`).
//!
//! # The contract (see also `docs/data-format.md`)
//!
//! | array | dtype | shape | |
//! |---|---|---|---|
//! | `positions` | float32/float64 | `[frames, N, 3]` or `[trajectories, frames, N, 3]` | required |
//! | `velocities` | float32/float64 | as `positions` | optional: else finite differences |
//! | `trajectory_lengths` | integer | `[trajectories]` | optional, with 3-D `positions` only: consecutive runs of frames, summing to `frames` |
//! | `node_types` | integer ≥ 0 | `[N]` | optional |
//! | `node_features` | float32/float64 | `[N, F]` | optional |
//! | `edges` | integer | `[E, 2]` | optional: undirected pairs of node indices, either order, no self-loops or duplicates |
//! | `edge_attr` | float32/float64 | `[E, A]` | optional, with `edges` only |
//!
//! Every trajectory has the same `N` nodes; node types, features and edges are shared by all of
//! them. Without `edges`, [`NpzImportSpec::cutoff`] joins the nodes closer than the cutoff in
//! the first frame of the first trajectory ([`crate::convert::contact_edges`]), the one graph of
//! every trajectory; without either the dataset has no edges. Without `velocities` they are
//! [`crate::convert::finite_difference_velocities`] of each trajectory's positions with
//! [`NpzImportSpec::dt`]: central differences `(x[t+1] − x[t−1]) / 2dt` inside, one-sided
//! differences at the first and last frame, zero for a single frame — computed per trajectory
//! before the frames are split.
//!
//! Any other array is an error, as is a wrong dtype or shape, a NaN or infinity (with its index),
//! a negative node type, or an edge that is out of range, a self-loop or a duplicate; each error
//! names the file and the array ([`Error::MissingArray`], [`Error::UnknownArray`],
//! [`Error::ArrayDtype`], [`Error::ArrayShape`], [`Error::ArrayValue`]).
//!
//! The trajectories are split into train/val/test by [`NpzImportSpec::fractions`]: for one
//! trajectory chronologically by frame, for several by trajectory in file order (or as
//! [`NpzImportSpec::split_by`] says). A split with a positive fraction that would get no frames or
//! trajectories is refused.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::convert::{contact_edges, finite_difference_velocities, write_splits};
use crate::dataset::{Dataset, DatasetMeta};
use crate::error::Error;
use crate::formats::npz::{Array, Npz};
use crate::fsutil::sha256_file;
use crate::import_error::{ImportError, ImportResult};
use crate::manifest::Manifest;
use crate::split::{Split, SplitMethod, SplitSpec};
use crate::trajectory::{EdgeList, MetadataMap, Trajectory};

/// The arrays the import reads.
pub const NPZ_ARRAYS: &str =
    "positions, velocities, trajectory_lengths, node_types, node_features, edges, edge_attr";

/// The system name of imported datasets ([`DatasetMeta::system`]).
pub const NPZ_SYSTEM: &str = "npz";

/// How to import an `.npz` (see the module docs); [`Default`] is `dt = 1`, dimensionless units,
/// no cutoff, 60/20/20 split chosen by the number of trajectories.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NpzImportSpec {
    /// Dataset name (default: the file stem).
    pub name: Option<String>,
    /// Time between consecutive frames, in `time_unit` (> 0).
    pub dt: f64,
    /// Length unit of the positions (e.g. `angstrom`).
    pub length_unit: String,
    /// Time unit of `dt` (e.g. `fs`).
    pub time_unit: String,
    /// Without an `edges` array: join nodes closer than this (in `length_unit`) in the first
    /// frame. Refused together with `edges`.
    pub cutoff: Option<f64>,
    /// Fractions of train, val and test (non-negative, summing to 1).
    pub fractions: [f64; 3],
    /// How to split; `None`: by frame for one trajectory, by trajectory (in file order) for
    /// several.
    pub split_by: Option<SplitMethod>,
}

impl Default for NpzImportSpec {
    fn default() -> Self {
        Self {
            name: None,
            dt: 1.0,
            length_unit: "dimensionless".into(),
            time_unit: "dimensionless".into(),
            cutoff: None,
            fractions: [0.6, 0.2, 0.2],
            split_by: None,
        }
    }
}

/// Where an imported dataset's velocities came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VelocitySource {
    /// The file's `velocities`.
    File,
    /// Finite differences of the positions (see the module docs).
    FiniteDifferences,
}

/// Where an imported dataset's edges came from.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EdgeSource {
    /// The file's `edges`.
    File,
    /// Nodes closer than this cutoff in the first frame.
    Cutoff(f64),
    /// No edges.
    None,
}

/// What [`import_npz`] read and wrote.
#[derive(Clone, Debug, PartialEq)]
pub struct NpzImport {
    /// The dataset before splitting.
    pub num_trajectories: usize,
    /// Frames of all trajectories together.
    pub num_frames: usize,
    /// Nodes per trajectory `N`.
    pub num_nodes: usize,
    /// Edges of the (shared) graph.
    pub num_edges: usize,
    /// Where the velocities came from.
    pub velocities: VelocitySource,
    /// Where the edges came from.
    pub edges: EdgeSource,
    /// The split applied.
    pub split: SplitSpec,
    /// Trajectories in train, val, test.
    pub split_trajectories: [usize; 3],
    /// Frames in train, val, test.
    pub split_frames: [usize; 3],
    /// The dataset directory's manifest.
    pub manifest: Manifest,
}

const FLOAT: &str = "float32 or float64";
const INT: &str = "an integer type (int8 … int64, uint8 … uint32)";

/// numpy's name of a type string (`<f8` → `float64`).
fn dtype_name(typestr: &str) -> String {
    let body = typestr.trim_start_matches(['<', '>', '|', '=']);
    let (kind, size) = body.split_at(body.len().min(1));
    let bits = size.parse::<usize>().map(|b| b * 8);
    match (kind, bits) {
        ("f", Ok(b)) => format!("float{b}"),
        ("i", Ok(b)) => format!("int{b}"),
        ("u", Ok(b)) => format!("uint{b}"),
        ("b", _) => "bool".into(),
        ("c", Ok(b)) => format!("complex{b}"),
        _ => typestr.into(),
    }
}

/// The multi-index of flat position `i` in `shape` (row-major).
fn unravel(mut i: usize, shape: &[usize]) -> Vec<usize> {
    let mut index = vec![0; shape.len()];
    for (axis, &n) in shape.iter().enumerate().rev() {
        let n = n.max(1);
        index[axis] = i % n;
        i /= n;
    }
    index
}

/// A reader of one user's file: arrays by name with the checks of the contract.
struct Reader<R: std::io::Read + std::io::Seek> {
    npz: Npz<R>,
    path: std::path::PathBuf,
}

impl<R: std::io::Read + std::io::Seek> Reader<R> {
    fn dtype_of(&mut self, key: &str, expected: &'static str) -> ImportResult<Option<String>> {
        let Some(t) = self.npz.dtype(key)? else {
            return Ok(None);
        };
        let name = dtype_name(&t);
        let ok = if expected == FLOAT {
            matches!(name.as_str(), "float32" | "float64")
        } else {
            matches!(
                name.as_str(),
                "int8" | "int16" | "int32" | "int64" | "uint8" | "uint16" | "uint32"
            )
        };
        if ok {
            Ok(Some(name))
        } else {
            Err(Error::ArrayDtype {
                path: self.path.clone(),
                key: key.into(),
                expected,
                got: name,
            }
            .into())
        }
    }

    /// A float array, checked to be finite.
    fn floats(&mut self, key: &str) -> ImportResult<Option<Array<f64>>> {
        if self.dtype_of(key, FLOAT)?.is_none() {
            return Ok(None);
        }
        let a = self.npz.f64(key)?.ok_or_else(|| self.missing(key))?;
        if let Some(i) = a.data.iter().position(|v| !v.is_finite()) {
            return Err(self.value(key, unravel(i, &a.shape), a.data[i], "not finite"));
        }
        Ok(Some(a))
    }

    fn ints(&mut self, key: &str) -> ImportResult<Option<Array<i64>>> {
        if self.dtype_of(key, INT)?.is_none() {
            return Ok(None);
        }
        Ok(Some(self.npz.i64(key)?.ok_or_else(|| self.missing(key))?))
    }

    fn missing(&self, key: &str) -> ImportError {
        Error::MissingArray {
            path: self.path.clone(),
            key: key.into(),
        }
        .into()
    }

    fn shape(&self, key: &str, expected: impl Into<String>, got: &[usize]) -> ImportError {
        Error::ArrayShape {
            path: self.path.clone(),
            key: key.into(),
            expected: expected.into(),
            got: got.to_vec(),
        }
        .into()
    }

    fn value(
        &self,
        key: &str,
        index: Vec<usize>,
        value: impl std::fmt::Display,
        reason: impl Into<String>,
    ) -> ImportError {
        Error::ArrayValue {
            path: self.path.clone(),
            key: key.into(),
            index,
            value: value.to_string(),
            reason: reason.into(),
        }
        .into()
    }
}

fn check_spec(spec: &NpzImportSpec) -> crate::Result<()> {
    let bad = |reason: String| Err(Error::spec("npz import spec", reason));
    if !(spec.dt.is_finite() && spec.dt > 0.0) {
        return bad(format!("dt must be finite and > 0, got {}", spec.dt));
    }
    if let Some(c) = spec.cutoff
        && !(c.is_finite() && c > 0.0)
    {
        return bad(format!("cutoff must be finite and > 0, got {c}"));
    }
    SplitSpec::new(SplitMethod::TrajectoryChronological)
        .fractions(spec.fractions[0], spec.fractions[1], spec.fractions[2])
        .check()?;
    Ok(())
}

/// Reads a user's `.npz` (see the module docs for the contract) into one dataset, not split;
/// also returns where the velocities and edges came from.
///
/// # Errors
/// [`Error::InvalidSpec`] for a bad `spec`; [`Error::NotFound`] and [`ImportError::Malformed`]
/// for a missing or corrupt file; [`Error::MissingArray`], [`Error::UnknownArray`],
/// [`Error::ArrayDtype`], [`Error::ArrayShape`], [`Error::ArrayValue`] naming the file and the
/// array.
pub fn read_npz_dataset(
    path: &Path,
    spec: &NpzImportSpec,
) -> ImportResult<(Dataset, VelocitySource, EdgeSource)> {
    check_spec(spec)?;
    let mut r = Reader {
        npz: Npz::open(path)?,
        path: path.to_path_buf(),
    };
    let known: Vec<&str> = NPZ_ARRAYS.split(", ").collect();
    let mut names = r.npz.names();
    names.sort();
    if let Some(k) = names.iter().find(|n| !known.contains(&n.as_str())) {
        return Err(Error::UnknownArray {
            path: path.to_path_buf(),
            key: k.clone(),
            known: NPZ_ARRAYS,
        }
        .into());
    }

    // positions → lengths of the trajectories, N
    let pos = r
        .floats("positions")?
        .ok_or_else(|| r.missing("positions"))?;
    let shape_words = "[frames, N, 3] or [trajectories, frames, N, 3], each >= 1";
    let ok = matches!(pos.shape.len(), 3 | 4)
        && pos.shape.last() == Some(&3)
        && pos.shape.iter().all(|&d| d >= 1);
    if !ok {
        return Err(r.shape("positions", shape_words, &pos.shape));
    }
    let n = pos.shape[pos.shape.len() - 2];
    let total_frames = pos.data.len() / (3 * n);
    let lengths: Vec<usize> = match (pos.shape.len(), r.ints("trajectory_lengths")?) {
        (4, Some(_)) => {
            return Err(r.shape(
                "positions",
                "[frames, N, 3] when `trajectory_lengths` is given",
                &pos.shape,
            ));
        }
        (4, None) => vec![pos.shape[1]; pos.shape[0]],
        (_, None) => vec![pos.shape[0]],
        (_, Some(l)) => {
            if l.shape.len() != 1 || l.data.is_empty() {
                return Err(r.shape("trajectory_lengths", "[trajectories], >= 1", &l.shape));
            }
            if let Some((i, &v)) = l.data.iter().enumerate().find(|(_, v)| **v < 1) {
                return Err(r.value("trajectory_lengths", vec![i], v, "a length must be >= 1"));
            }
            let sum: i64 = l.data.iter().sum();
            if sum != total_frames as i64 {
                return Err(r.value(
                    "trajectory_lengths",
                    vec![],
                    format!("{:?} (sum {sum})", l.data),
                    format!("must sum to the {total_frames} frames of `positions`"),
                ));
            }
            l.data.iter().map(|&v| v as usize).collect()
        }
    };

    let vel = r.floats("velocities")?;
    if let Some(v) = &vel
        && v.shape != pos.shape
    {
        return Err(r.shape(
            "velocities",
            format!("{:?} like `positions`", pos.shape),
            &v.shape,
        ));
    }

    let types = match r.ints("node_types")? {
        None => None,
        Some(t) => {
            if t.shape != [n] {
                return Err(r.shape("node_types", format!("[N] = [{n}]"), &t.shape));
            }
            if let Some((i, &v)) = t.data.iter().enumerate().find(|(_, v)| **v < 0) {
                return Err(r.value("node_types", vec![i], v, "a node type must be >= 0"));
            }
            Some(t.data)
        }
    };
    let features = match r.floats("node_features")? {
        None => None,
        Some(f) => {
            if f.shape.len() != 2 || f.shape[0] != n || f.shape[1] == 0 {
                return Err(r.shape(
                    "node_features",
                    format!("[N, F] = [{n}, F], F >= 1"),
                    &f.shape,
                ));
            }
            Some((f.data, f.shape[1]))
        }
    };

    let file_edges = r.ints("edges")?;
    let edge_attr = r.floats("edge_attr")?;
    let (edges, edge_source) = match (file_edges, spec.cutoff) {
        (Some(_), Some(c)) => {
            return Err(Error::spec(
                "npz import spec",
                format!(
                    "{}: the file has `edges`, so a cutoff ({c}) would be ignored; leave it out",
                    path.display()
                ),
            )
            .into());
        }
        (Some(e), None) => {
            if e.shape.len() != 2 || e.shape[1] != 2 {
                return Err(r.shape("edges", "[E, 2]", &e.shape));
            }
            let mut first = std::collections::HashMap::new();
            let mut pairs = Vec::with_capacity(e.shape[0]);
            for (k, p) in e.data.chunks_exact(2).enumerate() {
                for (col, &v) in p.iter().enumerate() {
                    if v < 0 || v as u64 >= n as u64 {
                        return Err(r.value(
                            "edges",
                            vec![k, col],
                            v,
                            format!("not a node index (N = {n})"),
                        ));
                    }
                }
                let (a, b) = (p[0] as usize, p[1] as usize);
                if a == b {
                    return Err(r.value("edges", vec![k], format!("{p:?}"), "a self-loop"));
                }
                if let Some(j) = first.insert([a.min(b), a.max(b)], k) {
                    return Err(r.value(
                        "edges",
                        vec![k],
                        format!("{p:?}"),
                        format!("duplicates edge {j}"),
                    ));
                }
                pairs.push([a, b]);
            }
            let mut list = EdgeList::new(pairs).map_err(|e| ImportError::in_file(path, e))?;
            if let Some(a) = edge_attr {
                if a.shape.len() != 2 || a.shape[0] != list.len() {
                    return Err(r.shape(
                        "edge_attr",
                        format!("[E, A] = [{}, A]", list.len()),
                        &a.shape,
                    ));
                }
                list = list
                    .with_attributes(a.data, a.shape[1])
                    .map_err(|e| ImportError::in_file(path, e))?;
            }
            (Some(list), EdgeSource::File)
        }
        (None, cutoff) => {
            if edge_attr.is_some() {
                return Err(r.missing("edges"));
            }
            match cutoff {
                Some(c) => (
                    Some(contact_edges(&pos.data[..3 * n], c)),
                    EdgeSource::Cutoff(c),
                ),
                None => (None, EdgeSource::None),
            }
        }
    };

    let velocity_source = if vel.is_some() {
        VelocitySource::File
    } else {
        VelocitySource::FiniteDifferences
    };
    let mut trajectories = Vec::with_capacity(lengths.len());
    let mut start = 0;
    for (s, &frames) in lengths.iter().enumerate() {
        let range = start * 3 * n..(start + frames) * 3 * n;
        start += frames;
        let positions = pos.data[range.clone()].to_vec();
        let velocities = match &vel {
            Some(v) => v.data[range].to_vec(),
            None => finite_difference_velocities(&positions, frames, spec.dt),
        };
        let mut meta = MetadataMap::new();
        meta.insert("trajectory".into(), s.into());
        let build = || -> crate::Result<Trajectory> {
            let mut t = Trajectory::new(frames, n, positions)?.with_velocities(velocities)?;
            if let Some((f, width)) = &features {
                t = t.with_node_features(f.clone(), *width)?;
            }
            if let Some(types) = &types {
                t = t.with_node_types(types.clone())?;
            }
            if let Some(e) = &edges {
                t = t.with_edges(e.clone())?;
            }
            Ok(t.with_metadata(meta))
        };
        trajectories.push(build().map_err(|e| ImportError::in_file(path, e))?);
    }
    let name = spec.name.clone().unwrap_or_else(|| {
        path.file_stem()
            .map_or("npz".into(), |s| s.to_string_lossy().into_owned())
    });
    let generator = serde_json::json!({
        "source": "npz import",
        "file": path.file_name().map(|f| f.to_string_lossy().into_owned()),
        "sha256": sha256_file(path)?,
        "velocities": velocity_source,
        "edges": edge_source,
        "spec": spec,
    });
    let meta = DatasetMeta {
        length_unit: spec.length_unit.clone(),
        time_unit: spec.time_unit.clone(),
        generator,
        ..DatasetMeta::new(name, NPZ_SYSTEM, spec.dt)
    };
    let ds = Dataset::new(meta, trajectories).map_err(|e| ImportError::in_file(path, e))?;
    Ok((ds, velocity_source, edge_source))
}

/// Imports a user's `.npz` (see the module docs) into the dataset directory `out_dir`:
/// `train`/`val`/`test.safetensors` and `manifest.json` with each file's size and sha256, as
/// every dataset of the project.
///
/// # Errors
/// As [`read_npz_dataset`]; [`Error::InvalidSpec`] when a split with a positive fraction would
/// be empty; I/O errors naming the output file.
pub fn import_npz(path: &Path, spec: &NpzImportSpec, out_dir: &Path) -> ImportResult<NpzImport> {
    let (ds, velocities, edges) = read_npz_dataset(path, spec)?;
    let method = spec.split_by.unwrap_or(if ds.len() == 1 {
        SplitMethod::FrameChronological
    } else {
        SplitMethod::TrajectoryChronological
    });
    let [a, b, c] = spec.fractions;
    let split = SplitSpec::new(method).fractions(a, b, c);
    let splits = ds.split(&split.check()?)?;
    let frames = |d: &Dataset| d.trajectories().iter().map(Trajectory::num_frames).sum();
    for (s, f) in Split::ALL.into_iter().zip(spec.fractions) {
        let part = splits.get(s);
        if f > 0.0 && part.is_empty() {
            let unit = if method == SplitMethod::FrameChronological {
                format!("{} frames", frames(&ds))
            } else {
                format!("{} trajectories", ds.len())
            };
            return Err(Error::spec(
                "npz import spec",
                format!(
                    "{}: the {s} split of {unit} at fractions {:?} is empty; change the fractions{}",
                    path.display(),
                    spec.fractions,
                    if method == SplitMethod::FrameChronological {
                        ""
                    } else {
                        " or split by frame"
                    }
                ),
            )
            .into());
        }
    }
    let parts = [splits.train, splits.val, splits.test];
    let manifest = write_splits(&ds.meta().name, &parts, out_dir)?;
    Ok(NpzImport {
        num_trajectories: ds.len(),
        num_frames: frames(&ds),
        num_nodes: ds.num_nodes(),
        num_edges: ds.trajectories()[0].edges().map_or(0, EdgeList::len),
        velocities,
        edges,
        split,
        split_trajectories: parts.each_ref().map(Dataset::len),
        split_frames: parts.each_ref().map(frames),
        manifest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtype_names_and_indices() {
        assert_eq!(dtype_name("<f8"), "float64");
        assert_eq!(dtype_name("|u1"), "uint8");
        assert_eq!(dtype_name("<i4"), "int32");
        assert_eq!(dtype_name("|b1"), "bool");
        assert_eq!(unravel(0, &[2, 3, 3]), vec![0, 0, 0]);
        assert_eq!(unravel(3 * 3 + 2 * 3 + 1, &[2, 3, 3]), vec![1, 2, 1]);
    }

    #[test]
    fn bad_specs_are_refused() {
        for (spec, needle) in [
            (
                NpzImportSpec {
                    dt: 0.0,
                    ..NpzImportSpec::default()
                },
                "dt must be finite and > 0",
            ),
            (
                NpzImportSpec {
                    cutoff: Some(-1.0),
                    ..NpzImportSpec::default()
                },
                "cutoff must be finite and > 0",
            ),
            (
                NpzImportSpec {
                    fractions: [0.5, 0.5, 0.5],
                    ..NpzImportSpec::default()
                },
                "fractions must sum to 1",
            ),
        ] {
            let err = check_spec(&spec).unwrap_err().to_string();
            assert!(err.contains(needle), "{err}");
        }
    }
}
