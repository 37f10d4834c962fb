//! Helpers shared by the end-to-end tests: run the `cats` binary and read what it printed.
#![allow(dead_code)] // each test file uses its own subset

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use burn::backend::{Autodiff, Flex};
use dcgan_core::Trainer;

/// The `cats` example binary that `cargo test` builds next to the test executables.
pub fn cats_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap();
    let bin = profile_dir
        .join("examples")
        .join(format!("cats{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} not found: run the tests with `cargo test` (which builds examples)",
        bin.display()
    );
    bin
}

pub fn cats(args: &[&str]) -> Command {
    let mut cmd = Command::new(cats_binary());
    cmd.args(["--backend", "flex"])
        .args(args)
        .env("CATGAN_PLAIN_PROGRESS", "1");
    cmd
}

pub fn run(args: &[&str]) -> Output {
    cats(args).output().unwrap()
}

pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub fn ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "cats {args:?} failed:\n{}",
        text(&out)
    );
    text(&out)
}

pub fn fails(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        !out.status.success(),
        "cats {args:?} should fail:\n{}",
        text(&out)
    );
    text(&out)
}

pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A tiny but complete schedule on the built-in cats: 16 images, batch 4 → 4 steps/epoch.
pub fn tiny_run_args<'a>(out: &'a str, steps: &'a str) -> Vec<&'a str> {
    vec![
        "train",
        "--preset",
        "tiny32",
        "--base",
        "4",
        "--batch-size",
        "4",
        "--steps",
        steps,
        "--sample-every",
        "3",
        "--checkpoint-every",
        "1",
        "--keep-checkpoints",
        "2",
        "--out",
        out,
    ]
}

/// `train --resume FROM --steps STEPS` followed by `flags`: resumes the run folder or
/// checkpoint `from` up to step `steps`.
pub fn resume_args<'a>(from: &'a str, steps: &'a str, flags: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["train", "--resume", from, "--steps", steps];
    args.extend_from_slice(flags);
    args
}

pub fn metrics_lines(run: &Path) -> Vec<String> {
    std::fs::read_to_string(run.join("metrics.csv"))
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

pub fn generator_weights(checkpoint: &Path) -> Vec<f32> {
    type B = Autodiff<Flex>;
    let (trainer, _) = Trainer::<B>::load_checkpoint(checkpoint, &Default::default()).unwrap();
    let mut w = trainer
        .generator
        .project
        .weight
        .val()
        .into_data()
        .to_vec::<f32>()
        .unwrap();
    w.extend(
        trainer
            .discriminator
            .classify
            .weight
            .val()
            .into_data()
            .to_vec::<f32>()
            .unwrap(),
    );
    w
}

/// Two runs logged the same losses step by step (throughput differs, so the first six
/// columns) and ended with the same weights.
pub fn assert_same_training(a: &Path, b: &Path) {
    let cols = |l: &String| l.split(',').take(6).collect::<Vec<_>>().join(",");
    let log = |run: &Path| metrics_lines(run).iter().map(cols).collect::<Vec<_>>();
    assert_eq!(log(a), log(b));
    assert_eq!(
        generator_weights(&a.join("checkpoints/latest.catgan")),
        generator_weights(&b.join("checkpoints/latest.catgan"))
    );
}

/// A run folder's `config.json`, parsed.
pub fn run_config(run: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).unwrap()).unwrap()
}

/// The last JSON line of a command's output (`cats bench --json` prints its results last),
/// parsed.
pub fn last_json_line(output: &str) -> serde_json::Value {
    let line = output
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON line in:\n{output}"));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

/// The variable that turns every "cannot run here" skip into a failure (`.ci/run` sets it,
/// so nothing that matters is skipped silently there).
pub const REQUIRE_ALL: &str = "CATGAN_REQUIRE_ALL_TESTS";

/// A test that cannot run on this machine (`what` is missing; `how` gets it): prints a
/// notice and lets the test return, or fails when `CATGAN_REQUIRE_ALL_TESTS=1`.
pub fn skip_or_fail(test: &str, what: &str, how: &str) {
    let message = format!("{test}: {what}. {how}");
    if std::env::var(REQUIRE_ALL).as_deref() == Ok("1") {
        panic!("{message} ({REQUIRE_ALL}=1 forbids skipping)");
    }
    // Written to stderr directly: libtest captures `eprintln!` of passing tests, and a skip
    // must be seen.
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {message} (set {REQUIRE_ALL}=1 to make this a failure)"
    );
}

/// Whether a wgpu adapter can be made here (`Err` says why not). burn panics when there is
/// none; the panic is caught.
#[cfg(feature = "wgpu")]
pub fn wgpu_adapter() -> Result<(), String> {
    use burn::backend::wgpu::{Wgpu, WgpuDevice};
    if std::env::var("CATGAN_SKIP_WGPU_TESTS").as_deref() == Ok("1") {
        return Err("CATGAN_SKIP_WGPU_TESTS=1 asks to skip the wgpu tests".into());
    }
    let probe = std::panic::catch_unwind(|| {
        let t =
            burn::tensor::Tensor::<Wgpu, 1>::from_floats([1.0, 2.0], &WgpuDevice::DefaultDevice);
        t.into_data().to_vec::<f32>().map(|_| ())
    });
    match probe {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("no wgpu device works ({e:?})")),
        Err(payload) => Err(format!(
            "no wgpu adapter could be created ({})",
            payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default()
        )),
    }
}

/// How to get Vulkan without a GPU.
pub const VULKAN_HOW: &str = "Without a GPU, install Vulkan on the CPU (lavapipe): \
     `sudo apt-get install mesa-vulkan-drivers libvulkan1`";

/// Skips (or fails, see [`skip_or_fail`]) when no wgpu adapter exists; true when the test
/// can go on.
#[cfg(feature = "wgpu")]
pub fn wgpu_or_skip(test: &str) -> bool {
    match wgpu_adapter() {
        Ok(()) => true,
        Err(why) => {
            skip_or_fail(test, &why, VULKAN_HOW);
            false
        }
    }
}
