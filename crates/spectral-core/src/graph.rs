//! Undirected weighted graphs: from bonds, a radius cutoff, k nearest neighbours, the complete
//! graph, and the temporal path graph (SPEC §4.1).

use std::collections::HashMap;

use rayon::prelude::*;

use crate::error::{Error, Result, invalid};

/// An undirected, simple, weighted graph on nodes `0..n`.
///
/// Edges are stored once each as `(i, j, w)` with `i < j`, sorted by `(i, j)`, with finite
/// `w > 0`. Nodes without edges (isolated nodes) are allowed; see
/// [`Laplacian`](crate::Laplacian) for how each Laplacian treats them.
#[derive(Debug, Clone, PartialEq)]
pub struct Graph {
    n: usize,
    edges: Vec<(usize, usize, f64)>,
}

impl Graph {
    /// The graph with `n` nodes and no edges.
    pub fn empty(n: usize) -> Self {
        Self {
            n,
            edges: Vec::new(),
        }
    }

    /// From an unweighted edge list (e.g. covalent bonds). Either orientation may be given;
    /// repeated edges are merged.
    ///
    /// # Errors
    /// [`Error::NodeOutOfRange`] for an endpoint `≥ n`, [`Error::SelfLoop`] for `(i, i)`.
    pub fn from_edges(n: usize, edges: &[(usize, usize)]) -> Result<Self> {
        let weighted: Vec<_> = edges.iter().map(|&(i, j)| (i, j, 1.0)).collect();
        Self::from_weighted_edges(n, &weighted)
    }

    /// From a weighted edge list. Either orientation may be given; an edge repeated with the
    /// same weight is merged.
    ///
    /// # Errors
    /// [`Error::NodeOutOfRange`], [`Error::SelfLoop`], [`Error::InvalidWeight`] (not finite or
    /// not `> 0`), [`Error::ConflictingEdge`] (the same edge with two different weights).
    pub fn from_weighted_edges(n: usize, edges: &[(usize, usize, f64)]) -> Result<Self> {
        let mut list = Vec::with_capacity(edges.len());
        for &(i, j, w) in edges {
            for node in [i, j] {
                if node >= n {
                    return Err(Error::NodeOutOfRange {
                        i,
                        j,
                        node,
                        n_nodes: n,
                    });
                }
            }
            if i == j {
                return Err(Error::SelfLoop { node: i });
            }
            if !(w.is_finite() && w > 0.0) {
                return Err(Error::InvalidWeight { i, j, weight: w });
            }
            list.push((i.min(j), i.max(j), w));
        }
        list.sort_by_key(|e| (e.0, e.1));
        let mut out: Vec<(usize, usize, f64)> = Vec::with_capacity(list.len());
        for (i, j, w) in list {
            match out.last() {
                Some(&(pi, pj, pw)) if (pi, pj) == (i, j) => {
                    if pw != w {
                        return Err(Error::ConflictingEdge {
                            i,
                            j,
                            first: pw,
                            second: w,
                        });
                    }
                }
                _ => out.push((i, j, w)),
            }
        }
        Ok(Self { n, edges: out })
    }

    /// The complete graph `K_n` (every pair joined, weight 1).
    pub fn complete(n: usize) -> Self {
        let mut edges = Vec::with_capacity(n * n.saturating_sub(1) / 2);
        for i in 0..n {
            for j in i + 1..n {
                edges.push((i, j, 1.0));
            }
        }
        Self { n, edges }
    }

    /// The path graph `0 − 1 − … − (t−1)`: the temporal graph over `t` frames.
    pub fn path(t: usize) -> Self {
        Self {
            n: t,
            edges: (1..t).map(|i| (i - 1, i, 1.0)).collect(),
        }
    }

