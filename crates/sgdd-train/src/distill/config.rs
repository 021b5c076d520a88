//! The config of a distillation run: `[data]` and `[train]` as in a training run, `[student]`
//! (the light model to train) and `[distill]` (teachers, loss, weighting, initialisation).
//! Checked once, at the edge ([`DistillConfig::check`]); every error names its key.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
use distill_kd::Weighting;
use serde::{Deserialize, Serialize};

use crate::config::{self, DataConfig, ModelConfig, ModelKind, RunConfig, TrainConfig};

/// A whole distillation run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DistillConfig {
    /// Which data, which windows (as in a training run; the teachers must have been trained on
    /// the same windows and node features).
    pub data: DataConfig,
    /// The student.
    #[serde(default)]
    pub student: StudentConfig,
    /// Teachers and the distillation objective.
    #[serde(default)]
    pub distill: KdConfig,
    /// How to train the student (as in a training run).
    #[serde(default)]
    pub train: TrainConfig,
}

/// See [`StudentConfig::kind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StudentArch {
    /// A small EGNO (equivariant).
    Egno,
    /// SDKD's MLP student: a non-equivariant MLP over the flattened initial state
    /// (`[x_0, v_0, h]` of every node) whose linear readout predicts every frame's
    /// displacement from `x_0`.
    Mlp,
}

/// The light model the teachers teach.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StudentConfig {
    /// `egno` or `mlp`.
    pub kind: StudentArch,
    /// Hidden width.
    pub hidden: i64,
    /// EGNO layers, or MLP hidden layers.
    pub layers: i64,
    /// EGNO: temporal Fourier modes.
    pub num_modes: i64,
}

impl Default for StudentConfig {
    fn default() -> Self {
        Self {
            kind: StudentArch::Egno,
            hidden: 16,
            layers: 2,
            num_modes: 2,
        }
    }
}

impl StudentConfig {
    /// The model config of an EGNO student.
    pub fn egno(&self) -> ModelConfig {
        ModelConfig {
            kind: ModelKind::Egno,
            hidden: self.hidden,
            decoder_layers: self.layers,
            num_modes: self.num_modes,
            ..Default::default()
        }
    }
}

/// See [`KdConfig::loss`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KdLoss {
    /// No distillation: the student alone, `‖S(X) − Y‖²` (the baseline).
    None,
    /// Plain output KD: `MSE(S(X), T(X))`.
    Output,
    /// Frequency-aligned KD (SDKD eq. 10) on the predicted trajectories.
    Freq,
}

/// See [`KdConfig::bands`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BandsKind {
    /// The joint spatio-temporal graph basis (SPEC §4.2) of the dataset's graph over the
    /// predicted frames: the `k` lowest joint modes (cut at an eigenvalue gap) are the low band.
    Joint,
    /// A DFT along time: frequencies `|f| ≤ time_cutoff` are the low band.
    TimeDft,
    /// Grids: a DFT over time and both grid axes, the low band `|f_t| ≤ time_cutoff` and
    /// `|k_x|, |k_y| ≤ space_cutoff` (SPEC §4.5 "a DFT cutoff along time and space for grids").
    Dft,
}

/// See [`KdConfig::init`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InitKind {
    /// The seed's random initialisation.
    Random,
    /// The readout solved in closed form (seed 002) before gradient training: the MLP
    /// student's linear readout, the EGNO student's last coordinate heads, a grid net's
    /// pointwise readout.
    Ridge,
}

