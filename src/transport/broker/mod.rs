//! The embedded MQTT broker that `--demo`, the simulator, tests and `ota-console broker` use when
//! no external broker is given: a private rumqttd behind a gate we own.
//!
//! Owns: the public face of the broker — [`BrokerSettings`] (listen addresses, open or secure
//! access, TLS), [`EmbeddedBroker::start`] and its handle, the start-up errors, and the limits
//! every part shares ([`MAX_PACKET_BYTES`], [`MAX_CONNECTIONS`]). Must never: let a client reach
//! rumqttd without passing the gate, or log through rumqttd at default levels (see
//! [`QUIET_LOG_DIRECTIVE`]).
//!
//! # Why a gate
//! rumqttd 0.20 has no topic-authorization hook (issue #16), and the broker that has one (rmqtt)
//! lost a QoS 1 message of a client that published and closed at once, at a fifth of the
//! throughput. So rumqttd listens on an ephemeral loopback port with a random internal login
//! (no local process can bypass the gate) and clients connect to the gate, which parses MQTT
//! 3.1.1 frames, authenticates CONNECT, authorizes PUBLISH, SUBSCRIBE and the Will with
//! [`crate::access`], and forwards the client's raw bytes otherwise.
//!
//! # Layout
//! - [`internal`]: the private rumqttd (configuration, internal login, start-up wait).
//! - [`connect`]: the CONNECT: admission (credentials re-read when their files change) and the
//!   CONNECT rewritten for rumqttd (internal login, client id in the identity's namespace).
//! - [`acl`]: one connection's publish and subscribe decisions, SUBSCRIBE and SUBACK rewriting.
//! - [`gate`]: the listeners and one connection's forwarding loop in both directions.
//! - [`events`]: [`BrokerEvent`]s (refusals) for the log, the window and the inspector.
//!
//! The gate runs on a thread of its own with its own tokio runtime, so [`EmbeddedBroker::start`]
//! is synchronous and works whatever runtime the caller has (or none). Neither rumqttd nor the
//! gate can be stopped: the broker lives until the process exits.

mod acl;
mod connect;
mod dollar;
mod error;
mod events;
mod gate;
mod internal;
mod limits;
mod quiet;

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::broadcast;

pub use error::BrokerError;
pub use events::{Attempt, BrokerEvent, BrokerRefusal};
pub use limits::{MAX_CONNECTIONS, MAX_PACKET_BYTES};

use crate::access::credentials::BackoffPolicy;
use crate::access::rules::RouteTable;
use crate::device_id::DeviceId;

/// `tracing` directive that silences rumqttd: it logs every client disconnect at ERROR level.
/// Add it to the process's `EnvFilter` (e.g. `EnvFilter::new("info").add_directive(...)`).
pub const QUIET_LOG_DIRECTIVE: &str = "rumqttd=off";

/// Who may use the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerAccess {
    /// No authentication, no topic rules (`--open-broker`, or `--demo` on loopback).
    Open,
    /// Credentials of this data directory (`access::credentials` files: `broker-console.json`,
    /// `alibaba-device-secrets.csv`, `mqtt-users.txt`), re-read when one of them changes, and the
    /// topic rules over `routes` (the dialects' topics: `protocol::registry::topic_routes()`).
    Secure {
        data_dir: PathBuf,
        routes: RouteTable,
    },
}

/// A TLS listener next to the plain one.
#[derive(Debug, Clone)]
pub struct BrokerTls {
    pub listen: SocketAddr,
    pub server: Arc<rustls::ServerConfig>,
}

/// Everything [`EmbeddedBroker::start`] needs.
#[derive(Debug, Clone)]
pub struct BrokerSettings {
    /// The gate's plain MQTT listener (port 0 picks a free port).
    pub listen: SocketAddr,
    pub access: BrokerAccess,
    pub tls: Option<BrokerTls>,
}

impl BrokerSettings {
    /// No authentication, no topic rules, no TLS.
    pub fn open(listen: SocketAddr) -> Self {
        BrokerSettings {
            listen,
            access: BrokerAccess::Open,
            tls: None,
        }
    }

    /// The credentials of `data_dir` and the topic rules over `routes` (the dialects' topics:
    /// `protocol::registry::topic_routes()`), no TLS.
    pub fn secure(listen: SocketAddr, data_dir: PathBuf, routes: RouteTable) -> Self {
        BrokerSettings {
            listen,
            access: BrokerAccess::Secure { data_dir, routes },
            tls: None,
        }
    }
}

/// A running broker (gate and rumqttd). Dropping the handle does not stop it (rumqttd cannot be
/// stopped); the gate keeps serving until the process exits.
pub struct EmbeddedBroker {
    local_addr: SocketAddr,
    tls_addr: Option<SocketAddr>,
    shared: Arc<gate::Shared>,
}

impl std::fmt::Debug for EmbeddedBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedBroker")
            .field("local_addr", &self.local_addr)
            .field("tls_addr", &self.tls_addr)
            .field("open", &self.is_open())
            .finish()
    }
}

