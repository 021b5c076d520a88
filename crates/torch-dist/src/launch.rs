//! Local workers: `N` copies of a command on this machine, each with its torchrun variables.

use std::net::TcpListener;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use crate::{DistEnv, Error};

/// A free TCP port on 127.0.0.1 for a rendezvous (asked of the kernel; a race with another
/// program that takes it before rank 0 binds it is possible but rare).
pub fn free_port() -> Result<u16, Error> {
    let l = TcpListener::bind(("127.0.0.1", 0))
        .map_err(|e| Error::Launch(format!("no free port on 127.0.0.1: {e}")))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| Error::Launch(format!("no free port on 127.0.0.1: {e}")))
}

/// How local workers ended.
#[derive(Debug, Clone)]
pub struct Exit {
    /// Each rank's exit status.
    pub status: Vec<ExitStatus>,
    /// The rank that failed first, if one did.
    pub first_failure: Option<usize>,
}

impl Exit {
    /// `Ok` when every worker succeeded, else an error naming the rank that failed first.
    pub fn success(&self) -> Result<(), Error> {
        match self.first_failure {
            None => Ok(()),
            Some(r) => Err(Error::Launch(format!(
                "worker {r} of {} failed first ({})",
                self.status.len(),
                self.status[r]
            ))),
        }
    }
}

/// `world_size` local workers started from one command, rank `r` with the torchrun variables
/// of a rendezvous at `127.0.0.1` on a free port.
#[derive(Debug)]
pub struct LocalLaunch {
    children: Vec<Child>,
}

impl LocalLaunch {
    /// Starts `world_size` workers: `make(rank)` builds each command, to which the variables of
    /// [`DistEnv::vars`] are added.
    pub fn spawn(world_size: usize, mut make: impl FnMut(usize) -> Command) -> Result<Self, Error> {
        if world_size == 0 {
            return Err(Error::Launch("cannot launch 0 workers".into()));
        }
        let port = free_port()?;
        let mut launch = Self {
            children: Vec::with_capacity(world_size),
        };
        for rank in 0..world_size {
            let env = DistEnv {
                master_addr: "127.0.0.1".into(),
                master_port: port,
                rank,
                world_size,
                local_rank: rank,
                ifname: None,
            };
            let mut cmd = make(rank);
            cmd.envs(env.vars());
            match cmd.spawn() {
                Ok(c) => launch.children.push(c),
                Err(e) => {
                    launch.kill();
                    return Err(Error::Launch(format!("starting worker {rank}: {e}")));
                }
            }
        }
        Ok(launch)
    }

    /// Waits for every worker, at most `deadline` (then kills them all and fails). When one
    /// fails, the others are given `grace` to end on their own (a collective with a dead peer
    /// errors) and are then killed.
    pub fn wait(mut self, deadline: Duration, grace: Duration) -> Result<Exit, Error> {
        let started = Instant::now();
        let mut status: Vec<Option<ExitStatus>> = vec![None; self.children.len()];
        let mut first_failure: Option<(usize, Instant)> = None;
        loop {
            for (rank, c) in self.children.iter_mut().enumerate() {
                if status[rank].is_none()
                    && let Some(s) = c
                        .try_wait()
                        .map_err(|e| Error::Launch(format!("waiting for worker {rank}: {e}")))?
                {
                    status[rank] = Some(s);
                    if !s.success() && first_failure.is_none() {
                        first_failure = Some((rank, Instant::now()));
                    }
                }
            }
            if status.iter().all(Option::is_some) {
                break;
            }
            if started.elapsed() > deadline {
                self.kill();
                return Err(Error::Launch(format!(
                    "the workers did not finish within {deadline:?}: killed"
                )));
            }
            if first_failure.is_some_and(|(_, t)| t.elapsed() > grace) {
                for (rank, c) in self.children.iter_mut().enumerate() {
                    if status[rank].is_none() {
                        let _ = c.kill();
                        status[rank] = Some(c.wait().map_err(|e| {
                            Error::Launch(format!("waiting for worker {rank}: {e}"))
                        })?);
                    }
                }
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Exit {
            status: status.into_iter().flatten().collect(),
            first_failure: first_failure.map(|(r, _)| r),
        })
    }

    /// Kills every worker still running.
    pub fn kill(&mut self) {
        for c in &mut self.children {
            if c.try_wait().ok().flatten().is_none() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }

    /// Kills worker `rank` (a crash, for tests of what the others do), if it is running.
    pub fn kill_rank(&mut self, rank: usize) -> Result<(), Error> {
        let c = self
            .children
            .get_mut(rank)
            .ok_or_else(|| Error::Launch(format!("no worker {rank}")))?;
        if c.try_wait().ok().flatten().is_none() {
            c.kill()
                .map_err(|e| Error::Launch(format!("killing worker {rank}: {e}")))?;
        }
        Ok(())
    }

    /// The workers' process ids, by rank.
    pub fn ids(&self) -> Vec<u32> {
        self.children.iter().map(Child::id).collect()
    }
}

impl Drop for LocalLaunch {
    fn drop(&mut self) {
        self.kill();
    }
}
