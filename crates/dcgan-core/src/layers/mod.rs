//! The layer computations of both networks: convolution, transposed convolution, batch
//! norm followed by leaky ReLU, and the generator's final `tanh`.
//!
//! Every function takes burn's own module (`Conv2d`, `ConvTranspose2d`, `BatchNorm`), so
//! parameters, records and checkpoints are burn's. On most backends they simply call the
//! module's `forward`. On flex (`Autodiff<Flex>` for training, `Flex` for inference, f32)
//! they run hand-written operations instead (see `docs/performance.md` for why and how
//! much): each convolution is one batched GEMM in both directions, batch norm + leaky
//! ReLU is two passes forward and two backward, `tanh` one pass each way. Results agree
//! with burn's operations to float rounding (tested in `tests/layers.rs`).
//!
//! The matrix-product layers ([`conv2d`], [`conv_transpose2d`], [`dense`]) take a
//! [`Precision`]: with [`Precision::Bf16`] they compute in bf16 on every backend, from the
//! f32 parameters (see [`crate::precision`]); the fast path is f32 only.
//!
//! The fast path can be turned off at run time — [`set_flex_kernels`], or the
//! environment variable `CATGAN_FLEX_KERNELS=0` — to compare against burn's operations.

use std::sync::atomic::{AtomicU8, Ordering};

use burn::nn::conv::{Conv2d, ConvTranspose2d};
use burn::nn::{BatchNorm, Linear};
use burn::prelude::*;

use crate::precision::Precision;

mod autocast;

#[cfg(feature = "flex")]
pub(crate) mod buffers;
#[cfg(feature = "flex")]
pub(crate) mod flex;
#[cfg(feature = "flex")]
pub(crate) mod kernels;

/// 0: not decided yet (read the environment), 1: on, 2: off.
static FLEX_KERNELS: AtomicU8 = AtomicU8::new(0);

/// Turns the flex fast path on or off for the whole process (default: on, unless the
/// environment variable `CATGAN_FLEX_KERNELS` is `0`, `off` or `false`).
pub fn set_flex_kernels(enabled: bool) {
    FLEX_KERNELS.store(if enabled { 1 } else { 2 }, Ordering::Relaxed);
}

