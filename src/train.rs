//! A whole training run: data, trainer, run folder, previews, checkpoints, plots, Ctrl-C.
//!
//! The story, top to bottom: open the data (through the cache) → build or resume the
//! trainer → loop { batch → step → log → preview every N steps → checkpoint every N
//! epochs } → final checkpoint, grid and plot. A stop request (Ctrl-C) saves a checkpoint
//! and returns; a non-finite loss stops without overwriting the last good checkpoint.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use burn::prelude::Backend;
use burn::tensor::backend::AutodiffBackend;
use dcgan_core::sample::{image_grid, square_columns, to_rgb_images};
use dcgan_core::{Precision, Trainer, TrainerConfig};
use dcgan_data::{
    CropMode, DataFingerprint, DatasetConfig, ImageDataset, Loader, LoaderConfig, LoaderPosition,
};
use serde::{Deserialize, Serialize};

use crate::backend::{catch_device_failure, BackendKind, DeviceFailure};
use crate::divergence::{DivergenceWatch, Verdict, SATURATED_STEPS};
use crate::plot::plot_losses;
use crate::progress::{DataProgress, Progress};
use crate::resume::{ResumeMode, ResumePlan, ResumeState};
use crate::run_dir::{new_run_id, read_metrics, same_path, MetricsLog, MetricsRow, RunDir};

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
            sample_every: 100,
            checkpoint_every: None,
            keep_checkpoints: 3,
            fid: None,
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

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The schedule was completed.
    Finished,
    /// A stop was requested (Ctrl-C); a checkpoint was saved.
    Interrupted,
    /// Training was already at or past the schedule's end (nothing to do).
    AlreadyDone,
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// How it ended.
    pub outcome: Outcome,
    /// Steps done in total (across resumes).
    pub steps: u64,
    /// Completed epochs.
    pub epochs: u64,
    /// The run folder.
    pub run_dir: PathBuf,
    /// The newest checkpoint.
    pub checkpoint: Option<PathBuf>,
    /// The newest preview grid.
    pub last_sample: Option<PathBuf>,
    /// Mean training throughput of this session, images per second.
    pub img_per_s: f64,
    /// Wall time of this session.
    pub elapsed: Duration,
}

