//! `sgdd data ...`: generate, fetch, import and convert datasets.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use traj_data::nbody::{NBodySpec, System};
use traj_data::protein::{ProteinSpec, write_protein_dataset_dir};
use traj_data::sources::{Source, Sources, download, extract_tar, verify_file};
use traj_data::{SplitMethod, SplitSpec};

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
}

#[derive(Debug, Args)]
pub struct Md17XtbArgs {
    /// aspirin, benzene, ethanol, malonaldehyde, naphthalene, salicylic_acid, toluene or uracil.
    #[arg(long)]
    pub molecule: String,
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
    /// setting). Writes `adk-dims`, `adk-dims2` and `adk-tmd-namd` under `--out`.
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
}

/// The two MD17 settings of the papers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Md17Setting {
    /// GeoTDM / LaM-SLidE: all atoms, every 10th frame, chronological 60/20/20, 10 + 20 windows.
    Geotdm,
    /// EGNO / SGDD: heavy atoms, bonds < 1.6 Å + 2-hop, Δ = 3000, T = 8, 500/2000/2000 windows.
    Egno,
}

#[derive(Debug, Args)]
pub struct Md17Args {
    /// The `.npz` file (MD17 keys R, z, E, F or rMD17 keys coords, nuclear_charges, ...).
    #[arg(long)]
    pub from: PathBuf,
    /// Which setting.
    #[arg(long, value_enum, default_value = "egno")]
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
    /// Which setting to convert to.
    #[arg(long, value_enum, default_value = "egno")]
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
    pub trials: String,
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
        DataCommand::Fetch(Fetch::Md17(args)) => fetch_md17(&args),
        DataCommand::Fetch(Fetch::CmuMocap(args)) => fetch_cmu(&args),
    }
}

/// The sources manifest built into the binary (`datasets/manifest.toml` of this version); a
/// copied binary needs no checkout. `--manifest` reads another.
const BUILT_IN_MANIFEST: &str = include_str!("../../../../datasets/manifest.toml");
/// The xTB driver `data generate md17-xtb` runs (`datasets/md17_xtb.py`), written into the work
/// directory before each run.
const MD17_XTB_SCRIPT: &str = include_str!("../../../../datasets/md17_xtb.py");

fn load_sources(opts: &SourceOptions) -> Result<(Sources, PathBuf)> {
    let sources = match &opts.manifest {
        Some(path) => Sources::read(path)?,
        None => Sources::parse(
            BUILT_IN_MANIFEST,
            Path::new("datasets/manifest.toml (built in)"),
        )?,
    };
    let cache = opts
        .cache
        .clone()
        .unwrap_or_else(|| PathBuf::from("datasets/cache"));
    std::fs::create_dir_all(&cache)
        .with_context(|| format!("creating the cache {}", cache.display()))?;
    Ok((sources, cache))
}

fn python(explicit: Option<&Path>) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_path_buf();
    }
    if let Some(venv) = std::env::var_os("VIRTUAL_ENV") {
        let p = Path::new(&venv).join("bin/python");
        return if p.exists() {
            p
        } else {
            PathBuf::from("python")
        };
    }
    let project = PathBuf::from(".venv/bin/python");
    if project.exists() {
        project
    } else {
        PathBuf::from("python3")
    }
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

/// Obtains `source` into `cache` (pip for PyPI sources, HTTP otherwise) and verifies it.
fn obtain(source: &Source, cache: &Path, python_exe: &Path) -> Result<PathBuf> {
    let dest = cache.join(&source.file);
    if let Some(req) = &source.pypi {
        if !dest.exists() {
            eprintln!("pip download --no-deps {req} (into {})", cache.display());
            let out = Command::new(python_exe)
                .args(["-m", "pip", "download", "--no-deps", "-q"])
                .arg(req)
                .arg("-d")
                .arg(cache)
                .output()
                .with_context(|| format!("running {}", python_exe.display()))?;
            if !out.status.success() {
                let err = String::from_utf8_lossy(&out.stderr);
                let lines: Vec<&str> = err.lines().collect();
                let tail = lines[lines.len().saturating_sub(15)..].join("\n");
                return Err(traj_data::ImportError::Command {
                    command: format!("{} -m pip download --no-deps {req}", python_exe.display()),
                    problem: format!("{}\n{tail}", out.status),
                }
                .into());
            }
        }
        let hash = verify_file(&dest, &source.expected)?;
        eprintln!("verified {} (sha256 {hash})", dest.display());
        return Ok(dest);
    }
    let bar = progress_bar(&source.file);
    let path = download(&source.url, &dest, &source.expected, &|done, total| {
        if let Some(t) = total {
            bar.set_length(t);
        }
        bar.set_position(done);
    })?;
    bar.finish_and_clear();
    let hash = verify_file(&path, &source.expected)?;
    if source.expected.sha256.is_none() {
        eprintln!(
            "note: the manifest has no sha256 for {}; this download hashes to {hash} ({} bytes)",
            source.name,
            std::fs::metadata(&path)?.len()
        );
    } else {
        eprintln!("verified {} (sha256 {hash})", path.display());
    }
    Ok(path)
}

