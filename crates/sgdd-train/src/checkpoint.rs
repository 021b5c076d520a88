//! Checkpoints: one safetensors file holding the model's weights (`model.<name>`), the optimiser
//! state (`adam.m.<name>`, `adam.v.<name>`) and, in the header's `__metadata__["sgdd"]`, a JSON
//! [`CheckpointMeta`] (format version, step, the run's config, the loss history, the dataset's
//! fingerprint and a sha256 of the tensors themselves). Readable from Python with
//! `safetensors.torch.load_file`. Written atomically (temporary file, fsync, rename, fsync of the
//! directory), so a crash leaves the previous checkpoint intact; a flipped byte in a tensor is
//! caught by the checksum when it is read.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail, ensure};
use safetensors::tensor::{Dtype, TensorView};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor, nn::VarStore};

use crate::optim::Adam;

/// Name of the format in the header.
pub const FORMAT: &str = "sgdd-checkpoint";
/// Version written; readers reject others.
pub const VERSION: u32 = 2;

/// What a checkpoint records beside the tensors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    /// Always [`FORMAT`].
    pub format: String,
    /// Always [`VERSION`].
    pub version: u32,
    /// Optimiser steps done.
    pub step: i64,
    /// The run's configuration (TOML), so `eval`/`predict` rebuild the same model.
    pub config: String,
    /// Mean training loss per completed epoch, and validation metric per evaluation.
    pub history: serde_json::Value,
    /// sha256 of the training dataset's `manifest.json` (which itself holds the sha256 of every
    /// split file): `eval`, `predict` and `spectrum` refuse other data unless told otherwise.
    #[serde(default)]
    pub dataset_sha256: Option<String>,
    /// sha256 over the stored tensors (names, dtypes, shapes and bytes, in name order); filled
    /// in by [`save`] and checked by [`load`].
    #[serde(default)]
    pub tensors_sha256: String,
}

impl CheckpointMeta {
    /// A header for a run at `step` with `config`.
    pub fn new(step: i64, config: String, history: serde_json::Value) -> Self {
        Self {
            format: FORMAT.to_owned(),
            version: VERSION,
            step,
            config,
            history,
            dataset_sha256: None,
            tensors_sha256: String::new(),
        }
    }

    /// The same header with the dataset fingerprint set.
    pub fn with_dataset(mut self, sha256: Option<String>) -> Self {
        self.dataset_sha256 = sha256;
        self
    }
}

fn dtype_name(d: Dtype) -> &'static str {
    match d {
        Dtype::F32 => "F32",
        Dtype::F64 => "F64",
        Dtype::I64 => "I64",
        _ => "other",
    }
}

