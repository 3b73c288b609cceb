//! The embedded broker's gate in secure mode, black-box: real rumqttc clients and raw sockets
//! against `EmbeddedBroker::start(BrokerSettings::secure(..))` on a temporary data directory with
//! a user file and an Alibaba device-secret table. Everything on 127.0.0.1 with ephemeral ports;
//! every wait is bounded.
//!
//! How a refused publish is proven not delivered: the console subscribes to `#`, the refused
//! publishes are sent, then an allowed one from the same connection. rumqttd keeps one
//! publisher's order, so once the allowed one arrives, a refused one that had got through would
//! have arrived before it.

// Test code throughout: clippy's allow-unwrap-in-tests (clippy.toml) goes by `cfg(test)`.
#![cfg(test)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use ota_console::access::alibaba_sign::{self, SignMethod};
use ota_console::access::credentials::{
    BackoffPolicy, ConsoleCredentials, SECRETS_FILE, USERS_FILE,
};
use ota_console::protocol::registry;
use ota_console::transport::broker::{
    Attempt, BrokerEvent, BrokerRefusal, BrokerSettings, BrokerTls, EmbeddedBroker,
};
use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, LastWill, MqttOptions, Packet, Publish,
    QoS, SubscribeFilter, SubscribeReasonCode,
};
use tokio::sync::{broadcast, mpsc};
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);
const PK: &str = "a1TestPk01";
const USERS: &str = "dock-1 pw-dock dji:DOCK1\nlab pw-lab fogcloud:a1Fog/gw-1\n";

struct Site {
    _dir: tempfile::TempDir,
    data: std::path::PathBuf,
    broker: EmbeddedBroker,
    console: ConsoleCredentials,
}

fn secure_site() -> Site {
    secure_site_with(None)
}

fn secure_site_with(tls: Option<BrokerTls>) -> Site {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let console = ConsoleCredentials::load_or_create(&data).unwrap();
    std::fs::write(data.join(USERS_FILE), USERS).unwrap();
    std::fs::write(
        data.join(SECRETS_FILE),
        format!("ProductKey,DeviceName,DeviceSecret\n{PK},pump-7,secret-7\n{PK},pump-8,secret-8\n"),
    )
    .unwrap();
    let mut settings = BrokerSettings::secure(
        "127.0.0.1:0".parse().unwrap(),
        data.clone(),
        registry::topic_routes(),
    );
    settings.tls = tls;
    let broker = EmbeddedBroker::start(settings).expect("secure broker starts");
    assert!(!broker.is_open());
    Site {
        _dir: dir,
        data,
        broker,
        console,
    }
}

/// An Alibaba device's signed login, as the Link Kit SDK sends it.
fn alibaba_login(dn: &str, secret: &str) -> (String, String, String) {
    let timestamp = "1764590000";
    let cid = format!("{PK}&{dn}");
    let client_id = format!("{cid}|securemode=2,signmethod=hmacsha1,timestamp={timestamp}|");
    let content = alibaba_sign::content(&cid, dn, PK, Some(timestamp));
    let password = alibaba_sign::sign(SignMethod::HmacSha1, secret, &content);
    (client_id, format!("{dn}&{PK}"), password)
}

/// What a client's event loop saw.
#[derive(Debug)]
enum Seen {
    Packet(Packet),
    Refused(ConnectReturnCode),
    /// The error, shown when a test fails (through `Debug`).
    Closed(#[expect(dead_code, reason = "read only through `Debug` when a test fails")] String),
}

/// Credentials, client id, the CONNACK expected and a word of the refusal's reason.
type LoginCase<'a> = (
    Option<(&'a str, &'a str)>,
    &'a str,
    ConnectReturnCode,
    &'a str,
);

/// A rumqttc client whose event loop runs in a task until its first error.
struct Client {
    client: AsyncClient,
    seen: mpsc::UnboundedReceiver<Seen>,
}

struct Login<'a> {
    client_id: &'a str,
    credentials: Option<(&'a str, &'a str)>,
    clean: bool,
    will: Option<LastWill>,
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

impl<'a> Login<'a> {
    fn new(client_id: &'a str, credentials: Option<(&'a str, &'a str)>) -> Self {
        Login {
            client_id,
            credentials,
            clean: true,
            will: None,
            tls: None,
        }
    }
}

