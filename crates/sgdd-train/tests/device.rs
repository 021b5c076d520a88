//! Where the tensors of training live. The device checks that `sgdd-gpu-check` runs on a GPU
//! run here on the CPU (the same functions, with `Device::Cpu`), and the audit shows that every
//! tensor of a training step — variables, the model's buffers, the batch and its graph, the
//! loss, the prediction, the gradients, Adam's moments — is on the model's device, for every
//! trainable model kind, through the trainer too.
//!
//! The checks seed libtorch's process-global generator: every test holds [`serial`].

use std::sync::{Mutex, MutexGuard};

use sgdd_train::{
    DeviceAudit, GraphCache, Model, RunConfig, RunMode, Trainer, TrainerOptions,
    audit_training_step,
};
use tch::Device;
use traj_data::nbody::{NBodySpec, System, generate_dataset_dir};

fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn device_checks_pass_on_the_cpu() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let checks = sgdd_train::device_checks(Device::Cpu, dir.path());
    let names: Vec<&str> = checks.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        names,
        ["graph-nets", "sge", "sgdd-step", "checkpoint-round-trip"]
    );
    for (name, result) in checks {
        let c = result.unwrap_or_else(|e| panic!("{name}: {e:#}"));
        assert_eq!(c.name, name);
        assert_eq!(c.device, "Cpu");
        // the CPU against itself: the same numbers bit for bit
        assert_eq!(c.max_rel_diff, 0.0, "{name}");
        assert!(c.tensors_checked >= 9, "{name}: {c:?}");
    }
    assert!(dir.path().join("written-on-device.safetensors").exists());
    assert!(dir.path().join("written-on-cpu.safetensors").exists());
}

/// A tiny charged dataset in `dir`.
fn dataset(dir: &std::path::Path) {
    let mut spec = NBodySpec::new(System::Charged);
    spec.n_train = 8;
    spec.n_val = 4;
    spec.n_test = 4;
    spec.seed = 3;
    generate_dataset_dir(&spec, dir, &|_, _| {}).unwrap();
}

fn config(data: &std::path::Path, kind: &str, set: &[&str]) -> sgdd_train::CheckedRunConfig {
    let text = format!(
        "[data]\ndir = {data:?}\n[model]\nkind = \"{kind}\"\nhidden = 8\ndecoder_layers = 1\n\
         z_dim = 4\nteacher_layers = 1\nstudent_layers = 1\nheads = 2\nk = 6\n[train]\nepochs = 1\n\
         batch_size = 4\neval_every = 1\ndevice = \"cpu\"\nthreads = 1\ntensorboard = false\n"
    );
    let set: Vec<String> = set.iter().map(|s| (*s).to_owned()).collect();
    RunConfig::from_toml(&text, &set).unwrap()
}

/// Every trainable model kind and SGDD's variants: one step audited tensor by tensor, then a
/// trainer's epoch and its state.
#[test]
fn every_tensor_of_a_training_step_is_on_the_model_device() {
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    dataset(&data);
    for (kind, set) in [
        ("egno", vec![]),
        ("sgdd", vec![]),
        ("sgdd", vec!["model.align_standardize=true"]),
        ("sgdd", vec!["model.student=\"cv-future\""]),
        ("sgdd", vec!["model.sge=false"]),
        ("no-teacher", vec![]),
        ("gf-node", vec![]),
        ("sgdd", vec!["model.decoder=\"gf-node\""]),
    ] {
        let cfg = config(&data, kind, &set);
        let (_, train) = sgdd_train::load_split(&cfg.data, traj_data::Split::Train, None).unwrap();
        let (vs, model) = sgdd_train::build_model(&cfg, &train, Device::Cpu).unwrap();
        let mut opt = sgdd_train::Adam::new(&vs, cfg.train.adam);
        let batch = train
            .batch(&[0, 1, 2], Device::Cpu, &mut GraphCache::default())
            .unwrap();
        let schedule = Model::schedule(&cfg.model, cfg.train.seed, 4).unwrap();
        let step = audit_training_step(&vs, &model, &mut opt, &batch, 0, &schedule)
            .unwrap_or_else(|e| panic!("{kind} {set:?}: {e:#}"));
        let vars = vs.variables().len();
        // variables twice (before and after the step), the batch (8 tensors + 4 of its graph),
        // the loss, the prediction, a gradient and two moments per parameter, the buffers
        assert!(
            step.tensors_checked >= 2 * vars + 12 + 2 + 3 * step.gradients.len(),
            "{kind} {set:?}: only {} tensors checked ({vars} variables)",
            step.tensors_checked
        );
        assert!(step.loss.is_finite() && step.grad_norm > 0.0);

        let mut t = Trainer::new(
            cfg.clone(),
            &tmp.path().join(format!("run-{kind}")),
            TrainerOptions {
                mode: RunMode::Force,
                ..Default::default()
            },
        )
        .unwrap();
        t.train(None).unwrap();
        let checked = DeviceAudit::new(t.device()).trainer(&t).finish().unwrap();
        assert!(checked >= t.var_store().variables().len());
    }
}

/// Asked for another device, the audit names what it walked: variables, the model's buffers
/// (SGE's basis), the batch and its graph, gradients and Adam's moments — so on a GPU a tensor
/// left on the CPU in any of those places is named.
#[test]
fn the_audit_names_tensors_on_another_device_in_every_place_it_walks() {
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    dataset(&data);
    let cfg = config(&data, "sgdd", &[]);
    let (_, train) = sgdd_train::load_split(&cfg.data, traj_data::Split::Train, None).unwrap();
    let (vs, model) = sgdd_train::build_model(&cfg, &train, Device::Cpu).unwrap();
    let mut opt = sgdd_train::Adam::new(&vs, cfg.train.adam);
    let batch = train
        .batch(&[0, 1], Device::Cpu, &mut GraphCache::default())
        .unwrap();
    let schedule = Model::schedule(&cfg.model, cfg.train.seed, 4).unwrap();
    audit_training_step(&vs, &model, &mut opt, &batch, 0, &schedule).unwrap();

    let mut audit = DeviceAudit::new(Device::Cuda(0));
    audit
        .var_store(&vs)
        .model(&model)
        .batch(&batch)
        .optimizer(&opt);
    let names: Vec<&str> = audit.misplaced().iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names.len(), audit.checked());
    for wanted in [
        "var.decoder.",
        "var.teacher.",
        "var.student.",
        "var.sge.w",
        "model.sge_basis.u_t",
        "model.sge_basis.flat_index",
        "batch.x0",
        "batch.edge_attr",
        "batch.graph.receivers",
        "adam.m.decoder.",
        "adam.v.sge.w",
    ] {
        assert!(
            names.iter().any(|n| n.starts_with(wanted)),
            "no misplaced tensor named {wanted}…: {names:?}"
        );
    }
    let err = audit.finish().unwrap_err().to_string();
    assert!(err.contains("are not on Cuda(0)"), "{err}");
}
