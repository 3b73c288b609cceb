//! End to end: per-device download links (issue #16). The real engine (embedded broker and
//! firmware server on ephemeral ports) and a simulated fleet: every device is told its own link,
//! downloads from it, the server's counters name the device, the links stop working when the
//! campaign ends, and a console restarted on the same data directory gives the same links.

// Test code throughout: clippy's allow-unwrap-in-tests (clippy.toml) goes by `cfg(test)`.
#![cfg(test)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use ota_console::device_id::DeviceId;
use ota_console::engine::{
    self, CampaignRequest, Command, EngineConfig, EngineError, EngineHandle, FirmwareSource,
    validate_download_url,
};
use ota_console::fleet::inspector::Direction;
use ota_console::rollout::{CampaignState, CanarySize, DeviceStatus, DialectSettings, Policy};
use ota_console::sim::{Behaviour, FaultOdds, SimConfig};
use ota_console::testing::engine::{
    discover, loopback_config, run_to_end, start_engine, start_rollout, wait_for,
};
use ota_console::testing::sim_units;
use ota_console::testing::{self, firmware_file};
use ota_console::transport::download_token::DOWNLOAD_KEY_FILE;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);

/// Stops the engine and waits (bounded) until its task is gone: the data directory and the
/// firmware server are free again.
async fn stop_engine(handle: EngineHandle) {
    let mut watch = handle.watch();
    handle.send(Command::Shutdown).unwrap();
    tokio::time::timeout(WAIT, async { while watch.changed().await.is_ok() {} })
        .await
        .expect("the engine stops");
}

/// Every download link the console sent about `device` (Alibaba/FogCloud `url`, DJI
/// `file_url`), in order.
fn links_sent(handle: &EngineHandle, device: &DeviceId) -> Vec<String> {
    fn collect(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    match (k.as_str(), v) {
                        ("url" | "file_url", Value::String(url)) => out.push(url.clone()),
                        _ => collect(v, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| collect(v, out)),
            _ => {}
        }
    }
    let mut links = Vec::new();
    for message in handle.messages(Some(device), 10_000) {
        if message.direction != Direction::Out {
            continue;
        }
        if let Ok(payload) = serde_json::from_str::<Value>(&message.payload) {
            collect(&payload, &mut links);
        }
    }
    links
}

