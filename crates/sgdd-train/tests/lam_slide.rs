//! LaM-SLidE through the trainer on a tiny generated N-body dataset: the two stages resume bit
//! for bit at every epoch boundary (across the switch from stage 1 to stage 2), `--stage flow`
//! needs a trained codec (or takes another run's), samples read only the given frames, and a checkpoint restores the
//! model that samples the same futures.
//!
//! The trainer seeds libtorch's global generator when it builds the model: the tests hold
//! [`serial`].

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock};

use sgdd_train::{
    CheckedRunConfig, LamSlideTrainer, LamWindows, RunConfig, RunMode, Stage, StageChoice,
};
use tch::{Device, Tensor};
use traj_data::Split;
use traj_data::nbody::{NBodySpec, System, generate_dataset_dir};

fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn dataset() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("lam-slide-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut spec = NBodySpec::new(System::Charged);
        spec.n_train = 6;
        spec.n_val = 3;
        spec.n_test = 3;
        spec.seed = 3;
        generate_dataset_dir(&spec, &dir, &|_, _| {}).expect("generate");
        dir
    })
}

fn config(codec_epochs: usize, flow_epochs: usize) -> CheckedRunConfig {
    let text = format!(
        "[data]\ndir = {:?}\nstart_frame = 3\ncondition_frames = 4\ndelta_frame = 4\n\
         num_targets = 4\ntargets = \"consecutive\"\n\
         [model]\nkind = \"lam-slide\"\n\
         [model.lam_slide]\ncodec_epochs = {codec_epochs}\ndraws = 2\n\
         [model.lam_slide.codec]\nnum_types = 2\ntype_dim = 4\npos_frequencies = 2\npos_dim = 8\n\
         input_dim = 8\nlatents = 3\nlatent_dim = 4\nquery_dim = 8\nheads_cross = 2\n\
         heads_latent = 1\nhead_dim = 4\n\
         [model.lam_slide.codec.ids]\nsize = 6\ndim = 8\n\
         [model.lam_slide.flow]\nlatent_dim = 4\nhidden = 8\ndepth = 1\nheads = 2\ntime_dim = 8\n\
         [model.lam_slide.sampler]\npoints = 3\n\
         [train]\nepochs = {flow_epochs}\nbatch_size = 4\neval_every = 1\ndevice = \"cpu\"\n\
         threads = 1\nlr_schedule = \"cosine\"\n",
        dataset()
    );
    RunConfig::from_toml(&text, &[]).unwrap()
}

fn out(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("lam-slide-runs-{}", std::process::id()))
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn weights(dir: &Path) -> Vec<(String, Tensor)> {
    let (t, _) = sgdd_train::load_checkpoint(&dir.join("checkpoint.safetensors")).unwrap();
    t.into_iter().collect()
}

#[test]
fn both_stages_resume_bit_for_bit_at_every_epoch_boundary() {
    let _g = serial();
    let cfg = config(2, 2);
    let full = out("full");
    let mut t = LamSlideTrainer::new(cfg.clone(), &full, RunMode::Fresh, None).unwrap();
    t.train(StageChoice::Both).unwrap();
    let want = t.finish().unwrap();
    drop(t);
    assert!(want.test.ade.is_finite() && want.test.draws == 2);
    assert_eq!((want.codec_epochs, want.flow_epochs), (2, 2));

    // one epoch per invocation: codec 1 | codec 2 (then the switch) | flow 1 | flow 2
    let parts = out("parts");
    let mut mode = RunMode::Fresh;
    for _ in 0..4 {
        let mut t = LamSlideTrainer::new(cfg.clone(), &parts, mode, None).unwrap();
        if t.stage() == Stage::Codec && t.stage_done(Stage::Codec) {
            t.train(StageChoice::Codec).unwrap();
        }
        t.epoch().unwrap();
        mode = RunMode::Resume;
    }
    let mut t = LamSlideTrainer::new(cfg.clone(), &parts, RunMode::Resume, None).unwrap();
    assert!(t.stage_done(Stage::Flow));
    let got = t.finish().unwrap();
    drop(t);
    assert_eq!(
        got, want,
        "a resumed run must end where the uninterrupted one does"
    );
    for ((a, x), (b, y)) in weights(&full).iter().zip(weights(&parts).iter()) {
        assert_eq!(a, b);
        assert!(x.equal(y), "{a} differs after resuming");
    }
    let a = std::fs::read_to_string(full.join("result.json")).unwrap();
    let b = std::fs::read_to_string(parts.join("result.json")).unwrap();
    assert_eq!(a, b);
}

