//! A simulated DJI dock with its drone, as `dji-cloud-api-ota.md` and the notes describe: the
//! dock is the gateway with one connection; it announces itself and the drone with
//! `update_topo`, reports `firmware_version` on each device's `state` topic, answers
//! `ota_create` on `services_reply` and reports `ota_progress` events that need a reply.
//!
//! Owns: the dock's topics, the payloads it sends (built here with serde_json), reading
//! `ota_create`, counting the cloud's replies that never came; and the dialect's
//! [`SimFactory`] ([`FACTORY`], returned by `Dialect::sim`).
//! Must never: use the console's own reading or writing of the dialect (the rest of
//! `crate::protocol`): the simulator is an independent reading of the documents (see the module
//! doc of `crate::sim`). Dependencies go from here to `crate::sim`, never back.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use rand::rngs::StdRng;
use serde_json::{Map, Value, json};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::device_id::DeviceId;
use crate::device_id::{DeviceIdError, DialectId};
use crate::sim::SimConfig;
use crate::sim::config::{Fault, unit_rng};
use crate::sim::download::Expected;
use crate::sim::hub::Shared;
use crate::sim::link::{Inbound, Link};
use crate::sim::stats::{DeviceState, DeviceStats, StatsCell};
use crate::sim::upgrade::{self, FileToFetch, Job, JobEvent, Outcome, Phase};
use crate::sim::{
    Credential, Ctx, SimError, SimFactory, SimUnit, Spawner, UnitKind, UnitSpec, now_millis, strict,
};

/// The kinds of DJI unit: docks, each with its drone.
pub static KINDS: [UnitKind; 1] = [UnitKind {
    key: "docks",
    label: "DJI docks",
    flag: "dji-docks",
    value_name: "N",
    help: "DJI docks (each with one drone)",
    tag: "dock",
    stream: 5,
    members: None,
    demo: 4,
}];

/// The DJI simulator, as `Dialect::sim` gives it.
pub struct DjiSim;

pub static FACTORY: DjiSim = DjiSim;

impl SimFactory for DjiSim {
    fn dialect(&self) -> DialectId {
        super::ID
    }

    fn kinds(&self) -> &'static [UnitKind] {
        &KINDS
    }

    fn spawn(&self, unit: &UnitSpec, fleet: &mut Spawner<'_>) -> Result<(), SimError> {
        fleet.spawn_units(unit, Dock::new)
    }

    fn credential(
        &self,
        _unit: &UnitSpec,
        cfg: &SimConfig,
        index: usize,
    ) -> Result<Credential, DeviceIdError> {
        // The dock's user also names its drone, whose state and osd the dock publishes.
        Ok(Credential::User(vec![
            DeviceId::dji(&dock_sn(cfg, index))?,
            DeviceId::dji(&drone_sn(cfg, index))?,
        ]))
    }
}

/// The serial number of the `index`-th (from 0) simulated dock of `cfg`.
pub fn dock_sn(cfg: &SimConfig, index: usize) -> String {
    cfg.unit_name(KINDS[0].tag, index)
}

/// The serial number of the drone of the `index`-th simulated dock of `cfg`.
pub fn drone_sn(cfg: &SimConfig, index: usize) -> String {
    cfg.unit_name("drone", index)
}

/// Codes the dock answers with, from DJI's error list in the notes.
pub const CODE_ALREADY_UPGRADING: i64 = 312014;
pub const CODE_AIRCRAFT_IN_FLIGHT: i64 = 312015;
pub const CODE_AIRCRAFT_UNLINKED: i64 = 312022;
pub const CODE_BATTERY_LOW: i64 = 312704;
/// Failure codes for injected download / verification / flash failures. DJI's public list
/// gives no codes for these, so the simulator uses its own, recognisably outside DJI's list.
pub const CODE_SIM_DOWNLOAD_FAILED: i64 = 312990;
pub const CODE_SIM_VERIFY_FAILED: i64 = 312991;
pub const CODE_SIM_FLASH_FAILED: i64 = 312992;

