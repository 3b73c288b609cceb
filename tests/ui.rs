//! The real window, driven by accessibility labels with egui_kittest (no display, no GPU): the
//! real engine with its embedded broker and firmware server on ephemeral loopback ports, a
//! simulated fleet, and `OtaApp` itself. Import a firmware through the app's own import
//! function, read its digests, select devices, start a rollout, watch the grid reach
//! "succeeded" at 100 %, pause / resume / cancel, see device text in Chinese drawn with real
//! glyphs (the harness panics on a missing glyph), see a broker that refuses connections
//! reported in the connection bar, and an import the store refuses shown in the engine's words.
//! The window opens when the engine cannot start (port taken, data directory unusable) and its
//! ways out work; a tile click inspects, its corner box selects; at 1280×720 and 1920×1080 a
//! running rollout's counts, ETA, pause and cancel are in view without scrolling; an alert
//! arriving does not move the "Tiles" button.

// Test code throughout: clippy's allow-unwrap-in-tests (clippy.toml) goes by `cfg(test)`.
//!
//! Issue #15: every test runs once per language (`name::en`, `name::zh_cn`, through
//! `in_both_languages!`), its thread speaking that language (`i18n::ThreadLang`) and finding
//! widgets by the texts of the same keys the window draws with (`l`, `lf`). Five stay English
//! only: they read words the engine says on its own threads (which speak the process's
//! language) or a dialect's data as the test holds it.

#![cfg(test)]
#![cfg(feature = "gui")]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use egui_kittest::Harness;
use egui_kittest::kittest::{NodeT as _, Queryable};
use md5::Digest as _;
use ota_console::device_id::DeviceId;
use ota_console::engine::{
    self, BrokerChoice, EmbeddedAccess, EngineConfig, EngineHandle, Snapshot,
};
use ota_console::i18n::{self, Lang, ThreadLang};
use ota_console::protocol::{aws, dji, registry};
use ota_console::rollout::{CanarySize, Policy, RateLimit, Timestamp};
use ota_console::sim::{Behaviour, FaultOdds, SimConfig, SimFleet};
use ota_console::store::{InventoryDevice, Store};
use ota_console::testing::engine::loopback_config;
use ota_console::testing::sim_units;
use ota_console::testing::{firmware_bytes, firmware_file};
use ota_console::transport::broker::{BrokerSettings, EmbeddedBroker};
use ota_console::transport::mqtt::{BrokerUrl, LinkOptions};
use ota_console::ui::{CjkFonts, Connector, OtaApp, Settings};
use tokio::runtime::Runtime;
use tokio::sync::watch;

/// The window's text under `key` in the language this test's thread speaks (each test runs
/// once per language: labels are looked up through the same keys the window draws with).
fn l(key: &str) -> String {
    i18n::text_of(i18n::lang(), key).unwrap_or_else(|| panic!("no text {key}"))
}

/// [`l`] with its `%{name}` placeholders filled.
fn lf(key: &str, args: &[(&str, &dyn std::fmt::Display)]) -> String {
    let mut text = l(key);
    for (name, value) in args {
        text = text.replace(&format!("%{{{name}}}"), &value.to_string());
    }
    text
}

/// The start of [`l`]'s text, up to its first placeholder: what a label begins with.
fn lp(key: &str) -> String {
    let text = l(key);
    text.split("%{").next().unwrap_or_default().to_owned()
}

/// What the strip's count says between the count done and the count succeeded, for `total`
/// devices (" of 8 done, " in English).
fn done_of(total: usize) -> String {
    let text = l("ui.strip.done");
    let after_done = text.split("%{done}").nth(1).unwrap_or_default();
    let middle = after_done.split("%{succeeded}").next().unwrap_or_default();
    middle.replace("%{total}", &total.to_string())
}

/// "3 selected · 5 shown of 5" in the test's language.
fn sel(selected: usize, shown: usize, total: usize) -> String {
    lf(
        "ui.console.selected",
        &[
            ("selected", &selected),
            ("shown", &shown),
            ("total", &total),
        ],
    )
}

/// Upper bound of every wait; the rollouts here take a few seconds.
const WAIT: Duration = Duration::from_secs(90);

type AppHarness = Harness<'static, Option<OtaApp>>;

struct Rig {
    rt: Runtime,
    /// What the engine was started with (the connection dialog's base).
    config: EngineConfig,
    handle: EngineHandle,
    watch: watch::Receiver<Arc<Snapshot>>,
    _data: tempfile::TempDir,
    _fleet: Option<SimFleet>,
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("ui-test-io")
        .enable_all()
        .build()
        .unwrap()
}

fn start_rig(broker: Option<BrokerChoice>, fleet: Option<SimConfig>) -> Rig {
    start_rig_remembering(broker, fleet, &[])
}

/// A rig whose data dir remembers `remembered` (Alibaba, on 1.0.0, last heard an hour ago) from
/// an earlier run: devices that are not on the broker now.
fn start_rig_remembering(
    broker: Option<BrokerChoice>,
    fleet: Option<SimConfig>,
    remembered: &[DeviceId],
) -> Rig {
    let rt = runtime();
    let data = tempfile::tempdir().unwrap();
    if !remembered.is_empty() {
        let mut store = Store::open(&data.path().join("ota-console.db")).unwrap();
        let an_hour_ago = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
            - 3_600_000;
        let rows: Vec<InventoryDevice> = remembered
            .iter()
            .map(|id| InventoryDevice {
                id: id.clone(),
                gateway: None,
                versions: [("default".to_owned(), "1.0.0".to_owned())].into(),
                last_seen: Some(Timestamp::from_millis(an_hour_ago)),
            })
            .collect();
        store.upsert_devices(&rows).unwrap();
    }
    // Open on loopback, as the demo's broker is.
    let mut config = loopback_config(data.path()).with_open_broker();
    if let Some(broker) = broker {
        config.broker = broker;
    }
    let handle = rt
        .block_on(engine::start(config.clone()))
        .expect("engine starts");
    let fleet = fleet.map(|cfg| {
        let cfg = SimConfig {
            broker_url: handle.broker_url().to_owned(),
            ..cfg
        };
        rt.block_on(SimFleet::start(cfg))
            .expect("simulated fleet starts")
    });
    Rig {
        config,
        watch: handle.watch(),
        rt,
        handle,
        _data: data,
        _fleet: fleet,
    }
}

fn sim(seed: u64) -> SimConfig {
    SimConfig {
        units: sim_units(&[
            ("aliyun", 3),
            ("fogcloud-gateways", 1),
            ("subs", 2),
            ("dji-docks", 1),
        ]),
        version: "1.0.0".into(),
        seed,
        behaviour: Behaviour {
            install: Duration::from_millis(100),
            faults: FaultOdds::default(),
            ..Behaviour::default()
        },
        ..SimConfig::default()
    }
}

/// A policy that lets the whole (small) fleet go at once.
fn fast_policy() -> Policy {
    Policy {
        canary: CanarySize::Count(1),
        success_threshold_percent: 0,
        rate: RateLimit {
            per_minute: 60_000,
            burst: 1_000,
        },
        max_in_flight: 1_000,
        device_timeout_secs: 30,
        retries: 0,
        abort: None,
        ..Policy::default()
    }
}

