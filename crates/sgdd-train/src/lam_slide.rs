//! LaM-SLidE in the trainer (SPEC §4.6, seed 004): `model.kind = "lam-slide"` trains the
//! identifier codec (stage 1, on single frames) and then the latent flow model (stage 2, on
//! windows of `data.condition_frames` given and `data.num_targets` predicted frames), each with
//! AdamW, the run's learning-rate schedule and an exponential moving average of the weights
//! ([`latent_ids::Ema`], with its warm-up; the average is what is validated, selected and
//! tested).
//!
//! One [`VarStore`] holds `codec`, `codec_ema`, `flow`, `flow_ema` and the normalisation
//! (`norm.scale`, `norm.types`), so `checkpoint.safetensors` and `best.safetensors` are the
//! ordinary checkpoints of [`crate::checkpoint`]; the optimiser in a checkpoint is the one of
//! the stage that comes next. Every random draw of a step (identifier injections, rigid
//! motions, interpolation times, noise) is a ChaCha8 stream of the seed, the stage and the step,
//! so a resumed run continues bit for bit.
//!
//! Positions: each window is centred on the centroid of its given frames (known at test time)
//! and divided by one scale, the root mean square of the centred training positions. Metrics
//! are in the dataset's original units ([`SampledMetrics`], `K = model.lam_slide.draws`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use latent_ids::{
    Codec, CodecConfig, Ema, Fill, FlowLossWeights, LatentFlow, LatentFlowConfig, SamplerConfig,
    TrajectoryBatch, augment_rigid, flow_loss, sample_trajectories,
};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor, nn::VarStore};
use traj_data::Split;

use crate::checkpoint::{self, CheckpointMeta};
use crate::config::{CheckedRunConfig, RESUMABLE_KEYS, RunConfig, TrainConfig};
use crate::metrics::{SampledMetricSums, SampledMetrics};
use crate::optim::Adam;
use crate::rundir::{RunDir, RunMode};
use crate::runlog::append_log;
use crate::tensorboard::EventWriter;
use crate::trainer::{Event, Observer, dataset_fingerprint, lr_at, write_json};

/// `[model.lam_slide]`: LaM-SLidE's settings. `Default` is a small model for CPU training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LamSlideConfig {
    /// Stage 1: the identifier codec (`codec.num_types > 0` reads entity types: the dataset's
    /// node types, or else its first node feature, e.g. charges).
    pub codec: CodecConfig,
    /// Stage 2: the latent flow model (`flow.latent_dim` must equal `codec.latent_dim`).
    pub flow: LatentFlowConfig,
    /// Stage-2 loss weights and time margin.
    pub flow_loss: FlowLossWeights,
    /// What the flow model reads at the predicted frames: `mean` (the mean of the given
    /// frames' latents, the authors') or `const-vel` (the encoded constant-velocity
    /// extrapolation of the last two given frames).
    pub fill: Fill,
    /// The sampler used for validation, testing and predictions.
    pub sampler: SamplerConfig,
    /// Stage-1 epochs (passes over every frame of the training windows).
    pub codec_epochs: usize,
    /// Stage-2 epochs (passes over the training windows); `None`: `train.epochs`. A table whose
    /// rows share one `[train]` (EGNO beside LaM-SLidE) sets it here.
    pub flow_epochs: Option<usize>,
    /// Stage-1 peak learning rate.
    pub codec_lr: f64,
    /// Stage-2 peak learning rate; `None`: `train.adam.lr`.
    pub flow_lr: Option<f64>,
    /// Decay of the weights' moving average (both stages).
    pub ema_decay: f64,
    /// Standard deviation of the random translations, in normalised units (rotations are
    /// uniform on SO(3)).
    pub translation_std: f64,
    /// Stage 2 trains on windows starting every `flow_stride` frames of each training
    /// trajectory (as many as fit) instead of the data's windows — more windows from the same
    /// trajectories; validation, testing and stage 1 keep the data's windows. `None`: the data's
    /// windows.
    pub flow_stride: Option<usize>,
    /// Draws `K` per test window (ADE/FDE averaged over them, and minADE/minFDE).
    pub draws: usize,
    /// Draws per validation window (model selection on their mean ADE).
    pub val_draws: usize,
}

impl Default for LamSlideConfig {
    fn default() -> Self {
        Self {
            codec: CodecConfig::default(),
            flow: LatentFlowConfig::default(),
            flow_loss: FlowLossWeights::default(),
            fill: Fill::Mean,
            sampler: SamplerConfig::default(),
            codec_epochs: 10,
            flow_epochs: None,
            codec_lr: 4e-4,
            flow_lr: None,
            ema_decay: 0.999,
            translation_std: 0.1,
            flow_stride: None,
            draws: 5,
            val_draws: 1,
        }
    }
}

impl LamSlideConfig {
    /// Rejects settings that cannot run (`condition_frames`: `data.condition_frames`).
    pub fn check(&self, condition_frames: usize) -> Result<()> {
        self.codec.validate()?;
        self.flow.validate()?;
        self.flow_loss.validate()?;
        self.sampler.validate()?;
        ensure!(
            self.flow.latent_dim == self.codec.latent_dim,
            "flow.latent_dim ({}) must equal codec.latent_dim ({})",
            self.flow.latent_dim,
            self.codec.latent_dim
        );
        ensure!(condition_frames >= 1, "data.condition_frames must be ≥ 1");
        ensure!(
            self.fill != Fill::ConstVel || condition_frames >= 2,
            "model.lam_slide.fill = \"const-vel\" needs data.condition_frames ≥ 2, got \
             {condition_frames}"
        );
        ensure!(self.codec_epochs >= 1, "codec_epochs must be ≥ 1");
        ensure!(
            self.flow_epochs != Some(0),
            "flow_epochs must be ≥ 1 (or unset: train.epochs)"
        );
        ensure!(
            self.codec_lr.is_finite() && self.codec_lr > 0.0,
            "codec_lr must be finite and > 0, got {}",
            self.codec_lr
        );
        if let Some(lr) = self.flow_lr {
            ensure!(
                lr.is_finite() && lr > 0.0,
                "flow_lr must be finite and > 0, got {lr}"
            );
        }
        ensure!(
            (0.0..1.0).contains(&self.ema_decay),
            "ema_decay must be in [0, 1), got {}",
            self.ema_decay
        );
        ensure!(
            self.translation_std.is_finite() && self.translation_std >= 0.0,
            "translation_std must be finite and ≥ 0, got {}",
            self.translation_std
        );
        ensure!(
            self.flow_stride != Some(0),
            "flow_stride must be ≥ 1 (or unset: the data's windows)"
        );
        ensure!(self.draws >= 1, "draws must be ≥ 1");
        ensure!(self.val_draws >= 1, "val_draws must be ≥ 1");
        Ok(())
    }
}

/// The windows of one split as LaM-SLidE reads them.
#[derive(Debug)]
pub struct LamWindows {
    /// `[S, C + T, N, 3]`: given then predicted frames, in the dataset's coordinates minus
    /// each window's centroid of its given frames.
    pub frames: Tensor,
    /// Given frames `C`.
    pub given: i64,
    /// `[S]` and `[S, 3]`: original = centred · `unit` + `origin`.
    pub unit: Tensor,
    /// See `unit`.
    pub origin: Tensor,
    /// The raw type value of each entity (node type, or else first node feature), `[S, N]`,
    /// float64; `None` when the dataset has neither.
    pub type_values: Option<Tensor>,
}

