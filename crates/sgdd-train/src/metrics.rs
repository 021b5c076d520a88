//! Trajectory metrics, in the dataset's original units (SPEC §4.4): **S2S** — MSE of the final
//! predicted frame; **S2T** — MSE averaged over all predicted frames; **ADE** / **FDE** — mean
//! Euclidean displacement over all frames / at the final frame. MSE is the mean over nodes and
//! the three coordinates (as EGNO reports it); the papers quote S2S and S2T ×10⁻². For models
//! that draw `K` trajectories per input: ADE / FDE averaged over the draws and minADE / minFDE
//! ([`SampledMetricSums`]).

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// Sums over a set of samples, reduced to means by [`MetricSums::finish`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MetricSums {
    samples: f64,
    s2s: f64,
    s2t: f64,
    ade: f64,
    fde: f64,
}

/// Mean metrics over a dataset split.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Number of samples evaluated.
    pub samples: usize,
    /// Final-frame MSE.
    pub s2s: f64,
    /// MSE averaged over predicted frames.
    pub s2t: f64,
    /// Average displacement error.
    pub ade: f64,
    /// Final displacement error.
    pub fde: f64,
}

impl MetricSums {
    /// Adds a batch.
    ///
    /// # Shapes
    /// `pred`, `target`: `[B, T, N, 3]`, in original units (normalisation already inverted).
    ///
    /// # Panics
    /// When the shapes differ or are not `[B, T, N, 3]` with `T ≥ 1`.
    #[track_caller]
    pub fn add(&mut self, pred: &Tensor, target: &Tensor) {
        let size = pred.size();
        assert_eq!(size, target.size(), "prediction and target shapes differ");
        assert!(
            size.len() == 4 && size[3] == 3 && size[1] >= 1,
            "expected [B, T, N, 3], got {size:?}"
        );
        let (per_frame_mse, per_frame_de) = per_frame_errors(pred, target);
        self.samples += size[0] as f64;
        self.s2s += per_frame_mse
            .select(1, -1)
            .sum(Kind::Double)
            .double_value(&[]);
        self.s2t += per_frame_mse
            .mean_dim(&[1i64][..], false, Kind::Double)
            .sum(Kind::Double)
            .double_value(&[]);
        self.ade += per_frame_de
            .mean_dim(&[1i64][..], false, Kind::Double)
            .sum(Kind::Double)
            .double_value(&[]);
        self.fde += per_frame_de
            .select(1, -1)
            .sum(Kind::Double)
            .double_value(&[]);
    }

    /// Means over the samples added.
    pub fn finish(&self) -> Metrics {
        let n = self.samples.max(1.0);
        Metrics {
            samples: self.samples as usize,
            s2s: self.s2s / n,
            s2t: self.s2t / n,
            ade: self.ade / n,
            fde: self.fde / n,
        }
    }
}

/// Sums over batches that can meet across processes: a layout of `f64`s, and a merge that
/// gives exactly what adding the batches one after another gives (each field is a running
/// `+=`, so merging per-batch sums in batch order reproduces the sequential result bit for
/// bit). Sharded evaluation ([`crate::DataParallel`]) relies on both.
pub trait BatchSums: Default {
    /// The sums as numbers (empty for sums that have seen no batch, where the layout allows).
    fn to_f64s(&self) -> Vec<f64>;
    /// The inverse of [`BatchSums::to_f64s`]; an empty slice gives the empty sums.
    ///
    /// # Errors
    /// When the length fits no layout of these sums.
    fn from_f64s(v: &[f64]) -> anyhow::Result<Self>;
    /// Adds another set of sums, as if its batches had been added here.
    ///
    /// # Errors
    /// When the two sets have different layouts (e.g. latent widths).
    fn merge(&mut self, other: &Self) -> anyhow::Result<()>;
}

impl BatchSums for MetricSums {
    fn to_f64s(&self) -> Vec<f64> {
        vec![self.samples, self.s2s, self.s2t, self.ade, self.fde]
    }

