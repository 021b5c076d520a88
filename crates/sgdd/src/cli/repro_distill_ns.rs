//! `sgdd repro distill-ns`: SDKD's own setting — 2-D Navier–Stokes vorticity, `T_in` frames in,
//! `T_out` frames out — a light grid student alone, + output KD, + frequency-aligned KD (DFT
//! bands over time and space), two teachers (an FNO and a deliberately weak FNO trained one
//! epoch) by average weighting and by A2D, the closed-form ridge initialisation of the
//! student's readout, hidden-state KD through an adapter, and a U-Net student alone and with
//! frequency-aligned KD, beside the teachers, over seeds, one budget. Writes
//! `OUT/distill-ns.json` and `OUT/distill-ns.md`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use serde::Serialize;
use sgdd_train::{
    CheckedGridConfig, DistillEpochLog, DistillOptions, DistillTiming, GridDistillConfig,
    GridDistiller, GridMetrics, GridResult,
};
use traj_data::navier_stokes::NsDatasetSpec;

use super::repro::{self, Budget, ReproArgs};

/// One row: a name, its config keys, how many of the teachers (FNO, weak FNO) it uses, and
/// the row of the same student trained alone (the gap it closes is measured from there).
#[derive(Debug, Clone, Copy)]
struct Row {
    name: &'static str,
    set: &'static [&'static str],
    teachers: usize,
    alone: usize,
}

const TEACHER_NAMES: [&str; 2] = ["FNO", "FNO, 1 epoch (weak)"];

/// The rows. The frequency-aligned rows weigh the low band by `distill.alpha` of the base
/// config, and the hidden-state KD row its readout inputs by β = 1 (through a learned adapter:
/// the student's width is not the FNO's), fixed before any run.
const ROWS: &[Row] = &[
    Row {
        name: "student alone",
        set: &["distill.loss=\"none\""],
        teachers: 0,
        alone: 0,
    },
    Row {
        name: "+ output KD (FNO)",
        set: &["distill.loss=\"output\""],
        teachers: 1,
        alone: 0,
    },
    Row {
        name: "+ freq KD (FNO)",
        set: &["distill.loss=\"freq\""],
        teachers: 1,
        alone: 0,
    },
    Row {
        name: "+ freq KD, FNO + weak, average",
        set: &["distill.loss=\"freq\"", "distill.weighting=\"average\""],
        teachers: 2,
        alone: 0,
    },
    Row {
        name: "+ freq KD, FNO + weak, A2D",
        set: &["distill.loss=\"freq\"", "distill.weighting=\"a2d\""],
        teachers: 2,
        alone: 0,
    },
    Row {
        name: "+ freq KD (FNO) + ridge init",
        set: &["distill.loss=\"freq\"", "distill.init=\"ridge\""],
        teachers: 1,
        alone: 0,
    },
    Row {
        name: "+ freq KD + hidden KD (FNO)",
        set: &["distill.loss=\"freq\"", "distill.hidden_weight=1.0"],
        teachers: 1,
        alone: 0,
    },
    Row {
        name: "U-Net student alone",
        set: &[
            "model.arch=\"unet\"",
            "model.width=8",
            "model.layers=2",
            "distill.loss=\"none\"",
        ],
        teachers: 0,
        alone: 7,
    },
    Row {
        name: "U-Net + freq KD (FNO)",
        set: &[
            "model.arch=\"unet\"",
            "model.width=8",
            "model.layers=2",
            "distill.loss=\"freq\"",
        ],
        teachers: 1,
        alone: 7,
    },
];
const FREQ_ROW: usize = 2;
const RANDOM_ROW: usize = 2;
const RIDGE_ROW: usize = 5;

fn base_config(budget: Budget) -> &'static str {
    match budget {
        Budget::Quick => include_str!("../../../../configs/repro/distill-ns-quick.toml"),
        Budget::Standard | Budget::Full => {
            include_str!("../../../../configs/repro/distill-ns.toml")
        }
    }
}

fn config(
    budget: Budget,
    data: &Path,
    set: &[String],
    seed: u64,
    device: &str,
) -> Result<CheckedGridConfig> {
    let mut set = set.to_vec();
    set.push(format!("data.dir={:?}", data.display().to_string()));
    set.push(format!("train.seed={seed}"));
    set.push(format!("train.device={device:?}"));
    GridDistillConfig::from_toml(base_config(budget), &set).context("the distill-ns base config")
}

