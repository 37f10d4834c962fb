//! How much memory a configuration needs, computed from the layer shapes before anything
//! is allocated, and a check that refuses what the machine cannot hold.
//!
//! [`MemoryEstimate::training`] estimates the peak of a training process (a
//! [`crate::Trainer`] stepping on batches from a loader); [`MemoryEstimate::generation`]
//! the peak of drawing images from a checkpoint. Both work from the configs alone —
//! nothing is built, so absurd configurations (`base` 65,536, 4,096 px, a batch of a
//! million) are estimated as readily as small ones, in `u128` with saturating arithmetic
//! (no overflow, no panic) — and [`MemoryEstimate::check`] turns an estimate over the
//! available memory into [`Error::TooLarge`] with a smaller setting that fits.
//!
//! # What is counted (f32, 4 bytes an element)
//!
//! - **parameters**: every float tensor of G and D (weights, biases, batch-norm γ, β and
//!   running statistics, spectral-norm vectors): what burn's `Module::num_params` counts.
//! - **Adam**: two moments per trainable parameter of each network.
//! - **average**: the generator average (`TrainerConfig::ema`), a copy of G.
//! - **gradients**: the parameter gradients of the network being updated at the peak.
//! - **activations**: everything proportional to the batch. On the flex fast path each
//!   layer keeps what its backward pass needs: a convolution keeps its input (when its
//!   weight is trained), batch norm and leaky ReLU keep their input, `tanh` its output; so
//!   a training forward pass keeps about two maps per layer. At the peak of a step — the
//!   discriminator's backward pass — G's graph (kept for the G update), D's graphs on the
//!   real and the fake batch (two more with a gradient penalty), two maps of the largest
//!   layer in flight, and the input batches (the one in use and the loader's prefetch
//!   queue, [`INPUT_BATCHES`]) are alive at once. (In the G update, DiffAugment's
//!   operations on the tracked fakes keep a few image-sized tensors per policy.)
//! - **scratch**: the flex fast path's working memory. Each rayon worker keeps the largest
//!   piece of a window matrix (`im2col` / `col2im`, 1 MiB or 4 weights, or a line of
//!   windows if larger, at most a group's) it ever used (flex-kernels' `with_scratch`)
//!   and about 2 MiB more (gemm's packing buffers, its malloc arena), the calling thread
//!   keeps the largest set of weight-gradient parts (one weight per group of images, but
//!   at most [`WEIGHT_PARTS_BUDGET`] bytes while 4 parts fit), and every convolution
//!   keeps a reordered copy of its weight for its input gradient; with spectral norm, two
//!   weight-sized tensors per layer and pass. When the optimizer steps, the new parameters
//!   of the updated network are here too (the old ones are freed only afterwards).
//!
//! A step passes through phases (D's backward pass, D's Adam step, G's backward pass);
//! the estimate is that of the phase with the most working memory, named in
//! [`MemoryEstimate::phase`]. Not counted: the program itself ([`PROGRAM_BASELINE`]) and
//! the allocator's fragmentation ([`HEADROOM_PERCENT`]), which [`MemoryEstimate::needed`]
//! and [`MemoryEstimate::check`] add, and the data set's own cache (dcgan-data).
//!
//! # Calibration
//!
//! Peak resident memory (`VmHWM`) minus the resident memory before anything was built,
//! against the estimate, on flex with 2 threads and `reuse_large_allocations` on as in
//! `cats` (`cargo run -p dcgan-core --features ndarray,wgpu --example memory_probe --
//! train|generate PRESET BASE BATCH`; 2026-12-02, after the weight-gradient slots for
//! dcgan64 base 64 and seed128 base 64; docs/performance.md, "Memory estimate", change 11;
//! the seed128 base 16 and 32 rows again on 2026-12-03 after change 16, which builds the
//! window matrices in pieces of about 1 MiB: their estimates fell 6 and 19 MiB, their
//! peaks 15 and 27 MiB; the other estimates fell 0–6 MiB; the rows with blocks over 32 MiB
//! again after change 17, which keeps those on the heap too: their peaks moved −32 to
//! +81 MiB, the largest rise at seed128 base 16 batch 256, now 0.95; the seed128 base 64
//! row again on 2026-12-04 after change 22, whose Winograd groups of at least 128 tiles
//! and split grids of 8 (a 302 MB transformed weight for D's 512 → 1024) the scratch
//! term does not count: 2,905.5 MiB before it, so the estimate went from 1.13 to 0.92 of
//! the peak, inside [`HEADROOM_PERCENT`]):
//!
//! | training, 3 steps (2 for seed128 base 32 and 64) | estimate | measured | estimate / measured |
//! |---|---|---|---|
//! | tiny32 base 4 batch 4 | 7.1 MiB | 8.3 MiB | 0.85 |
//! | tiny32 base 8 batch 64, every stabiliser | 42.9 MiB | 42.8 MiB | 1.00 |
//! | dcgan64 base 16 batch 32 | 108.5 MiB | 103.4 MiB | 1.05 |
//! | dcgan64 base 16 batch 32, every stabiliser | 149.3 MiB | 132.8 MiB | 1.12 |
//! | dcgan64 base 32 batch 32 | 231.7 MiB | 222.5 MiB | 1.04 |
//! | dcgan64 base 64 batch 8 | 333.2 MiB | 394.2 MiB | 0.85 |
//! | dcgan64 base 64 batch 64 | 977.6 MiB | 864.1 MiB | 1.13 |
//! | seed128 base 16 batch 16 | 244.5 MiB | 223.3 MiB | 1.09 |
//! | seed128 base 32 batch 32 | 1,004.8 MiB | 902.5 MiB | 1.11 |
//! | seed128 base 64 batch 64 (2026-12-04, after docs/performance.md's change 22) | 3,272.1 MiB | 3,563.4 MiB | 0.92 |
//!
//! | generation (load, then two batches) | estimate | measured | estimate / measured |
//! |---|---|---|---|
//! | dcgan64 base 16 batch 64 | 90.2 MiB | 69.8 MiB | 1.29 |
//! | dcgan64 base 64 batch 64 | 478.0 MiB | 462.2 MiB | 1.03 |
//! | seed128 base 32 batch 64 | 490.0 MiB | 447.2 MiB | 1.10 |
//! | tiny32 base 8 batch 1,024 | 89.8 MiB | 103.3 MiB | 0.87 |
//! | dcgan64 base 16 batch 1,024 | 614.4 MiB | 599.3 MiB | 1.03 |
//! | seed128 base 16 batch 256 | 661.5 MiB | 693.1 MiB | 0.95 |
//!
//! Again on 2026-12-06, after docs/performance.md's change 28 (grids of 8 split at batch
//! 32 and more, their transformed weights not counted either): dcgan64 base 32 batch 32
//! 230.9 / 209.1 MiB (1.10), dcgan64 base 64 batch 64 977.6 / 922.2 MiB (1.06), seed128
//! base 64 batch 64 3,272.1 / 3,672.7 MiB (0.89).
//!
//! (Every stabiliser: spectral norm on both networks, R1, DiffAugment with all three
//! policies, the generator average, hinge loss.) The peak grows a little over a long run
//! as the heap fragments (dcgan64 base 32 batch 32: 222.5 MiB after 3 steps, 233 MiB after
//! 40), which [`HEADROOM_PERCENT`] covers.
//!
//! The other backends (ndarray, the GPU ones) allocate differently; the estimate is the
//! flex fast path's, a guide for them rather than a bound.

