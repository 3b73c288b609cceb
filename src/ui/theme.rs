//! Colours with a meaning (device status, link state, alert level) and the dark / light theme
//! switch. One table so the table, the tiles, the stacked bar and the plot agree.

use egui::{Color32, ThemePreference};

use super::settings::ThemeChoice;
use crate::engine::AlertLevel;
use crate::rollout::DeviceStatus;

/// The colour of a device status, readable on both themes.
pub fn status_color(status: DeviceStatus) -> Color32 {
    match status {
        DeviceStatus::Pending => Color32::from_rgb(140, 140, 150),
        DeviceStatus::Noticed => Color32::from_rgb(90, 150, 230),
        DeviceStatus::Downloading => Color32::from_rgb(60, 130, 240),
        DeviceStatus::Installing => Color32::from_rgb(150, 110, 230),
        DeviceStatus::Succeeded => Color32::from_rgb(50, 170, 90),
        DeviceStatus::Failed => Color32::from_rgb(220, 60, 60),
        DeviceStatus::Rejected => Color32::from_rgb(200, 80, 140),
        DeviceStatus::TimedOut => Color32::from_rgb(230, 140, 40),
        DeviceStatus::Canceled => Color32::from_rgb(120, 110, 100),
        DeviceStatus::Skipped => Color32::from_rgb(110, 120, 130),
    }
}

/// A device that is in no campaign: online or not.
pub fn idle_color(online: bool) -> Color32 {
    if online {
        Color32::from_rgb(100, 110, 120)
    } else {
        Color32::from_rgb(70, 70, 75)
    }
}

pub fn alert_color(level: AlertLevel) -> Color32 {
    match level {
        AlertLevel::Info => Color32::from_rgb(90, 150, 230),
        AlertLevel::Warning => Color32::from_rgb(230, 160, 40),
        AlertLevel::Error => Color32::from_rgb(225, 70, 70),
    }
}

pub const GOOD: Color32 = Color32::from_rgb(50, 170, 90);
pub const WARN: Color32 = Color32::from_rgb(230, 160, 40);
pub const BAD: Color32 = Color32::from_rgb(225, 70, 70);

/// Text colour that stays readable on top of `fill` (tiles are filled with the status colour).
pub fn text_on(fill: Color32) -> Color32 {
    let luma =
        0.299 * f32::from(fill.r()) + 0.587 * f32::from(fill.g()) + 0.114 * f32::from(fill.b());
    if luma > 150.0 {
        Color32::BLACK
    } else {
        Color32::WHITE
    }
}

pub fn apply(ctx: &egui::Context, choice: ThemeChoice) {
    ctx.set_theme(match choice {
        ThemeChoice::Dark => ThemePreference::Dark,
        ThemeChoice::Light => ThemePreference::Light,
        ThemeChoice::System => ThemePreference::System,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_have_distinct_colours_and_readable_text() {
        let colours: std::collections::BTreeSet<[u8; 4]> = DeviceStatus::ALL
            .iter()
            .map(|s| status_color(*s).to_array())
            .collect();
        assert_eq!(colours.len(), DeviceStatus::ALL.len());
        assert_eq!(text_on(Color32::from_rgb(250, 250, 250)), Color32::BLACK);
        assert_eq!(text_on(status_color(DeviceStatus::Failed)), Color32::WHITE);
    }
}
