//! Black-box tests of the embedded broker together with the MQTT link: everything on 127.0.0.1
//! with ephemeral ports, every wait bounded.

// Test code throughout: clippy's allow-unwrap-in-tests (clippy.toml) goes by `cfg(test)`.
#![cfg(test)]

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use ota_console::protocol::Outbound;
use ota_console::transport::broker::{BrokerError, BrokerSettings, EmbeddedBroker};
use ota_console::transport::mqtt::{
    BrokerUrl, Inbound, LinkOptions, LinkState, MqttLink, SessionNews,
};
use tokio::sync::{mpsc, watch};
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);

fn start_broker() -> EmbeddedBroker {
    EmbeddedBroker::start(BrokerSettings::open("127.0.0.1:0".parse().unwrap()))
        .expect("embedded broker starts")
}

fn link_to(addr: SocketAddr, subscriptions: &[&str]) -> (MqttLink, mpsc::Receiver<Inbound>) {
    let mut opts = LinkOptions::new(BrokerUrl::plain("127.0.0.1", addr.port()));
    opts.subscriptions = subscriptions.iter().map(|s| s.to_string()).collect();
    MqttLink::start(opts).expect("link starts")
}

async fn wait_connected(state: &mut watch::Receiver<LinkState>) {
    timeout(WAIT, state.wait_for(|s| *s == LinkState::Connected))
        .await
        .expect("link connects within 10 s")
        .expect("link alive");
}

fn outbound(topic: &str, payload: &[u8]) -> Outbound {
    Outbound {
        topic: topic.to_owned(),
        payload: payload.to_vec(),
    }
}

/// Publishes a probe until one comes back: the subscription is in place once it does.
async fn wait_subscribed(publisher: &MqttLink, rx: &mut mpsc::Receiver<Inbound>, topic: &str) {
    timeout(WAIT, async {
        loop {
            publisher.publish(outbound(topic, b"probe")).unwrap();
            if let Ok(Some(_)) = timeout(Duration::from_millis(200), rx.recv()).await {
                return;
            }
        }
    })
    .await
    .expect("subscription becomes active");
    // Drain further probes.
    while rx.try_recv().is_ok() {}
}

#[test]
fn port_zero_gives_a_real_port_that_accepts_connections() {
    let broker = start_broker();
    let addr = broker.local_addr();
    assert_ne!(addr.port(), 0);
    std::net::TcpStream::connect_timeout(&addr, WAIT).expect("broker accepts TCP");
}

