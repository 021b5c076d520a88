//! A cache of joint bases keyed by graph and settings: the same graph gives the same basis, built
//! once and shared across a batch or an epoch — as a [`JointBasis`] or as any form derived from
//! it once (e.g. its factors as tensors on a device, in a crate that has them).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::error::{Error, Result};
use crate::graph::Graph;
use crate::joint::{JointBasis, JointBasisConfig, SpatialSolver};
use crate::laplacian::LaplacianKind;
use crate::partial::PartialEigenConfig;

/// [`SpatialSolver`] as a hashable key (its tolerance compared bit for bit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum SolverKey {
    Dense,
    Auto,
    Partial {
        tol: u64,
        max_iters: usize,
        degree: usize,
        guard: Option<usize>,
        seed: u64,
    },
}

impl From<SpatialSolver> for SolverKey {
    fn from(solver: SpatialSolver) -> Self {
        match solver {
            SpatialSolver::Dense => Self::Dense,
            SpatialSolver::Auto => Self::Auto,
            SpatialSolver::Partial(PartialEigenConfig {
                tol,
                max_iters,
                degree,
                guard,
                seed,
            }) => Self::Partial {
                tol: tol.to_bits(),
                max_iters,
                degree,
                guard,
                seed,
            },
        }
    }
}

/// Everything a basis depends on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    n: usize,
    /// `(i, j, w)` with `i < j`, sorted (as [`Graph::edges`] keeps them), `w` as bits.
    edges: Vec<(usize, usize, u64)>,
    n_frames: usize,
    k: usize,
    kind: LaplacianKind,
    solver: SolverKey,
}

impl Key {
    fn new(graph: &Graph, n_frames: usize, config: &JointBasisConfig) -> Self {
        Self {
            n: graph.n_nodes(),
            edges: graph
                .edges()
                .iter()
                .map(|&(i, j, w)| (i, j, w.to_bits()))
                .collect(),
            n_frames,
            k: config.k,
            kind: config.kind,
            solver: config.solver.into(),
        }
    }
}

/// Thread-safe map from (spatial graph, `T`, [`JointBasisConfig`]) to a shared value built once
/// from that graph's [`JointBasis`]: the basis itself (`BasisCache<JointBasis>`, the default, see
/// [`get_or_build`](Self::get_or_build)) or any form of it (see
/// [`get_or_build_with`](Self::get_or_build_with)).
///
/// Keys compare the graph exactly (node count, edge list and weights, bit for bit; the edge
/// order and orientation given to [`Graph::from_edges`] do not matter), so two samples share a
/// basis only when their graphs are identical. Bases are deterministic, so a cached basis is the
/// one a fresh build would give.
#[derive(Debug)]
pub struct BasisCache<V = JointBasis> {
    map: Mutex<HashMap<Key, Arc<V>>>,
}

impl<V> Default for BasisCache<V> {
    fn default() -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
        }
    }
}

impl<V> BasisCache<V> {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// The value for `graph` over `n_frames` frames with `config`; on first use, the basis is
    /// built and handed to `derive`, whose result is cached. The build runs outside the lock; if
    /// two threads race, the first insert wins and both get the same `Arc`.
    ///
    /// # Errors
    /// Those of [`JointBasis::from_graph`] (converted to `E`), or of `derive` (nothing is cached
    /// then).
    pub fn get_or_build_with<E: From<Error>>(
        &self,
        graph: &Graph,
        n_frames: usize,
        config: &JointBasisConfig,
        derive: impl FnOnce(JointBasis) -> Result<V, E>,
    ) -> Result<Arc<V>, E> {
        let key = Key::new(graph, n_frames, config);
        if let Some(hit) = self.lock().get(&key) {
            return Ok(hit.clone());
        }
        let built = Arc::new(derive(JointBasis::from_graph(graph, n_frames, config)?)?);
        Ok(self.lock().entry(key).or_insert(built).clone())
    }

