//! Winograd's minimal filtering for stride-1 convolutions: fewer multiplications for the
//! same convolution.
//!
//! A 1-D transform `F(m, r)` computes `m` outputs of an `r`-tap filter from
//! `α = m + r − 1` inputs with `α` multiplications instead of `m · r`
//! (`y = Aᵀ[(G g) ⊙ (Bᵀ d)]`); the 2-D one applies a transform along each axis. A 3×3
//! convolution in tiles of 4×4 outputs, `F(4×4, 3×3)`, takes 36 products per tile
//! instead of 144. Over a batch, each of the `α²` tile points is one GEMM between the
//! transformed input tiles `[tiles, c]` and the transformed weight `[c, g]`
//! (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2016).
//!
//! The flex fast path uses it for stride-1 convolutions: their forward products (in
//! inference, as the FID Inception's, and in training) and, in training, their input
//! gradients (a stride-1 convolution of the output gradient) and weight gradients; and,
//! through [`phases`](crate::phases), for stride-2 ones. `F(4, 3)` runs along an axis
//! of 3 taps, `F(4, 5)` along one of 5 (`F(2, 5)` where the map is under 16 wide) and
//! `F(2, 7)` along one of 7: `3×3` in 36 products per 16 outputs instead of 144, `5×5` in
//! 64 per 16 instead of 400 (36 per 4 instead of 100), `1×7` / `7×1` in 8 per 2 instead
//! of 14; only where the map is at least 4 tiles wide along each transformed axis (below
//! that the transforms cost more than they save). In training their weight
//! gradients take the backward filter pass: per tile point, the transformed input tiles
//! against the output gradient's tiles transformed by `A`, `dU = Σ Vᵀ · (A dY Aᵀ)` over the
//! batch's tiles, then `dW = Gᵀ dU G`.
//!
//! The sums are the same up to float rounding, which the transforms' larger constants
//! (up to 8 in `F(4, 3)`'s `Aᵀ`, 21/4 in `F(2, 7)`'s and `F(4, 5)`'s `Bᵀ`) make coarser:
//! on a random 64-channel 3×3 layer, `F(4×4, 3×3)`'s largest error is 4.6e-6 of the
//! output's scale (`F(2×2, 3×3)`'s 3.8e-7); on a 5×5 one `F(4×4, 5×5)`'s 7.4e-6
//! (`F(2×2, 5×5)`'s 4.8e-6). Through the whole Inception the features stay as close to
//! PyTorch's as without it (catgan's `reference_features` test checks both paths, and
//! `docs/performance.md`, change 18, gives the figures). [`enable`]`(false)` turns it off
//! for the process.
//!
//! Like every kernel here it is deterministic: tiles are grouped by the shapes alone and
//! each output is written by one task.

use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::buffers::{par_vec, par_vec_split_uninit, with_scratch, Uninit};
use crate::kernels::{self, Mat, Window};
use crate::profile;
use crate::wide::wide;

static ENABLED: AtomicBool = AtomicBool::new(true);

