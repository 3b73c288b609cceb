//! Simulated devices of a dialect file, so a user can try a file before touching a real
//! device: each announces its version on the file's announce topic, takes notices on the
//! notice topic, downloads and verifies the image with the simulator's runtime (`crate::sim`),
//! reports progress and failures the way the file encodes them, asks for its pending upgrade
//! when the file has a pull request, and announces the target version when done.
//!
//! Owns: [`UserSim`] (the dialect's [`SimFactory`], returned by `Dialect::sim`), the device's
//! plan built once from the file ([`Plan`]: topics, pointers, the layouts of what the console
//! sends) and the device itself. Faults: a download that breaks off, a corrupted image (the
//! real size and digest checks notice it), a failed flash — each reported with the value the
//! file marks with `sim = "download" | "verify" | "flash"` (else the first listed value) and the
//! reason as the failure text; a device that drops off mid-download; a silent device.
//!
//! Must never: use the console's reading or writing of the file (`codec.rs`, `template.rs`'s
//! `render`): messages are built here from the file's pointers and notices read through
//! `layout.rs`, so a console that fills a template wrongly fails here as on a device.

use std::sync::Arc;

use rand::Rng;
use serde_json::{Map, Value};
use tokio::task::JoinSet;

use super::layout::{Layout, Read};
use super::spec::{Pointer, SimFault, Spec, When};
use super::template::{Field, TopicTemplate};
use crate::device_id::{DeviceId, DeviceIdError, DialectId};
use crate::sim::config::{Fault, LazyRng};
use crate::sim::download::Expected;
use crate::sim::hub::Shared;
use crate::sim::link::{Inbound, Link};
use crate::sim::stats::{DeviceState, DeviceStats, StatsCell};
use crate::sim::upgrade::{self, FileToFetch, Job, JobEvent, Outcome, Phase};
use crate::sim::{
    Credential, Ctx, SimConfig, SimError, SimFactory, SimUnit, Spawner, UnitKind, UnitSpec,
};

/// Messages larger than this are not parsed (a notice is a few hundred bytes).
const MAX_MESSAGE_BYTES: usize = 64 * 1024;
const JOB_QUEUE: usize = 64;
/// How many of a dialect file's devices the window's demo fleet has.
const DEMO_DEVICES: usize = 3;

/// The simulator of one dialect file.
pub(super) struct UserSim {
    id: DialectId,
    kinds: &'static [UnitKind],
    /// What its devices do, or why the file's devices cannot be simulated (told at start).
    plan: Result<Arc<Plan>, String>,
}

impl UserSim {
    /// The simulator of the file `file` (validated into `spec`) of dialect `id`. Its flag
    /// (`ota-console sim --{prefix} N`) and name tag are the prefix, unless another simulator
    /// or an option of `ota-console sim` has it (then `{prefix}-devices`).
    pub(super) fn new(id: DialectId, file: &str, spec: &Spec) -> UserSim {
        let prefix = id.as_str();
        let mut taken: Vec<&str> = crate::sim::FIXED_OPTIONS.to_vec();
        let mut tags: Vec<&str> = Vec::new();
        for factory in crate::protocol::registry::sim_factories() {
            for kind in factory.kinds() {
                taken.push(kind.flag);
                taken.extend(kind.members.as_ref().map(|m| m.flag));
                tags.push(kind.tag);
            }
        }
        let free = |taken: &[&str]| {
            [prefix.to_owned(), format!("{prefix}-devices")]
                .into_iter()
                .find(|c| !taken.contains(&c.as_str()))
                .unwrap_or_else(|| format!("{prefix}-devices-{}", id.rank()))
        };
        let plan = Plan::new(spec)
            .map(Arc::new)
            .map_err(|why| format!("{file}: {why}"));
        let kind = UnitKind {
            key: "devices",
            label: super::template::leak(&format!("{} devices", id.label())),
            flag: super::template::leak(&free(&taken)),
            value_name: "N",
            help: super::template::leak(&format!(
                "Simulated devices of the dialect file {file} ({})",
                id.label()
            )),
            tag: super::template::leak(&free(&tags)),
            stream: u64::from(id.rank()),
            members: None,
            // A file whose devices cannot be simulated keeps the demo fleet startable.
            demo: if plan.is_ok() { DEMO_DEVICES } else { 0 },
        };
        UserSim {
            id,
            kinds: Box::leak(Box::new([kind])),
            plan,
        }
    }

