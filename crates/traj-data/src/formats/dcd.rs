//! DCD trajectories (CHARMM c35/c36, NAMD/VMD/LAMMPS "version 24", X-PLOR), either byte order.
//!
//! # Layout
//! A DCD file is a sequence of Fortran unformatted records: each record is an `int32` byte count,
//! the bytes, and the same count again. The byte order is the one in which the first `int32`
//! reads 84.
//!
//! | record | content |
//! |---|---|
//! | 1 (84 bytes) | `CORD`, then 20 `int32` ICNTRL: `[0]` NSET, `[1]` ISTART, `[2]` NSAVC, `[3]` NSTEP, `[8]` NAMNF (fixed atoms), `[9]` DELTA (`float32`; `float64` over `[9..11]` when `[19] = 0`, X-PLOR), `[10]` unit-cell block present, `[11]` 4th dimension present, `[19]` CHARMM version (0 X-PLOR, 24 NAMD/VMD, 35/36 CHARMM) |
//! | 2 | `int32` NTITLE, then 80-byte title lines (the trailing count is not checked: real files get it wrong) |
//! | 3 (4 bytes) | `int32` NATOM |
//! | 4 (if NAMNF > 0) | `NATOM − NAMNF` 1-based `int32` indices of the free atoms |
//! | per frame | optional cell record (6 `float64`: `A, γ, B, β, α, C`), then X, Y and Z records of `float32` (Å), then an optional 4th-dimension record |
//!
//! The first frame holds every atom; with fixed atoms (NAMNF > 0) later frames hold only the free
//! atoms, and the fixed ones keep their first-frame positions.
//!
//! NSET in the header is not trusted (a real CHARMM file says 500 and holds 98 frames): the frame
//! count follows from the file size, and a file that does not end on a frame boundary is rejected
//! as truncated.

use std::path::Path;

use crate::fsutil::atomic_write;
use crate::import_error::{ImportError, ImportResult};

const FORMAT: &str = "DCD";

/// The largest trajectory (positions in memory, `T · N · 3 · 4` bytes) [`read_dcd`] expands.
pub const MAX_IN_MEMORY_BYTES: u128 = 8 << 30;

/// One AKMA time unit (CHARMM's internal time unit) in femtoseconds.
pub const AKMA_FS: f64 = 48.88821;

/// Byte order of a binary file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endian {
    /// Little-endian.
    Little,
    /// Big-endian.
    Big,
}

/// The header of a DCD file.
#[derive(Clone, Debug, PartialEq)]
pub struct DcdHeader {
    /// The file's byte order.
    pub endian: Endian,
    /// ICNTRL\[19\]: 0 for X-PLOR, 24 for NAMD/VMD/LAMMPS, 35/36/... for CHARMM.
    pub charmm_version: i32,
    /// NSET as written in the header (often wrong; see [`Dcd::num_frames`] for the real count).
    pub nset_in_header: i32,
    /// ISTART: the step of the first frame.
    pub istart: i32,
    /// NSAVC: steps between saved frames.
    pub nsavc: i32,
    /// NSTEP: the total number of steps.
    pub nstep: i32,
    /// DELTA: the integration time step in AKMA units ([`AKMA_FS`] fs each).
    pub delta_akma: f64,
    /// Whether each frame starts with a unit-cell record.
    pub has_cell: bool,
    /// Whether each frame ends with a 4th-dimension record (read past, not kept).
    pub has_4d: bool,
    /// NATOM.
    pub num_atoms: usize,
    /// With fixed atoms: the 0-based indices of the free atoms (ascending as in the file);
    /// `None` when every atom is free.
    pub free_atoms: Option<Vec<usize>>,
    /// The title lines (trailing blanks and NULs removed).
    pub title: Vec<String>,
}

impl DcdHeader {
    /// A CHARMM c35 header for `num_atoms` atoms: little-endian, no cell, no fixed atoms.
    pub fn charmm(num_atoms: usize) -> Self {
        Self {
            endian: Endian::Little,
            charmm_version: 35,
            nset_in_header: 0,
            istart: 0,
            nsavc: 1,
            nstep: 0,
            delta_akma: 1.0 / AKMA_FS,
            has_cell: false,
            has_4d: false,
            num_atoms,
            free_atoms: None,
            title: Vec::new(),
        }
    }

