//! `manifest.json`: the list of files in a dataset directory, with byte sizes and sha256, checked
//! before a file is used.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::dataset::Dataset;
use crate::error::{Error, Result};
use crate::format::read_dataset;
use crate::fsutil::{atomic_write, sha256_file};
use crate::split::Split;

/// File name of the manifest inside a dataset directory.
pub const MANIFEST_FILE: &str = "manifest.json";
/// Format name stored in the manifest.
pub const MANIFEST_FORMAT: &str = "traj-data-manifest";
/// Manifest format version.
pub const MANIFEST_VERSION: u32 = 1;

/// One file of a dataset directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestEntry {
    /// File name relative to the directory (a plain name, no separators).
    pub file: String,
    /// The split stored in the file, if it is one.
    #[serde(default)]
    pub split: Option<Split>,
    /// Number of trajectories in the file.
    pub num_trajectories: usize,
    /// Size in bytes.
    pub bytes: u64,
    /// sha256 of the file, lower-case hex.
    pub sha256: String,
}

/// The manifest of a dataset directory.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`MANIFEST_FORMAT`].
    pub format: String,
    /// Always [`MANIFEST_VERSION`].
    pub version: u32,
    /// Dataset name.
    pub name: String,
    /// How the data was made (e.g. the N-body generator spec); any JSON.
    #[serde(default)]
    pub generator: serde_json::Value,
    /// The files.
    pub files: Vec<ManifestEntry>,
}

fn plain_file_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\'])
        && Path::new(name).file_name().is_some_and(|f| f == name)
}

impl Manifest {
    /// An empty manifest.
    pub fn new(name: impl Into<String>, generator: serde_json::Value) -> Self {
        Self {
            format: MANIFEST_FORMAT.into(),
            version: MANIFEST_VERSION,
            name: name.into(),
            generator,
            files: Vec::new(),
        }
    }

    /// Hashes `dir/file` and adds (or replaces) its entry.
    ///
    /// # Errors
    /// [`Error::CorruptManifest`] for a file name with path separators; I/O errors.
    pub fn add_file(
        &mut self,
        dir: impl AsRef<Path>,
        file: &str,
        split: Option<Split>,
        num_trajectories: usize,
    ) -> Result<&ManifestEntry> {
        let dir = dir.as_ref();
        if !plain_file_name(file) {
            return Err(Error::CorruptManifest {
                path: dir.join(MANIFEST_FILE),
                reason: format!("file name {file:?} must be a plain name inside the directory"),
            });
        }
        let path = dir.join(file);
        let bytes = fs::metadata(&path)
            .map_err(|e| Error::io(&path, "stat", e))?
            .len();
        let entry = ManifestEntry {
            file: file.into(),
            split,
            num_trajectories,
            bytes,
            sha256: sha256_file(&path)?,
        };
        self.files.retain(|e| e.file != file);
        self.files.push(entry);
        Ok(self.files.last().expect("just pushed"))
    }

    /// The entry for `file`.
    pub fn entry(&self, file: &str) -> Option<&ManifestEntry> {
        self.files.iter().find(|e| e.file == file)
    }

    /// The entry holding `split`.
    pub fn entry_for(&self, split: Split) -> Option<&ManifestEntry> {
        self.files.iter().find(|e| e.split == Some(split))
    }