fn fetch_sources(args: &SourceArgs) -> Result<()> {
    let (sources, cache) = load_sources(&args.sources)?;
    for name in &args.names {
        let Some(source) = sources.get(name) else {
            let known: Vec<&str> = sources.sources.iter().map(|s| s.name.as_str()).collect();
            bail!(
                "no source {name:?} in the manifest (known: {})",
                known.join(", ")
            );
        };
        let path = obtain(source, &cache, &python(None))?;
        if !source.members.is_empty()
            && [".tar.gz", ".tgz", ".tar.bz2"]
                .iter()
                .any(|e| source.file.ends_with(e))
        {
            for p in extract_tar(&path, &source.members, &cache)? {
                println!("{}", p.display());
            }
        } else {
            println!("{}", path.display());
        }
    }
    Ok(())
}

/// The ADK trajectories of `mdanalysistests`: (dataset name, topology, trajectory).
const ADK_TRAJECTORIES: [(&str, &str, &str); 3] = [
    ("adk-dims", "adk.psf", "adk_dims.dcd"),
    ("adk-dims2", "adk.psf", "adk_dims2.dcd"),
    (
        "adk-tmd-namd",
        "adk_closed_NAMD.psf",
        "adk_gbis_tmd-fast1_NAMD.dcd",
    ),
];

fn fetch_adk(args: &AdkArgs) -> Result<()> {
    let started = std::time::Instant::now();
    let (sources, cache) = load_sources(&args.sources)?;
    let source = sources
        .get("mdanalysistests-2.11.0")
        .context("datasets/manifest.toml has no source \"mdanalysistests-2.11.0\"")?;
    let archive = obtain(source, &cache, &python(args.python.as_deref()))?;
    extract_tar(&archive, &source.members, &cache)?;
    eprintln!(
        "extracted and verified {} ADK files into {}",
        source.members.len(),
        cache.display()
    );
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("target/data"));
    let spec = ProteinSpec::default();
    let split = SplitSpec::new(SplitMethod::FrameChronological).check()?;
    let windows = traj_data::protein::egno_protein_windows().check()?;
    for (name, psf, dcd) in ADK_TRAJECTORIES {
        let dir = out.join(name);
        let manifest = write_protein_dataset_dir(
            name,
            &cache.join(psf),
            &cache.join(dcd),
            &spec,
            &split,
            &dir,
        )?;
        let mut counts = Vec::new();
        for s in traj_data::Split::ALL {
            let ds = traj_data::load_split(&dir, s)?;
            let t = &ds.trajectories()[0];
            counts.push(format!(
                "{} {} frames / {} windows",
                s.as_str(),
                t.num_frames(),
                windows.index(&ds)?.len()
            ));
        }
        let t0 = traj_data::load_split(&dir, traj_data::Split::Train)?;
        let t = &t0.trajectories()[0];
        println!(
            "{name}: {} nodes, {} contact edges (< {} Å), dt {} ps; {} (EGNO windows: Δ = 15, targets +3 +7 +11 +15); {} files in {}",
            t.num_nodes(),
            t.edges().map_or(0, |e| e.len()),
            spec.contact_cutoff,
            t0.meta().dt,
            counts.join(", "),
            manifest.files.len(),
            dir.display()
        );
    }
    eprintln!("done in {:.1?}", started.elapsed());
    Ok(())
}

