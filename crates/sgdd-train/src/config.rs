//! Run configuration: one TOML file (`[data]`, `[model]`, `[train]`), unknown keys rejected,
//! every key also settable on the command line with `--set section.key=value`.
//!
//! As in linfa, settings are checked once, at the edge: [`RunConfig::check`] turns a parsed
//! config into a [`CheckedRunConfig`], the only thing the [`Trainer`](crate::Trainer) accepts.
//! Every error names the config key (`model.heads`, `train.epochs`), type errors included.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use serde::{Deserialize, Serialize};
use traj_data::{Starts, TargetFrames, WindowSpec};

use crate::optim::AdamConfig;

/// A whole run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Which data, which windows.
    pub data: DataConfig,
    /// Which model.
    #[serde(default)]
    pub model: ModelConfig,
    /// How to train.
    #[serde(default)]
    pub train: TrainConfig,
}

/// The dataset and the windows cut from it.
///
/// In the TOML file the windows are flat keys (`start_frame`, `delta_frame`, `num_targets`,
/// `targets = "strided" | "consecutive"`, `starts = "fixed" | "sliding" | "metadata"`,
/// `stride`); here they are typed, and [`DataConfig::window_spec`] is the one place that turns
/// them into traj-data's [`WindowSpec`]. Every window conditions on one frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "DataToml", into = "DataToml")]
pub struct DataConfig {
    /// A dataset directory (`manifest.json` and `train/val/test.safetensors`).
    pub dir: PathBuf,
    /// Where windows start: `starts = "fixed"` at `start_frame` in every trajectory (EGNO's
    /// `frame_0`; N-body: 30), `"sliding"` every `stride` frames, or `"metadata"` at each
    /// trajectory's own `start_frames` (as the mocap import records EGNO's split). Keys that
    /// the choice does not use (`stride` for fixed starts, `start_frame` for the others) are
    /// accepted and ignored.
    pub starts: Starts,
    /// Horizon: the last target is the condition frame + `delta_frame` (N-body: 10).
    pub delta_frame: usize,
    /// Predicted frames T up to the horizon (N-body: 5).
    pub num_targets: usize,
    /// Which frames up to the horizon are targets: `strided` (evenly spaced; EGNO N-body,
    /// protein) or `consecutive` (the last T; EGNO motion capture).
    pub targets: TargetFrames,
    /// Use at most this many training trajectories (all when absent).
    pub max_train: Option<usize>,
    /// Use at most this many validation/test trajectories (all when absent).
    pub max_eval: Option<usize>,
    /// Use only the first this-many windows of each training trajectory (all when absent).
    /// EGNO's motion capture keeps `max_training_samples / trials` start frames per training
    /// trial (200 / 5 = 40 of the 80 in its run split); validation and test keep all.
    pub train_windows_per_trajectory: Option<usize>,
    /// Give every model the speed `‖v_0‖` of each node as a node feature (EGNO's input).
    pub speed_feature: bool,
    /// Give every model the node type (for molecules: the element) one-hot over the types of
    /// the dataset's first trajectory, as EGNO's MD17 input does.
    pub type_one_hot: bool,
    /// Frames that condition each window, ending at the anchor (`start_frame`): 1 for every
    /// model but `lam-slide` (GeoTDM's protocol: 10).
    pub condition_frames: usize,
    /// GF-NODE's `uneven_sampling` (default off: the targets of [`DataConfig::targets`]). On,
    /// every training window predicts `num_targets` distinct frames drawn at random from the
    /// `delta_frame` frames of its horizon, sorted, drawn anew for each sample and each epoch
    /// from `train.seed` (see [`crate::Prepared::train_batch`]); the decoder is told each
    /// sample's target times. Validation and test keep the fixed targets of
    /// [`DataConfig::targets`], so metrics stay comparable with every other row. Needs a decoder
    /// that takes arbitrary target times: `model.kind = "gf-node"`. A dataset that stores only
    /// the strided frames of each window (the MD17 EGNO setting, `delta_frame = num_targets`)
    /// leaves nothing to draw: its windows draw all their frames, i.e. the even targets.
    pub uneven_targets: bool,
    /// The spatial graph of each window (TOML: `graph = "dataset" | "radius" | "knn"`, with
    /// `graph_radius` or `graph_k`): see [`WindowGraph`].
    pub graph: WindowGraph,
    /// The graph SGDD's joint spectral basis is built on, when it is not the message-passing
    /// graph [`DataConfig::graph`] (TOML: `spectral_graph = "radius" | "knn"`, with
    /// `spectral_graph_radius` or `spectral_graph_k`; absent: the same graph). On N-body the
    /// message-passing graph is complete, whose spatial spectrum is one eigenvalue of
    /// multiplicity N − 1; a k-NN graph of each window's condition frame gives SGE modes that
    /// say which particles are close.
    pub spectral_graph: Option<WindowGraph>,
}

/// Where each window's spatial graph comes from (`data.graph`).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum WindowGraph {
    /// The dataset's own edge list, one graph for every window (N-body: the complete graph).
    #[default]
    Dataset,
    /// Each window's own contact graph: the pairs closer than `cutoff` (in the dataset's length
    /// unit, e.g. Å) in its condition frame. For transition paths, where the contacts of a
    /// trajectory's first frame stretch apart later, and as an informative N-body graph.
    Radius {
        /// `data.graph_radius`.
        cutoff: f64,
    },
    /// Each window's symmetrised k-nearest-neighbour graph of its condition frame (no node left
    /// without edges, unlike a radius).
    Knn {
        /// `data.graph_k`.
        k: usize,
    },
}

impl WindowGraph {
    /// Whether every window has a graph of its own.
    pub fn per_window(self) -> bool {
        self != Self::Dataset
    }

    fn radius(self) -> Option<f64> {
        match self {
            Self::Radius { cutoff } => Some(cutoff),
            _ => None,
        }
    }

    fn k(self) -> Option<usize> {
        match self {
            Self::Knn { k } => Some(k),
            _ => None,
        }
    }

