//! Conditioning, the stage-2 training loss and the samplers.
//!
//! - [`Conditioning`]: the given frames' true latents, the mean of the given latents at every
//!   other frame, and the mask of given frames (the authors' `mask_cond_mean`).
//! - [`flow_loss`]: the interpolant loss `‖x̂_1 − x_1‖²` at `t ~ U[ε, 1 − ε]`, plus the decoded
//!   losses (positions and inter-distances of the decoded `x̂_1`; weights 0.25 / 0.25).
//! - [`sample_latents`]: the probability-flow ODE from Gaussian noise at `t = ε` to `1 − ε`,
//!   integrated by [`graph_nets::ode::odeint`] (Euler on a grid of time points, or adaptive
//!   Dopri5); the given frames of the result are the true latents, exactly.
//! - [`sample_trajectories`]: encode the given frames, sample, decode; the given frames of the
//!   output are the given positions, exactly.

use graph_nets::ode::{OdeOptions, Solver, odeint};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::codec::{Codec, inter_distance_mse, position_mse};
use crate::error::{Error, Result, check_shape, ensure_config, ensure_in};
use crate::flow::LatentFlow;
use crate::ids::repeat_frames;
use crate::interpolant::Gvp;
use crate::random::{Purpose, normal, uniform};

/// What the flow model reads at the frames it predicts ([`Conditioning::x_cond`] there).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fill {
    /// The mean of the given frames' latents (the authors' `mask_cond_mean`).
    #[default]
    Mean,
    /// The latents of the constant-velocity extrapolation of the last two given frames, each
    /// frame encoded with the sample's identifiers: the flow model starts from that guess
    /// instead of a static one (needs two given frames).
    ConstVel,
}

/// The constant-velocity extrapolation of given frames: frame `G − 1 + k` is
/// `x_{G−1} + k (x_{G−1} − x_{G−2})`, `k = 1 … frames − G`.
///
/// # Shapes
/// `given: [B, G, N, 3]` (`G ≥ 2`) → `[B, frames − G, N, 3]`.
pub fn const_vel_frames(given: &Tensor, frames: i64) -> Result<Tensor> {
    const OP: &str = "const_vel_frames";
    check_shape(OP, "given", given, &[None, None, None, Some(3)])?;
    let g = given.size()[1];
    if g < 2 || g > frames {
        return Err(Error::Input {
            op: OP,
            reason: format!("need 2 ≤ given frames ≤ frames, got {g} given of {frames}"),
        });
    }
    let last = given.select(1, g - 1);
    let v = &last - given.select(1, g - 2);
    let k = Tensor::arange_start(1, frames - g + 1, (given.kind(), given.device())).view([
        1,
        frames - g,
        1,
        1,
    ]);
    Ok(last.unsqueeze(1) + v.unsqueeze(1) * k)
}

/// What the flow model is conditioned on.
#[derive(Debug)]
pub struct Conditioning {
    /// `[B, T, L, D]`: the true latents of the given frames, the [`Fill`] elsewhere.
    pub x_cond: Tensor,
    /// `[B, T, L]` int64: 1 at the given frames.
    pub mask: Tensor,
}

impl Conditioning {
    /// The conditioning of a latent trajectory of `frames` frames whose first `given` frames
    /// are `given_latents`.
    ///
    /// # Shapes
    /// `given_latents: [B, G, L, D]` (`1 ≤ G ≤ frames`) → `x_cond: [B, frames, L, D]`,
    /// `mask: [B, frames, L]`.
    pub fn new(given_latents: &Tensor, frames: i64) -> Result<Self> {
        const OP: &str = "Conditioning::new";
        check_shape(OP, "given_latents", given_latents, &[None; 4])?;
        let g = given_latents.size()[1];
        if g < 1 || g > frames {
            return Err(Error::Input {
                op: OP,
                reason: format!("need 1 ≤ given frames ≤ frames, got {g} given of {frames}"),
            });
        }
        let mean = given_latents.mean_dim(&[1i64][..], true, given_latents.kind());
        let mut rest = mean.size();
        rest[1] = frames - g;
        Self::with_fill(given_latents, &mean.expand(rest.as_slice(), true))
    }

