//! Reading a run folder for the Run page, while `cats train` may be writing it.
//!
//! Only fixed names inside the folder are read ([`RunDir`]'s layout): `config.json`,
//! `metrics.csv` and `samples/step-NNNNNNN.png`, whose name is built from an integer. A
//! sample that resolves outside the folder (a symbolic link) is refused too.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::Serialize;

use crate::run_dir::{read_metrics, MetricsRow, RunDir};

/// A run folder being watched.
#[derive(Debug, Clone)]
pub struct RunFolder {
    /// The folder as given on the command line (shown on the page).
    shown: PathBuf,
    /// Its canonical path, the boundary every read must stay inside.
    root: PathBuf,
    dir: RunDir,
}

/// What `GET /api/run` returns about the run.
#[derive(Debug, Serialize)]
pub struct RunSnapshot {
    /// The folder, as given to `cats serve --run`.
    pub folder: String,
    /// Its last component (the run's name).
    pub name: String,
    /// `config.json`, as written (null if it cannot be read).
    pub config: Option<serde_json::Value>,
    /// Why `config.json` could not be read.
    pub config_error: Option<String>,
    /// The rows of `metrics.csv` after the step asked for (all of them by default).
    pub metrics: Vec<MetricsRow>,
    /// How many rows `metrics.csv` holds in all (a client with more has seen a resume
    /// drop rows, and starts over).
    pub metrics_total: usize,
    /// Why `metrics.csv` could not be read (absent before the first step).
    pub metrics_error: Option<String>,
    /// Seconds since `metrics.csv` last changed: small while training runs.
    pub metrics_age_s: Option<u64>,
    /// The steps that have a preview grid, ascending.
    pub samples: Vec<u64>,
}

/// Why a run folder cannot be watched or a sample served.
#[derive(Debug, thiserror::Error)]
pub enum RunFolderError {
    /// The folder does not exist or is not a run.
    #[error("{0}")]
    NotARun(String),
    /// No preview grid for that step.
    #[error("no preview grid for step {0}")]
    NoSample(u64),
    /// The preview resolves outside the run folder.
    #[error("the preview grid for step {0} is outside the run folder")]
    Outside(u64),
    /// Reading failed.
    #[error("reading {path}: {cause}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        cause: std::io::Error,
    },
}

impl RunFolder {
    /// Opens `folder` for watching: it must exist and hold a `config.json` (written when
    /// `cats train` starts).
    pub fn open(folder: &Path) -> Result<Self, RunFolderError> {
        let root = folder.canonicalize().map_err(|e| {
            RunFolderError::NotARun(format!(
                "--run {}: no such run folder ({e})",
                folder.display()
            ))
        })?;
        if !root.is_dir() {
            return Err(RunFolderError::NotARun(format!(
                "--run {}: not a folder (give a run folder written by `cats train --out`, or a \
                 checkpoint file with --checkpoint)",
                folder.display()
            )));
        }
        let dir = RunDir::at(&root);
        if !dir.config_path().is_file() {
            return Err(RunFolderError::NotARun(format!(
                "--run {}: not a catgan run folder (it has no config.json)",
                folder.display()
            )));
        }
        Ok(RunFolder {
            shown: folder.to_path_buf(),
            root,
            dir,
        })
    }

    /// The run's `checkpoints/latest.catgan` (which may not exist yet).
    pub fn latest_checkpoint(&self) -> PathBuf {
        self.dir.latest_checkpoint()
    }

