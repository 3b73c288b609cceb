//! End to end, with the simulator in its strict mode (devices report their version before they
//! subscribe, and drop any notice with a missing or empty field): notices that real device
//! stacks would lose or refuse. The real engine with its embedded broker and firmware server on
//! ephemeral ports; the console's verdicts are checked against what the devices themselves say.

// Test code throughout: clippy's allow-unwrap-in-tests (clippy.toml) goes by `cfg(test)`.
#![cfg(test)]

use std::time::{Duration, Instant};

use ota_console::device_id::DeviceId;
use ota_console::engine::CampaignRequest;
use ota_console::protocol::aliyun;
use ota_console::rollout::{CanarySize, DeviceStatus, DialectSettings, Policy, RateLimit};
use ota_console::sim::{SimConfig, SimStats};
use ota_console::testing::engine::{discover, run_to_end, start_embedded, start_rollout};
use ota_console::testing::sim_units;
use ota_console::testing::{self, fast_policy, firmware_file, strict_sim};

/// No simulated device dropped a notice as broken, and none was told "nothing pending" with
/// an empty FogCloud `firmware.post`.
fn assert_no_broken_notice(stats: &SimStats) {
    for d in &stats.devices {
        assert_eq!(d.broken_notices, 0, "{d:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_whose_first_report_raced_its_subscription_is_upgraded_within_30_s() {
    let dir = tempfile::tempdir().unwrap();
    let handle = start_embedded(dir.path()).await;
    let config = strict_sim(handle.broker_url(), 31);
    let ali = DeviceId::aliyun(&config.product_key, "sim-ali-0001").unwrap();
    let fog = DeviceId::fogcloud(&config.product_key, "sim-fog-0001").unwrap();
    // The shipped defaults, with their 30-minute device timeout: the rollout starts before
    // the devices are there, so the first notice goes nowhere.
    let policy = Policy::default();
    assert_eq!(policy.device_timeout_secs, 30 * 60);
    let fw = firmware_file(dir.path(), 100_000);
    let id = start_rollout(&handle, &fw, vec![ali.clone(), fog.clone()], policy).await;

    // Then they power on: each publishes its version, and subscribes 500 ms later.
    let started = Instant::now();
    let fleet = testing::engine::start_fleet(
        dir.path(),
        SimConfig {
            units: sim_units(&[("aliyun", 1), ("fogcloud", 1)]),
            ..config
        },
    )
    .await
    .expect("simulated fleet starts");
    assert_eq!(fleet.device_ids(), {
        let mut ids = vec![ali, fog];
        ids.sort();
        ids
    });
    let view = run_to_end(&handle, id).await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(30), "took {took:?}");
    let stats = fleet.stats();
    for device in &view.snapshot.devices {
        assert_eq!(device.status, DeviceStatus::Succeeded, "{device:?}");
        let sim = stats.get(&device.id.device()).unwrap();
        assert_eq!(sim.version, "2.0.0", "{sim:?}");
        assert!(sim.notices_received >= 1);
    }
    // The first notice (sent before the device was there) was re-sent at least once.
    assert!(
        view.snapshot.devices.iter().any(|d| d.resends >= 1),
        "{:?}",
        view.snapshot.devices
    );
    assert_no_broken_notice(&stats);
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fogcloud_pulls_are_answered_at_once_and_never_with_an_empty_notice() {
    let dir = tempfile::tempdir().unwrap();
    let handle = start_embedded(dir.path()).await;
    let mut config = strict_sim(handle.broker_url(), 32);
    config.units = sim_units(&[("fogcloud", 4)]);
    config.behaviour.pull = true;
    config.behaviour.pull_interval = Duration::from_millis(300);
    let fleet = testing::engine::start_fleet(dir.path(), config)
        .await
        .expect("simulated fleet starts");
    let ids = fleet.device_ids();
    discover(&handle, &ids).await;
    // One notice a minute: only the first target gets a push soon; the others are upgraded
    // only because their pulls are answered with their notice. The fourth device is no target:
    // its pulls must get nothing at all.
    let policy = Policy {
        canary: CanarySize::Percent(100),
        rate: RateLimit {
            per_minute: 1,
            burst: 1,
        },
        ..fast_policy(60)
    };
    let targets = ids[..3].to_vec();
    let fw = firmware_file(dir.path(), 50_000);
    let started = Instant::now();
    let id = start_rollout(&handle, &fw, targets.clone(), policy).await;
    let view = run_to_end(&handle, id).await;
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "pushes alone would take two minutes: {:?}",
        started.elapsed()
    );
    let stats = fleet.stats();
    for device in &view.snapshot.devices {
        assert_eq!(device.status, DeviceStatus::Succeeded, "{device:?}");
        assert_eq!(stats.get(&device.id.device()).unwrap().version, "2.0.0");
    }
    let bystander = stats.get(&ids[3]).unwrap();
    assert!(bystander.gets_sent > 0, "{bystander:?}");
    assert_eq!(bystander.notices_received, 0, "{bystander:?}");
    assert_eq!(bystander.nothing_pending, 0, "{bystander:?}");
    assert_eq!(bystander.version, "1.0.0");
    assert_no_broken_notice(&stats);
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alibaba_sha256_notices_carry_md5_for_strict_devices() {
    let dir = tempfile::tempdir().unwrap();
    let handle = start_embedded(dir.path()).await;
    let fleet = testing::engine::start_fleet(
        dir.path(),
        SimConfig {
            units: sim_units(&[("aliyun", 3)]),
            ..strict_sim(handle.broker_url(), 33)
        },
    )
    .await
    .expect("simulated fleet starts");
    let ids = fleet.device_ids();
    discover(&handle, &ids).await;
    let fw = firmware_file(dir.path(), 70_000);
    let package = handle.import_firmware(fw).await.expect("import");
    let id = handle
        .start_campaign(CampaignRequest {
            name: "sha256".into(),
            package_sha256: package.package.sha256,
            version: "2.0.0".into(),
            module: None,
            description: String::new(),
            targets: ids.clone(),
            policy: Policy {
                canary: CanarySize::Percent(100),
                ..fast_policy(60)
            },
            settings: {
                let mut settings = DialectSettings::default();
                settings
                    .set(aliyun::ID, &aliyun::SIGN_METHOD, "sha256")
                    .unwrap();
                settings
            },
            download_url: None,
        })
        .await
        .expect("campaign starts");
    let view = run_to_end(&handle, id).await;
    let stats = fleet.stats();
    for device in &view.snapshot.devices {
        assert_eq!(device.status, DeviceStatus::Succeeded, "{device:?}");
        assert_eq!(stats.get(&device.id.device()).unwrap().version, "2.0.0");
    }
    assert_no_broken_notice(&stats);
    fleet.shutdown().await;
}
