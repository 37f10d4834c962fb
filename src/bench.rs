//! Throughput benchmarks: training steps and generator inference, per backend.
//!
//! A training step is what [`dcgan_core::Trainer::step`] does: one D update and one G
//! update, with the metrics read back (which also synchronises GPU backends). The real
//! batch is synthetic (uniform in [−1, 1]) so that only the model is timed, as in
//! PyTorch's reference script. The first step is timed on its own (it includes kernel
//! compilation on GPU backends), then `warmup` steps are run untimed, then `repeats` steps
//! are timed one by one and the median is reported.
//!
//! Besides [`run_bench`] (one configuration on one backend type) this module holds what the
//! bench binaries share: [`ConfigSpec`] (`preset[:base[:batch]]` on the command line),
//! [`run_on`] (one configuration on a backend picked at run time, a backend panic turned
//! into an error), and the PyTorch side ([`torch_check`], [`run_torch`], [`ratio_table`])
//! that runs `benches/reference/torch_dcgan.py` for side-by-side ratios.

use std::fmt;
use std::path::Path;
use std::process::Command;
use std::str::FromStr;
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use dcgan_core::{LatentDistribution, ModelPreset, Precision, Trainer, TrainerConfig};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::backend::{catch_device_failure, dispatch, BackendKind, BackendTask, DeviceSpec};

/// What to measure.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchConfig {
    /// The model preset.
    pub preset: ModelPreset,
    /// Width (None: the preset's).
    pub base: Option<usize>,
    /// Images per step.
    pub batch_size: usize,
    /// Untimed steps after the first.
    pub warmup: usize,
    /// Timed steps (the median is reported).
    pub repeats: usize,
    /// Whether to also time generator inference.
    pub inference: bool,
    /// Precision of the networks (training and inference).
    #[serde(default)]
    pub precision: Precision,
}

/// One measured configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BenchResult {
    /// Backend name.
    pub backend: String,
    /// Preset name.
    pub preset: String,
    /// Image side.
    pub image_size: usize,
    /// Width.
    pub base: usize,
    /// Images per step.
    pub batch_size: usize,
    /// Trainable parameters of G + D.
    pub params: usize,
    /// Seconds of the first training step (cold: kernel compilation, allocation).
    pub first_step_s: f64,
    /// Median seconds per training step after warm-up.
    pub train_step_s: f64,
    /// Training images per second (batch / median step time).
    pub train_img_per_s: f64,
    /// Spread of the timed steps: (max − min) / median.
    pub train_spread: f64,
    /// Seconds of the fastest timed step (on a shared machine, the least disturbed one).
    #[serde(default)]
    pub best_step_s: f64,
    /// Generator inference images per second (batch / median time), if measured.
    pub gen_img_per_s: Option<f64>,
    /// Timed repeats.
    pub repeats: usize,
    /// Warm-up steps.
    pub warmup: usize,
    /// Precision of the networks (results of older versions: f32).
    #[serde(default)]
    pub precision: Precision,
}

