//! Frozen teachers: trained checkpoints of any model kind, rebuilt for the run's data, with no
//! trainable variable, and their predictions of the training split computed once.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
use tch::{Device, Tensor, nn::VarStore};

use crate::checkpoint;
use crate::data::{GraphCache, Prepared};
use crate::model::Model;
use crate::trainer::{Splits, restore_model};

use super::config::DistillConfig;

/// A trained model used as a teacher: its variables frozen (`requires_grad = false`), so no
/// gradient of the student's objective can reach them.
#[derive(Debug)]
pub struct Teacher {
    /// The checkpoint it was loaded from.
    pub checkpoint: PathBuf,
    /// Its model kind (`egno`, `sgdd`, `no-teacher`, `const-vel`, …).
    pub kind: String,
    /// The sha256 of its tensors (from the checkpoint's header).
    pub tensors_sha256: String,
    /// Its variables, frozen.
    pub vs: VarStore,
    /// The model.
    pub model: Model,
    /// Its predictions of the training split, `[S, T, N, 3]` (normalised units, CPU).
    train_pred: Tensor,
}

impl Teacher {
    /// Loads `checkpoint` for the run's data: the teacher must have been trained on the same
    /// windows and node features (and, when both know it, the same dataset).
    pub fn load(
        path: &Path,
        cfg: &DistillConfig,
        splits: &Splits,
        dataset_sha256: Option<&str>,
        batch_size: usize,
        device: Device,
    ) -> Result<Self> {
        let (_, meta) = checkpoint::load(path)?;
        let (tcfg, mut vs, model) = restore_model(path, &splits.train, device)
            .with_context(|| format!("teacher {}", path.display()))?;
        let (a, b) = (&tcfg.data, &cfg.data);
        ensure!(
            a.window_spec() == b.window_spec()
                && a.speed_feature == b.speed_feature
                && a.type_one_hot == b.type_one_hot,
            "teacher {} was trained on other windows or node features than this run's [data] \
             (its windows {:?}, speed_feature {}, type_one_hot {}; here {:?}, {}, {})",
            path.display(),
            a.window_spec(),
            a.speed_feature,
            a.type_one_hot,
            b.window_spec(),
            b.speed_feature,
            b.type_one_hot
        );
        same_dataset(
            path,
            meta.dataset_sha256.as_deref(),
            dataset_sha256,
            &cfg.data.dir,
        )?;
        vs.freeze();
        let train_pred = predictions(&model, &splits.train, batch_size, device)?;
        Ok(Self {
            checkpoint: path.to_owned(),
            kind: tcfg.model.kind.name().to_owned(),
            tensors_sha256: meta.tensors_sha256,
            vs,
            model,
            train_pred,
        })
    }

    /// The teacher's predictions of training samples `idx` on `device`.
    ///
    /// # Shapes
    /// `[T, B·N, 3]` for `B = idx.len()`.
    pub fn train_targets(&self, idx: &[i64], device: Device) -> Tensor {
        let sel = Tensor::from_slice(idx);
        let x = self.train_pred.index_select(0, &sel).to_device(device);
        let (b, t, n) = (x.size()[0], x.size()[1], x.size()[2]);
        x.permute([1, 0, 2, 3]).reshape([t, b * n, 3])
    }

    /// Trainable scalars of the teacher (counted before freezing: all its variables).
    pub fn parameters(&self) -> i64 {
        self.vs.variables().values().map(|t| t.numel() as i64).sum()
    }
}

/// Refuses a teacher (`path`) trained on another dataset (`was`, its manifest's sha256) than the
/// run's (`now`, of `dir`), when both are known.
pub(super) fn same_dataset(
    path: &Path,
    was: Option<&str>,
    now: Option<&str>,
    dir: &Path,
) -> Result<()> {
    if let (Some(was), Some(now)) = (was, now) {
        ensure!(
            was == now,
            "teacher {} was trained on another dataset (manifest sha256 {was}) than {} ({now})",
            path.display(),
            dir.display()
        );
    }
    Ok(())
}

/// The predictions of `model` for every sample of `p`, `[S, T, N, 3]` (normalised units, CPU).
fn predictions(model: &Model, p: &Prepared, batch_size: usize, device: Device) -> Result<Tensor> {
    let _guard = tch::no_grad_guard();
    let mut graphs = GraphCache::default();
    let idx: Vec<i64> = (0..p.samples).collect();
    let mut out = Vec::new();
    for chunk in idx.chunks(batch_size.max(1)) {
        let batch = p.batch(chunk, device, &mut graphs)?;
        let x = model.predict(&batch)?;
        ensure!(
            x.isfinite().all().int64_value(&[]) == 1,
            "a teacher predicted NaN or Inf (samples {}..{})",
            chunk[0],
            chunk[chunk.len() - 1] + 1
        );
        out.push(
            x.reshape([p.t, batch.b, p.n, 3])
                .permute([1, 0, 2, 3])
                .to_device(Device::Cpu),
        );
    }
    Ok(Tensor::cat(&out, 0))
}
