//! The [`Loader`]: shuffled, optionally flipped NCHW batches on a burn device, prefetched on a
//! background thread, resumable exactly from a [`LoaderPosition`].
//!
//! # Determinism
//! Everything random is a pure function of `(seed, epoch, position in the epoch)`:
//! - the epoch's order is a Fisher–Yates shuffle driven by ChaCha8 keyed by `seed` (domain
//!   "shuffle") on stream `epoch` ([`epoch_order`]);
//! - the flip of the image at position `p` is bit 0 of the `p`-th `u32` of ChaCha8 keyed by
//!   `seed` (domain "hflip") on stream `epoch` ([`epoch_flips`]).
//!
//! The algorithms are written out here (not `rand`'s `shuffle`), so the order can only change
//! if this file changes; a test pins the first permutation. A loader re-created at a saved
//! position therefore yields bit-identical batches.
//!
//! # Epochs and steps
//! A position always points at the start of the *next* batch. With `drop_last` (the
//! default), an epoch has `len / batch_size` batches and the remainder is not used in that
//! epoch (the next epoch's shuffle gives every image its chances); without it, the last
//! batch of an epoch is smaller.

use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use burn::config::Config;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::dataset::ImageDataset;
use crate::error::Error;
use crate::transform;

/// Where a loader stands: the next batch starts at image `index` of epoch `epoch`'s order,
/// for the shuffle seed `seed`. Save it in a checkpoint; [`Loader::new_at`] resumes from it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LoaderPosition {
    /// Seed of the shuffles and flips.
    pub seed: u64,
    /// Epoch, from 0.
    pub epoch: u64,
    /// Images of this epoch's order already consumed.
    pub index: u64,
}

impl LoaderPosition {
    /// The start of epoch 0 for `seed`.
    pub fn start(seed: u64) -> Self {
        LoaderPosition {
            seed,
            epoch: 0,
            index: 0,
        }
    }
}

impl std::fmt::Display for LoaderPosition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "seed {}, epoch {}, image {}",
            self.seed, self.epoch, self.index
        )
    }
}

/// How batches are drawn.
#[derive(Config, Debug)]
pub struct LoaderConfig {
    /// Images per batch.
    pub batch_size: usize,
    /// Seed of the per-epoch shuffles and flips.
    #[config(default = 0)]
    pub seed: u64,
    /// Shuffle each epoch (otherwise: dataset order).
    #[config(default = true)]
    pub shuffle: bool,
    /// Drop each epoch's last, incomplete batch.
    #[config(default = true)]
    pub drop_last: bool,
    /// Mirror each image left–right with probability 1/2.
    #[config(default = false)]
    pub flip: bool,
    /// Batches prepared ahead on a background thread (0: prepare on the caller's thread).
    #[config(default = 4)]
    pub prefetch: usize,
}

/// One batch on the device.
#[derive(Debug)]
pub struct Batch<B: Backend> {
    /// Images, `[batch, 3, size, size]`, values in [−1, 1], channels R, G, B.
    pub images: Tensor<B, 4>,
    /// Dataset index of each image, in batch order.
    pub indices: Vec<u32>,
    /// Whether each image was mirrored.
    pub flipped: Vec<bool>,
    /// Position at which this batch started.
    pub position: LoaderPosition,
    /// Position of the next batch: save this with the weights trained on this batch.
    pub next: LoaderPosition,
    /// Global step number of this batch (0-based, counting from epoch 0).
    pub step: u64,
    /// Whether this is the last batch of its epoch.
    pub epoch_end: bool,
}

const SHUFFLE_DOMAIN: &[u8; 8] = b"shuffle\0";
const FLIP_DOMAIN: &[u8; 8] = b"hflip\0\0\0";

fn rng(seed: u64, domain: &[u8; 8], epoch: u64) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(domain);
    let mut rng = ChaCha8Rng::from_seed(key);
    rng.set_stream(epoch);
    rng
}

