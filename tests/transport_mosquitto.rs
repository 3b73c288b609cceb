//! The MQTT link against a real Mosquitto (Debian package `mosquitto`): restart survival, TLS
//! (server-only and mutual) and password authentication. Each test runs its own mosquitto on a
//! free 127.0.0.1 port with a config in a temp dir. Without mosquitto installed these tests FAIL.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::mosquitto::{Mosquitto, free_port};
use ota_console::protocol::Outbound;
use ota_console::transport::mqtt::{BrokerUrl, Inbound, LinkOptions, LinkState, MqttLink};
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