/// Median of a non-empty slice.
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Runs the benchmark on backend `B`. `progress` hears a line per step (GPU cold starts
/// take minutes; silence would look like a hang).
pub fn run_bench<B: AutodiffBackend>(
    config: &BenchConfig,
    backend: BackendKind,
    device: &B::Device,
    progress: &mut dyn FnMut(&str),
) -> Result<BenchResult, dcgan_core::Error> {
    let (g, d) = config.preset.configs(config.base);
    let image_size = g.image_size;
    let base = d.base_channels;
    let trainer_config = TrainerConfig::new(g, d).with_batch_size(config.batch_size);
    let mut trainer = Trainer::<B>::new(trainer_config, device)?;
    trainer.set_precision(config.precision)?;
    let params = trainer.generator.trainable_params() + trainer.discriminator.trainable_params();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let n = config.batch_size;
    let real: Tensor<B, 4> = Tensor::from_data(
        TensorData::new(
            LatentDistribution::Uniform.sample(n, 3 * image_size * image_size, &mut rng),
            [n, 3, image_size, image_size],
        ),
        device,
    );

    let t = Instant::now();
    trainer.step(real.clone())?;
    let first_step_s = t.elapsed().as_secs_f64();
    progress(&format!("first step {first_step_s:.2} s"));
    for i in 0..config.warmup {
        let t = Instant::now();
        trainer.step(real.clone())?;
        progress(&format!(
            "warm-up {}/{} {:.3} s",
            i + 1,
            config.warmup,
            t.elapsed().as_secs_f64()
        ));
    }
    let mut times = Vec::with_capacity(config.repeats);
    for i in 0..config.repeats.max(1) {
        let t = Instant::now();
        trainer.step(real.clone())?;
        let s = t.elapsed().as_secs_f64();
        times.push(s);
        progress(&format!(
            "step {}/{} {:.3} s ({:.1} img/s)",
            i + 1,
            config.repeats,
            s,
            n as f64 / s
        ));
    }
    let train_step_s = median(&times);
    let spread = (times.iter().cloned().fold(f64::MIN, f64::max)
        - times.iter().cloned().fold(f64::MAX, f64::min))
        / train_step_s;

    let gen_img_per_s = if config.inference {
        let generator = trainer.generator.valid();
        let z = Tensor::<B::InnerBackend, 2>::from_data(
            TensorData::new(
                LatentDistribution::Uniform.sample(n, 100, &mut rng),
                [n, 100],
            ),
            device,
        );
        let run = || {
            let t = Instant::now();
            let out = generator.forward(z.clone());
            // Reading one value back waits for the whole computation.
            let _ = out.slice([0..1, 0..1, 0..1, 0..1]).into_data();
            t.elapsed().as_secs_f64()
        };
        for _ in 0..config.warmup.max(1) {
            run();
        }
        let gen_times: Vec<f64> = (0..config.repeats.max(1)).map(|_| run()).collect();
        Some(n as f64 / median(&gen_times))
    } else {
        None
    };

    Ok(BenchResult {
        backend: backend.name().into(),
        preset: config.preset.name().into(),
        image_size,
        base,
        batch_size: n,
        params,
        first_step_s,
        train_step_s,
        train_img_per_s: n as f64 / train_step_s,
        train_spread: spread,
        best_step_s: times.iter().cloned().fold(f64::MAX, f64::min),
        gen_img_per_s,
        repeats: config.repeats.max(1),
        warmup: config.warmup,
        precision: config.precision,
    })
}

/// A Markdown table of results.
pub fn markdown_table(results: &[BenchResult]) -> String {
    let mut out = String::from(
        "| backend | precision | preset | px | base | batch | first step (s) | train img/s | step ms (median) | best step ms | spread | G inference img/s |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in results {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {:.2} | {:.1} | {:.1} | {:.1} | {:.0}% | {} |\n",
            r.backend,
            r.precision,
            r.preset,
            r.image_size,
            r.base,
            r.batch_size,
            r.first_step_s,
            r.train_img_per_s,
            r.train_step_s * 1e3,
            r.best_step_s * 1e3,
            r.train_spread * 100.0,
            r.gen_img_per_s
                .map(|v| format!("{v:.1}"))
                .unwrap_or_else(|| "–".into()),
        ));
    }
    out
}

/// One configuration on the command line: `preset[:base[:batch]]`, e.g. `dcgan64:32:32`.
///
/// A missing base means the preset's; a missing batch means "take the batch sizes given
/// separately" (`--batch-sizes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigSpec {
    /// The preset.
    pub preset: ModelPreset,
    /// Width (None: the preset's).
    pub base: Option<usize>,
    /// Images per step, if given.
    pub batch_size: Option<usize>,
}

impl ConfigSpec {
    /// The width actually used.
    pub fn base(&self) -> usize {
        self.base.unwrap_or(self.preset.default_base())
    }

    /// The specs with their batch sizes filled in: a spec with a batch stays one config,
    /// a spec without one becomes one config per entry of `batch_sizes`.
    pub fn expand(specs: &[ConfigSpec], batch_sizes: &[usize]) -> Vec<ConfigSpec> {
        specs
            .iter()
            .flat_map(|s| match s.batch_size {
                Some(_) => vec![*s],
                None => batch_sizes
                    .iter()
                    .map(|&b| ConfigSpec {
                        batch_size: Some(b),
                        ..*s
                    })
                    .collect(),
            })
            .collect()
    }

