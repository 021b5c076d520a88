//! Scalar logs TensorBoard reads: event files in TensorFlow's record format.
//!
//! A file is a sequence of records, each `u64 length (LE) · u32 masked CRC-32C of the length ·
//! data · u32 masked CRC-32C of the data`, where the mask is `((crc >> 15) | (crc << 17)) +
//! 0xa282ead8`. Each record's data is a serialised `tensorflow.Event` protocol buffer; the first
//! carries `file_version = "brain.Event:2"`, the others a `Summary` of `simple_value` scalars:
//!
//! ```text
//! Event   { double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5; }
//! Summary { repeated Value value = 1; }
//! Value   { string tag = 1; float simple_value = 2; }
//! ```
//!
//! No crate that writes these is kept up to date without pulling a protobuf stack and an image
//! codec, and three messages of scalars need a few lines of protobuf wire format: this module
//! writes them directly. `tensorboard --logdir RUN/tensorboard` shows them; the test reads them
//! back with the `tensorboard` Python package's own event reader.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};

const CRC32C: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

fn masked_crc(bytes: &[u8]) -> u32 {
    let c = CRC32C.checksum(bytes);
    c.rotate_right(15).wrapping_add(0xa282_ead8)
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn key(out: &mut Vec<u8>, field: u32, wire: u8) {
    varint(out, (u64::from(field) << 3) | u64::from(wire));
}

fn bytes_field(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    key(out, field, 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// One serialised `Event` with a wall time, a step and either a file version or scalars.
fn event(
    wall_time: f64,
    step: i64,
    file_version: Option<&str>,
    scalars: &[(&str, f64)],
) -> Vec<u8> {
    let mut ev = Vec::new();
    key(&mut ev, 1, 1);
    ev.extend_from_slice(&wall_time.to_le_bytes());
    key(&mut ev, 2, 0);
    varint(&mut ev, step as u64);
    if let Some(v) = file_version {
        bytes_field(&mut ev, 3, v.as_bytes());
    }
    if !scalars.is_empty() {
        let mut summary = Vec::new();
        for (tag, value) in scalars {
            let mut val = Vec::new();
            bytes_field(&mut val, 1, tag.as_bytes());
            key(&mut val, 2, 5);
            val.extend_from_slice(&(*value as f32).to_le_bytes());
            bytes_field(&mut summary, 1, &val);
        }
        bytes_field(&mut ev, 5, &summary);
    }
    ev
}

/// Appends scalar events to a new event file in a log directory.
#[derive(Debug)]
pub struct EventWriter {
    path: PathBuf,
    file: BufWriter<File>,
}

impl EventWriter {
    /// A new event file `events.out.tfevents.<seconds>.<host>.<pid>` in `dir` (created).
    /// Several files in one directory (a resumed run) are read as one log by TensorBoard.
    pub fn create(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let host = std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_owned())
            .ok()
            .filter(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
            .unwrap_or_else(|| "localhost".into());
        let mut n = 0;
        let path = loop {
            let p = dir.join(format!(
                "events.out.tfevents.{}.{host}.{}{}",
                now.as_secs(),
                std::process::id(),
                if n == 0 {
                    String::new()
                } else {
                    format!(".{n}")
                }
            ));
            if !p.exists() {
                break p;
            }
            n += 1;
        };
        let file = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        let mut w = Self {
            path,
            file: BufWriter::new(file),
        };
        w.record(&event(now.as_secs_f64(), 0, Some("brain.Event:2"), &[]))?;
        w.flush()?;
        Ok(w)
    }

    /// The file written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn record(&mut self, data: &[u8]) -> Result<()> {
        let len = (data.len() as u64).to_le_bytes();
        let mut rec = Vec::with_capacity(data.len() + 16);
        rec.extend_from_slice(&len);
        rec.extend_from_slice(&masked_crc(&len).to_le_bytes());
        rec.extend_from_slice(data);
        rec.extend_from_slice(&masked_crc(data).to_le_bytes());
        self.file
            .write_all(&rec)
            .with_context(|| format!("writing {}", self.path.display()))
    }

    /// Scalars `(tag, value)` at `step` (non-finite values are written as they are).
    pub fn scalars(&mut self, step: i64, scalars: &[(&str, f64)]) -> Result<()> {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        self.record(&event(wall, step, None, scalars))
    }

    /// Pushes buffered records to the file (TensorBoard sees them live).
    pub fn flush(&mut self) -> Result<()> {
        self.file
            .flush()
            .with_context(|| format!("writing {}", self.path.display()))
    }
}

impl Drop for EventWriter {
    fn drop(&mut self) {
        let _ = self.file.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CRC-32C check value ("123456789" → 0xE3069283) and the varint encoding of protobuf's
    /// documentation (150 → 96 01).
    #[test]
    fn crc_and_varint_match_their_specifications() {
        assert_eq!(CRC32C.checksum(b"123456789"), 0xE306_9283);
        let mut v = Vec::new();
        varint(&mut v, 150);
        assert_eq!(v, [0x96, 0x01]);
    }

    /// The file reads back through the `tensorboard` package's own reader (the venv has it).
    #[test]
    fn tensorboard_reads_the_events_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = {
            let mut w = EventWriter::create(dir.path()).unwrap();
            w.scalars(1, &[("loss/total", 0.5), ("lr", 1e-3)]).unwrap();
            w.scalars(2, &[("loss/total", 0.25)]).unwrap();
            w.path().to_owned()
        };
        let script = r#"
import sys
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
for ev in EventFileLoader(sys.argv[1]).Load():
    if ev.HasField("file_version"):
        print("version", ev.file_version)
    for v in ev.summary.value:
        val = v.simple_value if v.HasField("simple_value") else v.tensor.float_val[0]
        print(ev.step, v.tag, repr(val))
"#;
        let out = std::process::Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(&path)
            .output()
            .expect("python3 (the project venv, with tensorboard)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        assert_eq!(
            text.lines().collect::<Vec<_>>(),
            [
                "version brain.Event:2",
                "1 loss/total 0.5",
                "1 lr 0.0010000000474974513",
                "2 loss/total 0.25"
            ],
            "{text}"
        );
    }
}