use std::fmt;

use crate::discriminator::DiscriminatorConfig;
use crate::error::{Error, Result};
use crate::generator::{GeneratorConfig, START_SIZE};
use crate::trainer::TrainerConfig;

/// Bytes of one f32 element.
const F32: u128 = 4;

/// Blocks up to this size stay on the heap once freed: glibc's largest mmap threshold,
/// which `flex_kernels::allocator::reuse_large_allocations` sets (the `cats` tool does).
const HEAP_BLOCK_LIMIT: usize = 32 << 20;

/// The most bytes of weight-gradient parts a backward pass of the fast path keeps while 4
/// parts fit (flex-kernels' `WEIGHT_PARTS_BUDGET`).
pub const WEIGHT_PARTS_BUDGET: u128 = 256 << 20;

/// Input batches alive during training: the one in use and dcgan-data's default prefetch
/// queue (4 batches, plus one being assembled).
pub const INPUT_BATCHES: u128 = 6;

/// What a process needs besides the estimate: its code and burn's own state (the `cats`
/// binary idles at about 11 MiB); [`MemoryEstimate::needed`] adds it.
pub const PROGRAM_BASELINE: u128 = 64 << 20;

/// The share of the estimate [`MemoryEstimate::needed`] adds for the allocator's
/// fragmentation and the estimate's own error (measured peaks were 0.78 to 1.18 times the
/// estimate), in percent.
pub const HEADROOM_PERCENT: u128 = 20;

/// Elements the flex fast path puts in one group's window matrix (about 4 MiB), unless
/// one image alone needs more (flex-kernels' `ConvSpec::group`).
const WINDOW_GROUP_ELEMENTS: u128 = 1 << 20;

/// The pieces a group's window matrix is built in, at least: elements, and times the
/// weight (flex-kernels' `WINDOW_PIECE_ELEMENTS` and `WINDOW_PIECE_WEIGHTS`).
const WINDOW_PIECE: (u128, u128) = (1 << 18, 4);

/// Bytes each kernel thread holds besides its window matrix: gemm's packing buffers and
/// its malloc arena (measured: about 5 MiB over two threads on the smallest models).
const THREAD_OVERHEAD: u128 = 2 << 20;

/// Parameters of one network, in elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ParameterCount {
    /// Every float tensor: weights, biases, batch-norm γ, β and running statistics,
    /// spectral-norm vectors (what burn's `Module::num_params` counts).
    pub total: u128,
    /// What the optimizer trains: weights, biases, batch-norm γ and β.
    pub trainable: u128,
}

/// The parameters of the generator `config` describes (without building it).
pub fn generator_parameters(config: &GeneratorConfig) -> ParameterCount {
    Network::generator(config).params
}

/// The parameters of the discriminator `config` describes (without building it).
pub fn discriminator_parameters(config: &DiscriminatorConfig) -> ParameterCount {
    Network::discriminator(config).params
}

/// The arithmetic of the two networks: multiply-adds of one image's forward pass through
/// each (convolutions and dense layers; batch norm and activations are not counted), from
/// the configs alone. For achieved-GFLOP/s figures (`cargo bench --bench side_by_side`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArithmeticCost {
    /// Multiply-adds of the generator's forward pass, per image.
    pub generator_macs: u128,
    /// Multiply-adds of the discriminator's forward pass, per image.
    pub discriminator_macs: u128,
}

impl ArithmeticCost {
    /// The cost of the networks `generator` and `discriminator` describe.
    pub fn of(generator: &GeneratorConfig, discriminator: &DiscriminatorConfig) -> Self {
        Self {
            generator_macs: Network::generator(generator).macs_per_image(),
            discriminator_macs: Network::discriminator(discriminator).macs_per_image(),
        }
    }

    /// Floating-point operations (two per multiply-add) of one training step, per image:
    /// G forward once and backward once (input and weight gradients: twice the forward),
    /// D forward three times (real, detached fakes, fakes for the G update), backward
    /// with weight gradients twice (the D update) and with input gradients only once
    /// (the G update): `2 · (3 G + 8 D)`. The useful work of a step; PyTorch's reference
    /// step also computes D's weight gradients in the G update (`2 · (3 G + 9 D)`).
    pub fn training_flops_per_image(&self) -> f64 {
        2.0 * (3 * self.generator_macs + 8 * self.discriminator_macs) as f64
    }

    /// Floating-point operations of drawing one image (G's forward pass).
    pub fn generation_flops_per_image(&self) -> f64 {
        2.0 * self.generator_macs as f64
    }
}

/// The memory a configuration needs at its peak, in bytes, by part (see the module docs
/// for what each part covers). [`fmt::Display`] gives a short breakdown:
/// `1.2 GiB: parameters 14 MiB, Adam 28 MiB, activations 1.1 GiB, scratch 60 MiB`.
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryEstimate {
    /// Every float tensor of the networks held at the peak.
    pub parameters: u128,
    /// Adam's two moments per trainable parameter.
    pub adam: u128,
    /// The generator average, if the configuration keeps one.
    pub average: u128,
    /// Parameter gradients alive at the peak.
    pub gradients: u128,
    /// Layer outputs kept for the backward pass, gradients in flight, input batches and
    /// pictures: everything proportional to the batch.
    pub activations: u128,
    /// The flex fast path's working buffers, weight copies kept for backward passes, and
    /// transient copies (new parameters in an optimizer step, a checkpoint being read).
    pub scratch: u128,
    /// When the peak happens ("the discriminator update", ...).
    pub phase: &'static str,
    workload: Workload,
}

