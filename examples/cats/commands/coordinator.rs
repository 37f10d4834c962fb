//! `cats coordinator`: the meeting point of a multi-machine run (burn-collective's global
//! orchestrator).

use std::process::ExitCode;

/// Serve as the coordinator of a multi-machine run: every machine's `cats train --nodes N
/// --coordinator ws://THIS-HOST:PORT` registers here. Runs until Ctrl-C.
#[derive(Debug, Clone, clap::Args)]
pub struct CoordinatorArgs {
    /// Port to listen on (all interfaces).
    #[arg(long, value_name = "PORT", default_value_t = 3000)]
    pub port: u16,
}

/// Runs `cats coordinator`.
pub fn run(args: &CoordinatorArgs) -> anyhow::Result<ExitCode> {
    eprintln!(
        "coordinator listening on port {}: start `cats train --nodes N --node-rank K \
         --coordinator ws://<this host>:{} --node-address ws://<that host>:<port>` on each \
         machine (Ctrl-C to stop)",
        args.port, args.port
    );
    catgan::parallel::quiet_network_logs();
    dcgan_core::replicas::run_coordinator(args.port)?;
    Ok(ExitCode::SUCCESS)
}
