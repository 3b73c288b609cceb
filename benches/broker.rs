//! Throughput of the embedded broker's gate: QoS 0 messages per second on loopback, one
//! publisher and one subscriber, through the gate in open and secure mode and straight to a
//! rumqttd configured like the gate's private one, in the same run; then the memory one idle
//! connection costs (process RSS over many idle connections, gate and rumqttd together, against
//! rumqttd alone).
//!
//! The clients are raw sockets writing pre-encoded frames and counting frames, so the figure is
//! the broker's, not a client library's. In secure mode the publisher is a DJI dock (user file)
//! publishing its own status topic and the subscriber is the console, as in a rollout.
//!
//! Run: `cargo bench --no-default-features --bench broker` (issue #16 asks ≥ 100k msg/s QoS 0).

#![expect(
    clippy::expect_used,
    reason = "a benchmark's set-up that fails has nothing to measure: it stops with a message"
)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use ota_console::access::credentials::{ConsoleCredentials, USERS_FILE};
use ota_console::transport::broker::{BrokerSettings, EmbeddedBroker};
use rumqttc::mqttbytes::check;
use rumqttc::{Connect, Publish, QoS, Subscribe};

const MESSAGES: usize = 1_000_000;
/// Each measurement is taken this many times, interleaved; the best is kept (short runs on a
/// shared machine are noisy, and the first run also warms the allocator).
const ROUNDS: usize = 3;
const PAYLOAD: usize = 64;
const TOPIC: &str = "sys/product/DOCK1/status";
const IDLE_CONNECTIONS: usize = 2_000;
const WAIT: Duration = Duration::from_secs(120);

struct Login {
    user: String,
    password: String,
}

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let console = ConsoleCredentials::load_or_create(&data).expect("console credentials");
    std::fs::write(data.join(USERS_FILE), "dock-1 pw-dock dji:DOCK1\n").expect("user file");
    let console_login = Login {
        user: console.username.clone(),
        password: console.password.clone(),
    };
    let dock_login = Login {
        user: "dock-1".into(),
        password: "pw-dock".into(),
    };
    let anyone = Login {
        user: "anyone".into(),
        password: "x".into(),
    };

    let direct = start_plain_rumqttd();
    let open = EmbeddedBroker::start(BrokerSettings::open(loopback0())).expect("open gate");
    let secure = EmbeddedBroker::start(BrokerSettings::secure(
        loopback0(),
        data.clone(),
        ota_console::protocol::registry::topic_routes(),
    ))
    .expect("gate");

    println!("QoS 0, {MESSAGES} messages of {PAYLOAD} bytes, one publisher, one subscriber:");
    let (mut rumqttd_rate, mut open_rate, mut secure_rate) = (0f64, 0f64, 0f64);
    for round in 0..ROUNDS {
        let direct_now = throughput(&format!("rumqttd-{round}"), direct, &anyone, &anyone);
        rumqttd_rate = rumqttd_rate.max(direct_now);
        let open_now = throughput(
            &format!("open-{round}"),
            open.local_addr(),
            &anyone,
            &anyone,
        );
        open_rate = open_rate.max(open_now);
        let secure_now = throughput(
            &format!("secure-{round}"),
            secure.local_addr(),
            &dock_login,
            &console_login,
        );
        secure_rate = secure_rate.max(secure_now);
    }
    println!(
        "  best of {ROUNDS}: rumqttd {rumqttd_rate:.0}, gate open {open_rate:.0}, gate secure \
         {secure_rate:.0} msg/s; gate/rumqttd: open {:.2}, secure {:.2}",
        open_rate / rumqttd_rate,
        secure_rate / rumqttd_rate
    );
    assert_eq!(
        secure.refusal_count(),
        0,
        "the bench's own clients were refused"
    );

    println!("Memory per idle connection ({IDLE_CONNECTIONS} connections, process RSS):");
    let direct_idle = idle_cost(direct, &anyone);
    println!("  rumqttd direct: {:.1} KiB", direct_idle / 1024.0);
    let secure_idle = idle_cost(secure.local_addr(), &dock_login);
    println!(
        "  through the secure gate: {:.1} KiB (gate's share ≈ {:.1} KiB)",
        secure_idle / 1024.0,
        (secure_idle - direct_idle) / 1024.0
    );
}

fn loopback0() -> SocketAddr {
    "127.0.0.1:0".parse().expect("address")
}

