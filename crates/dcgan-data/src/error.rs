//! The crate's one error type.
//!
//! Every variant names the file or folder involved and says what to do about it. Files that
//! merely fail to decode are *not* errors by default: they are skipped and reported (see
//! [`SkippedFile`](crate::SkippedFile)); [`Error::Decode`] only appears in strict mode.

use std::path::PathBuf;

use crate::decode::SkipReason;

/// Everything that can go wrong in `dcgan-data`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    // --- the data folder -------------------------------------------------------------------
    /// The data path does not exist.
    #[error("data folder `{path}` does not exist; check the path given to --data")]
    NotFound {
        /// The path that was given.
        path: PathBuf,
    },

    /// The data path is a file; a folder was expected.
    #[error("`{path}` is a file, not a folder; pass the folder that holds the images")]
    NotADirectory {
        /// The path that was given.
        path: PathBuf,
    },

    /// The folder (searched recursively) holds no file with an image extension.
    #[error(
        "no image files under `{path}` (searched recursively for .jpg .jpeg .png .bmp .gif \
         .webp .tif .tiff); point --data at the folder that holds the images"
    )]
    EmptyFolder {
        /// The folder that was searched.
        path: PathBuf,
    },

    /// Image files (or entries named like images) were found, but none of them can be
    /// used: none decodes, or none is a readable regular file.
    #[error(
        "none of the {found} image files or entries found under `{path}` can be used \
         (first: `{}`: {}); run `cats inspect-data --data {}` to list every file and its reason",
        first.0.display(), first.1, path.display()
    )]
    NoUsableImages {
        /// The folder that was searched.
        path: PathBuf,
        /// How many files had an image extension (or, when no regular image file was
        /// found at all, how many entries the scan had to leave out).
        found: usize,
        /// The first file that failed, and why.
        first: Box<(PathBuf, SkipReason)>,
    },

    // --- single files ----------------------------------------------------------------------
    /// A file could not be decoded and strict mode is on.
    #[error(
        "cannot use image `{path}`: {reason}; fix or remove the file, or turn strict mode \
         off (drop --strict) to skip such files"
    )]
    Decode {
        /// The offending file.
        path: PathBuf,
        /// Why it was refused.
        reason: SkipReason,
    },

    /// An I/O operation on a path failed.
    #[error("{action} `{path}`: {source}")]
    Io {
        /// What was being done, e.g. "cannot read".
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// An image could not be encoded or written (prepare step).
    #[error("cannot write image `{path}`: {reason}; check that the output folder is writable")]
    Encode {
        /// The file that was being written.
        path: PathBuf,
        /// The encoder's message.
        reason: String,
    },

    // --- the cache ---------------------------------------------------------------------------
    /// A cache file exists but is not a valid, complete cache (it is then rebuilt
    /// automatically; this error is only returned by [`crate::cache::read_cache`]).
    #[error("cache file `{path}` is invalid ({reason}); delete it, it will be rebuilt")]
    InvalidCache {
        /// The cache file.
        path: PathBuf,
        /// What check failed.
        reason: String,
    },

    // --- configuration ---------------------------------------------------------------------
    /// A configuration value is out of range.
    #[error("invalid setting `{name}` = {value}: {expected}")]
    InvalidConfig {
        /// The setting (flag or field) name.
        name: &'static str,
        /// The value that was given.
        value: String,
        /// What is accepted.
        expected: &'static str,
    },

    /// A saved loader position does not fit this dataset or configuration.
    #[error(
        "cannot resume the loader at {position}: {reason}; resume with the same data folder \
         and batch settings as the checkpoint, or start a new run"
    )]
    InvalidPosition {
        /// The position that was asked for.
        position: crate::LoaderPosition,
        /// Why it does not fit.
        reason: String,
    },

    /// The loader's background thread stopped unexpectedly.
    #[error("the data loader's background thread stopped: {reason}")]
    LoaderStopped {
        /// What is known about the cause.
        reason: String,
    },
}

impl Error {
    /// Shorthand for [`Error::Io`].
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