    fn from_f64s(v: &[f64]) -> anyhow::Result<Self> {
        match *v {
            [] => Ok(Self::default()),
            [samples, s2s, s2t, ade, fde] => Ok(Self {
                samples,
                s2s,
                s2t,
                ade,
                fde,
            }),
            _ => anyhow::bail!("metric sums hold 5 numbers, got {}", v.len()),
        }
    }

    fn merge(&mut self, other: &Self) -> anyhow::Result<()> {
        self.samples += other.samples;
        self.s2s += other.s2s;
        self.s2t += other.s2t;
        self.ade += other.ade;
        self.fde += other.fde;
        Ok(())
    }
}

/// Per frame: the MSE over nodes and coordinates, and the mean Euclidean displacement over
/// nodes, in float64.
///
/// # Shapes
/// `pred`, `target`: `[.., T, N, 3]` → two `[.., T]`.
fn per_frame_errors(pred: &Tensor, target: &Tensor) -> (Tensor, Tensor) {
    let sq = (pred - target).to_kind(Kind::Double).square(); // [.., T, N, 3]
    let per_frame_mse = sq.mean_dim(&[-2i64, -1][..], false, Kind::Double);
    let dist = sq.sum_dim_intlist(&[-1i64][..], false, Kind::Double).sqrt(); // [.., T, N]
    (
        per_frame_mse,
        dist.mean_dim(&[-1i64][..], false, Kind::Double),
    )
}

/// Sums of the sample-based metrics of a generative model that draws `K` trajectories per
/// input (GeoTDM / LaM-SLidE convention, K = 5): ADE / FDE averaged over the `K` draws, and
/// minADE / minFDE, the best of the `K` draws for each metric separately.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SampledMetricSums {
    samples: f64,
    draws: i64,
    ade: f64,
    fde: f64,
    min_ade: f64,
    min_fde: f64,
}

/// Mean sample-based metrics over a dataset split (original units).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SampledMetrics {
    /// Number of inputs evaluated.
    pub samples: usize,
    /// Draws `K` per input.
    pub draws: usize,
    /// ADE averaged over the draws.
    pub ade: f64,
    /// FDE averaged over the draws.
    pub fde: f64,
    /// ADE of the best draw.
    pub min_ade: f64,
    /// FDE of the best draw.
    pub min_fde: f64,
}

impl SampledMetricSums {
    /// Adds a batch of `K` draws per input.
    ///
    /// # Shapes
    /// `preds: [B, K, T, N, 3]`, `target: [B, T, N, 3]`, in original units.
    ///
    /// # Panics
    /// When the shapes do not fit, `K` is 0 or differs from earlier batches.
    #[track_caller]
    pub fn add(&mut self, preds: &Tensor, target: &Tensor) {
        let p = preds.size();
        let t = target.size();
        assert!(
            p.len() == 5 && t.len() == 4 && p[0] == t[0] && p[2..] == t[1..] && t[3] == 3,
            "expected preds [B, K, T, N, 3] and target [B, T, N, 3], got {p:?} and {t:?}"
        );
        assert!(
            p[1] >= 1 && t[1] >= 1,
            "need K ≥ 1 draws and T ≥ 1 frames, got {p:?}"
        );
        assert!(
            self.draws == 0 || self.draws == p[1],
            "K changed between batches: {} then {}",
            self.draws,
            p[1]
        );
        self.draws = p[1];
        let (_, de) = per_frame_errors(preds, &target.unsqueeze(1)); // [B, K, T]
        let ade = de.mean_dim(&[2i64][..], false, Kind::Double); // [B, K]
        let fde = de.select(2, -1); // [B, K]
        let sum = |x: Tensor| x.sum(Kind::Double).double_value(&[]);
        self.samples += p[0] as f64;
        self.ade += sum(ade.mean_dim(&[1i64][..], false, Kind::Double));
        self.fde += sum(fde.mean_dim(&[1i64][..], false, Kind::Double));
        self.min_ade += sum(ade.amin(&[1i64][..], false));
        self.min_fde += sum(fde.amin(&[1i64][..], false));
    }

