//! Collectives between 2 processes on 127.0.0.1 (Gloo), and NCCL on one rank as far as the
//! build (`nccl` feature) and the machine (a GPU) allow. The binary launches itself as the
//! workers of each scenario (`TORCH_DIST_TEST_ROLE`), with a deadline that kills them: no
//! scenario can hang CI.

use std::process::Command;
use std::time::{Duration, Instant};

use tch::{Device, Kind, Tensor};
use torch_dist::{DistEnv, LocalLaunch, ProcessGroup, ReduceOp};

const ROLE: &str = "TORCH_DIST_TEST_ROLE";
/// The watchdog of each scenario.
const DEADLINE: Duration = Duration::from_secs(90);
/// The collectives' timeout in the failure scenarios.
const SHORT: Duration = Duration::from_secs(5);

fn main() {
    if let Ok(role) = std::env::var(ROLE) {
        let code = match worker(&role) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("worker {role}: {e}");
                1
            }
        };
        std::process::exit(code);
    }
    let scenarios: [(&str, fn()); 4] = [
        ("all_reduce_broadcast_barrier", known_sums),
        ("killed_peer_is_an_error", killed_peer),
        ("missing_peer_times_out", missing_peer),
        ("nccl_one_rank", nccl_one_rank),
    ];
    for (name, f) in scenarios {
        let t = Instant::now();
        f();
        println!("test {name} ... ok ({:.1}s)", t.elapsed().as_secs_f64());
    }
}

fn me(role: &str) -> Command {
    let mut c = Command::new(std::env::current_exe().expect("the test binary"));
    c.env(ROLE, role);
    c
}

fn known_sums() {
    let exit = LocalLaunch::spawn(2, |_| me("sums"))
        .unwrap()
        .wait(DEADLINE, Duration::from_secs(10))
        .unwrap();
    exit.success().unwrap();
}

fn killed_peer() {
    let exit = LocalLaunch::spawn(2, |_| me("killed"))
        .unwrap()
        .wait(DEADLINE, Duration::from_secs(30))
        .unwrap();
    assert!(
        exit.status[0].success(),
        "rank 0 must report the dead peer and exit cleanly: {exit:?}"
    );
    assert!(!exit.status[1].success(), "rank 1 aborts: {exit:?}");
}

fn missing_peer() {
    // rank 0 of 2 alone: the rendezvous must fail within its timeout
    let port = torch_dist::free_port().unwrap();
    let env = DistEnv {
        master_addr: "127.0.0.1".into(),
        master_port: port,
        rank: 0,
        world_size: 2,
        local_rank: 0,
        ifname: None,
    };
    one_worker("alone", &env, "the lone rank must report the timeout");
}

/// Runs the worker `role` alone in `env`, within the deadline; it must succeed.
fn one_worker(role: &str, env: &DistEnv, what: &str) {
    let mut c = me(role);
    c.envs(env.vars());
    let mut child = c.spawn().unwrap();
    let started = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            assert!(s.success(), "{what}: {s}");
            break;
        }
        assert!(started.elapsed() < DEADLINE, "{role}: hung");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One rank alone: the rendezvous of 1 worker and whatever this build and machine can do with
/// NCCL, each outcome checked (see the `nccl` role).
fn nccl_one_rank() {
    let env = DistEnv {
        master_addr: "127.0.0.1".into(),
        master_port: torch_dist::free_port().unwrap(),
        rank: 0,
        world_size: 1,
        local_rank: 0,
        ifname: None,
    };
    one_worker("nccl", &env, "the NCCL scenario failed");
}

