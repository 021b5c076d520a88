//! PSF topologies (CHARMM, X-PLOR and NAMD flavours): atoms with segment, residue, name, type,
//! charge and mass, and the bond list.
//!
//! # Layout
//! A text file starting with `PSF` (optionally followed by flags such as `EXT`, `CMAP`, `CHEQ`),
//! then sections, each introduced by a line `<count> !<NAME>[: comment]`:
//! - `!NTITLE`: `count` remark lines;
//! - `!NATOM`: `count` lines `id segid resid resname name type charge mass imove [...]`
//!   (whitespace-separated; `type` is a number in CHARMM files and a name in X-PLOR/NAMD ones);
//! - `!NBOND`: `count` pairs of 1-based atom ids, four pairs to a line.
//!
//! Later sections (angles, dihedrals, ...) are not read.

use std::path::Path;

use crate::import_error::{ImportError, ImportResult};

const FORMAT: &str = "PSF";

/// One atom of a PSF topology.
#[derive(Clone, Debug, PartialEq)]
pub struct PsfAtom {
    /// Segment name (e.g. `4AKE`).
    pub segid: String,
    /// Residue number as written (may repeat across segments).
    pub resid: i64,
    /// Residue name (e.g. `MET`).
    pub resname: String,
    /// Atom name (e.g. `CA`).
    pub name: String,
    /// Atom type (a number in CHARMM files, a name in X-PLOR/NAMD ones).
    pub atom_type: String,
    /// Partial charge (e).
    pub charge: f64,
    /// Mass (amu).
    pub mass: f64,
}

/// A PSF topology: atoms in file order and bonds as 0-based index pairs.
#[derive(Clone, Debug, PartialEq)]
pub struct Psf {
    /// The atoms, in file order (atom `i` has PSF id `i + 1`).
    pub atoms: Vec<PsfAtom>,
    /// Bonds as 0-based atom index pairs, in file order.
    pub bonds: Vec<[usize; 2]>,
    /// Title (remark) lines.
    pub title: Vec<String>,
}

/// Reads a PSF file.
///
/// # Errors
/// [`ImportError::Malformed`] naming the file, the line and the problem (no `PSF` header, a
/// missing `!NATOM` section, a short or unparsable atom line, non-consecutive atom ids, a
/// non-finite charge or mass, a bond to a missing atom, a truncated section); I/O errors.
pub fn read_psf(path: impl AsRef<Path>) -> ImportResult<Psf> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| ImportError::io(path, "read", e))?;
    parse_psf(&bytes, path)
}

struct Lines<'a> {
    lines: Vec<&'a str>,
    next: usize,
    path: &'a Path,
}

impl<'a> Lines<'a> {
    fn bad(&self, line: usize, problem: impl std::fmt::Display) -> ImportError {
        ImportError::malformed(self.path, FORMAT, format!("line {}: {problem}", line + 1))
    }

    /// Finds the next section header `<count> !<NAME>`; returns its count and name.
    fn section(&mut self) -> ImportResult<Option<(usize, String)>> {
        while self.next < self.lines.len() {
            let i = self.next;
            self.next += 1;
            let line = self.lines[i];
            let Some(bang) = line.find('!') else {
                if line.trim().is_empty() {
                    continue;
                }
                return Err(self.bad(
                    i,
                    format!(
                        "expected a section header `<count> !<NAME>`, found {:?}",
                        truncate(line)
                    ),
                ));
            };
            let name = line[bang + 1..]
                .split(|c: char| c == ':' || c.is_whitespace())
                .next()
                .unwrap_or("")
                .to_string();
            let first = line[..bang].split_whitespace().next().unwrap_or("");
            let count = first.parse::<usize>().map_err(|_| {
                self.bad(
                    i,
                    format!("section {name}: count {first:?} is not a non-negative integer"),
                )
            })?;
            return Ok(Some((count, name)));
        }
        Ok(None)
    }

