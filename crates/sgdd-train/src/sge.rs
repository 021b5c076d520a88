//! Spectral-Guided Enhancement (SGE, SPEC §4.3) as a tch layer.
//!
//! For a representation `z ∈ R^{T×N×d}` of one graph and its truncated joint basis
//! `B_K = [u_t,j ⊗ u_s,i]_{(j,i) ∈ S}` (|S| = K), the layer computes `a = B_Kᵀ z ∈ R^{K×d}`,
//! `ã = diag(w) a`, and `z^sg = z + B_K((w − 1) ⊙ a)`, with learnable `w ∈ R^K` initialised to 1
//! (so the layer starts as the identity). Gradients reach `w` and `z` through tch's autograd.
//!
//! `B_K` is never materialised: the projection and reconstruction are the factored tch kernels of
//! [`distill_kd::JointBasisSplitter`] (`C = U_tᵀ Z U_s` over the leading columns the selection
//! touches), built from [`spectral_core::JointBasis`] (whose f64 `sge_forward`/`sge_backward` are
//! the reference the tests compare against).

use std::sync::Arc;

use anyhow::{Result, ensure};
use distill_kd::JointBasisSplitter;
use graph_nets::GraphBatch;
use spectral_core::{BasisCache, Graph, JointBasis, JointBasisConfig};
use tch::{Device, Kind, Tensor, nn};

/// The joint basis of a spatial graph over `frames` frames (normalised Laplacians, the
/// `K = min(k, N·T)` smallest joint eigenvalues) as a factored tch splitter on `device`.
pub fn joint_basis(
    n: usize,
    undirected: &[(usize, usize)],
    frames: usize,
    k: usize,
    kind: Kind,
    device: Device,
) -> Result<(JointBasis, JointBasisSplitter)> {
    let graph = Graph::from_edges(n, undirected)?;
    let basis = JointBasis::from_graph(&graph, frames, &JointBasisConfig::new(k.min(n * frames)))?;
    let splitter = splitter(&basis, kind, device)?;
    Ok((basis, splitter))
}

/// The tch form of a spectral-core basis.
pub fn splitter(basis: &JointBasis, kind: Kind, device: Device) -> Result<JointBasisSplitter> {
    splitter_leading(basis, basis.k(), kind, device)
}

/// The tch form of the first `k` modes of a spectral-core basis (all of them when `k` is
/// larger), e.g. after [`JointBasis::k_at_gap`] on a basis built with one mode more.
pub fn splitter_leading(
    basis: &JointBasis,
    k: usize,
    kind: Kind,
    device: Device,
) -> Result<JointBasisSplitter> {
    let (t, n) = (basis.n_frames() as i64, basis.n_nodes() as i64);
    let u_t = Tensor::from_slice(&basis.temporal_modes_row_major::<f64>()).reshape([t, -1]);
    let u_s = Tensor::from_slice(&basis.spatial_modes_row_major::<f64>()).reshape([n, -1]);
    let pairs: Vec<(usize, usize)> = basis
        .pairs()
        .iter()
        .take(k)
        .map(|p| (p.temporal, p.spatial))
        .collect();
    Ok(JointBasisSplitter::new(&u_t.to_kind(kind), &u_s.to_kind(kind), &pairs)?.to_device(device))
}

/// Relative tolerance under which two joint eigenvalues are one (degenerate) eigenvalue.
const GAP_TOL: f64 = 1e-6;

/// The tch splitter of the `k` lowest joint modes of a spatial graph over `frames` frames; with
/// `at_gap`, `k` is lowered to the nearest gap of the joint spectrum so the low band never keeps
/// part of a degenerate eigenspace (one eigen-decomposition either way: one mode more than
/// asked shows whether `k` cuts one). `key` names the setting in errors.
pub(crate) fn gap_splitter(
    n: usize,
    undirected: &[(usize, usize)],
    frames: usize,
    k: usize,
    at_gap: bool,
    key: &str,
    device: Device,
) -> Result<JointBasisSplitter> {
    let asked = if at_gap { (k + 1).min(n * frames) } else { k };
    let joint_modes = JointBasis::from_graph(
        &Graph::from_edges(n, undirected)?,
        frames,
        &JointBasisConfig::new(asked),
    )?;
    let cut = if at_gap {
        joint_modes.k_at_gap(k, GAP_TOL)
    } else {
        k
    };
    ensure!(
        cut >= 1,
        "{key} = {k} lies inside the first eigenspace of the joint spectrum; choose a larger K"
    );
    splitter_leading(&joint_modes, cut, Kind::Float, device)
}

