//! Windowing trajectories into (condition, target) samples, as EGNO and GeoTDM do.
//!
//! A window is placed at an *anchor* frame `a`, the last condition frame:
//! - condition frames: `a − C + 1, …, a` (`C = 1` for EGNO, `C = 10` for GeoTDM);
//! - target frames, with horizon `Δ = delta_frame` and `T = num_targets`:
//!   - [`TargetFrames::Consecutive`]: `a + Δ − T + 1, …, a + Δ` (EGNO's consecutive targets; with
//!     `Δ = T` this is "the next `T` frames", GeoTDM's prediction window);
//!   - [`TargetFrames::Strided`]: `a + ⌊Δ·k/T⌋` for `k = 1..=T`, evenly spaced up to `a + Δ`
//!     (EGNO's N-body setting: anchor 30, `Δ = 10`, `T = 5` → 32, 34, 36, 38, 40; its protein
//!     setting `Δ = 15`, `T = 4` → +3, +7, +11, +15).
//!
//! Anchors are a fixed list ([`Starts::Fixed`], EGNO: `[30]`), slide through each trajectory with
//! a stride ([`Starts::Sliding`], GeoTDM), or are listed per trajectory in its metadata under
//! [`START_FRAMES_KEY`] ([`Starts::Metadata`], EGNO's motion-capture split). Samples are
//! enumerated trajectory by trajectory, anchors ascending (metadata anchors in the order listed).

use serde::{Deserialize, Serialize};

use crate::dataset::Dataset;
use crate::error::{Error, Result};
use crate::normalize::PositionTransform;
use crate::trajectory::{EdgeList, Trajectory};

/// The trajectory metadata key listing a trajectory's own window anchors (a JSON array of
/// non-negative integers), read by [`Starts::Metadata`]; see [`Trajectory::start_frames`].
pub const START_FRAMES_KEY: &str = "start_frames";

/// Which frames up to the horizon are targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetFrames {
    /// The last `T` frames up to the horizon: `a + Δ − T + 1, …, a + Δ`.
    Consecutive,
    /// `T` frames evenly spaced up to the horizon: `a + ⌊Δ·k/T⌋`, `k = 1..=T`.
    Strided,
}

/// Where windows are anchored (the anchor is the last condition frame).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Starts {
    /// These anchors (strictly increasing) in every trajectory; a trajectory too short for them is
    /// an error.
    Fixed(Vec<usize>),
    /// Anchors `C − 1, C − 1 + stride, …` while the window fits; a trajectory too short for any
    /// window contributes none.
    Sliding {
        /// Step between consecutive anchors (>= 1).
        stride: usize,
    },
    /// Each trajectory's own anchors, listed in its metadata under [`START_FRAMES_KEY`] (as
    /// [`crate::mocap::import_mocap_run`] records EGNO's split); a trajectory without them, or
    /// with an anchor whose window does not fit, is an error.
    Metadata,
}

/// Unchecked window parameters (a builder); [`WindowSpec::check`] validates them into a
/// [`CheckedWindowSpec`].
///
/// ```
/// use traj_data::WindowSpec;
/// // EGNO, charged N-body: condition on frame 30, predict 5 frames evenly spaced up to frame 40
/// let egno = WindowSpec::egno(30, 10, 5).check().unwrap();
/// assert_eq!(egno.target_offsets(), &[2, 4, 6, 8, 10]);
/// // GeoTDM: 10 condition frames, the next 20 predicted, sliding by 1 frame
/// let geotdm = WindowSpec::geotdm(10, 20, 1).check().unwrap();
/// assert_eq!(geotdm.anchors(50).unwrap().len(), 21);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowSpec {
    /// Number of condition frames `C` (>= 1).
    pub condition_frames: usize,
    /// Horizon `Δ`: the last target is `anchor + Δ` (`Δ >= T`).
    pub delta_frame: usize,
    /// Number of target frames `T` (>= 1).
    pub num_targets: usize,
    /// Which frames up to the horizon are targets.
    pub targets: TargetFrames,
    /// Where windows are anchored.
    pub starts: Starts,
}

impl Default for WindowSpec {
    /// One condition frame, the next frame as target, sliding by 1.
    fn default() -> Self {
        Self {
            condition_frames: 1,
            delta_frame: 1,
            num_targets: 1,
            targets: TargetFrames::Consecutive,
            starts: Starts::Sliding { stride: 1 },
        }
    }
}

