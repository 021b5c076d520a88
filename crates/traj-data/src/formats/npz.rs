//! numpy `.npz` archives: a checked reader over `npyz` (C-order arrays of numbers and strings)
//! and a writer of numpy-compatible archives.
//!
//! Every array's element count is checked against the size of its zip entry before it is read, so
//! a corrupt header cannot make the reader allocate or loop beyond the file.

use std::fs::File;
use std::io::{BufReader, Cursor, Read, Seek};
use std::path::{Path, PathBuf};

use npyz::{DType, Order, TypeChar, WriteOptions, WriterBuilder};
use zip::ZipArchive;

use crate::fsutil::atomic_write;
use crate::import_error::{ImportError, ImportResult};

const FORMAT: &str = "npz";

/// A C-order array read from an npz.
#[derive(Clone, Debug, PartialEq)]
pub struct Array<T> {
    /// The shape.
    pub shape: Vec<usize>,
    /// The elements, row-major.
    pub data: Vec<T>,
}

/// An open `.npz` archive.
pub struct Npz<R: Read + Seek> {
    archive: ZipArchive<R>,
    path: PathBuf,
}

impl<R: Read + Seek> std::fmt::Debug for Npz<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Npz").field("path", &self.path).finish()
    }
}

impl Npz<BufReader<File>> {
    /// Opens an `.npz` file.
    ///
    /// # Errors
    /// [`crate::Error::NotFound`], [`ImportError::Malformed`] for a file that is not a zip archive.
    pub fn open(path: impl AsRef<Path>) -> ImportResult<Self> {
        let path = path.as_ref();
        let f = File::open(path).map_err(|e| ImportError::io(path, "open", e))?;
        Self::new(BufReader::new(f), path)
    }
}

impl<'a> Npz<Cursor<&'a [u8]>> {
    /// An archive in memory; `path` is used in error messages only.
    ///
    /// # Errors
    /// [`ImportError::Malformed`] for bytes that are not a zip archive.
    pub fn from_bytes(bytes: &'a [u8], path: &Path) -> ImportResult<Self> {
        Self::new(Cursor::new(bytes), path)
    }
}

/// Element types the reader converts from.
trait Element: Sized {
    fn read<R: Read>(
        npy: npyz::NpyFile<R>,
        kind: TypeChar,
        size: u64,
    ) -> std::io::Result<Vec<Self>>;
}

impl Element for f64 {
    fn read<R: Read>(
        npy: npyz::NpyFile<R>,
        kind: TypeChar,
        size: u64,
    ) -> std::io::Result<Vec<Self>> {
        match (kind, size) {
            (TypeChar::Float, 8) => npy.into_vec::<f64>(),
            (TypeChar::Float, 4) => Ok(npy.into_vec::<f32>()?.into_iter().map(f64::from).collect()),
            (TypeChar::Int, 8) => Ok(npy
                .into_vec::<i64>()?
                .into_iter()
                .map(|v| v as f64)
                .collect()),
            (TypeChar::Int, 4) => Ok(npy.into_vec::<i32>()?.into_iter().map(f64::from).collect()),
            _ => Err(std::io::Error::other(format!(
                "dtype {kind:?}{size} is not a float or integer type"
            ))),
        }
    }
}

impl Element for i64 {
    fn read<R: Read>(
        npy: npyz::NpyFile<R>,
        kind: TypeChar,
        size: u64,
    ) -> std::io::Result<Vec<Self>> {
        match (kind, size) {
            (TypeChar::Int, 8) => npy.into_vec::<i64>(),
            (TypeChar::Int, 4) => Ok(npy.into_vec::<i32>()?.into_iter().map(i64::from).collect()),
            (TypeChar::Int, 2) => Ok(npy.into_vec::<i16>()?.into_iter().map(i64::from).collect()),
            (TypeChar::Int, 1) => Ok(npy.into_vec::<i8>()?.into_iter().map(i64::from).collect()),
            (TypeChar::Uint, 1) => Ok(npy.into_vec::<u8>()?.into_iter().map(i64::from).collect()),
            (TypeChar::Uint, 2) => Ok(npy.into_vec::<u16>()?.into_iter().map(i64::from).collect()),
            (TypeChar::Uint, 4) => Ok(npy.into_vec::<u32>()?.into_iter().map(i64::from).collect()),
            _ => Err(std::io::Error::other(format!(
                "dtype {kind:?}{size} is not an integer type"
            ))),
        }
    }
}

impl<R: Read + Seek> Npz<R> {
    fn new(reader: R, path: &Path) -> ImportResult<Self> {
        let archive = ZipArchive::new(reader)
            .map_err(|e| ImportError::malformed(path, FORMAT, format!("not a zip archive: {e}")))?;
        Ok(Self {
            archive,
            path: path.to_path_buf(),
        })
    }

