//! Why the embedded broker could not start (a leaf, shared by the gate, the internal rumqttd and
//! the start-up in `mod.rs`).

use std::net::SocketAddr;
use std::time::Duration;

use crate::access::credentials::CredentialsError;

/// Why the embedded broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error(
        "cannot start the embedded MQTT broker: {addr} is already in use. If another broker \
         (e.g. Mosquitto) is running there, use it with `--broker mqtt://127.0.0.1:{port}`, or \
         choose another port for the embedded broker"
    )]
    AddrInUse { addr: SocketAddr, port: u16 },
    #[error("cannot start the embedded MQTT broker on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the embedded MQTT broker thread: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("the embedded MQTT broker on {addr} stopped during start-up (was the port taken?)")]
    Exited { addr: SocketAddr },
    #[error("the embedded MQTT broker on {addr} did not accept connections within {waited:?}")]
    NotReady { addr: SocketAddr, waited: Duration },
    #[error("cannot start the embedded MQTT broker: its credentials: {0}")]
    Credentials(#[source] CredentialsError),
}
