//! An exponential moving average of a model's weights, `θ̄ ← β θ̄ + (1 − β) θ` after every
//! optimiser step (β = 0.999 in LaM-SLidE, both stages); the average is what is evaluated.

use std::collections::BTreeMap;

use tch::{Tensor, nn::VarStore};

use crate::error::{Error, Result, ensure_in};

/// The moving average of the trainable variables of a [`VarStore`], in name order.
#[derive(Debug)]
pub struct Ema {
    decay: f64,
    names: Vec<String>,
    shadow: Vec<Tensor>,
}

impl Ema {
    /// Starts the average at the current weights.
    pub fn new(vs: &VarStore, decay: f64) -> Result<Self> {
        ensure_in("Ema", "decay", decay, 0.0, 1.0)?;
        let vars: BTreeMap<String, Tensor> = vs
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect();
        let (names, shadow) = vars
            .into_iter()
            .map(|(n, t)| (n, t.detach().copy()))
            .unzip();
        Ok(Self {
            decay,
            names,
            shadow,
        })
    }

    /// The decay β.
    pub fn decay(&self) -> f64 {
        self.decay
    }

    /// `θ̄ ← β θ̄ + (1 − β) θ` for every averaged variable.
    pub fn update(&mut self, vs: &VarStore) {
        let vars = vs.variables();
        tch::no_grad(|| {
            for (name, s) in self.names.iter().zip(&mut self.shadow) {
                let theta = &vars[name];
                let _ = s.g_mul_scalar_(self.decay);
                let _ = s.g_add_(&(theta * (1.0 - self.decay)));
            }
        });
    }

    /// Copies the average into `vs` (for evaluation or export).
    pub fn copy_to(&self, vs: &VarStore) {
        let vars = vs.variables();
        tch::no_grad(|| {
            for (name, s) in self.names.iter().zip(&self.shadow) {
                let mut v = vars[name].shallow_clone();
                v.copy_(s);
            }
        });
    }

    /// The averaged tensors, named `ema.<variable>` (for a checkpoint).
    pub fn state(&self) -> Vec<(String, Tensor)> {
        self.names
            .iter()
            .zip(&self.shadow)
            .map(|(n, s)| (format!("ema.{n}"), s.shallow_clone()))
            .collect()
    }

    /// Restores the average from [`state`](Self::state)'s tensors; every variable must be there
    /// with its shape.
    pub fn load_state(&mut self, tensors: &BTreeMap<String, Tensor>) -> Result<()> {
        for (name, s) in self.names.iter().zip(&mut self.shadow) {
            let key = format!("ema.{name}");
            let t = tensors.get(&key).ok_or_else(|| Error::Input {
                op: "Ema::load_state",
                reason: format!("the checkpoint has no `{key}`"),
            })?;
            if t.size() != s.size() {
                return Err(Error::Shape {
                    op: "Ema::load_state",
                    what: "ema tensor",
                    expected: format!("{:?} for `{key}`", s.size()),
                    got: t.size(),
                });
            }
            tch::no_grad(|| s.copy_(t));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn average_follows_the_formula_and_round_trips() {
        let vs = VarStore::new(Device::Cpu);
        let mut w = vs.root().zeros("w", &[2]);
        let _frozen = vs.root().zeros_no_train("f", &[1]);
        let mut ema = Ema::new(&vs, 0.9).unwrap();
        assert_eq!(ema.state().len(), 1);
        tch::no_grad(|| w.copy_(&Tensor::from_slice(&[1.0f32, 2.0])));
        ema.update(&vs);
        let s = &ema.state()[0].1;
        assert!(s.allclose(&Tensor::from_slice(&[0.1f32, 0.2]), 1e-7, 1e-7, false));
        for _ in 0..300 {
            ema.update(&vs);
        }
        assert!(ema.state()[0].1.allclose(&w, 1e-5, 1e-5, false));
        // copy into another store, restore from a state map
        let other = VarStore::new(Device::Cpu);
        let _w2 = other.root().zeros("w", &[2]);
        let _f2 = other.root().zeros_no_train("f", &[1]);
        let mut ema2 = Ema::new(&other, 0.9).unwrap();
        ema2.load_state(&ema.state().into_iter().collect()).unwrap();
        ema2.copy_to(&other);
        assert!(other.variables()["w"].allclose(&w, 1e-5, 1e-5, false));
        assert!(ema2.load_state(&BTreeMap::new()).is_err());
        assert!(Ema::new(&vs, 1.5).is_err());
    }
}
