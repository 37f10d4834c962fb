//! The settings of a training run, saved as its folder's `config.json` and inside every
//! checkpoint: the model and optimisation ([`TrainerConfig`]), the data, and the schedule.

use std::path::PathBuf;

use dcgan_core::{Precision, TrainerConfig};
use dcgan_data::CropMode;
use serde::{Deserialize, Serialize};

use crate::backend::BackendKind;

/// Where the training images come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataSettings {
    /// A folder of images, or `None` for the built-in cats (16 FELIX photos + chelsea).
    pub folder: Option<PathBuf>,
    /// How non-square pictures are made square.
    pub crop: CropMode,
    /// Mirror images left–right at random (a cheap augmentation; on by default).
    pub flip: bool,
    /// Fail on the first unreadable file instead of skipping it.
    pub strict: bool,
}

/// When to stop and when to write things.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    /// Stop after this many epochs in total (if set).
    pub epochs: Option<u64>,
    /// Stop after this many steps in total (if set). With neither, 25 epochs.
    pub steps: Option<u64>,
    /// Write a preview grid every this many steps.
    pub sample_every: u64,
    /// Write a checkpoint every this many epochs (`None`: about every 100 steps, at least
    /// every epoch).
    pub checkpoint_every: Option<u64>,
    /// Epoch checkpoints kept (older ones are deleted); `latest` is always kept too.
    pub keep_checkpoints: usize,
    /// Measure FID (and KID) every this many epochs, if set.
    #[serde(default)]
    pub fid: Option<FidSchedule>,
    /// Also write TensorBoard event files in the run folder (runs started before they
    /// existed: on from their next session).
    #[serde(default = "tensorboard_on")]
    pub tensorboard: bool,
}

fn tensorboard_on() -> bool {
    true
}

/// FID measured during training, logged in `metrics.csv` next to the losses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FidSchedule {
    /// Every this many epochs.
    pub every_epochs: u64,
    /// Reference: a statistics file (`cats eval --write-stats`) or an image folder (its
    /// statistics are computed once and kept in the run folder).
    pub reference: PathBuf,
    /// Generated images per measurement.
    pub samples: usize,
    /// The Inception weights (default: `$CATGAN_FID_WEIGHTS` or the cached conversion).
    pub weights: Option<PathBuf>,
}

impl FidSchedule {
    /// Generated images per measurement unless `--fid-samples` says otherwise.
    pub const DEFAULT_SAMPLES: usize = 1000;
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule {
            epochs: None,
            steps: None,
            sample_every: crate::defaults::SAMPLE_EVERY,
            checkpoint_every: None,
            keep_checkpoints: crate::defaults::KEEP_CHECKPOINTS,
            fid: None,
            tensorboard: true,
        }
    }
}

/// Everything about a run; saved as the run folder's `config.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunConfig {
    /// The model and optimisation settings (fields added since the run was started take
    /// their defaults).
    #[serde(deserialize_with = "dcgan_core::trainer::deserialize_upgrading")]
    pub trainer: TrainerConfig,
    /// The preset the model came from (for humans; `trainer` is authoritative).
    pub preset: String,
    /// The data.
    pub data: DataSettings,
    /// Stopping and writing.
    pub schedule: Schedule,
    /// The backend it was started on.
    pub backend: BackendKind,
    /// Precision of the networks (absent in runs started before bf16 existed: f32).
    #[serde(default)]
    pub precision: Precision,
    /// The run's identity, also in each of its checkpoints (absent in runs started before
    /// runs had one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// The run and step this run was branched from (`--resume CHECKPOINT --out NEW`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branched_from: Option<String>,
}
