//! DiffAugment (Zhao et al., "Differentiable Augmentation for Data-Efficient GAN
//! Training", NeurIPS 2020): random colour, translation and cutout applied to every image
//! the discriminator sees, real and fake, in both updates. The operations are
//! differentiable in the image, so the generator learns through them, and D cannot
//! memorise a small training set.
//!
//! The parameters are those of the paper's code (`DiffAugment_pytorch.py`): brightness
//! `+U(−0.5, 0.5)`, saturation `×U(0, 2)`, contrast `×U(0.5, 1.5)`; translation by up to
//! 1/8 of the side (integer pixels, zeros shifted in); cutout of a square half the side,
//! centred anywhere. Every random number is drawn per image from the trainer's seeded RNG
//! (not the backend's), so a resumed run draws the same augmentations.

use std::fmt;
use std::str::FromStr;

use burn::prelude::*;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::Error;

/// Which DiffAugment policies run, in the paper's order (colour, translation, cutout).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Augment {
    /// Random brightness, saturation and contrast.
    pub color: bool,
    /// Random shift by up to 1/8 of the side.
    pub translation: bool,
    /// A random square of half the side set to zero.
    pub cutout: bool,
}

impl Augment {
    /// No augmentation.
    pub const NONE: Augment = Augment {
        color: false,
        translation: false,
        cutout: false,
    };
    /// All three policies: the paper's choice for small datasets.
    pub const ALL: Augment = Augment {
        color: true,
        translation: true,
        cutout: true,
    };

    /// Whether any policy is on.
    pub fn is_on(&self) -> bool {
        self.color || self.translation || self.cutout
    }

    /// Augments a batch of images in [−1, 1] (autodiff flows through), drawing every random
    /// number from `rng`. The identity, with no draws, when no policy is on.
    ///
    /// # Shapes
    /// - `images`: `[batch, channels, height, width]`; output: the same
    pub fn apply<B: Backend>(&self, images: Tensor<B, 4>, rng: &mut ChaCha8Rng) -> Tensor<B, 4> {
        let mut x = images;
        if self.color {
            x = color(x, rng);
        }
        if self.translation {
            x = translation(x, rng, 0.125);
        }
        if self.cutout {
            x = cutout(x, rng, 0.5);
        }
        x
    }
}

/// One random number per image, as a `[batch, 1, 1, 1]` tensor.
fn per_image<B: Backend>(
    batch: usize,
    device: &B::Device,
    rng: &mut ChaCha8Rng,
    draw: impl Fn(&mut ChaCha8Rng) -> f32,
) -> Tensor<B, 4> {
    let values: Vec<f32> = (0..batch).map(|_| draw(rng)).collect();
    Tensor::from_data(TensorData::new(values, [batch, 1, 1, 1]), device)
}

/// Brightness, saturation and contrast (`rand_brightness`, `rand_saturation`,
/// `rand_contrast` of the paper's code).
fn color<B: Backend>(x: Tensor<B, 4>, rng: &mut ChaCha8Rng) -> Tensor<B, 4> {
    let batch = x.dims()[0];
    let device = x.device();
    let brightness = per_image::<B>(batch, &device, rng, |r| r.random::<f32>() - 0.5);
    let x = x + brightness;
    let saturation = per_image::<B>(batch, &device, rng, |r| r.random::<f32>() * 2.0);
    let mean = x.clone().mean_dim(1);
    let x = (x - mean.clone()) * saturation + mean;
    let contrast = per_image::<B>(batch, &device, rng, |r| r.random::<f32>() + 0.5);
    let mean = x.clone().mean_dims(&[1, 2, 3]);
    (x - mean.clone()) * contrast + mean
}

/// A per-image integer shift of up to `ratio` of the side, zeros shifted in
/// (`rand_translation`).
fn translation<B: Backend>(x: Tensor<B, 4>, rng: &mut ChaCha8Rng, ratio: f64) -> Tensor<B, 4> {
    let [batch, channels, height, width] = x.dims();
    let max_dy = (height as f64 * ratio + 0.5) as i64;
    let max_dx = (width as f64 * ratio + 0.5) as i64;
    let mut source = Vec::with_capacity(batch * height * width);
    let mut inside = Vec::with_capacity(batch * height * width);
    for _ in 0..batch {
        let dy = rng.random_range(-max_dy..=max_dy);
        let dx = rng.random_range(-max_dx..=max_dx);
        for row in 0..height as i64 {
            for col in 0..width as i64 {
                // Output pixel (row, col) shows input pixel (row + dy, col + dx), or 0.
                let (r, c) = (row + dy, col + dx);
                let ok = (0..height as i64).contains(&r) && (0..width as i64).contains(&c);
                let (r, c) = (r.clamp(0, height as i64 - 1), c.clamp(0, width as i64 - 1));
                source.push(r * width as i64 + c);
                inside.push(if ok { 1.0f32 } else { 0.0 });
            }
        }
    }
    let device = x.device();
    let index = Tensor::<B, 3, Int>::from_data(
        TensorData::new(source, [batch, 1, height * width]),
        &device,
    )
    .expand([batch, channels, height * width]);
    let mask =
        Tensor::<B, 4>::from_data(TensorData::new(inside, [batch, 1, height, width]), &device);
    let shifted = x
        .reshape([batch, channels, height * width])
        .gather(2, index)
        .reshape([batch, channels, height, width]);
    shifted * mask
}

