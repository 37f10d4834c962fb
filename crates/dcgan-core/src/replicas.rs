//! Data parallelism: one [`Trainer`](crate::Trainer) as R replicas, on several devices of
//! one machine and on several machines, each replica computing its shard of every batch.
//!
//! The scheme is PyTorch DDP's: every replica holds the same weights and optimizer state;
//! each draws its own rows of the global batch (real images and latents alike), runs the
//! forward and backward passes on them, and before each of the two Adam steps the
//! gradients are averaged over all replicas (an all-reduce), so every replica takes the
//! same step and the weights stay identical. The losses and `D(x)`, `D(G(z))` reported are
//! the means over the global batch.
//!
//! What is *not* synchronised: batch norm normalises each replica's shard with that shard's
//! statistics (DDP's default; with R replicas of `b` images each, the same as training on
//! `b` images per batch-norm batch) and each replica keeps its own running statistics,
//! which only inference uses: the trainer the caller holds (replica 0) is the one that is
//! saved and sampled, as DDP's rank 0 is. DiffAugment and the WGAN-GP interpolation draw
//! per replica, from streams of their own.
//!
//! The all-reduce is a [`ReplicaSync`]: [`CollectiveSync`] (the `collective` feature) runs
//! it on burn's `burn-collective` (local peers between devices of one process, and its
//! global orchestrator between machines). One replica is the plain trainer,
//! bit for bit.

use std::time::Duration;

use burn::module::{AutodiffModule, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

use crate::error::{Error, Result};

/// Part of the error a replica sees when another replica of its process failed: the
/// echo, not the cause (the trainer reports the cause first).
pub(crate) const ECHO: &str =
    "another replica failed, here or on another machine (or the link to it broke)";

/// How [`ReplicaSync::all_reduce`] combines the replicas' tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reduction {
    /// The element-wise sum.
    Sum,
    /// The element-wise mean.
    Mean,
}

/// The all-reduce between the replicas of one training run, as one replica sees it.
///
/// Every replica calls [`all_reduce`](Self::all_reduce) the same number of times, in the
/// same order, with tensors of the same length; each call returns when every replica has
/// made it.
pub trait ReplicaSync<B: Backend>: Send {
    /// This replica's rank, `0..world_size`.
    fn rank(&self) -> usize;

    /// How many replicas the run has, on all machines.
    fn world_size(&self) -> usize;

    /// Combines `tensor` with the other replicas' tensors of the same call.
    fn all_reduce(&mut self, tensor: Tensor<B, 1>, reduction: Reduction) -> Result<Tensor<B, 1>>;

    /// Gives up: wakes every replica waiting in an all-reduce of this process with an
    /// error, so that a replica that failed does not leave the others waiting for it.
    fn abort(&mut self);
}

/// Replaces every gradient `grads` holds for `module` with its mean over the replicas, in
/// one all-reduce of all of them laid end to end (in the module's parameter order, which
/// is the same on every replica, whatever the parameter ids).
pub fn average_gradients<B: AutodiffBackend, M: AutodiffModule<B>>(
    mut grads: GradientsParams,
    module: &M,
    sync: &mut dyn ReplicaSync<B::InnerBackend>,
) -> Result<GradientsParams> {
    struct Gather<'a, B: AutodiffBackend> {
        grads: &'a mut GradientsParams,
        taken: Vec<(ParamId, Vec<usize>)>,
        flat: Vec<Tensor<B::InnerBackend, 1>>,
    }
    impl<B: AutodiffBackend> ModuleVisitor<B> for Gather<'_, B> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            if let Some(grad) = self.grads.remove::<B::InnerBackend, D>(param.id) {
                let shape = grad.dims().to_vec();
                self.flat
                    .push(grad.reshape([shape.iter().product::<usize>()]));
                self.taken.push((param.id, shape));
            }
        }
    }
    let mut gather = Gather::<B> {
        grads: &mut grads,
        taken: Vec::new(),
        flat: Vec::new(),
    };
    module.visit(&mut gather);
    let (taken, flat) = (gather.taken, gather.flat);
    if flat.is_empty() {
        return Ok(grads);
    }
    let mean = sync.all_reduce(Tensor::cat(flat, 0), Reduction::Mean)?;
    let mut offset = 0;
    for (id, shape) in taken {
        let len = shape.iter().product::<usize>();
        let part = mean.clone().slice(offset..offset + len);
        offset += len;
        register_reshaped::<B::InnerBackend>(&mut grads, id, part, &shape);
    }
    Ok(grads)
}

