//! Numerical parity between backends: the same weights, inputs and training steps on each
//! backend, compared tensor by tensor against a reference backend (flex).
//!
//! dcgan-core draws weights on the host from a seeded ChaCha8 RNG, so a [`Trainer`] built
//! from the same [`TrainerConfig`] holds the same weights on every backend; the real batch,
//! the latent vectors and every random draw of the step (DiffAugment, penalty
//! interpolation) are drawn on the host too. [`capture`] runs real [`Trainer::step`]s, the
//! first one through [`Trainer::step_traced`] (the same code path, which also keeps what it
//! computed), and reads back:
//!
//! | tensor | what it checks |
//! |---|---|
//! | `G(z)` | dense, transposed convolutions, batch norm (batch statistics), leaky ReLU, tanh |
//! | `D(real)`, `D(G(z))` | convolutions, batch norm, dense: the logits D's update saw |
//! | `d_loss` | D's configured loss (+ gradient penalty) on those logits |
//! | `dD/d conv0.w`, `dD/d dense.w` | D's backward pass, first and last layer |
//! | `g_loss` | G's loss scored by the Adam-updated D (the optimizer step) |
//! | `dG/d dense.w`, `dG/d to_image.w` | G's backward pass through D, first and last layer |
//! | `trainer metrics` | `d_loss, g_loss, D(x), D(G(z))` of every step run |
//!
//! [`compare`] gives, per tensor, the largest absolute error, the largest relative error over
//! the significant elements and the error scaled by the tensor's largest magnitude; the
//! check passes when that scaled error stays under the [`Tolerance`] (a tighter bound for
//! the first step's tensors, a looser one for the metrics after Adam updates).
//!
//! ```no_run
//! # #[cfg(all(feature = "flex", feature = "ndarray"))] {
//! use catgan::parity::{capture, compare, ParityConfig, Tolerance};
//! type Flex = burn::backend::Autodiff<burn::backend::Flex>;
//! type NdArray = burn::backend::Autodiff<burn::backend::NdArray>;
//! let config = ParityConfig::tiny();
//! let reference = capture::<Flex>(&config, "flex", &Default::default()).unwrap();
//! let other = capture::<NdArray>(&config, "ndarray", &Default::default()).unwrap();
//! let report = compare(&reference, &other, Tolerance::for_backend("ndarray"));
//! assert!(report.passed(), "{:?}", report.failures());
//! # }
//! ```
//! (Tested in `tests/backend_parity.rs`.)

use burn::module::Param;
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use dcgan_core::{LatentDistribution, ModelPreset, Trainer, TrainerConfig};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Which model and batch to compare.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParityConfig {
    /// The model preset.
    pub preset: ModelPreset,
    /// Width (None: the preset's).
    pub base: Option<usize>,
    /// Images in the batch (at least 2: batch norm needs a spread).
    pub batch_size: usize,
    /// Seed of the weights, the latent vectors and the real batch.
    pub seed: u64,
    /// How many [`Trainer::step`]s to run (at least one): the first gives the one-step
    /// rows, every one a line of the `trainer metrics` row.
    pub trainer_steps: usize,
    /// Turn every stabiliser on for those steps (relativistic-average LSGAN, WGAN-GP, 2 D
    /// steps per G step, spectral norm on both networks, a generator average, all of
    /// DiffAugment), and compare the average's images too.
    #[serde(default)]
    pub stabilized: bool,
}

impl ParityConfig {
    /// A model small enough for ndarray and lavapipe in a test: 32 px, base 4, batch 4.
    pub fn tiny() -> Self {
        ParityConfig {
            preset: ModelPreset::Tiny32,
            base: Some(4),
            batch_size: 4,
            seed: 7,
            trainer_steps: 2,
            stabilized: false,
        }
    }

    /// [`ParityConfig::tiny`] with every stabiliser on and 4 trainer steps (two G updates).
    pub fn tiny_stabilized() -> Self {
        ParityConfig {
            trainer_steps: 4,
            stabilized: true,
            ..Self::tiny()
        }
    }

