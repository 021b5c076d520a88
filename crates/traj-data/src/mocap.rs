//! CMU motion capture in EGNO's setting: joints as nodes, bones (edge type 1) plus 2-hop
//! neighbours (edge type 2) as edges, EGNO's split of trials and start frames.
//!
//! The input is the folder `cmu-mocap-09-run` (see its README): `motion_run.npz` with `edges`
//! int64 `(30, 2)` (bones as (child, parent)) and `trial_00` … `trial_10` float64 `(T_i, 31, 3)`,
//! and `split_run.json` `{"train"|"val"|"test": {"<trial>": [start frames]}}`. EGNO's run
//! setting: `delta_frame = 30`, `T = 5` consecutive targets (start + 26 … start + 30).

use std::collections::BTreeMap;
use std::path::Path;

use crate::convert::{bones_and_two_hop, finite_difference_velocities, write_splits};
use crate::dataset::{Dataset, DatasetLayout, DatasetMeta};
use crate::formats::asf_amc::{Amc, Asf, read_amc, read_asf};
use crate::formats::npz::Npz;
use crate::import_error::{ImportError, ImportResult};
use crate::manifest::Manifest;
use crate::sources::{Expected, verify_file};
use crate::split::Split;
use crate::trajectory::{MetadataMap, Trajectory};
use crate::window::WindowSpec;

/// sha256 of the published `motion_run.npz` (from its README).
pub const MOTION_RUN_SHA256: &str =
    "5ae9ea5db4cbb0fc50bce658808d731cdb37f0a02695105876d37563a624d259";
/// sha256 of the published `split_run.json` (from its README).
pub const SPLIT_RUN_SHA256: &str =
    "61569e8408b0582fbb7600e52cc0ed599c481cfb90679b408c345c72e0086a2a";

/// EGNO's "run" horizon.
pub const RUN_DELTA_FRAME: usize = 30;
/// EGNO's number of (consecutive) targets.
pub const RUN_NUM_TARGETS: usize = 5;

/// EGNO's window for the mocap "run" set: condition on the start frame, targets start + 26 …
/// start + 30. The start frames themselves are per trajectory (metadata `start_frames`).
pub fn run_window_spec() -> WindowSpec {
    WindowSpec::egno(0, RUN_DELTA_FRAME, RUN_NUM_TARGETS)
        .targets(crate::window::TargetFrames::Consecutive)
}

/// One AMC motion as a [`Trajectory`]: joint positions by forward kinematics of `asf` (ASF length
/// units, root first, then bones in ASF order), velocities by finite differences per frame, and
/// bones (type 1) + 2-hop (type 2) edges, as in EGNO's mocap setting.
///
/// # Errors
/// Data errors (e.g. a non-finite position) naming `amc_path`.
pub fn asf_amc_trajectory(asf: &Asf, amc: &Amc, amc_path: &Path) -> ImportResult<Trajectory> {
    let j = asf.num_joints();
    let t = amc.frames.len();
    let positions = asf.forward_kinematics(amc);
    let velocities = finite_difference_velocities(&positions, t, 1.0);
    let mut meta = MetadataMap::new();
    meta.insert("source".into(), amc_path.display().to_string().into());
    let build = || -> crate::Result<Trajectory> {
        Ok(Trajectory::new(t, j, positions)?
            .with_velocities(velocities)?
            .with_edges(bones_and_two_hop(&asf.edges(), j)?)?
            .with_metadata(meta))
    };
    build().map_err(|e| ImportError::in_file(amc_path, e))
}

/// EGNO's split of CMU subject 09's eleven "run" trials (`09_01` … `09_11` are indices 0 … 10).
pub const RUN_TRIAL_SPLIT: [&[usize]; 3] = [&[1, 2, 5, 6, 10], &[0, 4, 9], &[3, 7, 8]];

