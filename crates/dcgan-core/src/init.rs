//! Deterministic weight initialisation: N(0, σ), optionally truncated, from a seeded RNG.
//!
//! burn's own initialisers draw from the backend RNG, whose state cannot be saved and
//! differs between backends. We draw on the host from ChaCha8 instead, so the same seed
//! gives the same weights on every backend (which is what makes parity tests possible).

use burn::module::Param;
use burn::prelude::*;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

/// How convolution and dense weights are drawn. Biases start at 0, batch-norm γ at 1, β at 0.
#[derive(Config, Debug, PartialEq)]
pub struct WeightInit {
    /// Standard deviation of the normal distribution.
    #[config(default = 0.02)]
    pub std: f64,
    /// Redraw values beyond two standard deviations, as TensorFlow's
    /// `truncated_normal_initializer` (the seed's choice) does.
    #[config(default = true)]
    pub truncated: bool,
}

/// Which distribution a latent vector is drawn from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum LatentDistribution {
    /// Uniform on [−1, 1), as in the seed.
    #[default]
    Uniform,
    /// Standard normal, as in PyTorch's DCGAN example.
    Normal,
}

impl WeightInit {
    /// Draws `n` weights.
    pub fn sample(&self, n: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
        (0..n)
            .map(|_| loop {
                let x: f64 = StandardNormal.sample(rng);
                if !self.truncated || x.abs() <= 2.0 {
                    break (x * self.std) as f32;
                }
            })
            .collect()
    }

    /// A parameter of the given shape filled with [`WeightInit::sample`].
    pub(crate) fn param<B: Backend, const D: usize>(
        &self,
        shape: [usize; D],
        rng: &mut ChaCha8Rng,
        device: &B::Device,
    ) -> Param<Tensor<B, D>> {
        let values = self.sample(shape.iter().product(), rng);
        Param::from_tensor(Tensor::from_data(TensorData::new(values, shape), device))
    }
}

impl LatentDistribution {
    /// Draws `count` latent vectors of `dim` values, row-major (`[count, dim]`).
    pub fn sample(&self, count: usize, dim: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
        let n = count * dim;
        match self {
            LatentDistribution::Uniform => (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect(),
            LatentDistribution::Normal => (0..n)
                .map(|_| {
                    let x: f32 = StandardNormal.sample(rng);
                    x
                })
                .collect(),
        }
    }

    /// Draws `count` latent vectors as a `[count, dim]` tensor on `device`.
    pub fn tensor<B: Backend>(
        &self,
        count: usize,
        dim: usize,
        rng: &mut ChaCha8Rng,
        device: &B::Device,
    ) -> Tensor<B, 2> {
        Tensor::from_data(
            TensorData::new(self.sample(count, dim, rng), [count, dim]),
            device,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn truncated_normal_stays_within_two_sigma_and_has_the_right_spread() {
        let init = WeightInit::new();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let w = init.sample(100_000, &mut rng);
        assert!(w.iter().all(|x| x.abs() <= 0.04 + 1e-7));
        let mean = w.iter().map(|&x| x as f64).sum::<f64>() / w.len() as f64;
        let var = w.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / w.len() as f64;
        // A normal truncated at ±2σ has std ≈ 0.8796σ.
        assert!(mean.abs() < 3e-4, "mean {mean}");
        assert!(
            (var.sqrt() - 0.8796 * 0.02).abs() < 3e-4,
            "std {}",
            var.sqrt()
        );
    }

    #[test]
    fn untruncated_normal_has_tails() {
        let init = WeightInit::new().with_truncated(false);
        let w = init.sample(100_000, &mut ChaCha8Rng::seed_from_u64(2));
        assert!(w.iter().any(|x| x.abs() > 0.05));
    }

    #[test]
    fn latent_uniform_covers_minus_one_to_one() {
        let z = LatentDistribution::Uniform.sample(100, 100, &mut ChaCha8Rng::seed_from_u64(3));
        assert_eq!(z.len(), 10_000);
        assert!(z.iter().all(|&x| (-1.0..1.0).contains(&x)));
        assert!(z.iter().any(|&x| x < -0.99) && z.iter().any(|&x| x > 0.99));
    }

    #[test]
    fn same_seed_same_draws() {
        let a = LatentDistribution::Normal.sample(4, 8, &mut ChaCha8Rng::seed_from_u64(9));
        let b = LatentDistribution::Normal.sample(4, 8, &mut ChaCha8Rng::seed_from_u64(9));
        assert_eq!(a, b);
    }
}
