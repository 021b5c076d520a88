//! `cargo xtask bench NAME`: a Rust benchmark and its peer baseline, measured in one run.

use std::process::Command;

use anyhow::{Result, bail};

use crate::env::{self, project_root};
use crate::setup;

pub fn run(name: &str, args: &[String]) -> Result<()> {
    let root = project_root();
    let bench_src = root.join("benches/benches").join(format!("{name}.rs"));
    if !bench_src.exists() {
        bail!("no benchmark `{name}`: expected {}", bench_src.display());
    }
    let torch = setup::ensure()?;
    let out = root.join("target/bench");
    std::fs::create_dir_all(&out)?;

    let mut cmd = env::cargo(&torch);
    cmd.args(["bench", "--package", "sgdd-benches", "--bench", name, "--"])
        .args(args)
        .env("SGDD_BENCH_OUT", &out);
    env::run(cmd)?;

    let peer = root.join("benches/peers").join(format!("{name}.py"));
    if peer.exists() {
        let mut py = Command::new(torch.venv.join("bin/python"));
        py.arg(&peer).arg("--out").arg(&out).current_dir(&root);
        env::with_torch_env(&mut py, &torch);
        env::run(py)?;
    }
    let report = out.join(format!("{name}.json"));
    if report.exists() {
        println!("bench: wrote {}", report.display());
    }
    Ok(())
}
