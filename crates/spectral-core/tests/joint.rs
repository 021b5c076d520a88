//! Joint basis selection, the Kronecker identity, and the factored kernels against the
//! materialised `B_K` (sizes including N = 1, T = 1, K = 0 and K = NT), on f32 and f64.

use faer::Mat;
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use spectral_core::{
    EigenPairs, Error, Float, Graph, JointBasis, JointBasisConfig, Laplacian, LaplacianKind,
    ModePair, PartialEigenConfig, SpatialSolver, band_energy, joint_laplacian_dense, suggest_k,
    uniform_band_edges,
};

fn random_graph(n: usize, p: f64, seed: u64) -> Graph {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut edges = Vec::new();
    for i in 0..n {
        for j in i + 1..n {
            if rng.random::<f64>() < p {
                edges.push((i, j));
            }
        }
    }
    Graph::from_edges(n, &edges).unwrap()
}

fn basis(n: usize, t: usize, k: usize, seed: u64) -> JointBasis {
    let g = random_graph(n, 0.35, seed);
    JointBasis::from_graph(&g, t, &JointBasisConfig::new(k)).unwrap()
}

fn signal<T: Float>(len: usize, seed: u64) -> Vec<T> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..len)
        .map(|_| T::from_f64(rng.random_range(-1.0..1.0)))
        .collect()
}

fn max_diff<T: Float>(a: &[T], b: &[T]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(&x, &y)| (x.to_f64() - y.to_f64()).abs())
        .fold(0.0, f64::max)
}

/// Eigenpairs with the given (ascending) values and identity vectors — for selection tests.
fn pairs_with_values(values: &[f64], dim: usize) -> EigenPairs {
    EigenPairs::new(values.to_vec(), Mat::identity(dim, values.len())).unwrap()
}

fn brute_force_selection(ls: &[f64], lt: &[f64], k: usize) -> Vec<(f64, usize, usize)> {
    let mut all: Vec<(f64, usize, usize)> = lt
        .iter()
        .enumerate()
        .flat_map(|(j, &a)| ls.iter().enumerate().map(move |(i, &b)| (a + b, j, i)))
        .collect();
    all.sort_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)).then(x.2.cmp(&y.2)));
    all.truncate(k);
    all
}

