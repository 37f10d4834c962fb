//! The `cats` subcommands, one file each.

pub mod bench;
pub mod coordinator;
pub mod eval;
pub mod fid;
pub mod generate;
pub mod inspect_data;
pub mod prepare;
pub mod serve;
pub mod summary;
pub mod train;

use std::process::ExitCode;

use burn::tensor::backend::AutodiffBackend;
use catgan::backend::{dispatch, BackendKind, BackendTask};

use crate::Target;

struct EvalTask<'a>(&'a eval::EvalArgs);

impl BackendTask for EvalTask<'_> {
    type Output = anyhow::Result<()>;
    fn run<B: AutodiffBackend>(self, _: BackendKind, device: B::Device) -> Self::Output {
        eval::run::<B>(self.0, &device)
    }
}

struct FidTask<'a>(&'a fid::FidArgs);

impl BackendTask for FidTask<'_> {
    type Output = anyhow::Result<()>;
    fn run<B: AutodiffBackend>(self, _: BackendKind, device: B::Device) -> Self::Output {
        fid::run::<B::InnerBackend>(self.0, &device)
    }
}

/// `cats eval` on the chosen backend.
pub fn run_eval(args: &eval::EvalArgs, target: Target) -> anyhow::Result<ExitCode> {
    dispatch(target.backend, target.device, EvalTask(args))??;
    Ok(ExitCode::SUCCESS)
}

/// `cats fid` on the chosen backend.
pub fn run_fid(args: &fid::FidArgs, target: Target) -> anyhow::Result<ExitCode> {
    dispatch(target.backend, target.device, FidTask(args))??;
    Ok(ExitCode::SUCCESS)
}

/// Prints FID/KID the same way for `eval` and `fid`: `key=value` lines last, so scripts can
/// read them; `kid_requested` with no KID says why (`why_no_kid`).
fn print_scores(scores: &dcgan_metrics::Scores, kid_requested: bool, why_no_kid: &str) {
    match (&scores.kid, kid_requested) {
        (Some(k), _) => println!(
            "kid_std={} ({} subsets of {})",
            k.std, k.subsets, k.subset_size
        ),
        (None, true) => println!("kid: skipped, {why_no_kid}"),
        (None, false) => {}
    }
    println!("fid={}", scores.fid);
    if let Some(k) = &scores.kid {
        println!("kid={}", k.mean);
    }
}