#[test]
fn taken_port_is_refused_with_a_hint_for_external_brokers() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let err = EmbeddedBroker::start(BrokerSettings::open(addr)).unwrap_err();
    assert!(matches!(err, BrokerError::AddrInUse { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains(&format!("--broker mqtt://127.0.0.1:{}", addr.port())),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_links_round_trip_through_the_embedded_broker() {
    let broker = start_broker();
    let (sub, mut inbox) = link_to(broker.local_addr(), &["devices/+/up"]);
    let (publ, _unused) = link_to(broker.local_addr(), &[]);
    wait_connected(&mut sub.state()).await;
    wait_connected(&mut publ.state()).await;
    wait_subscribed(&publ, &mut inbox, "devices/probe/up").await;

    for i in 0..100u32 {
        publ.publish(outbound(&format!("devices/d{i}/up"), &i.to_be_bytes()))
            .unwrap();
    }
    let mut got = Vec::new();
    timeout(WAIT, async {
        while got.len() < 100 {
            let msg = inbox.recv().await.expect("inbound open");
            got.push(msg);
        }
    })
    .await
    .expect("all 100 messages arrive");
    let mut ids: Vec<u32> = got
        .iter()
        .map(|m| u32::from_be_bytes(m.payload[..4].try_into().unwrap()))
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, (0..100).collect::<Vec<_>>());
    assert!(got.iter().all(|m| m.topic.starts_with("devices/d")));

    // Everything was acknowledged by the broker.
    timeout(WAIT, async {
        while publ.stats().published < publ.stats().queued {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("broker acknowledges all publishes");
    assert!(sub.stats().received >= 100);
    assert_eq!(publ.stats().dropped, 0);
}

/// A hostile 10 MiB message must reach our side (where the decoder refuses it) instead of the
/// broker or the link dropping the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_mib_message_is_delivered_not_fatal() {
    let broker = start_broker();
    let (sub, mut inbox) = link_to(broker.local_addr(), &["big/#"]);
    wait_connected(&mut sub.state()).await;
    let (publ, _unused) = link_to(broker.local_addr(), &[]);
    wait_connected(&mut publ.state()).await;
    wait_subscribed(&publ, &mut inbox, "big/probe").await;

    // Our link refuses to *send* this much (notices are small), so a raw rumqttc client plays
    // the hostile device.
    let mut o = rumqttc::MqttOptions::new("hostile", "127.0.0.1", broker.local_addr().port());
    o.set_max_packet_size(32 << 20, 32 << 20);
    let (client, mut eventloop) = rumqttc::AsyncClient::new(o, 10);
    let poller = tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
    client
        .publish(
            "big/x",
            rumqttc::QoS::AtLeastOnce,
            false,
            vec![7u8; 10 << 20],
        )
        .await
        .unwrap();
    let msg = timeout(WAIT, inbox.recv())
        .await
        .expect("10 MiB message arrives")
        .unwrap();
    assert_eq!(msg.payload.len(), 10 << 20);
    assert_eq!(*sub.state().borrow(), LinkState::Connected);
    poller.abort();
}

#[tokio::test]
async fn publish_refuses_oversized_and_wildcard_topics_and_counts_them() {
    let broker = start_broker();
    let (link, _inbox) = link_to(broker.local_addr(), &[]);
    let err = link
        .publish(outbound("a/b", &vec![0u8; 2 << 20]))
        .unwrap_err();
    assert!(err.to_string().contains("bytes"), "{err}");
    assert!(link.publish(outbound("a/+", b"x")).is_err());
    assert_eq!(link.stats().dropped, 2);
    link.shutdown();
    timeout(
        WAIT,
        link.state()
            .wait_for(|s| matches!(s, LinkState::Failed { .. })),
    )
    .await
    .expect("shutdown reaches Failed")
    .unwrap();
    assert!(link.publish(outbound("a/b", b"x")).is_err());
}

/// No broker at all: the link backs off with growing delays and says why, and its queue is
/// bounded by `max_queued`.
#[tokio::test]
async fn without_a_broker_the_link_backs_off_and_the_queue_is_bounded() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut opts = LinkOptions::new(BrokerUrl::plain("127.0.0.1", port));
    opts.max_queued = 5;
    let (link, _inbox) = MqttLink::start(opts).unwrap();
    let mut state = link.state();
    let first = timeout(
        WAIT,
        state.wait_for(|s| matches!(s, LinkState::Reconnecting { .. })),
    )
    .await
    .expect("first failure reported")
    .unwrap()
    .clone();
    let LinkState::Reconnecting {
        reason,
        attempt,
        retry_in,
    } = first
    else {
        unreachable!()
    };
    // A slow test thread may miss early states (watch keeps the latest): check the schedule
    // 200 ms × 2^(attempt-1) for whatever attempt is seen, then for a later one.
    let expected = |attempt: u32| Duration::from_millis(200) * 2u32.pow(attempt - 1);
    assert_eq!(retry_in, expected(attempt));
    assert!(reason.contains("connection refused"), "{reason}");
    let later = timeout(
        WAIT,
        state.wait_for(|s| matches!(s, LinkState::Reconnecting { attempt: a, .. } if *a > attempt)),
    )
    .await
    .expect("next failure reported")
    .unwrap()
    .clone();
    let LinkState::Reconnecting {
        attempt: later_attempt,
        retry_in: later_retry,
        ..
    } = later
    else {
        unreachable!()
    };
    assert_eq!(later_retry, expected(later_attempt));

    for i in 0..5 {
        link.publish(outbound("q/x", &[i])).expect("fits the queue");
    }
    let err = link.publish(outbound("q/x", b"6")).unwrap_err();
    assert!(err.to_string().contains("queue is full"), "{err}");
    assert_eq!(link.stats().queued, 5);
    assert_eq!(link.stats().dropped, 1);
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

/// What holds with the embedded broker (rumqttd 0.20): it keeps a persistent session in memory
/// (subscriptions and a cursor into each filter's log) when the client goes away, and delivers
/// what was published meanwhile when the same client id comes back with `clean_session = false`.
/// Nothing survives the broker's own process, and a client that lags more than the filter's log
/// (16 segments of 32 MiB) loses the oldest messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_broker_keeps_a_console_session_across_a_reconnect() {
    let broker = start_broker();
    let port = broker.local_addr().port();
    let console_options = || {
        let mut opts = LinkOptions::new(BrokerUrl::plain("127.0.0.1", port));
        opts.subscriptions = vec!["dev/#".to_owned()];
        opts.client_id = Some("ota-console-embedded".to_owned());
        opts
    };
    let (first, mut inbox) = MqttLink::start(console_options()).unwrap();
    wait_connected(&mut first.state()).await;
    wait_subscribed(&first, &mut inbox, "dev/probe").await;
    assert!(!wait_connacks(&first, 1).await.present);
    first.shutdown();
    timeout(
        WAIT,
        first
            .state()
            .wait_for(|s| matches!(s, LinkState::Failed { .. })),
    )
    .await
    .expect("link stops")
    .expect("state alive");
    drop(inbox);

    let (device, _unused) = link_to(broker.local_addr(), &[]);
    wait_connected(&mut device.state()).await;
    const MEANWHILE: usize = 100;
    for i in 0..MEANWHILE {
        device
            .publish(outbound("dev/report", format!("meanwhile-{i}").as_bytes()))
            .unwrap();
    }
    timeout(WAIT, async {
        while device.stats().published < MEANWHILE as u64 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the broker acknowledged every publish");

    let (second, mut inbox) = MqttLink::start(console_options()).unwrap();
    assert!(wait_connacks(&second, 1).await.present);
    let mut seen = std::collections::BTreeSet::new();
    timeout(WAIT, async {
        while seen.len() < MEANWHILE {
            let msg = inbox.recv().await.expect("inbound open");
            let text = String::from_utf8_lossy(&msg.payload).into_owned();
            if text.starts_with("meanwhile-") {
                seen.insert(text);
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("only {} of {MEANWHILE} arrived", seen.len()));
}

/// A console answering every report of a flood keeps pace: its queue of answers never fills.
/// rumqttc's own turn writes one request per up to ten packets it reads, so the link used to
/// write about one answer per ten reports, and in a 100,000-device run 22,943 answers found the
/// queue full. The queue here holds 1,000, a twentieth of the answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_keep_pace_with_a_flood_of_reports() {
    const REPORTS: u32 = 20_000;
    let broker = start_broker();
    let url = BrokerUrl::plain("127.0.0.1", broker.local_addr().port());
    let mut console_opts = LinkOptions::new(url.clone());
    console_opts.subscriptions = vec!["report/#".to_owned()];
    console_opts.max_queued = 1_000;
    let (console, mut reports) = MqttLink::start(console_opts).unwrap();
    let mut fleet_opts = LinkOptions::new(url);
    fleet_opts.subscriptions = vec!["answer/#".to_owned()];
    fleet_opts.max_queued = REPORTS as usize + 100;
    let (fleet, mut answers) = MqttLink::start(fleet_opts).unwrap();
    wait_connected(&mut console.state()).await;
    wait_connected(&mut fleet.state()).await;
    wait_subscribed(&fleet, &mut reports, "report/probe").await;
    wait_subscribed(&console, &mut answers, "answer/probe").await;

    for i in 0..REPORTS {
        fleet
            .publish(outbound(&format!("report/{i}"), &i.to_be_bytes()))
            .expect("the fleet's queue holds every report");
    }
    let answering = async {
        let mut answered = 0;
        while answered < REPORTS {
            let report = reports.recv().await.expect("inbound open");
            let topic = report.topic.replace("report/", "answer/");
            console
                .publish(outbound(&topic, &report.payload))
                .unwrap_or_else(|e| panic!("answer {answered} not queued: {e}"));
            answered += 1;
        }
    };
    let collecting = async {
        let mut seen = vec![false; REPORTS as usize];
        let mut count = 0;
        while count < REPORTS {
            let answer = answers.recv().await.expect("inbound open");
            let Some(i) = answer
                .topic
                .strip_prefix("answer/")
                .and_then(|i| i.parse::<usize>().ok())
            else {
                continue;
            };
            if let Some(slot) = seen.get_mut(i)
                && !*slot
            {
                *slot = true;
                count += 1;
            }
        }
    };
    timeout(Duration::from_secs(120), async {
        tokio::join!(answering, collecting)
    })
    .await
    .expect("every report is answered within 120 s");
    assert_eq!(console.stats().dropped, 0);
}
