//! Protein MD → trajectories in EGNO's protein setting: backbone atoms as nodes, contact edges,
//! charges as node features, finite-difference velocities.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::convert::{contact_edges, finite_difference_velocities, write_splits};
use crate::dataset::{Dataset, DatasetMeta};
use crate::error::Error;
use crate::formats::dcd::{Dcd, read_dcd};
use crate::formats::psf::{Psf, read_psf};
use crate::import_error::{ImportError, ImportResult};
use crate::manifest::Manifest;
use crate::split::{CheckedSplitSpec, SplitMethod};
use crate::trajectory::{MetadataMap, Trajectory};
use crate::window::WindowSpec;

/// Backbone atom names, in the order of [`ProteinSpec`]'s node types (N = 0, CA = 1, C = 2, O = 3).
pub const BACKBONE_NAMES: [&str; 4] = ["N", "CA", "C", "O"];

/// How a protein trajectory becomes a [`Trajectory`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProteinSpec {
    /// Atom names kept as nodes (EGNO: the backbone N, CA, C, O).
    pub atom_names: Vec<String>,
    /// Contact cutoff in Å: nodes closer than this in frame `edge_frame` are joined (EGNO: 8 Å).
    pub contact_cutoff: f64,
    /// The frame whose geometry defines the (fixed) contact edges.
    pub edge_frame: usize,
}

impl Default for ProteinSpec {
    /// EGNO's protein setting: backbone N, CA, C, O; contacts under 8 Å in the first frame.
    fn default() -> Self {
        Self {
            atom_names: BACKBONE_NAMES.iter().map(|s| s.to_string()).collect(),
            contact_cutoff: 8.0,
            edge_frame: 0,
        }
    }
}

/// EGNO's protein windows: condition on one frame, targets +3, +7, +11, +15
/// (`delta_frame = 15`, `T = 4`, strided), anchors sliding by one frame.
pub fn egno_protein_windows() -> WindowSpec {
    WindowSpec::egno(0, 15, 4).sliding(1)
}

/// Indices of the atoms whose name is in `names`, in topology order.
pub fn select_atoms(psf: &Psf, names: &[String]) -> Vec<usize> {
    psf.atoms
        .iter()
        .enumerate()
        .filter(|(_, a)| names.contains(&a.name))
        .map(|(i, _)| i)
        .collect()
}

/// One protein trajectory as a [`Trajectory`]: the selected atoms of every frame of `dcd`
/// (positions in Å), velocities in Å/ps by [`finite_difference_velocities`], node features
/// `[charge / max |charge|]` over the selected atoms, node types = index of the atom name in
/// `spec.atom_names`, and contact edges in frame `spec.edge_frame`. The node feature `|v|` of
/// EGNO's setting depends on the frame and is computed from the velocities by the model.
///
/// `dt_ps` is the time between frames; `dcd_path` names the trajectory in errors.
///
/// # Errors
/// [`ImportError::Unusable`] when the topology and trajectory disagree in atom count, no atom is
/// selected, the edge frame is past the end, or the data is rejected by [`Trajectory`] (e.g. a
/// NaN coordinate, named by frame and node).
pub fn protein_trajectory(
    psf: &Psf,
    dcd: &Dcd,
    dt_ps: f64,
    spec: &ProteinSpec,
    dcd_path: &Path,
) -> ImportResult<Trajectory> {
    if psf.atoms.len() != dcd.num_atoms() {
        return Err(ImportError::unusable(
            dcd_path,
            format!(
                "the trajectory has {} atoms but the topology has {}",
                dcd.num_atoms(),
                psf.atoms.len()
            ),
        ));
    }
    let sel = select_atoms(psf, &spec.atom_names);
    if sel.is_empty() {
        return Err(ImportError::unusable(
            dcd_path,
            format!("no atom is named any of {:?}", spec.atom_names),
        ));
    }
    let t = dcd.num_frames();
    if spec.edge_frame >= t {
        return Err(ImportError::unusable(
            dcd_path,
            format!(
                "edge frame {} is past the last frame ({t} frames)",
                spec.edge_frame
            ),
        ));
    }
    if !(dt_ps.is_finite() && dt_ps > 0.0) {
        return Err(ImportError::unusable(
            dcd_path,
            format!("time between frames {dt_ps} ps is not positive"),
        ));
    }
    let n = sel.len();
    let mut positions = Vec::with_capacity(t * n * 3);
    for f in 0..t {
        let frame = dcd.frame(f);
        for &i in &sel {
            positions.extend(frame[3 * i..3 * i + 3].iter().map(|&x| f64::from(x)));
        }
    }
    let velocities = finite_difference_velocities(&positions, t, dt_ps);
    let charges: Vec<f64> = sel.iter().map(|&i| psf.atoms[i].charge).collect();
    let max = charges.iter().fold(0.0f64, |m, c| m.max(c.abs()));
    let features: Vec<f64> = charges
        .iter()
        .map(|c| if max > 0.0 { c / max } else { 0.0 })
        .collect();
    let types: Vec<i64> = sel
        .iter()
        .map(|&i| {
            spec.atom_names
                .iter()
                .position(|n| *n == psf.atoms[i].name)
                .unwrap_or(0) as i64
        })
        .collect();
    let e0 = spec.edge_frame * n * 3;
    let edges = contact_edges(&positions[e0..e0 + n * 3], spec.contact_cutoff);
    let mut meta = MetadataMap::new();
    meta.insert("source".into(), dcd_path.display().to_string().into());
    meta.insert(
        "atom_indices".into(),
        serde_json::to_value(&sel).unwrap_or_default(),
    );
    let build = || -> crate::Result<Trajectory> {
        Ok(Trajectory::new(t, n, positions)?
            .with_velocities(velocities)?
            .with_node_features(features, 1)?
            .with_node_types(types)?
            .with_edges(edges)?
            .with_metadata(meta))
    };
    build().map_err(|e| ImportError::in_file(dcd_path, e))
}