impl LamWindows {
    /// Cuts the windows of `cfg.data` from a split (checksum verified).
    pub fn load(cfg: &RunConfig, split: Split) -> Result<Self> {
        let limit = match split {
            Split::Train => cfg.data.max_train,
            _ => cfg.data.max_eval,
        };
        let ds = traj_data::load_split(&cfg.data.dir, split).with_context(|| {
            format!("loading the {split:?} split of {}", cfg.data.dir.display())
        })?;
        let ds = match limit {
            Some(n) if n < ds.len() => ds.select(&(0..n).collect::<Vec<_>>())?,
            _ => ds,
        };
        Self::from_dataset(&ds, cfg)
    }

    /// Cuts the windows of `cfg.data` from a dataset.
    pub fn from_dataset(ds: &traj_data::Dataset, cfg: &RunConfig) -> Result<Self> {
        ensure!(!ds.is_empty(), "the dataset is empty");
        let spec = cfg.data.window_spec().check()?;
        let index = spec.index(ds)?;
        ensure!(
            !index.is_empty(),
            "no window fits: trajectories are too short for {} given and {} predicted frames",
            cfg.data.condition_frames,
            cfg.data.delta_frame
        );
        let n = ds.num_nodes();
        let (c, t) = (spec.condition_frames(), spec.num_targets());
        let (mut frames, mut unit, mut origin, mut types) = (vec![], vec![], vec![], vec![]);
        let mut has_types = true;
        for &w in &index {
            let s = spec.sample(ds, w)?;
            let mut centroid = [0.0; 3];
            for p in s.condition_positions.chunks_exact(3) {
                for k in 0..3 {
                    centroid[k] += p[k] / (c * n) as f64;
                }
            }
            for p in s
                .condition_positions
                .chunks_exact(3)
                .chain(s.target_positions.chunks_exact(3))
            {
                frames.extend((0..3).map(|k| p[k] - centroid[k]));
            }
            let sc = s.transform.scale;
            unit.push(sc);
            origin.extend((0..3).map(|k| centroid[k] * sc + s.transform.center[k]));
            let tr = &ds.trajectories()[s.trajectory];
            match (tr.node_types(), &s.node_features) {
                (Some(nt), _) => types.extend(nt.iter().map(|&v| v as f64)),
                (None, Some(f)) => {
                    types.extend((0..n).map(|i| f[i * s.num_node_features]));
                }
                (None, None) => has_types = false,
            }
        }
        let s = index.len() as i64;
        let (n, f) = (n as i64, (c + t) as i64);
        Ok(Self {
            frames: Tensor::from_slice(&frames)
                .to_kind(Kind::Float)
                .view([s, f, n, 3]),
            given: c as i64,
            unit: Tensor::from_slice(&unit),
            origin: Tensor::from_slice(&origin).view([s, 3]),
            type_values: has_types.then(|| Tensor::from_slice(&types).view([s, n])),
        })
    }

    /// Windows `S`.
    pub fn samples(&self) -> i64 {
        self.frames.size()[0]
    }

    /// Entities `N`.
    pub fn entities(&self) -> i64 {
        self.frames.size()[2]
    }

    /// Frames `C + T`.
    pub fn frames_per_window(&self) -> i64 {
        self.frames.size()[1]
    }

    /// Centred coordinates of windows `idx` back to original units.
    ///
    /// # Shapes
    /// `x: [B, .., N, 3]` → same.
    pub fn to_original(&self, x: &Tensor, idx: &Tensor) -> Tensor {
        let mut shape = vec![-1i64];
        shape.extend(std::iter::repeat_n(1, x.dim() - 2));
        let unit = self.unit.index_select(0, idx).to_device(x.device());
        let origin = self.origin.index_select(0, idx).to_device(x.device());
        let mut ushape = shape.clone();
        ushape.push(1);
        shape.push(3);
        x.to_kind(Kind::Double) * unit.view(ushape.as_slice()) + origin.view(shape.as_slice())
    }

    /// The constant-velocity extrapolation of windows `idx` from their last two given frames
    /// (the baseline every table carries), centred coordinates.
    ///
    /// # Shapes
    /// → `[B, T, N, 3]`.
    pub fn const_vel(&self, idx: &Tensor) -> Result<Tensor> {
        ensure!(
            self.given >= 2,
            "constant velocity needs ≥ 2 given frames, got {}",
            self.given
        );
        let given = self.frames.index_select(0, idx).narrow(1, 0, self.given);
        Ok(latent_ids::const_vel_frames(
            &given,
            self.frames_per_window(),
        )?)
    }
}

/// The two networks, their averages and the normalisation, in one [`VarStore`].
#[derive(Debug)]
pub struct LamSlide {
    /// All variables (see the module doc).
    pub vs: VarStore,
    codec: Codec,
    codec_ema: Codec,
    flow: LatentFlow,
    flow_ema: LatentFlow,
    scale: Tensor,
    types: Tensor,
    cfg: LamSlideConfig,
}

impl LamSlide {
    /// Builds the model of `cfg` (libtorch's generator seeded with `train.seed`, weights drawn
    /// on the CPU and copied to `device`).
    pub fn build(cfg: &RunConfig, device: Device) -> Result<Self> {
        let c = &cfg.model.lam_slide;
        let build = |device: Device| -> Result<Self> {
            let _rng = crate::trainer::torch_rng();
            tch::manual_seed(cfg.train.seed as i64);
            let vs = VarStore::new(device);
            let root = vs.root();
            let codec = c.codec.build(&root / "codec")?;
            let codec_ema = c.codec.build(&root / "codec_ema")?;
            let flow = c.flow.build(&root / "flow")?;
            let flow_ema = c.flow.build(&root / "flow_ema")?;
            let norm = &root / "norm";
            let scale = norm.ones_no_train("scale", &[1]);
            let types = norm.zeros_no_train("types", &[c.codec.num_types.max(1)]);
            Ok(Self {
                vs,
                codec,
                codec_ema,
                flow,
                flow_ema,
                scale,
                types,
                cfg: c.clone(),
            })
        };
        let mut m = build(device)?;
        if device != Device::Cpu {
            let cpu = build(Device::Cpu)?;
            m.vs.copy(&cpu.vs)
                .context("copying the CPU-drawn initial weights to the device")?;
        }
        for (name, v) in m.vs.variables() {
            if name.starts_with("codec_ema.") || name.starts_with("flow_ema.") {
                let _ = v.shallow_clone().set_requires_grad(false);
            }
        }
        Ok(m)
    }