/// DJI device kinds: DJI Dock (3-0) and a Matrice 30 drone (67-0).
const DOCK_TYPE: (i64, i64) = (3, 0);
const DRONE_TYPE: (i64, i64) = (67, 0);
const THING_VERSION: &str = "1.1.2";
const MAX_MESSAGE_BYTES: usize = 64 * 1024;
const JOB_QUEUE: usize = 64;
/// How often pending replies are checked against the reply timeout.
const REPLY_SWEEP: Duration = Duration::from_millis(250);
/// How often a connected dock (and its drone, when linked) publishes `osd` (DJI docks send it
/// at 0.5 Hz): how a console that restarted learns that a quiet dock is there.
const OSD_INTERVAL: Duration = Duration::from_secs(2);

/// One device entry of `ota_create`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OtaDevice {
    pub sn: String,
    pub product_version: String,
    /// The file to fetch; absent for a consistency upgrade that needs none.
    pub file: Option<FileToFetch>,
}

/// An `ota_create` service call.
#[derive(Debug, Clone)]
pub(crate) struct OtaCreate {
    pub tid: String,
    pub bid: String,
    pub devices: Vec<OtaDevice>,
}

/// The task in progress (a dock runs one at a time).
#[derive(Debug)]
struct Task {
    bid: String,
    devices: Vec<OtaDevice>,
    percent: u8,
    step_key: &'static str,
    bytes: u64,
}

pub(crate) struct Dock {
    ctx: Arc<Ctx>,
    sn: String,
    drone_sn: String,
    dock_stats: StatsCell,
    drone_stats: StatsCell,
    dock_version: String,
    drone_version: String,
    drone_online: bool,
    secrets: [(String, String); 2],
    rng: StdRng,
    silent: bool,
    task: Option<Task>,
    /// tids of our messages that expect a reply, with when they were sent.
    awaiting: HashMap<String, Instant>,
    /// Connected (announced itself) and not dropped off on purpose: `osd` goes out.
    on_air: bool,
}

impl Dock {
    pub(crate) fn new(cfg: &SimConfig, index: usize, ctx: Arc<Ctx>) -> Result<Dock, SimError> {
        let sn = dock_sn(cfg, index);
        let drone_sn = drone_sn(cfg, index);
        let mut rng = unit_rng(cfg.seed, KINDS[0].stream, index);
        let silent = rng.random_bool(ctx.behaviour.faults.silent);
        let mut secret = || {
            (
                format!("{:032x}", rng.random::<u128>()),
                format!("{:016x}", rng.random::<u64>()),
            )
        };
        let secrets = [secret(), secret()];
        let mut dock = DeviceStats::new(DeviceId::dji(&sn)?, &cfg.version);
        let mut drone = DeviceStats::new(DeviceId::dji(&drone_sn)?, &cfg.version);
        dock.silent = silent;
        drone.silent = silent;
        Ok(Dock {
            ctx,
            sn,
            drone_sn,
            dock_stats: StatsCell::new(dock),
            drone_stats: StatsCell::new(drone),
            dock_version: cfg.version.clone(),
            drone_version: cfg.version.clone(),
            drone_online: true,
            secrets,
            rng,
            silent,
            task: None,
            awaiting: HashMap::new(),
            on_air: false,
        })
    }

    pub(crate) fn cells(&self) -> Vec<StatsCell> {
        vec![self.dock_stats.clone(), self.drone_stats.clone()]
    }

    fn stats_of(&self, sn: &str) -> &StatsCell {
        if sn == self.drone_sn {
            &self.drone_stats
        } else {
            &self.dock_stats
        }
    }

    fn both(&self, f: impl Fn(&mut DeviceStats)) {
        self.dock_stats.update(&f);
        self.drone_stats.update(&f);
    }

    /// Runs the unit on its own connection, or on `shared` (see `hub.rs`).
    /// The dock and its drone (a dock's login names both).
    pub(crate) fn ids(&self) -> [DeviceId; 2] {
        [
            self.dock_stats.update(|s| s.id.clone()),
            self.drone_stats.update(|s| s.id.clone()),
        ]
    }

