//! The workspace's one ODE integrator: `dy/dt = f(t, y)` on tensors, differentiable through the
//! solver steps (every stage is an ordinary tensor operation, so autograd sees the whole
//! computation — "discretise then optimise", as `torchdiffeq.odeint` without its adjoint).
//!
//! Solvers ([`Solver`]):
//! - [`Solver::Euler`] (order 1), [`Solver::Rk4`] (classic Runge–Kutta, order 4) and
//!   [`Solver::Rk4ThreeEighths`] (Kutta's 3/8 rule, order 4 — the variant `torchdiffeq` runs for
//!   `method="rk4"`): fixed steps. Without [`OdeOptions::step_size`] each interval between two
//!   output times is one step; with it, each interval is cut into `ceil(Δt / step_size)` equal
//!   steps, so every output time is reached exactly (no interpolation).
//! - [`Solver::Dopri5`]: Dormand–Prince 5(4) with adaptive step size, with the embedded
//!   4th-order solution of Shampine (1986) for the error estimate, as `torchdiffeq`'s `dopri5`
//!   (the solver of GF-NODE's authors). The local error estimate (5th − 4th order solution) is
//!   measured in the RMS norm of `err / (atol + rtol · max(|y_n|, |y_{n+1}|))`; a step is
//!   accepted when that norm is ≤ 1, and the next step is `h · clamp(0.9 · norm^(−1/5), 0.2, 10)`
//!   (never shrunk after an accepted step). The first step follows Hairer, Nørsett & Wanner
//!   (1993, II.4) unless [`OdeOptions::first_step`] is given. Output times are reached in one of
//!   two ways ([`OdeOptions::interpolate`]): by default steps are clipped so that every output
//!   time is hit exactly; with `interpolate`, steps run freely past output times and each output
//!   is read from the accepted step's quartic interpolant (the dense output `torchdiffeq` uses,
//!   through Shampine's mid-point), which takes the same steps as `torchdiffeq.odeint(…,
//!   method="dopri5")` for the same tolerances. Step-size control runs on detached values:
//!   gradients flow through the accepted steps (and the interpolants), not through the choice of
//!   their sizes.
//!
//! Errors: a step size that underflows [`OdeOptions::min_step`] (stiffness or a blow-up), more
//! than [`OdeOptions::max_steps`] steps, output times that are not strictly monotone or not
//! finite, and a non-finite state under the adaptive solver are [`Error::Ode`] naming the time
//! reached; errors of `f` itself are passed through.
//!
//! # Shapes
//! - `y0`: any shape `S` (one state tensor; stack or concatenate several states into one).
//! - `ts`: `[M]` output times, strictly increasing or strictly decreasing, `ts[0]` the time of `y0`.
//! - result [`OdeSolution::ys`]: `[M, S…]`, `ys[0] = y0`.
//!
//! # Example
//! ```
//! use graph_nets::ode::{OdeOptions, Solver, odeint};
//! use tch::{Device, Kind, Tensor};
//!
//! // dy/dt = −y, y(0) = 1 → y(1) = e^{−1}
//! let y0 = Tensor::ones([1], (Kind::Double, Device::Cpu));
//! let opts = OdeOptions { solver: Solver::Dopri5, rtol: 1e-8, atol: 1e-10, ..Default::default() };
//! let sol = odeint(|_t, y| Ok(-y), &y0, &[0.0, 1.0], &opts)?;
//! let y1 = sol.ys.double_value(&[1, 0]);
//! assert!((y1 - (-1.0f64).exp()).abs() < 1e-7);
//! # Ok::<(), graph_nets::Error>(())
//! ```

use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::error::{Error, Result};

/// The integration scheme.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Solver {
    /// Forward Euler, order 1, fixed steps.
    Euler,
    /// Classic Runge–Kutta (1/6, 1/3, 1/3, 1/6), order 4, fixed steps.
    Rk4,
    /// Kutta's 3/8 rule (1/8, 3/8, 3/8, 1/8), order 4, fixed steps.
    Rk4ThreeEighths,
    /// Dormand–Prince 5(4), adaptive steps with `rtol` / `atol`.
    #[default]
    Dopri5,
}

impl Solver {
    /// The order of accuracy of the scheme (the global error is `O(h^order)`).
    pub fn order(self) -> u32 {
        match self {
            Self::Euler => 1,
            Self::Rk4 | Self::Rk4ThreeEighths => 4,
            Self::Dopri5 => 5,
        }
    }

    /// Whether the solver chooses its own step sizes.
    pub fn is_adaptive(self) -> bool {
        matches!(self, Self::Dopri5)
    }
}

