//! Console faults: `kill -9` of the real `ota-console rollout` at chosen moments of a rollout
//! (right after the campaign was created, while notices go out, while devices download, after
//! some successes with nothing in flight, and again during the resumed run), then
//! `--resume ID`. One driver runs every scenario and checks the same promises:
//!
//! - the resumed run exits 0 with every device on the target version;
//! - a device the console had recorded as succeeded before a kill never gets another notice;
//! - no device gets more notices than its attempts justify;
//! - `PRAGMA integrity_check` passes after each kill and at the end;
//! - the database agrees with the fleet (after a kill it never claims a success a device did not
//!   report; at the end every target succeeded) and with the JSON report.
//!
//! Kills are timed from what the simulated devices and the database show, polled with a bound;
//! device timeouts are short so that work lost with the console is retried within seconds.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::console::{Console, firmware_file, rollout_args, set_flag};
use ota_console::device_id::{DeviceId, Dialect};
use ota_console::rollout::{CampaignId, CampaignState, DeviceRecord, DeviceStatus};
use ota_console::sim::{Behaviour, DeviceState, SimConfig, SimFleet, SimStats};
use ota_console::store::Store;
use ota_console::transport::broker::EmbeddedBroker;

const TARGET: &str = "2.0.0";
/// The longest a kill point may take to come.
const KILL_POINT_WAIT: Duration = Duration::from_secs(45);
/// The longest the last resumed run may take to finish the rollout.
const RUN_TO_END_WAIT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(20);

/// What a kill point is judged on: the devices, and the campaign as the database has it.
struct Moment<'a> {
    fleet: &'a SimStats,
    /// Empty until the campaign's rows are readable.
    db: &'a [DeviceRecord],
}

impl Moment<'_> {
    fn devices_noticed(&self) -> usize {
        self.fleet
            .devices
            .iter()
            .filter(|d| d.notices_received > 0)
            .count()
    }

    fn devices_downloading(&self) -> usize {
        self.fleet
            .devices
            .iter()
            .filter(|d| matches!(d.state, DeviceState::Downloading { percent } if percent > 0))
            .count()
    }

    fn devices_upgrading(&self) -> usize {
        self.fleet
            .devices
            .iter()
            .filter(|d| {
                matches!(
                    d.state,
                    DeviceState::Downloading { .. } | DeviceState::Installing
                )
            })
            .count()
    }

    fn recorded(&self, status: DeviceStatus) -> usize {
        self.db.iter().filter(|r| r.status == status).count()
    }

    fn recorded_in_flight(&self) -> usize {
        self.db.iter().filter(|r| r.status.in_flight()).count()
    }

    /// Every device on the target version is recorded as succeeded: no success report is on
    /// its way to the console.
    fn successes_recorded(&self) -> bool {
        self.fleet
            .devices
            .iter()
            .filter(|d| d.version == TARGET)
            .all(|d| {
                self.db
                    .iter()
                    .any(|r| r.device.device() == d.id && r.status == DeviceStatus::Succeeded)
            })
    }
}

/// One `kill -9`.
struct Kill {
    what: &'static str,
    when: fn(&Moment) -> bool,
}

struct Scenario {
    name: &'static str,
    /// The fleet (the driver sets the broker URL).
    fleet: SimConfig,
    firmware_size: usize,
    /// Flags after the common ones (targets, waves, rate, concurrency).
    flags: Vec<String>,
    /// Devices the first run announces as targets.
    targets: usize,
    /// The simulated devices connect only after the first kill (the first run targets them by
    /// id while they are away).
    fleet_after_first_kill: bool,
    kills: Vec<Kill>,
}

/// What one scenario measured.
struct Figures {
    secs: f64,
    /// Per device: (notices received, attempts recorded).
    notices: BTreeMap<DeviceId, (u64, u32)>,
    /// Devices that reported the target version just before a kill, before the console could
    /// record it (they are noticed again on the retry: nothing tells the resumed console).
    successes_in_flight: usize,
}

fn strings(flags: &[&str]) -> Vec<String> {
    flags.iter().map(|s| s.to_string()).collect()
}

