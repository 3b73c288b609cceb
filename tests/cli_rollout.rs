//! The real `ota-console rollout` binary against a broker started here, with a simulated fleet in
//! this process: exit codes and the JSON report's shape. Killing and resuming it:
//! `tests/console_faults.rs`.

// Test code throughout: clippy's allow-unwrap-in-tests (clippy.toml) goes by `cfg(test)`.
#![cfg(test)]

use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use clap::{CommandFactory, Parser};
use ota_console::cli::args::{Cli, Command as CliCommand};
use ota_console::device_id::{DialectId, DialectIdent, IdShape};
use ota_console::protocol::{
    Capabilities, Choice, DecodeError, Dialect, EncodeError, ErrorTable, Event, Notice,
    NoticeSetting, Outbound, SettingKind, aliyun, registry,
};

use ota_console::device_id::DeviceId;
use ota_console::rollout::Timestamp;
use ota_console::sim::{Behaviour, SimConfig, SimFleet, SimTotals};
use ota_console::store::{InventoryDevice, Store};
use ota_console::testing::console::{Console, rollout_args, set_flag};
use ota_console::testing::firmware_file;
use ota_console::testing::sim_units;
use ota_console::transport::broker::{BrokerSettings, EmbeddedBroker};

fn base_args(broker: &EmbeddedBroker, dir: &std::path::Path, fw: &std::path::Path) -> Vec<String> {
    rollout_args(&format!("mqtt://{}", broker.local_addr()), dir, fw)
}

