//! The window's own notices (engine busy, report saved, broker switched, cannot open a dialog)
//! as toasts: drawn over the layout in the bottom-right corner, so that one arriving moves no
//! control. The app drops each after [`TOAST_LIFETIME`]; "Dismiss" drops them at once.

use std::time::{Duration, Instant};

use egui::{Align2, RichText};

use super::action::UiAction;
use super::theme;
use crate::engine::AlertLevel;
use crate::i18n::tr;

/// How long a toast stays.
pub const TOAST_LIFETIME: Duration = Duration::from_secs(12);

/// A message from the window itself (not the engine).
#[derive(Debug, Clone, PartialEq)]
pub struct Banner {
    pub level: AlertLevel,
    pub text: String,
    /// When it was raised (it goes away [`TOAST_LIFETIME`] later).
    pub at: Instant,
}

impl Banner {
    pub fn new(level: AlertLevel, text: String) -> Banner {
        Banner {
            level,
            text,
            at: Instant::now(),
        }
    }

    pub fn expired(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.at) >= TOAST_LIFETIME
    }
}

/// Toast width: a sentence on two or three lines.
const WIDTH: f32 = 360.0;

pub fn toasts_ui(ctx: &egui::Context, notices: &[Banner], actions: &mut Vec<UiAction>) {
    if notices.is_empty() {
        return;
    }
    // Above the bottom tab bar, clear of the panel edges.
    egui::Area::new(egui::Id::unique("toasts"))
        .order(egui::Order::Foreground)
        .anchor(Align2::RIGHT_BOTTOM, egui::vec2(-12.0, -44.0))
        .show(ctx, |ui| {
            ui.set_max_width(WIDTH);
            for notice in notices {
                egui::Frame::popup(ui.style()).show(ui, |ui| {
                    ui.set_width(WIDTH);
                    ui.label(RichText::new(&notice.text).color(theme::alert_color(notice.level)));
                });
            }
            ui.with_layout(egui::Layout::right_to_left(egui::Align::Min), |ui| {
                if ui.small_button(tr!("ui.toasts.dismiss")).clicked() {
                    actions.push(UiAction::DismissNotices);
                }
            });
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_toast_goes_after_its_lifetime() {
        let toast = Banner::new(AlertLevel::Info, "saved".into());
        assert!(!toast.expired(toast.at + TOAST_LIFETIME / 2));
        assert!(toast.expired(toast.at + TOAST_LIFETIME));
    }
}
