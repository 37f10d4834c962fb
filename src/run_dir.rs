//! The layout of a training run's folder, and the files in it.
//!
//! ```text
//! <run>/config.json            the run's settings (trainer config, data, schedule)
//! <run>/metrics.csv            one row per step: step, epoch, losses, D(x), D(G(z)), img/s
//! <run>/samples/step-NNNNNNN.png   preview grids from the fixed noise
//! <run>/checkpoints/epoch-NNNN.catgan   kept checkpoints (the last K)
//! <run>/checkpoints/latest.catgan       the newest checkpoint (also written on Ctrl-C)
//! <run>/checkpoints/last-good.catgan    the newest checkpoint saved while training was healthy
//! <run>/loss.png               loss curves, redrawn at each checkpoint
//! <run>/run.lock               held by the `cats train` process writing the run
//! ```
//!
//! A run folder has one owner at a time: [`RunDir::create`] and [`RunDir::continue_run`]
//! lock `run.lock` (an OS file lock, released when the process ends however it ends, even
//! on `kill -9`), so a second `cats train` on the same folder is refused instead of
//! interleaving checkpoints. Each run has an identity (`run_id` in `config.json` and in
//! every checkpoint), so resuming one run's checkpoint into another run's folder is refused.

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
    /// Another process holds the folder's lock.
    #[error(
        "{folder} is in use by another `cats train`{holder}; wait for it to finish (or stop it: \
         Ctrl-C saves a checkpoint), or train into another `--out` folder (nothing was changed)"
    )]
    InUse {
        /// The run folder.
        folder: PathBuf,
        /// Who holds it, as recorded in `run.lock` (e.g. " (pid 1234)"), or empty.
        holder: String,
    },
    /// The folder holds a different run than the checkpoint being resumed.
    #[error(
        "{folder} holds another run (run id {found}) than the checkpoint's (run id {expected}); \
         resuming would overwrite its config, metrics and checkpoints. To branch a run on \
         purpose, resume into a new folder: `cats train --resume CHECKPOINT --out NEW_FOLDER` \
         (nothing was changed)"
    )]
    AnotherRun {
        /// The run folder.
        folder: PathBuf,
        /// The run id in its `config.json`.
        found: String,
        /// The run id of the checkpoint.
        expected: String,
    },
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