/// Teachers and the distillation objective `‖S(X) − Y‖² + λ Σ_m α_m L_KD(S, T_m)` (SDKD eq. 11
/// and 12–14).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KdConfig {
    /// Checkpoints of the trained teachers (any model kind; `sgdd distill --teacher`), frozen.
    pub teachers: Vec<PathBuf>,
    /// `none` (the student alone), `output` (MSE to the teacher's prediction) or `freq`
    /// (frequency-aligned, SDKD eq. 10).
    pub loss: KdLoss,
    /// λ of eq. 11.
    pub lambda: f64,
    /// α of eq. 10: the weight of the low band against the high band.
    pub alpha: f64,
    /// The band split of `freq`: `joint` or `time-dft`.
    pub bands: BandsKind,
    /// `joint`: joint modes in the low band (lowered to an eigenvalue gap).
    pub k: usize,
    /// `time-dft`, `dft`: the cutoff frequency in time (cycles over the predicted frames).
    pub time_cutoff: usize,
    /// `dft` (grids): the cutoff wavenumber along each grid axis.
    pub space_cutoff: usize,
    /// How several teachers are weighted each step: `a2d` (SDKD eq. 13 on the Gram matrix of
    /// the teachers' KD-loss gradients with respect to the student's parameters) or `average`
    /// (AVER-MKD).
    pub weighting: Weighting,
    /// A2D's cap `C ∈ (0, 1]` on every weight (`C · teachers ≥ 1`).
    pub cap: f64,
    /// A2D: solve for the weights on unit-normalised gradients, so they weigh the teachers'
    /// directions (a teacher whose direction conflicts with the others' gets less) rather than
    /// their magnitudes (the plain min-norm point favours the smallest gradient); the student
    /// still descends along `Σ α_m g_m` of the raw gradients.
    pub a2d_normalise: bool,
    /// `random` or `ridge` (the student's readout solved in closed form onto a teacher's
    /// predictions before gradient training; see [`InitKind::Ridge`]).
    pub init: InitKind,
    /// Relative ridge penalty (`λ · mean diag XᵀX`).
    pub ridge_lambda: f64,
    /// Which teacher (index into `teachers`) the ridge initialisation fits.
    pub ridge_teacher: usize,
    /// β of the hidden-state KD `β ‖A(h_S) − h_T‖²` (mean over elements) between the student's
    /// and teacher `hidden_teacher`'s readout inputs, through a learned linear adapter `A` when
    /// their widths differ (the identity otherwise); 0: off. Grid runs.
    pub hidden_weight: f64,
    /// Which teacher the hidden-state KD aligns with.
    pub hidden_teacher: usize,
}

impl Default for KdConfig {
    fn default() -> Self {
        Self {
            teachers: Vec::new(),
            loss: KdLoss::Freq,
            lambda: 1.0,
            alpha: 1.0,
            bands: BandsKind::Joint,
            k: 10,
            time_cutoff: 1,
            space_cutoff: 4,
            weighting: Weighting::A2d,
            cap: 1.0,
            a2d_normalise: false,
            init: InitKind::Random,
            ridge_lambda: 1e-3,
            ridge_teacher: 0,
            hidden_weight: 0.0,
            hidden_teacher: 0,
        }
    }
}

impl KdConfig {
    /// The checks every kind of distillation run makes of `[distill]`, naming the key.
    pub fn check(&self) -> Result<()> {
        let k = self;
        for (key, v) in [("distill.lambda", k.lambda), ("distill.alpha", k.alpha)] {
            ensure!(
                v >= 0.0 && v.is_finite(),
                "{key} must be a finite number ≥ 0, got {v}"
            );
        }
        ensure!(
            k.ridge_lambda >= 0.0 && k.ridge_lambda.is_finite(),
            "distill.ridge_lambda must be a finite number ≥ 0, got {}",
            k.ridge_lambda
        );
        ensure!(k.k >= 1, "distill.k must be ≥ 1");
        let m = k.teachers.len();
        ensure!(
            k.loss == KdLoss::None || m >= 1,
            "distill.loss = \"{}\" needs at least one teacher (distill.teachers, or --teacher)",
            match k.loss {
                KdLoss::None => "none",
                KdLoss::Output => "output",
                KdLoss::Freq => "freq",
            }
        );
        ensure!(
            k.cap > 0.0 && k.cap <= 1.0,
            "distill.cap must be in (0, 1], got {}",
            k.cap
        );
        ensure!(
            k.weighting != Weighting::A2d || m == 0 || k.cap * m as f64 >= 1.0 - 1e-12,
            "distill.cap = {} is infeasible for {m} teachers: the weights sum to 1, so C · M must \
             be ≥ 1 (C ≥ {:.4})",
            k.cap,
            1.0 / m as f64
        );
        ensure!(
            k.hidden_weight >= 0.0 && k.hidden_weight.is_finite(),
            "distill.hidden_weight must be a finite number ≥ 0, got {}",
            k.hidden_weight
        );
        ensure!(
            k.hidden_weight == 0.0 || k.hidden_teacher < m,
            "distill.hidden_teacher = {} but there are {m} teachers",
            k.hidden_teacher
        );
        ensure!(
            k.init != InitKind::Ridge || k.ridge_teacher < m,
            "distill.ridge_teacher = {} but there are {m} teachers",
            k.ridge_teacher
        );
        Ok(())
    }
}

impl DistillConfig {
    /// Parses TOML text, applies `key.path=value` overrides, and checks the result.
    pub fn from_toml(text: &str, overrides: &[String]) -> Result<CheckedDistillConfig> {
        Self::parse(text, overrides)?.check()
    }

    /// Parses and applies overrides without checking the values.
    pub fn parse(text: &str, overrides: &[String]) -> Result<Self> {
        config::parse_toml(text, overrides)
    }

