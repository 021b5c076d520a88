//! 2-D incompressible Navier–Stokes in vorticity form on the periodic unit square, the FNO
//! benchmark's setting (SDKD's grid data; SPEC §4.8):
//!
//! ```text
//! ∂_t w + u·∇w = ν Δw + f,      ∇·u = 0,      w = ∂_x u_y − ∂_y u_x,      x ∈ [0, 1)²
//! ```
//!
//! **Method.** Pseudo-spectral on an `n × n` grid: the stream function `ψ̂ = ŵ / (4π²|k|²)`
//! (`Δψ = −w`), velocity `u = (∂_y ψ, −∂_x ψ)` (divergence-free by construction), the advection
//! `u·∇w` formed on the grid and dealiased by the 2/3 rule, viscosity by Crank–Nicolson and
//! advection plus forcing explicitly:
//!
//! ```text
//! ŵ ← ((1 − ½ ν dt 4π²|k|²) ŵ − dt (u·∇w)^ + dt f̂) / (1 + ½ ν dt 4π²|k|²)
//! ```
//!
//! (the scheme of the FNO paper's data generator, written here from its description). Defaults:
//! `n = 64`, `ν = 10⁻³`, `dt = 10⁻⁴`, forcing `f = 0.1 (sin 2π(x + y) + cos 2π(x + y))`, initial
//! vorticity a Gaussian random field with covariance `σ² (−Δ + τ² I)^{−α}`, `α = 2.5`, `τ = 7`,
//! `σ = τ^{(2α − 2)/2}`, zero mean. FFTs by `rustfft`.
//!
//! **Layout.** A field is `n·n` values, row-major, `field[i·n + j]` at `y = i/n`, `x = j/n`.
//!
//! **Determinism.** Trajectory `i` of a spec draws its initial field from a ChaCha8 generator
//! seeded with `sha256("traj-data/navier-stokes/v1", seed, i)`.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rayon::prelude::*;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use rustfft::num_complex::Complex64;
use rustfft::{Fft, FftPlanner};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::grid::{GridMeta, GridSplit, write_grid_dir};
use crate::manifest::Manifest;
use crate::split::Split;

const TAU: f64 = 2.0 * std::f64::consts::PI;

/// Settings of a Navier–Stokes trajectory generator; [`NavierStokesSpec::validate`] checks them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NavierStokesSpec {
    /// Grid points per side (even, ≥ 4).
    pub resolution: usize,
    /// Kinematic viscosity ν.
    pub viscosity: f64,
    /// Time step.
    pub dt: f64,
    /// Steps between saved frames.
    pub steps_per_frame: usize,
    /// Saved frames after the initial one.
    pub frames: usize,
    /// Apply the FNO forcing `0.1 (sin 2π(x + y) + cos 2π(x + y))` (else none).
    pub forcing: bool,
    /// α of the initial field's covariance.
    pub grf_alpha: f64,
    /// τ of the initial field's covariance.
    pub grf_tau: f64,
    /// Master seed.
    pub seed: u64,
}

impl Default for NavierStokesSpec {
    /// FNO's `ν = 10⁻³` setting: 64², `dt = 10⁻⁴`, a frame every time unit (10⁴ steps), 50
    /// frames.
    fn default() -> Self {
        Self {
            resolution: 64,
            viscosity: 1e-3,
            dt: 1e-4,
            steps_per_frame: 10_000,
            frames: 50,
            forcing: true,
            grf_alpha: 2.5,
            grf_tau: 7.0,
            seed: 0,
        }
    }
}