/// The keys that turn the base (student) config into the teacher's.
fn teacher_keys(weak: bool) -> Vec<String> {
    let mut set: Vec<String> = [
        "model.arch=\"fno\"",
        "model.width=20",
        "model.layers=4",
        "model.modes=8",
        "distill.loss=\"none\"",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    if weak {
        set.push("train.epochs=1".into());
    }
    set
}

#[derive(Debug, Clone, Serialize)]
struct RunRecord {
    result: GridResult,
    timing: DistillTiming,
    #[serde(skip)]
    history: Vec<DistillEpochLog<GridMetrics>>,
}

/// A run: reuses a finished run, resumes an unfinished one, or starts it.
fn one_run(cfg: CheckedGridConfig, out: &Path, force: bool) -> Result<RunRecord> {
    let mode = repro::table_run_mode(out, force);
    let mut d = GridDistiller::new(
        cfg,
        out,
        DistillOptions {
            mode,
            observer: None,
        },
    )?;
    d.train(None)?;
    let (result, timing) = d.finish()?;
    Ok(RunRecord {
        result,
        timing,
        history: d.history().to_vec(),
    })
}

/// Mean ± std over seeds of one row.
#[derive(Debug, Clone, Serialize)]
struct Summary {
    model: String,
    teachers: usize,
    seeds: usize,
    mse_mean: f64,
    mse_std: f64,
    rel_l2_mean: f64,
    rel_l2_std: f64,
    parameters: i64,
    train_seconds_mean: f64,
    inference_samples_per_second: f64,
    mean_alpha: Vec<Option<f64>>,
    /// `(alone − row) / (alone − FNO teacher)` test MSE, `alone` the same student trained
    /// alone (rows with a teacher).
    gap_closed: Option<f64>,
    /// Ridge row: per seed, (first epoch whose validation MSE reaches the random-init run's
    /// best, that run's best epoch).
    epochs_to_random_best: Vec<(Option<usize>, usize)>,
    runs: Vec<RunRecord>,
}

fn summarise(row: &Row, runs: Vec<RunRecord>) -> Summary {
    let col = |f: &dyn Fn(&RunRecord) -> f64| runs.iter().map(f).collect::<Vec<_>>();
    let (mse_mean, mse_std) = repro::mean_std(&col(&|r| r.result.test.mse));
    let (rel_l2_mean, rel_l2_std) = repro::mean_std(&col(&|r| r.result.test.rel_l2));
    let mean_alpha = (0..row.teachers)
        .map(|i| {
            let a: Vec<f64> = runs
                .iter()
                .filter_map(|r| r.result.teachers[i].mean_alpha)
                .collect();
            (!a.is_empty()).then(|| repro::mean_std(&a).0)
        })
        .collect();
    Summary {
        model: row.name.to_owned(),
        teachers: row.teachers,
        seeds: runs.len(),
        mse_mean,
        mse_std,
        rel_l2_mean,
        rel_l2_std,
        parameters: runs.first().map_or(0, |r| r.result.parameters),
        train_seconds_mean: repro::mean_std(&col(&|r| r.timing.train_seconds)).0,
        inference_samples_per_second: repro::mean_std(&col(&|r| r.timing.student_inference)).0,
        mean_alpha,
        gap_closed: None,
        epochs_to_random_best: Vec::new(),
        runs,
    }
}

/// A teacher's row (its own run's test metrics) and its throughput measured beside the
/// students.
#[derive(Debug, Clone, Serialize)]
struct TeacherSummary {
    model: String,
    checkpoint: PathBuf,
    mse: f64,
    rel_l2: f64,
    parameters: i64,
    train_seconds: f64,
    inference_samples_per_second: f64,
}

/// The dataset directory of the budget, generated (or completed) when needed.
fn dataset(root: &Path, budget: Budget) -> Result<PathBuf> {
    let (spec, name) = match budget {
        Budget::Quick => (NsDatasetSpec::quick(), "navier-stokes-quick"),
        Budget::Standard | Budget::Full => (NsDatasetSpec::default(), "navier-stokes"),
    };
    let dir = root.join(name);
    let t0 = Instant::now();
    spec.generate_dir(&dir, &|done, total| {
        if done % 20 == 0 || done == total {
            eprintln!("repro: Navier–Stokes {done}/{total} sequences");
        }
    })
    .with_context(|| format!("generating {}", dir.display()))?;
    eprintln!(
        "repro: dataset {} ready in {:.0?}",
        dir.display(),
        t0.elapsed()
    );
    Ok(dir)
}

pub fn run(args: &ReproArgs) -> Result<()> {
    let started = Instant::now();
    let budget = args.budget();
    let data = dataset(&args.data_root, budget)?;
    // a directory and outputs per budget, as every table's (see `repro::run_table`)
    let name = format!("distill-ns{}", budget.suffix());
    let root = args.out.join(&name);
    let mut teachers = Vec::new();
    let mut teacher_runs = Vec::new();
    for (i, name) in TEACHER_NAMES.iter().enumerate() {
        let dir = root
            .join("teachers")
            .join(if i == 0 { "fno" } else { "fno-1-epoch" });
        let cfg = config(
            budget,
            &data,
            &teacher_keys(i == 1),
            100 * i as u64,
            &args.device,
        )?;
        let t0 = Instant::now();
        let rec = one_run(cfg, &dir, args.force).with_context(|| format!("teacher {name}"))?;
        eprintln!(
            "repro: teacher {name:<22} MSE {:.4e} rel L2 {:.4} in {:.0?}",
            rec.result.test.mse,
            rec.result.test.rel_l2,
            t0.elapsed()
        );
        teachers.push(dir.join("best.safetensors"));
        teacher_runs.push(rec);
    }
    // seeds outermost, so an interrupted table has every row of its first seeds
    let mut runs: Vec<Vec<RunRecord>> = ROWS.iter().map(|_| Vec::new()).collect();
    for seed in 0..args.seeds {
        for (row, row_runs) in ROWS.iter().zip(&mut runs) {
            let mut set: Vec<String> = row.set.iter().map(|s| (*s).to_owned()).collect();
            let list: Vec<String> = teachers[..row.teachers]
                .iter()
                .map(|p| format!("{:?}", p.display().to_string()))
                .collect();
            set.push(format!("distill.teachers=[{}]", list.join(", ")));
            let cfg = config(budget, &data, &set, seed, &args.device)?;
            let slug = repro::run_slug(row.name);
            let out = root.join("students").join(format!("{slug}-s{seed}"));
            let t0 = Instant::now();
            let rec = one_run(cfg, &out, args.force)
                .with_context(|| format!("{} / seed {seed}", row.name))?;
            eprintln!(
                "repro: {:<34} seed {seed}: MSE {:.4e} rel L2 {:.4} in {:.0?}",
                row.name,
                rec.result.test.mse,
                rec.result.test.rel_l2,
                t0.elapsed()
            );
            row_runs.push(rec);
        }
    }
    let mut rows: Vec<Summary> = ROWS
        .iter()
        .zip(runs)
        .map(|(row, runs)| summarise(row, runs))
        .collect();
    let scores: Vec<Vec<(usize, f64)>> = rows[RIDGE_ROW]
        .runs
        .iter()
        .map(|r| {
            let val = |e: &DistillEpochLog<GridMetrics>| e.val.map(|v| (e.epoch, v.mse));
            r.history.iter().filter_map(val).collect()
        })
        .collect();
    let best: Vec<(f64, usize)> = rows[RANDOM_ROW]
        .runs
        .iter()
        .map(|r| (r.result.val.mse, r.result.best_epoch))
        .collect();
    rows[RIDGE_ROW].epochs_to_random_best = repro::epochs_to_reach(&scores, &best);
    // the teachers' throughput as measured beside the students (same process, same batches)
    let teacher_rows: Vec<TeacherSummary> = TEACHER_NAMES
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let sps: Vec<f64> = rows
                .iter()
                .filter(|r| r.teachers > i)
                .flat_map(|r| r.runs.iter().map(|x| x.timing.teacher_inference[i]))
                .collect();
            let own = &teacher_runs[i];
            TeacherSummary {
                model: (*name).to_owned(),
                checkpoint: teachers[i].clone(),
                mse: own.result.test.mse,
                rel_l2: own.result.test.rel_l2,
                parameters: own.result.parameters,
                train_seconds: own.timing.train_seconds,
                inference_samples_per_second: if sps.is_empty() {
                    own.timing.student_inference
                } else {
                    repro::mean_std(&sps).0
                },
            }
        })
        .collect();
    let fno = teacher_rows[0].mse;
    for (i, row) in ROWS.iter().enumerate() {
        if row.teachers > 0 {
            let alone = rows[row.alone].mse_mean;
            rows[i].gap_closed = Some((alone - rows[i].mse_mean) / (alone - fno));
        }
    }
    let gap = rows[FREQ_ROW].gap_closed.unwrap_or(f64::NAN);
    std::fs::create_dir_all(&args.out)?;
    let report = serde_json::json!({
        "setting": "2-D Navier–Stokes vorticity (ν = 1e-3, FNO forcing), T_in frames → T_out frames; test MSE and relative L2 in the data's units",
        "config": format!("configs/repro/distill-ns{}.toml", if budget == Budget::Quick { "-quick" } else { "" }),
        "dataset": data,
        "budget": budget,
        "device": args.device,
        "wall_seconds": started.elapsed().as_secs_f64(),
        "teachers": teacher_rows,
        "gap_closed_by_freq_kd": gap,
        "rows": rows,
    });
    let md = markdown(&rows, &teacher_rows, gap, budget, args.seeds);
    repro::write_table(&args.out, &name, &report, &md, started)
}

