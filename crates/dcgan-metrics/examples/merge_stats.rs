//! Merges statistics files that kept their features (e.g. shards of one folder) into one.
//!
//! ```text
//! cargo run -p dcgan-metrics --example merge_stats -- OUT.safetensors IN1.safetensors IN2.safetensors...
//! ```

use std::path::PathBuf;

use dcgan_metrics::{ReferenceStats, FEATURE_DIM};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<PathBuf> = std::env::args().skip(1).map(PathBuf::from).collect();
    if args.len() < 3 {
        return Err("usage: merge_stats OUT IN1 IN2...".into());
    }
    let mut all = dcgan_metrics::Features::new(FEATURE_DIM);
    let mut sources = Vec::new();
    for path in &args[1..] {
        let r = ReferenceStats::load(path)?;
        let f = r
            .features
            .ok_or_else(|| format!("{}: no features kept", path.display()))?;
        all.extend(&f)?;
        sources.push(r.source);
    }
    let merged = ReferenceStats::from_features(all, true, sources.join(" + "))?;
    merged.save(&args[0])?;
    println!("{}: {} images", args[0].display(), merged.stats.n);
    Ok(())
}
