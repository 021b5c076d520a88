//! An exponential moving average of a model's weights, `θ̄ ← β_n θ̄ + (1 − β_n) θ` after
//! optimiser step `n` (β = 0.999 in LaM-SLidE, both stages); the average is what is evaluated.
//! `β_n = min(β, (1 + n) / (10 + n))` (the warm-up of TensorFlow's
//! `ExponentialMovingAverage(num_updates)`), so a short run's average is not dominated by the
//! initial weights (at β = 0.999 they would still weigh 0.999^n).
//!
//! The average lives in the same [`VarStore`] as the model, as the frozen variables of a
//! second copy of it built under another path (`codec` and `codec_ema`, say): a checkpoint of
//! the store holds both, and the averaged copy is a ready model for evaluation.

use tch::{Tensor, nn::VarStore};

use crate::error::{Error, Result, ensure_in};

/// Pairs of (variable, its average) of one [`VarStore`].
#[derive(Debug)]
pub struct Ema {
    decay: f64,
    pairs: Vec<(Tensor, Tensor)>,
}

impl Ema {
    /// Averages every variable under the path `source` into its namesake under `shadow` (which
    /// must exist with the same shape); the shadow variables are frozen (no gradient) and
    /// start as copies of their sources.
    pub fn mirror(vs: &VarStore, source: &str, shadow: &str, decay: f64) -> Result<Self> {
        ensure_in("Ema", "decay", decay, 0.0, 1.0)?;
        let vars = vs.variables();
        let prefix = format!("{source}.");
        let mut pairs = Vec::new();
        for (name, src) in &vars {
            let Some(rest) = name.strip_prefix(&prefix) else {
                continue;
            };
            let key = format!("{shadow}.{rest}");
            let dst = vars.get(&key).ok_or_else(|| Error::Input {
                op: "Ema::mirror",
                reason: format!("`{name}` has no average `{key}`"),
            })?;
            if dst.size() != src.size() {
                return Err(crate::error::shape_error(
                    "Ema::mirror",
                    "average",
                    format!("{:?} for `{key}`", src.size()),
                    dst.size(),
                ));
            }
            let dst = dst.shallow_clone();
            let _ = dst.set_requires_grad(false);
            pairs.push((src.shallow_clone(), dst));
        }
        if pairs.is_empty() {
            return Err(Error::Input {
                op: "Ema::mirror",
                reason: format!("no variables under `{source}`"),
            });
        }
        let ema = Self { decay, pairs };
        ema.reset();
        Ok(ema)
    }

    /// The decay β.
    pub fn decay(&self) -> f64 {
        self.decay
    }

    /// Sets every average to its variable's current value.
    pub fn reset(&self) {
        tch::no_grad(|| {
            for (src, dst) in &self.pairs {
                dst.shallow_clone().copy_(src);
            }
        });
    }

    /// The decay `β_n = min(β, (1 + n) / (10 + n))` after step `n` (0-based).
    pub fn decay_at(&self, step: u64) -> f64 {
        self.decay.min((1.0 + step as f64) / (10.0 + step as f64))
    }

    /// `θ̄ ← β_n θ̄ + (1 − β_n) θ` for every pair, after optimiser step `n = step`.
    pub fn update(&self, step: u64) {
        let b = self.decay_at(step);
        tch::no_grad(|| {
            for (src, dst) in &self.pairs {
                let mut d = dst.shallow_clone();
                let _ = d.g_mul_scalar_(b);
                let _ = d.g_add_(&(src * (1.0 - b)));
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn average_follows_the_formula() {
        let vs = VarStore::new(Device::Cpu);
        let mut w = vs.root().sub("model").zeros("w", &[2]);
        let avg = vs.root().sub("avg").zeros("w", &[2]);
        let ema = Ema::mirror(&vs, "model", "avg", 0.9).unwrap();
        assert!(!avg.requires_grad());
        tch::no_grad(|| w.copy_(&Tensor::from_slice(&[1.0f32, 2.0])));
        // late step: β_n = β
        ema.update(1000);
        assert!(avg.allclose(&Tensor::from_slice(&[0.1f32, 0.2]), 1e-7, 1e-7, false));
        // first step: β_0 = 0.1
        assert!((ema.decay_at(0) - 0.1).abs() < 1e-15);
        assert_eq!(ema.decay_at(10_000), 0.9);
        ema.update(0);
        let want = Tensor::from_slice(&[0.1f32 * 0.1 + 0.9, 0.2 * 0.1 + 1.8]);
        assert!(avg.allclose(&want, 1e-6, 1e-6, false));
        for n in 0..300 {
            ema.update(n);
        }
        assert!(avg.allclose(&w, 1e-5, 1e-5, false));
        assert!(Ema::mirror(&vs, "model", "nothing", 0.9).is_err());
        assert!(Ema::mirror(&vs, "none", "avg", 0.9).is_err());
        assert!(Ema::mirror(&vs, "model", "avg", 1.5).is_err());
        let _odd = vs.root().sub("odd").zeros("w", &[3]);
        assert!(Ema::mirror(&vs, "model", "odd", 0.9).is_err());
    }
}
