//! The tile view: the same filtered, sorted devices as a wall of compact cards filled with the
//! status colour and showing the percent, large enough to read on a projector. Virtualised by
//! rows of tiles; a click toggles the device's selection, a secondary click inspects it.

use std::collections::BTreeSet;

use egui::{Align2, FontId, Rect, RichText, Sense, Stroke, StrokeKind, Ui, Vec2};

use super::filter::{VisibleRow, status_label};
use super::theme;
use crate::device_id::DeviceId;
use crate::engine::DeviceRow;

const TILE: Vec2 = Vec2::new(150.0, 58.0);
const GAP: f32 = 6.0;

/// The caption of a tile: status word and, while it means something, the percent.
pub fn tile_caption(row: &DeviceRow) -> String {
    match &row.rollout {
        None if !row.record.heard_since_start => super::format::not_heard(),
        None if row.record.online => "idle".into(),
        None => "offline".into(),
        Some(r) if r.status.in_flight() || r.status == crate::rollout::DeviceStatus::Succeeded => {
            format!(
                "{} {} %",
                status_label(r.status),
                r.percent.max(succeeded_pct(r.status))
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
    rows: &[DeviceRow],
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
            egui::Role::CheckBox,
            true,
            selected,
            format!("{name}: {caption}"),
        )
    });
    if ui.is_rect_visible(rect) {
        let fill = match &row.rollout {
            Some(r) => theme::status_color(r.status),
            None => theme::idle_color(row.record.online && row.record.heard_since_start),
        };
        let text = theme::text_on(fill);
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
        let clip = rect.shrink(6.0);
        let painter = painter.with_clip_rect(clip);
        painter.text(
            clip.left_top(),
            Align2::LEFT_TOP,
            name,
            FontId::proportional(14.0),
            text,
        );
        painter.text(
            clip.left_bottom() - Vec2::new(0.0, 4.0),
            Align2::LEFT_BOTTOM,
            &caption,
            FontId::proportional(16.0),
            text,
        );
    }
    if response.clicked() {
        if selected {
            selection.remove(id);
        } else {
            selection.insert(id.clone());
        }
    }
    if response.secondary_clicked() {
        *inspected = Some(id.clone());
    }
    response.on_hover_text(RichText::new(id.to_string()));
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