    /// Number of atoms stored in frames after the first.
    pub fn num_free_atoms(&self) -> usize {
        self.free_atoms.as_ref().map_or(self.num_atoms, Vec::len)
    }

    /// Time between saved frames in fs: `DELTA · NSAVC · 48.88821`.
    pub fn frame_interval_fs(&self) -> f64 {
        self.delta_akma * f64::from(self.nsavc) * AKMA_FS
    }

    fn frame_bytes(&self, atoms: usize) -> usize {
        let coord = 4 * atoms + 8;
        (if self.has_cell { 56 } else { 0 }) + 3 * coord + if self.has_4d { coord } else { 0 }
    }
}

/// A DCD trajectory in memory.
///
/// # Shapes
/// - positions: `T × N × 3` `f32` (Å), row-major (frame, atom, xyz)
/// - cells: `T` records of 6 `f64` in the file's order `[A, γ, B, β, α, C]`
#[derive(Clone, Debug, PartialEq)]
pub struct Dcd {
    /// The header.
    pub header: DcdHeader,
    num_frames: usize,
    positions: Vec<f32>,
    cells: Option<Vec<[f64; 6]>>,
}

impl Dcd {
    /// A trajectory from `T × N × 3` positions (and `T` cells when `header.has_cell`).
    ///
    /// # Errors
    /// [`ImportError::Unusable`] (naming `"<memory>"`) when the lengths disagree with the header.
    pub fn new(
        header: DcdHeader,
        positions: Vec<f32>,
        cells: Option<Vec<[f64; 6]>>,
    ) -> ImportResult<Self> {
        let here = Path::new("<memory>");
        let n = header.num_atoms;
        if n == 0 || !positions.len().is_multiple_of(3 * n) {
            return Err(ImportError::unusable(
                here,
                format!(
                    "{} coordinates are not a whole number of frames of {n} atoms",
                    positions.len()
                ),
            ));
        }
        let num_frames = positions.len() / (3 * n);
        if cells.as_ref().map(Vec::len) != header.has_cell.then_some(num_frames) {
            return Err(ImportError::unusable(
                here,
                "one unit cell per frame is required exactly when the header has a cell block",
            ));
        }
        Ok(Self {
            header,
            num_frames,
            positions,
            cells,
        })
    }

    /// Number of frames `T` (from the file size, not NSET).
    pub fn num_frames(&self) -> usize {
        self.num_frames
    }

    /// Number of atoms `N`.
    pub fn num_atoms(&self) -> usize {
        self.header.num_atoms
    }

    /// All positions, `T × N × 3`.
    pub fn positions(&self) -> &[f32] {
        &self.positions
    }

    /// Positions of frame `t`, `N × 3`.
    ///
    /// # Panics
    /// If `t >= self.num_frames()`.
    #[track_caller]
    pub fn frame(&self, t: usize) -> &[f32] {
        let n3 = 3 * self.header.num_atoms;
        &self.positions[t * n3..(t + 1) * n3]
    }

    /// The raw unit-cell records, `[A, γ, B, β, α, C]` per frame, when the file has them.
    pub fn cells(&self) -> Option<&[[f64; 6]]> {
        self.cells.as_deref()
    }

    /// The unit cell of frame `t` as `[a, b, c, α, β, γ]` (Å, degrees), when the file has cells.
    /// Angles written as cosines (all within ±1, as CHARMM and NAMD do) are converted to degrees.
    /// CHARMM ≥ c36 may store a symmetric box matrix instead; use [`Dcd::cells`] for those.
    ///
    /// # Panics
    /// If `t >= self.num_frames()`.
    #[track_caller]
    pub fn unit_cell(&self, t: usize) -> Option<[f64; 6]> {
        let [a, gamma, b, beta, alpha, c] = self.cells.as_ref()?[t];
        let mut angles = [alpha, beta, gamma];
        if angles.iter().all(|x| x.abs() <= 1.0) {
            angles = angles.map(|x| x.acos().to_degrees());
        }
        Some([a, b, c, angles[0], angles[1], angles[2]])
    }
}

/// A bounds-checked cursor over the bytes of a file.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    endian: Endian,
    path: &'a Path,
}

impl<'a> Cursor<'a> {
    fn bad(&self, problem: impl Into<String>) -> ImportError {
        ImportError::malformed(self.path, FORMAT, problem)
    }