    /// Whether this is a toy-sized model (32 px, base ≤ 8, batch ≤ 16): the only size
    /// the slow backends (ndarray) run on unless asked for by name.
    pub fn is_tiny(&self) -> bool {
        self.preset.image_size() <= 32 && self.base() <= 8 && self.batch_size.unwrap_or(0) <= 16
    }
}

impl fmt::Display for ConfigSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.preset, self.base())?;
        if let Some(b) = self.batch_size {
            write!(f, ":{b}")?;
        }
        Ok(())
    }
}

impl FromStr for ConfigSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let mut parts = s.trim().split(':');
        let preset = parts
            .next()
            .unwrap_or_default()
            .parse::<ModelPreset>()
            .map_err(|e| e.to_string())?;
        let number = |part: Option<&str>, what: &str| -> Result<Option<usize>, String> {
            match part {
                None | Some("") => Ok(None),
                Some(p) => match p.parse::<usize>() {
                    Ok(n) if n > 0 => Ok(Some(n)),
                    _ => Err(format!(
                        "`{s}`: {what} must be a positive number (expected preset[:base[:batch]])"
                    )),
                },
            }
        };
        let base = number(parts.next(), "base")?;
        let batch_size = number(parts.next(), "batch")?;
        if parts.next().is_some() {
            return Err(format!(
                "`{s}`: too many fields (expected preset[:base[:batch]])"
            ));
        }
        Ok(ConfigSpec {
            preset,
            base,
            batch_size,
        })
    }
}

/// Flags shared by the bench binaries (`benches/throughput.rs`, `benches/side_by_side.rs`).
#[derive(Debug, Clone, clap::Args)]
pub struct BenchFlags {
    /// Configurations, `preset[:base[:batch]]`, comma-separated.
    #[arg(
        long,
        visible_alias = "presets",
        value_delimiter = ',',
        default_value = "dcgan64:16:16,dcgan64:32:32,seed128:16:16",
        value_name = "LIST"
    )]
    pub configs: Vec<ConfigSpec>,
    /// Timed steps per run (the median is reported).
    #[arg(long, default_value_t = 10, value_parser = positive, value_name = "N")]
    pub steps: usize,
    /// Untimed steps before them.
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub warmup: usize,
    /// Skip the generator-inference measurement.
    #[arg(long)]
    pub no_inference: bool,
    /// Before each CPU run, wait (at most this long) until other programs use under 10% of
    /// the CPUs.
    #[arg(long, default_value_t = 0, value_name = "SECONDS")]
    pub wait_quiet: u64,
    /// Also write the machine info and every result to this JSON file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<std::path::PathBuf>,
    /// Passed by `cargo bench` to every bench binary; ignored.
    #[arg(long, hide = true)]
    pub bench: bool,
}

impl BenchFlags {
    /// The [`BenchConfig`] of one configuration (batch 16 where `spec` names none).
    pub fn config(&self, spec: &ConfigSpec) -> BenchConfig {
        BenchConfig {
            preset: spec.preset,
            base: spec.base,
            batch_size: spec.batch_size.unwrap_or(16),
            warmup: self.warmup,
            repeats: self.steps,
            inference: !self.no_inference,
            precision: Precision::F32,
        }
    }
}

/// A clap value parser for counts that must be at least 1.
pub fn positive(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("`{s}`: expected a positive whole number")),
    }
}

/// A clap value parser for a backend compiled into this binary.
pub fn compiled_backend(s: &str) -> Result<BackendKind, String> {
    BackendKind::parse_compiled(s.trim()).map_err(|e| e.to_string())
}

/// Why `backend` is left out of `config` by default, if it is: ndarray is ~19× slower than
/// flex (~170× slower than PyTorch), so it only runs toy models unless asked for by name.
pub fn default_skip(backend: BackendKind, config: &ConfigSpec) -> Option<String> {
    (backend == BackendKind::NdArray && !config.is_tiny()).then(|| {
        format!(
            "skipping ndarray on {config}: ~19x slower than flex (minutes per step); \
             name it in --backends to run it anyway"
        )
    })
}

struct RunTask<'a> {
    config: &'a BenchConfig,
    progress: &'a mut dyn FnMut(&str),
}