fn sim(broker: &EmbeddedBroker, behaviour: Behaviour) -> SimConfig {
    SimConfig {
        broker_url: format!("mqtt://{}", broker.local_addr()),
        version: "1.0.0".into(),
        behaviour,
        // As strict as real device stacks: report before subscribing, drop notices with a
        // missing or empty field, download by exact header names with Content-Length required.
        strict: true,
        ..SimConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_all_writes_a_report_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let broker =
        EmbeddedBroker::start(BrokerSettings::open("127.0.0.1:0".parse().unwrap())).unwrap();
    let fw = firmware_file(dir.path(), 100_000);
    let report = dir.path().join("report.json");
    let mut args = base_args(&broker, dir.path(), &fw);
    args.extend(
        [
            "--all",
            "--dialect",
            "aliyun",
            "--dialect",
            "fogcloud",
            "--discover-for",
            "3s",
            "--wave",
            "100%",
            "--concurrency",
            "100",
            "--report",
        ]
        .map(String::from),
    );
    args.push(report.display().to_string());
    let mut console = Console::spawn(&args, dir.path());
    console.expect_line("listening for devices");
    let fleet = SimFleet::start(SimConfig {
        units: sim_units(&[
            ("aliyun", 3),
            ("fogcloud", 1),
            ("fogcloud-gateways", 1),
            ("subs", 2),
        ]),
        ..sim(
            &broker,
            Behaviour {
                install: Duration::from_millis(100),
                ..Behaviour::default()
            },
        )
    })
    .await
    .unwrap();
    let (code, lines) = tokio::task::spawn_blocking(move || console.wait())
        .await
        .unwrap();
    assert_eq!(code, 0, "{lines:#?}");

    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let campaign = &report["campaign"];
    assert!(campaign["id"].is_i64());
    assert_eq!(campaign["version"], "2.0.0");
    assert_eq!(campaign["state"], "completed");
    assert_eq!(campaign["package"]["size"], 100_000);
    assert_eq!(campaign["package"]["md5"].as_str().unwrap().len(), 32);
    assert_eq!(campaign["package"]["sha256"].as_str().unwrap().len(), 64);
    assert!(campaign["policy"].is_object());
    assert_eq!(campaign["policy"]["ack_window_ms"], 10_000);
    assert_eq!(campaign["policy"]["settle_ms"], 2_000);
    assert!(campaign["started_at"].is_u64() && campaign["finished_at"].is_u64());
    let devices = report["devices"].as_array().unwrap();
    // 3 Alibaba + 1 FogCloud + 1 gateway + 2 sub-devices
    assert_eq!(devices.len(), 7, "{devices:#?}");
    for d in devices {
        for key in [
            "id",
            "status",
            "from_version",
            "to_version",
            "percent",
            "attempts",
            "resends",
            "error",
            "code",
        ] {
            assert!(d.get(key).is_some(), "{key} missing in {d}");
        }
        assert_eq!(d["status"], "succeeded", "{d}");
        assert_eq!(d["from_version"], "1.0.0");
        assert_eq!(d["to_version"], "2.0.0");
        assert_eq!(d["percent"], 100);
        assert_eq!(d["attempts"], 1);
        assert!(d["error"].is_null() && d["code"].is_null());
        let id: DeviceId = d["id"].as_str().unwrap().parse().unwrap();
        assert_eq!(fleet.stats().get(&id).unwrap().version, "2.0.0");
    }
    assert_eq!(fleet.stats().totals().broken_notices, 0);
    traffic_matches_the_devices(&report, &fleet.stats().totals());
    fleet.shutdown().await;
}

/// The console's counters in its report, taken when the campaign ended, against the devices'
/// own: every progress report they sent was taken in, every notice it sent reached its device.
fn traffic_matches_the_devices(report: &serde_json::Value, totals: &SimTotals) {
    let traffic = &report["traffic"];
    assert!(totals.progress_sent > 0, "{totals:?}");
    assert_eq!(
        traffic["progress"], totals.progress_sent,
        "{traffic} {totals:?}"
    );
    assert_eq!(
        traffic["notices"], totals.notices_received,
        "{traffic} {totals:?}"
    );
    assert_eq!(traffic["rejected"], 0, "{traffic}");
    // Not more than the broker acknowledged (no duplicates), nor fewer than one per device (each
    // of the 7 announced its version).
    let received = traffic["received"].as_u64().unwrap();
    assert!(
        (7..=totals.messages_acked).contains(&received),
        "{traffic} {totals:?}"
    );
    assert!(traffic["published"].as_u64().unwrap() >= totals.notices_received);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_devices_give_exit_code_one() {
    let dir = tempfile::tempdir().unwrap();
    let broker =
        EmbeddedBroker::start(BrokerSettings::open("127.0.0.1:0".parse().unwrap())).unwrap();
    let fw = firmware_file(dir.path(), 20_000);
    let mut behaviour = Behaviour {
        install: Duration::from_millis(50),
        ..Behaviour::default()
    };
    behaviour.faults.verify = 1.0;
    let mut args = base_args(&broker, dir.path(), &fw);
    args.extend(
        [
            "--all",
            "--discover-for",
            "2s",
            "--wave",
            "100%",
            "--retries",
            "0",
            "--no-abort",
        ]
        .map(String::from),
    );
    let mut console = Console::spawn(&args, dir.path());
    console.expect_line("listening for devices");
    let fleet = SimFleet::start(SimConfig {
        units: sim_units(&[("aliyun", 2)]),
        ..sim(&broker, behaviour)
    })
    .await
    .unwrap();
    let (code, lines) = tokio::task::spawn_blocking(move || console.wait())
        .await
        .unwrap();
    assert_eq!(code, 1, "{lines:#?}");
    assert!(lines.iter().any(|l| l.contains("2 failed")), "{lines:#?}");
    fleet.shutdown().await;
}

/// Writes `n` Alibaba devices into the inventory of the database at `db`, as an earlier run
/// would have left them: known, on version 1.0.0, last heard an hour ago, and not connected now.
fn remember_absent_devices(db: &std::path::Path, n: usize) -> Vec<DeviceId> {
    let mut store = Store::open(db).unwrap();
    let an_hour_ago = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
        - 3_600_000;
    let devices: Vec<InventoryDevice> = (0..n)
        .map(|i| InventoryDevice {
            id: DeviceId::aliyun("remembered", &format!("gone-{i}")).unwrap(),
            gateway: None,
            versions: [("default".to_owned(), "1.0.0".to_owned())].into(),
            last_seen: Some(Timestamp::from_millis(an_hour_ago)),
        })
        .collect();
    store.upsert_devices(&devices).unwrap();
    devices.into_iter().map(|d| d.id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_all_targets_the_devices_heard_not_the_ones_remembered() {
    let dir = tempfile::tempdir().unwrap();
    let broker =
        EmbeddedBroker::start(BrokerSettings::open("127.0.0.1:0".parse().unwrap())).unwrap();
    let fw = firmware_file(dir.path(), 20_000);
    let report = dir.path().join("report.json");
    let db = dir.path().join("console.db");
    let gone = remember_absent_devices(&db, 3);
    let mut args = base_args(&broker, dir.path(), &fw);
    // A short device timeout: a remembered device targeted by mistake fails the run in
    // seconds, not in minutes.
    set_flag(&mut args, "--device-timeout", "8s");
    args.extend(
        [
            "--all",
            "--discover-for",
            "3s",
            "--canary",
            "1",
            "--wave",
            "100%",
            "--retries",
            "0",
            "--report",
        ]
        .map(String::from),
    );
    args.push(report.display().to_string());
    let mut console = Console::spawn(&args, dir.path());
    console.expect_line("listening for devices");
    let fleet = SimFleet::start(SimConfig {
        units: sim_units(&[("aliyun", 2)]),
        ..sim(
            &broker,
            Behaviour {
                install: Duration::from_millis(50),
                ..Behaviour::default()
            },
        )
    })
    .await
    .unwrap();
    let (code, lines) = tokio::task::spawn_blocking(move || console.wait())
        .await
        .unwrap();
    assert_eq!(code, 0, "{lines:#?}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("3 device(s) remembered from earlier runs were not heard")),
        "{lines:#?}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let mut targeted: Vec<DeviceId> = report["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap().parse().unwrap())
        .collect();
    targeted.sort();
    let mut present = fleet.device_ids();
    present.sort();
    assert_eq!(targeted, present, "only the devices heard are targets");
    assert!(gone.iter().all(|g| !targeted.contains(g)));
    fleet.shutdown().await;
}

#[test]
fn include_remembered_needs_all() {
    let out = Command::new(env!("CARGO_BIN_EXE_ota-console"))
        .args([
            "rollout",
            "--firmware",
            "x.bin",
            "--version",
            "1",
            "--target",
            "aliyun:pk/a",
            "--include-remembered",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--all"), "{stderr}");
}

#[test]
fn bad_usage_exits_two_with_a_reason() {
    let out = Command::new(env!("CARGO_BIN_EXE_ota-console"))
        .args([
            "rollout",
            "--firmware",
            "x.bin",
            "--version",
            "1",
            "--target",
            "aliyun:bad",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("aliyun:bad"), "{stderr}");
}

/// `--help` with runs of whitespace folded (clap wraps long help).
fn folded(text: &[u8]) -> String {
    String::from_utf8_lossy(text)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn rollout_flags_for_notice_settings_come_from_the_registry() {
    let help = Command::new(env!("CARGO_BIN_EXE_ota-console"))
        .args(["rollout", "--help"])
        .output()
        .unwrap();
    assert_eq!(help.status.code(), Some(0));
    let help = folded(&help.stdout);
    // The binary has the built-in dialects only (this process may have registered one more).
    let settings: Vec<_> = registry::all()
        .into_iter()
        .filter(|d| d.id().rank() < registry::FIRST_USER_RANK)
        .flat_map(|d| d.notice_settings())
        .collect();
    assert!(settings.len() >= 2);
    for setting in &settings {
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
        // A value the setting does not offer is refused, naming the ones it does.
        let flag = format!("--{}", setting.cli_flag);
        let out = Command::new(env!("CARGO_BIN_EXE_ota-console"))
            .args(["rollout", "--firmware", "x.bin", "--version", "1"])
            .args(["--target", "dji:SN1", &flag, "bogus"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(&flag), "{stderr}");
        for choice in setting.choices() {
            assert!(stderr.contains(choice.value), "{stderr}");
        }
    }
}

/// A dialect loaded at run time, with one notice setting of its own.
struct Acme;

static ACME_MODE: NoticeSetting = NoticeSetting {
    key: "mode",
    label: "Acme mode",
    help: "Acme install mode: fast or safe",
    cli_flag: "acme-mode",
    legacy_key: None,
    kind: SettingKind::Choice(&[
        Choice {
            value: "fast",
            label: "fast install",
            aliases: &[],
        },
        Choice {
            value: "safe",
            label: "safe install",
            aliases: &[],
        },
    ]),
    default: "safe",
};

impl Dialect for Acme {
    fn id(&self) -> DialectId {
        static IDENT: OnceLock<DialectIdent> = OnceLock::new();
        DialectId::new(IDENT.get_or_init(|| DialectIdent {
            rank: registry::next_user_rank(),
            prefix: "acme",
            label: "Acme",
            shape: IdShape::Name { name: "sn" },
        }))
    }
    fn subscriptions(&self) -> &[&'static str] {
        &["acme/+/up"]
    }
    fn owns_topic(&self, topic: &str) -> bool {
        topic.starts_with("acme/")
    }
    fn decode(&self, _topic: &str, _payload: &[u8]) -> Result<Vec<Event>, DecodeError> {
        Ok(Vec::new())
    }
    fn encode(&self, notice: &Notice) -> Result<Outbound, EncodeError> {
        Err(EncodeError::DialectMismatch {
            device: notice.device().clone(),
        })
    }
    fn capabilities(&self) -> &'static Capabilities {
        aliyun::DIALECT.capabilities()
    }
    fn notice_settings(&self) -> &'static [NoticeSetting] {
        std::slice::from_ref(&ACME_MODE)
    }
    fn errors(&self) -> &'static ErrorTable {
        &aliyun::ERRORS
    }
    fn topic_routes(&self) -> &'static [ota_console::access::rules::TopicRoute] {
        &[]
    }
    fn samples(&self) -> &'static ota_console::protocol::Samples {
        static SAMPLES: ota_console::protocol::Samples = ota_console::protocol::Samples {
            device: "acme:SN1",
            sub_device: None,
            uplink: &[],
        };
        &SAMPLES
    }
}

#[test]
fn a_dialect_registered_at_run_time_gets_its_setting_as_a_flag() {
    static ACME: Acme = Acme;
    let expected = ACME.id();
    let acme = registry::register(&ACME).unwrap();
    assert_eq!(acme, expected);
    let help = Cli::command()
        .find_subcommand_mut("rollout")
        .unwrap()
        .render_long_help()
        .to_string();
    assert!(help.contains("--acme-mode <CHOICE>"), "{help}");
    assert!(help.contains("Acme install mode: fast or safe"), "{help}");
    let argv = [
        "ota-console",
        "rollout",
        "--firmware",
        "f.bin",
        "--version",
        "2",
    ];
    let parse = |extra: &[&str]| match Cli::try_parse_from(argv.iter().chain(extra)) {
        Ok(Cli {
            command: Some(CliCommand::Rollout(args)),
            ..
        }) => args.notice_settings.settings,
        other => panic!("{other:?}"),
    };
    let chosen = parse(&["--target", "acme:SN1", "--acme-mode", "fast"]);
    assert_eq!(chosen.value(acme, &ACME_MODE), "fast");
    // The built-in dialects' settings keep their defaults beside it.
    assert_eq!(chosen.value(aliyun::ID, &aliyun::SIGN_METHOD), "md5");
    assert_eq!(
        parse(&["--target", "acme:SN1"]).value(acme, &ACME_MODE),
        "safe"
    );
    assert!(Cli::try_parse_from(argv.iter().chain(&["--acme-mode", "reckless"])).is_err());
}

/// `--aws-job-document FILE`: a file that cannot be read, or whose template would not make a
/// JSON object, stops the rollout before anything is sent, naming the file (and the line).
#[test]
fn a_bad_job_document_template_file_is_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        "{\n  \"fw\": \"{{url}}\",\n  \"rev\": {{version}}\n}\n",
    )
    .unwrap();
    let missing = dir.path().join("missing.json");
    let run = |file: &std::path::Path| {
        let out = Command::new(env!("CARGO_BIN_EXE_ota-console"))
            .args(["rollout", "--firmware", "x.bin", "--version", "1"])
            .args(["--target", "aws:pump-7", "--aws-job-document"])
            .arg(file)
            .output()
            .unwrap();
        (out.status.code(), folded(&out.stderr))
    };
    let (code, stderr) = run(&bad);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "--aws-job-document {}: line 3: not valid JSON",
            bad.display()
        )),
        "{stderr}"
    );
    let (code, stderr) = run(&missing);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "--aws-job-document: cannot read the job document template {}:",
            missing.display()
        )),
        "{stderr}"
    );
}
