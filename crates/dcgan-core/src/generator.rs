//! The generator: a latent vector to a `[3, S, S]` image in [−1, 1].
//!
//! Layer for layer the seed's generator: dense `z → 8·8·C₀`, reshape to `[C₀, 8, 8]`,
//! leaky ReLU (no batch norm there), then `log2(S/8)` stride-2 5×5 transposed convolutions,
//! each halving the channels and doubling the side, each followed by batch norm and leaky
//! ReLU, then a stride-1 5×5 transposed convolution to 3 channels and `tanh`.
//! `C₀ = base · 2^(log2(S/8))`, so the last hidden layer has `base` channels.

use burn::module::Module;
use burn::nn::conv::{ConvTranspose2d, ConvTranspose2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Initializer, Linear, LinearConfig};
use burn::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::error::Result;
use crate::init::WeightInit;
use crate::layers;
use crate::network::{
    at_most, network_config, network_switches, positive, validate_image_size, MAX_WIDTH,
};
use crate::precision::Precision;
use crate::spectral_norm::{self, SpectralNorm};

/// Side of the first feature map, right after the dense projection (the seed's 8×8).
pub const START_SIZE: usize = 8;

network_config! {
    /// Configuration of a [`Generator`].
    pub struct GeneratorConfig {
        /// Side of the square output image: `8 · 2^k` with `k ≥ 1` (16, 32, 64, 128, 256,
        /// ...).
        pub image_size: usize,
        /// Length of the latent vector `z`.
        #[config(default = 100)]
        pub latent_dim: usize,
        /// Channels of the last hidden layer; every layer before has twice the next one's.
        #[config(default = 64)]
        pub base_channels: usize,
        /// Channels of the output image.
        #[config(default = 3)]
        pub image_channels: usize,
    }
    /// Spectral normalisation of every layer's weight (SAGAN/BigGAN's generator: batch
    /// norm stays).
    spectral_norm;
}

/// One upsampling stage: stride-2 transposed convolution, batch norm, leaky ReLU.
#[derive(Module, Debug)]
pub struct UpBlock<B: Backend> {
    /// Transposed convolution, weight `[c_in, c_out, k, k]`.
    pub conv: ConvTranspose2d<B>,
    /// Batch norm over `c_out` channels.
    pub norm: BatchNorm<B>,
    /// Spectral normalisation of the convolution's weight, if on.
    pub spectral: Option<SpectralNorm<B>>,
}

/// The DCGAN generator. Build it with [`GeneratorConfig::init`].
#[derive(Module, Debug)]
pub struct Generator<B: Backend> {
    /// Dense projection, weight `[latent_dim, 8·8·C₀]`.
    pub project: Linear<B>,
    /// The upsampling stages, from `C₀` channels at 8×8 to `base` channels at S×S.
    pub blocks: Vec<UpBlock<B>>,
    /// Final stride-1 transposed convolution to the image channels, weight `[base, 3, k, k]`.
    pub to_image: ConvTranspose2d<B>,
    /// Spectral normalisation of the projection's weight, if on.
    pub project_spectral: Option<SpectralNorm<B>>,
    /// Spectral normalisation of the last convolution's weight, if on.
    pub to_image_spectral: Option<SpectralNorm<B>>,
    /// Channels of the first feature map, `C₀`.
    pub start_channels: usize,
    /// Negative slope of the leaky ReLUs.
    pub leaky_slope: f64,
    /// Precision of the matrix products ([`Precision::F32`] from `init`; not part of the
    /// record: the parameters are f32 in every precision).
    pub precision: Precision,
    /// Whether the layers run through the flex fast path (the config's `fast_kernels`; not
    /// part of the record).
    pub fast_kernels: bool,
}

impl GeneratorConfig {
    /// Number of stride-2 upsampling stages, `log2(image_size / 8)`.
    pub fn upsamplings(&self) -> usize {
        (self.image_size / START_SIZE).trailing_zeros() as usize
    }

    /// Channels of the first feature map, `base · 2^upsamplings`.
    pub fn start_channels(&self) -> usize {
        self.base_channels << self.upsamplings()
    }

