//! What this process runs on: the libtorch it loaded (and the one it was built against), what
//! libtorch sees of CUDA, and the GPUs `nvidia-smi` lists.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;

/// The version of the libtorch this binary was compiled against (`torch/version.py` at build
/// time, recorded by `libtorch-env`).
pub const BUILT_AGAINST: &str = env!("SGDD_LIBTORCH_BUILD_VERSION");

/// One GPU as `nvidia-smi` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct Gpu {
    /// CUDA device index.
    pub index: u32,
    /// Product name.
    pub name: String,
    /// Total memory, MiB.
    pub memory_total_mib: u64,
    /// Memory in use when queried, MiB.
    pub memory_used_mib: u64,
    /// The NVIDIA driver's version.
    pub driver: String,
}

/// What the process sees.
#[derive(Debug, Clone, Serialize)]
pub struct SystemReport {
    /// This binary's version.
    pub version: &'static str,
    /// The libtorch version it was built against.
    pub built_against_torch: &'static str,
    /// Where the loaded `libtorch_cpu.so` lives (from `/proc/self/maps`).
    pub libtorch_dir: Option<PathBuf>,
    /// The version of the loaded libtorch (`torch/version.py` beside it).
    pub libtorch_version: Option<String>,
    /// Whether `libtorch_cuda.so` is loaded.
    pub libtorch_cuda_loaded: bool,
    /// `tch::Cuda::is_available()`.
    pub cuda_available: bool,
    /// `tch::Cuda::device_count()`.
    pub cuda_device_count: i64,
    /// `tch::Cuda::cudnn_is_available()`.
    pub cudnn_available: bool,
    /// The CUDA runtime version libtorch was built with (e.g. 13000), when a GPU is visible.
    pub cuda_runtime_version: Option<i64>,
    /// cuDNN's version, when a GPU is visible.
    pub cudnn_version: Option<i64>,
    /// The GPUs `nvidia-smi` lists.
    pub gpus: Vec<Gpu>,
    /// What `nvidia-smi` said when it listed none (not installed, no driver, …).
    pub nvidia_smi_note: Option<String>,
    /// libtorch's intra-op CPU threads.
    pub cpu_threads: i32,
}

impl SystemReport {
    /// Queries libtorch and `nvidia-smi`.
    pub fn query() -> Self {
        let libtorch_dir = loaded_library_dir("libtorch_cpu.so");
        let libtorch_version = libtorch_dir
            .as_deref()
            .and_then(libtorch_env::torch_version);
        let cuda_available = tch::Cuda::is_available();
        let (gpus, nvidia_smi_note) = match nvidia_smi_gpus() {
            Ok(g) => (g, None),
            Err(e) => (Vec::new(), Some(e)),
        };
        Self {
            version: env!("CARGO_PKG_VERSION"),
            built_against_torch: BUILT_AGAINST,
            libtorch_dir,
            libtorch_version,
            libtorch_cuda_loaded: loaded_library_dir("libtorch_cuda.so").is_some(),
            cuda_available,
            cuda_device_count: tch::Cuda::device_count(),
            cudnn_available: tch::Cuda::cudnn_is_available(),
            cuda_runtime_version: cuda_available.then(tch::utils::version_cudart),
            cudnn_version: (cuda_available && tch::Cuda::cudnn_is_available())
                .then(tch::utils::version_cudnn),
            gpus,
            nvidia_smi_note,
            cpu_threads: tch::get_num_threads(),
        }
    }

    /// An error when the loaded libtorch is not the major.minor version built against (its C++
    /// ABI would not match).
    pub fn version_mismatch(&self) -> Option<String> {
        let loaded = self.libtorch_version.as_deref()?;
        (major_minor(loaded) != major_minor(BUILT_AGAINST) && BUILT_AGAINST != "unknown").then(|| {
            format!(
                "this binary was built against libtorch {BUILT_AGAINST} but loaded {loaded} from \
                 {}: put the torch/lib of a torch {} installation on LD_LIBRARY_PATH (the \
                 bundle's gpu-check.sh does), or rebuild against this one",
                self.libtorch_dir
                    .as_deref()
                    .map_or_else(|| "?".into(), |p| p.display().to_string()),
                major_minor(BUILT_AGAINST)
            )
        })
    }

