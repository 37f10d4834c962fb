//! Finding the images: a recursive, sorted scan of a data folder. This is the one walker
//! of catgan: training, `cats inspect-data`, `cats fid`, `cats eval` and the FID probe
//! during training all read folders through it, so they agree on what an image file is.
//!
//! Rules:
//! - extensions `jpg jpeg png bmp gif webp tif tiff`, in any letter case;
//! - only **regular files** are images: a FIFO, socket or device named like an image is
//!   skipped and reported ([`SkipReason::NotARegularFile`]); it is never opened (opening a
//!   FIFO waits forever for a writer). The scan classifies entries from their metadata
//!   alone and never opens a file;
//! - hidden entries (name starting with `.`) below the root are skipped, which also keeps
//!   macOS `._*` side files and the `.catgan-cache/` folders of older versions out of the
//!   data;
//! - symbolic links are followed; a link back to a folder already being searched is
//!   reported ([`SkipReason::LinkLoop`]) and not followed, so a loop neither hangs the scan
//!   nor counts images twice;
//! - the result is sorted by path relative to the root, component by component, so the
//!   order is the same on every machine and every run;
//! - entries that cannot be read (permissions, broken links) are reported, not fatal.
//!
//! [`Scan::fingerprint`] condenses the file list into a [`DataFingerprint`] (count and a
//! SHA-256 over the relative paths and sizes) that a checkpoint can keep to notice, on
//! resume, that the data changed.

use std::fs::FileType;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

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
    /// Entries that were left out, with the reason, sorted by path: entries that could
    /// not be read, link loops, and FIFOs, sockets or devices named like images.
    pub unreadable: Vec<SkippedFile>,
}

impl Scan {
    /// The full path of `file` (root joined with its relative path).
    pub fn path_of(&self, file: &ImageFile) -> PathBuf {
        self.root.join(&file.relative)
    }

    /// The fingerprint of the files found: their number and a SHA-256 over their relative
    /// paths and sizes (not their modification times, so a copy of the data folder has
    /// the same fingerprint). See [`DataFingerprint`].
    pub fn fingerprint(&self) -> DataFingerprint {
        DataFingerprint::from_entries(
            self.files
                .iter()
                .map(|f| (portable_path(&f.relative), f.len)),
        )
    }
}

/// `relative` with `/` between its components on every platform.
fn portable_path(relative: &Path) -> String {
    relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// What a set of image files looks like, in a few bytes: how many files there are and a
/// SHA-256 over their relative paths (with `/` separators) and byte sizes, in sorted order.
///
/// Modification times are left out on purpose: a data folder copied to another machine
/// (or restored from a backup) has the same fingerprint. Keep it with a checkpoint and
/// compare on resume with [`describe_difference`](Self::describe_difference).
///
/// ```
/// use dcgan_data::DataFingerprint;
/// let then = DataFingerprint::from_entries([("a.png".to_string(), 10), ("b.png".to_string(), 20)]);
/// let now = DataFingerprint::from_entries([("a.png".to_string(), 10)]);
/// assert_eq!(then.describe_difference(&then), None);
/// assert_eq!(then.describe_difference(&now).unwrap(), "2 files then, 1 now");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DataFingerprint {
    /// Number of image files.
    pub files: usize,
    /// Lower-case hex SHA-256 over the sorted relative paths and sizes.
    pub sha256: String,
}

impl DataFingerprint {
    /// The fingerprint of `(relative path, size in bytes)` pairs, in any order (they are
    /// sorted by path first). Paths should use `/` between components.
    pub fn from_entries(entries: impl IntoIterator<Item = (String, u64)>) -> Self {
        let mut entries: Vec<(String, u64)> = entries.into_iter().collect();
        entries.sort();
        let mut h = Sha256::new();
        h.update(b"catgan-data-fingerprint/1");
        h.update((entries.len() as u64).to_le_bytes());
        for (path, len) in &entries {
            h.update((path.len() as u64).to_le_bytes());
            h.update(path.as_bytes());
            h.update(len.to_le_bytes());
        }
        DataFingerprint {
            files: entries.len(),
            sha256: h.finalize().iter().map(|b| format!("{b:02x}")).collect(),
        }
    }

    /// How `now` differs from `self` (the fingerprint recorded earlier), in words for a
    /// message, or `None` if they are the same: `"4121 files then, 4120 now"`, or
    /// `"same number of files (4121), but names or sizes changed"`.
    pub fn describe_difference(&self, now: &DataFingerprint) -> Option<String> {
        if self == now {
            None
        } else if self.files != now.files {
            Some(format!("{} files then, {} now", self.files, now.files))
        } else {
            Some(format!(
                "same number of files ({}), but names or sizes changed",
                self.files
            ))
        }
    }
}

impl std::fmt::Display for DataFingerprint {
    /// `4121 files, sha256 0123456789abcdef` (the first 16 hex digits).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let short = self.sha256.get(..16).unwrap_or(&self.sha256);
        let unit = if self.files == 1 { "file" } else { "files" };
        write!(f, "{} {unit}, sha256 {short}", self.files)
    }
}

