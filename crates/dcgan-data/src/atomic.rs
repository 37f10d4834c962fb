//! Atomic file writes: the one way the catgan crates replace a file.
//!
//! The content goes to a temporary file in the target's folder, which is fsynced, renamed
//! over the target, and the folder fsynced (the [`atomic-write-file`](atomic_write_file)
//! crate). A crash, `kill -9` or a full disk at any moment leaves either the old file or
//! the new one, never a truncated one. On Linux the temporary file is an `O_TMPFILE`,
//! which has no name until it is complete, so a killed process leaves nothing behind;
//! elsewhere, and on file systems without `O_TMPFILE` (NFS, FUSE, FAT), it is a hidden
//! `.NAME.XXXXXX` next to the target.
//!
//! Every writer uses it: the data cache and prepared crops here, the converted FID weights
//! and statistics in `dcgan-metrics`, the run folder's files in the `cats` toolkit.
//! `dcgan-core` (which does not depend on this crate) writes its checkpoints through the
//! same crate the same way.

use std::io::{self, BufWriter, Write};
use std::path::Path;

use atomic_write_file::AtomicWriteFile;

/// Replaces `path` with `bytes`, atomically (see the [module docs](self)). The folder must
/// exist.
///
/// # Errors
/// The I/O error, without the path (callers add it); `path` is then unchanged and no
/// temporary file is left.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomically_with(path, |out| out.write_all(bytes))
}

/// Replaces `path` with what `fill` writes (buffered), atomically (see the
/// [module docs](self)): nothing replaces `path` unless `fill` succeeds. The folder must
/// exist.
///
/// # Errors
/// As [`write_atomically`], or the error `fill` returned.
pub fn write_atomically_with(
    path: &Path,
    fill: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> io::Result<()> {
    // The rename onto a folder would fail after the temporary file got its name (and
    // would leave it): refuse first.
    if path.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::IsADirectory,
            "a folder is in the way",
        ));
    }
    let file = AtomicWriteFile::open(path)?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    fill(&mut out)?;
    // Dropping an uncommitted file (on any error above) discards it.
    out.into_inner().map_err(|e| e.into_error())?.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn replaces_the_file_and_leaves_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.json");
        write_atomically(&path, b"one").unwrap();
        write_atomically(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(names(dir.path()), ["a.json"]);
    }

    #[test]
    fn a_failed_write_keeps_the_old_file_and_leaves_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.json");
        write_atomically(&path, b"old").unwrap();
        let err = write_atomically_with(&path, |out| {
            out.write_all(b"half")?;
            Err(io::Error::other("disk full"))
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "disk full");
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert_eq!(names(dir.path()), ["a.json"]);

        // A folder in the way is refused without leaving a temporary file.
        let blocked = dir.path().join("blocked");
        std::fs::create_dir(&blocked).unwrap();
        assert!(write_atomically(&blocked, b"x").is_err());
        assert!(blocked.is_dir());
        assert_eq!(names(dir.path()), ["a.json", "blocked"]);

        // A missing folder is an error, not a panic.
        assert!(write_atomically(&dir.path().join("none/a.json"), b"x").is_err());
    }
}