    /// Rejects a radius that is not a positive length and `k = 0`, naming the `key`.
    fn check(self, key: &str) -> Result<()> {
        match self {
            Self::Dataset => {}
            Self::Radius { cutoff } => ensure!(
                cutoff.is_finite() && cutoff > 0.0,
                "data.{key} = \"radius\" needs data.{key}_radius, a positive length in the \
                 dataset's unit (got {cutoff})"
            ),
            Self::Knn { k } => ensure!(
                k >= 1,
                "data.{key} = \"knn\" needs data.{key}_k ≥ 1 (got {k})"
            ),
        }
        Ok(())
    }
}

impl GraphName {
    fn of(g: WindowGraph) -> Self {
        match g {
            WindowGraph::Dataset => Self::Dataset,
            WindowGraph::Radius { .. } => Self::Radius,
            WindowGraph::Knn { .. } => Self::Knn,
        }
    }

    /// The choice with its parameter (NaN / 0 when absent, which the check refuses by name).
    fn with(self, radius: Option<f64>, k: Option<usize>) -> WindowGraph {
        match self {
            Self::Dataset => WindowGraph::Dataset,
            Self::Radius => WindowGraph::Radius {
                cutoff: radius.unwrap_or(f64::NAN),
            },
            Self::Knn => WindowGraph::Knn { k: k.unwrap_or(0) },
        }
    }
}

/// The TOML spelling of the choice in [`WindowGraph`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum GraphName {
    #[default]
    Dataset,
    Radius,
    Knn,
}

impl DataConfig {
    /// The windows this config cuts: one condition frame, then [`DataConfig::num_targets`]
    /// targets up to [`DataConfig::delta_frame`] frames later, anchored as
    /// [`DataConfig::starts`] says.
    pub fn window_spec(&self) -> WindowSpec {
        WindowSpec {
            condition_frames: self.condition_frames,
            delta_frame: self.delta_frame,
            num_targets: self.num_targets,
            targets: self.targets,
            starts: self.starts.clone(),
        }
    }
}

/// `[data]` as written in the TOML file: flat window keys (see [`DataConfig`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DataToml {
    dir: PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    start_frame: Option<usize>,
    #[serde(default = "default_delta")]
    delta_frame: usize,
    #[serde(default = "default_targets")]
    num_targets: usize,
    #[serde(default = "default_targets_kind")]
    targets: TargetFrames,
    #[serde(default)]
    starts: StartsName,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    stride: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_train: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_eval: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    train_windows_per_trajectory: Option<usize>,
    #[serde(default = "yes")]
    speed_feature: bool,
    #[serde(default = "yes")]
    type_one_hot: bool,
    #[serde(default = "one", skip_serializing_if = "is_one")]
    condition_frames: usize,
    #[serde(default, skip_serializing_if = "is_false")]
    uneven_targets: bool,
    #[serde(default, skip_serializing_if = "is_dataset_graph")]
    graph: GraphName,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    graph_radius: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    graph_k: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    spectral_graph: Option<GraphName>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    spectral_graph_radius: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    spectral_graph_k: Option<usize>,
}

fn is_dataset_graph(g: &GraphName) -> bool {
    *g == GraphName::Dataset
}

fn one() -> usize {
    1
}

fn is_one(v: &usize) -> bool {
    *v == 1
}

fn yes() -> bool {
    true
}

fn is_false(v: &bool) -> bool {
    !*v
}

/// The TOML spelling of the choice in [`Starts`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum StartsName {
    #[default]
    Fixed,
    Sliding,
    Metadata,
}

impl From<DataToml> for DataConfig {
    fn from(t: DataToml) -> Self {
        let starts = match t.starts {
            StartsName::Fixed => Starts::Fixed(vec![t.start_frame.unwrap_or_else(default_start)]),
            StartsName::Sliding => Starts::Sliding {
                stride: t.stride.unwrap_or_else(default_stride),
            },
            StartsName::Metadata => Starts::Metadata,
        };
        Self {
            dir: t.dir,
            starts,
            delta_frame: t.delta_frame,
            num_targets: t.num_targets,
            targets: t.targets,
            max_train: t.max_train,
            max_eval: t.max_eval,
            train_windows_per_trajectory: t.train_windows_per_trajectory,
            speed_feature: t.speed_feature,
            type_one_hot: t.type_one_hot,
            condition_frames: t.condition_frames,
            uneven_targets: t.uneven_targets,
            // a missing radius or k is NaN / 0 here, which `RunConfig::check` refuses by name
            graph: t.graph.with(t.graph_radius, t.graph_k),
            spectral_graph: t
                .spectral_graph
                .map(|g| g.with(t.spectral_graph_radius, t.spectral_graph_k)),
        }
    }
}

impl From<DataConfig> for DataToml {
    /// The flat keys; fixed starts write their first anchor ([`RunConfig::check`] refuses more).
    fn from(c: DataConfig) -> Self {
        let (starts, start_frame, stride) = match c.starts {
            Starts::Fixed(anchors) => (StartsName::Fixed, anchors.first().copied(), None),
            Starts::Sliding { stride } => (StartsName::Sliding, None, Some(stride)),
            Starts::Metadata => (StartsName::Metadata, None, None),
        };
        Self {
            dir: c.dir,
            start_frame,
            delta_frame: c.delta_frame,
            num_targets: c.num_targets,
            targets: c.targets,
            starts,
            stride,
            max_train: c.max_train,
            max_eval: c.max_eval,
            train_windows_per_trajectory: c.train_windows_per_trajectory,
            speed_feature: c.speed_feature,
            type_one_hot: c.type_one_hot,
            condition_frames: c.condition_frames,
            uneven_targets: c.uneven_targets,
            graph: GraphName::of(c.graph),
            graph_radius: c.graph.radius(),
            graph_k: c.graph.k(),
            spectral_graph: c.spectral_graph.map(GraphName::of),
            spectral_graph_radius: c.spectral_graph.and_then(WindowGraph::radius),
            spectral_graph_k: c.spectral_graph.and_then(WindowGraph::k),
        }
    }
}

