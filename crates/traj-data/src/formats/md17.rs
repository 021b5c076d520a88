//! MD17 (sGDML) and revised MD17 `.npz` files.
//!
//! | | MD17 (sGDML) | rMD17 |
//! |---|---|---|
//! | positions (M, N, 3), Å | `R` | `coords` |
//! | atomic numbers (N,) | `z` | `nuclear_charges` |
//! | energies (M,) or (M, 1), kcal/mol | `E` | `energies` |
//! | forces (M, N, 3), kcal/mol/Å | `F` | `forces` |
//! | strings | `name`, `theory` (optional) | – |
//!
//! Energies and forces are optional to the reader (a trajectory without them is still a
//! trajectory); positions and atomic numbers are required. The writer writes the MD17 keys.

use std::path::Path;

use crate::error::{Element, check_finite};
use crate::formats::npz::{Npz, NpzArray, write_npz};
use crate::import_error::{ImportError, ImportResult};

const FORMAT: &str = "MD17 npz";

/// Which key set a file used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Md17Flavor {
    /// sGDML keys `R`, `z`, `E`, `F`.
    Md17,
    /// rMD17 keys `coords`, `nuclear_charges`, `energies`, `forces`.
    Revised,
}

/// An MD17-format molecular dynamics trajectory.
///
/// # Shapes
/// - positions, forces: `M × N × 3` (frame, atom, xyz), row-major
/// - atomic numbers: `N`; energies: `M`
#[derive(Clone, Debug, PartialEq)]
pub struct Md17 {
    /// Which keys the file used.
    pub flavor: Md17Flavor,
    /// `name` string, if present.
    pub name: Option<String>,
    /// `theory` string (e.g. `PBE+vdW-TS`, `GFN2-xTB`), if present.
    pub theory: Option<String>,
    /// Atomic numbers `z`, each in 1..=118.
    pub atomic_numbers: Vec<u8>,
    /// Number of frames `M`.
    pub num_frames: usize,
    /// Positions in Å.
    pub positions: Vec<f64>,
    /// Energies in kcal/mol.
    pub energies: Option<Vec<f64>>,
    /// Forces in kcal/mol/Å.
    pub forces: Option<Vec<f64>>,
}

impl Md17 {
    /// Number of atoms `N`.
    pub fn num_atoms(&self) -> usize {
        self.atomic_numbers.len()
    }

    /// Keeps the first `num_frames` frames (positions, energies, forces); a no-op when the
    /// trajectory is not longer.
    pub fn truncate(&mut self, num_frames: usize) {
        if self.num_frames <= num_frames {
            return;
        }
        let n3 = self.num_atoms() * 3;
        self.num_frames = num_frames;
        self.positions.truncate(num_frames * n3);
        if let Some(e) = self.energies.as_mut() {
            e.truncate(num_frames);
        }
        if let Some(f) = self.forces.as_mut() {
            f.truncate(num_frames * n3);
        }
    }
}

/// Reads an MD17 or rMD17 `.npz`.
///
/// # Errors
/// [`ImportError::Malformed`] naming the file and the array (missing positions or atomic numbers,
/// wrong shapes, atomic numbers outside 1..=118, corrupt archive); a NaN/Inf in positions,
/// energies or forces as [`crate::Error::NonFinite`] with frame, atom and component.
pub fn read_md17(path: impl AsRef<Path>) -> ImportResult<Md17> {
    let path = path.as_ref();
    let mut npz = Npz::open(path)?;
    decode(&mut npz)
}

/// Parses the bytes of an MD17 `.npz`; `path` is used in error messages only.
///
/// # Errors
/// As [`read_md17`].
pub fn parse_md17(bytes: &[u8], path: &Path) -> ImportResult<Md17> {
    let mut npz = Npz::from_bytes(bytes, path)?;
    decode(&mut npz)
}

