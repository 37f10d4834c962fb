//! Continuing a run: what a checkpoint records, which flags may change it, and where the
//! continuation is written.
//!
//! Every checkpoint written by [`train`](crate::train::train) carries, besides the weights,
//! a [`ResumeState`]: the data loader's position, the run's identity, its whole
//! [`RunConfig`] and a fingerprint of the training images. So a run resumes from the
//! checkpoint alone (a deleted or damaged `config.json`, or a checkpoint copied elsewhere,
//! no longer makes `--resume` guess), and a changed data folder is noticed.
//!
//! The policy for flags given with `--resume` ([`ResumeChanges`]): the schedule, the
//! learning rates, the precision, the backend, the FID measurements, `--no-flip` and
//! `--strict` apply from the resumed step on; the data folder may be given again and is
//! refused if its files changed, unless `--allow-data-change`; `--pad` must match the run
//! (it changes every image); flags that fix the model are refused by the `cats` tool.
//!
//! Where the continuation goes ([`ResumeMode`]): into the checkpoint's own run folder (the
//! usual case), or, with `--out` naming a folder that holds no run, into a new run that
//! records which run and step it branched from. A folder holding another run is refused
//! (see [`RunDir::continue_run`](crate::run_dir::RunDir::continue_run)).

use std::path::{Path, PathBuf};

use dcgan_core::{CheckpointInfo, Precision};
use dcgan_data::{CropMode, DataFingerprint, LoaderPosition};
use serde::{Deserialize, Serialize};

use crate::backend::BackendKind;
use crate::run_config::{FidSchedule, RunConfig};
use crate::run_dir::{new_run_id, same_path, RunDir};
use crate::train::TrainError;

/// What `cats train` stores in each checkpoint's `extra` field.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResumeState {
    /// Where the data loader stands (epoch, images consumed, seed).
    pub loader: LoaderPosition,
    /// The run's settings, its identity included (absent in older checkpoints: then
    /// `config.json` is read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<Box<RunConfig>>,
    /// The training images' fingerprint (absent in older checkpoints: not checked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<DataFingerprint>,
}

impl ResumeState {
    /// Reads the state from a checkpoint's `extra` value.
    pub fn from_extra(extra: &serde_json::Value, checkpoint: &Path) -> Result<Self, TrainError> {
        serde_json::from_value(extra.clone()).map_err(|e| {
            TrainError::Invalid(format!(
                "{} has no data-loader position ({e}); it was not written by `cats train`",
                checkpoint.display()
            ))
        })
    }
}

/// The flags given with `--resume`; `None`/`false` means "not given".
#[derive(Debug, Clone, Default)]
pub struct ResumeChanges {
    /// `--out`: where to continue (default: the checkpoint's run folder).
    pub out: Option<PathBuf>,
    /// `--data`: the data folder (must hold the same files unless `allow_data_change`).
    pub data: Option<PathBuf>,
    /// `--allow-data-change`: continue even if the data folder's files changed.
    pub allow_data_change: bool,
    /// `--lr-d`.
    pub lr_d: Option<f64>,
    /// `--lr-g`.
    pub lr_g: Option<f64>,
    /// `--epochs` (total).
    pub epochs: Option<u64>,
    /// `--steps` (total).
    pub steps: Option<u64>,
    /// `--sample-every`.
    pub sample_every: Option<u64>,
    /// `--checkpoint-every`.
    pub checkpoint_every: Option<u64>,
    /// `--keep-checkpoints`.
    pub keep_checkpoints: Option<usize>,
    /// `--precision`.
    pub precision: Option<Precision>,
    /// `--no-flip`.
    pub no_flip: bool,
    /// `--pad`.
    pub pad: bool,
    /// `--strict`.
    pub strict: bool,
    /// `--fid-every`.
    pub fid_every: Option<u64>,
    /// `--fid-reference`.
    pub fid_reference: Option<PathBuf>,
    /// `--fid-samples`.
    pub fid_samples: Option<usize>,
    /// `--fid-weights`.
    pub fid_weights: Option<PathBuf>,
    /// `--no-tensorboard`: stop writing TensorBoard event files.
    pub no_tensorboard: bool,
}

/// Where a resumed run is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResumeMode {
    /// In the run's own folder.
    Continue,
    /// In a new folder, as a new run branched from the checkpoint.
    Branch {
        /// The original run's folder, if the checkpoint lies in one (its metrics up to the
        /// checkpoint's step are carried over).
        source: Option<PathBuf>,
    },
}

