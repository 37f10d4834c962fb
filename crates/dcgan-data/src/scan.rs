//! Finding the images: a recursive, sorted scan of a data folder.
//!
//! Rules:
//! - extensions `jpg jpeg png bmp gif webp tif tiff`, in any letter case;
//! - hidden entries (name starting with `.`) below the root are skipped, which also keeps the
//!   loader's own `.catgan-cache/` folder and macOS `._*` side files out of the data;
//! - symbolic links are followed (link loops are reported, not followed forever);
//! - the result is sorted by path relative to the root, component by component, so the
//!   order is the same on every machine and every run;
//! - entries that cannot be read (permissions, broken links) are reported, not fatal.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::decode::{SkipReason, SkippedFile};
use crate::error::{Error, Result};

/// File extensions (lower case) that the scan accepts, matched case-insensitively.
pub const IMAGE_EXTENSIONS: [&str; 8] = ["jpg", "jpeg", "png", "bmp", "gif", "webp", "tif", "tiff"];

/// Whether `path` has one of the [`IMAGE_EXTENSIONS`], in any letter case.
///
/// ```
/// use dcgan_data::scan::has_image_extension;
/// assert!(has_image_extension("cats/Felix.JPG".as_ref()));
/// assert!(!has_image_extension("cats/felix.jpg.cat".as_ref()));
/// ```
pub fn has_image_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| e.eq_ignore_ascii_case(x)))
}

/// One image file found by [`scan`], with the metadata the cache key is made of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageFile {
    /// Path relative to the scanned root.
    pub relative: PathBuf,
    /// Size in bytes.
    pub len: u64,
    /// Last modification time, if the file system records one.
    pub modified: Option<SystemTime>,
}

/// The result of [`scan`]: the image files in stable order, plus entries that could not be read.
#[derive(Clone, Debug)]
pub struct Scan {
    /// The folder that was scanned, as given.
    pub root: PathBuf,
    /// Image files, sorted by relative path.
    pub files: Vec<ImageFile>,
    /// Directory entries that could not be read (path + reason).
    pub unreadable: Vec<SkippedFile>,
}

impl Scan {
    /// The full path of `file` (root joined with its relative path).
    pub fn path_of(&self, file: &ImageFile) -> PathBuf {
        self.root.join(&file.relative)
    }
}

/// Scans `root` recursively for image files (see the [module docs](self) for the rules).
///
/// # Errors
/// [`Error::NotFound`] if `root` does not exist, [`Error::NotADirectory`] if it is a file,
/// [`Error::Io`] if it cannot be listed, [`Error::EmptyFolder`] if no image file is found.
pub fn scan(root: &Path) -> Result<Scan> {
    let meta = match std::fs::metadata(root) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::NotFound {
                path: root.to_path_buf(),
            })
        }
        Err(e) => return Err(Error::io("cannot read data folder", root, e)),
    };
    if !meta.is_dir() {
        return Err(Error::NotADirectory {
            path: root.to_path_buf(),
        });
    }

    let mut files = Vec::new();
    let mut unreadable = Vec::new();
    let walker = walkdir::WalkDir::new(root)
        .follow_links(true)
        .into_iter()
        .filter_entry(|e| e.depth() == 0 || !e.file_name().to_string_lossy().starts_with('.'));
    for entry in walker {
        let entry = match entry {
            Ok(entry) => entry,
            Err(err) => {
                let path = err
                    .path()
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|| root.to_path_buf());
                if err.depth() == 0 {
                    let io = err
                        .into_io_error()
                        .unwrap_or_else(|| std::io::Error::other("cannot list folder"));
                    return Err(Error::io("cannot list data folder", path, io));
                }
                unreadable.push(SkippedFile {
                    path,
                    reason: SkipReason::Io(err.to_string()),
                });
                continue;
            }
        };
        if !entry.file_type().is_file() || !has_image_extension(entry.path()) {
            continue;
        }
        let relative = entry
            .path()
            .strip_prefix(root)
            .unwrap_or(entry.path())
            .to_path_buf();
        match entry.metadata() {
            Ok(m) => files.push(ImageFile {
                relative,
                len: m.len(),
                modified: m.modified().ok(),
            }),
            Err(err) => unreadable.push(SkippedFile {
                path: entry.path().to_path_buf(),
                reason: SkipReason::Io(err.to_string()),
            }),
        }
    }
    if files.is_empty() {
        return Err(Error::EmptyFolder {
            path: root.to_path_buf(),
        });
    }
    files.sort_by(|a, b| a.relative.cmp(&b.relative));
    unreadable.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(Scan {
        root: root.to_path_buf(),
        files,
        unreadable,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn finds_images_recursively_in_sorted_order_any_case() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("b/sub")).unwrap();
        fs::create_dir_all(root.join("a")).unwrap();
        fs::create_dir_all(root.join(".catgan-cache")).unwrap();
        for name in [
            "z.PNG",
            "b/sub/x.JpEg",
            "a/y.webp",
            "a/notes.txt",
            "a/cat.jpg.cat",
            "b/t.TIF",
            "b/u.tiff",
            "b/v.gif",
            "b/w.bmp",
            ".hidden.jpg",
            ".catgan-cache/c.png",
        ] {
            fs::write(root.join(name), b"x").unwrap();
        }
        let found: Vec<_> = scan(root)
            .unwrap()
            .files
            .into_iter()
            .map(|f| f.relative.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            found,
            [
                "a/y.webp",
                "b/sub/x.JpEg",
                "b/t.TIF",
                "b/u.tiff",
                "b/v.gif",
                "b/w.bmp",
                "z.PNG"
            ]
        );
    }

    #[test]
    fn clear_errors_for_missing_file_and_empty() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        assert!(matches!(scan(&missing), Err(Error::NotFound { path }) if path == missing));

        let file = dir.path().join("cat.jpg");
        fs::write(&file, b"x").unwrap();
        let err = scan(&file).unwrap_err();
        assert!(matches!(&err, Error::NotADirectory { path } if *path == file));
        assert!(err.to_string().contains("is a file, not a folder"));

        let empty = dir.path().join("empty");
        fs::create_dir(&empty).unwrap();
        fs::write(empty.join("readme.txt"), b"x").unwrap();
        let err = scan(&empty).unwrap_err();
        assert!(matches!(&err, Error::EmptyFolder { path } if *path == empty));
        assert!(err.to_string().contains(".jpg"));
    }

    #[test]
    fn records_size_and_mtime() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("a.png"), b"12345").unwrap();
        let s = scan(dir.path()).unwrap();
        assert_eq!(s.files[0].len, 5);
        assert!(s.files[0].modified.is_some());
        assert_eq!(s.path_of(&s.files[0]), dir.path().join("a.png"));
    }
}
