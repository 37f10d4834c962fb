//! The training step: one discriminator update, then one generator update, each with its
//! own Adam optimizer; plus the stabilisers a modern GAN expects, each one knob of
//! [`TrainerConfig`]: the [loss](crate::loss::GanLoss), a
//! [gradient penalty](crate::penalty), several D updates per G update, a
//! [generator average](crate::ema) and [DiffAugment](crate::augment). (Spectral
//! normalisation is a knob of the networks' configs.)

use burn::module::{AutodiffModule, ModuleVisitor, Param};
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::activation::sigmoid;
use burn::tensor::backend::AutodiffBackend;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::adam::FusedAdam;
use crate::augment::Augment;
use crate::discriminator::{Discriminator, DiscriminatorConfig};
use crate::ema::{update_average, EmaConfig};
use crate::error::{Error, Result};
use crate::generator::{Generator, GeneratorConfig};
use crate::init::LatentDistribution;
use crate::loss::GanLoss;
use crate::penalty::{interpolate, GradientPenalty, PenaltyKind};
use crate::precision::Precision;
use crate::replicas::{average_gradients, shard_rows, Reduction, Replica, ReplicaSync, ECHO};

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
    /// The adversarial loss (the article's: BCE with smoothed real labels).
    #[config(default = "GanLoss::Bce")]
    pub loss: GanLoss,
    /// A gradient penalty on D (WGAN-GP or R1), if any.
    #[config(default = "None")]
    pub gradient_penalty: Option<GradientPenalty>,
    /// Discriminator updates per generator update (WGAN's critic iterations; 1 = DCGAN).
    /// Each D update takes its own real batch, so a [`Trainer::step`] is one D update; G
    /// is updated on steps 1, 1 + `d_steps`, 1 + 2·`d_steps`, ...
    #[config(default = 1)]
    pub d_steps: usize,
    /// An exponential moving average of G's weights to sample from, if any.
    #[config(default = "None")]
    pub ema: Option<EmaConfig>,
    /// DiffAugment policies applied to every image D sees.
    #[config(default = "Augment::NONE")]
    pub augment: Augment,
}

/// Upgrades a [`TrainerConfig`] saved as JSON by an earlier version: every field it lacks
/// (the stabilisers, spectral norm, ...) takes its default, which is what that version did.
pub fn upgrade_config_json(value: &mut serde_json::Value) {
    let defaults = serde_json::to_value(TrainerConfig::new(
        GeneratorConfig::new(64),
        DiscriminatorConfig::new(64),
    ))
    .expect("a config serialises");
    fill_missing(value, &defaults);
}

fn fill_missing(value: &mut serde_json::Value, defaults: &serde_json::Value) {
    if let (Some(object), Some(defaults)) = (value.as_object_mut(), defaults.as_object()) {
        for (key, default) in defaults {
            match object.get_mut(key) {
                Some(present) => fill_missing(present, default),
                None => {
                    object.insert(key.clone(), default.clone());
                }
            }
        }
    }
}

