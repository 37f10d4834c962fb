//! Data loader throughput: cold (decode every file) and cached, in images per second.
//!
//! ```text
//! cargo bench --bench loader -- --data DIR --image-size 64[,128] [--repeats 5] [--batch 64]
//! ```
//! Without `--data`, the internal face crops next to the repository are used
//! (`../shared/data/cats/cats-dogs-bench-faces/crops`) if present.
//!
//! For each size, each figure is the median of `--repeats` runs:
//! - **cold**: scan + decode + crop + resize every file, no cache (files in the OS page cache);
//! - **cached open**: scan + read and verify the cache file;
//! - **cached epoch**: cached open, then one epoch of shuffled, flipped batches as
//!   `Tensor<Flex, 4>` through the prefetching `Loader`;
//! - **batches only**: that epoch alone (what the trainer waits for per image).

use std::path::PathBuf;
use std::time::Instant;

use burn::backend::Flex;
use dcgan_data::{CacheLocation, DatasetConfig, ImageDataset, Loader, LoaderConfig};

struct Args {
    data: PathBuf,
    sizes: Vec<u32>,
    repeats: usize,
    batch: usize,
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        data: PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/data/cats/cats-dogs-bench-faces/crops"),
        sizes: vec![64],
        repeats: 5,
        batch: 64,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--data" => args.data = PathBuf::from(value()?),
            "--image-size" => {
                args.sizes = value()?
                    .split(',')
                    .map(|s| s.trim().parse().map_err(|_| format!("bad size `{s}`")))
                    .collect::<Result<_, _>>()?
            }
            "--repeats" => args.repeats = value()?.parse().map_err(|_| "bad --repeats")?,
            "--batch" => args.batch = value()?.parse().map_err(|_| "bad --batch")?,
            "--bench" => {} // added by `cargo bench`
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok(args)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    if !args.data.is_dir() {
        eprintln!(
            "skipped: data folder `{}` not found (pass --data DIR)",
            args.data.display()
        );
        return;
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "data: {} | threads: {threads} | repeats: {} (median) | batch: {}",
        args.data.display(),
        args.repeats,
        args.batch
    );
    println!("| size | images | cold img/s | cached open img/s | cached open + epoch img/s | batches only img/s |");
    println!("|---|---|---|---|---|---|");
    for &size in &args.sizes {
        let cache_dir = tempfile::tempdir().expect("temp dir");
        let cold_config = DatasetConfig::new()
            .with_image_size(size)
            .with_cache(CacheLocation::Disabled);
        let cached_config = cold_config
            .clone()
            .with_cache(CacheLocation::Dir(cache_dir.path().into()));
        let loader_config = LoaderConfig::new(args.batch).with_seed(1).with_flip(true);

        let mut cold = Vec::new();
        let mut n = 0;
        for _ in 0..args.repeats {
            let t = Instant::now();
            let ds = ImageDataset::open(&args.data, &cold_config, &()).expect("open");
            cold.push(ds.len() as f64 / t.elapsed().as_secs_f64());
            n = ds.len();
        }
        // Build the cache once.
        ImageDataset::open(&args.data, &cached_config, &()).expect("build cache");

        let (mut open, mut epoch, mut batches) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..args.repeats {
            let t = Instant::now();
            let ds = ImageDataset::open(&args.data, &cached_config, &()).expect("open cached");
            let opened = t.elapsed().as_secs_f64();
            assert!(matches!(
                ds.report().cache,
                dcgan_data::CacheStatus::Loaded(_)
            ));
            open.push(ds.len() as f64 / opened);

            let t_batches = Instant::now();
            let mut loader =
                Loader::<Flex>::new(ds, &loader_config, Default::default()).expect("loader");
            let mut images = 0usize;
            for _ in 0..loader.steps_per_epoch() {
                let batch = loader.next_batch().expect("batch");
                images += batch.images.dims()[0];
                std::hint::black_box(&batch.images);
            }
            let batch_secs = t_batches.elapsed().as_secs_f64();
            batches.push(images as f64 / batch_secs);
            epoch.push(images as f64 / (opened + batch_secs));
        }
        println!(
            "| {size} | {n} | {:.0} | {:.0} | {:.0} | {:.0} |",
            median(cold),
            median(open),
            median(epoch),
            median(batches)
        );
    }
}