    fn plan(&self) -> Result<&Arc<Plan>, SimError> {
        self.plan.as_ref().map_err(|why| {
            SimError::InvalidConfig(format!(
                "the devices of dialect {} cannot be simulated: {why}",
                self.id
            ))
        })
    }
}

impl SimFactory for UserSim {
    fn dialect(&self) -> DialectId {
        self.id
    }

    fn kinds(&self) -> &'static [UnitKind] {
        self.kinds
    }

    fn spawn(&self, unit: &UnitSpec, fleet: &mut Spawner<'_>) -> Result<(), SimError> {
        let plan = self.plan()?.clone();
        let (id, stream) = (self.id, unit.kind.stream);
        let tag = unit.kind.tag;
        fleet.spawn_units(unit, |cfg, index, ctx| {
            FileDevice::new(plan.clone(), id, cfg, tag, stream, index, ctx)
        })
    }

    fn credential(
        &self,
        unit: &UnitSpec,
        cfg: &SimConfig,
        index: usize,
    ) -> Result<Credential, DeviceIdError> {
        let name = cfg.unit_name(unit.kind.tag, index);
        let key = has_key(self.id).then_some(cfg.product_key.as_str());
        Ok(Credential::User(vec![DeviceId::new(self.id, key, &name)?]))
    }
}

fn has_key(id: DialectId) -> bool {
    matches!(id.shape(), crate::device_id::IdShape::KeyAndName { .. })
}

// ---------------------------------------------------------------- the plan

/// Where a kind of message goes and the value that marks it, if it shares its topic.
#[derive(Debug)]
struct Uplink {
    topic: &'static str,
    when: Option<(Pointer, Value)>,
}

impl Uplink {
    fn new(t: &TopicTemplate, when: &Option<When>) -> Uplink {
        Uplink {
            topic: t.text,
            when: when.as_ref().map(|w| (w.pointer, w.equals.clone())),
        }
    }

    /// A message of this kind: its `when` value set, nothing else yet.
    fn message(&self) -> Value {
        let mut m = Value::Object(Map::new());
        if let Some((at, v)) = &self.when {
            put(&mut m, at, v.clone());
        }
        m
    }
}

#[derive(Debug)]
struct PullPlan {
    request: Uplink,
    id: Option<Pointer>,
    reply_topic: &'static str,
    reply: Layout,
    nothing: Option<Layout>,
}

/// What the file's devices do, taken from the file once.
#[derive(Debug)]
pub(super) struct Plan {
    announce: Uplink,
    version_at: Pointer,
    announce_module: Option<Pointer>,
    notice_topic: &'static str,
    notice: Layout,
    progress: Uplink,
    percent: Option<Pointer>,
    task: Option<Pointer>,
    progress_module: Option<Pointer>,
    text: Option<Pointer>,
    failure_field: Pointer,
    /// The value reported for each fault: the one the file marks, else the first listed.
    failure_values: Vec<(SimFault, Value)>,
    fallback_failure: Value,
    /// Each listed value's code (what the simulator's counters show for a failed device).
    codes: Vec<(Value, i64)>,
    pull: Option<PullPlan>,
}

impl Plan {
    fn new(spec: &Spec) -> Result<Plan, String> {
        let notice = offer_layout(&spec.notice.payload, "notice.payload")?;
        let pull = match &spec.pull {
            None => None,
            Some(p) => Some(PullPlan {
                request: Uplink::new(&p.topic, &p.when),
                id: p.id,
                reply_topic: p.reply_topic.text,
                reply: offer_layout(&p.reply, "pull.reply")?,
                nothing: p.nothing.as_ref().map(Layout::of).transpose()?,
            }),
        };
        let f = &spec.progress.failure;
        let fallback_failure = f
            .codes
            .first()
            .map(|(v, _)| v.clone())
            .ok_or("progress.failure.codes lists no value")?;
        Ok(Plan {
            announce: Uplink::new(&spec.announce.topic, &spec.announce.when),
            version_at: spec.announce.version,
            announce_module: spec.announce.module,
            notice_topic: spec.notice.topic.text,
            notice,
            progress: Uplink::new(&spec.progress.topic, &spec.progress.when),
            percent: spec.progress.percent,
            task: spec.progress.task,
            progress_module: spec.progress.module,
            text: spec.progress.text,
            failure_field: f.field,
            failure_values: f.sim.clone(),
            fallback_failure,
            codes: f.codes.clone(),
            pull,
        })
    }