    /// Reads and validates `dir/manifest.json`.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::CorruptManifest`].
    pub fn read(dir: impl AsRef<Path>) -> Result<Manifest> {
        let path = dir.as_ref().join(MANIFEST_FILE);
        let text = fs::read_to_string(&path).map_err(|e| Error::io(&path, "read", e))?;
        let bad = |reason: String| Error::CorruptManifest {
            path: path.clone(),
            reason,
        };
        let m: Manifest = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        if m.format != MANIFEST_FORMAT {
            return Err(bad(format!(
                "format is {:?}, expected {MANIFEST_FORMAT:?}",
                m.format
            )));
        }
        if m.version != MANIFEST_VERSION {
            return Err(bad(format!(
                "version {} is not supported (expected {MANIFEST_VERSION})",
                m.version
            )));
        }
        for (i, e) in m.files.iter().enumerate() {
            if !plain_file_name(&e.file) {
                return Err(bad(format!(
                    "file name {:?} must be a plain name inside the directory",
                    e.file
                )));
            }
            if e.sha256.len() != 64 || !e.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad(format!("sha256 of {:?} is not 64 hex digits", e.file)));
            }
            if m.files[..i].iter().any(|o| o.file == e.file) {
                return Err(bad(format!("{:?} is listed twice", e.file)));
            }
            if e.split.is_some() && m.files[..i].iter().any(|o| o.split == e.split) {
                return Err(bad(format!("two files hold split {:?}", e.split)));
            }
        }
        Ok(m)
    }

    /// Writes `dir/manifest.json` atomically.
    ///
    /// # Errors
    /// I/O errors.
    pub fn write(&self, dir: impl AsRef<Path>) -> Result<()> {
        let path = dir.as_ref().join(MANIFEST_FILE);
        let mut text = serde_json::to_string_pretty(self).map_err(|e| Error::CorruptManifest {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        text.push('\n');
        atomic_write(&path, text.as_bytes())
    }

    /// Checks `dir/file` against its entry (size, then sha256) and returns its path.
    ///
    /// # Errors
    /// [`Error::NotInManifest`], [`Error::NotFound`], [`Error::SizeMismatch`],
    /// [`Error::ChecksumMismatch`] (naming the file, the expected and the actual hash).
    pub fn verify(&self, dir: impl AsRef<Path>, file: &str) -> Result<PathBuf> {
        let dir = dir.as_ref();
        let entry = self.entry(file).ok_or_else(|| Error::NotInManifest {
            path: dir.join(MANIFEST_FILE),
            file: file.into(),
        })?;
        let path = dir.join(&entry.file);
        let actual = fs::metadata(&path)
            .map_err(|e| Error::io(&path, "stat", e))?
            .len();
        if actual != entry.bytes {
            return Err(Error::SizeMismatch {
                path,
                expected: entry.bytes,
                actual,
            });
        }
        let hash = sha256_file(&path)?;
        if !hash.eq_ignore_ascii_case(&entry.sha256) {
            return Err(Error::ChecksumMismatch {
                path,
                expected: entry.sha256.clone(),
                actual: hash,
            });
        }
        Ok(path)
    }

    /// Verifies every listed file.
    ///
    /// # Errors
    /// As [`Manifest::verify`].
    pub fn verify_all(&self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        self.files
            .iter()
            .try_for_each(|e| self.verify(dir, &e.file).map(drop))
    }
}

/// Loads one split of a dataset directory: reads the manifest, verifies the split file's size and
/// sha256, then reads and validates it.
///
/// # Errors
/// Manifest errors ([`Error::NotFound`], [`Error::CorruptManifest`], [`Error::NotInManifest`]),
/// checksum errors ([`Error::SizeMismatch`], [`Error::ChecksumMismatch`]), then the reader's errors
/// (see [`read_dataset`]); a trajectory count that disagrees with the manifest is
/// [`Error::CorruptManifest`].
pub fn load_split(dir: impl AsRef<Path>, split: Split) -> Result<Dataset> {
    load_verified(
        dir.as_ref(),
        split,
        "trajectories",
        |p| read_dataset(p),
        Dataset::len,
    )
}

/// Reads the manifest of `dir`, verifies `split`'s file (size, then sha256), reads it with
/// `read` and checks its count of `items` (`count`) against the manifest's: the one path from a
/// manifest to a split's contents, for every format of this crate.
pub(crate) fn load_verified<T>(
    dir: &Path,
    split: Split,
    items: &str,
    read: impl FnOnce(&Path) -> Result<T>,
    count: impl FnOnce(&T) -> usize,
) -> Result<T> {
    let manifest = Manifest::read(dir)?;
    let entry = manifest
        .entry_for(split)
        .ok_or_else(|| Error::NotInManifest {
            path: dir.join(MANIFEST_FILE),
            file: split.file_name(),
        })?;
    let path = manifest.verify(dir, &entry.file)?;
    let value = read(&path)?;
    let got = count(&value);
    if got != entry.num_trajectories {
        return Err(Error::CorruptManifest {
            path: dir.join(MANIFEST_FILE),
            reason: format!(
                "{} lists {} {items}, the file holds {got}",
                entry.file, entry.num_trajectories,
            ),
        });
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_must_be_plain() {
        for ok in ["train.safetensors", "a b", ".hidden"] {
            assert!(plain_file_name(ok), "{ok}");
        }
        for bad in ["", ".", "..", "../x", "a/b", "/etc/passwd", "a\\b"] {
            assert!(!plain_file_name(bad), "{bad}");
        }
    }

    #[test]
    fn add_verify_and_reject_edits() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("a.bin"), b"hello").unwrap();
        let mut m = Manifest::new("t", serde_json::json!({"k": 1}));
        m.add_file(dir.path(), "a.bin", None, 0).unwrap();
        m.write(dir.path()).unwrap();
        let back = Manifest::read(dir.path()).unwrap();
        assert_eq!(back, m);
        assert!(back.verify(dir.path(), "a.bin").is_ok());
        fs::write(dir.path().join("a.bin"), b"hellp").unwrap();
        let err = back.verify(dir.path(), "a.bin").unwrap_err().to_string();
        assert!(
            err.contains("a.bin: sha256 mismatch: manifest says 2cf24dba"),
            "{err}"
        );
        fs::write(dir.path().join("a.bin"), b"hello!").unwrap();
        let err = back.verify_all(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("manifest says 5 bytes, the file has 6 bytes"),
            "{err}"
        );
        assert!(matches!(
            back.verify(dir.path(), "b.bin"),
            Err(Error::NotInManifest { .. })
        ));
        assert!(m.add_file(dir.path(), "../a.bin", None, 0).is_err());
    }

    #[test]
    fn corrupt_manifests_rejected() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            Manifest::read(dir.path()),
            Err(Error::NotFound { .. })
        ));
        let good = serde_json::json!({
            "format": MANIFEST_FORMAT, "version": 1, "name": "t", "files": [
                {"file": "train.safetensors", "split": "train", "num_trajectories": 1,
                 "bytes": 3, "sha256": "00".repeat(32)}]
        });
        let cases = [
            ("format", serde_json::json!("other"), "format is \"other\""),
            ("version", serde_json::json!(2), "version 2"),
            ("surprise", serde_json::json!(1), "unknown field"),
        ];
        let path = dir.path().join(MANIFEST_FILE);
        fs::write(&path, good.to_string()).unwrap();
        assert!(Manifest::read(dir.path()).is_ok());
        for (key, value, needle) in cases {
            let mut m = good.clone();
            m[key] = value;
            fs::write(&path, m.to_string()).unwrap();
            let err = Manifest::read(dir.path()).unwrap_err().to_string();
            assert!(err.contains("manifest.json: corrupt manifest"), "{err}");
            assert!(err.contains(needle), "{err}");
        }
        let mut m = good.clone();
        m["files"][0]["file"] = serde_json::json!("../train.safetensors");
        fs::write(&path, m.to_string()).unwrap();
        assert!(
            Manifest::read(dir.path())
                .unwrap_err()
                .to_string()
                .contains("plain name")
        );
        let mut m = good.clone();
        m["files"][0]["sha256"] = serde_json::json!("xyz");
        fs::write(&path, m.to_string()).unwrap();
        assert!(
            Manifest::read(dir.path())
                .unwrap_err()
                .to_string()
                .contains("64 hex")
        );
        fs::write(&path, "{not json").unwrap();
        assert!(Manifest::read(dir.path()).is_err());
    }
}
