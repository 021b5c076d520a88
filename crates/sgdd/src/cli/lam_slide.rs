//! The LaM-SLidE side of `sgdd train`, `sgdd eval` and `sgdd predict` (`model.kind =
//! "lam-slide"`): two training stages, and `K` sampled futures per window.

use std::path::Path;

use anyhow::{Context, Result};
use clap::ValueEnum;
use tch::{Kind, Tensor};
use traj_data::formats::npz::{NpzArray, encode_npz};

use sgdd_train::{
    CheckedRunConfig, LamEpochLog, LamSlideResult, LamSlideTrainer, LamWindows, ModelKind, RunMode,
    SampledMetricSums, Stage, StageChoice,
};

use super::eval::{EvalArgs, PredictArgs, data_of};
use super::train::{TrainArgs, progress};

/// `--stage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum StageArg {
    /// Stage 1 then stage 2.
    #[default]
    Both,
    /// Stage 1: the identifier codec.
    Codec,
    /// Stage 2: the latent flow model.
    Flow,
}

impl From<StageArg> for StageChoice {
    fn from(s: StageArg) -> Self {
        match s {
            StageArg::Both => StageChoice::Both,
            StageArg::Codec => StageChoice::Codec,
            StageArg::Flow => StageChoice::Flow,
        }
    }
}

/// Whether a checkpoint holds a LaM-SLidE run.
pub fn is_lam_slide(checkpoint: &Path) -> Result<bool> {
    let (cfg, _) = sgdd_train::checkpoint_config(checkpoint)?;
    Ok(cfg.model.kind == ModelKind::LamSlide)
}

/// `sgdd train` for `model.kind = "lam-slide"`.
pub fn train(args: &TrainArgs, cfg: CheckedRunConfig, mode: RunMode) -> Result<()> {
    if let Some(result) = run(
        cfg,
        &args.out,
        mode,
        args.stage.into(),
        args.init_from.as_deref(),
        args.quiet,
    )? {
        println!("{}", serde_json::to_string(&result)?);
    }
    Ok(())
}

/// Trains the chosen stage(s) of a LaM-SLidE run into `out` and, once stage 2 is done,
/// scores it (`result.json`); `None` while a stage is still to train. `codec_from`: a fresh run
/// takes its trained codec (stage 1) from this checkpoint and starts at stage 2.
pub fn run(
    cfg: CheckedRunConfig,
    out: &Path,
    mode: RunMode,
    stage: StageChoice,
    codec_from: Option<&Path>,
    quiet: bool,
) -> Result<Option<LamSlideResult>> {
    let (bar, observer) = progress(quiet, cfg.train.epochs);
    let mut trainer = LamSlideTrainer::new(cfg, out, mode, Some(observer))
        .with_context(|| format!("run {}", out.display()))?;
    if let Some(ck) = codec_from {
        trainer
            .adopt_codec(ck)
            .with_context(|| format!("run {}: the codec of {}", out.display(), ck.display()))?;
    }
    trainer
        .train(stage)
        .with_context(|| format!("run {}", out.display()))?;
    bar.finish_and_clear();
    if !trainer.stage_done(Stage::Flow) {
        eprintln!(
            "{}: stage {:?} is next (train it with --resume --stage flow)",
            out.display(),
            trainer.stage()
        );
        return Ok(None);
    }
    let result = trainer.finish()?;
    draw(&trainer)?;
    if !quiet {
        eprintln!("{}", summary(out, &result));
    }
    Ok(Some(result))
}

/// `loss.png`: each stage's training loss, the codec's validation reconstruction error and the
/// flow model's validation ADE, per epoch.
fn draw(trainer: &LamSlideTrainer) -> Result<()> {
    let history = trainer.history();
    let points = |stage: Stage, f: &dyn Fn(&LamEpochLog) -> Option<f64>| -> Vec<(f64, f64)> {
        history
            .iter()
            .filter(|h| h.stage == stage)
            .filter_map(|h| f(h).map(|v| (h.epoch as f64, v)))
            .collect()
    };
    crate::plots::loss_curve(
        &trainer.dir().join("loss.png"),
        "lam-slide: stage 1 (codec) and stage 2 (latent flow)",
        "epoch of the stage",
        &[
            crate::plots::Panel {
                y_label: "stage 1: loss, val MSE (orig. units²)",
                series: vec![
                    crate::plots::Series {
                        label: "train loss (normalised units)",
                        points: points(Stage::Codec, &|h| Some(h.loss)),
                    },
                    crate::plots::Series {
                        label: "val reconstruction MSE",
                        points: points(Stage::Codec, &|h| h.val_reconstruction_mse),
                    },
                ],
            },
            crate::plots::Panel {
                y_label: "stage 2: loss, val ADE (orig. units)",
                series: vec![
                    crate::plots::Series {
                        label: "train loss (normalised units)",
                        points: points(Stage::Flow, &|h| Some(h.loss)),
                    },
                    crate::plots::Series {
                        label: "val ADE",
                        points: points(Stage::Flow, &|h| h.val.map(|v| v.ade)),
                    },
                ],
            },
        ],
    )
}

