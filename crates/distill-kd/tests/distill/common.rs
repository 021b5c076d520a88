//! Shared test helpers that need no libtorch: seeded random numbers and matrices.

use distill_kd::{DftSplitter, DftSplitterConfig, FreqMask};
use faer::Mat;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// `n` seeded f64 values uniform in [-1, 1).
pub fn rand_vec(seed: u64, n: usize) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.random::<f64>() * 2.0 - 1.0).collect()
}

/// A seeded `[rows, cols]` matrix with entries uniform in [-1, 1), filled row by row: the same
/// values as the tensor `rand_f64(seed, &[rows, cols])` of the tch tests.
pub fn rand_mat(seed: u64, rows: usize, cols: usize) -> Mat<f64> {
    let v = rand_vec(seed, rows * cols);
    Mat::from_fn(rows, cols, |i, j| v[i * cols + j])
}

/// `max |a − b|` over two matrices of the same shape (0 when empty).
pub fn max_abs_diff_mat(a: &Mat<f64>, b: &Mat<f64>) -> f64 {
    assert_eq!(
        (a.nrows(), a.ncols()),
        (b.nrows(), b.ncols()),
        "shapes differ"
    );
    (0..a.ncols())
        .flat_map(|j| (0..a.nrows()).map(move |i| (i, j)))
        .map(|(i, j)| (a[(i, j)] - b[(i, j)]).abs())
        .fold(0.0, f64::max)
}

/// A validated DFT splitter over `dims` with `cutoffs`.
pub fn dft_splitter(dims: &[i64], cutoffs: &[usize], mask: FreqMask) -> DftSplitter {
    DftSplitterConfig {
        dims: dims.to_vec(),
        cutoffs: cutoffs.to_vec(),
        mask,
    }
    .check()
    .unwrap()
}
