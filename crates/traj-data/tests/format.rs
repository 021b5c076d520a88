//! The reader rejects every kind of bad file with a typed error naming the file and the problem.
//! Each test writes a good file, damages it in one way, and checks the error.

use std::fs;
use std::path::{Path, PathBuf};

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use serde_json::{Value, json};
use traj_data::{
    Dataset, DatasetMeta, EdgeList, Error, HEADER_KEY, Manifest, Split, Trajectory, load_split,
    read_dataset, write_dataset,
};

/// Three trajectories (T = 4, 5, 3) of N = 4 nodes with every optional array present.
fn rich_dataset() -> Dataset {
    let n = 4;
    let trajectories = [4usize, 5, 3]
        .iter()
        .enumerate()
        .map(|(i, &t)| {
            let pos = (0..t * n * 3)
                .map(|k| (k as f64).sin() + i as f64)
                .collect();
            let vel = (0..t * n * 3).map(|k| (k as f64).cos() * 0.1).collect();
            let edges = EdgeList::new(vec![[0, 1], [2, 3], [1, 3]][..i + 1].to_vec())
                .unwrap()
                .with_attributes((0..2 * (i + 1)).map(|k| k as f64 * 0.5).collect(), 2)
                .unwrap();
            let mut meta = traj_data::MetadataMap::new();
            meta.insert("source".into(), json!(format!("run-{i}")));
            Trajectory::new(t, n, pos)
                .unwrap()
                .with_velocities(vel)
                .unwrap()
                .with_node_features(vec![1.0, -1.0, 0.5, 2.0, 1.0, -1.0, 0.5, 2.0], 2)
                .unwrap()
                .with_node_types(vec![0, 1, 1, 6])
                .unwrap()
                .with_edges(edges)
                .unwrap()
                .with_metadata(meta)
        })
        .collect();
    let mut meta = DatasetMeta::new("rich", "test", 0.25);
    meta.node_feature_names = vec!["charge".into(), "mass".into()];
    meta.edge_attribute_names = vec!["k".into(), "order".into()];
    meta.seed = Some(u64::MAX);
    meta.generator = json!({"note": "handmade", "pi": std::f64::consts::PI});
    Dataset::new(meta, trajectories).unwrap()
}

fn good_file() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data.safetensors");
    write_dataset(&path, &rich_dataset()).unwrap();
    (dir, path)
}

/// The tensors and the traj-data header of a file.
struct Raw {
    tensors: Vec<(String, Dtype, Vec<usize>, Vec<u8>)>,
    header: Value,
}

fn load_raw(path: &Path) -> Raw {
    let bytes = fs::read(path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let (_, md) = SafeTensors::read_metadata(&bytes).unwrap();
    let header = serde_json::from_str(&md.metadata().as_ref().unwrap()[HEADER_KEY]).unwrap();
    let mut tensors: Vec<_> = st
        .tensors()
        .into_iter()
        .map(|(name, v)| (name, v.dtype(), v.shape().to_vec(), v.data().to_vec()))
        .collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    Raw { tensors, header }
}

fn save_raw_text(path: &Path, tensors: &[(String, Dtype, Vec<usize>, Vec<u8>)], header: String) {
    let views: Vec<_> = tensors
        .iter()
        .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    let meta = std::collections::HashMap::from([(HEADER_KEY.to_string(), header)]);
    fs::write(path, safetensors::serialize(views, Some(meta)).unwrap()).unwrap();
}

fn save_raw(path: &Path, raw: &Raw) {
    save_raw_text(path, &raw.tensors, raw.header.to_string());
}

fn tensor<'a>(raw: &'a mut Raw, name: &str) -> &'a mut (String, Dtype, Vec<usize>, Vec<u8>) {
    raw.tensors.iter_mut().find(|t| t.0 == name).unwrap()
}

fn read_err(path: &Path) -> (Error, String) {
    let err = read_dataset(path).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(&path.display().to_string()),
        "message must name the file: {msg}"
    );
    (err, msg)
}