    /// Fits the normalisation on the training windows: the scale (root mean square of the
    /// centred positions) and the type vocabulary (sorted distinct values, at most
    /// `codec.num_types`).
    pub fn fit_normalisation(&self, train: &LamWindows) -> Result<()> {
        let rms = train
            .frames
            .to_kind(Kind::Double)
            .square()
            .mean(Kind::Double)
            .sqrt()
            .double_value(&[]);
        ensure!(
            rms.is_finite() && rms > 0.0,
            "the training positions have no spread (root mean square {rms})"
        );
        let k = self.cfg.codec.num_types;
        let mut vocab = vec![];
        if k > 0 {
            let values = train.type_values.as_ref().context(
                "model.lam_slide.codec.num_types > 0 but the dataset has neither node types nor \
                 node features",
            )?;
            let mut v = Vec::<f64>::try_from(values.flatten(0, -1))?;
            v.sort_by(f64::total_cmp);
            v.dedup();
            ensure!(
                v.len() as i64 <= k,
                "the training data has {} entity types {v:?}, more than \
                 model.lam_slide.codec.num_types = {k}",
                v.len()
            );
            vocab = v;
        }
        // unused vocabulary slots repeat the last value (a lookup finds its first slot); the
        // checkpoint refuses non-finite values, so no NaN marks them
        let pad = vocab.last().copied().unwrap_or(0.0);
        vocab.resize(k.max(1) as usize, pad);
        tch::no_grad(|| {
            self.scale
                .shallow_clone()
                .copy_(&Tensor::from_slice(&[rms]).to_kind(self.scale.kind()));
            self.types
                .shallow_clone()
                .copy_(&Tensor::from_slice(&vocab).to_kind(self.types.kind()));
        });
        Ok(())
    }

    /// The scale of the normalisation.
    pub fn scale(&self) -> f64 {
        self.scale.double_value(&[0])
    }

    /// Type indices of windows `idx` (`None` without types).
    fn type_ids(&self, w: &LamWindows, idx: &Tensor, device: Device) -> Result<Option<Tensor>> {
        if self.cfg.codec.num_types == 0 {
            return Ok(None);
        }
        let values = w
            .type_values
            .as_ref()
            .context("the data has no entity types but the model reads them")?
            .index_select(0, idx);
        let vocab = Vec::<f64>::try_from(self.types.to_kind(Kind::Double).to_device(Device::Cpu))?;
        let v = Vec::<f64>::try_from(values.flatten(0, -1))?;
        let ids = v
            .iter()
            .map(|x| {
                vocab
                    .iter()
                    .position(|y| y == x)
                    .map(|i| i as i64)
                    .with_context(|| {
                        format!("entity type {x} is not among the training types {vocab:?}")
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(
            Tensor::from_slice(&ids)
                .view([idx.size()[0], w.entities()])
                .to_device(device),
        ))
    }

    /// `K = draws` sampled futures of windows `idx` with the averaged weights, in original
    /// units: draw `k` uses the noise stream `seed + k`, the identifiers of window `i` the
    /// stream `(seed, i)`.
    ///
    /// # Shapes
    /// → `[B, K, T, N, 3]`.
    pub fn sample(&self, w: &LamWindows, idx: &[i64], draws: usize, seed: u64) -> Result<Tensor> {
        let it = Tensor::from_slice(idx);
        let inputs = self.given_inputs(w, idx, seed)?;
        let batch = inputs.batch();
        let t = w.frames_per_window() - w.given;
        let mut out = Vec::with_capacity(draws);
        for k in 0..draws {
            let x = sample_trajectories(
                &self.flow_ema,
                &self.codec_ema,
                &batch,
                w.frames_per_window(),
                self.cfg.fill,
                &self.cfg.sampler,
                seed.wrapping_add(k as u64),
            )?;
            let pred = x.narrow(1, w.given, t) * self.scale();
            out.push(w.to_original(&pred.to_device(Device::Cpu), &it));
        }
        Ok(Tensor::stack(&out, 1))
    }

    /// What sampling reads of windows `idx`: the given frames (normalised units, on the model's
    /// device), the entity types, the identifiers (window `i`: the stream `(seed, i)`) and the
    /// sample indices.
    fn given_inputs(&self, w: &LamWindows, idx: &[i64], seed: u64) -> Result<GivenInputs> {
        let device = self.vs.device();
        let it = Tensor::from_slice(idx);
        let samples: Vec<u64> = idx.iter().map(|&i| i as u64).collect();
        let given = w
            .frames
            .index_select(0, &it)
            .narrow(1, 0, w.given)
            .to_device(device)
            / self.scale();
        let types = self.type_ids(w, &it, device)?;
        let ids = self
            .codec_ema
            .ids()
            .draw(w.entities(), seed, &samples)
            .context("drawing identifiers")?;
        Ok(GivenInputs {
            given,
            types,
            ids,
            samples,
        })
    }

    /// ADE/FDE over `draws` samples of every window of `w` (original units).
    pub fn evaluate(
        &self,
        w: &LamWindows,
        draws: usize,
        batch_size: usize,
        seed: u64,
    ) -> Result<SampledMetrics> {
        Ok(self
            .evaluate_stages(w, draws, batch_size, seed, false)?
            .model)
    }

    /// Frames `start .. start + len` of windows `idx` and the averaged codec's reconstruction
    /// `decode(encode(x))` of each on its own, normalised units, on the model's device
    /// (identifiers of window `i` from the stream `(seed, i)`, as in [`sample`](Self::sample)).
    ///
    /// # Shapes
    /// → two `[B, len, N, 3]`.
    fn reconstruct_frames(
        &self,
        w: &LamWindows,
        idx: &[i64],
        start: i64,
        len: i64,
        seed: u64,
    ) -> Result<(Tensor, Tensor)> {
        let device = self.vs.device();
        let it = Tensor::from_slice(idx);
        let samples: Vec<u64> = idx.iter().map(|&i| i as u64).collect();
        let (b, n) = (idx.len() as i64, w.entities());
        let x = w
            .frames
            .index_select(0, &it)
            .narrow(1, start, len)
            .to_device(device)
            / self.scale();
        let ids = self.codec_ema.ids().draw(n, seed, &samples)?;
        let types = self.type_ids(w, &it, device)?;
        let ids_f = latent_ids::repeat_frames(&ids, len)?;
        let types_f = types
            .map(|ty| latent_ids::repeat_frames(&ty, len))
            .transpose()?;
        let out = tch::no_grad(|| {
            self.codec_ema
                .f_reconstruct(&x.reshape([b * len, n, 3]), types_f.as_ref(), &ids_f)
        })?;
        Ok((x, out.positions.view([b, len, n, 3])))
    }

    /// The averaged codec's reconstruction `decode(encode(x))` of the predicted frames of
    /// windows `idx`, each frame on its own (what stage 2 would give with perfect latents),
    /// in original units; identifiers as in [`sample`](Self::sample).
    ///
    /// # Shapes
    /// → `[B, T, N, 3]`.
    pub fn reconstruct_targets(&self, w: &LamWindows, idx: &[i64], seed: u64) -> Result<Tensor> {
        let t = w.frames_per_window() - w.given;
        let (_, rec) = self.reconstruct_frames(w, idx, w.given, t, seed)?;
        let pos = rec * self.scale();
        Ok(w.to_original(&pos.to_device(Device::Cpu), &Tensor::from_slice(idx)))
    }

    /// The conditioning fill of the predicted frames decoded (what the flow model reads at the
    /// predicted frames, `model.lam_slide.fill`), in original units;
    /// identifiers as in [`sample`](Self::sample). A flow model that does not beat it has learnt
    /// nothing of the dynamics.
    ///
    /// # Shapes
    /// → `[B, T, N, 3]`.
    pub fn decode_fill(&self, w: &LamWindows, idx: &[i64], seed: u64) -> Result<Tensor> {
        let it = Tensor::from_slice(idx);
        let (b, n, t) = (
            idx.len() as i64,
            w.entities(),
            w.frames_per_window() - w.given,
        );
        let inputs = self.given_inputs(w, idx, seed)?;
        let batch = inputs.batch();
        let z = latent_ids::encode_frames(&self.codec_ema, &batch, w.given)?;
        let cond = latent_ids::conditioning(
            &self.codec_ema,
            &batch,
            &z,
            w.frames_per_window(),
            self.cfg.fill,
        )?;
        let fill = cond.x_cond.narrow(1, w.given, t);
        let s = fill.size();
        let ids_f = latent_ids::repeat_frames(&inputs.ids, t)?;
        let out = tch::no_grad(|| {
            self.codec_ema
                .f_decode(&fill.reshape([b * t, s[2], s[3]]), &ids_f)
        })?;
        let pos = out.positions.view([b, t, n, 3]) * self.scale();
        Ok(w.to_original(&pos.to_device(Device::Cpu), &it))
    }

    /// Replaces the sampler used by [`sample`](Self::sample) (e.g. to compare Euler with
    /// Dopri5 on a trained model).
    pub fn set_sampler(&mut self, sampler: SamplerConfig) -> Result<()> {
        sampler.validate()?;
        self.cfg.sampler = sampler;
        Ok(())
    }

    /// The sampler's settings.
    pub fn sampler(&self) -> &SamplerConfig {
        &self.cfg.sampler
    }

    /// The end-to-end metrics over `draws` samples of every window of `w` and, with
    /// `stages`, the two stages' shares apart: stage 1 (the codec's reconstruction of the
    /// true predicted frames against them) and stage 2 (the samples against that
    /// reconstruction, i.e. the flow model's error measured in decoded space). All in original
    /// units.
    pub fn evaluate_stages(
        &self,
        w: &LamWindows,
        draws: usize,
        batch_size: usize,
        seed: u64,
        stages: bool,
    ) -> Result<StageMetrics> {
        let mut model = SampledMetricSums::default();
        let mut codec = SampledMetricSums::default();
        let mut flow = SampledMetricSums::default();
        let mut fill = SampledMetricSums::default();
        let t = w.frames_per_window() - w.given;
        let all: Vec<i64> = (0..w.samples()).collect();
        for chunk in all.chunks(batch_size.max(1)) {
            let preds = self.sample(w, chunk, draws, seed)?;
            let it = Tensor::from_slice(chunk);
            let target = w.to_original(&w.frames.index_select(0, &it).narrow(1, w.given, t), &it);
            model.add(&preds, &target);
            if stages {
                let rec = self.reconstruct_targets(w, chunk, seed)?;
                codec.add(&rec.unsqueeze(1), &target);
                flow.add(&preds, &rec);
                fill.add(&self.decode_fill(w, chunk, seed)?.unsqueeze(1), &target);
            }
        }
        Ok(StageMetrics {
            model: model.finish(),
            codec: stages.then(|| codec.finish()),
            flow_vs_codec: stages.then(|| flow.finish()),
            fill: stages.then(|| fill.finish()),
        })
    }

    /// Mean squared reconstruction error of the averaged codec over every frame of `w`
    /// (original units², identifiers of window `i` from the stream `(seed, i)`).
    pub fn reconstruction_mse(&self, w: &LamWindows, batch_size: usize, seed: u64) -> Result<f64> {
        let (mut sum, mut count) = (0.0, 0.0);
        let all: Vec<i64> = (0..w.samples()).collect();
        for chunk in all.chunks(batch_size.max(1)) {
            let (x, rec) = self.reconstruct_frames(w, chunk, 0, w.frames_per_window(), seed)?;
            let b = chunk.len() as i64;
            let unit = w
                .unit
                .index_select(0, &Tensor::from_slice(chunk))
                .to_kind(Kind::Double);
            let se = (rec - x)
                .to_kind(Kind::Double)
                .square()
                .to_device(Device::Cpu)
                .view([b, -1])
                .mean_dim(&[1i64][..], false, Kind::Double)
                * unit.square()
                * self.scale().powi(2);
            sum += se.sum(Kind::Double).double_value(&[]);
            count += b as f64;
        }
        Ok(sum / count.max(1.0))
    }
}

/// What sampling reads of a batch of windows ([`LamSlide::given_inputs`]).
struct GivenInputs {
    given: Tensor,
    types: Option<Tensor>,
    ids: Tensor,
    samples: Vec<u64>,
}

impl GivenInputs {
    fn batch(&self) -> TrajectoryBatch<'_> {
        TrajectoryBatch {
            positions: &self.given,
            types: self.types.as_ref(),
            ids: &self.ids,
            samples: &self.samples,
        }
    }
}

/// [`LamSlide::evaluate_stages`]: the end-to-end metrics and each stage's share.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StageMetrics {
    /// Samples against the true future.
    pub model: SampledMetrics,
    /// Stage 1 alone: the codec's reconstruction of the true future against it (`K = 1`).
    pub codec: Option<SampledMetrics>,
    /// Stage 2 alone: samples against the codec's reconstruction of the true future.
    pub flow_vs_codec: Option<SampledMetrics>,
    /// The conditioning fill decoded ([`LamSlide::decode_fill`]) against the true future
    /// (`K = 1`): the prediction of a flow model that learnt no dynamics.
    pub fill: Option<SampledMetrics>,
}

/// Which stage(s) `sgdd train --stage` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StageChoice {
    /// Stage 1, then stage 2.
    #[default]
    Both,
    /// Stage 1 only (the codec).
    Codec,
    /// Stage 2 only (the codec must be trained).
    Flow,
}