/// Registers `flat` under `id` with `shape` (1 to 4 dimensions: every parameter of the
/// networks).
fn register_reshaped<B: Backend>(
    grads: &mut GradientsParams,
    id: ParamId,
    flat: Tensor<B, 1>,
    shape: &[usize],
) {
    match *shape {
        [a] => grads.register(id, flat.reshape([a])),
        [a, b] => grads.register(id, flat.reshape([a, b])),
        [a, b, c] => grads.register(id, flat.reshape([a, b, c])),
        [a, b, c, d] => grads.register(id, flat.reshape([a, b, c, d])),
        _ => unreachable!("the networks' parameters have 1 to 4 dimensions"),
    }
}

/// One replica besides the trainer's own, for [`Trainer::replicate`](crate::Trainer::replicate):
/// its device and its end of the all-reduce.
pub struct Replica<B: Backend> {
    /// The device the replica computes on.
    pub device: B::Device,
    /// Its all-reduce.
    pub sync: Box<dyn ReplicaSync<B>>,
}

/// The rows `[start, end)` of a global batch of `batch` images that replica `rank` of
/// `world_size` computes: equal, disjoint, in rank order.
pub fn shard_rows(batch: usize, rank: usize, world_size: usize) -> std::ops::Range<usize> {
    let per = batch / world_size;
    rank * per..(rank + 1) * per
}

/// Where this process stands among the machines of a multi-machine run (burn-collective's
/// global level): every machine runs one process with the same `nodes` and `coordinator`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeLink {
    /// How many machines (processes) take part.
    pub nodes: u32,
    /// This machine's rank, `0..nodes`; its replicas' ranks follow those of the machines
    /// before it.
    pub node_rank: u32,
    /// The orchestrator's WebSocket address, e.g. `ws://10.0.0.1:3000`.
    pub coordinator: String,
    /// This machine's address as the others reach it, e.g. `ws://10.0.0.2:3001`; its port
    /// is the port this process serves tensors on.
    pub address: String,
}

impl NodeLink {
    /// The port of [`NodeLink::address`].
    pub fn data_port(&self) -> Result<u16> {
        websocket_port(&self.address, "address")
    }

    /// Checks both addresses and the ranks.
    pub fn validate(&self) -> Result<()> {
        if self.nodes == 0 || self.node_rank >= self.nodes {
            return Err(Error::invalid(
                "replicas",
                "node_rank",
                self.node_rank,
                format!("must be in 0..{} (the number of machines)", self.nodes),
            ));
        }
        websocket_port(&self.coordinator, "coordinator")?;
        websocket_port(&self.address, "address")?;
        Ok(())
    }
}

/// The port of a `ws://HOST:PORT` address.
fn websocket_port(address: &str, field: &'static str) -> Result<u16> {
    address
        .strip_prefix("ws://")
        .and_then(|rest| rest.trim_end_matches('/').rsplit_once(':'))
        .filter(|(host, _)| !host.is_empty())
        .and_then(|(_, port)| port.parse().ok())
        .ok_or_else(|| {
            Error::invalid(
                "replicas",
                field,
                address,
                "must be ws://HOST:PORT, e.g. ws://10.0.0.2:3001",
            )
        })
}

/// The all-reduce on burn's `burn-collective` (the `collective` feature): between the
/// devices of this process through its local server, and between machines through its
/// global orchestrator when the replicas were registered with a [`NodeLink`].
///
/// Each call waits at most `timeout` for the other replicas; a replica or machine that
/// died therefore ends the others' step with [`Error::Replica`] instead of a hang.
#[cfg(feature = "collective")]
pub struct CollectiveSync<B: Backend> {
    peer: burn_collective::PeerId,
    rank: usize,
    world_size: usize,
    timeout: Duration,
    _backend: std::marker::PhantomData<B>,
}

