//! One MQTT connection shared by several simulated units (devices, gateways, docks), as a site
//! proxy or an edge box holds it for the devices behind it (`SimConfig::per_connection`): each
//! unit still subscribes its own topics and publishes its own messages, on the wire exactly as
//! with a connection of its own; only the CONNECT (one client id, a site user's login) and the
//! TCP connection are shared, which is what lets one machine simulate 100,000 devices.
//!
//! Owns: the rumqttc client of the shared connection and the one task that both feeds it and
//! polls it; routing what arrives to the unit that subscribed the topic; telling each unit when
//! the connection is (re)established; crediting each PUBACK to the unit whose publish it
//! acknowledges. A unit "dropping off the network" leaves the connection (its topics are
//! unsubscribed, nothing more reaches it or goes out for it) and "reconnecting" joins again:
//! the broker sees the same UNSUBSCRIBE / SUBSCRIBE and announcements a site proxy would send.
//!
//! Must never: await anything but the event loop and the request queue in the polling task
//! (rumqttc deadlocks when its request queue is full and nobody polls), or look into payloads.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use rumqttc::{AsyncClient, Event, Outgoing, Packet, QoS};
use tokio::sync::{Semaphore, mpsc, watch};

use super::config::BrokerAddr;
use super::credentials::Login;
use super::link::{self, Inbound, Link, Port, Request};
use super::stats::StatsCell;

/// Requests queued in the shared client per unit on it (the same room a unit's own connection
/// has), bounded so a connection with thousands of units does not reserve room for millions.
const MAX_REQUEST_QUEUE: usize = 65_536;

/// What a unit runs with when it shares a connection: the same three things
/// [`Link::new`] gives a unit with a connection of its own.
pub(crate) struct Shared {
    pub link: Link,
    pub inbox: mpsc::Receiver<Box<Inbound>>,
    pub connected: watch::Receiver<u64>,
}

/// The hub's record of one unit.
struct Member {
    inbox: mpsc::Sender<Box<Inbound>>,
    connected: watch::Sender<u64>,
    /// Counts this unit's publishes, drops and PUBACKs (the unit's own, or its gateway's, cell).
    stats: StatsCell,
    online: bool,
    topics: Vec<String>,
}

/// Collects the units of one shared connection before it starts.
pub(crate) struct Hub {
    members: Vec<Member>,
    tx: mpsc::UnboundedSender<Request>,
    rx: mpsc::UnboundedReceiver<Request>,
}

impl Hub {
    pub(crate) fn new() -> Hub {
        let (tx, rx) = mpsc::unbounded_channel();
        Hub {
            members: Vec::new(),
            tx,
            rx,
        }
    }

    /// Adds a unit whose link counters go to `stats`.
    pub(crate) fn add(&mut self, stats: StatsCell) -> Shared {
        let (inbox, inbox_rx) = mpsc::channel(link::INBOX);
        let (connected, connected_rx) = watch::channel(0);
        let id = u32::try_from(self.members.len()).unwrap_or(u32::MAX);
        self.members.push(Member {
            inbox,
            connected,
            stats,
            online: false,
            topics: Vec::new(),
        });
        Shared {
            link: Link::shared(Port::new(id, self.tx.clone())),
            inbox: inbox_rx,
            connected: connected_rx,
        }
    }

    /// Runs the connection until every unit's link is gone. The hub keeps no sender of its
    /// own, so the queue closes when the last unit drops its link.
    pub(crate) async fn run(self, addr: BrokerAddr, login: Login, gate: Arc<Semaphore>) {
        let Hub {
            members,
            tx,
            mut rx,
        } = self;
        drop(tx);
        let cap =
            (link::REQUEST_QUEUE * members.len()).clamp(link::REQUEST_QUEUE, MAX_REQUEST_QUEUE);
        let (client, mut event_loop) = AsyncClient::new(link::mqtt_options(&addr, &login), cap);
        link::lengthen_connect_timeout(&mut event_loop);
        let mut state = State {
            client,
            members,
            routes: HashMap::new(),
            unsent: VecDeque::new(),
            inflight: HashMap::new(),
            up: false,
        };
        let mut backoff = link::BACKOFF_MIN;
        let mut permit = None;
        loop {
            if !state.up && permit.is_none() {
                permit = gate.clone().acquire_owned().await.ok();
            }
            // The poll future lives across requests: dropping it mid-connect would restart the
            // connection, and requests only go into the client between its polls, which keeps
            // `unsent` in the client's order (see `State::unsent`).
            let polled = {
                let poll = event_loop.poll();
                tokio::pin!(poll);
                loop {
                    // Unbiased: a stream of incoming packets does not starve the units' requests.
                    tokio::select! {
                        r = &mut poll => break Some(r),
                        req = rx.recv() => match req {
                            Some(req) => state.handle(req),
                            None => break None,
                        },
                    }
                }
            };
            let Some(polled) = polled else { return };
            match polled {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    state.up = true;
                    permit = None;
                    backoff = link::BACKOFF_MIN;
                    state.inflight.clear();
                    for m in state.members.iter().filter(|m| m.online) {
                        m.connected.send_modify(|n| *n += 1);
                    }
                }
                Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                    if let Some(port) = state.unsent.pop_front() {
                        state.inflight.insert(pkid, port);
                    }
                }
                Ok(Event::Incoming(Packet::PubAck(ack))) => {
                    if let Some(m) = state
                        .inflight
                        .remove(&ack.pkid)
                        .and_then(|port| state.member(port))
                    {
                        m.stats.update(|s| s.messages_acked += 1);
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    state.deliver(p.topic, p.payload.to_vec())
                }
                Ok(_) => {}
                Err(e) => {
                    if state.up {
                        // The client moved everything queued into its pending list, which the
                        // next clean session discards: none of it will be sent or acknowledged.
                        state.unsent.clear();
                        state.inflight.clear();
                    }
                    state.up = false;
                    permit = None;
                    tracing::debug!(error = %e, ?backoff, "shared simulator connection error");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(link::BACKOFF_MAX);
                }
            }
        }
    }
}

