//! Shared fixtures of the workspace's benchmarks: the graphs both sides of a comparison read,
//! where outputs go, and the ratio report.
//!
//! Every benchmark here reports a **ratio** against a baseline measured in the same run
//! (STYLE §6). The peer scripts in `benches/peers/` read the graphs the Rust side writes (as
//! sparse Laplacian triplets), so both sides see identical input.

use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use spectral_core::{Graph, Laplacian};

/// The workspace root (this package lives in `<root>/benches`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("benches/ has a parent")
        .to_path_buf()
}

/// Where benchmarks write: `$SGDD_BENCH_OUT` (set by `cargo xtask bench`), else
/// `<target>/bench` honouring `CARGO_TARGET_DIR`.
pub fn bench_output_dir() -> PathBuf {
    if let Some(out) = std::env::var_os("SGDD_BENCH_OUT") {
        return PathBuf::from(out);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let target = if target.is_absolute() {
        target
    } else {
        workspace_root().join(target)
    };
    target.join("bench")
}

/// The thread count of this run: `SGDD_BENCH_THREADS` (set by `cargo xtask bench` for both
/// sides of a comparison), else every core available to the process.
///
/// # Errors
/// A value that is not a positive integer.
pub fn parse_bench_threads(value: Option<&str>, cores: usize) -> Result<usize, String> {
    match value.map(str::trim) {
        None | Some("") => Ok(cores.max(1)),
        Some(v) => match v.parse::<usize>() {
            Ok(t) if t > 0 => Ok(t),
            _ => Err(format!(
                "SGDD_BENCH_THREADS={v:?}: expected a positive number of threads"
            )),
        },
    }
}

/// Pins this process to [`parse_bench_threads`]'s count: faer's global parallelism (sequential
/// at one thread, else rayon with that many workers) and libtorch's intra-op pool
/// (`tch::set_num_threads`); rayon's own pool reads `RAYON_NUM_THREADS`, which the runner sets to
/// the same value. Returns the count. Call it first in a bench's `main`.
///
/// # Panics
/// When `SGDD_BENCH_THREADS` is malformed (a bench asked for a setting should not measure
/// another).
pub fn pin_threads() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = parse_bench_threads(std::env::var("SGDD_BENCH_THREADS").ok().as_deref(), cores)
        .unwrap_or_else(|e| panic!("{e}"));
    faer::set_global_parallelism(if threads == 1 {
        faer::Par::Seq
    } else {
        faer::Par::rayon(threads)
    });
    tch::set_num_threads(threads as i32);
    threads
}

/// What each thread pool of this process is set to, for the report: the requested count,
/// faer's degree, rayon's pool, libtorch's intra-op threads and the thread variables of the
/// environment.
pub fn thread_context(requested: usize) -> serde_json::Value {
    let vars: std::collections::BTreeMap<&str, Option<String>> = [
        "SGDD_BENCH_THREADS",
        "RAYON_NUM_THREADS",
        "OMP_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
        "MKL_NUM_THREADS",
    ]
    .into_iter()
    .map(|k| (k, std::env::var(k).ok()))
    .collect();
    serde_json::json!({
        "requested": requested,
        "faer_parallelism_degree": faer::get_global_parallelism().degree(),
        "rayon_pool": rayon::current_num_threads(),
        "torch_intra_op": tch::get_num_threads(),
        "env": vars,
    })
}

/// The CPU model and the hardware threads available to this process.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    format!("{cpu}, {threads} hardware threads available to this process")
}

/// Backbone coordinates of the protein setting and where they came from.
#[derive(Debug, Clone)]
pub struct Backbone {
    /// N, CA, C, O atom positions (Å).
    pub positions: Vec<[f64; 3]>,
    /// Human-readable provenance, written into the report.
    pub source: String,
    /// Whether this is the synthetic stand-in (no real ADK structure was found).
    pub synthetic: bool,
}

/// Where `cargo xtask data fetch adk` extracts (and verifies) `adk_open.pdb`: the default
/// download cache `<root>/datasets/cache`.
pub fn default_adk_pdb() -> PathBuf {
    workspace_root().join("datasets/cache/adk_open.pdb")
}

