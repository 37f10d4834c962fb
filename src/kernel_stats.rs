//! How many GPU kernels a piece of work compiled and how many operations it autotuned:
//! what a cold start is made of (`cats bench` reports both for the first step).
//!
//! Counted from the logs of the libraries that do the work, through the `log` crate, so
//! that counting changes nothing in how kernels are built:
//!
//! - **kernels compiled**: on the wgpu backends, wgpu's own trace record of every compute
//!   pipeline it creates (`Device::create_compute_pipeline`); each one is a shader the
//!   driver compiles. cubecl's compilation logger would say the same, but turning it on
//!   makes cubecl create wgpu with its debugging flags (debug information in every shader,
//!   validation layers where installed), which changes what is measured. On CUDA, cubecl's
//!   compilation logger (one line per NVRTC compilation; kernels found in the compilation
//!   cache are not compiled and not counted).
//! - **autotuned operations**: cubecl's autotune logger, one line per operation and shape
//!   class whose candidate kernels it compiled and timed (none when the autotune cache
//!   already knows the answer).
//!
//! [`install`] sets the logger up once per process, before the first GPU device exists;
//! [`snapshot`] reads the counters.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The counters at one moment; subtract two to count what happened in between.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KernelCounts {
    /// Kernels compiled (see the module docs for how, per backend).
    pub compiled: u64,
    /// Operations autotuned (each compiles and times all of its candidate kernels).
    pub autotuned: u64,
}

impl std::ops::Sub for KernelCounts {
    type Output = KernelCounts;

    fn sub(self, earlier: KernelCounts) -> KernelCounts {
        KernelCounts {
            compiled: self.compiled.saturating_sub(earlier.compiled),
            autotuned: self.autotuned.saturating_sub(earlier.autotuned),
        }
    }
}

static INSTALLED: OnceLock<bool> = OnceLock::new();

/// Where wgpu logs the creation of a compute pipeline (wgpu-core 29, `api_log!`).
const WGPU_TARGET: &str = "wgpu_core::device::global";
const WGPU_PIPELINE: &str = "Device::create_compute_pipeline";
/// Where cubecl's loggers write when told to use the `log` crate.
const CUBECL_TARGET: &str = "cubecl_common";
/// cubecl-runtime 0.10's line for a kernel compilation (`CompiledKernel::format_basic`)
/// and for a finished autotune (`tuner.rs`, at the `minimal` autotune log level).
const CUBECL_COMPILED: &str = "[Compiling kernel]";
const CUBECL_AUTOTUNED: &str = "Fastest result";

/// What a message starts with: formats at most `N` bytes of it, without allocating.
struct Prefix<const N: usize> {
    bytes: [u8; N],
    len: usize,
}

impl<const N: usize> Prefix<N> {
    fn of(args: &std::fmt::Arguments) -> Self {
        let mut prefix = Prefix {
            bytes: [0; N],
            len: 0,
        };
        // An error only means the buffer is full, which is what stops the formatting.
        let _ = prefix.write_fmt(*args);
        prefix
    }

    fn starts_with(&self, text: &str) -> bool {
        self.bytes[..self.len].starts_with(text.as_bytes())
    }
}

impl<const N: usize> Write for Prefix<N> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let take = s.len().min(N - self.len);
        self.bytes[self.len..self.len + take].copy_from_slice(&s.as_bytes()[..take]);
        self.len += take;
        if self.len == N {
            Err(std::fmt::Error)
        } else {
            Ok(())
        }
    }
}

/// Counts the records it recognises and drops everything else.
struct Counter {
    compiled: AtomicU64,
    autotuned: AtomicU64,
}

impl Counter {
    const fn new() -> Self {
        Counter {
            compiled: AtomicU64::new(0),
            autotuned: AtomicU64::new(0),
        }
    }

    fn counts(&self) -> KernelCounts {
        KernelCounts {
            compiled: self.compiled.load(Ordering::Relaxed),
            autotuned: self.autotuned.load(Ordering::Relaxed),
        }
    }
}

