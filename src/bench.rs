//! Throughput benchmarks: training steps and generator inference, per backend.
//!
//! A training step is what [`dcgan_core::Trainer::step`] does: one D update and one G
//! update, with the metrics read back (which also synchronises GPU backends). The real
//! batch is synthetic (uniform in [−1, 1]) so that only the model is timed, as in
//! PyTorch's reference script. The first step is timed on its own (it includes kernel
//! compilation on GPU backends), then `warmup` steps are run untimed, then `repeats` steps
//! are timed one by one and the median is reported.
//!
//! [`run_bench`] measures one configuration on one backend type, [`run_on`] on a backend
//! picked at run time (a backend panic turned into an error), and [`markdown_table`] prints
//! the results: what `cats bench` does. The bench binaries (`benches/`) drive the same
//! functions over grids of configs; their flags, machine info and the PyTorch side-by-side
//! runner live in the internal `catgan-devtools` crate.

use std::time::Instant;

use burn::module::AutodiffModule;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use dcgan_core::{LatentDistribution, ModelPreset, Precision, Trainer, TrainerConfig};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::backend::{catch_device_failure, dispatch, BackendKind, BackendTask, DeviceSpec};
use crate::parallel::{DeviceSet, Parallelism};

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
    /// Whether the networks use the flex fast path (`fast_kernels` in their configs; only
    /// flex has one): `false` times burn's own operations, for comparison.
    #[serde(default = "fast_kernels_on")]
    pub fast_kernels: bool,
    /// Data-parallel replicas (`cats bench --devices`): on a CPU backend sharing the CPU,
    /// on a GPU backend devices 0..N; the batch is the global one (configs of older
    /// versions: 1).
    #[serde(default = "one")]
    pub devices: usize,
}

fn fast_kernels_on() -> bool {
    true
}

fn one() -> usize {
    1
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
    /// The timings (fields of this struct's JSON form, not an object of their own).
    #[serde(flatten)]
    pub timings: StepTimings,
    /// Timed repeats.
    pub repeats: usize,
    /// Warm-up steps.
    pub warmup: usize,
    /// Precision of the networks (results of older versions: f32).
    #[serde(default)]
    pub precision: Precision,
    /// Whether the flex fast path was allowed ([`BenchConfig::fast_kernels`]; results of
    /// older versions: on).
    #[serde(default = "fast_kernels_on")]
    pub fast_kernels: bool,
    /// Data-parallel replicas the batch was split over ([`BenchConfig::devices`]; results
    /// of older versions: 1).
    #[serde(default = "one")]
    pub replicas: usize,
    /// GPU kernels the first step compiled ([`crate::kernel_stats`]; `None` on CPU
    /// backends, or when the process does not count).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_step_kernels: Option<u64>,
    /// Operations the first step autotuned (each compiles and times its candidate
    /// kernels; `None` as for [`Self::first_step_kernels`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_step_autotuned: Option<u64>,
    /// Each timed step's seconds, in order (results of older versions: none kept).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub step_times_s: Vec<f64>,
}

/// The timings of one measured configuration, which the PyTorch reference run of the
/// bench binaries (`catgan-devtools`) reports too, under the same JSON names.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct StepTimings {
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
    /// Peak resident memory of the training steps, in MiB: the process's peak (Linux
    /// `VmHWM`), counted from the resident memory just before the run's networks were
    /// built, after free heap memory was given back (buffers that earlier runs' worker
    /// threads keep for reuse still count), if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_rss_mib: Option<f64>,
}

/// Gives free heap memory back to the system, then lets the process's peak resident memory
/// start again from its current resident memory (Linux: `5` to `/proc/self/clear_refs`;
/// elsewhere nothing).
fn reset_peak_memory() {
    crate::memory::release_free_memory();
    #[cfg(target_os = "linux")]
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The process's peak resident memory in MiB since the last [`reset_peak_memory`]
/// (Linux `VmHWM`), or `None` where unknown.
fn peak_memory_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
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
    run_bench_paced::<B>(config, backend, device, progress, &mut || {})
}