/// What was estimated, to estimate smaller variants for a suggestion.
#[derive(Debug, Clone, PartialEq)]
enum Workload {
    Training {
        config: TrainerConfig,
        threads: usize,
    },
    Generation {
        config: TrainerConfig,
        batch: usize,
        kept_images: usize,
        threads: usize,
    },
}

/// Threads the fast path's kernels run on: rayon's global pool (`RAYON_NUM_THREADS`, else
/// one per CPU; `flex_kernels::threads::global_pool_threads` with the `flex` feature).
pub fn worker_threads() -> usize {
    #[cfg(feature = "flex")]
    return flex_kernels::threads::global_pool_threads();
    #[cfg(not(feature = "flex"))]
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

impl MemoryEstimate {
    /// The peak of a training process with `config`, its kernels on [`worker_threads`]
    /// threads.
    pub fn training(config: &TrainerConfig) -> Self {
        Self::training_with_threads(config, worker_threads())
    }

    /// [`MemoryEstimate::training`] with the fast path's kernels on `threads` threads.
    pub fn training_with_threads(config: &TrainerConfig, threads: usize) -> Self {
        let g = Network::generator(&config.generator);
        let d = Network::discriminator(&config.discriminator);
        let batch = config.batch_size as u128;
        let threads_u = threads.max(1) as u128;
        let image = g.output;

        // Per image, in elements.
        let g_kept = g.kept_training();
        let d_full = d.kept_training();
        let d_no_grad = d.kept_without_weight_gradients();
        let policies = [
            config.augment.color,
            config.augment.translation,
            config.augment.cutout,
        ]
        .iter()
        .filter(|&&on| on)
        .count() as u128;
        // Kept by DiffAugment's operations on the tracked fakes of the G update.
        let augment = policies.saturating_mul(3).saturating_mul(image);
        let largest = g.largest_map().max(d.largest_map()).max(image);
        let in_flight = largest.saturating_mul(2);
        let inputs = INPUT_BATCHES.saturating_mul(image);
        let d_passes: u128 = if config.gradient_penalty.is_some() {
            4
        } else {
            2
        };

        // Scratch every phase shares: the workers' window matrices and the calling
        // thread's weight-gradient parts, kept for the life of the process.
        let windows = g
            .largest_window(batch)
            .max(d.largest_window(batch))
            .saturating_mul(threads_u);
        let parts = g.largest_parts(batch).max(d.largest_parts(batch));
        let persistent = sum(&[
            windows,
            parts,
            threads_u.saturating_mul(THREAD_OVERHEAD / F32),
        ]);

        let bytes = |elements: u128| elements.saturating_mul(F32);
        let per_batch = |per_image: u128| bytes(per_image.saturating_mul(batch));
        let phases = [
            Phase {
                name: "the discriminator update",
                gradients: bytes(d.params.trainable),
                // DiffAugment's tensors are not kept here: neither batch is tracked.
                activations: per_batch(sum(&[
                    g_kept,
                    d_passes.saturating_mul(d_full),
                    in_flight,
                    inputs,
                ])),
                scratch: bytes(sum(&[
                    persistent,
                    g.weight_copies(1),
                    // The first convolution's input (images) needs no gradient: no copy.
                    d.weight_copies(d_passes)
                        .saturating_sub(d_passes.saturating_mul(d.first_conv_weight)),
                ])),
            },
            Phase {
                name: "the discriminator's Adam step",
                gradients: bytes(d.params.trainable),
                activations: per_batch(g_kept.saturating_add(inputs)),
                scratch: bytes(sum(&[persistent, g.weight_copies(1), d.params.total])),
            },
            Phase {
                name: "the generator update",
                gradients: bytes(g.params.trainable),
                activations: per_batch(sum(&[g_kept, d_no_grad, augment, in_flight, inputs])),
                scratch: bytes(sum(&[persistent, g.weight_copies(1), d.weight_copies(1)])),
            },
        ];
        let peak = Phase::largest(phases);
        MemoryEstimate {
            parameters: bytes(g.params.total.saturating_add(d.params.total)),
            adam: bytes(
                g.params
                    .trainable
                    .saturating_add(d.params.trainable)
                    .saturating_mul(2),
            ),
            average: if config.ema.is_some() {
                bytes(g.params.total)
            } else {
                0
            },
            gradients: peak.gradients,
            activations: peak.activations,
            scratch: peak.scratch,
            phase: peak.name,
            workload: Workload::Training {
                config: config.clone(),
                threads,
            },
        }
    }

    /// The peak of drawing images from a checkpoint of `config` (as `cats generate` does):
    /// loading the whole training state (networks, Adam moments, average, with the file
    /// and its decoded record alongside), then the generator's inference forward pass on
    /// `batch` latents at a time while `kept_images` 8-bit pictures are held for a grid
    /// (and the grid picture itself).
    pub fn generation(config: &TrainerConfig, batch: usize, kept_images: usize) -> Self {
        Self::generation_with_threads(config, batch, kept_images, worker_threads())
    }

    /// [`MemoryEstimate::generation`] with the fast path's kernels on `threads` threads.
    pub fn generation_with_threads(
        config: &TrainerConfig,
        batch: usize,
        kept_images: usize,
        threads: usize,
    ) -> Self {
        let g = Network::generator(&config.generator);
        let d = Network::discriminator(&config.discriminator);
        let batch_u = batch as u128;
        let bytes = |elements: u128| elements.saturating_mul(F32);
        let average = if config.ema.is_some() {
            g.params.total
        } else {
            0
        };
        let adam = g
            .params
            .trainable
            .saturating_add(d.params.trainable)
            .saturating_mul(2);
        let state = sum(&[g.params.total, d.params.total, adam, average]);
        // Pictures: one RGB byte per value, the kept ones and the grid made of them.
        let pictures = (kept_images as u128)
            .saturating_mul(g.output)
            .saturating_mul(2);
        // The file's bytes, the payload and the decoded record besides the state being
        // built, partly overlapping (measured: 3.4 times the state at the peak).
        let reading = state.saturating_mul(5) / 2;
        let load = Phase {
            name: "loading the checkpoint",
            gradients: 0,
            activations: 0,
            scratch: bytes(reading),
        };
        let draw = Phase {
            name: "drawing",
            gradients: 0,
            activations: bytes(g.inference_peak().saturating_mul(batch_u)).saturating_add(pictures),
            // What reading left on the heap (measured: at most about the state and one
            // block of [`HEAP_BLOCK_LIMIT`]; since `reuse_large_allocations` keeps larger
            // blocks on the heap too, drawing reuses them rather than adding to them),
            // the workers' window matrices, one reordered weight.
            scratch: bytes(sum(&[
                reading.min(state.saturating_add(HEAP_BLOCK_LIMIT as u128 / F32)),
                g.largest_window(batch_u)
                    .saturating_add(THREAD_OVERHEAD / F32)
                    .saturating_mul(threads.max(1) as u128),
                g.largest_conv_weight(),
            ])),
        };
        // Only the sampling generator is left once the checkpoint is loaded.
        let load_total = bytes(state).saturating_add(load.working());
        let draw_total = bytes(g.params.total).saturating_add(draw.working());
        let (peak, parameters, adam, average) = if load_total >= draw_total {
            (
                load,
                bytes(g.params.total.saturating_add(d.params.total)),
                bytes(adam),
                bytes(average),
            )
        } else {
            (draw, bytes(g.params.total), 0, 0)
        };
        MemoryEstimate {
            parameters,
            adam,
            average,
            gradients: peak.gradients,
            activations: peak.activations,
            scratch: peak.scratch,
            phase: peak.name,
            workload: Workload::Generation {
                config: config.clone(),
                batch,
                kept_images,
                threads,
            },
        }
    }

    /// All parts together, in bytes (saturating: never overflows).
    pub fn total(&self) -> u128 {
        sum(&[
            self.parameters,
            self.adam,
            self.average,
            self.gradients,
            self.activations,
            self.scratch,
        ])
    }

    /// What the process needs in all: [`MemoryEstimate::total`], plus
    /// [`HEADROOM_PERCENT`] of it, plus [`PROGRAM_BASELINE`].
    pub fn needed(&self) -> u128 {
        let total = self.total();
        sum(&[total, total / 100 * HEADROOM_PERCENT, PROGRAM_BASELINE])
    }

    /// Whether [`MemoryEstimate::needed`] fits in `available` bytes.
    pub fn fits(&self, available: u64) -> bool {
        self.needed() <= available as u128
    }

    /// `Ok` if the estimate fits in `available` bytes, else [`Error::TooLarge`] with the
    /// figures and a smaller setting that does fit: for training, the batch size halved
    /// until it fits (`--batch-size`), else the width halved too (`--base`); for
    /// generation, fewer pictures kept for a grid.
    pub fn check(&self, available: u64) -> Result<()> {
        if self.fits(available) {
            return Ok(());
        }
        let (what, suggestion) = match &self.workload {
            Workload::Training { config, threads } => {
                ("training", training_suggestion(config, *threads, available))
            }
            Workload::Generation {
                config,
                batch,
                kept_images,
                threads,
            } => (
                "generating",
                generation_suggestion(config, *batch, *kept_images, *threads, available),
            ),
        };
        Err(Error::TooLarge {
            what,
            needed: self.needed(),
            available,
            breakdown: self.to_string(),
            suggestion,
        })
    }

    /// For generation: the largest batch (`max_batch`, halved until it fits) whose
    /// estimate fits in `available` bytes, with that estimate; else the check's error at
    /// batch 1.
    pub fn fit_generation(
        config: &TrainerConfig,
        max_batch: usize,
        kept_images: usize,
        available: u64,
    ) -> Result<(usize, MemoryEstimate)> {
        let mut batch = max_batch.max(1);
        loop {
            let estimate = Self::generation(config, batch, kept_images);
            if estimate.fits(available) || batch == 1 {
                estimate.check(available)?;
                return Ok((batch, estimate));
            }
            batch /= 2;
        }
    }
}

impl fmt::Display for MemoryEstimate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", format_bytes(self.total()))?;
        let parts = [
            ("parameters", self.parameters),
            ("Adam", self.adam),
            ("average", self.average),
            ("gradients", self.gradients),
            ("activations", self.activations),
            ("scratch", self.scratch),
        ];
        let mut first = true;
        for (name, bytes) in parts.into_iter().filter(|&(_, b)| b > 0) {
            let sep = if first { " " } else { ", " };
            write!(f, "{sep}{name} {}", format_bytes(bytes))?;
            first = false;
        }
        Ok(())
    }
}

