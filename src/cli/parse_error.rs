//! clap's parse errors (an unknown option, a missing value, an invalid value…) in the
//! operator's language, as one `error:` line with the fix: the option meant, the values there
//! are, or the command whose `--help` lists them.
//!
//! clap words its errors in English and offers no translation: this reads the error's kind
//! and its context (the argument, the value, the suggestion clap found) and says the same in
//! the language in force. Help and version "errors" are not errors: clap prints them itself.

use std::error::Error as _;

use clap::error::{ContextKind, ContextValue, ErrorKind};

use crate::i18n::tr;

/// Exit code of a parse error, as clap's own.
pub const EXIT_CODE: i32 = 2;

/// Prints `error` as clap would, in the language in force, and exits: help and version to
/// stdout with code 0 (clap's own printing), a parse error as one `error:` line with code 2.
/// `command` is the command whose `--help` the line points to ([`command_path`]).
pub fn exit(error: &clap::Error, command: &str) -> ! {
    if matches!(
        error.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        error.exit()
    }
    eprintln!("{}", render(error, command));
    std::process::exit(EXIT_CODE)
}

/// The one line (without its newline) that tells the operator what was wrong and how to fix
/// it: `error: unknown option '--frimware': did you mean '--firmware'? (see `ota-console
/// rollout --help`)`.
pub fn render(error: &clap::Error, command: &str) -> String {
    let line = tr!("clap.error.see_help", what = what(error), command = command);
    tr!("cli.error", message = line)
}

/// The command the arguments name, `ota-console rollout`: its subcommands as far as they go
/// (a value that happens to be a subcommand's name only changes which `--help` is pointed to).
pub fn command_path(root: &clap::Command, args: &[std::ffi::OsString]) -> String {
    let mut path = vec![root.get_name().to_owned()];
    let mut cmd = root;
    for arg in args.iter().skip(1) {
        if arg == "--" {
            break;
        }
        let Some(name) = arg.to_str() else { continue };
        if let Some(sub) = cmd.find_subcommand(name) {
            path.push(sub.get_name().to_owned());
            cmd = sub;
        }
    }
    path.join(" ")
}

fn string(error: &clap::Error, kind: ContextKind) -> Option<String> {
    match error.get(kind)? {
        ContextValue::String(s) => Some(s.clone()),
        ContextValue::Strings(list) if !list.is_empty() => Some(list.join(", ")),
        _ => None,
    }
}

fn strings(error: &clap::Error, kind: ContextKind) -> Vec<String> {
    match error.get(kind) {
        Some(ContextValue::String(s)) => vec![s.clone()],
        Some(ContextValue::Strings(list)) => list.clone(),
        _ => Vec::new(),
    }
}

fn number(error: &clap::Error, kind: ContextKind) -> Option<isize> {
    match error.get(kind)? {
        ContextValue::Number(n) => Some(*n),
        _ => None,
    }
}

/// `'a', 'b'` in the language's list style.
fn quoted_list(items: &[String]) -> String {
    items
        .iter()
        .map(|i| format!("'{i}'"))
        .collect::<Vec<_>>()
        .join(&tr!("cli.list_separator"))
}

/// What went wrong and what to do instead, without the pointer to `--help`.
fn what(error: &clap::Error) -> String {
    let arg = string(error, ContextKind::InvalidArg);
    let value = string(error, ContextKind::InvalidValue);
    match (error.kind(), arg, value) {
        (ErrorKind::UnknownArgument, Some(arg), _) => unknown_argument(error, &arg),
        (ErrorKind::InvalidSubcommand, _, _) => {
            let command = string(error, ContextKind::InvalidSubcommand).unwrap_or_default();
            let suggested = strings(error, ContextKind::SuggestedSubcommand);
            if suggested.is_empty() {
                tr!("clap.error.unknown_command", command = command)
            } else {
                tr!(
                    "clap.error.unknown_command_suggested",
                    command = command,
                    suggested = quoted_list(&suggested)
                )
            }
        }
        (ErrorKind::InvalidValue, Some(arg), Some(value)) if value.is_empty() => {
            tr!("clap.error.value_missing", arg = arg)
        }
        (ErrorKind::InvalidValue, Some(arg), Some(value)) => {
            let valid = strings(error, ContextKind::ValidValue);
            let suggested = strings(error, ContextKind::SuggestedValue);
            if !suggested.is_empty() {
                tr!(
                    "clap.error.invalid_value_suggested",
                    value = value,
                    arg = arg,
                    suggested = quoted_list(&suggested)
                )
            } else if valid.is_empty() {
                tr!("clap.error.invalid_value", value = value, arg = arg)
            } else {
                tr!(
                    "clap.error.invalid_value_valid",
                    value = value,
                    arg = arg,
                    valid = quoted_list(&valid)
                )
            }
        }
        (ErrorKind::ValueValidation, Some(arg), Some(value)) => {
            let why = error.source().map(reason).unwrap_or_default();
            tr!(
                "clap.error.value_refused",
                value = value,
                arg = arg,
                why = why
            )
        }
        (ErrorKind::MissingRequiredArgument, _, _) => {
            let missing = strings(error, ContextKind::InvalidArg);
            tr!("clap.error.missing", args = quoted_list(&missing))
        }
        (ErrorKind::MissingSubcommand, _, _) => {
            let command = string(error, ContextKind::InvalidSubcommand).unwrap_or_default();
            let valid = strings(error, ContextKind::ValidSubcommand);
            tr!(
                "clap.error.missing_command",
                command = command,
                valid = quoted_list(&valid)
            )
        }
        (ErrorKind::ArgumentConflict, Some(arg), _) => {
            let prior = strings(error, ContextKind::PriorArg);
            if prior.is_empty() || prior == [arg.clone()] {
                tr!("clap.error.given_twice", arg = arg)
            } else {
                tr!(
                    "clap.error.conflict",
                    arg = arg,
                    other = quoted_list(&prior)
                )
            }
        }
        (ErrorKind::NoEquals, Some(arg), _) => tr!("clap.error.no_equals", arg = arg),
        (ErrorKind::TooManyValues, Some(arg), Some(value)) => {
            tr!("clap.error.too_many_values", value = value, arg = arg)
        }
        (ErrorKind::TooFewValues | ErrorKind::WrongNumberOfValues, Some(arg), _) => {
            let expected = number(error, ContextKind::ExpectedNumValues)
                .or_else(|| number(error, ContextKind::MinValues))
                .unwrap_or_default();
            let given = number(error, ContextKind::ActualNumValues).unwrap_or_default();
            tr!(
                "clap.error.value_count",
                arg = arg,
                expected = expected,
                given = given
            )
        }
        (ErrorKind::InvalidUtf8, _, _) => tr!("clap.error.not_utf8"),
        _ => raw_message(error),
    }
}

