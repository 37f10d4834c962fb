//! The training step: one discriminator update, then one generator update, each with its
//! own Adam optimizer.

use burn::module::AutodiffModule;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::activation::sigmoid;
use burn::tensor::backend::AutodiffBackend;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::adam::FusedAdam;
use crate::discriminator::{Discriminator, DiscriminatorConfig};
use crate::error::{Error, Result};
use crate::generator::{Generator, GeneratorConfig};
use crate::init::LatentDistribution;
use crate::loss::{discriminator_loss, generator_loss};
use crate::precision::Precision;

/// Everything that defines a training run (besides the data). Saved in every checkpoint.
#[derive(Config, Debug, PartialEq)]
pub struct TrainerConfig {
    /// The generator.
    pub generator: GeneratorConfig,
    /// The discriminator.
    pub discriminator: DiscriminatorConfig,
    /// Discriminator learning rate (the seed's notebook: 5e-5).
    #[config(default = 5e-5)]
    pub lr_d: f64,
    /// Generator learning rate (the seed's notebook: 2e-4).
    #[config(default = 2e-4)]
    pub lr_g: f64,
    /// Adam β₁ of both optimizers (DCGAN's 0.5).
    #[config(default = 0.5)]
    pub beta1: f32,
    /// Adam β₂ of both optimizers.
    #[config(default = 0.999)]
    pub beta2: f32,
    /// Adam ε of both optimizers (TensorFlow's and PyTorch's 1e-8).
    #[config(default = 1e-8)]
    pub adam_epsilon: f32,
    /// Target label of real images: 0.9 is the article's one-sided smoothing, 1.0 turns it off.
    #[config(default = 0.9)]
    pub real_label: f32,
    /// Images per step.
    #[config(default = 64)]
    pub batch_size: usize,
    /// Distribution of the latent vectors.
    #[config(default = "LatentDistribution::Uniform")]
    pub latent: LatentDistribution,
    /// Seed of the weights, the latent noise and the preview noise.
    #[config(default = 42)]
    pub seed: u64,
    /// How many fixed latent vectors to keep for preview grids.
    #[config(default = 64)]
    pub preview_count: usize,
}

impl TrainerConfig {
    /// Checks every field, the two networks' configs included.
    pub fn validate(&self) -> Result<()> {
        const C: &str = "trainer";
        self.generator.validate()?;
        self.discriminator.validate()?;
        if self.generator.image_size != self.discriminator.image_size {
            return Err(Error::invalid(
                C,
                "discriminator.image_size",
                self.discriminator.image_size,
                format!("must equal the generator's {}", self.generator.image_size),
            ));
        }
        if self.generator.image_channels != self.discriminator.image_channels {
            return Err(Error::invalid(
                C,
                "discriminator.image_channels",
                self.discriminator.image_channels,
                format!(
                    "must equal the generator's {}",
                    self.generator.image_channels
                ),
            ));
        }
        for (field, lr) in [("lr_d", self.lr_d), ("lr_g", self.lr_g)] {
            if !(lr > 0.0 && lr.is_finite()) {
                return Err(Error::invalid(C, field, lr, "must be a positive number"));
            }
        }
        for (field, beta) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&beta) {
                return Err(Error::invalid(C, field, beta, "must be in [0, 1)"));
            }
        }
        if !(self.adam_epsilon > 0.0 && self.adam_epsilon.is_finite()) {
            return Err(Error::invalid(
                C,
                "adam_epsilon",
                self.adam_epsilon,
                "must be positive",
            ));
        }
        if !(self.real_label > 0.5 && self.real_label <= 1.0) {
            return Err(Error::invalid(
                C,
                "real_label",
                self.real_label,
                "must be in (0.5, 1]: 0.9 smooths real labels, 1.0 turns smoothing off",
            ));
        }
        if self.batch_size == 0 {
            return Err(Error::invalid(
                C,
                "batch_size",
                self.batch_size,
                "must be at least 1",
            ));
        }
        Ok(())
    }

    fn optimizer<M: AutodiffModule<B>, B: AutodiffBackend>(
        &self,
    ) -> OptimizerAdaptor<FusedAdam, M, B> {
        OptimizerAdaptor::from(FusedAdam::new(self.beta1, self.beta2, self.adam_epsilon))
    }
}

