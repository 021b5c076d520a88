//! `cargo xtask bench NAME [--threads 1,all] [--settle SECS] [CRITERION ARGS]`: a Rust benchmark
//! and its peer baseline, measured in one run with the same threads on both sides.
//!
//! For every thread setting `t` (default: one thread, then all cores) the runner
//! 1. pins `t` for both sides through the environment ([`THREAD_VARS`]: rayon / faer, OpenMP,
//!    OpenBLAS, MKL, and `SGDD_BENCH_THREADS`, which the Rust side feeds to faer's global `Par`
//!    and `tch::set_num_threads` and the peer to `torch.set_num_threads` / threadpoolctl);
//! 2. runs the criterion bench `benches/benches/NAME.rs` (built once beforehand, so no compile
//!    runs inside a measurement) and then the peer `benches/peers/NAME.py`, both writing into
//!    `target/bench/NAME/threads-t/` — unless the Rust side wrote the final `NAME.json` itself,
//!    having driven the peer (`SGDD_BENCH_PYTHON`) in alternating rounds (`latent`);
//! 3. records `/proc/loadavg` before and after each side, and warns loudly (on screen and in
//!    the report) when the machine was not quiet before a side started: a one-minute load above
//!    [`QUIET_LOAD_PER_CORE`] per core.
//!
//! Then it merges the per-setting reports into `target/bench/NAME.json` (headline ratios keyed by
//! thread count, every row with both times, the loads and warnings) and prints one table per
//! thread setting.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::env::{self, project_root};
use crate::setup;

/// Environment variables that carry the thread count to both sides.
pub const THREAD_VARS: [&str; 7] = [
    "SGDD_BENCH_THREADS",
    "RAYON_NUM_THREADS",
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
];

/// A machine is quiet when its one-minute load average is at most this per core.
pub const QUIET_LOAD_PER_CORE: f64 = 0.5;

/// Default longest wait for the load to come down before a side starts (e.g. after the build).
const DEFAULT_SETTLE_S: u64 = 120;

/// The runner's own options, taken out of the arguments; the rest go to criterion.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// Thread counts to measure at, in order, without repeats.
    pub threads: Vec<usize>,
    /// Longest wait for a quiet machine before each side.
    pub settle: Duration,
    /// Arguments for the criterion bench (after `--`).
    pub criterion: Vec<String>,
}

/// Splits `--threads LIST` / `--threads=LIST` and `--settle SECS` / `--settle=SECS` off `args`.
///
/// # Errors
/// A malformed thread list ([`parse_thread_list`]) or settle time, or a flag without its value.
pub fn parse_options(args: &[String], cores: usize) -> Result<Options> {
    let mut threads = None;
    let mut settle = None;
    let mut criterion = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |flag: &str| -> Result<Option<String>> {
            if a == flag {
                let v = it.next().with_context(|| format!("{flag} needs a value"))?;
                Ok(Some(v.clone()))
            } else {
                Ok(a.strip_prefix(&format!("{flag}=")).map(str::to_owned))
            }
        };
        if let Some(v) = value("--threads")? {
            threads = Some(parse_thread_list(&v, cores)?);
        } else if let Some(v) = value("--settle")? {
            let s: u64 = v
                .parse()
                .with_context(|| format!("--settle {v:?}: expected whole seconds"))?;
            settle = Some(Duration::from_secs(s));
        } else {
            criterion.push(a.clone());
        }
    }
    Ok(Options {
        threads: match threads {
            Some(t) => t,
            None => parse_thread_list("1,all", cores)?,
        },
        settle: settle.unwrap_or(Duration::from_secs(DEFAULT_SETTLE_S)),
        criterion,
    })
}

/// `"1,all"` → `[1, cores]`: comma-separated positive counts or `all` (every core), repeats
/// dropped (on a one-core machine `1,all` is one setting).
///
/// # Errors
/// An empty list or item, zero, or anything but a count or `all`.
pub fn parse_thread_list(list: &str, cores: usize) -> Result<Vec<usize>> {
    let mut out = Vec::new();
    for item in list.split(',') {
        let item = item.trim();
        let t = match item {
            "all" => cores.max(1),
            "" => bail!("--threads {list:?}: empty item (expected e.g. `1,all`)"),
            _ => match item.parse::<usize>() {
                Ok(0) => bail!("--threads {list:?}: 0 threads"),
                Ok(t) => t,
                Err(_) => bail!("--threads {list:?}: {item:?} is neither a count nor `all`"),
            },
        };
        if !out.contains(&t) {
            out.push(t);
        }
    }
    Ok(out)
}