/// [`run_bench`] with `pace()` called right before each timed step, outside its timing:
/// a side-by-side bench steps the other framework there, so that the two alternate step
/// by step and a machine whose speed drifts slows both alike.
pub fn run_bench_paced<B: AutodiffBackend>(
    config: &BenchConfig,
    backend: BackendKind,
    device: &B::Device,
    progress: &mut dyn FnMut(&str),
    pace: &mut dyn FnMut(),
) -> Result<BenchResult, dcgan_core::Error> {
    reset_peak_memory();
    let (g, d) = config.preset.configs(config.base);
    let (g, d) = (
        g.with_fast_kernels(config.fast_kernels),
        d.with_fast_kernels(config.fast_kernels),
    );
    let image_size = g.image_size;
    let base = d.base_channels;
    let trainer_config = TrainerConfig::new(g, d).with_batch_size(config.batch_size);
    let mut trainer = Trainer::<B>::new(trainer_config, device)?;
    trainer.set_precision(config.precision)?;
    if config.devices > 1 {
        let parallel = Parallelism {
            devices: DeviceSet::Count(config.devices),
            ..Default::default()
        };
        let devices = parallel
            .check::<B>(backend, device, config.batch_size)
            .map_err(|e| dcgan_core::Error::InvalidConfig {
                component: "bench",
                field: "devices",
                value: config.devices.to_string(),
                reason: e.to_string(),
            })?;
        crate::parallel::replicate(&mut trainer, devices, &parallel).map_err(|e| {
            dcgan_core::Error::Replica {
                rank: 0,
                reason: e.to_string(),
            }
        })?;
    }
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

    let counts_before = crate::kernel_stats::snapshot();
    let t = Instant::now();
    trainer.step(real.clone())?;
    let first_step_s = t.elapsed().as_secs_f64();
    let first_step_counts = counts_before
        .zip(crate::kernel_stats::settled_snapshot())
        .map(|(before, after)| after - before);
    match first_step_counts {
        Some(c) => progress(&format!(
            "first step {first_step_s:.2} s: {} kernels compiled, {} operations autotuned",
            c.compiled, c.autotuned
        )),
        None => progress(&format!("first step {first_step_s:.2} s")),
    }
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
        pace();
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
    let peak_rss_mib = peak_memory_mib();
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
        timings: StepTimings {
            first_step_s,
            train_step_s,
            train_img_per_s: n as f64 / train_step_s,
            train_spread: spread,
            best_step_s: times.iter().cloned().fold(f64::MAX, f64::min),
            gen_img_per_s,
            peak_rss_mib,
        },
        repeats: config.repeats.max(1),
        warmup: config.warmup,
        precision: config.precision,
        fast_kernels: config.fast_kernels,
        replicas: trainer.world_size(),
        first_step_kernels: first_step_counts.map(|c| c.compiled),
        first_step_autotuned: first_step_counts.map(|c| c.autotuned),
        step_times_s: times,
    })
}

/// The precision column: `f32`, or `f32, burn ops` for flex without its fast path.
fn precision_label(r: &BenchResult) -> String {
    if !r.fast_kernels && r.backend == BackendKind::Flex.name() {
        format!("{}, burn ops", r.precision)
    } else {
        r.precision.to_string()
    }
}

/// The backend column: `flex`, or `flex ×2` for 2 data-parallel replicas.
fn backend_label(r: &BenchResult) -> String {
    match r.replicas {
        1 => r.backend.clone(),
        n => format!("{} ×{n}", r.backend),
    }
}

/// A Markdown table of results.
pub fn markdown_table(results: &[BenchResult]) -> String {
    let mut out = String::from(
        "| backend | precision | preset | px | base | batch | first step (s) | kernels compiled (autotuned) in it | train img/s | step ms (median) | best step ms | spread | G inference img/s |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in results {
        let t = &r.timings;
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {:.2} | {} | {:.1} | {:.1} | {:.1} | {:.0}% | {} |\n",
            backend_label(r),
            precision_label(r),
            r.preset,
            r.image_size,
            r.base,
            r.batch_size,
            t.first_step_s,
            match (r.first_step_kernels, r.first_step_autotuned) {
                (Some(k), Some(a)) => format!("{k} ({a})"),
                _ => "–".into(),
            },
            t.train_img_per_s,
            t.train_step_s * 1e3,
            t.best_step_s * 1e3,
            t.train_spread * 100.0,
            t.gen_img_per_s
                .map(|v| format!("{v:.1}"))
                .unwrap_or_else(|| "–".into()),
        ));
    }
    out
}

struct RunTask<'a> {
    config: &'a BenchConfig,
    progress: &'a mut dyn FnMut(&str),
    pace: &'a mut dyn FnMut(),
}