/// Switches the Winograd path on (the default) or off for the whole process. Off, every
/// convolution takes the window-matrix path, as before catgan's performance.md, change
/// 18, the stride-2 ones too ([`phases`](crate::phases), change 20): the same results to
/// float rounding, slower. For comparing the two paths; nothing
/// needs it off. A backward pass whose forward pass ran with it on still works off.
pub fn enable(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Whether the Winograd path is on (see [`enable`]).
pub fn is_enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// One axis's transform `F(m, r)`: `m` outputs of an `r`-tap filter from
/// `α = m + r − 1` inputs.
#[derive(Debug, PartialEq)]
pub(crate) struct Axis {
    /// Outputs per tile.
    pub m: usize,
    /// Filter taps.
    pub r: usize,
    /// The input transform `Bᵀ`, `α × α`, row-major.
    bt: &'static [f32],
    /// The filter transform `G`, `α × r`, row-major.
    g: &'static [f32],
    /// The output transform `Aᵀ`, `m × α`, row-major.
    at: &'static [f32],
}

impl Axis {
    /// Inputs per tile, `m + r − 1`.
    pub fn alpha(&self) -> usize {
        self.m + self.r - 1
    }
}

/// A 1-tap axis: nothing to transform (the `1` of a `1×3` kernel).
const ONE_TAP: Axis = Axis {
    m: 1,
    r: 1,
    bt: &[1.0],
    g: &[1.0],
    at: &[1.0],
};

/// `F(4, 3)` on the points `0, ±1, ±2, ∞` (Lavin & Gray's matrices).
#[rustfmt::skip]
const F4_3: Axis = Axis {
    m: 4,
    r: 3,
    bt: &[
        4.0,  0.0, -5.0,  0.0, 1.0, 0.0,
        0.0, -4.0, -4.0,  1.0, 1.0, 0.0,
        0.0,  4.0, -4.0, -1.0, 1.0, 0.0,
        0.0, -2.0, -1.0,  2.0, 1.0, 0.0,
        0.0,  2.0, -1.0, -2.0, 1.0, 0.0,
        0.0,  4.0,  0.0, -5.0, 0.0, 1.0,
    ],
    g: &[
        1.0 / 4.0,   0.0,         0.0,
        -1.0 / 6.0,  -1.0 / 6.0,  -1.0 / 6.0,
        -1.0 / 6.0,  1.0 / 6.0,   -1.0 / 6.0,
        1.0 / 24.0,  1.0 / 12.0,  1.0 / 6.0,
        1.0 / 24.0,  -1.0 / 12.0, 1.0 / 6.0,
        0.0,         0.0,         1.0,
    ],
    at: &[
        1.0, 1.0,  1.0, 1.0,  1.0, 0.0,
        0.0, 1.0, -1.0, 2.0, -2.0, 0.0,
        0.0, 1.0,  1.0, 4.0,  4.0, 0.0,
        0.0, 1.0, -1.0, 8.0, -8.0, 1.0,
    ],
};

/// `F(2, 5)` on the same points as [`F4_3`] (so the same `Bᵀ`): the 5×5 kernels.
#[rustfmt::skip]
const F2_5: Axis = Axis {
    m: 2,
    r: 5,
    bt: F4_3.bt,
    g: &[
        1.0 / 4.0,   0.0,         0.0,        0.0,         0.0,
        -1.0 / 6.0,  -1.0 / 6.0,  -1.0 / 6.0, -1.0 / 6.0,  -1.0 / 6.0,
        -1.0 / 6.0,  1.0 / 6.0,   -1.0 / 6.0, 1.0 / 6.0,   -1.0 / 6.0,
        1.0 / 24.0,  1.0 / 12.0,  1.0 / 6.0,  1.0 / 3.0,   2.0 / 3.0,
        1.0 / 24.0,  -1.0 / 12.0, 1.0 / 6.0,  -1.0 / 3.0,  2.0 / 3.0,
        0.0,         0.0,         0.0,        0.0,         1.0,
    ],
    at: &[
        1.0, 1.0,  1.0, 1.0,  1.0, 0.0,
        0.0, 1.0, -1.0, 2.0, -2.0, 1.0,
    ],
};

/// `F(2, 7)` on the points `0, ±1, ±2, ±1/2, ∞` (constructed as Lavin & Gray's: `Aᵀ`
/// the points' powers, `G` the powers over `∏(aⱼ − aₗ)`, `Bᵀ` solved exactly for them):
/// the Inception's `1×7` and `7×1` kernels, 8 products per 2 outputs instead of 14.
#[rustfmt::skip]
const F2_7: Axis = Axis {
    m: 2,
    r: 7,
    bt: &[
        -1.0,  0.0,  5.25,  0.0,  -5.25,  0.0,  1.0, 0.0,
        0.0,   1.0,  1.0,   -4.25, -4.25, 1.0,  1.0, 0.0,
        0.0,   -1.0, 1.0,   4.25, -4.25,  -1.0, 1.0, 0.0,
        0.0,   0.5,  0.25,  -2.5, -1.25,  2.0,  1.0, 0.0,
        0.0,   -0.5, 0.25,  2.5,  -1.25,  -2.0, 1.0, 0.0,
        0.0,   2.0,  4.0,   -2.5, -5.0,   0.5,  1.0, 0.0,
        0.0,   -2.0, 4.0,   2.5,  -5.0,   -0.5, 1.0, 0.0,
        0.0,   -1.0, 0.0,   5.25, 0.0,    -5.25, 0.0, 1.0,
    ],
    g: &[
        -1.0,        0.0,         0.0,        0.0,         0.0,        0.0,         0.0,
        -2.0 / 9.0,  -2.0 / 9.0,  -2.0 / 9.0, -2.0 / 9.0,  -2.0 / 9.0, -2.0 / 9.0,  -2.0 / 9.0,
        -2.0 / 9.0,  2.0 / 9.0,   -2.0 / 9.0, 2.0 / 9.0,   -2.0 / 9.0, 2.0 / 9.0,   -2.0 / 9.0,
        1.0 / 90.0,  1.0 / 45.0,  2.0 / 45.0, 4.0 / 45.0,  8.0 / 45.0, 16.0 / 45.0, 32.0 / 45.0,
        1.0 / 90.0,  -1.0 / 45.0, 2.0 / 45.0, -4.0 / 45.0, 8.0 / 45.0, -16.0 / 45.0, 32.0 / 45.0,
        32.0 / 45.0, 16.0 / 45.0, 8.0 / 45.0, 4.0 / 45.0,  2.0 / 45.0, 1.0 / 45.0,  1.0 / 90.0,
        32.0 / 45.0, -16.0 / 45.0, 8.0 / 45.0, -4.0 / 45.0, 2.0 / 45.0, -1.0 / 45.0, 1.0 / 90.0,
        0.0,         0.0,         0.0,        0.0,         0.0,        0.0,         1.0,
    ],
    at: &[
        1.0, 1.0,  1.0, 1.0,  1.0, 1.0,  1.0,  0.0,
        0.0, 1.0, -1.0, 2.0, -2.0, 0.5, -0.5, 1.0,
    ],
};

/// `F(4, 5)` on the points of [`F2_7`] (so its `Bᵀ`): the 5×5 kernels on maps with at
/// least [`MIN_TILES`] tiles of 4, 4 products per output instead of [`F2_5`]'s 9.
#[rustfmt::skip]
const F4_5: Axis = Axis {
    m: 4,
    r: 5,
    bt: F2_7.bt,
    g: &[
        -1.0,        0.0,         0.0,        0.0,         0.0,
        -2.0 / 9.0,  -2.0 / 9.0,  -2.0 / 9.0, -2.0 / 9.0,  -2.0 / 9.0,
        -2.0 / 9.0,  2.0 / 9.0,   -2.0 / 9.0, 2.0 / 9.0,   -2.0 / 9.0,
        1.0 / 90.0,  1.0 / 45.0,  2.0 / 45.0, 4.0 / 45.0,  8.0 / 45.0,
        1.0 / 90.0,  -1.0 / 45.0, 2.0 / 45.0, -4.0 / 45.0, 8.0 / 45.0,
        32.0 / 45.0, 16.0 / 45.0, 8.0 / 45.0, 4.0 / 45.0,  2.0 / 45.0,
        32.0 / 45.0, -16.0 / 45.0, 8.0 / 45.0, -4.0 / 45.0, 2.0 / 45.0,
        0.0,         0.0,         0.0,        0.0,         1.0,
    ],
    at: &[
        1.0, 1.0,  1.0, 1.0,  1.0, 1.0,   1.0,    0.0,
        0.0, 1.0, -1.0, 2.0, -2.0, 0.5,   -0.5,   0.0,
        0.0, 1.0,  1.0, 4.0,  4.0, 0.25,  0.25,   0.0,
        0.0, 1.0, -1.0, 8.0, -8.0, 0.125, -0.125, 1.0,
    ],
};

/// `F(2, 3)` on the points `0, ±1, ∞`.
#[rustfmt::skip]
#[cfg_attr(not(test), allow(dead_code))]
const F2_3: Axis = Axis {
    m: 2,
    r: 3,
    bt: &[
        1.0,  0.0, -1.0,  0.0,
        0.0,  1.0,  1.0,  0.0,
        0.0, -1.0,  1.0,  0.0,
        0.0,  1.0,  0.0, -1.0,
    ],
    g: &[
        1.0,  0.0, 0.0,
        0.5,  0.5, 0.5,
        0.5, -0.5, 0.5,
        0.0,  0.0, 1.0,
    ],
    at: &[
        1.0, 1.0,  1.0,  0.0,
        0.0, 1.0, -1.0, -1.0,
    ],
};

/// The transforms of a convolution along its height and width.
#[derive(Debug, PartialEq)]
pub(crate) struct Plan {
    /// Along the height.
    pub h: &'static Axis,
    /// Along the width.
    pub w: &'static Axis,
}

/// The axis transforms for `r` taps, the most outputs a tile first (empty if there is
/// none): 5 taps take [`F4_5`]'s tiles of 4 where the map has enough of them, else
/// [`F2_5`]'s tiles of 2.
fn axes(r: usize) -> &'static [&'static Axis] {
    match r {
        1 => &[&ONE_TAP],
        3 => &[&F4_3],
        5 => &[&F4_5, &F2_5],
        7 => &[&F2_7],
        _ => &[],
    }
}

/// The Winograd plan for a convolution's window, if it has one and it pays: stride 1,
/// each kernel axis 1, 3, 5 or 7 taps (`3×3`, `1×3`, `3×1`, `5×5`, `1×7`, `7×1`; not
/// `1×1`), and at least [`MIN_TILES`] tiles along each transformed axis (16 positions for
/// 3 taps, 8 for 5 and 7; 5 taps take [`F4_5`]'s tiles of 4 from 16 positions on, which
/// took a third off seed128's stride-1 5×5 layer against [`F2_5`]'s tiles of 2:
/// docs/performance.md, change 28). On the Inception's 8×8 maps the transforms cost more
/// than the products they save (docs/performance.md, change 18).
pub(crate) fn plan(w: &Window) -> Option<Plan> {
    is_enabled().then(|| shape_plan(w, MIN_TILES)).flatten()
}

/// Fewest tiles along a transformed axis for [`plan`].
pub(crate) const MIN_TILES: usize = 4;