/// Everything [`train`](crate::train::train) needs to continue a checkpoint.
#[derive(Debug, Clone)]
pub struct ResumePlan {
    /// The checkpoint file.
    pub checkpoint: PathBuf,
    /// The run's settings with the changes applied.
    pub config: RunConfig,
    /// The folder to write to.
    pub run_dir: PathBuf,
    /// Continue in place or branch.
    pub mode: ResumeMode,
    /// The state recorded in the checkpoint.
    pub state: ResumeState,
    /// Continue even if the data's fingerprint differs.
    pub allow_data_change: bool,
    /// What the changes did, for the user ("--no-flip: images are no longer mirrored").
    pub notes: Vec<String>,
}

/// Resolves `--resume`'s argument: a run folder (its `checkpoints/latest.catgan`) or a
/// checkpoint file. Returns the checkpoint and the run folder it belongs to, if any (a
/// checkpoint outside a run's `checkpoints/` folder belongs to none).
pub fn resolve_resume(target: &Path) -> Result<(PathBuf, Option<PathBuf>), TrainError> {
    if target.is_dir() {
        let run = RunDir::at(target);
        let latest = run.latest_checkpoint();
        if !latest.is_file() {
            return Err(TrainError::Invalid(format!(
                "--resume {}: no checkpoint found at {} (was the run started? checkpoints are \
                 written every few epochs and on Ctrl-C)",
                target.display(),
                latest.display()
            )));
        }
        Ok((latest, Some(target.to_path_buf())))
    } else if target.is_file() {
        let parent = target.parent().unwrap_or(Path::new("."));
        let parent = if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        };
        let run_dir = (parent.file_name().is_some_and(|n| n == "checkpoints"))
            .then(|| parent.parent().unwrap_or(Path::new(".")).to_path_buf());
        Ok((target.to_path_buf(), run_dir))
    } else {
        Err(TrainError::Invalid(format!(
            "--resume {}: no such run folder or checkpoint file",
            target.display()
        )))
    }
}

/// Resolves a `--checkpoint` argument: a checkpoint file, or a run folder (its
/// `checkpoints/latest.catgan`).
pub fn resolve_checkpoint(target: &Path) -> Result<PathBuf, TrainError> {
    resolve_resume(target)
        .map(|(checkpoint, _)| checkpoint)
        .map_err(|e| TrainError::Invalid(e.to_string().replace("--resume", "--checkpoint")))
}

/// Reads a run folder's `config.json`.
pub fn read_run_config(run_dir: &Path) -> Result<RunConfig, TrainError> {
    let path = run_dir.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        TrainError::Invalid(format!(
            "cannot read {}: {e} (is {} a catgan run folder?)",
            path.display(),
            run_dir.display()
        ))
    })?;
    serde_json::from_str(&text).map_err(|e| {
        TrainError::Invalid(format!("{} is not a valid run config: {e}", path.display()))
    })
}

/// Plans the continuation of `target` (a run folder or a checkpoint) with `changes`, on
/// `backend`. Reads the checkpoint's header only; changes nothing on disk.
pub fn plan_resume(
    target: &Path,
    changes: &ResumeChanges,
    backend: BackendKind,
) -> Result<ResumePlan, TrainError> {
    let (checkpoint, home) = resolve_resume(target)?;
    let info = CheckpointInfo::read(&checkpoint)?;
    let state = ResumeState::from_extra(&info.extra, &checkpoint)?;
    let mut config = match (&state.run, &home) {
        (Some(run), _) => (**run).clone(),
        // Older checkpoints: the settings are only in the run folder.
        (None, Some(home)) => read_run_config(home).map_err(|e| {
            TrainError::Invalid(format!(
                "{e}\n{} was written before checkpoints carried their run's settings, so \
                 they can only come from its run's config.json; restore that file",
                checkpoint.display()
            ))
        })?,
        (None, None) => {
            return Err(TrainError::Invalid(format!(
                "{} was written before checkpoints carried their run's settings and lies \
                 outside a run folder; put it back in its run's checkpoints/ folder",
                checkpoint.display()
            )))
        }
    };
    config.trainer = info.config;
    let mut notes = Vec::new();
    apply_changes(&mut config, changes, info.precision, &mut notes)?;
    config.backend = backend;

    let run_dir = match (&changes.out, &home) {
        (Some(out), _) => out.clone(),
        (None, Some(home)) => home.clone(),
        (None, None) => {
            return Err(TrainError::Invalid(format!(
                "{} is not inside a run folder (<run>/checkpoints/); give --out NEW_FOLDER to \
                 continue it as a new run there",
                checkpoint.display()
            )))
        }
    };
    let own_folder = home.as_deref().is_some_and(|h| same_path(h, &run_dir));
    let mode = if RunDir::at(&run_dir).config_path().exists() || own_folder {
        ResumeMode::Continue
    } else {
        ResumeMode::Branch {
            source: home.clone(),
        }
    };
    if let ResumeMode::Branch { .. } = mode {
        config.branched_from = Some(format!(
            "run {} at step {}",
            config.run_id.as_deref().unwrap_or("(unknown)"),
            info.step
        ));
        config.run_id = Some(new_run_id());
        notes.push(format!(
            "branching: {} becomes a new run continuing {} from step {}",
            run_dir.display(),
            checkpoint.display(),
            info.step
        ));
    } else if config.run_id.is_none() {
        // A run from before identities: it gets one now.
        config.run_id = Some(new_run_id());
    }
    Ok(ResumePlan {
        checkpoint,
        config,
        run_dir,
        mode,
        state,
        allow_data_change: changes.allow_data_change,
        notes,
    })
}