impl WindowSpec {
    /// EGNO's setting: condition on the single frame `start_frame`, `num_targets` strided targets
    /// up to `start_frame + delta_frame`.
    pub fn egno(start_frame: usize, delta_frame: usize, num_targets: usize) -> Self {
        Self {
            condition_frames: 1,
            delta_frame,
            num_targets,
            targets: TargetFrames::Strided,
            starts: Starts::Fixed(vec![start_frame]),
        }
    }

    /// GeoTDM's setting: `n_condition` frames, then the next `n_predict` frames, windows sliding
    /// by `stride` frames.
    pub fn geotdm(n_condition: usize, n_predict: usize, stride: usize) -> Self {
        Self {
            condition_frames: n_condition,
            delta_frame: n_predict,
            num_targets: n_predict,
            targets: TargetFrames::Consecutive,
            starts: Starts::Sliding { stride },
        }
    }

    /// Sets the number of condition frames `C`.
    pub fn condition_frames(mut self, c: usize) -> Self {
        self.condition_frames = c;
        self
    }

    /// Sets the horizon `Δ`.
    pub fn delta_frame(mut self, delta: usize) -> Self {
        self.delta_frame = delta;
        self
    }

    /// Sets the number of targets `T`.
    pub fn num_targets(mut self, t: usize) -> Self {
        self.num_targets = t;
        self
    }

    /// Sets consecutive or strided targets.
    pub fn targets(mut self, targets: TargetFrames) -> Self {
        self.targets = targets;
        self
    }

    /// Uses fixed anchor frames.
    pub fn start_frames(mut self, anchors: Vec<usize>) -> Self {
        self.starts = Starts::Fixed(anchors);
        self
    }

    /// Uses sliding anchors with `stride`.
    pub fn sliding(mut self, stride: usize) -> Self {
        self.starts = Starts::Sliding { stride };
        self
    }

    /// Uses each trajectory's metadata anchors ([`Starts::Metadata`]).
    pub fn metadata_starts(mut self) -> Self {
        self.starts = Starts::Metadata;
        self
    }

    /// Validates the parameters.
    ///
    /// # Errors
    /// [`Error::InvalidSpec`] saying which parameter is wrong.
    pub fn check(&self) -> Result<CheckedWindowSpec> {
        let bad = |reason: String| Err(Error::spec("window spec", reason));
        let (c, delta, t) = (self.condition_frames, self.delta_frame, self.num_targets);
        if c == 0 {
            return bad("condition_frames must be >= 1".into());
        }
        if t == 0 {
            return bad("num_targets must be >= 1".into());
        }
        if delta < t {
            return bad(format!(
                "delta_frame ({delta}) must be >= num_targets ({t}) so that targets are distinct future frames"
            ));
        }
        match &self.starts {
            Starts::Sliding { stride: 0 } => return bad("sliding stride must be >= 1".into()),
            Starts::Sliding { .. } | Starts::Metadata => {}
            Starts::Fixed(anchors) => {
                if anchors.is_empty() {
                    return bad("the list of start frames is empty".into());
                }
                if anchors.windows(2).any(|w| w[0] >= w[1]) {
                    return bad(format!(
                        "start frames must be strictly increasing, got {anchors:?}"
                    ));
                }
                if anchors[0] + 1 < c {
                    return bad(format!(
                        "start frame {} leaves no room for {c} condition frames",
                        anchors[0]
                    ));
                }
            }
        }
        let target_offsets = (1..=t)
            .map(|k| match self.targets {
                TargetFrames::Consecutive => delta - t + k,
                TargetFrames::Strided => delta * k / t,
            })
            .collect();
        Ok(CheckedWindowSpec {
            spec: self.clone(),
            target_offsets,
        })
    }
}

/// A validated [`WindowSpec`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckedWindowSpec {
    spec: WindowSpec,
    target_offsets: Vec<usize>,
}

/// One window: trajectory index and anchor frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WindowIndex {
    /// Trajectory index in the dataset.
    pub trajectory: usize,
    /// Anchor frame (the last condition frame).
    pub anchor: usize,
}

