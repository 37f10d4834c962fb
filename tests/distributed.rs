//! Data-parallel training end to end: `cats train --devices 2` in one process, and two
//! `cats train --nodes 2` processes meeting through `cats coordinator` on 127.0.0.1 (as two
//! machines would), including one of them dying.

mod common;

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::*;

/// The tests start several processes each: one at a time, so that they do not starve
/// each other of the two CPU cores and time out.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process that is killed if the test ends first, with its output in a file.
struct Process {
    child: Child,
    log: PathBuf,
}

impl Process {
    fn start(args: &[&str], log: PathBuf) -> Self {
        let file = std::fs::File::create(&log).unwrap();
        let child = cats(args)
            .stdout(Stdio::from(file.try_clone().unwrap()))
            .stderr(Stdio::from(file))
            .spawn()
            .unwrap();
        Process { child, log }
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits at most `limit` for the process to exit.
    fn wait(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "still running after {} s:\n{}",
                    limit.as_secs(),
                    self.output()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `cats coordinator` on a free port, once it accepts connections.
fn coordinator(dir: &Path) -> (Process, u16) {
    let port = free_port();
    let process = Process::start(
        &["coordinator", "--port", &port.to_string()],
        dir.join("coordinator.log"),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the coordinator never listened");
        std::thread::sleep(Duration::from_millis(100));
    }
    (process, port)
}

/// `cats train` of machine `rank` of 2 on the built-in cats (tiny model, batch 4).
fn machine(dir: &Path, rank: u32, coordinator: u16, steps: &str, timeout: &str) -> Process {
    let out = dir.join(format!("machine{rank}"));
    machine_with(
        dir,
        tiny_run_args(s(&out), steps),
        rank,
        coordinator,
        timeout,
    )
}

/// `cats ARGS` as machine `rank` of 2.
fn machine_with(
    dir: &Path,
    args: Vec<&str>,
    rank: u32,
    coordinator: u16,
    timeout: &str,
) -> Process {
    let (coordinator, address) = (
        format!("127.0.0.1:{coordinator}"),
        format!("127.0.0.1:{}", free_port()),
    );
    let rank = rank.to_string();
    let mut args = args;
    args.extend([
        "--nodes",
        "2",
        "--node-rank",
        &rank,
        "--coordinator",
        &coordinator,
        "--node-address",
        &address,
        "--sync-timeout",
        timeout,
    ]);
    let log = dir.join(format!("machine{rank}-{}.log", free_port()));
    Process::start(&args, log)
}

/// The fingerprint of the line "all N replicas hold the same weights (fingerprint X)".
fn fingerprint(output: &str) -> String {
    let line = output
        .lines()
        .find(|l| l.contains("hold the same weights"))
        .unwrap_or_else(|| panic!("no agreement line in:\n{output}"));
    line.rsplit("fingerprint ").next().unwrap().to_string()
}

fn loader_position(checkpoint: &Path) -> serde_json::Value {
    type B = burn::backend::Autodiff<burn::backend::Flex>;
    let (_, extra) =
        dcgan_core::Trainer::<B>::load_checkpoint(checkpoint, &Default::default()).unwrap();
    extra["loader"].clone()
}

#[test]
fn two_replicas_in_one_process_train_agree_and_resume_on_one() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let (run, straight) = (dir.path().join("run"), dir.path().join("straight"));
    let mut args = tiny_run_args(s(&run), "3");
    args.extend(["--devices", "2"]);
    let out = ok(&args);
    assert!(
        out.contains("data-parallel: 2 replicas (batch 2 each)"),
        "{out}"
    );
    fingerprint(&out);

    // 2 → 1 replica: the run goes on from step 3 at the same place in the data.
    let out = ok(&resume_args(s(&run), "6", &[]));
    assert!(out.contains("resuming at step 3"), "{out}");
    let steps: Vec<String> = metrics_lines(&run)
        .iter()
        .skip(1)
        .map(|l| l.split(',').next().unwrap().to_string())
        .collect();
    assert_eq!(steps, ["1", "2", "3", "4", "5", "6"]);
    let mut args = tiny_run_args(s(&straight), "6");
    args.extend(["--devices", "2"]);
    ok(&args);
    let latest = |run: &Path| run.join("checkpoints/latest.catgan");
    assert_eq!(
        loader_position(&latest(&run)),
        loader_position(&latest(&straight))
    );

    // A batch that does not split is refused before anything is written.
    let odd = dir.path().join("odd");
    let mut args = tiny_run_args(s(&odd), "2");
    args.extend(["--devices", "3"]);
    let err = fails(&args);
    assert!(err.contains("multiple of 3"), "{err}");
    assert!(!odd.join("checkpoints").exists());
}

#[test]
fn two_machines_on_loopback_train_in_step_and_end_with_the_same_weights() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let (_coordinator, port) = coordinator(dir.path());
    let mut leader = machine(dir.path(), 0, port, "5", "120");
    let mut follower = machine(dir.path(), 1, port, "5", "120");
    let limit = Duration::from_secs(300);
    let (a, b) = (leader.wait(limit), follower.wait(limit));
    let (out0, out1) = (leader.output(), follower.output());
    assert!(a.success(), "machine 0:\n{out0}\nmachine 1:\n{out1}");
    assert!(b.success(), "machine 1:\n{out1}\nmachine 0:\n{out0}");
    assert!(
        out0.contains("2 replicas on 2 machines, this one 0 (batch 2 each)"),
        "{out0}"
    );
    // Both hold the same weights at the end, checked between them, same fingerprint.
    assert_eq!(fingerprint(&out0), fingerprint(&out1));
    assert!(out1.contains("followed to step 5"), "{out1}");
    // Machine 0 wrote the run; machine 1 wrote nothing.
    assert_eq!(metrics_lines(&dir.path().join("machine0")).len(), 1 + 5);
    assert!(dir
        .path()
        .join("machine0/checkpoints/latest.catgan")
        .exists());
    assert!(!dir.path().join("machine1").exists());

    // Resumed at its end on both machines: nothing to do, and neither waits for the other.
    let run = dir.path().join("machine0");
    let resume = resume_args(s(&run), "5", &[]);
    let mut leader = machine_with(dir.path(), resume.clone(), 0, port, "120");
    let mut follower = machine_with(dir.path(), resume, 1, port, "120");
    let limit = Duration::from_secs(60);
    let (a, b) = (leader.wait(limit), follower.wait(limit));
    assert!(
        a.success() && b.success(),
        "{}\n{}",
        leader.output(),
        follower.output()
    );
    assert!(
        leader.output().contains("nothing to do"),
        "{}",
        leader.output()
    );
}

#[test]
fn a_machine_that_dies_stops_the_other_with_an_error_and_the_run_resumes() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let (_coordinator, port) = coordinator(dir.path());
    let mut leader = machine(dir.path(), 0, port, "100000", "10");
    let mut follower = machine(dir.path(), 1, port, "100000", "10");
    // Wait until an epoch's checkpoint exists (4 steps an epoch), then kill machine 1.
    let run = dir.path().join("machine0");
    let deadline = Instant::now() + Duration::from_secs(240);
    while !run.join("checkpoints/latest.catgan").exists() || metrics_rows(&run) < 6 {
        assert!(
            Instant::now() < deadline,
            "no progress:\n{}\n{}",
            leader.output(),
            follower.output()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    follower.child.kill().unwrap();
    let killed_at = Instant::now();
    let status = leader.wait(Duration::from_secs(120));
    let out = leader.output();
    assert!(!status.success(), "{out}");
    assert!(out.contains("replica"), "{out}");
    assert!(out.contains("--resume"), "{out}");
    // Bounded: the 10 s timeout, plus leaving the collective.
    assert!(killed_at.elapsed() < Duration::from_secs(90), "{out}");
    // The last checkpoint is good: the run continues on one machine.
    let done = metrics_rows(&run) as u64;
    let target = (done + 2).to_string();
    let out = ok(&resume_args(s(&run), &target, &[]));
    assert!(out.contains("trained"), "{out}");
}

#[test]
fn a_stop_signal_on_one_machine_stops_both_at_the_same_step() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let (_coordinator, port) = coordinator(dir.path());
    let mut leader = machine(dir.path(), 0, port, "100000", "60");
    let mut follower = machine(dir.path(), 1, port, "100000", "60");
    let run = dir.path().join("machine0");
    let deadline = Instant::now() + Duration::from_secs(240);
    while metrics_rows(&run) < 3 {
        assert!(
            Instant::now() < deadline,
            "no progress:\n{}",
            leader.output()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // SIGTERM to machine 1 only: it asks, both stop after the same step.
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &follower.child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let limit = Duration::from_secs(120);
    let (a, b) = (leader.wait(limit), follower.wait(limit));
    let (out0, out1) = (leader.output(), follower.output());
    assert_eq!(a.code(), Some(143), "{out0}");
    assert_eq!(b.code(), Some(143), "{out1}");
    let step = |out: &str, marker: &str| -> u64 {
        let rest = &out[out
            .find(marker)
            .unwrap_or_else(|| panic!("{marker}:\n{out}"))
            + marker.len()..];
        rest.split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let stopped = step(&out0, "interrupted at step ");
    assert_eq!(step(&out1, "followed to step "), stopped);
    assert_eq!(fingerprint(&out0), fingerprint(&out1));
    // Machine 0 saved its state at that step.
    let (trainer, _) = {
        type B = burn::backend::Autodiff<burn::backend::Flex>;
        dcgan_core::Trainer::<B>::load_checkpoint(
            &run.join("checkpoints/latest.catgan"),
            &Default::default(),
        )
        .unwrap()
    };
    assert_eq!(trainer.steps_done(), stopped);
}

fn metrics_rows(run: &Path) -> usize {
    std::fs::read_to_string(run.join("metrics.csv"))
        .map(|t| t.lines().count().saturating_sub(1))
        .unwrap_or(0)
}

#[test]
fn the_bench_measures_replicas_and_says_so() {
    let _serial = serial();
    let args = "bench --preset tiny32 --base 4 --batch-size 4 --steps 2 --warmup 0 \
                --no-inference --devices 2 --json";
    let out = ok(&args.split_whitespace().collect::<Vec<_>>());
    assert!(out.contains("| flex ×2 |"), "{out}");
    let json = last_json_line(&out);
    assert_eq!(json["replicas"], 2);
    assert_eq!(json["batch_size"], 4);
    let err = fails(&[
        "bench",
        "--preset",
        "tiny32",
        "--batch-size",
        "3",
        "--devices",
        "2",
    ]);
    assert!(err.contains("multiple of 2"), "{err}");
}