impl BackendTask for RunTask<'_> {
    type Output = Result<BenchResult, String>;

    fn run<B: AutodiffBackend>(self, backend: BackendKind, device: B::Device) -> Self::Output {
        let RunTask {
            config,
            progress,
            pace,
        } = self;
        match catch_device_failure(backend, || {
            run_bench_paced::<B>(config, backend, &device, progress, pace)
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
    run_on_paced(backend, device, config, progress, &mut || {})
}

/// [`run_on`] with `pace()` before each timed step ([`run_bench_paced`]).
pub fn run_on_paced(
    backend: BackendKind,
    device: DeviceSpec,
    config: &BenchConfig,
    progress: &mut dyn FnMut(&str),
    pace: &mut dyn FnMut(),
) -> Result<BenchResult, String> {
    let device = if backend.is_gpu() {
        device
    } else {
        DeviceSpec::Default
    };
    dispatch(
        backend,
        device,
        RunTask {
            config,
            progress,
            pace,
        },
    )
    .map_err(|e| e.to_string())?
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
    fn a_result_reads_and_writes_its_timings_as_fields_of_its_own() {
        // The JSON form of results written before `StepTimings` (and of older versions,
        // without `best_step_s`, `precision` and `fast_kernels`) is what is read and written.
        let json = r#"{"backend":"flex","preset":"dcgan64","image_size":64,"base":16,"batch_size":16,"params":10,"first_step_s":1.5,"train_step_s":0.5,"train_img_per_s":32.0,"train_spread":0.1,"best_step_s":0.4,"gen_img_per_s":null,"repeats":3,"warmup":1,"precision":"f32","fast_kernels":false}"#;
        let r: BenchResult = serde_json::from_str(json).unwrap();
        assert_eq!(r.timings.first_step_s, 1.5);
        assert_eq!(r.timings.gen_img_per_s, None);
        assert_eq!(
            r.replicas, 1,
            "results before data parallelism: one replica"
        );
        let written = format!("{},\"replicas\":1}}", &json[..json.len() - 1]);
        assert_eq!(serde_json::to_string(&r).unwrap(), written);
        let old = r#"{"backend":"flex","preset":"dcgan64","image_size":64,"base":16,"batch_size":16,"params":10,"first_step_s":1.5,"train_step_s":0.5,"train_img_per_s":32.0,"train_spread":0.1,"gen_img_per_s":100.0,"repeats":3,"warmup":1}"#;
        let r: BenchResult = serde_json::from_str(old).unwrap();
        assert_eq!(
            (
                r.timings.best_step_s,
                r.timings.gen_img_per_s,
                r.fast_kernels
            ),
            (0.0, Some(100.0), true)
        );
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
            fast_kernels: true,
            devices: 1,
        };
        let calls_before = dcgan_core::flex_kernels::calls();
        let mut lines = 0;
        let r = run_bench::<B>(&config, BackendKind::Flex, &Default::default(), &mut |_| {
            lines += 1
        })
        .unwrap();
        assert_eq!(
            (r.image_size, r.base, r.batch_size, r.repeats),
            (32, 4, 4, 3)
        );
        assert!(r.timings.train_img_per_s > 0.0 && r.timings.first_step_s > 0.0);
        assert!(r.timings.gen_img_per_s.unwrap() > 0.0);
        assert_eq!(lines, 1 + 1 + 3);
        // The counters are per thread, so other tests running meanwhile do not count.
        let fast = dcgan_core::flex_kernels::calls().since(&calls_before);
        assert!(fast.conv2d > 0 && fast.adam > 0, "{fast:?}");

        // The same bench on burn's own operations says so in the table.
        let burn_ops = BenchConfig {
            fast_kernels: false,
            inference: false,
            ..config
        };
        let calls_before = dcgan_core::flex_kernels::calls();
        let r_burn = run_bench::<B>(
            &burn_ops,
            BackendKind::Flex,
            &Default::default(),
            &mut |_| {},
        )
        .unwrap();
        assert!(!r_burn.fast_kernels && r_burn.timings.train_img_per_s > 0.0);
        let burn = dcgan_core::flex_kernels::calls().since(&calls_before);
        assert_eq!(burn.total(), 0, "the fast path ran: {burn:?}");
        let table = markdown_table(&[r, r_burn]);
        assert!(
            table.contains("| flex | f32 | tiny32 | 32 | 4 | 4 |"),
            "{table}"
        );
        assert!(
            table.contains("| flex | f32, burn ops | tiny32 | 32 | 4 | 4 |"),
            "{table}"
        );
    }
}
