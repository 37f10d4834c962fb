//! Measures the peak memory of training steps (or of drawing images from a checkpoint) on
//! flex, against `dcgan_core::memory::MemoryEstimate`: the calibration behind the figures
//! in `src/memory.rs` and docs/performance.md ("Memory estimate"). Linux only (reads
//! `VmRSS` and `VmHWM` from `/proc/self/status`).
//!
//! ```text
//! cargo run -p dcgan-core --features ndarray,wgpu --example memory_probe -- train PRESET BASE BATCH [STEPS] [stabilized]
//! cargo run -p dcgan-core --features ndarray,wgpu --example memory_probe -- generate PRESET BASE BATCH
//! cargo run -p dcgan-core --features ndarray,wgpu --example memory_probe -- estimate PRESET BASE BATCH [AVAILABLE_GIB]
//! ```
//!
//! "Measured" is the peak resident memory (`VmHWM`) minus the resident memory after the
//! thread pool started and before anything was built; `train` holds six real batches, as
//! the loader's prefetch queue does, and steps through them. `stabilized` turns every
//! stabiliser on: spectral norm on both networks, an R1 penalty, DiffAugment (all three
//! policies), the generator average, hinge loss. `PROBE_PHASES=1` also prints the peak
//! after each phase of each step (or after loading and drawing). `--default-malloc` keeps
//! glibc's allocator settings instead of `flex_kernels::allocator::reuse_large_allocations`
//! (as `cats --default-malloc`).

use std::path::Path;
use std::process::Command;

use burn::backend::{Autodiff, Flex};
use burn::prelude::*;
use dcgan_core::sample::{generate, to_rgb_images};
use dcgan_core::{LatentDistribution, MemoryEstimate, ModelPreset, Trainer, TrainerConfig};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

type B = Autodiff<Flex>;

/// A field of `/proc/self/status`, in bytes.
fn status(field: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = text
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"));
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("a number of kB");
    kib * 1024
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 20) as f64
}

fn config(preset: ModelPreset, base: usize, batch: usize) -> TrainerConfig {
    let (g, d) = preset.configs(Some(base));
    TrainerConfig::new(g, d).with_batch_size(batch)
}

fn batch_of(
    size: usize,
    batch: usize,
    seed: u64,
    device: &burn::tensor::Device<B>,
) -> Tensor<B, 4> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    Tensor::from_data(
        TensorData::new(
            LatentDistribution::Uniform.sample(batch, 3 * size * size, &mut rng),
            [batch, 3, size, size],
        ),
        device,
    )
}

/// Starts rayon's pool and burn's flex backend, then returns the resident memory.
fn baseline(device: &burn::tensor::Device<B>) -> u64 {
    let warm = batch_of(16, 2, 9, device);
    let _ = (warm.clone() * warm).sum().into_scalar();
    status("VmRSS:")
}

/// Whether `PROBE_PHASES=1` asks for the peak after each phase.
fn phases_on() -> bool {
    std::env::var("PROBE_PHASES").is_ok_and(|v| v == "1")
}

/// With `PROBE_PHASES=1`: the peak and the resident memory so far, above `base`.
fn phase(what: &str, base: u64) {
    if phases_on() {
        println!(
            "  {what}: peak {:.1} MiB, resident {:.1} MiB",
            mib(status("VmHWM:").saturating_sub(base)),
            mib(status("VmRSS:").saturating_sub(base))
        );
    }
}

fn report(what: &str, estimate: &MemoryEstimate, base: u64) {
    let peak = status("VmHWM:");
    let measured = peak.saturating_sub(base);
    println!(
        "{what}: estimate {:.1} MiB ({estimate}; peak in {}), measured {:.1} MiB above a \
         baseline of {:.1} MiB (peak {:.1} MiB): estimate / measured = {:.2}",
        mib(estimate.total() as u64),
        estimate.phase,
        mib(measured),
        mib(base),
        mib(peak),
        estimate.total() as f64 / measured.max(1) as f64,
    );
}