    /// The run's config, metrics after step `after` (all when `None`) and preview steps.
    pub fn snapshot(&self, after: Option<u64>) -> RunSnapshot {
        let (config, config_error) = match std::fs::read_to_string(self.dir.config_path())
            .map_err(|e| e.to_string())
            .and_then(|text| serde_json::from_str(&text).map_err(|e| e.to_string()))
        {
            Ok(value) => (Some(value), None),
            Err(e) => (None, Some(format!("config.json: {e}"))),
        };
        let metrics_path = self.dir.metrics_path();
        let (mut metrics, metrics_error) = if metrics_path.is_file() {
            match read_metrics(&metrics_path) {
                Ok(rows) => (rows, None),
                Err(e) => (Vec::new(), Some(e.to_string())),
            }
        } else {
            (Vec::new(), None)
        };
        let metrics_total = metrics.len();
        if let Some(after) = after {
            metrics.retain(|row| row.step > after);
        }
        let metrics_age_s = std::fs::metadata(&metrics_path)
            .and_then(|m| m.modified())
            .ok()
            .map(|t| {
                SystemTime::now()
                    .duration_since(t)
                    .map_or(0, |d| d.as_secs())
            });
        RunSnapshot {
            folder: self.shown.display().to_string(),
            name: self
                .root
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            config,
            config_error,
            metrics,
            metrics_total,
            metrics_error,
            metrics_age_s,
            samples: self.sample_steps(),
        }
    }

    /// The steps with a `samples/step-NNNNNNN.png`, ascending.
    pub fn sample_steps(&self) -> Vec<u64> {
        let Ok(entries) = std::fs::read_dir(self.dir.samples_dir()) else {
            return Vec::new();
        };
        let mut steps: Vec<u64> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| sample_step(&e.file_name().to_string_lossy()))
            .collect();
        steps.sort_unstable();
        steps
    }

    /// The PNG of the preview grid at `step`.
    pub fn sample_png(&self, step: u64) -> Result<Vec<u8>, RunFolderError> {
        let path = self.dir.sample_path(step);
        let real = path
            .canonicalize()
            .map_err(|_| RunFolderError::NoSample(step))?;
        if !real.starts_with(&self.root) {
            return Err(RunFolderError::Outside(step));
        }
        std::fs::read(&real).map_err(|cause| RunFolderError::Io { path, cause })
    }
}

/// The step of a preview file name `step-NNNNNNN.png` (digits only, as `cats train`
/// writes them), or `None`.
fn sample_step(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("step-")?.strip_suffix(".png")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_preview_names_count_as_samples() {
        assert_eq!(sample_step("step-0000150.png"), Some(150));
        assert_eq!(sample_step("step-12345678.png"), Some(12_345_678));
        for other in [
            "step-.png",
            "step-+12.png",
            "step-1.png.tmp",
            ".step-0000001.png.ab12cd",
            "x.png",
        ] {
            assert_eq!(sample_step(other), None, "{other}");
        }
    }

    #[test]
    fn a_folder_needs_a_config_and_samples_stay_inside_it() {
        let dir = tempfile::tempdir().unwrap();
        let err = RunFolder::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("no config.json"), "{err}");
        std::fs::write(dir.path().join("config.json"), "{\"preset\": \"tiny32\"}").unwrap();
        std::fs::create_dir(dir.path().join("samples")).unwrap();
        std::fs::write(dir.path().join("samples/step-0000003.png"), b"png").unwrap();
        let run = RunFolder::open(dir.path()).unwrap();
        assert_eq!(run.sample_steps(), vec![3]);
        assert_eq!(run.sample_png(3).unwrap(), b"png");
        assert!(matches!(
            run.sample_png(4),
            Err(RunFolderError::NoSample(4))
        ));
        let snap = run.snapshot(None);
        assert_eq!(snap.config.unwrap()["preset"], "tiny32");
        assert!(snap.metrics.is_empty() && snap.metrics_error.is_none());
        #[cfg(unix)]
        {
            let outside = tempfile::tempdir().unwrap();
            std::fs::write(outside.path().join("secret.png"), b"secret").unwrap();
            std::os::unix::fs::symlink(
                outside.path().join("secret.png"),
                dir.path().join("samples/step-0000009.png"),
            )
            .unwrap();
            assert!(matches!(run.sample_png(9), Err(RunFolderError::Outside(9))));
        }
    }
}
