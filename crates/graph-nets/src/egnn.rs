//! The E(n)-equivariant graph layer of Satorras, Hoogeboom & Welling (2021), with the velocity
//! term that EGNO (Xu et al., 2024) uses.

use serde::{Deserialize, Serialize};
use tch::{Tensor, nn};

use crate::batch::GraphBatch;
use crate::error::{Error, Result, check_shape, ensure_at_least, ensure_config};
use crate::mlp::{Activation, Mlp, xavier_uniform};

/// Settings of an [`EgnnLayer`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EgnnLayerConfig {
    /// Width of the invariant node features `h` (input and output) and of the messages.
    pub hidden: i64,
    /// Width of the edge attributes `e_ij` (0: none).
    pub edge_dim: i64,
    /// Carry velocities: `v' = φ_v(h)·v + Δ`, `x' = x + v'` (EGNN eq. 7) instead of `x' = x + Δ`.
    pub with_velocity: bool,
    /// Largest norm of the aggregated coordinate update `Δ_i` (rescaled, not clipped per axis, so
    /// the layer stays exactly equivariant); `None` for no limit.
    pub coord_clamp: Option<f64>,
    /// The non-linearity of every MLP.
    pub activation: Activation,
    /// Which update rule (EGNO's or GF-NODE's, see [`EgnnStyle`]).
    pub style: EgnnStyle,
}

/// The two EGNN update rules of the workspace's decoders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EgnnStyle {
    /// EGNO's layer: `v' = φ_v(h)·v + Δ`, `x' = x + v'`, residual `h' = h + φ_h(h, Σm)`, and a
    /// bias-free last coordinate layer initialised near zero (xavier gain 0.001).
    #[default]
    Egno,
    /// GF-NODE's layer (its authors' `EGNN_Layer`): `x' = x + φ_v(h)·v + Δ` with the velocity
    /// passed through unchanged, `h' = φ_h(h, Σm)` without residual, and a last coordinate layer
    /// with bias and PyTorch's default initialisation.
    GfNode,
}

impl Default for EgnnLayerConfig {
    fn default() -> Self {
        Self {
            hidden: 64,
            edge_dim: 0,
            with_velocity: true,
            coord_clamp: Some(100.0),
            activation: Activation::Silu,
            style: EgnnStyle::Egno,
        }
    }
}

impl EgnnLayerConfig {
    /// Validates the settings.
    ///
    /// # Errors
    /// A non-positive `hidden`, a negative `edge_dim` or a non-positive `coord_clamp`.
    pub fn check(&self) -> Result<()> {
        const C: &str = "EgnnLayerConfig";
        ensure_at_least(C, "hidden", self.hidden, 1)?;
        ensure_at_least(C, "edge_dim", self.edge_dim, 0)?;
        ensure_config(
            self.coord_clamp.is_none_or(|c| c > 0.0),
            C,
            "coord_clamp",
            || format!("must be positive, got {:?}", self.coord_clamp),
        )
    }

    /// Creates the layer's variables under `p`: `phi_e` (messages), `phi_x` (coordinate weights),
    /// `phi_h` (node update) and, with velocities, `phi_v`.
    ///
    /// # Errors
    /// As [`EgnnLayerConfig::check`].
    pub fn build(&self, p: nn::Path<'_>) -> Result<EgnnLayer> {
        self.check()?;
        let (h, act) = (self.hidden, self.activation);
        let phi_e = Mlp::new(
            &(&p / "phi_e"),
            &[2 * h + 1 + self.edge_dim, h, h],
            act,
            true,
            None,
        );
        // EGNO: the last coordinate layer starts near zero (EGNN's xavier gain 0.001), so early
        // layers barely move the particles. GF-NODE keeps PyTorch's default `nn.Linear`.
        let coord_last = match self.style {
            EgnnStyle::Egno => Some(nn::LinearConfig {
                ws_init: xavier_uniform(h, 1, 0.001),
                bs_init: None,
                bias: false,
            }),
            EgnnStyle::GfNode => None,
        };
        let phi_x = Mlp::new(&(&p / "phi_x"), &[h, h, 1], act, false, coord_last);
        let phi_h = Mlp::new(&(&p / "phi_h"), &[2 * h, h, h], act, false, None);
        let phi_v = self
            .with_velocity
            .then(|| Mlp::new(&(&p / "phi_v"), &[h, h, 1], act, false, None));
        Ok(EgnnLayer {
            cfg: self.clone(),
            phi_e,
            phi_x,
            phi_h,
            phi_v,
        })
    }
}

/// Positions, invariant features and (optionally) velocities of a set of nodes.
#[derive(Debug)]
pub struct EgnnState {
    /// `[N, 3]` positions.
    pub x: Tensor,
    /// `[N, H]` invariant features.
    pub h: Tensor,
    /// `[N, 3]` velocities, when the layer carries them.
    pub v: Option<Tensor>,
}