impl BackendTask for RunTask<'_> {
    type Output = Result<BenchResult, String>;

    fn run<B: AutodiffBackend>(self, backend: BackendKind, device: B::Device) -> Self::Output {
        let RunTask { config, progress } = self;
        match catch_device_failure(backend, || {
            run_bench::<B>(config, backend, &device, progress)
        }) {
            Ok(Ok(result)) => Ok(result),
            Ok(Err(e)) => Err(e.to_string()),
            Err(failure) => Err(failure.to_string()),
        }
    }
}

/// Runs [`run_bench`] on a backend picked at run time; a backend that panics (no driver,
/// out of memory) becomes an `Err` with a hint instead of ending the process.
pub fn run_on(
    backend: BackendKind,
    device: DeviceSpec,
    config: &BenchConfig,
    progress: &mut dyn FnMut(&str),
) -> Result<BenchResult, String> {
    let device = if backend.is_gpu() {
        device
    } else {
        DeviceSpec::Default
    };
    dispatch(backend, device, RunTask { config, progress }).map_err(|e| e.to_string())?
}

/// One run of the PyTorch reference (`benches/reference/torch_dcgan.py`): its JSON line.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TorchResult {
    /// `torch.__version__`.
    pub torch_version: String,
    /// `cpu` or `cuda`.
    pub device: String,
    /// The CPU or GPU model.
    pub device_name: String,
    /// Preset name.
    pub preset: String,
    /// Image side.
    pub image_size: usize,
    /// Width.
    pub base: usize,
    /// Images per step.
    pub batch_size: usize,
    /// `torch.get_num_threads()`.
    pub threads: usize,
    /// `fp32`, `tf32` or `bf16-autocast`.
    pub precision: String,
    /// Trainable parameters of G + D (must equal ours: the same layers).
    pub params: usize,
    /// Seconds of the first training step.
    pub first_step_s: f64,
    /// Median seconds per training step after warm-up.
    pub train_step_s: f64,
    /// Training images per second.
    pub train_img_per_s: f64,
    /// (max − min) / median of the timed steps.
    pub train_spread: f64,
    /// Seconds of the fastest timed step.
    #[serde(default)]
    pub best_step_s: f64,
    /// Generator inference images per second.
    pub gen_img_per_s: Option<f64>,
}

/// Checks that `python` can import torch; returns torch's version, or a message that says
/// how to get it.
pub fn torch_check(python: &str) -> Result<String, String> {
    let out = Command::new(python)
        .args(["-c", "import torch; print(torch.__version__)"])
        .output()
        .map_err(|e| {
            format!(
                "cannot run `{python}` ({e}): install Python 3 and PyTorch (`pip install torch`)"
            )
        })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        Err(format!(
            "PyTorch is absent: `{python} -c 'import torch'` failed ({}). Install it with \
             `pip install torch` (CPU wheels: `pip install torch --index-url \
             https://download.pytorch.org/whl/cpu`)",
            err.trim().lines().last().unwrap_or("no message")
        ))
    }
}

/// Runs the PyTorch reference script once for `config` and parses its JSON line.
/// `extra` is passed through (e.g. `["--device", "cuda", "--tf32"]`); its progress lines
/// go to `progress`.
pub fn run_torch(
    python: &str,
    script: &Path,
    config: &BenchConfig,
    threads: usize,
    extra: &[&str],
    progress: &mut dyn FnMut(&str),
) -> Result<TorchResult, String> {
    let mut cmd = Command::new(python);
    cmd.arg(script)
        .args(["--preset", config.preset.name()])
        .args(["--batch-size", &config.batch_size.to_string()])
        .args(["--steps", &config.repeats.max(1).to_string()])
        .args(["--warmup", &config.warmup.to_string()])
        .args(["--threads", &threads.to_string()])
        .args(["--device", "cpu"])
        .args(extra);
    if let Some(base) = config.base {
        cmd.args(["--base", &base.to_string()]);
    }
    if !config.inference {
        cmd.arg("--no-inference");
    }
    let out = cmd
        .stderr(std::process::Stdio::piped())
        .output()
        .map_err(|e| format!("cannot run {python} {}: {e}", script.display()))?;
    for line in String::from_utf8_lossy(&out.stderr).lines() {
        progress(line);
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "{} exited with {}: {}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        ));
    }
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .ok_or_else(|| format!("{} printed no JSON line", script.display()))?;
    serde_json::from_str(line).map_err(|e| format!("bad JSON from {}: {e}", script.display()))
}

