//! Downloads against a tiny HTTP server on 127.0.0.1 that the test starts: a good file, a
//! truncated one, one with a wrong checksum, a connection cut mid-body (resumed with `Range`),
//! and an HTTP error.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};
use traj_data::sources::{Expected, Sources, download};
use traj_data::{Error, ImportError};

fn payload() -> Vec<u8> {
    (0..50_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

fn sha(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Requests seen: (path, Range header).
type Log = Arc<Mutex<Vec<(String, Option<String>)>>>;

fn respond(mut stream: TcpStream, log: &Log, body: &[u8]) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut first = String::new();
    if reader.read_line(&mut first).is_err() {
        return;
    }
    let path = first.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut range = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("range: bytes=") {
            range = v.trim().trim_end_matches('-').parse::<usize>().ok();
        }
    }
    let cut_before = log.lock().unwrap().iter().any(|(p, _)| p == "/cut.bin");
    log.lock()
        .unwrap()
        .push((path.clone(), range.map(|r| format!("bytes={r}-"))));
    let (content, cut_at): (Vec<u8>, Option<usize>) = match path.as_str() {
        "/good.bin" => (body.to_vec(), None),
        "/short.bin" => (body[..body.len() / 3].to_vec(), None),
        "/wrong.bin" => {
            let mut b = body.to_vec();
            b[100] ^= 0xff;
            (b, None)
        }
        // the first request breaks off after 20,000 bytes; later ones are served in full
        "/cut.bin" => (body.to_vec(), (!cut_before).then_some(20_000)),
        _ => {
            let _ = stream.write_all(
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
            return;
        }
    };
    let start = range.unwrap_or(0).min(content.len());
    let head = if range.is_some() {
        format!(
            "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {start}-{}/{}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            content.len() - 1,
            content.len(),
            content.len() - start
        )
    } else {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            content.len()
        )
    };
    let _ = stream.write_all(head.as_bytes());
    let end = cut_at.unwrap_or(content.len()).max(start);
    let _ = stream.write_all(&content[start..end]);
    let _ = stream.flush();
}

fn serve() -> (String, Log) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let log: Log = Arc::default();
    let log2 = log.clone();
    std::thread::spawn(move || {
        let body = payload();
        for stream in listener.incoming().flatten() {
            respond(stream, &log2, &body);
        }
    });
    (base, log)
}

fn expected() -> Expected {
    let p = payload();
    Expected {
        bytes: Some(p.len() as u64),
        sha256: Some(sha(&p)),
    }
}

#[test]
fn good_truncated_wrong_cut_and_missing() {
    let (base, log) = serve();
    let dir = tempfile::tempdir().unwrap();
    let exp = expected();
    let seen = Mutex::new(Vec::new());
    let progress = |done: u64, total: Option<u64>| seen.lock().unwrap().push((done, total));

    // good: placed, verified, progress reported up to the total
    let dest = dir.path().join("good.bin");
    download(&format!("{base}/good.bin"), &dest, &exp, &progress).unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), payload());
    assert_eq!(seen.lock().unwrap().last(), Some(&(50_000, Some(50_000))));
    assert!(!dir.path().join("good.bin.part").exists());
    // a second call uses the verified file without the network
    let before = log.lock().unwrap().len();
    download(&format!("{base}/good.bin"), &dest, &exp, &progress).unwrap();
    assert_eq!(log.lock().unwrap().len(), before);

    // truncated on the server: refused, nothing placed
    let dest = dir.path().join("short.bin");
    let err = download(&format!("{base}/short.bin"), &dest, &exp, &progress).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ImportError::Download { .. }), "{msg}");
    assert!(msg.contains("short.bin failed: truncated: the server's file has 16666 bytes, the manifest says 50000"), "{msg}");
    assert!(!dest.exists());

    // wrong checksum: refused with both hashes, the partial file removed
    let dest = dir.path().join("wrong.bin");
    let err = download(&format!("{base}/wrong.bin"), &dest, &exp, &progress).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, ImportError::Data(Error::ChecksumMismatch { .. })),
        "{msg}"
    );
    assert!(
        msg.contains("wrong.bin.part: sha256 mismatch: manifest says"),
        "{msg}"
    );
    assert!(!dest.exists() && !dir.path().join("wrong.bin.part").exists());

    // a connection cut mid-body: refused as truncated, then resumed with a Range request
    let dest = dir.path().join("cut.bin");
    let err = download(&format!("{base}/cut.bin"), &dest, &exp, &progress)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("after 20000 of 50000 bytes") || err.contains("received 20000 of 50000"),
        "{err}"
    );
    assert_eq!(
        std::fs::metadata(dir.path().join("cut.bin.part"))
            .unwrap()
            .len(),
        20_000
    );
    assert!(!dest.exists());
    download(&format!("{base}/cut.bin"), &dest, &exp, &progress).unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), payload());
    let ranges: Vec<_> = log
        .lock()
        .unwrap()
        .iter()
        .filter(|(p, _)| p == "/cut.bin")
        .map(|(_, r)| r.clone())
        .collect();
    assert_eq!(ranges, vec![None, Some("bytes=20000-".to_string())]);

    // HTTP errors name the URL and status
    let err = download(
        &format!("{base}/nope.bin"),
        &dir.path().join("nope.bin"),
        &exp,
        &progress,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("/nope.bin failed: HTTP status 404"), "{err}");

    // an unknown checksum still downloads (the reader then validates the content)
    let dest = dir.path().join("unknown.bin");
    download(
        &format!("{base}/good.bin"),
        &dest,
        &Expected::default(),
        &progress,
    )
    .unwrap();
    assert_eq!(std::fs::read(&dest).unwrap().len(), 50_000);

    // a tampered file already in place is refused, not silently used
    std::fs::write(dir.path().join("good.bin"), b"tampered").unwrap();
    let err = download(
        &format!("{base}/good.bin"),
        &dir.path().join("good.bin"),
        &exp,
        &progress,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("size mismatch"), "{err}");
}

