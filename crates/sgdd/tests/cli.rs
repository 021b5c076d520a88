//! The `sgdd` binary end to end, as a user types it: generate → train → eval → predict (read
//! back with numpy) → rollout → spectrum, and the refusals that keep runs and data honest.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;
use common::{ok, s};

fn sgdd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sgdd"))
        .args(args)
        .output()
        .expect("run sgdd")
}

fn fails(out: Output) -> String {
    assert!(!out.status.success(), "sgdd succeeded but should not have");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `sgdd predict` of `input` with `checkpoint` into `out`, with extra arguments, on the CPU.
fn predict(checkpoint: &Path, input: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "predict",
        "--checkpoint",
        s(checkpoint),
        "--input",
        s(input),
        "--out",
        s(out),
        "--device",
        "cpu",
    ];
    args.extend_from_slice(extra);
    sgdd(&args)
}

/// Runs a Python script (the project venv's, with numpy) on `file`; its stdout.
fn python(script: &str, file: &Path) -> String {
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn generate(dir: &Path, seed: u64) {
    ok(sgdd(&[
        "data",
        "generate",
        "nbody",
        "--system",
        "charged",
        "--train",
        "6",
        "--val",
        "3",
        "--test",
        "3",
        "--seed",
        &seed.to_string(),
        "--out",
        s(dir),
    ]));
}

fn write_config(tmp: &Path, data: &Path) -> PathBuf {
    let cfg = tmp.join("run.toml");
    std::fs::write(
        &cfg,
        format!(
            "[data]\ndir = {data:?}\n[model]\nkind = \"sgdd\"\nhidden = 8\ndecoder_layers = 1\nz_dim = 4\n\
             teacher_layers = 1\nstudent_layers = 1\nheads = 2\nk = 6\n[train]\nepochs = 2\nbatch_size = 3\n\
             eval_every = 1\nthreads = 1\n"
        ),
    )
    .unwrap();
    cfg
}

#[test]
fn train_eval_predict_rollout_spectrum_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("charged");
    generate(&data, 1);
    let cfg = write_config(tmp.path(), &data);
    let run = tmp.path().join("run");
    let out = ok(sgdd(&[
        "train",
        "-q",
        "--device",
        "cpu",
        "-c",
        s(&cfg),
        "-o",
        s(&run),
    ]));
    let result: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(result["model"], "sgdd");
    for f in [
        "config.toml",
        "metrics.jsonl",
        "checkpoint.safetensors",
        "best.safetensors",
        "result.json",
        "timing.json",
        "loss.png",
        "trajectory.png",
    ] {
        assert!(run.join(f).exists(), "{f}");
    }
    assert!(std::fs::read_dir(run.join("tensorboard")).unwrap().count() >= 1);
    let best = run.join("best.safetensors");

    // eval scores the same test split as the run's result
    let eval = ok(sgdd(&["eval", "--checkpoint", s(&best), "--device", "cpu"]));
    let m: serde_json::Value = serde_json::from_str(eval.trim()).unwrap();
    let close = |a: &serde_json::Value, b: &serde_json::Value| {
        (a.as_f64().unwrap() - b.as_f64().unwrap()).abs() <= 1e-9 * b.as_f64().unwrap().abs()
    };
    assert!(close(&m["s2s"], &result["test"]["s2s"]), "{m} vs {result}");

    // predict: an npz numpy reads, with per-sample metrics whose mean is the split's S2S
    let npz = tmp.path().join("pred.npz");
    let test = data.join("test.safetensors");
    ok(predict(&best, &test, &npz, &[]));
    let check = r#"
import sys, numpy as np
z = np.load(sys.argv[1])
x, t = z["x"], z["target"]
assert x.shape == t.shape and x.ndim == 4 and x.shape[3] == 3, x.shape
assert z["x0"].shape == (x.shape[0], x.shape[2], 3)
assert z["sample"].shape == (x.shape[0],) and z["times"].shape == (x.shape[1],)
s2s = ((x[:, -1] - t[:, -1]) ** 2).mean(axis=(1, 2))
assert np.allclose(s2s, z["s2s"]), (s2s, z["s2s"])
print(repr(float(z["s2s"].mean())))
"#;
    let mean: f64 = python(check, &npz).trim().parse().unwrap();
    assert!((mean - m["s2s"].as_f64().unwrap()).abs() < 1e-9 * mean.abs().max(1e-12));

    // rollout: 4 windows of Δ = 10 from frame 0 (the trajectories have 50 frames)
    let ro = tmp.path().join("rollout.npz");
    let text = ok(predict(
        &best,
        &test,
        &ro,
        &["--rollout", "4", "--start-frame", "0"],
    ));
    assert!(
        text.contains("error growth") && text.contains("window 4"),
        "{text}"
    );
    python(
        "import sys, numpy as np; z = np.load(sys.argv[1]); \
         assert z['x'].shape[1] == 20 and z['frame_mse'].shape == (20,); \
         assert np.all(np.diff(z['times']) > 0)",
        &ro,
    );
    // too long a rollout is a clear error
    let err = fails(predict(&best, &test, &ro, &["--rollout", "6"]));
    assert!(err.contains("needs") && err.contains("frames"), "{err}");

    // spectrum of two checkpoints of the same data
    let spec = tmp.path().join("spectrum");
    ok(sgdd(&[
        "spectrum",
        "--checkpoint",
        s(&best),
        "--checkpoint",
        s(&run.join("checkpoint.safetensors")),
        "--out",
        s(&spec),
        "--device",
        "cpu",
    ]));
    assert!(spec.join("spectrum.json").exists() && spec.join("spectrum.png").exists());
}

