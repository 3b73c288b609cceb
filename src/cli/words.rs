//! What `main.rs` says itself, in the language in force (the binary cannot use the library's
//! `tr!`): the `error:` line every failed command ends with, once.

use std::fmt::Display;

use crate::i18n::tr;

/// `error: MESSAGE`, the one line a failed command prints about why.
pub fn error(message: &dyn Display) -> String {
    tr!("cli.error", message = message)
}

/// An error and its causes, outermost first, joined as the language joins clauses (`a: b` /
/// `a：b`): anyhow's `{:#}` with the separator of the language in force. A cause already said
/// by the message around it (an error that words its source and also returns it as
/// `source()`) is said once.
pub fn chain(error: &anyhow::Error) -> String {
    let separator = tr!("cli.chain_separator");
    let mut said = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if said.contains(&text) {
            continue;
        }
        if !said.is_empty() {
            said.push_str(&separator);
        }
        said.push_str(&text);
    }
    said
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::i18n::{Lang, ThreadLang};

    #[derive(Debug, thiserror::Error)]
    #[error("{path}: {source}")]
    struct Worded {
        path: &'static str,
        #[source]
        source: std::io::Error,
    }

    #[test]
    fn a_cause_is_said_once_and_joined_in_the_language() {
        let worded = Worded {
            path: "/x.csv",
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        };
        let error = anyhow::Error::new(worded).context("importing");
        let _en = ThreadLang::new(Lang::En);
        assert_eq!(chain(&error), "importing: /x.csv: no such file");
        drop(_en);
        let _zh = ThreadLang::new(Lang::ZhCn);
        assert_eq!(chain(&error), "importing：/x.csv: no such file");
    }
}