    /// Runs the unit on its own connection, or on `shared` (see `hub.rs`).
    pub(crate) async fn run(mut self, shared: Option<Shared>) {
        let dock_id = self.dock_stats.update(|s| s.id.clone());
        let login = self.ctx.logins.user_login(&dock_id, self.sn.clone());
        let (mut link, mut inbox, mut connected) = match shared {
            Some(s) => (s.link, s.inbox, s.connected),
            None => Link::new(
                self.ctx.addr.clone(),
                login,
                self.dock_stats.clone(),
                self.ctx.connect_gate.clone(),
            ),
        };
        link.connect();
        let mut job_chan = upgrade::JobChannel::new(JOB_QUEUE);
        let mut jobs = JoinSet::new();
        let mut sweep = tokio::time::interval(REPLY_SWEEP);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut sweep = Some(sweep);
        let mut back_online = None;
        let mut drone_back = None;
        let mut osd = tokio::time::interval(OSD_INTERVAL);
        osd.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut subscribe_later = None;
        loop {
            tokio::select! {
                Ok(()) = connected.changed() => {
                    subscribe_later = self.ctx.subscribe_timer();
                    self.on_connected(&link, subscribe_later.is_none());
                }
                () = crate::sim::fire(&mut subscribe_later) => {
                    subscribe_later = None;
                    link.subscribe(&[format!("thing/product/{}/services", self.sn)]);
                }
                _ = osd.tick(), if self.on_air => self.osd(&link),
                Some(msg) = inbox.recv() => self.on_message(&link, *msg, &mut job_chan, &mut jobs),
                Some((bid, ev)) = job_chan.recv() => match self.on_job(&link, &bid, ev) {
                    Gone::No => {}
                    Gone::Drone => {
                        drone_back = Some(Box::pin(tokio::time::sleep(self.ctx.behaviour.offline_for)));
                    }
                    Gone::Dock => {
                        self.on_air = false;
                        link.go_offline();
                        jobs.abort_all();
                        self.task = None;
                        self.awaiting.clear();
                        self.both(|s| s.state = DeviceState::Offline);
                        back_online = Some(Box::pin(tokio::time::sleep(self.ctx.behaviour.offline_for)));
                    }
                },
                // Only while replies are outstanding: idle docks cost no wake-ups.
                () = crate::sim::tick(&mut sweep), if !self.awaiting.is_empty() => self.sweep_replies(),
                () = crate::sim::fire(&mut back_online) => {
                    back_online = None;
                    self.both(|s| s.state = DeviceState::Connecting);
                    link.connect();
                }
                () = crate::sim::fire(&mut drone_back) => {
                    drone_back = None;
                    self.drone_online = true;
                    self.drone_stats.update(|s| s.state = DeviceState::Idle);
                    self.update_topo(&link);
                    let v = self.drone_version.clone();
                    self.state(&link, &self.drone_sn.clone(), json!({ "firmware_version": v }));
                }
                Some(_) = jobs.join_next(), if !jobs.is_empty() => {}
            }
        }
    }

    fn envelope(&self, method: Option<&str>, bid: &str, data: Value) -> (String, Value) {
        let tid = uuid::Uuid::new_v4().to_string();
        let mut msg = json!({ "tid": tid, "bid": bid, "timestamp": now_millis(), "data": data });
        if let Some(m) = method {
            msg["method"] = json!(m);
        }
        (tid, msg)
    }

    /// Announces the topology and reports versions. The reply topics are subscribed first (a
    /// dock waits for those replies); the `services` topic, where `ota_create` arrives, only now
    /// when `subscribe_now` (strict: the run loop subscribes to it later).
    fn on_connected(&mut self, link: &Link, subscribe_now: bool) {
        self.on_air = true;
        let busy = self.task.is_some();
        let drone_online = self.drone_online;
        self.dock_stats.update(|s| {
            s.connects += 1;
            if !busy {
                s.state = DeviceState::Idle;
            }
        });
        self.drone_stats.update(|s| {
            s.connects += 1;
            if !busy && drone_online {
                s.state = DeviceState::Idle;
            }
        });
        let sn = self.sn.clone();
        let mut topics = vec![
            format!("thing/product/{sn}/events_reply"),
            format!("sys/product/{sn}/status_reply"),
        ];
        if subscribe_now {
            topics.insert(0, format!("thing/product/{sn}/services"));
        }
        link.subscribe(&topics);
        self.update_topo(link);
        let dock = json!({ "firmware_version": self.dock_version, "compatible_status": 0 });
        self.state(link, &sn, dock);
        if self.drone_online {
            let drone = json!({ "firmware_version": self.drone_version });
            self.state(link, &self.drone_sn.clone(), drone);
        }
    }

