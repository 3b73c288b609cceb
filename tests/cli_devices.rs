//! `ota-console devices --json` against a broker started here, with simulated devices that come
//! online while it listens.

// Test code throughout: clippy's allow-unwrap-in-tests (clippy.toml) goes by `cfg(test)`.
#![cfg(test)]

use std::process::Stdio;
use std::time::Duration;

use ota_console::sim::{SimConfig, SimFleet};
use ota_console::testing::sim_units;
use ota_console::transport::broker::{BrokerSettings, EmbeddedBroker};
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_json_lists_what_announced_itself() {
    let broker =
        EmbeddedBroker::start(BrokerSettings::open("127.0.0.1:0".parse().unwrap())).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_ota-console"))
        .args([
            "devices",
            "--broker",
            &format!("mqtt://{}", broker.local_addr()),
            "--discover-for",
            "3s",
            "--json",
        ])
        .env("OTA_CONSOLE_DATA_DIR", dir.path())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = stderr.next_line().await.unwrap() {
            if line.contains("listening for devices") {
                return;
            }
        }
        panic!("devices exited before listening");
    })
    .await
    .expect("devices starts listening");
    let fleet = SimFleet::start(SimConfig {
        broker_url: format!("mqtt://{}", broker.local_addr()),
        units: sim_units(&[
            ("aliyun", 2),
            ("fogcloud-gateways", 1),
            ("subs", 2),
            ("dji-docks", 1),
        ]),
        version: "3.1.4".into(),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("devices finishes")
        .unwrap();
    assert!(out.status.success());
    // A look around connects on a clean, temporary session: it neither claims nor drains the
    // data directory's persistent session, which a `rollout --resume` may need.
    assert!(!dir.path().join("mqtt-client-id").exists());
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let list = list.as_array().unwrap();
    let ids: Vec<&str> = list.iter().map(|d| d["id"].as_str().unwrap()).collect();
    for expected in fleet.device_ids() {
        assert!(
            ids.contains(&expected.to_string().as_str()),
            "{expected} missing from {ids:?}"
        );
    }
    assert_eq!(list.len(), 2 + 3 + 2, "{list:#?}");
    for d in list {
        for key in ["id", "dialect", "gateway", "versions", "last_seen"] {
            assert!(d.get(key).is_some(), "{key} missing in {d}");
        }
        assert_eq!(d["versions"]["default"], "3.1.4", "{d}");
    }
    let sub = list
        .iter()
        .find(|d| d["dialect"] == "fogcloud" && !d["gateway"].is_null())
        .expect("a sub-device names its gateway");
    assert!(sub["gateway"].as_str().unwrap().starts_with("fogcloud:"));
    let drone = list
        .iter()
        .find(|d| d["dialect"] == "dji" && !d["gateway"].is_null())
        .expect("the drone names its dock");
    assert!(drone["gateway"].as_str().unwrap().starts_with("dji:"));
    fleet.shutdown().await;
}
