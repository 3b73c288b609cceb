//! What `main.rs` says itself, in the language in force (the binary cannot use the library's
//! `tr!`): the `error:` line every failed command ends with, once.

use std::fmt::Display;

use crate::i18n::tr;

/// `error: MESSAGE`, the one line a failed command prints about why.
pub fn error(message: &dyn Display) -> String {
    tr!("cli.error", message = message)
}

/// An error and its causes, outermost first, joined as the language joins clauses (`a: b` /
/// `a：b`): anyhow's `{:#}` with the separator of the language in force.
pub fn chain(error: &anyhow::Error) -> String {
    error
        .chain()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(&tr!("cli.chain_separator"))
}

/// A file of the dialects folder that was refused and skipped.
pub fn dialect_skipped(why: &dyn Display) -> String {
    tr!("cli.dialect_skipped", why = why)
}

pub fn no_runtime(why: &dyn Display) -> String {
    error(&tr!("cli.no_runtime", why = why))
}

pub fn no_window() -> String {
    tr!("cli.no_window")
}