/// [`plan`] by the shapes alone, whether or not the path is [`enable`]d, with at least
/// `min_tiles` tiles along each transformed axis (for the [`phases`](crate::phases) of
/// stride-2 convolutions, which have a switch and a rule of their own).
pub(crate) fn shape_plan(w: &Window, min_tiles: usize) -> Option<Plan> {
    if (w.sh, w.sw) != (1, 1) || (w.kh, w.kw) == (1, 1) {
        return None;
    }
    // Along each axis, the transform with the most outputs a tile that the map has
    // enough tiles for.
    let pick = |r: usize, grid: usize| {
        axes(r)
            .iter()
            .copied()
            .find(|a| a.m == 1 || grid >= min_tiles * a.m)
    };
    Some(Plan {
        h: pick(w.kh, w.hs)?,
        w: pick(w.kw, w.ws)?,
    })
}

/// Floats of transformed tiles (input and product, all tile points) a group of tiles
/// aims at: 2 MiB (1, 4 and 8 MiB ran the Inception 1–3% slower, one run each), so that
/// the tiles stay in the cache between the transforms and the GEMMs.
const GROUP_FLOATS: usize = 1 << 19;

/// Fewest tiles a group holds, where the layer has them and the weight of a tile point
/// is at least [`LARGE_WEIGHT`]: each GEMM packs that weight (`c × g`) for the group's
/// tiles, so with hundreds of channels the [`GROUP_FLOATS`] rule's 4–16 tiles spent most
/// of a GEMM packing (36–47 GFLOP/s a thread at seed128 base 64, against 80–90 for the
/// window matrices; docs/performance.md, change 22).
const MIN_GROUP_TILES: usize = 128;

/// Floats of a tile point's weight (`c × g`) from which [`MIN_GROUP_TILES`] applies:
/// 128 KiB (seed128 base 64's layers on its widest maps, 128 × 256, ran 5–8% faster with
/// it). Smaller weights stay in the cache from one group to the next: at 64 × 128 (dcgan64
/// base 32) larger groups ran the step 2–9% slower.
const LARGE_WEIGHT: usize = 1 << 15;

/// Fewest groups a layer's tiles split into under [`MIN_GROUP_TILES`], where it has the
/// tile rows: the groups run in parallel, so fewer would leave a core idle on a 2-core
/// machine (machines with more cores thread the GEMMs of a layer with fewer groups than
/// threads instead).
const MIN_GROUPS: usize = 2;

/// Tile rows per group, for `rows` tile rows of `row_tiles` tiles and `row_floats`
/// transformed floats (input and product, all tile points), with a tile point's weight
/// of `weight_floats`: [`GROUP_FLOATS`]' worth, or for a [`LARGE_WEIGHT`]
/// [`MIN_GROUP_TILES`] if that is more (in at least [`MIN_GROUPS`] groups); at least
/// one. By the shapes alone, so that a weight gradient's sums never depend on the threads.
fn group_rows(row_floats: usize, row_tiles: usize, rows: usize, weight_floats: usize) -> usize {
    let cached = (GROUP_FLOATS / row_floats.max(1)).max(1);
    if weight_floats < LARGE_WEIGHT {
        return cached;
    }
    let packed = MIN_GROUP_TILES.div_ceil(row_tiles.max(1));
    cached.max(packed.min(rows.div_ceil(MIN_GROUPS)))
}

/// Whether a layer's `groups` leave threads idle, so that each GEMM should thread
/// itself (its results are the same either way: gemm splits the outputs, never the sums).
fn thread_gemms(groups: usize) -> bool {
    groups < rayon::current_num_threads()
}

/// A layer's tiles in groups: tile rows (a row of tiles across one image) in batch order,
/// `per_group` consecutive ones a group, sized by [`group_rows`]. The forward products
/// and the weight gradient group alike.
struct TileGroups {
    /// Tiles per image along the height and the width.
    th: usize,
    tw: usize,
    /// Tile rows in the batch.
    rows: usize,
    /// Tile rows per group.
    per_group: usize,
}

impl TileGroups {
    fn of(p: &Plan, w: &Window, batch: usize, g: usize) -> Self {
        let points = p.h.alpha() * p.w.alpha();
        let (th, tw) = (w.hs.div_ceil(p.h.m), w.ws.div_ceil(p.w.m));
        let rows = batch * th;
        let per_group = group_rows(points * (w.c + g) * tw, tw, rows, w.c * g);
        TileGroups {
            th,
            tw,
            rows,
            per_group,
        }
    }

    fn count(&self) -> usize {
        self.rows.div_ceil(self.per_group)
    }

    /// Group `q`'s tile rows, `first..last`.
    fn rows_of(&self, q: usize) -> (usize, usize) {
        let first = q * self.per_group;
        (first, (first + self.per_group).min(self.rows))
    }
}

/// `dst = Σₖ coef(k) · src(k)` for `k < n` (at most [`MAX_TERMS`]), skipping zero
/// coefficients: the transforms' sums, over whole channel vectors, in one pass over
/// `dst` (each product and sum rounded on its own, in `k` order, so the result is the
/// same with or without wider vector units).
#[inline(always)]
fn combine<'a>(
    dst: &mut [f32],
    n: usize,
    coef: impl Fn(usize) -> f32,
    src: impl Fn(usize) -> &'a [f32],
) {
    let len = dst.len();
    let mut coefs = [0.0f32; MAX_TERMS];
    let mut srcs: [&[f32]; MAX_TERMS] = [&[]; MAX_TERMS];
    let mut terms = 0;
    for k in 0..n {
        let a = coef(k);
        if a != 0.0 {
            (coefs[terms], srcs[terms]) = (a, &src(k)[..len]);
            terms += 1;
        }
    }
    sum_terms(dst, terms, &coefs, &srcs);
}

/// Most terms of one transform sum (`α` of `F(2, 7)`).
const MAX_TERMS: usize = 8;

/// `dst[e] = Σₖ coefs[k] · srcs[k][e]` for the first `terms` terms (zeros for none), by
/// the [`sum_of`] of that many.
#[inline(always)]
fn sum_terms(dst: &mut [f32], terms: usize, coefs: &[f32; MAX_TERMS], srcs: &[&[f32]; MAX_TERMS]) {
    match terms {
        0 => dst.fill(0.0),
        1 => sum_of::<1>(dst, coefs, srcs),
        2 => sum_of::<2>(dst, coefs, srcs),
        3 => sum_of::<3>(dst, coefs, srcs),
        4 => sum_of::<4>(dst, coefs, srcs),
        5 => sum_of::<5>(dst, coefs, srcs),
        6 => sum_of::<6>(dst, coefs, srcs),
        7 => sum_of::<7>(dst, coefs, srcs),
        _ => sum_of::<8>(dst, coefs, srcs),
    }
}

/// `dst[e] = Σₖ coefs[k] · srcs[k][e]` for the first `N` terms, element by element.
#[inline(always)]
fn sum_of<const N: usize>(dst: &mut [f32], coefs: &[f32; MAX_TERMS], srcs: &[&[f32]; MAX_TERMS]) {
    let len = dst.len();
    assert!(srcs[..N].iter().all(|s| s.len() == len), "term lengths");
    for (e, d) in dst.iter_mut().enumerate() {
        // SAFETY: every term has `len` elements (asserted above) and `e < len`.
        let mut acc = coefs[0] * unsafe { *srcs[0].get_unchecked(e) };
        for k in 1..N {
            acc += coefs[k] * unsafe { *srcs[k].get_unchecked(e) };
        }
        *d = acc;
    }
}