/// How long [`collective_replicas`] waits for the others by default: longer than any
/// pause of rank 0 between two steps (a checkpoint, a preview, FID of 1,000 samples on a
/// CPU is ~15 minutes) and any first step (CUDA compiles its kernels: minutes).
pub const DEFAULT_SYNC_TIMEOUT: Duration = Duration::from_secs(30 * 60);

#[cfg(feature = "collective")]
impl<B: Backend> ReplicaSync<B> for CollectiveSync<B> {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world_size(&self) -> usize {
        self.world_size
    }

    fn all_reduce(&mut self, tensor: Tensor<B, 1>, reduction: Reduction) -> Result<Tensor<B, 1>> {
        use burn::tensor::TensorPrimitive;
        let op = match reduction {
            Reduction::Sum => burn_collective::ReduceOperation::Sum,
            Reduction::Mean => burn_collective::ReduceOperation::Mean,
        };
        let primitive = tensor.into_primitive().tensor();
        let peer = self.peer;
        let reduced = within(self.timeout, self.rank, "an all-reduce", move || {
            burn_collective::all_reduce::<B>(peer, primitive, op)
        })?;
        Ok(Tensor::from_primitive(TensorPrimitive::Float(reduced)))
    }

    fn abort(&mut self) {
        reset::<B>();
    }
}

/// Resets burn-collective's session of this process, which wakes every replica waiting in
/// it with an error. (Resetting panics if the session's server is already gone, which is
/// as good.)
#[cfg(feature = "collective")]
fn reset<B: Backend>() {
    let _ = std::panic::catch_unwind(burn_collective::reset_collective::<B>);
}

#[cfg(feature = "collective")]
impl<B: Backend> Drop for CollectiveSync<B> {
    fn drop(&mut self) {
        // Unregisters, so that a later run in this process can register again (an error
        // here means the session was reset after a failure: nothing left to undo).
        let peer = self.peer;
        let _ = within(Duration::from_secs(10), self.rank, "leaving", move || {
            burn_collective::finish_collective::<B>(peer)
        });
    }
}

/// Runs `call` (which may block forever on a dead peer) on a thread of its own and waits
/// at most `timeout` for it.
#[cfg(feature = "collective")]
fn within<T: Send + 'static>(
    timeout: Duration,
    rank: usize,
    what: &str,
    call: impl FnOnce() -> std::result::Result<T, burn_collective::CollectiveError> + Send + 'static,
) -> Result<T> {
    let (send, receive) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name(format!("replica-{rank}-sync"))
        .spawn(move || {
            let _ = send.send(call());
        })
        .map_err(|e| Error::Replica {
            rank,
            reason: format!("cannot start a thread for {what}: {e}"),
        })?;
    match receive.recv_timeout(timeout) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(Error::Replica {
            rank,
            reason: format!("{what} failed: {}", describe(&e)),
        }),
        // The call panicked: burn-collective's server stops when a transfer from another
        // machine fails (that machine died).
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(Error::Replica {
            rank,
            reason: format!(
                "{what} failed: the link to the other replicas broke (one of them, or its \
                 machine, stopped)"
            ),
        }),
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err(Error::Replica {
            rank,
            reason: format!(
                "{what} waited {timeout:?} for the other replicas: one of them (or its \
                 machine) stopped or is unreachable"
            ),
        }),
    }
}

#[cfg(feature = "collective")]
fn describe(error: &burn_collective::CollectiveError) -> String {
    use burn_collective::CollectiveError as E;
    match error {
        // What the others see once a failing replica reset the session.
        E::LocalServerMissing | E::RegisterNotFirstOperation => ECHO.into(),
        E::Global(global) => format!("between machines: {global:?}"),
        other => format!("{other:?}"),
    }
}