#[test]
fn good_file_round_trips() {
    let (_dir, path) = good_file();
    assert_eq!(read_dataset(&path).unwrap(), rich_dataset());
    // re-encoding the raw parts reproduces the same dataset (the test helpers are faithful)
    let raw = load_raw(&path);
    save_raw(&path, &raw);
    assert_eq!(read_dataset(&path).unwrap(), rich_dataset());
}

#[test]
fn missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope.safetensors");
    let (err, msg) = read_err(&path);
    assert!(matches!(err, Error::NotFound { .. }));
    assert!(msg.ends_with("nope.safetensors: file not found"), "{msg}");
}

#[test]
fn truncated_file() {
    let (_dir, path) = good_file();
    let bytes = fs::read(&path).unwrap();
    for keep in [bytes.len() - 1, bytes.len() / 2, 100, 7, 0] {
        fs::write(&path, &bytes[..keep]).unwrap();
        let (err, msg) = read_err(&path);
        assert!(matches!(err, Error::Container { .. }), "{keep}: {msg}");
        assert!(msg.contains("truncated or corrupt"), "{msg}");
    }
}

#[test]
fn corrupt_container_header() {
    let (_dir, path) = good_file();
    let mut bytes = fs::read(&path).unwrap();
    // the safetensors JSON starts at byte 8 with '{'
    bytes[8] = b'#';
    fs::write(&path, &bytes).unwrap();
    let (err, _) = read_err(&path);
    assert!(matches!(err, Error::Container { .. }));
}

#[test]
fn corrupt_traj_data_header() {
    let (_dir, path) = good_file();
    let raw = load_raw(&path);
    save_raw_text(&path, &raw.tensors, "{\"format\": \"traj-data\", ".into());
    let (err, msg) = read_err(&path);
    assert!(matches!(err, Error::CorruptHeader { .. }));
    assert!(
        msg.contains("corrupt traj-data header: header is not JSON"),
        "{msg}"
    );

    // a well-formed header missing a field
    let mut raw = load_raw(&good_file().1);
    raw.header.as_object_mut().unwrap().remove("num_frames");
    save_raw(&path, &raw);
    let (err, msg) = read_err(&path);
    assert!(matches!(err, Error::CorruptHeader { .. }));
    assert!(msg.contains("num_frames"), "{msg}");

    // an unknown field
    let mut raw = load_raw(&good_file().1);
    raw.header["surprise"] = json!(1);
    save_raw(&path, &raw);
    let (err, msg) = read_err(&path);
    assert!(matches!(err, Error::CorruptHeader { .. }));
    assert!(msg.contains("surprise"), "{msg}");
}

#[test]
fn not_a_traj_data_file() {
    let (_dir, path) = good_file();
    let view = TensorView::new(Dtype::F32, vec![1], &[0, 0, 0, 0]).unwrap();
    fs::write(&path, safetensors::serialize([("w", view)], None).unwrap()).unwrap();
    let (err, msg) = read_err(&path);
    assert!(matches!(err, Error::CorruptHeader { .. }));
    assert!(msg.contains("no `traj_data` entry"), "{msg}");
}

#[test]
fn wrong_format_and_version() {
    let (_dir, path) = good_file();
    let mut raw = load_raw(&path);
    raw.header["format"] = json!("other-format");
    save_raw(&path, &raw);
    let (err, msg) = read_err(&path);
    assert!(matches!(err, Error::WrongFormat { .. }));
    assert!(
        msg.contains("wrong format \"other-format\" (expected \"traj-data\")"),
        "{msg}"
    );

    raw.header["format"] = json!("traj-data");
    raw.header["version"] = json!(2);
    save_raw(&path, &raw);
    let (err, msg) = read_err(&path);
    assert!(matches!(
        err,
        Error::UnsupportedVersion {
            found: 2,
            supported: 1,
            ..
        }
    ));
    assert!(msg.contains("unsupported format version 2"), "{msg}");
}

