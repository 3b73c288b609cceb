//! The link's actor: the one task that owns the rumqttc `EventLoop` and the connection.
//!
//! Owns: connecting (through `EventLoop::poll`), the connected turns (hand out what was read,
//! write what the inflight window allows, wait for the broker, a publish or the keep-alive),
//! the keep-alive ping, what is carried over a failed connection, the drain and the DISCONNECT
//! at shutdown. The module doc of `transport::mqtt` says why the turns are ours and what
//! happens to publishes across a reconnect.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use rumqttc::{
    ConnectionError, Disconnect, Event, EventLoop, Incoming, PingReq, Publish, QoS, Request,
    StateError, Subscribe, SubscribeFilter,
};
use tokio::sync::{mpsc, watch};
use tokio::time::Sleep;

use super::backoff::Backoff;
use super::failure::{describe, is_permanent};
use super::handback::Handback;
use super::status::{Counters, Inbound, LinkState, SessionNews};
use crate::i18n::tr;

/// Unacknowledged QoS 1 publishes on the wire at once.
pub(super) const MAX_INFLIGHT: u16 = 100;
/// How long a graceful shutdown may take to send DISCONNECT before the socket is just dropped.
const DISCONNECT_GRACE: Duration = Duration::from_millis(500);
/// How long a shutdown waits for the broker to acknowledge what was queued before it: the last
/// answers of a run (a reply to a device's final report) must not die with the process.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// What the actor does after an event.
pub(super) enum Next {
    Continue,
    Stop,
}

/// What happens to a device's message when the engine's channel is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Inflow {
    /// Wait for room (the backpressure: the broker holds further messages), or for shutdown.
    Wait,
    /// Shutting down: the engine reads no more; keep what fits, drop the rest.
    Drop,
}

/// What ended the wait of a connected turn.
enum Woke {
    Shutdown,
    /// Packets were read (their events are queued in rumqttc's state) or a ping was written.
    Network,
    Publish(Option<Publish>),
}

pub(super) struct Actor {
    pub(super) eventloop: EventLoop,
    /// What the handles queued (`MqttLink::publish`), bounded by `max_queued`.
    pub(super) requests: mpsc::Receiver<Publish>,
    /// False once every handle is gone (the channel is closed and empty).
    pub(super) requests_open: bool,
    pub(super) keep_alive: Duration,
    /// When the next PINGREQ is due; `None` while disconnected or with keep-alive 0.
    pub(super) ping_at: Option<Pin<Box<Sleep>>>,
    pub(super) subscriptions: Vec<String>,
    /// Fresh publishes (packet id 0) the actor holds: carried over a failed connection, put back
    /// from `in_flight_copy` when the session was lost, or taken from the channel while the
    /// window was full. Written before anything newer from the channel.
    pub(super) unsent: VecDeque<Publish>,
    /// Copies of the publishes in flight when the connection failed, which rumqttc keeps in
    /// `pending` to retransmit if the broker kept the session, and drops if it did not.
    pub(super) in_flight_copy: Vec<Publish>,
    pub(super) backoff: Backoff,
    pub(super) ever_connected: bool,
    pub(super) state: watch::Sender<LinkState>,
    pub(super) session: watch::Sender<SessionNews>,
    pub(super) inbound: mpsc::Sender<Inbound>,
    pub(super) counters: Arc<Counters>,
    pub(super) shutdown: watch::Receiver<bool>,
    pub(super) stopped: watch::Sender<bool>,
    pub(super) broker: String,
    /// For a publishing connection of a pool: where what it holds goes when it is refused for
    /// good.
    pub(super) handback: Option<Handback>,
}

impl Actor {
    pub(super) async fn run(mut self) {
        tracing::info!(broker = %self.broker, "MQTT link starting");
        loop {
            if *self.shutdown.borrow() {
                break;
            }
            let next = if self.eventloop.network.is_none() {
                self.connect().await
            } else {
                match self.turn(Inflow::Wait).await {
                    Ok(next) => next,
                    Err(error) => {
                        // What rumqttc's own `poll` does on a failed turn: the publishes in
                        // flight go to `pending`, the socket is dropped.
                        self.eventloop.clean();
                        self.on_error(error).await
                    }
                }
            };
            if let Next::Stop = next {
                break;
            }
        }
        self.stop().await;
    }

    /// One connection attempt; `poll` answers it with the ConnAck or the failure.
    async fn connect(&mut self) -> Next {
        let polled = tokio::select! {
            _ = self.shutdown.changed() => return Next::Stop,
            polled = self.eventloop.poll() => polled,
        };
        match polled {
            Ok(event) => self.on_event(event, Inflow::Wait).await,
            Err(error) => self.on_error(error).await,
        }
    }

