//! The gate's listeners and one connection's forwarding loop.
//!
//! Owns: the runtime thread, accepting (plain TCP and TLS, at most [`MAX_CONNECTIONS`]), the
//! first packet (a CONNECT within [`CONNECT_TIMEOUT`], else the connection is closed), one
//! upstream connection to rumqttd per client, and moving frames both ways. Client to broker:
//! every frame is framed with `rumqttc::mqttbytes::check` under [`MAX_PACKET_BYTES`] and, in
//! secure mode, PUBLISH, PUBREL and SUBSCRIBE are checked ([`super::acl`]); allowed frames are
//! forwarded as the client's raw bytes, batched in one write per read. Broker to client: raw
//! bytes in open mode; framed in secure mode, to rewrite the SUBACKs of rewritten SUBSCRIBEs
//! and to put the gate's own acknowledgements between whole frames.
//!
//! Closing: a client that closes (or resets) has its last frames written to rumqttd, then
//! rumqttd's side is half-closed and the gate waits (at most [`LINGER`]) for rumqttd to finish,
//! so a device that publishes QoS 1 and reboots at once still has its message delivered. A
//! protocol violation (malformed or oversized frame, a second CONNECT) closes both at once.
//! rumqttd closing (session taken over, keep-alive expired) closes the client.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use rumqttc::mqttbytes::v4::{ConnAck, ConnectReturnCode, PubRel, Publish, SubAck, Subscribe};
use rumqttc::mqttbytes::{Error as FrameError, FixedHeader, check};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::time::timeout;

use super::acl::{self, ClientAcl, SubscribePlan};
use super::connect::{self, Access, Admitted, InternalLogin};
use super::dollar;
use super::error::BrokerError;
use super::events::{Attempt, BrokerRefusal, Events, now_ms};
use super::internal::InternalBroker;
use super::limits::{MAX_CONNECTIONS, MAX_PACKET_BYTES, READY_TIMEOUT};
use super::quiet::Deliveries;
use crate::access::rules::Identity;
use crate::i18n::tr;

/// Time a new connection has to send its CONNECT (and to finish a TLS handshake).
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a write to a client may block (it stopped reading, or its network did) before the
/// connection is closed: otherwise it would hold its task, buffers and slot for ever.
const CLIENT_WRITE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a closed client's upstream connection may take to finish.
pub(super) const LINGER: Duration = Duration::from_secs(5);
/// Smallest and largest read; reads grow while they fill the buffer (bursts), and shrink back
/// so an idle connection holds a small buffer.
const MIN_READ: usize = 4 * 1024;
const MAX_READ: usize = 64 * 1024;
/// The longest PUBLISH prefix parsed: fixed header, topic (at most 65535 bytes) and packet id.
const PUBLISH_HEAD: usize = 5 + 2 + 65_535 + 2;
/// Pause after a failed accept (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Gate runtime worker threads.
const WORKERS: usize = 2;

/// What every connection shares.
pub(super) struct Shared {
    pub(super) access: Access,
    pub(super) events: Events,
    upstream: InternalBroker,
    connections: Arc<Semaphore>,
    waiting: Waiting,
    pub(super) deliveries: Deliveries,
}

impl Shared {
    pub(super) fn new(access: Access, upstream: InternalBroker) -> Shared {
        Shared {
            access,
            events: Events::new(),
            upstream,
            connections: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
            waiting: Waiting::default(),
            deliveries: Deliveries::new(),
        }
    }

    pub(super) fn is_open(&self) -> bool {
        matches!(self.access, Access::Open)
    }
}

type TlsListener = (std::net::TcpListener, Arc<rustls::ServerConfig>);

