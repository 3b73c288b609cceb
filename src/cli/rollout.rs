//! `ota-console rollout`: one campaign from the command line, on the same engine as the window.
//! Exit code 0 when every target succeeded (or was skipped as up to date), 1 when any failed,
//! timed out, was rejected or canceled, 2 for bad usage or configuration, 3 when another
//! console on the broker holds the campaign (the campaign lock, `rollout::lock`: the message
//! says which console, on which host, since when).
//!
//! `--resume ID` picks a stored campaign up. Its devices keep the download link they were
//! given, so the firmware server comes back there (`--http-bind` on port 0 takes the link's
//! port); `--public-url` or `--url` naming another address moves the campaign's downloads there
//! instead, on the record.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::bail;
use clap::builder::{PossibleValue, PossibleValuesParser};
use clap::{Arg, ArgMatches, Args, FromArgMatches};
use indicatif::{ProgressBar, ProgressStyle};

use super::connection::ConnectionArgs;
use crate::device_id::{DeviceId, DialectId, IdShape};
use crate::engine::{
    self, CampaignRequest, CampaignView, CommandError, EngineError, EngineHandle, OfferUrl,
    ResumeInfo,
};
use crate::fleet::DeviceRecord;
use crate::i18n::tr;
use crate::protocol::{NoticeSetting, OfferField, registry};
use crate::report::Report;
use crate::rollout::{
    AbortThreshold, CampaignId, CanarySize, Counts, DialectSettings, LIMITS, Policy, RateLimit,
};
use crate::terms::states;

#[derive(Debug, Clone, Args)]
pub struct RolloutArgs {
    #[command(flatten)]
    pub connection: ConnectionArgs,

    /// The firmware file (imported into the package store, then served from there).
    #[arg(long, value_name = "FILE", required_unless_present = "resume")]
    pub firmware: Option<PathBuf>,

    /// The version devices must report after the upgrade.
    #[arg(long, value_name = "V", required_unless_present = "resume")]
    pub version: Option<String>,

    /// The module to upgrade (default: the device's main firmware).
    #[arg(long, value_name = "M")]
    pub module: Option<String>,

    // Help: the id forms of every dialect.
    #[arg(long = "target", value_name = "ID", conflicts_with = "all", help = target_help())]
    pub targets: Vec<DeviceId>,

    /// Target every device heard during --discover-for (with --dialect: of those dialects).
    /// Devices only remembered in the database from earlier runs are left out (see
    /// --include-remembered).
    #[arg(long)]
    pub all: bool,

    /// With --all: also target devices remembered in the database from earlier runs that were
    /// not heard during --discover-for. They may be gone: one that never answers times out, and
    /// in the canary it holds every later wave back.
    // Checked in `check_usage`: clap's `requires` counts a flag's default as present.
    #[arg(long)]
    pub include_remembered: bool,

    /// Only these dialects with --all; repeatable.
    #[arg(long, value_name = "DIALECT")]
    pub dialect: Vec<DialectId>,

    /// How long to listen for devices before the rollout starts.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = humantime::parse_duration)]
    pub discover_for: Duration,

    /// How long to wait for the broker before giving up (e.g. 30s, 2m).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
    pub connect_timeout: Duration,

    /// Wave size after the canary: a count (10) or a percentage of the targets (10%).
    #[arg(long, value_name = "N|P%")]
    pub wave: Option<WaveSize>,

    /// Size of the first (canary) wave (default: --wave, else 1 device).
    #[arg(long, value_name = "N|P%")]
    pub canary: Option<WaveSize>,

    /// Share of a wave that must succeed before the next one opens.
    #[arg(long, value_name = "P%", value_parser = parse_percent)]
    pub wave_success: Option<u8>,

    /// At most this many notices per minute (`120/min` or `120`), evenly spaced.
    #[arg(long, value_name = "N/min", value_parser = parse_rate)]
    pub rate: Option<u32>,

    /// At most this many devices upgrading at once.
    #[arg(long, value_name = "N")]
    pub concurrency: Option<u32>,

    /// From notice to the new version reported, per attempt.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub device_timeout: Option<Duration>,

    /// Times a failed or timed-out device is noticed again.
    #[arg(long, value_name = "K")]
    pub retries: Option<u32>,

    /// Wait before a retry.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub retry_interval: Option<Duration>,

    // Help: which dialects it applies to (notices acknowledged by a first report).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, help = ack_window_help())]
    pub ack_window: Option<Duration>,

    /// Times an unanswered notice is re-sent, each wait --ack-backoff times longer (default 3;
    /// 0 leaves it to --device-timeout).
    #[arg(long, value_name = "K")]
    pub ack_resends: Option<u32>,

