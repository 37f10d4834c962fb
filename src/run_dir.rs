//! The layout of a training run's folder, and the files in it.
//!
//! ```text
//! <run>/config.json            the run's settings (trainer config, data, schedule)
//! <run>/metrics.csv            one row per step: step, epoch, losses, D(x), D(G(z)), img/s
//! <run>/samples/step-NNNNNNN.png   preview grids from the fixed noise
//! <run>/checkpoints/epoch-NNNN.catgan   kept checkpoints (the last K)
//! <run>/checkpoints/latest.catgan       the newest checkpoint (also written on Ctrl-C)
//! <run>/loss.png               loss curves, redrawn at each checkpoint
//! ```

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Errors about the run folder.
#[derive(Debug, thiserror::Error)]
pub enum RunDirError {
    /// A file operation failed.
    #[error("{action} {path}: {cause}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The cause.
        cause: std::io::Error,
    },
    /// The folder already holds a run and `--resume` was not given.
    #[error(
        "{0} already holds a training run (it has a config.json); to continue it use \
         `--resume {0}`, or choose another `--out` folder (nothing was changed)"
    )]
    AlreadyARun(PathBuf),
    /// The metrics log cannot be parsed.
    #[error("{path} line {line}: {reason}")]
    BadLog {
        /// The log file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
}

type Result<T> = std::result::Result<T, RunDirError>;

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> RunDirError {
    let path = path.to_path_buf();
    move |cause| RunDirError::Io {
        action,
        path,
        cause,
    }
}

/// A run folder.
#[derive(Debug, Clone)]
pub struct RunDir {
    root: PathBuf,
}

impl RunDir {
    /// Creates the folder for a new run; refuses a folder that already holds one.
    pub fn create(root: &Path) -> Result<Self> {
        let run = RunDir {
            root: root.to_path_buf(),
        };
        if run.config_path().exists() {
            return Err(RunDirError::AlreadyARun(root.to_path_buf()));
        }
        run.make_dirs()?;
        Ok(run)
    }

    /// The layout of the run folder at `root`, creating nothing: for reading a run
    /// (`--resume`, `--checkpoint`), which must leave a folder that is not one untouched.
    pub fn at(root: &Path) -> Self {
        RunDir {
            root: root.to_path_buf(),
        }
    }

    /// Opens an existing run folder (for resuming), creating missing subfolders.
    pub fn open(root: &Path) -> Result<Self> {
        let run = RunDir {
            root: root.to_path_buf(),
        };
        run.make_dirs()?;
        Ok(run)
    }

    fn make_dirs(&self) -> Result<()> {
        for dir in [
            self.root.clone(),
            self.samples_dir(),
            self.checkpoints_dir(),
        ] {
            fs::create_dir_all(&dir).map_err(io("creating folder", &dir))?;
        }
        Ok(())
    }

    /// The run folder itself.
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// `config.json`.
    pub fn config_path(&self) -> PathBuf {
        self.root.join("config.json")
    }
    /// `metrics.csv`.
    pub fn metrics_path(&self) -> PathBuf {
        self.root.join("metrics.csv")
    }
    /// `loss.png`.
    pub fn plot_path(&self) -> PathBuf {
        self.root.join("loss.png")
    }
    /// `samples/`.
    pub fn samples_dir(&self) -> PathBuf {
        self.root.join("samples")
    }
    /// `checkpoints/`.
    pub fn checkpoints_dir(&self) -> PathBuf {
        self.root.join("checkpoints")
    }
    /// `checkpoints/latest.catgan`.
    pub fn latest_checkpoint(&self) -> PathBuf {
        self.checkpoints_dir().join("latest.catgan")
    }
    /// `checkpoints/epoch-NNNN.catgan`.
    pub fn epoch_checkpoint(&self, epoch: u64) -> PathBuf {
        self.checkpoints_dir()
            .join(format!("epoch-{epoch:04}.catgan"))
    }
    /// `samples/step-NNNNNNN.png`.
    pub fn sample_path(&self, step: u64) -> PathBuf {
        self.samples_dir().join(format!("step-{step:07}.png"))
    }

