//! Telling a diverged run from a struggling one, step by step.
//!
//! A non-finite loss is caught by the trainer itself. This watch adds the two finite ways a
//! GAN fails: losses that explode (with `--lr-d 1e6` they reach 1e13 within a few steps,
//! while every loss here stays below a few hundred in healthy runs, WGAN's included), which
//! stops the run; and a discriminator that wins outright for many steps in a row
//! (`D(x) ≈ 1`, `D(G(z)) ≈ 0`: the generator then gets almost no gradient), which is worth a
//! warning but not a stop, as runs sometimes recover. Checkpoints written while the watch
//! is [healthy](DivergenceWatch::is_healthy) are kept as the run's last good checkpoint.

use dcgan_core::trainer::StepMetrics;

/// A loss of larger magnitude than this is an explosion.
pub const LOSS_BOUND: f32 = 1e5;
/// `D(x) > 1 - SATURATION` and `D(G(z)) < SATURATION` is a step the discriminator won
/// outright.
pub const SATURATION: f32 = 0.01;
/// Steps in a row won outright before the warning.
pub const SATURATED_STEPS: u64 = 500;

/// What the watch concluded from a step.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Nothing to say.
    Healthy,
    /// The discriminator has won outright for [`SATURATED_STEPS`] steps (said once per
    /// streak).
    Saturated {
        /// The step at which the streak reached the threshold.
        step: u64,
    },
    /// The losses exploded: stop.
    Exploded {
        /// What was seen, with the step.
        cause: String,
    },
}

/// Watches the metrics of consecutive steps.
#[derive(Debug, Clone, Default)]
pub struct DivergenceWatch {
    saturated_streak: u64,
}

impl DivergenceWatch {
    /// A watch that has seen nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Looks at one step's metrics.
    pub fn observe(&mut self, m: &StepMetrics) -> Verdict {
        if m.d_loss.abs() > LOSS_BOUND || m.g_loss.abs() > LOSS_BOUND {
            return Verdict::Exploded {
                cause: format!(
                    "the losses exploded at step {} (D {:.3e}, G {:.3e}; healthy runs stay \
                     below {LOSS_BOUND:.0e}), with D(x) {:.2} and D(G(z)) {:.2}",
                    m.step, m.d_loss, m.g_loss, m.d_real, m.d_fake
                ),
            };
        }
        if m.d_real > 1.0 - SATURATION && m.d_fake < SATURATION {
            self.saturated_streak += 1;
        } else {
            self.saturated_streak = 0;
        }
        if self.saturated_streak == SATURATED_STEPS {
            Verdict::Saturated { step: m.step }
        } else {
            Verdict::Healthy
        }
    }

    /// Whether the recent steps look healthy (no saturation streak past the threshold).
    pub fn is_healthy(&self) -> bool {
        self.saturated_streak < SATURATED_STEPS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics(step: u64, d_loss: f32, d_real: f32, d_fake: f32) -> StepMetrics {
        StepMetrics {
            step,
            d_loss,
            g_loss: 1.0,
            d_real,
            d_fake,
        }
    }

    #[test]
    fn exploding_losses_stop_the_run() {
        let mut watch = DivergenceWatch::new();
        assert_eq!(watch.observe(&metrics(1, 1.3, 0.6, 0.4)), Verdict::Healthy);
        // What `--lr-d 1e6 --lr-g 1e6` produced in the outside test.
        let verdict = watch.observe(&metrics(2, 3.1e13, 1.0, 0.0));
        let Verdict::Exploded { cause } = verdict else {
            panic!("{verdict:?}")
        };
        assert!(
            cause.contains("step 2") && cause.contains("3.100e13"),
            "{cause}"
        );
        // Large but plausible WGAN critic losses do not.
        assert_eq!(
            watch.observe(&metrics(3, -850.0, 0.9, 0.2)),
            Verdict::Healthy
        );
    }

    #[test]
    fn a_discriminator_winning_outright_is_reported_once_per_streak() {
        let mut watch = DivergenceWatch::new();
        let mut reports = Vec::new();
        for step in 1..=2 * SATURATED_STEPS {
            // One ordinary step in the middle of the first streak restarts the count.
            let m = if step == 100 {
                metrics(step, 0.5, 0.7, 0.3)
            } else {
                metrics(step, 0.01, 0.999, 0.001)
            };
            if let Verdict::Saturated { step } = watch.observe(&m) {
                reports.push(step);
            }
        }
        assert_eq!(reports, vec![100 + SATURATED_STEPS]);
        assert!(!watch.is_healthy());
        watch.observe(&metrics(0, 0.5, 0.7, 0.3));
        assert!(watch.is_healthy());
    }
}
