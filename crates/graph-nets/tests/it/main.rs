//! Integration tests of graph-nets, in one binary (each test binary links libtorch, which is slow).
//! All models are tiny and most run in float64 so tolerances can be tight; each test states its own.

mod common;
mod equivariance;
mod gfnode;
mod golden;
mod inputs;
mod structure;
mod training;
