//! The PyTorch reference (`benches/reference/torch_dcgan.py`: the same layers, losses,
//! optimizers and step) run as a subprocess, and the side-by-side table of its figures and
//! ours.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

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
    let cmd = torch_command(python, script, config, threads, extra);
    run_json_script(cmd, python, script, progress)
}

/// The command line of one run of the PyTorch reference script for `config`.
fn torch_command(
    python: &str,
    script: &Path,
    config: &BenchConfig,
    threads: usize,
    extra: &[&str],
) -> Command {
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
    cmd
}

/// The PyTorch reference stepped from here, one training step at a time (its
/// `--lockstep` mode): [`Self::start`] builds the model and runs its warm-up steps,
/// [`Self::step`] runs one timed step and returns its seconds, [`Self::finish`] ends the
/// run and returns its figures. Between steps the script blocks on its standard input,
/// using no CPU. Its progress lines go to this process's standard error.
pub struct TorchStepper {
    child: Child,
    input: Option<ChildStdin>,
    output: BufReader<ChildStdout>,
    script: PathBuf,
    times: Vec<f64>,
}

impl TorchStepper {
    /// Starts the reference script for `config` in lockstep mode and waits until its
    /// warm-up steps are done.
    pub fn start(
        python: &str,
        script: &Path,
        config: &BenchConfig,
        threads: usize,
    ) -> Result<Self, String> {
        let mut child = torch_command(python, script, config, threads, &["--lockstep"])
            .envs(catgan::memory::child_allocator_env().iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run {python} {}: {e}", script.display()))?;
        let input = child.stdin.take();
        let output = BufReader::new(child.stdout.take().expect("stdout was piped"));
        let mut stepper = TorchStepper {
            child,
            input,
            output,
            script: script.to_path_buf(),
            times: Vec::new(),
        };
        match stepper.read_line()?.as_str() {
            "ready" => Ok(stepper),
            other => Err(stepper.failed(&format!("said {other:?} instead of \"ready\""))),
        }
    }

    /// Runs one timed training step in the script; its seconds.
    pub fn step(&mut self) -> Result<f64, String> {
        let input = self.input.as_mut().expect("open until finish");
        writeln!(input, "step")
            .and_then(|()| input.flush())
            .map_err(|e| self.failed(&format!("cannot be stepped: {e}")))?;
        let line = self.read_line()?;
        let seconds: f64 = line
            .parse()
            .map_err(|_| self.failed(&format!("answered {line:?} to a step")))?;
        self.times.push(seconds);
        Ok(seconds)
    }

    /// Every step's seconds so far, in order.
    pub fn times(&self) -> &[f64] {
        &self.times
    }

    /// Ends the run (the script then measures its peak memory and, unless disabled, its
    /// inference) and parses its JSON line.
    pub fn finish(mut self) -> Result<TorchResult, String> {
        drop(self.input.take());
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut self.output, &mut rest)
            .map_err(|e| self.failed(&format!("cannot be read: {e}")))?;
        let status = self
            .child
            .wait()
            .map_err(|e| self.failed(&format!("cannot be waited for: {e}")))?;
        if !status.success() {
            return Err(self.failed(&format!("exited with {status}")));
        }
        last_json_line(&rest).map_err(|e| self.failed(&e))
    }

    fn read_line(&mut self) -> Result<String, String> {
        let mut line = String::new();
        match self.output.read_line(&mut line) {
            Ok(0) => Err(self.failed("ended early (its errors are above)")),
            Ok(_) => Ok(line.trim().to_string()),
            Err(e) => Err(self.failed(&format!("cannot be read: {e}"))),
        }
    }

    fn failed(&self, what: &str) -> String {
        format!("{} (lockstep) {what}", self.script.display())
    }
}

impl Drop for TorchStepper {
    fn drop(&mut self) {
        // A run abandoned on an error: do not leave the script waiting for a step.
        drop(self.input.take());
        let _ = self.child.wait();
    }
}