/// A size for people: `512 B`, `14 MiB`, `1.2 GiB` (one decimal under 10 units).
pub fn format_bytes(bytes: u128) -> String {
    const UNITS: [&str; 9] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if value < 9.95 {
        format!("{value:.1} {}", UNITS[unit])
    } else {
        format!("{value:.0} {}", UNITS[unit])
    }
}

/// The working memory of one phase of a step, in bytes.
struct Phase {
    name: &'static str,
    gradients: u128,
    activations: u128,
    scratch: u128,
}

impl Phase {
    fn working(&self) -> u128 {
        sum(&[self.gradients, self.activations, self.scratch])
    }

    /// The phase with the most working memory (the first of equals).
    fn largest<const N: usize>(phases: [Phase; N]) -> Phase {
        phases
            .into_iter()
            .reduce(|a, b| if b.working() > a.working() { b } else { a })
            .expect("at least one phase")
    }
}

fn sum(values: &[u128]) -> u128 {
    values.iter().fold(0, |a, &b| a.saturating_add(b))
}

fn product(values: &[u128]) -> u128 {
    values.iter().fold(1, |a, &b| a.saturating_mul(b))
}

/// `--batch-size` halved until the training estimate fits, else `--base` halved (with the
/// largest batch size that then fits).
fn training_suggestion(config: &TrainerConfig, threads: usize, available: u64) -> String {
    let base = config.discriminator.base_channels.max(1);
    let fits = |base: usize, batch: usize| {
        let mut smaller = config.clone().with_batch_size(batch);
        smaller.generator.base_channels = base;
        smaller.discriminator.base_channels = base;
        let estimate = MemoryEstimate::training_with_threads(&smaller, threads);
        estimate.fits(available).then(|| estimate.needed())
    };
    let mut width = base;
    loop {
        let mut batch = config.batch_size.max(1);
        loop {
            if let Some(needed) = fits(width, batch) {
                let mut flags = Vec::new();
                if width != base {
                    flags.push(format!("--base {width}"));
                }
                if batch != config.batch_size {
                    flags.push(format!("--batch-size {batch}"));
                }
                return format!("try {} (about {})", flags.join(" "), format_bytes(needed));
            }
            if batch == 1 {
                break;
            }
            batch /= 2;
        }
        if width == 1 {
            return "even --base 1 --batch-size 1 does not fit: use a smaller --preset or --image-size, \
                    or a machine with more memory"
                .to_string();
        }
        width /= 2;
    }
}