fn summary(out: &Path, r: &LamSlideResult) -> String {
    format!(
        "lam-slide on {} (seed {}): {} codec + {} flow epochs, best flow epoch {}.\n  \
         test over K = {}: ADE {:.4} FDE {:.4}, minADE {:.4} minFDE {:.4}; constant velocity \
         ADE {:.4} FDE {:.4}; codec reconstruction MSE {:.3e}\n  stage 1 alone (codec \
         reconstruction of the true future) ADE {:.4} FDE {:.4}; stage 2 alone (samples vs that \
         reconstruction) ADE {:.4} FDE {:.4}\n  run directory {}",
        r.dataset.display(),
        r.seed,
        r.codec_epochs,
        r.flow_epochs,
        r.best_epoch,
        r.test.draws,
        r.test.ade,
        r.test.fde,
        r.test.min_ade,
        r.test.min_fde,
        r.const_vel_test.ade,
        r.const_vel_test.fde,
        r.codec_test_mse,
        r.codec_test.ade,
        r.codec_test.fde,
        r.flow_vs_codec_test.ade,
        r.flow_vs_codec_test.fde,
        out.display()
    )
}

/// `sgdd eval` of a LaM-SLidE checkpoint: ADE/FDE over `K` samples and minADE/minFDE
/// (`model`), and each stage's share apart (`codec`: the codec's reconstruction of the true
/// future; `flow_vs_codec`: the samples against that reconstruction).
pub fn eval(args: &EvalArgs) -> Result<()> {
    let device = args.device.resolve()?;
    let (cfg, data) = data_of(&args.checkpoint, args.data.as_deref())?;
    let mut run = (*cfg).clone();
    run.data = data;
    let w = LamWindows::load(&run, args.split.into())?;
    let (cfg, model) = sgdd_train::restore_lam_slide(&args.checkpoint, device)?;
    let mut model = model;
    if let Some(solver) = &args.solver {
        let mut sampler = model.sampler().clone();
        sampler.solver = serde_json::from_value(serde_json::Value::String(solver.clone()))
            .with_context(|| format!("--solver {solver}: expected euler or dopri5"))?;
        if let Some(p) = args.points {
            sampler.points = p;
        }
        model.set_sampler(sampler)?;
    } else if let Some(p) = args.points {
        let mut sampler = model.sampler().clone();
        sampler.points = p;
        model.set_sampler(sampler)?;
    }
    let k = args.draws.unwrap_or(cfg.model.lam_slide.draws);
    let m = model.evaluate_stages(&w, k, cfg.train.batch_size, cfg.train.seed, true)?;
    println!("{}", serde_json::to_string(&m)?);
    Ok(())
}

/// `sgdd predict` of a LaM-SLidE checkpoint: `x` (`samples × K × T × N × 3`), `target`
/// (`samples × T × N × 3`), `given` (`samples × C × N × 3`), `sample`, and per-sample `ade` /
/// `fde` averaged over the `K` draws.
pub fn predict(args: &PredictArgs) -> Result<()> {
    anyhow::ensure!(
        args.rollout.is_none() && args.start_frame.is_none(),
        "--rollout and --start-frame are not available for model.kind = \"lam-slide\" (its \
         windows are the checkpoint's data settings)"
    );
    let device = args.device.resolve()?;
    let (cfg, model) = sgdd_train::restore_lam_slide(&args.checkpoint, device)?;
    let ds = traj_data::read_dataset(&args.input)?;
    let w = LamWindows::from_dataset(&ds, &cfg)
        .with_context(|| format!("windows of {}", args.input.display()))?;
    let k = args.draws.unwrap_or(cfg.model.lam_slide.draws);
    let all: Vec<i64> = (0..w.samples()).collect();
    let t = w.frames_per_window() - w.given;
    let (mut xs, mut ade, mut fde) = (vec![], vec![], vec![]);
    for chunk in all.chunks(cfg.train.batch_size) {
        let it = Tensor::from_slice(chunk);
        let preds = model.sample(&w, chunk, k, cfg.train.seed)?;
        let target = w.to_original(&w.frames.index_select(0, &it).narrow(1, w.given, t), &it);
        for i in 0..chunk.len() as i64 {
            let mut s = SampledMetricSums::default();
            s.add(&preds.narrow(0, i, 1), &target.narrow(0, i, 1));
            let m = s.finish();
            ade.push(m.ade);
            fde.push(m.fde);
        }
        xs.push(preds);
    }
    let x = Tensor::cat(&xs, 0);
    let idx = Tensor::arange(w.samples(), (Kind::Int64, tch::Device::Cpu));
    let target = w.to_original(&w.frames.narrow(1, w.given, t), &idx);
    let given = w.to_original(&w.frames.narrow(1, 0, w.given), &idx);
    let shape = |t: &Tensor| t.size().iter().map(|&d| d as u64).collect::<Vec<_>>();
    let values = |t: &Tensor| Vec::<f64>::try_from(t.to_kind(Kind::Double).flatten(0, -1));
    let samples = w.samples() as u64;
    let index: Vec<f64> = (0..w.samples()).map(|i| i as f64).collect();
    let (xv, tv, gv) = (values(&x)?, values(&target)?, values(&given)?);
    let bytes = encode_npz(
        &[
            NpzArray::F64("x", shape(&x), &xv),
            NpzArray::F64("target", shape(&target), &tv),
            NpzArray::F64("given", shape(&given), &gv),
            NpzArray::F64("sample", vec![samples], &index),
            NpzArray::F64("ade", vec![samples], &ade),
            NpzArray::F64("fde", vec![samples], &fde),
        ],
        &args.out,
    )?;
    traj_data::atomic_write(&args.out, &bytes)?;
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    println!(
        "wrote {} (x: {:?}); ADE {:.4} FDE {:.4} over K = {k}",
        args.out.display(),
        x.size(),
        mean(&ade),
        mean(&fde)
    );
    Ok(())
}