    /// The conditioning of a latent trajectory whose first `G` frames are `given_latents` and
    /// whose other frames read `fill`.
    ///
    /// # Shapes
    /// `given_latents: [B, G, L, D]`, `fill: [B, F, L, D]` → `x_cond: [B, G + F, L, D]`,
    /// `mask: [B, G + F, L]`.
    pub fn with_fill(given_latents: &Tensor, fill: &Tensor) -> Result<Self> {
        const OP: &str = "Conditioning::with_fill";
        check_shape(
            OP,
            "given_latents",
            given_latents,
            &[None, None, None, None],
        )?;
        let s = given_latents.size();
        let (b, g, l, d) = (s[0], s[1], s[2], s[3]);
        check_shape(OP, "fill", fill, &[Some(b), None, Some(l), Some(d)])?;
        let frames = g + fill.size()[1];
        let x_cond = Tensor::cat(&[given_latents.shallow_clone(), fill.shallow_clone()], 1);
        let dev = given_latents.device();
        let mask = Tensor::cat(
            &[
                Tensor::ones([b, g, l], (Kind::Int64, dev)),
                Tensor::zeros([b, frames - g, l], (Kind::Int64, dev)),
            ],
            1,
        );
        Ok(Self { x_cond, mask })
    }

    /// Frames of the trajectory.
    pub fn frames(&self) -> i64 {
        self.x_cond.size()[1]
    }
}

/// The weights and the time margin of [`flow_loss`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlowLossWeights {
    /// The interpolant (latent data-prediction) MSE.
    pub interpolant: f64,
    /// Position MSE of the decoded prediction.
    pub position: f64,
    /// Inter-distance MSE of the decoded prediction.
    pub inter_distance: f64,
    /// Interpolation times are drawn in `[ε, 1 − ε]`.
    pub eps: f64,
}

impl Default for FlowLossWeights {
    /// The authors' MD17 settings: 1 / 0.25 / 0.25, ε = 10⁻³.
    fn default() -> Self {
        Self {
            interpolant: 1.0,
            position: 0.25,
            inter_distance: 0.25,
            eps: 1e-3,
        }
    }
}

impl FlowLossWeights {
    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        const C: &str = "FlowLossWeights";
        ensure_in(C, "interpolant", self.interpolant, 0.0, f64::MAX)?;
        ensure_in(C, "position", self.position, 0.0, f64::MAX)?;
        ensure_in(C, "inter_distance", self.inter_distance, 0.0, f64::MAX)?;
        ensure_config(
            self.eps.is_finite() && self.eps > 0.0 && self.eps < 0.5,
            C,
            "eps",
            || format!("must be in (0, 0.5), got {}", self.eps),
        )?;
        Ok(())
    }
}

/// The stage-2 loss and its parts (scalars).
#[derive(Debug)]
pub struct FlowLoss {
    /// The weighted sum.
    pub total: Tensor,
    /// Interpolant MSE in latent space.
    pub interpolant: Tensor,
    /// Position MSE of the decoded prediction.
    pub position: Tensor,
    /// Inter-distance MSE of the decoded prediction.
    pub inter_distance: Tensor,
}

/// A batch of trajectories for stage 2.
#[derive(Debug)]
pub struct TrajectoryBatch<'a> {
    /// `[B, T, N, 3]`: positions (normalised units).
    pub positions: &'a Tensor,
    /// `[B, N]` int64: entity types, when the codec has types.
    pub types: Option<&'a Tensor>,
    /// `[B, N]` int64: each sample's identifiers (the same for all its frames).
    pub ids: &'a Tensor,
    /// Dataset indices of the samples (they choose the random streams).
    pub samples: &'a [u64],
}

