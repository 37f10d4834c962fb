//! `cats bench`: training and generation throughput on this machine, on one backend or
//! several; with `--parity`, the numerical parity check of every compiled backend against
//! flex instead.

use std::process::ExitCode;

use anyhow::Context;
use burn::tensor::backend::AutodiffBackend;
use catgan::backend::{catch_device_failure, dispatch, BackendKind, BackendTask, DeviceSpec};
use catgan::bench::{markdown_table, run_on, BenchConfig, BenchResult};
use catgan::parity::{capture, compare, parity_table, Capture, ParityConfig, Tolerance};
use dcgan_core::{ModelPreset, Precision};

use crate::Target;

/// Measure img/s of training steps (one D + one G update) and of generation, or (with
/// `--parity`) check that every compiled backend computes what flex computes.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Model preset: tiny32, dcgan64, seed128, seed256 [default: dcgan64; tiny32 with --parity].
    #[arg(long, value_name = "NAME")]
    pub preset: Option<String>,
    /// Width (default: the preset's).
    #[arg(long, value_name = "N")]
    pub base: Option<usize>,
    /// Images per step [default: 32; 4 with --parity].
    #[arg(long, value_name = "N")]
    pub batch_size: Option<usize>,
    /// Timed steps (the median is reported).
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub steps: usize,
    /// Untimed warm-up steps after the first.
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub warmup: usize,
    /// Skip the generator-inference measurement.
    #[arg(long)]
    pub no_inference: bool,
    /// Precision of the networks: f32, or bf16 (mixed precision, f32 master weights; fast
    /// on CUDA tensor cores, emulated and slow on CPU backends) [default: f32].
    #[arg(long, value_name = "P")]
    pub precision: Option<Precision>,
    /// Run flex on burn's own operations instead of its fast path (the networks'
    /// `fast_kernels: false`), to see what the fast path is worth. Other backends have none.
    #[arg(long)]
    pub no_fast_kernels: bool,
    /// Backends to run, comma-separated, or `all` (every compiled one) [default: --backend's;
    /// with --parity: all].
    #[arg(long, value_name = "LIST")]
    pub backends: Option<String>,
    /// Compare forward outputs, losses and gradients of each backend with flex (same
    /// weights and inputs) instead of timing; fails if one is out of tolerance.
    #[arg(long)]
    pub parity: bool,
    /// With --parity: bound on max |x − ref| / max |ref| for every tensor [default: 1e-4 for
    /// one step's tensors, 3e-3 for the metrics after Adam steps; 1e-2 / 3e-2 on cuda].
    #[arg(long, value_name = "X")]
    pub tolerance: Option<f64>,
    /// Data-parallel replicas sharing each step (docs/distributed.md): on a CPU backend
    /// they share the CPU, on a GPU backend devices 0..N. The batch is the global one.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub devices: usize,
    /// Print each result as one JSON object per line, last (with --parity: the reports).
    #[arg(long)]
    pub json: bool,
}

impl BenchArgs {
    fn backends(&self, target: Target, default_all: bool) -> anyhow::Result<Vec<BackendKind>> {
        match self.backends.as_deref() {
            None if default_all => Ok(BackendKind::compiled()),
            None => Ok(vec![target.backend]),
            Some("all") => Ok(BackendKind::compiled()),
            Some(list) => list
                .split(',')
                .map(|name| Ok(BackendKind::parse_compiled(name.trim())?))
                .collect(),
        }
    }

    fn preset(&self, default: ModelPreset) -> anyhow::Result<ModelPreset> {
        match &self.preset {
            Some(name) => Ok(name.parse::<ModelPreset>()?),
            None => Ok(default),
        }
    }
}

