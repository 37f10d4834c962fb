//! GAN losses on logits: numerically stable binary cross-entropy with one-sided label
//! smoothing for the discriminator and the non-saturating loss for the generator.

use burn::prelude::*;

/// Mean binary cross-entropy between `sigmoid(logits)` and the constant `target`.
///
/// Computed as `max(x, 0) − x·t + log(1 + e^−|x|)`, which never overflows: a logit of
/// ±1000 gives a finite loss and a finite gradient.
///
/// # Shapes
/// - `logits`: `[batch, 1]` (any shape works); output: `[1]`
pub fn bce_with_logits<B: Backend, const D: usize>(
    logits: Tensor<B, D>,
    target: f32,
) -> Tensor<B, 1> {
    let positive_part = logits.clone().clamp_min(0.0);
    let log_term = logits.clone().abs().neg().exp().log1p();
    (positive_part - logits * target + log_term).mean()
}

/// The discriminator's loss, `d_loss_real + d_loss_fake`.
///
/// Real images are labelled `real_label` (one-sided label smoothing: the article's 0.9; 1.0
/// turns smoothing off), fakes are labelled 0 (never smoothed).
pub fn discriminator_loss<B: Backend>(
    real_logits: Tensor<B, 2>,
    fake_logits: Tensor<B, 2>,
    real_label: f32,
) -> Tensor<B, 1> {
    bce_with_logits(real_logits, real_label) + bce_with_logits(fake_logits, 0.0)
}

/// The generator's non-saturating loss: fakes labelled 1, i.e. `−log D(G(z))`.
pub fn generator_loss<B: Backend>(fake_logits: Tensor<B, 2>) -> Tensor<B, 1> {
    bce_with_logits(fake_logits, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{TestAutodiffBackend, TestBackend};

    fn logits(values: &[f32]) -> Tensor<TestBackend, 2> {
        Tensor::from_data(
            TensorData::new(values.to_vec(), [values.len(), 1]),
            &Default::default(),
        )
    }

    fn closed_form(x: f64, t: f64) -> f64 {
        let s = 1.0 / (1.0 + (-x).exp());
        -(t * s.ln() + (1.0 - t) * (1.0 - s).ln())
    }

    fn scalar(t: Tensor<TestBackend, 1>) -> f64 {
        t.into_scalar() as f64
    }

    #[test]
    fn bce_matches_the_closed_form() {
        let xs = [-3.0f32, -0.5, 0.0, 0.7, 4.0];
        for t in [0.0, 0.9, 1.0] {
            let expected =
                xs.iter().map(|&x| closed_form(x as f64, t)).sum::<f64>() / xs.len() as f64;
            let got = scalar(bce_with_logits(logits(&xs), t as f32));
            assert!((got - expected).abs() < 1e-6, "t={t}: {got} vs {expected}");
        }
        // At logit 0 the loss is ln 2 whatever the target.
        assert!((scalar(bce_with_logits(logits(&[0.0]), 0.9)) - 2f64.ln()).abs() < 1e-7);
    }

    #[test]
    fn bce_is_finite_for_huge_logits() {
        let got = scalar(bce_with_logits(logits(&[1000.0, -1000.0]), 1.0));
        // log(1+e^-1000) ≈ 0 for the first, 1000 for the second: mean 500.
        assert!((got - 500.0).abs() < 1e-3, "{got}");
        let x = Tensor::<TestAutodiffBackend, 2>::from_data(
            TensorData::new(vec![1000.0f32, -1000.0], [2, 1]),
            &Default::default(),
        )
        .require_grad();
        let grads = bce_with_logits(x.clone(), 0.9).backward();
        let g = x.grad(&grads).unwrap().into_data().to_vec::<f32>().unwrap();
        // d/dx = (sigmoid(x) − t) / n.
        assert!(
            (g[0] - 0.05).abs() < 1e-6 && (g[1] + 0.45).abs() < 1e-6,
            "{g:?}"
        );
    }

    #[test]
    fn label_smoothing_changes_only_the_real_term() {
        let real = [2.0f32, 1.0];
        let fake = [-1.0f32, 0.5];
        for label in [0.9f64, 1.0] {
            let expected = real
                .iter()
                .map(|&x| closed_form(x as f64, label))
                .sum::<f64>()
                / 2.0
                + fake
                    .iter()
                    .map(|&x| closed_form(x as f64, 0.0))
                    .sum::<f64>()
                    / 2.0;
            let got = scalar(discriminator_loss(
                logits(&real),
                logits(&fake),
                label as f32,
            ));
            assert!(
                (got - expected).abs() < 1e-6,
                "label {label}: {got} vs {expected}"
            );
        }
        // Smoothing makes a confident real logit cost more than without it.
        let smooth = scalar(discriminator_loss(logits(&[5.0]), logits(&[-5.0]), 0.9));
        let hard = scalar(discriminator_loss(logits(&[5.0]), logits(&[-5.0]), 1.0));
        assert!(smooth > hard + 0.4);
    }

    #[test]
    fn generator_loss_is_minus_log_d() {
        let x = 0.3f64;
        let expected = -(1.0 / (1.0 + (-x).exp())).ln();
        assert!((scalar(generator_loss(logits(&[x as f32]))) - expected).abs() < 1e-6);
    }
}
