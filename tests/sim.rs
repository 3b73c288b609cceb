//! Black-box tests of the device simulator: simulated devices against the embedded broker and the
//! console's firmware HTTP server. A raw MQTT observer records everything; console-side notices are
//! published as raw JSON in the documents' shapes, and what the devices publish is checked
//! field by field as `serde_json::Value` (never through the console's own decoders).

// Test code throughout: clippy's allow-unwrap-in-tests (clippy.toml) goes by `cfg(test)`.
#![cfg(test)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use md5::{Digest, Md5};
use ota_console::device_id::DeviceId;
use ota_console::protocol::registry;
use ota_console::sim::{Behaviour, DeviceState, FaultOdds, SimConfig, SimFleet, UnitSpec};
use ota_console::testing::sim_units;
use ota_console::transport::broker::{BrokerSettings, EmbeddedBroker};
use ota_console::transport::http::FirmwareServer;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{Value, json};
use tokio::sync::Notify;

const WAIT: Duration = Duration::from_secs(15);
const PK: &str = "a1Test";

/// Everything one test needs: a broker, a firmware server, an observer and a publisher.
struct Env {
    broker_url: String,
    /// Base URL of the firmware server (`http://127.0.0.1:port`).
    http: String,
    /// Where the firmware is offered.
    url: String,
    firmware: Vec<u8>,
    md5: String,
    sha256: String,
    checksum: String,
    obs: Observer,
    console: AsyncClient,
    _server: FirmwareServer,
    _dir: tempfile::TempDir,
}

impl Env {
    async fn start() -> Env {
        // The tests' dialect file is registered for every test of this binary alike, so the
        // tests that go over every registered simulator always see it.
        ota_console::testing::widget::register_widget();
        let broker =
            EmbeddedBroker::start(BrokerSettings::open("127.0.0.1:0".parse().unwrap())).unwrap();
        let addr = broker.local_addr();
        // 64 KiB: sixteen 4 KiB slices, so every 10 % mark is passed on its own.
        let firmware: Vec<u8> = (0..65_536u32).map(|i| (i * 31 % 251) as u8).collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("firmware");
        std::fs::write(&path, &firmware).unwrap();
        let server = FirmwareServer::start("127.0.0.1:0".parse().unwrap(), None)
            .await
            .unwrap();
        let url = server.offer(path, "fw.bin", "sim-test-package");
        let obs = Observer::start(addr).await;
        let console = publisher(addr);
        let sum = firmware
            .iter()
            .fold(0u32, |a, b| a.wrapping_add(u32::from(*b)));
        Env {
            broker_url: format!("mqtt://{addr}"),
            http: server.public_base(),
            url,
            md5: hex::encode(Md5::digest(&firmware)),
            sha256: hex::encode(sha2::Sha256::digest(&firmware)),
            checksum: hex::encode(sum.to_le_bytes()),
            firmware,
            obs,
            console,
            _server: server,
            _dir: dir,
        }
    }

    fn config(&self, prefix: &str) -> SimConfig {
        SimConfig {
            broker_url: self.broker_url.clone(),
            product_key: PK.to_owned(),
            name_prefix: prefix.to_owned(),
            seed: 7,
            // Relaxed: these tests publish notices by hand the instant a device reports, which a
            // strict device (subscribing after its report) would miss. The strict tests below
            // turn it on themselves.
            strict: false,
            behaviour: Behaviour {
                install: Duration::ZERO,
                reply_timeout: Duration::from_secs(2),
                offline_for: Duration::from_millis(300),
                ..Behaviour::default()
            },
            ..SimConfig::default()
        }
    }

    async fn publish(&self, topic: &str, payload: Value) {
        self.console
            .publish(topic, QoS::AtLeastOnce, false, payload.to_string())
            .await
            .unwrap();
    }

    fn url(&self) -> String {
        self.url.clone()
    }
}