fn harness(rig: &Rig, settings: Settings) -> AppHarness {
    harness_sized(rig, settings, egui::vec2(1600.0, 1000.0))
}

fn harness_sized(rig: &Rig, settings: Settings, size: egui::Vec2) -> AppHarness {
    let handle = rig.handle.clone();
    app_harness(handle, settings, size)
}

/// The window on `handle` (an engine, or a handle to none), `size` points large.
fn app_harness(handle: EngineHandle, settings: Settings, size: egui::Vec2) -> AppHarness {
    let mut harness = Harness::builder()
        .with_size(size)
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
    let ctx = harness.ctx.clone();
    *harness.state_mut() = Some(OtaApp::new(handle, &ctx, settings, false));
    harness.step();
    harness
}

fn app(h: &AppHarness) -> &OtaApp {
    h.state().as_ref().expect("app is built")
}

/// Steps the window until `done` holds, waking on engine changes; bounded by [`WAIT`].
fn wait_for(h: &mut AppHarness, rig: &mut Rig, what: &str, done: impl Fn(&AppHarness) -> bool) {
    let deadline = Instant::now() + WAIT;
    loop {
        h.step();
        if done(h) {
            return;
        }
        if Instant::now() > deadline {
            let snap = rig.handle.snapshot();
            panic!(
                "timed out waiting for {what}; link {:?}; alerts {:?}; campaigns {:?}",
                snap.link,
                snap.alerts,
                snap.campaigns.first().map(|c| {
                    let unfinished: Vec<_> = c
                        .snapshot
                        .devices
                        .iter()
                        .filter(|d| d.status != ota_console::rollout::DeviceStatus::Succeeded)
                        .collect();
                    (&c.snapshot.state, &c.snapshot.counts, unfinished)
                })
            );
        }
        let watch = &mut rig.watch;
        let _ = rig.rt.block_on(async {
            tokio::time::timeout(Duration::from_millis(100), watch.changed()).await
        });
    }
}

fn firmware(dir: &Path) -> (PathBuf, Vec<u8>) {
    (firmware_file(dir, 100_000), firmware_bytes(100_000))
}

/// Whether at least one node has this label (`query_by_label` panics when several do, e.g. a
/// status shown both in the table and as a filter checkbox).
fn has_label(h: &AppHarness, label: &str) -> bool {
    h.query_all_by_label(label).next().is_some()
}

fn count_labels(h: &AppHarness, role: egui::Role, label: &str) -> usize {
    h.query_all_by_role_and_label(role, label).count()
}

/// Waits until every simulated device is in the table.
fn discover(h: &mut AppHarness, rig: &mut Rig, n: usize) {
    let shown = sel(0, n, n);
    wait_for(h, rig, "every simulated device in the table", |h| {
        has_label(h, &shown)
            && app(h)
                .snapshot()
                .devices
                .iter()
                .all(|r| r.record.version(None).is_some())
    });
}

/// Imports through the app, types the version, selects every shown device, starts and confirms.
fn import_select_and_start(h: &mut AppHarness, rig: &mut Rig, fw: PathBuf, bytes: &[u8], n: usize) {
    h.state_mut().as_mut().unwrap().import_firmware(fw);
    let sha256 = hex::encode(sha2::Sha256::digest(bytes));
    let md5 = hex::encode(md5::Md5::digest(bytes));
    // The side panel shows digests shortened (full text in the tooltip and the copy button).
    let short = |d: &str| format!("{}…{}", &d[..12], &d[d.len() - 8..]);
    wait_for(h, rig, "the package digests", |h| {
        has_label(h, &short(&sha256)) && has_label(h, &short(&md5))
    });
    let chosen = app(h).view().firmware.package.clone();
    assert_eq!(chosen.as_deref(), Some(sha256.as_str()));
    let stored = app(h)
        .snapshot()
        .packages
        .first()
        .map(|p| p.package.md5.clone());
    assert_eq!(stored.as_deref(), Some(md5.as_str()));
    assert!(has_label(h, &l("ui.firmware.checksum")));

    h.get_by_label(&l("ui.firmware.target_version")).focus();
    h.run_steps(2);
    h.get_by_label(&l("ui.firmware.target_version"))
        .type_text("2.0.0");
    h.run_steps(2);
    assert_eq!(app(h).view().firmware.version, "2.0.0");

    h.get_by_label(&l("ui.console.select_all")).click();
    h.run_steps(2);
    assert!(has_label(h, &sel(n, n, n)));
    h.get_by_label(&lf("ui.rollout.start_selected", &[("count", &n)]))
        .click();
    h.run_steps(2);
    // The confirmation names the count and the version.
    let question = if n == 1 {
        lf(
            "ui.rollout.confirm_one",
            &[("version", &"2.0.0"), ("module", &"")],
        )
    } else {
        lf(
            "ui.rollout.confirm",
            &[("count", &n), ("version", &"2.0.0"), ("module", &"")],
        )
    };
    if !has_label(h, &question) {
        let labels: Vec<String> = h
            .root()
            .children_recursive()
            .filter_map(|n| n.accesskit_node().label())
            .collect();
        panic!("no {question:?} among {labels:?}");
    }
    h.get_by_label(&l("ui.rollout.confirm_start")).click();
    h.run_steps(2);
}

fn rollout_from_the_window_reaches_succeeded_at_100_percent(lang: Lang) {
    let _lang = ThreadLang::new(lang);
    // No DJI dock here: a dock and its drone noticed at once make the simulated dock answer
    // 312014 "already upgrading" for the drone (the DJI case is covered by tests/e2e_rollout.rs).
    let fleet = SimConfig {
        units: sim_units(&[("aliyun", 3), ("fogcloud-gateways", 1), ("subs", 2)]),
        ..sim(21)
    };
    let mut rig = start_rig(None, Some(fleet));
    let settings = Settings {
        policy: fast_policy(),
        ..Settings::default()
    };
    let mut h = harness(&rig, settings);
    // 3 Alibaba + a FogCloud gateway and its 2 sub-devices.
    let n = 6;
    discover(&mut h, &mut rig, n);
    let dir = tempfile::tempdir().unwrap();
    let (fw, bytes) = firmware(dir.path());
    import_select_and_start(&mut h, &mut rig, fw, &bytes, n);

    let finished = lf(
        "ui.rollout.finished",
        &[
            ("done", &n),
            ("total", &n),
            ("percent", &100),
            ("succeeded", &n),
        ],
    );
    wait_for(&mut h, &mut rig, "every device to succeed", |h| {
        has_label(h, &finished)
    });
    // The table: one "succeeded" status label per device line (the plot legend has a
    // "succeeded" checkbox too).
    assert_eq!(
        count_labels(&h, egui::Role::Label, &l("state.device.succeeded")),
        n
    );
    // The tiles: every card reads &lf("ui.tiles.percent", &[("status", &l("state.device.succeeded")), ("percent", &100)]).
    h.get_by_label(&l("ui.console.tiles")).click();
    h.run_steps(3);
    let tiles = h
        .query_all_by_label_contains(&lf(
            "ui.tiles.percent",
            &[("status", &l("state.device.succeeded")), ("percent", &100)],
        ))
        .count();
    assert_eq!(tiles, n, "tiles at 100 %");
    h.check_accessibility();
    // Every policy field and the history are reachable by name too.
    h.get_by_label(&l("ui.rollout.policy")).click();
    h.get_by_label(&l("ui.console.history")).click();
    h.run_steps(2);
    assert!(h.query_by_label(&l("ui.rollout.device_timeout")).is_some());
    for field in [
        "ui.rollout.resend_after",
        "ui.rollout.resends",
        "ui.rollout.each_wait",
        "ui.rollout.settle",
    ] {
        let field = l(field);
        assert!(h.query_by_label(&field).is_some(), "policy field {field}");
    }
    h.check_accessibility();
}

