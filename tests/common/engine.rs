//! Waiting on the real engine in black-box tests: bounded, woken by each new snapshot, and
//! explaining what it saw when the time runs out.

use std::sync::Arc;
use std::time::Duration;

use ota_console::engine::{CampaignView, EngineHandle, Snapshot};
use ota_console::rollout::{CampaignId, CanarySize, Policy, RateLimit};

/// The longest any single wait on the engine may take.
pub const WAIT_FOR_ENGINE: Duration = Duration::from_secs(60);

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

/// A policy that gets out of a test's way: a canary of one, then everyone, no rate or
/// concurrency limit worth noting, no retries, no abort.
pub fn fast_policy(device_timeout_secs: u64) -> Policy {
    Policy {
        canary: CanarySize::Count(1),
        wave_size: 0,
        rate: RateLimit {
            per_minute: 60_000,
            burst: 1_000,
        },
        max_in_flight: 1_000,
        device_timeout_secs,
        retries: 0,
        retry_interval_secs: 1,
        abort: None,
        ..Policy::default()
    }
}
