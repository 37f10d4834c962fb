//! Spectral normalisation (Miyato et al., "Spectral Normalization for Generative
//! Adversarial Networks", ICLR 2018): a layer computes with `W / σ(W)`, where `σ(W)` is the
//! largest singular value of the weight seen as a matrix, estimated by power iteration.
//!
//! As in PyTorch's `torch.nn.utils.spectral_norm`: the weight is seen as `[dims[0], rest]`,
//! each forward pass in training runs one power iteration from the stored left singular
//! vector `u` (which then moves on), inference reuses `u` without moving it, and `σ` is
//! differentiated through `W` only (`u` and `v` are constants of the step). `u` is a
//! [`RunningState`], so it lives in the module's record: checkpoints keep it and a resumed
//! run continues bit for bit.

use std::borrow::Cow;

use burn::module::{Module, Param, RunningState};
use burn::nn::conv::{Conv2d, ConvTranspose2d};
use burn::nn::Linear;
use burn::prelude::*;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

/// Guards the normalisations of the power iteration against a zero vector.
const EPSILON: f32 = 1e-12;

/// The power-iteration state of one spectrally normalised weight.
#[derive(Module, Debug)]
pub struct SpectralNorm<B: Backend> {
    /// The estimate of the weight's left singular vector, `[dims[0]]`, unit length.
    pub u: RunningState<Tensor<B, 1>>,
}

impl<B: Backend> SpectralNorm<B> {
    /// A state for a weight whose first dimension is `rows`, `u` drawn from `rng` (a unit
    /// vector in a random direction, as PyTorch draws it).
    pub fn new(rows: usize, rng: &mut ChaCha8Rng, device: &B::Device) -> Self {
        let values: Vec<f32> = (0..rows).map(|_| rng.sample(StandardNormal)).collect();
        let u = Tensor::<B, 1>::from_data(TensorData::new(values, [rows]), device);
        Self {
            u: RunningState::new(normalize(u)),
        }
    }

    /// A state for `weight` (see [`SpectralNorm::new`]) when `on`, else `None` (and
    /// nothing is drawn from `rng`).
    pub(crate) fn for_weight<const D: usize>(
        on: bool,
        weight: &Param<Tensor<B, D>>,
        rng: &mut ChaCha8Rng,
        device: &B::Device,
    ) -> Option<Self> {
        on.then(|| Self::new(weight.dims()[0], rng, device))
    }

    /// `weight / σ(weight)`, after one power iteration when `B` is an autodiff backend
    /// (training); gradients flow to `weight` through both the division and `σ`.
    pub fn normalize<const D: usize>(&self, weight: Tensor<B, D>) -> Tensor<B, D> {
        let sigma = self.sigma(weight.clone());
        weight / sigma.unsqueeze()
    }

    /// `σ(weight)` as a `[1]` tensor (attached to `weight`'s graph), moving `u` on one
    /// power iteration in training.
    pub fn sigma<const D: usize>(&self, weight: Tensor<B, D>) -> Tensor<B, 1> {
        let dims = weight.dims();
        let rows = dims[0];
        let matrix = weight.reshape([rows as i32, -1]);
        let fixed = matrix.clone().detach();
        let u = self.u.value_sync().to_device(&fixed.device());
        // v = Wᵀu / |Wᵀu|, then u = Wv / |Wv|: one step of the power iteration.
        let v = normalize(
            u.clone()
                .unsqueeze::<2>()
                .matmul(fixed.clone())
                .flatten(0, 1),
        );
        let u = if B::ad_enabled(&fixed.device()) {
            let u = normalize(fixed.matmul(v.clone().unsqueeze_dim(1)).flatten(0, 1));
            self.u.update(u.clone());
            u
        } else {
            u
        };
        // σ = uᵀ W v, differentiable in W only.
        (matrix * u.unsqueeze_dim::<2>(1) * v.unsqueeze_dim::<2>(0))
            .sum()
            .reshape([1])
    }
}

/// `x / |x|` (a constant of the step: detached).
fn normalize<B: Backend>(x: Tensor<B, 1>) -> Tensor<B, 1> {
    let x = x.detach();
    let norm = (x.clone() * x.clone()).sum().sqrt().clamp_min(EPSILON);
    x / norm
}

/// A layer whose weight can be swapped for a normalised one.
pub(crate) trait Weighted<B: Backend, const D: usize>: Clone {
    /// The layer's weight.
    fn weight_mut(&mut self) -> &mut Param<Tensor<B, D>>;
}

