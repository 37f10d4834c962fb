//! The flags the bench binaries share, and the configurations they run.

use std::fmt;
use std::str::FromStr;

use catgan::backend::BackendKind;
use catgan::bench::BenchConfig;
use dcgan_core::{ModelPreset, Precision};

/// One configuration on the command line: `preset[:base[:batch]]`, e.g. `dcgan64:32:32`.
///
/// A missing base means the preset's; a missing batch means "take the batch sizes given
/// separately" (`--batch-sizes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigSpec {
    /// The preset.
    pub preset: ModelPreset,
    /// Width (None: the preset's).
    pub base: Option<usize>,
    /// Images per step, if given.
    pub batch_size: Option<usize>,
}

impl ConfigSpec {
    /// The width actually used.
    pub fn base(&self) -> usize {
        self.base.unwrap_or(self.preset.default_base())
    }

    /// The specs with their batch sizes filled in: a spec with a batch stays one config,
    /// a spec without one becomes one config per entry of `batch_sizes`.
    pub fn expand(specs: &[ConfigSpec], batch_sizes: &[usize]) -> Vec<ConfigSpec> {
        specs
            .iter()
            .flat_map(|s| match s.batch_size {
                Some(_) => vec![*s],
                None => batch_sizes
                    .iter()
                    .map(|&b| ConfigSpec {
                        batch_size: Some(b),
                        ..*s
                    })
                    .collect(),
            })
            .collect()
    }

    /// Whether this is a toy-sized model (32 px, base ≤ 8, batch ≤ 16): the only size
    /// the slow backends (ndarray) run on unless asked for by name.
    pub fn is_tiny(&self) -> bool {
        self.preset.image_size() <= 32 && self.base() <= 8 && self.batch_size.unwrap_or(0) <= 16
    }
}

impl fmt::Display for ConfigSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.preset, self.base())?;
        if let Some(b) = self.batch_size {
            write!(f, ":{b}")?;
        }
        Ok(())
    }
}

impl FromStr for ConfigSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let mut parts = s.trim().split(':');
        let preset = parts
            .next()
            .unwrap_or_default()
            .parse::<ModelPreset>()
            .map_err(|e| e.to_string())?;
        let number = |part: Option<&str>, what: &str| -> Result<Option<usize>, String> {
            match part {
                None | Some("") => Ok(None),
                Some(p) => match p.parse::<usize>() {
                    Ok(n) if n > 0 => Ok(Some(n)),
                    _ => Err(format!(
                        "`{s}`: {what} must be a positive number (expected preset[:base[:batch]])"
                    )),
                },
            }
        };
        let base = number(parts.next(), "base")?;
        let batch_size = number(parts.next(), "batch")?;
        if parts.next().is_some() {
            return Err(format!(
                "`{s}`: too many fields (expected preset[:base[:batch]])"
            ));
        }
        Ok(ConfigSpec {
            preset,
            base,
            batch_size,
        })
    }
}

/// Flags shared by the bench binaries (`benches/throughput.rs`, `benches/side_by_side.rs`).
#[derive(Debug, Clone, clap::Args)]
pub struct BenchFlags {
    /// Configurations, `preset[:base[:batch]]`, comma-separated.
    #[arg(
        long,
        visible_alias = "presets",
        value_delimiter = ',',
        default_value = "dcgan64:16:16,dcgan64:32:32,seed128:16:16,seed128:64:64",
        value_name = "LIST"
    )]
    pub configs: Vec<ConfigSpec>,
    /// Timed steps per run (the median is reported).
    #[arg(long, default_value_t = 10, value_parser = positive, value_name = "N")]
    pub steps: usize,
    /// Untimed steps before them.
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub warmup: usize,
    /// Skip the generator-inference measurement.
    #[arg(long)]
    pub no_inference: bool,
    /// Before each CPU run, wait (at most this long) until other programs use under 10% of
    /// the CPUs.
    #[arg(long, default_value_t = 0, value_name = "SECONDS")]
    pub wait_quiet: u64,
    /// Also write the machine info and every result to this JSON file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<std::path::PathBuf>,
    /// Keep glibc's allocator settings instead of reusing freed multi-megabyte buffers
    /// (as `cats --default-malloc`), to measure what the reuse is worth; a PyTorch peer
    /// then keeps them too (otherwise it gets the same reuse, through glibc's environment
    /// variables).
    #[arg(long)]
    pub default_malloc: bool,
    /// Time flex on burn's own operations instead of its fast path (`fast_kernels: false`
    /// in the network configs), to measure what the fast path is worth.
    #[arg(long)]
    pub no_fast_kernels: bool,
    /// Passed by `cargo bench` to every bench binary; ignored.
    #[arg(long, hide = true)]
    pub bench: bool,
}

