//! A hostile site network against the default settings: the embedded broker (secure unless told
//! otherwise), the console and an honest simulated fleet of every dialect whose credentials were
//! provisioned in the console's data directory. Strangers and a device gone rogue try to log in
//! without, with wrong or with guessed credentials, to push a notice to a device, to listen to
//! everything or to another device's notices, and to speak as another device (the attack that
//! made `rollout` count a device "skipped" before it was upgraded). Every attempt is refused,
//! the honest rollout completes, and each refusal is in the operator log and the inspector.

// Test code throughout: clippy's allow-unwrap-in-tests (clippy.toml) goes by `cfg(test)`.
#![cfg(test)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use ota_console::access::credentials::{SECRETS_FILE, USERS_FILE};
use ota_console::engine::{BrokerGuard, EngineHandle};
use ota_console::rollout::DeviceStatus;
use ota_console::sim::{Behaviour, SimConfig, SimFleet, SimLogins};
use ota_console::testing::engine::{discover, run_to_end, start_embedded, start_rollout, wait_for};
use ota_console::testing::sim_units;
use ota_console::testing::{self, firmware_file};
use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, MqttOptions, Packet, QoS,
    SubscribeReasonCode,
};

const WAIT: Duration = Duration::from_secs(10);

fn broker_addr(handle: &EngineHandle) -> SocketAddr {
    handle
        .broker_url()
        .trim_start_matches("mqtt://")
        .parse()
        .expect("the embedded broker's URL is mqtt://ip:port")
}

