//! Gradient penalties on the discriminator: WGAN-GP's `λ·E[(‖∇ₓD(x̂)‖ − 1)²]` on random
//! interpolates between real and fake images (Gulrajani et al.), or R1's
//! `(γ/2)·E[‖∇ₓD(x)‖²]` on the real images (Mescheder et al.).
//!
//! A penalty on a gradient needs the gradient of a gradient, which burn 0.21's autodiff
//! does not provide (`Tensor::grad` returns a tensor outside the graph). So the penalty's
//! gradient with respect to D's weights is computed from a finite difference of D along
//! the input gradient, which is exact to second order:
//!
//! for `P(θ) = Σᵢ φ(‖gᵢ‖)` with `gᵢ = ∇ₓᵢ Σⱼ D(xⱼ; θ)`, `∇θ P = ∇θ (V · G(θ))` where
//! `Vᵢ = φ'(‖gᵢ‖)·gᵢ/‖gᵢ‖` is held constant, and `V · G(θ)` is the derivative of
//! `F(X) = Σⱼ D(xⱼ)` along `V`: `(F(X + hV) − F(X − hV)) / 2h + O(h²)`. The trainer adds
//! that difference quotient (a surrogate with the penalty's weight gradient) to D's loss,
//! and reports the penalty's true value. The cost is one extra backward pass for `G` and
//! two extra forward passes of D (their backward passes ride along with D's own).
//! `tests` check the surrogate's gradient against a numerical derivative of the penalty.

use std::fmt;

use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};

use crate::discriminator::Discriminator;

/// Per-pixel size of the finite-difference step (images span [−1, 1]). D is piecewise
/// linear in its input (leaky ReLUs), so a step that crosses many activation kinks
/// measures an average slope, not the gradient: against a numerical derivative of the
/// penalty on the tiny test model, 1e-3 per pixel gave the wrong sign, 1e-4 was 15 % off,
/// 1e-5 and 1e-6 within 1 % (f32 still resolves 1e-5 at pixel values near 1: ~80 ulps).
const STEP_PER_PIXEL: f64 = 1e-5;

/// Where the gradient norm is penalised, and towards what.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PenaltyKind {
    /// WGAN-GP: `(‖∇D(x̂)‖ − 1)²` at `x̂ = ε·x_real + (1 − ε)·x_fake`, `ε ~ U(0, 1)` per image.
    Wgan,
    /// R1: `‖∇D(x)‖² / 2` at the real images.
    R1,
}

/// A gradient penalty added to the discriminator's loss.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GradientPenalty {
    /// Which penalty.
    pub kind: PenaltyKind,
    /// Its weight (WGAN-GP's λ = 10; R1's γ, e.g. 0.1–10).
    pub weight: f64,
}

impl fmt::Display for GradientPenalty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            PenaltyKind::Wgan => "wgan-gp",
            PenaltyKind::R1 => "r1",
        };
        write!(f, "{kind} {}", self.weight)
    }
}

impl GradientPenalty {
    /// The penalty at `points` (detached images, e.g. interpolates or reals) for `d`:
    /// returns `(surrogate, value)`. Add `surrogate` to D's loss: its gradient with
    /// respect to D's weights is the penalty's (see the module docs). `value` is the
    /// penalty itself, for logging (detached).
    ///
    /// # Shapes
    /// - `points`: `[batch, channels, height, width]`; outputs `[1]`
    pub fn surrogate<B: AutodiffBackend>(
        &self,
        d: &Discriminator<B>,
        points: Tensor<B, 4>,
    ) -> (Tensor<B, 1>, Tensor<B, 1>) {
        let [batch, channels, height, width] = points.dims();
        let x = points.detach();

        // G = ∇ₓ Σ D(x): a backward pass that skips D's weight gradients.
        let probe = Tensor::<B, 4>::from_inner(x.clone().inner()).require_grad();
        let grads = d.clone().no_grad().forward(probe.clone()).sum().backward();
        let g = probe
            .grad(&grads)
            .unwrap_or_else(|| probe.clone().inner().zeros_like());
        let flat = g.reshape([batch, channels * height * width]);
        let norms = flat.clone().powi_scalar(2).sum_dim(1).sqrt(); // [batch, 1]

        // φ(n) and φ'(n).
        let (value, slope) = match self.kind {
            PenaltyKind::Wgan => (
                (norms.clone() - 1.0).powi_scalar(2).mul_scalar(self.weight),
                (norms.clone() - 1.0).mul_scalar(2.0 * self.weight),
            ),
            PenaltyKind::R1 => (
                norms.clone().powi_scalar(2).mul_scalar(self.weight / 2.0),
                norms.clone().mul_scalar(self.weight),
            ),
        };
        let value = value.mean();
        // V = φ'(n)·g/n, scaled to at most unit norm per image (W = V/s). The scale stays
        // on the device (no read-back in the step); with every φ' zero, W is zero and so
        // is the surrogate.
        let direction = flat / norms.clamp_min(1e-12) * slope.clone();
        let scale = slope.abs().max().clamp_min(1e-12); // [1]
        let h = STEP_PER_PIXEL * ((channels * height * width) as f64).sqrt();
        let step = Tensor::<B, 4>::from_inner(
            (direction / scale.clone().unsqueeze::<2>())
                .mul_scalar(h)
                .reshape([batch, channels, height, width]),
        );
        let plus = d.forward(x.clone() + step.clone()).sum();
        let minus = d.forward(x - step).sum();
        let surrogate =
            (plus - minus) * Tensor::from_inner(scale).div_scalar(2.0 * h * batch as f64);
        (surrogate, Tensor::from_inner(value))
    }
}

