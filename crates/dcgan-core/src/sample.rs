//! Turning a generator's output into pictures: tensors to `RgbImage`s, grids, latent walks.

use burn::prelude::*;
use image::{Rgb, RgbImage};

use crate::error::{Error, Result};
use crate::generator::Generator;

/// Generates images for the given latents, in inference mode.
///
/// Pass a generator on a non-autodiff backend (e.g. [`crate::Trainer::inference_generator`]
/// or one loaded with [`crate::load_generator`]) so batch norm uses its running statistics.
///
/// # Shapes
/// - `latents`: `[n, latent_dim]`; output: `[n, 3, size, size]` in [−1, 1]
pub fn generate<B: Backend>(generator: &Generator<B>, latents: Tensor<B, 2>) -> Tensor<B, 4> {
    generator.forward(latents)
}

/// Converts `[n, 3, h, w]` images in [−1, 1] to 8-bit RGB (values clamped, rounded).
pub fn to_rgb_images<B: Backend>(images: Tensor<B, 4>) -> Result<Vec<RgbImage>> {
    let [n, channels, height, width] = images.dims();
    if channels != 3 {
        return Err(Error::Shape {
            what: "images",
            expected: "[n, 3, height, width]".into(),
            actual: images.dims().to_vec(),
        });
    }
    let values = images
        .into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .expect("converted to f32");
    let plane = height * width;
    Ok((0..n)
        .map(|i| {
            let base = i * 3 * plane;
            RgbImage::from_fn(width as u32, height as u32, |x, y| {
                let at = y as usize * width + x as usize;
                Rgb(std::array::from_fn(|c| {
                    to_u8(values[base + c * plane + at])
                }))
            })
        })
        .collect())
}

/// [−1, 1] → 0..=255; NaN becomes 0.
pub fn to_u8(value: f32) -> u8 {
    ((value.clamp(-1.0, 1.0) + 1.0) * 127.5).round() as u8
}

/// Tiles images (all the same size) into a grid `columns` wide with `padding` pixels of
/// dark gray between and around them. The last row may be partly empty.
pub fn image_grid(images: &[RgbImage], columns: usize, padding: u32) -> Result<RgbImage> {
    let Some(first) = images.first() else {
        return Err(Error::Shape {
            what: "grid images",
            expected: "at least one image".into(),
            actual: vec![0],
        });
    };
    let (w, h) = first.dimensions();
    if let Some(other) = images.iter().find(|im| im.dimensions() != (w, h)) {
        return Err(Error::Shape {
            what: "grid images",
            expected: format!("all {w}×{h}"),
            actual: vec![other.width() as usize, other.height() as usize],
        });
    }
    let columns = columns.clamp(1, images.len()) as u32;
    let rows = (images.len() as u32).div_ceil(columns);
    let mut grid = RgbImage::from_pixel(
        columns * (w + padding) + padding,
        rows * (h + padding) + padding,
        Rgb([32, 32, 32]),
    );
    for (i, im) in images.iter().enumerate() {
        let (col, row) = (i as u32 % columns, i as u32 / columns);
        image::imageops::replace(
            &mut grid,
            im,
            (padding + col * (w + padding)) as i64,
            (padding + row * (h + padding)) as i64,
        );
    }
    Ok(grid)
}

/// The number of columns that makes `n` images closest to a square grid.
pub fn square_columns(n: usize) -> usize {
    (n as f64).sqrt().ceil().max(1.0) as usize
}