fn train(preset: ModelPreset, base: usize, batch: usize, steps: usize, stabilized: bool) {
    let device = Default::default();
    let base_rss = baseline(&device);
    let mut config = config(preset, base, batch);
    if stabilized {
        config = config
            .with_loss(dcgan_core::GanLoss::Hinge)
            .with_gradient_penalty(Some(dcgan_core::GradientPenalty {
                kind: dcgan_core::PenaltyKind::R1,
                weight: 1.0,
            }))
            .with_ema(Some(dcgan_core::EmaConfig { decay: 0.999 }))
            .with_augment(dcgan_core::Augment::ALL);
        config.generator.spectral_norm = true;
        config.discriminator.spectral_norm = true;
    }
    let estimate = MemoryEstimate::training(&config);
    let size = config.generator.image_size;
    let mut trainer = Trainer::<B>::new(config, &device).expect("valid config");
    let batches: Vec<_> = (0..6).map(|i| batch_of(size, batch, i, &device)).collect();
    for step in 0..steps {
        let real = batches[step % 6].clone();
        if !phases_on() {
            trainer.step(real).expect("a finite step");
            continue;
        }
        // The step's phases one by one, as `Trainer::step` runs them.
        let latent = trainer.config().generator.latent_dim;
        let mut rng = ChaCha8Rng::seed_from_u64(step as u64);
        let z = LatentDistribution::Uniform.tensor::<B>(batch, latent, &mut rng, &device);
        let fake = trainer.generator.forward(z);
        phase(&format!("step {step}, G forward"), base_rss);
        let d = trainer
            .update_discriminator(real.clone(), fake.clone().detach())
            .expect("one trainer has nothing to synchronise");
        let _ = d.loss.into_scalar();
        phase(&format!("step {step}, D update"), base_rss);
        let _ = trainer
            .update_generator(fake, real)
            .expect("one trainer has nothing to synchronise")
            .into_scalar();
        phase(&format!("step {step}, G update"), base_rss);
    }
    let extra = if stabilized { ", stabilized" } else { "" };
    report(
        &format!("train {preset} base {base} batch {batch}{extra}, {steps} steps"),
        &estimate,
        base_rss,
    );
}

fn save(preset: ModelPreset, base: usize, path: &Path) {
    let device = Default::default();
    let mut trainer = Trainer::<B>::new(config(preset, base, 2), &device).expect("valid config");
    let size = trainer.config().generator.image_size;
    trainer.step(batch_of(size, 2, 0, &device)).expect("a step");
    trainer
        .save_checkpoint(path, serde_json::Value::Null)
        .expect("saved");
}

fn draw(preset: ModelPreset, base: usize, batch: usize) {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let path = dir.path().join("probe.catgan");
    // The checkpoint comes from another process, so that its training does not count.
    let saved = Command::new(std::env::current_exe().expect("this program"))
        .args([
            "save",
            preset.name(),
            &base.to_string(),
            path.to_str().unwrap(),
        ])
        .status()
        .expect("the saving process runs");
    assert!(saved.success());
    let device = Default::default();
    let base_rss = baseline(&device);
    let estimate = MemoryEstimate::generation(&config(preset, base, 2), batch, 0);
    let (generator, info) = dcgan_core::load_generator::<B>(&path, &device).expect("loaded");
    phase("loaded", base_rss);
    let latent = info.config.generator.latent_dim;
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    for _ in 0..2 {
        let z = Tensor::<Flex, 2>::from_data(
            TensorData::new(
                LatentDistribution::Uniform.sample(batch, latent, &mut rng),
                [batch, latent],
            ),
            &device,
        );
        let images = to_rgb_images(generate(&generator, z)).expect("images");
        phase("drawn", base_rss);
        assert_eq!(images.len(), batch);
    }
    report(
        &format!("generate {preset} base {base} batch {batch}"),
        &estimate,
        base_rss,
    );
}

fn main() {
    let (flags, args): (Vec<String>, Vec<String>) =
        std::env::args().skip(1).partition(|a| a.starts_with("--"));
    if let Some(unknown) = flags.iter().find(|f| *f != "--default-malloc") {
        panic!("unknown flag {unknown}: --default-malloc");
    }
    // As `cats` does (`--default-malloc` to compare with glibc's defaults).
    dcgan_core::flex_kernels::allocator::reuse_large_allocations(
        !flags.iter().any(|f| f == "--default-malloc"),
    );
    // As `cats` does: this thread is one of rayon's workers.
    dcgan_core::flex_kernels::threads::join_global_pool();
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or_else(|| default.into());
    let preset: ModelPreset = arg(1, "dcgan64").parse().expect("a preset name");
    let base: usize = arg(2, "16").parse().expect("a width");
    match arg(0, "train").as_str() {
        "train" => {
            let batch = arg(3, "32").parse().expect("a batch size");
            let steps = arg(4, "3").parse().expect("a step count");
            train(preset, base, batch, steps, arg(5, "") == "stabilized");
        }
        "generate" => draw(preset, base, arg(3, "64").parse().expect("a batch size")),
        "estimate" => {
            let config = config(preset, base, arg(3, "64").parse().expect("a batch size"));
            let estimate = MemoryEstimate::training(&config);
            println!("{estimate} (peak in {})", estimate.phase);
            let gib: f64 = arg(4, "16").parse().expect("GiB available");
            match estimate.check((gib * (1u64 << 30) as f64) as u64) {
                Ok(()) => println!("fits in {gib} GiB"),
                Err(e) => println!("{e}"),
            }
        }
        "save" => save(preset, base, Path::new(&arg(3, "probe.catgan"))),
        other => panic!("unknown mode {other}: train, generate, estimate"),
    }
}
