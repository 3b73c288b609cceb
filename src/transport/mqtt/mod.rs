//! The MQTT client link: one actor task that owns a rumqttc `EventLoop`, reached through a
//! cloneable [`MqttLink`] handle.
//!
//! Owns: connecting (TCP or TLS), subscribing (QoS 1) when a session starts, backoff between
//! reconnects, the bounded outgoing queue (kept across reconnects), the bounded stream of
//! incoming publishes, and telling whether the broker kept the session ([`SessionNews`]).
//! Must never: wait for room in a queue from the handle (a publish is refused when the queue is
//! full), decode payloads (that is `protocol`'s job), or print the password (custom `Debug`).
//!
//! # Sessions
//! With a client id of its own ([`LinkOptions::client_id`]) the link asks for a persistent
//! session (`clean_session = false`): the broker keeps the subscriptions and queues what devices
//! publish while the console is away (killed, starved past its keep-alive, reconnecting), and
//! delivers it on the next connection. Without one the id is random and the session clean: a
//! random id can never resume, and a persistent session under it would only pile up messages on
//! the broker.
//!
//! # Reading and writing (why the actor drives the connection itself)
//! rumqttc's `EventLoop::poll` connects, and the actor uses it for that. Once connected, the
//! actor runs the connection's turns itself with rumqttc's public parts (`state`, `network`,
//! `pending`): rumqttc 0.25's own turn either reads up to 10 packets or writes one request, and
//! hands out queued events before writing anything, so under a flood of device reports it wrote
//! about one answer per ten reports and the answers piled up in the queue until it overflowed
//! (22,943 lost in a 100,000-device run). A turn here hands out what was read, writes every
//! publish the inflight window allows (one flush for all), then waits for the first of: the
//! broker, a new publish, the keep-alive.
//!
//! # What happens to publishes across a reconnect
//! When a connection fails, rumqttc's `EventLoop::clean` moves the publishes in flight (with
//! their packet ids) into `pending`. On the next ConnAck `poll` keeps `pending` if
//! `session_present`, and clears it otherwise. Pending requests are written first and regardless
//! of the inflight limit. So the actor:
//! - leaves the publishes in flight in `pending`, to be retransmitted under their packet ids when
//!   the broker kept the session (exactly what MQTT asks; nothing is re-queued twice), and keeps
//!   a copy of them;
//! - keeps fresh publishes (packet id 0) in its own queue, written only while the inflight window
//!   has room and no packet id collision waits, so fresh ids never collide with retransmitted
//!   ones;
//! - when the broker answers `session_present = false` (a clean session, or it lost ours),
//!   puts the copies back at the front of its queue with fresh ids and subscribes again.
//!
//! Delivery stays at least once: a publish the broker received but whose PUBACK was lost is
//! sent again.

use std::collections::VecDeque;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use rumqttc::{EventLoop, MqttOptions, Publish, QoS, TlsConfiguration, Transport};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, watch};

use crate::i18n::tr;
use crate::wire::Outbound;

mod actor;
mod backoff;
mod failure;
mod handback;
#[cfg(test)]
mod scripted_broker;
mod status;

use actor::{Actor, MAX_INFLIGHT};
use backoff::Backoff;
use handback::Handback;
use status::Counters;
pub use status::{Inbound, LinkState, SessionNews};

/// Largest packet accepted from the broker. Far above what we decode, so that an oversized
/// hostile message is delivered and refused by the decoder instead of killing the connection.
pub const MAX_INCOMING_PACKET_BYTES: usize = 16 * 1024 * 1024 + 64 * 1024;
/// Largest packet we send; notices are a few KiB. Checked in [`MqttLink::publish`] because rumqttc
/// would otherwise drop the whole connection on an oversized write.
pub const MAX_OUTGOING_PACKET_BYTES: usize = 1024 * 1024;
/// Incoming publishes buffered for the consumer before the link stops reading (backpressure).
pub const INBOUND_CAPACITY: usize = 4096;
const DEFAULT_KEEP_ALIVE_SECS: u64 = 30;
const DEFAULT_MAX_QUEUED: usize = 10_000;

/// Why a broker URL could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BrokerUrlError {
    #[error("{}", tr!("error.broker_url.no_scheme", url = format!("{_0:?}")))]
    NoScheme(String),
    #[error("{}", tr!("error.broker_url.scheme", scheme = format!("{_0:?}")))]
    Scheme(String),
    #[error("{}", tr!("error.broker_url.no_host", url = format!("{_0:?}")))]
    NoHost(String),
    #[error("{}", tr!("error.broker_url.port", url = format!("{url:?}"), port = format!("{port:?}")))]
    Port { url: String, port: String },
    #[error("{}", tr!("error.broker_url.extra", url = format!("{_0:?}")))]
    Extra(String),
}

