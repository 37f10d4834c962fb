//! The fast path computes what burn's own operations compute: forward outputs and every
//! gradient, on random data, for each layer shape of a DCGAN (and some odd ones), in
//! training and inference; and [`flex_kernels::calls`] shows that it is the fast path
//! that ran, not burn's operations compared with themselves.

use burn::backend::{Autodiff, Flex};
use burn::module::{AutodiffModule, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::{leaky_relu, tanh};
use flex_kernels::Calls;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

type B = Autodiff<Flex>;

/// Runs `f` and checks that it ran `n` fast-path operations of the kind `kind` picks, and
/// no others (the counters are per thread, so other tests do not interfere).
fn on_fast_path<T>(
    what: &str,
    kind: fn(&mut Calls) -> &mut u64,
    n: u64,
    f: impl FnOnce() -> T,
) -> T {
    let before = flex_kernels::calls();
    let out = f();
    let ran = flex_kernels::calls().since(&before);
    let mut expected = Calls::default();
    *kind(&mut expected) = n;
    assert_eq!(ran, expected, "{what}: fast-path calls");
    out
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
    // (batch, c_in, c_out, side, kernel, stride, pad): the discriminator's layers and odd ones.
    for (i, &(n, ci, co, side, k, s, p)) in [
        (3, 3, 4, 16, 5, 2, 2),
        (2, 5, 6, 9, 5, 2, 2),
        (2, 4, 3, 8, 5, 1, 2),
        (1, 6, 2, 7, 3, 1, 1),
        (2, 3, 5, 6, 3, 2, 0),
        // Uneven groups of images (5 images in groups of 2).
        (5, 3, 4, 6, 5, 2, 2),
        // 1×1 (the input is the window matrix), and 1×1 with a stride (it is not).
        (3, 7, 5, 6, 1, 1, 0),
        (2, 7, 5, 6, 1, 2, 0),
        // A wide grid on a small map, as D's last layers: weight-gradient parts `[G, K]`,
        // the input gradient's product computed column-major (kernels::gemm).
        (1, 48, 1024, 4, 5, 2, 2),
        // A window matrix of 6.6 MB, built in pieces of 10 lines (the last one shorter).
        // Stride 1: the forward product and the input gradient by Winograd's transforms
        // (the weight gradient from window matrices), as this case and the next two.
        (1, 16, 8, 64, 5, 1, 2),
        // seed128's stride-1 layer in D (64 → 128 on 16 × 16 maps at base 16).
        (2, 64, 128, 16, 5, 1, 2),
        // 3×3 on a map of 4 tiles of 4 and a bit, padded and not.
        (2, 8, 6, 17, 3, 1, 1),
        (2, 8, 6, 18, 3, 1, 0),
        // Maps of an image's 3 channels (or 1), grids of 16 or 32 channels: the direct
        // path (flex_kernels::direct), as D's first layer and the FID Inception's.
        (3, 3, 16, 16, 5, 2, 2),
        (2, 3, 32, 13, 5, 2, 2),
        (2, 3, 32, 19, 3, 2, 0),
        (2, 1, 16, 9, 5, 1, 2),
        // Maps of 16 channels (one vector), as D's second layer at base 16: the direct
        // path too.
        (2, 16, 32, 16, 5, 2, 2),
        (3, 16, 16, 11, 5, 2, 2),
    ]
    .iter()
    .enumerate()
    {
        let c = conv(ci, co, k, s, p, 10 + i as u64);
        let x = random::<B, 4>([n, ci, side, side + 1], 20 + i as u64, 1.0);
        let bias = c.bias.as_ref().unwrap();
        let what = format!("conv2d case {i}");
        let fast = on_fast_path(
            &what,
            |c| &mut c.conv2d,
            1,
            || {
                run(x.clone(), [&c.weight], [bias], |x| {
                    flex_kernels::conv2d(&c, x)
                })
            },
        );
        let reference = run(x, [&c.weight], [bias], |x| c.forward(x));
        check(&what, fast, reference);
    }
}

#[test]
fn transposed_convolutions_match_burn_forward_and_backward() {
    // (batch, c_in, c_out, side, kernel, stride): the generator's layers and odd ones.
    for (i, &(n, ci, co, side, k, s)) in [
        (3, 8, 4, 4, 5, 2),
        (2, 4, 3, 8, 5, 1),
        (2, 5, 6, 5, 3, 2),
        (1, 3, 2, 3, 5, 2),
        (6, 3, 4, 3, 5, 2),
        // A wide grid, as G's first layers: weight-gradient parts `[G, K]`, the forward
        // product computed column-major (kernels::gemm).
        (2, 1024, 48, 3, 5, 2),
        // A window matrix of 1.7 MB an image, built in pieces of 19 lines.
        (1, 8, 16, 32, 5, 2),
        // Grids of 16 or 32 channels to 3-channel maps: the direct path, as G's last
        // layer (stride 1) and strided ones.
        (2, 16, 3, 16, 5, 1),
        (3, 32, 3, 7, 5, 2),
        (2, 16, 2, 6, 3, 2),
        (2, 16, 4, 5, 4, 2),
        // Grids of 32 channels to 16-channel maps, as G's last but one at base 16 (the
        // direct path).
        (2, 32, 16, 8, 5, 2),
        (3, 16, 16, 5, 5, 2),
    ]
    .iter()
    .enumerate()
    {
        let c = conv_t(ci, co, k, s, 30 + i as u64);
        let x = random::<B, 4>([n, ci, side, side + 2], 40 + i as u64, 1.0);
        let bias = c.bias.as_ref().unwrap();
        let what = format!("conv_transpose2d case {i}");
        let fast = on_fast_path(
            &what,
            |c| &mut c.conv_transpose2d,
            1,
            || {
                run(x.clone(), [&c.weight], [bias], |x| {
                    flex_kernels::conv_transpose2d(&c, x)
                })
            },
        );
        let reference = run(x, [&c.weight], [bias], |x| c.forward(x));
        check(&what, fast, reference);
    }
}

#[test]
fn stride_2_layers_as_stacked_phases_match_burn() {
    // Stride 2 with grids at least 16 wide (8 with 512 channels or more on both sides, or
    // 64 and at least 128 tiles in the batch)
    // and 32 channels or more on both sides: the forward products and input gradients as
    // a stride-1 convolution of the stacked phases by Winograd's transforms
    // (flex_kernels::phases), the weight gradients by Winograd's backward filter pass;
    // with the switch off in between, the backward pass still takes the forward pass's
    // path. Grids of 16 × 17, 32 × 33 (maps 64 × 66) for one image, 8 × 9 with 512
    // channels (groups of at least 128 tiles, GEMMs that thread themselves), and 8 × 9
    // with 64 and 128 channels for 32 images (192 tiles, 2 a side).
    for (i, &(n, ci, co, side, k, p, off_between)) in [
        (2, 32, 48, 32, 5, 2, false),
        (3, 33, 32, 32, 4, 1, true),
        (1, 32, 32, 64, 5, 2, false),
        (2, 512, 512, 16, 5, 2, false),
        (32, 64, 128, 16, 5, 2, false),
    ]
    .iter()
    .enumerate()
    {
        let c = conv(ci, co, k, 2, p, 110 + i as u64);
        let x = random::<B, 4>([n, ci, side, side + 2], 120 + i as u64, 1.0);
        let what = format!("stride-2 conv2d by phases, case {i}");
        let fast = on_fast_path(
            &what,
            |c| &mut c.conv2d,
            1,
            || {
                let x = x.clone().require_grad();
                let y = flex_kernels::conv2d(&c, x.clone());
                let r = random::<B, 4>(y.dims(), 7, 1.0);
                flex_kernels::phases::enable(!off_between);
                let grads = (y.clone() * r).sum().backward();
                flex_kernels::phases::enable(true);
                let of = |t: Tensor<B, 4>| values(t.grad(&grads).expect("a gradient"));
                let dw = values(c.weight.val().grad(&grads).expect("a gradient"));
                (values(y), vec![of(x), dw])
            },
        );
        let x = x.require_grad();
        let y = c.forward(x.clone());
        let r = random::<B, 4>(y.dims(), 7, 1.0);
        let grads = (y.clone() * r).sum().backward();
        let dw = values(c.weight.val().grad(&grads).expect("a gradient"));
        check(
            &what,
            fast,
            (values(y), vec![values(x.grad(&grads).unwrap()), dw]),
        );

        if k != 5 {
            continue; // conv_t's padding makes a 4×4 kernel's map one wider than twice.
        }
        let ct = conv_t(co, ci, k, 2, 130 + i as u64);
        let z = random::<B, 4>([n, co, side / 2, side / 2 + 1], 140 + i as u64, 1.0);
        let bias = ct.bias.as_ref().unwrap();
        let what = format!("stride-2 conv_transpose2d by phases, case {i}");
        let fast = on_fast_path(
            &what,
            |c| &mut c.conv_transpose2d,
            1,
            || {
                run(z.clone(), [&ct.weight], [bias], |z| {
                    flex_kernels::conv_transpose2d(&ct, z)
                })
            },
        );
        let reference = run(z, [&ct.weight], [bias], |z| ct.forward(z));
        check(&what, fast, reference);
        let inference = ct.valid();
        let z = random::<Flex, 4>([n, co, side / 2, side / 2 + 1], 150 + i as u64, 1.0);
        let what = format!("stride-2 conv_transpose2d inference by phases, case {i}");
        assert_close(
            &what,
            &on_fast_path(
                &what,
                |c| &mut c.conv_transpose2d,
                1,
                || values(flex_kernels::conv_transpose2d(&inference, z.clone())),
            ),
            &values(inference.forward(z)),
        );
    }
}

#[test]
fn weight_gradients_need_no_input_gradient() {
    // The discriminator's first layer on real images: the input is not tracked.
    let c = conv(3, 4, 5, 2, 2, 50);
    let ct = conv_t(4, 3, 5, 2, 51);
    let x = random::<B, 4>([2, 3, 8, 8], 52, 1.0);
    let z = random::<B, 4>([2, 4, 4, 4], 53, 1.0);
    let grads_of = |y: Tensor<B, 4>, w: &Param<Tensor<B, 4>>| {
        let g = y.sum().backward();
        values(w.val().grad(&g).unwrap())
    };
    let what = "conv2d dW, untracked input";
    assert_close(
        what,
        &on_fast_path(
            what,
            |c| &mut c.conv2d,
            1,
            || grads_of(flex_kernels::conv2d(&c, x.clone()), &c.weight),
        ),
        &grads_of(c.forward(x), &c.weight),
    );
    let what = "conv_transpose2d dW, untracked input";
    assert_close(
        what,
        &on_fast_path(
            what,
            |c| &mut c.conv_transpose2d,
            1,
            || grads_of(flex_kernels::conv_transpose2d(&ct, z.clone()), &ct.weight),
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
    // Channel counts with their own compiled row loops (16, 32), one whose sums stay in
    // memory (80: more than 64), and more rows than a block of the sums (2,304).
    let cases = [
        (4, 3, 5, 6, 0.2),
        (2, 5, 4, 4, 0.0),
        (3, 2, 1, 1, 0.2),
        (4, 16, 24, 24, 0.2),
        (2, 32, 6, 7, 0.2),
        (2, 80, 3, 3, 0.1),
    ];
    for (i, &(n, c, h, w, slope)) in cases.iter().enumerate() {
        let fast_bn = norm(c, 60 + i as u64);
        let ref_bn = norm(c, 60 + i as u64);
        // An offset and a scale per channel, as after a convolution.
        let x = random::<B, 4>([n, c, h, w], 70 + i as u64, 2.0).add_scalar(0.7);
        let fast = on_fast_path(
            "batch norm",
            |c| &mut c.batch_norm_leaky_relu,
            1,
            || {
                run(x.clone(), [], [&fast_bn.gamma, &fast_bn.beta], |x| {
                    flex_kernels::batch_norm_leaky_relu(&fast_bn, x, slope)
                })
            },
        );
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
        let what = "batch norm inference";
        assert_close(
            what,
            &on_fast_path(
                what,
                |c| &mut c.batch_norm_leaky_relu,
                1,
                || {
                    values(flex_kernels::batch_norm_leaky_relu(
                        &fast_bn,
                        x.clone(),
                        slope,
                    ))
                },
            ),
            &values(leaky_relu(ref_bn.forward(x), slope)),
        );
    }
}

#[test]
fn tanh_channels_first_matches_burn_in_training_and_inference() {
    let ct = conv_t(4, 3, 5, 1, 84);
    let z = random::<B, 4>([2, 4, 6, 5], 85, 1.5);
    // On plain NCHW input, and on a transposed convolution's output (channels-last).
    let fast_tanh = on_fast_path(
        "tanh",
        |c| &mut c.tanh_channels_first,
        1,
        || run(z.clone(), [], [], flex_kernels::tanh_channels_first),
    );
    let reference = run(z.clone(), [], [], tanh);
    check("tanh", fast_tanh, reference);
    let before = flex_kernels::calls();
    let fast_tanh = run(z.clone(), [&ct.weight], [], |x| {
        flex_kernels::tanh_channels_first(flex_kernels::conv_transpose2d(&ct, x))
    });
    let ran = flex_kernels::calls().since(&before);
    assert_eq!((ran.conv_transpose2d, ran.tanh_channels_first), (1, 1));
    let reference = run(z.clone(), [&ct.weight], [], |x| tanh(ct.forward(x)));
    check("tanh after a transposed convolution", fast_tanh, reference);
    // Inference.
    let (ct, z) = (ct.valid(), z.inner());
    let before = flex_kernels::calls();
    let fast_tanh =
        flex_kernels::tanh_channels_first(flex_kernels::conv_transpose2d(&ct, z.clone()));
    let ran = flex_kernels::calls().since(&before);
    assert_eq!((ran.conv_transpose2d, ran.tanh_channels_first), (1, 1));
    assert_eq!(fast_tanh.dims(), [2, 3, 6, 5]);
    assert_close(
        "tanh inference",
        &values(fast_tanh),
        &values(tanh(ct.forward(z))),
    );
}

#[test]
fn winograd_switched_off_between_the_passes_still_gives_the_gradients() {
    // The forward pass keeps the weight for Winograd's input gradient; switched off
    // before the backward pass, the window matrices need it as `[K, G]` instead. (Other
    // tests running meanwhile take either path; both give burn's results.)
    let c = conv(6, 5, 3, 1, 1, 95);
    let x = random::<B, 4>([2, 6, 17, 18], 96, 1.0).require_grad();
    let y = flex_kernels::conv2d(&c, x.clone());
    let r = random::<B, 4>(y.dims(), 97, 1.0);
    flex_kernels::winograd::enable(false);
    let grads = (y * r.clone()).sum().backward();
    flex_kernels::winograd::enable(true);
    let fast = values(x.grad(&grads).expect("x has a gradient"));
    let x2 = x.clone().detach().require_grad();
    let grads = (c.forward(x2.clone()) * r).sum().backward();
    assert_close(
        "d input",
        &fast,
        &values(x2.grad(&grads).expect("x has a gradient")),
    );
}

#[test]
fn inference_convolutions_match_burn() {
    let c = conv(3, 4, 5, 2, 2, 80).valid();
    let ct = conv_t(4, 3, 5, 2, 81).valid();
    let x = random::<Flex, 4>([2, 3, 8, 8], 82, 1.0);
    let z = random::<Flex, 4>([2, 4, 4, 4], 83, 1.0);
    let what = "conv2d inference";
    assert_close(
        what,
        &on_fast_path(
            what,
            |c| &mut c.conv2d,
            1,
            || values(flex_kernels::conv2d(&c, x.clone())),
        ),
        &values(c.forward(x.clone())),
    );
    let what = "conv_transpose2d inference";
    assert_close(
        what,
        &on_fast_path(
            what,
            |c| &mut c.conv_transpose2d,
            1,
            || values(flex_kernels::conv_transpose2d(&ct, z.clone())),
        ),
        &values(ct.forward(z)),
    );
    // With a fused leaky ReLU (and a ReLU), inference and training.
    for slope in [0.2, 0.0] {
        let before = flex_kernels::calls();
        let fused = values(flex_kernels::conv2d_leaky_relu(&c, x.clone(), slope));
        let ran = flex_kernels::calls().since(&before);
        assert_eq!((ran.conv2d, ran.leaky_relu, ran.total()), (1, 1, 2));
        let what = format!("conv2d + leaky relu {slope} inference");
        assert_close(
            &what,
            &fused,
            &values(leaky_relu(c.forward(x.clone()), slope)),
        );
        assert!(fused.iter().all(|v| slope > 0.0 || *v >= 0.0), "{what}");
    }
    // Stride 1 on maps Winograd's transforms take (3×3 on 4 tiles of 4, 5×5 on 4 of 2).
    for (k, pad, side, seed) in [(3, 1, 18, 86), (3, 0, 19, 87), (5, 2, 9, 88)] {
        let c = conv(6, 5, k, 1, pad, seed).valid();
        let x = random::<Flex, 4>([2, 6, side, side + 1], seed + 10, 1.0);
        let what = format!("stride-1 {k}x{k} conv2d inference on {side} x {}", side + 1);
        let fast = on_fast_path(
            &what,
            |c| &mut c.conv2d,
            1,
            || values(flex_kernels::conv2d(&c, x.clone())),
        );
        assert_close(&what, &fast, &values(c.forward(x)));
    }
    let trained = conv(3, 4, 5, 2, 2, 84);
    let xa = random::<B, 4>([2, 3, 8, 8], 85, 1.0);
    let fast = run(xa.clone(), [&trained.weight], [], |x| {
        flex_kernels::conv2d_leaky_relu(&trained, x, 0.2)
    });
    let reference = run(xa, [&trained.weight], [], |x| {
        leaky_relu(trained.forward(x), 0.2)
    });
    check("conv2d + leaky relu in training", fast, reference);
}

#[test]
fn leaky_relu_and_layout_changes_match_burn() {
    let c = conv(3, 4, 5, 2, 2, 90);
    let x = random::<B, 4>([2, 3, 8, 8], 91, 1.0);
    // Alone, on plain NCHW input.
    let fast = on_fast_path(
        "leaky relu",
        |c| &mut c.leaky_relu,
        1,
        || run(x.clone(), [], [], |x| flex_kernels::leaky_relu(x, 0.2)),
    );
    let reference = run(x.clone(), [], [], |x| leaky_relu(x, 0.2));
    check("leaky relu", fast, reference);
    // On a convolution's channels-last output, then back to NCHW.
    let before = flex_kernels::calls();
    let fast = run(x.clone(), [&c.weight], [], |x| {
        let y = flex_kernels::leaky_relu(flex_kernels::conv2d(&c, x), 0.2);
        flex_kernels::to_channels_first(y)
    });
    let ran = flex_kernels::calls().since(&before);
    assert_eq!(
        (
            ran.conv2d,
            ran.leaky_relu,
            ran.to_channels_first,
            ran.total()
        ),
        (1, 1, 1, 3)
    );
    let reference = run(x.clone(), [&c.weight], [], |x| {
        leaky_relu(c.forward(x), 0.2)
    });
    check("leaky relu after a convolution", fast, reference);
    // Inference.
    let (c, x) = (c.valid(), x.inner());
    let what = "leaky relu inference";
    assert_close(
        what,
        &on_fast_path(
            what,
            |c| &mut c.leaky_relu,
            1,
            || values(flex_kernels::leaky_relu(x.clone(), 0.2)),
        ),
        &values(leaky_relu(x.clone(), 0.2)),
    );
    let before = flex_kernels::calls();
    let y = flex_kernels::to_channels_first(flex_kernels::conv2d(&c, x.clone()));
    assert_eq!(flex_kernels::calls().since(&before).total(), 2);
    assert_close("channels first", &values(y), &values(c.forward(x)));
}

#[test]
fn pools_and_channel_joins_match_burn_in_inference() {
    use burn::tensor::module::{avg_pool2d, max_pool2d};
    // Plain NCHW input and a convolution's channels-last output; odd sides, strides and
    // padding (average: padding not counted).
    let c = conv(3, 5, 3, 1, 1, 100).valid();
    let x = random::<Flex, 4>([2, 3, 9, 7], 101, 1.0);
    let maps = [x.clone(), flex_kernels::conv2d(&c, x.clone())];
    for (i, map) in maps.into_iter().enumerate() {
        for (kernel, stride, padding) in [
            ([3, 3], [1, 1], [1, 1]),
            ([3, 3], [2, 2], [0, 0]),
            ([2, 3], [2, 1], [1, 0]),
            ([9, 7], [9, 7], [0, 0]),
        ] {
            let what = format!("max pool {kernel:?}/{stride:?} pad {padding:?}, map {i}");
            let fast = on_fast_path(
                &what,
                |c| &mut c.pool2d,
                1,
                || {
                    values(flex_kernels::max_pool2d(
                        map.clone(),
                        kernel,
                        stride,
                        padding,
                    ))
                },
            );
            let reference = max_pool2d(map.clone(), kernel, stride, padding, [1, 1], false);
            assert_eq!(fast, values(reference), "{what}");
            let what = format!("average pool {kernel:?}/{stride:?} pad {padding:?}, map {i}");
            let fast = on_fast_path(
                &what,
                |c| &mut c.pool2d,
                1,
                || {
                    values(flex_kernels::avg_pool2d(
                        map.clone(),
                        kernel,
                        stride,
                        padding,
                    ))
                },
            );
            let reference = avg_pool2d(map.clone(), kernel, stride, padding, false, false);
            assert_close(&what, &fast, &values(reference));
        }
    }
    // Joins of channels-last and NCHW maps, and the join read back by a convolution.
    let y = flex_kernels::conv2d(&c, x.clone());
    let parts = vec![y.clone(), x.clone(), y.clone()];
    let what = "channel join";
    let fast = on_fast_path(
        what,
        |c| &mut c.cat_channels,
        1,
        || flex_kernels::cat_channels(parts.clone()),
    );
    assert_eq!(fast.dims(), [2, 13, 9, 7]);
    assert_eq!(values(fast.clone()), values(Tensor::cat(parts.clone(), 1)));
    let joined = conv(13, 4, 3, 1, 1, 102).valid();
    assert_close(
        "a convolution of the join",
        &values(flex_kernels::conv2d(&joined, fast)),
        &values(joined.forward(Tensor::cat(parts, 1))),
    );
    // Training keeps burn's own (no backward pass here).
    let xa = random::<B, 4>([1, 2, 4, 4], 103, 1.0);
    let before = flex_kernels::calls();
    let pooled = flex_kernels::max_pool2d(xa.clone(), [2, 2], [2, 2], [0, 0]);
    let joined = flex_kernels::cat_channels(vec![xa.clone(), xa]);
    assert_eq!(flex_kernels::calls().since(&before).total(), 0);
    assert_eq!((pooled.dims(), joined.dims()), ([1, 2, 2, 2], [1, 4, 4, 4]));
}

#[test]
fn what_the_fast_path_does_not_cover_is_burns_own() {
    let device = Default::default();
    let x = random::<B, 4>([2, 4, 6, 6], 95, 1.0);
    let grouped = Conv2dConfig::new([4, 4], [3, 3])
        .with_groups(2)
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .init::<B>(&device);
    let unbiased = Conv2dConfig::new([4, 2], [3, 3])
        .with_bias(false)
        .init::<B>(&device);
    let same = Conv2dConfig::new([4, 2], [3, 3])
        .with_padding(PaddingConfig2d::Same)
        .init::<B>(&device);
    for (what, c) in [
        ("grouped", &grouped),
        ("without a bias", &unbiased),
        ("same padding", &same),
    ] {
        let before = flex_kernels::calls();
        let y = flex_kernels::conv2d(c, x.clone());
        assert_eq!(
            flex_kernels::calls().since(&before),
            Calls::default(),
            "{what}"
        );
        assert_eq!(values(y), values(c.forward(x.clone())), "{what}");
    }
}
