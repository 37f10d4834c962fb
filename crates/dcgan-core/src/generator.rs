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

use crate::error::{Error, Result};
use crate::init::WeightInit;
use crate::layers;
use crate::precision::Precision;
use crate::spectral_norm::{self, SpectralNorm};

/// Side of the first feature map, right after the dense projection (the seed's 8×8).
pub const START_SIZE: usize = 8;

/// Configuration of a [`Generator`].
#[derive(Config, Debug, PartialEq)]
pub struct GeneratorConfig {
    /// Side of the square output image: `8 · 2^k` with `k ≥ 1` (16, 32, 64, 128, 256, ...).
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
    /// Side of every (odd-sized) convolution kernel.
    #[config(default = 5)]
    pub kernel_size: usize,
    /// Negative slope of the leaky ReLUs.
    #[config(default = 0.2)]
    pub leaky_slope: f64,
    /// Batch-norm momentum of the running statistics (PyTorch convention: weight of the new batch).
    #[config(default = 0.1)]
    pub bn_momentum: f64,
    /// Batch-norm epsilon.
    #[config(default = 1e-5)]
    pub bn_epsilon: f64,
    /// How weights are drawn.
    #[config(default = "WeightInit::new()")]
    pub init: WeightInit,
    /// Spectral normalisation of every layer's weight (SAGAN/BigGAN's generator: batch
    /// norm stays).
    #[config(default = false)]
    pub spectral_norm: bool,
    /// Run the layers (and the trainer's Adam) through the fast path of the `flex-kernels`
    /// crate on flex (f32, with the `flex` feature): the same numbers as burn's own
    /// operations to float rounding, several times faster. `false` computes with burn's
    /// operations alone (for comparisons); other backends always do. Not part of the
    /// record; configs saved before this field read as `true` (see
    /// [`crate::trainer::upgrade_config_json`]).
    #[config(default = true)]
    pub fast_kernels: bool,
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
        validate_common(
            C,
            self.kernel_size,
            self.leaky_slope,
            self.bn_momentum,
            self.bn_epsilon,
            &self.init,
        )?;
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
        let (mut project_spectral, mut to_image_spectral) = (None, None);
        if self.spectral_norm {
            project_spectral = Some(SpectralNorm::new(self.latent_dim, &mut rng, device));
            for block in &mut blocks {
                let rows = block.conv.weight.dims()[0];
                block.spectral = Some(SpectralNorm::new(rows, &mut rng, device));
            }
            to_image_spectral = Some(SpectralNorm::new(channels, &mut rng, device));
        }

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
    /// `[n, c, h, w]` → `[n, c/2, 2h, 2w]`, the transposed convolution in `precision`,
    /// through the flex fast path if `fast_kernels`.
    pub fn forward(
        &self,
        x: Tensor<B, 4>,
        leaky_slope: f64,
        precision: Precision,
        fast_kernels: bool,
    ) -> Tensor<B, 4> {
        let conv = spectral_norm::normalized(&self.conv, &self.spectral);
        let x = layers::conv_transpose2d(&conv, x, precision, fast_kernels);
        layers::batch_norm_leaky_relu(&self.norm, x, leaky_slope, fast_kernels)
    }
}

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
            x = block.forward(x, self.leaky_slope, self.precision, fast);
        }
        let to_image = spectral_norm::normalized(&self.to_image, &self.to_image_spectral);
        let x = layers::conv_transpose2d(&to_image, x, self.precision, fast);
        layers::tanh_channels_first(x, fast)
    }

    /// The same generator computing in `precision` (see [`crate::precision`]).
    pub fn with_precision(mut self, precision: Precision) -> Self {
        self.precision = precision;
        self
    }

    /// The same generator with the flex fast path on or off (see
    /// [`GeneratorConfig::fast_kernels`]).
    pub fn with_fast_kernels(mut self, fast_kernels: bool) -> Self {
        self.fast_kernels = fast_kernels;
        self
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

/// `8 · 2^k` with `k ≥ 1`.
pub(crate) fn validate_image_size(component: &'static str, size: usize) -> Result<()> {
    let ok = size >= 2 * START_SIZE
        && size.is_multiple_of(START_SIZE)
        && (size / START_SIZE).is_power_of_two();
    if ok && size <= 4096 {
        Ok(())
    } else {
        Err(Error::invalid(
            component,
            "image_size",
            size,
            "must be 8·2^k with k ≥ 1 and at most 4096 (16, 32, 64, 128, 256, ...)",
        ))
    }
}

/// Widths above this are surely a typo (and would overflow the shape arithmetic).
pub(crate) const MAX_WIDTH: usize = 1 << 16;

pub(crate) fn at_most(
    component: &'static str,
    field: &'static str,
    value: usize,
    max: usize,
) -> Result<()> {
    if value > max {
        Err(Error::invalid(
            component,
            field,
            value,
            format!("must be at most {max}"),
        ))
    } else {
        Ok(())
    }
}

pub(crate) fn positive(component: &'static str, field: &'static str, value: usize) -> Result<()> {
    if value == 0 {
        Err(Error::invalid(
            component,
            field,
            value,
            "must be at least 1",
        ))
    } else {
        Ok(())
    }
}

/// Checks shared by both networks.
pub(crate) fn validate_common(
    component: &'static str,
    kernel_size: usize,
    leaky_slope: f64,
    bn_momentum: f64,
    bn_epsilon: f64,
    init: &WeightInit,
) -> Result<()> {
    if kernel_size == 0 || kernel_size.is_multiple_of(2) || kernel_size > 31 {
        return Err(Error::invalid(
            component,
            "kernel_size",
            kernel_size,
            "must be odd (\"same\" padding is symmetric) and at most 31",
        ));
    }
    if !(leaky_slope.is_finite() && (0.0..1.0).contains(&leaky_slope)) {
        return Err(Error::invalid(
            component,
            "leaky_slope",
            leaky_slope,
            "must be in [0, 1)",
        ));
    }
    if !(bn_momentum > 0.0 && bn_momentum <= 1.0) {
        return Err(Error::invalid(
            component,
            "bn_momentum",
            bn_momentum,
            "must be in (0, 1]",
        ));
    }
    if !(bn_epsilon > 0.0 && bn_epsilon.is_finite()) {
        return Err(Error::invalid(
            component,
            "bn_epsilon",
            bn_epsilon,
            "must be positive",
        ));
    }
    if !(init.std > 0.0 && init.std.is_finite()) {
        return Err(Error::invalid(
            component,
            "init.std",
            init.std,
            "must be positive",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TestBackend;

    #[test]
    fn output_shape_for_every_supported_size() {
        let device = Default::default();
        for size in [16, 32, 64] {
            let g = GeneratorConfig::new(size)
                .with_base_channels(4)
                .with_latent_dim(7)
                .init::<TestBackend>(&device)
                .unwrap();
            let z = Tensor::<TestBackend, 2>::zeros([2, 7], &device);
            // 8·8 → log2(size/8) doublings → size.
            assert_eq!(g.forward(z).dims(), [2, 3, size, size]);
            assert_eq!(g.image_size(), size);
            assert_eq!(g.latent_dim(), 7);
        }
    }

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
