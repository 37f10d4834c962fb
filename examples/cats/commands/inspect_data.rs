//! `cats inspect-data`: what the loader makes of a data folder.

use std::path::PathBuf;

use anyhow::Context;
use dcgan_data::{DatasetConfig, ImageDataset};

/// Check a folder of images: how many are usable, which are skipped and why.
#[derive(Debug, clap::Args)]
pub struct InspectDataArgs {
    /// Folder of images (searched recursively: jpg, jpeg, png, bmp, gif, webp, tif, tiff,
    /// in any letter case; regular files only). Nothing is written into it: the decoded
    /// cache goes to `data/` in the cache folder (`$CATGAN_CACHE_DIR`, by default
    /// `~/.cache/catgan`; README, "Cache folders").
    #[arg(long, value_name = "DIR")]
    pub data: PathBuf,
    /// Side of the square training images, in pixels (the cache is built for this size).
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub image_size: u32,
    /// Fail on the first file that cannot be used, instead of listing it.
    #[arg(long)]
    pub strict: bool,
}

/// Opens the folder like `cats train` does (building the cache on the way) and prints
/// `usable: N`, `skipped: M`, then one `path: reason` line per skipped file (undecodable
/// files, FIFOs or sockets named like images, symbolic link loops, unreadable entries).
pub fn run(args: &InspectDataArgs) -> anyhow::Result<()> {
    let config = DatasetConfig::new()
        .with_image_size(args.image_size)
        .with_strict(args.strict);
    let progress = catgan::progress::DataProgress::new();
    let dataset = ImageDataset::open(&args.data, &config, &progress)
        .with_context(|| format!("cannot use `{}` as training data", args.data.display()))?;
    let report = dataset.report();
    println!("usable: {}", report.usable);
    println!("skipped: {}", report.skipped.len());
    for skipped in &report.skipped {
        println!("{skipped}");
    }
    Ok(())
}
