//! The matrix-product layers in a lower precision: the input, weight and bias are cast to
//! `dtype` for the operation and the result back to the input's own type (see
//! [`crate::precision`]). The casts are autodiff operations, so gradients flow back to the
//! f32 parameters as f32.

use burn::module::Param;
use burn::nn::conv::{Conv2d, ConvTranspose2d};
use burn::nn::{Linear, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::module::{conv2d as conv2d_op, conv_transpose2d as conv_transpose2d_op, linear};
use burn::tensor::ops::{ConvTransposeOptions, PaddedConvOptions};
use burn::tensor::FloatDType;

/// `conv.forward(x)` with the arithmetic in `dtype`.
pub(super) fn conv2d<B: Backend>(
    conv: &Conv2d<B>,
    x: Tensor<B, 4>,
    dtype: FloatDType,
) -> Tensor<B, 4> {
    let [_, _, height, width] = x.dims();
    let ((top, bottom), (left, right)) = padding_pairs(
        &conv.padding,
        [height, width],
        conv.kernel_size,
        conv.stride,
    );
    let options = PaddedConvOptions::asymmetric(
        conv.stride,
        [top, left],
        [bottom, right],
        conv.dilation,
        conv.groups,
    );
    in_dtype(x, &conv.weight, &conv.bias, dtype, |x, w, b| {
        conv2d_op(x, w, b, options)
    })
}

/// `conv.forward(x)` of a transposed convolution with the arithmetic in `dtype`.
pub(super) fn conv_transpose2d<B: Backend>(
    conv: &ConvTranspose2d<B>,
    x: Tensor<B, 4>,
    dtype: FloatDType,
) -> Tensor<B, 4> {
    let options = ConvTransposeOptions::new(
        conv.stride,
        conv.padding,
        conv.padding_out,
        conv.dilation,
        conv.groups,
    );
    in_dtype(x, &conv.weight, &conv.bias, dtype, |x, w, b| {
        conv_transpose2d_op(x, w, b, options)
    })
}

/// `layer.forward(x)` with the arithmetic in `dtype`.
pub(super) fn dense<B: Backend, const D: usize>(
    layer: &Linear<B>,
    x: Tensor<B, D>,
    dtype: FloatDType,
) -> Tensor<B, D> {
    in_dtype(x, &layer.weight, &layer.bias, dtype, linear)
}

/// `op(x, weight, bias)` on copies cast to `dtype`, its result cast back to `x`'s type.
fn in_dtype<B: Backend, const D: usize, const W: usize>(
    x: Tensor<B, D>,
    weight: &Param<Tensor<B, W>>,
    bias: &Option<Param<Tensor<B, 1>>>,
    dtype: FloatDType,
    op: impl FnOnce(Tensor<B, D>, Tensor<B, W>, Option<Tensor<B, 1>>) -> Tensor<B, D>,
) -> Tensor<B, D> {
    let out_dtype = FloatDType::from(x.dtype());
    op(
        x.cast(dtype),
        weight.val().cast(dtype),
        bias.as_ref().map(|bias| bias.val().cast(dtype)),
    )
    .cast(out_dtype)
}

/// `((top, bottom), (left, right))`, as burn's `Conv2d` pads (its helper is crate-private):
/// `Same` puts the odd pixel of an odd total at the end, as ONNX does.
fn padding_pairs(
    padding: &PaddingConfig2d,
    [height, width]: [usize; 2],
    kernel: [usize; 2],
    stride: [usize; 2],
) -> ((usize, usize), (usize, usize)) {
    let same = |size: usize, kernel: usize, stride: usize| {
        let out = size.div_ceil(stride);
        let total = if out > 0 {
            ((out - 1) * stride + kernel).saturating_sub(size)
        } else {
            0
        };
        (total / 2, total - total / 2)
    };
    match *padding {
        PaddingConfig2d::Valid => ((0, 0), (0, 0)),
        PaddingConfig2d::Same => (
            same(height, kernel[0], stride[0]),
            same(width, kernel[1], stride[1]),
        ),
        PaddingConfig2d::Explicit(top, left, bottom, right) => ((top, bottom), (left, right)),
    }
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use super::*;
    use burn::nn::conv::{Conv2dConfig, ConvTranspose2dConfig};
    use burn::nn::LinearConfig;

    type B = crate::TestBackend;

    /// In f32 the cast path must be exactly burn's own forward: checks the padding and
    /// options are passed through unchanged, for every padding mode.
    #[test]
    fn in_f32_the_layers_equal_burns_forward() {
        let device = Default::default();
        let x = Tensor::<B, 4>::random(
            [2, 3, 9, 8],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &device,
        );
        for padding in [
            PaddingConfig2d::Valid,
            PaddingConfig2d::Same,
            PaddingConfig2d::Explicit(2, 1, 0, 2),
        ] {
            for stride in [1, 2] {
                let conv = Conv2dConfig::new([3, 4], [3, 4])
                    .with_stride([stride, stride])
                    .with_padding(padding.clone())
                    .init::<B>(&device);
                let ours = conv2d(&conv, x.clone(), FloatDType::F32);
                ours.into_data()
                    .assert_eq(&conv.forward(x.clone()).into_data(), true);
            }
        }
        let up = ConvTranspose2dConfig::new([3, 2], [5, 5])
            .with_stride([2, 2])
            .with_padding([2, 2])
            .with_padding_out([1, 1])
            .init::<B>(&device);
        conv_transpose2d(&up, x.clone(), FloatDType::F32)
            .into_data()
            .assert_eq(&up.forward(x.clone()).into_data(), true);
        let layer = LinearConfig::new(8, 5).init::<B>(&device);
        dense(&layer, x.clone(), FloatDType::F32)
            .into_data()
            .assert_eq(&layer.forward(x).into_data(), true);
    }
}
