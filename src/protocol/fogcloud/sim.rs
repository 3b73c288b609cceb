//! A simulated MXCHIP FogCloud device or gateway, as `fogcloud-ota.md` and the notes describe:
//! `version.post` / `firmware.post` / `firmware.get` / `upgrade.post` on its own
//! `thing/up|down/ota` topics, and for a gateway the `sub.*` methods carrying arrays of
//! sub-device entries, each sub-device upgrading independently.
//!
//! Owns: the envelope, the payloads the device sends (built here with serde_json), reading
//! `firmware.post` / `sub.firmware.post`, batching sub-device reports into one message; and
//! the dialect's [`SimFactory`] ([`FACTORY`], returned by `Dialect::sim`).
//! Must never: use the console's own reading or writing of the dialect (the rest of
//! `crate::protocol`): the simulator is an independent reading of the documents (see the module
//! doc of `crate::sim`). Dependencies go from here to `crate::sim`, never back.

use std::sync::Arc;

use rand::Rng;
use serde_json::{Map, Value, json};
use tokio::task::JoinSet;

use crate::device_id::DeviceId;
use crate::device_id::{DeviceIdError, DialectId};
use crate::sim::SimConfig;
use crate::sim::config::{Fault, LazyRng};
use crate::sim::download::Expected;
use crate::sim::hub::Shared;
use crate::sim::link::{Inbound, Link};
use crate::sim::stats::{DeviceState, DeviceStats, StatsCell};
use crate::sim::upgrade::{self, FileToFetch, Job, JobEvent, Outcome, Phase};
use crate::sim::{
    Credential, Ctx, MemberKind, SimError, SimFactory, SimUnit, Spawner, UnitKind, UnitSpec, strict,
};

/// Messages larger than this are not parsed (a gateway push for 1000 sub-devices is ~400 KiB,
/// more than a real gateway's buffer).
const MAX_MESSAGE_BYTES: usize = 256 * 1024;
const JOB_QUEUE: usize = 256;
const DEFAULT_MODULE: &str = "default";

/// Failure descriptions in the platform's language; the first is the document's own example.
const DESC_DOWNLOAD_FAILED: &str = "OTA升级失败,请求不到升级包信息。";
const DESC_VERIFY_FAILED: &str = "OTA升级失败,升级包校验失败。";
const DESC_FLASH_FAILED: &str = "OTA升级失败,固件写入失败。";
const DESC_NO_MODULE: &str = "OTA升级失败,设备没有该模块。";

const DEVICES: UnitKind = UnitKind {
    key: "devices",
    label: "FogCloud devices",
    flag: "fogcloud",
    value_name: "N",
    help: "Plain FogCloud devices",
    tag: "fog",
    stream: 2,
    members: None,
    demo: 8,
};

const GATEWAYS: UnitKind = UnitKind {
    key: "gateways",
    label: "FogCloud gateways",
    flag: "fogcloud-gateways",
    value_name: "G",
    help: "FogCloud gateways (each with --subs sub-devices)",
    tag: "fgw",
    stream: 3,
    members: Some(MemberKind {
        noun: "sub-device",
        flag: "subs",
        value_name: "K",
        help: "Sub-devices per FogCloud gateway",
        default: 4,
        demo: 8,
    }),
    demo: 2,
};

/// The random streams of sub-devices (a gateway's `index * 100_000 + k`).
const SUB_STREAM: u64 = 4;

/// The kinds of FogCloud unit: plain devices, and gateways with sub-devices.
pub static KINDS: [UnitKind; 2] = [DEVICES, GATEWAYS];

/// The FogCloud simulator, as `Dialect::sim` gives it.
pub struct FogCloudSim;

pub static FACTORY: FogCloudSim = FogCloudSim;

impl SimFactory for FogCloudSim {
    fn dialect(&self) -> DialectId {
        super::ID
    }

