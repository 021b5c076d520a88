//! Trajectories and datasets for learning long-horizon 3D particle dynamics.
//!
//! # Data model
//!
//! - A [`Trajectory`] is `T` frames of `N` nodes in 3D: positions `T × N × 3` (`f64`, row-major),
//!   optional velocities of the same shape, optional per-node features `N × F` and integer node
//!   types `N`, an optional fixed undirected [`EdgeList`] (`E` pairs `[a, b]`, `a < b`, with
//!   optional attributes `E × A`, e.g. a spring constant) and a JSON metadata map.
//!   Coordinates are `f64` because the simulators integrate in `f64`, energies and normalisation
//!   statistics need it, and the file round trip is then exact; models convert when batching.
//! - A [`Dataset`] is a list of trajectories sharing a [`DatasetLayout`] (`N`, `F`, `A`, and which
//!   arrays are present; `T` and the edges themselves may differ per trajectory) plus
//!   [`DatasetMeta`]: name, system, `dt` between saved frames, units, generator parameters, seed,
//!   split and the applied normalisation.
//!
//! Everything is validated on construction: shapes, finite values (a NaN names trajectory, frame,
//! node and component), edge endpoints in range, no self-loops or duplicate edges.
//!
//! # Windows, normalisation, splits
//!
//! - [`WindowSpec`] → [`CheckedWindowSpec`] → [`Windows`] of [`Sample`]s: condition frames ending
//!   at an anchor, targets consecutive or strided up to `anchor + delta_frame` (EGNO), or sliding
//!   `(n_condition, n_predict)` windows (GeoTDM), or anchors each trajectory lists in its metadata
//!   ([`Starts::Metadata`]). See [`WindowSpec::egno`], [`WindowSpec::geotdm`].
//! - [`NormalizationSpec::fit`] (on the training split) → [`Normalization::apply`] (to any split)
//!   records the centre of each trajectory and the scale in [`DatasetMeta::normalization`];
//!   [`Dataset::denormalize`] and each sample's [`PositionTransform`] map back to original units.
//! - [`SplitSpec`] → [`CheckedSplitSpec`] → [`Dataset::split`]: chronological by trajectory or by
//!   frame (one long trajectory), or seeded-random by trajectory.
//!
//! # File format (version 1)
//!
//! One [safetensors](https://huggingface.co/docs/safetensors) file per dataset or split, written
//! atomically by [`write_dataset`] and validated by [`read_dataset`]. All tensors are
//! little-endian, row-major; `ΣT` is the total frame count and `ΣE` the total edge count, with the
//! trajectories concatenated in order:
//!
//! | tensor | dtype | shape | present when |
//! |---|---|---|---|
//! | `positions` | F64 | `[ΣT, N, 3]` | always |
//! | `velocities` | F64 | `[ΣT, N, 3]` | `layout.has_velocities` |
//! | `node_features` | F64 | `[num_trajectories, N, F]` | `F > 0` |
//! | `node_types` | I64 | `[num_trajectories, N]` | `layout.has_node_types` |
//! | `edge_index` | I64 | `[ΣE, 2]` | `layout.has_edges` |
//! | `edge_attr` | F64 | `[ΣE, A]` | `layout.has_edges` and `A > 0` |
//!
//! The safetensors `__metadata__` map holds one key, [`HEADER_KEY`] (`"traj_data"`), whose value
//! is a JSON object:
//!
//! ```json
//! {
//!   "format": "traj-data", "version": 1,
//!   "layout": {"num_nodes": 5, "num_node_features": 2, "has_velocities": true,
//!              "has_node_types": false, "has_edges": false, "num_edge_attributes": 0},
//!   "num_frames": [50, 50, ...],          // T of each trajectory
//!   "num_edges": [],                      // E of each trajectory (when has_edges)
//!   "dataset": { DatasetMeta },           // name, system, dt, units, generator, seed, split, normalization
//!   "trajectory_metadata": [{...}, ...]   // one JSON object per trajectory
//! }
//! ```
//!
//! The reader rejects, with a typed [`Error`] naming the file: a missing file, a truncated or
//! corrupt container, a missing or corrupt header, another format or version, tensors missing,
//! unexpected, of the wrong dtype or of a shape the header does not imply, and then any data error
//! (non-finite value, bad edge, inconsistent metadata).
//!
//! A dataset directory holds one file per split (`train.safetensors`, `val.safetensors`,
//! `test.safetensors`) and a [`Manifest`] (`manifest.json`) listing each file's byte size and
//! sha256; [`load_split`] verifies them before reading.
//!
//! # N-body data
//!
//! [`nbody`] generates the charged, springs and gravity systems with the published (NRI / EGNN /
//! GeoTDM) parameters, deterministically for a seed and in parallel:
//!
//! ```no_run
//! use std::path::Path;
//! use traj_data::nbody::{NBodySpec, System, generate_dataset_dir};
//! use traj_data::{Split, WindowSpec, load_split};
//!
//! let spec = NBodySpec::new(System::Charged);
//! generate_dataset_dir(&spec, Path::new("target/data/nbody-charged"), &|done, total| {
//!     eprintln!("{done}/{total}");
//! })?;
//! let train = load_split("target/data/nbody-charged", Split::Train)?;
//! let windows = WindowSpec::egno(30, 10, 5).check()?; // frame 30 → 32, 34, 36, 38, 40
//! for sample in windows.windows(&train)?.iter() {
//!     assert_eq!(sample.target_positions.len(), 5 * 5 * 3);
//! }
//! # Ok::<(), traj_data::Error>(())
//! ```

