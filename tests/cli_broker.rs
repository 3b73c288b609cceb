//! `ota-console broker` as an operator runs it at a site: secure by default (the data
//! directory's credentials, re-read while it runs), devices provisioned with `sim --provision`
//! and `broker-config`, MQTT over TLS with the site CA, client certificates it issues, and
//! `--open-broker` saying loudly what it is.

// Test code throughout: clippy's allow-unwrap-in-tests (clippy.toml) goes by `cfg(test)`.
#![cfg(test)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use ota_console::access::credentials::ConsoleCredentials;
use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, MqttOptions, Packet, QoS, Transport,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

const WAIT: Duration = Duration::from_secs(20);

/// A child process killed when dropped, with its stdout and stderr lines on channels.
struct Process {
    child: Child,
    stdout: mpsc::Receiver<String>,
    stderr: mpsc::Receiver<String>,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn lines_of(pipe: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn spawn(args: &[&str]) -> Process {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ota-console"))
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ota-console starts");
    let stdout = lines_of(child.stdout.take().unwrap());
    let stderr = lines_of(child.stderr.take().unwrap());
    Process {
        child,
        stdout,
        stderr,
    }
}

/// The first line of `lines` containing `needle` (bounded wait).
fn line_with(lines: &mpsc::Receiver<String>, needle: &str) -> String {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return line,
            Ok(_) => {}
            Err(e) => panic!("no line with {needle:?} within {WAIT:?}: {e}"),
        }
    }
}

/// The address after `prefix` on a line of the broker's stdout.
fn address(broker: &Process, prefix: &str) -> SocketAddr {
    let line = line_with(&broker.stdout, prefix);
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

fn run_ok(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_ota-console"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Connects and returns the CONNACK outcome, then the packets that arrive within `listen`.
async fn session(
    options: MqttOptions,
    subscribe: Option<&str>,
    listen: Duration,
) -> Result<Vec<rumqttc::Publish>, ConnectReturnCode> {
    let (client, mut events) = AsyncClient::new(options, 16);
    let connected = tokio::time::timeout(WAIT, async {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => return Ok(()),
                Ok(_) => {}
                Err(ConnectionError::ConnectionRefused(code)) => return Err(code),
                Err(e) => panic!("neither accepted nor refused: {e}"),
            }
        }
    })
    .await
    .expect("a CONNACK in time");
    connected?;
    if let Some(filter) = subscribe {
        client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
    }
    let mut got = Vec::new();
    let _ = tokio::time::timeout(listen, async {
        loop {
            if let Ok(Event::Incoming(Packet::Publish(p))) = events.poll().await {
                got.push(p);
            }
        }
    })
    .await;
    Ok(got)
}

fn options(client_id: &str, addr: SocketAddr) -> MqttOptions {
    let mut options = MqttOptions::new(client_id, addr.ip().to_string(), addr.port());
    options.set_keep_alive(Duration::from_secs(30));
    options
}

fn data(dir: &Path) -> String {
    dir.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_command_is_secure_by_default_and_admits_provisioned_devices() {
    let dir = tempfile::tempdir().unwrap();
    let broker = spawn(&[
        "broker",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        &data(dir.path()),
    ]);
    let addr = address(&broker, "MQTT broker listening on");
    line_with(&broker.stderr, "secure: the console logs in as");

    // A stranger is refused.
    assert_eq!(
        session(options("stranger", addr), None, Duration::ZERO)
            .await
            .unwrap_err(),
        ConnectReturnCode::NotAuthorized
    );
    // The console listens first, so nothing a device announces at connect is missed.
    let console = ConsoleCredentials::load_or_create(dir.path()).unwrap();
    let mut as_console = options("console", addr);
    as_console.set_credentials(&console.username, &console.password);
    let (client, mut events) = AsyncClient::new(as_console, 64);
    client.subscribe("#", QoS::AtLeastOnce).await.unwrap();
    tokio::time::timeout(WAIT, async {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) => return,
                Ok(_) => {}
                Err(e) => panic!("the console's login failed: {e}"),
            }
        }
    })
    .await
    .expect("the console subscribed");
    // Devices provisioned into the broker's data directory while it runs get in.
    let _sim = spawn(&[
        "sim",
        "--broker",
        &format!("mqtt://{addr}"),
        "--provision",
        &data(dir.path()),
        "--fogcloud",
        "1",
        "--dji-docks",
        "1",
        "--aliyun",
        "1",
    ]);
    let mut missing = vec![
        "/ota/device/inform/a1SimProduct/sim-ali-0001",
        "fogcloud/a1SimProduct/sim-fog-0001/thing/up/ota",
        "thing/product/sim-drone-0001/state",
    ];
    let heard = tokio::time::timeout(WAIT, async {
        while !missing.is_empty() {
            match events.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => missing.retain(|t| *t != p.topic),
                Ok(_) => {}
                Err(e) => panic!("the console lost its link: {e}"),
            }
        }
    })
    .await;
    assert!(
        heard.is_ok(),
        "not heard (the devices must have logged in): {missing:?}"
    );
    // `devices` on this machine logs in with the data directory's console credentials.
    let listed = run_ok(&[
        "devices",
        "--broker",
        &format!("mqtt://{addr}"),
        "--data-dir",
        &data(dir.path()),
        "--discover-for",
        "3s",
        "--json",
    ]);
    // (DJI docks report continuously; the others announced before it listened.)
    assert!(listed.contains("\"dji:sim-dock-0001\""), "{listed}");
}