/// Step by step `PyTorch seconds / ours` of a lockstep run (each pair measured back to
/// back): the median, the lowest and the highest, or `None` without pairs.
pub fn pair_ratios(torch: &[f64], ours: &[f64]) -> Option<(f64, f64, f64)> {
    let ratios: Vec<f64> = torch
        .iter()
        .zip(ours)
        .filter(|(_, &o)| o > 0.0)
        .map(|(t, o)| t / o)
        .collect();
    let low = ratios.iter().copied().reduce(f64::min)?;
    let high = ratios.iter().copied().reduce(f64::max)?;
    Some((median(&ratios), low, high))
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
    last_json_line(&String::from_utf8_lossy(&out.stdout))
        .map_err(|e| format!("{} {e}", script.display()))
}

/// The last line of a reference script's standard output that starts with `{`, parsed
/// as `T` (what it printed before is progress).
fn last_json_line<T: serde::de::DeserializeOwned>(stdout: &str) -> Result<T, String> {
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .ok_or("printed no JSON line")?;
    serde_json::from_str(line).map_err(|e| format!("printed bad JSON: {e}"))
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
    /// With `--lockstep`: every step pair of every round, `[PyTorch seconds, ours]`, each
    /// pair measured back to back.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lockstep_pairs: Vec<[f64; 2]>,
}

/// The lockstep table: per config, the median over its step pairs of PyTorch's step time
/// over ours (= the img/s ratio; each pair measured back to back, so a machine whose
/// speed drifts slows both sides of a pair alike), with the lowest and highest pair.
pub fn lockstep_table(rows: &[SideBySide]) -> String {
    let mut out = String::from(
        "| config (preset:base:batch) | step pairs | ratio train, median of pairs | lowest pair | highest pair |\n\
         |---|---|---|---|---|\n",
    );
    for row in rows {
        let (torch, ours): (Vec<f64>, Vec<f64>) =
            row.lockstep_pairs.iter().map(|[t, o]| (*t, *o)).unzip();
        let Some((median, low, high)) = pair_ratios(&torch, &ours) else {
            continue;
        };
        out.push_str(&format!(
            "| {}:{}:{} | {} | **{median:.2}×** | {low:.2}× | {high:.2}× |\n",
            row.ours.preset,
            row.ours.base,
            row.ours.batch_size,
            torch.len(),
        ));
    }
    out
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
    fn pair_ratios_divide_step_by_step() {
        // PyTorch 0.3 s against our 0.2 s is 1.5; pairs, not medians of each side.
        let (median, low, high) =
            pair_ratios(&[0.3, 0.9, 0.4, 0.5], &[0.2, 0.3, 0.4, 0.25]).unwrap();
        assert_eq!((low, high), (1.0, 3.0));
        assert_eq!(median, 1.75);
        assert!(pair_ratios(&[], &[0.1]).is_none());
        assert!(
            pair_ratios(&[0.1], &[0.0]).is_none(),
            "a zero-second step is no pair"
        );
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
            step_times_s: Vec::new(),
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
            lockstep_pairs: Vec::new(),
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
                lockstep_pairs: Vec::new(),
            }],
            Some(286.2),
        );
        assert!(
            table
                .contains("| dcgan64:16:16 | 0.45 | 14.3 | 5% | 143.1 | 50% | 300 | 200 | 1.50× |"),
            "{table}"
        );
        // Step pairs 1.5×, 1.0×, 2.0×: their median, not a ratio of each side's median.
        let table = lockstep_table(&[SideBySide {
            ours: ours.clone(),
            torch: None,
            rounds: 1,
            lockstep_pairs: vec![[0.3, 0.2], [0.2, 0.2], [0.5, 0.25]],
        }]);
        assert!(
            table.contains("| dcgan64:16:16 | 3 | **1.50×** | 1.00× | 2.00× |"),
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
