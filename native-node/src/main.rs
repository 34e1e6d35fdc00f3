//! `native-node`: the ns-dht node for servers and desktops.
//!
//! A thin host around `dht-core`: it picks the transports (TCP, QUIC,
//! WebSocket) and the executor (tokio), keeps the identity on disk, and
//! prints what the node does. Run `native-node --help`.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod cli;
mod client;
mod exit;
mod http;
mod identity;
mod localnet;
mod output;
mod roles;
mod settings;
mod signal;

use std::{process::ExitCode, time::Duration};

use clap::Parser;
use tracing_subscriber::EnvFilter;

use crate::{
    cli::{Cli, Command},
    exit::Failure,
    output::Output,
};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            // Help and version go to stdout with status 0; usage errors to
            // stderr with status 2.
            let _ = error.print();
            return ExitCode::from(if error.use_stderr() { 2 } else { 0 });
        }
    };
    init_logging();
    native_node::transport::install_crypto_provider();

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(1);
        }
    };
    let output = if cli.json { Output::Json } else { Output::Text };
    let result = runtime.block_on(dispatch(cli.command, output));
    // A blocking read of stdin (client serve) must not hold the exit.
    runtime.shutdown_timeout(Duration::from_secs(2));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            output.error(&failure.report());
            eprintln!("error: {:#}", failure.error);
            ExitCode::from(failure.status)
        }
    }
}

async fn dispatch(command: Command, output: Output) -> Result<(), Failure> {
    match command {
        Command::Bootstrap(args) => roles::bootstrap(args, output).await,
        Command::Listener(args) => roles::listener(args, output).await,
        Command::Dialer(args) => roles::dialer(args, output).await,
        Command::Client(args) => client::run(args, output).await,
        Command::Localnet(args) => localnet::run(args, output).await,
    }
}

/// Logs go to stderr, filtered by `RUST_LOG` (default: info for our crates,
/// warnings for libp2p's).
fn init_logging() {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("warn,libp2p_kad=error,dht_core=info,native_node=info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