    fn take(&mut self, n: usize, what: &str) -> ImportResult<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        match end {
            Some(end) => {
                let s = &self.bytes[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(self.bad(format!(
                "{what} is truncated (needs {n} bytes at offset {}, the file has {} bytes)",
                self.pos,
                self.bytes.len()
            ))),
        }
    }

    fn i32(&mut self, what: &str) -> ImportResult<i32> {
        let b: [u8; 4] = self.take(4, what)?.try_into().expect("4 bytes");
        Ok(match self.endian {
            Endian::Little => i32::from_le_bytes(b),
            Endian::Big => i32::from_be_bytes(b),
        })
    }

    /// One Fortran record; `expected` checks the leading count, `check_end` the trailing one.
    fn record(
        &mut self,
        expected: Option<usize>,
        check_end: bool,
        what: &str,
    ) -> ImportResult<&'a [u8]> {
        let at = self.pos;
        let len = self.i32(what)?;
        let len = usize::try_from(len).map_err(|_| {
            self.bad(format!(
                "{what}: negative record length {len} at offset {at}"
            ))
        })?;
        if let Some(e) = expected
            && e != len
        {
            return Err(self.bad(format!(
                "{what}: record length {len} at offset {at}, expected {e}"
            )));
        }
        let body = self.take(len, what)?;
        let end_at = self.pos;
        let end = self.i32(what)?;
        if check_end && usize::try_from(end).ok() != Some(len) {
            return Err(self.bad(format!(
                "{what}: record starts with length {len} (offset {at}) but ends with {end} (offset {end_at})"
            )));
        }
        Ok(body)
    }
}

fn get_i32(b: &[u8], i: usize, endian: Endian) -> i32 {
    let w: [u8; 4] = b[4 * i..4 * i + 4].try_into().expect("4 bytes");
    match endian {
        Endian::Little => i32::from_le_bytes(w),
        Endian::Big => i32::from_be_bytes(w),
    }
}

fn get_f32(b: &[u8], i: usize, endian: Endian) -> f32 {
    f32::from_bits(get_i32(b, i, endian) as u32)
}

fn get_f64(b: &[u8], i: usize, endian: Endian) -> f64 {
    let w: [u8; 8] = b[8 * i..8 * i + 8].try_into().expect("8 bytes");
    match endian {
        Endian::Little => f64::from_le_bytes(w),
        Endian::Big => f64::from_be_bytes(w),
    }
}

/// Reads a DCD file.
///
/// # Errors
/// [`ImportError::Malformed`] naming the file and the problem (bad magic or byte order, bad
/// record lengths, a fixed-atom list out of range, a truncated header or frame, trailing bytes
/// that are not a whole frame); I/O errors.
pub fn read_dcd(path: impl AsRef<Path>) -> ImportResult<Dcd> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| ImportError::io(path, "read", e))?;
    parse_dcd(&bytes, path)
}