    fn kinds(&self) -> &'static [UnitKind] {
        &KINDS
    }

    fn spawn(&self, unit: &UnitSpec, fleet: &mut Spawner<'_>) -> Result<(), SimError> {
        if unit.is(&GATEWAYS) {
            let subs = unit.members;
            fleet.spawn_units(unit, |cfg, i, ctx| FogDevice::gateway(cfg, subs, i, ctx))
        } else {
            fleet.spawn_units(unit, FogDevice::plain)
        }
    }

    fn credential(
        &self,
        unit: &UnitSpec,
        cfg: &SimConfig,
        index: usize,
    ) -> Result<Credential, DeviceIdError> {
        // A user per device or gateway (its sub-devices publish through it, under its login).
        let name = if unit.is(&GATEWAYS) {
            gateway_name(cfg, index)
        } else {
            device_name(cfg, index)
        };
        Ok(Credential::User(vec![DeviceId::fogcloud(
            &cfg.product_key,
            &name,
        )?]))
    }
}

/// The device name of the `index`-th (from 0) plain FogCloud device of `cfg`.
pub fn device_name(cfg: &SimConfig, index: usize) -> String {
    cfg.unit_name(DEVICES.tag, index)
}

/// The device name of the `index`-th FogCloud gateway of `cfg`.
pub fn gateway_name(cfg: &SimConfig, index: usize) -> String {
    cfg.unit_name(GATEWAYS.tag, index)
}

/// The device name of sub-device `sub` of gateway `gateway`.
pub fn sub_name(cfg: &SimConfig, gateway: usize, sub: usize) -> String {
    cfg.member_name(GATEWAYS.tag, gateway, sub)
}

/// What `firmware.post` (or one `sub.firmware.post` entry) offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Offer {
    pub version: String,
    pub url: String,
    pub expected: Expected,
    pub module: String,
    pub task_id: String,
}

/// Who an upgrade job is for: the device itself (`None`) or its sub-device number.
type Target = Option<usize>;

#[derive(Debug)]
struct Running {
    version: String,
    module: String,
    task_id: String,
    bytes: u64,
}

/// One member of the unit: the device itself or one of a gateway's sub-devices.
struct Member {
    pk: String,
    dn: String,
    version: String,
    stats: StatsCell,
    rng: LazyRng,
    running: Option<Running>,
    /// A gateway's sub-device: its entries carry `identity` and go in `sub.*` messages.
    is_sub: bool,
}

impl Member {
    fn identity(&self) -> Value {
        json!({ "product_key": self.pk, "device_name": self.dn })
    }
}

/// A FogCloud device with one connection; a gateway when it has sub-devices.
pub(crate) struct FogDevice {
    ctx: Arc<Ctx>,
    client_id: String,
    own: Member,
    subs: Vec<Member>,
    silent: bool,
    next_id: u64,
    ask_on_connect: bool,
}

/// Sub-device entries gathered from a burst of job events, published as one message each.
#[derive(Default)]
struct SubBatch {
    upgrade: Vec<Value>,
    version: Vec<Value>,
}

impl FogDevice {
    pub(crate) fn plain(cfg: &SimConfig, index: usize, ctx: Arc<Ctx>) -> Result<Self, SimError> {
        let name = device_name(cfg, index);
        let rng = LazyRng::new(cfg.seed, DEVICES.stream, index);
        Self::build(cfg, name, rng, Vec::new(), ctx)
    }

