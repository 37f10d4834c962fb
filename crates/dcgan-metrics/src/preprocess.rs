//! Images to Inception input, exactly as `fid-helper-pytorch` 0.1.3 prepares them.
//!
//! Its defaults (`FidHelper()`, used by `compute_fid_score_from_dir`):
//! 1. decode to 8-bit RGB (`PIL.Image.open(f).convert('RGB')`);
//! 2. unless the image is already 299x299, resize it with `nv_bilinear_float`: PyTorch
//!    `affine_grid` + `grid_sample` (bilinear, border padding, `align_corners=False`) with
//!    the grid shifted by half an input pixel minus half an output pixel, so output pixel
//!    `j` samples input position `j * in / out` (the TF1 `resize_bilinear` convention),
//!    in float32, without rounding;
//! 3. divide by 255, clamp to [0, 1], map to the TF range `[-1, 0.9921875]`
//!    (`x * 1.9921875 - 1`, clamped).
//!
//! Generator outputs (`update_eval_stat(batch, data_range=(-1, 1))`, `quant=True`): map
//! `[-1, 1]` to `[0, 1]`, clamp, multiply by 255 and round half to even (the value a PNG
//! would store), then the same resize and steps 3.

use image::RgbImage;

/// Inception input side.
pub const INPUT_SIZE: usize = 299;

/// Lower bound of the TF input range.
pub const TF_RANGE_LOW: f32 = -1.0;
/// Upper bound of the TF input range (`INPUT_RANGE_TF` of fid-helper-pytorch).
pub const TF_RANGE_HIGH: f32 = 0.992_187_5;

/// Sampling positions of one axis: for each output index, the two input indices and
/// their weights, as PyTorch's CPU `grid_sample` computes them in float32.
struct Axis {
    lo: Vec<usize>,
    hi: Vec<Option<usize>>,
    w_lo: Vec<f32>,
    w_hi: Vec<f32>,
}

impl Axis {
    fn new(n_in: usize, n_out: usize) -> Axis {
        // affine_grid(align_corners=False): base = linspace(-1, 1, n_out) * (n_out - 1) / n_out,
        // then + theta[.., 2] = 1/n_in - 1/n_out (float32 throughout).
        let step = 2.0f32 / (n_out.max(2) - 1) as f32;
        let half = n_out / 2;
        let shift = 1.0f32 / n_in as f32 - 1.0f32 / n_out as f32;
        let scale = n_in as f32 * 0.5;
        let mut axis = Axis {
            lo: Vec::with_capacity(n_out),
            hi: Vec::with_capacity(n_out),
            w_lo: Vec::with_capacity(n_out),
            w_hi: Vec::with_capacity(n_out),
        };
        for j in 0..n_out {
            let lin = if n_out == 1 {
                0.0
            } else if j < half {
                -1.0 + step * j as f32
            } else {
                1.0 - step * (n_out - 1 - j) as f32
            };
            let base = lin * (n_out - 1) as f32 / n_out as f32;
            let g = base + shift;
            // grid_sample: unnormalize ((g + 1) * size/2 - 0.5), then border-clip.
            let pos = ((g + 1.0) * scale - 0.5).clamp(0.0, (n_in - 1) as f32);
            let lo = pos.floor();
            let w_hi = pos - lo;
            let w_lo = (lo + 1.0) - pos;
            let lo_i = lo as usize;
            axis.lo.push(lo_i);
            axis.hi.push((lo_i + 1 < n_in).then_some(lo_i + 1));
            axis.w_lo.push(w_lo);
            axis.w_hi.push(w_hi);
        }
        axis
    }
}

/// Resizes `channels` planes of `h x w` float32 values (CHW) to `out_h x out_w` with
/// fid-helper-pytorch's `nv_bilinear_float`, returning CHW planes. No rounding.
///
/// # Panics
/// If `src.len() != channels * h * w` or a size is 0.
///
/// ```
/// use dcgan_metrics::preprocess::resize_nv_bilinear;
/// // A 2x2 image upsampled to 4x4: output pixel j samples input position j * 2 / 4.
/// let out = resize_nv_bilinear(&[0.0, 10.0, 20.0, 30.0], 1, 2, 2, 4, 4);
/// assert_eq!(&out[..4], &[0.0, 5.0, 10.0, 10.0]);
/// ```
pub fn resize_nv_bilinear(
    src: &[f32],
    channels: usize,
    h: usize,
    w: usize,
    out_h: usize,
    out_w: usize,
) -> Vec<f32> {
    assert_eq!(src.len(), channels * h * w, "source is not channels*h*w");
    assert!(h > 0 && w > 0 && out_h > 0 && out_w > 0, "empty image");
    let ys = Axis::new(h, out_h);
    let xs = Axis::new(w, out_w);
    let mut out = vec![0f32; channels * out_h * out_w];
    for c in 0..channels {
        let plane = &src[c * h * w..(c + 1) * h * w];
        let dst = &mut out[c * out_h * out_w..(c + 1) * out_h * out_w];
        for i in 0..out_h {
            let (y0, y1) = (ys.lo[i], ys.hi[i]);
            let (n, s) = (ys.w_hi[i], ys.w_lo[i]); // distance to north row, to south row
            for j in 0..out_w {
                let (x0, x1) = (xs.lo[j], xs.hi[j]);
                let (wgt, e) = (xs.w_hi[j], xs.w_lo[j]);
                let at = |y: Option<usize>, x: Option<usize>| match (y, x) {
                    (Some(y), Some(x)) => plane[y * w + x],
                    _ => 0.0,
                };
                // PyTorch: nw = s*e, ne = s*w, sw = n*e, se = n*w; sum in that order.
                let v = at(Some(y0), Some(x0)) * (s * e)
                    + at(Some(y0), x1) * (s * wgt)
                    + at(y1, Some(x0)) * (n * e)
                    + at(y1, x1) * (n * wgt);
                dst[i * out_w + j] = v;
            }
        }
    }
    out
}

