//! `sgdd eval`, `sgdd predict` and `sgdd spectrum`: a trained checkpoint on data.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use clap::{Args, ValueEnum};
use serde::Serialize;
use tch::{Kind, Tensor};
use traj_data::Split;
use traj_data::formats::npz::{NpzArray, encode_npz};

use sgdd_train::{CheckedRunConfig, DeviceChoice, Prepared, predict_split};

use crate::plots;

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
    /// A checkpoint written by `sgdd train`, or by `sgdd distill` with an EGNO student (e.g.
    /// `RUN/best.safetensors`).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// The split of the run's dataset to score.
    #[arg(long, value_enum, default_value = "test")]
    pub split: SplitArg,
    /// Score another dataset directory than the one the checkpoint was trained on (its node
    /// features and edge attributes must fit the model: the weights are checked shape by
    /// shape). Without it, a dataset that changed since training is refused.
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// `auto`, `cpu`, `cuda` or `cuda:N`.
    #[arg(long, default_value = "auto")]
    pub device: DeviceChoice,
    /// LaM-SLidE: samples `K` per window (default: the run's `model.lam_slide.draws`).
    #[arg(long, value_name = "K")]
    pub draws: Option<usize>,
    /// LaM-SLidE: the sampler's ODE solver, `euler` or `dopri5` (default: the run's
    /// `model.lam_slide.sampler.solver`).
    #[arg(long, value_name = "SOLVER")]
    pub solver: Option<String>,
    /// LaM-SLidE: Euler's time points (default: the run's `model.lam_slide.sampler.points`).
    #[arg(long, value_name = "N")]
    pub points: Option<usize>,
}

/// The checkpoint's config and its data config — the dataset verified to be the data it was
/// trained on — or `other`'s.
pub(crate) fn data_of(
    checkpoint: &Path,
    other: Option<&Path>,
) -> Result<(CheckedRunConfig, sgdd_train::DataConfig)> {
    let (cfg, trained_on) = sgdd_train::checkpoint_config(checkpoint)?;
    let mut data = cfg.data.clone();
    match other {
        Some(dir) => data.dir = dir.to_owned(),
        None => {
            let now = sgdd_train::dataset_fingerprint(&data.dir)?;
            if let Some(was) = trained_on {
                ensure!(
                    was == now,
                    "{} was trained on another version of {} (manifest sha256 {was}, now {now}); \
                     the dataset was regenerated or changed. Pass --data {} to score it anyway",
                    checkpoint.display(),
                    data.dir.display(),
                    data.dir.display()
                );
            }
        }
    }
    Ok((cfg, data))
}

/// The checkpoint's config and a split of its dataset (see [`data_of`]), checked to fit the
/// model.
fn split_of(
    checkpoint: &Path,
    split: Split,
    other: Option<&Path>,
) -> Result<(CheckedRunConfig, Prepared)> {
    let (cfg, data) = data_of(checkpoint, other)?;
    let p = sgdd_train::load_split(&data, split, data.max_eval)?.1;
    Ok((cfg, p))
}

