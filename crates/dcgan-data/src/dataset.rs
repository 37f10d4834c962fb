//! [`ImageDataset`]: a folder of images, decoded once into `size × size` RGB bytes in memory,
//! through the on-disk [`cache`](mod@crate::cache).
//!
//! Opening a folder: [`scan`](mod@crate::scan) → cache hit? load it : decode every file in
//! parallel (rayon), skipping bad files → write the cache (atomically) → done. The first
//! open of a large folder is slow (decoding); later opens read one file.

use std::path::{Path, PathBuf};

use burn::config::Config;
use image::RgbImage;
use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::cache::{self, CacheContents, CacheKey, CacheLocation};
use crate::decode::{self, DecodeLimits, SkipReason, SkippedFile};
use crate::error::Error;
use crate::progress::{Progress, Task};
use crate::scan::{self, DataFingerprint, Scan};
use crate::transform::{self, CropMode};

/// How a folder is turned into training images.
#[derive(Config, Debug)]
pub struct DatasetConfig {
    /// Side of the square training images, in pixels.
    #[config(default = 64)]
    pub image_size: u32,
    /// How non-square pictures are made square.
    #[config(default = "CropMode::Center")]
    pub crop: CropMode,
    /// Fail on the first file that cannot be used, instead of skipping and reporting it.
    #[config(default = false)]
    pub strict: bool,
    /// Where the preprocessed cache is kept.
    #[config(default = "CacheLocation::Auto")]
    pub cache: CacheLocation,
    /// Limits against decompression bombs.
    #[config(default = "DecodeLimits::default()")]
    pub limits: DecodeLimits,
}

impl DatasetConfig {
    /// Checks the settings.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] if `image_size` is outside 4..=4096.
    pub fn validate(&self) -> crate::Result<()> {
        if !(4..=4096).contains(&self.image_size) {
            return Err(Error::InvalidConfig {
                name: "image_size",
                value: self.image_size.to_string(),
                expected: "between 4 and 4096 pixels",
            });
        }
        Ok(())
    }
}

/// What happened to the cache when a dataset was opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CacheStatus {
    /// Loaded from this cache file; nothing was decoded.
    Loaded(PathBuf),
    /// Decoded, and the cache was written to this file.
    Built(PathBuf),
    /// Caching is disabled (or the data is built in / in memory).
    Disabled,
    /// Decoded, but no cache folder was writable; each reason names the folder tried.
    Unwritable(Vec<String>),
}

/// What [`ImageDataset::open`] found: counts, skipped files with reasons, cache status.
#[derive(Clone, Debug)]
pub struct DatasetReport {
    /// The data folder.
    pub root: PathBuf,
    /// Files with an image extension found by the scan.
    pub found: usize,
    /// Images in the dataset.
    pub usable: usize,
    /// Files (or folder entries) not used, with the reason, sorted by path.
    pub skipped: Vec<SkippedFile>,
    /// What happened to the cache.
    pub cache: CacheStatus,
}

/// Training images of one size, held in memory as HWC RGB bytes (`len × size × size × 3`).
///
/// ```
/// use dcgan_data::{DatasetConfig, ImageDataset};
/// // 2 synthetic 4x4 images: black and white.
/// let mut pixels = vec![0u8; 48];
/// pixels.extend(vec![255u8; 48]);
/// let dataset = ImageDataset::from_pixels(4, pixels).unwrap();
/// assert_eq!(dataset.len(), 2);
/// assert_eq!(dataset.image(1)[0], 255);
/// ```
#[derive(Clone, Debug)]
pub struct ImageDataset {
    image_size: u32,
    pixels: Vec<u8>,
    paths: Vec<PathBuf>,
    key: CacheKey,
    data_fingerprint: DataFingerprint,
    report: DatasetReport,
}

