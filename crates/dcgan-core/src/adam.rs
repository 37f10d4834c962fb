//! Adam for the [`Trainer`](crate::Trainer): burn's Adam, or with the flex fast path on,
//! `flex_kernels::adam::FusedAdam`, which does the same arithmetic in the same order in
//! one parallel pass per parameter on flex (≈ 2–4% of a CPU training step,
//! docs/performance.md, change 9) and calls burn's Adam on every other backend. The state
//! is burn's [`AdamState`] either way, so checkpoints are unchanged.

use burn::optim::{AdamConfig, AdamState, LearningRate, SimpleOptimizer};
use burn::prelude::*;

/// Adam without weight decay or AMSGrad (DCGAN's optimizer), as burn computes it; in one
/// fused pass on flex if built with `fused` (and the `flex` feature).
#[derive(Clone)]
pub struct FusedAdam {
    /// burn's own implementation.
    reference: burn::optim::Adam,
    /// The one-pass update, if on.
    #[cfg(feature = "flex")]
    fused: Option<flex_kernels::adam::FusedAdam>,
}

impl FusedAdam {
    /// Adam with moment decays `beta_1`, `beta_2` and `epsilon` added to `√v̂`, through the
    /// flex fast path if `fused` (the trainer passes each network's `fast_kernels`).
    pub fn new(beta_1: f32, beta_2: f32, epsilon: f32, fused: bool) -> Self {
        let reference = AdamConfig::new()
            .with_beta_1(beta_1)
            .with_beta_2(beta_2)
            .with_epsilon(epsilon)
            .build();
        #[cfg(not(feature = "flex"))]
        let _ = fused;
        Self {
            reference,
            #[cfg(feature = "flex")]
            fused: fused.then(|| flex_kernels::adam::FusedAdam::new(beta_1, beta_2, epsilon)),
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
        #[cfg(feature = "flex")]
        if let Some(fused) = &self.fused {
            return fused.step(lr, tensor, grad, state);
        }
        self.reference.step(lr, tensor, grad, state)
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &B::Device) -> Self::State<D> {
        <burn::optim::Adam as SimpleOptimizer<B>>::to_device(state, device)
    }
}

#[cfg(test)]
mod tests {
    use burn::nn::{Linear, LinearConfig};
    use burn::optim::adaptor::OptimizerAdaptor;
    use burn::optim::{GradientsParams, Optimizer};
    use burn::record::{FullPrecisionSettings, NamedMpkBytesRecorder, Recorder};
    use burn::tensor::backend::AutodiffBackend;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::{LatentDistribution, TestAutodiffBackend};

    type B = <TestAutodiffBackend as AutodiffBackend>::InnerBackend;

    /// `[rows, cols]` values uniform in [−1, 1), drawn as latent vectors are.
    fn random([rows, cols]: [usize; 2], seed: u64) -> Tensor<B, 2> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        LatentDistribution::Uniform.tensor(rows, cols, &mut rng, &Default::default())
    }

    fn values(t: &Tensor<B, 2>) -> Vec<f32> {
        t.to_data().to_vec::<f32>().unwrap()
    }

    #[test]
    fn updates_exactly_as_burns_adam_with_and_without_the_fast_path() {
        let (beta_1, beta_2, epsilon, lr) = (0.5, 0.999, 1e-8, 2e-4);
        let reference = AdamConfig::new()
            .with_beta_1(beta_1)
            .with_beta_2(beta_2)
            .with_epsilon(epsilon)
            .build();
        for fused in [true, false] {
            let ours_adam = FusedAdam::new(beta_1, beta_2, epsilon, fused);
            let shape = [20, 21];
            let (mut ours, mut theirs) = (random(shape, 1), random(shape, 1));
            let (mut our_state, mut their_state) = (None, None);
            #[cfg(feature = "flex")]
            let before = flex_kernels::calls();
            for step in 0..3 {
                let grad = random(shape, 10 + step).mul_scalar(0.1 * (step + 1) as f32);
                (ours, our_state) = ours_adam.step(lr, ours, grad.clone(), our_state);
                (theirs, their_state) = reference.step(lr, theirs, grad, their_state);
                assert_eq!(values(&ours), values(&theirs), "fused {fused}, step {step}");
            }
            // The fast path ran exactly when asked for (on flex).
            #[cfg(feature = "flex")]
            {
                let on_flex =
                    std::any::TypeId::of::<B>() == std::any::TypeId::of::<burn::backend::Flex>();
                let expected = if fused && on_flex { 3 } else { 0 };
                assert_eq!(flex_kernels::calls().since(&before).adam, expected);
            }
            let (ours, theirs) = (our_state.unwrap().momentum, their_state.unwrap().momentum);
            assert_eq!(ours.time, theirs.time);
            assert_eq!(values(&ours.moment_1), values(&theirs.moment_1));
            assert_eq!(values(&ours.moment_2), values(&theirs.moment_2));
        }
    }

    /// One optimizer step of `optimizer` on `model` with a fixed loss.
    fn train_step<O: Optimizer<Linear<TestAutodiffBackend>, TestAutodiffBackend>>(
        optimizer: &mut O,
        model: Linear<TestAutodiffBackend>,
    ) -> Linear<TestAutodiffBackend> {
        let x = Tensor::<TestAutodiffBackend, 2>::from_data(
            TensorData::new((0..12).map(|i| i as f32 / 6.0 - 1.0).collect(), [3, 4]),
            &Default::default(),
        );
        let loss = model.forward(x).powi_scalar(2).sum();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        optimizer.step(1e-2, model, grads)
    }

    #[test]
    fn optimizer_records_of_burns_adam_load_and_continue_the_same() {
        // Checkpoints written while the trainer used burn's Adam hold its records.
        let model = LinearConfig::new(4, 2).init::<TestAutodiffBackend>(&Default::default());
        let mut theirs: OptimizerAdaptor<burn::optim::Adam, _, TestAutodiffBackend> =
            OptimizerAdaptor::from(AdamConfig::new().with_beta_1(0.5).build());
        let model = train_step(&mut theirs, model);
        let recorder = NamedMpkBytesRecorder::<FullPrecisionSettings>::default();
        let bytes =
            Recorder::<TestAutodiffBackend>::record(&recorder, theirs.to_record(), ()).unwrap();
        let record = Recorder::<TestAutodiffBackend>::load(&recorder, bytes, &Default::default())
            .expect("burn's Adam record loads as FusedAdam's");
        let mut ours: OptimizerAdaptor<FusedAdam, _, TestAutodiffBackend> =
            OptimizerAdaptor::from(FusedAdam::new(0.5, 0.999, 1e-5, true)).load_record(record);
        let weight = |m: &Linear<TestAutodiffBackend>| {
            m.weight.val().inner().into_data().to_vec::<f32>().unwrap()
        };
        let (a, b) = (
            train_step(&mut ours, model.clone()),
            train_step(&mut theirs, model.clone()),
        );
        assert_eq!(weight(&a), weight(&b), "the second step differs");
        assert_ne!(
            weight(&a),
            weight(&model),
            "the second step changed nothing"
        );
    }
}
