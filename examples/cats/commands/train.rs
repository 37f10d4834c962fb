//! `cats train`: flags → a run configuration → `catgan::train::train` on the chosen backend.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context};
use burn::tensor::backend::AutodiffBackend;
use catgan::backend::{dispatch, BackendKind, BackendTask};
use catgan::defaults::{self, Situation};
use catgan::parallel::{DeviceSet, Parallelism};
use catgan::resume::{plan_resume, ResumeChanges};
use catgan::run_config::{DataSettings, FidSchedule, RunConfig, Schedule};
use catgan::train::{train_with, Outcome, Start};
use dcgan_core::replicas::NodeLink;
use dcgan_core::{
    Augment, EmaConfig, GanLoss, GradientPenalty, LatentDistribution, ModelPreset, PenaltyKind,
    Precision, TrainerConfig,
};
use dcgan_data::CropMode;

use crate::Target;

/// Train a DCGAN. Every flag has a default; with no `--data` the built-in cats are used.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct TrainArgs {
    /// Folder of training images (searched recursively). Default: the 16 built-in cats.
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Model preset: tiny32, dcgan64, seed128 (the article's model), seed256. Default:
    /// dcgan64 (from --image-size if given).
    #[arg(long, value_name = "NAME")]
    pub preset: Option<String>,
    /// Width: the discriminator's first and the generator's last channel count (seed: 64)
    /// [default: the preset's (64); 16 with --data on a CPU backend and on the built-in
    /// cats, unless a size flag is given].
    #[arg(long, value_name = "N")]
    pub base: Option<usize>,
    /// Side of the training images (8·2^k); picks the preset of that size.
    #[arg(long, value_name = "N")]
    pub image_size: Option<usize>,
    /// Images per step [default: 64; 32 with --data on a CPU backend unless a size flag is
    /// given; 16 on the built-in cats].
    #[arg(long, value_name = "N")]
    pub batch_size: Option<usize>,
    /// Train this many epochs in total.
    #[arg(long, value_name = "N")]
    pub epochs: Option<u64>,
    /// Train this many steps in total (with --epochs: whichever comes first).
    #[arg(long, value_name = "N")]
    pub steps: Option<u64>,
    /// Discriminator learning rate [default: 5e-5, the seed's; with --data on a CPU backend
    /// unless a size flag is given 4e-4 (2e-4 with --no-ema); 2e-4 on the built-in cats].
    /// With --resume: continue at this rate.
    #[arg(long, value_name = "LR")]
    pub lr_d: Option<f64>,
    /// Generator learning rate [default: 2e-4, the seed's; 4e-4 with --data on a CPU
    /// backend as for --lr-d]. With --resume: continue at this rate.
    #[arg(long, value_name = "LR")]
    pub lr_g: Option<f64>,
    /// Adam β₁ of both optimizers [default: 0.5].
    #[arg(long, value_name = "B")]
    pub beta1: Option<f32>,
    /// Target label of real images: 0.9 smooths (the article), 1.0 turns smoothing off.
    #[arg(long, value_name = "L")]
    pub label_smoothing: Option<f32>,
    /// Latent distribution: uniform (the seed's, on [-1, 1]) or normal.
    #[arg(long, value_name = "DIST")]
    pub latent: Option<String>,
    /// Seed of the weights, noise, shuffles and flips [default: 42].
    #[arg(long, value_name = "S")]
    pub seed: Option<u64>,
    /// Run folder [default: runs/<preset>, or runs/<preset>-2, ... if taken].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Write a preview grid every N steps [default: 100; 50 on the built-in cats].
    #[arg(long, value_name = "N")]
    pub sample_every: Option<u64>,
    /// Write a checkpoint every N epochs [default: about every 100 steps].
    #[arg(long, value_name = "N")]
    pub checkpoint_every: Option<u64>,
    /// Keep the last K epoch checkpoints (plus `latest`) [default: 3].
    #[arg(long, value_name = "K")]
    pub keep_checkpoints: Option<usize>,
    /// Do not write TensorBoard event files (by default the run folder gets them: scalars,
    /// preview grids and the settings, for `tensorboard --logdir runs`).
    #[arg(long)]
    pub no_tensorboard: bool,
    /// Continue a run: its folder (uses checkpoints/latest.catgan) or a checkpoint file.
    /// The checkpoint carries the run's settings; the schedule, learning rates, precision,
    /// FID flags, --no-flip and --strict may change. With --out naming a folder without a
    /// run: continue as a new run there (a branch).
    #[arg(long, value_name = "DIR|CHECKPOINT")]
    pub resume: Option<PathBuf>,
    /// With --resume: continue even though the data folder's files changed since the
    /// checkpoint (refused otherwise).
    #[arg(long, requires = "resume")]
    pub allow_data_change: bool,
    /// Check the setup: 2 steps of a tiny 32 px model on the data, into a temporary folder
    /// (or --out), writing every artifact.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not mirror training images at random.
    #[arg(long)]
    pub no_flip: bool,
    /// Pad non-square images instead of cropping their center.
    #[arg(long)]
    pub pad: bool,
    /// Fail on the first unreadable image instead of skipping it.
    #[arg(long)]
    pub strict: bool,
    /// Measure FID every N epochs against --fid-reference (logged in metrics.csv).
    #[arg(long, value_name = "N")]
    pub fid_every: Option<u64>,
    /// FID reference: statistics file (`cats eval --write-stats`) or image folder
    /// [default: the training folder].
    #[arg(long, value_name = "DIR|FILE")]
    pub fid_reference: Option<PathBuf>,
    /// Generated images per FID measurement [default: 1000].
    #[arg(long, value_name = "N")]
    pub fid_samples: Option<usize>,
    /// FID Inception weights (see `cats fid --help`).
    #[arg(long, value_name = "FILE")]
    pub fid_weights: Option<PathBuf>,
    /// Precision: f32, or bf16 mixed precision (matrix products in bf16 from f32 master
    /// weights: fast on CUDA tensor cores, emulated and slower on CPU backends)
    /// [default: f32; on --resume, the checkpoint's].
    #[arg(long, value_name = "P")]
    pub precision: Option<Precision>,
    /// Adversarial loss: bce (the article's, with --label-smoothing), lsgan, hinge,
    /// wgan-gp (Wasserstein with --gp 10 and --d-steps 5 unless given), rsgan, rasgan,
    /// ralsgan, rahinge [default: bce].
    #[arg(long, value_name = "LOSS")]
    pub loss: Option<String>,
    /// WGAN-GP gradient penalty of this weight on random real/fake interpolates
    /// (`λ·(‖∇D‖ − 1)²`; the paper's λ is 10). Works with any --loss.
    #[arg(long, value_name = "WEIGHT", conflicts_with = "r1")]
    pub gp: Option<f64>,
    /// R1 gradient penalty of this weight on the real images (`γ/2·‖∇D‖²`, e.g. 1).
    #[arg(long, value_name = "GAMMA")]
    pub r1: Option<f64>,
    /// Discriminator updates per generator update; each takes its own batch [default: 1;
    /// 5 with --loss wgan-gp].
    #[arg(long, value_name = "N")]
    pub d_steps: Option<usize>,
    /// Spectral normalisation: d (replaces D's batch norm, as in SNGAN), g, both, none
    /// [default: none].
    #[arg(long, value_name = "WHICH")]
    pub spectral_norm: Option<String>,
    /// Keep an exponential moving average of G's weights with this decay; previews,
    /// `cats generate`, `cats eval` and FID then draw from it [default: 0.999 with --data
    /// (it scored better FID on the cat faces, docs/quality.md), except with --preset
    /// seed128 (the article exactly); none on the built-in cats].
    #[arg(long, value_name = "DECAY", conflicts_with = "no_ema")]
    pub ema: Option<f64>,
    /// Keep no average of G's weights (see --ema).
    #[arg(long)]
    pub no_ema: bool,
    /// DiffAugment for every image D sees: any of color,translation,cutout, or all
    /// [default: none].
    #[arg(long, value_name = "POLICIES")]
    pub augment: Option<String>,
    /// Data-parallel replicas on this machine: a count (on a CPU backend they share the
    /// CPU; on a GPU backend devices 0..N), GPU ordinals (0,1,3) or `all`. The batch is
    /// the global one, split evenly; learning rates and checkpoints mean what they mean on
    /// one device, and a run resumes on any number of devices [default: 1].
    #[arg(long, value_name = "N|LIST|all")]
    pub devices: Option<DeviceSet>,
    /// Machines taking part in the run (each runs `cats train` with the same settings, its
    /// --node-rank and --node-address; start `cats coordinator` first) [default: 1].
    #[arg(long, value_name = "N", requires_all = ["node_rank", "coordinator", "node_address"])]
    pub nodes: Option<u32>,
    /// This machine's rank, 0 to --nodes − 1: machine 0 writes the run folder, the others
    /// write nothing.
    #[arg(long, value_name = "K", requires = "nodes")]
    pub node_rank: Option<u32>,
    /// The coordinator's address: ws://HOST:PORT (`cats coordinator --port PORT`).
    #[arg(long, value_name = "ws://HOST:PORT", requires = "nodes")]
    pub coordinator: Option<String>,
    /// This machine's address as the others reach it, ws://HOST:PORT; the port (free on
    /// this machine) carries the tensors.
    #[arg(long, value_name = "ws://HOST:PORT", requires = "nodes")]
    pub node_address: Option<String>,
    /// Seconds a replica waits for the others at a step before stopping with an error (a
    /// machine died or hangs) [default: 1800, longer than a checkpoint or FID pause].
    #[arg(long, value_name = "SECONDS")]
    pub sync_timeout: Option<u64>,
}