fn default_targets_kind() -> TargetFrames {
    TargetFrames::Strided
}
fn default_stride() -> usize {
    1
}
fn default_start() -> usize {
    30
}
fn default_delta() -> usize {
    10
}
fn default_targets() -> usize {
    5
}

/// Which model to train.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    /// Extrapolate `x_0 + v_0·t` (no training).
    ConstVel,
    /// Predict the initial positions at every target time (no training): the baseline that
    /// matters for vibrating molecules and proteins, whose instantaneous velocity says little
    /// about where an atom is thousands of steps later.
    Static,
    /// The plain EGNO decoder (no encoders).
    Egno,
    /// SGDD-EGNO: teacher STSGNN, student GAT, SGE, EGNO decoder, alignment.
    Sgdd,
    /// The control without a teacher: SGDD's student encoder (and SGE) conditioning the EGNO
    /// decoder, trained on the prediction loss only (in effect EGNO plus a GAT conditioning
    /// encoder). Every SGDD table carries it: it tells what the teacher adds.
    NoTeacher,
    /// The plain GF-NODE decoder (graph Fourier neural ODE, no encoders; settings in
    /// `[model.gf_node]`).
    GfNode,
    /// LaM-SLidE (seed 004): identifier codec and latent flow model, trained in two stages by
    /// [`crate::LamSlideTrainer`] and sampled `K` times (settings in `model.lam_slide`).
    LamSlide,
}

/// See [`ModelConfig::decoder`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DecoderKind {
    /// [`graph_nets::Egno`].
    #[default]
    Egno,
    /// [`graph_nets::GfNode`], with the settings of [`ModelConfig::gf_node`].
    GfNode,
}

/// `[model.gf_node]`: the GF-NODE decoder's own settings (its widths and depth are
/// `model.hidden`, `model.decoder_layers`, its graph Fourier modes `model.num_modes`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GfNodeSettings {
    /// `attention` (the authors' MD17 setting) or `none`.
    pub mode_interaction: graph_nets::ModeInteraction,
    /// `concat` (the authors') or `none`.
    pub ode_time: graph_nets::OdeTime,
    /// `authors` (translation-equivariant) or `equivariant` (E(3)).
    pub vector_dynamics: graph_nets::VectorDynamics,
    /// Width of the target-time embedding and of the ODE's time channels (≥ 4).
    pub time_emb_dim: i64,
    /// The integrator, `[model.gf_node.ode]` (default: Dopri5, rtol 1e-3, atol 1e-4).
    pub ode: graph_nets::ode::OdeOptions,
}

impl Default for GfNodeSettings {
    fn default() -> Self {
        let d = graph_nets::GfNodeConfig::default();
        Self {
            mode_interaction: d.mode_interaction,
            ode_time: d.ode_time,
            vector_dynamics: d.vector_dynamics,
            time_emb_dim: d.time_emb_dim,
            ode: d.ode,
        }
    }
}

/// See [`ModelConfig::schedule`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScheduleName {
    /// [`distill_kd::TeacherForcingConfig::student_end`].
    StudentEnd,
    /// [`distill_kd::TeacherForcingConfig::paper`].
    Paper,
    /// The stages of [`ModelConfig::stages`].
    Custom,
}

impl ModelConfig {
    /// The teacher-forcing settings of this config, seeded.
    pub fn forcing(&self, seed: u64) -> distill_kd::TeacherForcingConfig {
        match self.schedule {
            ScheduleName::StudentEnd => distill_kd::TeacherForcingConfig::student_end(seed),
            ScheduleName::Paper => distill_kd::TeacherForcingConfig::paper(seed),
            ScheduleName::Custom => distill_kd::TeacherForcingConfig {
                stages: self
                    .stages
                    .iter()
                    .map(|&[fraction, ratio]| distill_kd::ForcingStage { fraction, ratio })
                    .collect(),
                seed,
            },
        }
    }
}

/// See [`ModelConfig::student`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StudentKind {
    /// The paper's GAT student.
    Gat,
    /// The teacher's architecture on the constant-velocity future of `G_0`.
    CvFuture,
}

/// See [`ModelConfig::teacher_path`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TeacherPath {
    /// The paper's: each step the decoder reads the teacher's or the student's `z^sg`, as the
    /// teacher-forcing schedule says; the teacher learns through the decoder.
    Scheduled,
    /// Every step trains both paths through the one decoder: `L_pred(student) +
    /// L_pred(teacher) + λ L_align` (the decoder always also sees the student's input).
    Joint,
    /// The teacher has a decoder of its own: `L_pred(student → decoder) + L_pred(teacher →
    /// teacher decoder) + λ L_align`. The student's decoder never reads the teacher, so train
    /// and test inputs agree; the teacher reaches the student only through the alignment.
    /// The default: the best SGDD measured at the standard budget (`docs/results.md`).
    #[default]
    Separate,
}

/// See [`ModelConfig::align_gate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AlignGate {
    /// Align every sample (the paper's).
    All,
    /// Align a sample only when the teacher's path predicts it better than the student's path
    /// (both errors measured in the step, detached): where the teacher is no better, the student
    /// is not pulled towards it.
    TeacherBetter,
    /// Align every sample of a step while the teacher's path predicts better on average: the
    /// running mean squared errors of both paths (exponential averages over steps, momentum
    /// `model.gate_momentum`, carried by checkpoints) decide, so a teacher that is worse over
    /// the run (springs) is switched off rather than followed on the samples where noise
    /// favours it. The default.
    #[default]
    TeacherBetterRunning,
}

impl AlignGate {
    /// The name a config gives it.
    pub fn name(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::TeacherBetter => "teacher-better",
            Self::TeacherBetterRunning => "teacher-better-running",
        }
    }
}

/// See [`ModelConfig::lambda_decay`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LambdaDecay {
    /// λ throughout.
    #[default]
    Constant,
    /// λ · (1 − s), `s` the fraction of training steps done: the alignment fades out and the
    /// last steps train on the prediction loss alone.
    Linear,
    /// λ · (1 + cos πs) / 2.
    Cosine,
}