impl TrajectoryBatch<'_> {
    fn check(&self, op: &'static str) -> Result<(i64, i64, i64)> {
        check_shape(
            op,
            "positions",
            self.positions,
            &[Some(self.samples.len() as i64), None, None, Some(3)],
        )?;
        let s = self.positions.size();
        check_shape(op, "ids", self.ids, &[Some(s[0]), Some(s[2])])?;
        Ok((s[0], s[1], s[2]))
    }

    /// Frames flattened sample-major: positions `[B·T, N, 3]`, types and ids `[B·T, N]`.
    fn flat_frames(&self, frames: i64) -> Result<(Tensor, Option<Tensor>, Tensor)> {
        let s = self.positions.size();
        let pos = self
            .positions
            .narrow(1, 0, frames)
            .reshape([s[0] * frames, s[2], 3]);
        let types = self.types.map(|t| repeat_frames(t, frames)).transpose()?;
        Ok((pos, types, repeat_frames(self.ids, frames)?))
    }
}

/// Encodes every frame of a batch (no gradient; the codec is frozen in stage 2).
///
/// # Shapes
/// → `[B, frames, L, D]`, the first `frames` frames.
pub fn encode_frames(codec: &Codec, batch: &TrajectoryBatch<'_>, frames: i64) -> Result<Tensor> {
    let (b, _, _) = batch.check("encode_frames")?;
    let (pos, types, ids) = batch.flat_frames(frames)?;
    let z = tch::no_grad(|| codec.f_encode(&pos, types.as_ref(), &ids))?;
    let s = z.size();
    Ok(z.view([b, frames, s[1], s[2]]))
}

/// The conditioning of trajectories of `frames` frames whose first `G` frames are given:
/// `given_latents` (`[B, G, L, D]`, the encodings of `batch.positions`' first `G` frames)
/// and the [`Fill`] of the others (for [`Fill::ConstVel`], the constant-velocity frames encoded
/// with the batch's identifiers and types).
pub fn conditioning(
    codec: &Codec,
    batch: &TrajectoryBatch<'_>,
    given_latents: &Tensor,
    frames: i64,
    fill: Fill,
) -> Result<Conditioning> {
    let g = given_latents.size()[1];
    match fill {
        Fill::Mean => Conditioning::new(given_latents, frames),
        Fill::ConstVel => {
            let cv = const_vel_frames(&batch.positions.narrow(1, 0, g.max(0)), frames)?;
            let cv_batch = TrajectoryBatch {
                positions: &cv,
                types: batch.types,
                ids: batch.ids,
                samples: batch.samples,
            };
            let z = encode_frames(codec, &cv_batch, frames - g)?;
            Conditioning::with_fill(given_latents, &z)
        }
    }
}

/// The stage-2 loss of a batch whose first `given` frames condition the rest. Gradients reach
/// the flow model and, through the decoded losses, the codec's decoder: train with an optimiser
/// over the flow's variables only (the codec frozen, as the authors').
///
/// Interpolation times and noise come from the stream `(seed, samples[b])` of
/// [`Purpose::Interpolant`] (independent of the identifiers' and the rigid motions' streams of
/// the same seed).
#[allow(clippy::too_many_arguments)]
pub fn flow_loss(
    flow: &LatentFlow,
    codec: &Codec,
    batch: &TrajectoryBatch<'_>,
    given: i64,
    fill: Fill,
    weights: &FlowLossWeights,
    seed: u64,
) -> Result<FlowLoss> {
    weights.validate()?;
    let (b, frames, _) = batch.check("flow_loss")?;
    let x1 = encode_frames(codec, batch, frames)?;
    let given_latents = x1.narrow(1, 0, given.clamp(0, frames));
    let cond = conditioning(codec, batch, &given_latents, frames, fill)?;
    let (kind, dev) = (x1.kind(), x1.device());
    let s = x1.size();
    let mut t = Vec::with_capacity(b as usize);
    let mut x0 = Vec::with_capacity(b as usize);
    for &sample in batch.samples {
        let mut rng = Purpose::Interpolant.rng(seed, sample);
        t.extend(uniform(&mut rng, 1, weights.eps, 1.0 - weights.eps));
        x0.push(normal(&mut rng, &s[1..], (kind, dev)));
    }
    let t = Tensor::from_slice(&t).to_kind(kind).to_device(dev);
    let x0 = Tensor::stack(&x0, 0);
    let xt = Gvp::interpolate(&x0, &x1, &t);
    let pred = flow.f_forward(&xt, &t, &cond.x_cond, &cond.mask)?;
    let interpolant = pred.mse_loss(&x1, tch::Reduction::Mean);
    let (pos, _, ids) = batch.flat_frames(frames)?;
    let decoded = codec.f_decode(&pred.reshape([b * frames, s[2], s[3]]), &ids)?;
    let position = position_mse(&decoded.positions, &pos);
    let inter_distance = inter_distance_mse(&decoded.positions, &pos);
    let total = &interpolant * weights.interpolant
        + &position * weights.position
        + &inter_distance * weights.inter_distance;
    Ok(FlowLoss {
        total,
        interpolant,
        position,
        inter_distance,
    })
}