/// `--devices`, `--nodes`, `--node-rank`, `--coordinator`, `--node-address`,
/// `--sync-timeout`.
fn parallelism(args: &TrainArgs) -> anyhow::Result<Parallelism> {
    let link = match args.nodes {
        None => None,
        Some(nodes) => {
            let link = NodeLink {
                nodes,
                node_rank: args.node_rank.unwrap_or(0),
                coordinator: with_scheme(args.coordinator.as_deref().unwrap_or_default()),
                address: with_scheme(args.node_address.as_deref().unwrap_or_default()),
            };
            link.validate().map_err(|e| {
                anyhow::anyhow!("{e} (--nodes, --node-rank, --coordinator, --node-address)")
            })?;
            Some(link)
        }
    };
    let sync_timeout = match args.sync_timeout {
        Some(0) => bail!("--sync-timeout 0: give the seconds a replica may wait, e.g. 600"),
        Some(seconds) => Some(std::time::Duration::from_secs(seconds)),
        None => None,
    };
    Ok(Parallelism {
        devices: args.devices.clone().unwrap_or_default(),
        link,
        sync_timeout,
    })
}

/// `HOST:PORT` as `ws://HOST:PORT` (burn's WebSocket addresses).
fn with_scheme(address: &str) -> String {
    match address.contains("://") {
        true => address.to_string(),
        false => format!("ws://{address}"),
    }
}

