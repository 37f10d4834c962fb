//! The flex fast path (`dcgan_core::layers`) computes what burn's own operations compute:
//! forward outputs and every gradient, on random data, for each layer shape the networks
//! use (and some odd ones), and for whole networks.
#![cfg(feature = "flex")]

use std::sync::Mutex;

use burn::backend::{Autodiff, Flex};
use burn::module::{AutodiffModule, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::{leaky_relu, tanh};
use dcgan_core::layers;
use dcgan_core::{DiscriminatorConfig, GeneratorConfig, LatentDistribution, Precision, WeightInit};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

type B = Autodiff<Flex>;

/// Tests that switch the fast path off hold this, so no other test sees it off.
static SWITCH: Mutex<()> = Mutex::new(());

fn fast_on() -> std::sync::MutexGuard<'static, ()> {
    let guard = SWITCH.lock().unwrap_or_else(|e| e.into_inner());
    layers::set_flex_kernels(true);
    guard
}

fn random<Bk: Backend, const D: usize>(shape: [usize; D], seed: u64, scale: f32) -> Tensor<Bk, D> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.random_range(-scale..scale)).collect();
    Tensor::from_data(TensorData::new(v, shape), &Default::default())
}

fn values<Bk: Backend, const D: usize>(t: Tensor<Bk, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec::<f32>().unwrap()
}

/// `max |a − b| / max(max |b|, 1e-3)`.
fn rel_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
        / scale
}

fn assert_close(what: &str, fast: &[f32], reference: &[f32]) {
    let d = rel_diff(fast, reference);
    assert!(d < 1e-4, "{what}: relative difference {d:e}");
    assert!(
        reference.iter().any(|v| v.abs() > 1e-6),
        "{what}: reference is all zeros, the comparison means nothing"
    );
}

/// Forward output and gradients (of `x` and of each parameter) of `f` on `x`, with the
/// loss `Σ y·r` for a fixed random `r`.
fn run<const M: usize, const N: usize>(
    x: Tensor<B, 4>,
    params: [&Param<Tensor<B, 4>>; M],
    vectors: [&Param<Tensor<B, 1>>; N],
    f: impl Fn(Tensor<B, 4>) -> Tensor<B, 4>,
) -> (Vec<f32>, Vec<Vec<f32>>) {
    let x = x.require_grad();
    let y = f(x.clone());
    let r = random::<B, 4>(y.dims(), 99, 1.0);
    let grads = (y.clone() * r).sum().backward();
    let mut g = vec![values(x.grad(&grads).expect("x has a gradient"))];
    for p in params {
        g.push(values(p.val().grad(&grads).expect("weight has a gradient")));
    }
    for p in vectors {
        g.push(values(p.val().grad(&grads).expect("vector has a gradient")));
    }
    (values(y), g)
}

fn check(what: &str, fast: (Vec<f32>, Vec<Vec<f32>>), reference: (Vec<f32>, Vec<Vec<f32>>)) {
    assert_close(&format!("{what} forward"), &fast.0, &reference.0);
    for (i, (f, r)) in fast.1.iter().zip(&reference.1).enumerate() {
        let name = ["d input", "d weight", "d bias", "d beta"][i.min(3)];
        assert_close(&format!("{what} {name}"), f, r);
    }
}

fn conv(c_in: usize, c_out: usize, k: usize, stride: usize, pad: usize, seed: u64) -> Conv2d<B> {
    let mut conv = Conv2dConfig::new([c_in, c_out], [k, k])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
        .init::<B>(&Default::default());
    conv.weight = Param::from_tensor(random([c_out, c_in, k, k], seed, 0.3));
    conv.bias = Some(Param::from_tensor(random([c_out], seed + 1, 0.3)));
    conv
}

fn conv_t(c_in: usize, c_out: usize, k: usize, stride: usize, seed: u64) -> ConvTranspose2d<B> {
    let pad = (k - 1) / 2;
    let mut conv = ConvTranspose2dConfig::new([c_in, c_out], [k, k])
        .with_stride([stride, stride])
        .with_padding([pad, pad])
        .with_padding_out([stride - 1, stride - 1])
        .init::<B>(&Default::default());
    conv.weight = Param::from_tensor(random([c_in, c_out, k, k], seed, 0.3));
    conv.bias = Some(Param::from_tensor(random([c_out], seed + 1, 0.3)));
    conv
}