/// The training stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    /// The identifier codec.
    Codec,
    /// The latent flow model.
    Flow,
}

/// One line of a LaM-SLidE run's `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LamEpochLog {
    /// The stage.
    pub stage: Stage,
    /// 1-based epoch within the stage.
    pub epoch: usize,
    /// Optimiser steps of the stage after the epoch.
    pub step: i64,
    /// Mean training loss (normalised units).
    pub loss: f64,
    /// Mean loss parts: codec `position`, `inter_distance`, `types`; flow `interpolant`,
    /// `position`, `inter_distance`.
    pub parts: BTreeMap<String, f64>,
    /// Learning rate of the epoch's last step.
    pub lr: f64,
    /// Mean gradient norm.
    pub grad_norm: f64,
    /// Training throughput (wall clock).
    pub samples_per_second: f64,
    /// Codec: reconstruction MSE of the averaged codec on the validation frames (original
    /// units²).
    pub val_reconstruction_mse: Option<f64>,
    /// Flow: validation ADE/FDE of the averaged models, on evaluation epochs.
    pub val: Option<SampledMetrics>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct LamState {
    codec: Vec<LamEpochLog>,
    flow: Vec<LamEpochLog>,
    /// The stage whose optimiser the checkpoint holds.
    optimiser: Option<Stage>,
    best: Option<(usize, SampledMetrics)>,
    train_seconds: f64,
}