impl NavierStokesSpec {
    /// Rejects settings that cannot run, naming the field.
    pub fn validate(&self) -> Result<()> {
        let bad = |reason: String| Err(Error::spec("Navier–Stokes spec", reason));
        if self.resolution < 4 || !self.resolution.is_multiple_of(2) {
            return bad(format!(
                "resolution must be even and ≥ 4, got {}",
                self.resolution
            ));
        }
        for (name, v) in [
            ("viscosity", self.viscosity),
            ("dt", self.dt),
            ("grf_alpha", self.grf_alpha),
            ("grf_tau", self.grf_tau),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return bad(format!("{name} must be a finite number > 0, got {v}"));
            }
        }
        if self.steps_per_frame == 0 {
            return bad("steps_per_frame must be ≥ 1".into());
        }
        Ok(())
    }

    /// The solver of this spec.
    pub fn solver(&self) -> Result<NavierStokes2d> {
        self.validate()?;
        let grid = SpectralGrid::new(self.resolution);
        let forcing = self.forcing.then(|| fno_forcing(self.resolution));
        Ok(NavierStokes2d::new(
            grid,
            self.viscosity,
            self.dt,
            forcing.as_deref(),
        ))
    }

    /// The initial vorticity of trajectory `index`.
    pub fn initial(&self, index: u64) -> Result<Vec<f64>> {
        self.validate()?;
        let mut h = Sha256::new();
        h.update(b"traj-data/navier-stokes/v1");
        h.update(self.seed.to_le_bytes());
        h.update(index.to_le_bytes());
        let seed: [u8; 32] = h.finalize().into();
        let mut rng = ChaCha8Rng::from_seed(seed);
        let grid = SpectralGrid::new(self.resolution);
        Ok(grid.gaussian_random_field(self.grf_alpha, self.grf_tau, &mut rng))
    }

    /// Trajectory `index`: the initial vorticity and `frames` saved frames, `frames + 1`
    /// fields of `resolution²` values.
    pub fn trajectory(&self, index: u64) -> Result<Vec<Vec<f64>>> {
        let solver = self.solver()?;
        let w0 = self.initial(index)?;
        let mut w_hat = solver.grid.forward(&w0);
        let mut out = Vec::with_capacity(self.frames + 1);
        out.push(w0);
        for _ in 0..self.frames {
            for _ in 0..self.steps_per_frame {
                solver.step(&mut w_hat);
            }
            let w = solver.grid.inverse(&w_hat);
            if w.iter().any(|v| !v.is_finite()) {
                return Err(Error::spec(
                    "Navier–Stokes spec",
                    format!(
                        "the solution became non-finite (dt = {} too large?)",
                        self.dt
                    ),
                ));
            }
            out.push(w);
        }
        Ok(out)
    }
}

/// A Navier–Stokes grid dataset (SDKD's NSE setting, SPEC §4.8): `train`, `val` and `test`
/// trajectories of [`NavierStokesSpec`], each `frames + 1` vorticity fields, written in the
/// [`grid`](crate::grid) format. Trajectory indices are consecutive over the splits (train
/// `0..train`, then val, then test), so the splits never share an initial field and every
/// trajectory is a function of `(spec, index)` alone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NsDatasetSpec {
    /// The solver and its initial fields.
    pub ns: NavierStokesSpec,
    /// Training trajectories.
    pub train: usize,
    /// Validation trajectories.
    pub val: usize,
    /// Test trajectories.
    pub test: usize,
}

impl Default for NsDatasetSpec {
    /// SDKD's NSE sizes: 64², 1000 / 100 / 100 trajectories of 20 frames after the initial one
    /// (10 in → 10 out), a frame every time unit.
    fn default() -> Self {
        Self {
            ns: NavierStokesSpec {
                frames: 20,
                ..Default::default()
            },
            train: 1000,
            val: 100,
            test: 100,
        }
    }
}

impl NsDatasetSpec {
    /// A small dataset for quick runs and CI: 32², `dt = 10⁻³` (1000 steps per time unit; the
    /// CFL number stays below 0.1 at these velocities), 20 frames after the initial one,
    /// 128 / 24 / 24 trajectories (about 2 CPU-seconds each).
    pub fn quick() -> Self {
        Self {
            ns: NavierStokesSpec {
                resolution: 32,
                dt: 1e-3,
                steps_per_frame: 1000,
                frames: 20,
                ..Default::default()
            },
            train: 128,
            val: 24,
            test: 24,
        }
    }

    /// The first trajectory index and the count of `split`.
    pub fn range(&self, split: Split) -> (u64, usize) {
        match split {
            Split::Train => (0, self.train),
            Split::Val => (self.train as u64, self.val),
            Split::Test => ((self.train + self.val) as u64, self.test),
        }
    }