    /// Factor by which each wait for an answer grows (default 2).
    #[arg(long, value_name = "X")]
    pub ack_backoff: Option<u32>,

    /// A device that comes online is noticed this long after it was heard, once it has
    /// subscribed (default 2s; 0s: at once).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub settle: Option<Duration>,

    /// Abort when more than this share of finished devices failed.
    #[arg(long, value_name = "P%", value_parser = parse_percent, conflicts_with = "no_abort")]
    pub max_failures: Option<u8>,

    /// Finished devices needed before --max-failures is judged.
    #[arg(long, value_name = "N")]
    pub min_finished: Option<u32>,

    /// Never abort on failures.
    #[arg(long)]
    pub no_abort: bool,

    /// Only upgrade devices currently on one of these versions.
    #[arg(long, value_name = "VERSION,...", value_delimiter = ',')]
    pub only_from: Vec<String>,

    /// The dialects' notice settings, one flag each (generated from the registry).
    #[command(flatten)]
    pub notice_settings: NoticeSettingArgs,

    // The help names the dialects whose notices carry it.
    #[arg(long, value_name = "TEXT", default_value = "", help = description_help(), help_heading = SETTINGS_HEADING)]
    pub description: String,

    /// Write a report when the rollout ends: FILE.json or FILE.csv.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,

    /// The campaign's name (default: FILE to VERSION). Consoles sharing a broker drive one
    /// campaign of a name at a time: a second one started on it exits (code 3) naming the
    /// console that holds it.
    #[arg(long = "campaign", value_name = "NAME", conflicts_with = "resume")]
    pub campaign: Option<String>,

    /// Continue a campaign that was interrupted (by id, from the database).
    #[arg(long, value_name = "ID", conflicts_with_all = ["firmware", "targets", "all"])]
    pub resume: Option<i64>,
}

/// Where `--help` lists the settings that shape the notices.
pub(crate) const SETTINGS_HEADING: &str = "Notice settings";

/// Every registered dialect's notice settings as flags (flag = the setting's `cli_flag`, help
/// = its `help`, possible values = its choices, default = its default), so a new dialect's
/// setting appears on the command line without code here. Built with clap's builder API
/// wherever `RolloutArgs` is (the derive flattens it), read back into [`DialectSettings`].
#[derive(Debug, Clone, Default)]
pub struct NoticeSettingArgs {
    /// Every setting's value: the flag's, or the setting's default.
    pub settings: DialectSettings,
}

fn setting_arg(setting: &'static NoticeSetting) -> Arg {
    if setting.text().is_some() {
        // A template is easier written in a file than quoted on a command line.
        return Arg::new(setting.cli_flag)
            .long(setting.cli_flag)
            .value_name("FILE")
            .help(setting.help)
            .help_heading(SETTINGS_HEADING)
            .value_parser(clap::value_parser!(PathBuf));
    }
    let values = setting.choices().iter().map(|c| {
        PossibleValue::new(c.value)
            .help(c.label)
            .aliases(c.aliases.iter().copied())
    });
    Arg::new(setting.cli_flag)
        .long(setting.cli_flag)
        .value_name("CHOICE")
        .help(setting.help)
        .help_heading(SETTINGS_HEADING)
        .value_parser(PossibleValuesParser::new(values))
        .ignore_case(true)
        .default_value(setting.default)
}

impl Args for NoticeSettingArgs {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        let settings = registry::all()
            .into_iter()
            .flat_map(|d| d.notice_settings().iter().map(setting_arg));
        cmd.args(settings)
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

impl FromArgMatches for NoticeSettingArgs {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let mut args = Self::default();
        args.update_from_arg_matches(matches)?;
        Ok(args)
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        for dialect in registry::all() {
            for setting in dialect.notice_settings() {
                // A dialect registered after the command was built has no flag: its default.
                let (value, given) = if setting.text().is_some() {
                    let Ok(Some(path)) = matches.try_get_one::<PathBuf>(setting.cli_flag) else {
                        continue;
                    };
                    // The error names the file the text came from.
                    (
                        read_setting_file(dialect.id(), setting, path)?,
                        format!(" {}", path.display()),
                    )
                } else {
                    let Ok(Some(value)) = matches.try_get_one::<String>(setting.cli_flag) else {
                        continue;
                    };
                    (value.clone(), String::new())
                };
                self.settings
                    .set(dialect.id(), setting, &value)
                    .map_err(|e| {
                        clap::Error::raw(
                            clap::error::ErrorKind::InvalidValue,
                            format!("--{}{given}: {e}", setting.cli_flag),
                        )
                    })?;
            }
        }
        Ok(())
    }
}

