//! Where the tensors of training live, and checks that the whole training path runs on a device.
//!
//! A model asked to train on a GPU can silently leave part of its work on the CPU: a tensor
//! created without the device, a buffer never moved, a batch assembled on the host. libtorch
//! stops an operation that mixes devices, but not a model that is *entirely* elsewhere, nor a
//! buffer that is only ever read on its own. [`DeviceAudit`] walks what a training step holds and
//! produces — the variables, the model's buffers ([`Model::buffers`]), the batch and its graph,
//! the loss, the prediction, every gradient and Adam's moments — and names each tensor that is
//! not on the expected device. [`audit_training_step`] runs one step and audits it.
//!
//! The device checks ([`check_graph_nets`], [`check_sge`], [`check_sgdd_step`],
//! [`check_checkpoint_round_trip`], all run by [`device_checks`]) take the device as a
//! parameter: the test suite runs them on the CPU, and `sgdd-gpu-check` on `cuda:0`, where each
//! also compares its numbers with the same computation on the CPU from the same weights and
//! inputs. A GPU sums in another order than the CPU, so float32 results agree to a relative
//! [`FORWARD_TOLERANCE`] (forward values, losses) and [`GRADIENT_TOLERANCE`] (gradients), each
//! measured as `max |a − b| / max |b|` over a tensor ([`max_rel_diff`]).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use distill_kd::TeacherForcingSchedule;
use graph_nets::{
    EgnoConfig, GraphBatch, InitEncoderConfig, InitialState, StsgnnConfig, Trajectory,
};
use serde::Serialize;
use tch::{Device, Kind, Tensor, nn::VarStore};
use traj_data::Split;
use traj_data::nbody::{NBodySpec, System};

use crate::checkpoint::{self, CheckpointMeta};
use crate::config::{CheckedRunConfig, RunConfig};
use crate::data::{Batch, GraphCache, Prepared};
use crate::model::Model;
use crate::optim::Adam;
use crate::sge::{Sge, joint_basis};
use crate::trainer::{Trainer, build_model};

/// Largest relative difference [`max_rel_diff`] accepted between a forward value (a
/// prediction, a representation, a loss) computed on a GPU and on the CPU from the same float32
/// weights and inputs.
pub const FORWARD_TOLERANCE: f64 = 1e-4;
/// The same for gradients, which sum over more terms in a device-dependent order.
pub const GRADIENT_TOLERANCE: f64 = 1e-3;

/// A tensor found on another device than the one expected.
#[derive(Debug, Clone, PartialEq)]
pub struct Misplaced {
    /// What the tensor is (`var.decoder.embed.weight`, `batch.x0`, `grad.sge.w`, …).
    pub name: String,
    /// Where it is.
    pub device: Device,
}

/// Collects the tensors of a computation and the ones that are not on the expected device.
///
/// ```
/// use sgdd_train::DeviceAudit;
/// use tch::{Device, Kind, Tensor};
/// let mut audit = DeviceAudit::new(Device::Cpu);
/// audit.tensor("x", &Tensor::zeros([2], (Kind::Float, Device::Cpu)));
/// assert_eq!(audit.finish().unwrap(), 1);
/// ```
#[derive(Debug, Clone)]
pub struct DeviceAudit {
    expected: Device,
    checked: usize,
    misplaced: Vec<Misplaced>,
}

impl DeviceAudit {
    /// An empty audit expecting every tensor on `expected`.
    pub fn new(expected: Device) -> Self {
        Self {
            expected,
            checked: 0,
            misplaced: Vec::new(),
        }
    }

    /// The device every tensor should be on.
    pub fn expected(&self) -> Device {
        self.expected
    }

    /// Checks one tensor (an undefined tensor, e.g. a missing gradient, is skipped).
    pub fn tensor(&mut self, name: &str, t: &Tensor) -> &mut Self {
        if t.defined() {
            self.checked += 1;
            let device = t.device();
            if device != self.expected {
                self.misplaced.push(Misplaced {
                    name: name.to_owned(),
                    device,
                });
            }
        }
        self
    }

    /// Checks named tensors, each name prefixed with `prefix`.
    pub fn named<S: AsRef<str>>(
        &mut self,
        prefix: &str,
        tensors: impl IntoIterator<Item = (S, Tensor)>,
    ) -> &mut Self {
        for (name, t) in tensors {
            self.tensor(&format!("{prefix}{}", name.as_ref()), &t);
        }
        self
    }