#[test]
fn header_and_tensor_shapes_disagree() {
    let (_dir, path) = good_file();
    let mut raw = load_raw(&path);
    raw.header["num_frames"] = json!([4, 5, 2]);
    save_raw(&path, &raw);
    let (err, msg) = read_err(&path);
    assert!(matches!(err, Error::TensorShape { .. }));
    assert!(
        msg.contains("tensor `positions` has shape [12, 4, 3], but the header implies [11, 4, 3]"),
        "{msg}"
    );

    let mut raw = load_raw(&good_file().1);
    raw.header["layout"]["num_edge_attributes"] = json!(3);
    save_raw(&path, &raw);
    let (err, msg) = read_err(&path);
    assert!(matches!(err, Error::TensorShape { .. }));
    assert!(msg.contains("`edge_attr`"), "{msg}");
}

#[test]
fn wrong_dtype() {
    let (_dir, path) = good_file();
    let mut raw = load_raw(&path);
    let t = tensor(&mut raw, "positions");
    t.1 = Dtype::F32;
    t.2[2] = 6; // same byte count, as F32
    save_raw(&path, &raw);
    let (err, msg) = read_err(&path);
    assert!(matches!(err, Error::WrongDtype { .. }));
    assert!(
        msg.contains("tensor `positions` has dtype F32, expected F64"),
        "{msg}"
    );
}

#[test]
fn missing_and_unexpected_tensors() {
    let (_dir, path) = good_file();
    let mut raw = load_raw(&path);
    raw.tensors.retain(|t| t.0 != "velocities");
    save_raw(&path, &raw);
    let (err, msg) = read_err(&path);
    assert!(matches!(err, Error::MissingTensor { .. }));
    assert!(msg.contains("tensor `velocities` is missing"), "{msg}");

    let mut raw = load_raw(&good_file().1);
    raw.tensors
        .push(("forces".into(), Dtype::F64, vec![1], vec![0; 8]));
    save_raw(&path, &raw);
    let (err, msg) = read_err(&path);
    assert!(matches!(err, Error::UnexpectedTensor { .. }));
    assert!(msg.contains("unexpected tensor `forces`"), "{msg}");
}

#[test]
fn non_finite_values_name_trajectory_frame_node() {
    let (_dir, path) = good_file();
    let mut raw = load_raw(&path);
    // trajectory 1 (frames 4..9 of the concatenation), its frame 2, node 3, component y
    let flat = ((4 + 2) * 4 + 3) * 3 + 1;
    tensor(&mut raw, "positions").3[flat * 8..flat * 8 + 8]
        .copy_from_slice(&f64::NAN.to_le_bytes());
    save_raw(&path, &raw);
    let (err, msg) = read_err(&path);
    assert!(matches!(err, Error::InFile { .. }));
    assert!(
        msg.ends_with(
            "data.safetensors: trajectory 1: positions: non-finite value NaN at frame 2, node 3, component y"
        ),
        "{msg}"
    );

    let mut raw = load_raw(&good_file().1);
    // edge attributes: trajectory 0 has 1 edge, trajectory 1 has 2; poison trajectory 1's edge 1, column 0
    let flat = (1 + 1) * 2;
    tensor(&mut raw, "edge_attr").3[flat * 8..flat * 8 + 8]
        .copy_from_slice(&f64::NEG_INFINITY.to_le_bytes());
    save_raw(&path, &raw);
    let (_, msg) = read_err(&path);
    assert!(
        msg.contains("trajectory 1: edge attributes: non-finite value -inf at edge 1, column 0"),
        "{msg}"
    );
}

