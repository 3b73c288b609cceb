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

/// How the link state reads, and its colour.
pub fn link_text(link: &LinkState) -> (String, egui::Color32) {
    match link {
        LinkState::Connecting => ("Connecting…".into(), theme::WARN),
        LinkState::Connected => ("Connected".into(), theme::GOOD),
        LinkState::Reconnecting {
            reason,
            attempt,
            retry_in,
        } => (
            format!(
                "Reconnecting (attempt {attempt}, next in {}): {reason}",
                format::duration_secs(retry_in.as_secs())
            ),
            theme::WARN,
        ),
        LinkState::Failed { reason } => (format!("Disconnected: {reason}"), theme::BAD),
    }
}

/// The embedded broker's access: a warning badge when anyone may use it, else how many
/// attempts it refused.
fn broker_guard_ui(ui: &mut Ui, snap: &Snapshot, actions: &mut Vec<UiAction>) {
    match snap.broker_guard {
        BrokerGuard::Open => {
            ui.label(
                RichText::new(" OPEN BROKER ")
                    .strong()
                    .background_color(theme::WARN)
                    .color(egui::Color32::BLACK),
            )
            .on_hover_text(
                "The embedded broker admits anyone who reaches its port: no credentials, no \
                 topic rules. Anyone on this network could flash a device. Start without \
                 --open-broker (the demo is open on loopback only) to secure it.",
            );
        }
        BrokerGuard::Secure => {
            let text = if snap.broker_refusals == 0 {
                "secured".to_owned()
            } else {
                format!("secured, {} refused", snap.broker_refusals)
            };
            ui.label(text).on_hover_text(
                "Only the console and devices with credentials in the data directory may \
                 connect, each to its own topics. Refused attempts are in the log and the \
                 inspector.",
            );
            if ui
                .small_button("Site CA…")
                .on_hover_text(
                    "Save the site CA's certificate: devices that connect over TLS (broker \
                     --tls-listen, firmware --https) trust it, and client certificates it \
                     issues (broker-config --issue-cert) log devices in",
                )
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
    ui.horizontal_wrapped(|ui| {
        if demo {
            ui.label(
                RichText::new(" DEMO ")
                    .strong()
                    .background_color(theme::WARN)
                    .color(egui::Color32::BLACK),
            );
        }
        ui.label(RichText::new("Broker").strong());
        ui.label(&snap.broker);
        broker_guard_ui(ui, snap, actions);
        if ui
            .small_button("Connection…")
            .on_hover_text("Saved broker profiles, or the embedded broker")
            .clicked()
        {
            *dialog_open = true;
        }
        ui.separator();
        let (text, color) = link_text(&snap.link);
        super::widgets::status_chip_ui(ui, color, &text);
        ui.separator();
        ui.label(format::rate(snap.traffic.received_per_sec))
            .on_hover_text(format!(
                "{} received, {} published, {} refused by the decoders",
                snap.traffic.received, snap.traffic.published, snap.traffic.rejected
            ));
        ui.separator();
        ui.label(RichText::new("Firmware server").strong());
        match &snap.firmware_base {
            Some(base) => ui.label(RichText::new(base).monospace()),
            None => ui.weak("none"),
        };
        if let Some(served) = &snap.served {
            let clients: Vec<String> = served
                .bytes_by_client
                .iter()
                .map(|(ip, n)| format!("{ip}: {}", format::bytes(*n)))
                .collect();
            ui.label(format!(
                "sent {} · {} open",
                format::bytes(served.total_bytes),
                served.active_connections
            ))
            .on_hover_text(if clients.is_empty() {
                "no downloads yet".to_owned()
            } else {
                clients.join("\n")
            });
        }
        ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
            super::language::language_ui(ui, language);
            egui::ComboBox::from_label("Theme")
                .selected_text(match theme_choice {
                    ThemeChoice::Dark => "Dark",
                    ThemeChoice::Light => "Light",
                    ThemeChoice::System => "System",
                })
                .show_ui(ui, |ui| {
                    ui.selectable_value(theme_choice, ThemeChoice::Dark, "Dark");
                    ui.selectable_value(theme_choice, ThemeChoice::Light, "Light");
                    ui.selectable_value(theme_choice, ThemeChoice::System, "System");
                });
        });
    });
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
                ui.weak("No alerts");
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
                format!("{more} more in the Log")
            } else {
                "Open the Log".to_owned()
            };
            if ui.small_button(log).clicked() {
                show_log = true;
            }
            if ui.small_button("Dismiss alerts").clicked() {
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