// English only: it reads words the engine says on its own threads or a dialect's data
// that the test looks up as it is.
#[test]
fn notice_settings_picked_in_the_generated_form_reach_the_started_campaign() {
    let _lang = ThreadLang::new(Lang::En);
    let fleet = SimConfig {
        units: sim_units(&[("aliyun", 1)]),
        ..sim(22)
    };
    let mut rig = start_rig(None, Some(fleet));
    let settings = Settings {
        policy: fast_policy(),
        ..Settings::default()
    };
    let mut h = harness(&rig, settings);
    discover(&mut h, &mut rig, 1);
    // Every registered dialect's settings have a combo labelled by the setting; pick a choice
    // other than the default in each (e.g. "DJI upgrade type" -> "consistency upgrade").
    let mut picked = Vec::new();
    for dialect in registry::all() {
        // Text settings (templates) have a test of their own, below.
        for setting in dialect
            .notice_settings()
            .iter()
            .filter(|s| s.text().is_none())
        {
            let choice = setting
                .choices()
                .iter()
                .find(|c| c.value != setting.default)
                .unwrap();
            h.get_by_role_and_label(egui::Role::ComboBox, setting.label)
                .click();
            h.run_steps(2);
            h.get_by_label(choice.label).click();
            h.run_steps(2);
            assert_eq!(
                app(&h)
                    .view()
                    .firmware
                    .settings
                    .value(dialect.id(), setting),
                choice.value,
                "{}",
                setting.label
            );
            picked.push((dialect.id(), setting, choice.value));
        }
    }
    assert!(picked.len() >= 2, "the built-in dialects have settings");
    let dir = tempfile::tempdir().unwrap();
    let (fw, bytes) = firmware(dir.path());
    import_select_and_start(&mut h, &mut rig, fw, &bytes, 1);
    wait_for(&mut h, &mut rig, "the campaign to start", |h| {
        !app(h).snapshot().campaigns.is_empty()
    });
    let snapshot = app(&h).snapshot();
    let started = &snapshot.campaigns.first().unwrap().spec.settings;
    for (dialect, setting, value) in picked {
        assert_eq!(started.value(dialect, setting), value, "{}", setting.label);
    }
    assert_eq!(
        started.value(dji::ID, &dji::UPGRADE_TYPE),
        "consistency",
        "the DJI upgrade type picked in the window"
    );
}

/// A text setting (AWS's job document template) is a multi-line field checked as it is typed:
/// the dialect's reason shows under it while it is refused, and once fixed it is what the
/// started campaign keeps.
#[test]
fn a_template_setting_is_checked_as_typed_and_reaches_the_started_campaign() {
    let fleet = SimConfig {
        units: sim_units(&[("aliyun", 1)]),
        ..sim(24)
    };
    let mut rig = start_rig(None, Some(fleet));
    let settings = Settings {
        policy: fast_policy(),
        ..Settings::default()
    };
    let mut h = harness(&rig, settings);
    discover(&mut h, &mut rig, 1);
    let setting = &aws::DOCUMENT;
    let field = || (egui::Role::MultilineTextInput, setting.label);
    h.get_by_role_and_label(field().0, field().1).focus();
    h.run_steps(2);
    // Not closed yet: refused, with the template's line.
    h.get_by_role_and_label(field().0, field().1)
        .type_text("{\"fw\": \"{{url}}\", \"n\": {{size}}");
    h.run_steps(2);
    assert!(
        h.query_by_label_contains("line 1: not valid JSON")
            .is_some(),
        "the reason is shown under the field"
    );
    assert!(app(&h).view().firmware.setting_text_error().is_some());
    h.get_by_role_and_label(field().0, field().1).type_text("}");
    h.run_steps(2);
    assert!(h.query_by_label_contains("not valid JSON").is_none());
    assert!(app(&h).view().firmware.setting_text_error().is_none());
    let template = "{\"fw\": \"{{url}}\", \"n\": {{size}}}";
    assert_eq!(
        app(&h).view().firmware.settings.text(aws::ID, setting),
        template
    );
    let dir = tempfile::tempdir().unwrap();
    let (fw, bytes) = firmware(dir.path());
    import_select_and_start(&mut h, &mut rig, fw, &bytes, 1);
    wait_for(&mut h, &mut rig, "the campaign to start", |h| {
        !app(h).snapshot().campaigns.is_empty()
    });
    let snapshot = app(&h).snapshot();
    let started = &snapshot.campaigns.first().unwrap().spec.settings;
    assert_eq!(started.text(aws::ID, setting), template);
}

fn devices_not_heard_since_the_start_are_marked_and_left_out_of_select_all(lang: Lang) {
    let _lang = ThreadLang::new(lang);
    let gone: Vec<DeviceId> = (0..2)
        .map(|i| DeviceId::aliyun("remembered", &format!("gone-{i}")).unwrap())
        .collect();
    let fleet = SimConfig {
        units: sim_units(&[("aliyun", 3)]),
        ..sim(23)
    };
    let mut rig = start_rig_remembering(None, Some(fleet), &gone);
    let mut h = harness(&rig, Settings::default());
    // 3 simulated Alibaba devices heard, 2 remembered ones.
    wait_for(&mut h, &mut rig, "the simulated devices heard", |h| {
        has_label(h, &sel(0, 5, 5))
            && app(h)
                .snapshot()
                .devices
                .iter()
                .filter(|r| r.record.heard_since_start)
                .count()
                == 3
    });
    // The "Last heard" column marks the remembered devices, with when they were heard before;
    // their status reads "remembered", the others' "idle" with a relative time.
    assert!(has_label(&h, &l("ui.table.last_heard")));
    assert_eq!(
        h.query_all_by_label_contains(&lf(
            "ui.format.not_heard_before",
            &[(
                "age",
                &lf(
                    "ui.format.ago",
                    &[(
                        "duration",
                        &lf("ui.format.hours_min", &[("h", &1), ("m", &"00")])
                    )]
                )
            )]
        ))
        .count(),
        2
    );
    assert_eq!(
        count_labels(&h, egui::Role::Label, &l("ui.table.remembered")),
        2
    );
    assert_eq!(count_labels(&h, egui::Role::Label, &l("ui.filter.idle")), 3);
    // Select all = the heard devices; the rest are counted and added only on purpose.
    h.get_by_label(&l("ui.console.select_all")).click();
    h.run_steps(2);
    assert!(has_label(&h, &sel(3, 5, 5)));
    assert!(gone.iter().all(|g| !app(&h).view().selection.contains(g)));
    h.get_by_label(&lf("ui.console.also_select", &[("count", &2)]))
        .click();
    h.run_steps(2);
    assert!(has_label(&h, &sel(5, 5, 5)));
    // The tiles say it too.
    h.get_by_label(&l("ui.console.tiles")).click();
    h.run_steps(3);
    assert!(has_label(
        &h,
        &format!("gone-0: {}", l("ui.format.not_heard"))
    ));
    assert!(has_label(
        &h,
        &format!("gone-1: {}", l("ui.format.not_heard"))
    ));
    h.check_accessibility();
}

