//! Run configuration: one TOML file (`[data]`, `[model]`, `[train]`), unknown keys rejected,
//! every key also settable on the command line with `--set section.key=value`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use serde::{Deserialize, Serialize};

use crate::optim::AdamConfig;

/// A whole run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Which data, which windows.
    pub data: DataConfig,
    /// Which model.
    #[serde(default)]
    pub model: ModelConfig,
    /// How to train.
    #[serde(default)]
    pub train: TrainConfig,
}

/// The dataset and the windows cut from it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// A dataset directory (`manifest.json` and `train/val/test.safetensors`).
    pub dir: PathBuf,
    /// The condition frame (EGNO's `frame_0`; N-body: 30).
    #[serde(default = "default_start")]
    pub start_frame: usize,
    /// Horizon: the last target is `start_frame + delta_frame` (N-body: 10).
    #[serde(default = "default_delta")]
    pub delta_frame: usize,
    /// Predicted frames T, evenly spaced up to the horizon (N-body: 5).
    #[serde(default = "default_targets")]
    pub num_targets: usize,
    /// Which frames up to the horizon are targets: `strided` (EGNO N-body, protein) or
    /// `consecutive` (EGNO motion capture).
    #[serde(default = "default_targets_kind")]
    pub targets: TargetsKind,
    /// Where windows start: `fixed` (at `start_frame` in every trajectory), `sliding` (every
    /// `stride` frames) or `metadata` (each trajectory's `start_frames`, as the mocap import
    /// records EGNO's split).
    #[serde(default = "default_starts_kind")]
    pub starts: StartsKind,
    /// Step between sliding windows.
    #[serde(default = "default_stride")]
    pub stride: usize,
    /// Use at most this many training trajectories (all when absent).
    #[serde(default)]
    pub max_train: Option<usize>,
    /// Use at most this many validation/test trajectories (all when absent).
    #[serde(default)]
    pub max_eval: Option<usize>,
}

/// See [`DataConfig::targets`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TargetsKind {
    /// `T` frames evenly spaced up to the horizon.
    Strided,
    /// The last `T` frames up to the horizon.
    Consecutive,
}

/// See [`DataConfig::starts`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StartsKind {
    /// `start_frame` in every trajectory.
    Fixed,
    /// Every `stride` frames.
    Sliding,
    /// Each trajectory's metadata `start_frames`.
    Metadata,
}

fn default_targets_kind() -> TargetsKind {
    TargetsKind::Strided
}
fn default_starts_kind() -> StartsKind {
    StartsKind::Fixed
}
fn default_stride() -> usize {
    1
}
fn default_start() -> usize {
    30
}
fn default_delta() -> usize {
    10
}
fn default_targets() -> usize {
    5
}

/// Which model to train.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    /// Extrapolate `x_0 + v_0·t` (no training).
    ConstVel,
    /// Predict the initial positions at every target time (no training): the baseline that
    /// matters for vibrating molecules and proteins, whose instantaneous velocity says little
    /// about where an atom is thousands of steps later.
    Static,
    /// The plain EGNO decoder (no encoders).
    Egno,
    /// SGDD-EGNO: teacher STSGNN, student GAT, SGE, EGNO decoder, alignment.
    Sgdd,
}

/// Model settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// `const-vel`, `static`, `egno` or `sgdd`.
    pub kind: ModelKind,
    /// Hidden width of every network.
    pub hidden: i64,
    /// EGNO decoder layers.
    pub decoder_layers: i64,
    /// Temporal Fourier modes of the decoder.
    pub num_modes: i64,
    /// Width of the representation `z` (SGDD).
    pub z_dim: i64,
    /// Teacher (STSGNN) layers.
    pub teacher_layers: i64,
    /// Student (GAT) layers.
    pub student_layers: i64,
    /// GAT heads.
    pub heads: i64,
    /// Number of joint spectral basis vectors K (SGDD).
    pub k: usize,
    /// Apply SGE (learnable spectral weights); off: `z^sg = z` (ablation).
    pub sge: bool,
    /// Weight λ of the alignment loss.
    pub lambda: f64,
    /// Representation alignment `L_rep` (ablation switch).
    pub align_rep: bool,
    /// Spectral alignment `L_spec` (ablation switch).
    pub align_spec: bool,
    /// Fraction of iterations with teacher forcing ratio 1 (stage 1).
    pub stage1_fraction: f64,
    /// Teacher forcing ratio after stage 1.
    pub stage2_ratio: f64,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            kind: ModelKind::Sgdd,
            hidden: 64,
            decoder_layers: 4,
            num_modes: 2,
            z_dim: 32,
            teacher_layers: 2,
            student_layers: 2,
            heads: 4,
            k: 10,
            sge: true,
            lambda: 1.0,
            align_rep: true,
            align_spec: true,
            stage1_fraction: 1.0 / 3.0,
            stage2_ratio: 0.5,
        }
    }
}