/// One row of the side-by-side table: our figures and PyTorch's for the same config.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SideBySide {
    /// Ours (medians over rounds).
    pub ours: BenchResult,
    /// PyTorch's (medians over rounds), if it ran.
    pub torch: Option<TorchResult>,
    /// Rounds measured.
    pub rounds: usize,
}

/// The side-by-side Markdown table: img/s of both, and ours / PyTorch.
pub fn ratio_table(rows: &[SideBySide]) -> String {
    let mut out = String::from(
        "| config (preset:base:batch) | px | ours | ours train img/s | PyTorch train img/s | ratio train | ratio best steps | ours G img/s | PyTorch G img/s | ratio G | params equal |\n\
         |---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    let f = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.1}"));
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
        _ => "–".into(),
    };
    for row in rows {
        let o = &row.ours;
        let t = row.torch.as_ref();
        out.push_str(&format!(
            "| {}:{}:{} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            o.preset,
            o.base,
            o.batch_size,
            o.image_size,
            o.backend,
            f(Some(o.train_img_per_s)),
            f(t.map(|t| t.train_img_per_s)),
            ratio(Some(o.train_img_per_s), t.map(|t| t.train_img_per_s)),
            // Time ratio of the fastest steps = img/s ratio (same batch).
            ratio(
                t.map(|t| t.best_step_s).filter(|&b| b > 0.0),
                Some(o.best_step_s).filter(|&b| b > 0.0)
            ),
            f(o.gen_img_per_s),
            f(t.and_then(|t| t.gen_img_per_s)),
            ratio(o.gen_img_per_s, t.and_then(|t| t.gen_img_per_s)),
            t.map_or("–".into(), |t| if t.params == o.params {
                "yes".to_string()
            } else {
                format!("**no** ({} vs {})", o.params, t.params)
            }),
        ));
    }
    out
}

/// The median of several runs of the same configuration, field by field (timings and
/// rates are each the median of the runs' medians; the best step is the best of all).
pub fn median_result(runs: &[BenchResult]) -> Option<BenchResult> {
    let first = runs.first()?.clone();
    let m = |f: fn(&BenchResult) -> f64| median(&runs.iter().map(f).collect::<Vec<_>>());
    let gen: Vec<f64> = runs.iter().filter_map(|r| r.gen_img_per_s).collect();
    Some(BenchResult {
        first_step_s: m(|r| r.first_step_s),
        train_step_s: m(|r| r.train_step_s),
        train_img_per_s: m(|r| r.train_img_per_s),
        train_spread: m(|r| r.train_spread),
        best_step_s: runs.iter().map(|r| r.best_step_s).fold(f64::MAX, f64::min),
        gen_img_per_s: (!gen.is_empty()).then(|| median(&gen)),
        ..first
    })
}

/// [`median_result`] for PyTorch's runs.
pub fn median_torch(runs: &[TorchResult]) -> Option<TorchResult> {
    let first = runs.first()?.clone();
    let m = |f: fn(&TorchResult) -> f64| median(&runs.iter().map(f).collect::<Vec<_>>());
    let gen: Vec<f64> = runs.iter().filter_map(|r| r.gen_img_per_s).collect();
    Some(TorchResult {
        first_step_s: m(|r| r.first_step_s),
        train_step_s: m(|r| r.train_step_s),
        train_img_per_s: m(|r| r.train_img_per_s),
        train_spread: m(|r| r.train_spread),
        best_step_s: runs.iter().map(|r| r.best_step_s).fold(f64::MAX, f64::min),
        gen_img_per_s: (!gen.is_empty()).then(|| median(&gen)),
        ..first
    })
}

/// The threads the CPU backends use: `RAYON_NUM_THREADS` if set, else every core (rayon's
/// default, which flex and ndarray use).
pub fn cpu_threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        })
}

/// Where and when figures were taken, for the JSON files and the docs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MachineInfo {
    /// CPU model (`/proc/cpuinfo`'s `model name`), or "unknown".
    pub cpu: String,
    /// Threads the CPU backends use ([`cpu_threads`]).
    pub threads: usize,
    /// The 1-minute load average before measuring (Linux), to judge noise.
    pub load_average: Option<f64>,
    /// `git rev-parse --short HEAD` (with `-dirty` if the tree has changes), if in a repository.
    pub commit: Option<String>,
    /// UTC date, `YYYY-MM-DD`.
    pub date: String,
}