/// Uniform integer in `0..bound` (Lemire's multiply-and-reject; `bound > 0`).
fn below(rng: &mut ChaCha8Rng, bound: u64) -> u64 {
    let threshold = bound.wrapping_neg() % bound;
    loop {
        let m = u128::from(rng.next_u64()) * u128::from(bound);
        if (m as u64) >= threshold {
            return (m >> 64) as u64;
        }
    }
}

/// The order of dataset indices in `epoch` (identity if `!shuffle`).
///
/// ```
/// use dcgan_data::batcher::epoch_order;
/// assert_eq!(epoch_order(5, 42, 3, true), epoch_order(5, 42, 3, true));
/// assert_ne!(epoch_order(50, 42, 3, true), epoch_order(50, 42, 4, true));
/// assert_eq!(epoch_order(3, 42, 3, false), vec![0, 1, 2]);
/// ```
pub fn epoch_order(len: usize, seed: u64, epoch: u64, shuffle: bool) -> Vec<u32> {
    let mut order: Vec<u32> = (0..len as u32).collect();
    if shuffle && len > 1 {
        let mut rng = rng(seed, SHUFFLE_DOMAIN, epoch);
        for i in (1..len).rev() {
            let j = below(&mut rng, i as u64 + 1) as usize;
            order.swap(i, j);
        }
    }
    order
}

/// Whether the image at each position of `epoch` is mirrored.
pub fn epoch_flips(len: usize, seed: u64, epoch: u64) -> Vec<bool> {
    let mut rng = rng(seed, FLIP_DOMAIN, epoch);
    (0..len).map(|_| rng.next_u32() & 1 == 1).collect()
}

/// A batch prepared on the CPU, before it is moved to the device.
struct HostBatch {
    data: Vec<f32>,
    indices: Vec<u32>,
    flipped: Vec<bool>,
    position: LoaderPosition,
    next: LoaderPosition,
    epoch_end: bool,
}

/// The deterministic batch sequence, independent of threads.
struct Plan {
    dataset: Arc<ImageDataset>,
    batch_size: usize,
    shuffle: bool,
    drop_last: bool,
    flip: bool,
    /// Cached order and flips of one epoch.
    epoch: Option<(u64, Vec<u32>, Vec<bool>)>,
}

impl Plan {
    fn len(&self) -> u64 {
        self.dataset.len() as u64
    }

    /// Moves a position that points past the last batch of its epoch to the next epoch.
    fn normalize(&self, mut p: LoaderPosition) -> LoaderPosition {
        let exhausted = if self.drop_last {
            p.index + self.batch_size as u64 > self.len()
        } else {
            p.index >= self.len()
        };
        if exhausted {
            p.epoch += 1;
            p.index = 0;
        }
        p
    }

    fn steps_per_epoch(&self) -> u64 {
        let (len, b) = (self.len(), self.batch_size as u64);
        if self.drop_last {
            len / b
        } else {
            len.div_ceil(b)
        }
    }

    fn make(&mut self, position: LoaderPosition) -> HostBatch {
        let len = self.dataset.len();
        if self.epoch.as_ref().map(|e| e.0) != Some(position.epoch) {
            let order = epoch_order(len, position.seed, position.epoch, self.shuffle);
            let flips = if self.flip {
                epoch_flips(len, position.seed, position.epoch)
            } else {
                vec![false; len]
            };
            self.epoch = Some((position.epoch, order, flips));
        }
        let (_, order, flips) = self.epoch.as_ref().expect("just set");
        let start = position.index as usize;
        let end = (start + self.batch_size).min(len);
        let size = self.dataset.image_size() as usize;
        let item = 3 * size * size;
        let mut data = vec![0f32; (end - start) * item];
        for (k, out) in data.chunks_exact_mut(item).enumerate() {
            let idx = order[start + k] as usize;
            transform::write_chw(self.dataset.image(idx), size, flips[start + k], out);
        }
        let next = self.normalize(LoaderPosition {
            index: end as u64,
            ..position
        });
        HostBatch {
            data,
            indices: order[start..end].to_vec(),
            flipped: flips[start..end].to_vec(),
            position,
            next,
            epoch_end: next.epoch != position.epoch,
        }
    }
}