/// A (condition, target) sample.
///
/// # Shapes
/// - `condition_positions`, `condition_velocities`: `C × N × 3`
/// - `target_positions`, `target_velocities`: `T × N × 3`
/// - `node_features`: `N × F`; `node_types`: `N`
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Trajectory index in the dataset.
    pub trajectory: usize,
    /// Anchor frame (the last condition frame).
    pub anchor: usize,
    /// Nodes `N`.
    pub num_nodes: usize,
    /// Condition frame indices (ascending, ending at `anchor`).
    pub condition_frames: Vec<usize>,
    /// Condition positions, `C × N × 3`.
    pub condition_positions: Vec<f64>,
    /// Condition velocities, `C × N × 3`, if the dataset has velocities.
    pub condition_velocities: Option<Vec<f64>>,
    /// Target frame indices (ascending).
    pub target_frames: Vec<usize>,
    /// Target positions, `T × N × 3`.
    pub target_positions: Vec<f64>,
    /// Target velocities, `T × N × 3`, if the dataset has velocities.
    pub target_velocities: Option<Vec<f64>>,
    /// Node features, `N × F`, if any.
    pub node_features: Option<Vec<f64>>,
    /// Features per node `F`.
    pub num_node_features: usize,
    /// Integer node types, if any.
    pub node_types: Option<Vec<i64>>,
    /// The trajectory's edge list, if any.
    pub edges: Option<EdgeList>,
    /// Maps this sample's (possibly normalised) coordinates back to original units.
    pub transform: PositionTransform,
    /// Time between frames (the dataset's `dt`, in normalised datasets still in original time units).
    pub dt: f64,
}

impl Sample {
    /// Target offsets from the anchor, in frames.
    pub fn target_offsets(&self) -> Vec<usize> {
        self.target_frames.iter().map(|f| f - self.anchor).collect()
    }
}

impl CheckedWindowSpec {
    /// The validated parameters.
    pub fn spec(&self) -> &WindowSpec {
        &self.spec
    }

    /// Target frames relative to the anchor (ascending, last = `delta_frame`).
    pub fn target_offsets(&self) -> &[usize] {
        &self.target_offsets
    }

    /// Number of condition frames `C`.
    pub fn condition_frames(&self) -> usize {
        self.spec.condition_frames
    }

    /// Number of target frames `T`.
    pub fn num_targets(&self) -> usize {
        self.spec.num_targets
    }

    /// The anchors of a trajectory with `num_frames` frames, ascending, for fixed or sliding
    /// starts (metadata starts depend on the trajectory: see
    /// [`CheckedWindowSpec::trajectory_anchors`]).
    ///
    /// # Errors
    /// [`Error::WindowOutOfRange`] when fixed anchors do not fit; [`Error::InvalidSpec`] for
    /// [`Starts::Metadata`].
    pub fn anchors(&self, num_frames: usize) -> Result<Vec<usize>> {
        let delta = self.spec.delta_frame;
        match &self.spec.starts {
            Starts::Fixed(anchors) => {
                let last = anchors[anchors.len() - 1] + delta;
                if last >= num_frames {
                    return Err(Error::WindowOutOfRange {
                        needed: last,
                        num_frames,
                    });
                }
                Ok(anchors.clone())
            }
            Starts::Sliding { stride } => Ok((self.spec.condition_frames - 1..)
                .step_by(*stride)
                .take_while(|a| a + delta < num_frames)
                .collect()),
            Starts::Metadata => Err(Error::spec(
                "window spec",
                "metadata start frames belong to a trajectory: use trajectory_anchors",
            )),
        }
    }

    /// The anchors of trajectory `t`: as [`CheckedWindowSpec::anchors`] for fixed and sliding
    /// starts; for [`Starts::Metadata`] its [`Trajectory::start_frames`], in the order listed,
    /// each checked to leave room for the condition frames and the horizon.
    ///
    /// # Errors
    /// [`Error::WindowOutOfRange`] for an anchor whose window does not fit; for metadata starts,
    /// the errors of [`Trajectory::start_frames`].
    pub fn trajectory_anchors(&self, t: &Trajectory) -> Result<Vec<usize>> {
        if self.spec.starts != Starts::Metadata {
            return self.anchors(t.num_frames());
        }
        let anchors = t.start_frames()?;
        let (c, delta) = (self.spec.condition_frames, self.spec.delta_frame);
        if let Some(&a) = anchors
            .iter()
            .find(|&&a| a + 1 < c || a.saturating_add(delta) >= t.num_frames())
        {
            return Err(Error::WindowOutOfRange {
                needed: a.saturating_add(delta),
                num_frames: t.num_frames(),
            });
        }
        Ok(anchors)
    }