/// Deserialises a [`TrainerConfig`] written by this or an earlier version (see
/// [`upgrade_config_json`]); for `#[serde(deserialize_with = ...)]`.
pub fn deserialize_upgrading<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<TrainerConfig, D::Error> {
    let mut value = serde_json::Value::deserialize(deserializer)?;
    upgrade_config_json(&mut value);
    serde_json::from_value(value).map_err(serde::de::Error::custom)
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
        if !(1..=100).contains(&self.d_steps) {
            return Err(Error::invalid(
                C,
                "d_steps",
                self.d_steps,
                "must be 1 to 100 discriminator updates per generator update",
            ));
        }
        if let Some(gp) = &self.gradient_penalty {
            if !(gp.weight > 0.0 && gp.weight.is_finite()) {
                return Err(Error::invalid(
                    C,
                    "gradient_penalty",
                    gp,
                    "its weight must be a positive number (WGAN-GP: 10; R1: 0.1 to 10)",
                ));
            }
        }
        if let Some(ema) = &self.ema {
            if !(ema.decay > 0.0 && ema.decay < 1.0) {
                return Err(Error::invalid(
                    C,
                    "ema",
                    ema.decay,
                    "the decay must be in (0, 1), e.g. 0.999",
                ));
            }
        }
        Ok(())
    }

    /// The loss and the stabilisers in a few words, e.g. `hinge · SN(D) · EMA 0.999 ·
    /// DiffAugment color,translation,cutout` (`bce` alone for the article's recipe).
    pub fn recipe(&self) -> String {
        let mut parts = vec![self.loss.to_string()];
        if let Some(gp) = &self.gradient_penalty {
            parts.push(gp.to_string());
        }
        if self.d_steps > 1 {
            parts.push(format!("{} D steps", self.d_steps));
        }
        match (
            self.generator.spectral_norm,
            self.discriminator.spectral_norm,
        ) {
            (true, true) => parts.push("SN(G, D)".into()),
            (false, true) => parts.push("SN(D)".into()),
            (true, false) => parts.push("SN(G)".into()),
            (false, false) => {}
        }
        if let Some(ema) = &self.ema {
            parts.push(format!("EMA {}", ema.decay));
        }
        if self.augment.is_on() {
            parts.push(format!("DiffAugment {}", self.augment));
        }
        parts.join(" · ")
    }

    /// Adam with this config's settings, fused on flex if `fused` (the network's
    /// `fast_kernels`).
    fn optimizer<M: AutodiffModule<B>, B: AutodiffBackend>(
        &self,
        fused: bool,
    ) -> OptimizerAdaptor<FusedAdam, M, B> {
        OptimizerAdaptor::from(FusedAdam::new(
            self.beta1,
            self.beta2,
            self.adam_epsilon,
            fused,
        ))
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

/// What [`Trainer::update_discriminator`] computed: the loss and both logit tensors
/// (before the update, on the augmented images when DiffAugment is on).
pub struct DiscriminatorUpdate<B: Backend> {
    /// D's loss as reported: the adversarial loss plus the gradient penalty's value.
    pub loss: Tensor<B, 1>,
    /// D's logits on the real batch.
    pub real_logits: Tensor<B, 2>,
    /// D's logits on the fakes.
    pub fake_logits: Tensor<B, 2>,
}

/// What one [`Trainer::step_traced`] computed on the way, read off the real step (for
/// backend parity checks and debugging). Tensors live on the inner backend, without graph.
///
/// `fake`, `discriminator` and `d_grads` are set by every traced step; `g_loss` and
/// `g_grads` only by steps that update G (see [`TrainerConfig::d_steps`]). Gradients are
/// keyed by parameter id, which the Adam steps keep: read one with
/// `grads.get::<B::InnerBackend, D>(trainer.discriminator.classify.weight.id)`.
pub struct StepTrace<B: AutodiffBackend> {
    /// `G(z)`, G in training mode (batch statistics): the fakes of the step.
    pub fake: Option<Tensor<B::InnerBackend, 4>>,
    /// D's loss and logits before its update ([`Trainer::update_discriminator`]).
    pub discriminator: Option<DiscriminatorUpdate<B::InnerBackend>>,
    /// The gradients of D's loss that its Adam step applied.
    pub d_grads: Option<GradientsParams>,
    /// G's loss, scored by the updated D ([`Trainer::update_generator`]).
    pub g_loss: Option<Tensor<B::InnerBackend, 1>>,
    /// The gradients of G's loss that its Adam step applied.
    pub g_grads: Option<GradientsParams>,
}

impl<B: AutodiffBackend> Default for StepTrace<B> {
    fn default() -> Self {
        StepTrace {
            fake: None,
            discriminator: None,
            d_grads: None,
            g_loss: None,
            g_grads: None,
        }
    }
}

/// A copy of the gradients `grads` holds for `module`'s parameters (an optimizer step
/// consumes the original).
fn copy_grads<B: AutodiffBackend, M: AutodiffModule<B>>(
    grads: &GradientsParams,
    module: &M,
) -> GradientsParams {
    struct Copier<'a>(&'a GradientsParams, GradientsParams);
    impl<B: AutodiffBackend> ModuleVisitor<B> for Copier<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            if let Some(grad) = self.0.get::<B::InnerBackend, D>(param.id) {
                self.1.register(param.id, grad);
            }
        }
    }
    let mut copy = Copier(grads, GradientsParams::new());
    module.visit(&mut copy);
    copy.1
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
    /// The average of G's weights, when [`TrainerConfig::ema`] is on.
    pub(crate) ema: Option<Generator<B::InnerBackend>>,
    /// The generator's loss at its latest update (reported on steps without one).
    pub(crate) last_g_loss: f32,
    /// The other replicas of this process, when data-parallel ([`Trainer::replicate`]).
    pub(crate) replicas: Vec<Trainer<B>>,
    /// This replica's end of the all-reduce, when data-parallel.
    pub(crate) sync: Option<Box<dyn ReplicaSync<B::InnerBackend>>>,
    /// This step's draws for DiffAugment and the penalty when data-parallel (a stream per
    /// replica and step); `None` draws them from `rng`, as one trainer always has.
    pub(crate) replica_rng: Option<ChaCha8Rng>,
    /// Whether this replica asks the others to stop (sent with the next step's numbers).
    pub(crate) stop_requested: bool,
    /// Whether some replica asked to stop at the latest step.
    pub(crate) peers_stopping: bool,
}