/// What a finished LaM-SLidE run reports (`result.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LamSlideResult {
    /// `lam-slide`.
    pub model: String,
    /// Dataset directory.
    pub dataset: PathBuf,
    /// The seed.
    pub seed: u64,
    /// Stage-1 epochs trained.
    pub codec_epochs: usize,
    /// Stage-2 epochs trained.
    pub flow_epochs: usize,
    /// Stage-2 epoch of the selected (best validation ADE) weights.
    pub best_epoch: usize,
    /// Reconstruction MSE of the codec on the test frames (original units²).
    pub codec_test_mse: f64,
    /// Validation metrics of the selected weights.
    pub val: SampledMetrics,
    /// Test metrics of the selected weights over `draws` samples.
    pub test: SampledMetrics,
    /// Stage 1's share of the test error: the codec's reconstruction of the true predicted
    /// frames against them.
    pub codec_test: SampledMetrics,
    /// Stage 2's share: the test samples against the codec's reconstruction of the true
    /// predicted frames.
    pub flow_vs_codec_test: SampledMetrics,
    /// Constant velocity from the last two given frames, on the same test windows.
    pub const_vel_test: SampledMetrics,
}

/// Trains LaM-SLidE: `new → train → finish`.
pub struct LamSlideTrainer {
    cfg: CheckedRunConfig,
    config_text: String,
    dir: RunDir,
    train: LamWindows,
    /// Stage 2's training windows when `model.lam_slide.flow_stride` is set.
    flow_train: Option<LamWindows>,
    val: LamWindows,
    test: LamWindows,
    model: LamSlide,
    opt: Adam,
    stage: Stage,
    codec_ema: Ema,
    flow_ema: Ema,
    state: LamState,
    dataset_sha256: Option<String>,
    observer: Option<Observer>,
    /// Variables frozen at build (the fixed identifier tables, the averages, the
    /// normalisation): never trained in either stage.
    frozen: Vec<String>,
    /// `tensorboard/` event files (`train.tensorboard`): the epoch logs, tagged by stage.
    tensorboard: Option<EventWriter>,
}

impl std::fmt::Debug for LamSlideTrainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LamSlideTrainer")
            .field("dir", &self.dir.path())
            .field("stage", &self.stage)
            .finish_non_exhaustive()
    }
}

/// Marks the variables of one stage trainable and every other frozen (`frozen`: never
/// trained).
fn set_trainable(vs: &VarStore, stage: Stage, frozen: &[String]) {
    let prefix = match stage {
        Stage::Codec => "codec.",
        Stage::Flow => "flow.",
    };
    for (name, v) in vs.variables() {
        let on = name.starts_with(prefix) && !frozen.contains(&name);
        let _ = v.shallow_clone().set_requires_grad(on);
    }
}

/// The variables frozen at build (fixed identifier tables, normalisation).
fn frozen_at_build(vs: &VarStore) -> Vec<String> {
    vs.variables()
        .into_iter()
        .filter(|(_, v)| !v.requires_grad())
        .map(|(k, _)| k)
        .collect()
}

fn stage_seed(seed: u64, stage: Stage, step: u64) -> u64 {
    let s = match stage {
        Stage::Codec => 0x5EED_C0DE_C000_0001u64,
        Stage::Flow => 0x5EED_F10A_F000_0002u64,
    };
    (seed ^ s).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ step
}

impl LamSlideTrainer {
    /// Claims the run directory, loads the windows, builds the model and, with
    /// [`RunMode::Resume`], restores the checkpoint (refusing changed settings other than
    /// [`RESUMABLE_KEYS`]).
    pub fn new(
        cfg: CheckedRunConfig,
        out: &Path,
        mode: RunMode,
        mut observer: Option<Observer>,
    ) -> Result<Self> {
        ensure!(
            cfg.model.kind == crate::ModelKind::LamSlide,
            "the LaM-SLidE trainer needs model.kind = \"lam-slide\""
        );
        let dir = RunDir::claim(out, mode)?;
        let device = cfg.train.device.resolve()?;
        if cfg.train.threads > 0 {
            tch::set_num_threads(cfg.train.threads);
        }
        let train = LamWindows::load(&cfg, Split::Train)?;
        let flow_train = match cfg.model.lam_slide.flow_stride {
            Some(stride) => {
                let mut sliding = (*cfg).clone();
                sliding.data.starts = traj_data::Starts::Sliding { stride };
                Some(
                    LamWindows::load(&sliding, Split::Train)
                        .context("the stage-2 training windows (model.lam_slide.flow_stride)")?,
                )
            }
            None => None,
        };
        let val = LamWindows::load(&cfg, Split::Val)?;
        let test = LamWindows::load(&cfg, Split::Test)?;
        ensure!(
            train.entities() == val.entities() && train.entities() == test.entities(),
            "the splits of {} disagree on the number of entities",
            cfg.data.dir.display()
        );
        let dataset_sha256 = dataset_fingerprint(&cfg.data.dir).ok();
        let mut model = LamSlide::build(&cfg, device)?;
        let frozen = frozen_at_build(&model.vs);
        model.fit_normalisation(&train)?;
        let codec_ema = Ema::mirror(
            &model.vs,
            "codec",
            "codec_ema",
            cfg.model.lam_slide.ema_decay,
        )?;
        let flow_ema = Ema::mirror(&model.vs, "flow", "flow_ema", cfg.model.lam_slide.ema_decay)?;
        let mut state = LamState::default();
        let mut stage = Stage::Codec;
        let apply_stage = |vs: &VarStore, stage: Stage| set_trainable(vs, stage, &frozen);
        apply_stage(&model.vs, stage);
        let mut opt = Adam::new(&model.vs, adam_for(&cfg, stage));
        if mode == RunMode::Resume {
            let ck = dir.join("checkpoint.safetensors");
            let (tensors, meta) = checkpoint::load(&ck)?;
            let before = RunConfig::parse(&meta.config, &[])
                .with_context(|| format!("the config stored in {}", ck.display()))?;
            let refused: Vec<String> = cfg
                .differences(&before)
                .iter()
                .filter(|(k, _, _)| !RESUMABLE_KEYS.contains(&k.as_str()))
                .map(|(k, a, b)| format!("{k} ({a} → {b})"))
                .collect();
            ensure!(
                refused.is_empty(),
                "cannot resume {}: the run was trained with other settings of {}",
                out.display(),
                refused.join(", ")
            );
            if let (Some(was), Some(now)) = (&meta.dataset_sha256, &dataset_sha256) {
                ensure!(
                    was == now,
                    "cannot resume {}: the dataset {} has changed since the run started",
                    out.display(),
                    cfg.data.dir.display()
                );
            }
            state = serde_json::from_value(meta.history)
                .with_context(|| format!("{}: the run history", ck.display()))?;
            stage = state.optimiser.unwrap_or(Stage::Codec);
            apply_stage(&model.vs, stage);
            opt = Adam::new(&model.vs, adam_for(&cfg, stage));
            checkpoint::apply(&ck, &tensors, meta.step, &mut model.vs, Some(&mut opt))?;
        }
        let config_text = cfg.to_toml();
        traj_data::atomic_write(&dir.join("config.toml"), config_text.as_bytes())?;
        let tensorboard = if cfg.train.tensorboard {
            Some(EventWriter::create(&dir.join("tensorboard"))?)
        } else {
            None
        };
        if let Some(o) = observer.as_mut() {
            o(Event::Note(&format!(
                "LaM-SLidE: {} training windows ({} for stage 2) of {} given + {} predicted \
                 frames, {} entities",
                train.samples(),
                flow_train.as_ref().unwrap_or(&train).samples(),
                train.given,
                train.frames_per_window() - train.given,
                train.entities()
            )));
        }
        let mut t = Self {
            cfg,
            config_text,
            dir,
            train,
            flow_train,
            val,
            test,
            model,
            opt,
            stage,
            codec_ema,
            flow_ema,
            state,
            dataset_sha256,
            observer,
            frozen,
            tensorboard,
        };
        t.rewrite_log()?;
        if mode != RunMode::Resume {
            t.state.optimiser = Some(Stage::Codec);
            t.save_checkpoint()?;
        }
        Ok(t)
    }
}

