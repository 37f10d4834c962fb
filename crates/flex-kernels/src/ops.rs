//! The fast path's operations: convolutions, transposed convolutions, batch norm + leaky
//! ReLU, leaky ReLU and `tanh` as custom operations of `Autodiff<Flex>` (training) and `Flex`
//! (inference), computed channels-last.
//!
//! Why: burn 0.21's flex backend spends most of a training step outside matrix
//! multiplication (see catgan's `docs/performance.md`): batch norm's broadcasts and the
//! convolutions' weight gradients go through element-by-element strided copies, and the
//! transposed convolution runs image after image. Here every convolution is one GEMM per
//! direction between the weight and a window matrix ([`kernels::im2col_lines`] /
//! [`kernels::col2im_lines`]), with the batch's positions as the long dimension (the window
//! matrix built and multiplied in pieces that stay in the core's L2; stride-1 ones by
//! [`winograd`]'s transforms, most stride-2 ones too, as their stacked [`phases`], those
//! with an image's few channels (or 16) on the map side by [`direct`]'s kernels), and
//! batch norm + leaky ReLU is two passes forward and two backward.
//!
//! Layout: the outputs are logical `[n, c, h, w]` tensors whose memory is channels-last
//! (a permuted view of a contiguous `[n, h, w, c]` buffer), so that the next fast layer
//! reads them without a copy; any layout is accepted as input. Input gradients come back
//! in the layout their input had. [`crate::to_channels_first`] makes a tensor plain NCHW
//! again for burn's own operations (call it before `flatten`, for example).
//!
//! The parameter tensors are the modules' own (`[c_out, c_in, k, k]` for `Conv2d`,
//! `[c_in, c_out, k, k]` for `ConvTranspose2d`, `γ`, `β`, running statistics), so records
//! and checkpoints are unchanged.

use std::sync::{Arc, Mutex};

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::{FlexTensor, Layout};
use burn::backend::{Autodiff, Flex};
use burn::tensor::ops::FloatTensor;
use burn::tensor::{Bytes, DType, Shape, Tensor, TensorPrimitive};

use rayon::prelude::*;

use std::mem::MaybeUninit;

use crate::buffers::{
    assume_init, par_vec_split_uninit, par_vec_tiled, par_vec_uninit, with_scratch, Uninit,
};
use crate::direct;
use crate::kernels::{self, Affine, Mat, Window};
use crate::phases::{self, Phases};
use crate::profile::{self, timed};
use crate::winograd;

/// [`kernels::gemm`] (single-threaded: the callers run groups in parallel) under the
/// thread-time profile, as `role`.
fn gemm(
    role: &'static str,
    (m, n, k): (usize, usize, usize),
    dst: &mut [f32],
    accumulate: bool,
    lhs: Mat<'_>,
    rhs: Mat<'_>,
) {
    let flops = 2.0 * (m * n * k) as f64;
    profile::thread_timed(role, flops, || {
        kernels::gemm((m, n, k), dst, accumulate, lhs, rhs, false)
    })
}

/// One piece's part of a weight gradient, added to `dw` (or written, without
/// `accumulate`): `colsᵀ · grid` as `[K, G]`, or `gridᵀ · cols` as `[G, K]` with `gk`
/// ([`weight_parts_gk`]), where `grid` is the grid side's `[P, G]` (a convolution's output
/// gradient, a transposed convolution's input) and `cols` the piece's `[P, K]` windows.
fn weight_part(
    role: &'static str,
    (g, k, gk): (usize, usize, bool),
    dw: &mut [f32],
    accumulate: bool,
    grid: &[f32],
    cols: &[f32],
) {
    let p = cols.len() / k.max(1);
    let (dims, lhs, rhs) = if gk {
        ((g, k, p), Mat::transposed(grid, g), Mat::rows(cols, k))
    } else {
        ((k, g, p), Mat::transposed(cols, k), Mat::rows(grid, g))
    };
    gemm(role, dims, dw, accumulate, lhs, rhs);
}

/// [`kernels::im2col_lines`] under the thread-time profile.
fn im2col_lines(w: &Window, big: &[f32], first: usize, cols: &mut [f32]) {
    profile::thread_timed("im2col", 0.0, || kernels::im2col_lines(w, big, first, cols))
}

/// Grid lines per piece of a window matrix, which is built and multiplied piece by piece
/// (each piece's gather or scatter right before or after its GEMM, while it is in the
/// core's L2): pieces of at least [`WINDOW_PIECE_ELEMENTS`] and
/// [`WINDOW_PIECE_WEIGHTS`] weights, whole grid lines (`ws` windows), at least one.
fn window_lines(w: &Window, g: usize) -> usize {
    let line = w.ws * w.k();
    let piece = WINDOW_PIECE_ELEMENTS.max(WINDOW_PIECE_WEIGHTS * w.k() * g);
    (piece / line.max(1)).max(1)
}

/// [`kernels::col2im_init`] under the thread-time profile (as `col2im`).
fn col2im_init<'a>(w: &Window, init: Option<&[f32]>, big: &'a mut Uninit) -> &'a mut [f32] {
    profile::thread_timed("col2im", 0.0, || kernels::col2im_init(w, init, big))
}

/// [`kernels::col2im_lines`] under the thread-time profile.
fn col2im_lines(w: &Window, cols: &[f32], first: usize, big: &mut [f32]) {
    profile::thread_timed("col2im", 0.0, || kernels::col2im_lines(w, cols, first, big))
}

/// The training backend this path serves.
pub(crate) type Ad = Autodiff<Flex>;

/// A contiguous f32 flex tensor of `shape` holding `data`.
pub(crate) fn tensor(data: Vec<f32>, shape: &[usize]) -> FlexTensor {
    debug_assert_eq!(data.len(), shape.iter().product::<usize>());
    FlexTensor::new(
        Bytes::from_elems(data),
        Layout::contiguous(Shape::from(shape.to_vec())),
        DType::F32,
    )
}

/// `f` of the values of a flex tensor in row-major order of its logical shape, read in
/// place where the tensor already is contiguous (a layer's weight, on every call: no
/// copy of it, which [`values`] would make).
fn with_values<R>(t: &FlexTensor, f: impl FnOnce(&[f32]) -> R) -> R {
    let t = t.to_contiguous();
    f(t.as_slice::<f32>()
        .expect("contiguous f32 (checked by the dispatcher)"))
}

/// The values of a flex tensor in row-major order of its logical shape.
fn values(t: &FlexTensor) -> Vec<f32> {
    with_values(t, <[f32]>::to_vec)
}

/// A batch of feature maps, channels-last: `data` holds `[n, h, w, c]` row-major.
#[derive(Clone, Debug)]
struct Maps {
    data: FlexTensor,
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    /// Whether the tensor it came from was plain NCHW (gradients go back that way).
    was_nchw: bool,
}

