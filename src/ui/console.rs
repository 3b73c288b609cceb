//! `ConsoleView`: everything the window shows and the operator's view state (selection, forms,
//! filters), drawn from one engine `Snapshot` per frame. It returns the operator's requests as
//! `UiAction`s and never reaches the engine itself, so it can be driven by a synthetic snapshot
//! (the frame benchmark) as well as by the live engine (`OtaApp`).
//!
//! Layout: connection bar on top with a fixed line for alerts (an alert never moves a control),
//! under it the summary strip while a campaign runs; firmware and rollout on the left (the
//! firmware form and the policy fold away when a campaign starts), the fleet (table or tiles)
//! in the middle; the bottom tabs (inspector / log / history) open their panel on demand. The
//! window's own notices are toasts (`toasts`), drawn over the layout.

use std::collections::BTreeSet;

use egui::{Key, KeyboardShortcut, Modifiers, RichText, Ui};

use super::action::UiAction;
use super::connection_bar;
use super::connection_dialog::{self, ConnectionDialog};
use super::devices_table::{self, TableState};
use super::filter::{self, DeviceFilter, SelectionOp, Sort, StatusFilter, VisibleRow};
use super::firmware_panel::{self, FirmwareForm};
use super::history::{self, HistoryState};
use super::inspector::{self, InspectorState};
use super::rollout_panel::{self, RolloutForm};
use super::settings::{BottomTab, DeviceView, Settings, TileForm};
use super::start_failure::{self, StartFailureForm};
use super::summary_strip;
use super::tiles;
use super::toasts::{self, Banner};
use super::wall::{self, WallInput, WallState};
use crate::device_id::DeviceId;
use crate::engine::Snapshot;
use crate::fleet::inspector::RawMessage;
use crate::i18n::tr;
use crate::protocol::registry;

/// The id of the device filter box (Ctrl+F focuses it).
const FILTER_ID: &str = "device-filter";

/// Filtered, sorted rows for one snapshot revision and one filter: recomputed only when one of
/// them changes, not every frame.
#[derive(Default)]
struct RowCache {
    key: Option<(u64, DeviceFilter, Sort, bool)>,
    visible: Vec<VisibleRow>,
    /// The rows `visible` was derived from (shared with that snapshot).
    rows: crate::engine::DeviceRows,
    /// Shown devices not heard since the start (`filter::not_heard_shown`), kept with `visible`.
    not_heard: usize,
    /// Which rows sit under which gateway, when `visible` is grouped.
    groups: Option<filter::Groups>,
    /// How many times `visible` was computed in full (the rest were patched).
    full_recomputes: u64,
    /// A campaign's targets never change, so the target map is rebuilt only when the list of
    /// campaigns does (not on every progress report).
    campaigns: Vec<i64>,
    targets: filter::Targets,
    /// The rows' searched texts, brought up to each revision with the rows that changed, so a
    /// keystroke in the filter searches them without rereading the fleet.
    search: filter::SearchTexts,
}

pub struct ConsoleView {
    pub settings: Settings,
    /// Shows the DEMO badge.
    pub demo: bool,
    pub selection: BTreeSet<DeviceId>,
    /// Counts the bulk changes of the selection (the wall repaints its marks when it moves).
    selection_rev: u64,
    /// The wall's squares, kept between frames (the tile view's compact form).
    pub wall: WallState,
    /// The device the inspector follows (last clicked).
    pub inspected: Option<DeviceId>,
    pub firmware: FirmwareForm,
    pub rollout: RolloutForm,
    pub inspector: InspectorState,
    pub history: HistoryState,
    /// The broker profiles dialog.
    pub connection: ConnectionDialog,
    /// "Select devices not on version X": X as typed.
    not_on_version: String,
    cache: RowCache,
    focus_filter: bool,
    /// The engine could not start: the central area shows why and the ways out.
    pub start_failure: Option<StartFailureForm>,
    /// A campaign was under way at the last frame (its start folds the forms away once).
    was_running: bool,
}

impl ConsoleView {
    pub fn new(settings: Settings, demo: bool) -> ConsoleView {
        ConsoleView {
            settings,
            demo,
            selection: BTreeSet::new(),
            selection_rev: 0,
            wall: WallState::default(),
            inspected: None,
            firmware: FirmwareForm::default(),
            rollout: RolloutForm::default(),
            inspector: InspectorState::default(),
            history: HistoryState::default(),
            connection: ConnectionDialog::default(),
            not_on_version: String::new(),
            cache: RowCache::default(),
            focus_filter: false,
            was_running: false,
            start_failure: None,
        }
    }

