//! A cache of joint bases keyed by graph and settings: the same graph gives the same basis, built
//! once and shared across a batch or an epoch.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::error::Result;
use crate::graph::Graph;
use crate::joint::{JointBasis, JointBasisConfig, SpatialSolver};
use crate::laplacian::LaplacianKind;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    n: usize,
    edges: Vec<(usize, usize, u64)>,
    n_frames: usize,
    k: usize,
    kind: LaplacianKind,
    solver: String,
}

/// Thread-safe map from (spatial graph, `T`, [`JointBasisConfig`]) to a shared
/// [`JointBasis`]. Keys compare the graph exactly (edge list and weights, bit for bit), so two
/// samples share a basis only when their graphs are identical. Bases are deterministic, so a
/// cached basis is the one a fresh build would give.
#[derive(Debug, Default)]
pub struct BasisCache {
    map: Mutex<HashMap<Key, Arc<JointBasis>>>,
}

impl BasisCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// The basis for `graph` over `n_frames` frames with `config`, building it on first use.
    /// The build runs outside the lock; if two threads race, the first insert wins and both get
    /// the same `Arc`.
    ///
    /// # Errors
    /// Those of [`JointBasis::from_graph`].
    pub fn get_or_build(
        &self,
        graph: &Graph,
        n_frames: usize,
        config: &JointBasisConfig,
    ) -> Result<Arc<JointBasis>> {
        let key = Key {
            n: graph.n_nodes(),
            edges: graph
                .edges()
                .iter()
                .map(|&(i, j, w)| (i, j, w.to_bits()))
                .collect(),
            n_frames,
            k: config.k,
            kind: config.kind,
            solver: match config.solver {
                SpatialSolver::Partial(cfg) => format!("{cfg:?}"),
                other => format!("{other:?}"),
            },
        };
        if let Some(hit) = self.lock().get(&key) {
            return Ok(hit.clone());
        }
        let built = Arc::new(JointBasis::from_graph(graph, n_frames, config)?);
        Ok(self.lock().entry(key).or_insert(built).clone())
    }

    /// Number of cached bases.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every cached basis.
    pub fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Arc<JointBasis>>> {
        // A panic while holding the lock cannot leave the map half-updated (single insert).
        self.map.lock().unwrap_or_else(|e| e.into_inner())
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
        assert_eq!(cache.len(), 3);
        cache.clear();
        assert!(cache.is_empty());
    }
}
