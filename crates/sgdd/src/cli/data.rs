//! `sgdd data ...`: generate, fetch, import and convert datasets.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use traj_data::SplitMethod;
use traj_data::mocap::{CmuSelection, CmuTrials};
use traj_data::molecule::{Md17File, Md17Molecule, Md17Setting, obtain_md17};
use traj_data::navier_stokes::NsDatasetSpec;
use traj_data::nbody::{NBodySpec, System};
use traj_data::npz_import::{EdgeSource, NpzImportSpec, VelocitySource};
use traj_data::protein::{ADK_SOURCE, ADK_TRAJECTORIES, ProteinSpec};
use traj_data::sources::{Source, Sources, extract_tar, obtain, python_executable};
use traj_data::xtb::{self, XtbRun};

#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Generate a dataset.
    #[command(subcommand)]
    Generate(Generate),
    /// Obtain a real dataset (verified against `datasets/manifest.toml`) and convert it.
    #[command(subcommand)]
    Fetch(Fetch),
    /// Convert data already on this machine into the project's format.
    #[command(subcommand)]
    Import(Import),
}

#[derive(Debug, Subcommand)]
pub enum Generate {
    /// N-body systems (charged particles, springs, gravity) with the published generators'
    /// parameters; deterministic for a seed.
    Nbody(NBodyArgs),
    /// MD17-style molecular dynamics with real semi-empirical physics: GFN2-xTB (tblite via ase)
    /// Langevin dynamics at 500 K with 0.5 fs steps from an RDKit geometry, resumable (chunked),
    /// written as an MD17-format npz (`theory = "GFN2-xTB"`). Installs ase, tblite and rdkit into
    /// the Python environment if they are missing.
    Md17Xtb(Md17XtbArgs),
    /// 2-D incompressible Navier–Stokes vorticity on a periodic grid (SDKD's NSE setting: the
    /// FNO benchmark's solver, ν = 10⁻³, fixed forcing, Gaussian random initial fields), in the
    /// grid format; deterministic for a seed, resumable (finished splits are kept).
    NavierStokes(NavierStokesArgs),
}