    /// Generates one split (trajectories in parallel; the values do not depend on the thread
    /// count), calling `tick` after each trajectory.
    ///
    /// # Errors
    /// An invalid spec; a solution that became non-finite.
    pub fn generate_split(&self, split: Split, tick: &(dyn Fn() + Sync)) -> Result<GridSplit> {
        self.ns.validate()?;
        let (first, count) = self.range(split);
        let trajectories = (0..count as u64)
            .into_par_iter()
            .map(|i| {
                let t = self.ns.trajectory(first + i);
                tick();
                t
            })
            .collect::<Result<Vec<_>>>()?;
        let values = trajectories
            .iter()
            .flatten()
            .flatten()
            .map(|&v| v as f32)
            .collect();
        let n = self.ns.resolution;
        GridSplit::new(
            count,
            self.ns.frames + 1,
            n,
            values,
            GridMeta {
                name: "navier-stokes-2d".into(),
                frame_dt: self.ns.dt * self.ns.steps_per_frame as f64,
                generator: self.generator()?,
                first_index: first,
            },
        )
    }

    fn generator(&self) -> Result<serde_json::Value> {
        serde_json::to_value(self).map_err(|e| Error::spec("Navier–Stokes dataset", e.to_string()))
    }

    /// Generates the dataset into `out_dir` (`train.safetensors`, `val.safetensors`,
    /// `test.safetensors`, `manifest.json`), resuming: splits already written by the same spec
    /// and verified by the manifest are kept. `progress(done, total)` counts trajectories.
    ///
    /// # Errors
    /// As [`NsDatasetSpec::generate_split`]; I/O errors naming the file.
    pub fn generate_dir(
        &self,
        out_dir: &Path,
        progress: &(dyn Fn(usize, usize) + Sync),
    ) -> Result<Manifest> {
        self.ns.validate()?;
        let total = self.train + self.val + self.test;
        let done = AtomicUsize::new(0);
        let tick = || progress(done.fetch_add(1, Ordering::Relaxed) + 1, total);
        write_grid_dir("navier-stokes-2d", self.generator()?, out_dir, |split| {
            self.generate_split(split, &tick)
        })
    }
}

/// The FNO forcing `0.1 (sin 2π(x + y) + cos 2π(x + y))` on an `n × n` grid.
pub fn fno_forcing(n: usize) -> Vec<f64> {
    let mut f = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..n {
            let s = TAU * (i + j) as f64 / n as f64;
            f[i * n + j] = 0.1 * (s.sin() + s.cos());
        }
    }
    f
}

/// Wavenumbers, FFT plans and the 2/3-rule mask of a periodic `n × n` grid on the unit square.
pub struct SpectralGrid {
    n: usize,
    fft: Arc<dyn Fft<f64>>,
    ifft: Arc<dyn Fft<f64>>,
    /// Signed integer wavenumber of each index for first derivatives (the Nyquist index, whose
    /// sign is ambiguous, counts as 0 so derivatives of real fields stay real).
    k: Vec<f64>,
    /// `|k|` of each index, Nyquist included (for the Laplacian).
    k_abs: Vec<f64>,
    /// Whether `|k| ≤ n/3` (kept by the dealiasing mask).
    keep: Vec<bool>,
}

impl std::fmt::Debug for SpectralGrid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpectralGrid").field("n", &self.n).finish()
    }
}

impl SpectralGrid {
    /// The grid of `n × n` points (`n` even).
    pub fn new(n: usize) -> Self {
        let mut planner = FftPlanner::new();
        let k: Vec<f64> = (0..n)
            .map(|m| {
                let m = m as i64;
                let n = n as i64;
                if 2 * m < n {
                    m as f64
                } else if 2 * m == n {
                    0.0
                } else {
                    (m - n) as f64
                }
            })
            .collect();
        let k_abs: Vec<f64> = (0..n)
            .map(|m| if 2 * m <= n { m as f64 } else { (n - m) as f64 })
            .collect();
        let cut = 2.0 / 3.0 * (n / 2) as f64;
        let keep = k_abs.iter().map(|&k| k <= cut).collect();
        Self {
            n,
            fft: planner.plan_fft_forward(n),
            ifft: planner.plan_fft_inverse(n),
            k,
            k_abs,
            keep,
        }
    }

    /// Points per side.
    pub fn n(&self) -> usize {
        self.n
    }

    fn transform(&self, data: &mut [Complex64], plan: &Arc<dyn Fft<f64>>) {
        let n = self.n;
        // rows, then columns (through a transpose)
        for row in data.chunks_mut(n) {
            plan.process(row);
        }
        let mut col = vec![Complex64::new(0.0, 0.0); n];
        for j in 0..n {
            for i in 0..n {
                col[i] = data[i * n + j];
            }
            plan.process(&mut col);
            for i in 0..n {
                data[i * n + j] = col[i];
            }
        }
    }

