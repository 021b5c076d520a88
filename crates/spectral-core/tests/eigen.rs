//! Laplacians and eigensolvers: properties of the dense path on random graphs, the partial
//! solver against the dense one (degenerate eigenvalues compared as subspaces), determinism.

use faer::Mat;
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use spectral_core::{
    Error, Graph, Laplacian, LaplacianKind, PartialEigenConfig, canonicalize_eigenvectors,
};

/// Random graph: `n` nodes, each pair joined with probability `p`.
fn random_graph(n: usize, p: f64, seed: u64) -> Graph {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut edges = Vec::new();
    for i in 0..n {
        for j in i + 1..n {
            if rng.random::<f64>() < p {
                edges.push((i, j, rng.random_range(0.5..2.0)));
            }
        }
    }
    Graph::from_weighted_edges(n, &edges).unwrap()
}

/// Random 3-D points in a cube, contact graph at `cutoff`.
fn geometric_graph(n: usize, cutoff: f64, seed: u64) -> Graph {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let pts: Vec<[f64; 3]> = (0..n)
        .map(|_| {
            [
                rng.random::<f64>(),
                rng.random::<f64>(),
                rng.random::<f64>(),
            ]
        })
        .collect();
    Graph::radius(&pts, cutoff).unwrap()
}

/// Disjoint union of graphs, nodes numbered in order.
fn union(parts: &[Graph]) -> Graph {
    let mut edges = Vec::new();
    let mut off = 0;
    for g in parts {
        edges.extend(g.edges().iter().map(|&(i, j, w)| (i + off, j + off, w)));
        off += g.n_nodes();
    }
    Graph::from_weighted_edges(off, &edges).unwrap()
}

fn max_abs(m: &Mat<f64>) -> f64 {
    let mut x = 0.0f64;
    for j in 0..m.ncols() {
        for i in 0..m.nrows() {
            x = x.max(m[(i, j)].abs());
        }
    }
    x
}

#[test]
fn laplacian_entries_follow_the_definitions() {
    // 0 −(2)− 1 −(1)− 2, node 3 isolated.
    let g = Graph::from_weighted_edges(4, &[(0, 1, 2.0), (1, 2, 1.0)]).unwrap();
    let n = Laplacian::normalized(&g).to_dense();
    let c = Laplacian::combinatorial(&g).to_dense();
    let (s3, s6) = (3f64.sqrt(), 6f64.sqrt());
    let expect_n = [
        [1.0, -2.0 / s6, 0.0, 0.0],
        [-2.0 / s6, 1.0, -1.0 / s3, 0.0],
        [0.0, -1.0 / s3, 1.0, 0.0],
        [0.0, 0.0, 0.0, 1.0],
    ];
    let expect_c = [
        [2.0, -2.0, 0.0, 0.0],
        [-2.0, 3.0, -1.0, 0.0],
        [0.0, -1.0, 1.0, 0.0],
        [0.0, 0.0, 0.0, 0.0],
    ];
    for i in 0..4 {
        for j in 0..4 {
            assert!(
                (n[(i, j)] - expect_n[i][j]).abs() < 1e-15,
                "normalised ({i},{j})"
            );
            assert_eq!(c[(i, j)], expect_c[i][j], "combinatorial ({i},{j})");
        }
    }
    assert_eq!(Laplacian::combinatorial(&g).spectrum_upper_bound(), 6.0);
    assert_eq!(Laplacian::normalized(&g).nnz(), 4 + 4);
}

