//! The error type of the foreign-format readers, the converters and the downloader.

use std::path::{Path, PathBuf};

use crate::error::Error;

/// `Result` with [`ImportError`].
pub type ImportResult<T> = std::result::Result<T, ImportError>;

/// Everything that can go wrong reading a foreign file (DCD, PSF, npz, ASF/AMC), converting it,
/// or downloading it.
///
/// Every variant that comes from a file names the file; a message reads e.g.
/// `cache/adk_dims.dcd: not a valid DCD file: frame 97: X record is truncated (needs 13372 bytes
/// at offset 3918352, the file has 3931000 bytes)`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// The file is not a well-formed file of `format`.
    #[error("{}: not a valid {format} file: {problem}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// The format expected (`DCD`, `PSF`, `npz`, ...).
        format: &'static str,
        /// What is wrong, with the byte offset or line where it is known.
        problem: String,
    },
    /// The data of a well-formed file cannot be used as asked (e.g. no backbone atoms, a window
    /// that does not fit).
    #[error("{}: {problem}", path.display())]
    Unusable {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// A download failed (network, HTTP status, truncated body).
    #[error("download of {url} failed: {problem}")]
    Download {
        /// The URL.
        url: String,
        /// What went wrong.
        problem: String,
    },
    /// A helper program (pip, python) failed.
    #[error("`{command}` failed: {problem}")]
    Command {
        /// The command line.
        command: String,
        /// Exit status and the end of its output.
        problem: String,
    },
    /// An error of the data model, the dataset format, a checksum or I/O.
    #[error(transparent)]
    Data(#[from] Error),
}

impl ImportError {
    /// [`ImportError::Malformed`].
    pub(crate) fn malformed(path: &Path, format: &'static str, problem: impl Into<String>) -> Self {
        ImportError::Malformed {
            path: path.to_path_buf(),
            format,
            problem: problem.into(),
        }
    }

    /// [`ImportError::Unusable`].
    pub(crate) fn unusable(path: &Path, problem: impl Into<String>) -> Self {
        ImportError::Unusable {
            path: path.to_path_buf(),
            problem: problem.into(),
        }
    }

    /// An I/O error on `path` (a missing file becomes [`Error::NotFound`]).
    pub(crate) fn io(path: &Path, op: &'static str, source: std::io::Error) -> Self {
        ImportError::Data(Error::io(path, op, source))
    }

    /// A data-model error found while converting `path`.
    pub(crate) fn in_file(path: &Path, e: Error) -> Self {
        ImportError::Data(e.in_file(path))
    }
}