/// Whether two paths name the same file or folder (compared canonically where both
/// exist, as written otherwise).
pub fn same_path(a: &Path, b: &Path) -> bool {
    match (fs::canonicalize(a), fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// A new run identity: 128 random bits in hex.
pub fn new_run_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// The exclusive lock on a run folder's `run.lock`; dropping it (or the process ending in
/// any way) releases it.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
}

/// A run folder.
#[derive(Debug, Clone)]
pub struct RunDir {
    root: PathBuf,
}

impl RunDir {
    /// Creates and locks the folder for a new run (or a branch of one); refuses a folder
    /// that already holds a run, or that another process is writing.
    pub fn create(root: &Path) -> Result<(Self, RunLock)> {
        let run = RunDir {
            root: root.to_path_buf(),
        };
        if run.config_path().exists() {
            return Err(RunDirError::AlreadyARun(root.to_path_buf()));
        }
        fs::create_dir_all(root).map_err(io("creating folder", root))?;
        let lock = run.lock()?;
        // Checked again under the lock: another process may have started a run here.
        if run.config_path().exists() {
            return Err(RunDirError::AlreadyARun(root.to_path_buf()));
        }
        run.make_dirs()?;
        run.remove_temporaries();
        Ok((run, lock))
    }

    /// Locks an existing run's folder to continue run `run_id` in it, creating missing
    /// subfolders. Refuses a folder whose `config.json` names another run, or that another
    /// process is writing. A folder without `config.json` (deleted, or never written) is
    /// accepted: the checkpoint carries the run's settings.
    pub fn continue_run(root: &Path, run_id: Option<&str>) -> Result<(Self, RunLock)> {
        let run = RunDir {
            root: root.to_path_buf(),
        };
        fs::create_dir_all(root).map_err(io("creating folder", root))?;
        let lock = run.lock()?;
        if let Some(found) = run.recorded_run_id()? {
            if run_id != Some(found.as_str()) {
                return Err(RunDirError::AnotherRun {
                    folder: root.to_path_buf(),
                    found,
                    expected: run_id.unwrap_or("none, an older checkpoint").to_string(),
                });
            }
        }
        run.make_dirs()?;
        run.remove_temporaries();
        Ok((run, lock))
    }

    /// The `run_id` recorded in `config.json`, if the file exists and has one.
    pub fn recorded_run_id(&self) -> Result<Option<String>> {
        let path = self.config_path();
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io("reading", &path)(e)),
        };
        // An unreadable config has no identity to protect beyond its own existence.
        let value: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        Ok(value
            .get("run_id")
            .and_then(|v| v.as_str())
            .map(str::to_string))
    }

    /// `run.lock`.
    pub fn lock_path(&self) -> PathBuf {
        self.root.join("run.lock")
    }

    /// Takes the folder's lock without waiting; records this process in the file.
    fn lock(&self) -> Result<RunLock> {
        let path = self.lock_path();
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io("opening", &path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                let holder = fs::read_to_string(&path)
                    .ok()
                    .map(|t| t.trim().to_string())
                    .filter(|t| !t.is_empty())
                    .map(|t| format!(" ({t})"))
                    .unwrap_or_default();
                return Err(RunDirError::InUse {
                    folder: self.root.clone(),
                    holder,
                });
            }
            Err(fs::TryLockError::Error(e)) => return Err(io("locking", &path)(e)),
        }
        let record = (|| {
            file.set_len(0)?;
            file.write_all(format!("pid {}\n", std::process::id()).as_bytes())?;
            file.flush()
        })();
        record.map_err(io("writing", &path))?;
        Ok(RunLock { _file: file })
    }

    /// The layout of the run folder at `root`, creating nothing: for reading a run
    /// (`--resume`, `--checkpoint`), which must leave a folder that is not one untouched.
    pub fn at(root: &Path) -> Self {
        RunDir {
            root: root.to_path_buf(),
        }
    }

    /// Removes the temporary files that writes killed mid-way left in the run folder and
    /// its `checkpoints/` ([`is_temporary`]). Called with the lock held: no other process
    /// writes here, so none of them is in use.
    fn remove_temporaries(&self) {
        for dir in [self.root.clone(), self.checkpoints_dir()] {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let is_file = entry.file_type().is_ok_and(|t| t.is_file());
                if is_file && is_temporary(&entry.file_name().to_string_lossy()) {
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
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
    /// `checkpoints/last-good.catgan`: kept out of rotation.
    pub fn last_good_checkpoint(&self) -> PathBuf {
        self.checkpoints_dir().join("last-good.catgan")
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

    /// Starts this (new) run's `metrics.csv` as a copy of `source`'s, for a run branched
    /// from it (rows after the branch point are dropped when the log is opened).
    pub fn carry_metrics_from(&self, source: &RunDir) -> Result<()> {
        let from = source.metrics_path();
        if from.is_file() {
            let to = self.metrics_path();
            let bytes = fs::read(&from).map_err(io("reading", &from))?;
            write_atomically(&to, &bytes)?;
        }
        Ok(())
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
        self.link(checkpoint, &self.latest_checkpoint())
    }

    /// Makes `last-good.catgan` the same file as `checkpoint` (see
    /// [`point_latest_to`](Self::point_latest_to)); pruning never removes it.
    pub fn mark_good(&self, checkpoint: &Path) -> Result<()> {
        self.link(checkpoint, &self.last_good_checkpoint())
    }

    /// Replaces `name` by a hard link to `checkpoint`: linked under a temporary name
    /// (`.NAME.tmp-PID`, which the next checkpoint save removes if this process is killed
    /// in between) and renamed over it. Where links are unsupported, a copy written like
    /// every other file ([`write_atomically`]).
    fn link(&self, checkpoint: &Path, name: &Path) -> Result<()> {
        let dir = self.checkpoints_dir();
        let stem = name.file_name().unwrap_or_default().to_string_lossy();
        let tmp = dir.join(format!(".{stem}.tmp-{}", std::process::id()));
        let _ = fs::remove_file(&tmp);
        if fs::hard_link(checkpoint, &tmp).is_ok() {
            let renamed = fs::rename(&tmp, name);
            if renamed.is_err() {
                let _ = fs::remove_file(&tmp);
            }
            renamed.map_err(io("replacing", name))?;
            // Make the rename durable (best effort: not every platform can open a folder).
            if let Ok(d) = File::open(&dir) {
                let _ = d.sync_all();
            }
            return Ok(());
        }
        let mut from = File::open(checkpoint).map_err(io("reading", checkpoint))?;
        dcgan_data::atomic::write_atomically_with(name, |out| {
            std::io::copy(&mut from, out).map(drop)
        })
        .map_err(io("copying checkpoint to", name))
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

/// Whether `name` is a temporary file that a killed write left next to one of a run's files
/// (`*.catgan`, `*.json`, `*.csv`, `*.png`, `*.safetensors`): `.NAME.XXXXXX` (six letters
/// or digits: [`write_atomically`] where the file system has no `O_TMPFILE`) or
/// `.NAME.tmp-PID` (checkpoint links, and writes of older versions).
fn is_temporary(name: &str) -> bool {
    let Some((target, suffix)) = name.strip_prefix('.').and_then(|n| n.rsplit_once('.')) else {
        return false;
    };
    let ours = [".catgan", ".json", ".csv", ".png", ".safetensors"]
        .iter()
        .any(|ext| target.ends_with(ext));
    let random = suffix.len() == 6 && suffix.bytes().all(|b| b.is_ascii_alphanumeric());
    let pid = suffix
        .strip_prefix("tmp-")
        .is_some_and(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()));
    ours && (random || pid)
}

/// Replaces `path` with `bytes` atomically ([`dcgan_data::atomic`], the one way catgan
/// replaces files): a crash or a full disk leaves the old file or the new one.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    dcgan_data::atomic::write_atomically(path, bytes).map_err(io("writing", path))
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
        let (run, lock) = RunDir::create(dir.path()).unwrap();
        run.write_config(&serde_json::json!({"run_id": "aaa"}))
            .unwrap();
        drop(lock);
        let err = RunDir::create(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("--resume") && err.contains("already holds"),
            "{err}"
        );
        assert!(RunDir::continue_run(dir.path(), Some("aaa")).is_ok());
    }

    #[test]
    fn a_run_folder_has_one_owner_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let (_, lock) = RunDir::create(dir.path()).unwrap();
        // A second writer, new or continuing, is refused while the first holds the lock,
        // and is told who holds it.
        let err = RunDir::create(dir.path()).unwrap_err();
        assert!(matches!(err, RunDirError::InUse { .. }), "{err}");
        let err = RunDir::continue_run(dir.path(), None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("in use") && err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        drop(lock);
        assert!(RunDir::continue_run(dir.path(), None).is_ok());
    }

    #[test]
    fn continuing_refuses_a_folder_of_another_run() {
        let dir = tempfile::tempdir().unwrap();
        let (run, lock) = RunDir::create(dir.path()).unwrap();
        let id = new_run_id();
        assert_eq!(id.len(), 32);
        assert_ne!(id, new_run_id());
        run.write_config(&serde_json::json!({ "run_id": id }))
            .unwrap();
        drop(lock);
        let err = RunDir::continue_run(dir.path(), Some("0123"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("another run") && err.contains("--out NEW_FOLDER"),
            "{err}"
        );
        let err = RunDir::continue_run(dir.path(), None).unwrap_err();
        assert!(matches!(err, RunDirError::AnotherRun { .. }), "{err}");
        assert_eq!(run.recorded_run_id().unwrap(), Some(id.clone()));
        assert!(RunDir::continue_run(dir.path(), Some(&id)).is_ok());
        // Without a config.json, the checkpoint's identity is all there is.
        fs::remove_file(run.config_path()).unwrap();
        assert!(RunDir::continue_run(dir.path(), Some("0123")).is_ok());
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
    fn taking_the_folder_removes_what_killed_writes_left() {
        let dir = tempfile::tempdir().unwrap();
        let (run, lock) = RunDir::create(dir.path()).unwrap();
        drop(lock);
        let left = [
            run.checkpoints_dir().join(".epoch-0003.catgan.Ab3dE9"),
            run.checkpoints_dir().join(".latest.catgan.tmp-4242"),
            run.root().join(".config.json.x1Y2z3"),
            run.root().join(".metrics.csv.tmp-17"),
        ];
        let kept = [
            run.checkpoints_dir().join("epoch-0003.catgan"),
            run.root().join(".notes.backup"),
            run.root().join(".gitignore"),
            run.checkpoints_dir().join(".epoch-0003.catgan.toolong1"),
        ];
        for path in left.iter().chain(&kept) {
            fs::write(path, b"x").unwrap();
        }
        let (_run, _lock) = RunDir::continue_run(dir.path(), None).unwrap();
        for path in &left {
            assert!(!path.exists(), "{}", path.display());
        }
        for path in &kept {
            assert!(path.exists(), "{}", path.display());
        }
    }

    #[test]
    fn checkpoints_are_pruned_to_the_last_k_and_latest_follows() {
        let dir = tempfile::tempdir().unwrap();
        let (run, _lock) = RunDir::create(dir.path()).unwrap();
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
        // The last good checkpoint is kept out of rotation.
        run.mark_good(&run.epoch_checkpoint(3)).unwrap();
        for epoch in 5..=6 {
            let p = run.epoch_checkpoint(epoch);
            fs::write(&p, format!("epoch {epoch}")).unwrap();
            run.prune_checkpoints(2).unwrap();
        }
        assert!(!run.epoch_checkpoint(3).exists());
        assert_eq!(
            fs::read_to_string(run.last_good_checkpoint()).unwrap(),
            "epoch 3"
        );
    }
}
