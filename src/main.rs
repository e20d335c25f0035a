//! Command line: parses arguments, loads the config, and calls the library.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};

use imap_time_machine::config::Config;
use imap_time_machine::proxy::Server;

#[derive(Parser)]
#[command(
    name = "imap-time-machine",
    version,
    about = "TLS IMAP proxy with nightly mailbox snapshots shown as Time Machine folders"
)]
struct Cli {
    /// Path of the configuration file.
    #[arg(short, long, global = true, default_value = "config.toml")]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy.
    Serve,
    /// Validate the configuration (and the certificate and key) and exit.
    CheckConfig,
}

fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .init();
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = Config::load(&cli.config)?;
    match cli.command {
        Command::CheckConfig => {
            imap_time_machine::proxy::tls::server_config(&config)?;
            imap_time_machine::proxy::upstream::Connector::from_config(&config)?;
            println!("{}: OK", cli.config.display());
            Ok(())
        }
        Command::Serve => {
            init_logging(&config.log.level);
            let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            rt.block_on(async {
                let server = Server::bind(Arc::new(config)).await?;
                server.run(shutdown_signal()).await;
                Ok(())
            })
        }
    }
}