    /// Number of cached values.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every cached value.
    pub fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Key, Arc<V>>> {
        // A panic while holding the lock cannot leave the map half-updated (single insert).
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl BasisCache<JointBasis> {
    /// The basis for `graph` over `n_frames` frames with `config`, building it on first use.
    ///
    /// # Errors
    /// Those of [`JointBasis::from_graph`].
    pub fn get_or_build(
        &self,
        graph: &Graph,
        n_frames: usize,
        config: &JointBasisConfig,
    ) -> Result<Arc<JointBasis>> {
        self.get_or_build_with(graph, n_frames, config, Ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_graph_same_arc_different_graph_new_entry() {
        let cache = BasisCache::new();
        let cfg = JointBasisConfig::new(6);
        let g = Graph::path(5);
        let a = cache.get_or_build(&g, 3, &cfg).unwrap();
        let b = cache
            .get_or_build(
                &Graph::from_edges(5, &[(3, 4), (0, 1), (2, 1), (2, 3)]).unwrap(),
                3,
                &cfg,
            )
            .unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        let c = cache.get_or_build(&Graph::complete(5), 3, &cfg).unwrap();
        assert!(!Arc::ptr_eq(&a, &c));
        let d = cache.get_or_build(&g, 4, &cfg).unwrap();
        assert!(!Arc::ptr_eq(&a, &d));
        // the same edges on more nodes (an isolated one) is another graph
        let six = Graph::from_edges(6, &[(0, 1), (1, 2), (2, 3), (3, 4)]).unwrap();
        let e = cache.get_or_build(&six, 3, &cfg).unwrap();
        assert!(!Arc::ptr_eq(&a, &e));
        assert_eq!(cache.len(), 4);
        cache.clear();
        assert!(cache.is_empty());
    }

    #[test]
    fn every_setting_is_part_of_the_key() {
        let cache = BasisCache::new();
        let g = Graph::path(6);
        let base = JointBasisConfig::new(5);
        let partial = PartialEigenConfig::default();
        let configs = [
            base,
            JointBasisConfig { k: 4, ..base },
            JointBasisConfig {
                kind: LaplacianKind::Combinatorial,
                ..base
            },
            JointBasisConfig {
                solver: SpatialSolver::Dense,
                ..base
            },
            JointBasisConfig {
                solver: SpatialSolver::Partial(partial),
                ..base
            },
            JointBasisConfig {
                solver: SpatialSolver::Partial(PartialEigenConfig {
                    tol: 1e-8,
                    ..partial
                }),
                ..base
            },
            JointBasisConfig {
                solver: SpatialSolver::Partial(PartialEigenConfig { seed: 1, ..partial }),
                ..base
            },
        ];
        for cfg in &configs {
            cache.get_or_build(&g, 2, cfg).unwrap();
        }
        assert_eq!(cache.len(), configs.len());
        for cfg in &configs {
            cache.get_or_build(&g, 2, cfg).unwrap();
        }
        assert_eq!(cache.len(), configs.len());
    }

    /// A derived value is built once per graph from the basis a plain build gives; a failing
    /// build or derivation caches nothing.
    #[test]
    fn derived_values_and_errors() {
        let cache: BasisCache<(usize, Vec<f64>)> = BasisCache::new();
        let cfg = JointBasisConfig::new(4);
        let g = Graph::complete(4);
        let mut calls = 0;
        let mut derive = |b: JointBasis| -> Result<_> {
            calls += 1;
            Ok((b.k(), b.eigenvalues().to_vec()))
        };
        let a = cache.get_or_build_with(&g, 3, &cfg, &mut derive).unwrap();
        let b = cache.get_or_build_with(&g, 3, &cfg, &mut derive).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(calls, 1);
        let fresh = JointBasis::from_graph(&g, 3, &cfg).unwrap();
        assert_eq!(*a, (fresh.k(), fresh.eigenvalues().to_vec()));

        let refused = Error::InvalidParameter {
            name: "derive",
            value: "x".into(),
            expected: "y".into(),
        };
        let failed = cache.get_or_build_with(&Graph::path(3), 3, &cfg, |_| Err(refused.clone()));
        assert_eq!(failed.unwrap_err(), refused);
        let too_many: Result<_> = cache.get_or_build_with(&g, 3, &JointBasisConfig::new(13), |b| {
            Ok((b.k(), Vec::new()))
        });
        assert!(too_many.is_err());
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn racing_threads_share_one_value() {
        let cache = BasisCache::new();
        let cfg = JointBasisConfig::new(8);
        let g = Graph::complete(7);
        let got: Vec<Arc<JointBasis>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| s.spawn(|| cache.get_or_build(&g, 5, &cfg).unwrap()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(got.iter().all(|b| Arc::ptr_eq(b, &got[0])));
        assert_eq!(cache.len(), 1);
    }
}