fn decode<R: std::io::Read + std::io::Seek>(npz: &mut Npz<R>) -> ImportResult<Md17> {
    let path = npz.path().to_path_buf();
    let bad = |problem: String| ImportError::malformed(&path, FORMAT, problem);
    let names = npz.names();
    let has = |k: &str| names.iter().any(|n| n == k);
    let (flavor, [kr, kz, ke, kf]) = if has("R") {
        (Md17Flavor::Md17, ["R", "z", "E", "F"])
    } else if has("coords") {
        (
            Md17Flavor::Revised,
            ["coords", "nuclear_charges", "energies", "forces"],
        )
    } else {
        return Err(bad(format!(
            "no positions: neither `R` (MD17) nor `coords` (rMD17) among the arrays {names:?}"
        )));
    };
    let r = npz.require_f64(kr)?;
    let z = npz
        .i64(kz)?
        .ok_or_else(|| bad(format!("array `{kz}` (atomic numbers) is missing")))?;
    let n = z.data.len();
    if z.shape.len() != 1 || n == 0 {
        return Err(bad(format!(
            "`{kz}` has shape {:?}, expected (N,) with N >= 1",
            z.shape
        )));
    }
    if r.shape.len() != 3 || r.shape[1] != n || r.shape[2] != 3 || r.shape[0] == 0 {
        return Err(bad(format!(
            "`{kr}` has shape {:?}, expected (M, {n}, 3) with M >= 1",
            r.shape
        )));
    }
    let m = r.shape[0];
    let atomic_numbers = z
        .data
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            u8::try_from(v)
                .ok()
                .filter(|v| (1..=118).contains(v))
                .ok_or_else(|| {
                    bad(format!(
                        "`{kz}`[{i}] = {v} is not an atomic number (1..=118)"
                    ))
                })
        })
        .collect::<ImportResult<Vec<u8>>>()?;
    let frame = |i: usize| Element::Frame {
        frame: i / (3 * n),
        node: (i / 3) % n,
        component: i % 3,
    };
    check_finite("positions", &r.data, frame).map_err(|e| ImportError::in_file(&path, e))?;
    let energies = match npz.f64(ke)? {
        None => None,
        Some(e) => {
            let ok = e.data.len() == m
                && (e.shape.len() == 1 || (e.shape.len() == 2 && e.shape[1] == 1));
            if !ok {
                return Err(bad(format!(
                    "`{ke}` has shape {:?}, expected ({m},) or ({m}, 1)",
                    e.shape
                )));
            }
            check_finite("energies", &e.data, |index| Element::Value { index })
                .map_err(|err| ImportError::in_file(&path, err))?;
            Some(e.data)
        }
    };
    let forces = match npz.f64(kf)? {
        None => None,
        Some(f) => {
            if f.shape != r.shape {
                return Err(bad(format!(
                    "`{kf}` has shape {:?}, expected {:?} like `{kr}`",
                    f.shape, r.shape
                )));
            }
            check_finite("forces", &f.data, frame).map_err(|e| ImportError::in_file(&path, e))?;
            Some(f.data)
        }
    };
    Ok(Md17 {
        flavor,
        name: npz.string("name"),
        theory: npz.string("theory"),
        atomic_numbers,
        num_frames: m,
        positions: r.data,
        energies,
        forces,
    })
}

/// Writes `md17` as an sGDML-format `.npz` (`R`, `z`, `E`, `F`, `name`, `theory`), atomically.
///
/// # Errors
/// I/O errors naming the file.
pub fn write_md17(path: impl AsRef<Path>, md17: &Md17) -> ImportResult<()> {
    let (m, n) = (md17.num_frames as u64, md17.num_atoms() as u64);
    let z: Vec<i64> = md17.atomic_numbers.iter().map(|&v| i64::from(v)).collect();
    let mut arrays = vec![
        NpzArray::F64("R", vec![m, n, 3], &md17.positions),
        NpzArray::I64("z", vec![n], &z),
    ];
    if let Some(e) = &md17.energies {
        arrays.push(NpzArray::F64("E", vec![m, 1], e));
    }
    if let Some(f) = &md17.forces {
        arrays.push(NpzArray::F64("F", vec![m, n, 3], f));
    }
    if let Some(s) = &md17.name {
        arrays.push(NpzArray::Str("name", s));
    }
    if let Some(s) = &md17.theory {
        arrays.push(NpzArray::Str("theory", s));
    }
    write_npz(path, &arrays)
}

/// Concatenates the chunk files `chunk_00000.npz`, `chunk_00001.npz`, … of `dir` (each with the
/// MD17 keys `R`, `z`, `E`, `F`, as written by `datasets/md17_xtb.py`) into one trajectory.
///
/// # Errors
/// [`ImportError::Unusable`] when there are no chunks or their atoms differ; reader errors naming
/// the chunk.
pub fn read_md17_chunks(dir: &Path) -> ImportResult<Md17> {
    let mut all: Option<Md17> = None;
    for k in 0.. {
        let p = dir.join(format!("chunk_{k:05}.npz"));
        if !p.exists() {
            break;
        }
        let c = read_md17(&p)?;
        match &mut all {
            None => all = Some(c),
            Some(a) => {
                if a.atomic_numbers != c.atomic_numbers {
                    return Err(ImportError::unusable(
                        &p,
                        "atomic numbers differ from the first chunk",
                    ));
                }
                a.num_frames += c.num_frames;
                a.positions.extend(c.positions);
                match (&mut a.energies, c.energies) {
                    (Some(e), Some(ce)) => e.extend(ce),
                    _ => a.energies = None,
                }
                match (&mut a.forces, c.forces) {
                    (Some(f), Some(cf)) => f.extend(cf),
                    _ => a.forces = None,
                }
            }
        }
    }
    all.ok_or_else(|| ImportError::unusable(dir, "no chunk_00000.npz"))
}
