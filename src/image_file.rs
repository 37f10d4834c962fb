//! Writing images so that a failed write is an error: `image`'s own `save` writes through a
//! `BufWriter` whose last flush happens on drop, where an error (a full disk) is lost and a
//! truncated or empty file is left behind with success reported.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::{ImageFormat, RgbImage};

/// A PNG that could not be written.
#[derive(Debug, thiserror::Error)]
#[error("writing {path}: {reason}")]
pub struct ImageWriteError {
    /// The file.
    pub path: PathBuf,
    /// What failed.
    pub reason: String,
}

/// Encodes `image` as PNG in memory, then writes the file and checks every byte reached
/// it; on failure the partial file is removed and the error names the path. Returns the
/// encoded file (for a copy elsewhere, such as TensorBoard's events).
pub fn save_png(image: &RgbImage, path: &Path) -> Result<Vec<u8>, ImageWriteError> {
    let error = |reason: String| ImageWriteError {
        path: path.to_path_buf(),
        reason,
    };
    let mut bytes = Cursor::new(Vec::new());
    image
        .write_to(&mut bytes, ImageFormat::Png)
        .map_err(|e| error(format!("cannot encode the PNG ({e})")))?;
    let bytes = bytes.into_inner();
    std::fs::write(path, &bytes).map_err(|e| {
        // Only a regular file is ours to remove (never a device such as /dev/full).
        if path.metadata().is_ok_and(|m| m.is_file()) {
            let _ = std::fs::remove_file(path);
        }
        error(e.to_string())
    })?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_readable_png_and_reports_failures_with_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let image = RgbImage::from_fn(3, 2, |x, y| image::Rgb([x as u8 * 80, y as u8 * 100, 7]));
        let path = dir.path().join("a.png");
        save_png(&image, &path).unwrap();
        assert_eq!(image::open(&path).unwrap().to_rgb8(), image);
        let blocked = dir.path().join("missing-folder").join("b.png");
        let err = save_png(&image, &blocked).unwrap_err().to_string();
        assert!(err.contains("missing-folder"), "{err}");
    }

    /// A full disk: Linux's /dev/full accepts the open and fails every write.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_full_disk_is_an_error_not_a_silent_empty_file() {
        let image = RgbImage::new(8, 8);
        let err = save_png(&image, Path::new("/dev/full"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("/dev/full") && err.contains("No space left"),
            "{err}"
        );
    }
}