/// Parses the bytes of a DCD file; `path` is used in error messages only.
///
/// # Errors
/// As [`read_dcd`].
pub fn parse_dcd(bytes: &[u8], path: &Path) -> ImportResult<Dcd> {
    let bad = |problem: String| ImportError::malformed(path, FORMAT, problem);
    let first: [u8; 4] = bytes
        .get(..4)
        .ok_or_else(|| {
            bad(format!(
                "only {} bytes, too short for a header",
                bytes.len()
            ))
        })?
        .try_into()
        .expect("4 bytes");
    let endian = if i32::from_le_bytes(first) == 84 {
        Endian::Little
    } else if i32::from_be_bytes(first) == 84 {
        Endian::Big
    } else if bytes.len() >= 8 && u64::from_le_bytes(bytes[..8].try_into().expect("8")) == 84 {
        return Err(bad(
            "64-bit record markers are not supported (rewrite the file with 32-bit markers)".into(),
        ));
    } else {
        return Err(bad(format!(
            "the first record length is {first:?}, not 84 in either byte order"
        )));
    };
    let mut cur = Cursor {
        bytes,
        pos: 0,
        endian,
        path,
    };
    let rec = cur.record(Some(84), true, "header record")?;
    match &rec[..4] {
        b"CORD" => {}
        b"VELD" => return Err(bad("a velocity DCD (VELD), not coordinates (CORD)".into())),
        other => {
            return Err(bad(format!(
                "magic is {:?}, expected \"CORD\"",
                String::from_utf8_lossy(other)
            )));
        }
    }
    let icntrl: Vec<i32> = (0..20).map(|i| get_i32(&rec[4..], i, endian)).collect();
    let charmm_version = icntrl[19];
    let (delta_akma, has_cell, has_4d) = if charmm_version == 0 {
        // X-PLOR: DELTA is a float64 over ICNTRL[9..11]; no cell or 4th dimension
        (get_f64(&rec[4 + 36..4 + 44], 0, endian), false, false)
    } else {
        (
            f64::from(get_f32(&rec[4..], 9, endian)),
            icntrl[10] != 0,
            icntrl[11] != 0,
        )
    };
    let namnf = icntrl[8];

    // title: NTITLE lines of 80 bytes inside a record whose trailing count is not trusted
    let title_rec = cur.record(None, false, "title record")?;
    if title_rec.len() < 4 {
        return Err(bad(format!(
            "title record of {} bytes has no NTITLE",
            title_rec.len()
        )));
    }
    let ntitle = get_i32(title_rec, 0, endian);
    let lines = usize::try_from(ntitle)
        .map_err(|_| bad(format!("negative NTITLE {ntitle}")))?
        .min((title_rec.len() - 4) / 80);
    let title = (0..lines)
        .map(|i| {
            let raw = &title_rec[4 + 80 * i..4 + 80 * (i + 1)];
            let end = raw.iter().position(|&c| c == 0).unwrap_or(raw.len());
            String::from_utf8_lossy(&raw[..end]).trim_end().to_string()
        })
        .collect();

    let natom_rec = cur.record(Some(4), true, "NATOM record")?;
    let natom = get_i32(natom_rec, 0, endian);
    let num_atoms = usize::try_from(natom)
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| bad(format!("NATOM is {natom}, must be >= 1")))?;
    let free_atoms = if namnf == 0 {
        None
    } else {
        let fixed = usize::try_from(namnf)
            .ok()
            .filter(|&f| f < num_atoms)
            .ok_or_else(|| {
                bad(format!(
                    "NAMNF (fixed atoms) is {namnf}, must be in 0..{num_atoms}"
                ))
            })?;
        let nfree = num_atoms - fixed;
        let rec = cur.record(Some(4 * nfree), true, "free-atom index record")?;
        let mut free = Vec::with_capacity(nfree);
        for i in 0..nfree {
            let v = get_i32(rec, i, endian);
            let idx = usize::try_from(v)
                .ok()
                .filter(|&v| (1..=num_atoms).contains(&v))
                .ok_or_else(|| {
                    bad(format!(
                        "free-atom index {v} (entry {i}) is outside 1..={num_atoms}"
                    ))
                })?;
            free.push(idx - 1);
        }
        let mut sorted = free.clone();
        sorted.sort_unstable();
        if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
            return Err(bad(format!("free-atom index {} is listed twice", w[0] + 1)));
        }
        Some(free)
    };
    let header = DcdHeader {
        endian,
        charmm_version,
        nset_in_header: icntrl[0],
        istart: icntrl[1],
        nsavc: icntrl[2],
        nstep: icntrl[3],
        delta_akma,
        has_cell,
        has_4d,
        num_atoms,
        free_atoms,
        title,
    };

    // frame count from the file size
    let first_bytes = header.frame_bytes(num_atoms);
    let later_bytes = header.frame_bytes(header.num_free_atoms());
    let rest = bytes.len() - cur.pos;
    let num_frames = if rest == 0 {
        0
    } else if rest < first_bytes {
        return Err(bad(format!(
            "frame 0 is truncated: {rest} bytes after the header at offset {}, a frame needs {first_bytes}",
            cur.pos
        )));
    } else {
        let after = rest - first_bytes;
        if !after.is_multiple_of(later_bytes) {
            return Err(bad(format!(
                "the file is truncated or has trailing bytes: {} bytes after frame 0 are not a whole number of {later_bytes}-byte frames ({} whole frames and {} bytes)",
                after,
                after / later_bytes,
                after % later_bytes
            )));
        }
        1 + after / later_bytes
    };

    let n = num_atoms;
    // with fixed atoms, frames on disk can be far smaller than in memory
    let in_memory = (num_frames as u128) * (n as u128) * 12;
    if in_memory > MAX_IN_MEMORY_BYTES {
        return Err(bad(format!(
            "{num_frames} frames of {n} atoms would need {:.1} GiB in memory (limit {} GiB)",
            in_memory as f64 / (1u64 << 30) as f64,
            MAX_IN_MEMORY_BYTES >> 30
        )));
    }
    let mut positions = vec![0f32; num_frames * n * 3];
    let mut cells = has_cell.then(|| Vec::with_capacity(num_frames));
    for t in 0..num_frames {
        let frame_err = |e: ImportError| match e {
            ImportError::Malformed {
                path,
                format,
                problem,
            } => ImportError::Malformed {
                path,
                format,
                problem: format!("frame {t}: {problem}"),
            },
            e => e,
        };
        if let Some(cells) = &mut cells {
            let rec = cur
                .record(Some(48), true, "unit-cell record")
                .map_err(frame_err)?;
            let mut c = [0.0; 6];
            for (i, v) in c.iter_mut().enumerate() {
                *v = get_f64(rec, i, endian);
            }
            cells.push(c);
        }
        let atoms: Option<&[usize]> = if t == 0 {
            None
        } else {
            header.free_atoms.as_deref()
        };
        let count = atoms.map_or(n, <[usize]>::len);
        let (before, frame) = positions.split_at_mut(t * n * 3);
        let frame = &mut frame[..n * 3];
        if atoms.is_some() {
            // fixed atoms keep their first-frame positions
            frame.copy_from_slice(&before[..n * 3]);
        }
        for (axis, what) in ["X record", "Y record", "Z record"].into_iter().enumerate() {
            let rec = cur.record(Some(4 * count), true, what).map_err(frame_err)?;
            match atoms {
                None => {
                    for i in 0..n {
                        frame[3 * i + axis] = get_f32(rec, i, endian);
                    }
                }
                Some(free) => {
                    for (k, &i) in free.iter().enumerate() {
                        frame[3 * i + axis] = get_f32(rec, k, endian);
                    }
                }
            }
        }
        if header.has_4d {
            cur.record(Some(4 * count), true, "4th-dimension record")
                .map_err(frame_err)?;
        }
    }
    Ok(Dcd {
        header,
        num_frames,
        positions,
        cells,
    })
}