/// Whether the flex fast path is on (see [`set_flex_kernels`]).
pub fn flex_kernels() -> bool {
    match FLEX_KERNELS.load(Ordering::Relaxed) {
        1 => true,
        2 => false,
        _ => {
            let off = std::env::var("CATGAN_FLEX_KERNELS")
                .map(|v| {
                    matches!(
                        v.trim().to_ascii_lowercase().as_str(),
                        "0" | "off" | "false"
                    )
                })
                .unwrap_or(false);
            // A concurrent `set_flex_kernels` wins over the environment.
            let _ = FLEX_KERNELS.compare_exchange(
                0,
                if off { 2 } else { 1 },
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
            FLEX_KERNELS.load(Ordering::Relaxed) == 1
        }
    }
}

/// `conv.forward(x)` in `precision`, through the fast path where there is one.
pub fn conv2d<B: Backend>(conv: &Conv2d<B>, x: Tensor<B, 4>, precision: Precision) -> Tensor<B, 4> {
    if let Some(dtype) = precision.compute_dtype() {
        return autocast::conv2d(conv, x, dtype);
    }
    #[cfg(feature = "flex")]
    let x = match fast::conv2d(conv, x) {
        Ok(y) => return y,
        Err(x) => x,
    };
    conv.forward(x)
}

/// `conv.forward(x)` of a transposed convolution in `precision`, through the fast path
/// where there is one.
pub fn conv_transpose2d<B: Backend>(
    conv: &ConvTranspose2d<B>,
    x: Tensor<B, 4>,
    precision: Precision,
) -> Tensor<B, 4> {
    if let Some(dtype) = precision.compute_dtype() {
        return autocast::conv_transpose2d(conv, x, dtype);
    }
    #[cfg(feature = "flex")]
    let x = match fast::conv_transpose2d(conv, x) {
        Ok(y) => return y,
        Err(x) => x,
    };
    conv.forward(x)
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

/// `leaky_relu(norm.forward(x), slope)`, through the fast path where there is one.
///
/// Like `BatchNorm::forward`, it uses (and updates) batch statistics on autodiff
/// backends and the running statistics otherwise.
pub fn batch_norm_leaky_relu<B: Backend>(
    norm: &BatchNorm<B>,
    x: Tensor<B, 4>,
    slope: f64,
) -> Tensor<B, 4> {
    #[cfg(feature = "flex")]
    let x = match fast::batch_norm_leaky_relu(norm, x, slope) {
        Ok(y) => return y,
        Err(x) => x,
    };
    burn::tensor::activation::leaky_relu(norm.forward(x), slope)
}

/// Wall time spent in each piece of the flex fast path since the last call, slowest
/// first: `(piece, seconds, calls)`. Empty unless `CATGAN_LAYER_PROFILE=1` was set when
/// the process first used a layer (a profiling aid, see `docs/performance.md`).
pub fn take_flex_profile() -> Vec<(String, f64, u64)> {
    #[cfg(feature = "flex")]
    return flex::profile::take();
    #[cfg(not(feature = "flex"))]
    Vec::new()
}

/// Thread time spent in the fast path's GEMMs, window gathers (`im2col`) and scatters
/// (`col2im`) since the last call, summed over threads: `(kind, seconds, flops)`. Empty
/// unless `CATGAN_LAYER_PROFILE=1` (see [`take_flex_profile`]).
pub fn take_flex_thread_profile() -> Vec<(String, f64, f64)> {
    #[cfg(feature = "flex")]
    return flex::profile::take_threads();
    #[cfg(not(feature = "flex"))]
    Vec::new()
}

/// `leaky_relu(x, slope)`, through the fast path where there is one.
pub fn leaky_relu<B: Backend>(x: Tensor<B, 4>, slope: f64) -> Tensor<B, 4> {
    #[cfg(feature = "flex")]
    let x = match fast::leaky_relu(x, slope) {
        Ok(y) => return y,
        Err(x) => x,
    };
    burn::tensor::activation::leaky_relu(x, slope)
}

/// The same values, in plain row-major NCHW memory: the fast path's layers hand out
/// channels-last views, which burn's own operations read slowly; call this before
/// handing a layer's output to them. A no-op on other backends (and on NCHW tensors).
pub fn to_channels_first<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    #[cfg(feature = "flex")]
    let x = match fast::to_channels_first(x) {
        Ok(y) => return y,
        Err(x) => x,
    };
    x
}

/// `tanh(to_channels_first(x))` (the generator's last step), through the fast path where
/// there is one: a single parallel pass that also keeps `tanh`'s output for the backward
/// pass instead of computing `tanh` again there.
pub fn tanh_channels_first<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    #[cfg(feature = "flex")]
    let x = match fast::tanh_channels_first(x) {
        Ok(y) => return y,
        Err(x) => x,
    };
    burn::tensor::activation::tanh(to_channels_first(x))
}

/// Output side of a convolution: `(size + pads − kernel) / stride + 1`.
#[cfg(feature = "flex")]
fn conv_out(size: usize, pads: usize, kernel: usize, stride: usize) -> Option<usize> {
    (size + pads)
        .checked_sub(kernel)
        .map(|span| span / stride + 1)
}

#[cfg(feature = "flex")]
pub(crate) mod fast {
    //! Dispatch: downcast burn's generic tensors to `Autodiff<Flex>` / `Flex` ones.

    use std::any::Any;

    use burn::backend::Flex;
    use burn::tensor::DType;

    use burn::nn::PaddingConfig2d;

    use super::flex::{self, Ad, ConvKind, ConvSpec};
    use super::kernels::Window;
    use super::*;

    /// `T` as a `U` if they are the same type.
    pub(crate) fn cast<T: 'static, U: 'static>(value: T) -> Result<U, T> {
        let mut slot = Some(value);
        match (&mut slot as &mut dyn Any).downcast_mut::<Option<U>>() {
            Some(u) => Ok(u.take().expect("filled above")),
            None => Err(slot.expect("untouched")),
        }
    }

    /// [`cast`] where `T` and `U` are known to be the same type (the backend was matched
    /// just before).
    pub(crate) fn same<T: 'static, U: 'static>(value: T) -> U {
        match cast(value) {
            Ok(u) => u,
            Err(_) => unreachable!("the backend type was matched just before"),
        }
    }

    fn is_f32<B: Backend, const D: usize>(t: &Tensor<B, D>) -> bool {
        t.dtype() == DType::F32
    }

