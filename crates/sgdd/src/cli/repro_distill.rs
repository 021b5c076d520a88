//! `sgdd repro distill-nbody`: light students distilled from the N-body table's teachers on
//! charged particles — the student alone, + output KD, + frequency-aligned KD, several teachers
//! (with a deliberately weak one) by average weighting and by A2D, the MLP and EGNO students
//! with and without the closed-form ridge initialisation of their readout — beside the teachers, over seeds, one budget.
//! Writes `OUT/distill-nbody.json` and `OUT/distill-nbody.md`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use serde::Serialize;
use sgdd_train::{
    CheckedDistillConfig, DistillConfig, DistillEpochLog, DistillOptions, DistillResult,
    DistillTiming, Distiller,
};
use traj_data::nbody::System;

use super::repro::{self, Budget, ReproArgs};

/// The teachers of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
enum TeacherId {
    /// EGNO of the N-body table (seed 0).
    Egno,
    /// SGDD-EGNO of the N-body table (seed 0).
    Sgdd,
    /// EGNO trained for one epoch (seed 100): the teacher A2D should trust least.
    Weak,
}

const ALL_TEACHERS: [TeacherId; 3] = [TeacherId::Egno, TeacherId::Sgdd, TeacherId::Weak];

impl TeacherId {
    fn name(self) -> &'static str {
        match self {
            Self::Egno => "EGNO",
            Self::Sgdd => "SGDD-EGNO",
            Self::Weak => "EGNO, 1 epoch (weak)",
        }
    }
}

/// One student row: a name, its config keys, its teachers.
#[derive(Debug, Clone, Copy)]
struct Row {
    name: &'static str,
    set: &'static [&'static str],
    teachers: &'static [TeacherId],
}

/// Frequency-aligned rows weigh the low band by α = 4 (SDKD's premise: light students underfit
/// the low-frequency trend), fixed before any run; α = 1 is plain output KD exactly (the bands
/// are an orthogonal split), and one row shows α = 0.25.
const ROWS: &[Row] = &[
    Row {
        name: "EGNO-16 alone",
        set: &[],
        teachers: &[],
    },
    Row {
        name: "EGNO-16 + output KD (EGNO)",
        set: &["distill.loss=\"output\""],
        teachers: &[TeacherId::Egno],
    },
    Row {
        name: "EGNO-16 + freq KD α=4 (EGNO)",
        set: &["distill.loss=\"freq\"", "distill.alpha=4.0"],
        teachers: &[TeacherId::Egno],
    },
    Row {
        name: "EGNO-16 + freq KD α=0.25 (EGNO)",
        set: &["distill.loss=\"freq\"", "distill.alpha=0.25"],
        teachers: &[TeacherId::Egno],
    },
    Row {
        name: "EGNO-16 + freq KD α=4 (SGDD-EGNO)",
        set: &["distill.loss=\"freq\"", "distill.alpha=4.0"],
        teachers: &[TeacherId::Sgdd],
    },
    Row {
        name: "EGNO-16 + freq KD α=4, 3 teachers, average",
        set: &[
            "distill.loss=\"freq\"",
            "distill.alpha=4.0",
            "distill.weighting=\"average\"",
        ],
        teachers: &ALL_TEACHERS,
    },
    Row {
        name: "EGNO-16 + freq KD α=4, 3 teachers, A2D",
        set: &[
            "distill.loss=\"freq\"",
            "distill.alpha=4.0",
            "distill.weighting=\"a2d\"",
        ],
        teachers: &ALL_TEACHERS,
    },
    Row {
        name: "EGNO-16 + freq KD α=4, 3 teachers, A2D (unit-normalised)",
        set: &[
            "distill.loss=\"freq\"",
            "distill.alpha=4.0",
            "distill.weighting=\"a2d\"",
            "distill.a2d_normalise=true",
        ],
        teachers: &ALL_TEACHERS,
    },
    Row {
        name: "MLP alone",
        set: &["student.kind=\"mlp\"", "student.hidden=64"],
        teachers: &[],
    },
    Row {
        name: "MLP + freq KD α=4 (EGNO)",
        set: &[
            "student.kind=\"mlp\"",
            "student.hidden=64",
            "distill.loss=\"freq\"",
            "distill.alpha=4.0",
        ],
        teachers: &[TeacherId::Egno],
    },
    Row {
        name: "MLP + freq KD α=4 (EGNO) + ridge init",
        set: &[
            "student.kind=\"mlp\"",
            "student.hidden=64",
            "distill.loss=\"freq\"",
            "distill.alpha=4.0",
            "distill.init=\"ridge\"",
        ],
        teachers: &[TeacherId::Egno],
    },
    Row {
        name: "EGNO-16 + freq KD α=4 (EGNO) + ridge init",
        set: &[
            "distill.loss=\"freq\"",
            "distill.alpha=4.0",
            "distill.init=\"ridge\"",
        ],
        teachers: &[TeacherId::Egno],
    },
];

