//! Issue #15: no string lacks a translation. Checks `locales/*.toml` against the code:
//! - every key of the message files has English and Chinese, non-empty, with the same
//!   `%{placeholders}`;
//! - every `tr!("key"…)` in `src/` names a key that has both, and every key is used;
//! - every command and argument of the command line (walked as clap builds it, with the
//!   dialects' generated flags) has its Chinese help in `locales/cli_help.toml`, and every key
//!   there names a command or argument that exists;
//! - every built-in dialect's label, notice settings, choices and error meanings have their
//!   Chinese in `locales/dialects.toml`;
//! - the files converted to `tr!` hold no user-visible English literal (a label, button,
//!   hover text, heading or a printed/bailed message given as a plain string).

#![cfg(test)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use ota_console::cli::args::Cli;
use ota_console::cli::help::{self, SharedHelps};
use ota_console::i18n::{self, Lang};
use ota_console::protocol::registry;

/// Files whose English is data elsewhere: they carry Chinese only.
const TRANSLATION_ONLY: [&str; 2] = ["cli_help.toml", "dialects.toml"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// key → (locale → text), per file.
fn locale_files() -> BTreeMap<String, BTreeMap<String, BTreeMap<String, String>>> {
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(root().join("locales")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let table: toml::Table =
            toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut keys = BTreeMap::new();
        for (key, value) in table {
            if key == "_version" {
                continue;
            }
            let texts = value
                .as_table()
                .unwrap_or_else(|| panic!("{}: {key} is not a table of texts", path.display()))
                .iter()
                .map(|(l, t)| (l.clone(), t.as_str().unwrap_or_default().to_owned()))
                .collect();
            keys.insert(key, texts);
        }
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        files.insert(name, keys);
    }
    files
}

fn placeholders(text: &str) -> BTreeSet<String> {
    text.split("%{")
        .skip(1)
        .filter_map(|rest| rest.split_once('}').map(|(name, _)| name.to_owned()))
        .collect()
}

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rs_files(&path, out);
        } else if path.extension().and_then(|e| e.to_str()) == Some("rs") {
            out.push(path);
        }
    }
}