/// A square of `ratio` of the side set to zero at a random place in each image, possibly
/// hanging over the border (`rand_cutout`).
fn cutout<B: Backend>(x: Tensor<B, 4>, rng: &mut ChaCha8Rng, ratio: f64) -> Tensor<B, 4> {
    let [batch, _, height, width] = x.dims();
    let size_h = (height as f64 * ratio + 0.5) as i64;
    let size_w = (width as f64 * ratio + 0.5) as i64;
    let mut keep = vec![1.0f32; batch * height * width];
    for image in keep.chunks_mut(height * width) {
        let top = rng.random_range(0..height as i64 + (1 - size_h % 2)) - size_h / 2;
        let left = rng.random_range(0..width as i64 + (1 - size_w % 2)) - size_w / 2;
        for row in top.max(0)..(top + size_h).min(height as i64) {
            for col in left.max(0)..(left + size_w).min(width as i64) {
                image[row as usize * width + col as usize] = 0.0;
            }
        }
    }
    let mask = Tensor::<B, 4>::from_data(
        TensorData::new(keep, [batch, 1, height, width]),
        &x.device(),
    );
    x * mask
}

impl fmt::Display for Augment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = [
            ("color", self.color),
            ("translation", self.translation),
            ("cutout", self.cutout),
        ]
        .into_iter()
        .filter_map(|(name, on)| on.then_some(name))
        .collect();
        if names.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&names.join(","))
        }
    }
}

impl FromStr for Augment {
    type Err = Error;

    /// `color,translation,cutout` (any subset, any order), `all`, or `none`.
    fn from_str(text: &str) -> Result<Self, Error> {
        let mut augment = Augment::NONE;
        for name in text.split(',').map(|n| n.trim().to_ascii_lowercase()) {
            match name.as_str() {
                "color" | "colour" => augment.color = true,
                "translation" => augment.translation = true,
                "cutout" => augment.cutout = true,
                "all" => augment = Augment::ALL,
                "none" | "" => {}
                other => return Err(Error::invalid(
                    "trainer",
                    "augment",
                    other,
                    "expected a comma-separated list of color, translation, cutout (or all, none)",
                )),
            }
        }
        Ok(augment)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{TestAutodiffBackend, TestBackend};
    use rand::SeedableRng;

    fn ramp(batch: usize, side: usize) -> Tensor<TestBackend, 4> {
        let n = batch * 3 * side * side;
        Tensor::from_data(
            TensorData::new(
                (0..n).map(|i| (i as f32 / n as f32) * 2.0 - 1.0).collect(),
                [batch, 3, side, side],
            ),
            &Default::default(),
        )
    }

    fn values(x: Tensor<TestBackend, 4>) -> Vec<f32> {
        x.into_data().to_vec().unwrap()
    }

    #[test]
    fn parses_and_prints_policies() {
        assert_eq!("all".parse::<Augment>().unwrap(), Augment::ALL);
        assert_eq!(
            "cutout, color".parse::<Augment>().unwrap(),
            Augment {
                color: true,
                translation: false,
                cutout: true
            }
        );
        assert_eq!(Augment::ALL.to_string(), "color,translation,cutout");
        assert_eq!("none".parse::<Augment>().unwrap().to_string(), "none");
        let err = "flip".parse::<Augment>().unwrap_err().to_string();
        assert!(err.contains("flip") && err.contains("translation"), "{err}");
    }

    #[test]
    fn no_policy_is_the_identity_and_draws_nothing() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let x = ramp(2, 8);
        assert_eq!(values(Augment::NONE.apply(x.clone(), &mut rng)), values(x));
        assert_eq!(rng, ChaCha8Rng::seed_from_u64(1));
    }