    fn failure_value(&self, fault: SimFault) -> Value {
        self.failure_values
            .iter()
            .find(|(f, _)| *f == fault)
            .map_or_else(|| self.fallback_failure.clone(), |(_, v)| v.clone())
    }

    /// The code of a listed failure value (-1 for none).
    fn code_of(&self, value: &Value) -> i64 {
        self.codes
            .iter()
            .find(|(v, _)| v == value)
            .map_or(-1, |(_, c)| *c)
    }

    /// The topics a device subscribes to.
    fn downlinks(&self) -> Vec<&'static str> {
        let mut out = vec![self.notice_topic];
        if let Some(p) = &self.pull
            && p.reply_topic != self.notice_topic
        {
            out.push(p.reply_topic);
        }
        out
    }
}

/// A device needs the image's address, version and size from a notice.
fn offer_layout(
    template: &super::template::PayloadTemplate,
    field: &str,
) -> Result<Layout, String> {
    let layout = Layout::of(template)?;
    for needed in [Field::Url, Field::Version, Field::Size] {
        if !layout.places(needed) {
            return Err(format!(
                "{field} must carry {{{{{}}}}} where a device can read it (a value of its own \
                 or text around it) for the simulator to download the image",
                needed.name()
            ));
        }
    }
    Ok(layout)
}

/// Sets the value at `pointer` in `root`, making objects on the way (an array index is taken
/// as an object key: a device builds its message from the pointers alone).
fn put(root: &mut Value, pointer: &str, value: Value) {
    let mut at = root;
    for token in pointer.split('/').skip(1) {
        let key = token.replace("~1", "/").replace("~0", "~");
        if !at.is_object() {
            *at = Value::Object(Map::new());
        }
        let Value::Object(map) = at else { return };
        at = map.entry(key).or_insert(Value::Null);
    }
    *at = value;
}

/// `topic` (a template's text) for a device: `{key}` and `{name}` levels filled in.
fn fill(topic: &str, key: &str, name: &str) -> String {
    topic
        .split('/')
        .map(|level| match level {
            "{key}" => key,
            "{name}" => name,
            other => other,
        })
        .collect::<Vec<_>>()
        .join("/")
}

// ---------------------------------------------------------------- a device

/// What a notice offers, as the device read it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Offer {
    version: String,
    url: String,
    expected: Expected,
    task: String,
    module: String,
}

#[derive(Debug)]
struct Running {
    version: String,
    module: String,
    task: String,
    bytes: u64,
}

/// What arrived on a downlink topic.
enum Down {
    Offer(Offer),
    NothingPending,
    /// Not a message of the file's, or one the device cannot use; the reason is logged.
    Ignored(String),
    /// Under `strict`: a notice with a field missing or empty.
    Broken(String),
}

struct FileDevice {
    plan: Arc<Plan>,
    ctx: Arc<Ctx>,
    key: String,
    name: String,
    client_id: String,
    stats: StatsCell,
    rng: LazyRng,
    silent: bool,
    /// Version per module, the default module (`""`) first.
    versions: Vec<(String, String)>,
    running: Option<Running>,
    next_request: u64,
    ask_on_connect: bool,
}

