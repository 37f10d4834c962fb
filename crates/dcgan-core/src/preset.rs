//! Named model presets: the seed's 128 px model and its 64 px and 256 px relatives.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::discriminator::DiscriminatorConfig;
use crate::error::Error;
use crate::generator::GeneratorConfig;

/// A named pair of generator and discriminator configs.
///
/// `base` (the discriminator's first width, the generator's last) defaults to 64, the
/// seed's value; [`ModelPreset::configs`] takes another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelPreset {
    /// 32×32 with base 8: a toy for smoke tests and `--dry-run`.
    Tiny32,
    /// 64×64, PyTorch DCGAN style: discriminator strides 2 down to 4×4, no batch norm on its
    /// first layer (the layers of `torch_dcgan.py` at 64 px).
    Dcgan64,
    /// The article's 128×128 model, layer for layer: discriminator strides 2, 2, 2, 1, 2 with
    /// batch norm after every convolution. 24,034,819 + 17,484,289 trainable parameters.
    Seed128,
    /// 256×256 in the seed's family: stride-2 convolutions down to 8×8, batch norm on every
    /// discriminator layer.
    Seed256,
}

impl ModelPreset {
    /// Every preset, in size order.
    pub const ALL: [ModelPreset; 4] = [
        ModelPreset::Tiny32,
        ModelPreset::Dcgan64,
        ModelPreset::Seed128,
        ModelPreset::Seed256,
    ];

    /// The name used on the command line and in config files.
    pub fn name(&self) -> &'static str {
        match self {
            ModelPreset::Tiny32 => "tiny32",
            ModelPreset::Dcgan64 => "dcgan64",
            ModelPreset::Seed128 => "seed128",
            ModelPreset::Seed256 => "seed256",
        }
    }

    /// Side of the images.
    pub fn image_size(&self) -> usize {
        match self {
            ModelPreset::Tiny32 => 32,
            ModelPreset::Dcgan64 => 64,
            ModelPreset::Seed128 => 128,
            ModelPreset::Seed256 => 256,
        }
    }

    /// The preset's own base width.
    pub fn default_base(&self) -> usize {
        match self {
            ModelPreset::Tiny32 => 8,
            _ => 64,
        }
    }

    /// Generator and discriminator configs with the given base width (or the preset's).
    pub fn configs(&self, base: Option<usize>) -> (GeneratorConfig, DiscriminatorConfig) {
        let base = base.unwrap_or(self.default_base());
        let size = self.image_size();
        let generator = GeneratorConfig::new(size).with_base_channels(base);
        let discriminator = DiscriminatorConfig::new(size).with_base_channels(base);
        let discriminator = match self {
            ModelPreset::Tiny32 | ModelPreset::Dcgan64 => discriminator,
            ModelPreset::Seed128 => discriminator
                .with_strides(vec![2, 2, 2, 1, 2])
                .with_first_batch_norm(true),
            ModelPreset::Seed256 => discriminator
                .with_strides(vec![2, 2, 2, 2, 2])
                .with_first_batch_norm(true),
        };
        (generator, discriminator)
    }
}

impl fmt::Display for ModelPreset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ModelPreset {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self, Error> {
        ModelPreset::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(name))
            .ok_or_else(|| Error::UnknownPreset {
                name: name.to_string(),
                expected: ModelPreset::ALL.map(|p| p.name()).join(", "),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Discriminator, Generator, TestBackend};

    #[test]
    fn seed128_has_the_articles_exact_parameter_counts() {
        let device = Default::default();
        let (g, d) = ModelPreset::Seed128.configs(None);
        let g: Generator<TestBackend> = g.init(&device).unwrap();
        let d: Discriminator<TestBackend> = d.init(&device).unwrap();
        assert_eq!(g.trainable_params(), 24_034_819);
        assert_eq!(d.trainable_params(), 17_484_289);
    }

    #[test]
    fn every_preset_builds_and_has_consistent_shapes() {
        for preset in ModelPreset::ALL {
            // A narrow base keeps this cheap; the layer structure is the preset's.
            let (g, d) = preset.configs(Some(2));
            g.validate().unwrap();
            d.validate().unwrap();
            assert_eq!(g.image_size, preset.image_size());
            assert_eq!(d.image_size, preset.image_size());
        }
    }

    #[test]
    fn every_preset_forward_has_the_right_shapes() {
        let device = Default::default();
        for preset in ModelPreset::ALL {
            let (g, d) = preset.configs(Some(2));
            let g: Generator<TestBackend> = g.init(&device).unwrap();
            let d: Discriminator<TestBackend> = d.init(&device).unwrap();
            let z = burn::tensor::Tensor::zeros([2, 100], &device);
            let images = g.forward(z);
            let size = preset.image_size();
            assert_eq!(images.dims(), [2, 3, size, size], "{preset}");
            assert_eq!(d.forward(images).dims(), [2, 1], "{preset}");
        }
    }

    #[test]
    fn names_round_trip_and_unknown_names_list_the_choices() {
        for preset in ModelPreset::ALL {
            assert_eq!(preset.name().parse::<ModelPreset>().unwrap(), preset);
        }
        let err = "seed64".parse::<ModelPreset>().unwrap_err().to_string();
        assert!(
            err.contains("seed64") && err.contains("dcgan64, seed128"),
            "{err}"
        );
    }
}