    fn network_timeout(&self) -> Duration {
        Duration::from_secs(self.eventloop.network_options.connection_timeout())
    }

    /// Whether a fresh publish may be written now: what rumqttc asks before it reads its own
    /// channel. A second packet id collision would overwrite the first one set aside.
    fn window_open(&self) -> bool {
        self.eventloop.state.inflight() < MAX_INFLIGHT && self.eventloop.state.collision.is_none()
    }

    /// The next request to write: retransmissions and the subscription first (regardless of the
    /// window, as rumqttc does), then fresh publishes while the window has room.
    fn next_request(&mut self) -> Option<Request> {
        if let Some(request) = self.eventloop.pending.pop_front() {
            return Some(request);
        }
        if !self.window_open() {
            return None;
        }
        let publish = match self.unsent.pop_front() {
            Some(publish) => publish,
            None => self.requests.try_recv().ok()?,
        };
        Some(Request::Publish(publish))
    }

    fn count_carried(&self) {
        self.counters
            .carried
            .store(self.unsent.len() as u64, Ordering::Relaxed);
    }

    /// One connected turn: write what may be written (one flush for all of it), wait for the
    /// first of shutdown, the keep-alive, a new publish or the broker, then hand out what was
    /// read. Handing out last lets a drain see the final PUBACK as soon as it is read.
    async fn turn(&mut self, inflow: Inflow) -> Result<Next, ConnectionError> {
        self.write_outgoing().await?;
        let woke = self.wait(inflow).await?;
        match woke {
            Woke::Shutdown => return Ok(Next::Stop),
            Woke::Network => {}
            Woke::Publish(Some(publish)) => {
                self.unsent.push_back(publish);
                self.count_carried();
            }
            Woke::Publish(None) => self.requests_open = false,
        }
        while let Some(event) = self.eventloop.state.events.pop_front() {
            if let Next::Stop = self.on_event(event, inflow).await {
                return Ok(Next::Stop);
            }
        }
        Ok(Next::Continue)
    }

    async fn write_outgoing(&mut self) -> Result<(), ConnectionError> {
        let timeout = self.network_timeout();
        let mut wrote = false;
        while let Some(request) = self.next_request() {
            let EventLoop {
                network: Some(network),
                state,
                ..
            } = &mut self.eventloop
            else {
                self.eventloop.pending.push_front(request);
                break;
            };
            // The state keeps each publish until its PUBACK, so a failed write loses none.
            if let Some(packet) = state.handle_outgoing_packet(request)? {
                bounded(timeout, network.write(packet)).await?;
                wrote = true;
            }
        }
        self.count_carried();
        if wrote && let Some(network) = self.eventloop.network.as_mut() {
            bounded(timeout, network.flush()).await?;
        }
        Ok(())
    }

    /// Waits for something to do. Every branch is cancel-safe where another can win: `readb`
    /// only waits in its first read (its acks go into a write buffer that every turn leaves
    /// flushed, far below the size at which a write would wait), `recv` and the sleep are
    /// cancel-safe, and the work after a wake runs in the branch's body, which is never
    /// cancelled.
    async fn wait(&mut self, inflow: Inflow) -> Result<Woke, ConnectionError> {
        let timeout = self.network_timeout();
        let take_publish = self.requests_open && self.window_open();
        let keep_alive = self.keep_alive;
        let Actor {
            eventloop,
            requests,
            ping_at,
            shutdown,
            ..
        } = self;
        let EventLoop {
            network: Some(network),
            state,
            ..
        } = eventloop
        else {
            return Ok(Woke::Network);
        };
        let woke = tokio::select! {
            biased;
            _ = shutdown.changed(), if inflow == Inflow::Wait => Woke::Shutdown,
            () = elapsed(ping_at) => {
                if let Some(sleep) = ping_at.as_mut() {
                    sleep.as_mut().reset(tokio::time::Instant::now() + keep_alive);
                }
                if let Some(packet) = state.handle_outgoing_packet(Request::PingReq(PingReq))? {
                    bounded(timeout, network.write(packet)).await?;
                    bounded(timeout, network.flush()).await?;
                }
                Woke::Network
            }
            publish = requests.recv(), if take_publish => Woke::Publish(publish),
            read = network.readb(state) => {
                read?;
                // The acks of what was read.
                bounded(timeout, network.flush()).await?;
                Woke::Network
            }
        };
        Ok(woke)
    }

