//! Evaluation: one loop over a prepared split that every command shares (training's model
//! selection, `eval`, `predict`, `spectrum`), which refuses non-finite predictions.

use anyhow::{Context, Result, ensure};
use tch::{Device, Kind, Tensor};

use crate::data::{self, Batch, GraphCache, Prepared};
use crate::ddp::DataParallel;
use crate::metrics::{BatchSums, ImitationSums, MetricSums, Metrics};
use crate::model::Model;

/// Predictions of a split in original units.
#[derive(Debug)]
pub struct Predictions {
    /// `[S, T, N, 3]` predicted positions.
    pub pred: Tensor,
    /// `[S, T, N, 3]` true positions.
    pub truth: Tensor,
    /// `[S, N, 3]` positions at the condition frame.
    pub start: Tensor,
    /// Mean metrics.
    pub metrics: Metrics,
}

impl Predictions {
    /// Per-sample final-frame MSE `[S]` (S2S of each sample).
    pub fn per_sample_s2s(&self) -> Tensor {
        (&self.pred - &self.truth).square().select(1, -1).mean_dim(
            &[1i64, 2][..],
            false,
            Kind::Double,
        )
    }

    /// Per-sample MSE over all predicted frames `[S]` (S2T of each sample).
    pub fn per_sample_s2t(&self) -> Tensor {
        (&self.pred - &self.truth)
            .square()
            .mean_dim(&[1i64, 2, 3][..], false, Kind::Double)
    }
}

/// The batches of a split (`batch_size` consecutive samples each, in order) that this process
/// evaluates, with their index: all of them, or in a data-parallel run batch `i` on rank
/// `i mod N`, so each rank evaluates whole batches exactly as one process would.
fn my_batches(
    p: &Prepared,
    batch_size: usize,
    ranks: Option<&DataParallel>,
) -> (usize, Vec<(usize, Vec<i64>)>) {
    let (rank, world) = ranks.map_or((0, 1), |d| (d.rank(), d.world_size()));
    batches_of_rank(p.samples, batch_size, rank, world)
}

/// [`my_batches`] for rank `rank` of `world`: the number of batches of `samples` windows, and
/// this rank's batches with their index.
fn batches_of_rank(
    samples: i64,
    batch_size: usize,
    rank: usize,
    world: usize,
) -> (usize, Vec<(usize, Vec<i64>)>) {
    let idx: Vec<i64> = (0..samples).collect();
    let all: Vec<Vec<i64>> = idx.chunks(batch_size.max(1)).map(<[i64]>::to_vec).collect();
    let n = all.len();
    let mine = all
        .into_iter()
        .enumerate()
        .filter(|(i, _)| i % world == rank)
        .collect();
    (n, mine)
}

/// Per-batch sums met into the split's sums: merged in batch order, after every rank's batches
/// are gathered in a data-parallel run (a sum over ranks of a table in which each batch's row is
/// non-zero on one rank only, so it is exact). Every rank gets the sums one process adding the
/// batches in order gets, bit for bit.
fn meet<S: BatchSums>(
    n_batches: usize,
    mine: Vec<(usize, S)>,
    ranks: Option<&DataParallel>,
) -> Result<S> {
    let rows: Vec<Option<Vec<f64>>> = match ranks {
        None => {
            let mut total = S::default();
            for (_, part) in &mine {
                total.merge(part)?;
            }
            return Ok(total);
        }
        Some(d) => {
            let mut rows = vec![None; n_batches];
            for (i, part) in &mine {
                rows[*i] = Some(part.to_f64s());
            }
            // first the width of each batch's row, then the rows
            let widths: Vec<f64> = rows
                .iter()
                .map(|r| r.as_ref().map_or(0.0, |r| r.len() as f64))
                .collect();
            let widths: Vec<usize> = d.sum_f64(&widths)?.iter().map(|w| *w as usize).collect();
            let mut table = Vec::with_capacity(widths.iter().sum());
            for (row, &w) in rows.iter().zip(&widths) {
                match row {
                    Some(r) => table.extend(r),
                    None => table.extend(std::iter::repeat_n(0.0, w)),
                }
            }
            let table = d.sum_f64(&table)?;
            let mut offset = 0;
            widths
                .iter()
                .map(|&w| {
                    offset += w;
                    Some(table[offset - w..offset].to_vec())
                })
                .collect()
        }
    };
    let mut total = S::default();
    for row in rows.into_iter().flatten() {
        total.merge(&S::from_f64s(&row)?)?;
    }
    Ok(total)
}