    /// Runs `spec` on whichever flex backend `B` is, or gives `x` back.
    fn run_conv<B: Backend>(
        spec: ConvSpec,
        x: Tensor<B, 4>,
        weight: Tensor<B, 4>,
        bias: Tensor<B, 1>,
    ) -> Result<Tensor<B, 4>, Tensor<B, 4>> {
        if !(is_f32(&x) && is_f32(&weight) && is_f32(&bias)) {
            return Err(x);
        }
        let x = match cast::<Tensor<B, 4>, Tensor<Ad, 4>>(x) {
            Ok(x) => {
                let (weight, bias) = (cast(weight).ok(), cast(bias).ok());
                let y =
                    flex::conv_autodiff(spec, x, weight.expect("same B"), bias.expect("same B"));
                return Ok(same(y));
            }
            Err(x) => x,
        };
        match cast::<Tensor<B, 4>, Tensor<Flex, 4>>(x) {
            Ok(x) => {
                let (weight, bias) = (cast(weight).ok(), cast(bias).ok());
                let y =
                    flex::conv_inference(spec, x, weight.expect("same B"), bias.expect("same B"));
                Ok(same(y))
            }
            Err(x) => Err(x),
        }
    }

    /// The bias of a convolution the fast path runs: fast path on, one group, no dilation,
    /// and a bias (both networks' layers have one).
    fn fast_path_bias<B: Backend>(
        groups: usize,
        dilation: [usize; 2],
        bias: &Option<burn::module::Param<Tensor<B, 1>>>,
    ) -> Option<&burn::module::Param<Tensor<B, 1>>> {
        if !flex_kernels() || groups != 1 || dilation != [1, 1] {
            return None;
        }
        bias.as_ref()
    }

    pub(super) fn conv2d<B: Backend>(
        conv: &Conv2d<B>,
        x: Tensor<B, 4>,
    ) -> Result<Tensor<B, 4>, Tensor<B, 4>> {
        let Some(bias) = fast_path_bias(conv.groups, conv.dilation, &conv.bias) else {
            return Err(x);
        };
        let [batch, c_in, h, w] = x.dims();
        let [c_out, w_in, kh, kw] = conv.weight.dims();
        let (top, left, bottom, right) = match conv.padding {
            PaddingConfig2d::Explicit(t, l, b, r) => (t, l, b, r),
            PaddingConfig2d::Valid => (0, 0, 0, 0),
            PaddingConfig2d::Same => return Err(x),
        };
        let [sh, sw] = conv.stride;
        let (Some(hs), Some(ws)) = (
            conv_out(h, top + bottom, kh, sh),
            conv_out(w, left + right, kw, sw),
        ) else {
            return Err(x);
        };
        if w_in != c_in || batch == 0 || sh == 0 || sw == 0 {
            return Err(x);
        }
        let spec = ConvSpec {
            kind: ConvKind::Forward,
            window: Window {
                c: c_in,
                hb: h,
                wb: w,
                hs,
                ws,
                kh,
                kw,
                sh,
                sw,
                ph: top,
                pw: left,
            },
            batch,
            grid_channels: c_out,
        };
        run_conv(spec, x, conv.weight.val(), bias.val())
    }

    pub(super) fn conv_transpose2d<B: Backend>(
        conv: &ConvTranspose2d<B>,
        x: Tensor<B, 4>,
    ) -> Result<Tensor<B, 4>, Tensor<B, 4>> {
        let Some(bias) = fast_path_bias(conv.groups, conv.dilation, &conv.bias) else {
            return Err(x);
        };
        let [batch, c_in, h, w] = x.dims();
        let [w_in, c_out, kh, kw] = conv.weight.dims();
        let [sh, sw] = conv.stride;
        let [ph, pw] = conv.padding;
        let [oh, ow] = conv.padding_out;
        // Output side: (in − 1)·stride − 2·pad + kernel + pad_out.
        let side = |n: usize, s: usize, p: usize, k: usize, o: usize| {
            ((n.checked_sub(1)? * s + k + o).checked_sub(2 * p)).filter(|&v| v > 0)
        };
        let (Some(hb), Some(wb)) = (side(h, sh, ph, kh, oh), side(w, sw, pw, kw, ow)) else {
            return Err(x);
        };
        if w_in != c_in || batch == 0 || sh == 0 || sw == 0 || ph >= kh || pw >= kw {
            return Err(x);
        }
        let spec = ConvSpec {
            kind: ConvKind::Transposed,
            window: Window {
                c: c_out,
                hb,
                wb,
                hs: h,
                ws: w,
                kh,
                kw,
                sh,
                sw,
                ph,
                pw,
            },
            batch,
            grid_channels: c_in,
        };
        run_conv(spec, x, conv.weight.val(), bias.val())
    }

