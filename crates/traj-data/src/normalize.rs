//! Recorded, invertible normalisation of positions (and velocities).
//!
//! A position `x` of trajectory `i` is mapped to `(x − c_i) / s` and a velocity `v` to `v / s`,
//! where `s` is one dataset-wide scale fitted on the training split only and `c_i` is a centre
//! chosen by [`Centering`]. The centres and the scale are stored in [`DatasetMeta::normalization`]
//! (and so in the file header), and every windowed sample carries its [`PositionTransform`], so
//! predictions can be mapped back to original units.
//!
//! [`DatasetMeta::normalization`]: crate::DatasetMeta::normalization

use serde::{Deserialize, Serialize};

use crate::dataset::Dataset;
use crate::error::{Element, Error, Result, check_finite};
use crate::trajectory::Trajectory;

/// Which point positions are measured from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Centering {
    /// No centring (`c = 0`).
    None,
    /// Each trajectory's own centroid of its first frame (available at inference time, so no
    /// leakage from the future).
    FirstFrameCentroid,
    /// The mean position over the whole training split, the same for every trajectory.
    TrainMean,
}

/// How the scale `s` is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scaling {
    /// `s = 1`.
    None,
    /// The root-mean-square centred coordinate over the training split:
    /// `s = sqrt(Σ (x − c)² / (3 · frames · N))`.
    TrainRms,
    /// A fixed scale (finite, > 0).
    Fixed(f64),
}

/// What to fit: a centring and a scaling. Defaults to first-frame centroid and train RMS.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NormalizationSpec {
    /// The centring.
    pub centering: Centering,
    /// The scaling.
    pub scaling: Scaling,
}

impl Default for NormalizationSpec {
    fn default() -> Self {
        Self {
            centering: Centering::FirstFrameCentroid,
            scaling: Scaling::TrainRms,
        }
    }
}

/// Fitted normalisation parameters (from the training split).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Normalization {
    /// The centring rule.
    pub centering: Centering,
    /// Training-split mean position (used by [`Centering::TrainMean`]; zero otherwise).
    pub mean: [f64; 3],
    /// The scale `s` (finite, > 0).
    pub scale: f64,
}

/// A normalisation applied to a dataset: the parameters and the centre used for each trajectory.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NormalizationRecord {
    /// The fitted parameters.
    pub params: Normalization,
    /// `c_i` for each trajectory, in dataset order.
    pub centers: Vec<[f64; 3]>,
}

/// The affine map of one trajectory: `x ↦ (x − center) / scale`, `v ↦ v / scale`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PositionTransform {
    /// The centre `c`.
    pub center: [f64; 3],
    /// The scale `s`.
    pub scale: f64,
}

fn centroid(frame: &[f64]) -> [f64; 3] {
    let n = (frame.len() / 3) as f64;
    let mut c = [0.0; 3];
    for p in frame.chunks_exact(3) {
        for k in 0..3 {
            c[k] += p[k];
        }
    }
    c.map(|x| x / n)
}

impl NormalizationSpec {
    /// Fits the parameters on `train` (the training split only).
    ///
    /// # Errors
    /// [`Error::InvalidSpec`] when `train` is empty or already normalised, or the scale is not
    /// finite and positive (e.g. all positions identical).
    pub fn fit(&self, train: &Dataset) -> Result<Normalization> {
        const SPEC: &str = "normalization";
        if train.is_empty() {
            return Err(Error::spec(SPEC, "cannot fit on an empty dataset"));
        }
        if train.meta().normalization.is_some() {
            return Err(Error::spec(SPEC, "the dataset is already normalised"));
        }
        let count = (train.total_frames() * train.num_nodes()) as f64;
        let mean = if self.centering == Centering::TrainMean {
            let mut sum = [0.0; 3];
            for t in train.trajectories() {
                for p in t.positions().chunks_exact(3) {
                    for k in 0..3 {
                        sum[k] += p[k];
                    }
                }
            }
            sum.map(|s| s / count)
        } else {
            [0.0; 3]
        };
        let partial = Normalization {
            centering: self.centering,
            mean,
            scale: 1.0,
        };
        let scale = match self.scaling {
            Scaling::None => 1.0,
            Scaling::Fixed(s) => s,
            Scaling::TrainRms => {
                let mut ss = 0.0;
                for t in train.trajectories() {
                    let c = partial.center_of(t);
                    for p in t.positions().chunks_exact(3) {
                        for k in 0..3 {
                            ss += (p[k] - c[k]) * (p[k] - c[k]);
                        }
                    }
                }
                (ss / (3.0 * count)).sqrt()
            }
        };
        if !(scale.is_finite() && scale > 0.0) {
            return Err(Error::spec(
                SPEC,
                format!("scale must be finite and > 0, got {scale}"),
            ));
        }
        Ok(Normalization { scale, ..partial })
    }
}