/// Where the broker is: `mqtt://host[:1883]` or `mqtts://host[:8883]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    tls: bool,
    host: String,
    port: u16,
}

impl BrokerUrl {
    /// A plain-TCP broker URL.
    pub fn plain(host: impl Into<String>, port: u16) -> BrokerUrl {
        BrokerUrl {
            tls: false,
            host: host.into(),
            port,
        }
    }

    pub fn tls(&self) -> bool {
        self.tls
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

impl fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

impl FromStr for BrokerUrl {
    type Err = BrokerUrlError;

    fn from_str(text: &str) -> Result<BrokerUrl, BrokerUrlError> {
        let url = text.trim();
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| BrokerUrlError::NoScheme(url.to_owned()))?;
        let (tls, default_port) = match scheme.to_ascii_lowercase().as_str() {
            "mqtt" | "tcp" => (false, 1883),
            "mqtts" | "ssl" => (true, 8883),
            _ => return Err(BrokerUrlError::Scheme(scheme.to_owned())),
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains(['/', '?', '#', '@']) {
            return Err(BrokerUrlError::Extra(url.to_owned()));
        }
        let (host, port_text) = split_host_port(authority);
        if host.is_empty() {
            return Err(BrokerUrlError::NoHost(url.to_owned()));
        }
        let port =
            match port_text {
                None => default_port,
                Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| {
                    BrokerUrlError::Port {
                        url: url.to_owned(),
                        port: p.to_owned(),
                    }
                })?,
            };
        Ok(BrokerUrl {
            tls,
            host: host.to_owned(),
            port,
        })
    }
}

/// Splits `host:port`, `[v6]:port`, `host` or `[v6]`.
fn split_host_port(authority: &str) -> (&str, Option<&str>) {
    if let Some(bracketed) = authority.strip_prefix('[') {
        return match bracketed.split_once(']') {
            Some((host, "")) => (host, None),
            Some((host, tail)) => (host, Some(tail.strip_prefix(':').unwrap_or(tail))),
            None => ("", None),
        };
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    }
}

/// Everything needed to open the link. Build with [`LinkOptions::new`] and set what differs.
#[derive(Clone)]
pub struct LinkOptions {
    pub url: BrokerUrl,
    /// `None`: a fresh id per run (`ota-console-` + random hex) with a clean session, so two
    /// consoles never kick each other off the broker. `Some`: this id, with a persistent session
    /// unless [`LinkOptions::clean_session`] says otherwise (the engine gives each data directory
    /// and each saved window profile an id of its own).
    pub client_id: Option<String>,
    /// Ask for a clean session even with a client id of our own (a second console sharing a
    /// data directory's id must not take over the first one's session).
    pub clean_session: bool,
    pub username: Option<String>,
    /// Never printed: [`LinkOptions`]'s `Debug` shows only whether it is set.
    pub password: Option<String>,
    pub keep_alive_secs: u64,
    /// PEM file with the CA certificate(s) to trust for `mqtts://`; `None`: the system's roots.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate and key for mutual TLS (both or neither).
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// Topic filters subscribed (QoS 1) after every ConnAck.
    pub subscriptions: Vec<String>,
    /// Publishes that may wait in the queue (while disconnected or faster than the broker acks)
    /// before [`MqttLink::publish`] answers [`LinkError::QueueFull`].
    pub max_queued: usize,
    /// Published (QoS 1) by the broker when the link dies without saying goodbye (killed,
    /// starved past its keep-alive): the campaign lock's empty retained message that clears
    /// this console's claims.
    /// Boxed: rarely set, and `LinkOptions` travels inside larger enums.
    pub will: Option<Box<Will>>,
    /// Connections that carry the console's publishes: this link's own and `n - 1` more, at
    /// most [`MAX_PUBLISH_CONNECTIONS`]. Mosquitto reads one packet per connection per turn of
    /// its loop, so behind it one connection answering a fleet's burst of reports (each AWS Jobs
    /// update wants an answer) falls behind the thousands of device connections. The others
    /// connect as `{client id}-{k}` with clean sessions and no subscriptions; each topic always
    /// goes on the same connection (a device's messages on one topic stay in order), and
    /// retained publishes (the campaign lock's claims, cleared by this link's will) on this one.
    /// One refused for good hands what it holds to this one, which carries its share from then.
    pub publish_connections: u16,
}

/// The most connections a link publishes on (ids stay within MQTT 3.1's 23 characters).
pub const MAX_PUBLISH_CONNECTIONS: u16 = 9;

/// A Last Will: what the broker publishes for us when the connection ends without DISCONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will {
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
}