pub fn eval(args: &EvalArgs) -> Result<()> {
    if crate::cli::lam_slide::is_lam_slide(&args.checkpoint)? {
        return crate::cli::lam_slide::eval(args);
    }
    let device = args.device.resolve()?;
    let (cfg, p) = split_of(&args.checkpoint, args.split.into(), args.data.as_deref())?;
    let (_, _vs, model) = sgdd_train::restore_model(&args.checkpoint, &p, device)?;
    let metrics = sgdd_train::evaluate(&model, &p, cfg.train.batch_size, device)?;
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
    /// The `.npz` to write: `x` (`samples × T × N × 3` predicted positions, original units),
    /// `target` (the true positions), `x0` (`samples × N × 3`, the condition frame), `times`
    /// (time of each target after the condition frame), `sample` (window index), and per-sample
    /// `s2s` / `s2t`.
    #[arg(long)]
    pub out: PathBuf,
    /// Chain the model autoregressively over R windows (R × the trained horizon): each window
    /// starts from the previous one's last predicted frame. Writes `x`/`target` of all R·T
    /// frames, `times`, and `frame_mse` (the error growth per frame), and prints it.
    #[arg(long, value_name = "R")]
    pub rollout: Option<usize>,
    /// The condition frame of the first window (default: the checkpoint's `data.start_frame`);
    /// a rollout of R windows needs `start + R·delta_frame + 1` frames.
    #[arg(long, value_name = "FRAME")]
    pub start_frame: Option<usize>,
    /// `auto`, `cpu`, `cuda` or `cuda:N`.
    #[arg(long, default_value = "auto")]
    pub device: DeviceChoice,
    /// LaM-SLidE: samples `K` per window, written as `x: samples × K × T × N × 3` (default:
    /// the run's `model.lam_slide.draws`).
    #[arg(long, value_name = "K")]
    pub draws: Option<usize>,
}

/// Verifies `file` against the manifest of its directory when one lists it (a flipped byte is
/// an error); says so when none does (the user's own file).
fn verify_input(file: &Path) -> Result<()> {
    let dir = file.parent().unwrap_or(Path::new("."));
    let name = file
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("{} is not a file name", file.display()))?;
    match traj_data::Manifest::read(dir) {
        Ok(man) if man.entry(name).is_some() => {
            man.verify(dir, name)?;
        }
        _ => eprintln!(
            "note: no manifest.json beside {} lists it, so its checksum is not verified",
            file.display()
        ),
    }
    Ok(())
}

pub fn predict(args: &PredictArgs) -> Result<()> {
    if crate::cli::lam_slide::is_lam_slide(&args.checkpoint)? {
        verify_input(&args.input)?;
        return crate::cli::lam_slide::predict(args);
    }
    let device = args.device.resolve()?;
    let (cfg, _) = sgdd_train::checkpoint_config(&args.checkpoint)?;
    verify_input(&args.input)?;
    let ds = traj_data::read_dataset(&args.input)?;
    let mut data = cfg.data.clone();
    if let Some(f) = args.start_frame {
        anyhow::ensure!(
            matches!(data.starts, traj_data::Starts::Fixed(_)),
            "--start-frame applies to windows at a fixed start frame; the checkpoint's data uses \
             {:?}",
            data.starts
        );
        data.starts = traj_data::Starts::Fixed(vec![f]);
    }
    let p = sgdd_train::prepare(&ds, &data)
        .with_context(|| format!("windows of {}", args.input.display()))?;
    let (cfg, _vs, model) = sgdd_train::restore_model(&args.checkpoint, &p, device)?;
    if let Some(r) = args.rollout {
        return write_rollout(args, &model, &ds, &data, r, cfg.train.batch_size, device);
    }
    let preds = predict_split(&model, &p, cfg.train.batch_size, device)
        .with_context(|| format!("predicting {}", args.input.display()))?;
    let shape = |t: &Tensor| t.size().iter().map(|&d| d as u64).collect::<Vec<_>>();
    let values = |t: &Tensor| Vec::<f64>::try_from(t.to_kind(Kind::Double).flatten(0, -1));
    let (x, target, start) = (
        values(&preds.pred)?,
        values(&preds.truth)?,
        values(&preds.start)?,
    );
    let (s2s, s2t) = (
        values(&preds.per_sample_s2s())?,
        values(&preds.per_sample_s2t())?,
    );
    let samples = p.samples as u64;
    let index: Vec<f64> = (0..p.samples).map(|i| i as f64).collect();
    let bytes = encode_npz(
        &[
            NpzArray::F64("x", shape(&preds.pred), &x),
            NpzArray::F64("target", shape(&preds.truth), &target),
            NpzArray::F64("x0", shape(&preds.start), &start),
            NpzArray::F64("times", vec![p.target_times.len() as u64], &p.target_times),
            NpzArray::F64("sample", vec![samples], &index),
            NpzArray::F64("s2s", vec![samples], &s2s),
            NpzArray::F64("s2t", vec![samples], &s2t),
        ],
        &args.out,
    )?;
    traj_data::atomic_write(&args.out, &bytes)?;
    println!(
        "wrote {} (x: {:?}); S2S {:.4} S2T {:.4} (×10⁻²)",
        args.out.display(),
        preds.pred.size(),
        preds.metrics.s2s * 100.0,
        preds.metrics.s2t * 100.0
    );
    Ok(())
}

