//! The models a run trains, from one config: plain EGNO, plain GF-NODE, SGDD with either
//! decoder (SGDD-EGNO, SGDD-GFNODE, and the ablations), the no-teacher control (SGDD's student
//! conditioning the decoder, no teacher), and the untrained baselines (constant-velocity
//! extrapolation, static initial positions). SPEC §4.4, §4.4a, §4.7.

use anyhow::{Context, Result, ensure};
use distill_kd::{
    DecoderInput, JointBasisSplitter, PiAlignConfig, PiAlignment, TeacherForcingSchedule,
};
use graph_nets::{
    Egno, EgnoConfig, EgnoOutput, GfNode, GfNodeConfig, InitEncoder, InitEncoderConfig,
    InitialState, Stsgnn, StsgnnConfig, Trajectory,
};
use tch::{Device, Kind, Tensor, nn};

use crate::config::{
    AlignGate, DecoderKind, LambdaDecay, ModelConfig, ModelKind, StudentKind, TeacherPath,
};
use crate::data::{Batch, Prepared};
use crate::metrics::ImitationSums;
use crate::sge::{Sge, SplitterCache, gap_splitter};

/// Shapes of the problem a model is built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProblemDims {
    /// Nodes per sample.
    pub n: i64,
    /// Predicted frames.
    pub t: i64,
    /// Node feature width.
    pub node_dim: i64,
    /// Edge attribute width.
    pub edge_dim: i64,
}

impl ProblemDims {
    /// The dimensions of a prepared split.
    pub fn of(p: &Prepared) -> Self {
        Self {
            n: p.n,
            t: p.t,
            node_dim: p.node_dim(),
            edge_dim: p.edge_dim(),
        }
    }
}

/// The SGDD parts: student, SGE over the dataset graph's joint basis, and (SGDD, not the
/// no-teacher control) the teacher and the alignment.
#[derive(Debug)]
struct Distill {
    teacher: Option<Teacher>,
    student: Student,
    sge: Sge,
    apply_sge: bool,
    basis: JointBasisSplitter,
    /// Bases of other graphs, for batches that mix graph sizes.
    other_bases: SplitterCache,
}

/// SGDD's student `E_init`, which reads only `G_0`.
#[derive(Debug)]
enum Student {
    /// The paper's: a GAT over invariants of `G_0` and a linear lift to `T` frames.
    Gat(InitEncoder),
    /// The teacher's architecture (an STSGNN with its own weights) reading a synthetic future
    /// built from `G_0` alone — the constant-velocity extrapolation `x_0 + v_0 τ` at the target
    /// times — so the student can compute what the teacher's future distances carry.
    CvFuture(Stsgnn),
}

impl Student {
    /// `z_init` `[T, B·N, d]`.
    fn forward(&self, state: &InitialState<'_>, times: &[f64]) -> Result<Tensor> {
        match self {
            Self::Gat(enc) => Ok(enc.f_forward(state)?),
            Self::CvFuture(net) => {
                let v = state.v.context("the constant-velocity student needs v_0")?;
                let (x, v) = cv_future(state.x, v, times);
                Ok(net.f_forward(&Trajectory {
                    x: &x,
                    v: Some(&v),
                    h: state.h,
                    graph: state.graph,
                    edge_attr: state.edge_attr,
                })?)
            }
        }
    }
}

impl Student {
    /// The rows the student's last linear layer reads and that layer, with the teacher's
    /// `z_dyn` `[T, B·N, d]` arranged as that layer's targets: the GAT student's lift maps a
    /// node's encoding to its `[T·d]` trajectory of `z`; the constant-velocity student's output
    /// layer maps each (frame, node) hidden state to `z`.
    fn ridge_rows(
        &self,
        state: &InitialState<'_>,
        times: &[f64],
        z_dyn: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let d = z_dyn.size()[2];
        match self {
            Self::Gat(enc) => {
                let x = enc.f_encode_nodes(state)?;
                let t = z_dyn.size()[0];
                let h = z_dyn.permute([1, 0, 2]).reshape([-1, t * d]);
                Ok((x, h))
            }
            Self::CvFuture(net) => {
                let v = state.v.context("the constant-velocity student needs v_0")?;
                let (x, v) = cv_future(state.x, v, times);
                let hidden = net.f_hidden(&Trajectory {
                    x: &x,
                    v: Some(&v),
                    h: state.h,
                    graph: state.graph,
                    edge_attr: state.edge_attr,
                })?;
                let k = hidden.size()[2];
                Ok((hidden.reshape([-1, k]), z_dyn.reshape([-1, d])))
            }
        }
    }
}

impl Student {
    /// The last linear layer, which [`Student::ridge_rows`] feeds.
    fn last_linear_mut(&mut self) -> &mut nn::Linear {
        match self {
            Self::Gat(enc) => enc.lift_linear_mut(),
            Self::CvFuture(net) => net.out_linear_mut(),
        }
    }
}

/// The constant-velocity future of `G_0`: positions `x_0 + v_0 τ` and velocities `v_0` at
/// `τ = 0` and each target time, `[T+1, N, 3]` each.
fn cv_future(x0: &Tensor, v0: &Tensor, times: &[f64]) -> (Tensor, Tensor) {
    let mut tau = vec![0.0];
    tau.extend_from_slice(times);
    let tau = Tensor::from_slice(&tau)
        .to_kind(x0.kind())
        .to_device(x0.device())
        .view([-1, 1, 1]);
    let x = x0.unsqueeze(0) + v0.unsqueeze(0) * &tau;
    let v = v0.unsqueeze(0).expand_as(&x).contiguous();
    (x, v)
}

/// The teacher and how its representation is aligned with the student's.
#[derive(Debug)]
struct Teacher {
    net: Stsgnn,
    /// How the teacher's path is trained.
    path: TeacherPath,
    /// `path = separate`: the teacher's own decoder (of the student's decoder's kind).
    decoder: Option<Decoder>,
    align: PiAlignment,
    /// Detached running statistics of the teacher's `z^sg` and `ã` (when standardising).
    stats: Option<RunningStats>,
    /// Running errors of both paths (`align_gate = "teacher-better-running"`).
    gate: Option<RunningErrors>,
}

/// Exponential running means of the teacher's and the student's path errors over training
/// steps, held as non-trainable variables so a checkpoint carries them and a resumed run
/// continues them exactly.
#[derive(Debug)]
struct RunningErrors {
    teacher: Tensor,
    student: Tensor,
    /// 1 once initialised from the first step.
    seen: Tensor,
    momentum: f64,
}

impl RunningErrors {
    fn new(path: &nn::Path<'_>, momentum: f64) -> Self {
        Self {
            teacher: path.zeros_no_train("teacher_err", &[1]),
            student: path.zeros_no_train("student_err", &[1]),
            seen: path.zeros_no_train("seen", &[1]),
            momentum,
        }
    }