/// `ε·real + (1 − ε)·fake` with one `ε` per image (detached): WGAN-GP's sample points.
pub fn interpolate<B: Backend>(
    real: Tensor<B, 4>,
    fake: Tensor<B, 4>,
    epsilon: Vec<f32>,
) -> Tensor<B, 4> {
    let batch = epsilon.len();
    let eps = Tensor::<B, 4>::from_data(TensorData::new(epsilon, [batch, 1, 1, 1]), &real.device());
    let (real, fake) = (real.detach(), fake.detach());
    fake.clone() + (real - fake) * eps
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DiscriminatorConfig, TestAutodiffBackend};
    use burn::module::Param;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    type B = TestAutodiffBackend;

    fn images(seed: u64) -> Tensor<B, 4> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let values: Vec<f32> = (0..4 * 3 * 16 * 16)
            .map(|_| rng.random_range(-1.0f32..1.0))
            .collect();
        Tensor::from_data(TensorData::new(values, [4, 3, 16, 16]), &Default::default())
    }

    /// The penalty's true value for `d` at `x`.
    fn value(penalty: &GradientPenalty, d: &Discriminator<B>, x: &Tensor<B, 4>) -> f64 {
        penalty.surrogate(d, x.clone()).1.into_scalar() as f64
    }

    /// D with its first convolution's weight moved by `t·delta`.
    fn moved(d: &Discriminator<B>, delta: &Tensor<B, 4>, t: f32) -> Discriminator<B> {
        let mut d = d.clone();
        let w = d.blocks[0].conv.weight.val().inner() + delta.clone().inner().mul_scalar(t);
        d.blocks[0].conv.weight = Param::from_tensor(Tensor::from_inner(w));
        d
    }

    /// The surrogate's gradient along a random direction of D's first weight equals the
    /// numerical derivative of the penalty along it, for both penalties, with batch norm.
    #[test]
    fn the_surrogate_has_the_penalty_gradient() {
        let device = Default::default();
        for (kind, weight) in [(PenaltyKind::Wgan, 10.0), (PenaltyKind::R1, 1.0)] {
            let penalty = GradientPenalty { kind, weight };
            let d = DiscriminatorConfig::new(16)
                .with_base_channels(4)
                .with_first_batch_norm(true)
                .init_seeded::<B>(&device, 3)
                .unwrap();
            let x = images(1);
            let mut rng = ChaCha8Rng::seed_from_u64(9);
            let dims = d.blocks[0].conv.weight.dims();
            let n: usize = dims.iter().product();
            let delta = Tensor::<B, 4>::from_data(
                TensorData::new(
                    // About the weights' own scale (std 0.02).
                    (0..n).map(|_| rng.random_range(-0.02f32..0.02)).collect(),
                    dims,
                ),
                &device,
            );
            let (surrogate, _) = penalty.surrogate(&d, x.clone());
            let grads = surrogate.backward();
            let grad = d.blocks[0].conv.weight.grad(&grads).unwrap();
            let analytic = (grad * delta.clone().inner()).sum().into_scalar() as f64;
            let eps = 1e-4;
            let numeric = (value(&penalty, &moved(&d, &delta, eps), &x)
                - value(&penalty, &moved(&d, &delta, -eps), &x))
                / (2.0 * eps as f64);
            let relative = (analytic - numeric).abs() / numeric.abs().max(1e-6);
            assert!(
                relative < 0.05,
                "{kind:?}: surrogate gradient {analytic} vs numerical {numeric}"
            );
        }
    }

    #[test]
    fn r1_value_is_half_the_squared_input_gradient_norm() {
        let device = Default::default();
        let d = DiscriminatorConfig::new(16)
            .with_base_channels(2)
            .init_seeded::<B>(&device, 5)
            .unwrap();
        let x = images(2).narrow(0, 0, 1);
        let penalty = GradientPenalty {
            kind: PenaltyKind::R1,
            weight: 2.0,
        };
        let probe = Tensor::<B, 4>::from_inner(x.clone().inner()).require_grad();
        let grads = d.forward(probe.clone()).sum().backward();
        let g = probe.grad(&grads).unwrap();
        let expected = g.powi_scalar(2).sum().into_scalar() as f64;
        assert!((value(&penalty, &d, &x) - expected).abs() < 1e-4 * expected.max(1.0));
    }

    #[test]
    fn interpolates_lie_between_real_and_fake() {
        let real = images(3);
        let fake = images(4);
        let mid = interpolate(real.clone(), fake.clone(), vec![1.0, 0.0, 0.5, 0.25]);
        let at = |t: &Tensor<B, 4>, i: usize| {
            t.clone()
                .narrow(0, i, 1)
                .into_data()
                .to_vec::<f32>()
                .unwrap()
        };
        assert_eq!(at(&mid, 0), at(&real, 0));
        assert_eq!(at(&mid, 1), at(&fake, 1));
        for ((m, r), f) in at(&mid, 2).iter().zip(at(&real, 2)).zip(at(&fake, 2)) {
            assert!((m - (r + f) / 2.0).abs() < 1e-6);
        }
    }
}
