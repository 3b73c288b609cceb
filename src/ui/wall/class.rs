//! What one square of the wall says: its class (a rollout status, or idle / offline for a
//! device in no campaign), whether it is selected, and an in-flight device's percent. The
//! colours are the tiles' and the table's (`ui::theme`), so the legend means the same
//! everywhere.

use egui::Color32;

use super::super::filter::status_label;
use super::super::theme;
use crate::engine::DeviceRow;
use crate::i18n::tr;
use crate::rollout::DeviceStatus;

/// Classes 0..10 are `DeviceStatus::ALL` in order; then these two.
pub const IDLE: u8 = 10;
/// Offline, or not heard since the console started.
pub const OFFLINE: u8 = 11;
pub const CLASSES: usize = 12;

/// How one device's square looks. Changes only when what it shows changes, so comparing two
/// looks tells whether the square needs repainting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Look {
    pub class: u8,
    pub selected: bool,
    /// An in-flight device's percent (0 otherwise, and when squares are too small to show it:
    /// then a progress report changes no look and costs no texel).
    pub percent: u8,
}

/// From this square size on, an in-flight square shows its percent as a band.
pub const BAND_FROM: u32 = 8;

impl Look {
    pub fn of(row: &DeviceRow, selected: bool, bands: bool) -> Look {
        match &row.rollout {
            Some(r) => Look {
                class: class_of_status(r.status),
                selected,
                percent: if bands && r.status.in_flight() {
                    r.percent.min(100)
                } else {
                    0
                },
            },
            None => Look {
                class: if row.record.online && row.record.heard_since_start {
                    IDLE
                } else {
                    OFFLINE
                },
                selected,
                percent: 0,
            },
        }
    }
}

pub fn class_of_status(status: DeviceStatus) -> u8 {
    DeviceStatus::ALL
        .iter()
        .position(|s| *s == status)
        .map_or(OFFLINE, |i| i as u8)
}

fn status_of(class: u8) -> Option<DeviceStatus> {
    DeviceStatus::ALL.get(usize::from(class)).copied()
}

pub fn color(class: u8) -> Color32 {
    match status_of(class) {
        Some(s) => theme::status_color(s),
        None => theme::idle_color(class == IDLE),
    }
}

/// The legend's word for a class, in the operator's language.
pub fn label(class: u8) -> String {
    match status_of(class) {
        Some(s) => status_label(s),
        None if class == IDLE => tr!("ui.tiles.idle"),
        None => tr!("ui.wall.offline"),
    }
}

/// The order of the legend: problems first (what a dock's operator looks for from across the
/// room), then progress, then devices in no campaign.
pub const LEGEND_ORDER: [u8; CLASSES] = [5, 6, 7, 2, 3, 1, 0, 4, 8, 9, IDLE, OFFLINE];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_class_has_its_own_colour_and_the_legend_names_each_once() {
        let colours: std::collections::BTreeSet<[u8; 4]> =
            (0..CLASSES as u8).map(|c| color(c).to_array()).collect();
        assert_eq!(colours.len(), CLASSES);
        let mut order = LEGEND_ORDER.to_vec();
        order.sort_unstable();
        assert_eq!(order, (0..CLASSES as u8).collect::<Vec<_>>());
        assert_eq!(status_of(LEGEND_ORDER[0]), Some(DeviceStatus::Failed));
        assert_eq!(class_of_status(DeviceStatus::Skipped), 9);
    }
}
