//! A simulated AWS IoT thing running jobs as AWS's device SDK samples do (the Jobs device MQTT
//! API, read independently of the console's codec): on connecting it subscribes to
//! `$aws/things/{t}/jobs/notify-next` and the answers of `start-next`, and asks `start-next`;
//! given an execution it subscribes to that job's `update` answers, reads the firmware from the
//! job document (`url`, `size`, `sha256`, `md5`, `version`), downloads and verifies it,
//! reports `IN_PROGRESS` with `statusDetails` `{step, progress}` and `expectedVersion`, and
//! ends with `SUCCEEDED` (`statusDetails.version` the new version) or `FAILED` / `REJECTED`
//! (`statusDetails.reason`). A `notify-next` naming an execution while it is idle makes it ask
//! `start-next` again.
//!
//! Owns: the things' payloads (built here with serde_json), reading the answers and the job
//! document, tracking the execution's `versionNumber` from the answers, the dialect's
//! [`SimFactory`] ([`FACTORY`], returned by `Dialect::sim`). Must never: use the console's own
//! reading or writing of the dialect (the rest of `crate::protocol`). Dependencies go from here
//! to `crate::sim`, never back.

use std::sync::Arc;

use rand::Rng;
use serde_json::{Map, Value, json};
use tokio::task::JoinSet;

use crate::device_id::{DeviceId, DeviceIdError, DialectId};
use crate::sim::SimConfig;
use crate::sim::config::{Fault, LazyRng};
use crate::sim::download::Expected;
use crate::sim::hub::Shared;
use crate::sim::link::{Inbound, Link};
use crate::sim::stats::{DeviceState, DeviceStats, StatsCell};
use crate::sim::upgrade::{self, FileToFetch, Job, JobEvent, Outcome, Phase};
use crate::sim::{Credential, Ctx, SimError, SimFactory, SimUnit, Spawner, UnitKind, UnitSpec};

/// Answers larger than this are not parsed (a job document is a few hundred bytes).
const MAX_MESSAGE_BYTES: usize = 64 * 1024;
const JOB_QUEUE: usize = 64;

/// The codes the thing's own state shows for a failed or refused job (the API has none).
const STATE_FAILED: i64 = 1;
const STATE_REJECTED: i64 = 2;

const THINGS: UnitKind = UnitKind {
    key: "things",
    label: "AWS IoT things",
    flag: "aws",
    value_name: "N",
    help: "AWS IoT things running jobs (AWS IoT Jobs served by the console)",
    tag: "aws",
    stream: 20,
    members: None,
    demo: 6,
};

/// The one kind of AWS unit: a thing.
pub static KINDS: [UnitKind; 1] = [THINGS];

/// The AWS IoT Jobs simulator, as `Dialect::sim` gives it.
pub struct AwsSim;

pub static FACTORY: AwsSim = AwsSim;

impl SimFactory for AwsSim {
    fn dialect(&self) -> DialectId {
        super::ID
    }

    fn kinds(&self) -> &'static [UnitKind] {
        &KINDS
    }

    fn spawn(&self, unit: &UnitSpec, fleet: &mut Spawner<'_>) -> Result<(), SimError> {
        fleet.spawn_units(unit, Thing::new)
    }

    fn credential(
        &self,
        _unit: &UnitSpec,
        cfg: &SimConfig,
        index: usize,
    ) -> Result<Credential, DeviceIdError> {
        Ok(Credential::User(vec![DeviceId::aws(&thing_name(
            cfg, index,
        ))?]))
    }
}

/// The thing name of the `index`-th (from 0) simulated thing of `cfg`.
pub fn thing_name(cfg: &SimConfig, index: usize) -> String {
    cfg.unit_name(THINGS.tag, index)
}

/// The execution the thing works on.
#[derive(Debug)]
struct Running {
    job_id: String,
    version: String,
    /// The execution's `versionNumber` as the thing expects it for its next update.
    expected: i64,
    bytes: u64,
}

/// A job document's firmware, as the thing reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Firmware {
    version: String,
    url: String,
    expected: Expected,
}

