//! Kernel Inception Distance (Bińkowski et al., "Demystifying MMD GANs", 2018).
//!
//! The unbiased estimate of the squared MMD with the cubic polynomial kernel
//! `k(x, y) = (x.y / d + 1)^3`, averaged over random subsets of both sets (size
//! `min(n_a, n_b, subset_size)`, without replacement within a subset); reported as
//! mean and (population) standard deviation over subsets, like torch-fidelity and
//! clean-fid. Unlike FID it is unbiased, so it can be compared across sample sizes,
//! and can be slightly negative when both sets come from the same distribution.

use faer::Mat;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result};
use crate::stats::Features;

/// Subsets and their size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KidConfig {
    /// Number of random subsets (default 100).
    pub subsets: usize,
    /// Largest subset size (default 1000).
    pub subset_size: usize,
    /// Seed of the subset sampler (ChaCha8).
    pub seed: u64,
}

impl Default for KidConfig {
    fn default() -> Self {
        KidConfig {
            subsets: 100,
            subset_size: 1000,
            seed: 0,
        }
    }
}

/// KID over subsets.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct KidScore {
    /// Mean of the subset estimates.
    pub mean: f64,
    /// Standard deviation of the subset estimates (ddof = 0).
    pub std: f64,
    /// Subset size used.
    pub subset_size: usize,
    /// Number of subsets.
    pub subsets: usize,
}

/// Above this many kernel entries (`n_a^2 + n_b^2 + n_a n_b`, 8 bytes each) the full
/// kernel matrices are not cached and each subset computes its own.
const MAX_CACHED_ENTRIES: usize = 40_000_000;

/// KID between feature sets `a` and `b`.
///
/// ```
/// use dcgan_metrics::{kernel_inception_distance, Features, KidConfig};
/// let a = Features::from_rows(2, vec![0.0, 1.0, 1.0, 0.0, 0.5, 0.5]).unwrap();
/// let kid = kernel_inception_distance(&a, &a, &KidConfig::default()).unwrap();
/// assert_eq!(kid.subset_size, 3);
/// ```
pub fn kernel_inception_distance(a: &Features, b: &Features, cfg: &KidConfig) -> Result<KidScore> {
    kid_impl(a, b, cfg, MAX_CACHED_ENTRIES)
}

fn kid_impl(a: &Features, b: &Features, cfg: &KidConfig, max_cached: usize) -> Result<KidScore> {
    if a.dim() != b.dim() {
        return Err(Error::Shape {
            what: "KID features".into(),
            expected: format!("dimension {}", a.dim()),
            got: format!("dimension {}", b.dim()),
        });
    }
    let m = a.len().min(b.len()).min(cfg.subset_size);
    if m < 2 {
        return Err(Error::TooFewSamples {
            what: "KID subset".into(),
            got: m,
            need: 2,
        });
    }
    if cfg.subsets == 0 {
        return Err(Error::TooFewSamples {
            what: "KID subsets".into(),
            got: 0,
            need: 1,
        });
    }
    let (na, nb) = (a.len(), b.len());
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut draws = Vec::with_capacity(cfg.subsets);
    for _ in 0..cfg.subsets {
        let ia = rand::seq::index::sample(&mut rng, na, m).into_vec();
        let ib = rand::seq::index::sample(&mut rng, nb, m).into_vec();
        draws.push((ia, ib));
    }
    let xa = a.to_mat();
    let xb = b.to_mat();
    let d = a.dim() as f64;
    let values: Vec<f64> = if na * na + nb * nb + na * nb <= max_cached {
        let kaa = kernel(&xa, &xa, d);
        let kbb = kernel(&xb, &xb, d);
        let kab = kernel(&xa, &xb, d);
        draws
            .iter()
            .map(|(ia, ib)| {
                mmd2_from_kernels(
                    |i, j| kaa[(ia[i], ia[j])],
                    |i, j| kbb[(ib[i], ib[j])],
                    |i, j| kab[(ia[i], ib[j])],
                    m,
                )
            })
            .collect()
    } else {
        draws
            .iter()
            .map(|(ia, ib)| {
                let sa = Mat::from_fn(m, xa.ncols(), |i, j| xa[(ia[i], j)]);
                let sb = Mat::from_fn(m, xb.ncols(), |i, j| xb[(ib[i], j)]);
                let (kaa, kbb, kab) = (
                    kernel(&sa, &sa, d),
                    kernel(&sb, &sb, d),
                    kernel(&sa, &sb, d),
                );
                mmd2_from_kernels(
                    |i, j| kaa[(i, j)],
                    |i, j| kbb[(i, j)],
                    |i, j| kab[(i, j)],
                    m,
                )
            })
            .collect()
    };
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / values.len() as f64;
    if !mean.is_finite() {
        return Err(Error::Numeric {
            what: "KID",
            reason: "non-finite features".into(),
        });
    }
    Ok(KidScore {
        mean,
        std: var.sqrt(),
        subset_size: m,
        subsets: cfg.subsets,
    })
}

