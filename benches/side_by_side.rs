//! PyTorch and catgan side by side: per config, the PyTorch reference
//! (`benches/reference/torch_dcgan.py`, the same layers, losses, optimizers and step) and our
//! bench run back to back on this machine, then a table of img/s and ours/PyTorch ratios.
//!
//! ```text
//! cargo bench --bench side_by_side -- [--configs dcgan64:16:16,dcgan64:32:32,seed128:16:16] \
//!     [--backend flex] [--steps 10] [--warmup 2] [--rounds 1] [--threads N] \
//!     [--python python3] [--no-inference] [--json FILE]
//! ```
//! `--configs` takes `preset:base:batch`. PyTorch gets `torch.set_num_threads(N)` with N the
//! threads our CPU backends use (`RAYON_NUM_THREADS`, else every core) unless `--threads` is
//! given. With `--rounds R` each config runs R times (PyTorch, ours, PyTorch, ours, ...) and
//! the medians are compared, which evens out a noisy machine; `--wait-quiet S` waits before
//! each run (at most S seconds) until other programs use under 10% of the CPUs. If `python3 -c 'import torch'`
//! fails it says so and stops (exit code 2): `pip install torch`.

use std::path::PathBuf;
use std::process::ExitCode;

use catgan::backend::{BackendKind, DeviceSpec};
use catgan::bench::{
    cpu_threads, machine_info, median_result, median_torch, parse_list, ratio_table, run_on,
    run_torch, settle_before_run, torch_check, BenchConfig, ConfigSpec, SideBySide,
};

struct Args {
    configs: Vec<ConfigSpec>,
    backend: BackendKind,
    steps: usize,
    warmup: usize,
    rounds: usize,
    threads: usize,
    python: String,
    inference: bool,
    json: Option<PathBuf>,
    wait_quiet: u64,
}

const USAGE: &str = "usage: cargo bench --bench side_by_side -- [--configs preset:base:batch,...] \
[--backend flex] [--steps N] [--warmup N] [--rounds N] [--threads N] [--python python3] \
[--no-inference] [--wait-quiet SECONDS] [--json FILE]";