#[expect(
    clippy::too_many_lines,
    reason = "one scenario: CA, issued certificate, TLS broker, clients with and without it"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_the_site_ca_and_a_client_certificate_it_issued() {
    let dir = tempfile::tempdir().unwrap();
    let broker = spawn(&[
        "broker",
        "--listen",
        "127.0.0.1:0",
        "--tls-listen",
        "127.0.0.1:0",
        "--data-dir",
        &data(dir.path()),
    ]);
    let _plain = address(&broker, "MQTT broker listening on");
    let tls_addr = address(&broker, "MQTT over TLS on");
    let ca_file = dir.path().join("exported-ca.pem");
    let certs = dir.path().join("certs");
    run_ok(&[
        "broker-config",
        "--data-dir",
        &data(dir.path()),
        "--export-ca",
        &ca_file.display().to_string(),
        "--issue-cert",
        "dji:DOCK9",
        "--out",
        &certs.display().to_string(),
    ]);
    let ca = CertificateDer::from_pem_file(&ca_file).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = || {
        rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots.clone())
    };
    let chain = vec![CertificateDer::from_pem_file(certs.join("dji_DOCK9.crt.pem")).unwrap()];
    let key = PrivateKeyDer::from_pem_file(certs.join("dji_DOCK9.key.pem")).unwrap();
    let with_cert = Arc::new(builder().with_client_auth_cert(chain, key).unwrap());
    let without = Arc::new(builder().with_no_client_auth());

    // The console over TLS with its password, the dock with its certificate and no password.
    let console = ConsoleCredentials::load_or_create(dir.path()).unwrap();
    let mut as_console = options("console", tls_addr);
    as_console.set_credentials(&console.username, &console.password);
    as_console.set_transport(Transport::tls_with_config(
        rumqttc::TlsConfiguration::Rustls(without.clone()),
    ));
    let (console_client, mut console_events) = AsyncClient::new(as_console, 16);
    console_client
        .subscribe("sys/product/+/status", QoS::AtLeastOnce)
        .await
        .unwrap();
    tokio::time::timeout(WAIT, async {
        loop {
            match console_events.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) => return,
                Ok(_) => {}
                Err(e) => panic!("the console's TLS login failed: {e}"),
            }
        }
    })
    .await
    .expect("the console subscribed");
    let mut dock = options("dock9", tls_addr);
    dock.set_transport(Transport::tls_with_config(
        rumqttc::TlsConfiguration::Rustls(with_cert),
    ));
    let (client, mut events) = AsyncClient::new(dock, 16);
    client
        .publish(
            "sys/product/DOCK9/status",
            QoS::AtLeastOnce,
            false,
            "hello-over-tls",
        )
        .await
        .unwrap();
    tokio::spawn(async move {
        loop {
            if let Err(e) = events.poll().await {
                eprintln!("dock: {e}");
                return;
            }
        }
    });
    tokio::time::timeout(WAIT, async {
        loop {
            match console_events.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) if &p.payload[..] == b"hello-over-tls" => {
                    return;
                }
                Ok(_) => {}
                Err(e) => panic!("the console lost its link: {e}"),
            }
        }
    })
    .await
    .expect("the dock, logged in by its certificate, published its status");
    // Over TLS without a certificate or a password: refused.
    let mut nobody = options("nobody", tls_addr);
    nobody.set_transport(Transport::tls_with_config(
        rumqttc::TlsConfiguration::Rustls(without),
    ));
    assert_eq!(
        session(nobody, None, Duration::ZERO).await.unwrap_err(),
        ConnectReturnCode::NotAuthorized
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_broker_says_so_and_admits_anyone() {
    let dir = tempfile::tempdir().unwrap();
    let broker = spawn(&[
        "broker",
        "--open-broker",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        &data(dir.path()),
    ]);
    let addr = address(&broker, "MQTT broker listening on");
    line_with(&broker.stderr, "the broker is OPEN");
    assert!(
        session(options("anyone", addr), None, Duration::ZERO)
            .await
            .is_ok()
    );
}
