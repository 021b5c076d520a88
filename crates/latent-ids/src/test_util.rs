//! Test fixtures: explicit seeded tensors and the lock on libtorch's global generator.
//!
//! Cargo runs a binary's tests on parallel threads of one process, and libtorch has one global
//! generator per process, drawn by every model initialisation. Test inputs therefore come from
//! explicit ChaCha streams ([`Draws`]); a test that builds a model holds [`model_lock`], which
//! seeds the global generator and keeps other model-building tests out until it is done.

use std::sync::{Mutex, MutexGuard, PoisonError};

use rand_chacha::ChaCha8Rng;
use tch::{Device, Kind, Tensor};

use crate::random::{normal, seeded_rng};

pub(crate) const F64: (Kind, Device) = (Kind::Double, Device::Cpu);

static GLOBAL_RNG: Mutex<()> = Mutex::new(());

/// Exclusive use of libtorch's global generator, seeded with `seed`.
pub(crate) fn model_lock(seed: i64) -> MutexGuard<'static, ()> {
    let g = GLOBAL_RNG.lock().unwrap_or_else(PoisonError::into_inner);
    tch::manual_seed(seed);
    g
}

/// A seeded stream of standard-normal float64 tensors.
#[derive(Debug)]
pub(crate) struct Draws(ChaCha8Rng);

impl Draws {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seeded_rng(seed, 0))
    }

    pub(crate) fn normal(&mut self, shape: &[i64]) -> Tensor {
        normal(&mut self.0, shape, F64)
    }
}