    /// Every window of `dataset`, trajectory by trajectory, anchors ascending (metadata anchors in
    /// the order listed).
    ///
    /// # Errors
    /// [`Error::InTrajectory`] around the errors of [`CheckedWindowSpec::trajectory_anchors`]
    /// (fixed or metadata anchors that do not fit, missing or malformed metadata anchors).
    pub fn index(&self, dataset: &Dataset) -> Result<Vec<WindowIndex>> {
        let mut out = Vec::new();
        for (trajectory, t) in dataset.trajectories().iter().enumerate() {
            let anchors = self
                .trajectory_anchors(t)
                .map_err(|e| e.in_trajectory(trajectory))?;
            out.extend(
                anchors
                    .into_iter()
                    .map(|anchor| WindowIndex { trajectory, anchor }),
            );
        }
        Ok(out)
    }

    /// The windowed view of `dataset`.
    ///
    /// # Errors
    /// As [`CheckedWindowSpec::index`].
    pub fn windows<'a>(&self, dataset: &'a Dataset) -> Result<Windows<'a>> {
        Ok(Windows {
            dataset,
            index: self.index(dataset)?,
            spec: self.clone(),
        })
    }

    /// Builds the sample at `at`.
    ///
    /// # Errors
    /// [`Error::IndexOutOfRange`] for a bad trajectory, [`Error::WindowOutOfRange`] (inside
    /// [`Error::InTrajectory`]) when the window does not fit.
    pub fn sample(&self, dataset: &Dataset, at: WindowIndex) -> Result<Sample> {
        let t = dataset.trajectory(at.trajectory)?;
        let c = self.spec.condition_frames;
        let last = at.anchor + self.spec.delta_frame;
        if at.anchor + 1 < c || last >= t.num_frames() {
            return Err(Error::WindowOutOfRange {
                needed: last,
                num_frames: t.num_frames(),
            }
            .in_trajectory(at.trajectory));
        }
        let condition_frames: Vec<usize> = (at.anchor + 1 - c..=at.anchor).collect();
        let target_frames: Vec<usize> = self.target_offsets.iter().map(|o| at.anchor + o).collect();
        fn gather<'t>(
            frames: &[usize],
            get: impl Fn(usize) -> Option<&'t [f64]>,
        ) -> Option<Vec<f64>> {
            let mut out = Vec::new();
            for &f in frames {
                out.extend_from_slice(get(f)?);
            }
            Some(out)
        }
        let pos = |f: usize| Some(t.frame_positions(f));
        let vel = |f: usize| t.frame_velocities(f);
        Ok(Sample {
            trajectory: at.trajectory,
            anchor: at.anchor,
            num_nodes: t.num_nodes(),
            condition_positions: gather(&condition_frames, pos).unwrap_or_default(),
            condition_velocities: gather(&condition_frames, vel),
            target_positions: gather(&target_frames, pos).unwrap_or_default(),
            target_velocities: gather(&target_frames, vel),
            condition_frames,
            target_frames,
            node_features: t.node_features().map(<[f64]>::to_vec),
            num_node_features: t.num_node_features(),
            node_types: t.node_types().map(<[i64]>::to_vec),
            edges: t.edges().cloned(),
            transform: dataset.position_transform(at.trajectory)?,
            dt: dataset.meta().dt,
        })
    }
}

/// A dataset seen through a window spec: a deterministic list of [`WindowIndex`]es, each turned
/// into a [`Sample`] on demand.
#[derive(Clone, Debug)]
pub struct Windows<'a> {
    dataset: &'a Dataset,
    spec: CheckedWindowSpec,
    index: Vec<WindowIndex>,
}

impl<'a> Windows<'a> {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// The window list.
    pub fn index(&self) -> &[WindowIndex] {
        &self.index
    }

