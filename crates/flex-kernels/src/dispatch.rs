//! The public layer functions: downcast burn's generic tensors to `Autodiff<Flex>` /
//! `Flex` ones and run the fast path, or fall back to burn's own operation.

use std::any::Any;

use burn::backend::Flex;
use burn::module::Param;
use burn::nn::conv::{Conv2d, ConvTranspose2d};
use burn::nn::{BatchNorm, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::DType;

use crate::calls::{count, Calls};
use crate::kernels::{Pool, Window};
use crate::ops::{self, Ad, ConvKind, ConvSpec};

/// `conv.forward(x)`: on flex (f32, one group, no dilation, a bias, explicit or valid
/// padding) as one batched GEMM per direction, channels-last; else burn's own.
pub fn conv2d<B: Backend>(conv: &Conv2d<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
    match fast_conv2d(conv, x, None) {
        Ok(y) => {
            count(|c: &mut Calls| &mut c.conv2d);
            y
        }
        Err(x) => conv.forward(x),
    }
}

/// `leaky_relu(conv.forward(x), slope)` (a ReLU with slope 0): [`conv2d`] then
/// [`leaky_relu`], except on `Flex` (inference), where the activation runs on each group
/// of images' output right after its GEMM, while it is in cache, instead of as a pass of
/// its own. Counted as one call of each.
pub fn conv2d_leaky_relu<B: Backend>(
    conv: &Conv2d<B>,
    x: Tensor<B, 4>,
    slope: f64,
) -> Tensor<B, 4> {
    let x = match cast::<Tensor<B, 4>, Tensor<Flex, 4>>(x) {
        Ok(x) => match fast_conv2d(conv_on::<B>(conv), x, Some(slope as f32)) {
            Ok(y) => {
                count(|c: &mut Calls| &mut c.conv2d);
                count(|c: &mut Calls| &mut c.leaky_relu);
                return same(y);
            }
            Err(x) => same(x),
        },
        Err(x) => x,
    };
    leaky_relu(conv2d(conv, x), slope)
}

/// `conv` as a `Conv2d<Flex>` (only called once `B` is known to be `Flex`).
fn conv_on<B: Backend>(conv: &Conv2d<B>) -> &Conv2d<Flex> {
    (conv as &dyn Any)
        .downcast_ref::<Conv2d<Flex>>()
        .expect("the backend type was matched just before")
}

/// `conv.forward(x)` of a transposed convolution: on flex (f32, one group, no dilation,
/// a bias) as one batched GEMM per direction, channels-last; else burn's own.
pub fn conv_transpose2d<B: Backend>(conv: &ConvTranspose2d<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
    match fast_conv_transpose2d(conv, x) {
        Ok(y) => {
            count(|c: &mut Calls| &mut c.conv_transpose2d);
            y
        }
        Err(x) => conv.forward(x),
    }
}

/// `leaky_relu(norm.forward(x), slope)`: on flex (f32) two passes forward and two
/// backward, channels-last; else burn's own.
///
/// Like `BatchNorm::forward`, it uses (and updates) batch statistics on `Autodiff<Flex>`
/// and the running statistics on `Flex`.
pub fn batch_norm_leaky_relu<B: Backend>(
    norm: &BatchNorm<B>,
    x: Tensor<B, 4>,
    slope: f64,
) -> Tensor<B, 4> {
    match fast_batch_norm_leaky_relu(norm, x, slope) {
        Ok(y) => {
            count(|c: &mut Calls| &mut c.batch_norm_leaky_relu);
            y
        }
        Err(x) => burn::tensor::activation::leaky_relu(norm.forward(x), slope),
    }
}

/// `leaky_relu(x, slope)`: on flex (f32) one pass each way, keeping the input's layout;
/// else burn's own.
pub fn leaky_relu<B: Backend>(x: Tensor<B, 4>, slope: f64) -> Tensor<B, 4> {
    let fast = on_flex_backends(
        x,
        |x| ops::leaky_autodiff(x, slope),
        |x| ops::leaky_inference(x, slope),
    );
    match fast {
        Ok(y) => {
            count(|c: &mut Calls| &mut c.leaky_relu);
            y
        }
        Err(x) => burn::tensor::activation::leaky_relu(x, slope),
    }
}

/// `max_pool2d(x, kernel, stride, padding)` (no dilation, floor): on `Flex` (f32,
/// inference) one pass over channels-last maps, the result channels-last; else burn's own.
pub fn max_pool2d<B: Backend>(
    x: Tensor<B, 4>,
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
) -> Tensor<B, 4> {
    match pool_on_flex(x, kernel, stride, padding, Pool::Max) {
        Ok(y) => y,
        Err(x) => burn::tensor::module::max_pool2d(x, kernel, stride, padding, [1, 1], false),
    }
}

/// `avg_pool2d(x, kernel, stride, padding)` with padding not counted (floor): on `Flex`
/// (f32, inference) one pass over channels-last maps, the result channels-last; else
/// burn's own.
pub fn avg_pool2d<B: Backend>(
    x: Tensor<B, 4>,
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
) -> Tensor<B, 4> {
    match pool_on_flex(x, kernel, stride, padding, Pool::Average) {
        Ok(y) => y,
        Err(x) => burn::tensor::module::avg_pool2d(x, kernel, stride, padding, false, false),
    }
}

fn pool_on_flex<B: Backend>(
    x: Tensor<B, 4>,
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
    kind: Pool,
) -> Result<Tensor<B, 4>, Tensor<B, 4>> {
    let [_, _, h, w] = x.dims();
    let fits = (0..2).all(|i| {
        let size = [h, w][i] + 2 * padding[i];
        stride[i] > 0 && kernel[i] > 0 && kernel[i] <= size && padding[i] < kernel[i]
    });
    if !fits || !is_f32(&x) {
        return Err(x);
    }
    let x = cast::<Tensor<B, 4>, Tensor<Flex, 4>>(x)?;
    count(|c: &mut Calls| &mut c.pool2d);
    Ok(same(ops::pool_inference(x, kernel, stride, padding, kind)))
}

/// `Tensor::cat(xs, 1)`: maps of equal batch and size joined along their channels. On
/// `Flex` (f32, inference) each pixel's channels are copied once into a channels-last
/// result (the fast layers' outputs are read without a copy); else burn's own.
///
/// # Panics
/// If `xs` is empty or the maps differ in batch or size (as `Tensor::cat`).
pub fn cat_channels<B: Backend>(xs: Vec<Tensor<B, 4>>) -> Tensor<B, 4> {
    let [n, _, h, w] = xs.first().expect("at least one map").dims();
    let uniform = xs.iter().all(|x| {
        let [xn, _, xh, xw] = x.dims();
        [xn, xh, xw] == [n, h, w] && is_f32(x)
    });
    if !uniform {
        return Tensor::cat(xs, 1);
    }
    match cast::<Vec<Tensor<B, 4>>, Vec<Tensor<Flex, 4>>>(xs) {
        Ok(xs) => {
            count(|c: &mut Calls| &mut c.cat_channels);
            same(ops::cat_channels_inference(xs))
        }
        Err(xs) => Tensor::cat(xs, 1),
    }
}

/// The same values, in plain row-major NCHW memory. The fast path's layers hand out
/// channels-last views, which burn's own operations read slowly: call this before handing
/// their output to burn's operations (`flatten`, a loss, ...). A no-op on other backends
/// and on tensors that already are NCHW.
pub fn to_channels_first<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    let fast = on_flex_backends(x, ops::channels_first_autodiff, |x| {
        let y = ops::channels_first(x.into_primitive().tensor());
        Tensor::from_primitive(burn::tensor::TensorPrimitive::Float(y))
    });
    match fast {
        Ok(y) => {
            count(|c: &mut Calls| &mut c.to_channels_first);
            y
        }
        Err(x) => x,
    }
}