#[derive(Debug, Args)]
pub struct NavierStokesArgs {
    /// The small setting (32², dt = 10⁻³, 128 / 24 / 24 sequences) instead of SDKD's (64²,
    /// dt = 10⁻⁴, 1000 / 100 / 100); the options below override either.
    #[arg(long)]
    pub quick: bool,
    /// Training sequences.
    #[arg(long)]
    pub train: Option<usize>,
    /// Validation sequences.
    #[arg(long)]
    pub val: Option<usize>,
    /// Test sequences.
    #[arg(long)]
    pub test: Option<usize>,
    /// Frames after the initial one (a frame per time unit).
    #[arg(long)]
    pub frames: Option<usize>,
    /// Seed of the initial fields.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output directory (created).
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct Md17XtbArgs {
    /// aspirin, benzene, ethanol, malonaldehyde, naphthalene, salicylic_acid, toluene or uracil.
    #[arg(long)]
    pub molecule: Md17Molecule,
    /// MD steps of 0.5 fs (one saved frame per step, as MD17).
    #[arg(long)]
    pub steps: usize,
    /// Seed of the start geometry, velocities and Langevin noise.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Steps per chunk (a killed run loses at most one chunk).
    #[arg(long, default_value_t = 1000)]
    pub chunk: usize,
    /// Work directory for the chunks [default: ./datasets/cache/md17-xtb-<molecule>-seed<S>].
    #[arg(long)]
    pub work: Option<PathBuf>,
    /// The npz to write [default: ./target/data/md17xtb_<molecule>.npz].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Python [default: the venv's `python` when VIRTUAL_ENV is set, else the project's `.venv`,
    /// else `python3`].
    #[arg(long)]
    pub python: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Fetch {
    /// Adenylate kinase (ADK) MD from the PyPI archive `mdanalysistests==2.11.0`: backbone
    /// N, CA, C, O (855 nodes), contacts under 8 Å, chronological 60/20/20 split (EGNO's protein
    /// setting). Writes `adk-dims`, `adk-dims2` and `adk-tmd-namd` under `--out` (and each
    /// with a random split of its windows: `adk-dims-random`, …), and leaves
    /// every verified member in the cache, among them `adk_open.pdb` and `adk_closed.pdb` (the
    /// spectral benchmark's real ADK backbone).
    Adk(AdkArgs),
    /// MD17 from the sGDML host (`datasets/manifest.toml`: `md17-<molecule>`) or, with
    /// `--revised`, rMD17 from its archive, downloaded resumably and verified, then converted like
    /// `sgdd data import md17`.
    Md17(FetchMd17Args),
    /// CMU motion capture ASF (skeleton) + AMC (motions) of a subject from the CMU site, turned
    /// into joint positions by forward kinematics (bones + 2-hop edges).
    CmuMocap(CmuMocapArgs),
    /// Download any source listed in `datasets/manifest.toml` (e.g. `md17-aspirin`,
    /// `cmu-09-asf`) into the cache, resumably, verified before it is placed.
    Source(SourceArgs),
}

#[derive(Debug, Subcommand)]
pub enum Import {
    /// CMU motion capture subject 09 "run" (31 joints) as published with EGNO: bones + 2-hop
    /// edges, EGNO's split of trials and start frames.
    MocapRun(MocapRunArgs),
    /// An MD17 or rMD17 `.npz` in the GeoTDM or the EGNO setting.
    Md17(Md17Args),
    /// Your own trajectories from a numpy `.npz`: `positions` [frames, N, 3] or [trajectories,
    /// frames, N, 3] (required); optional `velocities` (else central finite differences),
    /// `trajectory_lengths`, `node_types` [N], `node_features` [N, F], `edges` [E, 2] with
    /// `edge_attr` [E, A] (else `--cutoff`). See docs/data-format.md.
    Npz(NpzArgs),
}

#[derive(Debug, Args)]
pub struct NpzArgs {
    /// The `.npz` file.
    #[arg(long)]
    pub from: PathBuf,
    /// Output directory (train/val/test.safetensors and manifest.json).
    #[arg(long)]
    pub out: PathBuf,
    /// Dataset name [default: the file stem].
    #[arg(long)]
    pub name: Option<String>,
    /// Time between consecutive frames, in `--time-unit`.
    #[arg(long, default_value_t = 1.0)]
    pub dt: f64,
    /// Length unit of the positions (e.g. angstrom, nm).
    #[arg(long, default_value = "dimensionless")]
    pub unit: String,
    /// Time unit of `--dt` (e.g. fs, ps).
    #[arg(long, default_value = "dimensionless")]
    pub time_unit: String,
    /// Without an `edges` array: join nodes closer than this (in `--unit`) in the first frame.
    #[arg(long)]
    pub cutoff: Option<f64>,
    /// Train, val and test fractions, summing to 1.
    #[arg(long, default_value = "0.6,0.2,0.2", value_parser = parse_fractions)]
    pub split: [f64; 3],
    /// How to split: `auto` (by frame for one trajectory, by trajectory in file order for
    /// several), `frames` (each trajectory cut chronologically), `trajectories` (in file order)
    /// or `random` (trajectories shuffled with `--seed`).
    #[arg(long, value_enum, default_value = "auto")]
    pub split_by: SplitBy,
    /// Shuffle seed of `--split-by random`.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// See [`NpzArgs::split_by`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SplitBy {
    /// By frame for one trajectory, by trajectory for several.
    Auto,
    /// Every trajectory cut chronologically.
    Frames,
    /// Whole trajectories in file order.
    Trajectories,
    /// Whole trajectories, shuffled with `--seed`.
    Random,
}

/// `0.6,0.2,0.2` → `[0.6, 0.2, 0.2]`.
fn parse_fractions(s: &str) -> Result<[f64; 3], String> {
    let parts: Vec<f64> = s
        .split(',')
        .map(|p| p.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{s:?}: {e}"))?;
    parts
        .try_into()
        .map_err(|_| format!("{s:?}: expected three fractions, train,val,test"))
}

#[derive(Debug, Args)]
pub struct Md17Args {
    /// The `.npz` file (MD17 keys R, z, E, F or rMD17 keys coords, nuclear_charges, ...).
    #[arg(long)]
    pub from: PathBuf,
    /// Which setting: `geotdm` (GeoTDM / LaM-SLidE: all atoms, every 10th frame, chronological
    /// 60/20/20, 10 + 20 windows) or `egno` (EGNO / SGDD: heavy atoms, bonds < 1.6 Å + 2-hop,
    /// Δ = 3000, T = 8, 500/2000/2000 windows).
    #[arg(long, default_value = "egno")]
    pub setting: Md17Setting,
    /// Dataset name [default: the file stem].
    #[arg(long)]
    pub name: Option<String>,
    /// `np.random.seed` of the EGNO start-frame draw (EGNO's code uses 100: the same windows as
    /// EGNO's on the same file).
    #[arg(long, default_value_t = traj_data::molecule::EgnoMd17Spec::default().seed)]
    pub seed: u32,
    /// Output directory.
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct FetchMd17Args {
    /// Molecule: aspirin, benzene, ethanol, malonaldehyde, naphthalene, salicylic_acid, toluene, uracil.
    #[arg(long)]
    pub molecule: String,
    /// Which setting to convert to: `geotdm` or `egno` (see `sgdd data import md17 --help`).
    #[arg(long, default_value = "egno")]
    pub setting: Md17Setting,
    /// The revised MD17 (rMD17 archive; also azobenzene, paracetamol) instead of the original.
    #[arg(long)]
    pub revised: bool,
    #[command(flatten)]
    pub sources: SourceOptions,
    /// Output directory [default: ./target/data/md17-<molecule>-<setting>].
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CmuMocapArgs {
    /// Subject number (the manifest lists subject 09).
    #[arg(long, default_value = "09")]
    pub subject: String,
    /// Which trials: `run` (subject 09's eleven running trials, 01..11) or a comma list `01,02`.
    #[arg(long, default_value = "run")]
    pub trials: CmuTrials,
    #[command(flatten)]
    pub sources: SourceOptions,
    /// Output directory [default: ./target/data/cmu-<subject>-<trials>].
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct NBodyArgs {
    /// Which system.
    #[arg(long, default_value = "charged")]
    pub system: System,
    /// Training trajectories.
    #[arg(long, default_value_t = 3000)]
    pub train: usize,
    /// Validation trajectories.
    #[arg(long, default_value_t = 2000)]
    pub val: usize,
    /// Test trajectories.
    #[arg(long, default_value_t = 2000)]
    pub test: usize,
    /// Seed: the same seed gives byte-identical files.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Integration steps (dt = 0.001).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Save every this many steps.
    #[arg(long)]
    pub sample_every: Option<usize>,
    /// Output directory (created).
    #[arg(long)]
    pub out: PathBuf,
}

/// Where the external sources live.
#[derive(Debug, Args)]
pub struct SourceOptions {
    /// The sources manifest [default: the one built in, `datasets/manifest.toml` of this version].
    #[arg(long)]
    pub manifest: Option<PathBuf>,
    /// Download and extraction cache [default: ./datasets/cache].
    #[arg(long)]
    pub cache: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct AdkArgs {
    #[command(flatten)]
    pub sources: SourceOptions,
    /// Output directory; one dataset directory per trajectory is made inside
    /// [default: ./target/data].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Python with pip [default: the venv's `python` when VIRTUAL_ENV is set, else the
    /// project's `.venv`, else `python3`].
    #[arg(long)]
    pub python: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct SourceArgs {
    /// Source names from the manifest.
    #[arg(required = true)]
    pub names: Vec<String>,
    #[command(flatten)]
    pub sources: SourceOptions,
}

#[derive(Debug, Args)]
pub struct MocapRunArgs {
    /// The folder with `motion_run.npz` and `split_run.json`.
    #[arg(long)]
    pub from: PathBuf,
    /// Output directory [default: ./target/data/mocap-run].
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn run(cmd: DataCommand) -> Result<()> {
    match cmd {
        DataCommand::Generate(Generate::Nbody(args)) => generate_nbody(&args),
        DataCommand::Generate(Generate::Md17Xtb(args)) => generate_md17_xtb(&args),
        DataCommand::Generate(Generate::NavierStokes(args)) => generate_navier_stokes(&args),
        DataCommand::Fetch(Fetch::Adk(args)) => fetch_adk(&args),
        DataCommand::Fetch(Fetch::Source(args)) => fetch_sources(&args),
        DataCommand::Import(Import::MocapRun(args)) => import_mocap_run(&args),
        DataCommand::Import(Import::Md17(args)) => {
            let name = args.name.clone().unwrap_or_else(|| {
                args.from
                    .file_stem()
                    .map_or("md17".into(), |s| s.to_string_lossy().into_owned())
            });
            convert_md17(&args.from, &name, args.setting, args.seed, &args.out)
        }
        DataCommand::Import(Import::Npz(args)) => import_npz(&args),
        DataCommand::Fetch(Fetch::Md17(args)) => fetch_md17(&args),
        DataCommand::Fetch(Fetch::CmuMocap(args)) => fetch_cmu(&args),
    }
}

fn load_sources(opts: &SourceOptions) -> Result<(Sources, PathBuf)> {
    let sources = match &opts.manifest {
        Some(path) => Sources::read(path)?,
        None => Sources::built_in()?,
    };
    let cache = opts
        .cache
        .clone()
        .unwrap_or_else(|| PathBuf::from("datasets/cache"));
    std::fs::create_dir_all(&cache)
        .with_context(|| format!("creating the cache {}", cache.display()))?;
    Ok((sources, cache))
}

fn progress_bar(label: &str) -> ProgressBar {
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template(
            "{msg} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta})",
        )
        .expect("valid template"),
    );
    bar.set_message(label.to_string());
    bar
}

/// [`obtain`] with a progress bar and a line about what was verified.
fn obtain_printing(source: &Source, cache: &Path, python_exe: &Path) -> Result<PathBuf> {
    if let Some(req) = &source.pypi
        && !source.cache_path(cache).exists()
    {
        eprintln!("pip download --no-deps {req} (into {})", cache.display());
    }
    let bar = progress_bar(&source.file);
    let got = obtain(source, cache, python_exe, &|done, total| {
        if let Some(t) = total {
            bar.set_length(t);
        }
        bar.set_position(done);
    });
    bar.finish_and_clear();
    let got = got?;
    if got.pinned {
        eprintln!("verified {} (sha256 {})", got.path.display(), got.sha256);
    } else {
        eprintln!(
            "note: the manifest has no sha256 for {}; this download hashes to {} ({} bytes)",
            source.name, got.sha256, got.bytes
        );
    }
    Ok(got.path)
}

fn fetch_sources(args: &SourceArgs) -> Result<()> {
    let (sources, cache) = load_sources(&args.sources)?;
    for name in &args.names {
        let source = sources.require(name)?;
        let path = obtain_printing(source, &cache, &python_executable(None))?;
        if source.is_archive() {
            for p in extract_tar(&path, &source.members, &cache)? {
                println!("{}", p.display());
            }
        } else {
            println!("{}", path.display());
        }
    }
    Ok(())
}

fn fetch_adk(args: &AdkArgs) -> Result<()> {
    let started = std::time::Instant::now();
    let (sources, cache) = load_sources(&args.sources)?;
    let source = sources.require(ADK_SOURCE)?;
    let archive = obtain_printing(source, &cache, &python_executable(args.python.as_deref()))?;
    let files = extract_tar(&archive, &source.members, &cache)?;
    eprintln!(
        "extracted and verified {} ADK files into {}: {}",
        files.len(),
        cache.display(),
        files
            .iter()
            .filter_map(|f| f.file_name().map(|n| n.to_string_lossy()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("target/data"));
    let windows = traj_data::protein::egno_protein_windows().check()?;
    for adk in ADK_TRAJECTORIES {
        let manifest = adk.write_dataset_dir(&cache, &out)?;
        let dir = out.join(adk.name);
        let mut counts = Vec::new();
        for s in traj_data::Split::ALL {
            let ds = traj_data::load_split(&dir, s)?;
            counts.push(format!(
                "{} {} frames / {} windows",
                s.as_str(),
                ds.trajectories()[0].num_frames(),
                windows.index(&ds)?.len()
            ));
        }
        let t0 = traj_data::load_split(&dir, traj_data::Split::Train)?;
        let t = &t0.trajectories()[0];
        println!(
            "{}: {} nodes, {} contact edges (< {} Å), dt {} ps; {} (EGNO windows: Δ = 15, targets +3 +7 +11 +15); {} files in {}",
            adk.name,
            t.num_nodes(),
            t.edges().map_or(0, |e| e.len()),
            ProteinSpec::default().contact_cutoff,
            t0.meta().dt,
            counts.join(", "),
            manifest.files.len(),
            dir.display()
        );
    }
    // a random split of the windows, beside the chronological one (labelled by its name)
    for adk in ADK_TRAJECTORIES {
        let manifest = adk.write_random_window_dir(&cache, &out)?;
        let name = format!("{}-random", adk.name);
        let counts = traj_data::Split::ALL
            .iter()
            .map(|&s| {
                Ok(format!(
                    "{} {}",
                    s.as_str(),
                    traj_data::load_split(out.join(&name), s)?.len()
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        println!(
            "{name}: a random split of the 16-frame windows (seed {}; EGNO's split is chronological), windows {}; {} files in {}",
            traj_data::protein::RANDOM_WINDOW_SEED,
            counts.join(", "),
            manifest.files.len(),
            out.join(&name).display()
        );
    }
    eprintln!("done in {:.1?}", started.elapsed());
    Ok(())
}

/// Converts an MD17 npz and prints what was read and written.
fn convert_md17(
    from: &Path,
    name: &str,
    setting: Md17Setting,
    seed: u32,
    out: &Path,
) -> Result<()> {
    let started = std::time::Instant::now();
    let c = traj_data::molecule::convert_md17(from, name, setting, seed, out)?;
    println!(
        "{name}: {} frames of {} atoms ({}) → {setting} setting: {} nodes; train/val/test {} / {} / {} trajectories; {} in {:.1?}",
        c.num_frames,
        c.num_atoms,
        c.theory.as_deref().unwrap_or("theory not stated"),
        c.num_nodes,
        c.num_trajectories[0],
        c.num_trajectories[1],
        c.num_trajectories[2],
        out.display(),
        started.elapsed()
    );
    for e in &c.manifest.files {
        println!("  {} {} bytes sha256 {}", e.file, e.bytes, e.sha256);
    }
    Ok(())
}

fn fetch_md17(args: &FetchMd17Args) -> Result<()> {
    let (sources, cache) = load_sources(&args.sources)?;
    let file = if args.revised {
        Md17File::Revised(args.molecule.parse()?)
    } else {
        Md17File::Original(args.molecule.parse()?)
    };
    let bar = progress_bar(&file.dataset_name());
    let got = obtain_md17(
        file,
        &sources,
        &cache,
        &python_executable(None),
        &|done, total| {
            if let Some(t) = total {
                bar.set_length(t);
            }
            bar.set_position(done);
        },
    );
    bar.finish_and_clear();
    let (path, source) = got?;
    if source.pinned {
        eprintln!("verified {} (sha256 {})", path.display(), source.sha256);
    } else {
        eprintln!(
            "note: the manifest has no sha256 for {}; this download hashes to {} ({} bytes)",
            source.path.display(),
            source.sha256,
            source.bytes
        );
    }
    let name = file.dataset_name();
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("target/data/{name}-{}", args.setting)));
    convert_md17(
        &path,
        &name,
        args.setting,
        traj_data::molecule::EgnoMd17Spec::default().seed,
        &out,
    )
}

fn fetch_cmu(args: &CmuMocapArgs) -> Result<()> {
    let (sources, cache) = load_sources(&args.sources)?;
    let selection = CmuSelection {
        subject: args.subject.clone(),
        trials: args.trials.clone(),
    };
    let mut paths = Vec::new();
    for name in selection.source_names()? {
        let source = sources.require(&name)?;
        paths.push(obtain_printing(source, &cache, &python_executable(None))?);
    }
    let out = args.out.clone().unwrap_or_else(|| {
        PathBuf::from(format!(
            "target/data/cmu-{}-{}",
            args.subject,
            args.trials.to_string().replace(',', "-")
        ))
    });
    let manifest = selection.write_dataset_dir(&paths, &out)?;
    for e in &manifest.files {
        println!(
            "{} {} trajectories, {} bytes",
            e.file, e.num_trajectories, e.bytes
        );
    }
    println!("wrote {}", out.display());
    Ok(())
}

fn import_mocap_run(args: &MocapRunArgs) -> Result<()> {
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("target/data/mocap-run"));
    let manifest = traj_data::mocap::import_mocap_run(&args.from, &out)?;
    for e in &manifest.files {
        println!(
            "{} {} trajectories, {} bytes, sha256 {}",
            e.file, e.num_trajectories, e.bytes, e.sha256
        );
    }
    println!("wrote {}", out.display());
    Ok(())
}

fn import_npz(args: &NpzArgs) -> Result<()> {
    let spec = NpzImportSpec {
        name: args.name.clone(),
        dt: args.dt,
        length_unit: args.unit.clone(),
        time_unit: args.time_unit.clone(),
        cutoff: args.cutoff,
        fractions: args.split,
        split_by: match args.split_by {
            SplitBy::Auto => None,
            SplitBy::Frames => Some(SplitMethod::FrameChronological),
            SplitBy::Trajectories => Some(SplitMethod::TrajectoryChronological),
            SplitBy::Random => Some(SplitMethod::TrajectoryRandom { seed: args.seed }),
        },
    };
    let r = traj_data::npz_import::import_npz(&args.from, &spec, &args.out)?;
    let velocities = match r.velocities {
        VelocitySource::File => "from the file",
        VelocitySource::FiniteDifferences => "by central finite differences",
    };
    let edges = match r.edges {
        EdgeSource::File => format!("{} edges from the file", r.num_edges),
        EdgeSource::Cutoff(c) => {
            format!("{} edges closer than {c} in the first frame", r.num_edges)
        }
        EdgeSource::None => "no edges".into(),
    };
    println!(
        "{}: {} trajectories, {} frames of {} nodes; velocities {velocities}; {edges}",
        args.from.display(),
        r.num_trajectories,
        r.num_frames,
        r.num_nodes
    );
    for (i, e) in r.manifest.files.iter().enumerate() {
        println!(
            "  {} {} trajectories / {} frames, {} bytes, sha256 {}",
            e.file, r.split_trajectories[i], r.split_frames[i], e.bytes, e.sha256
        );
    }
    println!("wrote {}", args.out.display());
    Ok(())
}

fn generate_md17_xtb(args: &Md17XtbArgs) -> Result<()> {
    let py = python_executable(args.python.as_deref());
    if !xtb::has_packages(&py)? {
        eprintln!(
            "installing {} into {}",
            xtb::PACKAGES.join(", "),
            py.display()
        );
        xtb::install_packages(&py)?;
    }
    let run = XtbRun {
        seed: args.seed,
        chunk: args.chunk,
        work: args
            .work
            .clone()
            .unwrap_or_else(|| XtbRun::default_work(args.molecule, args.seed)),
        out: args
            .out
            .clone()
            .unwrap_or_else(|| XtbRun::new(args.molecule, args.steps).out),
        ..XtbRun::new(args.molecule, args.steps)
    };
    let started = std::time::Instant::now();
    let report = run.run(&py)?;
    println!(
        "{}: {} steps of 0.5 fs ({} atoms), {:.2} ms/step (xTB time, this and earlier runs), {:.1?} this run; wrote {} ({} bytes)",
        args.molecule,
        report.num_frames,
        report.num_atoms,
        report.ms_per_step,
        started.elapsed(),
        run.out.display(),
        report.bytes
    );
    Ok(())
}

fn generate_navier_stokes(args: &NavierStokesArgs) -> Result<()> {
    let mut spec = if args.quick {
        NsDatasetSpec::quick()
    } else {
        NsDatasetSpec::default()
    };
    spec.train = args.train.unwrap_or(spec.train);
    spec.val = args.val.unwrap_or(spec.val);
    spec.test = args.test.unwrap_or(spec.test);
    spec.ns.frames = args.frames.unwrap_or(spec.ns.frames);
    spec.ns.seed = args.seed;
    let total = (spec.train + spec.val + spec.test) as u64;
    let bar = ProgressBar::new(total).with_style(
        ProgressStyle::with_template(
            "navier-stokes [{elapsed_precise}] {wide_bar} {pos}/{len} sequences ({per_sec}, eta {eta})",
        )
        .expect("valid template"),
    );
    let started = std::time::Instant::now();
    spec.generate_dir(&args.out, &|done, _| bar.set_position(done as u64))
        .with_context(|| format!("generating Navier–Stokes data into {}", args.out.display()))?;
    bar.finish_and_clear();
    println!(
        "wrote {} ({} train / {} val / {} test sequences of {} frames, {}²) in {:.1?}",
        args.out.display(),
        spec.train,
        spec.val,
        spec.test,
        spec.ns.frames + 1,
        spec.ns.resolution,
        started.elapsed()
    );
    Ok(())
}

fn generate_nbody(args: &NBodyArgs) -> Result<()> {
    let mut spec = NBodySpec::new(args.system);
    spec.n_train = args.train;
    spec.n_val = args.val;
    spec.n_test = args.test;
    spec.seed = args.seed;
    if let Some(s) = args.steps {
        spec.steps = s;
    }
    if let Some(s) = args.sample_every {
        spec.sample_every = s;
    }
    let total = (args.train + args.val + args.test) as u64;
    let bar = ProgressBar::new(total).with_style(
        ProgressStyle::with_template(
            "{msg} [{elapsed_precise}] {wide_bar} {pos}/{len} trajectories ({per_sec}, eta {eta})",
        )
        .expect("valid template"),
    );
    bar.set_message(format!("{} ", args.system));
    let started = std::time::Instant::now();
    let manifest = traj_data::nbody::generate_dataset_dir(&spec, &args.out, &|done, _| {
        bar.set_position(done as u64)
    })
    .with_context(|| format!("generating {} into {}", args.system, args.out.display()))?;
    bar.finish();
    println!(
        "wrote {} ({} train / {} val / {} test trajectories) in {:.1?}",
        args.out.display(),
        args.train,
        args.val,
        args.test,
        started.elapsed()
    );
    println!("{}", serde_json::to_string_pretty(&manifest)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn parse(args: &[&str]) -> DataCommand {
        let cli = Cli::try_parse_from(std::iter::once("sgdd").chain(args.iter().copied())).unwrap();
        match cli.command {
            Command::Data(d) => d,
            other => panic!("not a data command: {other:?}"),
        }
    }

    #[test]
    fn data_commands_parse() {
        assert!(matches!(
            parse(&["data", "fetch", "adk"]),
            DataCommand::Fetch(Fetch::Adk(_))
        ));
        match parse(&["data", "import", "mocap-run", "--from", "x"]) {
            DataCommand::Import(Import::MocapRun(a)) => assert_eq!(a.from, PathBuf::from("x")),
            other => panic!("{other:?}"),
        }
        match parse(&[
            "data",
            "generate",
            "md17-xtb",
            "--molecule",
            "aspirin",
            "--steps",
            "10",
            "--seed",
            "3",
        ]) {
            DataCommand::Generate(Generate::Md17Xtb(a)) => {
                assert_eq!(a.molecule, Md17Molecule::Aspirin);
                assert_eq!((a.steps, a.seed, a.chunk), (10, 3, 1000))
            }
            other => panic!("{other:?}"),
        }
        match parse(&[
            "data",
            "fetch",
            "md17",
            "--molecule",
            "uracil",
            "--setting",
            "geotdm",
        ]) {
            DataCommand::Fetch(Fetch::Md17(a)) => assert_eq!(a.setting, Md17Setting::Geotdm),
            other => panic!("{other:?}"),
        }
        match parse(&["data", "fetch", "cmu-mocap"]) {
            DataCommand::Fetch(Fetch::CmuMocap(a)) => assert_eq!(a.trials, CmuTrials::Run),
            other => panic!("{other:?}"),
        }
        match parse(&["data", "fetch", "cmu-mocap", "--trials", "01,02"]) {
            DataCommand::Fetch(Fetch::CmuMocap(a)) => {
                assert_eq!(a.trials, CmuTrials::List(vec!["01".into(), "02".into()]))
            }
            other => panic!("{other:?}"),
        }
        match parse(&[
            "data",
            "import",
            "npz",
            "--from",
            "a.npz",
            "--out",
            "o",
            "--dt",
            "0.5",
            "--unit",
            "angstrom",
            "--cutoff",
            "5",
            "--split",
            "0.8,0.1,0.1",
            "--split-by",
            "random",
        ]) {
            DataCommand::Import(Import::Npz(a)) => {
                assert_eq!((a.dt, a.cutoff, a.split), (0.5, Some(5.0), [0.8, 0.1, 0.1]));
                assert_eq!((a.unit.as_str(), a.split_by), ("angstrom", SplitBy::Random));
            }
            other => panic!("{other:?}"),
        }
        for bad in ["0.5,0.5", "a,b,c"] {
            assert!(
                Cli::try_parse_from([
                    "sgdd", "data", "import", "npz", "--from", "a", "--out", "o", "--split", bad
                ])
                .is_err()
            );
        }
        let err = Cli::try_parse_from([
            "sgdd",
            "data",
            "generate",
            "md17-xtb",
            "--molecule",
            "water",
            "--steps",
            "1",
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("unknown MD17 molecule \"water\""), "{err}");
        assert!(
            Cli::try_parse_from([
                "sgdd",
                "data",
                "import",
                "md17",
                "--from",
                "a.npz",
                "--setting",
                "dft",
                "--out",
                "o"
            ])
            .is_err()
        );
    }
}