    pub(crate) fn gateway(
        cfg: &SimConfig,
        subs: usize,
        index: usize,
        ctx: Arc<Ctx>,
    ) -> Result<Self, SimError> {
        let name = gateway_name(cfg, index);
        let rng = LazyRng::new(cfg.seed, GATEWAYS.stream, index);
        let subs = (0..subs)
            .map(|k| {
                let rng = LazyRng::new(cfg.seed, SUB_STREAM, index * 100_000 + k);
                Member::new(cfg, sub_name(cfg, index, k), rng, true)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Self::build(cfg, name, rng, subs, ctx)
    }

    fn build(
        cfg: &SimConfig,
        name: String,
        rng: LazyRng,
        subs: Vec<Member>,
        ctx: Arc<Ctx>,
    ) -> Result<Self, SimError> {
        let mut own = Member::new(cfg, name, rng, false)?;
        // A silent gateway answers for none of its sub-devices either.
        let silent = own.rng.get().random_bool(ctx.behaviour.faults.silent);
        for m in std::iter::once(&own).chain(&subs) {
            m.stats.update(|s| s.silent = silent);
        }
        Ok(FogDevice {
            client_id: format!("fog.{}.{}", cfg.product_key, own.dn),
            ctx,
            own,
            subs,
            silent,
            next_id: 0,
            ask_on_connect: false,
        })
    }

    pub(crate) fn cells(&self) -> Vec<StatsCell> {
        std::iter::once(&self.own)
            .chain(&self.subs)
            .map(|m| m.stats.clone())
            .collect()
    }

    /// The unit's own device (the gateway of sub-devices), whose login covers the rest.
    pub(crate) fn id(&self) -> DeviceId {
        self.own.stats.update(|s| s.id.clone())
    }

    fn up_topic(&self) -> String {
        format!("fogcloud/{}/{}/thing/up/ota", self.own.pk, self.own.dn)
    }

    fn down_topic(&self) -> String {
        format!("fogcloud/{}/{}/thing/down/ota", self.own.pk, self.own.dn)
    }

    fn member(&mut self, target: Target) -> Option<&mut Member> {
        match target {
            None => Some(&mut self.own),
            Some(k) => self.subs.get_mut(k),
        }
    }

    fn all_members(&self) -> impl Iterator<Item = &Member> {
        std::iter::once(&self.own).chain(&self.subs)
    }

    /// Publishes `{"id","version":"1.0","method","params"}` on the up topic.
    fn send(&mut self, link: &Link, method: &str, params: Value) {
        self.next_id += 1;
        let msg =
            json!({ "id": self.next_id, "version": "1.0", "method": method, "params": params });
        link.publish(&self.up_topic(), &msg);
    }

    /// Runs the unit on its own connection, or on `shared` (see `hub.rs`).
    pub(crate) async fn run(mut self, shared: Option<Shared>) {
        let own_id = self.own.stats.update(|s| s.id.clone());
        let login = self.ctx.logins.user_login(&own_id, self.client_id.clone());
        let (mut link, mut inbox, mut connected) = match shared {
            Some(s) => (s.link, s.inbox, s.connected),
            None => Link::new(
                self.ctx.addr.clone(),
                login,
                self.own.stats.clone(),
                self.ctx.connect_gate.clone(),
            ),
        };
        link.connect();
        let mut job_chan = upgrade::JobChannel::new(JOB_QUEUE);
        let mut jobs = JoinSet::new();
        let mut pull = self.ctx.behaviour.pull.then(|| {
            let every = self.ctx.behaviour.pull_interval;
            tokio::time::interval_at(tokio::time::Instant::now() + every, every)
        });
        let mut back_online = None;
        let mut subscribe_later = None;
        loop {
            tokio::select! {
                Ok(()) = connected.changed() => {
                    subscribe_later = self.ctx.subscribe_timer();
                    self.on_connected(&link, subscribe_later.is_none());
                }
                () = crate::sim::fire(&mut subscribe_later) => {
                    subscribe_later = None;
                    link.subscribe(&[self.down_topic()]);
                    self.ask_if_due(&link);
                }
                Some(msg) = inbox.recv() => self.on_message(&link, *msg, &mut job_chan, &mut jobs),
                Some(first) = job_chan.recv() => {
                    // Everything already queued goes into the same sub.* messages.
                    let mut batch = SubBatch::default();
                    let mut offline = self.on_job(&link, first, &mut batch);
                    while let Some(next) = job_chan.try_recv() {
                        offline |= self.on_job(&link, next, &mut batch);
                    }
                    self.flush(&link, batch);
                    if offline {
                        link.go_offline();
                        jobs.abort_all();
                        self.go_offline();
                        back_online = Some(Box::pin(tokio::time::sleep(self.ctx.behaviour.offline_for)));
                    }
                }
                () = crate::sim::tick(&mut pull) => {
                    if self.own.running.is_none() && !self.silent {
                        self.ask(&link);
                    }
                }
                () = crate::sim::fire(&mut back_online) => {
                    back_online = None;
                    self.ask_on_connect = true;
                    for m in self.all_members() {
                        m.stats.update(|s| s.state = DeviceState::Connecting);
                    }
                    link.connect();
                }
                Some(_) = jobs.join_next(), if !jobs.is_empty() => {}
            }
        }
    }

    fn go_offline(&mut self) {
        for m in std::iter::once(&mut self.own).chain(self.subs.iter_mut()) {
            m.running = None;
            m.stats.update(|s| s.state = DeviceState::Offline);
        }
    }

    /// Reports versions; subscribes (and asks) first unless `subscribe_now` is false (strict:
    /// some SDKs report before they subscribe; the run loop subscribes later).
    fn on_connected(&mut self, link: &Link, subscribe_now: bool) {
        for m in self.all_members() {
            let idle = m.running.is_none();
            m.stats.update(|s| {
                s.connects += 1;
                if idle {
                    s.state = DeviceState::Idle;
                }
            });
        }
        if subscribe_now {
            link.subscribe(&[self.down_topic()]);
        }
        let own = json!({ "version": self.own.version, "module": DEFAULT_MODULE });
        self.send(link, "version.post", own);
        if !self.subs.is_empty() {
            let entries: Vec<Value> = self
                .subs
                .iter()
                .map(|m| json!({ "identity": m.identity(), "version": m.version, "module": DEFAULT_MODULE }))
                .collect();
            self.send(link, "sub.version.post", Value::Array(entries));
        }
        if subscribe_now {
            self.ask_if_due(link);
        }
    }

    fn ask_if_due(&mut self, link: &Link) {
        if !self.silent && (self.ctx.behaviour.pull || self.ask_on_connect) {
            self.ask(link);
        }
        self.ask_on_connect = false;
    }

    fn ask(&mut self, link: &Link) {
        self.send(link, "firmware.get", json!({ "module": DEFAULT_MODULE }));
        self.own.stats.update(|s| s.gets_sent += 1);
    }

    fn on_message(
        &mut self,
        link: &Link,
        msg: Inbound,
        job_chan: &mut upgrade::JobChannel<Target>,
        jobs: &mut JoinSet<()>,
    ) {
        if msg.topic != self.down_topic() {
            return;
        }
        let broken = self.ctx.strict.then(|| {
            match serde_json::from_slice::<Map<String, Value>>(&msg.payload) {
                Ok(m) => strict_problem(&m),
                Err(e) => Some(format!("not a JSON object: {e}")),
            }
        });
        if let Some(Some(why)) = broken {
            tracing::debug!(device = %self.own.dn, %why, "strict FogCloud device dropped a broken notice");
            self.own.stats.update(|s| {
                s.broken_notices += 1;
                s.notices_ignored += 1;
            });
            return;
        }
        let parsed = match parse_envelope(&msg.payload) {
            Ok(p) => p,
            Err(why) => {
                tracing::debug!(device = %self.own.dn, %why, "simulated FogCloud device ignored a message");
                self.own.stats.update(|s| s.notices_ignored += 1);
                return;
            }
        };
        match parsed {
            Down::Firmware(offer) => {
                self.own.stats.update(|s| s.notices_received += 1);
                if !self.silent {
                    self.start(link, None, offer, job_chan, jobs);
                }
            }
            Down::NothingPending => self.own.stats.update(|s| s.nothing_pending += 1),
            Down::SubFirmware(entries) => {
                for entry in entries {
                    self.on_sub_entry(link, entry, job_chan, jobs);
                }
            }
            Down::Other => {}
        }
    }

    fn on_sub_entry(
        &mut self,
        link: &Link,
        entry: Result<(String, String, Offer), String>,
        job_chan: &mut upgrade::JobChannel<Target>,
        jobs: &mut JoinSet<()>,
    ) {
        let found = entry
            .as_ref()
            .ok()
            .and_then(|(pk, dn, _)| self.subs.iter().position(|m| &m.pk == pk && &m.dn == dn));
        match (entry, found) {
            (Ok((_, _, offer)), Some(k)) => {
                if let Some(m) = self.subs.get(k) {
                    m.stats.update(|s| s.notices_received += 1);
                }
                if !self.silent {
                    self.start(link, Some(k), offer, job_chan, jobs);
                }
            }
            (entry, _) => {
                tracing::debug!(gateway = %self.own.dn, ?entry, "simulated gateway ignored a sub-device entry");
                self.own.stats.update(|s| s.notices_ignored += 1);
            }
        }
    }

    fn start(
        &mut self,
        link: &Link,
        target: Target,
        offer: Offer,
        job_chan: &mut upgrade::JobChannel<Target>,
        jobs: &mut JoinSet<()>,
    ) {
        let faults = self.ctx.behaviour.faults.clone();
        let behaviour = self.ctx.behaviour.clone();
        let http = self.ctx.http.clone();
        let Some(m) = self.member(target) else { return };
        if m.running.is_some() {
            m.stats.update(|s| s.notices_ignored += 1);
            return;
        }
        if offer.module != DEFAULT_MODULE {
            let entry = fail_entry(m, &offer.module, &offer.task_id, DESC_NO_MODULE);
            m.stats.update(|s| {
                s.upgrades_failed += 1;
                s.progress_sent += 1;
                s.state = DeviceState::Failed { code: -1 };
            });
            self.publish_progress(link, target, entry);
            return;
        }
        let fault = Fault::roll(&faults, m.rng.get());
        let file = FileToFetch {
            url: offer.url,
            expected: offer.expected,
        };
        let job = Job::new(vec![file], fault, &behaviour, &http);
        m.running = Some(Running {
            version: offer.version,
            module: offer.module,
            task_id: offer.task_id,
            bytes: 0,
        });
        m.stats.update(|s| {
            s.downloads_started += 1;
            s.state = DeviceState::Downloading { percent: 0 };
        });
        jobs.spawn(upgrade::run(job, target, job_chan.sender()));
    }

    /// Sends one progress entry at once: `upgrade.post` for the device, a one-entry
    /// `sub.upgrade.post` for a sub-device (used outside job bursts).
    fn publish_progress(&mut self, link: &Link, target: Target, entry: Value) {
        match target {
            None => self.send(link, "upgrade.post", entry),
            Some(_) => self.send(link, "sub.upgrade.post", Value::Array(vec![entry])),
        }
    }

    /// Applies one job event; sub-device reports go into `batch`. Returns true when the
    /// device must drop off the network.
    fn on_job(
        &mut self,
        link: &Link,
        (target, ev): (Target, JobEvent),
        batch: &mut SubBatch,
    ) -> bool {
        let Some(m) = self.member(target) else {
            return false;
        };
        let Some(running) = &mut m.running else {
            return false;
        };
        let entry = match ev {
            JobEvent::Bytes(total) => {
                let delta = total.saturating_sub(running.bytes);
                running.bytes = total;
                m.stats.update(|s| s.bytes_downloaded += delta);
                return false;
            }
            JobEvent::Progress {
                phase: Phase::Install,
                ..
            } => {
                m.stats.update(|s| s.state = DeviceState::Installing);
                return false;
            }
            JobEvent::Progress {
                phase: Phase::Download,
                percent,
            } => {
                m.stats.update(|s| {
                    s.progress_sent += 1;
                    s.state = DeviceState::Downloading { percent };
                });
                progress_entry(m, i32::from(percent))
            }
            JobEvent::Finished(Outcome::WentOffline) => return true,
            JobEvent::Finished(Outcome::Installed) => {
                let Some(done) = m.running.take() else {
                    return false;
                };
                m.version = done.version.clone();
                m.stats.update(|s| {
                    s.version = done.version.clone();
                    s.downloads_completed += 1;
                    s.upgrades_succeeded += 1;
                    s.state = DeviceState::Idle;
                });
                let params = json!({ "version": done.version, "module": done.module });
                match target {
                    None => self.send(link, "version.post", params),
                    Some(_) => {
                        let mut entry = params;
                        entry["identity"] = m.identity();
                        batch.version.push(entry);
                    }
                }
                return false;
            }
            JobEvent::Finished(failure) => {
                let desc = match failure {
                    Outcome::VerifyFailed(_) => DESC_VERIFY_FAILED,
                    Outcome::FlashFailed => DESC_FLASH_FAILED,
                    _ => DESC_DOWNLOAD_FAILED,
                };
                let Some(done) = m.running.take() else {
                    return false;
                };
                let entry = fail_entry(m, &done.module, &done.task_id, desc);
                m.stats.update(|s| {
                    if failure == Outcome::FlashFailed {
                        s.downloads_completed += 1;
                    }
                    s.progress_sent += 1;
                    s.upgrades_failed += 1;
                    s.state = DeviceState::Failed { code: -1 };
                });
                entry
            }
        };
        match target {
            None => self.send(link, "upgrade.post", entry),
            Some(_) => batch.upgrade.push(entry),
        }
        false
    }

    fn flush(&mut self, link: &Link, batch: SubBatch) {
        if !batch.upgrade.is_empty() {
            self.send(link, "sub.upgrade.post", Value::Array(batch.upgrade));
        }
        if !batch.version.is_empty() {
            self.send(link, "sub.version.post", Value::Array(batch.version));
        }
    }
}

impl SimUnit for FogDevice {
    /// The unit's own device: its login covers its sub-devices.
    fn ids(&self) -> Vec<DeviceId> {
        vec![self.id()]
    }

    fn cells(&self) -> Vec<StatsCell> {
        FogDevice::cells(self)
    }

    fn start(self, shared: Option<Shared>) -> impl Future<Output = ()> + Send + 'static {
        self.run(shared)
    }
}

impl Member {
    fn new(cfg: &SimConfig, dn: String, rng: LazyRng, is_sub: bool) -> Result<Member, SimError> {
        let id = DeviceId::fogcloud(&cfg.product_key, &dn)?;
        Ok(Member {
            pk: cfg.product_key.clone(),
            dn,
            version: cfg.version.clone(),
            stats: StatsCell::new(DeviceStats::new(id, &cfg.version)),
            rng,
            running: None,
            is_sub,
        })
    }
}

/// `upgrade.post` params, or a `sub.upgrade.post` entry (which also carries `identity`).
fn progress_entry(m: &Member, step: i32) -> Value {
    let (module, task_id) = m.running.as_ref().map_or((DEFAULT_MODULE, ""), |r| {
        (r.module.as_str(), r.task_id.as_str())
    });
    let mut entry = json!({ "step": step, "module": module, "task_id": task_id });
    if m.is_sub {
        entry["identity"] = m.identity();
    }
    entry
}

/// A failure report: step -1 with the reason in the platform's words.
fn fail_entry(m: &Member, module: &str, task_id: &str, desc: &str) -> Value {
    let mut entry = json!({ "step": -1, "desc": desc, "module": module, "task_id": task_id });
    if m.is_sub {
        entry["identity"] = m.identity();
    }
    entry
}

/// What arrived on the down topic.
#[derive(Debug)]
enum Down {
    Firmware(Offer),
    /// `firmware.post` with `params: {}` (answer to `firmware.get`).
    NothingPending,
    /// `sub.firmware.post`: each entry parsed on its own, so one bad entry spoils no other.
    SubFirmware(Vec<Result<(String, String, Offer), String>>),
    /// A method a device does not act on.
    Other,
}

fn parse_envelope(payload: &[u8]) -> Result<Down, String> {
    if payload.len() > MAX_MESSAGE_BYTES {
        return Err(format!(
            "{} bytes is larger than any OTA message",
            payload.len()
        ));
    }
    let msg: Map<String, Value> = match serde_json::from_slice(payload) {
        Ok(Value::Object(m)) => m,
        Ok(_) => return Err("not a JSON object".into()),
        Err(e) => return Err(format!("not JSON: {e}")),
    };
    let method = msg
        .get("method")
        .and_then(Value::as_str)
        .ok_or("method is missing")?;
    let params = msg.get("params").ok_or("params is missing")?;
    match method {
        "firmware.post" => match params {
            Value::Object(p) if p.is_empty() => Ok(Down::NothingPending),
            Value::Object(p) => parse_offer(p, "description").map(Down::Firmware),
            _ => Err("firmware.post params is not an object".into()),
        },
        "sub.firmware.post" => match params {
            Value::Array(entries) => Ok(Down::SubFirmware(
                entries.iter().map(parse_sub_entry).collect(),
            )),
            _ => Err("sub.firmware.post params is not an array".into()),
        },
        _ => Ok(Down::Other),
    }
}

fn parse_sub_entry(entry: &Value) -> Result<(String, String, Offer), String> {
    let e = entry.as_object().ok_or("entry is not an object")?;
    let identity = e
        .get("identity")
        .and_then(Value::as_object)
        .ok_or("identity is missing")?;
    let pk = required_str(identity, "product_key")?;
    let dn = required_str(identity, "device_name")?;
    Ok((pk.to_owned(), dn.to_owned(), parse_offer(e, "desc")?))
}

fn required_str<'a>(data: &'a Map<String, Value>, key: &str) -> Result<&'a str, String> {
    match data.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(_) => Err(format!("{key} is empty or not a string")),
        None => Err(format!("{key} is missing")),
    }
}