/// The ADK backbone (855 atoms): read from the PDB named by `SGDD_ADK_PDB` when set, else from
/// [`default_adk_pdb`] when `cargo xtask data fetch adk` has put it there (`adk_open.pdb` of the
/// PyPI source archive `mdanalysistests==2.11.0`, see `../shared/DATA.md`), else a synthetic
/// stand-in of the same size ([`synthetic_backbone`]) with [`Backbone::synthetic`] set.
///
/// # Panics
/// When the chosen PDB cannot be read or has no backbone atoms — a benchmark asked for real
/// data should not silently measure something else.
pub fn adk_backbone() -> Backbone {
    let (path, how) = match std::env::var_os("SGDD_ADK_PDB") {
        Some(p) => (PathBuf::from(p), "SGDD_ADK_PDB="),
        None if default_adk_pdb().exists() => (default_adk_pdb(), ""),
        None => {
            return Backbone {
                positions: synthetic_backbone(855, 4),
                source: format!(
                    "SYNTHETIC compact chain, 855 atoms at 1.45 Å spacing in a 19 Å sphere: fell \
                     back because {} does not exist (run `cargo xtask data fetch adk`, or set \
                     SGDD_ADK_PDB to adk_open.pdb, for the real ADK backbone)",
                    default_adk_pdb().display()
                ),
                synthetic: true,
            };
        }
    };
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{how}{}: {e}", path.display()));
    let positions = parse_pdb_backbone(&text);
    assert!(
        !positions.is_empty(),
        "{how}{}: no N/CA/C/O ATOM records",
        path.display()
    );
    Backbone {
        source: format!(
            "{} backbone atoms (N, CA, C, O) of {}",
            positions.len(),
            path.display()
        ),
        positions,
        synthetic: false,
    }
}

/// `N`, `CA`, `C`, `O` atoms of the `ATOM` records of a PDB file, in file order (fixed PDB
/// columns: name 13–16, x 31–38, y 39–46, z 47–54).
pub fn parse_pdb_backbone(text: &str) -> Vec<[f64; 3]> {
    text.lines()
        .filter(|l| l.starts_with("ATOM") && l.len() >= 54)
        .filter(|l| matches!(l[12..16].trim(), "N" | "CA" | "C" | "O"))
        .filter_map(|l| {
            let f = |a: usize, b: usize| l[a..b].trim().parse::<f64>().ok();
            Some([f(30, 38)?, f(38, 46)?, f(46, 54)?])
        })
        .collect()
}

/// A deterministic protein-like stand-in: a random chain with 1.45 Å steps (backbone bond
/// spacing), no two atoms closer than 1.2 Å, confined to a 19 Å sphere (ADK's size).
pub fn synthetic_backbone(n: usize, seed: u64) -> Vec<[f64; 3]> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut pts: Vec<[f64; 3]> = vec![[0.0; 3]];
    while pts.len() < n {
        let last = *pts.last().expect("non-empty");
        let mut placed = false;
        for _ in 0..200 {
            let v = [
                rng.random_range(-1.0..1.0f64),
                rng.random_range(-1.0..1.0f64),
                rng.random_range(-1.0..1.0f64),
            ];
            let norm = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
            if !(0.1..=1.0).contains(&norm) {
                continue;
            }
            let p = [0, 1, 2].map(|a| last[a] + 1.45 * v[a] / norm);
            let r2 = p[0] * p[0] + p[1] * p[1] + p[2] * p[2];
            let clash = pts.iter().any(|q| {
                let d = [p[0] - q[0], p[1] - q[1], p[2] - q[2]];
                d[0] * d[0] + d[1] * d[1] + d[2] * d[2] < 1.2 * 1.2
            });
            if r2 < 19.0 * 19.0 && !clash {
                pts.push(p);
                placed = true;
                break;
            }
        }
        if !placed {
            // Trapped: restart the tail from a random earlier atom's neighbourhood.
            let back = rng.random_range(0..pts.len());
            pts.truncate(back.max(1));
        }
    }
    pts
}

/// `n` uniform points in the unit cube joined within `cutoff`: the large sparse graph of the
/// partial-solver benchmark.
pub fn geometric_graph(n: usize, cutoff: f64, seed: u64) -> Graph {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let pts: Vec<[f64; 3]> = (0..n)
        .map(|_| [rng.random(), rng.random(), rng.random()])
        .collect();
    Graph::radius(&pts, cutoff).expect("finite points, positive cutoff")
}

/// A Laplacian as triplets, for the peer scripts.
#[derive(Debug, Serialize)]
pub struct LaplacianFile {
    /// Dimension.
    pub n: usize,
    /// Row indices.
    pub rows: Vec<usize>,
    /// Column indices.
    pub cols: Vec<usize>,
    /// Values.
    pub vals: Vec<f64>,
    /// Where the graph came from.
    pub source: String,
}

