//! Checkpoints that resume training bit-identically.
//!
//! One file holds everything: both networks (batch-norm running statistics included), both
//! Adam states, the step and epoch counters, the noise RNG state, the fixed preview noise,
//! the [`TrainerConfig`] and a free-form `extra` JSON value for the caller (the data
//! loader's position, log counters, ...). Tensors are stored in full precision: burn's
//! `CompactRecorder` rounds to f16, which would break exact resume.
//!
//! Layout: `CATGANCK` magic, format version (u32 LE), metadata length (u64 LE), metadata
//! JSON, payload length (u64 LE), payload (burn named-MessagePack record), CRC32 of
//! everything before it (u32 LE), `CKPTEND!`. Writes go to a temporary file in the same
//! folder, are flushed to disk, then renamed over the target (the `atomic-write-file`
//! crate, as for every file catgan replaces): a crash or a full disk mid-save leaves the
//! previous checkpoint intact.

use std::fs;
use std::io::Write;
use std::path::Path;

use burn::module::{AutodiffModule, Module};
use burn::optim::Optimizer;
use burn::record::{FullPrecisionSettings, NamedMpkBytesRecorder, Recorder};
use burn::tensor::backend::AutodiffBackend;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::generator::Generator;
use crate::precision::Precision;
use crate::trainer::{Trainer, TrainerConfig};

const MAGIC: &[u8; 8] = b"CATGANCK";
const TRAILER: &[u8; 8] = b"CKPTEND!";
/// The checkpoint format this version writes. It reads this one and version 1 (written
/// before the generator average existed: the payload then has no average).
pub const FORMAT_VERSION: u32 = 2;

/// The small, human-readable part of a checkpoint (readable without loading tensors).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointInfo {
    /// The run's configuration (fields added since the checkpoint was written take their
    /// defaults).
    #[serde(deserialize_with = "crate::trainer::deserialize_upgrading")]
    pub config: TrainerConfig,
    /// Training steps done.
    pub step: u64,
    /// The epoch counter.
    pub epoch: u64,
    /// The precision the networks computed in (absent in checkpoints written before
    /// bf16 existed: f32).
    #[serde(default)]
    pub precision: Precision,
    /// The caller's own state (loader position, counters, ...).
    pub extra: serde_json::Value,
    rng: ChaCha8Rng,
    preview_noise: Vec<f32>,
    /// G's loss at its latest update (absent before `d_steps` existed: not needed then).
    #[serde(default)]
    last_g_loss: Option<f32>,
}

type GeneratorRecord<B> = <Generator<B> as Module<B>>::Record;
type DiscriminatorRecord<B> = <crate::Discriminator<B> as Module<B>>::Record;
type AdamRecord<M, B> =
    <burn::optim::adaptor::OptimizerAdaptor<crate::adam::FusedAdam, M, B> as Optimizer<M, B>>::Record;

/// Format 1: both networks and both optimizers.
type PayloadV1<B> = (
    GeneratorRecord<B>,
    DiscriminatorRecord<B>,
    AdamRecord<Generator<B>, B>,
    AdamRecord<crate::Discriminator<B>, B>,
);

/// Format 2: format 1 and the generator average, if there is one.
type Payload<B> = (
    GeneratorRecord<B>,
    DiscriminatorRecord<B>,
    AdamRecord<Generator<B>, B>,
    AdamRecord<crate::Discriminator<B>, B>,
    Option<GeneratorRecord<B>>,
);

fn recorder() -> NamedMpkBytesRecorder<FullPrecisionSettings> {
    NamedMpkBytesRecorder::default()
}

