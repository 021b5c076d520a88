//! The binary end to end on this machine, at a tiny size: with `--allow-cpu` it checks the CPU
//! path and writes its report; without, on a machine where libtorch sees no GPU, it fails with
//! a message saying so (and writes a report saying `no-gpu`).

use std::process::Command;

fn gpu_check() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sgdd-gpu-check"))
}

fn report(dir: &std::path::Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("gpu-check.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn allow_cpu_checks_every_part_and_reports() {
    let out = tempfile::tempdir().unwrap();
    let run = gpu_check()
        .args(["--allow-cpu", "--epochs", "1", "--full-epochs", "1"])
        .args(["--train-trajectories", "6", "--eval-trajectories", "3"])
        .arg("--out")
        .arg(out.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    let r = report(out.path());
    assert_eq!(r["status"], "passed", "{r:#}");
    let gpu = tch::Cuda::is_available();
    assert_eq!(r["gpu_checked"], gpu);
    assert_eq!(r["device"], if gpu { "cuda:0" } else { "cpu" });
    if !gpu {
        assert!(
            stderr.contains("--allow-cpu: checking the CPU path"),
            "{stderr}"
        );
    }
    let checks = r["device_checks"].as_array().unwrap();
    assert_eq!(checks.len(), 4);
    assert!(checks.iter().all(|c| c["passed"] == true), "{checks:#?}");
    let training = &r["training"]["result"];
    assert_eq!(training["runs"].as_array().unwrap().len(), 4);
    assert_eq!(training["comparisons"].as_array().unwrap().len(), 2);
    assert_eq!(r["full_run"]["result"]["epochs"], 1);
    assert!(r["system"]["libtorch_version"].is_string());
    let md = std::fs::read_to_string(out.path().join("gpu-check.md")).unwrap();
    assert!(md.starts_with("# sgdd-gpu-check: passed"), "{md}");
    assert!(md.contains("| checkpoint-round-trip | ok |"), "{md}");
}

#[test]
fn without_a_gpu_it_fails_and_says_why() {
    if tch::Cuda::is_available() {
        return; // a GPU machine: the check runs there (see the test above)
    }
    let out = tempfile::tempdir().unwrap();
    let run = gpu_check().arg("--out").arg(out.path()).output().unwrap();
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("libtorch sees no GPU") && stderr.contains("--allow-cpu"),
        "{stderr}"
    );
    let r = report(out.path());
    assert_eq!(r["status"], "no-gpu");
    assert!(r["device_checks"].as_array().unwrap().is_empty());
}