/// Largest file read for a text setting (the dialect's own check has the real limit).
const MAX_SETTING_FILE_BYTES: u64 = 1024 * 1024;

/// The contents of the FILE given to text `setting`'s flag.
fn read_setting_file(
    dialect: crate::device_id::DialectId,
    setting: &'static NoticeSetting,
    path: &Path,
) -> Result<String, clap::Error> {
    use std::io::Read as _;
    let refused = |why: String| {
        clap::Error::raw(
            clap::error::ErrorKind::InvalidValue,
            tr!(
                "cli.rollout.setting_file_unreadable",
                flag = setting.cli_flag,
                // Inside a sentence: "the job document template" (no-op in Chinese).
                setting = crate::terms::dialect::setting_label(dialect, setting).to_lowercase(),
                file = path.display(),
                why = why
            ),
        )
    };
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_SETTING_FILE_BYTES + 1).read_to_string(&mut text))
        .map_err(|e| refused(crate::i18n::io_error(&e)))?;
    if text.len() as u64 > MAX_SETTING_FILE_BYTES {
        return Err(refused(tr!(
            "cli.rollout.setting_file_too_large",
            limit = MAX_SETTING_FILE_BYTES
        )));
    }
    Ok(text)
}

/// `--target`'s help: each dialect's id form (`prefix:key/name` or `prefix:name`).
fn target_help() -> String {
    let forms: Vec<String> = registry::ids()
        .into_iter()
        .map(|id| match id.shape() {
            IdShape::Name { name } => format!("{}:{name}", id.as_str()),
            IdShape::KeyAndName { key, name } => format!("{}:{key}/{name}", id.as_str()),
        })
        .collect();
    tr!("cli.help.targets", forms = forms.join(", "))
}

/// `--ack-window`'s help: it applies to dialects whose devices acknowledge a notice by their
/// first report; the others keep their own wait for the reply.
fn ack_window_help() -> String {
    let default = Duration::from_millis(Policy::default().ack_window_ms);
    let (first_report, by_reply): (Vec<_>, Vec<_>) = registry::all()
        .into_iter()
        .partition(|d| d.capabilities().ack.by_first_report());
    let names = |list: &[&dyn crate::protocol::Dialect]| {
        list.iter()
            .map(|d| crate::terms::dialect::label(d.id()))
            .collect::<Vec<_>>()
            .join(&tr!("cli.list_separator"))
    };
    let mut help = tr!(
        "cli.help.ack_window",
        default = humantime::format_duration(default),
        names = names(&first_report)
    );
    if !by_reply.is_empty() {
        help.push_str(&tr!(
            "cli.help.ack_window_not_for",
            names = names(&by_reply)
        ));
    }
    help
}

/// `--description`'s help: the dialects whose notices carry it.
fn description_help() -> String {
    let names: Vec<_> = registry::all()
        .into_iter()
        .filter(|d| {
            d.capabilities()
                .offer_fields
                .contains(&OfferField::Description)
        })
        .map(|d| crate::terms::dialect::label(d.id()))
        .collect();
    if names.is_empty() {
        return tr!("cli.help.description_unsent");
    }
    tr!(
        "cli.help.description",
        names = names.join(&tr!("cli.list_separator"))
    )
}

/// A count or a percentage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaveSize {
    Count(u32),
    Percent(u8),
}

impl std::str::FromStr for WaveSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().strip_suffix('%') {
            Some(p) => parse_percent(p).map(WaveSize::Percent),
            None => s
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|n| *n > 0)
                .map(WaveSize::Count)
                .ok_or_else(|| tr!("cli.rollout.not_a_count")),
        }
    }
}

fn parse_percent(s: &str) -> Result<u8, String> {
    s.trim()
        .trim_end_matches('%')
        .parse::<u8>()
        .ok()
        .filter(|p| (1..=100).contains(p))
        .ok_or_else(|| tr!("cli.rollout.not_a_percentage"))
}

fn parse_rate(s: &str) -> Result<u32, String> {
    let n = s.trim().trim_end_matches("/min").trim();
    n.parse::<u32>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| tr!("cli.rollout.not_a_rate"))
}

/// How the rollout ended, for the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every target succeeded or was skipped as up to date.
    AllSucceeded,
    /// Some target failed, timed out, was rejected or canceled (or the run was interrupted).
    SomeFailed,
    /// Another console holds the campaign; this one sent nothing to its devices.
    HeldElsewhere,
}

/// What the parser cannot say: flags that only mean something together.
fn check_usage(args: &RolloutArgs) -> anyhow::Result<()> {
    if args.include_remembered && !args.all {
        bail!(tr!("cli.rollout.include_remembered_without_all"));
    }
    Ok(())
}