impl<B: AutodiffBackend> Trainer<B> {
    /// Saves the whole training state to `path` atomically (see the module docs).
    ///
    /// Refuses (with [`Error::Checkpoint`]) once a non-finite loss has poisoned the trainer,
    /// so a good checkpoint is never replaced by a broken one.
    pub fn save_checkpoint(&self, path: &Path, extra: serde_json::Value) -> Result<()> {
        if self.poisoned {
            return Err(Error::Checkpoint {
                path: path.to_path_buf(),
                reason: "refusing to save: the last step produced a non-finite loss, so the \
                         weights in memory are broken; the previous checkpoint is kept"
                    .into(),
            });
        }
        let info = CheckpointInfo {
            config: self.config.clone(),
            step: self.step,
            epoch: self.epoch,
            precision: self.precision(),
            extra,
            rng: self.rng.clone(),
            preview_noise: self.preview_noise.clone(),
            last_g_loss: self.last_g_loss.is_finite().then_some(self.last_g_loss),
        };
        let average = self
            .ema
            .clone()
            .map(|average| Generator::<B>::from_inner(average).into_record());
        let payload: Payload<B> = (
            self.generator.clone().into_record(),
            self.discriminator.clone().into_record(),
            self.optim_g.to_record(),
            self.optim_d.to_record(),
            average,
        );
        let payload =
            Recorder::<B>::record(&recorder(), payload, ()).map_err(|e| Error::Checkpoint {
                path: path.to_path_buf(),
                reason: format!("could not serialise the training state: {e}"),
            })?;
        let meta = serde_json::to_vec(&info).expect("checkpoint metadata is always serialisable");
        write_atomically(path, &encode(&meta, &payload))
    }

    /// Restores a trainer saved by [`Trainer::save_checkpoint`], on `device`.
    ///
    /// Returns the trainer and the `extra` value given at save time. Continuing to train
    /// gives exactly the numbers the uninterrupted run would have given (on a deterministic
    /// backend such as flex).
    ///
    /// The networks compute in the precision the checkpoint was saved with; fails with
    /// [`Error::UnsupportedPrecision`] if `B` cannot (see
    /// [`Trainer::load_checkpoint_in`] to choose another).
    pub fn load_checkpoint(path: &Path, device: &B::Device) -> Result<(Self, serde_json::Value)> {
        Self::load_checkpoint_in(path, device, None)
    }

    /// [`Trainer::load_checkpoint`], computing in `precision` instead of the checkpoint's
    /// own if it is `Some` (the saved state is f32 in every precision).
    pub fn load_checkpoint_in(
        path: &Path,
        device: &B::Device,
        precision: Option<Precision>,
    ) -> Result<(Self, serde_json::Value)> {
        let (info, version, payload) = read_file(path)?;
        let precision = precision.unwrap_or(info.precision);
        precision.check_supported::<B>(device)?;
        let undecodable = |e: burn::record::RecorderError| {
            corrupt(path, format!("its tensors cannot be decoded ({e})"))
        };
        let (g, d, og, od, average): Payload<B> = if version == 1 {
            let (g, d, og, od): PayloadV1<B> =
                Recorder::<B>::load(&recorder(), payload, device).map_err(undecodable)?;
            (g, d, og, od, None)
        } else {
            Recorder::<B>::load(&recorder(), payload, device).map_err(undecodable)?
        };
        let mut trainer = Trainer::new(info.config.clone(), device).map_err(|e| {
            corrupt(
                path,
                format!("its configuration is not valid in this version ({e})"),
            )
        })?;
        trainer.ema = match (trainer.ema.take(), average) {
            (Some(fresh), Some(average)) => Some(
                Generator::<B>::from_inner(fresh)
                    .load_record(average)
                    .valid(),
            ),
            (Some(_), None) => {
                return Err(corrupt(
                    path,
                    "its configuration has a generator average but the file holds none".into(),
                ))
            }
            (None, _) => None,
        };
        trainer.generator = trainer.generator.load_record(g);
        trainer.discriminator = trainer.discriminator.load_record(d);
        trainer.optim_g = trainer.optim_g.load_record(og);
        trainer.optim_d = trainer.optim_d.load_record(od);
        trainer.rng = info.rng;
        trainer.preview_noise = info.preview_noise;
        trainer.step = info.step;
        trainer.epoch = info.epoch;
        trainer.last_g_loss = info.last_g_loss.unwrap_or(f32::NAN);
        trainer.set_precision(precision)?;
        Ok((trainer, info.extra))
    }
}

impl CheckpointInfo {
    /// Reads only the metadata of a checkpoint (fast: tensors are not decoded, though the
    /// checksum is verified).
    pub fn read(path: &Path) -> Result<Self> {
        read_file(path).map(|(info, _, _)| info)
    }

