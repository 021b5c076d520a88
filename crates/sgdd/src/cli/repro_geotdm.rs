//! `sgdd repro nbody-geotdm` and `sgdd repro md17-geotdm`: GeoTDM's protocols (the ones of
//! LaM-SLidE's Tables 1 and 2) — frames 0–9 given, frames 10–29 predicted. LaM-SLidE (conditioned
//! on the ten given frames, `K` samples) beside the deterministic models of this workspace on the
//! same windows: EGNO and SGDD-EGNO conditioned on the last given frame and its velocity, and
//! constant velocity; ADE / FDE in original units by the same metric code.
//!
//! - `nbody-geotdm`: charged (5 bodies), springs (5) and gravity (10) from our generators with
//!   the published parameters, one window per trajectory, and the published rows of Table 1
//!   printed beside ours.
//! - `md17-geotdm --molecule M`: the GFN2-xTB trajectory of `sgdd data generate md17-xtb` in
//!   GeoTDM's MD17 setting (all atoms, every 10th frame, chronological 60 / 20 / 20), windows
//!   sliding by one frame at the anchors the conversion records. No published rows: the papers'
//!   MD17 is DFT dynamics, not xTB.
//!
//! Each writes `OUT/<table>.json` and `OUT/<table>.md`.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use serde::Serialize;
use traj_data::molecule::{GeoTdmMd17Spec, Md17Setting};
use traj_data::nbody::System;

use sgdd_train::{CheckedRunConfig, SampledMetrics, StageChoice};

use super::lam_slide;
use super::repro::{
    self, Budget, CONST_VEL, EGNO, Md17ReproArgs, ReproArgs, SGDD, Variant, mean_std, one_run,
    write_table,
};

/// LaM-SLidE: ten given frames (`[model.lam_slide]` of the base config).
const LAM_SLIDE: Variant = Variant {
    name: "LaM-SLidE",
    set: &["model.kind=\"lam-slide\"", "data.condition_frames=10"],
};

/// The rows of each system, in order.
const ROWS: [Variant; 4] = [CONST_VEL, EGNO, SGDD, LAM_SLIDE];

/// A figure of LaM-SLidE's Table 1 (GeoTDM's protocol), printed beside ours.
#[derive(Debug, Clone, Copy, Serialize)]
struct Published {
    system: &'static str,
    model: &'static str,
    ade: f64,
    fde: f64,
}

/// LaM-SLidE's Table 1 (seed 004): the rows the issue names.
const PUBLISHED: [Published; 9] = [
    Published {
        system: "charged",
        model: "EGNN",
        ade: 0.186,
        fde: 0.426,
    },
    Published {
        system: "charged",
        model: "EqMotion",
        ade: 0.141,
        fde: 0.310,
    },
    Published {
        system: "charged",
        model: "GeoTDM",
        ade: 0.110,
        fde: 0.258,
    },
    Published {
        system: "charged",
        model: "LaM-SLidE",
        ade: 0.104,
        fde: 0.238,
    },
    Published {
        system: "springs",
        model: "GeoTDM",
        ade: 0.0030,
        fde: 0.0079,
    },
    Published {
        system: "springs",
        model: "LaM-SLidE",
        ade: 0.0070,
        fde: 0.0135,
    },
    Published {
        system: "gravity",
        model: "EqMotion",
        ade: 0.302,
        fde: 0.671,
    },
    Published {
        system: "gravity",
        model: "GeoTDM",
        ade: 0.256,
        fde: 0.613,
    },
    Published {
        system: "gravity",
        model: "LaM-SLidE",
        ade: 0.157,
        fde: 0.406,
    },
];

/// One measured run: ADE / FDE (for LaM-SLidE averaged over its `K` draws) and, for LaM-SLidE,
/// minADE / minFDE over the draws and each stage's share.
#[derive(Debug, Clone, Serialize)]
struct Run {
    seed: u64,
    ade: f64,
    fde: f64,
    sampled: Option<SampledMetrics>,
    /// LaM-SLidE: the codec's reconstruction of the true future against it.
    codec: Option<SampledMetrics>,
    /// LaM-SLidE: the samples against the codec's reconstruction of the true future.
    flow_vs_codec: Option<SampledMetrics>,
    train_seconds: f64,
    dir: String,
}