pub async fn run(args: &RolloutArgs) -> anyhow::Result<Outcome> {
    check_usage(args)?;
    let mut config = args.connection.engine_config()?;
    // Before the engine starts: where its firmware server must listen, or where the stored
    // campaign's downloads move to, depends on the link its devices were told.
    let told = match args.resume {
        Some(id) => engine::prepare_resume(&mut config, CampaignId(id))?,
        None => None,
    };
    if let (
        Some(id),
        Some(ResumeInfo {
            told,
            moved_to: Some(url),
        }),
    ) = (args.resume, &told)
    {
        eprintln!(
            "{}",
            tr!(
                "cli.rollout.downloads_moved",
                id = id,
                url = url,
                told = told
            )
        );
    }
    // The engine's own message already says "cannot start: ..." and what failed where.
    let handle = engine::start(config).await?;
    let started = match args.resume {
        Some(id) => {
            resume(
                &handle,
                CampaignId(id),
                told.as_ref().map(|t| &t.told),
                args.connect_timeout,
            )
            .await
        }
        None => start_new(args, &handle).await,
    };
    let id = match started {
        Ok(id) => id,
        Err(e) if is_held(&e) => {
            // The engine's sentence: which console holds it, where, since when.
            eprintln!("{}", super::words::chain(&e));
            // Lets its withdrawn claim reach the broker before the link closes.
            handle.shut_down().await;
            return Ok(Outcome::HeldElsewhere);
        }
        Err(e) => return Err(e),
    };
    eprintln!("{}", tr!("cli.campaign_running", id = id));
    let finished = follow(&handle, id).await?;
    // Taken when the campaign is over: every progress report it waited for is counted.
    let traffic = handle.snapshot().traffic;
    handle.shut_down().await;
    let Some(view) = finished else {
        eprintln!("{}", tr!("cli.rollout.interrupted", id = id));
        return Ok(Outcome::SomeFailed);
    };
    if let Some(path) = &args.report {
        Report::from_view(&view).with_traffic(traffic).write(path)?;
        eprintln!(
            "{}",
            tr!("cli.rollout.report_written", path = path.display())
        );
    }
    let counts = view.snapshot.counts;
    eprintln!(
        "{}",
        tr!(
            "cli.rollout.ended",
            id = id,
            state = states::campaign_state(view.snapshot.state),
            counts = states::counts(&counts)
        )
    );
    Ok(if counts.succeeded + counts.skipped == counts.total {
        Outcome::AllSucceeded
    } else {
        Outcome::SomeFailed
    })
}

async fn resume(
    handle: &EngineHandle,
    id: CampaignId,
    told: Option<&OfferUrl>,
    connect_timeout: Duration,
) -> anyhow::Result<CampaignId> {
    // Listening before resuming: devices that speak once (a DJI dock's topology at connect)
    // are heard, and the campaign does not start by holding its timers for a broker outage.
    super::connection::wait_for_broker(handle, connect_timeout).await?;
    match (handle.resume_campaign(id).await, told) {
        (Ok(id), _) => Ok(id),
        // This server cannot serve the link the devices were told.
        (Err(e), Some(told)) if offer_not_servable(&e) => {
            let port = told
                .port()
                .map_or_else(|| "PORT".to_owned(), |p| p.to_string());
            Err(anyhow::Error::new(e).context(tr!(
                "cli.rollout.resume_elsewhere",
                id = id,
                base = told.base(),
                port = port
            )))
        }
        // The engine's refusal names the campaign already.
        (Err(e @ EngineError::Refused(_)), _) => Err(e.into()),
        (Err(e), _) => Err(anyhow::Error::new(e).context(tr!("cli.rollout.resuming", id = id))),
    }
}

/// Whether the engine refused to start because another console holds the campaign.
fn is_held(e: &anyhow::Error) -> bool {
    matches!(
        e.downcast_ref::<EngineError>(),
        Some(EngineError::Refused(CommandError::CampaignHeld { .. }))
    )
}

/// Whether the engine refused because its firmware server cannot serve the link a campaign's
/// devices were told.
fn offer_not_servable(e: &EngineError) -> bool {
    matches!(e, EngineError::Refused(refused) if refused.offer_not_servable().is_some())
}

