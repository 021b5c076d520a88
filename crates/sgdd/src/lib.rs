//! Spectral-Guided Dynamics Distillation (SGDD): the app crate behind the `sgdd` CLI.

mod device;

pub use device::DeviceChoice;