/// Registers this process's replicas with burn-collective, one per device in `devices`
/// (the first for the trainer itself), all at once as burn-collective requires, and
/// returns their ends of the all-reduce in device order. Ranks are
/// `node_rank · devices.len() ..` with a [`NodeLink`] (every machine has as many devices),
/// else `0..devices.len()`.
///
/// Only one set of replicas per backend can be registered in a process at a time; they
/// unregister when dropped.
#[cfg(feature = "collective")]
pub fn collective_replicas<B: Backend>(
    devices: &[B::Device],
    link: Option<&NodeLink>,
    timeout: Duration,
) -> Result<Vec<CollectiveSync<B>>> {
    use burn_collective::{CollectiveConfig, PeerId};
    if devices.is_empty() {
        return Err(Error::invalid(
            "replicas",
            "devices",
            0,
            "at least one device",
        ));
    }
    let local = devices.len();
    let mut config = CollectiveConfig::default().with_num_devices(local);
    let (first, world) = match link {
        None => (0, local),
        Some(link) => {
            link.validate()?;
            let address = |a: &str| a.trim_end_matches('/').parse().expect("infallible");
            config = config
                .with_num_nodes(link.nodes)
                .with_global_address(address(&link.coordinator))
                .with_node_address(address(&link.address))
                .with_data_service_port(link.data_port()?);
            (link.node_rank as usize * local, link.nodes as usize * local)
        }
    };
    let pending: Vec<_> = devices
        .iter()
        .enumerate()
        .map(|(i, device)| {
            let (device, config) = (device.clone(), config.clone());
            let peer = PeerId::from(first + i);
            let rank = first + i;
            std::thread::spawn(move || {
                within(timeout, rank, "joining the other replicas", move || {
                    burn_collective::register::<B>(peer, device, config)
                })
            })
        })
        .collect();
    let mut failure = None;
    for handle in pending {
        match handle.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failure = failure.or(Some(e)),
            Err(_) => {
                failure = failure.or(Some(Error::Replica {
                    rank: first,
                    reason: "registering a replica panicked".into(),
                }))
            }
        }
    }
    if let Some(e) = failure {
        reset::<B>();
        return Err(e);
    }
    Ok((0..local)
        .map(|i| CollectiveSync {
            peer: PeerId::from(first + i),
            rank: first + i,
            world_size: world,
            timeout,
            _backend: std::marker::PhantomData,
        })
        .collect())
}

/// Starts burn-collective's global orchestrator on `port` (all interfaces) and serves
/// until the process gets Ctrl-C or SIGTERM: the meeting point of a multi-machine run
/// ([`NodeLink::coordinator`]). Blocks.
#[cfg(feature = "collective")]
pub fn run_coordinator(port: u16) -> Result<()> {
    // burn's orchestrator only logs a port it cannot take; say it here instead.
    std::net::TcpListener::bind(("0.0.0.0", port)).map_err(|e| Error::Replica {
        rank: 0,
        reason: format!("the coordinator cannot listen on port {port}: {e}"),
    })?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Replica {
            rank: 0,
            reason: format!("cannot start the coordinator's runtime: {e}"),
        })?;
    runtime.block_on(burn_collective::start_global_orchestrator(port));
    Ok(())
}

#[cfg(all(test, feature = "collective"))]
mod tests {
    use std::sync::{Arc, Mutex, MutexGuard};

    use burn::module::Module;
    use burn::nn::{Linear, LinearConfig};
    use burn::optim::{AdamConfig, Optimizer};

    use super::*;
    use crate::test_util::{random_batch, stabilized_config, tiny_config};
    use crate::{TestAutodiffBackend, TestBackend, Trainer};

    type B = TestAutodiffBackend;

