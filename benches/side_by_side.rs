//! PyTorch and catgan side by side: per config, the PyTorch reference
//! (`benches/reference/torch_dcgan.py`, the same layers, losses, optimizers and step) and our
//! bench run back to back on this machine, then a table of img/s and ours/PyTorch ratios.
//!
//! ```text
//! cargo bench --bench side_by_side -- [--configs dcgan64:16:16,dcgan64:32:32,seed128:16:16,seed128:64:64] \
//!     [--backend flex] [--steps 10] [--warmup 2] [--rounds 1] [--lockstep] [--threads N] \
//!     [--python python3] [--no-inference] [--json FILE]
//! ```
//! `--configs` takes `preset:base:batch`. PyTorch gets `torch.set_num_threads(N)` with N the
//! threads our CPU backends use (`RAYON_NUM_THREADS`, else every core) unless `--threads` is
//! given. With `--rounds R` each config runs R times (PyTorch, ours, PyTorch, ours, ...) and
//! the medians are compared, which evens out a noisy machine; with `--lockstep` the two
//! also alternate step by step within a round (a PyTorch step, one of ours, ...) and a
//! further table gives the median over all step pairs of PyTorch's time over ours, which a
//! machine whose speed drifts over seconds or minutes moves far less; `--wait-quiet S` waits before
//! each run (at most S seconds) until other programs use under 10% of the CPUs. If
//! `python3 -c 'import torch'` fails it says so and stops (exit code 2): `pip install torch`.
//! A second table sets both against the machine: achieved GFLOP/s (the same count of a
//! step's useful work for both, `dcgan_core::ArithmeticCost`) as a share of the CPU's fp32
//! peak (measured with an FMA loop on every thread, since a virtual machine's reported
//! clock understates its turbo; else estimated from `/proc/cpuinfo`; or `--peak-gflops`),
//! and each side's peak resident memory during its training steps.
//! `--help` lists every flag.

use std::path::PathBuf;
use std::process::ExitCode;

use catgan::backend::{BackendKind, DeviceSpec};
use catgan::bench::{run_on, run_on_paced, BenchConfig, BenchResult};
use catgan_devtools::flags::{compiled_backend, positive, BenchFlags};
use catgan_devtools::machine::{
    cpu_threads, fp32_peak_gflops, machine_info, measured_fp32_peak_gflops, settle_before_run,
};
use catgan_devtools::report::{exit_code, parse_args, write_json};
use catgan_devtools::torch::{
    allocator_note, lockstep_table, machine_table, median_result, median_torch, python_command,
    ratio_table, run_torch, torch_check, SideBySide, TorchResult, TorchStepper,
};
use clap::Parser;

/// PyTorch's identical model and ours, back to back, with the ratio per config.
#[derive(Debug, Parser)]
struct Args {
    #[command(flatten)]
    common: BenchFlags,
    /// Our backend.
    #[arg(long, default_value = "flex", value_parser = compiled_backend)]
    backend: BackendKind,
    /// Runs of each config (PyTorch, ours, PyTorch, ours, ...); medians are compared.
    #[arg(long, default_value_t = 1, value_parser = positive, value_name = "N")]
    rounds: usize,
    /// Alternate the timed steps too: within a round, one PyTorch step, then one of ours,
    /// and so on (PyTorch's process waits for each), and report the median of the step
    /// pairs' ratios as well.
    #[arg(long)]
    lockstep: bool,
    /// PyTorch's threads [default: the threads our CPU backends use].
    #[arg(long, value_parser = positive, value_name = "N")]
    threads: Option<usize>,
    /// The CPU's fp32 peak in GFLOP/s for the threads used [default: measured, an FMA
    /// loop on every thread for a second; without AVX2 + FMA, estimated from
    /// /proc/cpuinfo: threads × clock × FLOP per cycle].
    #[arg(long, value_name = "GFLOPS")]
    peak_gflops: Option<f64>,
    /// The Python that has torch [default: $PYTHON, else python3].
    #[arg(long, value_name = "PATH")]
    python: Option<String>,
}

