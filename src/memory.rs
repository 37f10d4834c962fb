//! Whether a run fits in this machine's memory, checked before anything is allocated or
//! written: [`check_fits`] for training, [`generation_batch`] for drawing images. The
//! estimates are [`dcgan_core::memory`]'s; this module finds out how much memory there is
//! ([`available_memory`]).
//!
//! [`MEMORY_LIMIT_ENV`] (`CATGAN_MEMORY_LIMIT`) overrides what is found: a size such as
//! `512M`, `8G` or `17179869184` (bytes), or `off` to skip the check.
//!
//! Also the allocator setting of the `cats` tool and the benchmarks:
//! [`reuse_large_allocations`].

use dcgan_core::{Error, MemoryEstimate, TrainerConfig};

use crate::backend::BackendKind;

/// The environment variable that sets the memory available to a run: a size (`512M`,
/// `8G`, `1.5T`, plain bytes; K, M, G, T are powers of 1,024) or `off` (no check).
pub const MEMORY_LIMIT_ENV: &str = "CATGAN_MEMORY_LIMIT";

/// Bytes of memory available to a run on `backend`, if known.
///
/// - [`MEMORY_LIMIT_ENV`], when set, decides (`off`: unknown);
/// - CPU backends (flex, ndarray) on Linux: `MemAvailable` of `/proc/meminfo`, or less if
///   the process's cgroup (v2 `memory.max`, v1 `memory.limit_in_bytes`, on its own group
///   or any above it) leaves less: the limit minus the group's usage, its inactive file
///   cache counted as free;
/// - GPU backends: unknown (burn 0.21 and cubecl 0.10 expose a device's memory only
///   through a started client, and only indirectly), and so is any other system.
pub fn available_memory(backend: BackendKind) -> Option<u64> {
    available_memory_with(backend, std::env::var(MEMORY_LIMIT_ENV).ok().as_deref())
}

/// [`available_memory`] with the environment variable's value given.
fn available_memory_with(backend: BackendKind, limit: Option<&str>) -> Option<u64> {
    if let Some(limit) = limit {
        return parse_size(limit);
    }
    if backend.is_gpu() {
        return None;
    }
    system_available()
}

/// Estimates a training run of `config` and checks that it fits in the memory available
/// to `backend` (see [`available_memory`]; where that is unknown, nothing is refused).
/// Returns the estimate, or [`Error::InvalidConfig`] for a configuration the trainer would
/// refuse, or [`Error::TooLarge`] naming the figures and a `--batch-size` / `--base` that
/// fits.
pub fn check_fits(config: &TrainerConfig, backend: BackendKind) -> Result<MemoryEstimate, Error> {
    check_fits_beside(config, backend, 0)
}

/// [`check_fits`] for a process that also holds `reserved` bytes of its own (the data
/// set's decoded cache, `N · 3 · size²` bytes, which the estimate does not count).
pub fn check_fits_beside(
    config: &TrainerConfig,
    backend: BackendKind,
    reserved: u64,
) -> Result<MemoryEstimate, Error> {
    config.validate()?;
    let estimate = MemoryEstimate::training(config);
    if let Some(available) = available_memory(backend) {
        estimate
            .check(available.saturating_sub(reserved))
            .map_err(name_the_limit)?;
    }
    Ok(estimate)
}

/// Says where the available figure came from when [`MEMORY_LIMIT_ENV`] set it, so that a
/// refusal caused by a forgotten variable is not a mystery.
fn name_the_limit(error: Error) -> Error {
    match (error, std::env::var(MEMORY_LIMIT_ENV)) {
        (
            Error::TooLarge {
                what,
                needed,
                available,
                breakdown,
                suggestion,
            },
            Ok(limit),
        ) => Error::TooLarge {
            what,
            needed,
            available,
            breakdown,
            suggestion: format!(
                "{suggestion} (the available figure is {MEMORY_LIMIT_ENV}={limit})"
            ),
        },
        (error, _) => error,
    }
}

