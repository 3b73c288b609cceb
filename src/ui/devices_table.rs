//! The device table (egui_extras, virtualised: only the rows on screen are laid out, so 10,000
//! devices cost what 30 do). One line per device: selection checkbox with the device name
//! (sub-devices indented under their gateway or dock), dialect, module, version, target,
//! status, progress, last message, last heard (devices only remembered from earlier runs are
//! marked "not heard since start"). Headers sort; a click on a line shows the device
//! in the inspector.

use std::collections::BTreeSet;

use egui::{ProgressBar, RichText, Sense, Ui};
use egui_extras::{Column, TableBuilder};

use super::explain::explain_code;
use super::filter::{self, Sort, SortColumn, VisibleRow, status_label};
use super::format;
use super::theme;
use crate::device_id::DeviceId;
use crate::engine::{DeviceRow, DeviceRows};
use crate::i18n::tr;
use crate::rollout::DeviceStatus;

/// What the table may change.
pub struct TableState<'a> {
    pub selection: &'a mut BTreeSet<DeviceId>,
    pub sort: &'a mut Sort,
    /// The device the inspector follows.
    pub inspected: &'a mut Option<DeviceId>,
}

const ROW_HEIGHT: f32 = 22.0;

const COLUMNS: [SortColumn; 9] = [
    SortColumn::Device,
    SortColumn::Dialect,
    SortColumn::Module,
    SortColumn::Version,
    SortColumn::Target,
    SortColumn::Status,
    SortColumn::Progress,
    SortColumn::LastMessage,
    SortColumn::LastSeen,
];

/// A column's title in the language in force.
fn title(column: SortColumn) -> String {
    match column {
        SortColumn::Device => tr!("ui.table.device"),
        SortColumn::Dialect => tr!("ui.table.dialect"),
        SortColumn::Module => tr!("ui.table.module"),
        SortColumn::Version => tr!("ui.table.version"),
        SortColumn::Target => tr!("ui.table.target"),
        SortColumn::Status => tr!("ui.table.status"),
        SortColumn::Progress => tr!("ui.table.progress"),
        SortColumn::LastMessage => tr!("ui.table.last_message"),
        SortColumn::LastSeen => tr!("ui.table.last_heard"),
    }
}

pub fn devices_table_ui(
    ui: &mut Ui,
    rows: &DeviceRows,
    visible: &[VisibleRow],
    targets: &filter::Targets,
    now_ms: i64,
    state: TableState<'_>,
) {
    let TableState {
        selection,
        sort,
        inspected,
    } = state;
    // A click anywhere on a line inspects the device: labels must not take the click for text
    // selection.
    ui.style_mut().interaction.selectable_labels = false;
    TableBuilder::new(ui)
        .id_salt("devices")
        .striped(true)
        .resizable(true)
        .sense(Sense::click())
        .cell_layout(egui::Layout::left_to_right(egui::Align::Center))
        .column(Column::initial(230.0).at_least(120.0).clip(true))
        .column(Column::initial(70.0))
        .column(Column::initial(70.0).clip(true))
        .column(Column::initial(80.0).clip(true))
        .column(Column::initial(80.0).clip(true))
        .column(Column::initial(110.0).clip(true))
        .column(Column::initial(110.0))
        .column(Column::initial(220.0).clip(true))
        .column(Column::remainder().at_least(80.0))
        .header(24.0, |mut header| {
            for column in COLUMNS {
                let title = title(column);
                header.col(|ui| {
                    let arrow = match (sort.column == column, sort.ascending) {
                        (true, true) => " ^",
                        (true, false) => " v",
                        (false, _) => "",
                    };
                    let text = RichText::new(format!("{title}{arrow}")).strong();
                    if ui.selectable_label(sort.column == column, text).clicked() {
                        *sort = sort.clicked(column);
                    }
                });
            }
        })
        .body(|body| {
            body.rows(ROW_HEIGHT, visible.len(), |mut table_row| {
                let Some(v) = visible.get(table_row.index()) else {
                    return;
                };
                let Some(row) = rows.get(v.index) else {
                    return;
                };
                let id = &row.record.id;
                table_row.set_selected(inspected.as_ref() == Some(id));
                device_cells(&mut table_row, row, v.depth, targets, now_ms, selection);
                if table_row.response().clicked() {
                    *inspected = Some(id.clone());
                }
            });
        });
}

