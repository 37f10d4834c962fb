//! `cats serve`: a local web app to watch a run and play with its generator.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use burn::tensor::backend::AutodiffBackend;
use catgan::backend::{dispatch, BackendKind, BackendTask};
use catgan::serve::{ServeOptions, Server};

use crate::Target;

/// Watch a run (live curves, preview grids) and draw cats from its checkpoint in a browser.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// A run folder written by `cats train` (the Run page; its checkpoints/latest.catgan
    /// for the Generator page, reloaded whenever training writes a new one).
    #[arg(long, value_name = "DIR")]
    pub run: Option<PathBuf>,
    /// The checkpoint the Generator page draws with [default: the run's
    /// checkpoints/latest.catgan].
    #[arg(long, value_name = "FILE")]
    pub checkpoint: Option<PathBuf>,
    /// Port to listen on (0: a free one, printed at start).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Address to listen on. Anything but a loopback address lets anyone who can reach
    /// this machine use the server; prefer SSH port forwarding (see the README).
    #[arg(long, default_value = "127.0.0.1", value_name = "ADDRESS")]
    pub host: String,
    /// Draw with the raw generator even when the run kept an average of its weights.
    #[arg(long)]
    pub no_ema: bool,
}

struct ServeTask<'a> {
    options: &'a ServeOptions,
}

impl BackendTask for ServeTask<'_> {
    type Output = anyhow::Result<()>;

    fn run<B: AutodiffBackend>(self, backend: BackendKind, device: B::Device) -> Self::Output {
        let server = Server::start::<B>(self.options, backend, device)?;
        let address = server.local_addr();
        if !address.ip().is_loopback() {
            eprintln!(
                "warning: listening on {address}, not on a loopback address: anyone who can \
                 reach this machine on port {} can use this server (it has no login). For a \
                 remote machine, prefer the default --host 127.0.0.1 and SSH port forwarding: \
                 ssh -L {0}:localhost:{0} HOST",
                address.port()
            );
        }
        // Tests (and scripts) read the port from this line: print it first, and flush.
        println!("serving http://{address}/");
        println!("  Run:       http://{address}/run");
        println!("  Generator: http://{address}/generator");
        println!("Ctrl-C stops the server.");
        std::io::stdout().flush().context("writing to stdout")?;
        server.run()?;
        Ok(())
    }
}

/// Runs `cats serve`.
pub fn run(args: &ServeArgs, target: Target) -> anyhow::Result<ExitCode> {
    let options = ServeOptions {
        run: args.run.clone(),
        checkpoint: args.checkpoint.clone(),
        host: args.host.clone(),
        port: args.port,
        use_ema: !args.no_ema,
    };
    dispatch(
        target.backend,
        target.device,
        ServeTask { options: &options },
    )??;
    Ok(ExitCode::SUCCESS)
}
