//! An exponential moving average of the generator's weights (Karras et al., Progressive
//! GANs; Yazıcı et al., "The Unusual Effectiveness of Averaging in GAN Training"): samples
//! drawn from the average are smoother and usually better than the raw generator's, at no
//! training cost.
//!
//! After each generator update, every tensor of the average moves towards the generator's:
//! `ema ← β·ema + (1 − β)·g`, with `β = min(decay, (1 + t) / (10 + t))` at the `t`-th
//! update (TensorFlow's `ExponentialMovingAverage` warm-up, so the first samples do not
//! show the random initial weights). Batch-norm running statistics are averaged the same
//! way (PyTorch's `AveragedModel(use_buffers=True)`), so the average has statistics that
//! match its weights.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::generator::Generator;

/// Settings of the generator average.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EmaConfig {
    /// The decay β once warmed up (e.g. 0.999: an average over about the last 1,000 updates).
    pub decay: f64,
}

impl EmaConfig {
    /// The decay used at update `t` (0-based): the warm-up `(1 + t) / (10 + t)`, capped at
    /// [`EmaConfig::decay`].
    pub fn decay_at(&self, t: u64) -> f64 {
        self.decay.min((1.0 + t as f64) / (10.0 + t as f64))
    }
}

/// Every float tensor of a module (parameters and running statistics), in visiting order.
struct Collect<B: Backend>(Vec<Tensor<B, 1>>);

impl<B: Backend> ModuleVisitor<B> for Collect<B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        self.0.push(param.val().flatten(0, D - 1));
    }
}

/// Blends each float tensor with the next collected one: `β·self + (1 − β)·other`.
struct Blend<B: Backend> {
    others: std::vec::IntoIter<Tensor<B, 1>>,
    keep: f64,
}

impl<B: Backend> ModuleMapper<B> for Blend<B> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let other = self
            .others
            .next()
            .expect("the average and the generator have the same tensors");
        param.map(|ema| {
            let shape = ema.shape();
            let blended = ema.flatten::<1>(0, D - 1).mul_scalar(self.keep)
                + other.mul_scalar(1.0 - self.keep);
            blended.reshape(shape)
        })
    }
}

/// Moves `average` towards `generator` with decay `keep` (see the module docs).
pub fn update_average<B: Backend>(
    average: Generator<B>,
    generator: &Generator<B>,
    keep: f64,
) -> Generator<B> {
    let mut collect = Collect(Vec::new());
    generator.visit(&mut collect);
    average.map(&mut Blend {
        others: collect.0.into_iter(),
        keep,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{GeneratorConfig, TestBackend};

    fn first_weight(g: &Generator<TestBackend>) -> Vec<f32> {
        g.project.weight.val().into_data().to_vec().unwrap()
    }

    fn running_mean(g: &Generator<TestBackend>) -> Vec<f32> {
        g.blocks[0]
            .norm
            .running_mean
            .value()
            .into_data()
            .to_vec()
            .unwrap()
    }

    #[test]
    fn the_average_moves_by_the_decay_for_weights_and_statistics() {
        let device = Default::default();
        let config = GeneratorConfig::new(16)
            .with_base_channels(2)
            .with_latent_dim(3);
        let a = config.init_seeded::<TestBackend>(&device, 1).unwrap();
        let b = config.init_seeded::<TestBackend>(&device, 2).unwrap();
        let ones = b.blocks[0].norm.running_mean.value().ones_like();
        b.blocks[0].norm.running_mean.update(ones);
        let (wa, wb) = (first_weight(&a), first_weight(&b));
        let (ma, mb) = (running_mean(&a), running_mean(&b));
        let avg = update_average(a, &b, 0.75);
        for ((x, y), z) in wa.iter().zip(&wb).zip(first_weight(&avg)) {
            assert!((0.75 * x + 0.25 * y - z).abs() < 1e-6);
        }
        for ((x, y), z) in ma.iter().zip(&mb).zip(running_mean(&avg)) {
            assert!((0.75 * x + 0.25 * y - z).abs() < 1e-6);
        }
        assert_ne!(wa, wb);
    }

    #[test]
    fn warm_up_starts_fast_and_caps_at_the_decay() {
        let ema = EmaConfig { decay: 0.999 };
        assert!((ema.decay_at(0) - 0.1).abs() < 1e-12);
        assert!(ema.decay_at(10) < ema.decay_at(100));
        assert_eq!(ema.decay_at(1_000_000), 0.999);
    }
}