    /// Why no GPU is visible, in words, for the error message.
    pub fn why_no_gpu(&self) -> String {
        let mut reasons = Vec::new();
        if !self.libtorch_cuda_loaded {
            reasons.push(
                "libtorch_cuda.so is not loaded (a CPU-only libtorch, or a binary linked without \
                 --no-as-needed: see crates/libtorch-env)"
                    .to_owned(),
            );
        }
        match (&self.nvidia_smi_note, self.gpus.is_empty()) {
            (Some(note), _) => reasons.push(format!("nvidia-smi: {note}")),
            (None, true) => reasons.push("nvidia-smi lists no GPU".to_owned()),
            (None, false) => reasons.push(format!(
                "nvidia-smi lists {} GPU(s) that libtorch does not see (a driver older than the \
                 CUDA runtime of this libtorch, {}?)",
                self.gpus.len(),
                self.libtorch_version.as_deref().unwrap_or("?")
            )),
        }
        reasons.join("; ")
    }
}

fn major_minor(version: &str) -> String {
    version
        .split(['.', '+'])
        .take(2)
        .collect::<Vec<_>>()
        .join(".")
}

/// The directory of a shared library this process has mapped, from `/proc/self/maps`.
pub fn loaded_library_dir(file_name: &str) -> Option<PathBuf> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .map(Path::new)
        .find(|p| p.file_name().is_some_and(|n| n == file_name))
        .and_then(|p| p.parent().map(Path::to_path_buf))
}

/// `nvidia-smi`'s list of GPUs, or why there is none.
fn nvidia_smi_gpus() -> Result<Vec<Gpu>, String> {
    let out = Command::new("nvidia-smi")
        .args([
            "--query-gpu=index,name,memory.total,memory.used,driver_version",
            "--format=csv,noheader,nounits",
        ])
        .output()
        .map_err(|e| format!("could not run nvidia-smi ({e})"))?;
    if !out.status.success() {
        return Err(format!(
            "nvidia-smi failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(parse_gpu_line)
        .collect()
}

fn parse_gpu_line(line: &str) -> Result<Gpu, String> {
    let f: Vec<&str> = line.split(',').map(str::trim).collect();
    let bad = || format!("unexpected nvidia-smi line {line:?}");
    if f.len() != 5 {
        return Err(bad());
    }
    Ok(Gpu {
        index: f[0].parse().map_err(|_| bad())?,
        name: f[1].to_owned(),
        memory_total_mib: f[2].parse().map_err(|_| bad())?,
        memory_used_mib: f[3].parse().map_err(|_| bad())?,
        driver: f[4].to_owned(),
    })
}

/// GPU memory this process holds, MiB (`nvidia-smi --query-compute-apps`), when listed.
pub fn process_gpu_memory_mib() -> Option<u64> {
    let out = Command::new("nvidia-smi")
        .args([
            "--query-compute-apps=pid,used_memory",
            "--format=csv,noheader,nounits",
        ])
        .output()
        .ok()?;
    let me = std::process::id().to_string();
    String::from_utf8_lossy(&out.stdout).lines().find_map(|l| {
        let (pid, mem) = l.split_once(',')?;
        (pid.trim() == me).then(|| mem.trim().parse().ok())?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nvidia_smi_lines() {
        let g = parse_gpu_line("0, NVIDIA H200, 143771, 0, 580.95.05").unwrap();
        assert_eq!(g.index, 0);
        assert_eq!(g.name, "NVIDIA H200");
        assert_eq!(g.memory_total_mib, 143771);
        assert_eq!(g.driver, "580.95.05");
        assert!(parse_gpu_line("0, x").is_err());
    }

    #[test]
    fn compares_major_and_minor_only() {
        assert_eq!(major_minor("2.11.0+cu130"), "2.11");
        assert_eq!(major_minor("2.11.1"), "2.11");
        assert_ne!(major_minor("2.13.0"), major_minor("2.11.0"));
    }

    #[test]
    fn finds_the_loaded_libtorch() {
        // tch is linked: touching libtorch maps it
        let _ = tch::Cuda::is_available();
        let dir = loaded_library_dir("libtorch_cpu.so").expect("libtorch_cpu.so is mapped");
        assert!(dir.join("libtorch_cpu.so").exists());
        assert!(libtorch_env::torch_version(&dir).is_some());
    }
}
