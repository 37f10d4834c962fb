//! The preprocessed cache: every usable image, decoded and resized once, in one uint8 file.
//!
//! # File format (version 1, little endian)
//! ```text
//! header  64 B  magic "CATGANDC", version u32, image_size u32, count u64, meta_len u64,
//!               key [u8; 32]
//! pixels        count × size × size × 3 bytes, HWC RGB, images in scan order
//! meta          meta_len bytes of JSON: indices (into the scan) of the usable files, and the
//!               skipped files with their reasons
//! footer  24 B  magic "CATGANDE", count u64, CRC-32 of everything before the footer u32,
//!               4 zero bytes
//! ```
//! A file is accepted only if its length is exactly what the header announces, both magics
//! and counts agree, the CRC matches and the key is the expected one. It is written
//! atomically ([`crate::atomic`]), so a crash or a full disk never leaves a truncated file
//! under the cache name; and a truncated file would fail the length and footer checks
//! anyway.
//!
//! # Where
//! In the `data/` subfolder of catgan's cache folder ([`CacheLocation::Auto`], see
//! [`crate::cache_folder`]), never in the data folder, which may be read-only or shared. The file name ([`cache_file_name`])
//! is derived from the data folder's absolute path, so one cache folder serves many data
//! folders.
//!
//! # Key
//! SHA-256 over the format version, the target size, the crop mode, the decoding limits and,
//! for each scanned file in order, its relative path, size and modification time (ns). Any
//! added, removed, renamed, resized or touched file, or another size or crop mode, gives a
//! new key, and the cache is rebuilt.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::decode::{DecodeLimits, SkipReason};
use crate::error::{Error, Result};
use crate::scan::ImageFile;
use crate::transform::CropMode;

const MAGIC: &[u8; 8] = b"CATGANDC";
const FOOTER_MAGIC: &[u8; 8] = b"CATGANDE";
/// Version of the cache format; part of the key.
pub const CACHE_FORMAT_VERSION: u32 = 1;
const HEADER_LEN: usize = 64;
const FOOTER_LEN: usize = 24;

/// A 32-byte cache key (SHA-256), see the [module docs](self).
pub type CacheKey = [u8; 32];

/// Computes the cache key for a scanned file list and the preprocessing settings.
pub fn cache_key(
    files: &[ImageFile],
    image_size: u32,
    crop: CropMode,
    limits: DecodeLimits,
) -> CacheKey {
    let mut h = Sha256::new();
    h.update(b"catgan-data-cache");
    h.update(CACHE_FORMAT_VERSION.to_le_bytes());
    h.update(image_size.to_le_bytes());
    h.update(crop.name().as_bytes());
    h.update(limits.max_width.to_le_bytes());
    h.update(limits.max_height.to_le_bytes());
    h.update(limits.max_alloc_bytes.to_le_bytes());
    h.update((files.len() as u64).to_le_bytes());
    for f in files {
        let path = f.relative.to_string_lossy();
        h.update((path.len() as u64).to_le_bytes());
        h.update(path.as_bytes());
        h.update(f.len.to_le_bytes());
        let nanos: i128 = match f.modified {
            Some(t) => match t.duration_since(std::time::UNIX_EPOCH) {
                Ok(d) => d.as_nanos() as i128,
                Err(e) => -(e.duration().as_nanos() as i128),
            },
            None => i128::MIN,
        };
        h.update(nanos.to_le_bytes());
    }
    h.finalize().into()
}

/// Lower-case hex of a key (for logs and checkpoints).
pub fn key_hex(key: &CacheKey) -> String {
    key.iter().map(|b| format!("{b:02x}")).collect()
}

/// What a cache file holds, in memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheContents {
    /// The key it was built for.
    pub key: CacheKey,
    /// Side of every image, in pixels.
    pub image_size: u32,
    /// `usable.len() × size × size × 3` bytes, HWC RGB.
    pub pixels: Vec<u8>,
    /// For each stored image, its index in the scan's file list.
    pub usable: Vec<u32>,
    /// Files of the scan that were skipped: index in the file list, and reason.
    pub skipped: Vec<(u32, SkipReason)>,
}

#[derive(Serialize, Deserialize)]
struct Meta {
    usable: Vec<u32>,
    skipped: Vec<(u32, SkipReason)>,
}

