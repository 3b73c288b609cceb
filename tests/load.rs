//! Load, CI-sized: a few hundred simulated Alibaba devices report download progress once a second
//! through a real Mosquitto while one rollout runs over all of them. The console must take in
//! exactly the messages the broker acknowledged (none lost, none twice) and every device must
//! upgrade. The full-size run (10,000 devices for 10 minutes) is `benches/load.rs`.

// Test code throughout: clippy's allow-unwrap-in-tests (clippy.toml) goes by `cfg(test)`.
#![cfg(test)]

use std::path::Path;
use std::time::Duration;

use ota_console::engine::{
    BrokerChoice, CampaignRequest, EngineConfig, EngineHandle, FirmwareSource,
};
use ota_console::rollout::{CanarySize, DeviceStatus, DialectSettings, Policy};
use ota_console::sim::{Behaviour, SimConfig, SimFleet};
use ota_console::testing::engine::{run_to_end, start_engine, wait_for};
use ota_console::testing::mosquitto::{Mosquitto, free_port};
use ota_console::testing::sim_units;
use ota_console::testing::{self, firmware_file};
use ota_console::transport::mqtt::LinkOptions;

const DEVICES: usize = 300;
/// How long each paced download lasts, so every device reports progress this many times.
const DOWNLOAD: Duration = Duration::from_secs(20);
const FIRMWARE_BYTES: u64 = 16 * 1024;
/// The simulators print nothing here; this bounds the wait for the last counts to match.
const SETTLE: Duration = Duration::from_secs(20);

async fn start_console(dir: &Path, broker: &str) -> EngineHandle {
    let config = EngineConfig {
        broker: BrokerChoice::External(LinkOptions::new(broker.parse().unwrap())),
        firmware: FirmwareSource::Embedded {
            bind: "127.0.0.1:0".parse().unwrap(),
            public_base: None,
            tls: None,
        },
        data_dir: dir.to_path_buf(),
        db_path: dir.join("ota-console.db"),
        dialects: vec![ota_console::protocol::aliyun::ID],
        resume_unfinished: false,
        keep_session: true,
        firmware_server: Default::default(),
    };
    let handle = start_engine(config).await;
    handle
        .wait_connected(Duration::from_secs(30))
        .await
        .expect("console connects to mosquitto");
    handle
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_progress_message_reaches_the_console() {
    let dir = tempfile::tempdir().unwrap();
    let mosquitto = Mosquitto::start(dir.path(), free_port(), "allow_anonymous true");
    let handle = start_console(dir.path(), &mosquitto.url()).await;
    let fleet = SimFleet::start(SimConfig {
        broker_url: mosquitto.url(),
        units: sim_units(&[("aliyun", DEVICES)]),
        name_prefix: "load".into(),
        behaviour: Behaviour {
            bandwidth_bytes_per_sec: Some(FIRMWARE_BYTES.div_ceil(DOWNLOAD.as_secs())),
            progress_interval: Some(Duration::from_secs(1)),
            install: Duration::from_millis(100),
            ..Behaviour::default()
        },
        // Devices download like embedded SDKs: exact header names, Content-Length required.
        strict: true,
        ..SimConfig::default()
    })
    .await
    .expect("simulated fleet starts");
    let ids = fleet.device_ids();
    wait_for(&handle, "every device's version", |s| {
        s.devices
            .iter()
            .filter(|r| r.record.version(None).is_some())
            .count()
            == DEVICES
    })
    .await;

    let package = handle
        .import_firmware(firmware_file(dir.path(), FIRMWARE_BYTES as usize))
        .await
        .expect("import");
    // Everyone at once (the shared test policy starts with a canary of one).
    let policy = Policy {
        canary: CanarySize::Percent(100),
        ..testing::fast_policy(120)
    };
    let id = handle
        .start_campaign(CampaignRequest {
            name: "load".into(),
            package_sha256: package.package.sha256,
            version: "2.0.0".into(),
            module: None,
            description: "load test".into(),
            targets: ids.clone(),
            policy,
            settings: DialectSettings::default(),
            download_url: None,
        })
        .await
        .expect("campaign starts");
    let view = run_to_end(&handle, id).await;
    assert_eq!(
        view.snapshot.counts.succeeded, DEVICES,
        "{:?}",
        view.snapshot.counts
    );
    for device in &view.snapshot.devices {
        assert_eq!(device.status, DeviceStatus::Succeeded, "{device:?}");
    }

    // Everything the devices sent is acknowledged by now; the console may still be taking in
    // the last few.
    let acked_and_received = || {
        let t = fleet.stats().totals();
        (t.messages_acked, handle.snapshot().traffic.received)
    };
    let settled = tokio::time::timeout(SETTLE, async {
        loop {
            let (acked, received) = acked_and_received();
            if acked == received {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    let (acked, received) = acked_and_received();
    assert!(
        settled.is_ok(),
        "the broker acknowledged {acked} messages but the console received {received}"
    );

    let stats = fleet.stats();
    let totals = stats.totals();
    assert_eq!(totals.messages_dropped, 0, "{totals:?}");
    assert_eq!(
        totals.messages_published, totals.messages_acked,
        "{totals:?}"
    );
    // One connection each: no reconnect, so no QoS 1 redelivery could hide a loss.
    assert_eq!(totals.connects, DEVICES as u64, "{totals:?}");
    for device in &stats.devices {
        assert_eq!(device.version, "2.0.0", "{device:?}");
        // Once a second through a download of at least DOWNLOAD (minus the first tick, and
        // slack for a busy machine: the timer delays rather than bursts).
        assert!(
            device.progress_sent >= DOWNLOAD.as_secs() / 2,
            "progress at 1 Hz for {DOWNLOAD:?}: {device:?}"
        );
    }
    // Version at connect + progress + version after the upgrade, per device.
    assert!(received >= 2 * DEVICES as u64 + totals.progress_sent);
    fleet.shutdown().await;
}