/// Runs `predict` over `batches` of `p` (see [`my_batches`]) and hands each batch's index,
/// prediction and target (`[B, T, N, 3]`, original units) to `each`. A non-finite prediction
/// is an error.
fn for_each_batch(
    p: &Prepared,
    batches: &[(usize, Vec<i64>)],
    device: Device,
    predict: &dyn Fn(&Batch) -> Result<Tensor>,
    each: &mut dyn FnMut(usize, &Batch, Tensor, Tensor),
) -> Result<()> {
    let _guard = tch::no_grad_guard();
    let mut graphs = GraphCache::default();
    for (i, chunk) in batches {
        let batch = p.batch(chunk, device, &mut graphs)?;
        let pred = predict(&batch)?;
        ensure!(
            pred.isfinite().all().int64_value(&[]) == 1,
            "the model predicted NaN or Inf (batch {i}, samples {}..{})",
            chunk[0],
            chunk[chunk.len() - 1] + 1
        );
        let pred = data::to_original(&pred, &batch, p.n);
        let truth = data::to_original(&batch.y, &batch, p.n);
        each(*i, &batch, pred, truth);
    }
    Ok(())
}

/// Mean metrics of `predict` on a split.
pub(crate) fn metrics_with(
    p: &Prepared,
    batch_size: usize,
    device: Device,
    predict: &dyn Fn(&Batch) -> Result<Tensor>,
) -> Result<Metrics> {
    metrics_on(p, batch_size, device, None, predict)
}

/// [`metrics_with`]; in a data-parallel run (`ranks`) each rank evaluates its share of the
/// batches and every rank gets the metrics of the whole split.
fn metrics_on(
    p: &Prepared,
    batch_size: usize,
    device: Device,
    ranks: Option<&DataParallel>,
    predict: &dyn Fn(&Batch) -> Result<Tensor>,
) -> Result<Metrics> {
    let (n, batches) = my_batches(p, batch_size, ranks);
    let mut parts = Vec::with_capacity(batches.len());
    for_each_batch(p, &batches, device, predict, &mut |i, _, pred, truth| {
        let mut sums = MetricSums::default();
        sums.add(&pred, &truth);
        parts.push((i, sums));
    })?;
    Ok(meet(n, parts, ranks)?.finish())
}

/// Mean metrics of `model` on a prepared split (original units).
pub fn evaluate(model: &Model, p: &Prepared, batch_size: usize, device: Device) -> Result<Metrics> {
    evaluate_on(model, p, batch_size, device, None)
}

/// [`evaluate`], sharded over the ranks of a data-parallel run when `ranks` is given: each rank
/// evaluates every `N`-th batch and all get the whole split's metrics, equal to one process's.
pub fn evaluate_on(
    model: &Model,
    p: &Prepared,
    batch_size: usize,
    device: Device,
    ranks: Option<&DataParallel>,
) -> Result<Metrics> {
    metrics_on(p, batch_size, device, ranks, &|b| model.predict(b))
}

/// Metrics of the decoder conditioned on the teacher (an oracle that reads the future: a
/// diagnostic of the distillation gap); `None` for models without a teacher.
pub fn evaluate_teacher(
    model: &Model,
    p: &Prepared,
    batch_size: usize,
    device: Device,
) -> Result<Option<Metrics>> {
    if model.kind() != crate::ModelKind::Sgdd {
        return Ok(None);
    }
    let m = metrics_with(p, batch_size, device, &|b| {
        model
            .predict_with_teacher(b)?
            .context("the model has no teacher")
    })?;
    Ok(Some(m))
}

/// The student's imitation R² of the teacher's `z^sg` over a split ([`ImitationSums`]);
/// `None` for models without a teacher.
pub fn imitation_r2(
    model: &Model,
    p: &Prepared,
    batch_size: usize,
    device: Device,
) -> Result<Option<f64>> {
    imitation_r2_on(model, p, batch_size, device, None)
}

/// [`imitation_r2`], sharded over `ranks` as [`evaluate_on`].
pub fn imitation_r2_on(
    model: &Model,
    p: &Prepared,
    batch_size: usize,
    device: Device,
    ranks: Option<&DataParallel>,
) -> Result<Option<f64>> {
    let _guard = tch::no_grad_guard();
    let (n, batches) = my_batches(p, batch_size, ranks);
    let mut graphs = GraphCache::default();
    let mut parts = Vec::with_capacity(batches.len());
    // whether the model has a teacher is the same on every rank, so all ranks leave together
    if !model.has_teacher() {
        return Ok(None);
    }
    for (i, chunk) in &batches {
        let batch = p.batch(chunk, device, &mut graphs)?;
        let mut sums = ImitationSums::default();
        ensure!(
            model.imitation(&batch, &mut sums)?,
            "the model's teacher gave no imitation sums"
        );
        parts.push((*i, sums));
    }
    Ok(meet(n, parts, ranks)?.r2())
}

