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
//!
//! A success reported while the console was down runs with Mosquitto as the broker: the
//! console's persistent MQTT session (a stable client id per data directory) lets the broker
//! keep the report until the resumed console collects it.

// Test code throughout: clippy's allow-unwrap-in-tests (clippy.toml) goes by `cfg(test)`.
#![cfg(test)]

use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::path::Path;
use std::time::{Duration, Instant};

use ota_console::device_id::DeviceId;
use ota_console::rollout::{CampaignId, CampaignState, DeviceStatus, TargetRecord};
use ota_console::sim::{Behaviour, DeviceState, SimConfig, SimFleet, SimStats};
use ota_console::store::Store;
use ota_console::testing::console::{Console, rollout_args, set_flag};
use ota_console::testing::firmware_file;
use ota_console::testing::mosquitto::{Mosquitto, free_port};
use ota_console::testing::sim_units;
use ota_console::transport::broker::{BrokerSettings, EmbeddedBroker};

const TARGET: &str = "2.0.0";
/// The longest a kill point may take to come.
const KILL_POINT_WAIT: Duration = Duration::from_secs(45);
/// The longest the last resumed run may take to finish the rollout.
const RUN_TO_END_WAIT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(20);

/// What a kill point is judged on: the devices, and the campaign as the database has it.
struct Moment<'a> {
    fleet: &'a SimStats,
    /// The campaign's state, once the database has it.
    state: Option<CampaignState>,
    /// Empty until the campaign's rows are readable.
    db: &'a [TargetRecord],
}

impl Moment<'_> {
    fn devices_noticed(&self) -> usize {
        self.fleet
            .devices
            .iter()
            .filter(|d| d.notices_received > 0)
            .count()
    }

    /// Devices downloading, with a percent in `percent`.
    fn devices_downloading(&self, percent: RangeInclusive<u8>) -> usize {
        self.fleet
            .devices
            .iter()
            .filter_map(|d| match d.state {
                DeviceState::Downloading { percent } => Some(percent),
                _ => None,
            })
            .filter(|p| percent.contains(p))
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
    /// Turns the database into what a crash in a window too short to hit by timing would have
    /// left (applied after the kill, before the resume).
    crash_left: Option<fn(&Path, CampaignId)>,
    /// The console stays down until this holds (what devices do while nobody listens).
    resume_when: Option<fn(&Moment) -> bool>,
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
    /// Mosquitto instead of the embedded broker (started by the test, outliving the consoles).
    mosquitto: bool,
    /// Every resume serves the firmware at a new address (`--public-url`): the operator moved
    /// the firmware server.
    resume_elsewhere: bool,
    kills: Vec<Kill>,
}

/// What one scenario measured.
struct Figures {
    secs: f64,
    /// Per device: (notices received, attempts recorded).
    notices: BTreeMap<DeviceId, (u64, u32)>,
    /// Devices on the target version at a resume that the console had not recorded as
    /// succeeded (their report was on its way at the kill, or sent while the console was
    /// down), with the notices they had then. The console's persistent session keeps their
    /// report on the broker for the resumed console (with the embedded broker, which dies with
    /// nothing here, too: it lives in the test process and keeps sessions in memory).
    unrecorded_successes: BTreeMap<DeviceId, u64>,
}

fn strings(flags: &[&str]) -> Vec<String> {
    flags.iter().map(|s| s.to_string()).collect()
}

/// The broker a scenario runs on; it outlives every console of the scenario.
enum TestBroker {
    Embedded(EmbeddedBroker),
    /// With the settings a fleet needs (see the README): nothing dropped for a subscriber away.
    Mosquitto(Mosquitto),
}

impl TestBroker {
    fn start(mosquitto: bool, dir: &Path) -> TestBroker {
        if mosquitto {
            TestBroker::Mosquitto(Mosquitto::start(
                dir,
                free_port(),
                "allow_anonymous true\nlog_type all",
            ))
        } else {
            TestBroker::Embedded(
                EmbeddedBroker::start(BrokerSettings::open("127.0.0.1:0".parse().unwrap()))
                    .unwrap(),
            )
        }
    }

