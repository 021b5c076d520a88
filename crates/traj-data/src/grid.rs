//! Grid datasets: scalar fields on a periodic `n × n` grid over time (SDKD's Navier–Stokes
//! setting, SPEC §4.8), with the same discipline as the trajectory format: one safetensors file
//! per split, a versioned JSON header, a [`Manifest`] with each file's size and sha256 verified
//! before reading, and typed errors naming the file.
//!
//! # File format (`traj-data-grid`, version 1)
//!
//! | tensor | dtype | shape |
//! |---|---|---|
//! | `fields` | F32 | `[S, F, n, n]`: `S` samples of `F` frames, row-major, `field[i·n + j]` at `y = i/n`, `x = j/n` |
//!
//! The safetensors `__metadata__` map holds one key, [`GRID_HEADER_KEY`] (`"traj_data_grid"`):
//!
//! ```json
//! { "format": "traj-data-grid", "version": 1, "samples": 200, "frames": 21, "resolution": 32,
//!   "meta": { "name": "navier-stokes-2d", "frame_dt": 1.0, "generator": {...}, "first_index": 0 } }
//! ```
//!
//! The reader rejects a missing file, a corrupt container or header, another format or version,
//! a missing, extra, mistyped or misshapen tensor, and a non-finite value (naming sample, frame
//! and grid point). [`load_grid_split`] verifies the manifest entry first.

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use safetensors::Dtype;
use safetensors::tensor::TensorView;
use serde::{Deserialize, Serialize};

use crate::error::{Element, Error, Result};
use crate::format::{header_json, typed_view};
use crate::fsutil::atomic_write;
use crate::manifest::{Manifest, load_verified};
use crate::split::Split;

/// The format name stored in a grid file's header.
pub const GRID_FORMAT_NAME: &str = "traj-data-grid";
/// The grid format version this crate writes and reads.
pub const GRID_FORMAT_VERSION: u32 = 1;
/// The `__metadata__` key holding the JSON header of a grid file.
pub const GRID_HEADER_KEY: &str = "traj_data_grid";
const FIELDS: &str = "fields";

/// What a grid split is and how it was made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GridMeta {
    /// Dataset name (e.g. `navier-stokes-2d`).
    pub name: String,
    /// Time between consecutive frames.
    pub frame_dt: f64,
    /// The generator's settings (any JSON).
    pub generator: serde_json::Value,
    /// The generator's index of the split's first sample (samples are consecutive indices).
    pub first_index: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    format: String,
    version: u64,
    samples: usize,
    frames: usize,
    resolution: usize,
    meta: GridMeta,
}

/// One split of a grid dataset: `samples` sequences of `frames` fields of `resolution²` values.
#[derive(Debug, Clone, PartialEq)]
pub struct GridSplit {
    samples: usize,
    frames: usize,
    resolution: usize,
    values: Vec<f32>,
    meta: GridMeta,
}

impl GridSplit {
    /// Validates and wraps `values` (`[samples, frames, resolution, resolution]`, row-major).
    ///
    /// # Errors
    /// [`Error::Length`] when the length disagrees with the shape, [`Error::NonFinite`] (naming
    /// sample, frame and grid point) for a NaN or infinity, [`Error::InvalidValue`] for a zero
    /// dimension or a non-positive `frame_dt`.
    pub fn new(
        samples: usize,
        frames: usize,
        resolution: usize,
        values: Vec<f32>,
        meta: GridMeta,
    ) -> Result<Self> {
        if frames == 0 || resolution == 0 {
            return Err(Error::spec(
                "grid split",
                format!("frames and resolution must be ≥ 1, got {frames} and {resolution}"),
            ));
        }
        if !(meta.frame_dt.is_finite() && meta.frame_dt > 0.0) {
            return Err(Error::spec(
                "grid split",
                format!(
                    "frame_dt must be a finite number > 0, got {}",
                    meta.frame_dt
                ),
            ));
        }
        let cells = resolution * resolution;
        let expected = samples * frames * cells;
        if values.len() != expected {
            return Err(Error::Length {
                what: format!("grid values [{samples}, {frames}, {resolution}, {resolution}]"),
                expected,
                got: values.len(),
            });
        }
        if let Some(at) = values.iter().position(|v| !v.is_finite()) {
            let (s, rest) = (at / (frames * cells), at % (frames * cells));
            return Err(Error::NonFinite {
                what: "grid fields",
                at: Element::Grid {
                    sample: s,
                    frame: rest / cells,
                    row: (rest % cells) / resolution,
                    col: rest % resolution,
                },
                value: f64::from(values[at]),
            });
        }
        Ok(Self {
            samples,
            frames,
            resolution,
            values,
            meta,
        })
    }

