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
use catgan::bench::{
    default_skip, machine_info, markdown_table, parse_list, run_on, settle_before_run, BenchConfig,
    ConfigSpec,
};

struct Args {
    backends: Option<Vec<BackendKind>>,
    configs: Vec<ConfigSpec>,
    batch_sizes: Vec<usize>,
    steps: usize,
    warmup: usize,
    inference: bool,
    device: DeviceSpec,
    json: Option<std::path::PathBuf>,
    wait_quiet: u64,
}

const USAGE: &str = "usage: cargo bench --bench throughput -- [--backends LIST] \
[--presets preset[:base[:batch]],...] [--batch-sizes 16,32] [--steps N] [--warmup N] \
[--no-inference] [--device SPEC] [--wait-quiet SECONDS] [--json FILE]";

fn parse() -> Result<Args, String> {
    let mut args = Args {
        backends: None,
        configs: parse_list("dcgan64:16:16,dcgan64:32:32,seed128:16:16")?,
        batch_sizes: vec![16],
        steps: 10,
        warmup: 2,
        inference: true,
        device: DeviceSpec::Default,
        json: None,
        wait_quiet: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value\n{USAGE}"));
        match flag.as_str() {
            "--backends" => {
                let list = value()?;
                args.backends = Some(if list == "all" {
                    BackendKind::compiled()
                } else {
                    list.split(',')
                        .map(|b| BackendKind::parse_compiled(b.trim()).map_err(|e| e.to_string()))
                        .collect::<Result<_, _>>()?
                });
            }
            "--presets" | "--configs" => args.configs = parse_list(&value()?)?,
            "--batch-sizes" => args.batch_sizes = parse_list(&value()?)?,
            "--steps" => args.steps = value()?.parse().map_err(|_| "bad --steps")?,
            "--warmup" => args.warmup = value()?.parse().map_err(|_| "bad --warmup")?,
            "--no-inference" => args.inference = false,
            "--device" => args.device = value()?.parse()?,
            "--json" => args.json = Some(value()?.into()),
            "--wait-quiet" => args.wait_quiet = value()?.parse().map_err(|_| "bad --wait-quiet")?,
            "--bench" => {} // added by `cargo bench`
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown flag `{other}`\n{USAGE}")),
        }
    }
    if args.steps == 0 || args.batch_sizes.contains(&0) {
        return Err("--steps and --batch-sizes must be positive".into());
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let machine = machine_info();
    let explicit = args.backends.is_some();
    let backends = args.backends.unwrap_or_else(BackendKind::compiled);
    let configs = ConfigSpec::expand(&args.configs, &args.batch_sizes);
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
        args.warmup,
        args.steps
    );
    let mut results = Vec::new();
    let mut failures = Vec::new();
    for (i, (backend, spec)) in jobs.iter().enumerate() {
        if !backend.is_gpu() {
            settle_before_run(args.wait_quiet);
        }
        eprintln!("[{}/{}] {backend} {spec}", i + 1, jobs.len());
        let config = BenchConfig {
            preset: spec.preset,
            base: spec.base,
            batch_size: spec.batch_size.unwrap_or(16),
            warmup: args.warmup,
            repeats: args.steps,
            inference: args.inference,
        };
        let mut progress = |line: &str| eprintln!("  [{backend} {spec}] {line}");
        match run_on(*backend, args.device, &config, &mut progress) {
            Ok(r) => {
                eprintln!(
                    "  => {:.1} train img/s, first step {:.2} s",
                    r.train_img_per_s, r.first_step_s
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
        args.steps,
        args.warmup
    );
    print!("{}", markdown_table(&results));
    if let Some(path) = &args.json {
        let doc =
            serde_json::json!({ "machine": machine, "results": results, "failures": failures });
        if let Err(e) = std::fs::write(path, serde_json::to_string_pretty(&doc).unwrap()) {
            eprintln!("cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
        eprintln!("wrote {}", path.display());
    }
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        for f in &failures {
            eprintln!("failed: {f}");
        }
        ExitCode::FAILURE
    }
}