/// Errors of a training run.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The data could not be used.
    #[error("cannot use the training data")]
    Data(#[from] dcgan_data::Error),
    /// The model, trainer or a checkpoint.
    #[error(transparent)]
    Core(#[from] dcgan_core::Error),
    /// The run folder.
    #[error(transparent)]
    RunDir(#[from] crate::run_dir::RunDirError),
    /// The loss plot.
    #[error(transparent)]
    Plot(#[from] crate::plot::PlotError),
    /// Writing a preview image.
    #[error(transparent)]
    Image(#[from] crate::image_file::ImageWriteError),
    /// The backend failed (driver, memory).
    #[error(transparent)]
    Device(#[from] DeviceFailure),
    /// A loss became NaN or infinite.
    #[error("training stopped: {cause}\n{}", diverged_advice(.checkpoint, *.lr_d, *.lr_g))]
    Diverged {
        /// What happened (with the step and the losses).
        cause: String,
        /// The last good checkpoint (kept out of rotation), if one was written.
        checkpoint: Option<PathBuf>,
        /// The run's discriminator learning rate.
        lr_d: f64,
        /// The run's generator learning rate.
        lr_g: f64,
    },
    /// Settings that do not fit together.
    #[error("{0}")]
    Invalid(String),
    /// The data folder of a resumed run holds other files than when it was checkpointed.
    #[error(
        "the training data changed since the checkpoint: {folder} ({difference}); resuming \
         would continue on other images than the run was trained on. Restore the folder, \
         or give --allow-data-change to continue on it as it is now"
    )]
    DataChanged {
        /// The data folder.
        folder: String,
        /// How it changed.
        difference: String,
    },
    /// Measuring FID failed.
    #[error("measuring FID")]
    Fid(#[from] dcgan_metrics::Error),
}

/// What to do after a divergence: resume the last good checkpoint with lower learning
/// rates (a command that works), or start again if there is none.
fn diverged_advice(checkpoint: &Option<PathBuf>, lr_d: f64, lr_g: f64) -> String {
    let (lr_d, lr_g) = (lower_rate(lr_d), lower_rate(lr_g));
    match checkpoint {
        Some(path) => format!(
            "The last good checkpoint was kept ({path}). Resume from it with lower learning \
             rates, e.g.:\n  cats train --resume {path} --lr-d {lr_d:e} --lr-g {lr_g:e}",
            path = path.display()
        ),
        None => format!(
            "No checkpoint had been written yet. Start again with lower learning rates, e.g. \
             --lr-d {lr_d:e} --lr-g {lr_g:e}"
        ),
    }
}

/// A learning rate to suggest after a divergence: half the rate, or the usual DCGAN rate
/// (2e-4) if the rate was far above anything that trains.
fn lower_rate(lr: f64) -> f64 {
    if lr > 1e-2 {
        2e-4
    } else {
        lr / 2.0
    }
}

/// Debug knobs for tests.
#[derive(Debug, Clone, Default)]
pub struct DebugOptions {
    /// Replace the real batch with NaNs at this step (1-based), to test divergence handling.
    pub inject_nan_at_step: Option<u64>,
}

/// Opens the dataset described by `data` at `image_size`, with a decoding progress bar.
pub fn open_dataset(data: &DataSettings, image_size: usize) -> Result<ImageDataset, TrainError> {
    let config = DatasetConfig::new()
        .with_image_size(image_size as u32)
        .with_crop(data.crop)
        .with_strict(data.strict);
    let dataset = match &data.folder {
        Some(folder) => ImageDataset::open(folder, &config, &DataProgress::new())?,
        None => ImageDataset::builtin(&config)?,
    };
    Ok(dataset)
}

/// Checkpoints for short epochs: about every 100 steps, at epoch ends.
fn checkpoint_every(schedule: &Schedule, steps_per_epoch: u64) -> u64 {
    schedule
        .checkpoint_every
        .unwrap_or_else(|| 100u64.div_ceil(steps_per_epoch.max(1)))
        .max(1)
}

/// FID measurement state of a run: the Inception network and the reference statistics.
struct FidProbe<B: Backend> {
    schedule: FidSchedule,
    evaluator: dcgan_metrics::FidEvaluator<B>,
    reference: dcgan_metrics::ReferenceStats,
    /// Computed from the image folder now: to be kept in the run folder.
    computed: bool,
}

impl<B: Backend> FidProbe<B> {
    /// Loads the network and the reference statistics: from the schedule's statistics
    /// file, from `cached` (kept in the run folder, if made from the same reference), or
    /// computed from the image folder (and then saved to `cached` once the run folder is
    /// ours, see [`FidProbe::keep`]).
    fn open(
        schedule: &FidSchedule,
        cached: &Path,
        strict: bool,
        device: &B::Device,
    ) -> Result<Self, TrainError> {
        let evaluator =
            dcgan_metrics::FidEvaluator::<B>::load(schedule.weights.as_deref(), device)?;
        let source = schedule.reference.display().to_string();
        let from_cache = if schedule.reference.is_file() {
            Some(dcgan_metrics::ReferenceStats::load(&schedule.reference)?)
        } else if cached.is_file() {
            // A resumed run may have been given another --fid-reference since.
            dcgan_metrics::ReferenceStats::load(cached)
                .ok()
                .filter(|stats| stats.source == source)
        } else {
            None
        };
        let computed = from_cache.is_none();
        let reference = match from_cache {
            Some(reference) => reference,
            None => {
                let mut bar: Option<Progress> = None;
                let (reference, report) = dcgan_metrics::ReferenceStats::compute_from_folder(
                    &evaluator,
                    &schedule.reference,
                    true,
                    &dcgan_metrics::FolderOptions::new().with_strict(strict),
                    &mut |p| {
                        let bar = bar.get_or_insert_with(|| {
                            Progress::new(
                                "FID reference statistics",
                                p.total as u64,
                                Duration::from_secs(10),
                            )
                        });
                        bar.update(p.done as u64, "");
                    },
                )?;
                if let Some(bar) = bar {
                    bar.finish();
                }
                for note in report.notes() {
                    eprintln!("note: {note}");
                }
                reference
            }
        };
        Ok(FidProbe {
            schedule: schedule.clone(),
            evaluator,
            reference,
            computed,
        })
    }

    /// Saves freshly computed reference statistics to `cached`.
    fn keep(&self, cached: &Path) -> Result<(), TrainError> {
        if self.computed {
            self.reference.save(cached)?;
        }
        Ok(())
    }

    /// FID of `samples` fresh images from `generator` (fixed latents: comparable over time).
    fn measure(
        &self,
        generator: &dcgan_core::Generator<B>,
        latent: dcgan_core::LatentDistribution,
    ) -> Result<f64, TrainError> {
        use rand::SeedableRng;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0xF1D);
        let dim = generator.latent_dim();
        let device = generator.project.weight.device();
        let n = self.schedule.samples;
        let batch = self.evaluator.batch_size().max(1);
        let batches = (0..n).step_by(batch).map(|start| {
            let count = batch.min(n - start);
            generator.forward(latent.tensor::<B>(count, dim, &mut rng, &device))
        });
        let scores = self.evaluator.evaluate_generator_images(
            batches,
            n,
            &self.reference,
            None,
            &mut |_| {},
        )?;
        Ok(scores.fid)
    }
}

/// What to run: a new run in a new folder, or the continuation of a checkpoint.
pub enum Start {
    /// A new run with this configuration.
    New {
        /// The run's settings.
        config: Box<RunConfig>,
        /// Its folder (created; refused if it holds a run).
        run_dir: PathBuf,
    },
    /// Continue from a checkpoint (see [`plan_resume`](crate::resume::plan_resume)).
    Resume(Box<ResumePlan>),
}

/// Trains on backend `B` until the schedule ends or `stop` is set.
pub fn train<B: AutodiffBackend>(
    start: Start,
    backend: BackendKind,
    device: &B::Device,
    stop: Arc<AtomicBool>,
    debug: &DebugOptions,
) -> Result<RunSummary, TrainError> {
    let session_start = Instant::now();
    let (mut config, run_dir, resume) = match start {
        Start::New { config, run_dir } => (*config, run_dir, None),
        Start::Resume(plan) => (plan.config.clone(), plan.run_dir.clone(), Some(*plan)),
    };
    config.run_id.get_or_insert_with(new_run_id);
    config.trainer.validate()?;
    config.precision.check_supported::<B>(device)?;
    // Refuse what the machine cannot hold before anything is allocated or written.
    crate::memory::check_fits(&config.trainer, backend)?;
    let image_size = config.trainer.generator.image_size;

    // Data: decoded once into the cache, then served shuffled from memory.
    let dataset = open_dataset(&config.data, image_size)?;
    let report = dataset.report().clone();
    if !report.skipped.is_empty() {
        eprintln!(
            "note: {} of {} files skipped (run `cats inspect-data --data {}` to list them)",
            report.skipped.len(),
            report.found,
            report.root.display()
        );
    }
    let fingerprint = dataset.data_fingerprint().clone();
    let position = match &resume {
        None => LoaderPosition::start(config.trainer.seed),
        Some(plan) => resumed_position(plan, &fingerprint, dataset.len())?,
    };
    let loader_config = LoaderConfig::new(config.trainer.batch_size)
        .with_seed(config.trainer.seed)
        .with_flip(config.data.flip)
        .with_drop_last(dataset.len() >= config.trainer.batch_size);

    // FID (optional): the Inception network and reference statistics, before anything is
    // written, so that missing weights leave no half-made run folder behind.
    let fid_cache = run_dir.join("fid-reference.safetensors");
    let fid_probe = match &config.schedule.fid {
        Some(fid) => Some(FidProbe::<B::InnerBackend>::open(
            fid,
            &fid_cache,
            config.data.strict,
            device,
        )?),
        None => None,
    };

    // The run folder, locked for this process: new, the run's own, or a branch.
    let (run, _lock) = match resume.as_ref().map(|plan| &plan.mode) {
        None => RunDir::create(&run_dir)?,
        Some(ResumeMode::Continue) => RunDir::continue_run(&run_dir, config.run_id.as_deref())?,
        Some(ResumeMode::Branch { source }) => {
            let (run, lock) = RunDir::create(&run_dir)?;
            if let Some(source) = source {
                run.carry_metrics_from(&RunDir::at(source))?;
            }
            (run, lock)
        }
    };
    // Trainer: fresh, or exactly where the checkpoint left it.
    let mut trainer = match &resume {
        None => catch_device_failure(backend, || {
            let mut trainer = Trainer::<B>::new(config.trainer.clone(), device)?;
            trainer.set_precision(config.precision)?;
            Ok::<_, dcgan_core::Error>(trainer)
        })??,
        Some(plan) => {
            let (mut trainer, _) = catch_device_failure(backend, || {
                Trainer::<B>::load_checkpoint_in(&plan.checkpoint, device, Some(config.precision))
            })??;
            // New learning rates are the one change to the optimisation a resumed run
            // accepts (the advice after a divergence).
            let (lr_d, lr_g) = (config.trainer.lr_d, config.trainer.lr_g);
            if (lr_d, lr_g) != (trainer.config().lr_d, trainer.config().lr_g) {
                trainer.set_learning_rates(lr_d, lr_g)?;
            }
            trainer
        }
    };
    run.write_config(&config)?;
    if let Some(probe) = &fid_probe {
        probe.keep(&fid_cache)?;
    }
    let mut loader = Loader::<B>::new_at(dataset, &loader_config, device.clone(), position)?;
    let steps_per_epoch = loader.steps_per_epoch();
    let every_epochs = checkpoint_every(&config.schedule, steps_per_epoch);
    let target_steps = match (config.schedule.steps, config.schedule.epochs) {
        (Some(s), Some(e)) => s.min(e * steps_per_epoch),
        (Some(s), None) => s,
        (None, Some(e)) => e * steps_per_epoch,
        (None, None) => 25 * steps_per_epoch,
    };
    let mut metrics_log = MetricsLog::open(
        &run.metrics_path(),
        resume.as_ref().map(|_| trainer.steps_done()),
    )?;
    let mut last_checkpoint = resume.as_ref().map(|plan| plan.checkpoint.clone());
    let mut last_saved_step = resume.as_ref().map(|_| trainer.steps_done());
    // The checkpoint the run continues from counts as good: the user chose it.
    let mut last_good = match &resume {
        Some(plan) => {
            if !same_path(&plan.checkpoint, &run.last_good_checkpoint()) {
                run.mark_good(&plan.checkpoint)?;
            }
            Some(run.last_good_checkpoint())
        }
        None => None,
    };
    let mut last_sample = None;

    let start_step = trainer.steps_done();
    if start_step >= target_steps {
        return Ok(RunSummary {
            outcome: Outcome::AlreadyDone,
            steps: start_step,
            epochs: trainer.epoch,
            run_dir: run.root().to_path_buf(),
            checkpoint: last_checkpoint,
            last_sample: None,
            img_per_s: 0.0,
            elapsed: session_start.elapsed(),
        });
    }

    let mut progress = Progress::new("train", target_steps, Duration::from_secs(10));
    progress.println(&format!(
        "{} images of {size}×{size} · {steps_per_epoch} steps/epoch · batch {} · {} backend, {} · run folder {}",
        loader.dataset().len(),
        config.trainer.batch_size,
        backend,
        config.precision,
        run.root().display(),
        size = image_size,
    ));
    progress.println(&format!("recipe: {}", config.trainer.recipe()));
    if let Some(note) = precision_note(config.precision, backend) {
        progress.println(&note);
    }
    if start_step > 0 {
        progress.println(&format!(
            "resuming at step {start_step} (epoch {})",
            trainer.epoch + 1
        ));
    }
    for note in resume.iter().flat_map(|plan| &plan.notes) {
        progress.println(&format!("note: {note}"));
    }

    let save =
        |trainer: &Trainer<B>, path: &Path, position: LoaderPosition| -> Result<(), TrainError> {
            let state = ResumeState {
                loader: position,
                run: Some(Box::new(config.clone())),
                data: Some(fingerprint.clone()),
            };
            trainer.save_checkpoint(path, serde_json::to_value(state).expect("serialisable"))?;
            Ok(())
        };
    let write_preview = |trainer: &Trainer<B>, path: &Path| -> Result<(), TrainError> {
        let images = trainer
            .sampling_generator(true)
            .forward(trainer.preview_latents());
        let images = to_rgb_images(images)?;
        let grid = image_grid(&images, square_columns(images.len()), 2)?;
        Ok(crate::image_file::save_png(&grid, path)?)
    };
    let diverged =
        |cause: String, last_good: Option<PathBuf>, trainer: &Trainer<B>| TrainError::Diverged {
            cause,
            checkpoint: last_good,
            lr_d: trainer.config().lr_d,
            lr_g: trainer.config().lr_g,
        };

    let mut watch = DivergenceWatch::new();
    let mut images_seen = 0u64;
    let mut train_time = Duration::ZERO;
    let mut smoothed_rate: Option<f64> = None;
    let outcome = loop {
        if stop.load(Ordering::SeqCst) {
            break Outcome::Interrupted;
        }
        if trainer.steps_done() >= target_steps {
            break Outcome::Finished;
        }
        let t0 = Instant::now();
        let batch = loader.next_batch()?;
        let n = batch.indices.len() as u64;
        let step_number = trainer.steps_done() + 1;
        let images = if debug.inject_nan_at_step == Some(step_number) {
            batch.images.clone().mul_scalar(f32::NAN)
        } else {
            batch.images
        };
        let metrics = match catch_device_failure(backend, || trainer.step(images))? {
            Ok(m) => m,
            Err(source @ dcgan_core::Error::NonFiniteLoss { .. }) => {
                metrics_log.flush()?;
                progress.finish();
                return Err(diverged(source.to_string(), last_good, &trainer));
            }
            Err(other) => return Err(other.into()),
        };
        let step_time = t0.elapsed();
        train_time += step_time;
        let dt = step_time.as_secs_f64().max(1e-9);
        images_seen += n;
        let rate = n as f64 / dt;
        let smooth = smoothed_rate.map_or(rate, |s| 0.9 * s + 0.1 * rate);
        smoothed_rate = Some(smooth);
        let epoch_display = batch.position.epoch + 1;
        let fid = match (&fid_probe, batch.epoch_end) {
            (Some(probe), true) if epoch_display % probe.schedule.every_epochs.max(1) == 0 => {
                progress.println(&format!(
                    "epoch {epoch_display}: measuring FID on {} images…",
                    probe.schedule.samples
                ));
                let fid =
                    probe.measure(&trainer.sampling_generator(true), config.trainer.latent)?;
                progress.println(&format!("epoch {epoch_display}: FID {fid:.2}"));
                Some(fid)
            }
            _ => None,
        };
        match watch.observe(&metrics) {
            Verdict::Healthy => {}
            Verdict::Saturated { step } => progress.println(&saturation_warning(
                step,
                last_good.as_deref(),
                trainer.config().lr_d,
            )),
            Verdict::Exploded { cause } => {
                metrics_log.flush()?;
                progress.finish();
                return Err(diverged(cause, last_good, &trainer));
            }
        }
        metrics_log.append(&MetricsRow {
            step: metrics.step,
            epoch: epoch_display,
            d_loss: metrics.d_loss,
            g_loss: metrics.g_loss,
            d_real: metrics.d_real,
            d_fake: metrics.d_fake,
            img_per_s: rate as f32,
            fid,
        })?;
        progress.update(
            metrics.step,
            &format!(
                "epoch {epoch_display} · {smooth:.1} img/s · d {:.3} g {:.3} · D(x) {:.2} D(G(z)) {:.2}",
                metrics.d_loss, metrics.g_loss, metrics.d_real, metrics.d_fake
            ),
        );

        if metrics.step == start_step + EPOCH_ESTIMATE_AFTER.min(target_steps - start_step) {
            let epoch_seconds = (steps_per_epoch * config.trainer.batch_size as u64) as f64
                / (images_seen as f64 / train_time.as_secs_f64().max(1e-9));
            progress.println(&format!(
                "≈ {} per epoch at {:.1} img/s; {} steps to go ≈ {}",
                human_duration(epoch_seconds),
                images_seen as f64 / train_time.as_secs_f64().max(1e-9),
                target_steps - metrics.step,
                human_duration(
                    epoch_seconds * (target_steps - metrics.step) as f64 / steps_per_epoch as f64
                ),
            ));
        }
        if metrics.step % config.schedule.sample_every.max(1) == 0 {
            let path = run.sample_path(metrics.step);
            write_preview(&trainer, &path)?;
            last_sample = Some(path);
        }
        if batch.epoch_end {
            trainer.epoch = batch.position.epoch + 1;
            if trainer.epoch % every_epochs == 0 {
                metrics_log.flush()?;
                let path = run.epoch_checkpoint(trainer.epoch);
                save(&trainer, &path, batch.next)?;
                run.point_latest_to(&path)?;
                run.prune_checkpoints(config.schedule.keep_checkpoints)?;
                plot_losses(
                    &read_metrics(&run.metrics_path())?,
                    &run.plot_path(),
                    &plot_title(&config),
                )?;
                if watch.is_healthy() {
                    run.mark_good(&path)?;
                    last_good = Some(run.last_good_checkpoint());
                }
                last_checkpoint = Some(path);
                last_saved_step = Some(trainer.steps_done());
            }
        }
    };
    metrics_log.flush()?;
    progress.finish();

    // The final state: always in `latest` (unless it is already the newest epoch checkpoint).
    if last_saved_step != Some(trainer.steps_done()) {
        let latest = run.latest_checkpoint();
        save(&trainer, &latest, loader.position())?;
        last_checkpoint = Some(latest);
    }
    let final_sample = run.sample_path(trainer.steps_done());
    write_preview(&trainer, &final_sample)?;
    plot_losses(
        &read_metrics(&run.metrics_path())?,
        &run.plot_path(),
        &plot_title(&config),
    )?;

    let elapsed = session_start.elapsed();
    Ok(RunSummary {
        outcome,
        steps: trainer.steps_done(),
        epochs: trainer.epoch,
        run_dir: run.root().to_path_buf(),
        checkpoint: last_checkpoint,
        last_sample: Some(final_sample).or(last_sample),
        img_per_s: images_seen as f64 / train_time.as_secs_f64().max(1e-9),
        elapsed,
    })
}

/// Where the loader of a resumed run starts: the checkpoint's position, once the data is
/// known to be the one it was trained on (or the user allowed a change).
fn resumed_position(
    plan: &ResumePlan,
    now: &DataFingerprint,
    images: usize,
) -> Result<LoaderPosition, TrainError> {
    let mut position = plan.state.loader;
    let Some(then) = &plan.state.data else {
        return Ok(position); // an older checkpoint: nothing to compare
    };
    let Some(difference) = then.describe_difference(now) else {
        return Ok(position);
    };
    let folder = plan.config.data.folder.as_ref().map_or_else(
        || "the built-in cats".to_string(),
        |f| f.display().to_string(),
    );
    if !plan.allow_data_change {
        return Err(TrainError::DataChanged { folder, difference });
    }
    eprintln!(
        "note: {folder} changed since the checkpoint ({difference}); continuing on it as \
         --allow-data-change asks"
    );
    if position.index > images as u64 {
        eprintln!(
            "note: the checkpoint was {} images into its epoch, more than the folder now \
             holds; the epoch starts over",
            position.index
        );
        position.index = 0;
    }
    Ok(position)
}

/// The advice when the discriminator has won outright for many steps.
fn saturation_warning(step: u64, last_good: Option<&Path>, lr_d: f64) -> String {
    let resume = match last_good {
        Some(path) => format!(
            "stop it (Ctrl-C) and resume from the last good checkpoint with a slower \
             discriminator:\n  cats train --resume {} --lr-d {:e}",
            path.display(),
            lower_rate(lr_d)
        ),
        None => format!(
            "stop it (Ctrl-C) and start again with a slower discriminator, e.g. --lr-d {:e}",
            lower_rate(lr_d)
        ),
    };
    format!(
        "warning: step {step}: for {SATURATED_STEPS} steps the discriminator has told real \
         from fake perfectly (D(x) ≈ 1, D(G(z)) ≈ 0); the generator gets almost no gradient \
         and rarely recovers. If the previews stop improving, {resume}"
    )
}

/// Steps measured before the time per epoch is estimated (the first ones warm up caches).
const EPOCH_ESTIMATE_AFTER: u64 = 5;

/// `42 s`, `3 min 20 s`, `2 h 05 min`.
fn human_duration(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min {:02} s", s / 60, s % 60),
        _ => format!("{} h {:02} min", s / 3600, (s % 3600) / 60),
    }
}

fn plot_title(config: &RunConfig) -> String {
    format!(
        "{} · {} px · base {} · batch {} · {}",
        config.preset,
        config.trainer.generator.image_size,
        config.trainer.discriminator.base_channels,
        config.trainer.batch_size,
        config.trainer.recipe()
    )
}

/// A word on bf16 where it costs time: CPU backends have no bf16 arithmetic units and
/// compute it by rounding through f32.
pub fn precision_note(precision: Precision, backend: BackendKind) -> Option<String> {
    (precision == Precision::Bf16 && !backend.is_gpu()).then(|| {
        format!(
            "note: {backend} computes bf16 by rounding through f32, which is slower than f32 \
             (≈ 5× on flex); bf16 pays off on GPUs with bf16 tensor cores (--backend cuda)"
        )
    })
}