/// `tanh(to_channels_first(x))` (a generator's last step): on flex (f32) a single
/// parallel pass that also keeps `tanh`'s output for the backward pass instead of
/// computing `tanh` again there; else burn's own.
pub fn tanh_channels_first<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    let fast = on_flex_backends(
        x,
        ops::tanh_channels_first_autodiff,
        ops::tanh_channels_first_inference,
    );
    match fast {
        Ok(y) => {
            count(|c: &mut Calls| &mut c.tanh_channels_first);
            y
        }
        Err(x) => burn::tensor::activation::tanh(x),
    }
}

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

/// Output side of a convolution: `(size + pads − kernel) / stride + 1`.
fn conv_out(size: usize, pads: usize, kernel: usize, stride: usize) -> Option<usize> {
    (size + pads)
        .checked_sub(kernel)
        .map(|span| span / stride + 1)
}

/// Runs `spec` on whichever flex backend `B` is, or gives `x` back. A `slope` (a fused
/// leaky ReLU) is only asked for on `Flex`.
fn run_conv<B: Backend>(
    spec: ConvSpec,
    x: Tensor<B, 4>,
    weight: Tensor<B, 4>,
    bias: Tensor<B, 1>,
    slope: Option<f32>,
) -> Result<Tensor<B, 4>, Tensor<B, 4>> {
    if !(is_f32(&x) && is_f32(&weight) && is_f32(&bias)) {
        return Err(x);
    }
    let x = match cast::<Tensor<B, 4>, Tensor<Ad, 4>>(x) {
        Ok(x) => {
            let (weight, bias) = (cast(weight).ok(), cast(bias).ok());
            let y = ops::conv_autodiff(spec, x, weight.expect("same B"), bias.expect("same B"));
            return Ok(same(y));
        }
        Err(x) => x,
    };
    match cast::<Tensor<B, 4>, Tensor<Flex, 4>>(x) {
        Ok(x) => {
            let (weight, bias) = (cast(weight).ok(), cast(bias).ok());
            let y = ops::conv_inference(
                spec,
                x,
                weight.expect("same B"),
                bias.expect("same B"),
                slope,
            );
            Ok(same(y))
        }
        Err(x) => Err(x),
    }
}