    /// `update_topo` with the drone in `sub_devices`, or none when the drone is away.
    fn update_topo(&mut self, link: &Link) {
        let [(dock_secret, dock_nonce), (drone_secret, drone_nonce)] = &self.secrets;
        let subs = if self.drone_online {
            vec![json!({
                "sn": self.drone_sn, "type": DRONE_TYPE.0, "sub_type": DRONE_TYPE.1, "index": "A",
                "device_secret": drone_secret, "nonce": drone_nonce, "thing_version": THING_VERSION,
            })]
        } else {
            Vec::new()
        };
        let data = json!({
            "type": DOCK_TYPE.0, "sub_type": DOCK_TYPE.1, "device_secret": dock_secret,
            "nonce": dock_nonce, "thing_version": THING_VERSION, "sub_devices": subs,
        });
        let bid = uuid::Uuid::new_v4().to_string();
        let (tid, msg) = self.envelope(Some("update_topo"), &bid, data);
        link.publish(&format!("sys/product/{}/status", self.sn), &msg);
        self.awaiting.insert(tid, Instant::now());
    }

    /// The periodic telemetry of the dock and of its drone when linked (only the version: the
    /// console reads nothing else of it).
    fn osd(&self, link: &Link) {
        let dock = json!({ "firmware_version": self.dock_version, "compatible_status": 0 });
        self.publish_osd(link, &self.sn, dock);
        if self.drone_online {
            let drone = json!({ "firmware_version": self.drone_version });
            self.publish_osd(link, &self.drone_sn, drone);
        }
    }

    fn publish_osd(&self, link: &Link, sn: &str, data: Value) {
        self.properties(link, "osd", sn, data);
    }

    /// A property report on `thing/product/{sn}/state`.
    fn state(&self, link: &Link, sn: &str, data: Value) {
        self.properties(link, "state", sn, data);
    }

    /// Properties on `thing/product/{sn}/{topic}` (`state`: on change, `osd`: periodic).
    fn properties(&self, link: &Link, topic: &str, sn: &str, data: Value) {
        let bid = uuid::Uuid::new_v4().to_string();
        let (_, msg) = self.envelope(None, &bid, data);
        link.publish(&format!("thing/product/{sn}/{topic}"), &msg);
    }

    fn sweep_replies(&mut self) {
        let timeout = self.ctx.behaviour.reply_timeout;
        let before = self.awaiting.len();
        self.awaiting.retain(|_, sent| sent.elapsed() < timeout);
        let missing = (before - self.awaiting.len()) as u64;
        if missing > 0 {
            self.dock_stats.update(|s| s.missing_replies += missing);
        }
    }

    fn on_message(
        &mut self,
        link: &Link,
        msg: Inbound,
        job_chan: &mut upgrade::JobChannel<String>,
        jobs: &mut JoinSet<()>,
    ) {
        let sn = &self.sn;
        if msg.topic == format!("thing/product/{sn}/events_reply")
            || msg.topic == format!("sys/product/{sn}/status_reply")
        {
            // Counted as answered only when it names a tid we are waiting for.
            if let Ok(tid) = reply_tid(&msg.payload) {
                self.awaiting.remove(&tid);
            }
            return;
        }
        if msg.topic != format!("thing/product/{sn}/services") {
            return;
        }
        let broken = self.ctx.strict.then(|| match parse_object(&msg.payload) {
            Ok(m) => strict_problem(&m),
            Err(why) => Some(why),
        });
        if let Some(Some(why)) = broken {
            tracing::debug!(dock = %self.sn, %why, "strict dock dropped a broken ota_create");
            self.dock_stats.update(|s| {
                s.broken_notices += 1;
                s.notices_ignored += 1;
            });
            return;
        }
        match parse_ota_create(&msg.payload, &self.sn, &self.drone_sn) {
            Ok(Some(call)) => self.on_ota_create(link, call, job_chan, jobs),
            Ok(None) => {}
            Err(why) => {
                tracing::debug!(dock = %self.sn, %why, "simulated dock ignored a service call");
                self.dock_stats.update(|s| s.notices_ignored += 1);
            }
        }
    }