/// Writes `lap` as `dir/<name>.json` ([`LaplacianFile`]).
///
/// # Panics
/// On I/O errors (benchmarks stop loudly).
pub fn write_laplacian(dir: &Path, name: &str, lap: &Laplacian, source: &str) {
    let a = lap.sparse();
    let (mut rows, mut cols, mut vals) = (Vec::new(), Vec::new(), Vec::new());
    let col_ptr = a.symbolic().col_ptr();
    for c in 0..lap.dim() {
        for p in col_ptr[c]..col_ptr[c + 1] {
            rows.push(a.symbolic().row_idx()[p]);
            cols.push(c);
            vals.push(a.val()[p]);
        }
    }
    let file = LaplacianFile {
        n: lap.dim(),
        rows,
        cols,
        vals,
        source: source.into(),
    };
    std::fs::create_dir_all(dir).expect("create bench dir");
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, serde_json::to_vec(&file).expect("serialise"))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// One line of the report table.
#[derive(Debug, Clone, Serialize)]
pub struct RatioRow {
    /// What is compared.
    pub what: String,
    /// Baseline time (s).
    pub baseline_s: f64,
    /// Our time (s).
    pub ours_s: f64,
    /// `baseline / ours` (> 1: we are faster).
    pub ratio: f64,
    /// The target, if the issue sets one.
    pub target: Option<f64>,
}

/// Renders rows as a fixed-width table.
pub fn render_table(rows: &[RatioRow]) -> String {
    let mut out = format!(
        "{:<58} {:>12} {:>12} {:>9} {:>8}\n",
        "comparison", "baseline", "ours", "ratio", "target"
    );
    for r in rows {
        out.push_str(&format!(
            "{:<58} {:>12} {:>12} {:>8.2}× {:>8}\n",
            r.what,
            fmt_time(r.baseline_s),
            fmt_time(r.ours_s),
            r.ratio,
            r.target.map(|t| format!("≥{t}×")).unwrap_or_default()
        ));
    }
    out
}

/// `1.23 s`, `45.6 ms`, `789 µs`.
pub fn fmt_time(s: f64) -> String {
    if s >= 1.0 {
        format!("{s:.2} s")
    } else if s >= 1e-3 {
        format!("{:.2} ms", s * 1e3)
    } else {
        format!("{:.1} µs", s * 1e6)
    }
}

/// Median of a sample (NaN for an empty one).
pub fn median(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        0.5 * (v[m - 1] + v[m])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pdb_backbone_columns() {
        let pdb = "\
ATOM      1 N    MET     1     -11.921  26.307  10.410  1.00 38.38      4AKE
ATOM      2 HT1  MET     1     -11.383  26.441  11.291  0.00  0.00      4AKE
ATOM      5 CA   MET     1     -11.088  26.791   9.287  1.00 38.38      4AKE
ATOM      9 CB   MET     1     -11.576  28.133   8.810  1.00 38.38      4AKE
ATOM     20 C    MET     1     -11.024  25.838   8.100  1.00 38.38      4AKE
ATOM     21 O    MET     1     -12.026  25.230   7.747  1.00 38.38      4AKE
HETATM   22 O    HOH     2       0.000   0.000   0.000  1.00  0.00
";
        let b = parse_pdb_backbone(pdb);
        assert_eq!(b.len(), 4);
        assert_eq!(b[0], [-11.921, 26.307, 10.410]);
        assert_eq!(b[3], [-12.026, 25.230, 7.747]);
    }

    /// The real structure, when `cargo xtask data fetch adk` has extracted it.
    #[test]
    fn the_fetched_adk_structure_has_855_backbone_atoms() {
        let path = default_adk_pdb();
        let Ok(text) = std::fs::read_to_string(&path) else {
            eprintln!(
                "{} absent (run `cargo xtask data fetch adk`)",
                path.display()
            );
            return;
        };
        let b = parse_pdb_backbone(&text);
        assert_eq!(b.len(), 855, "{}", path.display());
    }

    #[test]
    fn synthetic_backbone_is_a_compact_chain() {
        let b = synthetic_backbone(300, 1);
        assert_eq!(b.len(), 300);
        for w in b.windows(2) {
            let d: f64 = (0..3)
                .map(|a| (w[0][a] - w[1][a]).powi(2))
                .sum::<f64>()
                .sqrt();
            assert!((d - 1.45).abs() < 1e-9);
        }
        assert!(
            b.iter()
                .all(|p| p.iter().map(|x| x * x).sum::<f64>() < 19.0 * 19.0)
        );
        assert_eq!(b, synthetic_backbone(300, 1));
    }

    #[test]
    fn bench_thread_counts() {
        assert_eq!(parse_bench_threads(None, 4), Ok(4));
        assert_eq!(parse_bench_threads(Some(""), 0), Ok(1));
        assert_eq!(parse_bench_threads(Some(" 2 "), 4), Ok(2));
        for bad in ["0", "-1", "all", "1.5"] {
            let e = parse_bench_threads(Some(bad), 4).unwrap_err();
            assert!(e.starts_with("SGDD_BENCH_THREADS="), "{e}");
        }
    }

    #[test]
    fn median_and_table() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        let t = render_table(&[RatioRow {
            what: "x".into(),
            baseline_s: 2.0,
            ours_s: 0.5,
            ratio: 4.0,
            target: Some(1.0),
        }]);
        assert!(t.contains("4.00×") && t.contains("2.00 s") && t.contains("500.00 ms"));
    }
}