pub(crate) fn convert_md17(
    from: &Path,
    name: &str,
    setting: Md17Setting,
    seed: u32,
    out: &Path,
) -> Result<()> {
    use traj_data::molecule::{EgnoMd17Spec, GeoTdmMd17Spec, md17_egno, md17_geotdm};
    let started = std::time::Instant::now();
    let md = traj_data::formats::md17::read_md17(from)?;
    let splits = match setting {
        Md17Setting::Geotdm => md17_geotdm(&md, name, &GeoTdmMd17Spec::default(), from)?,
        Md17Setting::Egno => md17_egno(
            &md,
            name,
            &EgnoMd17Spec {
                seed,
                ..EgnoMd17Spec::default()
            },
            from,
        )?,
    };
    let manifest = traj_data::convert::write_split_dir(name, &splits, out)?;
    println!(
        "{name}: {} frames of {} atoms ({}) → {:?} setting: {} nodes; train/val/test {} / {} / {} trajectories; {} in {:.1?}",
        md.num_frames,
        md.num_atoms(),
        md.theory.as_deref().unwrap_or("theory not stated"),
        setting,
        splits[0].num_nodes(),
        splits[0].len(),
        splits[1].len(),
        splits[2].len(),
        out.display(),
        started.elapsed()
    );
    for e in &manifest.files {
        println!("  {} {} bytes sha256 {}", e.file, e.bytes, e.sha256);
    }
    Ok(())
}

fn fetch_md17(args: &FetchMd17Args) -> Result<()> {
    let (sources, cache) = load_sources(&args.sources)?;
    let (name, path) = if args.revised {
        // rMD17 names salicylic acid `salicylic`
        let molecule = args.molecule.replace("salicylic_acid", "salicylic");
        let source = sources
            .get("rmd17")
            .context("no source \"rmd17\" in the manifest")?;
        let file = format!("rmd17_{molecule}.npz");
        let member: Vec<_> = source
            .members
            .iter()
            .filter(|m| m.file == file)
            .cloned()
            .collect();
        if member.is_empty() {
            let known: Vec<&str> = source.members.iter().map(|m| m.file.as_str()).collect();
            bail!("rMD17 has no {file} (known: {})", known.join(", "));
        }
        let archive = obtain(source, &cache, &python(None))?;
        let path = extract_tar(&archive, &member, &cache)?.remove(0);
        (format!("rmd17-{molecule}"), path)
    } else {
        let name = format!("md17-{}", args.molecule);
        let source = sources.get(&name).with_context(|| {
            format!("no source {name:?} in the manifest (molecules: aspirin, benzene, ethanol, malonaldehyde, naphthalene, salicylic_acid, toluene, uracil)")
        })?;
        let path = obtain(source, &cache, &python(None))?;
        (name, path)
    };
    let setting = match args.setting {
        Md17Setting::Geotdm => "geotdm",
        Md17Setting::Egno => "egno",
    };
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("target/data/{name}-{setting}")));
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
    let trials: Vec<String> = if args.trials == "run" {
        if args.subject != "09" {
            bail!("the `run` trial list is known for subject 09 only; pass --trials 01,02,...");
        }
        (1..=11).map(|i| format!("{i:02}")).collect()
    } else {
        args.trials
            .split(',')
            .map(|t| t.trim().to_string())
            .collect()
    };
    let mut names = vec![format!("cmu-{}-asf", args.subject)];
    names.extend(
        trials
            .iter()
            .map(|t| format!("cmu-{}-{t}-amc", args.subject)),
    );
    let mut paths = Vec::new();
    for name in &names {
        let source = sources
            .get(name)
            .with_context(|| format!("no source {name:?} in datasets/manifest.toml"))?;
        paths.push(obtain(source, &cache, &python(None))?);
    }
    // EGNO's split of the run trials; otherwise the trials in order, 60/20/20
    let split: [Vec<usize>; 3] = if args.trials == "run" {
        traj_data::mocap::RUN_TRIAL_SPLIT.map(|s| s.to_vec())
    } else {
        let n = paths.len() - 1;
        let c = SplitSpec::new(SplitMethod::TrajectoryChronological)
            .check()?
            .trajectory_indices(n)?;
        [c.train, c.val, c.test]
    };
    let out = args.out.clone().unwrap_or_else(|| {
        PathBuf::from(format!(
            "target/data/cmu-{}-{}",
            args.subject,
            args.trials.replace(',', "-")
        ))
    });
    let name = format!("cmu-{}-{}", args.subject, args.trials);
    let manifest = traj_data::mocap::write_asf_amc_dir(
        &name,
        &paths[0],
        &paths[1..],
        [&split[0], &split[1], &split[2]],
        &out,
    )?;
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

/// The xTB molecules (MD17's eight).
pub(crate) const MD17_MOLECULES: [&str; 8] = [
    "aspirin",
    "benzene",
    "ethanol",
    "malonaldehyde",
    "naphthalene",
    "salicylic_acid",
    "toluene",
    "uracil",
];