/// `firmware.post` params or a `sub.firmware.post` entry (`description_key` names the optional
/// description: `description` for the device, `desc` for sub-devices).
fn parse_offer(p: &Map<String, Value>, description_key: &str) -> Result<Offer, String> {
    let size = p
        .get("size")
        .and_then(Value::as_u64)
        .ok_or("size is missing or not a non-negative integer")?;
    let version = required_str(p, "version")?;
    let url = required_str(p, "url")?;
    let sign = required_str(p, "sign")?;
    let method = required_str(p, "sign_method")?;
    // An integer in a string per the document; a bare integer is echoed as its digits.
    let task_id = match p.get("task_id") {
        Some(Value::String(t)) if !t.is_empty() => t.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => return Err("task_id is missing".into()),
    };
    let checksum = match p.get("checksum") {
        None | Some(Value::Null) => None,
        Some(Value::String(c)) if c.len() == 8 && c.chars().all(|ch| ch.is_ascii_hexdigit()) => {
            Some(c.to_ascii_lowercase())
        }
        Some(_) => return Err("checksum is not 8 hex digits".into()),
    };
    let module = match p.get("module") {
        None => DEFAULT_MODULE.to_owned(),
        Some(Value::String(m)) if !m.is_empty() => m.clone(),
        Some(_) => return Err("module is empty or not a string".into()),
    };
    if let Some(d) = p.get(description_key)
        && !d.is_string()
    {
        return Err(format!("{description_key} is not a string"));
    }
    let mut expected = Expected {
        size,
        checksum,
        ..Expected::default()
    };
    if method.eq_ignore_ascii_case("md5") {
        expected.md5 = Some(sign.to_owned());
    } else if method.eq_ignore_ascii_case("sha256") {
        expected.sha256 = Some(sign.to_owned());
    } else {
        return Err(format!("sign_method {method:?} is neither MD5 nor SHA256"));
    }
    Ok(Offer {
        version: version.to_owned(),
        url: url.to_owned(),
        expected,
        module,
        task_id,
    })
}