/// One EGNN layer (Satorras et al. 2021, eqs. 3–6, with eq. 7's velocity):
///
/// ```text
/// m_ij = φ_e(h_i, h_j, ‖x_i − x_j‖², e_ij)
/// Δ_i  = clamp( mean_{j→i} (x_i − x_j)·φ_x(m_ij) )
/// v_i' = φ_v(h_i)·v_i + Δ_i,   x_i' = x_i + v_i'        (with velocities)
/// x_i' = x_i + Δ_i                                        (without)
/// h_i' = h_i + φ_h(h_i, Σ_{j→i} m_ij)
/// ```
///
/// With [`EgnnStyle::GfNode`]: `x_i' = x_i + φ_v(h_i)·v_i + Δ_i`, `v_i' = v_i`,
/// `h_i' = φ_h(h_i, Σ_{j→i} m_ij)`.
///
/// `x'` and `v'` are E(3)-equivariant (rotations, reflections; `x'` also translations), `h'`
/// invariant.
#[derive(Debug)]
pub struct EgnnLayer {
    cfg: EgnnLayerConfig,
    phi_e: Mlp,
    phi_x: Mlp,
    phi_h: Mlp,
    phi_v: Option<Mlp>,
}

impl EgnnLayer {
    /// The settings it was built with.
    pub fn config(&self) -> &EgnnLayerConfig {
        &self.cfg
    }

    /// Validating forward pass.
    ///
    /// # Shapes
    /// - `x: [N, 3]`, `h: [N, H]`, `v: [N, 3]` (exactly when built `with_velocity`),
    /// - `edge_attr: [E, edge_dim]` (exactly when `edge_dim > 0`), `N`, `E` those of `graph`;
    /// - returns `x': [N, 3]`, `h': [N, H]`, `v': [N, 3]`.
    ///
    /// # Errors
    /// A wrong shape, or an optional input given/missing against the configuration.
    pub fn f_forward(
        &self,
        x: &Tensor,
        h: &Tensor,
        v: Option<&Tensor>,
        graph: &GraphBatch,
        edge_attr: Option<&Tensor>,
    ) -> Result<EgnnState> {
        const OP: &str = "EgnnLayer::forward";
        let n = Some(graph.num_nodes());
        check_shape(OP, "x", x, &[n, Some(3)])?;
        check_shape(OP, "h", h, &[n, Some(self.cfg.hidden)])?;
        match (v, self.cfg.with_velocity) {
            (Some(v), true) => check_shape(OP, "v", v, &[n, Some(3)])?,
            (None, false) => {}
            (Some(_), false) => {
                return Err(Error::Input {
                    op: OP,
                    reason: "velocities given to a layer built without `with_velocity`".into(),
                });
            }
            (None, true) => {
                return Err(Error::Input {
                    op: OP,
                    reason: "the layer was built `with_velocity` but got no velocities".into(),
                });
            }
        }
        check_edge_attr(OP, edge_attr, self.cfg.edge_dim, graph.num_edges())?;
        Ok(self.forward_unchecked(x, h, v, graph, edge_attr))
    }

