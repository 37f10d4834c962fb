//! The PyTorch reference (`benches/reference/torch_dcgan.py`: the same layers, losses,
//! optimizers and step) run as a subprocess, and the side-by-side table of its figures and
//! ours.

use std::path::Path;
use std::process::Command;

use catgan::bench::{median, BenchConfig, BenchResult, StepTimings};
use dcgan_core::{ArithmeticCost, ModelPreset};
use serde::{Deserialize, Serialize};

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
    /// The timings, as ours (fields of the JSON line, not an object of their own).
    #[serde(flatten)]
    pub timings: StepTimings,
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
    run_json_script(cmd, python, script, progress)
}

/// The Python to run the reference scripts with: `flag` (a bench's `--python`), else
/// `$PYTHON`, else `python3`.
pub fn python_command(flag: Option<&str>) -> String {
    flag.map(str::to_string)
        .or_else(|| std::env::var("PYTHON").ok())
        .unwrap_or_else(|| "python3".into())
}

/// How both sides of a side-by-side bench allocate, for its headings: the same glibc
/// settings either way ([`run_json_script`]).
pub fn allocator_note() -> &'static str {
    if catgan::memory::child_allocator_env().is_empty() {
        "glibc malloc defaults on both sides"
    } else {
        "malloc reusing the heap on both sides"
    }
}

