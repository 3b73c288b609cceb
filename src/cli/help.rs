//! The command line in the operator's language: clap's derive doc comments are English and
//! fixed at compile time, so the built `Command` is walked at run time and every about line,
//! argument help and heading replaced by its text in `locales/cli_help.toml`.
//!
//! Keys: `help.<path>.about` for a command and `help.<path>.<arg id>` for an argument, where
//! `<path>` is `ota-console` and the subcommand names (`help.ota-console.rollout.firmware`);
//! a global argument is looked up at the root. A notice-setting flag, generated from a
//! dialect's data, takes its words from the dialect's keys (`dialect.<id>.setting.<key>.help`,
//! see [`crate::i18n::dialect_text`]): a dialect read from a file keeps its own words. What
//! clap itself prints around them (headings, `[default: …]`, the help and version flags) is
//! replaced too; clap's parse errors are said by `cli::parse_error`.
//!
//! In English nothing is changed: the doc comments are the English texts.

use clap::{Arg, ArgAction, Command};

use crate::i18n::{self, Lang, tr};
use crate::protocol::registry;

/// The root command's name in the keys.
pub const ROOT: &str = "ota-console";

/// `cmd` (the whole command line, not yet built) in the language in force.
pub fn localize(mut cmd: Command) -> Command {
    if i18n::lang() == Lang::En {
        return cmd;
    }
    // Built first: clap adds the help and version flags and the `help` subcommand while
    // building, and propagates global arguments; all of them are then translated in place.
    cmd.build();
    let shared = SharedHelps::of(&cmd);
    localize_command(cmd, ROOT, &shared)
}

/// The root's arguments and their English help: an argument of a subcommand with the same id
/// and the same English (the flattened connection options, the global flags) shares the
/// root's key.
pub struct SharedHelps(std::collections::HashMap<String, String>);

impl SharedHelps {
    pub fn of(root: &Command) -> SharedHelps {
        SharedHelps(
            root.get_arguments()
                .filter_map(|a| Some((a.get_id().to_string(), a.get_help()?.to_string())))
                .collect(),
        )
    }
}

fn localize_command(cmd: Command, path: &str, shared: &SharedHelps) -> Command {
    let about = format!("help.{path}.about");
    let mut cmd = cmd
        .help_template(tr!("clap.template"))
        .subcommand_help_heading(tr!("clap.commands"));
    if let Some(text) = translated(&about) {
        cmd = cmd.about(text).long_about(None::<&str>);
    }
    let cmd = cmd.mut_args(|arg| localize_arg(arg, path, shared));
    cmd.mut_subcommands(|sub| {
        let sub_path = sub_path(path, sub.get_name());
        localize_command(sub, &sub_path, shared)
    })
}

/// The `help` subcommand's path; its children are copies of the commands and share their keys.
const HELP_PATH: &str = "ota-console.help";

/// The key path of subcommand `name` of the command at `path`.
pub fn sub_path(path: &str, name: &str) -> String {
    if path == HELP_PATH {
        format!("{ROOT}.{name}")
    } else {
        format!("{path}.{name}")
    }
}

/// Arguments whose help `cli::rollout` builds in the language in force.
const COMPUTED: [&str; 3] = ["targets", "ack_window", "description"];

/// Whether the help of argument `id` at `path` is built in the language in force, so it has
/// no key of its own.
pub fn is_computed(path: &str, id: &str) -> bool {
    path == "ota-console.rollout" && COMPUTED.contains(&id)
}

/// Whether `arg` is clap's own help or version flag.
pub fn is_clap_flag(arg: &Arg) -> bool {
    matches!(
        arg.get_action(),
        ArgAction::Help | ArgAction::HelpShort | ArgAction::HelpLong | ArgAction::Version
    )
}

fn localize_arg(arg: Arg, path: &str, shared: &SharedHelps) -> Arg {
    let id = arg.get_id().as_str().to_owned();
    let help = match (arg.get_action(), id.as_str()) {
        (ArgAction::Version, _) => Some(tr!("clap.version_flag")),
        _ if is_clap_flag(&arg) => Some(tr!("clap.help_flag")),
        (_, "subcommand") if path == HELP_PATH => Some(tr!("clap.help_subcommand_arg")),
        // Helps built in the language in force (they list the registered dialects).
        _ if is_computed(path, &id) => None,
        _ => arg
            .get_help()
            .map(|english| arg_key(path, &id, &english.to_string(), shared))
            .and_then(|key| translated(&key)),
    };
    let mut arg = match help {
        Some(text) => {
            let text = with_specs(&arg, text);
            arg.help(text).long_help(None::<&str>)
        }
        None => arg,
    };
    if arg.get_help_heading().is_none() {
        let heading = if arg.is_positional() {
            tr!("clap.arguments")
        } else {
            tr!("clap.options")
        };
        arg = arg.help_heading(heading);
    } else if arg.get_help_heading() == Some(super::rollout::SETTINGS_HEADING) {
        arg = arg.help_heading(tr!("clap.notice_settings"));
    }
    arg.hide_default_value(true)
        .hide_possible_values(true)
        .hide_env(true)
}

/// The key of the help of argument `id` of the command at `path`, whose English is
/// `english`: the dialect's for a notice-setting flag, the root's for an argument the root has
/// with the same words, else its own.
pub fn arg_key(path: &str, id: &str, english: &str, shared: &SharedHelps) -> String {
    if let Some(key) = setting_key(id) {
        return key;
    }
    if shared.0.get(id).is_some_and(|root| root == english) {
        return format!("help.{ROOT}.{id}");
    }
    format!("help.{path}.{id}")
}

/// A notice-setting flag's help key: `dialect.<id>.setting.<key>.help`.
fn setting_key(flag: &str) -> Option<String> {
    registry::all().into_iter().find_map(|d| {
        d.notice_settings()
            .iter()
            .find(|s| s.cli_flag == flag)
            .map(|s| format!("dialect.{}.setting.{}.help", d.id().as_str(), s.key))
    })
}

fn translated(key: &str) -> Option<String> {
    let lang = i18n::lang();
    i18n::text_of(lang, key)
}

/// `text` followed by what clap would have appended in English: the default, the possible
/// values, the environment variable.
fn with_specs(arg: &Arg, text: String) -> String {
    let mut specs = Vec::new();
    if let Some(env) = arg.get_env() {
        specs.push(tr!("clap.env", name = env.to_string_lossy()));
    }
    let defaults: Vec<String> = arg
        .get_default_values()
        .iter()
        .map(|v| v.to_string_lossy().into_owned())
        .filter(|v| !v.is_empty())
        .collect();
    if !defaults.is_empty() && arg.get_action().takes_values() {
        specs.push(tr!("clap.default", value = defaults.join(", ")));
    }
    let values: Vec<String> = arg
        .get_possible_values()
        .iter()
        .filter(|v| !v.is_hide_set())
        .map(|v| v.get_name().to_owned())
        .collect();
    if !values.is_empty() && arg.get_action().takes_values() {
        specs.push(tr!("clap.possible_values", values = values.join(", ")));
    }
    if specs.is_empty() {
        text
    } else {
        format!("{text} {}", specs.join(" "))
    }
}
