//! The built-in cats: 16 photos from this crate's `assets/cats/` compiled into the library,
//! the default training set when no data folder is given. Licences and credits:
//! `assets/cats/ATTRIBUTION.md` (15 FELIX domestic cats, CC BY-SA; scikit-image's
//! "chelsea", CC0).

use crate::dataset::{DatasetConfig, ImageDataset};
use crate::error::Result;

/// The built-in photos as `(file name, encoded bytes)` (JPEG and PNG, 256 px short side).
pub const BUILTIN_CATS: &[(&str, &[u8])] = &[
    ("chelsea.png", include_bytes!("../assets/cats/chelsea.png")),
    (
        "felix-101.jpg",
        include_bytes!("../assets/cats/felix-101.jpg"),
    ),
    (
        "felix-103.jpg",
        include_bytes!("../assets/cats/felix-103.jpg"),
    ),
    (
        "felix-104.jpg",
        include_bytes!("../assets/cats/felix-104.jpg"),
    ),
    (
        "felix-105.jpg",
        include_bytes!("../assets/cats/felix-105.jpg"),
    ),
    (
        "felix-106.jpg",
        include_bytes!("../assets/cats/felix-106.jpg"),
    ),
    (
        "felix-107.jpg",
        include_bytes!("../assets/cats/felix-107.jpg"),
    ),
    (
        "felix-109.jpg",
        include_bytes!("../assets/cats/felix-109.jpg"),
    ),
    (
        "felix-110.jpg",
        include_bytes!("../assets/cats/felix-110.jpg"),
    ),
    (
        "felix-111.jpg",
        include_bytes!("../assets/cats/felix-111.jpg"),
    ),
    (
        "felix-113.jpg",
        include_bytes!("../assets/cats/felix-113.jpg"),
    ),
    (
        "felix-115.jpg",
        include_bytes!("../assets/cats/felix-115.jpg"),
    ),
    (
        "felix-116.jpg",
        include_bytes!("../assets/cats/felix-116.jpg"),
    ),
    (
        "felix-118.jpg",
        include_bytes!("../assets/cats/felix-118.jpg"),
    ),
    (
        "felix-120.jpg",
        include_bytes!("../assets/cats/felix-120.jpg"),
    ),
    (
        "felix-121.jpg",
        include_bytes!("../assets/cats/felix-121.jpg"),
    ),
];

impl ImageDataset {
    /// The built-in cats ([`BUILTIN_CATS`]), decoded and preprocessed like a folder
    /// (`config.cache` is ignored: they are decoded in memory, in well under a second).
    ///
    /// # Errors
    /// [`crate::Error::InvalidConfig`] for a bad `config.image_size`.
    ///
    /// ```
    /// use dcgan_data::{DatasetConfig, ImageDataset};
    /// let cats = ImageDataset::builtin(&DatasetConfig::new().with_image_size(32)).unwrap();
    /// assert_eq!(cats.len(), 16);
    /// ```
    pub fn builtin(config: &DatasetConfig) -> Result<Self> {
        Self::from_encoded("<built-in cats>", BUILTIN_CATS, config)
    }
}