/// Dataset metadata for protein trajectories from `name`: Å, ps, the feature names and the spec.
pub fn protein_meta(
    name: &str,
    dt_ps: f64,
    spec: &ProteinSpec,
    source: serde_json::Value,
) -> DatasetMeta {
    DatasetMeta {
        length_unit: "angstrom".into(),
        time_unit: "ps".into(),
        node_feature_names: vec!["charge_over_max_abs_charge".into()],
        generator: serde_json::json!({ "protein_spec": spec, "source": source }),
        ..DatasetMeta::new(name, "protein", dt_ps)
    }
}

/// A one-trajectory protein dataset (see [`protein_trajectory`] and [`protein_meta`]).
///
/// # Errors
/// As [`protein_trajectory`].
pub fn protein_dataset(
    name: &str,
    psf: &Psf,
    dcd: &Dcd,
    dt_ps: f64,
    spec: &ProteinSpec,
    dcd_path: &Path,
    source: serde_json::Value,
) -> ImportResult<Dataset> {
    let traj = protein_trajectory(psf, dcd, dt_ps, spec, dcd_path)?;
    Dataset::new(protein_meta(name, dt_ps, spec, source), vec![traj])
        .map_err(|e| ImportError::in_file(dcd_path, e))
}

/// `x` rounded to `digits` significant decimal digits.
fn round_significant(x: f64, digits: i32) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let scale = 10f64.powi(digits - 1 - x.abs().log10().floor() as i32);
    (x * scale).round() / scale
}

/// The source of the ADK files in `datasets/manifest.toml`: the PyPI archive of
/// `mdanalysistests` (obtained with `pip download --no-deps`), whose members are the files of
/// [`ADK_TRAJECTORIES`].
pub const ADK_SOURCE: &str = "mdanalysistests-2.11.0";

/// One adenylate kinase (ADK) trajectory of [`ADK_SOURCE`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdkTrajectory {
    /// The dataset name (`adk-dims`).
    pub name: &'static str,
    /// The PSF topology's file name in the cache.
    pub topology: &'static str,
    /// The DCD trajectory's file name in the cache.
    pub trajectory: &'static str,
}

/// The shuffle seed of [`AdkTrajectory::write_random_window_dir`].
pub const RANDOM_WINDOW_SEED: u64 = 0;

/// The ADK trajectories of `mdanalysistests`: two DIMS transitions with CHARMM and one targeted
/// MD run with NAMD.
pub const ADK_TRAJECTORIES: [AdkTrajectory; 3] = [
    AdkTrajectory {
        name: "adk-dims",
        topology: "adk.psf",
        trajectory: "adk_dims.dcd",
    },
    AdkTrajectory {
        name: "adk-dims2",
        topology: "adk.psf",
        trajectory: "adk_dims2.dcd",
    },
    AdkTrajectory {
        name: "adk-tmd-namd",
        topology: "adk_closed_NAMD.psf",
        trajectory: "adk_gbis_tmd-fast1_NAMD.dcd",
    },
];

impl AdkTrajectory {
    /// Converts this trajectory, its files in `cache`, into the dataset directory
    /// `out_root/<name>` in EGNO's protein setting ([`ProteinSpec::default`], chronological
    /// 60/20/20 by frame) and returns its manifest.
    ///
    /// # Errors
    /// As [`write_protein_dataset_dir`].
    pub fn write_dataset_dir(&self, cache: &Path, out_root: &Path) -> ImportResult<Manifest> {
        let split = crate::split::SplitSpec::new(SplitMethod::FrameChronological).check()?;
        write_protein_dataset_dir(
            self.name,
            &cache.join(self.topology),
            &cache.join(self.trajectory),
            &ProteinSpec::default(),
            &split,
            &out_root.join(self.name),
        )
    }