/// Training settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Passes over the training windows.
    pub epochs: usize,
    /// Windows per step.
    pub batch_size: usize,
    /// Optimiser.
    pub adam: AdamConfig,
    /// Seed of weights, data order and teacher forcing.
    pub seed: u64,
    /// Evaluate on the validation split every this many epochs (and at the end).
    pub eval_every: usize,
    /// `auto`, `cpu`, `cuda` or `cuda:N`.
    pub device: String,
    /// CPU threads for libtorch (0: libtorch's default, one per core). Small models train
    /// faster on 1, and much faster on a machine where other processes hold cores.
    pub threads: i32,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 100,
            batch_size: 100,
            adam: AdamConfig::default(),
            seed: 0,
            eval_every: 5,
            device: "auto".to_owned(),
            threads: 0,
        }
    }
}

impl RunConfig {
    /// Parses TOML text, then applies `key.path=value` overrides (values parsed as TOML, else
    /// taken as strings). Unknown keys are errors that name the key.
    pub fn from_toml(text: &str, overrides: &[String]) -> Result<Self> {
        let mut table: toml::Table = text.parse().context("config is not valid TOML")?;
        for o in overrides {
            set_key(&mut table, o)?;
        }
        let merged = toml::to_string(&table)?;
        let cfg: RunConfig =
            toml::from_str(&merged).map_err(|e| anyhow::anyhow!("{}", e.message()))?;
        cfg.check()?;
        Ok(cfg)
    }

    /// Reads a config file (see [`RunConfig::from_toml`]).
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config {}", path.display()))?;
        Self::from_toml(&text, overrides).with_context(|| format!("config {}", path.display()))
    }

    /// The TOML text of this config.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("configs serialise")
    }

    /// Rejects settings that cannot run.
    pub fn check(&self) -> Result<()> {
        let (d, m, t) = (&self.data, &self.model, &self.train);
        ensure!(
            d.num_targets >= 1 && d.delta_frame >= d.num_targets,
            "data.delta_frame must be ≥ data.num_targets ≥ 1"
        );
        ensure!(t.batch_size >= 1, "train.batch_size must be ≥ 1");
        ensure!(d.stride >= 1, "data.stride must be ≥ 1");
        ensure!(t.eval_every >= 1, "train.eval_every must be ≥ 1");
        ensure!(
            t.adam.lr > 0.0 && t.adam.lr.is_finite(),
            "train.adam.lr must be > 0"
        );
        ensure!(
            m.hidden >= 1 && m.z_dim >= 1 && m.decoder_layers >= 1,
            "model sizes must be ≥ 1"
        );
        ensure!(m.k >= 1, "model.k must be ≥ 1");
        ensure!(
            (0.0..=1.0).contains(&m.stage1_fraction),
            "model.stage1_fraction must be in [0, 1]"
        );
        ensure!(
            (0.0..=1.0).contains(&m.stage2_ratio),
            "model.stage2_ratio must be in [0, 1]"
        );
        t.device
            .parse::<crate::DeviceChoice>()
            .map_err(|e| anyhow::anyhow!("train.device: {e}"))?;
        Ok(())
    }
}

fn set_key(table: &mut toml::Table, assignment: &str) -> Result<()> {
    let Some((key, raw)) = assignment.split_once('=') else {
        bail!("--set expects key=value, got `{assignment}`");
    };
    let value = format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()));
    let parts: Vec<&str> = key.trim().split('.').collect();
    ensure!(
        parts.iter().all(|p| !p.is_empty()),
        "--set: bad key `{key}`"
    );
    let mut cur = table;
    for p in &parts[..parts.len() - 1] {
        cur = cur
            .entry((*p).to_owned())
            .or_insert_with(|| toml::Value::Table(Default::default()))
            .as_table_mut()
            .ok_or_else(|| anyhow::anyhow!("--set {key}: `{p}` is not a table"))?;
    }
    cur.insert(parts[parts.len() - 1].to_owned(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str = "[data]\ndir = \"d\"\n";

    #[test]
    fn defaults_and_overrides() {
        let c = RunConfig::from_toml(MIN, &[]).unwrap();
        assert_eq!(c.model.kind, ModelKind::Sgdd);
        let c = RunConfig::from_toml(
            MIN,
            &[
                "model.kind=egno".into(),
                "train.adam.lr=0.01".into(),
                "train.device=cpu".into(),
            ],
        )
        .unwrap();
        assert_eq!(c.model.kind, ModelKind::Egno);
        assert_eq!(c.train.adam.lr, 0.01);
        assert_eq!(c.train.device, "cpu");
        assert_eq!(RunConfig::from_toml(&c.to_toml(), &[]).unwrap(), c);
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = RunConfig::from_toml(&format!("{MIN}[model]\nhiden = 3\n"), &[]).unwrap_err();
        assert!(format!("{err:#}").contains("hiden"), "{err:#}");
        let err = RunConfig::from_toml(MIN, &["train.epoch=3".into()]).unwrap_err();
        assert!(format!("{err:#}").contains("epoch"), "{err:#}");
        let err = RunConfig::from_toml(MIN, &["train.device=tpu".into()]).unwrap_err();
        assert!(format!("{err:#}").contains("tpu"), "{err:#}");
    }
}
