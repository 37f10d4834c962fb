//! Inception throughput (images/s) on flex, preprocessing excluded.
//!
//! ```text
//! cargo run -p dcgan-metrics --example throughput -- [BATCH_SIZE] [BATCHES] [--profile] [--no-direct]
//! ```
//! Random weights: the cost is the same as with the real ones. `--profile` prints where
//! the timed batches' time went, layer by layer (`flex_kernels::profile`); `--no-direct`
//! runs the first convolution on the window matrices (`flex_kernels::direct::enable`).

use std::time::Instant;

use burn::backend::Flex;
use burn::tensor::{Distribution, Tensor};
use dcgan_metrics::{FidInceptionV3, InceptionWeights};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let profile = std::env::args().any(|a| a == "--profile");
    let direct = !std::env::args().any(|a| a == "--no-direct");
    let mut args = std::env::args()
        .skip(1)
        .filter(|a| a != "--profile" && a != "--no-direct");
    flex_kernels::direct::enable(direct);
    let batch: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(16);
    let batches: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(4);
    // As the inception bench runs it: the calling thread as one of rayon's workers, and
    // glibc keeping freed blocks of up to 32 MiB for reuse.
    flex_kernels::threads::join_global_pool();
    flex_kernels::allocator::reuse_large_allocations(true);
    let device = Default::default();
    let model = FidInceptionV3::<Flex>::new(&InceptionWeights::random(0), &device)?;
    let x = Tensor::<Flex, 4>::random(
        [batch, 3, 299, 299],
        Distribution::Uniform(-1.0, 1.0),
        &device,
    );
    // Warm-up.
    let _ = model.forward(x.clone()).into_data();
    flex_kernels::profile::enable(profile);
    let t = Instant::now();
    for _ in 0..batches {
        let _ = model.forward(x.clone()).into_data();
    }
    let s = t.elapsed().as_secs_f64();
    let n = batch * batches;
    println!(
        "batch {batch}: {n} images in {s:.1} s = {:.2} img/s ({:.0} GFLOP/s; 5.71 G multiply-adds per image)",
        n as f64 / s,
        n as f64 * 11.42 / s
    );
    if profile {
        for (piece, seconds, calls) in flex_kernels::profile::take() {
            println!(
                "{:8.1} ms/batch  x{calls:<4} {piece}",
                1e3 * seconds / batches as f64
            );
        }
        for (kind, seconds, flops) in flex_kernels::profile::take_threads() {
            println!(
                "{:8.1} ms/batch thread time  {:6.1} GFLOP/s  {kind}",
                1e3 * seconds / batches as f64,
                flops / seconds.max(1e-9) / 1e9
            );
        }
    }
    Ok(())
}
