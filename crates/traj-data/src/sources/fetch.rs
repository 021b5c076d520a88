//! The network and archive half of [`crate::sources`] (feature `download`): resumable HTTP
//! downloads verified before placement, and extraction of single members from `.tar.gz` /
//! `.tar.bz2` archives. Users who take the crate for its data model and formats only leave the
//! feature off and do not build an HTTP client or decompressors.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::{Expected, Member, Source, pip_download, verify_file};
use crate::error::Error;
use crate::fsutil::atomic_write;
use crate::import_error::{ImportError, ImportResult};

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

/// A source [`obtain`]ed into the cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Obtained {
    /// The verified file in the cache.
    pub path: PathBuf,
    /// Its sha256 (lower-case hex).
    pub sha256: String,
    /// Its size in bytes.
    pub bytes: u64,
    /// Whether the manifest pins a sha256 for it (if not, only the size, if any, was checked and
    /// `sha256` is what this copy hashes to).
    pub pinned: bool,
}

/// Obtains `source` into `cache` and verifies it against the manifest: with
/// `python -m pip download --no-deps` for a PyPI source ([`pip_download`]), otherwise by a
/// resumable HTTP [`download`] reporting `progress`. A valid copy already in the cache is used as
/// is.
///
/// # Errors
/// As [`pip_download`] and [`download`].
pub fn obtain(
    source: &Source,
    cache: &Path,
    python: &Path,
    progress: Progress<'_>,
) -> ImportResult<Obtained> {
    let (path, sha256) = if source.pypi.is_some() {
        pip_download(source, cache, python)?
    } else {
        let path = download(
            &source.url,
            &source.cache_path(cache),
            &source.expected,
            progress,
        )?;
        let hash = verify_file(&path, &source.expected)?;
        (path, hash)
    };
    let bytes = fs::metadata(&path)
        .map_err(|e| ImportError::io(&path, "stat", e))?
        .len();
    Ok(Obtained {
        path,
        sha256,
        bytes,
        pinned: source.expected.sha256.is_some(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
