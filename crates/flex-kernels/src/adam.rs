//! Adam in one fused pass per parameter on flex, burn's `Adam` everywhere else.
//!
//! burn's `Adam` updates a parameter with about ten tensor operations (moments, bias
//! correction, square root, division, learning rate, subtraction), each a full pass
//! over memory, most of them on one thread: ≈ 2–4% of a training step on CPU
//! (catgan's `docs/performance.md`, change 9). [`FusedAdam`] does the same arithmetic, in
//! the same order, in one parallel pass on `Flex` (f32; an optimizer steps the inner
//! backend of `Autodiff<Flex>`), and calls burn's `Adam` on every other backend. Its
//! state is burn's [`AdamState`], so optimizer records and checkpoints are burn's.
//!
//! ```
//! use burn::backend::{Autodiff, Flex};
//! use burn::nn::{Linear, LinearConfig};
//! use burn::optim::adaptor::OptimizerAdaptor;
//! use flex_kernels::adam::FusedAdam;
//!
//! type B = Autodiff<Flex>;
//! // Where burn's `AdamConfig::new().with_beta_1(0.5).init()` would go:
//! let optimizer: OptimizerAdaptor<FusedAdam, Linear<B>, B> =
//!     OptimizerAdaptor::from(FusedAdam::new(0.5, 0.999, 1e-5));
//! # let _ = (optimizer, LinearConfig::new(2, 2).init::<B>(&Default::default()));
//! ```

use burn::backend::Flex;
use burn::optim::{AdamConfig, AdamState, AdaptiveMomentumState, LearningRate, SimpleOptimizer};
use burn::prelude::*;
use burn::tensor::{DType, TensorPrimitive};

use crate::buffers::{assume_init, par_vecs_uninit, Uninit};
use crate::calls::{count, Calls};
use crate::dispatch::{cast, same};
use crate::ops::{slice, tensor as flex_tensor};
use crate::wide::wide;

/// Adam without weight decay or AMSGrad, as burn computes it (a [`SimpleOptimizer`]: wrap
/// it in burn's `OptimizerAdaptor`).
#[derive(Clone)]
pub struct FusedAdam {
    beta_1: f32,
    beta_2: f32,
    epsilon: f32,
    /// burn's own implementation, for backends without the fused pass.
    reference: burn::optim::Adam,
}

impl FusedAdam {
    /// Adam with moment decays `beta_1`, `beta_2` and `epsilon` added to `√v̂` (burn's
    /// `AdamConfig` with these three values and the rest at its defaults).
    pub fn new(beta_1: f32, beta_2: f32, epsilon: f32) -> Self {
        let reference = AdamConfig::new()
            .with_beta_1(beta_1)
            .with_beta_2(beta_2)
            .with_epsilon(epsilon)
            .build();
        Self {
            beta_1,
            beta_2,
            epsilon,
            reference,
        }
    }
}

impl<B: Backend> SimpleOptimizer<B> for FusedAdam {
    type State<const D: usize> = AdamState<B, D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<B, D>,
        grad: Tensor<B, D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<B, D>, Option<Self::State<D>>) {
        let (tensor, grad, state) = match step(self, lr, tensor, grad, state) {
            Ok(done) => {
                count(|c: &mut Calls| &mut c.adam);
                return done;
            }
            Err(inputs) => inputs,
        };
        self.reference.step(lr, tensor, grad, state)
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &B::Device) -> Self::State<D> {
        <burn::optim::Adam as SimpleOptimizer<B>>::to_device(state, device)
    }
}

type Inputs<B, const D: usize> = (Tensor<B, D>, Tensor<B, D>, Option<AdamState<B, D>>);
type Done<B, const D: usize> = (Tensor<B, D>, Option<AdamState<B, D>>);

/// Elements per task.
const CHUNK: usize = 1 << 14;

