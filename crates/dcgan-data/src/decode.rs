//! Decoding one file into an upright RGB image, or a reason to skip it.
//!
//! - The format is taken from the file's **content**, not its extension (a PNG named
//!   `.jpg` works; text named `.jpg` is reported as "not an image").
//! - **EXIF orientation** (JPEG, WebP, TIFF, PNG `eXIf`) is applied, so a phone photo stored
//!   sideways comes out upright.
//! - **Colour**: gray, gray+alpha, 16-bit, palette (expanded by the PNG/GIF decoders) and
//!   float inputs are converted to 8-bit RGB; CMYK JPEGs are converted to RGB by the JPEG
//!   decoder. **Alpha is composited over white** (`c' = c·a + 255·(1 − a)`, rounded), so a
//!   transparent background becomes white, as most viewers show it, instead of whatever
//!   colour happens to be stored under the transparent pixels. Animated GIF/WebP: the first
//!   frame is used.
//! - **Decompression bombs** are refused by [`DecodeLimits`] before the pixel buffer is
//!   allocated: a header claiming 100 000 × 100 000 pixels is skipped with
//!   [`SkipReason::TooLarge`], it does not exhaust memory.
//! - A decoder that panics on a hostile file is caught and reported as
//!   [`SkipReason::DecoderPanic`]: bad input never takes the process down.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::{DynamicImage, ImageDecoder, ImageError, ImageReader, RgbImage};
use serde::{Deserialize, Serialize};

/// Why a file was not used. Shown to users as "path: reason".
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum SkipReason {
    /// The file has zero bytes.
    #[error("empty file (0 bytes)")]
    Empty,
    /// The content matches no supported image format.
    #[error("not an image (content matches no supported format)")]
    NotAnImage,
    /// A recognised format, but a variant or feature the decoder does not support.
    #[error("unsupported image: {0}")]
    Unsupported(String),
    /// Refused by the decoding limits (dimensions or memory): possibly a decompression bomb.
    #[error("too large, refused by decoding limits: {0}")]
    TooLarge(String),
    /// The data is corrupt or truncated.
    #[error("corrupt or truncated: {0}")]
    Corrupt(String),
    /// The file could not be read.
    #[error("cannot read: {0}")]
    Io(String),
    /// The decoder crashed on this file (caught; the file is skipped).
    #[error("decoder crashed: {0}")]
    DecoderPanic(String),
    /// Named like an image, but not a regular file: a FIFO, a socket or a device (the kind
    /// is given). It is never opened: reading a FIFO would wait forever for a writer.
    #[error("not a regular file ({0}); only regular files are read")]
    NotARegularFile(String),
    /// A symbolic link that leads back to a folder already being searched (given); it is
    /// not followed, so the search ends and no image is counted twice.
    #[error(
        "symbolic link loop: it leads back to `{0}`, which is already being searched; not followed"
    )]
    LinkLoop(String),
}

/// A file that was not used, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkippedFile {
    /// The file (root joined with its relative path).
    pub path: PathBuf,
    /// Why it was skipped.
    pub reason: SkipReason,
}

impl std::fmt::Display for SkippedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.reason)
    }
}

/// Limits that protect against decompression bombs and absurd inputs.
///
/// Defaults: 16 384 px per side and 256 MiB for the decoded buffer (a 50-megapixel 8-bit
/// RGB photo needs 150 MiB). Several files are decoded at once (one per core), so the
/// peak is about `cores × max_alloc_bytes`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecodeLimits {
    /// Largest accepted width, in pixels.
    pub max_width: u32,
    /// Largest accepted height, in pixels.
    pub max_height: u32,
    /// Largest decoded buffer, in bytes.
    pub max_alloc_bytes: u64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_width: 16_384,
            max_height: 16_384,
            max_alloc_bytes: 256 * 1024 * 1024,
        }
    }
}

impl DecodeLimits {
    fn to_image_limits(self) -> image::Limits {
        let mut limits = image::Limits::default();
        limits.max_image_width = Some(self.max_width);
        limits.max_image_height = Some(self.max_height);
        limits.max_alloc = Some(self.max_alloc_bytes);
        limits
    }
}