/// Which trials of a CMU subject: subject 09's eleven "run" trials, or a list of trial numbers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CmuTrials {
    /// `run`: subject 09's running trials `01` … `11`, split as EGNO does ([`RUN_TRIAL_SPLIT`]).
    Run,
    /// Trial numbers as the CMU site writes them (`01`, `02`, …), split chronologically 60/20/20.
    List(Vec<String>),
}

impl std::str::FromStr for CmuTrials {
    type Err = crate::Error;

    /// `run`, or a comma list of trial numbers (`01,02,05`).
    fn from_str(s: &str) -> crate::Result<Self> {
        if s == "run" {
            return Ok(Self::Run);
        }
        let list: Vec<String> = s.split(',').map(|t| t.trim().to_string()).collect();
        if list
            .iter()
            .any(|t| t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(crate::Error::Parse {
                what: "CMU trial list",
                input: s.into(),
                expected: "run, or trial numbers separated by commas (01,02)",
            });
        }
        Ok(Self::List(list))
    }
}

impl std::fmt::Display for CmuTrials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Run => f.write_str("run"),
            Self::List(l) => f.write_str(&l.join(",")),
        }
    }
}

/// Trials of one CMU motion-capture subject, as listed in `datasets/manifest.toml`
/// (`cmu-<subject>-asf`, `cmu-<subject>-<trial>-amc`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CmuSelection {
    /// Subject number as the CMU site writes it (`09`).
    pub subject: String,
    /// Which trials.
    pub trials: CmuTrials,
}

impl CmuSelection {
    /// The trial numbers (`01` … `11` for [`CmuTrials::Run`]).
    ///
    /// # Errors
    /// [`crate::Error::InvalidSpec`] for `run` with a subject other than 09.
    pub fn trial_numbers(&self) -> crate::Result<Vec<String>> {
        match &self.trials {
            CmuTrials::Run if self.subject == "09" => {
                Ok((1..=11).map(|i| format!("{i:02}")).collect())
            }
            CmuTrials::Run => Err(crate::Error::spec(
                "CMU trial selection",
                format!(
                    "the `run` trial list is known for subject 09 only (not {}); list the trials: 01,02,...",
                    self.subject
                ),
            )),
            CmuTrials::List(l) => Ok(l.clone()),
        }
    }

    /// The manifest sources to obtain: the skeleton first, then one motion per trial.
    ///
    /// # Errors
    /// As [`CmuSelection::trial_numbers`].
    pub fn source_names(&self) -> crate::Result<Vec<String>> {
        let mut names = vec![format!("cmu-{}-asf", self.subject)];
        names.extend(
            self.trial_numbers()?
                .iter()
                .map(|t| format!("cmu-{}-{t}-amc", self.subject)),
        );
        Ok(names)
    }

    /// Indices into the trials of the train, val and test motions: EGNO's split for `run`,
    /// otherwise the trials in order, chronologically 60/20/20.
    ///
    /// # Errors
    /// As [`CmuSelection::trial_numbers`].
    pub fn split(&self) -> crate::Result<[Vec<usize>; 3]> {
        match self.trials {
            CmuTrials::Run => {
                self.trial_numbers()?;
                Ok(RUN_TRIAL_SPLIT.map(<[usize]>::to_vec))
            }
            CmuTrials::List(_) => {
                let n = self.trial_numbers()?.len();
                let c = crate::split::SplitSpec::new(
                    crate::split::SplitMethod::TrajectoryChronological,
                )
                .check()?
                .trajectory_indices(n)?;
                Ok([c.train, c.val, c.test])
            }
        }
    }

    /// The dataset name, `cmu-<subject>-<trials>` (`cmu-09-run`, `cmu-09-01,02`).
    pub fn dataset_name(&self) -> String {
        format!("cmu-{}-{}", self.subject, self.trials)
    }

