//! Keras-style model summaries: one row per layer with its output shape and parameters.

use std::fmt;

use burn::module::Module;
use burn::nn::BatchNorm;
use burn::prelude::*;

use crate::discriminator::Discriminator;
use crate::generator::{Generator, START_SIZE};

/// One layer of a [`ModelSummary`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SummaryRow {
    /// Layer name and type, e.g. `up1.conv (ConvTranspose2d)`.
    pub layer: String,
    /// Output shape per example (the batch dimension is left out).
    pub output_shape: Vec<usize>,
    /// Trainable parameters of this layer.
    pub params: usize,
}

/// A table of layers, output shapes and parameter counts, with totals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSummary {
    /// The model's name ("generator", "discriminator").
    pub name: String,
    /// One row per layer, input to output.
    pub rows: Vec<SummaryRow>,
    /// Trainable parameters (weights, biases, batch-norm γ and β).
    pub trainable_params: usize,
    /// Non-trainable values: batch-norm running means and variances.
    pub non_trainable_params: usize,
}

struct Builder {
    rows: Vec<SummaryRow>,
    non_trainable: usize,
}

impl Builder {
    fn row(&mut self, layer: impl Into<String>, shape: &[usize], params: usize) {
        self.rows.push(SummaryRow {
            layer: layer.into(),
            output_shape: shape.to_vec(),
            params,
        });
    }

    fn norm<B: Backend>(&mut self, name: String, norm: &BatchNorm<B>, shape: &[usize]) {
        self.non_trainable += 2 * shape[0];
        let trainable = norm.gamma.num_params() + norm.beta.num_params();
        self.row(format!("{name} (BatchNorm)"), shape, trainable);
    }

    fn finish(self, name: &str, trainable_params: usize) -> ModelSummary {
        ModelSummary {
            name: name.into(),
            rows: self.rows,
            trainable_params,
            non_trainable_params: self.non_trainable,
        }
    }
}

/// Summarises a generator.
pub fn generator_summary<B: Backend>(generator: &Generator<B>) -> ModelSummary {
    let mut s = Builder {
        rows: Vec::new(),
        non_trainable: 0,
    };
    let mut channels = generator.start_channels;
    let mut side = START_SIZE;
    s.row(
        "project (Linear)",
        &[channels * side * side],
        generator.project.num_params(),
    );
    s.row("reshape", &[channels, side, side], 0);
    s.row("leaky_relu", &[channels, side, side], 0);
    for (i, block) in generator.blocks.iter().enumerate() {
        channels = block.conv.channels[1];
        side *= 2;
        let shape = [channels, side, side];
        s.row(
            format!("up{}.conv (ConvTranspose2d)", i + 1),
            &shape,
            block.conv.num_params(),
        );
        s.norm(format!("up{}.norm", i + 1), &block.norm, &shape);
        s.row("leaky_relu", &shape, 0);
    }
    let shape = [generator.to_image.channels[1], side, side];
    s.row(
        "to_image (ConvTranspose2d)",
        &shape,
        generator.to_image.num_params(),
    );
    s.row("tanh", &shape, 0);
    s.finish("generator", generator.trainable_params())
}

/// Summarises a discriminator for images of side `image_size`.
pub fn discriminator_summary<B: Backend>(
    discriminator: &Discriminator<B>,
    image_size: usize,
) -> ModelSummary {
    let mut s = Builder {
        rows: Vec::new(),
        non_trainable: 0,
    };
    let mut side = image_size;
    let mut channels = 0;
    for (i, block) in discriminator.blocks.iter().enumerate() {
        channels = block.conv.weight.dims()[0];
        side /= block.conv.stride[0];
        let shape = [channels, side, side];
        s.row(
            format!("down{}.conv (Conv2d)", i + 1),
            &shape,
            block.conv.num_params(),
        );
        if let Some(norm) = &block.norm {
            s.norm(format!("down{}.norm", i + 1), norm, &shape);
        }
        s.row("leaky_relu", &shape, 0);
    }
    s.row("flatten", &[channels * side * side], 0);
    s.row(
        "classify (Linear)",
        &[1],
        discriminator.classify.num_params(),
    );
    s.finish("discriminator", discriminator.trainable_params())
}

/// `1234567` → `1,234,567`.
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

impl fmt::Display for ModelSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shape = |s: &[usize]| {
            let inner: Vec<String> = s.iter().map(|d| d.to_string()).collect();
            format!("(None, {})", inner.join(", "))
        };
        let w_layer = self
            .rows
            .iter()
            .map(|r| r.layer.len())
            .max()
            .unwrap_or(0)
            .max(12)
            + 2;
        let w_shape = self
            .rows
            .iter()
            .map(|r| shape(&r.output_shape).len())
            .max()
            .unwrap_or(0)
            .max(12)
            + 2;
        let w_params = 12;
        let width = w_layer + w_shape + w_params;
        writeln!(f, "Model: \"{}\"", self.name)?;
        writeln!(f, "{}", "─".repeat(width))?;
        writeln!(
            f,
            "{:<w_layer$}{:<w_shape$}{:>w_params$}",
            "Layer (type)", "Output Shape", "Param #"
        )?;
        writeln!(f, "{}", "═".repeat(width))?;
        for row in &self.rows {
            writeln!(
                f,
                "{:<w_layer$}{:<w_shape$}{:>w_params$}",
                row.layer,
                shape(&row.output_shape),
                thousands(row.params)
            )?;
        }
        writeln!(f, "{}", "═".repeat(width))?;
        writeln!(
            f,
            "Total params: {}",
            thousands(self.trainable_params + self.non_trainable_params)
        )?;
        writeln!(f, "Trainable params: {}", thousands(self.trainable_params))?;
        writeln!(
            f,
            "Non-trainable params: {} (batch-norm running statistics)",
            thousands(self.non_trainable_params)
        )?;
        write!(f, "{}", "─".repeat(width))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ModelPreset, TestBackend};

    #[test]
    fn seed128_summary_rows_add_up_to_the_exact_counts() {
        let device = Default::default();
        let (g, d) = ModelPreset::Seed128.configs(None);
        let g: Generator<TestBackend> = g.init(&device).unwrap();
        let d: Discriminator<TestBackend> = d.init(&device).unwrap();
        let gs = generator_summary(&g);
        let ds = discriminator_summary(&d, 128);
        assert_eq!(gs.rows.iter().map(|r| r.params).sum::<usize>(), 24_034_819);
        assert_eq!(ds.rows.iter().map(|r| r.params).sum::<usize>(), 17_484_289);
        assert_eq!(gs.trainable_params, 24_034_819);
        assert_eq!(ds.trainable_params, 17_484_289);
        // Running mean+var of 512+256+128+64 generator channels.
        assert_eq!(gs.non_trainable_params, 2 * (512 + 256 + 128 + 64));
        assert_eq!(gs.rows.last().unwrap().output_shape, vec![3, 128, 128]);
        assert_eq!(
            ds.rows
                .iter()
                .find(|r| r.layer == "flatten")
                .unwrap()
                .output_shape,
            vec![8 * 8 * 1024]
        );
        let text = gs.to_string();
        assert!(text.contains("Trainable params: 24,034,819"), "{text}");
        assert!(
            text.contains("up1.conv (ConvTranspose2d)") && text.contains("(None, 512, 16, 16)")
        );
        assert!(ds.to_string().contains("Trainable params: 17,484,289"));
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(24034819), "24,034,819");
    }
}