impl Normalization {
    /// The centre `c` this normalisation uses for `trajectory`.
    pub fn center_of(&self, trajectory: &Trajectory) -> [f64; 3] {
        match self.centering {
            Centering::None => [0.0; 3],
            Centering::TrainMean => self.mean,
            Centering::FirstFrameCentroid => centroid(trajectory.frame_positions(0)),
        }
    }

    /// Normalises `dataset` (any split), recording the parameters and per-trajectory centres in
    /// its metadata.
    ///
    /// # Errors
    /// [`Error::InvalidSpec`] when the dataset is already normalised; [`Error::NonFinite`] (inside
    /// [`Error::InTrajectory`]) if a value overflows.
    pub fn apply(&self, dataset: &Dataset) -> Result<Dataset> {
        if dataset.meta().normalization.is_some() {
            return Err(Error::spec(
                "normalization",
                "the dataset is already normalised",
            ));
        }
        let centers: Vec<[f64; 3]> = dataset
            .trajectories()
            .iter()
            .map(|t| self.center_of(t))
            .collect();
        let record = NormalizationRecord {
            params: *self,
            centers,
        };
        record.check(dataset.len())?;
        let mut out = dataset.clone();
        let (meta, trajectories) = out.parts_mut();
        for (i, t) in trajectories.iter_mut().enumerate() {
            let tf = record.transform(i);
            let (pos, vel) = t.coordinates_mut();
            tf.normalize_positions(pos);
            check_transformed("positions", pos).map_err(|e| e.in_trajectory(i))?;
            if let Some(vel) = vel {
                tf.normalize_velocities(vel);
                check_transformed("velocities", vel).map_err(|e| e.in_trajectory(i))?;
            }
        }
        meta.normalization = Some(record);
        Ok(out)
    }
}

fn check_transformed(what: &'static str, v: &[f64]) -> Result<()> {
    // frame/node are not known here without N; report the flat coordinate
    check_finite(what, v, |index| Element::Value { index })
}

impl NormalizationRecord {
    /// The transform of trajectory `i`.
    ///
    /// # Panics
    /// If `i` is out of range.
    #[track_caller]
    pub fn transform(&self, i: usize) -> PositionTransform {
        PositionTransform {
            center: self.centers[i],
            scale: self.params.scale,
        }
    }

    pub(crate) fn check(&self, num_trajectories: usize) -> Result<()> {
        let bad = |reason: String| Err(Error::InvalidMetadata { reason });
        let s = self.params.scale;
        if !(s.is_finite() && s > 0.0) {
            return bad(format!(
                "normalization scale must be finite and > 0, got {s}"
            ));
        }
        if self.params.mean.iter().any(|x| !x.is_finite()) {
            return bad("normalization mean is not finite".into());
        }
        if self.centers.len() != num_trajectories {
            return bad(format!(
                "normalization has {} centres for {num_trajectories} trajectories",
                self.centers.len()
            ));
        }
        if let Some(i) = self
            .centers
            .iter()
            .position(|c| c.iter().any(|x| !x.is_finite()))
        {
            return bad(format!(
                "normalization centre of trajectory {i} is not finite"
            ));
        }
        Ok(())
    }

    pub(crate) fn select(&self, indices: &[usize]) -> NormalizationRecord {
        NormalizationRecord {
            params: self.params,
            centers: indices.iter().map(|&i| self.centers[i]).collect(),
        }
    }
}

impl PositionTransform {
    /// The identity (centre 0, scale 1), used for datasets that are not normalised.
    pub const IDENTITY: PositionTransform = PositionTransform {
        center: [0.0; 3],
        scale: 1.0,
    };

    /// `x ← (x − c) / s` for a flat `… × 3` array.
    ///
    /// # Panics
    /// If the length is not a multiple of 3.
    #[track_caller]
    pub fn normalize_positions(&self, xyz: &mut [f64]) {
        assert!(
            xyz.len().is_multiple_of(3),
            "positions length must be a multiple of 3"
        );
        for p in xyz.chunks_exact_mut(3) {
            for (x, c) in p.iter_mut().zip(self.center) {
                *x = (*x - c) / self.scale;
            }
        }
    }

    /// `x ← x · s + c`, the inverse of [`PositionTransform::normalize_positions`].
    ///
    /// # Panics
    /// If the length is not a multiple of 3.
    #[track_caller]
    pub fn denormalize_positions(&self, xyz: &mut [f64]) {
        assert!(
            xyz.len().is_multiple_of(3),
            "positions length must be a multiple of 3"
        );
        for p in xyz.chunks_exact_mut(3) {
            for (x, c) in p.iter_mut().zip(self.center) {
                *x = *x * self.scale + c;
            }
        }
    }

    /// `v ← v / s`.
    pub fn normalize_velocities(&self, v: &mut [f64]) {
        v.iter_mut().for_each(|x| *x /= self.scale);
    }

    /// `v ← v · s`, the inverse of [`PositionTransform::normalize_velocities`].
    pub fn denormalize_velocities(&self, v: &mut [f64]) {
        v.iter_mut().for_each(|x| *x *= self.scale);
    }
}