/// Options of [`odeint`]. `Default`: Dopri5 with `rtol = 1e-3`, `atol = 1e-4` (GF-NODE's MD17
/// setting), at most 10 000 steps.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OdeOptions {
    /// The scheme.
    pub solver: Solver,
    /// Fixed-step solvers: the largest step (each output interval is cut into equal steps no
    /// longer than this); `None` = one step per output interval. Ignored by Dopri5.
    pub step_size: Option<f64>,
    /// Dopri5: relative tolerance (> 0).
    pub rtol: f64,
    /// Dopri5: absolute tolerance (> 0).
    pub atol: f64,
    /// Dopri5: the first step size; `None` = chosen from `f` at `ts[0]`.
    pub first_step: Option<f64>,
    /// Dopri5: a step size below this (in |t| units) is an underflow error.
    pub min_step: f64,
    /// Steps (accepted + rejected) after which the solve fails.
    pub max_steps: usize,
    /// Dopri5: step past the output times and interpolate (`torchdiffeq`'s behaviour) instead
    /// of clipping steps to them (see the [module docs](self)).
    pub interpolate: bool,
}

impl Default for OdeOptions {
    fn default() -> Self {
        Self {
            solver: Solver::Dopri5,
            step_size: None,
            rtol: 1e-3,
            atol: 1e-4,
            first_step: None,
            min_step: 1e-12,
            max_steps: 10_000,
            interpolate: false,
        }
    }
}

impl OdeOptions {
    /// Checks the numeric options (positive tolerances and sizes).
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &'static str, reason: String| {
            Err(Error::Config {
                config: "OdeOptions",
                field,
                reason,
            })
        };
        if let Some(h) = self.step_size
            && !(h.is_finite() && h > 0.0)
        {
            return bad("step_size", format!("must be finite and > 0, got {h}"));
        }
        if let Some(h) = self.first_step
            && !(h.is_finite() && h > 0.0)
        {
            return bad("first_step", format!("must be finite and > 0, got {h}"));
        }
        for (field, v) in [
            ("rtol", self.rtol),
            ("atol", self.atol),
            ("min_step", self.min_step),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return bad(field, format!("must be finite and > 0, got {v}"));
            }
        }
        if self.max_steps == 0 {
            return bad("max_steps", "must be ≥ 1, got 0".to_owned());
        }
        Ok(())
    }
}

/// The result of [`odeint`]: the states at the output times and the solver's work.
#[derive(Debug)]
pub struct OdeSolution {
    /// `[M, S…]`: the state at each output time (`ys[0] = y0`).
    pub ys: Tensor,
    /// Evaluations of `f`.
    pub nfe: usize,
    /// Accepted steps.
    pub accepted: usize,
    /// Rejected steps (adaptive solver only).
    pub rejected: usize,
}

/// Integrates `dy/dt = f(t, y)` from `(ts[0], y0)` and returns the states at every `ts` (see
/// the [module docs](self) for the solvers, the step control and the errors).
pub fn odeint<F>(mut f: F, y0: &Tensor, ts: &[f64], opts: &OdeOptions) -> Result<OdeSolution>
where
    F: FnMut(f64, &Tensor) -> Result<Tensor>,
{
    opts.validate()?;
    let dir = check_times(ts)?;
    let mut stats = Stats::default();
    let mut out = Vec::with_capacity(ts.len());
    out.push(y0.shallow_clone());
    let mut y = y0.shallow_clone();
    if opts.solver.is_adaptive() && opts.interpolate {
        let mut stepper = Dopri5::new(opts, dir);
        out.extend(stepper.dense(&mut f, ts, y0, &mut stats)?);
    } else if opts.solver.is_adaptive() {
        let mut stepper = Dopri5::new(opts, dir);
        for w in ts.windows(2) {
            y = stepper.advance(&mut f, w[0], w[1], y, &mut stats)?;
            out.push(y.shallow_clone());
        }
    } else {
        for w in ts.windows(2) {
            let (t0, t1) = (w[0], w[1]);
            let n = match opts.step_size {
                None => 1,
                Some(h) => ((t1 - t0).abs() / h).ceil().max(1.0) as usize,
            };
            let h = (t1 - t0) / n as f64;
            for i in 0..n {
                if stats.accepted >= opts.max_steps {
                    return Err(Error::Ode {
                        t: t0 + i as f64 * h,
                        reason: format!("more than max_steps = {} steps", opts.max_steps),
                    });
                }
                y = fixed_step(opts.solver, &mut f, t0 + i as f64 * h, h, &y, &mut stats)?;
                stats.accepted += 1;
            }
            out.push(y.shallow_clone());
        }
    }
    Ok(OdeSolution {
        ys: Tensor::stack(&out, 0),
        nfe: stats.nfe,
        accepted: stats.accepted,
        rejected: stats.rejected,
    })
}

