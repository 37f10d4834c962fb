//! Data-parallel training from the command line (`cats train --devices`, `--nodes`): which
//! devices of this machine, how the machines meet, and the loop of the machines that
//! follow the first one. The replicas themselves are `dcgan_core::replicas`.
//!
//! One machine: `--devices 2` (two replicas; on a CPU backend they share the CPU, on a GPU
//! backend devices 0 and 1), `--devices 0,2` or `--devices all`. Several machines: every
//! machine runs `cats train` with the same settings and `--nodes N --node-rank K
//! --coordinator ws://HOST:PORT --node-address ws://THIS-HOST:PORT`, after
//! `cats coordinator --port PORT` was started on one of them. Machine 0 (the leader) owns
//! the run folder: it logs, samples and writes the checkpoints; the others (followers)
//! only train their shards and write nothing. docs/distributed.md tells the whole story.

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use burn::prelude::DeviceOps as _;
use burn::tensor::backend::{AutodiffBackend, Backend, DeviceId};
use dcgan_core::replicas::{collective_replicas, NodeLink, Replica, ReplicaSync};
use dcgan_core::Trainer;
use dcgan_data::Loader;

use crate::backend::{catch_device_failure, BackendKind};
use crate::divergence::{DivergenceWatch, Verdict};
use crate::progress::Progress;
use crate::train::{
    loader_start, open_dataset, open_trainer, target_steps, Outcome, RunSummary, Start, TrainError,
};

pub use dcgan_core::replicas::DEFAULT_SYNC_TIMEOUT;

/// Which devices of this machine train, one replica each (`--devices`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceSet {
    /// This many replicas: on a CPU backend all on the CPU, on a GPU backend on devices
    /// `0..n` (or the one `--device` picks, for 1).
    Count(usize),
    /// These GPU ordinals.
    Indices(Vec<usize>),
    /// Every GPU the backend sees.
    All,
}

impl Default for DeviceSet {
    fn default() -> Self {
        DeviceSet::Count(1)
    }
}

impl FromStr for DeviceSet {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("all") {
            return Ok(DeviceSet::All);
        }
        let number = |part: &str| {
            part.trim()
                .parse::<usize>()
                .map_err(|_| format!("`{s}`: expected a count (2), GPU ordinals (0,1,3) or `all`"))
        };
        if s.contains(',') {
            let indices = s.split(',').map(number).collect::<Result<Vec<_>, _>>()?;
            let mut sorted = indices.clone();
            sorted.sort_unstable();
            sorted.dedup();
            if sorted.len() != indices.len() {
                return Err(format!("`{s}`: a device is named twice"));
            }
            return Ok(DeviceSet::Indices(indices));
        }
        match number(s)? {
            0 => Err(format!("`{s}`: at least one device")),
            n => Ok(DeviceSet::Count(n)),
        }
    }
}

/// How a run is spread: the devices of this machine and, across machines, the link.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Parallelism {
    /// This machine's devices (one replica each).
    pub devices: DeviceSet,
    /// The other machines, if any.
    pub link: Option<NodeLink>,
    /// How long a replica waits for the others before giving up (`None`:
    /// [`DEFAULT_SYNC_TIMEOUT`]).
    pub sync_timeout: Option<Duration>,
}

impl Parallelism {
    /// Whether this is plain training: one device, one machine.
    pub fn is_single(&self) -> bool {
        self.devices == DeviceSet::Count(1) && self.link.is_none()
    }

    /// Whether this machine follows another (a node rank above 0): it trains its shards
    /// and writes nothing.
    pub fn is_follower(&self) -> bool {
        self.link.as_ref().is_some_and(|link| link.node_rank > 0)
    }

    /// Whether other machines take part (stops must then be agreed, see
    /// [`Trainer::request_stop`]).
    pub fn spans_machines(&self) -> bool {
        self.link.is_some()
    }

    /// [`Parallelism::resolve_devices`], checking also that a global batch of `batch`
    /// images splits evenly over all replicas (before anything is written).
    pub fn check<B: Backend>(
        &self,
        backend: BackendKind,
        first: &B::Device,
        batch: usize,
    ) -> Result<Vec<B::Device>, TrainError> {
        let devices = self.resolve_devices::<B>(backend, first)?;
        let machines = self.link.as_ref().map_or(1, |link| link.nodes as usize);
        let world = devices.len() * machines;
        if !batch.is_multiple_of(world) {
            return Err(TrainError::Invalid(format!(
                "--batch-size {batch} does not split evenly over {world} replicas: give a \
                 multiple of {world} (the batch is the global one, shared by all replicas)"
            )));
        }
        Ok(devices)
    }

