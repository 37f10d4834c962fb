//! Opt-in timing of the fast path's pieces, for finding where a step's time goes.
//!
//! Off by default; [`enable`] switches it on for the whole process (it is a profiling aid,
//! not a setting: nothing computes differently). While on, every piece of every fast
//! layer (layout changes, forward, backward, per layer shape) adds its wall time to a
//! total read with [`take`], and every GEMM, window gather (`im2col`) and scatter
//! (`col2im`) adds its time on whichever thread ran it to a total read with
//! [`take_threads`]. Off, it costs one relaxed atomic load per piece.
//!
//! ```
//! flex_kernels::profile::enable(true);
//! // ... run some training steps on flex ...
//! for (piece, seconds, calls) in flex_kernels::profile::take() {
//!     println!("{seconds:.3} s  x{calls}  {piece}");
//! }
//! flex_kernels::profile::enable(false);
//! ```

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Instant;

static ENABLED: AtomicBool = AtomicBool::new(false);
static TOTALS: Mutex<BTreeMap<String, (f64, u64)>> = Mutex::new(BTreeMap::new());
static THREADS: Mutex<BTreeMap<&'static str, (f64, f64)>> = Mutex::new(BTreeMap::new());

/// Switches the timing on or off for the whole process (off at start). The totals taken
/// so far stay until read.
pub fn enable(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Whether the timing is on (see [`enable`]).
pub fn is_enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Runs `f`; when profiling is on, times it and lets `add` fold the seconds into
/// `totals[key()]` (the one place both kinds of totals are taken).
fn measure<K: Ord, V: Default, T>(
    totals: &Mutex<BTreeMap<K, V>>,
    key: impl FnOnce() -> K,
    f: impl FnOnce() -> T,
    add: impl FnOnce(&mut V, f64),
) -> T {
    if !is_enabled() {
        return f();
    }
    let t = Instant::now();
    let out = f();
    let dt = t.elapsed().as_secs_f64();
    let mut totals = totals.lock().unwrap_or_else(|e| e.into_inner());
    add(totals.entry(key()).or_default(), dt);
    out
}

/// Runs `f`, adding its wall time to `label()`'s total when profiling is on.
pub(crate) fn timed<T>(label: impl FnOnce() -> String, f: impl FnOnce() -> T) -> T {
    measure(&TOTALS, label, f, |(secs, calls): &mut (f64, u64), dt| {
        *secs += dt;
        *calls += 1;
    })
}

/// Runs `f` (a GEMM, a gather, a scatter) on whichever thread calls it, adding its
/// time and `flops` to `kind`'s thread-time total: summed over threads, so the GEMMs'
/// own rate can be compared with the pieces' wall time.
pub(crate) fn thread_timed<T>(kind: &'static str, flops: f64, f: impl FnOnce() -> T) -> T {
    measure(
        &THREADS,
        || kind,
        f,
        |(secs, work): &mut (f64, f64), dt| {
            *secs += dt;
            *work += flops;
        },
    )
}

/// Wall time spent in each piece of the fast path since the last call, slowest first:
/// `(piece, seconds, calls)`; resets the totals. Empty unless [`enable`]d.
pub fn take() -> Vec<(String, f64, u64)> {
    let mut totals = TOTALS.lock().unwrap_or_else(|e| e.into_inner());
    let mut v: Vec<_> = std::mem::take(&mut *totals)
        .into_iter()
        .map(|(k, (t, n))| (k, t, n))
        .collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1));
    v
}

/// Thread time spent in the GEMMs, window gathers (`im2col`) and scatters (`col2im`)
/// since the last call, summed over threads: `(kind, seconds, flops)`; resets the totals.
/// Empty unless [`enable`]d.
pub fn take_threads() -> Vec<(String, f64, f64)> {
    let mut totals = THREADS.lock().unwrap_or_else(|e| e.into_inner());
    std::mem::take(&mut *totals)
        .into_iter()
        .map(|(k, (t, f))| (k.to_string(), t, f))
        .collect()
}