    /// Every variable of a store (`var.<name>`), trainable or not.
    pub fn var_store(&mut self, vs: &VarStore) -> &mut Self {
        let vars: BTreeMap<String, Tensor> = vs.variables().into_iter().collect();
        self.named("var.", vars)
    }

    /// The tensors a model holds beside its variables (`model.<name>`, [`Model::buffers`]).
    pub fn model(&mut self, model: &Model) -> &mut Self {
        self.named("model.", model.buffers())
    }

    /// Every tensor of a batch, its graph's index tensors included (`batch.<field>`).
    pub fn batch(&mut self, b: &Batch) -> &mut Self {
        for (name, t) in [
            ("x0", &b.x0),
            ("v0", &b.v0),
            ("h", &b.h),
            ("y", &b.y),
            ("vy", &b.vy),
            ("edge_attr", &b.edge_attr),
            ("center", &b.center),
            ("scale", &b.scale),
        ] {
            self.tensor(&format!("batch.{name}"), t);
        }
        self.graph("batch.graph.", &b.graph)
    }

    /// The index tensors of a batched graph (`<prefix>receivers`, …).
    pub fn graph(&mut self, prefix: &str, g: &GraphBatch) -> &mut Self {
        for (name, t) in [
            ("receivers", g.receivers()),
            ("senders", g.senders()),
            ("node_graph", g.node_graph()),
            ("in_degree", g.in_degree()),
        ] {
            self.tensor(&format!("{prefix}{name}"), t);
        }
        self
    }

    /// Adam's moment estimates (`adam.m.<param>`, `adam.v.<param>`). Its per-parameter step
    /// counters are host integers by design and are not audited.
    pub fn optimizer(&mut self, opt: &Adam) -> &mut Self {
        let (state, _) = opt.state();
        self.named(
            "",
            state
                .into_iter()
                .filter(|(k, _)| k.starts_with("adam.m.") || k.starts_with("adam.v.")),
        )
    }

    /// A trainer's variables, model buffers and optimiser state.
    pub fn trainer(&mut self, t: &Trainer) -> &mut Self {
        self.var_store(t.var_store()).model(t.model());
        if let Some(opt) = t.optimizer() {
            self.optimizer(opt);
        }
        self
    }

    /// Tensors checked so far.
    pub fn checked(&self) -> usize {
        self.checked
    }

    /// The tensors found elsewhere than [`DeviceAudit::expected`].
    pub fn misplaced(&self) -> &[Misplaced] {
        &self.misplaced
    }

    /// The number of tensors checked, or an error naming every misplaced tensor.
    pub fn finish(&self) -> Result<usize> {
        if self.misplaced.is_empty() {
            return Ok(self.checked);
        }
        let names: Vec<String> = self
            .misplaced
            .iter()
            .map(|m| format!("{} ({:?})", m.name, m.device))
            .collect();
        bail!(
            "{} of {} tensors are not on {:?}: {}",
            self.misplaced.len(),
            self.checked,
            self.expected,
            names.join(", ")
        )
    }
}

/// What [`audit_training_step`] saw.
#[derive(Debug)]
pub struct StepAudit {
    /// The step's loss `L_pred + λ L_align`.
    pub loss: f64,
    /// Its `L_pred`.
    pub pred: f64,
    /// The global gradient norm.
    pub grad_norm: f64,
    /// The gradient of each parameter that had one, by variable name (before the step).
    pub gradients: BTreeMap<String, Tensor>,
    /// How many tensors were found on the expected device.
    pub tensors_checked: usize,
}

