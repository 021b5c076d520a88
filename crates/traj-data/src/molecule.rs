//! MD17-format molecular dynamics → datasets, in the two settings of the papers.
//!
//! - **GeoTDM / LaM-SLidE** ([`GeoTdmMd17Spec`]): all atoms; velocities from consecutive frames
//!   before downsampling by 10; one trajectory cut chronologically 60/20/20 by frame; positions
//!   centred on each part's first-frame centroid and divided by the training RMS scale (one scale
//!   per molecule); windows of 10 conditioning + 20 predicted frames ([`geotdm_windows`]), whose
//!   anchors each trajectory also records as its start frames (for models given one frame).
//! - **EGNO / SGDD** ([`EgnoMd17Spec`]): heavy atoms only; edges = bonds (heavy-atom pairs closer
//!   than 1.6 Å in the first frame, type 1) plus 2-hop neighbours (type 2); `delta_frame = 3000`
//!   raw frames, `T = 8`; 500 / 2000 / 2000 windows at EGNO's own start frames: numpy's legacy
//!   generator seeded with 100 draws 10% / 5% / 5% of the frames between 10,000 frames from
//!   either end without overlap (train first, then validation from the rest, then test), and the
//!   first 500 / 2000 / 2000 of each draw are kept — the same windows as EGNO's code on the same
//!   file ([`crate::numpy_legacy`]). Each window is stored as a short trajectory of the start
//!   frame and its `T` targets (frames `start + k·Δ/T`, `k = 0..=T`), so [`egno_windows`]
//!   (condition on frame 0, targets 1..=T) reads them.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::convert::{bones_and_two_hop, contact_edges, write_splits};
use crate::dataset::{Dataset, DatasetMeta};
use crate::error::Error;
use crate::formats::md17::{Md17, read_md17};
use crate::import_error::{ImportError, ImportResult};
use crate::manifest::Manifest;
use crate::normalize::NormalizationSpec;
use crate::split::{Split, SplitMethod, SplitSpec};
use crate::trajectory::{MetadataMap, Trajectory};
use crate::window::{TargetFrames, WindowSpec};

/// The eight molecules of MD17 (sGDML), by the names the project uses (the sGDML file names:
/// `md17_<name>.npz`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Md17Molecule {
    /// `aspirin` (21 atoms, 13 heavy).
    Aspirin,
    /// `benzene` (12 atoms, 6 heavy).
    Benzene,
    /// `ethanol` (9 atoms, 3 heavy).
    Ethanol,
    /// `malonaldehyde` (9 atoms, 5 heavy).
    Malonaldehyde,
    /// `naphthalene` (18 atoms, 10 heavy).
    Naphthalene,
    /// `salicylic_acid` (16 atoms, 10 heavy; rMD17 calls it `salicylic`).
    SalicylicAcid,
    /// `toluene` (15 atoms, 7 heavy).
    Toluene,
    /// `uracil` (12 atoms, 8 heavy).
    Uracil,
}

/// The accepted spellings of [`Md17Molecule`], for error messages.
const MD17_NAMES: &str =
    "aspirin, benzene, ethanol, malonaldehyde, naphthalene, salicylic_acid, toluene, uracil";

impl Md17Molecule {
    /// All eight, in alphabetical order.
    pub const ALL: [Md17Molecule; 8] = [
        Self::Aspirin,
        Self::Benzene,
        Self::Ethanol,
        Self::Malonaldehyde,
        Self::Naphthalene,
        Self::SalicylicAcid,
        Self::Toluene,
        Self::Uracil,
    ];

    /// The name (`salicylic_acid`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Aspirin => "aspirin",
            Self::Benzene => "benzene",
            Self::Ethanol => "ethanol",
            Self::Malonaldehyde => "malonaldehyde",
            Self::Naphthalene => "naphthalene",
            Self::SalicylicAcid => "salicylic_acid",
            Self::Toluene => "toluene",
            Self::Uracil => "uracil",
        }
    }

    /// The name in the rMD17 archive (`salicylic` for salicylic acid, otherwise [`Self::name`]).
    pub fn rmd17_name(self) -> &'static str {
        match self {
            Self::SalicylicAcid => "salicylic",
            other => other.name(),
        }
    }

    /// The source of the original MD17 file in `datasets/manifest.toml` (`md17-<name>`).
    pub fn source_name(self) -> String {
        format!("md17-{}", self.name())
    }
}

