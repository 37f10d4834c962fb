//! Training and generation throughput of every compiled backend over a grid of configs.
//!
//! ```text
//! cargo bench --bench throughput -- [--backends flex,ndarray,wgpu] \
//!     [--presets dcgan64:16:16,dcgan64:32:32,seed128:16:16] [--batch-sizes 16,32] \
//!     [--steps 10] [--warmup 2] [--no-inference] [--device default] [--json FILE]
//! cargo bench --features ndarray,wgpu --bench throughput -- --backends ndarray,wgpu --presets tiny32:8:8
//! ```
//! `--presets` takes `preset[:base[:batch]]`; entries without a batch are run at each of
//! `--batch-sizes`. Without `--backends`, every compiled backend runs, except ndarray on
//! anything bigger than a toy model (it is ~19× slower than flex): name it to run it.
//! Prints per-step progress on stderr and a Markdown table on stdout; `--json` also writes
//! the machine info and every result to a file. `--wait-quiet S` waits before each CPU run
//! (at most S seconds) until other programs use under 10% of the CPUs.

use std::process::ExitCode;

use catgan::backend::{BackendKind, DeviceSpec};
use catgan::bench::{markdown_table, run_on};
use catgan_devtools::flags::{compiled_backend, default_skip, positive, BenchFlags, ConfigSpec};
use catgan_devtools::machine::{machine_info, settle_before_run};
use catgan_devtools::report::{exit_code, parse_args, write_json};
use clap::Parser;

/// Training and generation throughput of every compiled backend over a grid of configs.
#[derive(Debug, Parser)]
struct Args {
    #[command(flatten)]
    common: BenchFlags,
    /// Backends, comma-separated, or `all` [default: every compiled one, ndarray only on toy
    /// models].
    #[arg(long, value_name = "LIST")]
    backends: Option<String>,
    /// Batch sizes for the configs that name none.
    #[arg(long, value_delimiter = ',', default_value = "16", value_parser = positive, value_name = "LIST")]
    batch_sizes: Vec<usize>,
    /// Device of the GPU backends: default, N, integrated:N.
    #[arg(long, default_value = "default", value_name = "SPEC")]
    device: DeviceSpec,
}

fn main() -> ExitCode {
    let args: Args = parse_args("throughput");
    // As `cats` does (`--default-malloc` keeps glibc's defaults).
    catgan::memory::reuse_large_allocations(!args.common.default_malloc);
    let backends = match args.backends.as_deref() {
        None => None,
        Some("all") => Some(BackendKind::compiled()),
        Some(list) => match list.split(',').map(compiled_backend).collect() {
            Ok(kinds) => Some(kinds),
            Err(e) => {
                eprintln!("--backends: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    let explicit = backends.is_some();
    let backends = backends.unwrap_or_else(BackendKind::compiled);
    // As `cats` does, when every backend measured runs on the CPU.
    if backends.iter().all(|b| !b.is_gpu()) {
        catgan::backend::join_global_pool(BackendKind::Flex);
    }
    let machine = machine_info();
    let configs = ConfigSpec::expand(&args.common.configs, &args.batch_sizes);
    let jobs: Vec<(BackendKind, ConfigSpec)> = configs
        .iter()
        .flat_map(|c| backends.iter().map(move |b| (*b, *c)))
        .filter(|(b, c)| match default_skip(*b, c) {
            Some(why) if !explicit => {
                eprintln!("{why}");
                false
            }
            _ => true,
        })
        .collect();
    eprintln!(
        "throughput: {} runs on {} ({} threads, load {:.2}), commit {}, {} warm-up + {} timed steps each",
        jobs.len(),
        machine.cpu,
        machine.threads,
        machine.load_average.unwrap_or(f64::NAN),
        machine.commit.as_deref().unwrap_or("?"),
        args.common.warmup,
        args.common.steps
    );
    let mut results = Vec::new();
    let mut failures = Vec::new();
    for (i, (backend, spec)) in jobs.iter().enumerate() {
        if !backend.is_gpu() {
            settle_before_run(args.common.wait_quiet);
        }
        eprintln!("[{}/{}] {backend} {spec}", i + 1, jobs.len());
        let config = args.common.config(spec);
        let mut progress = |line: &str| eprintln!("  [{backend} {spec}] {line}");
        match run_on(*backend, args.device, &config, &mut progress) {
            Ok(r) => {
                eprintln!(
                    "  => {:.1} train img/s, first step {:.2} s",
                    r.timings.train_img_per_s, r.timings.first_step_s
                );
                results.push(r);
            }
            Err(e) => {
                eprintln!("  => failed: {e}");
                failures.push(format!("{backend} {spec}: {e}"));
            }
        }
    }
    println!(
        "\n{} · {} threads · commit {} · {} · {} timed steps (median), {} warm-up\n",
        machine.cpu,
        machine.threads,
        machine.commit.as_deref().unwrap_or("?"),
        machine.date,
        args.common.steps,
        args.common.warmup
    );
    print!("{}", markdown_table(&results));
    if let Some(path) = &args.common.json {
        let doc =
            serde_json::json!({ "machine": machine, "results": results, "failures": failures });
        if let Err(code) = write_json(path, &doc) {
            return code;
        }
        eprintln!("wrote {}", path.display());
    }
    exit_code(&failures)
}
