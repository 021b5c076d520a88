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

use sgdd_train::{CheckedRunConfig, RunConfig, RunMode, RunResult};

use super::train as train_cmd;

/// The options every `sgdd repro` table takes.
#[derive(Debug, Args)]
pub struct ReproArgs {
    /// The training budget: `quick` (minutes on two CPU cores), `standard` (the N-body
    /// datasets of the papers, 100 epochs with early stopping: hours on a CPU) or `full` (the
    /// papers' budgets: a GPU).
    #[arg(long, value_enum, default_value = "full")]
    pub budget: Budget,
    /// Shorthand for `--budget quick`.
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
    /// Only these learned rows, comma-separated, by their slugs: `egno`,
    /// `egno-encoder-no-teacher`, `sgdd-egno`, `sgdd-egno-teacher-decoder-gated`,
    /// `sgdd-egno-shared-decoder-scheduled`, `sgdd-egno-paper-recipe`, `gf-node`,
    /// `sgdd-gfnode`, and on nbody the ablations (`sgdd-egno-w-o-sge`, …). The untrained
    /// baselines always run. Taken by the nbody, mocap-run, adk and md17-xtb tables.
    #[arg(long, value_delimiter = ',')]
    pub rows: Vec<String>,
    /// Overrides every run of the table gets after its row's own settings, as `sgdd train
    /// --set` takes them (repeatable), e.g. `--set train.lr_schedule='"cosine"'`. The table
    /// prints them; a finished run with other settings is refused, not reused. Taken by the
    /// nbody, mocap-run, adk and md17-xtb tables.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// `auto`, `cpu`, `cuda` or `cuda:N`.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Retrain runs whose directories already hold a result (otherwise a finished run is
    /// reused and an unfinished one resumed).
    #[arg(long)]
    pub force: bool,
}

/// `sgdd repro nbody`.
#[derive(Debug, Args)]
pub struct NbodyReproArgs {
    /// Only these systems, comma-separated (`charged`, `springs`, `gravity`; default all
    /// three): the table then holds their rows (the ablations come with `charged`).
    #[arg(long, value_delimiter = ',')]
    pub systems: Vec<System>,
    #[command(flatten)]
    pub common: ReproArgs,
}

/// `sgdd repro mocap-run`.
#[derive(Debug, Args)]
pub struct MocapReproArgs {
    /// EGNO's published mocap budget and hyperparameters (`configs/repro/mocap-run-paper.toml`:
    /// 6 layers × 128, lr 5e-4, batch 12, up to 2000 epochs with early stopping, 200 training
    /// windows) for EGNO, the no-teacher control and SGDD-EGNO, printed beside the published
    /// figures. Hours per run on a CPU; an interrupted table resumes when started again.
    #[arg(long, conflicts_with_all = ["quick", "budget"])]
    pub paper_budget: bool,
    #[command(flatten)]
    pub common: ReproArgs,
}

/// `sgdd repro adk`.
#[derive(Debug, Args)]
pub struct AdkReproArgs {
    /// `chronological` (`adk-dims`, EGNO's split: the trajectory's first 60 % of frames train,
    /// the last 20 % test — forecasting into conformations training never saw) or `random` (a
    /// random split of the 16-frame windows, `adk-dims-random`: test windows overlap training
    /// ones, so it measures interpolation).
    #[arg(long, value_enum, default_value = "chronological")]
    pub split: AdkSplit,
    /// `window` (EGNO's setting: each window's contact graph, 8 Å in its own condition frame,
    /// `data.graph = "radius"`) or `first-frame` (the contacts of the trajectory's first frame
    /// for every window, which stretch to 30 Å along the transition).
    #[arg(long, value_enum, default_value = "window")]
    pub graph: AdkGraph,
    #[command(flatten)]
    pub common: ReproArgs,
}

/// See [`AdkReproArgs::graph`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AdkGraph {
    /// Each window's own contacts.
    Window,
    /// The first frame's contacts.
    FirstFrame,
}

/// See [`AdkReproArgs::split`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AdkSplit {
    /// By frame, in order.
    Chronological,
    /// The windows at random.
    Random,
}

/// `sgdd repro md17-xtb`.
#[derive(Debug, Args)]
pub struct Md17ReproArgs {
    /// aspirin, benzene, ethanol, malonaldehyde, naphthalene, salicylic_acid, toluene or uracil.
    #[arg(long)]
    pub molecule: traj_data::molecule::Md17Molecule,
    #[command(flatten)]
    pub common: ReproArgs,
}

impl super::ReproCommand {
    /// `--rows` and `--set` are for the tables of [`run_table`]; the others refuse them by name.
    pub(crate) fn check_table_options(&self) -> Result<()> {
        match self {
            Self::Nbody(_) | Self::MocapRun(_) | Self::Adk(_) | Self::Md17Xtb(_) => Ok(()),
            Self::DistillNbody(a) => a.refuse_table_options("distill-nbody"),
            Self::DistillNs(a) => a.refuse_table_options("distill-ns"),
            Self::NbodyGeotdm(a) => a.refuse_table_options("nbody-geotdm"),
            Self::Md17Geotdm(a) => a.common.refuse_table_options("md17-geotdm"),
        }
    }
}

