//! FID and KID between two image folders (or saved statistics files), with timings.
//!
//! ```text
//! cargo run -p dcgan-metrics --example fid_dirs -- A B [--weights FILE] [--batch-size N]
//!     [--save-a FILE] [--save-b FILE]
//! ```
//! `A` and `B` are image folders or statistics files written by `--save-a/--save-b`
//! (features kept, so KID works too). Weights default to `$CATGAN_FID_WEIGHTS` (or the
//! cached conversion). The `cats fid` command does the same with a progress bar, and the
//! same process-wide settings: the calling thread as one of rayon's workers, and freed
//! buffers kept on the heap (without them: 23 million page faults for the 4,121 crops).

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

use burn::backend::Flex;
use dcgan_metrics::{
    FidEvaluator, FolderOptions, KidConfig, ProgressEvent, ReferenceStats, Scores,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    flex_kernels::threads::join_global_pool();
    flex_kernels::allocator::reuse_large_allocations(true);
    let mut args = std::env::args().skip(1);
    let (mut paths, mut weights, mut batch, mut save_a, mut save_b) =
        (Vec::new(), None, 16usize, None, None);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--weights" => weights = args.next().map(PathBuf::from),
            "--batch-size" => batch = args.next().ok_or("--batch-size N")?.parse()?,
            "--save-a" => save_a = args.next().map(PathBuf::from),
            "--save-b" => save_b = args.next().map(PathBuf::from),
            _ => paths.push(PathBuf::from(a)),
        }
    }
    if paths.len() != 2 {
        return Err(
            "usage: fid_dirs A B [--weights FILE] [--batch-size N] [--save-a FILE] [--save-b FILE]"
                .into(),
        );
    }
    let device = Default::default();
    let t0 = Instant::now();
    let eval = FidEvaluator::<Flex>::load(weights.as_deref(), &device)?.with_batch_size(batch);
    eprintln!("weights loaded in {:.1} s", t0.elapsed().as_secs_f64());

    let mut stats = Vec::new();
    for (path, save) in paths.iter().zip([save_a, save_b]) {
        let t = Instant::now();
        // (what, done, total, done at the last line)
        let state = Mutex::new((String::new(), 0u64, 0u64, 0u64));
        let progress = |event: ProgressEvent<'_>| {
            let mut state = state.lock().unwrap();
            let (what, done, total, last) = &mut *state;
            match event {
                ProgressEvent::Started { total: n, what: w } => {
                    (*what, *done, *total, *last) = (w.to_string(), 0, n, 0);
                }
                ProgressEvent::Advanced { by } => *done += by,
                ProgressEvent::Finished => {}
            }
            if *done >= *last + 128 || (*done == *total && *done > *last) {
                *last = *done;
                eprintln!(
                    "{what}: {done}/{total} ({:.2} img/s)",
                    *done as f64 / t.elapsed().as_secs_f64()
                );
            }
        };
        let (r, report) =
            ReferenceStats::from_dir_or_file(&eval, path, &FolderOptions::default(), &progress)?;
        for note in report.iter().flat_map(|r| r.notes()) {
            eprintln!("note: {note}");
        }
        eprintln!(
            "{}: {} images, {:.1} s",
            path.display(),
            r.stats.n,
            t.elapsed().as_secs_f64()
        );
        if let Some(out) = save {
            r.save(&out)?;
            eprintln!("saved {}", out.display());
        }
        stats.push(r);
    }
    let t = Instant::now();
    let scores = Scores::from_reference(&stats[0], &stats[1], Some(&KidConfig::default()))?;
    eprintln!("FID + KID: {:.1} s", t.elapsed().as_secs_f64());
    println!("fid={}", scores.fid);
    if let Some(kid) = scores.kid {
        println!("kid={} +- {}", kid.mean, kid.std);
    }
    Ok(())
}
