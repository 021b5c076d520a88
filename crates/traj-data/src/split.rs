//! Train / validation / test splits: chronological by trajectory or by frame, or seeded-random by
//! trajectory.

use std::fmt;
use std::ops::Range;
use std::str::FromStr;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::dataset::{Dataset, DatasetMeta};
use crate::error::{Error, Result};

/// One of the three splits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// Training split.
    Train,
    /// Validation split.
    Val,
    /// Test split.
    Test,
}

impl Split {
    /// All splits, in order.
    pub const ALL: [Split; 3] = [Split::Train, Split::Val, Split::Test];

    /// `train`, `val` or `test`.
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
        }
    }

    /// The file this split is stored in inside a dataset directory: `<split>.safetensors`.
    pub fn file_name(self) -> String {
        format!("{}.safetensors", self.as_str())
    }

    pub(crate) fn index(self) -> usize {
        match self {
            Split::Train => 0,
            Split::Val => 1,
            Split::Test => 2,
        }
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Split {
    type Err = Error;

    /// Accepts `train`, `val` (also `valid`, `validation`) and `test`.
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "train" => Ok(Split::Train),
            "val" | "valid" | "validation" => Ok(Split::Val),
            "test" => Ok(Split::Test),
            _ => Err(Error::Parse {
                what: "split",
                input: s.into(),
                expected: "train, val, test",
            }),
        }
    }
}

/// How a dataset is divided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum SplitMethod {
    /// Whole trajectories in order: the first ones train, then val, then test.
    TrajectoryChronological,
    /// Whole trajectories, shuffled with a seeded ChaCha8 generator; indices inside each split
    /// stay ascending.
    TrajectoryRandom {
        /// Shuffle seed.
        seed: u64,
    },
    /// Every trajectory is cut in time: its first frames train, then val, then test (for one long
    /// trajectory, e.g. an MD run).
    FrameChronological,
    /// Every trajectory is cut into windows of `window_frames` frames starting every `stride`
    /// frames, each window a trajectory of its own, and the windows are shuffled with a seeded
    /// ChaCha8 generator and divided by the fractions. Windows overlap when
    /// `stride < window_frames`, so test windows share frames with training ones: this measures
    /// interpolation inside the sampled conformations, not forecasting past them (EGNO's own
    /// protein split is chronological by frame, [`SplitMethod::FrameChronological`]).
    WindowRandom {
        /// Frames per window (the condition frame and the horizon: `Δ + 1` for one condition
        /// frame).
        window_frames: usize,
        /// Frames between consecutive window starts.
        stride: usize,
        /// Shuffle seed.
        seed: u64,
    },
}

/// Unchecked split parameters; [`SplitSpec::check`] validates them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitSpec {
    /// Fractions for train, val and test; non-negative, summing to 1 (within 1e-9).
    pub fractions: [f64; 3],
    /// The method.
    pub method: SplitMethod,
}

impl SplitSpec {
    /// A spec with the given method and the 60/20/20 fractions.
    pub fn new(method: SplitMethod) -> Self {
        Self {
            fractions: [0.6, 0.2, 0.2],
            method,
        }
    }

    /// Sets the train/val/test fractions.
    pub fn fractions(mut self, train: f64, val: f64, test: f64) -> Self {
        self.fractions = [train, val, test];
        self
    }

    /// Validates the spec.
    ///
    /// # Errors
    /// [`Error::InvalidSpec`] for negative/non-finite fractions or a sum other than 1.
    pub fn check(&self) -> Result<CheckedSplitSpec> {
        let f = self.fractions;
        if f.iter().any(|x| !x.is_finite() || *x < 0.0) {
            return Err(Error::spec(
                "split spec",
                format!("fractions must be finite and >= 0, got {f:?}"),
            ));
        }
        if let SplitMethod::WindowRandom {
            window_frames,
            stride,
            ..
        } = self.method
            && (window_frames == 0 || stride == 0)
        {
            return Err(Error::spec(
                "split spec",
                format!(
                    "window_random needs window_frames and stride ≥ 1, got {window_frames} \
                     and {stride}"
                ),
            ));
        }
        let sum: f64 = f.iter().sum();
        if (sum - 1.0).abs() > 1e-9 {
            return Err(Error::spec(
                "split spec",
                format!("fractions must sum to 1, got {f:?} (sum {sum})"),
            ));
        }
        Ok(CheckedSplitSpec { spec: self.clone() })
    }
}

