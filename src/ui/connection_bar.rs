//! The top bar: which broker is in use and the live link state (connected / reconnecting with
//! the reason / failed), messages per second, the firmware server, the theme switch, and one
//! line of fixed height for the operator alerts (broker refused, port taken, file unreadable,
//! device errors): the newest, how many more, dismiss. An alert arriving never moves a control.
//! (The window's own notices are toasts: `toasts`.) Reads the snapshot; only pushes actions.

use egui::{RichText, Ui};

use super::action::UiAction;
use super::format;
use super::settings::ThemeChoice;
use super::theme;
use crate::engine::{BrokerGuard, LinkState, Snapshot};
use crate::i18n::tr;

/// How the link state reads, and its colour.
pub fn link_text(link: &LinkState) -> (String, egui::Color32) {
    match link {
        LinkState::Connecting => (tr!("ui.bar.connecting"), theme::WARN),
        LinkState::Connected => (tr!("ui.bar.connected"), theme::GOOD),
        LinkState::Reconnecting {
            reason,
            attempt,
            retry_in,
        } => (
            tr!(
                "ui.bar.reconnecting",
                attempt = attempt,
                next = format::duration_secs(retry_in.as_secs()),
                why = reason
            ),
            theme::WARN,
        ),
        LinkState::Failed { reason } => (tr!("ui.bar.disconnected", why = reason), theme::BAD),
    }
}

/// The embedded broker's access: a warning badge when anyone may use it, else how many
/// attempts it refused.
fn broker_guard_ui(ui: &mut Ui, snap: &Snapshot, actions: &mut Vec<UiAction>) {
    match snap.broker_guard {
        BrokerGuard::Open => {
            ui.label(
                RichText::new(tr!("ui.bar.open_badge"))
                    .strong()
                    .background_color(theme::WARN)
                    .color(egui::Color32::BLACK),
            )
            .on_hover_text(tr!("ui.bar.open_hover"));
        }
        BrokerGuard::Secure => {
            let text = if snap.broker_refusals == 0 {
                tr!("ui.bar.secured")
            } else {
                tr!("ui.bar.secured_refused", count = snap.broker_refusals)
            };
            ui.label(text).on_hover_text(tr!("ui.bar.secured_hover"));
            if ui
                .small_button(tr!("ui.bar.site_ca"))
                .on_hover_text(tr!("ui.bar.site_ca_hover"))
                .clicked()
            {
                actions.push(UiAction::ExportSiteCa);
            }
        }
        BrokerGuard::External => {}
    }
}

pub fn connection_bar_ui(
    ui: &mut Ui,
    snap: &Snapshot,
    demo: bool,
    theme_choice: &mut ThemeChoice,
    language: &mut Option<crate::i18n::Lang>,
    dialog_open: &mut bool,
    actions: &mut Vec<UiAction>,
) {
    // The switches are laid out first, at the right end, and the rest wraps in the width they
    // leave: laid out last (a right-to-left area after a wrapped row), a switch that did not fit
    // was drawn over the firmware server's URL.
    // One row high to start with (a layout given the panel's whole height would centre its
    // rows in it); the wrapped part adds rows below as it needs them.
    let row = egui::vec2(ui.available_width(), ui.spacing().interact_size.y);
    ui.allocate_ui_with_layout(row, egui::Layout::right_to_left(egui::Align::Min), |ui| {
        super::language::language_ui(ui, language);
        // An id of its own: the label changes with the language.
        egui::ComboBox::new("theme", tr!("ui.bar.theme"))
            .selected_text(match theme_choice {
                ThemeChoice::Dark => tr!("ui.bar.dark"),
                ThemeChoice::Light => tr!("ui.bar.light"),
                ThemeChoice::System => tr!("ui.bar.system"),
            })
            .show_ui(ui, |ui| {
                ui.selectable_value(theme_choice, ThemeChoice::Dark, tr!("ui.bar.dark"));
                ui.selectable_value(theme_choice, ThemeChoice::Light, tr!("ui.bar.light"));
                ui.selectable_value(theme_choice, ThemeChoice::System, tr!("ui.bar.system"));
            });
        ui.with_layout(
            egui::Layout::left_to_right(egui::Align::Center).with_main_wrap(true),
            |ui| status_ui(ui, snap, demo, dialog_open, actions),
        );
    });
}

