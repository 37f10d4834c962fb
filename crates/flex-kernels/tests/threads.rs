//! `flex_kernels::threads`, in a test binary of its own: rayon's global pool is
//! process-wide, and this is the only test here, so nothing has built it before.

use std::sync::atomic::{AtomicUsize, Ordering};

use flex_kernels::threads::{global_pool_threads, join_global_pool};
use rayon::prelude::*;

#[test]
fn the_calling_thread_becomes_worker_zero() {
    if global_pool_threads() < 2 {
        // One thread: the pool is left alone.
        assert!(!join_global_pool());
        return;
    }
    assert!(join_global_pool(), "the global pool already existed");
    assert_eq!(rayon::current_thread_index(), Some(0));
    assert_eq!(rayon::current_num_threads(), global_pool_threads());
    // A parallel loop started here runs partly on this thread (rayon's join runs its
    // first half on the thread that calls it), and its result is whole.
    let on_caller = AtomicUsize::new(0);
    let sum: usize = (0..100_000usize)
        .into_par_iter()
        .with_min_len(1_000)
        .map(|i| {
            if rayon::current_thread_index() == Some(0) {
                on_caller.fetch_add(1, Ordering::Relaxed);
            }
            i
        })
        .sum();
    assert_eq!(sum, 100_000 * 99_999 / 2);
    assert!(
        on_caller.into_inner() > 0,
        "the calling thread did none of the work"
    );
    // Work handed to the pool by another thread still runs (on the other workers).
    let from_elsewhere = std::thread::spawn(|| (0..1_000usize).into_par_iter().sum::<usize>())
        .join()
        .unwrap();
    assert_eq!(from_elsewhere, 1_000 * 999 / 2);
    // A second call changes nothing.
    assert!(!join_global_pool());
}