impl LambdaDecay {
    /// The multiplier of λ at `step` of `total` steps (1 at the start; 0 at the end for the
    /// decays).
    pub fn factor(self, step: u64, total: u64) -> f64 {
        let s = (step as f64 / total.max(1) as f64).clamp(0.0, 1.0);
        match self {
            Self::Constant => 1.0,
            Self::Linear => 1.0 - s,
            Self::Cosine => 0.5 * (1.0 + (std::f64::consts::PI * s).cos()),
        }
    }
}

/// Model settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// `const-vel`, `static`, `egno`, `gf-node`, `sgdd` or `no-teacher`.
    pub kind: ModelKind,
    /// The decoder of `sgdd` and `no-teacher`: `egno` (default) or `gf-node` (SGDD-GFNODE).
    /// The plain kinds name their decoder themselves (`egno`, `gf-node`).
    pub decoder: DecoderKind,
    /// Settings of the GF-NODE decoder.
    pub gf_node: GfNodeSettings,
    /// Hidden width of every network.
    pub hidden: i64,
    /// EGNO decoder layers.
    pub decoder_layers: i64,
    /// Temporal Fourier modes of the decoder.
    pub num_modes: i64,
    /// Width of the representation `z` (SGDD).
    pub z_dim: i64,
    /// Teacher (STSGNN) layers.
    pub teacher_layers: i64,
    /// Student layers (GAT layers, or STSGNN layers of the `cv-future` student).
    pub student_layers: i64,
    /// The student `E_init`: `gat` (the paper's: a GAT over invariants of `G_0` and a linear
    /// lift) or `cv-future` (the teacher's architecture, with its own weights, reading the
    /// constant-velocity extrapolation of `G_0` — what `G_0` says about the future).
    pub student: StudentKind,
    /// GAT student: add direction-aware invariants (radial relative velocities), so it can tell
    /// approaching from receding particles.
    pub student_directions: bool,
    /// GAT heads.
    pub heads: i64,
    /// Number of joint spectral basis vectors K (SGDD).
    pub k: usize,
    /// Lower K to the nearest gap of the joint spectrum, so SGE never keeps part of a
    /// degenerate eigenspace (on a complete graph one eigenvalue has multiplicity N − 1); the K
    /// used is reported as `spectral_k` in `result.json`.
    pub k_at_gap: bool,
    /// Apply SGE (learnable spectral weights); off: `z^sg = z` (ablation).
    pub sge: bool,
    /// Weight λ of the alignment loss (default 0.1: at the paper's 1 the alignment terms
    /// outweighed the prediction loss 60 to 1 by the end of training on charged N-body).
    pub lambda: f64,
    /// How λ changes over training: `constant`, `linear` (to 0 at the last step) or `cosine`
    /// (to 0). A decaying λ lets the teacher shape the student early and the task loss alone
    /// finish it.
    pub lambda_decay: LambdaDecay,
    /// Which samples the alignment reads: `all` (the paper's) or `teacher-better` (only those
    /// the teacher's path predicts better than the student's in that step; the fraction is
    /// logged as `aligned`) or `teacher-better-running` (the default: every sample, on the
    /// steps where the teacher's path is the better one on a running average; `aligned` is
    /// then the fraction of steps aligned).
    pub align_gate: AlignGate,
    /// Momentum of the running errors of `align_gate = "teacher-better-running"` (the weight
    /// of each new step).
    pub gate_momentum: f64,
    /// Representation alignment `L_rep` (ablation switch).
    pub align_rep: bool,
    /// Spectral alignment `L_spec` (ablation switch).
    pub align_spec: bool,
    /// SGDD's teacher-forcing schedule: `student-end` (thirds at ratio 1.0, 0.5 and 0: training
    /// ends on the input the decoder gets at test time), `paper` (a third at 1.0, then 0.5), or
    /// `custom` (the list in `model.stages`).
    pub schedule: ScheduleName,
    /// `schedule = "custom"`: `[[fraction, ratio], …]`, fractions summing to 1, e.g.
    /// `[[0.25, 1.0], [0.75, 0.0]]`.
    pub stages: Vec<[f64; 2]>,
    /// SGDD: how the teacher's path is trained — `scheduled` (the paper's: teacher forcing by
    /// `model.schedule`), `joint` (both paths through the decoder every step) or `separate`
    /// (the default: the teacher with a decoder of its own). With `joint` and `separate` the
    /// schedule forces nothing; `ridge_warm_start` still runs when its first stage ends.
    pub teacher_path: TeacherPath,
    /// λ_b of seed 002's structure-only regulariser `L(ŷ, y) + λ_b L(ŷ_struct, y)`: with
    /// `teacher_path = "scheduled"`, a step whose decoder reads the teacher's `z^sg`
    /// (teacher-forced, `ŷ`) also trains the decoder on the student's `z^sg` (SGDD's
    /// structure-only path, `ŷ_struct`, what inference uses), so that path is not left behind
    /// while the privileged one carries the prediction. 0: off (the paper's SGDD).
    pub structure_weight: f64,
    /// Align standardised representations: teacher and student `z^sg` (per channel) and `ã`
    /// (per spectral mode and channel) are centred and scaled by detached running statistics
    /// of the teacher's, so the alignment teaches the part that varies between samples rather
    /// than the teacher's near-constant mean (SPEC §4.4a).
    pub align_standardize: bool,
    /// Momentum of those running statistics (the weight of each new batch).
    pub stats_momentum: f64,
    /// Closed-form warm start (seed 002): when the first teacher-forcing stage ends, solve the
    /// student's last linear layer by streaming ridge regression from its features onto the
    /// teacher's `z` over the training split, then continue training.
    pub ridge_warm_start: bool,
    /// Relative ridge penalty of that solve (`λ · mean diag XᵀX`).
    pub ridge_lambda: f64,
    /// Learning-rate multiplier of SGE's spectral weights `w` (Adam moves a weight by about lr
    /// per step, so at 1 `w` barely leaves 1 in a short run).
    pub sge_lr_scale: f64,
    /// `kind = "lam-slide"`: the codec, the flow model, their losses, the sampler and the
    /// stage-1 budget.
    pub lam_slide: crate::LamSlideConfig,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            kind: ModelKind::Sgdd,
            decoder: DecoderKind::Egno,
            gf_node: GfNodeSettings::default(),
            hidden: 64,
            decoder_layers: 4,
            num_modes: 2,
            z_dim: 32,
            teacher_layers: 2,
            student_layers: 2,
            student: StudentKind::Gat,
            student_directions: false,
            heads: 4,
            k: 10,
            k_at_gap: true,
            sge: true,
            lambda: 0.1,
            lambda_decay: LambdaDecay::Constant,
            align_gate: AlignGate::TeacherBetterRunning,
            gate_momentum: 0.05,
            align_rep: true,
            align_spec: true,
            schedule: ScheduleName::StudentEnd,
            stages: Vec::new(),
            teacher_path: TeacherPath::Separate,
            structure_weight: 0.0,
            align_standardize: false,
            stats_momentum: 0.01,
            sge_lr_scale: 1.0,
            ridge_warm_start: false,
            ridge_lambda: 1e-3,
            lam_slide: crate::LamSlideConfig::default(),
        }
    }
}