fn sim_config(broker: &EmbeddedBroker, mut fleet: SimConfig) -> SimConfig {
    fleet.broker_url = format!("mqtt://{}", broker.local_addr());
    fleet.version = "1.0.0".into();
    fleet
}

/// The campaign's rows, or none while the database does not have them yet.
fn db_rows(db: &Path, id: Option<CampaignId>) -> Vec<DeviceRecord> {
    let Some(id) = id else { return Vec::new() };
    Store::open(db)
        .and_then(|s| s.device_outcomes(id))
        .unwrap_or_default()
}

/// Polls (bounded) until `kill.when` holds.
async fn wait_for_kill_point(
    kill: &Kill,
    console: &mut Console,
    fleet: Option<&SimFleet>,
    db: &Path,
    id: CampaignId,
) {
    let deadline = Instant::now() + KILL_POINT_WAIT;
    loop {
        console.drain();
        let stats = fleet.map(SimFleet::stats).unwrap_or_default();
        let rows = db_rows(db, Some(id));
        let moment = Moment {
            fleet: &stats,
            db: &rows,
        };
        if (kill.when)(&moment) {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "kill point {:?} never came; database {:#?}; devices {:#?}; console {:#?}",
                kill.what,
                describe_rows(&rows),
                describe_devices(&stats),
                console.seen
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

fn describe_rows(rows: &[DeviceRecord]) -> Vec<String> {
    rows.iter()
        .map(|r| format!("{} {} attempts {}", r.device, r.status.as_str(), r.attempts))
        .collect()
}

fn describe_devices(stats: &SimStats) -> Vec<String> {
    stats
        .devices
        .iter()
        .map(|d| {
            format!(
                "{} {} {:?} connects {} notices {}",
                d.id, d.version, d.state, d.connects, d.notices_received
            )
        })
        .collect()
}

/// After a kill: the file is sound, the campaign is still open and the database claims no
/// success the devices did not report.
fn check_after_kill(db: &Path, id: CampaignId, fleet: Option<&SimStats>, what: &str) {
    let store = Store::open(db).unwrap();
    store
        .integrity_check()
        .unwrap_or_else(|e| panic!("after the kill {what:?}: {e}"));
    let campaign = store.load_campaign(id).unwrap();
    assert!(
        !campaign.state.is_finished(),
        "the kill {what:?} came after the end: {:?}",
        campaign.state
    );
    for rec in &campaign.devices {
        if rec.status == DeviceStatus::Succeeded {
            let device = fleet.and_then(|f| f.get(&rec.device.device()));
            assert_eq!(
                device.map(|d| d.version.as_str()),
                Some(TARGET),
                "the database says {} succeeded; the device does not",
                rec.device
            );
        }
    }
}

fn resume_args(broker: &EmbeddedBroker, db: &Path, id: CampaignId) -> Vec<String> {
    strings(&[
        "rollout",
        "--broker",
        &format!("mqtt://{}", broker.local_addr()),
        // Any free port: resuming comes back on the port the devices were given.
        "--http-bind",
        "127.0.0.1:0",
        "--db",
        &db.display().to_string(),
        "--resume",
        &id.to_string(),
    ])
}

async fn run(scenario: Scenario) -> Figures {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let broker = EmbeddedBroker::start("127.0.0.1:0".parse().unwrap()).unwrap();
    let fw = firmware_file(dir.path(), scenario.firmware_size);
    let db = dir.path().join("console.db");
    let report = dir.path().join("report.json");

    let mut args = rollout_args(&format!("mqtt://{}", broker.local_addr()), dir.path(), &fw);
    // Work that dies with the console is decided by the device timeout, then retried.
    set_flag(&mut args, "--device-timeout", "4s");
    args.extend(strings(&["--retry-interval", "1s", "--retries", "3"]));
    let common = args.clone();
    let mut flags = scenario.flags.iter();
    while let Some(flag) = flags.next() {
        // A flag the common arguments already hold (with its value) is replaced, not repeated.
        if flag.starts_with("--") && common.contains(flag) {
            set_flag(
                &mut args,
                flag,
                flags.next().expect("a value after the flag"),
            );
        } else {
            args.push(flag.clone());
        }
    }

    let config = sim_config(&broker, scenario.fleet.clone());
    let mut console = Console::spawn(&args, dir.path());
    let mut fleet = None;
    if !scenario.fleet_after_first_kill {
        console.expect_line("listening for devices");
        fleet = Some(SimFleet::start(config.clone()).await.unwrap());
    }
    let line = console.expect_line("target device(s)");
    assert!(
        line.starts_with(&format!("{} target device(s)", scenario.targets)),
        "{line:?}; expected {} targets",
        scenario.targets
    );
    let id = CampaignId(console.campaign_id());

    // Per device: notices received when the console recorded it succeeded (before a kill).
    let mut succeeded_at: BTreeMap<DeviceId, u64> = BTreeMap::new();
    let mut successes_in_flight = 0;
    for kill in &scenario.kills {
        wait_for_kill_point(kill, &mut console, fleet.as_ref(), &db, id).await;
        let _ = console.kill();
        let stats = fleet.as_ref().map(SimFleet::stats).unwrap_or_default();
        check_after_kill(&db, id, fleet.as_ref().map(|_| &stats), kill.what);
        let rows = db_rows(&db, Some(id));
        for rec in rows.iter().filter(|r| r.status == DeviceStatus::Succeeded) {
            let device = rec.device.device();
            let notices = stats.get(&device).map_or(0, |d| d.notices_received);
            succeeded_at.entry(device).or_insert(notices);
        }
        successes_in_flight += stats
            .devices
            .iter()
            .filter(|d| d.version == TARGET && !succeeded_at.contains_key(&d.id))
            .count();
        eprintln!(
            "[{}] killed {}: {} devices noticed, {} recorded succeeded, {} recorded in flight",
            scenario.name,
            kill.what,
            stats
                .devices
                .iter()
                .filter(|d| d.notices_received > 0)
                .count(),
            rows.iter()
                .filter(|r| r.status == DeviceStatus::Succeeded)
                .count(),
            rows.iter().filter(|r| r.status.in_flight()).count(),
        );

        let mut resume = resume_args(&broker, &db, id);
        resume.extend(strings(&["--report", &report.display().to_string()]));
        console = Console::spawn(&resume, dir.path());
        assert_eq!(CampaignId(console.campaign_id()), id);
        if fleet.is_none() {
            fleet = Some(SimFleet::start(config.clone()).await.unwrap());
        }
    }
    let fleet = fleet.expect("the fleet was started");
    let code = finish(&mut console, &fleet, &db, id).await;
    assert_eq!(code, 0, "{:#?}", console.seen);
    let stats = fleet.stats();
    fleet.shutdown().await;

    // Every device upgraded, and the database agrees.
    for d in &stats.devices {
        assert_eq!(d.version, TARGET, "{d:?}");
    }
    let store = Store::open(&db).unwrap();
    store.integrity_check().unwrap();
    let campaign = store.load_campaign(id).unwrap();
    assert_eq!(campaign.state, CampaignState::Completed);
    assert_eq!(campaign.devices.len(), scenario.targets);
    let mut notices = BTreeMap::new();
    for rec in &campaign.devices {
        assert_eq!(rec.status, DeviceStatus::Succeeded, "{rec:?}");
        let device = stats.get(&rec.device.device()).unwrap();
        assert!(rec.attempts >= 1, "{rec:?}");
        // Each attempt is one notice at most (a notice can die with the console unsent).
        assert!(
            device.notices_received <= u64::from(rec.attempts),
            "{} got {} notices for {} attempts",
            rec.device,
            device.notices_received,
            rec.attempts
        );
        notices.insert(rec.device.device(), (device.notices_received, rec.attempts));
    }
    for (device, at_success) in &succeeded_at {
        let now = stats.get(device).unwrap().notices_received;
        assert_eq!(
            now, *at_success,
            "{device} was noticed again after the console recorded its success"
        );
    }
    check_report(&store, id, &report);
    Figures {
        secs: started.elapsed().as_secs_f64(),
        notices,
        successes_in_flight,
    }
}

/// Waits (bounded) for the last run to exit; on timeout shows where every device stands.
async fn finish(console: &mut Console, fleet: &SimFleet, db: &Path, id: CampaignId) -> i32 {
    let deadline = Instant::now() + RUN_TO_END_WAIT;
    loop {
        console.drain();
        if let Some(status) = console.child.try_wait().unwrap() {
            console.drain();
            return status.code().unwrap_or(-1);
        }
        if Instant::now() > deadline {
            panic!(
                "the resumed console did not finish; database {:#?}; devices {:#?}; console {:#?}",
                describe_rows(&db_rows(db, Some(id))),
                describe_devices(&fleet.stats()),
                console.seen
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The report of the last run says what the database says.
fn check_report(store: &Store, id: CampaignId, report: &Path) {
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(report).unwrap()).unwrap();
    assert_eq!(report["campaign"]["id"], id.0);
    assert_eq!(report["campaign"]["state"], "completed");
    let row = store
        .list_campaigns()
        .unwrap()
        .into_iter()
        .find(|r| r.id == id)
        .unwrap();
    assert_eq!(
        report["campaign"]["counts"],
        serde_json::to_value(row.counts).unwrap()
    );
    let lines = report["devices"].as_array().unwrap();
    let rows = store.device_outcomes(id).unwrap();
    assert_eq!(lines.len(), rows.len());
    for rec in rows {
        let line = lines
            .iter()
            .find(|l| l["id"] == rec.device.to_string())
            .unwrap_or_else(|| panic!("{} missing from the report", rec.device));
        assert_eq!(line["status"], rec.status.as_str(), "{line}");
        assert_eq!(line["attempts"], rec.attempts, "{line}");
        assert_eq!(line["to_version"], TARGET, "{line}");
    }
}

fn print(name: &str, figures: &Figures) {
    let mut histogram: BTreeMap<(u64, u32), usize> = BTreeMap::new();
    for counts in figures.notices.values() {
        *histogram.entry(*counts).or_default() += 1;
    }
    let shape: Vec<String> = histogram
        .iter()
        .map(|((n, a), devices)| format!("{devices} device(s) {n} notice(s)/{a} attempt(s)"))
        .collect();
    eprintln!(
        "[{name}] {:.1} s; {}; {} success report(s) lost with the console",
        figures.secs,
        shape.join(", "),
        figures.successes_in_flight
    );
}

fn quick(install_ms: u64) -> Behaviour {
    Behaviour {
        install: Duration::from_millis(install_ms),
        ..Behaviour::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_during_notices_then_resume() {
    // A mixed fleet, notices spread out by the rate limit: killed after the first few were
    // received, long before the last was sent.
    let figures = run(Scenario {
        name: "during notices",
        fleet: SimConfig {
            aliyun: 30,
            fogcloud: 2,
            fogcloud_gateways: 1,
            subs_per_gateway: 3,
            // No DJI dock here: see `dji_devices_pending_at_a_kill_are_noticed_after_resuming`.
            behaviour: quick(300),
            ..SimConfig::default()
        },
        firmware_size: 64 * 1024,
        flags: strings(&[
            "--all",
            "--discover-for",
            "3s",
            "--wave",
            "100%",
            "--concurrency",
            "100",
            "--rate",
            "300/min",
        ]),
        // 30 + 2 + gateway and its 3 sub-devices
        targets: 36,
        fleet_after_first_kill: false,
        kills: vec![Kill {
            what: "after the first notices were received",
            when: |m| (3..=12).contains(&m.devices_noticed()),
        }],
    })
    .await;
    print("during notices", &figures);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_during_downloads_then_resume() {
    // One device at a time, each a while downloading: killed once two succeeded and a third is
    // mid-download, whose download dies with the console.
    let figures = run(Scenario {
        name: "during downloads",
        fleet: SimConfig {
            aliyun: 5,
            behaviour: Behaviour {
                bandwidth_bytes_per_sec: Some(600_000),
                ..quick(300)
            },
            ..SimConfig::default()
        },
        firmware_size: 300_000,
        flags: strings(&[
            "--all",
            "--dialect",
            "aliyun",
            "--discover-for",
            "2s",
            "--wave",
            "100%",
            "--concurrency",
            "1",
        ]),
        targets: 5,
        fleet_after_first_kill: false,
        kills: vec![Kill {
            what: "mid-download after two successes",
            when: |m| m.recorded(DeviceStatus::Succeeded) >= 2 && m.devices_downloading() >= 1,
        }],
    })
    .await;
    print("during downloads", &figures);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_between_devices_with_nothing_in_flight_then_resume() {
    // A slow rate leaves gaps with no device upgrading: killed in one, after two successes.
    let figures = run(Scenario {
        name: "nothing in flight",
        fleet: SimConfig {
            aliyun: 3,
            fogcloud: 2,
            behaviour: quick(200),
            ..SimConfig::default()
        },
        firmware_size: 32 * 1024,
        flags: strings(&[
            "--all",
            "--discover-for",
            "2s",
            "--wave",
            "100%",
            "--rate",
            "40/min",
        ]),
        targets: 5,
        fleet_after_first_kill: false,
        kills: vec![Kill {
            what: "between devices after two successes",
            when: |m| {
                m.recorded(DeviceStatus::Succeeded) >= 2
                    && m.recorded_in_flight() == 0
                    && m.devices_upgrading() == 0
                    && m.successes_recorded()
            },
        }],
    })
    .await;
    print("nothing in flight", &figures);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_right_after_creation_and_again_after_resuming() {
    // The first run targets devices that are away (DJI docks and drones are noticed only once
    // seen; the Alibaba devices wait in the second wave), so it is killed with the campaign
    // created and no notice sent. The resumed run is killed again mid-rollout.
    let mut flags = Vec::new();
    for id in [
        "dji:sim-dock-0001",
        "dji:sim-drone-0001",
        "dji:sim-dock-0002",
        "dji:sim-drone-0002",
        "aliyun:a1SimProduct/sim-ali-0001",
        "aliyun:a1SimProduct/sim-ali-0002",
        "aliyun:a1SimProduct/sim-ali-0003",
    ] {
        flags.extend(strings(&["--target", id]));
    }
    flags.extend(strings(&[
        "--discover-for",
        "0s",
        "--canary",
        "4",
        "--wave",
        "3",
    ]));
    let figures = run(Scenario {
        name: "after creation, twice",
        fleet: SimConfig {
            aliyun: 3,
            dji_docks: 2,
            behaviour: Behaviour {
                bandwidth_bytes_per_sec: Some(400_000),
                ..quick(300)
            },
            ..SimConfig::default()
        },
        firmware_size: 200_000,
        flags,
        targets: 7,
        fleet_after_first_kill: true,
        kills: vec![
            Kill {
                what: "right after creation",
                when: |m| m.db.len() == 7 && m.recorded(DeviceStatus::Pending) == 7,
            },
            Kill {
                // Not while a DJI device waits for its notice: see
                // `dji_devices_pending_at_a_kill_are_noticed_after_resuming`.
                what: "mid-download in the second wave after resuming",
                when: |m| {
                    let dji_done =
                        m.db.iter()
                            .filter(|r| r.device.dialect() == Dialect::Dji)
                            .all(|r| r.status == DeviceStatus::Succeeded);
                    dji_done && m.devices_downloading() >= 1
                },
            },
        ],
    })
    .await;
    print("after creation, twice", &figures);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "known bug, reported to the lead: after a restart DJI devices count as offline until \
            they speak, and neither the simulated dock (no periodic osd) nor a drone resting in \
            its dock does, so a DJI target still pending at the kill is never noticed"]
async fn dji_devices_pending_at_a_kill_are_noticed_after_resuming() {
    let figures = run(Scenario {
        name: "DJI pending at the kill",
        fleet: SimConfig {
            aliyun: 2,
            dji_docks: 1,
            behaviour: quick(200),
            ..SimConfig::default()
        },
        firmware_size: 32 * 1024,
        flags: strings(&[
            "--all",
            "--discover-for",
            "2s",
            "--wave",
            "100%",
            "--rate",
            "30/min",
        ]),
        targets: 4,
        fleet_after_first_kill: false,
        kills: vec![Kill {
            what: "with the DJI devices still waiting for their notice",
            when: |m| {
                m.recorded(DeviceStatus::Succeeded) >= 1
                    && m.db.iter().any(|r| {
                        r.device.dialect() == Dialect::Dji && r.status == DeviceStatus::Pending
                    })
            },
        }],
    })
    .await;
    print("DJI pending at the kill", &figures);
}