fn invalid(path: &Path, reason: impl Into<String>) -> Error {
    Error::InvalidCache {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Writes `contents` to `path` atomically ([`crate::atomic`]). On error nothing is left
/// under `path` (an older file there stays as it was).
///
/// # Errors
/// [`Error::Io`] if the folder is not writable or the disk is full;
/// [`Error::InvalidCache`] if `contents` is inconsistent.
pub fn write_cache(path: &Path, contents: &CacheContents) -> Result<()> {
    let image_bytes = 3 * contents.image_size as usize * contents.image_size as usize;
    if contents.pixels.len() != contents.usable.len() * image_bytes {
        return Err(invalid(path, "pixel buffer does not match the image count"));
    }
    let meta = serde_json::to_vec(&Meta {
        usable: contents.usable.clone(),
        skipped: contents.skipped.clone(),
    })
    .map_err(|e| invalid(path, e.to_string()))?;
    let count = contents.usable.len() as u64;

    let mut header = Vec::with_capacity(HEADER_LEN);
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&CACHE_FORMAT_VERSION.to_le_bytes());
    header.extend_from_slice(&contents.image_size.to_le_bytes());
    header.extend_from_slice(&count.to_le_bytes());
    header.extend_from_slice(&(meta.len() as u64).to_le_bytes());
    header.extend_from_slice(&contents.key);
    debug_assert_eq!(header.len(), HEADER_LEN);

    let mut crc = crc32fast::Hasher::new();
    crc.update(&header);
    crc.update(&contents.pixels);
    crc.update(&meta);
    let mut footer = Vec::with_capacity(FOOTER_LEN);
    footer.extend_from_slice(FOOTER_MAGIC);
    footer.extend_from_slice(&count.to_le_bytes());
    footer.extend_from_slice(&crc.finalize().to_le_bytes());
    footer.extend_from_slice(&[0; 4]);

    crate::atomic::write_atomically_with(path, |out| {
        out.write_all(&header)?;
        out.write_all(&contents.pixels)?;
        out.write_all(&meta)?;
        out.write_all(&footer)
    })
    .map_err(|e| Error::io("cannot write cache file", path, e))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Reads and fully validates a cache file (see the [module docs](self)).
///
/// With `expected_key`, a file built for other files or settings is refused.
///
/// # Errors
/// [`Error::Io`] if it cannot be read, [`Error::InvalidCache`] if any check fails.
pub fn read_cache(path: &Path, expected_key: Option<&CacheKey>) -> Result<CacheContents> {
    let mut file = File::open(path).map_err(|e| Error::io("cannot open cache file", path, e))?;
    let actual_len = file
        .metadata()
        .map_err(|e| Error::io("cannot read cache file", path, e))?
        .len();
    let mut header = [0u8; HEADER_LEN];
    file.read_exact(&mut header)
        .map_err(|_| invalid(path, "shorter than its header"))?;
    if &header[..8] != MAGIC {
        return Err(invalid(path, "not a catgan cache file (bad magic)"));
    }
    let version = u32_at(&header, 8);
    if version != CACHE_FORMAT_VERSION {
        return Err(invalid(
            path,
            format!("format version {version}, expected {CACHE_FORMAT_VERSION}"),
        ));
    }
    let image_size = u32_at(&header, 12);
    let count = u64_at(&header, 16);
    let meta_len = u64_at(&header, 24);
    let key: CacheKey = header[32..64].try_into().expect("32 bytes");
    if let Some(expected) = expected_key {
        if &key != expected {
            return Err(invalid(
                path,
                "built for other files or settings (key differs)",
            ));
        }
    }
    let pixel_len = (count as u128) * 3 * (image_size as u128) * (image_size as u128);
    let expected_len = HEADER_LEN as u128 + pixel_len + meta_len as u128 + FOOTER_LEN as u128;
    if expected_len != actual_len as u128 {
        return Err(invalid(
            path,
            format!("{actual_len} bytes, the header announces {expected_len} (incomplete file?)"),
        ));
    }
    let mut pixels = vec![0u8; pixel_len as usize];
    let mut meta = vec![0u8; meta_len as usize];
    let mut footer = [0u8; FOOTER_LEN];
    file.read_exact(&mut pixels)
        .and_then(|_| file.read_exact(&mut meta))
        .and_then(|_| file.read_exact(&mut footer))
        .map_err(|e| Error::io("cannot read cache file", path, e))?;
    if &footer[..8] != FOOTER_MAGIC || u64_at(&footer, 8) != count {
        return Err(invalid(
            path,
            "footer missing or inconsistent (incomplete file?)",
        ));
    }
    let mut crc = crc32fast::Hasher::new();
    crc.update(&header);
    crc.update(&pixels);
    crc.update(&meta);
    if crc.finalize() != u32_at(&footer, 16) {
        return Err(invalid(path, "checksum mismatch (corrupted file)"));
    }
    let meta: Meta =
        serde_json::from_slice(&meta).map_err(|e| invalid(path, format!("bad metadata: {e}")))?;
    if meta.usable.len() as u64 != count {
        return Err(invalid(path, "metadata does not match the image count"));
    }
    Ok(CacheContents {
        key,
        image_size,
        pixels,
        usable: meta.usable,
        skipped: meta.skipped,
    })
}

/// Where the cache is kept.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum CacheLocation {
    /// The `data/` subfolder of catgan's cache folder ([`crate::cache_folder`]:
    /// `$CATGAN_CACHE_DIR`, else `$XDG_CACHE_HOME/catgan`, else `~/.cache/catgan`; if that
    /// is not writable, the one in the system temp folder); if none is writable, the data
    /// is kept in memory only. Never inside the data folder: data folders are often
    /// read-only or shared, and opening one must not change it.
    #[default]
    Auto,
    /// This folder (created if missing); if it is not writable, memory only.
    Dir(PathBuf),
    /// No cache file: decode every time the dataset is opened.
    Disabled,
}

/// The folders to try, in order, for `location` (see [`CacheLocation`]). The data folder
/// itself is never among them; the cache file's name ([`cache_file_name`]) tells data
/// folders apart.
pub fn cache_dirs(location: &CacheLocation) -> Vec<PathBuf> {
    match location {
        CacheLocation::Disabled => Vec::new(),
        CacheLocation::Dir(dir) => vec![dir.clone()],
        CacheLocation::Auto => crate::cache_folder::cache_roots()
            .into_iter()
            .map(|root| root.join(DATA_SUBFOLDER))
            .collect(),
    }
}

/// The subfolder of catgan's cache folders ([`crate::cache_folder`]) that holds data caches.
pub const DATA_SUBFOLDER: &str = "data";

/// The cache file name for a data folder and settings. It depends on the folder's absolute
/// path (so several data folders can share one cache folder) but not on the files: when they
/// change, the same file is rebuilt and replaced rather than left to pile up.
pub fn cache_file_name(root: &Path, image_size: u32, crop: CropMode) -> String {
    let absolute = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    let digest = Sha256::digest(absolute.to_string_lossy().as_bytes());
    let short: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("images-{short}-{image_size}px-{}.catgan-cache", crop.name())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> CacheContents {
        CacheContents {
            key: [7; 32],
            image_size: 2,
            pixels: (0..24).collect(),
            usable: vec![0, 2],
            skipped: vec![(1, SkipReason::Empty)],
        }
    }

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.catgan-cache");
        write_cache(&path, &sample()).unwrap();
        assert_eq!(read_cache(&path, Some(&[7; 32])).unwrap(), sample());
        // No temporary file left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn wrong_key_truncation_and_corruption_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.catgan-cache");
        write_cache(&path, &sample()).unwrap();
        assert!(matches!(
            read_cache(&path, Some(&[8; 32])),
            Err(Error::InvalidCache { .. })
        ));

        let full = std::fs::read(&path).unwrap();
        // Every strict prefix is refused: a partial write is never valid.
        for cut in 0..full.len() {
            std::fs::write(&path, &full[..cut]).unwrap();
            assert!(
                matches!(read_cache(&path, None), Err(Error::InvalidCache { .. })),
                "prefix of {cut} bytes accepted"
            );
        }
        // A flipped pixel byte is caught by the checksum.
        let mut bad = full.clone();
        bad[HEADER_LEN + 5] ^= 1;
        std::fs::write(&path, &bad).unwrap();
        let err = read_cache(&path, None).unwrap_err();
        assert!(err.to_string().contains("checksum"), "{err}");
    }

    #[test]
    fn auto_cache_folder_is_the_user_cache_never_the_data_folder() {
        // The order of the folders is `cache_folder`'s (tested there).
        let auto = cache_dirs(&CacheLocation::Auto);
        let roots = crate::cache_folder::cache_roots();
        assert_eq!(auto.len(), roots.len());
        for (dir, root) in auto.iter().zip(&roots) {
            assert_eq!(dir, &root.join("data"));
        }
        assert_eq!(
            cache_dirs(&CacheLocation::Dir("/d".into())),
            [PathBuf::from("/d")]
        );
        assert!(cache_dirs(&CacheLocation::Disabled).is_empty());
        // Nothing under a data folder.
        let data = Path::new("/srv/cats");
        assert!(auto
            .iter()
            .all(|d| !d.starts_with(data) && !d.ends_with(".catgan-cache")));
    }

    #[test]
    fn key_changes_with_files_and_settings() {
        let f = |len, secs| ImageFile {
            relative: "a.png".into(),
            len,
            modified: Some(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs)),
        };
        let l = DecodeLimits::default();
        let base = cache_key(&[f(10, 1)], 64, CropMode::Center, l);
        assert_eq!(base, cache_key(&[f(10, 1)], 64, CropMode::Center, l));
        assert_ne!(base, cache_key(&[f(11, 1)], 64, CropMode::Center, l));
        assert_ne!(base, cache_key(&[f(10, 2)], 64, CropMode::Center, l));
        assert_ne!(base, cache_key(&[f(10, 1)], 128, CropMode::Center, l));
        assert_ne!(base, cache_key(&[f(10, 1)], 64, CropMode::Pad, l));
        assert_ne!(
            base,
            cache_key(&[f(10, 1), f(10, 1)], 64, CropMode::Center, l)
        );
    }
}
