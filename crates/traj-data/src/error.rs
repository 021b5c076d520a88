//! The crate's one error type.

use std::fmt;
use std::path::{Path, PathBuf};

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Which element of an array a [`Error::NonFinite`] points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Element {
    /// A per-frame, per-node vector (positions, velocities): `component` is 0, 1 or 2 (x, y, z).
    Frame {
        /// Frame index inside the trajectory.
        frame: usize,
        /// Node index.
        node: usize,
        /// Cartesian component, 0..3.
        component: usize,
    },
    /// A per-node row (node features).
    Node {
        /// Node index.
        node: usize,
        /// Column (feature) index.
        column: usize,
    },
    /// A per-edge row (edge attributes).
    Edge {
        /// Edge index in the edge list.
        edge: usize,
        /// Column (attribute) index.
        column: usize,
    },
    /// A scalar or small vector that is not indexed by frame/node/edge (e.g. a normalisation centre).
    Value {
        /// Position in the vector.
        index: usize,
    },
    /// A grid value ([`crate::grid`]): sample, frame, row and column of the grid point.
    Grid {
        /// Sample index.
        sample: usize,
        /// Frame index inside the sample.
        frame: usize,
        /// Row (`y`) of the grid point.
        row: usize,
        /// Column (`x`) of the grid point.
        col: usize,
    },
}

impl fmt::Display for Element {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Element::Frame {
                frame,
                node,
                component,
            } => {
                let axis = ["x", "y", "z"].get(component).copied().unwrap_or("?");
                write!(f, "frame {frame}, node {node}, component {axis}")
            }
            Element::Node { node, column } => write!(f, "node {node}, column {column}"),
            Element::Edge { edge, column } => write!(f, "edge {edge}, column {column}"),
            Element::Value { index } => write!(f, "index {index}"),
            Element::Grid {
                sample,
                frame,
                row,
                col,
            } => write!(f, "sample {sample}, frame {frame}, point ({row}, {col})"),
        }
    }
}

