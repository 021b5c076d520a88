//! Integration tests of `distill-kd`, one module per area, in one binary (one libtorch link).
//!
//! The modules of the pure half (the A2D QP, ridge on faer, the teacher-forcing schedule, the DFT
//! band definition) also run without the `tch` feature:
//! `cargo test -p distill-kd --no-default-features`.

mod a2d;
mod common;
mod dft_bands;
mod ridge;
mod schedule;

#[cfg(feature = "tch")]
mod a2d_step;
#[cfg(feature = "tch")]
mod align;
#[cfg(feature = "tch")]
mod aml;
#[cfg(feature = "tch")]
mod bands;
#[cfg(feature = "tch")]
mod ridge_tensor;
#[cfg(feature = "tch")]
mod tensors;