impl ImageDataset {
    /// Opens a folder of images (recursively), through the cache.
    ///
    /// Files that cannot be decoded are skipped and listed in [`report`](Self::report), or,
    /// with `config.strict`, make this fail with [`Error::Decode`] naming the file.
    /// `progress` hears about the decoding (not sent on a cache hit).
    ///
    /// # Errors
    /// Those of [`scan::scan`], [`Error::NoUsableImages`], [`Error::Decode`] (strict mode),
    /// [`Error::InvalidConfig`]. Cache problems are not errors: an invalid cache is rebuilt,
    /// an unwritable cache folder falls back to the next one, then to memory only.
    pub fn open(
        root: impl AsRef<Path>,
        config: &DatasetConfig,
        progress: &dyn Progress,
    ) -> crate::Result<Self> {
        let root = root.as_ref();
        config.validate()?;
        let scan = scan::scan(root)?;
        let key = cache::cache_key(&scan.files, config.image_size, config.crop, config.limits);
        let name = cache::cache_file_name(root, config.image_size, config.crop);
        let dirs = cache::cache_dirs(&config.cache);

        let cached = dirs.iter().find_map(|dir| {
            let path = dir.join(&name);
            let contents = cache::read_cache(&path, Some(&key)).ok()?;
            let consistent = contents.image_size == config.image_size
                && contents
                    .usable
                    .iter()
                    .chain(contents.skipped.iter().map(|(i, _)| i))
                    .all(|&i| (i as usize) < scan.files.len());
            consistent.then_some((path, contents))
        });
        let (contents, status) = match cached {
            Some((path, contents)) => (contents, CacheStatus::Loaded(path)),
            None => {
                // Stored even when strict mode then fails: the skip list is valid data and
                // the next (non-strict) open must not decode everything again.
                let contents = decode_all(&scan, config, key, progress)?;
                let status = if dirs.is_empty() {
                    CacheStatus::Disabled
                } else {
                    store(&dirs, &name, &contents)
                };
                (contents, status)
            }
        };
        check_usable(&scan, config, &contents)?;

        let mut skipped = scan.unreadable.clone();
        skipped.extend(contents.skipped.iter().map(|(i, reason)| SkippedFile {
            path: scan.path_of(&scan.files[*i as usize]),
            reason: reason.clone(),
        }));
        skipped.sort_by(|a, b| a.path.cmp(&b.path));
        let paths = contents
            .usable
            .iter()
            .map(|&i| scan.files[i as usize].relative.clone())
            .collect();
        Ok(ImageDataset {
            image_size: config.image_size,
            report: DatasetReport {
                root: root.to_path_buf(),
                found: scan.files.len(),
                usable: contents.usable.len(),
                skipped,
                cache: status,
            },
            pixels: contents.pixels,
            paths,
            key,
            data_fingerprint: scan.fingerprint(),
        })
    }

    /// A dataset from raw HWC RGB bytes (`n × size × size × 3`), e.g. synthetic test data.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] if the buffer is empty or not a whole number of images.
    pub fn from_pixels(image_size: u32, pixels: Vec<u8>) -> crate::Result<Self> {
        let item = 3 * image_size as usize * image_size as usize;
        if item == 0 || pixels.is_empty() || !pixels.len().is_multiple_of(item) {
            return Err(Error::InvalidConfig {
                name: "pixels",
                value: format!("{} bytes for {image_size}px images", pixels.len()),
                expected: "a non-empty multiple of 3 × size × size bytes",
            });
        }
        let n = pixels.len() / item;
        let data_fingerprint =
            DataFingerprint::from_entries((0..n).map(|i| (format!("image-{i}"), item as u64)));
        let key: CacheKey = Sha256::new()
            .chain_update(image_size.to_le_bytes())
            .chain_update(&pixels)
            .finalize()
            .into();
        Ok(ImageDataset {
            image_size,
            paths: (0..n)
                .map(|i| PathBuf::from(format!("image-{i}")))
                .collect(),
            report: DatasetReport {
                root: PathBuf::new(),
                found: n,
                usable: n,
                skipped: Vec::new(),
                cache: CacheStatus::Disabled,
            },
            pixels,
            key,
            data_fingerprint,
        })
    }