    /// The file name used in errors.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The names of the arrays.
    pub fn names(&self) -> Vec<String> {
        self.archive
            .file_names()
            .filter_map(npyz::npz::array_name_from_file_name)
            .map(str::to_string)
            .collect()
    }

    fn bad(&self, problem: String) -> ImportError {
        ImportError::malformed(&self.path, FORMAT, problem)
    }

    fn read_array<T: Element>(&mut self, name: &str) -> ImportResult<Option<Array<T>>> {
        let path = self.path.clone();
        let bad = |problem: String| ImportError::malformed(&path, FORMAT, problem);
        let Ok(entry) = self.archive.by_name(&format!("{name}.npy")) else {
            return Ok(None);
        };
        let entry_size = entry.size();
        let npy = npyz::NpyFile::new(entry).map_err(|e| bad(format!("array `{name}`: {e}")))?;
        if npy.order() == Order::Fortran && npy.shape().len() > 1 {
            return Err(bad(format!(
                "array `{name}` is in Fortran order; save it in C order"
            )));
        }
        let (kind, size) = match npy.dtype() {
            DType::Plain(t) => (t.type_char(), t.size_field()),
            other => {
                return Err(bad(format!(
                    "array `{name}` has the structured dtype {}",
                    other.descr()
                )));
            }
        };
        let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
        let count = npy
            .shape()
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .filter(|c| size.checked_mul(*c).is_some_and(|bytes| bytes <= entry_size))
            .ok_or_else(|| bad(format!("array `{name}`: shape {shape:?} of {size}-byte elements does not fit in its {entry_size}-byte entry")))?;
        let data = T::read(npy, kind, size).map_err(|e| bad(format!("array `{name}`: {e}")))?;
        if data.len() as u64 != count {
            return Err(bad(format!(
                "array `{name}`: {} elements for shape {shape:?}",
                data.len()
            )));
        }
        Ok(Some(Array { shape, data }))
    }

    /// The numpy type string of an array (`<f8`, `<i4`, `|u1`, ...), or `None` if absent.
    ///
    /// # Errors
    /// [`ImportError::Malformed`] for a corrupt entry or a structured dtype.
    pub fn dtype(&mut self, name: &str) -> ImportResult<Option<String>> {
        let path = self.path.clone();
        let bad = |problem: String| ImportError::malformed(&path, FORMAT, problem);
        let Ok(entry) = self.archive.by_name(&format!("{name}.npy")) else {
            return Ok(None);
        };
        let npy = npyz::NpyFile::new(entry).map_err(|e| bad(format!("array `{name}`: {e}")))?;
        match npy.dtype() {
            DType::Plain(t) => Ok(Some(t.to_string())),
            other => Err(bad(format!(
                "array `{name}` has the structured dtype {}",
                other.descr()
            ))),
        }
    }

    /// Reads a numeric array as `f64` (from float64/float32/int64/int32), or `None` if absent.
    ///
    /// # Errors
    /// [`ImportError::Malformed`] naming the file and the array (corrupt entry, unsupported dtype,
    /// Fortran order, a shape that does not fit the entry).
    pub fn f64(&mut self, name: &str) -> ImportResult<Option<Array<f64>>> {
        self.read_array(name)
    }

    /// Reads an integer array as `i64`, or `None` if absent.
    ///
    /// # Errors
    /// As [`Npz::f64`].
    pub fn i64(&mut self, name: &str) -> ImportResult<Option<Array<i64>>> {
        self.read_array(name)
    }

    /// Reads a string scalar or 1-element array (`|S`, `<U`), or `None` if absent or not a string.
    pub fn string(&mut self, name: &str) -> Option<String> {
        let entry = self.archive.by_name(&format!("{name}.npy")).ok()?;
        let npy = npyz::NpyFile::new(entry).ok()?;
        let DType::Plain(t) = npy.dtype() else {
            return None;
        };
        if npy.len() != 1 || t.size_field() > 1 << 16 {
            return None;
        }
        match t.type_char() {
            TypeChar::ByteStr => {
                let v: Vec<Vec<u8>> = npy.into_vec().ok()?;
                let b = v.into_iter().next()?;
                let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
                Some(String::from_utf8_lossy(&b[..end]).into_owned())
            }
            TypeChar::UnicodeStr => {
                let v: Vec<String> = npy.into_vec().ok()?;
                v.into_iter().next()
            }
            _ => None,
        }
    }

    /// Like [`Npz::f64`], but a missing array is an error naming it.
    ///
    /// # Errors
    /// As [`Npz::f64`], and [`ImportError::Malformed`] when the array is absent.
    pub fn require_f64(&mut self, name: &str) -> ImportResult<Array<f64>> {
        self.f64(name)?
            .ok_or_else(|| self.bad(format!("array `{name}` is missing")))
    }
}