#[derive(Default)]
struct Stats {
    nfe: usize,
    accepted: usize,
    rejected: usize,
}

/// `+1.0` for increasing output times, `−1.0` for decreasing ones.
fn check_times(ts: &[f64]) -> Result<f64> {
    let err = |reason: String| Error::Input {
        op: "odeint",
        reason,
    };
    if ts.len() < 2 {
        return Err(err(format!(
            "`ts` needs at least 2 output times (the first is y0's), got {}",
            ts.len()
        )));
    }
    if let Some(i) = ts.iter().position(|t| !t.is_finite()) {
        return Err(err(format!("`ts[{i}]` = {} is not finite", ts[i])));
    }
    let dir = (ts[1] - ts[0]).signum();
    for (i, w) in ts.windows(2).enumerate() {
        if (w[1] - w[0]) * dir <= 0.0 {
            return Err(err(format!(
                "`ts` must be strictly monotone: ts[{i}] = {}, ts[{}] = {}",
                w[0],
                i + 1,
                w[1]
            )));
        }
    }
    Ok(dir)
}

fn eval<F>(f: &mut F, t: f64, y: &Tensor, stats: &mut Stats) -> Result<Tensor>
where
    F: FnMut(f64, &Tensor) -> Result<Tensor>,
{
    stats.nfe += 1;
    let dy = f(t, y)?;
    if dy.size() != y.size() {
        return Err(Error::Input {
            op: "odeint",
            reason: format!(
                "f(t, y) must have y's shape {:?}, got {:?} at t = {t}",
                y.size(),
                dy.size()
            ),
        });
    }
    Ok(dy)
}

/// One fixed step of size `h` from `(t, y)`.
fn fixed_step<F>(
    solver: Solver,
    f: &mut F,
    t: f64,
    h: f64,
    y: &Tensor,
    stats: &mut Stats,
) -> Result<Tensor>
where
    F: FnMut(f64, &Tensor) -> Result<Tensor>,
{
    Ok(match solver {
        Solver::Euler => y + eval(f, t, y, stats)? * h,
        Solver::Rk4 => {
            let k1 = eval(f, t, y, stats)?;
            let k2 = eval(f, t + h / 2.0, &(y + &k1 * (h / 2.0)), stats)?;
            let k3 = eval(f, t + h / 2.0, &(y + &k2 * (h / 2.0)), stats)?;
            let k4 = eval(f, t + h, &(y + &k3 * h), stats)?;
            y + (k1 + k2 * 2.0 + k3 * 2.0 + k4) * (h / 6.0)
        }
        Solver::Rk4ThreeEighths => {
            let k1 = eval(f, t, y, stats)?;
            let k2 = eval(f, t + h / 3.0, &(y + &k1 * (h / 3.0)), stats)?;
            let k3 = eval(f, t + h * 2.0 / 3.0, &(y + (&k2 - &k1 / 3.0) * h), stats)?;
            let k4 = eval(f, t + h, &(y + (&k1 - &k2 + &k3) * h), stats)?;
            y + (k1 + (k2 + k3) * 3.0 + k4) * (h / 8.0)
        }
        Solver::Dopri5 => unreachable!("Dopri5 is adaptive"),
    })
}

// Dormand–Prince 5(4) tableau.
const C: [f64; 6] = [1.0 / 5.0, 3.0 / 10.0, 4.0 / 5.0, 8.0 / 9.0, 1.0, 1.0];
const A: [&[f64]; 6] = [
    &[1.0 / 5.0],
    &[3.0 / 40.0, 9.0 / 40.0],
    &[44.0 / 45.0, -56.0 / 15.0, 32.0 / 9.0],
    &[
        19372.0 / 6561.0,
        -25360.0 / 2187.0,
        64448.0 / 6561.0,
        -212.0 / 729.0,
    ],
    &[
        9017.0 / 3168.0,
        -355.0 / 33.0,
        46732.0 / 5247.0,
        49.0 / 176.0,
        -5103.0 / 18656.0,
    ],
    // the 5th-order weights: the last stage is evaluated at the new state (FSAL)
    &[
        35.0 / 384.0,
        0.0,
        500.0 / 1113.0,
        125.0 / 192.0,
        -2187.0 / 6784.0,
        11.0 / 84.0,
    ],
];
/// 5th-order minus 4th-order weights (the error estimate), over the 7 stages; the 4th-order
/// solution is Shampine's (1986), as in `torchdiffeq`.
const E: [f64; 7] = [
    35.0 / 384.0 - 1951.0 / 21600.0,
    0.0,
    500.0 / 1113.0 - 22642.0 / 50085.0,
    125.0 / 192.0 - 451.0 / 720.0,
    -2187.0 / 6784.0 + 12231.0 / 42400.0,
    11.0 / 84.0 - 649.0 / 6300.0,
    -1.0 / 60.0,
];
/// Weights of the stages giving the state at the step's mid-point (Shampine 1986), for the dense
/// output.
const MID: [f64; 7] = [
    6025192743.0 / 30085553152.0 / 2.0,
    0.0,
    51252292925.0 / 65400821598.0 / 2.0,
    -2691868925.0 / 45128329728.0 / 2.0,
    187940372067.0 / 1594534317056.0 / 2.0,
    -1776094331.0 / 19743644256.0 / 2.0,
    11237099.0 / 235043384.0 / 2.0,
];
const SAFETY: f64 = 0.9;
const MAX_GROWTH: f64 = 10.0;
const MAX_SHRINK: f64 = 0.2;

