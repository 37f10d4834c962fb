//! Geometry and pixel values: square crop (or pad), resize, flip, and scaling to [−1, 1].
//!
//! - **Square**: [`CropMode::Center`] (default) keeps the centred `min(w, h)` square (the
//!   extra column/row of an odd difference is dropped on the right/bottom);
//!   [`CropMode::Pad`] keeps the whole picture and pads the short side with black, centred.
//! - **Resize**: Lanczos3 (`image::imageops::FilterType::Lanczos3`), a windowed sinc whose
//!   support widens with the downscale factor, so large photos are properly low-pass
//!   filtered (no aliasing) and small upscales stay sharp. A square that already has the
//!   target size is copied untouched.
//! - **Values**: `x / 127.5 − 1` per 8-bit channel, so 0 → −1 and 255 → +1 exactly, the range
//!   of the generator's `tanh`. Batches are NCHW `f32`: `[batch, 3 (R, G, B), size, size]`.

use image::imageops::FilterType;
use image::RgbImage;
use serde::{Deserialize, Serialize};

/// How a non-square picture is made square.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CropMode {
    /// Keep the centred square of side `min(width, height)`.
    #[default]
    Center,
    /// Keep everything; pad the short side with black, centred.
    Pad,
}

impl CropMode {
    /// A short lowercase name, used in cache file names and the cache key.
    pub fn name(self) -> &'static str {
        match self {
            CropMode::Center => "center",
            CropMode::Pad => "pad",
        }
    }
}

/// Makes `image` square according to `mode` (see the [module docs](self)).
pub fn make_square(image: RgbImage, mode: CropMode) -> RgbImage {
    let (w, h) = image.dimensions();
    if w == h {
        return image;
    }
    match mode {
        CropMode::Center => {
            let side = w.min(h);
            let (x, y) = ((w - side) / 2, (h - side) / 2);
            image::imageops::crop_imm(&image, x, y, side, side).to_image()
        }
        CropMode::Pad => {
            let side = w.max(h);
            let mut out = RgbImage::new(side, side);
            let (x, y) = ((side - w) / 2, (side - h) / 2);
            image::imageops::replace(&mut out, &image, i64::from(x), i64::from(y));
            out
        }
    }
}

/// Resizes a square image to `size × size` with Lanczos3 (no-op if it already has that size).
pub fn resize_square(image: RgbImage, size: u32) -> RgbImage {
    if image.dimensions() == (size, size) {
        return image;
    }
    image::imageops::resize(&image, size, size, FilterType::Lanczos3)
}

/// [`make_square`] then [`resize_square`]: any RGB picture to a `size × size` training image.
///
/// ```
/// use image::{Rgb, RgbImage};
/// use dcgan_data::transform::{to_training_size, CropMode};
/// let wide = RgbImage::from_pixel(300, 200, Rgb([255, 0, 0]));
/// let small = to_training_size(wide, 64, CropMode::Center);
/// assert_eq!(small.dimensions(), (64, 64));
/// assert_eq!(small.get_pixel(10, 10).0, [255, 0, 0]);
/// ```
pub fn to_training_size(image: RgbImage, size: u32, mode: CropMode) -> RgbImage {
    resize_square(make_square(image, mode), size)
}

/// The value an 8-bit channel takes in a batch: `x / 127.5 − 1`, in [−1, 1].
///
/// ```
/// use dcgan_data::transform::to_unit_range;
/// assert_eq!(to_unit_range(0), -1.0);
/// assert_eq!(to_unit_range(255), 1.0);
/// ```
#[inline]
pub fn to_unit_range(value: u8) -> f32 {
    f32::from(value) / 127.5 - 1.0
}

/// Inverse of [`to_unit_range`] for showing tensors as images: clamps to [−1, 1] and rounds.
///
/// ```
/// use dcgan_data::transform::{from_unit_range, to_unit_range};
/// for v in 0..=255u8 { assert_eq!(from_unit_range(to_unit_range(v)), v); }
/// ```
#[inline]
pub fn from_unit_range(value: f32) -> u8 {
    ((value.clamp(-1.0, 1.0) + 1.0) * 127.5).round() as u8
}

