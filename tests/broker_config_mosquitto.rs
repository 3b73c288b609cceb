//! `ota-console broker-config --mosquitto DIR` against a real Mosquitto (Debian package
//! `mosquitto`): the files it writes are loaded by the broker, the console's generated
//! credentials may do everything the console does, each device only its own topics, and wrong
//! credentials are refused. Mosquitto drops an unauthorized publish silently (it still acks a
//! QoS 1 publish), so a refused publish is proven by an observer that does not get it: the
//! forbidden messages are followed by an allowed marker from the same client, and Mosquitto
//! delivers one client's messages in order, so the marker's arrival bounds the wait.
//! Without mosquitto installed these tests FAIL.

// Test code throughout: clippy's allow-unwrap-in-tests (clippy.toml) goes by `cfg(test)`.
#![cfg(test)]

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use ota_console::access::credentials::{CONSOLE_FILE, ConsoleCredentials, USERS_FILE};
use ota_console::store::{InventoryDevice, Store};
use ota_console::testing::mosquitto::{Mosquitto, free_port};
use ota_console::testing::sim_units;
use rumqttc::{AsyncClient, ConnectionError, Event, MqttOptions, Packet, QoS, SubscribeReasonCode};
use tokio::sync::mpsc;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(15);

/// A connected test client and what it receives: `(topic, payload)` of publishes, and the
/// return codes of each SubAck.
struct Client {
    client: AsyncClient,
    publishes: mpsc::UnboundedReceiver<(String, String)>,
    subacks: mpsc::UnboundedReceiver<Vec<SubscribeReasonCode>>,
}

/// Connects; `Err` with the broker's refusal.
async fn connect(port: u16, client_id: &str, user: Option<(&str, &str)>) -> Result<Client, String> {
    let mut opts = MqttOptions::new(client_id, "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(30));
    if let Some((u, p)) = user {
        opts.set_credentials(u, p);
    }
    let (client, mut eventloop) = AsyncClient::new(opts, 100);
    let connack = timeout(WAIT, async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => return Ok(()),
                Ok(_) => {}
                Err(ConnectionError::ConnectionRefused(code)) => return Err(format!("{code:?}")),
                Err(e) => return Err(e.to_string()),
            }
        }
    })
    .await
    .expect("a ConnAck or a refusal in time");
    connack?;
    let (pub_tx, publishes) = mpsc::unbounded_channel();
    let (sub_tx, subacks) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let _ = pub_tx.send((
                        p.topic.clone(),
                        String::from_utf8_lossy(&p.payload).into_owned(),
                    ));
                }
                Ok(Event::Incoming(Packet::SubAck(s))) => {
                    let _ = sub_tx.send(s.return_codes);
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    });
    Ok(Client {
        client,
        publishes,
        subacks,
    })
}

impl Client {
    /// Subscribes to one filter and returns whether the broker granted it.
    async fn subscribe(&mut self, filter: &str) -> bool {
        self.client
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .unwrap();
        let codes = timeout(WAIT, self.subacks.recv())
            .await
            .expect("SubAck in time")
            .unwrap();
        matches!(codes.as_slice(), [SubscribeReasonCode::Success(_)])
    }