enum Source {
    /// Batches made on the caller's thread.
    Inline(Plan),
    /// Batches made ahead by a background thread.
    Prefetch {
        rx: Option<Receiver<HostBatch>>,
        handle: Option<JoinHandle<()>>,
    },
}

/// Endless, deterministic batches of an [`ImageDataset`] on a burn device.
///
/// ```
/// use burn::backend::Flex;
/// use dcgan_data::{ImageDataset, Loader, LoaderConfig};
/// let dataset = ImageDataset::from_pixels(2, vec![255u8; 5 * 12]).unwrap(); // 5 white 2x2 images
/// let config = LoaderConfig::new(2).with_seed(7);
/// let mut loader = Loader::<Flex>::new(dataset, &config, Default::default()).unwrap();
/// assert_eq!(loader.steps_per_epoch(), 2); // 5 images, batches of 2, drop_last
/// let batch = loader.next_batch().unwrap();
/// assert_eq!(batch.images.dims(), [2, 3, 2, 2]);
/// let saved = batch.next; // store in the checkpoint
/// let again = loader.next_batch().unwrap();
/// let mut resumed = Loader::<Flex>::new_at(loader.dataset().clone(), &config, Default::default(), saved).unwrap();
/// assert_eq!(resumed.next_batch().unwrap().indices, again.indices);
/// ```
pub struct Loader<B: Backend> {
    dataset: Arc<ImageDataset>,
    device: B::Device,
    batch_size: usize,
    steps_per_epoch: u64,
    position: LoaderPosition,
    source: Source,
}

impl<B: Backend> Loader<B> {
    /// A loader at the start of epoch 0 for `config.seed`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a zero batch size, or a batch larger than the dataset
    /// with `drop_last` (no batch could ever be made).
    pub fn new(
        dataset: impl Into<Arc<ImageDataset>>,
        config: &LoaderConfig,
        device: B::Device,
    ) -> crate::Result<Self> {
        Self::new_at(dataset, config, device, LoaderPosition::start(config.seed))
    }

    /// A loader that continues from `position` (as saved from [`Batch::next`] or
    /// [`Loader::position`]); the batches are bit-identical to those the original loader
    /// produced from there.
    ///
    /// # Errors
    /// As [`new`](Self::new), and [`Error::InvalidPosition`] if `position.seed` is not
    /// `config.seed` or `position.index` is past the dataset's end.
    pub fn new_at(
        dataset: impl Into<Arc<ImageDataset>>,
        config: &LoaderConfig,
        device: B::Device,
        position: LoaderPosition,
    ) -> crate::Result<Self> {
        let dataset = dataset.into();
        if config.batch_size == 0 {
            return Err(Error::InvalidConfig {
                name: "batch_size",
                value: "0".into(),
                expected: "at least 1",
            });
        }
        if config.drop_last && config.batch_size > dataset.len() {
            return Err(Error::InvalidConfig {
                name: "batch_size",
                value: format!(
                    "{} (dataset has {} images)",
                    config.batch_size,
                    dataset.len()
                ),
                expected: "at most the number of images when dropping incomplete batches; \
                           use a smaller batch or turn drop_last off",
            });
        }
        if position.seed != config.seed {
            return Err(Error::InvalidPosition {
                position,
                reason: format!("the loader's seed is {}", config.seed),
            });
        }
        if position.index > dataset.len() as u64 {
            return Err(Error::InvalidPosition {
                position,
                reason: format!("the dataset has only {} images", dataset.len()),
            });
        }
        let plan = Plan {
            dataset: dataset.clone(),
            batch_size: config.batch_size,
            shuffle: config.shuffle,
            drop_last: config.drop_last,
            flip: config.flip,
            epoch: None,
        };
        let position = plan.normalize(position);
        let steps_per_epoch = plan.steps_per_epoch();
        let source = if config.prefetch == 0 {
            Source::Inline(plan)
        } else {
            let (tx, rx) = sync_channel(config.prefetch);
            let handle = std::thread::Builder::new()
                .name("catgan-loader".into())
                .spawn(move || {
                    let mut plan = plan;
                    let mut p = position;
                    loop {
                        let batch = plan.make(p);
                        p = batch.next;
                        if tx.send(batch).is_err() {
                            break; // the loader was dropped
                        }
                    }
                })
                .map_err(|e| Error::LoaderStopped {
                    reason: format!("cannot start the prefetch thread: {e}"),
                })?;
            Source::Prefetch {
                rx: Some(rx),
                handle: Some(handle),
            }
        };
        Ok(Loader {
            dataset,
            device,
            batch_size: config.batch_size,
            steps_per_epoch,
            position,
            source,
        })
    }

