//! Every default of a new training run that is not the model's own, in one place: what
//! `cats train` picks when a flag is not given, and why. The model and optimiser defaults
//! (the article's: batch 64, lr_D 5e-5, lr_G 2e-4, β₁ 0.5, label 0.9) are
//! [`TrainerConfig`]'s; `cats train --help` shows both, and a
//! test checks that the help text names these values.

use dcgan_core::{ModelPreset, TrainerConfig};

use crate::backend::BackendKind;

/// Preview grids every this many steps.
pub const SAMPLE_EVERY: u64 = 100;
/// Epoch checkpoints kept (plus `latest` and the last good one).
pub const KEEP_CHECKPOINTS: usize = 3;
/// Checkpoints about every this many steps (at epoch ends), unless `--checkpoint-every`.
pub const CHECKPOINT_STEPS: u64 = 100;
/// Epochs trained when neither steps nor epochs are given.
pub const EPOCHS: u64 = 25;

/// The demo on the built-in cats: small and quick on a 2-core CPU.
pub const DEMO_BASE: usize = 16;
/// The demo's batch.
pub const DEMO_BATCH: usize = 16;
/// The demo's length.
pub const DEMO_STEPS: u64 = 300;
/// The demo's preview interval.
pub const DEMO_SAMPLE_EVERY: u64 = 50;
/// 16 photos are learned faster with PyTorch DCGAN's equal learning rates than with the
/// seed's slow discriminator (5e-5); measured on the demo, see README.
pub const DEMO_LR: f64 = 2e-4;

/// On a CPU backend, `cats train --data DIR` without size flags trains the README's 64 px
/// recipe: width 16, batch 32. Measured on 2 cores (12 minutes each, docs/quality.md): it
/// draws recognisable cat faces where the article's width 64, batch 64 and lr_D 5e-5
/// manage 112 steps of speckle.
pub const CPU_BASE: usize = 16;
/// The CPU recipe's batch.
pub const CPU_BATCH: usize = 32;
/// Both learning rates of that recipe with the generator average (the default): the
/// average scored FID 133 at 4e-4 where it scored 169 at 2e-4 after 1,500 steps (two
/// seeds), and 85.5 where 98.0 after 4,000 (docs/quality.md).
pub const CPU_LR: f64 = 4e-4;
/// ... and without it (`--no-ema`): the raw generator is noisier at 4e-4 (FID 192 and 240
/// where 2e-4 gave 202 and 215), so the raw recipe keeps 2e-4.
pub const CPU_LR_NO_EMA: f64 = 2e-4;

/// The generator average kept by default on real data: at equal steps it scored FID 169
/// where the raw generator scored 208 on the cat faces (two seeds, docs/quality.md), and
/// it costs one blend of G's weights per step.
pub const EMA_DECAY: f64 = 0.999;

/// `--dry-run`: steps of a tiny model.
pub const DRY_RUN_STEPS: u64 = 2;
/// `--dry-run`: the tiny model's width and batch.
pub const DRY_RUN_SIZE: usize = 4;

/// What the defaults depend on.
#[derive(Debug, Clone, Copy)]
pub struct Situation {
    /// Training on the built-in cats (no `--data`).
    pub demo: bool,
    /// `--dry-run`.
    pub dry_run: bool,
    /// The user chose a size (`--preset`, `--image-size`, `--base` or `--batch-size`).
    pub sized_by_user: bool,
    /// `--no-ema`.
    pub no_ema: bool,
    /// The model preset in use.
    pub preset: ModelPreset,
    /// The backend it trains on.
    pub backend: BackendKind,
}

/// Sizes and rates picked for the situation (`None`: the preset's or the trainer's own).
#[derive(Debug, Clone, PartialEq)]
pub struct MachineDefaults {
    /// The width (`--base`).
    pub base: Option<usize>,
    /// The batch (`--batch-size`).
    pub batch: usize,
    /// Both learning rates.
    pub lr: Option<f64>,
    /// Why, when the machine decided (printed).
    pub why: Option<String>,
}