/// Lookup table of [`to_unit_range`] for all 256 values.
fn unit_lut() -> &'static [f32; 256] {
    static LUT: std::sync::OnceLock<[f32; 256]> = std::sync::OnceLock::new();
    LUT.get_or_init(|| std::array::from_fn(|i| to_unit_range(i as u8)))
}

/// Writes one `size × size` HWC RGB image into a CHW `f32` slice (`3 * size * size` values),
/// scaled to [−1, 1], mirrored left–right if `flip`.
///
/// # Panics
/// If `hwc.len()` or `chw.len()` is not `3 * size * size` (internal callers guarantee it).
pub fn write_chw(hwc: &[u8], size: usize, flip: bool, chw: &mut [f32]) {
    let plane = size * size;
    assert_eq!(hwc.len(), 3 * plane, "HWC buffer size");
    assert_eq!(chw.len(), 3 * plane, "CHW buffer size");
    let lut = unit_lut();
    let (r, rest) = chw.split_at_mut(plane);
    let (g, b) = rest.split_at_mut(plane);
    for (y, row) in hwc.chunks_exact(3 * size).enumerate() {
        let base = y * size;
        let (r, g, b) = (
            &mut r[base..base + size],
            &mut g[base..base + size],
            &mut b[base..base + size],
        );
        if flip {
            for (x, px) in row.chunks_exact(3).rev().enumerate() {
                r[x] = lut[px[0] as usize];
                g[x] = lut[px[1] as usize];
                b[x] = lut[px[2] as usize];
            }
        } else {
            for (x, px) in row.chunks_exact(3).enumerate() {
                r[x] = lut[px[0] as usize];
                g[x] = lut[px[1] as usize];
                b[x] = lut[px[2] as usize];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    #[test]
    fn center_crop_keeps_the_middle() {
        let mut img = RgbImage::from_pixel(6, 2, Rgb([0, 0, 0]));
        img.put_pixel(2, 0, Rgb([9, 9, 9]));
        let sq = make_square(img, CropMode::Center);
        assert_eq!(sq.dimensions(), (2, 2));
        assert_eq!(sq.get_pixel(0, 0).0, [9, 9, 9]);
    }

    #[test]
    fn pad_keeps_everything_centred_on_black() {
        let img = RgbImage::from_pixel(4, 2, Rgb([200, 100, 50]));
        let sq = make_square(img, CropMode::Pad);
        assert_eq!(sq.dimensions(), (4, 4));
        assert_eq!(sq.get_pixel(0, 0).0, [0, 0, 0]);
        assert_eq!(sq.get_pixel(0, 1).0, [200, 100, 50]);
        assert_eq!(sq.get_pixel(3, 2).0, [200, 100, 50]);
        assert_eq!(sq.get_pixel(3, 3).0, [0, 0, 0]);
    }

    #[test]
    fn resize_keeps_flat_colours_exact() {
        let img = RgbImage::from_pixel(301, 301, Rgb([255, 0, 128]));
        let small = resize_square(img, 64);
        assert!(small.pixels().all(|p| p.0 == [255, 0, 128]));
    }

    #[test]
    fn chw_layout_values_and_flip() {
        // 2x2 image: (0,0) red, (1,0) green, (0,1) blue, (1,1) white.
        let hwc = [255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255];
        let mut chw = [0.0; 12];
        write_chw(&hwc, 2, false, &mut chw);
        assert_eq!(chw[..4], [1.0, -1.0, -1.0, 1.0]); // R plane
        assert_eq!(chw[4..8], [-1.0, 1.0, -1.0, 1.0]); // G plane
        assert_eq!(chw[8..], [-1.0, -1.0, 1.0, 1.0]); // B plane
        write_chw(&hwc, 2, true, &mut chw);
        assert_eq!(chw[..4], [-1.0, 1.0, 1.0, -1.0]); // R plane mirrored per row
        assert_eq!(chw[4..8], [1.0, -1.0, 1.0, -1.0]);
    }
}