/// Everything that can go wrong in `traj-data`.
///
/// File errors name the file; data errors name the trajectory, frame and node. Errors found while
/// reading a file are wrapped in [`Error::InFile`], errors inside a dataset in
/// [`Error::InTrajectory`], so a message reads e.g.
/// `data/train.safetensors: trajectory 3: positions: non-finite value NaN at frame 2, node 4, component y`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // ---------------------------------------------------------------- files
    /// An I/O operation on `path` failed.
    #[error("{}: {op} failed: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What was being done ("read", "write", "rename", ...).
        op: &'static str,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file does not exist.
    #[error("{}: file not found", path.display())]
    NotFound {
        /// The missing file.
        path: PathBuf,
    },
    /// The file is not a well-formed safetensors container (truncated, bad header length, bad offsets).
    #[error("{}: not a valid safetensors file (truncated or corrupt): {reason}", path.display())]
    Container {
        /// The file.
        path: PathBuf,
        /// What the safetensors parser said.
        reason: String,
    },
    /// The traj-data JSON header in `__metadata__` is missing or does not parse.
    #[error("{}: corrupt traj-data header: {reason}", path.display())]
    CorruptHeader {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The header names another format.
    #[error("{}: wrong format {found:?} (expected {expected:?})", path.display())]
    WrongFormat {
        /// The file.
        path: PathBuf,
        /// Format name found in the header.
        found: String,
        /// Format name this reader understands.
        expected: &'static str,
    },
    /// The header's format version is not one this reader understands.
    #[error("{}: unsupported format version {found} (this reader understands version {supported})", path.display())]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// Version found in the header.
        found: u64,
        /// Version this reader understands.
        supported: u32,
    },
    /// A tensor the header requires is absent.
    #[error("{}: tensor `{tensor}` is missing", path.display())]
    MissingTensor {
        /// The file.
        path: PathBuf,
        /// The tensor name.
        tensor: String,
    },
    /// A tensor the header does not account for is present.
    #[error("{}: unexpected tensor `{tensor}`", path.display())]
    UnexpectedTensor {
        /// The file.
        path: PathBuf,
        /// The tensor name.
        tensor: String,
    },
    /// A tensor has the wrong element type.
    #[error("{}: tensor `{tensor}` has dtype {got}, expected {expected}", path.display())]
    WrongDtype {
        /// The file.
        path: PathBuf,
        /// The tensor name.
        tensor: String,
        /// Expected dtype.
        expected: String,
        /// Dtype found.
        got: String,
    },
    /// A tensor's shape disagrees with the header.
    #[error("{}: tensor `{tensor}` has shape {got:?}, but the header implies {expected:?}", path.display())]
    TensorShape {
        /// The file.
        path: PathBuf,
        /// The tensor name.
        tensor: String,
        /// Shape implied by the header.
        expected: Vec<usize>,
        /// Shape found.
        got: Vec<usize>,
    },
    /// A data error found while reading `path`.
    #[error("{}: {source}", path.display())]
    InFile {
        /// The file.
        path: PathBuf,
        /// The data error.
        #[source]
        source: Box<Error>,
    },

    // ------------------------------------------------- arrays of a user's file
    /// An array the import needs is not in the user's file.
    #[error("{}: array `{key}` is missing", path.display())]
    MissingArray {
        /// The file.
        path: PathBuf,
        /// The array's name.
        key: String,
    },
    /// The user's file holds an array the import does not know (a misspelt name would otherwise
    /// be ignored silently).
    #[error("{}: unknown array `{key}` (known: {known})", path.display())]
    UnknownArray {
        /// The file.
        path: PathBuf,
        /// The array's name.
        key: String,
        /// The names the import reads.
        known: &'static str,
    },
    /// An array of the user's file has an element type the import cannot use.
    #[error("{}: array `{key}` has dtype {got}, expected {expected}", path.display())]
    ArrayDtype {
        /// The file.
        path: PathBuf,
        /// The array's name.
        key: String,
        /// The dtypes accepted.
        expected: &'static str,
        /// The dtype found (numpy's name, e.g. `int64`).
        got: String,
    },
    /// An array of the user's file has the wrong shape.
    #[error("{}: array `{key}` has shape {got:?}, expected {expected}", path.display())]
    ArrayShape {
        /// The file.
        path: PathBuf,
        /// The array's name.
        key: String,
        /// The shape expected, in words and symbols (e.g. `[frames, N, 3]`).
        expected: String,
        /// The shape found.
        got: Vec<usize>,
    },
    /// A value of an array of the user's file cannot be used (NaN, a node index out of range,
    /// ...), at its index in the array's own shape.
    #[error("{}: array `{key}`{index:?} = {value}: {reason}", path.display())]
    ArrayValue {
        /// The file.
        path: PathBuf,
        /// The array's name.
        key: String,
        /// The element's index, one entry per axis of the array.
        index: Vec<usize>,
        /// The value, printed.
        value: String,
        /// Why it cannot be used.
        reason: String,
    },

    // ------------------------------------------------------------- manifest
    /// `manifest.json` does not parse or is inconsistent.
    #[error("{}: corrupt manifest: {reason}", path.display())]
    CorruptManifest {
        /// The manifest file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The manifest has no entry for the requested file.
    #[error("{}: no entry for `{file}`", path.display())]
    NotInManifest {
        /// The manifest file.
        path: PathBuf,
        /// The file asked for.
        file: String,
    },
    /// A file's size differs from the manifest's.
    #[error("{}: size mismatch: manifest says {expected} bytes, the file has {actual} bytes", path.display())]
    SizeMismatch {
        /// The data file.
        path: PathBuf,
        /// Size in the manifest.
        expected: u64,
        /// Size on disk.
        actual: u64,
    },
    /// A file's sha256 differs from the manifest's.
    #[error("{}: sha256 mismatch: manifest says {expected}, the file hashes to {actual}", path.display())]
    ChecksumMismatch {
        /// The data file.
        path: PathBuf,
        /// Hash in the manifest (lower-case hex).
        expected: String,
        /// Hash of the file (lower-case hex).
        actual: String,
    },

    /// A sources manifest has no source of this name.
    #[error("no source {name:?} in the sources manifest (known: {})", known.join(", "))]
    UnknownSource {
        /// The name asked for.
        name: String,
        /// The names the manifest lists.
        known: Vec<String>,
    },

    // ----------------------------------------------------------------- data
    /// An array has the wrong number of elements.
    #[error("{what}: expected {expected} values, got {got}")]
    Length {
        /// Which array, with its shape (e.g. `positions [T=50, N=5, 3]`).
        what: String,
        /// Expected element count.
        expected: usize,
        /// Element count given.
        got: usize,
    },
    /// A NaN or infinity.
    #[error("{what}: non-finite value {value} at {at}")]
    NonFinite {
        /// Which array.
        what: &'static str,
        /// Where in it.
        at: Element,
        /// The offending value.
        value: f64,
    },
    /// A value that is finite but not allowed (negative node type, non-positive dt, ...).
    #[error("{what}: invalid value {value} at {at}: {reason}")]
    InvalidValue {
        /// Which array or field.
        what: &'static str,
        /// Where in it.
        at: Element,
        /// The value, printed.
        value: String,
        /// Why it is rejected.
        reason: &'static str,
    },
    /// An edge refers to a node that does not exist.
    #[error("edge {edge} ({a}, {b}) refers to node {node}, but there are only {num_nodes} nodes")]
    EdgeOutOfRange {
        /// Edge index.
        edge: usize,
        /// First endpoint.
        a: usize,
        /// Second endpoint.
        b: usize,
        /// The out-of-range endpoint.
        node: usize,
        /// Number of nodes.
        num_nodes: usize,
    },
    /// An edge joins a node to itself.
    #[error("edge {edge} is a self-loop on node {node}")]
    SelfLoop {
        /// Edge index.
        edge: usize,
        /// The node.
        node: usize,
    },
    /// The same undirected edge appears twice.
    #[error("edge {edge} ({a}, {b}) duplicates edge {first}")]
    DuplicateEdge {
        /// Index of the repeated edge.
        edge: usize,
        /// Index of its first occurrence.
        first: usize,
        /// First endpoint.
        a: usize,
        /// Second endpoint.
        b: usize,
    },
    /// A trajectory's layout differs from its dataset's.
    #[error("layout mismatch in {what}: the dataset has {expected}, this trajectory has {got}")]
    LayoutMismatch {
        /// Which part of the layout.
        what: &'static str,
        /// The dataset's value.
        expected: String,
        /// The trajectory's value.
        got: String,
    },
    /// A data error inside trajectory `index` of a dataset.
    #[error("trajectory {index}: {source}")]
    InTrajectory {
        /// Trajectory index in the dataset.
        index: usize,
        /// The error.
        #[source]
        source: Box<Error>,
    },
    /// An index past the end.
    #[error("{what} index {index} is out of range (length {len})")]
    IndexOutOfRange {
        /// What is indexed.
        what: &'static str,
        /// The index.
        index: usize,
        /// The length.
        len: usize,
    },
    /// A window does not fit in a trajectory.
    #[error("window needs frame {needed}, but the trajectory has {num_frames} frames")]
    WindowOutOfRange {
        /// Highest frame index the window needs.
        needed: usize,
        /// Frames available.
        num_frames: usize,
    },
    /// A spec (window, split, normalisation, generator) failed its check.
    #[error("invalid {spec}: {reason}")]
    InvalidSpec {
        /// Which spec.
        spec: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// Dataset metadata is inconsistent.
    #[error("invalid dataset metadata: {reason}")]
    InvalidMetadata {
        /// What is wrong.
        reason: String,
    },
    /// A string does not name a known value.
    #[error("unknown {what} {input:?} (expected one of: {expected})")]
    Parse {
        /// What was parsed.
        what: &'static str,
        /// The input.
        input: String,
        /// The accepted spellings.
        expected: &'static str,
    },
}

impl Error {
    /// Wraps a data error with the file it was found in.
    pub(crate) fn in_file(self, path: &Path) -> Error {
        Error::InFile {
            path: path.to_path_buf(),
            source: Box::new(self),
        }
    }

    /// Wraps a data error with the trajectory it was found in.
    pub(crate) fn in_trajectory(self, index: usize) -> Error {
        Error::InTrajectory {
            index,
            source: Box::new(self),
        }
    }

    /// An I/O error, turning `NotFound` into [`Error::NotFound`].
    pub(crate) fn io(path: &Path, op: &'static str, source: std::io::Error) -> Error {
        if source.kind() == std::io::ErrorKind::NotFound {
            Error::NotFound {
                path: path.to_path_buf(),
            }
        } else {
            Error::Io {
                path: path.to_path_buf(),
                op,
                source,
            }
        }
    }

    /// Shorthand for [`Error::InvalidSpec`].
    pub(crate) fn spec(spec: &'static str, reason: impl Into<String>) -> Error {
        Error::InvalidSpec {
            spec,
            reason: reason.into(),
        }
    }
}

/// Checks that every value is finite; `at` maps a flat index to its [`Element`].
pub(crate) fn check_finite(
    what: &'static str,
    values: &[f64],
    at: impl Fn(usize) -> Element,
) -> Result<()> {
    match values.iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(i) => Err(Error::NonFinite {
            what,
            at: at(i),
            value: values[i],
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_messages_name_file_trajectory_frame_and_node() {
        let err = Error::NonFinite {
            what: "positions",
            at: Element::Frame {
                frame: 2,
                node: 4,
                component: 1,
            },
            value: f64::NAN,
        }
        .in_trajectory(3)
        .in_file(Path::new("data/train.safetensors"));
        assert_eq!(
            err.to_string(),
            "data/train.safetensors: trajectory 3: positions: non-finite value NaN at frame 2, node 4, component y"
        );
    }

    #[test]
    fn check_finite_reports_first_bad_value() {
        let v = [0.0, 1.0, f64::INFINITY, f64::NAN];
        let err = check_finite("v", &v, |index| Element::Value { index }).unwrap_err();
        assert!(matches!(
            err,
            Error::NonFinite { at: Element::Value { index: 2 }, value, .. } if value == f64::INFINITY
        ));
        assert!(check_finite("v", &v[..2], |index| Element::Value { index }).is_ok());
    }
}
