//! SGDD's two-stage teacher-forcing schedule (seed 000, "Dual-layer Alignment + Phase-based
//! Training"; SPEC §4.4).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, check_range};

/// Settings of [`TeacherForcingSchedule`]; [`check`](Self::check) validates them.
///
/// Defaults are SGDD's: the first third of the iterations with ratio 1.0 (the decoder always reads
/// the teacher's `z^sg_dyn`), then ratio 0.5.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TeacherForcingConfig {
    /// Fraction of the iterations in stage 1 (pre-training), in `[0, 1]`.
    pub stage1_fraction: f64,
    /// Teacher-forcing ratio of stage 1, in `[0, 1]`.
    pub stage1_ratio: f64,
    /// Teacher-forcing ratio of stage 2 (joint training), in `[0, 1]`.
    pub stage2_ratio: f64,
    /// Seed of the per-iteration draws.
    pub seed: u64,
}

impl Default for TeacherForcingConfig {
    fn default() -> Self {
        Self {
            stage1_fraction: 1.0 / 3.0,
            stage1_ratio: 1.0,
            stage2_ratio: 0.5,
            seed: 0,
        }
    }
}

impl TeacherForcingConfig {
    /// Validates the settings and fixes the number of training iterations.
    ///
    /// Stage 1 covers iterations `0 .. round(stage1_fraction · total_iterations)`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when a fraction or ratio is outside `[0, 1]` or
    /// `total_iterations` is 0.
    pub fn check(self, total_iterations: u64) -> Result<TeacherForcingSchedule> {
        let unit = |v: f64| (0.0..=1.0).contains(&v);
        check_range(
            "stage1_fraction",
            self.stage1_fraction,
            unit,
            "a number in [0, 1]",
        )?;
        check_range(
            "stage1_ratio",
            self.stage1_ratio,
            unit,
            "a number in [0, 1]",
        )?;
        check_range(
            "stage2_ratio",
            self.stage2_ratio,
            unit,
            "a number in [0, 1]",
        )?;
        if total_iterations == 0 {
            return Err(Error::InvalidConfig {
                field: "total_iterations",
                value: "0".into(),
                expected: "at least one iteration",
            });
        }
        // Exact for any realistic iteration count (< 2^53).
        let stage1_iterations = (self.stage1_fraction * total_iterations as f64).round() as u64;
        Ok(TeacherForcingSchedule {
            cfg: self,
            total_iterations,
            stage1_iterations,
        })
    }
}

/// The training stage an iteration belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Stage 1: pre-training with the stage-1 ratio (1.0 in SGDD).
    Pretrain,
    /// Stage 2: joint training with the stage-2 ratio (0.5 in SGDD).
    Joint,
}

/// Which representation the decoder reads at an iteration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecoderInput {
    /// The teacher's `z^sg_dyn` (teacher forcing).
    Teacher,
    /// The student's `z^sg_init`.
    Student,
}

/// SGDD's teacher-forcing schedule (seed 000, "A two-stage strategy ... teacher-forcing ratio of 1.0
/// ... (approx. 1/3 of iterations), followed by a joint training phase where the ratio drops to
/// 0.5"; SPEC §4.4).
///
/// Each iteration's draw is a pure function of `(seed, iteration)` — a ChaCha8 stream per
/// iteration — so a run resumed from a checkpoint at iteration `i` makes exactly the same choices
/// as an uninterrupted one, with no RNG state to save. Iterations past `total_iterations` stay in
/// stage 2. At inference the schedule is not used: the decoder reads the student only.
#[derive(Debug, Clone)]
pub struct TeacherForcingSchedule {
    cfg: TeacherForcingConfig,
    total_iterations: u64,
    stage1_iterations: u64,
}

impl TeacherForcingSchedule {
    /// The validated settings.
    pub fn config(&self) -> &TeacherForcingConfig {
        &self.cfg
    }

    /// The number of training iterations the schedule was built for.
    pub fn total_iterations(&self) -> u64 {
        self.total_iterations
    }

    /// The number of stage-1 iterations, `round(stage1_fraction · total_iterations)`.
    pub fn stage1_iterations(&self) -> u64 {
        self.stage1_iterations
    }

    /// The stage of iteration `iteration` (0-based).
    pub fn stage(&self, iteration: u64) -> Stage {
        if iteration < self.stage1_iterations {
            Stage::Pretrain
        } else {
            Stage::Joint
        }
    }

    /// The teacher-forcing ratio at `iteration`: the probability that the decoder reads the
    /// teacher.
    pub fn ratio(&self, iteration: u64) -> f64 {
        match self.stage(iteration) {
            Stage::Pretrain => self.cfg.stage1_ratio,
            Stage::Joint => self.cfg.stage2_ratio,
        }
    }

    /// The decoder's input at `iteration`: [`DecoderInput::Teacher`] with probability
    /// [`ratio`](Self::ratio), drawn deterministically from `(seed, iteration)`. A ratio of 1
    /// always gives the teacher and 0 always the student.
    pub fn decoder_input(&self, iteration: u64) -> DecoderInput {
        let mut rng = ChaCha8Rng::seed_from_u64(self.cfg.seed);
        rng.set_stream(iteration);
        let u: f64 = rng.random(); // uniform in [0, 1)
        if u < self.ratio(iteration) {
            DecoderInput::Teacher
        } else {
            DecoderInput::Student
        }
    }

    /// Picks the representation the decoder reads at `iteration`: `teacher` (`z^sg_dyn`) or
    /// `student` (`z^sg_init`), per [`decoder_input`](Self::decoder_input).
    pub fn select<'a, T>(&self, iteration: u64, teacher: &'a T, student: &'a T) -> &'a T {
        match self.decoder_input(iteration) {
            DecoderInput::Teacher => teacher,
            DecoderInput::Student => student,
        }
    }
}
