//! The discriminator: a `[3, S, S]` image to one real-vs-fake logit.
//!
//! A stack of 5×5 "same" convolutions whose channels double from `base`, each followed by
//! batch norm (optionally not on the first, as in PyTorch's DCGAN) and leaky ReLU, then a
//! flatten and a dense layer to one logit. The strides are part of the config: the seed uses
//! `2, 2, 2, 1, 2` at 128 px (ending at 8×8×1024); the default is stride 2 down to 4×4.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Initializer, Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result};
use crate::init::WeightInit;
use crate::layers;
use crate::network::{
    at_most, network_config, network_switches, positive, validate_image_size, MAX_WIDTH,
};
use crate::precision::Precision;
use crate::spectral_norm::{self, SpectralNorm};

network_config! {
    /// Configuration of a [`Discriminator`].
    pub struct DiscriminatorConfig {
        /// Side of the square input image: `8 · 2^k` with `k ≥ 1`.
        pub image_size: usize,
        /// Channels of the first convolution; each later one has twice the previous one's.
        #[config(default = 64)]
        pub base_channels: usize,
        /// Channels of the input image.
        #[config(default = 3)]
        pub image_channels: usize,
        /// Stride of each convolution (1 or 2). Empty means stride 2 down to a 4×4 map.
        #[config(default = "Vec::new()")]
        pub strides: Vec<usize>,
        /// Batch norm after the first convolution too (the seed's code does; PyTorch's DCGAN
        /// doesn't).
        #[config(default = false)]
        pub first_batch_norm: bool,
    }
    /// Spectral normalisation of every convolution and the dense layer (SNGAN's
    /// discriminator: it then replaces batch norm, which this config's stages drop).
    spectral_norm;
}

/// One downsampling stage: convolution, optional batch norm, leaky ReLU.
#[derive(Module, Debug)]
pub struct DownBlock<B: Backend> {
    /// Convolution, weight `[c_out, c_in, k, k]`.
    pub conv: Conv2d<B>,
    /// Batch norm over `c_out` channels, if this stage has one.
    pub norm: Option<BatchNorm<B>>,
    /// Spectral normalisation of the convolution's weight, if on.
    pub spectral: Option<SpectralNorm<B>>,
}

/// The DCGAN discriminator. Build it with [`DiscriminatorConfig::init`].
#[derive(Module, Debug)]
pub struct Discriminator<B: Backend> {
    /// The convolution stages.
    pub blocks: Vec<DownBlock<B>>,
    /// Dense layer from the flattened last feature map to one logit.
    pub classify: Linear<B>,
    /// Spectral normalisation of the dense layer's weight, if on.
    pub classify_spectral: Option<SpectralNorm<B>>,
    /// Negative slope of the leaky ReLUs.
    pub leaky_slope: f64,
    /// Precision of the matrix products ([`Precision::F32`] from `init`; not part of the
    /// record: the parameters are f32 in every precision).
    pub precision: Precision,
    /// Whether the layers run through the flex fast path (the config's `fast_kernels`; not
    /// part of the record).
    pub fast_kernels: bool,
}

impl DiscriminatorConfig {
    /// The strides actually used: [`DiscriminatorConfig::strides`], or stride 2 down to 4×4.
    pub fn effective_strides(&self) -> Vec<usize> {
        if self.strides.is_empty() {
            let layers = (self.image_size / 4).max(1).trailing_zeros() as usize;
            vec![2; layers]
        } else {
            self.strides.clone()
        }
    }

    /// Side of the last feature map.
    pub fn final_size(&self) -> usize {
        self.effective_strides()
            .iter()
            .fold(self.image_size, |side, stride| side / stride)
    }

    /// Channels of the last feature map.
    pub fn final_channels(&self) -> usize {
        self.base_channels << (self.effective_strides().len() - 1)
    }

    /// Checks every field; [`DiscriminatorConfig::init`] calls it first.
    pub fn validate(&self) -> Result<()> {
        const C: &str = "discriminator";
        validate_image_size(C, self.image_size)?;
        positive(C, "base_channels", self.base_channels)?;
        at_most(C, "base_channels", self.base_channels, MAX_WIDTH)?;
        positive(C, "image_channels", self.image_channels)?;
        self.validate_layers(C)?;
        let strides = self.effective_strides();
        if strides.is_empty() || strides.len() > 12 || strides.iter().any(|&s| s != 1 && s != 2) {
            return Err(Error::invalid(
                C,
                "strides",
                &self.strides,
                "need 1 to 12 convolutions, each of stride 1 or 2",
            ));
        }
        let downscale: usize = strides.iter().product();
        if !self.image_size.is_multiple_of(downscale) || self.image_size / downscale < 1 {
            return Err(Error::invalid(
                C,
                "strides",
                &self.strides,
                format!(
                    "their product {downscale} must divide the image size {}",
                    self.image_size
                ),
            ));
        }
        Ok(())
    }