fn device_cells(
    table_row: &mut egui_extras::TableRow<'_, '_>,
    row: &DeviceRow,
    depth: u8,
    targets: &filter::Targets,
    now_ms: i64,
    selection: &mut BTreeSet<DeviceId>,
) {
    let id = &row.record.id;
    table_row.col(|ui| {
        if depth > 0 {
            ui.add_space(14.0 * f32::from(depth));
            ui.weak("-");
        }
        let mut selected = selection.contains(id);
        if ui
            .checkbox(&mut selected, id.name())
            .on_hover_text(id.to_string())
            .changed()
        {
            if selected {
                selection.insert(id.clone());
            } else {
                selection.remove(id);
            }
        }
    });
    table_row.col(|ui| {
        ui.label(row.record.dialect().as_str());
    });
    table_row.col(|ui| {
        ui.label(filter::modules_text(row));
    });
    table_row.col(|ui| {
        ui.label(filter::shown_version(row).unwrap_or("?"));
    });
    table_row.col(|ui| {
        ui.label(filter::target_of(targets, id).unwrap_or(""));
    });
    table_row.col(|ui| status_cell_ui(ui, row, now_ms));
    table_row.col(|ui| {
        // A device not noticed yet has no progress to show.
        if let Some(r) = row
            .rollout
            .as_ref()
            .filter(|r| r.status != DeviceStatus::Pending)
        {
            let color = theme::status_color(r.status);
            ui.add(
                ProgressBar::new(f32::from(r.percent) / 100.0)
                    .text(format!("{} %", r.percent))
                    .fill(color)
                    .desired_width(100.0),
            );
        }
    });
    table_row.col(|ui| {
        ui.add(egui::Label::new(row.last_message.as_deref().unwrap_or("")).truncate());
    });
    table_row.col(|ui| {
        let r = &row.record;
        let heard = format::last_heard(now_ms, r.last_seen_ms, r.heard_since_start);
        if !r.heard_since_start {
            ui.weak(heard)
                .on_hover_text(tr!("ui.table.remembered_hover"));
        } else if r.online {
            ui.label(heard);
        } else {
            ui.weak(tr!("ui.table.offline_heard", heard = heard));
        }
    });
}

fn status_cell_ui(ui: &mut Ui, row: &DeviceRow, now_ms: i64) {
    match &row.rollout {
        None => {
            let r = &row.record;
            let text = match (r.heard_since_start, r.online) {
                (false, _) => tr!("ui.table.remembered"),
                (true, true) => tr!("ui.filter.idle"),
                (true, false) => tr!("ui.filter.offline"),
            };
            ui.colored_label(theme::idle_color(r.online && r.heard_since_start), text);
        }
        Some(r) => {
            let mut text = status_label(r.status);
            if r.attempts > 1 {
                text.push_str(&tr!("ui.table.attempt", attempt = r.attempts));
            }
            // A notice that went unanswered and was re-sent: worth seeing while it is in flight.
            if r.resends > 0 && r.status.in_flight() {
                text.push_str(&tr!("ui.table.resent", count = r.resends));
            }
            let response = ui.colored_label(theme::status_color(r.status), text);
            let mut why: Vec<String> = r.error.iter().map(ToString::to_string).collect();
            why.extend(
                r.code
                    .and_then(|code| explain_code(row.record.dialect(), code)),
            );
            if r.resends > 0 {
                why.push(tr!("ui.table.resent_hover", count = r.resends));
            }
            if let Some(at) = r.next_resend_at {
                let in_secs = i64::try_from(at.as_millis())
                    .unwrap_or(i64::MAX)
                    .saturating_sub(now_ms)
                    .max(0)
                    / 1000;
                why.push(tr!(
                    "ui.table.resend_next",
                    after = format::duration_secs(in_secs.unsigned_abs())
                ));
            }
            if !why.is_empty() {
                response.on_hover_text(why.join("\n"));
            }
        }
    }
}