    /// Number of sequences.
    pub fn samples(&self) -> usize {
        self.samples
    }

    /// Frames per sequence.
    pub fn frames(&self) -> usize {
        self.frames
    }

    /// Grid points per side.
    pub fn resolution(&self) -> usize {
        self.resolution
    }

    /// All values, `[samples, frames, resolution, resolution]` row-major.
    pub fn values(&self) -> &[f32] {
        &self.values
    }

    /// Frame `frame` of sample `sample`, `resolution²` values.
    ///
    /// # Panics
    /// When `sample` or `frame` is out of range.
    #[track_caller]
    pub fn field(&self, sample: usize, frame: usize) -> &[f32] {
        assert!(sample < self.samples && frame < self.frames, "out of range");
        let cells = self.resolution * self.resolution;
        let start = (sample * self.frames + frame) * cells;
        &self.values[start..start + cells]
    }

    /// The split's metadata.
    pub fn meta(&self) -> &GridMeta {
        &self.meta
    }
}

/// Writes `split` to `path` atomically.
///
/// # Errors
/// [`Error::Io`], [`Error::Container`].
pub fn write_grid(path: impl AsRef<Path>, split: &GridSplit) -> Result<()> {
    let path = path.as_ref();
    let container = |reason: String| Error::Container {
        path: path.to_path_buf(),
        reason,
    };
    let header = Header {
        format: GRID_FORMAT_NAME.into(),
        version: GRID_FORMAT_VERSION.into(),
        samples: split.samples,
        frames: split.frames,
        resolution: split.resolution,
        meta: split.meta.clone(),
    };
    let json = serde_json::to_string(&header).map_err(|e| container(e.to_string()))?;
    let bytes: Vec<u8> = split.values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let n = split.resolution;
    let view = TensorView::new(Dtype::F32, vec![split.samples, split.frames, n, n], &bytes)
        .map_err(|e| container(e.to_string()))?;
    let out = safetensors::serialize(
        [(FIELDS, view)],
        Some(HashMap::from([(GRID_HEADER_KEY.to_string(), json)])),
    )
    .map_err(|e| container(e.to_string()))?;
    atomic_write(path, &out)
}