/// Mean ± std over seeds of one (system, model).
#[derive(Debug, Clone, Serialize)]
struct Row {
    system: String,
    model: String,
    seeds: usize,
    ade_mean: f64,
    ade_std: f64,
    fde_mean: f64,
    fde_std: f64,
    min_ade_mean: Option<f64>,
    min_fde_mean: Option<f64>,
    train_seconds: f64,
    runs: Vec<Run>,
}

/// What one GeoTDM table runs.
struct GeoTable {
    /// File stem of the outputs and the run directory under `OUT`.
    name: String,
    /// The base config (`configs/repro/<config>-quick|-standard.toml`).
    config: &'static str,
    /// The datasets, in table order.
    datasets: Vec<GeoData>,
    /// The first paragraph of the markdown table.
    intro: String,
}

/// One dataset of a table and the config keys it sets beyond every row's.
struct GeoData {
    label: String,
    dir: std::path::PathBuf,
    set: Vec<String>,
}

fn config(
    budget: Budget,
    table: &str,
    data: &Path,
    v: Variant,
    seed: u64,
    device: &str,
    extra: &[String],
) -> Result<CheckedRunConfig> {
    anyhow::ensure!(
        budget != Budget::Full,
        "repro {table} has the budgets quick and standard; pass --quick or --budget standard"
    );
    repro::config_with(table, budget, data, v, seed, device, extra)
}