/// The [`SkipReason`] for an error of the `image` crate (limits, unsupported, truncated,
/// I/O, corrupt).
pub fn classify_error(err: ImageError) -> SkipReason {
    match err {
        ImageError::Limits(e) => SkipReason::TooLarge(e.to_string()),
        ImageError::Unsupported(e) => SkipReason::Unsupported(e.to_string()),
        ImageError::IoError(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            SkipReason::Corrupt(format!("unexpected end of file ({e})"))
        }
        ImageError::IoError(e) => SkipReason::Io(e.to_string()),
        other => SkipReason::Corrupt(other.to_string()),
    }
}

/// Decodes encoded image bytes into an upright [`DynamicImage`] (EXIF orientation applied).
///
/// # Errors
/// A [`SkipReason`] for empty, unrecognised, unsupported, oversized or corrupt data.
pub fn decode_bytes(bytes: &[u8], limits: DecodeLimits) -> Result<DynamicImage, SkipReason> {
    if bytes.is_empty() {
        return Err(SkipReason::Empty);
    }
    let run = || -> Result<DynamicImage, SkipReason> {
        let mut reader = ImageReader::new(Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|e| SkipReason::Io(e.to_string()))?;
        match reader.format() {
            None => return Err(SkipReason::NotAnImage),
            // The JPEG decoder fills missing data with gray instead of failing (as browsers
            // do); a cut-off photo would then train the model on gray bands.
            Some(image::ImageFormat::Jpeg) if !jpeg_is_complete(bytes) => {
                return Err(SkipReason::Corrupt(
                    "truncated JPEG (the data ends before the end-of-image marker)".into(),
                ))
            }
            Some(_) => {}
        }
        let image_limits = limits.to_image_limits();
        reader.limits(image_limits.clone());
        // `into_decoder` checks the dimensions against the limits (strict limits).
        let mut decoder = reader.into_decoder().map_err(classify_error)?;
        // Check the decoded buffer against the allocation limit before allocating it.
        let mut budget = image_limits;
        budget
            .reserve(decoder.total_bytes())
            .map_err(classify_error)?;
        let orientation = decoder
            .orientation()
            .unwrap_or(image::metadata::Orientation::NoTransforms);
        let mut image = DynamicImage::from_decoder(decoder).map_err(classify_error)?;
        image.apply_orientation(orientation);
        Ok(image)
    };
    catch_decoder_panic(run)
}

/// Runs a decoding closure, turning a panic inside it (a decoder crashing on a hostile
/// file) into [`SkipReason::DecoderPanic`] with the panic's message.
pub fn catch_decoder_panic<T>(
    run: impl FnOnce() -> Result<T, SkipReason>,
) -> Result<T, SkipReason> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)) {
        Ok(result) => result,
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_string());
            Err(SkipReason::DecoderPanic(message))
        }
    }
}

/// Whether a JPEG stream reaches its end-of-image marker (`FF D9`).
///
/// Walks the marker segments by their lengths (so thumbnails inside EXIF are skipped) and
/// the entropy-coded data after each start-of-scan (where `FF 00` is a stuffed byte and
/// `FF D0`–`FF D7` are restart markers). Data after the end marker (e.g. the video that
/// "motion photos" append) is ignored.
pub fn jpeg_is_complete(bytes: &[u8]) -> bool {
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return false;
    }
    let len = bytes.len();
    let mut i = 2;
    loop {
        // Find the next marker (skipping stray bytes and fill bytes).
        while i < len && bytes[i] != 0xFF {
            i += 1;
        }
        while i < len && bytes[i] == 0xFF {
            i += 1;
        }
        if i >= len {
            return false;
        }
        let marker = bytes[i];
        i += 1;
        match marker {
            0xD9 => return true,
            0xD0..=0xD7 | 0x01 | 0x00 => continue,
            _ => {
                if i + 2 > len {
                    return false;
                }
                let segment = usize::from(u16::from_be_bytes([bytes[i], bytes[i + 1]]));
                i += segment;
                if i > len {
                    return false;
                }
                if marker == 0xDA {
                    // Entropy-coded data runs until a marker other than FF 00 / RSTn.
                    while i + 1 < len {
                        if bytes[i] == 0xFF && !matches!(bytes[i + 1], 0x00 | 0xD0..=0xD7 | 0xFF) {
                            break;
                        }
                        i += 1;
                    }
                    if i + 1 >= len {
                        return false;
                    }
                }
            }
        }
    }
}