/// The joint bases of the graphs a model meets, as tch splitters of one kind on one device: a
/// [`spectral_core::BasisCache`] of [`JointBasisSplitter`]s over `T` frames with
/// `K = min(k, N·T)` modes, each built once per distinct spatial graph (same node count and edge
/// set) and shared afterwards — for batches that mix graphs of different sizes.
#[derive(Debug)]
pub struct SplitterCache {
    frames: usize,
    k: usize,
    kind: Kind,
    device: Device,
    bases: BasisCache<JointBasisSplitter>,
}

impl SplitterCache {
    /// Bases over `frames` frames with (at most) `k` joint modes, as `kind` tensors on `device`.
    pub fn new(frames: usize, k: usize, kind: Kind, device: Device) -> Self {
        Self {
            frames,
            k,
            kind,
            device,
            bases: BasisCache::new(),
        }
    }

    /// The basis of `graph` (`K = min(k, N·T)`), built on first use.
    ///
    /// # Errors
    /// Those of [`JointBasis::from_graph`] and of the tensor conversion.
    pub fn get(&self, graph: &Graph) -> Result<Arc<JointBasisSplitter>> {
        let config = JointBasisConfig::new(self.k.min(graph.n_nodes() * self.frames));
        self.bases
            .get_or_build_with(graph, self.frames, &config, |basis| {
                splitter(&basis, self.kind, self.device)
            })
    }

    /// Number of distinct graphs seen.
    pub fn len(&self) -> usize {
        self.bases.len()
    }

    /// Whether no basis was built yet.
    pub fn is_empty(&self) -> bool {
        self.bases.is_empty()
    }
}

/// The spatial graph of each graph of a batch, in its own node numbering: the edges stored as
/// `(i, j)` with `i < j` (both orientations of an undirected edge give one).
fn local_graphs(graph: &GraphBatch) -> Result<Vec<Graph>> {
    let recv = Vec::<i64>::try_from(graph.receivers().to_device(Device::Cpu))?;
    let send = Vec::<i64>::try_from(graph.senders().to_device(Device::Cpu))?;
    let mut out = Vec::with_capacity(graph.graph_sizes().len());
    let mut e0 = 0usize;
    for ((&n, off), &count) in graph
        .graph_sizes()
        .iter()
        .zip(graph.node_offsets())
        .zip(graph.edge_counts())
    {
        let edges: Vec<(usize, usize)> = (e0..e0 + count as usize)
            .map(|e| (recv[e] - off, send[e] - off))
            .filter(|(a, b)| a < b)
            .map(|(a, b)| (a as usize, b as usize))
            .collect();
        out.push(Graph::from_edges(n as usize, &edges)?);
        e0 += count as usize;
    }
    Ok(out)
}

/// The SGE layer: learnable spectral weights `w ∈ R^K` (initialised to 1).
#[derive(Debug)]
pub struct Sge {
    /// The weights `w`, `[K]`.
    pub w: Tensor,
}

impl Sge {
    /// A layer over `k` basis vectors, its weight at `path / "w"`.
    pub fn new(path: &nn::Path<'_>, k: usize) -> Self {
        Self {
            w: path.var("w", &[k as i64], nn::Init::Const(1.0)),
        }
    }

    /// `(z^sg, ã)` for a batch of signals on one graph.
    ///
    /// # Shapes
    /// `z`: `[B, T, N, d]` → `z^sg`: `[B, T, N, d]`, `ã`: `[B, K, d]`.
    ///
    /// # Errors
    /// When `z` is not `[.., T, N, d]` for this basis or the basis has another K than `w`.
    pub fn forward(&self, basis: &JointBasisSplitter, z: &Tensor) -> Result<(Tensor, Tensor)> {
        anyhow::ensure!(
            basis.k() as i64 == self.w.size()[0],
            "SGE: the basis has K = {}, the layer {}",
            basis.k(),
            self.w.size()[0]
        );
        let a = basis.coefficients(z)?;
        let w = self.w.to_kind(a.kind()).view([-1, 1]);
        let a_tilde = &a * &w;
        let z_sg = z + basis.reconstruct(&(&a * (&w - 1.0)))?;
        Ok((z_sg, a_tilde))
    }
}

