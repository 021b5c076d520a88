//! Activations and the small multi-layer perceptron every layer is made of.

use serde::{Deserialize, Serialize};
use tch::{Tensor, nn};

/// A pointwise non-linearity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// `x·σ(x)`, the EGNN/EGNO default.
    #[default]
    Silu,
    /// `max(x, 0)`.
    Relu,
    /// The exact (erf) GELU.
    Gelu,
    /// `x` for `x > 0`, `eˣ − 1` otherwise (the GAT default).
    Elu,
    /// `tanh(x)`.
    Tanh,
    /// `x` for `x > 0`, `0.01·x` otherwise (PyTorch's default slope; EGNO's temporal convolution).
    LeakyRelu,
}

impl Activation {
    /// Applies the non-linearity.
    pub fn apply(self, x: &Tensor) -> Tensor {
        match self {
            Activation::Silu => x.silu(),
            Activation::Relu => x.relu(),
            Activation::Gelu => x.gelu("none"),
            Activation::Elu => x.elu(),
            Activation::Tanh => x.tanh(),
            Activation::LeakyRelu => x.leaky_relu(),
        }
    }
}

/// `Linear → act → Linear → … → Linear [→ act]`, the linear layers named `0, 1, …` under its
/// path (the PyTorch reference in `tests/golden/reference.py` stores them as an `nn.ModuleList`,
/// so the names agree). Every linear layer starts as PyTorch's `nn.Linear` ([`linear`]).
#[derive(Debug)]
pub struct Mlp {
    linears: Vec<nn::Linear>,
    act: Activation,
    last_act: bool,
}

impl Mlp {
    /// `dims = [in, hidden.., out]`; `last_act` puts the non-linearity after the last layer too;
    /// `last` overrides the initialisation and bias of the last layer.
    ///
    /// # Panics
    /// When `dims` has fewer than two entries.
    pub fn new(
        p: &nn::Path<'_>,
        dims: &[i64],
        act: Activation,
        last_act: bool,
        last: Option<nn::LinearConfig>,
    ) -> Self {
        assert!(
            dims.len() >= 2,
            "Mlp::new: dims needs at least [in, out], got {dims:?}"
        );
        let n = dims.len() - 1;
        let linears = (0..n)
            .map(|i| {
                let cfg = if i + 1 == n {
                    last.unwrap_or_else(|| torch_default(dims[i], true))
                } else {
                    torch_default(dims[i], true)
                };
                nn::linear(p / i, dims[i], dims[i + 1], cfg)
            })
            .collect();
        Self {
            linears,
            act,
            last_act,
        }
    }

    /// The MLP applied to the edge inputs `[h_i, h_j, s_ij]` (receiver features, sender features,
    /// edge scalars) without forming that `[E, 2H + S]` concatenation: the first layer
    /// `W [h_i; h_j; s] + b = (W_i h)_i + (W_j h)_j + W_s s + b` projects the `N` nodes once and
    /// gathers per edge, a factor `E/N` (the mean degree) fewer multiply-adds there. The same
    /// function as `forward(cat([h_i, h_j, s]))` up to rounding (the golden tests compare it with
    /// the concatenating PyTorch reference).
    ///
    /// # Shapes
    /// `h: [N, H]`, `edge_scalars: [E, S]` → `[E, out]`.
    pub(crate) fn forward_edges(
        &self,
        h: &Tensor,
        graph: &crate::GraphBatch,
        edge_scalars: &Tensor,
    ) -> Tensor {
        let first = &self.linears[0];
        let hid = h.size()[1];
        let w = &first.ws;
        let out = w.size()[0];
        // [N, 2·out]: the receiver and the sender projections side by side.
        let proj = h.matmul(&Tensor::cat(&[w.narrow(1, 0, hid), w.narrow(1, hid, hid)], 0).tr());
        let pre = proj.narrow(1, 0, out).index_select(0, graph.receivers())
            + proj.narrow(1, out, out).index_select(0, graph.senders())
            + edge_scalars.linear(
                &w.narrow(1, 2 * hid, w.size()[1] - 2 * hid),
                first.bs.as_ref(),
            );
        self.forward_from(1, pre)
    }

    /// Continues after the linear layer `start − 1` has produced `pre`.
    fn forward_from(&self, start: usize, pre: Tensor) -> Tensor {
        let n = self.linears.len();
        let mut h = pre;
        for i in start - 1..n {
            if i >= start {
                let lin = &self.linears[i];
                h = h.linear(&lin.ws, lin.bs.as_ref());
            }
            if i + 1 < n || self.last_act {
                h = self.act.apply(&h);
            }
        }
        h
    }

    /// The input of the last linear layer (every layer but the last, each followed by the
    /// non-linearity): `forward(x) = last(hidden(x))` when the MLP has no final activation.
    ///
    /// # Shapes
    /// `x: [.., in]` → `[.., width of the last layer's input]`.
    pub(crate) fn hidden(&self, x: &Tensor) -> Tensor {
        let mut h = x.shallow_clone();
        for lin in &self.linears[..self.linears.len() - 1] {
            h = self.act.apply(&h.linear(&lin.ws, lin.bs.as_ref()));
        }
        h
    }

    /// The last linear layer.
    pub(crate) fn last(&self) -> &nn::Linear {
        &self.linears[self.linears.len() - 1]
    }

    /// Applies the layers to the last axis of `x`.
    ///
    /// # Shapes
    /// `x: [.., in]` → `[.., out]`.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let n = self.linears.len();
        let mut h = x.shallow_clone();
        for (i, lin) in self.linears.iter().enumerate() {
            h = h.linear(&lin.ws, lin.bs.as_ref());
            if i + 1 < n || self.last_act {
                h = self.act.apply(&h);
            }
        }
        h
    }
}

/// Xavier-uniform with a gain: `U(±gain·√(6 / (fan_in + fan_out)))` (PyTorch's
/// `nn.init.xavier_uniform_`).
pub fn xavier_uniform(fan_in: i64, fan_out: i64, gain: f64) -> nn::Init {
    let bound = gain * (6.0 / (fan_in + fan_out) as f64).sqrt();
    nn::Init::Uniform {
        lo: -bound,
        up: bound,
    }
}

/// PyTorch's `nn.Linear` initialisation: weight and bias `U(±1/√fan_in)`. (tch's default weight
/// initialisation is Kaiming-uniform with the ReLU gain, √6 times wider, which makes deep residual
/// stacks such as EGNO start far from the identity.) Every linear layer of this crate uses it, so
/// a model starts like its PyTorch counterpart.
pub(crate) fn torch_default(fan_in: i64, bias: bool) -> nn::LinearConfig {
    let bound = 1.0 / (fan_in.max(1) as f64).sqrt();
    let init = nn::Init::Uniform {
        lo: -bound,
        up: bound,
    };
    nn::LinearConfig {
        ws_init: init,
        bs_init: Some(init),
        bias,
    }
}

/// A linear layer `in_dim → out_dim` initialised as PyTorch's `nn.Linear` (weight and bias
/// `U(±1/√in_dim)`; tch's own default is √6 times wider).
pub fn linear(p: nn::Path<'_>, in_dim: i64, out_dim: i64, bias: bool) -> nn::Linear {
    nn::linear(p, in_dim, out_dim, torch_default(in_dim, bias))
}
