//! `ota-console devices`: listens on the broker for a while and lists the devices it discovered.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Args;
use serde::Serialize;

use super::connection::ConnectionArgs;
use crate::engine::{self, FirmwareSource};
use crate::fleet::DeviceRecord;
use crate::i18n::tr;

#[derive(Debug, Clone, Args)]
pub struct DevicesArgs {
    #[command(flatten)]
    pub connection: ConnectionArgs,

    /// How long to listen for device announcements (e.g. 5s, 1m).
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = humantime::parse_duration)]
    pub discover_for: Duration,

    /// How long to wait for the broker before giving up (e.g. 30s, 2m).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
    pub connect_timeout: Duration,

    /// Print a JSON array instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// One device in the JSON output.
#[derive(Debug, Serialize)]
pub struct DeviceEntry {
    pub id: String,
    pub dialect: String,
    pub gateway: Option<String>,
    pub versions: std::collections::BTreeMap<String, String>,
    /// RFC 3339, UTC.
    pub last_seen: String,
}

impl From<&DeviceRecord> for DeviceEntry {
    fn from(r: &DeviceRecord) -> Self {
        DeviceEntry {
            id: r.id.to_string(),
            dialect: r.dialect().to_string(),
            gateway: r.gateway.as_ref().map(ToString::to_string),
            versions: r.versions.iter().cloned().collect(),
            last_seen: rfc3339(r.last_seen_ms),
        }
    }
}

pub async fn run(args: &DevicesArgs) -> anyhow::Result<()> {
    let mut config = args.connection.engine_config()?;
    config.firmware = FirmwareSource::Disabled;
    // A look around must not drain what the broker kept for `rollout --resume`.
    config.keep_session = args.connection.client_id.is_some();
    let started_ms = now_ms();
    let handle = engine::start(config).await?;
    super::connection::wait_for_broker(&handle, args.connect_timeout).await?;
    eprintln!(
        "{}",
        tr!(
            "cli.rollout.listening",
            duration = humantime::format_duration(args.discover_for)
        )
    );
    tokio::time::sleep(args.discover_for).await;
    let snapshot = handle.snapshot();
    handle.shut_down().await;
    let seen: Vec<DeviceEntry> = snapshot
        .devices
        .iter()
        .filter(|row| row.record.last_seen_ms >= started_ms)
        .map(|row| DeviceEntry::from(&row.record))
        .collect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&seen)?);
    } else {
        print_table(&seen);
    }
    Ok(())
}

fn print_table(devices: &[DeviceEntry]) {
    println!(
        "{} {} {} {}",
        pad(&tr!("cli.devices.device"), 48),
        pad(&tr!("cli.devices.dialect"), 9),
        pad(&tr!("cli.devices.gateway"), 40),
        tr!("cli.devices.versions")
    );
    for d in devices {
        let versions: Vec<String> = d.versions.iter().map(|(m, v)| format!("{m}={v}")).collect();
        println!(
            "{:<48} {:<9} {:<40} {}",
            d.id,
            d.dialect,
            d.gateway.as_deref().unwrap_or("-"),
            versions.join(" ")
        );
    }
    println!("{}", tr!("cli.devices.count", count = devices.len()));
}

/// `text` padded to `width` terminal columns (a CJK character takes two).
fn pad(text: &str, width: usize) -> String {
    let columns: usize = text
        .chars()
        .map(|c| if c >= '\u{1100}' { 2 } else { 1 })
        .sum();
    format!("{text}{}", " ".repeat(width.saturating_sub(columns)))
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

pub(crate) fn rfc3339(ms: i64) -> String {
    let at = UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_millis(at).to_string()
}