/// Every prediction of a split, on the CPU, with the mean metrics.
pub fn predict_split(
    model: &Model,
    p: &Prepared,
    batch_size: usize,
    device: Device,
) -> Result<Predictions> {
    let (mut preds, mut truths, mut starts) = (vec![], vec![], vec![]);
    let mut sums = MetricSums::default();
    let (_, batches) = my_batches(p, batch_size, None);
    for_each_batch(
        p,
        &batches,
        device,
        &|b| model.predict(b),
        &mut |_, batch, pred, truth| {
            sums.add(&pred, &truth);
            starts.push(
                data::to_original(&batch.x0.unsqueeze(0), batch, p.n)
                    .select(1, 0)
                    .to_device(Device::Cpu),
            );
            preds.push(pred.to_device(Device::Cpu));
            truths.push(truth.to_device(Device::Cpu));
        },
    )?;
    ensure!(!preds.is_empty(), "the split has no samples");
    Ok(Predictions {
        pred: Tensor::cat(&preds, 0),
        truth: Tensor::cat(&truths, 0),
        start: Tensor::cat(&starts, 0),
        metrics: sums.finish(),
    })
}

/// An autoregressive rollout past the trained horizon (see [`rollout`]), in original units.
#[derive(Debug)]
pub struct Rollout {
    /// `[S, R·T, N, 3]` predicted positions of the `R` chained windows.
    pub pred: Tensor,
    /// `[S, R·T, N, 3]` true positions.
    pub truth: Tensor,
    /// Time of each predicted frame after the first condition frame, `[R·T]`.
    pub times: Vec<f64>,
    /// MSE of each predicted frame over samples, nodes and coordinates, `[R·T]`: how the
    /// error grows along the rollout.
    pub frame_mse: Vec<f64>,
    /// Mean metrics of each window `r = 0..R` (window 0 is the trained horizon).
    pub windows: Vec<Metrics>,
}

/// Chains the model `windows` times: window `r + 1` is conditioned on window `r`'s last
/// predicted frame, with the velocity there taken by a backward finite difference of the last
/// two predicted frames (`(x_T − x_{T−1}) / (t_T − t_{T−1})`; `(x_1 − x_0) / t_1` when `T = 1`).
/// Node features and the graph stay those of the first condition frame; the true future is read
/// only to score. Windows must start at a fixed frame (`data.starts = "fixed"`): window `r`
/// conditions on frame `start_frame + r·delta_frame`, so the trajectories need
/// `start_frame + windows·delta_frame + 1` frames.
pub fn rollout(
    model: &Model,
    ds: &traj_data::Dataset,
    data: &crate::DataConfig,
    windows: usize,
    batch_size: usize,
    device: Device,
) -> Result<Rollout> {
    ensure!(windows >= 1, "--rollout must be ≥ 1");
    let start = match &data.starts {
        traj_data::Starts::Fixed(a) if a.len() == 1 => a[0],
        other => anyhow::bail!(
            "a rollout chains windows from one fixed start frame (data.starts = \"fixed\"), the \
             checkpoint's data uses {other:?}"
        ),
    };
    let frames_needed = start + windows * data.delta_frame + 1;
    let shortest = ds
        .trajectories()
        .iter()
        .map(|t| t.num_frames())
        .min()
        .unwrap_or(0);
    ensure!(
        shortest >= frames_needed,
        "a rollout of {windows} windows from frame {start} needs {frames_needed} frames per \
         trajectory (Δ = {}), the shortest has {shortest}: choose fewer windows or an earlier \
         start frame",
        data.delta_frame
    );
    let per_window: Vec<Prepared> = (0..windows)
        .map(|r| {
            let mut d = data.clone();
            d.starts = traj_data::Starts::Fixed(vec![start + r * data.delta_frame]);
            data::prepare(ds, &d)
        })
        .collect::<Result<_>>()?;
    let first = &per_window[0];
    ensure!(
        per_window.iter().all(|p| p.samples == first.samples),
        "the rollout windows do not cover the same trajectories"
    );
    let t = first.t;
    let times0 = &first.target_times;
    let dt_last = if t >= 2 {
        times0[t as usize - 1] - times0[t as usize - 2]
    } else {
        times0[0]
    };
    ensure!(dt_last > 0.0, "target times must increase");
    let _guard = tch::no_grad_guard();
    let mut graphs = GraphCache::default();
    let idx: Vec<i64> = (0..first.samples).collect();
    let (mut preds, mut truths) = (vec![], vec![]);
    let mut sums = vec![MetricSums::default(); windows];
    for chunk in idx.chunks(batch_size.max(1)) {
        let mut batch = first.batch(chunk, device, &mut graphs)?;
        let (mut p_chunks, mut t_chunks) = (vec![], vec![]);
        for (r, p) in per_window.iter().enumerate() {
            let pred = model.predict(&batch)?;
            ensure!(
                pred.isfinite().all().int64_value(&[]) == 1,
                "the model predicted NaN or Inf in rollout window {r}"
            );
            let truth_batch = p.batch(chunk, device, &mut graphs)?;
            let pred_o = data::to_original(&pred, &batch, first.n);
            let truth_o = data::to_original(&truth_batch.y, &truth_batch, p.n);
            sums[r].add(&pred_o, &truth_o);
            p_chunks.push(pred_o.to_device(Device::Cpu));
            t_chunks.push(truth_o.to_device(Device::Cpu));
            let last = pred.select(0, t - 1);
            let before = if t >= 2 {
                pred.select(0, t - 2)
            } else {
                batch.x0.shallow_clone()
            };
            batch.v0 = (&last - before) / dt_last;
            batch.x0 = last;
        }
        preds.push(Tensor::cat(&p_chunks, 1));
        truths.push(Tensor::cat(&t_chunks, 1));
    }
    let pred = Tensor::cat(&preds, 0);
    let truth = Tensor::cat(&truths, 0);
    let frame_mse = Vec::<f64>::try_from((&pred - &truth).square().mean_dim(
        &[0i64, 2, 3][..],
        false,
        Kind::Double,
    ))?;
    // the last target is the horizon, start + Δ: the next window starts there
    let delta_time = times0[t as usize - 1];
    let times = (0..windows)
        .flat_map(|r| times0.iter().map(move |&x| x + r as f64 * delta_time))
        .collect();
    Ok(Rollout {
        pred,
        truth,
        times,
        frame_mse,
        windows: sums.iter().map(MetricSums::finish).collect(),
    })
}

