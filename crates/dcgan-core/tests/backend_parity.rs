//! flex and ndarray compute the same model: same weights (drawn on the host from one seed),
//! same inputs, forward outputs within 1e-4.
#![cfg(all(feature = "flex", feature = "ndarray"))]

use burn::backend::{Flex, NdArray};
use burn::prelude::*;
use dcgan_core::{LatentDistribution, ModelPreset, WeightInit};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn forward<Bk: Backend>(z: &[f32], latent: usize) -> (Vec<f32>, Vec<f32>) {
    let device = Default::default();
    // Wider weights than the default N(0, 0.02), so that activations are far from zero
    // and the comparison means something.
    let init = WeightInit::new().with_std(0.25);
    let (g, d) = ModelPreset::Tiny32.configs(Some(4));
    let (g, d) = (g.with_init(init.clone()), d.with_init(init));
    let g = g
        .with_latent_dim(latent)
        .init_seeded::<Bk>(&device, 11)
        .unwrap();
    let d = d.init_seeded::<Bk>(&device, 12).unwrap();
    let z = Tensor::<Bk, 2>::from_data(
        TensorData::new(z.to_vec(), [z.len() / latent, latent]),
        &device,
    );
    let images = g.forward(z);
    let logits = d.forward(images.clone());
    (
        images.into_data().to_vec::<f32>().unwrap(),
        logits.into_data().to_vec::<f32>().unwrap(),
    )
}

#[test]
fn flex_and_ndarray_forward_outputs_agree() {
    let z = LatentDistribution::Uniform.sample(3, 16, &mut ChaCha8Rng::seed_from_u64(1));
    let (images_flex, logits_flex) = forward::<Flex>(&z, 16);
    let (images_nd, logits_nd) = forward::<NdArray>(&z, 16);
    let di = max_abs_diff(&images_flex, &images_nd);
    let dl = max_abs_diff(&logits_flex, &logits_nd);
    println!("max |flex - ndarray|: images {di:e}, logits {dl:e}");
    assert!(di < 1e-4 && dl < 1e-4, "images {di}, logits {dl}");
    // And the outputs are not trivially equal (e.g. all zeros).
    assert!(images_flex.iter().any(|v| v.abs() > 0.1));
    assert!(logits_flex.iter().any(|v| v.abs() > 0.1), "{logits_flex:?}");
}
