//! End to end for the AWS IoT Jobs dialect: the real engine (embedded secure broker, firmware
//! server) plays the Jobs service for simulated things (`protocol/aws/sim.rs`, which follow
//! the device SDK samples: `start-next`, updates with `expectedVersion`), through a complete
//! upgrade, a failure and a rejection; the console's verdict is checked against what each
//! thing says happened, and the failure and rejection carry the thing's own reason.

// Test code throughout: clippy's allow-unwrap-in-tests (clippy.toml) goes by `cfg(test)`.
#![cfg(test)]

use ota_console::engine::{BrokerChoice, CampaignView, EngineHandle};
use ota_console::rollout::{CanarySize, DeviceStatus, Policy};
use ota_console::sim::{FaultOdds, SimConfig, SimStats};
use ota_console::testing::engine::{
    discover, run_to_end, start_embedded, start_fleet, start_rollout,
};
use ota_console::testing::engine::{loopback_config, start_engine};
use ota_console::testing::mosquitto::{Mosquitto, free_port};
use ota_console::testing::{fast_policy, firmware_file, sim_units, strict_sim};
use ota_console::transport::mqtt::{BrokerUrl, LinkOptions};

/// Runs one rollout over `things` simulated things with `faults` on the embedded broker; the
/// campaign's end and what the things say. Also returns the engine's handle (still running).
async fn rollout(
    things: usize,
    faults: FaultOdds,
    seed: u64,
) -> (CampaignView, SimStats, EngineHandle, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let handle = start_embedded(dir.path()).await;
    let url = handle.broker_url().to_owned();
    rollout_on(dir, handle, &url, things, faults, seed).await
}

async fn rollout_on(
    dir: tempfile::TempDir,
    handle: EngineHandle,
    broker_url: &str,
    things: usize,
    faults: FaultOdds,
    seed: u64,
) -> (CampaignView, SimStats, EngineHandle, tempfile::TempDir) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let mut config = SimConfig {
        units: sim_units(&[("aws", things)]),
        ..strict_sim(broker_url, seed)
    };
    config.behaviour.faults = faults;
    let fleet = start_fleet(dir.path(), config)
        .await
        .expect("simulated fleet starts");
    let ids = fleet.device_ids();
    assert_eq!(ids.len(), things, "{ids:?}");
    discover(&handle, &ids).await;
    let fw = firmware_file(dir.path(), 60_000);
    let policy = Policy {
        canary: CanarySize::Percent(100),
        ..fast_policy(20)
    };
    let id = start_rollout(&handle, &fw, ids, policy).await;
    let view = run_to_end(&handle, id).await;
    let stats = fleet.stats();
    fleet.shutdown().await;
    (view, stats, handle, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn things_upgrade_through_the_jobs_service_the_console_plays() {
    let (view, stats, _handle, _dir) = rollout(3, FaultOdds::default(), 3).await;
    assert_eq!(view.snapshot.devices.len(), 3);
    for device in &view.snapshot.devices {
        assert_eq!(device.status, DeviceStatus::Succeeded, "{device:?}");
        assert_eq!(device.to_version.as_deref(), Some("2.0.0"), "{device:?}");
        let sim = stats.get(&device.id.device()).expect("thing is simulated");
        assert_eq!(sim.version, "2.0.0", "the thing itself says so");
        assert_eq!(sim.upgrades_succeeded, 1, "{sim:?}");
        // Every update was accepted: a rejected one (VersionMismatch, a state the service
        // refused) is counted as ignored by the thing.
        assert_eq!(sim.notices_ignored, 0, "{sim:?}");
        assert!(
            sim.progress_sent >= 3,
            "IN_PROGRESS reports and SUCCEEDED: {sim:?}"
        );
    }
}

/// The same through Mosquitto: `$aws/…` topics are not matched by `#` there, so this checks the
/// console subscribes to them by name and a standard broker carries the whole exchange.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn things_upgrade_through_mosquitto() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(dir.path(), free_port(), "allow_anonymous true");
    let mut config = loopback_config(dir.path());
    config.broker =
        BrokerChoice::External(LinkOptions::new(BrokerUrl::plain("127.0.0.1", broker.port)));
    let handle = start_engine(config).await;
    let url = format!("mqtt://127.0.0.1:{}", broker.port);
    let (view, stats, _handle, _dir) =
        rollout_on(dir, handle, &url, 2, FaultOdds::default(), 4).await;
    for device in &view.snapshot.devices {
        assert_eq!(device.status, DeviceStatus::Succeeded, "{device:?}");
        assert_eq!(stats.get(&device.id.device()).unwrap().version, "2.0.0");
    }
    drop(broker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_job_execution_is_a_failure_with_the_things_reason() {
    let faults = FaultOdds {
        flash: 1.0,
        ..FaultOdds::default()
    };
    let (view, stats, _handle, _dir) = rollout(2, faults, 5).await;
    for device in &view.snapshot.devices {
        assert_eq!(device.status, DeviceStatus::Failed, "{device:?}");
        let error = device.error.as_deref().unwrap_or_default();
        assert!(error.contains("FAILED"), "{error}");
        assert!(
            error.contains("writing the firmware to flash failed"),
            "{error}"
        );
        assert_eq!(stats.get(&device.id.device()).unwrap().version, "1.0.0");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_job_execution_is_a_rejection_with_the_things_reason() {
    let faults = FaultOdds {
        reject: 1.0,
        ..FaultOdds::default()
    };
    let (view, stats, _handle, _dir) = rollout(2, faults, 9).await;
    for device in &view.snapshot.devices {
        assert_eq!(device.status, DeviceStatus::Rejected, "{device:?}");
        let error = device.error.as_deref().unwrap_or_default();
        assert!(error.contains("REJECTED"), "{error}");
        assert!(error.contains("battery below 20%"), "{error}");
        let sim = stats.get(&device.id.device()).unwrap();
        assert_eq!(sim.rejections, 1, "{sim:?}");
        assert_eq!(sim.downloads_started, 0, "{sim:?}");
    }
}
