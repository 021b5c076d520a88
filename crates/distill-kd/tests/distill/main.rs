//! Integration tests of `distill-kd`, one module per area, in one binary (one libtorch link).

mod a2d;
mod align;
mod bands;
mod common;
mod ridge;