fn adam_for(cfg: &RunConfig, stage: Stage) -> crate::AdamConfig {
    let mut a = cfg.train.adam;
    a.lr = match stage {
        Stage::Codec => cfg.model.lam_slide.codec_lr,
        Stage::Flow => cfg.model.lam_slide.flow_lr.unwrap_or(a.lr),
    };
    a
}

fn train_for(cfg: &RunConfig, stage: Stage) -> TrainConfig {
    let mut t = cfg.train.clone();
    t.adam = adam_for(cfg, stage);
    t.epochs = match stage {
        Stage::Codec => cfg.model.lam_slide.codec_epochs,
        Stage::Flow => cfg.model.lam_slide.flow_epochs.unwrap_or(t.epochs),
    };
    t
}

impl LamSlideTrainer {
    fn emit(&mut self, e: Event<'_>) {
        if let Some(o) = self.observer.as_mut() {
            o(e);
        }
    }

    /// The training windows of a stage.
    fn windows(&self, stage: Stage) -> &LamWindows {
        match (stage, &self.flow_train) {
            (Stage::Flow, Some(w)) => w,
            _ => &self.train,
        }
    }

    /// The model.
    pub fn model(&self) -> &LamSlide {
        &self.model
    }

    /// The stage that trains next.
    pub fn stage(&self) -> Stage {
        self.stage
    }

    /// The run directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Epoch logs of both stages so far.
    pub fn history(&self) -> Vec<&LamEpochLog> {
        self.state.codec.iter().chain(&self.state.flow).collect()
    }

    fn epochs_of(&self, stage: Stage) -> (usize, usize) {
        match stage {
            Stage::Codec => (
                self.state.codec.len(),
                self.cfg.model.lam_slide.codec_epochs,
            ),
            Stage::Flow => (self.state.flow.len(), train_for(&self.cfg, stage).epochs),
        }
    }

    /// Whether a stage has trained all its epochs.
    pub fn stage_done(&self, stage: Stage) -> bool {
        let (done, total) = self.epochs_of(stage);
        done >= total
    }

    fn rewrite_log(&self) -> Result<()> {
        let mut lines = String::new();
        for e in self.history() {
            lines.push_str(&serde_json::to_string(e)?);
            lines.push('\n');
        }
        Ok(traj_data::atomic_write(
            &self.dir.join("metrics.jsonl"),
            lines.as_bytes(),
        )?)
    }

    fn save_checkpoint(&self) -> Result<()> {
        checkpoint::save(
            &self.dir.join("checkpoint.safetensors"),
            &self.model.vs,
            Some(&self.opt),
            &CheckpointMeta::new(
                self.opt.steps(),
                self.config_text.clone(),
                serde_json::to_value(&self.state)?,
            )
            .with_dataset(self.dataset_sha256.clone()),
        )
    }

    /// Takes stage 1 from another run: the trained codec, its average and the normalisation of
    /// `checkpoint` (a LaM-SLidE checkpoint whose stage 1 finished, with the same codec
    /// settings, `codec_epochs` and dataset), so that this fresh run starts at stage 2 —
    /// stage-2 variants on one trained codec. The other run's stage-1 logs become this run's.
    pub fn adopt_codec(&mut self, checkpoint: &Path) -> Result<()> {
        ensure!(
            self.state.codec.is_empty() && self.state.flow.is_empty(),
            "{} has already trained; only a fresh run can take another run's codec",
            self.dir.path().display()
        );
        let (tensors, meta) = checkpoint::load(checkpoint)?;
        let other = RunConfig::parse(&meta.config, &[])
            .with_context(|| format!("the config stored in {}", checkpoint.display()))?;
        ensure!(
            other.model.kind == crate::ModelKind::LamSlide,
            "{} holds a {:?} model, not lam-slide",
            checkpoint.display(),
            other.model.kind.name()
        );
        let (was, now) = (&other.model.lam_slide, &self.cfg.model.lam_slide);
        ensure!(
            was.codec == now.codec
                && was.codec_epochs == now.codec_epochs
                && was.codec_lr == now.codec_lr,
            "{}: its codec was trained with other model.lam_slide.codec / codec_epochs / codec_lr \
             settings than this run's",
            checkpoint.display()
        );
        ensure!(
            other.data.dir == self.cfg.data.dir && meta.dataset_sha256 == self.dataset_sha256,
            "{}: its codec was trained on other data ({}) than this run's ({})",
            checkpoint.display(),
            other.data.dir.display(),
            self.cfg.data.dir.display()
        );
        let history: LamState = serde_json::from_value(meta.history)
            .with_context(|| format!("{}: the run history", checkpoint.display()))?;
        ensure!(
            history.codec.len() >= now.codec_epochs,
            "{}: its codec has trained {} of {} epochs (model.lam_slide.codec_epochs)",
            checkpoint.display(),
            history.codec.len(),
            now.codec_epochs
        );
        tch::no_grad(|| -> Result<()> {
            for (name, var) in self.model.vs.variables() {
                if !["codec.", "codec_ema.", "norm."]
                    .iter()
                    .any(|p| name.starts_with(p))
                {
                    continue;
                }
                let key = format!("model.{name}");
                let src = tensors.get(&key).with_context(|| {
                    format!("checkpoint {} has no weight `{key}`", checkpoint.display())
                })?;
                ensure!(
                    src.size() == var.size(),
                    "checkpoint {}: `{key}` has shape {:?}, the model {:?}",
                    checkpoint.display(),
                    src.size(),
                    var.size()
                );
                var.shallow_clone().copy_(src);
            }
            Ok(())
        })?;
        self.state.train_seconds = history.train_seconds;
        self.state.codec = history.codec;
        self.switch_to_flow()?;
        self.rewrite_log()
    }

    /// Moves on to stage 2 with a fresh optimiser (checkpointed at once).
    fn switch_to_flow(&mut self) -> Result<()> {
        self.stage = Stage::Flow;
        set_trainable(&self.model.vs, Stage::Flow, &self.frozen);
        self.opt = Adam::new(&self.model.vs, adam_for(&self.cfg, Stage::Flow));
        self.state.optimiser = Some(Stage::Flow);
        self.save_checkpoint()
    }

    fn stop(&self, what: String) -> anyhow::Error {
        anyhow::anyhow!(
            "{what}; training stopped before taking that step. The last good checkpoint, {}, \
             loads and resumes: continue with --resume (a lower --set train.adam.lr=… is \
             allowed)",
            self.dir.join("checkpoint.safetensors").display()
        )
    }

