//! Memory allocator settings that make CPU training faster.
//!
//! A training step allocates and frees many buffers of a few megabytes (activations,
//! window matrices, gradients). glibc's `malloc` serves every block over its mmap
//! threshold (128 KiB at first, adjusted up to 32 MiB as blocks are freed) with a fresh
//! `mmap` and returns it with `munmap`, so the kernel hands out, faults in and zeroes new
//! pages for the same buffers every step. [`reuse_large_allocations`] keeps every block on
//! the heap instead, where freed memory is reused: the kernel time of a 64 px step halves
//! and the step gets ~5% faster here (catgan's `docs/performance.md`, change 4), and the
//! FID Inception, whose first maps are 44–88 MB at batch 16, faults in 3.5 times fewer
//! pages and runs 13–17% faster when page faults are slow on this machine (change 17).
//! The price: the process keeps its peak heap instead of returning it to the system,
//! which a training process reaches every step anyway. It helps any CPU backend, not only
//! flex.
//!
//! A process-wide setting, so the library never applies it by itself: call
//! [`reuse_large_allocations`] at the start of your own `main` if you train on the CPU,
//! with `false` to keep glibc's defaults (for comparisons; the binary decides, from a flag
//! for instance).

/// glibc's largest mmap threshold on 64-bit targets, which [`reuse_large_allocations`]
/// also sets (in case a later `mallopt` lets `mmap` serve blocks again): blocks up to
/// this size would come from the heap even then.
pub const HEAP_BLOCK_LIMIT: usize = 32 << 20;

/// With `reuse`, tells glibc to serve every block from the heap (no `mmap` per block;
/// the mmap threshold at [`HEAP_BLOCK_LIMIT`] as well) and not to give freed heap memory
/// back to the system; without, leaves the allocator as it is. Returns whether the
/// settings took effect (always `false` without `reuse`, and off glibc: other allocators
/// reuse memory their own way).
///
/// Blocks over 32 MiB used to get a fresh `mmap` each time even so (glibc caps the
/// threshold there): the FID Inception's 44–88 MB maps at batch 16 were faulted in anew
/// for every batch. glibc still falls back to `mmap` if the heap cannot grow.
pub fn reuse_large_allocations(reuse: bool) -> bool {
    if !reuse {
        return false;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only changes glibc's allocation policy; it is safe to call at
        // any time, also with allocations outstanding.
        let applied = unsafe {
            let threshold = libc::mallopt(libc::M_MMAP_THRESHOLD, HEAP_BLOCK_LIMIT as libc::c_int);
            let trim = libc::mallopt(libc::M_TRIM_THRESHOLD, libc::c_int::MAX);
            let no_mmap = libc::mallopt(libc::M_MMAP_MAX, 0);
            threshold == 1 && trim == 1 && no_mmap == 1
        };
        REUSING.store(applied, std::sync::atomic::Ordering::Relaxed);
        applied
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Whether [`reuse_large_allocations`] took effect in this process.
static REUSING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// [`reuse_large_allocations`]'s settings as glibc's environment variables, for another
/// process (its `mallopt` calls have no effect across `exec`).
pub const REUSE_ENV: [(&str, &str); 3] = [
    ("MALLOC_MMAP_THRESHOLD_", "33554432"),
    ("MALLOC_TRIM_THRESHOLD_", "2147483647"),
    ("MALLOC_MMAP_MAX_", "0"),
];

/// The environment a child process needs to allocate as this one does: [`REUSE_ENV`]
/// once [`reuse_large_allocations`] took effect here, else nothing. The benches give it
/// to the PyTorch peer they time: with glibc's defaults PyTorch faulted in its large
/// blocks anew every step (1.6 million page faults for 80 Inception images against 0.2
/// million), which made it up to 25% slower and erratic on this project's virtual
/// machines, and a comparison should not hinge on an allocator setting that either side
/// can make.
pub fn child_env() -> &'static [(&'static str, &'static str)] {
    if REUSING.load(std::sync::atomic::Ordering::Relaxed) {
        &REUSE_ENV
    } else {
        &[]
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

    /// Whether glibc served `block` (a page multiple long) with its own `mmap`: such a
    /// chunk is rounded up to whole pages, so a page more than asked is usable, where a
    /// heap chunk adds only its 16-byte alignment.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn mmapped(block: &[u8]) -> bool {
        // SAFETY: `block` is a live allocation of the global allocator, which is glibc's
        // malloc here.
        let usable = unsafe { libc::malloc_usable_size(block.as_ptr() as *mut libc::c_void) };
        usable - block.len() > 64
    }

    #[test]
    fn glibc_accepts_the_settings() {
        // 40 MiB: over glibc's largest mmap threshold, within one heap of a thread arena.
        let large = HEAP_BLOCK_LIMIT + (8 << 20);
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        assert!(
            mmapped(&vec![1u8; large]),
            "glibc's default served a 40 MiB block from the heap: the check below proves nothing"
        );
        assert!(
            !reuse_large_allocations(false),
            "applied without being asked"
        );
        assert!(
            child_env().is_empty(),
            "a child told to reuse before this process does"
        );
        let applied = reuse_large_allocations(true);
        assert_eq!(applied, cfg!(all(target_os = "linux", target_env = "gnu")));
        // A child gets the same settings, exactly those of the `mallopt` calls.
        if applied {
            assert_eq!(child_env(), &REUSE_ENV);
        }
        assert_eq!(REUSE_ENV[0].1, HEAP_BLOCK_LIMIT.to_string());
        assert_eq!(REUSE_ENV[1].1, i32::MAX.to_string());
        // Allocation still works both below and above the limit afterwards, and the large
        // block now comes from the heap (reused once freed, not faulted in anew).
        let small = vec![1u8; HEAP_BLOCK_LIMIT / 2];
        let large = vec![2u8; large];
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        assert!(!mmapped(&large), "a 40 MiB block still got its own mmap");
        assert_eq!(
            small[small.len() - 1] as usize + large[large.len() - 1] as usize,
            3
        );
    }
}