    /// Folds in one step's mean errors (the first step sets them) and says whether the
    /// teacher's path is the better one on the running average.
    fn update(&self, teacher: f64, student: f64) -> bool {
        let _guard = tch::no_grad_guard();
        let m = if self.seen.double_value(&[0]) == 0.0 {
            1.0
        } else {
            self.momentum
        };
        let fold = |stat: &Tensor, new: f64| {
            let updated = stat.double_value(&[0]) * (1.0 - m) + new * m;
            let _ = stat.shallow_clone().fill_(updated);
            updated
        };
        let (t, s) = (fold(&self.teacher, teacher), fold(&self.student, student));
        let _ = self.seen.shallow_clone().fill_(1.0);
        t < s
    }
}

/// Running mean and variance of the teacher's `z^sg` per channel (`[d]`) and of `ã` per
/// spectral mode and channel (`[K, d]`), held as non-trainable variables so a checkpoint
/// carries them and a resumed run continues them exactly.
#[derive(Debug)]
struct RunningStats {
    z_mean: Tensor,
    z_var: Tensor,
    a_mean: Tensor,
    a_var: Tensor,
    /// 1 once initialised from the first batch.
    seen: Tensor,
    momentum: f64,
}

impl RunningStats {
    fn new(path: &nn::Path<'_>, k: i64, d: i64, momentum: f64) -> Self {
        Self {
            z_mean: path.zeros_no_train("z_mean", &[d]),
            z_var: path.ones_no_train("z_var", &[d]),
            a_mean: path.zeros_no_train("a_mean", &[k, d]),
            a_var: path.ones_no_train("a_var", &[k, d]),
            seen: path.zeros_no_train("seen", &[1]),
            momentum,
        }
    }

    /// Updates the statistics from a batch of teacher outputs (`z`: `[T, B·N, d]`, `a`:
    /// `[B, K, d]`); the first batch sets them. (The tensors are shared handles: updating them
    /// in place needs no `&mut`.)
    fn update(&self, z: &Tensor, a: &Tensor) {
        let _guard = tch::no_grad_guard();
        let z = z.detach().reshape([-1, z.size()[2]]);
        let a = a.detach();
        let (zm, zv) = (z.mean_dim(0, false, z.kind()), z.var_dim(0, false, false));
        let (am, av) = (a.mean_dim(0, false, a.kind()), a.var_dim(0, false, false));
        let m = if self.seen.double_value(&[0]) == 0.0 {
            1.0
        } else {
            self.momentum
        };
        for (stat, new) in [
            (&self.z_mean, zm),
            (&self.z_var, zv),
            (&self.a_mean, am),
            (&self.a_var, av),
        ] {
            let updated = stat * (1.0 - m) + new * m;
            stat.shallow_clone().copy_(&updated);
        }
        let _ = self.seen.shallow_clone().fill_(1.0);
    }

    /// `(x − mean) / sqrt(var + ε)` with detached statistics (`x`'s channels last).
    fn standardize(mean: &Tensor, var: &Tensor, x: &Tensor) -> Tensor {
        (x - mean.detach()) / (var.detach() + 1e-6).sqrt()
    }
}

/// The decoder of a trained model.
#[derive(Debug)]
enum Decoder {
    Egno(Egno),
    /// GF-NODE with the target times of every sample, `[T]` in units of the first target's
    /// offset (`1, 2, …, T` for strided targets; the authors embed frame counts).
    GfNode {
        net: Box<GfNode>,
        times: Tensor,
        /// The first target's offset (the time unit of `times`), in the dataset's time unit.
        unit: f64,
    },
}

impl Decoder {
    /// Builds the decoder `kind` under `p`; `cond_dim` 0 for the plain kinds.
    fn build(
        kind: DecoderKind,
        cfg: &ModelConfig,
        dims: ProblemDims,
        cond_dim: i64,
        target_times: &[f64],
        p: nn::Path<'_>,
    ) -> Result<Self> {
        Ok(match kind {
            DecoderKind::Egno => Self::Egno(
                EgnoConfig {
                    node_in: dims.node_dim,
                    edge_dim: dims.edge_dim,
                    hidden: cfg.hidden,
                    layers: cfg.decoder_layers,
                    horizon: dims.t,
                    num_modes: cfg.num_modes.min(dims.t / 2 + 1),
                    cond_dim,
                    ..Default::default()
                }
                .build(p)?,
            ),
            DecoderKind::GfNode => {
                let first = target_times.first().copied().unwrap_or(0.0);
                anyhow::ensure!(
                    first > 0.0 && target_times.iter().all(|t| t.is_finite() && *t >= first),
                    "GF-NODE needs positive target times after the condition frame, got \
                     {target_times:?}"
                );
                let rel: Vec<f64> = target_times.iter().map(|t| t / first).collect();
                let g = &cfg.gf_node;
                let net = GfNodeConfig {
                    node_in: dims.node_dim,
                    edge_dim: dims.edge_dim,
                    hidden: cfg.hidden,
                    layers: cfg.decoder_layers,
                    num_modes: cfg.num_modes.min(dims.n.max(1)),
                    time_emb_dim: g.time_emb_dim,
                    horizon: dims.t,
                    time_scale: rel.iter().copied().fold(f64::MIN, f64::max),
                    mode_interaction: g.mode_interaction,
                    ode_time: g.ode_time,
                    vector_dynamics: g.vector_dynamics,
                    ode: g.ode.clone(),
                    cond_dim,
                    ..Default::default()
                }
                .build(p)?;
                Self::GfNode {
                    net: Box::new(net),
                    times: Tensor::from_slice(&rel),
                    unit: first,
                }
            }
        })
    }

    /// The decoder's prediction from the initial state and the optional conditioning, at the
    /// model's target times or, when given, at each graph's own `times` (`[G, T]`, in the
    /// dataset's time unit; [`Batch::times`]).
    fn f_forward(
        &self,
        state: &InitialState<'_>,
        cond: Option<&Tensor>,
        own_times: Option<&Tensor>,
    ) -> Result<EgnoOutput> {
        Ok(match self {
            Self::Egno(net) => {
                anyhow::ensure!(
                    own_times.is_none(),
                    "per-sample target times (data.uneven_targets) need the GF-NODE decoder; \
                     EGNO predicts its fixed frames"
                );
                net.f_forward(state, cond)?
            }
            Self::GfNode { net, times, unit } => {
                let times = match own_times {
                    Some(own) => (own / *unit).to_kind(state.x.kind()),
                    None => {
                        let g = state.graph.num_graphs();
                        times
                            .to_kind(state.x.kind())
                            .unsqueeze(0)
                            .expand([g, -1], false)
                    }
                };
                net.f_forward(state, Some(&times), cond)?
            }
        })
    }
}

/// A trainable model (or the constant-velocity / static baseline).
#[derive(Debug)]
pub struct Model {
    kind: ModelKind,
    dims: ProblemDims,
    decoder: Option<Decoder>,
    distill: Option<Distill>,
    target_times: Vec<f64>,
    /// How the alignment's λ fades over the steps of a run.
    lambda_decay: LambdaDecay,
    /// Which samples the alignment reads.
    align_gate: AlignGate,
    /// λ_b of the structure-only regulariser ([`ModelConfig::structure_weight`]).
    structure_weight: f64,
}