/// The nonzero coefficients of a transform's rows (`count` of them, each over at most
/// [`MAX_TERMS`] sources), found once per group of tiles for [`combine_rows`].
#[derive(Clone, Copy)]
struct Rows {
    count: usize,
    /// Sources each row combines.
    sources: usize,
    /// Nonzero terms per row.
    lens: [usize; MAX_TERMS],
    /// Each row's terms in source order: `(source, coefficient)`.
    terms: [[(usize, f32); MAX_TERMS]; MAX_TERMS],
}

impl Rows {
    /// The rows `j < count` of the matrix `coef(j, k)`, `k < sources`.
    fn new(count: usize, sources: usize, coef: impl Fn(usize, usize) -> f32) -> Self {
        assert!(count <= MAX_TERMS && sources <= MAX_TERMS, "transform size");
        let mut rows = Rows {
            count,
            sources,
            lens: [0; MAX_TERMS],
            terms: [[(0, 0.0); MAX_TERMS]; MAX_TERMS],
        };
        for j in 0..count {
            for k in 0..sources {
                let a = coef(j, k);
                if a != 0.0 {
                    rows.terms[j][rows.lens[j]] = (k, a);
                    rows.lens[j] += 1;
                }
            }
        }
        rows
    }
}

/// `dst[at(j) + e] = Σₖ coef(j, k) · src(k)[e]` for every row `j` of `rows` and `e <
/// len`: [`combine`] row by row (the same products and sums in the same order, so the same
/// roundings), with each row's nonzero coefficients and each source's slice found once
/// per call rather than once per row: with the short channel vectors of dcgan64's tiles
/// (32–128 floats) that set-up was a good part of a transform (its input transform ran
/// 15% faster without it).
#[inline(always)]
fn combine_rows<'a>(
    rows: &Rows,
    len: usize,
    src: impl Fn(usize) -> &'a [f32],
    dst: &mut [f32],
    at: impl Fn(usize) -> usize,
) {
    // Each source's slice once (the closures may branch or index).
    let mut srcs: [&[f32]; MAX_TERMS] = [&[]; MAX_TERMS];
    for (k, s) in srcs[..rows.sources].iter_mut().enumerate() {
        *s = &src(k)[..len];
    }
    for j in 0..rows.count {
        let out = &mut dst[at(j)..][..len];
        let mut coefs = [0.0f32; MAX_TERMS];
        let mut terms: [&[f32]; MAX_TERMS] = [&[]; MAX_TERMS];
        let n = rows.lens[j];
        for (t, &(k, a)) in rows.terms[j][..n].iter().enumerate() {
            (coefs[t], terms[t]) = (a, srcs[k]);
        }
        sum_terms(out, n, &coefs, &terms);
    }
}

