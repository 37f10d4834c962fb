//! Drawing cats for the web app: a worker thread that owns the generator.
//!
//! burn modules are not `Sync` (and inference is CPU-heavy), so the generator lives on one
//! dedicated thread; request handlers send it [`Job`]s through a bounded queue and await
//! the PNG on a oneshot channel, never blocking the async runtime. The worker watches the
//! checkpoint file and reloads it when its modification time or size changes, so the
//! Generator page follows a run that `cats train` is writing.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use dcgan_core::sample::{
    generate, image_grid, interpolate_latents, square_columns, to_rgb_images,
};
use dcgan_core::{CheckpointInfo, Generator, LatentDistribution};
use image::{ImageFormat, RgbImage};
use rand::SeedableRng;
use serde::Serialize;
use tokio::sync::oneshot;

use crate::backend::{catch_device_failure, BackendKind, DeviceFailure};

/// The most cats in one grid (`/api/generate?count=`).
pub const MAX_COUNT: usize = 64;
/// The most frames in one latent-walk strip (`/api/walk?frames=`).
pub const MAX_FRAMES: usize = 32;
/// A walk's position `t` is taken in steps of 1/`T_STEPS` (0.001): the point is then the
/// `k`-th of [`interpolate_latents`]'s evenly spaced path, the same slerp `cats generate
/// --interpolate` walks.
pub const T_STEPS: u32 = 1000;
/// Jobs waiting for the worker before new ones are refused as busy (the pages send one
/// request at a time; this only bounds a flood).
const QUEUE: usize = 8;
/// How often an idle worker looks at the checkpoint's modification time.
const POLL: Duration = Duration::from_secs(2);

/// What to draw.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Job {
    /// `count` cats from the latents `seed` draws, as a near-square grid: the same cats,
    /// in the same order, as `cats generate --seed SEED -n COUNT --grid`.
    Grid {
        /// The seed of the latent RNG.
        seed: u64,
        /// How many cats (1 to [`MAX_COUNT`]).
        count: usize,
    },
    /// A spherical walk from the first latent of seed `from` to the first latent of seed
    /// `to` (each the first cat of that seed's grid).
    Walk {
        /// The seed at `t = 0`.
        from: u64,
        /// The seed at `t = 1`.
        to: u64,
        /// One point or a strip.
        frames: WalkFrames,
    },
}

/// The part of a latent walk to draw.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum WalkFrames {
    /// One cat at `t = k / T_STEPS`.
    At(u32),
    /// `n` evenly spaced cats from `t = 0` to `t = 1`, in one row.
    Strip(usize),
}

/// A drawing request that could not be served.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DrawError {
    /// There is no generator to draw with (yet): the reason.
    #[error("{0}")]
    NoGenerator(String),
    /// The queue is full.
    #[error("the generator is busy with other requests; try again in a moment")]
    Busy,
    /// The backend failed while drawing.
    #[error("drawing failed: {0}")]
    Failed(String),
}

/// A drawn PNG and how long the generator took.
#[derive(Debug, Clone)]
pub struct Drawn {
    /// The PNG file.
    pub png: Vec<u8>,
    /// Time spent in the generator and PNG encoder.
    pub elapsed: Duration,
}

/// What the worker has loaded, as the pages show it (`GET /api/generator`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct GeneratorStatus {
    /// The checkpoint file followed.
    pub checkpoint: Option<String>,
    /// The loaded generator, if any.
    pub loaded: Option<LoadedInfo>,
    /// Why nothing is loaded, or why the latest reload failed (the previous generator is
    /// still used then).
    pub error: Option<String>,
}

/// The generator in use.
#[derive(Debug, Clone, Serialize)]
pub struct LoadedInfo {
    /// Training step of the checkpoint.
    pub step: u64,
    /// Epoch of the checkpoint.
    pub epoch: u64,
    /// The average's decay when the run kept one.
    pub ema_decay: Option<f64>,
    /// Whether the cats come from the average (false with `--no-ema` or without one).
    pub using_ema: bool,
    /// Side of the images, in pixels.
    pub image_size: usize,
    /// Length of a latent vector.
    pub latent_dim: usize,
    /// The distribution latents are drawn from.
    pub latent: LatentDistribution,
    /// Seconds since the Unix epoch when this checkpoint was loaded.
    pub loaded_at: u64,
}

struct Request {
    job: Job,
    reply: oneshot::Sender<Result<Drawn, DrawError>>,
}

/// The handlers' side of the worker: cheap to clone, `Send + Sync`.
#[derive(Clone)]
pub struct GeneratorHandle {
    jobs: SyncSender<Request>,
    status: Arc<Mutex<GeneratorStatus>>,
}