/// The loss of one training step and its parts (for logging).
#[derive(Debug)]
pub struct StepLoss {
    /// `L_pred + λ L_align`.
    pub total: Tensor,
    /// `L_pred`.
    pub pred: f64,
    /// `L_rep` (0 without SGDD).
    pub rep: f64,
    /// `L_spec` (0 without SGDD).
    pub spec: f64,
    /// The fraction of the batch's samples the alignment read (1 unless
    /// `model.align_gate = "teacher-better"`; 0 without a teacher).
    pub aligned: f64,
    /// Whether the decoder read the teacher's representation.
    pub teacher_forced: bool,
}

impl Model {
    /// Builds the model's variables under `vs`'s root. `undirected` is the spatial graph of every
    /// sample (for the joint basis); `target_times` the time of each predicted frame.
    pub fn build(
        vs: &nn::VarStore,
        cfg: &ModelConfig,
        dims: ProblemDims,
        undirected: &[(usize, usize)],
        target_times: Vec<f64>,
    ) -> Result<Self> {
        anyhow::ensure!(
            cfg.kind != ModelKind::LamSlide,
            "model.kind = \"lam-slide\" is trained and sampled by the LaM-SLidE trainer \
             (sgdd_train::LamSlideTrainer), not by Model"
        );
        let root = vs.root();
        let device = vs.device();
        let cond_dim = if cfg.kind.has_student() { cfg.z_dim } else { 0 };
        let decoder = match cfg.kind {
            ModelKind::ConstVel | ModelKind::Static => None,
            ModelKind::Egno | ModelKind::LamSlide => Some(DecoderKind::Egno),
            ModelKind::GfNode => Some(DecoderKind::GfNode),
            ModelKind::Sgdd | ModelKind::NoTeacher => Some(cfg.decoder),
        }
        .map(|kind| Decoder::build(kind, cfg, dims, cond_dim, &target_times, &root / "decoder"))
        .transpose()?;
        let distill = if cfg.kind.has_student() {
            let teacher = if cfg.kind == ModelKind::Sgdd {
                Some(
                    StsgnnConfig {
                        node_in: dims.node_dim,
                        edge_dim: dims.edge_dim,
                        hidden: cfg.hidden,
                        layers: cfg.teacher_layers,
                        out_dim: cfg.z_dim,
                        horizon: dims.t,
                        ..Default::default()
                    }
                    .build(&root / "teacher")?,
                )
            } else {
                None
            };
            let student = match cfg.student {
                StudentKind::Gat => Student::Gat(
                    InitEncoderConfig {
                        node_in: dims.node_dim,
                        edge_dim: dims.edge_dim,
                        hidden: cfg.hidden,
                        heads: cfg.heads,
                        layers: cfg.student_layers,
                        out_dim: cfg.z_dim,
                        horizon: dims.t,
                        direction_invariants: cfg.student_directions,
                        ..Default::default()
                    }
                    .build(&root / "student")?,
                ),
                StudentKind::CvFuture => Student::CvFuture(
                    StsgnnConfig {
                        node_in: dims.node_dim,
                        edge_dim: dims.edge_dim,
                        hidden: cfg.hidden,
                        layers: cfg.student_layers,
                        out_dim: cfg.z_dim,
                        horizon: dims.t,
                        ..Default::default()
                    }
                    .build(&root / "student")?,
                ),
            };
            let joint = (dims.n * dims.t) as usize;
            anyhow::ensure!(
                cfg.k <= joint,
                "model.k = {} exceeds N·T = {} × {} = {joint}, the size of this dataset's joint \
                 spatio-temporal basis",
                cfg.k,
                dims.n,
                dims.t
            );
            let basis = gap_splitter(
                dims.n as usize,
                undirected,
                dims.t as usize,
                cfg.k,
                cfg.k_at_gap,
                "model.k",
                device,
            )?;
            let sge = Sge::new(&(&root / "sge"), basis.k());
            let teacher = match teacher {
                Some(net) => {
                    let align = PiAlignConfig {
                        lambda: cfg.lambda,
                        rep_weight: if cfg.align_rep { 1.0 } else { 0.0 },
                        spec_weight: if cfg.align_spec { 1.0 } else { 0.0 },
                        ..Default::default()
                    }
                    .check()?;
                    let stats = cfg.align_standardize.then(|| {
                        RunningStats::new(
                            &(&root / "align_stats"),
                            basis.k() as i64,
                            cfg.z_dim,
                            cfg.stats_momentum,
                        )
                    });
                    let gate = (cfg.align_gate == AlignGate::TeacherBetterRunning)
                        .then(|| RunningErrors::new(&(&root / "align_gate"), cfg.gate_momentum));
                    let decoder = match cfg.teacher_path {
                        TeacherPath::Separate => Some(Decoder::build(
                            cfg.decoder,
                            cfg,
                            dims,
                            cond_dim,
                            &target_times,
                            &root / "teacher_decoder",
                        )?),
                        TeacherPath::Scheduled | TeacherPath::Joint => None,
                    };
                    Some(Teacher {
                        net,
                        path: cfg.teacher_path,
                        decoder,
                        align,
                        stats,
                        gate,
                    })
                }
                None => None,
            };
            let other_bases = SplitterCache::new(dims.t as usize, basis.k(), Kind::Float, device);
            Some(Distill {
                teacher,
                student,
                sge,
                apply_sge: cfg.sge,
                basis,
                other_bases,
            })
        } else {
            None
        };
        Ok(Self {
            kind: cfg.kind,
            dims,
            decoder,
            distill,
            target_times,
            lambda_decay: cfg.lambda_decay,
            align_gate: cfg.align_gate,
            structure_weight: cfg.structure_weight,
        })
    }

    /// Whether there is anything to train.
    pub fn trainable(&self) -> bool {
        self.decoder.is_some()
    }

    /// SGE over a batch: `z` `[T, B·N, d]` → (`z^sg` `[T, B·N, d]`, `ã` `[B, K, d]`).
    fn sge(&self, d: &Distill, z: &Tensor, batch: &Batch) -> Result<(Tensor, Tensor)> {
        self.sge_with(d, &d.sge, z, batch)
    }

    /// [`Model::sge`] with the layer `sge` (the model's own, or a detached copy of it).
    fn sge_with(
        &self,
        d: &Distill,
        sge: &Sge,
        z: &Tensor,
        batch: &Batch,
    ) -> Result<(Tensor, Tensor)> {
        let b = batch.b;
        if let Some(graph) = &batch.spectral_graph {
            // each sample's own spectral graph (`data.spectral_graph`)
            return sge.forward_graphs(&d.other_bases, z, graph, d.apply_sge);
        }
        if !batch.shared_graph || batch.graph.graph_sizes().iter().any(|&n| n != self.dims.n) {
            // a graph per sample, or graphs of different sizes: a basis per distinct graph
            return sge.forward_graphs(&d.other_bases, z, &batch.graph, d.apply_sge);
        }
        let (t, n) = (self.dims.t, self.dims.n);
        let zb = z.reshape([t, b, n, -1]).permute([1, 0, 2, 3]);
        let (z_sg, a) = if d.apply_sge {
            sge.forward(&d.basis, &zb)?
        } else {
            (zb.shallow_clone(), d.basis.coefficients(&zb)?)
        };
        Ok((z_sg.permute([1, 0, 2, 3]).reshape([t, b * n, -1]), a))
    }

