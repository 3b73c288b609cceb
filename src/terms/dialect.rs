//! The words of a dialect's data in the language in force. A dialect's `NoticeSetting`s,
//! choices, label and `ErrorTable` meanings are English `&'static str` data; their Chinese
//! lives in `locales/dialects.toml` under keys derived from the dialect's id:
//! `dialect.<id>.label`, `dialect.<id>.setting.<key>.{label,help}`,
//! `dialect.<id>.setting.<key>.choice.<value>`, `dialect.<id>.error.<code>`,
//! `dialect.<id>.error_format`, `dialect.<id>.error_unknown`, `dialect.<id>.cancel_{note,detail}`.
//!
//! A text without a key shows its English data as it is: a dialect read from a TOML file
//! speaks the words of its file in every language (its author writes them in the language
//! the operators read).

use std::borrow::Cow;

use crate::device_id::DialectId;
use crate::i18n::dialect_text;
use crate::protocol::{Choice, ErrorTable, NoticeSetting};

pub fn label(id: DialectId) -> Cow<'static, str> {
    dialect_text(&format!("dialect.{}.label", id.as_str()), id.label())
}

pub fn setting_label(id: DialectId, setting: &'static NoticeSetting) -> Cow<'static, str> {
    dialect_text(&setting_key(id, setting, "label"), setting.label)
}

pub fn setting_help(id: DialectId, setting: &'static NoticeSetting) -> Cow<'static, str> {
    dialect_text(&setting_key(id, setting, "help"), setting.help)
}

pub fn choice_label(
    id: DialectId,
    setting: &'static NoticeSetting,
    choice: &'static Choice,
) -> Cow<'static, str> {
    let key = format!(
        "dialect.{}.setting.{}.choice.{}",
        id.as_str(),
        setting.key,
        choice.value
    );
    dialect_text(&key, choice.label)
}

/// The key of a setting's label or help.
pub fn setting_key(id: DialectId, setting: &NoticeSetting, what: &str) -> String {
    format!("dialect.{}.setting.{}.{what}", id.as_str(), setting.key)
}

/// What `code` means in the dialect's table, if it has it.
pub fn meaning(id: DialectId, table: &'static ErrorTable, code: i64) -> Option<Cow<'static, str>> {
    let english = table.meaning(code)?;
    Some(dialect_text(
        &format!("dialect.{}.error.{code}", id.as_str()),
        english,
    ))
}

/// [`ErrorTable::describe`] in the language in force.
pub fn describe(id: DialectId, table: &'static ErrorTable, code: i64) -> String {
    let (pattern, text) = match meaning(id, table, code) {
        Some(text) => (
            dialect_text(
                &format!("dialect.{}.error_format", id.as_str()),
                table.format,
            ),
            text,
        ),
        None => (
            dialect_text(
                &format!("dialect.{}.error_unknown", id.as_str()),
                table.unknown,
            ),
            Cow::Borrowed(""),
        ),
    };
    pattern
        .replace("{code}", &code.to_string())
        .replace("{text}", &text)
}

/// A dialect's note that a cancel cannot recall its notices (`CancelSupport::CannotRecall`),
/// and its detail.
pub fn cancel_note(
    id: DialectId,
    note: &'static str,
    detail: &'static str,
) -> (Cow<'static, str>, Cow<'static, str>) {
    (
        dialect_text(&format!("dialect.{}.cancel_note", id.as_str()), note),
        dialect_text(&format!("dialect.{}.cancel_detail", id.as_str()), detail),
    )
}
