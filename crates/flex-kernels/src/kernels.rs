//! Plain-slice CPU kernels behind the flex fast path, all on channels-last ("NHWC")
//! data: a batch of feature maps is a row-major matrix `[positions, channels]`.
//!
//! - [`im2col_lines`] gathers each window of a map into a row (`[ky, kx, c]`),
//!   [`col2im_lines`] sums the rows back onto the map (its adjoint, after
//!   [`col2im_init`]); both move whole channel vectors, for any range of grid lines.
//! - [`gemm`] is the matrix product (the `gemm` crate, which flex itself uses); with
//!   positions as rows, the long dimension of every product is the one `gemm` handles
//!   best (measured in `docs/performance.md`).
//! - Batch norm + leaky ReLU forward and backward, layout transposes, weight reordering.
//!
//! Everything is deterministic: work is split in fixed blocks (never by thread count)
//! and partial sums are combined in a fixed order.

use rayon::prelude::*;

use std::mem::MaybeUninit;

use crate::buffers::{assume_init, par_vec, par_vec_uninit, with_scratch, Uninit};
use crate::wide::wide;

/// How a `kh × kw` window with stride `(sh, sw)` and top/left padding `(ph, pw)` sweeps a
/// "big" map of `c` channels and `hb × wb` positions, visiting an `hs × ws` grid.
///
/// For a convolution the big map is the input and the grid is the output; for a
/// transposed convolution it is the other way round (the big map is the output).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Window {
    /// Channels of the big map.
    pub c: usize,
    /// Height of the big map.
    pub hb: usize,
    /// Width of the big map.
    pub wb: usize,
    /// Height of the grid of window positions.
    pub hs: usize,
    /// Width of the grid of window positions.
    pub ws: usize,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// Vertical stride.
    pub sh: usize,
    /// Horizontal stride.
    pub sw: usize,
    /// Top padding.
    pub ph: usize,
    /// Left padding.
    pub pw: usize,
}

impl Window {
    /// Length of one window row: `kh · kw · c`, ordered `(ky, kx, c)`.
    pub fn k(&self) -> usize {
        self.kh * self.kw * self.c
    }

    /// Whether each window is one pixel of the big map, all of them in order (a 1×1
    /// kernel, stride 1, no padding): the window matrix is the map itself.
    pub fn is_pointwise(&self) -> bool {
        (self.kh, self.kw, self.sh, self.sw, self.ph, self.pw) == (1, 1, 1, 1, 0, 0)
            && (self.hs, self.ws) == (self.hb, self.wb)
    }

    /// Window positions per image, `hs · ws`.
    pub fn grid(&self) -> usize {
        self.hs * self.ws
    }

    /// Positions of one big map, `hb · wb`.
    pub fn big(&self) -> usize {
        self.hb * self.wb
    }

    /// The window of a convolution of `c` channels on an `hb × wb` map with a `k × k`
    /// kernel, stride `s` and padding `p` on every side, with the output grid `Conv2d`
    /// gives.
    #[cfg(test)]
    pub fn of_conv(c: usize, (hb, wb): (usize, usize), k: usize, s: usize, p: usize) -> Self {
        Window {
            c,
            hb,
            wb,
            hs: (hb + 2 * p - k) / s + 1,
            ws: (wb + 2 * p - k) / s + 1,
            kh: k,
            kw: k,
            sh: s,
            sw: s,
            ph: p,
            pw: p,
        }
    }
}

/// The channel count of a map, either fixed at compile time ([`Fixed`]) or not
/// ([`AnyChannels`]). The window kernels are generic over it so that the moves and sums of
/// one position's few channels (3 for images) compile to straight-line code instead of
/// calls to `memcpy` and short loops.
trait Channels: Copy {
    fn get(self) -> usize;
}

#[derive(Clone, Copy)]
struct Fixed<const C: usize>;

impl<const C: usize> Channels for Fixed<C> {
    #[inline(always)]
    fn get(self) -> usize {
        C
    }
}

#[derive(Clone, Copy)]
struct AnyChannels(usize);

impl Channels for AnyChannels {
    #[inline(always)]
    fn get(self) -> usize {
        self.0
    }
}

/// Calls `$kernel` with the window's channel count as a [`Channels`] value: fixed for
/// the image channels of the first and last layers and for the narrow hidden maps (16–64
/// channels: each tap's copy or sum then compiles to a few vector moves instead of a
/// `memmove` call per 64–256 bytes), dynamic otherwise.
macro_rules! with_channels {
    ($c:expr, $kernel:ident ( $($arg:expr),* )) => {
        match $c {
            1 => $kernel($($arg,)* Fixed::<1>),
            3 => $kernel($($arg,)* Fixed::<3>),
            16 => $kernel($($arg,)* Fixed::<16>),
            32 => $kernel($($arg,)* Fixed::<32>),
            64 => $kernel($($arg,)* Fixed::<64>),
            c => $kernel($($arg,)* AnyChannels(c)),
        }
    };
}

/// Gathers the windows of big maps `[n, hb, wb, c]` into rows `cols [n·hs·ws, kh·kw·c]`:
/// `cols[(image, oy, ox), (ky, kx, c)] = big[image, oy·sh + ky − ph, ox·sw + kx − pw, c]`
/// (zero over the padding). Overwrites all of `cols`.
#[cfg(test)]
pub(crate) fn im2col(w: &Window, big: &[f32], cols: &mut [f32]) {
    debug_assert_eq!(cols.len() / (w.grid() * w.k()), big.len() / (w.big() * w.c));
    im2col_lines(w, big, 0, cols)
}

/// [`im2col`] of part of the window rows: the grid lines (one grid row `oy` of one image
/// each, `ws` windows) from line `first` on, as many as `cols` holds.
pub(crate) fn im2col_lines(w: &Window, big: &[f32], first: usize, cols: &mut [f32]) {
    with_channels!(w.c, im2col_with(w, big, first, cols))
}

#[inline(always)]
fn im2col_with(w: &Window, big: &[f32], first: usize, cols: &mut [f32], ch: impl Channels) {
    let (k, c) = (w.k(), ch.get());
    let strip = w.kw * c;
    for (index, dst) in cols.chunks_mut(w.ws * k).enumerate() {
        let index = first + index;
        let (image, oy) = (index / w.hs, index % w.hs);
        let map = &big[image * w.big() * c..(image + 1) * w.big() * c];
        for (ox, row) in dst.chunks_exact_mut(k).enumerate() {
            // The window's first column; with stride 1 the kw taps of a window row are
            // one contiguous strip of the map when the window is inside it.
            let x0 = (ox * w.sw) as isize - w.pw as isize;
            let inside = x0 >= 0 && x0 as usize + w.kw <= w.wb;
            for ky in 0..w.kh {
                let iy = (oy * w.sh + ky) as isize - w.ph as isize;
                let taps = &mut row[ky * strip..(ky + 1) * strip];
                if iy < 0 || iy as usize >= w.hb {
                    taps.fill(0.0);
                    continue;
                }
                let line = &map[iy as usize * w.wb * c..(iy as usize + 1) * w.wb * c];
                if inside && w.sw == 1 {
                    let x0 = x0 as usize;
                    taps.copy_from_slice(&line[x0 * c..x0 * c + strip]);
                    continue;
                }
                for (kx, tap) in taps.chunks_exact_mut(c).enumerate() {
                    let ix = x0 + kx as isize;
                    if ix >= 0 && (ix as usize) < w.wb {
                        let ix = ix as usize;
                        tap.copy_from_slice(&line[ix * c..(ix + 1) * c]);
                    } else {
                        tap.fill(0.0);
                    }
                }
            }
        }
    }
}

