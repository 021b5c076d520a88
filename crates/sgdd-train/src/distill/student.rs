//! The light students of a distillation run: a small EGNO (a [`Model`]) or SDKD's MLP student,
//! and the closed-form ridge initialisation of their readout (seed 002).

use anyhow::Result;
use distill_kd::RidgeConfig;
use tch::{Device, Tensor, nn};

use super::config::{StudentArch, StudentConfig};
use crate::data::{Batch, GraphCache, Prepared};
use crate::model::{Model, ProblemDims};
use crate::trainer::seeded_on_cpu;

/// SDKD's MLP student: a non-equivariant MLP over the flattened initial state of a sample
/// (`[x_0, v_0, h]` of each of its `N` nodes, normalised units), SiLU hidden layers, and a
/// linear readout to every node's correction of the constant-velocity extrapolation at every
/// predicted frame: `x̂_t = x_0 + v_0 τ_t + readout(φ(state))_t`.
#[derive(Debug)]
pub struct CoordMlp {
    hidden: Vec<nn::Linear>,
    readout: nn::Linear,
    n: i64,
    t: i64,
    /// Time from the condition frame to each target, `τ_t`.
    times: Vec<f64>,
}

impl CoordMlp {
    /// Builds the MLP under `path` for samples of `dims` whose targets lie `times` after the
    /// condition frame (`hidden` width, `layers` hidden layers).
    pub fn new(
        path: &nn::Path<'_>,
        dims: ProblemDims,
        times: Vec<f64>,
        hidden: i64,
        layers: i64,
    ) -> Self {
        let input = dims.n * (6 + dims.node_dim);
        let mut width = input;
        let hidden = (0..layers)
            .map(|i| {
                let l = nn::linear(
                    path / format!("hidden{i}"),
                    width,
                    hidden,
                    Default::default(),
                );
                width = hidden;
                l
            })
            .collect();
        let readout = nn::linear(
            path / "readout",
            width,
            dims.t * dims.n * 3,
            Default::default(),
        );
        Self {
            hidden,
            readout,
            n: dims.n,
            t: dims.t,
            times,
        }
    }

    /// The readout's input: the last hidden activation of each sample.
    ///
    /// # Shapes
    /// Batch of `B` samples → `[B, H]`.
    pub fn features(&self, batch: &Batch) -> Result<Tensor> {
        let b = batch.b;
        let mut x = Tensor::cat(&[&batch.x0, &batch.v0, &batch.h], 1).reshape([b, -1]);
        for l in &self.hidden {
            x = x.apply(l).silu();
        }
        Ok(x)
    }

    /// The constant-velocity extrapolation `x_0 + v_0 τ_t`, `[T, B·N, 3]`.
    fn const_vel(&self, batch: &Batch) -> Tensor {
        let tau = Tensor::from_slice(&self.times)
            .to_kind(batch.x0.kind())
            .to_device(batch.x0.device())
            .view([-1, 1, 1]);
        batch.x0.unsqueeze(0) + batch.v0.unsqueeze(0) * tau
    }

    /// The readout's target for predictions `x̂`: their difference from the constant-velocity
    /// extrapolation, flattened as the readout's output.
    ///
    /// # Shapes
    /// `x`: `[T, B·N, 3]` → `[B, T·N·3]`.
    fn displacement(&self, batch: &Batch, x: &Tensor) -> Tensor {
        (x - self.const_vel(batch))
            .reshape([self.t, batch.b, self.n * 3])
            .permute([1, 0, 2])
            .reshape([batch.b, -1])
    }

    /// Predicted positions (normalised units).
    ///
    /// # Shapes
    /// Batch of `B` samples → `[T, B·N, 3]`.
    pub fn forward(&self, batch: &Batch) -> Result<Tensor> {
        let out = self.features(batch)?.apply(&self.readout);
        let disp = out
            .reshape([batch.b, self.t, self.n * 3])
            .permute([1, 0, 2])
            .reshape([self.t, batch.b * self.n, 3]);
        Ok(disp + self.const_vel(batch))
    }
}

/// The student of a distillation run.
#[derive(Debug)]
pub enum Student {
    /// A small EGNO.
    Egno(Box<Model>),
    /// SDKD's MLP student.
    Mlp(CoordMlp),
}

impl Student {
    /// Builds the student of `cfg` for the data's dimensions on `device`. libtorch's generator
    /// is seeded with `seed` and the weights are drawn on the CPU and copied to `device`, so
    /// they are a function of the seed alone (as [`build_model`](crate::build_model) does).
    pub fn build(
        cfg: &StudentConfig,
        p: &Prepared,
        seed: u64,
        device: Device,
    ) -> Result<(nn::VarStore, Self)> {
        seeded_on_cpu(seed, device, &|vs| {
            let dims = ProblemDims::of(p);
            Ok(match cfg.kind {
                StudentArch::Egno => Self::Egno(Box::new(Model::build(
                    vs,
                    &cfg.egno(),
                    dims,
                    &p.undirected,
                    p.target_times.clone(),
                )?)),
                StudentArch::Mlp => Self::Mlp(CoordMlp::new(
                    &(vs.root() / "mlp"),
                    dims,
                    p.target_times.clone(),
                    cfg.hidden,
                    cfg.layers,
                )),
            })
        })
    }