impl BenchFlags {
    /// The [`BenchConfig`] of one configuration (batch 16 where `spec` names none).
    pub fn config(&self, spec: &ConfigSpec) -> BenchConfig {
        BenchConfig {
            preset: spec.preset,
            base: spec.base,
            batch_size: spec.batch_size.unwrap_or(16),
            warmup: self.warmup,
            repeats: self.steps,
            inference: !self.no_inference,
            precision: Precision::F32,
            fast_kernels: !self.no_fast_kernels,
            devices: 1,
        }
    }
}

/// A clap value parser for counts that must be at least 1.
pub fn positive(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("`{s}`: expected a positive whole number")),
    }
}

/// A clap value parser for a backend compiled into this binary.
pub fn compiled_backend(s: &str) -> Result<BackendKind, String> {
    BackendKind::parse_compiled(s.trim()).map_err(|e| e.to_string())
}

/// Why `backend` is left out of `config` by default, if it is: ndarray is ~19× slower than
/// flex (~170× slower than PyTorch), so it only runs toy models unless asked for by name.
pub fn default_skip(backend: BackendKind, config: &ConfigSpec) -> Option<String> {
    (backend == BackendKind::NdArray && !config.is_tiny()).then(|| {
        format!(
            "skipping ndarray on {config}: ~19x slower than flex (minutes per step); \
             name it in --backends to run it anyway"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_specs_parse_expand_and_print() {
        let s: ConfigSpec = "dcgan64:32:16".parse().unwrap();
        assert_eq!(
            (s.preset, s.base, s.batch_size),
            (ModelPreset::Dcgan64, Some(32), Some(16))
        );
        assert_eq!(s.to_string(), "dcgan64:32:16");
        // Through the bench binaries' own flags.
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            flags: BenchFlags,
        }
        use clap::Parser;
        let parse = |args: &[&str]| Cli::try_parse_from([&["bench"], args].concat());
        let specs = parse(&["--configs", "seed128, tiny32:4:2", "--bench"])
            .unwrap()
            .flags
            .configs;
        assert!(parse(&["--steps", "0"]).is_err());
        assert!(parse(&["--presets", "cat64"]).is_err());
        assert_eq!(specs[0].base(), 64);
        let all = ConfigSpec::expand(&specs, &[8, 16]);
        let names: Vec<String> = all.iter().map(|c| c.to_string()).collect();
        assert_eq!(names, ["seed128:64:8", "seed128:64:16", "tiny32:4:2"]);
        assert!(all[2].is_tiny() && !all[0].is_tiny());
        for bad in ["cat64", "dcgan64:0", "dcgan64:x", "dcgan64:16:16:1"] {
            assert!(bad.parse::<ConfigSpec>().is_err(), "{bad}");
        }
        assert!(default_skip(BackendKind::NdArray, &all[0]).is_some());
        assert!(default_skip(BackendKind::NdArray, &all[2]).is_none());
        assert!(default_skip(BackendKind::Flex, &all[0]).is_none());
    }
}
