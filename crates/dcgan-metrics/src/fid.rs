//! Fréchet distance between two Gaussians fitted to features (FID).
//!
//! `FID = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2))`.
//!
//! The reference (`scipy.linalg.sqrtm(S2 @ S1)`, real part of the trace) takes the square
//! root of a non-symmetric product. Here the trace is computed from symmetric
//! eigendecompositions instead, which is stable and exact in exact arithmetic:
//! `S1 S2` is similar to `S1^(1/2) S2 S1^(1/2)` (symmetric, positive semi-definite), so
//! `tr((S1 S2)^(1/2)) = sum_i sqrt(lambda_i(S1^(1/2) S2 S1^(1/2)))`. Eigenvalues that
//! rounding makes slightly negative count as 0 (scipy's imaginary parts, dropped by
//! `np.real`); tiny positive ones are kept, as scipy keeps them: cutting them changes the
//! FID of 2,060 vs 2,061 real images by 3·10⁻⁵ relative, keeping them matches scipy to
//! 10⁻¹¹. The price: with fewer images than dimensions (singular covariances) the square
//! roots of rounding noise add up, and a set compared with itself can score about -10⁻⁴
//! instead of 0.

use faer::{Mat, MatRef, Side};

use crate::error::{Error, Result};
use crate::stats::FeatureStats;

/// FID between two feature statistics of the same dimension.
///
/// ```
/// use dcgan_metrics::{frechet_distance, FeatureStats};
/// // 1-d Gaussians N(0, 4) and N(3, 1): 3^2 + 4 + 1 - 2*sqrt(4*1) = 10.
/// let a = FeatureStats::from_parts(10, vec![0.0], vec![4.0]).unwrap();
/// let b = FeatureStats::from_parts(10, vec![3.0], vec![1.0]).unwrap();
/// assert!((frechet_distance(&a, &b).unwrap() - 10.0).abs() < 1e-12);
/// ```
pub fn frechet_distance(a: &FeatureStats, b: &FeatureStats) -> Result<f64> {
    let d = a.dim();
    if b.dim() != d || a.cov.len() != d * d || b.cov.len() != d * d {
        return Err(Error::Shape {
            what: "FID statistics".into(),
            expected: format!("dimension {d} on both sides"),
            got: format!("dimension {}", b.dim()),
        });
    }
    let mean_term: f64 = a
        .mean
        .iter()
        .zip(&b.mean)
        .map(|(x, y)| (x - y) * (x - y))
        .sum();
    let trace = |s: &FeatureStats| (0..d).map(|i| s.cov[i * d + i]).sum::<f64>();
    let tr_sqrt = trace_sqrt_product(a.cov_ref(), b.cov_ref())?;
    let fid = mean_term + trace(a) + trace(b) - 2.0 * tr_sqrt;
    if !fid.is_finite() {
        return Err(Error::Numeric {
            what: "FID",
            reason: format!("result {fid} (non-finite statistics?)"),
        });
    }
    Ok(fid)
}

/// `tr((S1 S2)^(1/2))` for symmetric positive semi-definite `S1`, `S2`.
pub fn trace_sqrt_product(s1: MatRef<'_, f64>, s2: MatRef<'_, f64>) -> Result<f64> {
    let r = sqrtm_psd(s1)?;
    let m = &r * s2 * &r;
    let m = symmetrize(m.as_ref());
    let eig = m
        .self_adjoint_eigenvalues(Side::Lower)
        .map_err(|e| Error::Numeric {
            what: "FID eigenvalues",
            reason: format!("{e:?}"),
        })?;
    Ok(eig.iter().map(|&l| l.max(0.0).sqrt()).sum())
}

