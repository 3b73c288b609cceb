//! Driving the real engine in black-box tests: starting it on loopback, waits that are bounded,
//! woken by each new snapshot and explain what they saw when the time runs out; discovery,
//! a provisioned simulated fleet, and starting a rollout.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::device_id::DeviceId;
use crate::engine::{self, CampaignRequest, CampaignView, EngineConfig, EngineHandle, Snapshot};
use crate::rollout::{CampaignId, DialectSettings, Policy};
use crate::sim::{SimConfig, SimError, SimFleet, SimLogins};

/// The longest any single wait on the engine may take.
pub const WAIT_FOR_ENGINE: Duration = Duration::from_secs(60);

/// The engine's defaults (secure embedded broker) with the broker and the firmware server on
/// free loopback ports and everything it keeps in `data_dir`.
pub fn loopback_config(data_dir: &Path) -> EngineConfig {
    let any_port = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    EngineConfig::embedded(any_port, any_port, data_dir.to_path_buf())
}

/// Starts the engine with `config` on the current runtime.
pub async fn start_engine(config: EngineConfig) -> EngineHandle {
    engine::start(config).await.expect("engine starts")
}

/// Starts the engine with [`loopback_config`]`(data_dir)`.
pub async fn start_embedded(data_dir: &Path) -> EngineHandle {
    start_engine(loopback_config(data_dir)).await
}

/// Waits (bounded) until `done` holds for the latest snapshot.
pub async fn wait_for(
    handle: &EngineHandle,
    what: &str,
    mut done: impl FnMut(&Snapshot) -> bool,
) -> Arc<Snapshot> {
    let mut watch = handle.watch();
    let result = tokio::time::timeout(WAIT_FOR_ENGINE, async {
        loop {
            let snap = watch.borrow_and_update().clone();
            if done(&snap) {
                return snap;
            }
            if watch.changed().await.is_err() {
                panic!("engine stopped while waiting for {what}");
            }
        }
    })
    .await;
    match result {
        Ok(snap) => snap,
        Err(_) => {
            let snap = handle.snapshot();
            let devices: Vec<String> = snap
                .devices
                .iter()
                .map(|r| format!("{} {:?}", r.record.id, r.record.versions))
                .collect();
            panic!(
                "timed out waiting for {what}; link {:?}; devices {devices:#?}; campaigns {:#?}",
                snap.link,
                snap.campaigns.first().map(|c| &c.snapshot.devices)
            )
        }
    }
}

/// Waits until campaign `id` is over: finished, nothing in flight.
pub async fn run_to_end(handle: &EngineHandle, id: CampaignId) -> CampaignView {
    let snap = wait_for(handle, "the campaign to finish", |s| {
        s.campaigns.iter().any(|c| {
            c.snapshot.id == id
                && c.snapshot.state.is_finished()
                && c.snapshot.counts.in_flight() == 0
        })
    })
    .await;
    snap.campaigns
        .iter()
        .find(|c| c.snapshot.id == id)
        .unwrap()
        .clone()
}

/// Waits until every expected device was discovered with a version.
pub async fn discover(handle: &EngineHandle, expected: &[DeviceId]) {
    let expected = expected.to_vec();
    wait_for(handle, "discovery of every simulated device", move |s| {
        expected.iter().all(|id| {
            s.devices
                .iter()
                .any(|row| &row.record.id == id && row.record.version(None).is_some())
        })
    })
    .await;
}

/// Imports `fw` and starts a campaign over `targets` (target version 2.0.0).
pub async fn start_rollout(
    handle: &EngineHandle,
    fw: &Path,
    targets: Vec<DeviceId>,
    policy: Policy,
) -> CampaignId {
    let package = handle
        .import_firmware(fw.to_path_buf())
        .await
        .expect("import");
    handle
        .start_campaign(CampaignRequest {
            name: "e2e".into(),
            package_sha256: package.package.sha256,
            version: "2.0.0".into(),
            module: None,
            description: "e2e test".into(),
            targets,
            policy,
            settings: DialectSettings::default(),
            download_url: None,
        })
        .await
        .expect("campaign starts")
}

/// Starts `cfg`'s simulated fleet with credentials for every device, provisioned in the
/// engine's data directory (the secure embedded broker re-reads them at the next login), as
/// an operator provisions real devices before they connect.
pub async fn start_fleet(data_dir: &Path, cfg: SimConfig) -> Result<SimFleet, SimError> {
    let (logins, _) = SimLogins::provision(data_dir, &cfg).expect("credentials provisioned");
    SimFleet::start(SimConfig {
        logins: Arc::new(logins),
        ..cfg
    })
    .await
}