/// Unbiased MMD^2 of two whole sets of equal size with the cubic polynomial kernel
/// (one subset estimate of KID).
pub fn polynomial_mmd2(a: &Features, b: &Features) -> Result<f64> {
    if a.dim() != b.dim() || a.len() != b.len() {
        return Err(Error::Shape {
            what: "MMD sets".into(),
            expected: format!("{} x {}", a.len(), a.dim()),
            got: format!("{} x {}", b.len(), b.dim()),
        });
    }
    let m = a.len();
    if m < 2 {
        return Err(Error::TooFewSamples {
            what: "MMD set".into(),
            got: m,
            need: 2,
        });
    }
    let (xa, xb) = (a.to_mat(), b.to_mat());
    let d = a.dim() as f64;
    let (kaa, kbb, kab) = (
        kernel(&xa, &xa, d),
        kernel(&xb, &xb, d),
        kernel(&xa, &xb, d),
    );
    Ok(mmd2_from_kernels(
        |i, j| kaa[(i, j)],
        |i, j| kbb[(i, j)],
        |i, j| kab[(i, j)],
        m,
    ))
}

/// `(x y^T / d + 1)^3`, elementwise.
fn kernel(x: &Mat<f64>, y: &Mat<f64>, d: f64) -> Mat<f64> {
    let g = x * y.transpose();
    Mat::from_fn(g.nrows(), g.ncols(), |i, j| (g[(i, j)] / d + 1.0).powi(3))
}