impl FileDevice {
    fn new(
        plan: Arc<Plan>,
        dialect: DialectId,
        cfg: &SimConfig,
        tag: &str,
        stream: u64,
        index: usize,
        ctx: Arc<Ctx>,
    ) -> Result<FileDevice, SimError> {
        let name = cfg.unit_name(tag, index);
        let key = has_key(dialect).then(|| cfg.product_key.clone());
        let id = DeviceId::new(dialect, key.as_deref(), &name)?;
        let mut versions = vec![(String::new(), cfg.version.clone())];
        // Modules of their own only where the file says where an announce names one.
        if plan.announce_module.is_some() {
            versions.extend(cfg.modules.iter().map(|m| (m.clone(), cfg.version.clone())));
        }
        let mut stats = DeviceStats::new(id, &cfg.version);
        stats.module_versions = versions.iter().skip(1).cloned().collect();
        let mut rng = LazyRng::new(cfg.seed, stream, index);
        let silent = rng.get().random_bool(ctx.behaviour.faults.silent);
        stats.silent = silent;
        let key = key.unwrap_or_default();
        Ok(FileDevice {
            client_id: [dialect.as_str(), &key, &name]
                .iter()
                .filter(|s| !s.is_empty())
                .copied()
                .collect::<Vec<_>>()
                .join("."),
            plan,
            ctx,
            key,
            name,
            stats: StatsCell::new(stats),
            rng,
            silent,
            versions,
            running: None,
            next_request: 0,
            ask_on_connect: false,
        })
    }

    fn topic(&self, template: &str) -> String {
        fill(template, &self.key, &self.name)
    }

    fn downlinks(&self) -> Vec<String> {
        self.plan
            .downlinks()
            .iter()
            .map(|t| self.topic(t))
            .collect()
    }