pub(crate) struct Thing {
    ctx: Arc<Ctx>,
    name: String,
    version: String,
    stats: StatsCell,
    rng: LazyRng,
    silent: bool,
    running: Option<Running>,
    next_token: u64,
}

impl Thing {
    fn new(cfg: &SimConfig, index: usize, ctx: Arc<Ctx>) -> Result<Self, SimError> {
        let name = thing_name(cfg, index);
        let id = DeviceId::aws(&name)?;
        let mut rng = LazyRng::new(cfg.seed, THINGS.stream, index);
        let silent = rng.get().random_bool(ctx.behaviour.faults.silent);
        let stats = StatsCell::new(DeviceStats::new(id, &cfg.version));
        stats.update(|s| s.silent = silent);
        Ok(Thing {
            ctx,
            name,
            version: cfg.version.clone(),
            stats,
            rng,
            silent,
            running: None,
            next_token: 0,
        })
    }

    fn id(&self) -> DeviceId {
        self.stats.update(|s| s.id.clone())
    }

    fn topic(&self, rest: &str) -> String {
        format!("$aws/things/{}/jobs/{rest}", self.name)
    }

    fn token(&mut self) -> String {
        self.next_token += 1;
        format!("{}-{}", self.name, self.next_token)
    }

    fn subscriptions(&self) -> Vec<String> {
        vec![
            self.topic("notify-next"),
            self.topic("start-next/accepted"),
            self.topic("start-next/rejected"),
        ]
    }

    fn start_next(&mut self, link: &Link) {
        let token = self.token();
        // The firmware it runs, in the console's bench convention (the API has no version
        // report); applied to the execution it starts, if any.
        let body = json!({ "statusDetails": { "version": self.version }, "clientToken": token });
        link.publish(&self.topic("start-next"), &body);
        self.stats.update(|s| s.gets_sent += 1);
    }

    async fn run(mut self, shared: Option<Shared>) {
        let id = self.id();
        let login = self.ctx.logins.user_login(&id, self.name.clone());
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
        let mut job_chan = upgrade::JobChannel::new(JOB_QUEUE);
        let mut jobs = JoinSet::new();
        let mut pull = self.ctx.behaviour.pull.then(|| {
            let every = self.ctx.behaviour.pull_interval;
            tokio::time::interval_at(tokio::time::Instant::now() + every, every)
        });
        let mut subscribe_later = None;
        let mut back_online = None;
        loop {
            tokio::select! {
                Ok(()) = connected.changed() => {
                    self.stats.update(|s| {
                        s.connects += 1;
                        if matches!(s.state, DeviceState::Connecting | DeviceState::Offline) {
                            s.state = DeviceState::Idle;
                        }
                    });
                    subscribe_later = self.ctx.subscribe_timer();
                    if subscribe_later.is_none() {
                        self.on_subscribed(&link);
                    }
                }
                () = crate::sim::fire(&mut subscribe_later) => {
                    subscribe_later = None;
                    self.on_subscribed(&link);
                }
                Some(msg) = inbox.recv() => self.on_message(&link, *msg, &mut job_chan, &mut jobs),
                Some((_, event)) = job_chan.recv() => {
                    if self.on_job(&link, event) {
                        link.go_offline();
                        jobs.abort_all();
                        self.running = None;
                        self.stats.update(|s| s.state = DeviceState::Offline);
                        back_online = Some(Box::pin(tokio::time::sleep(self.ctx.behaviour.offline_for)));
                    }
                }
                () = crate::sim::tick(&mut pull) => {
                    if self.running.is_none() && !self.silent {
                        self.start_next(&link);
                    }
                }
                () = crate::sim::fire(&mut back_online) => {
                    back_online = None;
                    self.stats.update(|s| s.state = DeviceState::Connecting);
                    link.connect();
                }
                Some(_) = jobs.join_next(), if !jobs.is_empty() => {}
            }
        }
    }

    /// Subscribed to the Jobs topics (and the running job's answers); asks for its next job.
    fn on_subscribed(&mut self, link: &Link) {
        let mut topics = self.subscriptions();
        if let Some(r) = &self.running {
            topics.push(format!(
                "$aws/things/{}/jobs/{}/update/accepted",
                self.name, r.job_id
            ));
            topics.push(format!(
                "$aws/things/{}/jobs/{}/update/rejected",
                self.name, r.job_id
            ));
        }
        link.subscribe(&topics);
        if !self.silent && self.running.is_none() {
            self.start_next(link);
        }
    }

