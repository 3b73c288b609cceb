//! Per-campaign choices that shape a dialect's notices: the [`NoticeSetting`](crate::protocol::NoticeSetting)s a dialect declares
//! (with their labels for the window and flags for the CLI) and the [`SettingValues`] a campaign
//! chose for one dialect. A setting is one of a fixed list of choices, or free text the
//! dialect validates (a template, say), which the CLI reads from a file and the window edits.

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
    pub kind: SettingKind,
    /// The value used when the campaign does not say (for a text setting, what "empty" means
    /// is the dialect's: its built-in behaviour).
    pub default: &'static str,
}

/// What values a setting takes.
#[derive(Debug)]
pub enum SettingKind {
    /// One of these.
    Choice(&'static [Choice]),
    /// Free text, checked by the dialect when it is given (so a campaign never starts with a
    /// value its notices could not be built from).
    Text(TextSetting),
}

/// A free-text setting.
#[derive(Debug)]
pub struct TextSetting {
    /// `Err` says, in words, what is wrong with the text (with its line when it has one).
    pub validate: fn(&str) -> Result<(), String>,
    /// Edited in a multi-line field in the window, and given on the command line as a FILE
    /// whose contents are the value.
    pub multiline: bool,
}

impl NoticeSetting {
    /// The choices of a choice setting (none for a text setting).
    pub fn choices(&self) -> &'static [Choice] {
        match self.kind {
            SettingKind::Choice(choices) => choices,
            SettingKind::Text(_) => &[],
        }
    }

    /// The text setting's rules, if it is one.
    pub fn text(&self) -> Option<&TextSetting> {
        match &self.kind {
            SettingKind::Text(text) => Some(text),
            SettingKind::Choice(_) => None,
        }
    }

    /// The choice `value` names (its value or one of its aliases, ignoring case).
    pub fn choice(&self, value: &str) -> Option<&'static Choice> {
        self.choices().iter().find(|c| {
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
    /// The value of choice `setting`, or its default.
    pub fn value_of(&self, setting: &NoticeSetting) -> &'static str {
        self.0
            .get(setting.key)
            .and_then(|v| setting.choice(v))
            .map_or(setting.default, |c| c.value)
    }

    /// The text of text `setting`, or its default (a stored text that no longer passes the
    /// setting's check counts as not given).
    pub fn text_of<'s>(&'s self, setting: &NoticeSetting) -> &'s str {
        self.0
            .get(setting.key)
            .filter(|v| setting.text().is_some_and(|t| (t.validate)(v).is_ok()))
            .map_or(setting.default, String::as_str)
    }
}