/// Principal square root of a symmetric positive semi-definite matrix, by
/// eigendecomposition (`V diag(sqrt(max(lambda, 0))) V^T`); the result is symmetric.
///
/// ```
/// use dcgan_metrics::fid::sqrtm_psd;
/// use faer::mat;
/// let r = sqrtm_psd(mat![[4.0, 0.0], [0.0, 9.0]].as_ref()).unwrap();
/// assert!((r[(0, 0)] - 2.0).abs() < 1e-12 && (r[(1, 1)] - 3.0).abs() < 1e-12);
/// ```
pub fn sqrtm_psd(a: MatRef<'_, f64>) -> Result<Mat<f64>> {
    if a.nrows() != a.ncols() {
        return Err(Error::Shape {
            what: "matrix square root".into(),
            expected: "a square matrix".into(),
            got: format!("{}x{}", a.nrows(), a.ncols()),
        });
    }
    let n = a.nrows();
    if (0..n).any(|i| (0..n).any(|j| !a[(i, j)].is_finite())) {
        return Err(Error::Numeric {
            what: "matrix square root",
            reason: "non-finite entries".into(),
        });
    }
    let sym = symmetrize(a);
    let evd = sym
        .self_adjoint_eigen(Side::Lower)
        .map_err(|e| Error::Numeric {
            what: "matrix square root",
            reason: format!("eigendecomposition failed: {e:?}"),
        })?;
    let u = evd.U();
    let s = evd.S().column_vector();
    let scaled = Mat::from_fn(n, n, |i, j| u[(i, j)] * s[j].max(0.0).sqrt());
    Ok(symmetrize((&scaled * u.transpose()).as_ref()))
}

