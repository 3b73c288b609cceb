//! `ota-console`: parses the command line, builds the tokio runtime and runs the window or one
//! headless command. Everything else lives in the library.

#![forbid(unsafe_code)]

use std::process::ExitCode;

use ota_console::cli::args::{self, Cli, Command};
use ota_console::cli::log;
use ota_console::cli::rollout::Outcome;
use ota_console::i18n;
use tracing_subscriber::EnvFilter;

/// Exit code for bad usage or configuration (clap uses it for parse errors too).
const USAGE_ERROR: u8 = 2;
/// `rollout`: another console on the broker holds the campaign (the campaign lock).
const HELD_ELSEWHERE: u8 = 3;

fn main() -> ExitCode {
    // Dialect files first: the command line clap builds is generated from the registry.
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // The language before anything is said: `--lang`, else the system locale.
    let chosen_lang = args::prescan_lang(&argv);
    i18n::set(chosen_lang.unwrap_or_else(i18n::from_system));
    let dialects = ota_console::cli::dialects::load(&argv);
    // Said before clap parses: `--help` exits there, and logging starts only after it.
    for e in &dialects.skipped {
        eprintln!("{}", ota_console::cli::words::dialect_skipped(e));
    }
    for e in &dialects.failed {
        eprintln!("{}", ota_console::cli::words::error(e));
    }
    let cli = args::parse(argv);
    init_logging(&cli.log);
    // A file named on the command line is wanted: a headless command stops; the window starts
    // and lists the error with the loaded dialects.
    if !dialects.failed.is_empty() && cli.command.is_some() {
        return ExitCode::from(USAGE_ERROR);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("ota-console-io")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{}", ota_console::cli::words::no_runtime(&e));
            return ExitCode::from(USAGE_ERROR);
        }
    };
    let result = match cli.command {
        Some(Command::Rollout(args)) => {
            match runtime.block_on(ota_console::cli::rollout::run(&args)) {
                Ok(Outcome::AllSucceeded) => Ok(()),
                Ok(Outcome::SomeFailed) => return ExitCode::from(1),
                Ok(Outcome::HeldElsewhere) => return ExitCode::from(HELD_ELSEWHERE),
                Err(e) => Err(e),
            }
        }
        Some(Command::Sim(args)) => runtime.block_on(ota_console::cli::sim::run(args)),
        Some(Command::Devices(args)) => runtime.block_on(ota_console::cli::devices::run(&args)),
        Some(Command::Hash(args)) => ota_console::cli::hash::run(&args),
        Some(Command::Broker(args)) => runtime.block_on(ota_console::cli::broker::run(&args)),
        Some(Command::BrokerConfig(args)) => ota_console::cli::broker_config::run(&args),
        None => window(&runtime, &cli, chosen_lang),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let words = ota_console::cli::words::chain(&e);
            eprintln!("{}", ota_console::cli::words::error(&words));
            ExitCode::from(USAGE_ERROR)
        }
    }
}

#[cfg(not(feature = "gui"))]
fn window(
    _runtime: &tokio::runtime::Runtime,
    _cli: &Cli,
    _lang: Option<i18n::Lang>,
) -> anyhow::Result<()> {
    anyhow::bail!(ota_console::cli::words::no_window())
}

#[cfg(feature = "gui")]
fn window(
    runtime: &tokio::runtime::Runtime,
    cli: &Cli,
    lang: Option<i18n::Lang>,
) -> anyhow::Result<()> {
    ota_console::cli::window::run(runtime, &cli.connection, cli.demo, lang)
}

fn init_logging(given_filter: &str) {
    // A filter someone gave (RUST_LOG, --log) asks for the developer's format.
    let given = std::env::var_os("RUST_LOG").is_some() || given_filter != log::DEFAULT_FILTER;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(given_filter))
        .unwrap_or_else(|_| EnvFilter::new(log::DEFAULT_FILTER))
        .add_directive(
            ota_console::transport::broker::QUIET_LOG_DIRECTIVE
                .parse()
                .unwrap_or_default(),
        );
    // The windowing crates' own warnings are for their developers (see `QUIET_FOR_PEOPLE`).
    let filter = if given {
        filter
    } else {
        log::QUIET_FOR_PEOPLE
            .iter()
            .filter_map(|d| d.parse().ok())
            .fold(filter, EnvFilter::add_directive)
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal: logs piped to a file or journal stay plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if given {
        builder.init();
    } else {
        builder.event_format(log::PeopleFormat).init();
    }
}
