//! The one error type of `dcgan-core`.

use std::path::PathBuf;

/// Everything that can go wrong in `dcgan-core`, with the context needed to fix it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A model or trainer configuration is not valid.
    #[error("invalid {component} config: {field} = {value}: {reason}")]
    InvalidConfig {
        /// Which config ("generator", "discriminator", "trainer").
        component: &'static str,
        /// The offending field.
        field: &'static str,
        /// The value it had, rendered for humans.
        value: String,
        /// What is wrong and what would be valid.
        reason: String,
    },

    /// An unknown preset name.
    #[error("unknown preset `{name}`: expected one of {expected}")]
    UnknownPreset {
        /// The name that was asked for.
        name: String,
        /// The known names, comma separated.
        expected: String,
    },

    /// An unknown precision name.
    #[error("unknown precision `{name}`: expected one of f32, bf16")]
    UnknownPrecision {
        /// The name that was asked for.
        name: String,
    },

    /// The backend cannot compute in the precision asked for.
    #[error(
        "{precision} precision is not supported by the {backend} backend on this device: \
         use f32, or a backend with {precision} arithmetic (cuda, flex)"
    )]
    UnsupportedPrecision {
        /// The precision that was asked for.
        precision: crate::precision::Precision,
        /// The backend's name, as burn gives it.
        backend: String,
    },

    /// Reading or writing a file failed.
    #[error("{action} {path}: {cause}")]
    Io {
        /// What was being done ("writing checkpoint", ...).
        action: &'static str,
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        cause: std::io::Error,
    },

    /// A checkpoint file exists but cannot be used.
    #[error("checkpoint {path} cannot be loaded: {reason}")]
    Checkpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// Why, and what to do.
        reason: String,
    },

    /// A tensor handed to the library has the wrong shape.
    #[error("{what}: expected shape {expected}, got {actual:?}")]
    Shape {
        /// Which input.
        what: &'static str,
        /// The expected shape, in words.
        expected: String,
        /// The shape that was given.
        actual: Vec<usize>,
    },

    /// A training step produced a non-finite loss.
    #[error(
        "non-finite loss at step {step}: d_loss = {d_loss}, g_loss = {g_loss}; \
         lower the learning rates or check the input data"
    )]
    NonFiniteLoss {
        /// The step (1-based count of steps run so far, including this one).
        step: u64,
        /// The discriminator loss of that step.
        d_loss: f32,
        /// The generator loss of that step.
        g_loss: f32,
    },

    /// A configuration needs more memory than is available (see [`crate::memory`]).
    #[error(
        "{what} needs about {} of memory, but {} is available (estimate {breakdown}; \
         plus {}% and {} of headroom); {suggestion}",
        crate::memory::format_bytes(*.needed),
        crate::memory::format_bytes(*.available as u128),
        crate::memory::HEADROOM_PERCENT,
        crate::memory::format_bytes(crate::memory::PROGRAM_BASELINE)
    )]
    TooLarge {
        /// What was asked for ("training", "generating").
        what: &'static str,
        /// Bytes needed: the estimate with its headroom
        /// ([`crate::memory::MemoryEstimate::needed`]).
        needed: u128,
        /// Bytes available.
        available: u64,
        /// The estimate's breakdown (its `Display`).
        breakdown: String,
        /// A smaller setting that fits, naming its flags, or what else to do.
        suggestion: String,
    },

    /// A data-parallel replica could not keep step with the others (see
    /// [`crate::replicas`]): the run stops; its last checkpoint stays good.
    #[error("replica {rank}: {reason}; the last checkpoint is intact: resume from it (--resume)")]
    Replica {
        /// The rank of the replica that noticed.
        rank: usize,
        /// What happened.
        reason: String,
    },
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn invalid(
        component: &'static str,
        field: &'static str,
        value: impl std::fmt::Debug,
        reason: impl Into<String>,
    ) -> Self {
        Error::InvalidConfig {
            component,
            field,
            value: format!("{value:?}"),
            reason: reason.into(),
        }
    }
}
