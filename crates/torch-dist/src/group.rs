//! A Gloo or NCCL process group over a TCPStore rendezvous.
#![allow(unsafe_code)]

use std::ffi::{CString, c_int};
use std::ptr::NonNull;
use std::time::Duration;

use tch::Tensor;

use crate::Error;
use crate::env::DistEnv;
use crate::ffi;

/// How [`ProcessGroup::all_reduce`] combines the ranks' tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReduceOp {
    /// The element-wise sum over ranks.
    Sum,
    /// The sum divided by the world size.
    Avg,
}

/// The collective engine of a [`ProcessGroup`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `ProcessGroupGloo`: CPU tensors (and CUDA tensors through host copies).
    Gloo,
    /// `ProcessGroupNCCL` on CUDA device `device`: CUDA tensors (the `nccl` feature).
    Nccl {
        /// The CUDA device index of this worker.
        device: usize,
    },
}

impl Backend {
    /// Whether this build can create the backend (NCCL needs the `nccl` feature).
    pub fn is_built(self) -> bool {
        match self {
            Self::Gloo => true,
            Self::Nccl { .. } => cfg!(feature = "nccl"),
        }
    }
}

/// One worker's membership of a c10d process group (a `TCPStore` served by rank 0 and a
/// `ProcessGroupGloo` or `ProcessGroupNCCL`). Dropping it leaves the group.
#[derive(Debug)]
pub struct ProcessGroup {
    raw: NonNull<ffi::Group>,
    rank: usize,
    world: usize,
    timeout: Duration,
    backend: Backend,
}

// SAFETY: c10d backends are used from any thread (Python's DDP calls them from its autograd
// threads); the shim's group is only read after construction.
unsafe impl Send for ProcessGroup {}

impl ProcessGroup {
    /// Joins the rendezvous of `env` and builds a Gloo group over it. Blocks until all
    /// `env.world_size` workers have joined, at most `timeout`; the same `timeout` bounds every
    /// later collective.
    pub fn gloo(env: &DistEnv, timeout: Duration) -> Result<Self, Error> {
        Self::new(env, Backend::Gloo, timeout)
    }

    /// Joins the rendezvous of `env` and builds an NCCL group over it on CUDA device `device`
    /// (by convention `LOCAL_RANK`, or an offset plus it), which becomes the process's current
    /// device. Needs the `nccl` feature; without it, an [`Error::Unsupported`].
    pub fn nccl(env: &DistEnv, device: usize, timeout: Duration) -> Result<Self, Error> {
        Self::new(env, Backend::Nccl { device }, timeout)
    }

    /// Joins the rendezvous of `env` and builds a group of `backend` over it (see
    /// [`ProcessGroup::gloo`] and [`ProcessGroup::nccl`]).
    pub fn new(env: &DistEnv, backend: Backend, timeout: Duration) -> Result<Self, Error> {
        let engine = |message: String| Error::Engine {
            op: "rendezvous",
            rank: env.rank,
            world: env.world_size,
            message,
        };
        let addr = CString::new(env.master_addr.as_str()).map_err(|e| Error::Env {
            var: "MASTER_ADDR",
            value: env.master_addr.clone(),
            why: e.to_string(),
        })?;
        let (rank, world) = (to_c_int(env.rank)?, to_c_int(env.world_size)?);
        let port = c_int::from(env.master_port);
        let mut raw = std::ptr::null_mut();
        let err = match backend {
            Backend::Gloo => {
                let ifname = CString::new(env.ifname.clone().unwrap_or_default()).map_err(|e| {
                    Error::Env {
                        var: "GLOO_SOCKET_IFNAME",
                        value: env.ifname.clone().unwrap_or_default(),
                        why: e.to_string(),
                    }
                })?;
                // SAFETY: valid NUL-terminated strings for the duration of the call; `raw` is
                // written by the shim (null on error)
                unsafe {
                    ffi::tdist_new_gloo(
                        addr.as_ptr(),
                        port,
                        rank,
                        world,
                        millis(timeout),
                        ifname.as_ptr(),
                        &mut raw,
                    )
                }
            }
            #[cfg(feature = "nccl")]
            Backend::Nccl { device } => {
                // SAFETY: as for Gloo
                unsafe {
                    ffi::tdist_new_nccl(
                        addr.as_ptr(),
                        port,
                        rank,
                        world,
                        millis(timeout),
                        to_c_int(device)?,
                        &mut raw,
                    )
                }
            }
            #[cfg(not(feature = "nccl"))]
            Backend::Nccl { .. } => {
                return Err(Error::Unsupported(
                    "this build has no NCCL: build with the `nccl` feature of torch-dist \
                     (`sgdd`'s feature `nccl`), or use Gloo"
                        .into(),
                ));
            }
        };
        // SAFETY: the shim's error string, taken once
        if let Some(message) = unsafe { ffi::take_error(err) } {
            return Err(engine(message));
        }
        let raw = NonNull::new(raw).ok_or_else(|| engine("the shim returned no group".into()))?;
        Ok(Self {
            raw,
            rank: env.rank,
            world: env.world_size,
            timeout,
            backend,
        })
    }