#[test]
fn runs_and_data_are_protected() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("charged");
    generate(&data, 2);
    let cfg = write_config(tmp.path(), &data);
    let run = tmp.path().join("run");
    let train = |extra: &[&str]| {
        let mut args = vec![
            "train",
            "-q",
            "--device",
            "cpu",
            "-c",
            s(&cfg),
            "-o",
            s(&run),
        ];
        args.extend_from_slice(extra);
        sgdd(&args)
    };
    ok(train(&[]));
    let first = std::fs::read(run.join("result.json")).unwrap();
    // a second training into the same directory is refused; --force replaces the run
    let err = fails(train(&[]));
    assert!(
        err.contains("already holds a run") && err.contains("--force"),
        "{err}"
    );
    // resuming a finished run does nothing and says so
    let out = train(&["--resume"]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    ok(out);
    assert!(stderr.contains("already finished"), "{stderr}");
    assert_eq!(std::fs::read(run.join("result.json")).unwrap(), first);
    // two identical runs write byte-identical results
    ok(train(&["--force"]));
    assert_eq!(std::fs::read(run.join("result.json")).unwrap(), first);
    // resume of a directory with no run
    let err = fails(sgdd(&[
        "train",
        "-q",
        "-c",
        s(&cfg),
        "-o",
        s(&tmp.path().join("nothing")),
        "--resume",
    ]));
    assert!(err.contains("nothing to resume"), "{err}");
    // config errors name the key, type errors included
    let err = fails(train(&["--force", "--set", "train.epochs=\"ten\""]));
    assert!(err.contains("train.epochs"), "{err}");
    let err = fails(train(&["--force", "--set", "model.hiden=3"]));
    assert!(err.contains("hiden"), "{err}");

    let best = run.join("best.safetensors");
    // the dataset is regenerated with another seed: eval refuses it unless pointed at it
    generate(&data, 3);
    let err = fails(sgdd(&["eval", "--checkpoint", s(&best), "--device", "cpu"]));
    assert!(
        err.contains("another version") && err.contains("--data"),
        "{err}"
    );
    ok(sgdd(&[
        "eval",
        "--checkpoint",
        s(&best),
        "--data",
        s(&data),
        "--device",
        "cpu",
    ]));

    // predict verifies its input against the manifest: a flipped byte is an error
    let test = data.join("test.safetensors");
    let mut bytes = std::fs::read(&test).unwrap();
    let i = bytes.len() - 7;
    bytes[i] ^= 0x40;
    std::fs::write(&test, &bytes).unwrap();
    let err = fails(predict(&best, &test, &tmp.path().join("p.npz"), &[]));
    assert!(
        err.contains("test.safetensors") && err.contains("sha256"),
        "{err}"
    );

    // a checkpoint with a flipped byte is refused by its own checksum
    let mut ck = std::fs::read(&best).unwrap();
    let i = ck.len() - 3;
    ck[i] ^= 0x01;
    let broken = tmp.path().join("broken.safetensors");
    std::fs::write(&broken, &ck).unwrap();
    let err = fails(sgdd(&[
        "eval",
        "--checkpoint",
        s(&broken),
        "--data",
        s(&data),
        "--device",
        "cpu",
    ]));
    assert!(err.contains("checksum"), "{err}");
}