    /// Writes `config.json` (pretty JSON, atomically).
    pub fn write_config<T: Serialize>(&self, config: &T) -> Result<()> {
        let text = serde_json::to_string_pretty(config).expect("configs serialise");
        write_atomically(&self.config_path(), text.as_bytes())
    }

    /// The kept epoch checkpoints, oldest first.
    pub fn epoch_checkpoints(&self) -> Result<Vec<PathBuf>> {
        let dir = self.checkpoints_dir();
        let mut found: Vec<PathBuf> = fs::read_dir(&dir)
            .map_err(io("listing", &dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("epoch-") && n.ends_with(".catgan"))
            })
            .collect();
        found.sort();
        Ok(found)
    }

    /// Makes `latest.catgan` the same file as `checkpoint` (a hard link, or a copy where
    /// links are unsupported), replacing the previous one atomically.
    pub fn point_latest_to(&self, checkpoint: &Path) -> Result<()> {
        let latest = self.latest_checkpoint();
        let tmp = self
            .checkpoints_dir()
            .join(format!(".latest.tmp-{}", std::process::id()));
        let _ = fs::remove_file(&tmp);
        if fs::hard_link(checkpoint, &tmp).is_err() {
            fs::copy(checkpoint, &tmp).map_err(io("copying checkpoint to", &tmp))?;
        }
        fs::rename(&tmp, &latest).map_err(io("replacing", &latest))
    }

    /// Deletes the oldest epoch checkpoints so that at most `keep` remain (never `latest`).
    pub fn prune_checkpoints(&self, keep: usize) -> Result<Vec<PathBuf>> {
        let all = self.epoch_checkpoints()?;
        let excess = all.len().saturating_sub(keep.max(1));
        let mut removed = Vec::new();
        for path in all.into_iter().take(excess) {
            fs::remove_file(&path).map_err(io("removing old checkpoint", &path))?;
            removed.push(path);
        }
        Ok(removed)
    }
}

/// Writes a small file through a temporary file and a rename.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(io("writing", path))
}

/// One row of `metrics.csv`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MetricsRow {
    /// Training step (1-based).
    pub step: u64,
    /// Epoch the step belongs to (1-based).
    pub epoch: u64,
    /// Discriminator loss.
    pub d_loss: f32,
    /// Generator loss.
    pub g_loss: f32,
    /// Mean D(x) on the real batch.
    pub d_real: f32,
    /// Mean D(G(z)) on the fakes.
    pub d_fake: f32,
    /// Training throughput over this step, images per second.
    pub img_per_s: f32,
    /// FID against the reference statistics, on the steps where it was measured.
    pub fid: Option<f64>,
}

const HEADER: &str = "step,epoch,d_loss,g_loss,d_real,d_fake,img_per_s,fid";

/// The append-only metrics log, `metrics.csv`.
pub struct MetricsLog {
    path: PathBuf,
    out: BufWriter<File>,
}

impl MetricsLog {
    /// Opens the log for appending. When resuming from `resume_step`, rows of later steps
    /// (logged after that checkpoint, before a crash) are dropped first, so the log
    /// continues exactly where the checkpoint stands.
    pub fn open(path: &Path, resume_step: Option<u64>) -> Result<Self> {
        let mut rows = if path.exists() {
            read_metrics(path)?
        } else {
            Vec::new()
        };
        if let Some(step) = resume_step {
            rows.retain(|r| r.step <= step);
        } else {
            rows.clear();
        }
        let mut text = String::from(HEADER);
        text.push('\n');
        for row in &rows {
            text.push_str(&format_row(row));
        }
        write_atomically(path, text.as_bytes())?;
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(io("opening", path))?;
        Ok(MetricsLog {
            path: path.to_path_buf(),
            out: BufWriter::new(file),
        })
    }

    /// Appends one row.
    pub fn append(&mut self, row: &MetricsRow) -> Result<()> {
        self.out
            .write_all(format_row(row).as_bytes())
            .map_err(io("writing", &self.path))
    }

    /// Flushes buffered rows to disk.
    pub fn flush(&mut self) -> Result<()> {
        self.out.flush().map_err(io("writing", &self.path))
    }
}