/// Runs one training step of `model` (its variables in `vs`, optimised by `opt`) on `batch`
/// at `iteration`, as [`Trainer::epoch`] does — loss, gradients, Adam step — and checks that
/// every tensor of it is on `vs`'s device: the variables and buffers before and after, the
/// batch, the loss, the prediction, each gradient and Adam's moments.
///
/// # Errors
/// A failing step, a non-finite loss, or tensors on another device (all of them named).
pub fn audit_training_step(
    vs: &VarStore,
    model: &Model,
    opt: &mut Adam,
    batch: &Batch,
    iteration: u64,
    schedule: &TeacherForcingSchedule,
) -> Result<StepAudit> {
    let mut audit = DeviceAudit::new(vs.device());
    audit.var_store(vs).model(model).batch(batch);
    let loss = model.loss(batch, iteration, schedule)?;
    audit.tensor("loss.total", &loss.total);
    let value = loss.total.double_value(&[]);
    ensure!(value.is_finite(), "the loss is {value}");
    let pred = tch::no_grad(|| model.predict(batch))?;
    audit.tensor("prediction", &pred);
    let grads = opt.gradients(&loss.total)?;
    let (state, _) = opt.state();
    let names: Vec<String> = state
        .into_iter()
        .filter_map(|(k, _)| k.strip_prefix("adam.m.").map(str::to_owned))
        .collect();
    ensure!(
        names.len() == grads.len(),
        "the optimiser names {} parameters but gave {} gradients",
        names.len(),
        grads.len()
    );
    let gradients: BTreeMap<String, Tensor> = names
        .into_iter()
        .zip(&grads)
        .filter_map(|(n, g)| g.as_ref().map(|g| (n, g.shallow_clone())))
        .collect();
    audit.named(
        "grad.",
        gradients.iter().map(|(k, g)| (k, g.shallow_clone())),
    );
    let grad_norm = Adam::grad_norm(&grads);
    ensure!(grad_norm.is_finite(), "the gradient norm is {grad_norm}");
    opt.step_with(grads);
    audit.var_store(vs).optimizer(opt);
    let tensors_checked = audit.finish()?;
    Ok(StepAudit {
        loss: value,
        pred: loss.pred,
        grad_norm,
        gradients,
        tensors_checked,
    })
}

/// `max |a − b| / max |b|` (the largest difference relative to `b`'s scale; `max |a − b|` when
/// `b` is all zeros), computed in f64 on the CPU whatever the tensors' devices.
///
/// # Errors
/// When the shapes differ.
pub fn max_rel_diff(a: &Tensor, b: &Tensor) -> Result<f64> {
    ensure!(
        a.size() == b.size(),
        "cannot compare shapes {:?} and {:?}",
        a.size(),
        b.size()
    );
    if a.numel() == 0 {
        return Ok(0.0);
    }
    let host = |t: &Tensor| t.detach().to_device(Device::Cpu).to_kind(Kind::Double);
    let (a, b) = (host(a), host(b));
    let diff = (&a - &b).abs().max().double_value(&[]);
    let scale = b.abs().max().double_value(&[]);
    Ok(if scale > 0.0 { diff / scale } else { diff })
}

/// The outcome of one device check.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceCheck {
    /// The check (`graph-nets`, `sge`, `sgdd-step`, `checkpoint-round-trip`).
    pub name: String,
    /// The device it ran on (`Cpu`, `Cuda(0)`).
    pub device: String,
    /// Largest relative difference from the CPU computation over everything compared (0 on
    /// the CPU itself).
    pub max_rel_diff: f64,
    /// The tolerance that difference had to meet.
    pub tolerance: f64,
    /// Tensors found on the device by the audits of the check.
    pub tensors_checked: usize,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// What was compared.
    pub detail: String,
}

/// Largest relative differences seen by a check, each against its tolerance.
#[derive(Debug, Default)]
struct Comparisons {
    worst: f64,
    tolerance: f64,
    failures: Vec<String>,
}

impl Comparisons {
    fn compare(&mut self, what: &str, got: &Tensor, want: &Tensor, tol: f64) -> Result<()> {
        let d = max_rel_diff(got, want).with_context(|| format!("comparing {what}"))?;
        if !d.is_finite() || d > tol {
            self.failures
                .push(format!("{what}: relative difference {d:.3e} > {tol:.0e}"));
        }
        if d > self.worst || d.is_nan() {
            self.worst = d;
        }
        self.tolerance = self.tolerance.max(tol);
        Ok(())
    }

    fn finish(self, check: &str, device: Device) -> Result<(f64, f64)> {
        ensure!(
            self.failures.is_empty(),
            "{check} on {device:?} differs from the CPU: {}",
            self.failures.join("; ")
        );
        Ok((self.worst, self.tolerance))
    }
}

