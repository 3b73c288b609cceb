//! The embedded MQTT broker (rumqttd) that `--demo`, the simulator and tests use when no external
//! broker is given.
//!
//! Owns: choosing and checking the listen address, the rumqttd configuration (limits generous
//! enough that our own decoder, not the broker, rejects hostile messages) and waiting until the
//! broker accepts connections. Must never: be exposed to the internet as a production broker (no
//! authentication, no TLS), or log through rumqttd at default levels (see
//! [`QUIET_LOG_DIRECTIVE`]).
//!
//! rumqttd has no shutdown API and cannot report the port it bound, so the address is bound once
//! here (to detect "address in use" and to resolve port 0), released, and its port handed to
//! rumqttd. The broker then lives until the process exits.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Largest MQTT packet the embedded broker accepts. Larger than anything we decode, so that a
/// hostile oversized message reaches our decoder (which refuses it with a clear reason) instead of
/// the broker silently killing the sender's connection.
pub const MAX_PACKET_BYTES: usize = 16 * 1024 * 1024 + 64 * 1024;

/// Connections the embedded broker admits (simulated fleets reach 20 000 devices).
pub const MAX_CONNECTIONS: usize = 25_000;

/// `tracing` directive that silences rumqttd: it logs every client disconnect at ERROR level.
/// Add it to the process's `EnvFilter` (e.g. `EnvFilter::new("info").add_directive(...)`).
pub const QUIET_LOG_DIRECTIVE: &str = "rumqttd=off";

/// How long [`EmbeddedBroker::start`] waits for rumqttd to accept TCP connections.
const READY_TIMEOUT: Duration = Duration::from_secs(5);
const READY_POLL: Duration = Duration::from_millis(10);

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
}

/// A running rumqttd broker. Dropping the handle does not stop it (rumqttd cannot be stopped).
#[derive(Debug)]
pub struct EmbeddedBroker {
    local_addr: SocketAddr,
    _thread: JoinHandle<()>,
}

impl EmbeddedBroker {
    /// Starts rumqttd on a named thread. Port 0 picks a free port. A taken port gives
    /// [`BrokerError::AddrInUse`], whose message tells the user how to use the broker already there.
    /// Returns once the broker accepts TCP connections (waits at most 5 s).
    pub fn start(listen: SocketAddr) -> Result<EmbeddedBroker, BrokerError> {
        let local_addr = reserve_addr(listen)?;
        let config = broker_config(local_addr);
        let thread = std::thread::Builder::new()
            .name("mqtt-broker".to_owned())
            .spawn(move || {
                let mut broker = rumqttd::Broker::new(config);
                // Returns only when every listener has died (e.g. the port was taken between our
                // check and rumqttd's bind); the waiting loop below notices the finished thread.
                if let Err(e) = broker.start() {
                    tracing::error!(error = %e, "embedded MQTT broker stopped");
                }
            })
            .map_err(BrokerError::Spawn)?;
        wait_until_accepting(local_addr, &thread)?;
        tracing::info!(%local_addr, "embedded MQTT broker listening");
        Ok(EmbeddedBroker {
            local_addr,
            _thread: thread,
        })
    }

    /// The address the broker listens on, with the real port.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

/// Binds `listen` once to detect a taken port and to resolve port 0, then releases it.
fn reserve_addr(listen: SocketAddr) -> Result<SocketAddr, BrokerError> {
    let listener = TcpListener::bind(listen).map_err(|source| {
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
    })?;
    listener.local_addr().map_err(|source| BrokerError::Bind {
        addr: listen,
        source,
    })
}

fn broker_config(listen: SocketAddr) -> rumqttd::Config {
    let connections = rumqttd::ConnectionSettings {
        // Time a new TCP connection has to send CONNECT (u16 in rumqttd).
        connection_timeout_ms: 10_000,
        max_payload_size: MAX_PACKET_BYTES,
        // Packets read from one connection before they are handed to the router in one batch.
        max_inflight_count: 1_000,
        auth: None,
        external_auth: None,
        // Clients subscribe after connecting; without this rumqttd refuses new filters.
        dynamic_filters: true,
    };
    let server = rumqttd::ServerSettings {
        name: "embedded-v4".to_owned(),
        listen,
        tls: None,
        // rumqttd sleeps this long after each accept: 0 lets 20 000 devices connect quickly.
        next_connection_delay_ms: 0,
        connections,
    };
    let router = rumqttd::RouterConfig {
        max_connections: MAX_CONNECTIONS,
        max_outgoing_packet_count: 1_000,
        // Every subscription filter has an in-memory log of this many segments; a subscriber that
        // lags further behind loses messages. 16 × 32 MiB keeps QoS 1 bursts to a slow
        // subscriber intact while bounding memory per filter.
        max_segment_size: 32 * 1024 * 1024,
        max_segment_count: 16,
        custom_segment: None,
        initialized_filters: None,
        shared_subscriptions_strategy: Default::default(),
    };
    rumqttd::Config {
        id: 0,
        router,
        v4: Some(HashMap::from([("1".to_owned(), server)])),
        ..Default::default()
    }
}

/// Polls until a TCP connection to the broker succeeds, the broker thread dies, or 5 s pass.
fn wait_until_accepting(addr: SocketAddr, thread: &JoinHandle<()>) -> Result<(), BrokerError> {
    let target = SocketAddr::new(connectable_ip(addr.ip()), addr.port());
    let started = Instant::now();
    loop {
        if thread.is_finished() {
            return Err(BrokerError::Exited { addr });
        }
        if TcpStream::connect_timeout(&target, READY_POLL * 10).is_ok() {
            return Ok(());
        }
        if started.elapsed() >= READY_TIMEOUT {
            return Err(BrokerError::NotReady {
                addr,
                waited: READY_TIMEOUT,
            });
        }
        std::thread::sleep(READY_POLL);
    }
}

/// A wildcard listen address is reached through loopback of the same family.
fn connectable_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_addresses_are_probed_through_loopback() {
        assert_eq!(
            connectable_ip(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        );
        assert_eq!(
            connectable_ip(IpAddr::V6(Ipv6Addr::UNSPECIFIED)),
            IpAddr::V6(Ipv6Addr::LOCALHOST)
        );
        let lan: IpAddr = "192.168.1.7".parse().unwrap();
        assert_eq!(connectable_ip(lan), lan);
    }

    #[test]
    fn taken_port_is_reported_with_the_external_broker_hint() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let err = reserve_addr(addr).unwrap_err();
        assert!(matches!(err, BrokerError::AddrInUse { .. }), "{err:?}");
        let text = err.to_string();
        assert!(
            text.contains(&format!("--broker mqtt://127.0.0.1:{}", addr.port())),
            "{text}"
        );
    }

    #[test]
    fn port_zero_resolves_to_a_real_port() {
        let addr = reserve_addr("127.0.0.1:0".parse().unwrap()).unwrap();
        assert_ne!(addr.port(), 0);
    }
}
