//! `sgdd repro …`: EGNO vs SGDD-EGNO with the same budget over several seeds, beside untrained
//! baselines, all scored by the same metric code. `nbody`: the three N-body systems plus the
//! ablation of SGDD's parts on one of them; `mocap-run`, `adk`, `md17-xtb`: the real-data
//! settings. Each writes `OUT/<name>.json` and `OUT/<name>.md`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use serde::Serialize;
use traj_data::nbody::{NBodySpec, System};

use crate::config::{
    DataConfig, ModelConfig, ModelKind, RunConfig, StartsKind, TargetsKind, TrainConfig,
};
use crate::optim::AdamConfig;
use crate::train::{self, RunOptions, RunResult};

/// The options every `sgdd repro` table takes.
#[derive(Debug, Args)]
pub struct ReproArgs {
    /// The small budget (about ten minutes on two CPU cores) instead of the full one (a GPU).
    #[arg(long)]
    pub quick: bool,
    /// Where datasets are generated, imported or reused.
    #[arg(long, default_value = "target/data")]
    pub data_root: PathBuf,
    /// Where the runs and the table (`<name>.json`, `<name>.md`) go.
    #[arg(long, default_value = "target/repro")]
    pub out: PathBuf,
    /// Seeds per (system, model).
    #[arg(long, default_value_t = 3)]
    pub seeds: u64,
    /// `auto`, `cpu`, `cuda` or `cuda:N`.
    #[arg(long, default_value = "auto")]
    pub device: String,
}

/// `sgdd repro md17-xtb`.
#[derive(Debug, Args)]
pub struct Md17ReproArgs {
    /// aspirin, benzene, ethanol, malonaldehyde, naphthalene, salicylic_acid, toluene or uracil.
    #[arg(long)]
    pub molecule: String,
    #[command(flatten)]
    pub common: ReproArgs,
}

/// The budget of one setting.
#[derive(Debug, Clone, Copy, Serialize)]
struct Budget {
    train: usize,
    eval: usize,
    epochs: usize,
    batch_size: usize,
    hidden: i64,
    decoder_layers: i64,
    z_dim: i64,
}

const QUICK: Budget = Budget {
    train: 400,
    eval: 200,
    epochs: 30,
    batch_size: 50,
    hidden: 32,
    decoder_layers: 3,
    z_dim: 16,
};
const QUICK_REAL: Budget = Budget {
    train: 0,
    eval: 0,
    epochs: 30,
    batch_size: 50,
    hidden: 32,
    decoder_layers: 3,
    z_dim: 16,
};
const QUICK_ADK: Budget = Budget {
    train: 0,
    eval: 0,
    epochs: 15,
    batch_size: 4,
    hidden: 32,
    decoder_layers: 3,
    z_dim: 16,
};
const FULL: Budget = Budget {
    train: 3000,
    eval: 2000,
    epochs: 400,
    batch_size: 100,
    hidden: 64,
    decoder_layers: 4,
    z_dim: 32,
};

/// One variant of the table.
#[derive(Debug, Clone, Copy)]
struct Variant {
    name: &'static str,
    kind: ModelKind,
    sge: bool,
    align_rep: bool,
    align_spec: bool,
}

const EGNO: Variant = Variant {
    name: "EGNO",
    kind: ModelKind::Egno,
    sge: true,
    align_rep: true,
    align_spec: true,
};
const SGDD: Variant = Variant {
    name: "SGDD-EGNO",
    kind: ModelKind::Sgdd,
    sge: true,
    align_rep: true,
    align_spec: true,
};
const CONST_VEL: Variant = Variant {
    name: "constant velocity",
    kind: ModelKind::ConstVel,
    sge: true,
    align_rep: true,
    align_spec: true,
};
const STATIC: Variant = Variant {
    name: "static (initial positions)",
    kind: ModelKind::Static,
    sge: true,
    align_rep: true,
    align_spec: true,
};
const ABLATIONS: [Variant; 3] = [
    Variant {
        name: "SGDD-EGNO w/o SGE",
        kind: ModelKind::Sgdd,
        sge: false,
        align_rep: true,
        align_spec: true,
    },
    Variant {
        name: "SGDD-EGNO w/o spectral align",
        kind: ModelKind::Sgdd,
        sge: true,
        align_rep: true,
        align_spec: false,
    },
    Variant {
        name: "SGDD-EGNO w/o representation align",
        kind: ModelKind::Sgdd,
        sge: true,
        align_rep: false,
        align_spec: true,
    },
];