/// A validated [`SplitSpec`].
#[derive(Clone, Debug, PartialEq)]
pub struct CheckedSplitSpec {
    spec: SplitSpec,
}

/// Trajectory indices of each split, each ascending.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct SplitIndices {
    /// Training indices.
    pub train: Vec<usize>,
    /// Validation indices.
    pub val: Vec<usize>,
    /// Test indices.
    pub test: Vec<usize>,
}

impl SplitIndices {
    /// The indices of `split`.
    pub fn get(&self, split: Split) -> &[usize] {
        match split {
            Split::Train => &self.train,
            Split::Val => &self.val,
            Split::Test => &self.test,
        }
    }
}

/// The three datasets of a split.
#[derive(Clone, Debug, PartialEq)]
pub struct Splits {
    /// Training data.
    pub train: Dataset,
    /// Validation data.
    pub val: Dataset,
    /// Test data.
    pub test: Dataset,
}

impl Splits {
    /// The dataset of `split`.
    pub fn get(&self, split: Split) -> &Dataset {
        match split {
            Split::Train => &self.train,
            Split::Val => &self.val,
            Split::Test => &self.test,
        }
    }
}

impl CheckedSplitSpec {
    /// The spec.
    pub fn spec(&self) -> &SplitSpec {
        &self.spec
    }

    /// How many of `n` items go to train, val and test: `floor(n·f)` each, the remainder handed
    /// to the largest fractional parts (ties to the earlier split). Sums to `n`; each count is
    /// within 1 of `n·f`.
    pub fn counts(&self, n: usize) -> [usize; 3] {
        let exact = self.spec.fractions.map(|f| f * n as f64);
        let mut counts = exact.map(|x| x.floor() as usize);
        let assigned: usize = counts.iter().sum();
        let mut order = [0usize, 1, 2];
        order.sort_by(|&a, &b| {
            let (ra, rb) = (exact[a] - exact[a].floor(), exact[b] - exact[b].floor());
            rb.total_cmp(&ra).then(a.cmp(&b))
        });
        // the floors fall short of `n` by less than 3 (plus rounding error in the fractions'
        // sum); hand the rest out round-robin by descending remainder
        let mut remaining = n.saturating_sub(assigned);
        for &i in order.iter().cycle() {
            if remaining == 0 {
                break;
            }
            counts[i] += 1;
            remaining -= 1;
        }
        while counts.iter().sum::<usize>() > n {
            let i = (0..3).rev().find(|&i| counts[i] > 0).unwrap_or(0);
            counts[i] -= 1;
        }
        counts
    }

    /// Frame ranges `[train, val, test]` for a trajectory of `num_frames` frames (contiguous, in
    /// order, covering `0..num_frames`).
    pub fn frame_ranges(&self, num_frames: usize) -> [Range<usize>; 3] {
        let [a, b, _] = self.counts(num_frames);
        [0..a, a..a + b, a + b..num_frames]
    }

    /// Trajectory indices for `n` trajectories under a by-trajectory method.
    ///
    /// # Errors
    /// [`Error::InvalidSpec`] for [`SplitMethod::FrameChronological`].
    pub fn trajectory_indices(&self, n: usize) -> Result<SplitIndices> {
        let mut order: Vec<usize> = (0..n).collect();
        match self.spec.method {
            SplitMethod::TrajectoryChronological => {}
            SplitMethod::TrajectoryRandom { seed } => {
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
                order.shuffle(&mut rng);
            }
            SplitMethod::FrameChronological | SplitMethod::WindowRandom { .. } => {
                return Err(Error::spec(
                    "split spec",
                    "frame_chronological and window_random split frames, not trajectory indices",
                ));
            }
        }
        let [a, b, _] = self.counts(n);
        let part = |r: Range<usize>| {
            let mut v = order[r].to_vec();
            v.sort_unstable();
            v
        };
        Ok(SplitIndices {
            train: part(0..a),
            val: part(a..a + b),
            test: part(a + b..n),
        })
    }
}