impl fmt::Display for Md17Molecule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Md17Molecule {
    type Err = Error;

    /// Parses a name of [`Md17Molecule::name`].
    fn from_str(s: &str) -> crate::Result<Self> {
        Self::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| Error::Parse {
                what: "MD17 molecule",
                input: s.into(),
                expected: MD17_NAMES,
            })
    }
}

/// A molecule of the revised MD17 archive (`rmd17_<name>.npz`): MD17's eight and two more.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rmd17Molecule {
    /// One of MD17's eight (salicylic acid is `salicylic` in the archive).
    Md17(Md17Molecule),
    /// `azobenzene` (rMD17 only).
    Azobenzene,
    /// `paracetamol` (rMD17 only).
    Paracetamol,
}

impl Rmd17Molecule {
    /// The name in the archive (`salicylic`, `azobenzene`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::Md17(m) => m.rmd17_name(),
            Self::Azobenzene => "azobenzene",
            Self::Paracetamol => "paracetamol",
        }
    }

    /// The file inside the archive, `rmd17_<name>.npz`.
    pub fn file_name(self) -> String {
        format!("rmd17_{}.npz", self.name())
    }
}

impl fmt::Display for Rmd17Molecule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Rmd17Molecule {
    type Err = Error;

    /// Parses an MD17 name (`salicylic_acid`) or an rMD17 name (`salicylic`, `azobenzene`,
    /// `paracetamol`).
    fn from_str(s: &str) -> crate::Result<Self> {
        match s {
            "azobenzene" => Ok(Self::Azobenzene),
            "paracetamol" => Ok(Self::Paracetamol),
            "salicylic" => Ok(Self::Md17(Md17Molecule::SalicylicAcid)),
            _ => s.parse().map(Self::Md17).map_err(|_| Error::Parse {
                what: "rMD17 molecule",
                input: s.into(),
                expected: "aspirin, azobenzene, benzene, ethanol, malonaldehyde, naphthalene, \
                           paracetamol, salicylic (or salicylic_acid), toluene, uracil",
            }),
        }
    }
}

/// Which MD17 file to obtain: the original (sGDML host) or the revised one (rMD17 archive).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Md17File {
    /// `md17_<name>.npz` from the sGDML host (source `md17-<name>`).
    Original(Md17Molecule),
    /// `rmd17_<name>.npz` from the rMD17 archive (source [`RMD17_SOURCE`]).
    Revised(Rmd17Molecule),
}

/// The source of the rMD17 archive in `datasets/manifest.toml`.
pub const RMD17_SOURCE: &str = "rmd17";

impl Md17File {
    /// The dataset name the project gives it: `md17-<name>` or `rmd17-<name>`.
    pub fn dataset_name(self) -> String {
        match self {
            Self::Original(m) => m.source_name(),
            Self::Revised(m) => format!("rmd17-{}", m.name()),
        }
    }
}

/// Obtains an MD17 or rMD17 file into `cache`, verified against `sources` (for rMD17: the archive,
/// then the one member). Returns the path of the `.npz` and what was obtained from the manifest
/// (the `.npz` itself, or the rMD17 archive).
///
/// # Errors
/// [`Error::UnknownSource`] when the manifest lacks the source, [`ImportError::Unusable`] when
/// the rMD17 archive has no member for the molecule, and the errors of
/// [`crate::sources::obtain`] and [`crate::sources::extract_tar`].
#[cfg(feature = "download")]
pub fn obtain_md17(
    file: Md17File,
    sources: &crate::sources::Sources,
    cache: &Path,
    python: &Path,
    progress: crate::sources::Progress<'_>,
) -> ImportResult<(std::path::PathBuf, crate::sources::Obtained)> {
    use crate::sources::{extract_tar, obtain};
    match file {
        Md17File::Original(m) => {
            let source = sources.require(&m.source_name())?;
            let got = obtain(source, cache, python, progress)?;
            Ok((got.path.clone(), got))
        }
        Md17File::Revised(m) => {
            let source = sources.require(RMD17_SOURCE)?;
            let name = m.file_name();
            let member: Vec<_> = source
                .members
                .iter()
                .filter(|x| x.file == name)
                .cloned()
                .collect();
            if member.is_empty() {
                let known: Vec<&str> = source.members.iter().map(|m| m.file.as_str()).collect();
                return Err(ImportError::unusable(
                    &source.cache_path(cache),
                    format!("rMD17 has no {name} (known: {})", known.join(", ")),
                ));
            }
            let got = obtain(source, cache, python, progress)?;
            let npz = extract_tar(&got.path, &member, cache)?.remove(0);
            Ok((npz, got))
        }
    }
}