/// Maps values in [0, 255] to the TF input range, in place (steps 3 above).
fn to_tf_range(values: &mut [f32]) {
    for v in values {
        let t = (*v / 255.0).clamp(0.0, 1.0);
        *v = (t * (TF_RANGE_HIGH - TF_RANGE_LOW) + TF_RANGE_LOW).clamp(TF_RANGE_LOW, TF_RANGE_HIGH);
    }
}

/// One image to a `3 x 299 x 299` CHW float32 Inception input in the TF range.
///
/// # Panics
/// If the image is empty (0 pixels wide or high).
pub fn image_to_input(img: &RgbImage) -> Vec<f32> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let mut chw = vec![0f32; 3 * h * w];
    for (i, px) in img.pixels().enumerate() {
        for c in 0..3 {
            chw[c * h * w + i] = px.0[c] as f32;
        }
    }
    planes_to_input(chw, h, w)
}

/// One generated image, CHW float32 in [-1, 1], to a `3 x 299 x 299` Inception input
/// (quantized to 8 bits first, as fid-helper-pytorch's `update_eval_stat` does).
///
/// # Panics
/// If `chw.len() != 3 * h * w` or `h` or `w` is 0.
pub fn generated_to_input(chw: &[f32], h: usize, w: usize) -> Vec<f32> {
    let planes = chw
        .iter()
        .map(|&x| {
            let t = ((x + 1.0) / 2.0).clamp(0.0, 1.0);
            (t * 255.0).round_ties_even()
        })
        .collect();
    planes_to_input(planes, h, w)
}

/// `[0, 255]` CHW planes -> resized (unless already 299x299) -> TF range.
fn planes_to_input(chw: Vec<f32>, h: usize, w: usize) -> Vec<f32> {
    let mut v = if h == INPUT_SIZE && w == INPUT_SIZE {
        chw
    } else {
        resize_nv_bilinear(&chw, 3, h, w, INPUT_SIZE, INPUT_SIZE)
    };
    to_tf_range(&mut v);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_size_keeps_values() {
        let src: Vec<f32> = (0..2 * 3 * 4).map(|v| v as f32).collect();
        assert_eq!(resize_nv_bilinear(&src, 2, 3, 4, 3, 4), src);
    }

    #[test]
    fn upsampling_samples_j_times_in_over_out_and_clamps_at_the_border() {
        // 1x3 row -> 1x7: positions j*3/7 = 0, .43, .86, 1.29, 1.71, 2.14->2 (clipped), 2.57->2.
        let out = resize_nv_bilinear(&[0.0, 70.0, 140.0], 1, 1, 3, 1, 7);
        let expect = [0.0, 30.0, 60.0, 90.0, 120.0, 140.0, 140.0];
        for (o, e) in out.iter().zip(expect) {
            assert!((o - e).abs() < 1e-3, "{out:?}");
        }
    }

    #[test]
    fn downsampling_by_two_picks_every_other_pixel() {
        let src: Vec<f32> = (0..16).map(|v| v as f32).collect();
        let out = resize_nv_bilinear(&src, 1, 4, 4, 2, 2);
        assert_eq!(out, vec![0.0, 2.0, 8.0, 10.0]);
    }

    #[test]
    fn tf_range_ends() {
        let img = RgbImage::from_fn(299, 299, |x, _| {
            if x == 0 {
                image::Rgb([0, 0, 0])
            } else {
                image::Rgb([255, 255, 255])
            }
        });
        let v = image_to_input(&img);
        assert_eq!(v.len(), 3 * 299 * 299);
        assert_eq!(v[0], -1.0);
        assert_eq!(v[1], TF_RANGE_HIGH);
    }

    #[test]
    fn generated_path_quantizes_like_a_png() {
        // 0 -> 0.5 * 255 = 127.5 -> 128 (half to even), then the TF range.
        let chw = vec![0.0f32; 3 * 299 * 299];
        let v = generated_to_input(&chw, 299, 299);
        let expect = 128.0f32 / 255.0 * 1.992_187_5 - 1.0;
        assert!((v[0] - expect).abs() < 1e-6, "{} vs {expect}", v[0]);
        // -1 and 1 map to the ends of the TF range.
        let v = generated_to_input(&[-1.0, 1.0, -3.0], 1, 1);
        assert_eq!(v[0], TF_RANGE_LOW);
        assert_eq!(v[299 * 299], TF_RANGE_HIGH);
        assert_eq!(v[2 * 299 * 299], TF_RANGE_LOW);
    }
}
