//! The top bar: which broker is in use and the live link state (connected / reconnecting with
//! the reason / failed), messages per second, the firmware server, the theme switch, and the
//! strip of operator alerts (broker refused, port taken, file unreadable, device errors) with
//! the window's own notices. Reads the snapshot; only pushes actions.

use egui::{RichText, Ui};

use super::action::UiAction;
use super::format;
use super::settings::ThemeChoice;
use super::theme;
use crate::engine::{AlertLevel, BrokerGuard, LinkState, Snapshot};

/// A message from the window itself (not the engine): engine busy, export written, ...
#[derive(Debug, Clone, PartialEq)]
pub struct Banner {
    pub level: AlertLevel,
    pub text: String,
}

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
    notices: &[Banner],
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
    alerts_strip_ui(ui, snap, notices, actions);
}

/// The newest engine alerts (up to three) and the window's notices.
fn alerts_strip_ui(ui: &mut Ui, snap: &Snapshot, notices: &[Banner], actions: &mut Vec<UiAction>) {
    if snap.alerts.is_empty() && notices.is_empty() {
        return;
    }
    ui.separator();
    for notice in notices {
        ui.colored_label(theme::alert_color(notice.level), &notice.text);
    }
    let newest = snap.alerts.iter().rev().take(3);
    for alert in newest {
        ui.horizontal(|ui| {
            ui.weak(format::clock_utc(alert.at_ms));
            ui.colored_label(theme::alert_color(alert.level), &alert.text);
        });
    }
    if !snap.alerts.is_empty() {
        ui.horizontal(|ui| {
            if snap.alerts.len() > 3 {
                ui.weak(format!("{} more in the Log tab", snap.alerts.len() - 3));
            }
            if ui.small_button("Dismiss alerts").clicked() {
                actions.push(UiAction::DismissAlerts);
            }
        });
    }
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