    /// The same trajectory with a random split of its windows instead (EGNO's own protein split
    /// is chronological, as [`AdkTrajectory::write_dataset_dir`]):
    /// `out_root/<name>-random`, every window of [`egno_protein_windows`] (16 frames, a start
    /// every frame) a trajectory of its own, shuffled with seed [`RANDOM_WINDOW_SEED`] and
    /// divided 60/20/20 ([`SplitMethod::WindowRandom`]). Test windows overlap training ones.
    ///
    /// # Errors
    /// As [`write_protein_dataset_dir`].
    pub fn write_random_window_dir(&self, cache: &Path, out_root: &Path) -> ImportResult<Manifest> {
        let w = egno_protein_windows();
        let split = crate::split::SplitSpec::new(SplitMethod::WindowRandom {
            window_frames: w.condition_frames + w.delta_frame,
            stride: 1,
            seed: RANDOM_WINDOW_SEED,
        })
        .check()?;
        let name = format!("{}-random", self.name);
        write_protein_dataset_dir(
            &name,
            &cache.join(self.topology),
            &cache.join(self.trajectory),
            &ProteinSpec::default(),
            &split,
            &out_root.join(&name),
        )
    }
}

/// Converts one protein trajectory (`psf` + `dcd`) into a dataset directory: the trajectory cut
/// chronologically by frame into `train`/`val`/`test` files (`split`, EGNO: 60/20/20), or its
/// windows shuffled into them (`window_random`), and a
/// [`Manifest`] with sizes and sha256. The time between frames is taken from the DCD header
/// (`DELTA · NSAVC`). Returns the manifest.
///
/// # Errors
/// Reader errors naming the file ([`read_psf`], [`read_dcd`]), conversion errors
/// ([`protein_trajectory`]), a split spec that is neither frame-chronological nor
/// window-random, I/O errors.
pub fn write_protein_dataset_dir(
    name: &str,
    psf_path: &Path,
    dcd_path: &Path,
    spec: &ProteinSpec,
    split: &CheckedSplitSpec,
    out_dir: &Path,
) -> ImportResult<Manifest> {
    if !matches!(
        split.spec().method,
        SplitMethod::FrameChronological | SplitMethod::WindowRandom { .. }
    ) {
        return Err(Error::spec(
            "split spec",
            "a protein trajectory is split by frame (frame_chronological) or by window \
             (window_random)",
        )
        .into());
    }
    let psf = read_psf(psf_path)?;
    let dcd = read_dcd(dcd_path)?;
    // DELTA is a float32 in AKMA units: keep the 6 significant digits it carries (1.0 ps, not
    // 0.99999991 ps)
    let dt_ps = round_significant(dcd.header.frame_interval_fs() / 1000.0, 6);
    let source = serde_json::json!({
        "topology": psf_path.file_name().map(|f| f.to_string_lossy().into_owned()),
        "trajectory": dcd_path.file_name().map(|f| f.to_string_lossy().into_owned()),
        "dcd_charmm_version": dcd.header.charmm_version,
        "atoms": dcd.num_atoms(),
        "frames": dcd.num_frames(),
        "split": split.spec(),
    });
    let dataset = protein_dataset(name, &psf, &dcd, dt_ps, spec, dcd_path, source.clone())?;
    let splits = dataset.split(split)?;
    Ok(write_splits(
        name,
        &[splits.train, splits.val, splits.test],
        out_dir,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_keeps_significant_digits() {
        assert_eq!(round_significant(0.9999999119200185, 6), 1.0);
        assert_eq!(round_significant(0.010000000029814058, 6), 0.01);
        assert_eq!(round_significant(123.456789, 6), 123.457);
    }

    #[test]
    fn contacts_match_a_brute_force_count() {
        // points on a line 1 apart: cutoff 2.5 joins neighbours at distance 1 and 2
        let pts: Vec<f64> = (0..6).flat_map(|i| [i as f64, 0.0, 0.0]).collect();
        let e = contact_edges(&pts, 2.5);
        assert_eq!(e.len(), 5 + 4);
        assert!(e.pairs().iter().all(|&[a, b]| a < b && b - a <= 2));
        assert!(
            contact_edges(&pts, 1.0).is_empty(),
            "strictly closer than the cutoff"
        );
    }

    #[test]
    fn velocities_are_exact_for_linear_motion() {
        // x(t) = 3 t + 1 in every coordinate, dt = 0.5
        let pos: Vec<f64> = (0..4).flat_map(|t| [1.5 * t as f64 + 1.0; 6]).collect();
        let v = finite_difference_velocities(&pos, 4, 0.5);
        assert!(v.iter().all(|&x| (x - 3.0).abs() < 1e-12), "{v:?}");
        assert_eq!(
            finite_difference_velocities(&pos[..6], 1, 0.5),
            vec![0.0; 6]
        );
    }
}