//! # Grid data
//!
//! [`grid`] is the format of fields on a periodic grid over time (`[S, F, n, n]` f32 per split,
//! versioned header, the same manifest and checks); [`navier_stokes::NsDatasetSpec`] generates
//! SDKD's 2-D Navier–Stokes vorticity datasets into it, deterministically and resumably.
//!
//! # Real data
//!
//! Readers for foreign formats live in [`formats`] ([`formats::dcd`], [`formats::psf`],
//! [`formats::npz`], [`formats::md17`], [`formats::asf_amc`]); each returns an [`ImportError`]
//! naming the file and the problem, never panics on arbitrary bytes (proptested in
//! `tests/robustness.rs`, fuzzed by the cargo-fuzz targets in `fuzz/`). Converters turn them into
//! datasets in the papers' settings:
//! - [`protein`]: DCD + PSF → backbone trajectories with contact edges (EGNO's ADK setting, the
//!   ADK files in [`protein::ADK_TRAJECTORIES`]);
//! - [`molecule`]: MD17/rMD17 → the GeoTDM or the EGNO setting ([`molecule::convert_md17`]), the
//!   molecules by name ([`molecule::Md17Molecule`], [`molecule::Rmd17Molecule`]); [`xtb`]
//!   generates MD17-style trajectories with GFN2-xTB through Python;
//! - [`mocap`]: CMU motion capture (EGNO's published joint coordinates, or ASF + AMC by forward
//!   kinematics, trials chosen by [`mocap::CmuSelection`]) → bones + 2-hop graphs;
//! - [`npz_import`]: a user's own trajectories from a numpy `.npz` (`positions` `[frames, N, 3]`,
//!   optional velocities, node types/features, edges or a cutoff), split and written with a
//!   manifest (`docs/data-format.md` is the user's guide to the contract and the format);
//! - [`convert`]: the pieces they share (contact graphs, 2-hop edges, finite-difference velocities,
//!   and [`convert::write_split_dir`], the one writer of a train/val/test directory with its
//!   manifest).
//!
//! [`sources`] reads `datasets/manifest.toml` (where each external file comes from, its size and
//! sha256; built in as [`sources::Sources::built_in`]), obtains files with pip or (feature
//! `download`) resumable HTTP `Range` downloads, verifies before placing atomically, and extracts
//! single members of `.tar.gz` archives.

pub mod convert;
mod dataset;
mod error;
mod format;
pub mod formats;
mod fsutil;
pub mod grid;
mod import_error;
mod manifest;
pub mod mocap;
pub mod molecule;
pub mod navier_stokes;
pub mod nbody;
mod normalize;
pub mod npz_import;
pub mod numpy_legacy;
pub mod protein;
pub mod sources;
mod split;
mod trajectory;
mod window;
pub mod xtb;

pub use dataset::{Dataset, DatasetLayout, DatasetMeta};
pub use error::{Element, Error, Result};
pub use format::{FORMAT_NAME, FORMAT_VERSION, HEADER_KEY, read_dataset, write_dataset};
pub use fsutil::{atomic_write, sha256_file};
pub use import_error::{ImportError, ImportResult};
pub use manifest::{
    MANIFEST_FILE, MANIFEST_FORMAT, MANIFEST_VERSION, Manifest, ManifestEntry, load_split,
};
pub use normalize::{
    Centering, Normalization, NormalizationRecord, NormalizationSpec, PositionTransform, Scaling,
};
pub use split::{CheckedSplitSpec, Split, SplitIndices, SplitMethod, SplitSpec, Splits};
pub use trajectory::{EdgeList, MetadataMap, Trajectory};
pub use window::{
    CheckedWindowSpec, START_FRAMES_KEY, Sample, Starts, TargetFrames, WindowIndex, WindowSpec,
    Windows,
};
