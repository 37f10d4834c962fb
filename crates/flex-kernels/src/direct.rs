//! Direct convolutions for the layers at the image end of a network: those whose big map
//! (the input of a convolution, the output of a transposed one) has at most 4 channels,
//! an image's 3 (D's first layer, G's last, the FID Inception's first), and those with
//! exactly 16, one vector (D's second layer and G's last but one at base 16; change 27).
//!
//! Why: the window-matrix path (`im2col`, a GEMM, `col2im`) moves each image pixel 25
//! times in pieces of 3 floats (5×5 windows), and its GEMMs are 16–64 wide and 75 deep,
//! where the `gemm` crate packs more than it multiplies. At dcgan64 base 16 batch 16
//! these two layers took 21% of a training step for a tenth of its multiply-adds
//! (catgan's `docs/performance.md`, change 19). Here each output is summed straight from
//! its inputs, 16 grid channels to an AVX-512 vector (on CPUs without it, these layers
//! keep the window matrices):
//!
//! - `gather`: grid outputs from the map's windows (a convolution's forward product, a
//!   transposed convolution's input gradient);
//! - `scatter`: map outputs from the grid positions whose windows cover them (a
//!   transposed convolution's forward product, a convolution's input gradient), each one
//!   summed by one task, phase by phase for strides above 1, 16 map positions to a vector
//!   (the grid rows transposed first, so that no sum runs across a vector's lanes;
//!   change 25); with 16 map channels, the map's 16 channels to a vector instead, 16
//!   positions of a phase at once (change 27);
//! - `weight_gradient`: the weight gradient `Σ window ⊗ grid`, in fixed parts of the
//!   grid lines added in order (with 16 map channels, 8 taps × 2 vectors of grid channels
//!   in registers at a time).
//!
//! Every sum is in a fixed order (by the shapes alone), with fused multiply-adds, so
//! results do not depend on the threads. [`enable`]`(false)` turns the path off for the
//! process.

use std::sync::atomic::{AtomicBool, Ordering};

use rayon::prelude::*;

use crate::buffers::{par_vec, with_scratch};
use crate::kernels::{self, Window};

/// Grid channels per vector: the grid side's channels must be a multiple of it.
pub(crate) const LANES: usize = 16;

/// Map channels this path takes at most (besides exactly [`LANES`], see [`fits`]).
pub(crate) const MAX_CHANNELS: usize = 4;

/// Map positions of one phase [`scatter`] sums at once with [`LANES`] map channels (one
/// vector of sums each, sharing each weight vector).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
const WIDE_BLOCK: usize = 16;

/// Taps of one window row (`kw · c`) the weight gradient accumulates at once, at most.
const STRIP: usize = 16;

/// Grid positions [`gather`] sums at once (sharing each weight vector).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
const GATHER_BLOCK: usize = 8;

/// Vectors of 16 map positions [`scatter`] sums at once (sharing each broadcast weight;
/// with 4 map channels, 16 sums in registers).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
const SCATTER_VECTORS: usize = 4;

/// Grid lines per part of [`weight_gradient`]: parts are summed in order, so each sum of
/// products runs over at most this many lines (accuracy) and the parts balance over the
/// threads.
const LINES_PER_PART: usize = 32;

type Lanes = [f32; LANES];

static ENABLED: AtomicBool = AtomicBool::new(true);