    /// The next batch, moving on to the next epoch (and its shuffle) when one ends.
    ///
    /// # Errors
    /// [`Error::LoaderStopped`] if the background thread died (a bug; it does not fail on
    /// data, which was validated when the dataset was opened).
    pub fn next_batch(&mut self) -> crate::Result<Batch<B>> {
        let host = match &mut self.source {
            Source::Inline(plan) => plan.make(self.position),
            Source::Prefetch { rx, handle } => {
                match rx.as_ref().expect("present until drop").recv() {
                    Ok(batch) => batch,
                    Err(_) => {
                        let reason = match handle.take().map(JoinHandle::join) {
                            Some(Err(panic)) => panic
                                .downcast_ref::<&str>()
                                .map(|s| s.to_string())
                                .or_else(|| panic.downcast_ref::<String>().cloned())
                                .unwrap_or_else(|| "panicked".into()),
                            _ => "it exited".into(),
                        };
                        return Err(Error::LoaderStopped { reason });
                    }
                }
            }
        };
        debug_assert_eq!(host.position, self.position);
        let size = self.dataset.image_size() as usize;
        let n = host.indices.len();
        let images =
            Tensor::from_data(TensorData::new(host.data, [n, 3, size, size]), &self.device);
        let step = host.position.epoch * self.steps_per_epoch
            + host.position.index / self.batch_size as u64;
        self.position = host.next;
        Ok(Batch {
            images,
            indices: host.indices,
            flipped: host.flipped,
            position: host.position,
            next: host.next,
            step,
            epoch_end: host.epoch_end,
        })
    }

    /// Position of the next batch [`next_batch`](Self::next_batch) will return.
    pub fn position(&self) -> LoaderPosition {
        self.position
    }

    /// Batches per epoch.
    pub fn steps_per_epoch(&self) -> u64 {
        self.steps_per_epoch
    }

    /// The dataset being served.
    pub fn dataset(&self) -> &Arc<ImageDataset> {
        &self.dataset
    }

    /// The device the batches are created on.
    pub fn device(&self) -> &B::Device {
        &self.device
    }
}

impl<B: Backend> Drop for Loader<B> {
    fn drop(&mut self) {
        if let Source::Prefetch { rx, handle } = &mut self.source {
            drop(rx.take()); // unblocks the worker's `send`, which then returns
            if let Some(handle) = handle.take() {
                let _ = handle.join();
            }
        }
    }
}