    async fn run(mut self, shared: Option<Shared>) {
        let id = self.stats.update(|s| s.id.clone());
        let login = self.ctx.logins.user_login(&id, self.client_id.clone());
        let (mut link, mut inbox, mut connected) = match shared {
            Some(s) => (s.link, s.inbox, s.connected),
            None => Link::new(
                self.ctx.addr.clone(),
                login,
                self.stats.clone(),
                self.ctx.connect_gate.clone(),
            ),
        };
        link.connect();
        let mut job_chan = upgrade::JobChannel::<()>::new(JOB_QUEUE);
        let mut jobs = JoinSet::new();
        let mut pull = (self.ctx.behaviour.pull && self.plan.pull.is_some()).then(|| {
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
                    link.subscribe(&self.downlinks());
                    self.ask_if_due(&link);
                }
                Some(msg) = inbox.recv() => self.on_message(&link, *msg, &mut job_chan, &mut jobs),
                Some(((), ev)) = job_chan.recv() => {
                    if self.on_job(&link, ev) {
                        link.go_offline();
                        jobs.abort_all();
                        self.running = None;
                        self.stats.update(|s| s.state = DeviceState::Offline);
                        back_online = Some(Box::pin(tokio::time::sleep(self.ctx.behaviour.offline_for)));
                    }
                }
                () = crate::sim::tick(&mut pull) => {
                    if self.running.is_none() && !self.silent {
                        self.ask(&link);
                    }
                }
                () = crate::sim::fire(&mut back_online) => {
                    back_online = None;
                    self.ask_on_connect = true;
                    self.stats.update(|s| s.state = DeviceState::Connecting);
                    link.connect();
                }
                Some(_) = jobs.join_next(), if !jobs.is_empty() => {}
            }
        }
    }

    /// Announces every module's version; subscribes (and asks) first unless `subscribe_now`
    /// is false (strict stacks report before they subscribe; the run loop subscribes later).
    fn on_connected(&mut self, link: &Link, subscribe_now: bool) {
        let idle = self.running.is_none();
        self.stats.update(|s| {
            s.connects += 1;
            if idle {
                s.state = DeviceState::Idle;
            }
        });
        if subscribe_now {
            link.subscribe(&self.downlinks());
        }
        for (module, version) in self.versions.clone() {
            self.announce(link, &module, &version);
        }
        if subscribe_now {
            self.ask_if_due(link);
        }
    }

    fn announce(&self, link: &Link, module: &str, version: &str) {
        let plan = &self.plan;
        let mut m = plan.announce.message();
        put(&mut m, plan.version_at, Value::String(version.to_owned()));
        if let Some(at) = plan.announce_module
            && !module.is_empty()
        {
            put(&mut m, at, Value::String(module.to_owned()));
        }
        link.publish(&self.topic(plan.announce.topic), &m);
    }

    fn ask_if_due(&mut self, link: &Link) {
        if !self.silent && (self.ctx.behaviour.pull || self.ask_on_connect) {
            self.ask(link);
        }
        self.ask_on_connect = false;
    }

    /// Asks for the pending upgrade (of the default module: no module is named), if the file
    /// has a pull request.
    fn ask(&mut self, link: &Link) {
        let Some(pull) = &self.plan.pull else { return };
        self.next_request += 1;
        let mut m = pull.request.message();
        if let Some(at) = pull.id {
            put(&mut m, at, Value::from(self.next_request));
        }
        link.publish(&self.topic(pull.request.topic), &m);
        self.stats.update(|s| s.gets_sent += 1);
    }

    fn on_message(
        &mut self,
        link: &Link,
        msg: Inbound,
        job_chan: &mut upgrade::JobChannel<()>,
        jobs: &mut JoinSet<()>,
    ) {
        match self.read(&msg) {
            Down::Offer(offer) => {
                self.stats.update(|s| s.notices_received += 1);
                if !self.silent {
                    self.start(link, offer, job_chan, jobs);
                }
            }
            Down::NothingPending => self.stats.update(|s| s.nothing_pending += 1),
            Down::Ignored(why) => {
                tracing::debug!(device = %self.name, %why, "simulated device of a dialect file ignored a message");
                self.stats.update(|s| s.notices_ignored += 1);
            }
            Down::Broken(why) => {
                tracing::debug!(device = %self.name, %why, "strict device of a dialect file dropped a broken notice");
                self.stats.update(|s| {
                    s.broken_notices += 1;
                    s.notices_ignored += 1;
                });
            }
        }
    }

    /// Reads a message on a downlink topic: a notice, a pull reply or "nothing pending".
    fn read(&self, msg: &Inbound) -> Down {
        if msg.payload.len() > MAX_MESSAGE_BYTES {
            return Down::Ignored(format!("{} bytes is too large", msg.payload.len()));
        }
        let message: Value = match serde_json::from_slice(&msg.payload) {
            Ok(v) => v,
            Err(e) => return Down::Ignored(format!("not JSON: {e}")),
        };
        let plan = &self.plan;
        let mut layouts: Vec<&Layout> = Vec::new();
        if msg.topic == self.topic(plan.notice_topic) {
            layouts.push(&plan.notice);
        }
        let pull = plan
            .pull
            .as_ref()
            .filter(|p| msg.topic == self.topic(p.reply_topic));
        if let Some(p) = pull {
            layouts.push(&p.reply);
        }
        if layouts.is_empty() {
            return Down::Ignored(format!("{} is not a topic of the device's", msg.topic));
        }
        // An offer has its literals and a url; a template whose literals every message has
        // (no literal at all) still needs the url.
        let offered = layouts
            .iter()
            .filter(|l| l.matches(&message))
            .map(|l| (*l, l.read(&message)))
            .find(|(_, r)| r.get(Field::Url).is_some());
        if let Some((layout, read)) = offered {
            return self.offer(layout, &read);
        }
        if pull
            .and_then(|p| p.nothing.as_ref())
            .is_some_and(|n| n.matches(&message))
        {
            return Down::NothingPending;
        }
        Down::Ignored("neither a notice nor a reply the file describes".into())
    }

    /// The offer in a notice the device recognised. A strict device needs every field the
    /// notice carries for the upgrade non-empty (the module and description may be empty: a
    /// template renders the default module as "").
    fn offer(&self, layout: &Layout, read: &Read) -> Down {
        let text = |f: Field| read.get(f).unwrap_or_default().trim().to_owned();
        if self.ctx.strict {
            let needed = [
                Field::Url,
                Field::Version,
                Field::Size,
                Field::Md5,
                Field::Sha256,
                Field::Checksum,
                Field::TaskId,
            ];
            if let Some(f) = needed
                .into_iter()
                .find(|f| layout.places(*f) && read.get(*f).is_none_or(|v| v.trim().is_empty()))
            {
                return Down::Broken(format!("{} is missing or empty", f.name()));
            }
        }
        let (url, version) = (text(Field::Url), text(Field::Version));
        if url.is_empty() || version.is_empty() {
            return Down::Ignored("the notice has no url or version".into());
        }
        let Ok(size) = text(Field::Size).parse::<u64>() else {
            return Down::Ignored(format!(
                "size {:?} is not a number of bytes",
                text(Field::Size)
            ));
        };
        if self.ctx.strict && size == 0 {
            return Down::Broken("size is 0".into());
        }
        let digest = |f: Field| Some(text(f).to_ascii_lowercase()).filter(|d| !d.is_empty());
        Down::Offer(Offer {
            version,
            url,
            expected: Expected {
                size,
                md5: digest(Field::Md5),
                sha256: digest(Field::Sha256),
                checksum: digest(Field::Checksum),
            },
            task: text(Field::TaskId),
            module: Some(text(Field::Module))
                .filter(|m| !crate::device_id::is_default_module(m))
                .unwrap_or_default(),
        })
    }

    fn start(
        &mut self,
        link: &Link,
        offer: Offer,
        job_chan: &mut upgrade::JobChannel<()>,
        jobs: &mut JoinSet<()>,
    ) {
        if self.running.is_some() {
            self.stats.update(|s| s.notices_ignored += 1);
            return;
        }
        if !self.versions.iter().any(|(m, _)| *m == offer.module) {
            let why = format!("the device has no module {:?}", offer.module);
            let value = self.plan.fallback_failure.clone();
            let code = self.plan.code_of(&value);
            self.stats.update(|s| {
                s.upgrades_failed += 1;
                s.progress_sent += 1;
                s.state = DeviceState::Failed { code };
            });
            self.report(link, &offer.module, &offer.task, Report::Failed(value, why));
            return;
        }
        let fault = Fault::roll(&self.ctx.behaviour.faults, self.rng.get());
        let file = FileToFetch {
            url: offer.url,
            expected: offer.expected,
        };
        let job = Job::new(vec![file], fault, &self.ctx.behaviour, &self.ctx.http);
        self.running = Some(Running {
            version: offer.version,
            module: offer.module,
            task: offer.task,
            bytes: 0,
        });
        self.stats.update(|s| {
            s.downloads_started += 1;
            s.state = DeviceState::Downloading { percent: 0 };
        });
        jobs.spawn(upgrade::run(job, (), job_chan.sender()));
    }

    /// Applies one job event. Returns true when the device must drop off the network.
    fn on_job(&mut self, link: &Link, ev: JobEvent) -> bool {
        let Some(running) = &mut self.running else {
            return false;
        };
        match ev {
            JobEvent::Bytes(total) => {
                let delta = total.saturating_sub(running.bytes);
                running.bytes = total;
                self.stats.update(|s| s.bytes_downloaded += delta);
            }
            JobEvent::Progress {
                phase: Phase::Install,
                ..
            } => self.stats.update(|s| s.state = DeviceState::Installing),
            JobEvent::Progress {
                phase: Phase::Download,
                percent,
            } => {
                let (module, task) = (running.module.clone(), running.task.clone());
                self.stats.update(|s| {
                    s.progress_sent += 1;
                    s.state = DeviceState::Downloading { percent };
                });
                self.report(link, &module, &task, Report::Percent(percent));
            }
            JobEvent::Finished(Outcome::WentOffline) => return true,
            JobEvent::Finished(Outcome::Installed) => {
                let Some(done) = self.running.take() else {
                    return false;
                };
                if let Some(entry) = self.versions.iter_mut().find(|(m, _)| *m == done.module) {
                    entry.1.clone_from(&done.version);
                }
                self.stats.update(|s| {
                    if done.module.is_empty() {
                        s.version.clone_from(&done.version);
                    } else {
                        s.module_versions
                            .insert(done.module.clone(), done.version.clone());
                    }
                    s.downloads_completed += 1;
                    s.upgrades_succeeded += 1;
                    s.state = DeviceState::Idle;
                });
                self.announce(link, &done.module, &done.version);
            }
            JobEvent::Finished(failure) => {
                let Some(done) = self.running.take() else {
                    return false;
                };
                let (fault, why) = match failure {
                    Outcome::VerifyFailed(why) => (SimFault::Verify, why),
                    Outcome::FlashFailed => (SimFault::Flash, "writing the image failed".into()),
                    Outcome::DownloadFailed(why) => (SimFault::Download, why),
                    Outcome::Installed | Outcome::WentOffline => return false,
                };
                let value = self.plan.failure_value(fault);
                let code = self.plan.code_of(&value);
                self.stats.update(|s| {
                    if fault == SimFault::Flash {
                        s.downloads_completed += 1;
                    }
                    s.progress_sent += 1;
                    s.upgrades_failed += 1;
                    s.state = DeviceState::Failed { code };
                });
                self.report(link, &done.module, &done.task, Report::Failed(value, why));
            }
        }
        false
    }

    /// Publishes a progress message: a percent, or a failure with its value and text.
    fn report(&self, link: &Link, module: &str, task: &str, report: Report) {
        let plan = &self.plan;
        let mut m = plan.progress.message();
        if let Some(at) = plan.task
            && !task.is_empty()
        {
            put(&mut m, at, Value::String(task.to_owned()));
        }
        if let Some(at) = plan.progress_module
            && !module.is_empty()
        {
            put(&mut m, at, Value::String(module.to_owned()));
        }
        match report {
            Report::Percent(p) => {
                if let Some(at) = plan.percent {
                    put(&mut m, at, Value::from(p));
                }
            }
            Report::Failed(value, why) => {
                put(&mut m, plan.failure_field, value);
                if let Some(at) = plan.text {
                    put(&mut m, at, Value::String(why));
                }
            }
        }
        link.publish(&self.topic(plan.progress.topic), &m);
    }
}