    /// The loss of one stage-1 step over the frames `items` (`window · F + frame`).
    fn codec_step_loss(&self, items: &[i64], seed: u64) -> Result<(Tensor, Vec<(String, f64)>)> {
        let m = &self.model;
        let device = m.vs.device();
        let w = &self.train;
        let f = w.frames_per_window();
        let it = Tensor::from_slice(items);
        let flat = w.frames.view([-1, w.entities(), 3]);
        let samples: Vec<u64> = items.iter().map(|&i| i as u64).collect();
        let x = augment_rigid(
            &(flat.index_select(0, &it) / m.scale()),
            self.cfg.model.lam_slide.translation_std,
            seed,
            &samples,
        )?
        .to_device(device);
        let windows = Tensor::from_slice(&items.iter().map(|&i| i / f).collect::<Vec<_>>());
        let types = m.type_ids(w, &windows, device)?;
        let ids = m.codec.ids().draw(w.entities(), seed, &samples)?;
        let out = m.codec.f_reconstruct(&x, types.as_ref(), &ids)?;
        let loss = m.codec.f_loss(&out, &x, types.as_ref())?;
        let mut parts = vec![
            ("position".to_owned(), loss.position.double_value(&[])),
            (
                "inter_distance".to_owned(),
                loss.inter_distance.double_value(&[]),
            ),
        ];
        if let Some(t) = &loss.types {
            parts.push(("types".to_owned(), t.double_value(&[])));
        }
        Ok((loss.total, parts))
    }

    /// The loss of one stage-2 step over the windows `items`.
    fn flow_step_loss(&self, items: &[i64], seed: u64) -> Result<(Tensor, Vec<(String, f64)>)> {
        let m = &self.model;
        let device = m.vs.device();
        let w = self.windows(Stage::Flow);
        let it = Tensor::from_slice(items);
        let samples: Vec<u64> = items.iter().map(|&i| i as u64).collect();
        let x = augment_rigid(
            &(w.frames.index_select(0, &it) / m.scale()),
            self.cfg.model.lam_slide.translation_std,
            seed,
            &samples,
        )?
        .to_device(device);
        let types = m.type_ids(w, &it, device)?;
        let ids = m.codec_ema.ids().draw(w.entities(), seed, &samples)?;
        let batch = TrajectoryBatch {
            positions: &x,
            types: types.as_ref(),
            ids: &ids,
            samples: &samples,
        };
        let loss = flow_loss(
            &m.flow,
            &m.codec_ema,
            &batch,
            w.given,
            self.cfg.model.lam_slide.fill,
            &self.cfg.model.lam_slide.flow_loss,
            seed,
        )?;
        let parts = vec![
            ("interpolant".to_owned(), loss.interpolant.double_value(&[])),
            ("position".to_owned(), loss.position.double_value(&[])),
            (
                "inter_distance".to_owned(),
                loss.inter_distance.double_value(&[]),
            ),
        ];
        Ok((loss.total, parts))
    }

