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

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::Error;
use crate::fsutil::{atomic_write, sha256_file};
use crate::import_error::{ImportError, ImportResult};

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

    /// The source called `name`.
    pub fn get(&self, name: &str) -> Option<&Source> {
        self.sources.iter().find(|s| s.name == name)
    }
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

/// Whether the archive entry `name` is the member `pattern`: equal, or, for a pattern `*/NAME`,
/// any entry called `NAME` in any directory.
fn member_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_prefix("*/") {
        Some(file) => name == file || name.ends_with(&format!("/{file}")),
        None => name == pattern,
    }
}

/// Extracts `members` (path inside the archive → file in `dir`) from a `.tar.gz`/`.tgz` or a
/// `.tar.bz2` (by the archive's name), verifying each against its [`Expected`] before it is placed
/// (atomically). A member path `*/NAME` matches `NAME` in any directory. Members already present
/// and valid are left alone.
///
/// # Errors
/// [`ImportError::Malformed`] for a corrupt archive or a member that is missing or not a regular
/// file; [`Error::SizeMismatch`] / [`Error::ChecksumMismatch`] naming the member; I/O errors.
pub fn extract_tar(archive: &Path, members: &[Member], dir: &Path) -> ImportResult<Vec<PathBuf>> {
    let mut todo: Vec<&Member> = members
        .iter()
        .filter(|m| verify_file(&dir.join(&m.file), &m.expected).is_err())
        .collect();
    let bad = |problem: String| ImportError::malformed(archive, "tar.gz", problem);
    if !todo.is_empty() {
        let f = std::io::BufReader::new(
            File::open(archive).map_err(|e| ImportError::io(archive, "open", e))?,
        );
        let name = archive
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let stream: Box<dyn Read> = if name.ends_with(".tar.bz2") || name.ends_with(".tbz2") {
            Box::new(bzip2::read::MultiBzDecoder::new(f))
        } else {
            Box::new(flate2::read::GzDecoder::new(f))
        };
        let mut tar = tar::Archive::new(stream);
        let entries = tar.entries().map_err(|e| bad(e.to_string()))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| bad(e.to_string()))?;
            let name = entry
                .path()
                .map_err(|e| bad(e.to_string()))?
                .to_string_lossy()
                .into_owned();
            let Some(k) = todo.iter().position(|m| member_matches(&m.path, &name)) else {
                continue;
            };
            let m = todo.remove(k);
            if !entry.header().entry_type().is_file() {
                return Err(bad(format!("member {name} is not a regular file")));
            }
            let limit = m.expected.bytes.unwrap_or(u64::MAX);
            let mut bytes = Vec::new();
            (&mut entry)
                .take(limit.saturating_add(1))
                .read_to_end(&mut bytes)
                .map_err(|e| bad(format!("member {name}: {e}")))?;
            let target = dir.join(&m.file);
            check_bytes(&target, &bytes, &m.expected)?;
            atomic_write(&target, &bytes)?;
            if todo.is_empty() {
                break;
            }
        }
        if let Some(m) = todo.first() {
            return Err(bad(format!("member {} is not in the archive", m.path)));
        }
    }
    Ok(members.iter().map(|m| dir.join(&m.file)).collect())
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn check_bytes(path: &Path, bytes: &[u8], expected: &Expected) -> ImportResult<()> {
    if let Some(b) = expected.bytes
        && b != bytes.len() as u64
    {
        return Err(Error::SizeMismatch {
            path: path.into(),
            expected: b,
            actual: bytes.len() as u64,
        }
        .into());
    }
    if let Some(h) = &expected.sha256 {
        let actual = hex(&Sha256::digest(bytes));
        if !h.eq_ignore_ascii_case(&actual) {
            return Err(Error::ChecksumMismatch {
                path: path.into(),
                expected: h.clone(),
                actual,
            }
            .into());
        }
    }
    Ok(())
}

/// Download progress: `(bytes so far, total bytes if known)`.
pub type Progress<'a> = &'a dyn Fn(u64, Option<u64>);