    /// Checks every field; [`GeneratorConfig::init`] calls it first.
    pub fn validate(&self) -> Result<()> {
        const C: &str = "generator";
        validate_image_size(C, self.image_size)?;
        positive(C, "latent_dim", self.latent_dim)?;
        positive(C, "base_channels", self.base_channels)?;
        positive(C, "image_channels", self.image_channels)?;
        self.validate_layers(C)?;
        at_most(C, "base_channels", self.base_channels, MAX_WIDTH)?;
        at_most(C, "latent_dim", self.latent_dim, MAX_WIDTH)?;
        Ok(())
    }

    /// Builds the generator with weights drawn from seed 0 (see [`GeneratorConfig::init_seeded`]).
    pub fn init<B: Backend>(&self, device: &B::Device) -> Result<Generator<B>> {
        self.init_seeded(device, 0)
    }

    /// Builds the generator with weights drawn from `seed`: the same seed gives the same
    /// weights on every backend.
    pub fn init_seeded<B: Backend>(&self, device: &B::Device, seed: u64) -> Result<Generator<B>> {
        self.validate()?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let c0 = self.start_channels();
        let project_out = START_SIZE * START_SIZE * c0;

        let mut project = LinearConfig::new(self.latent_dim, project_out)
            .with_initializer(Initializer::Zeros)
            .init(device);
        project.weight = self
            .init
            .param([self.latent_dim, project_out], &mut rng, device);

        let mut blocks = Vec::with_capacity(self.upsamplings());
        let mut channels = c0;
        for _ in 0..self.upsamplings() {
            let out = channels / 2;
            blocks.push(UpBlock {
                conv: self.conv_transpose(channels, out, 2, &mut rng, device),
                norm: BatchNormConfig::new(out)
                    .with_momentum(self.bn_momentum)
                    .with_epsilon(self.bn_epsilon)
                    .init(device),
                spectral: None,
            });
            channels = out;
        }
        let to_image = self.conv_transpose(channels, self.image_channels, 1, &mut rng, device);
        // The power-iteration vectors are drawn after every weight, so turning spectral
        // norm on does not change the weights a seed gives.
        let on = self.spectral_norm;
        let project_spectral = SpectralNorm::for_weight(on, &project.weight, &mut rng, device);
        for block in &mut blocks {
            block.spectral = SpectralNorm::for_weight(on, &block.conv.weight, &mut rng, device);
        }
        let to_image_spectral = SpectralNorm::for_weight(on, &to_image.weight, &mut rng, device);

        Ok(Generator {
            project,
            blocks,
            to_image,
            project_spectral,
            to_image_spectral,
            start_channels: c0,
            leaky_slope: self.leaky_slope,
            precision: Precision::F32,
            fast_kernels: self.fast_kernels,
        })
    }

    /// A "same"-padded transposed convolution: stride 2 doubles the side, stride 1 keeps it.
    fn conv_transpose<B: Backend>(
        &self,
        channels_in: usize,
        channels_out: usize,
        stride: usize,
        rng: &mut ChaCha8Rng,
        device: &B::Device,
    ) -> ConvTranspose2d<B> {
        let k = self.kernel_size;
        let pad = (k - 1) / 2;
        let mut conv = ConvTranspose2dConfig::new([channels_in, channels_out], [k, k])
            .with_stride([stride, stride])
            .with_padding([pad, pad])
            .with_padding_out([stride - 1, stride - 1])
            .with_initializer(Initializer::Zeros)
            .init(device);
        conv.weight = self
            .init
            .param([channels_in, channels_out, k, k], rng, device);
        conv
    }
}

impl<B: Backend> UpBlock<B> {
    /// `[n, c, h, w]` → `[n, c/2, 2h, 2w]`, computing as `generator` does: its leaky
    /// slope, the transposed convolution in its precision, through the flex fast path if
    /// its `fast_kernels`.
    pub fn forward(&self, x: Tensor<B, 4>, generator: &Generator<B>) -> Tensor<B, 4> {
        let fast = generator.fast_kernels;
        let conv = spectral_norm::normalized(&self.conv, &self.spectral);
        let x = layers::conv_transpose2d(&conv, x, generator.precision, fast);
        layers::batch_norm_leaky_relu(&self.norm, x, generator.leaky_slope, fast)
    }
}

network_switches!(Generator, GeneratorConfig, "generator");

