//! The top-level command line: the window (no subcommand) or one of the headless commands.

use clap::{Parser, Subcommand};

use super::broker::BrokerArgs;
use super::broker_config::BrokerConfigArgs;
use super::connection::ConnectionArgs;
use super::devices::DevicesArgs;
use super::hash::HashArgs;
use super::rollout::RolloutArgs;
use super::sim::SimArgs;

/// Push firmware over MQTT to fleets of Alibaba Cloud IoT, MXCHIP FogCloud and DJI devices.
#[derive(Debug, Parser)]
#[command(name = "ota-console", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Connection options of the window (each command has its own).
    #[command(flatten)]
    pub connection: ConnectionArgs,

    /// Also start a simulated mixed fleet in-process, for demos without hardware.
    #[arg(long)]
    pub demo: bool,

    /// Log filter (tracing `EnvFilter` syntax); `RUST_LOG` overrides it.
    #[arg(long, global = true, value_name = "FILTER", default_value = "info")]
    pub log: String,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Roll a firmware out to devices, headless.
    Rollout(Box<RolloutArgs>),
    /// Run simulated devices of all three dialects.
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