/// Training settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Passes over the training windows.
    pub epochs: usize,
    /// Windows per step.
    pub batch_size: usize,
    /// Optimiser.
    pub adam: AdamConfig,
    /// Seed of weights, data order and teacher forcing.
    pub seed: u64,
    /// Evaluate on the validation split every this many epochs (and at the end).
    pub eval_every: usize,
    /// `auto`, `cpu`, `cuda` or `cuda:N`.
    pub device: crate::DeviceChoice,
    /// CPU threads for libtorch (0: libtorch's default, one per core). Small models train
    /// faster on 1, and much faster on a machine where other processes hold cores.
    pub threads: i32,
    /// Learning-rate schedule over the run's steps (`adam.lr` is the peak).
    pub lr_schedule: LrSchedule,
    /// Linear warm-up from 0 to `adam.lr` over this many epochs (fractions allowed).
    pub warmup_epochs: f64,
    /// `cosine`: the learning rate at the last step.
    pub min_lr: f64,
    /// `step`: multiply the learning rate by `gamma` every `step_epochs` epochs.
    pub step_epochs: usize,
    /// `step`: the factor.
    pub gamma: f64,
    /// Early stopping: stop after this many validations without a better validation metric
    /// (0: never).
    pub patience: usize,
    /// Stop when a step's loss exceeds this factor times the best epoch-mean loss so far (a
    /// finite blow-up); 0 turns the check off. Non-finite losses always stop.
    pub divergence_factor: f64,
    /// What a divergence (a loss or gradient norm that is non-finite, or a loss past
    /// `divergence_factor`) does: `error` (the run stops with an error naming the last good
    /// checkpoint, to resume with a lower learning rate) or `stop` (the run ends there as early
    /// stopping does: the diverging epoch is discarded, the best validated checkpoint is scored
    /// and `result.json`'s `stopped_early` says why — a table's rule for every row alike).
    pub on_divergence: OnDivergence,
    /// Validation metric that selects `best.safetensors` (and drives early stopping).
    pub select: SelectMetric,
    /// Write TensorBoard event files under `RUN/tensorboard/`.
    pub tensorboard: bool,
}

/// See [`TrainConfig::lr_schedule`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LrSchedule {
    /// `adam.lr` throughout (after warm-up).
    Constant,
    /// Cosine decay from `adam.lr` to `min_lr` over the steps after warm-up.
    Cosine,
    /// `adam.lr · gamma^⌊epoch / step_epochs⌋` (PyTorch's `StepLR`).
    Step,
}

/// See [`TrainConfig::on_divergence`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnDivergence {
    /// Stop with an error; the last good checkpoint resumes.
    #[default]
    Error,
    /// End the run at its last good epoch and score it.
    Stop,
}

/// See [`TrainConfig::select`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SelectMetric {
    /// Mean squared error over all predicted frames.
    S2t,
    /// Mean squared error of the final frame (EGNO's rule).
    S2s,
}

impl SelectMetric {
    /// The metric's value.
    pub fn of(self, m: &crate::Metrics) -> f64 {
        match self {
            Self::S2t => m.s2t,
            Self::S2s => m.s2s,
        }
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 100,
            batch_size: 100,
            adam: AdamConfig::default(),
            seed: 0,
            eval_every: 5,
            device: crate::DeviceChoice::Auto,
            threads: 0,
            lr_schedule: LrSchedule::Constant,
            warmup_epochs: 0.0,
            min_lr: 0.0,
            step_epochs: 100,
            gamma: 0.5,
            patience: 0,
            divergence_factor: 1e4,
            on_divergence: OnDivergence::Error,
            select: SelectMetric::S2t,
            tensorboard: true,
        }
    }
}