    fn on_message(
        &mut self,
        link: &Link,
        msg: Inbound,
        job_chan: &mut upgrade::JobChannel<()>,
        jobs: &mut JoinSet<()>,
    ) {
        if msg.payload.len() > MAX_MESSAGE_BYTES {
            self.stats.update(|s| s.notices_ignored += 1);
            return;
        }
        let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(&msg.payload) else {
            self.stats.update(|s| s.notices_ignored += 1);
            return;
        };
        if msg.topic == self.topic("notify-next") {
            // Something is pending and the thing is free: ask for it (the SDK samples do).
            if body.get("execution").is_some() && self.running.is_none() && !self.silent {
                self.start_next(link);
            }
        } else if msg.topic == self.topic("start-next/accepted") {
            self.on_execution(link, &body, job_chan, jobs);
        } else if msg.topic.ends_with("/update/accepted") {
            if let Some(v) = body
                .get("executionState")
                .and_then(|s| s.get("versionNumber"))
                .and_then(Value::as_i64)
                && let Some(r) = &mut self.running
            {
                // Answers trail the updates already sent: only a newer version corrects the
                // thing's own count.
                r.expected = r.expected.max(v);
            }
        } else if msg.topic.ends_with("/rejected") {
            let body = Value::Object(body);
            tracing::debug!(thing = %self.name, topic = %msg.topic, %body, "the Jobs service rejected a request");
            self.stats.update(|s| s.notices_ignored += 1);
        }
    }

    fn on_execution(
        &mut self,
        link: &Link,
        body: &Map<String, Value>,
        job_chan: &mut upgrade::JobChannel<()>,
        jobs: &mut JoinSet<()>,
    ) {
        let Some(execution) = body.get("execution").and_then(Value::as_object) else {
            self.stats.update(|s| s.nothing_pending += 1);
            return;
        };
        self.stats.update(|s| s.notices_received += 1);
        if self.silent || self.running.is_some() {
            return;
        }
        let job_id = execution.get("jobId").and_then(Value::as_str);
        let number = execution.get("versionNumber").and_then(Value::as_i64);
        let firmware = execution
            .get("jobDocument")
            .and_then(Value::as_object)
            .ok_or_else(|| "no job document".to_owned())
            .and_then(|doc| read_firmware(doc, self.ctx.strict));
        let (Some(job_id), Some(number), Ok(firmware)) = (job_id, number, firmware) else {
            self.stats.update(|s| {
                s.notices_ignored += 1;
                s.broken_notices += u64::from(self.ctx.strict);
            });
            return;
        };
        link.subscribe(&[
            format!("$aws/things/{}/jobs/{job_id}/update/accepted", self.name),
            format!("$aws/things/{}/jobs/{job_id}/update/rejected", self.name),
        ]);
        self.running = Some(Running {
            job_id: job_id.to_owned(),
            version: firmware.version.clone(),
            expected: number,
            bytes: 0,
        });
        if self.rng.get().random_bool(self.ctx.behaviour.faults.reject) {
            self.finish(
                link,
                "REJECTED",
                json!({ "reason": "battery below 20%, upgrade later" }),
            );
            self.stats.update(|s| {
                s.rejections += 1;
                s.state = DeviceState::Rejected {
                    code: STATE_REJECTED,
                };
            });
            return;
        }
        let fault = Fault::roll(&self.ctx.behaviour.faults, self.rng.get());
        let file = FileToFetch {
            url: firmware.url,
            expected: firmware.expected,
        };
        let job = Job::new(vec![file], fault, &self.ctx.behaviour, &self.ctx.http);
        self.stats.update(|s| {
            s.downloads_started += 1;
            s.state = DeviceState::Downloading { percent: 0 };
        });
        self.update(
            link,
            "IN_PROGRESS",
            json!({ "step": "download", "progress": "0" }),
        );
        jobs.spawn(upgrade::run(job, (), job_chan.sender()));
    }