impl GeneratorHandle {
    /// What is loaded now (never waits for the worker).
    pub fn status(&self) -> GeneratorStatus {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Queues `job` and waits for its PNG without blocking the runtime; [`DrawError::Busy`]
    /// at once when the queue is full.
    pub async fn draw(&self, job: Job) -> Result<Drawn, DrawError> {
        let (reply, answer) = oneshot::channel();
        match self.jobs.try_send(Request { job, reply }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(DrawError::Busy),
            Err(TrySendError::Disconnected(_)) => {
                return Err(DrawError::Failed("the generator thread has stopped".into()))
            }
        }
        answer
            .await
            .unwrap_or_else(|_| Err(DrawError::Failed("the generator thread stopped".into())))
    }
}

/// Where the worker finds its checkpoint.
#[derive(Debug, Clone)]
pub struct Source {
    /// The checkpoint file.
    pub path: PathBuf,
    /// Whether a missing file is fine (a run folder whose first checkpoint is not written
    /// yet) rather than an error at start.
    pub may_be_missing: bool,
    /// Draw with the generator average when the run kept one.
    pub use_ema: bool,
}

/// Starts the worker thread on backend `B` and waits for its first load: an existing
/// checkpoint that does not load, or a missing one that must exist, is an error here.
pub fn start<B: AutodiffBackend>(
    source: Source,
    backend: BackendKind,
    device: B::Device,
) -> Result<GeneratorHandle, String> {
    let (jobs, queue) = mpsc::sync_channel(QUEUE);
    let status = Arc::new(Mutex::new(GeneratorStatus {
        checkpoint: Some(source.path.display().to_string()),
        ..Default::default()
    }));
    let (ready_tx, ready) = mpsc::channel();
    let shared = status.clone();
    std::thread::Builder::new()
        .name("cats-generator".into())
        .spawn(move || {
            let mut worker = Worker::<B> {
                source,
                backend,
                device,
                status: shared,
                loaded: None,
                seen: None,
            };
            let first = worker.refresh();
            let ok = first.is_ok();
            let _ = ready_tx.send(first);
            if ok {
                worker.serve(queue);
            }
        })
        .map_err(|e| format!("cannot start the generator thread: {e}"))?;
    ready
        .recv()
        .map_err(|_| "the generator thread stopped while loading".to_string())??;
    Ok(GeneratorHandle { jobs, status })
}

struct Loaded<B: Backend> {
    generator: Generator<B>,
    latent: LatentDistribution,
    /// Images per generator call, within the memory check.
    chunk: usize,
}

struct Worker<B: AutodiffBackend> {
    source: Source,
    backend: BackendKind,
    device: B::Device,
    status: Arc<Mutex<GeneratorStatus>>,
    loaded: Option<Loaded<B::InnerBackend>>,
    /// Modification time and length of the file last tried, so each version is loaded
    /// (or fails) once.
    seen: Option<(SystemTime, u64)>,
}

impl<B: AutodiffBackend> Worker<B> {
    fn serve(mut self, queue: Receiver<Request>) {
        loop {
            match queue.recv_timeout(POLL) {
                Ok(request) => {
                    // A failed reload keeps the previous generator: drawing goes on.
                    let _ = self.refresh();
                    let _ = request.reply.send(self.draw(request.job));
                }
                Err(RecvTimeoutError::Timeout) => {
                    let _ = self.refresh();
                }
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    /// Loads the checkpoint if it is new or changed. `Err` only for what makes a start
    /// fail: a required file that is missing, or a file that does not load.
    fn refresh(&mut self) -> Result<(), String> {
        let path = self.source.path.clone();
        let version = match std::fs::metadata(&path) {
            Ok(m) => (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()),
            Err(e) => {
                let why = if self.source.may_be_missing {
                    format!(
                        "no checkpoint yet at {} (cats train writes one at each epoch's end \
                         and on Ctrl-C; this page picks it up when it appears)",
                        path.display()
                    )
                } else {
                    format!("cannot read the checkpoint {}: {e}", path.display())
                };
                // Keep drawing with what is loaded while the file is being replaced.
                if self.loaded.is_none() {
                    self.set_status(None, Some(why.clone()));
                }
                return if self.source.may_be_missing || self.loaded.is_some() {
                    Ok(())
                } else {
                    Err(why)
                };
            }
        };
        if self.seen == Some(version) {
            return Ok(());
        }
        self.seen = Some(version);
        match self.load(&path) {
            Ok((loaded, info)) => {
                self.loaded = Some(loaded);
                self.set_status(Some(info), None);
                Ok(())
            }
            Err(why) => {
                let keep = self.status.lock().ok().and_then(|s| s.loaded.clone());
                self.set_status(keep, Some(why.clone()));
                Err(why)
            }
        }
    }

    fn load(&self, path: &Path) -> Result<(Loaded<B::InnerBackend>, LoadedInfo), String> {
        let use_ema = self.source.use_ema;
        let named = |e: &dyn std::fmt::Display| format!("loading {}: {e}", path.display());
        let (generator, info): (_, CheckpointInfo) = catch_device_failure(self.backend, || {
            dcgan_core::load_generator_with::<B>(path, &self.device, use_ema)
        })
        .map_err(|e| named(&e))?
        // dcgan-core's errors name the file already.
        .map_err(|e| e.to_string())?;
        // As `cats generate`: one grid's worth of pictures held, batches that fit in memory.
        let (chunk, _) =
            crate::memory::generation_batch(&info.config, self.backend, MAX_COUNT, MAX_COUNT)
                .map_err(|e| named(&e))?;
        let ema_decay = info.config.ema.map(|e| e.decay);
        let shown = LoadedInfo {
            step: info.step,
            epoch: info.epoch,
            ema_decay,
            using_ema: use_ema && ema_decay.is_some(),
            image_size: generator.image_size(),
            latent_dim: generator.latent_dim(),
            latent: info.config.latent,
            loaded_at: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        };
        let loaded = Loaded {
            generator,
            latent: info.config.latent,
            chunk,
        };
        Ok((loaded, shown))
    }

    fn set_status(&self, loaded: Option<LoadedInfo>, error: Option<String>) {
        if let Ok(mut status) = self.status.lock() {
            status.loaded = loaded;
            status.error = error;
        }
    }

    fn draw(&self, job: Job) -> Result<Drawn, DrawError> {
        let Some(loaded) = &self.loaded else {
            let why = self
                .status
                .lock()
                .ok()
                .and_then(|s| s.error.clone())
                .unwrap_or_else(|| "no checkpoint is loaded".into());
            return Err(DrawError::NoGenerator(why));
        };
        let started = Instant::now();
        let dim = loaded.generator.latent_dim();
        let image = match job {
            Job::Grid { seed, count } => {
                let cats = self.render(loaded, &seed_latents(loaded.latent, seed, count, dim))?;
                image_grid(&cats, square_columns(cats.len()), 2)
            }
            Job::Walk { from, to, frames } => {
                let (a, b) = (
                    seed_latents(loaded.latent, from, 1, dim),
                    seed_latents(loaded.latent, to, 1, dim),
                );
                let (path, columns) = match frames {
                    WalkFrames::At(k) => {
                        let mut path = interpolate_latents(&a, &b, T_STEPS as usize + 1, true);
                        (path.swap_remove(k.min(T_STEPS) as usize), 1)
                    }
                    WalkFrames::Strip(n) => (interpolate_latents(&a, &b, n, true).concat(), n),
                };
                let cats = self.render(loaded, &path)?;
                image_grid(&cats, columns, 2)
            }
        }
        .map_err(|e| DrawError::Failed(e.to_string()))?;
        let png = encode_png(&image).map_err(DrawError::Failed)?;
        Ok(Drawn {
            png,
            elapsed: started.elapsed(),
        })
    }

    fn render(
        &self,
        loaded: &Loaded<B::InnerBackend>,
        latents: &[f32],
    ) -> Result<Vec<RgbImage>, DrawError> {
        draw_latents(
            &loaded.generator,
            latents,
            loaded.chunk,
            self.backend,
            &self.device,
        )
        .map_err(|e| DrawError::Failed(e.to_string()))
    }
}

/// Why [`draw_latents`] failed.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The backend panicked (driver, memory).
    #[error(transparent)]
    Device(#[from] DeviceFailure),
    /// The generator's output could not be turned into pictures.
    #[error(transparent)]
    Core(#[from] dcgan_core::Error),
}

/// The generator's pictures of `latents` (row-major `[n, latent_dim]`), at most `chunk`
/// per generator call so that no call allocates more than a memory check allowed; a
/// backend panic becomes a [`DeviceFailure`] with a hint. `cats generate` draws with it
/// too.
pub fn draw_latents<B: Backend>(
    generator: &Generator<B>,
    latents: &[f32],
    chunk: usize,
    backend: BackendKind,
    device: &B::Device,
) -> Result<Vec<RgbImage>, RenderError> {
    let dim = generator.latent_dim();
    let mut images = Vec::with_capacity(latents.len() / dim);
    for part in latents.chunks(chunk.max(1) * dim) {
        let z = Tensor::<B, 2>::from_data(
            TensorData::new(part.to_vec(), [part.len() / dim, dim]),
            device,
        );
        images.extend(catch_device_failure(backend, || {
            to_rgb_images(generate(generator, z))
        })??);
    }
    Ok(images)
}

/// The first `count` latents of `seed`, drawn as `cats generate --seed` draws them.
pub fn seed_latents(
    distribution: LatentDistribution,
    seed: u64,
    count: usize,
    dim: usize,
) -> Vec<f32> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    distribution.sample(count, dim, &mut rng)
}

fn encode_png(image: &RgbImage) -> Result<Vec<u8>, String> {
    let mut bytes = Cursor::new(Vec::new());
    image
        .write_to(&mut bytes, ImageFormat::Png)
        .map_err(|e| format!("cannot encode the PNG ({e})"))?;
    Ok(bytes.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_draws_the_same_latents_as_a_longer_draw_begins_with() {
        let one = seed_latents(LatentDistribution::Uniform, 7, 1, 8);
        let four = seed_latents(LatentDistribution::Uniform, 7, 4, 8);
        assert_eq!(one[..], four[..8]);
        assert_ne!(one, seed_latents(LatentDistribution::Uniform, 8, 1, 8));
        assert!(one.iter().all(|v| (-1.0..1.0).contains(v)));
    }
}
