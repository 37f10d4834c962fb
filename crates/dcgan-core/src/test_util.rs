//! Shared fixtures of the unit tests.

use burn::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::{LatentDistribution, ModelPreset, TestAutodiffBackend, TrainerConfig};

/// A 32 px model of width 4 with 8 latent values and batches of 4: quick on any CPU.
pub(crate) fn tiny_config() -> TrainerConfig {
    let (g, d) = ModelPreset::Tiny32.configs(Some(4));
    TrainerConfig::new(g.with_latent_dim(8), d).with_batch_size(4)
}

/// [`tiny_config`] with every stabiliser on: relativistic-average LSGAN, a WGAN-GP
/// penalty, 2 D steps per G step, spectral norm on both networks, a generator average and
/// all three DiffAugment policies.
pub(crate) fn stabilized_config() -> TrainerConfig {
    let mut config = tiny_config()
        .with_loss(crate::GanLoss::Ralsgan)
        .with_gradient_penalty(Some(crate::GradientPenalty {
            kind: crate::PenaltyKind::Wgan,
            weight: 10.0,
        }))
        .with_d_steps(2)
        .with_ema(Some(crate::EmaConfig { decay: 0.9 }))
        .with_augment(crate::Augment::ALL);
    config.generator.spectral_norm = true;
    config.discriminator.spectral_norm = true;
    config
}

/// A reproducible "real" batch of 4 random 32 px images in [−1, 1).
pub(crate) fn random_batch(
    device: &burn::tensor::Device<TestAutodiffBackend>,
    seed: u64,
) -> Tensor<TestAutodiffBackend, 4> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let values = LatentDistribution::Uniform.sample(4, 3 * 32 * 32, &mut rng);
    Tensor::from_data(TensorData::new(values, [4, 3, 32, 32]), device)
}