/// `(ridge row, random-init row)`: each ridge row is compared with the same student and
/// objective from a random start (the epochs it takes to reach that run's best validation).
const RIDGE_PAIRS: [(usize, usize); 2] = [(10, 9), (11, 2)];

fn base_config(budget: Budget) -> &'static str {
    match budget {
        Budget::Quick => include_str!("../../../../configs/repro/distill-nbody-quick.toml"),
        Budget::Standard | Budget::Full => {
            include_str!("../../../../configs/repro/distill-nbody.toml")
        }
    }
}

fn config(
    budget: Budget,
    data: &Path,
    row: &Row,
    teachers: &[PathBuf],
    seed: u64,
    device: &str,
) -> Result<CheckedDistillConfig> {
    let mut set: Vec<String> = row.set.iter().map(|s| (*s).to_owned()).collect();
    set.push(format!("data.dir={:?}", data.display().to_string()));
    let list: Vec<String> = teachers
        .iter()
        .map(|p| format!("{:?}", p.display().to_string()))
        .collect();
    set.push(format!("distill.teachers=[{}]", list.join(", ")));
    set.push(format!("train.seed={seed}"));
    set.push(format!("train.device={device:?}"));
    DistillConfig::from_toml(base_config(budget), &set).context("the distill-nbody base config")
}

