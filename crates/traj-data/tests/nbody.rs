//! Generated N-body dataset directories: determinism, manifest, loading, and the EGNO / GeoTDM
//! windows on top.

use std::fs;
use std::path::Path;
use std::sync::Mutex;

use traj_data::nbody::{NBodySpec, System, generate_dataset_dir};
use traj_data::{
    MANIFEST_FILE, Manifest, NormalizationSpec, Split, WindowSpec, load_split, read_dataset,
    write_dataset,
};

fn small(system: System, seed: u64) -> NBodySpec {
    NBodySpec {
        n_train: 3,
        n_val: 2,
        n_test: 1,
        seed,
        steps: 600,
        sample_every: 50,
        ..NBodySpec::new(system)
    }
}

fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().into_string().unwrap(),
                fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn same_seed_same_bytes_different_seed_different_data() {
    let root = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        root.path().join("a"),
        root.path().join("b"),
        root.path().join("c"),
    );
    for system in System::ALL {
        generate_dataset_dir(&small(system, 7), &a, &|_, _| {}).unwrap();
        generate_dataset_dir(&small(system, 7), &b, &|_, _| {}).unwrap();
        generate_dataset_dir(&small(system, 8), &c, &|_, _| {}).unwrap();
        let (fa, fb, fc) = (files(&a), files(&b), files(&c));
        let names: Vec<&str> = fa.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                MANIFEST_FILE,
                "test.safetensors",
                "train.safetensors",
                "val.safetensors"
            ]
        );
        assert_eq!(fa, fb, "{system}: same seed must give byte-identical files");
        for ((name, x), (_, y)) in fa.iter().zip(&fc).skip(1) {
            assert_ne!(x, y, "{system}: {name} must differ between seeds");
        }
        let ta = read_dataset(a.join("train.safetensors")).unwrap();
        let tc = read_dataset(c.join("train.safetensors")).unwrap();
        assert_ne!(
            ta.trajectories()[0].positions(),
            tc.trajectories()[0].positions()
        );
    }
}

#[test]
fn manifest_progress_and_loading() {
    let dir = tempfile::tempdir().unwrap();
    let spec = small(System::Springs, 3);
    let seen = Mutex::new(Vec::new());
    let manifest = generate_dataset_dir(&spec, dir.path(), &|done, total| {
        seen.lock().unwrap().push((done, total));
    })
    .unwrap();
    let mut seen = seen.into_inner().unwrap();
    seen.sort_unstable();
    assert_eq!(seen, (1..=6).map(|d| (d, 6)).collect::<Vec<_>>());

    assert_eq!(manifest, Manifest::read(dir.path()).unwrap());
    assert_eq!(manifest.name, "nbody-springs");
    assert_eq!(manifest.generator, serde_json::to_value(&spec).unwrap());
    manifest.verify_all(dir.path()).unwrap();
    for split in Split::ALL {
        let entry = manifest.entry_for(split).unwrap();
        assert_eq!(entry.file, split.file_name());
        assert_eq!(entry.num_trajectories, spec.count(split));
        assert_eq!(
            entry.bytes,
            fs::metadata(dir.path().join(&entry.file)).unwrap().len()
        );
        let ds = load_split(dir.path(), split).unwrap();
        assert_eq!(ds.len(), spec.count(split));
        assert_eq!(ds.meta().split, Some(split));
        assert_eq!(ds.meta().seed, Some(3));
        assert_eq!(ds.meta().system, "springs");
        assert_eq!(ds.meta().edge_attribute_names, ["spring_constant"]);
        assert_eq!(ds.meta().dt, 0.001 * 50.0);
        for t in ds.trajectories() {
            assert_eq!(t.num_frames(), 12);
            assert_eq!(t.node_features().unwrap(), &[1.0; 5]);
            let e = t.edges().unwrap();
            assert!(e.attributes().iter().all(|&k| k == 0.1));
        }
    }
    // the spec in the header is the one generated with
    let train = load_split(dir.path(), Split::Train).unwrap();
    let back: NBodySpec = serde_json::from_value(train.meta().generator.clone()).unwrap();
    assert_eq!(back, spec);
}

