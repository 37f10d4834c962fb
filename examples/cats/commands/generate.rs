//! `cats generate`: new cats from a checkpoint, as PNG files.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use burn::tensor::backend::AutodiffBackend;
use catgan::backend::{catch_device_failure, dispatch, BackendKind, BackendTask};
use catgan::progress::Progress;
use catgan::resume::resolve_checkpoint;
use catgan::serve::generator::draw_latents;
use dcgan_core::sample::{image_grid, interpolate_latents, square_columns};
use rand::SeedableRng;

use crate::Target;

/// Draw new cats with a trained generator.
#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    /// A checkpoint file, or a run folder (uses its checkpoints/latest.catgan).
    #[arg(long, value_name = "PATH")]
    pub checkpoint: PathBuf,
    /// How many cats (or, with --interpolate, how many walks).
    #[arg(short = 'n', long = "count", default_value_t = 16, value_name = "N")]
    pub count: usize,
    /// Also write all of them as one grid image, grid.png.
    #[arg(long)]
    pub grid: bool,
    /// Instead of independent cats, walk between pairs of random latents in STEPS steps
    /// (spherical interpolation); writes one strip per walk.
    #[arg(long, value_name = "STEPS")]
    pub interpolate: Option<usize>,
    /// Seed of the latent vectors (same seed, same cats).
    #[arg(long, default_value_t = 0, value_name = "S")]
    pub seed: u64,
    /// Output folder (created if missing; existing files of the same names are replaced).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Draw with the raw generator even when the run kept an average of its weights
    /// (`cats train --ema`), which is used by default.
    #[arg(long)]
    pub no_ema: bool,
}

struct GenerateTask<'a> {
    args: &'a GenerateArgs,
    checkpoint: PathBuf,
    /// Images per generator call: at most [`CHUNK`], fewer where memory is short.
    chunk: usize,
}

impl BackendTask for GenerateTask<'_> {
    type Output = anyhow::Result<Vec<PathBuf>>;

    fn run<B: AutodiffBackend>(self, backend: BackendKind, device: B::Device) -> Self::Output {
        let args = self.args;
        let (generator, info) = catch_device_failure(backend, || {
            dcgan_core::load_generator_with::<B>(&self.checkpoint, &device, !args.no_ema)
        })??;
        if let (Some(ema), false) = (info.config.ema, args.no_ema) {
            eprintln!(
                "note: drawing from the generator average (EMA {}); --no-ema draws from the raw generator",
                ema.decay
            );
        }
        let latent_dim = generator.latent_dim();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(args.seed);
        let distribution = info.config.latent;
        std::fs::create_dir_all(&args.out)
            .with_context(|| format!("creating {}", args.out.display()))?;
        let mut written = Vec::new();
        let save = |image: &image::RgbImage, path: &Path| -> anyhow::Result<()> {
            catgan::image_file::save_png(image, path)?;
            Ok(())
        };
        // At most `chunk` images per generator call (a latent walk too), so that no call
        // allocates more than the memory check allowed.
        let render = |latents: Vec<f32>| -> anyhow::Result<Vec<image::RgbImage>> {
            Ok(draw_latents(
                &generator, &latents, self.chunk, backend, &device,
            )?)
        };
        // Names that sort in order: cat-0001 … cat-9999, cat-00001 … for more.
        let width = args.count.to_string().len().max(4);
        let walk_width = args.count.to_string().len().max(3);
        let mut progress = Progress::new("generate", args.count as u64, Duration::from_secs(10));
        match args.interpolate {
            None => {
                // Chunks of 64 are written as they are drawn: memory stays flat in -n (only
                // a grid keeps its images).
                let mut kept = Vec::new();
                for start in (0..args.count).step_by(CHUNK) {
                    let n = (args.count - start).min(CHUNK);
                    let images = render(distribution.sample(n, latent_dim, &mut rng))?;
                    for (i, image) in images.iter().enumerate() {
                        let path = args.out.join(format!("cat-{:0width$}.png", start + i + 1));
                        save(image, &path)?;
                        written.push(path);
                    }
                    if args.grid {
                        kept.extend(images);
                    }
                    progress.update((start + n) as u64, "");
                }
                if args.grid {
                    let path = args.out.join("grid.png");
                    save(&image_grid(&kept, square_columns(kept.len()), 2)?, &path)?;
                    written.push(path);
                }
            }
            Some(steps) => {
                let mut strips = Vec::new();
                for walk in 0..args.count {
                    let ends = distribution.sample(2, latent_dim, &mut rng);
                    let path_latents =
                        interpolate_latents(&ends[..latent_dim], &ends[latent_dim..], steps, true);
                    let images = render(path_latents.concat())?;
                    let strip = image_grid(&images, steps, 2)?;
                    let path = args.out.join(format!("walk-{:0walk_width$}.png", walk + 1));
                    save(&strip, &path)?;
                    written.push(path);
                    if args.grid {
                        strips.extend(images);
                    }
                    progress.update(walk as u64 + 1, "");
                }
                if args.grid {
                    let path = args.out.join("grid.png");
                    save(&image_grid(&strips, steps, 2)?, &path)?;
                    written.push(path);
                }
            }
        }
        progress.finish();
        Ok(written)
    }
}

/// Images drawn per generator call.
const CHUNK: usize = 64;
/// The most cats one grid picture (or one latent walk) may hold: larger ones take
/// gigabytes and are unreadable anyway.
const MAX_GRID: usize = 1024;

/// Runs `cats generate`.
pub fn run(args: &GenerateArgs, target: Target) -> anyhow::Result<ExitCode> {
    if args.count == 0 {
        bail!("-n 0: nothing to generate (give at least 1)");
    }
    if let Some(steps) = args.interpolate {
        if !(2..=MAX_GRID).contains(&steps) {
            bail!("--interpolate {steps}: give 2 to {MAX_GRID} steps per walk");
        }
    }
    let grid_images = args.count * args.interpolate.unwrap_or(1);
    if args.grid && grid_images > MAX_GRID {
        bail!(
            "--grid with {grid_images} images: one grid holds at most {MAX_GRID}; drop --grid \
             (the single files are written either way) or lower -n"
        );
    }
    let checkpoint = resolve_checkpoint(&args.checkpoint)?;
    // Before anything is loaded or written: the checkpoint's model, a batch of images at a
    // time, and the pictures held at once (one walk's; every one of a grid) must fit.
    let config = dcgan_core::CheckpointInfo::read(&checkpoint)?.config;
    let kept = match (args.interpolate, args.grid) {
        (None, grid) => usize::from(grid) * args.count,
        (Some(steps), grid) => steps + usize::from(grid) * args.count * steps,
    };
    let (chunk, _) = catgan::memory::generation_batch(&config, target.backend, CHUNK, kept)?;
    let written = dispatch(
        target.backend,
        target.device,
        GenerateTask {
            args,
            checkpoint: checkpoint.clone(),
            chunk,
        },
    )??;
    println!(
        "generated {} file(s) in {} from {}",
        written.len(),
        args.out.display(),
        checkpoint.display()
    );
    if let Some(grid) = written.iter().find(|p| p.ends_with("grid.png")) {
        println!("grid: {}", grid.display());
    }
    Ok(ExitCode::SUCCESS)
}