impl Maps {
    /// Channels-last data of a logical `[n, c, h, w]` tensor: its own buffer if it is
    /// already channels-last (as this module's outputs are), else a transposed copy.
    fn of(t: &FlexTensor) -> Self {
        let layout = t.layout();
        let dims: Vec<usize> = layout.shape().to_vec();
        let [n, c, h, w] = [dims[0], dims[1], dims[2], dims[3]];
        let channels_last = [(h * w * c) as isize, 1, (w * c) as isize, c as isize];
        let strides = layout.strides();
        let is_nhwc = layout.start_offset() == 0
            && t.storage::<f32>().len() == n * c * h * w
            && (0..4).all(|d| dims[d] <= 1 || strides[d] == channels_last[d]);
        if is_nhwc {
            let data = FlexTensor::from_arc(
                t.data_arc(),
                Layout::contiguous(Shape::from(vec![n, h, w, c])),
                DType::F32,
            );
            return Self {
                data,
                n,
                c,
                h,
                w,
                was_nchw: false,
            };
        }
        let nchw = t.to_contiguous();
        let data = kernels::transpose_batch(slice(&nchw), c, h * w);
        Self {
            data: tensor(data, &[n, h, w, c]),
            n,
            c,
            h,
            w,
            was_nchw: true,
        }
    }

    fn slice(&self) -> &[f32] {
        slice(&self.data)
    }
}

/// The values of a contiguous f32 flex tensor.
pub(crate) fn slice(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>().expect("contiguous f32 tensor")
}

/// Channels-last data `[n, h, w, c]` as a logical `[n, c, h, w]` tensor: a permuted view
/// (no copy), or a plain NCHW copy if `nchw`.
fn nchw_tensor(data: Vec<f32>, [n, c, h, w]: [usize; 4], nchw: bool) -> FlexTensor {
    if nchw {
        tensor(kernels::transpose_batch(&data, h * w, c), &[n, c, h, w])
    } else {
        tensor(data, &[n, h, w, c]).permute(&[0, 3, 1, 2])
    }
}

/// Whether the forward or the transposed convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ConvKind {
    /// `nn::conv::Conv2d`: the window sweeps the input; weight `[c_out, c_in, kh, kw]`.
    Forward,
    /// `nn::conv::ConvTranspose2d`: the window sweeps the output; weight `[c_in, c_out, kh, kw]`.
    Transposed,
}

/// One convolution's geometry, batch included.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConvSpec {
    pub kind: ConvKind,
    /// The window over the big map (input of a convolution, output of a transposed one).
    pub window: Window,
    /// Images.
    pub batch: usize,
    /// Channels on the grid side (output of a convolution, input of a transposed one).
    pub grid_channels: usize,
}

impl ConvSpec {
    /// Shape of the operation's input.
    pub fn input_shape(&self) -> [usize; 4] {
        let w = &self.window;
        match self.kind {
            ConvKind::Forward => [self.batch, w.c, w.hb, w.wb],
            ConvKind::Transposed => [self.batch, self.grid_channels, w.hs, w.ws],
        }
    }

    /// Shape of the operation's output.
    pub fn output_shape(&self) -> [usize; 4] {
        let w = &self.window;
        match self.kind {
            ConvKind::Forward => [self.batch, self.grid_channels, w.hs, w.ws],
            ConvKind::Transposed => [self.batch, w.c, w.hb, w.wb],
        }
    }

    /// A short name for profiles: kind, channels, input side, stride.
    fn tag(&self, piece: &str) -> String {
        let [_, ci, h, w] = self.input_shape();
        let [_, co, _, _] = self.output_shape();
        let kind = match self.kind {
            ConvKind::Forward => "conv",
            ConvKind::Transposed => "convT",
        };
        format!("{kind} {ci}->{co} {h}x{w} s{} {piece}", self.window.sh)
    }

    /// The window of a stride-1 convolution's input gradient as a convolution of its own:
    /// the output gradient's windows (`g` channels on the `hs × ws` grid) against the
    /// weight turned round, giving the `hb × wb` input map, with the padding on the other
    /// side of each window. `None` for other strides and for transposed convolutions.
    fn input_gradient_window(&self) -> Option<Window> {
        let w = &self.window;
        let stride_1 = (w.sh, w.sw) == (1, 1) && w.ph < w.kh && w.pw < w.kw;
        (self.kind == ConvKind::Forward && stride_1).then(|| Window {
            c: self.grid_channels,
            hb: w.hs,
            wb: w.ws,
            hs: w.hb,
            ws: w.wb,
            ph: w.kh - 1 - w.ph,
            pw: w.kw - 1 - w.pw,
            ..*w
        })
    }

    /// Winograd's plan for the input gradient ([`Self::input_gradient_window`]), if any.
    fn input_gradient_plan(&self) -> Option<winograd::Plan> {
        winograd::plan(&self.input_gradient_window()?)
    }

    /// The weight (`[g, c, kh, kw]` for both kinds) as the matrix `[(ky, kx, c), g]`.
    fn weight_kg(&self, weight: &FlexTensor) -> Vec<f32> {
        let w = &self.window;
        with_values(weight, |v| {
            kernels::weight_to_kg(v, self.grid_channels, w.c, w.kh, w.kw)
        })
    }

    /// Images per group: the batch is processed in groups whose window matrix is at most
    /// about 4 MiB (built and multiplied in pieces of at least 1 MiB, [`window_lines`]),
    /// at least 4 groups and a multiple of 4 when the batch allows, so that 1, 2 or 4 threads
    /// get equal shares (7 groups on 2 threads would leave one idle an eighth of the
    /// time). Depends on the shapes only, so results never depend on threads.
    fn group(&self) -> usize {
        let per_image = self.window.grid() * self.window.k();
        let by_size = ((1usize << 20) / per_image.max(1)).max(1);
        let groups = self
            .batch
            .div_ceil(by_size)
            .max(4)
            .next_multiple_of(4)
            .min(self.batch)
            .max(1);
        // At least one image, also for an empty batch.
        self.batch.div_ceil(groups).max(1)
    }

