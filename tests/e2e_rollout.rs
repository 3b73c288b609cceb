//! End to end: the real engine (embedded broker and firmware server on ephemeral ports), a
//! simulated fleet of all three dialects, a real rollout. The console's verdict for every device
//! is checked against what the simulated device itself says happened.

// Test code throughout: clippy's allow-unwrap-in-tests (clippy.toml) goes by `cfg(test)`.
#![cfg(test)]

use std::time::Duration;

use ota_console::engine::{CampaignRequest, CampaignView};
use ota_console::rollout::{CanarySize, DeviceStatus, DialectSettings, Policy};
use ota_console::sim::{FaultOdds, SimConfig, SimFleet};
use ota_console::testing::engine::{discover, run_to_end, start_embedded, start_rollout, wait_for};
use ota_console::testing::sim_units;
use ota_console::testing::{self, firmware_file, strict_sim};
use ota_console::transport::http::FirmwareServer;

/// The shared test policy, with this file's device timeout.
fn fast_policy() -> Policy {
    testing::fast_policy(20)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dialect_upgrades_through_the_embedded_broker() {
    let shape = |c: SimConfig| SimConfig {
        units: sim_units(&[
            ("aliyun", 3),
            ("fogcloud", 2),
            ("fogcloud-gateways", 1),
            ("subs", 3),
            ("dji-docks", 2),
        ]),
        ..c
    };
    // 3 + 2 + (1 gateway + 3 subs) + 2 × (dock + drone)
    every_dialect_upgrades(shape, 13).await;
}

/// The same with units sharing connections (`sim --per-connection 3`): the console cannot
/// tell, and every device ends as it really is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dialect_upgrades_with_units_sharing_connections() {
    let shape = |c: SimConfig| SimConfig {
        units: sim_units(&[
            ("aliyun", 3),
            ("fogcloud", 3),
            ("fogcloud-gateways", 2),
            ("subs", 2),
            ("dji-docks", 2),
        ]),
        per_connection: 3,
        ..c
    };
    // 3 + 3 + 2 × (gateway + 2 subs) + 2 × (dock + drone)
    every_dialect_upgrades(shape, 16).await;
}

