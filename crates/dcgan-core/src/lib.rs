//! # dcgan-core
//!
//! The cat DCGAN of the article "How AI can learn to generate pictures of cats", as a
//! library on [burn](https://burn.dev): the [`Generator`] and [`Discriminator`] (the seed's
//! 128 px model layer for layer, plus relatives at other sizes via [`ModelPreset`]),
//! label-smoothed [losses](loss) and seven other [`GanLoss`]es, a [`Trainer`] with two
//! Adam optimizers and the modern stabilisers ([gradient penalties](penalty),
//! [spectral normalisation](spectral_norm), a [generator average](ema),
//! [DiffAugment](augment)), exact-resume
//! [checkpoints](checkpoint), [sampling helpers](sample), Keras-style
//! [summaries](summary), bf16 [mixed precision](precision) and
//! [memory estimates](memory) that refuse what a machine cannot hold. Everything is
//! generic over the burn backend; on flex, the layers and Adam run through the
//! `flex-kernels` crate's fast path (re-exported as `dcgan_core::flex_kernels` with the
//! `flex` feature) unless a network config's `fast_kernels` is `false`.
//!
//! ```
//! use burn::backend::{Autodiff, Flex};
//! use burn::tensor::Tensor;
//! use dcgan_core::{ModelPreset, Trainer, TrainerConfig};
//!
//! type B = Autodiff<Flex>;
//! let device = Default::default();
//!
//! // The article's model family; a narrow 32 px one keeps this example quick.
//! let (generator, discriminator) = ModelPreset::Tiny32.configs(Some(4));
//! let config = TrainerConfig::new(generator, discriminator).with_batch_size(8);
//! let mut trainer = Trainer::<B>::new(config, &device)?;
//!
//! // One D update and one G update on a batch of real images in [-1, 1].
//! let real = Tensor::<B, 4>::zeros([8, 3, 32, 32], &device);
//! let metrics = trainer.step(real)?;
//! println!("d_loss {:.3} g_loss {:.3}", metrics.d_loss, metrics.g_loss);
//!
//! // Everything needed to resume bit-identically, written atomically.
//! let dir = tempfile::tempdir()?;
//! trainer.save_checkpoint(&dir.path().join("step-1.catgan"), serde_json::Value::Null)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![warn(missing_docs)]

pub mod adam;
pub mod augment;
pub mod checkpoint;
pub mod discriminator;
pub mod ema;
pub mod error;
pub mod generator;
pub mod init;
pub mod layers;
pub mod loss;
pub mod memory;
pub mod penalty;
pub mod precision;
pub mod preset;
pub mod replicas;
pub mod sample;
pub mod spectral_norm;
pub mod summary;
pub mod trainer;

mod network;

#[cfg(test)]
mod test_util;

/// The flex fast path the networks use (the `flex` feature).
#[cfg(feature = "flex")]
pub use flex_kernels;

pub use augment::Augment;
pub use checkpoint::{load_generator, load_generator_with, CheckpointInfo};
pub use discriminator::{Discriminator, DiscriminatorConfig};
pub use ema::EmaConfig;
pub use error::{Error, Result};
pub use generator::{Generator, GeneratorConfig};
pub use init::{LatentDistribution, WeightInit};
pub use loss::GanLoss;
pub use memory::{ArithmeticCost, MemoryEstimate};
pub use penalty::{GradientPenalty, PenaltyKind};
pub use precision::Precision;
pub use preset::ModelPreset;
pub use trainer::{DiscriminatorUpdate, StepMetrics, StepTrace, Trainer, TrainerConfig};

/// The backend unit tests run on: flex unless only another CPU backend is compiled.
#[cfg(all(test, feature = "flex"))]
pub(crate) type TestBackend = burn::backend::Flex;
#[cfg(all(test, not(feature = "flex"), feature = "ndarray"))]
pub(crate) type TestBackend = burn::backend::NdArray;
/// The autodiff backend unit tests run on.
#[cfg(test)]
pub(crate) type TestAutodiffBackend = burn::backend::Autodiff<TestBackend>;
