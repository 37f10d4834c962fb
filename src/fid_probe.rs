//! FID measured during training: the Inception network and the reference statistics of a
//! run, loaded once, then one measurement per scheduled epoch.

use std::path::Path;

use burn::prelude::Backend;

use crate::progress::DataProgress;
use crate::run_config::FidSchedule;
use crate::train::TrainError;

/// FID measurement state of a run: the Inception network and the reference statistics.
pub(crate) struct FidProbe<B: Backend> {
    pub(crate) schedule: FidSchedule,
    evaluator: dcgan_metrics::FidEvaluator<B>,
    reference: dcgan_metrics::ReferenceStats,
    /// Computed from the image folder now: to be kept in the run folder.
    computed: bool,
}

impl<B: Backend> FidProbe<B> {
    /// Loads the network and the reference statistics: from the schedule's statistics
    /// file, from `cached` (kept in the run folder, if made from the same reference), or
    /// computed from the image folder (and then saved to `cached` once the run folder is
    /// ours, see [`FidProbe::keep`]).
    pub(crate) fn open(
        schedule: &FidSchedule,
        cached: &Path,
        strict: bool,
        device: &B::Device,
    ) -> Result<Self, TrainError> {
        let evaluator =
            dcgan_metrics::FidEvaluator::<B>::load(schedule.weights.as_deref(), device)?;
        let source = schedule.reference.display().to_string();
        let from_cache = if schedule.reference.is_file() {
            Some(dcgan_metrics::ReferenceStats::load(&schedule.reference)?)
        } else if cached.is_file() {
            // A resumed run may have been given another --fid-reference since.
            dcgan_metrics::ReferenceStats::load(cached)
                .ok()
                .filter(|stats| stats.source == source)
        } else {
            None
        };
        let computed = from_cache.is_none();
        let reference = match from_cache {
            Some(reference) => reference,
            None => {
                let (reference, report) = dcgan_metrics::ReferenceStats::compute_from_folder(
                    &evaluator,
                    &schedule.reference,
                    true,
                    &dcgan_metrics::FolderOptions::new().with_strict(strict),
                    &DataProgress::new(),
                )?;
                for note in report.notes() {
                    eprintln!("note: {note}");
                }
                reference
            }
        };
        Ok(FidProbe {
            schedule: schedule.clone(),
            evaluator,
            reference,
            computed,
        })
    }

    /// Saves freshly computed reference statistics to `cached`.
    pub(crate) fn keep(&self, cached: &Path) -> Result<(), TrainError> {
        if self.computed {
            self.reference.save(cached)?;
        }
        Ok(())
    }

    /// FID of `samples` fresh images from `generator` (fixed latents: comparable over time).
    pub(crate) fn measure(
        &self,
        generator: &dcgan_core::Generator<B>,
        latent: dcgan_core::LatentDistribution,
    ) -> Result<f64, TrainError> {
        use rand::SeedableRng;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0xF1D);
        let dim = generator.latent_dim();
        let device = generator.project.weight.device();
        let n = self.schedule.samples;
        let batch = self.evaluator.batch_size().max(1);
        let batches = (0..n).step_by(batch).map(|start| {
            let count = batch.min(n - start);
            generator.forward(latent.tensor::<B>(count, dim, &mut rng, &device))
        });
        let scores =
            self.evaluator
                .evaluate_generator_images(batches, n, &self.reference, None, &())?;
        Ok(scores.fid)
    }
}