    /// The fixed preview latents, `[n, latent_dim]` row-major.
    pub fn preview_noise(&self) -> &[f32] {
        &self.preview_noise
    }
}

/// Loads the generator of a checkpoint to sample from, ready for inference on
/// `B::InnerBackend`: the average of its weights when the run kept one, else the
/// generator itself (see [`load_generator_with`] to choose).
///
/// It computes in f32 whatever precision it was trained in (the weights are f32; set
/// [`Generator::precision`] for bf16 inference).
pub fn load_generator<B: AutodiffBackend>(
    path: &Path,
    device: &B::Device,
) -> Result<(Generator<B::InnerBackend>, CheckpointInfo)> {
    load_generator_with::<B>(path, device, true)
}

/// [`load_generator`], taking the generator average only if `use_average` (and the run
/// kept one); `false` gives the raw generator.
pub fn load_generator_with<B: AutodiffBackend>(
    path: &Path,
    device: &B::Device,
    use_average: bool,
) -> Result<(Generator<B::InnerBackend>, CheckpointInfo)> {
    let (trainer, _) = Trainer::<B>::load_checkpoint_in(path, device, Some(Precision::F32))?;
    let info = CheckpointInfo::read(path)?;
    Ok((trainer.sampling_generator(use_average), info))
}

fn corrupt(path: &Path, reason: String) -> Error {
    Error::Checkpoint {
        path: path.to_path_buf(),
        reason,
    }
}

fn encode(meta: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(meta.len() + payload.len() + 48);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(meta.len() as u64).to_le_bytes());
    out.extend_from_slice(meta);
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(TRAILER);
    out
}

fn read_file(path: &Path) -> Result<(CheckpointInfo, u32, Vec<u8>)> {
    let bytes = fs::read(path).map_err(|cause| Error::Io {
        action: "reading checkpoint",
        path: path.to_path_buf(),
        cause,
    })?;
    decode(path, bytes)
}

fn decode(path: &Path, mut bytes: Vec<u8>) -> Result<(CheckpointInfo, u32, Vec<u8>)> {
    if bytes.len() < 8 || &bytes[..8] != MAGIC {
        return Err(corrupt(
            path,
            "it is not a catgan checkpoint (wrong magic bytes)".into(),
        ));
    }
    let truncated = || corrupt(path, "the file is truncated (an interrupted copy?)".into());
    if bytes.len() < 8 + 4 + 8 + 8 + 4 + 8 || &bytes[bytes.len() - 8..] != TRAILER {
        return Err(truncated());
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().unwrap());
    if !(1..=FORMAT_VERSION).contains(&version) {
        return Err(corrupt(
            path,
            format!(
                "format version {version}; this build reads versions 1 to {FORMAT_VERSION} \
                 (a newer catgan wrote it?)"
            ),
        ));
    }
    let body_end = bytes.len() - 12;
    let stored_crc = u32::from_le_bytes(bytes[body_end..body_end + 4].try_into().unwrap());
    if crc32fast::hash(&bytes[..body_end]) != stored_crc {
        return Err(corrupt(
            path,
            "checksum mismatch: the file is damaged".into(),
        ));
    }
    let read_len = |at: usize| -> Result<usize> {
        bytes
            .get(at..at + 8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap()) as usize)
            .ok_or_else(truncated)
    };
    let meta_len = read_len(12)?;
    let meta_end = 20usize
        .checked_add(meta_len)
        .filter(|&e| e + 8 <= body_end)
        .ok_or_else(truncated)?;
    let payload_len = read_len(meta_end)?;
    let payload_start = meta_end + 8;
    if payload_start.checked_add(payload_len) != Some(body_end) {
        return Err(truncated());
    }
    let info: CheckpointInfo = serde_json::from_slice(&bytes[20..meta_end])
        .map_err(|e| corrupt(path, format!("its metadata cannot be read ({e})")))?;
    bytes.truncate(body_end);
    let payload = bytes.split_off(payload_start);
    Ok((info, version, payload))
}