impl TrainConfig {
    /// Rejects `[train]` settings that cannot run, naming the key (`train.epochs = 0` is left to
    /// the caller: a run of an untrainable model may have no epoch).
    pub fn check(&self) -> Result<()> {
        let t = self;
        ensure!(t.batch_size >= 1, "train.batch_size must be ≥ 1");
        ensure!(t.eval_every >= 1, "train.eval_every must be ≥ 1");
        ensure!(
            t.threads >= 0,
            "train.threads must be ≥ 0 (0: libtorch's default), got {}",
            t.threads
        );
        let a = &t.adam;
        ensure!(
            a.lr > 0.0 && a.lr.is_finite(),
            "train.adam.lr must be a finite number > 0, got {}",
            a.lr
        );
        ensure!(
            (0.0..1.0).contains(&a.beta1),
            "train.adam.beta1 must be in [0, 1), got {}",
            a.beta1
        );
        ensure!(
            (0.0..1.0).contains(&a.beta2),
            "train.adam.beta2 must be in [0, 1), got {}",
            a.beta2
        );
        ensure!(a.eps > 0.0, "train.adam.eps must be > 0, got {}", a.eps);
        ensure!(
            a.weight_decay >= 0.0 && a.weight_decay.is_finite(),
            "train.adam.weight_decay must be ≥ 0, got {}",
            a.weight_decay
        );
        ensure!(
            a.clip_grad_norm >= 0.0 && a.clip_grad_norm.is_finite(),
            "train.adam.clip_grad_norm must be ≥ 0 (0: no clipping), got {}",
            a.clip_grad_norm
        );
        ensure!(
            t.warmup_epochs >= 0.0 && t.warmup_epochs.is_finite(),
            "train.warmup_epochs must be ≥ 0, got {}",
            t.warmup_epochs
        );
        ensure!(
            t.min_lr >= 0.0 && t.min_lr <= a.lr,
            "train.min_lr must be in [0, train.adam.lr], got {}",
            t.min_lr
        );
        ensure!(t.step_epochs >= 1, "train.step_epochs must be ≥ 1");
        ensure!(
            t.gamma > 0.0 && t.gamma <= 1.0,
            "train.gamma must be in (0, 1], got {}",
            t.gamma
        );
        ensure!(
            t.divergence_factor == 0.0 || t.divergence_factor > 1.0,
            "train.divergence_factor must be > 1 (or 0: off), got {}",
            t.divergence_factor
        );
        Ok(())
    }
}

impl RunConfig {
    /// Parses TOML text, then applies `key.path=value` overrides (values parsed as TOML, else
    /// taken as strings), then [`RunConfig::check`]s it. Unknown keys and values of the wrong
    /// type are errors that name the key.
    pub fn from_toml(text: &str, overrides: &[String]) -> Result<CheckedRunConfig> {
        Self::parse(text, overrides)?.check()
    }

    /// Parses and applies overrides without checking the values (see [`RunConfig::from_toml`]).
    pub fn parse(text: &str, overrides: &[String]) -> Result<Self> {
        parse_toml(text, overrides)
    }

    /// Reads a config file (see [`RunConfig::from_toml`]).
    pub fn load(path: &Path, overrides: &[String]) -> Result<CheckedRunConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config {}", path.display()))?;
        Self::from_toml(&text, overrides).with_context(|| format!("config {}", path.display()))
    }

    /// The TOML text of this config.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("configs serialise")
    }

    /// Rejects settings that cannot run, naming the key.
    pub fn check(self) -> Result<CheckedRunConfig> {
        let (d, m, t) = (&self.data, &self.model, &self.train);
        ensure!(d.num_targets >= 1, "data.num_targets must be ≥ 1");
        ensure!(
            d.delta_frame >= d.num_targets,
            "data.delta_frame ({}) must be ≥ data.num_targets ({})",
            d.delta_frame,
            d.num_targets
        );
        match &d.starts {
            Starts::Fixed(anchors) => ensure!(
                anchors.len() == 1,
                "data.start_frame: a run config has one start frame, got {anchors:?}"
            ),
            Starts::Sliding { stride } => ensure!(*stride >= 1, "data.stride must be ≥ 1"),
            Starts::Metadata => {}
        }
        d.window_spec()
            .check()
            .map_err(|e| anyhow::anyhow!("data: {e}"))?;
        d.graph.check("graph")?;
        if let Some(g) = d.spectral_graph {
            ensure!(
                g.per_window(),
                "data.spectral_graph: \"radius\" or \"knn\" (leave it out for the \
                 message-passing graph)"
            );
            g.check("spectral_graph")?;
        }
        ensure!(
            d.condition_frames == 1 || m.kind == ModelKind::LamSlide,
            "data.condition_frames = {}: model.kind = {:?} conditions on one frame (only \
             \"lam-slide\" reads several)",
            d.condition_frames,
            m.kind.name()
        );
        ensure!(
            !d.uneven_targets || m.kind == ModelKind::GfNode,
            "data.uneven_targets needs a decoder told each sample's target times: model.kind = \
             \"gf-node\" (got model.kind = {:?})",
            m.kind.name()
        );
        if m.kind == ModelKind::LamSlide {
            m.lam_slide
                .check(d.condition_frames)
                .map_err(|e| anyhow::anyhow!("model.lam_slide: {e}"))?;
        }
        ensure!(d.max_train != Some(0), "data.max_train must be ≥ 1");
        ensure!(d.max_eval != Some(0), "data.max_eval must be ≥ 1");
        ensure!(
            d.train_windows_per_trajectory != Some(0),
            "data.train_windows_per_trajectory must be ≥ 1"
        );
        for (key, v) in [
            ("model.hidden", m.hidden),
            ("model.z_dim", m.z_dim),
            ("model.decoder_layers", m.decoder_layers),
            ("model.num_modes", m.num_modes),
            ("model.teacher_layers", m.teacher_layers),
            ("model.student_layers", m.student_layers),
            ("model.heads", m.heads),
        ] {
            ensure!(v >= 1, "{key} must be ≥ 1, got {v}");
        }
        ensure!(m.k >= 1, "model.k must be ≥ 1");
        ensure!(
            m.decoder == DecoderKind::Egno || m.kind.has_student() || m.kind == ModelKind::GfNode,
            "model.decoder = \"gf-node\" applies to model.kind = \"sgdd\" or \"no-teacher\"; \
             plain GF-NODE is model.kind = \"gf-node\" (got model.kind = {:?})",
            m.kind.name()
        );
        ensure!(
            m.gf_node.time_emb_dim >= 4,
            "model.gf_node.time_emb_dim must be ≥ 4, got {}",
            m.gf_node.time_emb_dim
        );
        m.gf_node
            .ode
            .validate()
            .map_err(|e| anyhow::anyhow!("model.gf_node.ode: {e}"))?;
        // what the networks' own checks would say in their vocabulary (GatConfig.hidden), here
        // in the config's
        ensure!(
            m.kind != ModelKind::Sgdd && m.kind != ModelKind::NoTeacher
                || m.student != StudentKind::Gat
                || m.hidden % m.heads == 0,
            "model.hidden ({}) must be a multiple of model.heads ({}) for the GAT student",
            m.hidden,
            m.heads
        );
        ensure!(
            !m.student_directions || m.student == StudentKind::Gat,
            "model.student_directions applies to model.student = \"gat\""
        );
        ensure!(
            m.lambda >= 0.0 && m.lambda.is_finite(),
            "model.lambda must be a finite number ≥ 0, got {}",
            m.lambda
        );
        ensure!(
            (m.schedule == ScheduleName::Custom) != m.stages.is_empty(),
            "model.stages lists the stages of model.schedule = \"custom\" (and only of it)"
        );
        m.forcing(0)
            .check(1)
            .map_err(|e| anyhow::anyhow!("model.stages: {e}"))?;
        ensure!(
            m.stats_momentum > 0.0 && m.stats_momentum <= 1.0,
            "model.stats_momentum must be in (0, 1], got {}",
            m.stats_momentum
        );
        ensure!(
            m.gate_momentum > 0.0 && m.gate_momentum <= 1.0,
            "model.gate_momentum must be in (0, 1], got {}",
            m.gate_momentum
        );
        ensure!(
            m.sge_lr_scale > 0.0 && m.sge_lr_scale.is_finite(),
            "model.sge_lr_scale must be a finite number > 0, got {}",
            m.sge_lr_scale
        );
        ensure!(
            m.ridge_lambda >= 0.0 && m.ridge_lambda.is_finite(),
            "model.ridge_lambda must be a finite number ≥ 0, got {}",
            m.ridge_lambda
        );
        ensure!(
            m.structure_weight >= 0.0 && m.structure_weight.is_finite(),
            "model.structure_weight must be a finite number ≥ 0, got {}",
            m.structure_weight
        );
        ensure!(
            m.structure_weight == 0.0
                || (m.kind == ModelKind::Sgdd && m.teacher_path == TeacherPath::Scheduled),
            "model.structure_weight = {} regularises the student path of a teacher-forced SGDD \
             step: it needs model.kind = \"sgdd\" and model.teacher_path = \"scheduled\" (the \
             joint and separate paths train the student path every step already), got kind \
             {:?}, teacher_path {:?}",
            m.structure_weight,
            m.kind.name(),
            m.teacher_path
        );
        ensure!(
            t.on_divergence == OnDivergence::Error || m.kind != ModelKind::LamSlide,
            "train.on_divergence = \"stop\" is for the trainer of the graph models; LaM-SLidE \
             stops with an error at a divergence (leave it at \"error\")"
        );
        // the default gate is SGDD's default; any other gate set on a model without a teacher
        // is a mistake worth naming
        ensure!(
            m.align_gate == AlignGate::default() || m.kind == ModelKind::Sgdd,
            "model.align_gate = {:?} gates SGDD's alignment with its teacher: it needs \
             model.kind = \"sgdd\", got {:?}",
            m.align_gate.name(),
            m.kind.name()
        );
        ensure!(
            t.epochs >= 1 || !m.kind.trainable(),
            "train.epochs must be ≥ 1 for model.kind = {:?}",
            m.kind.name()
        );
        t.check()?;
        Ok(CheckedRunConfig(self))
    }
}