    /// The output, and what the backward pass keeps.
    ///
    /// With `K = kh·kw·c`, `G` the grid-side channels, `P` the window positions of a
    /// group of images and the weight as `W[K, G]`:
    /// - convolution: `out[P, G] = im2col(x)[P, K] · W + bias`;
    /// - transposed: `out = col2im(x[P, G] · Wᵀ) + bias`.
    ///
    /// With `slope`, a leaky ReLU of that slope follows on each group's output while it
    /// is in cache (inference: nothing keeps the output before it).
    pub fn forward(
        &self,
        x: &FlexTensor,
        weight: &FlexTensor,
        bias: &FlexTensor,
        need: [bool; 2],
        slope: Option<f32>,
    ) -> (FlexTensor, ConvState) {
        let [need_dx, need_dw] = need;
        let w = &self.window;
        let (g, k) = (self.grid_channels, w.k());
        let x = timed(|| self.tag("fwd layout"), || Maps::of(x));
        // A map of an image's few channels, or of 16: summed directly, without window
        // matrices.
        if direct::applies(w, g) {
            let wkg = self.weight_kg(weight);
            let bias = values(bias);
            let (x_maps, bias) = (x.slice(), Some(&bias[..]));
            let out = timed(
                || self.tag("fwd direct"),
                || match self.kind {
                    ConvKind::Forward => {
                        direct::gather(w, self.batch, g, x_maps, &wkg, bias, slope)
                    }
                    ConvKind::Transposed => {
                        direct::scatter(w, self.batch, g, x_maps, &wkg, bias, slope)
                    }
                },
            );
            let state = ConvState {
                spec: *self,
                wkg: need_dx.then(|| Arc::new(wkg)),
                weight: None,
                split: false,
                phased: None,
                weight_shape: weight.layout().shape().to_vec(),
                input: need_dw.then(|| x.clone()),
                input_was_nchw: x.was_nchw,
            };
            return (nchw_tensor(out, self.output_shape(), false), state);
        }
        // A stride-2 convolution: as a stride-1 one over the map's four phases, by
        // Winograd's transforms (the weight gradient, if needed, still comes from the
        // window matrices of the kept input).
        if let Some(phases) = phases::plan(w, g, self.batch) {
            let stacked = with_values(weight, |v| phases.weight(v, g));
            let bias = values(bias);
            let out = timed(
                || self.tag("fwd phases"),
                || match self.kind {
                    ConvKind::Forward => {
                        phases.conv(self.batch, g, x.slice(), (&stacked, &bias), slope)
                    }
                    ConvKind::Transposed => {
                        phases.conv_transposed(self.batch, g, x.slice(), (&stacked, &bias), slope)
                    }
                },
            );
            let state = ConvState {
                spec: *self,
                wkg: None,
                weight: None,
                split: true,
                phased: need_dx.then(|| Arc::new(stacked)),
                weight_shape: weight.layout().shape().to_vec(),
                input: need_dw.then(|| x.clone()),
                input_was_nchw: x.was_nchw,
            };
            return (nchw_tensor(out, self.output_shape(), false), state);
        }
        // A stride-1 convolution: Winograd's fewer products where it has a plan (the
        // weight gradient, if needed, still comes from the window matrices of the kept
        // input).
        let winograd = (self.kind == ConvKind::Forward)
            .then(|| winograd::plan(w))
            .flatten();
        if let Some(plan) = winograd {
            let out = timed(
                || self.tag("fwd winograd"),
                || {
                    with_values(weight, |weight| {
                        winograd::conv_forward(
                            &plan,
                            w,
                            self.batch,
                            g,
                            x.slice(),
                            (weight, &values(bias)),
                            slope,
                        )
                    })
                },
            );
            // The input gradient is a stride-1 convolution too: by Winograd's transforms
            // if they have a plan for it, which needs the weight as it is, else from the
            // window matrices, which need it as `[K, G]`.
            let (wkg, weight_values) = match (need_dx, self.input_gradient_plan()) {
                (false, _) => (None, None),
                (true, Some(_)) => (None, Some(Arc::new(values(weight)))),
                (true, None) => (Some(Arc::new(self.weight_kg(weight))), None),
            };
            let state = ConvState {
                spec: *self,
                wkg,
                weight: weight_values,
                split: false,
                phased: None,
                weight_shape: weight.layout().shape().to_vec(),
                input: need_dw.then(|| x.clone()),
                input_was_nchw: x.was_nchw,
            };
            return (nchw_tensor(out, self.output_shape(), false), state);
        }
        let group = self.group();
        // D's deepest forward products (one image's positions against a 1,024-wide,
        // 12,800-deep weight) run faster column-major with the weight as `[G, K]`
        // ([`kernels::column_major_pays`]); every other product takes it as `[K, G]`,
        // which the input gradient also needs.
        let w_gk = (self.kind == ConvKind::Forward
            && kernels::column_major_pays((group * w.grid(), g, k), true))
        .then(|| with_values(weight, |v| kernels::weight_to_gk(v, g, w.c, w.kh, w.kw)));
        let wkg = (w_gk.is_none() || need_dx).then(|| self.weight_kg(weight));
        let bias = values(bias);
        let out = timed(
            || self.tag("fwd"),
            || match self.kind {
                ConvKind::Forward => {
                    let (big_len, grid_len) = (w.big() * w.c, w.grid() * g);
                    // Every output row starts as the bias, which the GEMM adds to.
                    par_vec_tiled(self.batch * grid_len, group * grid_len, &bias, |i, out| {
                        let p = out.len() / g;
                        let x = &x.slice()[i * group * big_len..][..(p / w.grid()) * big_len];
                        let weight = match (&w_gk, &wkg) {
                            (Some(w_gk), _) => Mat::transposed(w_gk, k),
                            (None, Some(wkg)) => Mat::rows(wkg, g),
                            (None, None) => unreachable!("one weight layout is always made"),
                        };
                        let product = |cols: &[f32], out: &mut [f32]| {
                            gemm(
                                "gemm conv fwd",
                                (out.len() / g, g, k),
                                out,
                                true,
                                Mat::rows(cols, k),
                                weight,
                            )
                        };
                        if w.is_pointwise() {
                            // The input already is the window matrix.
                            product(x, out);
                        } else {
                            let lines = window_lines(w, g);
                            with_scratch(lines.min(p / w.ws) * w.ws * k, |cols| {
                                for (j, out) in out.chunks_mut(lines * w.ws * g).enumerate() {
                                    let cols = &mut cols[..out.len() / g * k];
                                    im2col_lines(w, x, j * lines, cols);
                                    product(cols, out);
                                }
                            });
                        }
                        if let Some(slope) = slope {
                            kernels::leaky_in_place(out, slope);
                        }
                    })
                }
                ConvKind::Transposed => {
                    let wkg = wkg
                        .as_deref()
                        .expect("made for every transposed convolution");
                    let (big_len, grid_len) = (w.big() * w.c, w.grid() * g);
                    let fill = |i: usize, out: &mut Uninit| {
                        let images = out.len() / big_len;
                        let x = &x.slice()[i * group * grid_len..][..images * grid_len];
                        let out = col2im_init(w, Some(&bias), out);
                        let lines = window_lines(w, g);
                        with_scratch(lines.min(x.len() / g / w.ws) * w.ws * k, |cols| {
                            for (j, x) in x.chunks(lines * w.ws * g).enumerate() {
                                let cols = &mut cols[..x.len() / g * k];
                                gemm(
                                    "gemm convT fwd",
                                    (x.len() / g, k, g),
                                    cols,
                                    false,
                                    Mat::rows(x, g),
                                    Mat::transposed(wkg, g),
                                );
                                col2im_lines(w, cols, j * lines, out);
                            }
                        });
                        if let Some(slope) = slope {
                            kernels::leaky_in_place(out, slope);
                        }
                    };
                    // SAFETY: `col2im` initialises each group's whole output.
                    unsafe { par_vec_uninit(self.batch * big_len, group * big_len, fill) }
                }
            },
        );
        let state = ConvState {
            spec: *self,
            wkg: wkg.filter(|_| need_dx).map(Arc::new),
            weight: None,
            split: false,
            phased: None,
            weight_shape: weight.layout().shape().to_vec(),
            input: need_dw.then(|| x.clone()),
            input_was_nchw: x.was_nchw,
        };
        (nchw_tensor(out, self.output_shape(), false), state)
    }