impl LinkOptions {
    pub fn new(url: BrokerUrl) -> LinkOptions {
        LinkOptions {
            url,
            client_id: None,
            clean_session: false,
            username: None,
            password: None,
            keep_alive_secs: DEFAULT_KEEP_ALIVE_SECS,
            ca_file: None,
            client_cert: None,
            client_key: None,
            subscriptions: Vec::new(),
            max_queued: DEFAULT_MAX_QUEUED,
            will: None,
            publish_connections: 1,
        }
    }
}

impl fmt::Debug for LinkOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LinkOptions")
            .field("url", &self.url)
            .field("client_id", &self.client_id)
            .field("clean_session", &self.clean_session)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("keep_alive_secs", &self.keep_alive_secs)
            .field("ca_file", &self.ca_file)
            .field("client_cert", &self.client_cert)
            .field("client_key", &self.client_key)
            .field("subscriptions", &self.subscriptions)
            .field("max_queued", &self.max_queued)
            .field("will", &self.will)
            .field("publish_connections", &self.publish_connections)
            .finish()
    }
}

/// Counters since the link started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Publishes received from the broker.
    pub received: u64,
    /// Publishes accepted by [`MqttLink::publish`].
    pub queued: u64,
    /// Publishes the broker acknowledged (PUBACK). After a reconnect a message may be sent and
    /// acknowledged twice (QoS 1 is at least once), so this can exceed `queued`.
    pub published: u64,
    /// Publishes refused by [`MqttLink::publish`] (queue full, too large, link stopped).
    pub dropped: u64,
    /// Successful connections after the first.
    pub reconnects: u64,
    /// Reconnects that found the session gone (see [`SessionNews::lost`]).
    pub sessions_lost: u64,
}

/// The half of a client's TLS login that was given alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ClientAuthPart {
    #[error("{}", tr!("error.link.part.certificate"))]
    Certificate,
    #[error("{}", tr!("error.link.part.key"))]
    Key,
}

/// Why the link could not start or a publish was refused.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("{}", tr!("error.link.no_runtime"))]
    NoRuntime,
    #[error("{}", tr!("error.link.keep_alive", secs = _0))]
    KeepAlive(u64),
    #[error("{}", tr!("error.link.zero_queue"))]
    ZeroQueue,
    #[error("{}", tr!("error.link.empty_client_id"))]
    EmptyClientId,
    #[error("{}", tr!("error.link.half_client_auth", given = _0))]
    HalfClientAuth(ClientAuthPart),
    #[error("{}", tr!("error.link.tls_file", what = what, path = format!("{path:?}"), why = reason))]
    TlsFile {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("{}", tr!("error.link.tls", why = _0))]
    Tls(String),
    #[error("{}", tr!("error.link.queue_full", count = _0))]
    QueueFull(usize),
    #[error("{}", tr!("error.link.too_large", topic = format!("{topic:?}"), size = size, max = MAX_OUTGOING_PACKET_BYTES))]
    TooLarge { topic: String, size: usize },
    #[error("{}", tr!("error.link.invalid_topic", topic = format!("{_0:?}")))]
    InvalidTopic(String),
    #[error("{}", tr!("error.link.stopped"))]
    Stopped,
}

/// Signals the actor to stop when the last handle goes away.
struct Inner {
    requests: mpsc::Sender<Publish>,
    counters: Arc<Counters>,
    state: watch::Receiver<LinkState>,
    session: watch::Receiver<SessionNews>,
    shutdown: watch::Sender<bool>,
    /// Becomes true when the actor has stopped (drained, disconnected).
    stopped: watch::Receiver<bool>,
    max_queued: usize,
    client_id: String,
    /// The other connections publishes are spread over ([`LinkOptions::publish_connections`]).
    publishers: Vec<MqttLink>,
    /// For a publishing connection: held while it hands its publishes back (`Handback::order`).
    handing_back: Option<Arc<std::sync::Mutex<()>>>,
}

/// Why a publish did not go into a connection's queue.
enum Unqueued {
    Refused(LinkError),
    /// The connection's actor closed its queue (it stopped, or was refused for good): the
    /// publish comes back, for another connection to carry.
    Closed(Publish),
}

