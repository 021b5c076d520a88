//! Distillation on grids, SDKD's own setting (SPEC §4.8): `T_in` vorticity frames of a 2-D
//! Navier–Stokes dataset (`traj_data::grid`) in, the next `T_out` frames out, a [`GridNet`]
//! trained alone (`distill.loss = "none"`: how the teachers are trained too) or taught by frozen
//! grid teachers (checkpoints of such runs) with the objective of the particle [`Distiller`]
//! (`‖S(X) − Y‖² + λ Σ_m α_m L_KD`), the frequency-aligned `L_KD` over a DFT in time and both
//! grid axes (`distill.bands = "dft"`), A2D or average weighting, and the readout optionally
//! solved in closed form onto a teacher's predictions (`distill.init = "ridge"`). Optionally the
//! readout inputs are aligned too (`distill.hidden_weight = β`: `β ‖A(h_S) − h_T‖²`, `A` a
//! learned linear adapter when the widths differ).
//!
//! A run directory holds what a particle distillation run's does (`config.toml`, `metrics.jsonl`,
//! checkpoints, `result.json`, `timing.json`, `tensorboard/`), with the same guarantees.
//! Fields are standardised by the training inputs' mean and standard deviation; metrics are in
//! the original units: MSE and FNO's relative L2 (`‖ŷ − y‖ / ‖y‖` per sample over all predicted
//! frames, averaged). Model selection uses the validation MSE.
//!
//! [`Distiller`]: super::Distiller

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
use distill_kd::{BandSplitter, DftSplitterConfig, RidgeConfig, Weighting};
use graph_nets::{GridNet, GridNetConfig};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor, nn, nn::VarStore};
use traj_data::Split;
use traj_data::grid::{GridSplit, load_grid_split};

use super::run::{self, KdRun, OpenRun, Pieces, ValMetrics, timed};
use super::teachers::same_dataset;
use super::{
    BandsKind, DistillEpochLog, DistillOptions, DistillStep, DistillTiming, InitKind, Kd, KdConfig,
    KdLoss,
};
use crate::checkpoint;
use crate::config::{self, TrainConfig};
use crate::trainer::{dataset_fingerprint, seeded_on_cpu};

/// Which grid data, which windows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GridDataConfig {
    /// A grid dataset directory (`sgdd data navier-stokes`).
    pub dir: PathBuf,
    /// Input frames.
    #[serde(default = "ten")]
    pub t_in: usize,
    /// Predicted frames.
    #[serde(default = "ten")]
    pub t_out: usize,
    /// Frames between the starts of consecutive windows of a sequence; 0: one window per
    /// sequence, from its first frame.
    #[serde(default)]
    pub stride: usize,
    /// At most this many training windows (the first ones).
    #[serde(default)]
    pub max_train: Option<usize>,
    /// At most this many validation and test windows.
    #[serde(default)]
    pub max_eval: Option<usize>,
}

fn ten() -> usize {
    10
}

/// A grid run: `[data]`, `[model]` (the net trained: the student, or a teacher trained alone),
/// `[distill]` (as a particle distillation run's, with `bands = "dft"` or `"time-dft"`) and
/// `[train]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GridDistillConfig {
    /// Data and windows.
    pub data: GridDataConfig,
    /// The net to train (`t_in`, `t_out` are taken from `[data]`).
    #[serde(default)]
    pub model: GridNetConfig,
    /// Teachers and the distillation objective.
    #[serde(default)]
    pub distill: KdConfig,
    /// How to train.
    #[serde(default)]
    pub train: TrainConfig,
}

impl GridDistillConfig {
    /// Parses TOML text, applies `key.path=value` overrides, and checks the result.
    pub fn from_toml(text: &str, overrides: &[String]) -> Result<CheckedGridConfig> {
        Self::parse(text, overrides)?.check()
    }

    /// Parses and applies overrides without checking the values.
    pub fn parse(text: &str, overrides: &[String]) -> Result<Self> {
        let mut c: Self = config::parse_toml(text, overrides)?;
        c.model.t_in = c.data.t_in as i64;
        c.model.t_out = c.data.t_out as i64;
        Ok(c)
    }

