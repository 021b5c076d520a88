//! The tch half of closed-form ridge distillation: batches as tensors, the fit as tensors, and
//! loading it into a tch `Linear` (seed 002).

use faer::MatRef;
use tch::{Device, Kind, Tensor, nn};

use super::{RidgeAccumulator, RidgeSolution};
use crate::error::{Error, Result};

fn to_f64_vec(t: &Tensor) -> Result<Vec<f64>> {
    Ok(Vec::<f64>::try_from(
        t.to_device(Device::Cpu)
            .to_kind(Kind::Double)
            .contiguous()
            .reshape([-1]),
    )?)
}

impl RidgeAccumulator {
    /// Folds one batch of tensors into the sums (seed 002, `Σᵢ (Xⁱ)ᵀXⁱ` and `Σᵢ (Xⁱ)ᵀHⁱ`); the
    /// products are formed in f64 on the batch's device, as [`push_rows`](Self::push_rows) does on
    /// faer matrices.
    ///
    /// # Shapes
    /// `x`: `[.., D]`, `h`: `[.., H]` with the same leading dimensions (flattened into rows).
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] for wrong feature sizes or different row counts;
    /// [`Error::NonFinite`] for NaN/inf inputs (the sums are left unchanged).
    pub fn push(&mut self, x: &Tensor, h: &Tensor) -> Result<()> {
        let (d, o) = (self.in_features as i64, self.out_features as i64);
        let (xs, hs) = (x.size(), h.size());
        if xs.last() != Some(&d)
            || hs.last() != Some(&o)
            || xs[..xs.len() - 1] != hs[..hs.len() - 1]
        {
            return Err(Error::ShapeMismatch {
                op: "RidgeAccumulator::push",
                expected: format!(
                    "x [.., D={d}] and h [.., H={o}] with equal leading dims (x is {xs:?})"
                ),
                got: hs,
            });
        }
        let x = x.detach().to_kind(Kind::Double).reshape([-1, d]);
        let h = h
            .detach()
            .to_device(x.device())
            .to_kind(Kind::Double)
            .reshape([-1, o]);
        if !bool::try_from(x.isfinite().all())? || !bool::try_from(h.isfinite().all())? {
            return Err(Error::NonFinite {
                op: "RidgeAccumulator::push",
                what: "a batch",
            });
        }
        let n = x.size()[0];
        let x = if self.cfg.intercept {
            Tensor::cat(
                &[
                    x.shallow_clone(),
                    Tensor::ones([n, 1], (Kind::Double, x.device())),
                ],
                1,
            )
        } else {
            x
        };
        let cols = self.xtx.nrows();
        let xtx = to_f64_vec(&x.tr().matmul(&x))?;
        let xth = to_f64_vec(&x.tr().matmul(&h))?;
        self.fold(
            MatRef::from_row_major_slice(&xtx, cols, cols),
            MatRef::from_row_major_slice(&xth, cols, self.out_features),
            n as u64,
        );
        Ok(())
    }
}

impl RidgeSolution {
    /// `Wᵀ` as a tensor in tch `Linear` layout.
    ///
    /// # Shapes
    /// `[H, D]`.
    pub fn weight_tensor(&self, kind: Kind, device: Device) -> Tensor {
        let (d, h) = (self.weight.nrows(), self.weight.ncols());
        let flat: Vec<f64> = (0..h)
            .flat_map(|o| (0..d).map(move |i| (o, i)))
            .map(|(o, i)| self.weight[(i, o)])
            .collect();
        Tensor::from_slice(&flat)
            .view([h as i64, d as i64])
            .to_kind(kind)
            .to_device(device)
    }

    /// The intercept as a tensor, when one was fitted.
    ///
    /// # Shapes
    /// `[H]`.
    pub fn bias_tensor(&self, kind: Kind, device: Device) -> Option<Tensor> {
        self.bias
            .as_ref()
            .map(|b| Tensor::from_slice(b).to_kind(kind).to_device(device))
    }

    /// `x W + b` (seed 002's distilled encoder applied to student inputs).
    ///
    /// # Shapes
    /// `x`: `[.., D]` → `[.., H]`, in `x`'s kind.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] when the last dimension is not `D`.
    pub fn predict(&self, x: &Tensor) -> Result<Tensor> {
        let d = self.weight.nrows() as i64;
        if x.size().last() != Some(&d) {
            return Err(Error::ShapeMismatch {
                op: "RidgeSolution::predict",
                expected: format!("[.., D={d}]"),
                got: x.size(),
            });
        }
        let w = self.weight_tensor(x.kind(), x.device());
        let y = x.matmul(&w.tr());
        Ok(match self.bias_tensor(x.kind(), x.device()) {
            Some(b) => y + b,
            None => y,
        })
    }

    /// Loads the fit into a tch `Linear` as its initial weights (seed 002: the closed form
    /// initialises the student's encoder `W^trj` before fine-tuning). Without a fitted intercept
    /// the layer's bias, if it has one, is set to zero so that the layer computes `x W`.
    ///
    /// # Shapes
    /// `linear.ws`: `[H, D]`; `linear.bs`: `[H]`.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] when the layer's shape differs, or an intercept was fitted and the
    /// layer has no bias.
    pub fn load_into(&self, linear: &mut nn::Linear) -> Result<()> {
        let (d, h) = (self.weight.nrows() as i64, self.weight.ncols() as i64);
        if linear.ws.size() != [h, d] {
            return Err(Error::ShapeMismatch {
                op: "RidgeSolution::load_into",
                expected: format!("a Linear with weight [H={h}, D={d}]"),
                got: linear.ws.size(),
            });
        }
        let w = self.weight_tensor(linear.ws.kind(), linear.ws.device());
        let bias = match (&mut linear.bs, &self.bias) {
            (Some(bs), _) => {
                if bs.size() != [h] {
                    return Err(Error::ShapeMismatch {
                        op: "RidgeSolution::load_into",
                        expected: format!("a Linear bias [H={h}]"),
                        got: bs.size(),
                    });
                }
                let b = self.bias_tensor(bs.kind(), bs.device());
                Some((bs, b))
            }
            (None, Some(_)) => {
                return Err(Error::ShapeMismatch {
                    op: "RidgeSolution::load_into",
                    expected: format!("a Linear with a bias [H={h}] for the fitted intercept"),
                    got: vec![],
                });
            }
            (None, None) => None,
        };
        tch::no_grad(|| -> Result<()> {
            linear.ws.f_copy_(&w)?;
            if let Some((bs, b)) = bias {
                match b {
                    Some(b) => bs.f_copy_(&b)?,
                    None => {
                        let _ = bs.f_zero_()?;
                    }
                }
            }
            Ok(())
        })
    }
}
