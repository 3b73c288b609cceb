//! End to end for the AWS IoT Jobs dialect: the real engine (embedded secure broker, firmware
//! server) plays the Jobs service for simulated things (`protocol/aws/sim.rs`, which follow
//! the device SDK samples: `start-next`, updates with `expectedVersion`), through a complete
//! upgrade, a failure and a rejection; the console's verdict is checked against what each
//! thing says happened, and the failure and rejection carry the thing's own reason.

// Test code throughout: clippy's allow-unwrap-in-tests (clippy.toml) goes by `cfg(test)`.
#![cfg(test)]

use std::time::Duration;

use ota_console::device_id::DeviceId;
use ota_console::engine::{BrokerChoice, CampaignRequest, CampaignView, EngineHandle};
use ota_console::protocol::aws;
use ota_console::rollout::{CanarySize, DeviceStatus, DialectSettings, Policy};
use ota_console::sim::{FaultOdds, SimConfig, SimStats};
use ota_console::testing::engine::{
    discover, run_to_end, start_embedded, start_fleet, start_rollout, wait_for,
};
use ota_console::testing::engine::{loopback_config, start_engine};
use ota_console::testing::mosquitto::{Mosquitto, free_port};
use ota_console::testing::{fast_policy, firmware_bytes, firmware_file, sim_units, strict_sim};
use ota_console::transport::mqtt::{BrokerUrl, LinkOptions};
use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};
use serde_json::{Value, json};
use sha2::Digest as _;

/// Bounds the raw thing's whole exchange.
const WAIT: Duration = Duration::from_secs(60);

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
        let error = device
            .error
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default();
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
        let error = device
            .error
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default();
        assert!(error.contains("REJECTED"), "{error}");
        assert!(error.contains("battery below 20%"), "{error}");
        let sim = stats.get(&device.id.device()).unwrap();
        assert_eq!(sim.rejections, 1, "{sim:?}");
        assert_eq!(sim.downloads_started, 0, "{sim:?}");
    }
}

/// A thing written for its own job document shape, as a raw MQTT client: asks with
/// `start-next` (which also makes it known), takes the job `start-next/accepted` brings, and
/// reports SUCCEEDED with the version its document names. Returns the document it received.
async fn own_shape_thing(broker: (String, u16), name: &str) -> Result<Value, String> {
    let mut options = MqttOptions::new(name, broker.0, broker.1);
    options.set_keep_alive(Duration::from_secs(30));
    let (client, mut events) = AsyncClient::new(options, 64);
    let base = format!("$aws/things/{name}/jobs");
    let publish = |topic: String, body: Value| {
        let client = client.clone();
        async move {
            client
                .publish(topic, QoS::AtLeastOnce, false, body.to_string())
                .await
                .map_err(|e| e.to_string())
        }
    };
    for topic in [
        format!("{base}/notify-next"),
        format!("{base}/start-next/accepted"),
        format!("{base}/+/update/accepted"),
    ] {
        client
            .subscribe(topic, QoS::AtLeastOnce)
            .await
            .map_err(|e| e.to_string())?;
    }
    publish(format!("{base}/start-next"), json!({"clientToken": "boot"})).await?;
    let mut document = None;
    loop {
        let event = events.poll().await.map_err(|e| e.to_string())?;
        let Event::Incoming(Incoming::Publish(msg)) = event else {
            continue;
        };
        let body: Value = serde_json::from_slice(&msg.payload).map_err(|e| e.to_string())?;
        let topic = msg.topic.as_str();
        if topic.ends_with("/notify-next") && body.get("execution").is_some() {
            publish(format!("{base}/start-next"), json!({"clientToken": "wake"})).await?;
        } else if topic.ends_with("/start-next/accepted") && document.is_none() {
            let Some(execution) = body.get("execution") else {
                continue;
            };
            let doc = execution["jobDocument"].clone();
            let id = execution["jobId"].as_str().unwrap_or_default();
            let done = json!({
                "status": "SUCCEEDED",
                "statusDetails": {"version": doc["firmware"]["rev"].as_str().unwrap_or("?")},
                "expectedVersion": execution["versionNumber"],
                "clientToken": "done",
            });
            publish(format!("{base}/{id}/update"), done).await?;
            document = Some(doc);
        } else if topic.ends_with("/update/accepted") && body["clientToken"] == "done" {
            return document.ok_or_else(|| "no job document".to_owned());
        }
    }
}

