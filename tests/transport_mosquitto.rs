//! The MQTT link against a real Mosquitto (Debian package `mosquitto`): restart survival, TLS
//! (server-only and mutual), password authentication, and the persistent session (what is
//! published to the console while it is away arrives when it is back; a lost session is
//! reported and costs no queued publish). Each test runs its own mosquitto on a
//! free 127.0.0.1 port with a config in a temp dir. Without mosquitto installed these tests FAIL.

// Test code throughout: clippy's allow-unwrap-in-tests (clippy.toml) goes by `cfg(test)`.
#![cfg(test)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ota_console::protocol::Outbound;
use ota_console::testing::mosquitto::{Mosquitto, free_port};
use ota_console::transport::mqtt::{
    BrokerUrl, Inbound, LinkOptions, LinkState, MqttLink, SessionNews,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(15);

fn options(url: &str, subscriptions: &[&str]) -> LinkOptions {
    let mut o = LinkOptions::new(url.parse::<BrokerUrl>().unwrap());
    o.subscriptions = subscriptions.iter().map(|s| s.to_string()).collect();
    o.max_queued = 1000;
    o
}

async fn wait_state(
    state: &mut watch::Receiver<LinkState>,
    what: &str,
    accept: impl FnMut(&LinkState) -> bool,
) -> LinkState {
    let current = state.borrow().clone();
    timeout(WAIT, state.wait_for(accept))
        .await
        .unwrap_or_else(|_| panic!("link did not reach {what} within {WAIT:?}; was {current:?}"))
        .expect("link alive")
        .clone()
}

fn outbound(topic: &str, payload: &str) -> Outbound {
    Outbound {
        topic: topic.to_owned(),
        payload: payload.as_bytes().to_vec(),
    }
}

/// Publishes probes on `topic` through `link` until one arrives on `rx`.
async fn wait_subscribed(link: &MqttLink, rx: &mut mpsc::Receiver<Inbound>, topic: &str) {
    timeout(WAIT, async {
        loop {
            link.publish(outbound(topic, "probe")).unwrap();
            if let Ok(Some(_)) = timeout(Duration::from_millis(200), rx.recv()).await {
                return;
            }
        }
    })
    .await
    .expect("subscription active");
    while rx.try_recv().is_ok() {}
}

/// Receives until `want` distinct payloads with `prefix` have arrived (duplicates are fine:
/// QoS 1 is at least once).
async fn collect(rx: &mut mpsc::Receiver<Inbound>, prefix: &str, want: usize) -> BTreeSet<String> {
    collect_matching(rx, |t| t.starts_with(prefix), prefix, want).await
}

async fn collect_matching(
    rx: &mut mpsc::Receiver<Inbound>,
    accept: impl Fn(&str) -> bool,
    prefix: &str,
    want: usize,
) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let result = timeout(WAIT, async {
        while seen.len() < want {
            let msg = rx.recv().await.expect("inbound open");
            let text = String::from_utf8_lossy(&msg.payload).into_owned();
            if accept(&text) {
                seen.insert(text);
            }
        }
    })
    .await;
    assert!(
        result.is_ok(),
        "only {} of {want} `{prefix}` messages arrived",
        seen.len()
    );
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_survives_a_broker_kill_and_delivers_what_was_queued() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut broker = Mosquitto::start(dir.path(), port, "allow_anonymous true");
    let url = format!("mqtt://127.0.0.1:{port}");
    let (link, mut inbox) = MqttLink::start(options(&url, &["t/#"])).unwrap();
    let mut state = link.state();
    wait_state(&mut state, "Connected", |s| *s == LinkState::Connected).await;
    wait_subscribed(&link, &mut inbox, "t/probe").await;

    for i in 0..50 {
        link.publish(outbound("t/before", &format!("before-{i}")))
            .unwrap();
    }
    collect(&mut inbox, "before-", 50).await;

    // A burst to a frozen broker: it is in flight (unacknowledged) or still queued when the
    // connection dies, exactly what rumqttc discards on a clean-session reconnect. The broker
    // never processed any of it, so every message must arrive after the restart.
    broker.freeze();
    const BURST: usize = 500;
    for i in 0..BURST {
        link.publish(outbound("t/burst", &format!("burst-{i}")))
            .unwrap();
    }
    broker.kill();
    let down = wait_state(&mut state, "Reconnecting", |s| {
        matches!(s, LinkState::Reconnecting { .. })
    })
    .await;
    let LinkState::Reconnecting {
        reason, attempt, ..
    } = down
    else {
        unreachable!()
    };
    // Usually 1; a slow test thread may first look after the next 200 ms retry.
    assert!(attempt >= 1);
    assert!(!reason.is_empty());

    const QUEUED: usize = 300;
    for i in 0..QUEUED {
        link.publish(outbound("t/down", &format!("down-{i}")))
            .expect("queued while the broker is down");
    }
    broker.restart();
    wait_state(&mut state, "Connected again", |s| {
        *s == LinkState::Connected
    })
    .await;

    // The link's own subscription is renewed before its queued publishes go out, so it gets
    // every queued message back: proof of both resubscription and no loss. Burst and down
    // messages interleave, so both are collected in one pass.
    let got = collect_matching(
        &mut inbox,
        |t| t.starts_with("burst-") || t.starts_with("down-"),
        "burst-/down-",
        QUEUED + BURST,
    )
    .await;
    let burst = got.iter().filter(|t| t.starts_with("burst-")).count();
    let down = got.iter().filter(|t| t.starts_with("down-")).count();
    assert_eq!((burst, down), (BURST, QUEUED));

    // A message from another client after the restart arrives too.
    let (other, _unused) = MqttLink::start(options(&url, &[])).unwrap();
    wait_state(&mut other.state(), "other Connected", |s| {
        *s == LinkState::Connected
    })
    .await;
    other.publish(outbound("t/after", "after-restart")).unwrap();
    collect(&mut inbox, "after-restart", 1).await;

    let stats = link.stats();
    assert_eq!(stats.reconnects, 1);
    assert_eq!(stats.dropped, 0);
    assert!(stats.published >= stats.queued, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_auth_wrong_is_a_readable_failure_right_connects() {
    let dir = tempfile::tempdir().unwrap();
    let passwd = dir.path().join("passwd");
    let status = Command::new("mosquitto_passwd")
        .args(["-b", "-c"])
        .arg(&passwd)
        .args(["console", "s3cret-pass"])
        .status()
        .expect("mosquitto_passwd runs (package mosquitto)");
    assert!(status.success());
    let port = free_port();
    let _broker = Mosquitto::start(
        dir.path(),
        port,
        &format!("allow_anonymous false\npassword_file {}", passwd.display()),
    );
    let url = format!("mqtt://127.0.0.1:{port}");

    let mut wrong = options(&url, &[]);
    wrong.username = Some("console".into());
    wrong.password = Some("not-the-password".into());
    let (link, _rx) = MqttLink::start(wrong).unwrap();
    let failed = wait_state(&mut link.state(), "Failed", |s| {
        matches!(s, LinkState::Failed { .. })
    })
    .await;
    let LinkState::Failed { reason } = failed else {
        unreachable!()
    };
    assert!(reason.starts_with("broker refused: "), "{reason}");
    // Mosquitto refuses with "not authorized" (code 5) rather than code 4.
    assert!(
        reason.contains("not authorized") && reason.contains("password"),
        "{reason}"
    );
    assert!(!reason.contains("not-the-password"));
    assert!(!format!("{link:?}").contains("not-the-password"));

    let mut anonymous = options(&url, &[]);
    anonymous.username = None;
    let (link, _rx) = MqttLink::start(anonymous).unwrap();
    wait_state(&mut link.state(), "Failed (anonymous)", |s| {
        matches!(s, LinkState::Failed { .. })
    })
    .await;

    let mut right = options(&url, &["auth/#"]);
    right.username = Some("console".into());
    right.password = Some("s3cret-pass".into());
    let (link, mut rx) = MqttLink::start(right).unwrap();
    wait_state(&mut link.state(), "Connected", |s| {
        *s == LinkState::Connected
    })
    .await;
    wait_subscribed(&link, &mut rx, "auth/probe").await;
}

/// Test PKI: a CA, a server certificate for 127.0.0.1/localhost and a client certificate.
struct Pki {
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

fn make_pki(dir: &Path) -> Pki {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair, KeyUsagePurpose,
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "ota-console test CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();

    let leaf = |sans: Vec<String>, cn: &str, usage: ExtendedKeyUsagePurpose| {
        let mut params = CertificateParams::new(sans).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &ca).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (server_pem, server_key_pem) = leaf(
        vec!["127.0.0.1".into(), "localhost".into()],
        "localhost",
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let (client_pem, client_key_pem) =
        leaf(vec![], "ota-console", ExtendedKeyUsagePurpose::ClientAuth);

    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    Pki {
        ca: write("ca.pem", &ca.pem()),
        server_cert: write("server.pem", &server_pem),
        server_key: write("server.key", &server_key_pem),
        client_cert: write("client.pem", &client_pem),
        client_key: write("client.key", &client_key_pem),
    }
}

fn tls_listener_conf(pki: &Pki, require_client_cert: bool) -> String {
    format!(
        "allow_anonymous true\ncafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate {}",
        pki.ca.display(),
        pki.server_cert.display(),
        pki.server_key.display(),
        require_client_cert
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_private_ca_connects_and_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path());
    let port = free_port();
    let _broker = Mosquitto::start(dir.path(), port, &tls_listener_conf(&pki, false));

    let mut opts = options(&format!("mqtts://127.0.0.1:{port}"), &["tls/#"]);
    opts.ca_file = Some(pki.ca.clone());
    let (link, mut rx) = MqttLink::start(opts).unwrap();
    wait_state(&mut link.state(), "Connected over TLS", |s| {
        *s == LinkState::Connected
    })
    .await;
    wait_subscribed(&link, &mut rx, "tls/probe").await;

    // The same broker through "localhost" (DNS SAN) works too.
    let mut by_name = options(&format!("mqtts://localhost:{port}"), &[]);
    by_name.ca_file = Some(pki.ca.clone());
    let (link, _rx) = MqttLink::start(by_name).unwrap();
    wait_state(&mut link.state(), "Connected via localhost", |s| {
        *s == LinkState::Connected
    })
    .await;

    // Without our CA the server is not trusted: the link keeps retrying and says why.
    let mut untrusted = options(&format!("mqtts://127.0.0.1:{port}"), &[]);
    untrusted.ca_file = Some(pki.server_cert.clone());
    let (link, _rx) = MqttLink::start(untrusted).unwrap();
    let state = wait_state(&mut link.state(), "Reconnecting (untrusted)", |s| {
        matches!(s, LinkState::Reconnecting { .. })
    })
    .await;
    let LinkState::Reconnecting { reason, .. } = state else {
        unreachable!()
    };
    assert!(reason.contains("TLS"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_needs_the_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path());
    let port = free_port();
    let _broker = Mosquitto::start(dir.path(), port, &tls_listener_conf(&pki, true));
    let url = format!("mqtts://127.0.0.1:{port}");

    let mut with_cert = options(&url, &[]);
    with_cert.ca_file = Some(pki.ca.clone());
    with_cert.client_cert = Some(pki.client_cert.clone());
    with_cert.client_key = Some(pki.client_key.clone());
    let (link, _rx) = MqttLink::start(with_cert).unwrap();
    wait_state(&mut link.state(), "Connected with client cert", |s| {
        *s == LinkState::Connected
    })
    .await;

    let mut without = options(&url, &[]);
    without.ca_file = Some(pki.ca.clone());
    let (link, _rx) = MqttLink::start(without).unwrap();
    wait_state(&mut link.state(), "Reconnecting without client cert", |s| {
        matches!(s, LinkState::Reconnecting { .. })
    })
    .await;
}

/// Options for a console-like link: its own client id, so a persistent session.
fn session_options(url: &str, id: &str, subscriptions: &[&str]) -> LinkOptions {
    let mut o = options(url, subscriptions);
    o.client_id = Some(id.to_owned());
    o
}

/// Waits until the link has heard `connacks` ConnAcks and returns what the last one said.
async fn wait_connacks(link: &MqttLink, connacks: u64) -> SessionNews {
    let mut news = link.session();
    let got = timeout(WAIT, news.wait_for(|n| n.connacks >= connacks))
        .await
        .unwrap_or_else(|_| panic!("no ConnAck #{connacks} within {WAIT:?}"))
        .expect("link alive");
    *got
}

/// Publishes `count` messages through `link` and waits until the broker acknowledged them all.
async fn publish_acked(link: &MqttLink, topic: &str, prefix: &str, count: usize) {
    let before = link.stats().published;
    for i in 0..count {
        link.publish(outbound(topic, &format!("{prefix}{i}")))
            .unwrap();
    }
    timeout(WAIT, async {
        while link.stats().published < before + count as u64 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the broker acknowledged every publish");
}

/// A TCP relay between the link and the broker that the test can cut: open connections die
/// (both sides see the socket close) and new ones are refused until it heals. The broker stays
/// up, so it sees the console go away exactly as when the console is starved or its network
/// drops.
struct Relay {
    port: u16,
    cut: Arc<AtomicBool>,
    /// While set, what the client sends is swallowed (counted in `swallowed`): its publishes
    /// stay in flight, never acknowledged, as with a broker that stopped reading.
    stall: Arc<AtomicBool>,
    swallowed: Arc<AtomicUsize>,
    open: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Relay {
    async fn start(upstream_port: u16) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let stall = Arc::new(AtomicBool::new(false));
        let swallowed = Arc::new(AtomicUsize::new(0));
        let open: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let (cut_flag, conns) = (cut.clone(), open.clone());
        let (stall_flag, swallow_count) = (stall.clone(), swallowed.clone());
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                if cut_flag.load(Ordering::SeqCst) {
                    continue; // dropped: the connection attempt fails
                }
                let (stall, swallowed) = (stall_flag.clone(), swallow_count.clone());
                let task = tokio::spawn(async move {
                    let Ok(upstream) =
                        tokio::net::TcpStream::connect(("127.0.0.1", upstream_port)).await
                    else {
                        return;
                    };
                    let (mut from_client, mut to_client) = inbound.into_split();
                    let (mut from_broker, mut to_broker) = upstream.into_split();
                    let up = async {
                        let mut buf = vec![0u8; 16 * 1024];
                        loop {
                            let n = match from_client.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => n,
                            };
                            if stall.load(Ordering::SeqCst) {
                                swallowed.fetch_add(n, Ordering::SeqCst);
                            } else if to_broker.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    };
                    let down = tokio::io::copy(&mut from_broker, &mut to_client);
                    tokio::select! {
                        () = up => {}
                        _ = down => {}
                    }
                });
                conns.lock().unwrap().push(task.abort_handle());
            }
        });
        Relay {
            port,
            cut,
            stall,
            swallowed,
            open,
        }
    }

    fn stall(&self) {
        self.stall.store(true, Ordering::SeqCst);
    }

    fn swallowed(&self) -> usize {
        self.swallowed.load(Ordering::SeqCst)
    }

    fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for task in self.open.lock().unwrap().drain(..) {
            task.abort();
        }
    }

    fn heal(&self) {
        self.stall.store(false, Ordering::SeqCst);
        self.cut.store(false, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_devices_publish_while_the_console_is_cut_off_arrives_after_it_reconnects() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let broker = Mosquitto::start(dir.path(), port, "allow_anonymous true");
    let relay = Relay::start(port).await;
    let (console, mut inbox) = MqttLink::start(session_options(
        &relay.url(),
        "ota-console-relayed",
        &["dev/#"],
    ))
    .unwrap();
    let mut state = console.state();
    wait_state(&mut state, "Connected", |s| *s == LinkState::Connected).await;
    wait_subscribed(&console, &mut inbox, "dev/probe").await;
    // A "device" straight on the broker, listening for what the console sends.
    let (device, mut device_inbox) = MqttLink::start(options(&broker.url(), &["cmd/#"])).unwrap();
    wait_state(&mut device.state(), "device Connected", |s| {
        *s == LinkState::Connected
    })
    .await;
    wait_subscribed(&device, &mut device_inbox, "cmd/probe").await;

    relay.cut();
    wait_state(&mut state, "Reconnecting", |s| {
        matches!(s, LinkState::Reconnecting { .. })
    })
    .await;
    // While the console is away: devices report (the broker acknowledged every one), and the
    // console queues notices.
    const AWAY: usize = 200;
    publish_acked(&device, "dev/report", "away-", AWAY).await;
    for i in 0..50 {
        console
            .publish(outbound("cmd/notice", &format!("notice-{i}")))
            .unwrap();
    }
    relay.heal();
    let news = wait_connacks(&console, 2).await;
    assert!(news.persistent && news.present, "{news:?}");
    assert_eq!(news.lost, 0);
    // Nobody re-subscribed or re-probed: the broker kept the session and its queue.
    collect(&mut inbox, "away-", AWAY).await;
    collect(&mut device_inbox, "notice-", 50).await;
    let stats = console.stats();
    assert_eq!(
        (stats.reconnects, stats.sessions_lost, stats.dropped),
        (1, 0, 0)
    );
    drop(broker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_console_with_the_same_client_id_gets_what_was_published_meanwhile() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let broker = Mosquitto::start(dir.path(), port, "allow_anonymous true");
    let (first, mut inbox) = MqttLink::start(session_options(
        &broker.url(),
        "ota-console-stable",
        &["dev/#"],
    ))
    .unwrap();
    wait_state(&mut first.state(), "Connected", |s| {
        *s == LinkState::Connected
    })
    .await;
    wait_subscribed(&first, &mut inbox, "dev/probe").await;
    assert!(!wait_connacks(&first, 1).await.present);
    first.shutdown();
    wait_state(&mut first.state(), "stopped", |s| {
        matches!(s, LinkState::Failed { .. })
    })
    .await;
    drop(inbox);

    let (device, _unused) = MqttLink::start(options(&broker.url(), &[])).unwrap();
    publish_acked(&device, "dev/report", "meanwhile-", 100).await;

    let (second, mut inbox) = MqttLink::start(session_options(
        &broker.url(),
        "ota-console-stable",
        &["dev/#"],
    ))
    .unwrap();
    let news = wait_connacks(&second, 1).await;
    assert!(news.present, "{news:?}");
    collect(&mut inbox, "meanwhile-", 100).await;

    // Under a fresh id (what the console did before: a random id, clean session) nothing of
    // it would have come.
    second.shutdown();
    let (other, mut other_inbox) = MqttLink::start(session_options(
        &broker.url(),
        "ota-console-other",
        &["dev/#"],
    ))
    .unwrap();
    wait_state(&mut other.state(), "other Connected", |s| {
        *s == LinkState::Connected
    })
    .await;
    publish_acked(&device, "dev/report", "later-", 1).await;
    let first_seen = timeout(WAIT, other_inbox.recv()).await.unwrap().unwrap();
    assert_eq!(first_seen.payload.as_ref(), b"later-0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_lost_the_session_is_reported_and_nothing_queued_is_lost() {
    // `persistence false` and a kill: the restarted broker has no session for the link.
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut broker = Mosquitto::start(dir.path(), port, "allow_anonymous true");
    let url = format!("mqtt://127.0.0.1:{port}");
    let (link, mut inbox) =
        MqttLink::start(session_options(&url, "ota-console-lost", &["t/#"])).unwrap();
    let mut state = link.state();
    wait_state(&mut state, "Connected", |s| *s == LinkState::Connected).await;
    wait_subscribed(&link, &mut inbox, "t/probe").await;

    // In flight (unacknowledged) or queued when the connection dies: rumqttc would retransmit
    // them in a kept session and drops them when the session is gone; the link puts them back.
    broker.freeze();
    const BURST: usize = 500;
    for i in 0..BURST {
        link.publish(outbound("t/burst", &format!("burst-{i}")))
            .unwrap();
    }
    broker.kill();
    wait_state(&mut state, "Reconnecting", |s| {
        matches!(s, LinkState::Reconnecting { .. })
    })
    .await;
    for i in 0..100 {
        link.publish(outbound("t/down", &format!("down-{i}")))
            .unwrap();
    }
    broker.restart();
    let news = wait_connacks(&link, 2).await;
    assert!(!news.present, "{news:?}");
    assert_eq!(news.lost, 1, "{news:?}");
    assert_eq!(link.stats().sessions_lost, 1);
    wait_state(&mut state, "Connected again", |s| {
        *s == LinkState::Connected
    })
    .await;
    // Resubscribed, and every publish delivered.
    let got = collect_matching(
        &mut inbox,
        |t| t.starts_with("burst-") || t.starts_with("down-"),
        "burst-/down-",
        BURST + 100,
    )
    .await;
    assert_eq!(got.len(), BURST + 100);
    assert_eq!(link.stats().dropped, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_in_flight_at_a_cut_arrive_once_when_the_session_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let broker = Mosquitto::start(dir.path(), port, "allow_anonymous true");
    let relay = Relay::start(port).await;
    let (console, mut inbox) = MqttLink::start(session_options(
        &relay.url(),
        "ota-console-inflight",
        &["dev/#"],
    ))
    .unwrap();
    let mut state = console.state();
    wait_state(&mut state, "Connected", |s| *s == LinkState::Connected).await;
    wait_subscribed(&console, &mut inbox, "dev/probe").await;
    let (device, mut device_inbox) = MqttLink::start(options(&broker.url(), &["cmd/#"])).unwrap();
    wait_state(&mut device.state(), "device Connected", |s| {
        *s == LinkState::Connected
    })
    .await;
    wait_subscribed(&device, &mut device_inbox, "cmd/probe").await;

    // The broker stops hearing the console: its publishes go out and stay unacknowledged (the
    // in-flight window fills), the rest wait in its queue. Then the connection dies.
    relay.stall();
    const SENT: usize = 300;
    for i in 0..SENT {
        console
            .publish(outbound("cmd/notice", &format!("notice-{i:03}")))
            .unwrap();
    }
    // 100 in flight (the link's window) of at least 25 bytes each have left the console.
    timeout(WAIT, async {
        while relay.swallowed() < 100 * 25 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the in-flight window was written");
    relay.cut();
    wait_state(&mut state, "Reconnecting", |s| {
        matches!(s, LinkState::Reconnecting { .. })
    })
    .await;
    relay.heal();
    let news = wait_connacks(&console, 2).await;
    assert!(news.present, "{news:?}");
    // rumqttc retransmits the window under its packet ids, the link feeds the rest: each
    // notice arrives, none twice. A marker sent afterwards comes last (one session, in order),
    // so any duplicate would have arrived before it.
    console.publish(outbound("cmd/notice", "end")).unwrap();
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    timeout(WAIT, async {
        loop {
            let msg = device_inbox.recv().await.expect("inbound open");
            let text = String::from_utf8_lossy(&msg.payload).into_owned();
            if text == "end" {
                break;
            }
            *counts.entry(text).or_default() += 1;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("only {} notices arrived", counts.len()));
    assert_eq!(counts.len(), SENT, "every notice arrived");
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
    assert_eq!(console.stats().sessions_lost, 0);
}

/// A link with three publishing connections: Mosquitto sees the two more client ids, every
/// message arrives, each topic's messages in the order they were published (a topic always goes
/// on one connection), and the counters add up all three.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_spread_over_several_connections_keep_each_topics_order() {
    const TOPICS: usize = 30;
    const PER_TOPIC: usize = 20;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _broker = Mosquitto::start(dir.path(), port, "allow_anonymous true");
    let url = format!("mqtt://127.0.0.1:{port}");
    let (watcher, mut inbox) = MqttLink::start(options(&url, &["spread/#"])).unwrap();
    let mut console_opts = options(&url, &[]);
    console_opts.client_id = Some("spread-console".to_owned());
    console_opts.publish_connections = 3;
    let (console, _nothing) = MqttLink::start(console_opts).unwrap();
    wait_state(&mut watcher.state(), "Connected", |s| {
        *s == LinkState::Connected
    })
    .await;
    wait_state(&mut console.state(), "Connected", |s| {
        *s == LinkState::Connected
    })
    .await;
    wait_subscribed(&watcher, &mut inbox, "spread/probe").await;

    for n in 0..PER_TOPIC {
        for t in 0..TOPICS {
            console
                .publish(outbound(&format!("spread/{t}"), &format!("{t}:{n}")))
                .unwrap();
        }
    }
    let mut seen: Vec<Vec<usize>> = vec![Vec::new(); TOPICS];
    timeout(WAIT, async {
        while seen.iter().map(Vec::len).sum::<usize>() < TOPICS * PER_TOPIC {
            let msg = inbox.recv().await.expect("inbound open");
            let text = String::from_utf8_lossy(&msg.payload).into_owned();
            let Some((t, n)) = text.split_once(':') else {
                continue;
            };
            let (t, n): (usize, usize) = (t.parse().unwrap(), n.parse().unwrap());
            seen[t].push(n);
        }
    })
    .await
    .expect("every message arrives");
    for (t, order) in seen.iter().enumerate() {
        assert_eq!(
            *order,
            (0..PER_TOPIC).collect::<Vec<_>>(),
            "topic spread/{t}"
        );
    }
    timeout(WAIT, async {
        while console.stats().published < (TOPICS * PER_TOPIC) as u64 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the broker acknowledges every publish");
    assert_eq!(console.stats().queued, (TOPICS * PER_TOPIC) as u64);
    let log = std::fs::read_to_string(dir.path().join("mosquitto.log")).unwrap();
    for id in ["spread-console ", "spread-console-1 ", "spread-console-2 "] {
        assert!(
            log.contains(&format!(" as {id}")),
            "no connection as {id:?} in:\n{log}"
        );
    }
}