    /// Forward pass; see [`EgnnLayer::f_forward`] for the shapes.
    ///
    /// # Panics
    /// Where [`EgnnLayer::f_forward`] returns an error.
    #[track_caller]
    pub fn forward(
        &self,
        x: &Tensor,
        h: &Tensor,
        v: Option<&Tensor>,
        graph: &GraphBatch,
        edge_attr: Option<&Tensor>,
    ) -> EgnnState {
        self.f_forward(x, h, v, graph, edge_attr)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The layer's coordinate update as a linear function of the last weights of its
    /// coordinate heads (what a closed-form readout fit solves, seed 002):
    /// `x_new = base + feats · θ`, `θ = [w_x; b_x; w_v; b_v]` — the last linear layer of
    /// `phi_x` (weights, and bias where it has one) then, with velocities, that of `phi_v` —
    /// in the order of [`EgnnLayer::readout_width`]. Exact while the coordinate clamp does not
    /// bind (`‖Δx‖ < coord_clamp`).
    ///
    /// # Shapes
    /// `x`, `v`: `[N, 3]`, `h`: `[N, H]` → `base: [N, 3]`, `feats: [N, 3, P]`.
    pub(crate) fn readout_rows_unchecked(
        &self,
        x: &Tensor,
        h: &Tensor,
        v: Option<&Tensor>,
        graph: &GraphBatch,
        edge_attr: Option<&Tensor>,
    ) -> (Tensor, Tensor) {
        let (rij, m) = self.messages(x, h, graph, edge_attr);
        let mut f = self.phi_x.hidden(&m);
        if self.phi_x.last().bs.is_some() {
            f = Tensor::cat(&[&f, &f.ones_like().narrow(1, 0, 1)], 1);
        }
        let (e, k) = (f.size()[0], f.size()[1]);
        // Δx = mean_j r_ij (f_ij · w_x + b_x): one column per weight
        let mut feats = vec![
            graph
                .mean_at_receivers(&(rij.unsqueeze(-1) * f.unsqueeze(1)).reshape([e, 3 * k]))
                .reshape([-1, 3, k]),
        ];
        if let (Some(phi_v), Some(v)) = (&self.phi_v, v) {
            // phi_v(h) v = (g(h) · w_v + b_v) v
            let mut g = phi_v.hidden(h);
            if phi_v.last().bs.is_some() {
                g = Tensor::cat(&[&g, &g.ones_like().narrow(1, 0, 1)], 1);
            }
            feats.push(v.unsqueeze(-1) * g.unsqueeze(1));
        }
        (x.shallow_clone(), Tensor::cat(&feats, -1))
    }

    /// `P`, the number of coordinate-head weights a closed-form readout fit solves for.
    pub fn readout_width(&self) -> i64 {
        let width = |m: &Mlp| m.last().ws.size()[1] + i64::from(m.last().bs.is_some());
        width(&self.phi_x) + self.phi_v.as_ref().map_or(0, width)
    }

    /// Loads `θ = [w_x; b_x; w_v; b_v]` (`[P]`, the biases where the heads have them; see
    /// [`Egno::f_readout_rows`](crate::Egno::f_readout_rows)) into the last linear layers of
    /// the coordinate heads.
    ///
    /// # Errors
    /// `θ` not of `P` values.
    pub fn set_readout(&self, theta: &Tensor) -> Result<()> {
        check_shape(
            "EgnnLayer::set_readout",
            "theta",
            theta,
            &[Some(self.readout_width())],
        )?;
        let _guard = tch::no_grad_guard();
        let mut at = 0;
        let heads = std::iter::once(&self.phi_x).chain(self.phi_v.as_ref());
        for m in heads {
            let last = m.last();
            let k = last.ws.size()[1];
            let w = theta.narrow(0, at, k).to_kind(last.ws.kind());
            last.ws.shallow_clone().copy_(&w.view([1, k]));
            at += k;
            if let Some(b) = &last.bs {
                b.shallow_clone()
                    .copy_(&theta.narrow(0, at, 1).to_kind(b.kind()));
                at += 1;
            }
        }
        Ok(())
    }

    /// The edge vectors `r_ij = x_i − x_j` (`[E, 3]`) and messages
    /// `m_ij = φ_e(h_i, h_j, ‖r_ij‖², a_ij)` (`[E, H]`).
    fn messages(
        &self,
        x: &Tensor,
        h: &Tensor,
        graph: &GraphBatch,
        edge_attr: Option<&Tensor>,
    ) -> (Tensor, Tensor) {
        let rij = graph.edge_vectors(x);
        let d2 = rij.square().sum_dim_intlist(-1, true, None);
        let scalars = match edge_attr {
            Some(e) => Tensor::cat(&[&d2, e], -1),
            None => d2,
        };
        let m = self.phi_e.forward_edges(h, graph, &scalars);
        (rij, m)
    }

    /// The layer without input validation (callers inside the crate validate once per model).
    pub(crate) fn forward_unchecked(
        &self,
        x: &Tensor,
        h: &Tensor,
        v: Option<&Tensor>,
        graph: &GraphBatch,
        edge_attr: Option<&Tensor>,
    ) -> EgnnState {
        let (rij, m) = self.messages(x, h, graph, edge_attr);

        let mut delta = graph.mean_at_receivers(&(&rij * self.phi_x.forward(&m)));
        if let Some(c) = self.cfg.coord_clamp {
            delta = clamp_norm(&delta, c);
        }
        let (x_new, v_new) = match (&self.phi_v, v, self.cfg.style) {
            (Some(phi_v), Some(v), EgnnStyle::Egno) => {
                let v_new = phi_v.forward(h) * v + delta;
                (x + &v_new, Some(v_new))
            }
            (Some(phi_v), Some(v), EgnnStyle::GfNode) => {
                (x + phi_v.forward(h) * v + delta, Some(v.shallow_clone()))
            }
            _ => (x + delta, None),
        };
        let agg = graph.sum_at_receivers(&m);
        let update = self.phi_h.forward(&Tensor::cat(&[h, &agg], -1));
        let h_new = match self.cfg.style {
            EgnnStyle::Egno => h + update,
            EgnnStyle::GfNode => update,
        };
        EgnnState {
            x: x_new,
            h: h_new,
            v: v_new,
        }
    }
}

/// Rescales each row of `delta: [N, 3]` to norm at most `c` (rotation-equivariant).
fn clamp_norm(delta: &Tensor, c: f64) -> Tensor {
    let norm = delta.square().sum_dim_intlist(-1, true, None).sqrt();
    let scale = (c / norm.clamp_min(1e-12)).clamp_max(1.0);
    delta * scale
}

/// Checks optional edge attributes against the configured width.
pub(crate) fn check_edge_attr(
    op: &'static str,
    edge_attr: Option<&Tensor>,
    edge_dim: i64,
    num_edges: i64,
) -> Result<()> {
    match (edge_attr, edge_dim) {
        (Some(e), d) if d > 0 => check_shape(op, "edge_attr", e, &[Some(num_edges), Some(d)]),
        (None, 0) => Ok(()),
        (Some(e), _) => Err(Error::Input {
            op,
            reason: format!(
                "edge attributes of shape {:?} given to a model built with edge_dim = 0",
                e.size()
            ),
        }),
        (None, d) => Err(Error::Input {
            op,
            reason: format!("the model was built with edge_dim = {d} but got no edge attributes"),
        }),
    }
}