    /// Whose raw messages the inspector needs now: `None` = it is not shown;
    /// `Some(None)` = every device; `Some(Some(id))` = one device.
    pub fn messages_wanted(&self) -> Option<Option<DeviceId>> {
        if !self.settings.bottom_open || self.settings.bottom_tab != BottomTab::Inspector {
            return None;
        }
        if self.settings.inspector_global {
            Some(None)
        } else {
            self.inspected.clone().map(Some)
        }
    }

    /// Draws one frame; returns what the operator asked the engine for.
    pub fn ui(
        &mut self,
        ui: &mut Ui,
        snap: &Snapshot,
        messages: &[RawMessage],
        notices: &[Banner],
        now_ms: i64,
    ) -> Vec<UiAction> {
        let mut actions = Vec::new();
        self.shortcuts(ui.ctx(), &mut actions);
        self.refresh_rows(snap);

        let strip = rollout_panel::focused(&snap.campaigns, self.rollout.focus)
            .filter(|v| summary_strip::wanted(v))
            .or_else(|| snap.campaigns.iter().find(|c| summary_strip::wanted(c)));
        let collapse = strip.is_some() && !self.was_running;
        self.was_running = strip.is_some();

        egui::Panel::top("connection").show(ui, |ui| {
            connection_bar::connection_bar_ui(
                ui,
                snap,
                self.demo,
                &mut self.settings.theme,
                &mut self.settings.language,
                &mut self.connection.open,
                &mut actions,
            );
            if connection_bar::alert_line_ui(ui, snap, &mut actions) {
                self.open_bottom(BottomTab::Log);
            }
        });
        if let Some(view) = strip {
            egui::Panel::top("summary").show(ui, |ui| {
                summary_strip::summary_strip_ui(ui, view, &mut actions);
            });
        }
        connection_dialog::connection_dialog_ui(
            ui.ctx(),
            &snap.broker,
            &mut self.connection,
            &mut self.settings.profiles,
            &mut actions,
        );
        egui::Panel::bottom("bottom-tabs")
            .resizable(false)
            .show(ui, |ui| self.bottom_tabs_ui(ui, snap));
        if self.settings.bottom_open {
            egui::Panel::bottom("bottom")
                .resizable(true)
                .default_size(230.0)
                .show(ui, |ui| self.bottom_ui(ui, snap, messages, &mut actions));
        }
        egui::Panel::left("side")
            .resizable(true)
            .default_size(390.0)
            .show(ui, |ui| {
                egui::ScrollArea::vertical()
                    .id_salt("side-scroll")
                    .show(ui, |ui| {
                        egui::CollapsingHeader::new(
                            RichText::new(tr!("ui.console.firmware")).heading(),
                        )
                        .id_salt("firmware-section")
                        .default_open(true)
                        .open(collapse.then_some(false))
                        .show(ui, |ui| {
                            firmware_panel::firmware_panel_ui(
                                ui,
                                snap,
                                &mut self.firmware,
                                &mut actions,
                            );
                        });
                        ui.separator();
                        self.rollout.fold_policy = collapse;
                        rollout_panel::rollout_panel_ui(
                            ui,
                            snap,
                            &self.firmware,
                            &mut self.settings.policy,
                            &self.selection,
                            &mut self.rollout,
                            &mut actions,
                        );
                    });
            });
        let inspected_before = self.inspected.clone();
        egui::CentralPanel::default().show(ui, |ui| match &mut self.start_failure {
            Some(form) => start_failure::start_failure_ui(
                ui,
                form,
                self.connection.pending.as_deref(),
                &mut self.connection.open,
                &mut actions,
            ),
            None => self.fleet_ui(ui, snap, now_ms),
        });
        if self.inspected.is_some() && self.inspected != inspected_before {
            // A device clicked: the inspector opens on it.
            self.open_bottom(BottomTab::Inspector);
        }
        toasts::toasts_ui(ui.ctx(), notices, &mut actions);
        firmware_panel::drop_overlay_ui(ui.ctx());
        actions
    }

    /// Opens the bottom panel on `tab`.
    pub fn open_bottom(&mut self, tab: BottomTab) {
        self.settings.bottom_tab = tab;
        self.settings.bottom_open = true;
    }

