//! Data-parallel training on c10d (SPEC §8): the trainer's side of [`torch_dist`].
//!
//! Every rank walks the same global order of training windows (a function of `train.seed` and
//! the epoch, not of the number of ranks) in global batches of `train.batch_size`; rank `r`
//! of `N` takes its contiguous share [`shard`] of each global batch. Its loss is a mean over
//! its `n_r` windows, so the gradient of the global batch's mean loss is
//! `Σ_r (n_r / n) ∇L_r`: each rank scales its gradients by `n_r / n`, flattens them into one
//! bucket per tensor kind, and the engine sums the buckets ([`DataParallel::reduce_step`]). A
//! second, `f64` bucket carries the step's loss terms and which parameters the loss reached,
//! so every rank takes the same Adam step, sees the same loss and makes the same decision
//! (stop on a non-finite loss, early stopping) as one process on the global batch would.
//!
//! The result equals one process's up to float rounding (a sum of per-shard means instead of
//! one mean) for losses that are means over windows; randomness drawn inside a loss (libtorch's
//! generator is seeded per step) is drawn per shard, so such a model follows another, equally
//! valid, path. The sampler state is the (epoch, step) pair the checkpoint already holds, so a
//! run resumes with any number of ranks.

use anyhow::{Context, Result, ensure};
use tch::{Device, Kind, Tensor, nn::VarStore};
use torch_dist::{ProcessGroup, ReduceOp};

use crate::optim::Adam;

/// Rank `rank`'s contiguous share of a global batch: `len / world` windows, one more for the
/// first `len % world` ranks (so shards differ by at most one and may be empty).
///
/// # Panics
/// When `rank >= world`.
#[track_caller]
pub fn shard<T>(batch: &[T], rank: usize, world: usize) -> &[T] {
    assert!(rank < world, "rank {rank} of {world}");
    let (base, extra) = (batch.len() / world, batch.len() % world);
    let start = rank * base + rank.min(extra);
    let len = base + usize::from(rank < extra);
    &batch[start..start + len]
}

/// One step's loss terms, weighted sums over the windows of the step.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StepTerms {
    /// `Σ L_total` (a mean times the windows it averages).
    pub total: f64,
    /// `Σ L_pred`.
    pub pred: f64,
    /// `Σ L_rep`.
    pub rep: f64,
    /// `Σ L_spec`.
    pub spec: f64,
    /// `Σ` the fraction of samples the alignment read.
    pub aligned: f64,
    /// Whether the decoder read the teacher.
    pub teacher_forced: bool,
}

/// The process group of a data-parallel run, as the trainer uses it.
#[derive(Debug)]
pub struct DataParallel {
    group: ProcessGroup,
}

impl DataParallel {
    /// Wraps a joined group.
    pub fn new(group: ProcessGroup) -> Self {
        Self { group }
    }

    /// This rank.
    pub fn rank(&self) -> usize {
        self.group.rank()
    }

    /// The number of ranks.
    pub fn world_size(&self) -> usize {
        self.group.world_size()
    }

    /// Waits for every rank.
    pub fn barrier(&self) -> Result<()> {
        Ok(self.group.barrier()?)
    }

    /// The element-wise sum of `values` over the ranks (every rank passes the same length).
    pub fn sum_f64(&self, values: &[f64]) -> Result<Vec<f64>> {
        if values.is_empty() {
            return Ok(Vec::new());
        }
        let mut t = vec![Tensor::from_slice(values)];
        self.group.all_reduce(&mut t, ReduceOp::Sum)?;
        Ok(Vec::<f64>::try_from(t.pop().context("the summed values")?)?)
    }

    /// Makes every rank's weights and Adam moments rank 0's (the start of a run: a resumed or
    /// fine-tuned rank 0 is the reference).
    pub fn broadcast_from_root(&self, vs: &VarStore, opt: Option<&Adam>) -> Result<()> {
        let mut named: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
        if let Some(o) = opt {
            named.extend(
                o.state()
                    .0
                    .into_iter()
                    .filter(|(k, _)| k.starts_with("adam.m.") || k.starts_with("adam.v.")),
            );
        }
        named.sort_by(|a, b| a.0.cmp(&b.0));
        // detached views share the storage: the engine writes into the variables themselves
        let mut tensors: Vec<Tensor> = named.iter().map(|(_, t)| t.detach()).collect();
        for (t, (name, _)) in tensors.iter().zip(&named) {
            ensure!(
                t.is_contiguous(),
                "variable {name} is not contiguous: it cannot be broadcast in place"
            );
        }
        self.group.broadcast(&mut tensors, 0)?;
        Ok(())
    }