    fn url(&self) -> String {
        match self {
            TestBroker::Embedded(b) => format!("mqtt://{}", b.local_addr()),
            TestBroker::Mosquitto(m) => m.url(),
        }
    }
}

fn sim_config(broker: &TestBroker, mut fleet: SimConfig) -> SimConfig {
    fleet.broker_url = broker.url();
    fleet.version = "1.0.0".into();
    // Devices download like embedded SDKs: exact header names, Content-Length required.
    fleet.strict = true;
    fleet
}

/// The campaign's state and rows, or nothing while the database does not have them yet.
fn db_campaign(db: &Path, id: CampaignId) -> (Option<CampaignState>, Vec<TargetRecord>) {
    match Store::open(db).and_then(|s| s.load_campaign(id)) {
        Ok(campaign) => (Some(campaign.state), campaign.devices),
        Err(_) => (None, Vec::new()),
    }
}

fn db_rows(db: &Path, id: CampaignId) -> Vec<TargetRecord> {
    db_campaign(db, id).1
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
        let (state, rows) = db_campaign(db, id);
        let moment = Moment {
            fleet: &stats,
            state,
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

/// Polls (bounded) while the console is down until `until` holds.
async fn wait_while_down(
    until: fn(&Moment) -> bool,
    fleet: Option<&SimFleet>,
    db: &Path,
    id: CampaignId,
) {
    let deadline = Instant::now() + KILL_POINT_WAIT;
    let (state, rows) = db_campaign(db, id);
    loop {
        let stats = fleet.map(SimFleet::stats).unwrap_or_default();
        let moment = Moment {
            fleet: &stats,
            state,
            db: &rows,
        };
        if until(&moment) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the devices never settled while the console was down: {:#?}",
            describe_devices(&stats)
        );
        tokio::time::sleep(POLL).await;
    }
}

fn describe_rows(rows: &[TargetRecord]) -> Vec<String> {
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

/// A loopback address nothing listens on right now.
fn free_loopback_addr() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

fn resume_args(broker_url: &str, db: &Path, id: CampaignId) -> Vec<String> {
    strings(&[
        "rollout",
        "--broker",
        broker_url,
        // Any free port: resuming comes back on the port the devices were given.
        "--http-bind",
        "127.0.0.1:0",
        "--db",
        &db.display().to_string(),
        "--resume",
        &id.to_string(),
    ])
}

/// The first run's arguments: the common ones with short timeouts, then the scenario's flags
/// (replacing a common flag's value rather than repeating the flag).
fn first_run_args(scenario: &Scenario, broker: &TestBroker, dir: &Path, fw: &Path) -> Vec<String> {
    let mut args = rollout_args(&broker.url(), dir, fw);
    // Work that dies with the console is decided by the device timeout, then retried.
    set_flag(&mut args, "--device-timeout", "4s");
    args.extend(strings(&["--retry-interval", "1s", "--retries", "3"]));
    let common = args.clone();
    let mut flags = scenario.flags.iter();
    while let Some(flag) = flags.next() {
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
    args
}

/// One scenario in progress: the broker, the fleet, the console of the current run.
struct Run {
    name: &'static str,
    broker: TestBroker,
    /// Declared after the broker: dropped (removed) after Mosquitto is killed.
    dir: tempfile::TempDir,
    db: std::path::PathBuf,
    report: std::path::PathBuf,
    fleet_config: SimConfig,
    resume_elsewhere: bool,
    fleet: Option<SimFleet>,
    console: Console,
    id: CampaignId,
    /// Per device: notices received when the console had recorded it succeeded at a kill.
    succeeded_at: BTreeMap<DeviceId, u64>,
    unrecorded_successes: BTreeMap<DeviceId, u64>,
    /// Resumes so far: each may re-send the notice in flight to a `noticed` device once.
    resumes: u64,
}

impl Run {
    /// Starts the first run (and the fleet, unless it comes after the first kill) and waits
    /// for its campaign.
    async fn start(scenario: &Scenario) -> Run {
        let dir = tempfile::tempdir().unwrap();
        let broker = TestBroker::start(scenario.mosquitto, dir.path());
        let fw = firmware_file(dir.path(), scenario.firmware_size);
        let fleet_config = sim_config(&broker, scenario.fleet.clone());
        let mut console = Console::spawn(
            &first_run_args(scenario, &broker, dir.path(), &fw),
            dir.path(),
        );
        let mut fleet = None;
        if !scenario.fleet_after_first_kill {
            console.expect_line("listening for devices");
            fleet = Some(SimFleet::start(fleet_config.clone()).await.unwrap());
        }
        let line = console.expect_line("target device(s)");
        assert!(
            line.starts_with(&format!("{} target device(s)", scenario.targets)),
            "{line:?}; expected {} targets",
            scenario.targets
        );
        let id = CampaignId(console.campaign_id());
        Run {
            name: scenario.name,
            db: dir.path().join("console.db"),
            report: dir.path().join("report.json"),
            dir,
            broker,
            fleet_config,
            resume_elsewhere: scenario.resume_elsewhere,
            fleet,
            console,
            id,
            succeeded_at: BTreeMap::new(),
            resumes: 0,
            unrecorded_successes: BTreeMap::new(),
        }
    }

    fn stats(&self) -> SimStats {
        self.fleet.as_ref().map(SimFleet::stats).unwrap_or_default()
    }

    /// Waits for the kill point, kills, checks the database, waits while down as the kill
    /// says, then resumes.
    async fn kill_and_resume(&mut self, kill: &Kill) {
        let (db, id) = (self.db.clone(), self.id);
        wait_for_kill_point(kill, &mut self.console, self.fleet.as_ref(), &db, id).await;
        self.console.kill();
        if let Some(crash_left) = kill.crash_left {
            crash_left(&db, id);
        }
        let stats = self.stats();
        check_after_kill(&db, id, self.fleet.as_ref().map(|_| &stats), kill.what);
        let rows = db_rows(&db, id);
        for rec in rows.iter().filter(|r| r.status == DeviceStatus::Succeeded) {
            let device = rec.device.device();
            let notices = stats.get(&device).map_or(0, |d| d.notices_received);
            self.succeeded_at.entry(device).or_insert(notices);
        }
        if let Some(until) = kill.resume_when {
            wait_while_down(until, self.fleet.as_ref(), &db, id).await;
        }
        for d in self.stats().devices {
            if d.version == TARGET && !self.succeeded_at.contains_key(&d.id) {
                self.unrecorded_successes
                    .entry(d.id)
                    .or_insert(d.notices_received);
            }
        }
        // A notice recorded but never received died with the console (unsent or queued).
        let lost_notices = rows
            .iter()
            .filter(|r| r.status.in_flight())
            .filter(|r| {
                stats
                    .get(&r.device.device())
                    .is_some_and(|d| d.notices_received == 0)
            })
            .count();
        eprintln!(
            "[{}] killed {}: {} devices noticed, {} recorded succeeded, {} recorded in flight \
             ({lost_notices} of them never got their notice)",
            self.name,
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
        let mut resume = resume_args(&self.broker.url(), &db, id);
        resume.extend(strings(&["--report", &self.report.display().to_string()]));
        if self.resume_elsewhere {
            let addr = free_loopback_addr();
            set_flag(&mut resume, "--http-bind", &addr);
            resume.extend(strings(&["--public-url", &format!("http://{addr}")]));
        }
        self.console = Console::spawn(&resume, self.dir.path());
        self.resumes += 1;
        assert_eq!(CampaignId(self.console.campaign_id()), id);
        if self.fleet.is_none() {
            self.fleet = Some(SimFleet::start(self.fleet_config.clone()).await.unwrap());
        }
    }

    /// Waits for the last run to exit 0, then checks the fleet, the database and the report.
    async fn finish(mut self, started: Instant, targets: usize) -> Figures {
        let fleet = self.fleet.take().expect("the fleet was started");
        let code = wait_for_exit(&mut self.console, &fleet, &self.db, self.id).await;
        assert_eq!(code, 0, "{:#?}", self.console.seen);
        let stats = fleet.stats();
        fleet.shutdown().await;
        let store = Store::open(&self.db).unwrap();
        store.integrity_check().unwrap();
        let notices = check_end(&store, self.id, &stats, targets, self.resumes);
        for (device, at_success) in &self.succeeded_at {
            let now = stats.get(device).unwrap().notices_received;
            assert_eq!(
                now, *at_success,
                "{device} was noticed again after the console recorded its success"
            );
        }
        check_report(&store, self.id, &self.report);
        Figures {
            secs: started.elapsed().as_secs_f64(),
            notices,
            unrecorded_successes: self.unrecorded_successes,
        }
    }
}

/// Every target upgraded and recorded so, on no more notices than attempts plus one re-send
/// per resume; returns, per device, (notices received, attempts recorded).
fn check_end(
    store: &Store,
    id: CampaignId,
    stats: &SimStats,
    targets: usize,
    resumes: u64,
) -> BTreeMap<DeviceId, (u64, u32)> {
    let campaign = store.load_campaign(id).unwrap();
    assert_eq!(campaign.state, CampaignState::Completed);
    assert_eq!(campaign.devices.len(), targets);
    let mut notices = BTreeMap::new();
    for rec in &campaign.devices {
        let device = stats.get(&rec.device.device()).unwrap();
        assert_eq!(device.version, TARGET, "{device:?}");
        assert_eq!(rec.status, DeviceStatus::Succeeded, "{rec:?}");
        assert!(rec.attempts >= 1, "{rec:?}");
        // Each attempt is one notice at most (a notice can die with the console unsent), plus
        // the re-send a resume gives a device still `noticed`.
        assert!(
            device.notices_received <= u64::from(rec.attempts) + resumes,
            "{} got {} notices for {} attempts and {resumes} resume(s)",
            rec.device,
            device.notices_received,
            rec.attempts
        );
        notices.insert(rec.device.device(), (device.notices_received, rec.attempts));
    }
    notices
}

async fn run(scenario: Scenario) -> Figures {
    let started = Instant::now();
    let mut run = Run::start(&scenario).await;
    for kill in &scenario.kills {
        run.kill_and_resume(kill).await;
    }
    run.finish(started, scenario.targets).await
}

/// Waits (bounded) for the last run to exit; on timeout shows where every device stands.
async fn wait_for_exit(console: &mut Console, fleet: &SimFleet, db: &Path, id: CampaignId) -> i32 {
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
                describe_rows(&db_rows(db, id)),
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
        "[{name}] {:.1} s; {}; {} success report(s) sent while the console was down or on its way at a kill",
        figures.secs,
        shape.join(", "),
        figures.unrecorded_successes.len()
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
            units: sim_units(&[
                ("aliyun", 30),
                ("fogcloud", 2),
                ("fogcloud-gateways", 1),
                ("subs", 3),
            ]),
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
        mosquitto: false,
        resume_elsewhere: false,
        kills: vec![Kill {
            what: "after the first notices were received",
            when: |m| (3..=12).contains(&m.devices_noticed()),
            crash_left: None,
            resume_when: None,
        }],
    })
    .await;
    print("during notices", &figures);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_during_downloads_then_resume() {
    // One device at a time, each a while downloading: killed once two succeeded and a third is
    // mid-download. The file fits in what the sockets buffer, so that download outlives the
    // console and its report reaches the resumed one.
    let figures = run(Scenario {
        name: "during downloads",
        fleet: SimConfig {
            units: sim_units(&[("aliyun", 5)]),
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
        mosquitto: false,
        resume_elsewhere: false,
        kills: vec![Kill {
            what: "mid-download after two successes",
            when: |m| {
                m.recorded(DeviceStatus::Succeeded) >= 2 && m.devices_downloading(1..=100) >= 1
            },
            crash_left: None,
            resume_when: None,
        }],
    })
    .await;
    print("during downloads", &figures);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_during_a_download_that_ends_while_the_console_is_down_then_resume() {
    // A file larger than what the sockets buffer, so the download breaks with the console;
    // the device's report of it goes nowhere, and only the attempt's timeout decides it after
    // the resume: a second notice, on a second attempt.
    let figures = run(Scenario {
        name: "download ends while down",
        fleet: SimConfig {
            units: sim_units(&[("aliyun", 3)]),
            behaviour: Behaviour {
                bandwidth_bytes_per_sec: Some(8_000_000),
                ..quick(200)
            },
            ..SimConfig::default()
        },
        firmware_size: 16 * 1024 * 1024,
        flags: strings(&[
            "--all",
            "--discover-for",
            "2s",
            "--wave",
            "100%",
            "--concurrency",
            "1",
        ]),
        targets: 3,
        fleet_after_first_kill: false,
        mosquitto: false,
        resume_elsewhere: false,
        kills: vec![
            Kill {
                what: "early in a download after one success",
                when: |m| {
                    m.recorded(DeviceStatus::Succeeded) >= 1 && m.devices_downloading(5..=40) >= 1
                },
                crash_left: None,
                resume_when: Some(|m| m.devices_upgrading() == 0),
            },
            Kill {
                // Its timeout came; its retry is due a second later.
                what: "while a retry waits",
                when: |m| {
                    m.db.iter()
                        .any(|r| r.status == DeviceStatus::Pending && r.attempts > 0)
                },
                crash_left: None,
                resume_when: None,
            },
        ],
    })
    .await;
    print("download ends while down", &figures);
    // The broken download's device at least was noticed twice, on two attempts.
    let retried = figures.notices.values().filter(|(n, a)| *n == 2 && *a == 2);
    assert!(retried.count() >= 1, "{:?}", figures.notices);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_while_dji_docks_download_then_resume() {
    // DJI progress is matched by the bid of the attempt, which the resumed console reads back
    // from the database; the docks' progress events keep asking for replies meanwhile.
    let mut flags = Vec::new();
    for dock in ["dji:sim-dock-0001", "dji:sim-dock-0002"] {
        flags.extend(strings(&["--target", dock]));
    }
    flags.extend(strings(&["--discover-for", "2s", "--wave", "100%"]));
    let figures = run(Scenario {
        name: "DJI downloads",
        fleet: SimConfig {
            units: sim_units(&[("dji-docks", 2)]),
            behaviour: Behaviour {
                bandwidth_bytes_per_sec: Some(300_000),
                ..quick(300)
            },
            ..SimConfig::default()
        },
        firmware_size: 300_000,
        flags,
        targets: 2,
        fleet_after_first_kill: false,
        mosquitto: false,
        resume_elsewhere: false,
        kills: vec![Kill {
            what: "while both docks download",
            when: |m| m.devices_downloading(10..=60) == 2,
            crash_left: None,
            resume_when: None,
        }],
    })
    .await;
    print("DJI downloads", &figures);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_then_resume_with_the_firmware_server_moved() {
    // The resumed console serves at another address: devices already downloading from the old
    // one lose it and are noticed again, everyone noticed from now on gets the new link.
    let figures = run(Scenario {
        name: "server moved",
        fleet: SimConfig {
            units: sim_units(&[("aliyun", 3)]),
            behaviour: Behaviour {
                bandwidth_bytes_per_sec: Some(8_000_000),
                ..quick(200)
            },
            ..SimConfig::default()
        },
        firmware_size: 16 * 1024 * 1024,
        flags: strings(&[
            "--all",
            "--discover-for",
            "2s",
            "--wave",
            "100%",
            "--concurrency",
            "1",
        ]),
        targets: 3,
        fleet_after_first_kill: false,
        mosquitto: false,
        resume_elsewhere: true,
        kills: vec![Kill {
            what: "early in a download after one success",
            when: |m| {
                m.recorded(DeviceStatus::Succeeded) >= 1 && m.devices_downloading(5..=40) >= 1
            },
            crash_left: None,
            resume_when: Some(|m| m.devices_upgrading() == 0),
        }],
    })
    .await;
    print("server moved", &figures);
    let retried = figures.notices.values().filter(|(n, a)| *n == 2 && *a == 2);
    assert_eq!(retried.count(), 1, "{:?}", figures.notices);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_while_fogcloud_devices_and_sub_devices_download_then_resume() {
    // FogCloud progress is matched by the attempt's task_id and sub-devices are reached through
    // their gateway: both read back from the database and the inventory by the resumed console.
    let figures = run(Scenario {
        name: "FogCloud downloads",
        fleet: SimConfig {
            units: sim_units(&[("fogcloud", 2), ("fogcloud-gateways", 1), ("subs", 2)]),
            behaviour: Behaviour {
                bandwidth_bytes_per_sec: Some(300_000),
                ..quick(300)
            },
            ..SimConfig::default()
        },
        firmware_size: 300_000,
        flags: strings(&["--all", "--discover-for", "2s", "--wave", "100%"]),
        targets: 5,
        fleet_after_first_kill: false,
        mosquitto: false,
        resume_elsewhere: false,
        kills: vec![Kill {
            what: "while three devices download",
            when: |m| m.devices_downloading(10..=60) >= 3,
            crash_left: None,
            resume_when: None,
        }],
    })
    .await;
    print("FogCloud downloads", &figures);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_between_devices_with_nothing_in_flight_then_resume() {
    // A slow rate leaves gaps with no device upgrading: killed in one, after two successes.
    let figures = run(Scenario {
        name: "nothing in flight",
        fleet: SimConfig {
            units: sim_units(&[("aliyun", 3), ("fogcloud", 2)]),
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
        mosquitto: false,
        resume_elsewhere: false,
        kills: vec![Kill {
            what: "between devices after two successes",
            when: |m| {
                m.recorded(DeviceStatus::Succeeded) >= 2
                    && m.recorded_in_flight() == 0
                    && m.devices_upgrading() == 0
                    && m.successes_recorded()
            },
            crash_left: None,
            resume_when: None,
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
            units: sim_units(&[("aliyun", 3), ("dji-docks", 2)]),
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
        mosquitto: false,
        resume_elsewhere: false,
        kills: vec![
            Kill {
                what: "right after creation",
                when: |m| {
                    m.state == Some(CampaignState::Running)
                        && m.recorded(DeviceStatus::Pending) == 7
                },
                crash_left: None,
                resume_when: None,
            },
            Kill {
                // Not while a DJI device waits for its notice: see
                // `dji_devices_pending_at_a_kill_are_noticed_after_resuming`.
                what: "mid-download in the second wave after resuming",
                when: |m| {
                    let dji_done =
                        m.db.iter()
                            .filter(|r| r.device.dialect() == ota_console::protocol::dji::ID)
                            .all(|r| r.status == DeviceStatus::Succeeded);
                    dji_done && m.devices_downloading(1..=100) >= 1
                },
                crash_left: None,
                resume_when: None,
            },
        ],
    })
    .await;
    print("after creation, twice", &figures);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dji_devices_pending_at_a_kill_are_noticed_after_resuming() {
    let figures = run(Scenario {
        name: "DJI pending at the kill",
        fleet: SimConfig {
            units: sim_units(&[("aliyun", 2), ("dji-docks", 1)]),
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
        mosquitto: false,
        resume_elsewhere: false,
        kills: vec![Kill {
            what: "with the DJI devices still waiting for their notice",
            when: |m| {
                m.recorded(DeviceStatus::Succeeded) >= 1
                    && m.db.iter().any(|r| {
                        r.device.dialect() == ota_console::protocol::dji::ID
                            && r.status == DeviceStatus::Pending
                    })
            },
            crash_left: None,
            resume_when: None,
        }],
    })
    .await;
    print("DJI pending at the kill", &figures);
}

/// What the database holds when the console dies between storing a new campaign and committing
/// its start (one engine turn apart): the campaign in `draft`, no device in a wave, nothing
/// sent (the start's notices wait for that commit).
fn rewind_to_draft(db: &Path, id: CampaignId) {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.execute(
        "UPDATE campaigns SET state = 'draft', current_wave = NULL, started_at = NULL
         WHERE id = ?1",
        [id.0],
    )
    .unwrap();
    conn.execute(
        "UPDATE campaign_devices SET wave = NULL, status = 'pending', percent = 0, attempts = 0,
             round_start = 0, error = NULL, code = NULL, task_key = NULL, exchange_id = NULL,
             last_outcome = NULL, noticed_at = NULL, deadline_at = NULL, retry_at = NULL,
             reply_deadline_at = NULL, resends_left = NULL
         WHERE campaign = ?1",
        [id.0],
    )
    .unwrap();
    conn.execute("DELETE FROM transitions WHERE campaign = ?1", [id.0])
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_between_creation_and_start_then_resume() {
    let mut flags = Vec::new();
    for n in 1..=3 {
        flags.extend(strings(&[
            "--target",
            &format!("aliyun:a1SimProduct/sim-ali-{n:04}"),
        ]));
    }
    flags.extend(strings(&["--discover-for", "0s", "--wave", "100%"]));
    let figures = run(Scenario {
        name: "before the start was committed",
        fleet: SimConfig {
            units: sim_units(&[("aliyun", 3)]),
            behaviour: quick(200),
            ..SimConfig::default()
        },
        firmware_size: 32 * 1024,
        flags,
        targets: 3,
        // Nobody hears the first run's notices, as if they had never been sent.
        fleet_after_first_kill: true,
        mosquitto: false,
        resume_elsewhere: false,
        kills: vec![Kill {
            what: "between storing the campaign and starting it",
            when: |m| m.state.is_some(),
            crash_left: Some(rewind_to_draft),
            resume_when: None,
        }],
    })
    .await;
    print("before the start was committed", &figures);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_where_devices_cannot_download_is_refused_unless_the_downloads_move() {
    let dir = tempfile::tempdir().unwrap();
    let broker =
        EmbeddedBroker::start(BrokerSettings::open("127.0.0.1:0".parse().unwrap())).unwrap();
    let fw = firmware_file(dir.path(), 1024);
    let db = dir.path().join("console.db");
    let mut args = rollout_args(&format!("mqtt://{}", broker.local_addr()), dir.path(), &fw);
    // A DJI target nobody has seen: the campaign is stored and nothing is sent.
    args.extend(strings(&[
        "--target",
        "dji:sim-dock-0001",
        "--discover-for",
        "0s",
    ]));
    let mut console = Console::spawn(&args, dir.path());
    let id = CampaignId(console.campaign_id());
    console.kill();
    let told = Store::open(&db)
        .unwrap()
        .load_campaign(id)
        .unwrap()
        .spec
        .offer
        .url;
    let port = told
        .split("/fw/")
        .next()
        .and_then(|base| base.rsplit(':').next())
        .unwrap()
        .to_owned();

    // Another port than the devices were given: refused, saying which one to use.
    let elsewhere = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut resume = resume_args(&format!("mqtt://{}", broker.local_addr()), &db, id);
    set_flag(
        &mut resume,
        "--http-bind",
        &elsewhere.local_addr().unwrap().to_string(),
    );
    drop(elsewhere);
    let refused = Console::spawn(&resume, dir.path());
    let (code, lines) = tokio::task::spawn_blocking(move || refused.wait())
        .await
        .unwrap();
    assert_eq!(code, 2, "{lines:#?}");
    let error = lines.join("\n");
    assert!(
        error.contains(&format!("--http-bind ADDR:{port}")) && error.contains(&told),
        "{error}"
    );
    eprintln!("{error}");
    Store::open(&db).unwrap().integrity_check().unwrap();

    // Any free port: the one the devices know.
    let url = format!("mqtt://{}", broker.local_addr());
    let mut console = Console::spawn(&resume_args(&url, &db, id), dir.path());
    assert_eq!(CampaignId(console.campaign_id()), id);
    console.kill();

    // A new address named with --public-url: the campaign's downloads move there, on the record.
    let addr = free_loopback_addr();
    let mut moved = resume_args(&url, &db, id);
    set_flag(&mut moved, "--http-bind", &addr);
    moved.extend(strings(&["--public-url", &format!("http://{addr}/")]));
    let mut console = Console::spawn(&moved, dir.path());
    assert_eq!(CampaignId(console.campaign_id()), id);
    console.kill();
    assert!(
        console.seen.iter().any(|l| l.contains("from now on")),
        "the move is announced: {:#?}",
        console.seen
    );
    let store = Store::open(&db).unwrap();
    let url = store.load_campaign(id).unwrap().spec.offer.url;
    let path = told.split_once("/fw/").unwrap().1;
    assert_eq!(url, format!("http://{addr}/fw/{path}"));
    let journal = store.journal(id).unwrap();
    assert!(
        journal
            .iter()
            .any(|l| l.detail.to_string() == format!("download URL moved from {told} to {url}")),
        "{journal:#?}"
    );
    store.integrity_check().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_success_reported_while_the_console_is_down_is_not_noticed_again() {
    let figures = run(Scenario {
        name: "success while down",
        fleet: SimConfig {
            units: sim_units(&[("aliyun", 3)]),
            behaviour: quick(1_000),
            ..SimConfig::default()
        },
        firmware_size: 32 * 1024,
        flags: strings(&[
            "--all",
            "--discover-for",
            "2s",
            "--wave",
            "100%",
            "--concurrency",
            "1",
        ]),
        targets: 3,
        fleet_after_first_kill: false,
        mosquitto: true,
        resume_elsewhere: false,
        kills: vec![Kill {
            what: "while a device installs",
            when: |m| {
                m.fleet
                    .devices
                    .iter()
                    .any(|d| d.state == DeviceState::Installing)
            },
            crash_left: None,
            resume_when: Some(|m| {
                m.devices_upgrading() == 0 && m.fleet.devices.iter().any(|d| d.version == TARGET)
            }),
        }],
    })
    .await;
    print("success while down", &figures);
    assert!(!figures.unrecorded_successes.is_empty());
    for (device, before) in &figures.unrecorded_successes {
        assert_eq!(
            figures.notices[device].0, *before,
            "{device} upgraded while the console was down and was noticed again"
        );
        assert_eq!(
            *before, 1,
            "{device} got {before} notices before its success"
        );
    }
}

/// Polls (bounded) until the fleet's stats satisfy `until`.
async fn wait_fleet(fleet: &SimFleet, what: &str, until: impl Fn(&SimStats) -> bool) {
    let deadline = Instant::now() + KILL_POINT_WAIT;
    loop {
        let stats = fleet.stats();
        if until(&stats) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what} never happened: {:#?}",
            describe_devices(&stats)
        );
        tokio::time::sleep(POLL).await;
    }
}

/// The broker restarts without persistence while the console is down: the console's session
/// and what the device reported meanwhile are gone. The resumed console says so (a warning on
/// stderr, an alert in the window) and falls back to the timeout path: the device times out,
/// is noticed again, and succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_the_broker_lost_while_the_console_was_down_is_told_on_resume() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Mosquitto::start(dir.path(), free_port(), "allow_anonymous true");
    let fw = firmware_file(dir.path(), 32 * 1024);
    let db = dir.path().join("console.db");
    let mut args = rollout_args(&broker.url(), dir.path(), &fw);
    set_flag(&mut args, "--device-timeout", "4s");
    args.extend(strings(&[
        "--retry-interval",
        "1s",
        "--retries",
        "3",
        "--all",
        "--discover-for",
        "2s",
    ]));
    let mut console = Console::spawn(&args, dir.path());
    console.expect_line("listening for devices");
    let fleet = SimFleet::start(SimConfig {
        broker_url: broker.url(),
        version: "1.0.0".into(),
        units: sim_units(&[("aliyun", 1)]),
        behaviour: quick(1_500),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let id = CampaignId(console.campaign_id());
    wait_fleet(&fleet, "the device installing", |s| {
        s.devices.iter().any(|d| d.state == DeviceState::Installing)
    })
    .await;
    console.kill();
    broker.kill();
    broker.restart();
    wait_fleet(&fleet, "the device upgraded and back on the broker", |s| {
        s.devices
            .iter()
            .all(|d| d.version == TARGET && d.connects >= 2)
    })
    .await;

    let mut resumed = Console::spawn(&resume_args(&broker.url(), &db, id), dir.path());
    let warning = resumed.expect_line("kept no session");
    assert!(warning.contains("noticed again"), "{warning}");
    let (code, lines) = tokio::task::spawn_blocking(move || resumed.wait())
        .await
        .unwrap();
    assert_eq!(code, 0, "{lines:#?}");
    let campaign = Store::open(&db).unwrap().load_campaign(id).unwrap();
    assert_eq!(campaign.state, CampaignState::Completed);
    let rec = campaign.devices.first().unwrap();
    assert_eq!(rec.status, DeviceStatus::Succeeded, "{rec:?}");
    // The timeout path: a second attempt, a second notice.
    assert_eq!(rec.attempts, 2, "{rec:?}");
    fleet.shutdown().await;
}
