//! `cats serve` end to end: a real server on a free loopback port, talked to over HTTP
//! with a minimal client (bad parameters, path traversal, foreign `Host` names, a
//! checkpoint that appears while it runs), and both pages loaded in headless Chromium
//! (their DOM after the JavaScript ran, and screenshots). Without `chromium` the browser
//! test is skipped with a notice, or fails under `CATGAN_REQUIRE_ALL_TESTS=1` (`.ci/run`
//! installs it). `CATGAN_SERVE_SCREENSHOTS=DIR` keeps the screenshots in `DIR`.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

/// A running `cats serve`, killed when dropped (also when a test fails).
struct Served {
    child: Child,
    port: u16,
    stderr: Arc<Mutex<String>>,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Served {
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn get(&self, path: &str) -> Reply {
        http_get(self.port, path, &format!("127.0.0.1:{}", self.port))
    }
}

/// Starts `cats serve ARGS --port 0` and reads the port from its `serving http://…` line.
fn serve(args: &[&str]) -> Served {
    let all: Vec<&str> = ["serve"]
        .into_iter()
        .chain(args.iter().copied())
        .chain(["--port", "0"])
        .collect();
    let mut child = cats(&all)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = Arc::new(Mutex::new(String::new()));
    let sink = stderr.clone();
    let mut err = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = err.read_to_string(&mut text);
        sink.lock().unwrap().push_str(&text);
    });
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("serving http://127.0.0.1:") {
                let _ = tx.send(rest.trim_end_matches('/').parse::<u16>().unwrap());
            }
        }
    });
    let mut served = Served {
        child,
        port: 0,
        stderr,
    };
    let deadline = Instant::now() + Duration::from_secs(180);
    while Instant::now() < deadline {
        if let Ok(port) = rx.recv_timeout(Duration::from_millis(200)) {
            served.port = port;
            return served;
        }
        if let Some(status) = served.child.try_wait().unwrap() {
            std::thread::sleep(Duration::from_millis(200));
            panic!(
                "cats serve {args:?} exited ({status}) before serving:\n{}",
                served.stderr.lock().unwrap()
            );
        }
    }
    panic!("cats serve {args:?} printed no `serving` line in 180 s");
}

/// `cats serve ARGS` must fail at start; returns what it printed.
fn serve_fails(args: &[&str]) -> String {
    let all: Vec<&str> = ["serve"].into_iter().chain(args.iter().copied()).collect();
    let out = cats(&all).stdin(Stdio::null()).output().unwrap();
    assert!(
        !out.status.success(),
        "cats serve {args:?} should fail:\n{}",
        text(&out)
    );
    text(&out)
}

struct Reply {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Reply {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }

    fn json(&self) -> serde_json::Value {
        assert_eq!(self.status, 200, "{}", self.text());
        serde_json::from_slice(&self.body).unwrap()
    }

    fn png(&self) -> image::RgbImage {
        assert_eq!(self.status, 200, "{}", self.text());
        assert_eq!(self.header("content-type").as_deref(), Some("image/png"));
        image::load_from_memory(&self.body).unwrap().to_rgb8()
    }
}

/// One HTTP/1.1 GET with the request target sent exactly as given (no normalisation,
/// unlike a browser or curl), so `..` and `%2e%2e` reach the server as written.
fn http_get(port: u16, target: &str, host: &str) -> Reply {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    write!(
        stream,
        "GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("no end of headers");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut body = raw[split + 4..].to_vec();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("no status");
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    Reply { status, head, body }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n").unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&data[..line_end]).unwrap().trim(), 16)
                .unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[line_end + 2..line_end + 2 + size]);
        data = &data[line_end + 2 + size + 2..];
    }
}

fn tiny_run(dir: &Path) -> PathBuf {
    let run = dir.join("run");
    ok(&tiny_run_args(s(&run), "6"));
    run
}