/// Switches the direct path on (the default) or off for the whole process. Off, these
/// layers take the window-matrix path, as before catgan's performance.md, change 19: the
/// same results to float rounding, slower. For comparing the two paths.
pub fn enable(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Whether the direct path is on (see [`enable`]).
pub fn is_enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Whether a convolution of window `w` with `g` grid-side channels takes this path: it is
/// on ([`enable`]) and the shapes fit ([`fits`]).
pub(crate) fn applies(w: &Window, g: usize) -> bool {
    is_enabled() && fits(w, g)
}

/// Whether the kernels here take a convolution of window `w` with `g` grid-side channels:
/// `g` a multiple of [`LANES`], padding inside the kernel, not a plain 1×1, a CPU with
/// AVX-512, and either at most [`MAX_CHANNELS`] map channels with a window row of at most
/// 16 taps (`kw · c`), or exactly [`LANES`] map channels.
fn fits(w: &Window, g: usize) -> bool {
    supported()
        && ((1..=MAX_CHANNELS).contains(&w.c) && w.kw * w.c <= STRIP || w.c == LANES)
        && g > 0
        && g.is_multiple_of(LANES)
        && w.ph < w.kh
        && w.pw < w.kw
        && w.sh > 0
        && w.sw > 0
        && !w.is_pointwise()
}

/// Runs one of [`simd`]'s kernels; without x86 (and so without AVX-512, which [`fits`]
/// requires) nothing calls it.
macro_rules! simd {
    ($call:expr) => {{
        #[cfg(target_arch = "x86_64")]
        {
            $call
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            unreachable!("the direct kernels need AVX-512")
        }
    }};
}

/// Whether the CPU runs this path's kernels (AVX-512; elsewhere the window matrices).
fn supported() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Width of a padded map row, in positions: room for every window of a grid line.
fn padded_width(w: &Window) -> usize {
    (w.sw * (w.ws - 1) + w.kw).max(w.pw + w.wb)
}

/// Floats of one padded map row as the kernels read it: [`padded_width`] positions and
/// [`STRIP`] floats of slack (the weight gradient reads whole strips past a row's last
/// window; what it reads there is never used).
fn padded_row_len(w: &Window) -> usize {
    padded_width(w) * w.c + STRIP
}

/// Writes row `py` of the zero-padded map (map row `py − ph`, shifted right by `pw`) into
/// `row` (all of it written).
fn padded_row(w: &Window, map: &[f32], py: usize, row: &mut [f32]) {
    row.fill(0.0);
    let c = w.c;
    if let Some(y) = py.checked_sub(w.ph).filter(|&y| y < w.hb) {
        row[w.pw * c..(w.pw + w.wb) * c].copy_from_slice(&map[y * w.wb * c..][..w.wb * c]);
    }
}

/// An output of `lines` lines of `line_len` floats, made in parallel by tasks of whole
/// lines (at least 32 tasks where there are that many lines, so that the threads get even
/// shares): `task(first, out, scratch)` writes the lines from `first` on into `out` (a
/// whole number of lines), with `scratch` floats of scratch; then each task's lines get a
/// leaky ReLU of `slope`, if given.
fn by_tasks(
    lines: usize,
    line_len: usize,
    scratch: usize,
    slope: Option<f32>,
    task: impl Fn(usize, &mut [f32], &mut [f32]) + Sync + Send,
) -> Vec<f32> {
    let per_task = lines.div_ceil(32).max(1);
    par_vec(lines * line_len, per_task * line_len, |i, out| {
        with_scratch(scratch, |scratch| task(i * per_task, out, scratch));
        if let Some(slope) = slope {
            kernels::leaky_in_place(out, slope);
        }
    })
}

/// Taps of one map position's sum along an axis: `(k, d)` for kernel tap `k` reading the
/// grid at `position / stride + d` (the positions of one phase share them).
fn phase_taps(position: usize, k: usize, stride: usize, pad: usize) -> Vec<(usize, isize)> {
    let phase = position % stride;
    (0..k)
        .filter(|&t| (phase + pad + stride - t % stride).is_multiple_of(stride))
        .map(|t| {
            (
                t,
                ((phase + pad) as isize - t as isize).div_euclid(stride as isize),
            )
        })
        .collect()
}

/// The forward product of a convolution over the big maps `big [n, hb, wb, c]`:
/// `grid[n, y, x, :] = bias + Σ_{ky, kx, ci} big[n, sh·y + ky − ph, sw·x + kx − pw, ci] ·
/// wkg[(ky, kx, ci), :]` (zero over the padding), then a leaky ReLU of `slope` if given.
/// Also a transposed convolution's input gradient (with the output gradient as `big`).
pub(crate) fn gather(
    w: &Window,
    batch: usize,
    g: usize,
    big: &[f32],
    wkg: &[f32],
    bias: Option<&[f32]>,
    slope: Option<f32>,
) -> Vec<f32> {
    assert!(fits(w, g), "gather: not a direct convolution");
    assert_eq!(big.len(), batch * w.big() * w.c, "gather: map length");
    assert_eq!(wkg.len(), w.k() * g, "gather: weight length");
    assert!(bias.is_none_or(|b| b.len() == g), "gather: bias length");
    let rw = padded_row_len(w);
    let line_len = w.ws * g;
    by_tasks(
        batch * w.hs,
        line_len,
        w.kh * rw,
        slope,
        |first, out, rows| {
            for (j, out) in out.chunks_mut(line_len).enumerate() {
                let (n, y) = ((first + j) / w.hs, (first + j) % w.hs);
                let map = &big[n * w.big() * w.c..][..w.big() * w.c];
                for (ky, row) in rows.chunks_mut(rw).enumerate() {
                    padded_row(w, map, w.sh * y + ky, row);
                }
                // SAFETY: `fits` checked for AVX-512 and the asserts above the lengths.
                simd!(unsafe { simd::gather_line(w, g, rows, out, wkg, bias) });
            }
        },
    )
}

/// The forward product of a transposed convolution from the grids `grid [n, hs, ws, g]`
/// to the big maps `[n, hb, wb, c]`: every map position is `bias` plus the sum over the
/// grid positions `(y, x)` and taps `(ky, kx)` with `sh·y + ky − ph`, `sw·x + kx − pw` at
/// it of `grid[n, y, x, :] · wkg[(ky, kx, ci), :]`; then a leaky ReLU of `slope` if given.
/// Also a convolution's input gradient (with the output gradient as `grid`).
///
/// Each map position is summed whole by one task (no scatter), 16 positions of one phase
/// to a vector: the grid rows a map line reads are first transposed to channel rows of
/// grid columns ([`GridRows`]), so that each product is a vector of positions times one
/// broadcast weight, with no sum across a vector's lanes.
pub(crate) fn scatter(
    w: &Window,
    batch: usize,
    g: usize,
    grid: &[f32],
    wkg: &[f32],
    bias: Option<&[f32]>,
    slope: Option<f32>,
) -> Vec<f32> {
    assert!(fits(w, g), "scatter: not a direct convolution");
    assert_eq!(grid.len(), batch * w.grid() * g, "scatter: grid length");
    assert_eq!(wkg.len(), w.k() * g, "scatter: weight length");
    assert!(bias.is_none_or(|b| b.len() == w.c), "scatter: bias length");
    if w.c == LANES {
        return scatter_wide(w, batch, g, grid, wkg, bias, slope);
    }
    let rows = GridRows::of(w);
    let row_len = rows.len(g);
    // Each slot holds a grid row transposed; the padding stays zero.
    let fill =
        |row: usize, slot: &mut [f32]| rows.fill(&grid[row * w.ws * g..][..w.ws * g], g, slot);
    by_map_lines(
        w,
        batch,
        row_len,
        slope,
        fill,
        |y_rows, scratch, phase, x_taps, out| {
            let line = Line {
                slots: scratch,
                y_rows,
                x_taps,
                phase,
                rows,
            };
            // SAFETY: `fits` checked for AVX-512 and the asserts above the lengths; every
            // tap of every position read lies inside the padded rows (`GridRows`).
            simd!(unsafe {
                match w.c {
                    1 => simd::scatter_phase::<1>(w, g, &line, out, wkg, bias),
                    2 => simd::scatter_phase::<2>(w, g, &line, out, wkg, bias),
                    3 => simd::scatter_phase::<3>(w, g, &line, out, wkg, bias),
                    4 => simd::scatter_phase::<4>(w, g, &line, out, wkg, bias),
                    c => unreachable!("{c} map channels (fits() allows 1 to 4)"),
                }
            });
        },
    )
}

/// The map lines of [`scatter`] (`batch · hb` of `wb · c` floats), made by tasks of whole
/// lines: each task keeps the grid rows its lines read in [`Slots`] of `row_len` floats
/// (zeroed once, then filled by `fill(grid row of the batch, slot)`), and for each line
/// and phase calls `phase_line((ky, slot offset) of its grid rows, the slots, phase, the
/// phase's taps along the line, the line)`; then a leaky ReLU of `slope`, if given.
fn by_map_lines(
    w: &Window,
    batch: usize,
    row_len: usize,
    slope: Option<f32>,
    fill: impl Fn(usize, &mut [f32]) + Sync + Send,
    phase_line: impl Fn(&[(usize, usize)], &[f32], usize, &[(usize, isize)], &mut [f32]) + Sync + Send,
) -> Vec<f32> {
    let line_len = w.wb * w.c;
    // The taps along a line depend on its phase alone.
    let x_taps: Vec<Vec<(usize, isize)>> = (0..w.sw.min(w.wb))
        .map(|phase| phase_taps(phase, w.kw, w.sw, w.pw))
        .collect();
    by_tasks(
        batch * w.hb,
        line_len,
        w.kh * row_len,
        slope,
        |first, out, scratch| {
            scratch.fill(0.0);
            let mut slots = Slots::new(w, row_len);
            for (j, out) in out.chunks_mut(line_len).enumerate() {
                let y_rows = slots.load(w, first + j, scratch, &fill);
                for (phase, x_taps) in x_taps.iter().enumerate() {
                    phase_line(&y_rows, scratch, phase, x_taps, out);
                }
            }
        },
    )
}

/// The grid rows a task of [`scatter`] holds: slot `y % kh` of its scratch (`row_len`
/// floats each) holds grid row `y` of an image, as laid out by the caller (the rows one
/// map line reads are fewer than `kh` apart, so they never share a slot).
struct Slots {
    held: Vec<Option<usize>>,
    row_len: usize,
}

impl Slots {
    fn new(w: &Window, row_len: usize) -> Self {
        Self {
            held: vec![None; w.kh],
            row_len,
        }
    }

    /// The grid rows map line `line` (of the batch's `n · hb`) reads, as `(ky, offset of
    /// its slot)`, each loaded by `fill(grid row of the batch, slot)` unless its slot
    /// holds it already.
    fn load(
        &mut self,
        w: &Window,
        line: usize,
        scratch: &mut [f32],
        fill: impl Fn(usize, &mut [f32]),
    ) -> Vec<(usize, usize)> {
        let (n, ty) = (line / w.hb, line % w.hb);
        phase_taps(ty, w.kh, w.sh, w.ph)
            .into_iter()
            .filter_map(|(ky, d)| {
                let y = (ty / w.sh) as isize + d;
                (0..w.hs as isize).contains(&y).then_some((ky, y as usize))
            })
            .map(|(ky, y)| {
                let (slot, row) = (y % w.kh, n * w.hs + y);
                let at = slot * self.row_len;
                if self.held[slot] != Some(row) {
                    fill(row, &mut scratch[at..][..self.row_len]);
                    self.held[slot] = Some(row);
                }
                (ky, at)
            })
            .collect()
    }
}

/// [`scatter`] for [`LANES`] map channels: each map position's 16 channels are one
/// vector of sums, [`WIDE_BLOCK`] positions of one phase at a time, each product a
/// broadcast grid value times a vector of the weight (`[tap, g, c]`, reordered once per
/// call). The grid rows a line reads are copied with `kw` zero positions on each side.
/// Each sum adds its products in the order kernel row, kernel column, grid channel.
fn scatter_wide(
    w: &Window,
    batch: usize,
    g: usize,
    grid: &[f32],
    wkg: &[f32],
    bias: Option<&[f32]>,
    slope: Option<f32>,
) -> Vec<f32> {
    let c = w.c;
    let taps = w.kh * w.kw;
    // `wtc[(tap, gi), ci] = wkg[(tap, ci), gi]`.
    let mut wtc = vec![0.0; taps * g * c];
    for tap in 0..taps {
        for ci in 0..c {
            let from = &wkg[(tap * c + ci) * g..][..g];
            for (gi, &v) in from.iter().enumerate() {
                wtc[(tap * g + gi) * c + ci] = v;
            }
        }
    }
    let margin = w.kw;
    let row_len = (w.ws + 2 * margin) * g;
    let bias: Lanes = std::array::from_fn(|ci| bias.map_or(0.0, |b| b[ci]));
    // Each slot holds a grid row as it is, `margin` zero positions either side.
    let fill = |row: usize, slot: &mut [f32]| {
        slot[margin * g..][..w.ws * g].copy_from_slice(&grid[row * w.ws * g..][..w.ws * g])
    };
    by_map_lines(
        w,
        batch,
        row_len,
        slope,
        fill,
        |y_rows, scratch, phase, x_taps, out| {
            let count = (w.wb - phase).div_ceil(w.sw);
            // Every read lies in the rows: column `X + d` of the grid at `margin + X + d`.
            assert!(
                x_taps.iter().all(|t| {
                    t.1 >= -(margin as isize) && count as isize + t.1 <= (w.ws + margin) as isize
                }),
                "scatter_wide: taps reach past the margins"
            );
            let mut x0 = 0;
            while x0 < count {
                let left = count - x0;
                let block = Block {
                    rows: scratch,
                    row_len,
                    y_rows,
                    x_taps,
                    phase,
                    x0,
                    margin,
                };
                // SAFETY: `fits` checked for AVX-512 and the asserts above the reads; `out`
                // is one map line of `c` = 16 channels.
                x0 += simd!(unsafe {
                    if left >= WIDE_BLOCK {
                        simd::scatter_wide_block::<WIDE_BLOCK>(w, g, &block, &wtc, &bias, out)
                    } else if left >= 8 {
                        simd::scatter_wide_block::<8>(w, g, &block, &wtc, &bias, out)
                    } else if left >= 4 {
                        simd::scatter_wide_block::<4>(w, g, &block, &wtc, &bias, out)
                    } else {
                        simd::scatter_wide_block::<1>(w, g, &block, &wtc, &bias, out)
                    }
                });
            }
        },
    )
}

/// Positions `x0..` of one phase of a map line, for [`scatter_wide`]: the grid rows it
/// reads (with `margin` zero positions on each side) with their kernel rows, and the taps
/// along the line as kernel columns and offsets of grid columns from `X`.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
struct Block<'a> {
    /// The slots of grid rows, `row_len` floats each.
    rows: &'a [f32],
    row_len: usize,
    /// `(ky, offset)`: a kernel row and where its grid row starts in `rows`.
    y_rows: &'a [(usize, usize)],
    x_taps: &'a [(usize, isize)],
    phase: usize,
    x0: usize,
    margin: usize,
}