async fn status_of(url: &str) -> u16 {
    reqwest::Client::builder()
        .timeout(WAIT)
        .build()
        .unwrap()
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_device_downloads_from_its_own_link_until_the_campaign_ends() {
    let dir = tempfile::tempdir().unwrap();
    let handle = start_engine(loopback_config(dir.path())).await;
    let fleet = testing::engine::start_fleet(
        dir.path(),
        SimConfig {
            broker_url: handle.broker_url().to_owned(),
            version: "1.0.0".into(),
            seed: 16,
            units: sim_units(&[
                ("aliyun", 2),
                ("fogcloud", 1),
                ("fogcloud-gateways", 0),
                ("subs", 0),
                ("dji-docks", 1),
            ]),
            // Devices as strict as real stacks (exact header names, every notice field required).
            strict: true,
            behaviour: Behaviour {
                install: Duration::from_millis(100),
                faults: FaultOdds::default(),
                ..Behaviour::default()
            },
            ..SimConfig::default()
        },
    )
    .await
    .expect("simulated fleet starts");
    let ids = fleet.device_ids();
    assert_eq!(ids.len(), 5, "{ids:?}");
    discover(&handle, &ids).await;
    let size = 40_000;
    let fw = firmware_file(dir.path(), size);
    let id = start_rollout(&handle, &fw, ids.clone(), testing::fast_policy(20)).await;
    let view = run_to_end(&handle, id).await;
    for device in &view.snapshot.devices {
        assert_eq!(device.status, DeviceStatus::Succeeded, "{device:?}");
    }
    let sims = fleet.stats();
    assert!(
        sims.devices.iter().all(|d| d.version == "2.0.0"),
        "{sims:?}"
    );

    // Each device was told one link of its own, on this server, never the campaign's link.
    let base = handle.snapshot().firmware_base.clone().unwrap();
    let campaign_link = view.spec.offer.url.clone();
    let mut links: BTreeMap<String, String> = BTreeMap::new();
    for device in &view.snapshot.devices {
        let sent: BTreeSet<String> = links_sent(&handle, &device.id).into_iter().collect();
        assert_eq!(
            sent.len(),
            1,
            "{}: one link in every notice: {sent:?}",
            device.id
        );
        let link = sent.into_iter().next().unwrap();
        assert!(link.starts_with(&format!("{base}/fw/")), "{link}");
        assert_ne!(link, campaign_link);
        assert_eq!(validate_download_url(&link), Ok(()));
        assert!(link.len() < 128, "{link}");
        // No device id in the link (ids hold ':' and '/'; the link only URL-safe characters).
        assert!(!link.contains(device.id.name()), "{link}");
        let path = link.strip_prefix(&base).unwrap();
        assert!(
            path.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/-._~%".contains(&b)),
            "{path}"
        );
        links.insert(device.id.to_string(), link);
    }
    let distinct: BTreeSet<&String> = links.values().collect();
    assert_eq!(distinct.len(), links.len(), "{links:#?}");

    // The server's counters name each device with what it downloaded.
    let served = wait_for(&handle, "every device's bytes counted", |s| {
        s.served.as_ref().is_some_and(|served| {
            links.keys().all(|d| {
                served
                    .bytes_by_device
                    .get(d)
                    .is_some_and(|b| *b >= size as u64)
            })
        })
    })
    .await
    .served
    .clone()
    .unwrap();
    for device in links.keys() {
        assert!(served.requests_by_device[device] >= 1, "{served:?}");
    }

    // The campaign is over: its links are refused, and its own link never was served.
    assert!(view.snapshot.state.is_finished());
    for (device, link) in &links {
        assert_eq!(status_of(link).await, 404, "{device}: {link}");
    }
    assert_eq!(status_of(&campaign_link).await, 404);
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_campaign_gives_the_same_links_and_cancel_ends_them() {
    let dir = tempfile::tempdir().unwrap();
    // Devices the console knows of but that never answer: their notices stay in flight.
    let targets: Vec<DeviceId> = ["pump-1", "pump-2"]
        .iter()
        .map(|dn| DeviceId::aliyun("a1Ghost", dn).unwrap())
        .collect();
    let policy = Policy {
        canary: CanarySize::Percent(100),
        device_timeout_secs: 600,
        // A notice in flight is re-sent at once after a restart.
        settle_ms: 0,
        ..testing::fast_policy(600)
    };

    let handle = start_engine(loopback_config(dir.path())).await;
    let fw = firmware_file(dir.path(), 5_000);
    let package = handle.import_firmware(fw).await.expect("import");
    let id = handle
        .start_campaign(CampaignRequest {
            name: "resume".into(),
            package_sha256: package.package.sha256.clone(),
            version: "2.0.0".into(),
            module: None,
            description: String::new(),
            targets: targets.clone(),
            policy,
            settings: DialectSettings::default(),
            download_url: None,
        })
        .await
        .expect("campaign starts");
    let first_links = wait_links(&handle, &targets).await;
    let base = handle.snapshot().firmware_base.clone().unwrap();
    for link in first_links.values() {
        assert_eq!(status_of(link).await, 200, "{link}");
    }
    let key = std::fs::read(dir.path().join(DOWNLOAD_KEY_FILE)).unwrap();
    stop_engine(handle).await;

    // Restarted on the same data directory, on another port, announcing the same address
    // (the operator's `--public-url`): the same links, served again.
    let port = testing::mosquitto::free_port();
    let mut again = loopback_config(dir.path());
    again.firmware = FirmwareSource::Embedded {
        bind: format!("127.0.0.1:{port}").parse().unwrap(),
        public_base: Some(base.clone()),
        tls: None,
    };
    let handle = start_engine(again).await;
    handle.resume_campaign(id).await.expect("campaign resumes");
    let second_links = wait_links(&handle, &targets).await;
    assert_eq!(second_links, first_links);
    assert_eq!(
        std::fs::read(dir.path().join(DOWNLOAD_KEY_FILE)).unwrap(),
        key
    );
    let here = |link: &str| link.replacen(&base, &format!("http://127.0.0.1:{port}"), 1);
    for link in first_links.values() {
        assert_eq!(status_of(&here(link)).await, 200, "{link}");
    }

    // Canceled: the links stop working.
    handle.send(Command::Cancel(id)).unwrap();
    wait_for(&handle, "the campaign to be canceled", |s| {
        s.campaigns
            .iter()
            .any(|c| c.snapshot.id == id && c.snapshot.state == CampaignState::Canceled)
    })
    .await;
    for link in first_links.values() {
        assert_eq!(status_of(&here(link)).await, 404, "{link}");
    }
    stop_engine(handle).await;
}

/// A campaign that completed with timed-out devices ends its links; "retry failed" runs it
/// again and brings the same links back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_come_back_when_a_completed_campaign_runs_again() {
    let dir = tempfile::tempdir().unwrap();
    let ghost = DeviceId::aliyun("a1Ghost", "silent-1").unwrap();
    let handle = start_engine(loopback_config(dir.path())).await;
    let fw = firmware_file(dir.path(), 5_000);
    // Long enough that the re-run cannot time out again before its link is fetched.
    let policy = testing::fast_policy(3);
    let id = start_rollout(&handle, &fw, vec![ghost.clone()], policy).await;
    let link = wait_links(&handle, std::slice::from_ref(&ghost)).await[&ghost.to_string()].clone();
    let view = run_to_end(&handle, id).await;
    assert_eq!(view.snapshot.state, CampaignState::Completed);
    assert_eq!(view.snapshot.devices[0].status, DeviceStatus::TimedOut);
    assert_eq!(status_of(&link).await, 404, "{link}");

    handle.send(Command::RetryFailed(id)).unwrap();
    wait_for(&handle, "the campaign to run again", |s| {
        s.campaigns
            .iter()
            .any(|c| c.snapshot.id == id && c.snapshot.state == CampaignState::Running)
    })
    .await;
    assert_eq!(status_of(&link).await, 200, "{link}");
    stop_engine(handle).await;
}

/// Waits (bounded) until the console has sent a notice to every target; returns the latest
/// link each was sent, by device. Every message the console publishes changes the snapshot.
async fn wait_links(handle: &EngineHandle, targets: &[DeviceId]) -> BTreeMap<String, String> {
    let mut watch = handle.watch();
    tokio::time::timeout(WAIT, async {
        loop {
            watch.borrow_and_update();
            let links: BTreeMap<String, String> = targets
                .iter()
                .filter_map(|d| links_sent(handle, d).pop().map(|l| (d.to_string(), l)))
                .collect();
            if links.len() == targets.len() {
                return links;
            }
            watch.changed().await.expect("engine runs");
        }
    })
    .await
    .expect("every target is sent a notice")
}

/// A resume on a firmware server at another address than the devices were told is refused
/// with a typed reason naming the link they were told (the CLI's advice is built from it), in
/// the same words as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_this_server_cannot_serve_names_the_link_the_devices_were_told() {
    let dir = tempfile::tempdir().unwrap();
    let ghost = DeviceId::aliyun("a1Ghost", "silent-1").unwrap();
    let handle = start_engine(loopback_config(dir.path())).await;
    let fw = firmware_file(dir.path(), 5_000);
    let id = start_rollout(&handle, &fw, vec![ghost], testing::fast_policy(600)).await;
    wait_for(&handle, "the campaign to be shown", |s| {
        s.campaigns.iter().any(|c| c.snapshot.id == id)
    })
    .await;
    let told = handle
        .snapshot()
        .campaigns
        .iter()
        .find(|c| c.snapshot.id == id)
        .map(|c| c.spec.offer.url.clone())
        .expect("the campaign is shown");
    stop_engine(handle).await;

    // Port 0 again: another port, so another public base than the stored link's.
    let handle = start_engine(loopback_config(dir.path())).await;
    let refused = handle.resume_campaign(id).await.expect_err("refused");
    let EngineError::Refused(why) = &refused else {
        panic!("not a refusal: {refused}");
    };
    assert_eq!(
        why.offer_not_servable().map(ToString::to_string),
        Some(told.clone())
    );
    assert!(
        refused
            .to_string()
            .starts_with("cannot serve the package again: URL ")
            && refused.to_string().contains(&told),
        "{refused}"
    );
    stop_engine(handle).await;
}

