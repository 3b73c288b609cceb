//! The tile view's wall for a large fleet, driven by accessibility labels with egui_kittest (no
//! display, no GPU): the real `ConsoleView` on a synthetic snapshot of 3,000 devices. The tile
//! view becomes a wall above `ui::wall::WALL_ABOVE` shown devices (cards below, or by the
//! operator's choice), its legend counts each status, hovering a square shows that device's
//! details, a click inspects it and a Ctrl-click selects it. Each test runs once per language.

// Test code throughout: clippy's allow-unwrap-in-tests (clippy.toml) goes by `cfg(test)`.
#![cfg(test)]
#![cfg(feature = "gui")]

use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use ota_console::device_id::DeviceId;
use ota_console::engine::{DeviceRow, Snapshot};
use ota_console::fleet::DeviceRecord;
use ota_console::i18n::{self, Lang, ThreadLang};
use ota_console::rollout::{DeviceSnapshot, DeviceStatus, Note};
use ota_console::ui::settings::{DeviceView, TileForm};
use ota_console::ui::wall::cell_center;
use ota_console::ui::{CjkFonts, ConsoleView, Settings};

const NOW_MS: i64 = 1_800_000_000_000;

/// Frames a tooltip may take to appear (egui waits for the pointer to rest).
const MAX_STEPS: usize = 200;

fn l(key: &str) -> String {
    i18n::text_of(i18n::lang(), key).unwrap_or_else(|| panic!("no text {key}"))
}

/// The wall's accessible label up to its square size: "Device wall: 3000 devices, ".
fn wall_label(count: usize) -> String {
    let text = l("ui.wall.label");
    text.split("%{size}")
        .next()
        .unwrap_or_default()
        .replace("%{count}", &count.to_string())
}

/// Device `i`'s status: every 30th failed (with a reason), the rest along the way.
fn status(i: usize) -> (DeviceStatus, u8) {
    match i % 30 {
        0 => (DeviceStatus::Failed, 40),
        1..=9 => (DeviceStatus::Downloading, (i % 30 * 10) as u8),
        10..=19 => (DeviceStatus::Succeeded, 100),
        _ => (DeviceStatus::Pending, 0),
    }
}

fn snapshot(devices: usize) -> Snapshot {
    let mut rows: Vec<DeviceRow> = (0..devices)
        .map(|i| {
            let id = DeviceId::dji(&format!("SN{i:06}")).unwrap();
            let mut record = DeviceRecord::new(id.clone(), NOW_MS);
            record.set_version(None, "1.0.0");
            let (status, percent) = status(i);
            DeviceRow {
                last_message: None,
                rollout: Some(DeviceSnapshot {
                    id,
                    status,
                    from_version: Some("1.0.0".into()),
                    to_version: Some("2.0.0".into()),
                    percent,
                    attempts: 1,
                    wave: Some(0),
                    error: (status == DeviceStatus::Failed).then(|| Note::Text {
                        text: format!("flash error {i}"),
                    }),
                    code: None,
                    retry_at: None,
                    resends: 0,
                    next_resend_at: None,
                }),
                record,
            }
        })
        .collect();
    rows.sort_by(|a, b| a.record.id.cmp(&b.record.id));
    let mut snap = Snapshot::empty("embedded broker on 127.0.0.1:1883".into());
    snap.revision = 1;
    snap.devices = rows.into_iter().map(std::sync::Arc::new).collect();
    snap
}

type WallHarness = Harness<'static, (ConsoleView, Snapshot)>;

fn harness(devices: usize, form: TileForm) -> WallHarness {
    let settings = Settings {
        view: DeviceView::Tiles,
        tile_form: form,
        ..Settings::default()
    };
    let mut h = Harness::builder()
        .with_size(egui::vec2(1280.0, 720.0))
        .with_context_setup(|ctx| CjkFonts::bundled_only().install(ctx))
        .build_ui_state(
            |ui, (view, snap): &mut (ConsoleView, Snapshot)| {
                view.ui(ui, snap, &[], &[], NOW_MS);
            },
            (ConsoleView::new(settings, false), snapshot(devices)),
        );
    h.run_steps(2);
    h
}

fn view(h: &WallHarness) -> &ConsoleView {
    &h.state().0
}