    fn shortcuts(&mut self, ctx: &egui::Context, actions: &mut Vec<UiAction>) {
        let open = KeyboardShortcut::new(Modifiers::COMMAND, Key::O);
        let find = KeyboardShortcut::new(Modifiers::COMMAND, Key::F);
        let (open, find) =
            ctx.input_mut(|i| (i.consume_shortcut(&open), i.consume_shortcut(&find)));
        if open {
            actions.push(UiAction::OpenFileDialog);
        }
        if find {
            self.focus_filter = true;
        }
        // Space toggles the inspected device, unless a text field is being typed in.
        if !ctx.egui_wants_keyboard_input()
            && ctx.input_mut(|i| i.consume_key(Modifiers::NONE, Key::Space))
            && let Some(id) = self.inspected.clone()
        {
            self.apply_selection(&SelectionOp::Toggle(id), &crate::engine::DeviceRows::new());
        }
    }

    fn refresh_rows(&mut self, snap: &Snapshot) {
        let s = &self.settings;
        let key = (snap.revision, s.filter.clone(), s.sort, s.group_by_gateway);
        if self.cache.key.as_ref() == Some(&key) {
            return;
        }
        // The rows that changed since the revision last seen, whatever the view was then: the
        // searched texts follow them always, the visible order only within one view.
        let changed_since = self
            .cache
            .key
            .as_ref()
            .and_then(|(revision, ..)| snap.row_changes.since(*revision));
        self.cache
            .search
            .refresh(&snap.devices, changed_since.as_deref());
        let s = &self.settings;
        let campaigns: Vec<i64> = snap.campaigns.iter().map(|c| c.snapshot.id.0).collect();
        let same_campaigns = campaigns == self.cache.campaigns;
        if !same_campaigns {
            self.cache.targets = filter::targets_by_device(&snap.campaigns);
            self.cache.campaigns = campaigns;
        }
        // A later revision with the same view: patch the rows that changed since (at 100,000
        // devices a full filter and sort every publish costs more than a frame).
        let same_view = self.cache.key.as_ref().is_some_and(|(_, f, sort, group)| {
            *f == s.filter && *sort == s.sort && *group == s.group_by_gateway
        });
        let changed = changed_since.filter(|_| same_view);
        if same_campaigns
            && let Some(changed) = changed
            && filter::patch_visible(
                &mut self.cache.visible,
                &self.cache.rows,
                &snap.devices,
                &changed,
                &s.filter,
                s.sort,
                &self.cache.targets,
                self.cache.groups.as_ref(),
            )
        {
            let change = filter::not_heard_shown_change(
                &self.cache.rows,
                &snap.devices,
                &changed,
                &s.filter,
            );
            self.cache.not_heard = self.cache.not_heard.saturating_add_signed(change);
            self.cache.rows = snap.devices.clone();
            self.cache.key = Some(key);
            return;
        }
        self.cache.rows = snap.devices.clone();
        self.cache.visible = filter::visible_rows_searched(
            &snap.devices,
            &s.filter,
            s.sort,
            s.group_by_gateway,
            &self.cache.targets,
            Some(&self.cache.search),
        );
        self.cache.not_heard = filter::not_heard_shown(&snap.devices, &self.cache.visible);
        self.cache.groups = s
            .group_by_gateway
            .then(|| filter::Groups::of(&snap.devices));
        self.cache.full_recomputes += 1;
        self.cache.key = Some(key);
    }

    fn apply_selection(&mut self, op: &SelectionOp, rows: &crate::engine::DeviceRows) {
        filter::apply_selection(&mut self.selection, op, rows, &self.cache.visible);
        self.selection_rev = self.selection_rev.wrapping_add(1);
    }

    fn fleet_ui(&mut self, ui: &mut Ui, snap: &Snapshot, now_ms: i64) {
        self.filter_bar_ui(ui);
        self.selection_bar_ui(ui, snap);
        ui.separator();
        let rows = &snap.devices;
        if rows.is_empty() {
            ui.weak(tr!("ui.console.no_devices"));
            return;
        }
        match self.settings.view {
            DeviceView::Table => devices_table::devices_table_ui(
                ui,
                rows,
                &self.cache.visible,
                &self.cache.targets,
                now_ms,
                TableState {
                    selection: &mut self.selection,
                    sort: &mut self.settings.sort,
                    inspected: &mut self.inspected,
                },
            ),
            DeviceView::Tiles if self.wall_wanted() => wall::wall_ui(
                ui,
                &mut self.wall,
                &WallInput {
                    rows,
                    visible: &self.cache.visible,
                    revision: snap.revision,
                    changes: &snap.row_changes,
                    selection_key: (self.selection_rev, self.selection.len()),
                },
                &mut self.selection,
                &mut self.inspected,
            ),
            DeviceView::Tiles => tiles::tiles_ui(
                ui,
                rows,
                &self.cache.visible,
                &mut self.selection,
                &mut self.inspected,
            ),
        }
    }