/// Reads [`MachineInfo`] now.
pub fn machine_info() -> MachineInfo {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let load_average = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok());
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let commit = git(&["rev-parse", "--short", "HEAD"]).map(|c| {
        match git(&["status", "--porcelain", "--untracked-files=no"]) {
            Some(s) if !s.is_empty() => format!("{c}-dirty"),
            _ => c,
        }
    });
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() / 86_400)
        .unwrap_or(0) as i64;
    MachineInfo {
        cpu,
        threads: cpu_threads(),
        load_average,
        commit,
        date: civil_date(days),
    }
}

/// Fraction of all CPU time spent busy (not idle, not waiting for I/O) over `sample`,
/// from `/proc/stat` (Linux; None elsewhere). Called while this process is idle, it says
/// how much of the machine other programs are using.
pub fn cpu_busy_fraction(sample: std::time::Duration) -> Option<f64> {
    fn read() -> Option<(u64, u64)> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let fields: Vec<u64> = stat
            .lines()
            .next()?
            .split_whitespace()
            .skip(1)
            .filter_map(|v| v.parse().ok())
            .collect();
        let total: u64 = fields.iter().take(8).sum();
        let idle = fields.get(3)? + fields.get(4).copied().unwrap_or(0);
        Some((total, idle))
    }
    let (t0, i0) = read()?;
    std::thread::sleep(sample);
    let (t1, i1) = read()?;
    let total = t1.saturating_sub(t0);
    (total > 0).then(|| 1.0 - i1.saturating_sub(i0) as f64 / total as f64)
}

/// Waits until other programs use under `threshold` of the CPUs (sampled over 3 s), for at
/// most `max_wait`; returns the last busy fraction seen (None where it cannot be read).
/// For timing on a shared machine: a busy neighbour halves our figures and makes PyTorch's
/// spin-waiting OpenMP threads collapse.
pub fn wait_until_quiet(
    threshold: f64,
    max_wait: std::time::Duration,
    progress: &mut dyn FnMut(&str),
) -> Option<f64> {
    let start = Instant::now();
    let mut announced = false;
    loop {
        let busy = cpu_busy_fraction(std::time::Duration::from_secs(3))?;
        if busy < threshold {
            return Some(busy);
        }
        if start.elapsed() >= max_wait {
            progress(&format!(
                "still {:.0}% busy after waiting {:.0} s: measuring anyway",
                busy * 100.0,
                start.elapsed().as_secs_f64()
            ));
            return Some(busy);
        }
        if !announced {
            progress(&format!(
                "machine {:.0}% busy (other programs): waiting for under {:.0}% (at most {:.0} s)",
                busy * 100.0,
                threshold * 100.0,
                max_wait.as_secs_f64()
            ));
            announced = true;
        }
        std::thread::sleep(std::time::Duration::from_secs(5));
    }
}

/// For the bench binaries' `--wait-quiet S`: waits (at most `max_wait_s` seconds) until
/// other programs use under 10% of the CPUs, reporting on stderr how busy the machine was.
/// Does nothing for 0.
pub fn settle_before_run(max_wait_s: u64) {
    if max_wait_s == 0 {
        return;
    }
    let busy = wait_until_quiet(
        0.10,
        std::time::Duration::from_secs(max_wait_s),
        &mut |line| eprintln!("  {line}"),
    );
    if let Some(b) = busy {
        eprintln!("  (machine {:.0}% busy before this run)", b * 100.0);
    }
}