/// `(sum_{i != j} Kaa + sum_{i != j} Kbb) / (m (m - 1)) - 2 sum Kab / m^2`.
fn mmd2_from_kernels(
    kaa: impl Fn(usize, usize) -> f64,
    kbb: impl Fn(usize, usize) -> f64,
    kab: impl Fn(usize, usize) -> f64,
    m: usize,
) -> f64 {
    let (mut saa, mut sbb, mut sab) = (0.0, 0.0, 0.0);
    for i in 0..m {
        for j in 0..m {
            if i != j {
                saa += kaa(i, j);
                sbb += kbb(i, j);
            }
            sab += kab(i, j);
        }
    }
    let mf = m as f64;
    (saa + sbb) / (mf * (mf - 1.0)) - 2.0 * sab / (mf * mf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_distr::{Distribution, Normal};

    fn gaussian(n: usize, d: usize, mean: f32, std: f32, seed: u64) -> Features {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let normal = Normal::new(mean, std).unwrap();
        Features::from_rows(d, (0..n * d).map(|_| normal.sample(&mut rng)).collect()).unwrap()
    }

    fn config(subsets: usize, subset_size: usize, seed: u64) -> KidConfig {
        KidConfig {
            subsets,
            subset_size,
            seed,
        }
    }

    fn naive_mmd2(a: &Features, b: &Features) -> f64 {
        let d = a.dim() as f64;
        let k = |x: &[f32], y: &[f32]| {
            let dot: f64 = x.iter().zip(y).map(|(p, q)| *p as f64 * *q as f64).sum();
            (dot / d + 1.0).powi(3)
        };
        let m = a.len();
        let (mut saa, mut sbb, mut sab) = (0.0, 0.0, 0.0);
        for i in 0..m {
            for j in 0..m {
                if i != j {
                    saa += k(a.row(i), a.row(j));
                    sbb += k(b.row(i), b.row(j));
                }
                sab += k(a.row(i), b.row(j));
            }
        }
        let mf = m as f64;
        (saa + sbb) / (mf * (mf - 1.0)) - 2.0 * sab / (mf * mf)
    }

    #[test]
    fn mmd_matches_the_definition() {
        let a = gaussian(30, 8, 0.0, 1.0, 1);
        let b = gaussian(30, 8, 0.5, 1.0, 2);
        let fast = polynomial_mmd2(&a, &b).unwrap();
        let slow = naive_mmd2(&a, &b);
        assert!(
            (fast - slow).abs() < 1e-10 * slow.abs().max(1.0),
            "{fast} vs {slow}"
        );
        // With full-size subsets every subset is the whole set: KID = MMD, std = 0.
        let cfg = config(3, 1000, 9);
        let kid = kernel_inception_distance(&a, &b, &cfg).unwrap();
        assert!((kid.mean - slow).abs() < 1e-10 * slow.abs().max(1.0));
        assert!(kid.std < 1e-12);
    }

    #[test]
    fn mmd_has_the_closed_form_for_point_masses() {
        // All rows of a equal to u, all of b equal to v: MMD^2 = k(u,u) + k(v,v) - 2 k(u,v).
        let d = 4;
        let (u, v) = ([1.0f32, 0.0, 2.0, 0.0], [0.0f32, 1.0, 0.0, -1.0]);
        let a = Features::from_rows(d, u.repeat(5)).unwrap();
        let b = Features::from_rows(d, v.repeat(5)).unwrap();
        let k = |x: &[f32], y: &[f32]| {
            (x.iter().zip(y).map(|(p, q)| (p * q) as f64).sum::<f64>() / d as f64 + 1.0).powi(3)
        };
        let expect = k(&u, &u) + k(&v, &v) - 2.0 * k(&u, &v);
        let got = polynomial_mmd2(&a, &b).unwrap();
        assert!((got - expect).abs() < 1e-12, "{got} vs {expect}");
    }

    #[test]
    fn same_distribution_is_near_zero_and_shifted_is_not() {
        let a = gaussian(400, 16, 0.0, 1.0, 3);
        let b = gaussian(400, 16, 0.0, 1.0, 4);
        let c = gaussian(400, 16, 0.3, 1.0, 5);
        let cfg = config(20, 200, 0);
        let same = kernel_inception_distance(&a, &b, &cfg).unwrap();
        let shifted = kernel_inception_distance(&a, &c, &cfg).unwrap();
        assert_eq!(same.subset_size, 200);
        assert!(same.mean.abs() < 3.0 * same.std.max(1e-4), "{same:?}");
        assert!(
            shifted.mean > 10.0 * same.mean.abs(),
            "{shifted:?} vs {same:?}"
        );
        // Deterministic for a seed.
        assert_eq!(kernel_inception_distance(&a, &c, &cfg).unwrap(), shifted);
    }

    #[test]
    fn cached_and_per_subset_paths_agree() {
        let a = gaussian(50, 6, 0.0, 1.0, 6);
        let b = gaussian(40, 6, 0.2, 1.5, 7);
        let cfg = config(5, 20, 3);
        let cached = kernel_inception_distance(&a, &b, &cfg).unwrap();
        // Recompute each subset directly with the same draws.
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut vals = Vec::new();
        for _ in 0..5 {
            let ia = rand::seq::index::sample(&mut rng, 50, 20).into_vec();
            let ib = rand::seq::index::sample(&mut rng, 40, 20).into_vec();
            let pick = |f: &Features, idx: &[usize]| {
                Features::from_rows(6, idx.iter().flat_map(|&i| f.row(i).to_vec()).collect())
                    .unwrap()
            };
            vals.push(naive_mmd2(&pick(&a, &ia), &pick(&b, &ib)));
        }
        let mean = vals.iter().sum::<f64>() / 5.0;
        assert!(
            (cached.mean - mean).abs() < 1e-10,
            "{} vs {mean}",
            cached.mean
        );
        let per_subset = kid_impl(&a, &b, &cfg, 0).unwrap();
        assert!((per_subset.mean - cached.mean).abs() < 1e-10);
        assert!((per_subset.std - cached.std).abs() < 1e-10);
    }

    #[test]
    fn bad_inputs_are_errors() {
        let a = gaussian(1, 3, 0.0, 1.0, 1);
        let b = gaussian(5, 3, 0.0, 1.0, 2);
        let c = gaussian(5, 4, 0.0, 1.0, 2);
        let cfg = KidConfig::default();
        assert!(matches!(
            kernel_inception_distance(&a, &b, &cfg),
            Err(Error::TooFewSamples { .. })
        ));
        assert!(matches!(
            kernel_inception_distance(&b, &c, &cfg),
            Err(Error::Shape { .. })
        ));
        assert!(polynomial_mmd2(&b, &a).is_err());
    }
}