    /// Reads a config file (see [`GridDistillConfig::from_toml`]).
    pub fn load(path: &Path, overrides: &[String]) -> Result<CheckedGridConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config {}", path.display()))?;
        Self::from_toml(&text, overrides).with_context(|| format!("config {}", path.display()))
    }

    /// The TOML text of this config.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("configs serialise")
    }

    /// Rejects settings that cannot run, naming the key.
    pub fn check(self) -> Result<CheckedGridConfig> {
        let (d, k) = (&self.data, &self.distill);
        ensure!(d.t_in >= 1, "data.t_in must be ≥ 1");
        ensure!(d.t_out >= 1, "data.t_out must be ≥ 1");
        ensure!(d.max_train != Some(0), "data.max_train must be ≥ 1");
        ensure!(d.max_eval != Some(0), "data.max_eval must be ≥ 1");
        self.model
            .check()
            .map_err(|e| anyhow::anyhow!("model: {e}"))?;
        ensure!(self.train.epochs >= 1, "train.epochs must be ≥ 1");
        self.train.check()?;
        k.check()?;
        ensure!(
            k.loss != KdLoss::Freq || k.bands != BandsKind::Joint,
            "distill.bands = \"joint\" is the particle graph basis; a grid run uses \"dft\" \
             (time and space) or \"time-dft\""
        );
        Ok(CheckedGridConfig(self))
    }
}

/// A [`GridDistillConfig`] that passed [`GridDistillConfig::check`]; read it through `Deref`.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedGridConfig(GridDistillConfig);

impl std::ops::Deref for CheckedGridConfig {
    type Target = GridDistillConfig;
    fn deref(&self) -> &GridDistillConfig {
        &self.0
    }
}

/// Metrics of a grid forecaster on a split, in the data's units.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GridMetrics {
    /// Windows evaluated.
    pub samples: usize,
    /// Mean squared error over every predicted value.
    pub mse: f64,
    /// FNO's relative L2: `‖ŷ − y‖ / ‖y‖` per window (all predicted frames), averaged.
    pub rel_l2: f64,
}

/// The windows of a split, standardised.
#[derive(Debug)]
pub struct GridWindows {
    /// Inputs `[S, T_in, n, n]` (CPU, f32).
    pub x: Tensor,
    /// Targets `[S, T_out, n, n]` (CPU, f32).
    pub y: Tensor,
}

impl GridWindows {
    /// Cuts the windows of `grid` (see [`GridDataConfig::stride`]), at most `max` of them.
    fn cut(grid: &GridSplit, d: &GridDataConfig, max: Option<usize>) -> Result<Self> {
        let (f, n) = (grid.frames(), grid.resolution() as i64);
        let len = d.t_in + d.t_out;
        ensure!(
            len <= f,
            "data.t_in + data.t_out = {len} frames, but the sequences of {} have {f}",
            d.dir.display()
        );
        let starts: Vec<usize> = if d.stride == 0 {
            vec![0]
        } else {
            (0..=f - len).step_by(d.stride).collect()
        };
        let all = Tensor::from_slice(grid.values()).view([grid.samples() as i64, f as i64, n, n]);
        let mut windows = Vec::new();
        for s in 0..grid.samples() as i64 {
            for &t in &starts {
                windows.push(all.get(s).narrow(0, t as i64, len as i64));
            }
        }
        windows.truncate(max.unwrap_or(usize::MAX));
        ensure!(!windows.is_empty(), "{}: no windows", d.dir.display());
        let w = Tensor::stack(&windows, 0);
        Ok(Self {
            x: w.narrow(1, 0, d.t_in as i64),
            y: w.narrow(1, d.t_in as i64, d.t_out as i64),
        })
    }

    /// Number of windows.
    pub fn samples(&self) -> i64 {
        self.x.size()[0]
    }
}

/// The three splits of a grid run and the standardisation.
#[derive(Debug)]
struct GridData {
    train: GridWindows,
    val: GridWindows,
    test: GridWindows,
    mean: f64,
    std: f64,
}