#[test]
fn ties_are_broken_by_mu_then_temporal_then_spatial() {
    let ls = pairs_with_values(&[0.0, 0.5, 0.5, 1.0], 4);
    let lt = pairs_with_values(&[0.0, 0.5], 2);
    let b = JointBasis::new(&ls, &lt, 8).unwrap();
    let got: Vec<(usize, usize)> = b.pairs().iter().map(|p| (p.temporal, p.spatial)).collect();
    assert_eq!(
        got,
        vec![
            (0, 0),
            (0, 1),
            (0, 2),
            (1, 0),
            (0, 3),
            (1, 1),
            (1, 2),
            (1, 3)
        ]
    );
    assert_eq!(b.eigenvalues(), &[0.0, 0.5, 0.5, 0.5, 1.0, 1.0, 1.0, 1.5]);
    assert_eq!(b.spatial_modes_per_temporal(), &[4, 4]);
    assert_eq!(
        b.pair_indices(),
        (vec![0, 0, 0, 1, 0, 1, 1, 1], vec![0, 1, 2, 0, 3, 1, 2, 3])
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The heap merge selects exactly what sorting all N·T pairs by (μ, j, i) selects — with
    /// values drawn from a small set so ties are frequent — and partial eigenpairs
    /// (min(K, N) spatial, min(K, T) temporal) give the same selection.
    #[test]
    fn selection_matches_brute_force(
        ls in prop::collection::vec(0u8..6, 1..12),
        lt in prop::collection::vec(0u8..6, 1..6),
        k_frac in 0.0f64..=1.0,
    ) {
        let mut ls: Vec<f64> = ls.into_iter().map(|x| x as f64 * 0.25).collect();
        let mut lt: Vec<f64> = lt.into_iter().map(|x| x as f64 * 0.25).collect();
        ls.sort_by(f64::total_cmp);
        lt.sort_by(f64::total_cmp);
        let (n, t) = (ls.len(), lt.len());
        let k = ((n * t) as f64 * k_frac).round() as usize;
        let full = JointBasis::new(&pairs_with_values(&ls, n), &pairs_with_values(&lt, t), k).unwrap();
        let expect = brute_force_selection(&ls, &lt, k);
        let got: Vec<(f64, usize, usize)> = full
            .pairs()
            .iter()
            .zip(full.eigenvalues())
            .map(|(p, &mu)| (mu, p.temporal, p.spatial))
            .collect();
        prop_assert_eq!(&got, &expect);
        let part = JointBasis::new(
            &pairs_with_values(&ls[..k.min(n)], n),
            &pairs_with_values(&lt[..k.min(t)], t),
            k,
        )
        .unwrap();
        prop_assert_eq!(part.pairs(), full.pairs());
        // Staircase: j_max and i_max are what the pairs touch.
        let j_max = full.pairs().iter().map(|p| p.temporal + 1).max().unwrap_or(0);
        let i_max = full.pairs().iter().map(|p| p.spatial + 1).max().unwrap_or(0);
        prop_assert_eq!(full.n_temporal_modes(), j_max);
        prop_assert_eq!(full.n_spatial_modes(), i_max);
    }
}

#[test]
fn too_few_supplied_modes_is_an_error_only_when_needed() {
    let ls = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5];
    let lt = [0.0, 0.05];
    // K = 3 is (0,0) (1,0) (0,1): two spatial modes decide it.
    let two = pairs_with_values(&ls[..2], 6);
    let t = pairs_with_values(&lt, 2);
    assert!(JointBasis::new(&two, &t, 3).is_ok());
    // K = 4 is (1,1) at μ = 0.15 unless λ_s,2 < 0.15: undecidable from two modes, and the error
    // says so; three modes decide K = 5.
    let err = JointBasis::new(&two, &t, 4).unwrap_err();
    assert!(
        matches!(
            err,
            Error::InsufficientModes {
                axis: "spatial",
                available: 2,
                total: 6,
                ..
            }
        ),
        "{err}"
    );
    let three = pairs_with_values(&ls[..3], 6);
    let b = JointBasis::new(&three, &t, 5).unwrap();
    assert_eq!(b.pair_indices(), (vec![0, 1, 0, 1, 0], vec![0, 0, 1, 1, 2]));
    // Temporal modes missing.
    let one_t = pairs_with_values(&lt[..1], 2);
    let six = pairs_with_values(&ls, 6);
    assert!(matches!(
        JointBasis::new(&six, &one_t, 2),
        Err(Error::InsufficientModes {
            axis: "temporal",
            ..
        })
    ));
    assert!(JointBasis::new(&six, &one_t, 1).is_ok());
    assert!(matches!(
        JointBasis::new(&six, &t, 13),
        Err(Error::InvalidParameter { name: "K", .. })
    ));
}

/// `B_K` columns are eigenvectors of `L_t ⊗ I + I ⊗ L_s` with eigenvalue `λ_t + λ_s`, and
/// orthonormal — for both Laplacian kinds, including disconnected graphs and T = 1.
#[test]
fn kronecker_identity() {
    for (n, t, seed) in [(7usize, 4usize, 1u64), (1, 5, 2), (9, 1, 3), (12, 3, 4)] {
        for kind in [LaplacianKind::Normalized, LaplacianKind::Combinatorial] {
            let g = random_graph(n, 0.25, seed);
            let (ls, lt) = (Laplacian::new(&g, kind), Laplacian::temporal_path(t, kind));
            let b = JointBasis::from_laplacians(&ls, &lt, n * t, SpatialSolver::Dense).unwrap();
            let bk = b.materialise::<f64>();
            let m = bk.matrix();
            let l = joint_laplacian_dense(&lt, &ls);
            let lb = &l * m;
            for (k, &mu) in b.eigenvalues().iter().enumerate() {
                for r in 0..n * t {
                    assert!(
                        (lb[(r, k)] - mu * m[(r, k)]).abs() < 1e-12,
                        "n={n} t={t} {kind:?} k={k}"
                    );
                }
            }
            let gram = m.transpose() * m;
            for i in 0..n * t {
                for j in 0..n * t {
                    let e = if i == j { 1.0 } else { 0.0 };
                    assert!((gram[(i, j)] - e).abs() < 1e-12);
                }
            }
            // The joint eigenvalues are exactly the dense joint spectrum.
            let joint = spectral_core::self_adjoint_eigen(l.as_ref(), faer::Par::Seq).unwrap();
            for (a, b) in joint.values().iter().zip(b.eigenvalues()) {
                assert!((a - b).abs() < 1e-12);
            }
        }
    }
}

