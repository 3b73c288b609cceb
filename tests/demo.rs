//! The demo (`ota-console --demo`) tells its story in time: with the real engine (embedded
//! broker, firmware server) and the real simulator, every way an upgrade can end has ended,
//! with the words and code the window shows for it, within 150 s of the start.

// Test code throughout: clippy's allow-unwrap-in-tests (clippy.toml) goes by `cfg(test)`.
#![cfg(test)]

use std::time::{Duration, Instant};

use ota_console::cli::demo::{self, Demo, Story};
use ota_console::device_id::DeviceId;
use ota_console::engine::CampaignView;
use ota_console::rollout::{DeviceLines, DeviceSnapshot, DeviceStatus};
use ota_console::testing::engine::{discover, loopback_config, run_to_end, start_engine};
use ota_console::ui::explain::explain_code;

/// The bound: from the start of `--demo` to the last failure kind ended.
const STORY_TOLD_WITHIN: Duration = Duration::from_secs(150);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_failure_kind_ends_and_is_explained_within_150_s() {
    let started = Instant::now();
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("demo");
    demo::fresh_demo_dir(&dir).unwrap();
    // As `--demo` runs it on loopback: an open embedded broker, free ports.
    let handle = start_engine(loopback_config(&dir).with_open_broker()).await;
    let story = Demo::launch(&handle, &dir, false).await.unwrap();
    let main = story.main_devices().await;
    discover(&handle, &main).await;
    let id = story.start_story(&handle).await.unwrap();
    let cast = story.cast().await;
    let told: Vec<Story> = cast.iter().map(|(s, _)| *s).collect();
    assert_eq!(told, Story::ALL, "every story has its actor");

    // Wait for every member of the cast to reach its story's end, bounded by the 150 s.
    let mut watch = handle.watch();
    let ended = |devices: &DeviceLines| {
        cast.iter().all(|(story, ids)| {
            ids.iter().all(|id| {
                devices
                    .iter()
                    .any(|d| &d.id.device() == id && d.status == story.outcome())
            })
        })
    };
    let left = STORY_TOLD_WITHIN.saturating_sub(started.elapsed());
    let waited = tokio::time::timeout(left, async {
        loop {
            let snap = watch.borrow_and_update().clone();
            let campaign = snap.campaigns.iter().find(|c| c.snapshot.id == id);
            if campaign.is_some_and(|c| ended(&c.snapshot.devices)) {
                return;
            }
            watch.changed().await.unwrap();
        }
    })
    .await;
    let snap = handle.snapshot();
    let campaign = snap.campaigns.iter().find(|c| c.snapshot.id == id).unwrap();
    let of = |id: &DeviceId| {
        campaign
            .snapshot
            .devices
            .iter()
            .find(|d| &d.id.device() == id)
            .map(|d| DeviceSnapshot::clone(d))
            .unwrap()
    };
    if waited.is_err() {
        let cast_now: Vec<_> = cast
            .iter()
            .flat_map(|(s, ids)| ids.iter().map(move |id| (*s, id)))
            .map(|(s, id)| format!("{s:?}: {:?}", of(id)))
            .collect();
        panic!(
            "the story was not told within {STORY_TOLD_WITHIN:?}: {cast_now:#?}; waves {:?}",
            campaign.snapshot.waves
        );
    }
    let told_in = started.elapsed();
    eprintln!("every failure kind ended {told_in:?} after the start");

    explained(&cast, &of);
    canary_passed(campaign, &main);

    // And the healthy fleet, every dialect of it, upgrades.
    let view = run_to_end(&handle, id).await;
    let mut dialects = std::collections::BTreeSet::new();
    for d in &view.snapshot.devices {
        if main.contains(&d.id.device()) {
            assert_eq!(d.status, DeviceStatus::Succeeded, "{d:?}");
            dialects.insert(d.id.dialect());
        }
    }
    assert_eq!(
        dialects.len(),
        ota_console::protocol::registry::sim_factories().len(),
        "{dialects:?}"
    );
    story.shutdown().await;
}

/// Each ending is explained: the failure's words, and its code in the dialect's table (what
/// the device table and the inspector show beside it).
fn explained(cast: &[(Story, Vec<DeviceId>)], of: &impl Fn(&DeviceId) -> DeviceSnapshot) {
    for (story, ids) in cast {
        for id in ids {
            let d = of(id);
            match story {
                Story::RetryRecovers => {
                    assert_eq!(d.attempts, 2, "failed once, then recovered: {d:?}");
                }
                Story::Silent => {
                    assert!(d.error.as_deref().is_some_and(|e| !e.is_empty()), "{d:?}");
                    assert_eq!(d.attempts, 2, "timed out, retried, timed out: {d:?}");
                }
                Story::DownloadFails
                | Story::DigestMismatch
                | Story::FlashFails
                | Story::Rejected => {
                    assert!(d.error.as_deref().is_some_and(|e| !e.is_empty()), "{d:?}");
                    let code = d
                        .code
                        .unwrap_or_else(|| panic!("{story:?} has a code: {d:?}"));
                    let explained = explain_code(d.id.dialect(), code);
                    assert!(explained.is_some(), "{story:?}: code {code} unexplained");
                }
            }
        }
    }
    // Three failures with three different codes: download, digest, flash are told apart.
    let codes: std::collections::BTreeSet<i64> = cast
        .iter()
        .filter(|(s, _)| {
            matches!(
                s,
                Story::DownloadFails | Story::DigestMismatch | Story::FlashFails
            )
        })
        .flat_map(|(_, ids)| ids.iter().filter_map(|id| of(id).code))
        .collect();
    assert_eq!(codes.len(), 3, "{codes:?}");
}

/// The canary (one device of the healthy fleet) passed and the wave opened.
fn canary_passed(campaign: &CampaignView, main: &[DeviceId]) {
    let canary: Vec<_> = campaign
        .snapshot
        .devices
        .iter()
        .filter(|d| d.wave == Some(0))
        .collect();
    assert_eq!(canary.len(), 1, "{canary:?}");
    assert!(main.contains(&canary[0].id.device()), "{canary:?}");
    assert_eq!(canary[0].status, DeviceStatus::Succeeded);
    assert!(campaign.snapshot.waves.count >= 2);
}