/// The adjoint of [`im2col`]: every big-map position of `big [n, hb, wb, c]` becomes the
/// sum of the window rows that cover it, on top of `init[c]` (a bias) if given.
/// Initialises all of `big` (which may hold anything before) and returns it.
#[cfg(test)]
pub(crate) fn col2im<'a>(
    w: &Window,
    cols: &[f32],
    init: Option<&[f32]>,
    big: &'a mut Uninit,
) -> &'a mut [f32] {
    debug_assert_eq!(cols.len() / (w.grid() * w.k()), big.len() / (w.big() * w.c));
    let big = col2im_init(w, init, big);
    col2im_lines(w, cols, 0, big);
    big
}

/// The start of [`col2im`]: every position of `big` set to `init[c]` (a bias) if given,
/// else zero. Initialises all of `big` and returns it.
pub(crate) fn col2im_init<'a>(
    w: &Window,
    init: Option<&[f32]>,
    big: &'a mut Uninit,
) -> &'a mut [f32] {
    let c = w.c;
    for position in big.chunks_exact_mut(c) {
        match init {
            Some(init) => {
                for (slot, &v) in position.iter_mut().zip(&init[..c]) {
                    slot.write(v);
                }
            }
            None => position.fill(MaybeUninit::new(0.0)),
        }
    }
    assert_eq!(big.len() % c.max(1), 0, "whole positions");
    // SAFETY: every position (all of `big`, a whole number of them) was written above.
    unsafe { assume_init(big) }
}

/// The rest of [`col2im`] for part of the window rows: adds the rows of the grid lines
/// (one grid row `oy` of one image each, `ws` windows) from line `first` on, as many as
/// `cols` holds, onto `big`.
pub(crate) fn col2im_lines(w: &Window, cols: &[f32], first: usize, big: &mut [f32]) {
    with_channels!(w.c, col2im_with(w, cols, first, big))
}

/// A scatter: the window rows are read once, in order, and each row's taps are added onto
/// the image's map, which stays in cache (a gather per position would read `kh · kw`
/// rows of the window matrix at once, which does not). The order of the additions onto a
/// position is fixed by the shapes (windows in row-major order), never by threads.
#[inline(always)]
fn col2im_with(w: &Window, cols: &[f32], first: usize, big: &mut [f32], ch: impl Channels) {
    let (k, c) = (w.k(), ch.get());
    let strip = w.kw * c;
    for (index, line_cols) in cols.chunks_exact(w.ws * k).enumerate() {
        let index = first + index;
        let (image, oy) = (index / w.hs, index % w.hs);
        let map = &mut big[image * w.big() * c..(image + 1) * w.big() * c];
        for (ox, row) in line_cols.chunks_exact(k).enumerate() {
            let x0 = (ox * w.sw) as isize - w.pw as isize;
            let inside = x0 >= 0 && x0 as usize + w.kw <= w.wb;
            for ky in 0..w.kh {
                let iy = (oy * w.sh + ky) as isize - w.ph as isize;
                if iy < 0 || iy as usize >= w.hb {
                    continue;
                }
                let line = &mut map[iy as usize * w.wb * c..(iy as usize + 1) * w.wb * c];
                let taps = &row[ky * strip..(ky + 1) * strip];
                if inside && w.sw == 1 {
                    // The kw taps land on one contiguous strip of the line.
                    let x0 = x0 as usize;
                    let dst = &mut line[x0 * c..x0 * c + strip];
                    for j in 0..strip {
                        dst[j] += taps[j];
                    }
                    continue;
                }
                for (kx, tap) in taps.chunks_exact(c).enumerate() {
                    let ix = x0 + kx as isize;
                    if ix >= 0 && (ix as usize) < w.wb {
                        let ix = ix as usize;
                        let dst = &mut line[ix * c..(ix + 1) * c];
                        for j in 0..c {
                            dst[j] += tap[j];
                        }
                    }
                }
            }
        }
    }
}

/// Transposes each of `n` row-major `[rows, cols]` matrices (`src`) into `[cols, rows]`.
/// Channels-first ↔ channels-last: `[n, c, hw]` → `[n, hw, c]` is `(rows, cols) = (c, hw)`.
pub(crate) fn transpose_batch(src: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let per = rows * cols;
    const T: usize = 32;
    // One task per matrix, moved in `T × T` tiles.
    let row_blocks = rows.div_ceil(T);
    // SAFETY: each task writes all of its matrix (every `(r, cc)` below).
    unsafe {
        par_vec_uninit(src.len(), per, |i, d| {
            let s = &src[i * per..(i + 1) * per];
            wide!({
                for rb in 0..row_blocks {
                    let r0 = rb * T;
                    let r1 = (r0 + T).min(rows);
                    for c0 in (0..cols).step_by(T) {
                        let c1 = (c0 + T).min(cols);
                        for r in r0..r1 {
                            for cc in c0..c1 {
                                d[cc * rows + r].write(s[r * cols + cc]);
                            }
                        }
                    }
                }
            })
        })
    }
}

/// How a pooling window combines its taps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pool {
    /// The largest tap (padding never wins).
    Max,
    /// The mean of the taps inside the map (padding not counted).
    Average,
}

/// A pooling window over channels-last maps: `x` holds `[n, h, w, c]`, the result
/// `[n, hs, ws, c]` for the window `kernel` moved by `stride` over the map padded by
/// `padding` (top/bottom, left/right). One task per output row; every tap is a run of `c`
/// contiguous channels, and the taps of a window are combined in row-major order.
pub(crate) fn pool(
    x: &[f32],
    [n, h, w, c]: [usize; 4],
    [hs, ws]: [usize; 2],
    [kh, kw]: [usize; 2],
    [sh, sw]: [usize; 2],
    [ph, pw]: [usize; 2],
    kind: Pool,
) -> Vec<f32> {
    let taps = |o: usize, s: usize, p: usize, k: usize, size: usize| {
        let start = (o * s) as isize - p as isize;
        let lo = start.max(0) as usize;
        let hi = ((start + k as isize).max(0) as usize).min(size);
        lo..hi.max(lo)
    };
    par_vec(n * hs * ws * c, ws * c, |row, out| {
        let (image, oy) = (row / hs.max(1), row % hs.max(1));
        let map = &x[image * h * w * c..(image + 1) * h * w * c];
        let rows = taps(oy, sh, ph, kh, h);
        for (ox, o) in out.chunks_exact_mut(c.max(1)).enumerate() {
            let cols = taps(ox, sw, pw, kw, w);
            let mut count = 0usize;
            for iy in rows.clone() {
                for ix in cols.clone() {
                    let tap = &map[(iy * w + ix) * c..][..c];
                    match (kind, count) {
                        (_, 0) => o.copy_from_slice(tap),
                        (Pool::Max, _) => o.iter_mut().zip(tap).for_each(|(o, t)| *o = o.max(*t)),
                        (Pool::Average, _) => o.iter_mut().zip(tap).for_each(|(o, t)| *o += t),
                    }
                    count += 1;
                }
            }
            if kind == Pool::Average && count > 1 {
                let count = count as f32;
                o.iter_mut().for_each(|o| *o /= count);
            }
        }
    })
}