#[test]
fn the_project_manifest_parses_and_lists_the_sources() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/manifest.toml");
    let sources = Sources::read(&path).unwrap();
    let adk = sources.get("mdanalysistests-2.11.0").unwrap();
    assert_eq!(adk.expected.bytes, Some(59_555_441));
    assert_eq!(adk.members.len(), 7);
    assert!(["adk_open.pdb", "adk_closed.pdb"].iter().all(|f| {
        adk.members
            .iter()
            .any(|m| m.file == *f && m.expected.sha256.is_some())
    }));
    for name in [
        "md17-aspirin",
        "md17-ethanol",
        "rmd17",
        "cmu-09-asf",
        "cmu-09-01-amc",
        "cmu-09-11-amc",
    ] {
        assert!(sources.get(name).is_some(), "{name}");
    }
}

/// Serves `body` for every request on 127.0.0.1 (one connection at a time); returns its URL.
fn serve_bytes(body: Vec<u8>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/md17.npz", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 2 {
                line.clear();
            }
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body);
        }
    });
    url
}

/// MD17 from a mirror on loopback: a manifest with the wrong sha256 is refused before anything
/// is placed; with the right one the file is placed and converts.
#[test]
fn obtain_md17_from_a_local_mirror_verifies_then_converts() {
    use traj_data::formats::md17::{Md17, Md17Flavor, write_md17};
    use traj_data::molecule::{
        EgnoMd17Spec, Md17File, Md17Molecule, Md17Setting, convert_md17, obtain_md17,
    };
    let dir = tempfile::tempdir().unwrap();
    let frames = 60;
    let md = Md17 {
        flavor: Md17Flavor::Md17,
        name: None,
        theory: None,
        atomic_numbers: vec![6, 8],
        num_frames: frames,
        positions: (0..frames * 6).map(|i| (i as f64 * 0.1).sin()).collect(),
        energies: None,
        forces: None,
    };
    let npz = dir.path().join("served.npz");
    write_md17(&npz, &md).unwrap();
    let bytes = std::fs::read(&npz).unwrap();
    let url = serve_bytes(bytes.clone());
    let manifest = |sha: &str| {
        let text = format!(
            "version = 1\n[[source]]\nname = \"md17-aspirin\"\nfile = \"md17_aspirin.npz\"\nurl = \"{url}\"\nbytes = {}\nsha256 = \"{sha}\"\n",
            bytes.len()
        );
        Sources::parse(&text, Path::new("manifest.toml")).unwrap()
    };
    let file = Md17File::Original(Md17Molecule::Aspirin);
    let python = Path::new("python3");
    let bad_cache = dir.path().join("bad-cache");
    std::fs::create_dir_all(&bad_cache).unwrap();
    let err = obtain_md17(
        file,
        &manifest(&"0".repeat(64)),
        &bad_cache,
        python,
        &|_, _| {},
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("md17_aspirin.npz.part: sha256 mismatch"),
        "{err}"
    );
    assert!(!bad_cache.join("md17_aspirin.npz").exists());

    let cache = dir.path().join("cache");
    std::fs::create_dir_all(&cache).unwrap();
    let (path, got) =
        obtain_md17(file, &manifest(&sha(&bytes)), &cache, python, &|_, _| {}).unwrap();
    assert_eq!(path, cache.join("md17_aspirin.npz"));
    assert_eq!((got.pinned, got.sha256.clone()), (true, sha(&bytes)));
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
    // the rMD17 archive is not in this manifest: an error naming the known sources
    let err = obtain_md17(
        Md17File::Revised("aspirin".parse().unwrap()),
        &manifest(&sha(&bytes)),
        &cache,
        python,
        &|_, _| {},
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("no source \"rmd17\" in the sources manifest (known: md17-aspirin)"),
        "{err}"
    );

    let out = dir.path().join("out");
    convert_md17(
        &path,
        &file.dataset_name(),
        Md17Setting::Geotdm,
        EgnoMd17Spec::default().seed,
        &out,
    )
    .unwrap();
    let test = traj_data::load_split(&out, traj_data::Split::Test).unwrap();
    assert_eq!(test.num_nodes(), 2);
    assert_eq!(test.meta().name, "md17-aspirin");
}
