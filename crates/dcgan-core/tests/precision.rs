//! bf16 mixed precision (`dcgan_core::precision`) on flex, which computes bf16 by rounding
//! to bf16 and back: the networks really compute in bf16 (results move by bf16 rounding,
//! not more), the parameters and their gradients stay f32, training and exact resume work,
//! and checkpoints carry the precision.

use burn::backend::{Autodiff, Flex};
use burn::prelude::*;
use burn::tensor::DType;
use dcgan_core::{
    load_generator, CheckpointInfo, Discriminator, Generator, LatentDistribution, ModelPreset,
    Precision, Trainer, TrainerConfig,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

type B = Autodiff<Flex>;

fn config() -> TrainerConfig {
    let (g, d) = ModelPreset::Tiny32.configs(Some(8));
    TrainerConfig::new(g.with_latent_dim(16), d).with_batch_size(8)
}

fn uniform<const D: usize>(shape: [usize; D], seed: u64) -> Tensor<B, D> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let values = LatentDistribution::Uniform.sample(1, shape.iter().product(), &mut rng);
    Tensor::from_data(TensorData::new(values, shape), &Default::default())
}

fn values<const D: usize>(x: Tensor<B, D>) -> Vec<f32> {
    assert_eq!(x.dtype(), DType::F32, "results come back as f32");
    x.into_data().to_vec::<f32>().unwrap()
}

/// `max |a − b| / max |b|`.
fn relative_error(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let diff = a
        .iter()
        .zip(b)
        .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
    diff / scale
}

/// Cosine similarity of two vectors.
fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot = |x: &[f32], y: &[f32]| {
        x.iter()
            .zip(y)
            .map(|(p, q)| *p as f64 * *q as f64)
            .sum::<f64>()
    };
    dot(a, b) / (dot(a, a) * dot(b, b)).sqrt()
}

fn networks() -> (Generator<B>, Discriminator<B>) {
    let config = config();
    let device = Default::default();
    (
        config.generator.init_seeded(&device, 1).unwrap(),
        config.discriminator.init_seeded(&device, 2).unwrap(),
    )
}

#[test]
fn bf16_forward_passes_differ_from_f32_by_bf16_rounding_only() {
    let (g, d) = networks();
    let z = uniform([8, 16], 3);
    let images = values(g.forward(z.clone()));
    let images_bf16 = values(g.clone().with_precision(Precision::Bf16).forward(z));
    let error = relative_error(&images_bf16, &images);
    // bf16 keeps 8 significant bits (relative rounding ≤ 2^-9 ≈ 0.002 per value); through
    // four layers the outputs move by about 1%, and they must move: else no cast happened.
    assert!(
        error > 1e-4 && error < 5e-2,
        "generator: relative error {error}"
    );

    let x = uniform([8, 3, 32, 32], 4);
    let logits = values(d.forward(x.clone()));
    let logits_bf16 = values(d.clone().with_precision(Precision::Bf16).forward(x));
    let error = relative_error(&logits_bf16, &logits);
    assert!(
        error > 1e-4 && error < 5e-2,
        "discriminator: relative error {error}"
    );
}

#[test]
fn bf16_gradients_reach_the_f32_parameters() {
    let (_, d) = networks();
    let x = uniform([8, 3, 32, 32], 5);
    let grads_in = |precision| {
        let d = d.clone().with_precision(precision);
        let grads = d.forward(x.clone()).sum().backward();
        let first = d.blocks[0].conv.weight.grad(&grads).unwrap();
        let last = d.classify.weight.grad(&grads).unwrap();
        assert_eq!(first.dtype(), DType::F32);
        (
            first.into_data().to_vec::<f32>().unwrap(),
            last.into_data().to_vec::<f32>().unwrap(),
        )
    };
    let (first, last) = grads_in(Precision::F32);
    let (first_bf16, last_bf16) = grads_in(Precision::Bf16);
    for (name, ours, reference) in [
        ("first conv", &first_bf16, &first),
        ("classifier", &last_bf16, &last),
    ] {
        // Weight gradients sum thousands of products of both signs, so their bf16
        // rounding shows more than the forward pass's (here up to ≈ 6% of the largest
        // value); their direction is what Adam follows, and it must hold.
        let (error, cosine) = (relative_error(ours, reference), cosine(ours, reference));
        assert!(
            error > 0.0 && error < 0.1 && cosine > 0.99,
            "{name}: relative error {error}, cosine similarity {cosine}"
        );
    }
    // The parameters themselves stay f32.
    assert_eq!(d.blocks[0].conv.weight.val().dtype(), DType::F32);
}

#[test]
fn bf16_training_follows_f32_training_and_keeps_f32_state() {
    let device = Default::default();
    let run = |precision| {
        let mut trainer = Trainer::<B>::new(config(), &device).unwrap();
        trainer.set_precision(precision).unwrap();
        let metrics: Vec<_> = (0..4)
            .map(|i| trainer.step(uniform([8, 3, 32, 32], 10 + i)).unwrap())
            .collect();
        (trainer, metrics)
    };
    let (f32_trainer, f32_metrics) = run(Precision::F32);
    let (bf16_trainer, bf16_metrics) = run(Precision::Bf16);
    for (a, b) in f32_metrics.iter().zip(&bf16_metrics) {
        assert!(b.is_finite());
        for (what, x, y) in [
            ("d_loss", a.d_loss, b.d_loss),
            ("g_loss", a.g_loss, b.g_loss),
            ("d_real", a.d_real, b.d_real),
            ("d_fake", a.d_fake, b.d_fake),
        ] {
            assert!((x - y).abs() < 0.03, "step {}: {what} {x} vs {y}", a.step);
        }
    }
    assert_ne!(
        f32_metrics, bf16_metrics,
        "bf16 computed exactly what f32 did"
    );
    // Parameters (master weights) and Adam's state are f32 and were updated.
    let weight = |t: &Trainer<B>| t.generator.to_image.weight.val();
    assert_eq!(weight(&bf16_trainer).dtype(), DType::F32);
    let moved = relative_error(
        &values(weight(&bf16_trainer)),
        &values(weight(&f32_trainer)),
    );
    assert!(moved < 5e-2, "the two runs' weights drifted apart: {moved}");
    assert_eq!(bf16_trainer.precision(), Precision::Bf16);
}