impl Dataset {
    /// The transform of trajectory `i`: the recorded one, or [`PositionTransform::IDENTITY`].
    ///
    /// # Errors
    /// [`Error::IndexOutOfRange`].
    pub fn position_transform(&self, i: usize) -> Result<PositionTransform> {
        self.trajectory(i)?;
        Ok(self
            .meta()
            .normalization
            .as_ref()
            .map_or(PositionTransform::IDENTITY, |r| r.transform(i)))
    }

    /// Maps a normalised dataset back to original units and drops the record.
    ///
    /// # Errors
    /// [`Error::InvalidSpec`] when the dataset is not normalised; [`Error::NonFinite`] on overflow.
    pub fn denormalize(&self) -> Result<Dataset> {
        let Some(record) = self.meta().normalization.clone() else {
            return Err(Error::spec(
                "normalization",
                "the dataset is not normalised",
            ));
        };
        let mut out = self.clone();
        let (meta, trajectories) = out.parts_mut();
        for (i, t) in trajectories.iter_mut().enumerate() {
            let tf = record.transform(i);
            let (pos, vel) = t.coordinates_mut();
            tf.denormalize_positions(pos);
            check_transformed("positions", pos).map_err(|e| e.in_trajectory(i))?;
            if let Some(vel) = vel {
                tf.denormalize_velocities(vel);
                check_transformed("velocities", vel).map_err(|e| e.in_trajectory(i))?;
            }
        }
        meta.normalization = None;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::DatasetMeta;

    fn dataset() -> Dataset {
        // two trajectories, 2 frames × 2 nodes
        let a = Trajectory::new(2, 2, vec![0., 0., 0., 2., 0., 0., 1., 1., 1., 3., 1., 1.])
            .unwrap()
            .with_velocities(vec![1.0; 12])
            .unwrap();
        let b = Trajectory::new(2, 2, vec![10.; 12])
            .unwrap()
            .with_velocities(vec![2.0; 12])
            .unwrap();
        Dataset::new(DatasetMeta::new("t", "test", 1.0), vec![a, b]).unwrap()
    }

    #[test]
    fn first_frame_centroid_and_rms() {
        let ds = dataset();
        let n = NormalizationSpec::default().fit(&ds).unwrap();
        // centres: (1,0,0) and (10,10,10); centred coords of a: (-1,0,0),(1,0,0),(0,1,1),(2,1,1)
        // sum of squares 1+1+2+6 = 10, b contributes 0; 8 points × 3 coords
        assert_eq!(n.scale, (10.0f64 / 24.0).sqrt());
        let normed = n.apply(&ds).unwrap();
        let rec = normed.meta().normalization.as_ref().unwrap();
        assert_eq!(rec.centers, vec![[1., 0., 0.], [10., 10., 10.]]);
        assert_eq!(normed.trajectories()[1].positions(), &[0.0; 12]);
        assert_eq!(
            normed.trajectories()[0].velocities().unwrap()[0],
            1.0 / n.scale
        );
        assert_eq!(normed.position_transform(1).unwrap().center, [10.; 3]);
        assert_eq!(
            ds.position_transform(1).unwrap(),
            PositionTransform::IDENTITY
        );
        let back = normed.denormalize().unwrap();
        for (x, y) in back.trajectories()[0]
            .positions()
            .iter()
            .zip(ds.trajectories()[0].positions())
        {
            assert!((x - y).abs() < 1e-12);
        }
        assert!(back.meta().normalization.is_none());
        assert!(
            n.apply(&normed).is_err(),
            "double normalisation must be refused"
        );
        assert!(ds.denormalize().is_err());
    }

    #[test]
    fn train_mean_and_fixed() {
        let ds = dataset();
        let spec = NormalizationSpec {
            centering: Centering::TrainMean,
            scaling: Scaling::Fixed(2.0),
        };
        let n = spec.fit(&ds).unwrap();
        // mean of a: (1.5, .5, .5); of b: 10 → overall (5.75, 5.25, 5.25)
        assert_eq!(n.mean, [5.75, 5.25, 5.25]);
        assert_eq!(n.scale, 2.0);
        let bad = NormalizationSpec {
            centering: Centering::None,
            scaling: Scaling::Fixed(0.0),
        };
        assert!(bad.fit(&ds).is_err());
        let single = ds.select(&[1]).unwrap();
        let err = NormalizationSpec::default().fit(&single).unwrap_err();
        assert!(
            err.to_string().contains("scale must be finite and > 0"),
            "{err}"
        );
    }

    #[test]
    fn select_keeps_matching_centres() {
        let ds = dataset();
        let normed = NormalizationSpec::default()
            .fit(&ds)
            .unwrap()
            .apply(&ds)
            .unwrap();
        let s = normed.select(&[1]).unwrap();
        assert_eq!(
            s.meta().normalization.as_ref().unwrap().centers,
            vec![[10.; 3]]
        );
        let back = s.denormalize().unwrap();
        assert_eq!(back.trajectories()[0].positions(), &[10.0; 12]);
    }
}