/// A rumqttd with the gate's private configuration minus its login, on a free port.
fn start_plain_rumqttd() -> SocketAddr {
    let addr = TcpListener::bind(loopback0())
        .and_then(|l| l.local_addr())
        .expect("free port");
    let connections = rumqttd::ConnectionSettings {
        connection_timeout_ms: 10_000,
        max_payload_size: ota_console::transport::broker::MAX_PACKET_BYTES,
        max_inflight_count: 1_000,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    let server = rumqttd::ServerSettings {
        name: "bench-v4".to_owned(),
        listen: addr,
        tls: None,
        next_connection_delay_ms: 0,
        connections,
    };
    let router = rumqttd::RouterConfig {
        max_connections: ota_console::transport::broker::MAX_CONNECTIONS,
        max_outgoing_packet_count: 1_000,
        max_segment_size: 32 * 1024 * 1024,
        max_segment_count: 16,
        custom_segment: None,
        initialized_filters: None,
        shared_subscriptions_strategy: Default::default(),
    };
    let config = rumqttd::Config {
        id: 0,
        router,
        v4: Some(HashMap::from([("1".to_owned(), server)])),
        ..Default::default()
    };
    std::thread::spawn(move || {
        let _ = rumqttd::Broker::new(config).start();
    });
    let started = Instant::now();
    while TcpStream::connect(addr).is_err() {
        assert!(started.elapsed() < WAIT, "rumqttd did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    addr
}

fn encode(write: impl FnOnce(&mut BytesMut)) -> Vec<u8> {
    let mut buf = BytesMut::new();
    write(&mut buf);
    buf.to_vec()
}

/// Connects and waits for a successful CONNACK.
fn connect(addr: SocketAddr, client_id: &str, login: &Login) -> TcpStream {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    let mut connect = Connect::new(client_id);
    connect.keep_alive = 600;
    connect.set_login(&login.user, &login.password);
    stream
        .write_all(&encode(|b| {
            connect.write(b).expect("connect frame");
        }))
        .expect("send CONNECT");
    let mut ack = [0u8; 4];
    stream.read_exact(&mut ack).expect("CONNACK");
    assert_eq!(ack, [0x20, 2, 0, 0], "CONNACK refused");
    stream
}

/// Messages per second from one publisher to one subscriber through `addr`.
fn throughput(label: &str, addr: SocketAddr, publisher: &Login, subscriber: &Login) -> f64 {
    let mut sub = connect(addr, &format!("bench-sub-{label}"), subscriber);
    let mut subscribe = Subscribe::new(TOPIC, QoS::AtMostOnce);
    subscribe.pkid = 1;
    sub.write_all(&encode(|b| {
        subscribe.write(b).expect("subscribe frame");
    }))
    .expect("send SUBSCRIBE");
    let mut suback = [0u8; 5];
    sub.read_exact(&mut suback).expect("SUBACK");
    assert_eq!(suback[4], 0, "subscription refused");

    let counter = std::thread::spawn(move || count_publishes(sub, MESSAGES));
    let mut publ = connect(addr, &format!("bench-pub-{label}"), publisher);
    let frame = encode(|b| {
        Publish::new(TOPIC, QoS::AtMostOnce, vec![7u8; PAYLOAD])
            .write(b)
            .expect("publish frame");
    });
    let batch: Vec<u8> = frame.repeat(1_000);
    let started = Instant::now();
    for _ in 0..MESSAGES / 1_000 {
        publ.write_all(&batch).expect("publish");
    }
    let received = counter.join().expect("counter");
    let elapsed = started.elapsed();
    let rate = received as f64 / elapsed.as_secs_f64();
    println!(
        "  {label:<16} {rate:>10.0} msg/s ({received} received in {:.2} s)",
        elapsed.as_secs_f64()
    );
    rate
}

/// Counts PUBLISH frames until `expected` (or the wait ends); returns how many arrived.
fn count_publishes(mut stream: TcpStream, expected: usize) -> usize {
    let mut buf = BytesMut::with_capacity(256 * 1024);
    let mut chunk = vec![0u8; 256 * 1024];
    let mut count = 0;
    let started = Instant::now();
    while count < expected && started.elapsed() < WAIT {
        let n = match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        while let Ok(header) = check(buf.iter(), usize::MAX) {
            let frame = buf.split_to(header.frame_length());
            if frame.first().map(|b| b >> 4) == Some(3) {
                count += 1;
            }
        }
    }
    count
}

fn rss_bytes() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib * 1024.0)
}

/// RSS growth per idle connection (connected, nothing sent after CONNACK).
fn idle_cost(addr: SocketAddr, login: &Login) -> f64 {
    let before = rss_bytes();
    let connections: Vec<TcpStream> = (0..IDLE_CONNECTIONS)
        .map(|i| connect(addr, &format!("idle-{i}"), login))
        .collect();
    // Let both sides settle (buffers allocated on first read are in place).
    std::thread::sleep(Duration::from_millis(500));
    let after = rss_bytes();
    drop(connections);
    (after - before) / IDLE_CONNECTIONS as f64
}