/// Whether the last component of `path` is hidden (starts with `.`).
fn is_hidden(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
}

/// What kind of special file `file_type` is, for [`SkipReason::NotARegularFile`].
fn special_kind(file_type: FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if file_type.is_fifo() {
            return "FIFO";
        } else if file_type.is_socket() {
            return "socket";
        } else if file_type.is_block_device() {
            return "block device";
        } else if file_type.is_char_device() {
            return "character device";
        }
    }
    let _ = file_type;
    "special file"
}

/// Scans `root` recursively for image files (see the [module docs](self) for the rules).
///
/// # Errors
/// [`Error::NotFound`] if `root` does not exist, [`Error::NotADirectory`] if it is a file,
/// [`Error::Io`] if it cannot be listed, [`Error::EmptyFolder`] if no image file is found,
/// [`Error::NoUsableImages`] if entries named like images were found but none is a
/// readable regular file (e.g. only a FIFO named `x.png`).
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
        .filter_entry(|e| e.depth() == 0 || !is_hidden(e.path()));
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
                // walkdir hands errors past `filter_entry`: a hidden entry stays ignored
                // even when it is a broken link (editors' `.#name` locks) or a loop.
                if is_hidden(&path) {
                    continue;
                }
                let reason = match err.loop_ancestor() {
                    Some(ancestor) => SkipReason::LinkLoop(ancestor.display().to_string()),
                    None => SkipReason::Io(err.to_string()),
                };
                unreadable.push(SkippedFile { path, reason });
                continue;
            }
        };
        // Classified from the metadata walkdir already has (the link's target when
        // following links): no file is opened here.
        let file_type = entry.file_type();
        if file_type.is_dir() || !has_image_extension(entry.path()) {
            continue;
        }
        if !file_type.is_file() {
            unreadable.push(SkippedFile {
                path: entry.path().to_path_buf(),
                reason: SkipReason::NotARegularFile(special_kind(file_type).to_string()),
            });
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
    unreadable.sort_by(|a, b| a.path.cmp(&b.path));
    if files.is_empty() {
        return Err(match unreadable.first() {
            None => Error::EmptyFolder {
                path: root.to_path_buf(),
            },
            Some(first) => Error::NoUsableImages {
                path: root.to_path_buf(),
                found: unreadable.len(),
                first: Box::new((first.path.clone(), first.reason.clone())),
            },
        });
    }
    files.sort_by(|a, b| a.relative.cmp(&b.relative));
    Ok(Scan {
        root: root.to_path_buf(),
        files,
        unreadable,
    })
}

#[cfg(test)]
pub(crate) mod tests {
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

