//! Helpers shared by the end-to-end tests: run the `cats` binary and read what it printed.
#![allow(dead_code)] // each test file uses its own subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `cats` example binary that `cargo test` builds next to the test executables.
fn cats_binary() -> PathBuf {
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

fn cats(args: &[&str]) -> Command {
    let mut cmd = Command::new(cats_binary());
    cmd.args(["--backend", "flex"])
        .args(args)
        .env("CATGAN_PLAIN_PROGRESS", "1");
    cmd
}

fn run(args: &[&str]) -> Output {
    cats(args).output().unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "cats {args:?} failed:\n{}",
        text(&out)
    );
    text(&out)
}

fn fails(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        !out.status.success(),
        "cats {args:?} should fail:\n{}",
        text(&out)
    );
    text(&out)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}