#[test]
fn stage_flow_needs_a_trained_codec_and_a_changed_model_is_refused() {
    let _g = serial();
    let dir = out("stages");
    let mut t = LamSlideTrainer::new(config(1, 1), &dir, RunMode::Fresh, None).unwrap();
    let e = t.train(StageChoice::Flow).unwrap_err().to_string();
    assert!(e.contains("--stage codec"), "{e}");
    t.train(StageChoice::Codec).unwrap();
    assert_eq!(t.stage(), Stage::Flow);
    assert!(t.finish().is_err(), "stage 2 has not run");
    drop(t);
    let mut other = (*config(1, 1)).clone();
    other.model.lam_slide.flow.hidden = 16;
    let other = other.check().unwrap();
    let e = LamSlideTrainer::new(other.clone(), &dir, RunMode::Resume, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("model.lam_slide.flow.hidden"), "{e}");
    // a fresh run with another flow model takes the trained codec and starts at stage 2
    let ck = dir.join("checkpoint.safetensors");
    let adopted = out("adopt");
    let mut a = LamSlideTrainer::new(other, &adopted, RunMode::Fresh, None).unwrap();
    a.adopt_codec(&ck).unwrap();
    assert_eq!(a.stage(), Stage::Flow);
    assert!(a.stage_done(Stage::Codec));
    let theirs = weights(&dir);
    for (name, w) in weights(&adopted) {
        if name.starts_with("model.codec") || name.starts_with("model.norm") {
            let (_, v) = theirs.iter().find(|(n, _)| *n == name).unwrap();
            assert!(w.equal(v), "{name} was not taken");
        }
    }
    assert!(a.adopt_codec(&ck).is_err(), "a run adopts a codec once");
    drop(a);
    let mut wider = (*config(1, 1)).clone();
    wider.model.lam_slide.codec.query_dim = 16;
    let mut b = LamSlideTrainer::new(
        wider.check().unwrap(),
        &out("adopt-other"),
        RunMode::Fresh,
        None,
    )
    .unwrap();
    let e = format!("{:#}", b.adopt_codec(&ck).unwrap_err());
    assert!(e.contains("model.lam_slide.codec"), "{e}");
    drop(b);
    let mut t = LamSlideTrainer::new(config(1, 1), &dir, RunMode::Resume, None).unwrap();
    t.train(StageChoice::Flow).unwrap();
    assert!(t.finish().is_ok());
}

#[test]
fn samples_read_only_the_given_frames_and_restore_from_the_checkpoint() {
    let _g = serial();
    let cfg = config(1, 1);
    let dir = out("restore");
    let mut t = LamSlideTrainer::new(cfg.clone(), &dir, RunMode::Fresh, None).unwrap();
    t.train(StageChoice::Both).unwrap();
    t.finish().unwrap();
    let w = LamWindows::load(&cfg, Split::Test).unwrap();
    let idx = [0i64, 2];
    let a = t.model().sample(&w, &idx, 2, 5).unwrap();
    assert_eq!(a.size(), [2, 2, 4, 5, 3]);
    assert!(
        !a.get(0).get(0).equal(&a.get(0).get(1)),
        "two draws, one future"
    );
    let blind = LamWindows::load(&cfg, Split::Test).unwrap();
    let _ = blind.frames.narrow(1, 4, 4).fill_(f64::NAN);
    let b = t.model().sample(&blind, &idx, 2, 5).unwrap();
    assert!(
        a.equal(&b),
        "samples changed when the predicted frames became NaN"
    );
    let (_, restored) =
        sgdd_train::restore_lam_slide(&dir.join("best.safetensors"), Device::Cpu).unwrap();
    assert!(restored.sample(&w, &idx, 2, 5).unwrap().equal(&a));
    let cv = sgdd_train::const_vel_metrics(&w).unwrap();
    assert!(cv.ade > 0.0 && cv.draws == 1);
    // each stage's share: samples vs truth ≤ codec vs truth + samples vs codec, per distance
    let s = t.model().evaluate_stages(&w, 2, 2, 5, true).unwrap();
    assert_eq!(s.model, t.model().evaluate(&w, 2, 2, 5).unwrap());
    let (codec, flow, fill) = (s.codec.unwrap(), s.flow_vs_codec.unwrap(), s.fill.unwrap());
    assert_eq!((codec.draws, flow.draws, fill.draws), (1, 2, 1));
    assert!(fill.ade > 0.0 && fill.ade.is_finite());
    assert!(codec.ade > 0.0 && flow.ade > 0.0);
    assert!(s.model.ade <= codec.ade + flow.ade + 1e-9, "{s:?}");
    assert!(s.model.min_ade <= codec.ade + flow.min_ade + 1e-9, "{s:?}");
}

#[test]
fn flow_epochs_and_flow_lr_override_the_shared_train_settings_without_types() {
    let _g = serial();
    let mut cfg = (*config(1, 1)).clone();
    cfg.model.lam_slide.flow_epochs = Some(2);
    cfg.model.lam_slide.flow_lr = Some(3e-3);
    // without entity types (their vocabulary unused): the best weights still restore
    cfg.model.lam_slide.codec.num_types = 0;
    cfg.train.lr_schedule = sgdd_train::LrSchedule::Constant;
    let cfg = cfg.check().unwrap();
    let dir = out("flow-epochs");
    let mut t = LamSlideTrainer::new(cfg, &dir, RunMode::Fresh, None).unwrap();
    t.train(StageChoice::Both).unwrap();
    let r = t.finish().unwrap();
    assert_eq!((r.codec_epochs, r.flow_epochs), (1, 2));
    let flow: Vec<f64> = t
        .history()
        .iter()
        .filter(|e| e.stage == Stage::Flow)
        .map(|e| e.lr)
        .collect();
    assert_eq!(flow, [3e-3, 3e-3]);
    // stage 2 on sliding windows of the training trajectories: more steps per epoch, the same
    // validation and test windows
    let steps = |t: &LamSlideTrainer| {
        t.history()
            .iter()
            .filter(|e| e.stage == Stage::Flow)
            .map(|e| e.step)
            .next()
            .unwrap()
    };
    let one = steps(&t);
    drop(t);
    let mut cfg = (*config(1, 1)).clone();
    cfg.model.lam_slide.flow_stride = Some(20);
    let mut t =
        LamSlideTrainer::new(cfg.check().unwrap(), &out("stride"), RunMode::Fresh, None).unwrap();
    t.train(StageChoice::Both).unwrap();
    let sliding = t.finish().unwrap();
    assert_eq!(sliding.test.samples, r.test.samples);
    assert!(steps(&t) > one, "{} vs {one} steps", steps(&t));
}