    /// A dataset from encoded images held in memory (`(name, bytes)` pairs), decoded and
    /// preprocessed like files; used for the built-in cats. No cache.
    ///
    /// # Errors
    /// As [`open`](Self::open) for bad images (skip or strict) and when none is usable.
    pub fn from_encoded(
        name: &str,
        images: &[(&str, &[u8])],
        config: &DatasetConfig,
    ) -> crate::Result<Self> {
        config.validate()?;
        let item = 3 * config.image_size as usize * config.image_size as usize;
        let decoded: Vec<_> = images
            .par_iter()
            .map(|(_, bytes)| {
                decode::decode_bytes(bytes, config.limits).map(|img| {
                    transform::to_training_size(
                        decode::to_rgb8(img),
                        config.image_size,
                        config.crop,
                    )
                })
            })
            .collect();
        let mut pixels = Vec::with_capacity(images.len() * item);
        let mut paths = Vec::new();
        let mut skipped = Vec::new();
        for ((file, _), result) in images.iter().zip(decoded) {
            match result {
                Ok(img) => {
                    pixels.extend_from_slice(img.as_raw());
                    paths.push(PathBuf::from(file));
                }
                Err(reason) if config.strict => {
                    return Err(Error::Decode {
                        path: Path::new(name).join(file),
                        reason,
                    })
                }
                Err(reason) => skipped.push(SkippedFile {
                    path: Path::new(name).join(file),
                    reason,
                }),
            }
        }
        if paths.is_empty() {
            let first = skipped
                .first()
                .map(|s| (s.path.clone(), s.reason.clone()))
                .unwrap_or_else(|| (PathBuf::from(name), SkipReason::Empty));
            return Err(Error::NoUsableImages {
                path: PathBuf::from(name),
                found: images.len(),
                first: Box::new(first),
            });
        }
        let mut dataset = Self::from_pixels(config.image_size, pixels)?;
        dataset.paths = paths;
        dataset.data_fingerprint = DataFingerprint::from_entries(
            images
                .iter()
                .map(|(file, bytes)| (file.to_string(), bytes.len() as u64)),
        );
        dataset.report = DatasetReport {
            root: PathBuf::from(name),
            found: images.len(),
            usable: dataset.paths.len(),
            skipped,
            cache: CacheStatus::Disabled,
        };
        Ok(dataset)
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.paths.len()
    }

    /// Whether there is no image (never true for an opened dataset).
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// Side of every image, in pixels.
    pub fn image_size(&self) -> u32 {
        self.image_size
    }

    /// Image `index` as HWC RGB bytes (`size × size × 3`).
    ///
    /// # Panics
    /// If `index >= len()`.
    pub fn image(&self, index: usize) -> &[u8] {
        let item = 3 * self.image_size as usize * self.image_size as usize;
        &self.pixels[index * item..(index + 1) * item]
    }

    /// Image `index` as an [`RgbImage`] (a copy), e.g. for a grid of real samples.
    ///
    /// # Panics
    /// If `index >= len()`.
    pub fn rgb_image(&self, index: usize) -> RgbImage {
        RgbImage::from_raw(self.image_size, self.image_size, self.image(index).to_vec())
            .expect("size matches")
    }

    /// All images, HWC RGB bytes back to back.
    pub fn pixels(&self) -> &[u8] {
        &self.pixels
    }

    /// Path of image `index`, relative to the data folder.
    ///
    /// # Panics
    /// If `index >= len()`.
    pub fn path(&self, index: usize) -> &Path {
        &self.paths[index]
    }

    /// What the opening found (counts, skipped files, cache).
    pub fn report(&self) -> &DatasetReport {
        &self.report
    }

    /// A hex fingerprint of the files and settings (the cache key: it also changes with
    /// the image size, the crop mode and any file's modification time).
    pub fn fingerprint(&self) -> String {
        cache::key_hex(&self.key)
    }

    /// The fingerprint of the data itself, for resume checks: every image file the scan
    /// found (usable or skipped), by relative path and size, not modification time, so a
    /// copied dataset still matches (see [`Scan::fingerprint`]). For the built-in cats it
    /// covers their names and byte sizes (and equals the fingerprint of `assets/cats/`);
    /// for [`from_pixels`](Self::from_pixels) the names `image-N` and the image size.
    pub fn data_fingerprint(&self) -> &DataFingerprint {
        &self.data_fingerprint
    }
}

/// Decodes every scanned file in parallel into one buffer; bad files become skip entries.
fn decode_all(
    scan: &Scan,
    config: &DatasetConfig,
    key: CacheKey,
    progress: &dyn Progress,
) -> crate::Result<CacheContents> {
    let size = config.image_size;
    let item = 3 * size as usize * size as usize;
    let n = scan.files.len();
    let task = Task::start(progress, "decoding images", n as u64);
    let mut pixels = vec![0u8; n * item];
    let results: Vec<std::result::Result<(), SkipReason>> = pixels
        .par_chunks_mut(item)
        .zip(scan.files.par_iter())
        .map(|(slot, file)| {
            let result = decode::decode_file(&scan.path_of(file), config.limits).map(|img| {
                let img = transform::to_training_size(decode::to_rgb8(img), size, config.crop);
                slot.copy_from_slice(img.as_raw());
            });
            task.advance(1);
            result
        })
        .collect();
    let mut usable = Vec::with_capacity(n);
    let mut skipped = Vec::new();
    for (i, result) in results.into_iter().enumerate() {
        match result {
            Ok(()) => {
                let k = usable.len();
                if k != i {
                    pixels.copy_within(i * item..(i + 1) * item, k * item);
                }
                usable.push(i as u32);
            }
            Err(reason) => skipped.push((i as u32, reason)),
        }
    }
    pixels.truncate(usable.len() * item);
    pixels.shrink_to_fit();
    Ok(CacheContents {
        key,
        image_size: size,
        pixels,
        usable,
        skipped,
    })
}