/// Mean ± std over seeds of one (system, variant).
#[derive(Debug, Clone, Serialize)]
struct Row {
    system: String,
    model: String,
    seeds: usize,
    s2s_mean: f64,
    s2s_std: f64,
    s2t_mean: f64,
    s2t_std: f64,
    /// SGDD: the decoder conditioned on the teacher, which reads the future (diagnostic).
    teacher_oracle_s2s_mean: Option<f64>,
    train_seconds: f64,
    runs: Vec<RunResult>,
}

fn mean_std(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let m = xs.iter().sum::<f64>() / n;
    let var = if xs.len() > 1 {
        xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (m, var.sqrt())
}

/// The manifest of a dataset directory whose files all match their sha256, or `None`.
fn intact_manifest(dir: &Path) -> Option<traj_data::Manifest> {
    let man = traj_data::Manifest::read(dir).ok()?;
    man.verify_all(dir).ok()?;
    Some(man)
}

fn ensure_dataset(root: &Path, system: System, budget: &Budget, quick: bool) -> Result<PathBuf> {
    let dir = root.join(format!(
        "nbody-{system}{}",
        if quick { "-quick" } else { "" }
    ));
    if intact_manifest(&dir).is_some() {
        return Ok(dir);
    }
    let mut spec = NBodySpec::new(system);
    spec.n_train = budget.train;
    spec.n_val = budget.eval;
    spec.n_test = budget.eval;
    spec.seed = 42;
    eprintln!(
        "repro: generating {} ({} / {} / {} trajectories)",
        dir.display(),
        spec.n_train,
        spec.n_val,
        spec.n_test
    );
    traj_data::nbody::generate_dataset_dir(&spec, &dir, &|_, _| {})
        .with_context(|| format!("generating {}", dir.display()))?;
    Ok(dir)
}

fn nbody_data(dir: &Path) -> DataConfig {
    DataConfig {
        dir: dir.to_owned(),
        start_frame: 30,
        delta_frame: 10,
        num_targets: 5,
        targets: TargetsKind::Strided,
        starts: StartsKind::Fixed,
        stride: 1,
        max_train: None,
        max_eval: None,
    }
}

fn config(data: &DataConfig, v: Variant, b: &Budget, seed: u64, device: &str) -> RunConfig {
    RunConfig {
        data: data.clone(),
        model: ModelConfig {
            kind: v.kind,
            hidden: b.hidden,
            decoder_layers: b.decoder_layers,
            z_dim: b.z_dim,
            sge: v.sge,
            align_rep: v.align_rep,
            align_spec: v.align_spec,
            ..ModelConfig::default()
        },
        train: TrainConfig {
            epochs: b.epochs,
            batch_size: b.batch_size,
            adam: AdamConfig::default(),
            seed,
            eval_every: (b.epochs / 4).max(1),
            device: device.to_owned(),
            // These models are small: one libtorch thread per run is as fast as two on an idle
            // machine and many times faster on a loaded one (OpenMP barriers stall when another
            // process holds a core).
            threads: 1,
        },
    }
}

/// One table: named settings (dataset + windows) × variants, over seeds.
struct Table<'a> {
    /// File stem of the outputs (`OUT/<name>.json`, `.md`) and run directory.
    name: &'a str,
    /// What the windows are, for the report.
    setting: &'a str,
    /// (label, data config) of each dataset.
    data: Vec<(String, DataConfig)>,
    /// (dataset label, variant) in table order.
    plan: Vec<(String, Variant)>,
}

pub fn run(args: &ReproArgs) -> Result<()> {
    let budget = if args.quick { QUICK } else { FULL };
    let mut data = Vec::new();
    let mut plan = Vec::new();
    for system in System::ALL {
        let dir = ensure_dataset(&args.data_root, system, &budget, args.quick)?;
        data.push((system.to_string(), nbody_data(&dir)));
        for v in [CONST_VEL, EGNO, SGDD] {
            plan.push((system.to_string(), v));
        }
    }
    plan.extend(ABLATIONS.iter().map(|&v| (System::Charged.to_string(), v)));
    let table = Table {
        name: "nbody",
        setting: "EGNO N-body: condition on frame 30, predict frames 32, 34, 36, 38, 40",
        data,
        plan,
    };
    run_table(args, &table, &budget)
}

/// `sgdd repro mocap-run`: EGNO's CMU subject 09 "run" setting (start frames of EGNO's split,
/// targets start+26 … start+30), data from `sgdd data import mocap-run`.
pub fn run_mocap(args: &ReproArgs) -> Result<()> {
    let dir = args.data_root.join("mocap-run");
    ensure_imported(
        &dir,
        "cargo xtask data import mocap-run --from <the cmu-mocap-09-run folder>",
    )?;
    let data = DataConfig {
        dir,
        start_frame: 0,
        delta_frame: 30,
        num_targets: 5,
        targets: TargetsKind::Consecutive,
        starts: StartsKind::Metadata,
        stride: 1,
        max_train: None,
        max_eval: None,
    };
    let budget = if args.quick { QUICK_REAL } else { FULL };
    let table = Table {
        name: "mocap-run",
        setting: "EGNO CMU mocap run: start frames of EGNO's split, targets start+26 … start+30",
        data: vec![("mocap-run".into(), data)],
        plan: [STATIC, CONST_VEL, EGNO, SGDD]
            .into_iter()
            .map(|v| ("mocap-run".to_owned(), v))
            .collect(),
    };
    run_table(args, &table, &budget)
}

