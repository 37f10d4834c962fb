//! The layer computations of both networks: convolution, transposed convolution, batch
//! norm followed by leaky ReLU, and the generator's final `tanh`.
//!
//! Every function takes burn's own module (`Conv2d`, `ConvTranspose2d`, `BatchNorm`), so
//! parameters, records and checkpoints are burn's. With `fast_kernels` on (the networks
//! pass their [`GeneratorConfig::fast_kernels`](crate::GeneratorConfig::fast_kernels) /
//! [`DiscriminatorConfig::fast_kernels`](crate::DiscriminatorConfig::fast_kernels)) and
//! the `flex` feature compiled, they call the [`flex_kernels`] crate, which runs
//! hand-written operations on flex (`Autodiff<Flex>` for training, `Flex` for inference,
//! f32) and burn's own everywhere else: each convolution is one batched GEMM in both
//! directions, batch norm + leaky ReLU is two passes forward and two backward, `tanh` one
//! pass each way (see `docs/performance.md` for why and how much). With it off they call
//! the module's `forward` and burn's activations. Results agree to float rounding (tested
//! in flex-kernels' `tests/layers.rs` and in `tests/fast_kernels.rs` here).
//!
//! The matrix-product layers ([`conv2d`], [`conv_transpose2d`], [`dense`]) take a
//! [`Precision`]: with [`Precision::Bf16`] they compute in bf16 on every backend, from the
//! f32 parameters (see [`crate::precision`]); the fast path is f32 only.

use burn::nn::conv::{Conv2d, ConvTranspose2d};
use burn::nn::{BatchNorm, Linear};
use burn::prelude::*;

use crate::precision::Precision;

mod autocast;

/// `$fast` if `$on` and the fast path is compiled in (the `flex` feature), else `$burn`.
macro_rules! fast_or_burn {
    ($on:expr, $fast:expr, $burn:expr) => {{
        #[cfg(feature = "flex")]
        let out = if $on { $fast } else { $burn };
        #[cfg(not(feature = "flex"))]
        let out = {
            let _: bool = $on;
            $burn
        };
        out
    }};
}

/// `conv.forward(x)` in `precision`, through the fast path if `fast_kernels`.
pub fn conv2d<B: Backend>(
    conv: &Conv2d<B>,
    x: Tensor<B, 4>,
    precision: Precision,
    fast_kernels: bool,
) -> Tensor<B, 4> {
    if let Some(dtype) = precision.compute_dtype() {
        return autocast::conv2d(conv, x, dtype);
    }
    fast_or_burn!(fast_kernels, flex_kernels::conv2d(conv, x), conv.forward(x))
}

/// `conv.forward(x)` of a transposed convolution in `precision`, through the fast path if
/// `fast_kernels`.
pub fn conv_transpose2d<B: Backend>(
    conv: &ConvTranspose2d<B>,
    x: Tensor<B, 4>,
    precision: Precision,
    fast_kernels: bool,
) -> Tensor<B, 4> {
    if let Some(dtype) = precision.compute_dtype() {
        return autocast::conv_transpose2d(conv, x, dtype);
    }
    fast_or_burn!(
        fast_kernels,
        flex_kernels::conv_transpose2d(conv, x),
        conv.forward(x)
    )
}

/// `layer.forward(x)` in `precision`.
pub fn dense<B: Backend, const D: usize>(
    layer: &Linear<B>,
    x: Tensor<B, D>,
    precision: Precision,
) -> Tensor<B, D> {
    match precision.compute_dtype() {
        Some(dtype) => autocast::dense(layer, x, dtype),
        None => layer.forward(x),
    }
}

/// `leaky_relu(norm.forward(x), slope)`, through the fast path if `fast_kernels`.
///
/// Like `BatchNorm::forward`, it uses (and updates) batch statistics on autodiff
/// backends and the running statistics otherwise.
pub fn batch_norm_leaky_relu<B: Backend>(
    norm: &BatchNorm<B>,
    x: Tensor<B, 4>,
    slope: f64,
    fast_kernels: bool,
) -> Tensor<B, 4> {
    fast_or_burn!(
        fast_kernels,
        flex_kernels::batch_norm_leaky_relu(norm, x, slope),
        burn::tensor::activation::leaky_relu(norm.forward(x), slope)
    )
}

/// `leaky_relu(x, slope)`, through the fast path if `fast_kernels`.
pub fn leaky_relu<B: Backend>(x: Tensor<B, 4>, slope: f64, fast_kernels: bool) -> Tensor<B, 4> {
    fast_or_burn!(
        fast_kernels,
        flex_kernels::leaky_relu(x, slope),
        burn::tensor::activation::leaky_relu(x, slope)
    )
}

/// The same values, in plain row-major NCHW memory: the fast path's layers hand out
/// channels-last views, which burn's own operations read slowly; call this before
/// handing a layer's output to them. A no-op without `fast_kernels` (the layers then
/// hand out burn's own tensors), on other backends and on NCHW tensors.
pub fn to_channels_first<B: Backend>(x: Tensor<B, 4>, fast_kernels: bool) -> Tensor<B, 4> {
    fast_or_burn!(fast_kernels, flex_kernels::to_channels_first(x), x)
}

/// `tanh(to_channels_first(x))` (the generator's last step), through the fast path if
/// `fast_kernels`: a single parallel pass that also keeps `tanh`'s output for the
/// backward pass instead of computing `tanh` again there.
pub fn tanh_channels_first<B: Backend>(x: Tensor<B, 4>, fast_kernels: bool) -> Tensor<B, 4> {
    fast_or_burn!(
        fast_kernels,
        flex_kernels::tanh_channels_first(x),
        burn::tensor::activation::tanh(x)
    )
}