/// What one training step measured.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StepMetrics {
    /// Steps run so far, this one included.
    pub step: u64,
    /// Discriminator loss, `d_loss_real + d_loss_fake`.
    pub d_loss: f32,
    /// Generator loss (non-saturating).
    pub g_loss: f32,
    /// Mean `D(x)` over the real batch, before the discriminator update.
    pub d_real: f32,
    /// Mean `D(G(z))` over the fakes, before the discriminator update.
    pub d_fake: f32,
}

impl StepMetrics {
    /// Whether both losses are finite numbers.
    pub fn is_finite(&self) -> bool {
        self.d_loss.is_finite() && self.g_loss.is_finite()
    }
}

/// A GAN in training: both networks, both optimizers, the noise RNG and the counters.
///
/// ```
/// # use dcgan_core::{ModelPreset, Trainer, TrainerConfig};
/// # use burn::tensor::Tensor;
/// type B = burn::backend::Autodiff<burn::backend::Flex>;
/// let (g, d) = ModelPreset::Tiny32.configs(Some(4));
/// let config = TrainerConfig::new(g, d).with_batch_size(2);
/// let device = Default::default();
/// let mut trainer = Trainer::<B>::new(config, &device).unwrap();
/// let real = Tensor::zeros([2, 3, 32, 32], &device);
/// let metrics = trainer.step(real).unwrap();
/// assert_eq!(metrics.step, 1);
/// ```
pub struct Trainer<B: AutodiffBackend> {
    /// The generator being trained.
    pub generator: Generator<B>,
    /// The discriminator being trained.
    pub discriminator: Discriminator<B>,
    pub(crate) optim_g: OptimizerAdaptor<FusedAdam, Generator<B>, B>,
    pub(crate) optim_d: OptimizerAdaptor<FusedAdam, Discriminator<B>, B>,
    pub(crate) config: TrainerConfig,
    pub(crate) rng: ChaCha8Rng,
    pub(crate) preview_noise: Vec<f32>,
    pub(crate) step: u64,
    /// Epoch counter, kept for the caller (the data pipeline knows epochs; checkpoints keep it).
    pub epoch: u64,
    pub(crate) poisoned: bool,
    pub(crate) device: B::Device,
}

/// RNG streams derived from the one seed, so adding draws to one never shifts another.
pub(crate) mod streams {
    pub const GENERATOR: u64 = 1;
    pub const DISCRIMINATOR: u64 = 2;
    pub const NOISE: u64 = 3;
    pub const PREVIEW: u64 = 4;
}

