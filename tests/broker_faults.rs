//! The broker dies under a running rollout: the embedded broker (`ota-console broker`, its own
//! process) and Mosquitto are killed with SIGKILL mid-download and started again a few seconds
//! later, and a partition outlasts the device timeout. The engine runs in this process, the
//! simulated fleet too; the console's verdict for each device is checked against what the device
//! itself did. No device may time out while the console cannot hear it; a device whose reports
//! were lost in the outage (sent before the console had resubscribed: neither broker here keeps
//! the console's persistent session across its own restart, and the console says so) times out
//! at its shifted deadline and succeeds on its retry.

// Test code throughout: clippy's allow-unwrap-in-tests (clippy.toml) goes by `cfg(test)`.
#![cfg(test)]

use std::path::Path;
use std::time::Duration;

use ota_console::engine::{BrokerChoice, EngineHandle};
use ota_console::rollout::{AbortThreshold, CanarySize, DeviceStatus, Policy};
use ota_console::sim::{Behaviour, SimConfig, SimFleet};
use ota_console::store::Store;
use ota_console::testing::broker_process::{EmbeddedBrokerProcess, KillableBroker};
use ota_console::testing::engine::{
    discover, loopback_config, run_to_end, start_engine, start_rollout, wait_for,
};
use ota_console::testing::mosquitto::{Mosquitto, free_port};
use ota_console::testing::sim_units;
use ota_console::testing::{self, firmware_file};
use ota_console::transport::mqtt::{LinkOptions, LinkState};

/// One outage scenario.
struct Outage {
    /// How long the broker stays dead.
    down_for: Duration,
    device_timeout_secs: u64,
    /// At most this many devices in flight, so some wait through the outage unnoticed.
    max_in_flight: u32,
}

async fn engine_on(broker: &dyn KillableBroker, data_dir: &Path) -> EngineHandle {
    let mut config = loopback_config(data_dir);
    config.broker = BrokerChoice::External(LinkOptions::new(broker.url().parse().unwrap()));
    let handle = start_engine(config).await;
    wait_for(&handle, "the link to the broker", |s| {
        s.link == LinkState::Connected
    })
    .await;
    handle
}

/// Rolls out to a mixed fleet, kills the broker once downloads are under way, keeps it dead for
/// `outage.down_for`, starts it again, and checks every device's outcome and the journal.
async fn rollout_across_a_broker_outage(broker: &mut dyn KillableBroker, outage: Outage) {
    let dir = tempfile::tempdir().unwrap();
    let handle = engine_on(broker, dir.path()).await;
    let fleet = SimFleet::start(SimConfig {
        broker_url: broker.url(),
        version: "1.0.0".into(),
        units: sim_units(&[
            ("aliyun", 4),
            ("fogcloud", 2),
            ("fogcloud-gateways", 1),
            ("subs", 2),
        ]),
        behaviour: Behaviour {
            // Two seconds a download: several are mid-way when the broker dies.
            bandwidth_bytes_per_sec: Some(100_000),
            install: Duration::from_millis(200),
            ..Behaviour::default()
        },
        // Devices download like embedded SDKs: exact header names, Content-Length required.
        strict: true,
        ..SimConfig::default()
    })
    .await
    .expect("simulated fleet starts");
    let ids = fleet.device_ids();
    discover(&handle, &ids).await;
    let fw = firmware_file(dir.path(), 200_000);
    let policy = Policy {
        canary: CanarySize::Percent(100),
        max_in_flight: outage.max_in_flight,
        device_timeout_secs: outage.device_timeout_secs,
        // A report lost in the outage is recovered by the retry's notice.
        retries: 1,
        retry_interval_secs: 1,
        // One final failure would abort and cancel the rest.
        abort: Some(AbortThreshold {
            failure_percent: 0,
            min_finished: 1,
        }),
        ..testing::fast_policy(outage.device_timeout_secs)
    };
    let id = start_rollout(&handle, &fw, ids.clone(), policy).await;
    wait_for(&handle, "downloads under way", |s| {
        s.campaigns
            .first()
            .is_some_and(|c| c.snapshot.counts.downloading > 0)
    })
    .await;

    broker.kill();
    wait_for(&handle, "the engine to notice the broker is gone", |s| {
        s.link != LinkState::Connected
    })
    .await;
    // The outage itself: its length is the scenario, not a guess at timing.
    tokio::time::sleep(outage.down_for).await;
    broker.restart();
    let restarted_at = now_ms();

    let view = run_to_end(&handle, id).await;
    let stats = fleet.stats();
    for device in &view.snapshot.devices {
        let sim = stats.get(&device.id.device()).unwrap();
        assert_eq!(
            device.status,
            DeviceStatus::Succeeded,
            "{device:?}\n{sim:?}"
        );
        assert_eq!(sim.version, "2.0.0", "the device agrees: {sim:?}");
        assert!(
            sim.notices_received <= u64::from(device.attempts) + 1,
            "one notice per attempt, plus at most one re-send on its return: {sim:?}"
        );
    }
    let store = Store::open(&dir.path().join("ota-console.db")).unwrap();
    store.integrity_check().unwrap();
    let journal = store.journal(id).unwrap();
    // Timeouts only at deadlines moved past the outage: never while the console was deaf.
    let early: Vec<_> = journal
        .iter()
        .filter(|e| e.to == "timed_out" && e.at.as_millis() < restarted_at)
        .collect();
    assert!(early.is_empty(), "timed out during the outage: {early:#?}");
    let alerts = handle.snapshot().alerts.clone();
    assert!(
        alerts
            .iter()
            .any(|a| a.text.contains("broker link is back")),
        "the operator is told the deadlines moved: {alerts:#?}"
    );
    // Neither broker here keeps sessions across its own death: the console's persistent session
    // is gone, and the operator is told that what devices said meanwhile is lost.
    assert!(
        alerts
            .iter()
            .any(|a| a.text.contains("did not keep the console's session")),
        "the operator is told the session was lost: {alerts:#?}"
    );
    fleet.shutdown().await;
}

fn now_ms() -> u64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    u64::try_from(since_epoch.as_millis()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_broker_killed_mid_rollout_and_back_after_three_seconds() {
    let mut broker = EmbeddedBrokerProcess::start(free_port());
    rollout_across_a_broker_outage(
        &mut broker,
        Outage {
            down_for: Duration::from_secs(3),
            device_timeout_secs: 20,
            max_in_flight: 4,
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_killed_mid_rollout_and_back_after_three_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Mosquitto::start(dir.path(), free_port(), "allow_anonymous true");
    rollout_across_a_broker_outage(
        &mut broker,
        Outage {
            down_for: Duration::from_secs(3),
            device_timeout_secs: 20,
            max_in_flight: 4,
        },
    )
    .await;
}

/// The broker stays away twice as long as the device timeout: devices finish their downloads
/// and installs meanwhile but cannot say so. Nobody may be timed out for the console's deafness,
/// and nobody is cancelled by the abort threshold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_longer_than_the_device_timeout_times_out_nobody() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Mosquitto::start(dir.path(), free_port(), "allow_anonymous true");
    rollout_across_a_broker_outage(
        &mut broker,
        Outage {
            down_for: Duration::from_secs(10),
            device_timeout_secs: 5,
            max_in_flight: 3,
        },
    )
    .await;
}