fn parse() -> Result<Args, String> {
    let mut args = Args {
        configs: parse_list("dcgan64:16:16,dcgan64:32:32,seed128:16:16")?,
        backend: BackendKind::Flex,
        steps: 10,
        warmup: 2,
        rounds: 1,
        threads: cpu_threads(),
        python: std::env::var("PYTHON").unwrap_or_else(|_| "python3".into()),
        inference: true,
        json: None,
        wait_quiet: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value\n{USAGE}"));
        match flag.as_str() {
            "--configs" | "--presets" => args.configs = parse_list(&value()?)?,
            "--backend" => {
                args.backend = BackendKind::parse_compiled(&value()?).map_err(|e| e.to_string())?
            }
            "--steps" => args.steps = value()?.parse().map_err(|_| "bad --steps")?,
            "--warmup" => args.warmup = value()?.parse().map_err(|_| "bad --warmup")?,
            "--rounds" => args.rounds = value()?.parse().map_err(|_| "bad --rounds")?,
            "--threads" => args.threads = value()?.parse().map_err(|_| "bad --threads")?,
            "--python" => args.python = value()?,
            "--no-inference" => args.inference = false,
            "--json" => args.json = Some(value()?.into()),
            "--wait-quiet" => args.wait_quiet = value()?.parse().map_err(|_| "bad --wait-quiet")?,
            "--bench" => {} // added by `cargo bench`
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown flag `{other}`\n{USAGE}")),
        }
    }
    if args.steps == 0 || args.rounds == 0 || args.threads == 0 {
        return Err("--steps, --rounds and --threads must be positive".into());
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
    let torch_version = match torch_check(&args.python) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("side_by_side: {e}");
            eprintln!(
                "(our own figures alone: cargo bench --bench throughput -- --presets {})",
                args.configs
                    .iter()
                    .map(|c| c.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            );
            return ExitCode::from(2);
        }
    };
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/reference/torch_dcgan.py");
    let machine = machine_info();
    eprintln!(
        "side_by_side: {} vs PyTorch {torch_version} on {} (torch.set_num_threads({}); ours: {} rayon threads), \
         load {:.2}, commit {}, {} round(s) of {} warm-up + {} timed steps",
        args.backend,
        machine.cpu,
        args.threads,
        machine.threads,
        machine.load_average.unwrap_or(f64::NAN),
        machine.commit.as_deref().unwrap_or("?"),
        args.rounds,
        args.warmup,
        args.steps
    );
    let busy = machine
        .load_average
        .is_some_and(|load| load > machine.threads as f64 + 0.5);
    if busy {
        eprintln!(
            "warning: load average {:.1} on {} threads: other programs are running. PyTorch's \
             OpenMP threads spin-wait for each other and collapse on a shared core (measured \
             here: 6.7 img/s at 2 threads vs 30 at 1 thread, dcgan64:32:32), so the ratios \
             will flatter us. Measure on a quiet machine, or compare per core with \
             RAYON_NUM_THREADS=1 (PyTorch then gets 1 thread too).",
            machine.load_average.unwrap_or(0.0),
            machine.threads
        );
    }
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    for spec in &args.configs {
        let config = BenchConfig {
            preset: spec.preset,
            base: spec.base,
            batch_size: spec.batch_size.unwrap_or(16),
            warmup: args.warmup,
            repeats: args.steps,
            inference: args.inference,
        };
        let mut ours = Vec::new();
        let mut torch = Vec::new();
        for round in 1..=args.rounds {
            settle_before_run(args.wait_quiet);
            eprintln!("[{spec} round {round}/{}] PyTorch", args.rounds);
            let mut progress = |line: &str| eprintln!("  {line}");
            match run_torch(
                &args.python,
                &script,
                &config,
                args.threads,
                &[],
                &mut progress,
            ) {
                Ok(t) => {
                    eprintln!("  => PyTorch {:.1} train img/s", t.train_img_per_s);
                    torch.push(t);
                }
                Err(e) => failures.push(format!("PyTorch {spec}: {e}")),
            }
            settle_before_run(args.wait_quiet);
            eprintln!("[{spec} round {round}/{}] {}", args.rounds, args.backend);
            let mut progress = |line: &str| eprintln!("  [{}] {line}", args.backend);
            match run_on(args.backend, DeviceSpec::Default, &config, &mut progress) {
                Ok(r) => {
                    eprintln!("  => {} {:.1} train img/s", args.backend, r.train_img_per_s);
                    ours.push(r);
                }
                Err(e) => failures.push(format!("{} {spec}: {e}", args.backend)),
            }
        }
        if let Some(ours) = median_result(&ours) {
            rows.push(SideBySide {
                ours,
                torch: median_torch(&torch),
                rounds: args.rounds,
            });
        }
    }
    println!(
        "\n{} · ours: {} ({} threads) · PyTorch {torch_version} ({} threads, fp32) · commit {} · {} · \
         median of {} timed steps, {} round(s)\n",
        machine.cpu,
        args.backend,
        machine.threads,
        args.threads,
        machine.commit.as_deref().unwrap_or("?"),
        machine.date,
        args.steps,
        args.rounds
    );
    print!("{}", ratio_table(&rows));
    if busy {
        println!(
            "\nwarning: measured on a busy machine (load {:.1} on {} threads): see stderr.",
            machine.load_average.unwrap_or(0.0),
            machine.threads
        );
    }
    if let Some(path) = &args.json {
        let doc = serde_json::json!({
            "machine": machine,
            "busy": busy,
            "torch_version": torch_version,
            "torch_threads": args.threads,
            "rows": rows,
            "failures": failures,
        });
        if let Err(e) = std::fs::write(path, serde_json::to_string_pretty(&doc).unwrap()) {
            eprintln!("cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
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