    /// burn-collective has one session per backend and process: one test at a time.
    fn session() -> MutexGuard<'static, ()> {
        static SESSION: Mutex<()> = Mutex::new(());
        let guard = SESSION
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        burn_collective::reset_collective::<TestBackend>();
        guard
    }

    fn syncs(count: usize, timeout: Duration) -> Vec<CollectiveSync<TestBackend>> {
        let devices = vec![Default::default(); count];
        collective_replicas::<TestBackend>(&devices, None, timeout).unwrap()
    }

    /// What one all-reduce saw: this replica's input and the result.
    type Calls = Arc<Mutex<Vec<(Vec<f32>, Vec<f32>)>>>;

    /// A [`CollectiveSync`] that records its calls, and fails its `fail_at`-th call.
    struct Recording {
        inner: CollectiveSync<TestBackend>,
        calls: Calls,
        fail_at: Option<usize>,
    }

    impl ReplicaSync<TestBackend> for Recording {
        fn rank(&self) -> usize {
            self.inner.rank()
        }
        fn world_size(&self) -> usize {
            self.inner.world_size()
        }
        fn all_reduce(
            &mut self,
            tensor: Tensor<TestBackend, 1>,
            reduction: Reduction,
        ) -> Result<Tensor<TestBackend, 1>> {
            let call = self.calls.lock().unwrap().len() + 1;
            if self.fail_at == Some(call) {
                return Err(Error::Replica {
                    rank: self.rank(),
                    reason: "the test's injected failure".into(),
                });
            }
            let input = tensor.to_data().to_vec::<f32>().unwrap();
            let output = self.inner.all_reduce(tensor, reduction)?;
            let result = output.to_data().to_vec::<f32>().unwrap();
            self.calls.lock().unwrap().push((input, result));
            Ok(output)
        }
        fn abort(&mut self) {
            self.inner.abort()
        }
    }

    /// A trainer replicated over `count` replicas of this process, recording each
    /// replica's calls.
    fn replicated(
        config: crate::TrainerConfig,
        count: usize,
        fail: Option<(usize, usize)>,
    ) -> (Trainer<B>, Vec<Calls>) {
        let device = Default::default();
        let mut trainer = Trainer::<B>::new(config, &device).unwrap();
        let calls: Vec<Calls> = (0..count).map(|_| Calls::default()).collect();
        let mut ends: Vec<Box<dyn ReplicaSync<TestBackend>>> =
            syncs(count, Duration::from_secs(60))
                .into_iter()
                .zip(&calls)
                .enumerate()
                .map(|(rank, (inner, calls))| {
                    Box::new(Recording {
                        inner,
                        calls: calls.clone(),
                        fail_at: fail.filter(|(r, _)| *r == rank).map(|(_, at)| at),
                    }) as Box<dyn ReplicaSync<TestBackend>>
                })
                .collect();
        let own = ends.remove(0);
        let others = ends
            .into_iter()
            .map(|sync| Replica { device, sync })
            .collect();
        trainer.replicate(own, others).unwrap();
        (trainer, calls)
    }

    fn weights<M: Module<B>>(module: &M) -> Vec<f32> {
        let mut all = Vec::new();
        struct Collect<'a>(&'a mut Vec<f32>);
        impl burn::module::ModuleVisitor<B> for Collect<'_> {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
                // Trained parameters only: batch norm's running statistics are per replica.
                let value = param.val();
                if value.is_require_grad() {
                    self.0.extend(value.into_data().to_vec::<f32>().unwrap());
                }
            }
        }
        module.visit(&mut Collect(&mut all));
        all
    }

    /// `grads` of `module`'s parameters laid end to end in its order, as
    /// [`average_gradients`] sends them.
    fn flat<M: burn::module::AutodiffModule<B>>(grads: &GradientsParams, module: &M) -> Vec<f32> {
        struct Flat<'a>(&'a GradientsParams, Vec<f32>);
        impl burn::module::ModuleVisitor<B> for Flat<'_> {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
                if let Some(grad) = self.0.get::<TestBackend, D>(param.id) {
                    self.1.extend(grad.into_data().to_vec::<f32>().unwrap());
                }
            }
        }
        let mut flat = Flat(grads, Vec::new());
        module.visit(&mut flat);
        flat.1
    }

    /// A batch of 8 images: two `random_batch`es.
    fn batch8(seed: u64) -> Tensor<B, 4> {
        let device = Default::default();
        Tensor::cat(
            vec![
                random_batch(&device, seed),
                random_batch(&device, seed + 100),
            ],
            0,
        )
    }

    #[test]
    fn one_replica_is_the_plain_trainer_bit_for_bit() {
        let _session = session();
        let device = Default::default();
        let mut plain = Trainer::<B>::new(stabilized_config(), &device).unwrap();
        let (mut one, calls) = replicated(stabilized_config(), 1, None);
        for i in 0..3 {
            let real = random_batch(&device, i);
            assert_eq!(plain.step(real.clone()).unwrap(), one.step(real).unwrap());
        }
        assert!(!calls[0].lock().unwrap().is_empty(), "it synchronised");
        assert_eq!(weights(&plain.generator), weights(&one.generator));
        assert_eq!(weights(&plain.discriminator), weights(&one.discriminator));
    }

    #[test]
    fn two_replicas_stay_identical_and_step_with_the_mean_of_their_gradients() {
        let _session = session();
        let config = tiny_config().with_batch_size(8);
        let (mut pair, calls) = replicated(config.clone(), 2, None);
        // Replica 0's shard is rows 0..4, with the latents one trainer of batch 4 would
        // draw first: the same computation as a trainer on those 4 images alone.
        let device = Default::default();
        let mut half = Trainer::<B>::new(config.with_batch_size(4), &device).unwrap();
        for step in 0..3 {
            let real = batch8(step);
            let metrics = pair.step(real.clone()).unwrap();
            let (_, trace) = half.step_traced(real.slice(0..4)).unwrap();
            let alone = flat(&trace.d_grads.unwrap(), &half.discriminator);
            let (c0, c1) = (calls[0].lock().unwrap(), calls[1].lock().unwrap());
            // Per step: D's gradients, G's gradients, the numbers.
            assert_eq!(c0.len(), 3 * (step as usize + 1));
            for call in c0.len() - 3..c0.len() {
                let ((in0, out0), (in1, out1)) = (&c0[call], &c1[call]);
                assert_eq!(out0, out1, "both replicas got the same result");
                for ((a, b), mean) in in0.iter().zip(in1).zip(out0) {
                    let expected = (a + b) / 2.0;
                    assert!((mean - expected).abs() <= 1e-6 * expected.abs().max(1e-3));
                }
            }
            // With batch norm, replica 0's D gradients are those of its shard alone
            // (on the first step, before the two runs' weights part).
            if step == 0 {
                let ours = &c0[0].0;
                assert_eq!(ours.len(), alone.len());
                for (a, b) in ours.iter().zip(&alone) {
                    assert!((a - b).abs() <= 1e-5 * b.abs().max(1e-3), "{a} vs {b}");
                }
            }
            // The numbers reported are the means over the global batch.
            let numbers = &c0[c0.len() - 1];
            assert_eq!(numbers.1[0], metrics.d_loss);
        }
        pair.verify_replicas_agree().unwrap();
        let other = &pair.local_replicas()[0];
        assert_eq!(weights(&pair.generator), weights(&other.generator));
        assert_eq!(weights(&pair.discriminator), weights(&other.discriminator));
        assert_eq!(other.steps_done(), 3);
    }

    #[test]
    fn without_batch_norm_two_replicas_match_one_on_the_global_batch() {
        let _session = session();
        // A model without batch norm: the mean of the shards' mean-loss gradients is the
        // gradient of the global batch's mean loss, up to float rounding.
        type M = Linear<B>;
        let device: burn::tensor::Device<B> = Default::default();
        let model: M = LinearConfig::new(6, 3).init(&device);
        // burn draws a layer's weights when first read; read them now, or every clone
        // below would draw its own.
        let initial = weights(&model);
        let inputs: Vec<Tensor<B, 2>> = (0..4)
            .map(|step| {
                let values = crate::LatentDistribution::Normal.sample(
                    8,
                    6,
                    &mut rand::SeedableRng::seed_from_u64(step),
                );
                Tensor::from_data(TensorData::new(values, [8, 6]), &device)
            })
            .collect();
        let loss = |model: &M, x: Tensor<B, 2>| model.forward(x).sin().powi_scalar(2).mean();
        let adam = || AdamConfig::new().with_beta_1(0.5).init::<B, M>();

        let mut single = model.clone();
        let mut optim = adam();
        for x in &inputs {
            let grads = GradientsParams::from_grads(loss(&single, x.clone()).backward(), &single);
            single = optim.step(1e-2, single, grads);
        }

        let ends = syncs(2, Duration::from_secs(60));
        let replicas: Vec<M> = std::thread::scope(|scope| {
            let handles: Vec<_> = ends
                .into_iter()
                .enumerate()
                .map(|(rank, mut sync)| {
                    let (mut replica, inputs) = (model.clone().fork(&device), inputs.clone());
                    scope.spawn(move || {
                        let mut optim = adam();
                        for x in inputs {
                            let shard = x.slice(shard_rows(8, rank, 2));
                            let grads = GradientsParams::from_grads(
                                loss(&replica, shard).backward(),
                                &replica,
                            );
                            let grads = average_gradients(grads, &replica, &mut sync).unwrap();
                            replica = optim.step(1e-2, replica, grads);
                        }
                        replica
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let expected = weights(&single);
        assert_ne!(expected, initial, "the steps moved the weights");
        for replica in &replicas {
            for (a, b) in weights(replica).iter().zip(&expected) {
                // Adam's steps are ~1e-2; the shards' sums round differently (~1e-7).
                assert!((a - b).abs() < 1e-5, "{a} vs {b}");
            }
        }
        assert_eq!(weights(&replicas[0]), weights(&replicas[1]));
    }

    #[test]
    fn a_replica_that_fails_ends_the_step_of_all_with_its_error() {
        let _session = session();
        // Replica 1 fails its second all-reduce (G's gradients); replica 0 is waiting in
        // it and must be woken, not left hanging.
        let (mut pair, _) = replicated(tiny_config().with_batch_size(8), 2, Some((1, 2)));
        let err = pair.step(batch8(0)).unwrap_err();
        assert!(
            matches!(&err, Error::Replica { rank: 1, reason } if reason.contains("injected")),
            "{err}"
        );
        assert!(pair.is_poisoned());
    }

    #[test]
    fn an_all_reduce_nobody_answers_times_out() {
        let _session = session();
        let mut ends = syncs(2, Duration::from_millis(500));
        let started = std::time::Instant::now();
        let err = ends[0]
            .all_reduce(Tensor::zeros([3], &Default::default()), Reduction::Sum)
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(err.to_string().contains("waited 500ms"), "{err}");
        burn_collective::reset_collective::<TestBackend>();
    }

    #[test]
    fn an_uneven_batch_and_bad_addresses_are_refused() {
        let _session = session();
        let device = Default::default();
        let mut trainer = Trainer::<B>::new(tiny_config().with_batch_size(5), &device).unwrap();
        let mut ends = syncs(2, Duration::from_secs(5));
        let other = Replica {
            device,
            sync: Box::new(ends.pop().unwrap()) as Box<dyn ReplicaSync<TestBackend>>,
        };
        let err = trainer
            .replicate(Box::new(ends.pop().unwrap()), vec![other])
            .unwrap_err();
        assert!(err.to_string().contains("multiple of 2"), "{err}");
        for (coordinator, address) in [
            ("localhost:3000", "ws://10.0.0.2:3001"),
            ("ws://10.0.0.1:3000", "ws://10.0.0.2"),
        ] {
            let link = NodeLink {
                nodes: 2,
                node_rank: 1,
                coordinator: coordinator.into(),
                address: address.into(),
            };
            assert!(link.validate().is_err(), "{link:?}");
        }
        let link = NodeLink {
            nodes: 2,
            node_rank: 2,
            coordinator: "ws://a:1".into(),
            address: "ws://b:2".into(),
        };
        assert!(link.validate().is_err());
    }
}