/// The budget of a table (see [`ReproArgs::budget`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Budget {
    /// Minutes on two CPU cores.
    Quick,
    /// The papers' N-body data, 100 epochs with early stopping.
    Standard,
    /// The papers' budgets.
    Full,
}

impl Budget {
    /// The file-name suffix of its configs and datasets.
    pub(crate) fn suffix(self) -> &'static str {
        match self {
            Self::Quick => "-quick",
            Self::Standard => "-standard",
            Self::Full => "",
        }
    }
}

impl ReproArgs {
    /// An error when `--rows` or `--set` is given to a table that has no such rows.
    pub(crate) fn refuse_table_options(&self, table: &str) -> Result<()> {
        if !self.rows.is_empty() {
            anyhow::bail!(
                "--rows selects rows of the nbody, mocap-run, adk and md17-xtb tables; \
                 `repro {table}` runs its rows as a whole"
            );
        }
        if !self.set.is_empty() {
            anyhow::bail!(
                "--set overrides the runs of the nbody, mocap-run, adk and md17-xtb tables; \
                 `repro {table}` takes its settings from its own config"
            );
        }
        Ok(())
    }

    pub(crate) fn budget(&self) -> Budget {
        if self.quick {
            Budget::Quick
        } else {
            self.budget
        }
    }
}

/// The base run configs of the tables (`configs/repro/*.toml`, built into the binary), read by
/// the one config loader: `(table, budget)` → TOML text.
fn base_config(table: &str, budget: Budget) -> Result<&'static str> {
    use Budget::{Full, Quick, Standard};
    Ok(match (table, budget) {
        ("nbody", Quick) => include_str!("../../../../configs/repro/nbody-quick.toml"),
        ("nbody", Standard) => include_str!("../../../../configs/repro/nbody-standard.toml"),
        ("nbody", Full) => include_str!("../../../../configs/repro/nbody.toml"),
        ("mocap-run", Quick) => include_str!("../../../../configs/repro/mocap-run-quick.toml"),
        ("mocap-run", Standard) => {
            include_str!("../../../../configs/repro/mocap-run-standard.toml")
        }
        ("mocap-run", Full) => include_str!("../../../../configs/repro/mocap-run.toml"),
        ("mocap-run-paper", Full) => {
            include_str!("../../../../configs/repro/mocap-run-paper.toml")
        }
        ("adk", Quick) => include_str!("../../../../configs/repro/adk-quick.toml"),
        ("adk", Standard) => include_str!("../../../../configs/repro/adk-standard.toml"),
        ("adk", Full) => include_str!("../../../../configs/repro/adk.toml"),
        ("md17-xtb", Quick) => include_str!("../../../../configs/repro/md17-xtb-quick.toml"),
        ("md17-xtb", Standard) => {
            include_str!("../../../../configs/repro/md17-xtb-standard.toml")
        }
        ("md17-xtb", Full) => include_str!("../../../../configs/repro/md17-xtb.toml"),
        ("nbody-geotdm", Quick) => {
            include_str!("../../../../configs/repro/nbody-geotdm-quick.toml")
        }
        ("nbody-geotdm", Standard) => {
            include_str!("../../../../configs/repro/nbody-geotdm-standard.toml")
        }
        ("md17-geotdm", Quick) => include_str!("../../../../configs/repro/md17-geotdm-quick.toml"),
        ("md17-geotdm", Standard) => {
            include_str!("../../../../configs/repro/md17-geotdm-standard.toml")
        }
        _ => anyhow::bail!("no repro config for {table:?}"),
    })
}

/// N-body trajectories generated per split: (train, val = test).
fn nbody_sizes(budget: Budget) -> (usize, usize) {
    match budget {
        Budget::Quick => (400, 200),
        Budget::Standard | Budget::Full => (3000, 2000),
    }
}

/// One row kind of a table: a name and the config keys it sets.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Variant {
    pub(crate) name: &'static str,
    pub(crate) set: &'static [&'static str],
}