fn format_row(r: &MetricsRow) -> String {
    let fid = r.fid.map(|f| format!("{f:.4}")).unwrap_or_default();
    format!(
        "{},{},{},{},{},{},{:.2},{}\n",
        r.step, r.epoch, r.d_loss, r.g_loss, r.d_real, r.d_fake, r.img_per_s, fid
    )
}

/// Reads `metrics.csv`.
pub fn read_metrics(path: &Path) -> Result<Vec<MetricsRow>> {
    let file = File::open(path).map_err(io("reading", path))?;
    let mut rows = Vec::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(io("reading", path))?;
        if i == 0 || line.trim().is_empty() {
            continue;
        }
        let bad = |reason: String| RunDirError::BadLog {
            path: path.to_path_buf(),
            line: i + 1,
            reason,
        };
        let f: Vec<&str> = line.split(',').collect();
        if f.len() != 8 {
            // A torn last line (crash mid-write) is dropped; anything else is an error.
            if i > 0 && f.len() < 8 {
                continue;
            }
            return Err(bad(format!("expected 8 fields, found {}", f.len())));
        }
        let num = |k: usize| {
            f[k].parse::<f64>()
                .map_err(|e| bad(format!("field {}: {e}", k + 1)))
        };
        rows.push(MetricsRow {
            step: num(0)? as u64,
            epoch: num(1)? as u64,
            d_loss: num(2)? as f32,
            g_loss: num(3)? as f32,
            d_real: num(4)? as f32,
            d_fake: num(5)? as f32,
            img_per_s: num(6)? as f32,
            fid: if f[7].is_empty() { None } else { Some(num(7)?) },
        });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(step: u64) -> MetricsRow {
        MetricsRow {
            step,
            epoch: 1,
            d_loss: 1.25,
            g_loss: 0.5,
            d_real: 0.6,
            d_fake: 0.4,
            img_per_s: 10.0,
            fid: (step == 2).then_some(123.5),
        }
    }

    #[test]
    fn a_folder_with_a_run_is_never_reused_silently() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::create(dir.path()).unwrap();
        run.write_config(&serde_json::json!({"a": 1})).unwrap();
        let err = RunDir::create(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("--resume") && err.contains("already holds"),
            "{err}"
        );
        assert!(RunDir::open(dir.path()).is_ok());
    }

    #[test]
    fn metrics_log_round_trips_and_resume_drops_later_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.csv");
        let mut log = MetricsLog::open(&path, None).unwrap();
        for s in 1..=5 {
            log.append(&row(s)).unwrap();
        }
        log.flush().unwrap();
        drop(log);
        assert_eq!(
            read_metrics(&path).unwrap(),
            (1..=5).map(row).collect::<Vec<_>>()
        );

        // Resuming from the checkpoint at step 3 forgets steps 4 and 5, then continues.
        let mut log = MetricsLog::open(&path, Some(3)).unwrap();
        log.append(&row(4)).unwrap();
        log.flush().unwrap();
        let steps: Vec<u64> = read_metrics(&path)
            .unwrap()
            .iter()
            .map(|r| r.step)
            .collect();
        assert_eq!(steps, vec![1, 2, 3, 4]);
    }

    #[test]
    fn a_torn_last_line_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.csv");
        fs::write(&path, format!("{HEADER}\n{}5,1,0.3", format_row(&row(1)))).unwrap();
        assert_eq!(read_metrics(&path).unwrap().len(), 1);
    }

    #[test]
    fn checkpoints_are_pruned_to_the_last_k_and_latest_follows() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::create(dir.path()).unwrap();
        for epoch in 1..=4 {
            let p = run.epoch_checkpoint(epoch);
            fs::write(&p, format!("epoch {epoch}")).unwrap();
            run.point_latest_to(&p).unwrap();
            run.prune_checkpoints(2).unwrap();
        }
        let names: Vec<String> = run
            .epoch_checkpoints()
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["epoch-0003.catgan", "epoch-0004.catgan"]);
        assert_eq!(
            fs::read_to_string(run.latest_checkpoint()).unwrap(),
            "epoch 4"
        );
    }
}
