//! What the generator and the discriminator share: the fields their configs end with
//! (kernel, leaky ReLU, batch norm, init, spectral norm, fast path) and the checks of
//! those fields, declared once by [`network_config!`]; the `with_precision` and
//! `with_fast_kernels` builders of the networks, by [`network_switches!`]; and the field
//! checks both configs' `validate` use.

use crate::error::{Error, Result};
use crate::generator::START_SIZE;
use crate::init::WeightInit;

/// Widths above this are surely a typo (and would overflow the shape arithmetic).
pub(crate) const MAX_WIDTH: usize = 1 << 16;

/// Declares a network config: the struct as written, with `#[derive(Config, Debug,
/// PartialEq)]`, followed by the fields both networks have (in this order, the order of
/// their JSON form: `kernel_size`, `leaky_slope`, `bn_momentum`, `bn_epsilon`, `init`,
/// `spectral_norm` documented by the doc comment given after the struct, `fast_kernels`),
/// and a `validate_layers` method that checks them. `WeightInit` must be in scope where it
/// is called (the default of `init` is written `WeightInit::new()`, as the docs show it).
macro_rules! network_config {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $($own_fields:tt)*
        }
        $(#[$spectral_norm_doc:meta])*
        spectral_norm;
    ) => {
        $(#[$meta])*
        #[derive(burn::config::Config, Debug, PartialEq)]
        pub struct $name {
            $($own_fields)*
            /// Side of every (odd-sized) convolution kernel.
            #[config(default = 5)]
            pub kernel_size: usize,
            /// Negative slope of the leaky ReLUs.
            #[config(default = 0.2)]
            pub leaky_slope: f64,
            /// Batch-norm momentum of the running statistics (PyTorch convention: weight of
            /// the new batch).
            #[config(default = 0.1)]
            pub bn_momentum: f64,
            /// Batch-norm epsilon.
            #[config(default = 1e-5)]
            pub bn_epsilon: f64,
            /// How weights are drawn.
            #[config(default = "WeightInit::new()")]
            pub init: WeightInit,
            $(#[$spectral_norm_doc])*
            #[config(default = false)]
            pub spectral_norm: bool,
            /// Run the layers (and the trainer's Adam) through the fast path of the
            /// `flex-kernels` crate on flex (f32, with the `flex` feature): the same numbers
            /// as burn's own operations to float rounding, several times faster. `false`
            /// computes with burn's operations alone (for comparisons); other backends
            /// always do. Not part of the record; configs saved before this field read as
            /// `true` (see [`crate::trainer::upgrade_config_json`]).
            #[config(default = true)]
            pub fast_kernels: bool,
        }

        impl $name {
            /// Checks the fields every network config has (kernel size, leaky slope, batch
            /// norm, init), naming `component` in the error.
            fn validate_layers(&self, component: &'static str) -> $crate::error::Result<()> {
                $crate::network::validate_layers(
                    component,
                    self.kernel_size,
                    self.leaky_slope,
                    self.bn_momentum,
                    self.bn_epsilon,
                    &self.init,
                )
            }
        }
    };
}
pub(crate) use network_config;

/// The builders both networks have: `with_precision` and `with_fast_kernels`, for the
/// network type `$network` (named `$what` in their docs) built by `$config`.
macro_rules! network_switches {
    ($network:ident, $config:ident, $what:literal) => {
        impl<B: burn::tensor::backend::Backend> $network<B> {
            #[doc = concat!("The same ", $what, " computing in `precision` (see")]
            #[doc = "[`crate::precision`])."]
            pub fn with_precision(mut self, precision: $crate::precision::Precision) -> Self {
                self.precision = precision;
                self
            }

            #[doc = concat!("The same ", $what, " with the flex fast path on or off (see")]
            #[doc = concat!("[`", stringify!($config), "::fast_kernels`]).")]
            pub fn with_fast_kernels(mut self, fast_kernels: bool) -> Self {
                self.fast_kernels = fast_kernels;
                self
            }
        }
    };
}
pub(crate) use network_switches;

/// `8 · 2^k` with `k ≥ 1`.
pub(crate) fn validate_image_size(component: &'static str, size: usize) -> Result<()> {
    let ok = size >= 2 * START_SIZE
        && size.is_multiple_of(START_SIZE)
        && (size / START_SIZE).is_power_of_two();
    if ok && size <= 4096 {
        Ok(())
    } else {
        Err(Error::invalid(
            component,
            "image_size",
            size,
            "must be 8·2^k with k ≥ 1 and at most 4096 (16, 32, 64, 128, 256, ...)",
        ))
    }
}

/// `value ≤ max`.
pub(crate) fn at_most(
    component: &'static str,
    field: &'static str,
    value: usize,
    max: usize,
) -> Result<()> {
    if value > max {
        Err(Error::invalid(
            component,
            field,
            value,
            format!("must be at most {max}"),
        ))
    } else {
        Ok(())
    }
}

/// `value ≥ 1`.
pub(crate) fn positive(component: &'static str, field: &'static str, value: usize) -> Result<()> {
    if value == 0 {
        Err(Error::invalid(
            component,
            field,
            value,
            "must be at least 1",
        ))
    } else {
        Ok(())
    }
}

/// Checks of the fields [`network_config!`] declares (what its `validate_layers` calls).
pub(crate) fn validate_layers(
    component: &'static str,
    kernel_size: usize,
    leaky_slope: f64,
    bn_momentum: f64,
    bn_epsilon: f64,
    init: &WeightInit,
) -> Result<()> {
    if kernel_size == 0 || kernel_size.is_multiple_of(2) || kernel_size > 31 {
        return Err(Error::invalid(
            component,
            "kernel_size",
            kernel_size,
            "must be odd (\"same\" padding is symmetric) and at most 31",
        ));
    }
    if !(leaky_slope.is_finite() && (0.0..1.0).contains(&leaky_slope)) {
        return Err(Error::invalid(
            component,
            "leaky_slope",
            leaky_slope,
            "must be in [0, 1)",
        ));
    }
    if !(bn_momentum > 0.0 && bn_momentum <= 1.0) {
        return Err(Error::invalid(
            component,
            "bn_momentum",
            bn_momentum,
            "must be in (0, 1]",
        ));
    }
    if !(bn_epsilon > 0.0 && bn_epsilon.is_finite()) {
        return Err(Error::invalid(
            component,
            "bn_epsilon",
            bn_epsilon,
            "must be positive",
        ));
    }
    if !(init.std > 0.0 && init.std.is_finite()) {
        return Err(Error::invalid(
            component,
            "init.std",
            init.std,
            "must be positive",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use burn::prelude::*;

    use crate::{DiscriminatorConfig, GeneratorConfig, TestBackend};

    #[test]
    fn output_shapes_for_every_supported_size() {
        let device = Default::default();
        for size in [16, 32, 64] {
            let g = GeneratorConfig::new(size)
                .with_base_channels(4)
                .with_latent_dim(7)
                .init::<TestBackend>(&device)
                .unwrap();
            let z = Tensor::<TestBackend, 2>::zeros([3, 7], &device);
            // 8·8 → log2(size/8) doublings → size.
            let images = g.forward(z);
            assert_eq!(images.dims(), [3, 3, size, size]);
            assert_eq!(g.image_size(), size);
            assert_eq!(g.latent_dim(), 7);
            let d = DiscriminatorConfig::new(size)
                .with_base_channels(4)
                .init::<TestBackend>(&device)
                .unwrap();
            assert_eq!(d.forward(images).dims(), [3, 1]);
        }
    }

    /// The fields of `json`'s top-level object, in order.
    fn keys(json: &str) -> Vec<&str> {
        let (mut depth, mut keys) = (0, Vec::new());
        for (i, c) in json.char_indices() {
            match c {
                '{' | '[' => depth += 1,
                '}' | ']' => depth -= 1,
                '"' if depth == 1 && json[..i].ends_with(['{', ',']) => {
                    let name = &json[i + 1..];
                    keys.push(&name[..name.find('"').unwrap()]);
                }
                _ => {}
            }
        }
        keys
    }

    #[test]
    fn the_configs_json_has_each_networks_fields_then_the_shared_ones() {
        let shared = [
            "kernel_size",
            "leaky_slope",
            "bn_momentum",
            "bn_epsilon",
            "init",
            "spectral_norm",
            "fast_kernels",
        ];
        let g = serde_json::to_string(&GeneratorConfig::new(64)).unwrap();
        let own = [
            "image_size",
            "latent_dim",
            "base_channels",
            "image_channels",
        ];
        assert_eq!(keys(&g), [&own[..], &shared[..]].concat(), "{g}");
        let d = serde_json::to_string(&DiscriminatorConfig::new(64)).unwrap();
        let own = [
            "image_size",
            "base_channels",
            "image_channels",
            "strides",
            "first_batch_norm",
        ];
        assert_eq!(keys(&d), [&own[..], &shared[..]].concat(), "{d}");
        // And they read back.
        let back: DiscriminatorConfig = serde_json::from_str(&d).unwrap();
        assert_eq!(back, DiscriminatorConfig::new(64));
    }
}