/// Applies the resume flags to the run's settings; refuses those that cannot apply.
fn apply_changes(
    config: &mut RunConfig,
    changes: &ResumeChanges,
    saved_precision: Precision,
    notes: &mut Vec<String>,
) -> Result<(), TrainError> {
    // The saved state is f32 in every precision, so a run may switch when it resumes.
    config.precision = changes.precision.unwrap_or(saved_precision);
    if let Some(v) = changes.lr_d {
        config.trainer.lr_d = v;
    }
    if let Some(v) = changes.lr_g {
        config.trainer.lr_g = v;
    }
    if let Some(folder) = &changes.data {
        config.data.folder = Some(folder.clone());
    }
    if changes.pad && config.data.crop != CropMode::Pad {
        return Err(TrainError::Invalid(
            "--pad cannot change a resumed run: it was trained on center crops, and padding \
             changes every image; start a new run with --pad instead"
                .into(),
        ));
    }
    if changes.no_flip && config.data.flip {
        config.data.flip = false;
        notes.push("--no-flip: images are no longer mirrored from here on".into());
    }
    if changes.strict {
        config.data.strict = true;
    }
    if changes.epochs.is_some() || changes.steps.is_some() {
        config.schedule.epochs = changes.epochs;
        config.schedule.steps = changes.steps;
    }
    if let Some(v) = changes.sample_every {
        config.schedule.sample_every = v;
    }
    if let Some(v) = changes.checkpoint_every {
        config.schedule.checkpoint_every = Some(v);
    }
    if let Some(v) = changes.keep_checkpoints {
        config.schedule.keep_checkpoints = v;
    }
    if changes.no_tensorboard {
        config.schedule.tensorboard = false;
    }
    apply_fid_changes(config, changes)
}