    /// Gradients of the input, the weight and the bias (each only if asked for), group
    /// by group; the weight gradient sums the groups' parts in order.
    ///
    /// - convolution: with `cols = im2col(x)`: `dW = colsᵀ · dy`, `dx = col2im(dy · Wᵀ)`;
    /// - transposed: with `dcols = im2col(dy)`: `dW = dcolsᵀ · x`, `dx = dcols · W`.
    pub fn backward(
        &self,
        grad: &FlexTensor,
        state: &ConvState,
        need: [bool; 3],
    ) -> [Option<FlexTensor>; 3] {
        self.backward_within(grad, state, need, WEIGHT_PARTS_BUDGET)
    }

    /// [`Self::backward`] with at most `parts_budget` bytes of weight-gradient parts
    /// (while 4 parts fit; see [`weight_slots`]).
    fn backward_within(
        &self,
        grad: &FlexTensor,
        state: &ConvState,
        need: [bool; 3],
        parts_budget: usize,
    ) -> [Option<FlexTensor>; 3] {
        let w = &self.window;
        let [need_x, need_w, need_b] = need;
        let (g, k) = (self.grid_channels, w.k());
        let dy = timed(|| self.tag("bwd layout"), || Maps::of(grad));
        // The direct path, when the forward pass kept the weight as `[K, G]` (or the input
        // gradient is not needed).
        if direct::applies(w, g) && (state.wkg.is_some() || !need_x) {
            let (dx, dw) = timed(
                || self.tag("bwd direct"),
                || self.backward_direct(&dy, state, [need_x, need_w]),
            );
            let dx = dx.map(|dx| nchw_tensor(dx, self.input_shape(), state.input_was_nchw));
            let dw = dw.map(|dw| {
                let dw = kernels::weight_from_parts_sum(&dw, false, g, w.c, w.kh, w.kw);
                tensor(dw, &state.weight_shape)
            });
            return [dx, dw, need_b.then(|| self.bias_gradient(&dy))];
        }
        // The input gradient by Winograd's transforms, when the forward pass kept the
        // weight for them; the groups below then make only the weight gradient.
        let winograd_dx = match (need_x, &state.weight, self.input_gradient_window()) {
            (true, Some(weight), Some(window)) => winograd::plan(&window).map(|plan| {
                timed(
                    || self.tag("bwd winograd"),
                    || {
                        let turned = kernels::weight_turned_round(weight, g, w.c, w.kh, w.kw);
                        let zeros = vec![0.0; w.c];
                        winograd::conv_forward(
                            &plan,
                            &window,
                            self.batch,
                            w.c,
                            dy.slice(),
                            (&turned, &zeros),
                            None,
                        )
                    },
                )
            }),
            _ => None,
        };
        // The gradients of a layer whose forward pass ran as phases: the input gradient
        // by the transposed operation, the weight gradient by Winograd's backward filter
        // pass, on the stacked phases.
        let phases = state
            .split
            .then(|| Phases::of(w, g, self.batch).expect("the forward pass split by these shapes"));
        let winograd_dw = match (need_w, &phases) {
            (true, Some(phases)) => Some(timed(
                || self.tag("bwd phases dW"),
                || {
                    let input = state.input.as_ref().expect("kept for dW").slice();
                    let dw = match self.kind {
                        ConvKind::Forward => {
                            phases.weight_gradient(self.batch, g, input, dy.slice())
                        }
                        ConvKind::Transposed => {
                            phases.weight_gradient(self.batch, g, dy.slice(), input)
                        }
                    };
                    tensor(dw, &state.weight_shape)
                },
            )),
            _ => None,
        };
        // A stride-1 layer with Winograd's plan: its weight gradient by the backward filter
        // pass too (on the kept input, whichever way the forward pass went).
        let stride_1_plan = (need_w && winograd_dw.is_none() && self.kind == ConvKind::Forward)
            .then(|| winograd::plan(w))
            .flatten();
        let winograd_dw = winograd_dw.or_else(|| {
            let plan = stride_1_plan?;
            Some(timed(
                || self.tag("bwd winograd dW"),
                || {
                    let input = state.input.as_ref().expect("kept for dW").slice();
                    let dw = winograd::weight_gradient(&plan, w, self.batch, g, input, dy.slice());
                    let dw = kernels::weight_from_parts_sum(&dw, false, g, w.c, w.kh, w.kw);
                    tensor(dw, &state.weight_shape)
                },
            ))
        });
        let need_w = need_w && winograd_dw.is_none();
        let phased_dx = match (need_x, &state.phased, &phases) {
            (true, Some(stacked), Some(phases)) => Some(timed(
                || self.tag("bwd phases"),
                || match self.kind {
                    ConvKind::Forward => {
                        let zeros = vec![0.0; w.c];
                        phases.conv_transposed(self.batch, g, dy.slice(), (stacked, &zeros), None)
                    }
                    ConvKind::Transposed => {
                        let zeros = vec![0.0; g];
                        phases.conv(self.batch, g, dy.slice(), (stacked, &zeros), None)
                    }
                },
            )),
            _ => None,
        };
        let winograd_dx = phased_dx.or(winograd_dx);
        let need_x = need_x && winograd_dx.is_none();
        if !need_x && !need_w {
            // Nothing left for the window matrices.
            let dx =
                winograd_dx.map(|dx| nchw_tensor(dx, self.input_shape(), state.input_was_nchw));
            return [dx, winograd_dw, need_b.then(|| self.bias_gradient(&dy))];
        }
        // The weight as `[K, G]` for the window matrices' input gradient: kept by the
        // forward pass, or made here if Winograd's path was switched off in between.
        let wkg: Arc<Vec<f32>> = match (&state.wkg, &state.weight) {
            (Some(wkg), _) => Arc::clone(wkg),
            (None, Some(weight)) if need_x => {
                Arc::new(kernels::weight_to_kg(weight, g, w.c, w.kh, w.kw))
            }
            _ => Arc::new(Vec::new()),
        };
        let wkg: &[f32] = &wkg;
        let input = state.input.as_ref();
        let group = self.group();
        let (big_len, grid_len) = (w.big() * w.c, w.grid() * g);
        // Each group writes its own slice of dx (empty slices if dx is not needed).
        let dx_image = match self.kind {
            ConvKind::Forward => big_len,
            ConvKind::Transposed => grid_len,
        };
        let groups = self.batch.div_ceil(group);
        let gk = weight_parts_gk(g, k);
        // Group `i`'s part of the input gradient (`dx`, empty if not needed) and of the
        // weight gradient (`dw`, `[K, G]` or `[G, K]` by [`weight_parts_gk`], empty if not
        // needed; the parts are summed in order afterwards).
        let run_group = |i: usize, dx: &mut Uninit, dw: &mut [f32], accumulate_dw: bool| {
            let (i0, i1) = (i * group, ((i + 1) * group).min(self.batch));
            let p = (i1 - i0) * w.grid();
            let lines = window_lines(w, g);
            match self.kind {
                ConvKind::Forward => {
                    let dy = &dy.slice()[i0 * grid_len..i1 * grid_len];
                    if need_w {
                        let x = &input.expect("kept for dW").slice()[i0 * big_len..i1 * big_len];
                        with_scratch(lines.min(p / w.ws) * w.ws * k, |cols| {
                            for (j, dy) in dy.chunks(lines * w.ws * g).enumerate() {
                                let rows = dy.len() / g;
                                let cols = &mut cols[..rows * k];
                                im2col_lines(w, x, j * lines, cols);
                                let accumulate = accumulate_dw || j > 0;
                                weight_part("gemm conv dW", (g, k, gk), dw, accumulate, dy, cols);
                            }
                        });
                    }
                    if need_x {
                        let dx = col2im_init(w, None, dx);
                        with_scratch(lines.min(p / w.ws) * w.ws * k, |dcols| {
                            for (j, dy) in dy.chunks(lines * w.ws * g).enumerate() {
                                let dcols = &mut dcols[..dy.len() / g * k];
                                gemm(
                                    "gemm conv dX",
                                    (dy.len() / g, k, g),
                                    dcols,
                                    false,
                                    Mat::rows(dy, g),
                                    Mat::transposed(wkg, g),
                                );
                                col2im_lines(w, dcols, j * lines, dx);
                            }
                        });
                    }
                }
                ConvKind::Transposed => {
                    let dy = &dy.slice()[i0 * big_len..i1 * big_len];
                    // The GEMMs overwrite `dx` (they do not accumulate), but take initialised
                    // floats.
                    dx.fill(MaybeUninit::new(0.0));
                    // SAFETY: just initialised.
                    let dx = unsafe { assume_init(dx) };
                    let piece = lines * w.ws * g;
                    let x = need_w.then(|| {
                        &input.expect("kept for dW").slice()[i0 * grid_len..i1 * grid_len]
                    });
                    with_scratch(lines.min(p / w.ws) * w.ws * k, |dcols| {
                        for j in 0..p.div_ceil(lines * w.ws) {
                            let rows = (p - j * lines * w.ws).min(lines * w.ws);
                            let dcols = &mut dcols[..rows * k];
                            im2col_lines(w, dy, j * lines, dcols);
                            if need_x {
                                gemm(
                                    "gemm convT dX",
                                    (rows, g, k),
                                    &mut dx[j * piece..][..rows * g],
                                    false,
                                    Mat::rows(dcols, k),
                                    Mat::rows(wkg, g),
                                );
                            }
                            if let Some(x) = x {
                                let x = &x[j * piece..][..rows * g];
                                let accumulate = accumulate_dw || j > 0;
                                weight_part("gemm convT dW", (g, k, gk), dw, accumulate, x, dcols);
                            }
                        }
                    });
                }
            }
        };
        let part_len = if need_w { k * g } else { 0 };
        // Consecutive groups share a slot: slot `s` runs the groups `run(s)` in order,
        // adding their weight-gradient parts into its own part, and the slots' parts are
        // summed in order afterwards. Both orders follow from the shapes alone, and the
        // scratch is `slots` weights, not one per group ([`weight_slots`]).
        let slots = weight_slots(groups, part_len, parts_budget);
        let run = |s: usize| (s * groups / slots)..((s + 1) * groups / slots);
        // Where image `n`'s part of dx starts (0 everywhere if dx is not needed).
        let dx_at = |n: usize| {
            if need_x {
                n.min(self.batch) * dx_image
            } else {
                0
            }
        };
        let run_slot = |s: usize, dx: &mut Uninit, dw: &mut [f32]| {
            let first = dx_at(run(s).start * group);
            for (j, i) in run(s).enumerate() {
                let (start, end) = (dx_at(i * group) - first, dx_at((i + 1) * group) - first);
                run_group(i, &mut dx[start..end], dw, j > 0);
            }
        };
        let (dx, dw) = with_scratch(slots * part_len, |parts| {
            if groups == 0 {
                // An empty batch: one slot, no group, a zero weight gradient.
                parts.fill(0.0);
            }
            // Each task locks only its own slot (never contended).
            let mut slot_parts: Vec<&mut [f32]> = parts.chunks_mut(part_len.max(1)).collect();
            slot_parts.resize_with(slots, Default::default);
            let slot_parts: Vec<Mutex<&mut [f32]>> =
                slot_parts.into_iter().map(Mutex::new).collect();
            let part = |s: usize| slot_parts[s].lock().unwrap_or_else(|e| e.into_inner());
            let dx = timed(
                || self.tag("bwd"),
                || {
                    if need_x {
                        let ends: Vec<usize> =
                            (1..=slots).map(|s| dx_at(run(s - 1).end * group)).collect();
                        // SAFETY: the slots' groups write all of their images' `dx`
                        // (`col2im` initialises its whole map; the transposed kind's
                        // GEMM output is zeroed first).
                        unsafe {
                            par_vec_split_uninit(&ends, |s, dx| run_slot(s, dx, &mut part(s)))
                        }
                    } else {
                        (0..slots)
                            .into_par_iter()
                            .for_each(|s| run_slot(s, &mut [], &mut part(s)));
                        Vec::new()
                    }
                },
            );
            drop(slot_parts);
            let dw = need_w.then(|| {
                // `[G, K]` parts are summed channel by channel as they are placed;
                // `[K, G]` ones first by a streaming pass, as the layout pass would read
                // each of them 16 floats at a time at a stride of `G`.
                let parts: &[f32] = if gk {
                    parts
                } else {
                    kernels::sum_parts_in_place(parts, part_len);
                    &parts[..part_len]
                };
                tensor(
                    kernels::weight_from_parts_sum(parts, gk, g, w.c, w.kh, w.kw),
                    &state.weight_shape,
                )
            });
            (dx, dw)
        });
        let dx = winograd_dx
            .or(need_x.then_some(dx))
            .map(|dx| nchw_tensor(dx, self.input_shape(), state.input_was_nchw));
        [
            dx,
            winograd_dw.or(dw),
            need_b.then(|| self.bias_gradient(&dy)),
        ]
    }

