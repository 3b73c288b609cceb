//! The window's persisted preferences (theme, views, sort, last policy), stored by eframe
//! between runs. Separate from runtime state on purpose: nothing here mirrors the engine, and
//! every field has a default so an old or partial file still loads (`#[serde(default)]`).

use serde::{Deserialize, Serialize};

use super::filter::{DeviceFilter, Sort};
use super::profiles::BrokerProfile;
use crate::i18n::Lang;
use crate::rollout::Policy;

/// Key under which eframe's storage keeps [`Settings`].
pub const STORAGE_KEY: &str = "ota-console.settings";

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ThemeChoice {
    #[default]
    Dark,
    Light,
    /// Follow the operating system.
    System,
}

/// How the fleet is shown in the central area.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeviceView {
    #[default]
    Table,
    /// A wall of compact cards, readable on a projector.
    Tiles,
}

/// The form of the tile view: cards, or the wall (a few points per device) for a large fleet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum TileForm {
    /// Cards up to `ui::wall::WALL_ABOVE` shown devices, the wall above.
    #[default]
    Auto,
    Cards,
    Wall,
}

/// The tab of the bottom panel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum BottomTab {
    #[default]
    Inspector,
    Log,
    History,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub theme: ThemeChoice,
    pub view: DeviceView,
    /// Cards or the wall in the tile view.
    pub tile_form: TileForm,
    /// Show FogCloud sub-devices under their gateway and DJI drones under their dock.
    pub group_by_gateway: bool,
    pub sort: Sort,
    pub filter: DeviceFilter,
    /// The policy of the last campaign started, offered again.
    pub policy: Policy,
    pub bottom_tab: BottomTab,
    /// The bottom panel (inspector, log, history) is open; it opens on demand (a device or a
    /// tab clicked) and keeps its height (egui's own memory, persisted by eframe).
    pub bottom_open: bool,
    /// Inspector: follow every device's messages instead of the selected one.
    pub inspector_global: bool,
    /// Saved brokers (never with a password: see `ui::vault`).
    pub profiles: Vec<BrokerProfile>,
    /// The window's language; `None` follows the system locale.
    pub language: Option<Lang>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            theme: ThemeChoice::Dark,
            view: DeviceView::Table,
            tile_form: TileForm::Auto,
            group_by_gateway: true,
            sort: Sort::default(),
            filter: DeviceFilter::default(),
            policy: Policy::default(),
            bottom_tab: BottomTab::Inspector,
            bottom_open: false,
            inspector_global: false,
            profiles: Vec::new(),
            language: None,
        }
    }
}

impl Settings {
    /// Reads settings saved by an earlier run; anything unreadable falls back to the defaults
    /// (a settings file must never keep the window from opening).
    pub fn load(storage: Option<&dyn eframe::Storage>) -> Settings {
        storage
            .and_then(|s| eframe::get_value::<Settings>(s, STORAGE_KEY))
            .unwrap_or_default()
    }

    pub fn save(&self, storage: &mut dyn eframe::Storage) {
        eframe::set_value(storage, STORAGE_KEY, self);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_and_old_settings_fill_in() {
        let s: Settings =
            serde_json::from_str(r#"{"view":"Tiles","policy":{"wave_size":9},"unknown":1}"#)
                .unwrap();
        assert_eq!(s.view, DeviceView::Tiles);
        assert_eq!(s.tile_form, TileForm::Auto, "saved before the wall existed");
        assert_eq!(s.policy.wave_size, 9);
        assert_eq!(s.policy.max_in_flight, Policy::default().max_in_flight);
        assert!(s.group_by_gateway);
        let back: Settings = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn profiles_are_saved_without_any_password() {
        let s = Settings {
            profiles: vec![BrokerProfile {
                name: "plant".into(),
                url: "mqtts://broker.example.test".into(),
                username: "operator".into(),
                remember_password: true,
                ..BrokerProfile::default()
            }],
            ..Settings::default()
        };
        let text = serde_json::to_string(&s).unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        let profile = value["profiles"][0].as_object().unwrap();
        let mut keys: Vec<&str> = profile.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "ca_file",
                "client_cert",
                "client_id",
                "client_key",
                "name",
                "publish_connections",
                "remember_password",
                "url",
                "username"
            ]
        );
        let back: Settings = serde_json::from_str(&text).unwrap();
        assert_eq!(back, s);
        // Settings written before profiles existed still load.
        let old: Settings = serde_json::from_str(r#"{"view":"Table"}"#).unwrap();
        assert!(old.profiles.is_empty());
    }
}