struct State {
    client: AsyncClient,
    members: Vec<Member>,
    /// Exact topic → the unit that subscribed it (devices subscribe their own topics, no
    /// wildcards).
    routes: HashMap<String, u32>,
    /// The unit of every publish handed to the client and not yet written, in the client's
    /// order: rumqttc reports each written publish's packet id in that same order
    /// (`Outgoing::Publish`), which is how a PUBACK finds its unit.
    unsent: VecDeque<u32>,
    /// Packet id → unit, for publishes written and not yet acknowledged.
    inflight: HashMap<u16, u32>,
    /// A CONNACK arrived and no error since.
    up: bool,
}

impl State {
    fn member(&self, port: u32) -> Option<&Member> {
        self.members.get(usize::try_from(port).ok()?)
    }

    fn member_mut(&mut self, port: u32) -> Option<&mut Member> {
        self.members.get_mut(usize::try_from(port).ok()?)
    }

    fn handle(&mut self, req: Request) {
        match req {
            Request::Publish {
                port,
                topic,
                payload,
            } => {
                let Some(m) = self.member(port) else { return };
                let sent = m.online
                    && self
                        .client
                        .try_publish(topic.as_str(), QoS::AtLeastOnce, false, payload)
                        .is_ok();
                if sent {
                    m.stats.update(|s| s.messages_published += 1);
                    self.unsent.push_back(port);
                } else {
                    m.stats.update(|s| s.messages_dropped += 1);
                    tracing::debug!(
                        topic,
                        "simulated device on a shared connection dropped a publish"
                    );
                }
            }
            Request::Subscribe { port, topics } => {
                let online = self.member(port).is_some_and(|m| m.online);
                if !online {
                    return;
                }
                for t in &topics {
                    self.routes.insert(t.clone(), port);
                }
                let filters = topics
                    .iter()
                    .map(|t| rumqttc::SubscribeFilter::new(t.clone(), QoS::AtLeastOnce))
                    .collect::<Vec<_>>();
                if self.client.try_subscribe_many(filters).is_err() {
                    tracing::warn!("{}", crate::i18n::tr!("sim.log.shared_subscribe"));
                }
                if let Some(m) = self.member_mut(port) {
                    for t in topics {
                        if !m.topics.contains(&t) {
                            m.topics.push(t);
                        }
                    }
                }
            }
            Request::Join { port } => {
                let up = self.up;
                if let Some(m) = self.member_mut(port)
                    && !m.online
                {
                    m.online = true;
                    if up {
                        m.connected.send_modify(|n| *n += 1);
                    }
                }
            }
            Request::Leave { port } => {
                let topics = match self.member_mut(port) {
                    Some(m) if m.online => {
                        m.online = false;
                        std::mem::take(&mut m.topics)
                    }
                    _ => return,
                };
                for t in topics {
                    self.routes.remove(&t);
                    if self.client.try_unsubscribe(t).is_err() {
                        tracing::warn!("{}", crate::i18n::tr!("sim.log.shared_unsubscribe"));
                    }
                }
            }
        }
    }

    fn deliver(&self, topic: String, payload: Vec<u8>) {
        let Some(m) = self.routes.get(&topic).and_then(|p| self.member(*p)) else {
            return;
        };
        if !m.online
            || m.inbox
                .try_send(Box::new(Inbound { topic, payload }))
                .is_err()
        {
            m.stats.update(|s| s.messages_dropped += 1);
        }
    }
}
