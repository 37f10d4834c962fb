//! Feature matrices, their statistics (mean, covariance in f64) and reference files.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use faer::{Mat, MatRef};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::error::{Error, Result};

/// Value of the `format` metadata key of reference statistics files.
pub const STATS_FORMAT: &str = "catgan-fid-stats/1";

/// Feature vectors, one row per image (row-major float32).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Features {
    dim: usize,
    data: Vec<f32>,
}

impl Features {
    /// No rows yet, `dim` columns.
    pub fn new(dim: usize) -> Self {
        Features {
            dim,
            data: Vec::new(),
        }
    }

    /// Rows from a flat row-major vector; `data.len()` must be a multiple of `dim`.
    pub fn from_rows(dim: usize, data: Vec<f32>) -> Result<Self> {
        if dim == 0 || !data.len().is_multiple_of(dim) {
            return Err(Error::Shape {
                what: "feature rows".into(),
                expected: format!("a multiple of dim {dim}"),
                got: format!("{} values", data.len()),
            });
        }
        Ok(Features { dim, data })
    }

    /// Columns per row.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.data.len().checked_div(self.dim).unwrap_or(0)
    }

    /// True without rows.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Row `i`.
    ///
    /// # Panics
    /// If `i >= self.len()`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    /// All rows, flat.
    pub fn as_slice(&self) -> &[f32] {
        &self.data
    }

    /// Appends the rows of `other` (same dimension).
    pub fn extend(&mut self, other: &Features) -> Result<()> {
        if self.dim != other.dim {
            return Err(Error::Shape {
                what: "appended features".into(),
                expected: format!("dim {}", self.dim),
                got: format!("dim {}", other.dim),
            });
        }
        self.data.extend_from_slice(&other.data);
        Ok(())
    }

    /// The rows as an `n x dim` f64 matrix.
    pub(crate) fn to_mat(&self) -> Mat<f64> {
        Mat::from_fn(self.len(), self.dim, |i, j| {
            self.data[i * self.dim + j] as f64
        })
    }
}

/// Mean and covariance (unbiased, `n - 1`) of a set of features, in f64, like
/// `np.mean(feats, axis=0)` and `np.cov(feats, rowvar=False)`.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureStats {
    /// Number of samples.
    pub n: usize,
    /// Mean, `dim` values.
    pub mean: Vec<f64>,
    /// Covariance, `dim x dim`, row-major, symmetric.
    pub cov: Vec<f64>,
}

impl FeatureStats {
    /// Statistics of `features` (at least 2 rows).
    ///
    /// ```
    /// use dcgan_metrics::{FeatureStats, Features};
    /// let f = Features::from_rows(2, vec![1.0, 0.0, 3.0, 2.0]).unwrap();
    /// let s = FeatureStats::from_features(&f).unwrap();
    /// assert_eq!(s.mean, vec![2.0, 1.0]);
    /// assert_eq!(s.cov, vec![2.0, 2.0, 2.0, 2.0]);
    /// ```
    pub fn from_features(features: &Features) -> Result<Self> {
        let n = features.len();
        if n < 2 {
            return Err(Error::TooFewSamples {
                what: "covariance".into(),
                got: n,
                need: 2,
            });
        }
        let d = features.dim();
        let mut mean = vec![0f64; d];
        for i in 0..n {
            for (m, &x) in mean.iter_mut().zip(features.row(i)) {
                *m += x as f64;
            }
        }
        for m in &mut mean {
            *m /= n as f64;
        }
        if mean.iter().any(|m| !m.is_finite()) {
            return Err(Error::Numeric {
                what: "feature mean",
                reason: "non-finite features".into(),
            });
        }
        let centered = Mat::from_fn(n, d, |i, j| features.row(i)[j] as f64 - mean[j]);
        let cov_mat = centered.transpose() * &centered;
        let scale = 1.0 / (n as f64 - 1.0);
        let mut cov = vec![0f64; d * d];
        for i in 0..d {
            for j in 0..d {
                // Exact symmetry, whatever the summation order of the product.
                cov[i * d + j] = 0.5 * (cov_mat[(i, j)] + cov_mat[(j, i)]) * scale;
            }
        }
        Ok(FeatureStats { n, mean, cov })
    }