/// The bar's left part: demo controls, broker, link, traffic, firmware server.
fn status_ui(
    ui: &mut Ui,
    snap: &Snapshot,
    demo: bool,
    dialog_open: &mut bool,
    actions: &mut Vec<UiAction>,
) {
    if demo {
        ui.label(
            RichText::new(tr!("ui.bar.demo_badge"))
                .strong()
                .background_color(theme::WARN)
                .color(egui::Color32::BLACK),
        );
        super::demo_controls::demo_controls_ui(ui, snap, actions);
    }
    ui.label(RichText::new(tr!("ui.bar.broker")).strong());
    ui.label(&snap.broker);
    broker_guard_ui(ui, snap, actions);
    if ui
        .small_button(tr!("ui.bar.connection"))
        .on_hover_text(tr!("ui.bar.connection_hover"))
        .clicked()
    {
        *dialog_open = true;
    }
    ui.separator();
    let (text, color) = link_text(&snap.link);
    super::widgets::status_chip_ui(ui, color, &text);
    ui.separator();
    ui.label(format::rate(snap.traffic.received_per_sec))
        .on_hover_text(tr!(
            "ui.bar.traffic",
            received = snap.traffic.received,
            published = snap.traffic.published,
            refused = snap.traffic.rejected
        ));
    ui.separator();
    ui.label(RichText::new(tr!("ui.bar.firmware_server")).strong());
    match &snap.firmware_base {
        // A URL broken over two lines reads as two; it moves to the next row whole.
        Some(base) => ui.add(egui::Label::new(RichText::new(base).monospace()).extend()),
        None => ui.weak(tr!("ui.bar.none")),
    };
    if let Some(served) = &snap.served {
        let clients: Vec<String> = served
            .bytes_by_client
            .iter()
            .map(|(ip, n)| format!("{ip}: {}", format::bytes(*n)))
            .collect();
        ui.label(tr!(
            "ui.bar.served",
            bytes = format::bytes(served.total_bytes),
            open = served.active_connections
        ))
        .on_hover_text(if clients.is_empty() {
            tr!("ui.bar.no_downloads")
        } else {
            clients.join("\n")
        });
    }
}

/// The alert line: always one line high, empty or not, so that nothing under it moves when an
/// alert arrives. Returns whether the operator asked to see every alert (the Log tab).
pub fn alert_line_ui(ui: &mut Ui, snap: &Snapshot, actions: &mut Vec<UiAction>) -> bool {
    let mut show_log = false;
    let height = ui.spacing().interact_size.y;
    let width = ui.available_width();
    ui.allocate_ui_with_layout(
        egui::vec2(width, height),
        egui::Layout::left_to_right(egui::Align::Center),
        |ui| {
            ui.set_min_size(egui::vec2(width, height));
            ui.set_max_height(height);
            let Some(newest) = snap.alerts.last() else {
                ui.weak(tr!("ui.bar.no_alerts"));
                return;
            };
            ui.weak(format::clock_utc(newest.at_ms));
            // The buttons keep their place at the end; the text takes what is left, cut short.
            let buttons = 260.0_f32.min(ui.available_width() / 2.0);
            let text_width = (ui.available_width() - buttons).max(40.0);
            ui.allocate_ui_with_layout(
                egui::vec2(text_width, height),
                egui::Layout::left_to_right(egui::Align::Center),
                |ui| {
                    ui.set_min_width(text_width);
                    ui.add(
                        egui::Label::new(
                            RichText::new(&newest.text).color(theme::alert_color(newest.level)),
                        )
                        .truncate(),
                    );
                },
            );
            let more = snap.alerts.len() - 1;
            let log = if more > 0 {
                tr!("ui.bar.more_in_log", count = more)
            } else {
                tr!("ui.bar.open_log")
            };
            if ui.small_button(log).clicked() {
                show_log = true;
            }
            if ui.small_button(tr!("ui.bar.dismiss_alerts")).clicked() {
                actions.push(UiAction::DismissAlerts);
            }
        },
    );
    show_log
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn link_states_read_with_their_reason() {
        let (text, color) = link_text(&LinkState::Reconnecting {
            reason: "connection refused".into(),
            attempt: 3,
            retry_in: Duration::from_secs(4),
        });
        assert_eq!(
            text,
            "Reconnecting (attempt 3, next in 4 s): connection refused"
        );
        assert_eq!(color, theme::WARN);
        let (text, color) = link_text(&LinkState::Failed {
            reason: "not authorized".into(),
        });
        assert_eq!(text, "Disconnected: not authorized");
        assert_eq!(color, theme::BAD);
        assert_eq!(link_text(&LinkState::Connected).0, "Connected");
    }
}