#[test]
fn serve_answers_the_api_and_refuses_bad_parameters_and_paths_outside_the_run() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tiny_run(tmp.path());
    let server = serve(&["--run", s(&run)]);

    // The run: config, every metrics row, the preview steps, the loaded checkpoint.
    let api = server.get("/api/run").json();
    assert_eq!(api["run"]["config"]["preset"], "tiny32", "{api}");
    let steps: Vec<u64> = api["run"]["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, (1..=6).collect::<Vec<_>>());
    assert_eq!(api["run"]["samples"], serde_json::json!([3, 6]));
    assert_eq!(api["generator"]["loaded"]["step"], 6, "{api}");
    let later = server.get("/api/run?after=4").json();
    assert_eq!(later["run"]["metrics"].as_array().unwrap().len(), 2);
    assert_eq!(later["run"]["metrics_total"], 6);

    // Preview grids by integer step, byte for byte the run's file.
    let sample = server.get("/api/samples/6");
    assert_eq!(sample.status, 200, "{}", sample.text());
    assert_eq!(
        sample.body,
        std::fs::read(run.join("samples/step-0000006.png")).unwrap()
    );
    assert_eq!(server.get("/api/samples/0000003").status, 200);
    assert_eq!(server.get("/api/samples/5").status, 404);

    // Cats: a grid is exactly `cats generate --seed S -n N --grid` (the same latents and
    // generator), a walk's ends are the first cats of their seeds.
    let grid = server.get("/api/generate?seed=9&count=4").png();
    let out = tmp.path().join("generated");
    ok(&[
        "generate",
        "--checkpoint",
        s(&run),
        "-n",
        "4",
        "--grid",
        "--seed",
        "9",
        "--out",
        s(&out),
    ]);
    assert_eq!(
        grid,
        image::open(out.join("grid.png")).unwrap().to_rgb8(),
        "the server's grid differs from cats generate's"
    );
    let size = 32; // tiny32
    let one = server.get("/api/generate?seed=9&count=1").png();
    assert_eq!(one.dimensions(), (size + 4, size + 4));
    let start = server.get("/api/walk?from=9&to=10&t=0").png();
    assert_eq!(start, one);
    let strip = server.get("/api/walk?from=9&to=10&frames=5").png();
    assert_eq!(strip.dimensions(), (5 * (size + 2) + 2, size + 4));
    assert_eq!(server.get("/api/walk?from=9&to=10&t=0.5").status, 200);
    let timed = server.get("/api/generate?seed=1&count=64");
    assert_eq!(timed.status, 200, "{}", timed.text());
    assert!(timed.header("x-draw-ms").is_some());

    // Bad parameters: 400 and a message that says what is allowed.
    for (target, says) in [
        (
            "/api/generate?seed=abc",
            "seed=abc: expected a whole number",
        ),
        ("/api/generate?seed=-1", "expected a whole number"),
        (
            "/api/generate?seed=18446744073709551616",
            "expected a whole number",
        ),
        (
            "/api/generate?count=0",
            "count=0: give a whole number from 1 to 64",
        ),
        (
            "/api/generate?count=1000",
            "count=1000: give a whole number from 1 to 64",
        ),
        ("/api/generate?count=abc", "from 1 to 64"),
        ("/api/generate?seed=1&seed=2", "given twice"),
        ("/api/generate?size=1024", "unknown parameter `size`"),
        (
            "/api/walk?from=1&to=2&t=2",
            "t=2: give a number from 0 to 1",
        ),
        ("/api/walk?from=1&to=2&t=nan", "give a number from 0 to 1"),
        ("/api/walk?from=1&to=2&t=-0.5", "give a number from 0 to 1"),
        ("/api/walk?from=1&t=0.5", "missing parameter `to`"),
        (
            "/api/walk?from=1&to=2&frames=1",
            "frames=1: give a whole number from 2 to 32",
        ),
        ("/api/walk?from=1&to=2&frames=100", "from 2 to 32"),
        ("/api/walk?from=1&to=2&t=0.5&frames=4", "either t or frames"),
        ("/api/run?after=x", "after=x: expected a whole number"),
        ("/api/samples/abc", "expected a whole number"),
        ("/api/samples/-3", "expected a whole number"),
        ("/api/samples/3.0", "expected a whole number"),
    ] {
        let reply = server.get(target);
        assert_eq!(reply.status, 400, "{target}: {}", reply.text());
        assert!(reply.text().contains(says), "{target}: {}", reply.text());
    }

    // Nothing outside the run folder: traversal in every spelling is refused, and the
    // answers never carry a file's contents.
    std::fs::write(tmp.path().join("secret.txt"), "top secret").unwrap();
    for target in [
        "/api/samples/../../secret.txt",
        "/api/samples/..%2f..%2fsecret.txt",
        "/api/samples/%2e%2e%2f%2e%2e%2fsecret.txt",
        "/api/samples/%2e%2e",
        "/api/samples/..",
        "/api/samples//etc/passwd",
        "/api/samples/%2fetc%2fpasswd",
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/run/../../secret.txt",
        "/static/../../etc/passwd",
        "//etc/passwd",
        "/etc/passwd",
        "/config.json",
        "/metrics.csv",
        "/samples/step-0000006.png",
        "/checkpoints/latest.catgan",
    ] {
        let reply = server.get(target);
        assert!(
            [400, 404].contains(&reply.status),
            "{target}: {} {}",
            reply.status,
            reply.text()
        );
        assert!(!reply.text().contains("top secret") && !reply.text().contains("root:"));
    }
    let absolute = format!("/api/samples/{}", tmp.path().join("secret.txt").display());
    assert_eq!(server.get(&absolute).status, 404);

    // Pages and assets come from the binary; unknown paths are 404.
    for (path, kind) in [
        ("/run", "text/html"),
        ("/generator", "text/html"),
        ("/app.js", "text/javascript"),
        ("/style.css", "text/css"),
    ] {
        let reply = server.get(path);
        assert_eq!(reply.status, 200, "{path}");
        assert!(
            reply.header("content-type").unwrap().starts_with(kind),
            "{path}"
        );
        assert_eq!(
            reply.header("x-content-type-options").as_deref(),
            Some("nosniff")
        );
        assert!(reply.header("content-security-policy").is_some());
    }
    assert_eq!(server.get("/").status, 303);
    assert_eq!(server.get("/nope").status, 404);
    assert_eq!(server.get("/api/nope").status, 404);

    // A loopback server answers only loopback names (no DNS rebinding).
    let foreign = http_get(server.port, "/api/run", "evil.example:8080");
    assert_eq!(foreign.status, 403, "{}", foreign.text());
    assert_eq!(http_get(server.port, "/api/run", "localhost").status, 200);

    // Only a checkpoint: the Run page has no run folder, the generator works.
    let checkpoint = run.join("checkpoints/latest.catgan");
    let only = serve(&["--checkpoint", s(&checkpoint)]);
    let api = only.get("/api/run").json();
    assert!(api["run"].is_null());
    assert!(
        api["message"].as_str().unwrap().contains("no run folder"),
        "{api}"
    );
    assert_eq!(only.get("/api/samples/6").status, 404);
    assert_eq!(only.get("/api/generate?seed=9&count=4").png(), grid);
    drop(only);

    // A run whose first checkpoint is not written yet: the generator says so (503), then
    // follows the file when it appears.
    let young = tmp.path().join("young");
    std::fs::create_dir_all(young.join("checkpoints")).unwrap();
    std::fs::copy(run.join("config.json"), young.join("config.json")).unwrap();
    let live = serve(&["--run", s(&young)]);
    let status = live.get("/api/generator").json();
    assert!(status["loaded"].is_null());
    assert!(
        status["error"]
            .as_str()
            .unwrap()
            .contains("no checkpoint yet"),
        "{status}"
    );
    let none = live.get("/api/generate?seed=1");
    assert_eq!(none.status, 503);
    assert!(none.text().contains("no checkpoint yet"), "{}", none.text());
    std::fs::copy(&checkpoint, young.join("checkpoints/latest.catgan")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = live.get("/api/generator").json();
        if status["loaded"]["step"] == 6 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new checkpoint was not loaded: {status}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(live.get("/api/generate?seed=9&count=4").png(), grid);
}

#[test]
fn serve_start_errors_say_what_is_wrong() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no-such-run");
    let err = serve_fails(&["--run", s(&missing)]);
    assert!(err.contains("no such run folder"), "{err}");
    let err = serve_fails(&["--run", s(tmp.path())]);
    assert!(err.contains("not a catgan run folder"), "{err}");
    let err = serve_fails(&["--checkpoint", s(&missing.join("latest.catgan"))]);
    assert!(
        err.contains("no such run folder or checkpoint file"),
        "{err}"
    );
    let err = serve_fails(&[]);
    assert!(
        err.contains("--run DIR") && err.contains("--checkpoint FILE"),
        "{err}"
    );
    let garbage = tmp.path().join("garbage.catgan");
    std::fs::write(&garbage, b"not a checkpoint").unwrap();
    let err = serve_fails(&["--checkpoint", s(&garbage)]);
    assert!(err.contains("not a catgan checkpoint"), "{err}");

    // A port in use.
    let run = tmp.path().join("run");
    std::fs::create_dir_all(&run).unwrap();
    std::fs::write(run.join("config.json"), "{}").unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let err = serve_fails(&["--run", s(&run), "--port", &port]);
    assert!(
        err.contains(&format!("cannot listen on 127.0.0.1:{port}")) && err.contains("--port 0"),
        "{err}"
    );
    // Any other host is allowed, with a warning.
    let mut wide = cats(&[
        "serve",
        "--run",
        s(&run),
        "--port",
        "0",
        "--host",
        "0.0.0.0",
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let mut first = String::new();
    BufReader::new(wide.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let _ = wide.kill();
    let out = wide.wait_with_output().unwrap();
    assert!(first.starts_with("serving http://0.0.0.0:"), "{first}");
    let warning = String::from_utf8_lossy(&out.stderr);
    assert!(
        warning.contains("warning") && warning.contains("anyone who can reach"),
        "{warning}"
    );
}

/// `chromium` or `chromium-browser` on PATH.
fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser"].iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

/// Runs headless Chromium on `url` with `extra` flags (killed after 120 s); returns stdout.
fn headless(browser: &Path, profile: &Path, url: &str, extra: &[&str]) -> String {
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--hide-scrollbars",
            "--virtual-time-budget=8000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish {url} in 120 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    reader.join().unwrap()
}

/// The opening tag of the element with `id` in a serialised DOM.
fn tag<'a>(dom: &'a str, id: &str) -> &'a str {
    let at = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no element #{id} in the DOM:\n{dom}"));
    let start = dom[..at].rfind('<').unwrap();
    let end = at + dom[at..].find('>').unwrap();
    &dom[start..=end]
}

/// An attribute's value in an opening tag.
fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let at = tag.find(&format!(" {name}=\""))? + name.len() + 3;
    Some(&tag[at..at + tag[at..].find('"')?])
}