/// The layout of one grid row as [`scatter`] reads it: `g` channel rows of `width`
/// floats, grid column `x` at `kw + x`, zeros around. The left margin takes the most
/// negative column offset of a tap (above `−kw`), the right one the positions rounded up
/// to whole vectors plus the largest offset (below `kw`).
#[derive(Clone, Copy)]
struct GridRows {
    /// Floats of one channel row.
    width: usize,
    /// Where grid column 0 sits in a channel row: `kw`.
    left: usize,
}

impl GridRows {
    fn of(w: &Window) -> Self {
        let positions = w.wb.div_ceil(w.sw).max(w.ws).next_multiple_of(LANES);
        Self {
            width: (2 * w.kw + positions).next_multiple_of(LANES),
            left: w.kw,
        }
    }

    /// Floats of one transposed grid row.
    fn len(self, g: usize) -> usize {
        g * self.width
    }

    /// Writes the grid row `cells` (`[ws, g]`, `g` a multiple of 16) into `row`'s
    /// columns, 16 × 16 blocks at a time; the margins are left as they are (zero).
    fn fill(self, cells: &[f32], g: usize, row: &mut [f32]) {
        let ws = cells.len() / g;
        assert!(
            g.is_multiple_of(LANES)
                && cells.len() == ws * g
                && row.len() == g * self.width
                && self.left + ws <= self.width,
            "GridRows::fill: lengths"
        );
        let whole = ws - ws % LANES;
        for x0 in (0..whole).step_by(LANES) {
            for g0 in (0..g).step_by(LANES) {
                // SAFETY: `fits` checked for AVX-512 before any scatter; the block's 16
                // positions of 16 channels are inside `cells`, its 16 channel rows'
                // columns inside `row` (asserted above).
                simd!(unsafe { simd::transpose_block(cells, g, x0, g0, row, self) });
            }
        }
        for (gi, channel) in row.chunks_exact_mut(self.width).enumerate() {
            for x in whole..ws {
                channel[self.left + x] = cells[x * g + gi];
            }
        }
    }
}

/// One phase of a map line (`tx = sw·X + phase`), for [`scatter`]: the grid rows it reads
/// (transposed, [`GridRows`], in a task's [`Slots`]) with their kernel rows, and the taps
/// along the line as kernel columns and offsets of grid columns from `X`.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
struct Line<'a> {
    /// The task's slots of transposed grid rows.
    slots: &'a [f32],
    /// `(ky, offset)`: a kernel row and where its grid row starts in `slots`.
    y_rows: &'a [(usize, usize)],
    x_taps: &'a [(usize, isize)],
    phase: usize,
    rows: GridRows,
}