impl<B: Backend> Weighted<B, 4> for Conv2d<B> {
    fn weight_mut(&mut self) -> &mut Param<Tensor<B, 4>> {
        &mut self.weight
    }
}

impl<B: Backend> Weighted<B, 4> for ConvTranspose2d<B> {
    fn weight_mut(&mut self) -> &mut Param<Tensor<B, 4>> {
        &mut self.weight
    }
}

impl<B: Backend> Weighted<B, 2> for Linear<B> {
    fn weight_mut(&mut self) -> &mut Param<Tensor<B, 2>> {
        &mut self.weight
    }
}

/// `layer` computing with its weight normalised by `norm` (under the same parameter id, so
/// gradients still reach the original weight), or `layer` itself when `norm` is `None`.
pub(crate) fn normalized<'a, L: Weighted<B, D>, B: Backend, const D: usize>(
    layer: &'a L,
    norm: &Option<SpectralNorm<B>>,
) -> Cow<'a, L> {
    match norm {
        None => Cow::Borrowed(layer),
        Some(norm) => {
            let mut layer = layer.clone();
            let weight = layer.weight_mut();
            *weight = Param::initialized(weight.id, norm.normalize(weight.val()));
            Cow::Owned(layer)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{TestAutodiffBackend, TestBackend};
    use rand::SeedableRng;

    fn matrix<Bk: Backend>(values: &[f32], shape: [usize; 2]) -> Tensor<Bk, 2> {
        Tensor::from_data(TensorData::new(values.to_vec(), shape), &Default::default())
    }

    #[test]
    fn power_iteration_converges_to_the_largest_singular_value() {
        // diag(3, 1) rotated: singular values 3 and 1.
        let (c, s) = (0.6f32, 0.8f32);
        let w = matrix::<TestAutodiffBackend>(&[3.0 * c, -s, 3.0 * s, c], [2, 2]);
        let norm = SpectralNorm::<TestAutodiffBackend>::new(
            2,
            &mut ChaCha8Rng::seed_from_u64(1),
            &Default::default(),
        );
        let sigmas: Vec<f32> = (0..30)
            .map(|_| norm.sigma(w.clone()).into_scalar())
            .collect();
        assert!((sigmas[29] - 3.0).abs() < 1e-4, "{sigmas:?}");
        // The estimate never exceeds σ and rises towards it.
        assert!(sigmas.iter().all(|&s| s <= 3.0 + 1e-4));
        assert!(sigmas[0] < sigmas[29] || (sigmas[0] - 3.0).abs() < 1e-4);
    }

    #[test]
    fn inference_does_not_move_u() {
        let w = matrix::<TestBackend>(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [2, 3]);
        let norm = SpectralNorm::<TestBackend>::new(
            2,
            &mut ChaCha8Rng::seed_from_u64(2),
            &Default::default(),
        );
        let before = norm.u.value().into_data();
        let a = norm.sigma(w.clone()).into_scalar();
        let b = norm.sigma(w).into_scalar();
        assert_eq!(a, b);
        assert_eq!(norm.u.value().into_data(), before);
    }

    #[test]
    fn the_normalized_weight_has_spectral_norm_one_and_passes_gradients() {
        let device = Default::default();
        let w = Tensor::<TestAutodiffBackend, 4>::from_data(
            TensorData::new(
                (0..24).map(|i| (i as f32 * 0.37).sin()).collect(),
                [2, 3, 2, 2],
            ),
            &device,
        )
        .require_grad();
        let norm =
            SpectralNorm::<TestAutodiffBackend>::new(2, &mut ChaCha8Rng::seed_from_u64(3), &device);
        for _ in 0..20 {
            norm.sigma(w.clone());
        }
        let normalized = norm.normalize(w.clone());
        let again =
            SpectralNorm::<TestAutodiffBackend>::new(2, &mut ChaCha8Rng::seed_from_u64(4), &device);
        for _ in 0..30 {
            again.sigma(normalized.clone().detach());
        }
        let sigma = again.sigma(normalized.clone().detach()).into_scalar();
        assert!((sigma - 1.0).abs() < 1e-3, "σ(W/σ(W)) = {sigma}");
        let grads = normalized.sum().backward();
        let g = w.grad(&grads).expect("the weight gets a gradient");
        assert!(g.abs().sum().into_scalar() > 0.0);
    }
}
