//! One simulated device's (or gateway's, or dock's) MQTT connection, as a real device holds it:
//! its own client id and TCP connection, reconnecting with backoff, and able to drop off the
//! network on purpose; or its port on a connection shared with other units (`hub.rs`).
//!
//! Owns: the rumqttc client and the task polling its event loop (own connections), the options
//! every simulated connection uses. Must never: await a publish or
//! a channel send in the polling task (rumqttc deadlocks when its request queue is full and
//! nobody polls), or decide anything about payloads: it only moves bytes.

use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinHandle;

use super::config::BrokerAddr;
use super::credentials::Login;
use super::stats::StatsCell;

/// Largest MQTT packet a simulated device sends or accepts (OTA messages are a few KiB; a gateway
/// reporting hundreds of sub-devices stays well under this).
const MAX_PACKET_BYTES: usize = 256 * 1024;
/// Requests (publish, subscribe) queued in the client before `try_publish` refuses.
pub(crate) const REQUEST_QUEUE: usize = 64;
/// Received messages queued for the device task before new ones are dropped.
pub(crate) const INBOX: usize = 64;
/// Connection attempts a whole fleet has in flight at once: thousands of simultaneous CONNECTs
/// overflow the broker's accept backlog, and the dropped ones only retry seconds later.
pub(crate) const CONNECTS_IN_FLIGHT: usize = 64;
const CONNECT_TIMEOUT_SECS: u64 = 15;
const KEEP_ALIVE: Duration = Duration::from_secs(30);
pub(crate) const BACKOFF_MIN: Duration = Duration::from_millis(200);
pub(crate) const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// A message the broker delivered to the device (boxed in the device's inbox: a queue
/// allocates room for 32 entries at once, for every device of a large fleet).
#[derive(Debug, Clone)]
pub(crate) struct Inbound {
    pub topic: String,
    pub payload: Vec<u8>,
}

/// What a unit asks of its shared connection, in the order it asked.
#[derive(Debug)]
pub(crate) enum Request {
    Publish {
        port: u32,
        topic: String,
        payload: Vec<u8>,
    },
    Subscribe {
        port: u32,
        topics: Vec<String>,
    },
    /// The unit comes online (at start, and back from dropping off).
    Join {
        port: u32,
    },
    /// The unit drops off: its topics are unsubscribed, its publishes refused.
    Leave {
        port: u32,
    },
}

/// A unit's handle on a shared connection (`hub.rs` makes it, [`Link`] uses it).
#[derive(Debug)]
pub(crate) struct Port {
    id: u32,
    tx: mpsc::UnboundedSender<Request>,
}

impl Port {
    /// The port numbered `id` of the connection whose task reads `tx`.
    pub(crate) fn new(id: u32, tx: mpsc::UnboundedSender<Request>) -> Port {
        Port { id, tx }
    }

    /// Queues a request for the connection's task. The queue is unbounded so that a join or a
    /// leave is never lost; publishes are bounded by the client's own queue behind it.
    pub(crate) fn send(&self, make: impl FnOnce(u32) -> Request) -> bool {
        self.tx.send(make(self.id)).is_ok()
    }

    pub(crate) fn id(&self) -> u32 {
        self.id
    }
}

/// A unit's way onto the broker: a connection of its own, or a port on a connection it shares
/// with other units (`hub.rs`). Units use both the same way.
pub(crate) enum Link {
    Own(OwnLink),
    Shared(Port),
}

impl Link {
    /// Creates a link of its own (not yet connected) and the receivers its device task listens
    /// on.
    pub(crate) fn new(
        addr: BrokerAddr,
        login: Login,
        stats: StatsCell,
        gate: Arc<Semaphore>,
    ) -> (Link, mpsc::Receiver<Box<Inbound>>, watch::Receiver<u64>) {
        let (own, inbox, connected) = OwnLink::new(addr, login, stats, gate);
        (Link::Own(own), inbox, connected)
    }