    fn state<'a>(batch: &'a Batch) -> InitialState<'a> {
        InitialState {
            x: &batch.x0,
            v: Some(&batch.v0),
            h: &batch.h,
            graph: &batch.graph,
            edge_attr: (batch.edge_attr.size()[1] > 0).then_some(&batch.edge_attr),
        }
    }

    /// Predicted positions `[T, B·N, 3]` (normalised units) from the initial state only: the
    /// teacher is not run and the batch's future frames are not read.
    pub fn predict(&self, batch: &Batch) -> Result<Tensor> {
        let Some(decoder) = &self.decoder else {
            if self.kind == ModelKind::Static {
                let t = self.target_times.len() as i64;
                return Ok(batch.x0.unsqueeze(0).repeat([t, 1, 1]));
            }
            // x_0 + v_0 · t (time from the condition frame to each target)
            let times = Tensor::from_slice(&self.target_times)
                .to_kind(batch.x0.kind())
                .to_device(batch.x0.device())
                .view([-1, 1, 1]);
            return Ok(batch.x0.unsqueeze(0) + batch.v0.unsqueeze(0) * times);
        };
        let state = Self::state(batch);
        let cond = match &self.distill {
            Some(d) => Some(
                self.sge(d, &d.student.forward(&state, &self.target_times)?, batch)?
                    .0,
            ),
            None => None,
        };
        Ok(decoder
            .f_forward(&state, cond.as_ref(), batch.times.as_ref())?
            .x)
    }

    /// Diagnostic only: the decoder conditioned on the *teacher's* representation, which reads
    /// the batch's future frames — an oracle bounding what distillation can transfer. `None`
    /// for models without a teacher.
    pub fn predict_with_teacher(&self, batch: &Batch) -> Result<Option<Tensor>> {
        let (Some(decoder), Some(d)) = (&self.decoder, &self.distill) else {
            return Ok(None);
        };
        let Some(teacher) = &d.teacher else {
            return Ok(None);
        };
        let (cond, _) = self.sge(d, &Self::teacher_z(teacher, batch)?, batch)?;
        let decoder = teacher.decoder.as_ref().unwrap_or(decoder);
        Ok(Some(
            decoder
                .f_forward(&Self::state(batch), Some(&cond), batch.times.as_ref())?
                .x,
        ))
    }

    /// Whether the model has a teacher (an SGDD model; its imitation R² is defined).
    pub fn has_teacher(&self) -> bool {
        self.distill.as_ref().is_some_and(|d| d.teacher.is_some())
    }

    /// How well the student's `z^sg_init` imitates the teacher's `z^sg_dyn` on a batch (sums
    /// for [`ImitationSums`]); `None` for models without a teacher.
    pub fn imitation(&self, batch: &Batch, sums: &mut ImitationSums) -> Result<bool> {
        let Some(d) = &self.distill else {
            return Ok(false);
        };
        let Some(teacher) = &d.teacher else {
            return Ok(false);
        };
        let _guard = tch::no_grad_guard();
        let (z_dyn, _) = self.sge(d, &Self::teacher_z(teacher, batch)?, batch)?;
        let z = d.student.forward(&Self::state(batch), &self.target_times)?;
        let (z_init, _) = self.sge(d, &z, batch)?;
        sums.add(&z_init, &z_dyn);
        Ok(true)
    }

    /// The teacher's `z_dyn` `[T, B·N, d]`, from frames `0..=T` (`G_0` and the privileged future).
    fn teacher_z(teacher: &Teacher, batch: &Batch) -> Result<Tensor> {
        let x = Tensor::cat(&[batch.x0.unsqueeze(0), batch.y.shallow_clone()], 0);
        let v = Tensor::cat(&[batch.v0.unsqueeze(0), batch.vy.shallow_clone()], 0);
        let traj = Trajectory {
            x: &x,
            v: Some(&v),
            h: &batch.h,
            graph: &batch.graph,
            edge_attr: (batch.edge_attr.size()[1] > 0).then_some(&batch.edge_attr),
        };
        Ok(teacher.net.f_forward(&traj)?)
    }

    /// The training loss of a batch at `iteration` (the schedule decides teacher forcing).
    pub fn loss(
        &self,
        batch: &Batch,
        iteration: u64,
        schedule: &TeacherForcingSchedule,
    ) -> Result<StepLoss> {
        let decoder = self
            .decoder
            .as_ref()
            .context("the constant-velocity and static baselines have nothing to train")?;
        let state = Self::state(batch);
        // the prediction loss alone: plain EGNO, and the no-teacher control
        let prediction_only = |cond: Option<&Tensor>| -> Result<StepLoss> {
            let pred = decoder.f_forward(&state, cond, batch.times.as_ref())?.x;
            let l = pred.mse_loss(&batch.y, tch::Reduction::Mean);
            Ok(StepLoss {
                pred: l.double_value(&[]),
                total: l,
                rep: 0.0,
                spec: 0.0,
                aligned: 0.0,
                teacher_forced: false,
            })
        };
        let Some(d) = &self.distill else {
            return prediction_only(None);
        };
        ensure!(
            batch.times.is_none(),
            "per-sample target times (data.uneven_targets) apply to plain GF-NODE: the student \
             and the teacher see the fixed target frames"
        );
        let z_init = d.student.forward(&state, &self.target_times)?;
        let (zsg_init, a_init) = self.sge(d, &z_init, batch)?;
        let Some(teacher) = &d.teacher else {
            // the no-teacher control: the student conditions the decoder
            return prediction_only(Some(&zsg_init));
        };
        let z_dyn = Self::teacher_z(teacher, batch)?;
        let (zsg_dyn, a_dyn) = self.sge(d, &z_dyn, batch)?;
        let predict = |decoder: &Decoder, cond: &Tensor| -> Result<Tensor> {
            Ok(decoder
                .f_forward(&state, Some(cond), batch.times.as_ref())?
                .x)
        };
        let mse = |pred: &Tensor| pred.mse_loss(&batch.y, tch::Reduction::Mean);
        // `l_pred`: the path the step reports; `l_train`: every prediction loss it trains;
        // the predictions of the student's and the teacher's paths the step made
        let (l_pred, l_train, teacher_forced, student_pred, teacher_pred) = match teacher.path {
            TeacherPath::Scheduled => {
                let forced = schedule.decoder_input(iteration) == DecoderInput::Teacher;
                let pred = predict(decoder, if forced { &zsg_dyn } else { &zsg_init })?;
                let l = mse(&pred);
                // seed 002's structure-only regulariser L(ŷ, y) + λ_b L(ŷ_struct, y)
                let (train, student) = if forced && self.structure_weight > 0.0 {
                    let student = predict(decoder, &zsg_init)?;
                    (&l + mse(&student) * self.structure_weight, Some(student))
                } else {
                    (l.shallow_clone(), None)
                };
                let (student, teacher) = if forced {
                    (student, Some(pred))
                } else {
                    (Some(pred), None)
                };
                (l, train, forced, student, teacher)
            }
            TeacherPath::Joint => {
                let (student, teacher) =
                    (predict(decoder, &zsg_init)?, predict(decoder, &zsg_dyn)?);
                let l = mse(&student);
                let both = &l + mse(&teacher);
                (l, both, false, Some(student), Some(teacher))
            }
            TeacherPath::Separate => {
                let student = predict(decoder, &zsg_init)?;
                let own = teacher
                    .decoder
                    .as_ref()
                    .context("teacher_path = \"separate\" without a teacher decoder")?;
                // the teacher's path trains the teacher only: it reads SGE's weights detached,
                // so nothing the student uses learns from the teacher's prediction loss
                let frozen = Sge {
                    w: d.sge.w.detach(),
                };
                let (zsg_own, _) = self.sge_with(d, &frozen, &z_dyn, batch)?;
                let teacher = predict(own, &zsg_own)?;
                let l = mse(&student);
                let both = &l + mse(&teacher);
                (l, both, false, Some(student), Some(teacher))
            }
        };
        // the gate: where the teacher's path is no better, the student's side of the
        // alignment is replaced by the (detached) teacher's, so those samples add 0 and no
        // gradient
        let (zsg_init, a_init, aligned) = match self.align_gate {
            AlignGate::All => (zsg_init, a_init, 1.0),
            AlignGate::TeacherBetter | AlignGate::TeacherBetterRunning => {
                let gate = {
                    let _guard = tch::no_grad_guard();
                    // the path the step did not predict (teacher forcing) is predicted here
                    let s_pred = match student_pred {
                        Some(p) => p,
                        None => predict(decoder, &zsg_init)?,
                    };
                    let t_pred = match teacher_pred {
                        Some(p) => p,
                        None => predict(decoder, &zsg_dyn)?,
                    };
                    // each graph's mean squared error, `[G]`
                    let err = |p: &Tensor| {
                        let per_node = (p - &batch.y).square().mean_dim(
                            [0i64, 2].as_slice(),
                            false,
                            Kind::Double,
                        );
                        batch.graph.graph_mean(&per_node)
                    };
                    let (t_err, s_err) = (err(&t_pred), err(&s_pred));
                    match &teacher.gate {
                        None => t_err.lt_tensor(&s_err),
                        Some(running) => {
                            let mean = |e: &Tensor| e.mean(Kind::Double).double_value(&[]);
                            let on = running.update(mean(&t_err), mean(&s_err));
                            if on {
                                t_err.ones_like()
                            } else {
                                t_err.zeros_like()
                            }
                            .to_kind(Kind::Bool)
                        }
                    }
                };
                let aligned = gate
                    .to_kind(Kind::Double)
                    .mean(Kind::Double)
                    .double_value(&[]);
                let node = gate
                    .index_select(0, batch.graph.node_graph())
                    .view([1, -1, 1]);
                let z = zsg_init.where_self(&node, &zsg_dyn.detach());
                let a = a_init.where_self(&gate.view([-1, 1, 1]), &a_dyn.detach());
                (z, a, aligned)
            }
        };
        let align = match &teacher.stats {
            None => teacher
                .align
                .forward(&zsg_init, &zsg_dyn, &a_init, &a_dyn)?,
            Some(st) => {
                st.update(&zsg_dyn, &a_dyn);
                let z = |x: &Tensor| RunningStats::standardize(&st.z_mean, &st.z_var, x);
                let a = |x: &Tensor| RunningStats::standardize(&st.a_mean, &st.a_var, x);
                teacher
                    .align
                    .forward(&z(&zsg_init), &z(&zsg_dyn), &a(&a_init), &a(&a_dyn))?
            }
        };
        let decay = self
            .lambda_decay
            .factor(iteration, schedule.total_iterations());
        let total = &l_train + &align.total * decay;
        Ok(StepLoss {
            pred: l_pred.double_value(&[]),
            rep: align.rep.double_value(&[]),
            spec: align.spec.double_value(&[]),
            total,
            aligned,
            teacher_forced,
        })
    }

    /// The schedule for a run of `iterations` steps.
    pub fn schedule(
        cfg: &ModelConfig,
        seed: u64,
        iterations: u64,
    ) -> Result<TeacherForcingSchedule> {
        Ok(cfg.forcing(seed).check(iterations.max(1))?)
    }

    /// The kind of model.
    pub fn kind(&self) -> ModelKind {
        self.kind
    }

    /// Closed-form warm start of the student (seed 002's ridge distillation): streams the split
    /// through the teacher and the student and solves the student's last linear layer (the GAT
    /// student's lift, or the constant-velocity student's output layer) by ridge regression
    /// onto the teacher's `z_dyn` (`distill_kd::RidgeAccumulator`, memory `O(D² + D·H)`), then
    /// loads the solution into that layer. Returns the rows used, or `None` for a model without
    /// a teacher.
    pub fn ridge_warm_start(
        &mut self,
        p: &Prepared,
        batch_size: usize,
        device: Device,
        lambda: f64,
    ) -> Result<Option<u64>> {
        let times = self.target_times.clone();
        let Some(d) = self.distill.as_mut() else {
            return Ok(None);
        };
        let Some(teacher) = &d.teacher else {
            return Ok(None);
        };
        let _guard = tch::no_grad_guard();
        let mut graphs = crate::data::GraphCache::default();
        let idx: Vec<i64> = (0..p.samples).collect();
        let mut acc: Option<distill_kd::RidgeAccumulator> = None;
        for chunk in idx.chunks(batch_size.max(1)) {
            let batch = p.batch(chunk, device, &mut graphs)?;
            let z_dyn = Self::teacher_z(teacher, &batch)?;
            let state = Self::state(&batch);
            let (x, h) = d.student.ridge_rows(&state, &times, &z_dyn)?;
            let acc = match &mut acc {
                Some(a) => a,
                None => acc.insert(
                    distill_kd::RidgeConfig {
                        lambda,
                        intercept: true,
                        ..Default::default()
                    }
                    .check(x.size()[1] as usize, h.size()[1] as usize)?,
                ),
            };
            acc.push(&x, &h)?;
        }
        let Some(acc) = acc else {
            return Ok(None);
        };
        acc.solve()?.load_into(d.student.last_linear_mut())?;
        Ok(Some(acc.rows()))
    }

    /// The plain EGNO decoder (`model.kind = "egno"`), whose last layer's coordinate heads a
    /// distillation run's ridge initialisation solves.
    fn plain_egno(&self) -> Result<&Egno> {
        match (&self.decoder, &self.distill) {
            (Some(Decoder::Egno(net)), None) => Ok(net),
            _ => anyhow::bail!(
                "the closed-form readout fit needs a plain EGNO model (model.kind = \"egno\"), \
                 not {:?}",
                self.kind
            ),
        }
    }

    /// A plain EGNO's predictions on a batch as a linear function of its readout weights
    /// `θ` ([`Egno::f_readout_rows`]): `x = base + feats · θ`.
    ///
    /// # Shapes
    /// Batch of `B` samples of `N` nodes → `base: [T, B·N, 3]`, `feats: [T, B·N, 3, P]`.
    pub(crate) fn egno_readout_rows(&self, batch: &Batch) -> Result<(Tensor, Tensor)> {
        Ok(self
            .plain_egno()?
            .f_readout_rows(&Self::state(batch), None)?)
    }

    /// `P` of [`Model::egno_readout_rows`].
    pub(crate) fn egno_readout_width(&self) -> Result<i64> {
        Ok(self.plain_egno()?.readout_width())
    }

    /// Loads `θ` (`[P]`) into a plain EGNO's readout.
    pub(crate) fn set_egno_readout(&self, theta: &Tensor) -> Result<()> {
        Ok(self.plain_egno()?.set_readout(theta)?)
    }

    /// The number of joint spectral modes K of SGE (after the cut at an eigenvalue gap).
    pub fn spectral_k(&self) -> Option<usize> {
        self.distill.as_ref().map(|d| d.basis.k())
    }

    /// The tensors the model holds beside its variables (the joint basis of SGE, `sge_basis.*`),
    /// by name: with the variables of its `VarStore`, everything a forward pass reads from the
    /// model, e.g. to check that all of it lives on the model's device.
    pub fn buffers(&self) -> Vec<(String, Tensor)> {
        self.distill
            .iter()
            .flat_map(|d| d.basis.tensors())
            .map(|(name, t)| (format!("sge_basis.{name}"), t.shallow_clone()))
            .collect()
    }

    /// The learned spectral weights `w` (SGDD with SGE), for reports.
    pub fn spectral_weights(&self) -> Option<Vec<f64>> {
        let d = self.distill.as_ref()?;
        d.apply_sge.then(|| {
            Vec::<f64>::try_from(d.sge.w.to_kind(Kind::Double).to_device(Device::Cpu))
                .unwrap_or_default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{GraphCache, prepare};
    use traj_data::nbody::{NBodySpec, System};

    /// The prepared training windows of a small generated charged system.
    fn tiny_charged(n_train: usize, seed: u64) -> Prepared {
        let mut spec = NBodySpec::new(System::Charged);
        spec.n_train = n_train;
        spec.seed = seed;
        let ds = spec.generate_split(traj_data::Split::Train).unwrap();
        let cfg = crate::RunConfig::from_toml("[data]\ndir = \"unused\"\n", &[]).unwrap();
        prepare(&ds, &cfg.data).unwrap()
    }

    /// `cfg`'s model for the data of `p`, under `vs`.
    fn build(vs: &nn::VarStore, cfg: &ModelConfig, p: &Prepared) -> Model {
        Model::build(
            vs,
            cfg,
            ProblemDims::of(p),
            &p.undirected,
            p.target_times.clone(),
        )
        .unwrap()
    }

    /// An SGDD model config of the smallest sizes.
    fn tiny_sgdd() -> ModelConfig {
        ModelConfig {
            hidden: 8,
            z_dim: 4,
            decoder_layers: 1,
            teacher_layers: 1,
            student_layers: 1,
            heads: 2,
            k: 6,
            ..Default::default()
        }
    }

    /// The closed-form warm start leaves the student's last layer at the least-squares optimum
    /// of its rows: the gradient of `‖layer(X) − H‖²` with respect to the layer vanishes (up to
    /// the tiny ridge penalty), where before it did not — for both kinds of student.
    #[test]
    fn the_ridge_warm_start_solves_the_last_layer_in_closed_form() {
        let _rng = crate::trainer::torch_rng();
        let p = tiny_charged(6, 3);
        for student in [StudentKind::Gat, StudentKind::CvFuture] {
            tch::manual_seed(0);
            let vs = nn::VarStore::new(Device::Cpu);
            let mcfg = ModelConfig {
                student,
                ..tiny_sgdd()
            };
            let dims = ProblemDims::of(&p);
            let mut model =
                Model::build(&vs, &mcfg, dims, &p.undirected, p.target_times.clone()).unwrap();
            let gradient_norm = |model: &mut Model| {
                let times = model.target_times.clone();
                let d = model.distill.as_mut().unwrap();
                let teacher = d.teacher.as_ref().unwrap();
                let idx: Vec<i64> = (0..p.samples).collect();
                let batch = p
                    .batch(&idx, Device::Cpu, &mut GraphCache::default())
                    .unwrap();
                let z = tch::no_grad(|| Model::teacher_z(teacher, &batch)).unwrap();
                let state = Model::state(&batch);
                let (x, h) = tch::no_grad(|| d.student.ridge_rows(&state, &times, &z)).unwrap();
                let lin = d.student.last_linear_mut();
                let w = lin.ws.detach().copy().set_requires_grad(true);
                let b = lin
                    .bs
                    .as_ref()
                    .unwrap()
                    .detach()
                    .copy()
                    .set_requires_grad(true);
                let loss = (x.matmul(&w.tr()) + &b - &h).square().sum(Kind::Double);
                let g = Tensor::run_backward(&[loss], &[&w], false, false);
                g[0].norm().double_value(&[]) / h.norm().double_value(&[])
            };
            let before = gradient_norm(&mut model);
            let rows = model
                .ridge_warm_start(&p, 4, Device::Cpu, 1e-9)
                .unwrap()
                .unwrap();
            assert!(rows > 0);
            let after = gradient_norm(&mut model);
            assert!(
                after < 1e-3 * before && after < 1e-3,
                "{student:?}: gradient {before} → {after}"
            );
        }
    }

    /// A decaying λ scales the alignment by its factor at the step: full at the first step,
    /// nothing at the last (the loss is then the prediction losses alone), in between as the
    /// formula says; `constant` is λ everywhere.
    #[test]
    fn lambda_decay_fades_the_alignment() {
        let _rng = crate::trainer::torch_rng();
        for (decay, half) in [
            (LambdaDecay::Constant, 1.0),
            (LambdaDecay::Linear, 0.5),
            (LambdaDecay::Cosine, 0.5),
        ] {
            assert_eq!(decay.factor(0, 10), 1.0);
            assert!((decay.factor(5, 10) - half).abs() < 1e-12);
            let end = decay.factor(10, 10);
            assert!((end - f64::from(u8::from(decay == LambdaDecay::Constant))).abs() < 1e-12);
        }
        assert!((LambdaDecay::Cosine.factor(1, 4) - (0.5 + 0.5 * 0.5f64.sqrt())).abs() < 1e-12);
        let p = tiny_charged(4, 5);
        let idx: Vec<i64> = (0..p.samples).collect();
        let batch = p
            .batch(&idx, Device::Cpu, &mut GraphCache::default())
            .unwrap();
        let schedule = distill_kd::TeacherForcingConfig::paper(0).check(8).unwrap();
        // one model (weights drawn once: libtorch's generator is shared with the tests running
        // beside this one), its decay switched between the steps scored
        let vs = nn::VarStore::new(Device::Cpu);
        let mcfg = ModelConfig {
            lambda: 0.5,
            teacher_path: TeacherPath::Separate,
            align_gate: AlignGate::All,
            ..tiny_sgdd()
        };
        let mut model = build(&vs, &mcfg, &p);
        let mut total_at = |decay: LambdaDecay, step: u64| {
            model.lambda_decay = decay;
            let l = model.loss(&batch, step, &schedule).unwrap();
            let align = 0.5 * (l.rep + l.spec);
            (l.total.double_value(&[]), align)
        };
        // the same weights and batch at every step (the separate path ignores the schedule)
        let (full, align) = total_at(LambdaDecay::Constant, 4);
        assert!(align > 0.0);
        let base = full - align;
        let (at_start, _) = total_at(LambdaDecay::Linear, 0);
        let (midway, _) = total_at(LambdaDecay::Linear, 4);
        let (at_end, _) = total_at(LambdaDecay::Cosine, 8);
        assert!((at_start - full).abs() < 1e-6 * full);
        assert!((midway - (base + 0.5 * align)).abs() < 1e-6 * full);
        assert!((at_end - base).abs() < 1e-6 * full);
    }

    /// Seed 002's structure-only regulariser: a teacher-forced step trains
    /// `L(ŷ_teacher, y) + λ_b L(ŷ_student, y)` (λ = 0 here, so nothing else); a step on the
    /// student's path, or λ_b = 0, trains its one prediction loss.
    #[test]
    fn the_structure_only_regulariser_adds_the_student_path() {
        let _rng = crate::trainer::torch_rng();
        let p = tiny_charged(4, 5);
        let idx: Vec<i64> = (0..p.samples).collect();
        let batch = p
            .batch(&idx, Device::Cpu, &mut GraphCache::default())
            .unwrap();
        // the paper's schedule: the first third teacher-forced, later steps by coin flip
        let schedule = distill_kd::TeacherForcingConfig::paper(0).check(9).unwrap();
        let vs = nn::VarStore::new(Device::Cpu);
        let mcfg = ModelConfig {
            lambda: 0.0,
            structure_weight: 0.25,
            teacher_path: TeacherPath::Scheduled,
            align_gate: AlignGate::All,
            ..tiny_sgdd()
        };
        let mut model = build(&vs, &mcfg, &p);
        let mse = |x: Tensor| x.mse_loss(&batch.y, tch::Reduction::Mean).double_value(&[]);
        let student = mse(model.predict(&batch).unwrap());
        let teacher = mse(model.predict_with_teacher(&batch).unwrap().unwrap());
        let forced = model.loss(&batch, 0, &schedule).unwrap();
        assert!(forced.teacher_forced);
        assert!((forced.pred - teacher).abs() < 1e-6 * teacher);
        let total = forced.total.double_value(&[]);
        let want = teacher + 0.25 * student;
        assert!((total - want).abs() < 1e-5 * want, "{total} vs {want}");
        let free = (3..9)
            .find(|&i| schedule.decoder_input(i) == DecoderInput::Student)
            .unwrap();
        let step = model.loss(&batch, free, &schedule).unwrap();
        assert!((step.total.double_value(&[]) - student).abs() < 1e-6 * student);
        model.structure_weight = 0.0;
        let off = model.loss(&batch, 0, &schedule).unwrap();
        assert!((off.total.double_value(&[]) - teacher).abs() < 1e-6 * teacher);
    }

    /// A separate-path SGDD with λ = 1 and the alignment gate `gate`, and one batch of eight
    /// tiny charged samples (for the loss's gate tests; the caller holds the torch RNG lock).
    fn gated(
        gate: AlignGate,
        gate_momentum: f64,
    ) -> (nn::VarStore, Model, Batch, TeacherForcingSchedule) {
        let p = tiny_charged(8, 3);
        let idx: Vec<i64> = (0..p.samples).collect();
        let batch = p
            .batch(&idx, Device::Cpu, &mut GraphCache::default())
            .unwrap();
        let schedule = distill_kd::TeacherForcingConfig::paper(0).check(4).unwrap();
        tch::manual_seed(1);
        let vs = nn::VarStore::new(Device::Cpu);
        let mcfg = ModelConfig {
            lambda: 1.0,
            teacher_path: TeacherPath::Separate,
            align_gate: gate,
            gate_momentum,
            ..tiny_sgdd()
        };
        let model = build(&vs, &mcfg, &p);
        (vs, model, batch, schedule)
    }

    /// `align_gate = "teacher-better"` aligns exactly the samples whose teacher path predicts
    /// better than the student's (a slow per-sample reference), and only they carry `L_rep`.
    #[test]
    fn the_gate_aligns_only_the_samples_the_teacher_predicts_better() {
        let _rng = crate::trainer::torch_rng();
        let (_vs, model, batch, schedule) = gated(AlignGate::TeacherBetter, 0.05);
        let step = model.loss(&batch, 0, &schedule).unwrap();
        // the reference, one sample at a time
        let _guard = tch::no_grad_guard();
        let student = model.predict(&batch).unwrap();
        let teacher = model.predict_with_teacher(&batch).unwrap().unwrap();
        let d = model.distill.as_ref().unwrap();
        let z_init = d
            .student
            .forward(&Model::state(&batch), &model.target_times)
            .unwrap();
        let (z_init, _) = model.sge(d, &z_init, &batch).unwrap();
        let z_dyn = Model::teacher_z(d.teacher.as_ref().unwrap(), &batch).unwrap();
        let (z_dyn, _) = model.sge(d, &z_dyn, &batch).unwrap();
        let n = model.dims.n;
        let err = |x: &Tensor, y: &Tensor, b: i64| {
            (x.narrow(1, b * n, n) - y.narrow(1, b * n, n))
                .square()
                .mean(Kind::Double)
                .double_value(&[])
        };
        let (mut gated, mut rep) = (0usize, 0.0);
        for b in 0..batch.b {
            if err(&teacher, &batch.y, b) < err(&student, &batch.y, b) {
                gated += 1;
                rep += err(&z_init, &z_dyn, b) / batch.b as f64;
            }
        }
        assert!(
            gated > 0 && gated < batch.b as usize,
            "the fixture should mix samples the teacher wins and loses ({gated} of {})",
            batch.b
        );
        let want = gated as f64 / batch.b as f64;
        assert!(
            (step.aligned - want).abs() < 1e-12,
            "{} vs {want}",
            step.aligned
        );
        assert!(
            (step.rep - rep).abs() < 1e-5 * rep,
            "L_rep {} vs {rep}",
            step.rep
        );
    }

    /// `align_gate = "teacher-better-running"` aligns every sample of a step or none, as a slow
    /// reference of the running mean errors says, and the running errors live in the var store
    /// (so checkpoints carry them).
    #[test]
    fn the_running_gate_follows_the_running_mean_errors() {
        let _rng = crate::trainer::torch_rng();
        let (vs, model, batch, schedule) = gated(AlignGate::TeacherBetterRunning, 0.5);
        let names: Vec<String> = vs.variables().into_keys().collect();
        for v in ["teacher_err", "student_err", "seen"] {
            assert!(
                names
                    .iter()
                    .any(|n| n.ends_with(&format!("align_gate.{v}"))),
                "{v} is not in the var store: {names:?}"
            );
        }
        let errors = || {
            let _guard = tch::no_grad_guard();
            let student = model.predict(&batch).unwrap();
            let teacher = model.predict_with_teacher(&batch).unwrap().unwrap();
            let mse = |x: &Tensor| (x - &batch.y).square().mean(Kind::Double).double_value(&[]);
            (mse(&teacher), mse(&student))
        };
        // the reference: the first step sets the running errors, later ones fold in at 0.5;
        // the first three steps spoil the student's decoder (its weights scaled), the last
        // six the teacher's, so the decision flips (once the running errors catch up)
        let (mut t_run, mut s_run) = (0.0, 0.0);
        let mut decisions = Vec::new();
        let decoders: Vec<(bool, Tensor, Tensor)> = vs
            .variables()
            .into_iter()
            .filter(|(n, _)| n.starts_with("decoder") || n.starts_with("teacher_decoder"))
            .map(|(n, t)| (n.starts_with("teacher"), t.copy(), t))
            .collect();
        assert!(decoders.iter().any(|d| d.0) && decoders.iter().any(|d| !d.0));
        for step in 0..9u64 {
            {
                let _guard = tch::no_grad_guard();
                for (is_teacher, keep, t) in &decoders {
                    let spoil = *is_teacher == (step >= 3);
                    t.shallow_clone()
                        .copy_(&if spoil { keep * 3.0 } else { keep.copy() });
                }
            }
            let (t, s) = errors();
            let m = if step == 0 { 1.0 } else { 0.5 };
            t_run = t_run * (1.0 - m) + t * m;
            s_run = s_run * (1.0 - m) + s * m;
            let on = t_run < s_run;
            let got = model.loss(&batch, step, &schedule).unwrap();
            assert_eq!(got.aligned, if on { 1.0 } else { 0.0 }, "step {step}");
            if !on {
                assert_eq!(got.rep, 0.0, "step {step}: a gated-off step aligns nothing");
            } else {
                assert!(got.rep > 0.0, "step {step}");
            }
            decisions.push(on);
        }
        assert!(
            decisions.contains(&true) && decisions.contains(&false),
            "the fixture should switch the gate both ways: {decisions:?}"
        );
    }

    /// `teacher_path = separate`: the teacher trains its own decoder, the student's decoder
    /// learns only from the student's path (so its train and test inputs agree), the step's
    /// reported `pred` is the student's loss, and predictions never run the teacher decoder.
    /// `joint`: one decoder trained on both paths. With `decoder = gf-node` the teacher's own
    /// decoder is a GF-NODE of the same shape as the student's.
    #[test]
    fn teacher_paths_train_the_decoders_they_say() {
        let _rng = crate::trainer::torch_rng();
        let p = tiny_charged(4, 5);
        let idx: Vec<i64> = (0..p.samples).collect();
        let batch = p
            .batch(&idx, Device::Cpu, &mut GraphCache::default())
            .unwrap();
        let schedule = distill_kd::TeacherForcingConfig::paper(0)
            .check(10)
            .unwrap();
        let grad_norm = |vs: &nn::VarStore, prefix: &str| -> f64 {
            vs.variables()
                .iter()
                .filter(|(name, _)| name.starts_with(prefix))
                .map(|(_, v)| {
                    let g = v.grad();
                    if g.defined() {
                        g.square().sum(Kind::Double).double_value(&[])
                    } else {
                        0.0
                    }
                })
                .sum()
        };
        // SGDD-GFNODE with `separate`: the teacher's own decoder is a GF-NODE too
        for (path, decoder) in [
            (TeacherPath::Separate, DecoderKind::Egno),
            (TeacherPath::Joint, DecoderKind::Egno),
            (TeacherPath::Separate, DecoderKind::GfNode),
        ] {
            tch::manual_seed(1);
            let vs = nn::VarStore::new(Device::Cpu);
            let mut mcfg = ModelConfig {
                lambda: 0.0,
                teacher_path: path,
                decoder,
                ..tiny_sgdd()
            };
            // one Euler step per interval keeps it short (graph-nets tests the solvers)
            mcfg.gf_node.ode.solver = graph_nets::ode::Solver::Euler;
            let model = Model::build(
                &vs,
                &mcfg,
                ProblemDims::of(&p),
                &p.undirected,
                p.target_times.clone(),
            )
            .unwrap();
            let has_own = vs
                .variables()
                .keys()
                .any(|k| k.starts_with("teacher_decoder."));
            assert_eq!(has_own, path == TeacherPath::Separate);
            if has_own {
                // the same architecture on both paths: the same parameter names and shapes
                let shapes = |prefix: &str| -> std::collections::BTreeMap<String, Vec<i64>> {
                    vs.variables()
                        .into_iter()
                        .filter_map(|(k, v)| {
                            k.strip_prefix(prefix).map(|s| (s.to_owned(), v.size()))
                        })
                        .collect()
                };
                let own = shapes("teacher_decoder.");
                assert_eq!(own, shapes("decoder."), "{decoder:?}");
                // `ode_h` is GF-NODE's feature ODE, which EGNO does not have
                let is_gf = own.keys().any(|k| k.starts_with("ode_h."));
                assert_eq!(is_gf, decoder == DecoderKind::GfNode, "{own:?}");
            }
            // iteration 0 is teacher-forced under the paper schedule: these paths ignore it
            let step = model.loss(&batch, 0, &schedule).unwrap();
            assert!(!step.teacher_forced);
            let pred = model.predict(&batch).unwrap();
            let student = pred
                .mse_loss(&batch.y, tch::Reduction::Mean)
                .double_value(&[]);
            assert!(
                (step.pred - student).abs() < 1e-6 * student.max(1.0),
                "{path:?} {decoder:?}"
            );
            let oracle = model.predict_with_teacher(&batch).unwrap().unwrap();
            let teacher = oracle
                .mse_loss(&batch.y, tch::Reduction::Mean)
                .double_value(&[]);
            // λ = 0: the total is exactly the two prediction losses
            let total = step.total.double_value(&[]);
            assert!(
                (total - student - teacher).abs() < 1e-5 * total,
                "{path:?} {decoder:?}"
            );
            step.total.backward();
            assert!(
                grad_norm(&vs, "teacher.") > 0.0,
                "{path:?}: the teacher learns"
            );
            assert!(
                grad_norm(&vs, "student.") > 0.0,
                "{path:?}: the student learns"
            );
            if path == TeacherPath::Separate {
                assert!(grad_norm(&vs, "teacher_decoder.") > 0.0);
                // everything the student's prediction uses (its encoder, SGE, the decoder) gets
                // exactly the gradient of the student's path alone: the teacher's path reads
                // SGE detached. Gradients by name (`variables()` is a fresh HashMap).
                let decoder_grads = || -> std::collections::BTreeMap<String, Tensor> {
                    vs.variables()
                        .into_iter()
                        .filter(|(k, _)| {
                            ["decoder.", "sge.", "student."]
                                .iter()
                                .any(|p| k.starts_with(p))
                        })
                        .map(|(k, v)| {
                            let g = v.grad();
                            (
                                k,
                                if g.defined() {
                                    g.copy()
                                } else {
                                    v.zeros_like()
                                },
                            )
                        })
                        .collect()
                };
                let g_both = decoder_grads();
                vs.variables().values_mut().for_each(|v| v.zero_grad());
                let only = model
                    .predict(&batch)
                    .unwrap()
                    .mse_loss(&batch.y, tch::Reduction::Mean);
                only.backward();
                let g_student = decoder_grads();
                assert!(g_both.keys().any(|k| k.starts_with("sge.")));
                assert_eq!(g_both.len(), g_student.len());
                for ((name, a), b) in g_both.iter().zip(g_student.values()) {
                    assert!(a.allclose(b, 1e-5, 1e-7, false), "{name}");
                }
            }
        }
    }
}
