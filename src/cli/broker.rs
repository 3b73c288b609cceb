//! `ota-console broker`: the embedded MQTT broker alone, for devices and simulators on the LAN.

use std::net::SocketAddr;

use anyhow::Context;
use clap::Args;

use crate::transport::broker::{BrokerSettings, EmbeddedBroker};

#[derive(Debug, Clone, Args)]
pub struct BrokerArgs {
    /// Address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:1883")]
    pub listen: SocketAddr,
}

/// Runs the broker until Ctrl-C.
pub async fn run(args: &BrokerArgs) -> anyhow::Result<()> {
    let broker =
        EmbeddedBroker::start(BrokerSettings::open(args.listen)).context("embedded broker")?;
    println!("MQTT broker listening on {}", broker.local_addr());
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    Ok(())
}