    /// A link on a shared connection (made by [`super::hub::Hub::add`]).
    pub(crate) fn shared(port: Port) -> Link {
        Link::Shared(port)
    }

    /// Goes online: a fresh connection of its own (the broker sees a new session, so
    /// subscriptions are redone after the next CONNACK), or joining the shared connection
    /// (announced to the unit as a CONNACK of its own when the connection is up).
    pub(crate) fn connect(&mut self) {
        match self {
            Link::Own(own) => own.connect(),
            Link::Shared(port) => {
                port.send(|port| Request::Join { port });
            }
        }
    }

    /// Drops off the network. What the device already queued still goes out first. On a
    /// shared connection the unit's topics are unsubscribed and nothing more reaches it.
    pub(crate) fn go_offline(&mut self) {
        match self {
            Link::Own(own) => own.go_offline(),
            Link::Shared(port) => {
                port.send(|port| Request::Leave { port });
            }
        }
    }

    /// Queues a QoS 1 publish; counts it as dropped when offline or the queue is full.
    pub(crate) fn publish(&self, topic: &str, payload: &serde_json::Value) {
        match self {
            Link::Own(own) => own.publish(topic, payload),
            Link::Shared(port) => {
                // Counted by the connection's task, which knows whether the client took it.
                port.send(|port| Request::Publish {
                    port,
                    topic: topic.to_owned(),
                    payload: payload.to_string().into_bytes(),
                });
            }
        }
    }

    /// Subscribes to `topics` at QoS 1 (call after every CONNACK).
    pub(crate) fn subscribe(&self, topics: &[String]) {
        match self {
            Link::Own(own) => own.subscribe(topics),
            Link::Shared(port) => {
                port.send(|port| Request::Subscribe {
                    port,
                    topics: topics.to_vec(),
                });
            }
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        if let Link::Shared(port) = self {
            tracing::trace!(port = port.id(), "unit left its shared connection");
            port.send(|port| Request::Leave { port });
        }
    }
}

/// The options every simulated connection uses.
pub(crate) fn mqtt_options(addr: &BrokerAddr, login: &Login) -> MqttOptions {
    let mut opts = MqttOptions::new(&login.client_id, &addr.host, addr.port);
    if let (Some(user), Some(password)) = (&login.username, &login.password) {
        opts.set_credentials(user, password);
    }
    opts.set_keep_alive(KEEP_ALIVE)
        .set_clean_session(true)
        .set_max_packet_size(MAX_PACKET_BYTES, MAX_PACKET_BYTES);
    opts
}

/// rumqttc gives up on a CONNACK after 5 s by default; when thousands of simulated devices
/// connect at once the broker needs longer, and retrying only adds load.
pub(crate) fn lengthen_connect_timeout(event_loop: &mut EventLoop) {
    let mut net = event_loop.network_options();
    net.set_connection_timeout(CONNECT_TIMEOUT_SECS);
    event_loop.set_network_options(net);
}

/// A device's own connection. Dropping it ends the polling task and so the TCP connection.
pub(crate) struct OwnLink {
    addr: BrokerAddr,
    login: Login,
    inbox: mpsc::Sender<Box<Inbound>>,
    /// Bumped on every CONNACK so the device re-subscribes and re-announces itself.
    connected: watch::Sender<u64>,
    stats: StatsCell,
    /// Fleet-wide limit on connection attempts in flight (see [`CONNECTS_IN_FLIGHT`]).
    gate: Arc<Semaphore>,
    client: Option<AsyncClient>,
    poller: Option<JoinHandle<()>>,
}

impl OwnLink {
    fn new(
        addr: BrokerAddr,
        login: Login,
        stats: StatsCell,
        gate: Arc<Semaphore>,
    ) -> (OwnLink, mpsc::Receiver<Box<Inbound>>, watch::Receiver<u64>) {
        let (inbox, inbox_rx) = mpsc::channel(INBOX);
        let (connected, connected_rx) = watch::channel(0);
        let link = OwnLink {
            addr,
            login,
            inbox,
            connected,
            stats,
            gate,
            client: None,
            poller: None,
        };
        (link, inbox_rx, connected_rx)
    }