/// `--fid-every` sets (or replaces) the FID schedule; `--fid-reference`, `--fid-samples`
/// and `--fid-weights` adjust it.
fn apply_fid_changes(config: &mut RunConfig, changes: &ResumeChanges) -> Result<(), TrainError> {
    let adjusting = changes.fid_reference.is_some()
        || changes.fid_samples.is_some()
        || changes.fid_weights.is_some();
    let mut fid = match (changes.fid_every, config.schedule.fid.take()) {
        (Some(every_epochs), old) => {
            let reference = changes
                .fid_reference
                .clone()
                .or_else(|| old.as_ref().map(|f| f.reference.clone()))
                .or_else(|| config.data.folder.clone())
                .ok_or_else(|| {
                    TrainError::Invalid(
                        "--fid-every on the built-in cats needs --fid-reference DIR|FILE".into(),
                    )
                })?;
            FidSchedule {
                every_epochs,
                reference,
                samples: old
                    .as_ref()
                    .map_or(FidSchedule::DEFAULT_SAMPLES, |f| f.samples),
                weights: old.and_then(|f| f.weights),
            }
        }
        (None, Some(old)) => old,
        (None, None) if adjusting => {
            return Err(TrainError::Invalid(
                "--fid-reference, --fid-samples and --fid-weights need --fid-every N: this run \
                 does not measure FID"
                    .into(),
            ))
        }
        (None, None) => return Ok(()),
    };
    if let Some(r) = &changes.fid_reference {
        fid.reference = r.clone();
    }
    if let Some(n) = changes.fid_samples {
        fid.samples = n;
    }
    if let Some(w) = &changes.fid_weights {
        fid.weights = Some(w.clone());
    }
    if fid.every_epochs == 0 || fid.samples < 2 {
        return Err(TrainError::Invalid(
            "--fid-every must be at least 1 and --fid-samples at least 2".into(),
        ));
    }
    config.schedule.fid = Some(fid);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run_config::{DataSettings, Schedule};
    use dcgan_core::{ModelPreset, TrainerConfig};

    fn config() -> RunConfig {
        let (g, d) = ModelPreset::Tiny32.configs(Some(4));
        RunConfig {
            trainer: TrainerConfig::new(g, d),
            preset: "tiny32".into(),
            data: DataSettings {
                folder: Some("photos".into()),
                crop: CropMode::Center,
                flip: true,
                strict: false,
            },
            schedule: Schedule::default(),
            backend: BackendKind::Flex,
            precision: Precision::F32,
            run_id: Some("abc".into()),
            branched_from: None,
        }
    }

    fn apply(changes: &ResumeChanges) -> Result<(RunConfig, Vec<String>), TrainError> {
        let mut config = config();
        let mut notes = Vec::new();
        apply_changes(&mut config, changes, Precision::F32, &mut notes)?;
        Ok((config, notes))
    }

    #[test]
    fn every_resume_flag_is_applied_or_refused() {
        let (same, notes) = apply(&ResumeChanges::default()).unwrap();
        assert_eq!(
            serde_json::to_value(&same).unwrap(),
            serde_json::to_value(config()).unwrap()
        );
        assert!(notes.is_empty());

        let changes = ResumeChanges {
            lr_d: Some(1e-4),
            lr_g: Some(3e-4),
            steps: Some(50),
            sample_every: Some(7),
            checkpoint_every: Some(2),
            keep_checkpoints: Some(5),
            precision: Some(Precision::Bf16),
            no_flip: true,
            strict: true,
            fid_every: Some(3),
            fid_samples: Some(64),
            no_tensorboard: true,
            ..ResumeChanges::default()
        };
        assert!(config().schedule.tensorboard);
        let (c, notes) = apply(&changes).unwrap();
        assert!(!c.schedule.tensorboard);
        assert_eq!((c.trainer.lr_d, c.trainer.lr_g), (1e-4, 3e-4));
        assert_eq!((c.schedule.steps, c.schedule.epochs), (Some(50), None));
        assert_eq!(c.schedule.sample_every, 7);
        assert_eq!(c.schedule.checkpoint_every, Some(2));
        assert_eq!(c.schedule.keep_checkpoints, 5);
        assert_eq!(c.precision, Precision::Bf16);
        assert!(!c.data.flip && c.data.strict);
        assert_eq!(notes.len(), 1, "{notes:?}");
        // --fid-every on a run without FID measures against the training folder.
        let fid = c.schedule.fid.unwrap();
        assert_eq!((fid.every_epochs, fid.samples), (3, 64));
        assert_eq!(fid.reference, PathBuf::from("photos"));

        let pad = apply(&ResumeChanges {
            pad: true,
            ..ResumeChanges::default()
        });
        assert!(pad.unwrap_err().to_string().contains("--pad cannot change"));
        let fid_alone = apply(&ResumeChanges {
            fid_reference: Some("ref.safetensors".into()),
            ..ResumeChanges::default()
        });
        assert!(fid_alone
            .unwrap_err()
            .to_string()
            .contains("need --fid-every"));
    }

    #[test]
    fn the_resume_target_names_its_run_folder_when_it_has_one() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        std::fs::create_dir_all(run.join("checkpoints")).unwrap();
        let inside = run.join("checkpoints/epoch-0001.catgan");
        let outside = dir.path().join("loose.catgan");
        for f in [&inside, &outside, &run.join("checkpoints/latest.catgan")] {
            std::fs::write(f, b"x").unwrap();
        }
        assert_eq!(resolve_resume(&inside).unwrap().1, Some(run.clone()));
        assert_eq!(resolve_resume(&run).unwrap().1, Some(run.clone()));
        assert_eq!(resolve_resume(&outside).unwrap().1, None);
        let missing = resolve_checkpoint(&dir.path().join("nope")).unwrap_err();
        assert!(missing.to_string().contains("--checkpoint"), "{missing}");
    }
}
