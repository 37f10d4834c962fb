//! Memory allocator settings that make CPU training faster.
//!
//! A training step allocates and frees many buffers of a few megabytes (activations,
//! window matrices, gradients). glibc's `malloc` serves every block over its mmap
//! threshold (128 KiB at first, adjusted up to 32 MiB as blocks are freed) with a fresh
//! `mmap` and returns it with `munmap`, so the kernel hands out, faults in and zeroes new
//! pages for the same buffers every step. [`reuse_large_allocations`] keeps blocks up to
//! 32 MiB on the heap instead, where freed memory is reused: the kernel time of a 64 px
//! step halves and the step gets ~5% faster here (catgan's `docs/performance.md`, change
//! 4). The price: the process keeps its peak heap instead of returning it to the system,
//! which a training process reaches every step anyway. It helps any CPU backend, not only
//! flex.
//!
//! A process-wide setting, so the library never applies it by itself: call
//! [`reuse_large_allocations`] at the start of your own `main` if you train on the CPU,
//! with `false` to keep glibc's defaults (for comparisons; the binary decides, from a flag
//! for instance).

/// Blocks up to this size are served from the heap (glibc's largest mmap threshold on
/// 64-bit targets).
pub const HEAP_BLOCK_LIMIT: usize = 32 << 20;

/// With `reuse`, tells glibc to serve blocks up to [`HEAP_BLOCK_LIMIT`] from the heap and
/// not to give freed heap memory back to the system; without, leaves the allocator as it
/// is. Returns whether the settings took effect (always `false` without `reuse`, and off
/// glibc: other allocators reuse memory their own way).
pub fn reuse_large_allocations(reuse: bool) -> bool {
    if !reuse {
        return false;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only changes glibc's allocation policy; it is safe to call at
        // any time, also with allocations outstanding.
        unsafe {
            let threshold = libc::mallopt(libc::M_MMAP_THRESHOLD, HEAP_BLOCK_LIMIT as libc::c_int);
            let trim = libc::mallopt(libc::M_TRIM_THRESHOLD, libc::c_int::MAX);
            threshold == 1 && trim == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Gives the heap's free memory back to the system now (glibc's `malloc_trim`; elsewhere
/// nothing): with [`reuse_large_allocations`] on, freed memory otherwise stays resident
/// for the life of the process. Returns whether any memory was released.
pub fn release_free_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap pages to the system; it is safe to call
    // at any time.
    unsafe {
        libc::malloc_trim(0) == 1
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glibc_accepts_the_settings() {
        assert!(
            !reuse_large_allocations(false),
            "applied without being asked"
        );
        let applied = reuse_large_allocations(true);
        assert_eq!(applied, cfg!(all(target_os = "linux", target_env = "gnu")));
        // Allocation still works both below and above the limit afterwards.
        let small = vec![1u8; HEAP_BLOCK_LIMIT / 2];
        let large = vec![2u8; HEAP_BLOCK_LIMIT * 2];
        assert_eq!(
            small[small.len() - 1] as usize + large[large.len() - 1] as usize,
            3
        );
    }
}
