//! # dcgan-data: image folders to training batches
//!
//! Fast, deterministic, and robust to bad files:
//!
//! 1. [`scan`] a folder recursively for images, in a stable order (regular files only;
//!    FIFOs, sockets, devices and link loops are reported, never opened or followed; the
//!    same walker serves FID in `dcgan-metrics`), with a [`DataFingerprint`] for resume
//!    checks;
//! 2. [`decode`] each file (EXIF orientation, any colour type → RGB, limits against
//!    decompression bombs; bad files are skipped and reported, or refused in strict mode);
//! 3. [`transform`] it to a `size × size` square (center crop or pad, Lanczos3);
//! 4. keep the result in a [`cache`] file (in catgan's cache folder, [`cache_folder`],
//!    never inside the data folder), so later runs skip decoding;
//! 5. serve shuffled, optionally flipped NCHW batches in [−1, 1] on any burn device with the
//!    [`Loader`], prefetched on a background thread and exactly resumable
//!    from a [`LoaderPosition`];
//! 6. for the CAT dataset, [`cat_dataset::prepare`] turns annotated photos into level face
//!    crops.
//!
//! What the catgan crates share lives here too, this being the lowest one: [`atomic`] file
//! writes, [`cache_folder`] (where every cache goes) and [`progress`] reports.
//!
//! ```no_run
//! use burn::backend::Flex;
//! use dcgan_data::{DatasetConfig, ImageDataset, Loader, LoaderConfig};
//! # fn main() -> dcgan_data::Result<()> {
//! let dataset = ImageDataset::open("cats/", &DatasetConfig::new().with_image_size(64), &())?;
//! for skipped in &dataset.report().skipped {
//!     eprintln!("skipped {skipped}");
//! }
//! let config = LoaderConfig::new(64).with_seed(42).with_flip(true);
//! let mut loader = Loader::<Flex>::new(dataset, &config, Default::default())?;
//! let batch = loader.next_batch()?; // batch.images: [64, 3, 64, 64] in [-1, 1]
//! let resume_here = batch.next;     // save with the checkpoint
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

pub mod atomic;
pub mod batcher;
pub mod builtin;
pub mod cache;
pub mod cache_folder;
pub mod cat_dataset;
pub mod dataset;
pub mod decode;
pub mod error;
pub mod progress;
pub mod scan;
pub mod transform;

pub use batcher::{Batch, Loader, LoaderConfig, LoaderPosition};
pub use cache::CacheLocation;
pub use cat_dataset::{prepare, PrepareConfig, PrepareReport};
pub use dataset::{CacheStatus, DatasetConfig, DatasetReport, ImageDataset};
pub use decode::{DecodeLimits, SkipReason, SkippedFile};
pub use error::{Error, Result};
pub use progress::{Progress, ProgressEvent, Task};
pub use scan::DataFingerprint;
pub use transform::CropMode;

/// The backend the unit tests run on.
#[cfg(all(test, feature = "flex"))]
pub(crate) type TestBackend = burn::backend::Flex;
#[cfg(all(test, not(feature = "flex"), feature = "ndarray"))]
pub(crate) type TestBackend = burn::backend::NdArray;

#[cfg(test)]
pub(crate) mod test_util;