fn pause_resume_and_cancel_from_the_window(lang: Lang) {
    let _lang = ThreadLang::new(lang);
    let mut rig = start_rig(None, Some(sim(22)));
    // One notice a minute: the campaign stays running long enough to be paused and canceled.
    let settings = Settings {
        policy: Policy {
            rate: RateLimit {
                per_minute: 1,
                burst: 1,
            },
            ..fast_policy()
        },
        ..Settings::default()
    };
    let mut h = harness(&rig, settings);
    let n = 8;
    discover(&mut h, &mut rig, n);
    let dir = tempfile::tempdir().unwrap();
    let (fw, bytes) = firmware(dir.path());
    import_select_and_start(&mut h, &mut rig, fw, &bytes, n);

    wait_for(&mut h, &mut rig, "the campaign to run", |h| {
        has_label(h, &l("ui.strip.pause"))
    });
    h.get_by_label(&l("ui.strip.pause")).click();
    wait_for(&mut h, &mut rig, "the campaign to pause", |h| {
        has_label(h, &l("ui.strip.resume"))
    });
    assert!(
        h.query_all_by_label_contains(&l("state.campaign.paused"))
            .next()
            .is_some()
    );
    h.get_by_label(&l("ui.strip.resume")).click();
    wait_for(&mut h, &mut rig, "the campaign to resume", |h| {
        has_label(h, &l("ui.strip.pause"))
    });
    h.get_by_label(&l("ui.strip.cancel")).click();
    wait_for(&mut h, &mut rig, "the campaign to be canceled", |h| {
        h.query_all_by_label_contains(&l("state.campaign.canceled"))
            .next()
            .is_some()
    });
    assert!(!has_label(&h, &l("ui.strip.pause")));
    let snap = rig.handle.snapshot();
    assert!(snap.campaigns.first().unwrap().snapshot.counts.canceled > 0);
}

fn chinese_failure_text_from_a_fogcloud_device_is_drawn(lang: Lang) {
    let _lang = ThreadLang::new(lang);
    let mut config = SimConfig {
        units: sim_units(&[("fogcloud", 1)]),
        ..sim(23)
    };
    config.behaviour.faults.download = 1.0;
    let mut rig = start_rig(None, Some(config));
    let settings = Settings {
        policy: fast_policy(),
        ..Settings::default()
    };
    let mut h = harness(&rig, settings);
    discover(&mut h, &mut rig, 1);
    let dir = tempfile::tempdir().unwrap();
    let (fw, bytes) = firmware(dir.path());
    import_select_and_start(&mut h, &mut rig, fw, &bytes, 1);
    wait_for(&mut h, &mut rig, "the device to fail", |h| {
        has_label(h, &l("state.device.failed"))
    });
    // The history shows each device's outcome with the device's own words; a glyph missing
    // from every font would make the harness panic here.
    h.get_by_label(&l("ui.console.history")).click();
    h.run_steps(2);
    let campaign = h.query_by_label_contains("#1 ").expect("campaign listed");
    campaign.click();
    wait_for(&mut h, &mut rig, "the Chinese failure text", |h| {
        h.query_by_label_contains("OTA升级失败,请求不到升级包信息。")
            .is_some()
    });
}

fn a_broker_that_refuses_connections_is_reported(lang: Lang) {
    let _lang = ThreadLang::new(lang);
    // A port nobody listens on: bind, read it, close.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let options = LinkOptions::new(BrokerUrl::plain("127.0.0.1", port));
    let mut rig = start_rig(Some(BrokerChoice::External(options)), None);
    let mut h = harness(&rig, Settings::default());
    wait_for(
        &mut h,
        &mut rig,
        "the link error in the connection bar",
        |h| {
            h.query_by_label_contains(&lp("ui.bar.reconnecting"))
                .is_some()
                || h.query_by_label_contains(&lp("ui.bar.disconnected"))
                    .is_some()
        },
    );
    let broker = format!("mqtt://127.0.0.1:{port}");
    assert!(
        h.query_all_by_label_contains(&broker).next().is_some()
            || h.query_all_by_label_contains(&port.to_string())
                .next()
                .is_some(),
        "the broker in use is named"
    );
}

// English only: it reads words the engine says on its own threads or a dialect's data
// that the test looks up as it is.
#[test]
fn keyboard_filter_focus_and_space_toggles_the_inspected_device() {
    let _lang = ThreadLang::new(Lang::En);
    let fleet = SimConfig {
        units: sim_units(&[
            ("aliyun", 2),
            ("fogcloud-gateways", 0),
            ("subs", 0),
            ("dji-docks", 0),
        ]),
        ..sim(24)
    };
    let mut rig = start_rig(None, Some(fleet));
    let mut h = harness(&rig, Settings::default());
    discover(&mut h, &mut rig, 2);
    // A click on a line (not on its checkbox) shows the device in the inspector...
    let cell = h.get_all_by_label("aliyun").next().expect("a dialect cell");
    cell.click();
    h.run_steps(2);
    assert!(app(&h).view().inspected.is_some());
    assert!(h.query_by_label_contains("Messages of aliyun:").is_some());
    // ...and Space selects it, and again deselects it.
    h.key_press(egui::Key::Space);
    h.run_steps(2);
    assert!(has_label(&h, &sel(1, 2, 2)));
    h.key_press(egui::Key::Space);
    h.run_steps(2);
    assert!(has_label(&h, &sel(0, 2, 2)));
    // Ctrl+F puts the cursor in the filter box; typing filters the fleet.
    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::F);
    h.run_steps(2);
    assert!(h.get_by_label(&l("ui.console.filter")).is_focused());
    h.get_by_label(&l("ui.console.filter")).type_text("0002");
    h.run_steps(2);
    assert!(has_label(&h, &sel(0, 1, 2)));
}

/// Types `text` into the text field named `label` (appending to what it holds).
fn type_into(h: &mut AppHarness, label: &str, text: &str) {
    h.get_by_label(label).focus();
    h.run_steps(2);
    h.get_by_label(label).type_text(text);
    h.run_steps(2);
}