fn gradients_by_name(vs: &VarStore) -> BTreeMap<String, Tensor> {
    vs.variables()
        .into_iter()
        .filter_map(|(k, v)| {
            let g = v.grad();
            g.defined().then_some((k, g))
        })
        .collect()
}

/// The graph networks of SGDD — the EGNO decoder (conditioned, with edge attributes), the
/// STSGNN teacher and the GAT student encoder — forward and backward on `device`, from
/// weights drawn on the CPU: outputs and every gradient on the device and equal to the CPU's
/// within the tolerances.
///
/// # Errors
/// A failing layer, a misplaced tensor, or a difference beyond tolerance.
pub fn check_graph_nets(device: Device) -> Result<DeviceCheck> {
    let started = Instant::now();
    let (t, hidden, d) = (4, 8, 6);
    let egno = EgnoConfig {
        node_in: 1,
        edge_dim: 1,
        hidden,
        layers: 2,
        horizon: t,
        num_modes: 2,
        cond_dim: d,
        ..Default::default()
    };
    let teacher = StsgnnConfig {
        node_in: 1,
        edge_dim: 1,
        hidden,
        layers: 1,
        out_dim: d,
        horizon: t,
        ..Default::default()
    };
    let student = InitEncoderConfig {
        node_in: 1,
        edge_dim: 1,
        hidden,
        heads: 2,
        layers: 1,
        out_dim: d,
        horizon: t,
        direction_invariants: true,
        ..Default::default()
    };
    let build = |vs: &VarStore| -> Result<_> {
        let root = vs.root();
        Ok((
            egno.build(&root / "decoder")?,
            teacher.build(&root / "teacher")?,
            student.build(&root / "student")?,
        ))
    };
    tch::manual_seed(11);
    let cpu_vs = VarStore::new(Device::Cpu);
    let cpu_nets = build(&cpu_vs)?;
    let mut dev_vs = VarStore::new(device);
    let dev_nets = build(&dev_vs)?;
    dev_vs.copy(&cpu_vs)?;

    let graph = GraphBatch::batch(&[
        GraphBatch::complete(&[5], Device::Cpu)?,
        GraphBatch::from_undirected(4, &[(0, 1), (1, 2), (2, 3)], Device::Cpu)?,
    ])?;
    let (n, e) = (graph.num_nodes(), graph.num_edges());
    let opts = (Kind::Float, Device::Cpu);
    let inputs = [
        Tensor::randn([n, 3], opts),
        Tensor::randn([n, 3], opts),
        Tensor::ones([n, 1], opts),
        Tensor::randn([e, 1], opts),
        Tensor::randn([t + 1, n, 3], opts),
        Tensor::randn([t + 1, n, 3], opts),
    ];
    let run = |vs: &VarStore,
               nets: &(
        graph_nets::Egno,
        graph_nets::Stsgnn,
        graph_nets::InitEncoder,
    )|
     -> Result<_> {
        let dev = vs.device();
        let [x, v, h, ea, tx, tv] = inputs.each_ref().map(|t| t.to_device(dev));
        let g = graph.to_device(dev);
        let state = InitialState {
            x: &x,
            v: Some(&v),
            h: &h,
            graph: &g,
            edge_attr: Some(&ea),
        };
        let z_dyn = nets.1.f_forward(&Trajectory {
            x: &tx,
            v: Some(&tv),
            h: &h,
            graph: &g,
            edge_attr: Some(&ea),
        })?;
        let z_init = nets.2.f_forward(&state)?;
        let out = nets.0.f_forward(&state, Some(&(&z_dyn + &z_init)))?.x;
        let loss = out.square().mean(Kind::Float) + (&z_init - &z_dyn).square().mean(Kind::Float);
        loss.backward();
        let mut audit = DeviceAudit::new(dev);
        audit
            .var_store(vs)
            .graph("graph.", &g)
            .named(
                "",
                [
                    ("z_dyn", z_dyn.shallow_clone()),
                    ("z_init", z_init.shallow_clone()),
                    ("x", out.shallow_clone()),
                    ("loss", loss.shallow_clone()),
                ],
            )
            .named("grad.", gradients_by_name(vs));
        let checked = audit.finish()?;
        Ok((z_dyn, z_init, out, loss, gradients_by_name(vs), checked))
    };
    let want = run(&cpu_vs, &cpu_nets)?;
    let got = run(&dev_vs, &dev_nets)?;
    let mut cmp = Comparisons::default();
    cmp.compare("teacher z_dyn", &got.0, &want.0, FORWARD_TOLERANCE)?;
    cmp.compare("student z_init", &got.1, &want.1, FORWARD_TOLERANCE)?;
    cmp.compare("decoder x", &got.2, &want.2, FORWARD_TOLERANCE)?;
    cmp.compare("loss", &got.3, &want.3, FORWARD_TOLERANCE)?;
    ensure!(
        got.4.len() == want.4.len() && got.4.keys().eq(want.4.keys()),
        "graph-nets on {device:?}: gradients for {:?}, on the CPU for {:?}",
        got.4.keys().collect::<Vec<_>>(),
        want.4.keys().collect::<Vec<_>>()
    );
    for (name, g) in &got.4 {
        cmp.compare(
            &format!("grad {name}"),
            g,
            &want.4[name],
            GRADIENT_TOLERANCE,
        )?;
    }
    let grads = got.4.len();
    let (worst, tolerance) = cmp.finish("graph-nets", device)?;
    Ok(DeviceCheck {
        name: "graph-nets".into(),
        device: format!("{device:?}"),
        max_rel_diff: worst,
        tolerance,
        tensors_checked: got.5,
        seconds: started.elapsed().as_secs_f64(),
        detail: format!(
            "EGNO decoder, STSGNN teacher, GAT student over two graphs ({n} nodes, {e} edges): \
             4 outputs and {grads} gradients compared with the CPU"
        ),
    })
}

