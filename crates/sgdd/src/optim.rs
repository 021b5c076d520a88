//! Adam (Kingma & Ba, 2015) with its state held as named tensors, so that a checkpoint can hold
//! the optimiser exactly and `train --resume` continues bit for bit. Same update as
//! `torch.optim.Adam` (no AMSGrad; optional decoupled weight decay as AdamW).

use std::collections::BTreeMap;

use anyhow::{Result, ensure};
use serde::{Deserialize, Serialize};
use tch::{Tensor, nn::VarStore};

/// Adam's hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdamConfig {
    /// Learning rate.
    pub lr: f64,
    /// First-moment decay β₁.
    pub beta1: f64,
    /// Second-moment decay β₂.
    pub beta2: f64,
    /// Denominator offset ε.
    pub eps: f64,
    /// Decoupled weight decay (AdamW); 0 for plain Adam.
    pub weight_decay: f64,
    /// Clip the global gradient norm to this value (0: no clipping).
    pub clip_grad_norm: f64,
}

impl Default for AdamConfig {
    fn default() -> Self {
        Self {
            lr: 5e-4,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 1e-12,
            clip_grad_norm: 0.0,
        }
    }
}

/// Adam over the trainable variables of a [`VarStore`], in their name order.
#[derive(Debug)]
pub struct Adam {
    config: AdamConfig,
    names: Vec<String>,
    params: Vec<Tensor>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    step: i64,
}

impl Adam {
    /// Adam over every trainable variable of `vs` (frozen ones are skipped).
    pub fn new(vs: &VarStore, config: AdamConfig) -> Self {
        let vars: BTreeMap<String, Tensor> = vs
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect();
        let (names, params): (Vec<_>, Vec<_>) = vars.into_iter().unzip();
        let m = params.iter().map(Tensor::zeros_like).collect();
        let v = params.iter().map(Tensor::zeros_like).collect();
        Self {
            config,
            names,
            params,
            m,
            v,
            step: 0,
        }
    }

    /// Steps taken so far.
    pub fn steps(&self) -> i64 {
        self.step
    }

    /// Sets the learning rate (for schedules).
    pub fn set_lr(&mut self, lr: f64) {
        self.config.lr = lr;
    }