fn preset(args: &TrainArgs) -> anyhow::Result<ModelPreset> {
    let by_size = |size: usize| {
        ModelPreset::ALL
            .into_iter()
            .filter(|p| *p != ModelPreset::Tiny32 || size == 32)
            .find(|p| p.image_size() == size)
    };
    match (&args.preset, args.image_size) {
        (Some(name), size) => {
            let preset: ModelPreset = name.parse()?;
            if let Some(size) = size.filter(|&s| s != preset.image_size()) {
                bail!(
                    "--image-size {size} does not match --preset {preset} ({} px); drop one of them",
                    preset.image_size()
                );
            }
            Ok(preset)
        }
        (None, Some(size)) => by_size(size).ok_or_else(|| {
            anyhow::anyhow!(
                "--image-size {size}: no preset of that size (sizes: {}); or pick --preset",
                ModelPreset::ALL
                    .map(|p| p.image_size().to_string())
                    .join(", ")
            )
        }),
        (None, None) => Ok(if args.dry_run {
            ModelPreset::Tiny32
        } else {
            ModelPreset::Dcgan64
        }),
    }
}

fn latent(name: &str) -> anyhow::Result<LatentDistribution> {
    match name.to_ascii_lowercase().as_str() {
        "uniform" => Ok(LatentDistribution::Uniform),
        "normal" | "gaussian" => Ok(LatentDistribution::Normal),
        other => bail!("--latent {other}: expected uniform or normal"),
    }
}