fn main() -> ExitCode {
    let args: Args = parse_args("side_by_side");
    // As `cats` does (`--default-malloc` keeps glibc's defaults).
    catgan::memory::reuse_large_allocations(!args.common.default_malloc);
    catgan::backend::join_global_pool(args.backend);
    let threads = args.threads.unwrap_or_else(cpu_threads);
    let python = python_command(args.python.as_deref());
    let torch_version = match torch_check(&python) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("side_by_side: {e}");
            eprintln!(
                "(our own figures alone: cargo bench --bench throughput -- --presets {})",
                args.common
                    .configs
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
        threads,
        machine.threads,
        machine.load_average.unwrap_or(f64::NAN),
        machine.commit.as_deref().unwrap_or("?"),
        args.rounds,
        args.common.warmup,
        args.common.steps
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
    for spec in &args.common.configs {
        let config = args.common.config(spec);
        let mut ours = Vec::new();
        let mut torch = Vec::new();
        let mut lockstep_pairs = Vec::new();
        for round in 1..=args.rounds {
            if args.lockstep {
                settle_before_run(args.common.wait_quiet);
                eprintln!(
                    "[{spec} round {round}/{}] PyTorch and {}, step by step",
                    args.rounds, args.backend
                );
                match lockstep_round(&python, &script, &config, threads, args.backend) {
                    Ok((t, r, pairs)) => {
                        eprintln!(
                            "  => PyTorch {:.1}, {} {:.1} train img/s",
                            t.timings.train_img_per_s, args.backend, r.timings.train_img_per_s
                        );
                        lockstep_pairs.extend(pairs);
                        torch.push(t);
                        ours.push(r);
                    }
                    Err(e) => failures.push(format!("lockstep {spec}: {e}")),
                }
                continue;
            }
            settle_before_run(args.common.wait_quiet);
            eprintln!("[{spec} round {round}/{}] PyTorch", args.rounds);
            let mut progress = |line: &str| eprintln!("  {line}");
            match run_torch(&python, &script, &config, threads, &[], &mut progress) {
                Ok(t) => {
                    eprintln!("  => PyTorch {:.1} train img/s", t.timings.train_img_per_s);
                    torch.push(t);
                }
                Err(e) => failures.push(format!("PyTorch {spec}: {e}")),
            }
            settle_before_run(args.common.wait_quiet);
            eprintln!("[{spec} round {round}/{}] {}", args.rounds, args.backend);
            let mut progress = |line: &str| eprintln!("  [{}] {line}", args.backend);
            match run_on(args.backend, DeviceSpec::Default, &config, &mut progress) {
                Ok(r) => {
                    eprintln!(
                        "  => {} {:.1} train img/s",
                        args.backend, r.timings.train_img_per_s
                    );
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
                lockstep_pairs,
            });
        }
    }
    println!(
        "\n{} · ours: {} ({} threads) · PyTorch {torch_version} ({} threads, fp32) · {} · commit {} · \
         {} · median of {} timed steps, {} round(s)\n",
        machine.cpu,
        args.backend,
        machine.threads,
        threads,
        allocator_note(),
        machine.commit.as_deref().unwrap_or("?"),
        machine.date,
        args.common.steps,
        args.rounds
    );
    print!("{}", ratio_table(&rows));
    if args.lockstep {
        println!("\nStep by step (`--lockstep`): PyTorch's step time over ours, per pair of steps run back to back\n");
        print!("{}", lockstep_table(&rows));
    }
    // Measured by default: the nominal clock of a virtual machine understates what its
    // cores run at (docs/benchmarks.md, run 11).
    let nominal = fp32_peak_gflops(machine.threads);
    let given_or_measured = match args.peak_gflops {
        Some(p) => Some((p, "--peak-gflops".to_string())),
        None => measured_fp32_peak_gflops(machine.threads, 1.0),
    };
    let describe = |(p, how): &(f64, String)| format!("{p:.0} GFLOP/s ({how})");
    // The nominal figure is printed beside a given or measured one, for comparison.
    let beside = match (&given_or_measured, &nominal) {
        (Some(_), Some(n)) => format!("; nominal {}", describe(n)),
        _ => String::new(),
    };
    let peak = given_or_measured.or_else(|| nominal.clone());
    println!(
        "\nAgainst the machine: fp32 peak {}{beside}\n",
        peak.as_ref()
            .map_or("unknown (pass --peak-gflops)".to_string(), describe),
    );
    print!("{}", machine_table(&rows, peak.as_ref().map(|p| p.0)));
    if busy {
        println!(
            "\nwarning: measured on a busy machine (load {:.1} on {} threads): see stderr.",
            machine.load_average.unwrap_or(0.0),
            machine.threads
        );
    }
    if let Some(path) = &args.common.json {
        let doc = serde_json::json!({
            "machine": machine,
            "busy": busy,
            "torch_version": torch_version,
            "torch_threads": threads,
            "peak_gflops": peak.as_ref().map(|p| p.0),
            "peak_gflops_how": peak.as_ref().map(|p| p.1.clone()),
            "nominal_peak_gflops": nominal.as_ref().map(|p| p.0),
            "rows": rows,
            "failures": failures,
        });
        if let Err(code) = write_json(path, &doc) {
            return code;
        }
    }
    exit_code(&failures)
}

/// One lockstep round: PyTorch's process builds its model and warms up, then ours; each of
/// our timed steps is preceded by one of PyTorch's ([`TorchStepper`]), with a short pause
/// either side so that neither side's idle threads still spin while the other runs.
fn lockstep_round(
    python: &str,
    script: &std::path::Path,
    config: &BenchConfig,
    threads: usize,
    backend: BackendKind,
) -> Result<(TorchResult, BenchResult, Vec<[f64; 2]>), String> {
    const PAUSE: std::time::Duration = std::time::Duration::from_millis(20);
    let mut stepper = TorchStepper::start(python, script, config, threads)?;
    let mut torch_failure = None;
    let mut progress = |line: &str| eprintln!("  [{backend}] {line}");
    let ours = run_on_paced(
        backend,
        DeviceSpec::Default,
        config,
        &mut progress,
        &mut || {
            if torch_failure.is_none() {
                std::thread::sleep(PAUSE);
                // The script prints its own progress line for the step.
                if let Err(e) = stepper.step() {
                    torch_failure = Some(e);
                }
                std::thread::sleep(PAUSE);
            }
        },
    )?;
    if let Some(e) = torch_failure {
        return Err(e);
    }
    let pairs = stepper
        .times()
        .iter()
        .zip(&ours.step_times_s)
        .map(|(&t, &o)| [t, o])
        .collect();
    let torch = stepper.finish()?;
    Ok((torch, ours, pairs))
}