/// `steps` latents walking from `a` to `b` (both ends included).
///
/// `spherical` interpolates along the great circle (slerp), which keeps the norm of
/// Gaussian latents typical; otherwise straight lines (lerp).
pub fn interpolate_latents(a: &[f32], b: &[f32], steps: usize, spherical: bool) -> Vec<Vec<f32>> {
    assert_eq!(a.len(), b.len(), "latents of different lengths");
    let norm = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let (na, nb) = (norm(a), norm(b));
    let cos = if na > 0.0 && nb > 0.0 {
        (a.iter()
            .zip(b)
            .map(|(x, y)| *x as f64 * *y as f64)
            .sum::<f64>()
            / (na * nb))
            .clamp(-1.0, 1.0)
    } else {
        1.0
    };
    let omega = cos.acos();
    (0..steps)
        .map(|i| {
            let t = if steps == 1 {
                0.0
            } else {
                i as f64 / (steps - 1) as f64
            };
            let (wa, wb) = if spherical && omega.sin().abs() > 1e-6 {
                (
                    ((1.0 - t) * omega).sin() / omega.sin(),
                    (t * omega).sin() / omega.sin(),
                )
            } else {
                (1.0 - t, t)
            };
            a.iter()
                .zip(b)
                .map(|(x, y)| (wa * *x as f64 + wb * *y as f64) as f32)
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{GeneratorConfig, TestBackend};

    #[test]
    fn pixel_conversion_maps_the_range_ends() {
        assert_eq!((to_u8(-1.0), to_u8(0.0), to_u8(1.0)), (0, 128, 255));
        assert_eq!((to_u8(-7.0), to_u8(9.0), to_u8(f32::NAN)), (0, 255, 0));
    }

    #[test]
    fn tensors_become_images_channel_by_channel() {
        let device = Default::default();
        // One 1×2 image: left pixel red, right pixel blue.
        let t = Tensor::<TestBackend, 4>::from_data(
            TensorData::new(vec![1.0f32, -1.0, -1.0, -1.0, -1.0, 1.0], [1, 3, 1, 2]),
            &device,
        );
        let images = to_rgb_images(t).unwrap();
        assert_eq!(images[0].get_pixel(0, 0), &Rgb([255, 0, 0]));
        assert_eq!(images[0].get_pixel(1, 0), &Rgb([0, 0, 255]));
    }

    #[test]
    fn grid_places_images_with_padding() {
        let a = RgbImage::from_pixel(4, 4, Rgb([255, 0, 0]));
        let b = RgbImage::from_pixel(4, 4, Rgb([0, 255, 0]));
        let grid = image_grid(&[a.clone(), b, a], 2, 1).unwrap();
        // 2 columns, 2 rows: 2·(4+1)+1 = 11 on each side.
        assert_eq!(grid.dimensions(), (11, 11));
        assert_eq!(grid.get_pixel(1, 1), &Rgb([255, 0, 0]));
        assert_eq!(grid.get_pixel(6, 1), &Rgb([0, 255, 0]));
        assert_eq!(grid.get_pixel(6, 6), &Rgb([32, 32, 32]));
        assert!(image_grid(&[], 2, 1).is_err());
        assert!(image_grid(&[RgbImage::new(2, 2), RgbImage::new(3, 3)], 2, 1).is_err());
    }

    #[test]
    fn interpolation_starts_and_ends_at_the_endpoints() {
        let a = [1.0f32, 0.0];
        let b = [0.0f32, 1.0];
        for spherical in [false, true] {
            let path = interpolate_latents(&a, &b, 5, spherical);
            assert_eq!(path.len(), 5);
            assert_eq!(path[0], a.to_vec());
            assert!((path[4][0] - b[0]).abs() < 1e-6 && (path[4][1] - b[1]).abs() < 1e-6);
        }
        // Slerp keeps unit norm midway; lerp shrinks it to √½.
        let mid = &interpolate_latents(&a, &b, 3, true)[1];
        assert!(((mid[0].powi(2) + mid[1].powi(2)).sqrt() - 1.0).abs() < 1e-6);
        let mid = &interpolate_latents(&a, &b, 3, false)[1];
        assert!(((mid[0].powi(2) + mid[1].powi(2)).sqrt() - 0.5f32.sqrt()).abs() < 1e-6);
    }

    #[test]
    fn generate_makes_images_of_the_generators_size() {
        let device = Default::default();
        let g = GeneratorConfig::new(16)
            .with_base_channels(2)
            .init::<TestBackend>(&device)
            .unwrap();
        let images = to_rgb_images(generate(&g, Tensor::zeros([3, 100], &device))).unwrap();
        assert_eq!(images.len(), 3);
        assert_eq!(images[0].dimensions(), (16, 16));
        assert_eq!(square_columns(3), 2);
        assert_eq!(square_columns(64), 8);
    }
}