    /// The dataset.
    pub fn dataset(&self) -> &'a Dataset {
        self.dataset
    }

    /// The spec.
    pub fn spec(&self) -> &CheckedWindowSpec {
        &self.spec
    }

    /// Sample `i`, or `None` past the end.
    pub fn get(&self, i: usize) -> Option<Sample> {
        let at = *self.index.get(i)?;
        // every index entry was built from this dataset's frame counts, so it fits
        self.spec.sample(self.dataset, at).ok()
    }

    /// All samples in order.
    pub fn iter(&self) -> impl Iterator<Item = Sample> + '_ {
        (0..self.len()).filter_map(|i| self.get(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::DatasetMeta;
    use crate::trajectory::Trajectory;

    /// Frame `f`, node `n` sits at x = 100·f + n, so positions reveal their frame.
    fn dataset(frames: &[usize], nodes: usize) -> Dataset {
        let trajs = frames
            .iter()
            .map(|&t| {
                let p = (0..t)
                    .flat_map(|f| (0..nodes).flat_map(move |n| [(100 * f + n) as f64, 0.0, 0.0]))
                    .collect();
                Trajectory::new(t, nodes, p)
                    .unwrap()
                    .with_node_features(vec![1.0; nodes], 1)
                    .unwrap()
            })
            .collect();
        Dataset::new(DatasetMeta::new("w", "test", 0.1), trajs).unwrap()
    }

    #[test]
    fn metadata_starts() {
        let spec = WindowSpec::egno(0, 10, 5)
            .targets(TargetFrames::Consecutive)
            .metadata_starts()
            .check()
            .unwrap();
        let ds = dataset(&[20, 30], 1);
        let (meta, layout, trajs) = ds.clone().into_parts();
        let with = |lists: [serde_json::Value; 2]| {
            let trajs = trajs
                .iter()
                .zip(lists)
                .map(|(t, l)| {
                    let mut m = t.metadata().clone();
                    m.insert(START_FRAMES_KEY.into(), l);
                    t.clone().with_metadata(m)
                })
                .collect();
            Dataset::with_layout(meta.clone(), layout, trajs).unwrap()
        };
        let good = with([serde_json::json!([5, 0]), serde_json::json!([19])]);
        let idx = spec.index(&good).unwrap();
        let got: Vec<(usize, usize)> = idx.iter().map(|w| (w.trajectory, w.anchor)).collect();
        assert_eq!(got, vec![(0, 5), (0, 0), (1, 19)], "in the order listed");
        assert_eq!(
            spec.sample(&good, idx[2]).unwrap().target_frames,
            vec![25, 26, 27, 28, 29]
        );
        // a window past the end, a missing list, a malformed entry: errors naming the trajectory
        for (lists, needle) in [
            (
                [serde_json::json!([0]), serde_json::json!([20])],
                "trajectory 1: window needs frame 30, but the trajectory has 30 frames",
            ),
            (
                [serde_json::json!([0]), serde_json::json!("3")],
                "trajectory 1: invalid dataset metadata: `start_frames` is \"3\", not a list of frame indices",
            ),
            (
                [serde_json::json!([0]), serde_json::json!([1, -2])],
                "trajectory 1: invalid dataset metadata: `start_frames` entry 1 is -2, not a frame index",
            ),
        ] {
            let err = spec.index(&with(lists)).unwrap_err().to_string();
            assert_eq!(err, needle);
        }
        let err = spec.index(&ds).unwrap_err().to_string();
        assert_eq!(
            err,
            "trajectory 0: invalid dataset metadata: no `start_frames` in the trajectory's metadata (the window spec starts windows there)"
        );
        assert!(spec.anchors(50).is_err());
    }

    #[test]
    fn egno_charged_setting() {
        let spec = WindowSpec::egno(30, 10, 5).check().unwrap();
        assert_eq!(spec.target_offsets(), &[2, 4, 6, 8, 10]);
        let ds = dataset(&[50, 41], 2);
        let w = spec.windows(&ds).unwrap();
        assert_eq!(w.len(), 2);
        let s = w.get(1).unwrap();
        assert_eq!((s.trajectory, s.anchor), (1, 30));
        assert_eq!(s.condition_frames, vec![30]);
        assert_eq!(
            s.condition_positions,
            vec![3000.0, 0.0, 0.0, 3001.0, 0.0, 0.0]
        );
        assert_eq!(s.target_frames, vec![32, 34, 36, 38, 40]);
        assert_eq!(s.target_positions.len(), 5 * 2 * 3);
        assert_eq!(s.target_positions[3 * 6 + 3], 3801.0);
        assert_eq!(s.target_offsets(), vec![2, 4, 6, 8, 10]);
        assert_eq!(s.node_features, Some(vec![1.0, 1.0]));
        assert_eq!(s.condition_velocities, None);
        assert!(w.get(2).is_none());
        // too short for the fixed anchor → error naming the trajectory
        let err = spec.windows(&dataset(&[50, 40], 2)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "trajectory 1: window needs frame 40, but the trajectory has 40 frames"
        );
    }

    #[test]
    fn egno_protein_and_consecutive() {
        let s = WindowSpec::egno(0, 15, 4).check().unwrap();
        assert_eq!(s.target_offsets(), &[3, 7, 11, 15]);
        let c = WindowSpec::egno(30, 10, 5)
            .targets(TargetFrames::Consecutive)
            .check()
            .unwrap();
        assert_eq!(c.target_offsets(), &[6, 7, 8, 9, 10]);
    }

    #[test]
    fn geotdm_sliding() {
        let spec = WindowSpec::geotdm(10, 20, 5).check().unwrap();
        assert_eq!(spec.target_offsets(), (1..=20).collect::<Vec<_>>());
        assert_eq!(spec.anchors(50).unwrap(), vec![9, 14, 19, 24, 29]);
        assert_eq!(spec.anchors(29).unwrap(), Vec::<usize>::new());
        let ds = dataset(&[30, 29, 35], 1);
        let w = spec.windows(&ds).unwrap();
        let idx: Vec<_> = w.index().iter().map(|i| (i.trajectory, i.anchor)).collect();
        assert_eq!(idx, vec![(0, 9), (2, 9), (2, 14)]);
        let s = w.get(2).unwrap();
        assert_eq!(s.condition_frames, (5..=14).collect::<Vec<_>>());
        assert_eq!(s.target_frames, (15..=34).collect::<Vec<_>>());
        assert_eq!(s.condition_positions[0], 500.0);
        assert_eq!(s.target_positions[19 * 3], 3400.0);
        assert_eq!(w.iter().count(), 3);
    }

    #[test]
    fn bad_specs_rejected() {
        let cases = [
            (
                WindowSpec::default().condition_frames(0),
                "condition_frames",
            ),
            (WindowSpec::default().num_targets(0), "num_targets"),
            (
                WindowSpec::default().num_targets(3).delta_frame(2),
                "delta_frame (2)",
            ),
            (WindowSpec::default().sliding(0), "stride"),
            (WindowSpec::default().start_frames(vec![]), "empty"),
            (
                WindowSpec::default().start_frames(vec![3, 3]),
                "strictly increasing",
            ),
            (
                WindowSpec::default()
                    .condition_frames(3)
                    .start_frames(vec![1]),
                "no room for 3 condition frames",
            ),
        ];
        for (spec, needle) in cases {
            let err = spec.check().unwrap_err().to_string();
            assert!(err.contains(needle), "{err:?} should mention {needle:?}");
        }
        assert!(
            WindowSpec::default()
                .condition_frames(3)
                .start_frames(vec![2])
                .check()
                .is_ok()
        );
    }

    #[test]
    fn sample_rejects_out_of_range_window() {
        let spec = WindowSpec::geotdm(2, 2, 1).check().unwrap();
        let ds = dataset(&[5], 1);
        assert!(
            spec.sample(
                &ds,
                WindowIndex {
                    trajectory: 0,
                    anchor: 2
                }
            )
            .is_ok()
        );
        assert!(
            spec.sample(
                &ds,
                WindowIndex {
                    trajectory: 0,
                    anchor: 3
                }
            )
            .is_err()
        );
        assert!(
            spec.sample(
                &ds,
                WindowIndex {
                    trajectory: 0,
                    anchor: 0
                }
            )
            .is_err()
        );
        assert!(
            spec.sample(
                &ds,
                WindowIndex {
                    trajectory: 1,
                    anchor: 2
                }
            )
            .is_err()
        );
    }
}