/// An unknown option, with the option meant when clap found one, or the subcommand that has
/// it, or how to pass it as a value.
fn unknown_argument(error: &clap::Error, arg: &str) -> String {
    if let Some(suggested) = string(error, ContextKind::SuggestedArg) {
        return tr!(
            "clap.error.unknown_option_suggested",
            arg = arg,
            suggested = suggested
        );
    }
    // clap's other hints are worded sentences; their shape says which one it is.
    let hints: Vec<String> = match error.get(ContextKind::Suggested) {
        Some(ContextValue::StyledStrs(hints)) => hints.iter().map(ToString::to_string).collect(),
        _ => Vec::new(),
    };
    for hint in &hints {
        // "'rollout --firmware' exists": the option belongs to a subcommand.
        if let Some(usage) = hint
            .strip_prefix('\'')
            .and_then(|h| h.strip_suffix("' exists"))
        {
            return tr!("clap.error.option_of_command", arg = arg, usage = usage);
        }
        // "to pass '-5' as a value, use '-- -5'".
        if hint.starts_with("to pass '") {
            return tr!("clap.error.option_as_value", arg = arg);
        }
        // "subcommand 'x' exists; to use it, remove the '--' before it".
        if hint.starts_with("subcommand '") {
            return tr!("clap.error.double_dash", arg = arg);
        }
    }
    tr!("clap.error.unknown_option", arg = arg)
}

/// Why a value was refused: the parser's own words when they are the console's (said in the
/// language in force), else what the value should look like, for the parsers of std and
/// humantime, whose messages are terse English (`invalid digit found in string`).
fn reason(source: &(dyn std::error::Error + 'static)) -> String {
    if source.is::<std::net::AddrParseError>() {
        return tr!("clap.error.expected_address");
    }
    if source.is::<humantime::DurationError>() {
        return tr!("clap.error.expected_duration");
    }
    if source.is::<std::num::ParseIntError>() {
        return tr!("clap.error.expected_number");
    }
    if source.is::<std::num::ParseFloatError>() {
        return tr!("clap.error.expected_decimal");
    }
    let text = source.to_string();
    // clap's ranged integers: "0 is not in 1..=4294967295".
    if let Some((_, range)) = text.split_once(" is not in ") {
        let range = range.trim();
        return match range.split_once("..=") {
            Some((low, high)) if high == u64::MAX.to_string() || high == u32::MAX.to_string() => {
                tr!("clap.error.expected_at_least", low = low)
            }
            Some((low, high)) => tr!("clap.error.expected_range", low = low, high = high),
            None => match range.strip_suffix("..") {
                Some(low) => tr!("clap.error.expected_at_least", low = low),
                None => text.clone(),
            },
        };
    }
    text
}

/// An error the program raised itself (`clap::Error::raw`): its message, without clap's
/// `error: ` prefix and the usage clap may append.
fn raw_message(error: &clap::Error) -> String {
    let text = error.render().to_string();
    let text = text.trim();
    let text = text.strip_prefix("error: ").unwrap_or(text);
    // Usage and the pointer to --help follow a blank line.
    text.split("\n\n").next().unwrap_or(text).trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::i18n::{Lang, ThreadLang};

    fn os(args: &[&str]) -> Vec<std::ffi::OsString> {
        args.iter().map(Into::into).collect()
    }

    #[test]
    fn the_help_pointed_to_is_the_subcommands() {
        use clap::CommandFactory;
        let cmd = crate::cli::args::Cli::command();
        assert_eq!(
            command_path(&cmd, &os(&["ota-console", "rollout", "--frimware"])),
            "ota-console rollout"
        );
        assert_eq!(
            command_path(&cmd, &os(&["ota-console", "rolout"])),
            "ota-console"
        );
        // After `--` everything is a value.
        assert_eq!(
            command_path(&cmd, &os(&["ota-console", "--", "devices"])),
            "ota-console"
        );
    }

    #[test]
    fn clap_ranges_are_said_as_bounds() {
        #[derive(Debug)]
        struct Text(&'static str);
        impl std::fmt::Display for Text {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.0)
            }
        }
        impl std::error::Error for Text {}
        let _en = ThreadLang::new(Lang::En);
        assert_eq!(
            reason(&Text("0 is not in 1..=4294967295")),
            "give a number of at least 1"
        );
        assert_eq!(
            reason(&Text("70000 is not in 1..=65535")),
            "give a number from 1 to 65535"
        );
        assert_eq!(reason(&Text("something else")), "something else");
        drop(_en);
        let _zh = ThreadLang::new(Lang::ZhCn);
        assert_eq!(
            reason(&Text("0 is not in 1..=4294967295")),
            "请给出不小于 1 的数"
        );
    }
}
