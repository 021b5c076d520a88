//! Shared tch test helpers: seeded random tensors and small graph bases built independently of the
//! crate (tch `linalg_eigh` of path/cycle Laplacians).
//!
//! Every random tensor comes from an explicit ChaCha stream ([`rand_f64`]), never from libtorch's
//! global generator, so the tests stay independent when cargo runs them on parallel threads.

use tch::{Kind, Tensor};

use crate::common::rand_vec;

/// A seeded `[shape]` f64 tensor with entries uniform in [-1, 1) (row-major `rand_vec`).
pub fn rand_f64(seed: u64, shape: &[i64]) -> Tensor {
    let n: i64 = shape.iter().product();
    Tensor::from_slice(&rand_vec(seed, n as usize)).view(shape)
}

/// Normalised Laplacian `I − D^{-1/2} A D^{-1/2}` of an adjacency matrix (f64).
fn normalised_laplacian(adj: &Tensor) -> Tensor {
    let n = adj.size()[0];
    let deg = adj.sum_dim_intlist([1i64].as_slice(), false, Kind::Double);
    let inv_sqrt = deg.pow_tensor_scalar(-0.5);
    Tensor::eye(n, (Kind::Double, tch::Device::Cpu))
        - inv_sqrt.unsqueeze(1) * adj * inv_sqrt.unsqueeze(0)
}

/// Eigenpairs (ascending) of the normalised Laplacian of the path graph on `n ≥ 2` nodes.
pub fn path_basis(n: i64) -> (Tensor, Tensor) {
    let mut a = vec![0f64; (n * n) as usize];
    for i in 0..n - 1 {
        a[(i * n + i + 1) as usize] = 1.0;
        a[((i + 1) * n + i) as usize] = 1.0;
    }
    normalised_laplacian(&Tensor::from_slice(&a).view([n, n])).linalg_eigh("L")
}

/// Eigenpairs (ascending) of the normalised Laplacian of the cycle on `n ≥ 3` nodes plus one chord
/// (0, n/2): degenerate-free enough and not a path.
pub fn chorded_cycle_basis(n: i64) -> (Tensor, Tensor) {
    let mut a = vec![0f64; (n * n) as usize];
    let mut link = |i: i64, j: i64| {
        a[(i * n + j) as usize] = 1.0;
        a[(j * n + i) as usize] = 1.0;
    };
    for i in 0..n {
        link(i, (i + 1) % n);
    }
    link(0, n / 2);
    normalised_laplacian(&Tensor::from_slice(&a).view([n, n])).linalg_eigh("L")
}

/// The `k` pairs `(j, i)` of smallest `μ = λ_t,j + λ_s,i`, ties by `(j, i)` (SPEC §4.2).
pub fn smallest_pairs(lambda_t: &Tensor, lambda_s: &Tensor, k: usize) -> Vec<(usize, usize)> {
    let lt: Vec<f64> = Vec::try_from(lambda_t).unwrap();
    let ls: Vec<f64> = Vec::try_from(lambda_s).unwrap();
    let mut all: Vec<(f64, usize, usize)> = (0..lt.len())
        .flat_map(|j| (0..ls.len()).map(move |i| (j, i)))
        .map(|(j, i)| (lt[j] + ls[i], j, i))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    all.into_iter().take(k).map(|(_, j, i)| (j, i)).collect()
}

/// The materialised `B_K ∈ R^{TN×K}`: column `k` is `u_t,j ⊗ u_s,i` (index `t·N + n`).
pub fn materialised_basis(u_t: &Tensor, u_s: &Tensor, pairs: &[(usize, usize)]) -> Tensor {
    let cols: Vec<Tensor> = pairs
        .iter()
        .map(|&(j, i)| {
            let a = u_t.select(1, j as i64);
            let b = u_s.select(1, i as i64);
            a.unsqueeze(1).matmul(&b.unsqueeze(0)).reshape([-1])
        })
        .collect();
    if cols.is_empty() {
        return Tensor::zeros(
            [u_t.size()[0] * u_s.size()[0], 0],
            (u_t.kind(), u_t.device()),
        );
    }
    Tensor::stack(&cols, 1)
}

/// `max |a − b|`.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size(), "shapes differ");
    if a.numel() == 0 {
        return 0.0;
    }
    (a - b).abs().max().double_value(&[])
}

/// A scalar tensor's value.
pub fn scalar(t: &Tensor) -> f64 {
    t.double_value(&[])
}