/// `YYYY-MM-DD` of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_date(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_date(0), "1970-01-01");
        assert_eq!(civil_date(20_418), "2025-11-26");
        assert_eq!(civil_date(11_016), "2000-02-29");
    }

    #[test]
    fn config_specs_parse_expand_and_print() {
        let s: ConfigSpec = "dcgan64:32:16".parse().unwrap();
        assert_eq!(
            (s.preset, s.base, s.batch_size),
            (ModelPreset::Dcgan64, Some(32), Some(16))
        );
        assert_eq!(s.to_string(), "dcgan64:32:16");
        // Through the bench binaries' own flags.
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            flags: BenchFlags,
        }
        use clap::Parser;
        let parse = |args: &[&str]| Cli::try_parse_from([&["bench"], args].concat());
        let specs = parse(&["--configs", "seed128, tiny32:4:2", "--bench"])
            .unwrap()
            .flags
            .configs;
        assert!(parse(&["--steps", "0"]).is_err());
        assert!(parse(&["--presets", "cat64"]).is_err());
        assert_eq!(specs[0].base(), 64);
        let all = ConfigSpec::expand(&specs, &[8, 16]);
        let names: Vec<String> = all.iter().map(|c| c.to_string()).collect();
        assert_eq!(names, ["seed128:64:8", "seed128:64:16", "tiny32:4:2"]);
        assert!(all[2].is_tiny() && !all[0].is_tiny());
        for bad in ["cat64", "dcgan64:0", "dcgan64:x", "dcgan64:16:16:1"] {
            assert!(bad.parse::<ConfigSpec>().is_err(), "{bad}");
        }
        assert!(default_skip(BackendKind::NdArray, &all[0]).is_some());
        assert!(default_skip(BackendKind::NdArray, &all[2]).is_none());
        assert!(default_skip(BackendKind::Flex, &all[0]).is_none());
    }

    #[test]
    fn ratio_table_divides_ours_by_torch() {
        let ours = BenchResult {
            backend: "flex".into(),
            preset: "dcgan64".into(),
            image_size: 64,
            base: 16,
            batch_size: 16,
            params: 10,
            first_step_s: 1.0,
            train_step_s: 0.5,
            train_img_per_s: 32.0,
            train_spread: 0.1,
            best_step_s: 0.4,
            gen_img_per_s: Some(100.0),
            repeats: 3,
            warmup: 1,
            precision: Precision::F32,
        };
        let torch = TorchResult {
            torch_version: "2".into(),
            device: "cpu".into(),
            device_name: "x".into(),
            preset: "dcgan64".into(),
            image_size: 64,
            base: 16,
            batch_size: 16,
            threads: 2,
            precision: "fp32".into(),
            params: 10,
            first_step_s: 0.1,
            train_step_s: 0.05,
            train_img_per_s: 320.0,
            train_spread: 0.1,
            best_step_s: 0.04,
            gen_img_per_s: Some(400.0),
        };
        let table = ratio_table(&[SideBySide {
            ours: ours.clone(),
            torch: Some(torch),
            rounds: 1,
        }]);
        assert!(
            table.contains("| dcgan64:16:16 | 64 | flex | 32.0 | 320.0 | 0.10× | 0.10× | 100.0 | 400.0 | 0.25× | yes |"),
            "{table}"
        );
        let mut slower = ours.clone();
        slower.train_img_per_s = 16.0;
        slower.gen_img_per_s = None;
        let m = median_result(&[ours.clone(), slower.clone(), ours]).unwrap();
        assert_eq!(m.train_img_per_s, 32.0);
        assert_eq!(m.gen_img_per_s, Some(100.0));
    }

    #[cfg(feature = "flex")]
    #[test]
    fn a_tiny_bench_measures_positive_throughput() {
        type B = burn::backend::Autodiff<burn::backend::Flex>;
        let config = BenchConfig {
            preset: ModelPreset::Tiny32,
            base: Some(4),
            batch_size: 4,
            warmup: 1,
            repeats: 3,
            inference: true,
            precision: Precision::F32,
        };
        let mut lines = 0;
        let r = run_bench::<B>(&config, BackendKind::Flex, &Default::default(), &mut |_| {
            lines += 1
        })
        .unwrap();
        assert_eq!(
            (r.image_size, r.base, r.batch_size, r.repeats),
            (32, 4, 4, 3)
        );
        assert!(r.train_img_per_s > 0.0 && r.first_step_s > 0.0);
        assert!(r.gen_img_per_s.unwrap() > 0.0);
        assert_eq!(lines, 1 + 1 + 3);
        let table = markdown_table(&[r]);
        assert!(
            table.contains("| flex | f32 | tiny32 | 32 | 4 | 4 |"),
            "{table}"
        );
    }
}