fn generate_md17_xtb(args: &Md17XtbArgs) -> Result<()> {
    if !MD17_MOLECULES.contains(&args.molecule.as_str()) {
        bail!(
            "unknown molecule {:?} (one of: {})",
            args.molecule,
            MD17_MOLECULES.join(", ")
        );
    }
    let py = python(args.python.as_deref());
    let have = Command::new(&py)
        .args(["-c", "import ase, tblite.ase, rdkit"])
        .output()
        .with_context(|| format!("running {}", py.display()))?;
    if !have.status.success() {
        // install only into a virtual environment, never into a system Python
        let in_venv = Command::new(&py)
            .args([
                "-c",
                "import sys; sys.exit(0 if sys.prefix != sys.base_prefix else 1)",
            ])
            .status()
            .is_ok_and(|s| s.success());
        if !in_venv {
            bail!(
                "{} lacks ase, tblite or rdkit and is not a virtual environment; run through `cargo xtask data` (the project venv) or pass --python with a venv's python",
                py.display()
            );
        }
        eprintln!(
            "installing ase 3.29.0, tblite 0.8.0 and rdkit into {}",
            py.display()
        );
        let status = Command::new(&py)
            .args([
                "-m",
                "pip",
                "install",
                "-q",
                "ase==3.29.0",
                "tblite==0.8.0",
                "rdkit",
            ])
            .status()
            .with_context(|| format!("running {}", py.display()))?;
        if !status.success() {
            bail!("pip install ase tblite rdkit failed ({status})");
        }
    }
    let work = args.work.clone().unwrap_or_else(|| {
        PathBuf::from(format!(
            "datasets/cache/md17-xtb-{}-seed{}",
            args.molecule, args.seed
        ))
    });
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("target/data/md17xtb_{}.npz", args.molecule)));
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let script = work.join("md17_xtb.py");
    traj_data::atomic_write(&script, MD17_XTB_SCRIPT.as_bytes())?;
    let started = std::time::Instant::now();
    // one thread per process: xTB on a 9–21-atom molecule does not gain from OpenMP, and
    // single-threaded runs are reproducible
    let status = Command::new(&py)
        .arg(&script)
        .args(["--molecule", &args.molecule])
        .args(["--steps", &args.steps.to_string()])
        .args(["--seed", &args.seed.to_string()])
        .args(["--chunk", &args.chunk.to_string()])
        .arg("--out")
        .arg(&work)
        .env("OMP_NUM_THREADS", "1")
        .env("PYTHONWARNINGS", "ignore::FutureWarning")
        .status()
        .with_context(|| format!("running {}", py.display()))?;
    if !status.success() {
        bail!(
            "the xTB run stopped ({status}); run the same command again to resume from {}",
            work.display()
        );
    }
    let mut md = traj_data::formats::md17::read_md17_chunks(&work)?;
    if md.num_frames > args.steps {
        // chunks of an earlier, longer run in the same work directory
        md.num_frames = args.steps;
        let n3 = md.num_atoms() * 3;
        md.positions.truncate(args.steps * n3);
        if let Some(e) = md.energies.as_mut() {
            e.truncate(args.steps);
        }
        if let Some(f) = md.forces.as_mut() {
            f.truncate(args.steps * n3);
        }
    }
    md.name = Some(args.molecule.clone());
    md.theory = Some("GFN2-xTB".into());
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    traj_data::formats::md17::write_md17(&out, &md)?;
    let progress: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(work.join("progress.json"))?)?;
    println!(
        "{}: {} steps of 0.5 fs ({} atoms), {:.2} ms/step (xTB time, this and earlier runs), {:.1?} this run; wrote {} ({} bytes)",
        args.molecule,
        md.num_frames,
        md.num_atoms(),
        progress["ms_per_step"].as_f64().unwrap_or(f64::NAN),
        started.elapsed(),
        out.display(),
        std::fs::metadata(&out)?.len()
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

    #[test]
    fn the_built_in_manifest_parses_and_pins_the_adk_archive() {
        let s = Sources::parse(BUILT_IN_MANIFEST, Path::new("built-in")).unwrap();
        let adk = s.get("mdanalysistests-2.11.0").unwrap();
        assert_eq!(adk.expected.bytes, Some(59_555_441));
        assert!(adk.expected.sha256.is_some());
        assert_eq!(adk.members.len(), 5);
        for m in MD17_MOLECULES {
            assert!(s.get(&format!("md17-{m}")).is_some(), "md17-{m}");
        }
        assert!(MD17_XTB_SCRIPT.contains("GFN2-xTB"));
    }

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
        assert!(matches!(
            parse(&["data", "fetch", "cmu-mocap"]),
            DataCommand::Fetch(Fetch::CmuMocap(_))
        ));
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

    /// Serves `body` for every request on 127.0.0.1 (one connection at a time).
    fn serve(body: Vec<u8>) -> String {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/md17.npz", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                while reader.read_line(&mut line).unwrap_or(0) > 2 {
                    line.clear();
                }
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(&body);
            }
        });
        url
    }

    #[test]
    fn fetch_md17_from_a_local_mirror_verifies_then_converts() {
        use traj_data::formats::md17::{Md17, Md17Flavor, write_md17};
        let dir = tempfile::tempdir().unwrap();
        let frames = 60;
        let md = Md17 {
            flavor: Md17Flavor::Md17,
            name: None,
            theory: None,
            atomic_numbers: vec![6, 8],
            num_frames: frames,
            positions: (0..frames * 6).map(|i| (i as f64 * 0.1).sin()).collect(),
            energies: None,
            forces: None,
        };
        let npz = dir.path().join("served.npz");
        write_md17(&npz, &md).unwrap();
        let sha = traj_data::sha256_file(&npz).unwrap();
        let bytes = std::fs::read(&npz).unwrap();
        let url = serve(bytes.clone());
        let manifest = |sha: &str| {
            format!(
                "version = 1\n[[source]]\nname = \"md17-aspirin\"\nfile = \"md17_aspirin.npz\"\nurl = \"{url}\"\nbytes = {}\nsha256 = \"{sha}\"\n",
                bytes.len()
            )
        };
        let args = |cache: &str| FetchMd17Args {
            molecule: "aspirin".into(),
            setting: Md17Setting::Geotdm,
            revised: false,
            sources: SourceOptions {
                manifest: Some(dir.path().join("manifest.toml")),
                cache: Some(dir.path().join(cache)),
            },
            out: Some(dir.path().join("out")),
        };
        std::fs::write(dir.path().join("manifest.toml"), manifest(&"0".repeat(64))).unwrap();
        let err = fetch_md17(&args("bad-cache")).unwrap_err();
        assert!(
            format!("{err:#}").contains("md17_aspirin.npz.part: sha256 mismatch"),
            "{err:#}"
        );
        assert!(!dir.path().join("bad-cache/md17_aspirin.npz").exists());
        std::fs::write(dir.path().join("manifest.toml"), manifest(&sha)).unwrap();
        fetch_md17(&args("cache")).unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("cache/md17_aspirin.npz")).unwrap(),
            bytes
        );
        let test = traj_data::load_split(dir.path().join("out"), traj_data::Split::Test).unwrap();
        assert_eq!(test.num_nodes(), 2);
    }

    #[test]
    fn import_md17_writes_both_settings() {
        use traj_data::formats::md17::{Md17, Md17Flavor, write_md17};
        let dir = tempfile::tempdir().unwrap();
        // a 3-atom molecule (C, O, H) vibrating, 60 frames
        let frames = 60;
        let positions = (0..frames)
            .flat_map(|t| {
                let s = 0.01 * (t as f64 * 0.3).sin();
                [0.0, 0.0, 0.0, 1.2 + s, 0.0, 0.0, -0.6, 0.9 + s, 0.0]
            })
            .collect();
        let md = Md17 {
            flavor: Md17Flavor::Md17,
            name: Some("tiny".into()),
            theory: None,
            atomic_numbers: vec![6, 8, 1],
            num_frames: frames,
            positions,
            energies: None,
            forces: None,
        };
        let npz = dir.path().join("tiny.npz");
        write_md17(&npz, &md).unwrap();
        let out = dir.path().join("geotdm");
        convert_md17(&npz, "tiny", Md17Setting::Geotdm, 0, &out).unwrap();
        let train = traj_data::load_split(&out, traj_data::Split::Train).unwrap();
        assert_eq!(
            train.trajectories()[0].num_frames(),
            4,
            "60 frames / 10 → 6 → 4 train"
        );
        // the EGNO setting leaves 10,000 frames at each end: refused, naming the file
        let err = convert_md17(
            &npz,
            "tiny",
            Md17Setting::Egno,
            100,
            &dir.path().join("egno"),
        )
        .unwrap_err();
        assert!(
            format!("{err:#}").contains("tiny.npz: 60 frames leave nothing between the margins"),
            "{err:#}"
        );
    }
}