    /// The radius (contact) graph: `i ~ j` when `‖x_i − x_j‖ < cutoff`, weight 1 — e.g. the
    /// 8 Å backbone contact graph of the protein setting.
    ///
    /// Uses a uniform cell list with cells of side `cutoff`, so it costs
    /// `O(n · neighbours)` rather than `O(n²)`.
    ///
    /// # Errors
    /// [`Error::NonFinitePosition`], or [`Error::InvalidParameter`] when `cutoff` is not finite
    /// and `> 0`.
    pub fn radius(positions: &[[f64; 3]], cutoff: f64) -> Result<Self> {
        check_positions(positions)?;
        if !(cutoff.is_finite() && cutoff > 0.0) {
            return Err(invalid("cutoff", cutoff, "a finite distance > 0"));
        }
        let cell_of = |p: &[f64; 3]| -> [i64; 3] {
            // Coordinates are finite; `as` saturates for absurd magnitudes, which only merges cells.
            [0, 1, 2].map(|a| (p[a] / cutoff).floor() as i64)
        };
        let mut cells: HashMap<[i64; 3], Vec<usize>> = HashMap::new();
        for (i, p) in positions.iter().enumerate() {
            cells.entry(cell_of(p)).or_default().push(i);
        }
        let r2 = cutoff * cutoff;
        let mut edges: Vec<(usize, usize, f64)> = positions
            .par_iter()
            .enumerate()
            .flat_map_iter(|(i, p)| {
                let c = cell_of(p);
                let mut found = Vec::new();
                for dx in -1..=1 {
                    for dy in -1..=1 {
                        for dz in -1..=1 {
                            let key = [
                                c[0].saturating_add(dx),
                                c[1].saturating_add(dy),
                                c[2].saturating_add(dz),
                            ];
                            if let Some(members) = cells.get(&key) {
                                for &j in members {
                                    if j > i && dist2(p, &positions[j]) < r2 {
                                        found.push((i, j, 1.0));
                                    }
                                }
                            }
                        }
                    }
                }
                found
            })
            .collect();
        edges.sort_by_key(|e| (e.0, e.1));
        edges.dedup_by(|a, b| (a.0, a.1) == (b.0, b.1));
        Ok(Self {
            n: positions.len(),
            edges,
        })
    }

    /// The symmetrised k-nearest-neighbour graph: `i ~ j` when `j` is among the `k` nearest
    /// nodes of `i` **or** `i` among those of `j` (weight 1). Distance ties are broken by the
    /// lower node index, so the graph is deterministic. Costs `O(n²)` distance evaluations
    /// (parallel over nodes).
    ///
    /// # Errors
    /// [`Error::NonFinitePosition`], or [`Error::InvalidParameter`] when `k == 0` or `k ≥ n`.
    pub fn knn(positions: &[[f64; 3]], k: usize) -> Result<Self> {
        check_positions(positions)?;
        let n = positions.len();
        if k == 0 || k >= n {
            return Err(invalid("k", k, format!("1 ≤ k < n (n = {n} positions)")));
        }
        let mut edges: Vec<(usize, usize, f64)> = (0..n)
            .into_par_iter()
            .flat_map_iter(|i| {
                let mut cand: Vec<(f64, usize)> = (0..n)
                    .filter(|&j| j != i)
                    .map(|j| (dist2(&positions[i], &positions[j]), j))
                    .collect();
                let cmp =
                    |a: &(f64, usize), b: &(f64, usize)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1));
                cand.select_nth_unstable_by(k - 1, cmp);
                cand.truncate(k);
                cand.into_iter()
                    .map(move |(_, j)| (i.min(j), i.max(j), 1.0))
            })
            .collect();
        edges.sort_by_key(|e| (e.0, e.1));
        edges.dedup_by(|a, b| (a.0, a.1) == (b.0, b.1));
        Ok(Self { n, edges })
    }

    /// Number of nodes.
    pub fn n_nodes(&self) -> usize {
        self.n
    }

    /// Number of undirected edges.
    pub fn n_edges(&self) -> usize {
        self.edges.len()
    }

    /// The edges `(i, j, w)`, `i < j`, sorted.
    pub fn edges(&self) -> &[(usize, usize, f64)] {
        &self.edges
    }

    /// Weighted degrees `d_i = Σ_j w_ij`.
    pub fn degrees(&self) -> Vec<f64> {
        let mut d = vec![0.0; self.n];
        for &(i, j, w) in &self.edges {
            d[i] += w;
            d[j] += w;
        }
        d
    }

    /// Connected components as a label per node, labels `0..count` in order of each
    /// component's lowest node; returns `(labels, count)`.
    pub fn components(&self) -> (Vec<usize>, usize) {
        let mut parent: Vec<usize> = (0..self.n).collect();
        fn find(p: &mut [usize], mut x: usize) -> usize {
            while p[x] != x {
                p[x] = p[p[x]];
                x = p[x];
            }
            x
        }
        for &(i, j, _) in &self.edges {
            let (a, b) = (find(&mut parent, i), find(&mut parent, j));
            if a != b {
                parent[a.max(b)] = a.min(b);
            }
        }
        let mut label = vec![usize::MAX; self.n];
        let mut count = 0;
        let mut labels = vec![0; self.n];
        for (x, slot) in labels.iter_mut().enumerate() {
            let r = find(&mut parent, x);
            if label[r] == usize::MAX {
                label[r] = count;
                count += 1;
            }
            *slot = label[r];
        }
        (labels, count)
    }
}