    /// The bias gradient: the output gradient's sums per channel.
    fn bias_gradient(&self, dy: &Maps) -> FlexTensor {
        let c = match self.kind {
            ConvKind::Forward => self.grid_channels,
            ConvKind::Transposed => self.window.c,
        };
        tensor(kernels::column_sums(dy.slice(), c), &[c])
    }

    /// The input gradient (channels-last) and the weight gradient (`[K, G]`) by
    /// [`direct`]'s kernels, each if asked for.
    fn backward_direct(
        &self,
        dy: &Maps,
        state: &ConvState,
        [need_x, need_w]: [bool; 2],
    ) -> (Option<Vec<f32>>, Option<Vec<f32>>) {
        let (w, batch, g) = (&self.window, self.batch, self.grid_channels);
        let dy = dy.slice();
        let input = || state.input.as_ref().expect("kept for dW").slice();
        let wkg = || state.wkg.as_deref().expect("kept for dx");
        match self.kind {
            ConvKind::Forward => (
                need_x.then(|| direct::scatter(w, batch, g, dy, wkg(), None, None)),
                need_w.then(|| direct::weight_gradient(w, batch, g, input(), dy)),
            ),
            ConvKind::Transposed => (
                need_x.then(|| direct::gather(w, batch, g, dy, wkg(), None, None)),
                need_w.then(|| direct::weight_gradient(w, batch, g, dy, input())),
            ),
        }
    }
}