// English only: it reads words the engine says on its own threads or a dialect's data
// that the test looks up as it is.
#[test]
fn a_saved_profile_connects_the_window_to_another_broker() {
    let _lang = ThreadLang::new(Lang::En);
    ota_console::ui::vault::use_mock_keyring();
    let mut rig = start_rig(None, None);
    // The broker the profile points at, started by the test on a free loopback port.
    let other = EmbeddedBroker::start(BrokerSettings::open("127.0.0.1:0".parse().unwrap()))
        .expect("broker starts");
    let port = other.local_addr().port();
    let mut h = harness(&rig, Settings::default());
    let connector = Connector::new(rig.rt.handle().clone(), rig.config.clone(), &rig.handle);
    h.state_mut().as_mut().unwrap().set_connector(connector);
    h.run_steps(2);
    assert!(h.query_by_label_contains("embedded broker on").is_some());

    h.get_by_label(&l("ui.bar.connection")).click();
    h.run_steps(2);
    assert!(has_label(&h, &l("ui.connection.embedded")));
    h.get_by_label(&l("ui.connection.new_profile")).click();
    h.run_steps(2);
    type_into(&mut h, &l("ui.connection.profile_name"), "test broker");
    // The URL field starts with "mqtt://".
    type_into(
        &mut h,
        &l("ui.connection.broker_url"),
        &format!("127.0.0.1:{port}"),
    );
    type_into(&mut h, &l("ui.connection.user_name"), "operator");
    type_into(&mut h, &l("ui.connection.password"), "not-in-settings-pw");
    // A new profile publishes on one connection until the operator asks for more.
    let connections_label = l("ui.connection.publish_connections");
    let connections = h.get_by_label(&connections_label);
    assert_eq!(connections.value().as_deref(), Some("1"));
    connections.set_value_accesskit(3.0);
    h.run_steps(2);
    h.get_by_label(&l("ui.connection.connect")).click();
    h.run_steps(2);

    let url = format!("mqtt://127.0.0.1:{port}");
    let bar = url.clone();
    // The engine changed under the app: wait on the app's own engine from here on.
    wait_for(
        &mut h,
        &mut rig,
        "the switch to the profile's broker",
        move |h| {
            app(h).snapshot().broker == bar
                && app(h).snapshot().link == ota_console::transport::mqtt::LinkState::Connected
        },
    );
    h.run_steps(2);
    assert!(
        h.query_all_by_label(&url).next().is_some(),
        "the connection bar names the broker"
    );
    assert!(has_label(&h, &l("ui.bar.connected")));
    let status = app(&h).view().connection.status.clone();
    let (_, text) = status.expect("the dialog reports the outcome");
    assert!(text.starts_with("Switched to test broker"), "{text}");
    assert!(text.contains("password saved in the OS keyring"), "{text}");
    assert_eq!(app(&h).handle().broker_url(), url);
    // The old engine was shut down.
    assert!(matches!(
        rig.handle.send(ota_console::engine::Command::DismissAlerts),
        Err(ota_console::engine::EngineError::Stopped)
    ));

    // The profile is in the settings, its password is not.
    let settings = app(&h).settings().clone();
    assert_eq!(settings.profiles.len(), 1);
    assert_eq!(settings.profiles[0].url, url);
    assert_eq!(settings.profiles[0].username, "operator");
    assert_eq!(settings.profiles[0].publish_connections, 3);
    let stored = serde_json::to_string(&settings).unwrap();
    assert!(!stored.contains("not-in-settings-pw"), "{stored}");
    h.check_accessibility();
}

// English only: it reads words the engine says on its own threads or a dialect's data
// that the test looks up as it is.
#[test]
fn a_profile_that_cannot_start_is_reported_and_the_previous_broker_stays() {
    let _lang = ThreadLang::new(Lang::En);
    ota_console::ui::vault::use_mock_keyring();
    let mut rig = start_rig(None, None);
    let mut h = harness(&rig, Settings::default());
    let connector = Connector::new(rig.rt.handle().clone(), rig.config.clone(), &rig.handle);
    h.state_mut().as_mut().unwrap().set_connector(connector);
    let before = rig.handle.broker_url().to_owned();
    h.get_by_label(&l("ui.bar.connection")).click();
    h.run_steps(2);
    h.get_by_label(&l("ui.connection.new_profile")).click();
    h.run_steps(2);
    type_into(&mut h, &l("ui.connection.profile_name"), "broken tls");
    h.get_by_label(&l("ui.connection.broker_url")).focus();
    h.run_steps(1);
    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::A);
    h.get_by_label(&l("ui.connection.broker_url"))
        .type_text("mqtts://127.0.0.1:1");
    h.run_steps(2);
    let missing_ca = tempfile::tempdir().unwrap().path().join("missing-ca.pem");
    type_into(
        &mut h,
        &l("ui.connection.ca_file"),
        &missing_ca.display().to_string(),
    );
    h.get_by_label(&l("ui.connection.connect")).click();
    h.run_steps(2);
    wait_for(&mut h, &mut rig, "the failed switch to be reported", |h| {
        // Both the dialog and the window's notice strip say it.
        h.query_all_by_label_contains(
            l("ui.app.back_on_previous")
                .rsplit("%{why}")
                .next()
                .unwrap_or_default(),
        )
        .next()
        .is_some()
    });
    let (_, text) = app(&h).view().connection.status.clone().unwrap();
    assert!(
        text.starts_with("Could not connect to broken tls (mqtts://127.0.0.1:1)"),
        "{text}"
    );
    // A working engine on the same broker as before.
    assert_eq!(app(&h).handle().broker_url(), before);
    wait_for(&mut h, &mut rig, "the restored link", |h| {
        app(h).snapshot().link == ota_console::transport::mqtt::LinkState::Connected
    });
}

fn a_file_dragged_over_the_window_is_highlighted(lang: Lang) {
    let _lang = ThreadLang::new(lang);
    let rig = start_rig(None, None);
    let mut h = harness(&rig, Settings::default());
    assert!(h.query_by_label_contains(&lp("ui.firmware.drop")).is_none());
    h.input_mut().hovered_files.push(egui::HoveredFile {
        path: Some("/tmp/fw-3.0.0.bin".into()),
        mime: String::new(),
    });
    h.run_steps(2);
    assert!(has_label(
        &h,
        &lf("ui.firmware.drop", &[("what", &"\"fw-3.0.0.bin\"")])
    ));
    // Dragged away: the highlight goes.
    h.input_mut().hovered_files.clear();
    h.run_steps(2);
    assert!(h.query_by_label_contains(&lp("ui.firmware.drop")).is_none());
}

fn an_import_that_cannot_be_stored_is_shown_verbatim(lang: Lang) {
    let _lang = ThreadLang::new(lang);
    let mut rig = start_rig(None, None);
    let mut h = harness(&rig, Settings::default());
    // A regular file where the store's directory should be: refused even for root.
    let store = rig._data.path().join("firmware");
    std::fs::write(&store, b"").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (fw, _) = firmware(dir.path());
    h.state_mut().as_mut().unwrap().import_firmware(fw.clone());
    wait_for(&mut h, &mut rig, "the import error in the window", |h| {
        h.query_all_by_label_contains("cannot import")
            .next()
            .is_some()
    });
    let alert = rig.handle.snapshot().alerts.last().unwrap().text.clone();
    assert!(
        alert.starts_with(&format!("cannot import {}: ", fw.display()))
            && alert.contains(&store.display().to_string()),
        "{alert}"
    );
    // The operator reads the engine's words, not a summary of them.
    assert!(has_label(&h, &alert), "{alert} not drawn");
    assert!(app(&h).snapshot().packages.is_empty());
}