/// The bias of a convolution the fast path runs: one group, no dilation, and a bias.
fn fast_path_bias<B: Backend>(
    groups: usize,
    dilation: [usize; 2],
    bias: &Option<Param<Tensor<B, 1>>>,
) -> Option<&Param<Tensor<B, 1>>> {
    if groups != 1 || dilation != [1, 1] {
        return None;
    }
    bias.as_ref()
}

fn fast_conv2d<B: Backend>(
    conv: &Conv2d<B>,
    x: Tensor<B, 4>,
    slope: Option<f32>,
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
    run_conv(spec, x, conv.weight.val(), bias.val(), slope)
}

fn fast_conv_transpose2d<B: Backend>(
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
    run_conv(spec, x, conv.weight.val(), bias.val(), None)
}

fn fast_batch_norm_leaky_relu<B: Backend>(
    norm: &BatchNorm<B>,
    x: Tensor<B, 4>,
    slope: f64,
) -> Result<Tensor<B, 4>, Tensor<B, 4>> {
    if !is_f32(&x) || x.dims()[0] == 0 {
        return Err(x);
    }
    let x = match cast::<Tensor<B, 4>, Tensor<Ad, 4>>(x) {
        Ok(x) => {
            let gamma = same(norm.gamma.val());
            let beta = same(norm.beta.val());
            let (y, mean, var) =
                ops::batch_norm_leaky_autodiff(x, gamma, beta, norm.epsilon, slope);
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
            let y = ops::batch_norm_leaky_inference(x, params, norm.epsilon, slope);
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
