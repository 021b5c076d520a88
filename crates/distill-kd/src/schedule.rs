//! SGDD's staged teacher-forcing schedule (seed 000, "Dual-layer Alignment + Phase-based
//! Training"; SPEC §4.4, §4.4a).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, check_range};

/// One stage of a teacher-forcing schedule: a share of the iterations and the probability that
/// the decoder reads the teacher in it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ForcingStage {
    /// Share of the training iterations, in `[0, 1]` (the stages' shares sum to 1).
    pub fraction: f64,
    /// Teacher-forcing ratio, in `[0, 1]`: 1 always the teacher, 0 always the student.
    pub ratio: f64,
}

/// Settings of [`TeacherForcingSchedule`]: a list of stages; [`check`](Self::check) validates
/// them.
///
/// The default, [`student_end`](Self::student_end), ends on the student path: the decoder must
/// be trained on the input it gets at test time (SPEC §4.4a). The paper's schedule is
/// [`paper`](Self::paper).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TeacherForcingConfig {
    /// The stages, in order.
    pub stages: Vec<ForcingStage>,
    /// Seed of the per-iteration draws.
    pub seed: u64,
}

impl Default for TeacherForcingConfig {
    fn default() -> Self {
        Self::student_end(0)
    }
}

impl TeacherForcingConfig {
    /// SGDD's schedule as the paper gives it (seed 000): the first third of the iterations with
    /// ratio 1.0 (pre-training: the decoder always reads the teacher's `z^sg_dyn`), then 0.5.
    pub fn paper(seed: u64) -> Self {
        Self {
            stages: vec![
                ForcingStage {
                    fraction: 1.0 / 3.0,
                    ratio: 1.0,
                },
                ForcingStage {
                    fraction: 2.0 / 3.0,
                    ratio: 0.5,
                },
            ],
            seed,
        }
    }

    /// The paper's two stages shortened to two thirds, then a last third on the student path
    /// (ratio 0): thirds at 1.0, 0.5 and 0.
    pub fn student_end(seed: u64) -> Self {
        let third = |ratio| ForcingStage {
            fraction: 1.0 / 3.0,
            ratio,
        };
        Self {
            stages: vec![third(1.0), third(0.5), third(0.0)],
            seed,
        }
    }

    /// Validates the settings and fixes the number of training iterations.
    ///
    /// Stage `s` covers iterations `round(F_{s−1}·total) .. round(F_s·total)`, with `F_s` the
    /// cumulative fraction; iterations past the total stay in the last stage.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when there is no stage, a fraction or ratio is outside `[0, 1]`,
    /// the fractions do not sum to 1 (within 1e-6), or `total_iterations` is 0.
    pub fn check(self, total_iterations: u64) -> Result<TeacherForcingSchedule> {
        let unit = |v: f64| (0.0..=1.0).contains(&v);
        if self.stages.is_empty() {
            return Err(Error::InvalidConfig {
                field: "stages",
                value: "[]".into(),
                expected: "at least one stage",
            });
        }
        for st in &self.stages {
            check_range("stages.fraction", st.fraction, unit, "a number in [0, 1]")?;
            check_range("stages.ratio", st.ratio, unit, "a number in [0, 1]")?;
        }
        let sum: f64 = self.stages.iter().map(|s| s.fraction).sum();
        if (sum - 1.0).abs() > 1e-6 {
            return Err(Error::InvalidConfig {
                field: "stages.fraction",
                value: format!("{sum} in all"),
                expected: "fractions that sum to 1",
            });
        }
        if total_iterations == 0 {
            return Err(Error::InvalidConfig {
                field: "total_iterations",
                value: "0".into(),
                expected: "at least one iteration",
            });
        }
        let mut cumulative = 0.0;
        // Exact for any realistic iteration count (< 2^53).
        let ends = self
            .stages
            .iter()
            .map(|s| {
                cumulative += s.fraction;
                (cumulative.min(1.0) * total_iterations as f64).round() as u64
            })
            .collect();
        Ok(TeacherForcingSchedule {
            cfg: self,
            total_iterations,
            ends,
        })
    }
}

/// Which representation the decoder reads at an iteration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecoderInput {
    /// The teacher's `z^sg_dyn` (teacher forcing).
    Teacher,
    /// The student's `z^sg_init`.
    Student,
}

/// SGDD's teacher-forcing schedule: stages of iterations, each with the probability that the
/// decoder reads the teacher (the paper's, seed 000: "a teacher-forcing ratio of 1.0 ... (approx.
/// 1/3 of iterations), followed by a joint training phase where the ratio drops to 0.5"; SPEC
/// §4.4 and §4.4a for the default that ends on the student path).
///
/// Each iteration's draw is a pure function of `(seed, iteration)` — a ChaCha8 stream per
/// iteration — so a run resumed from a checkpoint at iteration `i` makes exactly the same choices
/// as an uninterrupted one, with no RNG state to save. Iterations past `total_iterations` stay in
/// the last stage. At inference the schedule is not used: the decoder reads the student only.
#[derive(Debug, Clone)]
pub struct TeacherForcingSchedule {
    cfg: TeacherForcingConfig,
    total_iterations: u64,
    /// The first iteration after each stage.
    ends: Vec<u64>,
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

    /// The first iteration after each stage (`round(F_s · total)`).
    pub fn stage_ends(&self) -> &[u64] {
        &self.ends
    }

    /// The (0-based) stage of iteration `iteration`; iterations past the total are in the last.
    pub fn stage(&self, iteration: u64) -> usize {
        self.ends
            .iter()
            .position(|&end| iteration < end)
            .unwrap_or(self.ends.len() - 1)
    }

    /// The teacher-forcing ratio at `iteration`: the probability that the decoder reads the
    /// teacher.
    pub fn ratio(&self, iteration: u64) -> f64 {
        self.cfg.stages[self.stage(iteration)].ratio
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