/// Reads a grid split written by [`write_grid`], validating everything.
///
/// # Errors
/// Each naming the file: [`Error::NotFound`], [`Error::Container`], [`Error::CorruptHeader`],
/// [`Error::WrongFormat`], [`Error::UnsupportedVersion`], [`Error::MissingTensor`],
/// [`Error::UnexpectedTensor`], [`Error::WrongDtype`], [`Error::TensorShape`], and
/// [`Error::InFile`] around a non-finite value.
pub fn read_grid(path: impl AsRef<Path>) -> Result<GridSplit> {
    let path = path.as_ref();
    let bytes = fs::read(path).map_err(|e| Error::io(path, "read", e))?;
    let (st, value) = header_json(
        &bytes,
        path,
        GRID_HEADER_KEY,
        GRID_FORMAT_NAME,
        GRID_FORMAT_VERSION,
    )?;
    let header: Header = serde_json::from_value(value).map_err(|e| Error::CorruptHeader {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let n = header.resolution;
    if let Some(extra) = st.names().into_iter().find(|name| *name != FIELDS) {
        return Err(Error::UnexpectedTensor {
            path: path.to_path_buf(),
            tensor: extra.into(),
        });
    }
    let data = typed_view(
        &st,
        path,
        FIELDS,
        Dtype::F32,
        &[header.samples, header.frames, n, n],
    )?;
    let values = data
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(<[u8; 4]>::try_from(c).expect("chunks of 4")))
        .collect();
    GridSplit::new(header.samples, header.frames, n, values, header.meta)
        .map_err(|e| e.in_file(path))
}

/// Loads one split of a grid dataset directory: reads the manifest, verifies the file's size
/// and sha256, reads it and checks its sample count against the manifest.
///
/// # Errors
/// Manifest and checksum errors, then [`read_grid`]'s.
pub fn load_grid_split(dir: impl AsRef<Path>, split: Split) -> Result<GridSplit> {
    load_verified(
        dir.as_ref(),
        split,
        "sequences",
        |p| read_grid(p),
        GridSplit::samples,
    )
}

/// Writes the three splits of a grid dataset into `out_dir` with its manifest, resuming: a split
/// whose file the existing manifest (made by the same `generator`) lists and verifies is kept,
/// and only the others are made by `make` and written, the manifest rewritten after each. Returns
/// the manifest.
///
/// # Errors
/// The first error of `make`; I/O errors naming the file.
pub fn write_grid_dir(
    name: &str,
    generator: serde_json::Value,
    out_dir: &Path,
    mut make: impl FnMut(Split) -> Result<GridSplit>,
) -> Result<Manifest> {
    fs::create_dir_all(out_dir).map_err(|e| Error::io(out_dir, "create directory", e))?;
    let mut manifest = match Manifest::read(out_dir) {
        Ok(m) if m.name == name && m.generator == generator => m,
        _ => Manifest::new(name, generator),
    };
    for s in Split::ALL {
        let file = s.file_name();
        if manifest.entry_for(s).is_some() && manifest.verify(out_dir, &file).is_ok() {
            continue;
        }
        let grid = make(s)?;
        write_grid(out_dir.join(&file), &grid)?;
        manifest.add_file(out_dir, &file, Some(s), grid.samples())?;
        manifest.write(out_dir)?;
    }
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> GridMeta {
        GridMeta {
            name: "test".into(),
            frame_dt: 0.5,
            generator: serde_json::json!({"k": 1}),
            first_index: 3,
        }
    }

    fn small() -> GridSplit {
        let values = (0..2 * 3 * 16).map(|i| i as f32 * 0.25 - 3.0).collect();
        GridSplit::new(2, 3, 4, values, meta()).unwrap()
    }

    #[test]
    fn round_trip_and_layout() {
        let dir = tempfile::tempdir().unwrap();
        let g = small();
        assert_eq!(g.field(1, 2)[5], ((3 + 2) * 16 + 5) as f32 * 0.25 - 3.0);
        write_grid(dir.path().join("g.safetensors"), &g).unwrap();
        assert_eq!(read_grid(dir.path().join("g.safetensors")).unwrap(), g);
    }

    #[test]
    fn bad_values_and_files_are_typed_errors() {
        let mut v: Vec<f32> = vec![0.0; 2 * 3 * 16];
        v[16 * 4 + 6] = f32::NAN; // sample 1, frame 1, point (1, 2)
        let e = GridSplit::new(2, 3, 4, v, meta()).unwrap_err().to_string();
        assert!(e.contains("sample 1, frame 1, point (1, 2)"), "{e}");
        let e = GridSplit::new(2, 3, 4, vec![0.0; 5], meta()).unwrap_err();
        assert!(matches!(e, Error::Length { .. }), "{e}");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.safetensors");
        write_grid(&path, &small()).unwrap();
        let bytes = fs::read(&path).unwrap();
        fs::write(&path, &bytes[..bytes.len() - 7]).unwrap();
        assert!(matches!(
            read_grid(&path).unwrap_err(),
            Error::Container { .. }
        ));
        // a trajectory file is another format
        assert!(matches!(
            read_grid(dir.path().join("missing")).unwrap_err(),
            Error::NotFound { .. } | Error::Io { .. }
        ));
    }

    #[test]
    fn a_directory_resumes_and_detects_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let generator = serde_json::json!({"k": 1});
        let mut made = Vec::new();
        write_grid_dir("t", generator.clone(), dir.path(), |s| {
            made.push(s);
            Ok(small())
        })
        .unwrap();
        assert_eq!(made, Split::ALL);
        // a lost split is remade alone
        fs::remove_file(dir.path().join(Split::Val.file_name())).unwrap();
        made.clear();
        write_grid_dir("t", generator.clone(), dir.path(), |s| {
            made.push(s);
            Ok(small())
        })
        .unwrap();
        assert_eq!(made, [Split::Val]);
        assert_eq!(load_grid_split(dir.path(), Split::Val).unwrap(), small());
        // a flipped byte is a checksum error naming the file
        let path = dir.path().join(Split::Test.file_name());
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(&path, bytes).unwrap();
        let e = load_grid_split(dir.path(), Split::Test).unwrap_err();
        assert!(matches!(e, Error::ChecksumMismatch { .. }), "{e}");
    }
}
