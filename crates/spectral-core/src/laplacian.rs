//! Graph Laplacians in sparse (faer CSC) and dense form (SPEC §4.1).

use faer::sparse::{SparseColMat, SparseColMatRef, SymbolicSparseColMat};
use faer::{Mat, MatMut, MatRef};
use rayon::prelude::*;

use crate::graph::Graph;

/// Which Laplacian of a graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum LaplacianKind {
    /// `L = I − D^{-1/2} A D^{-1/2}`; an isolated node keeps the identity's row and column
    /// (so it contributes the eigenvalue 1). Spectrum in `[0, 2]`. The paper's choice.
    #[default]
    Normalized,
    /// `L = D − A`; an isolated node has a zero row and column (eigenvalue 0). Spectrum in
    /// `[0, 2·max_i d_i]`.
    Combinatorial,
}

/// A graph Laplacian: symmetric, positive semi-definite, stored sparse (faer CSC with the
/// diagonal always present, row indices sorted). Being symmetric, each column is also a row.
#[derive(Debug, Clone)]
pub struct Laplacian {
    kind: LaplacianKind,
    matrix: SparseColMat<usize, f64>,
    upper_bound: f64,
}

impl Laplacian {
    /// The Laplacian of `graph` of the given kind.
    pub fn new(graph: &Graph, kind: LaplacianKind) -> Self {
        let n = graph.n_nodes();
        let deg = graph.degrees();
        // Adjacency lists including the diagonal, then CSC assembly (rows sorted per column).
        let mut adj: Vec<Vec<(usize, f64)>> = vec![Vec::new(); n];
        let inv_sqrt: Vec<f64> = deg
            .iter()
            .map(|&d| if d > 0.0 { 1.0 / d.sqrt() } else { 0.0 })
            .collect();
        for &(i, j, w) in graph.edges() {
            let v = match kind {
                LaplacianKind::Normalized => -w * inv_sqrt[i] * inv_sqrt[j],
                LaplacianKind::Combinatorial => -w,
            };
            adj[i].push((j, v));
            adj[j].push((i, v));
        }
        let mut col_ptr = Vec::with_capacity(n + 1);
        let mut row_idx = Vec::with_capacity(n + 2 * graph.n_edges());
        let mut val = Vec::with_capacity(n + 2 * graph.n_edges());
        col_ptr.push(0);
        for (c, list) in adj.iter_mut().enumerate() {
            let diag = match kind {
                LaplacianKind::Normalized => 1.0,
                LaplacianKind::Combinatorial => deg[c],
            };
            list.push((c, diag));
            list.sort_by_key(|e| e.0);
            for &(r, v) in list.iter() {
                row_idx.push(r);
                val.push(v);
            }
            col_ptr.push(row_idx.len());
        }
        let symbolic = SymbolicSparseColMat::new_checked(n, n, col_ptr, None, row_idx);
        let upper_bound = match kind {
            LaplacianKind::Normalized => 2.0,
            LaplacianKind::Combinatorial => 2.0 * deg.iter().copied().fold(0.0, f64::max),
        };
        Self {
            kind,
            matrix: SparseColMat::new(symbolic, val),
            upper_bound,
        }
    }

    /// `I − D^{-1/2} A D^{-1/2}`.
    pub fn normalized(graph: &Graph) -> Self {
        Self::new(graph, LaplacianKind::Normalized)
    }

    /// `D − A`.
    pub fn combinatorial(graph: &Graph) -> Self {
        Self::new(graph, LaplacianKind::Combinatorial)
    }

    /// The temporal Laplacian: of the path graph over `t` frames.
    pub fn temporal_path(t: usize, kind: LaplacianKind) -> Self {
        Self::new(&Graph::path(t), kind)
    }

    /// Matrix dimension (number of nodes).
    pub fn dim(&self) -> usize {
        self.matrix.nrows()
    }

    /// Which Laplacian this is.
    pub fn kind(&self) -> LaplacianKind {
        self.kind
    }