#[test]
fn invalid_spec_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let spec = NBodySpec {
        steps: 601,
        ..small(System::Gravity, 0)
    };
    let err = generate_dataset_dir(&spec, &out, &|_, _| {}).unwrap_err();
    assert!(
        err.to_string().contains("multiple of sample_every"),
        "{err}"
    );
    assert!(!out.exists());
}

/// The EGNO charged setting (frame 30 → 32, 34, …, 40) and GeoTDM's 10 + 20 frames on 50-frame
/// trajectories generated with the published step counts.
#[test]
fn egno_and_geotdm_windows_on_generated_charged_data() {
    let dir = tempfile::tempdir().unwrap();
    let spec = NBodySpec {
        n_train: 2,
        n_val: 1,
        n_test: 1,
        ..NBodySpec::new(System::Charged)
    };
    assert_eq!(
        (spec.steps, spec.sample_every, spec.num_frames()),
        (5000, 100, 50)
    );
    generate_dataset_dir(&spec, dir.path(), &|_, _| {}).unwrap();
    let train = load_split(dir.path(), Split::Train).unwrap();

    let egno = WindowSpec::egno(30, 10, 5).check().unwrap();
    let w = egno.windows(&train).unwrap();
    assert_eq!(w.len(), 2);
    let s = w.get(1).unwrap();
    assert_eq!(s.condition_frames, [30]);
    assert_eq!(s.target_frames, [32, 34, 36, 38, 40]);
    assert_eq!(s.target_positions.len(), 5 * 5 * 3);
    assert_eq!(s.condition_velocities.as_ref().unwrap().len(), 5 * 3);
    let t = &train.trajectories()[1];
    assert_eq!(&s.target_positions[4 * 15..], t.frame_positions(40));
    assert_eq!(s.num_node_features, 2);

    let geotdm = WindowSpec::geotdm(10, 20, 1).check().unwrap();
    assert_eq!(geotdm.windows(&train).unwrap().len(), 2 * 21);
    let first = WindowSpec::geotdm(10, 20, 1)
        .start_frames(vec![9])
        .check()
        .unwrap();
    let s = first.windows(&train).unwrap().get(0).unwrap();
    assert_eq!(s.condition_frames, (0..10).collect::<Vec<_>>());
    assert_eq!(s.target_frames, (10..30).collect::<Vec<_>>());
}

/// Normalisation fitted on train, applied to val, survives the file round trip and maps
/// predictions back.
#[test]
fn normalisation_recorded_through_files() {
    let dir = tempfile::tempdir().unwrap();
    generate_dataset_dir(&small(System::Gravity, 1), dir.path(), &|_, _| {}).unwrap();
    let train = load_split(dir.path(), Split::Train).unwrap();
    let val = load_split(dir.path(), Split::Val).unwrap();
    let norm = NormalizationSpec::default().fit(&train).unwrap();
    let val_n = norm.apply(&val).unwrap();
    let path = dir.path().join("val-normalised.safetensors");
    write_dataset(&path, &val_n).unwrap();
    let back = read_dataset(&path).unwrap();
    assert_eq!(back, val_n);
    let record = back.meta().normalization.as_ref().unwrap();
    assert_eq!(record.params, norm);
    assert_eq!(record.centers.len(), val.len());

    let spec = WindowSpec::egno(2, 4, 2).check().unwrap();
    let s = spec.windows(&back).unwrap().get(1).unwrap();
    let mut predicted = s.target_positions.clone();
    s.transform.denormalize_positions(&mut predicted);
    let original = val.trajectories()[1].frame_positions(6);
    for (p, o) in predicted[predicted.len() - original.len()..]
        .iter()
        .zip(original)
    {
        assert!((p - o).abs() < 1e-12 * (1.0 + o.abs()));
    }
}