impl Dataset {
    /// Splits the dataset; each part's [`DatasetMeta::split`] is set.
    ///
    /// # Errors
    /// Propagates construction errors (none for a valid dataset).
    pub fn split(&self, spec: &CheckedSplitSpec) -> Result<Splits> {
        let with_split = |ds: Dataset, split: Split| -> Result<Dataset> {
            let meta = DatasetMeta {
                split: Some(split),
                ..ds.meta().clone()
            };
            ds.with_meta(meta)
        };
        let parts: Vec<Dataset> = match spec.spec.method {
            SplitMethod::FrameChronological => {
                let mut parts = Vec::with_capacity(3);
                for split in Split::ALL {
                    // trajectories whose share of frames is empty are left out of that split
                    let mut keep = Vec::new();
                    let mut trajectories = Vec::new();
                    for (i, t) in self.trajectories().iter().enumerate() {
                        let range = spec.frame_ranges(t.num_frames())[split.index()].clone();
                        if !range.is_empty() {
                            keep.push(i);
                            trajectories.push(t.slice_frames(range)?);
                        }
                    }
                    let mut meta = self.meta().clone();
                    if let Some(record) = &mut meta.normalization {
                        *record = record.select(&keep);
                    }
                    parts.push(Dataset::with_layout(meta, *self.layout(), trajectories)?);
                }
                parts
            }
            SplitMethod::WindowRandom {
                window_frames,
                stride,
                seed,
            } => {
                let (mut windows, mut origin) = (Vec::new(), Vec::new());
                for (i, t) in self.trajectories().iter().enumerate() {
                    let mut a = 0;
                    while a + window_frames <= t.num_frames() {
                        windows.push(t.slice_frames(a..a + window_frames)?);
                        origin.push(i);
                        a += stride;
                    }
                }
                if windows.is_empty() {
                    return Err(Error::spec(
                        "split spec",
                        format!("window_random: no trajectory has {window_frames} frames"),
                    ));
                }
                let mut meta = self.meta().clone();
                if let Some(record) = &mut meta.normalization {
                    *record = record.select(&origin);
                }
                let cut = Dataset::with_layout(meta, *self.layout(), windows)?;
                let shuffle = SplitSpec {
                    fractions: spec.spec.fractions,
                    method: SplitMethod::TrajectoryRandom { seed },
                }
                .check()?;
                let idx = shuffle.trajectory_indices(cut.len())?;
                Split::ALL
                    .iter()
                    .map(|&s| cut.select(idx.get(s)))
                    .collect::<Result<_>>()?
            }
            _ => {
                let idx = spec.trajectory_indices(self.len())?;
                Split::ALL
                    .iter()
                    .map(|&s| self.select(idx.get(s)))
                    .collect::<Result<_>>()?
            }
        };
        let [train, val, test]: [Dataset; 3] = parts
            .try_into()
            .map_err(|_| Error::spec("split spec", "internal: expected three parts"))?;
        Ok(Splits {
            train: with_split(train, Split::Train)?,
            val: with_split(val, Split::Val)?,
            test: with_split(test, Split::Test)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trajectory::Trajectory;

    #[test]
    fn split_names_round_trip() {
        for s in Split::ALL {
            assert_eq!(s.to_string().parse::<Split>().unwrap(), s);
        }
        assert_eq!("valid".parse::<Split>().unwrap(), Split::Val);
        let err = "training".parse::<Split>().unwrap_err();
        assert!(err.to_string().contains("\"training\""), "{err}");
        assert_eq!(Split::Val.file_name(), "val.safetensors");
    }

    /// `window_random`: every window of `window_frames` frames every `stride` frames lands in
    /// exactly one split, as a trajectory of its own with those frames, in a seeded order.
    #[test]
    fn window_random_cuts_and_shuffles_windows() {
        let (frames, n) = (12usize, 2usize);
        let pos: Vec<f64> = (0..frames * n * 3).map(|i| i as f64).collect();
        let ds = Dataset::new(
            crate::DatasetMeta::new("w", "test", 1.0),
            vec![Trajectory::new(frames, n, pos).unwrap()],
        )
        .unwrap();
        let method = SplitMethod::WindowRandom {
            window_frames: 4,
            stride: 2,
            seed: 3,
        };
        let spec = SplitSpec::new(method).check().unwrap();
        let s = ds.split(&spec).unwrap();
        let mut starts: Vec<usize> = Vec::new();
        for part in [&s.train, &s.val, &s.test] {
            for t in part.trajectories() {
                assert_eq!(t.num_frames(), 4);
                // the first coordinate of frame 0 names the window's start frame
                starts.push(t.positions()[0] as usize / (n * 3));
            }
        }
        // starts 0, 2, 4, 6, 8: five windows, 3 / 1 / 1
        assert_eq!([s.train.len(), s.val.len(), s.test.len()], [3, 1, 1]);
        let mut sorted = starts.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, vec![0, 2, 4, 6, 8]);
        // seeded: the same seed, the same test window
        let again = ds.split(&spec).unwrap();
        assert_eq!(
            again.test.trajectories()[0].positions(),
            s.test.trajectories()[0].positions()
        );
        let bad = SplitSpec::new(SplitMethod::WindowRandom {
            window_frames: 0,
            stride: 1,
            seed: 0,
        })
        .check()
        .unwrap_err();
        assert!(bad.to_string().contains("window_frames"), "{bad}");
    }

    #[test]
    fn bad_fractions_rejected() {
        let spec = SplitSpec::new(SplitMethod::TrajectoryChronological);
        assert!(spec.clone().fractions(0.5, 0.5, 0.5).check().is_err());
        assert!(spec.clone().fractions(1.2, -0.2, 0.0).check().is_err());
        assert!(spec.clone().fractions(f64::NAN, 0.5, 0.5).check().is_err());
        assert!(spec.fractions(0.6, 0.2, 0.2).check().is_ok());
    }

    #[test]
    fn counts_examples() {
        let s = SplitSpec::new(SplitMethod::TrajectoryChronological)
            .check()
            .unwrap();
        assert_eq!(s.counts(10), [6, 2, 2]);
        assert_eq!(s.counts(7), [4, 2, 1]);
        assert_eq!(s.counts(0), [0, 0, 0]);
        assert_eq!(s.frame_ranges(50), [0..30, 30..40, 40..50]);
        let t = SplitSpec::new(SplitMethod::TrajectoryChronological)
            .fractions(0.3, 0.3, 0.4)
            .check()
            .unwrap();
        assert_eq!(t.counts(5), [2, 1, 2]);
    }

    #[test]
    fn random_split_is_seeded() {
        let spec = |seed| {
            SplitSpec::new(SplitMethod::TrajectoryRandom { seed })
                .check()
                .unwrap()
        };
        let a = spec(1).trajectory_indices(100).unwrap();
        assert_eq!(a, spec(1).trajectory_indices(100).unwrap());
        assert_ne!(a, spec(2).trajectory_indices(100).unwrap());
        assert_ne!(a.train, (0..60).collect::<Vec<_>>());
        assert!(a.train.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn frame_split_of_one_long_trajectory() {
        let t = Trajectory::new(10, 1, (0..30).map(f64::from).collect()).unwrap();
        let ds = Dataset::new(DatasetMeta::new("md", "test", 1.0), vec![t]).unwrap();
        let spec = SplitSpec::new(SplitMethod::FrameChronological)
            .fractions(0.6, 0.4, 0.0)
            .check()
            .unwrap();
        let s = ds.split(&spec).unwrap();
        assert_eq!(s.train.trajectories()[0].num_frames(), 6);
        assert_eq!(s.val.trajectories()[0].position(0, 0), [18.0, 19.0, 20.0]);
        assert!(s.test.is_empty());
        assert_eq!(s.test.meta().split, Some(Split::Test));
        assert_eq!(s.get(Split::Val).meta().split, Some(Split::Val));
    }
}