fn markdown(
    rows: &[Summary],
    teachers: &[TeacherSummary],
    gap: f64,
    budget: Budget,
    seeds: u64,
) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "2-D Navier–Stokes vorticity (ν = 10⁻³, FNO forcing), `T_in` → `T_out` frames; test \
         MSE and relative L2 (FNO's), mean ± std over {seeds} seeds of the student (the teachers: \
         one run each). Budget{}: every run gets the same epochs and batch, selection by \
         validation MSE. Inference: test samples/s, best of three passes, student and teachers in \
         the same process. α: the mean weight of each teacher (FNO / weak FNO).\n",
        match budget {
            Budget::Quick => " quick",
            Budget::Standard => " standard",
            Budget::Full => " full",
        }
    );
    let _ = writeln!(
        s,
        "| model | test MSE | rel L2 | gap closed | params | train s | inference samples/s | α |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|");
    for t in teachers {
        let _ = writeln!(
            s,
            "| teacher: {} | {:.4e} | {:.4} | | {} | {:.0} | {:.0} | |",
            t.model, t.mse, t.rel_l2, t.parameters, t.train_seconds, t.inference_samples_per_second
        );
    }
    for r in rows {
        let alpha = if r.mean_alpha.len() > 1 {
            r.mean_alpha
                .iter()
                .map(|a| a.map_or("–".to_owned(), |v| format!("{v:.2}")))
                .collect::<Vec<_>>()
                .join(" / ")
        } else {
            String::new()
        };
        let _ = writeln!(
            s,
            "| {} | {:.4e} ± {:.1e} | {:.4} ± {:.4} | {} | {} | {:.0} | {:.0} | {} |",
            r.model,
            r.mse_mean,
            r.mse_std,
            r.rel_l2_mean,
            r.rel_l2_std,
            r.gap_closed
                .map_or(String::new(), |g| format!("{:.0} %", g * 100.0)),
            r.parameters,
            r.train_seconds_mean,
            r.inference_samples_per_second,
            alpha
        );
    }
    let _ = writeln!(
        s,
        "\nGap closed: (alone − distilled) / (alone − FNO teacher) test MSE, `alone` the same \
         student trained alone; by `{}`: {:.0} %.",
        rows[FREQ_ROW].model,
        gap * 100.0
    );
    let ridge = &rows[RIDGE_ROW];
    if !ridge.epochs_to_random_best.is_empty() {
        let parts: Vec<String> = ridge
            .epochs_to_random_best
            .iter()
            .map(|(got, best)| match got {
                Some(e) => format!("{e} vs {best}"),
                None => format!("never vs {best}"),
            })
            .collect();
        let _ = writeln!(
            s,
            "\nRidge initialisation: epochs for `{}` to reach the best validation MSE of `{}`, \
             against the epoch where that run reached it, per seed: {}.",
            ridge.model,
            rows[RANDOM_ROW].model,
            parts.join(", ")
        );
    }
    s
}