impl GridData {
    fn load(d: &GridDataConfig) -> Result<Self> {
        let load = |split: Split, max| -> Result<GridWindows> {
            let g = load_grid_split(&d.dir, split)
                .with_context(|| format!("the {split:?} split of {}", d.dir.display()))?;
            GridWindows::cut(&g, d, max)
        };
        let (mut train, mut val, mut test) = (
            load(Split::Train, d.max_train)?,
            load(Split::Val, d.max_eval)?,
            load(Split::Test, d.max_eval)?,
        );
        let mean = train.x.mean(Kind::Double).double_value(&[]);
        let std = train.x.std(true).double_value(&[]).max(1e-12);
        for w in [&mut train, &mut val, &mut test] {
            w.x = (&w.x - mean) / std;
            w.y = (&w.y - mean) / std;
        }
        Ok(Self {
            train,
            val,
            test,
            mean,
            std,
        })
    }

    /// Scores `predict` (standardised in and out) on `w`, batch by batch, in the data's units.
    fn metrics(
        &self,
        w: &GridWindows,
        batch_size: usize,
        device: Device,
        predict: &dyn Fn(&Tensor) -> Result<Tensor>,
    ) -> Result<GridMetrics> {
        let _guard = tch::no_grad_guard();
        let (mut se, mut rel, mut values) = (0.0, 0.0, 0.0);
        let s = w.samples();
        for start in (0..s).step_by(batch_size.max(1)) {
            let b = (batch_size as i64).min(s - start);
            let x = w.x.narrow(0, start, b).to_device(device);
            let y = w.y.narrow(0, start, b).to_device(device) * self.std;
            let err = (predict(&x)? * self.std - &y).to_kind(Kind::Double);
            se += err.square().sum(Kind::Double).double_value(&[]);
            values += err.numel() as f64;
            let norm = |t: &Tensor| {
                t.to_kind(Kind::Double)
                    .reshape([b, -1])
                    .norm_scalaropt_dim(2, [1], false)
            };
            // the mean cancels in the error but not in ‖y‖: the data's own values
            let y_orig = y + self.mean;
            rel += (norm(&err) / norm(&y_orig).clamp_min(1e-30))
                .sum(Kind::Double)
                .double_value(&[]);
        }
        Ok(GridMetrics {
            samples: s as usize,
            mse: se / values,
            rel_l2: rel / s as f64,
        })
    }
}

/// A trained grid net used as a teacher, frozen, with its predictions of the training windows
/// computed once.
#[derive(Debug)]
pub struct GridTeacher {
    /// The checkpoint it was loaded from.
    pub checkpoint: PathBuf,
    /// Its net's settings.
    pub model: GridNetConfig,
    /// The sha256 of its tensors.
    pub tensors_sha256: String,
    /// Its variables, frozen.
    pub vs: VarStore,
    /// The net.
    pub net: GridNet,
    /// Its predictions of the training windows, `[S, T_out, n, n]` (standardised, CPU).
    train_pred: Tensor,
}

impl GridTeacher {
    /// Loads a checkpoint of a grid run trained on the same data and windows.
    fn load(
        path: &Path,
        cfg: &GridDistillConfig,
        data: &GridData,
        dataset_sha256: Option<&str>,
        device: Device,
    ) -> Result<Self> {
        let (_, meta) = checkpoint::load(path)?;
        let tcfg = GridDistillConfig::parse(&meta.config, &[])
            .with_context(|| format!("teacher {}: the config stored in it", path.display()))?;
        let (a, b) = (&tcfg.data, &cfg.data);
        ensure!(
            (a.t_in, a.t_out, a.stride) == (b.t_in, b.t_out, b.stride),
            "teacher {} was trained on other windows (t_in {}, t_out {}, stride {}) than this \
             run's [data] ({}, {}, {})",
            path.display(),
            a.t_in,
            a.t_out,
            a.stride,
            b.t_in,
            b.t_out,
            b.stride
        );
        same_dataset(path, meta.dataset_sha256.as_deref(), dataset_sha256, &b.dir)?;
        let mut vs = VarStore::new(device);
        let net = tcfg.model.build(vs.root() / "net")?;
        checkpoint::restore(path, &mut vs, None)
            .with_context(|| format!("teacher {}", path.display()))?;
        vs.freeze();
        let train_pred = predictions(&net, &data.train, cfg.train.batch_size, device)
            .with_context(|| format!("teacher {}", path.display()))?;
        Ok(Self {
            checkpoint: path.to_owned(),
            model: tcfg.model.clone(),
            tensors_sha256: meta.tensors_sha256,
            vs,
            net,
            train_pred,
        })
    }