    /// The trainer config this comparison uses: the training defaults, but Adam's ε is
    /// [`PARITY_ADAM_EPSILON`].
    pub fn trainer_config(&self) -> TrainerConfig {
        let (g, d) = self.preset.configs(self.base);
        let config = TrainerConfig::new(g, d)
            .with_batch_size(self.batch_size)
            .with_seed(self.seed)
            .with_adam_epsilon(PARITY_ADAM_EPSILON);
        if !self.stabilized {
            return config;
        }
        let mut config = config
            .with_loss(dcgan_core::GanLoss::Ralsgan)
            .with_gradient_penalty(Some(dcgan_core::GradientPenalty {
                kind: dcgan_core::PenaltyKind::Wgan,
                weight: 10.0,
            }))
            .with_d_steps(2)
            .with_ema(Some(dcgan_core::EmaConfig { decay: 0.9 }))
            .with_augment(dcgan_core::Augment::ALL);
        config.generator.spectral_norm = true;
        config.discriminator.spectral_norm = true;
        config
    }
}

/// Adam's ε in the compared runs (training: 1e-8). G's loss and gradients are computed
/// through the Adam-updated D, and Adam's first step moves each weight by about
/// `lr · g / (|g| + ε)`: with ε = 1e-8 a gradient that is pure rounding (|g| ~ 1e-7) takes
/// a full `±lr` step whose sign differs between backends, which moved G's gradients by 4%
/// (tiny32, base 8, ndarray vs flex). With 1e-4 such a gradient moves its weight by
/// ~`lr / 1000`, while every significant gradient still takes a step of about `lr`.
pub const PARITY_ADAM_EPSILON: f32 = 1e-4;

/// One tensor read back to the host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Captured {
    /// What it is (see the module docs).
    pub name: String,
    /// Its shape.
    pub shape: Vec<usize>,
    /// Its values, row-major.
    pub values: Vec<f32>,
}

/// Everything [`capture`] read back on one backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Capture {
    /// The backend's name.
    pub backend: String,
    /// The configuration.
    pub config: ParityConfig,
    /// The tensors, always in the same order.
    pub tensors: Vec<Captured>,
}

fn host<B: Backend, const D: usize>(name: &str, t: Tensor<B, D>) -> Captured {
    let shape = t.dims().to_vec();
    let values = t
        .into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .expect("a float tensor converted to f32 reads back as f32");
    Captured {
        name: name.into(),
        shape,
        values,
    }
}

/// The gradient `grads` holds for `param`, read back.
fn grad_of<B: AutodiffBackend, const D: usize>(
    name: &str,
    param: &Param<Tensor<B, D>>,
    grads: &GradientsParams,
) -> Captured {
    let grad = grads
        .get::<B::InnerBackend, D>(param.id)
        .unwrap_or_else(|| panic!("parity: no gradient for {name}: is the parameter frozen?"));
    host(name, grad)
}

fn recorded<T>(value: Option<T>, what: &str) -> T {
    value.unwrap_or_else(|| panic!("parity: the first traced step recorded no {what}"))
}

/// Runs `config.trainer_steps` real [`Trainer::step`]s on backend `B` (the first one
/// traced) and reads back the tensors listed in the module docs.
///
/// `backend` only labels the result. Errors are dcgan-core's (an invalid config, a
/// non-finite loss); a backend without a usable device panics, as burn does.
pub fn capture<B: AutodiffBackend>(
    config: &ParityConfig,
    backend: &str,
    device: &B::Device,
) -> Result<Capture, dcgan_core::Error> {
    let trainer_config = config.trainer_config();
    let mut trainer = Trainer::<B>::new(trainer_config.clone(), device)?;
    let n = config.batch_size;
    let size = trainer_config.generator.image_size;

    let mut rng = ChaCha8Rng::seed_from_u64(config.seed ^ 0x9e37_79b9_7f4a_7c15);
    let real: Tensor<B, 4> = Tensor::from_data(
        TensorData::new(
            LatentDistribution::Uniform.sample(n, 3 * size * size, &mut rng),
            [n, 3, size, size],
        ),
        device,
    );

    // The first step, traced: G on the trainer's latents, (1) D's update, (2) G's update.
    let (first, trace) = trainer.step_traced(real.clone())?;
    // A fresh trainer's first step updates both networks, so the trace is complete.
    let fake = recorded(trace.fake, "G(z)");
    let d = recorded(trace.discriminator, "D's update");
    let d_grads = recorded(trace.d_grads, "D's gradients");
    let g_loss = recorded(trace.g_loss, "G's loss");
    let g_grads = recorded(trace.g_grads, "G's gradients");
    // The Adam steps keep the parameter ids the gradients are keyed by.
    let (g, dis) = (&trainer.generator, &trainer.discriminator);
    let mut tensors = vec![
        host("G(z)", fake),
        host("D(real)", d.real_logits),
        host("D(G(z))", d.fake_logits),
        host("d_loss", d.loss),
        grad_of("dD/d conv0.w", &dis.blocks[0].conv.weight, &d_grads),
        grad_of("dD/d dense.w", &dis.classify.weight, &d_grads),
        host("g_loss", g_loss),
        grad_of("dG/d dense.w", &g.project.weight, &g_grads),
        grad_of("dG/d to_image.w", &g.to_image.weight, &g_grads),
    ];

    // The following steps (the trainer's own noise stream, the same on every backend).
    let steps = config.trainer_steps.max(1);
    let mut metrics = Vec::with_capacity(4 * steps);
    metrics.extend([first.d_loss, first.g_loss, first.d_real, first.d_fake]);
    for _ in 1..steps {
        let m = trainer.step(real.clone())?;
        metrics.extend([m.d_loss, m.g_loss, m.d_real, m.d_fake]);
    }
    tensors.push(Captured {
        name: TRAINER_METRICS.into(),
        shape: vec![steps, 4],
        values: metrics,
    });
    if trainer.average_generator().is_some() {
        let z = trainer.preview_latents().narrow(0, 0, n);
        let images = trainer.sampling_generator(true).forward(z);
        tensors.push(host(AVERAGE_IMAGES, images));
    }

    Ok(Capture {
        backend: backend.into(),
        config: config.clone(),
        tensors,
    })
}