/// Channels-last maps joined along their channels: `parts` are `(data, channels)` of
/// maps with `pixels` pixels (`n · h · w`) each; the result has `[pixels, Σ channels]`.
pub(crate) fn cat_channels(parts: &[(&[f32], usize)], pixels: usize) -> Vec<f32> {
    let total: usize = parts.iter().map(|&(_, c)| c).sum();
    // About 64 KiB of output per task.
    let per_task = ((1usize << 14) / total.max(1)).max(1);
    par_vec(pixels * total, per_task * total, |i, out| {
        let first = i * per_task;
        for (p, row) in out.chunks_exact_mut(total.max(1)).enumerate() {
            let mut at = 0;
            for &(data, c) in parts {
                row[at..at + c].copy_from_slice(&data[(first + p) * c..][..c]);
                at += c;
            }
        }
    })
}

/// A read-only matrix operand of [`gemm`]: a slice and the strides of rows and columns.
#[derive(Clone, Copy)]
pub(crate) struct Mat<'a> {
    pub data: &'a [f32],
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a> Mat<'a> {
    /// A row-major matrix with `cols` columns.
    pub fn rows(data: &'a [f32], cols: usize) -> Self {
        Self {
            data,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The transpose of a row-major matrix with `cols` columns.
    pub fn transposed(data: &'a [f32], cols: usize) -> Self {
        Self {
            data,
            row_stride: 1,
            col_stride: cols,
        }
    }

    fn check(&self, rows: usize, cols: usize) {
        if rows > 0 && cols > 0 {
            let last = (rows - 1) * self.row_stride + (cols - 1) * self.col_stride;
            assert!(last < self.data.len(), "matrix operand out of bounds");
        }
    }
}

/// `dst[m, n] (row-major) (+)= lhs[m, k] · rhs[k, n]` with the `gemm` crate, threaded
/// for large products. With `accumulate`, the product is added to what `dst` holds.
///
/// A few shapes run faster computed column-major and transposed into `dst`
/// ([`column_major_pays`]); which way a product runs depends on its shape alone, so the
/// result never depends on the machine or the threads.
pub(crate) fn gemm(
    (m, n, k): (usize, usize, usize),
    dst: &mut [f32],
    accumulate: bool,
    lhs: Mat<'_>,
    rhs: Mat<'_>,
    threaded: bool,
) {
    assert_eq!(dst.len(), m * n, "gemm destination size");
    lhs.check(m, k);
    rhs.check(k, n);
    if m == 0 || n == 0 {
        return;
    }
    let parallelism = if threaded && m.saturating_mul(n).saturating_mul(k) >= 64 * 64 * 64 {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    if column_major_pays((m, n, k), rhs.row_stride == 1 && rhs.col_stride > 1) {
        with_scratch(m * n, |column_major| {
            // SAFETY: as below; `column_major` holds `m · n` floats, column `j` at `j · m`.
            unsafe {
                gemm_raw(
                    (m, n, k),
                    column_major,
                    (1, m),
                    false,
                    lhs,
                    rhs,
                    parallelism,
                )
            };
            transpose_into(column_major, m, n, dst, accumulate);
        });
        return;
    }
    // SAFETY: `dst` holds `m · n` floats, row `i` at `i · n`.
    unsafe { gemm_raw((m, n, k), dst, (n, 1), accumulate, lhs, rhs, parallelism) };
}

/// Whether [`gemm`] computes `dst` column-major and then transposes it: for a few rows
/// (`m`, the window positions of one image on a small map) against a deep, wide,
/// transposed right operand (`rhs_transposed`: stored `[n, k]`). These are D's last
/// convolution and G's first transposed one at seed128 base 64: the input gradient and
/// G's forward product (`64 × 12800 × 1024`) ran at 80–90 GFLOP/s row-major and run at
/// 175–195 column-major including the transpose; D's forward product
/// (`64 × 1024 × 12800`, with the weight as `[G, K]`) at 140–150 and 170–190 (one thread
/// of the 2-core Intel Xeon; docs/performance.md, change 14). Elsewhere (fewer than 1,024
/// columns or a shallower product) the transpose costs more than it saves.
pub(crate) fn column_major_pays((m, n, k): (usize, usize, usize), rhs_transposed: bool) -> bool {
    rhs_transposed && m <= 64 && n >= 1024 && k >= 1024
}

/// `dst[i, j] (+)= src[j, i]`: the column-major `m × n` matrix `src` into the row-major
/// `dst`, 16 columns at a time (16 strided reads in flight, each row's 16 writes
/// contiguous).
fn transpose_into(src: &[f32], m: usize, n: usize, dst: &mut [f32], accumulate: bool) {
    const COLUMNS: usize = 16;
    wide!({ transpose_columns::<COLUMNS>(src, m, n, dst, accumulate) })
}

/// [`transpose_into`]'s loops.
#[inline(always)]
fn transpose_columns<const COLUMNS: usize>(
    src: &[f32],
    m: usize,
    n: usize,
    dst: &mut [f32],
    accumulate: bool,
) {
    for j0 in (0..n).step_by(COLUMNS) {
        let j1 = (j0 + COLUMNS).min(n);
        for (i, row) in dst.chunks_exact_mut(n).enumerate() {
            let row = &mut row[j0..j1];
            if accumulate {
                for (jj, d) in row.iter_mut().enumerate() {
                    *d += src[(j0 + jj) * m + i];
                }
            } else {
                for (jj, d) in row.iter_mut().enumerate() {
                    *d = src[(j0 + jj) * m + i];
                }
            }
        }
    }
}

/// The `gemm` crate's product into `dst` with strides `(row, column)`.
///
/// # Safety
/// `dst` must hold every element `i · row + j · column` for `i < m`, `j < n`, and the
/// operands must have been checked for `m × k` and `k × n`.
unsafe fn gemm_raw(
    (m, n, k): (usize, usize, usize),
    dst: &mut [f32],
    (row, column): (usize, usize),
    accumulate: bool,
    lhs: Mat<'_>,
    rhs: Mat<'_>,
    parallelism: gemm::Parallelism,
) {
    assert!(
        (m - 1) * row + (n - 1) * column < dst.len(),
        "gemm destination size"
    );
    // SAFETY: the largest offset each operand is read at is in bounds (the caller checked
    // them; strides are non-negative), and so is every element of `dst` (the caller's
    // promise); `dst` is exclusively borrowed, so it aliases nothing.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            column as isize,
            row as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.col_stride as isize,
            lhs.row_stride as isize,
            rhs.data.as_ptr(),
            rhs.col_stride as isize,
            rhs.row_stride as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// Rows per block of the per-channel reductions.
const BLOCK_ROWS: usize = 2048;

/// Output channels moved together by the weight reorders: one cache line of the `[K, g]`
/// side, and a working set of `16 · K` floats of the other side that stays in L2.
const WEIGHT_BLOCK: usize = 16;

/// Where row `(ky, kx, ci)` of the `[K, g]` matrix sits inside one output channel's
/// `[c, kh, kw]` weights.
fn tap_offset(row: usize, c: usize, kh: usize, kw: usize) -> usize {
    let (tap, ci) = (row / c, row % c);
    let (ky, kx) = (tap / kw, tap % kw);
    (ci * kh + ky) * kw + kx
}

/// A weight `[g, c, kh, kw]` (either module's layout) as the matrix `[(ky, kx, c), g]`.
pub(crate) fn weight_to_kg(weight: &[f32], g: usize, c: usize, kh: usize, kw: usize) -> Vec<f32> {
    let per_channel = c * kh * kw;
    // Blocks of 64 rows in parallel; within one, `WEIGHT_BLOCK` channels at a time.
    const ROWS: usize = 64;
    assert_eq!(weight.len(), g * per_channel, "weight shape");
    // SAFETY: chunks are whole rows of `g`, and every `(row, gi)` is written.
    unsafe {
        par_vec_uninit(weight.len(), ROWS * g, |block, out| {
            let row0 = block * ROWS;
            for g0 in (0..g).step_by(WEIGHT_BLOCK) {
                let g1 = (g0 + WEIGHT_BLOCK).min(g);
                for (r, out_row) in out.chunks_exact_mut(g).enumerate() {
                    let offset = tap_offset(row0 + r, c, kh, kw);
                    for gi in g0..g1 {
                        out_row[gi].write(weight[gi * per_channel + offset]);
                    }
                }
            }
        })
    }
}

/// The weight `[g, c, kh, kw]` turned round for a stride-1 convolution's input gradient:
/// `[c, g, kh, kw]` with each kernel flipped in both directions,
/// `out[ci, gi, ky, kx] = weight[gi, ci, kh − 1 − ky, kw − 1 − kx]`.
pub(crate) fn weight_turned_round(
    weight: &[f32],
    g: usize,
    c: usize,
    kh: usize,
    kw: usize,
) -> Vec<f32> {
    let taps = kh * kw;
    assert_eq!(weight.len(), g * c * taps, "weight shape");
    // SAFETY: each chunk is one input channel's `g · taps` elements, all written.
    unsafe {
        par_vec_uninit(weight.len(), g * taps, |ci, out| {
            for (gi, kernel) in out.chunks_exact_mut(taps).enumerate() {
                let from = &weight[(gi * c + ci) * taps..][..taps];
                for (o, &v) in kernel.iter_mut().zip(from.iter().rev()) {
                    o.write(v);
                }
            }
        })
    }
}

/// The weight `[g, c, kh, kw]` as the matrix `[g, K]` with `K` in `(ky, kx, c)` order:
/// the transpose of [`weight_to_kg`], one output channel per task.
pub(crate) fn weight_to_gk(weight: &[f32], g: usize, c: usize, kh: usize, kw: usize) -> Vec<f32> {
    let per_channel = c * kh * kw;
    assert_eq!(weight.len(), g * per_channel, "weight shape");
    // SAFETY: each chunk is one channel's `per_channel` elements, all written.
    unsafe {
        par_vec_uninit(weight.len(), per_channel, |gi, out| {
            wide!({
                let weight = &weight[gi * per_channel..][..per_channel];
                // Row `(tap, ci)` of `K` is `weight[ci, tap]`.
                let taps = kh * kw;
                for (tap, out) in out.chunks_exact_mut(c).enumerate() {
                    for (o, &v) in out.iter_mut().zip(weight[tap..].iter().step_by(taps)) {
                        o.write(v);
                    }
                }
            })
        })
    }
}

/// Adds the parts that `parts` holds one after another (`len` floats each) into the
/// first, in order: the sums of [`weight_from_parts_sum`], as one streaming pass over
/// contiguous chunks in parallel, so that the layout pass after it reads one part. (Summed
/// 16 floats of a `[K, g]` row at a time, 8 parts of D's 3 MB weights ran at a third of
/// the bandwidth.)
pub(crate) fn sum_parts_in_place(parts: &mut [f32], len: usize) {
    if len == 0 || parts.len() <= len {
        return;
    }
    const CHUNK: usize = 1 << 14;
    let (first, later) = parts.split_at_mut(len);
    first
        .par_chunks_mut(CHUNK)
        .enumerate()
        .for_each(|(i, out)| {
            wide!({
                for part in later.chunks_exact(len) {
                    for (o, &v) in out.iter_mut().zip(&part[i * CHUNK..]) {
                        *o += v;
                    }
                }
            })
        });
}

/// The inverse of [`weight_to_kg`] (or, with `gk`, of its transpose: parts laid out
/// `[g, K]`), applied to the sum of the matrices that `parts` holds one after another
/// (added in order): the weight gradient of a convolution from its groups' parts.
pub(crate) fn weight_from_parts_sum(
    parts: &[f32],
    gk: bool,
    g: usize,
    c: usize,
    kh: usize,
    kw: usize,
) -> Vec<f32> {
    let per_channel = c * kh * kw;
    let len = g * per_channel;
    if gk {
        // One output channel per task: its rows of every part are contiguous.
        let taps = kh * kw;
        return par_vec(len, per_channel, |gi, out| {
            let mut parts = parts.chunks_exact(len);
            let first = parts.next().expect("at least one part");
            with_scratch(per_channel, |sum| {
                wide!({
                    sum.copy_from_slice(&first[gi * per_channel..][..per_channel]);
                    for part in parts {
                        for (s, v) in sum.iter_mut().zip(&part[gi * per_channel..]) {
                            *s += v;
                        }
                    }
                    // Row `(tap, ci)` of `K` goes to `out[ci, tap]`: by loops, not by
                    // [`tap_offset`]'s two integer divisions per float (which took most
                    // of this pass).
                    for (tap, sum) in sum.chunks_exact(c).enumerate() {
                        for (o, &v) in out[tap..].iter_mut().step_by(taps).zip(sum) {
                            *o = v;
                        }
                    }
                })
            });
        });
    }
    // `WEIGHT_BLOCK` output channels per task: a contiguous block of the result.
    par_vec(len, WEIGHT_BLOCK * per_channel, |block, out| {
        let g0 = block * WEIGHT_BLOCK;
        let width = out.len() / per_channel;
        let mut sum = [0.0f32; WEIGHT_BLOCK];
        let taps = kh * kw;
        // Rows in `(ci, tap)` order, so that each channel's writes run along its weights.
        for (ci, tap) in (0..c).flat_map(|ci| (0..taps).map(move |tap| (ci, tap))) {
            let row = tap * c + ci;
            let sum = &mut sum[..width];
            let mut parts = parts.chunks_exact(len);
            let first = parts.next().expect("at least one part");
            sum.copy_from_slice(&first[row * g + g0..row * g + g0 + width]);
            for part in parts {
                for (s, v) in sum.iter_mut().zip(&part[row * g + g0..]) {
                    *s += v;
                }
            }
            let offset = ci * taps + tap;
            for (j, s) in sum.iter().enumerate() {
                out[j * per_channel + offset] = *s;
            }
        }
    })
}

/// Per-channel sums of `x [r, c]` over its rows.
pub(crate) fn column_sums(x: &[f32], c: usize) -> Vec<f32> {
    column_sums_f64(x, c)
        .into_iter()
        .map(|v| v as f32)
        .collect()
}

/// Sums per channel over all rows, in `f64`: rows are cut into fixed blocks, `f(r0, r1,
/// acc)` adds rows `r0..r1` into `acc` (`lanes · c` zeroed `f32`s), and the blocks are
/// combined in order. Returns `lanes · c` sums.
fn block_sums(
    rows: usize,
    c: usize,
    lanes: usize,
    f: impl Fn(usize, usize, &mut [f32]) + Sync,
) -> Vec<f64> {
    // Small blocks keep the f32 partial sums short (accuracy); f64 across blocks.
    const SUB: usize = 64;
    let blocks = rows.div_ceil(BLOCK_ROWS).max(1);
    let partials: Vec<Vec<f64>> = (0..blocks)
        .into_par_iter()
        .map(|b| {
            let (r0, r1) = (b * BLOCK_ROWS, ((b + 1) * BLOCK_ROWS).min(rows));
            let mut total = vec![0.0f64; lanes * c];
            let mut acc = vec![0.0f32; lanes * c];
            let mut s = r0;
            while s < r1 {
                let e = (s + SUB).min(r1);
                acc.fill(0.0);
                wide!({ f(s, e, &mut acc) });
                for (t, a) in total.iter_mut().zip(&acc) {
                    *t += *a as f64;
                }
                s = e;
            }
            total
        })
        .collect();
    let mut out = vec![0.0f64; lanes * c];
    for p in &partials {
        for (o, v) in out.iter_mut().zip(p) {
            *o += v;
        }
    }
    out
}

/// Batch statistics of `x [r, c]`: per-channel mean and biased variance (two passes).
pub(crate) fn batch_stats(x: &[f32], c: usize) -> (Vec<f32>, Vec<f32>) {
    let rows = x.len() / c;
    let count = rows as f64;
    let mean: Vec<f32> = column_sums_f64(x, c)
        .into_iter()
        .map(|s| (s / count) as f32)
        .collect();
    let sq = block_sums(
        rows,
        c,
        1,
        #[inline(always)]
        |r0, r1, acc| {
            let x = &x[r0 * c..r1 * c];
            with_channels!(c, add_squared_deviations(acc, x, &mean))
        },
    );
    let var = sq.into_iter().map(|s| (s / count) as f32).collect();
    (mean, var)
}

fn column_sums_f64(x: &[f32], c: usize) -> Vec<f64> {
    block_sums(
        x.len() / c,
        c,
        1,
        #[inline(always)]
        |r0, r1, acc| with_channels!(c, add_rows(acc, &x[r0 * c..r1 * c])),
    )
}

// The per-channel row loops below take the channel count as a [`Channels`] value: with
// 16 or 32 channels a fixed count lets a row compile to one or two 16-float operations;
// a loop over a dynamic count that short runs scalar where the vectoriser's main loop
// takes 64 floats at a time (AVX-512, [`wide!`]).

/// Runs `f` on the sums `acc` copied into a local array while they are few (at most 128),
/// and copies them back: sums of a fixed count in a local array stay in vector registers
/// from row to row, where sums in the caller's memory compiled to a scalar load, add and
/// store per channel and row.
#[inline(always)]
fn in_registers(acc: &mut [f32], f: impl FnOnce(&mut [f32])) {
    const MOST: usize = 128;
    let n = acc.len();
    if n > MOST {
        return f(acc);
    }
    let mut local = [0.0f32; MOST];
    local[..n].copy_from_slice(acc);
    f(&mut local[..n]);
    acc.copy_from_slice(&local[..n]);
}

/// `acc[j] += row[j]` for every row of `x`.
#[inline(always)]
fn add_rows(acc: &mut [f32], x: &[f32], ch: impl Channels) {
    let c = ch.get();
    in_registers(&mut acc[..c], |acc| {
        for row in x.chunks_exact(c) {
            for (a, v) in acc[..c].iter_mut().zip(&row[..c]) {
                *a += v;
            }
        }
    })
}

/// `acc[j] += (row[j] − mean[j])²` for every row of `x`.
#[inline(always)]
fn add_squared_deviations(acc: &mut [f32], x: &[f32], mean: &[f32], ch: impl Channels) {
    let c = ch.get();
    let mean = &mean[..c];
    in_registers(&mut acc[..c], |acc| {
        for row in x.chunks_exact(c) {
            for ((a, v), m) in acc[..c].iter_mut().zip(&row[..c]).zip(mean) {
                let d = v - m;
                *a += d * d;
            }
        }
    })
}

/// The per-channel affine map of batch norm: `z = x·scale + shift`.
#[derive(Clone, Debug)]
pub(crate) struct Affine {
    /// `γ / √(var + ε)`.
    pub scale: Vec<f32>,
    /// `β − mean · scale`.
    pub shift: Vec<f32>,
    /// `1 / √(var + ε)`.
    pub inv_std: Vec<f32>,
}

impl Affine {
    /// The affine map of batch norm with the given statistics and parameters.
    pub fn new(mean: &[f32], var: &[f32], gamma: &[f32], beta: &[f32], eps: f64) -> Self {
        let inv_std: Vec<f32> = var
            .iter()
            .map(|&v| (1.0 / (v as f64 + eps).sqrt()) as f32)
            .collect();
        let scale: Vec<f32> = gamma.iter().zip(&inv_std).map(|(g, i)| g * i).collect();
        let shift = beta
            .iter()
            .zip(mean)
            .zip(&scale)
            .map(|((b, m), s)| b - m * s)
            .collect();
        Self {
            scale,
            shift,
            inv_std,
        }
    }
}

/// Leaky ReLU's derivative at `z`: `slope` below zero, else 1. Multiplying by it gives
/// exactly `z·slope` or `z` (a product with 1 is exact), and as a select rather than a
/// branch it lets the loops below compile to SIMD: the branchy form ran scalar, with a
/// mispredicted jump per element on activations of mixed sign.
#[inline(always)]
fn leak(z: f32, slope: f32) -> f32 {
    if z < 0.0 {
        slope
    } else {
        1.0
    }
}

/// `leaky_relu(x·scale[c] + shift[c])` for `x [r, c]`.
pub(crate) fn affine_leaky(x: &[f32], affine: &Affine, slope: f32) -> Vec<f32> {
    let c = affine.scale.len();
    // SAFETY: every row of every chunk is written (chunks are whole rows).
    unsafe {
        par_vec_uninit(x.len(), BLOCK_ROWS * c, |i, y| {
            let x = &x[i * BLOCK_ROWS * c..][..y.len()];
            wide!({ with_channels!(c, affine_leaky_rows(y, x, affine, slope)) })
        })
    }
}

/// [`affine_leaky`]'s rows: equal-length slices and an indexed loop, so no bounds checks
/// and one SIMD loop.
#[inline(always)]
fn affine_leaky_rows(y: &mut Uninit, x: &[f32], affine: &Affine, slope: f32, ch: impl Channels) {
    let c = ch.get();
    let (a, b) = (&affine.scale[..c], &affine.shift[..c]);
    for (yr, xr) in y.chunks_exact_mut(c).zip(x.chunks_exact(c)) {
        let (yr, xr) = (&mut yr[..c], &xr[..c]);
        for j in 0..c {
            let z = xr[j] * a[j] + b[j];
            yr[j].write(z * leak(z, slope));
        }
    }
}

/// `leaky_relu(x)`, elementwise.
pub(crate) fn leaky(x: &[f32], slope: f32) -> Vec<f32> {
    // SAFETY: `x` is as long as the output: every element is written.
    unsafe {
        par_vec_uninit(x.len(), 1 << 16, |i, y| {
            wide!({
                for (o, &v) in y.iter_mut().zip(&x[i << 16..]) {
                    o.write(v * leak(v, slope));
                }
            })
        })
    }
}

/// [`leaky`] in place, on one thread (for a group's output still in cache).
pub(crate) fn leaky_in_place(x: &mut [f32], slope: f32) {
    wide!({
        for v in x {
            *v *= leak(*v, slope);
        }
    })
}

/// Backward of [`leaky`]: `dy · (x < 0 ? slope : 1)`.
pub(crate) fn leaky_backward(x: &[f32], dy: &[f32], slope: f32) -> Vec<f32> {
    assert_eq!(x.len(), dy.len(), "leaky_backward lengths");
    // SAFETY: `x` and `dy` are as long as the output: every element is written.
    unsafe {
        par_vec_uninit(x.len(), 1 << 16, |i, dx| {
            wide!({
                for ((o, &v), &g) in dx.iter_mut().zip(&x[i << 16..]).zip(&dy[i << 16..]) {
                    o.write(g * leak(v, slope));
                }
            })
        })
    }
}

/// `tanh` of channels-last maps `x [n, hw, c]`, written channels-first `[n, c, hw]`
/// (one pass for the generator's last two steps, in parallel over images).
pub(crate) fn tanh_channels_first(x: &[f32], hw: usize, c: usize) -> Vec<f32> {
    let per = hw * c;
    assert_eq!(x.len() % per.max(1), 0, "whole images");
    // SAFETY: each task writes all `hw · c` elements of its image.
    unsafe {
        par_vec_uninit(x.len(), per, |i, y| {
            let x = &x[i * per..(i + 1) * per];
            wide!({
                for (position, pixel) in x.chunks_exact(c).enumerate() {
                    for (channel, v) in pixel.iter().enumerate() {
                        y[channel * hw + position].write(tanh(*v));
                    }
                }
            })
        })
    }
}

/// `tanh` as a rational function (Eigen's `generic_fast_tanh_float`: odd degree-13
/// numerator, even degree-6 denominator, on `x` clamped to ±7.9053, where `tanh` rounds
/// to ±1 in f32; `x` itself below 4e-4): no call and no branch, so the loops around it
/// vectorize. libm's `tanhf` cost about 10 ns an element, 2% of a dcgan64 base 16 step
/// (docs/performance.md, change 14). Within 3 ulp of `f32::tanh` over the whole range
/// (tested).
#[inline(always)]
pub(crate) fn tanh(x: f32) -> f32 {
    const CLAMP: f32 = 7.905_311;
    const TINY: f32 = 0.0004;
    const A1: f32 = 4.893_524_6e-3;
    const A3: f32 = 6.372_619e-4;
    const A5: f32 = 1.485_722_4e-5;
    const A7: f32 = 5.122_297e-8;
    const A9: f32 = -8.604_672e-11;
    const A11: f32 = 2.000_188e-13;
    const A13: f32 = -2.760_768_5e-16;
    const B0: f32 = 4.893_525e-3;
    const B2: f32 = 2.268_434_6e-3;
    const B4: f32 = 1.185_347e-4;
    const B6: f32 = 1.198_258_4e-6;
    let tiny = x.abs() < TINY;
    let x_c = x.clamp(-CLAMP, CLAMP);
    let x2 = x_c * x_c;
    let mut p = x2 * A13 + A11;
    p = x2 * p + A9;
    p = x2 * p + A7;
    p = x2 * p + A5;
    p = x2 * p + A3;
    p = x2 * p + A1;
    p *= x_c;
    let mut q = x2 * B6 + B4;
    q = x2 * q + B2;
    q = x2 * q + B0;
    if tiny {
        x
    } else {
        p / q
    }
}

/// Backward of `y = tanh(x)` from its output: `dy · (1 − y²)`, elementwise (the same
/// arithmetic as burn's, without computing `tanh` again).
pub(crate) fn tanh_backward(y: &[f32], dy: &[f32]) -> Vec<f32> {
    assert_eq!(y.len(), dy.len(), "tanh_backward lengths");
    // SAFETY: `y` and `dy` are as long as the output: every element is written.
    unsafe {
        par_vec_uninit(y.len(), 1 << 16, |i, dx| {
            wide!({
                for ((o, &v), &g) in dx.iter_mut().zip(&y[i << 16..]).zip(&dy[i << 16..]) {
                    o.write(g * (-(v * v) + 1.0));
                }
            })
        })
    }
}

/// Backward of `y = leaky_relu(γ·x̂ + β)` with `x̂ = (x − mean)/√(var + ε)` and batch
/// statistics, for `x, dy [r, c]`: returns `(dx, dγ, dβ)`.
///
/// `dz = dy · (z < 0 ? slope : 1)`, `dβ = Σ dz`, `dγ = Σ dz·x̂`,
/// `dx = γ/√(var+ε) · (dz − dβ/M − x̂·dγ/M)` with `M = r` rows.
pub(crate) fn batch_norm_leaky_backward(
    x: &[f32],
    dy: &[f32],
    mean: &[f32],
    affine: &Affine,
    gamma: &[f32],
    slope: f32,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let c = mean.len();
    let rows = x.len() / c;
    assert_eq!(
        (rows * c, dy.len()),
        (x.len(), x.len()),
        "batch norm shapes"
    );
    let norm = NormRows {
        affine,
        mean,
        slope,
    };
    let sums = block_sums(
        rows,
        c,
        2,
        #[inline(always)]
        |r0, r1, acc| {
            let (x, dy) = (&x[r0 * c..r1 * c], &dy[r0 * c..r1 * c]);
            with_channels!(c, norm_gradient_sums(acc, x, dy, &norm))
        },
    );
    let dbeta: Vec<f32> = sums[..c].iter().map(|&v| v as f32).collect();
    let dgamma: Vec<f32> = sums[c..].iter().map(|&v| v as f32).collect();
    let count = rows as f64;
    let mean_dz: Vec<f32> = sums[..c].iter().map(|&v| (v / count) as f32).collect();
    let mean_dzx: Vec<f32> = sums[c..].iter().map(|&v| (v / count) as f32).collect();
    let k: Vec<f32> = gamma
        .iter()
        .zip(&affine.inv_std)
        .map(|(g, i)| g * i)
        .collect();
    let terms = [&k[..], &mean_dz, &mean_dzx];
    // SAFETY: every row of every chunk is written (chunks are whole rows).
    let dx = unsafe {
        par_vec_uninit(x.len(), BLOCK_ROWS * c, |i, dx| {
            let x = &x[i * BLOCK_ROWS * c..][..dx.len()];
            let dy = &dy[i * BLOCK_ROWS * c..][..dx.len()];
            wide!({ with_channels!(c, norm_input_gradient(dx, x, dy, &norm, terms)) })
        })
    };
    (dx, dgamma, dbeta)
}

/// What batch norm's backward rows need per channel: the forward pass's affine map and
/// mean, and the leaky ReLU's slope.
struct NormRows<'a> {
    affine: &'a Affine,
    mean: &'a [f32],
    slope: f32,
}

/// [`batch_norm_leaky_backward`]'s sums: `acc[..c] += dz`, `acc[c..] += dz·x̂` over the
/// rows of `x` and `dy`.
#[inline(always)]
fn norm_gradient_sums(acc: &mut [f32], x: &[f32], dy: &[f32], norm: &NormRows, ch: impl Channels) {
    let c = ch.get();
    let (a, b) = (&norm.affine.scale[..c], &norm.affine.shift[..c]);
    let (is, m, slope) = (&norm.affine.inv_std[..c], &norm.mean[..c], norm.slope);
    in_registers(&mut acc[..2 * c], |acc| {
        let (s_dz, s_dzx) = acc.split_at_mut(c);
        let (s_dz, s_dzx) = (&mut s_dz[..c], &mut s_dzx[..c]);
        for (xr, gr) in x.chunks_exact(c).zip(dy.chunks_exact(c)) {
            let (xr, gr) = (&xr[..c], &gr[..c]);
            for j in 0..c {
                let v = xr[j];
                let dz = gr[j] * leak(v * a[j] + b[j], slope);
                s_dz[j] += dz;
                s_dzx[j] += dz * ((v - m[j]) * is[j]);
            }
        }
    })
}

/// [`batch_norm_leaky_backward`]'s input gradient rows, with `[k, mean_dz, mean_dzx]`:
/// `dx = k·(dz − mean_dz − x̂·mean_dzx)`.
#[inline(always)]
fn norm_input_gradient(
    dx: &mut Uninit,
    x: &[f32],
    dy: &[f32],
    norm: &NormRows,
    [k, md, mx]: [&[f32]; 3],
    ch: impl Channels,
) {
    let c = ch.get();
    let (a, b) = (&norm.affine.scale[..c], &norm.affine.shift[..c]);
    let (is, m, slope) = (&norm.affine.inv_std[..c], &norm.mean[..c], norm.slope);
    let (k, md, mx) = (&k[..c], &md[..c], &mx[..c]);
    for ((dr, xr), gr) in dx
        .chunks_exact_mut(c)
        .zip(x.chunks_exact(c))
        .zip(dy.chunks_exact(c))
    {
        let (dr, xr, gr) = (&mut dr[..c], &xr[..c], &gr[..c]);
        for j in 0..c {
            let v = xr[j];
            let dz = gr[j] * leak(v * a[j] + b[j], slope);
            let xhat = (v - m[j]) * is[j];
            dr[j].write(k[j] * (dz - md[j] - xhat * mx[j]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The naive definition of the window rows, for checking the fast one.
    fn im2col_naive(w: &Window, big: &[f32]) -> Vec<f32> {
        let n = big.len() / (w.big() * w.c);
        let k = w.k();
        let mut cols = vec![0.0; n * w.grid() * k];
        for image in 0..n {
            for oy in 0..w.hs {
                for ox in 0..w.ws {
                    for ky in 0..w.kh {
                        for kx in 0..w.kw {
                            for c in 0..w.c {
                                let iy = (oy * w.sh + ky) as isize - w.ph as isize;
                                let ix = (ox * w.sw + kx) as isize - w.pw as isize;
                                if iy >= 0
                                    && ix >= 0
                                    && (iy as usize) < w.hb
                                    && (ix as usize) < w.wb
                                {
                                    cols[((image * w.hs + oy) * w.ws + ox) * k
                                        + (ky * w.kw + kx) * w.c
                                        + c] = big[((image * w.hb + iy as usize) * w.wb
                                        + ix as usize)
                                        * w.c
                                        + c];
                                }
                            }
                        }
                    }
                }
            }
        }
        cols
    }

    /// Windows of every kind the networks use (strides 1 and 2, padding, odd sizes), for
    /// 1 and 3 channels (the compile-time channel counts) and 2 (the general path).
    fn windows() -> Vec<Window> {
        let mut v = Vec::new();
        for c in [1, 2, 3] {
            for (hb, s, p, k) in [
                (8, 2, 2, 5),
                (8, 1, 2, 5),
                (7, 2, 2, 5),
                (5, 1, 1, 3),
                (4, 2, 0, 3),
                (3, 1, 2, 5),
            ] {
                v.push(Window::of_conv(c, (hb, hb + 1), k, s, p));
            }
        }
        v
    }

    /// `gemm` against the naive product, for shapes on both sides of
    /// [`column_major_pays`], each operand row-major and transposed, with and without
    /// `accumulate`.
    #[test]
    fn gemm_matches_the_definition_in_both_layouts() {
        let layouts = [(false, false), (false, true), (true, false), (true, true)];
        // Every layout on a small product; the large ones (around the column-major
        // threshold) with the right operand transposed, which the threshold asks for.
        let cases = layouts.iter().map(|&t| ((5, 17, 40), t)).chain(
            [(64, 1030, 1024), (65, 1024, 1024), (64, 1024, 1000)]
                .iter()
                .flat_map(|&shape| [(shape, (false, true)), (shape, (true, true))]),
        );
        for ((m, n, k), (lhs_t, rhs_t)) in cases {
            let a: Vec<f32> = (0..m * k)
                .map(|i| ((i * 7 % 23) as f32 - 11.0) * 0.125)
                .collect();
            let b: Vec<f32> = (0..k * n)
                .map(|i| ((i * 5 % 19) as f32 - 9.0) * 0.25)
                .collect();
            // `a` holds lhs[i, p] at i·k + p (or p·m + i transposed); `b` likewise.
            let lhs_at = |i: usize, p: usize| if lhs_t { a[p * m + i] } else { a[i * k + p] };
            let rhs_at = |p: usize, j: usize| if rhs_t { b[j * k + p] } else { b[p * n + j] };
            let product: Vec<f64> = (0..m * n)
                .map(|ij| {
                    let (i, j) = (ij / n, ij % n);
                    (0..k)
                        .map(|p| lhs_at(i, p) as f64 * rhs_at(p, j) as f64)
                        .sum()
                })
                .collect();
            let lhs = if lhs_t {
                Mat::transposed(&a, m)
            } else {
                Mat::rows(&a, k)
            };
            let rhs = if rhs_t {
                Mat::transposed(&b, k)
            } else {
                Mat::rows(&b, n)
            };
            let start: Vec<f32> = (0..m * n).map(|i| (i % 5) as f32).collect();
            for accumulate in [false, true] {
                let mut dst = start.clone();
                gemm((m, n, k), &mut dst, accumulate, lhs, rhs, false);
                for (ij, (&got, &want)) in dst.iter().zip(&product).enumerate() {
                    let want = want + if accumulate { start[ij] as f64 } else { 0.0 };
                    assert!(
                        (got as f64 - want).abs() <= 1e-4 * want.abs().max(1.0),
                        "{m}x{n}x{k} lhs_t {lhs_t} rhs_t {rhs_t} acc {accumulate} at {ij}: \
                         {got} vs {want}"
                    );
                }
            }
        }
        // The column-major path is the one taken for the first shape (rhs transposed).
        assert!(column_major_pays((64, 1030, 1024), true));
        assert!(!column_major_pays((65, 1024, 1024), true));
        assert!(!column_major_pays((64, 1024, 1000), true));
        assert!(!column_major_pays((64, 1030, 1024), false));
    }

    /// The rational `tanh` against the standard library's over the range the generator
    /// sees and beyond: at most 3 ulp (relative to the result) everywhere.
    #[test]
    fn tanh_matches_the_standard_library() {
        let mut worst = 0.0f64;
        let mut x = -12.0f32;
        while x <= 12.0 {
            for v in [x, x * 1e-3, x * 1e-5] {
                let (got, want) = (tanh(v) as f64, v.tanh() as f64);
                let ulp = (want.abs() as f32).max(f32::MIN_POSITIVE) as f64 * f32::EPSILON as f64;
                worst = worst.max((got - want).abs() / ulp);
            }
            x += 1.0 / 4096.0;
        }
        assert!(worst <= 3.5, "worst error {worst} ulp");
        assert_eq!(tanh(0.0), 0.0);
        // Saturated: within an ulp of ±1 (the clamp's rational value), and odd.
        assert!((tanh(30.0) - 1.0).abs() <= f32::EPSILON);
        assert_eq!(tanh(-30.0), -tanh(30.0));
        assert!(tanh(f32::NAN).is_nan());
    }

    #[test]
    fn im2col_matches_the_definition() {
        for w in windows() {
            let big: Vec<f32> = (0..3 * w.big() * w.c)
                .map(|i| i as f32 * 0.5 - 3.0)
                .collect();
            let mut cols = vec![f32::NAN; 3 * w.grid() * w.k()];
            im2col(&w, &big, &mut cols);
            assert_eq!(cols, im2col_naive(&w, &big), "{w:?}");
        }
    }

    #[test]
    fn col2im_is_the_adjoint_of_im2col() {
        // <im2col(x), y> == <x, col2im(y)> for any x, y.
        for w in windows() {
            let n = 3;
            let x: Vec<f32> = (0..n * w.big() * w.c)
                .map(|i| ((i * 7) % 11) as f32 - 5.0)
                .collect();
            let y: Vec<f32> = (0..n * w.grid() * w.k())
                .map(|i| ((i * 5) % 13) as f32 - 6.0)
                .collect();
            let mut cols = vec![f32::NAN; y.len()];
            im2col(&w, &x, &mut cols);
            let mut big = vec![MaybeUninit::uninit(); x.len()];
            let big = col2im(&w, &y, None, &mut big);
            let lhs: f64 = cols.iter().zip(&y).map(|(a, b)| (a * b) as f64).sum();
            let rhs: f64 = x.iter().zip(big.iter()).map(|(a, b)| (a * b) as f64).sum();
            assert_eq!(lhs, rhs, "{w:?}");
            // The initial value is added once per element.
            let bias: Vec<f32> = (0..w.c).map(|j| j as f32 - 1.5).collect();
            let mut with_bias = vec![MaybeUninit::uninit(); x.len()];
            let with_bias = col2im(&w, &y, Some(&bias), &mut with_bias);
            for (i, (a, b)) in with_bias.iter().zip(big.iter()).enumerate() {
                assert_eq!(*a, b + bias[i % w.c]);
            }
        }
    }

    #[test]
    fn transposes_and_weight_reorders_invert_each_other() {
        let x: Vec<f32> = (0..2 * 3 * 37).map(|i| i as f32).collect();
        let t = transpose_batch(&x, 3, 37);
        assert_eq!(t[1], x[37], "image 0, position 0, channel 1");
        assert_eq!(transpose_batch(&t, 37, 3), x);
        // 20 output channels: a full block of 16 and a partial one; 70 rows: a full block
        // of 64 rows and a partial one, whose tiles of 16 end part-way.
        let (g, c, kh, kw) = (20, 7, 5, 2);
        let w: Vec<f32> = (0..g * c * kh * kw).map(|i| i as f32).collect();
        let kg = weight_to_kg(&w, g, c, kh, kw);
        for (gi, ci, ky, kx) in (0..g).flat_map(|gi| {
            (0..c).flat_map(move |ci| {
                (0..kh).flat_map(move |ky| (0..kw).map(move |kx| (gi, ci, ky, kx)))
            })
        }) {
            assert_eq!(
                kg[((ky * kw + kx) * c + ci) * g + gi],
                w[((gi * c + ci) * kh + ky) * kw + kx],
                "channel {gi}, input channel {ci}, tap ({ky}, {kx})"
            );
        }
        assert_eq!(weight_from_parts_sum(&kg, false, g, c, kh, kw), w);
        // The same parts laid out `[g, K]`.
        let k = c * kh * kw;
        let gk: Vec<f32> = (0..g * k).map(|i| kg[(i % k) * g + i / k]).collect();
        assert_eq!(weight_to_gk(&w, g, c, kh, kw), gk);
        assert_eq!(weight_from_parts_sum(&gk, true, g, c, kh, kw), w);
        // Three parts sum to three times the weight, in either layout.
        let tripled: Vec<f32> = w.iter().map(|v| 3.0 * v).collect();
        let parts = [kg.clone(), kg.clone(), kg].concat();
        assert_eq!(weight_from_parts_sum(&parts, false, g, c, kh, kw), tripled);
        let parts = [gk.clone(), gk.clone(), gk].concat();
        assert_eq!(weight_from_parts_sum(&parts, true, g, c, kh, kw), tripled);
    }

    #[test]
    fn parts_sum_in_place_in_order() {
        // Three parts of 40,000 floats: two whole chunks and a partial one.
        let len = 40_000;
        let part = |seed: u32| -> Vec<f32> {
            (0..len)
                .map(|i| {
                    ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) % 1_000) as f32
                        * 0.37
                })
                .collect()
        };
        let (a, b, c) = (part(1), part(2), part(3));
        let mut parts = [a.clone(), b.clone(), c.clone(), vec![]].concat();
        sum_parts_in_place(&mut parts, len);
        for i in 0..len {
            assert_eq!(parts[i], a[i] + b[i] + c[i], "element {i}: added in order");
        }
        assert_eq!(
            &parts[len..2 * len],
            &b[..],
            "later parts are left as they were"
        );
        // One part: nothing to add.
        let mut one = a.clone();
        sum_parts_in_place(&mut one, len);
        assert_eq!(one, a);
    }

    #[test]
    fn products_match_the_definition() {
        let mut c = vec![1.0; 4];
        // [2, 3] · [3, 2] (the rhs as the transpose of a row-major [2, 3]), added to ones.
        let lhs = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let rhs_t = [1.0, 0.0, -1.0, 2.0, 1.0, 0.0];
        gemm(
            (2, 2, 3),
            &mut c,
            true,
            Mat::rows(&lhs, 3),
            Mat::transposed(&rhs_t, 3),
            true,
        );
        assert_eq!(c, [-1.0, 5.0, -1.0, 14.0]);
    }
}