    /// Its predictions of training windows `idx`, `[B, T_out, n, n]` on `device`.
    pub fn train_targets(&self, idx: &[i64], device: Device) -> Tensor {
        self.train_pred
            .index_select(0, &Tensor::from_slice(idx))
            .to_device(device)
    }

    /// Its scalars.
    pub fn parameters(&self) -> i64 {
        net_parameters(&self.vs)
    }
}

/// The scalars of the net in `vs` (its variables under `net.`; a training-only adapter is not
/// part of the model).
fn net_parameters(vs: &VarStore) -> i64 {
    vs.variables()
        .iter()
        .filter(|(name, _)| name.starts_with("net."))
        .map(|(_, t)| t.numel() as i64)
        .sum()
}

/// `net`'s predictions of every window of `w`, `[S, T_out, n, n]` (CPU), refusing non-finite
/// ones.
fn predictions(
    net: &GridNet,
    w: &GridWindows,
    batch_size: usize,
    device: Device,
) -> Result<Tensor> {
    let _guard = tch::no_grad_guard();
    let mut out = Vec::new();
    let s = w.samples();
    for start in (0..s).step_by(batch_size.max(1)) {
        let b = (batch_size as i64).min(s - start);
        let p = net.f_forward(&w.x.narrow(0, start, b).to_device(device))?;
        ensure!(
            p.isfinite().all().int64_value(&[]) == 1,
            "predicted NaN or Inf (windows {start}..{})",
            start + b
        );
        out.push(p.to_device(Device::Cpu));
    }
    Ok(Tensor::cat(&out, 0))
}

/// A teacher in a [`GridResult`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GridTeacherReport {
    /// Its checkpoint.
    pub checkpoint: PathBuf,
    /// `fno`, `resnet` or `unet`.
    pub arch: String,
    /// Its parameters.
    pub parameters: i64,
    /// Its test metrics (the same code as the student's).
    pub test: GridMetrics,
    /// Its mean weight over every step of the run (absent without KD).
    pub mean_alpha: Option<f64>,
}

/// What a finished grid run reports (`result.json`; nothing in it depends on the clock).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GridResult {
    /// The trained net's architecture.
    pub arch: String,
    /// `none`, `output` or `freq`.
    pub kd: KdLoss,
    /// `a2d` or `average`.
    pub weighting: Weighting,
    /// `random` or `ridge`.
    pub init: InitKind,
    /// Dataset directory.
    pub dataset: PathBuf,
    /// The seed.
    pub seed: u64,
    /// Epoch (1-based) of the net evaluated (best validation MSE).
    pub best_epoch: usize,
    /// Epochs trained.
    pub epochs: usize,
    /// Validation metrics of the net evaluated.
    pub val: GridMetrics,
    /// Its test metrics.
    pub test: GridMetrics,
    /// Its parameters.
    pub parameters: i64,
    /// The teachers.
    pub teachers: Vec<GridTeacherReport>,
    /// Rows (windows × grid points) of the closed-form initialisation, when done.
    pub ridge_rows: Option<u64>,
    /// Why training ended before `train.epochs`, if it did.
    pub stopped_early: Option<String>,
}

impl ValMetrics for GridMetrics {
    fn score(&self, _: &TrainConfig) -> (f64, String) {
        (self.mse, "MSE".into())
    }

    fn scalars(&self) -> Vec<(&'static str, f64)> {
        vec![("val/mse", self.mse), ("val/rel_l2", self.rel_l2)]
    }