/// An array to write: name, shape and data (`f64` or `i64`).
#[derive(Clone, Debug, PartialEq)]
pub enum NpzArray<'a> {
    /// A float64 array.
    F64(&'a str, Vec<u64>, &'a [f64]),
    /// An int64 array.
    I64(&'a str, Vec<u64>, &'a [i64]),
    /// A unicode string scalar (`<U`).
    Str(&'a str, &'a str),
}

/// Encodes a numpy-compatible `.npz` (stored, not compressed; little-endian, C order) in memory.
///
/// # Errors
/// I/O errors of the in-memory writer (none in practice), reported against `path`.
pub fn encode_npz(arrays: &[NpzArray<'_>], path: &Path) -> ImportResult<Vec<u8>> {
    let io = |e: std::io::Error| ImportError::io(path, "encode npz", e);
    let mut buf = Cursor::new(Vec::new());
    {
        let mut zip = zip::ZipWriter::new(&mut buf);
        let opts =
            zip::write::FileOptions::default().compression_method(zip::CompressionMethod::Stored);
        let zip_err = |e: zip::result::ZipError| io(std::io::Error::other(e.to_string()));
        for a in arrays {
            let name = match a {
                NpzArray::F64(name, ..) | NpzArray::I64(name, ..) | NpzArray::Str(name, _) => name,
            };
            zip.start_file(format!("{name}.npy"), opts)
                .map_err(zip_err)?;
            match a {
                NpzArray::F64(_, shape, data) => {
                    let mut w = WriteOptions::<f64>::new()
                        .default_dtype()
                        .shape(shape)
                        .writer(&mut zip)
                        .begin_nd()
                        .map_err(io)?;
                    w.extend(data.iter().copied()).map_err(io)?;
                    w.finish().map_err(io)?;
                }
                NpzArray::I64(_, shape, data) => {
                    let mut w = WriteOptions::<i64>::new()
                        .default_dtype()
                        .shape(shape)
                        .writer(&mut zip)
                        .begin_nd()
                        .map_err(io)?;
                    w.extend(data.iter().copied()).map_err(io)?;
                    w.finish().map_err(io)?;
                }
                NpzArray::Str(_, s) => {
                    let n = s.chars().count().max(1);
                    let dtype = DType::Plain(
                        format!("<U{n}")
                            .parse()
                            .map_err(|e| io(std::io::Error::other(format!("{e}"))))?,
                    );
                    let mut w = WriteOptions::<str>::new()
                        .dtype(dtype)
                        .shape(&[])
                        .writer(&mut zip)
                        .begin_nd()
                        .map_err(io)?;
                    w.push(*s).map_err(io)?;
                    w.finish().map_err(io)?;
                }
            }
        }
        zip.finish().map_err(zip_err)?;
    }
    Ok(buf.into_inner())
}

/// Writes a numpy-compatible `.npz` atomically (see [`encode_npz`]).
///
/// # Errors
/// I/O errors naming the file.
pub fn write_npz(path: impl AsRef<Path>, arrays: &[NpzArray<'_>]) -> ImportResult<()> {
    let path = path.as_ref();
    let bytes = encode_npz(arrays, path)?;
    Ok(atomic_write(path, &bytes)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_dtype_conversion() {
        let x = [1.5, -2.0, 3.25, 0.0, 1e-300, -7.0];
        let z = [6i64, 1, 8];
        let bytes = encode_npz(
            &[
                NpzArray::F64("R", vec![1, 2, 3], &x),
                NpzArray::I64("z", vec![3], &z),
                NpzArray::Str("theory", "GFN2-xTB"),
            ],
            Path::new("t.npz"),
        )
        .unwrap();
        let mut npz = Npz::from_bytes(&bytes, Path::new("t.npz")).unwrap();
        let mut names = npz.names();
        names.sort();
        assert_eq!(names, ["R", "theory", "z"]);
        let r = npz.require_f64("R").unwrap();
        assert_eq!((r.shape, r.data), (vec![1, 2, 3], x.to_vec()));
        assert_eq!(npz.i64("z").unwrap().unwrap().data, z.to_vec());
        assert_eq!(npz.f64("z").unwrap().unwrap().data, vec![6.0, 1.0, 8.0]);
        assert_eq!(npz.string("theory").as_deref(), Some("GFN2-xTB"));
        assert_eq!(npz.dtype("R").unwrap().as_deref(), Some("<f8"));
        assert_eq!(npz.dtype("z").unwrap().as_deref(), Some("<i8"));
        assert_eq!(npz.dtype("missing").unwrap(), None);
        assert!(npz.f64("missing").unwrap().is_none());
        let err = npz.require_f64("E").unwrap_err().to_string();
        assert_eq!(err, "t.npz: not a valid npz file: array `E` is missing");
        let err = npz.i64("R").unwrap_err().to_string();
        assert!(err.contains("array `R`: dtype"), "{err}");
    }
}