/// Settings of the sampler.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SamplerConfig {
    /// `euler` (fixed steps between `points` time points) or `dopri5` (adaptive).
    pub solver: Solver,
    /// Euler: time points from `ε` to `1 − ε` (10: nine steps, the authors' setting).
    pub points: usize,
    /// Dopri5: relative tolerance.
    pub rtol: f64,
    /// Dopri5: absolute tolerance.
    pub atol: f64,
    /// Integrate over `[ε, 1 − ε]`.
    pub eps: f64,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        Self {
            solver: Solver::Euler,
            points: 10,
            rtol: 1e-3,
            atol: 1e-4,
            eps: 1e-3,
        }
    }
}

impl SamplerConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        const C: &str = "SamplerConfig";
        ensure_config(self.points >= 2, C, "points", || {
            format!("must be ≥ 2, got {}", self.points)
        })?;
        ensure_config(
            self.eps.is_finite() && self.eps > 0.0 && self.eps < 0.5,
            C,
            "eps",
            || format!("must be in (0, 0.5), got {}", self.eps),
        )?;
        self.ode_options().validate()?;
        Ok(())
    }

    fn ode_options(&self) -> OdeOptions {
        OdeOptions {
            solver: self.solver,
            rtol: self.rtol,
            atol: self.atol,
            ..Default::default()
        }
    }

    /// The output times of the integration.
    fn times(&self) -> Vec<f64> {
        let (t0, t1) = (self.eps, 1.0 - self.eps);
        if self.solver.is_adaptive() {
            return vec![t0, t1];
        }
        let m = self.points - 1;
        (0..=m)
            .map(|i| t0 + (t1 - t0) * i as f64 / m as f64)
            .collect()
    }
}

/// Samples latent trajectories: Gaussian noise from the stream `(seed, samples[b])` of
/// [`Purpose::SamplingNoise`]
/// integrated along the probability-flow ODE; the given frames of the result are replaced by
/// the conditioning latents (exactly). No gradient.
///
/// # Shapes
/// `cond.x_cond: [B, T, L, D]` → `[B, T, L, D]`.
pub fn sample_latents(
    flow: &LatentFlow,
    cond: &Conditioning,
    sampler: &SamplerConfig,
    seed: u64,
    samples: &[u64],
) -> Result<Tensor> {
    sampler.validate()?;
    let s = cond.x_cond.size();
    if s[0] != samples.len() as i64 {
        return Err(Error::Input {
            op: "sample_latents",
            reason: format!(
                "{} samples need {} sample indices, got {}",
                s[0],
                s[0],
                samples.len()
            ),
        });
    }
    let opts = (cond.x_cond.kind(), cond.x_cond.device());
    let x0 = Tensor::stack(
        &samples
            .iter()
            .map(|&i| normal(&mut Purpose::SamplingNoise.rng(seed, i), &s[1..], opts))
            .collect::<Vec<_>>(),
        0,
    );
    let b = s[0];
    let sol = tch::no_grad(|| {
        odeint(
            |t, x| {
                let tt = Tensor::full([b], t, opts);
                let x1 = flow
                    .f_forward(x, &tt, &cond.x_cond, &cond.mask)
                    .map_err(|e| graph_nets::Error::Ode {
                        t,
                        reason: e.to_string(),
                    })?;
                Ok(Gvp::velocity_from_data(x, &x1, t))
            },
            &x0,
            &sampler.times(),
            &sampler.ode_options(),
        )
    })?;
    let last = sol.ys.get(sol.ys.size()[0] - 1);
    let given = cond.mask.unsqueeze(-1).to_kind(Kind::Bool);
    Ok(last.where_self(&given.logical_not(), &cond.x_cond))
}

