//! Times training steps on flex, split into phases, with the flex fast path
//! (`fast_kernels` in the network configs, `flex_kernels`) on and off in the same process.
//!
//! ```text
//! cargo run --release -p dcgan-core --example step_profile -- [preset] [base] [batch] [steps] [on|off|both] [--profile] [--default-malloc] [--outside-pool] [--no-direct] [--no-phases]
//! cargo run --release -p dcgan-core --example step_profile -- dcgan64 32 32 5 both
//! cargo run --release -p dcgan-core --example step_profile -- dcgan64 32 32 6 on --profile
//! ```
//! `--profile` also times the fast path's pieces (`flex_kernels::profile`) and prints
//! them; `--default-malloc` keeps glibc's allocator settings instead of
//! `flex_kernels::allocator::reuse_large_allocations` (as `cats --default-malloc`);
//! `--outside-pool` leaves the main thread outside rayon's pool instead of
//! `flex_kernels::threads::join_global_pool` (as `cats` does); `--no-direct` runs the
//! layers at the image end (3 channels) on the window matrices instead of
//! `flex_kernels::direct`'s kernels, and `--no-phases` the stride-2 layers on the window
//! matrices instead of `flex_kernels::phases` (stacked phases by Winograd's transforms),
//! to measure what those are worth.
//!
//! Phases of one step (what `Trainer::step` does): G forward; the D update (D forward on
//! real and detached fakes, backward, Adam); the G update (D forward on the fakes,
//! backward through D and G, Adam), including the loss read-back.

use std::time::Instant;

use burn::backend::{Autodiff, Flex};
use burn::prelude::*;
use dcgan_core::flex_kernels;
use dcgan_core::{LatentDistribution, ModelPreset, Trainer, TrainerConfig};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

type B = Autodiff<Flex>;

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn run(preset: ModelPreset, base: usize, batch: usize, steps: usize, fast: bool) {
    let device = Default::default();
    let (g, d) = preset.configs(Some(base));
    let (g, d) = (g.with_fast_kernels(fast), d.with_fast_kernels(fast));
    let size = g.image_size;
    let mut trainer = Trainer::<B>::new(TrainerConfig::new(g, d).with_batch_size(batch), &device)
        .expect("valid config");
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let real: Tensor<B, 4> = Tensor::from_data(
        TensorData::new(
            LatentDistribution::Uniform.sample(batch, 3 * size * size, &mut rng),
            [batch, 3, size, size],
        ),
        &device,
    );
    let latent = trainer.config().generator.latent_dim;
    let mut phases: [Vec<f64>; 4] = Default::default();
    // One untimed warm-up step, then `steps` timed ones.
    for step in 0..=steps {
        let t0 = Instant::now();
        let z = LatentDistribution::Uniform.tensor::<B>(batch, latent, &mut rng, &device);
        let fake = trainer.generator.forward(z);
        let t1 = Instant::now();
        let d = trainer
            .update_discriminator(real.clone(), fake.clone().detach())
            .expect("one trainer has nothing to synchronise");
        let _ = d.loss.into_scalar();
        let t2 = Instant::now();
        let g_loss = trainer
            .update_generator(fake, real.clone())
            .expect("one trainer has nothing to synchronise");
        let _ = g_loss.into_scalar();
        let t3 = Instant::now();
        if step > 0 {
            phases[0].push((t1 - t0).as_secs_f64());
            phases[1].push((t2 - t1).as_secs_f64());
            phases[2].push((t3 - t2).as_secs_f64());
            phases[3].push((t3 - t0).as_secs_f64());
        }
    }
    // The fastest step too: on a shared machine, noise only ever adds time.
    let best = phases[3].iter().copied().fold(f64::INFINITY, f64::min);
    let [g_fwd, d_upd, g_upd, total] = phases.map(|mut v| median(&mut v));
    let profile = flex_kernels::profile::take();
    if !profile.is_empty() {
        let all: f64 = profile.iter().map(|p| p.1).sum();
        let per_step = (steps + 1) as f64;
        println!(
            "fast-path pieces, ms per step (incl. the warm-up step in the mean), {:.1} ms in all:",
            all * 1e3 / per_step
        );
        for (piece, t, n) in profile {
            println!(
                "  {:8.2} ms  {:5.1}%  x{:<3} {piece}",
                t * 1e3 / per_step,
                100.0 * t / all,
                n / (steps as u64 + 1)
            );
        }
    }
    let threads = flex_kernels::profile::take_threads();
    if !threads.is_empty() {
        let per_step = (steps + 1) as f64;
        println!("thread time inside the convolution pieces, summed over threads, ms per step:");
        for (kind, t, flops) in threads {
            let rate = if flops > 0.0 {
                format!(" ({:.1} GFLOP/s per thread)", flops / t / 1e9)
            } else {
                String::new()
            };
            println!("  {:8.2} ms  {kind}{rate}", t * 1e3 / per_step);
        }
    }
    println!(
        "{} {} px base {base} batch {batch}: step {:.1} ms = {:.1} img/s | G forward {:.1} ms, D update {:.1} ms, G update {:.1} ms (medians of {steps}; best step {:.1} ms)",
        if fast { "fast" } else { "burn" },
        size,
        total * 1e3,
        batch as f64 / total,
        g_fwd * 1e3,
        d_upd * 1e3,
        g_upd * 1e3,
        best * 1e3,
    );
}

fn main() {
    let (flags, args): (Vec<String>, Vec<String>) =
        std::env::args().skip(1).partition(|a| a.starts_with("--"));
    let flag = |name: &str| flags.iter().any(|f| f == name);
    if let Some(unknown) = flags.iter().find(|f| {
        ![
            "--profile",
            "--default-malloc",
            "--outside-pool",
            "--no-direct",
            "--no-phases",
        ]
        .contains(&f.as_str())
    }) {
        panic!("unknown flag {unknown}: --profile, --default-malloc, --outside-pool, --no-direct, --no-phases");
    }
    flex_kernels::direct::enable(!flag("--no-direct"));
    flex_kernels::phases::enable(!flag("--no-phases"));
    // As `cats` does (`--outside-pool` to compare with a main thread outside rayon's pool).
    if !flag("--outside-pool") {
        flex_kernels::threads::join_global_pool();
    }
    // As `cats` does (`--default-malloc` to compare with glibc's defaults).
    flex_kernels::allocator::reuse_large_allocations(!flag("--default-malloc"));
    flex_kernels::profile::enable(flag("--profile"));
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or_else(|| default.into());
    let preset: ModelPreset = arg(0, "dcgan64").parse().expect("a preset name");
    let base: usize = arg(1, "32").parse().expect("a width");
    let batch: usize = arg(2, "32").parse().expect("a batch size");
    let steps: usize = arg(3, "5").parse().expect("a step count");
    let modes: &[bool] = match arg(4, "both").as_str() {
        "on" => &[true],
        "off" => &[false],
        _ => &[false, true],
    };
    for &fast in modes {
        run(preset, base, batch, steps, fast);
    }
}