/// What the defaults of a new run depend on, from the flags.
fn situation(args: &TrainArgs, preset: ModelPreset, backend: BackendKind) -> Situation {
    Situation {
        demo: args.data.is_none(),
        dry_run: args.dry_run,
        sized_by_user: args.preset.is_some()
            || args.image_size.is_some()
            || args.base.is_some()
            || args.batch_size.is_some(),
        no_ema: args.no_ema,
        preset,
        backend,
    }
}

/// The configuration of a new run from the flags, and why its sizes were chosen (if not
/// by the flags).
fn new_run_config(
    args: &TrainArgs,
    backend: BackendKind,
) -> anyhow::Result<(RunConfig, Option<String>)> {
    let demo = args.data.is_none();
    let preset = preset(args)?;
    let situation = situation(args, preset, backend);
    let machine = defaults::machine_defaults(&situation);
    let (g, d) = preset.configs(args.base.or(machine.base));
    let mut trainer =
        TrainerConfig::new(g, d).with_batch_size(args.batch_size.unwrap_or(machine.batch));
    if let Some(lr) = machine.lr {
        trainer.lr_d = lr;
        trainer.lr_g = lr;
    }
    if let Some(v) = args.lr_d {
        trainer.lr_d = v;
    }
    if let Some(v) = args.lr_g {
        trainer.lr_g = v;
    }
    if let Some(v) = args.beta1 {
        trainer.beta1 = v;
    }
    if let Some(v) = args.label_smoothing {
        trainer.real_label = v;
    }
    if let Some(v) = &args.latent {
        trainer.latent = latent(v)?;
    }
    if let Some(v) = args.seed {
        trainer.seed = v;
    }
    apply_stabilizers(args, &situation, &mut trainer)?;
    trainer
        .validate()
        .map_err(|e| anyhow::anyhow!("{e} (check the flags)"))?;
    let steps = if args.dry_run {
        Some(args.steps.unwrap_or(defaults::DRY_RUN_STEPS))
    } else if demo && args.epochs.is_none() {
        Some(args.steps.unwrap_or(defaults::DEMO_STEPS))
    } else {
        args.steps
    };
    let config = RunConfig {
        trainer,
        preset: preset.name().into(),
        data: DataSettings {
            folder: args.data.clone(),
            crop: if args.pad {
                CropMode::Pad
            } else {
                CropMode::Center
            },
            flip: !args.no_flip,
            strict: args.strict,
        },
        schedule: Schedule {
            epochs: args.epochs,
            steps,
            sample_every: args
                .sample_every
                .unwrap_or_else(|| defaults::sample_every(&situation)),
            checkpoint_every: args.checkpoint_every,
            keep_checkpoints: args.keep_checkpoints.unwrap_or(defaults::KEEP_CHECKPOINTS),
            fid: fid_schedule(args)?,
            tensorboard: !args.no_tensorboard,
        },
        backend,
        precision: args.precision.unwrap_or_default(),
        run_id: None,
        branched_from: None,
    };
    Ok((config, machine.why))
}

