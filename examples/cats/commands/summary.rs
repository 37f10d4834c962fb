//! `cats summary`: Keras-style tables of a preset's two networks.

use std::process::ExitCode;

use burn::tensor::backend::AutodiffBackend;
use catgan::backend::{dispatch, BackendKind, BackendTask, DeviceSpec};
use dcgan_core::summary::{discriminator_summary, generator_summary, thousands, ModelSummary};
use dcgan_core::ModelPreset;

use crate::Target;

/// Print layer-by-layer summaries (output shapes, parameter counts) of a preset.
#[derive(Debug, clap::Args)]
pub struct SummaryArgs {
    /// Preset: tiny32, dcgan64, seed128, seed256.
    #[arg(long, default_value = "seed128", value_name = "NAME")]
    pub preset: String,
    /// Width (default: the preset's own).
    #[arg(long, value_name = "N")]
    pub base: Option<usize>,
}

struct SummaryTask(ModelPreset, Option<usize>);

impl BackendTask for SummaryTask {
    type Output = dcgan_core::Result<(ModelSummary, ModelSummary)>;

    fn run<B: AutodiffBackend>(self, _: BackendKind, device: B::Device) -> Self::Output {
        let (g, d) = self.0.configs(self.1);
        let generator = g.init::<B::InnerBackend>(&device)?;
        let discriminator = d.init::<B::InnerBackend>(&device)?;
        Ok((
            generator_summary(&generator),
            discriminator_summary(&discriminator, d.image_size),
        ))
    }
}

/// Builds the preset's models (on the CPU when a CPU backend is compiled) and prints their
/// summaries.
pub fn run(args: &SummaryArgs, target: Target) -> anyhow::Result<ExitCode> {
    let preset: ModelPreset = args.preset.parse()?;
    let cpu = [BackendKind::Flex, BackendKind::NdArray]
        .into_iter()
        .find(|b| b.is_compiled());
    let (backend, device) = match cpu {
        Some(cpu) => (cpu, DeviceSpec::Default),
        None => (target.backend, target.device),
    };
    let (gs, ds) = dispatch(backend, device, SummaryTask(preset, args.base))??;
    let base = args.base.unwrap_or(preset.default_base());
    println!(
        "Preset {preset}: {0}×{0} images, base {base}\n",
        preset.image_size()
    );
    println!("{gs}\n");
    println!("{ds}\n");
    println!(
        "Both networks: {} trainable parameters",
        thousands(gs.trainable_params + ds.trainable_params)
    );
    Ok(ExitCode::SUCCESS)
}