/// A firmware-server port in use is told as such, with its address (the window retries on it
/// while an old engine releases the port), in the same words as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_in_use_is_told_with_its_address() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();

    let mut http_taken = loopback_config(&dir.path().join("a"));
    http_taken.firmware = FirmwareSource::Embedded {
        bind: addr,
        public_base: None,
        tls: None,
    };
    let err = engine::start(http_taken).await.err().expect("refused");
    let EngineError::Start(why) = &err else {
        panic!("not a start error: {err}");
    };
    assert_eq!(why.port_in_use(), Some(addr), "{err}");
    assert_eq!(
        err.to_string(),
        format!(
            "cannot start: cannot start the firmware HTTP server: {addr} is already in use; \
             choose another port (port 0 picks a free one)"
        )
    );

    let broker_taken =
        EngineConfig::embedded(addr, "127.0.0.1:0".parse().unwrap(), dir.path().join("b"));
    let err = engine::start(broker_taken).await.err().expect("refused");
    let EngineError::Start(why) = &err else {
        panic!("not a start error: {err}");
    };
    assert_eq!(why.port_in_use(), Some(addr), "{err}");
    assert!(
        err.to_string()
            .starts_with("cannot start: cannot start the embedded MQTT broker: "),
        "{err}"
    );

    // Anything else is not a port in use.
    let mut bad_base = loopback_config(&dir.path().join("c"));
    bad_base.firmware = FirmwareSource::Embedded {
        bind: "127.0.0.1:0".parse().unwrap(),
        public_base: Some("ftp://x".into()),
        tls: None,
    };
    let err = engine::start(bad_base).await.err().expect("refused");
    assert!(
        matches!(&err, EngineError::Start(why) if why.port_in_use().is_none()),
        "{err}"
    );
    drop(taken);
}