    fn describe(&self) -> String {
        format!("val MSE {:.4e} rel L2 {:.4}", self.mse, self.rel_l2)
    }
}

/// The net of a grid run and what its loss reads (borrowed apart from the run's optimiser).
struct GridParts<'a> {
    net: &'a GridNet,
    adapter: Option<&'a nn::Linear>,
    data: &'a GridData,
    teachers: &'a [GridTeacher],
    kd: &'a Kd,
    cfg: &'a KdConfig,
    device: Device,
}

impl GridParts<'_> {
    /// The task loss, each teacher's `L_KD`, and the weighted hidden-state KD (when on) on
    /// training windows `idx`, with their graphs.
    fn pieces(&self, idx: &[i64]) -> Result<Pieces> {
        let sel = Tensor::from_slice(idx);
        let x = self
            .data
            .train
            .x
            .index_select(0, &sel)
            .to_device(self.device);
        let y = self
            .data
            .train
            .y
            .index_select(0, &sel)
            .to_device(self.device);
        let features = self.net.f_features(&x)?;
        let pred = features.apply(self.net.readout()).permute([0, 3, 1, 2]);
        let task = pred.mse_loss(&y, tch::Reduction::Mean);
        let mut kd = Vec::new();
        for t in self.teachers {
            if let Some(l) = self
                .kd
                .loss_shaped(&pred, &t.train_targets(idx, self.device))?
            {
                kd.push(l);
            }
        }
        let beta = self.cfg.hidden_weight;
        let hidden = if beta > 0.0 {
            let teacher = &self.teachers[self.cfg.hidden_teacher];
            let target = tch::no_grad(|| teacher.net.f_features(&x))?;
            let mapped = match self.adapter {
                Some(a) => features.apply(a),
                None => features,
            };
            Some(mapped.mse_loss(&target, tch::Reduction::Mean) * beta)
        } else {
            None
        };
        Ok((task, kd, hidden))
    }

    /// `net`'s metrics on a split's windows.
    fn evaluate(&self, net: &GridNet, w: &GridWindows, batch_size: usize) -> Result<GridMetrics> {
        self.data
            .metrics(w, batch_size, self.device, &|x| Ok(net.f_forward(x)?))
    }
}

/// A grid run: `new → (resume) → epoch … → finish`.
pub struct GridDistiller {
    cfg: CheckedGridConfig,
    device: Device,
    data: GridData,
    teachers: Vec<GridTeacher>,
    vs: VarStore,
    net: GridNet,
    /// The hidden-state KD's adapter from the net's features to the teacher's (when
    /// `distill.hidden_weight > 0` and the widths differ).
    adapter: Option<nn::Linear>,
    kd: Kd,
    run: KdRun<GridMetrics>,
}

