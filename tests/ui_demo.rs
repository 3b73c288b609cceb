//! The demo's buttons in the window: one click on "▶ Start the demo" from the empty state starts
//! the story's campaign; "Replay demo" cancels it and starts it again on fresh devices. The
//! real engine and simulator, the window driven by egui_kittest.

// Test code throughout: clippy's allow-unwrap-in-tests (clippy.toml) goes by `cfg(test)`.
#![cfg(test)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use ota_console::cli::demo::{self, Demo};
use ota_console::cli::window::WindowDemo;
use ota_console::engine;
use ota_console::rollout::CampaignState;
use ota_console::testing::engine::loopback_config;
use ota_console::ui::{CjkFonts, OtaApp, Settings};

const WAIT: Duration = Duration::from_secs(90);

type AppHarness = Harness<'static, Option<OtaApp>>;

fn step_until(h: &mut AppHarness, what: &str, done: impl Fn(&OtaApp) -> bool) {
    let deadline = Instant::now() + WAIT;
    loop {
        h.step();
        if h.state().as_ref().is_some_and(&done) {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn one_click_starts_the_demo_and_replay_tells_it_again() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("demo");
    demo::fresh_demo_dir(&dir).unwrap();
    let handle = rt
        .block_on(engine::start(loopback_config(&dir).with_open_broker()))
        .unwrap();
    let story = rt.block_on(Demo::launch(&handle, &dir, false)).unwrap();
    let driver = Arc::new(WindowDemo::new(story.clone(), rt.handle().clone()));

    let mut h = Harness::builder()
        .with_size(egui::vec2(1600.0, 1000.0))
        .with_context_setup(|ctx| CjkFonts::bundled_only().install(ctx))
        .build_ui_state(
            |ui, app: &mut Option<OtaApp>| {
                if let Some(app) = app {
                    app.update_logic(ui.ctx());
                    app.frame_ui(ui);
                }
            },
            None,
        );
    let ctx = h.ctx.clone();
    let mut app = OtaApp::new(handle.clone(), &ctx, Settings::default(), true);
    app.set_demo_driver(driver);
    *h.state_mut() = Some(app);
    h.step();

    assert!(h.query_by_label("Replay demo").is_none());
    h.get_by_label("▶ Start the demo").click();
    step_until(&mut h, "the demo campaign", |app| {
        app.snapshot().campaigns.len() == 1
    });
    let first = handle.snapshot().campaigns[0].snapshot.id;

    h.get_by_label("Replay demo").click();
    step_until(&mut h, "the replayed campaign", |app| {
        app.snapshot().campaigns.len() == 2
    });
    let snap = handle.snapshot();
    let old = snap
        .campaigns
        .iter()
        .find(|c| c.snapshot.id == first)
        .unwrap();
    assert_eq!(old.snapshot.state, CampaignState::Canceled);
    let new = snap
        .campaigns
        .iter()
        .find(|c| c.snapshot.id != first)
        .unwrap();
    assert_eq!(new.snapshot.state, CampaignState::Running);
    // The replay's devices start again from 1.0.0.
    assert!(
        new.snapshot
            .devices
            .iter()
            .all(|d| d.from_version.as_deref() != Some(demo::TO_VERSION)),
        "{:?}",
        new.snapshot.devices
    );
    rt.block_on(story.shutdown());
}
