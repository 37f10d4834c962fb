//! Stride-2 convolutions as stride-1 ones over the map's four phases, so that
//! [`winograd`]'s transforms can shorten them.
//!
//! A stride-2 window reads the big map's even rows and columns with some of its taps and
//! the odd ones with the others. Split the big map `[n, 2h, 2w, c]` into its four phases
//! (even or odd row, even or odd column) and stack them as channels, `[n, h, w, 4c]`, and
//! the stride-2 `k×k` convolution is a stride-1 convolution of that stack on the grid's
//! own `h × w` size, with a kernel of `⌈k/2⌉`-ish taps per axis whose missing taps are
//! zero: a `5×5` window with padding 2 becomes a `3×3` one with padding 1 over `4c`
//! channels (25 of its 36 taps non-zero), as does a `4×4` one with padding 1 (16 of 36).
//! The transposed convolution is the same stride-1 convolution's transpose: a stride-1
//! convolution of the grid with the weight turned round, whose `4c` output channels are
//! the big map's four phases.
//!
//! As stride-1 `3×3` convolutions, Winograd's `F(4×4, 3×3)` computes them in 36 products
//! per 16 outputs: for a `5×5` stride-2 layer, 9 multiply-adds per output and input channel
//! instead of 25. The flex fast path does this for the forward products and input
//! gradients of stride-2 convolutions and transposed convolutions (a DCGAN's every layer
//! but the first and last), wherever Winograd has a plan for the phase convolution (a grid
//! at least 16 wide, or 8 wide with at least 512 channels on each side, or with 64 and a
//! batch of at least 128 tiles) and the layer has at least 32 channels on each side (with
//! fewer, the transforms cost what the products save). Their weight gradients take Winograd's backward filter pass on the same stacked
//! phases ([`winograd`]'s `weight_gradient`), whose 36 tap sums are mapped back to the 25
//! of the `5×5` kernel.
//!
//! The sums are the same up to float rounding (Winograd's; the phase split itself only
//! moves values). [`enable`]`(false)` turns it off for the process, as does
//! [`winograd::enable`]`(false)`.

use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::buffers::{par_vec, par_vec_uninit, Uninit};
use crate::kernels::{self, Window};
use crate::profile;
use crate::winograd::{self, Plan};

static ENABLED: AtomicBool = AtomicBool::new(true);