async fn start_new(args: &RolloutArgs, handle: &EngineHandle) -> anyhow::Result<CampaignId> {
    let (Some(firmware), Some(version)) = (&args.firmware, &args.version) else {
        bail!(tr!("cli.rollout.firmware_and_version"));
    };
    let package = handle
        .import_firmware(firmware.clone())
        .await
        .map_err(|e| match e {
            // The engine's answer names the file and the store already.
            EngineError::Refused(refused) => anyhow::Error::new(refused),
            other => anyhow::Error::from(other)
                .context(tr!("cli.rollout.importing", file = firmware.display())),
        })?;
    eprintln!(
        "{}",
        tr!(
            "cli.rollout.package",
            file = package.package.file_name,
            size = package.package.size,
            md5 = package.package.md5,
            sha256 = package.package.sha256
        )
    );
    let module = module_of(args)?;
    super::connection::wait_for_broker(handle, args.connect_timeout).await?;
    if args.all || !args.discover_for.is_zero() {
        eprintln!(
            "{}",
            tr!(
                "cli.rollout.listening",
                duration = humantime::format_duration(args.discover_for)
            )
        );
        tokio::time::sleep(args.discover_for).await;
    }
    let targets = if args.all {
        let snapshot = handle.snapshot();
        let records = snapshot.devices.iter().map(|row| &row.record);
        let (targets, left_out) = discovered_targets(
            records,
            &args.dialect,
            module.as_deref(),
            args.include_remembered,
        );
        if left_out > 0 {
            eprintln!("{}", tr!("cli.rollout.left_out", count = left_out));
        }
        targets
    } else {
        args.targets.iter().map(DeviceId::device).collect()
    };
    if targets.is_empty() {
        bail!(tr!("cli.rollout.no_targets"));
    }
    let request = CampaignRequest {
        name: args.campaign.clone().unwrap_or_default(),
        package_sha256: package.package.sha256.clone(),
        version: version.clone(),
        module,
        description: args.description.clone(),
        policy: policy_from(args, targets.len())?,
        settings: args.notice_settings.settings.clone(),
        targets,
        download_url: None,
    };
    eprintln!(
        "{}",
        tr!(
            "cli.rollout.targets",
            count = request.targets.len(),
            version = version
        )
    );
    Ok(handle.start_campaign(request).await?)
}

/// `--module`, or the module every `--target` names.
fn module_of(args: &RolloutArgs) -> anyhow::Result<Option<String>> {
    if args.module.is_some() {
        return Ok(args.module.clone());
    }
    let mut modules = args.targets.iter().map(|t| t.module().map(str::to_owned));
    let first = modules.next().flatten();
    if modules.any(|m| m != first) {
        bail!(tr!("cli.rollout.different_modules"));
    }
    Ok(first)
}

/// The `--all` targets among `records`, and how many remembered devices that were not heard
/// since the console started were left out. Heard means heard during `--discover-for`: the
/// console started just before it. A device that left since (e.g. a DJI drone that
/// left its dock) is offline and out.
fn discovered_targets<'a>(
    records: impl Iterator<Item = &'a DeviceRecord>,
    dialects: &[DialectId],
    module: Option<&str>,
    include_remembered: bool,
) -> (Vec<DeviceId>, usize) {
    let mut left_out = 0;
    let targets = records
        .filter(|r| r.online)
        .filter(|r| dialects.is_empty() || dialects.contains(&r.dialect()))
        .filter(|r| module.is_none() || r.version(module).is_some())
        .filter(|r| {
            let keep = include_remembered || r.heard_since_start;
            left_out += usize::from(!keep);
            keep
        })
        .map(|r| r.id.clone())
        .collect();
    (targets, left_out)
}

/// The policy: defaults, overridden by what was given.
pub fn policy_from(args: &RolloutArgs, target_count: usize) -> anyhow::Result<Policy> {
    let mut policy = Policy::default();
    let as_count = |w: WaveSize| match w {
        WaveSize::Count(n) => n,
        WaveSize::Percent(p) => {
            let n = (target_count as u64 * u64::from(p)).div_ceil(100);
            u32::try_from(n.max(1)).unwrap_or(u32::MAX)
        }
    };
    if let Some(wave) = args.wave {
        policy.wave_size = as_count(wave);
    }
    if let Some(canary) = args.canary.or(args.wave) {
        policy.canary = match canary {
            WaveSize::Count(n) => CanarySize::Count(n),
            WaveSize::Percent(p) => CanarySize::Percent(p),
        };
    }
    if let Some(p) = args.wave_success {
        policy.success_threshold_percent = p;
    }
    if let Some(rate) = args.rate {
        // Evenly spaced, so that any minute holds at most `rate` notices as the flag promises;
        // a bucket of `rate` would send that many at once and up to twice as many in the
        // first minute.
        policy.rate = RateLimit {
            per_minute: rate,
            burst: 1,
        };
    }
    if let Some(n) = args.concurrency {
        policy.max_in_flight = n;
    }
    if let Some(t) = args.device_timeout {
        // Under a second rounds up to the shortest timeout the policy accepts.
        policy.device_timeout_secs = t.as_secs().max(LIMITS.min_device_timeout_secs);
    }
    if let Some(k) = args.retries {
        policy.retries = k;
    }
    if let Some(i) = args.retry_interval {
        policy.retry_interval_secs = i.as_secs();
    }
    if let Some(w) = args.ack_window {
        policy.ack_window_ms = u64::try_from(w.as_millis()).unwrap_or(u64::MAX);
    }
    if let Some(k) = args.ack_resends {
        policy.ack_resends = k;
    }
    if let Some(x) = args.ack_backoff {
        policy.ack_backoff = x;
    }
    if let Some(d) = args.settle {
        policy.settle_ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    }
    if args.no_abort {
        policy.abort = None;
    } else if args.max_failures.is_some() || args.min_finished.is_some() {
        let default = AbortThreshold::default();
        policy.abort = Some(AbortThreshold {
            failure_percent: args.max_failures.unwrap_or(default.failure_percent),
            min_finished: args.min_finished.unwrap_or(default.min_finished),
        });
    }
    policy.only_from_versions = args.only_from.clone();
    policy
        .validate()
        .map_err(|e| anyhow::anyhow!(tr!("cli.rollout.bad_policy", why = e)))?;
    Ok(policy)
}