/// The most bytes of weight-gradient parts a convolution's backward pass keeps (on the
/// calling thread, for the life of the process): a layer whose weight is larger than a
/// quarter of this still gets 4 parts.
pub const WEIGHT_PARTS_BUDGET: usize = 256 << 20;

/// Smallest piece of a window matrix that is built and multiplied at once, in elements
/// (1 MiB): a group's window matrix (up to 4 MiB, or one image's, 25 MiB for the FID
/// Inception's second layer) was written out whole and read back by the GEMM from beyond
/// the L2; in pieces of this size both stay in it. Smaller pieces cost more than they
/// save (each GEMM packs the weight anew): 256 KiB made a seed128 base 16 step 25%
/// slower, 2 MiB gave less than 1 MiB (docs/performance.md, change 16).
pub const WINDOW_PIECE_ELEMENTS: usize = 1 << 18;

/// Weights per piece of a window matrix, at least: a piece holds at least this many times
/// the weight's elements, so that packing the weight for each piece's GEMM stays a small
/// part of the work (on the deep layers, whose weights are larger than their windows, the
/// window matrix is then not split at all).
pub const WINDOW_PIECE_WEIGHTS: usize = 4;

/// How many weight-gradient parts a backward pass of `groups` groups keeps, for parts of
/// `part_len` floats: one per group while they fit in `budget` bytes (small layers keep
/// their full parallelism), else as many as fit, a multiple of 4 and at least 4 (so that
/// 1, 2 or 4 threads get equal shares). Before, every group had its own part: 64 × 52 MB
/// = 3.4 GB for D's last convolution at seed128 base 64 batch 64 (docs/performance.md,
/// change 11).
fn weight_slots(groups: usize, part_len: usize, budget: usize) -> usize {
    let fit = budget / (part_len * std::mem::size_of::<f32>()).max(1);
    let cap = if fit <= 4 { 4 } else { fit / 4 * 4 };
    groups.min(cap).max(1)
}

/// Whether a convolution's weight-gradient parts are laid out `[G, K]` (the product
/// `dyᵀ · cols`) rather than `[K, G]` (`colsᵀ · dy`): the same sums, but the `gemm`
/// crate runs the wide-grid ones (`G` ≥ 256) 10–25% faster that way round, except for
/// the deepest (`K` = 12,800: D's last convolution at base 64, 5–8% slower); measured on
/// one thread of the 2-core Intel Xeon (docs/performance.md, change 14).
fn weight_parts_gk(g: usize, k: usize) -> bool {
    g >= 256 && k <= 6400
}

/// What a convolution keeps for its backward pass.
#[derive(Clone, Debug)]
pub(crate) struct ConvState {
    spec: ConvSpec,
    /// The weight as `[K, G]` (for the input gradient from window matrices).
    wkg: Option<Arc<Vec<f32>>>,
    /// The weight as it is (for the input gradient by Winograd's transforms).
    weight: Option<Arc<Vec<f32>>>,
    /// Whether the forward pass ran as [`phases`] (so does the backward pass).
    split: bool,
    /// The weight of the stacked phases (for the input gradient of a stride-2 layer that
    /// ran as [`phases`]).
    phased: Option<Arc<Vec<f32>>>,
    weight_shape: Vec<usize>,
    /// The input, channels-last (for the weight gradient).
    input: Option<Maps>,
    input_was_nchw: bool,
}

#[derive(Debug)]
struct ConvBackward;

impl Backward<Flex, 3> for ConvBackward {
    type State = ConvState;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<Flex>(&ops.node);
        let [px, pw, pb] = ops.parents;
        let need = [px.is_some(), pw.is_some(), pb.is_some()];
        let [dx, dw, db] = ops.state.spec.backward(&grad, &ops.state, need);
        for (parent, g) in [(px, dx), (pw, dw), (pb, db)] {
            if let (Some(node), Some(g)) = (parent, g) {
                grads.register::<Flex>(node.id, g);
            }
        }
    }
}

fn prim<const D: usize>(t: Tensor<Ad, D>) -> FloatTensor<Ad> {
    t.into_primitive().tensor()
}

fn from_prim<B: burn::prelude::Backend, const D: usize>(p: FloatTensor<B>) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(p))
}

/// A convolution (either kind) on `Autodiff<Flex>` with its own backward pass.
pub(crate) fn conv_autodiff(
    spec: ConvSpec,
    x: Tensor<Ad, 4>,
    weight: Tensor<Ad, 4>,
    bias: Tensor<Ad, 1>,
) -> Tensor<Ad, 4> {
    let (x, weight, bias) = (prim(x), prim(weight), prim(bias));
    let need = [x.is_tracked(), weight.is_tracked()];
    let (out, state) = spec.forward(&x.primitive, &weight.primitive, &bias.primitive, need, None);
    let prep = ConvBackward
        .prepare::<NoCheckpointing>([x.node.clone(), weight.node.clone(), bias.node.clone()])
        .compute_bound()
        .stateful();
    from_prim(match prep {
        OpsKind::Tracked(prep) => prep.finish(state, out),
        OpsKind::UnTracked(prep) => prep.finish(out),
    })
}

/// A convolution (either kind) on plain `Flex` (inference), and a leaky ReLU of `slope`
/// on its output if asked for (fused: applied group by group while the output is in
/// cache).
pub(crate) fn conv_inference(
    spec: ConvSpec,
    x: Tensor<Flex, 4>,
    weight: Tensor<Flex, 4>,
    bias: Tensor<Flex, 1>,
    slope: Option<f32>,
) -> Tensor<Flex, 4> {
    let (x, weight, bias) = (
        x.into_primitive().tensor(),
        weight.into_primitive().tensor(),
        bias.into_primitive().tensor(),
    );
    from_prim(spec.forward(&x, &weight, &bias, [false, false], slope).0)
}

/// What batch norm + leaky ReLU keeps for its backward pass.
#[derive(Clone, Debug)]
pub(crate) struct NormState {
    input: Maps,
    mean: Vec<f32>,
    affine: Affine,
    gamma: Vec<f32>,
    slope: f32,
}