/// `sgdd repro adk`: EGNO's protein setting on the real ADK trajectory (`adk-dims`), sliding
/// windows, targets +3, +7, +11, +15; data from `sgdd data fetch adk`.
pub fn run_adk(args: &ReproArgs) -> Result<()> {
    let dir = args.data_root.join("adk-dims");
    ensure_imported(&dir, "cargo xtask data fetch adk")?;
    let data = DataConfig {
        dir,
        start_frame: 0,
        delta_frame: 15,
        num_targets: 4,
        targets: TargetsKind::Strided,
        starts: StartsKind::Sliding,
        stride: 1,
        max_train: None,
        max_eval: None,
    };
    let budget = if args.quick { QUICK_ADK } else { FULL };
    let table = Table {
        name: "adk",
        setting: "EGNO protein (ADK, 855 backbone atoms, 8 Å contacts): targets +3, +7, +11, +15 frames",
        data: vec![("adk-dims".into(), data)],
        plan: [STATIC, CONST_VEL, EGNO, SGDD]
            .into_iter()
            .map(|v| ("adk-dims".to_owned(), v))
            .collect(),
    };
    run_table(args, &table, &budget)
}

/// `sgdd repro md17-xtb --molecule M`: EGNO's MD17 setting (heavy atoms, bonds + 2-hop edges,
/// Δ = 3000 steps of 0.5 fs, T = 8, 500 / 2000 / 2000 windows) on the GFN2-xTB trajectory that
/// `sgdd data generate md17-xtb` wrote to `DATA_ROOT/md17xtb_<M>.npz`, converted on first use.
pub fn run_md17_xtb(args: &Md17ReproArgs) -> Result<()> {
    let m = args.molecule.as_str();
    anyhow::ensure!(
        super::data::MD17_MOLECULES.contains(&m),
        "unknown molecule {m:?} (one of: {})",
        super::data::MD17_MOLECULES.join(", ")
    );
    let root = &args.common.data_root;
    let dir = root.join(format!("md17xtb-{m}-egno"));
    // reuse a converted dataset only if it is intact and made with today's setting
    let setting = serde_json::to_value(traj_data::molecule::EgnoMd17Spec::default())?;
    let current =
        intact_manifest(&dir).is_some_and(|man| man.generator.get("setting") == Some(&setting));
    if !current {
        let npz = root.join(format!("md17xtb_{m}.npz"));
        anyhow::ensure!(
            npz.exists(),
            "no {}: make it first with `cargo xtask data generate md17-xtb --molecule {m} --steps 60000 \
             --out {}` (GFN2-xTB at 500 K; about 2 ms/step for ethanol, 10–15 ms/step for aspirin \
             on two CPU cores; resumable)",
            npz.display(),
            npz.display()
        );
        eprintln!("repro: converting {} to {}", npz.display(), dir.display());
        super::data::convert_md17(
            &npz,
            &format!("md17xtb_{m}"),
            super::data::Md17Setting::Egno,
            traj_data::molecule::EgnoMd17Spec::default().seed,
            &dir,
        )?;
    }
    let data = DataConfig {
        dir,
        // each stored window is the start frame and its 8 targets, Δ/T = 375 steps apart
        start_frame: 0,
        delta_frame: 8,
        num_targets: 8,
        targets: TargetsKind::Strided,
        starts: StartsKind::Fixed,
        stride: 1,
        max_train: None,
        max_eval: None,
    };
    let budget = if args.common.quick { QUICK_REAL } else { FULL };
    let label = m.to_owned();
    let name = format!("md17-xtb-{m}");
    let table = Table {
        name: &name,
        setting: "EGNO MD17 (GFN2-xTB dynamics at 500 K, 0.5 fs): heavy atoms, bonds < 1.6 Å + 2-hop, \
                  condition on one frame, predict 8 frames over Δ = 3000 steps (1.5 ps)",
        data: vec![(label.clone(), data)],
        plan: [STATIC, CONST_VEL, EGNO, SGDD]
            .into_iter()
            .map(|v| (label.clone(), v))
            .collect(),
    };
    run_table(&args.common, &table, &budget)
}

