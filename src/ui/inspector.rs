//! The inspector: raw MQTT messages in and out, for the device clicked in the table or for the
//! whole fleet, filterable, with the selected message pretty-printed and its error codes
//! explained by its dialect's error table; and the operator log of alerts.
//! Shows what the app fetched from the engine's bounded ring; never fetches itself.

use egui::{RichText, Ui};

use super::action::UiAction;
use super::explain::explain_payload;
use super::format;
use super::theme;
use crate::device_id::DeviceId;
use crate::engine::Snapshot;
use crate::fleet::inspector::{Direction, RawMessage, pretty};
use crate::i18n::tr;
use crate::protocol::registry;

#[derive(Debug, Default)]
pub struct InspectorState {
    /// Case-insensitive substring of topic, payload, device or error.
    pub filter: String,
    /// The message shown in full.
    pub selected_seq: Option<u64>,
}

/// Whether `m` passes the inspector filter (`needle_lower` already lower-cased).
pub fn message_matches(m: &RawMessage, needle_lower: &str) -> bool {
    if needle_lower.is_empty() {
        return true;
    }
    let has = |s: &str| s.to_lowercase().contains(needle_lower);
    has(&m.topic)
        || has(&m.payload)
        || m.device.as_ref().is_some_and(|d| has(&d.to_string()))
        || m.error.as_deref().is_some_and(has)
}

pub fn inspector_ui(
    ui: &mut Ui,
    messages: &[RawMessage],
    inspected: Option<&DeviceId>,
    global: &mut bool,
    state: &mut InspectorState,
    actions: &mut Vec<UiAction>,
) {
    ui.horizontal(|ui| {
        ui.checkbox(global, tr!("ui.inspector.all_devices"));
        match (inspected, *global) {
            (_, true) => ui.label(tr!("ui.inspector.every_device")),
            (Some(d), false) => ui.label(tr!("ui.inspector.of_device", device = d)),
            (None, false) => ui.weak(tr!("ui.inspector.click_device")),
        };
        let filter_label = ui.label(tr!("ui.inspector.filter")).id;
        ui.add(
            egui::TextEdit::singleline(&mut state.filter)
                .hint_text(tr!("ui.inspector.filter_hint"))
                .desired_width(180.0),
        )
        .labelled_by(filter_label);
        if ui.button(tr!("ui.inspector.export")).clicked() {
            actions.push(UiAction::ExportMessages);
        }
    });
    let needle = state.filter.trim().to_lowercase();
    let shown: Vec<&RawMessage> = messages
        .iter()
        .rev()
        .filter(|m| message_matches(m, &needle))
        .collect();
    ui.columns(2, |cols| {
        let [list, detail] = cols else { return };
        message_list_ui(list, &shown, state);
        let picked = state
            .selected_seq
            .and_then(|seq| shown.iter().find(|m| m.seq == seq));
        match picked {
            Some(m) => message_detail_ui(detail, m),
            None => {
                detail.weak(tr!("ui.inspector.select_message"));
            }
        }
    });
}

fn message_list_ui(ui: &mut Ui, shown: &[&RawMessage], state: &mut InspectorState) {
    let row_h = ui.text_style_height(&egui::TextStyle::Body);
    egui::ScrollArea::vertical()
        .id_salt("inspector-list")
        .auto_shrink([false, false])
        .show_rows(ui, row_h, shown.len(), |ui, range| {
            for m in shown.get(range).unwrap_or_default() {
                let arrow = match m.direction {
                    Direction::In => tr!("ui.inspector.arrow_in"),
                    Direction::Out => tr!("ui.inspector.arrow_out"),
                };
                let mut text = format!("{} {arrow} {}", format::clock_utc(m.at_ms), m.topic);
                if m.error.is_some() {
                    text.push_str(&tr!("ui.inspector.refused_mark"));
                }
                let selected = state.selected_seq == Some(m.seq);
                if ui
                    .selectable_label(selected, RichText::new(text).monospace())
                    .clicked()
                {
                    state.selected_seq = Some(m.seq);
                }
            }
        });
}

fn message_detail_ui(ui: &mut Ui, m: &RawMessage) {
    ui.label(RichText::new(&m.topic).monospace().strong());
    let at = format::clock_utc(m.at_ms);
    let size = format::bytes(m.payload_len as u64);
    let line = match (m.direction, &m.device) {
        (Direction::In, None) => tr!("ui.inspector.received", at = at, size = size),
        (Direction::Out, None) => tr!("ui.inspector.sent", at = at, size = size),
        (Direction::In, Some(d)) => tr!(
            "ui.inspector.received_from",
            at = at,
            size = size,
            device = d
        ),
        (Direction::Out, Some(d)) => tr!("ui.inspector.sent_to", at = at, size = size, device = d),
    };
    ui.weak(line);
    if let Some(err) = &m.error {
        ui.colored_label(theme::BAD, tr!("ui.inspector.refused", why = err));
    }
    // The device's dialect, else the topic's: its table alone explains the codes.
    let dialect = m
        .device
        .as_ref()
        .map(DeviceId::dialect)
        .or_else(|| registry::dialect_of_topic(&m.topic).map(|d| d.id()));
    for line in explain_payload(&m.payload, dialect) {
        ui.colored_label(theme::WARN, line);
    }
    egui::ScrollArea::vertical()
        .id_salt("inspector-payload")
        .show(ui, |ui| {
            ui.add(
                egui::Label::new(RichText::new(pretty(&m.payload)).monospace()).selectable(true),
            );
        });
}

/// Every engine alert, newest first.
pub fn log_ui(ui: &mut Ui, snap: &Snapshot) {
    if snap.alerts.is_empty() {
        ui.weak(tr!("ui.inspector.nothing"));
        return;
    }
    egui::ScrollArea::vertical()
        .id_salt("log")
        .auto_shrink([false, false])
        .show(ui, |ui| {
            for alert in snap.alerts.iter().rev() {
                ui.horizontal_wrapped(|ui| {
                    ui.weak(format::clock_utc(alert.at_ms));
                    ui.colored_label(theme::alert_color(alert.level), &alert.text);
                });
            }
        });
}

/// The export of the shown messages: one JSON object per line.
pub fn messages_jsonl(messages: &[RawMessage]) -> String {
    let mut out = String::new();
    for m in messages {
        if let Ok(line) = serde_json::to_string(m) {
            out.push_str(&line);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(seq: u64, topic: &str, payload: &str) -> RawMessage {
        RawMessage {
            seq,
            at_ms: 0,
            direction: Direction::In,
            topic: topic.into(),
            payload: payload.into(),
            payload_len: payload.len(),
            device: Some("fogcloud:pk/dev".parse().unwrap()),
            error: None,
        }
    }

    #[test]
    fn filter_and_export() {
        let a = msg(
            1,
            "fogcloud/pk/dev/thing/up/ota",
            r#"{"params":{"step":-1,"desc":"请求不到升级包信息"}}"#,
        );
        let b = msg(2, "other/topic", "{}");
        assert!(message_matches(&a, "升级包"));
        assert!(message_matches(&a, "thing/up"));
        assert!(message_matches(&b, "fogcloud:pk/dev"));
        assert!(!message_matches(&b, "ota"));
        assert!(message_matches(&b, ""));
        let text = messages_jsonl(&[a, b]);
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["seq"], 1);
        assert_eq!(lines[1]["topic"], "other/topic");
    }
}