#[derive(Debug)]
struct NormBackward;

impl Backward<Flex, 3> for NormBackward {
    type State = NormState;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<Flex>(&ops.node);
        let [px, pg, pb] = ops.parents;
        let s = &ops.state;
        let x = &s.input;
        let tag = || format!("bn {}x{}x{} bwd", x.c, x.h, x.w);
        let dy = timed(tag, || Maps::of(&grad));
        let (dx, dgamma, dbeta) = timed(tag, || {
            kernels::batch_norm_leaky_backward(
                x.slice(),
                dy.slice(),
                &s.mean,
                &s.affine,
                &s.gamma,
                s.slope,
            )
        });
        if let Some(node) = px {
            let dx = nchw_tensor(dx, [x.n, x.c, x.h, x.w], x.was_nchw);
            grads.register::<Flex>(node.id, dx);
        }
        if let Some(node) = pg {
            grads.register::<Flex>(node.id, tensor(dgamma, &[x.c]));
        }
        if let Some(node) = pb {
            grads.register::<Flex>(node.id, tensor(dbeta, &[x.c]));
        }
    }
}

/// Batch norm with batch statistics, then leaky ReLU, on `Autodiff<Flex>`. Returns the
/// output and the batch mean and (biased) variance, for the running statistics.
pub(crate) fn batch_norm_leaky_autodiff(
    x: Tensor<Ad, 4>,
    gamma: Tensor<Ad, 1>,
    beta: Tensor<Ad, 1>,
    epsilon: f64,
    slope: f64,
) -> (Tensor<Ad, 4>, Vec<f32>, Vec<f32>) {
    let (x, gamma, beta) = (prim(x), prim(gamma), prim(beta));
    let input = Maps::of(&x.primitive);
    let (gamma_v, beta_v) = (values(&gamma.primitive), values(&beta.primitive));
    let tag = || format!("bn {}x{}x{} fwd", input.c, input.h, input.w);
    let (mean, var) = timed(tag, || kernels::batch_stats(input.slice(), input.c));
    let affine = Affine::new(&mean, &var, &gamma_v, &beta_v, epsilon);
    let out = timed(tag, || {
        kernels::affine_leaky(input.slice(), &affine, slope as f32)
    });
    let out = nchw_tensor(out, [input.n, input.c, input.h, input.w], input.was_nchw);
    let prep = NormBackward
        .prepare::<NoCheckpointing>([x.node.clone(), gamma.node.clone(), beta.node.clone()])
        .compute_bound()
        .stateful();
    let out = match prep {
        OpsKind::Tracked(prep) => prep.finish(
            NormState {
                input,
                mean: mean.clone(),
                affine,
                gamma: gamma_v,
                slope: slope as f32,
            },
            out,
        ),
        OpsKind::UnTracked(prep) => prep.finish(out),
    };
    (from_prim(out), mean, var)
}

/// Batch norm with the running statistics, then leaky ReLU, on plain `Flex` (inference).
pub(crate) fn batch_norm_leaky_inference(
    x: Tensor<Flex, 4>,
    params: [Tensor<Flex, 1>; 4],
    epsilon: f64,
    slope: f64,
) -> Tensor<Flex, 4> {
    let [gamma, beta, mean, var] = params.map(|p| values(&p.into_primitive().tensor()));
    let input = Maps::of(&x.into_primitive().tensor());
    let affine = Affine::new(&mean, &var, &gamma, &beta, epsilon);
    let out = kernels::affine_leaky(input.slice(), &affine, slope as f32);
    from_prim(nchw_tensor(
        out,
        [input.n, input.c, input.h, input.w],
        input.was_nchw,
    ))
}

/// Leaky ReLU alone (a layer without batch norm) keeps its input.
#[derive(Clone, Debug)]
pub(crate) struct LeakyState {
    input: Maps,
    slope: f32,
}

#[derive(Debug)]
struct LeakyBackward;

impl Backward<Flex, 1> for LeakyBackward {
    type State = LeakyState;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<Flex>(&ops.node);
        let [px] = ops.parents;
        let Some(node) = px else { return };
        let s = &ops.state;
        let x = &s.input;
        let dy = Maps::of(&grad);
        let dx = kernels::leaky_backward(x.slice(), dy.slice(), s.slope);
        grads.register::<Flex>(node.id, nchw_tensor(dx, [x.n, x.c, x.h, x.w], x.was_nchw));
    }
}

/// Leaky ReLU on `Autodiff<Flex>`, keeping the input's layout.
pub(crate) fn leaky_autodiff(x: Tensor<Ad, 4>, slope: f64) -> Tensor<Ad, 4> {
    let x = prim(x);
    let input = Maps::of(&x.primitive);
    let out = kernels::leaky(input.slice(), slope as f32);
    let out = nchw_tensor(out, [input.n, input.c, input.h, input.w], input.was_nchw);
    let prep = LeakyBackward
        .prepare::<NoCheckpointing>([x.node.clone()])
        .compute_bound()
        .stateful();
    from_prim(match prep {
        OpsKind::Tracked(prep) => prep.finish(
            LeakyState {
                input,
                slope: slope as f32,
            },
            out,
        ),
        OpsKind::UnTracked(prep) => prep.finish(out),
    })
}

/// Leaky ReLU on plain `Flex`, keeping the input's layout.
pub(crate) fn leaky_inference(x: Tensor<Flex, 4>, slope: f64) -> Tensor<Flex, 4> {
    let input = Maps::of(&x.into_primitive().tensor());
    let out = kernels::leaky(input.slice(), slope as f32);
    from_prim(nchw_tensor(
        out,
        [input.n, input.c, input.h, input.w],
        input.was_nchw,
    ))
}

/// A pooling window on `Flex` (inference): channels-last in and out.
pub(crate) fn pool_inference(
    x: Tensor<Flex, 4>,
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
    kind: kernels::Pool,
) -> Tensor<Flex, 4> {
    let input = Maps::of(&x.into_primitive().tensor());
    let side = |size: usize, i: usize| (size + 2 * padding[i] - kernel[i]) / stride[i] + 1;
    let (hs, ws) = (side(input.h, 0), side(input.w, 1));
    let out = kernels::pool(
        input.slice(),
        [input.n, input.h, input.w, input.c],
        [hs, ws],
        kernel,
        stride,
        padding,
        kind,
    );
    from_prim(nchw_tensor(out, [input.n, input.c, hs, ws], false))
}

/// Maps joined along their channels on `Flex` (inference): channels-last out.
pub(crate) fn cat_channels_inference(xs: Vec<Tensor<Flex, 4>>) -> Tensor<Flex, 4> {
    let maps: Vec<Maps> = xs
        .into_iter()
        .map(|x| Maps::of(&x.into_primitive().tensor()))
        .collect();
    let [n, h, w] = [maps[0].n, maps[0].h, maps[0].w];
    let parts: Vec<(&[f32], usize)> = maps.iter().map(|m| (m.slice(), m.c)).collect();
    let out = kernels::cat_channels(&parts, n * h * w);
    let c = parts.iter().map(|&(_, c)| c).sum();
    from_prim(nchw_tensor(out, [n, c, h, w], false))
}