    /// The 2-D DFT of a real field (unnormalised).
    pub fn forward(&self, field: &[f64]) -> Vec<Complex64> {
        assert_eq!(field.len(), self.n * self.n, "a field has n² values");
        let mut data: Vec<Complex64> = field.iter().map(|&v| Complex64::new(v, 0.0)).collect();
        self.transform(&mut data, &self.fft);
        data
    }

    /// The real part of the inverse 2-D DFT (normalised by `1/n²`).
    pub fn inverse(&self, spectrum: &[Complex64]) -> Vec<f64> {
        let mut data = spectrum.to_vec();
        self.transform(&mut data, &self.ifft);
        let scale = 1.0 / (self.n * self.n) as f64;
        data.iter().map(|c| c.re * scale).collect()
    }

    /// `(k_x, k_y)` of spectral index `i·n + j` (`k_y` along rows, `k_x` along columns).
    fn wavenumbers(&self, idx: usize) -> (f64, f64) {
        (self.k[idx % self.n], self.k[idx / self.n])
    }

    /// `4π²|k|²`, the symbol of `−Δ` (0 only at `k = 0`).
    fn neg_laplacian(&self, idx: usize) -> f64 {
        let (kx, ky) = (self.k_abs[idx % self.n], self.k_abs[idx / self.n]);
        TAU * TAU * (kx * kx + ky * ky)
    }

    /// The velocity `(u_x, u_y) = (∂_y ψ, −∂_x ψ)` of a vorticity spectrum, `Δψ = −w`.
    pub fn velocity_of(&self, w_hat: &[Complex64]) -> (Vec<f64>, Vec<f64>) {
        let i = Complex64::new(0.0, 1.0);
        let mut ux = Vec::with_capacity(w_hat.len());
        let mut uy = Vec::with_capacity(w_hat.len());
        for (idx, w) in w_hat.iter().enumerate() {
            let (kx, ky) = self.wavenumbers(idx);
            let psi = if idx == 0 {
                Complex64::new(0.0, 0.0)
            } else {
                w / self.neg_laplacian(idx)
            };
            ux.push(i * TAU * ky * psi);
            uy.push(-i * TAU * kx * psi);
        }
        (self.inverse(&ux), self.inverse(&uy))
    }

    /// The velocity of a vorticity field (see [`SpectralGrid::velocity_of`]).
    pub fn velocity(&self, w: &[f64]) -> (Vec<f64>, Vec<f64>) {
        self.velocity_of(&self.forward(w))
    }

    /// A zero-mean Gaussian random field with covariance `σ² (4π²|k|² + τ²)^{−α}` per Fourier
    /// mode, `σ = τ^{(2α − 2)/2}` (the FNO benchmark's initial condition), zero mean: complex
    /// normal coefficients of standard deviation `√2 n² σ (4π²|k|² + τ²)^{−α/2}`, and the real
    /// part of their inverse transform.
    pub fn gaussian_random_field(&self, alpha: f64, tau: f64, rng: &mut ChaCha8Rng) -> Vec<f64> {
        let n = self.n;
        let sigma = tau.powf(0.5 * (2.0 * alpha - 2.0));
        let mut spec = vec![Complex64::new(0.0, 0.0); n * n];
        for (idx, c) in spec.iter_mut().enumerate() {
            if idx == 0 {
                continue;
            }
            let (kx, ky) = (self.k_abs[idx % n], self.k_abs[idx / n]);
            let amp = std::f64::consts::SQRT_2
                * (n * n) as f64
                * sigma
                * (TAU * TAU * (kx * kx + ky * ky) + tau * tau).powf(-alpha / 2.0);
            let (a, b): (f64, f64) = (StandardNormal.sample(rng), StandardNormal.sample(rng));
            *c = Complex64::new(a, b) * amp;
        }
        self.inverse(&spec)
    }

    /// Whether spectral index `idx` survives the 2/3-rule dealiasing.
    fn kept(&self, idx: usize) -> bool {
        self.keep[idx % self.n] && self.keep[idx / self.n]
    }
}

/// The time stepper (see the module docs).
#[derive(Debug)]
pub struct NavierStokes2d {
    grid: SpectralGrid,
    viscosity: f64,
    dt: f64,
    forcing_hat: Option<Vec<Complex64>>,
}