    /// The global batch's mean gradients and loss terms from this rank's share: `grads` are
    /// the gradients of the mean loss over this rank's `local` windows (`None` where the loss
    /// does not reach a parameter, or all `None` for an empty share), `params` the optimiser's
    /// parameters (for the shapes of absent gradients), `global` the windows of the global
    /// batch. Returns the averaged gradients (`None` where no rank's loss reached the
    /// parameter) and the terms summed over all ranks. Two all-reduce calls for a model whose
    /// parameters share one kind.
    pub fn reduce_step(
        &self,
        grads: Vec<Option<Tensor>>,
        params: &[Tensor],
        terms: StepTerms,
        local: usize,
        global: usize,
    ) -> Result<(Vec<Option<Tensor>>, StepTerms)> {
        ensure!(
            grads.len() == params.len(),
            "{} gradients for {} parameters",
            grads.len(),
            params.len()
        );
        ensure!(global > 0, "an empty global batch");
        let weight = local as f64 / global as f64;
        let _guard = tch::no_grad_guard();
        // the f64 bucket: which parameters the loss reached, then the loss terms
        let mut small: Vec<f64> = grads
            .iter()
            .map(|g| if g.is_some() { 1.0 } else { 0.0 })
            .collect();
        small.extend([
            terms.total,
            terms.pred,
            terms.rep,
            terms.spec,
            terms.aligned,
            f64::from(u8::from(terms.teacher_forced)),
        ]);
        // one flat bucket per kind of parameter, in parameter order
        let mut buckets: Vec<(Kind, Device, Vec<usize>)> = Vec::new();
        for (i, p) in params.iter().enumerate() {
            let (kind, device) = (p.kind(), p.device());
            match buckets
                .iter_mut()
                .find(|(k, d, _)| *k == kind && *d == device)
            {
                Some(b) => b.2.push(i),
                None => buckets.push((kind, device, vec![i])),
            }
        }
        let mut flat: Vec<Tensor> = buckets
            .iter()
            .map(|(_, _, idx)| {
                let parts: Vec<Tensor> = idx
                    .iter()
                    .map(|&i| match &grads[i] {
                        Some(g) => (g * weight).flatten(0, -1),
                        None => params[i].zeros_like().flatten(0, -1),
                    })
                    .collect();
                Tensor::cat(&parts, 0)
            })
            .collect();
        flat.push(Tensor::from_slice(&small));
        self.group.all_reduce(&mut flat, ReduceOp::Sum)?;
        let small = Vec::<f64>::try_from(flat.pop().context("the f64 bucket")?)?;
        let n = params.len();
        let mut out: Vec<Option<Tensor>> = (0..n).map(|_| None).collect();
        for ((_, _, idx), bucket) in buckets.iter().zip(&flat) {
            let mut offset = 0;
            for &i in idx {
                let numel = params[i].numel() as i64;
                if small[i] > 0.0 {
                    out[i] = Some(
                        bucket
                            .narrow(0, offset, numel)
                            .view_as(&params[i])
                            .contiguous(),
                    );
                }
                offset += numel;
            }
        }
        let terms = StepTerms {
            total: small[n],
            pred: small[n + 1],
            rep: small[n + 2],
            spec: small[n + 3],
            aligned: small[n + 4],
            teacher_forced: small[n + 5] > 0.0,
        };
        Ok((out, terms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn shards_partition_the_batch_in_order(len in 0usize..50, world in 1usize..9) {
            let batch: Vec<usize> = (0..len).collect();
            let mut joined = Vec::new();
            let sizes: Vec<usize> = (0..world).map(|r| shard(&batch, r, world).len()).collect();
            for r in 0..world {
                joined.extend_from_slice(shard(&batch, r, world));
            }
            prop_assert_eq!(joined, batch);
            let (lo, hi) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
            prop_assert!(hi - lo <= 1);
        }
    }

    #[test]
    fn one_rank_takes_everything() {
        assert_eq!(shard(&[1, 2, 3], 0, 1), &[1, 2, 3]);
        assert_eq!(shard(&[1, 2, 3], 2, 4), &[3]);
        assert!(shard(&[1, 2, 3], 3, 4).is_empty());
    }
}