    fn on_ota_create(
        &mut self,
        link: &Link,
        call: OtaCreate,
        job_chan: &mut upgrade::JobChannel<String>,
        jobs: &mut JoinSet<()>,
    ) {
        for d in &call.devices {
            self.stats_of(&d.sn).update(|s| s.notices_received += 1);
        }
        if self.silent {
            return;
        }
        let wants_drone = call.devices.iter().any(|d| d.sn == self.drone_sn);
        let refusal = if self.task.is_some() {
            Some(CODE_ALREADY_UPGRADING)
        } else if wants_drone && !self.drone_online {
            Some(CODE_AIRCRAFT_UNLINKED)
        } else if self.rng.random_bool(self.ctx.behaviour.faults.reject) {
            Some(if self.rng.random_bool(0.5) {
                CODE_AIRCRAFT_IN_FLIGHT
            } else {
                CODE_BATTERY_LOW
            })
        } else {
            None
        };
        let (result, status) = match refusal {
            Some(code) => (code, "rejected"),
            None => (0, "in_progress"),
        };
        let reply = json!({
            "method": "ota_create", "tid": call.tid, "bid": call.bid, "timestamp": now_millis(),
            "data": { "result": result, "output": { "status": status } },
        });
        link.publish(&format!("thing/product/{}/services_reply", self.sn), &reply);
        if let Some(code) = refusal {
            for d in &call.devices {
                self.stats_of(&d.sn).update(|s| {
                    s.rejections += 1;
                    s.state = DeviceState::Rejected { code };
                });
            }
            return;
        }
        let fault = Fault::roll(&self.ctx.behaviour.faults, &mut self.rng);
        let files: Vec<FileToFetch> = call.devices.iter().filter_map(|d| d.file.clone()).collect();
        let downloads = !files.is_empty();
        for d in &call.devices {
            self.stats_of(&d.sn).update(|s| {
                if d.file.is_some() {
                    s.downloads_started += 1;
                }
                s.state = DeviceState::Downloading { percent: 0 };
            });
        }
        let job = Job::new(files, fault, &self.ctx.behaviour, &self.ctx.http);
        self.task = Some(Task {
            bid: call.bid.clone(),
            devices: call.devices,
            percent: 0,
            step_key: if downloads {
                "download_firmware"
            } else {
                "upgrade_firmware"
            },
            bytes: 0,
        });
        jobs.spawn(upgrade::run(job, call.bid, job_chan.sender()));
    }

    /// `ota_progress` on the events topic, with a fresh tid and the task's bid.
    fn progress(&mut self, link: &Link, bid: &str, result: i64, status: &str) {
        let Some(task) = &self.task else { return };
        let data = json!({
            "result": result,
            "output": {
                "status": status,
                "progress": { "percent": task.percent, "step_key": task.step_key },
            },
        });
        let (tid, mut msg) = self.envelope(Some("ota_progress"), bid, data);
        msg["need_reply"] = json!(1);
        link.publish(&format!("thing/product/{}/events", self.sn), &msg);
        self.awaiting.insert(tid, Instant::now());
        let targets: Vec<String> = task.devices.iter().map(|d| d.sn.clone()).collect();
        for sn in targets {
            self.stats_of(&sn).update(|s| s.progress_sent += 1);
        }
    }

    fn set_targets_state(&self, state: DeviceState) {
        if let Some(task) = &self.task {
            for d in &task.devices {
                self.stats_of(&d.sn).update(|s| s.state = state.clone());
            }
        }
    }

