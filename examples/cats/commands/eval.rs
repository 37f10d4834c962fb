//! `cats eval --checkpoint PATH --data DIR|STATS`: FID and KID of a trained generator.

use std::path::PathBuf;

use anyhow::Context;
use burn::tensor::backend::AutodiffBackend;
use dcgan_metrics::{FolderOptions, ReferenceStats};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::fid::{print_folder_notes, ScoringArgs};

/// Generate N images from a checkpoint and score them against real images with FID and
/// KID. Prints `fid=<number>` and `kid=<number>` as the last lines.
#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// Training checkpoint to load the generator from.
    #[arg(long, value_name = "PATH")]
    pub checkpoint: PathBuf,
    /// Reference: an image folder (searched recursively, like training data), or a
    /// statistics file written by `--write-stats` (much faster).
    #[arg(long, value_name = "DIR|FILE")]
    pub data: PathBuf,
    /// Number of images to generate.
    #[arg(short = 'n', long, value_name = "N", default_value_t = 5000)]
    pub n: usize,
    #[command(flatten)]
    pub scoring: ScoringArgs,
    /// Seed of the latent vectors.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub seed: u64,
    /// Save the reference statistics (with features, for KID) of `--data DIR` to this
    /// file, for later `--data FILE` runs and for FID during training.
    #[arg(long, value_name = "FILE")]
    pub write_stats: Option<PathBuf>,
    /// Score the raw generator even when the run kept an average of its weights
    /// (`cats train --ema`), which is scored by default.
    #[arg(long)]
    pub no_ema: bool,
    /// Fail on the first unreadable image of `--data DIR` instead of skipping it (skipped
    /// images are listed).
    #[arg(long)]
    pub strict: bool,
}

/// Loads the generator (on `B`'s inner backend), the reference statistics and the FID
/// network, generates `n` images in batches and prints the scores.
pub fn run<B: AutodiffBackend>(args: &EvalArgs, device: &B::Device) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.n >= 2,
        "-n must be at least 2 (a covariance needs two images)"
    );
    let checkpoint = catgan::resume::resolve_checkpoint(&args.checkpoint)?;
    let (generator, info) = dcgan_core::load_generator_with::<B>(&checkpoint, device, !args.no_ema)
        .with_context(|| format!("cannot load checkpoint `{}`", args.checkpoint.display()))?;
    if let (Some(ema), false) = (info.config.ema, args.no_ema) {
        eprintln!(
            "note: scoring the generator average (EMA {}); --no-ema scores the raw generator",
            ema.decay
        );
    }
    let evaluator = args.scoring.evaluator::<B::InnerBackend>(device)?;
    let kid = args.scoring.kid();
    let progress = catgan::progress::DataProgress::new();

    let reference = if args.data.is_file() {
        ReferenceStats::load(&args.data)
            .with_context(|| format!("cannot read statistics `{}`", args.data.display()))?
    } else {
        let options = FolderOptions::new().with_strict(args.strict);
        let (r, report) =
            ReferenceStats::compute_from_folder(&evaluator, &args.data, true, &options, &progress)
                .with_context(|| {
                    format!("cannot compute statistics of `{}`", args.data.display())
                })?;
        print_folder_notes(&report);
        if let Some(out) = &args.write_stats {
            r.save(out)
                .with_context(|| format!("cannot write statistics `{}`", out.display()))?;
            println!("statistics written: {}", out.display());
        }
        r
    };

    let latent = info.config.latent;
    let dim = generator.latent_dim();
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    let batch = args.scoring.batch_size.max(1);
    let batches = (0..args.n).step_by(batch).map(|start| {
        let count = batch.min(args.n - start);
        let z = latent.tensor::<B::InnerBackend>(count, dim, &mut rng, device);
        generator.forward(z)
    });
    let scores = evaluator
        .evaluate_generator_images(batches, args.n, &reference, kid.as_ref(), &progress)
        .context("cannot score the generated images")?;

    println!(
        "checkpoint: {} (epoch {}, step {}); {} generated vs {} reference images ({})",
        args.checkpoint.display(),
        info.epoch,
        info.step,
        scores.n_b,
        scores.n_a,
        reference.source
    );
    super::print_scores(
        &scores,
        kid.is_some(),
        "the statistics file holds no features",
    );
    Ok(())
}