/// Connects and waits for the CONNACK: the client and its event loop, or the return code of a
/// refusal.
async fn connect(
    addr: SocketAddr,
    client_id: &str,
    login: Option<(&str, &str)>,
) -> Result<(AsyncClient, EventLoop), ConnectReturnCode> {
    let mut options = MqttOptions::new(client_id, addr.ip().to_string(), addr.port());
    options.set_keep_alive(Duration::from_secs(30));
    if let Some((user, password)) = login {
        options.set_credentials(user, password);
    }
    let (client, mut events) = AsyncClient::new(options, 16);
    let outcome = tokio::time::timeout(WAIT, async {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => return Ok(()),
                Ok(_) => {}
                Err(ConnectionError::ConnectionRefused(code)) => return Err(code),
                Err(e) => panic!("{client_id}: neither accepted nor refused: {e}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{client_id}: no CONNACK within {WAIT:?}"));
    outcome.map(|()| (client, events))
}

/// Subscribes to `filter` and returns the broker's answer for it.
async fn subscribe(
    client: &AsyncClient,
    events: &mut EventLoop,
    filter: &str,
) -> SubscribeReasonCode {
    client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
    tokio::time::timeout(WAIT, async {
        loop {
            if let Event::Incoming(Packet::SubAck(ack)) = events.poll().await.expect("connected") {
                return ack.return_codes[0];
            }
        }
    })
    .await
    .expect("SUBACK in time")
}

/// Publishes at QoS 1 and waits for the PUBACK (the gate acknowledges what it drops, as MQTT
/// 3.1.1 allows: the client learns nothing, the message goes nowhere).
async fn publish(client: &AsyncClient, events: &mut EventLoop, topic: &str, payload: String) {
    client
        .publish(topic, QoS::AtLeastOnce, false, payload)
        .await
        .unwrap();
    tokio::time::timeout(WAIT, async {
        loop {
            if let Event::Incoming(Packet::PubAck(_)) = events.poll().await.expect("connected") {
                return;
            }
        }
    })
    .await
    .expect("PUBACK in time");
}

/// The user name and password of `mqtt-users.txt` for the line naming `device`.
fn user_of(dir: &Path, device: &str) -> (String, String) {
    let text = std::fs::read_to_string(dir.join(USERS_FILE)).unwrap();
    let line = text
        .lines()
        .find(|l| !l.starts_with('#') && l.split_whitespace().skip(2).any(|id| id == device))
        .unwrap_or_else(|| panic!("{device} has a user"));
    let mut fields = line.split_whitespace();
    (
        fields.next().unwrap().to_owned(),
        fields.next().unwrap().to_owned(),
    )
}

#[expect(
    clippy::too_many_lines,
    reason = "one scenario: each kind of stranger tries in turn, then the honest rollout"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_on_the_site_network_cannot_flash_hide_or_listen() {
    let dir = tempfile::tempdir().unwrap();
    // The defaults: nothing says the broker may be open.
    let handle = start_embedded(dir.path()).await;
    assert_eq!(handle.snapshot().broker_guard, BrokerGuard::Secure);
    let addr = broker_addr(&handle);

    let cfg = SimConfig {
        broker_url: handle.broker_url().to_owned(),
        units: sim_units(&[
            ("aliyun", 2),
            ("fogcloud", 2),
            ("fogcloud-gateways", 1),
            ("subs", 2),
            ("dji-docks", 1),
        ]),
        version: "1.0.0".into(),
        seed: 16,
        behaviour: Behaviour {
            install: Duration::from_millis(100),
            ..Behaviour::default()
        },
        ..SimConfig::default()
    };
    let (logins, added) = SimLogins::provision(dir.path(), &cfg).unwrap();
    assert_eq!(added, 2 + 2 + 1 + 1);
    let fleet = SimFleet::start(SimConfig {
        logins: logins.into(),
        ..cfg.clone()
    })
    .await
    .unwrap();
    let ids = fleet.device_ids();
    discover(&handle, &ids).await;

    let pk = &cfg.product_key;
    let victim = cfg.unit_name("ali", 0);
    let hidden = cfg.unit_name("ali", 1);
    let rogue = format!("fogcloud:{pk}/{}", cfg.unit_name("fog", 0));
    let (rogue_user, rogue_password) = user_of(dir.path(), &rogue);

    // Logins: none, made up, a real user with a guessed password, an Alibaba device signing
    // with a secret that is not its own.
    assert!(connect(addr, "anon", None).await.is_err(), "anonymous");
    assert!(
        connect(addr, "mallory", Some(("mallory", "guess")))
            .await
            .is_err()
    );
    assert!(
        connect(addr, "guess", Some((&rogue_user, "guess")))
            .await
            .is_err()
    );
    let wrong_sign = format!("{pk}&{victim}|securemode=3,signmethod=hmacsha256,timestamp=1|");
    let forged = connect(
        addr,
        &wrong_sign,
        Some((&format!("{victim}&{pk}"), &"0".repeat(64))),
    )
    .await;
    assert!(forged.is_err(), "a signature without the device secret");
    assert!(
        std::fs::read_to_string(dir.path().join(SECRETS_FILE))
            .unwrap()
            .contains(&victim)
    );

    // A device gone rogue, logged in with its own real credentials.
    let (client, mut events) = connect(addr, "rogue", Some((&rogue_user, &rogue_password)))
        .await
        .expect("a device with its own credentials is admitted");
    assert_eq!(
        subscribe(&client, &mut events, "#").await,
        SubscribeReasonCode::Failure,
        "listening to everything"
    );
    let victim_notices = format!("/ota/device/upgrade/{pk}/{victim}");
    assert_eq!(
        subscribe(&client, &mut events, &victim_notices).await,
        SubscribeReasonCode::Failure,
        "listening to another device's notices"
    );
    // Its own notices it may hear.
    let own_down = format!("fogcloud/{pk}/{}/thing/down/ota", cfg.unit_name("fog", 0));
    assert!(matches!(
        subscribe(&client, &mut events, &own_down).await,
        SubscribeReasonCode::Success(_)
    ));
    // Flash the victim with its own firmware...
    publish(
        &client,
        &mut events,
        &victim_notices,
        serde_json::json!({
            "code": "1000",
            "data": {"size": 4, "version": "6.6.6", "url": "http://127.0.0.1:9/evil.bin",
                     "md5": "00000000000000000000000000000000", "sign": "00000000000000000000000000000000",
                     "signMethod": "Md5"},
            "id": 1, "message": "success"
        })
        .to_string(),
    )
    .await;
    // ...and hide another device from the rollout by claiming it runs the target already.
    publish(
        &client,
        &mut events,
        &format!("/ota/device/inform/{pk}/{hidden}"),
        serde_json::json!({"id": "1", "params": {"version": "2.0.0"}}).to_string(),
    )
    .await;

    // The honest rollout of every device completes; nobody is skipped.
    let fw = firmware_file(dir.path(), 100_000);
    let id = start_rollout(&handle, &fw, ids.clone(), testing::fast_policy(20)).await;
    let view = run_to_end(&handle, id).await;
    let stats = fleet.stats();
    for device in &view.snapshot.devices {
        assert_eq!(device.status, DeviceStatus::Succeeded, "{device:?}");
        let sim = stats.get(&device.id.device()).expect("simulated");
        assert_eq!(sim.version, "2.0.0", "{:?} really upgraded", device.id);
    }
    let victim_stats = stats
        .devices
        .iter()
        .find(|d| d.id.to_string().ends_with(&victim))
        .unwrap();
    assert!(
        victim_stats.version != "6.6.6",
        "the forged notice never reached the victim"
    );

    // Every refusal is visible: counted, in the operator log, in the inspector.
    let snap = wait_for(&handle, "the refusals counted", |s| s.broker_refusals >= 8).await;
    let log: Vec<&str> = snap.alerts.iter().map(|a| a.text.as_str()).collect();
    for needle in [
        "broker refused login by an anonymous client",
        "broker refused login by user \"mallory\"",
        "broker refused subscribe",
        "broker refused publish",
        &victim_notices,
    ] {
        assert!(
            log.iter().any(|l| l.contains(needle)),
            "{needle:?} not in the log: {log:#?}"
        );
    }
    let inspector = handle.messages(None, 10_000);
    for topic in ["#", victim_notices.as_str(), "(connect)"] {
        assert!(
            inspector.iter().any(|m| m.topic == topic
                && m.error
                    .as_deref()
                    .is_some_and(|e| e.contains("broker refused"))),
            "no refusal of {topic:?} in the inspector"
        );
    }
    drop(client);
    fleet.shutdown().await;
}