    /// The tile view shows the wall: chosen, or automatic and too many devices for cards.
    fn wall_wanted(&self) -> bool {
        match self.settings.tile_form {
            TileForm::Wall => true,
            TileForm::Cards => false,
            TileForm::Auto => self.cache.visible.len() > wall::WALL_ABOVE,
        }
    }

    fn filter_bar_ui(&mut self, ui: &mut Ui) {
        let f = &mut self.settings.filter;
        ui.horizontal_wrapped(|ui| {
            ui.selectable_value(
                &mut self.settings.view,
                DeviceView::Table,
                tr!("ui.console.table"),
            );
            ui.selectable_value(
                &mut self.settings.view,
                DeviceView::Tiles,
                tr!("ui.console.tiles"),
            );
            if self.settings.view == DeviceView::Tiles {
                let form = &mut self.settings.tile_form;
                let name = |f: TileForm| match f {
                    TileForm::Auto => tr!("ui.wall.form_auto", count = wall::WALL_ABOVE),
                    TileForm::Cards => tr!("ui.wall.form_cards"),
                    TileForm::Wall => tr!("ui.wall.form_wall"),
                };
                egui::ComboBox::new("tile-form", tr!("ui.wall.form"))
                    .selected_text(name(*form))
                    .show_ui(ui, |ui| {
                        for f in [TileForm::Auto, TileForm::Cards, TileForm::Wall] {
                            ui.selectable_value(form, f, name(f));
                        }
                    });
            }
            ui.separator();
            let label = ui.label(tr!("ui.console.filter")).id;
            let edit = ui
                .add(
                    egui::TextEdit::singleline(&mut f.text)
                        .id(egui::Id::unique(FILTER_ID))
                        .hint_text(tr!("ui.console.filter_hint"))
                        .desired_width(200.0),
                )
                .labelled_by(label);
            if std::mem::take(&mut self.focus_filter) {
                edit.request_focus();
            }
            // Ids of their own: the labels change with the language.
            egui::ComboBox::new("filter-dialect", tr!("ui.console.dialect"))
                .selected_text(
                    f.dialect
                        .map_or_else(|| tr!("ui.console.any"), |d| d.as_str().to_owned()),
                )
                .show_ui(ui, |ui| {
                    ui.selectable_value(&mut f.dialect, None, tr!("ui.console.any"));
                    for d in registry::ids() {
                        ui.selectable_value(
                            &mut f.dialect,
                            Some(d),
                            crate::terms::dialect::label(d),
                        );
                    }
                });
            let version_label = ui.label(tr!("ui.console.version_is")).id;
            ui.add(
                egui::TextEdit::singleline(&mut f.version)
                    .hint_text(tr!("ui.console.any"))
                    .desired_width(70.0),
            )
            .labelled_by(version_label);
            egui::ComboBox::new("filter-status", tr!("ui.console.status"))
                .selected_text(f.status.label())
                .show_ui(ui, |ui| {
                    for choice in StatusFilter::choices() {
                        ui.selectable_value(&mut f.status, choice, choice.label());
                    }
                });
            if !f.is_empty() && ui.small_button(tr!("ui.console.clear_filter")).clicked() {
                *f = DeviceFilter::default();
            }
            ui.checkbox(&mut self.settings.group_by_gateway, tr!("ui.console.group"));
        });
    }

    fn selection_bar_ui(&mut self, ui: &mut Ui, snap: &Snapshot) {
        let rows = &snap.devices;
        let mut op = None;
        ui.horizontal_wrapped(|ui| {
            ui.label(
                RichText::new(tr!(
                    "ui.console.selected",
                    selected = self.selection.len(),
                    shown = self.cache.visible.len(),
                    total = rows.len()
                ))
                .strong(),
            );
            let not_heard = self.cache.not_heard;
            let all = ui.button(tr!("ui.console.select_all"));
            let all = if not_heard > 0 {
                all.on_hover_text(tr!("ui.console.select_all_hover", count = not_heard))
            } else {
                all
            };
            if all.clicked() {
                op = Some(SelectionOp::AllFiltered);
            }
            // Remembered devices may be gone: selecting them takes its own, counted click.
            if not_heard > 0
                && ui
                    .button(tr!("ui.console.also_select", count = not_heard))
                    .clicked()
            {
                op = Some(SelectionOp::NotHeardFiltered);
            }
            if ui.button(tr!("ui.console.select_none")).clicked() {
                op = Some(SelectionOp::None);
            }
            if ui.button(tr!("ui.console.invert")).clicked() {
                op = Some(SelectionOp::InvertFiltered);
            }
            let label = ui.label(tr!("ui.console.not_on_version")).id;
            ui.add(
                egui::TextEdit::singleline(&mut self.not_on_version)
                    .hint_text("X")
                    .desired_width(70.0),
            )
            .labelled_by(label);
            let version = self.not_on_version.trim().to_owned();
            if ui
                .add_enabled(
                    !version.is_empty(),
                    egui::Button::new(tr!("ui.console.select_not_on_version")),
                )
                .clicked()
            {
                op = Some(SelectionOp::NotOnVersion(version));
            }
        });
        if let Some(op) = op {
            self.apply_selection(&op, rows);
        }
    }

