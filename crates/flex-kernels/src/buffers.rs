//! Buffers without a serial `memset`: working buffers that live on each thread and are
//! reused from call to call ([`with_scratch`]), and outputs built by the worker threads
//! ([`par_vec`], zeroed chunk by chunk; [`par_vec_uninit`], not zeroed at all, for kernels
//! that write every element).
//!
//! The convolutions need large temporary matrices (window rows, their gradients, partial
//! weight gradients) in every group of every call, and every layer a new output.
//! Allocating them with `vec![0.0; n]` zeroes megabytes that the gather or the GEMM then
//! overwrites: `memset` was 5–6% of a training step's CPU time, most of it on the calling
//! thread while the other core waited (docs/performance.md, change 6). Zeroing in parallel
//! still cost 5% of a step where the kernel overwrote every element anyway (change 15).

use std::cell::RefCell;
use std::mem::MaybeUninit;

use rayon::prelude::*;

/// Floats not written yet: what the `*_uninit` vectors hand to the kernels that write
/// them whole.
pub(crate) type Uninit = [MaybeUninit<f32>];

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

/// A vector of `len` floats made by the worker threads, chunk by chunk: chunk `i` (`chunk`
/// elements, the last one shorter) is zeroed by the thread that then runs `fill(i, chunk)`
/// on it. The zeroing is spread over the threads and happens in cache right before the
/// kernel writes the same memory, instead of in one serial pass over cold memory.
pub(crate) fn par_vec(
    len: usize,
    chunk: usize,
    fill: impl Fn(usize, &mut [f32]) + Sync + Send,
) -> Vec<f32> {
    par_vec_tiled(len, chunk, &[0.0], fill)
}

/// [`par_vec`] whose chunks start as `tile` repeated from each chunk's start instead of
/// zeros (a bias per output row, which a GEMM then adds to): one pass fewer over the
/// output. A chunk length that is a multiple of the tile's keeps the tiling aligned.
pub(crate) fn par_vec_tiled(
    len: usize,
    chunk: usize,
    tile: &[f32],
    fill: impl Fn(usize, &mut [f32]) + Sync + Send,
) -> Vec<f32> {
    assert!(!tile.is_empty(), "an empty tile");
    // SAFETY: every element of every chunk is written before `fill` sees it.
    unsafe {
        par_vec_uninit(len, chunk, |i, part| {
            match tile {
                // One value (the zeros of `par_vec`): a plain fill.
                [v] => part.fill(MaybeUninit::new(*v)),
                _ => {
                    for run in part.chunks_mut(tile.len()) {
                        for (slot, &v) in run.iter_mut().zip(tile) {
                            slot.write(v);
                        }
                    }
                }
            }
            fill(i, assume_init(part));
        })
    }
}

/// [`par_vec`] without the zeroing, for kernels that write every element of their
/// output (elementwise maps, transposes, `col2im`): `fill(i, chunk)` gets chunk `i`
/// uninitialised. The zeroing pass cost about 5% of a seed128 base 16 training step
/// (docs/performance.md, change 15).
///
/// # Safety
/// `fill` must initialise every element of every chunk it is given.
pub(crate) unsafe fn par_vec_uninit(
    len: usize,
    chunk: usize,
    fill: impl Fn(usize, &mut Uninit) + Sync + Send,
) -> Vec<f32> {
    // SAFETY: the caller's promise.
    let [out] = unsafe { par_vecs_uninit(len, chunk, |i, [part]| fill(i, part)) };
    out
}

/// [`par_vec_uninit`] for `N` vectors made together: `fill(i, parts)` gets chunk `i` of
/// each.
///
/// # Safety
/// `fill` must initialise every element of every chunk it is given.
pub(crate) unsafe fn par_vecs_uninit<const N: usize>(
    len: usize,
    chunk: usize,
    fill: impl Fn(usize, [&mut Uninit; N]) + Sync + Send,
) -> [Vec<f32>; N] {
    // SAFETY: the caller's promise.
    unsafe { par_vecs_uninit_at(&chunk_ends(len, chunk), fill) }
}

/// Where the chunks of `chunk` elements (the last one shorter) of `len` elements end.
fn chunk_ends(len: usize, chunk: usize) -> Vec<usize> {
    let chunk = chunk.max(1);
    (1..=len.div_ceil(chunk))
        .map(|i| (i * chunk).min(len))
        .collect()
}

/// [`par_vec_uninit`] with chunks of any length: chunk `i` ends at `ends[i]` (increasing;
/// the last is the vector's length).
///
/// # Safety
/// `fill` must initialise every element of every chunk it is given.
pub(crate) unsafe fn par_vec_split_uninit(
    ends: &[usize],
    fill: impl Fn(usize, &mut Uninit) + Sync + Send,
) -> Vec<f32> {
    // SAFETY: the caller's promise.
    let [out] = unsafe { par_vecs_uninit_at(ends, |i, [part]| fill(i, part)) };
    out
}