/// The SGE layer (SPEC §4.3) on `device`: the identity at `w = 1`, and `z^sg`, `ã` and the
/// gradients of `w` and `z` at other weights equal to the CPU's within the tolerances.
///
/// # Errors
/// A failing layer, a misplaced tensor, or a difference beyond tolerance.
pub fn check_sge(device: Device) -> Result<DeviceCheck> {
    let started = Instant::now();
    let (n, t, k, d) = (6usize, 4usize, 8usize, 3i64);
    let ring: Vec<(usize, usize)> = (0..n).map(|i| (i, (i + 1) % n)).chain([(0, 3)]).collect();
    tch::manual_seed(12);
    let z = Tensor::randn([2, t as i64, n as i64, d], (Kind::Float, Device::Cpu));
    let w = Tensor::rand([k as i64], (Kind::Float, Device::Cpu)) + 0.5;
    let run = |dev: Device| -> Result<_> {
        let (_, basis) = joint_basis(n, &ring, t, k, Kind::Float, dev)?;
        let vs = VarStore::new(dev);
        let sge = Sge::new(&(vs.root() / "sge"), basis.k());
        let z = z.to_device(dev).set_requires_grad(true);
        let (identity, _) = sge.forward(&basis, &z)?;
        let identity_diff = max_rel_diff(&identity, &z)?;
        ensure!(
            identity_diff <= FORWARD_TOLERANCE,
            "SGE on {dev:?} is not the identity at w = 1 (relative difference {identity_diff:.3e})"
        );
        tch::no_grad(|| sge.w.shallow_clone().copy_(&w));
        let (z_sg, a) = sge.forward(&basis, &z)?;
        let loss = z_sg.square().sum(Kind::Float) + a.square().sum(Kind::Float);
        loss.backward();
        let (gw, gz) = (sge.w.grad(), z.grad());
        let mut audit = DeviceAudit::new(dev);
        audit
            .var_store(&vs)
            .named(
                "basis.",
                basis.tensors().map(|(name, t)| (name, t.shallow_clone())),
            )
            .named(
                "",
                [
                    ("z_sg", z_sg.shallow_clone()),
                    ("a", a.shallow_clone()),
                    ("grad.w", gw.shallow_clone()),
                    ("grad.z", gz.shallow_clone()),
                ],
            );
        let checked = audit.finish()?;
        ensure!(
            gw.defined() && gz.defined(),
            "SGE on {dev:?}: no gradient for w or z"
        );
        Ok((z_sg, a, gw, gz, checked))
    };
    let want = run(Device::Cpu)?;
    let got = run(device)?;
    let mut cmp = Comparisons::default();
    cmp.compare("z^sg", &got.0, &want.0, FORWARD_TOLERANCE)?;
    cmp.compare("ã", &got.1, &want.1, FORWARD_TOLERANCE)?;
    cmp.compare("grad w", &got.2, &want.2, GRADIENT_TOLERANCE)?;
    cmp.compare("grad z", &got.3, &want.3, GRADIENT_TOLERANCE)?;
    let (worst, tolerance) = cmp.finish("SGE", device)?;
    Ok(DeviceCheck {
        name: "sge".into(),
        device: format!("{device:?}"),
        max_rel_diff: worst,
        tolerance,
        tensors_checked: got.4,
        seconds: started.elapsed().as_secs_f64(),
        detail: format!(
            "joint basis of a {n}-node ring with a chord over {t} frames, K = {k}: identity at \
             w = 1; z^sg, ã and the gradients of w and z compared with the CPU"
        ),
    })
}