struct Dopri5<'a> {
    opts: &'a OdeOptions,
    dir: f64,
    /// The next step's size (magnitude), once known.
    h: Option<f64>,
    /// `f(t, y)` at the current state (first same as last).
    f0: Option<(f64, Tensor)>,
}

impl<'a> Dopri5<'a> {
    fn new(opts: &'a OdeOptions, dir: f64) -> Self {
        Self {
            opts,
            dir,
            h: opts.first_step,
            f0: None,
        }
    }

    /// Fails when the step budget is spent or the step size `h` underflowed, at time `t`.
    fn check_budget(&self, t: f64, h: f64, stats: &Stats) -> Result<()> {
        if stats.accepted + stats.rejected >= self.opts.max_steps {
            return Err(Error::Ode {
                t,
                reason: format!(
                    "more than max_steps = {} steps ({} rejected)",
                    self.opts.max_steps, stats.rejected
                ),
            });
        }
        if h < self.opts.min_step {
            return Err(Error::Ode {
                t,
                reason: format!(
                    "step size {h:e} fell below min_step = {:e} (a stiff or diverging system, \
                     or tolerances too tight)",
                    self.opts.min_step
                ),
            });
        }
        Ok(())
    }

    /// One Dormand–Prince step of signed size `hs` from `(t, y)` with `k0 = f(t, y)`, ending at
    /// `t_end` (the stages at `c = 1` are evaluated there): the new state, the 7 stages (the
    /// last is `f` at the new state) and the error ratio (on detached values).
    #[allow(clippy::too_many_arguments)]
    fn step<F>(
        &self,
        f: &mut F,
        t: f64,
        y: &Tensor,
        k0: &Tensor,
        hs: f64,
        t_end: f64,
        stats: &mut Stats,
    ) -> Result<(Tensor, Vec<Tensor>, f64)>
    where
        F: FnMut(f64, &Tensor) -> Result<Tensor>,
    {
        let mut k = Vec::with_capacity(7);
        k.push(k0.shallow_clone());
        let mut y_new = None;
        for (s, (c, row)) in C.iter().zip(A).enumerate() {
            let mut acc = y.shallow_clone();
            for (j, a) in row.iter().enumerate() {
                if *a != 0.0 {
                    // not `+=`: that would add in place into `y`, which `acc` starts as
                    #[allow(clippy::assign_op_pattern)]
                    {
                        acc = acc + &k[j] * (hs * a);
                    }
                }
            }
            let ts = if *c == 1.0 { t_end } else { t + c * hs };
            let ks = eval(f, ts, &acc, stats)?;
            k.push(ks);
            if s == 5 {
                y_new = Some(acc);
            }
        }
        let y_new = y_new.expect("the last stage is the new state");
        let ratio = tch::no_grad(|| {
            let mut err = k[0].zeros_like();
            for (kj, e) in k.iter().zip(E) {
                if e != 0.0 {
                    err += kj * (hs * e);
                }
            }
            let scale = y.abs().maximum(&y_new.abs()) * self.opts.rtol + self.opts.atol;
            let r = (err / scale).square().mean(None).sqrt();
            r.double_value(&[])
        });
        Ok((y_new, k, ratio))
    }

    /// The factor from this step's size to the next one's, after an accepted step or not.
    fn factor(ratio: f64, accepted: bool) -> f64 {
        if accepted {
            if ratio == 0.0 {
                MAX_GROWTH
            } else {
                (SAFETY * ratio.powf(-0.2)).clamp(1.0, MAX_GROWTH)
            }
        } else if ratio.is_finite() {
            (SAFETY * ratio.powf(-0.2)).clamp(MAX_SHRINK, 1.0)
        } else {
            MAX_SHRINK
        }
    }

