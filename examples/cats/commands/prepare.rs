//! `cats prepare`: level, square face crops from the CAT dataset.

use std::path::PathBuf;

use anyhow::Context;
use dcgan_data::PrepareConfig;

/// Crop the cat faces of the CAT dataset (`*.jpg` + `*.jpg.cat` landmarks) into PNGs.
#[derive(Debug, clap::Args)]
pub struct PrepareArgs {
    /// The CAT dataset folder (searched recursively for `.cat` landmark files).
    #[arg(long, value_name = "DIR")]
    pub cat_dataset: PathBuf,
    /// Output folder for the PNG crops (created; the folder structure is mirrored).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Drop faces whose crop is smaller than this many pixels per side.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub min_size: u32,
}

/// Runs the preparation and prints a summary, then one line per problem file.
pub fn run(args: &PrepareArgs) -> anyhow::Result<()> {
    let config = PrepareConfig::new().with_min_size(args.min_size);
    let progress = catgan::progress::DataProgress::new();
    let report = dcgan_data::prepare(&args.cat_dataset, &args.out, &config, &progress)
        .with_context(|| format!("cannot prepare `{}`", args.cat_dataset.display()))?;
    println!(
        "written: {} (in {})",
        report.written.len(),
        args.out.display()
    );
    println!(
        "too small: {} (under {} px)",
        report.too_small.len(),
        args.min_size
    );
    println!("malformed: {}", report.malformed.len());
    println!("unreadable: {}", report.unreadable.len());
    println!("without landmarks: {}", report.unannotated);
    for (path, side) in &report.too_small {
        println!("too small: {}: {side} px", path.display());
    }
    for (path, reason) in &report.malformed {
        println!("malformed: {}: {reason}", path.display());
    }
    for skipped in &report.unreadable {
        println!("unreadable: {skipped}");
    }
    Ok(())
}