/// Encodes a DCD file in `dcd.header`'s byte order and variant, with NSET set to the frame count.
/// Fixed atoms (when `free_atoms` is set) are written once, in the first frame; 4th-dimension
/// records (when `has_4d`) are written as zeros.
pub fn encode_dcd(dcd: &Dcd) -> Vec<u8> {
    let h = &dcd.header;
    let e = h.endian;
    let i32b = |v: i32| match e {
        Endian::Little => v.to_le_bytes(),
        Endian::Big => v.to_be_bytes(),
    };
    let mut out = Vec::new();
    let record = |out: &mut Vec<u8>, body: &[u8]| {
        let len = i32b(body.len() as i32);
        out.extend_from_slice(&len);
        out.extend_from_slice(body);
        out.extend_from_slice(&len);
    };
    let mut rec = b"CORD".to_vec();
    let mut icntrl = [0i32; 20];
    icntrl[0] = dcd.num_frames as i32;
    icntrl[1] = h.istart;
    icntrl[2] = h.nsavc;
    icntrl[3] = h.nstep;
    icntrl[8] = h
        .free_atoms
        .as_ref()
        .map_or(0, |f| (h.num_atoms - f.len()) as i32);
    icntrl[19] = h.charmm_version;
    if h.charmm_version != 0 {
        icntrl[9] = (h.delta_akma as f32).to_bits() as i32;
        icntrl[10] = i32::from(h.has_cell);
        icntrl[11] = i32::from(h.has_4d);
    }
    for v in icntrl {
        rec.extend_from_slice(&i32b(v));
    }
    if h.charmm_version == 0 {
        let d = match e {
            Endian::Little => h.delta_akma.to_le_bytes(),
            Endian::Big => h.delta_akma.to_be_bytes(),
        };
        rec[4 + 36..4 + 44].copy_from_slice(&d);
    }
    record(&mut out, &rec);
    let mut title = i32b(h.title.len() as i32).to_vec();
    for line in &h.title {
        let mut l = [b' '; 80];
        let n = line.len().min(80);
        l[..n].copy_from_slice(&line.as_bytes()[..n]);
        title.extend_from_slice(&l);
    }
    record(&mut out, &title);
    record(&mut out, &i32b(h.num_atoms as i32));
    if let Some(free) = &h.free_atoms {
        let body: Vec<u8> = free.iter().flat_map(|&i| i32b(i as i32 + 1)).collect();
        record(&mut out, &body);
    }
    let n = h.num_atoms;
    for t in 0..dcd.num_frames {
        if let Some(cells) = &dcd.cells {
            let body: Vec<u8> = cells[t]
                .iter()
                .flat_map(|v| match e {
                    Endian::Little => v.to_le_bytes(),
                    Endian::Big => v.to_be_bytes(),
                })
                .collect();
            record(&mut out, &body);
        }
        let frame = dcd.frame(t);
        let atoms: Vec<usize> = match (&h.free_atoms, t) {
            (Some(free), t) if t > 0 => free.clone(),
            _ => (0..n).collect(),
        };
        for axis in 0..3 {
            let body: Vec<u8> = atoms
                .iter()
                .flat_map(|&i| i32b(frame[3 * i + axis].to_bits() as i32))
                .collect();
            record(&mut out, &body);
        }
        if h.has_4d {
            record(&mut out, &vec![0u8; 4 * atoms.len()]);
        }
    }
    out
}