/// Defines `$name`, which runs `$body` (an `#[inline(always)]` function of the same
/// arguments) compiled for AVX-512 or AVX2 where the CPU has them, else as built
/// ([`wide!`]): the transforms' sums then run on 16 or 8 floats at once, with the same
/// roundings.
macro_rules! with_wide_vectors {
    ($(#[$doc:meta])* fn $name:ident => $body:ident($($arg:ident: $ty:ty),* $(,)?)) => {
        $(#[$doc])*
        #[allow(clippy::too_many_arguments)]
        fn $name($($arg: $ty),*) {
            wide!({ $body($($arg),*) })
        }
    };
}

with_wide_vectors! {
    /// [`input_tiles`] on the widest vectors the CPU has.
    fn transform_input => input_tiles(
        p: &Plan,
        w: &Window,
        x: &[f32],
        rows: (usize, usize),
        tiling: (usize, usize),
        v: &mut [f32],
        buf: &mut [f32],
    )
}

with_wide_vectors! {
    /// [`output_tiles`] on the widest vectors the CPU has.
    fn transform_output => output_tiles(
        p: &Plan,
        w: &Window,
        g: usize,
        m: &[f32],
        rows: (usize, usize),
        tiling: (usize, usize),
        bias: &[f32],
        slope: Option<f32>,
        out: &mut Uninit,
        base: usize,
        buf: &mut [f32],
    )
}

/// The weight `[g, c, kh, kw]` transformed: `α_h · α_w` matrices `[c, g]`, one per tile
/// point, `U = G_h · w · G_wᵀ` for every `(c, g)`.
fn transform_weight(p: &Plan, weight: &[f32], g: usize, c: usize) -> Vec<f32> {
    let (kh, kw) = (p.h.r, p.w.r);
    let (ah, aw) = (p.h.alpha(), p.w.alpha());
    let slab = c * g;
    // `[(ky, kx, c), g]`: each tap's `[c, g]` matrix is one contiguous slab.
    let wkg = kernels::weight_to_kg(weight, g, c, kh, kw);
    // Along the height: `[(i, kx), c, g]`.
    let half = par_vec(ah * kw * slab, slab, |ikx, out| {
        let (i, kx) = (ikx / kw, ikx % kw);
        combine(
            out,
            kh,
            |ky| p.h.g[i * kh + ky],
            |ky| &wkg[(ky * kw + kx) * slab..],
        );
    });
    // Along the width: `[(i, j), c, g]`.
    par_vec(ah * aw * slab, slab, |ij, out| {
        let (i, j) = (ij / aw, ij % aw);
        combine(
            out,
            kw,
            |kx| p.w.g[j * kw + kx],
            |kx| &half[(i * kw + kx) * slab..],
        );
    })
}

/// The fast path's leaky ReLU factor (as `kernels::leaky_in_place` applies it): `slope`
/// below zero, else 1; branch-free, so that the output loop runs on whole vectors.
#[inline(always)]
fn leak(z: f32, slope: f32) -> f32 {
    if z < 0.0 {
        slope
    } else {
        1.0
    }
}

/// A stride-1 convolution by plan `p`: `x` is `[n, hb, wb, c]` (channels-last), the
/// parameters are `weight` `[g, c, kh, kw]` and `bias` `[g]`; the output is
/// `[n, hs, ws, g]` with the bias added and, with `slope`, a leaky ReLU applied.
pub(crate) fn conv_forward(
    p: &Plan,
    w: &Window,
    batch: usize,
    g: usize,
    x: &[f32],
    (weight, bias): (&[f32], &[f32]),
    slope: Option<f32>,
) -> Vec<f32> {
    let c = w.c;
    assert_eq!((w.kh, w.kw, w.sh, w.sw), (p.h.r, p.w.r, 1, 1), "plan");
    assert_eq!(x.len(), batch * w.big() * c, "input size");
    assert_eq!(bias.len(), g, "bias size");
    let (ah, aw) = (p.h.alpha(), p.w.alpha());
    let points = ah * aw;
    let u = profile::thread_timed("winograd weight", 0.0, || transform_weight(p, weight, g, c));
    let groups = TileGroups::of(p, w, batch, g);
    let (th, tw) = (groups.th, groups.tw);
    let threaded = thread_gemms(groups.count());
    // Where tile row `r`'s outputs start: they are whole output rows of one image.
    let start = |r: usize| {
        let (n, ty) = (r / th, r % th);
        ((n * w.hs + (ty * p.h.m).min(w.hs)) * w.ws) * g
    };
    let ends: Vec<usize> = (0..groups.count())
        .map(|q| start(groups.rows_of(q).1))
        .collect();
    let fill = |q: usize, out: &mut Uninit| {
        let (first_row, last_row) = groups.rows_of(q);
        let tiles = (last_row - first_row) * tw;
        let base = start(first_row);
        let small = (2 * ah * aw * c).max((p.h.m * aw + p.w.m) * g);
        with_scratch(points * tiles * c + points * tiles * g + small, |scratch| {
            let (v, rest) = scratch.split_at_mut(points * tiles * c);
            let (m, buf) = rest.split_at_mut(points * tiles * g);
            {
                profile::thread_timed("winograd in", 0.0, || {
                    transform_input(p, w, x, (first_row, last_row), (th, tw), v, buf)
                });
                for xi in 0..points {
                    let flops = 2.0 * (tiles * c * g) as f64;
                    profile::thread_timed("gemm winograd", flops, || {
                        kernels::gemm(
                            (tiles, g, c),
                            &mut m[xi * tiles * g..][..tiles * g],
                            false,
                            Mat::rows(&v[xi * tiles * c..][..tiles * c], c),
                            Mat::rows(&u[xi * c * g..][..c * g], g),
                            threaded,
                        )
                    });
                }
                profile::thread_timed("winograd out", 0.0, || {
                    let rows = (first_row, last_row);
                    transform_output(p, w, g, m, rows, (th, tw), bias, slope, out, base, buf)
                });
            }
        });
    };
    // SAFETY: the tiles of a group's tile rows cover every output of those rows, each
    // written once by `transform_output`.
    unsafe { par_vec_split_uninit(&ends, fill) }
}

/// Slots of a [`weight_gradient`]: consecutive groups of tiles add their parts into one
/// slot, the slots run in parallel and are summed in order. A fixed number, so that the
/// sums' order depends on the shapes alone (never on the threads); 4 keep 1, 2 or 4
/// threads busy.
const WEIGHT_SLOTS: usize = 4;

/// The weight gradient of a stride-1 convolution by plan `p` (Winograd's backward filter
/// pass): `x` its input `[n, hb, wb, c]`, `dy` its output gradient `[n, hs, ws, g]`; the
/// gradient as `[(ky, kx), c, g]`. Per tile point `ξ`, `dU[ξ] = Σ_tiles V[ξ]ᵀ · M[ξ]` with
/// `V` the input tiles transformed as in [`conv_forward`] and `M = A · dY · Aᵀ` the output
/// gradient's tiles (the output transform's transpose); then `dW = Gᵀ · dU · G`.
pub(crate) fn weight_gradient(
    p: &Plan,
    w: &Window,
    batch: usize,
    g: usize,
    x: &[f32],
    dy: &[f32],
) -> Vec<f32> {
    let c = w.c;
    assert_eq!((w.kh, w.kw, w.sh, w.sw), (p.h.r, p.w.r, 1, 1), "plan");
    assert_eq!(x.len(), batch * w.big() * c, "input size");
    assert_eq!(dy.len(), batch * w.grid() * g, "output gradient size");
    let (ah, aw) = (p.h.alpha(), p.w.alpha());
    let points = ah * aw;
    let tile_groups = TileGroups::of(p, w, batch, g);
    let (th, tw) = (tile_groups.th, tile_groups.tw);
    let groups = tile_groups.count();
    let slots = WEIGHT_SLOTS.min(groups).max(1);
    let threaded = thread_gemms(slots);
    let part = points * c * g;
    let run = |s: usize| (s * groups / slots)..((s + 1) * groups / slots);
    let mut parts = par_vec(slots * part, part, |s, du| {
        if run(s).is_empty() {
            return; // an empty batch: a zero part
        }
        for (j, q) in run(s).enumerate() {
            let (first_row, last_row) = tile_groups.rows_of(q);
            let tiles = (last_row - first_row) * tw;
            let small = (2 * ah * aw * c).max(p.h.m * p.w.m * g + ah * p.w.m * g);
            with_scratch(points * tiles * (c + g) + small, |scratch| {
                let (v, rest) = scratch.split_at_mut(points * tiles * c);
                let (m, buf) = rest.split_at_mut(points * tiles * g);
                let rows = (first_row, last_row);
                profile::thread_timed("winograd in", 0.0, || {
                    transform_input(p, w, x, rows, (th, tw), v, buf)
                });
                profile::thread_timed("winograd dy", 0.0, || {
                    transform_gradient(p, w, g, dy, rows, (th, tw), m, buf)
                });
                for xi in 0..points {
                    let flops = 2.0 * (tiles * c * g) as f64;
                    profile::thread_timed("gemm winograd dW", flops, || {
                        kernels::gemm(
                            (c, g, tiles),
                            &mut du[xi * c * g..][..c * g],
                            j > 0,
                            Mat::transposed(&v[xi * tiles * c..][..tiles * c], c),
                            Mat::rows(&m[xi * tiles * g..][..tiles * g], g),
                            threaded,
                        )
                    });
                }
            });
        }
    });
    // The slots' sum, in order, into the first slot (no second copy of `dU`, which is
    // 36 tile points × c × g: 302 MB for seed128 base 64's widest layer).
    let slab = c * g;
    kernels::sum_parts_in_place(&mut parts, part);
    let du = &parts[..part];
    // `Gᵀ · dU · G`: along the height into `[(ky, j), c, g]`, then the width.
    let (kh, kw) = (p.h.r, p.w.r);
    let half = par_vec(kh * aw * slab, slab, |kyj, out| {
        let (ky, j) = (kyj / aw, kyj % aw);
        combine(
            out,
            ah,
            |i| p.h.g[i * kh + ky],
            |i| &du[(i * aw + j) * slab..],
        );
    });
    drop(parts);
    par_vec(kh * kw * slab, slab, |k, out| {
        let (ky, kx) = (k / kw, k % kw);
        combine(
            out,
            aw,
            |j| p.w.g[j * kw + kx],
            |j| &half[(ky * aw + j) * slab..],
        );
    })
}

with_wide_vectors! {
    /// [`gradient_tiles`] on the widest vectors the CPU has.
    fn transform_gradient => gradient_tiles(
        p: &Plan,
        w: &Window,
        g: usize,
        dy: &[f32],
        rows: (usize, usize),
        tiling: (usize, usize),
        m: &mut [f32],
        buf: &mut [f32],
    )
}

/// The output gradient's tiles of tile rows `first..last` (`rows`) transformed, `A · dY ·
/// Aᵀ` (zeros outside the grid): `m` is `[α_h · α_w, tiles, g]`; `buf` holds
/// `m_h · m_w · g + α_h · m_w · g`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn gradient_tiles(
    p: &Plan,
    w: &Window,
    g: usize,
    dy: &[f32],
    (first, last): (usize, usize),
    (th, tw): (usize, usize),
    m: &mut [f32],
    buf: &mut [f32],
) {
    let (ah, aw) = (p.h.alpha(), p.w.alpha());
    let (mh, mw) = (p.h.m, p.w.m);
    let tiles = (last - first) * tw;
    let row_len = mw * g;
    let down = Rows::new(ah, mh, |i, a| p.h.at[a * ah + i]);
    let across = Rows::new(aw, mw, |j, b| p.w.at[b * aw + j]);
    let (d, half) = buf[..(mh + ah) * row_len].split_at_mut(mh * row_len);
    for (t, (r, tx)) in (first..last)
        .flat_map(|r| (0..tw).map(move |tx| (r, tx)))
        .enumerate()
    {
        let (n, ty) = (r / th, r % th);
        // The tile's `m_h × m_w` gradients, zeros outside the grid.
        let cols = mw.min(w.ws - tx * mw);
        for (a, row) in d.chunks_exact_mut(row_len).enumerate() {
            let oy = ty * mh + a;
            if oy >= w.hs {
                row.fill(0.0);
                continue;
            }
            let src = ((n * w.hs + oy) * w.ws + tx * mw) * g;
            row[..cols * g].copy_from_slice(&dy[src..src + cols * g]);
            row[cols * g..].fill(0.0);
        }
        let d: &[f32] = d;
        // Along the height: `[i, b, g]` (a 1-tap height has `α = m = 1`: a copy).
        combine_rows(&down, row_len, |a| &d[a * row_len..], half, |i| i * row_len);
        let half: &[f32] = half;
        // Along the width, channel vector by channel vector, into the tile points.
        for i in 0..ah {
            let at = |j: usize| ((i * aw + j) * tiles + t) * g;
            combine_rows(&across, g, |b| &half[(i * mw + b) * g..], m, at);
        }
    }
}

/// Transformed input tiles of tile rows `first..last` (`rows`) of `(th, tw)` tiles per
/// image (`tiling`): `v` is `[α_h · α_w, tiles, c]`; `buf` holds `2 · α_h · α_w · c`.
#[inline(always)]
fn input_tiles(
    p: &Plan,
    w: &Window,
    x: &[f32],
    (first, last): (usize, usize),
    (th, tw): (usize, usize),
    v: &mut [f32],
    buf: &mut [f32],
) {
    let c = w.c;
    let (ah, aw) = (p.h.alpha(), p.w.alpha());
    let tiles = (last - first) * tw;
    let row_len = aw * c;
    let down = Rows::new(ah, ah, |i, k| p.h.bt[i * ah + k]);
    let across = Rows::new(aw, aw, |j, l| p.w.bt[j * aw + l]);
    {
        let (d, half) = buf[..2 * ah * row_len].split_at_mut(ah * row_len);
        for (t, (r, tx)) in (first..last)
            .flat_map(|r| (0..tw).map(move |tx| (r, tx)))
            .enumerate()
        {
            let (n, ty) = (r / th, r % th);
            // The tile's `α_h × α_w` inputs: straight from the map for a tile inside it,
            // else copied with zeros outside the map.
            let y0 = (ty * p.h.m) as isize - w.ph as isize;
            let x0 = (tx * p.w.m) as isize - w.pw as isize;
            let inside = y0 >= 0 && x0 >= 0 && y0 as usize + ah <= w.hb && x0 as usize + aw <= w.wb;
            if !inside {
                let xs = x0.max(0) as usize;
                let xe = ((x0 + aw as isize).min(w.wb as isize)).max(xs as isize) as usize;
                for (i, row) in d.chunks_exact_mut(row_len).enumerate() {
                    let y = y0 + i as isize;
                    if y < 0 || y >= w.hb as isize || xs >= xe {
                        row.fill(0.0);
                        continue;
                    }
                    let lead = (xs as isize - x0) as usize * c;
                    let len = (xe - xs) * c;
                    row[..lead].fill(0.0);
                    let src = ((n * w.hb + y as usize) * w.wb + xs) * c;
                    row[lead..lead + len].copy_from_slice(&x[src..src + len]);
                    row[lead + len..].fill(0.0);
                }
            }
            let d: &[f32] = d;
            let input_row = |i: usize| -> &[f32] {
                if inside {
                    let y = y0 as usize + i;
                    &x[((n * w.hb + y) * w.wb + x0 as usize) * c..][..row_len]
                } else {
                    &d[i * row_len..][..row_len]
                }
            };
            // Along the height, whole rows of the tile at once (nothing to do for a
            // 1-tap height).
            if ah > 1 {
                combine_rows(&down, row_len, input_row, half, |i| i * row_len);
            }
            let half: &[f32] = half;
            let half_row = |i: usize| {
                if ah > 1 {
                    &half[i * row_len..][..row_len]
                } else {
                    input_row(i)
                }
            };
            // Along the width, channel vector by channel vector, into the tile points.
            for i in 0..ah {
                let half = half_row(i);
                let at = |j: usize| ((i * aw + j) * tiles + t) * c;
                combine_rows(&across, c, |l| &half[l * c..], v, at);
            }
        }
    }
}

/// Outputs of tile rows `first..last` (`rows`) from their products `m`
/// (`[α_h · α_w, tiles, g]`), written into `out`, which starts at element `base` of the
/// whole output; `buf` holds `(m_h · α_w + m_w) · g`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn output_tiles(
    p: &Plan,
    w: &Window,
    g: usize,
    m: &[f32],
    (first, last): (usize, usize),
    (th, tw): (usize, usize),
    bias: &[f32],
    slope: Option<f32>,
    out: &mut Uninit,
    base: usize,
    buf: &mut [f32],
) {
    let (ah, aw) = (p.h.alpha(), p.w.alpha());
    let (mh, mw) = (p.h.m, p.w.m);
    let tiles = (last - first) * tw;
    let slope = slope.unwrap_or(1.0);
    let down = Rows::new(mh, ah, |a, i| p.h.at[a * ah + i]);
    let across = Rows::new(mw, aw, |b, j| p.w.at[b * aw + j]);
    {
        let (half, y) = buf[..mh * aw * g + mw * g].split_at_mut(mh * aw * g);
        for (t, (r, tx)) in (first..last)
            .flat_map(|r| (0..tw).map(move |tx| (r, tx)))
            .enumerate()
        {
            let (n, ty) = (r / th, r % th);
            let product = |i: usize, j: usize| &m[((i * aw + j) * tiles + t) * g..][..g];
            // Along the height: `[a, j, g]` (nothing to do for a 1-tap height).
            if ah > 1 {
                for j in 0..aw {
                    combine_rows(&down, g, |i| product(i, j), half, |a| (a * aw + j) * g);
                }
            }
            let half: &[f32] = half;
            let half_at = |a: usize, j: usize| {
                if ah > 1 {
                    &half[(a * aw + j) * g..][..g]
                } else {
                    product(a, j)
                }
            };
            // Along the width, then bias and activation, for the outputs inside the map.
            for a in 0..mh.min(w.hs - ty * mh) {
                let oy = ty * mh + a;
                combine_rows(&across, g, |j| half_at(a, j), y, |b| b * g);
                for b in 0..mw.min(w.ws - tx * mw) {
                    let ox = tx * mw + b;
                    let y = &y[b * g..][..g];
                    let at = ((n * w.hs + oy) * w.ws + ox) * g - base;
                    for ((o, &z), &b) in out[at..at + g].iter_mut().zip(y).zip(bias) {
                        let z = z + b;
                        *o = MaybeUninit::new(z * leak(z, slope));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The direct convolution, `[n, hb, wb, c]` → `[n, hs, ws, g]`, in f64.
    fn direct(w: &Window, n: usize, g: usize, x: &[f32], weight: &[f32], bias: &[f32]) -> Vec<f64> {
        let mut out = vec![0.0f64; n * w.grid() * g];
        for b in 0..n {
            for oy in 0..w.hs {
                for ox in 0..w.ws {
                    for o in 0..g {
                        let mut s = bias[o] as f64;
                        for ky in 0..w.kh {
                            for kx in 0..w.kw {
                                let y = (oy + ky) as isize - w.ph as isize;
                                let xx = (ox + kx) as isize - w.pw as isize;
                                if y < 0 || xx < 0 || y >= w.hb as isize || xx >= w.wb as isize {
                                    continue;
                                }
                                let (y, xx) = (y as usize, xx as usize);
                                for ci in 0..w.c {
                                    let xv = x[((b * w.hb + y) * w.wb + xx) * w.c + ci];
                                    let wv = weight[((o * w.c + ci) * w.kh + ky) * w.kw + kx];
                                    s += xv as f64 * wv as f64;
                                }
                            }
                        }
                        out[((b * w.hs + oy) * w.ws + ox) * g + o] = s;
                    }
                }
            }
        }
        out
    }

    fn random(len: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
            })
            .collect()
    }

    /// A window of `c` channels on an `hb × wb` map, stride 1, with the output size that
    /// `pad` on both sides gives.
    fn window(
        c: usize,
        (hb, wb): (usize, usize),
        (kh, kw): (usize, usize),
        (ph, pw): (usize, usize),
    ) -> Window {
        Window {
            c,
            hb,
            wb,
            hs: hb + 2 * ph + 1 - kh,
            ws: wb + 2 * pw + 1 - kw,
            kh,
            kw,
            sh: 1,
            sw: 1,
            ph,
            pw,
        }
    }

    /// Largest error relative to the output's largest magnitude, and whether `slope`'s
    /// activation was applied.
    fn check(p: &Plan, w: &Window, n: usize, g: usize, slope: Option<f32>) -> f64 {
        let x = random(n * w.big() * w.c, 1);
        let weight = random(g * w.c * w.kh * w.kw, 2);
        let bias = random(g, 3);
        let ours = conv_forward(p, w, n, g, &x, (&weight, &bias), slope);
        let reference = direct(w, n, g, &x, &weight, &bias);
        assert_eq!(ours.len(), reference.len());
        let scale = reference.iter().fold(0.0f64, |a, &b| a.max(b.abs()));
        ours.iter()
            .zip(&reference)
            .map(|(&o, &r)| {
                (o as f64 - slope.map_or(r, |s| if r < 0.0 { r * s as f64 } else { r })).abs()
            })
            .fold(0.0, f64::max)
            / scale
    }

    #[test]
    fn the_transforms_compute_the_filter() {
        // One dimension, each transform: Aᵀ[(G g) ⊙ (Bᵀ d)] against the direct sum.
        for a in [&F4_3, &F2_5, &F4_5, &F2_7, &F2_3, &ONE_TAP] {
            let alpha = a.alpha();
            let d = random(alpha, 7);
            let f = random(a.r, 8);
            let gf: Vec<f64> = (0..alpha)
                .map(|i| {
                    (0..a.r)
                        .map(|k| a.g[i * a.r + k] as f64 * f[k] as f64)
                        .sum()
                })
                .collect();
            let bd: Vec<f64> = (0..alpha)
                .map(|i| {
                    (0..alpha)
                        .map(|k| a.bt[i * alpha + k] as f64 * d[k] as f64)
                        .sum()
                })
                .collect();
            for o in 0..a.m {
                let y: f64 = (0..alpha)
                    .map(|i| a.at[o * alpha + i] as f64 * gf[i] * bd[i])
                    .sum();
                let direct: f64 = (0..a.r).map(|k| d[o + k] as f64 * f[k] as f64).sum();
                assert!(
                    (y - direct).abs() < 1e-6,
                    "F({}, {}) output {o}: {y} vs {direct}",
                    a.m,
                    a.r
                );
            }
        }
    }

    #[test]
    fn combine_rows_rounds_exactly_as_combine_row_by_row() {
        // Every transform matrix, both ways round, on vectors shorter than, equal to and
        // longer than a vector unit, with a destination stride that leaves gaps.
        for a in [&ONE_TAP, &F4_3, &F2_5, &F4_5, &F2_7] {
            let alpha = a.alpha();
            let matrices: [(usize, usize, &[f32], bool); 4] = [
                (alpha, alpha, a.bt, false),
                (a.m, alpha, a.at, false),
                (alpha, a.m, a.at, true),
                (alpha, a.r, a.g, false),
            ];
            for (count, sources, matrix, transposed) in matrices {
                let coef = |j: usize, k: usize| match transposed {
                    false => matrix[j * sources + k],
                    true => matrix[k * count + j],
                };
                for len in [3, 16, 37] {
                    let src = random(sources * len, (count * 100 + len) as u64);
                    let stride = len + 5;
                    let mut got = vec![f32::NAN; count * stride];
                    let rows = Rows::new(count, sources, coef);
                    combine_rows(&rows, len, |k| &src[k * len..], &mut got, |j| j * stride);
                    for j in 0..count {
                        let mut want = vec![0.0; len];
                        combine(&mut want, sources, |k| coef(j, k), |k| &src[k * len..]);
                        let row = &got[j * stride..][..len];
                        assert!(
                            row.iter()
                                .zip(&want)
                                .all(|(x, y)| x.to_bits() == y.to_bits()),
                            "F({}, {}), row {j} of {count}, length {len}",
                            a.m,
                            a.r
                        );
                        assert!(got[j * stride + len..][..5].iter().all(|v| v.is_nan()));
                    }
                }
            }
        }
    }

    #[test]
    fn it_matches_the_direct_convolution() {
        // Maps that end inside a tile, padding 0 and 1, the Inception's kernel shapes,
        // several groups of tiles, and the fused activation.
        let cases = [
            ((3, 3), (1, 1), (17, 19), 5, 7, 2, None),
            ((3, 3), (0, 0), (18, 20), 4, 6, 3, Some(0.0)),
            ((1, 3), (0, 1), (9, 18), 6, 5, 2, None),
            ((3, 1), (1, 0), (18, 9), 6, 5, 2, Some(0.2)),
            ((3, 3), (1, 1), (35, 35), 48, 64, 2, Some(0.0)),
            ((5, 5), (2, 2), (35, 35), 48, 64, 2, Some(0.0)),
            ((5, 5), (0, 0), (13, 12), 3, 4, 2, None),
            ((5, 5), (2, 2), (16, 18), 8, 16, 2, Some(0.2)),
            ((1, 7), (0, 3), (17, 17), 40, 24, 2, None),
            ((7, 1), (3, 0), (17, 17), 24, 40, 2, Some(0.0)),
            // A large weight per tile point (128 × 256): groups of at least 128 tiles (two
            // groups of 10 tile rows), and one group whose GEMMs thread themselves.
            ((3, 3), (1, 1), (16, 16), 128, 256, 5, None),
            ((3, 3), (1, 1), (16, 16), 128, 256, 2, None),
        ];
        for (k, pad, map, c, g, n, slope) in cases {
            let w = window(c, map, k, pad);
            let p = plan(&w).expect("a Winograd plan");
            let err = check(&p, &w, n, g, slope);
            assert!(err < 1e-5, "{k:?} pad {pad:?} on {map:?}: error {err:e}");
        }
    }

    #[test]
    fn the_weight_gradient_matches_the_direct_sum() {
        // Maps that end inside a tile, both paddings, 1-tap and 7-tap axes, and enough
        // tile rows for several groups in each of the slots.
        let cases = [
            ((3, 3), (1, 1), (17, 19), 5, 7, 2),
            ((3, 3), (0, 0), (18, 20), 4, 6, 3),
            ((5, 5), (2, 2), (13, 12), 6, 5, 2),
            ((5, 5), (2, 2), (18, 17), 6, 5, 2),
            ((1, 7), (0, 3), (17, 17), 8, 6, 2),
            ((3, 3), (1, 1), (64, 64), 48, 32, 4),
            // A large weight per tile point: two groups of 10 tile rows, one slot each.
            ((3, 3), (1, 1), (16, 16), 128, 256, 5),
        ];
        for (k, pad, map, c, g, n) in cases {
            let w = window(c, map, k, pad);
            let p = plan(&w).expect("a Winograd plan");
            let x = random(n * w.big() * c, 4);
            let dy = random(n * w.grid() * g, 5);
            let ours = weight_gradient(&p, &w, n, g, &x, &dy);
            // `[(ky, kx), c, g]`: Σ over images and positions of input × output gradient.
            let mut reference = vec![0.0f64; w.kh * w.kw * c * g];
            for b in 0..n {
                for (oy, ox) in (0..w.hs).flat_map(|y| (0..w.ws).map(move |x| (y, x))) {
                    for (ky, kx) in (0..w.kh).flat_map(|y| (0..w.kw).map(move |x| (y, x))) {
                        let y = (oy + ky) as isize - w.ph as isize;
                        let xx = (ox + kx) as isize - w.pw as isize;
                        if y < 0 || xx < 0 || y >= w.hb as isize || xx >= w.wb as isize {
                            continue;
                        }
                        let pixel = (b * w.hb + y as usize) * w.wb + xx as usize;
                        let cell = (b * w.hs + oy) * w.ws + ox;
                        for ci in 0..c {
                            for o in 0..g {
                                reference[((ky * w.kw + kx) * c + ci) * g + o] +=
                                    x[pixel * c + ci] as f64 * dy[cell * g + o] as f64;
                            }
                        }
                    }
                }
            }
            let scale = reference.iter().fold(0.0f64, |a, &b| a.max(b.abs()));
            let err = ours
                .iter()
                .zip(&reference)
                .map(|(&o, &r)| (o as f64 - r).abs())
                .fold(0.0, f64::max)
                / scale;
            assert!(err < 1e-5, "{k:?} pad {pad:?} on {map:?}: error {err:e}");
        }
    }

    #[test]
    fn large_weights_get_groups_of_at_least_128_tiles_in_at_least_two_groups() {
        // Small weights: the cache's worth (2¹⁹ floats), even beyond the layer's rows.
        assert_eq!(group_rows(1 << 12, 4, 10, 1 << 14), 128);
        assert_eq!(group_rows(1 << 21, 4, 10, 1 << 14), 1);
        // Large ones: 128 tiles (64 rows of 2) where that leaves two groups…
        assert_eq!(group_rows(36 * 3072 * 2, 2, 128, 2048 * 1024), 64);
        // …fewer where it would not…
        assert_eq!(group_rows(36 * 3072 * 2, 2, 40, 2048 * 1024), 20);
        // …and never fewer than the cache's worth.
        assert_eq!(group_rows(1 << 12, 4, 100, 1 << 16), 128);
    }

    #[test]
    fn f2x2_stays_within_1e_6_and_f4x4_within_1e_5_of_the_exact_sum() {
        let w = window(64, (17, 17), (3, 3), (1, 1));
        let f4 = check(&Plan { h: &F4_3, w: &F4_3 }, &w, 2, 32, None);
        let f2 = check(&Plan { h: &F2_3, w: &F2_3 }, &w, 2, 32, None);
        let w5 = window(64, (17, 17), (5, 5), (2, 2));
        let f4_5 = check(&Plan { h: &F4_5, w: &F4_5 }, &w5, 2, 32, None);
        let f2_5 = check(&Plan { h: &F2_5, w: &F2_5 }, &w5, 2, 32, None);
        eprintln!(
            "F(2x2, 3x3) {f2:e}, F(4x4, 3x3) {f4:e}, F(2x2, 5x5) {f2_5:e}, F(4x4, 5x5) {f4_5:e}"
        );
        assert!(
            f2 < 1e-6 && f4 < 1e-5 && f2_5 < 1e-5 && f4_5 < 1e-5,
            "F(2x2, 3x3) {f2:e}, F(4x4, 3x3) {f4:e}, F(2x2, 5x5) {f2_5:e}, F(4x4, 5x5) {f4_5:e}"
        );
    }

    #[test]
    fn only_stride_1_kernels_with_transforms_on_large_enough_maps_get_a_plan() {
        let w = window(8, (17, 17), (3, 3), (1, 1));
        assert_eq!(plan(&w), Some(Plan { h: &F4_3, w: &F4_3 }));
        assert_eq!(
            plan(&window(8, (17, 17), (1, 3), (0, 1))),
            Some(Plan {
                h: &ONE_TAP,
                w: &F4_3
            })
        );
        assert_eq!(
            plan(&Window {
                sh: 2,
                sw: 2,
                hs: 8,
                ws: 8,
                ..w
            }),
            None
        );
        assert_eq!(plan(&window(8, (17, 17), (1, 1), (0, 0))), None);
        // 5×5: 4 outputs a tile from 16 positions on, else 2.
        assert_eq!(
            plan(&window(8, (35, 35), (5, 5), (2, 2))),
            Some(Plan { h: &F4_5, w: &F4_5 })
        );
        assert_eq!(
            plan(&window(8, (15, 16), (5, 5), (2, 2))),
            Some(Plan { h: &F2_5, w: &F4_5 })
        );
        assert_eq!(plan(&window(8, (7, 7), (5, 5), (2, 2))), None);
        assert_eq!(
            plan(&window(8, (17, 17), (7, 1), (3, 0))),
            Some(Plan {
                h: &F2_7,
                w: &ONE_TAP
            })
        );
        assert_eq!(plan(&window(8, (17, 17), (1, 2), (0, 0))), None);
        assert_eq!(plan(&window(8, (8, 8), (3, 3), (1, 1))), None);
        assert_eq!(plan(&window(8, (8, 8), (1, 3), (0, 1))), None);
    }
}
