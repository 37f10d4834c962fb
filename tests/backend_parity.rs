//! Backend parity on a tiny model (32 px, base 4, batch 4): the same weights, inputs and
//! training steps (the real `Trainer::step`, traced) on flex and on every other compiled
//! CPU-capable backend, compared tensor by tensor (see `catgan::parity`). The one place
//! parity is tested: the comparison itself, flex against itself, and the backends.
//!
//! - flex vs ndarray: with `--features ndarray`.
//! - flex vs wgpu: with `--features wgpu`. Without a GPU this runs on lavapipe, Mesa's
//!   Vulkan-on-the-CPU driver (`apt-get install mesa-vulkan-drivers libvulkan1`); the first
//!   step compiles shaders for tens of seconds. Without an adapter (or with
//!   `CATGAN_SKIP_WGPU_TESTS=1`) it is skipped with a notice, or fails under
//!   `CATGAN_REQUIRE_ALL_TESTS=1` (`tests/common`).
//!
//! ```text
//! cargo test --features ndarray,wgpu --test backend_parity -- --nocapture   # prints the tables
//! ```
#![cfg(feature = "flex")]

mod common;

use catgan::parity::{
    capture, compare, parity_table, Capture, Captured, ParityConfig, Tolerance, TRAINER_METRICS,
};

type FlexAd = burn::backend::Autodiff<burn::backend::Flex>;

fn reference(config: &ParityConfig) -> Capture {
    capture::<FlexAd>(config, "flex", &Default::default()).expect("flex runs the tiny model")
}

/// Compares with flex, prints the table, and fails with every out-of-tolerance tensor named.
#[allow(dead_code)]
fn assert_parity(other: &Capture) {
    let reference = reference(&other.config);
    let report = compare(&reference, other, Tolerance::for_backend(&other.backend));
    println!("{}", parity_table(std::slice::from_ref(&report)));
    assert!(
        report.passed(),
        "{} does not compute what flex computes:\n{}\n{}",
        other.backend,
        report.failures().join("\n"),
        parity_table(std::slice::from_ref(&report))
    );
}

fn capture_of(values: &[f32]) -> Capture {
    Capture {
        backend: "x".into(),
        config: ParityConfig::tiny(),
        tensors: vec![Captured {
            name: "t".into(),
            shape: vec![values.len()],
            values: values.to_vec(),
        }],
    }
}

#[test]
fn errors_are_absolute_relative_and_scaled() {
    let r = capture_of(&[1.0, -2.0, 1e-6]);
    let o = capture_of(&[1.0, -2.002, 1.1e-6]);
    let report = compare(&r, &o, Tolerance::uniform(1e-2));
    let d = &report.diffs[0];
    assert!((d.max_abs - 0.002).abs() < 1e-6 && (d.max_ref - 2.0).abs() < 1e-12);
    // The 1e-6 element is below 1e-3 · max |ref| and left out of the relative error.
    assert!((d.max_rel - 0.001).abs() < 1e-6, "{d:?}");
    assert!((d.scaled - 0.001).abs() < 1e-6 && report.passed());
    assert!(!compare(&r, &o, Tolerance::uniform(1e-4)).passed());
}

#[test]
fn nan_and_shape_mismatches_fail() {
    let r = capture_of(&[1.0, 2.0]);
    assert!(!compare(&r, &capture_of(&[1.0, f32::NAN]), Tolerance::default()).passed());
    let report = compare(&r, &capture_of(&[1.0, 2.0, 3.0]), Tolerance::default());
    assert!(!report.passed());
    assert!(
        report.failures()[0].contains("t differs by inf"),
        "{report:?}"
    );
}

#[test]
fn flex_against_itself_is_exact_and_covers_every_tensor() {
    let config = ParityConfig::tiny();
    let a = reference(&config);
    let report = compare(&a, &reference(&config), Tolerance::uniform(0.0));
    assert!(report.passed(), "{}", parity_table(&[report]));
    let names: Vec<_> = a.tensors.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "G(z)",
            "D(real)",
            "D(G(z))",
            "d_loss",
            "dD/d conv0.w",
            "dD/d dense.w",
            "g_loss",
            "dG/d dense.w",
            "dG/d to_image.w",
            TRAINER_METRICS,
        ]
    );
    assert_eq!(a.tensors[0].shape, vec![4, 3, 32, 32]);
    // Gradients are not all zero: the backward passes really ran.
    let grads = a
        .tensors
        .iter()
        .filter(|t| t.name.starts_with("dD/") || t.name.starts_with("dG/"));
    for grad in grads {
        assert!(grad.values.iter().any(|v| *v != 0.0), "{}", grad.name);
    }
    // The first step's losses are the trainer's own (the first metrics line).
    let value = |name: &str| a.tensors.iter().find(|t| t.name == name).unwrap().values[0];
    let metrics = &a.tensors[9];
    assert_eq!(metrics.shape, vec![config.trainer_steps, 4]);
    assert_eq!(metrics.values[..2], [value("d_loss"), value("g_loss")]);
}

#[test]
fn a_different_model_fails_the_check_loudly() {
    // The tolerance check must catch a real difference, not only pass identical runs.
    let config = ParityConfig::tiny();
    let other = capture::<FlexAd>(
        &ParityConfig {
            seed: config.seed + 1,
            ..config.clone()
        },
        "flex (other seed)",
        &Default::default(),
    )
    .unwrap();
    let report = compare(&reference(&config), &other, Tolerance::default());
    assert!(!report.passed());
    assert!(report.failures().iter().any(|f| f.contains("G(z)")));
}

#[cfg(feature = "ndarray")]
#[test]
fn flex_and_ndarray_compute_the_same_step() {
    type NdAd = burn::backend::Autodiff<burn::backend::NdArray>;
    let other = capture::<NdAd>(&ParityConfig::tiny(), "ndarray", &Default::default()).unwrap();
    assert_parity(&other);
}

/// The same with every stabiliser on (loss, penalty, D steps, spectral norm, average,
/// DiffAugment) over four steps.
#[cfg(feature = "ndarray")]
#[test]
fn flex_and_ndarray_compute_the_same_stabilized_steps() {
    type NdAd = burn::backend::Autodiff<burn::backend::NdArray>;
    let config = ParityConfig::tiny_stabilized();
    let other = capture::<NdAd>(&config, "ndarray", &Default::default()).unwrap();
    assert!(other
        .tensors
        .iter()
        .any(|t| t.name == catgan::parity::AVERAGE_IMAGES));
    assert_parity(&other);
}

#[cfg(feature = "wgpu")]
#[test]
fn flex_and_wgpu_compute_the_same_step() {
    wgpu_parity(&ParityConfig::tiny());
}

#[cfg(feature = "wgpu")]
#[test]
fn flex_and_wgpu_compute_the_same_stabilized_steps() {
    wgpu_parity(&ParityConfig::tiny_stabilized());
}

#[cfg(feature = "wgpu")]
fn wgpu_parity(config: &ParityConfig) {
    use burn::backend::wgpu::{Wgpu, WgpuDevice};

    if !common::wgpu_or_skip("flex vs wgpu parity") {
        return;
    }
    let device = WgpuDevice::DefaultDevice;
    type WgpuAd = burn::backend::Autodiff<Wgpu>;
    let other = capture::<WgpuAd>(config, "wgpu", &device).unwrap();
    assert_parity(&other);
}