fn symmetrize(m: MatRef<'_, f64>) -> Mat<f64> {
    Mat::from_fn(m.nrows(), m.ncols(), |i, j| 0.5 * (m[(i, j)] + m[(j, i)]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn random_spd(n: usize, seed: u64) -> Mat<f64> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let g = Mat::from_fn(n, n + 3, |_, _| rng.random_range(-1.0..1.0));
        &g * g.transpose()
    }

    fn stats(mean: Vec<f64>, cov: &Mat<f64>) -> FeatureStats {
        let d = mean.len();
        let cov = (0..d * d).map(|k| cov[(k / d, k % d)]).collect();
        FeatureStats::from_parts(100, mean, cov).unwrap()
    }

    #[test]
    fn sqrtm_squared_is_the_matrix() {
        for (n, seed) in [(1, 1), (5, 2), (64, 3)] {
            let a = random_spd(n, seed);
            let r = sqrtm_psd(a.as_ref()).unwrap();
            let back = &r * &r;
            let scale = (0..n).map(|i| a[(i, i)]).fold(0.0, f64::max);
            for i in 0..n {
                for j in 0..n {
                    assert!(
                        (back[(i, j)] - a[(i, j)]).abs() < 1e-10 * scale,
                        "n={n} ({i},{j}): {} vs {}",
                        back[(i, j)],
                        a[(i, j)]
                    );
                }
            }
        }
    }

    #[test]
    fn sqrtm_of_a_singular_matrix_is_finite() {
        // Rank 1: v v^T with |v| = 1 is its own square root.
        let v = [0.6, 0.8, 0.0];
        let a = Mat::from_fn(3, 3, |i, j| v[i] * v[j]);
        let r = sqrtm_psd(a.as_ref()).unwrap();
        for i in 0..3 {
            for j in 0..3 {
                assert!((r[(i, j)] - a[(i, j)]).abs() < 1e-7, "{r:?}");
            }
        }
        let bad = Mat::from_fn(2, 2, |_, _| f64::NAN);
        assert!(sqrtm_psd(bad.as_ref()).is_err());
    }

    #[test]
    fn identical_statistics_give_zero() {
        let c = random_spd(32, 4);
        let a = stats(vec![0.5; 32], &c);
        let fid = frechet_distance(&a, &a).unwrap();
        assert!(fid.abs() < 1e-9, "{fid}");
    }

    #[test]
    fn identical_singular_statistics_give_almost_zero() {
        // 10 samples in 256 dimensions: rank 9, like 16 images against 2048 features.
        let mut rng = ChaCha8Rng::seed_from_u64(8);
        let rows: Vec<f32> = (0..10 * 256).map(|_| rng.random_range(0.0..3.0)).collect();
        let f = crate::Features::from_rows(256, rows).unwrap();
        let s = FeatureStats::from_features(&f).unwrap();
        let fid = frechet_distance(&s, &s).unwrap();
        // Rounding noise of a rank-9 matrix's 247 zero eigenvalues, square-rooted.
        assert!(
            fid.abs() < 1e-4 * s.cov.iter().step_by(257).sum::<f64>(),
            "{fid}"
        );
    }

    #[test]
    fn shifted_means_give_the_squared_distance() {
        let c = random_spd(16, 5);
        let a = stats(vec![0.0; 16], &c);
        let shift: Vec<f64> = (0..16).map(|i| i as f64 * 0.1).collect();
        let expect: f64 = shift.iter().map(|x| x * x).sum();
        let b = stats(shift, &c);
        let fid = frechet_distance(&a, &b).unwrap();
        assert!((fid - expect).abs() < 1e-9, "{fid} vs {expect}");
    }

    #[test]
    fn diagonal_covariances_have_the_closed_form() {
        // sum (sqrt(s1) - sqrt(s2))^2 + |dmu|^2 for diagonal covariances.
        let s1 = [1.0, 4.0, 0.25, 9.0, 0.0];
        let s2 = [2.0, 1.0, 0.25, 16.0, 3.0];
        let d1 = Mat::from_fn(5, 5, |i, j| if i == j { s1[i] } else { 0.0 });
        let d2 = Mat::from_fn(5, 5, |i, j| if i == j { s2[i] } else { 0.0 });
        let a = stats(vec![1.0, 0.0, 0.0, 0.0, 2.0], &d1);
        let b = stats(vec![0.0, 0.0, 0.0, 0.0, 0.0], &d2);
        let expect: f64 = 1.0
            + 4.0
            + s1.iter()
                .zip(&s2)
                .map(|(x, y)| (x.sqrt() - y.sqrt()).powi(2))
                .sum::<f64>();
        let fid = frechet_distance(&a, &b).unwrap();
        assert!((fid - expect).abs() < 1e-12, "{fid} vs {expect}");
    }

    #[test]
    fn commuting_covariances_have_the_closed_form() {
        // S1 = Q diag(a) Q^T, S2 = Q diag(b) Q^T: tr sqrt(S1 S2) = sum sqrt(a_i b_i).
        let n = 24;
        let q = {
            let m = random_spd(n, 6);
            m.self_adjoint_eigen(Side::Lower).unwrap().U().to_owned()
        };
        let av: Vec<f64> = (0..n).map(|i| 0.1 + i as f64).collect();
        let bv: Vec<f64> = (0..n).map(|i| 3.0 / (1.0 + i as f64)).collect();
        let build = |v: &[f64]| {
            let scaled = Mat::from_fn(n, n, |i, j| q[(i, j)] * v[j]);
            &scaled * q.transpose()
        };
        let a = stats(vec![0.0; n], &build(&av));
        let b = stats(vec![0.0; n], &build(&bv));
        let expect: f64 = av
            .iter()
            .zip(&bv)
            .map(|(x, y)| x + y - 2.0 * (x * y).sqrt())
            .sum();
        let fid = frechet_distance(&a, &b).unwrap();
        assert!(
            (fid - expect).abs() < 1e-9 * expect.abs().max(1.0),
            "{fid} vs {expect}"
        );
    }

    #[test]
    fn mismatched_dimensions_are_an_error() {
        let a = FeatureStats::from_parts(3, vec![0.0; 2], vec![0.0; 4]).unwrap();
        let b = FeatureStats::from_parts(3, vec![0.0; 3], vec![0.0; 9]).unwrap();
        assert!(matches!(frechet_distance(&a, &b), Err(Error::Shape { .. })));
    }
}
