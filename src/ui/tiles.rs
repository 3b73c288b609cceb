//! The tile view: the same filtered, sorted devices as a wall of compact cards filled with the
//! status colour and showing the percent, large enough to read on a projector. Virtualised by
//! rows of tiles. A click inspects the device (the inspector opens on it), as a row of the table
//! does; the selection has its own affordance, the check box in the tile's corner (or a click
//! with Ctrl / Shift held). Hovering shows the device's details.

use std::collections::BTreeSet;

use egui::{Align2, FontId, Rect, RichText, Sense, Stroke, StrokeKind, Ui, Vec2};

use super::filter::{VisibleRow, status_label};
use super::theme;
use crate::device_id::DeviceId;
use crate::engine::{DeviceRow, DeviceRows};
use crate::i18n::tr;

const TILE: Vec2 = Vec2::new(150.0, 58.0);
const GAP: f32 = 6.0;

/// The caption of a tile: status word and, while it means something, the percent.
pub fn tile_caption(row: &DeviceRow) -> String {
    match &row.rollout {
        None if !row.record.heard_since_start => super::format::not_heard(),
        None if row.record.online => tr!("ui.tiles.idle"),
        None => tr!("ui.tiles.offline"),
        Some(r) if r.status.in_flight() || r.status == crate::rollout::DeviceStatus::Succeeded => {
            tr!(
                "ui.tiles.percent",
                status = status_label(r.status),
                percent = r.percent.max(succeeded_pct(r.status))
            )
        }
        Some(r) => status_label(r.status),
    }
}

fn succeeded_pct(status: crate::rollout::DeviceStatus) -> u8 {
    if status == crate::rollout::DeviceStatus::Succeeded {
        100
    } else {
        0
    }
}

pub fn tiles_ui(
    ui: &mut Ui,
    rows: &DeviceRows,
    visible: &[VisibleRow],
    selection: &mut BTreeSet<DeviceId>,
    inspected: &mut Option<DeviceId>,
) {
    let per_line = (((ui.available_width() + GAP) / (TILE.x + GAP)).floor() as usize).max(1);
    let lines = visible.len().div_ceil(per_line);
    egui::ScrollArea::vertical()
        .id_salt("tiles")
        .auto_shrink([false, false])
        .show_rows(ui, TILE.y, lines, |ui, range| {
            for line in range {
                ui.horizontal(|ui| {
                    ui.spacing_mut().item_spacing.x = GAP;
                    let start = line * per_line;
                    let end = (start + per_line).min(visible.len());
                    for v in visible.get(start..end).unwrap_or_default() {
                        if let Some(row) = rows.get(v.index) {
                            tile_ui(ui, row, selection, inspected);
                        }
                    }
                });
            }
        });
}

/// Side of the selection check box in a tile's top-right corner.
const CHECK: f32 = 20.0;