    /// Predicted positions (normalised units) from the initial state.
    ///
    /// # Shapes
    /// Batch of `B` samples of `N` nodes → `[T, B·N, 3]`.
    pub fn predict(&self, batch: &Batch) -> Result<Tensor> {
        match self {
            Self::Egno(m) => m.predict(batch),
            Self::Mlp(m) => m.forward(batch),
        }
    }

    /// Closed-form initialisation (seed 002): streams the split through the student and solves
    /// its readout by ridge regression onto the teacher's predictions
    /// (`distill_kd::RidgeAccumulator`: f64 sums, memory `O(D² + D·H)` whatever the number of
    /// samples, Cholesky with jitter retries, `λ_eff = λ · mean diag XᵀX`), then loads the
    /// solution into it. Returns the rows used.
    ///
    /// - MLP: its linear readout (with an intercept) from the last hidden activation onto the
    ///   teacher's corrections `target(idx) − (x_0 + v_0 τ)`, a row per sample.
    /// - EGNO: the last layer's coordinate heads (the last linear layers of `phi_x` and
    ///   `phi_v`), in which the predicted positions are linear (`x̂ = base + feats · θ`, see
    ///   [`graph_nets::Egno::f_readout_rows`]); a row per (frame, node, axis), no intercept, so
    ///   the student stays E(3)-equivariant.
    ///
    /// `target` gives the teacher's predictions `[T, B·N, 3]` for the samples `idx` of `p`.
    pub fn ridge_init(
        &mut self,
        p: &Prepared,
        batch_size: usize,
        device: Device,
        lambda: f64,
        target: &dyn Fn(&[i64]) -> Result<Tensor>,
    ) -> Result<u64> {
        let _guard = tch::no_grad_guard();
        let (width, out, intercept) = match self {
            Self::Mlp(m) => (m.readout.ws.size()[1], m.readout.ws.size()[0], true),
            Self::Egno(m) => (m.egno_readout_width()?, 1, false),
        };
        let mut acc = RidgeConfig {
            lambda,
            intercept,
            ..Default::default()
        }
        .check(width as usize, out as usize)?;
        let mut graphs = GraphCache::default();
        let idx: Vec<i64> = (0..p.samples).collect();
        for chunk in idx.chunks(batch_size.max(1)) {
            let batch = p.batch(chunk, device, &mut graphs)?;
            let (x, h) = self.ridge_rows(&batch, &target(chunk)?)?;
            acc.push(&x, &h)?;
        }
        let sol = acc.solve()?;
        match self {
            Self::Mlp(m) => sol.load_into(&mut m.readout)?,
            Self::Egno(m) => {
                let theta: Vec<f64> = (0..sol.weight.nrows())
                    .map(|i| sol.weight[(i, 0)])
                    .collect();
                m.set_egno_readout(&Tensor::from_slice(&theta))?;
            }
        }
        Ok(acc.rows())
    }

    /// The rows of the readout fit on a batch: the readout's inputs `[R, D]` and the targets
    /// `[R, O]` that the teacher's predictions `target` (`[T, B·N, 3]`) set (see
    /// [`Student::ridge_init`]).
    fn ridge_rows(&self, batch: &Batch, target: &Tensor) -> Result<(Tensor, Tensor)> {
        Ok(match self {
            Self::Mlp(m) => {
                let x = m.features(batch)?;
                let h = m.displacement(batch, &target.to_kind(x.kind()));
                (x, h)
            }
            Self::Egno(m) => {
                let (base, feats) = m.egno_readout_rows(batch)?;
                let p = feats.size()[3];
                let h = (target.to_kind(base.kind()) - base).reshape([-1, 1]);
                (feats.reshape([-1, p]), h)
            }
        })
    }

    /// The number of trainable scalars.
    pub fn parameters(vs: &nn::VarStore) -> i64 {
        vs.trainable_variables()
            .iter()
            .map(|t| t.numel() as i64)
            .sum()
    }
}

/// The rows a ridge fit of the student's readout sees (inputs, targets) for a batch, in f64,
/// for tests that check the solution against the closed form.
#[cfg(test)]
pub(crate) fn ridge_rows(student: &Student, batch: &Batch, target: &Tensor) -> (Tensor, Tensor) {
    let _guard = tch::no_grad_guard();
    let (x, h) = student.ridge_rows(batch, target).unwrap();
    (x.to_kind(tch::Kind::Double), h.to_kind(tch::Kind::Double))
}

/// The readout's weight `[O, H]` and bias `[O]`.
#[cfg(test)]
pub(crate) fn readout(mlp: &CoordMlp) -> (Tensor, Tensor) {
    (
        mlp.readout.ws.detach().to_kind(tch::Kind::Double),
        mlp.readout
            .bs
            .as_ref()
            .unwrap()
            .detach()
            .to_kind(tch::Kind::Double),
    )
}