enum Report {
    Percent(u8),
    /// The failure field's value and the reason.
    Failed(Value, String),
}

impl SimUnit for FileDevice {
    fn ids(&self) -> Vec<DeviceId> {
        vec![self.stats.update(|s| s.id.clone())]
    }

    fn cells(&self) -> Vec<StatsCell> {
        vec![self.stats.clone()]
    }

    fn start(self, shared: Option<Shared>) -> impl Future<Output = ()> + Send + 'static {
        self.run(shared)
    }
}

#[cfg(test)]
mod tests {
    use super::super::UserDialect;
    use super::*;
    use crate::protocol::{
        Dialect, FirmwareGet, FirmwareOffer, MsgId, Notice, NoticeAddress, TaskRef, UpgradeNotice,
    };

    const ACME: &str = include_str!("../../../assets/dialects/acme.toml");
    const WIDGET: &str = include_str!("../../../tests/dialects/widget.toml");

    fn parse(src: &str) -> UserDialect {
        UserDialect::parse("t.toml", src, 60_001).unwrap()
    }

    fn notice(d: &UserDialect) -> UpgradeNotice {
        let device = DeviceId::new(d.id(), has_key(d.id()).then_some("lab"), "u1").unwrap();
        UpgradeNotice {
            device,
            offer: FirmwareOffer {
                version: "2.0.0-\"rc\"".into(),
                url: "http://10.0.0.1:8080/fw/a b.bin?t=x&y=\"1\"".into(),
                size: 40_000,
                md5: "0123456789abcdef0123456789abcdef".into(),
                sha256: "ab".repeat(32),
                checksum: "0001e240".into(),
                file_name: "a.bin".into(),
                description: "fixes \"the\" bug\n".into(),
            },
            address: NoticeAddress {
                msg_id: 5,
                timestamp_ms: 1_700_000_000_000,
                gateway: None,
                task: TaskRef::Key("0f8fad5b-d9cb-469f-a165-70867728950e".into()),
                exchange_id: None,
                device_timeout_ms: None,
            },
            settings: Default::default(),
        }
    }

