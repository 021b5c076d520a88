//! The bookkeeping every kind of run shares ([`Trainer`](crate::Trainer) and
//! [`Distiller`](crate::Distiller)): which config changes a resume accepts, the `metrics.jsonl`
//! log, the error of a stopped run, and model selection with early stopping.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result, ensure};
use serde::Serialize;

use crate::config::{RESUMABLE_KEYS, TrainConfig};
use crate::metrics::Metrics;
use crate::trainer::Best;

/// Checks the config differences `(key, was, now)` of a resumed run in `out`: keys outside
/// [`RESUMABLE_KEYS`] are refused by name; the accepted changes come back as notes.
pub(crate) fn resume_changes(
    out: &Path,
    what: &str,
    diffs: &[(String, String, String)],
) -> Result<Vec<String>> {
    let refused: Vec<String> = diffs
        .iter()
        .filter(|(k, _, _)| !RESUMABLE_KEYS.contains(&k.as_str()))
        .map(|(k, a, b)| format!("{k} ({a} → {b})"))
        .collect();
    ensure!(
        refused.is_empty(),
        "cannot resume {}: the run was {what} with other settings of {}; a resumed run may change \
         only {} (start a new run, or --force to replace this one)",
        out.display(),
        refused.join(", "),
        RESUMABLE_KEYS.join(", ")
    );
    Ok(diffs
        .iter()
        .map(|(k, a, b)| format!("resume: {k} changed from {a} to {b}"))
        .collect())
}

/// Rewrites `metrics.jsonl` from a checkpoint's history, so a crash between a log line and its
/// checkpoint leaves no stray line behind.
pub(crate) fn rewrite_log<T: Serialize>(path: &Path, epochs: &[T]) -> Result<()> {
    let mut lines = String::new();
    for e in epochs {
        lines.push_str(&serde_json::to_string(e)?);
        lines.push('\n');
    }
    traj_data::atomic_write(path, lines.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

/// Appends one epoch to `metrics.jsonl`.
pub(crate) fn append_log<T: Serialize>(path: &Path, epoch: &T) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    writeln!(f, "{}", serde_json::to_string(epoch)?)
        .with_context(|| format!("writing {}", path.display()))
}

/// The error of a run stopped before a bad step: what happened, and the checkpoint that loads
/// and resumes.
pub(crate) fn stopped(checkpoint: &Path, epochs: usize, what: String) -> anyhow::Error {
    anyhow::anyhow!(
        "{what}; training stopped before taking that step. The last good checkpoint, {} \
         (epoch {epochs}), loads and resumes: continue with --resume (a lower --set \
         train.adam.lr=… is allowed)",
        checkpoint.display()
    )
}

/// Model selection and early stopping, as a checkpoint's history carries them.
pub(crate) struct Selection<'a, M = Metrics> {
    /// The best validation so far.
    pub best: &'a mut Option<Best<M>>,
    /// Validations since the best one.
    pub stale_evals: &'a mut usize,
    /// Set when early stopping ends the run.
    pub stopped_early: &'a mut Option<String>,
}

impl Selection<'_> {
    /// Records the validation `m` of 1-based `epoch` (`last`: the run's final epoch), scored by
    /// `train.select`; true when it is the best so far (the caller saves `best.safetensors`).
    pub fn record(&mut self, t: &TrainConfig, m: Metrics, epoch: usize, last: bool) -> bool {
        let score = t.select.of(&m);
        self.record_score(t, &format!("{:?}", t.select), score, m, epoch, last)
    }
}

impl<M> Selection<'_, M> {
    /// Records a validation `m` whose selection score (lower is better) is `score`, named
    /// `metric` in the early-stopping message; true when it is the best so far.
    pub fn record_score(
        &mut self,
        t: &TrainConfig,
        metric: &str,
        score: f64,
        m: M,
        epoch: usize,
        last: bool,
    ) -> bool {
        if self.best.as_ref().is_none_or(|b| score < b.score) {
            *self.best = Some(Best {
                score,
                epoch,
                val: m,
            });
            *self.stale_evals = 0;
            return true;
        }
        *self.stale_evals += 1;
        if t.patience > 0 && *self.stale_evals >= t.patience && !last {
            *self.stopped_early = Some(format!(
                "early stopping after epoch {epoch}: no better validation {metric} in {} evaluations",
                t.patience
            ));
        }
        false
    }
}
