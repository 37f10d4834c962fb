//! `cats bench`: training and generation throughput of one configuration on this machine.

use std::process::ExitCode;

use burn::tensor::backend::AutodiffBackend;
use catgan::backend::{catch_device_failure, dispatch, BackendKind, BackendTask};
use catgan::bench::{markdown_table, run_bench, BenchConfig, BenchResult};
use dcgan_core::ModelPreset;

use crate::Target;

/// Measure img/s of training steps (one D + one G update) and of generation.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Model preset: tiny32, dcgan64, seed128, seed256.
    #[arg(long, default_value = "dcgan64", value_name = "NAME")]
    pub preset: String,
    /// Width (default: the preset's).
    #[arg(long, value_name = "N")]
    pub base: Option<usize>,
    /// Images per step.
    #[arg(long, default_value_t = 32, value_name = "N")]
    pub batch_size: usize,
    /// Timed steps (the median is reported).
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub steps: usize,
    /// Untimed warm-up steps after the first.
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub warmup: usize,
    /// Skip the generator-inference measurement.
    #[arg(long)]
    pub no_inference: bool,
    /// Print the result as one JSON object on the last line.
    #[arg(long)]
    pub json: bool,
}

struct BenchTask(BenchConfig);

impl BackendTask for BenchTask {
    type Output = anyhow::Result<BenchResult>;

    fn run<B: AutodiffBackend>(self, backend: BackendKind, device: B::Device) -> Self::Output {
        let mut progress = |line: &str| eprintln!("[{backend}] {line}");
        Ok(catch_device_failure(backend, || {
            run_bench::<B>(&self.0, backend, &device, &mut progress)
        })??)
    }
}

/// Runs `cats bench`.
pub fn run(args: &BenchArgs, target: Target) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.batch_size > 0, "--batch-size must be at least 1");
    anyhow::ensure!(args.steps > 0, "--steps must be at least 1");
    let config = BenchConfig {
        preset: args.preset.parse::<ModelPreset>()?,
        base: args.base,
        batch_size: args.batch_size,
        warmup: args.warmup,
        repeats: args.steps,
        inference: !args.no_inference,
    };
    eprintln!(
        "bench: {} base {} batch {} on {} ({} warm-up, {} timed steps)",
        config.preset,
        config.base.unwrap_or(config.preset.default_base()),
        config.batch_size,
        target.backend,
        config.warmup,
        config.repeats
    );
    let result = dispatch(target.backend, target.device, BenchTask(config))??;
    print!("{}", markdown_table(std::slice::from_ref(&result)));
    if args.json {
        println!("{}", serde_json::to_string(&result)?);
    }
    Ok(ExitCode::SUCCESS)
}