/// A student run: reuses a finished run, resumes an unfinished one, or starts it.
fn one_run(cfg: CheckedDistillConfig, out: &Path, force: bool) -> Result<RunRecord> {
    let mode = repro::table_run_mode(out, force);
    let mut d = Distiller::new(
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

#[derive(Debug, Clone, Serialize)]
struct RunRecord {
    result: DistillResult,
    timing: DistillTiming,
    #[serde(skip)]
    history: Vec<DistillEpochLog>,
}

/// Mean ± std over seeds of one row.
#[derive(Debug, Clone, Serialize)]
struct Summary {
    model: String,
    teachers: Vec<TeacherId>,
    seeds: usize,
    s2s_mean: f64,
    s2s_std: f64,
    s2t_mean: f64,
    s2t_std: f64,
    parameters: i64,
    train_seconds_mean: f64,
    inference_samples_per_second: f64,
    /// Mean weight of each teacher (A2D / average rows).
    mean_alpha: Vec<Option<f64>>,
    /// Ridge row: per seed, (first epoch whose validation S2S reaches the random-init run's best
    /// validation S2S, that run's best epoch).
    epochs_to_random_best: Vec<(Option<usize>, usize)>,
    runs: Vec<RunRecord>,
}

/// A teacher's row: its test metrics, parameters and throughput (from the runs that used it).
#[derive(Debug, Clone, Serialize)]
struct TeacherSummary {
    model: String,
    checkpoint: PathBuf,
    s2s: f64,
    s2t: f64,
    parameters: i64,
    inference_samples_per_second: f64,
}

/// The three teachers' checkpoints: EGNO and SGDD-EGNO as `sgdd repro nbody` trains them (seed
/// 0, reused from that table's run directories when they are finished), and a weak EGNO.
fn teachers(args: &ReproArgs, data: &Path) -> Result<Vec<PathBuf>> {
    let label = System::Charged.to_string();
    let suffix = args.budget().suffix();
    // the nbody table's runs of the same budget (see `repro::run_table`)
    let nbody = args.out.join(format!("nbody{suffix}"));
    let root = args.out.join(format!("distill-nbody{suffix}"));
    let mut out = Vec::new();
    for (id, variant, dir) in [
        (
            TeacherId::Egno,
            repro::EGNO,
            nbody.join(&label).join("egno-s0"),
        ),
        (
            TeacherId::Sgdd,
            repro::SGDD,
            nbody.join(&label).join("sgdd-egno-s0"),
        ),
        (
            TeacherId::Weak,
            repro::EGNO,
            root.join("teachers").join("egno-1-epoch"),
        ),
    ] {
        let mut cfg = repro::config("nbody", args.budget(), data, variant, 0, &args.device)?;
        if id == TeacherId::Weak {
            let mut raw = cfg.into_inner();
            raw.train.epochs = 1;
            raw.train.seed = 100;
            cfg = raw.check()?;
        }
        let t0 = Instant::now();
        let (r, _) =
            repro::one_run(cfg, &dir, false).with_context(|| format!("teacher {}", id.name()))?;
        eprintln!(
            "repro: teacher {:<22} S2S {:.4} (×10⁻²) in {:.0?} ({})",
            id.name(),
            r.test.s2s * 100.0,
            t0.elapsed(),
            dir.display()
        );
        out.push(dir.join("best.safetensors"));
    }
    Ok(out)
}

pub fn run(args: &ReproArgs) -> Result<()> {
    let started = Instant::now();
    let budget = args.budget();
    let data = repro::ensure_dataset(&args.data_root, System::Charged, budget)?;
    let teacher_ckpts = teachers(args, &data)?;
    let mut rows = Vec::new();
    for row in ROWS {
        let ckpts: Vec<PathBuf> = row
            .teachers
            .iter()
            .map(|&t| teacher_ckpts[ALL_TEACHERS.iter().position(|&a| a == t).unwrap_or(0)].clone())
            .collect();
        let mut runs = Vec::new();
        for seed in 0..args.seeds {
            let cfg = config(budget, &data, row, &ckpts, seed, &args.device)?;
            let slug = repro::run_slug(row.name);
            let out = args
                .out
                .join(format!("distill-nbody{}", budget.suffix()))
                .join("students")
                .join(format!("{slug}-s{seed}"));
            let t0 = Instant::now();
            let rec = one_run(cfg, &out, args.force)
                .with_context(|| format!("{} / seed {seed}", row.name))?;
            eprintln!(
                "repro: {:<42} seed {seed}: S2S {:.4} S2T {:.4} (×10⁻²) in {:.0?}",
                row.name,
                rec.result.test.s2s * 100.0,
                rec.result.test.s2t * 100.0,
                t0.elapsed()
            );
            runs.push(rec);
        }
        rows.push(summarise(row, runs));
    }
    // the ridge rows: epochs to reach the random-init row's best validation, per seed
    for (ridge, random) in RIDGE_PAIRS {
        let scores: Vec<Vec<(usize, f64)>> = rows[ridge]
            .runs
            .iter()
            .map(|r| {
                let val = |e: &DistillEpochLog| e.val.map(|v| (e.epoch, v.s2s));
                r.history.iter().filter_map(val).collect()
            })
            .collect();
        let best: Vec<(f64, usize)> = rows[random]
            .runs
            .iter()
            .map(|r| (r.result.val.s2s, r.result.best_epoch))
            .collect();
        rows[ridge].epochs_to_random_best = repro::epochs_to_reach(&scores, &best);
    }
    let teacher_rows = teacher_summaries(&rows);
    std::fs::create_dir_all(&args.out)?;
    let report = serde_json::json!({
        "setting": "charged N-body, EGNO's windows (condition on frame 30, predict frames 32 … 40); test MSE ×10⁻², original units",
        "config": format!("configs/repro/distill-nbody{}.toml", if budget == Budget::Quick { "-quick" } else { "" }),
        "budget": budget,
        "device": args.device,
        "wall_seconds": started.elapsed().as_secs_f64(),
        "teachers": teacher_rows,
        "rows": rows,
    });
    let md = markdown(&rows, &teacher_rows, budget, args.seeds);
    let name = format!("distill-nbody{}", budget.suffix());
    repro::write_table(&args.out, &name, &report, &md, started)
}

fn summarise(row: &Row, runs: Vec<RunRecord>) -> Summary {
    let col = |f: &dyn Fn(&RunRecord) -> f64| runs.iter().map(f).collect::<Vec<_>>();
    let (s2s_mean, s2s_std) = repro::mean_std(&col(&|r| r.result.test.s2s * 100.0));
    let (s2t_mean, s2t_std) = repro::mean_std(&col(&|r| r.result.test.s2t * 100.0));
    let mean_alpha = (0..row.teachers.len())
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
        teachers: row.teachers.to_vec(),
        seeds: runs.len(),
        s2s_mean,
        s2s_std,
        s2t_mean,
        s2t_std,
        parameters: runs.first().map_or(0, |r| r.result.student_parameters),
        train_seconds_mean: repro::mean_std(&col(&|r| r.timing.train_seconds)).0,
        inference_samples_per_second: repro::mean_std(&col(&|r| r.timing.student_inference)).0,
        mean_alpha,
        epochs_to_random_best: Vec::new(),
        runs,
    }
}

/// Each teacher's metrics (identical in every run that used it) and its throughput, averaged
/// over those runs.
fn teacher_summaries(rows: &[Summary]) -> Vec<TeacherSummary> {
    ALL_TEACHERS
        .iter()
        .filter_map(|&id| {
            let mut found: Option<TeacherSummary> = None;
            let mut sps = Vec::new();
            for row in rows {
                let Some(i) = row.teachers.iter().position(|&t| t == id) else {
                    continue;
                };
                for r in &row.runs {
                    let t = &r.result.teachers[i];
                    sps.push(r.timing.teacher_inference[i]);
                    found.get_or_insert_with(|| TeacherSummary {
                        model: id.name().to_owned(),
                        checkpoint: t.checkpoint.clone(),
                        s2s: t.test.s2s * 100.0,
                        s2t: t.test.s2t * 100.0,
                        parameters: t.parameters,
                        inference_samples_per_second: 0.0,
                    });
                }
            }
            found.map(|mut f| {
                f.inference_samples_per_second = repro::mean_std(&sps).0;
                f
            })
        })
        .collect()
}

fn markdown(rows: &[Summary], teachers: &[TeacherSummary], budget: Budget, seeds: u64) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Charged N-body, EGNO's windows; test MSE ×10⁻² (mean ± std over {seeds} seeds of the \
         student; the teachers are seed 0 of `sgdd repro nbody`). Budget{}: the students get the \
         teachers' epochs and batch size, selection by validation S2S. Inference: test samples/s, \
         the best of three passes, in the same process as the student's (batch = the training \
         batch). α: the mean weight of each teacher (EGNO, SGDD-EGNO, weak EGNO) over all steps.\n",
        match budget {
            Budget::Quick => " (--budget quick)",
            Budget::Standard => " (--budget standard)",
            Budget::Full => " (--budget full: the standard student budget)",
        }
    );
    let _ = writeln!(
        s,
        "| model | S2S | S2T | params | train s | inference samples/s | α |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|");
    for t in teachers {
        let _ = writeln!(
            s,
            "| teacher: {} | {:.3} | {:.3} | {} | – | {:.0} | |",
            t.model, t.s2s, t.s2t, t.parameters, t.inference_samples_per_second
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
            "| {} | {:.3} ± {:.3} | {:.3} ± {:.3} | {} | {:.0} | {:.0} | {} |",
            r.model,
            r.s2s_mean,
            r.s2s_std,
            r.s2t_mean,
            r.s2t_std,
            r.parameters,
            r.train_seconds_mean,
            r.inference_samples_per_second,
            alpha
        );
    }
    for (ridge, random) in RIDGE_PAIRS {
        let ridge = &rows[ridge];
        if ridge.epochs_to_random_best.is_empty() {
            continue;
        }
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
            "\nRidge initialisation: epochs for `{}` to reach the best validation S2S of `{}`, \
             against the epoch where that run reached it, per seed: {}.",
            ridge.model,
            rows[random].model,
            parts.join(", ")
        );
    }
    s
}