    async fn on_event(&mut self, event: Event, inflow: Inflow) -> Next {
        match event {
            Event::Incoming(Incoming::ConnAck(ack)) => self.on_connack(ack.session_present),
            Event::Incoming(Incoming::Publish(publish)) => {
                self.counters.received.fetch_add(1, Ordering::Relaxed);
                let inbound = Inbound {
                    topic: publish.topic,
                    payload: publish.payload,
                };
                if inflow == Inflow::Drop {
                    let _ = self.inbound.try_send(inbound);
                    return Next::Continue;
                }
                // Awaiting here is the backpressure: the broker holds further messages.
                tokio::select! {
                    _ = self.shutdown.changed() => return Next::Stop,
                    sent = self.inbound.send(inbound) => {
                        if sent.is_err() {
                            tracing::debug!("inbound receiver dropped; discarding publish");
                        }
                    }
                }
            }
            Event::Incoming(Incoming::PubAck(_)) => {
                self.counters.published.fetch_add(1, Ordering::Relaxed);
            }
            Event::Incoming(Incoming::SubAck(ack)) => {
                let refused = ack
                    .return_codes
                    .iter()
                    .filter(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure))
                    .count();
                if refused > 0 {
                    tracing::warn!("{}", tr!("log.mqtt.subscriptions_refused", count = refused));
                }
                // Connected means listening: only now can a device's message reach us.
                self.set_connected();
            }
            _ => {}
        }
        Next::Continue
    }

    fn set_connected(&self) {
        self.state.send_if_modified(|state| {
            let changed = *state != LinkState::Connected;
            *state = LinkState::Connected;
            changed
        });
    }

    fn on_connack(&mut self, session_present: bool) {
        let reconnect = self.ever_connected;
        if reconnect {
            self.counters.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        self.ever_connected = true;
        self.backoff = Backoff::default();
        self.ping_at =
            (!self.keep_alive.is_zero()).then(|| Box::pin(tokio::time::sleep(self.keep_alive)));
        let persistent = self.session.borrow().persistent;
        let copies = std::mem::take(&mut self.in_flight_copy);
        // rumqttc cleared `pending` (the retransmissions) before handing us this ConnAck. A
        // clean session is never "lost": it was not asked to be kept.
        let lost = persistent && reconnect && !session_present;
        if !session_present {
            // A publish set aside for a packet id collision waits for an ack that no session
            // will ever send now: it joins the others, with a fresh id.
            let collided = self.eventloop.state.collision.take();
            let mut front: VecDeque<Publish> = copies
                .into_iter()
                .chain(collided)
                .map(|mut publish| {
                    publish.pkid = 0;
                    publish.dup = false;
                    publish
                })
                .collect();
            front.append(&mut self.unsent);
            self.unsent = front;
            self.count_carried();
        }
        if lost {
            self.counters.sessions_lost.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                broker = %self.broker,
                "the broker did not keep the MQTT session: what was published to the console \
                 while the link was down is lost"
            );
        }
        self.session.send_modify(|news| {
            news.connacks += 1;
            news.present = session_present;
            if lost {
                news.lost += 1;
            }
        });
        // A kept session keeps our subscriptions; a new one (or a new process, whose filters may
        // differ from the stored session's) subscribes before anything else is sent.
        let kept = reconnect && session_present;
        let subscribe = !kept && !self.subscriptions.is_empty();
        if subscribe {
            let filters = self
                .subscriptions
                .iter()
                .map(|f| SubscribeFilter::new(f.clone(), QoS::AtLeastOnce));
            self.eventloop
                .pending
                .push_front(Request::Subscribe(Subscribe::new_many(filters)));
        }
        tracing::info!(broker = %self.broker, session_present, "MQTT link connected");
        if !subscribe {
            self.set_connected();
        }
    }

    async fn on_error(&mut self, error: ConnectionError) -> Next {
        self.ping_at = None;
        self.save_unsent();
        let reason = describe(&error, &self.broker);
        if matches!(&error, ConnectionError::ConnectionRefused(code) if is_permanent(*code)) {
            tracing::error!(
                "{}",
                tr!("log.mqtt.link_failed", broker = self.broker, why = reason)
            );
            self.hand_back();
            let _ = self.state.send(LinkState::Failed { reason });
            return Next::Stop;
        }
        let (attempt, retry_in) = self.backoff.fail();
        // The operator hears of the loss once, from the engine's alert (and a waiting CLI
        // command from its own error); each retry is for developers.
        if attempt == 1 {
            tracing::info!(broker = %self.broker, %reason, attempt, ?retry_in, "MQTT link down");
        } else {
            tracing::debug!(broker = %self.broker, %reason, attempt, ?retry_in, "MQTT link down");
        }
        let _ = self.state.send(LinkState::Reconnecting {
            reason,
            attempt,
            retry_in,
        });
        tokio::select! {
            _ = self.shutdown.changed() => Next::Stop,
            _ = tokio::time::sleep(retry_in) => {
                let _ = self.state.send(LinkState::Connecting);
                Next::Continue
            }
        }
    }

    /// Sorts what rumqttc put in `pending` when the connection failed: publishes in flight
    /// (with a packet id) stay there for a retransmission in the kept session, and are copied
    /// in case the session is gone; a fresh publish comes out into `unsent`; subscriptions,
    /// pings and acks belong to the dead connection (subscriptions are renewed on ConnAck).
    /// Called after every failure, also of a connection attempt (when `pending` is unchanged).
    fn save_unsent(&mut self) {
        let pending = std::mem::take(&mut self.eventloop.pending);
        let mut retransmit = VecDeque::new();
        for request in pending {
            match request {
                Request::Publish(publish) if publish.pkid != 0 => {
                    retransmit.push_back(Request::Publish(publish));
                }
                Request::Publish(publish) => self.unsent.push_back(publish),
                _ => {}
            }
        }
        self.in_flight_copy = retransmit
            .iter()
            .filter_map(|r| match r {
                Request::Publish(p) => Some(p.clone()),
                _ => None,
            })
            .collect();
        self.eventloop.pending = retransmit;
        // Order across a reconnect is only roughly kept (MQTT promises none across sessions).
        self.count_carried();
    }

    /// A publishing connection refused for good: closes its queue and hands everything it
    /// holds (in flight, carried, queued) to the first connection, in that order.
    fn hand_back(&mut self) {
        let Some(handback) = self.handback.take() else {
            return;
        };
        let order = handback.order.clone();
        let _order = order.lock().unwrap_or_else(PoisonError::into_inner);
        self.requests.close();
        // `save_unsent` left in `pending` only the publishes in flight, copied in
        // `in_flight_copy`: no session will retransmit them now.
        self.eventloop.pending.clear();
        let mut held = std::mem::take(&mut self.in_flight_copy);
        held.extend(self.unsent.drain(..));
        while let Ok(publish) = self.requests.try_recv() {
            held.push(publish);
        }
        self.count_carried();
        let count = held.len();
        let dropped = handback.hand_back(&self.counters, held);
        tracing::warn!(
            "{}",
            tr!(
                "log.mqtt.handed_back",
                client = self.eventloop.mqtt_options.client_id(),
                held = count,
                dropped = dropped
            )
        );
    }

    /// Runs turns until the broker has acknowledged every publish queued so far, at most
    /// [`DRAIN_GRACE`]. Messages that arrive meanwhile go to the engine's channel if it has
    /// room; the engine stops reading at shutdown, so they are as lost as those already waiting
    /// there.
    async fn drain(&mut self) {
        // The counters alone could say "done" early (a PUBACK counted twice after a
        // reconnect), so nothing may be in flight, pending or carried over either.
        let drained = |actor: &Actor| {
            actor.eventloop.state.inflight() == 0
                && actor.eventloop.pending.is_empty()
                && actor.unsent.is_empty()
                && actor.counters.published.load(Ordering::Relaxed)
                    >= actor.counters.queued.load(Ordering::Relaxed)
        };
        let _ = tokio::time::timeout(DRAIN_GRACE, async {
            while !drained(self) {
                if self.turn(Inflow::Drop).await.is_err() {
                    break;
                }
            }
        })
        .await;
    }

    async fn stop(mut self) {
        self.counters.stopped.store(true, Ordering::Relaxed);
        if self.eventloop.network.is_some() {
            self.drain().await;
        }
        if let EventLoop {
            network: Some(network),
            state,
            ..
        } = &mut self.eventloop
            && let Ok(Some(packet)) = state.handle_outgoing_packet(Request::Disconnect(Disconnect))
        {
            let _ = tokio::time::timeout(DISCONNECT_GRACE, async {
                network.write(packet).await?;
                network.flush().await
            })
            .await;
        }
        // A refusal already set Failed with its reason; keep that one.
        self.state.send_if_modified(|state| {
            if matches!(state, LinkState::Failed { .. }) {
                return false;
            }
            *state = LinkState::Failed {
                reason: "link shut down".to_owned(),
            };
            true
        });
        tracing::info!(broker = %self.broker, "MQTT link stopped");
        let _ = self.stopped.send(true);
    }
}

/// Completes when the keep-alive is due; never while there is none.
async fn elapsed(ping_at: &mut Option<Pin<Box<Sleep>>>) {
    match ping_at {
        Some(sleep) => sleep.as_mut().await,
        None => std::future::pending().await,
    }
}

/// A write or flush that may wait at most `timeout` for the socket: a broker that stops reading
/// fails the connection instead of stalling the link.
async fn bounded(
    timeout: Duration,
    io: impl Future<Output = Result<(), StateError>>,
) -> Result<(), ConnectionError> {
    match tokio::time::timeout(timeout, io).await {
        Ok(result) => result.map_err(ConnectionError::MqttState),
        Err(_) => Err(ConnectionError::FlushTimeout),
    }
}