    pub(super) fn batch_norm_leaky_relu<B: Backend>(
        norm: &BatchNorm<B>,
        x: Tensor<B, 4>,
        slope: f64,
    ) -> Result<Tensor<B, 4>, Tensor<B, 4>> {
        if !flex_kernels() || !is_f32(&x) || x.dims()[0] == 0 {
            return Err(x);
        }
        let x = match cast::<Tensor<B, 4>, Tensor<Ad, 4>>(x) {
            Ok(x) => {
                let gamma = same(norm.gamma.val());
                let beta = same(norm.beta.val());
                let (y, mean, var) =
                    flex::batch_norm_leaky_autodiff(x, gamma, beta, norm.epsilon, slope);
                update_running_stats(norm, mean, var);
                return Ok(same(y));
            }
            Err(x) => x,
        };
        match cast::<Tensor<B, 4>, Tensor<Flex, 4>>(x) {
            Ok(x) => {
                let params = [
                    norm.gamma.val(),
                    norm.beta.val(),
                    norm.running_mean.value(),
                    norm.running_var.value(),
                ]
                .map(same);
                let y = flex::batch_norm_leaky_inference(x, params, norm.epsilon, slope);
                Ok(same(y))
            }
            Err(x) => Err(x),
        }
    }

    /// `on_autodiff(x)` or `on_flex(x)` if `B` is `Autodiff<Flex>` or `Flex` (f32), else
    /// `x` back: the dispatch of the one-input operations.
    fn on_flex_backends<B: Backend>(
        x: Tensor<B, 4>,
        on_autodiff: impl FnOnce(Tensor<Ad, 4>) -> Tensor<Ad, 4>,
        on_flex: impl FnOnce(Tensor<Flex, 4>) -> Tensor<Flex, 4>,
    ) -> Result<Tensor<B, 4>, Tensor<B, 4>> {
        if !is_f32(&x) {
            return Err(x);
        }
        let x = match cast::<Tensor<B, 4>, Tensor<Ad, 4>>(x) {
            Ok(x) => return Ok(same(on_autodiff(x))),
            Err(x) => x,
        };
        match cast::<Tensor<B, 4>, Tensor<Flex, 4>>(x) {
            Ok(x) => Ok(same(on_flex(x))),
            Err(x) => Err(x),
        }
    }

    pub(super) fn leaky_relu<B: Backend>(
        x: Tensor<B, 4>,
        slope: f64,
    ) -> Result<Tensor<B, 4>, Tensor<B, 4>> {
        if !flex_kernels() {
            return Err(x);
        }
        on_flex_backends(
            x,
            |x| flex::leaky_autodiff(x, slope),
            |x| flex::leaky_inference(x, slope),
        )
    }

    /// A layout change only, so it runs whether or not the fast path is switched on.
    pub(super) fn to_channels_first<B: Backend>(
        x: Tensor<B, 4>,
    ) -> Result<Tensor<B, 4>, Tensor<B, 4>> {
        on_flex_backends(x, flex::channels_first_autodiff, |x| {
            let y = flex::channels_first(x.into_primitive().tensor());
            Tensor::from_primitive(burn::tensor::TensorPrimitive::Float(y))
        })
    }

    pub(super) fn tanh_channels_first<B: Backend>(
        x: Tensor<B, 4>,
    ) -> Result<Tensor<B, 4>, Tensor<B, 4>> {
        if !flex_kernels() {
            return Err(x);
        }
        on_flex_backends(
            x,
            flex::tanh_channels_first_autodiff,
            flex::tanh_channels_first_inference,
        )
    }

    /// The running-statistics update of `BatchNorm::forward` in training, term for term.
    fn update_running_stats<B: Backend>(norm: &BatchNorm<B>, mean: Vec<f32>, var: Vec<f32>) {
        let device = norm.gamma.device();
        let channels = mean.len();
        let m = norm.momentum;
        let new = |v: Vec<f32>| Tensor::<B, 1>::from_data(TensorData::new(v, [channels]), &device);
        let running_mean = norm
            .running_mean
            .value_sync()
            .to_device(&device)
            .mul_scalar(1.0 - m)
            .add(new(mean).mul_scalar(m));
        let running_var = norm
            .running_var
            .value_sync()
            .to_device(&device)
            .mul_scalar(1.0 - m)
            .add(new(var).mul_scalar(m));
        norm.running_mean.update(running_mean.detach());
        norm.running_var.update(running_var.detach());
    }
}