    /// Statistics from their parts (e.g. computed elsewhere); checks the sizes.
    pub fn from_parts(n: usize, mean: Vec<f64>, cov: Vec<f64>) -> Result<Self> {
        let d = mean.len();
        if cov.len() != d * d {
            return Err(Error::Shape {
                what: "covariance".into(),
                expected: format!("{d}x{d} = {} values", d * d),
                got: format!("{} values", cov.len()),
            });
        }
        Ok(FeatureStats { n, mean, cov })
    }

    /// Feature dimension.
    pub fn dim(&self) -> usize {
        self.mean.len()
    }

    /// The covariance as a faer matrix view.
    pub(crate) fn cov_ref(&self) -> MatRef<'_, f64> {
        MatRef::from_row_major_slice(&self.cov, self.dim(), self.dim())
    }
}

/// Statistics of a reference set (e.g. the training images), saved once and compared
/// against many times. Keeps the features too when KID is wanted.
#[derive(Debug, Clone, PartialEq)]
pub struct ReferenceStats {
    /// Mean and covariance.
    pub stats: FeatureStats,
    /// The features themselves (needed for KID), if kept.
    pub features: Option<Features>,
    /// Where they came from (e.g. the image folder), free text.
    pub source: String,
}

impl ReferenceStats {
    /// Statistics of `features`; keeps them for KID if `keep_features`.
    pub fn from_features(
        features: Features,
        keep_features: bool,
        source: impl Into<String>,
    ) -> Result<Self> {
        let stats = FeatureStats::from_features(&features)?;
        Ok(ReferenceStats {
            stats,
            features: keep_features.then_some(features),
            source: source.into(),
        })
    }

    /// Writes a safetensors file: `mean` (F64 `[d]`), `cov` (F64 `[d, d]`), optionally
    /// `features` (F32 `[n, d]`); metadata `format` = [`STATS_FORMAT`], `n`, `source`;
    /// atomically ([`dcgan_data::atomic`]).
    pub fn save(&self, path: &Path) -> Result<()> {
        let d = self.stats.dim();
        let mean: Vec<u8> = self
            .stats
            .mean
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let cov: Vec<u8> = self
            .stats
            .cov
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let feats: Option<Vec<u8>> = self
            .features
            .as_ref()
            .map(|f| f.as_slice().iter().flat_map(|v| v.to_le_bytes()).collect());
        let err = |reason: String| Error::Format {
            path: path.to_path_buf(),
            what: "reference statistics",
            reason,
        };
        let mut views = vec![
            (
                "mean",
                TensorView::new(Dtype::F64, vec![d], &mean).map_err(|e| err(e.to_string()))?,
            ),
            (
                "cov",
                TensorView::new(Dtype::F64, vec![d, d], &cov).map_err(|e| err(e.to_string()))?,
            ),
        ];
        if let (Some(bytes), Some(f)) = (&feats, &self.features) {
            views.push((
                "features",
                TensorView::new(Dtype::F32, vec![f.len(), f.dim()], bytes)
                    .map_err(|e| err(e.to_string()))?,
            ));
        }
        let meta = HashMap::from([
            ("format".to_string(), STATS_FORMAT.to_string()),
            ("n".to_string(), self.stats.n.to_string()),
            ("source".to_string(), self.source.clone()),
        ]);
        let bytes =
            safetensors::tensor::serialize(views, Some(meta)).map_err(|e| err(e.to_string()))?;
        dcgan_data::atomic::write_atomically(path, &bytes).map_err(|e| Error::io(path, e))
    }