/// Runs `cats bench`.
pub fn run(args: &BenchArgs, target: Target) -> anyhow::Result<ExitCode> {
    if args.parity {
        return run_parity(args, target);
    }
    let batch_size = args.batch_size.unwrap_or(32);
    anyhow::ensure!(batch_size > 0, "--batch-size must be at least 1");
    anyhow::ensure!(args.steps > 0, "--steps must be at least 1");
    let config = BenchConfig {
        preset: args.preset(ModelPreset::Dcgan64)?,
        base: args.base,
        batch_size,
        warmup: args.warmup,
        repeats: args.steps,
        inference: !args.no_inference,
        precision: args.precision.unwrap_or_default(),
        fast_kernels: !args.no_fast_kernels,
        devices: args.devices,
    };
    anyhow::ensure!(args.devices > 0, "--devices must be at least 1");
    let mut results: Vec<BenchResult> = Vec::new();
    let mut failed = false;
    for backend in args.backends(target, false)? {
        eprintln!(
            "bench: {} base {} batch {} on {}{} in {} ({} warm-up, {} timed steps)",
            config.preset,
            config.base.unwrap_or(config.preset.default_base()),
            config.batch_size,
            backend,
            match config.devices {
                1 => String::new(),
                n => format!(" ×{n} replicas"),
            },
            config.precision,
            config.warmup,
            config.repeats
        );
        if let Some(note) = catgan::train::precision_note(config.precision, backend) {
            eprintln!("{note}");
        }
        let mut progress = |line: &str| eprintln!("[{backend}] {line}");
        match run_on(backend, target.device, &config, &mut progress) {
            Ok(r) => results.push(r),
            Err(e) => {
                eprintln!("error: {e}");
                failed = true;
            }
        }
    }
    print!("{}", markdown_table(&results));
    if args.json {
        for r in &results {
            println!("{}", serde_json::to_string(r)?);
        }
    }
    if failed {
        anyhow::ensure!(!results.is_empty(), "no backend could run the benchmark");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

struct ParityTask<'a>(&'a ParityConfig);

impl BackendTask for ParityTask<'_> {
    type Output = anyhow::Result<Capture>;

    fn run<B: AutodiffBackend>(self, backend: BackendKind, device: B::Device) -> Self::Output {
        Ok(catch_device_failure(backend, || {
            capture::<B>(self.0, backend.name(), &device)
        })??)
    }
}

/// `cats bench --parity`: every backend against flex, in one run.
fn run_parity(args: &BenchArgs, target: Target) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.precision.is_none(),
        "--parity compares f32 computations with tight tolerances; drop --precision"
    );
    anyhow::ensure!(
        BackendKind::Flex.is_compiled(),
        "--parity compares with flex, which this build lacks: rebuild with --features flex"
    );
    let config = ParityConfig {
        preset: args.preset(ModelPreset::Tiny32)?,
        base: args.base,
        batch_size: args.batch_size.unwrap_or(4),
        ..ParityConfig::tiny()
    };
    anyhow::ensure!(
        config.batch_size >= 2,
        "--batch-size must be at least 2 for --parity (batch norm needs a spread)"
    );
    let backends: Vec<BackendKind> = args
        .backends(target, true)?
        .into_iter()
        .filter(|b| *b != BackendKind::Flex)
        .collect();
    eprintln!(
        "parity: {} base {} batch {}: flex (reference) vs {}",
        config.preset,
        config.base.unwrap_or(config.preset.default_base()),
        config.batch_size,
        if backends.is_empty() {
            "nothing (only flex is compiled: rebuild with e.g. --features ndarray,wgpu)".into()
        } else {
            backends
                .iter()
                .map(|b| b.name())
                .collect::<Vec<_>>()
                .join(", ")
        }
    );
    let run_one = |backend: BackendKind| -> anyhow::Result<Capture> {
        let device = if backend.is_gpu() {
            target.device
        } else {
            DeviceSpec::Default
        };
        let t = std::time::Instant::now();
        let c = dispatch(backend, device, ParityTask(&config))?
            .with_context(|| format!("running the parity step on {backend}"))?;
        eprintln!("[{backend}] captured in {:.1} s", t.elapsed().as_secs_f64());
        Ok(c)
    };
    let reference = run_one(BackendKind::Flex)?;
    let mut reports = Vec::new();
    let mut errors = Vec::new();
    for backend in backends {
        match run_one(backend) {
            Ok(other) => {
                let tolerance = args
                    .tolerance
                    .map(Tolerance::uniform)
                    .unwrap_or_else(|| Tolerance::for_backend(backend.name()));
                reports.push(compare(&reference, &other, tolerance));
            }
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    print!("{}", parity_table(&reports));
    if args.json {
        println!("{}", serde_json::to_string(&reports)?);
    }
    let failures: Vec<String> = reports.iter().flat_map(|r| r.failures()).collect();
    for line in failures.iter().chain(&errors) {
        eprintln!("error: {line}");
    }
    if failures.is_empty() && errors.is_empty() {
        eprintln!("parity: every backend within tolerance");
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("parity: FAILED");
        Ok(ExitCode::FAILURE)
    }
}