#[test]
fn path_graph_has_the_closed_form_spectrum() {
    for t in 2..12 {
        let eig = Laplacian::temporal_path(t, LaplacianKind::Normalized)
            .eigen()
            .unwrap();
        for (j, &l) in eig.values().iter().enumerate() {
            let exact = 1.0 - (std::f64::consts::PI * j as f64 / (t - 1) as f64).cos();
            assert!((l - exact).abs() < 1e-13, "T={t} j={j}: {l} vs {exact}");
        }
        let eig = Laplacian::temporal_path(t, LaplacianKind::Combinatorial)
            .eigen()
            .unwrap();
        for (j, &l) in eig.values().iter().enumerate() {
            let exact = 2.0 - 2.0 * (std::f64::consts::PI * j as f64 / t as f64).cos();
            assert!((l - exact).abs() < 1e-12, "T={t} j={j}");
        }
    }
    // T = 1: one isolated frame.
    assert_eq!(
        Laplacian::temporal_path(1, LaplacianKind::Normalized)
            .eigen()
            .unwrap()
            .values(),
        &[1.0]
    );
    assert_eq!(
        Laplacian::temporal_path(1, LaplacianKind::Combinatorial)
            .eigen()
            .unwrap()
            .values(),
        &[0.0]
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Orthonormal, `L U = U Λ`, ascending, in `[0, 2]` (normalised) / `[0, 2 max d]`
    /// (combinatorial), one zero per component (counting isolated nodes as the SPEC says), and
    /// the sign rule holds — on random graphs of 0..=40 nodes, many disconnected.
    #[test]
    fn dense_eigen_properties(n in 0usize..=40, p in 0.0f64..0.3, seed in any::<u64>(), normalised in any::<bool>()) {
        let g = random_graph(n, p, seed);
        let kind = if normalised { LaplacianKind::Normalized } else { LaplacianKind::Combinatorial };
        let lap = Laplacian::new(&g, kind);
        let eig = lap.eigen().unwrap();
        let (u, l) = (eig.vectors(), eig.values());
        prop_assert_eq!(l.len(), n);
        let gram = u.transpose() * u;
        let id = Mat::<f64>::identity(n, n);
        prop_assert!(max_abs(&(&gram - &id)) < 1e-12);
        let lu = lap.to_dense() * u;
        let ul = Mat::from_fn(n, n, |i, j| u[(i, j)] * l[j]);
        prop_assert!(max_abs(&(&lu - &ul)) < 1e-12);
        prop_assert!(eig.residuals(&lap).iter().all(|&r| r < 1e-12));
        prop_assert!(l.windows(2).all(|w| w[0] <= w[1]));
        let ub = lap.spectrum_upper_bound();
        prop_assert!(l.iter().all(|&x| x > -1e-12 && x < ub + 1e-12));
        // Zeros: one per component with an edge (normalised) / per component (combinatorial).
        let (labels, count) = g.components();
        let isolated = (0..n).filter(|&v| labels.iter().filter(|&&c| c == labels[v]).count() == 1).count();
        let expected_zeros = if normalised { count - isolated } else { count };
        prop_assert_eq!(l.iter().filter(|&&x| x.abs() < 1e-10).count(), expected_zeros);
        // Sign rule on simple eigenvalues: the first entry within the tie tolerance of the
        // largest magnitude is positive.
        for c in 0..n {
            let simple = (c == 0 || l[c] - l[c - 1] > 1e-9) && (c + 1 == n || l[c + 1] - l[c] > 1e-9);
            if simple {
                let col = u.col(c);
                let m = (0..n).map(|i| col[i].abs()).fold(0.0, f64::max);
                let p = (0..n).find(|&i| col[i].abs() >= m * (1.0 - 1e-6)).unwrap();
                prop_assert!(col[p] > 0.0);
            }
        }
    }
}

/// Projector onto the span of columns `lo..hi`.
fn projector(u: faer::MatRef<'_, f64>, lo: usize, hi: usize) -> Mat<f64> {
    let v = u.subcols(lo, hi - lo);
    v * v.transpose()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    /// The leading-k dense solver agrees with the full one: eigenvalues, eigenvector subspaces of
    /// every eigenvalue cluster inside the k (vector by vector after canonicalisation for simple
    /// eigenvalues), on random graphs past the small-n shortcut — many of them disconnected, with
    /// isolated nodes and repeated eigenvalues.
    #[test]
    fn leading_dense_matches_full(n in 65usize..140, p in 0.005f64..0.2, k_frac in 0.01f64..0.7, seed in any::<u64>(), normalised in any::<bool>()) {
        let g = random_graph(n, p, seed);
        let kind = if normalised { LaplacianKind::Normalized } else { LaplacianKind::Combinatorial };
        let lap = Laplacian::new(&g, kind);
        let k = ((n as f64 * k_frac) as usize).max(1);
        let lead = lap.eigen_leading(k).unwrap();
        let full = lap.eigen().unwrap();
        let scale = lap.spectrum_upper_bound().max(1.0);
        let l = full.values();
        for (a, b) in lead.values().iter().zip(&l[..k]) {
            prop_assert!((a - b).abs() < 1e-11 * scale);
        }
        prop_assert!(lead.residuals(&lap).iter().all(|&r| r < 1e-10 * scale));
        let mut lo = 0;
        while lo < k {
            let mut hi = lo + 1;
            while hi < n && l[hi] - l[hi - 1] < 1e-6 * scale {
                hi += 1;
            }
            if hi <= k {
                let d = projector(lead.vectors(), lo, hi) - projector(full.vectors(), lo, hi);
                prop_assert!(max_abs(&d) < 1e-7, "cluster {}..{}: {}", lo, hi, max_abs(&d));
            }
            lo = hi;
        }
        prop_assert_eq!(&lead, &lap.eigen_leading(k).unwrap());
    }
}

#[test]
fn partial_matches_dense_on_connected_geometric_graphs() {
    for (n, k, seed) in [(300usize, 12usize, 1u64), (400, 20, 2), (250, 5, 3)] {
        let g = geometric_graph(n, 0.3, seed);
        for kind in [LaplacianKind::Normalized, LaplacianKind::Combinatorial] {
            let lap = Laplacian::new(&g, kind);
            let dense = lap.eigen().unwrap();
            let cfg = PartialEigenConfig::default();
            let part = lap.partial_eigen(k, &cfg).unwrap();
            assert!(part.iterations > 0, "the iterative path ran");
            let tol = cfg.tol * lap.spectrum_upper_bound();
            for (c, &r) in part.residuals.iter().enumerate() {
                assert!(
                    r <= tol * 1.01,
                    "n={n} {kind:?} pair {c}: residual {r:e} > {tol:e}"
                );
            }
            let scale = lap.spectrum_upper_bound();
            for c in 0..k {
                let (a, b) = (part.pairs.values()[c], dense.values()[c]);
                assert!(
                    (a - b).abs() < 1e-8 * scale,
                    "n={n} {kind:?} λ{c}: {a} vs {b}"
                );
            }
            // Compare eigenvectors through the projectors of eigenvalue clusters fully inside
            // the k (clusters at relative gap 1e-6).
            let l = dense.values();
            let mut lo = 0;
            while lo < k {
                let mut hi = lo + 1;
                while hi < l.len() && l[hi] - l[hi - 1] < 1e-6 * scale {
                    hi += 1;
                }
                if hi <= k {
                    let d = projector(part.pairs.vectors(), lo, hi)
                        - projector(dense.vectors(), lo, hi);
                    assert!(
                        max_abs(&d) < 1e-6,
                        "n={n} {kind:?} cluster {lo}..{hi}: {}",
                        max_abs(&d)
                    );
                }
                lo = hi;
            }
        }
    }
}

#[test]
fn partial_finds_every_copy_of_a_degenerate_zero() {
    // Five components → eigenvalue 0 five times, plus a structure-rich rest.
    let parts: Vec<Graph> = (0..5).map(|s| geometric_graph(60, 0.45, 10 + s)).collect();
    let g = union(&parts);
    assert_eq!(g.components().1, 5, "fixture: the parts are connected");
    let lap = Laplacian::normalized(&g);
    let dense = lap.eigen().unwrap();
    // k = 8 sits at a gap in this fixture (checked).
    let k = 8;
    assert!(dense.values()[k] - dense.values()[k - 1] > 1e-3);
    let part = lap
        .partial_eigen(k, &PartialEigenConfig::default())
        .unwrap();
    assert!(part.iterations > 0);
    assert!(part.pairs.values()[..5].iter().all(|&x| x.abs() < 1e-9));
    assert!(part.pairs.values()[5] > 1e-3);
    // Canonicalisation makes the degenerate block identical, vector by vector, to the dense one:
    // one vector per component.
    for c in 0..k {
        for i in 0..g.n_nodes() {
            let (a, b) = (part.pairs.vectors()[(i, c)], dense.vectors()[(i, c)]);
            assert!((a - b).abs() < 1e-6, "vector {c} entry {i}: {a} vs {b}");
        }
    }
    // Each null vector lives on one component, positive there; together they cover all five.
    let (labels, _) = g.components();
    let mut seen = Vec::new();
    for c in 0..5 {
        let col = part.pairs.vectors().col(c);
        let support: Vec<usize> = (0..g.n_nodes()).filter(|&i| col[i].abs() > 1e-9).collect();
        let comp = labels[support[0]];
        assert!(support.iter().all(|&i| labels[i] == comp && col[i] > 0.0));
        assert_eq!(support.len(), labels.iter().filter(|&&l| l == comp).count());
        seen.push(comp);
    }
    seen.sort_unstable();
    assert_eq!(seen, vec![0, 1, 2, 3, 4]);
}

#[test]
fn partial_is_deterministic_and_seed_independent_up_to_tolerance() {
    let lap = Laplacian::normalized(&geometric_graph(300, 0.3, 7));
    let cfg = PartialEigenConfig::default();
    let a = lap.partial_eigen(10, &cfg).unwrap();
    let b = lap.partial_eigen(10, &cfg).unwrap();
    assert_eq!(a, b, "same seed, same bits");
    let c = lap
        .partial_eigen(10, &PartialEigenConfig { seed: 99, ..cfg })
        .unwrap();
    for col in 0..10 {
        assert!((a.pairs.values()[col] - c.pairs.values()[col]).abs() < 1e-9);
        for i in 0..300 {
            // Canonical signs: a different start gives the same vectors, not their negatives.
            assert!((a.pairs.vectors()[(i, col)] - c.pairs.vectors()[(i, col)]).abs() < 1e-5);
        }
    }
}

#[test]
fn small_problems_take_the_dense_route() {
    let lap = Laplacian::normalized(&Graph::complete(20));
    let part = lap
        .partial_eigen(12, &PartialEigenConfig::default())
        .unwrap();
    assert_eq!(part.iterations, 0);
    assert!((part.pairs.values()[1] - 20.0 / 19.0).abs() < 1e-12);
    assert!(part.residuals.iter().all(|&r| r < 1e-12));
}

#[test]
fn dense_eigen_is_bitwise_reproducible() {
    let lap = Laplacian::normalized(&random_graph(60, 0.1, 5));
    assert_eq!(lap.eigen().unwrap(), lap.eigen().unwrap());
}

#[test]
fn canonicalisation_is_idempotent() {
    let lap = Laplacian::normalized(&union(&[
        Graph::complete(4),
        Graph::complete(4),
        Graph::path(3),
    ]));
    let eig = lap.eigen().unwrap();
    let mut v = eig.vectors().to_owned();
    canonicalize_eigenvectors(eig.values(), v.as_mut());
    assert_eq!(v.as_ref(), eig.vectors());
}

#[test]
fn error_messages_name_the_problem() {
    let e = Graph::from_edges(3, &[(0, 7)]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "edge (0, 7) names node 7, but the graph has 3 nodes"
    );
    let lap = Laplacian::normalized(&Graph::path(400));
    let e = lap
        .partial_eigen(
            4,
            &PartialEigenConfig {
                max_iters: 1,
                degree: 1,
                ..Default::default()
            },
        )
        .unwrap_err();
    assert!(matches!(e, Error::PartialNoConvergence { .. }));
    assert!(
        e.to_string()
            .contains("of 4 smallest eigenpairs converged after 1 filter sweeps"),
        "{e}"
    );
}