/// The one place the vectors above are built: `N` vectors cut at `ends`, chunk `i` of
/// each handed uninitialised to `fill(i, chunks)` on a worker thread.
///
/// # Safety
/// `fill` must initialise every element of every chunk it is given.
unsafe fn par_vecs_uninit_at<const N: usize>(
    ends: &[usize],
    fill: impl Fn(usize, [&mut Uninit; N]) + Sync + Send,
) -> [Vec<f32>; N] {
    let len = ends.last().copied().unwrap_or(0);
    let mut outs: [Vec<f32>; N] = std::array::from_fn(|_| Vec::with_capacity(len));
    {
        let mut columns: Vec<_> = outs
            .iter_mut()
            .map(|out| {
                let mut rest = &mut out.spare_capacity_mut()[..len];
                let mut start = 0;
                let mut chunks = Vec::with_capacity(ends.len());
                for &end in ends {
                    let (chunk, tail) = rest.split_at_mut(end - start);
                    chunks.push(chunk);
                    (rest, start) = (tail, end);
                }
                chunks.into_iter()
            })
            .collect();
        let tasks: Vec<[&mut Uninit; N]> = (0..ends.len())
            .map(|_| std::array::from_fn(|j| columns[j].next().expect("one chunk per task")))
            .collect();
        tasks
            .into_par_iter()
            .enumerate()
            .for_each(|(i, parts)| fill(i, parts));
    }
    for out in &mut outs {
        // SAFETY: the chunks cover the first `len` elements of every output, each
        // initialised by `fill` (the caller's promise; a panicking `fill` unwinds past
        // this line).
        unsafe { out.set_len(len) };
    }
    outs
}

/// `part` as the floats it holds.
///
/// # Safety
/// Every element of `part` must be initialised.
pub(crate) unsafe fn assume_init(part: &mut Uninit) -> &mut [f32] {
    // SAFETY: the caller's promise, and `MaybeUninit<f32>` has the layout of `f32`.
    unsafe { &mut *(part as *mut Uninit as *mut [f32]) }
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
    fn parallel_vectors_hand_each_chunk_to_fill_once() {
        let v = par_vec(10, 4, |i, part| {
            assert!(part.iter().all(|&x| x == 0.0), "chunk {i} not zeroed");
            for (j, x) in part.iter_mut().enumerate() {
                *x = (i * 100 + j) as f32;
            }
        });
        let expected = [0., 1., 2., 3., 100., 101., 102., 103., 200., 201.];
        assert_eq!(v, expected);
        assert!(par_vec(0, 4, |_, _| panic!("no chunks")).is_empty());
        // SAFETY: both chunks are filled whole.
        let [a, b] = unsafe {
            par_vecs_uninit(5, 2, |i, [a, b]| {
                a.fill(MaybeUninit::new(i as f32));
                b.fill(MaybeUninit::new(-(i as f32)));
            })
        };
        assert_eq!(
            (a, b),
            (vec![0., 0., 1., 1., 2.], vec![-0., -0., -1., -1., -2.])
        );
    }

    #[test]
    fn tiled_vectors_start_each_chunk_with_the_tile() {
        let v = par_vec_tiled(8, 4, &[1.0, 2.0], |i, part| {
            assert_eq!(part, [1.0, 2.0, 1.0, 2.0], "chunk {i}");
            part[0] += 10.0 * i as f32;
        });
        assert_eq!(v, [1., 2., 1., 2., 11., 2., 1., 2.]);
    }

    #[test]
    fn uninitialised_vectors_keep_what_fill_writes() {
        // SAFETY: every fill writes its whole chunk.
        let v = unsafe {
            par_vec_uninit(10, 4, |i, part| {
                for (j, x) in part.iter_mut().enumerate() {
                    x.write((i * 100 + j) as f32);
                }
            })
        };
        assert_eq!(v, [0., 1., 2., 3., 100., 101., 102., 103., 200., 201.]);
        // SAFETY: as above.
        let v = unsafe {
            par_vec_split_uninit(&[1, 1, 4], |i, part| part.fill(MaybeUninit::new(i as f32)))
        };
        assert_eq!(v, [0., 2., 2., 2.]);
        // SAFETY: no chunks.
        let none = unsafe { par_vec_split_uninit(&[], |_, _| panic!("no chunks")) };
        assert!(none.is_empty());
    }

    #[test]
    fn a_buffer_is_reused_without_growing_again() {
        let first = with_scratch(1000, |b| b.as_ptr() as usize);
        let second = with_scratch(500, |b| b.as_ptr() as usize);
        assert_eq!(first, second, "the free buffer was not handed out again");
    }
}