/// The two MD17 settings of the papers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Md17Setting {
    /// GeoTDM / LaM-SLidE ([`GeoTdmMd17Spec`]): all atoms, every 10th frame, chronological
    /// 60/20/20, 10 + 20 windows.
    Geotdm,
    /// EGNO / SGDD ([`EgnoMd17Spec`]): heavy atoms, bonds < 1.6 Å + 2-hop, Δ = 3000, T = 8,
    /// 500/2000/2000 windows.
    Egno,
}

impl Md17Setting {
    /// `geotdm` or `egno`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Geotdm => "geotdm",
            Self::Egno => "egno",
        }
    }
}

impl fmt::Display for Md17Setting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Md17Setting {
    type Err = Error;

    /// Parses `geotdm` or `egno`.
    fn from_str(s: &str) -> crate::Result<Self> {
        match s {
            "geotdm" => Ok(Self::Geotdm),
            "egno" => Ok(Self::Egno),
            _ => Err(Error::Parse {
                what: "MD17 setting",
                input: s.into(),
                expected: "geotdm, egno",
            }),
        }
    }
}

/// What [`convert_md17`] read and wrote.
#[derive(Clone, Debug, PartialEq)]
pub struct Md17Conversion {
    /// Frames of the input trajectory.
    pub num_frames: usize,
    /// Atoms of the input trajectory.
    pub num_atoms: usize,
    /// The input's `theory` string, if any.
    pub theory: Option<String>,
    /// Nodes per trajectory of the dataset (all atoms, or the heavy atoms).
    pub num_nodes: usize,
    /// Trajectories in train, val, test.
    pub num_trajectories: [usize; 3],
    /// The dataset directory's manifest.
    pub manifest: Manifest,
}

/// Reads an MD17 or rMD17 `.npz` and writes the dataset directory `out` (train/val/test and a
/// manifest) in `setting`; `seed` is the `np.random.seed` of EGNO's start-frame draw (EGNO's code
/// uses 100; the GeoTDM setting draws nothing and ignores it).
///
/// # Errors
/// Reader errors naming `from`; [`ImportError::Unusable`] when the trajectory does not fit the
/// setting (e.g. fewer frames than EGNO's margins); I/O errors naming the output file.
pub fn convert_md17(
    from: &Path,
    name: &str,
    setting: Md17Setting,
    seed: u32,
    out: &Path,
) -> ImportResult<Md17Conversion> {
    let md = read_md17(from)?;
    let splits = match setting {
        Md17Setting::Geotdm => md17_geotdm(&md, name, &GeoTdmMd17Spec::default(), from)?,
        Md17Setting::Egno => md17_egno(
            &md,
            name,
            &EgnoMd17Spec {
                seed,
                ..EgnoMd17Spec::default()
            },
            from,
        )?,
    };
    let manifest = write_splits(name, &splits, out)?;
    Ok(Md17Conversion {
        num_frames: md.num_frames,
        num_atoms: md.num_atoms(),
        theory: md.theory,
        num_nodes: splits[0].num_nodes(),
        num_trajectories: [splits[0].len(), splits[1].len(), splits[2].len()],
        manifest,
    })
}

/// The GeoTDM / LaM-SLidE MD17 setting.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GeoTdmMd17Spec {
    /// Time between raw frames in fs (MD17: 0.5 fs).
    pub timestep_fs: f64,
    /// Keep every this many frames, after computing velocities (GeoTDM: 10).
    pub downsample: usize,
    /// Train/val/test fractions of the frames, chronologically (60/20/20).
    pub fractions: [f64; 3],
    /// Normalisation fitted on the training part.
    pub normalization: NormalizationSpec,
}

impl Default for GeoTdmMd17Spec {
    fn default() -> Self {
        Self {
            timestep_fs: 0.5,
            downsample: 10,
            fractions: [0.6, 0.2, 0.2],
            normalization: NormalizationSpec::default(),
        }
    }
}