    /// Means over the inputs added.
    pub fn finish(&self) -> SampledMetrics {
        let n = self.samples.max(1.0);
        SampledMetrics {
            samples: self.samples as usize,
            draws: self.draws as usize,
            ade: self.ade / n,
            fde: self.fde / n,
            min_ade: self.min_ade / n,
            min_fde: self.min_fde / n,
        }
    }
}

/// Sums for the imitation R² of a student representation against the teacher's:
/// `R² = 1 − Σ (z_s − z_t)² / Σ_c Σ (z_t,c − mean_c(z_t))²`, pooled over samples, frames and
/// nodes, with the teacher's mean taken per channel `c` — the share of the teacher's variation
/// between samples that the student reproduces (1: perfect, 0: no better than the teacher's
/// mean, below 0: worse).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImitationSums {
    count: f64,
    sse: f64,
    /// Per channel: Σ z_t and Σ z_t².
    sum: Vec<f64>,
    sum_sq: Vec<f64>,
}

impl ImitationSums {
    /// Adds a batch of rows.
    ///
    /// # Shapes
    /// `student`, `teacher`: `[.., d]` (any leading shape; channels last), equal shapes.
    ///
    /// # Panics
    /// When the shapes differ or the width changes between batches.
    #[track_caller]
    pub fn add(&mut self, student: &Tensor, teacher: &Tensor) {
        assert_eq!(
            student.size(),
            teacher.size(),
            "student and teacher shapes differ"
        );
        let d = *teacher.size().last().expect("at least one dimension");
        let t = teacher.to_kind(Kind::Double).reshape([-1, d]);
        let s = student.to_kind(Kind::Double).reshape([-1, d]);
        if self.sum.is_empty() {
            self.sum = vec![0.0; d as usize];
            self.sum_sq = vec![0.0; d as usize];
        }
        assert_eq!(
            self.sum.len(),
            d as usize,
            "the width changed between batches"
        );
        self.count += t.size()[0] as f64;
        self.sse += (&s - &t).square().sum(Kind::Double).double_value(&[]);
        let col =
            |x: Tensor| Vec::<f64>::try_from(x.to_device(tch::Device::Cpu)).unwrap_or_default();
        for (acc, v) in
            self.sum
                .iter_mut()
                .zip(col(t.sum_dim_intlist(&[0i64][..], false, Kind::Double)))
        {
            *acc += v;
        }
        for (acc, v) in self.sum_sq.iter_mut().zip(col(t.square().sum_dim_intlist(
            &[0i64][..],
            false,
            Kind::Double,
        ))) {
            *acc += v;
        }
    }

    /// The R² (`None` before any batch, or when the teacher does not vary at all).
    pub fn r2(&self) -> Option<f64> {
        if self.count == 0.0 {
            return None;
        }
        let sst: f64 = self
            .sum
            .iter()
            .zip(&self.sum_sq)
            .map(|(s, q)| q - s * s / self.count)
            .sum();
        (sst > 0.0).then(|| 1.0 - self.sse / sst)
    }
}

impl BatchSums for ImitationSums {
    /// `[count, sse, Σ z_t (d), Σ z_t² (d)]`, or empty before any batch.
    fn to_f64s(&self) -> Vec<f64> {
        if self.sum.is_empty() {
            return Vec::new();
        }
        let mut v = vec![self.count, self.sse];
        v.extend(&self.sum);
        v.extend(&self.sum_sq);
        v
    }

    fn from_f64s(v: &[f64]) -> anyhow::Result<Self> {
        if v.is_empty() {
            return Ok(Self::default());
        }
        anyhow::ensure!(
            v.len() >= 4 && v.len().is_multiple_of(2),
            "imitation sums hold 2 + 2·d numbers, got {}",
            v.len()
        );
        let d = (v.len() - 2) / 2;
        Ok(Self {
            count: v[0],
            sse: v[1],
            sum: v[2..2 + d].to_vec(),
            sum_sq: v[2 + d..].to_vec(),
        })
    }