/// Strict mode and "nothing usable" checks, shared by fresh and cached opens.
fn check_usable(
    scan: &Scan,
    config: &DatasetConfig,
    contents: &CacheContents,
) -> crate::Result<()> {
    if config.strict {
        let mut bad: Vec<SkippedFile> = scan.unreadable.clone();
        bad.extend(contents.skipped.iter().map(|(i, r)| SkippedFile {
            path: scan.path_of(&scan.files[*i as usize]),
            reason: r.clone(),
        }));
        if let Some(first) = bad.into_iter().min_by(|a, b| a.path.cmp(&b.path)) {
            return Err(Error::Decode {
                path: first.path,
                reason: first.reason,
            });
        }
    }
    if contents.usable.is_empty() {
        let first = contents
            .skipped
            .first()
            .map(|(i, r)| (scan.path_of(&scan.files[*i as usize]), r.clone()))
            .unwrap_or_else(|| (scan.root.clone(), SkipReason::Empty));
        return Err(Error::NoUsableImages {
            path: scan.root.clone(),
            found: scan.files.len(),
            first: Box::new(first),
        });
    }
    Ok(())
}

/// Writes the cache into the first writable folder of `dirs`.
fn store(dirs: &[PathBuf], name: &str, contents: &CacheContents) -> CacheStatus {
    let mut reasons = Vec::new();
    for dir in dirs {
        let path = dir.join(name);
        let result = std::fs::create_dir_all(dir)
            .map_err(|e| Error::io("cannot create cache folder", dir, e))
            .and_then(|_| cache::write_cache(&path, contents));
        match result {
            Ok(()) => return CacheStatus::Built(path),
            Err(e) => reasons.push(e.to_string()),
        }
    }
    CacheStatus::Unwritable(reasons)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util;
    use crate::ProgressEvent;
    use image::{DynamicImage, ImageFormat, Rgb, Rgba};
    use std::fs;

    fn save(img: DynamicImage, path: &Path, format: ImageFormat) {
        img.save_with_format(path, format).unwrap();
    }

    /// A folder with good images of every colour type and every kind of bad file.
    fn fixture_folder(root: &Path) {
        let p = |n: &str| root.join(n);
        fs::create_dir_all(p("sub")).unwrap();
        save(
            DynamicImage::ImageRgb8(RgbImage::from_pixel(50, 30, Rgb([255, 0, 0]))),
            &p("a-red.png"),
            ImageFormat::Png,
        );
        save(
            DynamicImage::ImageLuma8(image::GrayImage::from_pixel(20, 20, image::Luma([0]))),
            &p("b-gray.png"),
            ImageFormat::Png,
        );
        save(
            DynamicImage::ImageRgba8(image::RgbaImage::from_pixel(16, 16, Rgba([0, 0, 255, 0]))),
            &p("c-rgba.png"),
            ImageFormat::Png,
        );
        save(
            DynamicImage::ImageRgb16(image::ImageBuffer::from_pixel(16, 16, Rgb([0, 65535, 0]))),
            &p("sub/d-16bit.png"),
            ImageFormat::Png,
        );
        fs::write(
            p("sub/e-palette.png"),
            test_util::palette_png(&[[0, 255, 0]], &[0; 64], 8, 8),
        )
        .unwrap();
        let mut corner = RgbImage::from_pixel(16, 16, Rgb([0, 0, 0]));
        for y in 0..8 {
            for x in 0..8 {
                corner.put_pixel(x, y, Rgb([255, 0, 0]));
            }
        }
        fs::write(
            p("f-exif6.JPG"),
            test_util::jpeg_with_orientation(&corner, 6),
        )
        .unwrap();
        // Bad files.
        let png = fs::read(p("a-red.png")).unwrap();
        fs::write(p("x-truncated.png"), &png[..png.len() - 30]).unwrap();
        let jpeg = fs::read(p("f-exif6.JPG")).unwrap();
        fs::write(p("zz-cut.jpg"), &jpeg[..jpeg.len() * 2 / 3]).unwrap();
        fs::write(p("y-empty.jpg"), b"").unwrap();
        fs::write(p("y-text.jpeg"), b"just some words").unwrap();
        fs::write(
            p("z-huge.png"),
            test_util::png_header_only(100_000, 100_000),
        )
        .unwrap();
    }

    fn config_with_cache(dir: &Path) -> DatasetConfig {
        DatasetConfig::new()
            .with_image_size(8)
            .with_cache(CacheLocation::Dir(dir.to_path_buf()))
    }

    #[test]
    fn skips_bad_files_with_reasons_and_normalises_good_ones() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        fixture_folder(&data);
        let ds = ImageDataset::open(&data, &config_with_cache(&tmp.path().join("c")), &()).unwrap();
        let r = ds.report();
        assert_eq!((r.found, r.usable, ds.len()), (11, 6, 6));
        let names: Vec<_> = (0..ds.len())
            .map(|i| ds.path(i).to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "a-red.png",
                "b-gray.png",
                "c-rgba.png",
                "f-exif6.JPG",
                "sub/d-16bit.png",
                "sub/e-palette.png"
            ]
        );
        let px = |i: usize| ds.image(i)[..3].to_vec();
        assert_eq!(px(0), [255, 0, 0]);
        assert_eq!(px(1), [0, 0, 0]);
        assert_eq!(px(2), [255, 255, 255]); // fully transparent → white
        assert_eq!(px(4), [0, 255, 0]);
        assert_eq!(px(5), [0, 255, 0]);
        // EXIF 6: the red top-left quarter is displayed as the top-right quarter.
        let exif = ds.image(3);
        let red_at = |x: usize, y: usize| exif[(y * 8 + x) * 3];
        assert!(red_at(6, 1) > 200 && red_at(1, 1) < 50 && red_at(6, 6) < 50);

        let reasons: Vec<(String, &SkipReason)> = r
            .skipped
            .iter()
            .map(|s| {
                (
                    s.path
                        .strip_prefix(&data)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                    &s.reason,
                )
            })
            .collect();
        assert_eq!(reasons.len(), 5);
        assert_eq!(reasons[0].0, "x-truncated.png");
        assert!(
            matches!(reasons[0].1, SkipReason::Corrupt(_)),
            "{:?}",
            reasons[0]
        );
        assert_eq!(
            (reasons[1].0.as_str(), reasons[1].1),
            ("y-empty.jpg", &SkipReason::Empty)
        );
        assert_eq!(
            (reasons[2].0.as_str(), reasons[2].1),
            ("y-text.jpeg", &SkipReason::NotAnImage)
        );
        assert_eq!(reasons[3].0, "z-huge.png");
        assert!(matches!(reasons[3].1, SkipReason::TooLarge(_)));
        assert_eq!(reasons[4].0, "zz-cut.jpg");
        assert!(matches!(reasons[4].1, SkipReason::Corrupt(_)));
        assert!(r.skipped[1]
            .to_string()
            .ends_with("y-empty.jpg: empty file (0 bytes)"));
    }

    #[test]
    fn strict_mode_names_the_first_bad_file() {
        let tmp = tempfile::tempdir().unwrap();
        fixture_folder(tmp.path());
        let config = config_with_cache(&tmp.path().join(".c")).with_strict(true);
        let err = ImageDataset::open(tmp.path(), &config, &()).unwrap_err();
        match &err {
            Error::Decode { path, reason } => {
                assert_eq!(path, &tmp.path().join("x-truncated.png"));
                assert!(matches!(reason, SkipReason::Corrupt(_)));
            }
            other => panic!("{other:?}"),
        }
        assert!(err.to_string().contains("x-truncated.png"));
        assert!(err.to_string().contains("--strict"));
        // Same answer from the cache written by the first attempt.
        let err = ImageDataset::open(tmp.path(), &config, &()).unwrap_err();
        assert!(matches!(err, Error::Decode { .. }));
    }

    #[cfg(unix)]
    #[test]
    fn special_files_are_listed_as_skipped_and_refused_in_strict_mode() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        fs::create_dir(&data).unwrap();
        save(
            DynamicImage::ImageRgb8(RgbImage::from_pixel(8, 8, Rgb([1, 2, 3]))),
            &data.join("a.png"),
            ImageFormat::Png,
        );
        let status = std::process::Command::new("mkfifo")
            .arg(data.join("pipe.png"))
            .status()
            .unwrap();
        assert!(status.success());
        let _socket = std::os::unix::net::UnixListener::bind(data.join("sock.JPG")).unwrap();
        let config = DatasetConfig::new()
            .with_image_size(8)
            .with_cache(CacheLocation::Disabled);
        let (d, c) = (data.clone(), config.clone());
        let ds =
            crate::scan::tests::within_a_minute(move || ImageDataset::open(&d, &c, &())).unwrap();
        assert_eq!(ds.len(), 1);
        let skipped: Vec<_> = ds.report().skipped.iter().map(|s| s.to_string()).collect();
        assert_eq!(skipped.len(), 2, "{skipped:?}");
        assert!(skipped[0]
            .ends_with("pipe.png: not a regular file (FIFO); only regular files are read"));
        assert!(skipped[1]
            .ends_with("sock.JPG: not a regular file (socket); only regular files are read"));
        let d = data.clone();
        let err = crate::scan::tests::within_a_minute(move || {
            ImageDataset::open(&d, &config.with_strict(true), &())
        })
        .unwrap_err();
        assert!(
            matches!(&err, Error::Decode { path, reason: SkipReason::NotARegularFile(_) } if *path == data.join("pipe.png")),
            "{err:?}"
        );
    }

    #[test]
    fn no_usable_images_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join("a.png"), b"").unwrap();
        fs::write(tmp.path().join("b.jpg"), b"nope").unwrap();
        let err = ImageDataset::open(
            tmp.path(),
            &DatasetConfig::new().with_cache(CacheLocation::Disabled),
            &(),
        )
        .unwrap_err();
        assert!(
            matches!(err, Error::NoUsableImages { found: 2, .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("inspect-data"));
    }

    #[test]
    fn cache_is_reused_and_invalidated_by_changes() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        fixture_folder(&data);
        let cache_dir = tmp.path().join("cache");
        let config = config_with_cache(&cache_dir);
        let events = std::sync::Mutex::new(Vec::new());
        let progress = |e: ProgressEvent<'_>| {
            events.lock().unwrap().push(match e {
                ProgressEvent::Started { total, what } => format!("{what} {total}"),
                ProgressEvent::Advanced { by } => format!("+{by}"),
                ProgressEvent::Finished => "finished".into(),
            })
        };
        let first = ImageDataset::open(&data, &config, &progress).unwrap();
        let CacheStatus::Built(path) = &first.report().cache else {
            panic!("{:?}", first.report().cache)
        };
        assert!(path.starts_with(&cache_dir));
        {
            let events = events.lock().unwrap();
            assert_eq!(events[0], "decoding images 11");
            assert_eq!(events.iter().filter(|e| *e == "+1").count(), 11);
            assert_eq!(events.last().unwrap(), "finished");
            assert_eq!(events.len(), 13);
        }

        let second = ImageDataset::open(&data, &config, &()).unwrap();
        assert_eq!(second.report().cache, CacheStatus::Loaded(path.clone()));
        assert_eq!(second.pixels(), first.pixels());
        assert_eq!(second.report().skipped, first.report().skipped);
        assert_eq!(second.fingerprint(), first.fingerprint());

        // Same size, new content and mtime: rebuilt, and the new pixels are used.
        save(
            DynamicImage::ImageRgb8(RgbImage::from_pixel(50, 30, Rgb([0, 0, 255]))),
            &data.join("a-red.png"),
            ImageFormat::Png,
        );
        let third = ImageDataset::open(&data, &config, &()).unwrap();
        assert_eq!(third.report().cache, CacheStatus::Built(path.clone()));
        assert_eq!(third.image(0)[..3], [0, 0, 255]);
        assert_ne!(third.fingerprint(), first.fingerprint());

        // Only the modification time changes: rebuilt too.
        let f = fs::File::options()
            .write(true)
            .open(data.join("b-gray.png"))
            .unwrap();
        f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(5))
            .unwrap();
        drop(f);
        let fourth = ImageDataset::open(&data, &config, &()).unwrap();
        assert_eq!(fourth.report().cache, CacheStatus::Built(path.clone()));
        // ... but the data fingerprint (names and sizes) ignores times.
        assert_eq!(fourth.data_fingerprint(), third.data_fingerprint());
        assert_eq!(fourth.data_fingerprint().files, 11);

        // Another image size: another file, the first one stays valid.
        let other = ImageDataset::open(&data, &config.clone().with_image_size(4), &()).unwrap();
        assert!(matches!(other.report().cache, CacheStatus::Built(ref p) if p != path));
    }

    #[test]
    fn truncated_cache_is_never_used() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        fixture_folder(&data);
        let config = config_with_cache(&tmp.path().join("cache"));
        let first = ImageDataset::open(&data, &config, &()).unwrap();
        let CacheStatus::Built(path) = first.report().cache.clone() else {
            panic!()
        };
        let bytes = fs::read(&path).unwrap();
        fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
        let again = ImageDataset::open(&data, &config, &()).unwrap();
        assert_eq!(again.report().cache, CacheStatus::Built(path.clone()));
        assert_eq!(again.pixels(), first.pixels());
        assert_eq!(fs::read(&path).unwrap(), bytes);
    }

    #[test]
    fn unwritable_cache_folders_fall_back() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        fixture_folder(&data);
        // A folder below a regular file cannot be created, even by root.
        let blocker = tmp.path().join("file");
        fs::write(&blocker, b"x").unwrap();
        let bad = blocker.join("cache");
        let good = tmp.path().join("good");
        let ds = ImageDataset::open(&data, &config_with_cache(&bad), &()).unwrap();
        assert!(matches!(&ds.report().cache, CacheStatus::Unwritable(r) if r.len() == 1));
        assert_eq!(ds.len(), 6);
        let contents = decode_all(
            &scan::scan(&data).unwrap(),
            &config_with_cache(&bad),
            [0; 32],
            &(),
        )
        .unwrap();
        let status = store(&[bad.clone(), good.clone()], "x.catgan-cache", &contents);
        assert_eq!(status, CacheStatus::Built(good.join("x.catgan-cache")));
    }

    #[test]
    fn committed_assets_and_builtin_cats_load_cleanly() {
        let assets = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/cats");
        let config = DatasetConfig::new()
            .with_image_size(32)
            .with_cache(CacheLocation::Disabled);
        let ds = ImageDataset::open(&assets, &config, &()).unwrap();
        assert_eq!((ds.len(), ds.report().skipped.len()), (16, 0));
        let builtin = ImageDataset::builtin(&config).unwrap();
        assert_eq!(builtin.len(), 16);
        // Same bytes, same pipeline: identical pixels, and the same data fingerprint.
        assert_eq!(builtin.pixels(), ds.pixels());
        assert_eq!(builtin.data_fingerprint(), ds.data_fingerprint());
        assert_eq!(builtin.data_fingerprint().files, 16);
    }

    #[test]
    fn real_crops_if_present() {
        let crops = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/data/cats/cats-dogs-bench-faces/crops");
        if !crops.is_dir() {
            eprintln!("skipped: {} not found", crops.display());
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let ds = ImageDataset::open(
            &crops,
            &config_with_cache(tmp.path()).with_image_size(64),
            &(),
        )
        .unwrap();
        assert_eq!(ds.report().skipped, Vec::new());
        assert!(ds.len() >= 4000, "{}", ds.len());
    }

    #[test]
    fn real_photos_if_present() {
        // 12,497 real JPEGs: none may be refused (guards against false "truncated" etc.).
        let photos = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/data/cats/cats-dogs-bench/128x128");
        if !photos.is_dir() {
            eprintln!("skipped: {} not found", photos.display());
            return;
        }
        let config = DatasetConfig::new()
            .with_image_size(16)
            .with_cache(CacheLocation::Disabled);
        let ds = ImageDataset::open(&photos, &config, &()).unwrap();
        assert_eq!(ds.report().skipped, Vec::new());
        assert!(ds.len() >= 12_000, "{}", ds.len());
    }

    #[test]
    fn invalid_settings() {
        let err = DatasetConfig::new()
            .with_image_size(0)
            .validate()
            .unwrap_err();
        assert!(matches!(
            err,
            Error::InvalidConfig {
                name: "image_size",
                ..
            }
        ));
        assert!(ImageDataset::from_pixels(2, vec![0; 11]).is_err());
    }
}