/// The weight gradient `[K, G]` of a convolution between the big maps `big [n, hb, wb, c]`
/// and the grids `grid [n, hs, ws, g]`: `Σ_{n, y, x} big[n, sh·y + ky − ph, sw·x + kx −
/// pw, ci] · grid[n, y, x, :]` for each row `(ky, kx, ci)`. For a convolution `big` is
/// the input and `grid` the output gradient; for a transposed one, the output gradient
/// and the input. The grid lines are summed in parts of [`LINES_PER_PART`], the parts
/// then added in order.
pub(crate) fn weight_gradient(
    w: &Window,
    batch: usize,
    g: usize,
    big: &[f32],
    grid: &[f32],
) -> Vec<f32> {
    assert!(fits(w, g), "weight_gradient: not a direct convolution");
    assert_eq!(
        big.len(),
        batch * w.big() * w.c,
        "weight_gradient: map length"
    );
    assert_eq!(
        grid.len(),
        batch * w.grid() * g,
        "weight_gradient: grid length"
    );
    if w.kw * w.c > STRIP {
        return weight_gradient_wide(w, batch, g, big, grid);
    }
    weight_sums(
        w,
        (batch, g),
        (big, grid),
        LANES,
        |row, grid, chunk, acc| {
            // SAFETY: `fits` checked for AVX-512 and the asserts above the lengths; `row` has a
            // strip of slack, `acc` a row of 16 for each of the strip's taps.
            simd!(unsafe { simd::weight_line(w, g, row, grid, chunk, acc) })
        },
    )
}

/// The weight gradient `[K, G]` by tasks `(part, ky, chunk)`: each sums, over a part of
/// [`LINES_PER_PART`] grid lines in order, `line(padded map row ky of the line, the grid
/// line, chunk, acc)` into its `acc` (`kw · c` taps × `width` grid channels from `chunk ·
/// width`); the tasks' sums are then added into `dw` in task order (by the shapes alone).
fn weight_sums(
    w: &Window,
    (batch, g): (usize, usize),
    (big, grid): (&[f32], &[f32]),
    width: usize,
    line: impl Fn(&[f32], &[f32], usize, &mut [f32]) + Sync + Send,
) -> Vec<f32> {
    let lines = batch * w.hs;
    let parts = lines.div_ceil(LINES_PER_PART);
    let chunks = g / width;
    let strip = w.kw * w.c;
    let sums: Vec<Vec<f32>> = (0..parts * w.kh * chunks)
        .into_par_iter()
        .map(|task| {
            let (part, ky, chunk) = (task / (w.kh * chunks), task / chunks % w.kh, task % chunks);
            let first = part * LINES_PER_PART;
            let mut acc = vec![0.0; strip * width];
            with_scratch(padded_row_len(w), |row| {
                for y_line in first..(first + LINES_PER_PART).min(lines) {
                    let (n, y) = (y_line / w.hs, y_line % w.hs);
                    let map = &big[n * w.big() * w.c..][..w.big() * w.c];
                    padded_row(w, map, w.sh * y + ky, row);
                    line(row, &grid[y_line * w.ws * g..][..w.ws * g], chunk, &mut acc);
                }
            });
            acc
        })
        .collect();
    let mut dw = vec![0.0; w.k() * g];
    for (task, acc) in sums.iter().enumerate() {
        let (ky, chunk) = (task / chunks % w.kh, task % chunks);
        for (j, acc) in acc.chunks_exact(width).enumerate() {
            let dst = &mut dw[(ky * strip + j) * g + chunk * width..][..width];
            for (d, a) in dst.iter_mut().zip(acc) {
                *d += a;
            }
        }
    }
    dw
}

/// Taps of a window row [`weight_gradient_wide`] sums at once, per vector of grid
/// channels.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
const WIDE_TAPS: usize = 8;

/// [`weight_gradient`] for window rows longer than [`STRIP`] (16 map channels): a task
/// sums one kernel row `ky` of one or two vectors of grid channels over a part of the
/// grid lines, its sums (`kw · c` taps × the vectors) in memory between lines and
/// [`WIDE_TAPS`] taps at a time in registers along each line, each padded map row built
/// once per line.
fn weight_gradient_wide(w: &Window, batch: usize, g: usize, big: &[f32], grid: &[f32]) -> Vec<f32> {
    let vectors = if g.is_multiple_of(2 * LANES) { 2 } else { 1 };
    let width = vectors * LANES;
    let strip = w.kw * w.c;
    assert!(
        strip.is_multiple_of(WIDE_TAPS),
        "weight_gradient_wide: a strip of {strip} taps"
    );
    weight_sums(
        w,
        (batch, g),
        (big, grid),
        width,
        |row, grid, chunk, acc| {
            for j0 in (0..strip).step_by(WIDE_TAPS) {
                let acc = &mut acc[j0 * width..][..WIDE_TAPS * width];
                // SAFETY: `fits` checked for AVX-512; `row` holds every window's taps `j0..j0
                // + WIDE_TAPS` (`padded_row_len`), `grid` the line, `acc` `WIDE_TAPS` rows of
                // the vectors.
                simd!(unsafe {
                    if vectors == 2 {
                        simd::weight_line_wide::<2>(w, g, &row[j0..], grid, chunk, acc)
                    } else {
                        simd::weight_line_wide::<1>(w, g, &row[j0..], grid, chunk, acc)
                    }
                });
            }
        },
    )
}

/// The kernels on AVX-512 vectors, one vector of 16 grid channels at a time.
#[cfg(target_arch = "x86_64")]
mod simd {
    use std::arch::x86_64::*;

    use super::{
        Block, GridRows, Lanes, Line, Window, GATHER_BLOCK, LANES, SCATTER_VECTORS, WIDE_TAPS,
    };