    /// Runs `f` on another thread and fails the test if it does not return within 60 s
    /// (a walker that opens a FIFO or follows a link loop would hang forever).
    pub(crate) fn within_a_minute<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(std::time::Duration::from_secs(60))
            .expect("the scan did not finish within a minute (hang?)")
    }

    fn names(scan: &Scan) -> Vec<String> {
        scan.files
            .iter()
            .map(|f| portable_path(&f.relative))
            .collect()
    }

    fn skipped(scan: &Scan) -> Vec<(String, SkipReason)> {
        scan.unreadable
            .iter()
            .map(|s| {
                let rel = s.path.strip_prefix(&scan.root).unwrap_or(&s.path);
                (portable_path(rel), s.reason.clone())
            })
            .collect()
    }

    #[cfg(unix)]
    #[test]
    fn fifos_sockets_and_devices_named_like_images_are_skipped_with_a_reason_never_opened() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        fs::create_dir(root.join("sub")).unwrap();
        fs::write(root.join("a.png"), b"x").unwrap();
        for fifo in ["b.png", "sub/c.JPG", "notes.txt"] {
            let status = std::process::Command::new("mkfifo")
                .arg(root.join(fifo))
                .status()
                .unwrap();
            assert!(status.success());
        }
        let _socket = std::os::unix::net::UnixListener::bind(root.join("x.png")).unwrap();
        // A link to a character device, named like an image.
        std::os::unix::fs::symlink("/dev/null", root.join("null.jpg")).unwrap();
        let scan = within_a_minute(move || scan(&root).unwrap());
        assert_eq!(names(&scan), ["a.png"]);
        assert_eq!(
            skipped(&scan),
            [
                ("b.png".into(), SkipReason::NotARegularFile("FIFO".into())),
                (
                    "null.jpg".into(),
                    SkipReason::NotARegularFile("character device".into())
                ),
                (
                    "sub/c.JPG".into(),
                    SkipReason::NotARegularFile("FIFO".into())
                ),
                ("x.png".into(), SkipReason::NotARegularFile("socket".into())),
            ]
        );
        assert_eq!(
            scan.unreadable[0].to_string(),
            format!(
                "{}: not a regular file (FIFO); only regular files are read",
                dir.path().join("b.png").display()
            )
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_folder_holding_only_a_fifo_says_why_nothing_is_usable() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let status = std::process::Command::new("mkfifo")
            .arg(root.join("only.png"))
            .status()
            .unwrap();
        assert!(status.success());
        let err = within_a_minute(move || scan(&root).unwrap_err());
        assert!(
            matches!(err, Error::NoUsableImages { found: 1, .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("only.png"), "{err}");
        assert!(err.to_string().contains("FIFO"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn symlink_loops_are_reported_and_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("data");
        fs::create_dir_all(root.join("sub/deeper")).unwrap();
        fs::write(root.join("a.png"), b"1").unwrap();
        fs::write(root.join("sub/b.gif"), b"22").unwrap();
        // Two loops: one to the root, one to a parent.
        std::os::unix::fs::symlink(&root, root.join("sub/loop")).unwrap();
        std::os::unix::fs::symlink(root.join("sub"), root.join("sub/deeper/up")).unwrap();
        // Hidden entries stay ignored even as a loop or a dangling link (an editor lock).
        std::os::unix::fs::symlink(&root, root.join("sub/.hidden-loop")).unwrap();
        std::os::unix::fs::symlink("nowhere", root.join(".#a.png")).unwrap();
        // A link to a folder outside is followed like a folder.
        let outside = dir.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("c.jpeg"), b"333").unwrap();
        std::os::unix::fs::symlink(&outside, root.join("linked")).unwrap();
        let r = root.clone();
        let scan = within_a_minute(move || scan(&r).unwrap());
        assert_eq!(names(&scan), ["a.png", "linked/c.jpeg", "sub/b.gif"]);
        let skipped = skipped(&scan);
        assert_eq!(skipped.len(), 2, "{skipped:?}");
        assert_eq!(skipped[0].0, "sub/deeper/up");
        assert_eq!(
            skipped[0].1,
            SkipReason::LinkLoop(root.join("sub").display().to_string())
        );
        assert_eq!(skipped[1].0, "sub/loop");
        assert_eq!(
            skipped[1].1,
            SkipReason::LinkLoop(root.display().to_string())
        );
        assert!(scan.unreadable[1]
            .to_string()
            .contains("symbolic link loop"));
    }

    #[test]
    fn fingerprint_ignores_times_and_sees_names_sizes_and_count() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        fs::create_dir_all(a.join("sub")).unwrap();
        fs::write(a.join("x.png"), b"12345").unwrap();
        fs::write(a.join("sub/y.JPG"), b"123").unwrap();
        fs::write(a.join("notes.txt"), b"not counted").unwrap();
        let fa = scan(&a).unwrap().fingerprint();
        assert_eq!(fa.files, 2);
        assert_eq!(fa.sha256.len(), 64);
        assert!(fa.to_string().starts_with("2 files, sha256 "), "{fa}");
        assert_eq!(fa.to_string().len(), "2 files, sha256 ".len() + 16);

        // A copy elsewhere, written later (other modification times): same fingerprint.
        let b = dir.path().join("b");
        fs::create_dir_all(b.join("sub")).unwrap();
        fs::write(b.join("sub/y.JPG"), b"abc").unwrap();
        fs::write(b.join("x.png"), b"abcde").unwrap();
        let f = fs::File::options()
            .write(true)
            .open(b.join("x.png"))
            .unwrap();
        f.set_modified(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(86_400))
            .unwrap();
        drop(f);
        assert_eq!(scan(&b).unwrap().fingerprint(), fa);

        // A size change, a rename, a removal.
        fs::write(b.join("x.png"), b"abcdef").unwrap();
        let resized = scan(&b).unwrap().fingerprint();
        assert_ne!(resized, fa);
        assert_eq!(
            fa.describe_difference(&resized).unwrap(),
            "same number of files (2), but names or sizes changed"
        );
        fs::write(b.join("x.png"), b"abcde").unwrap();
        fs::rename(b.join("x.png"), b.join("z.png")).unwrap();
        assert_ne!(scan(&b).unwrap().fingerprint(), fa);
        fs::remove_file(b.join("z.png")).unwrap();
        let fewer = scan(&b).unwrap().fingerprint();
        assert_eq!(
            fa.describe_difference(&fewer).unwrap(),
            "2 files then, 1 now"
        );
        assert_eq!(fewer.to_string()[..7], *"1 file,");
        assert_eq!(fa.describe_difference(&fa.clone()), None);

        // Serialisable (kept in checkpoints).
        let json = serde_json::to_string(&fa).unwrap();
        assert_eq!(serde_json::from_str::<DataFingerprint>(&json).unwrap(), fa);
        // Entries in any order give the same fingerprint.
        assert_eq!(
            DataFingerprint::from_entries([("sub/y.JPG".into(), 3), ("x.png".into(), 5)]),
            DataFingerprint::from_entries([("x.png".into(), 5), ("sub/y.JPG".into(), 3)])
        );
        assert_eq!(
            DataFingerprint::from_entries([("x.png".into(), 5), ("sub/y.JPG".into(), 3)]),
            fa
        );
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