/// GeoTDM's windows: 10 conditioning frames, the next 20 predicted, sliding by one frame.
pub fn geotdm_windows() -> WindowSpec {
    WindowSpec::geotdm(10, 20, 1)
}

/// The EGNO / SGDD MD17 setting.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EgnoMd17Spec {
    /// Time between raw frames in fs (MD17: 0.5 fs).
    pub timestep_fs: f64,
    /// Keep only atoms with atomic number > 1.
    pub heavy_atoms_only: bool,
    /// Bond cutoff in Å (first frame).
    pub bond_cutoff: f64,
    /// Horizon in raw frames (3000).
    pub delta_frame: usize,
    /// Number of targets (8); must divide `delta_frame`.
    pub num_targets: usize,
    /// Windows kept in train, val, test (500, 2000, 2000): the first of each draw.
    pub counts: [usize; 3],
    /// Frames left out at each end of the trajectory before drawing starts (10,000).
    pub margin: usize,
    /// Fractions of the remaining frames drawn for train, val, test (0.1, 0.05, 0.05).
    pub fractions: [f64; 3],
    /// `np.random.seed` of the draw (EGNO: 100).
    pub seed: u32,
}

impl Default for EgnoMd17Spec {
    fn default() -> Self {
        Self {
            timestep_fs: 0.5,
            heavy_atoms_only: true,
            bond_cutoff: 1.6,
            delta_frame: 3000,
            num_targets: 8,
            counts: [500, 2000, 2000],
            margin: 10_000,
            fractions: [0.1, 0.05, 0.05],
            seed: 100,
        }
    }
}

/// EGNO's windows over the stored per-window trajectories: condition on frame 0, targets 1..=T.
pub fn egno_windows(num_targets: usize) -> WindowSpec {
    WindowSpec::egno(0, num_targets, num_targets).targets(TargetFrames::Consecutive)
}

/// Velocity of atom coordinates at raw frame `t` from consecutive frames: `(x[t+1] − x[t]) / dt`
/// (backward at the last frame).
fn velocity_at(md: &Md17, t: usize, dt: f64) -> Vec<f64> {
    let n3 = 3 * md.num_atoms();
    let (a, b) = if t + 1 < md.num_frames {
        (t, t + 1)
    } else {
        (t.saturating_sub(1), t)
    };
    if a == b {
        return vec![0.0; n3];
    }
    (0..n3)
        .map(|k| (md.positions[b * n3 + k] - md.positions[a * n3 + k]) / dt)
        .collect()
}

fn check_timestep(dt: f64, path: &Path) -> ImportResult<()> {
    if dt.is_finite() && dt > 0.0 {
        Ok(())
    } else {
        Err(ImportError::unusable(
            path,
            format!("time step {dt} fs is not positive"),
        ))
    }
}

fn md17_meta(name: &str, md: &Md17, dt_fs: f64, generator: serde_json::Value) -> DatasetMeta {
    DatasetMeta {
        length_unit: "angstrom".into(),
        time_unit: "fs".into(),
        generator: serde_json::json!({
            "setting": generator,
            "molecule": md.name,
            "theory": md.theory,
            "atomic_numbers": md.atomic_numbers,
        }),
        ..DatasetMeta::new(name, "md17", dt_fs)
    }
}