#[test]
fn checkpoints_keep_the_precision_and_resume_exactly_in_bf16() {
    let device = Default::default();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bf16.catgan");
    let bf16_trainer = || {
        let mut trainer = Trainer::<B>::new(config(), &device).unwrap();
        trainer.set_precision(Precision::Bf16).unwrap();
        trainer
    };

    let mut straight = bf16_trainer();
    let straight_metrics: Vec<_> = (0..3)
        .map(|i| straight.step(uniform([8, 3, 32, 32], 20 + i)).unwrap())
        .collect();

    let mut first = bf16_trainer();
    let mut resumed_metrics = vec![first.step(uniform([8, 3, 32, 32], 20)).unwrap()];
    first
        .save_checkpoint(&path, serde_json::Value::Null)
        .unwrap();
    let (mut second, _) = Trainer::<B>::load_checkpoint(&path, &device).unwrap();
    assert_eq!(second.precision(), Precision::Bf16);
    assert_eq!(second.generator.precision, Precision::Bf16);
    assert_eq!(second.discriminator.precision, Precision::Bf16);
    resumed_metrics.extend((1..3).map(|i| second.step(uniform([8, 3, 32, 32], 20 + i)).unwrap()));
    assert_eq!(straight_metrics, resumed_metrics);

    // The saved state is f32: the same checkpoint resumes in f32 on request, ...
    let (as_f32, _) =
        Trainer::<B>::load_checkpoint_in(&path, &device, Some(Precision::F32)).unwrap();
    assert_eq!(as_f32.precision(), Precision::F32);
    assert_eq!(as_f32.discriminator.precision, Precision::F32);
    assert_eq!(
        values(as_f32.generator.project.weight.val()),
        values(first.generator.project.weight.val())
    );
    // ... and generation loads it in f32.
    let (generator, info) = load_generator::<B>(&path, &device).unwrap();
    assert_eq!(generator.precision, Precision::F32);
    assert_eq!(info.precision, Precision::Bf16);
}

#[test]
fn switching_precision_mid_run_takes_effect() {
    let device = Default::default();
    let mut trainer = Trainer::<B>::new(config(), &device).unwrap();
    trainer.step(uniform([8, 3, 32, 32], 30)).unwrap();
    trainer.set_precision(Precision::Bf16).unwrap();
    assert_eq!(trainer.generator.precision, Precision::Bf16);
    assert_eq!(trainer.discriminator.precision, Precision::Bf16);
    assert_eq!(trainer.precision(), Precision::Bf16);
    assert!(trainer
        .step(uniform([8, 3, 32, 32], 31))
        .unwrap()
        .is_finite());
}

#[test]
fn checkpoints_written_before_bf16_existed_load_in_f32() {
    let device = Default::default();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.catgan");
    let mut trainer = Trainer::<B>::new(config(), &device).unwrap();
    trainer.set_precision(Precision::Bf16).unwrap();
    trainer
        .save_checkpoint(&path, serde_json::Value::Null)
        .unwrap();
    let mut info = serde_json::to_value(CheckpointInfo::read(&path).unwrap()).unwrap();
    assert_eq!(info["precision"], "bf16");
    info.as_object_mut().unwrap().remove("precision");
    let old: CheckpointInfo = serde_json::from_value(info).unwrap();
    assert_eq!(old.precision, Precision::F32);
}

#[cfg(feature = "ndarray")]
#[test]
fn a_backend_without_bf16_refuses_it_and_keeps_running_in_f32() {
    type N = Autodiff<burn::backend::NdArray>;
    let device = Default::default();
    let mut trainer = Trainer::<N>::new(config(), &device).unwrap();
    let err = trainer.set_precision(Precision::Bf16).unwrap_err();
    assert!(
        matches!(err, dcgan_core::Error::UnsupportedPrecision { .. }),
        "{err}"
    );
    assert_eq!(trainer.precision(), Precision::F32);
    assert_eq!(trainer.generator.precision, Precision::F32);
    // ... and a bf16 checkpoint loads there only when asked to compute in f32.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bf16.catgan");
    let mut flex = Trainer::<B>::new(config(), &Default::default()).unwrap();
    flex.set_precision(Precision::Bf16).unwrap();
    flex.save_checkpoint(&path, serde_json::Value::Null)
        .unwrap();
    let err = Trainer::<N>::load_checkpoint(&path, &device).err().unwrap();
    assert!(
        matches!(err, dcgan_core::Error::UnsupportedPrecision { .. }),
        "{err}"
    );
    let (on_ndarray, _) =
        Trainer::<N>::load_checkpoint_in(&path, &device, Some(Precision::F32)).unwrap();
    assert_eq!(on_ndarray.precision(), Precision::F32);
    load_generator::<N>(&path, &device).unwrap();
}