/// Starts the gate's runtime thread serving `plain` (and `tls`); returns once it accepts.
pub(super) fn spawn(
    shared: Arc<Shared>,
    plain: std::net::TcpListener,
    tls: Option<TlsListener>,
) -> Result<(), BrokerError> {
    plain.set_nonblocking(true).map_err(BrokerError::Spawn)?;
    if let Some((listener, _)) = &tls {
        listener.set_nonblocking(true).map_err(BrokerError::Spawn)?;
    }
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<std::io::Result<()>>();
    std::thread::Builder::new()
        .name("mqtt-gate".to_owned())
        .spawn(move || {
            // Built on this thread, so no caller's runtime is ever involved (a runtime dropped
            // inside another one panics).
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(WORKERS)
                .thread_name("mqtt-gate-worker")
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            runtime.block_on(async move {
                let listeners = tokio::net::TcpListener::from_std(plain).and_then(|plain| {
                    let tls = match tls {
                        Some((l, config)) => Some((tokio::net::TcpListener::from_std(l)?, config)),
                        None => None,
                    };
                    Ok((plain, tls))
                });
                let (plain, tls) = match listeners {
                    Ok(l) => l,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                if let Some((listener, config)) = tls {
                    tokio::spawn(accept_tls(shared.clone(), listener, config));
                }
                accept_plain(shared, plain).await;
            });
        })
        .map_err(BrokerError::Spawn)?;
    match ready_rx.recv_timeout(READY_TIMEOUT) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(BrokerError::Spawn(e)),
        Err(_) => Err(BrokerError::Spawn(std::io::Error::other(
            "the gate thread did not start",
        ))),
    }
}

/// Connections one address may hold open before they are admitted (TCP open, CONNECT not yet
/// decided): a stranger must not fill every slot with sockets that never log in. Loopback (this
/// machine: the console, an in-process fleet connecting thousands at once) has no such cap.
pub(super) const MAX_WAITING_PER_ADDRESS: usize = 64;

/// Connections not yet admitted, per address.
#[derive(Default)]
pub(super) struct Waiting {
    by_address: Mutex<std::collections::HashMap<std::net::IpAddr, usize>>,
}

impl Waiting {
    /// One more waiting connection from `ip`; `false` when the address is at its cap.
    fn enter(&self, ip: std::net::IpAddr) -> bool {
        let mut map = lock(&self.by_address);
        let count = map.entry(ip).or_default();
        if *count >= MAX_WAITING_PER_ADDRESS && !ip.is_loopback() {
            return false;
        }
        *count += 1;
        true
    }

    fn leave(&self, ip: std::net::IpAddr) {
        let mut map = lock(&self.by_address);
        if let Some(count) = map.get_mut(&ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                map.remove(&ip);
            }
        }
    }
}

/// A client's place in the gate: its connection slot, and while it has not been admitted, its
/// count among its address's waiting connections.
pub(super) struct Slot {
    _permit: tokio::sync::OwnedSemaphorePermit,
    waiting: Option<(Arc<Shared>, std::net::IpAddr)>,
}