    /// The devices of this machine's replicas, the first being `first` (the device
    /// `--device` picked) unless GPU ordinals are given.
    pub fn resolve_devices<B: Backend>(
        &self,
        backend: BackendKind,
        first: &B::Device,
    ) -> Result<Vec<B::Device>, TrainError> {
        let invalid = |reason: String| TrainError::Invalid(format!("--devices: {reason}"));
        if !backend.is_gpu() {
            return match &self.devices {
                DeviceSet::Count(n) => Ok(vec![first.clone(); *n]),
                _ => Err(invalid(format!(
                    "the {backend} backend has one device, the CPU: give a count of \
                     replicas to share it (e.g. --devices 2)"
                ))),
            };
        }
        let id = first.to_id();
        let available = B::device_count(id.type_id);
        let indices: Vec<usize> = match &self.devices {
            DeviceSet::Count(1) => return Ok(vec![first.clone()]),
            DeviceSet::Count(n) => (0..*n).collect(),
            DeviceSet::Indices(list) => list.clone(),
            DeviceSet::All => (0..available).collect(),
        };
        if indices.is_empty() {
            return Err(invalid(format!("the {backend} backend sees no device")));
        }
        if let Some(missing) = indices.iter().find(|&&i| i >= available) {
            return Err(invalid(format!(
                "device {missing} does not exist: the {backend} backend sees {available} \
                 (ordinals 0 to {})",
                available.saturating_sub(1)
            )));
        }
        Ok(indices
            .into_iter()
            .map(|index| {
                <B::Device as burn::prelude::DeviceOps>::from_id(DeviceId::new(
                    id.type_id,
                    index as u16,
                ))
            })
            .collect())
    }
}

/// Sends burn's networking logs (burn-communication logs every connection at INFO level on
/// stdout once its first server starts) to stderr, warnings and errors only. Call before
/// joining other machines or serving as the coordinator; later calls do nothing.
pub fn quiet_network_logs() {
    let _ = tracing_subscriber::fmt()
        .with_max_level(tracing_subscriber::filter::LevelFilter::WARN)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .without_time()
        .try_init();
}

/// Shortens the panics of burn-collective's own threads (its server and network tasks stop
/// by panicking when another machine goes away) to one line each: the error that follows
/// says what happened. Every other panic is reported as before.
fn quiet_engine_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let thread = std::thread::current();
            let name = thread.name().unwrap_or_default();
            if name.starts_with("tokio-runtime-worker") || name.ends_with("-sync") {
                let message = info
                    .payload()
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| info.payload().downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                eprintln!("note: burn-collective's thread `{name}` stopped: {message}");
            } else {
                default(info);
            }
        }));
    });
}

/// Makes `trainer` data-parallel over `devices` (the first is its own; see
/// `dcgan_core::Trainer::replicate`), registering the replicas with burn-collective.
pub fn replicate<B: AutodiffBackend>(
    trainer: &mut Trainer<B>,
    devices: Vec<B::Device>,
    parallel: &Parallelism,
) -> Result<(), TrainError> {
    let timeout = parallel.sync_timeout.unwrap_or(DEFAULT_SYNC_TIMEOUT);
    quiet_engine_panics();
    if let Some(link) = &parallel.link {
        quiet_network_logs();
        eprintln!(
            "joining {} machines through {} as machine {} (waits for all of them)",
            link.nodes, link.coordinator, link.node_rank
        );
    }
    let mut ends =
        collective_replicas::<B::InnerBackend>(&devices, parallel.link.as_ref(), timeout)?
            .into_iter()
            .map(|end| Box::new(end) as Box<dyn ReplicaSync<B::InnerBackend>>);
    let own = ends.next().expect("one end per device");
    let others = devices
        .into_iter()
        .skip(1)
        .zip(ends)
        .map(|(device, sync)| Replica { device, sync })
        .collect();
    trainer.replicate(own, others)?;
    Ok(())
}

/// A few words on the replicas, for the run's first lines: `2 replicas (batch 8 each)`,
/// or `4 replicas on 2 machines, this one 0 (batch 16 each)`.
pub fn describe<B: AutodiffBackend>(trainer: &Trainer<B>, parallel: &Parallelism) -> String {
    let world = trainer.world_size();
    let per = trainer.config().batch_size / world.max(1);
    match &parallel.link {
        None => format!("{world} replicas (batch {per} each)"),
        Some(link) => format!(
            "{world} replicas on {} machines, this one {} (batch {per} each)",
            link.nodes, link.node_rank
        ),
    }
}

/// Checks with every replica, on every machine, that they hold the same weights
/// ([`Trainer::verify_replicas_agree`]; all must call it at the same point, after the last
/// step) and says so in a line that ends with the fingerprint, the same on every machine.
pub fn verify_agreement<B: AutodiffBackend>(
    trainer: &mut Trainer<B>,
) -> Result<String, TrainError> {
    let fingerprint = trainer.verify_replicas_agree()?;
    Ok(format!(
        "all {} replicas hold the same weights (fingerprint {fingerprint:.6e})",
        trainer.world_size()
    ))
}

