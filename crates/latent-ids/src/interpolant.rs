//! The stochastic interpolant with the generalised variance-preserving (GVP) path (Albergo &
//! Vanden-Eijnden 2023; SiT, Ma et al. 2024): `x_t = α_t x_1 + σ_t x_0`, `x_0 ~ N(0, I)` the
//! noise, `x_1` the data, `α_t = sin(πt/2)`, `σ_t = cos(πt/2)`, so `α_t² + σ_t² = 1`.
//!
//! With a model of the data `x̂_1(x_t, t)` ("data prediction"), the noise is
//! `x̂_0 = (x_t − α_t x̂_1) / σ_t` and the probability-flow ODE from `t = ε` to `1 − ε` is
//! `dx/dt = α̇_t x̂_1 + σ̇_t x̂_0`.

use std::f64::consts::FRAC_PI_2;

use tch::Tensor;

/// The GVP interpolation path.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Gvp;

impl Gvp {
    /// `(α_t, σ_t)`.
    pub fn coefficients(t: f64) -> (f64, f64) {
        ((FRAC_PI_2 * t).sin(), (FRAC_PI_2 * t).cos())
    }

    /// `(α̇_t, σ̇_t)`.
    pub fn derivatives(t: f64) -> (f64, f64) {
        (
            FRAC_PI_2 * (FRAC_PI_2 * t).cos(),
            -FRAC_PI_2 * (FRAC_PI_2 * t).sin(),
        )
    }

    /// `x_t = α_t x_1 + σ_t x_0` with a time per sample.
    ///
    /// # Shapes
    /// `x0`, `x1`: `[B, ..]`, `t: [B]` → `[B, ..]`.
    pub fn interpolate(x0: &Tensor, x1: &Tensor, t: &Tensor) -> Tensor {
        let mut shape = vec![-1i64];
        shape.extend(std::iter::repeat_n(1, x1.dim() - 1));
        let a = (t * FRAC_PI_2).view(shape.as_slice());
        a.sin() * x1 + a.cos() * x0
    }

    /// The velocity `α̇_t x̂_1 + σ̇_t (x_t − α_t x̂_1) / σ_t` of the probability-flow ODE at time
    /// `t < 1`, given the model's data prediction `x̂_1`.
    ///
    /// # Shapes
    /// `x_t`, `x1_hat`: any shape (the same) → that shape.
    pub fn velocity_from_data(x_t: &Tensor, x1_hat: &Tensor, t: f64) -> Tensor {
        let (a, s) = Self::coefficients(t);
        let (da, ds) = Self::derivatives(t);
        x1_hat * da + (x_t - x1_hat * a) * (ds / s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::Draws;

    #[test]
    fn endpoints_are_noise_and_data() {
        let mut d = Draws::new(1);
        let (x0, x1) = (d.normal(&[3, 2, 4]), d.normal(&[3, 2, 4]));
        let t = Tensor::from_slice(&[0.0, 1.0, 0.5]);
        let xt = Gvp::interpolate(&x0, &x1, &t);
        assert!(xt.get(0).allclose(&x0.get(0), 1e-12, 1e-12, false));
        assert!(xt.get(1).allclose(&x1.get(1), 1e-12, 1e-12, false));
        let h = std::f64::consts::FRAC_1_SQRT_2;
        assert!(
            xt.get(2)
                .allclose(&((x0.get(2) + x1.get(2)) * h), 1e-12, 1e-12, false)
        );
        let (a, s) = Gvp::coefficients(0.3);
        assert!((a * a + s * s - 1.0).abs() < 1e-15);
    }

    #[test]
    fn exact_data_prediction_gives_the_path_derivative() {
        let mut d = Draws::new(2);
        let (x0, x1) = (d.normal(&[5]), d.normal(&[5]));
        for t in [0.001, 0.3, 0.9, 0.999] {
            let xt = Gvp::interpolate(
                &x0.unsqueeze(0),
                &x1.unsqueeze(0),
                &Tensor::from_slice(&[t]),
            )
            .squeeze_dim(0);
            let v = Gvp::velocity_from_data(&xt, &x1, t);
            let h = 1e-6;
            let at = |s: f64| {
                Gvp::interpolate(
                    &x0.unsqueeze(0),
                    &x1.unsqueeze(0),
                    &Tensor::from_slice(&[s]),
                )
                .squeeze_dim(0)
            };
            let fd = (at(t + h) - at(t - h)) / (2.0 * h);
            assert!(v.allclose(&fd, 1e-6, 1e-6, false), "t = {t}");
        }
    }
}