fn tile_ui(
    ui: &mut Ui,
    row: &DeviceRow,
    selection: &mut BTreeSet<DeviceId>,
    inspected: &mut Option<DeviceId>,
) {
    let id = &row.record.id;
    let selected = selection.contains(id);
    let (rect, response) = ui.allocate_exact_size(TILE, Sense::click());
    let caption = tile_caption(row);
    let name = id.name();
    response.widget_info(|| {
        egui::WidgetInfo::selected(
            egui::Role::Button,
            true,
            selected,
            format!("{name}: {caption}"),
        )
    });
    // On top of the tile, so it takes the clicks aimed at it.
    let check_rect = Rect::from_min_size(
        rect.right_top() + Vec2::new(-CHECK - 4.0, 4.0),
        Vec2::splat(CHECK),
    );
    let check = ui.interact(check_rect, response.id.with("select"), Sense::click());
    check.widget_info(|| {
        egui::WidgetInfo::selected(
            egui::Role::CheckBox,
            true,
            selected,
            tr!("ui.tiles.select", name = name),
        )
    });
    let fill = match &row.rollout {
        Some(r) => theme::status_color(r.status),
        None => theme::idle_color(row.record.online && row.record.heard_since_start),
    };
    let text = theme::text_on(fill);
    if ui.is_rect_visible(rect) {
        let painter = ui.painter();
        painter.rect_filled(rect, 6.0, fill);
        if let Some(r) = row.rollout.as_ref().filter(|r| r.status.in_flight()) {
            // A band along the bottom shows the percent at a distance.
            let w = rect.width() * f32::from(r.percent.min(100)) / 100.0;
            let band =
                Rect::from_min_size(rect.left_bottom() - Vec2::new(0.0, 6.0), Vec2::new(w, 6.0));
            painter.rect_filled(band, 2.0, text.gamma_multiply(0.6));
        }
        if selected || inspected.as_ref() == Some(id) {
            let stroke = Stroke::new(
                if selected { 3.0 } else { 1.5 },
                ui.visuals().strong_text_color(),
            );
            painter.rect_stroke(rect, 6.0, stroke, StrokeKind::Inside);
        }
        // The check box: outlined always (it shows where to click), ticked when selected.
        let box_stroke = Stroke::new(if check.hovered() { 2.0 } else { 1.2 }, text);
        painter.rect_stroke(check_rect.shrink(3.0), 3.0, box_stroke, StrokeKind::Inside);
        if selected {
            painter.rect_filled(check_rect.shrink(6.0), 2.0, text);
        }
        let clip =
            Rect::from_min_max(rect.min, egui::pos2(check_rect.left(), rect.max.y)).shrink(6.0);
        let painter = painter.with_clip_rect(clip);
        painter.text(
            clip.left_top(),
            Align2::LEFT_TOP,
            name,
            FontId::proportional(14.0),
            text,
        );
        let caption_clip = rect.shrink(6.0);
        ui.painter().with_clip_rect(caption_clip).text(
            caption_clip.left_bottom() - Vec2::new(0.0, 4.0),
            Align2::LEFT_BOTTOM,
            &caption,
            FontId::proportional(16.0),
            text,
        );
    }
    let toggle = |selection: &mut BTreeSet<DeviceId>| {
        if selected {
            selection.remove(id);
        } else {
            selection.insert(id.clone());
        }
    };
    if check.clicked() {
        toggle(selection);
    } else if response.clicked() {
        let modifiers = ui.input(|i| i.modifiers);
        if modifiers.command || modifiers.ctrl || modifiers.shift {
            toggle(selection);
        } else {
            *inspected = Some(id.clone());
        }
    } else if response.secondary_clicked() {
        *inspected = Some(id.clone());
    }
    check.on_hover_text(if selected {
        tr!("ui.tiles.selected_hover")
    } else {
        tr!("ui.tiles.select_hover")
    });
    response.on_hover_ui(|ui| tile_details_ui(ui, row, &caption));
}

/// What hovering a tile tells: the full id, versions, link, and its standing in the rollout.
fn tile_details_ui(ui: &mut Ui, row: &DeviceRow, caption: &str) {
    let record = &row.record;
    ui.label(RichText::new(record.id.to_string()).monospace().strong());
    ui.label(format!(
        "{} · {caption}",
        crate::terms::dialect::label(record.id.dialect())
    ));
    for (module, version) in &record.versions {
        ui.label(format!("{module}: {version}"));
    }
    if let Some(gateway) = &record.gateway {
        ui.label(tr!("ui.tiles.via", gateway = gateway.name()));
    }
    ui.label(if record.online {
        tr!("ui.tiles.online")
    } else {
        tr!("ui.tiles.offline")
    });
    if let Some(r) = &row.rollout {
        if let (Some(from), Some(to)) = (&r.from_version, &r.to_version) {
            ui.label(format!("{from} → {to}"));
        }
        if r.attempts > 1 {
            ui.label(tr!("ui.tiles.attempt", attempt = r.attempts));
        }
        if let Some(error) = &r.error {
            ui.colored_label(theme::BAD, error);
        }
    }
    if let Some(last) = &row.last_message {
        ui.weak(last);
    }
    ui.weak(tr!("ui.tiles.hint"));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::DeviceStatus;
    use crate::ui::filter::tests::row;

    #[test]
    fn captions() {
        assert_eq!(tile_caption(&row("dji:SN1", "1", None)), "idle");
        let mut off = row("dji:SN1", "1", None);
        off.record.online = false;
        assert_eq!(tile_caption(&off), "offline");
        let mut remembered = row("aliyun:pk/old", "1", None);
        remembered.record.heard_since_start = false;
        assert_eq!(tile_caption(&remembered), "not heard since start");
        assert_eq!(
            tile_caption(&row("dji:SN1", "1", Some(DeviceStatus::Downloading))),
            "downloading 40 %"
        );
        assert_eq!(
            tile_caption(&row("dji:SN1", "1", Some(DeviceStatus::Succeeded))),
            "succeeded 100 %"
        );
        assert_eq!(
            tile_caption(&row("dji:SN1", "1", Some(DeviceStatus::TimedOut))),
            "timed out"
        );
    }
}