    /// Integrates from `(t0, y)` to exactly `t1`.
    fn advance<F>(
        &mut self,
        f: &mut F,
        t0: f64,
        t1: f64,
        mut y: Tensor,
        stats: &mut Stats,
    ) -> Result<Tensor>
    where
        F: FnMut(f64, &Tensor) -> Result<Tensor>,
    {
        let mut t = t0;
        let mut f0 = match self.f0.take() {
            Some((tf, k)) if tf == t0 => k,
            _ => eval(f, t0, &y, stats)?,
        };
        let mut h = match self.h {
            Some(h) => h,
            None => self.initial_step(f, t0, &y, &f0, stats)?,
        };
        while (t1 - t) * self.dir > 0.0 {
            self.check_budget(t, h, stats)?;
            let remaining = (t1 - t).abs();
            let clipped = h >= remaining;
            let step = if clipped { remaining } else { h };
            let hs = step * self.dir;
            // the stages at c = 1 sit on the step's end, exactly t1 for a clipped step
            let end = if clipped { t1 } else { t + hs };
            let (y_new, mut k, ratio) = self.step(f, t, &y, &f0, hs, end, stats)?;
            let accepted = ratio.is_finite() && ratio <= 1.0;
            let factor = Self::factor(ratio, accepted);
            if accepted {
                stats.accepted += 1;
                t = end;
                y = y_new;
                f0 = k.pop().expect("7 stages");
                // a step clipped to reach an output time says little about the next one
                h = if clipped {
                    h.max(step * factor)
                } else {
                    step * factor
                };
            } else {
                stats.rejected += 1;
                h = step * factor;
            }
        }
        self.h = Some(h);
        self.f0 = Some((t1, f0));
        Ok(y)
    }

    /// The states at `ts[1..]`, stepping freely from `(ts[0], y0)` and reading each output from
    /// the quartic interpolant of the accepted step that reached or passed it.
    fn dense<F>(
        &mut self,
        f: &mut F,
        ts: &[f64],
        y0: &Tensor,
        stats: &mut Stats,
    ) -> Result<Vec<Tensor>>
    where
        F: FnMut(f64, &Tensor) -> Result<Tensor>,
    {
        let (mut t, mut y) = (ts[0], y0.shallow_clone());
        let mut f0 = eval(f, t, &y, stats)?;
        let mut h = match self.h {
            Some(h) => h,
            None => self.initial_step(f, t, &y, &f0, stats)?,
        };
        // the last accepted step: its start, end and interpolant's coefficients (powers 0..=4)
        let mut last: Option<(f64, f64, [Tensor; 5])> = None;
        let mut out = Vec::with_capacity(ts.len() - 1);
        for &target in &ts[1..] {
            while (target - t) * self.dir > 0.0 {
                self.check_budget(t, h, stats)?;
                let hs = h * self.dir;
                let end = t + hs;
                let (y_new, k, ratio) = self.step(f, t, &y, &f0, hs, end, stats)?;
                let accepted = ratio.is_finite() && ratio <= 1.0;
                if accepted {
                    stats.accepted += 1;
                    let mut mid = y.shallow_clone();
                    for (kj, m) in k.iter().zip(MID) {
                        if m != 0.0 {
                            #[allow(clippy::assign_op_pattern)]
                            {
                                mid = mid + kj * (hs * m);
                            }
                        }
                    }
                    let (k0, k1) = (&k[0], &k[6]);
                    let a = (k1 - k0) * (2.0 * hs) - (&y_new + &y) * 8.0 + &mid * 16.0;
                    let b = (k0 * 5.0 - k1 * 3.0) * hs + &y * 18.0 + &y_new * 14.0 - &mid * 32.0;
                    let c = (k1 - k0 * 4.0) * hs - &y * 11.0 - &y_new * 5.0 + &mid * 16.0;
                    let d = k0 * hs;
                    last = Some((t, end, [y.shallow_clone(), d, c, b, a]));
                    t = end;
                    y = y_new;
                    f0 = k[6].shallow_clone();
                }
                h *= Self::factor(ratio, accepted);
                if !accepted {
                    stats.rejected += 1;
                }
            }
            let (t0, t1, coeff) = last.as_ref().expect("a step reached the output time");
            let x = (target - t0) / (t1 - t0);
            let mut total = &coeff[0] + &coeff[1] * x;
            let mut power = x;
            for c in &coeff[2..] {
                power *= x;
                // not `+=`: an in-place add would not change the value, kept out-of-place as
                // every other accumulation here
                #[allow(clippy::assign_op_pattern)]
                {
                    total = total + c * power;
                }
            }
            out.push(total);
        }
        Ok(out)
    }