    fn merge(&mut self, other: &Self) -> anyhow::Result<()> {
        if other.sum.is_empty() {
            return Ok(());
        }
        if self.sum.is_empty() {
            self.sum = vec![0.0; other.sum.len()];
            self.sum_sq = vec![0.0; other.sum.len()];
        }
        anyhow::ensure!(
            self.sum.len() == other.sum.len(),
            "imitation sums of widths {} and {} cannot be merged",
            self.sum.len(),
            other.sum.len()
        );
        self.count += other.count;
        self.sse += other.sse;
        for (a, b) in self.sum.iter_mut().zip(&other.sum) {
            *a += b;
        }
        for (a, b) in self.sum_sq.iter_mut().zip(&other.sum_sq) {
            *a += b;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    /// The slow obvious definition, on plain arrays.
    fn reference(pred: &[f64], target: &[f64], b: usize, t: usize, n: usize) -> [f64; 4] {
        let idx = |bi: usize, ti: usize, ni: usize, c: usize| ((bi * t + ti) * n + ni) * 3 + c;
        let (mut s2s, mut s2t, mut ade, mut fde) = (0.0, 0.0, 0.0, 0.0);
        for bi in 0..b {
            for ti in 0..t {
                let (mut mse, mut de) = (0.0, 0.0);
                for ni in 0..n {
                    let mut d2 = 0.0;
                    for c in 0..3 {
                        let d = pred[idx(bi, ti, ni, c)] - target[idx(bi, ti, ni, c)];
                        d2 += d * d;
                    }
                    mse += d2 / (3 * n) as f64;
                    de += d2.sqrt() / n as f64;
                }
                s2t += mse / t as f64;
                ade += de / t as f64;
                if ti == t - 1 {
                    s2s += mse;
                    fde += de;
                }
            }
        }
        [s2s, s2t, ade, fde].map(|x| x / b as f64)
    }

    #[test]
    fn matches_the_definitions() {
        let _rng = crate::trainer::torch_rng();
        let (b, t, n) = (3, 4, 5);
        tch::manual_seed(3);
        let pred = Tensor::randn([b, t, n, 3], (Kind::Double, Device::Cpu));
        let target = Tensor::randn([b, t, n, 3], (Kind::Double, Device::Cpu));
        let mut sums = MetricSums::default();
        // two batches give the same as one
        sums.add(&pred.narrow(0, 0, 1), &target.narrow(0, 0, 1));
        sums.add(&pred.narrow(0, 1, 2), &target.narrow(0, 1, 2));
        let m = sums.finish();
        let flat = |x: &Tensor| Vec::<f64>::try_from(x.flatten(0, -1)).unwrap();
        let r = reference(
            &flat(&pred),
            &flat(&target),
            b as usize,
            t as usize,
            n as usize,
        );
        for (got, want) in [m.s2s, m.s2t, m.ade, m.fde].into_iter().zip(r) {
            assert!((got - want).abs() < 1e-12, "{got} vs {want}");
        }
        assert_eq!(m.samples, 3);
    }

    #[test]
    fn sampled_metrics_match_the_definitions() {
        let _rng = crate::trainer::torch_rng();
        let (b, k, t, n) = (3usize, 4usize, 5usize, 2usize);
        tch::manual_seed(7);
        let preds = Tensor::randn(
            [b as i64, k as i64, t as i64, n as i64, 3],
            (Kind::Double, Device::Cpu),
        );
        let target = Tensor::randn(
            [b as i64, t as i64, n as i64, 3],
            (Kind::Double, Device::Cpu),
        );
        let mut sums = SampledMetricSums::default();
        sums.add(&preds.narrow(0, 0, 2), &target.narrow(0, 0, 2));
        sums.add(&preds.narrow(0, 2, 1), &target.narrow(0, 2, 1));
        let m = sums.finish();
        let p = Vec::<f64>::try_from(preds.flatten(0, -1)).unwrap();
        let q = Vec::<f64>::try_from(target.flatten(0, -1)).unwrap();
        // slow reference: per input, per draw, the mean displacement over frames and at the end
        let (mut ade, mut fde, mut min_ade, mut min_fde) = (0.0, 0.0, 0.0, 0.0);
        for bi in 0..b {
            let (mut a_k, mut f_k) = (vec![], vec![]);
            for ki in 0..k {
                let mut frames = vec![];
                for ti in 0..t {
                    let mut de = 0.0;
                    for ni in 0..n {
                        let d2: f64 = (0..3)
                            .map(|c| {
                                let pi = (((bi * k + ki) * t + ti) * n + ni) * 3 + c;
                                let qi = ((bi * t + ti) * n + ni) * 3 + c;
                                (p[pi] - q[qi]).powi(2)
                            })
                            .sum();
                        de += d2.sqrt() / n as f64;
                    }
                    frames.push(de);
                }
                a_k.push(frames.iter().sum::<f64>() / t as f64);
                f_k.push(frames[t - 1]);
            }
            ade += a_k.iter().sum::<f64>() / k as f64;
            fde += f_k.iter().sum::<f64>() / k as f64;
            min_ade += a_k.iter().cloned().fold(f64::INFINITY, f64::min);
            min_fde += f_k.iter().cloned().fold(f64::INFINITY, f64::min);
        }
        let want = [ade, fde, min_ade, min_fde].map(|x| x / b as f64);
        for (got, want) in [m.ade, m.fde, m.min_ade, m.min_fde].into_iter().zip(want) {
            assert!((got - want).abs() < 1e-12, "{got} vs {want}");
        }
        assert!(m.min_ade < m.ade && m.min_fde < m.fde);
        assert_eq!((m.samples, m.draws), (3, 4));
        // one draw: the deterministic metrics
        let mut one = SampledMetricSums::default();
        one.add(&target.unsqueeze(1), &target);
        assert_eq!(one.finish().ade, 0.0);
        let mut det = MetricSums::default();
        det.add(&preds.select(1, 0), &target);
        let mut single = SampledMetricSums::default();
        single.add(&preds.narrow(1, 0, 1), &target);
        assert!((single.finish().ade - det.finish().ade).abs() < 1e-12);
        assert!((single.finish().min_fde - det.finish().fde).abs() < 1e-12);
    }

    /// Against the slow definition on the concatenated rows, over two batches.
    #[test]
    fn imitation_r2_matches_its_definition() {
        let _rng = crate::trainer::torch_rng();
        tch::manual_seed(5);
        let t = Tensor::randn([2, 7, 3], (Kind::Double, Device::Cpu)) * 2.0 + 1.0;
        let s = &t + Tensor::randn([2, 7, 3], (Kind::Double, Device::Cpu)) * 0.5;
        let mut sums = ImitationSums::default();
        sums.add(&s.narrow(0, 0, 1), &t.narrow(0, 0, 1));
        sums.add(&s.narrow(0, 1, 1), &t.narrow(0, 1, 1));
        let rows = |x: &Tensor| Vec::<f64>::try_from(x.reshape([-1]).copy()).unwrap();
        let (tv, sv) = (rows(&t), rows(&s));
        let n = tv.len() / 3;
        let mut sst = 0.0;
        for c in 0..3 {
            let mean = (0..n).map(|i| tv[i * 3 + c]).sum::<f64>() / n as f64;
            sst += (0..n).map(|i| (tv[i * 3 + c] - mean).powi(2)).sum::<f64>();
        }
        let sse: f64 = tv.iter().zip(&sv).map(|(a, b)| (a - b).powi(2)).sum();
        let want = 1.0 - sse / sst;
        let got = sums.r2().unwrap();
        assert!((got - want).abs() < 1e-12, "{got} vs {want}");
        // the student equal to the teacher scores 1, the teacher's mean 0
        let mut perfect = ImitationSums::default();
        perfect.add(&t, &t);
        assert_eq!(perfect.r2(), Some(1.0));
        let mean = t
            .reshape([-1, 3])
            .mean_dim(0, true, Kind::Double)
            .expand([14, 3], false);
        let mut flat = ImitationSums::default();
        flat.add(&mean, &t.reshape([-1, 3]));
        assert!(flat.r2().unwrap().abs() < 1e-12);
        assert_eq!(ImitationSums::default().r2(), None);
    }

    #[test]
    fn perfect_prediction_scores_zero_and_s2s_reads_the_last_frame() {
        let _rng = crate::trainer::torch_rng();
        let target = Tensor::randn([2, 3, 4, 3], (Kind::Float, Device::Cpu));
        let mut sums = MetricSums::default();
        sums.add(&target, &target);
        assert_eq!(sums.finish().s2t, 0.0);
        // error only in the last frame: S2S = 1, S2T = 1/3
        let pred = target.copy();
        let _ = pred.narrow(1, 2, 1).g_add_scalar_(1.0);
        let mut sums = MetricSums::default();
        sums.add(&pred, &target);
        let m = sums.finish();
        assert!(
            (m.s2s - 1.0).abs() < 1e-6 && (m.s2t - 1.0 / 3.0).abs() < 1e-6,
            "{m:?}"
        );
        assert!((m.fde - 3f64.sqrt()).abs() < 1e-6);
    }

    /// Per-batch sums merged in batch order (through their `f64` layout, as they cross
    /// processes) equal the sequential sums bit for bit.
    #[test]
    fn merged_batch_sums_equal_the_sequential_sums_exactly() {
        let _rng = crate::trainer::torch_rng();
        tch::manual_seed(11);
        let pred = Tensor::randn([5, 3, 4, 3], (Kind::Float, Device::Cpu));
        let target = Tensor::randn([5, 3, 4, 3], (Kind::Float, Device::Cpu));
        let z_s = Tensor::randn([5, 4, 6], (Kind::Float, Device::Cpu));
        let z_t = Tensor::randn([5, 4, 6], (Kind::Float, Device::Cpu)) * 3.0 + 1.0;
        let (mut seq, mut seq_im) = (MetricSums::default(), ImitationSums::default());
        let (mut merged, mut merged_im) = (MetricSums::default(), ImitationSums::default());
        for (start, len) in [(0, 2), (2, 1), (3, 2)] {
            let (p, t) = (pred.narrow(0, start, len), target.narrow(0, start, len));
            let (s, tt) = (z_s.narrow(0, start, len), z_t.narrow(0, start, len));
            seq.add(&p, &t);
            seq_im.add(&s, &tt);
            let mut part = MetricSums::default();
            part.add(&p, &t);
            let part = MetricSums::from_f64s(&part.to_f64s()).unwrap();
            merged.merge(&part).unwrap();
            let mut part = ImitationSums::default();
            part.add(&s, &tt);
            let part = ImitationSums::from_f64s(&part.to_f64s()).unwrap();
            merged_im.merge(&part).unwrap();
            // a rank without batches contributes the empty sums
            merged_im.merge(&ImitationSums::default()).unwrap();
        }
        assert_eq!(merged, seq);
        assert_eq!(merged_im, seq_im);
        assert_eq!(merged.finish(), seq.finish());
        // layouts are checked
        assert!(MetricSums::from_f64s(&[1.0, 2.0]).is_err());
        assert!(ImitationSums::from_f64s(&[1.0, 2.0, 3.0]).is_err());
        let mut wide = ImitationSums::default();
        wide.add(&z_s.narrow(2, 0, 2), &z_t.narrow(2, 0, 2));
        assert!(merged_im.merge(&wide).is_err());
    }
}