/// Downloads `url` to `dest` and verifies it against `expected` before placing it.
///
/// - A valid `dest` already there is used as is (no network).
/// - Bytes arrive in `dest.part`; an existing `.part` is resumed with `Range: bytes=N-` (a server
///   that answers 200 instead of 206 is read from the start).
/// - A body shorter than announced, or shorter than `expected.bytes`, is refused as truncated and
///   the `.part` is kept for the next attempt to resume; a complete file whose size or sha256
///   disagrees with `expected` is refused and its `.part` removed.
/// - On success the `.part` is fsynced and renamed onto `dest`.
///
/// HTTP proxies are taken from the environment, except for loopback hosts.
///
/// # Errors
/// [`ImportError::Download`] for network errors, HTTP error statuses and truncated bodies;
/// [`Error::SizeMismatch`] / [`Error::ChecksumMismatch`] naming the file; I/O errors.
pub fn download(
    url: &str,
    dest: &Path,
    expected: &Expected,
    progress: Progress<'_>,
) -> ImportResult<PathBuf> {
    if dest.exists() {
        verify_file(dest, expected)?;
        return Ok(dest.to_path_buf());
    }
    let fail = |problem: String| ImportError::Download {
        url: url.into(),
        problem,
    };
    let part = dest.with_file_name(format!(
        "{}.part",
        dest.file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));
    let mut offset = fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
    if expected.bytes.is_some_and(|b| offset > b) {
        offset = 0;
    }
    let complete_already = expected.bytes.is_some_and(|b| b == offset && b > 0);
    if !complete_already {
        let loopback = url
            .split("://")
            .nth(1)
            .map(|rest| {
                rest.starts_with("127.0.0.1")
                    || rest.starts_with("localhost")
                    || rest.starts_with("[::1]")
            })
            .unwrap_or(false);
        let mut config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_recv_response(Some(Duration::from_secs(60)));
        if loopback {
            config = config.proxy(None);
        }
        let agent: ureq::Agent = config.build().into();
        let mut req = agent.get(url);
        if offset > 0 {
            req = req.header("Range", format!("bytes={offset}-"));
        }
        let mut resp = req.call().map_err(|e| fail(e.to_string()))?;
        let status = resp.status().as_u16();
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let content_length = header("content-length").and_then(|v| v.parse::<u64>().ok());
        let (append, total) = match status {
            206 => {
                let range = header("content-range").unwrap_or_default();
                let start = range
                    .strip_prefix("bytes ")
                    .and_then(|r| r.split('-').next())
                    .and_then(|s| s.parse::<u64>().ok());
                if start != Some(offset) {
                    return Err(fail(format!(
                        "asked to resume at byte {offset}, the server sent Content-Range {range:?}"
                    )));
                }
                (true, content_length.map(|l| l + offset))
            }
            200 => (false, content_length),
            416 if offset > 0 => (true, Some(offset)),
            s => return Err(fail(format!("HTTP status {s}"))),
        };
        if status != 416 {
            let mut file = if append {
                OpenOptions::new().append(true).open(&part)
            } else {
                File::create(&part)
            }
            .map_err(|e| ImportError::io(&part, "open", e))?;
            let mut done = if append { offset } else { 0 };
            progress(done, total.or(expected.bytes));
            let mut reader = resp.body_mut().as_reader();
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let n = match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) => {
                        let _ = file.sync_all();
                        return Err(fail(format!(
                            "connection broke after {done} of {} bytes ({e}); run again to resume",
                            total.map_or("?".into(), |t| t.to_string())
                        )));
                    }
                };
                file.write_all(&buf[..n])
                    .map_err(|e| ImportError::io(&part, "write", e))?;
                done += n as u64;
                progress(done, total.or(expected.bytes));
            }
            file.sync_all()
                .map_err(|e| ImportError::io(&part, "sync", e))?;
            if let Some(t) = total
                && done < t
            {
                return Err(fail(format!(
                    "truncated: received {done} of {t} announced bytes; run again to resume"
                )));
            }
        }
    }
    let len = fs::metadata(&part)
        .map_err(|e| ImportError::io(&part, "stat", e))?
        .len();
    if let Some(b) = expected.bytes
        && len < b
    {
        return Err(fail(format!(
            "truncated: the server's file has {len} bytes, the manifest says {b}"
        )));
    }
    if let Err(e) = verify_file(&part, expected) {
        let _ = fs::remove_file(&part);
        return Err(e);
    }
    fs::rename(&part, dest).map_err(|e| ImportError::io(dest, "rename download onto", e))?;
    if let Some(dir) = dest.parent()
        && let Ok(d) = File::open(if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        })
    {
        let _ = d.sync_all();
    }
    Ok(dest.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn extracts_and_verifies_members() {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("a.tar.gz");
        let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
            File::create(&archive).unwrap(),
            flate2::Compression::fast(),
        ));
        for (name, body) in [("x/a.txt", &b"abc"[..]), ("x/b.txt", b"other")] {
            let mut h = tar::Header::new_gnu();
            h.set_size(body.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            builder.append_data(&mut h, name, body).unwrap();
        }
        builder.into_inner().unwrap().finish().unwrap();
        let member = |path: &str, sha: &str| Member {
            path: path.into(),
            file: "a.txt".into(),
            expected: Expected {
                bytes: Some(3),
                sha256: Some(sha.into()),
            },
        };
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let out = extract_tar(&archive, &[member("x/a.txt", abc)], dir.path()).unwrap();
        assert_eq!(fs::read(&out[0]).unwrap(), b"abc");
        fs::remove_file(&out[0]).unwrap();
        let err = extract_tar(&archive, &[member("x/a.txt", &"0".repeat(64))], dir.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("a.txt: sha256 mismatch"), "{err}");
        assert!(
            !dir.path().join("a.txt").exists(),
            "a bad member is not placed"
        );
        let err = extract_tar(&archive, &[member("x/c.txt", abc)], dir.path())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("member x/c.txt is not in the archive"),
            "{err}"
        );
        fs::write(&archive, b"not gzip").unwrap();
        assert!(extract_tar(&archive, &[member("x/a.txt", abc)], dir.path()).is_err());

        // .tar.bz2, and `*/NAME` matching a member in any directory
        let archive = dir.path().join("r.tar.bz2");
        let mut builder = tar::Builder::new(bzip2::write::BzEncoder::new(
            File::create(&archive).unwrap(),
            bzip2::Compression::fast(),
        ));
        let mut h = tar::Header::new_gnu();
        h.set_size(3);
        h.set_mode(0o644);
        h.set_cksum();
        builder
            .append_data(&mut h, "deep/dir/a.txt", &b"abc"[..])
            .unwrap();
        builder.into_inner().unwrap().finish().unwrap();
        let out = extract_tar(&archive, &[member("*/a.txt", abc)], dir.path()).unwrap();
        assert_eq!(fs::read(&out[0]).unwrap(), b"abc");
        assert!(member_matches("*/a.txt", "a.txt") && !member_matches("*/a.txt", "xa.txt"));
    }
}
