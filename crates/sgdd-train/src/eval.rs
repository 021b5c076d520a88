//! Evaluation: one loop over a prepared split that every command shares (training's model
//! selection, `eval`, `predict`, `spectrum`), which refuses non-finite predictions.

use anyhow::{Context, Result, ensure};
use tch::{Device, Kind, Tensor};

use crate::data::{self, Batch, GraphCache, Prepared};
use crate::metrics::{MetricSums, Metrics};
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

/// Runs `predict` over `p` in batches of `batch_size` and hands each batch's prediction and
/// target (`[B, T, N, 3]`, original units) to `each`. A non-finite prediction is an error.
fn for_each_batch(
    p: &Prepared,
    batch_size: usize,
    device: Device,
    predict: &dyn Fn(&Batch) -> Result<Tensor>,
    each: &mut dyn FnMut(&Batch, Tensor, Tensor),
) -> Result<()> {
    let _guard = tch::no_grad_guard();
    let mut graphs = GraphCache::default();
    let idx: Vec<i64> = (0..p.samples).collect();
    for (i, chunk) in idx.chunks(batch_size.max(1)).enumerate() {
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
        each(&batch, pred, truth);
    }
    Ok(())
}

fn metrics_with(
    p: &Prepared,
    batch_size: usize,
    device: Device,
    predict: &dyn Fn(&Batch) -> Result<Tensor>,
) -> Result<Metrics> {
    let mut sums = MetricSums::default();
    for_each_batch(p, batch_size, device, predict, &mut |_, pred, truth| {
        sums.add(&pred, &truth)
    })?;
    Ok(sums.finish())
}

/// Mean metrics of `model` on a prepared split (original units).
pub fn evaluate(model: &Model, p: &Prepared, batch_size: usize, device: Device) -> Result<Metrics> {
    metrics_with(p, batch_size, device, &|b| model.predict(b))
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

/// Every prediction of a split, on the CPU, with the mean metrics.
pub fn predict_split(
    model: &Model,
    p: &Prepared,
    batch_size: usize,
    device: Device,
) -> Result<Predictions> {
    let (mut preds, mut truths, mut starts) = (vec![], vec![], vec![]);
    let mut sums = MetricSums::default();
    for_each_batch(
        p,
        batch_size,
        device,
        &|b| model.predict(b),
        &mut |batch, pred, truth| {
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