/// One reading of `/proc/loadavg`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoadAvg {
    /// Load averages over 1, 5 and 15 minutes.
    pub one: f64,
    /// Five-minute average.
    pub five: f64,
    /// Fifteen-minute average.
    pub fifteen: f64,
    /// Runnable scheduling entities at the moment of reading.
    pub running: u64,
    /// All scheduling entities.
    pub total: u64,
}

impl LoadAvg {
    /// Parses `/proc/loadavg`'s line (`0.52 0.58 0.59 2/467 12345`).
    ///
    /// # Errors
    /// Missing or non-numeric fields.
    pub fn parse(line: &str) -> Result<Self> {
        let bad = || anyhow::anyhow!("/proc/loadavg: unexpected content {line:?}");
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 4 {
            return Err(bad());
        }
        let num = |s: &str| s.parse::<f64>().map_err(|_| bad());
        let (running, total) = f[3].split_once('/').ok_or_else(bad)?;
        Ok(Self {
            one: num(f[0])?,
            five: num(f[1])?,
            fifteen: num(f[2])?,
            running: running.parse().map_err(|_| bad())?,
            total: total.parse().map_err(|_| bad())?,
        })
    }

    /// Reads the machine's load now (`None` where `/proc/loadavg` does not exist).
    pub fn now() -> Option<Self> {
        std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|s| Self::parse(&s).ok())
    }

    /// One-minute load per core.
    pub fn per_core(&self, cores: usize) -> f64 {
        self.one / cores.max(1) as f64
    }

    /// Whether the one-minute load is at most [`QUIET_LOAD_PER_CORE`] per core.
    pub fn is_quiet(&self, cores: usize) -> bool {
        self.per_core(cores) <= QUIET_LOAD_PER_CORE
    }

    fn to_json(self, cores: usize) -> Value {
        json!({
            "load_1m": self.one,
            "load_5m": self.five,
            "load_15m": self.fifteen,
            "runnable": self.running,
            "entities": self.total,
            "load_1m_per_core": self.per_core(cores),
        })
    }
}

/// Waits up to `max` for a quiet machine (polling every 5 s); returns the last reading.
fn settle(max: Duration, cores: usize) -> Option<LoadAvg> {
    let start = Instant::now();
    let mut load = LoadAvg::now()?;
    if !load.is_quiet(cores) && !max.is_zero() {
        eprintln!(
            "bench: load {:.2} on {cores} cores; waiting up to {:.0?} for it to fall to {QUIET_LOAD_PER_CORE} per core",
            load.one, max
        );
    }
    while !load.is_quiet(cores) && start.elapsed() + Duration::from_secs(5) <= max {
        std::thread::sleep(Duration::from_secs(5));
        load = LoadAvg::now()?;
    }
    Some(load)
}

/// Runs one side of a comparison: settles, reads the load, runs `cmd`, reads the load again.
/// Returns the load record and, when the machine was not quiet, the warning (already printed).
fn run_side(
    side: &str,
    threads: usize,
    cores: usize,
    max_settle: Duration,
    cmd: Command,
) -> Result<(Value, Option<String>)> {
    let before = settle(max_settle, cores);
    let started = Instant::now();
    env::run(cmd)?;
    let wall = started.elapsed().as_secs_f64();
    let after = LoadAvg::now();
    let warning = before.filter(|l| !l.is_quiet(cores)).map(|l| {
        format!(
            "the machine was not quiet before the {side} side at {threads} thread(s): one-minute \
             load {:.2} on {cores} cores = {:.2} per core > {QUIET_LOAD_PER_CORE}; its times are \
             inflated and the ratios unreliable",
            l.one,
            l.per_core(cores)
        )
    });
    if let Some(w) = &warning {
        eprintln!("\n!!!!!!!! WARNING: {w} !!!!!!!!\n");
    }
    let record = json!({
        "before": before.map(|l| l.to_json(cores)),
        "after": after.map(|l| l.to_json(cores)),
        "quiet_before": before.map(|l| l.is_quiet(cores)),
        "wall_s": wall,
    });
    Ok((record, warning))
}

fn pin_threads(cmd: &mut Command, threads: usize) {
    for var in THREAD_VARS {
        cmd.env(var, threads.to_string());
    }
}

/// The cores this process may use.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