impl NavierStokes2d {
    /// A stepper on `grid` with viscosity `ν`, step `dt` and an optional forcing field.
    pub fn new(grid: SpectralGrid, viscosity: f64, dt: f64, forcing: Option<&[f64]>) -> Self {
        let forcing_hat = forcing.map(|f| grid.forward(f));
        Self {
            grid,
            viscosity,
            dt,
            forcing_hat,
        }
    }

    /// The grid.
    pub fn grid(&self) -> &SpectralGrid {
        &self.grid
    }

    /// One step of the spectrum `ŵ` in place.
    pub fn step(&self, w_hat: &mut [Complex64]) {
        let g = &self.grid;
        let i = Complex64::new(0.0, 1.0);
        let (ux, uy) = g.velocity_of(w_hat);
        let mut wx = Vec::with_capacity(w_hat.len());
        let mut wy = Vec::with_capacity(w_hat.len());
        for (idx, w) in w_hat.iter().enumerate() {
            let (kx, ky) = g.wavenumbers(idx);
            wx.push(i * TAU * kx * w);
            wy.push(i * TAU * ky * w);
        }
        let (wx, wy) = (g.inverse(&wx), g.inverse(&wy));
        let advection: Vec<f64> = (0..wx.len())
            .map(|p| ux[p] * wx[p] + uy[p] * wy[p])
            .collect();
        let adv_hat = g.forward(&advection);
        let (nu, dt) = (self.viscosity, self.dt);
        for (idx, w) in w_hat.iter_mut().enumerate() {
            let lap = g.neg_laplacian(idx);
            let mut rhs = *w * (1.0 - 0.5 * dt * nu * lap);
            if g.kept(idx) {
                rhs -= adv_hat[idx] * dt;
            }
            if let Some(f) = &self.forcing_hat {
                rhs += f[idx] * dt;
            }
            *w = rhs / (1.0 + 0.5 * dt * nu * lap);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(n: usize, f: impl Fn(f64, f64) -> f64) -> Vec<f64> {
        let mut out = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                out[i * n + j] = f(j as f64 / n as f64, i as f64 / n as f64);
            }
        }
        out
    }

    fn max_abs(v: &[f64]) -> f64 {
        v.iter().fold(0.0, |m, x| m.max(x.abs()))
    }

