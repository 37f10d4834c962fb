//! A training run's TensorBoard event files, read back by TensorBoard itself: PyPI's
//! `tensorboard` package and its `EventAccumulator` (what `tensorboard --logdir` uses to
//! load a run), through `python3`. Without that package the test is skipped with a notice,
//! or fails under `CATGAN_REQUIRE_ALL_TESTS=1` (`.ci/run` installs it).

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

/// Prints what TensorBoard loads from a run folder as JSON: every scalar (step, value),
/// image (step, width, height, PNG size) and text (step, text) by tag.
const READER: &str = r#"
import json, sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
acc = EventAccumulator(sys.argv[1], size_guidance={"scalars": 0, "images": 0, "tensors": 0})
acc.Reload()
tags = acc.Tags()
print(json.dumps({
    "scalars": {t: [[e.step, e.value] for e in acc.Scalars(t)] for t in tags["scalars"]},
    "images": {t: [[e.step, e.width, e.height, len(e.encoded_image_string)]
                   for e in acc.Images(t)] for t in tags["images"]},
    "texts": {t: [[e.step, e.tensor_proto.string_val[0].decode()] for e in acc.Tensors(t)]
              for t in tags["tensors"]},
}))
"#;

/// TensorBoard's view of `run`, or `None` (after the skip notice) without the package.
fn tensorboard_view(test: &str, run: &Path) -> Option<serde_json::Value> {
    let probe = Command::new("python3")
        .args(["-c", "import tensorboard"])
        .output();
    if !probe.is_ok_and(|out| out.status.success()) {
        skip_or_fail(
            test,
            "python3 cannot import PyPI's `tensorboard` package",
            "Install it with `python3 -m pip install tensorboard` (or put it on PYTHONPATH)",
        );
        return None;
    }
    let out = Command::new("python3")
        .args(["-c", READER, s(run)])
        .output()
        .unwrap();
    assert!(out.status.success(), "the reader failed:\n{}", text(&out));
    Some(serde_json::from_slice(&out.stdout).unwrap())
}

fn steps_and_values(view: &serde_json::Value, tag: &str) -> (Vec<u64>, Vec<f64>) {
    let events = view["scalars"][tag]
        .as_array()
        .unwrap_or_else(|| panic!("no scalar {tag:?} in {view}"));
    events
        .iter()
        .map(|e| (e[0].as_u64().unwrap(), e[1].as_f64().unwrap()))
        .unzip()
}

/// A run stopped at step 6 and resumed to 10 shows in TensorBoard as one run: every step
/// once, with the values of `metrics.csv`, the preview grids at their steps, the settings.
#[test]
fn tensorboard_reads_a_resumed_run_as_metrics_csv_says() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    ok(&tiny_run_args(s(&run), "6"));
    ok(&["train", "--resume", s(&run), "--steps", "10"]);
    let files: Vec<_> = std::fs::read_dir(&run)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.starts_with("events.out.tfevents."))
        .collect();
    assert_eq!(files.len(), 2, "one events file per session: {files:?}");
    let Some(view) = tensorboard_view("tensorboard_reads_a_resumed_run", &run) else {
        return;
    };

    let csv = catgan::run_dir::read_metrics(&run.join("metrics.csv")).unwrap();
    // The same f32 values; the CSV prints the losses in their shortest exact form and
    // the throughput to 2 decimals.
    type Column = fn(&catgan::run_dir::MetricsRow) -> f32;
    let columns: [(&str, Column, f64); 5] = [
        ("loss/d", |r| r.d_loss, 1e-6),
        ("loss/g", |r| r.g_loss, 1e-6),
        ("D/real D(x)", |r| r.d_real, 1e-6),
        ("D/fake D(G(z))", |r| r.d_fake, 1e-6),
        ("speed/img_per_s", |r| r.img_per_s, 5e-3),
    ];
    for (tag, column, tolerance) in columns {
        let (steps, values) = steps_and_values(&view, tag);
        assert_eq!(steps, (1..=10).collect::<Vec<_>>(), "{tag}");
        let want: Vec<f64> = csv.iter().map(|r| column(r) as f64).collect();
        for (step, (got, want)) in values.iter().zip(&want).enumerate() {
            assert!(
                (got - want).abs() <= tolerance * want.abs().max(1.0),
                "{tag} at step {}: TensorBoard {got}, metrics.csv {want}",
                step + 1
            );
        }
    }
    let config = run_config(&run);
    for (tag, key) in [("lr/d", "lr_d"), ("lr/g", "lr_g")] {
        let (_, values) = steps_and_values(&view, tag);
        let lr = config["trainer"][key].as_f64().unwrap();
        assert!(
            values.iter().all(|v| (v - lr).abs() <= 1e-6 * lr),
            "{tag}: {values:?}"
        );
    }

    // Previews every 3 steps and at the end of each session, 8×8 cells of 32 px.
    let images = view["images"]["samples"].as_array().unwrap();
    let steps: Vec<u64> = images.iter().map(|e| e[0].as_u64().unwrap()).collect();
    assert_eq!(steps, [3, 6, 9, 10]);
    for image in images {
        assert_eq!(
            (image[1].as_u64(), image[2].as_u64()),
            (Some(274), Some(274))
        );
        let step = image[0].as_u64().unwrap();
        let png = std::fs::metadata(run.join(format!("samples/step-{step:07}.png"))).unwrap();
        assert_eq!(
            image[3].as_u64(),
            Some(png.len()),
            "the same PNG as samples/"
        );
    }

    // The settings, once per session.
    let texts = view["texts"]["config"].as_array().unwrap();
    let steps: Vec<u64> = texts.iter().map(|e| e[0].as_u64().unwrap()).collect();
    assert_eq!(steps, [0, 6]);
    let text = texts[1][1].as_str().unwrap();
    assert!(text.contains("\"preset\": \"tiny32\""), "{text}");
}

#[test]
fn no_tensorboard_writes_no_event_files() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let mut args = tiny_run_args(s(&run), "4");
    args.push("--no-tensorboard");
    ok(&args);
    assert!(run.join("metrics.csv").is_file());
    let names: Vec<_> = std::fs::read_dir(&run)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(!names.iter().any(|n| n.contains("tfevents")), "{names:?}");
    assert_eq!(run_config(&run)["schedule"]["tensorboard"], false);
    // A resume keeps it off.
    ok(&["train", "--resume", s(&run), "--steps", "6"]);
    assert!(!std::fs::read_dir(&run).unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .contains("tfevents")));
}