fn ensure_imported(dir: &Path, how: &str) -> Result<()> {
    anyhow::ensure!(
        dir.join(traj_data::MANIFEST_FILE).exists(),
        "no dataset at {}: make it first with `{how}`",
        dir.display()
    );
    Ok(())
}

fn run_table(args: &ReproArgs, table: &Table<'_>, budget: &Budget) -> Result<()> {
    let started = Instant::now();
    let mut rows = Vec::new();
    for (label, v) in &table.plan {
        let data = &table
            .data
            .iter()
            .find(|(l, _)| l == label)
            .context("dataset of the plan")?
            .1;
        let seeds = if matches!(v.kind, ModelKind::ConstVel | ModelKind::Static) {
            1
        } else {
            args.seeds
        };
        let mut runs = Vec::new();
        for seed in 0..seeds {
            let cfg = config(data, *v, budget, seed, &args.device);
            let slug = v.name.to_lowercase().replace([' ', '/'], "-");
            let out = args
                .out
                .join(table.name)
                .join(label)
                .join(format!("{slug}-s{seed}"));
            let t0 = Instant::now();
            let r = train::run(
                &cfg,
                &out,
                &RunOptions {
                    resume: false,
                    quiet: true,
                    stop_after_epochs: None,
                },
            )
            .with_context(|| format!("{label} / {} / seed {seed}", v.name))?;
            eprintln!(
                "repro: {label:<9} {:<36} seed {seed}: S2S {:.4} S2T {:.4} (×10⁻²) in {:.0?}",
                v.name,
                r.test.s2s * 100.0,
                r.test.s2t * 100.0,
                t0.elapsed()
            );
            runs.push(r);
        }
        let (s2s_mean, s2s_std) =
            mean_std(&runs.iter().map(|r| r.test.s2s * 100.0).collect::<Vec<_>>());
        let (s2t_mean, s2t_std) =
            mean_std(&runs.iter().map(|r| r.test.s2t * 100.0).collect::<Vec<_>>());
        let oracle: Vec<f64> = runs
            .iter()
            .filter_map(|r| r.teacher_oracle_test.map(|m| m.s2s * 100.0))
            .collect();
        let teacher_oracle_s2s_mean = (!oracle.is_empty()).then(|| mean_std(&oracle).0);
        rows.push(Row {
            teacher_oracle_s2s_mean,
            system: label.clone(),
            model: v.name.to_owned(),
            seeds: runs.len(),
            s2s_mean,
            s2s_std,
            s2t_mean,
            s2t_std,
            train_seconds: runs.iter().map(|r| r.train_seconds).sum(),
            runs,
        });
    }
    std::fs::create_dir_all(&args.out)?;
    let report = serde_json::json!({
        "setting": format!("{}; metrics on the test split in original units, ×10⁻²", table.setting),
        "budget": budget,
        "quick": args.quick,
        "device": args.device,
        "wall_seconds": started.elapsed().as_secs_f64(),
        "rows": rows,
    });
    let json_path = args.out.join(format!("{}.json", table.name));
    let md_path = args.out.join(format!("{}.md", table.name));
    std::fs::write(&json_path, serde_json::to_string_pretty(&report)?)?;
    let md = markdown(table.setting, &rows, budget, args.quick);
    std::fs::write(&md_path, &md)?;
    println!("{md}");
    println!(
        "wrote {} and {} in {:.0?}",
        json_path.display(),
        md_path.display(),
        started.elapsed()
    );
    Ok(())
}

fn markdown(setting: &str, rows: &[Row], b: &Budget, quick: bool) -> String {
    let mut s = String::new();
    let data = if b.train > 0 {
        format!(
            "{} train / {} val / {} test trajectories, ",
            b.train, b.eval, b.eval
        )
    } else {
        "all windows of the dataset, ".to_owned()
    };
    let _ = writeln!(
        s,
        "{setting}; test MSE ×10⁻² (mean ± std over seeds). Budget{}: {data}{} epochs, batch {}, \
         hidden {}. The last column is a diagnostic, not a result: SGDD's decoder conditioned on \
         the teacher, which reads the future frames.\n",
        if quick { " (--quick)" } else { "" },
        b.epochs,
        b.batch_size,
        b.hidden
    );
    let _ = writeln!(
        s,
        "| system | model | S2S | S2T | seeds | teacher-oracle S2S |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|");
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {} | {:.3} ± {:.3} | {:.3} ± {:.3} | {} | {} |",
            r.system,
            r.model,
            r.s2s_mean,
            r.s2s_std,
            r.s2t_mean,
            r.s2t_std,
            r.seeds,
            r.teacher_oracle_s2s_mean
                .map_or("–".to_owned(), |v| format!("{v:.3}"))
        );
    }
    s
}