/// Serves `bytes` at `/fw.bin` with axum's own server, which writes header names in lower case
/// (`content-length`), as the console's firmware server did before issue #11.
async fn serve_firmware(bytes: Vec<u8>) -> SocketAddr {
    let bytes = Arc::new(bytes);
    let app = axum::Router::new().route(
        "/fw.bin",
        axum::routing::get(move || {
            let bytes = bytes.clone();
            async move { bytes.as_ref().clone() }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// A console-side client for publishing notices.
fn publisher(addr: SocketAddr) -> AsyncClient {
    let mut opts = MqttOptions::new("test-console", addr.ip().to_string(), addr.port());
    opts.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut ev) = AsyncClient::new(opts, 64);
    tokio::spawn(async move {
        loop {
            if ev.poll().await.is_err() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    });
    client
}

/// Records every message on the broker (`#`).
#[derive(Clone)]
struct Observer {
    seen: Arc<Mutex<Vec<(String, Value)>>>,
    news: Arc<Notify>,
}

impl Observer {
    async fn start(addr: SocketAddr) -> Observer {
        let mut opts = MqttOptions::new("test-observer", addr.ip().to_string(), addr.port());
        opts.set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut ev) = AsyncClient::new(opts, 64);
        client.subscribe("#", QoS::AtLeastOnce).await.unwrap();
        let obs = Observer {
            seen: Arc::default(),
            news: Arc::default(),
        };
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let mut ready_tx = Some(ready_tx);
        let o = obs.clone();
        tokio::spawn(async move {
            let _client = client;
            loop {
                match ev.poll().await {
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if let Some(tx) = ready_tx.take() {
                            let _ = tx.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let v = serde_json::from_slice(&p.payload).unwrap_or(Value::Null);
                        o.seen.lock().unwrap().push((p.topic.clone(), v));
                        o.news.notify_waiters();
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
        tokio::time::timeout(WAIT, ready_rx).await.unwrap().unwrap();
        obs
    }

    fn all(&self, topic: &str) -> Vec<Value> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(t, _)| t == topic)
            .map(|(_, v)| v.clone())
            .collect()
    }

    fn matching(&self, topic: &str, pred: &impl Fn(&Value) -> bool) -> Vec<Value> {
        self.all(topic).into_iter().filter(|v| pred(v)).collect()
    }

    /// Waits until `n` messages on `topic` satisfy `pred`; returns them.
    async fn wait_n(&self, topic: &str, n: usize, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let notified = self.news.notified();
            let found = self.matching(topic, &pred);
            if found.len() >= n {
                return found;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!(
                    "timed out waiting for {n} messages on {topic}; have {:#?}",
                    self.all(topic)
                );
            }
        }
    }

    async fn wait(&self, topic: &str, pred: impl Fn(&Value) -> bool) -> Value {
        self.wait_n(topic, 1, pred).await.remove(0)
    }
}

/// Waits until `cond` holds for the fleet's stats.
async fn wait_stats(
    fleet: &SimFleet,
    what: &str,
    cond: impl Fn(&ota_console::sim::SimStats) -> bool,
) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond(&fleet.stats()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}: {:#?}",
            fleet.stats()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    k.sort();
    k
}

fn is_uuid(v: &Value) -> bool {
    v.as_str().is_some_and(|s| uuid::Uuid::parse_str(s).is_ok())
}

// ---------------------------------------------------------------- every dialect

/// Every registered dialect's simulator starts two units of each kind it offers, each unit's
/// devices of that dialect, and every unit connects: a dialect's simulator is exercised by
/// registering it (the dialect-specific behaviour is checked below, dialect by dialect).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_registered_simulator_starts_each_kind_of_unit() {
    let env = Env::start().await;
    let factories = registry::sim_factories();
    assert_eq!(
        factories.len(),
        registry::all().len(),
        "a dialect without a simulator"
    );
    for factory in factories {
        for kind in factory.kinds() {
            let fleet = SimFleet::start(SimConfig {
                units: vec![UnitSpec::new(factory, kind, 2)],
                ..env.config(&format!("every-{}", kind.tag))
            })
            .await
            .unwrap();
            let ids = fleet.device_ids();
            let members = kind.members.as_ref().map_or(0, |m| m.default);
            assert!(ids.len() >= 2 * (1 + members), "{}: {ids:?}", kind.flag);
            assert!(
                ids.iter().all(|id| id.dialect() == factory.dialect()),
                "{ids:?}"
            );
            wait_stats(&fleet, &format!("both {} connected", kind.flag), |s| {
                s.devices.iter().filter(|d| d.connects > 0).count() >= 2
            })
            .await;
            fleet.shutdown().await;
        }
    }
}

// ---------------------------------------------------------------- Alibaba

fn ali_topic(kind: &str, dn: &str) -> String {
    format!("/ota/device/{kind}/{PK}/{dn}")
}

fn ali_notice(env: &Env, version: &str, md5: &str) -> Value {
    json!({
        "code": "1000",
        "data": {
            "size": env.firmware.len(), "sign": md5, "version": version, "url": env.url(),
            "signMethod": "Md5", "md5": md5,
        },
        "id": 1568864790381u64,
        "message": "success",
    })
}

fn has_version(v: &str) -> impl Fn(&Value) -> bool + '_ {
    move |m: &Value| m["params"]["version"] == v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aliyun_push_upgrade_reports_string_steps_then_informs() {
    let env = Env::start().await;
    let cfg = SimConfig {
        units: sim_units(&[("aliyun", 1)]),
        ..env.config("ok")
    };
    let fleet = SimFleet::start(cfg).await.unwrap();
    let dn = "ok-ali-0001";
    assert_eq!(fleet.device_ids(), vec![DeviceId::aliyun(PK, dn).unwrap()]);
    let inform = env
        .obs
        .wait(&ali_topic("inform", dn), has_version("1.0.0"))
        .await;
    assert_eq!(keys(&inform), ["id", "params"]);
    assert!(inform["id"].is_string());
    assert_eq!(inform["params"], json!({ "version": "1.0.0" }));

    env.publish(
        &ali_topic("upgrade", dn),
        ali_notice(&env, "2.0.0", &env.md5),
    )
    .await;
    let done = env
        .obs
        .wait(&ali_topic("inform", dn), has_version("2.0.0"))
        .await;
    assert_eq!(done["params"], json!({ "version": "2.0.0" }));

    let progress = env.obs.all(&ali_topic("progress", dn));
    let steps: Vec<&str> = progress
        .iter()
        .map(|p| p["params"]["step"].as_str().expect("step is a string"))
        .collect();
    assert_eq!(
        steps,
        ["10", "20", "30", "40", "50", "60", "70", "80", "90", "100"]
    );
    for p in &progress {
        assert_eq!(keys(p), ["id", "params"]);
        assert!(p["id"].is_string());
        assert_eq!(
            keys(&p["params"]),
            ["desc", "step"],
            "no module for the default one"
        );
    }
    wait_stats(&fleet, "success recorded", |s| {
        s.devices[0].upgrades_succeeded == 1
    })
    .await;
    let s = &fleet.stats().devices[0];
    assert_eq!(s.version, "2.0.0");
    assert_eq!(s.state, DeviceState::Idle);
    assert_eq!(s.bytes_downloaded, env.firmware.len() as u64);
    assert_eq!(s.progress_sent, 10);
    fleet.shutdown().await;
}

/// Runs one Alibaba device with `faults`, sends `notice`, returns its final progress message.
async fn aliyun_failure(env: &Env, prefix: &str, faults: FaultOdds, notice: Value) -> Value {
    let cfg = SimConfig {
        units: sim_units(&[("aliyun", 1)]),
        behaviour: Behaviour {
            faults,
            ..env.config(prefix).behaviour
        },
        ..env.config(prefix)
    };
    let fleet = SimFleet::start(cfg).await.unwrap();
    let dn = format!("{prefix}-ali-0001");
    env.obs
        .wait(&ali_topic("inform", &dn), has_version("1.0.0"))
        .await;
    env.publish(&ali_topic("upgrade", &dn), notice).await;
    let fail = env
        .obs
        .wait(&ali_topic("progress", &dn), |m| {
            m["params"]["step"]
                .as_str()
                .is_some_and(|s| s.starts_with('-'))
        })
        .await;
    wait_stats(&fleet, "failure recorded", |s| {
        s.devices[0].upgrades_failed == 1
    })
    .await;
    assert!(
        env.obs
            .matching(&ali_topic("inform", &dn), &has_version("2.0.0"))
            .is_empty(),
        "a failed device must not inform the new version"
    );
    fleet.shutdown().await;
    fail
}

/// Finding 1 of issue #11 end to end: a firmware server that writes `content-length` in lower
/// case makes a strict device (an embedded SDK's client) fail its download with -2, while the
/// relaxed client (reqwest) downloads from it; both upgrade from the console's own server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_devices_need_exact_header_names_relaxed_ones_do_not() {
    let env = Env::start().await;
    let lower_case = serve_firmware(env.firmware.clone()).await;
    let mut notice = ali_notice(&env, "2.0.0", &env.md5);
    notice["data"]["url"] = json!(format!("http://{lower_case}/fw.bin"));
    let strict = SimFleet::start(SimConfig {
        units: sim_units(&[("aliyun", 1)]),
        strict: true,
        ..env.config("lc")
    })
    .await
    .unwrap();
    let lc = "lc-ali-0001";
    env.obs
        .wait(&ali_topic("inform", lc), has_version("1.0.0"))
        .await;
    // A strict device subscribes only after its report: repeat the notice until it answers.
    let failed = |m: &Value| {
        m["params"]["step"]
            .as_str()
            .is_some_and(|s| s.starts_with('-'))
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    while env
        .obs
        .matching(&ali_topic("progress", lc), &failed)
        .is_empty()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no answer from {lc}"
        );
        env.publish(&ali_topic("upgrade", lc), notice.clone()).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let fail = env.obs.wait(&ali_topic("progress", lc), failed).await;
    strict.shutdown().await;
    assert_eq!(fail["params"]["step"], "-2", "{fail}");
    assert!(
        fail["params"]["desc"]
            .as_str()
            .is_some_and(|d| d.contains("Content-Length")),
        "{fail}"
    );

    let fleet = SimFleet::start(SimConfig {
        units: sim_units(&[("aliyun", 1)]),
        ..env.config("rx")
    })
    .await
    .unwrap();
    let dn = "rx-ali-0001";
    env.obs
        .wait(&ali_topic("inform", dn), has_version("1.0.0"))
        .await;
    env.publish(&ali_topic("upgrade", dn), notice).await;
    env.obs
        .wait(&ali_topic("inform", dn), has_version("2.0.0"))
        .await;
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aliyun_failures_report_their_codes() {
    let env = Env::start().await;
    let notice = ali_notice(&env, "2.0.0", &env.md5);
    let cases = [
        (
            "dl",
            FaultOdds {
                download: 1.0,
                ..FaultOdds::default()
            },
            notice.clone(),
            "-2",
        ),
        (
            "vf",
            FaultOdds {
                verify: 1.0,
                ..FaultOdds::default()
            },
            notice.clone(),
            "-3",
        ),
        (
            "fl",
            FaultOdds {
                flash: 1.0,
                ..FaultOdds::default()
            },
            notice.clone(),
            "-4",
        ),
        // No injected fault: a wrong digest in the notice is caught by real verification.
        (
            "md",
            FaultOdds::default(),
            ali_notice(&env, "2.0.0", "00000000000000000000000000000000"),
            "-3",
        ),
    ];
    for (prefix, faults, notice, code) in cases {
        let fail = aliyun_failure(&env, prefix, faults, notice).await;
        assert_eq!(fail["params"]["step"], code, "{prefix}: {fail}");
        assert!(
            fail["params"]["desc"]
                .as_str()
                .is_some_and(|d| !d.is_empty())
        );
        assert!(fail["id"].is_string());
    }
    // A URL that answers 404 is a download failure.
    let mut missing = ali_notice(&env, "2.0.0", &env.md5);
    missing["data"]["url"] = json!(format!("{}/nope.bin", env.http));
    let fail = aliyun_failure(&env, "nf", FaultOdds::default(), missing).await;
    assert_eq!(fail["params"]["step"], "-2");
    // Progress before a download break stops at the break (half the file).
    let steps: Vec<Value> = env
        .obs
        .all(&ali_topic("progress", "dl-ali-0001"))
        .iter()
        .map(|p| p["params"]["step"].clone())
        .collect();
    assert_eq!(steps, ["10", "20", "30", "40", "50", "-2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aliyun_module_sha256_and_invalid_notices() {
    let env = Env::start().await;
    let cfg = SimConfig {
        units: sim_units(&[("aliyun", 1)]),
        modules: vec!["MCU".to_owned()],
        ..env.config("mod")
    };
    let fleet = SimFleet::start(cfg).await.unwrap();
    let dn = "mod-ali-0001";
    let mcu = env
        .obs
        .wait(&ali_topic("inform", dn), |m| m["params"]["module"] == "MCU")
        .await;
    assert_eq!(
        mcu["params"],
        json!({ "version": "1.0.0", "module": "MCU" })
    );

    // Missing url: SDKs treat every field as required, so the device ignores the notice.
    let mut broken = ali_notice(&env, "9.9.9", &env.md5);
    broken["data"].as_object_mut().unwrap().remove("url");
    env.publish(&ali_topic("upgrade", dn), broken).await;
    wait_stats(&fleet, "invalid notice ignored", |s| {
        s.devices[0].notices_ignored == 1
    })
    .await;

    let notice = json!({
        "code": "1000",
        "data": {
            "size": env.firmware.len(), "sign": env.sha256, "version": "3.0.0", "url": env.url(),
            "signMethod": "SHA256", "module": "MCU",
        },
        "id": 2, "message": "success",
    });
    env.publish(&ali_topic("upgrade", dn), notice).await;
    let done = env
        .obs
        .wait(&ali_topic("inform", dn), has_version("3.0.0"))
        .await;
    assert_eq!(
        done["params"],
        json!({ "version": "3.0.0", "module": "MCU" })
    );
    for p in env.obs.all(&ali_topic("progress", dn)) {
        assert_eq!(p["params"]["module"], "MCU");
    }
    let s = &fleet.stats().devices[0];
    assert_eq!(s.version, "1.0.0", "the default module is untouched");
    assert_eq!(s.module_versions["MCU"], "3.0.0");
    fleet.shutdown().await;
}

fn ali_get_topic(dn: &str, reply: bool) -> String {
    let kind = if reply { "get_reply" } else { "get" };
    format!("/sys/{PK}/{dn}/thing/ota/firmware/{kind}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aliyun_pull_mode_asks_and_follows_the_reply() {
    let env = Env::start().await;
    let mut cfg = SimConfig {
        units: sim_units(&[("aliyun", 2)]),
        ..env.config("pull")
    };
    cfg.behaviour.pull = true;
    let fleet = SimFleet::start(cfg).await.unwrap();
    for dn in ["pull-ali-0001", "pull-ali-0002"] {
        let get = env.obs.wait(&ali_get_topic(dn, false), |_| true).await;
        assert_eq!(keys(&get), ["id", "method", "params", "version"]);
        assert!(get["id"].is_string());
        assert_eq!(get["version"], "1.0");
        assert_eq!(get["method"], "thing.ota.firmware.get");
        assert_eq!(get["params"], json!({ "module": "default" }));
    }
    let mut reply = ali_notice(&env, "2.0.0", &env.md5);
    reply["code"] = json!(200);
    reply["id"] = json!("1");
    env.publish(&ali_get_topic("pull-ali-0001", true), reply)
        .await;
    let nothing = json!({ "id": "1", "code": 200, "data": {}, "message": "success" });
    env.publish(&ali_get_topic("pull-ali-0002", true), nothing)
        .await;
    env.obs
        .wait(&ali_topic("inform", "pull-ali-0001"), has_version("2.0.0"))
        .await;
    wait_stats(&fleet, "nothing pending counted", |s| {
        s.devices[1].nothing_pending == 1
    })
    .await;
    assert_eq!(fleet.stats().devices[1].version, "1.0.0");
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aliyun_offline_mid_download_comes_back_and_asks() {
    let env = Env::start().await;
    let mut cfg = SimConfig {
        units: sim_units(&[("aliyun", 1)]),
        ..env.config("off")
    };
    cfg.behaviour.faults.offline_mid_download = 1.0;
    let fleet = SimFleet::start(cfg).await.unwrap();
    let dn = "off-ali-0001";
    env.obs
        .wait(&ali_topic("inform", dn), has_version("1.0.0"))
        .await;
    assert!(
        env.obs.all(&ali_get_topic(dn, false)).is_empty(),
        "push mode: no get at start"
    );
    env.publish(
        &ali_topic("upgrade", dn),
        ali_notice(&env, "2.0.0", &env.md5),
    )
    .await;
    // Back online: announces its version again, then asks for its pending upgrade.
    env.obs
        .wait_n(&ali_topic("inform", dn), 2, has_version("1.0.0"))
        .await;
    let get = env.obs.wait(&ali_get_topic(dn, false), |_| true).await;
    assert_eq!(get["method"], "thing.ota.firmware.get");
    let steps: Vec<Value> = env
        .obs
        .all(&ali_topic("progress", dn))
        .iter()
        .map(|p| p["params"]["step"].clone())
        .collect();
    assert_eq!(
        steps,
        ["10", "20", "30", "40", "50"],
        "no failure code: it just vanished"
    );
    let s = &fleet.stats().devices[0];
    assert_eq!(s.connects, 2);
    assert_eq!(s.gets_sent, 1);
    fleet.shutdown().await;
}

// ---------------------------------------------------------------- FogCloud

fn fog_topic(dn: &str, up: bool) -> String {
    let dir = if up { "up" } else { "down" };
    format!("fogcloud/{PK}/{dn}/thing/{dir}/ota")
}

fn method(m: &'static str) -> impl Fn(&Value) -> bool {
    move |v: &Value| v["method"] == m
}

fn fog_offer(env: &Env, version: &str, checksum: &str) -> Value {
    json!({
        "size": env.firmware.len(), "sign": env.md5, "version": version, "url": env.url(),
        "sign_method": "MD5", "checksum": checksum, "module": "default",
        "description": "固件描述", "task_id": "123",
    })
}

fn assert_envelope(v: &Value) {
    assert_eq!(keys(v), ["id", "method", "params", "version"], "{v}");
    assert!(v["id"].is_u64(), "FogCloud ids are numbers: {v}");
    assert_eq!(v["version"], "1.0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fogcloud_device_upgrades_and_fails_with_chinese_desc() {
    let env = Env::start().await;
    let cfg = SimConfig {
        units: sim_units(&[("fogcloud", 3)]),
        ..env.config("fc")
    };
    let fleet = SimFleet::start(cfg).await.unwrap();
    let up = |i: usize| fog_topic(&format!("fc-fog-000{i}"), true);
    let down = |i: usize| fog_topic(&format!("fc-fog-000{i}"), false);
    for i in 1..=3 {
        let v = env.obs.wait(&up(i), method("version.post")).await;
        assert_envelope(&v);
        assert_eq!(
            v["params"],
            json!({ "version": "1.0.0", "module": "default" })
        );
    }
    let push = |id: u64, params: Value| json!({ "id": id, "version": "1.0", "method": "firmware.post", "params": params });
    env.publish(&down(1), push(5, fog_offer(&env, "2.0.0", &env.checksum)))
        .await;
    env.publish(&down(2), push(6, fog_offer(&env, "2.0.0", "00000000")))
        .await;
    let mut no_url = fog_offer(&env, "2.0.0", &env.checksum);
    no_url["url"] = json!(format!("{}/nope.bin", env.http));
    env.publish(&down(3), push(7, no_url)).await;

    let done = env
        .obs
        .wait(&up(1), |v| {
            v["method"] == "version.post" && v["params"]["version"] == "2.0.0"
        })
        .await;
    assert_eq!(
        done["params"],
        json!({ "version": "2.0.0", "module": "default" })
    );
    let steps: Vec<Value> = env
        .obs
        .matching(&up(1), &method("upgrade.post"))
        .iter()
        .map(|v| {
            assert_envelope(v);
            assert_eq!(v["params"]["module"], "default");
            assert_eq!(v["params"]["task_id"], "123");
            v["params"]["step"].clone()
        })
        .collect();
    assert_eq!(steps, (1..=10).map(|i| json!(i * 10)).collect::<Vec<_>>());

    let is_fail = |v: &Value| v["method"] == "upgrade.post" && v["params"]["step"] == -1;
    let bad_sum = env.obs.wait(&up(2), is_fail).await;
    assert_eq!(
        keys(&bad_sum["params"]),
        ["desc", "module", "step", "task_id"]
    );
    assert_eq!(bad_sum["params"]["desc"], "OTA升级失败,升级包校验失败。");
    assert_eq!(bad_sum["params"]["task_id"], "123");
    let no_file = env.obs.wait(&up(3), is_fail).await;
    assert_eq!(
        no_file["params"]["desc"],
        "OTA升级失败,请求不到升级包信息。"
    );
    wait_stats(&fleet, "two failures", |s| s.totals().upgrades_failed == 2).await;
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fogcloud_pull_and_offline_return_use_firmware_get() {
    let env = Env::start().await;
    let mut cfg = SimConfig {
        units: sim_units(&[("fogcloud", 2)]),
        ..env.config("fp")
    };
    cfg.behaviour.pull = true;
    let fleet = SimFleet::start(cfg).await.unwrap();
    let (up1, down1) = (
        fog_topic("fp-fog-0001", true),
        fog_topic("fp-fog-0001", false),
    );
    let (up2, down2) = (
        fog_topic("fp-fog-0002", true),
        fog_topic("fp-fog-0002", false),
    );
    let get1 = env.obs.wait(&up1, method("firmware.get")).await;
    assert_envelope(&get1);
    assert_eq!(get1["params"], json!({ "module": "default" }));
    let get2 = env.obs.wait(&up2, method("firmware.get")).await;
    // The answer is firmware.post with the request's id.
    let answer = |id: &Value, params: Value| json!({ "id": id, "version": "1.0", "method": "firmware.post", "params": params });
    env.publish(
        &down1,
        answer(&get1["id"], fog_offer(&env, "2.0.0", &env.checksum)),
    )
    .await;
    env.publish(&down2, answer(&get2["id"], json!({}))).await;
    env.obs
        .wait(&up1, |v| {
            v["method"] == "version.post" && v["params"]["version"] == "2.0.0"
        })
        .await;
    wait_stats(&fleet, "nothing pending", |s| {
        s.devices[1].nothing_pending == 1
    })
    .await;
    fleet.shutdown().await;

    // A device that drops off mid-download asks with firmware.get when it is back.
    let mut cfg = SimConfig {
        units: sim_units(&[("fogcloud", 1)]),
        ..env.config("fo")
    };
    cfg.behaviour.faults.offline_mid_download = 1.0;
    let fleet = SimFleet::start(cfg).await.unwrap();
    let (up, down) = (
        fog_topic("fo-fog-0001", true),
        fog_topic("fo-fog-0001", false),
    );
    env.obs.wait(&up, method("version.post")).await;
    assert!(env.obs.matching(&up, &method("firmware.get")).is_empty());
    let push = json!({ "id": 9, "version": "1.0", "method": "firmware.post", "params": fog_offer(&env, "2.0.0", &env.checksum) });
    env.publish(&down, push).await;
    env.obs.wait_n(&up, 2, method("version.post")).await;
    env.obs.wait(&up, method("firmware.get")).await;
    assert!(
        env.obs
            .matching(&up, &method("upgrade.post"))
            .iter()
            .all(|v| v["params"]["step"].as_i64().is_some_and(|s| s >= 0)),
        "going offline is not reported as a failure"
    );
    fleet.shutdown().await;
}

#[expect(
    clippy::too_many_lines,
    reason = "one scenario on the wire, each step of the upgrade in turn"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fogcloud_gateway_upgrades_several_subs_from_one_message() {
    let env = Env::start().await;
    let cfg = SimConfig {
        units: sim_units(&[("fogcloud-gateways", 1), ("subs", 3)]),
        ..env.config("gw")
    };
    let fleet = SimFleet::start(cfg).await.unwrap();
    assert_eq!(fleet.device_ids().len(), 4);
    let (up, down) = (
        fog_topic("gw-fgw-0001", true),
        fog_topic("gw-fgw-0001", false),
    );
    let subs = env.obs.wait(&up, method("sub.version.post")).await;
    assert_envelope(&subs);
    let entries = subs["params"].as_array().unwrap();
    assert_eq!(entries.len(), 3);
    for (k, e) in entries.iter().enumerate() {
        assert_eq!(
            e,
            &json!({
                "identity": { "product_key": PK, "device_name": format!("gw-fgw-0001-s00{}", k + 1) },
                "version": "1.0.0", "module": "default",
            })
        );
    }
    let entry = |sub: usize, checksum: &str, task: &str| {
        let mut e = fog_offer(&env, "2.0.0", checksum);
        let obj = e.as_object_mut().unwrap();
        obj.remove("description");
        obj.insert("desc".into(), json!("string"));
        obj.insert("task_id".into(), json!(task));
        obj.insert(
            "identity".into(),
            json!({ "product_key": PK, "device_name": format!("gw-fgw-0001-s00{sub}") }),
        );
        e
    };
    let push = json!({
        "id": 11, "version": "1.0", "method": "sub.firmware.post",
        "params": [entry(1, &env.checksum, "201"), entry(2, &env.checksum, "202"), entry(3, "ffffffff", "203")],
    });
    env.publish(&down, push).await;
    wait_stats(&fleet, "two subs upgraded, one failed", |s| {
        let t = s.totals();
        t.upgrades_succeeded == 2 && t.upgrades_failed == 1
    })
    .await;
    // Success reports may come in one message or two, depending on timing.
    let reported = |dn: &'static str| {
        move |v: &Value| {
            v["method"] == "sub.version.post"
                && v["params"].as_array().is_some_and(|a| {
                    a.iter()
                        .any(|e| e["identity"]["device_name"] == dn && e["version"] == "2.0.0")
                })
        }
    };
    env.obs.wait(&up, reported("gw-fgw-0001-s001")).await;
    env.obs.wait(&up, reported("gw-fgw-0001-s002")).await;
    env.obs
        .wait(&up, |v| {
            v["method"] == "sub.upgrade.post"
                && v["params"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|e| e["step"] == -1))
        })
        .await;
    let versions: Vec<Value> = env
        .obs
        .matching(&up, &method("sub.version.post"))
        .into_iter()
        .skip(1)
        .flat_map(|v| v["params"].as_array().unwrap().clone())
        .collect();
    let mut upgraded: Vec<&str> = versions
        .iter()
        .map(|e| {
            assert_eq!(e["version"], "2.0.0");
            assert_eq!(e["module"], "default");
            e["identity"]["device_name"].as_str().unwrap()
        })
        .collect();
    upgraded.sort();
    assert_eq!(upgraded, ["gw-fgw-0001-s001", "gw-fgw-0001-s002"]);
    let progress: Vec<Value> = env
        .obs
        .matching(&up, &method("sub.upgrade.post"))
        .into_iter()
        .flat_map(|v| {
            assert_envelope(&v);
            v["params"].as_array().unwrap().clone()
        })
        .collect();
    for (task, dn) in [("201", "gw-fgw-0001-s001"), ("202", "gw-fgw-0001-s002")] {
        let steps: Vec<i64> = progress
            .iter()
            .filter(|e| e["identity"]["device_name"] == dn)
            .map(|e| {
                assert_eq!(e["task_id"], task);
                assert_eq!(e["module"], "default");
                e["step"].as_i64().unwrap()
            })
            .collect();
        assert_eq!(steps, [10, 20, 30, 40, 50, 60, 70, 80, 90, 100], "{dn}");
    }
    let failed: Vec<&Value> = progress.iter().filter(|e| e["step"] == -1).collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["identity"]["device_name"], "gw-fgw-0001-s003");
    assert_eq!(failed[0]["task_id"], "203");
    assert_eq!(failed[0]["desc"], "OTA升级失败,升级包校验失败。");
    let gw = fleet.stats();
    let sub3 = gw
        .get(&DeviceId::fogcloud(PK, "gw-fgw-0001-s003").unwrap())
        .unwrap();
    assert_eq!(sub3.state, DeviceState::Failed { code: -1 });
    fleet.shutdown().await;
}

// ---------------------------------------------------------------- DJI

fn dji_topic(kind: &str, sn: &str) -> String {
    match kind {
        "status" | "status_reply" => format!("sys/product/{sn}/{kind}"),
        _ => format!("thing/product/{sn}/{kind}"),
    }
}

fn ota_create(env: &Env, tid: &str, bid: &str, drone: &str, dock: &str) -> Value {
    json!({
        "method": "ota_create", "tid": tid, "bid": bid, "timestamp": 1654070968655u64,
        "data": { "devices": [
            { "sn": drone, "product_version": "2.00.001", "file_url": env.url(), "md5": env.md5,
              "file_size": env.firmware.len(), "file_name": "wm245_2.00.001.zip",
              "firmware_upgrade_type": 3 },
            { "sn": dock, "product_version": "2.00.002", "firmware_upgrade_type": 2 },
        ]},
    })
}

/// Answers the dock's `update_topo` like a cloud would.
async fn reply_topo(env: &Env, dock: &str, topo: &Value) {
    let reply = json!({ "tid": topo["tid"], "bid": topo["bid"], "timestamp": 1, "method": "update_topo", "data": { "result": 0 } });
    env.publish(&dji_topic("status_reply", dock), reply).await;
}

#[expect(
    clippy::too_many_lines,
    reason = "one scenario on the wire, each step of the upgrade in turn"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dji_dock_announces_upgrades_and_counts_missing_event_replies() {
    let env = Env::start().await;
    let cfg = SimConfig {
        units: sim_units(&[("dji-docks", 1)]),
        ..env.config("dj")
    };
    let fleet = SimFleet::start(cfg).await.unwrap();
    let (dock, drone) = ("dj-dock-0001", "dj-drone-0001");
    let topo = env
        .obs
        .wait(&dji_topic("status", dock), method("update_topo"))
        .await;
    assert_eq!(keys(&topo), ["bid", "data", "method", "tid", "timestamp"]);
    assert!(is_uuid(&topo["tid"]) && is_uuid(&topo["bid"]) && topo["timestamp"].is_u64());
    let data = &topo["data"];
    assert_eq!(
        (data["type"].clone(), data["sub_type"].clone()),
        (json!(3), json!(0))
    );
    for k in ["device_secret", "nonce", "thing_version"] {
        assert!(data[k].as_str().is_some_and(|s| !s.is_empty()), "{k}");
    }
    let subs = data["sub_devices"].as_array().unwrap();
    assert_eq!(subs.len(), 1);
    assert_eq!(subs[0]["sn"], drone);
    assert_eq!(subs[0]["index"], "A");
    assert!(subs[0]["type"].is_i64() && subs[0]["sub_type"].is_i64());
    reply_topo(&env, dock, &topo).await;

    let dock_state = env.obs.wait(&dji_topic("state", dock), |_| true).await;
    assert_eq!(keys(&dock_state), ["bid", "data", "tid", "timestamp"]);
    assert_eq!(
        dock_state["data"],
        json!({ "firmware_version": "1.0.0", "compatible_status": 0 })
    );
    let drone_state = env.obs.wait(&dji_topic("state", drone), |_| true).await;
    assert_eq!(drone_state["data"], json!({ "firmware_version": "1.0.0" }));

    let bid = uuid::Uuid::new_v4().to_string();
    let tid = uuid::Uuid::new_v4().to_string();
    env.publish(
        &dji_topic("services", dock),
        ota_create(&env, &tid, &bid, drone, dock),
    )
    .await;
    let reply = env
        .obs
        .wait(&dji_topic("services_reply", dock), |_| true)
        .await;
    assert_eq!(keys(&reply), ["bid", "data", "method", "tid", "timestamp"]);
    assert_eq!(
        (reply["tid"].as_str(), reply["bid"].as_str()),
        (Some(tid.as_str()), Some(bid.as_str()))
    );
    assert_eq!(reply["method"], "ota_create");
    assert_eq!(
        reply["data"],
        json!({ "result": 0, "output": { "status": "in_progress" } })
    );

    // 10 download marks, 10 install marks, then "ok". Reply to all but the first.
    let events_topic = dji_topic("events", dock);
    let mut tids = Vec::new();
    for n in 1..=21 {
        let events = env
            .obs
            .wait_n(&events_topic, n, method("ota_progress"))
            .await;
        let ev = &events[n - 1];
        if n > 1 {
            let ack = json!({ "tid": ev["tid"], "bid": ev["bid"], "timestamp": 1, "method": "ota_progress", "data": { "result": 0 } });
            env.publish(&dji_topic("events_reply", dock), ack).await;
        }
        tids.push(ev["tid"].as_str().unwrap().to_owned());
    }
    let events = env.obs.all(&events_topic);
    assert_eq!(events.len(), 21);
    for ev in &events {
        assert_eq!(
            keys(ev),
            ["bid", "data", "method", "need_reply", "tid", "timestamp"]
        );
        assert_eq!(ev["need_reply"], 1);
        assert_eq!(ev["bid"], bid.as_str());
        assert!(is_uuid(&ev["tid"]));
    }
    tids.sort();
    tids.dedup();
    assert_eq!(tids.len(), 21, "a fresh tid per event");
    let progress = |ev: &Value| {
        let p = &ev["data"]["output"]["progress"];
        (
            p["step_key"].as_str().unwrap().to_owned(),
            p["percent"].as_i64().unwrap(),
        )
    };
    for (i, ev) in events.iter().take(20).enumerate() {
        assert_eq!(ev["data"]["result"], 0);
        assert_eq!(ev["data"]["output"]["status"], "in_progress");
        let key = if i < 10 {
            "download_firmware"
        } else {
            "upgrade_firmware"
        };
        assert_eq!(progress(ev), (key.to_owned(), (i as i64 % 10 + 1) * 10));
    }
    let last = &events[20];
    assert_eq!(last["data"]["output"]["status"], "ok");
    assert_eq!(progress(last), ("upgrade_firmware".to_owned(), 100));

    env.obs
        .wait(&dji_topic("state", drone), |v| {
            v["data"]["firmware_version"] == "2.00.001"
        })
        .await;
    env.obs
        .wait(&dji_topic("state", dock), |v| {
            v["data"]["firmware_version"] == "2.00.002"
        })
        .await;
    wait_stats(&fleet, "the missing events_reply", |s| {
        s.get(&DeviceId::dji(dock).unwrap())
            .unwrap()
            .missing_replies
            == 1
    })
    .await;
    let stats = fleet.stats();
    let d = stats.get(&DeviceId::dji(drone).unwrap()).unwrap();
    assert_eq!((d.version.as_str(), d.upgrades_succeeded), ("2.00.001", 1));
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dji_rejections_failures_and_drone_offline() {
    let env = Env::start().await;
    // Rejection: services_reply carries the DJI code and status "rejected"; no events follow.
    let mut cfg = SimConfig {
        units: sim_units(&[("dji-docks", 1)]),
        ..env.config("rj")
    };
    cfg.behaviour.faults.reject = 1.0;
    let fleet = SimFleet::start(cfg).await.unwrap();
    let (dock, drone) = ("rj-dock-0001", "rj-drone-0001");
    env.obs
        .wait(&dji_topic("status", dock), method("update_topo"))
        .await;
    env.publish(
        &dji_topic("services", dock),
        ota_create(&env, "t1", "b1", drone, dock),
    )
    .await;
    let reply = env
        .obs
        .wait(&dji_topic("services_reply", dock), |_| true)
        .await;
    let code = reply["data"]["result"].as_i64().unwrap();
    assert!(code == 312015 || code == 312704, "{reply}");
    assert_eq!(reply["data"]["output"]["status"], "rejected");
    assert_eq!(
        (reply["tid"].clone(), reply["bid"].clone()),
        (json!("t1"), json!("b1"))
    );
    wait_stats(&fleet, "rejection", |s| s.totals().rejected == 2).await;
    assert!(env.obs.all(&dji_topic("events", dock)).is_empty());
    fleet.shutdown().await;

    // Corrupted download: the task fails with a non-zero result.
    let mut cfg = SimConfig {
        units: sim_units(&[("dji-docks", 1)]),
        ..env.config("vf")
    };
    cfg.behaviour.faults.verify = 1.0;
    let fleet = SimFleet::start(cfg).await.unwrap();
    let (dock, drone) = ("vf-dock-0001", "vf-drone-0001");
    env.obs
        .wait(&dji_topic("status", dock), method("update_topo"))
        .await;
    env.publish(
        &dji_topic("services", dock),
        ota_create(&env, "t2", "b2", drone, dock),
    )
    .await;
    let failed = env
        .obs
        .wait(&dji_topic("events", dock), |v| {
            v["data"]["output"]["status"] == "failed"
        })
        .await;
    assert_ne!(failed["data"]["result"], 0);
    assert_eq!(failed["bid"], "b2");
    assert_eq!(
        failed["data"]["output"]["progress"]["step_key"],
        "download_firmware"
    );
    fleet.shutdown().await;

    // The drone drops off mid-download: empty sub_devices, failed 312022, then it comes back.
    let mut cfg = SimConfig {
        units: sim_units(&[("dji-docks", 1)]),
        ..env.config("do")
    };
    cfg.behaviour.faults.offline_mid_download = 1.0;
    let fleet = SimFleet::start(cfg).await.unwrap();
    let (dock, drone) = ("do-dock-0001", "do-drone-0001");
    let status = dji_topic("status", dock);
    env.obs.wait(&status, method("update_topo")).await;
    env.publish(
        &dji_topic("services", dock),
        ota_create(&env, "t3", "b3", drone, dock),
    )
    .await;
    let failed = env
        .obs
        .wait(&dji_topic("events", dock), |v| {
            v["data"]["output"]["status"] == "failed"
        })
        .await;
    assert_eq!(failed["data"]["result"], 312022);
    let topos = env.obs.wait_n(&status, 3, method("update_topo")).await;
    let sub_counts: Vec<usize> = topos
        .iter()
        .map(|t| t["data"]["sub_devices"].as_array().unwrap().len())
        .collect();
    assert_eq!(sub_counts, [1, 0, 1]);
    // Back on the dock, the drone reports its version again.
    env.obs
        .wait_n(&dji_topic("state", drone), 2, |_| true)
        .await;
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_seed_same_choices() {
    let env = Env::start().await;
    let cfg = |seed| {
        let mut c = SimConfig {
            units: sim_units(&[("aliyun", 40), ("fogcloud", 40), ("dji-docks", 20)]),
            seed,
            ..env.config("seed")
        };
        c.behaviour.faults.silent = 0.5;
        c
    };
    let silent =
        |f: &SimFleet| -> Vec<bool> { f.stats().devices.iter().map(|d| d.silent).collect() };
    let a = SimFleet::start(cfg(3)).await.unwrap();
    let first = silent(&a);
    a.shutdown().await;
    let b = SimFleet::start(cfg(3)).await.unwrap();
    assert_eq!(silent(&b), first);
    b.shutdown().await;
    let c = SimFleet::start(cfg(4)).await.unwrap();
    assert_ne!(silent(&c), first);
    c.shutdown().await;
    assert!(first.iter().any(|s| *s) && first.iter().any(|s| !*s));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bandwidth_cap_slows_the_download() {
    let env = Env::start().await;
    let mut cfg = SimConfig {
        units: sim_units(&[("aliyun", 1)]),
        ..env.config("bw")
    };
    cfg.behaviour.bandwidth_bytes_per_sec = Some(32 * 1024);
    let fleet = SimFleet::start(cfg).await.unwrap();
    let dn = "bw-ali-0001";
    env.obs
        .wait(&ali_topic("inform", dn), has_version("1.0.0"))
        .await;
    let start = std::time::Instant::now();
    env.publish(
        &ali_topic("upgrade", dn),
        ali_notice(&env, "2.0.0", &env.md5),
    )
    .await;
    env.obs
        .wait(&ali_topic("inform", dn), has_version("2.0.0"))
        .await;
    // 64 KiB at 32 KiB/s cannot finish in under 2 s (a lower bound only: never flaky).
    assert!(
        start.elapsed() >= Duration::from_millis(1900),
        "{:?}",
        start.elapsed()
    );
    fleet.shutdown().await;
}

// ---------------------------------------------------------------- shared connections

/// Established TCP connections to `port` on this host (a broker's clients), from
/// `/proc/net/tcp`: what the broker sees, whoever inside the process made them.
fn connections_to(port: u16) -> usize {
    ["/proc/self/net/tcp", "/proc/self/net/tcp6"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .flat_map(|text| {
            text.lines()
                .skip(1)
                .map(|line| {
                    let f: Vec<&str> = line.split_whitespace().collect();
                    let remote = f
                        .get(2)
                        .and_then(|a| a.rsplit(':').next())
                        .and_then(|p| u16::from_str_radix(p, 16).ok());
                    remote == Some(port) && f.get(3) == Some(&"01")
                })
                .collect::<Vec<_>>()
        })
        .filter(|established| *established)
        .count()
}

fn broker_port(env: &Env) -> u16 {
    env.broker_url.rsplit(':').next().unwrap().parse().unwrap()
}

/// Waits until `n` more connections than `before` reach the broker, and checks it stays so.
async fn wait_connections(port: u16, before: usize, n: usize) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while connections_to(port) != before + n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "expected {n} simulator connections, have {}",
            connections_to(port) - before
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `per_connection`: units of a kind share one connection (here 10 units of four kinds on 4
/// connections instead of 10), and on the wire each device is still itself: its own
/// announcements on its own topics, notices reaching only it, every publish acknowledged and
/// credited to the unit that sent it.
#[expect(
    clippy::too_many_lines,
    reason = "one scenario on the wire, each device checked in turn"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn units_sharing_a_connection_keep_their_own_topics() {
    let env = Env::start().await;
    let port = broker_port(&env);
    // The test's observer and its console-side publisher.
    let before = 2;
    let cfg = SimConfig {
        units: sim_units(&[
            ("aliyun", 3),
            ("fogcloud", 3),
            ("fogcloud-gateways", 2),
            ("subs", 2),
            ("dji-docks", 2),
        ]),
        per_connection: 3,
        ..env.config("sh")
    };
    let fleet = SimFleet::start(cfg).await.unwrap();
    for i in 1..=3 {
        env.obs
            .wait(
                &ali_topic("inform", &format!("sh-ali-000{i}")),
                has_version("1.0.0"),
            )
            .await;
        let v = env
            .obs
            .wait(
                &fog_topic(&format!("sh-fog-000{i}"), true),
                method("version.post"),
            )
            .await;
        assert_envelope(&v);
    }
    for g in 1..=2 {
        let gw = format!("sh-fgw-000{g}");
        let subs = env
            .obs
            .wait(&fog_topic(&gw, true), method("sub.version.post"))
            .await;
        let names: Vec<&str> = subs["params"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["identity"]["device_name"].as_str().unwrap())
            .collect();
        assert_eq!(names, [format!("{gw}-s001"), format!("{gw}-s002")]);
        let (dock, drone) = (format!("sh-dock-000{g}"), format!("sh-drone-000{g}"));
        env.obs
            .wait(&dji_topic("status", &dock), method("update_topo"))
            .await;
        env.obs.wait(&dji_topic("state", &dock), |_| true).await;
        env.obs.wait(&dji_topic("state", &drone), |_| true).await;
    }
    // Alibaba 3 → 1, FogCloud 3 → 1, gateways 2 → 1, docks 2 → 1.
    wait_connections(port, before, 4).await;

    // A notice for one device on a shared connection upgrades that device and no other.
    let push = json!({ "id": 5, "version": "1.0", "method": "firmware.post", "params": fog_offer(&env, "2.0.0", &env.checksum) });
    env.publish(&fog_topic("sh-fog-0002", false), push).await;
    env.publish(
        &ali_topic("upgrade", "sh-ali-0003"),
        ali_notice(&env, "2.0.0", &env.md5),
    )
    .await;
    let up2 = fog_topic("sh-fog-0002", true);
    env.obs
        .wait(&up2, |v| {
            v["method"] == "version.post" && v["params"]["version"] == "2.0.0"
        })
        .await;
    let steps: Vec<Value> = env
        .obs
        .matching(&up2, &method("upgrade.post"))
        .iter()
        .map(|v| v["params"]["step"].clone())
        .collect();
    assert_eq!(steps, (1..=10).map(|i| json!(i * 10)).collect::<Vec<_>>());
    env.obs
        .wait(&ali_topic("inform", "sh-ali-0003"), has_version("2.0.0"))
        .await;
    wait_stats(&fleet, "both upgraded, every publish acknowledged", |s| {
        let t = s.totals();
        t.upgrades_succeeded == 2
            && t.messages_published > 0
            && s.devices
                .iter()
                .all(|d| d.messages_acked == d.messages_published)
    })
    .await;
    for dn in ["sh-fog-0001", "sh-fog-0003"] {
        assert!(
            env.obs
                .matching(&fog_topic(dn, true), &method("upgrade.post"))
                .is_empty(),
            "{dn} shares the connection but got no notice"
        );
    }
    let stats = fleet.stats();
    let upgraded: Vec<String> = stats
        .devices
        .iter()
        .filter(|d| d.version == "2.0.0")
        .map(|d| d.id.to_string())
        .collect();
    assert_eq!(upgraded.len(), 2, "{upgraded:?}");
    assert!(
        stats
            .devices
            .iter()
            .all(|d| d.connects == 1 && d.messages_dropped == 0)
    );
    fleet.shutdown().await;
}

/// A device dropping off mid-download on a shared connection leaves it (it unsubscribes and
/// goes quiet), comes back with its announcement and a `firmware.get`, and its neighbour on
/// the same connection never notices: the connection stays up throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unit_dropping_off_a_shared_connection_leaves_its_neighbours_online() {
    let env = Env::start().await;
    let port = broker_port(&env);
    // The test's observer and its console-side publisher.
    let before = 2;
    let mut cfg = SimConfig {
        units: sim_units(&[("fogcloud", 2)]),
        per_connection: 2,
        ..env.config("so")
    };
    cfg.behaviour.faults.offline_mid_download = 1.0;
    let fleet = SimFleet::start(cfg).await.unwrap();
    let (up1, down1) = (
        fog_topic("so-fog-0001", true),
        fog_topic("so-fog-0001", false),
    );
    let up2 = fog_topic("so-fog-0002", true);
    env.obs.wait(&up1, method("version.post")).await;
    env.obs.wait(&up2, method("version.post")).await;
    wait_connections(port, before, 1).await;
    let push = json!({ "id": 9, "version": "1.0", "method": "firmware.post", "params": fog_offer(&env, "2.0.0", &env.checksum) });
    env.publish(&down1, push).await;
    env.obs.wait_n(&up1, 2, method("version.post")).await;
    env.obs.wait(&up1, method("firmware.get")).await;
    assert_eq!(
        connections_to(port),
        before + 1,
        "the shared connection stayed"
    );
    let s = fleet.stats();
    assert_eq!(s.devices[0].connects, 2, "the device came back");
    assert_eq!(s.devices[1].connects, 1, "its neighbour never left");
    assert_eq!(env.obs.matching(&up2, &method("version.post")).len(), 1);
    // Back online, it hears its notices again.
    let again = json!({ "id": 10, "version": "1.0", "method": "firmware.post", "params": {} });
    env.publish(&down1, again).await;
    wait_stats(&fleet, "the answer reached the device", |s| {
        s.devices[0].nothing_pending == 1
    })
    .await;
    fleet.shutdown().await;
}

// ---------------------------------------------------------------- scale

/// Resident memory of this process in KiB (broker, firmware server and devices together).
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// User + system CPU time of this process (USER_HZ is 100 in /proc).
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0
}

/// 2,000 connections (800 Alibaba, 700 FogCloud, 100 gateways × 4 subs, 400 docks + drones:
/// 2,800 devices) in one process with the embedded broker; then 1,500 upgrades at once.
/// Run: `cargo test --release --no-default-features --test sim -- --ignored --nocapture scale`
#[tokio::test(flavor = "multi_thread")]
#[ignore = "scale measurement; run on demand"]
async fn scale_two_thousand_connections() {
    let env = Env::start().await;
    let before_rss = rss_kib();
    let cfg = SimConfig {
        units: sim_units(&[
            ("aliyun", 800),
            ("fogcloud", 700),
            ("fogcloud-gateways", 100),
            ("subs", 4),
            ("dji-docks", 400),
        ]),
        ..env.config("sc")
    };
    let t0 = std::time::Instant::now();
    let cpu0 = cpu_secs();
    let fleet = SimFleet::start(cfg).await.unwrap();
    let devices = fleet.device_ids().len();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    while fleet.stats().devices.iter().any(|d| d.connects == 0) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not all connected: {:?}",
            fleet.stats().totals()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let connected_after = t0.elapsed();
    let cpu_connect = cpu_secs() - cpu0;
    let rss_connected = rss_kib();
    let cpu1 = cpu_secs();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let cpu_idle = (cpu_secs() - cpu1) / 10.0;

    let t1 = std::time::Instant::now();
    let cpu2 = cpu_secs();
    for i in 1..=800 {
        let dn = format!("sc-ali-{i:04}");
        env.publish(
            &ali_topic("upgrade", &dn),
            ali_notice(&env, "2.0.0", &env.md5),
        )
        .await;
    }
    for i in 1..=700 {
        let down = fog_topic(&format!("sc-fog-{i:04}"), false);
        let push = json!({ "id": i, "version": "1.0", "method": "firmware.post", "params": fog_offer(&env, "2.0.0", &env.checksum) });
        env.publish(&down, push).await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    while fleet.stats().totals().upgrades_succeeded < 1500 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "upgrades stuck: {:?}",
            fleet.stats().totals()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let wave = t1.elapsed();
    let cpu_wave = cpu_secs() - cpu2;
    let rss_after = rss_kib();
    let t = fleet.stats().totals();
    let reconnects: u64 = fleet
        .stats()
        .devices
        .iter()
        .map(|d| d.connects.saturating_sub(1))
        .sum();
    println!(
        "scale: {devices} devices on 2000 connections; all connected after {connected_after:.2?} \
         (cpu {cpu_connect:.2} s); RSS before fleet {} MiB, connected {} MiB, after wave {} MiB; \
         idle cpu {:.1} % of one core; 1500 upgrades of 64 KiB in {wave:.2?} (cpu {cpu_wave:.2} s); \
         dropped {} missing replies {} (nobody answers update_topo here) reconnects {reconnects}",
        before_rss / 1024,
        rss_connected / 1024,
        rss_after / 1024,
        cpu_idle * 100.0,
        t.messages_dropped,
        t.missing_replies,
    );
    assert_eq!(t.upgrades_failed, 0);
    fleet.shutdown().await;
}

/// `--strict`: the device reports its version before it subscribes, so a notice sent the
/// instant the report arrives is lost; it drops any notice with a missing or empty field as
/// broken (an Alibaba SHA256 notice without `md5`, a FogCloud `firmware.post` with empty
/// `params`), counting it; and follows a complete notice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_devices_report_before_they_subscribe_and_drop_broken_notices() {
    let env = Env::start().await;
    let mut cfg = SimConfig {
        units: sim_units(&[("aliyun", 1), ("fogcloud", 1)]),
        strict: true,
        ..env.config("strict")
    };
    cfg.behaviour.strict_subscribe_delay = Duration::from_secs(2);
    let fleet = SimFleet::start(cfg).await.unwrap();
    let (ali, fog) = ("strict-ali-0001", "strict-fog-0001");
    env.obs.wait(&ali_topic("inform", ali), |_| true).await;
    // Sent the instant the report arrives: the device has not subscribed yet.
    env.publish(
        &ali_topic("upgrade", ali),
        ali_notice(&env, "2.0.0", &env.md5),
    )
    .await;
    env.obs
        .wait(&fog_topic(fog, true), method("version.post"))
        .await;
    // Broken notices, repeated until the (late) subscription lets one through.
    let mut sha256_without_md5 = ali_notice(&env, "2.0.0", &env.md5);
    sha256_without_md5["data"]["signMethod"] = json!("SHA256");
    sha256_without_md5["data"]["sign"] = json!(env.sha256);
    sha256_without_md5["data"]
        .as_object_mut()
        .unwrap()
        .remove("md5");
    let empty_post = json!({"id": 1, "version": "1.0", "method": "firmware.post", "params": {}});
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let stats = fleet.stats();
        if stats.devices.iter().all(|d| d.broken_notices >= 1) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{stats:#?}");
        env.publish(&ali_topic("upgrade", ali), sha256_without_md5.clone())
            .await;
        env.publish(&fog_topic(fog, false), empty_post.clone())
            .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stats = fleet.stats();
    for d in &stats.devices {
        assert_eq!(d.notices_received, 0, "the first notice was lost: {d:?}");
        assert_eq!(d.nothing_pending, 0, "{d:?}");
        assert_eq!(d.version, "1.0.0");
    }
    assert!(stats.totals().broken_notices >= 2);
    // A complete notice (md5 with SHA256, as notes.md requires) is followed.
    let mut complete = sha256_without_md5;
    complete["data"]["md5"] = json!(env.md5);
    env.publish(&ali_topic("upgrade", ali), complete).await;
    env.obs
        .wait(&ali_topic("inform", ali), has_version("2.0.0"))
        .await;
    fleet.shutdown().await;
}

// ---------------------------------------------------------------- a dialect file

fn widget_topic(name: &str, kind: &str) -> String {
    format!("bench/widgets/{name}/{kind}")
}

fn widget_notice(env: &Env, job: &str, crc: &str) -> Value {
    json!({ "type": "flash", "job": job, "artifact": {
        "href": env.url(), "length": env.firmware.len(), "crc": crc, "semver": "2.0.0" } })
}

/// The devices of the tests' dialect file (tests/dialects/widget.toml), simulated from the file
/// alone, speak it on the wire: hello with the version, a pull request, a flash taken from the
/// inbox with progress echoing the job id, hello with the new version; "no-flash" counted as
/// nothing pending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dialect_file_devices_speak_the_file_on_the_wire() {
    let env = Env::start().await;
    let mut cfg = SimConfig {
        units: sim_units(&[("widget", 2)]),
        ..env.config("wf")
    };
    cfg.behaviour.pull = true;
    let fleet = SimFleet::start(cfg).await.unwrap();
    let (one, two) = ("wf-widget-0001", "wf-widget-0002");
    for name in [one, two] {
        let hello = env
            .obs
            .wait(&widget_topic(name, "events"), |m| m["type"] == "hello")
            .await;
        assert_eq!(
            hello,
            json!({ "type": "hello", "build": { "semver": "1.0.0" } })
        );
        let ask = env
            .obs
            .wait(&widget_topic(name, "events"), |m| {
                m["type"] == "anything-for-me"
            })
            .await;
        assert_eq!(keys(&ask), ["seq", "type"]);
        assert!(ask["seq"].is_u64(), "{ask}");
    }
    assert_eq!(
        fleet
            .stats()
            .get(&format!("widget:{one}").parse().unwrap())
            .unwrap()
            .id
            .to_string(),
        format!("widget:{one}")
    );

    let job = "0f8fad5b-d9cb-469f-a165-70867728950e";
    env.publish(
        &widget_topic(one, "inbox"),
        widget_notice(&env, job, &env.checksum),
    )
    .await;
    env.publish(
        &widget_topic(two, "inbox"),
        json!({ "type": "no-flash", "seq": 1 }),
    )
    .await;
    let new = env
        .obs
        .wait(&widget_topic(one, "events"), |m| {
            m["type"] == "hello" && m["build"]["semver"] == "2.0.0"
        })
        .await;
    assert_eq!(keys(&new), ["build", "type"]);
    let states = env
        .obs
        .matching(&widget_topic(one, "events"), &|m: &Value| {
            m["type"] == "flash-state"
        });
    assert!(!states.is_empty());
    for st in &states {
        assert_eq!(keys(st), ["flash", "type"], "{st}");
        assert_eq!(st["flash"]["job"], job, "{st}");
        assert!(
            st["flash"]["done"].as_u64().is_some_and(|p| p <= 100),
            "{st}"
        );
    }
    assert_eq!(states.last().unwrap()["flash"]["done"], 100);
    wait_stats(&fleet, "nothing pending counted", |s| {
        s.devices[1].nothing_pending == 1
    })
    .await;
    assert_eq!(fleet.stats().devices[1].notices_ignored, 0);
    assert_eq!(fleet.stats().devices[0].version, "2.0.0");
    fleet.shutdown().await;
}

/// A corrupted image: the widget device's own checksum check refuses it, and it reports the
/// value the file marks `sim = "verify"` with its reason at the text pointer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dialect_file_devices_report_a_corrupted_image_as_the_file_marks_it() {
    let env = Env::start().await;
    let job = "0f8fad5b-d9cb-469f-a165-70867728950e";
    let mut cfg = SimConfig {
        units: sim_units(&[("widget", 1)]),
        ..env.config("wv")
    };
    cfg.behaviour.faults.verify = 1.0;
    let fleet = SimFleet::start(cfg).await.unwrap();
    let name = "wv-widget-0001";
    env.obs
        .wait(&widget_topic(name, "events"), |m| m["type"] == "hello")
        .await;
    env.publish(
        &widget_topic(name, "inbox"),
        widget_notice(&env, job, &env.checksum),
    )
    .await;
    let failed = env
        .obs
        .wait(&widget_topic(name, "events"), |m| {
            m["flash"]["result"].is_string()
        })
        .await;
    assert_eq!(failed["type"], "flash-state");
    assert_eq!(failed["flash"]["result"], "E_CRC");
    assert_eq!(failed["flash"]["job"], job);
    let why = failed["flash"]["why"].as_str().unwrap();
    assert!(why.starts_with("checksum of the file is "), "{why}");
    let device = &fleet.stats().devices[0];
    assert_eq!(device.upgrades_failed, 1);
    assert_eq!(
        device.state,
        DeviceState::Failed { code: 12 },
        "E_CRC's code"
    );
    fleet.shutdown().await;
}