/// `--loss`, `--gp`, `--r1`, `--d-steps`, `--spectral-norm`, `--ema`, `--augment`.
fn apply_stabilizers(
    args: &TrainArgs,
    situation: &Situation,
    trainer: &mut TrainerConfig,
) -> anyhow::Result<()> {
    let mut wgan_gp = false;
    if let Some(name) = &args.loss {
        trainer.loss = name.parse::<GanLoss>().map_err(|_| {
            anyhow::anyhow!(
                "--loss {name}: expected one of bce, lsgan, hinge, wgan-gp, rsgan, rasgan, \
                 ralsgan, rahinge"
            )
        })?;
        wgan_gp = trainer.loss == GanLoss::Wgan;
    }
    if args.label_smoothing.is_some() && trainer.loss != GanLoss::Bce {
        bail!(
            "--label-smoothing applies to --loss bce only (this run uses {})",
            trainer.loss
        );
    }
    let penalty = |kind, weight: f64, flag: &str| -> anyhow::Result<GradientPenalty> {
        anyhow::ensure!(
            weight > 0.0 && weight.is_finite(),
            "{flag} {weight}: the penalty's weight must be a positive number"
        );
        Ok(GradientPenalty { kind, weight })
    };
    trainer.gradient_penalty = match (args.gp, args.r1) {
        (Some(w), _) => Some(penalty(PenaltyKind::Wgan, w, "--gp")?),
        (None, Some(w)) => Some(penalty(PenaltyKind::R1, w, "--r1")?),
        (None, None) if wgan_gp => Some(GradientPenalty {
            kind: PenaltyKind::Wgan,
            weight: 10.0,
        }),
        (None, None) => None,
    };
    trainer.d_steps = args.d_steps.unwrap_or(if wgan_gp { 5 } else { 1 });
    anyhow::ensure!(
        (1..=100).contains(&trainer.d_steps),
        "--d-steps {}: give 1 to 100 discriminator updates per generator update",
        trainer.d_steps
    );
    if let Some(which) = &args.spectral_norm {
        let (g, d) = match which.to_ascii_lowercase().as_str() {
            "d" => (false, true),
            "g" => (true, false),
            "both" | "gd" | "dg" => (true, true),
            "none" => (false, false),
            other => bail!("--spectral-norm {other}: expected d, g, both or none"),
        };
        trainer.generator.spectral_norm = g;
        trainer.discriminator.spectral_norm = d;
    }
    match (args.ema.or(defaults::default_ema(situation)), args.no_ema) {
        (_, true) => trainer.ema = None,
        (Some(decay), false) => {
            anyhow::ensure!(
                decay > 0.0 && decay < 1.0,
                "--ema {decay}: the decay must be between 0 and 1 (e.g. 0.999)"
            );
            trainer.ema = Some(EmaConfig { decay });
        }
        (None, false) => {}
    }
    if let Some(policies) = &args.augment {
        trainer.augment = policies
            .parse::<Augment>()
            .map_err(|_| anyhow::anyhow!("--augment {policies}: expected any of color,translation,cutout (comma-separated), all or none"))?;
    }
    Ok(())
}

fn fid_schedule(args: &TrainArgs) -> anyhow::Result<Option<FidSchedule>> {
    let Some(every_epochs) = args.fid_every else {
        if args.fid_reference.is_some() {
            bail!("--fid-reference needs --fid-every N (how often to measure)");
        }
        return Ok(None);
    };
    anyhow::ensure!(every_epochs > 0, "--fid-every must be at least 1");
    let samples = args.fid_samples.unwrap_or(FidSchedule::DEFAULT_SAMPLES);
    anyhow::ensure!(samples >= 2, "--fid-samples must be at least 2");
    let reference = match (&args.fid_reference, &args.data) {
        (Some(r), _) => r.clone(),
        (None, Some(data)) => data.clone(),
        (None, None) => bail!("--fid-every on the built-in cats needs --fid-reference DIR|FILE"),
    };
    Ok(Some(FidSchedule {
        every_epochs,
        reference,
        samples,
        weights: args.fid_weights.clone(),
    }))
}

/// `runs/<name>`, or the first of `runs/<name>-2`, `-3`, ... that does not exist.
fn fresh_run_dir(name: &str) -> PathBuf {
    let base = Path::new("runs");
    (1..)
        .map(|i| {
            if i == 1 {
                base.join(name)
            } else {
                base.join(format!("{name}-{i}"))
            }
        })
        .find(|p| !p.exists())
        .expect("some name is free")
}

/// The flags that may change a resumed run (see `catgan::resume` for what each does).
fn resume_changes(args: &TrainArgs) -> ResumeChanges {
    ResumeChanges {
        out: args.out.clone(),
        data: args.data.clone(),
        allow_data_change: args.allow_data_change,
        lr_d: args.lr_d,
        lr_g: args.lr_g,
        epochs: args.epochs,
        steps: args.steps,
        sample_every: args.sample_every,
        checkpoint_every: args.checkpoint_every,
        keep_checkpoints: args.keep_checkpoints,
        precision: args.precision,
        no_flip: args.no_flip,
        pad: args.pad,
        strict: args.strict,
        fid_every: args.fid_every,
        fid_reference: args.fid_reference.clone(),
        fid_samples: args.fid_samples,
        no_tensorboard: args.no_tensorboard,
        fid_weights: args.fid_weights.clone(),
    }
}