/// Switches the phase split on (the default) or off for the whole process. Off, stride-2
/// convolutions take the window-matrix path, as before catgan's performance.md, change
/// 20: the same results to float rounding, slower. For comparing the two paths; nothing
/// needs it off. A backward pass whose forward pass ran with it on still works off.
pub fn enable(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Whether the phase split is on (see [`enable`]).
pub fn is_enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// How one axis of a stride-2 window splits: each phase's kernel has `taps` taps, the
/// first of which reaches `pad` positions before the output's own.
#[derive(Clone, Copy, Debug, PartialEq)]
struct AxisSplit {
    taps: usize,
    pad: usize,
}

impl AxisSplit {
    /// The split of a `k`-tap, stride-2 axis with padding `p < k`: tap `kk` reads big
    /// position `2o + kk − p`, which is phase `q` at `o + t` with `kk − p = 2t + q`.
    fn of(k: usize, p: usize) -> Self {
        let first = -(p.div_ceil(2) as isize);
        let last = (k as isize - 1 - p as isize).div_euclid(2);
        AxisSplit {
            taps: (last - first + 1) as usize,
            pad: (-first) as usize,
        }
    }

    /// The big kernel's tap that phase `q`'s tap `t` stands for, if there is one.
    fn big_tap(self, k: usize, p: usize, q: usize, t: usize) -> Option<usize> {
        let kk = 2 * t as isize - 2 * self.pad as isize + q as isize + p as isize;
        (0..k as isize).contains(&kk).then_some(kk as usize)
    }
}

/// A stride-2 convolution's phase split, with Winograd's plans for it.
#[derive(Debug)]
pub(crate) struct Phases {
    /// The stride-2 window itself (over the big map).
    big: Window,
    /// The stride-1 window over the stacked phases: `4c` channels on the grid's size.
    stacked: Window,
    /// The stride-1 window of the stacked convolution's transpose: the grid's channels
    /// (set per call) on its own size, the padding on the other side.
    turned: Window,
    /// Winograd's plan for [`Self::stacked`].
    forward: Plan,
    /// Winograd's plan for [`Self::turned`].
    transposed: Plan,
}

/// The phase split of window `w` (with `g` grid channels, `batch` images) where it
/// applies and pays: [`enable`]d, and Winograd's path too ([`winograd::enable`]), stride
/// 2 on both axes, a big map exactly twice the grid, a Winograd plan for the stacked
/// convolution and its transpose (at least 4 tiles a side, or 2 as [`Phases::of`]
/// allows), and at least [`MIN_CHANNELS`] channels on each side.
pub(crate) fn plan(w: &Window, g: usize, batch: usize) -> Option<Phases> {
    let wide = w.c >= MIN_CHANNELS && g >= MIN_CHANNELS;
    (is_enabled() && winograd::is_enabled() && wide)
        .then(|| Phases::of(w, g, batch))
        .flatten()
}

/// Fewest channels on either side of a layer split into phases. With 16 channels on the
/// map side (64 stacked) and 32 on the grid side the transforms of each tile cost about
/// what the products save: a DCGAN's 16 → 32 layers ran 0–25% slower split, its 32 → 64
/// and wider ones 10–35% faster (catgan's docs/performance.md, change 20).
const MIN_CHANNELS: usize = 32;

/// Fewest channels on either side of a layer split into phases on a grid with only 2
/// Winograd tiles a side (a grid of 8 for `F(4×4, 3×3)`), whatever its batch. With
/// 512 → 1024 (seed128 base 64) the split took 25–45% off those layers (catgan's
/// docs/performance.md, change 22).
const MIN_CHANNELS_FEW_TILES: usize = 512;

/// Fewest channels on either side of a layer split on a grid with 2 tiles a side when
/// its batch has at least [`MIN_BATCH_TILES`] tiles: with the weights reordered in
/// cache-sized runs, a DCGAN's 64 → 128 and 256 → 128 layers on grids of 8 ran 5–37%
/// faster split at batch 32 and 64, and 29–76% slower at batch 16 (64 tiles), where
/// each tile point's product is too short (docs/performance.md, change 28).
const MIN_CHANNELS_FEW_TILES_BATCH: usize = 64;

/// Fewest tiles in a batch for [`MIN_CHANNELS_FEW_TILES_BATCH`].
const MIN_BATCH_TILES: usize = 128;

/// Tiles a side below [`winograd::MIN_TILES`] that a layer with
/// [`MIN_CHANNELS_FEW_TILES`] (or [`MIN_CHANNELS_FEW_TILES_BATCH`] and enough tiles)
/// may split with.
const FEW_TILES: usize = 2;

impl Phases {
    /// [`plan`] without the switches and the channel floor, for a layer with `g` grid
    /// channels and `batch` images: the backward pass of a forward pass that split.
    pub(crate) fn of(w: &Window, g: usize, batch: usize) -> Option<Self> {
        let at_least = |channels| w.c >= channels && g >= channels;
        if at_least(MIN_CHANNELS_FEW_TILES_BATCH) {
            let few = Self::with_tiles(w, FEW_TILES).filter(|p| {
                let (m_h, m_w) = (p.forward.h.m, p.forward.w.m);
                let tiles = batch * w.hs.div_ceil(m_h) * w.ws.div_ceil(m_w);
                at_least(MIN_CHANNELS_FEW_TILES) || tiles >= MIN_BATCH_TILES
            });
            if few.is_some() {
                return few;
            }
        }
        Self::with_tiles(w, winograd::MIN_TILES)
    }

    /// The split of `w` with at least `min_tiles` Winograd tiles a side, if it has one.
    fn with_tiles(w: &Window, min_tiles: usize) -> Option<Self> {
        let exact = (w.hb, w.wb) == (2 * w.hs, 2 * w.ws);
        if (w.sh, w.sw) != (2, 2) || !exact || w.ph >= w.kh || w.pw >= w.kw || w.hs == 0 {
            return None;
        }
        let (sy, sx) = (AxisSplit::of(w.kh, w.ph), AxisSplit::of(w.kw, w.pw));
        let stacked = Window {
            c: 4 * w.c,
            hb: w.hs,
            wb: w.ws,
            hs: w.hs,
            ws: w.ws,
            kh: sy.taps,
            kw: sx.taps,
            sh: 1,
            sw: 1,
            ph: sy.pad,
            pw: sx.pad,
        };
        if stacked.ph >= stacked.kh || stacked.pw >= stacked.kw {
            return None;
        }
        let turned = Window {
            ph: stacked.kh - 1 - stacked.ph,
            pw: stacked.kw - 1 - stacked.pw,
            ..stacked
        };
        Some(Phases {
            big: *w,
            stacked,
            turned,
            forward: winograd::shape_plan(&stacked, min_tiles)?,
            transposed: winograd::shape_plan(&turned, min_tiles)?,
        })
    }

    /// Every tap of the big kernel with where it sits in the stacked one: `(q, t, k)`,
    /// phase `q` (`2·qy + qx`), stacked tap `t` (`ty · tw + tx`), big tap `k`
    /// (`ky · kw + kx`). The stacked taps not listed are zero.
    fn taps(&self) -> Vec<(usize, usize, usize)> {
        let (w, s) = (&self.big, &self.stacked);
        let (sy, sx) = (AxisSplit::of(w.kh, w.ph), AxisSplit::of(w.kw, w.pw));
        let mut taps = Vec::with_capacity(w.kh * w.kw);
        for (q, (qy, qx)) in PHASES.into_iter().enumerate() {
            for ty in 0..s.kh {
                for tx in 0..s.kw {
                    let ky = sy.big_tap(w.kh, w.ph, qy, ty);
                    let kx = sx.big_tap(w.kw, w.pw, qx, tx);
                    if let (Some(ky), Some(kx)) = (ky, kx) {
                        taps.push((q, ty * s.kw + tx, ky * w.kw + kx));
                    }
                }
            }
        }
        taps
    }

    /// The weight `[g, c, kh, kw]` as the stacked convolution's `[g, 4c, th, tw]`, phase
    /// `(qy, qx)`'s channels at `(2·qy + qx)·c`, zero where a phase has no tap.
    ///
    /// One output channel per task, input channel by input channel: each reads its
    /// kernel's `kh · kw` taps once and writes them into its four phase kernels (taking
    /// the taps across the whole weight, tap by tap, read each kernel 25 times from
    /// beyond the cache: 3.5 ms a call for a 256 × 128 × 5 × 5 weight; performance.md,
    /// change 28).
    pub(crate) fn weight(&self, weight: &[f32], g: usize) -> Vec<f32> {
        let (w, s) = (&self.big, &self.stacked);
        let (big_taps, taps) = (w.kh * w.kw, s.kh * s.kw);
        assert_eq!(weight.len(), g * w.c * big_taps, "weight shape");
        let moves = self.taps();
        par_vec(g * s.c * taps, s.c * taps, |gi, out| {
            for ci in 0..w.c {
                let kernel = &weight[(gi * w.c + ci) * big_taps..][..big_taps];
                for &(q, t, k) in &moves {
                    out[(q * w.c + ci) * taps + t] = kernel[k];
                }
            }
        })
    }

    /// The stride-2 convolution: `x` the big maps `[n, hb, wb, c]`, `weight` from
    /// [`Self::weight`] (`g` output channels), `bias` `[g]`; the grid `[n, hs, ws, g]`
    /// with the bias added and, with `slope`, a leaky ReLU applied.
    pub(crate) fn conv(
        &self,
        batch: usize,
        g: usize,
        x: &[f32],
        (weight, bias): (&[f32], &[f32]),
        slope: Option<f32>,
    ) -> Vec<f32> {
        let stacked = profile::thread_timed("phases split", 0.0, || self.split(batch, x));
        winograd::conv_forward(
            &self.forward,
            &self.stacked,
            batch,
            g,
            &stacked,
            (weight, bias),
            slope,
        )
    }

    /// The stride-2 transposed convolution (the transpose of [`Self::conv`]): `x` the
    /// grid `[n, hs, ws, g]`, `weight` from [`Self::weight`], `bias` `[c]`; the big maps
    /// `[n, hb, wb, c]` with the bias added and, with `slope`, a leaky ReLU applied.
    pub(crate) fn conv_transposed(
        &self,
        batch: usize,
        g: usize,
        x: &[f32],
        (weight, bias): (&[f32], &[f32]),
        slope: Option<f32>,
    ) -> Vec<f32> {
        let s = &self.stacked;
        let turned_weight = kernels::weight_turned_round(weight, g, s.c, s.kh, s.kw);
        let phase_bias = bias.repeat(4);
        let turned = Window {
            c: g,
            ..self.turned
        };
        let stacked = winograd::conv_forward(
            &self.transposed,
            &turned,
            batch,
            s.c,
            x,
            (&turned_weight, &phase_bias),
            slope,
        );
        profile::thread_timed("phases join", 0.0, || self.join(batch, &stacked))
    }

    /// The weight gradient `[g, c, kh, kw]` of the stride-2 convolution with input `big`
    /// (`[n, hb, wb, c]`) and output gradient `grid` (`[n, hs, ws, g]`), by Winograd's
    /// backward filter pass on the stacked phases (the taps no phase has are not
    /// computed back). For a transposed convolution, `big` is its output gradient and
    /// `grid` its input: it is the same sum.
    pub(crate) fn weight_gradient(
        &self,
        batch: usize,
        g: usize,
        big: &[f32],
        grid: &[f32],
    ) -> Vec<f32> {
        let stacked = profile::thread_timed("phases split", 0.0, || self.split(batch, big));
        let (w, s) = (&self.big, &self.stacked);
        let dws = winograd::weight_gradient(&self.forward, s, batch, g, &stacked, grid);
        // `dws` is `[taps, 4c, g]`: each task takes 16 output channels, input channel by
        // input channel, so that its reads are runs of 16 and its writes stay in cache
        // (written tap by tap across the whole weight, they were 25 strided passes).
        let big_taps = w.kh * w.kw;
        let moves = self.taps();
        const CHANNELS: usize = 16;
        let per_task = CHANNELS * w.c * big_taps;
        par_vec(g * w.c * big_taps, per_task, |i, out| {
            let g0 = i * CHANNELS;
            let channels = out.len() / (w.c * big_taps);
            for ci in 0..w.c {
                for &(q, t, k) in &moves {
                    let from = &dws[(t * s.c + q * w.c + ci) * g + g0..][..channels];
                    for (j, &v) in from.iter().enumerate() {
                        out[(j * w.c + ci) * big_taps + k] = v;
                    }
                }
            }
        })
    }

    /// The big maps `[n, hb, wb, c]` as their stacked phases `[n, hs, ws, 4c]`.
    fn split(&self, batch: usize, x: &[f32]) -> Vec<f32> {
        let w = &self.big;
        let c = w.c;
        assert_eq!(x.len(), batch * w.big() * c, "input size");
        let row = w.ws * 4 * c;
        // SAFETY: each chunk is whole grid rows, every element written below.
        unsafe {
            par_vec_uninit(batch * w.hs * row, rows_per_task(row) * row, |i, out| {
                let first = i * rows_per_task(row);
                for (r, out) in out.chunks_exact_mut(row).enumerate() {
                    let (n, y) = ((first + r) / w.hs, (first + r) % w.hs);
                    for (q, (qy, qx)) in PHASES.into_iter().enumerate() {
                        let line = &x[((n * w.hb + 2 * y + qy) * w.wb) * c..][..w.wb * c];
                        for (xi, cell) in out.chunks_exact_mut(4 * c).enumerate() {
                            let from = &line[(2 * xi + qx) * c..][..c];
                            write(&mut cell[q * c..][..c], from);
                        }
                    }
                }
            })
        }
    }

    /// The stacked phases `[n, hs, ws, 4c]` back as big maps `[n, hb, wb, c]`.
    fn join(&self, batch: usize, stacked: &[f32]) -> Vec<f32> {
        let w = &self.big;
        let c = w.c;
        assert_eq!(stacked.len(), batch * w.grid() * 4 * c, "stacked size");
        // A task writes whole pairs of big rows (one grid row's phases).
        let pair = 2 * w.wb * c;
        // SAFETY: each chunk is whole pairs of big rows, every element written below.
        unsafe {
            par_vec_uninit(batch * w.hs * pair, rows_per_task(pair) * pair, |i, out| {
                let first = i * rows_per_task(pair);
                for (r, out) in out.chunks_exact_mut(pair).enumerate() {
                    let cells = &stacked[(first + r) * w.ws * 4 * c..][..w.ws * 4 * c];
                    for (qy, line) in out.chunks_exact_mut(w.wb * c).enumerate() {
                        for (xi, cell) in cells.chunks_exact(4 * c).enumerate() {
                            for qx in 0..2 {
                                let from = &cell[(2 * qy + qx) * c..][..c];
                                write(&mut line[(2 * xi + qx) * c..][..c], from);
                            }
                        }
                    }
                }
            })
        }
    }
}

/// The four phases `(qy, qx)` of a map, in their order in the stack.
const PHASES: [(usize, usize); 4] = [(0, 0), (0, 1), (1, 0), (1, 1)];

/// Rows of `row` floats per task of [`Phases::split`] and [`Phases::join`]: about 64 KiB.
fn rows_per_task(row: usize) -> usize {
    ((1 << 14) / row.max(1)).max(1)
}

/// Copies `from` into the uninitialised `to` (the same length).
#[inline(always)]
fn write(to: &mut Uninit, from: &[f32]) {
    for (t, &f) in to.iter_mut().zip(from) {
        *t = MaybeUninit::new(f);
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

    /// The stride-2 convolution's grid from the big maps, the transposed one's big maps
    /// from the grid and the weight gradient of the big maps against the grid, straight
    /// from the definition in f64 (weight `[g, c, kh, kw]`, channels-last maps, no bias).
    fn reference(
        w: &Window,
        (batch, g): (usize, usize),
        (big, grid, weight): (&[f32], &[f32], &[f32]),
    ) -> [Vec<f64>; 3] {
        let mut to_grid = vec![0.0; batch * w.grid() * g];
        let mut to_big = vec![0.0; batch * w.big() * w.c];
        let mut dw = vec![0.0; weight.len()];
        for n in 0..batch {
            for (y, x) in (0..w.hs).flat_map(|y| (0..w.ws).map(move |x| (y, x))) {
                for (ky, kx) in (0..w.kh).flat_map(|ky| (0..w.kw).map(move |kx| (ky, kx))) {
                    let by = (2 * y + ky) as isize - w.ph as isize;
                    let bx = (2 * x + kx) as isize - w.pw as isize;
                    if by < 0 || bx < 0 || by as usize >= w.hb || bx as usize >= w.wb {
                        continue;
                    }
                    let cell = (n * w.hs + y) * w.ws + x;
                    let pixel = (n * w.hb + by as usize) * w.wb + bx as usize;
                    for ci in 0..w.c {
                        for gi in 0..g {
                            let at = ((gi * w.c + ci) * w.kh + ky) * w.kw + kx;
                            let (b, d) = (big[pixel * w.c + ci] as f64, grid[cell * g + gi] as f64);
                            to_grid[cell * g + gi] += b * weight[at] as f64;
                            to_big[pixel * w.c + ci] += d * weight[at] as f64;
                            dw[at] += b * d;
                        }
                    }
                }
            }
        }
        [to_grid, to_big, dw]
    }

    /// Channels-last `maps` with `bias` (one per channel) added.
    fn with_bias(maps: &[f64], bias: &[f32]) -> Vec<f64> {
        let channels = bias.len();
        maps.iter()
            .enumerate()
            .map(|(i, v)| v + bias[i % channels] as f64)
            .collect()
    }

    /// Largest difference from the reference, relative to the reference's largest value.
    fn relative_error(got: &[f32], want: &[f64]) -> f64 {
        assert_eq!(got.len(), want.len());
        let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let diff = got
            .iter()
            .zip(want)
            .fold(0.0f64, |m, (&a, &b)| m.max((a as f64 - b).abs()));
        diff / scale
    }

    #[test]
    fn both_directions_and_the_weight_gradient_match_the_definition() {
        // 5×5 with padding 2 (catgan's layers), 4×4 with padding 1 (PyTorch's DCGAN), an
        // uneven grid, a grid of 8 (2 tiles a side, as for wide layers), a batch of 3.
        for (k, p, (hs, ws), c, g) in [
            (5, 2, (16, 16), 8, 12),
            (4, 1, (16, 24), 5, 7),
            (5, 2, (17, 16), 3, 16),
            (5, 2, (8, 8), 6, 10),
        ] {
            let w = Window::of_conv(c, (2 * hs, 2 * ws), k, 2, p);
            assert_eq!((w.hs, w.ws), (hs, ws), "the window's grid");
            let phases = Phases::with_tiles(&w, FEW_TILES).expect("a plan for 2 tiles a side");
            let batch = 3;
            let big = random(batch * w.big() * c, 1);
            let grid = random(batch * w.grid() * g, 2);
            let weight = random(g * c * k * k, 3);
            let bias_g = random(g, 4);
            let bias_c = random(c, 5);
            let [to_grid, to_big, dw] = reference(&w, (batch, g), (&big, &grid, &weight));
            let stacked = phases.weight(&weight, g);
            let got = phases.conv(batch, g, &big, (&stacked, &bias_g), None);
            let err = relative_error(&got, &with_bias(&to_grid, &bias_g));
            assert!(err < 2e-5, "k {k} p {p} conv: error {err:e}");
            let got = phases.conv_transposed(batch, g, &grid, (&stacked, &bias_c), None);
            let err = relative_error(&got, &with_bias(&to_big, &bias_c));
            assert!(err < 2e-5, "k {k} p {p} transposed: error {err:e}");
            let err = relative_error(&phases.weight_gradient(batch, g, &big, &grid), &dw);
            assert!(err < 2e-5, "k {k} p {p} weight gradient: error {err:e}");
        }
    }

    #[test]
    fn the_leaky_relu_follows_the_sum() {
        let w = Window::of_conv(4, (32, 32), 5, 2, 2);
        let (batch, g) = (2, 8);
        let phases = Phases::of(&w, g, batch).unwrap();
        let big = random(batch * w.big() * w.c, 6);
        let weight = phases.weight(&random(g * w.c * 25, 7), g);
        let bias = random(g, 8);
        let plain = phases.conv(batch, g, &big, (&weight, &bias), None);
        let leaky = phases.conv(batch, g, &big, (&weight, &bias), Some(0.2));
        for (&p, &l) in plain.iter().zip(&leaky) {
            assert_eq!(l, if p < 0.0 { 0.2 * p } else { p });
        }
    }

    #[test]
    fn split_and_join_are_inverse_moves() {
        let w = Window::of_conv(3, (6, 8), 5, 2, 2);
        let phases = Phases {
            big: w,
            ..Phases::of(&Window::of_conv(3, (32, 32), 5, 2, 2), 3, 1).unwrap()
        };
        let x: Vec<f32> = (0..2 * w.big() * 3).map(|i| i as f32).collect();
        let stacked = phases.split(2, &x);
        // Image 1, grid cell (2, 3), phase (1, 0), channel 2: big pixel (5, 6).
        let at = ((w.hs + 2) * w.ws + 3) * 12 + 2 * 3 + 2;
        assert_eq!(stacked[at], x[((w.hb + 5) * w.wb + 6) * 3 + 2]);
        assert_eq!(phases.join(2, &stacked), x);
    }

    #[test]
    fn applies_only_where_it_should() {
        // Stride 1, an odd big map, and grids below 16 wide take other paths.
        let of = |c, big, k, s, p| Phases::of(&Window::of_conv(c, big, k, s, p), 8, 1);
        assert!(of(8, (32, 32), 5, 1, 2).is_none());
        assert!(of(8, (33, 33), 5, 2, 2).is_none());
        assert!(of(8, (16, 16), 5, 2, 2).is_none());
        // A 3×3 kernel with padding 1 splits into 2-tap phases, which have no plan.
        assert!(of(8, (32, 32), 3, 2, 1).is_none());
        assert!(of(8, (32, 32), 5, 2, 2).is_some());
        // A grid of 8 (4 tiles an image) splits with 512 channels on each side, or with
        // 64 and a batch of at least 128 tiles; a grid of 4 never.
        let grid_8 = Window::of_conv(512, (16, 16), 5, 2, 2);
        assert!(plan(&grid_8, 512, 1).is_some());
        assert!(plan(&grid_8, 256, 1).is_none());
        assert!(plan(&Window { c: 256, ..grid_8 }, 1024, 1).is_none());
        assert!(plan(&Window::of_conv(512, (8, 8), 5, 2, 2), 1024, 1).is_none());
        let narrow = Window { c: 64, ..grid_8 };
        assert!(plan(&narrow, 128, 32).is_some());
        assert!(plan(&narrow, 128, 31).is_none(), "124 tiles");
        assert!(plan(&narrow, 32, 64).is_none(), "32 grid channels");
        assert!(plan(&Window { c: 32, ..grid_8 }, 64, 64).is_none());
        assert!(plan(&Window::of_conv(512, (8, 8), 5, 2, 2), 1024, 256).is_none());
        // Too few channels on either side to pay.
        let w = Window::of_conv(32, (32, 32), 5, 2, 2);
        assert!(plan(&w, 64, 1).is_some());
        assert!(plan(&w, 16, 1).is_none());
        assert!(plan(&Window { c: 16, ..w }, 64, 1).is_none());
        enable(false);
        let off = plan(&w, 64, 1);
        enable(true);
        assert!(off.is_none());
    }

    #[test]
    fn axis_splits() {
        assert_eq!(AxisSplit::of(5, 2), AxisSplit { taps: 3, pad: 1 });
        assert_eq!(AxisSplit::of(4, 1), AxisSplit { taps: 3, pad: 1 });
        assert_eq!(AxisSplit::of(3, 1), AxisSplit { taps: 2, pad: 1 });
        // Tap t = 2 of phase 1 would be the 5×5 kernel's sixth tap: none.
        let s = AxisSplit::of(5, 2);
        let taps: Vec<_> = (0..3).map(|t| s.big_tap(5, 2, 1, t)).collect();
        assert_eq!(taps, [Some(1), Some(3), None]);
    }
}
