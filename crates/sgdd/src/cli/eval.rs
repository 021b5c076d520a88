//! `sgdd eval`, `sgdd predict` and `sgdd spectrum`: a trained checkpoint on data.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
use clap::{Args, ValueEnum};
use serde::Serialize;
use tch::{Device, Kind, Tensor};
use traj_data::Split;
use traj_data::formats::npz::{NpzArray, encode_npz};

use crate::data::{self, GraphCache, Prepared};
use crate::train;
use crate::{DeviceChoice, plots};

/// Which split to read.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SplitArg {
    /// Training split.
    Train,
    /// Validation split.
    Val,
    /// Test split.
    Test,
}

impl From<SplitArg> for Split {
    fn from(s: SplitArg) -> Self {
        match s {
            SplitArg::Train => Split::Train,
            SplitArg::Val => Split::Val,
            SplitArg::Test => Split::Test,
        }
    }
}

/// `sgdd eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// A checkpoint written by `sgdd train` (e.g. `RUN/best.safetensors`).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// The split of the run's dataset to score.
    #[arg(long, value_enum, default_value = "test")]
    pub split: SplitArg,
    /// `auto`, `cpu`, `cuda` or `cuda:N`.
    #[arg(long, default_value = "auto")]
    pub device: DeviceChoice,
}

fn split_of(checkpoint: &Path, split: Split) -> Result<Prepared> {
    let cfg = train::checkpoint_config(checkpoint)?;
    Ok(data::load(&cfg.data, split, cfg.data.max_eval)?.1)
}

pub fn eval(args: &EvalArgs) -> Result<()> {
    let device = args.device.resolve()?;
    let p = split_of(&args.checkpoint, args.split.into())?;
    let (cfg, _vs, model) = train::restore_model(&args.checkpoint, &p, device)?;
    let metrics = train::evaluate(&model, &p, cfg.train.batch_size, device)?;
    println!("{}", serde_json::to_string(&metrics)?);
    Ok(())
}

/// `sgdd predict`.
#[derive(Debug, Args)]
pub struct PredictArgs {
    /// A checkpoint written by `sgdd train`.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Trajectories in the project's format (a `.safetensors` dataset file); windows are cut as
    /// the checkpoint's config says.
    #[arg(long)]
    pub input: PathBuf,
    /// The `.npz` to write: key `x`, `samples × T × N × 3` predicted positions (original units),
    /// plus `target` (the true positions) and `times` (time of each target after the condition
    /// frame).
    #[arg(long)]
    pub out: PathBuf,
    /// `auto`, `cpu`, `cuda` or `cuda:N`.
    #[arg(long, default_value = "auto")]
    pub device: DeviceChoice,
}

fn predictions(
    model: &crate::Model,
    p: &Prepared,
    bs: usize,
    device: Device,
) -> Result<(Tensor, Tensor)> {
    let _guard = tch::no_grad_guard();
    let (mut preds, mut truths) = (vec![], vec![]);
    let mut graphs = GraphCache::default();
    let idx: Vec<i64> = (0..p.samples).collect();
    for chunk in idx.chunks(bs) {
        let batch = p.batch(chunk, device, &mut graphs)?;
        let pred = model.predict(&batch)?;
        preds.push(data::to_original(&pred, &batch, p.n).to_device(Device::Cpu));
        truths.push(data::to_original(&batch.y, &batch, p.n).to_device(Device::Cpu));
    }
    Ok((Tensor::cat(&preds, 0), Tensor::cat(&truths, 0)))
}

pub fn predict(args: &PredictArgs) -> Result<()> {
    let device = args.device.resolve()?;
    let cfg = train::checkpoint_config(&args.checkpoint)?;
    let ds = traj_data::read_dataset(&args.input)?;
    let p = data::prepare(&ds, &cfg.data)
        .with_context(|| format!("windows of {}", args.input.display()))?;
    let (cfg, _vs, model) = train::restore_model(&args.checkpoint, &p, device)?;
    let (pred, truth) = predictions(&model, &p, cfg.train.batch_size, device)?;
    let shape = |t: &Tensor| t.size().iter().map(|&d| d as u64).collect::<Vec<_>>();
    let values = |t: &Tensor| Vec::<f64>::try_from(t.to_kind(Kind::Double).flatten(0, -1));
    let (x, target) = (values(&pred)?, values(&truth)?);
    let bytes = encode_npz(
        &[
            NpzArray::F64("x", shape(&pred), &x),
            NpzArray::F64("target", shape(&truth), &target),
            NpzArray::F64("times", vec![p.target_times.len() as u64], &p.target_times),
        ],
        &args.out,
    )?;
    traj_data::atomic_write(&args.out, &bytes)?;
    println!("wrote {} (x: {:?})", args.out.display(), pred.size());
    Ok(())
}