    /// Reads a file written by [`save`](Self::save).
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let err = |reason: String| Error::Format {
            path: PathBuf::from(path),
            what: "reference statistics",
            reason,
        };
        let (_, meta) = SafeTensors::read_metadata(&bytes).map_err(|e| err(e.to_string()))?;
        let meta = meta.metadata().clone().unwrap_or_default();
        if meta.get("format").map(String::as_str) != Some(STATS_FORMAT) {
            return Err(err(format!(
                "metadata format is {:?}, expected {STATS_FORMAT:?}",
                meta.get("format")
            )));
        }
        let n: usize = meta
            .get("n")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| err("metadata `n` missing or not a number".into()))?;
        let st = SafeTensors::deserialize(&bytes).map_err(|e| err(e.to_string()))?;
        let get = |name: &str, dtype: Dtype| {
            let view = st
                .tensor(name)
                .map_err(|_| err(format!("tensor `{name}` missing")))?;
            if view.dtype() != dtype {
                return Err(err(format!(
                    "tensor `{name}` is {:?}, expected {dtype:?}",
                    view.dtype()
                )));
            }
            Ok(view)
        };
        let mean = get("mean", Dtype::F64)?;
        let d = mean.shape().first().copied().unwrap_or(0);
        let cov = get("cov", Dtype::F64)?;
        if cov.shape() != [d, d] {
            return Err(err(format!(
                "`cov` has shape {:?}, expected [{d}, {d}]",
                cov.shape()
            )));
        }
        let f64s = |b: &[u8]| -> Vec<f64> {
            b.chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
                .collect()
        };
        let stats = FeatureStats {
            n,
            mean: f64s(mean.data()),
            cov: f64s(cov.data()),
        };
        let features = if st.names().contains(&"features") {
            let f = get("features", Dtype::F32)?;
            if f.shape() != [n, d] {
                return Err(err(format!(
                    "`features` has shape {:?}, expected [{n}, {d}]",
                    f.shape()
                )));
            }
            let data = f
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
                .collect();
            Some(Features::from_rows(d, data)?)
        } else {
            None
        };
        Ok(ReferenceStats {
            stats,
            features,
            source: meta.get("source").cloned().unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covariance_matches_a_hand_computation() {
        // Three 2-d points: (0,0), (2,0), (1,3): mean (1,1); cov = [[1, 0], [0, 3]].
        let f = Features::from_rows(2, vec![0.0, 0.0, 2.0, 0.0, 1.0, 3.0]).unwrap();
        let s = FeatureStats::from_features(&f).unwrap();
        assert_eq!(s.n, 3);
        assert_eq!(s.mean, vec![1.0, 1.0]);
        for (a, b) in s.cov.iter().zip([1.0, 0.0, 0.0, 3.0]) {
            assert!((a - b).abs() < 1e-12, "{:?}", s.cov);
        }
    }

    #[test]
    fn too_few_rows_and_bad_shapes_are_errors() {
        let one = Features::from_rows(3, vec![1.0, 2.0, 3.0]).unwrap();
        assert!(matches!(
            FeatureStats::from_features(&one),
            Err(Error::TooFewSamples { got: 1, .. })
        ));
        assert!(Features::from_rows(3, vec![1.0; 4]).is_err());
        assert!(FeatureStats::from_parts(2, vec![0.0; 2], vec![0.0; 3]).is_err());
        let mut a = Features::new(2);
        assert!(a.extend(&one).is_err());
    }

    #[test]
    fn reference_stats_round_trip_with_and_without_features() {
        let dir = tempfile::tempdir().unwrap();
        let f = Features::from_rows(3, (0..30).map(|v| (v as f32).sin()).collect()).unwrap();
        for keep in [false, true] {
            let r = ReferenceStats::from_features(f.clone(), keep, "unit test").unwrap();
            let p = dir.path().join(format!("ref{keep}.safetensors"));
            r.save(&p).unwrap();
            let back = ReferenceStats::load(&p).unwrap();
            assert_eq!(back, r);
            assert_eq!(back.features.is_some(), keep);
        }
        let junk = dir.path().join("junk.safetensors");
        std::fs::write(&junk, b"not safetensors").unwrap();
        let err = ReferenceStats::load(&junk).unwrap_err().to_string();
        assert!(err.contains("junk.safetensors"), "{err}");
    }
}