    /// The velocity of `w = sin(2πx) cos(4πy)` is the analytic `(∂_y ψ, −∂_x ψ)` of
    /// `ψ = w / (4π² · 5)`, and the velocity of a random field is divergence-free and has that
    /// field as its curl (second-order central differences, to their truncation error).
    #[test]
    fn velocity_is_divergence_free_with_the_vorticity_as_curl() {
        let n = 32;
        let g = SpectralGrid::new(n);
        let w = field(n, |x, y| (TAU * x).sin() * (2.0 * TAU * y).cos());
        let (ux, uy) = g.velocity(&w);
        let c = TAU * TAU * 5.0;
        let want_ux = field(n, |x, y| {
            -(TAU * x).sin() * 2.0 * TAU * (2.0 * TAU * y).sin() / c
        });
        let want_uy = field(n, |x, y| -TAU * (TAU * x).cos() * (2.0 * TAU * y).cos() / c);
        let diff = |a: &[f64], b: &[f64]| {
            a.iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0, f64::max)
        };
        assert!(diff(&ux, &want_ux) < 1e-12, "{}", diff(&ux, &want_ux));
        assert!(diff(&uy, &want_uy) < 1e-12, "{}", diff(&uy, &want_uy));
        // a smooth random field (steep spectrum), finite differences
        let spec = NavierStokesSpec {
            resolution: n,
            grf_alpha: 4.0,
            ..Default::default()
        };
        let w = spec.initial(3).unwrap();
        let (ux, uy) = g.velocity(&w);
        let h = 1.0 / n as f64;
        let at = |v: &[f64], i: usize, j: usize| v[(i % n) * n + (j % n)];
        let (mut div, mut curl_err, mut grad) = (0.0f64, 0.0f64, 0.0f64);
        for i in 0..n {
            for j in 0..n {
                let dx = |v: &[f64]| (at(v, i, j + 1) - at(v, i, j + n - 1)) / (2.0 * h);
                let dy = |v: &[f64]| (at(v, i + 1, j) - at(v, i + n - 1, j)) / (2.0 * h);
                div = div.max((dx(&ux) + dy(&uy)).abs());
                curl_err = curl_err.max((dx(&uy) - dy(&ux) - w[i * n + j]).abs());
                grad = grad.max(dx(&ux).abs() + dy(&uy).abs());
            }
        }
        assert!(div < 1e-2 * grad, "divergence {div} vs gradients {grad}");
        assert!(curl_err < 2e-2 * max_abs(&w), "curl error {curl_err}");
    }

    /// A single Fourier mode is a steady solution of the Euler part (`u·∇w = 0`), so without
    /// forcing it decays as `exp(−ν 4π²|k|² t)`; Crank–Nicolson's factor agrees to O(dt³) per
    /// step.
    #[test]
    fn a_single_mode_decays_at_the_analytic_rate() {
        let n = 16;
        let (nu, dt, steps) = (1e-2, 1e-3, 500);
        let solver = NavierStokes2d::new(SpectralGrid::new(n), nu, dt, None);
        let w0 = field(n, |x, y| (TAU * (2.0 * x + y)).cos());
        let mut w_hat = solver.grid().forward(&w0);
        for _ in 0..steps {
            solver.step(&mut w_hat);
        }
        let w = solver.grid().inverse(&w_hat);
        let decay = (-nu * TAU * TAU * 5.0 * dt * steps as f64).exp();
        let err = w
            .iter()
            .zip(&w0)
            .map(|(a, b)| (a - b * decay).abs())
            .fold(0.0, f64::max);
        assert!(decay < 0.95, "the test must see decay ({decay})");
        // Crank–Nicolson's factor (1 − a/2)/(1 + a/2) is e^{−a} + O(a³): ≈ 3·10⁻⁷ here
        assert!(err < 1e-6, "{err}");
    }

    /// Unforced, the enstrophy `Σ w²` of a random field never grows (to rounding), and the
    /// generator is a function of its seed.
    #[test]
    fn unforced_enstrophy_decays_and_trajectories_are_deterministic() {
        let spec = NavierStokesSpec {
            resolution: 16,
            viscosity: 1e-2,
            dt: 1e-3,
            steps_per_frame: 20,
            frames: 5,
            forcing: false,
            ..Default::default()
        };
        let t = spec.trajectory(1).unwrap();
        assert_eq!(t.len(), 6);
        let enstrophy: Vec<f64> = t.iter().map(|w| w.iter().map(|v| v * v).sum()).collect();
        for pair in enstrophy.windows(2) {
            assert!(pair[1] <= pair[0] * (1.0 + 1e-9), "{enstrophy:?}");
        }
        assert!(enstrophy[5] < enstrophy[0]);
        assert_eq!(t, spec.trajectory(1).unwrap());
        assert_ne!(t[0], spec.trajectory(2).unwrap()[0]);
        let bad = NavierStokesSpec {
            resolution: 15,
            ..spec.clone()
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("resolution")
        );
    }

    /// A dataset directory is deterministic, its splits hold consecutive trajectory indices
    /// (the stored fields are `trajectory(index)` in f32), and a regenerated directory is kept.
    #[test]
    fn dataset_dir_is_deterministic_and_split_by_index() {
        let spec = NsDatasetSpec {
            ns: NavierStokesSpec {
                resolution: 8,
                dt: 1e-3,
                steps_per_frame: 5,
                frames: 2,
                ..Default::default()
            },
            train: 3,
            val: 1,
            test: 2,
        };
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let ma = spec.generate_dir(a.path(), &|_, _| {}).unwrap();
        let mb = spec.generate_dir(b.path(), &|_, _| {}).unwrap();
        assert_eq!(ma.files, mb.files);
        let test = crate::grid::load_grid_split(a.path(), Split::Test).unwrap();
        assert_eq!(
            (test.samples(), test.frames(), test.resolution()),
            (2, 3, 8)
        );
        assert_eq!(test.meta().first_index, 4);
        let want = spec.ns.trajectory(5).unwrap();
        let got: Vec<f64> = test.field(1, 2).iter().map(|&v| f64::from(v)).collect();
        let want: Vec<f64> = want[2].iter().map(|&v| f64::from(v as f32)).collect();
        assert_eq!(got, want);
        // an unchanged spec regenerates nothing
        let calls = AtomicUsize::new(0);
        spec.generate_dir(a.path(), &|_, _| {
            calls.fetch_add(1, Ordering::Relaxed);
        })
        .unwrap();
        assert_eq!(calls.into_inner(), 0);
    }
}