/// The GeoTDM setting (see the module docs): normalised train, val, test datasets of one
/// trajectory each.
///
/// # Errors
/// [`ImportError::Unusable`] when the trajectory is too short to split, spec errors, data errors.
pub fn md17_geotdm(
    md: &Md17,
    name: &str,
    spec: &GeoTdmMd17Spec,
    path: &Path,
) -> ImportResult<[Dataset; 3]> {
    check_timestep(spec.timestep_fs, path)?;
    if spec.downsample == 0 {
        return Err(Error::spec("GeoTDM MD17 spec", "downsample must be >= 1").into());
    }
    let n = md.num_atoms();
    let kept: Vec<usize> = (0..md.num_frames).step_by(spec.downsample).collect();
    let mut positions = Vec::with_capacity(kept.len() * n * 3);
    let mut velocities = Vec::with_capacity(kept.len() * n * 3);
    for &t in &kept {
        positions.extend_from_slice(&md.positions[t * n * 3..(t + 1) * n * 3]);
        velocities.extend(velocity_at(md, t, spec.timestep_fs));
    }
    let types: Vec<i64> = md.atomic_numbers.iter().map(|&z| i64::from(z)).collect();
    let dt = spec.timestep_fs * spec.downsample as f64;
    let build = || -> crate::Result<[Dataset; 3]> {
        let traj = Trajectory::new(kept.len(), n, positions)?
            .with_velocities(velocities)?
            .with_node_types(types)?;
        let meta = md17_meta(name, md, dt, serde_json::to_value(spec).unwrap_or_default());
        let ds = Dataset::new(meta, vec![traj])?;
        let [a, b, c] = spec.fractions;
        let split = SplitSpec::new(SplitMethod::FrameChronological)
            .fractions(a, b, c)
            .check()?;
        let splits = ds.split(&split)?;
        if splits.train.is_empty() {
            return Err(Error::spec(
                "GeoTDM MD17 spec",
                format!("{} frames leave no training frames", kept.len()),
            ));
        }
        let norm = spec.normalization.fit(&splits.train)?;
        Ok([
            with_geotdm_anchors(norm.apply(&splits.train)?)?,
            with_geotdm_anchors(norm.apply(&splits.val)?)?,
            with_geotdm_anchors(norm.apply(&splits.test)?)?,
        ])
    };
    build().map_err(|e| ImportError::in_file(path, e))
}

/// Records the anchors of GeoTDM's windows ([`geotdm_windows`]: frames 9, 10, … while 20 frames
/// follow) in every trajectory's metadata ([`crate::START_FRAMES_KEY`]), so that a model given
/// fewer frames (one, with its velocity) reads exactly GeoTDM's windows with
/// [`crate::Starts::Metadata`].
fn with_geotdm_anchors(ds: Dataset) -> crate::Result<Dataset> {
    let spec = geotdm_windows().check()?;
    let trajectories = ds
        .trajectories()
        .iter()
        .map(|t| Ok(t.clone().with_start_frames(&spec.anchors(t.num_frames())?)))
        .collect::<crate::Result<Vec<_>>>()?;
    Dataset::new(ds.meta().clone(), trajectories)
}

/// EGNO's start frames of the train, val and test windows for a trajectory of `num_frames`
/// frames, in the order EGNO draws them (see the module docs).
///
/// EGNO's code drops the last frame (its velocities are forward differences), leaving
/// `L = num_frames − 1` frames; it draws from `M = L − 2·margin` frames, `⌊f·M⌋` per split,
/// offsets them by `margin` and keeps the first `counts` of each.
///
/// # Errors
/// A message when the trajectory is too short for the margins, the draws or the horizon.
pub fn egno_start_frames(
    num_frames: usize,
    spec: &EgnoMd17Spec,
) -> Result<[Vec<usize>; 3], String> {
    let frames = num_frames.saturating_sub(1);
    let m = frames
        .checked_sub(2 * spec.margin)
        .filter(|&m| m > 0)
        .ok_or_else(|| {
            format!(
                "{num_frames} frames leave nothing between the margins of {} frames at each end",
                spec.margin
            )
        })?;
    if spec.fractions.iter().any(|f| !(0.0..=1.0).contains(f))
        || spec.fractions.iter().sum::<f64>() > 1.0
    {
        return Err(format!(
            "split fractions {:?} must lie in [0, 1] and sum to at most 1",
            spec.fractions
        ));
    }
    // `int(f * M)` in Python: the product in f64, truncated
    let sizes = spec.fractions.map(|f| (f * m as f64) as usize);
    let mut rng = crate::numpy_legacy::RandomState::new(spec.seed);
    let mut taken = vec![false; m];
    let mut out: [Vec<usize>; 3] = Default::default();
    for (k, &size) in sizes.iter().enumerate() {
        let rest: Vec<usize> = (0..m).filter(|&i| !taken[i]).collect();
        let draw = rng
            .choice_without_replacement(&rest, size)
            .ok_or_else(|| format!("cannot draw {size} distinct frames from {}", rest.len()))?;
        for &i in &draw {
            taken[i] = true;
        }
        let keep = spec.counts[k].min(draw.len());
        out[k] = draw[..keep].iter().map(|&i| i + spec.margin).collect();
    }
    if let Some(&last) = out.iter().flatten().max()
        && last + spec.delta_frame >= frames
    {
        return Err(format!(
            "start frame {last} plus the horizon {} passes the last usable frame {}",
            spec.delta_frame,
            frames - 1
        ));
    }
    Ok(out)
}