/// sha256 over `(name, dtype, shape, bytes)` of each tensor, in the order given (name order).
fn tensors_digest<'a>(
    tensors: impl IntoIterator<Item = (&'a str, Dtype, &'a [usize], &'a [u8])>,
) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for (name, dtype, shape, bytes) in tensors {
        h.update((name.len() as u64).to_le_bytes());
        h.update(name.as_bytes());
        h.update(dtype_name(dtype).as_bytes());
        h.update((shape.len() as u64).to_le_bytes());
        for &d in shape {
            h.update((d as u64).to_le_bytes());
        }
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes the model, optionally the optimiser, and the header to `path`, atomically.
pub fn save(path: &Path, vs: &VarStore, opt: Option<&Adam>, meta: &CheckpointMeta) -> Result<()> {
    let mut named: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .map(|(k, t)| (format!("model.{k}"), t))
        .collect();
    if let Some(opt) = opt {
        let (state, step) = opt.state();
        ensure!(
            step == meta.step,
            "optimiser step {step} ≠ checkpoint step {}",
            meta.step
        );
        named.extend(state);
    }
    named.sort_by(|a, b| a.0.cmp(&b.0));
    let host: Vec<(String, Tensor)> = named
        .into_iter()
        .map(|(k, t)| (k, t.detach().to_device(Device::Cpu).contiguous()))
        .collect();
    let buffers: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = host
        .iter()
        .map(|(k, t)| {
            let (dtype, size) = match t.kind() {
                Kind::Float => (Dtype::F32, 4),
                Kind::Double => (Dtype::F64, 8),
                Kind::Int64 => (Dtype::I64, 8),
                other => bail!("tensor `{k}` has kind {other:?}, which checkpoints do not store"),
            };
            let numel = t.numel();
            let mut bytes = vec![0u8; numel * size];
            t.f_copy_data_u8(&mut bytes, numel)?;
            let shape = t.size().iter().map(|&d| d as usize).collect();
            Ok((k.clone(), dtype, shape, bytes))
        })
        .collect::<Result<_>>()?;
    let views: Vec<(String, TensorView<'_>)> = buffers
        .iter()
        .map(|(k, dtype, shape, bytes)| {
            Ok((k.clone(), TensorView::new(*dtype, shape.clone(), bytes)?))
        })
        .collect::<Result<_>>()?;
    let mut meta = meta.clone();
    meta.tensors_sha256 = tensors_digest(
        buffers
            .iter()
            .map(|(k, d, shape, b)| (k.as_str(), *d, shape.as_slice(), b.as_slice())),
    );
    let header = HashMap::from([("sgdd".to_owned(), serde_json::to_string(&meta)?)]);
    let bytes = safetensors::serialize(views, Some(header))?;
    traj_data::atomic_write(path, &bytes)
        .with_context(|| format!("writing checkpoint {}", path.display()))
}

/// Reads a checkpoint: its tensors (on the CPU) and header. Errors name the file and the problem.
pub fn load(path: &Path) -> Result<(BTreeMap<String, Tensor>, CheckpointMeta)> {
    let bytes =
        std::fs::read(path).with_context(|| format!("reading checkpoint {}", path.display()))?;
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| {
        anyhow!(
            "checkpoint {} is not a valid safetensors file: {e}",
            path.display()
        )
    })?;
    let meta_json = header
        .metadata()
        .as_ref()
        .and_then(|m| m.get("sgdd"))
        .ok_or_else(|| {
            anyhow!(
                "checkpoint {} has no `sgdd` header: not written by sgdd",
                path.display()
            )
        })?;
    let meta: CheckpointMeta = serde_json::from_str(meta_json)
        .with_context(|| format!("checkpoint {}: corrupt `sgdd` header", path.display()))?;
    ensure!(
        meta.format == FORMAT && meta.version == VERSION,
        "checkpoint {}: format {} v{} (this sgdd reads {FORMAT} v{VERSION})",
        path.display(),
        meta.format,
        meta.version
    );
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| anyhow!("checkpoint {} is corrupt: {e}", path.display()))?;
    let mut views = st.tensors();
    views.sort_by(|a, b| a.0.cmp(&b.0));
    let digest = tensors_digest(
        views
            .iter()
            .map(|(k, v)| (k.as_str(), v.dtype(), v.shape(), v.data())),
    );
    ensure!(
        digest == meta.tensors_sha256,
        "checkpoint {}: the tensors do not match the checksum in its header (the file is \
         corrupt: sha256 {digest}, recorded {})",
        path.display(),
        meta.tensors_sha256
    );
    let mut out = BTreeMap::new();
    for (name, view) in views {
        let kind = match view.dtype() {
            Dtype::F32 => Kind::Float,
            Dtype::F64 => Kind::Double,
            Dtype::I64 => Kind::Int64,
            other => bail!(
                "checkpoint {}: tensor `{name}` has dtype {other:?}",
                path.display()
            ),
        };
        let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        let t = Tensor::f_from_data_size(view.data(), &shape, kind)?;
        if kind != Kind::Int64 {
            ensure!(
                t.isfinite().all().int64_value(&[]) == 1,
                "checkpoint {}: tensor `{name}` holds NaN or Inf",
                path.display()
            );
        }
        out.insert(name, t);
    }
    Ok((out, meta))
}

/// Loads a checkpoint into `vs` (and `opt`, when given); every model variable must be present
/// with its shape. Returns the header.
pub fn restore(path: &Path, vs: &mut VarStore, opt: Option<&mut Adam>) -> Result<CheckpointMeta> {
    let (tensors, meta) = load(path)?;
    apply(path, &tensors, meta.step, vs, opt)?;
    Ok(meta)
}