/// Writes `bytes` to `path` atomically with the `atomic-write-file` crate, the way every
/// catgan crate replaces files (`dcgan_data::atomic`, which this crate does not depend
/// on): a temporary file in the same folder (on Linux an `O_TMPFILE`, which a killed
/// process cannot leave behind), fsynced, renamed over `path`, the folder fsynced.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let io = |action| {
        move |cause| Error::Io {
            action,
            path: path.to_path_buf(),
            cause,
        }
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    fs::create_dir_all(dir).map_err(io("creating the folder of"))?;
    remove_stale_temporaries(dir);
    let result = if path.is_dir() {
        // The rename would fail after the temporary file got its name (and leave it).
        Err(std::io::Error::new(
            std::io::ErrorKind::IsADirectory,
            "a folder is in the way",
        ))
    } else {
        // Dropped uncommitted (on an error), the temporary file is discarded.
        atomic_write_file::AtomicWriteFile::open(path).and_then(|mut file| {
            file.write_all(bytes)?;
            file.commit()
        })
    };
    result.map_err(io("writing checkpoint"))
}

/// Removes the temporary files that older versions' saves, killed mid-write, left in `dir`
/// (named `.NAME.tmp-PID`; `catgan::run_dir` still names its link temporaries so), where
/// their process no longer runs. Only where `/proc` tells which processes run (Linux);
/// elsewhere they stay.
fn remove_stale_temporaries(dir: &Path) {
    let proc = Path::new("/proc");
    if !proc.join("self").exists() {
        return;
    }
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix('.')
            .and_then(|n| n.rsplit_once(".tmp-"))
            .map(|(_, pid)| pid)
            .filter(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let is_file = entry.file_type().is_ok_and(|t| t.is_file());
        if is_file && !proc.join(pid).exists() {
            let _ = fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TestAutodiffBackend;
    use burn::prelude::*;

    use crate::test_util::{random_batch, stabilized_config, tiny_config};

    type B = TestAutodiffBackend;

    fn weights(t: &Trainer<B>) -> Vec<f32> {
        let mut all = Vec::new();
        let d_statistics = t.discriminator.blocks[1]
            .norm
            .as_ref()
            .map(|norm| norm.running_var.value().into_data());
        let spectral_vector = t.discriminator.blocks[0]
            .spectral
            .as_ref()
            .map(|sn| sn.u.value().into_data());
        for p in [
            t.generator.project.weight.val().into_data(),
            t.generator.to_image.weight.val().into_data(),
            t.discriminator.classify.weight.val().into_data(),
        ]
        .into_iter()
        .chain(d_statistics)
        .chain(spectral_vector)
        {
            all.extend(p.to_vec::<f32>().unwrap());
        }
        all
    }

    #[test]
    fn resume_is_bit_identical() {
        resumes_bit_identically(tiny_config(), 2);
    }

    /// Every stabiliser at once, saved after an odd step (mid-way through a D-steps
    /// cycle): the spectral-norm vectors, the generator average, the augmentation draws
    /// and the pending G loss all come back.
    #[test]
    fn resume_with_every_stabilizer_is_bit_identical() {
        resumes_bit_identically(stabilized_config(), 3);
        resumes_bit_identically(stabilized_config(), 2);
    }

    /// Each stabiliser on its own, and every loss.
    #[test]
    fn resume_with_each_stabilizer_is_bit_identical() {
        use crate::{Augment, EmaConfig, GanLoss, GradientPenalty, PenaltyKind};
        let mut configs: Vec<TrainerConfig> = GanLoss::ALL
            .into_iter()
            .map(|loss| tiny_config().with_loss(loss))
            .collect();
        for kind in [PenaltyKind::Wgan, PenaltyKind::R1] {
            configs.push(
                tiny_config().with_gradient_penalty(Some(GradientPenalty { kind, weight: 1.0 })),
            );
        }
        configs.push(tiny_config().with_d_steps(3));
        configs.push(tiny_config().with_ema(Some(EmaConfig { decay: 0.5 })));
        configs.push(tiny_config().with_augment(Augment::ALL));
        let mut spectral_d = tiny_config();
        spectral_d.discriminator.spectral_norm = true;
        configs.push(spectral_d);
        let mut spectral_g = tiny_config();
        spectral_g.generator.spectral_norm = true;
        configs.push(spectral_g);
        for config in configs {
            resumes_bit_identically(config, 2);
        }
    }

    fn average_weights(t: &Trainer<B>) -> Vec<f32> {
        let average = t.average_generator().expect("the run keeps an average");
        let mut all: Vec<f32> = average.project.weight.val().into_data().to_vec().unwrap();
        all.extend(
            average.blocks[0]
                .norm
                .running_var
                .value()
                .into_data()
                .to_vec::<f32>()
                .unwrap(),
        );
        all
    }

    fn resumes_bit_identically(config: TrainerConfig, saved_after: u64) {
        let device = Default::default();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ckpt.catgan");
        let steps = 5;

        let mut straight = Trainer::<B>::new(config.clone(), &device).unwrap();
        let straight_metrics: Vec<_> = (0..steps)
            .map(|i| straight.step(random_batch(&device, i)).unwrap())
            .collect();

        let mut first = Trainer::<B>::new(config.clone(), &device).unwrap();
        let mut resumed_metrics: Vec<_> = (0..saved_after)
            .map(|i| first.step(random_batch(&device, i)).unwrap())
            .collect();
        first.epoch = 3;
        first
            .save_checkpoint(&path, serde_json::json!({"position": 2}))
            .unwrap();
        drop(first);
        let (mut second, extra) = Trainer::<B>::load_checkpoint(&path, &device).unwrap();
        assert_eq!(extra, serde_json::json!({"position": 2}));
        assert_eq!((second.steps_done(), second.epoch), (saved_after, 3));
        assert_eq!(second.config(), &config);
        resumed_metrics
            .extend((saved_after..steps).map(|i| second.step(random_batch(&device, i)).unwrap()));

        assert_eq!(straight_metrics, resumed_metrics);
        assert_eq!(weights(&straight), weights(&second));
        assert_eq!(straight.preview_noise(), second.preview_noise());
        if config.ema.is_some() {
            assert_eq!(average_weights(&straight), average_weights(&second));
        }
    }

    /// A format-1 file (before the generator average and the stabilisers): its payload has
    /// four records and its configuration lacks the new fields. It loads with them at
    /// their defaults and trains on exactly as a current checkpoint of the same run.
    #[test]
    fn format_1_checkpoints_still_load() {
        let device = Default::default();
        let dir = tempfile::tempdir().unwrap();
        let mut t = Trainer::<B>::new(tiny_config(), &device).unwrap();
        t.step(random_batch(&device, 0)).unwrap();
        let current = dir.path().join("current.catgan");
        t.save_checkpoint(&current, serde_json::Value::Null)
            .unwrap();

        let mut info = serde_json::to_value(CheckpointInfo::read(&current).unwrap()).unwrap();
        let config = info["config"].as_object_mut().unwrap();
        for key in ["loss", "gradient_penalty", "d_steps", "ema", "augment"] {
            assert!(config.remove(key).is_some(), "{key}");
        }
        for net in ["generator", "discriminator"] {
            let net = config[net].as_object_mut().unwrap();
            for key in ["spectral_norm", "fast_kernels"] {
                assert!(net.remove(key).is_some(), "{key}");
            }
        }
        info.as_object_mut().unwrap().remove("last_g_loss");
        let payload: PayloadV1<B> = (
            t.generator.clone().into_record(),
            t.discriminator.clone().into_record(),
            t.optim_g.to_record(),
            t.optim_d.to_record(),
        );
        let payload = Recorder::<B>::record(&recorder(), payload, ()).unwrap();
        let mut bytes = encode(&serde_json::to_vec(&info).unwrap(), &payload);
        bytes[8..12].copy_from_slice(&1u32.to_le_bytes());
        // The checksum covers the version: recompute it.
        let end = bytes.len() - 12;
        let crc = crc32fast::hash(&bytes[..end]);
        bytes[end..end + 4].copy_from_slice(&crc.to_le_bytes());
        let old = dir.path().join("old.catgan");
        fs::write(&old, bytes).unwrap();

        let (mut from_old, _) = Trainer::<B>::load_checkpoint(&old, &device).unwrap();
        let (mut from_current, _) = Trainer::<B>::load_checkpoint(&current, &device).unwrap();
        assert_eq!(from_old.config(), &tiny_config());
        assert_eq!(
            from_old.step(random_batch(&device, 1)).unwrap(),
            from_current.step(random_batch(&device, 1)).unwrap()
        );
    }

    #[test]
    fn metadata_is_readable_alone() {
        let device = Default::default();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.catgan");
        let mut t = Trainer::<B>::new(tiny_config(), &device).unwrap();
        t.step(random_batch(&device, 0)).unwrap();
        t.save_checkpoint(&path, serde_json::Value::Null).unwrap();
        let info = CheckpointInfo::read(&path).unwrap();
        assert_eq!(info.step, 1);
        assert_eq!(info.config, tiny_config());
        assert_eq!(info.preview_noise().len(), 64 * 8);
    }

    #[test]
    fn damaged_files_give_clear_errors_and_never_panic() {
        let device = Default::default();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.catgan");
        Trainer::<B>::new(tiny_config(), &device)
            .unwrap()
            .save_checkpoint(&path, serde_json::Value::Null)
            .unwrap();
        let good = fs::read(&path).unwrap();

        let cases: Vec<(&str, Vec<u8>)> = vec![
            (
                "not a catgan checkpoint",
                b"hello world, not a checkpoint".to_vec(),
            ),
            ("truncated", good[..good.len() / 2].to_vec()),
            ("checksum", {
                let mut b = good.clone();
                let mid = b.len() / 2;
                b[mid] ^= 0xff;
                b
            }),
            ("not a catgan checkpoint", Vec::new()),
        ];
        for (expected, bytes) in cases {
            let bad = dir.path().join("bad.catgan");
            fs::write(&bad, bytes).unwrap();
            let err = Trainer::<B>::load_checkpoint(&bad, &device)
                .err()
                .expect("must fail")
                .to_string();
            assert!(
                err.contains(expected) && err.contains("bad.catgan"),
                "{err}"
            );
        }
        let missing = Trainer::<B>::load_checkpoint(&dir.path().join("nope.catgan"), &device)
            .err()
            .unwrap()
            .to_string();
        assert!(missing.contains("nope.catgan"), "{missing}");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn temporaries_of_dead_saves_are_removed_at_the_next_save() {
        let device = Default::default();
        let dir = tempfile::tempdir().unwrap();
        // A process id that cannot run (above Linux's pid_max limit of 2^22).
        let stale = dir.path().join(".epoch-0003.catgan.tmp-99999999");
        let live = dir
            .path()
            .join(format!(".epoch-0004.catgan.tmp-{}", std::process::id()));
        let unrelated = dir.path().join(".notes.tmp-x");
        for path in [&stale, &live, &unrelated] {
            fs::write(path, b"partial").unwrap();
        }
        Trainer::<B>::new(tiny_config(), &device)
            .unwrap()
            .save_checkpoint(
                &dir.path().join("epoch-0005.catgan"),
                serde_json::Value::Null,
            )
            .unwrap();
        assert!(!stale.exists());
        assert!(live.exists() && unrelated.exists());
    }

    #[test]
    fn a_failed_save_keeps_the_previous_checkpoint() {
        let device = Default::default();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.catgan");
        let mut t = Trainer::<B>::new(tiny_config(), &device).unwrap();
        t.save_checkpoint(&path, serde_json::Value::Null).unwrap();
        let before = fs::read(&path).unwrap();

        // A poisoned trainer refuses to save.
        let nan = Tensor::<B, 4>::full([4, 3, 32, 32], f32::NAN, &device);
        assert!(t.step(nan).is_err());
        let err = t
            .save_checkpoint(&path, serde_json::Value::Null)
            .unwrap_err();
        assert!(err.to_string().contains("non-finite"), "{err}");
        assert_eq!(fs::read(&path).unwrap(), before);

        // A write that cannot finish (the target is a folder) leaves no temporary file
        // (hidden, whatever its name) and no damage.
        let blocked = dir.path().join("blocked");
        fs::create_dir(&blocked).unwrap();
        fs::write(blocked.join("keep"), b"x").unwrap();
        let fresh = Trainer::<B>::new(tiny_config(), &device).unwrap();
        assert!(fresh
            .save_checkpoint(&blocked, serde_json::Value::Null)
            .is_err());
        assert_eq!(fs::read(blocked.join("keep")).unwrap(), b"x");
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}
