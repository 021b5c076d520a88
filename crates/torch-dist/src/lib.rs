//! Data-parallel collectives on libtorch's own c10d (SPEC §8).
//!
//! tch binds no c10d, but the wheel's `libtorch_cpu.so` carries PyTorch's distributed engine.
//! This crate reaches it through a small C++ shim (`shim/dist.cpp`, compiled by `build.rs`
//! against the wheel's headers) and gives it a safe face:
//!
//! * [`DistEnv`]: the rendezvous a launcher describes in the torchrun environment variables
//!   (`MASTER_ADDR`, `MASTER_PORT`, `RANK`, `WORLD_SIZE`, `LOCAL_RANK`), so torchrun, SLURM's
//!   srun (with those variables exported) and [`LocalLaunch`] all start workers the same way;
//! * [`ProcessGroup`]: a `c10d::TCPStore` served by rank 0 and a `c10d::ProcessGroupGloo` over
//!   it, with [`ProcessGroup::all_reduce`] (sum or average), [`ProcessGroup::broadcast`] and
//!   [`ProcessGroup::barrier`]. Every collective is waited on with the group's timeout; an
//!   exception of the engine (a peer that died, a timeout, a tensor it refuses) comes back as an
//!   [`Error`], never as an unwind or a hang.
//!
//! The reductions are the engine's: nothing here adds numbers across processes itself (the
//! average is the engine's sum divided by the world size, as Gloo has no `AVG`).
//!
//! # Backends
//! Gloo reduces CPU tensors, and CUDA tensors through host copies (the wheel is a CUDA build).
//! NCCL ([`ProcessGroup::nccl`], `ProcessGroupNCCL` in `libtorch_cuda.so`) reduces CUDA tensors
//! on the GPUs; it is built with the `nccl` feature, which compiles its part of the shim against
//! the CUDA and NCCL headers of the wheel's companion packages (`nvidia-nccl-cu13`, a dependency
//! of the torch wheel, and `nvidia-cuda-crt` / `nvidia-cuda-cccl`, which `cargo xtask setup`
//! installs). Without the feature, asking for NCCL is an [`Error::Unsupported`].
//!
//! # Example
//! ```no_run
//! # fn main() -> Result<(), torch_dist::Error> {
//! use std::time::Duration;
//! if let Some(env) = torch_dist::DistEnv::from_env()? {
//!     let group = torch_dist::ProcessGroup::gloo(&env, Duration::from_secs(60))?;
//!     let mut grads = [tch::Tensor::ones([4], (tch::Kind::Float, tch::Device::Cpu))];
//!     group.all_reduce(&mut grads, torch_dist::ReduceOp::Avg)?;
//! }
//! # Ok(())
//! # }
//! ```

mod env;
mod ffi;
mod group;
mod launch;

pub use env::DistEnv;
pub use group::{Backend, ProcessGroup, ReduceOp};
pub use launch::{Exit, LocalLaunch, free_port};

/// What can go wrong in a rendezvous or a collective.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A launcher variable is missing or malformed.
    #[error("environment variable {var} = {value:?}: {why}")]
    Env {
        /// The variable (`RANK`, ...).
        var: &'static str,
        /// Its value (empty when missing).
        value: String,
        /// What is wrong with it.
        why: String,
    },
    /// The engine (c10d, Gloo) raised an exception.
    #[error("rank {rank} of {world}: c10d {op} failed: {message}")]
    Engine {
        /// `rendezvous`, `all_reduce`, `broadcast` or `barrier`.
        op: &'static str,
        /// This process's rank.
        rank: usize,
        /// The world size.
        world: usize,
        /// The engine's message (a dead peer, a timeout, ...).
        message: String,
    },
    /// A tensor handed to a collective cannot take part in it.
    #[error("{op}: tensor {index}: {why}")]
    Tensor {
        /// The collective.
        op: &'static str,
        /// Position in the slice handed over.
        index: usize,
        /// What is wrong (undefined, not contiguous, ...).
        why: String,
    },
    /// Launching local workers failed.
    #[error("{0}")]
    Launch(String),
    /// What this build cannot do (NCCL without the `nccl` feature).
    #[error("{0}")]
    Unsupported(String),
}
