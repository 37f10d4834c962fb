//! Helpers shared by the end-to-end tests: run the `cats` binary and read what it printed.
#![allow(dead_code)] // each test file uses its own subset

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