    /// Converts the skeleton and motions (the files of [`CmuSelection::source_names`], in that
    /// order) into the dataset directory `out_dir` with [`CmuSelection::split`].
    ///
    /// # Errors
    /// As [`write_asf_amc_dir`]; [`ImportError::Unusable`] when `files` does not hold the skeleton
    /// and one motion per trial.
    pub fn write_dataset_dir(
        &self,
        files: &[std::path::PathBuf],
        out_dir: &Path,
    ) -> ImportResult<Manifest> {
        let split = self.split()?;
        let trials = self.trial_numbers()?.len();
        let Some((asf, amcs)) = files.split_first().filter(|(_, a)| a.len() == trials) else {
            return Err(ImportError::unusable(
                out_dir,
                format!(
                    "{} needs a skeleton and {trials} motions, got {} files",
                    self.dataset_name(),
                    files.len()
                ),
            ));
        };
        write_asf_amc_dir(
            &self.dataset_name(),
            asf,
            amcs,
            [&split[0], &split[1], &split[2]],
            out_dir,
        )
    }
}

/// Converts an ASF skeleton and AMC motions into a dataset directory (`train`/`val`/`test` and a
/// manifest). `split[s]` lists the indices into `amcs` of split `s`.
///
/// # Errors
/// Reader errors naming the file; [`ImportError::Unusable`] for a split index past the motions.
pub fn write_asf_amc_dir(
    name: &str,
    asf_path: &Path,
    amcs: &[std::path::PathBuf],
    split: [&[usize]; 3],
    out_dir: &Path,
) -> ImportResult<Manifest> {
    let asf = read_asf(asf_path)?;
    let mut trajectories = Vec::with_capacity(amcs.len());
    for p in amcs {
        let amc = read_amc(p, &asf)?;
        trajectories.push(asf_amc_trajectory(&asf, &amc, p)?);
    }
    let layout = trajectories
        .first()
        .map(DatasetLayout::of)
        .ok_or_else(|| ImportError::unusable(asf_path, "no AMC motions given"))?;
    let mut datasets = Vec::with_capacity(3);
    for (s, indices) in Split::ALL.into_iter().zip(split) {
        let mut part = Vec::new();
        for &i in indices {
            let t = trajectories.get(i).ok_or_else(|| {
                ImportError::unusable(
                    asf_path,
                    format!("split index {i} is past the {} motions", amcs.len()),
                )
            })?;
            part.push(t.clone());
        }
        let meta = DatasetMeta {
            length_unit: "asf_length_unit".into(),
            time_unit: "frame".into(),
            edge_attribute_names: vec!["edge_type".into()],
            generator: serde_json::json!({"source": "ASF/AMC by forward kinematics", "window": run_window_spec()}),
            split: Some(s),
            ..DatasetMeta::new(name, "cmu-mocap", 1.0)
        };
        datasets.push(
            Dataset::with_layout(meta, layout, part)
                .map_err(|e| ImportError::in_file(asf_path, e))?,
        );
    }
    let datasets: [Dataset; 3] = datasets.try_into().expect("three splits");
    Ok(write_splits(name, &datasets, out_dir)?)
}

/// Converts the published CMU subject 09 "run" folder into `train`/`val`/`test` safetensors files
/// and a [`Manifest`] in `out_dir`, after verifying both input files against
/// [`MOTION_RUN_SHA256`] and [`SPLIT_RUN_SHA256`].
///
/// Each trial is one trajectory: positions in the ASF's length units, velocities by finite
/// differences per frame, edges = bones (type 1) + 2-hop (type 2), metadata `trial` and
/// `start_frames` (EGNO's, checked to leave room for the 30-frame horizon). EGNO's node feature
/// (the joint height `y / 10`) depends on the frame and is computed by the model.
///
/// # Errors
/// [`crate::Error::ChecksumMismatch`] naming a changed input, [`ImportError::Malformed`] for a
/// corrupt npz or split, [`ImportError::Unusable`] for a start frame that leaves no room for the
/// horizon, I/O errors.
pub fn import_mocap_run(from: &Path, out_dir: &Path) -> ImportResult<Manifest> {
    let npz_path = from.join("motion_run.npz");
    let split_path = from.join("split_run.json");
    for (p, h) in [
        (&npz_path, MOTION_RUN_SHA256),
        (&split_path, SPLIT_RUN_SHA256),
    ] {
        verify_file(
            p,
            &Expected {
                bytes: None,
                sha256: Some(h.into()),
            },
        )?;
    }
    let datasets = read_mocap_run(&npz_path, &split_path)?;
    Ok(write_splits("mocap-run", &datasets, out_dir)?)
}

