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
///
/// Gradients are taken with `torch.autograd.grad` semantics ([`Tensor::f_run_backward`] on the
/// parameters), never accumulated into `.grad`: a parameter the loss does not reach on a step
/// has *no* gradient and is skipped entirely — no momentum, no weight decay, no bias-correction
/// step — as `torch.optim.Adam` skips a parameter whose `.grad` is `None` after
/// `zero_grad(set_to_none=True)`. Each parameter keeps its own step count, as torch's does. So a
/// run restarted from a checkpoint takes exactly the steps the uninterrupted run takes.
#[derive(Debug)]
pub struct Adam {
    config: AdamConfig,
    names: Vec<String>,
    params: Vec<Tensor>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    /// Steps that updated each parameter (its bias-correction count).
    param_steps: Vec<i64>,
    /// Learning-rate multiplier of each parameter (1 unless set by [`Adam::set_lr_scale`]).
    lr_scale: Vec<f64>,
    step: i64,
}

/// What one optimiser step saw.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepInfo {
    /// Global gradient norm before clipping (over the parameters that had a gradient).
    pub grad_norm: f64,
    /// Parameters that had a gradient and were updated.
    pub updated: usize,
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
        let param_steps = vec![0; names.len()];
        let lr_scale = vec![1.0; names.len()];
        Self {
            config,
            names,
            params,
            m,
            v,
            param_steps,
            lr_scale,
            step: 0,
        }
    }

    /// Steps taken so far.
    pub fn steps(&self) -> i64 {
        self.step
    }

    /// The hyper-parameters in use.
    pub fn config(&self) -> AdamConfig {
        self.config
    }

    /// Multiplies the learning rate of every parameter whose name starts with `prefix` by
    /// `scale` (a parameter group with its own rate); returns how many parameters matched.
    pub fn set_lr_scale(&mut self, prefix: &str, scale: f64) -> usize {
        let mut n = 0;
        for (name, s) in self.names.iter().zip(&mut self.lr_scale) {
            if name.starts_with(prefix) {
                *s = scale;
                n += 1;
            }
        }
        n
    }

    /// The parameters, in the order of [`Adam::gradients`].
    pub fn params(&self) -> &[Tensor] {
        &self.params
    }

    /// Sets the learning rate (for schedules).
    pub fn set_lr(&mut self, lr: f64) {
        self.config.lr = lr;
    }

    /// The gradients of `loss` with respect to the parameters (`None` where the loss does not
    /// depend on a parameter), without touching any `.grad`.
    pub fn gradients(&self, loss: &Tensor) -> Result<Vec<Option<Tensor>>> {
        if self.params.is_empty() {
            return Ok(Vec::new());
        }
        let grads = Tensor::f_run_backward(&[loss], &self.params, false, false)?;
        Ok(grads
            .into_iter()
            .map(|g| g.defined().then_some(g))
            .collect())
    }

    /// The global L2 norm of `grads` (parameters without a gradient count as absent).
    pub fn grad_norm(grads: &[Option<Tensor>]) -> f64 {
        grads
            .iter()
            .flatten()
            .map(|g| g.square().sum(tch::Kind::Double).double_value(&[]))
            .sum::<f64>()
            .sqrt()
    }

    /// Gradients of `loss`, then one Adam step along them.
    pub fn backward_step(&mut self, loss: &Tensor) -> Result<StepInfo> {
        let grads = self.gradients(loss)?;
        Ok(self.step_with(grads))
    }

    /// One Adam step along `grads` (from [`Adam::gradients`]; `None`: the parameter is skipped).
    ///
    /// # Panics
    /// When `grads` does not hold one entry per parameter.
    #[track_caller]
    pub fn step_with(&mut self, grads: Vec<Option<Tensor>>) -> StepInfo {
        assert_eq!(
            grads.len(),
            self.params.len(),
            "one gradient slot per parameter"
        );
        let c = self.config;
        self.step += 1;
        let _guard = tch::no_grad_guard();
        let norm = Self::grad_norm(&grads);
        let scale = if c.clip_grad_norm > 0.0 && norm > c.clip_grad_norm {
            c.clip_grad_norm / (norm + 1e-6)
        } else {
            1.0
        };
        let mut updated = 0;
        for (i, g) in grads.into_iter().enumerate() {
            let Some(g) = g else { continue };
            updated += 1;
            self.param_steps[i] += 1;
            let t = self.param_steps[i] as i32;
            let bc1 = 1.0 - c.beta1.powi(t);
            let bc2 = 1.0 - c.beta2.powi(t);
            let g = if scale == 1.0 { g } else { g * scale };
            let lr = c.lr * self.lr_scale[i];
            let p = &mut self.params[i];
            if c.weight_decay > 0.0 {
                let _ = p.g_mul_scalar_(1.0 - lr * c.weight_decay);
            }
            let _ = self.m[i]
                .g_mul_scalar_(c.beta1)
                .g_add_(&(&g * (1.0 - c.beta1)));
            let _ = self.v[i]
                .g_mul_scalar_(c.beta2)
                .g_add_(&(g.square() * (1.0 - c.beta2)));
            let denom = (&self.v[i] / bc2).sqrt() + c.eps;
            let update = (&self.m[i] / bc1) / denom * lr;
            let _ = p.g_sub_(&update);
        }
        StepInfo {
            grad_norm: norm,
            updated,
        }
    }

    /// Whether every moment estimate is finite (a checkpoint of a non-finite state could not
    /// be resumed).
    pub fn is_finite(&self) -> bool {
        self.m
            .iter()
            .chain(&self.v)
            .all(|t| t.isfinite().all().int64_value(&[]) == 1)
    }

    /// The optimiser state as named tensors (`adam.m.<param>`, `adam.v.<param>`,
    /// `adam.step.<param>`) and the global step.
    pub fn state(&self) -> (Vec<(String, Tensor)>, i64) {
        let mut out = Vec::with_capacity(3 * self.names.len());
        for (i, name) in self.names.iter().enumerate() {
            out.push((format!("adam.m.{name}"), self.m[i].shallow_clone()));
            out.push((format!("adam.v.{name}"), self.v[i].shallow_clone()));
            out.push((
                format!("adam.step.{name}"),
                Tensor::from(self.param_steps[i]),
            ));
        }
        (out, self.step)
    }

    /// Restores a state written by [`Adam::state`].
    pub fn load_state(&mut self, tensors: &BTreeMap<String, Tensor>, step: i64) -> Result<()> {
        let _guard = tch::no_grad_guard();
        let get = |key: &str| {
            tensors
                .get(key)
                .ok_or_else(|| anyhow::anyhow!("checkpoint has no optimiser tensor `{key}`"))
        };
        for (i, name) in self.names.iter().enumerate() {
            for (kind, dst) in [("m", &mut self.m[i]), ("v", &mut self.v[i])] {
                let key = format!("adam.{kind}.{name}");
                let src = get(&key)?;
                ensure!(
                    src.size() == dst.size(),
                    "optimiser tensor `{key}` has shape {:?}, the model needs {:?}",
                    src.size(),
                    dst.size()
                );
                dst.copy_(src);
            }
            let key = format!("adam.step.{name}");
            let s = get(&key)?;
            ensure!(
                s.numel() == 1 && s.kind() == tch::Kind::Int64,
                "optimiser tensor `{key}` must be one int64"
            );
            self.param_steps[i] = s.int64_value(&[]);
            ensure!(
                (0..=step).contains(&self.param_steps[i]),
                "optimiser tensor `{key}` = {} is outside 0..={step}",
                self.param_steps[i]
            );
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
        let _rng = crate::trainer::torch_rng();
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
            opt.backward_step(&loss).unwrap();
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
        let _rng = crate::trainer::torch_rng();
        let run = |split: Option<usize>| {
            let vs = VarStore::new(Device::Cpu);
            tch::manual_seed(1);
            let w = vs.root().randn("w", &[3, 3], 0.0, 1.0);
            let mut opt = Adam::new(&vs, AdamConfig::default());
            let step = |opt: &mut Adam| {
                opt.backward_step(&w.matmul(&w).sin().sum(Kind::Float))
                    .unwrap()
            };
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

    /// torch.optim.Adam with `zero_grad(set_to_none=True)`: a parameter the loss does not
    /// reach keeps its value (no momentum step, no weight decay) and its own step count, so
    /// its later updates are bias-corrected as torch's are.
    #[test]
    fn a_parameter_without_gradient_is_skipped() {
        let _rng = crate::trainer::torch_rng();
        let vs = VarStore::new(Device::Cpu);
        let a = vs.root().var("a", &[1], nn::Init::Const(1.0));
        let b = vs.root().var("b", &[1], nn::Init::Const(1.0));
        let mut opt = Adam::new(&vs, AdamConfig::default());
        let both = opt.backward_step(&(&a * &b).sum(Kind::Float)).unwrap();
        assert_eq!(both.updated, 2);
        let b_after_1 = b.double_value(&[0]);
        for _ in 0..3 {
            let only_a = opt.backward_step(&a.square().sum(Kind::Float)).unwrap();
            assert_eq!(only_a.updated, 1);
        }
        assert_eq!(
            b.double_value(&[0]),
            b_after_1,
            "b moved without a gradient"
        );
        let (state, steps) = opt.state();
        assert_eq!(steps, 4);
        let step_of = |name: &str| {
            state
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, t)| t.int64_value(&[]))
                .unwrap()
        };
        assert_eq!((step_of("adam.step.a"), step_of("adam.step.b")), (4, 1));
    }

    /// Adam's first step moves every parameter by lr (the update is m̂/√v̂ = ±1): a group
    /// with its own scale moves that many times as far.
    #[test]
    fn a_parameter_group_has_its_own_learning_rate() {
        let _rng = crate::trainer::torch_rng();
        let vs = VarStore::new(Device::Cpu);
        let a = (vs.root() / "net").var("a", &[1], nn::Init::Const(1.0));
        let w = (vs.root() / "sge").var("w", &[1], nn::Init::Const(1.0));
        let cfg = AdamConfig {
            lr: 0.01,
            weight_decay: 0.0,
            ..Default::default()
        };
        let mut opt = Adam::new(&vs, cfg);
        assert_eq!(opt.set_lr_scale("sge.", 10.0), 1);
        opt.backward_step(&(&a + &w).sum(Kind::Float)).unwrap();
        assert!((1.0 - a.double_value(&[0]) - 0.01).abs() < 1e-6);
        assert!((1.0 - w.double_value(&[0]) - 0.1).abs() < 1e-6);
    }

    #[test]
    fn missing_state_is_an_error() {
        let _rng = crate::trainer::torch_rng();
        let vs = VarStore::new(Device::Cpu);
        let _ = vs.root().var("w", &[2], nn::Init::Const(1.0));
        let mut opt = Adam::new(&vs, AdamConfig::default());
        let err = opt.load_state(&BTreeMap::new(), 3).unwrap_err();
        assert!(err.to_string().contains("adam.m.w"), "{err}");
    }
}