// What a strict device stack refuses (protocols/notes.md; see `crate::sim::strict`).

/// Every `params` field of a FogCloud `firmware.post` (the document's, plus notes.md's
/// `checksum`).
const FOGCLOUD_POST: &[&str] = &[
    "size",
    "sign",
    "version",
    "url",
    "sign_method",
    "module",
    "description",
    "task_id",
    "checksum",
];
/// Every field of a `sub.firmware.post` entry (`desc` for the description).
const FOGCLOUD_SUB_ENTRY: &[&str] = &[
    "identity",
    "size",
    "sign",
    "version",
    "url",
    "sign_method",
    "module",
    "desc",
    "task_id",
    "checksum",
];
/// A FogCloud down message: `firmware.post` (any `params` without every field, `{}` included,
/// is broken: the document defines no empty reply) or `sub.firmware.post`.
fn strict_problem(msg: &Map<String, Value>) -> Option<String> {
    let method = msg.get("method").and_then(Value::as_str).unwrap_or("");
    if !matches!(method, "firmware.post" | "sub.firmware.post") {
        return None;
    }
    if msg.get("id").is_none_or(strict::empty) {
        return Some(format!("{method}: id is missing"));
    }
    match (method, msg.get("params")) {
        ("firmware.post", Some(Value::Object(p))) => {
            strict::fields_problem(p, FOGCLOUD_POST, "params")
        }
        ("sub.firmware.post", Some(Value::Array(entries))) if !entries.is_empty() => {
            entries.iter().find_map(|e| match e {
                Value::Object(entry) => {
                    strict::fields_problem(entry, FOGCLOUD_SUB_ENTRY, "params[]")
                }
                _ => Some("params[]: an entry is not an object".into()),
            })
        }
        _ => Some(format!(
            "{method}: params is missing, empty or of the wrong type"
        )),
    }
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

    fn fog_post() -> Value {
        json!({"id": 5, "version": "1.0", "method": "firmware.post", "params": {
            "size": 10, "sign": MD5, "version": "2.0", "url": "http://h/f",
            "sign_method": "MD5", "module": "default", "description": "d", "task_id": "1",
            "checksum": "06000000"}})
    }

    #[test]
    fn fogcloud_firmware_post_needs_every_field_and_no_empty_reply() {
        assert_eq!(strict_problem(&obj(fog_post())), None);
        for key in FOGCLOUD_POST {
            let mut m = fog_post();
            m["params"].as_object_mut().unwrap().remove(*key);
            assert!(strict_problem(&obj(m),).is_some(), "without {key}");
        }
        let empty_reply =
            json!({"id": 5, "version": "1.0", "method": "firmware.post", "params": {}});
        assert!(strict_problem(&obj(empty_reply)).is_some());
        let mut m = fog_post();
        m["params"]["description"] = json!("");
        assert!(strict_problem(&obj(m)).is_some());
        let sub = json!({"id": 5, "method": "sub.firmware.post", "params": [{
            "identity": {"product_key": "pk", "device_name": "s1"},
            "size": 10, "sign": MD5, "version": "2.0", "url": "http://h/f",
            "sign_method": "MD5", "module": "default", "desc": "d", "task_id": "1",
            "checksum": "06000000"}]});
        assert_eq!(strict_problem(&obj(sub.clone())), None);
        let mut broken = sub;
        broken["params"][0]
            .as_object_mut()
            .unwrap()
            .remove("task_id");
        assert!(strict_problem(&obj(broken)).is_some());
        // Other methods are not notices.
        assert_eq!(strict_problem(&obj(json!({"method": "x"}))), None);
    }
}