    /// Trains one epoch of the current stage, validates, logs and checkpoints.
    pub fn epoch(&mut self) -> Result<&LamEpochLog> {
        let stage = self.stage;
        ensure!(!self.stage_done(stage), "stage {stage:?} is finished");
        let cfg = self.cfg.clone();
        let t = train_for(&cfg, stage);
        let (epoch, _) = self.epochs_of(stage);
        let items = match stage {
            Stage::Codec => self.train.samples() * self.train.frames_per_window(),
            Stage::Flow => self.windows(Stage::Flow).samples(),
        };
        let spe = (items as u64).div_ceil(t.batch_size as u64);
        let total = spe * t.epochs as u64;
        let mut order: Vec<i64> = (0..items).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(stage_seed(
            t.seed,
            stage,
            (epoch as u64).wrapping_mul(0xA24B_AED4_963E_E407),
        )));
        let started = Instant::now();
        let (mut sum, mut count, mut norms, mut steps) = (0.0, 0.0, 0.0, 0.0);
        let mut parts_sum: BTreeMap<String, f64> = BTreeMap::new();
        let mut lr = t.adam.lr;
        for chunk in order.chunks(t.batch_size) {
            let iteration = self.opt.steps() as u64;
            lr = lr_at(&t, iteration, spe, total);
            self.opt.set_lr(lr);
            let seed = stage_seed(t.seed, stage, iteration);
            let (loss, parts) = match stage {
                Stage::Codec => self.codec_step_loss(chunk, seed)?,
                Stage::Flow => self.flow_step_loss(chunk, seed)?,
            };
            let value = loss.double_value(&[]);
            if !value.is_finite() {
                return Err(self.stop(format!(
                    "the {stage:?} loss became {value} at step {iteration}"
                )));
            }
            let grads = self.opt.gradients(&loss)?;
            let norm = Adam::grad_norm(&grads);
            if !norm.is_finite() {
                return Err(self.stop(format!(
                    "the gradient norm became {norm} at step {iteration}"
                )));
            }
            self.opt.step_with(grads);
            match stage {
                Stage::Codec => self.codec_ema.update(iteration),
                Stage::Flow => self.flow_ema.update(iteration),
            }
            let w = chunk.len() as f64;
            sum += value * w;
            for (k, v) in parts {
                *parts_sum.entry(k).or_default() += v * w;
            }
            norms += norm;
            steps += 1.0;
            count += w;
            self.emit(Event::Step {
                epoch: epoch + 1,
                loss: value,
            });
        }
        let seconds = started.elapsed().as_secs_f64();
        self.state.train_seconds += seconds;
        let bs = t.batch_size;
        let last = epoch + 1 == t.epochs;
        let (val, val_reconstruction_mse) = match stage {
            Stage::Codec => (
                None,
                Some(self.model.reconstruction_mse(&self.val, bs, t.seed)?),
            ),
            Stage::Flow if (epoch + 1).is_multiple_of(t.eval_every) || last => {
                let m =
                    self.model
                        .evaluate(&self.val, cfg.model.lam_slide.val_draws, bs, t.seed)?;
                if self.state.best.is_none_or(|(_, b)| m.ade < b.ade) {
                    self.state.best = Some((epoch + 1, m));
                    checkpoint::save(
                        &self.dir.join("best.safetensors"),
                        &self.model.vs,
                        None,
                        &CheckpointMeta::new(
                            self.opt.steps(),
                            self.config_text.clone(),
                            serde_json::Value::Null,
                        )
                        .with_dataset(self.dataset_sha256.clone()),
                    )?;
                }
                (Some(m), None)
            }
            Stage::Flow => (None, None),
        };
        let log = LamEpochLog {
            stage,
            epoch: epoch + 1,
            step: self.opt.steps(),
            loss: sum / count,
            parts: parts_sum.into_iter().map(|(k, v)| (k, v / count)).collect(),
            lr,
            grad_norm: norms / steps,
            samples_per_second: count / seconds.max(1e-9),
            val_reconstruction_mse,
            val,
        };
        append_log(&self.dir.join("metrics.jsonl"), &log)?;
        self.write_scalars(&log)?;
        let mut note = format!(
            "{stage:?} epoch {}/{}: loss {:.4e}",
            log.epoch, t.epochs, log.loss
        );
        if let Some(m) = log.val_reconstruction_mse {
            note.push_str(&format!(", val reconstruction MSE {m:.4e}"));
        }
        if let Some(v) = &log.val {
            note.push_str(&format!(", val ADE {:.4} FDE {:.4}", v.ade, v.fde));
        }
        match stage {
            Stage::Codec => self.state.codec.push(log),
            Stage::Flow => self.state.flow.push(log),
        }
        self.save_checkpoint()?;
        self.emit(Event::Note(&note));
        if stage == Stage::Codec && self.stage_done(Stage::Codec) {
            self.switch_to_flow()?;
        }
        let log = match stage {
            Stage::Codec => self.state.codec.last(),
            Stage::Flow => self.state.flow.last(),
        }
        .context("an epoch was logged")?;
        Ok(log)
    }

    /// An epoch's log as TensorBoard scalars `codec/…` or `flow/…` at the stage's step.
    fn write_scalars(&mut self, log: &LamEpochLog) -> Result<()> {
        let Some(tb) = self.tensorboard.as_mut() else {
            return Ok(());
        };
        let stage = match log.stage {
            Stage::Codec => "codec",
            Stage::Flow => "flow",
        };
        let mut scalars: Vec<(String, f64)> = vec![
            (format!("{stage}/loss"), log.loss),
            (format!("{stage}/lr"), log.lr),
            (format!("{stage}/grad_norm"), log.grad_norm),
            (
                format!("{stage}/samples_per_second"),
                log.samples_per_second,
            ),
        ];
        scalars.extend(
            log.parts
                .iter()
                .map(|(k, v)| (format!("{stage}/loss_{k}"), *v)),
        );
        if let Some(m) = log.val_reconstruction_mse {
            scalars.push((format!("{stage}/val_reconstruction_mse"), m));
        }
        if let Some(v) = &log.val {
            scalars.extend([
                (format!("{stage}/val_ade"), v.ade),
                (format!("{stage}/val_fde"), v.fde),
                (format!("{stage}/val_min_ade"), v.min_ade),
                (format!("{stage}/val_min_fde"), v.min_fde),
            ]);
        }
        let refs: Vec<(&str, f64)> = scalars.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        tb.scalars(log.step, &refs)?;
        tb.flush()
    }

    /// Trains the chosen stage(s) to their configured epochs.
    pub fn train(&mut self, choice: StageChoice) -> Result<()> {
        if self.stage == Stage::Codec && self.stage_done(Stage::Codec) {
            self.switch_to_flow()?;
        }
        if choice == StageChoice::Flow {
            ensure!(
                self.stage == Stage::Flow,
                "--stage flow: the codec has trained {} of its {} epochs (model.lam_slide.\
                 codec_epochs); train it first (--stage codec, or both stages)",
                self.state.codec.len(),
                self.cfg.model.lam_slide.codec_epochs
            );
        }
        let steps = |t: &Self, stage: Stage| {
            let c = train_for(&t.cfg, stage);
            let items = match stage {
                Stage::Codec => t.train.samples() * t.train.frames_per_window(),
                Stage::Flow => t.windows(Stage::Flow).samples(),
            };
            (items as u64).div_ceil(c.batch_size as u64) * c.epochs as u64
        };
        let stages: &[Stage] = match choice {
            StageChoice::Both => &[Stage::Codec, Stage::Flow],
            StageChoice::Codec => &[Stage::Codec],
            StageChoice::Flow => &[Stage::Flow],
        };
        for &stage in stages {
            if self.stage != stage || self.stage_done(stage) {
                continue;
            }
            let total = steps(self, stage);
            let done = self.opt.steps() as u64;
            self.emit(Event::Note(&format!("LaM-SLidE stage {stage:?}")));
            self.emit(Event::Start { total, done });
            while self.stage == stage && !self.stage_done(stage) {
                self.epoch()?;
            }
        }
        Ok(())
    }

    /// Scores the selected weights on the test split (`draws` samples per window) beside
    /// constant velocity, and writes `result.json` and `timing.json` (once stage 2 is done).
    pub fn finish(&mut self) -> Result<LamSlideResult> {
        ensure!(
            self.stage == Stage::Flow && self.stage_done(Stage::Flow),
            "the run has not finished stage 2 ({} of {} epochs)",
            self.state.flow.len(),
            train_for(&self.cfg, Stage::Flow).epochs
        );
        let (best_epoch, val) = self
            .state
            .best
            .context("stage 2 ended before its first validation")?;
        checkpoint::restore(&self.dir.join("best.safetensors"), &mut self.model.vs, None)?;
        let lam = &self.cfg.model.lam_slide;
        let bs = self.cfg.train.batch_size;
        let seed = self.cfg.train.seed;
        let stages = self
            .model
            .evaluate_stages(&self.test, lam.draws, bs, seed, true)?;
        let result = LamSlideResult {
            model: "lam-slide".into(),
            dataset: self.cfg.data.dir.clone(),
            seed,
            codec_epochs: self.state.codec.len(),
            flow_epochs: self.state.flow.len(),
            best_epoch,
            codec_test_mse: self.model.reconstruction_mse(&self.test, bs, seed)?,
            val,
            test: stages.model,
            codec_test: stages.codec.context("stage metrics were asked for")?,
            flow_vs_codec_test: stages
                .flow_vs_codec
                .context("stage metrics were asked for")?,
            const_vel_test: const_vel_metrics(&self.test)?,
        };
        write_json(&self.dir.join("result.json"), &result)?;
        write_json(
            &self.dir.join("timing.json"),
            &serde_json::json!({ "train_seconds": self.state.train_seconds }),
        )?;
        Ok(result)
    }
}

/// Constant velocity from the last two given frames on every window of `w` (original units).
pub fn const_vel_metrics(w: &LamWindows) -> Result<SampledMetrics> {
    let it = Tensor::arange(w.samples(), (Kind::Int64, Device::Cpu));
    let t = w.frames_per_window() - w.given;
    let pred = w.to_original(&w.const_vel(&it)?, &it);
    let target = w.to_original(&w.frames.narrow(1, w.given, t), &it);
    let mut sums = SampledMetricSums::default();
    sums.add(&pred.unsqueeze(1), &target);
    Ok(sums.finish())
}

/// A trained LaM-SLidE rebuilt from a checkpoint (its config read from the checkpoint).
pub fn restore_lam_slide(
    checkpoint: &Path,
    device: Device,
) -> Result<(CheckedRunConfig, LamSlide)> {
    let (tensors, meta) = checkpoint::load(checkpoint)?;
    let cfg = RunConfig::from_toml(&meta.config, &[])
        .with_context(|| format!("the config stored in {}", checkpoint.display()))?;
    if cfg.model.kind != crate::ModelKind::LamSlide {
        bail!(
            "{} holds a {:?} model, not lam-slide",
            checkpoint.display(),
            cfg.model.kind.name()
        );
    }
    let mut model = LamSlide::build(&cfg, device)?;
    checkpoint::apply(checkpoint, &tensors, meta.step, &mut model.vs, None)?;
    Ok((cfg, model))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_checks_name_the_key() {
        let _rng = crate::trainer::torch_rng();
        let mut c = LamSlideConfig::default();
        assert!(c.check(10).is_ok());
        c.flow.latent_dim = c.codec.latent_dim + 1;
        assert!(
            c.check(10)
                .unwrap_err()
                .to_string()
                .contains("flow.latent_dim")
        );
        let c = LamSlideConfig {
            ema_decay: 1.0,
            ..Default::default()
        };
        assert!(c.check(10).unwrap_err().to_string().contains("ema_decay"));
        for (c, key) in [
            (
                LamSlideConfig {
                    flow_epochs: Some(0),
                    ..Default::default()
                },
                "flow_epochs",
            ),
            (
                LamSlideConfig {
                    flow_lr: Some(f64::NAN),
                    ..Default::default()
                },
                "flow_lr",
            ),
        ] {
            assert!(c.check(10).unwrap_err().to_string().contains(key), "{key}");
        }
    }
}