    #[test]
    fn translation_moves_pixels_by_whole_steps_and_fills_zeros() {
        let side = 16;
        let x = ramp(4, side) + 2.0; // all pixels ≥ 1, so zeros can only be fill
        let y = values(translation(
            x.clone(),
            &mut ChaCha8Rng::seed_from_u64(2),
            0.125,
        ));
        let x = values(x);
        let plane = side * side;
        for image in 0..4 {
            let at = |v: &[f32], c: usize, r: usize, col: usize| {
                v[(image * 3 + c) * plane + r * side + col]
            };
            // Find the shift from the centre pixel, then check every pixel against it.
            let centre = at(&y, 0, 8, 8);
            let (dy, dx) = (-2i64..=2)
                .flat_map(|dy| (-2i64..=2).map(move |dx| (dy, dx)))
                .find(|&(dy, dx)| at(&x, 0, (8 + dy) as usize, (8 + dx) as usize) == centre)
                .expect("the centre comes from within 2 pixels");
            for c in 0..3 {
                for r in 0..side as i64 {
                    for col in 0..side as i64 {
                        let (sr, sc) = (r + dy, col + dx);
                        let expected =
                            if (0..side as i64).contains(&sr) && (0..side as i64).contains(&sc) {
                                at(&x, c, sr as usize, sc as usize)
                            } else {
                                0.0
                            };
                        assert_eq!(at(&y, c, r as usize, col as usize), expected);
                    }
                }
            }
        }
    }

    #[test]
    fn cutout_zeroes_one_square_of_half_the_side_in_every_channel() {
        let side = 16;
        let x = ramp(3, side) + 2.0;
        let y = values(cutout(x, &mut ChaCha8Rng::seed_from_u64(3), 0.5));
        let plane = side * side;
        for image in 0..3 {
            let zeros: Vec<usize> = (0..plane)
                .filter(|&p| y[image * 3 * plane + p] == 0.0)
                .collect();
            // At most 8×8 pixels, a rectangle (clipped square), the same in every channel.
            assert!(!zeros.is_empty() && zeros.len() <= 64, "{}", zeros.len());
            let rows: Vec<usize> = zeros.iter().map(|p| p / side).collect();
            let cols: Vec<usize> = zeros.iter().map(|p| p % side).collect();
            let (h, w) = (
                rows.iter().max().unwrap() - rows.iter().min().unwrap() + 1,
                cols.iter().max().unwrap() - cols.iter().min().unwrap() + 1,
            );
            assert_eq!(h * w, zeros.len());
            for c in 1..3 {
                for &p in &zeros {
                    assert_eq!(y[(image * 3 + c) * plane + p], 0.0);
                }
            }
        }
    }

    #[test]
    fn color_matches_the_papers_formulas() {
        let x = ramp(2, 4);
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let y = values(color(x.clone(), &mut rng));
        // Replay the draws in the same order.
        let mut replay = ChaCha8Rng::seed_from_u64(4);
        let b: Vec<f32> = (0..2).map(|_| replay.random::<f32>() - 0.5).collect();
        let s: Vec<f32> = (0..2).map(|_| replay.random::<f32>() * 2.0).collect();
        let c: Vec<f32> = (0..2).map(|_| replay.random::<f32>() + 0.5).collect();
        let x = values(x);
        let plane = 16;
        for image in 0..2 {
            let px = |v: &Vec<f32>, ch: usize, p: usize| v[(image * 3 + ch) * plane + p];
            let bright: Vec<Vec<f32>> = (0..3)
                .map(|ch| (0..plane).map(|p| px(&x, ch, p) + b[image]).collect())
                .collect();
            let sat: Vec<Vec<f32>> = (0..3)
                .map(|ch| {
                    (0..plane)
                        .map(|p| {
                            let m = (0..3).map(|k| bright[k][p]).sum::<f32>() / 3.0;
                            (bright[ch][p] - m) * s[image] + m
                        })
                        .collect()
                })
                .collect();
            let mean = sat.iter().flatten().sum::<f32>() / (3 * plane) as f32;
            for (ch, channel) in sat.iter().enumerate() {
                for (p, value) in channel.iter().enumerate() {
                    let expected = (value - mean) * c[image] + mean;
                    assert!((px(&y, ch, p) - expected).abs() < 1e-5);
                }
            }
        }
    }

    #[test]
    fn gradients_flow_through_every_policy() {
        let device = Default::default();
        let gradient = |augment: Augment| -> Vec<f32> {
            let x = Tensor::<TestAutodiffBackend, 4>::ones([2, 3, 16, 16], &device).require_grad();
            let y = augment.apply(x.clone(), &mut ChaCha8Rng::seed_from_u64(5));
            let grads = (y.clone() * y).sum().backward();
            x.grad(&grads).unwrap().into_data().to_vec().unwrap()
        };
        // Cut-out or shifted-out pixels get no gradient; the others do.
        let g = gradient(Augment {
            color: false,
            ..Augment::ALL
        });
        assert!(g.contains(&0.0) && g.iter().any(|&v| v != 0.0));
        // Colour's means spread the gradient over every pixel of an image.
        let g = gradient(Augment::ALL);
        assert!(g.iter().all(|v| v.is_finite()) && g.iter().any(|&v| v != 0.0));
    }
}