/// The loop of a follower machine (node rank > 0): the same data, batches and steps as
/// the leader, its shards of them, nothing written. It stops where the leader stops: at
/// the end of the schedule, at a divergence both see, or at a stop any machine asked for
/// (`stop`, e.g. Ctrl-C on any machine).
pub fn follow<B: AutodiffBackend>(
    start: Start,
    backend: BackendKind,
    device: &B::Device,
    parallel: &Parallelism,
    stop: Arc<AtomicBool>,
) -> Result<RunSummary, TrainError> {
    let started = Instant::now();
    let (config, run_dir, resume) = match start {
        Start::New { config, run_dir } => (*config, run_dir, None),
        Start::Resume(plan) => (plan.config.clone(), plan.run_dir.clone(), Some(*plan)),
    };
    config.trainer.validate()?;
    let dataset = open_dataset(&config.data, config.trainer.generator.image_size)?;
    let (loader_config, position) = loader_start(&config, resume.as_ref(), &dataset)?;
    let mut trainer = open_trainer(&config, resume.as_ref(), backend, device)?;
    let devices = parallel.check::<B>(backend, device, config.trainer.batch_size)?;
    replicate(&mut trainer, devices, parallel)?;
    let mut loader = Loader::<B>::new_at(dataset, &loader_config, device.clone(), position)?;
    let target = target_steps(&config.schedule, loader.steps_per_epoch());
    let start_step = trainer.steps_done();
    let summary = |outcome, trainer: &Trainer<B>| {
        let elapsed = started.elapsed();
        let steps = trainer.steps_done();
        RunSummary {
            outcome,
            steps,
            epochs: trainer.epoch,
            run_dir: run_dir.clone(),
            checkpoint: None,
            last_sample: None,
            img_per_s: ((steps - start_step) * config.trainer.batch_size as u64) as f64
                / elapsed.as_secs_f64().max(1e-9),
            elapsed,
        }
    };
    if start_step >= target {
        // The leader has nothing to do either and stops at once, without the final
        // weights check: nothing to check, nobody to wait for.
        return Ok(summary(Outcome::AlreadyDone, &trainer));
    }
    let mut progress = Progress::new("follow", target, Duration::from_secs(10));
    progress.println(&format!(
        "following machine 0: {} · {} steps",
        describe(&trainer, parallel),
        target
    ));
    let mut watch = DivergenceWatch::new();
    let outcome = loop {
        if stop.load(Ordering::SeqCst) {
            trainer.request_stop();
        }
        if trainer.stop_agreed() {
            break Outcome::Interrupted;
        }
        if trainer.steps_done() >= target {
            break Outcome::Finished;
        }
        let batch = loader.next_batch()?;
        let images = batch.images;
        let metrics = catch_device_failure(backend, || trainer.step(images))??;
        if batch.epoch_end {
            trainer.epoch = batch.position.epoch + 1;
        }
        if let Verdict::Exploded { cause } = watch.observe(&metrics) {
            return Err(TrainError::Invalid(format!(
                "training stopped on every machine: {cause} (machine 0 kept the last good \
                 checkpoint)"
            )));
        }
        progress.update(
            metrics.step,
            &format!("d {:.3} g {:.3}", metrics.d_loss, metrics.g_loss),
        );
    };
    progress.finish();
    eprintln!("{}", verify_agreement(&mut trainer)?);
    Ok(summary(outcome, &trainer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_sets_parse_and_bad_ones_say_what_is_expected() {
        assert_eq!("2".parse(), Ok(DeviceSet::Count(2)));
        assert_eq!("all".parse(), Ok(DeviceSet::All));
        assert_eq!("0,2".parse(), Ok(DeviceSet::Indices(vec![0, 2])));
        for bad in ["0", "x", "1,1", "1,,2", "-1"] {
            let err = bad.parse::<DeviceSet>().unwrap_err();
            assert!(err.contains(bad.trim()), "{bad}: {err}");
        }
    }

    #[test]
    #[cfg(feature = "ndarray")]
    fn a_cpu_backend_takes_a_count_only() {
        type B = burn::backend::Autodiff<burn::backend::NdArray>;
        let parallel = |devices| Parallelism {
            devices,
            ..Default::default()
        };
        let first = Default::default();
        let two = parallel(DeviceSet::Count(2))
            .resolve_devices::<B>(BackendKind::NdArray, &first)
            .unwrap();
        assert_eq!(two, vec![first; 2]);
        for set in [DeviceSet::All, DeviceSet::Indices(vec![0, 1])] {
            let err = parallel(set)
                .resolve_devices::<B>(BackendKind::NdArray, &first)
                .unwrap_err();
            assert!(err.to_string().contains("give a count"), "{err}");
        }
        assert!(parallel(DeviceSet::Count(1)).is_single());
    }
}
