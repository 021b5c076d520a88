//! Readers (and, where tests need them, writers) for foreign file formats.

pub mod asf_amc;
pub mod dcd;
pub mod md17;
pub mod npz;
pub mod psf;