/// RNG streams derived from the one seed, so adding draws to one never shifts another.
pub(crate) mod streams {
    pub const GENERATOR: u64 = 1;
    pub const DISCRIMINATOR: u64 = 2;
    pub const NOISE: u64 = 3;
    pub const PREVIEW: u64 = 4;
    /// Replica `r`'s DiffAugment and penalty draws: stream `REPLICA + r`.
    pub const REPLICA: u64 = 1000;
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
        let ema = config.ema.map(|_| generator.valid());
        let preview_noise = config.latent.sample(
            config.preview_count,
            config.generator.latent_dim,
            &mut stream_rng(config.seed, streams::PREVIEW),
        );
        Ok(Self {
            generator,
            discriminator,
            optim_g: config.optimizer(config.generator.fast_kernels),
            optim_d: config.optimizer(config.discriminator.fast_kernels),
            rng: stream_rng(config.seed, streams::NOISE),
            preview_noise,
            step: 0,
            epoch: 0,
            poisoned: false,
            device: device.clone(),
            ema,
            last_g_loss: f32::NAN,
            config,
            replicas: Vec::new(),
            sync: None,
            replica_rng: None,
            stop_requested: false,
            peers_stopping: false,
        })
    }

    /// Makes this trainer data-parallel (see [`crate::replicas`]): it becomes the replica
    /// at `sync.rank()`, and one replica is forked for each of `others`, on its device,
    /// with the same weights, optimizer state and noise. From then on [`Trainer::step`]
    /// takes the rows of the global batch meant for this process's replicas (all of it on
    /// one machine), computes each replica's shard on its own thread and device, and
    /// averages the gradients before each Adam step. Everything else (saving, sampling,
    /// the counters) reads this trainer, replica 0 of the process.
    ///
    /// Fails with [`Error::InvalidConfig`] if the trainer is already replicated, if the
    /// ranks do not follow each other, or if the batch does not split evenly.
    pub fn replicate(
        &mut self,
        sync: Box<dyn ReplicaSync<B::InnerBackend>>,
        others: Vec<Replica<B::InnerBackend>>,
    ) -> Result<()> {
        let world = sync.world_size();
        if self.sync.is_some() {
            return Err(Error::invalid(
                "trainer",
                "replicas",
                world,
                "already replicated",
            ));
        }
        for (i, other) in others.iter().enumerate() {
            if other.sync.rank() != sync.rank() + 1 + i || other.sync.world_size() != world {
                return Err(Error::invalid(
                    "trainer",
                    "replicas",
                    other.sync.rank(),
                    format!(
                        "ranks must follow this trainer's {} in one world of {world}",
                        sync.rank()
                    ),
                ));
            }
        }
        if !self.config.batch_size.is_multiple_of(world) {
            return Err(Error::invalid(
                "trainer",
                "batch_size",
                self.config.batch_size,
                format!("must split evenly over the {world} replicas (a multiple of {world})"),
            ));
        }
        self.replicas = others
            .into_iter()
            .map(|other| self.fork(&other.device, other.sync))
            .collect();
        self.sync = Some(sync);
        Ok(())
    }

    /// A copy of this trainer on `device`, as another replica with `sync`.
    fn fork(&self, device: &B::Device, sync: Box<dyn ReplicaSync<B::InnerBackend>>) -> Self {
        Trainer {
            // `fork` gives the copy parameters of its own (new autodiff leaves, same ids),
            // so the replicas' backward passes never share a graph.
            generator: self.generator.clone().fork(device),
            discriminator: self.discriminator.clone().fork(device),
            optim_g: self.optim_g.clone(),
            optim_d: self.optim_d.clone(),
            config: self.config.clone(),
            rng: self.rng.clone(),
            preview_noise: self.preview_noise.clone(),
            step: self.step,
            epoch: self.epoch,
            poisoned: self.poisoned,
            device: device.clone(),
            ema: self.ema.clone().map(|average| average.to_device(device)),
            last_g_loss: self.last_g_loss,
            replicas: Vec::new(),
            sync: Some(sync),
            replica_rng: None,
            stop_requested: false,
            peers_stopping: false,
        }
    }

    /// How many replicas the run has on all machines (1 unless [`Trainer::replicate`]d).
    pub fn world_size(&self) -> usize {
        self.sync.as_ref().map_or(1, |sync| sync.world_size())
    }

    /// This trainer's replica rank (0 unless [`Trainer::replicate`]d).
    pub fn rank(&self) -> usize {
        self.sync.as_ref().map_or(0, |sync| sync.rank())
    }

    /// The other replicas of this process (empty unless [`Trainer::replicate`]d), in rank
    /// order.
    pub fn local_replicas(&self) -> &[Trainer<B>] {
        &self.replicas
    }

    /// Checks that every replica holds the same weights as this one: each replica's
    /// per-tensor sums of both networks are averaged over all replicas (every replica of
    /// every machine must call this at the same point, as after the last step) and must
    /// equal its own to float rounding. Returns the fingerprint (the sum of those sums),
    /// the same number on every machine; fails with [`Error::Replica`] if they differ.
    /// Without replicas, just the fingerprint.
    pub fn verify_replicas_agree(&mut self) -> Result<f64> {
        let (mine, theirs) = self.on_every_replica(
            |this| this.own_fingerprint_check(),
            |replica| replica.own_fingerprint_check(),
        );
        for result in theirs {
            result?;
        }
        mine
    }

    /// Runs `mine` on this trainer (in this thread) and `theirs` on each other replica of
    /// the process, each on a thread of its own, all at once (they meet in all-reduces);
    /// returns this trainer's result and the others' in rank order.
    fn on_every_replica<T: Send>(
        &mut self,
        mine: impl FnOnce(&mut Self) -> Result<T>,
        theirs: impl Fn(&mut Self) -> Result<T> + Sync,
    ) -> (Result<T>, Vec<Result<T>>) {
        let mut others = std::mem::take(&mut self.replicas);
        let outcome = std::thread::scope(|scope| {
            let theirs = &theirs;
            let handles: Vec<_> = others
                .iter_mut()
                .map(|replica| scope.spawn(move || theirs(replica)))
                .collect();
            let mine = mine(self);
            let theirs: Vec<_> = handles
                .into_iter()
                .map(|handle| {
                    handle.join().unwrap_or_else(|_| {
                        Err(Error::Replica {
                            rank: 0,
                            reason: "a replica's thread panicked".into(),
                        })
                    })
                })
                .collect();
            (mine, theirs)
        });
        self.replicas = others;
        outcome
    }

    /// [`Trainer::verify_replicas_agree`] for this replica alone.
    fn own_fingerprint_check(&mut self) -> Result<f64> {
        struct Sums<B: AutodiffBackend>(Vec<Tensor<B::InnerBackend, 1>>);
        impl<B: AutodiffBackend> ModuleVisitor<B> for Sums<B> {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
                // The trained parameters (not batch norm's running statistics, which each
                // replica keeps from its own shards).
                let value = param.val();
                if value.is_require_grad() {
                    self.0.push(value.inner().sum());
                }
            }
        }
        let mut sums = Sums::<B>(Vec::new());
        self.generator.visit(&mut sums);
        self.discriminator.visit(&mut sums);
        let own = Tensor::cat(sums.0, 0);
        let read = |t: Tensor<B::InnerBackend, 1>| -> Vec<f32> {
            t.into_data()
                .convert::<f32>()
                .to_vec()
                .expect("f32 reads back as f32")
        };
        let mine = read(own.clone());
        if let Some(sync) = &mut self.sync {
            let mean = read(sync.all_reduce(own, Reduction::Mean)?);
            let differs = mine
                .iter()
                .zip(&mean)
                .any(|(a, m)| (a - m).abs() > 1e-5 * a.abs().max(1e-3));
            if differs {
                return Err(Error::Replica {
                    rank: self.rank(),
                    reason: "its weights differ from the other replicas' (they should be \
                             identical after every step): the run is not consistent"
                        .into(),
                });
            }
        }
        Ok(mine.iter().map(|&v| v as f64).sum())
    }

    /// Asks every replica, on every machine, to stop: the request travels with the next
    /// step's numbers, after which [`Trainer::stop_agreed`] is true on all of them. (A
    /// multi-machine run must stop at the same step everywhere, or the others would
    /// wait for the missing one.)
    pub fn request_stop(&mut self) {
        self.stop_requested = true;
    }

    /// Whether some replica asked to stop at the latest step (see
    /// [`Trainer::request_stop`]); the request of a trainer that is not replicated counts
    /// at once.
    pub fn stop_agreed(&self) -> bool {
        // Replicas all in this process stop together anyway: at once.
        match self.world_size() == self.replicas.len() + 1 {
            true => self.stop_requested,
            false => self.peers_stopping,
        }
    }

    /// One training step on a batch of real images in [−1, 1]: fresh latents, then
    /// [`Trainer::update_discriminator`] and, on the first of every
    /// [`TrainerConfig::d_steps`] steps, [`Trainer::update_generator`] (and the generator
    /// average); the other steps report G's latest loss.
    ///
    /// (1) Update D: minimise the configured loss (the article's: maximise
    /// `log D(x) + log(1 − D(G(z)))` with real labels smoothed to `real_label`) plus any
    /// gradient penalty; the fakes are detached so G gets no gradient. (2) Update G:
    /// minimise its loss (the article's: maximise `log D(G(z))`) on the same fakes, scored
    /// by the updated D. With DiffAugment, every image D sees is augmented first.
    ///
    /// A non-finite loss returns [`Error::NonFiniteLoss`]; the trainer is then poisoned and
    /// refuses to save, so the last good checkpoint on disk stays the last one.
    ///
    /// # Shapes
    /// - `real`: `[batch, 3, image_size, image_size]`
    pub fn step(&mut self, real: Tensor<B, 4>) -> Result<StepMetrics> {
        self.traced_step(real, None)
    }

    /// [`Trainer::step`], also returning what it computed on the way: the same code path,
    /// which keeps copies of the fakes, D's loss and logits, G's loss and the gradients
    /// both Adam steps applied ([`StepTrace`]). For backend parity checks and debugging.
    pub fn step_traced(&mut self, real: Tensor<B, 4>) -> Result<(StepMetrics, StepTrace<B>)> {
        let mut trace = StepTrace::default();
        let metrics = self.traced_step(real, Some(&mut trace))?;
        Ok((metrics, trace))
    }

    /// [`Trainer::step`], recording into `trace` if given.
    fn traced_step(
        &mut self,
        real: Tensor<B, 4>,
        trace: Option<&mut StepTrace<B>>,
    ) -> Result<StepMetrics> {
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
        if self.sync.is_none() {
            return self.shard_step(real, batch, 0..batch, trace);
        }
        let world = self.world_size();
        if !batch.is_multiple_of(world) {
            return Err(Error::Shape {
                what: "real batch",
                expected: format!("a batch that splits evenly over the {world} replicas"),
                actual: real.dims().to_vec(),
            });
        }
        // Each replica of this process computes its rows on a thread of its own; this
        // thread computes this trainer's.
        let (mine, theirs) = self.on_every_replica(
            |this| {
                let rows = shard_rows(batch, this.rank(), world);
                let shard = real.clone().slice(rows.clone());
                this.guarded_shard_step(shard, batch, rows, trace)
            },
            |replica| {
                let rows = shard_rows(batch, replica.rank(), world);
                let shard = real.clone().slice(rows.clone()).to_device(&replica.device);
                replica.guarded_shard_step(shard, batch, rows, None)
            },
        );
        // The most telling outcome: a replica's own failure before the echo of it that
        // the others see, and a failure before success.
        let rank = |result: &Result<StepMetrics>| match result {
            Ok(_) => 3,
            Err(Error::Replica { reason, .. }) if reason.contains(ECHO) => 2,
            Err(Error::Replica { .. }) => 1,
            Err(_) => 0,
        };
        let result = std::iter::once(mine)
            .chain(theirs)
            .min_by_key(rank)
            .expect("at least this replica");
        if result.is_err() {
            self.poisoned = true;
        }
        result
    }

    /// [`Trainer::shard_step`], turning a panic into an error and waking the other
    /// replicas of the process on any failure, so that none waits for this one forever.
    fn guarded_shard_step(
        &mut self,
        real: Tensor<B, 4>,
        global_batch: usize,
        rows: std::ops::Range<usize>,
        trace: Option<&mut StepTrace<B>>,
    ) -> Result<StepMetrics> {
        let rank = self.rank();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.shard_step(real, global_batch, rows, trace)
        }));
        let result = outcome.unwrap_or_else(|panic| {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown cause".into());
            Err(Error::Replica {
                rank,
                reason: format!("its step panicked: {message}"),
            })
        });
        match &result {
            Err(Error::NonFiniteLoss { .. }) | Ok(_) => {}
            Err(_) => {
                if let Some(sync) = &mut self.sync {
                    sync.abort();
                }
            }
        }
        result
    }

    /// One step on `real`, the rows `rows` of a global batch of `global_batch` images
    /// (all of it unless data-parallel).
    fn shard_step(
        &mut self,
        real: Tensor<B, 4>,
        global_batch: usize,
        rows: std::ops::Range<usize>,
        mut trace: Option<&mut StepTrace<B>>,
    ) -> Result<StepMetrics> {
        // Every replica draws the global batch's latents from the same stream and keeps
        // its rows, so R replicas use the latents one trainer would.
        let mut z = self.config.latent.tensor::<B>(
            global_batch,
            self.config.generator.latent_dim,
            &mut self.rng,
            &self.device,
        );
        if rows.len() != global_batch {
            z = z.slice(rows);
        }
        if self.world_size() > 1 {
            let step_seed = self.config.seed ^ self.step.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let stream = streams::REPLICA + self.rank() as u64;
            self.replica_rng = Some(stream_rng(step_seed, stream));
        }
        // G is updated on the first step of every cycle of `d_steps` D updates.
        let generator_turn = self.step.is_multiple_of(self.config.d_steps as u64);
        let fake = self.generator.forward(z);
        if let Some(trace) = trace.as_deref_mut() {
            trace.fake = Some(fake.clone().inner());
        }
        let d = self.update_discriminator_traced(
            real.clone(),
            fake.clone().detach(),
            trace.as_deref_mut(),
        )?;
        let g_loss = match generator_turn {
            true => {
                let g_loss = self.update_generator_traced(fake, real, trace)?;
                self.update_average();
                Some(g_loss.inner())
            }
            false => None,
        };

        self.step += 1;
        // One read-back for all the numbers (G's loss only on steps that updated G).
        let mut parts = vec![
            d.loss.inner(),
            sigmoid(d.real_logits.inner()).mean(),
            sigmoid(d.fake_logits.inner()).mean(),
        ];
        parts.extend(g_loss);
        let mut numbers = Tensor::cat(parts, 0);
        if let Some(sync) = &mut self.sync {
            // The means over the global batch, and any replica's request to stop.
            let vote = if self.stop_requested { 1.0f32 } else { 0.0 };
            let vote = Tensor::from_data(TensorData::new(vec![vote], [1]), &self.device);
            numbers = sync.all_reduce(Tensor::cat(vec![numbers, vote], 0), Reduction::Mean)?;
        }
        let mut values = numbers
            .into_data()
            .convert::<f32>()
            .to_vec::<f32>()
            .expect("a float tensor converted to f32 reads back as f32");
        if self.sync.is_some() {
            self.peers_stopping = values.pop().is_some_and(|vote| vote > 0.0);
        }
        if let Some(&g_loss) = values.get(3) {
            self.last_g_loss = g_loss;
        }
        let metrics = StepMetrics {
            step: self.step,
            d_loss: values[0],
            g_loss: self.last_g_loss,
            d_real: values[1],
            d_fake: values[2],
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

    /// (1) Update D: one Adam step on the configured loss (the article's
    /// `BCE(D(real), real_label) + BCE(D(fake), 0)`) plus the gradient penalty, if any,
    /// with DiffAugment applied to both batches first, if on.
    ///
    /// Pass detached fakes. [`Trainer::step`] calls this; it is public for custom loops
    /// and tests.
    ///
    /// Fails only when data-parallel and the gradients cannot be averaged
    /// ([`Error::Replica`]).
    pub fn update_discriminator(
        &mut self,
        real: Tensor<B, 4>,
        fake: Tensor<B, 4>,
    ) -> Result<DiscriminatorUpdate<B>> {
        self.update_discriminator_traced(real, fake, None)
    }

    /// Where DiffAugment and the penalty draw from: the replica's stream when
    /// data-parallel, else the trainer's one stream.
    fn draws(&mut self) -> &mut ChaCha8Rng {
        match &mut self.replica_rng {
            Some(rng) => rng,
            None => &mut self.rng,
        }
    }

    /// `grads` averaged over the replicas when data-parallel, else as they are.
    fn averaged<M: AutodiffModule<B>>(
        sync: &mut Option<Box<dyn ReplicaSync<B::InnerBackend>>>,
        grads: GradientsParams,
        module: &M,
    ) -> Result<GradientsParams> {
        match sync {
            Some(sync) => average_gradients(grads, module, sync.as_mut()),
            None => Ok(grads),
        }
    }

    /// [`Trainer::update_discriminator`], recording into `trace` if given.
    fn update_discriminator_traced(
        &mut self,
        real: Tensor<B, 4>,
        fake: Tensor<B, 4>,
        trace: Option<&mut StepTrace<B>>,
    ) -> Result<DiscriminatorUpdate<B>> {
        let augment = self.config.augment;
        let real = augment.apply(real, self.draws());
        let fake = augment.apply(fake, self.draws());
        let real_logits = self.discriminator.forward(real.clone());
        let fake_logits = self.discriminator.forward(fake.clone());
        let mut loss = self.config.loss.discriminator(
            real_logits.clone(),
            fake_logits.clone(),
            self.config.real_label,
        );
        let mut reported = loss.clone();
        if let Some(penalty) = self.config.gradient_penalty {
            let points = match penalty.kind {
                PenaltyKind::R1 => real.detach(),
                PenaltyKind::Wgan => {
                    use rand::Rng;
                    let draws = self.draws();
                    let weights = (0..real.dims()[0]).map(|_| draws.random::<f32>()).collect();
                    interpolate(real, fake, weights)
                }
            };
            let (surrogate, value) = penalty.surrogate(&self.discriminator, points);
            reported = reported.detach() + value;
            loss = loss + surrogate;
        }
        let grads = GradientsParams::from_grads(loss.backward(), &self.discriminator);
        let grads = Self::averaged(&mut self.sync, grads, &self.discriminator)?;
        if let Some(trace) = trace {
            trace.discriminator = Some(DiscriminatorUpdate {
                loss: reported.clone().inner(),
                real_logits: real_logits.clone().inner(),
                fake_logits: fake_logits.clone().inner(),
            });
            trace.d_grads = Some(copy_grads(&grads, &self.discriminator));
        }
        self.discriminator = self
            .optim_d
            .step(self.config.lr_d, self.discriminator.clone(), grads);
        Ok(DiscriminatorUpdate {
            loss: reported,
            real_logits,
            fake_logits,
        })
    }

    /// (2) Update G: one Adam step on the configured generator loss (the article's
    /// non-saturating `BCE(D(fake), 1)`), with DiffAugment on the fakes if on. The
    /// relativistic losses also score `real` (otherwise unused).
    ///
    /// `fake` must still be attached to the generator's graph. Returns the loss; fails
    /// only when data-parallel and the gradients cannot be averaged ([`Error::Replica`]).
    pub fn update_generator(
        &mut self,
        fake: Tensor<B, 4>,
        real: Tensor<B, 4>,
    ) -> Result<Tensor<B, 1>> {
        self.update_generator_traced(fake, real, None)
    }

    /// [`Trainer::update_generator`], recording into `trace` if given.
    fn update_generator_traced(
        &mut self,
        fake: Tensor<B, 4>,
        real: Tensor<B, 4>,
        trace: Option<&mut StepTrace<B>>,
    ) -> Result<Tensor<B, 1>> {
        // D's parameters get no gradients here (only G is stepped), so the backward pass
        // skips D's weight gradients: the same update for less work. The copy shares
        // D's batch-norm running statistics, which this forward updates as before.
        let discriminator = self.discriminator.clone().no_grad();
        let augment = self.config.augment;
        let fake = augment.apply(fake, self.draws());
        let real_logits = match self.config.loss.is_relativistic() {
            true => {
                let real = augment.apply(real, self.draws());
                Some(discriminator.forward(real))
            }
            false => None,
        };
        let g_loss = self
            .config
            .loss
            .generator(real_logits, discriminator.forward(fake));
        let grads = GradientsParams::from_grads(g_loss.backward(), &self.generator);
        let grads = Self::averaged(&mut self.sync, grads, &self.generator)?;
        if let Some(trace) = trace {
            trace.g_loss = Some(g_loss.clone().inner());
            trace.g_grads = Some(copy_grads(&grads, &self.generator));
        }
        self.generator = self
            .optim_g
            .step(self.config.lr_g, self.generator.clone(), grads);
        Ok(g_loss)
    }

    /// Moves the generator average (if on) towards the generator just updated.
    fn update_average(&mut self) {
        let (Some(config), Some(average)) = (self.config.ema, self.ema.take()) else {
            return;
        };
        let updates_before = self.step / self.config.d_steps as u64;
        let keep = config.decay_at(updates_before);
        self.ema = Some(update_average(average, &self.generator.valid(), keep));
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
        for replica in &mut self.replicas {
            replica.generator.precision = precision;
            replica.discriminator.precision = precision;
        }
        Ok(())
    }

    /// The precision both networks compute in (see [`Trainer::set_precision`]).
    pub fn precision(&self) -> Precision {
        self.generator.precision
    }

    /// Changes both learning rates from the next step on (e.g. to continue a run that
    /// diverged more gently); checkpoints then record the new ones. Fails with
    /// [`Error::InvalidConfig`], changing nothing, unless both are positive numbers.
    pub fn set_learning_rates(&mut self, lr_d: f64, lr_g: f64) -> Result<()> {
        let config = self.config.clone().with_lr_d(lr_d).with_lr_g(lr_g);
        config.validate()?;
        for replica in &mut self.replicas {
            replica.config = config.clone();
        }
        self.config = config;
        Ok(())
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

    /// The generator to draw samples from: the average of G's weights when
    /// [`TrainerConfig::ema`] is on and `use_average` is true, else
    /// [`Trainer::inference_generator`].
    pub fn sampling_generator(&self, use_average: bool) -> Generator<B::InnerBackend> {
        match (&self.ema, use_average) {
            (Some(average), true) => average.clone().with_precision(self.precision()),
            _ => self.inference_generator(),
        }
    }

    /// The average of G's weights, if [`TrainerConfig::ema`] is on.
    pub fn average_generator(&self) -> Option<&Generator<B::InnerBackend>> {
        self.ema.as_ref()
    }

    /// Whether a non-finite loss has made the in-memory state unusable.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::discriminator_loss;
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
        let reported = t
            .update_discriminator(real.clone(), fake.clone())
            .unwrap()
            .loss;
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
        t.update_generator(fake, random_batch(&device, 0)).unwrap();
        assert_eq!(d_weights(&t), d_before, "the G update changed D's weights");
        assert_ne!(g_weight(&t), g_before, "the G update did not change G");
        // D's forward pass in training still updates its running statistics.
        assert_ne!(d_running_means(&t), stats_before);
    }

    fn generator_weight(t: &Trainer<B>) -> Vec<f32> {
        t.generator
            .to_image
            .weight
            .val()
            .into_data()
            .to_vec::<f32>()
            .unwrap()
    }

    #[test]
    fn with_d_steps_g_moves_only_every_nth_step() {
        let device = Default::default();
        let mut t = Trainer::<B>::new(tiny_config().with_d_steps(3), &device).unwrap();
        let mut g = generator_weight(&t);
        let mut g_losses = Vec::new();
        for i in 0..6 {
            let m = t.step(random_batch(&device, i)).unwrap();
            let now = generator_weight(&t);
            // G moves on steps 1 and 4.
            assert_eq!(now != g, i % 3 == 0, "step {}", i + 1);
            g = now;
            g_losses.push(m.g_loss);
        }
        // Steps without a G update repeat its latest loss.
        assert!(g_losses.iter().all(|l| l.is_finite()));
        assert_eq!((g_losses[1], g_losses[2]), (g_losses[0], g_losses[0]));
        assert_ne!(g_losses[3], g_losses[0]);
        assert_eq!(g_losses[5], g_losses[3]);
    }

    #[test]
    fn the_generator_average_follows_the_generator_with_warm_up() {
        let device = Default::default();
        let config = tiny_config().with_ema(Some(EmaConfig { decay: 0.999 }));
        let mut t = Trainer::<B>::new(config, &device).unwrap();
        let first = |g: &Generator<<B as AutodiffBackend>::InnerBackend>| -> Vec<f32> {
            g.to_image.weight.val().into_data().to_vec().unwrap()
        };
        let start = first(t.average_generator().unwrap());
        assert_eq!(start, generator_weight(&t));
        t.step(random_batch(&device, 0)).unwrap();
        // First update: β = min(0.999, 1/10) = 0.1.
        let g1 = generator_weight(&t);
        for ((a, s), g) in first(t.average_generator().unwrap())
            .iter()
            .zip(&start)
            .zip(&g1)
        {
            assert!((a - (0.1 * s + 0.9 * g)).abs() < 1e-6);
        }
        assert_ne!(first(&t.sampling_generator(true)), g1);
        assert_eq!(first(&t.sampling_generator(false)), g1);
    }

    #[test]
    fn every_stabilizer_steps_and_reports_finite_numbers() {
        let device = Default::default();
        let mut t = Trainer::<B>::new(crate::test_util::stabilized_config(), &device).unwrap();
        for i in 0..4 {
            let m = t.step(random_batch(&device, i)).unwrap();
            assert!(m.is_finite(), "{m:?}");
        }
        assert!(t.config().recipe().contains("ralsgan"));
    }

    #[test]
    fn a_traced_step_is_the_step_and_keeps_what_it_computed() {
        let device = Default::default();
        let config = crate::test_util::stabilized_config();
        let mut plain = Trainer::<B>::new(config.clone(), &device).unwrap();
        let mut traced = Trainer::<B>::new(config, &device).unwrap();
        for i in 0..2 {
            let real = random_batch(&device, i);
            let expected = plain.step(real.clone()).unwrap();
            let (metrics, trace) = traced.step_traced(real).unwrap();
            assert_eq!(metrics, expected, "step {}", i + 1);
            assert_eq!(trace.fake.unwrap().dims(), [4, 3, 32, 32]);
            let d = trace.discriminator.unwrap();
            assert_eq!(d.loss.into_scalar(), metrics.d_loss);
            assert_eq!(d.real_logits.dims(), [4, 1]);
            // D's gradients, read back by the (kept) parameter ids.
            let d_grads = trace.d_grads.unwrap();
            let weight = &traced.discriminator.classify.weight;
            let grad = d_grads.get::<<B as AutodiffBackend>::InnerBackend, 2>(weight.id);
            assert_eq!(grad.unwrap().dims(), weight.val().dims());
            // With 2 D steps, G is updated (and traced) on the first step only.
            assert_eq!(trace.g_loss.is_some(), i == 0);
            if let (Some(g_loss), Some(g_grads)) = (trace.g_loss, trace.g_grads) {
                assert_eq!(g_loss.into_scalar(), metrics.g_loss);
                let w = &traced.generator.to_image.weight;
                let grad = g_grads.get::<<B as AutodiffBackend>::InnerBackend, 4>(w.id);
                assert!(grad.unwrap().abs().sum().into_scalar() > 0.0);
            }
        }
        assert_eq!(generator_weight(&plain), generator_weight(&traced));
    }

    #[test]
    fn configs_saved_before_the_stabilizers_read_with_their_defaults() {
        let mut old = serde_json::to_value(tiny_config()).unwrap();
        for key in ["loss", "gradient_penalty", "d_steps", "ema", "augment"] {
            old.as_object_mut().unwrap().remove(key);
        }
        old["discriminator"]
            .as_object_mut()
            .unwrap()
            .remove("spectral_norm");
        for net in ["generator", "discriminator"] {
            old[net].as_object_mut().unwrap().remove("fast_kernels");
        }
        assert!(serde_json::from_value::<TrainerConfig>(old.clone()).is_err());
        upgrade_config_json(&mut old);
        let upgraded: TrainerConfig = serde_json::from_value(old).unwrap();
        assert_eq!(upgraded, tiny_config());
        assert_eq!(upgraded.recipe(), "bce");
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
            (tiny_config().with_d_steps(0), "d_steps"),
            (
                tiny_config().with_ema(Some(EmaConfig { decay: 1.0 })),
                "ema",
            ),
            (
                tiny_config().with_gradient_penalty(Some(GradientPenalty {
                    kind: PenaltyKind::R1,
                    weight: -1.0,
                })),
                "gradient_penalty",
            ),
        ] {
            match Trainer::<B>::new(config, &device) {
                Err(Error::InvalidConfig { field: f, .. }) => assert_eq!(f, field),
                Err(other) => panic!("{field}: unexpected {other}"),
                Ok(_) => panic!("{field}: accepted"),
            }
        }
    }
}