/// For drawing images from a checkpoint of `config` on `backend` with `kept_images`
/// pictures held for a grid or a latent walk: the largest batch up to `max_batch` (halved
/// until it fits) that fits in the available memory, with its estimate; `max_batch` where
/// the available memory is unknown. [`Error::TooLarge`] when not even one image at a time
/// fits, saying how many kept pictures would.
pub fn generation_batch(
    config: &TrainerConfig,
    backend: BackendKind,
    max_batch: usize,
    kept_images: usize,
) -> Result<(usize, MemoryEstimate), Error> {
    match available_memory(backend) {
        Some(available) => {
            MemoryEstimate::fit_generation(config, max_batch, kept_images, available)
                .map_err(name_the_limit)
        }
        None => Ok((
            max_batch.max(1),
            MemoryEstimate::generation(config, max_batch.max(1), kept_images),
        )),
    }
}

/// `512M`, `8G`, `1.5T`, `17179869184`, `64KiB` → bytes; `off` (or anything unreadable) →
/// `None`.
fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let shift = match unit
        .trim()
        .to_ascii_lowercase()
        .trim_end_matches("ib")
        .trim_end_matches('b')
    {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        _ => return None,
    };
    let bytes = number * (1u64 << shift) as f64;
    (bytes.is_finite() && bytes >= 0.0).then(|| bytes.min(u64::MAX as f64) as u64)
}

/// `MemAvailable` and the cgroup limits, on Linux.
#[cfg(target_os = "linux")]
fn system_available() -> Option<u64> {
    let read = |path: &str| std::fs::read_to_string(path).ok();
    let meminfo = parse_meminfo(&read("/proc/meminfo")?)?;
    let cgroup = read("/proc/self/cgroup")
        .map(|groups| cgroup_available(&groups, &|path| std::fs::read_to_string(path).ok()))
        .unwrap_or(None);
    Some(cgroup.map_or(meminfo, |c| c.min(meminfo)))
}

#[cfg(not(target_os = "linux"))]
fn system_available() -> Option<u64> {
    None
}

/// `MemAvailable` of a `/proc/meminfo` text, in bytes.
fn parse_meminfo(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// What the cgroups of a process (its `/proc/self/cgroup` text) leave it: the least, over
/// its group and every group above it, of the limit minus the usage (inactive file cache
/// counted as free); `None` without a limit. `read` reads a file under `/sys/fs/cgroup`.
fn cgroup_available(groups: &str, read: &dyn Fn(&str) -> Option<String>) -> Option<u64> {
    let number = |text: Option<String>| text.and_then(|t| t.trim().parse::<u64>().ok());
    let stat = |text: Option<String>, key: &str| {
        text.and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix(key)?.trim().parse::<u64>().ok())
        })
    };
    let mut least: Option<u64> = None;
    for line in groups.lines() {
        let mut fields = line.splitn(3, ':');
        let (_, controllers, path) = (fields.next(), fields.next(), fields.next());
        let (Some(controllers), Some(path)) = (controllers, path) else {
            continue;
        };
        // v2: "0::/path"; v1: "N:memory:/path" (possibly with other controllers).
        let (root, limit_file, usage_file, inactive_key) = if controllers.is_empty() {
            (
                "/sys/fs/cgroup",
                "memory.max",
                "memory.current",
                "inactive_file ",
            )
        } else if controllers.split(',').any(|c| c == "memory") {
            (
                "/sys/fs/cgroup/memory",
                "memory.limit_in_bytes",
                "memory.usage_in_bytes",
                "total_inactive_file ",
            )
        } else {
            continue;
        };
        let mut dir = path.trim_end_matches('/').to_string();
        loop {
            let at = |file: &str| read(&format!("{root}{dir}/{file}"));
            // "max" (v2) or a huge number (v1) means no limit.
            if let Some(limit) = number(at(limit_file)).filter(|&l| l < 1 << 60) {
                let usage = number(at(usage_file)).unwrap_or(0);
                let inactive = stat(at("memory.stat"), inactive_key).unwrap_or(0);
                let free = limit.saturating_sub(usage.saturating_sub(inactive));
                least = Some(least.map_or(free, |l| l.min(free)));
            }
            match dir.rfind('/') {
                Some(cut) if !dir.is_empty() => dir.truncate(cut),
                _ => break,
            }
        }
    }
    least
}