/// Trains (or resumes, or reuses) one LaM-SLidE run and scores it.
fn lam_slide_run(cfg: CheckedRunConfig, out: &Path, force: bool) -> Result<Run> {
    let mode = repro::table_run_mode(out, force);
    let seed = cfg.train.seed;
    let r = lam_slide::run(cfg, out, mode, StageChoice::Both, None, true)?
        .context("both stages were asked for")?;
    let seconds: f64 = std::fs::read_to_string(out.join("timing.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["train_seconds"].as_f64())
        .unwrap_or(f64::NAN);
    Ok(Run {
        seed,
        ade: r.test.ade,
        fde: r.test.fde,
        sampled: Some(r.test),
        codec: Some(r.codec_test),
        flow_vs_codec: Some(r.flow_vs_codec_test),
        train_seconds: seconds,
        dir: out.display().to_string(),
    })
}

/// `sgdd repro nbody-geotdm`.
pub fn run(args: &ReproArgs) -> Result<()> {
    let budget = args.budget();
    let datasets = System::ALL
        .into_iter()
        .map(|system| {
            Ok(GeoData {
                label: system.to_string(),
                dir: repro::ensure_dataset(&args.data_root, system, budget)?,
                set: Vec::new(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let n = datasets.len();
    let table = GeoTable {
        name: "nbody-geotdm".into(),
        config: "nbody-geotdm",
        datasets,
        intro: nbody_intro(budget, n),
    };
    run_table(args, &table)
}

/// The first paragraph of the N-body table.
fn nbody_intro(budget: Budget, systems: usize) -> String {
    format!(
        "GeoTDM N-body protocol over {systems} systems: frames 0–9 given, 10–29 predicted; test \
         ADE / FDE in original units (mean ± std over seeds). Budget{}",
        match budget {
            Budget::Quick =>
                " (--quick: 400 / 200 / 200 trajectories, not the protocol's 3000 / 2000 / 2000)",
            Budget::Standard => " (--budget standard: 3000 / 2000 / 2000 trajectories)",
            Budget::Full => " (full)",
        },
    )
}

/// `sgdd repro md17-geotdm --molecule M`.
pub fn run_md17(args: &Md17ReproArgs) -> Result<()> {
    let m = args.molecule;
    let common = &args.common;
    let dir = repro::ensure_md17(
        &common.data_root,
        m,
        Md17Setting::Geotdm,
        &serde_json::to_value(GeoTdmMd17Spec::default())?,
        0,
        "--steps 20000",
        "every 10th frame is kept, so 20,000 steps give 2,000 frames; about 10–40 ms/step for \
         aspirin on two CPU cores",
    )?;
    let [train, val, test] = [
        traj_data::Split::Train,
        traj_data::Split::Val,
        traj_data::Split::Test,
    ]
    .map(|split| {
        let ds = traj_data::load_split(&dir, split)
            .with_context(|| format!("loading the {split:?} split of {}", dir.display()))?;
        anyhow::ensure!(
            ds.len() == 1,
            "{}: the {split:?} split holds {} trajectories; GeoTDM's setting cuts one \
                 trajectory into three parts",
            dir.display(),
            ds.len()
        );
        Ok(ds)
    });
    let (train, val, test) = (train?, val?, test?);
    let frames = |d: &traj_data::Dataset| d.trajectories()[0].num_frames();
    let (frames, val, test) = (frames(&train), frames(&val), frames(&test));
    let atoms = train.num_nodes();
    let mut elements: Vec<i64> = train
        .trajectories()
        .iter()
        .filter_map(|t| t.node_types())
        .flatten()
        .copied()
        .collect();
    elements.sort_unstable();
    elements.dedup();
    anyhow::ensure!(
        atoms >= 2 && !elements.is_empty(),
        "{}: {atoms} atoms with {} element types: not a molecule of the GeoTDM setting",
        dir.display(),
        elements.len()
    );
    let table = GeoTable {
        name: format!("md17-geotdm-{m}"),
        config: "md17-geotdm",
        datasets: vec![GeoData {
            label: m.to_string(),
            dir,
            set: vec![
                format!("data.graph_k={}", atoms - 1),
                format!("model.lam_slide.codec.num_types={}", elements.len()),
            ],
        }],
        intro: format!(
            "GeoTDM's MD17 setting on the GFN2-xTB trajectory of {m} ({atoms} atoms, all kept; \
             every 10th frame of 0.5 fs steps; the trajectory cut chronologically into {frames} \
             / {val} / {test} frames): windows of frames 0–9 given, 10–29 predicted, sliding by \
             one frame; test ADE / FDE in Å (mean ± std over seeds); EGNO and SGDD-EGNO on the \
             complete graph. GFN2-xTB, not the DFT of the papers' MD17: no published figure is \
             comparable. Budget{}",
            match common.budget() {
                Budget::Quick => " (--quick)",
                Budget::Standard => " (--budget standard)",
                Budget::Full => " (full)",
            },
        ),
    };
    run_table(common, &table)
}

fn run_table(args: &ReproArgs, table: &GeoTable) -> Result<()> {
    let started = Instant::now();
    let budget = args.budget();
    // a directory and outputs per budget, as every table's (see `repro::run_table`)
    let name = format!("{}{}", table.name, budget.suffix());
    let mut rows = Vec::new();
    for data in &table.datasets {
        for v in ROWS {
            let first = config(
                budget,
                table.config,
                &data.dir,
                v,
                0,
                &args.device,
                &data.set,
            )?;
            let seeds = if first.model.kind.trainable() {
                args.seeds
            } else {
                1
            };
            let mut runs = Vec::new();
            for seed in 0..seeds {
                let cfg = config(
                    budget,
                    table.config,
                    &data.dir,
                    v,
                    seed,
                    &args.device,
                    &data.set,
                )?;
                let slug = v.name.to_lowercase().replace([' ', '/'], "-");
                let out = args
                    .out
                    .join(&name)
                    .join(&data.label)
                    .join(format!("{slug}-s{seed}"));
                let t0 = Instant::now();
                let run = if v.name == LAM_SLIDE.name {
                    lam_slide_run(cfg, &out, args.force)
                } else {
                    one_run(cfg, &out, args.force).map(|(r, s)| Run {
                        seed,
                        ade: r.test.ade,
                        fde: r.test.fde,
                        sampled: None,
                        codec: None,
                        flow_vs_codec: None,
                        train_seconds: s,
                        dir: out.display().to_string(),
                    })
                }
                .with_context(|| format!("{} / {} / seed {seed}", data.label, v.name))?;
                eprintln!(
                    "repro: {:<8} {:<18} seed {seed}: ADE {:.4} FDE {:.4} in {:.0?}",
                    data.label,
                    v.name,
                    run.ade,
                    run.fde,
                    t0.elapsed()
                );
                runs.push(run);
            }
            rows.push(summarise(&data.label, v, runs));
        }
    }
    std::fs::create_dir_all(&args.out)?;
    let d0 = &table.datasets[0];
    let first = config(
        budget,
        table.config,
        &d0.dir,
        LAM_SLIDE,
        0,
        &args.device,
        &d0.set,
    )?;
    let published: Vec<&Published> = PUBLISHED
        .iter()
        .filter(|p| {
            table.config == "nbody-geotdm" && table.datasets.iter().any(|d| d.label == p.system)
        })
        .collect();
    let report = serde_json::json!({
        "setting": table.intro,
        "config": format!("configs/repro/{}{}.toml", table.config, budget.suffix()),
        "base_config": first.to_toml(),
        "data": table.datasets.iter().map(|d| d.dir.display().to_string()).collect::<Vec<_>>(),
        "overrides": table.datasets.iter().map(|d| (&d.label, &d.set)).collect::<Vec<_>>(),
        "budget": budget,
        "device": args.device,
        "seeds": args.seeds,
        "wall_seconds": started.elapsed().as_secs_f64(),
        "rows": rows,
        "published": published,
    });
    let md = markdown(&rows, &first, &table.intro, &published);
    write_table(&args.out, &name, &report, &md, started)
}

fn summarise(system: &str, v: Variant, runs: Vec<Run>) -> Row {
    let col = |f: &dyn Fn(&Run) -> f64| mean_std(&runs.iter().map(f).collect::<Vec<_>>());
    let (ade_mean, ade_std) = col(&|r| r.ade);
    let (fde_mean, fde_std) = col(&|r| r.fde);
    let sampled: Vec<SampledMetrics> = runs.iter().filter_map(|r| r.sampled).collect();
    let min = |f: &dyn Fn(&SampledMetrics) -> f64| {
        (!sampled.is_empty()).then(|| mean_std(&sampled.iter().map(f).collect::<Vec<_>>()).0)
    };
    Row {
        system: system.to_owned(),
        model: v.name.to_owned(),
        seeds: runs.len(),
        ade_mean,
        ade_std,
        fde_mean,
        fde_std,
        min_ade_mean: min(&|m| m.min_ade),
        min_fde_mean: min(&|m| m.min_fde),
        train_seconds: runs.iter().map(|r| r.train_seconds).sum(),
        runs,
    }
}

fn markdown(rows: &[Row], lam: &CheckedRunConfig, intro: &str, published: &[&Published]) -> String {
    let mut s = String::new();
    let l = &lam.model.lam_slide;
    let _ = writeln!(
        s,
        "{intro}: LaM-SLidE {} codec + {} flow epochs, K = {} draws (minADE / minFDE: the best \
         of the K); EGNO and SGDD-EGNO read the last given frame and its velocity.{}\n",
        l.codec_epochs,
        l.flow_epochs.unwrap_or(lam.train.epochs),
        l.draws,
        if published.is_empty() {
            ""
        } else {
            " The published rows come from LaM-SLidE's Table 1: same generator parameters, \
             other samples and the full budget."
        }
    );
    let _ = writeln!(
        s,
        "| system | model | ADE | FDE | minADE | minFDE | seeds | train s |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|");
    let opt = |v: Option<f64>| v.map_or("–".to_owned(), |v| format!("{v:.4}"));
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {} | {:.4} ± {:.4} | {:.4} ± {:.4} | {} | {} | {} | {:.0} |",
            r.system,
            r.model,
            r.ade_mean,
            r.ade_std,
            r.fde_mean,
            r.fde_std,
            opt(r.min_ade_mean),
            opt(r.min_fde_mean),
            r.seeds,
            r.train_seconds
        );
        if r.model == LAM_SLIDE.name {
            for p in published.iter().filter(|p| p.system == r.system) {
                let _ = writeln!(
                    s,
                    "| {} | {} — published (same generator parameters, other samples) | {:.4} | {:.4} | | | | |",
                    p.system, p.model, p.ade, p.fde
                );
            }
        }
    }
    let stages: Vec<String> = rows
        .iter()
        .flat_map(|r| r.runs.iter().map(move |run| (r, run)))
        .filter_map(|(r, run)| {
            Some(format!(
                "{} seed {}: stage 1 alone (codec reconstruction of the true future) ADE {:.4}, \
                 stage 2 alone (samples vs that reconstruction) ADE {:.4}",
                r.system, run.seed, run.codec?.ade, run.flow_vs_codec?.ade
            ))
        })
        .collect();
    if !stages.is_empty() {
        let _ = writeln!(s, "\nLaM-SLidE's error by stage:\n");
        for line in stages {
            let _ = writeln!(s, "- {line}");
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_checks_on_both_budgets_and_full_is_refused() {
        for budget in [Budget::Quick, Budget::Standard] {
            for v in ROWS {
                let cfg =
                    config(budget, "nbody-geotdm", Path::new("nbody"), v, 1, "cpu", &[]).unwrap();
                assert_eq!(
                    cfg.data.starts,
                    traj_data::Starts::Fixed(vec![9]),
                    "{}",
                    v.name
                );
                assert_eq!(cfg.data.num_targets, 20, "{}", v.name);
                let given = if v.name == LAM_SLIDE.name { 10 } else { 1 };
                assert_eq!(cfg.data.condition_frames, given, "{}", v.name);
                // MD17: the anchors the conversion records, the molecule's sizes from the table
                let set = [
                    "data.graph_k=8".to_owned(),
                    "model.lam_slide.codec.num_types=3".to_owned(),
                ];
                let cfg =
                    config(budget, "md17-geotdm", Path::new("md17"), v, 1, "cpu", &set).unwrap();
                assert_eq!(cfg.data.starts, traj_data::Starts::Metadata, "{}", v.name);
                assert_eq!(cfg.data.delta_frame, 20, "{}", v.name);
                assert_eq!(cfg.data.condition_frames, given, "{}", v.name);
                assert_eq!(cfg.model.lam_slide.codec.num_types, 3);
            }
        }
        let e = config(
            Budget::Full,
            "nbody-geotdm",
            Path::new("nbody"),
            EGNO,
            0,
            "cpu",
            &[],
        )
        .unwrap_err();
        assert!(e.to_string().contains("--quick"), "{e}");
    }

    #[test]
    fn md17_without_its_trajectory_says_how_to_make_it() {
        let root = tempfile::tempdir().unwrap();
        let args = Md17ReproArgs {
            molecule: traj_data::molecule::Md17Molecule::Aspirin,
            common: ReproArgs {
                budget: Budget::Quick,
                quick: true,
                data_root: root.path().to_path_buf(),
                out: root.path().join("repro"),
                seeds: 1,
                device: "cpu".into(),
                force: false,
                rows: Vec::new(),
                set: Vec::new(),
            },
        };
        let e = format!("{:#}", run_md17(&args).unwrap_err());
        assert!(e.contains("md17xtb_aspirin.npz"), "{e}");
        assert!(
            e.contains("data generate md17-xtb --molecule aspirin"),
            "{e}"
        );
        assert!(!root.path().join("repro").exists());
    }

    #[test]
    fn published_rows_follow_the_lam_slide_row_of_their_system() {
        let m = |ade| SampledMetrics {
            samples: 2,
            draws: 5,
            ade,
            fde: 2.0 * ade,
            min_ade: ade / 2.0,
            min_fde: ade,
        };
        let run = |ade, sampled: Option<SampledMetrics>| Run {
            seed: 0,
            ade,
            fde: 2.0 * ade,
            sampled,
            codec: sampled.map(|_| m(0.1)),
            flow_vs_codec: sampled.map(|_| m(0.3)),
            train_seconds: 1.0,
            dir: String::new(),
        };
        let rows = [
            summarise("springs", CONST_VEL, vec![run(0.5, None)]),
            summarise("springs", LAM_SLIDE, vec![run(0.4, Some(m(0.4)))]),
        ];
        let lam = config(
            Budget::Quick,
            "nbody-geotdm",
            Path::new("nbody"),
            LAM_SLIDE,
            0,
            "cpu",
            &[],
        )
        .unwrap();
        let published: Vec<&Published> =
            PUBLISHED.iter().filter(|p| p.system == "springs").collect();
        let md = markdown(&rows, &lam, &nbody_intro(Budget::Quick, 1), &published);
        let lines: Vec<&str> = md.lines().filter(|l| l.starts_with("| springs")).collect();
        assert_eq!(lines.len(), 4, "{md}");
        assert!(lines[1].contains("| LaM-SLidE | 0.4000 ± 0.0000 | 0.8000 ± 0.0000 | 0.2000 |"));
        assert!(lines[2].contains(
            "GeoTDM — published (same generator parameters, other samples) | 0.0030 | 0.0079"
        ));
        assert!(lines[3].contains("LaM-SLidE — published"));
        assert!(md.contains(
            "springs seed 0: stage 1 alone (codec reconstruction of the true future) ADE 0.1000"
        ));
        assert!(md.contains("--quick: 400 / 200 / 200"));
        assert!(
            !md.contains("charged"),
            "published rows of other systems: {md}"
        );
    }
}
