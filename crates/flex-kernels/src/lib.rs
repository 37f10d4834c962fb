//! # flex-kernels
//!
//! A CPU fast path for burn's `flex` backend (burn 0.21): hand-written operations for the
//! layers of convolutional networks, for any burn user on flex.
//!
//! ## What it accelerates
//!
//! - [`conv2d`] and [`conv_transpose2d`]: each convolution is one batched GEMM per
//!   direction (forward; input and weight gradients) between the weight and a window
//!   matrix (`im2col` / `col2im`), with the batch's positions as the long dimension, on
//!   channels-last data. burn's flex instead spends most of a step in strided copies and
//!   runs transposed convolutions image after image. Stride-1 `3×3`, `1×3`, `3×1`, `5×5`,
//!   `1×7` and `7×1` convolutions on maps at least 4 tiles wide take [`winograd`]'s
//!   minimal filtering instead for their forward products, input gradients and weight
//!   gradients: 1.75–4× fewer products. Stride-2 convolutions and transposed
//!   convolutions with grids at least 16 wide (8 with 512 channels or more on each side,
//!   or 64 and a batch of at least 128 Winograd tiles) and 32 channels or more on each
//!   side take the same transforms as stride-1 `3×3` convolutions over the map's four
//!   stacked phases ([`phases`]): a `5×5` stride-2 layer in 9 multiply-adds per output
//!   and channel instead of 25. Convolutions with an image's
//!   few channels on the map side (a discriminator's first layer, a generator's last)
//!   take [`direct`]'s kernels, which sum each output straight from its inputs without
//!   window matrices (AVX-512 CPUs); so do those with 16 channels there (the next layer in
//!   at base 16).
//! - [`batch_norm_leaky_relu`]: batch norm followed by leaky ReLU in two passes forward
//!   and two backward (running statistics updated as burn's `BatchNorm` does);
//!   [`leaky_relu`] alone in one pass each way.
//! - [`conv2d_leaky_relu`]: a convolution and its (leaky) ReLU; in inference the
//!   activation runs on each group's output right after its GEMM.
//! - [`max_pool2d`], [`avg_pool2d`] and [`cat_channels`] (inference): pools and channel
//!   joins that read and write channels-last maps in one pass (burn's own first copy the
//!   maps to NCHW element by element): with them an Inception-v3 runs on the fast path.
//! - [`tanh_channels_first`]: `tanh` in one pass that keeps its output for the backward
//!   pass; [`to_channels_first`] returns the fast layers' channels-last outputs to plain
//!   NCHW memory for burn's own operations.
//! - [`adam::FusedAdam`]: burn's Adam arithmetic, in burn's order, in one parallel pass
//!   per parameter (bit-identical results, burn's `AdamState` records).
//! - [`allocator::reuse_large_allocations`]: glibc settings that keep every buffer on the
//!   heap between steps (any CPU backend), and [`allocator::child_env`], the same for a
//!   child process;
//!   [`allocator::release_free_memory`] gives the heap's free memory back.
//!
//! Together they make a DCGAN training step 6–7× faster than burn's own layer operations
//! on flex (catgan's `docs/performance.md` shows how, change by change).
//!
//! ## On which backends
//!
//! `Autodiff<Flex>` (training: every operation is a custom autodiff operation with its own
//! backward pass) and `Flex` (inference), on f32 tensors. On any other backend or element
//! type — and for layer settings the fast path does not cover (grouped or dilated
//! convolutions, convolutions without a bias, `Same` padding) — each function calls burn's
//! own operation, so code generic over `B: Backend` can call them unconditionally.
//!
//! The layer functions take burn's own modules ([`burn::nn::conv::Conv2d`],
//! [`burn::nn::conv::ConvTranspose2d`], [`burn::nn::BatchNorm`]): parameters, records and
//! checkpoints stay burn's, and a model can switch between the fast path and burn's
//! operations without touching its weights. Outputs are logical `[n, c, h, w]` tensors
//! whose memory is channels-last (so that the next fast layer reads them without a copy);
//! they are ordinary tensors for every burn operation, only slower to read, so call
//! [`to_channels_first`] before handing them to burn's own operations.
//!
//! ## How to switch it
//!
//! There is no global switch: calling a function of this crate is using the fast path,
//! calling burn's own operation (`conv.forward(x)`) is not. A model that wants to choose
//! keeps the choice as a value of its own — a config field, a field of the module — and
//! calls one or the other (catgan's `dcgan-core` does this with a `fast_kernels` field in
//! its network configs, on by default). Likewise [`adam::FusedAdam`] or burn's `Adam`.
//! [`calls`] counts, per thread, the operations that actually ran here.
//!
//! Three process-wide aids are opt-in, by explicit calls: [`profile::enable`] times the
//! pieces of every layer, [`allocator::reuse_large_allocations`] changes glibc's
//! allocation policy, and [`threads::join_global_pool`] makes the calling thread (your
//! `main`) one of rayon's workers, so that the parallel loops it starts do not each wake
//! the pool and wait for it. Three are opt-out, for comparisons: [`winograd::enable`]`(false)`
//! sends the stride-1 and stride-2 convolutions back to the window matrices,
//! [`phases::enable`]`(false)` the stride-2 ones only, [`direct::enable`]`(false)` the
//! layers with few map channels.
//!
//! ```
//! use burn::backend::{Autodiff, Flex};
//! use burn::nn::conv::Conv2dConfig;
//! use burn::nn::PaddingConfig2d;
//! use burn::tensor::Tensor;
//!
//! type B = Autodiff<Flex>;
//! let device = Default::default();
//! let conv = Conv2dConfig::new([3, 8], [5, 5])
//!     .with_stride([2, 2])
//!     .with_padding(PaddingConfig2d::Explicit(2, 2, 2, 2))
//!     .init::<B>(&device);
//! let x = Tensor::<B, 4>::ones([2, 3, 16, 16], &device).require_grad();
//!
//! let before = flex_kernels::calls();
//! let y = flex_kernels::conv2d(&conv, x.clone()); // instead of conv.forward(x)
//! let y = flex_kernels::leaky_relu(y, 0.2);
//! assert_eq!(y.dims(), [2, 8, 8, 8]);
//! let grads = flex_kernels::to_channels_first(y).sum().backward();
//! assert!(conv.weight.grad(&grads).is_some());
//! assert_eq!(flex_kernels::calls().since(&before).conv2d, 1);
//! ```
//!
//! ## How it is tested
//!
//! `tests/layers.rs` compares every operation with burn's own on random data — forward
//! outputs, input gradients and every parameter gradient, in training and inference, for
//! the layer shapes of a DCGAN and odd ones (uneven batches, stride 1, no padding, single
//! pixels) — to 1e-4 relative, and checks with [`calls`] that the fast path ran (so that
//! a broken dispatch cannot compare burn with burn). Unit tests check the kernels against
//! naive definitions (window gathers and scatters, GEMM layouts, batch-norm gradients),
//! [`adam::FusedAdam`] against burn's Adam bit for bit over several steps, and the buffer
//! and allocator helpers. catgan's `dcgan-core` also compares whole networks, fast and
//! not.
#![warn(missing_docs)]

pub mod adam;
pub mod allocator;
pub mod direct;
pub mod phases;
pub mod profile;
pub mod threads;
pub mod winograd;

mod buffers;
mod calls;
mod dispatch;
mod kernels;
mod ops;
mod wide;

pub use calls::{calls, Calls};
pub use dispatch::{
    avg_pool2d, batch_norm_leaky_relu, cat_channels, conv2d, conv2d_leaky_relu, conv_transpose2d,
    leaky_relu, max_pool2d, tanh_channels_first, to_channels_first,
};
pub use ops::{WEIGHT_PARTS_BUDGET, WINDOW_PIECE_ELEMENTS, WINDOW_PIECE_WEIGHTS};