    /// The console's own encoding (a test may use it: the device's reading is checked
    /// against it, not built from it) read back by the device's layouts.
    #[test]
    fn a_device_reads_back_every_value_the_console_sends() {
        for src in [ACME, WIDGET] {
            let d = parse(src);
            let plan = Plan::new(&d.spec).unwrap();
            let n = notice(&d);
            let out = d.encode(&Notice::Upgrade(n.clone())).unwrap();
            assert_eq!(
                out.topic,
                fill(plan.notice_topic, "lab", "u1"),
                "{}",
                d.id()
            );
            let msg: Value = serde_json::from_slice(&out.payload).unwrap();
            assert!(plan.notice.matches(&msg), "{}", d.id());
            let read = plan.notice.read(&msg);
            let o = &n.offer;
            assert_eq!(read.get(Field::Url), Some(o.url.as_str()));
            assert_eq!(read.get(Field::Version), Some(o.version.as_str()));
            assert_eq!(read.get(Field::Size), Some("40000"));
            for (f, want) in [
                (Field::Md5, &o.md5),
                (Field::Sha256, &o.sha256),
                (Field::Checksum, &o.checksum),
            ] {
                if plan.notice.places(f) {
                    assert_eq!(read.get(f), Some(want.as_str()), "{}: {f:?}", d.id());
                }
            }
            assert_eq!(
                read.get(Field::TaskId),
                Some("0f8fad5b-d9cb-469f-a165-70867728950e")
            );

            let pull = plan.pull.as_ref().unwrap();
            let request = FirmwareGet {
                device: n.device.clone(),
                id: MsgId::Num(3),
            };
            let reply = d
                .encode(&Notice::FirmwareGetReply {
                    request: request.clone(),
                    pending: Some(n.clone()),
                })
                .unwrap();
            let msg: Value = serde_json::from_slice(&reply.payload).unwrap();
            assert!(pull.reply.matches(&msg));
            assert_eq!(pull.reply.read(&msg).get(Field::Url), Some(o.url.as_str()));
            let nothing = d
                .encode(&Notice::FirmwareGetReply {
                    request,
                    pending: None,
                })
                .unwrap();
            let msg: Value = serde_json::from_slice(&nothing.payload).unwrap();
            assert!(pull.nothing.as_ref().unwrap().matches(&msg), "{}", d.id());
            let as_offer =
                pull.reply.matches(&msg) && pull.reply.read(&msg).get(Field::Url).is_some();
            assert!(!as_offer, "{}: nothing pending is no offer", d.id());
        }
    }