    /// Publishes an update of the running execution with the version it expects.
    fn update(&mut self, link: &Link, status: &str, details: Value) {
        let token = self.token();
        let Some(r) = &mut self.running else { return };
        let body = json!({
            "status": status,
            "statusDetails": details,
            "expectedVersion": r.expected,
            "includeJobExecutionState": true,
            "clientToken": token,
        });
        // Each accepted update moves the version on by one; the answer confirms it.
        r.expected += 1;
        let topic = format!("$aws/things/{}/jobs/{}/update", self.name, r.job_id);
        link.publish(&topic, &body);
        self.stats.update(|s| s.progress_sent += 1);
    }

    /// The last update of the running execution; the thing is free again.
    fn finish(&mut self, link: &Link, status: &str, details: Value) {
        self.update(link, status, details);
        self.running = None;
    }

    /// Applies one event of the upgrade; true when the thing must drop off the network.
    fn on_job(&mut self, link: &Link, event: JobEvent) -> bool {
        let Some(running) = &mut self.running else {
            return false;
        };
        match event {
            JobEvent::Bytes(total) => {
                let delta = total.saturating_sub(running.bytes);
                running.bytes = total;
                self.stats.update(|s| s.bytes_downloaded += delta);
            }
            JobEvent::Progress { phase, percent } => {
                let step = match phase {
                    Phase::Download => {
                        self.stats
                            .update(|s| s.state = DeviceState::Downloading { percent });
                        "download"
                    }
                    Phase::Install => {
                        self.stats.update(|s| s.state = DeviceState::Installing);
                        "install"
                    }
                };
                let details = json!({ "step": step, "progress": percent.to_string() });
                self.update(link, "IN_PROGRESS", details);
            }
            JobEvent::Finished(Outcome::WentOffline) => return true,
            JobEvent::Finished(Outcome::Installed) => {
                let version = running.version.clone();
                self.version.clone_from(&version);
                self.stats.update(|s| {
                    s.version.clone_from(&version);
                    s.downloads_completed += 1;
                    s.upgrades_succeeded += 1;
                    s.state = DeviceState::Idle;
                });
                self.finish(link, "SUCCEEDED", json!({ "version": version }));
            }
            JobEvent::Finished(failure) => {
                let reason = match &failure {
                    Outcome::VerifyFailed(why) => format!("verification failed: {why}"),
                    Outcome::FlashFailed => "writing the firmware to flash failed".to_owned(),
                    Outcome::DownloadFailed(why) => format!("download failed: {why}"),
                    _ => "upgrade failed".to_owned(),
                };
                self.stats.update(|s| {
                    if failure == Outcome::FlashFailed {
                        s.downloads_completed += 1;
                    }
                    s.upgrades_failed += 1;
                    s.state = DeviceState::Failed { code: STATE_FAILED };
                });
                let reason: String = reason.chars().take(200).collect();
                self.finish(link, "FAILED", json!({ "reason": reason }));
            }
        }
        false
    }
}

impl SimUnit for Thing {
    fn ids(&self) -> Vec<DeviceId> {
        vec![self.id()]
    }

    fn cells(&self) -> Vec<StatsCell> {
        vec![self.stats.clone()]
    }

    fn start(self, shared: Option<Shared>) -> impl Future<Output = ()> + Send + 'static {
        self.run(shared)
    }
}

/// The firmware a job document describes. Strict things refuse a document with a field
/// missing or empty.
fn read_firmware(doc: &Map<String, Value>, strict: bool) -> Result<Firmware, String> {
    let text = |key: &str| {
        doc.get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let url = text("url").ok_or("no url")?;
    let version = text("version").ok_or("no version")?;
    let size = doc.get("size").and_then(Value::as_u64).ok_or("no size")?;
    let md5 = text("md5");
    let sha256 = text("sha256");
    if strict && (md5.is_none() || sha256.is_none()) {
        return Err("a digest is missing".into());
    }
    Ok(Firmware {
        version,
        url,
        expected: Expected {
            size,
            md5,
            sha256,
            checksum: None,
        },
    })
}