/// A small SGDD config for the checks (standardised alignment on, so the running statistics
/// are updated on the device too), over an in-memory dataset.
fn tiny_config(seed: u64) -> Result<CheckedRunConfig> {
    let text = format!(
        "[data]\ndir = \"(in memory)\"\n[model]\nkind = \"sgdd\"\nhidden = 8\ndecoder_layers = 1\n\
         z_dim = 4\nteacher_layers = 1\nstudent_layers = 1\nheads = 2\nk = 6\n\
         align_standardize = true\n[train]\nepochs = 1\nbatch_size = 4\nseed = {seed}\n\
         device = \"cpu\"\ntensorboard = false\n"
    );
    RunConfig::from_toml(&text, &[])
}

/// Four charged-particle windows, simulated in memory.
fn tiny_data(cfg: &RunConfig) -> Result<Prepared> {
    let mut spec = NBodySpec::new(System::Charged);
    spec.n_train = 4;
    spec.n_val = 1;
    spec.n_test = 1;
    spec.seed = 5;
    let ds = spec.generate_split(Split::Train)?;
    crate::data::prepare(&ds, &cfg.data)
}

/// One SGDD-EGNO training step (teacher, student, SGE with standardised alignment, decoder,
/// Adam) on `device` from the CPU's initial weights ([`build_model`]): every tensor of the step
/// on the device ([`audit_training_step`]), and the prediction, the loss and every gradient
/// equal to the CPU's within the tolerances.
///
/// # Errors
/// A failing step, a misplaced tensor, or a difference beyond tolerance.
pub fn check_sgdd_step(device: Device) -> Result<DeviceCheck> {
    let started = Instant::now();
    let cfg = tiny_config(0)?;
    let p = tiny_data(&cfg)?;
    let idx: Vec<i64> = (0..p.samples).collect();
    let schedule = Model::schedule(&cfg.model, cfg.train.seed, 4)?;
    let run = |dev: Device| -> Result<_> {
        let (vs, model) = build_model(&cfg, &p, dev)?;
        let mut opt = Adam::new(&vs, cfg.train.adam);
        let batch = p.batch(&idx, dev, &mut GraphCache::default())?;
        let pred = tch::no_grad(|| model.predict(&batch))?;
        let step = audit_training_step(&vs, &model, &mut opt, &batch, 0, &schedule)?;
        Ok((pred, step))
    };
    let (want_pred, want) = run(Device::Cpu)?;
    let (got_pred, got) = run(device)?;
    let mut cmp = Comparisons::default();
    cmp.compare("prediction", &got_pred, &want_pred, FORWARD_TOLERANCE)?;
    cmp.compare(
        "loss",
        &Tensor::from(got.loss),
        &Tensor::from(want.loss),
        FORWARD_TOLERANCE,
    )?;
    ensure!(
        got.gradients.keys().eq(want.gradients.keys()),
        "the SGDD step on {device:?} has gradients for {:?}, on the CPU for {:?}",
        got.gradients.keys().collect::<Vec<_>>(),
        want.gradients.keys().collect::<Vec<_>>()
    );
    for (name, g) in &got.gradients {
        cmp.compare(
            &format!("grad {name}"),
            g,
            &want.gradients[name],
            GRADIENT_TOLERANCE,
        )?;
    }
    let (worst, tolerance) = cmp.finish("the SGDD step", device)?;
    Ok(DeviceCheck {
        name: "sgdd-step".into(),
        device: format!("{device:?}"),
        max_rel_diff: worst,
        tolerance,
        tensors_checked: got.tensors_checked,
        seconds: started.elapsed().as_secs_f64(),
        detail: format!(
            "SGDD-EGNO, {} charged-particle windows: every tensor of the step on the device; \
             the prediction, the loss ({:.6} here, {:.6} on the CPU) and {} gradients compared \
             with the CPU",
            p.samples,
            got.loss,
            want.loss,
            got.gradients.len()
        ),
    })
}

