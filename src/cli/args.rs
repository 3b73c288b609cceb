//! The top-level command line: the window (no subcommand) or one of the headless commands.

use std::ffi::OsString;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use super::broker::BrokerArgs;
use super::broker_config::BrokerConfigArgs;
use super::connection::ConnectionArgs;
use super::devices::DevicesArgs;
use super::hash::HashArgs;
use super::rollout::RolloutArgs;
use super::sim::SimArgs;
use crate::i18n::{self, Lang, tr};
use crate::protocol::registry;

// The about line names the registered dialects.
#[derive(Debug, Parser)]
#[command(name = "ota-console", version, about = about(), long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Connection options of the window (each command has its own).
    #[command(flatten)]
    pub connection: ConnectionArgs,

    /// Also start a simulated mixed fleet in-process, for demos without hardware.
    #[arg(long)]
    pub demo: bool,

    /// A dialect described in a file (TOML; see the README, "Dialects from a file");
    /// repeatable. Every `*.toml` of the data dir's `dialects/` folder is loaded too.
    // Read before clap by `cli::dialects::prescan` (the command line depends on the dialects);
    // declared here so it shows in `--help` and parses everywhere.
    #[arg(long = "dialect-file", global = true, value_name = "FILE")]
    pub dialect_files: Vec<std::path::PathBuf>,

    /// Log filter (tracing `EnvFilter` syntax); `RUST_LOG` overrides it. Given either way,
    /// the log is printed with timestamps and sources, for developers.
    #[arg(long, global = true, value_name = "FILTER", default_value = super::log::DEFAULT_FILTER)]
    pub log: String,

    /// Language of the window and the messages: en or zh-CN (default: the system locale,
    /// LC_ALL / LC_MESSAGES / LANG; the window's own choice when it has one).
    // Read before clap by `prescan_lang` (the help is printed in it); declared here so it
    // shows in `--help` and parses everywhere.
    #[arg(long, global = true, value_name = "LANG")]
    pub lang: Option<Lang>,
}

/// The flag choosing the language.
const LANG_FLAG: &str = "--lang";

/// `--lang L` or `--lang=L` from the raw arguments (up to a `--`), read before clap so that
/// `--help` is printed in it. A value that names no language is left for clap to refuse.
pub fn prescan_lang(args: &[OsString]) -> Option<Lang> {
    let mut rest = args.iter().skip(1);
    while let Some(arg) = rest.next() {
        if arg == "--" {
            break;
        }
        let Some(text) = arg.to_str() else { continue };
        let value = if text == LANG_FLAG {
            rest.next().and_then(|v| v.to_str())
        } else {
            text.strip_prefix(LANG_FLAG)
                .and_then(|v| v.strip_prefix('='))
        };
        if let Some(lang) = value.and_then(Lang::parse) {
            return Some(lang);
        }
    }
    None
}

/// Parses the command line in the language in force (help and about lines translated by
/// `cli::help`); exits as clap does on `--help` and `--version`, and on a mistake with one
/// `error:` line in that language (`cli::parse_error`), code 2.
pub fn parse(args: Vec<OsString>) -> Cli {
    let mut cmd = super::help::localize(Cli::command());
    let parsed = cmd
        .try_get_matches_from_mut(args.clone())
        .and_then(|matches| Cli::from_arg_matches(&matches));
    parsed.unwrap_or_else(|e| {
        let command = super::parse_error::command_path(&cmd, &args);
        super::parse_error::exit(&e, &command)
    })
}

/// "Push firmware over MQTT to fleets of … devices", with every registered dialect.
fn about() -> String {
    let labels: Vec<&str> = registry::ids().into_iter().map(|id| id.label()).collect();
    let fleets = match labels.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        _ => labels.join(""),
    };
    if i18n::lang() == Lang::En {
        return format!("Push firmware over MQTT to fleets of {fleets} devices.");
    }
    let labels: Vec<_> = registry::ids()
        .into_iter()
        .map(crate::terms::dialect::label)
        .collect();
    tr!(
        "cli.about",
        fleets = labels.join(&tr!("cli.list_separator"))
    )
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Roll a firmware out to devices, headless.
    Rollout(Box<RolloutArgs>),
    /// Run simulated devices of every dialect.
    Sim(SimArgs),
    /// List the devices discovered on the broker.
    Devices(DevicesArgs),
    /// Print a firmware file's size, MD5, SHA-256 and FogCloud checksum.
    Hash(HashArgs),
    /// Run the embedded MQTT broker alone.
    Broker(BrokerArgs),
    /// Import Alibaba device secrets; write Mosquitto password, ACL and config files.
    BrokerConfig(BrokerConfigArgs),
}