impl EmbeddedBroker {
    /// Starts rumqttd on a loopback port and the gate on `settings.listen` (and the TLS listener,
    /// if any), each on threads of their own. Port 0 picks a free port. A taken port gives
    /// [`BrokerError::AddrInUse`], whose message tells the user how to use the broker already
    /// there. Secure access loads the data directory's credentials first (creating the
    /// console's). Returns once both accept TCP connections (waits at most 5 s).
    pub fn start(settings: BrokerSettings) -> Result<EmbeddedBroker, BrokerError> {
        let plain = bind(settings.listen)?;
        let tls = match &settings.tls {
            Some(tls) => Some((bind(tls.listen)?, tls.server.clone())),
            None => None,
        };
        let access = match &settings.access {
            BrokerAccess::Open => connect::Access::Open,
            BrokerAccess::Secure { data_dir, routes } => connect::Access::Secure(
                connect::SecureAccess::load(data_dir.clone(), routes.clone())
                    .map_err(BrokerError::Credentials)?,
            ),
        };
        let local_addr = local_addr_of(&plain, settings.listen)?;
        let tls_addr = match &tls {
            Some((listener, _)) => Some(local_addr_of(listener, listener_hint(&settings))?),
            None => None,
        };
        raise_open_file_limit();
        let upstream = internal::InternalBroker::start()?;
        let shared = Arc::new(gate::Shared::new(access, upstream));
        gate::spawn(shared.clone(), plain, tls)?;
        let mode = if shared.is_open() {
            "OPEN: no authentication, no topic rules"
        } else {
            "secure: authenticated clients, topic rules"
        };
        tracing::info!(%local_addr, ?tls_addr, mode, "embedded MQTT broker listening");
        Ok(EmbeddedBroker {
            local_addr,
            tls_addr,
            shared,
        })
    }

    /// Waits (at most `limit`) until the broker has written nothing to any client for a
    /// moment: what a client published last has then reached its subscribers' sockets. For a
    /// console about to exit, after its own link has stopped.
    pub async fn quiesce(&self, limit: std::time::Duration) {
        self.shared
            .deliveries
            .wait_quiet(QUIET_BEFORE_EXIT, limit)
            .await;
    }

    /// The address of the gate's plain listener, with the real port.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address of the TLS listener, if one was asked for.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
    }

    /// Whether anyone may connect and use any topic ([`BrokerAccess::Open`]).
    pub fn is_open(&self) -> bool {
        self.shared.is_open()
    }

    /// The broker's events from now on (refusals). A receiver that lags loses the oldest.
    pub fn events(&self) -> broadcast::Receiver<BrokerEvent> {
        self.shared.events.subscribe()
    }

    /// Records (or with `None` forgets) the gateway `device` reports through (a DJI drone and its
    /// dock), so the gateway may publish in its name what its dialect allows. No effect in open
    /// mode.
    pub fn set_gateway(&self, device: &DeviceId, gateway: Option<&DeviceId>) {
        if let connect::Access::Secure(secure) = &self.shared.access {
            secure.set_gateway(device, gateway);
        }
    }

    /// How many attempts were refused since the start.
    pub fn refusal_count(&self) -> u64 {
        self.shared.events.refusal_count()
    }

    /// Replaces the back-off against password guessing (the default:
    /// [`BackoffPolicy::default`]). Counts so far are forgotten. No effect in open mode.
    pub fn set_backoff(&self, policy: BackoffPolicy) {
        if let connect::Access::Secure(secure) = &self.shared.access {
            secure.set_backoff(policy);
        }
    }
}

/// A pause in deliveries long enough to say rumqttd has routed what it had: it forwards a
/// publish to subscribers within milliseconds on loopback.
const QUIET_BEFORE_EXIT: std::time::Duration = std::time::Duration::from_millis(150);

/// Open files the broker asks for at most: a client costs three descriptors in this process
/// (its socket, and both ends of the gate's connection to rumqttd).
const WANTED_OPEN_FILES: u64 = 4 * MAX_CONNECTIONS as u64;

/// Raises the soft open-file limit (often 1024, i.e. about 300 clients) towards the hard one.
fn raise_open_file_limit() {
    let files = crate::host::raise_open_file_limit(WANTED_OPEN_FILES);
    if let Some(e) = files.refused {
        tracing::warn!(
            error = %e,
            limit = files.limit,
            "cannot raise the open-file limit; the broker serves about a third as many clients"
        );
    }
}

/// The TLS listener's configured address (for error messages).
fn listener_hint(settings: &BrokerSettings) -> SocketAddr {
    settings.tls.as_ref().map_or(settings.listen, |t| t.listen)
}

/// Binds a listener, telling a taken port apart from other failures.
fn bind(listen: SocketAddr) -> Result<TcpListener, BrokerError> {
    TcpListener::bind(listen).map_err(|source| {
        if source.kind() == std::io::ErrorKind::AddrInUse {
            BrokerError::AddrInUse {
                addr: listen,
                port: listen.port(),
            }
        } else {
            BrokerError::Bind {
                addr: listen,
                source,
            }
        }
    })
}

fn local_addr_of(listener: &TcpListener, hint: SocketAddr) -> Result<SocketAddr, BrokerError> {
    listener
        .local_addr()
        .map_err(|source| BrokerError::Bind { addr: hint, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taken_port_is_reported_with_the_external_broker_hint() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let err = bind(addr).unwrap_err();
        assert!(matches!(err, BrokerError::AddrInUse { .. }), "{err:?}");
        let text = err.to_string();
        assert!(
            text.contains(&format!("--broker mqtt://127.0.0.1:{}", addr.port())),
            "{text}"
        );
    }

    #[test]
    fn port_zero_resolves_to_a_real_port() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = local_addr_of(&listener, "127.0.0.1:0".parse().unwrap()).unwrap();
        assert_ne!(addr.port(), 0);
    }
}