impl Unqueued {
    fn into_error(self) -> LinkError {
        match self {
            Unqueued::Refused(error) => error,
            Unqueued::Closed(_) => LinkError::Stopped,
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

/// Cloneable handle to the link actor. The actor stops with [`MqttLink::shutdown`] or when the
/// last handle is dropped.
#[derive(Clone)]
pub struct MqttLink {
    inner: Arc<Inner>,
}

impl fmt::Debug for MqttLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MqttLink")
            .field("state", &*self.inner.state.borrow())
            .field("stats", &self.stats())
            .finish()
    }
}

impl MqttLink {
    /// Spawns the actor on the current tokio runtime. Incoming publishes go to the returned
    /// bounded receiver; when it is full the link stops reading from the broker (backpressure).
    pub fn start(opts: LinkOptions) -> Result<(MqttLink, mpsc::Receiver<Inbound>), LinkError> {
        MqttLink::start_with(opts, None)
    }

    /// [`MqttLink::start`]; a publishing connection of a pool gets the first connection's
    /// queue to hand back what it holds when it is refused for good.
    fn start_with(
        opts: LinkOptions,
        handback: Option<Handback>,
    ) -> Result<(MqttLink, mpsc::Receiver<Inbound>), LinkError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| LinkError::NoRuntime)?;
        let mqtt_options = mqtt_options(&opts)?;
        let persistent = !mqtt_options.clean_session();
        let client_id = mqtt_options.client_id();
        // rumqttc's own request channel is never used: the actor writes from `requests`.
        let eventloop = EventLoop::new(mqtt_options, 1);
        let (requests_tx, requests_rx) = mpsc::channel(opts.max_queued);
        let (inbound_tx, inbound_rx) = mpsc::channel(INBOUND_CAPACITY);
        let (state_tx, state_rx) = watch::channel(LinkState::Connecting);
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let (stopped_tx, stopped_rx) = watch::channel(false);
        let (session_tx, session_rx) = watch::channel(SessionNews {
            persistent,
            ..SessionNews::default()
        });
        let counters = Arc::new(Counters::default());
        let handing_back = handback.as_ref().map(|h| h.order.clone());
        let publishers = (1..opts.publish_connections.min(MAX_PUBLISH_CONNECTIONS))
            .map(|k| {
                let handback = Handback {
                    requests: requests_tx.downgrade(),
                    counters: counters.clone(),
                    order: Arc::default(),
                };
                MqttLink::start_publisher(&opts, &client_id, k, handback)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let actor = Actor {
            eventloop,
            requests: requests_rx,
            requests_open: true,
            keep_alive: Duration::from_secs(opts.keep_alive_secs),
            ping_at: None,
            subscriptions: opts.subscriptions.clone(),
            unsent: VecDeque::new(),
            in_flight_copy: Vec::new(),
            backoff: Backoff::default(),
            ever_connected: false,
            state: state_tx,
            session: session_tx,
            inbound: inbound_tx,
            counters: counters.clone(),
            shutdown: shutdown_rx,
            stopped: stopped_tx,
            broker: opts.url.to_string(),
            handback,
        };
        runtime.spawn(actor.run());
        let inner = Inner {
            requests: requests_tx,
            counters,
            state: state_rx,
            session: session_rx,
            shutdown: shutdown_tx,
            stopped: stopped_rx,
            max_queued: opts.max_queued,
            client_id,
            publishers,
            handing_back,
        };
        Ok((
            MqttLink {
                inner: Arc::new(inner),
            },
            inbound_rx,
        ))
    }

    /// One more connection that only publishes, as `{client_id}-{k}`.
    fn start_publisher(
        opts: &LinkOptions,
        client_id: &str,
        k: u16,
        handback: Handback,
    ) -> Result<MqttLink, LinkError> {
        let mut opts = opts.clone();
        opts.client_id = Some(format!("{client_id}-{k}"));
        opts.clean_session = true;
        opts.subscriptions.clear();
        opts.will = None;
        opts.publish_connections = 1;
        // Nothing is subscribed, so nothing arrives: the receiver is not needed.
        MqttLink::start_with(opts, Some(handback)).map(|(link, _nothing)| link)
    }

    /// The connection that carries publishes on `topic`: the same one every time, unless it
    /// was refused for good (a broker that admits one client id per login), then this one.
    fn publisher_for(&self, topic: &str, retain: bool) -> &MqttLink {
        let publishers = &self.inner.publishers;
        if retain || publishers.is_empty() {
            return self;
        }
        let mut hasher = std::hash::DefaultHasher::new();
        std::hash::Hash::hash(topic, &mut hasher);
        let slot = std::hash::Hasher::finish(&hasher) % (publishers.len() as u64 + 1);
        match usize::try_from(slot).ok().and_then(|s| s.checked_sub(1)) {
            Some(k) => publishers
                .get(k)
                .filter(|p| !matches!(*p.inner.state.borrow(), LinkState::Failed { .. }))
                .unwrap_or(self),
            None => self,
        }
    }

    /// Queues `msg` for the broker with QoS 1. Never waits: while disconnected the message waits
    /// in the bounded queue and is sent after the next ConnAck.
    pub fn publish(&self, msg: Outbound) -> Result<(), LinkError> {
        self.publish_with(msg, false)
    }

    /// Like [`MqttLink::publish`], but the broker keeps the message for later subscribers (an
    /// empty one clears what it kept): the campaign lock's claims.
    pub fn publish_retained(&self, msg: Outbound) -> Result<(), LinkError> {
        self.publish_with(msg, true)
    }

    fn publish_with(&self, msg: Outbound, retain: bool) -> Result<(), LinkError> {
        let mut link = self.publisher_for(&msg.topic, retain);
        let result = match link.try_queue(msg, retain) {
            // A publishing connection closes its queue as it is refused for good, a moment
            // before it says so: the first connection carries its publishes from then on, after
            // those it handed back (their hand-back holds the lock).
            Err(Unqueued::Closed(publish)) if !std::ptr::eq(link, self) => {
                let order = link.inner.handing_back.clone();
                let _after = order
                    .as_ref()
                    .map(|o| o.lock().unwrap_or_else(PoisonError::into_inner));
                link = self;
                link.send(publish)
            }
            other => other,
        }
        .map_err(Unqueued::into_error);
        let counter = match result {
            Ok(()) => &link.inner.counters.queued,
            Err(_) => &link.inner.counters.dropped,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        result
    }

    fn try_queue(&self, msg: Outbound, retain: bool) -> Result<(), Unqueued> {
        if self.inner.counters.stopped.load(Ordering::Relaxed) {
            return Err(Unqueued::Refused(LinkError::Stopped));
        }
        // Fixed header (5) + topic length (2) + packet id (2) + topic + payload.
        let size = 9 + msg.topic.len() + msg.payload.len();
        if size > MAX_OUTGOING_PACKET_BYTES {
            return Err(Unqueued::Refused(LinkError::TooLarge {
                topic: msg.topic,
                size,
            }));
        }
        if msg.topic.is_empty() || msg.topic.contains(['+', '#', '\0']) {
            return Err(Unqueued::Refused(LinkError::InvalidTopic(msg.topic)));
        }
        let mut publish = Publish::new(msg.topic, QoS::AtLeastOnce, msg.payload);
        publish.retain = retain;
        self.send(publish)
    }

    /// Puts a checked publish in this connection's queue.
    fn send(&self, publish: Publish) -> Result<(), Unqueued> {
        // The channel holds `max_queued`; publishes the actor carries count against the same
        // limit so the total stays bounded (< 2 × max_queued + inflight).
        let carried = self.inner.counters.carried.load(Ordering::Relaxed);
        if carried >= self.inner.max_queued as u64 {
            return Err(Unqueued::Refused(LinkError::QueueFull(
                self.inner.max_queued,
            )));
        }
        self.inner.requests.try_send(publish).map_err(|e| match e {
            TrySendError::Full(_) => Unqueued::Refused(LinkError::QueueFull(self.inner.max_queued)),
            TrySendError::Closed(publish) => Unqueued::Closed(publish),
        })
    }

    /// Follows the connection state.
    pub fn state(&self) -> watch::Receiver<LinkState> {
        self.inner.state.clone()
    }

    /// Follows what the broker says about the session at each ConnAck.
    pub fn session(&self) -> watch::Receiver<SessionNews> {
        self.inner.session.clone()
    }

    /// The MQTT client id the link connects with.
    pub fn client_id(&self) -> &str {
        &self.inner.client_id
    }

    /// The counters of every connection of the link, added up.
    pub fn stats(&self) -> LinkStats {
        let c = &self.inner.counters;
        let own = LinkStats {
            received: c.received.load(Ordering::Relaxed),
            queued: c.queued.load(Ordering::Relaxed),
            published: c.published.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            reconnects: c.reconnects.load(Ordering::Relaxed),
            sessions_lost: c.sessions_lost.load(Ordering::Relaxed),
        };
        self.inner.publishers.iter().fold(own, |sum, p| {
            let s = p.stats();
            LinkStats {
                received: sum.received + s.received,
                queued: sum.queued + s.queued,
                published: sum.published + s.published,
                dropped: sum.dropped + s.dropped,
                reconnects: sum.reconnects + s.reconnects,
                sessions_lost: sum.sessions_lost + s.sessions_lost,
            }
        })
    }

    /// Disconnects from the broker and stops the actor (and those of the other publishing
    /// connections).
    pub fn shutdown(&self) {
        self.inner.counters.stopped.store(true, Ordering::Relaxed);
        let _ = self.inner.shutdown.send(true);
        for publisher in &self.inner.publishers {
            publisher.shutdown();
        }
    }

    /// Waits until the actors have stopped: what was queued before [`MqttLink::shutdown`] went
    /// to the broker (or the drain grace (2 s) passed) and the connections are closed.
    pub async fn stopped(&self) {
        let mut stopped = self.inner.stopped.clone();
        // An error means the actor is gone, which is stopped too.
        let _ = stopped.wait_for(|s| *s).await;
        for publisher in &self.inner.publishers {
            Box::pin(publisher.stopped()).await;
        }
    }
}

/// Translates [`LinkOptions`] into rumqttc's options, loading TLS material now so that a wrong
/// path is reported at start instead of as an endless series of reconnect failures.
fn mqtt_options(opts: &LinkOptions) -> Result<MqttOptions, LinkError> {
    if opts.keep_alive_secs != 0 && !(5..=u64::from(u16::MAX)).contains(&opts.keep_alive_secs) {
        return Err(LinkError::KeepAlive(opts.keep_alive_secs));
    }
    if opts.max_queued == 0 {
        return Err(LinkError::ZeroQueue);
    }
    if opts.client_id.as_deref().is_some_and(str::is_empty) {
        return Err(LinkError::EmptyClientId);
    }
    // A random id can never resume its session: ask for a clean one.
    let (client_id, clean_session) = match &opts.client_id {
        Some(id) => (id.clone(), opts.clean_session),
        None => (generate_client_id(), true),
    };
    let mut o = MqttOptions::new(client_id, opts.url.host.clone(), opts.url.port);
    o.set_keep_alive(Duration::from_secs(opts.keep_alive_secs));
    o.set_clean_session(clean_session);
    o.set_max_packet_size(MAX_INCOMING_PACKET_BYTES, MAX_OUTGOING_PACKET_BYTES);
    o.set_inflight(MAX_INFLIGHT);
    if let Some(will) = &opts.will {
        o.set_last_will(rumqttc::LastWill::new(
            will.topic.clone(),
            will.payload.clone(),
            QoS::AtLeastOnce,
            will.retain,
        ));
    }
    if let Some(user) = &opts.username {
        o.set_credentials(user.clone(), opts.password.clone().unwrap_or_default());
    }
    if opts.url.tls {
        let config = tls_config(opts)?;
        o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            Arc::new(config),
        )));
    }
    Ok(o)
}