/// The campaign's own job document template (the README's example) reaches a thing in
/// `start-next/accepted`, filled in with this campaign's firmware, and the thing upgrades by it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thing_receives_the_campaigns_own_job_document() {
    let dir = tempfile::tempdir().unwrap();
    let handle = start_engine(loopback_config(dir.path()).with_open_broker()).await;
    // `mqtt://127.0.0.1:{port}`: loopback_config binds 127.0.0.1.
    let port = handle
        .broker_url()
        .rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .expect("the broker's port");
    let broker = ("127.0.0.1".to_owned(), port);
    let name = "pump-7";
    let thing =
        tokio::spawn(
            async move { tokio::time::timeout(WAIT, own_shape_thing(broker, name)).await },
        );
    let device = DeviceId::aws(name).unwrap();
    let known = device.clone();
    wait_for(&handle, "the thing to ask for its job", move |s| {
        s.devices.iter().any(|row| row.record.id == known)
    })
    .await;

    let template = r#"{
  "firmware": {"location": "{{url}}", "length": {{size}}, "hash": "{{sha256}}",
               "md5": "{{md5}}", "rev": "{{version}}", "name": "{{file_name}}"},
  "note": "{{description}}", "job": "{{task_id}}"
}"#;
    let mut settings = DialectSettings::default();
    settings
        .set(aws::ID, &aws::DOCUMENT, template)
        .expect("the template is accepted");
    let fw = firmware_file(dir.path(), 60_000);
    let bytes = firmware_bytes(60_000);
    let package = handle.import_firmware(fw).await.expect("import");
    let id = handle
        .start_campaign(CampaignRequest {
            name: "own document".into(),
            package_sha256: package.package.sha256.clone(),
            version: "2.0.0".into(),
            module: None,
            description: "pump \"stall\" fix".into(),
            targets: vec![device.clone()],
            policy: Policy {
                canary: CanarySize::Percent(100),
                ..fast_policy(20)
            },
            settings,
            download_url: None,
        })
        .await
        .expect("campaign starts");
    let view = run_to_end(&handle, id).await;
    let doc = thing
        .await
        .unwrap()
        .expect("the thing finishes in time")
        .expect("the thing gets its job");
    assert_eq!(view.snapshot.devices[0].status, DeviceStatus::Succeeded);
    assert_eq!(
        view.spec.settings.text(aws::ID, &aws::DOCUMENT),
        template,
        "the campaign keeps its template"
    );
    // A download link of the campaign's firmware server (each device gets its own).
    let location = doc["firmware"]["location"].as_str().unwrap_or_default();
    let server = view.spec.offer.url.split("/fw/").next().unwrap_or_default();
    assert!(
        server.starts_with("http://127.0.0.1:")
            && location.starts_with(&format!("{server}/fw/"))
            && location.ends_with(&format!("/{}", package.package.file_name)),
        "{location} (campaign: {})",
        view.spec.offer.url
    );
    assert_eq!(
        doc,
        json!({
            "firmware": {
                "location": location,
                "length": 60_000,
                "hash": hex::encode(sha2::Sha256::digest(&bytes)),
                "md5": hex::encode(md5::Md5::digest(&bytes)),
                "rev": "2.0.0",
                "name": package.package.file_name,
            },
            "note": "pump \"stall\" fix",
            "job": doc["job"].as_str().filter(|j| !j.is_empty()).unwrap_or("no job id"),
        })
    );
}