/// The per-step scalars of burn's Adam at step `time` (1 for the first update).
fn coefficients(adam: &FusedAdam, time: usize, lr: LearningRate) -> Coefficients {
    let t = time as i32;
    let bias_correction2_sqrt = (1.0 - adam.beta_2.powi(t)).sqrt();
    Coefficients {
        beta_1: adam.beta_1,
        beta_2: adam.beta_2,
        factor_1: 1.0 - adam.beta_1,
        factor_2: 1.0 - adam.beta_2,
        combined: bias_correction2_sqrt / (1.0 - adam.beta_1.powi(t)),
        epsilon: adam.epsilon * bias_correction2_sqrt,
        lr: lr as f32,
    }
}

/// The scalars of one Adam update, each computed as burn computes it.
#[derive(Clone, Copy, Debug)]
struct Coefficients {
    beta_1: f32,
    beta_2: f32,
    /// `1 − β₁`.
    factor_1: f32,
    /// `1 − β₂`.
    factor_2: f32,
    /// `√(1 − β₂ᵗ) / (1 − β₁ᵗ)`.
    combined: f32,
    /// `ε · √(1 − β₂ᵗ)`.
    epsilon: f32,
    lr: f32,
}

/// The update on flex (f32), or the inputs back for burn's Adam.
fn step<B: Backend, const D: usize>(
    adam: &FusedAdam,
    lr: LearningRate,
    tensor: Tensor<B, D>,
    grad: Tensor<B, D>,
    state: Option<AdamState<B, D>>,
) -> Result<Done<B, D>, Inputs<B, D>> {
    let f32_only = tensor.dtype() == DType::F32
        && grad.dtype() == DType::F32
        && state.as_ref().is_none_or(|s| {
            s.momentum.max_moment_2.is_none()
                && s.momentum.moment_1.dtype() == DType::F32
                && s.momentum.moment_2.dtype() == DType::F32
        });
    if !f32_only {
        return Err((tensor, grad, state));
    }
    let inputs = cast::<Inputs<B, D>, Inputs<Flex, D>>((tensor, grad, state))?;
    Ok(same(flex_step(adam, lr, inputs)))
}

fn flex_step<const D: usize>(
    adam: &FusedAdam,
    lr: LearningRate,
    (tensor, grad, state): Inputs<Flex, D>,
) -> Done<Flex, D> {
    let shape = tensor.dims();
    let contiguous = |t: Tensor<Flex, D>| t.into_primitive().tensor().to_contiguous();
    let (param, grad) = (contiguous(tensor), contiguous(grad));
    let (time, moments) = match state {
        Some(s) => {
            let m = s.momentum;
            (
                m.time + 1,
                Some((contiguous(m.moment_1), contiguous(m.moment_2))),
            )
        }
        None => (1, None),
    };
    let k = coefficients(adam, time, lr);
    let (param, grad) = (slice(&param), slice(&grad));
    let moments = moments.as_ref().map(|(m1, m2)| (slice(m1), slice(m2)));
    assert_eq!(param.len(), grad.len(), "Adam: a gradient of another shape");
    // SAFETY: `update` writes every element of the three outputs.
    let [new_param, moment_1, moment_2] = unsafe {
        par_vecs_uninit(param.len(), CHUNK, |i, [p_out, m1_out, m2_out]| {
            let range = i * CHUNK..i * CHUNK + p_out.len();
            update(
                &k,
                (&param[range.clone()], &grad[range.clone()]),
                moments.map(|(m1, m2)| (&m1[range.clone()], &m2[range.clone()])),
                [p_out, m1_out, m2_out],
            );
        })
    };
    let as_tensor = |data: Vec<f32>| {
        Tensor::<Flex, D>::from_primitive(TensorPrimitive::Float(flex_tensor(data, &shape)))
    };
    let momentum = AdaptiveMomentumState::new(time, as_tensor(moment_1), as_tensor(moment_2));
    (as_tensor(new_param), Some(AdamState::new(momentum)))
}