/// How far a backend may drift from the reference: per tensor, the largest absolute error
/// divided by the tensor's largest reference magnitude must stay at or under the bound.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Tolerance {
    /// Bound on `max |x − ref| / max |ref|` for the tensors of the first step (forward
    /// outputs, losses, gradients).
    pub scaled: f64,
    /// Bound for the rows after whole steps (`trainer metrics`, the average's images), which
    /// come after several Adam updates. Adam's update is about `lr · g / (|g| + ε)` per
    /// weight, so a rounding difference that flips the sign of a near-zero gradient moves
    /// that weight by up to `2 · lr` (see [`PARITY_ADAM_EPSILON`]): over a few steps,
    /// float32 differences of 1e-6 grow to ~1e-4 in the losses.
    pub after_steps: f64,
}

impl Default for Tolerance {
    /// `1e-4` for one step (float32 on different kernels, other summation orders: measured
    /// 1e-7 to 3e-5 on the tiny model, 6e-5 for the stabilised step's D gradients, whose
    /// penalty is a finite difference; a wrong padding, stride or batch-norm convention
    /// gives ~1), `3e-3` after optimizer steps (measured up to 3e-7 with
    /// [`PARITY_ADAM_EPSILON`], 9e-4 for the average's images with training's ε).
    fn default() -> Self {
        Tolerance {
            scaled: 1e-4,
            after_steps: 3e-3,
        }
    }
}

impl Tolerance {
    /// The same bound for every tensor.
    pub fn uniform(scaled: f64) -> Self {
        Tolerance {
            scaled,
            after_steps: scaled,
        }
    }

    /// The default bounds for a backend: [`Tolerance::default`], or `1e-2` / `3e-2` for
    /// CUDA, whose float32 matrix products may run on TF32 tensor cores (10-bit mantissa).
    /// (Not measured on a GPU yet.)
    pub fn for_backend(backend: &str) -> Self {
        match backend {
            "cuda" => Tolerance {
                scaled: 1e-2,
                after_steps: 3e-2,
            },
            _ => Tolerance::default(),
        }
    }

    /// The bound for the tensor called `name`.
    pub fn for_tensor(&self, name: &str) -> f64 {
        if name == TRAINER_METRICS || name == AVERAGE_IMAGES {
            self.after_steps
        } else {
            self.scaled
        }
    }
}

/// Name of the row holding the metrics of real [`Trainer::step`]s.
pub const TRAINER_METRICS: &str = "trainer metrics";

/// Name of the row holding the generator average's images after those steps (runs with
/// [`ParityConfig::stabilized`]).
pub const AVERAGE_IMAGES: &str = "EMA G(z) after steps";