fn check_against_materialised<T: Float>(
    n: usize,
    t: usize,
    k: usize,
    d: usize,
    batch: usize,
    seed: u64,
    tol: f64,
) {
    let b = basis(n, t, k, seed);
    let m = b.materialise::<T>();
    let z = signal::<T>(batch * t * n * d, seed ^ 0xabc);
    let a = b.project(&z, batch, d);
    let ctx = format!("n={n} t={t} k={k} d={d} batch={batch}");
    assert!(
        max_diff(&a, &m.project(&z, batch, d)) < tol,
        "project {ctx}"
    );
    let coeffs = signal::<T>(batch * k * d, seed ^ 0xdef);
    assert!(
        max_diff(
            &b.reconstruct(&coeffs, batch, d),
            &m.reconstruct(&coeffs, batch, d)
        ) < tol,
        "reconstruct {ctx}"
    );
    let r = b.residual(&z, batch, d);
    assert!(
        max_diff(&r, &m.residual(&z, batch, d)) < tol,
        "residual {ctx}"
    );
    // P = B Bᵀ is an orthogonal projector: Bᵀ B = I, (I − P)² = I − P, Bᵀ (I − P) = 0.
    assert!(
        max_diff(
            &b.project(&b.reconstruct(&coeffs, batch, d), batch, d),
            &coeffs
        ) < tol,
        "BᵀB = I {ctx}"
    );
    assert!(
        max_diff(&b.residual(&r, batch, d), &r) < tol,
        "idempotent {ctx}"
    );
    assert!(
        b.project(&r, batch, d)
            .iter()
            .all(|x| x.to_f64().abs() < tol),
        "Bᵀ(I−P) = 0 {ctx}"
    );
    // SGE with w = 1 is the identity; with random w it matches the materialised formula.
    let ones = vec![T::one(); k];
    let out = b.sge_forward(&z, &ones, batch, d);
    assert!(max_diff(&out.z_sg, &z) < tol, "sge identity {ctx}");
    assert!(max_diff(&out.a_tilde, &a) < tol, "sge ã at w = 1 {ctx}");
    let w = signal::<T>(k, seed ^ 0x123);
    let out = b.sge_forward(&z, &w, batch, d);
    let ma = m.project(&z, batch, d);
    let mut a_tilde = ma.clone();
    let mut scaled = ma.clone();
    for (idx, (x, y)) in a_tilde.iter_mut().zip(scaled.iter_mut()).enumerate() {
        let wk = w[(idx / d) % k];
        *x *= wk;
        *y *= wk;
    }
    let expect_zsg: Vec<T> = m
        .reconstruct(&scaled, batch, d)
        .iter()
        .zip(m.residual(&z, batch, d))
        .map(|(&p, q)| p + q)
        .collect();
    assert!(max_diff(&out.z_sg, &expect_zsg) < tol, "sge z_sg {ctx}");
    assert!(max_diff(&out.a_tilde, &a_tilde) < tol, "sge ã {ctx}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]

    #[test]
    fn factored_equals_materialised_f64(
        n in 1usize..10, t in 1usize..6, k_frac in 0.0f64..=1.0,
        d in 1usize..4, batch in 1usize..4, seed in any::<u64>(),
    ) {
        let k = ((n * t) as f64 * k_frac).round() as usize;
        check_against_materialised::<f64>(n, t, k, d, batch, seed, 1e-12);
    }

    #[test]
    fn factored_equals_materialised_f32(
        n in 1usize..10, t in 1usize..6, k_frac in 0.0f64..=1.0,
        d in 1usize..4, batch in 1usize..4, seed in any::<u64>(),
    ) {
        let k = ((n * t) as f64 * k_frac).round() as usize;
        check_against_materialised::<f32>(n, t, k, d, batch, seed, 2e-5);
    }
}

#[test]
fn corner_sizes() {
    // N = 1, T = 1, K ∈ {0, NT}, and a mid-size case with more channels.
    for (n, t, k, d, batch) in [
        (1, 1, 1, 1, 1),
        (1, 1, 0, 2, 2),
        (1, 7, 7, 3, 2),
        (8, 1, 8, 2, 1),
        (8, 1, 3, 2, 3),
        (30, 6, 180, 5, 2),
        (30, 6, 40, 8, 1),
    ] {
        check_against_materialised::<f64>(n, t, k, d, batch, 42, 1e-11);
        check_against_materialised::<f32>(n, t, k, d, batch, 42, 5e-5);
    }
}

/// Loss `ℓ = ⟨G, z^sg⟩ + ⟨H, ã⟩` is affine in z (fixed w) and in w (fixed z), so the adjoint's
/// gradients must predict finite differences exactly (up to rounding) for any step.
#[test]
fn sge_backward_is_the_adjoint() {
    for (n, t, k, d, batch) in [
        (6usize, 4usize, 10usize, 3usize, 2usize),
        (1, 3, 2, 2, 1),
        (9, 2, 18, 1, 3),
    ] {
        let b = basis(n, t, k, 7);
        let z = signal::<f64>(batch * t * n * d, 1);
        let w = signal::<f64>(k, 2);
        let g = signal::<f64>(batch * t * n * d, 3);
        let h = signal::<f64>(batch * k * d, 4);
        let loss = |z: &[f64], w: &[f64]| {
            let o = b.sge_forward(z, w, batch, d);
            o.z_sg.iter().zip(&g).map(|(x, y)| x * y).sum::<f64>()
                + o.a_tilde.iter().zip(&h).map(|(x, y)| x * y).sum::<f64>()
        };
        let fwd = b.sge_forward(&z, &w, batch, d);
        let grad = b.sge_backward(&fwd.a, &w, &g, &h, batch, d);
        let base = loss(&z, &w);
        let v = signal::<f64>(z.len(), 5);
        let zv: Vec<f64> = z.iter().zip(&v).map(|(a, b)| a + b).collect();
        let predicted: f64 = grad.z.iter().zip(&v).map(|(a, b)| a * b).sum();
        assert!((loss(&zv, &w) - base - predicted).abs() < 1e-10 * (1.0 + predicted.abs()));
        let u = signal::<f64>(k, 6);
        let wu: Vec<f64> = w.iter().zip(&u).map(|(a, b)| a + b).collect();
        let predicted: f64 = grad.w.iter().zip(&u).map(|(a, b)| a * b).sum();
        assert!((loss(&z, &wu) - base - predicted).abs() < 1e-10 * (1.0 + predicted.abs()));
        // f32 agrees with f64.
        let cast = |x: &[f64]| x.iter().map(|&v| v as f32).collect::<Vec<f32>>();
        let fwd32 = b.sge_forward(&cast(&z), &cast(&w), batch, d);
        let grad32 = b.sge_backward(&fwd32.a, &cast(&w), &cast(&g), &cast(&h), batch, d);
        assert!(max_diff(&cast(&grad.z), &grad32.z) < 1e-4);
        assert!(max_diff(&cast(&grad.w), &grad32.w) < 1e-4);
    }
}

#[test]
fn batches_equal_single_samples_and_runs_are_bitwise_reproducible() {
    let b = basis(40, 5, 60, 11);
    let d = 4;
    let z = signal::<f32>(3 * 5 * 40 * d, 9);
    let all = b.project(&z, 3, d);
    for s in 0..3 {
        let one = b.project(&z[s * 800..(s + 1) * 800], 1, d);
        assert!(max_diff(&one, &all[s * 60 * d..(s + 1) * 60 * d]) < 1e-6);
    }
    assert_eq!(all, b.project(&z, 3, d));
    let again = basis(40, 5, 60, 11);
    assert_eq!(again.pairs(), b.pairs());
    assert_eq!(again.spatial_modes(), b.spatial_modes());
    assert_eq!(
        again.spatial_modes_row_major::<f32>(),
        b.spatial_modes_row_major::<f32>()
    );
}

#[test]
fn row_major_factors_and_memory_accounting() {
    let b = basis(12, 4, 20, 5);
    let us = b.spatial_modes_row_major::<f32>();
    let ut = b.temporal_modes_row_major::<f64>();
    let (im, jm) = (b.n_spatial_modes(), b.n_temporal_modes());
    assert_eq!(us.len(), 12 * im);
    assert_eq!(us[im + 1], b.spatial_modes()[(1, 1)] as f32);
    assert_eq!(ut[jm * 3], b.temporal_modes()[(3, 0)]);
    assert_eq!(b.factored_bytes::<f32>(), (12 * im + 4 * jm) * 4);
    assert_eq!(b.materialised_bytes::<f64>(), 12 * 4 * 20 * 8);
    assert_eq!(b.spatial_eigenvalues().len(), im);
    assert_eq!(b.temporal_eigenvalues().len(), jm);
    let first = b.pairs()[0];
    assert_eq!(
        first,
        ModePair {
            temporal: 0,
            spatial: 0
        }
    );
}

#[test]
#[should_panic(expected = "project: `z` has 10 elements")]
fn kernels_panic_on_wrong_shapes() {
    let b = basis(4, 2, 3, 1);
    let _ = b.project(&[0.0f64; 10], 1, 1);
}

#[test]
fn partial_and_dense_spatial_solvers_give_the_same_basis() {
    // A 3-D contact graph big enough for the iterative path.
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let pts: Vec<[f64; 3]> = (0..400)
        .map(|_| [rng.random(), rng.random(), rng.random()])
        .collect();
    let g = Graph::radius(&pts, 0.28).unwrap();
    let (ls, lt) = (
        Laplacian::normalized(&g),
        Laplacian::temporal_path(4, LaplacianKind::Normalized),
    );
    let dense = JointBasis::from_laplacians(&ls, &lt, 24, SpatialSolver::Dense).unwrap();
    let part = JointBasis::from_laplacians(
        &ls,
        &lt,
        24,
        SpatialSolver::Partial(PartialEigenConfig::default()),
    )
    .unwrap();
    assert_eq!(dense.pairs(), part.pairs());
    for (a, b) in dense.eigenvalues().iter().zip(part.eigenvalues()) {
        assert!((a - b).abs() < 1e-8);
    }
    let (u, v) = (dense.spatial_modes(), part.spatial_modes());
    for c in 0..u.ncols() {
        for r in 0..u.nrows() {
            assert!((u[(r, c)] - v[(r, c)]).abs() < 1e-5, "mode {c} row {r}");
        }
    }
}

#[test]
fn band_energy_partitions_the_energy() {
    let b = basis(10, 4, 25, 3);
    let d = 2;
    let z = signal::<f64>(2 * 4 * 10 * d, 8);
    let mu_max = *b.eigenvalues().last().unwrap();
    let bands = band_energy(&b, &z, 2, d, &uniform_band_edges(0.0, mu_max, 5)).unwrap();
    let sum: f64 = bands.energy.iter().sum::<f64>() + bands.outside + bands.residual;
    assert!((sum - bands.total).abs() < 1e-10 * bands.total);
    assert_eq!(bands.outside, 0.0);
    // Narrow bands leave modes outside; the sum still closes.
    let narrow = band_energy(&b, &z, 2, d, &[0.0, mu_max / 2.0]).unwrap();
    assert!(narrow.outside > 0.0);
    let sum: f64 = narrow.energy.iter().sum::<f64>() + narrow.outside + narrow.residual;
    assert!((sum - narrow.total).abs() < 1e-10 * narrow.total);
    assert!(matches!(
        band_energy(&b, &z, 2, d, &[1.0, 0.5]),
        Err(Error::InvalidParameter { .. })
    ));
    assert!(matches!(
        band_energy(&b, &z, 3, d, &[0.0, 1.0]),
        Err(Error::ShapeMismatch { .. })
    ));
}

#[test]
fn suggest_k_finds_the_smallest_sufficient_k() {
    let full = basis(8, 3, 24, 4);
    let d = 2;
    // A signal made of modes 0, 1 and 4 of the basis (energies 1, 4, 0.25 per channel pair).
    let mut a = vec![0.0f64; 24 * d];
    a[0] = 1.0;
    a[d] = 2.0;
    a[4 * d + 1] = 0.5;
    let z = full.reconstruct(&a, 1, d);
    let s = suggest_k(&full, &z, 1, d, 0.95).unwrap();
    assert_eq!(s.k, 2, "modes 0 and 1 hold 5/5.25 = 0.952…");
    let s = suggest_k(&full, &z, 1, d, 0.96).unwrap();
    assert_eq!(s.k, 5, "mode 4 is needed for more");
    assert!((s.captured - 1.0).abs() < 1e-12);
    let s = suggest_k(&full, &z, 1, d, 0.9).unwrap();
    assert_eq!(s.k, 2);
    assert!((s.captured - 5.0 / 5.25).abs() < 1e-12);
    assert_eq!(s.cumulative.len(), 24);
    // A smaller basis cannot reach 99%.
    let small = basis(8, 3, 3, 4);
    assert!(matches!(
        suggest_k(&small, &z, 1, d, 0.99),
        Err(Error::EnergyNotReached { k_max: 3, .. })
    ));
    assert!(matches!(
        suggest_k(&full, &z, 1, d, 1.5),
        Err(Error::InvalidParameter { .. })
    ));
}
