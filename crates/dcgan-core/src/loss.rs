//! GAN losses on logits: numerically stable binary cross-entropy with one-sided label
//! smoothing for the discriminator and the non-saturating loss for the generator (the
//! article's DCGAN), and the other objectives of Jolicoeur-Martineau's RelativisticGAN
//! study as a [`GanLoss`]: least squares, hinge, Wasserstein, and the relativistic
//! (`rsgan`) and relativistic-average (`ra*`) forms.

use std::fmt;
use std::str::FromStr;

use burn::prelude::*;
use burn::tensor::activation::relu;
use serde::{Deserialize, Serialize};

use crate::error::Error;

/// The adversarial objective: what D minimises on `(real, fake)` logits and what G
/// minimises. Formulas as in Jolicoeur-Martineau's code (`GAN_losses_iter.py`), with
/// `C(x)` the logit, `Ā = mean(A)` and `f(x) = log(1 + e^x)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GanLoss {
    /// The article's: binary cross-entropy (real labels smoothed to `real_label`), G
    /// non-saturating. D: `BCE(C(x_r), 0.9) + BCE(C(x_f), 0)`; G: `BCE(C(x_f), 1)`.
    #[default]
    Bce,
    /// Least squares (Mao et al.). D: `mean((C(x_r) − 1)²) + mean(C(x_f)²)`; G: `mean((C(x_f) − 1)²)`.
    Lsgan,
    /// Hinge (Lim & Ye; SNGAN, BigGAN). D: `mean(relu(1 − C(x_r))) + mean(relu(1 + C(x_f)))`; G: `−mean(C(x_f))`.
    Hinge,
    /// Wasserstein (Arjovsky et al.), for use with a gradient penalty (WGAN-GP).
    /// D: `mean(C(x_f)) − mean(C(x_r))`; G: `−mean(C(x_f))`.
    Wgan,
    /// Relativistic standard. D: `BCE(C(x_r) − C(x_f), 1)`; G: `BCE(C(x_f) − C(x_r), 1)`.
    Rsgan,
    /// Relativistic average standard. D: `[BCE(C(x_r) − C̄(x_f), 1) + BCE(C(x_f) − C̄(x_r), 0)] / 2`; G swaps the labels.
    Rasgan,
    /// Relativistic average least squares: the best of the study on CAT faces.
    /// D: `[mean((C(x_r) − C̄(x_f) − 1)²) + mean((C(x_f) − C̄(x_r) + 1)²)] / 2`; G swaps the signs of the 1s.
    Ralsgan,
    /// Relativistic average hinge. D: `[mean(relu(1 − (C(x_r) − C̄(x_f)))) + mean(relu(1 + (C(x_f) − C̄(x_r))))] / 2`; G swaps.
    Rahinge,
}

impl GanLoss {
    /// Every loss, in the order `--help` lists them.
    pub const ALL: [GanLoss; 8] = [
        GanLoss::Bce,
        GanLoss::Lsgan,
        GanLoss::Hinge,
        GanLoss::Wgan,
        GanLoss::Rsgan,
        GanLoss::Rasgan,
        GanLoss::Ralsgan,
        GanLoss::Rahinge,
    ];