fn an_open_broker_wears_a_warning_badge_and_a_secure_one_counts_refusals(lang: Lang) {
    let _lang = ThreadLang::new(lang);
    let mut rig = start_rig(None, None);
    let mut h = harness(&rig, Settings::default());
    wait_for(&mut h, &mut rig, "the open broker badge", |h| {
        has_label(h, &l("ui.bar.open_badge"))
    });
    assert!(!has_label(&h, &l("ui.bar.secured")));

    let mut rig = start_rig(
        Some(BrokerChoice::Embedded {
            listen: "127.0.0.1:0".parse().unwrap(),
            access: EmbeddedAccess::Secure,
            tls: None,
        }),
        None,
    );
    let mut h = harness(&rig, Settings::default());
    wait_for(&mut h, &mut rig, "the secured label", |h| {
        has_label(h, &l("ui.bar.secured"))
    });
    assert!(!has_label(&h, &l("ui.bar.open_badge")));
    // A stranger's login is refused and counted where the operator looks.
    let addr = rig
        .handle
        .broker_url()
        .trim_start_matches("mqtt://")
        .to_owned();
    let mut stranger = std::net::TcpStream::connect(&addr).unwrap();
    // CONNECT (MQTT 3.1.1), client id "x", no credentials.
    std::io::Write::write_all(
        &mut stranger,
        &[
            0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 30, 0, 1, b'x',
        ],
    )
    .unwrap();
    wait_for(&mut h, &mut rig, "the refusal counted", |h| {
        has_label(h, &lf("ui.bar.secured_refused", &[("count", &1)]))
    });
}

