//! # catgan
//!
//! The toolkit behind the `cats` command: backend selection ([`backend`]), whole training
//! runs with their run folders ([`train`], [`run_dir`]), checked image writes
//! ([`image_file`]), loss plots ([`plot`]), progress
//! display ([`progress`]), throughput benchmarks ([`bench`](mod@bench)) and numerical parity between
//! backends ([`parity`]), and where GPU kernels are cached ([`kernel_cache`]). The models, trainer and
//! checkpoints live in [`dcgan_core`]; images and batches in [`dcgan_data`]; FID and KID in
//! [`dcgan_metrics`].
#![warn(missing_docs)]

pub mod backend;
pub mod bench;
pub mod defaults;
pub mod divergence;
mod fid_probe;
pub mod image_file;
pub mod kernel_cache;
pub mod kernel_stats;
pub mod memory;
pub mod parallel;
pub mod parity;
pub mod plot;
pub mod progress;
pub mod resume;
pub mod run_config;
pub mod run_dir;
pub mod serve;
pub mod tensorboard;
pub mod train;

pub use dcgan_core;
pub use dcgan_data;
pub use dcgan_metrics;

/// The README's code blocks, compiled as doctests so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