/// Reads and decodes the file at `path` into an upright [`DynamicImage`].
///
/// # Errors
/// A [`SkipReason`]: [`SkipReason::Io`] if the file cannot be read, otherwise as
/// [`decode_bytes`].
pub fn decode_file(path: &Path, limits: DecodeLimits) -> Result<DynamicImage, SkipReason> {
    let bytes = std::fs::read(path).map_err(|e| SkipReason::Io(e.to_string()))?;
    decode_bytes(&bytes, limits)
}

/// Converts any decoded image to 8-bit RGB, compositing alpha over white (see the
/// [module docs](self)).
///
/// ```
/// use image::{DynamicImage, Rgba, RgbaImage};
/// let transparent_red = RgbaImage::from_pixel(1, 1, Rgba([255, 0, 0, 0]));
/// let rgb = dcgan_data::decode::to_rgb8(DynamicImage::ImageRgba8(transparent_red));
/// assert_eq!(rgb.get_pixel(0, 0).0, [255, 255, 255]);
/// ```
pub fn to_rgb8(image: DynamicImage) -> RgbImage {
    match image {
        DynamicImage::ImageRgb8(rgb) => rgb,
        other if other.color().has_alpha() => {
            let rgba = other.to_rgba8();
            let (w, h) = rgba.dimensions();
            let mut out = Vec::with_capacity(w as usize * h as usize * 3);
            for px in rgba.pixels() {
                let a = u32::from(px.0[3]);
                for &c in &px.0[..3] {
                    // Exact rounding of c·a/255 + 255·(255 − a)/255.
                    let v = (u32::from(c) * a + 255 * (255 - a) + 127) / 255;
                    out.push(v as u8);
                }
            }
            RgbImage::from_raw(w, h, out).expect("buffer has w*h*3 bytes")
        }
        other => other.to_rgb8(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageFormat, Luma, Rgb, Rgba};

    fn encode(image: &DynamicImage, format: ImageFormat) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        image.write_to(&mut out, format).unwrap();
        out.into_inner()
    }

    #[test]
    fn gray_16bit_palette_and_rgba_become_rgb() {
        let limits = DecodeLimits::default();
        // Gray 8-bit.
        let gray = DynamicImage::ImageLuma8(image::GrayImage::from_pixel(3, 2, Luma([77])));
        let rgb = to_rgb8(decode_bytes(&encode(&gray, ImageFormat::Png), limits).unwrap());
        assert_eq!(rgb.dimensions(), (3, 2));
        assert!(rgb.pixels().all(|p| p.0 == [77, 77, 77]));
        // 16-bit RGB: 0xFFFF -> 255, 0 -> 0, 0x8080 -> 128.
        let deep = DynamicImage::ImageRgb16(image::ImageBuffer::from_pixel(
            2,
            2,
            Rgb([0xFFFF_u16, 0, 0x8080]),
        ));
        let rgb = to_rgb8(decode_bytes(&encode(&deep, ImageFormat::Png), limits).unwrap());
        assert_eq!(rgb.get_pixel(1, 1).0, [255, 0, 128]);
        // Half-transparent black over white -> mid gray; opaque keeps its colour.
        let mut rgba = image::RgbaImage::from_pixel(2, 1, Rgba([0, 0, 0, 128]));
        rgba.put_pixel(1, 0, Rgba([10, 20, 30, 255]));
        let rgb = to_rgb8(
            decode_bytes(
                &encode(&DynamicImage::ImageRgba8(rgba), ImageFormat::Png),
                limits,
            )
            .unwrap(),
        );
        assert_eq!(rgb.get_pixel(0, 0).0, [127, 127, 127]);
        assert_eq!(rgb.get_pixel(1, 0).0, [10, 20, 30]);
    }

    #[test]
    fn palette_png_is_expanded() {
        // A 2x1 indexed PNG with palette [red, blue], written with the png crate's encoder
        // through image's re-export would need extra API; build it by hand instead.
        let png = crate::test_util::palette_png(&[[255, 0, 0], [0, 0, 255]], &[0, 1], 2, 1);
        let rgb = to_rgb8(decode_bytes(&png, DecodeLimits::default()).unwrap());
        assert_eq!(rgb.get_pixel(0, 0).0, [255, 0, 0]);
        assert_eq!(rgb.get_pixel(1, 0).0, [0, 0, 255]);
    }

    #[test]
    fn bad_bytes_give_reasons_not_panics() {
        let limits = DecodeLimits::default();
        assert_eq!(decode_bytes(b"", limits), Err(SkipReason::Empty));
        assert_eq!(
            decode_bytes(b"hello, I am not a picture at all", limits),
            Err(SkipReason::NotAnImage)
        );
        let png = encode(
            &DynamicImage::ImageRgb8(RgbImage::from_pixel(64, 64, Rgb([1, 2, 3]))),
            ImageFormat::Png,
        );
        let truncated = &png[..png.len() / 2];
        assert!(matches!(
            decode_bytes(truncated, limits),
            Err(SkipReason::Corrupt(_))
        ));
        // JPEGs: cut anywhere → refused; complete, or with data after the end → accepted.
        let mut noisy = RgbImage::new(64, 64);
        for (x, y, p) in noisy.enumerate_pixels_mut() {
            *p = Rgb([(x * 7 + y * 13) as u8, (x * y) as u8, (x ^ y) as u8]);
        }
        let jpeg = crate::test_util::jpeg_with_orientation(&noisy, 1);
        assert!(jpeg_is_complete(&jpeg));
        assert!(decode_bytes(&jpeg, limits).is_ok());
        for cut in [40, jpeg.len() / 3, jpeg.len() / 2, jpeg.len() - 2] {
            let r = decode_bytes(&jpeg[..cut], limits);
            assert!(
                matches!(r, Err(SkipReason::Corrupt(_))),
                "cut at {cut}: {r:?}"
            );
        }
        let mut appended = jpeg.clone();
        appended.extend_from_slice(b"\xFF\xDA trailing video data");
        assert!(decode_bytes(&appended, limits).is_ok());
    }

    #[test]
    fn huge_dimensions_are_refused_by_limits() {
        let limits = DecodeLimits::default();
        let png = crate::test_util::png_header_only(100_000, 100_000);
        assert!(matches!(
            decode_bytes(&png, limits),
            Err(SkipReason::TooLarge(_))
        ));
        let jpeg = crate::test_util::jpeg_header_only(60_000, 60_000);
        assert!(matches!(
            decode_bytes(&jpeg, limits),
            Err(SkipReason::TooLarge(_))
        ));
        // Within the side limits but over the memory budget.
        let tight = DecodeLimits {
            max_alloc_bytes: 1_000,
            ..limits
        };
        let png = encode(
            &DynamicImage::ImageRgb8(RgbImage::new(100, 100)),
            ImageFormat::Png,
        );
        assert!(matches!(
            decode_bytes(&png, tight),
            Err(SkipReason::TooLarge(_))
        ));
    }

    #[test]
    fn exif_orientation_is_applied() {
        // 32x16, red 8x8 block in the top-left corner, stored with EXIF orientation 6
        // ("rotate 90° clockwise to display"): upright it is 16x32, red in the top right.
        let mut img = RgbImage::from_pixel(32, 16, Rgb([0, 0, 0]));
        for y in 0..8 {
            for x in 0..8 {
                img.put_pixel(x, y, Rgb([255, 0, 0]));
            }
        }
        let limits = DecodeLimits::default();
        let plain = to_rgb8(decode_bytes(&crate::test_util::jpeg(&img), limits).unwrap());
        let (x, y) = crate::test_util::red_centroid(&plain);
        assert!((x - 4.0).abs() < 0.5 && (y - 4.0).abs() < 0.5, "{x} {y}");

        let cases = [
            (6, (16, 32), (12.0, 4.0)),
            (8, (16, 32), (4.0, 28.0)),
            (3, (32, 16), (28.0, 12.0)),
        ];
        for (orientation, dims, (ex, ey)) in cases {
            let jpeg = crate::test_util::jpeg_with_orientation(&img, orientation);
            let upright = to_rgb8(decode_bytes(&jpeg, limits).unwrap());
            assert_eq!(upright.dimensions(), dims, "orientation {orientation}");
            let (x, y) = crate::test_util::red_centroid(&upright);
            assert!(
                (x - ex).abs() < 0.5 && (y - ey).abs() < 0.5,
                "orientation {orientation}: {x} {y}"
            );
        }
    }
}