impl ModelKind {
    /// The config spelling (`const-vel`, `static`, `egno`, `sgdd`).
    pub fn name(self) -> &'static str {
        match self {
            Self::ConstVel => "const-vel",
            Self::Static => "static",
            Self::Egno => "egno",
            Self::Sgdd => "sgdd",
            Self::NoTeacher => "no-teacher",
            Self::GfNode => "gf-node",
            Self::LamSlide => "lam-slide",
        }
    }

    /// Whether the model has weights to train.
    pub fn trainable(self) -> bool {
        matches!(
            self,
            Self::Egno | Self::Sgdd | Self::NoTeacher | Self::GfNode | Self::LamSlide
        )
    }

    /// Whether the model has SGDD's student encoder (and SGE) conditioning the decoder.
    pub fn has_student(self) -> bool {
        matches!(self, Self::Sgdd | Self::NoTeacher)
    }
}

/// A [`RunConfig`] whose values passed [`RunConfig::check`]; read it through `Deref`.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedRunConfig(RunConfig);

impl std::ops::Deref for CheckedRunConfig {
    type Target = RunConfig;
    fn deref(&self) -> &RunConfig {
        &self.0
    }
}

impl CheckedRunConfig {
    /// The config, to change it (it must be checked again).
    pub fn into_inner(self) -> RunConfig {
        self.0
    }

    /// The keys (`section.key`) whose values differ from `other`'s, with both values as TOML.
    pub fn differences(&self, other: &RunConfig) -> Vec<(String, String, String)> {
        differences(other, &self.0)
    }
}

/// Parses TOML text into any config type, after applying `key.path=value` overrides (values
/// parsed as TOML, else taken as strings); unknown keys and type errors name the key path.
pub(crate) fn parse_toml<T: serde::de::DeserializeOwned>(
    text: &str,
    overrides: &[String],
) -> Result<T> {
    let mut table: toml::Table = text.parse().context("config is not valid TOML")?;
    for o in overrides {
        set_key(&mut table, o)?;
    }
    serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path.is_empty() || path == "." {
            anyhow::anyhow!("{inner}")
        } else {
            anyhow::anyhow!("`{path}`: {inner}")
        }
    })
}

/// The keys (`section.key`) whose values differ between two configs of one type, with both
/// values as TOML (`old`'s first).
pub(crate) fn differences<T: Serialize>(old: &T, new: &T) -> Vec<(String, String, String)> {
    let flat = |c: &T| {
        let mut out = std::collections::BTreeMap::new();
        let value = toml::Value::try_from(c).expect("configs serialise");
        flatten("", &value, &mut out);
        out
    };
    let (a, b) = (flat(old), flat(new));
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| {
            let show = |m: &std::collections::BTreeMap<String, String>| {
                m.get(k).cloned().unwrap_or_else(|| "(absent)".into())
            };
            (k.clone(), show(&a), show(&b))
        })
        .collect()
}