    /// One grid line of [`super::gather`] from its `kh` padded map rows (`rows`, one
    /// after another).
    ///
    /// # Safety
    /// AVX-512; `rows` holds `kh` rows of at least `sw·(ws − 1) + kw` positions, `out`
    /// one line (`ws · g`), `wkg` `K · g`, `bias` (if any) `g`, and `g` is a multiple of
    /// 16.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn gather_line(
        w: &Window,
        g: usize,
        rows: &[f32],
        out: &mut [f32],
        wkg: &[f32],
        bias: Option<&[f32]>,
    ) {
        debug_assert_eq!(out.len(), w.ws * g);
        // Two vectors of channels at once where `g` allows: each map value then feeds two
        // products.
        let pair = g.is_multiple_of(2 * LANES);
        // SAFETY (each arm): the caller's promise.
        unsafe {
            match (w.sw * w.c, pair) {
                (32, true) => gather_blocks::<2, 32>(w, g, rows, out, wkg, bias),
                (16, true) => gather_blocks::<2, 16>(w, g, rows, out, wkg, bias),
                (6, true) => gather_blocks::<2, 6>(w, g, rows, out, wkg, bias),
                (3, true) => gather_blocks::<2, 3>(w, g, rows, out, wkg, bias),
                (32, false) => gather_blocks::<1, 32>(w, g, rows, out, wkg, bias),
                (16, false) => gather_blocks::<1, 16>(w, g, rows, out, wkg, bias),
                (6, false) => gather_blocks::<1, 6>(w, g, rows, out, wkg, bias),
                (3, false) => gather_blocks::<1, 3>(w, g, rows, out, wkg, bias),
                (_, true) => gather_blocks::<2, 0>(w, g, rows, out, wkg, bias),
                (_, false) => gather_blocks::<1, 0>(w, g, rows, out, wkg, bias),
            }
        }
    }

    /// [`gather_line`] in blocks of [`GATHER_BLOCK`] positions and `V` vectors of grid
    /// channels, with the step between windows (`sw · c`) known at compile time where
    /// `STEP` is not 0, so that the block's map values are read at constant offsets from
    /// one pointer (see [`scatter_wide_sums`]).
    #[target_feature(enable = "avx512f")]
    unsafe fn gather_blocks<const V: usize, const STEP: usize>(
        w: &Window,
        g: usize,
        rows: &[f32],
        out: &mut [f32],
        wkg: &[f32],
        bias: Option<&[f32]>,
    ) {
        for first in (0..g).step_by(V * LANES) {
            let mut x = 0;
            while x + GATHER_BLOCK <= w.ws {
                // SAFETY: the caller's promise; `x + GATHER_BLOCK ≤ ws`, `first + 16·V ≤ g`.
                unsafe {
                    gather_block::<GATHER_BLOCK, V, STEP>(w, g, rows, x, first, bias, wkg, out)
                }
                x += GATHER_BLOCK;
            }
            for x in x..w.ws {
                // SAFETY: the caller's promise; `x < ws`, `first + 16·V ≤ g`.
                unsafe { gather_block::<1, V, STEP>(w, g, rows, x, first, bias, wkg, out) }
            }
        }
    }

    /// `R` grid positions from `x` on, channels `first..first + 16·V`: each weight vector
    /// is loaded once for the `R` positions, each map value once for the `V` vectors.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn gather_block<const R: usize, const V: usize, const STEP: usize>(
        w: &Window,
        g: usize,
        rows: &[f32],
        x: usize,
        first: usize,
        bias: Option<&[f32]>,
        wkg: &[f32],
        out: &mut [f32],
    ) {
        let strip = w.kw * w.c;
        let step = if STEP > 0 { STEP } else { w.sw * w.c };
        debug_assert_eq!(step, w.sw * w.c);
        let rw = rows.len() / w.kh;
        let start: [__m512; V] = std::array::from_fn(|v| match bias {
            // SAFETY: `bias` has `g` floats, `first + 16·V ≤ g`.
            Some(b) => unsafe { _mm512_loadu_ps(b.as_ptr().add(first + v * LANES)) },
            None => _mm512_setzero_ps(),
        });
        let mut acc = [start; R];
        for ky in 0..w.kh {
            // The block's windows in this row: `R − 1` steps and one strip.
            let row = &rows[ky * rw..][x * step..][..(R - 1) * step + strip];
            let weights = &wkg[ky * strip * g..][..strip * g];
            for j in 0..strip {
                // SAFETY: row `j` of `weights` has `g` floats, `first + 16·V ≤ g`; the
                // window taps are below `(R − 1)·step + strip`.
                unsafe {
                    let wv: [__m512; V] = std::array::from_fn(|v| {
                        _mm512_loadu_ps(weights.as_ptr().add(j * g + first + v * LANES))
                    });
                    for (r, acc) in acc.iter_mut().enumerate() {
                        let a = _mm512_set1_ps(*row.get_unchecked(r * step + j));
                        for v in 0..V {
                            acc[v] = _mm512_fmadd_ps(a, wv[v], acc[v]);
                        }
                    }
                }
            }
        }
        let out = &mut out[x * g..][..R * g];
        for (r, acc) in acc.iter().enumerate() {
            for (v, acc) in acc.iter().enumerate() {
                // SAFETY: position `r` of the block has `g` floats, `first + 16·V ≤ g`.
                unsafe { _mm512_storeu_ps(out.as_mut_ptr().add(r * g + first + v * LANES), *acc) };
            }
        }
    }

    /// One phase of one map line of [`super::scatter`]: its positions [`SCATTER_VECTORS`]
    /// vectors of 16 at a time (fewer at the end), each sum then written to its map
    /// position plus `bias`.
    ///
    /// # Safety
    /// AVX-512; `out` is one map line (`wb · C`), `wkg` `K · g`, `bias` (if any) `C`,
    /// each of `line.y_rows` the offset of a transposed grid row (`g · line.rows.width`
    /// floats) in `line.slots`, and
    /// `line.x_taps` the phase's taps.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn scatter_phase<const C: usize>(
        w: &Window,
        g: usize,
        line: &Line<'_>,
        out: &mut [f32],
        wkg: &[f32],
        bias: Option<&[f32]>,
    ) {
        let (sw, phase) = (w.sw, line.phase);
        let count = (w.wb - phase).div_ceil(sw);
        // Every read lies in the channel rows: offsets above `−kw` from the left margin
        // of `kw`, below `kw` past the last vector of positions.
        let reach = line.x_taps.iter().map(|t| t.1).max().unwrap_or(0);
        assert!(
            line.x_taps.iter().all(|t| t.1 > -(w.kw as isize))
                && line.rows.left as isize + (count.next_multiple_of(LANES) as isize + reach)
                    <= line.rows.width as isize
                && line
                    .y_rows
                    .iter()
                    .all(|r| r.1 + g * line.rows.width <= line.slots.len())
                && out.len() == w.wb * C
                && wkg.len() >= w.kh * w.kw * C * g,
            "scatter_phase: operands"
        );
        let bias: [f32; C] = std::array::from_fn(|ci| bias.map_or(0.0, |b| b[ci]));
        let mut write = |x0: usize, acc: &[[__m512; SCATTER_VECTORS]; C], vectors: usize| {
            let mut lanes = [0.0f32; LANES];
            for (ci, acc) in acc.iter().enumerate() {
                for (v, acc) in acc[..vectors].iter().enumerate() {
                    // SAFETY: `lanes` holds 16 floats.
                    unsafe { _mm512_storeu_ps(lanes.as_mut_ptr(), *acc) };
                    let first = x0 + v * LANES;
                    for (x, sum) in (first..count.min(first + LANES)).zip(lanes) {
                        out[(sw * x + phase) * C + ci] = bias[ci] + sum;
                    }
                }
            }
        };
        let mut x0 = 0;
        while x0 < count {
            let vectors = (count - x0).div_ceil(LANES).min(SCATTER_VECTORS);
            // SAFETY: the reads of these positions are inside the rows (asserted above).
            let acc = unsafe {
                match vectors {
                    4 => scatter_vectors::<C, 4>(w, g, line, x0, wkg),
                    3 => scatter_vectors::<C, 3>(w, g, line, x0, wkg),
                    2 => scatter_vectors::<C, 2>(w, g, line, x0, wkg),
                    _ => scatter_vectors::<C, 1>(w, g, line, x0, wkg),
                }
            };
            write(x0, &acc, vectors);
            x0 += vectors * LANES;
        }
    }

    /// Positions `x0..x0 + 16` of channels `g0..g0 + 16` of the grid row `cells`
    /// (`[ws, g]`) into `row`'s channel rows (16 × 16 transpose in registers).
    ///
    /// # Safety
    /// AVX-512; `cells` holds those positions and channels, `row` those channel rows and
    /// their columns `rows.left + x0..+16`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn transpose_block(
        cells: &[f32],
        g: usize,
        x0: usize,
        g0: usize,
        row: &mut [f32],
        rows: GridRows,
    ) {
        assert!((x0 + LANES - 1) * g + g0 + LANES <= cells.len());
        assert!((g0 + LANES - 1) * rows.width + rows.left + x0 + LANES <= row.len());
        // SAFETY: the 16 loads and stores are inside the slices (asserted above).
        unsafe {
            let r: [__m512; 16] =
                std::array::from_fn(|i| _mm512_loadu_ps(cells.as_ptr().add((x0 + i) * g + g0)));
            // Pairs of rows interleaved, then fours: `q[4i + j]` holds, in 128-bit lane
            // `l`, rows `4i..4i + 4` at column `4l + j`.
            let t: [__m512; 16] = std::array::from_fn(|i| {
                let (a, b) = (r[i & !1], r[i | 1]);
                if i % 2 == 0 {
                    _mm512_unpacklo_ps(a, b)
                } else {
                    _mm512_unpackhi_ps(a, b)
                }
            });
            let q: [__m512; 16] = std::array::from_fn(|i| {
                let (group, j) = (i / 4, i % 4);
                let (a, b) = (t[4 * group + j / 2], t[4 * group + 2 + j / 2]);
                if j % 2 == 0 {
                    _mm512_shuffle_ps::<0x44>(a, b)
                } else {
                    _mm512_shuffle_ps::<0xEE>(a, b)
                }
            });
            // Then the four groups' lanes gathered: column `4l + j` from lane `l` of
            // `q[j]`, `q[4 + j]`, `q[8 + j]`, `q[12 + j]`.
            for j in 0..4 {
                let low = _mm512_shuffle_f32x4::<0x88>(q[j], q[4 + j]);
                let high = _mm512_shuffle_f32x4::<0xDD>(q[j], q[4 + j]);
                let low2 = _mm512_shuffle_f32x4::<0x88>(q[8 + j], q[12 + j]);
                let high2 = _mm512_shuffle_f32x4::<0xDD>(q[8 + j], q[12 + j]);
                let columns = [
                    (j, _mm512_shuffle_f32x4::<0x88>(low, low2)),
                    (4 + j, _mm512_shuffle_f32x4::<0x88>(high, high2)),
                    (8 + j, _mm512_shuffle_f32x4::<0xDD>(low, low2)),
                    (12 + j, _mm512_shuffle_f32x4::<0xDD>(high, high2)),
                ];
                for (column, v) in columns {
                    let at = (g0 + column) * rows.width + rows.left + x0;
                    _mm512_storeu_ps(row.as_mut_ptr().add(at), v);
                }
            }
        }
    }

    /// The sums of the `16·V` positions of one phase from `X = x0` on (lane `l` of vector
    /// `v` for `X = x0 + 16·v + l`), one set of vectors per map channel; the vectors past
    /// `V` stay zero. Each lane adds its products in the order kernel row, kernel column,
    /// grid channel.
    ///
    /// # Safety
    /// AVX-512; as for [`scatter_phase`], and `V ≤ SCATTER_VECTORS`.
    #[target_feature(enable = "avx512f")]
    unsafe fn scatter_vectors<const C: usize, const V: usize>(
        w: &Window,
        g: usize,
        line: &Line<'_>,
        x0: usize,
        wkg: &[f32],
    ) -> [[__m512; SCATTER_VECTORS]; C] {
        let width = line.rows.width;
        let mut acc = [[_mm512_setzero_ps(); V]; C];
        for &(ky, offset) in line.y_rows {
            let row = &line.slots[offset..][..g * width];
            for &(kx, d) in line.x_taps {
                let start = (line.rows.left as isize + x0 as isize + d) as usize;
                let weights = wkg[(ky * w.kw + kx) * C * g..][..C * g].as_ptr();
                let cells = row.as_ptr();
                for gi in 0..g {
                    // SAFETY: channel row `gi` holds `width` floats, the positions'
                    // columns `start..start + 16·V` lie inside it (the caller's promise);
                    // `weights` has `C` rows of `g`.
                    unsafe {
                        let column: [__m512; V] = std::array::from_fn(|v| {
                            _mm512_loadu_ps(cells.add(gi * width + start + v * LANES))
                        });
                        for (ci, acc) in acc.iter_mut().enumerate() {
                            let wv = _mm512_set1_ps(*weights.add(ci * g + gi));
                            for (acc, column) in acc.iter_mut().zip(column) {
                                *acc = _mm512_fmadd_ps(column, wv, *acc);
                            }
                        }
                    }
                }
            }
        }
        std::array::from_fn(|ci| {
            std::array::from_fn(|v| {
                if v < V {
                    acc[ci][v]
                } else {
                    _mm512_setzero_ps()
                }
            })
        })
    }

    /// `R` positions of one phase of a map line from `block.x0` on (map column `sw·X +
    /// phase`), 16 map channels each, written to `out` plus `bias`; returns `R`.
    ///
    /// # Safety
    /// AVX-512; `w.c` is 16, `out` one map line (`wb · 16`), `wtc` `[tap, g, 16]`, each of
    /// `block.y_rows` a grid row with `block.margin` zero positions on each side, and
    /// every tap's column `margin + X + d` inside it for the `R` positions.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn scatter_wide_block<const R: usize>(
        w: &Window,
        g: usize,
        block: &Block<'_>,
        wtc: &[f32],
        bias: &Lanes,
        out: &mut [f32],
    ) -> usize {
        // SAFETY: the caller's promise.
        unsafe {
            match g {
                16 => scatter_wide_sums::<R, 16>(w, g, block, wtc, bias, out),
                32 => scatter_wide_sums::<R, 32>(w, g, block, wtc, bias, out),
                64 => scatter_wide_sums::<R, 64>(w, g, block, wtc, bias, out),
                _ => scatter_wide_sums::<R, 0>(w, g, block, wtc, bias, out),
            }
        }
    }

    /// [`scatter_wide_block`] with `G` grid channels known at compile time (0: `g`), so
    /// that each position's grid value is read at a constant offset from one pointer:
    /// with the offset in a register instead, every broadcast product took two
    /// micro-operations to issue, and issue, not the FMA units, bounded the loop.
    #[target_feature(enable = "avx512f")]
    unsafe fn scatter_wide_sums<const R: usize, const G: usize>(
        w: &Window,
        g: usize,
        block: &Block<'_>,
        wtc: &[f32],
        bias: &Lanes,
        out: &mut [f32],
    ) -> usize {
        let g = if G > 0 { G } else { g };
        let mut acc = [_mm512_setzero_ps(); R];
        for &(ky, offset) in block.y_rows {
            let row = &block.rows[offset..][..block.row_len];
            for &(kx, d) in block.x_taps {
                let start = (block.margin as isize + block.x0 as isize + d) as usize * g;
                debug_assert!(start + (R - 1) * g + g <= row.len());
                let cells = row.as_ptr().add(start);
                let weights = wtc[(ky * w.kw + kx) * g * LANES..][..g * LANES].as_ptr();
                for gi in 0..g {
                    // SAFETY: the caller's promise: the `R` positions' grid values and
                    // the tap's `g` weight vectors are inside `row` and `wtc`.
                    unsafe {
                        let wv = _mm512_loadu_ps(weights.add(gi * LANES));
                        for (r, acc) in acc.iter_mut().enumerate() {
                            let a = _mm512_set1_ps(*cells.add(r * g + gi));
                            *acc = _mm512_fmadd_ps(a, wv, *acc);
                        }
                    }
                }
            }
        }
        // SAFETY: `bias` holds 16 floats.
        let bias = unsafe { _mm512_loadu_ps(bias.as_ptr()) };
        for (r, acc) in acc.iter().enumerate() {
            let at = (w.sw * (block.x0 + r) + block.phase) * LANES;
            assert!(at + LANES <= out.len());
            // SAFETY: position `sw·X + phase` of the line has 16 floats (asserted).
            unsafe { _mm512_storeu_ps(out.as_mut_ptr().add(at), _mm512_add_ps(bias, *acc)) };
        }
        R
    }

    /// One grid line's products with one padded map row, added to `acc`'s `kw · c` rows of
    /// 16: for each position, the window's taps times the grid's vector.
    ///
    /// # Safety
    /// AVX-512; `row` has at least `sw·(ws − 1)·c + 16` floats, `grid` one line (`ws ·
    /// g`), `chunk < g / 16`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn weight_line(
        w: &Window,
        g: usize,
        row: &[f32],
        grid: &[f32],
        chunk: usize,
        acc: &mut [f32],
    ) {
        macro_rules! by_strip {
            ($($s:literal)*) => {
                match w.kw * w.c {
                    // SAFETY: the caller's promise.
                    $($s => unsafe { weight_line_of::<$s>(w, g, row, grid, chunk, acc) },)*
                    s => unreachable!("a strip of {s} taps (fits() allows 1 to 16)"),
                }
            };
        }
        by_strip!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16)
    }

    /// One grid line's products with one padded map row for [`super::weight_gradient_wide`]:
    /// for each position, [`WIDE_TAPS`] window taps from the start of `row` (offset by
    /// the caller) times `V` vectors of grid channels from `chunk · 16V`, added to `acc`
    /// (`[WIDE_TAPS, 16V]`).
    ///
    /// # Safety
    /// AVX-512; `row` holds `sw·c·(ws − 1) + WIDE_TAPS` floats, `grid` one line (`ws ·
    /// g`), `(chunk + 1) · 16V ≤ g`, `acc` `WIDE_TAPS · 16V` floats.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn weight_line_wide<const V: usize>(
        w: &Window,
        g: usize,
        row: &[f32],
        grid: &[f32],
        chunk: usize,
        acc: &mut [f32],
    ) {
        let step = w.sw * w.c;
        assert!(
            row.len() >= (w.ws - 1) * step + WIDE_TAPS
                && grid.len() >= w.ws * g
                && (chunk + 1) * V * LANES <= g
                && acc.len() == WIDE_TAPS * V * LANES
        );
        // SAFETY: `acc` holds the sums (asserted).
        let mut sums: [[__m512; V]; WIDE_TAPS] = std::array::from_fn(|j| {
            std::array::from_fn(|v| unsafe {
                _mm512_loadu_ps(acc.as_ptr().add((j * V + v) * LANES))
            })
        });
        let first = chunk * V * LANES;
        for x in 0..w.ws {
            // SAFETY: position `x` of the line has `g` floats, `first + 16V ≤ g`; its
            // window's taps are inside `row` (asserted above).
            unsafe {
                let cells: [__m512; V] = std::array::from_fn(|v| {
                    _mm512_loadu_ps(grid.as_ptr().add(x * g + first + v * LANES))
                });
                let window = row.as_ptr().add(x * step);
                for (j, sums) in sums.iter_mut().enumerate() {
                    let a = _mm512_set1_ps(*window.add(j));
                    for (sum, cells) in sums.iter_mut().zip(cells) {
                        *sum = _mm512_fmadd_ps(a, cells, *sum);
                    }
                }
            }
        }
        for (j, sums) in sums.iter().enumerate() {
            for (v, sum) in sums.iter().enumerate() {
                // SAFETY: `acc` holds the sums (asserted).
                unsafe { _mm512_storeu_ps(acc.as_mut_ptr().add((j * V + v) * LANES), *sum) };
            }
        }
    }

    /// [`weight_line`] for strips of `S` taps, its sums in registers for the line.
    #[target_feature(enable = "avx512f")]
    unsafe fn weight_line_of<const S: usize>(
        w: &Window,
        g: usize,
        row: &[f32],
        grid: &[f32],
        chunk: usize,
        acc: &mut [f32],
    ) {
        let step = w.sw * w.c;
        assert!(
            row.len() >= (w.ws - 1) * step + S && grid.len() >= w.ws * g && acc.len() >= S * LANES
        );
        // SAFETY: `acc` holds `S` rows of 16 floats (asserted).
        let mut sums: [__m512; S] =
            std::array::from_fn(|j| unsafe { _mm512_loadu_ps(acc.as_ptr().add(j * LANES)) });
        for x in 0..w.ws {
            // SAFETY: position `x` of the line has `g` floats, `chunk < g / 16`; its
            // window's `S` taps are inside `row` (asserted above).
            unsafe {
                let v = _mm512_loadu_ps(grid.as_ptr().add(x * g + chunk * LANES));
                let window = row.as_ptr().add(x * step);
                for (j, sum) in sums.iter_mut().enumerate() {
                    *sum = _mm512_fmadd_ps(_mm512_set1_ps(*window.add(j)), v, *sum);
                }
            }
        }
        for (j, sum) in sums.iter().enumerate() {
            // SAFETY: `acc` holds `S` rows of 16 floats (asserted).
            unsafe { _mm512_storeu_ps(acc.as_mut_ptr().add(j * LANES), *sum) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn random(len: usize, seed: u64) -> Vec<f32> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        (0..len).map(|_| rng.random_range(-1.0..1.0)).collect()
    }

    /// Random maps, grids and weight (`[K, G]`) for `w` with `g` grid channels.
    fn operands(w: &Window, batch: usize, g: usize, seed: u64) -> [Vec<f32>; 3] {
        [
            random(batch * w.big() * w.c, seed),
            random(batch * w.grid() * g, seed + 1),
            random(w.k() * g, seed + 2),
        ]
    }

    /// The three sums straight from their definition, in f64: the grid from the maps
    /// (`gather`), the maps from the grid (`scatter`) and the weight gradient.
    fn reference(
        w: &Window,
        (batch, g): (usize, usize),
        (big, grid, wkg): (&[f32], &[f32], &[f32]),
    ) -> [Vec<f64>; 3] {
        let mut to_grid = vec![0.0; batch * w.grid() * g];
        let mut to_big = vec![0.0; batch * w.big() * w.c];
        let mut dw = vec![0.0; w.k() * g];
        for n in 0..batch {
            for (y, x, ky, kx) in itertools(w) {
                let by = (w.sh * y + ky) as isize - w.ph as isize;
                let bx = (w.sw * x + kx) as isize - w.pw as isize;
                if by < 0 || bx < 0 || by as usize >= w.hb || bx as usize >= w.wb {
                    continue;
                }
                let cell = (n * w.hs + y) * w.ws + x;
                let pixel = (n * w.hb + by as usize) * w.wb + bx as usize;
                for ci in 0..w.c {
                    let row = (ky * w.kw + kx) * w.c + ci;
                    let b = big[pixel * w.c + ci] as f64;
                    for gi in 0..g {
                        let wt = wkg[row * g + gi] as f64;
                        to_grid[cell * g + gi] += b * wt;
                        to_big[pixel * w.c + ci] += grid[cell * g + gi] as f64 * wt;
                        dw[row * g + gi] += b * grid[cell * g + gi] as f64;
                    }
                }
            }
        }
        [to_grid, to_big, dw]
    }

    /// Every `(y, x, ky, kx)`.
    fn itertools(w: &Window) -> impl Iterator<Item = (usize, usize, usize, usize)> + '_ {
        (0..w.hs).flat_map(move |y| {
            (0..w.ws).flat_map(move |x| {
                (0..w.kh).flat_map(move |ky| (0..w.kw).map(move |kx| (y, x, ky, kx)))
            })
        })
    }

    fn assert_close(what: &str, got: &[f32], want: &[f64]) {
        assert_eq!(got.len(), want.len(), "{what}: length");
        let scale = want.iter().fold(1e-3f64, |m, v| m.max(v.abs()));
        let worst = got
            .iter()
            .zip(want)
            .map(|(&a, &b)| (a as f64 - b).abs())
            .fold(0.0, f64::max);
        assert!(
            worst <= 2e-6 * scale,
            "{what}: off by {worst:e} (scale {scale:e})"
        );
    }

    /// The shapes: D's first layer (5×5, stride 2) and G's last (5×5, stride 1) on odd
    /// sides, the FID Inception's first (3×3, stride 2, no padding), a transposed
    /// convolution's doubled map (4×4, stride 2, one more row and column than the windows
    /// reach), one and four channels, 16 to 48 grid channels; and lines wider than
    /// [`scatter`] sums at once (75 and 70 positions: 35 a phase). Then the same with 16
    /// map channels (gather and scatter; the weight gradient comes from window matrices
    /// in `ops`): D's second layer at base 16 and G's last but one with 32 and 16 grid
    /// channels, a stride-1 5×5, a doubled map, a line of 70 (blocks of 16, 16 and 3).
    fn cases() -> Vec<(Window, usize, usize)> {
        let doubled = |c| Window {
            hb: 13,
            wb: 11,
            ..Window::of_conv(c, (12, 10), 4, 2, 1)
        };
        vec![
            (Window::of_conv(3, (17, 14), 5, 2, 2), 2, 32),
            (Window::of_conv(3, (13, 11), 5, 1, 2), 3, 16),
            (Window::of_conv(3, (19, 21), 3, 2, 0), 1, 48),
            (Window::of_conv(1, (9, 8), 5, 1, 2), 2, 16),
            (doubled(4), 2, 16),
            (Window::of_conv(3, (4, 75), 5, 1, 2), 2, 16),
            (Window::of_conv(2, (5, 70), 5, 2, 2), 1, 32),
            (Window::of_conv(16, (17, 14), 5, 2, 2), 2, 32),
            (Window::of_conv(16, (16, 16), 5, 2, 2), 1, 16),
            (Window::of_conv(16, (9, 13), 5, 1, 2), 2, 16),
            (doubled(16), 2, 32),
            (Window::of_conv(16, (5, 70), 5, 2, 2), 1, 48),
        ]
    }

    #[test]
    fn the_sums_match_their_definition() {
        for (i, (w, batch, g)) in cases().into_iter().enumerate() {
            assert!(fits(&w, g) || !supported(), "case {i} fits the path");
            if !supported() {
                return;
            }
            let [big, grid, wkg] = operands(&w, batch, g, 1);
            let [to_grid, to_big, dw] = reference(&w, (batch, g), (&big, &grid, &wkg));
            assert_close(
                &format!("case {i} gather"),
                &gather(&w, batch, g, &big, &wkg, None, None),
                &to_grid,
            );
            assert_close(
                &format!("case {i} scatter"),
                &scatter(&w, batch, g, &grid, &wkg, None, None),
                &to_big,
            );
            assert_close(
                &format!("case {i} weight gradient"),
                &weight_gradient(&w, batch, g, &big, &grid),
                &dw,
            );
        }
    }

    /// The first case with 16 map channels.
    fn wide_case() -> (Window, usize, usize) {
        cases()
            .into_iter()
            .find(|(w, ..)| w.c == LANES)
            .expect("a case with 16 map channels")
    }

    #[test]
    fn bias_and_leak_follow_the_sums() {
        if !supported() {
            return;
        }
        for (w, batch, g) in [cases()[0], wide_case()] {
            let [big, grid, wkg] = operands(&w, batch, g, 4);
            let (grid_bias, map_bias) = (random(g, 7), random(w.c, 8));
            let slope = 0.2;
            let leaky = |v: f32, b: f32| {
                let z = v + b;
                if z < 0.0 {
                    z * slope
                } else {
                    z
                }
            };
            let plain = gather(&w, batch, g, &big, &wkg, None, None);
            let full = gather(&w, batch, g, &big, &wkg, Some(&grid_bias), Some(slope));
            for (i, (&p, &f)) in plain.iter().zip(&full).enumerate() {
                let want = leaky(p, grid_bias[i % g]);
                assert!((f - want).abs() <= 1e-5, "gather {i}: {f} vs {want}");
            }
            let plain = scatter(&w, batch, g, &grid, &wkg, None, None);
            let full = scatter(&w, batch, g, &grid, &wkg, Some(&map_bias), Some(slope));
            for (i, (&p, &f)) in plain.iter().zip(&full).enumerate() {
                let want = leaky(p, map_bias[i % w.c]);
                assert!((f - want).abs() <= 1e-5, "scatter {i}: {f} vs {want}");
            }
        }
    }

    #[test]
    fn results_do_not_depend_on_the_threads() {
        if !supported() {
            return;
        }
        for (w, batch, g) in [cases()[0], wide_case()] {
            let [big, grid, wkg] = operands(&w, batch, g, 9);
            let on = |threads: usize| {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                pool.install(|| {
                    [
                        gather(&w, batch, g, &big, &wkg, None, None),
                        scatter(&w, batch, g, &grid, &wkg, None, None),
                        weight_gradient(&w, batch, g, &big, &grid),
                    ]
                })
            };
            assert_eq!(on(1), on(3));
        }
    }

    #[test]
    fn the_path_takes_few_map_channels_and_whole_vectors_of_grid_channels() {
        let w = Window::of_conv(3, (16, 16), 5, 2, 2);
        assert_eq!(fits(&w, 16), supported());
        assert_eq!(fits(&w, 64), supported());
        assert!(!fits(&w, 24), "grid channels not a multiple of 16");
        assert!(
            !fits(&Window::of_conv(5, (16, 16), 5, 2, 2), 16),
            "5 map channels"
        );
        assert_eq!(
            fits(&Window::of_conv(16, (16, 16), 5, 2, 2), 32),
            supported(),
            "16 map channels: one vector"
        );
        assert!(
            !fits(&Window::of_conv(32, (16, 16), 5, 2, 2), 32),
            "32 map channels"
        );
        assert!(
            !fits(&Window::of_conv(3, (16, 16), 7, 2, 3), 16),
            "a strip of 21 taps"
        );
        assert!(
            !fits(&Window::of_conv(3, (16, 16), 1, 1, 0), 16),
            "1×1: no windows to sum"
        );
    }
}