/// Where square `square` of the wall is on screen, and the device it shows.
fn square(h: &WallHarness, square: usize) -> (egui::Pos2, DeviceId) {
    let origin = h.get_by_label_contains(&wall_label(3_000)).rect().min;
    let wall = &view(h).wall;
    let grid = wall.grid().unwrap();
    let index = wall.row_of(square).unwrap();
    let id = h.state().1.devices[index].record.id.clone();
    (cell_center(grid, origin, square), id)
}

fn has_label(h: &WallHarness, label: &str) -> bool {
    h.query_all_by_label(label).next().is_some()
}

fn click_at(h: &WallHarness, pos: egui::Pos2, modifiers: egui::Modifiers) {
    h.hover_at(pos);
    h.event(egui::Event::ModifiersChanged(modifiers));
    for pressed in [true, false] {
        h.event(egui::Event::PointerButton {
            pos,
            button: egui::PointerButton::Primary,
            pressed,
            modifiers,
        });
    }
    h.event(egui::Event::ModifiersChanged(egui::Modifiers::NONE));
}

/// 3,000 devices: the wall, its legend counting each status in large type; a small fleet
/// keeps its cards, and the operator's choice of cards wins.
fn a_large_fleet_shows_as_a_wall_with_counts(lang: Lang) {
    let _lang = ThreadLang::new(lang);
    let h = harness(3_000, TileForm::Auto);
    assert!(h.query_by_label_contains(&wall_label(3_000)).is_some());
    let grid = *view(&h).wall.grid().unwrap();
    assert_eq!(grid.count, 3_000);
    assert!(grid.cell >= 3, "3,000 devices fit at 1280×720: {grid:?}");
    assert!(grid.size().y <= 720.0);
    let failed = ota_console::terms::states::device_status(DeviceStatus::Failed);
    assert!(
        has_label(&h, &format!("{failed} 100")),
        "legend: 3,000 / 30 failed"
    );
    let succeeded = ota_console::terms::states::device_status(DeviceStatus::Succeeded);
    assert!(has_label(&h, &format!("{succeeded} 1000")));

    let cards = harness(3_000, TileForm::Cards);
    assert!(cards.query_by_label_contains(&wall_label(3_000)).is_none());
    let small = harness(200, TileForm::Auto);
    assert!(
        small.query_by_label_contains(&wall_label(200)).is_none(),
        "200 devices are cards"
    );
    assert!(
        harness(200, TileForm::Wall)
            .query_by_label_contains(&wall_label(200))
            .is_some(),
        "unless the wall is chosen"
    );
    h.check_accessibility();
}

/// Hovering a square tells its device's id, versions, status and error; a click inspects it
/// (the inspector opens on it); a Ctrl-click selects another without moving the inspector.
fn hover_tells_a_square_click_inspects_ctrl_click_selects(lang: Lang) {
    let _lang = ThreadLang::new(lang);
    let mut h = harness(3_000, TileForm::Auto);
    // Square 1500 shows SN001500 (sorted by device): failed, with its reason.
    let (pos, id) = square(&h, 1_500);
    assert_eq!(id.to_string(), "dji:SN001500");
    h.hover_at(pos);
    let mut steps = 0;
    while !(has_label(&h, &id.to_string()) && has_label(&h, "flash error 1500")) {
        steps += 1;
        assert!(
            steps < MAX_STEPS,
            "no details for {id} after {steps} frames"
        );
        h.step();
    }
    assert!(has_label(&h, "1.0.0 → 2.0.0"));
    assert!(!has_label(&h, "dji:SN001501"), "only the hovered device");

    click_at(&h, pos, egui::Modifiers::NONE);
    h.run_steps(2);
    assert_eq!(view(&h).inspected.as_ref(), Some(&id));
    assert!(view(&h).settings.bottom_open, "the inspector opens");
    assert!(view(&h).selection.is_empty(), "a click does not select");

    let (other_pos, other) = square(&h, 42);
    click_at(&h, other_pos, egui::Modifiers::COMMAND);
    h.run_steps(2);
    assert!(view(&h).selection.contains(&other));
    assert_eq!(view(&h).selection.len(), 1);
    assert_eq!(view(&h).inspected.as_ref(), Some(&id));
    click_at(&h, other_pos, egui::Modifiers::COMMAND);
    h.run_steps(2);
    assert!(
        view(&h).selection.is_empty(),
        "a second Ctrl-click leaves it out"
    );
    h.check_accessibility();
}

ota_console::in_both_languages!(
    a_large_fleet_shows_as_a_wall_with_counts,
    hover_tells_a_square_click_inspects_ctrl_click_selects,
);
