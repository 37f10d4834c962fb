//! The networks' `fast_kernels` switch: with it on, G and D run through the flex fast path
//! (`flex_kernels`, counted by `flex_kernels::calls`) and compute what burn's own
//! operations compute with it off — forward outputs and every parameter gradient; a
//! trainer's Adam follows it too. (flex-kernels' own tests compare each layer.)
#![cfg(feature = "flex")]

use std::panic::AssertUnwindSafe;

use burn::backend::{Autodiff, Flex};
use burn::prelude::*;
use burn::tensor::Tolerance;
use dcgan_core::flex_kernels::{self, Calls};
use dcgan_core::{
    DiscriminatorConfig, GeneratorConfig, LatentDistribution, ModelPreset, Trainer, TrainerConfig,
    WeightInit,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

type B = Autodiff<Flex>;

/// Asserts that `fast` is `reference` to within `tolerance` of the largest `|reference|`
/// (at least 1e-3): burn's comparison, with that absolute tolerance. A reference of zeros
/// fails too: the comparison would mean nothing.
fn assert_close(what: &str, fast: &TensorData, reference: &TensorData, tolerance: f32) {
    assert!(
        reference.iter::<f32>().any(|v| v.abs() > 1e-6),
        "{what}: reference is all zeros, the comparison means nothing"
    );
    let scale = reference.iter::<f32>().fold(1e-3f32, |m, v| m.max(v.abs()));
    let within = Tolerance::absolute(tolerance * scale);
    let compare = AssertUnwindSafe(|| fast.assert_approx_eq::<f32>(reference, within));
    if std::panic::catch_unwind(compare).is_err() {
        panic!("{what}: differs by more than {tolerance} × {scale:e} (the largest |reference|)");
    }
}

/// What one forward and backward pass of G and D gave, and the fast-path calls it made.
struct Pass {
    images: TensorData,
    logits: TensorData,
    gradients: Vec<TensorData>,
    calls: Calls,
}

/// G and D forward, and the gradients of every parameter, with `fast_kernels` as given.
fn networks(fast_kernels: bool) -> Pass {
    let device = Default::default();
    let init = WeightInit::new().with_std(0.1);
    // The seed's family at 32 px: a stride-1 layer and batch norm on every D layer.
    let g = GeneratorConfig::new(32)
        .with_base_channels(4)
        .with_latent_dim(12)
        .with_init(init.clone())
        .with_fast_kernels(fast_kernels);
    let d = DiscriminatorConfig::new(32)
        .with_base_channels(4)
        .with_strides(vec![2, 1, 2, 2])
        .with_first_batch_norm(true)
        .with_init(init)
        .with_fast_kernels(fast_kernels);
    let g = g.init_seeded::<B>(&device, 5).unwrap();
    let d = d.init_seeded::<B>(&device, 6).unwrap();
    assert_eq!(
        (g.fast_kernels, d.fast_kernels),
        (fast_kernels, fast_kernels)
    );
    let z =
        LatentDistribution::Uniform.tensor::<B>(3, 12, &mut ChaCha8Rng::seed_from_u64(7), &device);
    let before = flex_kernels::calls();
    let images = g.forward(z);
    let logits = d.forward(images.clone());
    let grads = logits.clone().sum().backward();
    let calls = flex_kernels::calls().since(&before);
    let mut all = Vec::new();
    let mut collect = |p: Option<Tensor<Flex, 4>>| all.push(p.expect("a gradient").into_data());
    for block in &g.blocks {
        collect(block.conv.weight.val().grad(&grads));
    }
    collect(g.to_image.weight.val().grad(&grads));
    for block in &d.blocks {
        collect(block.conv.weight.val().grad(&grads));
    }
    let mut vectors = Vec::new();
    for block in &g.blocks {
        vectors.push(block.norm.gamma.val().grad(&grads).unwrap().into_data());
        vectors.push(block.norm.beta.val().grad(&grads).unwrap().into_data());
        // (The bias of a convolution followed by batch norm has a zero gradient up to
        // rounding, so its values are noise: not compared.)
    }
    for block in &d.blocks {
        if let Some(n) = &block.norm {
            vectors.push(n.gamma.val().grad(&grads).unwrap().into_data());
        }
    }
    vectors.push(g.project.weight.val().grad(&grads).unwrap().into_data());
    all.extend(vectors);
    Pass {
        images: images.into_data(),
        logits: logits.into_data(),
        gradients: all,
        calls,
    }
}

#[test]
fn whole_networks_match_burn_forward_and_backward() {
    let fast = networks(true);
    let reference = networks(false);
    // The fast path ran every layer (G: 2 upsampling stages + the image layer, D: 4
    // stages, all with batch norm), and nothing ran it with the switch off.
    let expected = Calls {
        conv2d: 4,
        conv_transpose2d: 3,
        batch_norm_leaky_relu: 2 + 4,
        leaky_relu: 1,
        tanh_channels_first: 1,
        to_channels_first: 1,
        adam: 0,
        pool2d: 0,
        cat_channels: 0,
    };
    assert_eq!(fast.calls, expected, "fast-path calls with fast_kernels on");
    assert_eq!(reference.calls, Calls::default(), "with fast_kernels off");
    assert_close("generator images", &fast.images, &reference.images, 1e-4);
    assert_close(
        "discriminator logits",
        &fast.logits,
        &reference.logits,
        1e-4,
    );
    for (i, (f, r)) in fast.gradients.iter().zip(&reference.gradients).enumerate() {
        // Gradients through several layers: allow a little more rounding.
        assert_close(&format!("parameter gradient {i}"), f, r, 1e-3);
    }
}

#[test]
fn a_trainer_steps_through_the_fast_path_only_when_its_configs_say_so() {
    let device = Default::default();
    let real = Tensor::<B, 4>::zeros([2, 3, 32, 32], &device);
    let mut steps = Vec::new();
    for fast in [true, false] {
        let (g, d) = ModelPreset::Tiny32.configs(Some(4));
        let config = TrainerConfig::new(g.with_fast_kernels(fast), d.with_fast_kernels(fast))
            .with_batch_size(2);
        let mut trainer = Trainer::<B>::new(config, &device).unwrap();
        assert_eq!(trainer.generator.fast_kernels, fast);
        assert_eq!(trainer.discriminator.fast_kernels, fast);
        let before = flex_kernels::calls();
        steps.push(trainer.step(real.clone()).unwrap());
        let calls = flex_kernels::calls().since(&before);
        if fast {
            assert!(calls.conv2d > 0 && calls.conv_transpose2d > 0, "{calls:?}");
            assert!(calls.adam > 0, "Adam did not take the fast path: {calls:?}");
        } else {
            assert_eq!(calls, Calls::default());
        }
    }
    let (on, off) = (steps[0], steps[1]);
    assert!(
        (on.d_loss - off.d_loss).abs() < 1e-3 && (on.g_loss - off.g_loss).abs() < 1e-3,
        "the first step's losses differ: {on:?} vs {off:?}"
    );
}