impl log::Log for Counter {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.target() == WGPU_TARGET || metadata.target().starts_with(CUBECL_TARGET)
    }

    fn log(&self, record: &log::Record) {
        let target = record.target();
        if target == WGPU_TARGET {
            if Prefix::<32>::of(record.args()).starts_with(WGPU_PIPELINE) {
                self.compiled.fetch_add(1, Ordering::Relaxed);
            }
        } else if target.starts_with(CUBECL_TARGET) {
            let prefix = Prefix::<24>::of(record.args());
            if prefix.starts_with(CUBECL_COMPILED) {
                self.compiled.fetch_add(1, Ordering::Relaxed);
            } else if prefix.starts_with(CUBECL_AUTOTUNED) {
                self.autotuned.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn flush(&self) {}
}

static COUNTER: Counter = Counter::new();

/// Makes this process count kernels: installs the counting logger as the `log` crate's
/// logger. Returns whether counting is on (false if another logger was installed first).
/// The caller also routes cubecl's loggers to the `log` crate (the kernel cache
/// configuration does, when asked to count).
pub fn install() -> bool {
    *INSTALLED.get_or_init(|| {
        if log::set_logger(&COUNTER).is_err() {
            return false;
        }
        // wgpu's pipeline record is a trace record.
        log::set_max_level(log::LevelFilter::Trace);
        true
    })
}

/// Whether [`install`] succeeded in this process.
pub fn is_counting() -> bool {
    INSTALLED.get().copied().unwrap_or(false)
}

/// The counters now, or `None` if this process does not count.
pub fn snapshot() -> Option<KernelCounts> {
    is_counting().then(|| COUNTER.counts())
}

/// The counters once they have stopped moving. cubecl logs CUDA compilations from a
/// background thread, so the last ones of a step can arrive just after it; wait until
/// nothing changes for 50 ms (at most half a second).
pub fn settled_snapshot() -> Option<KernelCounts> {
    let mut last = snapshot()?;
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(500) {
        std::thread::sleep(Duration::from_millis(50));
        let now = snapshot()?;
        if now == last {
            break;
        }
        last = now;
    }
    Some(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use log::Log;

    fn record(target: &str, message: std::fmt::Arguments, f: impl FnOnce(&log::Record)) {
        f(&log::Record::builder()
            .target(target)
            .level(log::Level::Trace)
            .args(message)
            .build());
    }

    #[test]
    fn recognises_pipelines_compilations_and_autotunes_and_nothing_else() {
        // A counter of its own: the process-wide one may hear real kernels of other tests.
        let counter = Counter::new();
        let id = 7;
        let name = "conv_direct";
        record(
            WGPU_TARGET,
            format_args!("Device::create_compute_pipeline -> Id({id},1)"),
            |r| counter.log(r),
        );
        record(
            "cubecl_common::config::logger",
            format_args!("[Compiling kernel] {name}"),
            |r| counter.log(r),
        );
        record(
            "cubecl_common::config::logger",
            format_args!("Fastest result {name}-ConvAutotuneKey {{ .. }}"),
            |r| counter.log(r),
        );
        // Other records of the same sources, and the same words elsewhere, are not counted.
        record(
            WGPU_TARGET,
            format_args!("Device::create_buffer -> Id({id},1)"),
            |r| counter.log(r),
        );
        record(
            "wgpu_core::device::resource",
            format_args!("Device::create_compute_pipeline -> Id({id},1)"),
            |r| counter.log(r),
        );
        record(
            "cubecl_common::config::logger",
            format_args!("validate checksum key={name}"),
            |r| counter.log(r),
        );
        assert_eq!(
            counter.counts(),
            KernelCounts {
                compiled: 2,
                autotuned: 1
            }
        );
    }

    #[test]
    fn a_prefix_is_cut_without_losing_what_fits() {
        let long = "x".repeat(100);
        let p = Prefix::<8>::of(&format_args!("ab{long}"));
        assert_eq!(p.len, 8);
        assert!(p.starts_with("abxx"));
        assert!(!p.starts_with("abc"));
        let short = Prefix::<8>::of(&format_args!("{}", "ab"));
        assert!(short.starts_with("ab") && !short.starts_with("abx"));
    }

    #[test]
    fn counts_subtract_to_what_happened_in_between() {
        let a = KernelCounts {
            compiled: 10,
            autotuned: 2,
        };
        let b = KernelCounts {
            compiled: 25,
            autotuned: 2,
        };
        assert_eq!(
            b - a,
            KernelCounts {
                compiled: 15,
                autotuned: 0
            }
        );
    }
}
