//! The precision the networks compute in: full f32, or bf16 mixed precision.
//!
//! [`Precision::Bf16`] is mixed precision in the manner of PyTorch's `torch.autocast`: the
//! convolutions, transposed convolutions and dense layers — the matrix products, nearly
//! all of a step's arithmetic — take bf16 copies of their input and weights and return
//! f32; batch norm, the activations, the losses, the gradients that reach the parameters
//! and Adam stay in f32, and the parameters themselves (the "master weights") are f32
//! throughout. bf16 has f32's exponent range, so no loss scaling is needed (PyTorch
//! does not use one for bf16 either). Checkpoints are the same f32 records in both
//! precisions, so a run can switch precision when it resumes.
//!
//! What bf16 buys is speed on hardware with bf16 matrix units (tensor cores on CUDA);
//! on CPU backends bf16 is emulated through f32 and slower than [`Precision::F32`].

use std::fmt;
use std::str::FromStr;

use burn::tensor::backend::Backend;
use burn::tensor::{DType, FloatDType};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The precision of the networks' matrix products (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Everything in f32.
    #[default]
    F32,
    /// Matrix products in bf16 from f32 master weights; everything else in f32.
    Bf16,
}

impl Precision {
    /// Every precision, in the order `--help` lists them.
    pub const ALL: [Precision; 2] = [Precision::F32, Precision::Bf16];

    /// The name used in configs and on the command line: `f32`, `bf16`.
    pub fn name(&self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        }
    }

    /// The element type the matrix products run in, if it is not the tensors' own.
    pub fn compute_dtype(&self) -> Option<FloatDType> {
        match self {
            Precision::F32 => None,
            Precision::Bf16 => Some(FloatDType::BF16),
        }
    }

    /// Checks that backend `B` can compute in this precision on `device`.
    ///
    /// f32 always passes; bf16 needs a backend with bf16 arithmetic (CUDA, flex; not
    /// ndarray, and not WGSL-based wgpu).
    pub fn check_supported<B: Backend>(&self, device: &B::Device) -> Result<()> {
        let Some(dtype) = self.compute_dtype() else {
            return Ok(());
        };
        if B::supports_dtype(device, DType::from(dtype)) {
            Ok(())
        } else {
            Err(Error::UnsupportedPrecision {
                precision: *self,
                backend: B::name(device),
            })
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Precision {
    type Err = Error;

    /// `f32` (also `fp32`, `float32`) or `bf16` (also `bfloat16`), any case.
    fn from_str(name: &str) -> Result<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "f32" | "fp32" | "float32" => Ok(Precision::F32),
            "bf16" | "bfloat16" => Ok(Precision::Bf16),
            _ => Err(Error::UnknownPrecision {
                name: name.to_string(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_list_the_choices() {
        for precision in Precision::ALL {
            assert_eq!(precision.name().parse::<Precision>().unwrap(), precision);
            let json = serde_json::to_string(&precision).unwrap();
            assert_eq!(json, format!("\"{}\"", precision.name()));
            assert_eq!(serde_json::from_str::<Precision>(&json).unwrap(), precision);
        }
        assert_eq!("BFloat16".parse::<Precision>().unwrap(), Precision::Bf16);
        let message = "fp16".parse::<Precision>().unwrap_err().to_string();
        assert!(
            message.contains("fp16") && message.contains("f32, bf16"),
            "{message}"
        );
    }

    #[test]
    fn f32_computes_in_the_tensors_own_type() {
        assert_eq!(Precision::F32.compute_dtype(), None);
        assert_eq!(Precision::Bf16.compute_dtype(), Some(FloatDType::BF16));
    }

    #[cfg(feature = "flex")]
    #[test]
    fn flex_supports_both_precisions() {
        let device = Default::default();
        for precision in Precision::ALL {
            precision
                .check_supported::<burn::backend::Flex>(&device)
                .unwrap();
        }
    }

    #[cfg(feature = "ndarray")]
    #[test]
    fn ndarray_refuses_bf16_with_a_clear_error() {
        let device = Default::default();
        Precision::F32
            .check_supported::<burn::backend::NdArray>(&device)
            .unwrap();
        let message = Precision::Bf16
            .check_supported::<burn::backend::NdArray>(&device)
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("bf16") && message.contains("f32"),
            "{message}"
        );
    }
}