/// Keeps freed multi-megabyte buffers on the heap for reuse if `reuse`
/// (`flex_kernels::allocator::reuse_large_allocations`: glibc only, +3–6% CPU training
/// speed; a process-wide setting, so only binaries call it, first thing in `main`).
/// Returns whether the setting took effect (never without the `flex` feature, which
/// brings flex-kernels).
pub fn reuse_large_allocations(reuse: bool) -> bool {
    #[cfg(feature = "flex")]
    return dcgan_core::flex_kernels::allocator::reuse_large_allocations(reuse);
    #[cfg(not(feature = "flex"))]
    {
        let _ = reuse;
        false
    }
}

/// The environment a child process (the benches' PyTorch peer) needs to allocate as this
/// one does after [`reuse_large_allocations`]
/// (`flex_kernels::allocator::child_env`; nothing without the `flex` feature or without
/// the reuse).
pub fn child_allocator_env() -> &'static [(&'static str, &'static str)] {
    #[cfg(feature = "flex")]
    return dcgan_core::flex_kernels::allocator::child_env();
    #[cfg(not(feature = "flex"))]
    &[]
}

/// Gives the heap's free memory back to the system now
/// (`flex_kernels::allocator::release_free_memory`; nothing without the `flex` feature):
/// between measurements of several configurations in one process, so that what an earlier
/// one freed does not count as the next one's resident memory.
pub fn release_free_memory() {
    #[cfg(feature = "flex")]
    dcgan_core::flex_kernels::allocator::release_free_memory();
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn sizes_parse_in_binary_units() {
        assert_eq!(parse_size("17179869184"), Some(16 << 30));
        assert_eq!(parse_size("512M"), Some(512 << 20));
        assert_eq!(parse_size("8G"), Some(8 << 30));
        assert_eq!(parse_size("8 GiB"), Some(8 << 30));
        assert_eq!(parse_size("1.5t"), Some(3 << 39));
        assert_eq!(parse_size("64KiB"), Some(64 << 10));
        for bad in ["off", "", "lots", "-1G", "8X"] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_environment_decides_and_gpus_are_unknown_otherwise() {
        assert_eq!(
            available_memory_with(BackendKind::Cuda, Some("4G")),
            Some(4 << 30)
        );
        assert_eq!(available_memory_with(BackendKind::Flex, Some("off")), None);
        assert_eq!(available_memory_with(BackendKind::Wgpu, None), None);
        if cfg!(target_os = "linux") {
            let found = available_memory_with(BackendKind::Flex, None).expect("Linux reports it");
            assert!(found > 1 << 20, "{found}");
        }
    }

    #[test]
    fn meminfo_gives_mem_available_in_bytes() {
        let text =
            "MemTotal:       24000000 kB\nMemFree:         1000 kB\nMemAvailable:   20000000 kB\n";
        assert_eq!(parse_meminfo(text), Some(20_000_000 * 1024));
        assert_eq!(parse_meminfo("MemTotal: 5 kB\n"), None);
    }

    #[test]
    fn cgroup_limits_count_from_the_process_group_up() {
        let files: HashMap<&str, &str> = [
            ("/sys/fs/cgroup/a/b/memory.max", "max\n"),
            ("/sys/fs/cgroup/a/memory.max", "4294967296\n"),
            ("/sys/fs/cgroup/a/memory.current", "3221225472\n"),
            (
                "/sys/fs/cgroup/a/memory.stat",
                "anon 1\ninactive_file 1073741824\nfile 5\n",
            ),
            ("/sys/fs/cgroup/memory.max", "max\n"),
        ]
        .into_iter()
        .collect();
        let read = |path: &str| files.get(path).map(|s| s.to_string());
        // 4 GiB limit − (3 GiB used − 1 GiB inactive cache) = 2 GiB.
        assert_eq!(cgroup_available("0::/a/b\n", &read), Some(2 << 30));
        assert_eq!(cgroup_available("0::/\n", &read), None);

        let v1: HashMap<&str, &str> = [
            (
                "/sys/fs/cgroup/memory/job/memory.limit_in_bytes",
                "1073741824",
            ),
            (
                "/sys/fs/cgroup/memory/job/memory.usage_in_bytes",
                "536870912",
            ),
            (
                "/sys/fs/cgroup/memory/memory.limit_in_bytes",
                "9223372036854771712",
            ),
        ]
        .into_iter()
        .collect();
        let read = |path: &str| v1.get(path).map(|s| s.to_string());
        assert_eq!(
            cgroup_available("5:cpu,cpuacct:/job\n4:memory:/job\n", &read),
            Some(512 << 20)
        );
    }
}