pub(crate) fn stream_rng(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

fn stream_seed(seed: u64, stream: u64) -> u64 {
    use rand::RngCore;
    stream_rng(seed, stream).next_u64()
}

impl<B: AutodiffBackend> Trainer<B> {
    /// Builds fresh networks (weights from `config.seed`), optimizers and preview noise.
    /// The networks compute in f32; [`Trainer::set_precision`] switches to bf16.
    pub fn new(config: TrainerConfig, device: &B::Device) -> Result<Self> {
        config.validate()?;
        let generator = config
            .generator
            .init_seeded(device, stream_seed(config.seed, streams::GENERATOR))?;
        let discriminator = config
            .discriminator
            .init_seeded(device, stream_seed(config.seed, streams::DISCRIMINATOR))?;
        let preview_noise = config.latent.sample(
            config.preview_count,
            config.generator.latent_dim,
            &mut stream_rng(config.seed, streams::PREVIEW),
        );
        Ok(Self {
            generator,
            discriminator,
            optim_g: config.optimizer(),
            optim_d: config.optimizer(),
            rng: stream_rng(config.seed, streams::NOISE),
            preview_noise,
            step: 0,
            epoch: 0,
            poisoned: false,
            device: device.clone(),
            config,
        })
    }

    /// One training step on a batch of real images in [−1, 1]: fresh latents, then
    /// [`Trainer::update_discriminator`] and [`Trainer::update_generator`].
    ///
    /// (1) Update D: maximise `log D(x) + log(1 − D(G(z)))` with real labels smoothed to
    /// `real_label`; the fakes are detached so G gets no gradient. (2) Update G: maximise
    /// `log D(G(z))` on the same fakes, scored by the updated D.
    ///
    /// A non-finite loss returns [`Error::NonFiniteLoss`]; the trainer is then poisoned and
    /// refuses to save, so the last good checkpoint on disk stays the last one.
    ///
    /// # Shapes
    /// - `real`: `[batch, 3, image_size, image_size]`
    pub fn step(&mut self, real: Tensor<B, 4>) -> Result<StepMetrics> {
        let [batch, channels, height, width] = real.dims();
        let size = self.config.generator.image_size;
        if batch == 0
            || [channels, height, width] != [self.config.generator.image_channels, size, size]
        {
            return Err(Error::Shape {
                what: "real batch",
                expected: format!(
                    "[batch ≥ 1, {}, {size}, {size}]",
                    self.config.generator.image_channels
                ),
                actual: real.dims().to_vec(),
            });
        }
        let z = self.config.latent.tensor::<B>(
            batch,
            self.config.generator.latent_dim,
            &mut self.rng,
            &self.device,
        );
        let fake = self.generator.forward(z);
        let (d_loss, real_logits, fake_logits) =
            self.update_discriminator(real, fake.clone().detach());
        let g_loss = self.update_generator(fake);

        self.step += 1;
        // One read-back for all four numbers.
        let summary = Tensor::cat(
            vec![
                d_loss.inner(),
                g_loss.inner(),
                sigmoid(real_logits.inner()).mean(),
                sigmoid(fake_logits.inner()).mean(),
            ],
            0,
        );
        let values = summary
            .into_data()
            .convert::<f32>()
            .to_vec::<f32>()
            .expect("a float tensor converted to f32 reads back as f32");
        let metrics = StepMetrics {
            step: self.step,
            d_loss: values[0],
            g_loss: values[1],
            d_real: values[2],
            d_fake: values[3],
        };
        if !metrics.is_finite() {
            self.poisoned = true;
            return Err(Error::NonFiniteLoss {
                step: self.step,
                d_loss: metrics.d_loss,
                g_loss: metrics.g_loss,
            });
        }
        Ok(metrics)
    }

    /// (1) Update D: one Adam step on `d_loss = BCE(D(real), real_label) + BCE(D(fake), 0)`.
    ///
    /// Pass detached fakes. Returns the loss and both logit tensors (before the update).
    /// [`Trainer::step`] calls this; it is public for custom loops and tests.
    pub fn update_discriminator(
        &mut self,
        real: Tensor<B, 4>,
        fake: Tensor<B, 4>,
    ) -> (Tensor<B, 1>, Tensor<B, 2>, Tensor<B, 2>) {
        let real_logits = self.discriminator.forward(real);
        let fake_logits = self.discriminator.forward(fake);
        let d_loss = discriminator_loss(
            real_logits.clone(),
            fake_logits.clone(),
            self.config.real_label,
        );
        let grads = GradientsParams::from_grads(d_loss.backward(), &self.discriminator);
        self.discriminator = self
            .optim_d
            .step(self.config.lr_d, self.discriminator.clone(), grads);
        (d_loss, real_logits, fake_logits)
    }

    /// (2) Update G: one Adam step on the non-saturating `g_loss = BCE(D(fake), 1)`.
    ///
    /// `fake` must still be attached to the generator's graph. Returns the loss.
    pub fn update_generator(&mut self, fake: Tensor<B, 4>) -> Tensor<B, 1> {
        // D's parameters get no gradients here (only G is stepped), so the backward pass
        // skips D's weight gradients: the same update for less work. The copy shares
        // D's batch-norm running statistics, which this forward updates as before.
        let discriminator = self.discriminator.clone().no_grad();
        let g_loss = generator_loss(discriminator.forward(fake));
        let grads = GradientsParams::from_grads(g_loss.backward(), &self.generator);
        self.generator = self
            .optim_g
            .step(self.config.lr_g, self.generator.clone(), grads);
        g_loss
    }

    /// Switches both networks to `precision` (f32, or bf16 mixed precision with f32 master
    /// weights, see [`crate::precision`]) from the next step on. The parameters and
    /// optimizer states are f32 in every precision, so nothing else changes; checkpoints
    /// record the precision.
    ///
    /// Fails with [`Error::UnsupportedPrecision`] (and changes nothing) if `B` cannot
    /// compute in `precision` on this trainer's device.
    pub fn set_precision(&mut self, precision: Precision) -> Result<()> {
        precision.check_supported::<B>(&self.device)?;
        self.generator.precision = precision;
        self.discriminator.precision = precision;
        Ok(())
    }

    /// The precision both networks compute in (see [`Trainer::set_precision`]).
    pub fn precision(&self) -> Precision {
        self.generator.precision
    }

    /// The run's configuration.
    pub fn config(&self) -> &TrainerConfig {
        &self.config
    }

    /// Steps run so far.
    pub fn steps_done(&self) -> u64 {
        self.step
    }

    /// The device the networks live on.
    pub fn device(&self) -> &B::Device {
        &self.device
    }

    /// The fixed preview latents, `[preview_count, latent_dim]` row-major: the same for the
    /// whole run (and across resumes), so preview grids show progress on the same cats.
    pub fn preview_noise(&self) -> &[f32] {
        &self.preview_noise
    }

    /// The preview latents as a tensor on the training device's inner backend.
    pub fn preview_latents(&self) -> Tensor<B::InnerBackend, 2> {
        let dim = self.config.generator.latent_dim;
        Tensor::from_data(
            TensorData::new(
                self.preview_noise.clone(),
                [self.preview_noise.len() / dim, dim],
            ),
            &self.device,
        )
    }

    /// The generator for inference (batch norm on running statistics, no autodiff).
    pub fn inference_generator(&self) -> Generator<B::InnerBackend> {
        self.generator.valid()
    }

    /// Whether a non-finite loss has made the in-memory state unusable.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TestAutodiffBackend;

    use crate::test_util::{random_batch, tiny_config};

    type B = TestAutodiffBackend;

    #[test]
    fn steps_are_deterministic_for_a_seed() {
        let device = Default::default();
        let run = |seed| {
            let mut t = Trainer::<B>::new(tiny_config().with_seed(seed), &device).unwrap();
            (0..3)
                .map(|i| t.step(random_batch(&device, i)).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn metrics_are_probabilities_and_losses_are_positive() {
        let device = Default::default();
        let mut t = Trainer::<B>::new(tiny_config(), &device).unwrap();
        let m = t.step(random_batch(&device, 0)).unwrap();
        assert_eq!(m.step, 1);
        assert!(m.d_loss > 0.0 && m.g_loss > 0.0);
        assert!((0.0..=1.0).contains(&m.d_real) && (0.0..=1.0).contains(&m.d_fake));
    }

    #[test]
    fn one_discriminator_update_lowers_its_loss_on_a_fixed_batch() {
        let device = Default::default();
        let mut t = Trainer::<B>::new(tiny_config().with_lr_d(1e-3), &device).unwrap();
        let real = random_batch(&device, 1);
        let z = LatentDistribution::Uniform.tensor::<B>(
            4,
            8,
            &mut ChaCha8Rng::seed_from_u64(5),
            &device,
        );
        let fake = t.generator.forward(z).detach();
        let loss_of = |t: &Trainer<B>| {
            discriminator_loss(
                t.discriminator.forward(real.clone()),
                t.discriminator.forward(fake.clone()),
                0.9,
            )
            .into_scalar()
        };
        let before = loss_of(&t);
        let (reported, _, _) = t.update_discriminator(real.clone(), fake.clone());
        let after = loss_of(&t);
        assert!((reported.into_scalar() - before).abs() < 1e-5);
        assert!(after < before - 1e-3, "d_loss {before} -> {after}");
    }

    #[test]
    fn the_generator_update_changes_g_and_d_running_statistics_only() {
        let device = Default::default();
        let mut t = Trainer::<B>::new(tiny_config(), &device).unwrap();
        let values = |x: Tensor<B, 1>| x.into_data().to_vec::<f32>().unwrap();
        let d_weights = |t: &Trainer<B>| -> Vec<Vec<f32>> {
            t.discriminator
                .blocks
                .iter()
                .map(|b| values(b.conv.weight.val().flatten(0, 3)))
                .collect()
        };
        let d_running_means = |t: &Trainer<B>| -> Vec<Vec<f32>> {
            t.discriminator
                .blocks
                .iter()
                .filter_map(|b| b.norm.as_ref())
                .map(|n| values(n.running_mean.value_sync()))
                .collect()
        };
        let g_weight = |t: &Trainer<B>| values(t.generator.to_image.weight.val().flatten(0, 3));
        let (d_before, stats_before, g_before) = (d_weights(&t), d_running_means(&t), g_weight(&t));
        assert!(!stats_before.is_empty(), "the tiny D has batch norm");
        let z = LatentDistribution::Uniform.tensor::<B>(
            4,
            8,
            &mut ChaCha8Rng::seed_from_u64(6),
            &device,
        );
        let fake = t.generator.forward(z);
        t.update_generator(fake);
        assert_eq!(d_weights(&t), d_before, "the G update changed D's weights");
        assert_ne!(g_weight(&t), g_before, "the G update did not change G");
        // D's forward pass in training still updates its running statistics.
        assert_ne!(d_running_means(&t), stats_before);
    }

    #[test]
    fn wrong_batch_shape_is_an_error_not_a_panic() {
        let device = Default::default();
        let mut t = Trainer::<B>::new(tiny_config(), &device).unwrap();
        let err = t.step(Tensor::zeros([4, 3, 64, 64], &device)).unwrap_err();
        assert!(matches!(err, Error::Shape { .. }), "{err}");
        assert_eq!(t.steps_done(), 0);
    }

    #[test]
    fn nan_input_poisons_the_trainer() {
        let device = Default::default();
        let mut t = Trainer::<B>::new(tiny_config(), &device).unwrap();
        let nan = Tensor::<B, 4>::full([4, 3, 32, 32], f32::NAN, &device);
        assert!(matches!(
            t.step(nan),
            Err(Error::NonFiniteLoss { step: 1, .. })
        ));
        assert!(t.is_poisoned());
    }

    #[test]
    fn invalid_trainer_configs_are_rejected() {
        let device = Default::default();
        for (config, field) in [
            (tiny_config().with_lr_d(0.0), "lr_d"),
            (tiny_config().with_lr_g(f64::NAN), "lr_g"),
            (tiny_config().with_beta1(1.0), "beta1"),
            (tiny_config().with_real_label(0.3), "real_label"),
            (tiny_config().with_batch_size(0), "batch_size"),
        ] {
            match Trainer::<B>::new(config, &device) {
                Err(Error::InvalidConfig { field: f, .. }) => assert_eq!(f, field),
                Err(other) => panic!("{field}: unexpected {other}"),
                Ok(_) => panic!("{field}: accepted"),
            }
        }
    }
}