/// A dialect from a file (tests/dialects/widget.toml, registered before the engine starts, as
/// `main` does) is listed in the Connection dialog with its file, and the devices the simulator
/// builds from the same file show in the window and upgrade from it like any other.
fn simulated_devices_of_a_dialect_file_upgrade_from_the_window(lang: Lang) {
    let _lang = ThreadLang::new(lang);
    use ota_console::testing::widget::register_widget;
    register_widget();
    let fleet = SimConfig {
        units: sim_units(&[("widget", 2)]),
        ..sim(23)
    };
    let mut rig = start_rig(None, Some(fleet));
    let settings = Settings {
        policy: fast_policy(),
        ..Settings::default()
    };
    let mut h = harness(&rig, settings);

    h.get_by_label(&l("ui.bar.connection")).click();
    h.run_steps(2);
    assert!(
        h.query_all_by_label_contains(&format!(
            "widget (Widget bench units) {}",
            lp("ui.connection.from_file")
        ))
        .next()
        .is_some()
            && h.query_all_by_label_contains("tests/dialects/widget.toml")
                .next()
                .is_some(),
        "the Connection dialog lists the dialect and its file"
    );
    assert!(
        h.query_all_by_label_contains(&l("ui.connection.built_in"))
            .next()
            .is_some()
    );

    let n = 2;
    discover(&mut h, &mut rig, n);
    for name in ["sim-widget-0001", "sim-widget-0002"] {
        assert!(
            h.query_all_by_label_contains(name).next().is_some(),
            "{name} is in the table"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let (fw, bytes) = firmware(dir.path());
    import_select_and_start(&mut h, &mut rig, fw, &bytes, n);
    let finished = lf(
        "ui.rollout.finished",
        &[
            ("done", &n),
            ("total", &n),
            ("percent", &100),
            ("succeeded", &n),
        ],
    );
    wait_for(&mut h, &mut rig, "both widgets to succeed", |h| {
        has_label(h, &finished)
    });
}

/// Steps the window until `done` holds, bounded by [`WAIT`], for windows whose engine changes
/// under them (no rig watch to wake on): a short bounded pause between frames.
fn wait_app(h: &mut AppHarness, what: &str, done: impl Fn(&AppHarness) -> bool) {
    let deadline = Instant::now() + WAIT;
    loop {
        h.step();
        if done(h) {
            return;
        }
        if Instant::now() > deadline {
            let labels: Vec<String> = h
                .root()
                .children_recursive()
                .filter_map(|n| n.accesskit_node().label())
                .collect();
            panic!("timed out waiting for {what}; labels {labels:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether the widget labelled `label` lies wholly inside the window (`size`): seen without
/// scrolling.
fn fully_in_view(h: &AppHarness, label: &str, size: egui::Vec2) -> bool {
    let screen = egui::Rect::from_min_size(egui::Pos2::ZERO, size);
    h.query_all_by_label(label)
        .any(|n| screen.contains_rect(n.rect()) && n.rect().area() > 0.0)
}

/// The embedded broker's port is taken by another broker (as a Mosquitto service takes 1883):
/// the window opens anyway, says why, and offers the ways out; "use the broker already on
/// that port" connects the console to it as a client.
// English only: it reads words the engine says on its own threads or a dialect's data
// that the test looks up as it is.
#[test]
fn the_window_opens_when_the_broker_port_is_taken_and_can_use_the_broker_there() {
    let _lang = ThreadLang::new(Lang::En);
    ota_console::ui::vault::use_mock_keyring();
    let rt = runtime();
    let other = EmbeddedBroker::start(BrokerSettings::open("127.0.0.1:0".parse().unwrap()))
        .expect("broker starts");
    let port = other.local_addr().port();
    let data = tempfile::tempdir().unwrap();
    let mut config = loopback_config(data.path()).with_open_broker();
    config.broker = BrokerChoice::Embedded {
        listen: other.local_addr(),
        access: EmbeddedAccess::Open,
        tls: None,
    };
    let started = rt.block_on(engine::start(config.clone()));
    assert!(started.is_err(), "the port is taken");
    let first = Connector::first(rt.handle().clone(), config, started);
    let mut h = app_harness(first.handle, Settings::default(), egui::vec2(1280.0, 720.0));
    {
        let app = h.state_mut().as_mut().unwrap();
        app.set_connector(first.connector);
        app.set_start_failure(first.failure.expect("a start failure"));
    }
    h.run_steps(2);
    assert!(has_label(&h, &l("ui.start.heading")));
    assert!(
        h.query_all_by_label_contains("already in use")
            .next()
            .is_some()
    );
    let use_it = lf("ui.start.use_broker", &[("port", &port)]);
    for way_out in [
        use_it.clone(),
        l("ui.start.start_on_ports"),
        l("ui.start.choose_profile"),
        l("ui.start.retry"),
    ] {
        assert!(has_label(&h, &way_out), "{way_out}");
    }
    // The next port up is offered.
    assert_eq!(
        app(&h).view().start_failure.as_ref().unwrap().broker_port,
        (port + 1).to_string()
    );
    // The profiles are one click away.
    h.get_by_label(&l("ui.start.choose_profile")).click();
    h.run_steps(4);
    assert!(has_label(&h, &l("ui.connection.new_profile")));
    h.state_mut().as_mut().unwrap().view_mut().connection.open = false;
    h.run_steps(2);

    h.get_by_label(&use_it).click();
    let url = format!("mqtt://127.0.0.1:{port}");
    wait_app(&mut h, "the console on the broker already there", |h| {
        app(h).snapshot().link == ota_console::transport::mqtt::LinkState::Connected
            && app(h).snapshot().broker == url
    });
    h.run_steps(2);
    assert!(app(&h).view().start_failure.is_none());
    assert!(!has_label(&h, &l("ui.start.heading")));
    assert!(has_label(&h, &l("ui.bar.connected")));
    h.check_accessibility();
    drop(rt);
}

/// A window whose embedded broker could not start names it in the connection bar in the
/// operator's language (the connector's own words, not the engine's).
fn a_broker_that_did_not_start_is_named_in_the_bar(lang: Lang) {
    let _lang = ThreadLang::new(lang);
    let rt = runtime();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = taken.local_addr().unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut config = loopback_config(data.path()).with_open_broker();
    config.broker = BrokerChoice::Embedded {
        listen,
        access: EmbeddedAccess::Open,
        tls: None,
    };
    let started = rt.block_on(engine::start(config.clone()));
    assert!(started.is_err(), "the port is taken");
    let first = Connector::first(rt.handle().clone(), config, started);
    let mut h = app_harness(first.handle, Settings::default(), egui::vec2(1280.0, 720.0));
    h.run_steps(2);
    let label = lf("ui.connector.embedded_not_running", &[("listen", &listen)]);
    assert!(has_label(&h, &label), "{label}");
    drop(rt);
}

/// Another way out of a taken port: start on other ports (0 = any free one).
fn a_start_failure_can_be_left_by_starting_on_other_ports(lang: Lang) {
    let _lang = ThreadLang::new(lang);
    ota_console::ui::vault::use_mock_keyring();
    let rt = runtime();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut config = loopback_config(data.path()).with_open_broker();
    config.broker = BrokerChoice::Embedded {
        listen: taken.local_addr().unwrap(),
        access: EmbeddedAccess::Open,
        tls: None,
    };
    let started = rt.block_on(engine::start(config.clone()));
    let first = Connector::first(rt.handle().clone(), config, started);
    let mut h = app_harness(first.handle, Settings::default(), egui::vec2(1280.0, 720.0));
    {
        let app = h.state_mut().as_mut().unwrap();
        app.set_connector(first.connector);
        app.set_start_failure(first.failure.expect("a start failure"));
    }
    h.run_steps(2);
    // A port that is no port is refused before anything starts.
    h.state_mut()
        .as_mut()
        .unwrap()
        .view_mut()
        .start_failure
        .as_mut()
        .unwrap()
        .broker_port = "mosquitto".into();
    h.run_steps(2);
    assert!(has_label(
        &h,
        &lf("ui.start.not_a_port", &[("value", &"\"mosquitto\"")])
    ));
    h.get_by_label(&l("ui.start.broker_port")).focus();
    h.run_steps(1);
    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::A);
    h.get_by_label(&l("ui.start.broker_port")).type_text("0");
    h.run_steps(2);
    assert_eq!(
        app(&h).view().start_failure.as_ref().unwrap().broker_port,
        "0"
    );
    h.get_by_label(&l("ui.start.start_on_ports")).click();
    wait_app(&mut h, "the console on its own broker", |h| {
        app(h).snapshot().link == ota_console::transport::mqtt::LinkState::Connected
    });
    h.run_steps(2);
    assert!(app(&h).view().start_failure.is_none());
    assert!(
        h.query_by_label_contains("embedded broker on 127.0.0.1:")
            .is_some()
    );
    drop(taken);
}

/// The tile wall is a full view: a click inspects the device (the inspector opens on it), the
/// corner box or a Ctrl-click selects, hovering tells the details.
fn a_tile_click_inspects_and_its_corner_box_selects(lang: Lang) {
    let _lang = ThreadLang::new(lang);
    let fleet = SimConfig {
        units: sim_units(&[
            ("aliyun", 2),
            ("fogcloud-gateways", 0),
            ("subs", 0),
            ("dji-docks", 0),
        ]),
        ..sim(25)
    };
    let mut rig = start_rig(None, Some(fleet));
    let settings = Settings {
        view: ota_console::ui::settings::DeviceView::Tiles,
        ..Settings::default()
    };
    let mut h = harness_sized(&rig, settings, egui::vec2(1280.0, 720.0));
    discover(&mut h, &mut rig, 2);
    let ids: Vec<DeviceId> = app(&h)
        .snapshot()
        .devices
        .iter()
        .map(|r| r.record.id.clone())
        .collect();
    let first = ids[0].clone();
    let tile = format!("{}: {}", first.name(), l("ui.tiles.idle"));
    // Closed until asked for.
    assert!(!app(&h).settings().bottom_open);

    h.get_by_label(&tile).click();
    h.run_steps(3);
    assert_eq!(app(&h).view().inspected.as_ref(), Some(&first));
    assert!(
        app(&h).view().selection.is_empty(),
        "a click does not select"
    );
    assert!(app(&h).settings().bottom_open);
    assert!(has_label(
        &h,
        &lf("ui.inspector.of_device", &[("device", &first)])
    ));

    h.get_by_label(&lf("ui.tiles.select", &[("name", &first.name())]))
        .click();
    h.run_steps(2);
    assert!(app(&h).view().selection.contains(&first));
    assert!(has_label(&h, &sel(1, 2, 2)));
    h.get_by_label(&lf("ui.tiles.select", &[("name", &first.name())]))
        .click();
    h.run_steps(2);
    assert!(app(&h).view().selection.is_empty());

    let second = ids[1].clone();
    h.get_by_label(&format!("{}: {}", second.name(), l("ui.tiles.idle")))
        .click_modifiers(egui::Modifiers::COMMAND);
    h.run_steps(2);
    assert!(app(&h).view().selection.contains(&second));
    assert_eq!(app(&h).view().inspected.as_ref(), Some(&first));

    // Hovering tells the full id and the version.
    h.get_by_label(&format!("{}: {}", second.name(), l("ui.tiles.idle")))
        .hover();
    wait_for(&mut h, &mut rig, "the tile's details", |h| {
        has_label(h, &second.to_string()) && has_label(h, "default: 1.0.0")
    });
    h.check_accessibility();
}

/// At 1280×720 (and 1920×1080) a running rollout's counts and ETA are in sight without
/// scrolling, the firmware form has folded away, and pause / cancel are at hand.
fn a_running_rollout_shows_its_counts_and_eta_without_scrolling(lang: Lang) {
    let _lang = ThreadLang::new(lang);
    let mut rig = start_rig(None, Some(sim(26)));
    // One notice a minute: the campaign keeps running while the window is looked at.
    let settings = Settings {
        policy: Policy {
            rate: RateLimit {
                per_minute: 1,
                burst: 1,
            },
            ..fast_policy()
        },
        ..Settings::default()
    };
    let size = egui::vec2(1280.0, 720.0);
    let mut h = harness_sized(&rig, settings, size);
    let n = 8;
    discover(&mut h, &mut rig, n);
    let dir = tempfile::tempdir().unwrap();
    let (fw, bytes) = firmware(dir.path());
    import_select_and_start(&mut h, &mut rig, fw, &bytes, n);
    wait_for(&mut h, &mut rig, "the campaign to run", |h| {
        h.query_all_by_label_contains(&done_of(n)).next().is_some()
    });
    h.run_steps(3);
    for size in [size, egui::vec2(1920.0, 1080.0)] {
        h.set_size(size);
        h.run_steps(3);
        let counts = app(&h)
            .snapshot()
            .campaigns
            .first()
            .map(|c| ota_console::ui::summary_strip::done_text(&c.snapshot.counts))
            .unwrap();
        let eta = app(&h)
            .snapshot()
            .campaigns
            .first()
            .map(ota_console::ui::summary_strip::eta_text)
            .unwrap();
        // Both read from the snapshot the last frame was drawn from.
        assert!(fully_in_view(&h, &counts, size), "{counts} at {size:?}");
        assert!(fully_in_view(&h, &eta, size), "{eta} at {size:?}");
        assert!(
            fully_in_view(&h, &l("ui.strip.pause"), size),
            "Pause at {size:?}"
        );
        assert!(
            fully_in_view(&h, &l("ui.strip.cancel"), size),
            "Cancel at {size:?}"
        );
    }
    // Once started, the firmware form folds away (its digests are no longer drawn).
    assert!(!has_label(&h, &l("ui.firmware.checksum")));
    h.check_accessibility();
}

/// Alerts arriving never move a control: the "Tiles" button stays where it was.
fn an_alert_arriving_does_not_move_the_tiles_button(lang: Lang) {
    let _lang = ThreadLang::new(lang);
    let mut rig = start_rig(None, None);
    let size = egui::vec2(1280.0, 720.0);
    let mut h = harness_sized(&rig, Settings::default(), size);
    h.run_steps(3);
    let before = h.get_by_label(&l("ui.console.tiles")).rect();
    for n in 0..3 {
        let missing = rig._data.path().join(format!("missing-{n}.bin"));
        h.state_mut().as_mut().unwrap().import_firmware(missing);
        let shown = n + 1;
        wait_for(&mut h, &mut rig, "the alert in the window", |h| {
            app(h).snapshot().alerts.len() >= shown
                && h.query_all_by_label_contains("cannot import")
                    .next()
                    .is_some()
        });
        h.run_steps(2);
        assert_eq!(
            h.get_by_label(&l("ui.console.tiles")).rect(),
            before,
            "after alert {shown}"
        );
    }
    // And a click aimed at it lands on it.
    h.get_by_label(&l("ui.console.tiles")).click();
    h.run_steps(2);
    assert_eq!(
        app(&h).settings().view,
        ota_console::ui::settings::DeviceView::Tiles
    );
}

/// A data directory the console cannot create (a file stands where it should be: refused even
/// for root): the window opens on the error, offers no broker it does not have, and "Retry"
/// starts the console once the place is fixed.
fn a_data_dir_that_cannot_be_made_is_shown_and_retry_starts_once_fixed(lang: Lang) {
    let _lang = ThreadLang::new(lang);
    ota_console::ui::vault::use_mock_keyring();
    let rt = runtime();
    let parent = tempfile::tempdir().unwrap();
    let data = parent.path().join("data");
    std::fs::write(&data, b"not a directory").unwrap();
    let config = loopback_config(&data).with_open_broker();
    let started = rt.block_on(engine::start(config.clone()));
    let first = Connector::first(rt.handle().clone(), config, started);
    let mut h = app_harness(first.handle, Settings::default(), egui::vec2(1280.0, 720.0));
    {
        let app = h.state_mut().as_mut().unwrap();
        app.set_connector(first.connector);
        app.set_start_failure(first.failure.expect("a start failure"));
    }
    h.run_steps(2);
    assert!(has_label(&h, &l("ui.start.heading")));
    let named = data.display().to_string();
    assert!(
        h.query_all_by_label_contains(&named).next().is_some(),
        "the error names {named}"
    );
    assert!(
        h.query_all_by_label_contains(&lp("ui.start.use_broker"))
            .next()
            .is_none()
    );
    // Still broken: Retry fails again and says so; the window stays on the failure.
    h.get_by_label(&l("ui.start.retry")).click();
    wait_app(&mut h, "the retry to be reported", |h| {
        app(h).view().connection.status.is_some() && app(h).view().connection.pending.is_none()
    });
    assert!(has_label(&h, &l("ui.start.heading")));
    // Fixed: Retry starts the console.
    std::fs::remove_file(&data).unwrap();
    h.get_by_label(&l("ui.start.retry")).click();
    wait_app(&mut h, "the console started", |h| {
        app(h).snapshot().link == ota_console::transport::mqtt::LinkState::Connected
    });
    h.run_steps(2);
    assert!(app(&h).view().start_failure.is_none());
    assert!(
        h.query_by_label_contains("embedded broker on 127.0.0.1:")
            .is_some()
    );
}

/// Issue #15: the language switch turns the window into the other language at once, and the
/// choice is saved with the settings. (The test's thread speaks its own language, so the switch
/// changes this window only, not the other tests running beside it.)
fn the_language_switch_changes_the_window_at_once_and_is_saved(lang: Lang) {
    let _lang = ThreadLang::new(lang);
    let other = if lang == Lang::En {
        Lang::ZhCn
    } else {
        Lang::En
    };
    let rig = start_rig(None, None);
    let mut h = harness(&rig, Settings::default());
    let tiles_in = |lang: Lang| i18n::text_of(lang, "ui.console.tiles").unwrap();
    assert!(has_label(&h, &tiles_in(lang)));
    assert!(!has_label(&h, &tiles_in(other)));
    h.get_by_label(&l("ui.language.label")).click();
    h.run_steps(2);
    h.get_by_label(other.native_name()).click();
    h.run_steps(3);
    assert!(has_label(&h, &tiles_in(other)), "the window speaks {other}");
    assert!(!has_label(&h, &tiles_in(lang)));
    assert_eq!(app(&h).settings().language, Some(other));
    assert_eq!(i18n::lang(), other);
    // And back.
    h.get_by_label(&l("ui.language.label")).click();
    h.run_steps(2);
    h.get_by_label(lang.native_name()).click();
    h.run_steps(3);
    assert!(has_label(&h, &tiles_in(lang)));
    h.check_accessibility();
}

ota_console::in_both_languages!(
    rollout_from_the_window_reaches_succeeded_at_100_percent,
    devices_not_heard_since_the_start_are_marked_and_left_out_of_select_all,
    pause_resume_and_cancel_from_the_window,
    chinese_failure_text_from_a_fogcloud_device_is_drawn,
    a_broker_that_refuses_connections_is_reported,
    a_file_dragged_over_the_window_is_highlighted,
    an_import_that_cannot_be_stored_is_shown_verbatim,
    an_open_broker_wears_a_warning_badge_and_a_secure_one_counts_refusals,
    simulated_devices_of_a_dialect_file_upgrade_from_the_window,
    a_start_failure_can_be_left_by_starting_on_other_ports,
    a_broker_that_did_not_start_is_named_in_the_bar,
    a_tile_click_inspects_and_its_corner_box_selects,
    a_running_rollout_shows_its_counts_and_eta_without_scrolling,
    an_alert_arriving_does_not_move_the_tiles_button,
    a_data_dir_that_cannot_be_made_is_shown_and_retry_starts_once_fixed,
    the_language_switch_changes_the_window_at_once_and_is_saved,
);