    fn on_job(&mut self, link: &Link, bid: &str, ev: JobEvent) -> Gone {
        let Some(task) = &mut self.task else {
            return Gone::No;
        };
        if task.bid != bid {
            return Gone::No;
        }
        match ev {
            JobEvent::Bytes(total) => {
                let delta = total.saturating_sub(task.bytes);
                task.bytes = total;
                // The dock downloads for the task as a whole; the bytes count for the dock.
                self.dock_stats.update(|s| s.bytes_downloaded += delta);
                Gone::No
            }
            JobEvent::Progress { phase, percent } => {
                task.percent = percent;
                task.step_key = match phase {
                    Phase::Download => "download_firmware",
                    Phase::Install => "upgrade_firmware",
                };
                self.set_targets_state(match phase {
                    Phase::Download => DeviceState::Downloading { percent },
                    Phase::Install => DeviceState::Installing,
                });
                self.progress(link, bid, 0, "in_progress");
                Gone::No
            }
            JobEvent::Finished(outcome) => self.finish(link, bid, outcome),
        }
    }

    fn finish(&mut self, link: &Link, bid: &str, outcome: Outcome) -> Gone {
        let code = match outcome {
            Outcome::Installed => {
                if let Some(task) = &mut self.task {
                    task.percent = 100;
                    task.step_key = "upgrade_firmware";
                }
                self.progress(link, bid, 0, "ok");
                let devices = self.task.take().map(|t| t.devices).unwrap_or_default();
                for d in devices {
                    if d.sn == self.drone_sn {
                        self.drone_version = d.product_version.clone();
                    } else {
                        self.dock_version = d.product_version.clone();
                    }
                    self.stats_of(&d.sn).update(|s| {
                        s.version = d.product_version.clone();
                        if d.file.is_some() {
                            s.downloads_completed += 1;
                        }
                        s.upgrades_succeeded += 1;
                        s.state = DeviceState::Idle;
                    });
                    self.state(
                        link,
                        &d.sn,
                        json!({ "firmware_version": d.product_version }),
                    );
                }
                return Gone::No;
            }
            Outcome::WentOffline => {
                let drone_in_task = self
                    .task
                    .as_ref()
                    .is_some_and(|t| t.devices.iter().any(|d| d.sn == self.drone_sn));
                if !drone_in_task {
                    return Gone::Dock;
                }
                // The drone dropped off the dock mid-download: the dock says so in its topology
                // and fails the task with DJI's "aircraft off or unlinked".
                self.drone_online = false;
                self.update_topo(link);
                CODE_AIRCRAFT_UNLINKED
            }
            Outcome::DownloadFailed(_) => CODE_SIM_DOWNLOAD_FAILED,
            Outcome::VerifyFailed(_) => CODE_SIM_VERIFY_FAILED,
            Outcome::FlashFailed => CODE_SIM_FLASH_FAILED,
        };
        self.progress(link, bid, code, "failed");
        self.set_targets_state(DeviceState::Failed { code });
        if let Some(task) = self.task.take() {
            for d in &task.devices {
                self.stats_of(&d.sn).update(|s| s.upgrades_failed += 1);
            }
        }
        if code == CODE_AIRCRAFT_UNLINKED {
            self.drone_stats.update(|s| s.state = DeviceState::Offline);
            return Gone::Drone;
        }
        Gone::No
    }
}

/// Who dropped off the network after a job event.
enum Gone {
    No,
    Drone,
    Dock,
}

impl SimUnit for Dock {
    fn ids(&self) -> Vec<DeviceId> {
        Dock::ids(self).to_vec()
    }

    fn cells(&self) -> Vec<StatsCell> {
        Dock::cells(self)
    }

    fn start(self, shared: Option<Shared>) -> impl Future<Output = ()> + Send + 'static {
        self.run(shared)
    }
}

fn parse_object(payload: &[u8]) -> Result<Map<String, Value>, String> {
    if payload.len() > MAX_MESSAGE_BYTES {
        return Err(format!(
            "{} bytes is larger than any service call",
            payload.len()
        ));
    }
    match serde_json::from_slice(payload) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err("not a JSON object".into()),
        Err(e) => Err(format!("not JSON: {e}")),
    }
}

fn required_str<'a>(data: &'a Map<String, Value>, key: &str) -> Result<&'a str, String> {
    match data.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(_) => Err(format!("{key} is empty or not a string")),
        None => Err(format!("{key} is missing")),
    }
}