    /// The sparse matrix.
    pub fn sparse(&self) -> SparseColMatRef<'_, usize, f64> {
        self.matrix.as_ref()
    }

    /// Number of stored entries (diagonal included).
    pub fn nnz(&self) -> usize {
        self.matrix.val().len()
    }

    /// A guaranteed upper bound on the spectrum: `2` for the normalised form, the Gershgorin
    /// bound `2·max_i d_i` for the combinatorial one. The lower bound is `0` (PSD).
    pub fn spectrum_upper_bound(&self) -> f64 {
        self.upper_bound
    }

    /// The dense `n×n` matrix (column-major).
    pub fn to_dense(&self) -> Mat<f64> {
        self.matrix.to_dense()
    }

    /// `y = L x` for a block of column vectors `x` (`n×m`), parallel over the columns.
    ///
    /// # Panics
    /// When `x` and `y` are not both `n×m` for the same `m`.
    #[track_caller]
    pub fn apply(&self, x: MatRef<'_, f64>, y: MatMut<'_, f64>) {
        spmm(self.sparse(), x, y);
    }
}

/// `y = A x` for a **symmetric** sparse `A` in CSC form (column `i` of `A` is its row `i`) and
/// column-major blocks: the block is copied to row-major, multiplied by [`spmm_row_major`], and
/// copied back.
#[track_caller]
pub(crate) fn spmm(a: SparseColMatRef<'_, usize, f64>, x: MatRef<'_, f64>, mut y: MatMut<'_, f64>) {
    let n = a.nrows();
    assert!(
        x.nrows() == n && y.nrows() == n && x.ncols() == y.ncols(),
        "spmm: A is {n}×{n}, x is {}×{}, y is {}×{}",
        x.nrows(),
        x.ncols(),
        y.nrows(),
        y.ncols()
    );
    let m = x.ncols();
    let xr = to_row_major(x);
    let mut yr = vec![0.0; n * m];
    spmm_row_major(a, &xr, &mut yr, m);
    for c in 0..m {
        for i in 0..n {
            y[(i, c)] = yr[i * m + c];
        }
    }
}

pub(crate) fn to_row_major(x: MatRef<'_, f64>) -> Vec<f64> {
    let (n, m) = (x.nrows(), x.ncols());
    let mut out = vec![0.0; n * m];
    for c in 0..m {
        let col = x.col(c);
        for i in 0..n {
            out[i * m + c] = col[i];
        }
    }
    out
}

/// `y = A x` for a symmetric CSC `A` and row-major `n×m` blocks: output row `i` gathers the
/// rows `x[j, :]` of column `i`'s entries — contiguous `m`-vectors, so the inner loop
/// vectorises — and row chunks run in parallel.
pub(crate) fn spmm_row_major(
    a: SparseColMatRef<'_, usize, f64>,
    x: &[f64],
    y: &mut [f64],
    m: usize,
) {
    spmm_row_major_then(a, x, y, m, |_, _| {});
}

/// [`spmm_row_major`] followed, row by row while the row is hot in cache, by
/// `epilogue(i, y[i, :])`.
pub(crate) fn spmm_row_major_then(
    a: SparseColMatRef<'_, usize, f64>,
    x: &[f64],
    y: &mut [f64],
    m: usize,
    epilogue: impl Fn(usize, &mut [f64]) + Sync,
) {
    let n = a.nrows();
    debug_assert!(x.len() == n * m && y.len() == n * m);
    if m == 0 {
        return;
    }
    let col_ptr = a.symbolic().col_ptr();
    let row_idx = a.symbolic().row_idx();
    let val = a.val();
    const ROWS: usize = 64;
    y.par_chunks_mut(ROWS * m)
        .enumerate()
        .for_each(|(chunk, ys)| {
            for (r, yi) in ys.chunks_exact_mut(m).enumerate() {
                let i = chunk * ROWS + r;
                yi.fill(0.0);
                for p in col_ptr[i]..col_ptr[i + 1] {
                    let (v, xj) = (val[p], &x[row_idx[p] * m..(row_idx[p] + 1) * m]);
                    for (yc, &xc) in yi.iter_mut().zip(xj) {
                        *yc += v * xc;
                    }
                }
                epilogue(i, yi);
            }
        });
}