    /// The flag name (`bce`, `lsgan`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            GanLoss::Bce => "bce",
            GanLoss::Lsgan => "lsgan",
            GanLoss::Hinge => "hinge",
            GanLoss::Wgan => "wgan",
            GanLoss::Rsgan => "rsgan",
            GanLoss::Rasgan => "rasgan",
            GanLoss::Ralsgan => "ralsgan",
            GanLoss::Rahinge => "rahinge",
        }
    }

    /// Whether the generator's loss also needs `C(x_r)` (the relativistic ones).
    pub fn is_relativistic(&self) -> bool {
        matches!(
            self,
            GanLoss::Rsgan | GanLoss::Rasgan | GanLoss::Ralsgan | GanLoss::Rahinge
        )
    }

    /// Whether `D(x) = sigmoid(logit)` is a probability the loss trains for (BCE-based
    /// losses); for the others, `sigmoid(logit)` is only a monitor.
    pub fn is_probabilistic(&self) -> bool {
        matches!(self, GanLoss::Bce | GanLoss::Rsgan | GanLoss::Rasgan)
    }

    /// The discriminator's loss. `real_label` is the smoothed target of BCE (only `bce`
    /// uses it).
    ///
    /// # Shapes
    /// - `real`, `fake`: `[batch, 1]` logits (the same batch size for `rsgan`); output `[1]`
    pub fn discriminator<B: Backend>(
        &self,
        real: Tensor<B, 2>,
        fake: Tensor<B, 2>,
        real_label: f32,
    ) -> Tensor<B, 1> {
        match self {
            GanLoss::Bce => discriminator_loss(real, fake, real_label),
            GanLoss::Lsgan => (real - 1.0).powi_scalar(2).mean() + fake.powi_scalar(2).mean(),
            GanLoss::Hinge => relu(real.neg() + 1.0).mean() + relu(fake + 1.0).mean(),
            GanLoss::Wgan => fake.mean() - real.mean(),
            GanLoss::Rsgan => bce_with_logits(real - fake, 1.0),
            _ => {
                let (real_vs_fake, fake_vs_real) = relative_to_mean(real, fake);
                self.relativistic_average(real_vs_fake, fake_vs_real)
            }
        }
    }

    /// The generator's loss on the fakes' logits; the relativistic losses also take the
    /// reals' (`real`, ignored by the others, may then be `None`).
    ///
    /// # Panics
    /// If a relativistic loss gets no `real` logits.
    pub fn generator<B: Backend>(
        &self,
        real: Option<Tensor<B, 2>>,
        fake: Tensor<B, 2>,
    ) -> Tensor<B, 1> {
        match self {
            GanLoss::Bce => generator_loss(fake),
            GanLoss::Lsgan => (fake - 1.0).powi_scalar(2).mean(),
            GanLoss::Hinge | GanLoss::Wgan => fake.mean().neg(),
            _ => {
                let real = real.expect("a relativistic loss needs the real logits");
                if *self == GanLoss::Rsgan {
                    return bce_with_logits(fake - real, 1.0);
                }
                // The same formula as D's with real and fake trading places.
                let (real_vs_fake, fake_vs_real) = relative_to_mean(real, fake);
                self.relativistic_average(fake_vs_real, real_vs_fake)
            }
        }
    }

    /// D's relativistic-average loss on `(a, b)` = `(C(x_r) − C̄(x_f), C(x_f) − C̄(x_r))`;
    /// G's is the same on `(b, a)`.
    fn relativistic_average<B: Backend>(&self, a: Tensor<B, 2>, b: Tensor<B, 2>) -> Tensor<B, 1> {
        let sum = match self {
            GanLoss::Rasgan => bce_with_logits(a, 1.0) + bce_with_logits(b, 0.0),
            GanLoss::Ralsgan => (a - 1.0).powi_scalar(2).mean() + (b + 1.0).powi_scalar(2).mean(),
            GanLoss::Rahinge => relu(a.neg() + 1.0).mean() + relu(b + 1.0).mean(),
            _ => unreachable!("only the relativistic-average losses"),
        };
        sum.div_scalar(2.0)
    }
}

/// `(C(x_r) − C̄(x_f), C(x_f) − C̄(x_r))`.
fn relative_to_mean<B: Backend>(
    real: Tensor<B, 2>,
    fake: Tensor<B, 2>,
) -> (Tensor<B, 2>, Tensor<B, 2>) {
    let real_mean = real.clone().mean().unsqueeze::<2>();
    let fake_mean = fake.clone().mean().unsqueeze::<2>();
    (real - fake_mean, fake - real_mean)
}