/// Flags that would change the model or the optimisation cannot apply to a resumed run.
fn reject_model_flags_on_resume(args: &TrainArgs) -> anyhow::Result<()> {
    let given: Vec<&str> = [
        ("--preset", args.preset.is_some()),
        ("--base", args.base.is_some()),
        ("--image-size", args.image_size.is_some()),
        ("--batch-size", args.batch_size.is_some()),
        ("--beta1", args.beta1.is_some()),
        ("--label-smoothing", args.label_smoothing.is_some()),
        ("--latent", args.latent.is_some()),
        ("--seed", args.seed.is_some()),
        ("--dry-run", args.dry_run),
        ("--loss", args.loss.is_some()),
        ("--gp", args.gp.is_some()),
        ("--r1", args.r1.is_some()),
        ("--d-steps", args.d_steps.is_some()),
        ("--spectral-norm", args.spectral_norm.is_some()),
        ("--ema", args.ema.is_some()),
        ("--no-ema", args.no_ema),
        ("--augment", args.augment.is_some()),
    ]
    .into_iter()
    .filter_map(|(flag, set)| set.then_some(flag))
    .collect();
    if !given.is_empty() {
        bail!(
            "{} cannot change a resumed run (the checkpoint fixes the model, optimizer and seed); \
             to extend it give --epochs or --steps (--lr-d and --lr-g may change), or start a \
             new run with --out",
            given.join(", ")
        );
    }
    Ok(())
}

struct TrainTask {
    start: Start,
    parallel: Parallelism,
    stop: Arc<AtomicBool>,
}

impl BackendTask for TrainTask {
    type Output = anyhow::Result<catgan::train::RunSummary>;

    fn run<B: AutodiffBackend>(self, backend: BackendKind, device: B::Device) -> Self::Output {
        Ok(train_with::<B>(
            self.start,
            backend,
            &device,
            &self.parallel,
            self.stop,
        )?)
    }
}

/// The name of a stop signal, for messages.
fn signal_name(number: i32) -> &'static str {
    match number {
        1 => "SIGHUP",
        15 => "SIGTERM",
        _ => "Ctrl-C",
    }
}

/// A stop signal within this long of the first is the same request delivered twice, not a
/// second request: GNU `timeout` sends its signal to the command and then to the command's
/// process group, and a terminal's Ctrl-C reaches every process of the foreground group.
#[cfg(unix)]
const REPEATED_SIGNAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Sets `stop` on the first SIGINT, SIGTERM or SIGHUP (the training loop then saves and
/// returns) and exits at once on a second one sent later ([`REPEATED_SIGNAL`]). Returns the
/// number of the signal received.
#[cfg(unix)]
fn stop_on_signals(stop: Arc<AtomicBool>) -> Arc<AtomicI32> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let received = Arc::new(AtomicI32::new(0));
    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) else {
        eprintln!("note: cannot catch Ctrl-C here; stopping the run will not save a checkpoint");
        return received;
    };
    let number = received.clone();
    std::thread::spawn(move || {
        let mut first: Option<std::time::Instant> = None;
        for signal in signals.forever() {
            let name = signal_name(signal);
            if let Some(first) = first {
                if first.elapsed() < REPEATED_SIGNAL {
                    continue;
                }
                eprintln!("\nsecond {name}: exiting without saving");
                std::process::exit(128 + signal);
            }
            first = Some(std::time::Instant::now());
            stop.store(true, Ordering::SeqCst);
            number.store(signal, Ordering::SeqCst);
            eprintln!(
                "\n{name}: finishing this step and saving a checkpoint (Ctrl-C again to quit now)"
            );
        }
    });
    received
}

/// Ctrl-C only, where there are no Unix signals.
#[cfg(not(unix))]
fn stop_on_signals(stop: Arc<AtomicBool>) -> Arc<AtomicI32> {
    let received = Arc::new(AtomicI32::new(0));
    let number = received.clone();
    let _ = ctrlc::set_handler(move || {
        if stop.swap(true, Ordering::SeqCst) {
            eprintln!("\nsecond Ctrl-C: exiting without saving");
            std::process::exit(130);
        }
        number.store(2, Ordering::SeqCst);
        eprintln!(
            "\nCtrl-C: finishing this step and saving a checkpoint (Ctrl-C again to quit now)"
        );
    });
    received
}