fn dist2(a: &[f64; 3], b: &[f64; 3]) -> f64 {
    let d = [a[0] - b[0], a[1] - b[1], a[2] - b[2]];
    d[0] * d[0] + d[1] * d[1] + d[2] * d[2]
}

fn check_positions(positions: &[[f64; 3]]) -> Result<()> {
    for (node, p) in positions.iter().enumerate() {
        for (axis, &value) in p.iter().enumerate() {
            if !value.is_finite() {
                return Err(Error::NonFinitePosition { node, axis, value });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edge_list_is_canonical_and_validated() {
        let g = Graph::from_edges(4, &[(1, 0), (0, 1), (2, 3)]).unwrap();
        assert_eq!(g.edges(), &[(0, 1, 1.0), (2, 3, 1.0)]);
        assert_eq!(g.degrees(), vec![1.0, 1.0, 1.0, 1.0]);
        assert!(matches!(
            Graph::from_edges(3, &[(0, 3)]),
            Err(Error::NodeOutOfRange {
                node: 3,
                n_nodes: 3,
                ..
            })
        ));
        assert!(matches!(
            Graph::from_edges(3, &[(1, 1)]),
            Err(Error::SelfLoop { node: 1 })
        ));
        assert!(matches!(
            Graph::from_weighted_edges(3, &[(0, 1, f64::NAN)]),
            Err(Error::InvalidWeight { .. })
        ));
        assert!(matches!(
            Graph::from_weighted_edges(3, &[(0, 1, -1.0)]),
            Err(Error::InvalidWeight { .. })
        ));
        assert!(matches!(
            Graph::from_weighted_edges(3, &[(0, 1, 1.0), (1, 0, 2.0)]),
            Err(Error::ConflictingEdge { i: 0, j: 1, .. })
        ));
    }

    #[test]
    fn radius_graph_matches_brute_force() {
        // A deterministic cloud with negative coordinates and points exactly on cell borders.
        let pts: Vec<[f64; 3]> = (0..60)
            .map(|i| {
                let f = i as f64;
                [
                    (f * 0.37).sin() * 3.0,
                    (f * 0.91).cos() * 2.0 - 1.0,
                    (f * 0.13) % 2.5 - 1.0,
                ]
            })
            .chain([[1.0, 1.0, 1.0], [2.0, 1.0, 1.0]])
            .collect();
        for cutoff in [0.5, 1.0, 1.7, 10.0] {
            let g = Graph::radius(&pts, cutoff).unwrap();
            let mut brute = Vec::new();
            for i in 0..pts.len() {
                for j in i + 1..pts.len() {
                    if dist2(&pts[i], &pts[j]) < cutoff * cutoff {
                        brute.push((i, j, 1.0));
                    }
                }
            }
            assert_eq!(g.edges(), brute.as_slice(), "cutoff {cutoff}");
        }
        assert!(matches!(
            Graph::radius(&[[0.0, f64::INFINITY, 0.0]], 1.0),
            Err(Error::NonFinitePosition {
                node: 0,
                axis: 1,
                ..
            })
        ));
        assert!(matches!(
            Graph::radius(&pts, 0.0),
            Err(Error::InvalidParameter { .. })
        ));
    }

    #[test]
    fn knn_is_symmetrised_union_with_index_ties() {
        // Points on a line at 0, 1, 2, 4: node 1 is equidistant from 0 and 2.
        let pts = [
            [0.0, 0.0, 0.0],
            [1.0, 0.0, 0.0],
            [2.0, 0.0, 0.0],
            [4.0, 0.0, 0.0],
        ];
        let g = Graph::knn(&pts, 1).unwrap();
        // 0→1, 1→0 (tie with 2, lower index), 2→1, 3→2.
        assert_eq!(g.edges(), &[(0, 1, 1.0), (1, 2, 1.0), (2, 3, 1.0)]);
        assert!(matches!(
            Graph::knn(&pts, 4),
            Err(Error::InvalidParameter { .. })
        ));
        assert!(matches!(
            Graph::knn(&pts, 0),
            Err(Error::InvalidParameter { .. })
        ));
    }

    #[test]
    fn complete_path_and_components() {
        assert_eq!(Graph::complete(4).n_edges(), 6);
        assert_eq!(Graph::path(1).n_edges(), 0);
        assert_eq!(Graph::path(5).edges()[3], (3, 4, 1.0));
        let g = Graph::from_edges(6, &[(4, 5), (1, 2)]).unwrap();
        assert_eq!(g.components(), (vec![0, 1, 1, 2, 3, 3], 4));
    }
}