    /// The backend of the group.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// This worker's rank.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// The number of workers.
    pub fn world_size(&self) -> usize {
        self.world
    }

    /// The timeout of every collective.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Replaces, in place, each tensor by its sum (or average) over the ranks. Every rank passes
    /// tensors of the same count, shapes and kinds, in the same order; reducing few large
    /// tensors is faster than many small ones (flatten them into a bucket first).
    ///
    /// # Shapes
    /// Any; each tensor dense and contiguous.
    pub fn all_reduce(&self, tensors: &mut [Tensor], op: ReduceOp) -> Result<(), Error> {
        let ptrs = checked("all_reduce", tensors)?;
        let op = match op {
            ReduceOp::Sum => 0,
            ReduceOp::Avg => 1,
        };
        // SAFETY: the group is alive; the pointers are live `at::Tensor`s borrowed mutably
        let err = unsafe {
            ffi::tdist_all_reduce(
                self.raw.as_ptr(),
                ptrs.as_ptr(),
                to_c_int(ptrs.len())?,
                op,
                millis(self.timeout),
            )
        };
        self.result("all_reduce", err)
    }

    /// Replaces, in place, each tensor by rank `root`'s.
    ///
    /// # Shapes
    /// Any; each tensor dense and contiguous, of the same shape and kind on every rank.
    pub fn broadcast(&self, tensors: &mut [Tensor], root: usize) -> Result<(), Error> {
        if root >= self.world {
            return Err(Error::Engine {
                op: "broadcast",
                rank: self.rank,
                world: self.world,
                message: format!("root {root} is not a rank"),
            });
        }
        let ptrs = checked("broadcast", tensors)?;
        // SAFETY: as in `all_reduce`
        let err = unsafe {
            ffi::tdist_broadcast(
                self.raw.as_ptr(),
                ptrs.as_ptr(),
                to_c_int(ptrs.len())?,
                to_c_int(root)?,
                millis(self.timeout),
            )
        };
        self.result("broadcast", err)
    }

    /// Returns once every rank has called it (or fails after the timeout).
    pub fn barrier(&self) -> Result<(), Error> {
        // SAFETY: the group is alive
        let err = unsafe { ffi::tdist_barrier(self.raw.as_ptr(), millis(self.timeout)) };
        self.result("barrier", err)
    }

    fn result(&self, op: &'static str, err: *mut std::ffi::c_char) -> Result<(), Error> {
        // SAFETY: the shim's error string, taken once
        match unsafe { ffi::take_error(err) } {
            None => Ok(()),
            Some(message) => Err(Error::Engine {
                op,
                rank: self.rank,
                world: self.world,
                message,
            }),
        }
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        // SAFETY: created by `tdist_new_gloo` or `tdist_new_nccl`, freed once
        unsafe { ffi::tdist_free(self.raw.as_ptr()) }
    }
}

fn checked(
    op: &'static str,
    tensors: &mut [Tensor],
) -> Result<Vec<*mut torch_sys::C_tensor>, Error> {
    let mut device = None;
    tensors
        .iter_mut()
        .enumerate()
        .map(|(index, t)| {
            let why = |why: String| Error::Tensor { op, index, why };
            if !t.defined() {
                return Err(why("undefined".into()));
            }
            if !t.is_contiguous() {
                return Err(why("not contiguous".into()));
            }
            if t.is_sparse() {
                return Err(why("sparse".into()));
            }
            let d = t.device();
            if *device.get_or_insert(d) != d {
                return Err(why(format!("on {d:?}, the first tensor on {device:?}")));
            }
            Ok(t.as_mut_ptr())
        })
        .collect()
}

fn to_c_int(v: usize) -> Result<c_int, Error> {
    c_int::try_from(v).map_err(|_| Error::Launch(format!("{v} does not fit a C int")))
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX).max(1)
}