    /// Opens a fresh connection (the broker sees a new session: subscriptions must be redone
    /// after the next CONNACK).
    fn connect(&mut self) {
        self.disconnect();
        let opts = mqtt_options(&self.addr, &self.login);
        let (client, mut event_loop) = AsyncClient::new(opts, REQUEST_QUEUE);
        lengthen_connect_timeout(&mut event_loop);
        let task = poll(
            event_loop,
            self.inbox.clone(),
            self.connected.clone(),
            self.stats.clone(),
            self.gate.clone(),
        );
        self.poller = Some(tokio::spawn(task));
        self.client = Some(client);
    }

    /// Drops off the network. What the device already queued still goes out first (then a
    /// DISCONNECT), so what the broker saw before the drop is the same on every run.
    fn go_offline(&mut self) {
        let flushed = self
            .client
            .take()
            .is_some_and(|c| c.try_disconnect().is_ok());
        if !flushed {
            self.disconnect();
        }
        // Otherwise the polling task ends by itself once the DISCONNECT is written.
    }

    /// Closes the connection at once, dropping anything still queued.
    fn disconnect(&mut self) {
        if let Some(p) = self.poller.take() {
            p.abort();
        }
        self.client = None;
    }

    fn publish(&self, topic: &str, payload: &serde_json::Value) {
        let bytes = payload.to_string().into_bytes();
        let sent = self
            .client
            .as_ref()
            .is_some_and(|c| c.try_publish(topic, QoS::AtLeastOnce, false, bytes).is_ok());
        if sent {
            self.stats.update(|s| s.messages_published += 1);
        } else {
            self.stats.update(|s| s.messages_dropped += 1);
            tracing::debug!(client = %self.login.client_id, topic, "simulated device dropped a publish");
        }
    }

    fn subscribe(&self, topics: &[String]) {
        let filters = topics
            .iter()
            .map(|t| rumqttc::SubscribeFilter::new(t.clone(), QoS::AtLeastOnce));
        let ok = self
            .client
            .as_ref()
            .is_some_and(|c| c.try_subscribe_many(filters).is_ok());
        if !ok {
            tracing::warn!(
                client = %self.login.client_id,
                "{}",
                crate::i18n::tr!("sim.log.subscribe")
            );
        }
    }
}

impl Drop for OwnLink {
    fn drop(&mut self) {
        self.disconnect();
    }
}

/// Drives the event loop forever: forwards CONNACKs and publishes, counts PUBACKs, backs off
/// after errors (rumqttc would otherwise retry at once, hammering a broker that is down).
async fn poll(
    mut event_loop: EventLoop,
    inbox: mpsc::Sender<Box<Inbound>>,
    connected: watch::Sender<u64>,
    stats: StatsCell,
    gate: Arc<Semaphore>,
) {
    let mut backoff = BACKOFF_MIN;
    let mut up = false;
    let mut permit = None;
    loop {
        if !up && permit.is_none() {
            permit = gate.clone().acquire_owned().await.ok();
        }
        match event_loop.poll().await {
            Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => return,
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                up = true;
                permit = None;
                backoff = BACKOFF_MIN;
                connected.send_modify(|n| *n += 1);
            }
            Ok(Event::Incoming(Packet::PubAck(_))) => stats.update(|s| s.messages_acked += 1),
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let msg = Box::new(Inbound {
                    topic: p.topic,
                    payload: p.payload.to_vec(),
                });
                if inbox.try_send(msg).is_err() {
                    stats.update(|s| s.messages_dropped += 1);
                }
            }
            Ok(_) => {}
            Err(e) => {
                up = false;
                permit = None;
                tracing::debug!(error = %e, ?backoff, "simulated device connection error");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}