    /// Reads a config file (see [`DistillConfig::from_toml`]).
    pub fn load(path: &Path, overrides: &[String]) -> Result<CheckedDistillConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config {}", path.display()))?;
        Self::from_toml(&text, overrides).with_context(|| format!("config {}", path.display()))
    }

    /// The TOML text of this config.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("configs serialise")
    }

    /// Rejects settings that cannot run, naming the key.
    pub fn check(self) -> Result<CheckedDistillConfig> {
        let (s, k) = (&self.student, &self.distill);
        for (key, v) in [
            ("student.hidden", s.hidden),
            ("student.layers", s.layers),
            ("student.num_modes", s.num_modes),
        ] {
            ensure!(v >= 1, "{key} must be ≥ 1, got {v}");
        }
        ensure!(
            self.train.on_divergence == config::OnDivergence::Error,
            "train.on_divergence = \"stop\" ends `sgdd train` runs; a distillation stops with an \
             error at a divergence (leave it at \"error\")"
        );
        // [data] and [train] as a training run checks them (same keys)
        RunConfig {
            data: self.data.clone(),
            model: s.egno(),
            train: self.train.clone(),
        }
        .check()?;
        k.check()?;
        ensure!(
            k.hidden_weight == 0.0,
            "distill.hidden_weight: the hidden-state KD aligns grid nets' readout inputs \
             (`sgdd distill-grid`); particle students have no such option yet"
        );
        ensure!(
            k.bands != BandsKind::Dft,
            "distill.bands = \"dft\" (space and time) is for grid data; particle runs use \
             \"joint\" or \"time-dft\""
        );
        Ok(CheckedDistillConfig(self))
    }
}

/// A [`DistillConfig`] whose values passed [`DistillConfig::check`]; read it through `Deref`.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedDistillConfig(DistillConfig);

impl std::ops::Deref for CheckedDistillConfig {
    type Target = DistillConfig;
    fn deref(&self) -> &DistillConfig {
        &self.0
    }
}

impl CheckedDistillConfig {
    /// The config, to change it (it must be checked again).
    pub fn into_inner(self) -> DistillConfig {
        self.0
    }

    /// The keys (`section.key`) whose values differ from `other`'s, with both values as TOML.
    pub fn differences(&self, other: &DistillConfig) -> Vec<(String, String, String)> {
        config::differences(other, &self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str = "[data]\ndir = \"d\"\n[distill]\nteachers = [\"a\", \"b\", \"c\"]\n";

    fn err(set: &[&str]) -> String {
        let set: Vec<String> = set.iter().map(|s| (*s).to_owned()).collect();
        format!("{:#}", DistillConfig::from_toml(MIN, &set).unwrap_err())
    }

    #[test]
    fn round_trip_and_overrides() {
        let c = DistillConfig::from_toml(MIN, &["student.kind=\"mlp\"".into()]).unwrap();
        assert_eq!(c.student.kind, StudentArch::Mlp);
        assert_eq!(c.distill.teachers.len(), 3);
        assert_eq!(DistillConfig::from_toml(&c.to_toml(), &[]).unwrap(), c);
    }

    /// Every invalid value is an error naming its key, type errors and unknown keys included.
    #[test]
    fn invalid_values_name_their_key() {
        for (set, key) in [
            ("student.hidden=0", "student.hidden"),
            ("student.kind=\"cnn\"", "student.kind"),
            ("distill.lambda=-1.0", "distill.lambda"),
            ("distill.alpha=\"big\"", "distill.alpha"),
            ("distill.cap=0.2", "distill.cap"),
            ("distill.cap=1.5", "distill.cap"),
            ("distill.k=0", "distill.k"),
            ("distill.init=\"lasso\"", "distill.init"),
            ("distill.weighting=\"max\"", "distill.weighting"),
            ("distill.lossy=1", "lossy"),
            ("train.epochs=0", "train.epochs"),
            ("data.delta_frame=2", "data.delta_frame"),
        ] {
            let e = err(&[set]);
            assert!(e.contains(key), "{set}: {e}");
        }
        let e = err(&["distill.init=\"ridge\"", "distill.ridge_teacher=3"]);
        assert!(e.contains("distill.ridge_teacher"), "{e}");
        // an infeasible cap says what C must be
        assert!(err(&["distill.cap=0.25"]).contains("C ≥ 0.3333"));
        let e = format!(
            "{:#}",
            DistillConfig::from_toml("[data]\ndir = \"d\"\n", &[]).unwrap_err()
        );
        assert!(e.contains("at least one teacher"), "{e}");
        // the student alone needs no teacher
        DistillConfig::from_toml("[data]\ndir = \"d\"\n", &["distill.loss=\"none\"".into()])
            .unwrap();
    }
}
