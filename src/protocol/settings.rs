//! Per-campaign choices that shape a dialect's notices: the [`NoticeSetting`](crate::protocol::NoticeSetting)s a dialect declares
//! (with their labels for the window and flags for the CLI) and the [`SettingValues`] a campaign
//! chose for one dialect.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One per-campaign choice of a dialect's notices.
#[derive(Debug)]
pub struct NoticeSetting {
    /// Key in the campaign's settings (unique within the dialect).
    pub key: &'static str,
    /// Label in the window (names the dialect, e.g. "DJI upgrade type").
    pub label: &'static str,
    /// Hover text in the window and the CLI flag's help.
    pub help: &'static str,
    /// The CLI flag, without dashes (unique over all dialects).
    pub cli_flag: &'static str,
    /// The key this setting had in campaigns stored before settings were kept per dialect.
    pub legacy_key: Option<&'static str>,
    pub choices: &'static [Choice],
    /// The value used when the campaign does not say.
    pub default: &'static str,
}

impl NoticeSetting {
    /// The choice `value` names (its value or one of its aliases, ignoring case).
    pub fn choice(&self, value: &str) -> Option<&'static Choice> {
        self.choices.iter().find(|c| {
            c.value.eq_ignore_ascii_case(value)
                || c.aliases.iter().any(|a| a.eq_ignore_ascii_case(value))
        })
    }
}

#[derive(Debug)]
pub struct Choice {
    /// Stored and given on the command line.
    pub value: &'static str,
    /// Shown in the window.
    pub label: &'static str,
    /// Other spellings accepted when reading (older stored campaigns, CLI shorthands).
    pub aliases: &'static [&'static str],
}

/// The values of a dialect's notice settings for one campaign: setting key → choice value.
/// Settings not given take the setting's default.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SettingValues(pub BTreeMap<String, String>);

impl SettingValues {
    /// The value of `setting`, or its default.
    pub fn value_of(&self, setting: &NoticeSetting) -> &'static str {
        self.0
            .get(setting.key)
            .and_then(|v| setting.choice(v))
            .map_or(setting.default, |c| c.value)
    }
}