impl Slot {
    /// Admitted (or refused): no longer waiting.
    fn decided(&mut self) {
        if let Some((shared, ip)) = self.waiting.take() {
            shared.waiting.leave(ip);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.decided();
    }
}

/// A connection slot for a client just accepted (`None`: at the limit, the socket is dropped).
fn take_slot(
    shared: &Arc<Shared>,
    stream: &tokio::net::TcpStream,
    remote: SocketAddr,
) -> Option<Slot> {
    if !shared.waiting.enter(remote.ip()) {
        tracing::debug!(%remote, "MQTT gate: too many connections waiting to log in from this address, closed");
        return None;
    }
    let Ok(permit) = shared.connections.clone().try_acquire_owned() else {
        shared.waiting.leave(remote.ip());
        tracing::warn!(%remote, "MQTT gate: connection limit reached, closed");
        return None;
    };
    let _ = stream.set_nodelay(true);
    Some(Slot {
        _permit: permit,
        waiting: Some((shared.clone(), remote.ip())),
    })
}

async fn accept_plain(shared: Arc<Shared>, listener: tokio::net::TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, remote)) => {
                let Some(mut slot) = take_slot(&shared, &stream, remote) else {
                    continue;
                };
                let shared = shared.clone();
                tokio::spawn(async move {
                    let (reader, writer) = stream.into_split();
                    serve(&shared, remote, None, &mut slot, reader, writer).await;
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "MQTT gate: accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

async fn accept_tls(
    shared: Arc<Shared>,
    listener: tokio::net::TcpListener,
    config: Arc<rustls::ServerConfig>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    loop {
        match listener.accept().await {
            Ok((stream, remote)) => {
                let Some(mut slot) = take_slot(&shared, &stream, remote) else {
                    continue;
                };
                let (shared, acceptor) = (shared.clone(), acceptor.clone());
                tokio::spawn(async move {
                    match timeout(CONNECT_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let certificate = tls
                                .get_ref()
                                .1
                                .peer_certificates()
                                .and_then(|chain| chain.first())
                                .and_then(crate::access::tls::identity_of_cert);
                            let (reader, writer) = tokio::io::split(tls);
                            serve(&shared, remote, certificate, &mut slot, reader, writer).await;
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%remote, error = %e, "MQTT gate: TLS handshake failed");
                        }
                        Err(_) => {
                            tracing::debug!(%remote, "MQTT gate: TLS handshake timed out");
                        }
                    }
                    drop(slot);
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "MQTT gate: TLS accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

/// Refusals of one connection logged at WARN level; the rest at DEBUG.
const LOUD_REFUSALS: u32 = 10;

/// Who is on the other end, for refusal events.
struct Peer {
    remote: SocketAddr,
    client_id: String,
    username: Option<String>,
    identity: Option<String>,
    refusals: std::sync::atomic::AtomicU32,
}

impl Peer {
    /// Reports a refused publish or subscribe of this connection.
    fn refused(&self, events: &Events, attempt: Attempt, reason: String) {
        let count = self
            .refusals
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if count == LOUD_REFUSALS {
            tracing::warn!(
                remote = %self.remote,
                "further refusals of this connection are logged at DEBUG level"
            );
        }
        events.refused_with(self.refusal(attempt, reason), count < LOUD_REFUSALS);
    }

    fn refusal(&self, attempt: Attempt, reason: String) -> BrokerRefusal {
        BrokerRefusal {
            at_ms: now_ms(),
            remote: self.remote,
            client_id: self.client_id.clone(),
            username: self.username.clone(),
            identity: self.identity.clone(),
            attempt,
            reason,
        }
    }
}

/// A read buffer that grows during bursts and stays small when idle.
struct ReadBuf {
    buf: BytesMut,
    chunk: usize,
}

impl ReadBuf {
    fn new() -> ReadBuf {
        ReadBuf {
            buf: BytesMut::new(),
            chunk: MIN_READ,
        }
    }

    /// Reads once; `Ok(0)` at the end of the stream.
    async fn fill(&mut self, reader: &mut (impl AsyncRead + Unpin)) -> std::io::Result<usize> {
        if self.buf.is_empty() {
            // Releases a large buffer of a past burst (and any storage shared with frames
            // already written).
            self.buf = BytesMut::new();
        }
        self.buf.reserve(self.chunk);
        let spare = self.buf.capacity() - self.buf.len();
        let n = reader.read_buf(&mut self.buf).await?;
        self.chunk = if n >= spare {
            (self.chunk * 2).min(MAX_READ)
        } else if n < self.chunk / 4 {
            MIN_READ
        } else {
            self.chunk
        };
        Ok(n)
    }

    /// The next complete frame, `None` when more bytes are needed.
    fn frame(&mut self, limit: usize) -> Result<Option<(FixedHeader, BytesMut)>, FrameError> {
        match check(self.buf.iter(), limit) {
            Ok(header) => Ok(Some((header, self.buf.split_to(header.frame_length())))),
            Err(FrameError::InsufficientBytes(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Largest CONNECT accepted (client id, user name, password and will together; a will's payload
/// is a status message). Refused from its declared length, before any of it is buffered.
const MAX_CONNECT_BYTES: usize = 64 * 1024;

/// Serves one client connection until it or rumqttd closes.
#[expect(
    clippy::too_many_lines,
    reason = "the life of one connection in order: first frame, admission, the upstream \
              socket, both pumps, teardown and its event; read whole, not in pieces"
)]
async fn serve<R, W>(
    shared: &Shared,
    remote: SocketAddr,
    certificate: Option<String>,
    slot: &mut Slot,
    mut reader: R,
    mut writer: W,
) where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send,
{
    let mut input = ReadBuf::new();
    // The first frame must be a CONNECT (type 1, reserved flags 0: MQTT 3.1.1 §2.2.2).
    let first = timeout(CONNECT_TIMEOUT, async {
        loop {
            // Told at the first byte: no waiting for the "length" of an HTTP request or TLS hello.
            if input.buf.first().is_some_and(|b| *b != 0x10) {
                return Err("the first packet was not a CONNECT".to_owned());
            }
            // A CONNECT is small (ids, names, a will): an unauthenticated client may not make
            // the gate buffer more than this before anyone knows who it is.
            match input.frame(MAX_CONNECT_BYTES) {
                Ok(Some(frame)) => return Ok(Some(frame)),
                Ok(None) => {}
                Err(e) => return Err(e.to_string()),
            }
            match input.fill(&mut reader).await {
                Ok(0) | Err(_) => return Ok(None),
                Ok(_) => {}
            }
        }
    })
    .await;
    let peer = Peer {
        remote,
        client_id: String::new(),
        username: None,
        identity: None,
        refusals: Default::default(),
    };
    let (header, frame) = match first {
        Ok(Ok(Some(frame))) => frame,
        // Gone before a whole packet: nothing to report (port scans, health checks).
        Ok(Ok(None)) => return,
        Ok(Err(why)) => {
            let reason = tr!("broker.refusal.not_mqtt", why = why);
            shared
                .events
                .refused(peer.refusal(Attempt::Connect, reason));
            return;
        }
        Err(_) => {
            let reason = tr!(
                "broker.refusal.no_connect",
                waited = humantime::format_duration(CONNECT_TIMEOUT)
            );
            shared
                .events
                .refused(peer.refusal(Attempt::Connect, reason));
            return;
        }
    };
    let internal = InternalLogin {
        username: &shared.upstream.username,
        password: &shared.upstream.password,
    };
    let admitted = match connect::admit(
        &shared.access,
        internal,
        remote,
        certificate.as_deref(),
        header,
        frame.freeze(),
    ) {
        Ok(admitted) => admitted,
        Err(denied) => {
            shared.events.refused(*denied.refusal);
            if let Some(code) = denied.connack {
                let mut ack = BytesMut::new();
                let _ = ConnAck::new(code, false).write(&mut ack);
                let _ = writer.write_all(&ack).await;
            }
            close_gently(&mut reader, &mut writer).await;
            return;
        }
    };
    slot.decided();
    let Admitted {
        upstream_connect,
        identity,
        client_id,
        username,
    } = admitted;
    let peer = Peer {
        remote,
        client_id,
        username,
        identity: identity.as_ref().map(Identity::to_string),
        refusals: Default::default(),
    };
    let acl = match (&shared.access, identity) {
        (Access::Open, _) => None,
        (Access::Secure(secure), Some(identity)) => Some(ClientAcl::new(identity, secure.clone())),
        // Secure admission always names the identity; closed rather than let through unchecked.
        (Access::Secure(_), None) => return,
    };
    let upstream = match timeout(CONNECT_TIMEOUT, TcpStream::connect(shared.upstream.addr)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "MQTT gate: cannot reach the internal broker");
            return refuse_unavailable(&mut reader, &mut writer).await;
        }
        Err(_) => {
            tracing::error!("MQTT gate: the internal broker did not accept a connection");
            return refuse_unavailable(&mut reader, &mut writer).await;
        }
    };
    let _ = upstream.set_nodelay(true);
    let (up_reader, mut up_writer) = upstream.into_split();
    if up_writer.write_all(&upstream_connect).await.is_err() {
        return refuse_unavailable(&mut reader, &mut writer).await;
    }
    let pending = Mutex::new(PendingSubacks::default());
    let client_writer = tokio::sync::Mutex::new(writer);
    let up = pump_up(
        shared,
        &peer,
        acl,
        &pending,
        input,
        reader,
        up_writer,
        &client_writer,
    );
    let down = pump_down(
        secure_framing(&shared.access),
        &shared.deliveries,
        &pending,
        up_reader,
        &client_writer,
    );
    tokio::pin!(up, down);
    tokio::select! {
        end = &mut up => {
            if end == UpEnd::Closed {
                let _ = timeout(LINGER, &mut down).await;
            }
        }
        () = &mut down => {}
    }
    // `down` may be stuck writing to a client that stopped reading, holding the writer: then
    // the socket is simply dropped with this task.
    let _ = timeout(Duration::from_secs(1), async {
        if let Ok(mut writer) = client_writer.try_lock() {
            let _ = writer.shutdown().await;
        }
    })
    .await;
}

fn secure_framing(access: &Access) -> bool {
    matches!(access, Access::Secure(_))
}

/// Answers CONNACK 3 ("server unavailable") and closes.
async fn refuse_unavailable<R, W>(reader: &mut R, writer: &mut W)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut ack = BytesMut::new();
    let _ = ConnAck::new(ConnectReturnCode::ServiceUnavailable, false).write(&mut ack);
    let _ = writer.write_all(&ack).await;
    close_gently(reader, writer).await;
}

/// Half-closes, then reads what the client still sends (briefly): closing a socket with unread
/// bytes resets it, and the client could lose the CONNACK that says why.
async fn close_gently<R, W>(reader: &mut R, writer: &mut W)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let _ = writer.shutdown().await;
    let _ = timeout(Duration::from_secs(1), async {
        let mut sink = [0u8; 1024];
        while matches!(reader.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}

/// SUBSCRIBEs sent rewritten, by packet id: which of the client's filters were allowed.
#[derive(Default)]
struct PendingSubacks {
    by_pkid: std::collections::HashMap<u16, Vec<bool>>,
}

/// Why the client-to-broker direction ended.
#[derive(Debug, PartialEq, Eq)]
enum UpEnd {
    /// The client closed or the socket failed: rumqttd was told by a half-close.
    Closed,
    /// The client broke the protocol (or rumqttd's socket failed): close everything now.
    Abort,
}

/// Client → rumqttd.
#[expect(
    clippy::too_many_arguments,
    clippy::too_many_lines,
    reason = "one loop over the client's frames: each packet type's check (ACL, rewrite, \
              answer) is a few lines beside the others, and the state it threads is the \
              connection's, taken apart by `serve`"
)]
async fn pump_up<R, W>(
    shared: &Shared,
    peer: &Peer,
    mut acl: Option<ClientAcl>,
    pending: &Mutex<PendingSubacks>,
    mut input: ReadBuf,
    mut reader: R,
    mut upstream: tokio::net::tcp::OwnedWriteHalf,
    client: &tokio::sync::Mutex<W>,
) -> UpEnd
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut out = BytesMut::new();
    loop {
        let mut answers = BytesMut::new();
        loop {
            let (header, frame) = match input.frame(MAX_PACKET_BYTES) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(remote = %peer.remote, error = %e, "MQTT gate: bad frame, closed");
                    return UpEnd::Abort;
                }
            };
            let packet_type = frame.first().map_or(0, |b| b >> 4);
            if packet_type == 1 {
                tracing::debug!(remote = %peer.remote, "MQTT gate: second CONNECT, closed");
                return UpEnd::Abort;
            }
            let Some(acl) = acl.as_mut() else {
                if !rumqttd_can_take(header, packet_type, &frame) {
                    tracing::debug!(remote = %peer.remote, "MQTT gate: a topic rumqttd cannot take, closed");
                    return UpEnd::Abort;
                }
                out.unsplit(escape_dollar(header, packet_type, frame));
                continue;
            };
            match packet_type {
                3 => {
                    let head = &frame[..frame.len().min(PUBLISH_HEAD)];
                    let Ok(publish) = Publish::read(header, bytes::Bytes::copy_from_slice(head))
                    else {
                        return UpEnd::Abort;
                    };
                    match acl.publish(&publish.topic) {
                        Ok(()) => out.unsplit(escape_dollar(header, packet_type, frame)),
                        Err(reason) => {
                            let topic = publish.topic.chars().take(256).collect();
                            peer.refused(&shared.events, Attempt::Publish { topic }, reason);
                            match publish.qos {
                                rumqttc::mqttbytes::QoS::AtMostOnce => {}
                                rumqttc::mqttbytes::QoS::AtLeastOnce => {
                                    answers.unsplit(acl::puback(publish.pkid));
                                }
                                rumqttc::mqttbytes::QoS::ExactlyOnce => {
                                    if !acl.refused_qos2(publish.pkid) {
                                        return UpEnd::Abort;
                                    }
                                    answers.unsplit(acl::pubrec(publish.pkid));
                                }
                            }
                        }
                    }
                }
                6 => {
                    let Ok(pubrel) = PubRel::read(header, frame.clone().freeze()) else {
                        return UpEnd::Abort;
                    };
                    if acl.release(pubrel.pkid) {
                        answers.unsplit(acl::pubcomp(pubrel.pkid));
                    } else {
                        out.unsplit(frame);
                    }
                }
                8 => {
                    let Ok(mut subscribe) = Subscribe::read(header, frame.clone().freeze()) else {
                        return UpEnd::Abort;
                    };
                    let mut allowed = Vec::with_capacity(subscribe.filters.len());
                    for filter in &subscribe.filters {
                        match acl.subscribe(&filter.path) {
                            Ok(()) => allowed.push(true),
                            Err(reason) => {
                                let filter = filter.path.chars().take(256).collect();
                                peer.refused(&shared.events, Attempt::Subscribe { filter }, reason);
                                allowed.push(false);
                            }
                        }
                    }
                    // Decided on the client's filters; rumqttd gets them escaped.
                    let escaped = dollar::subscribe_in(&mut subscribe);
                    match acl::plan_subscribe(&subscribe, allowed) {
                        SubscribePlan::Forward if escaped => {
                            match dollar::encode_subscribe(&subscribe) {
                                Some(packet) => out.unsplit(packet),
                                None => return UpEnd::Abort,
                            }
                        }
                        SubscribePlan::Forward => out.unsplit(frame),
                        SubscribePlan::Rewrite { packet, allowed } => {
                            // Registered before the SUBSCRIBE leaves, so its SUBACK finds it.
                            lock(pending).by_pkid.insert(subscribe.pkid, allowed);
                            out.unsplit(packet);
                        }
                        SubscribePlan::Answer { suback } => answers.unsplit(suback),
                    }
                }
                _ => out.unsplit(escape_dollar(header, packet_type, frame)),
            }
        }
        if !out.is_empty() {
            if upstream.write_all(&out).await.is_err() {
                return UpEnd::Abort;
            }
            // Drops the view of the read buffer's storage, so it can be reused or released.
            out = BytesMut::new();
        }
        if !answers.is_empty() {
            // A client that closed only loses the gate's acknowledgements; one that stopped
            // reading for a minute is closed.
            let written = timeout(CLIENT_WRITE_TIMEOUT, async {
                let _ = client.lock().await.write_all(&answers).await;
            })
            .await;
            if written.is_err() {
                return UpEnd::Abort;
            }
        }
        match input.fill(&mut reader).await {
            Ok(n) if n > 0 => {}
            // End of stream or reset: what was read is forwarded; rumqttd sees the end.
            _ => {
                let _ = upstream.shutdown().await;
                return UpEnd::Closed;
            }
        }
    }
}

/// A client's frame as rumqttd must see it: PUBLISH topics and SUBSCRIBE / UNSUBSCRIBE filters
/// beginning with `$` escaped (`dollar.rs`), everything else as it is.
fn escape_dollar(header: FixedHeader, packet_type: u8, frame: BytesMut) -> BytesMut {
    let rewritten = match packet_type {
        // The topic's first byte follows the fixed header and the 2-byte length.
        3 if topic_start(&frame).and_then(|i| frame.get(i)) == Some(&b'$') => {
            dollar::publish_in(header, &frame)
        }
        8 => Subscribe::read(header, frame.clone().freeze())
            .ok()
            .and_then(|mut subscribe| {
                dollar::subscribe_in(&mut subscribe)
                    .then(|| dollar::encode_subscribe(&subscribe))
                    .flatten()
            }),
        10 => dollar::unsubscribe_in(header, &frame),
        _ => None,
    };
    rewritten.unwrap_or(frame)
}

/// Whether rumqttd 0.20 survives the frame: it panics (and the whole embedded broker with it) on
/// a topic or filter whose first character takes more than one byte. In secure mode the topic
/// rules refuse such names first; in open mode this is the gate's only check besides framing.
fn rumqttd_can_take(header: FixedHeader, packet_type: u8, frame: &BytesMut) -> bool {
    let ascii_first = |name: &str| name.as_bytes().first().is_none_or(u8::is_ascii);
    match packet_type {
        3 => topic_start(frame)
            .and_then(|i| frame.get(i))
            .is_none_or(u8::is_ascii),
        8 => Subscribe::read(header, frame.clone().freeze())
            .is_ok_and(|s| s.filters.iter().all(|f| ascii_first(&f.path))),
        10 => rumqttc::mqttbytes::v4::Unsubscribe::read(header, frame.clone().freeze())
            .is_ok_and(|u| u.topics.iter().all(|t| ascii_first(t))),
        _ => true,
    }
}

/// Where a PUBLISH frame's topic begins: after the first byte, the remaining length (1 to 4
/// bytes, the last below 0x80) and the topic's 2-byte length.
fn topic_start(frame: &[u8]) -> Option<usize> {
    let length_bytes = frame.iter().skip(1).take(4).position(|b| b & 0x80 == 0)? + 1;
    Some(1 + length_bytes + 2)
}

/// rumqttd's frame as the client must see it: an escaped PUBLISH topic restored.
fn unescape_dollar(header: FixedHeader, frame: BytesMut) -> BytesMut {
    let mut escape = [0u8; 4];
    let escape = dollar::ESCAPE.encode_utf8(&mut escape).as_bytes();
    let escaped = topic_start(&frame).and_then(|start| frame.get(start..start + escape.len()))
        == Some(escape);
    if escaped && frame.first().map(|b| b >> 4) == Some(3) {
        dollar::publish_out(header, &frame).unwrap_or(frame)
    } else {
        frame
    }
}

/// rumqttd → client, until rumqttd closes. Once the client cannot be written to, rumqttd's
/// bytes are read and dropped (so rumqttd is never reset while it still reads).
async fn pump_down<W>(
    framed: bool,
    deliveries: &Deliveries,
    pending: &Mutex<PendingSubacks>,
    mut upstream: tokio::net::tcp::OwnedReadHalf,
    client: &tokio::sync::Mutex<W>,
) where
    W: AsyncWrite + Unpin,
{
    let mut input = ReadBuf::new();
    let mut client_gone = false;
    loop {
        match input.fill(&mut upstream).await {
            Ok(n) if n > 0 => {}
            _ => return,
        }
        if client_gone {
            input.buf.clear();
            continue;
        }
        // Framed in both modes: a PUBLISH on an escaped `$` topic is restored (`dollar.rs`);
        // in secure mode, SUBACKs of rewritten SUBSCRIBEs too.
        let mut out = BytesMut::new();
        loop {
            match input.frame(usize::MAX) {
                Ok(Some((header, frame))) => {
                    if framed && frame.first().map(|b| b >> 4) == Some(9) {
                        out.unsplit(suback_for_client(pending, header, frame));
                    } else {
                        out.unsplit(unescape_dollar(header, frame));
                    }
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
        if !out.is_empty() {
            match timeout(CLIENT_WRITE_TIMEOUT, async {
                client.lock().await.write_all(&out).await
            })
            .await
            {
                Ok(Ok(())) => deliveries.delivered(),
                // Closed: rumqttd's bytes are drained (see above).
                Ok(Err(_)) => client_gone = true,
                // Not reading for a minute: the whole connection is closed.
                Err(_) => return,
            }
        }
    }
}

/// rumqttd's SUBACK as the client must see it (rewritten if its SUBSCRIBE was).
fn suback_for_client(
    pending: &Mutex<PendingSubacks>,
    header: FixedHeader,
    frame: BytesMut,
) -> BytesMut {
    let Ok(suback) = SubAck::read(header, frame.clone().freeze()) else {
        return frame;
    };
    match lock(pending).by_pkid.remove(&suback.pkid) {
        Some(allowed) => acl::rewrite_suback(&suback, &allowed),
        None => frame,
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_may_keep_only_so_many_connections_waiting_to_log_in() {
        let waiting = Waiting::default();
        let stranger: std::net::IpAddr = "10.0.0.66".parse().unwrap();
        for _ in 0..MAX_WAITING_PER_ADDRESS {
            assert!(waiting.enter(stranger));
        }
        assert!(!waiting.enter(stranger), "one past the cap");
        assert!(
            waiting.enter("10.0.0.7".parse().unwrap()),
            "others are not affected"
        );
        waiting.leave(stranger);
        assert!(waiting.enter(stranger), "a decided one frees its place");
        let local: std::net::IpAddr = "127.0.0.1".parse().unwrap();
        for _ in 0..MAX_WAITING_PER_ADDRESS * 4 {
            assert!(waiting.enter(local), "this machine has no cap");
        }
    }
}