pub fn run(name: &str, args: &[String]) -> Result<()> {
    let root = project_root();
    let bench_src = root.join("benches/benches").join(format!("{name}.rs"));
    if !bench_src.exists() {
        bail!("no benchmark `{name}`: expected {}", bench_src.display());
    }
    let cores = cores();
    let opts = parse_options(args, cores)?;
    let torch = setup::ensure()?;
    let out = root.join("target/bench");
    std::fs::create_dir_all(&out)?;

    // Build first, so that no compilation runs inside a measured side.
    let mut build = env::cargo(&torch);
    build.args([
        "bench",
        "--package",
        "sgdd-benches",
        "--bench",
        name,
        "--no-run",
    ]);
    env::run(build)?;

    let peer = root.join("benches/peers").join(format!("{name}.py"));
    let mut runs = Vec::new();
    let mut warnings = Vec::new();
    for &t in &opts.threads {
        println!("\n==== bench {name}: {t} thread(s) on both sides ({cores} cores) ====");
        let dir = thread_dir(&out, name, t);
        std::fs::create_dir_all(&dir)?;
        let mut loads = serde_json::Map::new();

        // A report left by an earlier run must not pass for this run's.
        let own_report = dir.join(format!("{name}.json"));
        if own_report.exists() {
            std::fs::remove_file(&own_report)
                .with_context(|| format!("removing the stale {}", own_report.display()))?;
        }
        let mut cmd = env::cargo(&torch);
        cmd.args(["bench", "--package", "sgdd-benches", "--bench", name, "--"])
            .args(&opts.criterion)
            .env("SGDD_BENCH_OUT", &dir)
            .env("SGDD_BENCH_PYTHON", torch.venv.join("bin/python"));
        if !opts.criterion.iter().any(|a| a.contains("baseline")) {
            // criterion compares with the last run of the same setting, not the other one
            cmd.args(["--save-baseline", &format!("threads-{t}")]);
        }
        pin_threads(&mut cmd, t);
        let (load, warning) = run_side("Rust", t, cores, opts.settle, cmd)?;
        loads.insert("rust".into(), load);
        warnings.extend(warning);

        if own_report.exists() {
            // The Rust side drove its peer itself, alternating the two sides round by round
            // (`latent`), and wrote the final report.
            println!(
                "bench {name}: the Rust side ran its peer alternately and wrote {}",
                own_report.display()
            );
        } else if peer.exists() {
            let mut py = Command::new(torch.venv.join("bin/python"));
            py.arg(&peer).arg("--out").arg(&dir).current_dir(&root);
            env::with_torch_env(&mut py, &torch);
            pin_threads(&mut py, t);
            let (load, warning) = run_side("peer", t, cores, opts.settle, py)?;
            loads.insert("peer".into(), load);
            warnings.extend(warning);
        }
        let report_path = [
            dir.join(format!("{name}.json")),
            dir.join(format!("{name}-rust.json")),
        ]
        .into_iter()
        .find(|p| p.exists())
        .with_context(|| {
            format!(
                "bench {name} at {t} thread(s) wrote no report in {} (a criterion filter \
                     that ran nothing, or `--test`?)",
                dir.display()
            )
        })?;
        runs.push(ThreadRun {
            threads: t,
            report: read_json(&report_path)?,
            load: Value::Object(loads),
        });
    }

    let command = std::iter::once(format!("cargo xtask bench {name}"))
        .chain(args.iter().cloned())
        .collect::<Vec<_>>()
        .join(" ");
    let merged = merge_reports(name, &command, cores, &runs, &warnings);
    let path = out.join(format!("{name}.json"));
    setup::write_atomic(&path, serde_json::to_string_pretty(&merged)?.as_bytes())?;
    print!("{}", render_summary(&merged));
    for w in &warnings {
        eprintln!("WARNING: {w}");
    }
    println!("bench: wrote {}", path.display());
    Ok(())
}

fn read_json(path: &Path) -> Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
}

/// One thread setting's outcome.
#[derive(Debug, Clone)]
pub struct ThreadRun {
    /// Threads on both sides.
    pub threads: usize,
    /// The peer's report (or the Rust side's when the bench has no peer).
    pub report: Value,
    /// `{"rust": {before, after, ...}, "peer": {...}}`.
    pub load: Value,
}