/// `sgdd spectrum`.
#[derive(Debug, Args)]
pub struct SpectrumArgs {
    /// One or more checkpoints (e.g. an EGNO run and an SGDD run on the same data).
    #[arg(long, required = true)]
    pub checkpoint: Vec<PathBuf>,
    /// A label per checkpoint (defaults to the model kind).
    #[arg(long)]
    pub label: Vec<String>,
    /// The split to analyse.
    #[arg(long, value_enum, default_value = "test")]
    pub split: SplitArg,
    /// Number of equal-width joint-frequency bands over `[0, max μ]`.
    #[arg(long, default_value_t = 6)]
    pub bands: usize,
    /// Output directory (`spectrum.json`, `spectrum.png`).
    #[arg(long)]
    pub out: PathBuf,
    /// `auto`, `cpu`, `cuda` or `cuda:N`.
    #[arg(long, default_value = "auto")]
    pub device: DeviceChoice,
}

/// Error energy of one model per joint-frequency band.
#[derive(Debug, Serialize)]
struct ModelSpectrum {
    label: String,
    /// Band edges in joint eigenvalue μ = λ_t + λ_s.
    edges: Vec<f64>,
    /// Fraction of the total squared error in each band.
    fraction: Vec<f64>,
    /// Squared error per band, summed over samples and coordinates (original units).
    energy: Vec<f64>,
    /// Total squared error.
    total: f64,
}

pub fn spectrum(args: &SpectrumArgs) -> Result<()> {
    ensure!(args.bands >= 1, "--bands must be ≥ 1");
    let device = args.device.resolve()?;
    std::fs::create_dir_all(&args.out)?;
    let mut out = Vec::new();
    for (i, ck) in args.checkpoint.iter().enumerate() {
        let p = split_of(ck, args.split.into())?;
        let (cfg, _vs, model) = train::restore_model(ck, &p, device)?;
        let (pred, truth) = predictions(&model, &p, cfg.train.batch_size, device)?;
        // the full joint basis (K = N·T): every error component has a frequency
        let (n, t) = (p.n as usize, p.t as usize);
        let graph = spectral_core::Graph::from_edges(n, &p.undirected)?;
        let basis = spectral_core::JointBasis::from_graph(
            &graph,
            t,
            &spectral_core::JointBasisConfig::new(n * t),
        )?;
        let err = Vec::<f64>::try_from((&pred - &truth).to_kind(Kind::Double).flatten(0, -1))?;
        let mu_max = basis.eigenvalues().iter().copied().fold(0.0, f64::max);
        let edges = spectral_core::uniform_band_edges(0.0, mu_max + 1e-9, args.bands);
        let be = spectral_core::band_energy(&basis, &err, p.samples as usize, 3, &edges)?;
        let total = be.total.max(f64::MIN_POSITIVE);
        let label = args
            .label
            .get(i)
            .cloned()
            .unwrap_or_else(|| format!("{:?}", cfg.model.kind).to_lowercase());
        out.push(ModelSpectrum {
            label,
            fraction: be.energy.iter().map(|e| e / total).collect(),
            energy: be.energy,
            edges,
            total: be.total,
        });
    }
    let json = args.out.join("spectrum.json");
    std::fs::write(&json, serde_json::to_string_pretty(&out)?)?;
    let series: Vec<plots::Bars<'_>> = out
        .iter()
        .map(|m| plots::Bars {
            label: &m.label,
            values: m.energy.clone(),
        })
        .collect();
    let labels: Vec<String> = out[0]
        .edges
        .windows(2)
        .map(|w| format!("{:.2}–{:.2}", w[0], w[1]))
        .collect();
    plots::grouped_bars(
        &args.out.join("spectrum.png"),
        "prediction error per joint-frequency band (μ = λ_t + λ_s)",
        "band of μ (low → high frequency)",
        "squared error",
        &labels,
        &series,
    )?;
    for m in &out {
        println!(
            "{:<12} {}",
            m.label,
            m.fraction
                .iter()
                .map(|f| format!("{:5.1}%", f * 100.0))
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    println!(
        "wrote {} and {}",
        json.display(),
        args.out.join("spectrum.png").display()
    );
    Ok(())
}