/// What the `tanh` backward keeps: the output (NCHW).
#[derive(Clone, Debug)]
pub(crate) struct TanhState {
    output: FlexTensor,
}

#[derive(Debug)]
struct TanhBackward;

impl Backward<Flex, 1> for TanhBackward {
    type State = TanhState;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<Flex>(&ops.node);
        let [px] = ops.parents;
        let Some(node) = px else { return };
        let y = &ops.state.output;
        let dy = grad.to_contiguous();
        let dx = kernels::tanh_backward(slice(y), slice(&dy));
        grads.register::<Flex>(node.id, tensor(dx, y.layout().shape()));
    }
}

/// `tanh` of maps in any layout, as a plain NCHW tensor (one pass).
fn tanh_nchw(x: &FlexTensor) -> FlexTensor {
    let maps = Maps::of(x);
    let y = kernels::tanh_channels_first(maps.slice(), maps.h * maps.w, maps.c);
    tensor(y, &[maps.n, maps.c, maps.h, maps.w])
}

/// `tanh(x)` on `Autodiff<Flex>` as a plain NCHW tensor, keeping the output for the
/// backward pass.
pub(crate) fn tanh_channels_first_autodiff(x: Tensor<Ad, 4>) -> Tensor<Ad, 4> {
    let x = prim(x);
    let out = tanh_nchw(&x.primitive);
    let prep = TanhBackward
        .prepare::<NoCheckpointing>([x.node.clone()])
        .compute_bound()
        .stateful();
    from_prim(match prep {
        OpsKind::Tracked(prep) => prep.finish(
            TanhState {
                output: out.clone(),
            },
            out,
        ),
        OpsKind::UnTracked(prep) => prep.finish(out),
    })
}

/// `tanh(x)` on plain `Flex`, as a plain NCHW tensor.
pub(crate) fn tanh_channels_first_inference(x: Tensor<Flex, 4>) -> Tensor<Flex, 4> {
    from_prim(tanh_nchw(&x.into_primitive().tensor()))
}

/// A plain NCHW copy of a flex tensor (itself if it already is one).
pub(crate) fn channels_first(t: FlexTensor) -> FlexTensor {
    let layout = t.layout();
    if layout.is_contiguous()
        && layout.start_offset() == 0
        && t.storage::<f32>().len() == layout.num_elements()
    {
        return t;
    }
    let maps = Maps::of(&t);
    nchw_tensor(
        maps.slice().to_vec(),
        [maps.n, maps.c, maps.h, maps.w],
        true,
    )
}

#[derive(Debug)]
struct IdentityBackward;

impl Backward<Flex, 1> for IdentityBackward {
    type State = ();

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<Flex>(&ops.node);
        if let [Some(node)] = ops.parents {
            grads.register::<Flex>(node.id, grad);
        }
    }
}

/// [`channels_first`] on `Autodiff<Flex>` (the gradient passes through unchanged).
pub(crate) fn channels_first_autodiff(x: Tensor<Ad, 4>) -> Tensor<Ad, 4> {
    let x = prim(x);
    let out = channels_first(x.primitive.clone());
    let prep = IdentityBackward
        .prepare::<NoCheckpointing>([x.node.clone()])
        .compute_bound()
        .stateful();
    from_prim(match prep {
        OpsKind::Tracked(prep) => prep.finish((), out),
        OpsKind::UnTracked(prep) => prep.finish(out),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn random(len: usize, seed: u64) -> Vec<f32> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        (0..len).map(|_| rng.random_range(-1.0..1.0)).collect()
    }

    /// dW and dx of `spec` with `budget` bytes of weight-gradient parts, on `threads`
    /// threads.
    fn gradients(spec: ConvSpec, budget: usize, threads: usize) -> (Vec<f32>, Vec<f32>) {
        let w = &spec.window;
        let weight_shape = [spec.grid_channels, w.c, w.kh, w.kw];
        let x = tensor(
            random(spec.input_shape().iter().product(), 1),
            &spec.input_shape(),
        );
        let weight = tensor(random(weight_shape.iter().product(), 2), &weight_shape);
        let bias = tensor(vec![0.0; spec.grid_channels], &[spec.grid_channels]);
        let dy_shape = spec.output_shape();
        let dy = tensor(random(dy_shape.iter().product(), 3), &dy_shape);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let (_, state) = spec.forward(&x, &weight, &bias, [true, true], None);
            let [dx, dw, _] = spec.backward_within(&dy, &state, [true, true, false], budget);
            (values(&dw.unwrap()), values(&dx.unwrap()))
        })
    }

    #[test]
    fn weight_gradient_slots_bound_the_scratch_and_keep_the_result() {
        // 16 images of one group each (a 4 MiB window matrix per image), weight parts of
        // 64·64·16 floats (256 KiB): a budget of 4 parts gives 4 slots of 4 groups each. A
        // 4×4 kernel, which Winograd's transforms do not take (they would make the weight
        // gradient without window matrices or parts).
        let spec = ConvSpec {
            kind: ConvKind::Forward,
            window: Window {
                c: 64,
                hb: 32,
                wb: 32,
                hs: 32,
                ws: 32,
                kh: 4,
                kw: 4,
                sh: 1,
                sw: 1,
                ph: 1,
                pw: 1,
            },
            batch: 16,
            grid_channels: 64,
        };
        assert!(winograd::shape_plan(&spec.window, winograd::MIN_TILES).is_none());
        let groups = spec.batch.div_ceil(spec.group());
        assert_eq!(groups, 16, "one image per group");
        let part = 64 * 64 * 16;
        let part_bytes = part * 4;
        assert_eq!(weight_slots(groups, part, 4 * part_bytes), 4);
        assert_eq!(weight_slots(groups, part, usize::MAX), 16);
        assert_eq!(weight_slots(groups, part, 1), 4, "at least 4");
        assert_eq!(weight_slots(groups, part, 9 * part_bytes), 8);
        assert_eq!(weight_slots(0, part, 1), 1, "an empty batch");

        let (dw_all, dx_all) = gradients(spec, usize::MAX, 2);
        let (dw_four, dx_four) = gradients(spec, 4 * part_bytes, 2);
        assert_eq!(dx_four, dx_all, "dx does not depend on the slots");
        let scale = dw_all.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let worst = dw_all
            .iter()
            .zip(&dw_four)
            .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(
            worst <= 1e-5 * scale,
            "dW differs by {worst} (scale {scale})"
        );
        assert_ne!(dw_four, dw_all, "4 slots add in another order than 16");
        // Fixed by the shapes and the budget, not the threads.
        assert_eq!(gradients(spec, 4 * part_bytes, 1), (dw_four, dx_four));
    }
}