/// Runs a reference script (`cmd`: `python script args...`), passes its stderr lines to
/// `progress`, and parses the last line of its stdout that starts with `{` as `T`.
///
/// The script allocates as this process does ([`catgan::memory::child_allocator_env`]):
/// with the benches' heap reuse on (their default), PyTorch gets the same glibc settings,
/// so the ratio compares the networks, not the allocators (`--default-malloc` leaves both
/// sides at glibc's defaults).
pub fn run_json_script<T: serde::de::DeserializeOwned>(
    mut cmd: Command,
    python: &str,
    script: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<T, String> {
    let out = cmd
        .envs(catgan::memory::child_allocator_env().iter().copied())
        .stderr(std::process::Stdio::piped())
        .output()
        .map_err(|e| format!("cannot run {python} {}: {e}", script.display()))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    for line in stderr.lines() {
        progress(line);
    }
    if !out.status.success() {
        return Err(format!(
            "{} exited with {}: {}",
            script.display(),
            out.status,
            stderr.lines().last().unwrap_or("")
        ));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
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
        let (o, torch) = (&row.ours, row.torch.as_ref());
        let (ours, t) = (&o.timings, torch.map(|t| &t.timings));
        out.push_str(&format!(
            "| {}:{}:{} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            o.preset,
            o.base,
            o.batch_size,
            o.image_size,
            o.backend,
            f(Some(ours.train_img_per_s)),
            f(t.map(|t| t.train_img_per_s)),
            ratio(Some(ours.train_img_per_s), t.map(|t| t.train_img_per_s)),
            // Time ratio of the fastest steps = img/s ratio (same batch).
            ratio(
                t.map(|t| t.best_step_s).filter(|&b| b > 0.0),
                Some(ours.best_step_s).filter(|&b| b > 0.0)
            ),
            f(ours.gen_img_per_s),
            f(t.and_then(|t| t.gen_img_per_s)),
            ratio(ours.gen_img_per_s, t.and_then(|t| t.gen_img_per_s)),
            torch.map_or("–".into(), |t| if t.params == o.params {
                "yes".to_string()
            } else {
                format!("**no** ({} vs {})", o.params, t.params)
            }),
        ));
    }
    out
}

/// Useful floating-point operations of one training step per image of `row`'s
/// configuration ([`ArithmeticCost::training_flops_per_image`]), if its preset is known.
fn training_flops(row: &SideBySide) -> Option<f64> {
    let preset: ModelPreset = row.ours.preset.parse().ok()?;
    let (g, d) = preset.configs(Some(row.ours.base));
    Some(ArithmeticCost::of(&g, &d).training_flops_per_image())
}

/// Where both stand against the machine: achieved training GFLOP/s (the useful work of a
/// step, [`ArithmeticCost::training_flops_per_image`], the same count for both) and its
/// share of the CPU's fp32 `peak` (GFLOP/s, if known), and each side's peak resident
/// memory.
pub fn machine_table(rows: &[SideBySide], peak: Option<f64>) -> String {
    let mut out = String::from(
        "| config (preset:base:batch) | GFLOP per image | ours GFLOP/s | ours % of peak | PyTorch GFLOP/s | PyTorch % of peak | ours peak RSS (MiB) | PyTorch peak RSS (MiB) | RSS ours / PyTorch |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    let dash = || "–".to_string();
    for row in rows {
        let flops = training_flops(row);
        let rate = |img_per_s: Option<f64>| Some(flops? * img_per_s? / 1e9);
        let ours = rate(Some(row.ours.timings.train_img_per_s));
        let torch = rate(row.torch.as_ref().map(|t| t.timings.train_img_per_s));
        let gflops = |v: Option<f64>| v.map_or_else(dash, |v| format!("{v:.1}"));
        let share = |v: Option<f64>| match (v, peak) {
            (Some(v), Some(p)) if p > 0.0 => format!("{:.0}%", 100.0 * v / p),
            _ => dash(),
        };
        let ours_rss = row.ours.timings.peak_rss_mib;
        let torch_rss = row.torch.as_ref().and_then(|t| t.timings.peak_rss_mib);
        let mib = |v: Option<f64>| v.map_or_else(dash, |v| format!("{v:.0}"));
        let rss_ratio = match (ours_rss, torch_rss) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
            _ => dash(),
        };
        out.push_str(&format!(
            "| {}:{}:{} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            row.ours.preset,
            row.ours.base,
            row.ours.batch_size,
            flops.map_or_else(dash, |f| format!("{:.2}", f / 1e9)),
            gflops(ours),
            share(ours),
            gflops(torch),
            share(torch),
            mib(ours_rss),
            mib(torch_rss),
            rss_ratio,
        ));
    }
    out
}

/// The field-by-field median of several runs' timings: timings and rates are each the
/// median of the runs' medians; the best step is the best of all.
fn median_timings(runs: &[&StepTimings]) -> StepTimings {
    let m = |f: fn(&StepTimings) -> f64| median(&runs.iter().map(|r| f(r)).collect::<Vec<_>>());
    let gen: Vec<f64> = runs.iter().filter_map(|r| r.gen_img_per_s).collect();
    StepTimings {
        first_step_s: m(|r| r.first_step_s),
        train_step_s: m(|r| r.train_step_s),
        train_img_per_s: m(|r| r.train_img_per_s),
        train_spread: m(|r| r.train_spread),
        best_step_s: runs.iter().map(|r| r.best_step_s).fold(f64::MAX, f64::min),
        gen_img_per_s: (!gen.is_empty()).then(|| median(&gen)),
        peak_rss_mib: {
            let rss: Vec<f64> = runs.iter().filter_map(|r| r.peak_rss_mib).collect();
            (!rss.is_empty()).then(|| median(&rss))
        },
    }
}

/// The median of several of our runs of the same configuration, field by field (the
/// first run's fields where there is nothing to take a median of).
pub fn median_result(runs: &[BenchResult]) -> Option<BenchResult> {
    let first = runs.first()?.clone();
    let timings = median_timings(&runs.iter().map(|r| &r.timings).collect::<Vec<_>>());
    Some(BenchResult { timings, ..first })
}

/// The median of several of PyTorch's runs of the same configuration.
pub fn median_torch(runs: &[TorchResult]) -> Option<TorchResult> {
    let first = runs.first()?.clone();
    let timings = median_timings(&runs.iter().map(|r| &r.timings).collect::<Vec<_>>());
    Some(TorchResult { timings, ..first })
}

#[cfg(test)]
mod tests {
    use super::*;
    use dcgan_core::Precision;

    #[test]
    fn ratio_table_divides_ours_by_torch() {
        let ours = BenchResult {
            backend: "flex".into(),
            preset: "dcgan64".into(),
            image_size: 64,
            base: 16,
            batch_size: 16,
            params: 10,
            timings: StepTimings {
                first_step_s: 1.0,
                train_step_s: 0.5,
                train_img_per_s: 32.0,
                train_spread: 0.1,
                best_step_s: 0.4,
                gen_img_per_s: Some(100.0),
                peak_rss_mib: Some(300.0),
            },
            repeats: 3,
            warmup: 1,
            precision: Precision::F32,
            fast_kernels: true,
            replicas: 1,
            first_step_kernels: None,
            first_step_autotuned: None,
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
            timings: StepTimings {
                first_step_s: 0.1,
                train_step_s: 0.05,
                train_img_per_s: 320.0,
                train_spread: 0.1,
                best_step_s: 0.04,
                gen_img_per_s: Some(400.0),
                peak_rss_mib: Some(200.0),
            },
        };
        let table = ratio_table(&[SideBySide {
            ours: ours.clone(),
            torch: Some(torch.clone()),
            rounds: 1,
        }]);
        assert!(
            table.contains("| dcgan64:16:16 | 64 | flex | 32.0 | 320.0 | 0.10× | 0.10× | 100.0 | 400.0 | 0.25× | yes |"),
            "{table}"
        );
        // dcgan64 base 16: 0.447 GFLOP per image; 32 img/s = 14.3 GFLOP/s, 320 = 143.1.
        let table = machine_table(
            &[SideBySide {
                ours: ours.clone(),
                torch: Some(torch),
                rounds: 1,
            }],
            Some(286.2),
        );
        assert!(
            table
                .contains("| dcgan64:16:16 | 0.45 | 14.3 | 5% | 143.1 | 50% | 300 | 200 | 1.50× |"),
            "{table}"
        );
        let mut slower = ours.clone();
        slower.timings.train_img_per_s = 16.0;
        slower.timings.gen_img_per_s = None;
        let m = median_result(&[ours.clone(), slower.clone(), ours]).unwrap();
        assert_eq!(m.timings.train_img_per_s, 32.0);
        assert_eq!(m.timings.gen_img_per_s, Some(100.0));
    }

    #[test]
    fn the_reference_json_line_reads_and_writes_its_timings_as_fields() {
        // As `torch_dcgan.py` prints it (with fields we do not keep).
        let line = r#"{"framework": "torch", "torch_version": "2.5.1", "device": "cpu", "device_name": "x", "preset": "dcgan64", "image_size": 64, "base": 16, "batch_size": 16, "threads": 2, "precision": "fp32", "channels_last": false, "params": 10, "first_step_s": 0.25, "train_step_s": 0.5, "train_img_per_s": 32.0, "train_spread": 0.125, "best_step_s": 0.375, "gen_img_per_s": null, "repeats": 3, "warmup": 1, "d_loss": 1.5, "g_loss": 0.5}"#;
        let t: TorchResult = serde_json::from_str(line).unwrap();
        assert_eq!(
            (t.params, t.timings.first_step_s, t.timings.best_step_s),
            (10, 0.25, 0.375)
        );
        assert_eq!(t.timings.gen_img_per_s, None);
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            r#"{"torch_version":"2.5.1","device":"cpu","device_name":"x","preset":"dcgan64","image_size":64,"base":16,"batch_size":16,"threads":2,"precision":"fp32","params":10,"first_step_s":0.25,"train_step_s":0.5,"train_img_per_s":32.0,"train_spread":0.125,"best_step_s":0.375,"gen_img_per_s":null}"#
        );
    }
}