/// Follows the campaign until it is over; `None` when interrupted with Ctrl-C.
async fn follow(handle: &EngineHandle, id: CampaignId) -> anyhow::Result<Option<CampaignView>> {
    let mut watch = handle.watch();
    let progress = ProgressLine::new();
    loop {
        // Looked at in place: the view is cloned (all its devices) once, when it is over, not
        // on every snapshot of a 100,000-device campaign.
        let step = {
            let snapshot = watch.borrow_and_update();
            match snapshot.campaigns.iter().find(|c| c.snapshot.id == id) {
                None => Step::Wait,
                Some(view) => {
                    progress.show(&view.snapshot.counts);
                    let counts = view.snapshot.counts;
                    if let Some(why) = &view.halted {
                        Step::Halted(why.clone())
                    } else if view.snapshot.state.is_finished() && counts.in_flight() == 0 {
                        Step::Over(Box::new(view.clone()))
                    } else if view.snapshot.waves.blocked && counts.in_flight() == 0 {
                        Step::Blocked(
                            Box::new(view.clone()),
                            view.snapshot.waves.current.map_or(0, |w| w + 1),
                        )
                    } else {
                        Step::Wait
                    }
                }
            }
        };
        match step {
            Step::Wait => {}
            Step::Halted(why) => {
                progress.finish();
                // `why` says what stopped it: a refused database write (free space or fix
                // permissions), or another console that took the campaign over.
                bail!(tr!("cli.rollout.halted", id = id, why = why));
            }
            Step::Over(view) => {
                progress.finish();
                return Ok(Some(*view));
            }
            Step::Blocked(view, wave) => {
                // Headless, nobody can open the next wave: stop here, resumable.
                progress.finish();
                eprintln!("{}", tr!("cli.rollout.wave_blocked", wave = wave, id = id));
                return Ok(Some(*view));
            }
        }
        tokio::select! {
            changed = watch.changed() => {
                if changed.is_err() {
                    bail!(tr!("cli.engine_stopped"));
                }
            }
            _ = tokio::signal::ctrl_c() => {
                progress.finish();
                return Ok(None);
            }
        }
    }
}

/// What [`follow`] does after a look at the snapshot.
enum Step {
    Wait,
    Halted(String),
    Over(Box<CampaignView>),
    /// The wave gate is closed (the number of the wave waiting) and nothing is in flight.
    Blocked(Box<CampaignView>, u32),
}

/// A progress bar on a terminal; plain lines (on change, at most once a second) otherwise.
struct ProgressLine {
    bar: Option<ProgressBar>,
    last_line: std::sync::Mutex<(String, Option<std::time::Instant>)>,
}