/// `sgdd distill` as a user types it: two teachers from `sgdd train` (EGNO and the no-teacher
/// control), the example config's student with A2D, the student beside its teachers in the
/// result, and an infeasible A2D cap refused naming the key.
#[test]
fn distill_smoke() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("charged");
    generate(&data, 2);
    let cfg = write_config(tmp.path(), &data);
    let mut teachers = Vec::new();
    for kind in ["egno", "no-teacher"] {
        let run = tmp.path().join(kind);
        ok(sgdd(&[
            "train",
            "-q",
            "--device",
            "cpu",
            "-c",
            s(&cfg),
            "-o",
            s(&run),
            "--set",
            &format!("model.kind=\"{kind}\""),
        ]));
        teachers.push(run.join("best.safetensors"));
    }
    let example =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/distill-nbody-charged.toml");
    let run = tmp.path().join("distill");
    let args = |extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = [
            "distill",
            "-q",
            "--device",
            "cpu",
            "-c",
            s(&example),
            "-o",
            s(&run),
            "--teacher",
            s(&teachers[0]),
            "--teacher",
            s(&teachers[1]),
            "--set",
            &format!("data.dir={:?}", s(&data)),
            "--set",
            "train.epochs=2",
            "--set",
            "train.eval_every=1",
            "--set",
            "train.batch_size=3",
        ]
        .iter()
        .map(|x| (*x).to_owned())
        .collect();
        a.extend(extra.iter().map(|x| (*x).to_owned()));
        a
    };
    let run_with = |extra: &[&str]| {
        let a = args(extra);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        sgdd(&a)
    };
    let e = fails(run_with(&["--set", "distill.cap=0.4"]));
    assert!(e.contains("distill.cap") && e.contains("infeasible"), "{e}");
    let out = ok(run_with(&[]));
    let result: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(result["student"], "egno");
    assert_eq!(result["teachers"].as_array().unwrap().len(), 2);
    for f in [
        "result.json",
        "timing.json",
        "metrics.jsonl",
        "best.safetensors",
        "config.toml",
    ] {
        assert!(run.join(f).exists(), "{f}");
    }
    // a second run into the same directory is refused
    let e = fails(run_with(&[]));
    assert!(e.contains("--force"), "{e}");
    // `sgdd eval` reads the distilled EGNO student as the plain EGNO it is: the test metrics
    // the run reported
    let best = run.join("best.safetensors");
    let out = ok(sgdd(&["eval", "--device", "cpu", "--checkpoint", s(&best)]));
    let m: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    for key in ["s2s", "s2t"] {
        let (got, want) = (
            m[key].as_f64().unwrap(),
            result["test"][key].as_f64().unwrap(),
        );
        assert!((got - want).abs() <= 1e-6 * want, "{key}: {got} vs {want}");
    }
    // one process only: under a launcher it refuses before touching the run
    let a = args(&["--force"]);
    let e = fails(
        Command::new(env!("CARGO_BIN_EXE_sgdd"))
            .args(&a)
            .envs([
                ("WORLD_SIZE", "2"),
                ("RANK", "0"),
                ("MASTER_ADDR", "127.0.0.1"),
                ("MASTER_PORT", "29500"),
            ])
            .output()
            .unwrap(),
    );
    assert!(
        e.contains("one process") && e.contains("WORLD_SIZE = 2"),
        "{e}"
    );
}

/// `sgdd repro nbody --quick` end to end, shrunk: a tiny dataset where the table looks for its
/// data and one epoch of a tiny model per run (`--set`). The table holds every row a comparison
/// needs — the untrained baselines, EGNO, the no-teacher control, SGDD-EGNO (the defaults), the
/// earlier default, the paper's recipe, the GF-NODE pair and the ablations — with the imitation
/// R² and teacher-oracle columns filled exactly for the rows with a teacher, and it says how
/// models were selected and which overrides every run had.
#[test]
fn repro_quick_table_has_every_row() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("data");
    generate(&root.join("nbody-charged-quick"), 3);
    let out = tmp.path().join("repro");
    let sets = [
        "train.epochs=1",
        "train.eval_every=1",
        "train.batch_size=3",
        "model.hidden=8",
        "model.decoder_layers=1",
        "model.z_dim=4",
        "model.k=6",
    ];
    let mut args = vec![
        "repro",
        "nbody",
        "--quick",
        "--systems",
        "charged",
        "--seeds",
        "1",
        "--device",
        "cpu",
        "--data-root",
        s(&root),
        "--out",
        s(&out),
    ];
    for set in &sets {
        args.extend(["--set", set]);
    }
    ok(sgdd(&args));
    let md = std::fs::read_to_string(out.join("nbody-quick.md")).unwrap();
    let teacher = |row: &str| row.starts_with("SGDD-");
    for row in [
        "static (initial positions)",
        "constant velocity",
        "EGNO",
        "EGNO + encoder (no teacher)",
        "SGDD-EGNO",
        "SGDD-EGNO (teacher decoder, gated)",
        "SGDD-EGNO (shared decoder, scheduled)",
        "SGDD-EGNO (paper recipe)",
        "GF-NODE",
        "SGDD-GFNODE",
        "SGDD-EGNO w/o SGE",
        "SGDD-EGNO w/o spectral align",
        "SGDD-EGNO w/o representation align",
    ] {
        let line = md
            .lines()
            .find(|l| l.starts_with(&format!("| charged | {row} |")))
            .unwrap_or_else(|| panic!("no row {row:?} in\n{md}"));
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // | system | model | S2S | S2T | seeds | imitation R² | teacher-oracle S2S |
        assert_eq!(cells.len(), 9, "{line}");
        assert!(cells[3].contains(" ± "), "{line}");
        for diagnostic in &cells[6..8] {
            assert_eq!(*diagnostic != "–", teacher(row), "{line}");
        }
    }
    assert!(
        md.contains("model selection by the best validation S2S"),
        "{md}"
    );
    assert!(md.contains("`--set train.epochs=1`"), "{md}");
}