impl GridDistiller {
    /// A grid run as [`Distiller::new`](super::Distiller::new) starts a particle one: the
    /// windows and the frozen grid teachers loaded, the net built (its readout solved in
    /// closed form with `init = "ridge"`), or restored from the checkpoint on resume.
    pub fn new(cfg: CheckedGridConfig, out: &Path, opts: DistillOptions) -> Result<Self> {
        let t = cfg.train.clone();
        let (dir, device) = run::claim(out, opts.mode, &t)?;
        let data = GridData::load(&cfg.data)?;
        let dataset_sha256 = dataset_fingerprint(&cfg.data.dir).ok();
        let teachers = cfg
            .distill
            .teachers
            .iter()
            .map(|p| GridTeacher::load(p, &cfg, &data, dataset_sha256.as_deref(), device))
            .collect::<Result<Vec<_>>>()?;
        let adapter_width = (cfg.distill.hidden_weight > 0.0)
            .then(|| teachers[cfg.distill.hidden_teacher].model.features())
            .filter(|&w| w != cfg.model.features());
        let (mut vs, (mut net, adapter)) = seeded_on_cpu(t.seed, device, &|vs| {
            let net = cfg.model.build(vs.root() / "net")?;
            let adapter = adapter_width.map(|w| {
                nn::linear(
                    vs.root() / "adapter",
                    cfg.model.features(),
                    w,
                    Default::default(),
                )
            });
            Ok((net, adapter))
        })?;
        let kd = match (cfg.distill.loss, cfg.distill.bands) {
            (KdLoss::Freq, bands) => {
                // predictions [B, T, H, W]
                let (dims, cutoffs) = match bands {
                    BandsKind::TimeDft => (vec![1], vec![cfg.distill.time_cutoff]),
                    _ => (
                        vec![1, 2, 3],
                        vec![
                            cfg.distill.time_cutoff,
                            cfg.distill.space_cutoff,
                            cfg.distill.space_cutoff,
                        ],
                    ),
                };
                let splitter: Box<dyn BandSplitter> = Box::new(
                    DftSplitterConfig {
                        dims,
                        cutoffs,
                        mask: Default::default(),
                    }
                    .check()?,
                );
                Kd::freq(&cfg.distill, splitter)?
            }
            (KdLoss::Output, _) => Kd::Output,
            (KdLoss::None, _) => Kd::None,
        };
        let differences = |text: &str| -> Result<Vec<(String, String, String)>> {
            Ok(config::differences(
                &GridDistillConfig::parse(text, &[])?,
                &cfg.0,
            ))
        };
        let mut run = KdRun::open(
            OpenRun {
                dir,
                out,
                opts,
                train: t.clone(),
                kd: &cfg.distill,
                config_text: cfg.to_toml(),
                samples: data.train.samples(),
                teachers_sha256: teachers.iter().map(|t| t.tensors_sha256.clone()).collect(),
                dataset_sha256,
                what: "trained",
                differences: &differences,
            },
            &mut vs,
        )?;
        run.ridge_init(cfg.distill.init, &mut || {
            let teacher = &teachers[cfg.distill.ridge_teacher];
            let rows = ridge_init(
                &mut net,
                &data.train,
                t.batch_size,
                device,
                cfg.distill.ridge_lambda,
                &|idx| teacher.train_targets(idx, device),
            )?;
            Ok((
                rows,
                format!("teacher {}'s predictions", teacher.checkpoint.display()),
            ))
        })?;
        run.start(&vs, out)?;
        Ok(Self {
            cfg,
            device,
            data,
            teachers,
            vs,
            net,
            adapter,
            kd,
            run,
        })
    }