/// Writes a DCD file atomically (see [`encode_dcd`]).
///
/// # Errors
/// I/O errors naming the file.
pub fn write_dcd(path: impl AsRef<Path>, dcd: &Dcd) -> ImportResult<()> {
    Ok(atomic_write(path.as_ref(), &encode_dcd(dcd))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(header: DcdHeader, frames: usize) -> Dcd {
        let n = header.num_atoms;
        let mut pos: Vec<f32> = (0..frames * n * 3).map(|i| i as f32 * 0.25 - 3.0).collect();
        if let Some(free) = &header.free_atoms {
            // fixed atoms do not move
            for t in 1..frames {
                for i in (0..n).filter(|i| !free.contains(i)) {
                    for k in 0..3 {
                        pos[(t * n + i) * 3 + k] = pos[i * 3 + k];
                    }
                }
            }
        }
        let cells = header.has_cell.then(|| {
            (0..frames)
                .map(|t| [10.0 + t as f64, 0.0, 11.0, 0.0, 0.0, 12.0])
                .collect()
        });
        Dcd::new(header, pos, cells).unwrap()
    }

    #[test]
    fn round_trip_all_variants() {
        for endian in [Endian::Little, Endian::Big] {
            for version in [0, 24, 35, 36] {
                for has_cell in [false, true] {
                    for fixed in [false, true] {
                        let mut h = DcdHeader::charmm(5);
                        h.endian = endian;
                        h.charmm_version = version;
                        h.has_cell = has_cell && version != 0;
                        h.has_4d = version == 36;
                        h.free_atoms = fixed.then(|| vec![0, 2, 3]);
                        h.title = vec!["* test".into(), "* second".into()];
                        h.delta_akma = 0.5;
                        let dcd = sample(h, 4);
                        let bytes = encode_dcd(&dcd);
                        let back = parse_dcd(&bytes, Path::new("t.dcd")).unwrap();
                        let mut expected = dcd.clone();
                        expected.header.nset_in_header = 4;
                        assert_eq!(
                            back, expected,
                            "{endian:?} v{version} cell {has_cell} fixed {fixed}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn nset_is_not_trusted_and_trailing_bytes_are_rejected() {
        let dcd = sample(DcdHeader::charmm(3), 3);
        let mut bytes = encode_dcd(&dcd);
        bytes[8..12].copy_from_slice(&500i32.to_le_bytes());
        let back = parse_dcd(&bytes, Path::new("a.dcd")).unwrap();
        assert_eq!((back.num_frames(), back.header.nset_in_header), (3, 500));
        bytes.truncate(bytes.len() - 1);
        let err = parse_dcd(&bytes, Path::new("a.dcd"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("a.dcd: not a valid DCD file: the file is truncated"),
            "{err}"
        );
    }

    #[test]
    fn cosine_angles_become_degrees() {
        let mut h = DcdHeader::charmm(1);
        h.has_cell = true;
        let dcd = Dcd::new(
            h,
            vec![0.0; 3],
            Some(vec![[10.0, 0.5, 20.0, 0.0, 0.0, 30.0]]),
        )
        .unwrap();
        let c = dcd.unit_cell(0).unwrap();
        assert_eq!(&c[..3], &[10.0, 20.0, 30.0]);
        assert!(
            (c[3] - 90.0).abs() < 1e-12 && (c[5] - 60.0).abs() < 1e-12,
            "{c:?}"
        );
    }
}