#[test]
fn convolutions_match_burn_forward_and_backward() {
    let _on = fast_on();
    // (batch, c_in, c_out, side, kernel, stride, pad): the discriminator's layers and odd ones.
    for (i, &(n, ci, co, side, k, s, p)) in [
        (3, 3, 4, 16, 5, 2, 2),
        (2, 5, 6, 9, 5, 2, 2),
        (2, 4, 3, 8, 5, 1, 2),
        (1, 6, 2, 7, 3, 1, 1),
        (2, 3, 5, 6, 3, 2, 0),
        // Uneven groups of images (5 images in groups of 2).
        (5, 3, 4, 6, 5, 2, 2),
    ]
    .iter()
    .enumerate()
    {
        let c = conv(ci, co, k, s, p, 10 + i as u64);
        let x = random::<B, 4>([n, ci, side, side + 1], 20 + i as u64, 1.0);
        let bias = c.bias.as_ref().unwrap();
        let fast = run(x.clone(), [&c.weight], [bias], |x| {
            layers::conv2d(&c, x, Precision::F32)
        });
        let reference = run(x, [&c.weight], [bias], |x| c.forward(x));
        check(&format!("conv2d case {i}"), fast, reference);
    }
}

#[test]
fn transposed_convolutions_match_burn_forward_and_backward() {
    let _on = fast_on();
    // (batch, c_in, c_out, side, kernel, stride): the generator's layers and odd ones.
    for (i, &(n, ci, co, side, k, s)) in [
        (3, 8, 4, 4, 5, 2),
        (2, 4, 3, 8, 5, 1),
        (2, 5, 6, 5, 3, 2),
        (1, 3, 2, 3, 5, 2),
        (6, 3, 4, 3, 5, 2),
    ]
    .iter()
    .enumerate()
    {
        let c = conv_t(ci, co, k, s, 30 + i as u64);
        let x = random::<B, 4>([n, ci, side, side + 2], 40 + i as u64, 1.0);
        let bias = c.bias.as_ref().unwrap();
        let fast = run(x.clone(), [&c.weight], [bias], |x| {
            layers::conv_transpose2d(&c, x, Precision::F32)
        });
        let reference = run(x, [&c.weight], [bias], |x| c.forward(x));
        check(&format!("conv_transpose2d case {i}"), fast, reference);
    }
}

#[test]
fn weight_gradients_need_no_input_gradient() {
    // The discriminator's first layer on real images: the input is not tracked.
    let _on = fast_on();
    let c = conv(3, 4, 5, 2, 2, 50);
    let ct = conv_t(4, 3, 5, 2, 51);
    let x = random::<B, 4>([2, 3, 8, 8], 52, 1.0);
    let z = random::<B, 4>([2, 4, 4, 4], 53, 1.0);
    let grads_of = |y: Tensor<B, 4>, w: &Param<Tensor<B, 4>>| {
        let g = y.sum().backward();
        values(w.val().grad(&g).unwrap())
    };
    assert_close(
        "conv2d dW, untracked input",
        &grads_of(layers::conv2d(&c, x.clone(), Precision::F32), &c.weight),
        &grads_of(c.forward(x), &c.weight),
    );
    assert_close(
        "conv_transpose2d dW, untracked input",
        &grads_of(
            layers::conv_transpose2d(&ct, z.clone(), Precision::F32),
            &ct.weight,
        ),
        &grads_of(ct.forward(z), &ct.weight),
    );
}

fn norm(channels: usize, seed: u64) -> BatchNorm<B> {
    let mut bn = BatchNormConfig::new(channels).init::<B>(&Default::default());
    bn.gamma = Param::from_tensor(random::<B, 1>([channels], seed, 1.0).add_scalar(1.0));
    bn.beta = Param::from_tensor(random([channels], seed + 1, 0.5));
    bn
}

#[test]
fn batch_norm_leaky_relu_matches_burn_in_training_and_inference() {
    let _on = fast_on();
    for (i, &(n, c, h, w, slope)) in [(4, 3, 5, 6, 0.2), (2, 5, 4, 4, 0.0), (3, 2, 1, 1, 0.2)]
        .iter()
        .enumerate()
    {
        let fast_bn = norm(c, 60 + i as u64);
        let ref_bn = norm(c, 60 + i as u64);
        // An offset and a scale per channel, as after a convolution.
        let x = random::<B, 4>([n, c, h, w], 70 + i as u64, 2.0).add_scalar(0.7);
        let fast = run(x.clone(), [], [&fast_bn.gamma, &fast_bn.beta], |x| {
            layers::batch_norm_leaky_relu(&fast_bn, x, slope)
        });
        let reference = run(x.clone(), [], [&ref_bn.gamma, &ref_bn.beta], |x| {
            leaky_relu(ref_bn.forward(x), slope)
        });
        check(&format!("batch norm case {i}"), fast.clone(), reference);
        // Running statistics: updated the same way.
        for (what, f, r) in [
            (
                "running mean",
                fast_bn.running_mean.value_sync(),
                ref_bn.running_mean.value_sync(),
            ),
            (
                "running var",
                fast_bn.running_var.value_sync(),
                ref_bn.running_var.value_sync(),
            ),
        ] {
            assert_close(what, &values(f), &values(r));
        }
        // Inference (plain Flex, running statistics).
        let (fast_bn, ref_bn) = (fast_bn.valid(), ref_bn.valid());
        let x = x.inner();
        assert_close(
            "batch norm inference",
            &values(layers::batch_norm_leaky_relu(&fast_bn, x.clone(), slope)),
            &values(leaky_relu(ref_bn.forward(x), slope)),
        );
    }
}