/// Every variable and optimiser tensor of `a` bit for bit equal to `b`'s (compared on the CPU).
fn same_state(what: &str, a: (&VarStore, &Adam), b: (&VarStore, &Adam)) -> Result<usize> {
    let named = |(vs, opt): (&VarStore, &Adam)| -> BTreeMap<String, Tensor> {
        let mut m: BTreeMap<String, Tensor> = vs
            .variables()
            .into_iter()
            .map(|(k, t)| (format!("model.{k}"), t))
            .collect();
        m.extend(opt.state().0);
        m
    };
    let (a, b) = (named(a), named(b));
    ensure!(
        a.keys().eq(b.keys()),
        "{what}: the two states hold different tensors"
    );
    let differ: Vec<&String> = a
        .iter()
        .filter(|(k, t)| {
            let other = &b[*k];
            t.kind() != other.kind()
                || !t
                    .detach()
                    .to_device(Device::Cpu)
                    .equal(&other.detach().to_device(Device::Cpu))
        })
        .map(|(k, _)| k)
        .collect();
    ensure!(
        differ.is_empty(),
        "{what}: {} tensors differ: {differ:?}",
        differ.len()
    );
    Ok(a.len())
}

/// Checkpoints across devices: a model trained one step on `device` is saved (weights, Adam
/// state, standardisation statistics), read on the CPU into a model with other initial weights
/// — bit for bit the same state, predictions equal within the tolerance — saved there (the
/// same tensor checksum), and read back on `device` into a third model, where everything is
/// again bit for bit the same, on the device, and trains on. Files go to `dir`.
///
/// # Errors
/// A failing save or restore, a changed tensor, a misplaced tensor, or a difference beyond
/// tolerance.
pub fn check_checkpoint_round_trip(device: Device, dir: &Path) -> Result<DeviceCheck> {
    let started = Instant::now();
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let cfg = tiny_config(0)?;
    let p = tiny_data(&cfg)?;
    let idx: Vec<i64> = (0..p.samples).collect();
    let schedule = Model::schedule(&cfg.model, cfg.train.seed, 4)?;
    let fresh = |seed: u64, dev: Device| -> Result<_> {
        let seeded = tiny_config(seed)?;
        let (vs, model) = build_model(&seeded, &p, dev)?;
        let opt = Adam::new(&vs, cfg.train.adam);
        Ok((vs, model, opt))
    };

    let (vs_dev, model_dev, mut opt_dev) = fresh(0, device)?;
    let batch_dev = p.batch(&idx, device, &mut GraphCache::default())?;
    let first = audit_training_step(&vs_dev, &model_dev, &mut opt_dev, &batch_dev, 0, &schedule)?;
    let meta = CheckpointMeta::new(opt_dev.steps(), cfg.to_toml(), serde_json::Value::Null);
    let from_device = dir.join("written-on-device.safetensors");
    checkpoint::save(&from_device, &vs_dev, Some(&opt_dev), &meta)?;

    let (mut vs_cpu, model_cpu, mut opt_cpu) = fresh(1, Device::Cpu)?;
    checkpoint::restore(&from_device, &mut vs_cpu, Some(&mut opt_cpu))?;
    let compared = same_state("device → CPU", (&vs_cpu, &opt_cpu), (&vs_dev, &opt_dev))?;
    let from_cpu = dir.join("written-on-cpu.safetensors");
    checkpoint::save(&from_cpu, &vs_cpu, Some(&opt_cpu), &meta)?;
    let (_, meta_dev) = checkpoint::load(&from_device)?;
    let (_, meta_cpu) = checkpoint::load(&from_cpu)?;
    ensure!(
        meta_dev.tensors_sha256 == meta_cpu.tensors_sha256,
        "the checkpoint written on the CPU after reading the device's has another tensor \
         checksum ({} vs {})",
        meta_cpu.tensors_sha256,
        meta_dev.tensors_sha256
    );

    let (mut vs_back, model_back, mut opt_back) = fresh(2, device)?;
    checkpoint::restore(&from_cpu, &mut vs_back, Some(&mut opt_back))?;
    same_state("CPU → device", (&vs_back, &opt_back), (&vs_dev, &opt_dev))?;
    let mut audit = DeviceAudit::new(device);
    audit
        .var_store(&vs_back)
        .model(&model_back)
        .optimizer(&opt_back);
    let restored_checked = audit.finish()?;

    let batch_cpu = p.batch(&idx, Device::Cpu, &mut GraphCache::default())?;
    let mut cmp = Comparisons::default();
    let pred_dev = tch::no_grad(|| model_back.predict(&batch_dev))?;
    let pred_cpu = tch::no_grad(|| model_cpu.predict(&batch_cpu))?;
    cmp.compare(
        "prediction of the restored weights",
        &pred_dev,
        &pred_cpu,
        FORWARD_TOLERANCE,
    )?;
    let next = audit_training_step(
        &vs_back,
        &model_back,
        &mut opt_back,
        &batch_dev,
        1,
        &schedule,
    )?;
    let (worst, tolerance) = cmp.finish("the restored model", device)?;
    Ok(DeviceCheck {
        name: "checkpoint-round-trip".into(),
        device: format!("{device:?}"),
        max_rel_diff: worst,
        tolerance,
        tensors_checked: first.tensors_checked + restored_checked + next.tensors_checked,
        seconds: started.elapsed().as_secs_f64(),
        detail: format!(
            "SGDD-EGNO after one step on the device: {compared} tensors (weights, Adam state, \
             running statistics) written on the device, read on the CPU and written again (same \
             checksum), read back on the device: bit for bit equal each way; the restored model \
             trains on (loss {:.6})",
            next.loss
        ),
    })
}