/// A new random client id: `ota-console-` and 8 hex digits.
pub fn generate_client_id() -> String {
    // Short enough for MQTT 3.1 brokers' 23-character limit.
    format!("ota-console-{:08x}", rand::random::<u32>())
}

fn tls_config(opts: &LinkOptions) -> Result<rustls::ClientConfig, LinkError> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

    match (&opts.client_cert, &opts.client_key) {
        (Some(_), None) => return Err(LinkError::HalfClientAuth(ClientAuthPart::Certificate)),
        (None, Some(_)) => return Err(LinkError::HalfClientAuth(ClientAuthPart::Key)),
        _ => {}
    }
    let roots = match &opts.ca_file {
        Some(path) => {
            let pem = read_tls_file("CA file", path)?;
            let certs = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| tls_file_error("CA file", path, e.to_string()))?;
            root_store(certs, Some(path))?
        }
        None => root_store(rustls_native_certs::load_native_certs().certs, None)?,
    };
    // An explicit provider: rustls panics at run time if two providers are compiled in and no
    // process default is installed.
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| LinkError::Tls(e.to_string()))?
        .with_root_certificates(roots);
    match (&opts.client_cert, &opts.client_key) {
        (Some(cert_path), Some(key_path)) => {
            let cert_pem = read_tls_file("client certificate", cert_path)?;
            let chain = CertificateDer::pem_slice_iter(&cert_pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| tls_file_error("client certificate", cert_path, e.to_string()))?;
            if chain.is_empty() {
                return Err(tls_file_error(
                    "client certificate",
                    cert_path,
                    "no PEM certificate in it".to_owned(),
                ));
            }
            let key_pem = read_tls_file("client key", key_path)?;
            let key = PrivateKeyDer::from_pem_slice(&key_pem)
                .map_err(|e| tls_file_error("client key", key_path, e.to_string()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| LinkError::Tls(format!("client certificate and key: {e}")))
        }
        _ => Ok(builder.with_no_client_auth()),
    }
}

