//! The window's top bar at the sizes operators use (1280×720, 1440×900, 1920×1080), in both
//! languages, with and without the demo's controls: no widget of the bar covers another. Seen
//! in an English screenshot at 1440 px: the theme switch lay over the firmware server's URL and
//! its own "Theme" label.
//!
//! The bar is drawn alone (what it shows comes from a [`Snapshot`]: a busy one, the embedded
//! broker secured with refusals, a firmware server with downloads under way), so the test
//! needs no engine.

#![cfg(test)]
#![cfg(feature = "gui")]

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use ota_console::engine::{BrokerGuard, Snapshot};
use ota_console::i18n::{self, Lang, ThreadLang};
use ota_console::transport::http::ServedStats;
use ota_console::transport::mqtt::LinkState;
use ota_console::ui::CjkFonts;
use ota_console::ui::connection_bar::connection_bar_ui;
use ota_console::ui::settings::ThemeChoice;

fn l(key: &str) -> String {
    i18n::text_of(i18n::lang(), key).unwrap_or_else(|| panic!("no text {key}"))
}

const FIRMWARE_BASE: &str = "http://192.168.100.200:8080";

/// What a console mid-rollout shows in its bar.
fn busy_snapshot() -> Snapshot {
    let mut snap = Snapshot::empty("embedded broker on 0.0.0.0:1883".into());
    snap.link = LinkState::Connected;
    snap.broker_guard = BrokerGuard::Secure;
    snap.broker_refusals = 12;
    snap.firmware_base = Some(FIRMWARE_BASE.into());
    snap.served = Some(ServedStats {
        requests: 40,
        active_connections: 12,
        total_bytes: 123_456_789,
        bytes_by_client: BTreeMap::from([(IpAddr::V4(Ipv4Addr::new(192, 168, 1, 7)), 1_000_000)]),
        ..ServedStats::default()
    });
    snap.traffic.received_per_sec = 1234.5;
    snap
}

/// The bar drawn in a window `width` points wide; the rects (label, rect) of the widgets
/// whose overlap the operator would see.
fn bar_rects(lang: Lang, width: f32, height: f32, demo: bool) -> Vec<(String, egui::Rect)> {
    let _lang = ThreadLang::new(lang);
    let snap = busy_snapshot();
    let mut harness = Harness::builder()
        .with_size(egui::vec2(width, height))
        .with_context_setup(|ctx| CjkFonts::bundled_only().install(ctx))
        .build_ui_state(
            move |ui, state: &mut (ThemeChoice, Option<Lang>, bool, egui::Rect)| {
                let mut actions = Vec::new();
                let (theme, language, dialog, panel) = state;
                *panel = egui::Panel::top("connection")
                    .show(ui, |ui| {
                        connection_bar_ui(ui, &snap, demo, theme, language, dialog, &mut actions);
                    })
                    .response
                    .rect;
            },
            (ThemeChoice::Dark, Some(lang), false, egui::Rect::NOTHING),
        );
    harness.run();
    // Two rows at most: the bar is a strip, not a page.
    let panel = harness.state().3;
    assert!(
        panel.height() < 90.0,
        "{lang} {width}×{height} demo={demo}: the bar is {panel:?}"
    );
    let mut labels = vec![
        FIRMWARE_BASE.to_owned(),
        l("ui.bar.firmware_server"),
        l("ui.bar.theme"),
        l("ui.language.label"),
        l("ui.bar.broker"),
        "embedded broker on 0.0.0.0:1883".to_owned(),
        l("ui.bar.connection"),
        l("ui.bar.site_ca"),
        l("ui.bar.connected"),
    ];
    if demo {
        labels.push(l("ui.bar.demo_badge"));
    }
    let mut rects = Vec::new();
    for label in labels {
        let nodes: Vec<egui::Rect> = harness
            .query_all_by_label(&label)
            .map(|n| n.rect())
            .collect();
        assert!(!nodes.is_empty(), "{lang} {width}: no widget {label:?}");
        for rect in nodes {
            rects.push((label.clone(), rect));
        }
    }
    rects
}

/// Every pair of distinct widgets that cover each other (by more than a rounding sliver), and
/// every widget that leaves the window.
fn problems(rects: &[(String, egui::Rect)], width: f32) -> Vec<String> {
    let mut out = Vec::new();
    for (i, (a, ra)) in rects.iter().enumerate() {
        if ra.min.x < -0.5 || ra.max.x > width + 0.5 {
            out.push(format!("{a:?} {ra:?} leaves the window"));
        }
        for (b, rb) in rects.iter().skip(i + 1) {
            if ra == rb {
                // A combo box and its accessible label name the same widget.
                continue;
            }
            let both = ra.intersect(*rb);
            if both.width() > 1.0 && both.height() > 1.0 {
                out.push(format!("{a:?} {ra:?} overlaps {b:?} {rb:?}"));
            }
        }
    }
    out
}

fn check(width: f32, height: f32) {
    let mut found = Vec::new();
    for lang in Lang::ALL {
        for demo in [false, true] {
            for p in problems(&bar_rects(lang, width, height, demo), width) {
                found.push(format!("{lang} {width}×{height} demo={demo}: {p}"));
            }
        }
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn the_top_bar_does_not_overlap_at_1280() {
    check(1280.0, 720.0);
}

#[test]
fn the_top_bar_does_not_overlap_at_1440() {
    check(1440.0, 900.0);
}

#[test]
fn the_top_bar_does_not_overlap_at_1920() {
    check(1920.0, 1080.0);
}