fn flatten(prefix: &str, v: &toml::Value, out: &mut std::collections::BTreeMap<String, String>) {
    match v {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        other => {
            out.insert(prefix.to_owned(), other.to_string());
        }
    }
}

/// Keys a resumed run may change: how long and where it runs, and its learning rate.
pub const RESUMABLE_KEYS: &[&str] = &[
    "train.epochs",
    "train.threads",
    "train.device",
    "train.adam.lr",
    "train.lr_schedule",
    "train.warmup_epochs",
    "train.min_lr",
    "train.step_epochs",
    "train.gamma",
    "train.patience",
    "train.divergence_factor",
    "train.on_divergence",
    "train.eval_every",
    "train.tensorboard",
    "model.lam_slide.flow_epochs",
    "model.lam_slide.flow_lr",
];

fn set_key(table: &mut toml::Table, assignment: &str) -> Result<()> {
    let Some((key, raw)) = assignment.split_once('=') else {
        bail!("--set expects key=value, got `{assignment}`");
    };
    let value = format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()));
    let parts: Vec<&str> = key.trim().split('.').collect();
    ensure!(
        parts.iter().all(|p| !p.is_empty()),
        "--set: bad key `{key}`"
    );
    let mut cur = table;
    for p in &parts[..parts.len() - 1] {
        cur = cur
            .entry((*p).to_owned())
            .or_insert_with(|| toml::Value::Table(Default::default()))
            .as_table_mut()
            .ok_or_else(|| anyhow::anyhow!("--set {key}: `{p}` is not a table"))?;
    }
    cur.insert(parts[parts.len() - 1].to_owned(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str = "[data]\ndir = \"d\"\n";

    #[test]
    fn defaults_and_overrides() {
        let c = RunConfig::from_toml(MIN, &[]).unwrap();
        assert_eq!(c.model.kind, ModelKind::Sgdd);
        let c = RunConfig::from_toml(
            MIN,
            &[
                "model.kind=egno".into(),
                "train.adam.lr=0.01".into(),
                "train.device=cpu".into(),
            ],
        )
        .unwrap();
        assert_eq!(c.model.kind, ModelKind::Egno);
        assert_eq!(c.train.adam.lr, 0.01);
        assert_eq!(c.train.device, crate::DeviceChoice::Cpu);
        assert_eq!(RunConfig::from_toml(&c.to_toml(), &[]).unwrap(), c);
    }

    fn err(text: &str, set: &[&str]) -> String {
        let set: Vec<String> = set.iter().map(|s| (*s).to_owned()).collect();
        format!("{:#}", RunConfig::from_toml(text, &set).unwrap_err())
    }

    /// Every invalid value is an error naming its key.
    #[test]
    fn invalid_values_name_their_key() {
        for (set, key) in [
            ("model.student_layers=0", "model.student_layers"),
            ("model.heads=0", "model.heads"),
            ("model.heads=3", "model.heads"),
            ("train.threads=-2", "train.threads"),
            ("train.epochs=0", "train.epochs"),
            ("train.batch_size=0", "train.batch_size"),
            ("train.adam.lr=0", "train.adam.lr"),
            ("train.adam.beta2=1.0", "train.adam.beta2"),
            ("model.stages=[[0.5, 1.0], [0.4, 0.0]]", "model.stages"),
            ("model.schedule=\"custom\"", "model.stages"),
            ("model.schedule=\"linear\"", "model.schedule"),
            ("model.lambda=-1.0", "model.lambda"),
            ("data.delta_frame=2", "data.delta_frame"),
            ("data.max_train=0", "data.max_train"),
            (
                "data.train_windows_per_trajectory=0",
                "data.train_windows_per_trajectory",
            ),
            ("train.gamma=0.0", "train.gamma"),
            ("train.divergence_factor=0.5", "train.divergence_factor"),
            ("train.lr_schedule=\"linear\"", "train.lr_schedule"),
            ("model.structure_weight=-1.0", "model.structure_weight"),
        ] {
            let e = err(MIN, &[set]);
            assert!(e.contains(key), "{set}: {e}");
        }
        let e = err(
            MIN,
            &["model.structure_weight=0.5", "model.teacher_path=\"joint\""],
        );
        assert!(e.contains("model.structure_weight"), "{e}");
        let e = err(
            MIN,
            &[
                "model.align_gate=\"teacher-better\"",
                "model.kind=\"no-teacher\"",
            ],
        );
        assert!(e.contains("model.align_gate"), "{e}");
        let e = err(MIN, &["model.align_gate=\"sometimes\""]);
        assert!(e.contains("model.align_gate"), "{e}");
    }

    #[test]
    fn type_errors_name_the_key() {
        let e = err(&format!("{MIN}[train]\nepochs = \"ten\"\n"), &[]);
        assert!(e.contains("train.epochs"), "{e}");
        let e = err(MIN, &["model.heads=\"four\""]);
        assert!(e.contains("model.heads"), "{e}");
        let e = err(MIN, &["train.adam.lr=fast"]);
        assert!(e.contains("train.adam.lr"), "{e}");
    }

    #[test]
    fn differences_name_keys_and_values() {
        let a = RunConfig::from_toml(MIN, &[]).unwrap();
        let b =
            RunConfig::from_toml(MIN, &["train.epochs=7".into(), "model.hidden=8".into()]).unwrap();
        let d = b.differences(&a);
        assert_eq!(
            d,
            vec![
                ("model.hidden".into(), "64".into(), "8".into()),
                ("train.epochs".into(), "100".into(), "7".into()),
            ]
        );
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = RunConfig::from_toml(&format!("{MIN}[model]\nhiden = 3\n"), &[]).unwrap_err();
        assert!(format!("{err:#}").contains("hiden"), "{err:#}");
        let err = RunConfig::from_toml(MIN, &["train.epoch=3".into()]).unwrap_err();
        assert!(format!("{err:#}").contains("epoch"), "{err:#}");
        let err = RunConfig::from_toml(MIN, &["train.device=tpu".into()]).unwrap_err();
        assert!(format!("{err:#}").contains("tpu"), "{err:#}");
    }
}