fn root_store(
    certs: Vec<rustls::pki_types::CertificateDer<'static>>,
    ca_file: Option<&Path>,
) -> Result<rustls::RootCertStore, LinkError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(certs);
    if !roots.is_empty() {
        return Ok(roots);
    }
    Err(match ca_file {
        Some(path) => tls_file_error(
            "CA file",
            path,
            "no usable PEM certificate in it".to_owned(),
        ),
        None => LinkError::Tls(
            "this system has no trusted root certificates; pass a CA file for mqtts://".to_owned(),
        ),
    })
}

/// TLS files are small; anything bigger is not a certificate.
const MAX_TLS_FILE_BYTES: u64 = 1024 * 1024;

fn read_tls_file(what: &'static str, path: &Path) -> Result<Vec<u8>, LinkError> {
    let len = std::fs::metadata(path)
        .map_err(|e| tls_file_error(what, path, e.to_string()))?
        .len();
    if len > MAX_TLS_FILE_BYTES {
        return Err(tls_file_error(
            what,
            path,
            format!("{len} bytes is too large for a PEM file"),
        ));
    }
    std::fs::read(path).map_err(|e| tls_file_error(what, path, e.to_string()))
}

fn tls_file_error(what: &'static str, path: &Path, reason: String) -> LinkError {
    LinkError::TlsFile {
        what,
        path: path.to_owned(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On the test's one thread the actors run only once it waits: every publish below is
    /// queued before any connection is tried, a third of them on the connection that is then
    /// refused for good.
    #[tokio::test]
    async fn a_publishing_connection_refused_for_good_hands_its_publishes_to_the_first() {
        use rumqttc::ConnectReturnCode;
        const TOPICS: usize = 30;
        const PER_TOPIC: usize = 10;
        let broker = scripted_broker::ScriptedBroker::start(|id| {
            if id == "pool-1" {
                ConnectReturnCode::NotAuthorized
            } else {
                ConnectReturnCode::Success
            }
        })
        .await
        .unwrap();
        let mut opts = LinkOptions::new(BrokerUrl::plain("127.0.0.1", broker.addr.port()));
        opts.client_id = Some("pool".to_owned());
        opts.publish_connections = 3;
        opts.max_queued = 1000;
        let (link, _nothing) = MqttLink::start(opts).unwrap();
        let refused = link.inner.publishers.first().unwrap().clone();
        let on_refused = (0..TOPICS)
            .filter(|t| {
                let carrier = link.publisher_for(&format!("pool/{t}"), false);
                Arc::ptr_eq(&carrier.inner, &refused.inner)
            })
            .count();
        assert!(on_refused > 0, "no topic goes to the refused connection");
        for n in 0..PER_TOPIC {
            for t in 0..TOPICS {
                let msg = Outbound {
                    topic: format!("pool/{t}"),
                    payload: n.to_string().into_bytes(),
                };
                link.publish(msg).unwrap();
            }
        }
        let mut state = refused.state();
        tokio::time::timeout(
            Duration::from_secs(10),
            state.wait_for(|s| matches!(s, LinkState::Failed { .. })),
        )
        .await
        .expect("the refusal arrives")
        .unwrap();
        tokio::time::timeout(Duration::from_secs(10), async {
            while link.stats().published < (TOPICS * PER_TOPIC) as u64 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("every publish is acknowledged");

        let received = broker.received();
        assert_eq!(received.len(), TOPICS * PER_TOPIC);
        assert!(received.iter().all(|(id, ..)| id != "pool-1"));
        for t in 0..TOPICS {
            let topic = format!("pool/{t}");
            let order: Vec<Vec<u8>> = received
                .iter()
                .filter(|(_, tp, _)| *tp == topic)
                .map(|(.., p)| p.clone())
                .collect();
            let want: Vec<Vec<u8>> = (0..PER_TOPIC).map(|n| n.to_string().into_bytes()).collect();
            assert_eq!(order, want, "{topic}");
        }
        assert!(broker.connects().iter().any(|id| id == "pool-1"));
        let stats = link.stats();
        assert_eq!(
            (stats.queued, stats.dropped),
            ((TOPICS * PER_TOPIC) as u64, 0)
        );
        // Later publishes on those topics go to the first connection straight away.
        link.publish(Outbound {
            topic: "pool/0".to_owned(),
            payload: b"late".to_vec(),
        })
        .unwrap();
    }

    #[test]
    fn urls_parse_with_default_ports() {
        let u: BrokerUrl = "mqtt://broker.local".parse().unwrap();
        assert_eq!((u.tls(), u.host(), u.port()), (false, "broker.local", 1883));
        let u: BrokerUrl = "mqtts://broker.local".parse().unwrap();
        assert_eq!((u.tls(), u.port()), (true, 8883));
        let u: BrokerUrl = "mqtt://127.0.0.1:1884/".parse().unwrap();
        assert_eq!((u.host(), u.port()), ("127.0.0.1", 1884));
        let u: BrokerUrl = "mqtts://[::1]:9000".parse().unwrap();
        assert_eq!((u.host(), u.port()), ("::1", 9000));
        assert_eq!(u.to_string(), "mqtts://[::1]:9000");
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        let cases = [
            ("127.0.0.1:1883", "no scheme"),
            ("http://x:1", "not supported"),
            ("mqtt://:1883", "no host"),
            ("mqtt://x:0", "invalid port"),
            ("mqtt://x:99999", "invalid port"),
            ("mqtt://x:abc", "invalid port"),
            ("mqtt://user:pw@x:1", "must not have"),
            ("mqtt://x:1/topic", "must not have"),
        ];
        for (url, expected) in cases {
            let err = url.parse::<BrokerUrl>().unwrap_err().to_string();
            assert!(err.contains(expected), "{url}: {err}");
        }
    }

    #[test]
    fn debug_never_shows_the_password() {
        let mut o = LinkOptions::new(BrokerUrl::plain("h", 1));
        o.username = Some("alice".into());
        o.password = Some("hunter2-secret".into());
        let text = format!("{o:?}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(
            text.contains("redacted") && text.contains("alice"),
            "{text}"
        );
    }

    #[test]
    fn options_are_validated() {
        let mut o = LinkOptions::new(BrokerUrl::plain("h", 1));
        o.keep_alive_secs = 2;
        assert!(matches!(mqtt_options(&o), Err(LinkError::KeepAlive(2))));
        o.keep_alive_secs = 30;
        o.max_queued = 0;
        assert!(matches!(mqtt_options(&o), Err(LinkError::ZeroQueue)));
        let mut o = LinkOptions::new("mqtts://h:1".parse().unwrap());
        o.ca_file = Some("/nonexistent/ca.pem".into());
        let err = mqtt_options(&o).unwrap_err().to_string();
        assert!(
            err.contains("CA file") && err.contains("/nonexistent/ca.pem"),
            "{err}"
        );
        o.ca_file = None;
        o.client_cert = Some("/x".into());
        assert!(matches!(
            mqtt_options(&o),
            Err(LinkError::HalfClientAuth(ClientAuthPart::Certificate))
        ));
    }

    /// The console's own `mqtts://` link provisioned from the site CA: `ca_file` is the CA's
    /// `ca.pem`, the client certificate one it issued; a real handshake against a server
    /// configuration that requires client certificates of that CA names the console.
    #[tokio::test]
    async fn the_link_trusts_the_site_ca_and_presents_its_client_certificate() {
        use crate::access::site_ca::SiteCa;
        use crate::access::tls::{ClientCerts, identity_of_cert, server_config};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let data = tempfile::tempdir().unwrap();
        let ca = SiteCa::load_or_create(data.path()).unwrap();
        let (cert_pem, key_pem) = ca.issue_client("ota-console-1a2b3c4d").unwrap();
        let cert_path = data.path().join("console.pem");
        let key_path = data.path().join("console.key");
        std::fs::write(&cert_path, cert_pem).unwrap();
        std::fs::write(&key_path, key_pem).unwrap();
        let mut o = LinkOptions::new("mqtts://127.0.0.1:8883".parse().unwrap());
        o.ca_file = Some(ca.cert_path());
        o.client_cert = Some(cert_path);
        o.client_key = Some(key_path);
        let client = tls_config(&o).unwrap();

        let identity = ca.issue_server(&["127.0.0.1".to_owned()]).unwrap();
        let server =
            server_config(&identity, ClientCerts::Required(vec![ca.certificate()])).unwrap();
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let serve = async move {
            let mut tls = tokio_rustls::TlsAcceptor::from(server)
                .accept(server_io)
                .await
                .unwrap();
            let mut byte = [0u8; 1];
            tls.read_exact(&mut byte).await.unwrap();
            tls.get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(identity_of_cert)
        };
        let connect = async move {
            let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
            let mut tls = tokio_rustls::TlsConnector::from(Arc::new(client))
                .connect(name, client_io)
                .await
                .unwrap();
            tls.write_all(&[0x10]).await.unwrap();
            tls.flush().await.unwrap();
            tls
        };
        let (seen, _client) = tokio::time::timeout(Duration::from_secs(20), async {
            tokio::join!(serve, connect)
        })
        .await
        .expect("handshake finishes");
        assert_eq!(seen.as_deref(), Some("ota-console-1a2b3c4d"));
    }

    #[test]
    fn default_client_ids_differ_and_fit_mqtt_3_1() {
        let a = generate_client_id();
        let b = generate_client_id();
        assert_ne!(a, b);
        assert!(a.len() <= 23, "{a}");
    }
}