/// Samples trajectories of `frames` frames whose first `G` frames are given: encode the given
/// frames, [`sample_latents`], decode every frame; the first `G` frames of the output are the
/// given positions, exactly.
///
/// # Shapes
/// `batch.positions: [B, G, N, 3]` → `[B, frames, N, 3]`.
pub fn sample_trajectories(
    flow: &LatentFlow,
    codec: &Codec,
    batch: &TrajectoryBatch<'_>,
    frames: i64,
    fill: Fill,
    sampler: &SamplerConfig,
    seed: u64,
) -> Result<Tensor> {
    let (b, given, n) = batch.check("sample_trajectories")?;
    let z = encode_frames(codec, batch, given)?;
    let cond = conditioning(codec, batch, &z, frames, fill)?;
    let latents = sample_latents(flow, &cond, sampler, seed, batch.samples)?;
    let s = latents.size();
    let ids = repeat_frames(batch.ids, frames)?;
    let decoded =
        tch::no_grad(|| codec.f_decode(&latents.reshape([b * frames, s[2], s[3]]), &ids))?;
    let pos = decoded.positions.view([b, frames, n, 3]);
    Ok(Tensor::cat(
        &[
            batch.positions.shallow_clone(),
            pos.narrow(1, given, frames - given),
        ],
        1,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::CodecConfig;
    use crate::flow::LatentFlowConfig;
    use crate::ids::IdentifierPoolConfig;
    use crate::test_util::{Draws, model_lock};
    use tch::{Device, nn::VarStore};

    fn models() -> (VarStore, Codec, LatentFlow) {
        let mut vs = VarStore::new(Device::Cpu);
        let codec = CodecConfig {
            ids: IdentifierPoolConfig {
                size: 6,
                dim: 8,
                ..Default::default()
            },
            pos_frequencies: 1,
            pos_dim: 8,
            input_dim: 8,
            latents: 3,
            latent_dim: 4,
            query_dim: 8,
            heads_cross: 2,
            heads_latent: 1,
            head_dim: 4,
            ..Default::default()
        }
        .build(vs.root() / "codec")
        .unwrap();
        let flow = LatentFlowConfig {
            latent_dim: 4,
            hidden: 8,
            depth: 1,
            heads: 2,
            time_dim: 8,
            ..Default::default()
        }
        .build(vs.root() / "flow")
        .unwrap();
        vs.double();
        (vs, codec, flow)
    }

    #[test]
    fn conditioning_holds_given_latents_and_their_mean() {
        let mut d = Draws::new(1);
        let z = d.normal(&[2, 3, 4, 5]);
        let c = Conditioning::new(&z, 7).unwrap();
        assert_eq!(c.x_cond.size(), [2, 7, 4, 5]);
        assert!(c.x_cond.narrow(1, 0, 3).equal(&z));
        let mean = z.mean_dim(&[1i64][..], false, Kind::Double);
        for f in 3..7 {
            assert!(c.x_cond.select(1, f).allclose(&mean, 1e-12, 1e-12, false));
        }
        let m: Vec<i64> = Vec::try_from(c.mask.select(2, 0).get(0)).unwrap();
        assert_eq!(m, [1, 1, 1, 0, 0, 0, 0]);
        assert!(Conditioning::new(&z, 2).is_err());
    }

    #[test]
    fn const_vel_fill_extrapolates_the_last_two_given_frames() {
        let mut d = Draws::new(9);
        let given = d.normal(&[2, 3, 4, 3]);
        let cv = const_vel_frames(&given, 6).unwrap();
        assert_eq!(cv.size(), [2, 3, 4, 3]);
        // slow reference, one frame at a time
        let (last, prev) = (given.select(1, 2), given.select(1, 1));
        for k in 1..=3 {
            let want = &last + (&last - &prev) * (k as f64);
            assert!(cv.select(1, k - 1).allclose(&want, 1e-12, 1e-12, false));
        }
        assert!(const_vel_frames(&given.narrow(1, 0, 1), 6).is_err());
        assert!(const_vel_frames(&given, 2).is_err());
        let z = d.normal(&[2, 3, 5, 7]);
        let fill = d.normal(&[2, 3, 5, 7]);
        let c = Conditioning::with_fill(&z, &fill).unwrap();
        assert!(c.x_cond.narrow(1, 3, 3).equal(&fill));
        assert!(Conditioning::with_fill(&z, &fill.narrow(2, 0, 4)).is_err());
    }

    #[test]
    fn sampling_reproduces_given_frames_and_is_deterministic_for_a_seed() {
        let _g = model_lock(2);
        let (_vs, codec, flow) = models();
        let mut d = Draws::new(3);
        let given = d.normal(&[2, 3, 5, 3]);
        let ids = codec.ids().draw(5, 1, &[10, 11]).unwrap();
        let batch = TrajectoryBatch {
            positions: &given,
            types: None,
            ids: &ids,
            samples: &[10, 11],
        };
        for (solver, fill) in [
            (Solver::Euler, Fill::Mean),
            (Solver::Dopri5, Fill::Mean),
            (Solver::Euler, Fill::ConstVel),
        ] {
            let sampler = SamplerConfig {
                solver,
                ..Default::default()
            };
            let a = sample_trajectories(&flow, &codec, &batch, 6, fill, &sampler, 7).unwrap();
            assert_eq!(a.size(), [2, 6, 5, 3]);
            assert!(
                a.narrow(1, 0, 3).equal(&given),
                "{solver:?}: given frames changed"
            );
            let b = sample_trajectories(&flow, &codec, &batch, 6, fill, &sampler, 7).unwrap();
            assert!(a.equal(&b), "{solver:?}: same seed, other samples");
            let c = sample_trajectories(&flow, &codec, &batch, 6, fill, &sampler, 8).unwrap();
            assert!(
                !a.narrow(1, 3, 3)
                    .allclose(&c.narrow(1, 3, 3), 1e-6, 1e-6, false)
            );
        }
        // latents: given frames are the conditioning latents, exactly
        let z = encode_frames(&codec, &batch, 3).unwrap();
        let cond = Conditioning::new(&z, 6).unwrap();
        let lat = sample_latents(&flow, &cond, &SamplerConfig::default(), 1, &[10, 11]).unwrap();
        assert!(lat.narrow(1, 0, 3).equal(&z));
        assert!(sample_latents(&flow, &cond, &SamplerConfig::default(), 1, &[10]).is_err());
        assert!(
            SamplerConfig {
                points: 1,
                ..Default::default()
            }
            .validate()
            .is_err()
        );
    }

    #[test]
    fn flow_loss_is_finite_reaches_the_flow_and_is_seeded() {
        let _g = model_lock(4);
        let (vs, codec, flow) = models();
        let mut d = Draws::new(5);
        let pos = d.normal(&[2, 4, 5, 3]);
        let ids = codec.ids().draw(5, 1, &[0, 1]).unwrap();
        let batch = TrajectoryBatch {
            positions: &pos,
            types: None,
            ids: &ids,
            samples: &[0, 1],
        };
        let w = FlowLossWeights::default();
        let l = flow_loss(&flow, &codec, &batch, 2, Fill::Mean, &w, 3).unwrap();
        assert!(l.total.double_value(&[]).is_finite());
        let again = flow_loss(&flow, &codec, &batch, 2, Fill::Mean, &w, 3).unwrap();
        assert_eq!(l.total.double_value(&[]), again.total.double_value(&[]));
        let other = flow_loss(&flow, &codec, &batch, 2, Fill::Mean, &w, 4).unwrap();
        assert_ne!(l.total.double_value(&[]), other.total.double_value(&[]));
        l.total.backward();
        let out_grad = vs.variables()["flow.out.weight"].grad();
        assert!(out_grad.abs().sum(Kind::Double).double_value(&[]) > 0.0);
        assert!(FlowLossWeights { eps: 0.0, ..w }.validate().is_err());
    }
}
