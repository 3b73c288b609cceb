//! The top-level command line: the window (no subcommand) or one of the headless commands.

use clap::{Parser, Subcommand};

use super::broker::BrokerArgs;
use super::broker_config::BrokerConfigArgs;
use super::connection::ConnectionArgs;
use super::devices::DevicesArgs;
use super::hash::HashArgs;
use super::rollout::RolloutArgs;
use super::sim::SimArgs;
use crate::protocol::registry;

// The about line names the registered dialects.
#[derive(Debug, Parser)]
#[command(name = "ota-console", version, about = about(), long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Connection options of the window (each command has its own).
    #[command(flatten)]
    pub connection: ConnectionArgs,

    /// Also start a simulated mixed fleet in-process, for demos without hardware.
    #[arg(long)]
    pub demo: bool,

    /// A dialect described in a file (TOML; see the README, "Dialects from a file");
    /// repeatable. Every `*.toml` of the data dir's `dialects/` folder is loaded too.
    // Read before clap by `cli::dialects::prescan` (the command line depends on the dialects);
    // declared here so it shows in `--help` and parses everywhere.
    #[arg(long = "dialect-file", global = true, value_name = "FILE")]
    pub dialect_files: Vec<std::path::PathBuf>,

    /// Log filter (tracing `EnvFilter` syntax); `RUST_LOG` overrides it.
    #[arg(long, global = true, value_name = "FILTER", default_value = "info")]
    pub log: String,
}

/// "Push firmware over MQTT to fleets of … devices", with every registered dialect.
fn about() -> String {
    let labels: Vec<&str> = registry::ids().into_iter().map(|id| id.label()).collect();
    let fleets = match labels.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        _ => labels.join(""),
    };
    format!("Push firmware over MQTT to fleets of {fleets} devices.")
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Roll a firmware out to devices, headless.
    Rollout(Box<RolloutArgs>),
    /// Run simulated devices of every dialect.
    Sim(SimArgs),
    /// List the devices discovered on the broker.
    Devices(DevicesArgs),
    /// Print a firmware file's size, MD5, SHA-256 and FogCloud checksum.
    Hash(HashArgs),
    /// Run the embedded MQTT broker alone.
    Broker(BrokerArgs),
    /// Import Alibaba device secrets; write Mosquitto password, ACL and config files.
    BrokerConfig(BrokerConfigArgs),
}