    fn parts(&self) -> GridParts<'_> {
        GridParts {
            net: &self.net,
            adapter: self.adapter.as_ref(),
            data: &self.data,
            teachers: &self.teachers,
            kd: &self.kd,
            cfg: &self.cfg.distill,
            device: self.device,
        }
    }

    /// The net being trained.
    pub fn net(&self) -> &GridNet {
        &self.net
    }

    /// Its variables.
    pub fn var_store(&self) -> &VarStore {
        &self.vs
    }

    /// The frozen teachers.
    pub fn teachers(&self) -> &[GridTeacher] {
        &self.teachers
    }

    /// Epoch logs so far.
    pub fn history(&self) -> &[DistillEpochLog<GridMetrics>] {
        &self.run.state.epochs
    }

    /// Whether all epochs are done (or early stopping ended the run).
    pub fn finished(&self) -> bool {
        self.run.finished()
    }

    /// The task loss, each teacher's `L_KD`, and the weighted hidden-state KD (when on) on
    /// training windows `idx`, with their graphs.
    pub fn loss_pieces(&self, idx: &[i64]) -> Result<(Tensor, Vec<Tensor>, Option<Tensor>)> {
        self.parts().pieces(idx)
    }

    /// The objective and gradient of one step on training windows `idx` (no update).
    pub fn step_gradients(&self, idx: &[i64]) -> Result<DistillStep> {
        self.run.weighted(&self.loss_pieces(idx)?)
    }

    /// Trains one epoch (validating when due), logs it and writes the checkpoint.
    pub fn epoch(&mut self) -> Result<&DistillEpochLog<GridMetrics>> {
        let parts = GridParts {
            net: &self.net,
            adapter: self.adapter.as_ref(),
            data: &self.data,
            teachers: &self.teachers,
            kd: &self.kd,
            cfg: &self.cfg.distill,
            device: self.device,
        };
        let bs = self.cfg.train.batch_size;
        self.run.epoch(
            &self.vs,
            self.data.train.samples(),
            &mut |idx: &[i64]| parts.pieces(idx),
            &|| parts.evaluate(parts.net, &parts.data.val, bs),
        )
    }

    /// Trains until [`GridDistiller::finished`] (or `max_epochs` more epochs, when given).
    pub fn train(&mut self, max_epochs: Option<usize>) -> Result<()> {
        let mut n = 0;
        while !self.finished() && max_epochs.is_none_or(|m| n < m) {
            self.epoch()?;
            n += 1;
        }
        Ok(())
    }

    /// Scores the validation-selected net and the teachers on the test split, measures the
    /// inference throughput of each (best of three passes, this process), and (for a finished
    /// run) writes `result.json` and `timing.json`.
    pub fn finish(&mut self) -> Result<(GridResult, DistillTiming)> {
        let (best, finished) = self.run.select_best(&mut self.vs)?;
        let bs = self.cfg.train.batch_size;
        let parts = self.parts();
        let test = &self.data.test;
        let score = |net: &GridNet| timed(test.samples(), &|| parts.evaluate(net, test, bs));
        let (test_metrics, sps) = score(&self.net)?;
        let mut teachers = Vec::new();
        let mut teacher_sps = Vec::new();
        for (i, t) in self.teachers.iter().enumerate() {
            let (m, s) = score(&t.net)?;
            teacher_sps.push(s);
            teachers.push(GridTeacherReport {
                checkpoint: t.checkpoint.clone(),
                arch: t.model.arch.name().into(),
                parameters: t.parameters(),
                test: m,
                mean_alpha: self.run.mean_alpha(i),
            });
        }
        let result = GridResult {
            arch: self.cfg.model.arch.name().into(),
            kd: self.cfg.distill.loss,
            weighting: self.cfg.distill.weighting,
            init: self.cfg.distill.init,
            dataset: self.cfg.data.dir.clone(),
            seed: self.cfg.train.seed,
            best_epoch: best.epoch,
            epochs: self.run.state.epochs.len(),
            val: best.val,
            test: test_metrics,
            parameters: net_parameters(&self.vs),
            teachers,
            ridge_rows: self.run.state.ridge_rows,
            stopped_early: self.run.state.stopped_early.clone(),
        };
        let timing = self.run.report(&result, finished, sps, teacher_sps)?;
        Ok((result, timing))
    }
}

impl std::fmt::Debug for GridDistiller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.run.debug(f, "GridDistiller")
    }
}

/// Closed-form initialisation of `net`'s pointwise readout (seed 002): streams the windows
/// through its features and solves the readout by ridge regression (f64 sums, Cholesky with
/// jitter retries, `λ_eff = λ · mean diag XᵀX`, with an intercept) onto `target(idx)`, the
/// teacher's predictions `[B, T_out, n, n]`, one row per window and grid point. Returns the rows.
pub fn ridge_init(
    net: &mut GridNet,
    w: &GridWindows,
    batch_size: usize,
    device: Device,
    lambda: f64,
    target: &dyn Fn(&[i64]) -> Tensor,
) -> Result<u64> {
    let _guard = tch::no_grad_guard();
    let (f, o) = (net.config().features(), net.config().t_out);
    let mut acc = RidgeConfig {
        lambda,
        intercept: true,
        ..Default::default()
    }
    .check(f as usize, o as usize)?;
    let idx: Vec<i64> = (0..w.samples()).collect();
    for chunk in idx.chunks(batch_size.max(1)) {
        let x =
            w.x.index_select(0, &Tensor::from_slice(chunk))
                .to_device(device);
        let feats = net.f_features(&x)?.reshape([-1, f]);
        let h = target(chunk).permute([0, 2, 3, 1]).reshape([-1, o]);
        acc.push(&feats, &h.to_kind(feats.kind()))?;
    }
    acc.solve()?.load_into(net.readout_mut())?;
    Ok(acc.rows())
}

#[cfg(test)]
mod tests;