    /// Zeroes the gradients of the parameters.
    pub fn zero_grad(&mut self) {
        for p in &mut self.params {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.detach_().zero_();
            }
        }
    }

    /// `loss.backward()` then one Adam step; returns the global gradient norm before clipping.
    pub fn backward_step(&mut self, loss: &Tensor) -> f64 {
        self.zero_grad();
        loss.backward();
        self.step_with_grads()
    }

    fn step_with_grads(&mut self) -> f64 {
        let c = self.config;
        self.step += 1;
        let _guard = tch::no_grad_guard();
        let grads: Vec<Option<Tensor>> = self
            .params
            .iter()
            .map(|p| {
                let g = p.grad();
                g.defined().then_some(g)
            })
            .collect();
        let norm = grads
            .iter()
            .flatten()
            .map(|g| g.square().sum(tch::Kind::Double).double_value(&[]))
            .sum::<f64>()
            .sqrt();
        let scale = if c.clip_grad_norm > 0.0 && norm > c.clip_grad_norm {
            c.clip_grad_norm / (norm + 1e-6)
        } else {
            1.0
        };
        let bc1 = 1.0 - c.beta1.powi(self.step as i32);
        let bc2 = 1.0 - c.beta2.powi(self.step as i32);
        for (i, g) in grads.into_iter().enumerate() {
            let Some(g) = g else { continue };
            let g = if scale == 1.0 { g } else { g * scale };
            let p = &mut self.params[i];
            if c.weight_decay > 0.0 {
                let _ = p.g_mul_scalar_(1.0 - c.lr * c.weight_decay);
            }
            let _ = self.m[i]
                .g_mul_scalar_(c.beta1)
                .g_add_(&(&g * (1.0 - c.beta1)));
            let _ = self.v[i]
                .g_mul_scalar_(c.beta2)
                .g_add_(&(g.square() * (1.0 - c.beta2)));
            let denom = (&self.v[i] / bc2).sqrt() + c.eps;
            let update = (&self.m[i] / bc1) / denom * c.lr;
            let _ = p.g_sub_(&update);
        }
        norm
    }

    /// The optimiser state as named tensors (`adam.m.<param>`, `adam.v.<param>`) and the step.
    pub fn state(&self) -> (Vec<(String, Tensor)>, i64) {
        let mut out = Vec::with_capacity(2 * self.names.len());
        for (name, (m, v)) in self.names.iter().zip(self.m.iter().zip(&self.v)) {
            out.push((format!("adam.m.{name}"), m.shallow_clone()));
            out.push((format!("adam.v.{name}"), v.shallow_clone()));
        }
        (out, self.step)
    }

    /// Restores a state written by [`Adam::state`].
    pub fn load_state(&mut self, tensors: &BTreeMap<String, Tensor>, step: i64) -> Result<()> {
        let _guard = tch::no_grad_guard();
        for (i, name) in self.names.iter().enumerate() {
            for (kind, dst) in [("m", &mut self.m[i]), ("v", &mut self.v[i])] {
                let key = format!("adam.{kind}.{name}");
                let src = tensors
                    .get(&key)
                    .ok_or_else(|| anyhow::anyhow!("checkpoint has no optimiser tensor `{key}`"))?;
                ensure!(
                    src.size() == dst.size(),
                    "optimiser tensor `{key}` has shape {:?}, the model needs {:?}",
                    src.size(),
                    dst.size()
                );
                dst.copy_(src);
            }
        }
        self.step = step;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind, nn};

    /// Same trajectory as torch.optim.Adam on f(x) = Σ (x − 3)², computed by hand in f64.
    #[test]
    fn matches_the_adam_recursion() {
        let vs = VarStore::new(Device::Cpu);
        let x = vs.root().var("x", &[2], nn::Init::Const(0.0));
        let cfg = AdamConfig {
            lr: 0.1,
            weight_decay: 0.0,
            ..Default::default()
        };
        let mut opt = Adam::new(&vs, cfg);
        let (mut xr, mut m, mut v) = (0.0f64, 0.0f64, 0.0f64);
        for t in 1..=20 {
            let loss = (&x - 3.0).square().sum(Kind::Float);
            opt.backward_step(&loss);
            let g = 2.0 * (xr - 3.0);
            m = 0.9 * m + 0.1 * g;
            v = 0.999 * v + 0.001 * g * g;
            let mh = m / (1.0 - 0.9f64.powi(t));
            let vh = v / (1.0 - 0.999f64.powi(t));
            xr -= 0.1 * mh / (vh.sqrt() + 1e-8);
        }
        let got = x.double_value(&[0]);
        assert!((got - xr).abs() < 1e-5, "{got} vs {xr}");
    }

    #[test]
    fn state_round_trip_continues_identically() {
        let run = |split: Option<usize>| {
            let vs = VarStore::new(Device::Cpu);
            tch::manual_seed(1);
            let w = vs.root().randn("w", &[3, 3], 0.0, 1.0);
            let mut opt = Adam::new(&vs, AdamConfig::default());
            let step = |opt: &mut Adam| opt.backward_step(&w.matmul(&w).sin().sum(Kind::Float));
            for i in 0..10 {
                if Some(i) == split {
                    let (state, n) = opt.state();
                    let state: BTreeMap<_, _> =
                        state.into_iter().map(|(k, t)| (k, t.copy())).collect();
                    let mut fresh = Adam::new(&vs, AdamConfig::default());
                    fresh.load_state(&state, n).unwrap();
                    opt = fresh;
                }
                step(&mut opt);
            }
            Vec::<f32>::try_from(w.flatten(0, -1)).unwrap()
        };
        assert_eq!(run(None), run(Some(4)));
    }

    #[test]
    fn missing_state_is_an_error() {
        let vs = VarStore::new(Device::Cpu);
        let _ = vs.root().var("w", &[2], nn::Init::Const(1.0));
        let mut opt = Adam::new(&vs, AdamConfig::default());
        let err = opt.load_state(&BTreeMap::new(), 3).unwrap_err();
        assert!(err.to_string().contains("adam.m.w"), "{err}");
    }
}