/// The EGNO / SGDD setting (see the module docs): train, val, test datasets whose trajectories are
/// the windows.
///
/// # Errors
/// [`ImportError::Unusable`] when the trajectory is too short for EGNO's margins and draws,
/// `T` does not divide `delta_frame`, or no heavy atom is left; data errors.
pub fn md17_egno(
    md: &Md17,
    name: &str,
    spec: &EgnoMd17Spec,
    path: &Path,
) -> ImportResult<[Dataset; 3]> {
    check_timestep(spec.timestep_fs, path)?;
    let (delta, t_targets) = (spec.delta_frame, spec.num_targets);
    if t_targets == 0 || delta == 0 || delta % t_targets != 0 {
        return Err(ImportError::unusable(
            path,
            format!("num_targets {t_targets} must divide delta_frame {delta} (both >= 1)"),
        ));
    }
    let stride = delta / t_targets;
    let atoms: Vec<usize> = (0..md.num_atoms())
        .filter(|&i| !spec.heavy_atoms_only || md.atomic_numbers[i] > 1)
        .collect();
    if atoms.is_empty() {
        return Err(ImportError::unusable(path, "no heavy atoms"));
    }
    let split_starts = egno_start_frames(md.num_frames, spec)
        .map_err(|problem| ImportError::unusable(path, problem))?;
    let n = atoms.len();
    let n_all = md.num_atoms();
    let frame_of = |t: usize| -> Vec<f64> {
        atoms
            .iter()
            .flat_map(|&i| {
                md.positions[(t * n_all + i) * 3..(t * n_all + i) * 3 + 3]
                    .iter()
                    .copied()
            })
            .collect()
    };
    // bonds in the first frame between the kept atoms
    let first = frame_of(0);
    let bonds = contact_edges(&first, spec.bond_cutoff);
    let edges = bones_and_two_hop(bonds.pairs(), n).map_err(|e| ImportError::in_file(path, e))?;
    let types: Vec<i64> = atoms
        .iter()
        .map(|&i| i64::from(md.atomic_numbers[i]))
        .collect();
    let dt = spec.timestep_fs * stride as f64;
    let mut out = Vec::with_capacity(3);
    for (s, chosen) in Split::ALL.iter().zip(&split_starts) {
        let mut trajectories = Vec::with_capacity(chosen.len());
        for &start in chosen {
            let frames: Vec<usize> = (0..=t_targets).map(|k| start + k * stride).collect();
            let positions: Vec<f64> = frames.iter().flat_map(|&t| frame_of(t)).collect();
            let velocities: Vec<f64> = frames
                .iter()
                .flat_map(|&t| {
                    let v = velocity_at(md, t, spec.timestep_fs);
                    atoms
                        .iter()
                        .flat_map(move |&i| [v[3 * i], v[3 * i + 1], v[3 * i + 2]])
                        .collect::<Vec<_>>()
                })
                .collect();
            let mut meta = MetadataMap::new();
            meta.insert("start_frame".into(), start.into());
            let traj = (|| -> crate::Result<Trajectory> {
                Ok(Trajectory::new(frames.len(), n, positions)?
                    .with_velocities(velocities)?
                    .with_node_types(types.clone())?
                    .with_edges(edges.clone())?
                    .with_metadata(meta))
            })()
            .map_err(|e| ImportError::in_file(path, e))?;
            trajectories.push(traj);
        }
        let mut meta = md17_meta(name, md, dt, serde_json::to_value(spec).unwrap_or_default());
        meta.edge_attribute_names = vec!["edge_type".into()];
        meta.split = Some(*s);
        if trajectories.is_empty() {
            let layout = crate::dataset::DatasetLayout {
                num_nodes: n,
                num_node_features: 0,
                has_velocities: true,
                has_node_types: true,
                has_edges: true,
                num_edge_attributes: 1,
            };
            out.push(
                Dataset::with_layout(meta, layout, trajectories)
                    .map_err(|e| ImportError::in_file(path, e))?,
            );
        } else {
            out.push(Dataset::new(meta, trajectories).map_err(|e| ImportError::in_file(path, e))?);
        }
    }
    Ok(out.try_into().expect("three splits"))
}