pub(crate) const EGNO: Variant = Variant {
    name: "EGNO",
    set: &["model.kind=\"egno\""],
};
/// SGDD with its defaults: the teacher on a decoder of its own, λ = 0.1, the alignment on while
/// the teacher's path predicts better on running mean errors (the best SGDD measured at the
/// standard budget).
pub(crate) const SGDD: Variant = Variant {
    name: "SGDD-EGNO",
    set: &["model.kind=\"sgdd\""],
};
/// The control without a teacher: SGDD's student conditioning the decoder, same budget.
const NO_TEACHER: Variant = Variant {
    name: "EGNO + encoder (no teacher)",
    set: &["model.kind=\"no-teacher\""],
};
/// SGDD as the paper describes it (seed 000), beside the defaults that measured better.
const SGDD_PAPER: Variant = Variant {
    name: "SGDD-EGNO (paper recipe)",
    set: &[
        "model.kind=\"sgdd\"",
        "model.teacher_path=\"scheduled\"",
        "model.lambda=1.0",
        "model.align_gate=\"all\"",
        "model.schedule=\"paper\"",
        "model.student=\"gat\"",
        "model.student_directions=false",
        "model.align_standardize=false",
        "model.sge_lr_scale=1.0",
        "model.k_at_gap=false",
    ],
};
/// SGDD whose teacher trains a decoder of its own (the student's decoder never reads the
/// teacher), with a light alignment (λ = 0.1) applied only to the samples the teacher's path
/// predicts better than the student's (`model.align_gate`).
const SGDD_GATED: Variant = Variant {
    name: "SGDD-EGNO (teacher decoder, gated)",
    set: &[
        "model.kind=\"sgdd\"",
        "model.teacher_path=\"separate\"",
        "model.lambda=0.1",
        "model.align_gate=\"teacher-better\"",
    ],
};
/// The SGDD default before the standard-budget measurements: the one decoder teacher-forced by
/// the student-end schedule, λ = 1, every sample aligned.
const SGDD_SCHEDULED: Variant = Variant {
    name: "SGDD-EGNO (shared decoder, scheduled)",
    set: &[
        "model.kind=\"sgdd\"",
        "model.teacher_path=\"scheduled\"",
        "model.lambda=1.0",
        "model.align_gate=\"all\"",
    ],
};
/// `--rows` slugs of rows that became another row, and what to ask for now.
const RENAMED_ROWS: [(&str, &str); 1] = [(
    "sgdd-egno-teacher-decoder-running-gate",
    "its settings are SGDD's defaults now: the row `sgdd-egno`",
)];
/// The GF-NODE decoder alone (`[model.gf_node]` of the base config: the authors' MD17 setting).
const GF_NODE: Variant = Variant {
    name: "GF-NODE",
    set: &["model.kind=\"gf-node\""],
};
/// SGDD with the GF-NODE decoder (the paper's best rows), otherwise the SGDD-EGNO row's settings.
const SGDD_GF_NODE: Variant = Variant {
    name: "SGDD-GFNODE",
    set: &["model.kind=\"sgdd\"", "model.decoder=\"gf-node\""],
};
/// Every table's rows of learned models, in order.
const LEARNED: [Variant; 8] = [
    EGNO,
    NO_TEACHER,
    SGDD,
    SGDD_GATED,
    SGDD_SCHEDULED,
    SGDD_PAPER,
    GF_NODE,
    SGDD_GF_NODE,
];
pub(crate) const CONST_VEL: Variant = Variant {
    name: "constant velocity",
    set: &["model.kind=\"const-vel\""],
};
const STATIC: Variant = Variant {
    name: "static (initial positions)",
    set: &["model.kind=\"static\""],
};
const ABLATIONS: [Variant; 3] = [
    Variant {
        name: "SGDD-EGNO w/o SGE",
        set: &["model.kind=\"sgdd\"", "model.sge=false"],
    },
    Variant {
        name: "SGDD-EGNO w/o spectral align",
        set: &["model.kind=\"sgdd\"", "model.align_spec=false"],
    },
    Variant {
        name: "SGDD-EGNO w/o representation align",
        set: &["model.kind=\"sgdd\"", "model.align_rep=false"],
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
    /// SGDD: the student's imitation R² of the teacher's `z^sg` (test split).
    imitation_r2_mean: Option<f64>,
    train_seconds: f64,
    runs: Vec<RunResult>,
}

pub(crate) fn mean_std(xs: &[f64]) -> (f64, f64) {
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
pub(crate) fn intact_manifest(dir: &Path) -> Option<traj_data::Manifest> {
    let man = traj_data::Manifest::read(dir).ok()?;
    man.verify_all(dir).ok()?;
    Some(man)
}

pub(crate) fn ensure_dataset(root: &Path, system: System, budget: Budget) -> Result<PathBuf> {
    // the standard and full budgets share the papers' dataset sizes
    let suffix = if budget == Budget::Quick {
        "-quick"
    } else {
        ""
    };
    let dir = root.join(format!("nbody-{system}{suffix}"));
    if intact_manifest(&dir).is_some() {
        return Ok(dir);
    }
    let (train, eval) = nbody_sizes(budget);
    let mut spec = NBodySpec::new(system);
    spec.n_train = train;
    spec.n_val = eval;
    spec.n_test = eval;
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

/// One table: named datasets × variants, over seeds, on one base config.
struct Table<'a> {
    /// File stem of the outputs (`OUT/<name>.json`, `.md`) and run directory.
    name: &'a str,
    /// The base config (`configs/repro/<config>[-quick|-standard].toml`).
    config: &'a str,
    /// What the windows are, for the report.
    setting: &'a str,
    /// Trajectories per split when the data was generated for the table.
    sizes: Option<(usize, usize)>,
    /// (label, dataset directory) of each dataset.
    data: Vec<(String, PathBuf)>,
    /// (dataset label, variant) in table order.
    plan: Vec<(String, Variant)>,
    /// Published figures printed beside ours (same trials and split, other runs).
    published: Vec<Published>,
    /// Overrides of every run's config beyond its variant's (e.g. the graph of each window).
    set: Vec<String>,
}

/// A figure from a paper, printed as such beside the measured rows.
#[derive(Debug, Clone, Serialize)]
struct Published {
    model: &'static str,
    source: &'static str,
    /// Test S2S ×10⁻².
    s2s: f64,
}

pub fn run(nbody: &NbodyReproArgs) -> Result<()> {
    let args = &nbody.common;
    let mut data = Vec::new();
    let mut plan = Vec::new();
    let systems = nbody_systems(&nbody.systems);
    for &system in &systems {
        let dir = ensure_dataset(&args.data_root, system, args.budget())?;
        data.push((system.to_string(), dir));
        for v in [STATIC, CONST_VEL].into_iter().chain(LEARNED) {
            plan.push((system.to_string(), v));
        }
    }
    if systems.contains(&System::Charged) {
        plan.extend(ABLATIONS.iter().map(|&v| (System::Charged.to_string(), v)));
    }
    let table = Table {
        name: "nbody",
        config: "nbody",
        setting: "EGNO N-body: condition on frame 30, predict frames 32, 34, 36, 38, 40",
        sizes: Some(nbody_sizes(args.budget())),
        data,
        plan,
        published: Vec::new(),
        set: Vec::new(),
    };
    run_table(args, &table)
}

/// The systems of `--systems` in table order, each once (all three when none is named).
fn nbody_systems(named: &[System]) -> Vec<System> {
    System::ALL
        .into_iter()
        .filter(|s| named.is_empty() || named.contains(s))
        .collect()
}

/// `sgdd repro mocap-run`: EGNO's CMU subject 09 "run" setting (start frames of EGNO's split,
/// targets start+26 … start+30), data from `sgdd data import mocap-run`. With
/// `--paper-budget`, EGNO's published hyperparameters and budget, beside the published figures.
pub fn run_mocap(mocap: &MocapReproArgs) -> Result<()> {
    let args = &mocap.common;
    let dir = args.data_root.join("mocap-run");
    ensure_imported(
        &dir,
        "cargo xtask data import mocap-run --from <the cmu-mocap-09-run folder>",
    )?;
    let label = || "mocap-run".to_owned();
    let table = if mocap.paper_budget {
        Table {
            name: "mocap-run-paper",
            config: "mocap-run-paper",
            setting: "EGNO CMU mocap run at EGNO's published budget (6 × 128, lr 5e-4, batch 12, \
                      ≤ 2000 epochs, patience 50 validations, 200 training windows): start \
                      frames of EGNO's split, targets start+26 … start+30",
            sizes: None,
            data: vec![(label(), dir)],
            plan: [STATIC, CONST_VEL, EGNO, NO_TEACHER, SGDD]
                .into_iter()
                .map(|v| (label(), v))
                .collect(),
            published: vec![
                Published {
                    model: "EGNO",
                    source: "EGNO paper (Xu et al. 2024)",
                    s2s: 33.9,
                },
                Published {
                    model: "SGDD-EGNO",
                    source: "SGDD paper (seed 000)",
                    s2s: 28.2,
                },
            ],
            set: Vec::new(),
        }
    } else {
        Table {
            name: "mocap-run",
            config: "mocap-run",
            setting: "EGNO CMU mocap run: start frames of EGNO's split, targets start+26 … start+30",
            sizes: None,
            data: vec![(label(), dir)],
            plan: [STATIC, CONST_VEL]
                .into_iter()
                .chain(LEARNED)
                .map(|v| (label(), v))
                .collect(),
            published: Vec::new(),
            set: Vec::new(),
        }
    };
    run_table(args, &table)
}

/// `sgdd repro adk`: EGNO's protein setting on the real ADK trajectory (`adk-dims`, or with
/// `--split random` a random split of its windows, `adk-dims-random`), sliding windows,
/// targets +3, +7, +11, +15; data from `sgdd data fetch adk`. Each window has its own 8 Å
/// contact graph (EGNO's setting) unless `--graph first-frame`.
pub fn run_adk(adk: &AdkReproArgs) -> Result<()> {
    let args = &adk.common;
    let data = match adk.split {
        AdkSplit::Chronological => "adk-dims",
        AdkSplit::Random => "adk-dims-random",
    };
    let dir = args.data_root.join(data);
    ensure_imported(&dir, "cargo xtask data fetch adk")?;
    let window = adk.graph == AdkGraph::Window;
    let name = format!(
        "adk{}{}",
        if adk.split == AdkSplit::Random {
            "-random"
        } else {
            ""
        },
        if window { "" } else { "-first-frame-graph" }
    );
    let setting = format!(
        "EGNO protein (ADK, 855 backbone atoms): {}; {}; targets +3, +7, +11, +15 frames",
        match adk.split {
            AdkSplit::Chronological => "chronological 60/20/20 split by frame (EGNO's)",
            AdkSplit::Random =>
                "a random 60/20/20 split of the 16-frame windows (test windows overlap training ones)",
        },
        if window {
            "each window's own 8 Å contact graph (EGNO's)"
        } else {
            "8 Å contacts of the trajectory's first frame for every window"
        }
    );
    let cutoff = traj_data::protein::ProteinSpec::default().contact_cutoff;
    let table = Table {
        name: &name,
        config: "adk",
        setting: &setting,
        sizes: None,
        data: vec![(data.into(), dir)],
        plan: [STATIC, CONST_VEL]
            .into_iter()
            .chain(LEARNED)
            .map(|v| (data.to_owned(), v))
            .collect(),
        published: Vec::new(),
        set: if window {
            vec![
                "data.graph=\"radius\"".into(),
                format!("data.graph_radius={cutoff:?}"),
            ]
        } else {
            Vec::new()
        },
    };
    run_table(args, &table)
}

/// The conversion of `DATA_ROOT/md17xtb_<M>.npz` in `DATA_ROOT/md17xtb-<M>-<setting>`, made on
/// first use and again when it is not intact or was made with another `spec` (the setting's
/// parameters as JSON). A missing npz is an error naming the `data generate` command (`steps`:
/// its `--steps` argument; `speed`: what it costs here).
pub(crate) fn ensure_md17(
    root: &Path,
    m: traj_data::molecule::Md17Molecule,
    setting: traj_data::molecule::Md17Setting,
    spec: &serde_json::Value,
    seed: u32,
    steps: &str,
    speed: &str,
) -> Result<PathBuf> {
    let tag = match setting {
        traj_data::molecule::Md17Setting::Egno => "egno",
        traj_data::molecule::Md17Setting::Geotdm => "geotdm",
    };
    let dir = root.join(format!("md17xtb-{m}-{tag}"));
    if intact_manifest(&dir).is_some_and(|man| man.generator.get("setting") == Some(spec)) {
        return Ok(dir);
    }
    let npz = root.join(format!("md17xtb_{m}.npz"));
    anyhow::ensure!(
        npz.exists(),
        "no {}: make it first with `cargo xtask data generate md17-xtb --molecule {m} {steps} \
         --out {}` (GFN2-xTB at 500 K, 0.5 fs steps; {speed}; resumable)",
        npz.display(),
        npz.display()
    );
    eprintln!("repro: converting {} to {}", npz.display(), dir.display());
    let c = traj_data::molecule::convert_md17(&npz, &format!("md17xtb_{m}"), setting, seed, &dir)
        .with_context(|| format!("converting {}", npz.display()))?;
    eprintln!(
        "repro: {} frames of {} atoms → {} nodes; train / val / test trajectories {} / {} / {}",
        c.num_frames,
        c.num_atoms,
        c.num_nodes,
        c.num_trajectories[0],
        c.num_trajectories[1],
        c.num_trajectories[2]
    );
    Ok(dir)
}

/// `sgdd repro md17-xtb --molecule M`: EGNO's MD17 setting (heavy atoms, bonds + 2-hop edges,
/// Δ = 3000 steps of 0.5 fs, T = 8, 500 / 2000 / 2000 windows) on the GFN2-xTB trajectory that
/// `sgdd data generate md17-xtb` wrote to `DATA_ROOT/md17xtb_<M>.npz`, converted on first use.
pub fn run_md17_xtb(args: &Md17ReproArgs) -> Result<()> {
    let m = args.molecule;
    let root = &args.common.data_root;
    let dir = ensure_md17(
        root,
        m,
        traj_data::molecule::Md17Setting::Egno,
        &serde_json::to_value(traj_data::molecule::EgnoMd17Spec::default())?,
        traj_data::molecule::EgnoMd17Spec::default().seed,
        "--steps 60000",
        "about 2 ms/step for ethanol, 10–15 ms/step for aspirin on two CPU cores",
    )?;
    let label = m.to_string();
    let name = format!("md17-xtb-{m}");
    let table = Table {
        name: &name,
        config: "md17-xtb",
        setting: "EGNO MD17 (GFN2-xTB dynamics at 500 K, 0.5 fs): heavy atoms, bonds < 1.6 Å + 2-hop, \
                  condition on one frame, predict 8 frames over Δ = 3000 steps (1.5 ps)",
        sizes: None,
        data: vec![(label.clone(), dir)],
        plan: [STATIC, CONST_VEL]
            .into_iter()
            .chain(LEARNED)
            .map(|v| (label.clone(), v))
            .collect(),
        published: Vec::new(),
        set: Vec::new(),
    };
    run_table(&args.common, &table)
}

/// The checked config of one run of a table: the base config with the variant's keys, the
/// dataset, the seed and the device set.
pub(crate) fn config(
    table: &str,
    budget: Budget,
    data_dir: &Path,
    v: Variant,
    seed: u64,
    device: &str,
) -> Result<CheckedRunConfig> {
    config_with(table, budget, data_dir, v, seed, device, &[])
}

/// [`config`] with `extra` overrides after the variant's.
pub(crate) fn config_with(
    table: &str,
    budget: Budget,
    data_dir: &Path,
    v: Variant,
    seed: u64,
    device: &str,
    extra: &[String],
) -> Result<CheckedRunConfig> {
    let mut set: Vec<String> = v.set.iter().map(|s| (*s).to_owned()).collect();
    set.extend_from_slice(extra);
    set.push(format!("data.dir={:?}", data_dir.display().to_string()));
    set.push(format!("train.seed={seed}"));
    set.push(format!("train.device={device:?}"));
    RunConfig::from_toml(base_config(table, budget)?, &set)
        .with_context(|| format!("configs/repro/{table}{}.toml", budget.suffix()))
}

fn ensure_imported(dir: &Path, how: &str) -> Result<()> {
    anyhow::ensure!(
        dir.join(traj_data::MANIFEST_FILE).exists(),
        "no dataset at {}: make it first with `{how}`",
        dir.display()
    );
    Ok(())
}

/// How a table claims a run directory: `Force` with `--force`, `Resume` where a checkpoint is
/// (a finished run then only scores again), otherwise `Fresh`.
pub(crate) fn table_run_mode(out: &Path, force: bool) -> RunMode {
    if force {
        RunMode::Force
    } else if out.join("checkpoint.safetensors").exists() {
        RunMode::Resume
    } else {
        RunMode::Fresh
    }
}

/// The directory name of a table row's run: lower case ASCII letters, digits and dots, every
/// other run of characters one `-` (`α` spelt `alpha`), none at either end, so no name looks
/// like an option (`+ output KD (FNO)` → `output-kd-fno`).
pub(crate) fn run_slug(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.to_lowercase().replace('α', "alpha").chars() {
        if c.is_ascii_alphanumeric() || c == '.' {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_end_matches('-').to_owned()
}

/// Per seed, the first epoch at which a ridge-initialised run's validation score reaches the
/// best validation score of the random-init run of the same seed, and that run's best epoch.
/// `ridge`: each seed's `(epoch, validation score)`s; `random`: each seed's `(best score, best
/// epoch)`. Lower scores are better.
pub(crate) fn epochs_to_reach(
    ridge: &[Vec<(usize, f64)>],
    random: &[(f64, usize)],
) -> Vec<(Option<usize>, usize)> {
    ridge
        .iter()
        .zip(random)
        .map(|(scores, &(target, best))| {
            let first = scores.iter().find(|(_, v)| *v <= target).map(|(e, _)| *e);
            (first, best)
        })
        .collect()
}

/// The plan's rows that `--rows` keeps (all of them when it is empty): the untrained baselines
/// and the learned rows named by their run slugs. A name no row has is an error listing them.
fn select_rows<'p>(
    plan: &'p [(String, Variant)],
    rows: &[String],
) -> Result<Vec<&'p (String, Variant)>> {
    let untrained = |v: &Variant| v.name == STATIC.name || v.name == CONST_VEL.name;
    for want in rows {
        if let Some((_, now)) = RENAMED_ROWS.iter().find(|(old, _)| old == want) {
            anyhow::bail!("--rows: the row `{want}` is gone: {now}");
        }
        if !plan
            .iter()
            .any(|(_, v)| !untrained(v) && run_slug(v.name) == *want)
        {
            // each row once, in table order (a table repeats its rows per dataset)
            let mut names: Vec<String> = Vec::new();
            for (_, v) in plan.iter().filter(|(_, v)| !untrained(v)) {
                let slug = run_slug(v.name);
                if !names.contains(&slug) {
                    names.push(slug);
                }
            }
            anyhow::bail!(
                "--rows: this table has no row `{want}`; its learned rows are {}",
                names.join(", ")
            );
        }
    }
    Ok(plan
        .iter()
        .filter(|(_, v)| rows.is_empty() || untrained(v) || rows.contains(&run_slug(v.name)))
        .collect())
}

/// Trains one run of a table: reuses a finished run, resumes an unfinished one, or starts it.
pub(crate) fn one_run(cfg: CheckedRunConfig, out: &Path, force: bool) -> Result<(RunResult, f64)> {
    let mode = match table_run_mode(out, force) {
        // an untrained baseline's directory: scoring it again is cheap
        RunMode::Fresh if out.join("result.json").exists() || out.join("config.toml").exists() => {
            RunMode::Force
        }
        mode => mode,
    };
    let (r, t) = train_cmd::run(cfg, out, mode, None, true, None)?;
    Ok((r, t.train_seconds))
}

fn run_table(args: &ReproArgs, table: &Table<'_>) -> Result<()> {
    let started = Instant::now();
    // one directory and one pair of outputs per budget: a quick table never resumes, reuses or
    // overwrites a standard one
    let name = format!("{}{}", table.name, args.budget().suffix());
    let mut rows = Vec::new();
    let overrides: Vec<String> = table.set.iter().chain(&args.set).cloned().collect();
    let base = config_with(
        table.config,
        args.budget(),
        &table.data[0].1,
        EGNO,
        0,
        &args.device,
        &overrides,
    )?;
    for (label, v) in select_rows(&table.plan, &args.rows)? {
        let dir = &table
            .data
            .iter()
            .find(|(l, _)| l == label)
            .context("dataset of the plan")?
            .1;
        let cfg_for = |seed| {
            config_with(
                table.config,
                args.budget(),
                dir,
                *v,
                seed,
                &args.device,
                &overrides,
            )
        };
        let first = cfg_for(0)?;
        let seeds = if first.model.kind.trainable() {
            args.seeds
        } else {
            1
        };
        let mut runs = Vec::new();
        let mut seconds = 0.0;
        for seed in 0..seeds {
            let cfg = cfg_for(seed)?;
            let slug = v.name.to_lowercase().replace([' ', '/'], "-");
            let out = args
                .out
                .join(&name)
                .join(label)
                .join(format!("{slug}-s{seed}"));
            let t0 = Instant::now();
            let (r, s) = one_run(cfg, &out, args.force)
                .with_context(|| format!("{label} / {} / seed {seed}", v.name))?;
            eprintln!(
                "repro: {label:<9} {:<36} seed {seed}: S2S {:.4} S2T {:.4} (×10⁻²) in {:.0?}",
                v.name,
                r.test.s2s * 100.0,
                r.test.s2t * 100.0,
                t0.elapsed()
            );
            seconds += s;
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
        let r2: Vec<f64> = runs.iter().filter_map(|r| r.imitation_r2_test).collect();
        let imitation_r2_mean = (!r2.is_empty()).then(|| mean_std(&r2).0);
        rows.push(Row {
            teacher_oracle_s2s_mean,
            imitation_r2_mean,
            system: label.clone(),
            model: v.name.to_owned(),
            seeds: runs.len(),
            s2s_mean,
            s2s_std,
            s2t_mean,
            s2t_std,
            train_seconds: seconds,
            runs,
        });
    }
    std::fs::create_dir_all(&args.out)?;
    let report = serde_json::json!({
        "setting": format!("{}; metrics on the test split in original units, ×10⁻²", table.setting),
        "config": format!("configs/repro/{}{}.toml", table.config, args.budget().suffix()),
        "base_config": base.to_toml(),
        "trajectories": table.sizes,
        "budget": args.budget(),
        "device": args.device,
        "wall_seconds": started.elapsed().as_secs_f64(),
        "rows": rows,
        "published": table.published,
        "overrides": args.set,
    });
    let md = markdown(table, &rows, &base, args.budget(), &args.set);
    write_table(&args.out, &name, &report, &md, started)
}

/// Writes a table's `OUT/<name>.json` and `OUT/<name>.md`, and prints the Markdown.
pub(crate) fn write_table(
    out: &Path,
    name: &str,
    report: &serde_json::Value,
    md: &str,
    started: Instant,
) -> Result<()> {
    let json_path = out.join(format!("{name}.json"));
    let md_path = out.join(format!("{name}.md"));
    std::fs::write(&json_path, serde_json::to_string_pretty(report)?)
        .with_context(|| format!("writing {}", json_path.display()))?;
    std::fs::write(&md_path, md).with_context(|| format!("writing {}", md_path.display()))?;
    println!("{md}");
    println!(
        "wrote {} and {} in {:.0?}",
        json_path.display(),
        md_path.display(),
        started.elapsed()
    );
    Ok(())
}

/// Decimals that show `v` to four significant figures, at least three (the springs system's
/// errors are 10⁻⁴ of the others').
fn decimals(v: f64) -> usize {
    if v == 0.0 || !v.is_finite() {
        return 3;
    }
    (3 - v.abs().log10().floor() as i64).clamp(3, 10) as usize
}

/// `mean ± std` at the mean's precision.
fn mean_pm(mean: f64, std: f64) -> String {
    let d = decimals(mean);
    format!("{mean:.d$} ± {std:.d$}")
}

fn markdown(
    table: &Table<'_>,
    rows: &[Row],
    b: &RunConfig,
    budget: Budget,
    overrides: &[String],
) -> String {
    let mut s = String::new();
    let setting = table.setting;
    let data = match table.sizes {
        Some((train, eval)) => format!("{train} train / {eval} val / {eval} test trajectories, "),
        None => "all windows of the dataset, ".to_owned(),
    };
    let _ = writeln!(
        s,
        "{setting}; test MSE ×10⁻² (mean ± std over seeds). Budget{}: {data}{} epochs, batch {}, \
         hidden {}; model selection by the best validation {} (EGNO's rule is S2S). The student's \
         imitation R² of the teacher's representation is on the test split; the last column is a \
         diagnostic, not a result: SGDD's decoder conditioned on the teacher, which reads the \
         future frames.\n",
        match budget {
            Budget::Quick => " (--budget quick)",
            Budget::Standard => " (--budget standard)",
            Budget::Full => " (full)",
        },
        b.train.epochs,
        b.train.batch_size,
        b.model.hidden,
        match b.train.select {
            sgdd_train::SelectMetric::S2s => "S2S",
            sgdd_train::SelectMetric::S2t => "S2T",
        }
    );
    if !overrides.is_empty() {
        let _ = writeln!(
            s,
            "Every run of this table also had `--set {}`.\n",
            overrides.join("` `--set ")
        );
    }
    let _ = writeln!(
        s,
        "| system | model | S2S | S2T | seeds | imitation R² | teacher-oracle S2S |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|");
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} |",
            r.system,
            r.model,
            mean_pm(r.s2s_mean, r.s2s_std),
            mean_pm(r.s2t_mean, r.s2t_std),
            r.seeds,
            r.imitation_r2_mean
                .map_or("–".to_owned(), |v| format!("{v:.2}")),
            r.teacher_oracle_s2s_mean.map_or("–".to_owned(), |v| {
                let d = decimals(v);
                format!("{v:.d$}")
            })
        );
    }
    // runs that ended before their last epoch, and why (early stopping, a divergence)
    let stopped: Vec<String> = rows
        .iter()
        .flat_map(|r| {
            r.runs.iter().filter_map(move |run| {
                run.stopped_early.as_ref().map(|why| {
                    format!(
                        "- {} / {} / seed {}: best epoch {} of {}; {why}",
                        r.system, r.model, run.seed, run.best_epoch, run.epochs
                    )
                })
            })
        })
        .collect();
    if !stopped.is_empty() {
        let _ = writeln!(s, "\nRuns that ended before their last epoch:\n");
        for line in stopped {
            let _ = writeln!(s, "{line}");
        }
    }
    if let Some(system) = rows.first().map(|r| r.system.as_str()) {
        for p in &table.published {
            let _ = writeln!(
                s,
                "| {system} | {} — published, {} (same trials and split, not run here) | {:.1} | – | – | – | – |",
                p.model, p.source, p.s2s
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::{CONST_VEL, EGNO, LEARNED, SGDD, run_slug, select_rows};

    #[test]
    fn rows_select_learned_models_and_keep_the_baselines() {
        let plan: Vec<_> = ["charged", "springs"]
            .into_iter()
            .flat_map(|system| {
                [CONST_VEL]
                    .into_iter()
                    .chain(LEARNED)
                    .map(move |v| (system.to_owned(), v))
            })
            .collect();
        let names = |rows: &[&str]| {
            let rows: Vec<String> = rows.iter().map(|r| r.to_string()).collect();
            select_rows(&plan, &rows)
                .unwrap()
                .iter()
                .map(|(_, v)| v.name)
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&[]).len(), plan.len());
        assert_eq!(
            names(&["sgdd-egno", "egno"]),
            [CONST_VEL.name, EGNO.name, SGDD.name].repeat(2)
        );
        assert_eq!(
            names(&["egno-encoder-no-teacher"]),
            [CONST_VEL.name, "EGNO + encoder (no teacher)"].repeat(2)
        );
        let err = select_rows(&plan, &["sgdd".to_owned()])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no row `sgdd`") && err.contains("sgdd-gfnode"),
            "{err}"
        );
        assert_eq!(
            err.matches("sgdd-gfnode").count(),
            1,
            "each row once: {err}"
        );
        let err = select_rows(
            &plan,
            &["sgdd-egno-teacher-decoder-running-gate".to_owned()],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("`sgdd-egno`"), "{err}");
        assert!(names(&["sgdd-egno-shared-decoder-scheduled"]).len() == 4);
    }

    #[test]
    fn table_figures_keep_four_significant_digits() {
        assert_eq!(super::mean_pm(1.3104, 0.2), "1.310 ± 0.200");
        assert_eq!(super::mean_pm(11.698, 0.0), "11.698 ± 0.000");
        assert_eq!(
            super::mean_pm(0.000_244_3, 0.000_01),
            "0.0002443 ± 0.0000100"
        );
        assert_eq!(super::decimals(0.0), 3);
    }

    #[test]
    fn systems_keep_table_order_and_default_to_all() {
        use traj_data::nbody::System;
        assert_eq!(super::nbody_systems(&[]), System::ALL.to_vec());
        assert_eq!(
            super::nbody_systems(&[System::Springs, System::Charged, System::Springs]),
            [System::Charged, System::Springs]
        );
    }

    #[test]
    fn run_slugs_are_plain_names() {
        assert_eq!(run_slug("+ output KD (FNO)"), "output-kd-fno");
        assert_eq!(
            run_slug("EGNO-16 + freq KD α=0.25 (EGNO)"),
            "egno-16-freq-kd-alpha-0.25-egno"
        );
        assert_eq!(run_slug("MLP alone"), "mlp-alone");
    }
}