    /// Builds the discriminator with weights drawn from seed 0.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Result<Discriminator<B>> {
        self.init_seeded(device, 0)
    }

    /// Builds the discriminator with weights drawn from `seed`: the same seed gives the same
    /// weights on every backend.
    pub fn init_seeded<B: Backend>(
        &self,
        device: &B::Device,
        seed: u64,
    ) -> Result<Discriminator<B>> {
        self.validate()?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let k = self.kernel_size;
        let pad = (k - 1) / 2;
        let mut channels_in = self.image_channels;
        let mut channels_out = self.base_channels;
        let mut blocks = Vec::new();
        for (i, &stride) in self.effective_strides().iter().enumerate() {
            let mut conv = Conv2dConfig::new([channels_in, channels_out], [k, k])
                .with_stride([stride, stride])
                .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
                .with_initializer(Initializer::Zeros)
                .init(device);
            conv.weight = self
                .init
                .param([channels_out, channels_in, k, k], &mut rng, device);
            let norm = ((i > 0 || self.first_batch_norm) && !self.spectral_norm).then(|| {
                BatchNormConfig::new(channels_out)
                    .with_momentum(self.bn_momentum)
                    .with_epsilon(self.bn_epsilon)
                    .init(device)
            });
            blocks.push(DownBlock {
                conv,
                norm,
                spectral: None,
            });
            channels_in = channels_out;
            channels_out *= 2;
        }
        let features = channels_in * self.final_size() * self.final_size();
        let mut classify = LinearConfig::new(features, 1)
            .with_initializer(Initializer::Zeros)
            .init(device);
        classify.weight = self.init.param([features, 1], &mut rng, device);
        // The power-iteration vectors are drawn after every weight, so turning spectral
        // norm on does not change the weights a seed gives.
        let on = self.spectral_norm;
        for block in &mut blocks {
            block.spectral = SpectralNorm::for_weight(on, &block.conv.weight, &mut rng, device);
        }
        let classify_spectral = SpectralNorm::for_weight(on, &classify.weight, &mut rng, device);
        Ok(Discriminator {
            blocks,
            classify,
            classify_spectral,
            leaky_slope: self.leaky_slope,
            precision: Precision::F32,
            fast_kernels: self.fast_kernels,
        })
    }
}

impl<B: Backend> DownBlock<B> {
    /// `[n, c_in, h, w]` → `[n, c_out, h/stride, w/stride]`, computing as `discriminator`
    /// does: its leaky slope, the convolution in its precision, through the flex fast path
    /// if its `fast_kernels`.
    pub fn forward(&self, x: Tensor<B, 4>, discriminator: &Discriminator<B>) -> Tensor<B, 4> {
        let (slope, fast) = (discriminator.leaky_slope, discriminator.fast_kernels);
        let conv = spectral_norm::normalized(&self.conv, &self.spectral);
        let x = layers::conv2d(&conv, x, discriminator.precision, fast);
        match &self.norm {
            Some(norm) => layers::batch_norm_leaky_relu(norm, x, slope, fast),
            None => layers::leaky_relu(x, slope, fast),
        }
    }
}

network_switches!(Discriminator, DiscriminatorConfig, "discriminator");

impl<B: Backend> Discriminator<B> {
    /// Scores images: one logit each (positive means "real").
    ///
    /// # Shapes
    /// - `images`: `[batch, 3, image_size, image_size]`, values in [−1, 1]
    /// - output: `[batch, 1]`
    pub fn forward(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        let mut x = images;
        for block in &self.blocks {
            x = block.forward(x, self);
        }
        let features = layers::to_channels_first(x, self.fast_kernels).flatten(1, 3);
        let classify = spectral_norm::normalized(&self.classify, &self.classify_spectral);
        layers::dense(&classify, features, self.precision)
    }

    /// Trainable parameters: weights, biases and batch-norm γ, β. (burn's `num_params`
    /// also counts the batch-norm running statistics, which are not trained.)
    pub fn trainable_params(&self) -> usize {
        self.blocks
            .iter()
            .map(|b| {
                b.conv.num_params()
                    + b.norm
                        .as_ref()
                        .map_or(0, |n| n.gamma.num_params() + n.beta.num_params())
            })
            .sum::<usize>()
            + self.classify.num_params()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TestBackend;

    #[test]
    fn default_strides_end_at_four_by_four() {
        let c = DiscriminatorConfig::new(64);
        // 64 → 32 → 16 → 8 → 4: four stride-2 convolutions, 64·2³ = 512 channels.
        assert_eq!(c.effective_strides(), vec![2, 2, 2, 2]);
        assert_eq!((c.final_size(), c.final_channels()), (4, 512));
        let seed = DiscriminatorConfig::new(128).with_strides(vec![2, 2, 2, 1, 2]);
        assert_eq!((seed.final_size(), seed.final_channels()), (8, 1024));
    }

    #[test]
    fn first_batch_norm_is_a_knob() {
        let device = Default::default();
        let with = DiscriminatorConfig::new(16)
            .with_base_channels(4)
            .with_first_batch_norm(true)
            .init::<TestBackend>(&device)
            .unwrap();
        let without = DiscriminatorConfig::new(16)
            .with_base_channels(4)
            .init::<TestBackend>(&device)
            .unwrap();
        assert!(with.blocks[0].norm.is_some() && without.blocks[0].norm.is_none());
        // γ and β of 4 channels.
        assert_eq!(with.trainable_params() - without.trainable_params(), 8);
    }

    #[test]
    fn invalid_configs_are_typed_errors() {
        let device = Default::default();
        for (config, field) in [
            (DiscriminatorConfig::new(96), "image_size"),
            (
                DiscriminatorConfig::new(64).with_base_channels(0),
                "base_channels",
            ),
            (
                DiscriminatorConfig::new(64).with_strides(vec![3]),
                "strides",
            ),
            (
                DiscriminatorConfig::new(16).with_strides(vec![2, 2, 2, 2, 2]),
                "strides",
            ),
            (
                DiscriminatorConfig::new(64).with_bn_epsilon(0.0),
                "bn_epsilon",
            ),
        ] {
            match config.init::<TestBackend>(&device) {
                Err(Error::InvalidConfig { field: f, .. }) => assert_eq!(f, field),
                other => panic!("expected an InvalidConfig error on {field}, got {other:?}"),
            }
        }
    }
}
