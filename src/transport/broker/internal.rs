//! The private rumqttd behind the gate.
//!
//! Owns: rumqttd's configuration (limits generous enough that our own decoder, not the broker,
//! rejects hostile messages), its loopback-only listener on an ephemeral port, the random
//! internal login rumqttd demands of every connection (its static `ConnectionSettings.auth`), and
//! waiting until it accepts connections. Must never: listen on anything but loopback, or share
//! its login outside the gate.
//!
//! rumqttd has no shutdown API and cannot report the port it bound, so the port is bound once
//! here (to resolve port 0), released, and handed to rumqttd. It lives until the process exits.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::error::BrokerError;
use super::limits::{MAX_CONNECTIONS, MAX_PACKET_BYTES, READY_TIMEOUT};

const READY_POLL: Duration = Duration::from_millis(10);

/// The running rumqttd and the login the gate uses for every client.
pub(super) struct InternalBroker {
    pub(super) addr: SocketAddr,
    pub(super) username: String,
    pub(super) password: String,
    _thread: JoinHandle<()>,
}

impl InternalBroker {
    /// Starts rumqttd on `127.0.0.1:<free port>` with a fresh random login.
    pub(super) fn start() -> Result<InternalBroker, BrokerError> {
        let wanted = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let addr = TcpListener::bind(wanted)
            .and_then(|l| l.local_addr())
            .map_err(|source| BrokerError::Bind {
                addr: wanted,
                source,
            })?;
        let username = format!("gate-{}", hex::encode(rand::random::<[u8; 8]>()));
        let password = hex::encode(rand::random::<[u8; 24]>());
        let config = broker_config(addr, &username, &password);
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
        wait_until_accepting(addr, &thread)?;
        Ok(InternalBroker {
            addr,
            username,
            password,
            _thread: thread,
        })
    }
}

fn broker_config(listen: SocketAddr, username: &str, password: &str) -> rumqttd::Config {
    let connections = rumqttd::ConnectionSettings {
        // Time a new TCP connection has to send CONNECT (u16 in rumqttd); the gate sends it at
        // once, after the client's own CONNECT passed.
        connection_timeout_ms: 10_000,
        max_payload_size: MAX_PACKET_BYTES,
        // Packets read from one connection before they are handed to the router in one batch.
        max_inflight_count: 1_000,
        // Only the gate knows this login: a local process connecting to the loopback port
        // directly is refused.
        auth: Some(HashMap::from([(username.to_owned(), password.to_owned())])),
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

/// Polls until a TCP connection to rumqttd succeeds, its thread dies, or 5 s pass.
fn wait_until_accepting(addr: SocketAddr, thread: &JoinHandle<()>) -> Result<(), BrokerError> {
    let started = Instant::now();
    loop {
        if thread.is_finished() {
            return Err(BrokerError::Exited { addr });
        }
        if TcpStream::connect_timeout(&addr, READY_POLL * 10).is_ok() {
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