/// The text right after the element with `id` opens.
fn text_of<'a>(dom: &'a str, id: &str) -> &'a str {
    let t = tag(dom, id);
    let start = dom.find(t).unwrap() + t.len();
    &dom[start..start + dom[start..].find('<').unwrap()]
}

/// A screenshot: a PNG of the window's size with more than a few colours (drawn, not
/// blank); copied to `CATGAN_SERVE_SCREENSHOTS` when set.
fn check_screenshot(path: &Path) {
    let shot = image::open(path).unwrap().to_rgb8();
    assert_eq!(shot.dimensions(), (1280, 900), "{}", path.display());
    let colours: std::collections::HashSet<[u8; 3]> = shot.pixels().map(|p| p.0).collect();
    assert!(colours.len() > 50, "{} looks blank", path.display());
    if let Some(dir) = std::env::var_os("CATGAN_SERVE_SCREENSHOTS") {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(path, Path::new(&dir).join(path.file_name().unwrap())).unwrap();
    }
}

#[test]
fn serve_pages_render_in_headless_chromium() {
    let test = "serve_pages_render_in_headless_chromium";
    let Some(browser) = chromium() else {
        skip_or_fail(
            test,
            "chromium is not installed",
            "Install it with `sudo apt-get install chromium`",
        );
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let run = tiny_run(tmp.path());
    let server = serve(&["--run", s(&run)]);
    let profile = tmp.path().join("profile");
    let shots = tmp.path().join("shots");
    std::fs::create_dir_all(&shots).unwrap();

    // Run page: the JavaScript drew the charts from all six rows, set up the step slider
    // over both preview grids and shows the newest one.
    let dom = headless(&browser, &profile, &server.url("/run"), &["--dump-dom"]);
    assert_eq!(
        attr(tag(&dom, "chart-loss"), "data-points"),
        Some("12"),
        "{dom}"
    );
    assert_eq!(
        attr(tag(&dom, "chart-loss"), "data-series"),
        Some("D loss,G loss")
    );
    assert_eq!(attr(tag(&dom, "chart-d"), "data-points"), Some("12"));
    assert_eq!(attr(tag(&dom, "chart-speed"), "data-points"), Some("6"));
    assert_eq!(attr(tag(&dom, "sample-slider"), "max"), Some("1"));
    assert_eq!(attr(tag(&dom, "preview"), "src"), Some("/api/samples/6"));
    assert_eq!(text_of(&dom, "t-step"), "6");
    assert_eq!(text_of(&dom, "t-ckpt"), "step 6");
    assert!(dom.contains("tiny32"), "the config table is missing");
    assert!(attr(tag(&dom, "run"), "hidden").is_none(), "{dom}");

    // Generator page: a cat, a grid of 16 and the walk were drawn and loaded.
    let dom = headless(
        &browser,
        &profile,
        &server.url("/generator"),
        &["--dump-dom"],
    );
    for (id, api) in [
        ("cat-img", "/api/generate?seed=1&amp;count=1"),
        ("grid-img", "/api/generate?seed=1&amp;count=16"),
        ("walk-img", "/api/walk?from=1&amp;to=2&amp;t=0.50"),
        ("walk-strip", "/api/walk?from=1&amp;to=2&amp;frames=8"),
    ] {
        let img = tag(&dom, id);
        assert_eq!(attr(img, "data-state"), Some("loaded"), "{img}");
        assert_eq!(attr(img, "data-src"), Some(api), "{img}");
        assert!(attr(img, "src").unwrap().starts_with("blob:"), "{img}");
    }
    assert!(
        text_of(&dom, "checkpoint-info").starts_with("Checkpoint step 6"),
        "{}",
        text_of(&dom, "checkpoint-info")
    );

    for (page, file) in [
        ("/run", "serve-run.png"),
        ("/generator", "serve-generator.png"),
    ] {
        let path = shots.join(file);
        let flag = format!("--screenshot={}", path.display());
        headless(
            &browser,
            &profile,
            &server.url(page),
            &[&flag, "--window-size=1280,900"],
        );
        check_screenshot(&path);
    }

    // With only a checkpoint, the Run page says there is no run folder.
    drop(server);
    let only = serve(&["--checkpoint", s(&run.join("checkpoints/latest.catgan"))]);
    let dom = headless(&browser, &profile, &only.url("/run"), &["--dump-dom"]);
    assert!(attr(tag(&dom, "no-run"), "hidden").is_none(), "{dom}");
    assert!(
        text_of(&dom, "no-run-message").contains("no run folder"),
        "{dom}"
    );
}