fn worker(role: &str) -> Result<(), String> {
    let env = DistEnv::from_env()
        .map_err(|e| e.to_string())?
        .ok_or("no WORLD_SIZE")?;
    let f = |v: &[f32]| Tensor::from_slice(v);
    match role {
        "sums" => {
            let g = ProcessGroup::gloo(&env, Duration::from_secs(60)).map_err(|e| e.to_string())?;
            let r = g.rank() as f64;
            // rank r holds (r+1)·[1, 2, 3] and (r+1)·[[10], [20]]: sums 3·…, averages 1.5·…
            let mut ts = [
                f(&[1.0, 2.0, 3.0]) * (r + 1.0),
                f(&[10.0, 20.0]).reshape([2, 1]) * (r + 1.0),
            ];
            g.all_reduce(&mut ts, ReduceOp::Sum)
                .map_err(|e| e.to_string())?;
            expect(&ts[0], &[3.0, 6.0, 9.0])?;
            expect(&ts[1], &[30.0, 60.0])?;
            let mut avg = [f(&[1.0, -2.0]) * (r + 1.0)];
            g.all_reduce(&mut avg, ReduceOp::Avg)
                .map_err(|e| e.to_string())?;
            expect(&avg[0], &[1.5, -3.0])?;
            let mut doubles = [Tensor::from_slice(&[0.1f64 * (r + 1.0)])];
            g.all_reduce(&mut doubles, ReduceOp::Sum)
                .map_err(|e| e.to_string())?;
            let d = doubles[0].double_value(&[0]);
            if (d - 0.30000000000000004).abs() > 0.0 {
                return Err(format!("f64 sum {d}"));
            }
            // broadcast from rank 1: both end with rank 1's values
            let mut b = [
                f(&[r as f32; 3]),
                Tensor::zeros([2], (Kind::Int64, Device::Cpu)) + g.rank() as i64,
            ];
            g.broadcast(&mut b, 1).map_err(|e| e.to_string())?;
            expect(&b[0], &[1.0, 1.0, 1.0])?;
            expect(&b[1].to_kind(Kind::Float), &[1.0, 1.0])?;
            g.barrier().map_err(|e| e.to_string())?;
            // bad inputs are typed errors, not engine exceptions
            let mut strided = [Tensor::zeros([3, 2], (Kind::Float, Device::Cpu)).tr()];
            match g.all_reduce(&mut strided, ReduceOp::Sum) {
                Err(torch_dist::Error::Tensor { index: 0, .. }) => {}
                other => return Err(format!("a transposed tensor gave {other:?}")),
            }
            if g.broadcast(&mut [f(&[1.0])], 2).is_ok() {
                return Err("broadcast from rank 2 of 2 succeeded".into());
            }
            g.barrier().map_err(|e| e.to_string())
        }
        "killed" => {
            let g = ProcessGroup::gloo(&env, SHORT).map_err(|e| e.to_string())?;
            let mut t = [f(&[1.0])];
            g.all_reduce(&mut t, ReduceOp::Sum)
                .map_err(|e| e.to_string())?;
            if g.rank() == 1 {
                std::process::abort();
            }
            let started = Instant::now();
            let mut errors = 0;
            // the peer is gone: every further collective fails within the timeout
            for _ in 0..2 {
                match g.all_reduce(&mut t, ReduceOp::Sum) {
                    Ok(()) => return Err("an all_reduce with a dead peer succeeded".into()),
                    Err(e) => {
                        eprintln!("rank 0, as expected: {e}");
                        errors += 1;
                    }
                }
            }
            let took = started.elapsed();
            if took > 2 * SHORT + Duration::from_secs(5) {
                return Err(format!("the dead peer was noticed after {took:?}"));
            }
            (errors == 2).then_some(()).ok_or("no error".into())
        }
        "alone" => {
            let started = Instant::now();
            match ProcessGroup::gloo(&env, Duration::from_secs(2)) {
                Ok(_) => Err("a rendezvous of 2 with 1 worker succeeded".into()),
                Err(
                    e @ torch_dist::Error::Engine {
                        op: "rendezvous", ..
                    },
                ) => {
                    eprintln!("as expected: {e}");
                    let took = started.elapsed();
                    (took < Duration::from_secs(20))
                        .then_some(())
                        .ok_or(format!("the rendezvous gave up after {took:?}"))
                }
                Err(e) => Err(format!("unexpected error {e}")),
            }
        }
        "nccl" => {
            let built = torch_dist::Backend::Nccl { device: 0 }.is_built();
            let gpu = tch::Cuda::is_available();
            match ProcessGroup::nccl(&env, env.local_rank, Duration::from_secs(30)) {
                // without the feature: a clear refusal naming it
                Err(torch_dist::Error::Unsupported(m)) if !built => m
                    .contains("`nccl` feature")
                    .then_some(())
                    .ok_or(format!("the refusal does not name the feature: {m}")),
                // built, but no GPU: the engine's refusal comes back as an error
                Err(e @ torch_dist::Error::Engine { .. }) if built && !gpu => {
                    eprintln!("as expected without a GPU: {e}");
                    e.to_string()
                        .contains("CUDA device")
                        .then_some(())
                        .ok_or(format!("unexpected message: {e}"))
                }
                Ok(g) if built && gpu => {
                    let cuda = Device::Cuda(env.local_rank);
                    let mut ts = [f(&[1.0, 2.0, 3.0]).to_device(cuda)];
                    g.all_reduce(&mut ts, ReduceOp::Sum)
                        .map_err(|e| e.to_string())?;
                    expect(&ts[0].to_device(Device::Cpu), &[1.0, 2.0, 3.0])?;
                    let mut avg = [f(&[4.0, -2.0]).to_device(cuda)];
                    g.all_reduce(&mut avg, ReduceOp::Avg)
                        .map_err(|e| e.to_string())?;
                    expect(&avg[0].to_device(Device::Cpu), &[4.0, -2.0])?;
                    g.broadcast(&mut ts, 0).map_err(|e| e.to_string())?;
                    g.barrier().map_err(|e| e.to_string())
                }
                other => Err(format!(
                    "NCCL (built: {built}, GPU: {gpu}) gave {:?}",
                    other.map(|g| g.backend())
                )),
            }
        }
        other => Err(format!("unknown role {other}")),
    }
}

fn expect(t: &Tensor, want: &[f32]) -> Result<(), String> {
    let got = Vec::<f32>::try_from(t.flatten(0, -1)).map_err(|e| e.to_string())?;
    (got == want)
        .then_some(())
        .ok_or(format!("got {got:?}, expected {want:?}"))
}