fn client(addr: SocketAddr, login: Login<'_>) -> Client {
    let mut options = MqttOptions::new(login.client_id, "127.0.0.1", addr.port());
    options.set_clean_session(login.clean);
    options.set_keep_alive(Duration::from_secs(30));
    if let Some((user, password)) = login.credentials {
        options.set_credentials(user, password);
    }
    if let Some(will) = login.will {
        options.set_last_will(will);
    }
    if let Some(config) = login.tls {
        options.set_transport(rumqttc::Transport::tls_with_config(
            rumqttc::TlsConfiguration::Rustls(config),
        ));
    }
    let (client, mut eventloop) = AsyncClient::new(options, 100);
    let (tx, seen) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(packet)) => {
                    if tx.send(Seen::Packet(packet)).is_err() {
                        return;
                    }
                }
                Ok(Event::Outgoing(_)) => {}
                Err(ConnectionError::ConnectionRefused(code)) => {
                    let _ = tx.send(Seen::Refused(code));
                    return;
                }
                Err(e) => {
                    let _ = tx.send(Seen::Closed(e.to_string()));
                    return;
                }
            }
        }
    });
    Client { client, seen }
}

impl Client {
    /// The next packet that `pick` accepts (others are skipped); panics on a closed connection.
    async fn expect<T>(&mut self, what: &str, mut pick: impl FnMut(Packet) -> Option<T>) -> T {
        timeout(WAIT, async {
            loop {
                match self.seen.recv().await {
                    Some(Seen::Packet(p)) => {
                        if let Some(t) = pick(p) {
                            return t;
                        }
                    }
                    other => panic!("waiting for {what}: {other:?}"),
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no {what} within {WAIT:?}"))
    }

    async fn connected(&mut self) {
        self.expect("ConnAck", |p| matches!(p, Packet::ConnAck(_)).then_some(()))
            .await;
    }

    /// The CONNACK refusal code (the connection must be refused).
    async fn refused(&mut self) -> ConnectReturnCode {
        let seen = timeout(WAIT, self.seen.recv()).await.expect("an answer");
        match seen {
            Some(Seen::Refused(code)) => code,
            other => panic!("expected a refused CONNACK, got {other:?}"),
        }
    }

    /// The connection ends without a CONNACK (e.g. a failed TLS handshake).
    async fn closed(&mut self) {
        let seen = timeout(WAIT, self.seen.recv()).await.expect("an answer");
        match seen {
            Some(Seen::Closed(_)) | None => {}
            other => panic!("expected the connection to fail, got {other:?}"),
        }
    }

    async fn subscribe(&mut self, filters: &[&str]) -> Vec<SubscribeReasonCode> {
        let filters: Vec<_> = filters
            .iter()
            .map(|f| SubscribeFilter::new((*f).to_owned(), QoS::AtLeastOnce))
            .collect();
        self.client.subscribe_many(filters).await.unwrap();
        self.expect("SubAck", |p| match p {
            Packet::SubAck(ack) => Some(ack.return_codes),
            _ => None,
        })
        .await
    }

    async fn publish(&self, topic: &str, qos: QoS, payload: &str) {
        self.client
            .publish(topic, qos, false, payload.as_bytes().to_vec())
            .await
            .unwrap();
    }

    /// Every message until one with `payload` arrives.
    async fn messages_until(&mut self, payload: &str) -> Vec<Publish> {
        let mut got = Vec::new();
        self.expect(&format!("message {payload:?}"), |p| match p {
            Packet::Publish(publish) => {
                let last = publish.payload == payload.as_bytes();
                got.push(publish);
                last.then_some(())
            }
            _ => None,
        })
        .await;
        got
    }
}

/// The refusals broadcast so far.
fn refusals(events: &mut broadcast::Receiver<BrokerEvent>) -> Vec<BrokerRefusal> {
    let mut out = Vec::new();
    while let Ok(BrokerEvent::Refused(r)) = events.try_recv() {
        out.push(r);
    }
    out
}

/// Waits until `count` refusals were broadcast (they are sent before the client's answer, but
/// on another thread than this test's).
async fn wait_refusals(
    events: &mut broadcast::Receiver<BrokerEvent>,
    count: usize,
) -> Vec<BrokerRefusal> {
    let mut got = Vec::new();
    timeout(WAIT, async {
        while got.len() < count {
            if let Ok(BrokerEvent::Refused(r)) = events.recv().await {
                got.push(r);
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("only {} of {count} refusals: {got:?}", got.len()));
    got
}

async fn console(site: &Site, client_id: &str) -> Client {
    let creds = (
        site.console.username.as_str(),
        site.console.password.as_str(),
    );
    let mut console = client(site.broker.local_addr(), Login::new(client_id, Some(creds)));
    console.connected().await;
    console
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_wrong_or_unknown_credentials_are_refused_with_a_connack_and_an_event() {
    let site = secure_site();
    let mut events = site.broker.events();
    let addr = site.broker.local_addr();
    let (cid8, user8, _) = alibaba_login("pump-8", "secret-8");
    let (_, _, wrong_secret_pw) = alibaba_login("pump-8", "not-the-secret");
    let cases: [LoginCase<'_>; 5] = [
        (
            None,
            "anon",
            ConnectReturnCode::NotAuthorized,
            "no user name or password",
        ),
        (
            Some(("dock-1", "guess")),
            "c1",
            ConnectReturnCode::BadUserNamePassword,
            "wrong password",
        ),
        (
            Some(("made-up", "pw")),
            "c2",
            ConnectReturnCode::BadUserNamePassword,
            "unknown user",
        ),
        (
            Some((site.console.username.as_str(), "not-it")),
            "c3",
            ConnectReturnCode::BadUserNamePassword,
            "wrong password",
        ),
        (
            Some((user8.as_str(), wrong_secret_pw.as_str())),
            &cid8,
            ConnectReturnCode::BadUserNamePassword,
            "signature",
        ),
    ];
    for (creds, cid, code, _) in &cases {
        let mut c = client(addr, Login::new(cid, *creds));
        assert_eq!(c.refused().await, *code, "{creds:?}");
    }
    let got = wait_refusals(&mut events, cases.len()).await;
    for (refusal, (creds, _, _, reason)) in got.iter().zip(&cases) {
        assert_eq!(refusal.attempt, Attempt::Connect);
        assert!(
            refusal.reason.contains(reason),
            "{creds:?}: {}",
            refusal.reason
        );
        assert_eq!(refusal.username.as_deref(), creds.map(|c| c.0));
        assert_eq!(refusal.identity, None);
        assert!(refusal.remote.ip().is_loopback());
    }
    assert_eq!(site.broker.refusal_count(), cases.len() as u64);
    // The right signature gets in.
    let (cid, user, pw) = alibaba_login("pump-8", "secret-8");
    client(addr, Login::new(&cid, Some((&user, &pw))))
        .connected()
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_and_a_device_get_exactly_their_rights() {
    let site = secure_site();
    let mut events = site.broker.events();
    let addr = site.broker.local_addr();
    let mut console = console(&site, "ota-console-test").await;
    assert_eq!(
        console.subscribe(&["#"]).await,
        [SubscribeReasonCode::Success(QoS::AtLeastOnce)]
    );

    let (cid, user, pw) = alibaba_login("pump-7", "secret-7");
    let mut device = client(addr, Login::new(&cid, Some((&user, &pw))));
    device.connected().await;
    let own_down = format!("/ota/device/upgrade/{PK}/pump-7");
    let own_reply = format!("/sys/{PK}/pump-7/thing/ota/firmware/get_reply");
    let other_down = format!("/ota/device/upgrade/{PK}/pump-8");
    // A mixed SUBSCRIBE: the allowed filters reach the broker, the SUBACK answers all four.
    let ok = SubscribeReasonCode::Success(QoS::AtLeastOnce);
    assert_eq!(
        device
            .subscribe(&[&own_down, "#", &own_reply, &other_down])
            .await,
        [
            ok,
            SubscribeReasonCode::Failure,
            ok,
            SubscribeReasonCode::Failure
        ]
    );
    // Refused filters alone: answered by the gate.
    assert_eq!(
        device.subscribe(&["/ota/device/upgrade/+/+"]).await,
        [SubscribeReasonCode::Failure]
    );

    // Publishes refused at each QoS; the connection keeps working.
    let other_up = format!("/ota/device/inform/{PK}/pump-8");
    device
        .publish(&other_up, QoS::AtMostOnce, "as-pump-8")
        .await;
    device
        .publish(&other_down, QoS::AtLeastOnce, "fake-notice")
        .await;
    device
        .expect("PubAck of the refused QoS 1", |p| {
            matches!(p, Packet::PubAck(_)).then_some(())
        })
        .await;
    device
        .publish(&own_down, QoS::ExactlyOnce, "self-notice")
        .await;
    device
        .expect("PubComp of the refused QoS 2", |p| {
            matches!(p, Packet::PubComp(_)).then_some(())
        })
        .await;
    let own_up = format!("/ota/device/inform/{PK}/pump-7");
    device.publish(&own_up, QoS::AtLeastOnce, "allowed").await;
    let got = console.messages_until("allowed").await;
    let topics: Vec<_> = got.iter().map(|p| p.topic.as_str()).collect();
    assert_eq!(
        topics,
        [own_up.as_str()],
        "only the allowed publish arrives"
    );

    // The console may publish downlink; the device gets its notice.
    console.publish(&own_down, QoS::AtLeastOnce, "notice").await;
    let got = device.messages_until("notice").await;
    assert_eq!(
        got.last().map(|p| p.topic.as_str()),
        Some(own_down.as_str())
    );

    let got = wait_refusals(&mut events, 6).await;
    let attempts: Vec<_> = got.iter().map(|r| r.attempt.clone()).collect();
    assert_eq!(
        attempts,
        [
            Attempt::Subscribe { filter: "#".into() },
            Attempt::Subscribe {
                filter: other_down.clone()
            },
            Attempt::Subscribe {
                filter: "/ota/device/upgrade/+/+".into()
            },
            Attempt::Publish { topic: other_up },
            Attempt::Publish {
                topic: other_down.clone()
            },
            Attempt::Publish { topic: own_down },
        ]
    );
    for r in &got {
        assert_eq!(r.identity.as_deref(), Some("aliyun:a1TestPk01/pump-7"));
        assert_eq!(r.client_id, cid);
        assert!(!r.reason.is_empty());
    }
    assert!(got[0].reason.contains("wildcards"), "{}", got[0].reason);
    assert!(
        got[1].reason.contains("another device"),
        "{}",
        got[1].reason
    );
    assert!(got[4].reason.contains("downlink"), "{}", got[4].reason);
    assert!(refusals(&mut events).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_will_on_a_forbidden_topic_is_refused() {
    let site = secure_site();
    let mut events = site.broker.events();
    let mut login = Login::new("dock", Some(("dock-1", "pw-dock")));
    login.will = Some(LastWill::new(
        "thing/product/DOCK1/services",
        "gone",
        QoS::AtMostOnce,
        false,
    ));
    let mut c = client(site.broker.local_addr(), login);
    assert_eq!(c.refused().await, ConnectReturnCode::NotAuthorized);
    let got = wait_refusals(&mut events, 1).await;
    assert_eq!(
        got[0].attempt,
        Attempt::Will {
            topic: "thing/product/DOCK1/services".into()
        }
    );
    assert_eq!(got[0].identity.as_deref(), Some("dji:DOCK1"));
    // Its own uplink is a fine Will.
    let mut login = Login::new("dock", Some(("dock-1", "pw-dock")));
    login.will = Some(LastWill::new(
        "sys/product/DOCK1/status",
        "gone",
        QoS::AtMostOnce,
        false,
    ));
    client(site.broker.local_addr(), login).connected().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_using_the_consoles_client_id_does_not_take_its_session() {
    let site = secure_site();
    let addr = site.broker.local_addr();
    let creds = (
        site.console.username.as_str(),
        site.console.password.as_str(),
    );
    let mut login = Login::new("ota-console-main", Some(creds));
    login.clean = false;
    let mut console = client(addr, login);
    console.connected().await;
    console.subscribe(&["#"]).await;

    let mut login = Login::new("ota-console-main", Some(("dock-1", "pw-dock")));
    login.clean = false;
    let mut intruder = client(addr, login);
    intruder.connected().await;
    // Without namespaces rumqttd would have closed the console's connection for the newcomer.
    intruder
        .publish("sys/product/DOCK1/status", QoS::AtLeastOnce, "still-here")
        .await;
    let got = console.messages_until("still-here").await;
    assert_eq!(got.len(), 1);
    // The intruder did not get the console's subscription either.
    console
        .publish("thing/product/DOCK1/services", QoS::AtLeastOnce, "to-dock")
        .await;
    console.messages_until("to-dock").await;
    assert!(
        timeout(Duration::from_millis(300), intruder.seen.recv())
            .await
            .map_or(true, |seen| !matches!(
                seen,
                Some(Seen::Packet(Packet::Publish(_)))
            )),
        "the intruder received the console's messages"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_added_to_the_file_while_running_is_accepted() {
    let site = secure_site();
    let addr = site.broker.local_addr();
    let mut c = client(addr, Login::new("n1", Some(("newbie", "pw-new"))));
    assert_eq!(c.refused().await, ConnectReturnCode::BadUserNamePassword);
    std::fs::write(
        site.data.join(USERS_FILE),
        format!("{USERS}newbie pw-new fogcloud:a1Fog/dev-9\n"),
    )
    .unwrap();
    let mut c = client(addr, Login::new("n1", Some(("newbie", "pw-new"))));
    c.connected().await;
    assert_eq!(
        c.subscribe(&["fogcloud/a1Fog/dev-9/thing/down/ota"]).await,
        [SubscribeReasonCode::Success(QoS::AtLeastOnce)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_wrong_passwords_are_throttled() {
    let site = secure_site();
    // One minute: the test cannot outlast the block on a slow machine.
    site.broker.set_backoff(BackoffPolicy {
        free_failures: 3,
        first_block: Duration::from_secs(60),
        // The test's clients are on loopback, which a real broker never holds back.
        exempt_loopback: false,
        ..BackoffPolicy::default()
    });
    let mut events = site.broker.events();
    let addr = site.broker.local_addr();
    for i in 0..4 {
        let mut c = client(addr, Login::new("g", Some(("dock-1", "guess"))));
        assert_eq!(
            c.refused().await,
            ConnectReturnCode::BadUserNamePassword,
            "guess {i}"
        );
    }
    // Now even the right password waits.
    let mut c = client(addr, Login::new("g", Some(("dock-1", "pw-dock"))));
    assert_eq!(c.refused().await, ConnectReturnCode::NotAuthorized);
    let got = wait_refusals(&mut events, 5).await;
    assert!(
        got[4].reason.contains("too many refused logins"),
        "{}",
        got[4].reason
    );
    assert!(
        got[3].reason.contains("wrong password"),
        "{}",
        got[3].reason
    );
}

fn connect_frame(client_id: &str, user: &str, password: &str) -> Vec<u8> {
    let mut connect = rumqttc::Connect::new(client_id);
    connect.keep_alive = 30;
    connect.set_login(user, password);
    let mut buf = bytes::BytesMut::new();
    connect.write(&mut buf).unwrap();
    buf.to_vec()
}

fn publish_frame(topic: &str, qos: QoS, pkid: u16, payload: &[u8]) -> Vec<u8> {
    let mut publish = rumqttc::Publish::new(topic, qos, payload.to_vec());
    publish.pkid = pkid;
    let mut buf = bytes::BytesMut::new();
    publish.write(&mut buf).unwrap();
    buf.to_vec()
}

/// The device that reports and reboots: CONNECT and a QoS 1 PUBLISH in one write, then the
/// socket is closed without reading anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_qos1_publish_sent_right_before_closing_is_delivered() {
    let site = secure_site();
    let mut console = console(&site, "ota-console-test").await;
    console.subscribe(&["#"]).await;
    let addr = site.broker.local_addr();
    for i in 0..20 {
        let payload = format!("reboot-{i}");
        let mut bytes = connect_frame("dock", "dock-1", "pw-dock");
        bytes.extend(publish_frame(
            "sys/product/DOCK1/status",
            QoS::AtLeastOnce,
            1,
            payload.as_bytes(),
        ));
        let payload_clone = payload.clone();
        tokio::task::spawn_blocking(move || {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(&bytes).unwrap();
            drop(s);
            payload_clone
        })
        .await
        .unwrap();
        console.messages_until(&payload).await;
    }
}

/// Reads until the gate closes the socket; `true` when it did within the wait.
fn closed_by_gate(stream: &mut TcpStream) -> bool {
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut sink = [0u8; 4096];
    loop {
        match stream.read(&mut sink) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_bytes_are_closed_and_the_gate_serves_others() {
    let site = secure_site();
    let addr = site.broker.local_addr();
    let hostile: Vec<(&str, Vec<u8>)> = vec![
        (
            "HTTP request",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ),
        ("PINGREQ first", vec![0xC0, 0x00]),
        (
            "CONNECT of 268 MB",
            vec![0x10, 0xFF, 0xFF, 0xFF, 0x7F, 0, 4],
        ),
        (
            "five length bytes",
            vec![0x10, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F],
        ),
        ("truncated CONNECT body", vec![0x10, 0x03, 0x00, 0x04, b'M']),
        ("MQTT 5 CONNECT", {
            let mut f = connect_frame("x", "dock-1", "pw-dock");
            f[8] = 5;
            f
        }),
        ("oversized PUBLISH after CONNECT", {
            let mut f = connect_frame("x", "dock-1", "pw-dock");
            f.extend([0x30, 0xFF, 0xFF, 0xFF, 0x7F]);
            f
        }),
        ("second CONNECT", {
            let mut f = connect_frame("x", "dock-1", "pw-dock");
            f.extend(connect_frame("x", "dock-1", "pw-dock"));
            f
        }),
    ];
    for (what, bytes) in hostile {
        let closed = tokio::task::spawn_blocking(move || {
            let mut s = TcpStream::connect(addr).unwrap();
            // The gate may close before reading everything; a failed write is fine.
            let _ = s.write_all(&bytes);
            closed_by_gate(&mut s)
        })
        .await
        .unwrap();
        assert!(closed, "{what}: not closed");
    }
    // Still serving.
    let mut console = console(&site, "ota-console-test").await;
    console.subscribe(&["#"]).await;
    let mut dock = client(addr, Login::new("dock", Some(("dock-1", "pw-dock"))));
    dock.connected().await;
    dock.publish("sys/product/DOCK1/status", QoS::AtLeastOnce, "alive")
        .await;
    console.messages_until("alive").await;
    // The CONNECTs that never passed are in the refusals.
    assert!(
        site.broker.refusal_count() >= 5,
        "{}",
        site.broker.refusal_count()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_open_gate_lets_anyone_in_and_refuses_nothing() {
    let broker = EmbeddedBroker::start(BrokerSettings::open("127.0.0.1:0".parse().unwrap()))
        .expect("open broker starts");
    assert!(broker.is_open());
    let addr = broker.local_addr();
    let mut spy = client(addr, Login::new("spy", Some(("made-up", "pw"))));
    spy.connected().await;
    assert_eq!(
        spy.subscribe(&["#"]).await,
        [SubscribeReasonCode::Success(QoS::AtLeastOnce)]
    );
    let mut anon = client(addr, Login::new("anon", None));
    anon.connected().await;
    anon.publish("/ota/device/upgrade/a1Victim/pump-1", QoS::AtLeastOnce, "x")
        .await;
    spy.messages_until("x").await;
    assert_eq!(broker.refusal_count(), 0);
}

/// rumqttd panics on a topic whose first character is multi-byte; the open gate must not let
/// one client take the broker down for everyone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_open_gate_closes_a_client_whose_topic_would_crash_the_broker() {
    let broker = EmbeddedBroker::start(BrokerSettings::open("127.0.0.1:0".parse().unwrap()))
        .expect("open broker starts");
    let addr = broker.local_addr();
    let mut spy = client(addr, Login::new("spy", None));
    spy.connected().await;
    spy.subscribe(&["#"]).await;
    for (i, topic) in ["é/x", "设备/状态"].into_iter().enumerate() {
        let mut bytes = connect_frame(&format!("hostile-{i}"), "u", "p");
        bytes.extend(publish_frame(topic, QoS::AtLeastOnce, 1, b"boom"));
        let closed = tokio::task::spawn_blocking(move || {
            let mut s = TcpStream::connect(addr).unwrap();
            let _ = s.write_all(&bytes);
            closed_by_gate(&mut s)
        })
        .await
        .unwrap();
        assert!(closed, "{topic}: not closed");
    }
    // The broker still routes for everyone else, new clients included.
    let mut anon = client(addr, Login::new("anon", None));
    anon.connected().await;
    anon.publish("a/é", QoS::AtLeastOnce, "still-up").await;
    spy.messages_until("still-up").await;
}

#[test]
fn a_broken_credentials_file_stops_the_start_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(USERS_FILE), "lonely-user\n").unwrap();
    let err = EmbeddedBroker::start(BrokerSettings::secure(
        "127.0.0.1:0".parse().unwrap(),
        dir.path().to_path_buf(),
        registry::topic_routes(),
    ))
    .unwrap_err();
    assert!(err.to_string().contains(USERS_FILE), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tls_listener_applies_the_same_rules() {
    use rustls::pki_types::PrivateKeyDer;
    use std::sync::Arc;
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(signing_key.serialize_der().into()),
        )
        .unwrap();
    let site = secure_site_with(Some(BrokerTls {
        listen: "127.0.0.1:0".parse().unwrap(),
        server: Arc::new(server),
    }));
    let tls_addr = site.broker.tls_addr().expect("a TLS listener");
    assert_ne!(tls_addr, site.broker.local_addr());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.der().clone()).unwrap();
    let client_config = Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );

    let mut console = console(&site, "ota-console-test").await;
    console.subscribe(&["#"]).await;
    let mut login = Login::new("g", Some(("dock-1", "guess")));
    login.tls = Some(client_config.clone());
    assert_eq!(
        client(tls_addr, login).refused().await,
        ConnectReturnCode::BadUserNamePassword
    );
    let mut login = Login::new("dock", Some(("dock-1", "pw-dock")));
    login.tls = Some(client_config);
    let mut dock = client(tls_addr, login);
    dock.connected().await;
    dock.publish("thing/product/DOCK2/events", QoS::AtLeastOnce, "not-mine")
        .await;
    dock.publish("sys/product/DOCK1/status", QoS::AtLeastOnce, "over-tls")
        .await;
    let got = console.messages_until("over-tls").await;
    assert_eq!(got.len(), 1, "only the allowed publish arrives");
    assert_eq!(site.broker.refusal_count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dock_publishes_for_its_drone_only_once_the_broker_knows_the_pair() {
    let site = secure_site();
    let mut console = console(&site, "ota-console-test").await;
    console.subscribe(&["#"]).await;
    let mut dock = client(
        site.broker.local_addr(),
        Login::new("dock", Some(("dock-1", "pw-dock"))),
    );
    dock.connected().await;
    let drone_state = "thing/product/DRONE1/state";
    dock.publish(drone_state, QoS::AtLeastOnce, "unknown-drone")
        .await;
    dock.publish("sys/product/DOCK1/status", QoS::AtLeastOnce, "marker-1")
        .await;
    let got = console.messages_until("marker-1").await;
    assert_eq!(got.len(), 1, "a drone the broker does not know is refused");

    let drone = "dji:DRONE1".parse().unwrap();
    let dock_id = "dji:DOCK1".parse().unwrap();
    site.broker.set_gateway(&drone, Some(&dock_id));
    dock.publish(drone_state, QoS::AtLeastOnce, "known-drone")
        .await;
    let got = console.messages_until("known-drone").await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].topic, drone_state);

    // Another dock claiming the placed drone (a rogue topology report) changes nothing.
    let rogue_dock = "dji:DOCK2".parse().unwrap();
    site.broker.set_gateway(&drone, Some(&rogue_dock));
    dock.publish(drone_state, QoS::AtLeastOnce, "still-its-dock")
        .await;
    let got = console.messages_until("still-its-dock").await;
    assert_eq!(got.len(), 1, "the first dock keeps its drone");

    site.broker.set_gateway(&drone, None);
    dock.publish(drone_state, QoS::AtLeastOnce, "forgotten-drone")
        .await;
    dock.publish("sys/product/DOCK1/status", QoS::AtLeastOnce, "marker-2")
        .await;
    let got = console.messages_until("marker-2").await;
    assert_eq!(got.len(), 1, "the pair was forgotten");
    assert_eq!(site.broker.refusal_count(), 2);
}

/// A socket that never sends a CONNECT, or stops in the middle of one, is closed after the
/// CONNECT timeout (10 s) with a refusal that says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_or_stalled_connection_is_closed_after_the_connect_timeout() {
    let site = secure_site();
    let mut events = site.broker.events();
    let addr = site.broker.local_addr();
    let sockets = [
        Vec::new(),
        connect_frame("x", "dock-1", "pw-dock")[..6].to_vec(),
    ];
    let started = std::time::Instant::now();
    let waits: Vec<_> = sockets
        .into_iter()
        .map(|bytes| {
            tokio::task::spawn_blocking(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                s.write_all(&bytes).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                let mut sink = [0u8; 16];
                matches!(s.read(&mut sink), Ok(0))
            })
        })
        .collect();
    for wait in waits {
        assert!(wait.await.unwrap(), "not closed by the gate");
    }
    assert!(
        started.elapsed() >= Duration::from_secs(9),
        "closed too early"
    );
    let got = wait_refusals(&mut events, 2).await;
    for r in got {
        assert!(r.reason.contains("no CONNECT within"), "{}", r.reason);
    }
}

/// Mutual TLS: a client certificate the site CA issued for a device (or a user of
/// `mqtt-users.txt`) logs the client in as that identity without a password, with exactly its
/// rights; a certificate of another CA never gets through the handshake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_of_the_site_ca_is_the_devices_login() {
    use ota_console::access::site_ca::SiteCa;
    use ota_console::access::tls::{ClientCerts, server_config};
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
    use std::sync::Arc;

    let ca_dir = tempfile::tempdir().unwrap();
    let ca = SiteCa::load_or_create(ca_dir.path()).unwrap();
    let identity = ca.issue_server(&["127.0.0.1".to_owned()]).unwrap();
    let server = server_config(&identity, ClientCerts::Optional(vec![ca.certificate()])).unwrap();
    let site = secure_site_with(Some(BrokerTls {
        listen: "127.0.0.1:0".parse().unwrap(),
        server,
    }));
    let tls_addr = site.broker.tls_addr().unwrap();
    let mut events = site.broker.events();
    let client_tls = |cert_pem: &str, key_pem: &str| {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.certificate()).unwrap();
        let chain = vec![CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap()];
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
        Arc::new(
            rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::aws_lc_rs::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .unwrap(),
        )
    };

    let mut console = console(&site, "ota-console-test").await;
    console.subscribe(&["#"]).await;
    // A dock by its device id, no password.
    let (cert, key) = ca.issue_client("dji:DOCK1").unwrap();
    let mut login = Login::new("dock-by-cert", None);
    login.tls = Some(client_tls(&cert, &key));
    let mut dock = client(tls_addr, login);
    dock.connected().await;
    assert_eq!(
        dock.subscribe(&[
            "thing/product/DOCK1/services",
            "thing/product/DOCK2/services"
        ])
        .await,
        vec![
            SubscribeReasonCode::Success(QoS::AtLeastOnce),
            SubscribeReasonCode::Failure
        ]
    );
    dock.publish("thing/product/DOCK2/events", QoS::AtLeastOnce, "as-dock2")
        .await;
    dock.publish("sys/product/DOCK1/status", QoS::AtLeastOnce, "as-dock1")
        .await;
    let got = console.messages_until("as-dock1").await;
    assert_eq!(got.len(), 1, "only its own topic");
    let refused = wait_refusals(&mut events, 2).await;
    assert!(
        refused
            .iter()
            .all(|r| r.identity.as_deref() == Some("dji:DOCK1")),
        "{refused:?}"
    );
    // A site user by its user name.
    let (cert, key) = ca.issue_client("lab").unwrap();
    let mut login = Login::new("lab-by-cert", None);
    login.tls = Some(client_tls(&cert, &key));
    let mut lab = client(tls_addr, login);
    lab.connected().await;
    // Without a certificate and without a password: refused.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.certificate()).unwrap();
    let mut login = Login::new("nobody", None);
    login.tls = Some(Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth(),
    ));
    assert_eq!(
        client(tls_addr, login).refused().await,
        ConnectReturnCode::NotAuthorized
    );
    // A certificate from another CA, for the same name: the handshake fails.
    let other_dir = tempfile::tempdir().unwrap();
    let other = SiteCa::load_or_create(other_dir.path()).unwrap();
    let (cert, key) = other.issue_client("dji:DOCK1").unwrap();
    let mut login = Login::new("forged", None);
    login.tls = Some(client_tls(&cert, &key));
    let mut forged = client(tls_addr, login);
    forged.closed().await;
}

/// Before anyone knows who a client is, it cannot make the gate hold much: a CONNECT that
/// declares a megabyte is refused from its header, at once, without waiting for the bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_connect_is_refused_from_its_header() {
    let site = secure_site();
    let mut events = site.broker.events();
    let addr = site.broker.local_addr();
    let refused_at = tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(addr).unwrap();
        // CONNECT with a remaining length of 1 MiB (varint 0x80 0x80 0x40), then nothing.
        stream.write_all(&[0x10, 0x80, 0x80, 0x40]).unwrap();
        let started = std::time::Instant::now();
        assert!(closed_by_gate(&mut stream));
        started.elapsed()
    })
    .await
    .unwrap();
    assert!(
        refused_at < Duration::from_secs(5),
        "closed after {refused_at:?}: it waited for the bytes (the CONNECT timeout is 10 s)"
    );
    let refusal = &wait_refusals(&mut events, 1).await[0];
    assert!(refusal.reason.contains("not MQTT"), "{}", refusal.reason);
}