/// The tid of a `status_reply` / `events_reply`.
fn reply_tid(payload: &[u8]) -> Result<String, String> {
    Ok(required_str(&parse_object(payload)?, "tid")?.to_owned())
}

/// Reads a service call; `Ok(None)` for services other than `ota_create`.
pub(crate) fn parse_ota_create(
    payload: &[u8],
    dock_sn: &str,
    drone_sn: &str,
) -> Result<Option<OtaCreate>, String> {
    let msg = parse_object(payload)?;
    if msg.get("method").and_then(Value::as_str) != Some("ota_create") {
        return Ok(None);
    }
    let tid = required_str(&msg, "tid")?.to_owned();
    let bid = required_str(&msg, "bid")?.to_owned();
    let devices = msg
        .get("data")
        .and_then(|d| d.get("devices"))
        .and_then(Value::as_array)
        .ok_or("data.devices is missing or not an array")?;
    if devices.is_empty() || devices.len() > 2 {
        return Err(format!(
            "data.devices has {} entries; 1 or 2 expected",
            devices.len()
        ));
    }
    let devices = devices
        .iter()
        .map(|d| parse_ota_device(d, dock_sn, drone_sn))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(OtaCreate { tid, bid, devices }))
}

fn parse_ota_device(d: &Value, dock_sn: &str, drone_sn: &str) -> Result<OtaDevice, String> {
    let d = d.as_object().ok_or("a devices entry is not an object")?;
    let sn = required_str(d, "sn")?;
    if sn != dock_sn && sn != drone_sn {
        return Err(format!("sn {sn:?} is neither this dock nor its drone"));
    }
    let product_version = required_str(d, "product_version")?;
    match d.get("firmware_upgrade_type").and_then(Value::as_i64) {
        Some(2 | 3) => {}
        _ => return Err("firmware_upgrade_type is not 2 or 3".into()),
    }
    let file = match d.get("file_url") {
        None => None,
        Some(_) => {
            let url = required_str(d, "file_url")?;
            let md5 = required_str(d, "md5")?;
            let size = d
                .get("file_size")
                .and_then(Value::as_u64)
                .ok_or("file_size is missing or not a non-negative integer")?;
            required_str(d, "file_name")?;
            Some(FileToFetch {
                url: url.to_owned(),
                expected: Expected {
                    size,
                    md5: Some(md5.to_owned()),
                    ..Expected::default()
                },
            })
        }
    };
    Ok(OtaDevice {
        sn: sn.to_owned(),
        product_version: product_version.to_owned(),
        file,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::credentials::Authenticator;
    use crate::access::rules::Identity;
    use crate::sim::SimLogins;

    #[test]
    fn a_provisioned_dock_logs_in_speaking_for_its_drone() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = SimConfig {
            units: vec![UnitSpec::of(&FACTORY, 2).unwrap()],
            ..SimConfig::default()
        };
        let (logins, added) = SimLogins::provision(dir.path(), &cfg).unwrap();
        assert_eq!(added, 2);
        let dock = DeviceId::dji(&dock_sn(&cfg, 1)).unwrap();
        assert_eq!(dock.to_string(), "dji:sim-dock-0002");
        let login = logins.user_login(&dock, dock_sn(&cfg, 1));
        let auth = Authenticator::load(dir.path()).unwrap();
        let who = auth
            .authenticate(
                &login.client_id,
                login.username.as_deref(),
                login.password.as_deref().map(str::as_bytes),
            )
            .unwrap();
        match who {
            Identity::Site { devices, .. } => {
                assert!(devices.contains(&dock));
                assert!(devices.contains(&DeviceId::dji(&drone_sn(&cfg, 1)).unwrap()));
            }
            other => panic!("a dock speaks for its drone: {other:?}"),
        }
    }

    #[test]
    fn documented_ota_create_is_read() {
        let call = json!({
            "method": "ota_create", "timestamp": 1654070968655u64,
            "bid": "b-1", "tid": "t-1",
            "data": { "devices": [
                { "sn": "DRONE", "product_version": "1.00.223", "file_url": "http://h/x.zip",
                  "md5": "abcdef", "file_size": 653467234, "file_name": "wm245_1.00.223.zip",
                  "firmware_upgrade_type": 2 },
                { "sn": "DOCK", "product_version": "1.00.223", "firmware_upgrade_type": 3 }
            ]}
        });
        let parsed = parse_ota_create(call.to_string().as_bytes(), "DOCK", "DRONE")
            .unwrap()
            .unwrap();
        assert_eq!((parsed.tid.as_str(), parsed.bid.as_str()), ("t-1", "b-1"));
        assert_eq!(parsed.devices.len(), 2);
        let drone_file = parsed.devices[0].file.as_ref().unwrap();
        assert_eq!(drone_file.expected.size, 653467234);
        assert!(parsed.devices[1].file.is_none());
    }

    #[test]
    fn bad_calls_are_refused_and_other_services_skipped() {
        let other = json!({"method":"flighttask_prepare","tid":"t","bid":"b","data":{}});
        assert!(
            parse_ota_create(other.to_string().as_bytes(), "D", "R")
                .unwrap()
                .is_none()
        );
        for devices in [
            json!([]),
            json!([{ "sn": "X", "product_version": "1", "firmware_upgrade_type": 3 }]),
            json!([{ "sn": "D", "product_version": "1", "firmware_upgrade_type": 9 }]),
            json!([{ "sn": "D", "product_version": "1", "firmware_upgrade_type": 3, "file_url": "http://h/f" }]),
        ] {
            let call =
                json!({"method":"ota_create","tid":"t","bid":"b","data":{"devices":devices}});
            assert!(
                parse_ota_create(call.to_string().as_bytes(), "D", "R").is_err(),
                "{devices}"
            );
        }
    }
}

// What a strict device stack refuses (protocols/notes.md; see `crate::sim::strict`).

/// Every field of one `ota_create` device entry.
const DJI_DEVICE: &[&str] = &[
    "sn",
    "product_version",
    "firmware_upgrade_type",
    "file_url",
    "md5",
    "file_size",
    "file_name",
];

/// A DJI `ota_create` service call (other methods are not notices: `None`).
fn strict_problem(msg: &Map<String, Value>) -> Option<String> {
    if msg.get("method").and_then(Value::as_str) != Some("ota_create") {
        return None;
    }
    for key in ["tid", "bid", "timestamp"] {
        if msg.get(key).is_none_or(strict::empty) {
            return Some(format!("{key} is missing or empty"));
        }
    }
    let devices = match msg.get("data").and_then(|d| d.get("devices")) {
        Some(Value::Array(d)) if !d.is_empty() => d,
        _ => return Some("data.devices is missing or empty".into()),
    };
    devices.iter().find_map(|d| match d {
        Value::Object(entry) => strict::fields_problem(entry, DJI_DEVICE, "data.devices[]"),
        _ => Some("data.devices[]: an entry is not an object".into()),
    })
}

#[cfg(test)]
mod strict_tests {
    use serde_json::json;

    use super::*;

    const MD5: &str = "83254ac96e141affb8aa42cbfec90000";

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            other => panic!("{other}"),
        }
    }

    #[test]
    fn dji_ota_create_needs_every_device_field() {
        let good = json!({"tid": "t", "bid": "b", "timestamp": 1, "method": "ota_create",
            "data": {"devices": [{"sn": "SN", "product_version": "2.0",
            "firmware_upgrade_type": 3, "file_url": "http://h/f", "md5": MD5,
            "file_size": 10, "file_name": "f.bin"}]}});
        assert_eq!(strict_problem(&obj(good.clone())), None);
        for key in DJI_DEVICE {
            let mut m = good.clone();
            m["data"]["devices"][0]
                .as_object_mut()
                .unwrap()
                .remove(*key);
            assert!(strict_problem(&obj(m)).is_some(), "without {key}");
        }
        let mut m = good;
        m["bid"] = json!("");
        assert!(strict_problem(&obj(m)).is_some());
        assert_eq!(strict_problem(&obj(json!({"method": "other"}))), None);
    }
}
