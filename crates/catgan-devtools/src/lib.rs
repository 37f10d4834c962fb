//! # catgan-devtools
//!
//! What catgan's bench binaries (`benches/throughput.rs`, `benches/side_by_side.rs`) share
//! and users never call: their command-line flags ([`flags`]), where and when figures were
//! taken ([`machine`]: CPU model, load, git commit, date, waiting for a quiet machine), the
//! PyTorch reference run side by side with ours ([`torch`]), and how they start and end
//! ([`report`]: flags parsed under their name, the `--json` file, the exit code). An
//! internal crate of the workspace (`publish = false`): the `cats` tool and the `catgan`
//! library do not depend on it; `cats bench` measures our own throughput with
//! `catgan::bench` alone.
#![warn(missing_docs)]

pub mod flags;
pub mod machine;
pub mod report;
pub mod torch;