impl ProgressLine {
    fn new() -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(0);
            if let Ok(style) = ProgressStyle::with_template(&tr!("cli.rollout.progress_template")) {
                bar.set_style(style);
            }
            bar
        });
        Self {
            bar,
            last_line: std::sync::Mutex::new((String::new(), None)),
        }
    }

    fn show(&self, counts: &Counts) {
        let finished = counts.total - counts.pending - counts.in_flight();
        let line = states::counts(counts);
        if let Some(bar) = &self.bar {
            bar.set_length(counts.total as u64);
            bar.set_position(finished as u64);
            bar.set_message(line);
            return;
        }
        let Ok(mut last) = self.last_line.lock() else {
            return;
        };
        let due = last
            .1
            .is_none_or(|at| at.elapsed() >= Duration::from_secs(1));
        if line != last.0 && due {
            eprintln!(
                "{}",
                tr!(
                    "cli.rollout.progress",
                    finished = finished,
                    total = counts.total,
                    line = line
                )
            );
            *last = (line, Some(std::time::Instant::now()));
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[derive(Debug, Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: RolloutArgs,
    }

    fn parse(extra: &[&str]) -> RolloutArgs {
        let mut argv = vec!["x", "--firmware", "f.bin", "--version", "2"];
        argv.extend_from_slice(extra);
        Wrapper::try_parse_from(argv).unwrap().args
    }

    /// `--help` with runs of whitespace folded (clap wraps long help).
    fn help_text() -> String {
        let help = Wrapper::command().render_long_help().to_string();
        help.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    #[test]
    fn every_dialects_notice_settings_are_flags_from_the_registry() {
        Wrapper::command().debug_assert();
        let help = help_text();
        let mut flags = 0;
        for dialect in registry::all() {
            for setting in dialect.notice_settings() {
                flags += 1;
                assert!(
                    help.contains(&format!(
                        "--{} <{}>",
                        setting.cli_flag,
                        // A text setting (a template) is given as a file.
                        if setting.text().is_some() {
                            "FILE"
                        } else {
                            "CHOICE"
                        }
                    )),
                    "{help}"
                );
                assert!(help.contains(setting.help), "{}: {help}", setting.help);
                for choice in setting.choices() {
                    assert!(help.contains(&format!("{}: {}", choice.value, choice.label)));
                }
                // Not given: the setting's default. Given: that choice, for that dialect.
                let defaults = parse(&[]).notice_settings.settings;
                assert_eq!(defaults.value(dialect.id(), setting), setting.default);
                for choice in setting.choices() {
                    let flag = format!("--{}", setting.cli_flag);
                    let chosen = parse(&[&flag, choice.value]).notice_settings.settings;
                    assert_eq!(chosen.value(dialect.id(), setting), choice.value);
                }
            }
        }
        assert!(flags >= 2, "the built-in dialects have settings");
    }

    #[test]
    fn firmware_server_caps_reach_the_engine_config() {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().to_str().unwrap();
        let defaults = parse(&["--data-dir", data_dir])
            .connection
            .engine_config()
            .unwrap();
        assert_eq!(
            defaults.firmware_server,
            crate::transport::http::ServerOptions::default()
        );
        let set = parse(&[
            "--data-dir",
            data_dir,
            "--max-connections",
            "30000",
            "--max-bandwidth",
            "200Mbit/s",
        ])
        .connection
        .engine_config()
        .unwrap()
        .firmware_server;
        assert_eq!(set.max_connections, 30_000);
        assert_eq!(
            set.max_bandwidth.map(|b| b.as_bytes_per_second()),
            Some(25_000_000)
        );
        for bad in [
            ["--max-bandwidth", "fast"],
            ["--max-bandwidth", "0MB/s"],
            ["--max-connections", "0"],
        ] {
            let argv = ["x", "--firmware", "f", "--version", "2", bad[0], bad[1]];
            let err = Wrapper::try_parse_from(argv).unwrap_err();
            assert_eq!(
                err.kind(),
                clap::error::ErrorKind::ValueValidation,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_setting_refuses_a_value_it_does_not_offer_naming_its_choices() {
        for setting in registry::all().iter().flat_map(|d| d.notice_settings()) {
            let flag = format!("--{}", setting.cli_flag);
            let argv = ["x", "--firmware", "f", "--version", "2", &flag, "bogus"];
            let err = Wrapper::try_parse_from(argv).unwrap_err();
            assert_eq!(err.kind(), clap::error::ErrorKind::InvalidValue);
            let text = err.to_string();
            for choice in setting.choices() {
                assert!(text.contains(choice.value), "{text}");
            }
        }
        // Aliases and case are accepted as the stored campaigns' reader accepts them.
        let args = parse(&[
            "--sign-method",
            "SHA-256",
            "--dji-upgrade-type",
            "Consistency",
        ]);
        let settings = args.notice_settings.settings;
        use crate::protocol::{aliyun, dji};
        assert_eq!(settings.value(aliyun::ID, &aliyun::SIGN_METHOD), "sha256");
        assert_eq!(settings.value(dji::ID, &dji::UPGRADE_TYPE), "consistency");
    }

    #[test]
    fn dialect_help_is_written_from_the_dialects_data() {
        let help = help_text();
        assert!(
            help.contains("Free text sent to MXCHIP FogCloud devices with the notice."),
            "{help}"
        );
        assert!(
            help.contains(
                "(aliyun:productKey/deviceName, fogcloud:product_key/device_name, dji:sn, \
                 aws:thingName)"
            ),
            "{help}"
        );
        assert!(
            help.contains(
                "(default 10s; Alibaba Cloud IoT, MXCHIP FogCloud, AWS IoT Jobs). Not for DJI \
                 Cloud API: a reply"
            ),
            "{help}"
        );
    }

    #[test]
    fn wave_sizes_parse() {
        assert_eq!("10".parse::<WaveSize>(), Ok(WaveSize::Count(10)));
        assert_eq!("25%".parse::<WaveSize>(), Ok(WaveSize::Percent(25)));
        assert!("0".parse::<WaveSize>().is_err());
        assert!("150%".parse::<WaveSize>().is_err());
        assert!("abc".parse::<WaveSize>().is_err());
        assert_eq!(parse_rate("120/min"), Ok(120));
        assert_eq!(parse_rate("5"), Ok(5));
        assert!(parse_rate("0/min").is_err());
    }

    #[test]
    fn policy_follows_the_flags() {
        let args = parse(&[
            "--target",
            "dji:SN1",
            "--wave",
            "10%",
            "--wave-success",
            "90%",
            "--rate",
            "600/min",
            "--concurrency",
            "7",
            "--device-timeout",
            "2m",
            "--retries",
            "3",
            "--retry-interval",
            "10s",
            "--max-failures",
            "30%",
            "--only-from",
            "1.0,1.1",
            "--ack-window",
            "5s",
            "--ack-resends",
            "4",
            "--ack-backoff",
            "3",
            "--settle",
            "500ms",
        ]);
        let policy = policy_from(&args, 95).unwrap();
        assert_eq!(
            (policy.ack_window_ms, policy.ack_resends, policy.ack_backoff),
            (5_000, 4, 3)
        );
        assert_eq!(policy.settle_ms, 500);
        assert_eq!(policy.canary, CanarySize::Percent(10));
        assert_eq!(policy.wave_size, 10);
        assert_eq!(policy.success_threshold_percent, 90);
        assert_eq!(policy.rate.per_minute, 600);
        assert_eq!(
            policy.rate.burst, 1,
            "evenly spaced: no minute holds more than 600"
        );
        assert_eq!(policy.max_in_flight, 7);
        assert_eq!(policy.device_timeout_secs, 120);
        assert_eq!(policy.retries, 3);
        assert_eq!(policy.retry_interval_secs, 10);
        assert_eq!(policy.abort.unwrap().failure_percent, 30);
        assert_eq!(policy.only_from_versions, vec!["1.0", "1.1"]);
        let none = policy_from(&parse(&["--all", "--no-abort"]), 3).unwrap();
        assert_eq!(none.abort, None);
        assert_eq!(none.ack_window_ms, Policy::default().ack_window_ms);
        assert!(policy_from(&parse(&["--all", "--ack-backoff", "0"]), 3).is_err());
    }

    #[test]
    fn all_means_heard_unless_remembered_devices_are_asked_for() {
        let heard = DeviceRecord::new("aliyun:pk/here".parse().unwrap(), 10);
        let mut remembered = DeviceRecord::new("aliyun:pk/gone".parse().unwrap(), 5);
        remembered.heard_since_start = false;
        let mut drone = DeviceRecord::new("dji:DRONE".parse().unwrap(), 10);
        drone.online = false;
        let records = [heard, remembered, drone];
        let (targets, left_out) = discovered_targets(records.iter(), &[], None, false);
        let names: Vec<String> = targets.iter().map(ToString::to_string).collect();
        assert_eq!(names, ["aliyun:pk/here"]);
        assert_eq!(left_out, 1);
        let (targets, left_out) = discovered_targets(records.iter(), &[], None, true);
        assert_eq!(targets.len(), 2);
        assert_eq!(left_out, 0);
        let with_all = parse(&["--all", "--include-remembered"]);
        assert!(with_all.include_remembered);
        assert!(check_usage(&with_all).is_ok());
        let without_all = parse(&["--target", "dji:A", "--include-remembered"]);
        assert!(
            check_usage(&without_all).is_err(),
            "--include-remembered needs --all"
        );
    }

    #[test]
    fn targets_and_all_conflict_and_modules_must_agree() {
        let mut argv = vec![
            "x",
            "--firmware",
            "f",
            "--version",
            "2",
            "--all",
            "--target",
            "dji:A",
        ];
        assert!(Wrapper::try_parse_from(argv.clone()).is_err());
        argv.truncate(5);
        argv.extend(["--target", "aliyun:pk/a#MCU", "--target", "aliyun:pk/b"]);
        let args = Wrapper::try_parse_from(argv).unwrap().args;
        assert!(module_of(&args).is_err());
        let args = parse(&["--target", "aliyun:pk/a#MCU"]);
        assert_eq!(module_of(&args).unwrap().as_deref(), Some("MCU"));
    }
}