#[test]
fn tanh_channels_first_matches_burn_in_training_and_inference() {
    let _on = fast_on();
    let ct = conv_t(4, 3, 5, 1, 84);
    let z = random::<B, 4>([2, 4, 6, 5], 85, 1.5);
    // On plain NCHW input, and on a transposed convolution's output (channels-last).
    let fast = run(z.clone(), [], [], layers::tanh_channels_first);
    let reference = run(z.clone(), [], [], tanh);
    check("tanh", fast, reference);
    let fast = run(z.clone(), [&ct.weight], [], |x| {
        layers::tanh_channels_first(layers::conv_transpose2d(&ct, x, Precision::F32))
    });
    let reference = run(z.clone(), [&ct.weight], [], |x| tanh(ct.forward(x)));
    check("tanh after a transposed convolution", fast, reference);
    // Inference.
    let (ct, z) = (ct.valid(), z.inner());
    let fast =
        layers::tanh_channels_first(layers::conv_transpose2d(&ct, z.clone(), Precision::F32));
    assert_eq!(fast.dims(), [2, 3, 6, 5]);
    assert_close(
        "tanh inference",
        &values(fast),
        &values(tanh(ct.forward(z))),
    );
}

#[test]
fn inference_convolutions_match_burn() {
    let _on = fast_on();
    let c = conv(3, 4, 5, 2, 2, 80).valid();
    let ct = conv_t(4, 3, 5, 2, 81).valid();
    let x = random::<Flex, 4>([2, 3, 8, 8], 82, 1.0);
    let z = random::<Flex, 4>([2, 4, 4, 4], 83, 1.0);
    assert_close(
        "conv2d inference",
        &values(layers::conv2d(&c, x.clone(), Precision::F32)),
        &values(c.forward(x)),
    );
    assert_close(
        "conv_transpose2d inference",
        &values(layers::conv_transpose2d(&ct, z.clone(), Precision::F32)),
        &values(ct.forward(z)),
    );
}

/// G and D forward, and the gradients of every parameter, with the fast path on and off.
fn networks(fast: bool) -> (Vec<f32>, Vec<f32>, Vec<Vec<f32>>) {
    layers::set_flex_kernels(fast);
    let device = Default::default();
    let init = WeightInit::new().with_std(0.1);
    // The seed's family at 32 px: a stride-1 layer and batch norm on every D layer.
    let g = GeneratorConfig::new(32)
        .with_base_channels(4)
        .with_latent_dim(12)
        .with_init(init.clone());
    let d = DiscriminatorConfig::new(32)
        .with_base_channels(4)
        .with_strides(vec![2, 1, 2, 2])
        .with_first_batch_norm(true)
        .with_init(init);
    let g = g.init_seeded::<B>(&device, 5).unwrap();
    let d = d.init_seeded::<B>(&device, 6).unwrap();
    let z =
        LatentDistribution::Uniform.tensor::<B>(3, 12, &mut ChaCha8Rng::seed_from_u64(7), &device);
    let images = g.forward(z);
    let logits = d.forward(images.clone());
    let grads = logits.clone().sum().backward();
    let mut all = Vec::new();
    let mut collect = |p: Option<Tensor<Flex, 4>>| all.push(values(p.expect("a gradient")));
    for block in &g.blocks {
        collect(block.conv.weight.val().grad(&grads));
    }
    collect(g.to_image.weight.val().grad(&grads));
    for block in &d.blocks {
        collect(block.conv.weight.val().grad(&grads));
    }
    let mut vectors: Vec<Vec<f32>> = Vec::new();
    for block in &g.blocks {
        vectors.push(values(block.norm.gamma.val().grad(&grads).unwrap()));
        vectors.push(values(block.norm.beta.val().grad(&grads).unwrap()));
        // (The bias of a convolution followed by batch norm has a zero gradient up to
        // rounding, so its values are noise: not compared.)
    }
    for block in &d.blocks {
        if let Some(n) = &block.norm {
            vectors.push(values(n.gamma.val().grad(&grads).unwrap()));
        }
    }
    vectors.push(values(g.project.weight.val().grad(&grads).unwrap()));
    all.extend(vectors);
    layers::set_flex_kernels(true);
    (values(images), values(logits), all)
}

#[test]
fn whole_networks_match_burn_forward_and_backward() {
    let _guard = fast_on();
    let fast = networks(true);
    let reference = networks(false);
    assert_close("generator images", &fast.0, &reference.0);
    assert_close("discriminator logits", &fast.1, &reference.1);
    for (i, (f, r)) in fast.2.iter().zip(&reference.2).enumerate() {
        // Gradients through several layers: allow a little more rounding.
        let d = rel_diff(f, r);
        assert!(
            d < 1e-3,
            "parameter gradient {i}: relative difference {d:e}"
        );
    }
}