/// Fewer pictures kept for a grid, or the model is too large to load at all.
fn generation_suggestion(
    config: &TrainerConfig,
    batch: usize,
    kept_images: usize,
    threads: usize,
    available: u64,
) -> String {
    let fits =
        |kept| MemoryEstimate::generation_with_threads(config, 1, kept, threads).fits(available);
    if !fits(0) {
        return "this checkpoint's model does not fit even one image at a time: use a machine \
                with more memory"
            .to_string();
    }
    if kept_images > 0 {
        // The largest number of kept pictures that fits, by bisection.
        let (mut lo, mut hi) = (0usize, kept_images);
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            if fits(mid) {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        return format!(
            "keep fewer pictures for one grid or walk: at most {lo} fit (lower -n or \
             --interpolate, or drop --grid)"
        );
    }
    format!("draw fewer than {batch} images at a time")
}

/// One convolution as the flex fast path runs it.
#[derive(Debug, Clone, Copy)]
struct Conv {
    /// Elements of the weight (`[G, K]` for the GEMMs).
    weight: u128,
    /// Window positions of one image (each one multiply-add per weight element).
    positions: u128,
    /// Elements of one image's window matrix: window positions × `kh·kw·c`.
    window_per_image: u128,
    /// Elements of the windows of one line of window positions (one row of the grid).
    window_per_line: u128,
}

impl Conv {
    /// Images per group and groups for `batch` images (`ConvSpec::group`).
    fn groups(&self, batch: u128) -> (u128, u128) {
        let batch = batch.max(1);
        let by_size = (WINDOW_GROUP_ELEMENTS / self.window_per_image.max(1)).max(1);
        let groups = batch
            .div_ceil(by_size)
            .max(4)
            .checked_next_multiple_of(4)
            .unwrap_or(u128::MAX)
            .min(batch)
            .max(1);
        let group = batch.div_ceil(groups).max(1);
        (group, batch.div_ceil(group))
    }

    /// Elements of the largest piece of a group's window matrix that is held at once
    /// (flex-kernels' `window_lines`): whole lines, at least one.
    fn window(&self, batch: u128) -> u128 {
        let group = self.groups(batch).0.saturating_mul(self.window_per_image);
        let line = self.window_per_line.max(1);
        let piece = WINDOW_PIECE
            .0
            .max(WINDOW_PIECE.1.saturating_mul(self.weight));
        group.min((piece / line).max(1).saturating_mul(line))
    }

    /// Elements of the weight-gradient parts of a backward pass: one per group while they
    /// fit in [`WEIGHT_PARTS_BUDGET`], else as many as fit, a multiple of 4 and at least 4
    /// (flex-kernels' `weight_slots`).
    fn parts(&self, batch: u128) -> u128 {
        let fit = WEIGHT_PARTS_BUDGET / self.weight.saturating_mul(F32).max(1);
        let cap = if fit <= 4 { 4 } else { fit / 4 * 4 };
        self.groups(batch).1.min(cap).saturating_mul(self.weight)
    }
}

/// One network's shapes, in elements.
#[derive(Debug, Clone, Default)]
struct Network {
    params: ParameterCount,
    /// The convolutions, in order.
    convs: Vec<Conv>,
    /// Elements of every weight matrix (convolutions and dense layers).
    weights: u128,
    /// Elements of the first convolution's weight.
    first_conv_weight: u128,
    /// Per image: the output of each layer (G: the projection, then each block; D: each
    /// block).
    maps: Vec<u128>,
    /// Per image: the network's input (G: the latent vector; D: the image).
    input: u128,
    /// Per image: the network's output (G: the image; D: one logit).
    output: u128,
    /// Whether this is the generator.
    generator: bool,
    /// Whether its layers are spectrally normalised.
    spectral: bool,
}

impl Network {
    fn generator(config: &GeneratorConfig) -> Self {
        let k2 = product(&[config.kernel_size as u128, config.kernel_size as u128]);
        let steps = upsamplings(config.image_size);
        let latent = config.latent_dim as u128;
        let channels_out = config.image_channels as u128;
        let start = START_SIZE as u128;
        let c0 = (config.base_channels as u128).saturating_mul(1u128 << steps.min(100));
        let first_map = product(&[start, start, c0]);
        let mut net = Network {
            input: latent,
            generator: true,
            ..Default::default()
        };
        let mut spectral_vectors = latent;
        // The dense projection.
        let project = product(&[latent, first_map]);
        let with_bias = project.saturating_add(first_map);
        net.add_params(with_bias, with_bias);
        net.weights = project;
        net.maps.push(first_map);
        let (mut channels, mut side) = (c0, start);
        for _ in 0..steps {
            let out = channels / 2;
            let grid = product(&[side, side]);
            side = side.saturating_mul(2);
            let weight = product(&[channels, out, k2]);
            // Convolution weight and bias, batch norm γ, β (trained) and running mean and
            // variance.
            net.add_params(
                weight.saturating_add(out.saturating_mul(5)),
                weight.saturating_add(out.saturating_mul(3)),
            );
            net.add_conv(Conv {
                weight,
                positions: grid,
                window_per_image: product(&[grid, k2, out]),
                window_per_line: product(&[side / 2, k2, out]),
            });
            net.maps.push(product(&[out, side, side]));
            spectral_vectors = spectral_vectors.saturating_add(channels);
            channels = out;
        }
        let weight = product(&[channels, channels_out, k2]);
        net.add_params(
            weight.saturating_add(channels_out),
            weight.saturating_add(channels_out),
        );
        net.add_conv(Conv {
            weight,
            positions: product(&[side, side]),
            window_per_image: product(&[side, side, k2, channels_out]),
            window_per_line: product(&[side, k2, channels_out]),
        });
        net.output = product(&[channels_out, side, side]);
        if config.spectral_norm {
            spectral_vectors = spectral_vectors.saturating_add(channels);
            net.add_params(spectral_vectors, 0);
            net.spectral = true;
        }
        net
    }

    fn discriminator(config: &DiscriminatorConfig) -> Self {
        let k = config.kernel_size as u128;
        let k2 = k.saturating_mul(k);
        let pad = k.saturating_sub(1) / 2;
        let size = config.image_size as u128;
        let strides: Vec<u128> = if config.strides.is_empty() {
            let layers = (config.image_size / 4).max(1).trailing_zeros();
            vec![2; layers as usize]
        } else {
            config.strides.iter().map(|&s| s as u128).collect()
        };
        let channels_in = config.image_channels as u128;
        let mut net = Network {
            input: product(&[channels_in, size, size]),
            output: 1,
            ..Default::default()
        };
        let mut spectral_vectors = 0u128;
        let (mut c_in, mut c_out, mut side) = (channels_in, config.base_channels as u128, size);
        for (i, &stride) in strides.iter().enumerate() {
            let out_side = (side.saturating_add(2 * pad))
                .checked_sub(k)
                .map_or(0, |span| span / stride.max(1) + 1);
            let weight = product(&[c_out, c_in, k2]);
            let norm = (i > 0 || config.first_batch_norm) && !config.spectral_norm;
            let (norm_total, norm_trainable) = if norm {
                (c_out.saturating_mul(4), c_out.saturating_mul(2))
            } else {
                (0, 0)
            };
            net.add_params(
                sum(&[weight, c_out, norm_total]),
                sum(&[weight, c_out, norm_trainable]),
            );
            net.add_conv(Conv {
                weight,
                positions: product(&[out_side, out_side]),
                window_per_image: product(&[out_side, out_side, k2, c_in]),
                window_per_line: product(&[out_side, k2, c_in]),
            });
            if i == 0 {
                net.first_conv_weight = weight;
            }
            net.maps.push(product(&[c_out, out_side, out_side]));
            spectral_vectors = spectral_vectors.saturating_add(c_out);
            c_in = c_out;
            c_out = c_out.saturating_mul(2);
            side = out_side;
        }
        let features = product(&[c_in, side, side]);
        net.add_params(features.saturating_add(1), features.saturating_add(1));
        net.weights = net.weights.saturating_add(features);
        if config.spectral_norm {
            spectral_vectors = spectral_vectors.saturating_add(features);
            net.add_params(spectral_vectors, 0);
            net.spectral = true;
        }
        net
    }

    /// Adds `total` float elements, `trainable` of which the optimizer trains.
    fn add_params(&mut self, total: u128, trainable: u128) {
        self.params.total = self.params.total.saturating_add(total);
        self.params.trainable = self.params.trainable.saturating_add(trainable);
    }

    fn add_conv(&mut self, conv: Conv) {
        self.weights = self.weights.saturating_add(conv.weight);
        self.convs.push(conv);
    }

    /// Multiply-adds of one image's forward pass: every convolution's weight at each of
    /// its window positions, and the dense layer (its weight is in `weights` but not in
    /// `convs`).
    fn macs_per_image(&self) -> u128 {
        let conv_weights = sum(&self.convs.iter().map(|c| c.weight).collect::<Vec<_>>());
        let dense = self.weights.saturating_sub(conv_weights);
        let convs: Vec<u128> = self
            .convs
            .iter()
            .map(|c| c.weight.saturating_mul(c.positions))
            .collect();
        sum(&convs).saturating_add(dense)
    }

    fn largest_map(&self) -> u128 {
        self.maps.iter().copied().max().unwrap_or(0)
    }

    fn largest_window(&self, batch: u128) -> u128 {
        self.convs
            .iter()
            .map(|c| c.window(batch))
            .max()
            .unwrap_or(0)
    }

    fn largest_parts(&self, batch: u128) -> u128 {
        self.convs.iter().map(|c| c.parts(batch)).max().unwrap_or(0)
    }

    fn largest_conv_weight(&self) -> u128 {
        self.convs.iter().map(|c| c.weight).max().unwrap_or(0)
    }

    /// Weight copies kept by `passes` forward passes in training: each convolution's
    /// reordered weight (for its input gradient) and, with spectral norm, two weight-sized
    /// tensors per layer.
    fn weight_copies(&self, passes: u128) -> u128 {
        let conv_weights = sum(&self.convs.iter().map(|c| c.weight).collect::<Vec<_>>());
        let spectral = if self.spectral {
            self.weights.saturating_mul(2)
        } else {
            0
        };
        passes.saturating_mul(conv_weights.saturating_add(spectral))
    }

    /// Per image: what a training forward pass keeps for its backward pass.
    fn kept_training(&self) -> u128 {
        let maps = sum(&self.maps).saturating_mul(2);
        if self.generator {
            // z, the projection (leaky ReLU's copy and the first convolution's copy, both
            // channels-last), two maps per block, tanh's output.
            sum(&[self.input, maps, self.output])
        } else {
            // The first convolution's channels-last copy of the images, two maps per block
            // (the last one's second is the dense layer's NCHW input).
            self.input.saturating_add(maps)
        }
    }

    /// Per image: what a forward pass keeps when only the input needs a gradient (D in
    /// the G update): the inputs of batch norm and leaky ReLU, and the dense layer's.
    fn kept_without_weight_gradients(&self) -> u128 {
        sum(&self.maps).saturating_add(self.maps.last().copied().unwrap_or(0))
    }

    /// Per image: the most an inference forward pass holds at once: a layer's input and
    /// output (at the end the image, `tanh`'s copy and the values read back), plus one
    /// image of slack (measured).
    fn inference_peak(&self) -> u128 {
        let mut peak = self.maps.first().copied().unwrap_or(0).saturating_mul(3);
        for pair in self.maps.windows(2) {
            peak = peak.max(
                pair[0]
                    .saturating_add(pair[1])
                    .max(pair[1].saturating_mul(2)),
            );
        }
        let last = self.maps.last().copied().unwrap_or(0);
        peak.max(last.saturating_add(self.output))
            .max(self.output.saturating_mul(3))
            .saturating_add(self.output)
    }
}

/// `log2(image_size / 8)` for valid sizes; 0 for sizes under 8.
fn upsamplings(image_size: usize) -> u32 {
    match image_size / START_SIZE {
        0 => 0,
        q => q.trailing_zeros(),
    }
}

#[cfg(test)]
mod tests {
    use burn::module::Module;

    use super::*;
    use crate::test_util::{stabilized_config, tiny_config};
    use crate::{Discriminator, EmaConfig, Generator, ModelPreset, TestBackend};

    fn preset(preset: ModelPreset, base: usize, batch: usize) -> TrainerConfig {
        let (g, d) = preset.configs(Some(base));
        TrainerConfig::new(g, d).with_batch_size(batch)
    }

    #[cfg(feature = "flex")]
    #[test]
    fn the_heap_block_limit_is_the_allocator_settings() {
        assert_eq!(HEAP_BLOCK_LIMIT, flex_kernels::allocator::HEAP_BLOCK_LIMIT);
        assert_eq!(
            WEIGHT_PARTS_BUDGET,
            flex_kernels::WEIGHT_PARTS_BUDGET as u128
        );
    }

    #[test]
    fn arithmetic_cost_counts_every_layer_once() {
        // dcgan64 base 32 by hand (5x5 kernels): G projects 100 -> 8·8·256, then its
        // transposed convolutions 256->128 on 8x8, 128->64 on 16x16, 64->32 on 32x32
        // (window positions are those of the input grid), 32->3 on 64x64 (stride 1); D
        // 3->32 with 32x32 outputs, 32->64 16x16, 64->128 8x8, 128->256 4x4, then
        // 256·4·4 -> 1.
        let (g, d) = ModelPreset::Dcgan64.configs(Some(32));
        let cost = ArithmeticCost::of(&g, &d);
        let k2 = 25u128;
        let g_macs = 100 * 8 * 8 * 256
            + k2 * (8 * 8 * 256 * 128 + 16 * 16 * 128 * 64 + 32 * 32 * 64 * 32)
            + k2 * 64 * 64 * 32 * 3;
        let d_macs = k2
            * (32 * 32 * 3 * 32 + 16 * 16 * 32 * 64 + 8 * 8 * 64 * 128 + 4 * 4 * 128 * 256)
            + 256 * 4 * 4;
        assert_eq!(cost.generator_macs, g_macs);
        assert_eq!(cost.discriminator_macs, d_macs);
        assert_eq!(
            cost.training_flops_per_image(),
            2.0 * (3 * g_macs + 8 * d_macs) as f64
        );
        assert_eq!(cost.generation_flops_per_image(), 2.0 * g_macs as f64);
        // The article's model: about 55 GFLOP of useful work per image and step.
        let (g, d) = ModelPreset::Seed128.configs(Some(64));
        let flops = ArithmeticCost::of(&g, &d).training_flops_per_image();
        assert!((54.0e9..55.0e9).contains(&flops), "{flops:e}");
    }

    #[test]
    fn parameter_counts_equal_those_of_built_models() {
        let device = Default::default();
        let mut configs: Vec<TrainerConfig> =
            ModelPreset::ALL.iter().map(|&p| preset(p, 2, 1)).collect();
        configs.push(tiny_config());
        configs.push(stabilized_config());
        let mut odd = tiny_config();
        odd.generator.kernel_size = 3;
        odd.generator.image_channels = 1;
        odd.discriminator.image_channels = 1;
        odd.discriminator.strides = vec![2, 1, 2];
        odd.discriminator.first_batch_norm = true;
        configs.push(odd);
        for config in configs {
            let g: Generator<TestBackend> = config.generator.init(&device).unwrap();
            let d: Discriminator<TestBackend> = config.discriminator.init(&device).unwrap();
            let (gp, dp) = (
                generator_parameters(&config.generator),
                discriminator_parameters(&config.discriminator),
            );
            assert_eq!(gp.total, g.num_params() as u128, "G of {config:?}");
            assert_eq!(
                gp.trainable,
                g.trainable_params() as u128,
                "G of {config:?}"
            );
            assert_eq!(dp.total, d.num_params() as u128, "D of {config:?}");
            assert_eq!(
                dp.trainable,
                d.trainable_params() as u128,
                "D of {config:?}"
            );
            let estimate = MemoryEstimate::training_with_threads(&config, 2);
            assert_eq!(estimate.parameters, 4 * (gp.total + dp.total));
        }
        // The article's counts, without building its 41 million parameters.
        let seed = preset(ModelPreset::Seed128, 64, 64);
        assert_eq!(generator_parameters(&seed.generator).trainable, 24_034_819);
        assert_eq!(
            discriminator_parameters(&seed.discriminator).trainable,
            17_484_289
        );
    }

    #[test]
    fn adam_and_the_average_are_there_only_as_configured() {
        let config = preset(ModelPreset::Dcgan64, 16, 8);
        let trainable = generator_parameters(&config.generator).trainable
            + discriminator_parameters(&config.discriminator).trainable;
        let plain = MemoryEstimate::training_with_threads(&config, 2);
        assert_eq!(plain.adam, 2 * 4 * trainable);
        assert_eq!(plain.average, 0);
        assert!(!plain.to_string().contains("average"), "{plain}");

        let with_ema = config.with_ema(Some(EmaConfig { decay: 0.999 }));
        let averaged = MemoryEstimate::training_with_threads(&with_ema, 2);
        assert_eq!(
            averaged.average,
            4 * generator_parameters(&with_ema.generator).total
        );
        assert_eq!(averaged.total(), plain.total() + averaged.average);
        assert!(averaged.to_string().contains("average"), "{averaged}");
    }

    #[test]
    fn activations_scale_linearly_with_the_batch() {
        for config in [tiny_config(), stabilized_config()] {
            let at = |batch: usize| {
                MemoryEstimate::training_with_threads(&config.clone().with_batch_size(batch), 2)
            };
            let (one, two, eight) = (at(16), at(32), at(128));
            assert_eq!(one.phase, eight.phase);
            assert_eq!(two.activations, 2 * one.activations);
            assert_eq!(eight.activations, 8 * one.activations);
            // Nothing else grows with the batch but the fast path's buffers.
            assert_eq!(
                (eight.parameters, eight.adam, eight.average, eight.gradients),
                (one.parameters, one.adam, one.average, one.gradients)
            );
            assert!(eight.total() > one.total());
        }
    }

    #[test]
    fn the_stabilisers_cost_memory() {
        let plain = MemoryEstimate::training_with_threads(&tiny_config(), 2);
        let penalty = MemoryEstimate::training_with_threads(
            &tiny_config().with_gradient_penalty(Some(crate::GradientPenalty {
                kind: crate::PenaltyKind::R1,
                weight: 1.0,
            })),
            2,
        );
        let augmented = MemoryEstimate::training_with_threads(
            &tiny_config().with_augment(crate::Augment::ALL),
            2,
        );
        assert!(penalty.activations > plain.activations);
        assert!(augmented.activations > plain.activations);
    }

    #[test]
    fn absurd_configurations_neither_overflow_nor_panic() {
        let mut huge = preset(ModelPreset::Dcgan64, 65536, 64);
        let estimate = MemoryEstimate::training_with_threads(&huge, 2);
        // The weights alone: D's last convolution is 262,144 × 524,288 × 25 floats.
        assert!(estimate.total() > 1u128 << 40, "{estimate}");
        assert!(estimate.to_string().contains("TiB"), "{estimate}");

        huge.generator.image_size = 4096;
        huge.discriminator.image_size = 4096;
        huge.batch_size = 1_000_000;
        let estimate = MemoryEstimate::training_with_threads(&huge, 1024);
        assert!(estimate.total() > 1u128 << 60, "{estimate}");
        assert!(!estimate.fits(u64::MAX));
        let _ = MemoryEstimate::generation(&huge, usize::MAX, usize::MAX).to_string();

        // Nonsense that `validate` would refuse is still estimated without a panic.
        let mut nonsense = huge.clone().with_batch_size(usize::MAX);
        nonsense.generator.image_size = usize::MAX;
        nonsense.generator.base_channels = usize::MAX;
        nonsense.generator.latent_dim = usize::MAX;
        nonsense.generator.kernel_size = usize::MAX;
        nonsense.discriminator.image_size = 0;
        nonsense.discriminator.strides = vec![0, 7, usize::MAX];
        nonsense.discriminator.base_channels = usize::MAX;
        for threads in [0, usize::MAX] {
            let estimate = MemoryEstimate::training_with_threads(&nonsense, threads);
            assert_eq!(estimate.total(), u128::MAX);
            let _ = estimate.to_string();
            assert!(estimate.check(u64::MAX).is_err());
        }
        assert_eq!(format_bytes(u128::MAX).split(' ').nth(1), Some("YiB"));
    }

    #[test]
    fn what_fits_passes_and_what_does_not_is_refused_with_a_setting_that_fits() {
        let config = preset(ModelPreset::Dcgan64, 64, 64);
        let estimate = MemoryEstimate::training_with_threads(&config, 2);
        assert!(estimate.check(u64::MAX).is_ok());
        assert!(estimate.check(estimate.needed() as u64).is_ok());

        // Room for batches of 16, not 32: the batch size is halved twice.
        let at = |batch: usize| {
            MemoryEstimate::training_with_threads(&config.clone().with_batch_size(batch), 2)
        };
        let available = at(16).needed() as u64;
        assert!(!at(32).fits(available));
        let err = estimate.check(available).unwrap_err();
        let message = err.to_string();
        let Error::TooLarge {
            needed,
            available: reported,
            suggestion,
            ..
        } = &err
        else {
            panic!("{err}")
        };
        assert_eq!((*needed, *reported), (estimate.needed(), available));
        for figure in [estimate.needed(), available as u128] {
            assert!(message.contains(&format_bytes(figure)), "{message}");
        }
        assert!(message.contains("activations"), "{message}");
        assert_eq!(
            suggestion,
            &format!(
                "try --batch-size 16 (about {})",
                format_bytes(at(16).needed())
            )
        );

        // Too wide for any batch size: the width is halved too, and the result fits.
        let huge = preset(ModelPreset::Dcgan64, 65536, 64);
        let available = 8u64 << 30;
        let err = MemoryEstimate::training_with_threads(&huge, 2)
            .check(available)
            .unwrap_err();
        let Error::TooLarge { suggestion, .. } = &err else {
            panic!("{err}")
        };
        assert!(suggestion.contains("--base "), "{suggestion}");
        let flag = |name: &str| -> Option<usize> {
            let rest = suggestion.split(name).nth(1)?;
            rest.split_whitespace().next()?.parse().ok()
        };
        let base = flag("--base ").unwrap();
        let batch = flag("--batch-size ").unwrap_or(64);
        let mut smaller = huge.clone().with_batch_size(batch);
        smaller.generator.base_channels = base;
        smaller.discriminator.base_channels = base;
        assert!(MemoryEstimate::training_with_threads(&smaller, 2).fits(available));

        // Nothing fits in nothing.
        let err = estimate.check(0).unwrap_err().to_string();
        assert!(
            err.contains("--base 1 --batch-size 1 does not fit"),
            "{err}"
        );
    }

    #[test]
    fn generation_picks_a_batch_that_fits_and_refuses_grids_that_do_not() {
        // Drawing, not loading, is this one's peak.
        let config = preset(ModelPreset::Dcgan64, 16, 64);
        let at = |batch, kept| MemoryEstimate::generation(&config, batch, kept);
        assert_eq!((at(32, 0).phase, at(64, 0).phase), ("drawing", "drawing"));
        assert_eq!(at(64, 0).activations, 2 * at(32, 0).activations);
        assert!(at(32, 1024).activations > at(32, 0).activations);
        assert_eq!(at(1, 0).phase, "loading the checkpoint");
        let (batch, _) = MemoryEstimate::fit_generation(&config, 64, 0, u64::MAX).unwrap();
        assert_eq!(batch, 64);

        // Room for 8 images at a time, not 16.
        let available = at(8, 0).needed() as u64;
        assert!(!at(16, 0).fits(available));
        let (batch, estimate) = MemoryEstimate::fit_generation(&config, 64, 0, available).unwrap();
        assert_eq!((batch, &estimate), (8, &at(8, 0)));

        // Room for the model and one image at a time, but not for 1,024 pictures.
        let available = at(1, 0).needed() as u64;
        let err = MemoryEstimate::fit_generation(&config, 64, 1024, available).unwrap_err();
        let Error::TooLarge { suggestion, .. } = &err else {
            panic!("{err}")
        };
        let most: usize = suggestion
            .split("at most ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .unwrap_or_else(|| panic!("{suggestion}"))
            .parse()
            .unwrap();
        assert!(suggestion.contains("--grid") && suggestion.contains("-n"));
        assert!(at(1, most).fits(available) && !at(1, most + 1).fits(available));

        // Not even the model.
        let err = MemoryEstimate::fit_generation(&config, 64, 0, 1 << 20)
            .unwrap_err()
            .to_string();
        assert!(err.contains("more memory"), "{err}");
    }

    #[test]
    fn sizes_read_like_a_person_would_write_them() {
        assert_eq!(format_bytes(0), "0 B");
        assert_eq!(format_bytes(1023), "1023 B");
        assert_eq!(format_bytes(1536), "1.5 KiB");
        assert_eq!(format_bytes(14 << 20), "14 MiB");
        assert_eq!(format_bytes((12 << 30) / 10), "1.2 GiB");
        let estimate = MemoryEstimate::training_with_threads(&tiny_config(), 2);
        let text = estimate.to_string();
        assert!(
            text.starts_with(&format!("{}: parameters ", format_bytes(estimate.total()))),
            "{text}"
        );
        assert!(
            text.contains(", Adam ") && text.contains(", activations "),
            "{text}"
        );
    }
}
