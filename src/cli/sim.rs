//! `ota-console sim`: runs a simulated fleet (the units every registered dialect's simulator
//! offers: devices, gateways, docks) against a broker until Ctrl-C, printing a one-line
//! summary every few seconds.
//!
//! Owns: the command-line options of the simulator and turning them into a [`SimConfig`]; the
//! options that count units (`--aliyun`, `--fogcloud-gateways` with `--subs`, `--dji-docks`,
//! ...) are generated from the dialects' [`crate::sim::SimFactory`]s ([`UnitCounts`]). Must
//! never: implement device behaviour (that is each dialect's simulator) or name a dialect.

use std::time::Duration;

use anyhow::Context;
use clap::{Arg, ArgMatches, Args, FromArgMatches};

use crate::i18n::tr;
use crate::protocol::registry;
use crate::sim::{
    Behaviour, FaultOdds, SimConfig, SimFleet, SimLogins, SimTotals, units_from_flags,
};

/// How many units of each kind, as `(option, value)`: one option per kind of unit of every
/// registered dialect's simulator ([`crate::sim::UnitKind::flag`], default 0) and one per
/// kind's members ([`crate::sim::MemberKind::flag`], default the kind's).
#[derive(Debug, Clone, Default)]
pub struct UnitCounts(pub Vec<(&'static str, usize)>);

impl UnitCounts {
    /// Every generated option: `(flag, value name, help, default)`.
    fn options() -> Vec<(&'static str, &'static str, String, Option<&'static str>)> {
        let mut options = Vec::new();
        for factory in registry::sim_factories() {
            for kind in factory.kinds() {
                options.push((kind.flag, kind.value_name, kind.help.to_owned(), Some("0")));
                if let Some(m) = &kind.members {
                    let help = format!("{} [default: {}]", m.help, m.default);
                    options.push((m.flag, m.value_name, help, None));
                }
            }
        }
        options
    }
}

impl FromArgMatches for UnitCounts {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let mut counts = Vec::new();
        for (flag, ..) in UnitCounts::options() {
            if let Some(n) = matches.try_get_one::<usize>(flag).ok().flatten() {
                counts.push((flag, *n));
            }
        }
        Ok(UnitCounts(counts))
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = UnitCounts::from_arg_matches(matches)?;
        Ok(())
    }
}

impl Args for UnitCounts {
    fn augment_args(mut cmd: clap::Command) -> clap::Command {
        for (flag, value_name, help, default) in UnitCounts::options() {
            let mut arg = Arg::new(flag)
                .long(flag)
                .value_name(value_name)
                .help(help)
                .value_parser(clap::value_parser!(usize));
            if let Some(default) = default {
                arg = arg.default_value(default);
            }
            cmd = cmd.arg(arg);
        }
        cmd
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        UnitCounts::augment_args(cmd)
    }
}

#[derive(Debug, Clone, Args)]
pub struct SimArgs {
    /// Broker to connect the devices to.
    #[arg(long, value_name = "URL", default_value = "mqtt://127.0.0.1:1883")]
    pub broker: String,
    /// How many units of each kind (`--aliyun N`, `--fogcloud-gateways G --subs K`, ...).
    #[command(flatten)]
    pub units: UnitCounts,
    /// Firmware version every device reports at start.
    #[arg(long, value_name = "V", default_value = "1.0.0")]
    pub version: String,
    /// Extra module (repeatable) of the devices whose dialect reports a version per module
    /// (Alibaba's), reported on its own.
    #[arg(long = "module", value_name = "NAME")]
    pub modules: Vec<String>,
    /// Seed for every random choice: same seed, same failures.
    #[arg(long, value_name = "S", default_value_t = 1)]
    pub seed: u64,
    /// Product key of the devices whose ids have one.
    #[arg(long, value_name = "PK", default_value = "a1SimProduct")]
    pub product_key: String,
    /// Start of every device name (e.g. sim → sim-ali-0001, sim-dock-0001).
    #[arg(long, value_name = "PREFIX", default_value = "sim")]
    pub name_prefix: String,
    /// Download cap per device, bytes per second (no cap when left out).
    #[arg(long, value_name = "BYTES_PER_SEC")]
    pub bandwidth: Option<u64>,
    /// Seconds between a verified download and the new version being reported.
    #[arg(long, value_name = "SECS", default_value_t = 2.0)]
    pub install_secs: f64,
    /// Probability that a download breaks off half-way.
    #[arg(long, value_name = "P", default_value_t = 0.0)]
    pub fail_download: f64,
    /// Probability that a download arrives corrupted (digest verification fails).
    #[arg(long, value_name = "P", default_value_t = 0.0)]
    pub fail_verify: f64,
    /// Probability that writing the firmware to flash fails.
    #[arg(long, value_name = "P", default_value_t = 0.0)]
    pub fail_flash: f64,
    /// Probability that a unit refuses an upgrade request it could answer with an error (a dock
    /// whose aircraft is in flight or low on battery).
    #[arg(long, value_name = "P", default_value_t = 0.0)]
    pub reject: f64,
    /// Probability that a device never answers (chosen once per device).
    #[arg(long, value_name = "P", default_value_t = 0.0)]
    pub silent: f64,
    /// Probability that a device drops off the network mid-download and comes back later.
    #[arg(long, value_name = "P", default_value_t = 0.0)]
    pub offline_mid_download: f64,
    /// Seconds a device stays away after dropping off mid-download.
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    pub offline_secs: f64,
    /// Devices ask for firmware at start and periodically instead of waiting for a push.
    #[arg(long)]
    pub pull: bool,
    /// Seconds between firmware requests in --pull mode.
    #[arg(long, value_name = "SECS", default_value_t = 60.0)]
    pub pull_secs: f64,
    /// Report download progress every SECS seconds instead of at each 10 % mark.
    #[arg(long, value_name = "SECS")]
    pub progress_secs: Option<f64>,
    /// Seconds between summary lines.
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    pub summary_secs: f64,
    /// Behave like the strictest embedded device stacks: report the version before
    /// subscribing (see --subscribe-delay-ms), ignore as broken any notice with a missing or
    /// empty field, and download firmware with a minimal HTTP/1.1 client that finds headers by
    /// their exact names and needs `Content-Length`, as many vendor SDKs do.
    #[arg(long)]
    pub strict: bool,
    /// With --strict: milliseconds between a device's version report and its subscription.
    #[arg(long, value_name = "MS", default_value_t = 500)]
    pub subscribe_delay_ms: u64,
    /// Log the devices in to a secured broker with the credentials of this data directory (the
    /// console's: `alibaba-device-secrets.csv`, `mqtt-users.txt`); devices it has none for
    /// connect without.
    #[arg(long, value_name = "DIR", conflicts_with = "provision")]
    pub credentials: Option<std::path::PathBuf>,
    /// Like --credentials, and first give every simulated device that has none in DIR fresh
    /// credentials (written to DIR's files, which a running embedded broker re-reads).
    #[arg(long, value_name = "DIR")]
    pub provision: Option<std::path::PathBuf>,
    /// How many units (a device, a gateway with its sub-devices, a dock with its drone) share
    /// one MQTT connection, as devices behind a site proxy do; each still subscribes and
    /// publishes on its own topics. With --provision, each shared connection gets a site user
    /// listing its devices. Alibaba devices with a secret keep one connection each.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub per_connection: usize,
    /// Print the summaries as JSON lines (`{"event": "summary" | "stopped", "totals": {..}}`)
    /// for scripts and benchmarks.
    #[arg(long)]
    pub json: bool,
}

impl SimArgs {
    /// The library configuration these options describe.
    pub fn to_config(&self) -> anyhow::Result<SimConfig> {
        let mut cfg = self.plain_config()?;
        if let Some(dir) = &self.provision {
            let (logins, added) = SimLogins::provision(dir, &cfg)
                .with_context(|| tr!("cli.sim.provisioning", dir = dir.display()))?;
            if added > 0 {
                eprintln!(
                    "{}",
                    tr!("cli.sim.provisioned", count = added, dir = dir.display())
                );
            }
            cfg.logins = std::sync::Arc::new(logins);
        } else if let Some(dir) = &self.credentials {
            let logins = SimLogins::load(dir)
                .with_context(|| tr!("cli.sim.reading_credentials", dir = dir.display()))?;
            cfg.logins = std::sync::Arc::new(logins);
        }
        Ok(cfg)
    }

    fn plain_config(&self) -> anyhow::Result<SimConfig> {
        Ok(SimConfig {
            broker_url: self.broker.clone(),
            units: units_from_flags(&registry::sim_factories(), &self.units.0)?,
            version: self.version.clone(),
            modules: self.modules.clone(),
            product_key: self.product_key.clone(),
            name_prefix: self.name_prefix.clone(),
            seed: self.seed,
            behaviour: Behaviour {
                bandwidth_bytes_per_sec: self.bandwidth,
                install: secs("--install-secs", self.install_secs)?,
                faults: FaultOdds {
                    download: self.fail_download,
                    verify: self.fail_verify,
                    flash: self.fail_flash,
                    reject: self.reject,
                    silent: self.silent,
                    offline_mid_download: self.offline_mid_download,
                    script: None,
                },
                pull: self.pull,
                pull_interval: secs("--pull-secs", self.pull_secs)?,
                offline_for: secs("--offline-secs", self.offline_secs)?,
                progress_interval: self
                    .progress_secs
                    .map(|v| secs("--progress-secs", v))
                    .transpose()?,
                strict_subscribe_delay: Duration::from_millis(self.subscribe_delay_ms),
                ..Behaviour::default()
            },
            strict: self.strict,
            logins: std::sync::Arc::default(),
            per_connection: self.per_connection,
        })
    }
}

fn secs(option: &str, value: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(value)
        .map_err(|_| anyhow::anyhow!(tr!("cli.sim.bad_seconds", option = option, value = value)))
}

/// The events of `--json` lines (data for scripts, never translated).
const EVENT_SUMMARY: &str = "summary";
const EVENT_STOPPED: &str = "stopped";

/// Runs the fleet until Ctrl-C.
pub async fn run(args: SimArgs) -> anyhow::Result<()> {
    let cfg = args.to_config()?;
    let summary_every = secs("--summary-secs", args.summary_secs)?;
    anyhow::ensure!(!summary_every.is_zero(), tr!("cli.sim.summary_zero"));
    let fleet = SimFleet::start(cfg)
        .await
        .context(tr!("cli.sim.starting"))?;
    let ids = fleet.device_ids();
    if args.json {
        println!(
            "{}",
            serde_json::json!({ "event": "started", "devices": ids.len() })
        );
    } else {
        println!(
            "{}",
            tr!(
                "cli.sim.started",
                count = ids.len(),
                broker = args.broker,
                first = ids.first().map(ToString::to_string).unwrap_or_default()
            )
        );
    }
    let mut every = tokio::time::interval(summary_every);
    every.tick().await;
    loop {
        tokio::select! {
            r = tokio::signal::ctrl_c() => {
                r.context(tr!("cli.waiting_for_ctrl_c"))?;
                break;
            }
            _ = every.tick() => println!("{}", line(args.json, EVENT_SUMMARY, &fleet.stats().totals())),
        }
    }
    let last = fleet.stats().totals();
    fleet.shutdown().await;
    println!("{}", line(args.json, EVENT_STOPPED, &last));
    Ok(())
}

/// One summary line: JSON with `--json`, else text (`stopped: ...` for the last one).
fn line(json: bool, event: &str, totals: &SimTotals) -> String {
    if json {
        serde_json::json!({ "event": event, "totals": totals }).to_string()
    } else if event == EVENT_STOPPED {
        tr!("cli.sim.stopped", summary = summary(totals))
    } else {
        summary(totals)
    }
}

fn summary(t: &SimTotals) -> String {
    tr!(
        "cli.sim.summary",
        devices = t.devices,
        connected = t.connected,
        idle = t.idle,
        downloading = t.downloading,
        installing = t.installing,
        failed = t.failed,
        rejected = t.rejected,
        offline = t.offline,
        notices = t.notices_received,
        broken = t.broken_notices,
        upgraded = t.upgrades_succeeded,
        failures = t.upgrades_failed,
        missing = t.missing_replies,
        dropped = t.messages_dropped,
        published = t.messages_published,
        acked = t.messages_acked
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        sim: SimArgs,
    }

    #[test]
    fn options_map_to_config() {
        let cli = Cli::parse_from([
            "x",
            "--broker",
            "mqtt://127.0.0.1:1999",
            "--aliyun",
            "3",
            "--fogcloud-gateways",
            "2",
            "--subs",
            "5",
            "--dji-docks",
            "1",
            "--fail-verify",
            "0.25",
            "--bandwidth",
            "1000",
            "--install-secs",
            "0.5",
            "--pull",
            "--module",
            "MCU",
            "--progress-secs",
            "1",
            "--strict",
            "--subscribe-delay-ms",
            "3000",
        ]);
        let cfg = cli.sim.to_config().unwrap();
        let units: Vec<_> = cfg
            .units
            .iter()
            .map(|u| (u.kind.flag, u.count, u.members))
            .collect();
        assert_eq!(
            units,
            [
                ("aliyun", 3, 0),
                ("fogcloud-gateways", 2, 5),
                ("dji-docks", 1, 0)
            ]
        );
        assert_eq!(cfg.behaviour.faults.verify, 0.25);
        assert_eq!(cfg.behaviour.bandwidth_bytes_per_sec, Some(1000));
        assert_eq!(cfg.behaviour.install, Duration::from_millis(500));
        assert!(cfg.behaviour.pull);
        assert_eq!(cfg.modules, vec!["MCU".to_owned()]);
        assert_eq!(
            cfg.behaviour.progress_interval,
            Some(Duration::from_secs(1))
        );
        assert!(cfg.strict);
        assert_eq!(cfg.behaviour.strict_subscribe_delay, Duration::from_secs(3));
        cfg.validate().unwrap();
        let marks_only = Cli::parse_from(["x"]).sim.to_config().unwrap();
        assert_eq!(marks_only.behaviour.progress_interval, None);
        assert!(!marks_only.strict);
        assert!(marks_only.units.is_empty());
    }

    #[test]
    fn gateways_have_four_sub_devices_unless_told() {
        let cfg = Cli::parse_from(["x", "--fogcloud-gateways", "2", "--fogcloud", "1"])
            .sim
            .to_config()
            .unwrap();
        let units: Vec<_> = cfg
            .units
            .iter()
            .map(|u| (u.kind.flag, u.count, u.members))
            .collect();
        assert_eq!(units, [("fogcloud", 1, 0), ("fogcloud-gateways", 2, 4)]);
        let none = Cli::parse_from(["x", "--fogcloud-gateways", "1", "--subs", "0"])
            .sim
            .to_config()
            .unwrap();
        let err = none.validate().unwrap_err().to_string();
        assert!(err.contains("at least one sub-device (--subs)"), "{err}");
        assert!(Cli::try_parse_from(["x", "--dji-docks", "many"]).is_err());
    }

    #[test]
    fn strict_is_off_unless_asked() {
        assert!(!Cli::parse_from(["x"]).sim.to_config().unwrap().strict);
        let strict = Cli::parse_from(["x", "--strict"]).sim.to_config().unwrap();
        assert!(strict.strict);
    }

    #[test]
    fn json_summaries_carry_the_totals() {
        let totals = SimTotals {
            devices: 2,
            messages_acked: 7,
            ..SimTotals::default()
        };
        let parsed: serde_json::Value =
            serde_json::from_str(&line(true, "stopped", &totals)).unwrap();
        assert_eq!(parsed["event"], "stopped");
        assert_eq!(parsed["totals"]["devices"], 2);
        assert_eq!(parsed["totals"]["messages_acked"], 7);
        assert!(line(false, "stopped", &totals).starts_with("stopped: 2 devices"));
    }

    #[test]
    fn the_fixed_options_are_the_ones_factories_must_not_take() {
        use clap::CommandFactory;
        let mut cmd = crate::cli::args::Cli::command();
        cmd.build();
        let sim = cmd.find_subcommand("sim").unwrap();
        let generated: Vec<&str> = UnitCounts::options().iter().map(|o| o.0).collect();
        let mut fixed: Vec<&str> = sim
            .get_arguments()
            .filter_map(clap::Arg::get_long)
            .filter(|l| !generated.contains(l))
            .collect();
        fixed.sort_unstable();
        let mut listed = crate::sim::FIXED_OPTIONS.to_vec();
        listed.sort_unstable();
        assert_eq!(fixed, listed);
    }

    #[test]
    fn negative_seconds_are_refused() {
        let cli = Cli::parse_from(["x", "--install-secs=-1"]);
        let err = cli.sim.to_config().unwrap_err().to_string();
        assert!(err.contains("--install-secs"), "{err}");
    }
}