    async fn publish(&self, topic: &str, payload: &str) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload.as_bytes().to_vec())
            .await
            .unwrap();
    }

    /// Everything received up to and including the publish with payload `marker`.
    async fn until(&mut self, marker: &str) -> Vec<(String, String)> {
        let mut got = Vec::new();
        timeout(WAIT, async {
            while let Some(m) = self.publishes.recv().await {
                let done = m.1 == marker;
                got.push(m);
                if done {
                    return;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("marker {marker:?} not received within {WAIT:?}; got {got:?}"));
        got
    }
}

fn device(id: &str, gateway: Option<&str>) -> InventoryDevice {
    InventoryDevice {
        id: id.parse().unwrap(),
        gateway: gateway.map(|g| g.parse().unwrap()),
        versions: BTreeMap::new(),
        last_seen: None,
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[expect(
    clippy::too_many_lines,
    reason = "one scenario against one Mosquitto, every login and topic case in turn"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_enforces_the_generated_password_and_acl_files() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(
        data.join(USERS_FILE),
        "# test fleet\n\
         dev-a pw-a aliyun:pkA/devA\n\
         dev-b pw-b aliyun:pkA/devB\n\
         dock  pw-dock dji:DOCK1\n\
         fog   pw-fog fogcloud:fpk/gw1\n",
    )
    .unwrap();
    {
        let mut store = Store::open(&data.join("ota-console.db")).unwrap();
        store
            .upsert_devices(&[
                device("aliyun:pkA/devA", None),
                device("aliyun:pkA/devB", None),
                device("dji:DOCK1", None),
                device("dji:DRONE1", Some("dji:DOCK1")),
                device("fogcloud:fpk/gw1", None),
                device("fogcloud:fpk/sub1", Some("fogcloud:fpk/gw1")),
                device("fogcloud:fpk/lonely", None),
            ])
            .unwrap();
    }
    // The Alibaba console's export: BOM, its own column order, an extra column.
    let csv = tmp.path().join("export.csv");
    std::fs::write(
        &csv,
        "\u{FEFF}DeviceName,ProductKey,DeviceSecret,Status\nsigned-1,pkS,s3cr3t,ONLINE\n",
    )
    .unwrap();
    let out_dir = tmp.path().join("mosquitto");
    let output = Command::new(env!("CARGO_BIN_EXE_ota-console"))
        .args(["broker-config", "--import-alibaba-csv"])
        .arg(&csv)
        .arg("--mosquitto")
        .arg(&out_dir)
        .arg("--data-dir")
        .arg(&data)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "broker-config failed: {stderr}");
    assert!(
        stderr.contains("no credentials: fogcloud:fpk/lonely"),
        "{stderr}"
    );
    assert!(
        stderr.contains("imported 1 Alibaba device secret(s)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("skipped: aliyun:pkS/signed-1: Mosquitto cannot check Alibaba signatures"),
        "{stderr}"
    );
    assert_eq!(mode(&data.join("alibaba-device-secrets.csv")), 0o600);
    assert!(
        !stderr.contains("fogcloud:fpk/sub1"),
        "a sub-device talks through its gateway: {stderr}"
    );
    for file in ["passwd", "acl", "ota-console.conf"] {
        assert_eq!(mode(&out_dir.join(file)), 0o600, "{file}");
    }
    assert_eq!(mode(&data.join(CONSOLE_FILE)), 0o600);
    let console = ConsoleCredentials::load(&data.join(CONSOLE_FILE)).unwrap();

    let snippet = std::fs::read_to_string(out_dir.join("ota-console.conf")).unwrap();
    // The fixture's `max_queued_messages 0` makes Mosquitto 2.0.11 drop the connection of a
    // client whose publish the ACL refuses (seen in its log as "Bad socket read/write"); a finite
    // queue keeps the client connected and the publish silently dropped, as documented.
    let extra = format!("max_queued_messages 100000\n{snippet}");
    let mosquitto = Mosquitto::start(tmp.path(), free_port(), &extra);
    let port = mosquitto.port;

    // Wrong, missing and unknown credentials are refused.
    for (who, user) in [
        ("wrong password", Some(("dev-a", "pw-b"))),
        (
            "console name, device password",
            Some((console.username.as_str(), "pw-a")),
        ),
        ("unknown user", Some(("mallory", "pw-a"))),
        ("anonymous", None),
    ] {
        assert!(
            connect(port, "intruder", user).await.is_err(),
            "{who} was let in"
        );
    }

    // The console subscribes with the wildcards it uses.
    let mut obs = connect(
        port,
        "console",
        Some((&console.username, &console.password)),
    )
    .await
    .unwrap();
    for filter in [
        "#",
        "/ota/device/inform/+/+",
        "thing/product/+/state",
        "$aws/things/+/jobs/#",
    ] {
        assert!(obs.subscribe(filter).await, "console refused {filter}");
    }

    let mut a = connect(port, "a", Some(("dev-a", "pw-a"))).await.unwrap();
    assert!(a.subscribe("/ota/device/upgrade/pkA/devA").await);
    assert!(
        a.subscribe("/sys/pkA/devA/thing/ota/firmware/get_reply")
            .await
    );
    // Mosquitto 2.0.11 grants any subscription (its ACL file has no subscribe right) and
    // checks `topic read` on each delivery: these must deliver nothing but A's own downlink.
    for filter in [
        "#",
        "/ota/device/upgrade/+/+",
        "/ota/device/upgrade/pkA/devB",
        "/ota/device/inform/pkA/devB",
    ] {
        a.subscribe(filter).await;
    }

    // A device publishes its own uplink; not another device's, and no downlink.
    a.publish("/ota/device/upgrade/pkA/devB", "forged notice")
        .await;
    a.publish("/ota/device/upgrade/pkA/devA", "own downlink")
        .await;
    a.publish("/ota/device/inform/pkA/devB", "posing as B")
        .await;
    a.publish("thing/product/DRONE1/state", "posing as a drone")
        .await;
    a.publish("/ota/device/inform/pkA/devA", "a-marker").await;
    let seen = obs.until("a-marker").await;
    assert_eq!(
        seen,
        [(
            "/ota/device/inform/pkA/devA".to_owned(),
            "a-marker".to_owned()
        )],
        "the console got publishes device A may not make"
    );

    // The console's notice reaches A; another device's notice and uplink do not, whatever A
    // subscribed to.
    obs.publish("/ota/device/upgrade/pkA/devB", "for B only")
        .await;
    obs.publish("/ota/device/inform/pkA/devB", "B's report")
        .await;
    obs.publish("thing/product/DOCK1/services", "for the dock")
        .await;
    obs.publish("/ota/device/upgrade/pkA/devA", "for A").await;
    let got = a.until("for A").await;
    assert!(
        got.iter()
            .all(|(t, p)| t == "/ota/device/upgrade/pkA/devA" && p == "for A"),
        "device A received what is not its own: {got:?}"
    );
    // The console hears its own notices on `#`: drain them.
    obs.until("for A").await;

    // The dock reports for itself and its drone, not for another drone.
    let dock = connect(port, "dock", Some(("dock", "pw-dock")))
        .await
        .unwrap();
    dock.publish("thing/product/DRONE9/state", "another drone")
        .await;
    dock.publish("thing/product/DRONE1/events", "drone events")
        .await;
    dock.publish("thing/product/DRONE1/state", "drone state")
        .await;
    dock.publish("thing/product/DOCK1/events", "dock-marker")
        .await;
    let seen: Vec<String> = obs
        .until("dock-marker")
        .await
        .into_iter()
        .map(|(t, _)| t)
        .collect();
    assert_eq!(
        seen,
        ["thing/product/DRONE1/state", "thing/product/DOCK1/events"]
    );

    // FogCloud gateway: its own up topic only.
    let fog = connect(port, "fog", Some(("fog", "pw-fog"))).await.unwrap();
    fog.publish("fogcloud/fpk/sub1/thing/up/ota", "as the sub-device")
        .await;
    fog.publish("fogcloud/fpk/gw1/thing/down/ota", "own downlink")
        .await;
    fog.publish("fogcloud/fpk/gw1/thing/up/ota", "fog-marker")
        .await;
    let seen: Vec<String> = obs
        .until("fog-marker")
        .await
        .into_iter()
        .map(|(t, _)| t)
        .collect();
    assert_eq!(seen, ["fogcloud/fpk/gw1/thing/up/ota"]);
    drop(mosquitto);
}

#[test]
fn broker_config_without_a_task_is_a_usage_error() {
    let output = Command::new(env!("CARGO_BIN_EXE_ota-console"))
        .arg("broker-config")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--mosquitto"));
}

/// Simulated units sharing connections (`sim --per-connection 2 --provision DIR`) log in to a
/// Mosquitto configured by `broker-config` as the site users provisioning gave them, and every
/// device's own messages pass the ACL: each announcement reaches the console, and a notice to
/// each plain device reaches that device.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_simulator_connections_log_in_as_their_site_users() {
    use ota_console::sim::{SimConfig, SimFleet, SimLogins};

    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let port = free_port();
    let mut cfg = SimConfig {
        broker_url: format!("mqtt://127.0.0.1:{port}"),
        units: sim_units(&[
            ("fogcloud", 4),
            ("fogcloud-gateways", 2),
            ("subs", 2),
            ("dji-docks", 2),
        ]),
        per_connection: 2,
        product_key: "fpk".to_owned(),
        name_prefix: "st".to_owned(),
        ..SimConfig::default()
    };
    let (logins, added) = SimLogins::provision(&data, &cfg).unwrap();
    assert_eq!(added, 4, "one site user per shared connection");
    cfg.logins = std::sync::Arc::new(logins);
    let out_dir = tmp.path().join("mosquitto");
    let output = Command::new(env!("CARGO_BIN_EXE_ota-console"))
        .arg("broker-config")
        .arg("--mosquitto")
        .arg(&out_dir)
        .arg("--data-dir")
        .arg(&data)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "broker-config failed: {stderr}");
    let console = ConsoleCredentials::load(&data.join(CONSOLE_FILE)).unwrap();
    let snippet = std::fs::read_to_string(out_dir.join("ota-console.conf")).unwrap();
    let extra = format!("max_queued_messages 100000\n{snippet}");
    let mosquitto = Mosquitto::start(tmp.path(), port, &extra);
    let mut obs = connect(
        port,
        "console",
        Some((&console.username, &console.password)),
    )
    .await
    .unwrap();
    assert!(obs.subscribe("#").await);

    let fleet = SimFleet::start(cfg).await.unwrap();
    let mut expected: std::collections::BTreeSet<String> = (1..=4)
        .map(|i| format!("fogcloud/fpk/st-fog-000{i}/thing/up/ota"))
        .chain((1..=2).map(|g| format!("fogcloud/fpk/st-fgw-000{g}/thing/up/ota")))
        .chain((1..=2).flat_map(|d| {
            [
                format!("thing/product/st-dock-000{d}/state"),
                format!("thing/product/st-drone-000{d}/state"),
            ]
        }))
        .collect();
    timeout(WAIT, async {
        while !expected.is_empty() {
            let (topic, _) = obs.publishes.recv().await.unwrap();
            expected.remove(&topic);
        }
    })
    .await
    .unwrap_or_else(|_| panic!("never heard from {expected:?}"));

    let empty = r#"{"id":1,"version":"1.0","method":"firmware.post","params":{}}"#;
    for i in 1..=4 {
        obs.publish(&format!("fogcloud/fpk/st-fog-000{i}/thing/down/ota"), empty)
            .await;
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let stats = fleet.stats();
        let answered = stats
            .devices
            .iter()
            .filter(|d| d.nothing_pending == 1)
            .count();
        if answered == 4 {
            assert!(stats.devices.iter().all(|d| d.connects == 1), "{stats:#?}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{answered} of 4 devices got their notice"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    fleet.shutdown().await;
    drop(mosquitto);
}