fn write_rollout(
    args: &PredictArgs,
    model: &sgdd_train::Model,
    ds: &traj_data::Dataset,
    data: &sgdd_train::DataConfig,
    windows: usize,
    batch_size: usize,
    device: tch::Device,
) -> Result<()> {
    let ro = sgdd_train::rollout(model, ds, data, windows, batch_size, device)
        .with_context(|| format!("rollout on {}", args.input.display()))?;
    let shape = |t: &Tensor| t.size().iter().map(|&d| d as u64).collect::<Vec<_>>();
    let values = |t: &Tensor| Vec::<f64>::try_from(t.to_kind(Kind::Double).flatten(0, -1));
    let (x, target) = (values(&ro.pred)?, values(&ro.truth)?);
    let frames = ro.times.len() as u64;
    let bytes = encode_npz(
        &[
            NpzArray::F64("x", shape(&ro.pred), &x),
            NpzArray::F64("target", shape(&ro.truth), &target),
            NpzArray::F64("times", vec![frames], &ro.times),
            NpzArray::F64("frame_mse", vec![frames], &ro.frame_mse),
        ],
        &args.out,
    )?;
    traj_data::atomic_write(&args.out, &bytes)?;
    println!("rollout of {windows} windows: error growth per predicted frame (original units)");
    println!("{:>6} {:>12} {:>14}", "frame", "time", "MSE");
    for (i, (t, m)) in ro.times.iter().zip(&ro.frame_mse).enumerate() {
        println!("{:>6} {t:>12.4} {m:>14.6e}", i + 1);
    }
    for (r, m) in ro.windows.iter().enumerate() {
        println!(
            "window {}: S2S {:.4} S2T {:.4} (×10⁻²)",
            r + 1,
            m.s2s * 100.0,
            m.s2t * 100.0
        );
    }
    println!("wrote {} (x: {:?})", args.out.display(), ro.pred.size());
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
    let mut first: Option<(PathBuf, Option<String>)> = None;
    for (i, ck) in args.checkpoint.iter().enumerate() {
        let (ck_cfg, fingerprint) = sgdd_train::checkpoint_config(ck)?;
        match &first {
            None => first = Some((ck_cfg.data.dir.clone(), fingerprint.clone())),
            Some((dir, fp)) => {
                if *dir != ck_cfg.data.dir || *fp != fingerprint {
                    bail!(
                        "{} was trained on {} but {} on {}: one spectrum plot compares models on \
                         the same data",
                        ck.display(),
                        ck_cfg.data.dir.display(),
                        args.checkpoint[0].display(),
                        dir.display()
                    );
                }
            }
        }
        let (cfg, p) = split_of(ck, args.split.into(), None)?;
        let (_, _vs, model) = sgdd_train::restore_model(ck, &p, device)?;
        let preds = predict_split(&model, &p, cfg.train.batch_size, device)?;
        let (pred, truth) = (preds.pred, preds.truth);
        let sp = sgdd_train::error_spectrum(&p, &pred, &truth, args.bands)?;
        let total = sp.total.max(f64::MIN_POSITIVE);
        let label = args
            .label
            .get(i)
            .cloned()
            .unwrap_or_else(|| cfg.model.kind.name().to_owned());
        out.push(ModelSpectrum {
            label,
            fraction: sp.energy.iter().map(|e| e / total).collect(),
            energy: sp.energy,
            edges: sp.edges,
            total: sp.total,
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
        "band of μ (low to high frequency)",
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