#[test]
fn bad_edges_and_types() {
    let (_dir, path) = good_file();
    let mut raw = load_raw(&path);
    // edge_index rows: t0: [0,1]; t1: [0,1],[2,3]; point t1's second edge at node 9
    tensor(&mut raw, "edge_index").3[2 * 16 + 8..2 * 16 + 16].copy_from_slice(&9i64.to_le_bytes());
    save_raw(&path, &raw);
    let (_, msg) = read_err(&path);
    assert!(
        msg.contains("trajectory 1: edge 1 (2, 9) refers to node 9, but there are only 4 nodes"),
        "{msg}"
    );

    let mut raw = load_raw(&good_file().1);
    tensor(&mut raw, "edge_index").3[..8].copy_from_slice(&(-1i64).to_le_bytes());
    save_raw(&path, &raw);
    let (_, msg) = read_err(&path);
    assert!(
        msg.contains("trajectory 0: edge index: invalid value -1"),
        "{msg}"
    );

    let mut raw = load_raw(&good_file().1);
    tensor(&mut raw, "node_types").3[8 * 5..8 * 6].copy_from_slice(&(-3i64).to_le_bytes());
    save_raw(&path, &raw);
    let (_, msg) = read_err(&path);
    assert!(
        msg.contains("trajectory 1: node types: invalid value -3 at node 1"),
        "{msg}"
    );
}

#[test]
fn inconsistent_metadata_in_header() {
    let (_dir, path) = good_file();
    let mut raw = load_raw(&path);
    raw.header["dataset"]["dt"] = json!(-0.5);
    save_raw(&path, &raw);
    let (_, msg) = read_err(&path);
    assert!(
        msg.contains("invalid dataset metadata: dt must be finite and > 0"),
        "{msg}"
    );

    let mut raw = load_raw(&good_file().1);
    raw.header["trajectory_metadata"] = json!([{}]);
    save_raw(&path, &raw);
    let (err, _) = read_err(&path);
    assert!(matches!(err, Error::CorruptHeader { .. }));
}

/// A flipped byte inside the data is invisible to the reader, but not to the manifest.
#[test]
fn manifest_catches_flipped_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let file = Split::Train.file_name();
    write_dataset(dir.path().join(&file), &rich_dataset()).unwrap();
    let mut m = Manifest::new("rich", json!(null));
    m.add_file(dir.path(), &file, Some(Split::Train), 3)
        .unwrap();
    m.write(dir.path()).unwrap();
    assert_eq!(
        load_split(dir.path(), Split::Train).unwrap(),
        rich_dataset()
    );

    let path = dir.path().join(&file);
    let expected = m.entry(&file).unwrap().sha256.clone();
    let mut bytes = fs::read(&path).unwrap();
    let last = bytes.len() - 3;
    bytes[last] ^= 0x01;
    fs::write(&path, &bytes).unwrap();
    assert!(
        read_dataset(&path).is_ok(),
        "the flip lands in a finite value"
    );
    let err = load_split(dir.path(), Split::Train).unwrap_err();
    let msg = err.to_string();
    let Error::ChecksumMismatch {
        expected: e,
        actual,
        ..
    } = &err
    else {
        panic!("expected a checksum mismatch, got {msg}");
    };
    assert_eq!(e, &expected);
    assert_ne!(actual, &expected);
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(
        msg.contains(&expected) && msg.contains(actual.as_str()),
        "{msg}"
    );

    // a split the manifest does not list
    let err = load_split(dir.path(), Split::Val).unwrap_err().to_string();
    assert!(
        err.contains("manifest.json: no entry for `val.safetensors`"),
        "{err}"
    );

    // a trajectory count that disagrees with the file
    bytes[last] ^= 0x01;
    fs::write(&path, &bytes).unwrap();
    m.files[0].num_trajectories = 4;
    m.write(dir.path()).unwrap();
    let err = load_split(dir.path(), Split::Train)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("lists 4 trajectories, the file holds 3"),
        "{err}"
    );

    // no manifest at all
    fs::remove_file(dir.path().join("manifest.json")).unwrap();
    let err = load_split(dir.path(), Split::Train).unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err}");
}