/// The exit code of an interrupted run, 128 + the signal, so that scripts and schedulers
/// can tell it from a finished one. Without a signal here, another machine of the run was
/// stopped and this one with it: reported as SIGTERM, what schedulers send.
fn interrupted(signal: &AtomicI32) -> ExitCode {
    let number = match signal.load(Ordering::SeqCst) {
        0 => 15,
        number => number,
    };
    ExitCode::from(128u8.saturating_add(number as u8))
}

/// Runs `cats train`.
pub fn run(args: &TrainArgs, target: Target) -> anyhow::Result<ExitCode> {
    for (flag, value) in [("--steps", args.steps), ("--epochs", args.epochs)] {
        if value == Some(0) {
            bail!("{flag} 0: nothing to train; give at least 1");
        }
    }
    let parallel = parallelism(args)?;
    let start = match &args.resume {
        Some(resume) => {
            reject_model_flags_on_resume(args)?;
            let plan = plan_resume(resume, &resume_changes(args), target.backend)
                .with_context(|| format!("--resume {}", resume.display()))?;
            Start::Resume(Box::new(plan))
        }
        None => {
            let (config, why) = new_run_config(args, target.backend)?;
            if let Some(why) = why {
                eprintln!("note: {why}");
            }
            let run_dir = match (&args.out, args.dry_run) {
                (Some(out), _) => out.clone(),
                (None, true) => {
                    std::env::temp_dir().join(format!("catgan-dry-run-{}", std::process::id()))
                }
                (None, false) => fresh_run_dir(&config.preset),
            };
            Start::New {
                config: Box::new(config),
                run_dir,
            }
        }
    };

    // First Ctrl-C (or SIGTERM, SIGHUP): finish the step, save a checkpoint, exit with
    // 128 + the signal's number. A second one: exit at once.
    let stop = Arc::new(AtomicBool::new(false));
    let signal = stop_on_signals(stop.clone());

    let follower = parallel.is_follower();
    let task = TrainTask {
        start,
        parallel,
        stop,
    };
    let summary = dispatch(target.backend, target.device, task)??;
    if follower {
        println!(
            "followed to step {} ({:.1} img/s over all machines); machine 0 wrote the run",
            summary.steps, summary.img_per_s
        );
        return Ok(match summary.outcome {
            Outcome::Interrupted => interrupted(&signal),
            _ => ExitCode::SUCCESS,
        });
    }
    let folder = summary.run_dir.display();
    match summary.outcome {
        Outcome::AlreadyDone => println!(
            "nothing to do: the run is already at step {} (give a larger --steps or --epochs to go on)",
            summary.steps
        ),
        Outcome::Interrupted => println!(
            "interrupted at step {} — checkpoint saved; continue with:\n  cats train --resume {folder}",
            summary.steps
        ),
        Outcome::Finished => println!(
            "trained {} steps ({} epochs) in {:.0} s at {:.1} img/s",
            summary.steps,
            summary.epochs,
            summary.elapsed.as_secs_f64(),
            summary.img_per_s
        ),
    }
    if let Some(sample) = &summary.last_sample {
        println!("samples:    {}", sample.display());
    }
    if let Some(ckpt) = &summary.checkpoint {
        println!("checkpoint: {}", ckpt.display());
    }
    println!("run folder: {folder} (metrics.csv, loss.png, samples/, checkpoints/)");
    if summary.outcome == Outcome::Interrupted {
        return Ok(interrupted(&signal));
    }
    if args.dry_run {
        println!("dry run OK: data, model, training step, previews and checkpoints all work");
    } else if args.data.is_none() && args.resume.is_none() {
        println!(
            "\nThis demo learned from the 16 built-in photos. For real cats, train on a folder of \
             cat faces:\n  cats prepare --cat-dataset CAT_DATASET --out cat-faces   # the CAT dataset\n  \
             cats train --data cat-faces --epochs 50"
        );
    }
    Ok(ExitCode::SUCCESS)
}
