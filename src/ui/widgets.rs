//! Small drawing pieces the panels share: a labelled number field, a copy button, a status
//! chip, the stacked status bar. Each takes `&mut Ui` (hence `_ui`) and returns what it
//! changed; none talks to the engine.

use egui::{Color32, DragValue, RichText, Sense, Stroke, StrokeKind, Ui, Vec2};

use super::filter::status_label;
use super::theme;
use crate::i18n::tr;
use crate::rollout::{Counts, DeviceStatus};

/// `label: [value]` on one grid row; the field is named by its label for screen readers and
/// tests. Returns whether the value changed.
pub fn number_row_ui<N: egui::emath::Numeric>(
    ui: &mut Ui,
    label: &str,
    value: &mut N,
    range: std::ops::RangeInclusive<N>,
    suffix: &str,
) -> bool {
    let changed = number_field_ui(ui, label, value, range, suffix).changed();
    ui.end_row();
    changed
}

/// The label and field of [`number_row_ui`] without ending the row, for a caller that adds to
/// the field's response (a hover text) first.
pub fn number_field_ui<N: egui::emath::Numeric>(
    ui: &mut Ui,
    label: &str,
    value: &mut N,
    range: std::ops::RangeInclusive<N>,
    suffix: &str,
) -> egui::Response {
    let label_id = ui.label(label).id;
    ui.add(DragValue::new(value).range(range).suffix(suffix.to_owned()))
        .labelled_by(label_id)
}

/// `label: [text]` on one grid row.
pub fn text_row_ui(ui: &mut Ui, label: &str, value: &mut String, hint: &str) -> bool {
    let label_id = ui.label(label).id;
    let changed = ui
        .add(
            egui::TextEdit::singleline(value)
                .hint_text(hint.to_owned())
                .desired_width(200.0),
        )
        .labelled_by(label_id)
        .changed();
    ui.end_row();
    changed
}

/// A digest or URL in monospace with a button that copies it.
pub fn copy_row_ui(ui: &mut Ui, label: &str, value: &str) {
    ui.label(label);
    ui.horizontal(|ui| {
        ui.label(RichText::new(short_digest(value)).monospace())
            .on_hover_text(value);
        if ui
            .small_button(tr!("ui.widgets.copy"))
            .on_hover_text(tr!("ui.widgets.copy_hover", what = label))
            .clicked()
        {
            ui.ctx().copy_text(value.to_owned());
        }
    });
    ui.end_row();
}

/// A long digest as its first 12 and last 8 digits ("f8aba13f9f3d…1f93a8febb0" style), short
/// enough for the side panel; the full value is in the tooltip and the copy button.
pub fn short_digest(value: &str) -> String {
    let chars: Vec<char> = value.chars().collect();
    if chars.len() <= 24 {
        return value.to_owned();
    }
    let head: String = chars.iter().take(12).collect();
    let tail: String = chars.iter().skip(chars.len() - 8).collect();
    format!("{head}…{tail}")
}

/// A coloured dot and the status word.
pub fn status_chip_ui(ui: &mut Ui, color: Color32, text: &str) {
    ui.horizontal(|ui| {
        let (rect, _) = ui.allocate_exact_size(Vec2::splat(10.0), Sense::hover());
        ui.painter().circle_filled(rect.center(), 4.5, color);
        ui.label(RichText::new(text).color(color));
    });
}

/// One horizontal bar split by status, with a legend of the non-zero counts below it.
pub fn stacked_bar_ui(ui: &mut Ui, counts: &Counts) {
    stacked_bar_only_ui(ui, counts);
    ui.horizontal_wrapped(|ui| {
        for status in DeviceStatus::ALL {
            let n = counts.get(status);
            if n > 0 {
                status_chip_ui(
                    ui,
                    theme::status_color(status),
                    &format!("{} {n}", status_label(status)),
                );
            }
        }
    });
}

/// The bar alone, as wide as the space given (the summary strip puts its own counts beside it).
pub fn stacked_bar_only_ui(ui: &mut Ui, counts: &Counts) {
    let width = ui.available_width().max(50.0);
    let (rect, response) = ui.allocate_exact_size(Vec2::new(width, 16.0), Sense::hover());
    let painter = ui.painter_at(rect);
    painter.rect_filled(rect, 3.0, ui.visuals().extreme_bg_color);
    let total = counts.total.max(1) as f32;
    let mut x = rect.left();
    for status in DeviceStatus::ALL {
        let n = counts.get(status);
        if n == 0 {
            continue;
        }
        let w = rect.width() * n as f32 / total;
        let part =
            egui::Rect::from_min_size(egui::pos2(x, rect.top()), Vec2::new(w, rect.height()));
        painter.rect_filled(part, 0.0, theme::status_color(status));
        x += w;
    }
    painter.rect_stroke(
        rect,
        3.0,
        Stroke::new(1.0, ui.visuals().weak_text_color()),
        StrokeKind::Inside,
    );
    response.on_hover_text(summary_text(counts));
}

/// "3 succeeded, 1 failed, 2 pending" for tooltips and the log.
pub fn summary_text(counts: &Counts) -> String {
    let parts: Vec<String> = DeviceStatus::ALL
        .iter()
        .filter(|s| counts.get(**s) > 0)
        .map(|s| {
            tr!(
                "ui.widgets.count_status",
                count = counts.get(*s),
                status = status_label(*s)
            )
        })
        .collect();
    if parts.is_empty() {
        tr!("ui.widgets.no_devices")
    } else {
        parts.join(&tr!("ui.widgets.separator"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_digests_are_shortened() {
        assert_eq!(short_digest("fc11dd1f"), "fc11dd1f");
        let sha = "f8aba13f9f3d8f2f29d39e2e83dc984b614b8dba5695a3dd491201f93a8febb0";
        assert_eq!(short_digest(sha), "f8aba13f9f3d…3a8febb0");
    }

    #[test]
    fn summary_lists_non_zero_counts_in_status_order() {
        let counts = Counts::from_statuses([
            DeviceStatus::Failed,
            DeviceStatus::Succeeded,
            DeviceStatus::Succeeded,
        ]);
        assert_eq!(summary_text(&counts), "2 succeeded, 1 failed");
        assert_eq!(summary_text(&Counts::default()), "no devices");
    }
}