    #[test]
    fn faults_are_reported_with_the_values_the_file_marks_else_the_first() {
        let widget = Plan::new(&parse(WIDGET).spec).unwrap();
        assert_eq!(widget.failure_value(SimFault::Verify), "E_CRC");
        assert_eq!(widget.failure_value(SimFault::Flash), "E_POWER");
        assert_eq!(widget.failure_value(SimFault::Download), "E_FETCH");
        let unmarked = ACME.replace(", sim = \"flash\"", "");
        let acme = Plan::new(&parse(&unmarked).spec).unwrap();
        assert_eq!(acme.failure_value(SimFault::Verify), -2);
        assert_eq!(acme.failure_value(SimFault::Flash), -1, "the first listed");
    }

    #[test]
    fn a_notice_without_the_size_cannot_be_simulated_and_says_why() {
        let src = WIDGET.replace("\"length\": {{size}}, ", "");
        let d = parse(&src);
        let err = Plan::new(&d.spec).unwrap_err();
        assert!(
            err.contains("notice.payload") && err.contains("{{size}}"),
            "{err}"
        );
        let spawn = d.sim.plan().unwrap_err().to_string();
        assert!(spawn.contains("t.toml: notice.payload"), "{spawn}");
        assert_eq!(d.sim.kinds()[0].flag, d.id().as_str());
        assert_eq!(d.sim.kinds()[0].demo, 0, "the demo fleet still starts");
        assert_eq!(parse(WIDGET).sim.kinds()[0].demo, DEMO_DEVICES);
    }

    #[test]
    fn a_prefix_taken_as_an_option_gets_another_flag() {
        let src = WIDGET.replace("prefix = \"widget\"", "prefix = \"seed\"");
        let d = parse(&src);
        assert_eq!(d.sim.kinds()[0].flag, "seed-devices");
        assert_eq!(d.sim.kinds()[0].tag, "seed");
    }

    #[test]
    fn topics_are_filled_level_by_level() {
        assert_eq!(fill("acme/{key}/{name}/fw", "lab", "u1"), "acme/lab/u1/fw");
        assert_eq!(fill("b/{name}/x{name}", "", "u1"), "b/u1/x{name}");
    }

    #[test]
    fn messages_are_built_from_pointers() {
        let mut m = Value::Object(Map::new());
        put(&mut m, "/type", Value::from("hello"));
        put(&mut m, "/build/semver", Value::from("1.0"));
        put(&mut m, "/a~1b", Value::from(1));
        assert_eq!(
            m,
            serde_json::json!({"type": "hello", "build": {"semver": "1.0"}, "a/b": 1})
        );
    }
}