/// One chunk: burn's operations in burn's order, element by element, into the three
/// outputs (every element written).
fn update(
    k: &Coefficients,
    (param, grad): (&[f32], &[f32]),
    moments: Option<(&[f32], &[f32])>,
    [p_out, m1_out, m2_out]: [&mut Uninit; 3],
) {
    wide!({ update_wide(k, (param, grad), moments, [p_out, m1_out, m2_out]) })
}

/// [`update`]'s loops.
#[inline(always)]
fn update_wide(
    k: &Coefficients,
    (param, grad): (&[f32], &[f32]),
    moments: Option<(&[f32], &[f32])>,
    [p_out, m1_out, m2_out]: [&mut Uninit; 3],
) {
    let n = param.len();
    let (param, grad) = (&param[..n], &grad[..n]);
    let (p_out, m1_out, m2_out) = (&mut p_out[..n], &mut m1_out[..n], &mut m2_out[..n]);
    match moments {
        Some((m1, m2)) => {
            let (m1, m2) = (&m1[..n], &m2[..n]);
            for j in 0..n {
                let g = grad[j];
                m1_out[j].write(m1[j] * k.beta_1 + g * k.factor_1);
                m2_out[j].write(m2[j] * k.beta_2 + (g * g) * k.factor_2);
            }
        }
        None => {
            for j in 0..n {
                let g = grad[j];
                m1_out[j].write(g * k.factor_1);
                m2_out[j].write((g * g) * k.factor_2);
            }
        }
    }
    // SAFETY: both moments were written above, all `n` elements.
    let (m1_out, m2_out) = unsafe { (assume_init(m1_out), assume_init(m2_out)) };
    for j in 0..n {
        let step = (m1_out[j] * k.combined) / (m2_out[j].sqrt() + k.epsilon);
        p_out[j].write(param[j] - step * k.lr);
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;

    fn random(shape: [usize; 2], seed: u64) -> Tensor<Flex, 2> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let v: Vec<f32> = (0..shape[0] * shape[1])
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        Tensor::from_data(TensorData::new(v, shape), &Default::default())
    }

    fn values(t: &Tensor<Flex, 2>) -> Vec<f32> {
        t.to_data().to_vec::<f32>().unwrap()
    }

    #[test]
    fn updates_exactly_as_burns_adam_over_several_steps() {
        let (beta_1, beta_2, epsilon, lr) = (0.5, 0.999, 1e-8, 2e-4);
        let fused = FusedAdam::new(beta_1, beta_2, epsilon);
        let reference = AdamConfig::new()
            .with_beta_1(beta_1)
            .with_beta_2(beta_2)
            .with_epsilon(epsilon)
            .build();
        // More elements than two parallel chunks, and a partial third one.
        let shape = [200, 201];
        let (mut ours, mut theirs) = (random(shape, 1), random(shape, 1));
        let (mut our_state, mut their_state) = (None, None);
        let before = crate::calls();
        for step in 0..4 {
            let grad = random(shape, 10 + step).mul_scalar(0.1 * (step + 1) as f32);
            (ours, our_state) = fused.step(lr, ours, grad.clone(), our_state);
            (theirs, their_state) = reference.step(lr, theirs, grad, their_state);
            assert_eq!(
                values(&ours),
                values(&theirs),
                "parameters after step {step}"
            );
        }
        assert_eq!(
            crate::calls().since(&before).adam,
            4,
            "the fused pass did not run"
        );
        let (ours, theirs) = (our_state.unwrap().momentum, their_state.unwrap().momentum);
        assert_eq!(ours.time, 4);
        assert_eq!(ours.time, theirs.time);
        assert_eq!(values(&ours.moment_1), values(&theirs.moment_1));
        assert_eq!(values(&ours.moment_2), values(&theirs.moment_2));
        assert!(values(&ours.moment_2).iter().all(|&v| v > 0.0));
    }
}
