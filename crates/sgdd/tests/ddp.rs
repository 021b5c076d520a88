//! Data-parallel training end to end (SPEC §8): `sgdd train --nproc 2` (Gloo on 127.0.0.1)
//! against one process on the same global batch, a 2-process checkpoint resumed by one process,
//! and a worker killed mid-run. Every run is bounded: the workers' collectives time out after
//! `--dist-timeout`, and the test kills what outlives its deadline.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use tch::Tensor;

mod common;
use common::{ok, s};

/// Largest |difference| allowed between the weights (and Adam moments) of 2 ranks and of one
/// process after the same steps: the ranks sum two half-batch means where one process takes one
/// mean, so float rounding (f32, ~1e-7 relative) is the only difference.
const WEIGHT_TOL: f64 = 1e-5;
/// Relative tolerance on logged losses and validation metrics.
const METRIC_TOL: f64 = 1e-5;

fn sgdd(args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sgdd"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run sgdd");
    // watchdog: no run of these tiny configs takes a minute
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!("sgdd {args:?} hung: killed after 120 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// 7 training windows in global batches of 4: the ranks take 2 + 2, then 2 + 1. 9 validation
/// windows make 3 evaluation batches: rank 0 scores batches 0 and 2, rank 1 batch 1.
fn setup(tmp: &Path, epochs: usize) -> PathBuf {
    let data = tmp.join("charged");
    ok(sgdd(&[
        "data",
        "generate",
        "nbody",
        "--system",
        "charged",
        "--train",
        "7",
        "--val",
        "9",
        "--test",
        "3",
        "--seed",
        "4",
        "--out",
        s(&data),
    ]));
    let cfg = tmp.join("run.toml");
    std::fs::write(
        &cfg,
        format!(
            "[data]\ndir = {data:?}\n[model]\nkind = \"egno\"\nhidden = 8\ndecoder_layers = 1\n\
             [train]\nepochs = {epochs}\nbatch_size = 4\neval_every = 1\nthreads = 1\n\
             tensorboard = false\n"
        ),
    )
    .unwrap();
    cfg
}

/// `sgdd train -q --device cpu -c CFG -o OUT`.
fn train_args<'a>(cfg: &'a Path, out: &'a Path) -> Vec<&'a str> {
    vec!["train", "-q", "--device", "cpu", "-c", s(cfg), "-o", s(out)]
}

fn train(cfg: &Path, out: &Path, extra: &[&str]) -> String {
    let mut args = train_args(cfg, out);
    args.extend_from_slice(extra);
    ok(sgdd(&args))
}

fn tensors(checkpoint: &Path) -> BTreeMap<String, Tensor> {
    sgdd_train::load_checkpoint(checkpoint).unwrap().0
}

fn assert_same_weights(a: &Path, b: &Path) {
    let (ta, tb) = (tensors(a), tensors(b));
    assert_eq!(ta.keys().collect::<Vec<_>>(), tb.keys().collect::<Vec<_>>());
    assert!(ta.keys().any(|k| k.starts_with("adam.m.")));
    for (k, x) in &ta {
        let d = (x - &tb[k]).abs().max().double_value(&[]);
        assert!(
            d <= WEIGHT_TOL,
            "{k}: |Δ| = {d:e} between {} and {}",
            a.display(),
            b.display()
        );
    }
}

fn close(a: f64, b: f64, what: &str) {
    assert!(
        (a - b).abs() <= METRIC_TOL * a.abs().max(b.abs()).max(1e-12),
        "{what}: {a} vs {b}"
    );
}

fn epochs(run: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn two_ranks_train_as_one_process_and_resume_in_one() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = setup(tmp.path(), 2);
    let one = tmp.path().join("one");
    let two = tmp.path().join("two");
    let half = tmp.path().join("half");
    let r1: serde_json::Value = serde_json::from_str(train(&cfg, &one, &[]).trim()).unwrap();
    let r2: serde_json::Value =
        serde_json::from_str(train(&cfg, &two, &["--nproc", "2", "--dist-timeout", "30"]).trim())
            .unwrap();
    assert_same_weights(
        &one.join("checkpoint.safetensors"),
        &two.join("checkpoint.safetensors"),
    );
    assert_eq!(r1["steps"], r2["steps"]);
    assert_eq!(r1["best_epoch"], r2["best_epoch"]);
    for m in ["s2s", "s2t", "ade", "fde"] {
        close(
            r1["val"][m].as_f64().unwrap(),
            r2["val"][m].as_f64().unwrap(),
            m,
        );
        close(
            r1["test"][m].as_f64().unwrap(),
            r2["test"][m].as_f64().unwrap(),
            m,
        );
    }
    for (a, b) in epochs(&one).iter().zip(&epochs(&two)) {
        for k in ["loss", "grad_norm"] {
            close(a[k].as_f64().unwrap(), b[k].as_f64().unwrap(), k);
        }
    }
    // the validation sharded over the 2 ranks is one process's, bit for bit: score the final
    // weights of the 2-rank run in one process and compare with what its last epoch logged
    let eval = ok(sgdd(&[
        "eval",
        "--checkpoint",
        s(&two.join("checkpoint.safetensors")),
        "--split",
        "val",
        "--device",
        "cpu",
    ]));
    let single: serde_json::Value = serde_json::from_str(eval.trim()).unwrap();
    let logged = epochs(&two).last().unwrap()["val"].clone();
    for m in ["s2s", "s2t", "ade", "fde"] {
        assert_eq!(logged[m].as_f64(), single[m].as_f64(), "sharded val {m}");
    }
    assert_eq!(logged["samples"], 9);
    // one epoch on 2 ranks, the second in one process: the sampler state is global
    train(
        &cfg,
        &half,
        &[
            "--nproc",
            "2",
            "--dist-timeout",
            "30",
            "--stop-after-epochs",
            "1",
        ],
    );
    assert_eq!(epochs(&half).len(), 1);
    assert!(!half.join("result.json").exists());
    train(&cfg, &half, &["--resume"]);
    assert_eq!(epochs(&half).len(), 2);
    assert_same_weights(
        &one.join("checkpoint.safetensors"),
        &half.join("checkpoint.safetensors"),
    );
}

#[test]
fn a_killed_worker_stops_the_others_with_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = setup(tmp.path(), 100_000);
    let run = tmp.path().join("run");
    let logs: Vec<PathBuf> = (0..2)
        .map(|r| tmp.path().join(format!("rank{r}.log")))
        .collect();
    let mut workers = torch_dist::LocalLaunch::spawn(2, |rank| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_sgdd"));
        c.args(train_args(&cfg, &run))
            .args(["--dist-timeout", "20"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&logs[rank]).unwrap());
        c
    })
    .unwrap();
    let started = Instant::now();
    while epochs_done(&run) < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no epoch after 60 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    workers.kill_rank(1).unwrap();
    let killed = Instant::now();
    let exit = workers
        .wait(Duration::from_secs(90), Duration::from_secs(60))
        .unwrap();
    assert!(!exit.status[0].success(), "rank 0 went on without its peer");
    assert!(
        killed.elapsed() < Duration::from_secs(45),
        "rank 0 noticed after {:?}",
        killed.elapsed()
    );
    let err = std::fs::read_to_string(&logs[0]).unwrap();
    assert!(err.contains("rank 0 of 2: c10d"), "{err}");
    // what rank 0 wrote before is a resumable run
    assert!(run.join("checkpoint.safetensors").is_file());
    sgdd_train::load_checkpoint(&run.join("checkpoint.safetensors")).unwrap();
}

fn epochs_done(run: &Path) -> usize {
    std::fs::read_to_string(run.join("metrics.jsonl")).map_or(0, |t| t.lines().count())
}