/// Every `tr!("key"` in `src/` (the key may be on the next line), with where it is. Comments
/// are skipped (the macro's own documentation shows it).
fn used_keys() -> BTreeMap<String, String> {
    let mut files = Vec::new();
    rs_files(&root().join("src"), &mut files);
    let mut keys = BTreeMap::new();
    for file in files {
        let text: String = std::fs::read_to_string(&file)
            .unwrap()
            .lines()
            .map(|l| {
                if l.trim_start().starts_with("//") {
                    ""
                } else {
                    l
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        let mut from = 0;
        while let Some(found) = text[from..].find("tr!(") {
            let at = from + found;
            from = at + 4;
            // `include_str!(` ends in `tr!(` too: only the macro itself counts.
            if text[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let Some(rest) = text[from..].trim_start().strip_prefix('"') else {
                continue;
            };
            if let Some((key, _)) = rest.split_once('"') {
                let line = text[..at].matches('\n').count() + 1;
                keys.insert(key.to_owned(), format!("{}:{line}", file.display()));
            }
        }
    }
    keys
}

#[test]
fn every_message_has_every_language_with_the_same_placeholders() {
    let files = locale_files();
    assert!(files.len() >= 3, "{:?}", files.keys());
    let mut problems = Vec::new();
    let mut count = 0;
    for (file, keys) in &files {
        let only_zh = TRANSLATION_ONLY.contains(&file.as_str());
        for (key, texts) in keys {
            count += 1;
            let wanted: &[&str] = if only_zh {
                &["zh-CN"]
            } else {
                &["en", "zh-CN"]
            };
            for lang in wanted {
                match texts.get(*lang) {
                    Some(t) if !t.trim().is_empty() => {}
                    _ => problems.push(format!("{file}: {key} has no {lang} text")),
                }
            }
            if let (Some(en), Some(zh)) = (texts.get("en"), texts.get("zh-CN"))
                && placeholders(en) != placeholders(zh)
            {
                problems.push(format!(
                    "{file}: {key}: placeholders differ: {en:?} / {zh:?}"
                ));
            }
            if only_zh && texts.contains_key("en") {
                problems.push(format!("{file}: {key}: English here would hide the code's"));
            }
            // The compiled-in table has it too (the build read the same file).
            for lang in wanted {
                let lang = if *lang == "en" { Lang::En } else { Lang::ZhCn };
                if !i18n::has_text(lang, key) {
                    problems.push(format!("{file}: {key} is not compiled in for {lang}"));
                }
            }
        }
    }
    assert!(count > 50, "only {count} keys");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_key_the_code_uses_exists_and_every_key_is_used() {
    let files = locale_files();
    let used = used_keys();
    assert!(used.len() > 50, "only {} tr! calls found", used.len());
    let mut problems = Vec::new();
    for (key, at) in &used {
        for lang in Lang::ALL {
            if !i18n::has_text(lang, key) {
                problems.push(format!("{at}: tr!(\"{key}\") has no {lang} text"));
            }
        }
    }
    for (file, keys) in &files {
        if TRANSLATION_ONLY.contains(&file.as_str()) {
            continue;
        }
        for key in keys.keys() {
            if !used.contains_key(key) {
                problems.push(format!("{file}: {key} is used by no tr!"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Every (key, English) of the command line: commands' about lines and arguments' helps.
fn command_line_texts() -> Vec<(String, String)> {
    let mut cmd = Cli::command();
    cmd.build();
    let mut out = Vec::new();
    let shared = SharedHelps::of(&cmd);
    walk(&cmd, ota_console::cli::help::ROOT, &shared, &mut out);
    out
}

fn walk(cmd: &clap::Command, path: &str, shared: &SharedHelps, out: &mut Vec<(String, String)>) {
    if path != ota_console::cli::help::ROOT
        && let Some(about) = cmd.get_about()
    {
        out.push((format!("help.{path}.about"), about.to_string()));
    }
    for arg in cmd.get_arguments() {
        let id = arg.get_id().as_str();
        if arg.is_hide_set() || help::is_clap_flag(arg) || help::is_computed(path, id) {
            continue;
        }
        if path == "ota-console.help" && id == "subcommand" {
            continue;
        }
        let Some(help) = arg.get_help() else { continue };
        let help = help.to_string();
        out.push((
            ota_console::cli::help::arg_key(path, id, &help, shared),
            help,
        ));
    }
    for sub in cmd.get_subcommands() {
        walk(sub, &help::sub_path(path, sub.get_name()), shared, out);
    }
}

#[test]
fn every_command_and_flag_has_its_chinese_help() {
    let texts = command_line_texts();
    assert!(texts.len() > 80, "only {} helps", texts.len());
    let mut missing = Vec::new();
    let mut keys = BTreeSet::new();
    for (key, english) in &texts {
        let key = key.clone();
        if !i18n::has_text(Lang::ZhCn, &key) {
            missing.push(format!("[\"{key}\"]\n# {english}\nzh-CN = \"\"\n"));
        }
        keys.insert(key);
    }
    assert!(
        missing.is_empty(),
        "missing in locales/cli_help.toml:\n{}",
        missing.join("\n")
    );
    let files = locale_files();
    let stale: Vec<&String> = files["cli_help.toml"]
        .keys()
        .filter(|k| !keys.contains(*k) && !k.starts_with("dialect."))
        .collect();
    assert!(
        stale.is_empty(),
        "keys naming no command or flag: {stale:?}"
    );
}

fn has_cjk(text: &str) -> bool {
    text.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c))
}

/// Every about line and help of the command line as printed in Chinese, by command path.
fn printed_helps(cmd: &clap::Command, path: &str, out: &mut Vec<String>) {
    if let Some(about) = cmd.get_about() {
        out.push(format!("{path}: {about}"));
    }
    for arg in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
        if let Some(h) = arg.get_help() {
            out.push(format!("{path} {}: {h}", arg.get_id()));
        }
        if let Some(h) = arg.get_help_heading() {
            out.push(format!("{path} {} (heading): {h}", arg.get_id()));
        }
    }
    for sub in cmd.get_subcommands() {
        printed_helps(sub, &format!("{path}.{}", sub.get_name()), out);
    }
}

#[test]
fn the_chinese_command_line_has_no_english_help_left() {
    let _zh = i18n::ThreadLang::new(Lang::ZhCn);
    let cmd = help::localize(Cli::command());
    let mut printed = Vec::new();
    printed_helps(&cmd, help::ROOT, &mut printed);
    assert!(printed.len() > 150, "only {} texts", printed.len());
    let english: Vec<&String> = printed
        .iter()
        .filter(|line| !has_cjk(line.split_once(": ").map_or("", |(_, t)| t)))
        .collect();
    assert!(english.is_empty(), "still English:\n{english:#?}");
}

#[test]
fn every_built_in_dialect_speaks_chinese() {
    let mut missing = Vec::new();
    let mut keys = BTreeSet::new();
    let mut need = |key: String, english: &str| {
        if !i18n::has_text(Lang::ZhCn, &key) {
            missing.push(format!("[\"{key}\"]\n# {english}\nzh-CN = \"\"\n"));
        }
        keys.insert(key);
    };
    for d in registry::all() {
        let id = d.id();
        let p = id.as_str();
        need(format!("dialect.{p}.label"), id.label());
        for s in d.notice_settings() {
            need(format!("dialect.{p}.setting.{}.label", s.key), s.label);
            need(format!("dialect.{p}.setting.{}.help", s.key), s.help);
            for c in s.choices() {
                need(
                    format!("dialect.{p}.setting.{}.choice.{}", s.key, c.value),
                    c.label,
                );
            }
        }
        if let ota_console::protocol::CancelSupport::CannotRecall { note, detail } =
            d.capabilities().cancel
        {
            need(format!("dialect.{p}.cancel_note"), note);
            need(format!("dialect.{p}.cancel_detail"), detail);
        }
        let table = d.errors();
        need(format!("dialect.{p}.error_format"), table.format);
        need(format!("dialect.{p}.error_unknown"), table.unknown);
        for c in table.codes {
            need(format!("dialect.{p}.error.{}", c.code), c.text);
        }
    }
    assert!(keys.len() > 20, "only {} dialect texts", keys.len());
    assert!(
        missing.is_empty(),
        "missing in locales/dialects.toml:\n{}",
        missing.join("\n")
    );
    let files = locale_files();
    let stale: Vec<&String> = files["dialects.toml"]
        .keys()
        .filter(|k| !keys.contains(*k))
        .collect();
    assert!(stale.is_empty(), "keys naming no dialect text: {stale:?}");
}

/// Files whose every user-visible sentence goes through `tr!` (the others still have English
/// literals; README, "Languages", says which).
const CONVERTED: &[&str] = &[
    "src/cli/broker.rs",
    "src/cli/args.rs",
    "src/cli/broker_config.rs",
    "src/cli/connection.rs",
    "src/cli/demo.rs",
    "src/cli/dialects.rs",
    "src/cli/devices.rs",
    "src/cli/hash.rs",
    "src/cli/help.rs",
    "src/cli/log.rs",
    "src/cli/parse_error.rs",
    "src/cli/rollout.rs",
    "src/cli/sim.rs",
    "src/cli/tls.rs",
    "src/cli/window.rs",
    "src/cli/words.rs",
    "src/engine/error.rs",
    "src/firmware/error.rs",
    // The simulator and the modules no subsystem owns. Left out: `sim/download.rs`,
    // `sim/strict.rs`, `sim/strict_http.rs`, whose words are what a simulated device reports
    // over MQTT (device text, as real firmware would send it).
    "src/firmware/cancel.rs",
    "src/firmware/checksum.rs",
    "src/firmware/digest.rs",
    "src/firmware/mod.rs",
    "src/firmware/package.rs",
    "src/firmware/store.rs",
    "src/fleet/inspector.rs",
    "src/fleet/mod.rs",
    "src/fleet/record.rs",
    "src/host.rs",
    "src/private_fs.rs",
    "src/report.rs",
    "src/sim/config.rs",
    "src/sim/credentials.rs",
    "src/sim/ctx.rs",
    "src/sim/error.rs",
    "src/sim/fetch.rs",
    "src/sim/fleet.rs",
    "src/sim/hub.rs",
    "src/sim/link.rs",
    "src/sim/mod.rs",
    "src/sim/provision.rs",
    "src/sim/stats.rs",
    "src/sim/timers.rs",
    "src/sim/unit.rs",
    "src/sim/upgrade.rs",
    "src/time.rs",
    "src/wire.rs",
    "src/transport/broker/error.rs",
    "src/ui/action.rs",
    "src/ui/app.rs",
    "src/ui/connection_bar.rs",
    "src/ui/connection_dialog.rs",
    "src/ui/connector.rs",
    "src/ui/demo_controls.rs",
    "src/ui/console.rs",
    "src/ui/devices_table.rs",
    "src/ui/explain.rs",
    "src/ui/filter.rs",
    "src/ui/firmware_panel.rs",
    "src/ui/fonts.rs",
    "src/ui/format.rs",
    "src/ui/history.rs",
    "src/ui/inspector.rs",
    "src/ui/jobs.rs",
    "src/ui/language.rs",
    "src/ui/mod.rs",
    "src/ui/profiles.rs",
    "src/ui/rollout_panel.rs",
    "src/ui/settings.rs",
    "src/ui/start_failure.rs",
    "src/ui/summary_strip.rs",
    "src/ui/theme.rs",
    "src/ui/tiles.rs",
    "src/ui/toasts.rs",
    "src/ui/vault.rs",
    "src/ui/widgets.rs",
];

/// Calls whose text argument is shown to people.
const SHOWN: &[&str] = &[
    "label(",
    "button(",
    "small_button(",
    "heading(",
    "on_hover_text(",
    "hint_text(",
    "weak(",
    "strong(",
    "checkbox(",
    "selectable_label(",
    "selectable_value(",
    "colored_label(",
    "RichText::new(",
    "Window::new(",
    "CollapsingHeader::new(",
    "set_title(",
    "add_filter(",
    "eprintln!(",
    "println!(",
    "bail!(",
    "anyhow!(",
    "context(",
    "ensure!(",
    "#[error(",
    "Err(",
    // Logged at the levels an operator's terminal shows (`cli::log::PeopleFormat`).
    "warn!(",
    "error!(",
];

/// A literal with a word in it (not only placeholders, digits and punctuation).
fn has_words(literal: &str) -> bool {
    let mut rest = literal.to_owned();
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        rest.replace_range(open..open + close + 1, "");
    }
    // A flag (`--broker`) is a name, not a word to translate.
    rest.split_whitespace()
        .filter(|w| !w.starts_with("--"))
        .flat_map(|w| w.split(|c: char| !c.is_ascii_alphabetic()))
        .any(|w| w.len() >= 2)
}

/// `text` without the keys of its `tr!("key"` calls (they are not shown).
fn without_keys(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("tr!(\"") {
        out.push_str(&rest[..at + 4]);
        let after = &rest[at + 5..];
        rest = after.split_once('"').map_or("", |(_, r)| r);
    }
    out.push_str(rest);
    out
}

/// The string literals among a call's arguments on this line (`after` starts after its `(`).
fn arguments_literals(after: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut chars = after.chars();
    while let Some(c) = chars.next() {
        match c {
            '(' | '[' => depth += 1,
            ')' | ']' if depth == 0 => break,
            ')' | ']' => depth -= 1,
            '"' => {
                let mut literal = String::new();
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            chars.next();
                        }
                        '"' => break,
                        other => literal.push(other),
                    }
                }
                out.push(literal);
            }
            _ => {}
        }
    }
    out
}

#[test]
fn converted_files_show_no_english_literal() {
    let mut found = Vec::new();
    let mut checked = 0;
    for file in CONVERTED {
        let text = std::fs::read_to_string(root().join(file)).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        for (n, line) in code.lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            checked += 1;
            for call in SHOWN {
                for after in line.split(call).skip(1) {
                    if arguments_literals(&without_keys(after))
                        .iter()
                        .any(|l| has_words(l))
                    {
                        found.push(format!("{file}:{}: {}", n + 1, line.trim()));
                    }
                }
            }
        }
    }
    assert!(checked > 1000, "only {checked} lines read");
    assert!(
        found.is_empty(),
        "English shown without tr!:\n{}",
        found.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// The engine's words (helper i18n-engine): the campaign's notes and the library's errors.

use ota_console::rollout::note::{Command, ForeignKey, Note};
use ota_console::rollout::{CampaignState, DeviceStatus, FailureCode};

/// One note of every kind. `kind` matches every variant without a wildcard, so a new kind of
/// note does not compile here until it has a sample (and so a Chinese check).
#[expect(
    clippy::too_many_lines,
    reason = "one sample per kind of note, the whole list in one place"
)]
fn every_note() -> Vec<Note> {
    let failure = FailureCode {
        dialect: registry::all()[0].id(),
        code: -2,
    };
    let desc = Some("电量低 low battery".to_owned());
    let s = DeviceStatus::Failed;
    let boxed = || {
        Box::new(Note::AlreadyOnTarget {
            version: "2.0".into(),
        })
    };
    let notes = vec![
        Note::StatusChange {
            from: DeviceStatus::Noticed,
            to: DeviceStatus::TimedOut,
        },
        Note::AlreadyOnTarget {
            version: "2.0".into(),
        },
        Note::NotFromVersions {
            version: "1.5".into(),
            versions: vec!["1.0".into(), "1.1".into()],
        },
        Note::Skipped { reason: boxed() },
        Note::NoticeSent { attempt: 1 },
        Note::NoticeSentAgain {
            attempt: 2,
            retry: 1,
            retries: 2,
        },
        Note::ProgressIgnored { status: s },
        Note::PercentClamped,
        Note::DevicePaused { desc: desc.clone() },
        Note::UpgradeDone {
            version: "2.0".into(),
        },
        Note::DeviceFailed {
            failure,
            desc: None,
        },
        Note::DeviceRejected {
            failure,
            desc: desc.clone(),
        },
        Note::CanceledOnDevice { desc: None },
        Note::DeviceTimeout { desc: None },
        Note::BackwardReport {
            next: DeviceStatus::Downloading,
            status: DeviceStatus::Installing,
        },
        Note::Phase {
            status: DeviceStatus::Downloading,
            percent: 40,
        },
        Note::VersionNotActedOn {
            version: "1.0".into(),
            ms: 500,
        },
        Note::SucceededLate {
            version: "2.0".into(),
            before: DeviceStatus::TimedOut,
        },
        Note::ReportedTarget {
            version: "2.0".into(),
        },
        Note::ReplyIgnored {
            request: "ota_create".into(),
        },
        Note::ReplyIgnoredStatus {
            request: "ota_create".into(),
            result: 0,
            status: s,
        },
        Note::RequestRejected {
            request: "ota_create".into(),
            failure,
        },
        Note::RequestRefused {
            request: "ota_create".into(),
            failure,
        },
        Note::RequestAlreadyRunning {
            request: "ota_create".into(),
            failure,
        },
        Note::NoVersionAtFull {
            version: "2.0".into(),
            secs: 30,
        },
        Note::NoVersion {
            version: "2.0".into(),
            secs: 30,
        },
        Note::NoReply {
            request: "ota_create".into(),
            sent: 3,
            timeout_ms: 1000,
        },
        Note::ReplyResent {
            request: "ota_create".into(),
            timeout_ms: 1000,
            sent: 1,
            resends: 2,
        },
        Note::AckResent {
            left: 2,
            next_ms: 1500,
        },
        Note::AckLastResent,
        Note::RetryAt {
            at_ms: 9000,
            left: 1,
        },
        Note::NoRetry { reason: boxed() },
        Note::RequeuedByOperator,
        Note::PublishFailed { error: None },
        Note::NotDelivered,
        Note::BackOnline,
        Note::EarlierAttemptKey { key: "7".into() },
        Note::ForeignGateway {
            key: "7".into(),
            from: "dji:DOCK".into(),
        },
        Note::ForeignKey {
            key: "7".into(),
            why: ForeignKey::AnotherDevice,
        },
        Note::ForeignKey {
            key: "7".into(),
            why: ForeignKey::EarlierAttempt,
        },
        Note::ForeignKey {
            key: "7".into(),
            why: ForeignKey::NotIssued,
        },
        Note::PublishFailedReplyWait {
            request: "ota_create".into(),
            error: "x".into(),
        },
        Note::NothingPending { status: s },
        Note::NothingPendingYet,
        Note::Started {
            devices: 3,
            waves: vec![1, 2],
        },
        Note::WaveGateMet {
            wave: 1,
            succeeded: 1,
            eligible: 1,
            threshold: 90,
        },
        Note::WaveBlocked {
            wave: 1,
            succeeded: 0,
            eligible: 1,
            threshold: 90,
        },
        Note::WaveOpened {
            wave: 2,
            total: 3,
            why: Box::new(Note::AdvancedByOperator),
        },
        Note::AdvancedByOperator,
        Note::EveryWaveOpen,
        Note::PausedByOperator,
        Note::ResumedByOperator,
        Note::CanceledByOperator,
        Note::Aborted {
            failures: 2,
            judged: 3,
            percent: 50,
        },
        Note::Completed {
            succeeded: 1,
            failed: 1,
            skipped: 1,
        },
        Note::NothingToRetry,
        Note::FailedRequeued { count: 2 },
        Note::FailedOrTimedOutRequeued { count: 2 },
        Note::MaybeLost { count: 2, ms: 500 },
        Note::MaybeLostResent { count: 2 },
        Note::BrokerDown,
        Note::BrokerBack {
            outage_ms: 1500,
            count: 2,
        },
        Note::UrlMoved {
            from: "http://a/f".into(),
            to: "http://b/f".into(),
        },
    ];
    let commands = [
        Command::Start,
        Command::Pause,
        Command::Resume,
        Command::Cancel,
        Command::AdvanceWave,
        Command::RetryFailed,
    ]
    .map(|command| Note::Refused {
        command,
        state: CampaignState::Completed,
    });
    notes.into_iter().chain(commands).collect()
}

/// Every kind of note, named (a new variant fails to compile until it is listed).
fn kind(note: &Note) -> &'static str {
    match note {
        Note::Text { .. } => "text",
        Note::StatusChange { .. } => "status_change",
        Note::AlreadyOnTarget { .. } => "already_on_target",
        Note::NotFromVersions { .. } => "not_from_versions",
        Note::Skipped { .. } => "skipped",
        Note::NoticeSent { .. } => "notice_sent",
        Note::NoticeSentAgain { .. } => "notice_sent_again",
        Note::ProgressIgnored { .. } => "progress_ignored",
        Note::PercentClamped => "percent_clamped",
        Note::DevicePaused { .. } => "device_paused",
        Note::UpgradeDone { .. } => "upgrade_done",
        Note::DeviceFailed { .. } => "device_failed",
        Note::DeviceRejected { .. } => "device_rejected",
        Note::CanceledOnDevice { .. } => "canceled_on_device",
        Note::DeviceTimeout { .. } => "device_timeout",
        Note::BackwardReport { .. } => "backward_report",
        Note::Phase { .. } => "phase",
        Note::VersionNotActedOn { .. } => "version_not_acted_on",
        Note::SucceededLate { .. } => "succeeded_late",
        Note::ReportedTarget { .. } => "reported_target",
        Note::ReplyIgnored { .. } => "reply_ignored",
        Note::ReplyIgnoredStatus { .. } => "reply_ignored_status",
        Note::RequestRejected { .. } => "request_rejected",
        Note::RequestRefused { .. } => "request_refused",
        Note::RequestAlreadyRunning { .. } => "request_already_running",
        Note::NoVersionAtFull { .. } => "no_version_at_full",
        Note::NoVersion { .. } => "no_version",
        Note::NoReply { .. } => "no_reply",
        Note::ReplyResent { .. } => "reply_resent",
        Note::AckResent { .. } => "ack_resent",
        Note::AckLastResent => "ack_last_resent",
        Note::RetryAt { .. } => "retry_at",
        Note::NoRetry { .. } => "no_retry",
        Note::RequeuedByOperator => "requeued_by_operator",
        Note::PublishFailed { .. } => "publish_failed",
        Note::NotDelivered => "not_delivered",
        Note::BackOnline => "back_online",
        Note::EarlierAttemptKey { .. } => "earlier_attempt_key",
        Note::ForeignGateway { .. } => "foreign_gateway",
        Note::ForeignKey { .. } => "foreign_key",
        Note::PublishFailedReplyWait { .. } => "publish_failed_reply_wait",
        Note::NothingPending { .. } => "nothing_pending",
        Note::NothingPendingYet => "nothing_pending_yet",
        Note::Started { .. } => "started",
        Note::WaveGateMet { .. } => "wave_gate_met",
        Note::WaveBlocked { .. } => "wave_blocked",
        Note::WaveOpened { .. } => "wave_opened",
        Note::AdvancedByOperator => "advanced_by_operator",
        Note::EveryWaveOpen => "every_wave_open",
        Note::PausedByOperator => "paused_by_operator",
        Note::ResumedByOperator => "resumed_by_operator",
        Note::CanceledByOperator => "canceled_by_operator",
        Note::Aborted { .. } => "aborted",
        Note::Completed { .. } => "completed",
        Note::NothingToRetry => "nothing_to_retry",
        Note::FailedRequeued { .. } => "failed_requeued",
        Note::FailedOrTimedOutRequeued { .. } => "failed_or_timed_out_requeued",
        Note::Refused { .. } => "refused",
        Note::MaybeLost { .. } => "maybe_lost",
        Note::MaybeLostResent { .. } => "maybe_lost_resent",
        Note::BrokerDown => "broker_down",
        Note::BrokerBack { .. } => "broker_back",
        Note::UrlMoved { .. } => "url_moved",
    }
}

#[test]
fn every_campaign_note_speaks_chinese_and_reads_back_from_the_store() {
    let notes = every_note();
    let kinds: BTreeSet<&str> = notes.iter().map(kind).collect();
    // Every kind but `Text` (a sentence kept as written) has a sample.
    let mut all = kinds.clone();
    all.insert("text");
    assert_eq!(all.len(), kinds.len() + 1, "a sample is a Text note");
    let mut problems = Vec::new();
    for note in &notes {
        let english = i18n::in_english(|| note.to_string());
        let chinese = {
            let _zh = i18n::ThreadLang::new(Lang::ZhCn);
            note.to_string()
        };
        // The device's own words are data: look for Chinese outside them.
        let without_data = chinese.replace("电量低", "");
        if !has_cjk(&without_data) || chinese == english || chinese.contains("note.") {
            problems.push(format!("{}: {chinese:?} (en {english:?})", kind(note)));
        }
        if english.contains("note.") || has_cjk(&english.replace("电量低", "")) {
            problems.push(format!("{}: English {english:?}", kind(note)));
        }
        let stored = note.to_stored();
        if Note::from_stored(&stored) != *note {
            problems.push(format!(
                "{}: stored as {stored} reads back otherwise",
                kind(note)
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // A row written before notes were typed shows its sentence in every language.
    let old = Note::from_stored("no report of version 2.0 within 30 s of the notice");
    let _zh = i18n::ThreadLang::new(Lang::ZhCn);
    assert_eq!(
        old.to_string(),
        "no report of version 2.0 within 30 s of the notice"
    );
}

/// A literal that is a sentence: two words or more (one word is a name: `"module"`).
fn is_sentence(literal: &str) -> bool {
    literal.contains(' ')
        && literal
            .split(|c: char| !c.is_ascii_alphabetic())
            .filter(|w| w.len() >= 2)
            .count()
            >= 2
}

/// Every string literal of a line (escapes skipped).
fn literals(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '"' {
            let mut literal = String::new();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        chars.next();
                    }
                    '"' => break,
                    other => literal.push(other),
                }
            }
            out.push(literal);
        }
    }
    out
}

/// The campaign's machine says everything through `Note`s: no sentence in its code.
#[test]
fn the_campaign_machine_writes_no_sentence_itself() {
    let mut files = vec![root().join("src/rollout/device.rs")];
    rs_files(&root().join("src/rollout/campaign"), &mut files);
    let mut found = Vec::new();
    let mut checked = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        for (n, line) in code.lines().enumerate() {
            let trimmed = line.trim_start();
            // Comments, and the reasons lint exceptions give (for the reader of the code).
            if trimmed.starts_with("//") || trimmed.starts_with("reason =") {
                continue;
            }
            checked += 1;
            if literals(&without_keys(line)).iter().any(|l| is_sentence(l)) {
                found.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(checked > 1000, "only {checked} lines read");
    assert!(
        found.is_empty(),
        "a sentence not through a Note or tr!:\n{}",
        found.join("\n")
    );
}

/// The library's errors whose words reach the operator: every `#[error(…)]` (and other shown
/// call) in them goes through `tr!`.
const ENGINE_CONVERTED: &[&str] = &[
    "src/access/alibaba_sign.rs",
    "src/access/credentials.rs",
    "src/access/rules.rs",
    "src/access/tls.rs",
    "src/engine/download_url.rs",
    "src/engine/resume.rs",
    "src/engine/runner/broker_guard.rs",
    "src/engine/session_id.rs",
    "src/protocol/error.rs",
    "src/protocol/json_template.rs",
    "src/protocol/registry.rs",
    "src/protocol/user/error.rs",
    "src/protocol/user/template.rs",
    "src/report.rs",
    "src/rollout/mod.rs",
    "src/rollout/status.rs",
    "src/sim/credentials.rs",
    "src/sim/error.rs",
    "src/store/sql.rs",
    "src/terms/ids.rs",
    "src/terms/notes.rs",
    "src/transport/download_token.rs",
    "src/transport/http.rs",
    "src/transport/mqtt/actor.rs",
    "src/transport/mqtt/backoff.rs",
    "src/transport/mqtt/failure.rs",
    "src/transport/mqtt/handback.rs",
    "src/transport/mqtt/mod.rs",
    "src/transport/mqtt/status.rs",
    "src/transport/shaping.rs",
];

/// Words only the developers' log reads (`RUST_LOG=debug`), which stays English.
const LOG_ONLY: &[(&str, &str)] = &[
    ("src/transport/http.rs", "TLS handshake"),
    ("src/transport/http.rs", "plain HTTP on the HTTPS port"),
];

#[test]
fn the_library_errors_show_no_english_literal() {
    let mut found = Vec::new();
    for file in ENGINE_CONVERTED {
        let text = std::fs::read_to_string(root().join(file)).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        // An attribute may span lines: read `#[error(` up to its closing `)]`.
        let mut attribute: Option<(usize, String)> = None;
        for (n, line) in code.lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            let (start, text) = match attribute.take() {
                Some((start, mut text)) => {
                    text.push_str(line.trim());
                    (start, text)
                }
                None => (n + 1, line.to_owned()),
            };
            if text.trim_start().starts_with("#[error(") && !text.trim_end().ends_with(")]") {
                attribute = Some((start, text));
                continue;
            }
            if LOG_ONLY
                .iter()
                .any(|(f, words)| f == file && text.contains(words))
            {
                continue;
            }
            check_line(file, start, &text, &mut found);
        }
    }
    assert!(
        found.is_empty(),
        "English shown without tr!:\n{}",
        found.join("\n")
    );
}

fn check_line(file: &str, n: usize, line: &str, found: &mut Vec<String>) {
    for call in SHOWN {
        for after in line.split(call).skip(1) {
            if arguments_literals(&without_keys(after))
                .iter()
                .any(|l| has_words(l))
            {
                found.push(format!("{file}:{n}: {}", line.trim()));
            }
        }
    }
}

#[test]
fn library_errors_read_in_chinese() {
    use ota_console::device_id::DeviceId;
    use ota_console::protocol::DecodeError;
    use ota_console::store::StoreError;
    use ota_console::transport::http::HttpError;
    use ota_console::transport::mqtt::BrokerUrl;

    let _zh = i18n::ThreadLang::new(Lang::ZhCn);
    let errors: Vec<String> = vec![
        "nonsense".parse::<DeviceId>().unwrap_err().to_string(),
        "mqtt://host:99999"
            .parse::<BrokerUrl>()
            .unwrap_err()
            .to_string(),
        StoreError::NoSuchCampaign(ota_console::rollout::CampaignId(7)).to_string(),
        HttpError::AddrInUse("127.0.0.1:8080".parse().unwrap()).to_string(),
        DecodeError::MissingField("version").to_string(),
        "12 parsecs"
            .parse::<ota_console::transport::shaping::Bandwidth>()
            .unwrap_err()
            .to_string(),
    ];
    let english: Vec<&String> = errors.iter().filter(|e| !has_cjk(e)).collect();
    assert!(english.is_empty(), "still English: {english:#?}");
    assert_eq!(errors[2], "升级任务 7 不存在",);
}