    /// Hairer, Nørsett & Wanner (1993), II.4: a first step from the scales of `y0`, `f0`
    /// and a finite-difference estimate of `f`'s derivative.
    fn initial_step<F>(
        &self,
        f: &mut F,
        t0: f64,
        y0: &Tensor,
        f0: &Tensor,
        stats: &mut Stats,
    ) -> Result<f64>
    where
        F: FnMut(f64, &Tensor) -> Result<Tensor>,
    {
        tch::no_grad(|| {
            let scale = y0.abs() * self.opts.rtol + self.opts.atol;
            let rms = |x: &Tensor| (x / &scale).square().mean(None).sqrt().double_value(&[]);
            let d0 = rms(y0);
            let d1 = rms(f0);
            let h0 = if d0 < 1e-5 || d1 < 1e-5 {
                1e-6
            } else {
                0.01 * d0 / d1
            };
            let y1 = y0 + f0 * (h0 * self.dir);
            let f1 = eval(f, t0 + h0 * self.dir, &y1, stats)?;
            let d2 = rms(&(f1 - f0)) / h0;
            let h1 = if d1.max(d2) <= 1e-15 {
                (h0 * 1e-3).max(1e-6)
            } else {
                (0.01 / d1.max(d2)).powf(1.0 / 5.0)
            };
            let h = (100.0 * h0).min(h1);
            if h.is_finite() {
                Ok(h)
            } else {
                Err(Error::Ode {
                    t: t0,
                    reason: format!("the initial state or f(t0, y0) is not finite (h0 = {h})"),
                })
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    fn dbl(v: &[f64]) -> Tensor {
        Tensor::from_slice(v).to_kind(Kind::Double)
    }

    /// y' = A y with A = [[0, 1], [−1, 0]] (rotation): y(t) = (cos t, −sin t) from (1, 0).
    fn rotation(_t: f64, y: &Tensor) -> Result<Tensor> {
        let a = dbl(&[0.0, 1.0, -1.0, 0.0]).reshape([2, 2]);
        Ok(a.matmul(y))
    }

    fn exact_rotation(t: f64) -> [f64; 2] {
        [t.cos(), -t.sin()]
    }

    fn final_error(solver: Solver, step: f64) -> f64 {
        let opts = OdeOptions {
            solver,
            step_size: Some(step),
            ..Default::default()
        };
        let sol = odeint(rotation, &dbl(&[1.0, 0.0]), &[0.0, 2.0], &opts).unwrap();
        let e = exact_rotation(2.0);
        let got = [sol.ys.double_value(&[1, 0]), sol.ys.double_value(&[1, 1])];
        ((got[0] - e[0]).powi(2) + (got[1] - e[1]).powi(2)).sqrt()
    }

    #[test]
    fn fixed_step_solvers_converge_at_their_order() {
        for solver in [Solver::Euler, Solver::Rk4, Solver::Rk4ThreeEighths] {
            let (e1, e2) = (final_error(solver, 0.02), final_error(solver, 0.01));
            let observed = (e1 / e2).log2();
            let p = f64::from(solver.order());
            assert!(
                (observed - p).abs() < 0.15,
                "{solver:?}: error ratio 2^{observed:.3} under step halving, expected 2^{p}"
            );
        }
    }

    #[test]
    fn dopri5_steps_are_fifth_order() {
        // a fixed first step and tolerances so loose that no step is rejected or grown:
        // drive Dopri5 with steps of one size through `first_step` and max_steps, compare.
        let err = |h: f64| {
            let n = (2.0 / h).round() as usize;
            let ts: Vec<f64> = (0..=n).map(|i| i as f64 * h).collect();
            let opts = OdeOptions {
                solver: Solver::Dopri5,
                first_step: Some(h),
                rtol: 1e3,
                atol: 1e3,
                ..Default::default()
            };
            // each output interval is one step of size h (the step is clipped to it)
            let sol = odeint(rotation, &dbl(&[1.0, 0.0]), &ts, &opts).unwrap();
            assert_eq!(sol.accepted, n);
            let e = exact_rotation(2.0);
            let got = [
                sol.ys.double_value(&[n as i64, 0]),
                sol.ys.double_value(&[n as i64, 1]),
            ];
            ((got[0] - e[0]).powi(2) + (got[1] - e[1]).powi(2)).sqrt()
        };
        let observed = (err(0.1) / err(0.05)).log2();
        assert!((observed - 5.0).abs() < 0.3, "observed order {observed:.3}");
    }

    #[test]
    fn dopri5_meets_the_requested_tolerance_on_a_stiffish_problem() {
        // y' = −50 (y − cos t): a fast transient onto a slow manifold. Exact solution from
        // y(0) = 0: y = (2500 cos t + 50 sin t)/2501 − 2500/2501 e^{−50 t}.
        let exact = |t: f64| {
            (2500.0 * t.cos() + 50.0 * t.sin()) / 2501.0 - 2500.0 / 2501.0 * (-50.0 * t).exp()
        };
        let f = |t: f64, y: &Tensor| Ok((y - t.cos()) * -50.0);
        let ts: Vec<f64> = (0..=20).map(|i| i as f64 * 0.1).collect();
        for tol in [1e-4, 1e-7] {
            let opts = OdeOptions {
                rtol: tol,
                atol: tol,
                ..Default::default()
            };
            let sol = odeint(f, &dbl(&[0.0]), &ts, &opts).unwrap();
            let worst = ts
                .iter()
                .enumerate()
                .map(|(i, t)| (sol.ys.double_value(&[i as i64, 0]) - exact(*t)).abs())
                .fold(0.0, f64::max);
            // global error within a small multiple of the local tolerance
            assert!(worst < 20.0 * tol, "tol {tol:e}: worst error {worst:e}");
            assert!(sol.accepted > 10, "{} steps", sol.accepted);
        }
        // tighter tolerance costs more work
        let nfe = |tol: f64| {
            let o = OdeOptions {
                rtol: tol,
                atol: tol,
                ..Default::default()
            };
            odeint(f, &dbl(&[0.0]), &ts, &o).unwrap().nfe
        };
        assert!(nfe(1e-8) > nfe(1e-4));
    }

    /// With `interpolate`, the steps do not depend on the output times (they are the steps of
    /// a solve to the last time alone) and outputs are accurate between steps (backward in
    /// time: `backward_in_time_and_output_times_hit_exactly`).
    #[test]
    fn dopri5_dense_output_steps_past_the_output_times() {
        let opts = OdeOptions {
            rtol: 1e-6,
            atol: 1e-8,
            interpolate: true,
            ..Default::default()
        };
        let y0 = dbl(&[1.0, 0.0]);
        let ts = [0.0, 0.05, 0.3, 0.31, 1.2, 2.0];
        let sol = odeint(rotation, &y0, &ts, &opts).unwrap();
        let alone = odeint(rotation, &y0, &[0.0, 2.0], &opts).unwrap();
        assert_eq!(
            (sol.accepted, sol.rejected, sol.nfe),
            (alone.accepted, alone.rejected, alone.nfe)
        );
        let clipped = odeint(
            rotation,
            &y0,
            &ts,
            &OdeOptions {
                interpolate: false,
                ..opts.clone()
            },
        )
        .unwrap();
        assert!(clipped.accepted > sol.accepted, "clipping adds steps");
        for (i, &t) in ts.iter().enumerate() {
            let e = exact_rotation(t);
            for (j, ej) in e.iter().enumerate() {
                let got = sol.ys.double_value(&[i as i64, j as i64]);
                assert!((got - ej).abs() < 1e-5, "t = {t}: {got} vs {ej}");
            }
        }
    }

    #[test]
    fn backward_in_time_and_output_times_hit_exactly() {
        // y' = y from y(1) = e back to t = 0, steps clipped to the outputs or interpolated
        for interpolate in [false, true] {
            let opts = OdeOptions {
                rtol: 1e-9,
                atol: 1e-12,
                interpolate,
                ..Default::default()
            };
            let sol = odeint(
                |_t, y| Ok(y.shallow_clone()),
                &dbl(&[1f64.exp()]),
                &[1.0, 0.5, 0.0],
                &opts,
            )
            .unwrap();
            assert!((sol.ys.double_value(&[1, 0]) - 0.5f64.exp()).abs() < 1e-8);
            assert!((sol.ys.double_value(&[2, 0]) - 1.0).abs() < 1e-8);
        }
        // time-dependent f: y' = 2t → y = t² (Rk4 is exact for polynomials of degree ≤ 3)
        let ts = [0.0, 0.3, 1.1, 2.0];
        let o = OdeOptions {
            solver: Solver::Rk4,
            ..Default::default()
        };
        let sol = odeint(|t, y| Ok(y.zeros_like() + 2.0 * t), &dbl(&[0.0]), &ts, &o).unwrap();
        for (i, t) in ts.iter().enumerate() {
            assert!((sol.ys.double_value(&[i as i64, 0]) - t * t).abs() < 1e-12);
        }
        assert_eq!(sol.ys.size(), [4, 1]);
    }

    #[test]
    fn gradients_through_the_solver_match_finite_differences() {
        // y' = −θ y², y(0) = y0; d y(1) / dθ and d y(1) / d y0 by autograd vs central differences.
        // Autograd differentiates the accepted steps at their sizes, finite differences also see
        // the step sizes move with θ: Dopri5 runs at a tolerance where that is negligible.
        let solve = |theta: &Tensor, y0: &Tensor, (solver, interpolate): (Solver, bool)| {
            let opts = OdeOptions {
                solver,
                interpolate,
                step_size: Some(0.05),
                rtol: 1e-10,
                atol: 1e-12,
                ..Default::default()
            };
            odeint(
                |_t, y| Ok(-(y.square() * theta)),
                y0,
                &[0.0, 0.5, 1.0],
                &opts,
            )
            .unwrap()
            .ys
            .get(2)
            .sum(Kind::Double)
        };
        for solver in [
            (Solver::Euler, false),
            (Solver::Rk4, false),
            (Solver::Dopri5, false),
            (Solver::Dopri5, true),
        ] {
            let theta = dbl(&[0.7]).requires_grad_(true);
            let y0 = dbl(&[1.3, 0.4]).requires_grad_(true);
            let out = solve(&theta, &y0, solver);
            let g = Tensor::run_backward(&[out], &[&theta, &y0], false, false);
            let eps = 1e-6;
            let fd = |dt: f64, dy: [f64; 2]| {
                let th = dbl(&[0.7 + dt]);
                let y = dbl(&[1.3 + dy[0], 0.4 + dy[1]]);
                solve(&th, &y, solver).double_value(&[])
            };
            let fd_theta = (fd(eps, [0.0; 2]) - fd(-eps, [0.0; 2])) / (2.0 * eps);
            let fd_y0 = (fd(0.0, [eps, 0.0]) - fd(0.0, [-eps, 0.0])) / (2.0 * eps);
            let (ga, gy) = (g[0].double_value(&[0]), g[1].double_value(&[0]));
            assert!(
                (ga - fd_theta).abs() < 1e-6 * (1.0 + fd_theta.abs()),
                "{solver:?}: {ga} vs {fd_theta}"
            );
            assert!(
                (gy - fd_y0).abs() < 1e-6 * (1.0 + fd_y0.abs()),
                "{solver:?}: {gy} vs {fd_y0}"
            );
        }
    }

    #[test]
    fn failures_are_clear_errors() {
        let y0 = dbl(&[1.0]);
        // finite-time blow-up: y' = y², y(0) = 1 explodes at t = 1
        let opts = OdeOptions::default();
        let e = odeint(|_t, y| Ok(y.square()), &y0, &[0.0, 2.0], &opts).unwrap_err();
        assert!(
            matches!(e, Error::Ode { t, .. } if t > 0.9 && t < 1.0),
            "{e}"
        );
        // too few steps allowed
        let few = OdeOptions {
            max_steps: 3,
            rtol: 1e-10,
            atol: 1e-10,
            ..Default::default()
        };
        let e = odeint(rotation, &dbl(&[1.0, 0.0]), &[0.0, 10.0], &few).unwrap_err();
        assert!(e.to_string().contains("max_steps = 3"), "{e}");
        let fixed = OdeOptions {
            solver: Solver::Euler,
            step_size: Some(0.001),
            max_steps: 5,
            ..Default::default()
        };
        assert!(odeint(rotation, &dbl(&[1.0, 0.0]), &[0.0, 1.0], &fixed).is_err());
        // bad output times and options
        for ts in [
            &[0.0][..],
            &[0.0, 1.0, 1.0],
            &[0.0, 1.0, 0.5],
            &[0.0, f64::NAN],
        ] {
            let e = odeint(rotation, &dbl(&[1.0, 0.0]), ts, &opts).unwrap_err();
            assert!(
                matches!(e, Error::Input { op: "odeint", .. }),
                "{ts:?}: {e}"
            );
        }
        let bad = OdeOptions {
            rtol: -1.0,
            ..Default::default()
        };
        let e = odeint(rotation, &dbl(&[1.0, 0.0]), &[0.0, 1.0], &bad).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid OdeOptions.rtol: must be finite and > 0, got -1"
        );
        // f with the wrong output shape
        let e = odeint(
            |_t, y| Ok(y.sum(Kind::Double)),
            &dbl(&[1.0, 0.0]),
            &[0.0, 1.0],
            &opts,
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("f(t, y) must have y's shape [2]"),
            "{e}"
        );
        // f's own error passes through
        let e = odeint(
            |_t, _y| {
                Err(Error::Input {
                    op: "dynamics",
                    reason: "boom".into(),
                })
            },
            &y0,
            &[0.0, 1.0],
            &opts,
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "dynamics: boom");
    }

    #[test]
    fn options_round_trip_through_serde_with_kebab_case_solvers() {
        let o: OdeOptions =
            serde_json::from_str(r#"{"solver": "rk4-three-eighths", "step_size": 0.1}"#).unwrap();
        assert_eq!(o.solver, Solver::Rk4ThreeEighths);
        assert_eq!(o.step_size, Some(0.1));
        assert!(serde_json::from_str::<OdeOptions>(r#"{"solver": "rk45"}"#).is_err());
        assert!(serde_json::from_str::<OdeOptions>(r#"{"rtl": 1.0}"#).is_err());
    }
}