/// Where in the joint spectrum an error lies (see [`error_spectrum`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorSpectrum {
    /// Band edges in the joint eigenvalue `μ = λ_t + λ_s` (`bands + 1` values over `[0, max μ]`).
    pub edges: Vec<f64>,
    /// Squared error per band, summed over samples and coordinates.
    pub energy: Vec<f64>,
    /// Total squared error.
    pub total: f64,
}

/// Decomposes `pred − truth` (`[S, T, N, 3]`) over the full joint basis of the split's graph
/// (`K = N·T`, so every error component has a frequency) and sums its energy in `bands`
/// equal-width bands of `μ`.
pub fn error_spectrum(
    p: &Prepared,
    pred: &Tensor,
    truth: &Tensor,
    bands: usize,
) -> Result<ErrorSpectrum> {
    ensure!(bands >= 1, "the number of bands must be ≥ 1");
    ensure!(
        matches!(p.graphs, data::SampleGraphs::Shared { .. }) && p.spectral.is_none(),
        "the error spectrum needs one graph for every sample; this split has a graph per window \
         (data.graph = \"radius\" or \"knn\")"
    );
    let (n, t) = (p.n as usize, p.t as usize);
    let graph = spectral_core::Graph::from_edges(n, &p.undirected)?;
    let basis = spectral_core::JointBasis::from_graph(
        &graph,
        t,
        &spectral_core::JointBasisConfig::new(n * t),
    )?;
    let err = Vec::<f64>::try_from((pred - truth).to_kind(Kind::Double).flatten(0, -1))?;
    let samples = pred.size()[0] as usize;
    let mu_max = basis.eigenvalues().iter().copied().fold(0.0, f64::max);
    let edges = spectral_core::uniform_band_edges(0.0, mu_max + 1e-9, bands);
    let be = spectral_core::band_energy(&basis, &err, samples, 3, &edges)?;
    Ok(ErrorSpectrum {
        edges,
        energy: be.energy,
        total: be.total,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// The ranks' batches are the one-process batches, each on exactly one rank.
        #[test]
        fn ranks_share_the_batches_of_one_process(
            samples in 0i64..40, batch_size in 1usize..9, world in 1usize..5,
        ) {
            let _rng = crate::trainer::torch_rng();
            let (n, all) = batches_of_rank(samples, batch_size, 0, 1);
            proptest::prop_assert_eq!(n, all.len());
            let mut met: Vec<(usize, Vec<i64>)> = (0..world)
                .flat_map(|r| {
                    let (m, mine) = batches_of_rank(samples, batch_size, r, world);
                    assert_eq!(m, n);
                    assert!(mine.iter().all(|(i, _)| i % world == r));
                    mine
                })
                .collect();
            met.sort();
            proptest::prop_assert_eq!(met, all);
        }
    }
}