/// Sizes that fit the machine when the user gave none: the demo's on the built-in cats,
/// the README recipe on a CPU, the article's on a GPU.
pub fn machine_defaults(situation: &Situation) -> MachineDefaults {
    let Situation {
        demo,
        dry_run,
        sized_by_user,
        no_ema,
        preset,
        backend,
    } = *situation;
    if dry_run {
        return MachineDefaults {
            base: Some(DRY_RUN_SIZE),
            batch: DRY_RUN_SIZE,
            lr: None,
            why: None,
        };
    }
    if demo {
        return MachineDefaults {
            base: (preset == ModelPreset::Dcgan64).then_some(DEMO_BASE),
            batch: DEMO_BATCH,
            lr: Some(DEMO_LR),
            why: None,
        };
    }
    if sized_by_user || backend.is_gpu() {
        let (g, d) = preset.configs(None);
        let article = TrainerConfig::new(g, d);
        let why = (!sized_by_user).then(|| {
            format!(
                "defaults for a GPU ({backend}): {preset}, the article's width {}, batch {}, \
                 lr_D {:e} / lr_G {:e}",
                article.discriminator.base_channels, article.batch_size, article.lr_d, article.lr_g
            )
        });
        return MachineDefaults {
            base: None,
            batch: article.batch_size,
            lr: None,
            why,
        };
    }
    let lr = if no_ema { CPU_LR_NO_EMA } else { CPU_LR };
    MachineDefaults {
        base: Some(CPU_BASE),
        batch: CPU_BATCH,
        lr: Some(lr),
        why: Some(format!(
            "defaults for a CPU ({backend}): {preset}, width {CPU_BASE}, batch {CPU_BATCH}, \
             lr {lr:e} for both: a model that learns cat faces in minutes on a few cores \
             (the article's width 64 needs a GPU); --base, --batch-size, --preset choose yourself"
        )),
    }
}

/// The generator average kept unless `--ema`/`--no-ema` say otherwise: on real data, but
/// not for the article's exact model (`seed128`), the demo or a dry run.
pub fn default_ema(situation: &Situation) -> Option<f64> {
    (!situation.demo && !situation.dry_run && situation.preset != ModelPreset::Seed128)
        .then_some(EMA_DECAY)
}

/// Preview interval: every step in a dry run, more often in the short demo.
pub fn sample_every(situation: &Situation) -> u64 {
    if situation.dry_run {
        1
    } else if situation.demo {
        DEMO_SAMPLE_EVERY
    } else {
        SAMPLE_EVERY
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn situation() -> Situation {
        Situation {
            demo: false,
            dry_run: false,
            sized_by_user: false,
            no_ema: false,
            preset: ModelPreset::Dcgan64,
            backend: BackendKind::Flex,
        }
    }

    #[test]
    fn a_cpu_gets_the_readme_recipe_and_a_gpu_the_article() {
        let cpu = machine_defaults(&situation());
        assert_eq!((cpu.base, cpu.batch, cpu.lr), (Some(16), 32, Some(4e-4)));
        assert!(cpu.why.unwrap().contains("CPU"));
        let raw = machine_defaults(&Situation {
            no_ema: true,
            ..situation()
        });
        assert_eq!(raw.lr, Some(2e-4));
        let gpu = machine_defaults(&Situation {
            backend: BackendKind::Cuda,
            ..situation()
        });
        assert_eq!((gpu.base, gpu.batch, gpu.lr), (None, 64, None));
        assert!(gpu.why.unwrap().contains("GPU"));
        // A size flag means the user chose: nothing is printed, the article's batch stays.
        let chosen = machine_defaults(&Situation {
            sized_by_user: true,
            ..situation()
        });
        assert_eq!((chosen.base, chosen.batch, chosen.why), (None, 64, None));
    }

    #[test]
    fn the_demo_and_the_dry_run_are_small_and_keep_no_average() {
        let demo = Situation {
            demo: true,
            ..situation()
        };
        assert_eq!(machine_defaults(&demo).batch, DEMO_BATCH);
        assert_eq!(sample_every(&demo), DEMO_SAMPLE_EVERY);
        assert_eq!(default_ema(&demo), None);
        let dry = Situation {
            dry_run: true,
            ..situation()
        };
        assert_eq!(machine_defaults(&dry).base, Some(DRY_RUN_SIZE));
        assert_eq!(default_ema(&dry), None);
        assert_eq!(default_ema(&situation()), Some(EMA_DECAY));
        let article = Situation {
            preset: ModelPreset::Seed128,
            ..situation()
        };
        assert_eq!(default_ema(&article), None);
    }
}