/// Reads the npz and split of the "run" set into train, val and test datasets (no checksum
/// check; see [`import_mocap_run`]).
///
/// # Errors
/// As [`import_mocap_run`].
pub fn read_mocap_run(npz_path: &Path, split_path: &Path) -> ImportResult<[Dataset; 3]> {
    let mut npz = Npz::open(npz_path)?;
    let edges = npz
        .i64("edges")?
        .ok_or_else(|| ImportError::malformed(npz_path, "npz", "array `edges` is missing"))?;
    if edges.shape.len() != 2 || edges.shape[1] != 2 {
        return Err(ImportError::malformed(
            npz_path,
            "npz",
            format!("`edges` has shape {:?}, expected (E, 2)", edges.shape),
        ));
    }
    let text =
        std::fs::read_to_string(split_path).map_err(|e| ImportError::io(split_path, "read", e))?;
    let split: BTreeMap<String, BTreeMap<String, Vec<usize>>> = serde_json::from_str(&text)
        .map_err(|e| ImportError::malformed(split_path, "split JSON", e.to_string()))?;
    let horizon = RUN_DELTA_FRAME;
    let mut out = Vec::new();
    for s in Split::ALL {
        let trials = split.get(s.as_str()).ok_or_else(|| {
            ImportError::malformed(
                split_path,
                "split JSON",
                format!("no `{}` entry", s.as_str()),
            )
        })?;
        let mut ordered: Vec<(usize, &Vec<usize>)> = trials
            .iter()
            .map(|(k, v)| {
                k.parse::<usize>().map(|i| (i, v)).map_err(|_| {
                    ImportError::malformed(
                        split_path,
                        "split JSON",
                        format!("trial key {k:?} is not an index"),
                    )
                })
            })
            .collect::<ImportResult<_>>()?;
        ordered.sort_by_key(|(i, _)| *i);
        let mut trajectories = Vec::new();
        for (trial, starts) in ordered {
            let name = format!("trial_{trial:02}");
            let arr = npz.f64(&name)?.ok_or_else(|| {
                ImportError::malformed(
                    npz_path,
                    "npz",
                    format!(
                        "array `{name}` (named in {}) is missing",
                        split_path.display()
                    ),
                )
            })?;
            if arr.shape.len() != 3 || arr.shape[2] != 3 || arr.shape[0] == 0 || arr.shape[1] == 0 {
                return Err(ImportError::malformed(
                    npz_path,
                    "npz",
                    format!("`{name}` has shape {:?}, expected (T, N, 3)", arr.shape),
                ));
            }
            let (t, n) = (arr.shape[0], arr.shape[1]);
            if let Some(&bad) = starts
                .iter()
                .find(|&&f| f.checked_add(horizon).is_none_or(|end| end >= t))
            {
                return Err(ImportError::unusable(
                    split_path,
                    format!(
                        "{}: {name} start frame {bad} + {horizon} is past its last frame {}",
                        s.as_str(),
                        t - 1
                    ),
                ));
            }
            let bones: Vec<[usize; 2]> = edges
                .data
                .chunks_exact(2)
                .map(|p| {
                    let idx = |v: i64| usize::try_from(v).ok().filter(|&v| v < n);
                    match (idx(p[0]), idx(p[1])) {
                        (Some(a), Some(b)) => Ok([a, b]),
                        _ => Err(ImportError::malformed(
                            npz_path,
                            "npz",
                            format!("bone ({}, {}) is outside 0..{n}", p[0], p[1]),
                        )),
                    }
                })
                .collect::<ImportResult<_>>()?;
            let velocities = finite_difference_velocities(&arr.data, t, 1.0);
            let mut meta = MetadataMap::new();
            meta.insert("trial".into(), trial.into());
            let build = || -> crate::Result<Trajectory> {
                Ok(Trajectory::new(t, n, arr.data.clone())?
                    .with_velocities(velocities)?
                    .with_edges(bones_and_two_hop(&bones, n)?)?
                    .with_metadata(meta)
                    .with_start_frames(starts))
            };
            trajectories.push(build().map_err(|e| ImportError::in_file(npz_path, e))?);
        }
        let meta = DatasetMeta {
            length_unit: "asf_length_unit".into(),
            time_unit: "frame".into(),
            edge_attribute_names: vec!["edge_type".into()],
            generator: serde_json::json!({
                "source": "CMU mocap subject 09 run, EGNO's motion_run.pkl/split_run.pkl as npz/json",
                "window": run_window_spec(),
                "start_frames": "per trajectory, metadata `start_frames`",
                "node_feature": "y / 10 at the condition frame (computed by the model)",
                "edges": "bones (type 1) + 2-hop (type 2)",
            }),
            split: Some(s),
            ..DatasetMeta::new("mocap-run", "cmu-mocap-run", 1.0)
        };
        out.push((meta, trajectories));
    }
    let layout = out
        .iter()
        .find_map(|(_, t)| t.first().map(DatasetLayout::of))
        .ok_or_else(|| ImportError::unusable(split_path, "every split is empty"))?;
    let mut datasets = Vec::with_capacity(3);
    for (meta, trajectories) in out {
        datasets.push(
            Dataset::with_layout(meta, layout, trajectories)
                .map_err(|e| ImportError::in_file(npz_path, e))?,
        );
    }
    Ok(datasets.try_into().expect("three splits"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmu_selections() {
        let run = CmuSelection {
            subject: "09".into(),
            trials: "run".parse().unwrap(),
        };
        assert_eq!(run.source_names().unwrap().len(), 12);
        assert_eq!(run.source_names().unwrap()[11], "cmu-09-11-amc");
        assert_eq!(run.split().unwrap()[0], vec![1, 2, 5, 6, 10]);
        assert_eq!(run.dataset_name(), "cmu-09-run");
        let other = CmuSelection {
            subject: "10".into(),
            ..run.clone()
        };
        let err = other.source_names().unwrap_err().to_string();
        assert!(err.contains("subject 09 only"), "{err}");
        let list = CmuSelection {
            subject: "09".into(),
            trials: "01, 02,03,04,05".parse().unwrap(),
        };
        assert_eq!(list.dataset_name(), "cmu-09-01,02,03,04,05");
        assert_eq!(list.source_names().unwrap()[1], "cmu-09-01-amc");
        assert_eq!(
            list.split().unwrap(),
            [vec![0, 1, 2], vec![3], vec![4]],
            "chronological 60/20/20"
        );
        assert!("01,,02".parse::<CmuTrials>().is_err());
        assert!("walk".parse::<CmuTrials>().is_err());
    }

    #[test]
    fn two_hop_edges_of_a_path_and_a_star() {
        // path 0-1-2-3: bones 3, two-hop (0,2), (1,3)
        let e = bones_and_two_hop(&[[1, 0], [2, 1], [3, 2]], 4).unwrap();
        assert_eq!(e.pairs(), &[[0, 1], [1, 2], [2, 3], [0, 2], [1, 3]]);
        assert_eq!(e.attributes(), &[1.0, 1.0, 1.0, 2.0, 2.0]);
        // star around 0 with 3 leaves: 3 bones + 3 two-hop pairs among the leaves
        let e = bones_and_two_hop(&[[1, 0], [2, 0], [3, 0]], 4).unwrap();
        assert_eq!(e.len(), 6);
        // a triangle has no extra two-hop pairs
        assert_eq!(
            bones_and_two_hop(&[[0, 1], [1, 2], [0, 2]], 3)
                .unwrap()
                .len(),
            3
        );
    }
}