impl<B: Backend> std::fmt::Debug for Loader<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loader")
            .field("images", &self.dataset.len())
            .field("batch_size", &self.batch_size)
            .field("position", &self.position)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TestBackend;

    /// `n` 2x2 images; image `i` has every byte equal to `i` except pixel (0, 0), which is
    /// `255 - i` in the red channel (so flips are visible).
    fn numbered(n: usize) -> Arc<ImageDataset> {
        let mut pixels = Vec::new();
        for i in 0..n {
            let mut img = vec![i as u8; 12];
            img[0] = 255 - i as u8;
            pixels.extend(img);
        }
        Arc::new(ImageDataset::from_pixels(2, pixels).unwrap())
    }

    fn values(batch: &Batch<TestBackend>) -> Vec<f32> {
        batch.images.to_data().to_vec::<f32>().unwrap()
    }

    #[test]
    fn shuffle_is_pinned_and_a_permutation() {
        // Pinned: changing the algorithm would silently break resuming old checkpoints.
        assert_eq!(epoch_order(10, 42, 0, true), [1, 9, 7, 3, 6, 2, 8, 0, 5, 4]);
        assert_eq!(
            epoch_flips(8, 42, 0),
            [true, false, false, false, false, false, true, true]
        );
        for epoch in 0..20 {
            let mut order = epoch_order(37, 7, epoch, true);
            order.sort();
            assert_eq!(order, (0..37).collect::<Vec<u32>>());
        }
        assert_ne!(epoch_order(37, 7, 0, true), epoch_order(37, 8, 0, true));
        assert_ne!(epoch_order(37, 7, 0, true), epoch_order(37, 7, 1, true));
        // Roughly half the images are flipped.
        let flipped = epoch_flips(10_000, 1, 0).iter().filter(|&&f| f).count();
        assert!((4_800..5_200).contains(&flipped), "{flipped}");
    }

    #[test]
    fn values_layout_and_flip() {
        // A pure red 2x2 image: channels exactly [1, -1, -1].
        let mut red = Vec::new();
        for _ in 0..4 {
            red.extend([255u8, 0, 0]);
        }
        let ds = ImageDataset::from_pixels(2, red).unwrap();
        let config = LoaderConfig::new(1).with_prefetch(0);
        let mut loader = Loader::<TestBackend>::new(ds, &config, Default::default()).unwrap();
        let b = loader.next_batch().unwrap();
        assert_eq!(b.images.dims(), [1, 3, 2, 2]);
        assert_eq!(
            values(&b),
            [1.0, 1.0, 1.0, 1.0, -1.0, -1.0, -1.0, -1.0, -1.0, -1.0, -1.0, -1.0]
        );

        // Flipped images have their marked pixel (0,0) at (1,0).
        let ds = numbered(16);
        let config = LoaderConfig::new(16).with_flip(true).with_seed(3);
        let mut loader = Loader::<TestBackend>::new(ds, &config, Default::default()).unwrap();
        let b = loader.next_batch().unwrap();
        let v = values(&b);
        assert!(b.flipped.iter().any(|&f| f) && b.flipped.iter().any(|&f| !f));
        for (k, (&i, &flipped)) in b.indices.iter().zip(&b.flipped).enumerate() {
            let red = &v[k * 12..k * 12 + 4];
            let marked = crate::transform::to_unit_range(255 - i as u8);
            let plain = crate::transform::to_unit_range(i as u8);
            let expected = if flipped {
                [plain, marked, plain, plain]
            } else {
                [marked, plain, plain, plain]
            };
            assert_eq!(red, expected);
        }
    }

    #[test]
    fn epochs_steps_and_drop_last() {
        let ds = numbered(10);
        let config = LoaderConfig::new(4).with_seed(1).with_drop_last(false);
        let mut loader =
            Loader::<TestBackend>::new(ds.clone(), &config, Default::default()).unwrap();
        assert_eq!(loader.steps_per_epoch(), 3);
        let sizes: Vec<_> = (0..6)
            .map(|_| {
                let b = loader.next_batch().unwrap();
                (b.images.dims()[0], b.position.epoch, b.step, b.epoch_end)
            })
            .collect();
        assert_eq!(
            sizes,
            [
                (4, 0, 0, false),
                (4, 0, 1, false),
                (2, 0, 2, true),
                (4, 1, 3, false),
                (4, 1, 4, false),
                (2, 1, 5, true)
            ]
        );
        let mut loader =
            Loader::<TestBackend>::new(ds.clone(), &config, Default::default()).unwrap();
        let mut seen: Vec<u32> = (0..3)
            .flat_map(|_| loader.next_batch().unwrap().indices)
            .collect();
        seen.sort();
        assert_eq!(seen, (0..10).collect::<Vec<_>>());

        let config = config.with_drop_last(true);
        let mut loader = Loader::<TestBackend>::new(ds, &config, Default::default()).unwrap();
        assert_eq!(loader.steps_per_epoch(), 2);
        let b: Vec<_> = (0..3).map(|_| loader.next_batch().unwrap()).collect();
        assert_eq!(
            b.iter().map(|b| b.images.dims()[0]).collect::<Vec<_>>(),
            [4, 4, 4]
        );
        assert!(
            b[1].epoch_end
                && b[1].next
                    == LoaderPosition {
                        seed: 1,
                        epoch: 1,
                        index: 0
                    }
        );
        assert_eq!(b[2].position.epoch, 1);
        assert_eq!(
            loader.position(),
            LoaderPosition {
                seed: 1,
                epoch: 1,
                index: 4
            }
        );
    }

    #[test]
    fn resuming_is_bit_identical() {
        let ds = numbered(10);
        for prefetch in [0, 3] {
            let config = LoaderConfig::new(3)
                .with_seed(99)
                .with_flip(true)
                .with_prefetch(prefetch);
            let mut original =
                Loader::<TestBackend>::new(ds.clone(), &config, Default::default()).unwrap();
            let run: Vec<_> = (0..10).map(|_| original.next_batch().unwrap()).collect();
            for stop in [1, 3, 4, 7] {
                // Round-trip the position through JSON, as a checkpoint would.
                let saved: LoaderPosition =
                    serde_json::from_str(&serde_json::to_string(&run[stop - 1].next).unwrap())
                        .unwrap();
                let mut resumed =
                    Loader::<TestBackend>::new_at(ds.clone(), &config, Default::default(), saved)
                        .unwrap();
                for expected in &run[stop..] {
                    let got = resumed.next_batch().unwrap();
                    assert_eq!(got.indices, expected.indices);
                    assert_eq!(got.flipped, expected.flipped);
                    assert_eq!(got.step, expected.step);
                    assert_eq!(values(&got), values(expected));
                }
            }
        }
    }

    #[test]
    fn bad_settings_and_positions_are_refused() {
        let ds = numbered(5);
        let dev = Default::default;
        let e = Loader::<TestBackend>::new(ds.clone(), &LoaderConfig::new(0), dev()).unwrap_err();
        assert!(matches!(
            e,
            Error::InvalidConfig {
                name: "batch_size",
                ..
            }
        ));
        let e = Loader::<TestBackend>::new(ds.clone(), &LoaderConfig::new(6), dev()).unwrap_err();
        assert!(e.to_string().contains("drop_last"), "{e}");
        assert!(Loader::<TestBackend>::new(
            ds.clone(),
            &LoaderConfig::new(6).with_drop_last(false),
            dev()
        )
        .is_ok());
        let config = LoaderConfig::new(2).with_seed(5);
        let wrong_seed = LoaderPosition {
            seed: 6,
            epoch: 0,
            index: 0,
        };
        let e = Loader::<TestBackend>::new_at(ds.clone(), &config, dev(), wrong_seed).unwrap_err();
        assert!(matches!(e, Error::InvalidPosition { .. }));
        let past_end = LoaderPosition {
            seed: 5,
            epoch: 0,
            index: 6,
        };
        assert!(Loader::<TestBackend>::new_at(ds.clone(), &config, dev(), past_end).is_err());
        // At the very end of an epoch: moves on to the next one.
        let at_end = LoaderPosition {
            seed: 5,
            epoch: 2,
            index: 5,
        };
        let loader = Loader::<TestBackend>::new_at(ds, &config, dev(), at_end).unwrap();
        assert_eq!(
            loader.position(),
            LoaderPosition {
                seed: 5,
                epoch: 3,
                index: 0
            }
        );
    }
}