/// How one tensor differs from the reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TensorDiff {
    /// The tensor's name.
    pub name: String,
    /// Its shape (the reference's).
    pub shape: Vec<usize>,
    /// `max |ref|`.
    pub max_ref: f64,
    /// `max |x − ref|` (infinite if shapes differ or a value is not finite).
    pub max_abs: f64,
    /// `max |x − ref| / |ref|` over the elements with `|ref| ≥ 1e-3 · max |ref|` (tiny
    /// reference values would make any rounding look huge).
    pub max_rel: f64,
    /// `max_abs / max_ref`: the figure checked against the tolerance.
    pub scaled: f64,
    /// The bound `scaled` was checked against.
    pub tolerance: f64,
    /// Whether `scaled` is within the tolerance.
    pub ok: bool,
}

/// A backend compared with the reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParityReport {
    /// The reference backend (flex).
    pub reference: String,
    /// The backend compared.
    pub backend: String,
    /// The bound used.
    pub tolerance: Tolerance,
    /// One entry per tensor.
    pub diffs: Vec<TensorDiff>,
}

impl ParityReport {
    /// Whether every tensor is within the tolerance.
    pub fn passed(&self) -> bool {
        !self.diffs.is_empty() && self.diffs.iter().all(|d| d.ok)
    }

    /// The failing tensors, one line each, for an error message.
    pub fn failures(&self) -> Vec<String> {
        self.diffs
            .iter()
            .filter(|d| !d.ok)
            .map(|d| {
                format!(
                    "{} vs {}: {} differs by {:.3e} (max |ref| {:.3e}, scaled {:.3e} > tolerance {:.0e})",
                    self.backend, self.reference, d.name, d.max_abs, d.max_ref, d.scaled, d.tolerance
                )
            })
            .collect()
    }
}

/// Compares `other` with `reference`, tensor by tensor.
pub fn compare(reference: &Capture, other: &Capture, tolerance: Tolerance) -> ParityReport {
    let mut diffs = Vec::new();
    for r in &reference.tensors {
        let o = other.tensors.iter().find(|t| t.name == r.name);
        let max_ref = r
            .values
            .iter()
            .map(|v| (*v as f64).abs())
            .fold(0.0, f64::max);
        let (max_abs, max_rel) = match o {
            Some(o) if o.shape == r.shape && o.values.len() == r.values.len() => {
                let floor = 1e-3 * max_ref;
                let mut max_abs = 0.0f64;
                let mut max_rel = 0.0f64;
                for (&a, &b) in o.values.iter().zip(&r.values) {
                    let (a, b) = (a as f64, b as f64);
                    let err = if a.is_finite() && b.is_finite() {
                        (a - b).abs()
                    } else {
                        f64::INFINITY
                    };
                    max_abs = max_abs.max(err);
                    if b.abs() >= floor && b != 0.0 {
                        max_rel = max_rel.max(err / b.abs());
                    }
                }
                (max_abs, max_rel)
            }
            _ => (f64::INFINITY, f64::INFINITY),
        };
        // Images after steps are measured against their range [−1, 1]: early in training
        // the inference images are near zero (batch-norm running statistics still close
        // to their start), where Adam's sign flips (see `Tolerance::after_steps`) would
        // dominate an error scaled by the images' own tiny magnitude.
        let max_ref = if r.name == AVERAGE_IMAGES {
            max_ref.max(1.0)
        } else {
            max_ref
        };
        let scaled = if max_ref > 0.0 {
            max_abs / max_ref
        } else if max_abs == 0.0 {
            0.0
        } else {
            f64::INFINITY
        };
        diffs.push(TensorDiff {
            name: r.name.clone(),
            shape: r.shape.clone(),
            max_ref,
            max_abs,
            max_rel,
            scaled,
            tolerance: tolerance.for_tensor(&r.name),
            ok: scaled <= tolerance.for_tensor(&r.name),
        });
    }
    ParityReport {
        reference: reference.backend.clone(),
        backend: other.backend.clone(),
        tolerance,
        diffs,
    }
}

/// A Markdown table of reports: one row per backend and tensor.
pub fn parity_table(reports: &[ParityReport]) -> String {
    let mut out = String::from(
        "| backend vs ref | tensor | shape | max abs(ref) | max abs err | max rel err | scaled err | tol | ok |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    for r in reports {
        for d in &r.diffs {
            out.push_str(&format!(
                "| {} vs {} | {} | {:?} | {:.3e} | {:.2e} | {:.2e} | {:.2e} | {:.0e} | {} |\n",
                r.backend,
                r.reference,
                d.name,
                d.shape,
                d.max_ref,
                d.max_abs,
                d.max_rel,
                d.scaled,
                d.tolerance,
                if d.ok { "yes" } else { "**NO**" },
            ));
        }
    }
    out
}