impl<B: Backend> Generator<B> {
    /// Generates images from latent vectors.
    ///
    /// # Shapes
    /// - `z`: `[batch, latent_dim]`
    /// - output: `[batch, 3, image_size, image_size]`, values in [−1, 1]
    ///
    /// In training (an autodiff backend), batch norm uses batch statistics and updates its
    /// running ones; on a plain backend (e.g. after [`burn::module::AutodiffModule::valid`])
    /// it uses the running statistics.
    pub fn forward(&self, z: Tensor<B, 2>) -> Tensor<B, 4> {
        let batch = z.dims()[0];
        let project = spectral_norm::normalized(&self.project, &self.project_spectral);
        let x = layers::dense(&project, z, self.precision).reshape([
            batch,
            self.start_channels,
            START_SIZE,
            START_SIZE,
        ]);
        let fast = self.fast_kernels;
        let mut x = layers::leaky_relu(x, self.leaky_slope, fast);
        for block in &self.blocks {
            x = block.forward(x, self);
        }
        let to_image = spectral_norm::normalized(&self.to_image, &self.to_image_spectral);
        let x = layers::conv_transpose2d(&to_image, x, self.precision, fast);
        layers::tanh_channels_first(x, fast)
    }

    /// Trainable parameters: weights, biases and batch-norm γ, β. (burn's `num_params`
    /// also counts the batch-norm running statistics, which are not trained.)
    pub fn trainable_params(&self) -> usize {
        self.project.num_params()
            + self
                .blocks
                .iter()
                .map(|b| b.conv.num_params() + b.norm.gamma.num_params() + b.norm.beta.num_params())
                .sum::<usize>()
            + self.to_image.num_params()
    }

    /// Length of the latent vector this generator takes.
    pub fn latent_dim(&self) -> usize {
        self.project.weight.dims()[0]
    }

    /// Side of the images this generator makes.
    pub fn image_size(&self) -> usize {
        START_SIZE << self.blocks.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use crate::TestBackend;

    #[test]
    fn outputs_lie_in_tanh_range_and_depend_on_z() {
        let device = Default::default();
        let g = GeneratorConfig::new(16)
            .with_base_channels(4)
            .init::<TestBackend>(&device)
            .unwrap();
        let z = Tensor::<TestBackend, 2>::random(
            [2, 100],
            burn::tensor::Distribution::Uniform(-1.0, 1.0),
            &device,
        );
        let v = g.forward(z).into_data().to_vec::<f32>().unwrap();
        assert!(v.iter().all(|x| (-1.0..=1.0).contains(x)));
        let half = v.len() / 2;
        assert_ne!(v[..half], v[half..]);
    }

    #[test]
    fn invalid_configs_are_typed_errors() {
        let device = Default::default();
        for (config, field) in [
            (GeneratorConfig::new(100), "image_size"),
            (GeneratorConfig::new(8), "image_size"),
            (GeneratorConfig::new(0), "image_size"),
            (GeneratorConfig::new(48), "image_size"),
            (
                GeneratorConfig::new(64).with_base_channels(0),
                "base_channels",
            ),
            (GeneratorConfig::new(64).with_latent_dim(0), "latent_dim"),
            (GeneratorConfig::new(64).with_kernel_size(4), "kernel_size"),
            (
                GeneratorConfig::new(64).with_leaky_slope(f64::NAN),
                "leaky_slope",
            ),
            (
                GeneratorConfig::new(64).with_bn_momentum(0.0),
                "bn_momentum",
            ),
            (
                GeneratorConfig::new(64).with_base_channels(usize::MAX / 4),
                "base_channels",
            ),
        ] {
            match config.init::<TestBackend>(&device) {
                Err(Error::InvalidConfig {
                    field: f,
                    component,
                    ..
                }) => {
                    assert_eq!((f, component), (field, "generator"))
                }
                other => panic!("expected an InvalidConfig error on {field}, got {other:?}"),
            }
        }
    }

    #[test]
    fn same_seed_same_weights_other_seed_other_weights() {
        let device = Default::default();
        let config = GeneratorConfig::new(16).with_base_channels(4);
        let w = |seed| {
            config
                .init_seeded::<TestBackend>(&device, seed)
                .unwrap()
                .project
                .weight
                .val()
                .into_data()
                .to_vec::<f32>()
                .unwrap()
        };
        assert_eq!(w(1), w(1));
        assert_ne!(w(1), w(2));
    }
}