/// Runs every device check on `device` (checkpoints under `dir`), each to its own result, so
/// one failure does not hide the others.
pub fn device_checks(device: Device, dir: &Path) -> Vec<(&'static str, Result<DeviceCheck>)> {
    vec![
        ("graph-nets", check_graph_nets(device)),
        ("sge", check_sge(device)),
        ("sgdd-step", check_sgdd_step(device)),
        (
            "checkpoint-round-trip",
            check_checkpoint_round_trip(device, dir),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rel_diff_is_relative_to_the_reference() {
        let _rng = crate::trainer::torch_rng();
        let b = Tensor::from_slice(&[2.0f32, -4.0]);
        let a = Tensor::from_slice(&[2.0f32, -3.0]);
        assert!((max_rel_diff(&a, &b).unwrap() - 0.25).abs() < 1e-12);
        assert_eq!(max_rel_diff(&b, &b).unwrap(), 0.0);
        let zeros = Tensor::zeros([2], (Kind::Float, Device::Cpu));
        assert!((max_rel_diff(&a, &zeros).unwrap() - 3.0).abs() < 1e-12);
        assert!(max_rel_diff(&a, &Tensor::zeros([3], (Kind::Float, Device::Cpu))).is_err());
    }

    #[test]
    fn an_audit_names_every_misplaced_tensor() {
        let _rng = crate::trainer::torch_rng();
        let cpu = Tensor::zeros([2], (Kind::Float, Device::Cpu));
        let mut audit = DeviceAudit::new(Device::Cuda(0));
        audit
            .tensor("a", &cpu)
            .tensor("missing grad", &Tensor::new())
            .named("p.", [("b", cpu.shallow_clone())]);
        assert_eq!(audit.checked(), 2);
        assert_eq!(
            audit.misplaced(),
            [
                Misplaced {
                    name: "a".into(),
                    device: Device::Cpu
                },
                Misplaced {
                    name: "p.b".into(),
                    device: Device::Cpu
                }
            ]
        );
        let err = audit.finish().unwrap_err().to_string();
        assert!(
            err.contains("2 of 2 tensors are not on Cuda(0)") && err.contains("p.b (Cpu)"),
            "{err}"
        );
    }
}