impl Sge {
    /// `(z^sg, ã)` for a batch of graphs of any sizes: each graph uses its own joint basis
    /// (from `bases`, built once per distinct graph) and the leading `K_g = min(K, N_g·T)`
    /// weights; `ã` rows beyond `K_g` are zero. With `weighted = false` the weights are taken
    /// as 1 (`z^sg = z`, `ã = a`: the "without SGE" ablation, which still aligns spectral
    /// coefficients).
    ///
    /// # Shapes
    /// `z`: `[T, N_total, d]` (graphs side by side along the nodes) → `z^sg`: `[T, N_total, d]`,
    /// `ã`: `[G, K, d]`.
    ///
    /// # Errors
    /// When `z` does not match the batch or the cache's frames.
    pub fn forward_graphs(
        &self,
        bases: &SplitterCache,
        z: &Tensor,
        graph: &GraphBatch,
        weighted: bool,
    ) -> Result<(Tensor, Tensor)> {
        let size = z.size();
        ensure!(
            size.len() == 3 && size[0] == bases.frames as i64 && size[1] == graph.num_nodes(),
            "SGE: z must be [T = {}, N_total = {}, d], got {size:?}",
            bases.frames,
            graph.num_nodes()
        );
        let k = self.w.size()[0];
        let (mut parts, mut coeffs) = (Vec::new(), Vec::new());
        for ((&n, off), local) in graph
            .graph_sizes()
            .iter()
            .zip(graph.node_offsets())
            .zip(local_graphs(graph)?)
        {
            let basis = bases.get(&local)?;
            let kg = basis.k() as i64;
            let zg = z.narrow(1, off, n).unsqueeze(0); // [1, T, n, d]
            let a = basis.coefficients(&zg)?;
            let w = if weighted {
                self.w.narrow(0, 0, kg).to_kind(a.kind()).view([-1, 1])
            } else {
                Tensor::ones([kg, 1], (a.kind(), a.device()))
            };
            let zsg = &zg + basis.reconstruct(&(&a * (&w - 1.0)))?;
            parts.push(zsg.squeeze_dim(0));
            coeffs.push((&a * &w).squeeze_dim(0).constant_pad_nd([0, 0, 0, k - kg]));
        }
        Ok((Tensor::cat(&parts, 1), Tensor::stack(&coeffs, 0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring_with_chord(n: usize) -> Vec<(usize, usize)> {
        let mut e: Vec<_> = (0..n).map(|i| (i, (i + 1) % n)).collect();
        e.push((0, n / 2));
        e
    }

    fn to_vec(t: &Tensor) -> Vec<f64> {
        Vec::try_from(t.to_kind(Kind::Double).flatten(0, -1)).unwrap()
    }

    /// Forward values and the gradients w.r.t. `z` and `w` agree with spectral-core's f64
    /// kernels (its `sge_forward` and adjoint `sge_backward`), in f64 to 1e-10 and in f32 to 1e-4 (relative to the largest entry;
    /// `∂L/∂w` to 1e-6 in f64, as `w` is an f32 variable).
    #[test]
    fn agrees_with_spectral_core_forward_and_adjoint() {
        let _rng = crate::trainer::torch_rng();
        let (b, t, n, d, k) = (2usize, 4usize, 6usize, 3usize, 9usize);
        for (kind, tol) in [(Kind::Double, 1e-10), (Kind::Float, 1e-4)] {
            let (basis, split) =
                joint_basis(n, &ring_with_chord(n), t, k, kind, Device::Cpu).unwrap();
            let vs = nn::VarStore::new(Device::Cpu);
            let sge = Sge::new(&vs.root(), basis.k());
            tch::manual_seed(4);
            tch::no_grad(|| {
                sge.w
                    .shallow_clone()
                    .copy_(&(Tensor::rand([k as i64], (Kind::Float, Device::Cpu)) + 0.5))
            });
            let z = Tensor::randn(
                [b as i64, t as i64, n as i64, d as i64],
                (Kind::Double, Device::Cpu),
            );
            let zk = z.to_kind(kind).set_requires_grad(true);
            let (z_sg, a_t) = sge.forward(&split, &zk).unwrap();
            // upstream gradients
            let g = Tensor::randn(z_sg.size(), (Kind::Double, Device::Cpu));
            let h = Tensor::randn(a_t.size(), (Kind::Double, Device::Cpu));
            ((&z_sg * g.to_kind(kind)).sum(kind) + (&a_t * h.to_kind(kind)).sum(kind)).backward();

            let w = to_vec(&sge.w);
            let reference = basis.sge_forward(&to_vec(&z), &w, b, d);
            // relative to the largest reference entry
            let close = |x: &[f64], y: &[f64], what: &str, tol: f64| {
                let err = x
                    .iter()
                    .zip(y)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0, f64::max);
                let scale = y.iter().fold(1.0f64, |m, v| m.max(v.abs()));
                assert!(
                    err < tol * scale,
                    "{what} ({kind:?}): max error {err} (scale {scale})"
                );
            };
            close(&to_vec(&z_sg), &reference.z_sg, "z_sg", tol);
            close(&to_vec(&a_t), &reference.a_tilde, "a_tilde", tol);
            let grads = basis.sge_backward(&reference.a, &w, &to_vec(&g), &to_vec(&h), b, d);
            close(&to_vec(&zk.grad()), &grads.z, "dL/dz", tol);
            // w is an f32 variable, so its gradient is held in f32 whatever the kind of z
            close(&to_vec(&sge.w.grad()), &grads.w, "dL/dw", tol.max(1e-6));
        }
    }

    #[test]
    fn unit_weights_are_the_identity() {
        let _rng = crate::trainer::torch_rng();
        let (_, split) =
            joint_basis(5, &ring_with_chord(5), 3, 7, Kind::Float, Device::Cpu).unwrap();
        let vs = nn::VarStore::new(Device::Cpu);
        let sge = Sge::new(&vs.root(), 7);
        let z = Tensor::randn([2, 3, 5, 4], (Kind::Float, Device::Cpu));
        let (z_sg, a_t) = sge.forward(&split, &z).unwrap();
        assert!(z_sg.allclose(&z, 1e-6, 1e-6, false));
        assert_eq!(a_t.size(), [2, 7, 4]);
    }

    /// A batch of a 6-node ring (K = 9) and a 2-node graph (K_g = min(9, 2·4) = 8) equals each
    /// graph through spectral-core's f64 `sge_forward` with the leading `K_g` weights.
    #[test]
    fn graphs_of_different_sizes_use_their_own_bases() {
        let _rng = crate::trainer::torch_rng();
        let (t, d, k) = (4usize, 3usize, 9usize);
        let vs = nn::VarStore::new(Device::Cpu);
        let sge = Sge::new(&vs.root(), k);
        tch::manual_seed(2);
        tch::no_grad(|| {
            sge.w
                .shallow_clone()
                .copy_(&(Tensor::rand([k as i64], (Kind::Float, Device::Cpu)) + 0.5))
        });
        let ring = ring_with_chord(6);
        let pair = vec![(0, 1)];
        let graph = GraphBatch::batch(&[
            GraphBatch::from_undirected(
                6,
                &ring
                    .iter()
                    .map(|&(a, b)| (a as i64, b as i64))
                    .collect::<Vec<_>>(),
                Device::Cpu,
            )
            .unwrap(),
            GraphBatch::from_undirected(2, &[(0, 1)], Device::Cpu).unwrap(),
        ])
        .unwrap();
        let z = Tensor::randn([t as i64, 8, d as i64], (Kind::Double, Device::Cpu));
        let cache = SplitterCache::new(t, k, Kind::Double, Device::Cpu);
        let (z_sg, a_t) = sge.forward_graphs(&cache, &z, &graph, true).unwrap();
        assert_eq!(a_t.size(), [2, k as i64, d as i64]);
        let w = to_vec(&sge.w);
        for (g, (off, n, edges)) in [(0i64, 6usize, ring.clone()), (6, 2, pair)]
            .into_iter()
            .enumerate()
        {
            let (basis, _) = joint_basis(n, &edges, t, k, Kind::Double, Device::Cpu).unwrap();
            let kg = basis.k();
            let zg = to_vec(&z.narrow(1, off, n as i64));
            let r = basis.sge_forward(&zg, &w[..kg], 1, d);
            let got = to_vec(&z_sg.narrow(1, off, n as i64));
            let err = got
                .iter()
                .zip(&r.z_sg)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max);
            assert!(err < 1e-6, "graph {g}: z_sg error {err}");
            let got_a = to_vec(&a_t.get(g as i64).narrow(0, 0, kg as i64));
            let err = got_a
                .iter()
                .zip(&r.a_tilde)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max);
            assert!(err < 1e-6, "graph {g}: ã error {err}");
            let pad = a_t.get(g as i64).narrow(0, kg as i64, k as i64 - kg as i64);
            assert_eq!(pad.abs().sum(Kind::Double).double_value(&[]), 0.0);
        }
        assert_eq!(cache.len(), 2);
        // the same graphs again reuse the cached bases
        let _ = sge.forward_graphs(&cache, &z, &graph, true).unwrap();
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn wrong_k_is_an_error() {
        let _rng = crate::trainer::torch_rng();
        let (_, split) =
            joint_basis(5, &ring_with_chord(5), 3, 7, Kind::Float, Device::Cpu).unwrap();
        let vs = nn::VarStore::new(Device::Cpu);
        let sge = Sge::new(&vs.root(), 6);
        let z = Tensor::randn([1, 3, 5, 2], (Kind::Float, Device::Cpu));
        assert!(
            sge.forward(&split, &z)
                .unwrap_err()
                .to_string()
                .contains("K = 7")
        );
    }
}
