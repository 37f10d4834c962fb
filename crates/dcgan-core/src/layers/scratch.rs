//! Working buffers that live on each thread and are reused from call to call.
//!
//! The convolutions need large temporary matrices (window rows, their gradients, partial
//! weight gradients) in every group of every call. Allocating them with `vec![0.0; n]`
//! zeroes megabytes that the gather or the GEMM then overwrites: `memset` was 5–6% of a
//! training step's CPU time (docs/performance.md, change 6). Here each thread keeps the
//! buffers it has used and hands them out again as they are.

use std::cell::RefCell;

thread_local! {
    /// Buffers this thread has finished with, ready for the next request.
    static FREE: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on a buffer of `len` floats whose contents are left over from earlier use
/// (zero only where the buffer grew): `f` must write every element before reading it.
///
/// Calls may nest; each gets its own buffer. A thread keeps as many buffers as it ever
/// used at once, each as large as the largest request it served.
pub(crate) fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    let mut buffer = FREE
        .with(|free| {
            let mut free = free.borrow_mut();
            // The largest free buffer: requests of different sizes then grow one buffer
            // each instead of all of them.
            let largest = (0..free.len()).max_by_key(|&i| free[i].len())?;
            Some(free.swap_remove(largest))
        })
        .unwrap_or_default();
    if buffer.len() < len {
        buffer.resize(len, 0.0);
    }
    let result = f(&mut buffer[..len]);
    FREE.with(|free| free.borrow_mut().push(buffer));
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_requests_get_distinct_buffers_of_the_asked_length() {
        with_scratch(10, |outer| {
            outer.fill(1.0);
            with_scratch(20, |inner| {
                assert_eq!(inner.len(), 20);
                inner.fill(2.0);
            });
            assert!(
                outer.iter().all(|&v| v == 1.0),
                "inner call wrote the outer buffer"
            );
            assert_eq!(outer.len(), 10);
        });
    }

    #[test]
    fn a_buffer_is_reused_without_growing_again() {
        let first = with_scratch(1000, |b| b.as_ptr() as usize);
        let second = with_scratch(500, |b| b.as_ptr() as usize);
        assert_eq!(first, second, "the free buffer was not handed out again");
    }
}
