//! A whole training run: data, trainer, run folder, previews, checkpoints, plots, Ctrl-C.
//!
//! The story, top to bottom ([`train`]): open the run ([`TrainingRun::open`]: data through
//! the cache, the run folder, a new trainer or the checkpoint's) → step until the schedule
//! ends ([`TrainingRun::step`]: batch → the two updates → log → preview every N steps →
//! checkpoint every N epochs) → [`TrainingRun::finish`]: final checkpoint, grid and plot.
//! A stop request (Ctrl-C) finishes the step and saves; a non-finite or exploding loss
//! stops without overwriting the last good checkpoint.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use burn::prelude::Tensor;
use burn::tensor::backend::AutodiffBackend;
use dcgan_core::sample::{image_grid, square_columns, to_rgb_images};
use dcgan_core::{Precision, StepMetrics, Trainer};
use dcgan_data::{
    DataFingerprint, DatasetConfig, ImageDataset, Loader, LoaderConfig, LoaderPosition,
};

use crate::backend::{catch_device_failure, BackendKind, DeviceFailure};
use crate::divergence::{DivergenceWatch, Verdict, SATURATED_STEPS};
use crate::fid_probe::FidProbe;
use crate::parallel::Parallelism;
use crate::plot::plot_losses;
use crate::progress::{DataProgress, Progress};
use crate::resume::{ResumeMode, ResumePlan, ResumeState};
use crate::run_config::{DataSettings, RunConfig, Schedule};
use crate::run_dir::{
    new_run_id, read_metrics, same_path, MetricsLog, MetricsRow, RunDir, RunLock,
};
use crate::tensorboard::{tags, EventWriteError, EventWriter};

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
    /// The TensorBoard events file could not be created.
    #[error(transparent)]
    TensorBoard(#[from] EventWriteError),
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
        .unwrap_or_else(|| crate::defaults::CHECKPOINT_STEPS.div_ceil(steps_per_epoch.max(1)))
        .max(1)
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

/// Trains on backend `B` until the schedule ends or `stop` is set: open (or resume) the
/// run, step until done or stopped, finish.
pub fn train<B: AutodiffBackend>(
    start: Start,
    backend: BackendKind,
    device: &B::Device,
    stop: Arc<AtomicBool>,
) -> Result<RunSummary, TrainError> {
    train_with::<B>(start, backend, device, &Parallelism::default(), stop)
}

/// [`train`], data-parallel as `parallel` says (see [`crate::parallel`]); a follower
/// machine runs [`crate::parallel::follow`] instead. Across machines a stop is agreed
/// first and taken at the same step everywhere.
pub fn train_with<B: AutodiffBackend>(
    start: Start,
    backend: BackendKind,
    device: &B::Device,
    parallel: &Parallelism,
    stop: Arc<AtomicBool>,
) -> Result<RunSummary, TrainError> {
    if parallel.is_follower() {
        return crate::parallel::follow::<B>(start, backend, device, parallel, stop);
    }
    let mut run = TrainingRun::<B>::open_with(start, backend, device, parallel)?;
    if run.is_done() {
        return Ok(run.already_done());
    }
    run.announce();
    let outcome = loop {
        if stop.load(Ordering::SeqCst) {
            run.trainer.request_stop();
        }
        if run.trainer.stop_agreed() {
            break Outcome::Interrupted;
        }
        if run.is_done() {
            break Outcome::Finished;
        }
        run.step()?;
    };
    run.finish(outcome)
}

/// One training run in progress: the trainer, its data, and the run folder it owns
/// (locked while this value lives).
///
/// The life of a run: [`open`](Self::open) (new or resumed) → [`step`](Self::step) until
/// [`is_done`](Self::is_done) or a stop → [`finish`](Self::finish). Epoch ends (checkpoint,
/// rotation, plot) happen inside `step`.
pub struct TrainingRun<B: AutodiffBackend> {
    config: RunConfig,
    backend: BackendKind,
    run: RunDir,
    _lock: RunLock,
    trainer: Trainer<B>,
    loader: Loader<B>,
    fid: Option<FidProbe<B::InnerBackend>>,
    fingerprint: DataFingerprint,
    metrics_log: MetricsLog,
    /// TensorBoard's copy of the log, the previews and the settings (unless turned off, or
    /// after a write failed: training goes on without it).
    events: Option<EventWriter>,
    watch: DivergenceWatch,
    progress: Option<Progress>,
    target_steps: u64,
    checkpoint_every_epochs: u64,
    start_step: u64,
    last_checkpoint: Option<PathBuf>,
    last_saved_step: Option<u64>,
    last_good: Option<PathBuf>,
    last_sample: Option<PathBuf>,
    notes: Vec<String>,
    images_seen: u64,
    train_time: Duration,
    smoothed_rate: Option<f64>,
    session_start: Instant,
    /// The replicas in a few words, when data-parallel.
    replicas: Option<String>,
    /// Unit tests: replace the batch with NaNs at this step (1-based).
    #[cfg(test)]
    nan_at_step: Option<u64>,
}

impl<B: AutodiffBackend> TrainingRun<B> {
    /// Opens a run: checks the settings and the memory they need, opens the data and (if
    /// scheduled) the FID reference, takes the run folder (new, the run's own, or a
    /// branch), builds or loads the trainer and writes `config.json`. Nothing is written
    /// before every check has passed.
    pub fn open(
        start: Start,
        backend: BackendKind,
        device: &B::Device,
    ) -> Result<Self, TrainError> {
        Self::open_with(start, backend, device, &Parallelism::default())
    }

    /// [`TrainingRun::open`], with the trainer data-parallel as `parallel` says (the
    /// leader's side: this process writes the run).
    pub fn open_with(
        start: Start,
        backend: BackendKind,
        device: &B::Device,
        parallel: &Parallelism,
    ) -> Result<Self, TrainError> {
        let session_start = Instant::now();
        let (mut config, run_dir, resume) = match start {
            Start::New { config, run_dir } => (*config, run_dir, None),
            Start::Resume(plan) => (plan.config.clone(), plan.run_dir.clone(), Some(*plan)),
        };
        config.run_id.get_or_insert_with(new_run_id);
        config.trainer.validate()?;
        config.precision.check_supported::<B>(device)?;
        let replica_devices = match parallel.is_single() {
            true => None,
            false => Some(parallel.check::<B>(backend, device, config.trainer.batch_size)?),
        };
        // Refuse what the machine cannot hold before anything is allocated or written.
        crate::memory::check_fits(&config.trainer, backend)?;

        // Data: decoded once into the cache, then served shuffled from memory.
        let dataset = open_dataset(&config.data, config.trainer.generator.image_size)?;
        let report = dataset.report();
        if !report.skipped.is_empty() {
            eprintln!(
                "note: {} of {} files skipped (run `cats inspect-data --data {}` to list them)",
                report.skipped.len(),
                report.found,
                report.root.display()
            );
        }
        let fingerprint = dataset.data_fingerprint().clone();
        let (loader_config, position) = loader_start(&config, resume.as_ref(), &dataset)?;

        // FID (optional): the Inception network and reference statistics, before anything
        // is written, so that missing weights leave no half-made run folder behind.
        let fid_cache = run_dir.join("fid-reference.safetensors");
        let fid = match &config.schedule.fid {
            Some(fid) => Some(FidProbe::<B::InnerBackend>::open(
                fid,
                &fid_cache,
                config.data.strict,
                device,
            )?),
            None => None,
        };

        // The run folder, locked for this process: new, the run's own, or a branch.
        let (run, lock) = match resume.as_ref().map(|plan| &plan.mode) {
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
        let mut trainer = open_trainer(&config, resume.as_ref(), backend, device)?;
        let replicas = match replica_devices {
            None => None,
            Some(devices) => {
                crate::parallel::replicate(&mut trainer, devices, parallel)?;
                Some(crate::parallel::describe(&trainer, parallel))
            }
        };
        run.write_config(&config)?;
        if let Some(probe) = &fid {
            probe.keep(&fid_cache)?;
        }
        let loader = Loader::<B>::new_at(dataset, &loader_config, device.clone(), position)?;
        let steps_per_epoch = loader.steps_per_epoch();
        let target_steps = target_steps(&config.schedule, steps_per_epoch);
        let resumed_at = resume.as_ref().map(|_| trainer.steps_done());
        let metrics_log = MetricsLog::open(&run.metrics_path(), resumed_at)?;
        let events = match config.schedule.tensorboard {
            true => Some(open_events(run.root(), resumed_at, &config)?),
            false => None,
        };
        // The checkpoint the run continues from counts as good: the user chose it.
        let last_good = match &resume {
            Some(plan) => {
                if !same_path(&plan.checkpoint, &run.last_good_checkpoint()) {
                    run.mark_good(&plan.checkpoint)?;
                }
                Some(run.last_good_checkpoint())
            }
            None => None,
        };
        Ok(TrainingRun {
            checkpoint_every_epochs: checkpoint_every(&config.schedule, steps_per_epoch),
            start_step: trainer.steps_done(),
            last_checkpoint: resume.as_ref().map(|plan| plan.checkpoint.clone()),
            last_saved_step: resumed_at,
            notes: resume.map(|plan| plan.notes).unwrap_or_default(),
            config,
            backend,
            run,
            _lock: lock,
            trainer,
            loader,
            fid,
            fingerprint,
            metrics_log,
            events,
            watch: DivergenceWatch::new(),
            progress: None,
            target_steps,
            last_good,
            last_sample: None,
            images_seen: 0,
            train_time: Duration::ZERO,
            smoothed_rate: None,
            session_start,
            replicas,
            #[cfg(test)]
            nan_at_step: None,
        })
    }

    /// The run's settings (as saved in `config.json`).
    pub fn config(&self) -> &RunConfig {
        &self.config
    }

    /// The trainer, at its current step.
    pub fn trainer(&self) -> &Trainer<B> {
        &self.trainer
    }

    /// The run folder.
    pub fn run_dir(&self) -> &RunDir {
        &self.run
    }

    /// Steps done in total (across resumes).
    pub fn steps_done(&self) -> u64 {
        self.trainer.steps_done()
    }

    /// The step at which the schedule ends.
    pub fn target_steps(&self) -> u64 {
        self.target_steps
    }

    /// Whether the schedule is complete.
    pub fn is_done(&self) -> bool {
        self.trainer.steps_done() >= self.target_steps
    }

    /// Prints what is about to be trained (data, model, backend, folder, resume notes) and
    /// starts the progress bar.
    pub fn announce(&mut self) {
        let progress = Progress::new("train", self.target_steps, Duration::from_secs(10));
        let size = self.config.trainer.generator.image_size;
        progress.println(&format!(
            "{} images of {size}×{size} · {} steps/epoch · batch {} · {} backend, {} · run folder {}",
            self.loader.dataset().len(),
            self.loader.steps_per_epoch(),
            self.config.trainer.batch_size,
            self.backend,
            self.config.precision,
            self.run.root().display(),
        ));
        progress.println(&format!("recipe: {}", self.config.trainer.recipe()));
        if let Some(replicas) = &self.replicas {
            progress.println(&format!("data-parallel: {replicas}"));
        }
        if let Some(note) = precision_note(self.config.precision, self.backend) {
            progress.println(&note);
        }
        if self.start_step > 0 {
            progress.println(&format!(
                "resuming at step {} (epoch {})",
                self.start_step,
                self.trainer.epoch + 1
            ));
        }
        for note in &self.notes {
            progress.println(&format!("note: {note}"));
        }
        self.progress = Some(progress);
    }

    /// One training step: a batch, the two updates, the checks for divergence, a row of
    /// `metrics.csv`, and what is due at this step (a preview, FID, the epoch's checkpoint).
    ///
    /// A non-finite or exploding loss ends the run with [`TrainError::Diverged`], naming the
    /// last good checkpoint, which is never overwritten by a diverged state.
    pub fn step(&mut self) -> Result<StepMetrics, TrainError> {
        let t0 = Instant::now();
        let batch = self.loader.next_batch()?;
        let n = batch.indices.len() as u64;
        let images = self.test_fault(batch.images);
        let metrics = match catch_device_failure(self.backend, || self.trainer.step(images))? {
            Ok(m) => m,
            Err(source @ dcgan_core::Error::NonFiniteLoss { .. }) => {
                return Err(self.diverged(source.to_string()))
            }
            Err(other) => return Err(other.into()),
        };
        let step_time = t0.elapsed();
        self.train_time += step_time;
        self.images_seen += n;
        let rate = n as f64 / step_time.as_secs_f64().max(1e-9);
        let smooth = self.smoothed_rate.map_or(rate, |s| 0.9 * s + 0.1 * rate);
        self.smoothed_rate = Some(smooth);
        let epoch = batch.position.epoch + 1;
        let fid = if batch.epoch_end {
            self.measure_fid(epoch)?
        } else {
            None
        };
        match self.watch.observe(&metrics) {
            Verdict::Healthy => {}
            Verdict::Saturated { step } => self.say(&saturation_warning(
                step,
                self.last_good.as_deref(),
                self.trainer.config().lr_d,
            )),
            Verdict::Exploded { cause } => return Err(self.diverged(cause)),
        }
        self.metrics_log.append(&MetricsRow {
            step: metrics.step,
            epoch,
            d_loss: metrics.d_loss,
            g_loss: metrics.g_loss,
            d_real: metrics.d_real,
            d_fake: metrics.d_fake,
            img_per_s: rate as f32,
            fid,
        })?;
        let (lr_d, lr_g) = (self.trainer.config().lr_d, self.trainer.config().lr_g);
        self.log_events(|events| {
            let mut scalars = vec![
                (tags::D_LOSS, metrics.d_loss as f64),
                (tags::G_LOSS, metrics.g_loss as f64),
                (tags::D_REAL, metrics.d_real as f64),
                (tags::D_FAKE, metrics.d_fake as f64),
                (tags::IMG_PER_S, rate),
                (tags::LR_D, lr_d),
                (tags::LR_G, lr_g),
            ];
            scalars.extend(fid.map(|fid| (tags::FID, fid)));
            events.scalars(metrics.step, &scalars)
        });
        if let Some(progress) = &mut self.progress {
            progress.update(
                metrics.step,
                &format!(
                    "epoch {epoch} · {smooth:.1} img/s · d {:.3} g {:.3} · D(x) {:.2} D(G(z)) {:.2}",
                    metrics.d_loss, metrics.g_loss, metrics.d_real, metrics.d_fake
                ),
            );
        }
        self.estimate_time(metrics.step);
        if metrics.step % self.config.schedule.sample_every.max(1) == 0 {
            let path = self.run.sample_path(metrics.step);
            self.write_preview(&path, metrics.step)?;
            self.last_sample = Some(path);
        }
        if batch.epoch_end {
            self.end_epoch(batch.position.epoch + 1, batch.next)?;
        }
        Ok(metrics)
    }

    /// The end of epoch `epoch` (1-based), with the loader at `next`: every
    /// `checkpoint_every` epochs a checkpoint (pointed to by `latest`, older ones pruned,
    /// kept as the last good one while the losses are healthy) and the loss plot.
    fn end_epoch(&mut self, epoch: u64, next: LoaderPosition) -> Result<(), TrainError> {
        self.trainer.epoch = epoch;
        if !epoch.is_multiple_of(self.checkpoint_every_epochs) {
            return Ok(());
        }
        self.metrics_log.flush()?;
        self.log_events(EventWriter::flush);
        let path = self.run.epoch_checkpoint(epoch);
        self.save(&path, next)?;
        self.run.point_latest_to(&path)?;
        self.run
            .prune_checkpoints(self.config.schedule.keep_checkpoints)?;
        self.plot()?;
        if self.watch.is_healthy() {
            self.run.mark_good(&path)?;
            self.last_good = Some(self.run.last_good_checkpoint());
        }
        self.last_checkpoint = Some(path);
        self.last_saved_step = Some(self.trainer.steps_done());
        Ok(())
    }

    /// Ends the run: the final state in `latest` (unless the newest epoch checkpoint is
    /// already it), a final preview and the loss plot.
    pub fn finish(mut self, outcome: Outcome) -> Result<RunSummary, TrainError> {
        if self.replicas.is_some() {
            // Every replica (and machine) checks at the same point that they agree.
            let agreed = crate::parallel::verify_agreement(&mut self.trainer)?;
            self.say(&agreed);
        }
        self.metrics_log.flush()?;
        self.log_events(EventWriter::flush);
        if let Some(progress) = self.progress.take() {
            progress.finish();
        }
        if self.last_saved_step != Some(self.trainer.steps_done()) {
            let latest = self.run.latest_checkpoint();
            self.save(&latest, self.loader.position())?;
            self.last_checkpoint = Some(latest);
        }
        let final_sample = self.run.sample_path(self.trainer.steps_done());
        // (Unless the schedule just wrote it: the same generator draws the same grid.)
        if self.last_sample.as_ref() != Some(&final_sample) {
            self.write_preview(&final_sample, self.trainer.steps_done())?;
        }
        self.plot()?;
        Ok(RunSummary {
            outcome,
            last_sample: Some(final_sample),
            ..self.summary()
        })
    }

    /// The summary of a run that had nothing left to do.
    fn already_done(self) -> RunSummary {
        RunSummary {
            outcome: Outcome::AlreadyDone,
            ..self.summary()
        }
    }

    fn summary(&self) -> RunSummary {
        RunSummary {
            outcome: Outcome::Finished,
            steps: self.trainer.steps_done(),
            epochs: self.trainer.epoch,
            run_dir: self.run.root().to_path_buf(),
            checkpoint: self.last_checkpoint.clone(),
            last_sample: self.last_sample.clone(),
            img_per_s: self.images_seen as f64 / self.train_time.as_secs_f64().max(1e-9),
            elapsed: self.session_start.elapsed(),
        }
    }

    /// FID at the end of epoch `epoch` (1-based), if one is scheduled then.
    fn measure_fid(&mut self, epoch: u64) -> Result<Option<f64>, TrainError> {
        let Some(probe) = &self.fid else {
            return Ok(None);
        };
        if !epoch.is_multiple_of(probe.schedule.every_epochs.max(1)) {
            return Ok(None);
        }
        self.say(&format!(
            "epoch {epoch}: measuring FID on {} images…",
            probe.schedule.samples
        ));
        let fid = probe.measure(
            &self.trainer.sampling_generator(true),
            self.config.trainer.latent,
        )?;
        self.say(&format!("epoch {epoch}: FID {fid:.2}"));
        Ok(Some(fid))
    }

    /// After the first few steps of this session: the time per epoch and to the end.
    fn estimate_time(&self, step: u64) {
        let remaining = self.target_steps - self.start_step;
        if step != self.start_step + EPOCH_ESTIMATE_AFTER.min(remaining) {
            return;
        }
        let steps_per_epoch = self.loader.steps_per_epoch();
        let img_per_s = self.images_seen as f64 / self.train_time.as_secs_f64().max(1e-9);
        let epoch_seconds =
            (steps_per_epoch * self.config.trainer.batch_size as u64) as f64 / img_per_s;
        self.say(&format!(
            "≈ {} per epoch at {img_per_s:.1} img/s; {} steps to go ≈ {}",
            human_duration(epoch_seconds),
            self.target_steps - step,
            human_duration(
                epoch_seconds * (self.target_steps - step) as f64 / steps_per_epoch as f64
            ),
        ));
    }

    /// A checkpoint at `path`, with what a resume needs: the loader's position, the run's
    /// settings and the data's fingerprint.
    fn save(&self, path: &Path, position: LoaderPosition) -> Result<(), TrainError> {
        let state = ResumeState {
            loader: position,
            run: Some(Box::new(self.config.clone())),
            data: Some(self.fingerprint.clone()),
        };
        let extra = serde_json::to_value(state).expect("the resume state serialises");
        self.trainer.save_checkpoint(path, extra)?;
        Ok(())
    }

    /// The preview grid at `step` (the fixed preview latents, from the average when there
    /// is one), also sent to TensorBoard.
    fn write_preview(&mut self, path: &Path, step: u64) -> Result<(), TrainError> {
        let images = self
            .trainer
            .sampling_generator(true)
            .forward(self.trainer.preview_latents());
        let images = to_rgb_images(images)?;
        let grid = image_grid(&images, square_columns(images.len()), 2)?;
        let png = crate::image_file::save_png(&grid, path)?;
        let (width, height) = grid.dimensions();
        self.log_events(|events| events.png(tags::SAMPLES, step, png, width, height));
        Ok(())
    }

    /// Writes to TensorBoard's events file. A failure (a full disk, say) is reported once
    /// and ends the TensorBoard log, not the run: `metrics.csv` and the previews hold
    /// everything it would have shown.
    fn log_events(&mut self, write: impl FnOnce(&mut EventWriter) -> Result<(), EventWriteError>) {
        let Some(events) = &mut self.events else {
            return;
        };
        if let Err(e) = write(events) {
            self.events = None;
            self.say(&format!(
                "warning: {e}; TensorBoard logging stops here, training goes on                  (metrics.csv and samples/ have everything)"
            ));
        }
    }

    fn plot(&self) -> Result<(), TrainError> {
        plot_losses(
            &read_metrics(&self.run.metrics_path())?,
            &self.run.plot_path(),
            &plot_title(&self.config),
        )?;
        Ok(())
    }

    /// Ends the run after a divergence: the log is flushed, the bar closed, and the error
    /// names the last good checkpoint.
    fn diverged(&mut self, cause: String) -> TrainError {
        // The divergence is the error to report; a failing flush must not hide it.
        if let Err(e) = self.metrics_log.flush() {
            eprintln!("warning: {e}");
        }
        self.log_events(EventWriter::flush);
        if let Some(progress) = self.progress.take() {
            progress.finish();
        }
        TrainError::Diverged {
            cause,
            checkpoint: self.last_good.clone(),
            lr_d: self.trainer.config().lr_d,
            lr_g: self.trainer.config().lr_g,
        }
    }

    /// A line above the progress bar (or on stderr before it exists).
    fn say(&self, line: &str) {
        match &self.progress {
            Some(progress) => progress.println(line),
            None => eprintln!("{line}"),
        }
    }

    #[cfg(test)]
    fn test_fault(&self, images: Tensor<B, 4>) -> Tensor<B, 4> {
        if self.nan_at_step == Some(self.trainer.steps_done() + 1) {
            images.mul_scalar(f32::NAN)
        } else {
            images
        }
    }

    #[cfg(not(test))]
    fn test_fault(&self, images: Tensor<B, 4>) -> Tensor<B, 4> {
        images
    }
}

/// The run's TensorBoard events file, starting with its settings (as `config.json`).
fn open_events(
    dir: &Path,
    resumed_at: Option<u64>,
    config: &RunConfig,
) -> Result<EventWriter, TrainError> {
    let mut events = EventWriter::create(dir, resumed_at)?;
    let json = serde_json::to_string_pretty(config).expect("the run config serialises");
    // Markdown: four spaces make a code block that keeps the JSON's indentation.
    let text: String = json.lines().map(|line| format!("    {line}\n")).collect();
    events.text(tags::CONFIG, resumed_at.unwrap_or(0), &text)?;
    Ok(events)
}

/// The loader's settings and where it starts: the beginning of the seeded shuffle, or
/// where the checkpoint being resumed left it.
pub(crate) fn loader_start(
    config: &RunConfig,
    resume: Option<&ResumePlan>,
    dataset: &ImageDataset,
) -> Result<(LoaderConfig, LoaderPosition), TrainError> {
    let position = match resume {
        None => LoaderPosition::start(config.trainer.seed),
        Some(plan) => resumed_position(plan, dataset.data_fingerprint(), dataset.len())?,
    };
    let loader_config = LoaderConfig::new(config.trainer.batch_size)
        .with_seed(config.trainer.seed)
        .with_flip(config.data.flip)
        .with_drop_last(dataset.len() >= config.trainer.batch_size);
    Ok((loader_config, position))
}

/// The run's trainer: new, or the checkpoint's when resuming.
pub(crate) fn open_trainer<B: AutodiffBackend>(
    config: &RunConfig,
    resume: Option<&ResumePlan>,
    backend: BackendKind,
    device: &B::Device,
) -> Result<Trainer<B>, TrainError> {
    match resume {
        None => new_trainer(config, backend, device),
        Some(plan) => resumed_trainer(plan, config, backend, device),
    }
}

/// A new run's trainer, at the run's precision.
fn new_trainer<B: AutodiffBackend>(
    config: &RunConfig,
    backend: BackendKind,
    device: &B::Device,
) -> Result<Trainer<B>, TrainError> {
    let trainer = catch_device_failure(backend, || {
        let mut trainer = Trainer::<B>::new(config.trainer.clone(), device)?;
        trainer.set_precision(config.precision)?;
        Ok::<_, dcgan_core::Error>(trainer)
    })??;
    Ok(trainer)
}

/// The trainer exactly where the checkpoint left it; new learning rates are the one change
/// to the optimisation a resumed run accepts (the advice after a divergence).
fn resumed_trainer<B: AutodiffBackend>(
    plan: &ResumePlan,
    config: &RunConfig,
    backend: BackendKind,
    device: &B::Device,
) -> Result<Trainer<B>, TrainError> {
    let (mut trainer, _) = catch_device_failure(backend, || {
        Trainer::<B>::load_checkpoint_in(&plan.checkpoint, device, Some(config.precision))
    })??;
    let (lr_d, lr_g) = (config.trainer.lr_d, config.trainer.lr_g);
    if (lr_d, lr_g) != (trainer.config().lr_d, trainer.config().lr_g) {
        trainer.set_learning_rates(lr_d, lr_g)?;
    }
    Ok(trainer)
}

/// The step at which `schedule` ends ([`EPOCHS`](crate::defaults::EPOCHS) when it names no end).
pub(crate) fn target_steps(schedule: &Schedule, steps_per_epoch: u64) -> u64 {
    match (schedule.steps, schedule.epochs) {
        (Some(s), Some(e)) => s.min(e * steps_per_epoch),
        (Some(s), None) => s,
        (None, Some(e)) => e * steps_per_epoch,
        (None, None) => crate::defaults::EPOCHS * steps_per_epoch,
    }
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

#[cfg(all(test, feature = "flex"))]
mod tests {
    use super::*;
    use crate::resume::{plan_resume, ResumeChanges};
    use dcgan_core::{CheckpointInfo, ModelPreset, TrainerConfig};
    use dcgan_data::CropMode;

    type B = burn::backend::Autodiff<burn::backend::Flex>;

    /// A tiny 32 px model on the 17 built-in cats: batch 4 gives 4 steps per epoch.
    fn config(steps: u64) -> RunConfig {
        let (g, d) = ModelPreset::Tiny32.configs(Some(4));
        RunConfig {
            trainer: TrainerConfig::new(g, d).with_batch_size(4),
            preset: "tiny32".into(),
            data: DataSettings {
                folder: None,
                crop: CropMode::Center,
                flip: true,
                strict: false,
            },
            schedule: Schedule {
                steps: Some(steps),
                sample_every: 3,
                checkpoint_every: Some(1),
                keep_checkpoints: 1,
                ..Schedule::default()
            },
            backend: BackendKind::Flex,
            precision: Precision::F32,
            run_id: None,
            branched_from: None,
        }
    }

    fn open(config: RunConfig, run_dir: &Path) -> TrainingRun<B> {
        let start = Start::New {
            config: Box::new(config),
            run_dir: run_dir.to_path_buf(),
        };
        TrainingRun::<B>::open(start, BackendKind::Flex, &Default::default()).unwrap()
    }

    fn steps(run: &mut TrainingRun<B>, n: u64) {
        for _ in 0..n {
            run.step().unwrap();
        }
    }

    #[test]
    fn open_takes_the_folder_writes_the_config_and_trains_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let run_dir = dir.path().join("run");
        let run = open(config(10), &run_dir);
        assert_eq!(run.steps_done(), 0);
        assert_eq!(run.target_steps(), 10);
        assert!(!run.is_done());
        let saved: RunConfig =
            serde_json::from_slice(&std::fs::read(run_dir.join("config.json")).unwrap()).unwrap();
        assert_eq!(saved.run_id, run.config().run_id);
        assert!(saved.run_id.is_some());
        assert!(!run_dir.join("checkpoints/latest.catgan").exists());
        // The folder is this run's while it is open: a second run is refused.
        let again = TrainingRun::<B>::open(
            Start::New {
                config: Box::new(config(10)),
                run_dir: run_dir.clone(),
            },
            BackendKind::Flex,
            &Default::default(),
        );
        assert!(
            matches!(again, Err(TrainError::RunDir(_))),
            "a second run opened the folder"
        );
    }

    #[test]
    fn the_schedule_ends_at_the_steps_or_the_epochs_whichever_comes_first() {
        let schedule = |steps, epochs| Schedule {
            steps,
            epochs,
            ..Schedule::default()
        };
        assert_eq!(target_steps(&schedule(Some(10), None), 4), 10);
        assert_eq!(target_steps(&schedule(None, Some(3)), 4), 12);
        assert_eq!(target_steps(&schedule(Some(10), Some(2)), 4), 8);
        assert_eq!(target_steps(&schedule(None, None), 4), 100);
        // Checkpoints about every 100 steps, at least every epoch.
        assert_eq!(checkpoint_every(&Schedule::default(), 4), 25);
        assert_eq!(checkpoint_every(&Schedule::default(), 500), 1);
    }

    #[test]
    fn step_logs_each_step_and_writes_previews_on_schedule() {
        let dir = tempfile::tempdir().unwrap();
        let run_dir = dir.path().join("run");
        let mut run = open(config(10), &run_dir);
        let metrics = run.step().unwrap();
        assert_eq!(metrics.step, 1);
        assert!(metrics.d_loss.is_finite() && metrics.g_loss.is_finite());
        steps(&mut run, 2);
        assert_eq!(run.steps_done(), 3);
        assert!(
            run.run_dir().sample_path(3).exists(),
            "preview due at step 3"
        );
        assert!(!run.run_dir().sample_path(2).exists());
        run.metrics_log.flush().unwrap();
        let rows = read_metrics(&run_dir.join("metrics.csv")).unwrap();
        assert_eq!(rows.iter().map(|r| r.step).collect::<Vec<_>>(), [1, 2, 3]);
        assert!(rows.iter().all(|r| r.epoch == 1 && r.img_per_s > 0.0));
    }

    /// TensorBoard's copy failing (a full disk: `/dev/full`) ends the TensorBoard log, not
    /// the run: training, `metrics.csv` and the previews go on.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_failing_tensorboard_log_stops_alone() {
        let dir = tempfile::tempdir().unwrap();
        let run_dir = dir.path().join("run");
        let mut run = open(config(10), &run_dir);
        assert!(run.events.is_some(), "TensorBoard is on by default");
        run.events = Some(EventWriter::writing_to(Path::new("/dev/full")));
        steps(&mut run, 3); // the preview at step 3 flushes the events: the write fails
        assert!(run.events.is_none(), "the failed log was not dropped");
        steps(&mut run, 3);
        assert_eq!(run.steps_done(), 6);
        assert!(run.run_dir().sample_path(6).exists());
        run.metrics_log.flush().unwrap();
        assert_eq!(read_metrics(&run_dir.join("metrics.csv")).unwrap().len(), 6);
    }

    #[test]
    fn epoch_ends_checkpoint_rotate_and_keep_the_last_good_one() {
        let dir = tempfile::tempdir().unwrap();
        let run_dir = dir.path().join("run");
        let mut run = open(config(10), &run_dir);
        steps(&mut run, 4);
        assert_eq!(run.trainer().epoch, 1);
        let first = run.run_dir().epoch_checkpoint(1);
        assert_eq!(CheckpointInfo::read(&first).unwrap().step, 4);
        steps(&mut run, 4);
        // keep_checkpoints 1: epoch 1's file is gone, epoch 2's is `latest` and good.
        assert!(!first.exists());
        let latest = CheckpointInfo::read(&run.run_dir().latest_checkpoint()).unwrap();
        assert_eq!(latest.step, 8);
        let good = CheckpointInfo::read(&run.run_dir().last_good_checkpoint()).unwrap();
        assert_eq!(good.step, 8);
        assert!(run_dir.join("loss.png").exists());
    }

    #[test]
    fn finish_saves_the_final_state_preview_and_plot() {
        let dir = tempfile::tempdir().unwrap();
        let run_dir = dir.path().join("run");
        let mut run = open(config(6), &run_dir);
        steps(&mut run, 6);
        assert!(run.is_done());
        let summary = run.finish(Outcome::Finished).unwrap();
        assert_eq!(
            (summary.outcome, summary.steps, summary.epochs),
            (Outcome::Finished, 6, 1)
        );
        let latest = run_dir.join("checkpoints/latest.catgan");
        assert_eq!(summary.checkpoint.as_deref(), Some(latest.as_path()));
        assert_eq!(CheckpointInfo::read(&latest).unwrap().step, 6);
        assert_eq!(
            summary.last_sample,
            Some(RunDir::at(&run_dir).sample_path(6))
        );
        assert!(summary.last_sample.unwrap().exists());
        assert_eq!(read_metrics(&run_dir.join("metrics.csv")).unwrap().len(), 6);
        // The lock went with the run: the folder can be continued.
        let plan = plan_resume(&run_dir, &ResumeChanges::default(), BackendKind::Flex).unwrap();
        let run = TrainingRun::<B>::open(
            Start::Resume(Box::new(plan)),
            BackendKind::Flex,
            &Default::default(),
        )
        .unwrap();
        assert_eq!(run.steps_done(), 6);
        assert!(run.is_done());
        assert_eq!(run.already_done().outcome, Outcome::AlreadyDone);
    }

    #[test]
    fn a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let run_dir = dir.path().join("run");
        let mut run = open(config(12), &run_dir);
        run.nan_at_step = Some(6);
        steps(&mut run, 5);
        let err = run.step().expect_err("the NaN batch stops the run");
        let TrainError::Diverged {
            checkpoint,
            lr_d,
            lr_g,
            ..
        } = &err
        else {
            panic!("{err}")
        };
        let message = err.to_string();
        assert!(message.contains("non-finite loss at step 6"), "{message}");
        let good = RunDir::at(&run_dir).last_good_checkpoint();
        assert_eq!(checkpoint.as_deref(), Some(good.as_path()));
        assert_eq!(CheckpointInfo::read(&good).unwrap().step, 4);
        assert_eq!(
            CheckpointInfo::read(&run_dir.join("checkpoints/latest.catgan"))
                .unwrap()
                .step,
            4
        );
        // The log stops before the broken step; the advice halves the learning rates.
        assert_eq!(read_metrics(&run_dir.join("metrics.csv")).unwrap().len(), 5);
        assert!(
            message.contains(&format!("--lr-d {:e}", lr_d / 2.0)),
            "{message}"
        );
        assert!(
            message.contains(&format!("--lr-g {:e}", lr_g / 2.0)),
            "{message}"
        );
        assert!(message.contains(&good.display().to_string()), "{message}");
        drop(run);

        // With no checkpoint written yet, the advice says so instead of claiming one.
        let early = dir.path().join("early");
        let mut run = open(config(12), &early);
        run.nan_at_step = Some(2);
        run.step().unwrap();
        let err = run
            .step()
            .expect_err("the NaN batch stops the run")
            .to_string();
        assert!(
            err.contains("No checkpoint had been written yet") && !err.contains("was kept"),
            "{err}"
        );
    }
}