impl fmt::Display for GanLoss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for GanLoss {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Error> {
        let text = text.trim().to_ascii_lowercase();
        let text = match text.as_str() {
            "gan" | "sgan" | "dcgan" => "bce",
            "wgan-gp" | "wgangp" => "wgan",
            other => other,
        };
        GanLoss::ALL
            .into_iter()
            .find(|l| l.name() == text)
            .ok_or_else(|| {
                Error::invalid(
                    "trainer",
                    "loss",
                    text,
                    format!(
                        "expected one of {}",
                        GanLoss::ALL.map(|l| l.name()).join(", ")
                    ),
                )
            })
    }
}

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

    /// Every loss against a direct f64 evaluation of its formula.
    #[test]
    fn every_loss_matches_its_formula() {
        let r = [1.5f64, -0.3, 0.8];
        let f = [-1.2f64, 0.4, 2.1];
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let (rm, fm) = (mean(&r), mean(&f));
        let bce =
            |v: Vec<f64>, t: f64| mean(&v.iter().map(|&x| closed_form(x, t)).collect::<Vec<_>>());
        let map = |v: &[f64], g: &dyn Fn(f64) -> f64| v.iter().map(|&x| g(x)).collect::<Vec<_>>();
        let relu = |x: f64| x.max(0.0);
        let a = map(&r, &|x| x - fm); // C(x_r) − C̄(x_f)
        let b = map(&f, &|x| x - rm); // C(x_f) − C̄(x_r)
        let cases: [(GanLoss, f64, f64); 8] = [
            (
                GanLoss::Bce,
                bce(r.to_vec(), 0.9) + bce(f.to_vec(), 0.0),
                bce(f.to_vec(), 1.0),
            ),
            (
                GanLoss::Lsgan,
                mean(&map(&r, &|x| (x - 1.0).powi(2))) + mean(&map(&f, &|x| x * x)),
                mean(&map(&f, &|x| (x - 1.0).powi(2))),
            ),
            (
                GanLoss::Hinge,
                mean(&map(&r, &|x| relu(1.0 - x))) + mean(&map(&f, &|x| relu(1.0 + x))),
                -fm,
            ),
            (GanLoss::Wgan, fm - rm, -fm),
            (
                GanLoss::Rsgan,
                bce((0..3).map(|i| r[i] - f[i]).collect(), 1.0),
                bce((0..3).map(|i| f[i] - r[i]).collect(), 1.0),
            ),
            (
                GanLoss::Rasgan,
                (bce(a.clone(), 1.0) + bce(b.clone(), 0.0)) / 2.0,
                (bce(b.clone(), 1.0) + bce(a.clone(), 0.0)) / 2.0,
            ),
            (
                GanLoss::Ralsgan,
                (mean(&map(&a, &|x| (x - 1.0).powi(2))) + mean(&map(&b, &|x| (x + 1.0).powi(2))))
                    / 2.0,
                (mean(&map(&b, &|x| (x - 1.0).powi(2))) + mean(&map(&a, &|x| (x + 1.0).powi(2))))
                    / 2.0,
            ),
            (
                GanLoss::Rahinge,
                (mean(&map(&a, &|x| relu(1.0 - x))) + mean(&map(&b, &|x| relu(1.0 + x)))) / 2.0,
                (mean(&map(&b, &|x| relu(1.0 - x))) + mean(&map(&a, &|x| relu(1.0 + x)))) / 2.0,
            ),
        ];
        let t = |v: &[f64]| logits(&v.iter().map(|&x| x as f32).collect::<Vec<_>>());
        for (loss, d, g) in cases {
            let got_d = scalar(loss.discriminator(t(&r), t(&f), 0.9));
            let got_g = scalar(loss.generator(Some(t(&r)), t(&f)));
            assert!((got_d - d).abs() < 1e-5, "{loss} D: {got_d} vs {d}");
            assert!((got_g - g).abs() < 1e-5, "{loss} G: {got_g} vs {g}");
        }
    }

    #[test]
    fn loss_names_round_trip_and_unknown_names_are_refused() {
        for loss in GanLoss::ALL {
            assert_eq!(loss.to_string().parse::<GanLoss>().unwrap(), loss);
        }
        assert_eq!("WGAN-GP".parse::<GanLoss>().unwrap(), GanLoss::Wgan);
        let err = "softplus".parse::<GanLoss>().unwrap_err().to_string();
        assert!(err.contains("softplus") && err.contains("ralsgan"), "{err}");
    }

    #[test]
    fn generator_loss_is_minus_log_d() {
        let x = 0.3f64;
        let expected = -(1.0 / (1.0 + (-x).exp())).ln();
        assert!((scalar(generator_loss(logits(&[x as f32]))) - expected).abs() < 1e-6);
    }
}