    fn line(&mut self, section: &str) -> ImportResult<(usize, &'a str)> {
        let i = self.next;
        let line = self.lines.get(i).copied().ok_or_else(|| {
            ImportError::malformed(
                self.path,
                FORMAT,
                format!("section {section} is truncated at the end of the file"),
            )
        })?;
        self.next += 1;
        Ok((i, line))
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(60).collect()
}

/// Parses the bytes of a PSF file; `path` is used in error messages only.
///
/// # Errors
/// As [`read_psf`].
pub fn parse_psf(bytes: &[u8], path: &Path) -> ImportResult<Psf> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        ImportError::malformed(
            path,
            FORMAT,
            format!("not UTF-8 text (byte {})", e.valid_up_to()),
        )
    })?;
    let mut lines = Lines {
        lines: text.lines().collect(),
        next: 0,
        path,
    };
    let head = lines.lines.first().copied().unwrap_or("");
    if !head.trim_start().starts_with("PSF") {
        return Err(lines.bad(
            0,
            format!("expected the `PSF` header line, found {:?}", truncate(head)),
        ));
    }
    lines.next = 1;
    let mut title = Vec::new();
    let mut atoms: Option<Vec<PsfAtom>> = None;
    let mut bonds: Option<Vec<[usize; 2]>> = None;
    while let Some((count, name)) = lines.section()? {
        match name.as_str() {
            "NTITLE" => {
                for _ in 0..count {
                    title.push(lines.line("NTITLE")?.1.trim_end().to_string());
                }
            }
            "NATOM" => {
                let mut list = Vec::new();
                for k in 0..count {
                    let (i, line) = lines.line("NATOM")?;
                    let f: Vec<&str> = line.split_whitespace().collect();
                    if f.len() < 8 {
                        return Err(lines.bad(i, format!("atom line has {} fields, expected at least 8 (id segid resid resname name type charge mass)", f.len())));
                    }
                    let id: usize = f[0].parse().map_err(|_| {
                        lines.bad(i, format!("atom id {:?} is not an integer", f[0]))
                    })?;
                    if id != k + 1 {
                        return Err(lines.bad(
                            i,
                            format!(
                                "atom id {id}, expected {} (ids must be consecutive from 1)",
                                k + 1
                            ),
                        ));
                    }
                    let resid = f[2]
                        .trim_end_matches(|c: char| c.is_ascii_alphabetic())
                        .parse::<i64>()
                        .map_err(|_| {
                            lines.bad(i, format!("residue number {:?} is not an integer", f[2]))
                        })?;
                    let num = |s: &str, what: &str| -> ImportResult<f64> {
                        s.parse::<f64>()
                            .ok()
                            .filter(|v| v.is_finite())
                            .ok_or_else(|| {
                                lines.bad(i, format!("{what} {s:?} is not a finite number"))
                            })
                    };
                    list.push(PsfAtom {
                        segid: f[1].into(),
                        resid,
                        resname: f[3].into(),
                        name: f[4].into(),
                        atom_type: f[5].into(),
                        charge: num(f[6], "charge")?,
                        mass: num(f[7], "mass")?,
                    });
                }
                atoms = Some(list);
            }
            "NBOND" => {
                let natom = atoms.as_ref().map(Vec::len).ok_or_else(|| {
                    ImportError::malformed(path, FORMAT, "the NBOND section comes before NATOM")
                })?;
                let mut ids = Vec::new();
                let wanted = count.saturating_mul(2);
                while ids.len() < wanted {
                    let (i, line) = lines.line("NBOND")?;
                    for tok in line.split_whitespace() {
                        let id: usize = tok.parse().map_err(|_| {
                            lines.bad(i, format!("bond atom id {tok:?} is not an integer"))
                        })?;
                        if !(1..=natom).contains(&id) {
                            return Err(
                                lines.bad(i, format!("bond atom id {id} is outside 1..={natom}"))
                            );
                        }
                        ids.push(id - 1);
                    }
                }
                if ids.len() != wanted {
                    return Err(ImportError::malformed(
                        path,
                        FORMAT,
                        format!(
                            "NBOND says {count} bonds but the section holds {} atom ids",
                            ids.len()
                        ),
                    ));
                }
                bonds = Some(ids.chunks_exact(2).map(|p| [p[0], p[1]]).collect());
                // the remaining sections are not needed
                break;
            }
            _ => {
                return Err(ImportError::malformed(
                    path,
                    FORMAT,
                    format!("unexpected section !{name} before !NBOND"),
                ));
            }
        }
    }
    let atoms = atoms.ok_or_else(|| ImportError::malformed(path, FORMAT, "no !NATOM section"))?;
    Ok(Psf {
        atoms,
        bonds: bonds.unwrap_or_default(),
        title,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: &str = "PSF EXT CMAP\n\n       1 !NTITLE\n* tiny\n\n       3 !NATOM\n       1 A    1    MET  N    NH3   -0.300000       14.0070           0\n       2 A    1    MET  CA   CT1    0.210000       12.0110           0\n       3 A    1B   MET  C    C      0.510000       12.0110           0\n\n       2 !NBOND: bonds\n       1       2       2       3\n\n       0 !NTHETA: angles\n";

    #[test]
    fn parses_atoms_and_bonds() {
        let psf = parse_psf(SMALL.as_bytes(), Path::new("s.psf")).unwrap();
        assert_eq!(psf.atoms.len(), 3);
        assert_eq!(psf.atoms[1].name, "CA");
        assert_eq!(psf.atoms[2].resid, 1);
        assert_eq!(psf.atoms[0].charge, -0.3);
        assert_eq!(psf.bonds, vec![[0, 1], [1, 2]]);
        assert_eq!(psf.title, vec!["* tiny"]);
    }

    #[test]
    fn errors_name_file_and_line() {
        let bad = SMALL.replace("12.0110           0\n       3", "x           0\n       3");
        let err = parse_psf(bad.as_bytes(), Path::new("s.psf"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "s.psf: not a valid PSF file: line 8: mass \"x\" is not a finite number"
        );
        let bad = SMALL.replace("2       3\n", "2       9\n");
        let err = parse_psf(bad.as_bytes(), Path::new("s.psf"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("line 12: bond atom id 9 is outside 1..=3"),
            "{err}"
        );
        let cut = SMALL.find("       2 A").unwrap();
        let err = parse_psf(&SMALL.as_bytes()[..cut], Path::new("s.psf"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("truncated"), "{err}");
    }
}