async fn every_dialect_upgrades(shape: impl FnOnce(SimConfig) -> SimConfig, devices: usize) {
    let dir = tempfile::tempdir().unwrap();
    let handle = start_embedded(dir.path()).await;
    let fleet = testing::engine::start_fleet(dir.path(), shape(strict_sim(handle.broker_url(), 7)))
        .await
        .expect("simulated fleet starts");
    let ids = fleet.device_ids();
    assert_eq!(ids.len(), devices, "{ids:?}");
    discover(&handle, &ids).await;

    let fw = firmware_file(dir.path(), 200_000);
    let id = start_rollout(&handle, &fw, ids.clone(), fast_policy()).await;
    let view = run_to_end(&handle, id).await;

    let stats = fleet.stats();
    for device in &view.snapshot.devices {
        assert_eq!(device.status, DeviceStatus::Succeeded, "{device:?}");
        assert_eq!(device.to_version.as_deref(), Some("2.0.0"));
        assert_eq!(device.percent, 100, "{device:?}");
        let sim = stats.get(&device.id.device()).expect("device is simulated");
        assert_eq!(
            sim.version, "2.0.0",
            "the device itself reports the new version"
        );
    }
    assert_eq!(view.snapshot.devices.len(), ids.len());
    // The server saw every device download the whole package at least once, even though
    // only the devices' own reports drive the statuses.
    let served = wait_for(&handle, "the server's byte counts", |s| s.served.is_some())
        .await
        .served
        .clone()
        .unwrap();
    let package_bytes = served.bytes_by_package[&view.spec.offer.sha256];
    assert!(package_bytes >= 200_000 * ids.len() as u64, "{served:?}");
    assert!(
        served
            .bytes_by_client
            .contains_key(&"127.0.0.1".parse().unwrap())
    );
    // Every DJI event that asked for a reply got one.
    let missing: u64 = stats.devices.iter().map(|d| d.missing_replies).sum();
    assert_eq!(missing, 0);
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_reported_as_the_devices_saw_them() {
    let dir = tempfile::tempdir().unwrap();
    let handle = start_embedded(dir.path()).await;
    let mut config = SimConfig {
        units: sim_units(&[("aliyun", 4), ("fogcloud", 2), ("dji-docks", 2)]),
        ..strict_sim(handle.broker_url(), 11)
    };
    config.behaviour.faults = FaultOdds {
        flash: 1.0,
        ..FaultOdds::default()
    };
    let fleet = testing::engine::start_fleet(dir.path(), config)
        .await
        .expect("simulated fleet starts");
    let ids = fleet.device_ids();
    discover(&handle, &ids).await;
    let fw = firmware_file(dir.path(), 50_000);
    // Everyone in the first wave: a failing canary would (rightly) hold the rest back.
    let policy = Policy {
        canary: CanarySize::Percent(100),
        ..fast_policy()
    };
    let id = start_rollout(&handle, &fw, ids.clone(), policy).await;
    let view = run_to_end(&handle, id).await;
    for device in &view.snapshot.devices {
        assert!(
            matches!(device.status, DeviceStatus::Failed | DeviceStatus::TimedOut),
            "{device:?}"
        );
        assert!(device.error.is_some(), "a failure says why: {device:?}");
        let sim = fleet.stats();
        assert_eq!(sim.get(&device.id.device()).unwrap().version, "1.0.0");
    }
    fleet.shutdown().await;
}

/// A small fleet of one dialect mix where every upgrade suffers `faults`, rolled out once.
async fn rollout_with_faults(
    seed: u64,
    faults: FaultOdds,
    fleet_shape: impl FnOnce(SimConfig) -> SimConfig,
    policy: Policy,
) -> (CampaignView, SimFleet) {
    let dir = tempfile::tempdir().unwrap();
    let handle = start_embedded(dir.path()).await;
    let mut config = fleet_shape(strict_sim(handle.broker_url(), seed));
    config.behaviour.faults = faults;
    config.behaviour.offline_for = Duration::from_millis(500);
    let fleet = testing::engine::start_fleet(dir.path(), config)
        .await
        .expect("simulated fleet starts");
    let ids = fleet.device_ids();
    discover(&handle, &ids).await;
    let fw = firmware_file(dir.path(), 60_000);
    let id = start_rollout(&handle, &fw, ids, policy).await;
    let view = run_to_end(&handle, id).await;
    // Keep the engine's directory alive until the end of the campaign.
    drop(dir);
    (view, fleet)
}

fn all_at_once(policy: Policy) -> Policy {
    Policy {
        canary: CanarySize::Percent(100),
        ..policy
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_failure_kind_ends_in_its_documented_status() {
    let shape = |c: SimConfig| SimConfig {
        units: sim_units(&[("aliyun", 2), ("fogcloud", 1), ("dji-docks", 1)]),
        ..c
    };
    let policy = all_at_once(Policy {
        device_timeout_secs: 4,
        ..fast_policy()
    });
    let cases: [(&str, FaultOdds, &[DeviceStatus], Option<i64>); 5] = [
        (
            "download",
            FaultOdds {
                download: 1.0,
                ..FaultOdds::default()
            },
            &[DeviceStatus::Failed],
            Some(-2),
        ),
        (
            "verify",
            FaultOdds {
                verify: 1.0,
                ..FaultOdds::default()
            },
            &[DeviceStatus::Failed],
            Some(-3),
        ),
        (
            "flash",
            FaultOdds {
                flash: 1.0,
                ..FaultOdds::default()
            },
            &[DeviceStatus::Failed],
            Some(-4),
        ),
        (
            "silent",
            FaultOdds {
                silent: 1.0,
                ..FaultOdds::default()
            },
            &[DeviceStatus::TimedOut],
            None,
        ),
        (
            "reject",
            FaultOdds {
                reject: 1.0,
                ..FaultOdds::default()
            },
            &[DeviceStatus::Succeeded, DeviceStatus::Rejected],
            None,
        ),
    ];
    for (kind, faults, allowed, aliyun_code) in cases {
        let (view, fleet) = rollout_with_faults(3, faults, shape, policy.clone()).await;
        let stats = fleet.stats();
        for device in &view.snapshot.devices {
            let sim = stats.get(&device.id.device()).unwrap();
            let dialect = device.id.dialect();
            if kind == "reject" {
                // Only DJI docks reject; the others upgrade.
                let expected = if dialect == ota_console::protocol::dji::ID {
                    DeviceStatus::Rejected
                } else {
                    DeviceStatus::Succeeded
                };
                assert_eq!(device.status, expected, "{kind}: {device:?}");
                if expected == DeviceStatus::Rejected {
                    assert!(
                        matches!(device.code, Some(312015) | Some(312704)),
                        "{device:?}"
                    );
                }
                continue;
            }
            assert!(allowed.contains(&device.status), "{kind}: {device:?}");
            assert_eq!(sim.version, "1.0.0", "{kind}: the device did not upgrade");
            assert!(
                device.error.is_some(),
                "{kind}: a failure says why: {device:?}"
            );
            if dialect == ota_console::protocol::aliyun::ID {
                assert_eq!(device.code, aliyun_code, "{kind}: {device:?}");
            }
        }
        fleet.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_mode_devices_get_their_notice_when_they_ask() {
    let shape = |mut c: SimConfig| {
        c.behaviour.pull = true;
        c.behaviour.pull_interval = Duration::from_millis(300);
        SimConfig {
            units: sim_units(&[("aliyun", 3), ("fogcloud", 2)]),
            ..c
        }
    };
    let (view, fleet) =
        rollout_with_faults(9, FaultOdds::default(), shape, all_at_once(fast_policy())).await;
    let stats = fleet.stats();
    for device in &view.snapshot.devices {
        assert_eq!(device.status, DeviceStatus::Succeeded, "{device:?}");
        let sim = stats.get(&device.id.device()).unwrap();
        assert!(sim.gets_sent > 0, "the device asked: {sim:?}");
        assert_eq!(sim.version, "2.0.0");
    }
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_drops_off_mid_download_comes_back_and_upgrades() {
    let shape = |c: SimConfig| SimConfig {
        units: sim_units(&[("aliyun", 2), ("fogcloud", 2)]),
        ..c
    };
    let faults = FaultOdds {
        offline_mid_download: 1.0,
        ..FaultOdds::default()
    };
    let policy = all_at_once(Policy {
        device_timeout_secs: 5,
        retries: 3,
        retry_interval_secs: 1,
        ..fast_policy()
    });
    let (view, fleet) = rollout_with_faults(4, faults, shape, policy).await;
    let stats = fleet.stats();
    for device in &view.snapshot.devices {
        let sim = stats.get(&device.id.device()).unwrap();
        assert!(sim.connects >= 2, "it went away and came back: {sim:?}");
        // Every attempt drops off again, so the device never finishes; what matters is that the
        // console follows it back and reports the outcome rather than hanging.
        assert!(
            matches!(
                device.status,
                DeviceStatus::Succeeded | DeviceStatus::Failed | DeviceStatus::TimedOut
            ),
            "{device:?}"
        );
        assert!(device.attempts >= 1);
    }
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_abort_threshold_stops_a_failing_rollout() {
    let shape = |c: SimConfig| SimConfig {
        units: sim_units(&[("aliyun", 8)]),
        ..c
    };
    let faults = FaultOdds {
        flash: 1.0,
        ..FaultOdds::default()
    };
    let policy = all_at_once(Policy {
        max_in_flight: 1,
        abort: Some(ota_console::rollout::AbortThreshold {
            failure_percent: 50,
            min_finished: 2,
        }),
        ..fast_policy()
    });
    let (view, fleet) = rollout_with_faults(5, faults, shape, policy).await;
    assert_eq!(
        view.snapshot.state,
        ota_console::rollout::CampaignState::Aborted
    );
    let counts = view.snapshot.counts;
    assert_eq!(counts.failed, 2, "{counts:?}");
    assert_eq!(counts.canceled, 6, "{counts:?}");
    let noticed: u64 = fleet
        .stats()
        .devices
        .iter()
        .map(|d| d.notices_received)
        .sum();
    assert_eq!(noticed, 2, "no notice after the abort");
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_recover_devices_that_failed_once() {
    let shape = |c: SimConfig| SimConfig {
        units: sim_units(&[("aliyun", 6), ("fogcloud", 3)]),
        ..c
    };
    let faults = FaultOdds {
        flash: 0.5,
        ..FaultOdds::default()
    };
    let policy = all_at_once(Policy {
        retries: 6,
        retry_interval_secs: 1,
        ..fast_policy()
    });
    let (view, fleet) = rollout_with_faults(21, faults, shape, policy).await;
    let retried = view
        .snapshot
        .devices
        .iter()
        .filter(|d| d.attempts > 1)
        .count();
    assert!(
        retried > 0,
        "with even odds some device must have failed once"
    );
    for device in &view.snapshot.devices {
        assert_eq!(device.status, DeviceStatus::Succeeded, "{device:?}");
    }
    let stats = fleet.stats();
    assert!(stats.devices.iter().all(|d| d.version == "2.0.0"));
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_with_an_external_download_url_announces_that_url() {
    let dir = tempfile::tempdir().unwrap();
    let handle = start_embedded(dir.path()).await;
    let fleet = testing::engine::start_fleet(
        dir.path(),
        SimConfig {
            units: sim_units(&[
                ("aliyun", 4),
                ("fogcloud", 0),
                ("fogcloud-gateways", 0),
                ("subs", 0),
                ("dji-docks", 0),
            ]),
            ..strict_sim(handle.broker_url(), 31)
        },
    )
    .await
    .expect("simulated fleet starts");
    let ids = fleet.device_ids();
    assert_eq!(ids.len(), 4, "{ids:?}");
    discover(&handle, &ids).await;
    let fw = firmware_file(dir.path(), 60_000);
    let (first, second) = ids.split_at(2);

    // The first campaign gets a link of its own on the embedded server...
    let id = start_rollout(&handle, &fw, first.to_vec(), fast_policy()).await;
    let served_view = run_to_end(&handle, id).await;
    let campaign_link = served_view.spec.offer.url.clone();
    let base = handle.snapshot().firmware_base.clone().unwrap();
    assert!(
        campaign_link.starts_with(&base),
        "{campaign_link} on {base}"
    );

    // ...and the second campaign is told to use an existing download URL: the package on
    // another firmware server (the first campaign's links ended with it, issue #16).
    let package = handle.import_firmware(fw.clone()).await.expect("import");
    let existing = FirmwareServer::start("127.0.0.1:0".parse().unwrap(), None)
        .await
        .expect("another server starts");
    let server_url = existing.offer(
        package.path.clone(),
        &package.package.file_name,
        &package.package.sha256,
    );
    let request = |download_url: &str| CampaignRequest {
        name: "external".into(),
        package_sha256: package.package.sha256.clone(),
        version: "2.0.0".into(),
        module: None,
        description: String::new(),
        targets: second.to_vec(),
        policy: fast_policy(),
        settings: DialectSettings::default(),
        download_url: Some(download_url.to_owned()),
    };
    for bad in [
        "ftp://cdn.example.test/fw.bin",
        "http://cdn.example.test/a b.bin",
    ] {
        let err = handle.start_campaign(request(bad)).await.unwrap_err();
        assert!(
            err.to_string().contains("download URL"),
            "{bad}: a clear refusal, got {err}"
        );
    }
    let id = handle
        .start_campaign(request(&server_url))
        .await
        .expect("campaign starts");
    let view = run_to_end(&handle, id).await;
    assert_eq!(
        view.spec.offer.url, server_url,
        "the notice carries the URL given"
    );
    let stats = fleet.stats();
    for device in &view.snapshot.devices {
        assert_eq!(device.status, DeviceStatus::Succeeded, "{device:?}");
        let sim = stats.get(&device.id.device()).expect("device is simulated");
        assert_eq!(sim.version, "2.0.0");
    }
    assert_eq!(view.snapshot.devices.len(), second.len());
    fleet.shutdown().await;
}