    /// The tabs of the bottom panel, always shown: a click opens the panel on that tab, a click
    /// on the open tab (or "Hide") closes it.
    fn bottom_tabs_ui(&mut self, ui: &mut Ui, snap: &Snapshot) {
        ui.horizontal(|ui| {
            let log = if snap.alerts.is_empty() {
                tr!("ui.console.log")
            } else {
                tr!("ui.console.log_count", count = snap.alerts.len())
            };
            let open = self.settings.bottom_open;
            for (tab, label) in [
                (BottomTab::Inspector, tr!("ui.console.inspector")),
                (BottomTab::Log, log),
                (BottomTab::History, tr!("ui.console.history")),
            ] {
                let on = open && self.settings.bottom_tab == tab;
                if ui.selectable_label(on, label).clicked() {
                    if on {
                        self.settings.bottom_open = false;
                    } else {
                        self.open_bottom(tab);
                    }
                }
            }
            if open && ui.small_button(tr!("ui.console.hide")).clicked() {
                self.settings.bottom_open = false;
            }
        });
    }

    fn bottom_ui(
        &mut self,
        ui: &mut Ui,
        snap: &Snapshot,
        messages: &[RawMessage],
        actions: &mut Vec<UiAction>,
    ) {
        match self.settings.bottom_tab {
            BottomTab::Inspector => inspector::inspector_ui(
                ui,
                messages,
                self.inspected.as_ref(),
                &mut self.settings.inspector_global,
                &mut self.inspector,
                actions,
            ),
            BottomTab::Log => inspector::log_ui(ui, snap),
            BottomTab::History => history::history_ui(ui, snap, &mut self.history, actions),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::engine::DeviceRow;
    use crate::rollout::DeviceStatus;
    use crate::ui::filter::tests::{row, table};
    use crate::ui::filter::{Sort, SortColumn};

    /// A window that skipped revisions patches its order with every change since the one it
    /// saw, and the order is what a full filter and sort gives.
    #[test]
    fn the_order_is_patched_across_skipped_revisions() {
        let mut rows: Vec<_> = (0..30)
            .map(|n| {
                row(
                    &format!("aliyun:pk/d{n:02}"),
                    "1.0",
                    Some(DeviceStatus::Downloading),
                )
            })
            .collect();
        // Two sub-devices under d00.
        for sub in &mut rows[5..7] {
            sub.record.gateway = Some("aliyun:pk/d00".parse().unwrap());
        }
        let mut snap = Snapshot::empty(String::new());
        snap.devices = table(rows);
        snap.revision = 1;
        snap.row_changes.record(1, None);
        let settings = Settings {
            sort: Sort {
                column: SortColumn::Progress,
                ascending: false,
            },
            ..Settings::default()
        };
        let mut view = ConsoleView::new(settings, false);
        view.refresh_rows(&snap);
        assert_eq!(view.cache.full_recomputes, 1);
        // Three revisions; the window sees only the last.
        for (revision, (n, percent)) in [(2, (3, 90)), (3, (0, 95)), (4, (17, 10))] {
            let mut changed = DeviceRow::clone(&snap.devices[n]);
            if let Some(line) = changed.rollout.as_mut() {
                line.percent = percent;
            }
            let id = changed.record.id.clone();
            snap.devices.set(n, Arc::new(changed));
            snap.revision = revision;
            snap.row_changes.record(revision, Some(vec![id].into()));
        }
        view.refresh_rows(&snap);
        assert_eq!(view.cache.full_recomputes, 1, "patched, not recomputed");
        let s = &view.settings;
        let full = filter::visible_rows(
            &snap.devices,
            &s.filter,
            s.sort,
            true,
            &filter::Targets::new(),
        );
        assert_eq!(view.cache.visible, full);
        let first = view.cache.visible.first().map(|v| v.index);
        assert_eq!(first, Some(0), "d00 (95 %) leads, with its sub-devices");
    }
}
