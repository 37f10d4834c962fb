//! The calling thread as one of rayon's workers.
//!
//! flex and the fast path run their parallel loops on rayon's global pool, whose threads
//! are its own: a program's main thread is not one of them. Every parallel loop the main
//! thread starts is then handed over through the pool's shared queue, a sleeping worker is
//! woken to take it, and the main thread sleeps until the loop is done and it is woken in
//! turn — hundreds of times in a training step, each a pair of system calls, while one of
//! the pool's threads waits for work that the main thread could have started itself.
//! [`join_global_pool`] builds the global pool with the calling thread as its first
//! worker (and one thread fewer of its own): a loop then starts on the calling thread's
//! own queue, it works on the loop itself, and the other workers steal from it. −5% of a
//! 64 px training step on 2 cores (catgan's `docs/performance.md`, change 15).
//!
//! A process-wide setting, so the library never applies it by itself: call
//! [`join_global_pool`] at the start of your own `main`, before anything uses rayon, on
//! the thread that will run the training or inference. Do not call it from a thread that
//! then waits for other threads' parallel work (a server's accept loop, a coordinator):
//! that work would get one thread fewer.

/// The threads rayon's global pool has or will have: `RAYON_NUM_THREADS` if set to a
/// positive number, else one per CPU (rayon's own rule).
pub fn global_pool_threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Builds rayon's global pool with [`global_pool_threads`] threads, the calling thread
/// the first of them. Returns whether it did: not when the global pool already exists
/// (something used rayon before), and not for a pool of one thread, where work that other
/// threads hand to the pool (a data loader's, say) would wait until the calling thread
/// next runs a parallel loop.
pub fn join_global_pool() -> bool {
    let threads = global_pool_threads();
    threads >= 2
        && rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .use_current_thread()
            .build_global()
            .is_ok()
}
