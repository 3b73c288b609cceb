//! Why the embedded broker could not start (a leaf, shared by the gate, the internal rumqttd and
//! the start-up in `mod.rs`).

use std::net::SocketAddr;
use std::time::Duration;

use crate::access::credentials::CredentialsError;
use crate::i18n::{self, tr};

/// Why the embedded broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("{}", tr!("broker.addr_in_use", addr = addr, port = port))]
    AddrInUse { addr: SocketAddr, port: u16 },
    #[error("{}", tr!("broker.bind", addr = addr, why = i18n::io_error(source)))]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", tr!("broker.spawn", why = i18n::io_error(_0)))]
    Spawn(#[source] std::io::Error),
    #[error("{}", tr!("broker.exited", addr = addr))]
    Exited { addr: SocketAddr },
    #[error("{}", tr!("broker.not_ready", addr = addr, waited = humantime::format_duration(*waited)))]
    NotReady { addr: SocketAddr, waited: Duration },
    #[error("{}", tr!("broker.credentials", why = _0))]
    Credentials(#[source] CredentialsError),
}