/// The headline ratios of a report: its `headline` object when it has one, else its top-level
/// numbers and nulls (the peers' convention: `{"dense_eigh_vs_numpy": 0.8, ..., "rows": [...]}`).
pub fn headline_of(report: &Value) -> BTreeMap<String, Value> {
    if let Some(h) = report.get("headline").and_then(Value::as_object) {
        return h.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    }
    report
        .as_object()
        .map(|o| {
            o.iter()
                .filter(|(_, v)| v.is_number() || v.is_null())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// The final `NAME.json`: headline ratios keyed by thread count, every setting's report and
/// loads, and the warnings.
pub fn merge_reports(
    name: &str,
    command: &str,
    cores: usize,
    runs: &[ThreadRun],
    warnings: &[String],
) -> Value {
    let mut headline = serde_json::Map::new();
    let mut by_threads = serde_json::Map::new();
    for r in runs {
        headline.insert(r.threads.to_string(), json!(headline_of(&r.report)));
        by_threads.insert(
            r.threads.to_string(),
            json!({ "threads": r.threads, "load": r.load, "report": r.report }),
        );
    }
    json!({
        "bench": name,
        "command": command,
        "cores": cores,
        "thread_settings": runs.iter().map(|r| r.threads).collect::<Vec<_>>(),
        "thread_env": THREAD_VARS,
        "quiet": warnings.is_empty(),
        "quiet_rule": format!(
            "one-minute load average ≤ {QUIET_LOAD_PER_CORE} per core before each side starts"
        ),
        "warnings": warnings,
        "headline": headline,
        "runs": by_threads,
    })
}

/// One table per thread setting (every row with both times), then the headline ratios side by
/// side.
pub fn render_summary(merged: &Value) -> String {
    let mut out = String::new();
    let runs = merged["runs"].as_object().cloned().unwrap_or_default();
    let mut settings: Vec<(usize, Value)> = runs
        .into_iter()
        .filter_map(|(k, v)| Some((k.parse().ok()?, v)))
        .collect();
    settings.sort_by_key(|(t, _)| *t);
    for (t, run) in &settings {
        let peer_quiet = run["load"]["peer"]["quiet_before"].as_bool();
        let rust_quiet = run["load"]["rust"]["quiet_before"].as_bool();
        let quiet = match (rust_quiet, peer_quiet) {
            (Some(false), _) | (_, Some(false)) => "NOT QUIET",
            (Some(true), _) => "quiet",
            _ => "load unknown",
        };
        out.push_str(&format!(
            "\n{} — {t} thread(s) on both sides ({quiet})\n",
            merged["bench"].as_str().unwrap_or("bench")
        ));
        out.push_str(&format!(
            "{:<62} {:>11} {:>11} {:>9} {:>8}\n",
            "comparison", "baseline", "ours", "ratio", "target"
        ));
        for row in run["report"]["rows"].as_array().into_iter().flatten() {
            let time = |k: &str| row[k].as_f64().map_or("—".into(), fmt_time);
            out.push_str(&format!(
                "{:<62} {:>11} {:>11} {:>8} {:>8}\n",
                row["what"].as_str().unwrap_or("?"),
                time("baseline_s"),
                time("ours_s"),
                row["ratio"]
                    .as_f64()
                    .map_or("—".into(), |r| format!("{r:.2}×")),
                row["target"]
                    .as_f64()
                    .map_or(String::new(), |r| format!("≥{r:.2}×")),
            ));
        }
    }
    let headline = merged["headline"].as_object().cloned().unwrap_or_default();
    let keys: std::collections::BTreeSet<String> = headline
        .values()
        .filter_map(Value::as_object)
        .flat_map(|h| h.keys().cloned())
        .collect();
    if !keys.is_empty() {
        out.push_str("\nheadline ratios (baseline / ours) by threads on both sides\n");
        out.push_str(&format!("{:<48}", "ratio"));
        for (t, _) in &settings {
            out.push_str(&format!(" {:>10}", format!("{t} thr")));
        }
        out.push('\n');
        for k in keys {
            out.push_str(&format!("{k:<48}"));
            for (t, _) in &settings {
                let v = headline
                    .get(&t.to_string())
                    .and_then(|h| h.get(&k))
                    .and_then(Value::as_f64);
                out.push_str(&format!(
                    " {:>10}",
                    v.map_or("—".into(), |r| format!("{r:.2}×"))
                ));
            }
            out.push('\n');
        }
    }
    out
}

/// Milliseconds throughout (one unit per column keeps the two sides comparable at a glance),
/// with more decimals for shorter times: `1350.0 ms`, `45.60 ms`, `0.0123 ms`.
fn fmt_time(s: f64) -> String {
    let ms = s * 1e3;
    let decimals = match ms {
        m if m >= 100.0 => 1,
        m if m >= 1.0 => 2,
        _ => 4,
    };
    format!("{ms:.decimals$} ms")
}

/// Where a bench's per-setting outputs go (`target/bench/NAME/threads-T`).
pub fn thread_dir(out: &Path, name: &str, threads: usize) -> PathBuf {
    out.join(name).join(format!("threads-{threads}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(xs: &[&str]) -> Vec<String> {
        xs.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn thread_lists() {
        assert_eq!(parse_thread_list("1,all", 4).unwrap(), vec![1, 4]);
        assert_eq!(parse_thread_list("all", 2).unwrap(), vec![2]);
        assert_eq!(parse_thread_list("1,all", 1).unwrap(), vec![1]);
        assert_eq!(parse_thread_list(" 2 , 1 ,2", 8).unwrap(), vec![2, 1]);
        for bad in ["", "1,", "0", "two", "1;2", "-1"] {
            let e = parse_thread_list(bad, 4).unwrap_err().to_string();
            assert!(e.starts_with("--threads"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn options_are_split_from_criterion_args() {
        let o = parse_options(&strings(&["--threads", "1", "--quick", "dense"]), 4).unwrap();
        assert_eq!(o.threads, vec![1]);
        assert_eq!(o.criterion, strings(&["--quick", "dense"]));
        assert_eq!(o.settle, Duration::from_secs(DEFAULT_SETTLE_S));
        let o = parse_options(&strings(&["--settle=0", "--threads=all"]), 3).unwrap();
        assert_eq!((o.threads, o.settle), (vec![3], Duration::ZERO));
        assert!(o.criterion.is_empty());
        assert_eq!(parse_options(&[], 2).unwrap().threads, vec![1, 2]);
        assert!(parse_options(&strings(&["--threads"]), 2).is_err());
        assert!(parse_options(&strings(&["--settle", "soon"]), 2).is_err());
    }

    #[test]
    fn loadavg_and_the_quiet_rule() {
        let l = LoadAvg::parse("1.20 0.80 0.50 3/467 12345\n").unwrap();
        assert_eq!(
            (l.one, l.five, l.fifteen, l.running, l.total),
            (1.2, 0.8, 0.5, 3, 467)
        );
        assert!(!l.is_quiet(2)); // 0.6 per core
        assert!(l.is_quiet(4)); // 0.3 per core
        assert!((l.per_core(2) - 0.6).abs() < 1e-12);
        assert!(LoadAvg::parse("1.0 0.5").is_err());
        assert!(LoadAvg::parse("x 0.5 0.5 1/2 3").is_err());
        assert!(LoadAvg::parse("1.0 0.5 0.5 12 3").is_err());
        if Path::new("/proc/loadavg").exists() {
            assert!(LoadAvg::now().is_some());
        }
    }

    #[test]
    fn reports_merge_by_thread_count() {
        let report = |r: f64| {
            json!({
                "dense_eigh_vs_numpy": r,
                "partial_vs_scipy": null,
                "rows": [{"what": "dense eigh", "baseline_s": r * 0.1, "ours_s": 0.1, "ratio": r, "target": 0.67}],
                "context": {"machine": "x"},
            })
        };
        let runs = [
            ThreadRun {
                threads: 1,
                report: report(0.8),
                load: json!({"rust": {"quiet_before": true}}),
            },
            ThreadRun {
                threads: 2,
                report: report(1.5),
                load: json!({"rust": {"quiet_before": false}}),
            },
        ];
        let m = merge_reports(
            "spectral",
            "cargo xtask bench spectral",
            2,
            &runs,
            &["busy".into()],
        );
        assert_eq!(m["thread_settings"], json!([1, 2]));
        assert_eq!(m["headline"]["1"]["dense_eigh_vs_numpy"], json!(0.8));
        assert_eq!(m["headline"]["2"]["dense_eigh_vs_numpy"], json!(1.5));
        assert!(m["headline"]["1"]["partial_vs_scipy"].is_null());
        assert!(m["headline"]["1"].get("rows").is_none());
        assert_eq!(m["quiet"], json!(false));
        assert_eq!(m["runs"]["2"]["report"]["context"]["machine"], json!("x"));
        let table = render_summary(&m);
        assert!(
            table.contains("1 thread(s) on both sides (quiet)"),
            "{table}"
        );
        assert!(
            table.contains("2 thread(s) on both sides (NOT QUIET)"),
            "{table}"
        );
        assert!(table.contains("80.00 ms") && table.contains("0.80×") && table.contains("1.50×"));
        assert_eq!(fmt_time(1.35), "1350.0 ms");
        assert_eq!(fmt_time(1.23e-5), "0.0123 ms");
        // an explicit headline object wins over top-level numbers
        let h = headline_of(&json!({"headline": {"a": 2.0}, "b": 3.0}));
        assert_eq!(h.len(), 1);
        assert_eq!(
            thread_dir(Path::new("/o"), "nets", 2),
            Path::new("/o/nets/threads-2")
        );
    }
}