/// Copies tensors read by [`load`] from `path` into `vs` (and `opt`, at `step`); see
/// [`restore`].
pub fn apply(
    path: &Path,
    tensors: &BTreeMap<String, Tensor>,
    step: i64,
    vs: &mut VarStore,
    opt: Option<&mut Adam>,
) -> Result<()> {
    let _guard = tch::no_grad_guard();
    for (name, mut var) in vs.variables() {
        let key = format!("model.{name}");
        let src = tensors
            .get(&key)
            .ok_or_else(|| anyhow!("checkpoint {} has no weight `{key}`", path.display()))?;
        ensure!(
            src.size() == var.size(),
            "checkpoint {}: weight `{key}` has shape {:?}, the model needs {:?}",
            path.display(),
            src.size(),
            var.size()
        );
        var.copy_(src);
    }
    if let Some(opt) = opt {
        opt.load_state(tensors, step)
            .with_context(|| format!("checkpoint {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optim::AdamConfig;
    use tch::nn;

    fn model(seed: i64) -> VarStore {
        tch::manual_seed(seed);
        let vs = VarStore::new(Device::Cpu);
        let _ = nn::linear(vs.root() / "lin", 4, 3, Default::default());
        vs
    }

    #[test]
    fn round_trip_restores_weights_and_optimiser() {
        let _rng = crate::trainer::torch_rng();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ck.safetensors");
        let vs = model(0);
        let mut opt = Adam::new(&vs, AdamConfig::default());
        let w = vs.variables()["lin.weight"].shallow_clone();
        opt.backward_step(&w.square().sum(Kind::Float)).unwrap();
        let meta = CheckpointMeta::new(1, "x = 1".into(), serde_json::json!({"loss": [1.0]}));
        save(&path, &vs, Some(&opt), &meta).unwrap();

        let mut other = model(7);
        let mut opt2 = Adam::new(&other, AdamConfig::default());
        let got = restore(&path, &mut other, Some(&mut opt2)).unwrap();
        assert_eq!(got.tensors_sha256.len(), 64);
        assert_eq!(
            CheckpointMeta {
                tensors_sha256: String::new(),
                ..got
            },
            meta
        );
        assert_eq!(opt2.steps(), 1);
        for (k, t) in vs.variables() {
            assert!(t.equal(&other.variables()[&k]), "{k}");
        }
    }

    #[test]
    fn a_flipped_byte_in_a_tensor_is_caught_by_the_checksum() {
        let _rng = crate::trainer::torch_rng();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ck.safetensors");
        save(
            &path,
            &model(0),
            None,
            &CheckpointMeta::new(0, String::new(), serde_json::Value::Null),
        )
        .unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 3; // inside the last tensor's data
        bytes[last] ^= 0x10;
        std::fs::write(&path, &bytes).unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(
            err.contains("checksum") && err.contains("ck.safetensors"),
            "{err}"
        );
    }

    #[test]
    fn truncated_or_foreign_files_are_refused() {
        let _rng = crate::trainer::torch_rng();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ck.safetensors");
        let vs = model(0);
        save(
            &path,
            &vs,
            None,
            &CheckpointMeta::new(0, String::new(), serde_json::Value::Null),
        )
        .unwrap();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 5]).unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(err.contains("ck.safetensors"), "{err}");

        let plain = dir.path().join("plain.safetensors");
        Tensor::write_safetensors(
            &[("a", Tensor::zeros([2], (Kind::Float, Device::Cpu)))],
            &plain,
        )
        .unwrap();
        let err = load(&plain).unwrap_err().to_string();
        assert!(err.contains("no `sgdd` header"), "{err}");

        let mut wrong = VarStore::new(Device::Cpu);
        let _ = nn::linear(wrong.root() / "lin", 5, 3, Default::default());
        std::fs::write(&path, &bytes).unwrap();
        let err = restore(&path, &mut wrong, None).unwrap_err().to_string();
        assert!(err.contains("lin.weight") && err.contains("shape"), "{err}");
    }
}
