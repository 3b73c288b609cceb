//! A simulated Alibaba Cloud IoT device, as `aliyun-iot-ota.md` and the notes describe one:
//! reports its version per module on the inform topic, takes upgrade notices (pushed, or asked
//! for with `thing.ota.firmware.get`), reports progress as string steps and proves success by
//! informing the new version.
//!
//! Owns: the device's topics, the payloads it sends (built here with serde_json), how it
//! signs its login (the Link Kit scheme: client id
//! `{pk}&{dn}|securemode=3,signmethod=hmacsha256,timestamp=T|`, user name `{dn}&{pk}`, password
//! the hex HMAC-SHA256 of `clientId{pk}&{dn}deviceName{dn}productKey{pk}timestamp{T}`, computed
//! here rather than with `crate::access::alibaba_sign`) and how it
//! reads notices; and the dialect's [`SimFactory`] ([`FACTORY`], returned by `Dialect::sim`).
//! Must never: use the console's own reading or writing of the dialect (the rest of
//! `crate::protocol`): the simulator is an independent reading of the documents (see the module
//! doc of `crate::sim`). Dependencies go from here to `crate::sim`, never back.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use rand::Rng;
use rand::rngs::StdRng;
use serde_json::{Map, Value, json};
use tokio::task::JoinSet;

use hmac::{KeyInit, Mac};

use crate::device_id::DeviceId;
use crate::device_id::DeviceIdError;
use crate::sim::SimConfig;
use crate::sim::config::{Fault, unit_rng};
use crate::sim::download::Expected;
use crate::sim::hub::Shared;
use crate::sim::link::{Inbound, Link};
use crate::sim::stats::{DeviceState, DeviceStats, StatsCell};
use crate::sim::upgrade::{self, FileToFetch, Job, JobEvent, Outcome, Phase};
use crate::sim::{
    Credential, Ctx, Login, SimError, SimFactory, SimUnit, Spawner, UnitKind, UnitSpec, now_millis,
    strict,
};

/// Notices larger than this are not parsed (real ones are well under 2 KiB).
const MAX_NOTICE_BYTES: usize = 64 * 1024;
/// Events from running upgrade jobs queued for the device task.
const JOB_QUEUE: usize = 64;
/// What the default module is called in `thing.ota.firmware.get` (the Link SDK's spelling).
const DEFAULT_MODULE: &str = "default";

/// The kinds of Alibaba unit: devices, each logging in on its own (signed when it has a
/// secret).
pub static KINDS: [UnitKind; 1] = [UnitKind {
    key: "devices",
    label: "Alibaba Cloud IoT devices",
    flag: "aliyun",
    value_name: "N",
    help: "Alibaba Cloud IoT devices",
    tag: "ali",
    stream: 1,
    members: None,
    demo: 24,
}];

/// The Alibaba simulator, as `Dialect::sim` gives it.
pub struct AliyunSim;

pub static FACTORY: AliyunSim = AliyunSim;

impl SimFactory for AliyunSim {
    fn dialect(&self) -> crate::device_id::DialectId {
        super::ID
    }

    fn kinds(&self) -> &'static [UnitKind] {
        &KINDS
    }

    fn spawn(&self, unit: &UnitSpec, fleet: &mut Spawner<'_>) -> Result<(), SimError> {
        fleet.spawn_units(unit, AliyunDevice::new)
    }

    fn credential(
        &self,
        _unit: &UnitSpec,
        cfg: &SimConfig,
        index: usize,
    ) -> Result<Credential, DeviceIdError> {
        // Alibaba's login is a signature over the device's own name: a secret per device.
        Ok(Credential::Secret {
            product_key: cfg.product_key.clone(),
            name: device_name(cfg, index),
        })
    }
}

/// The device name of the `index`-th (from 0) simulated Alibaba device of `cfg`.
pub fn device_name(cfg: &SimConfig, index: usize) -> String {
    cfg.unit_name(KINDS[0].tag, index)
}

/// The firmware an upgrade notice (or a get reply) offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Offer {
    pub version: String,
    pub url: String,
    pub expected: Expected,
    /// `None` = the default module.
    pub module: Option<String>,
}

/// An upgrade in progress for one module.
#[derive(Debug)]
struct Running {
    version: String,
    bytes: u64,
}

pub(crate) struct AliyunDevice {
    ctx: Arc<Ctx>,
    pk: String,
    dn: String,
    client_id: String,
    /// Version per module; the key `None` is the default module.
    versions: BTreeMap<Option<String>, String>,
    stats: StatsCell,
    rng: StdRng,
    silent: bool,
    next_id: u64,
    running: HashMap<Option<String>, Running>,
    /// Ask for pending firmware after the next connect (set when coming back online).
    ask_on_connect: bool,
}

impl AliyunDevice {
    pub(crate) fn new(cfg: &SimConfig, index: usize, ctx: Arc<Ctx>) -> Result<Self, SimError> {
        let dn = device_name(cfg, index);
        let id = DeviceId::aliyun(&cfg.product_key, &dn)?;
        for m in &cfg.modules {
            id.clone().with_module(Some(m))?;
        }
        let mut rng = unit_rng(cfg.seed, KINDS[0].stream, index);
        let silent = rng.random_bool(ctx.behaviour.faults.silent);
        let mut stats = DeviceStats::new(id, &cfg.version);
        stats.silent = silent;
        let mut versions = BTreeMap::from([(None, cfg.version.clone())]);
        for m in &cfg.modules {
            versions.insert(Some(m.clone()), cfg.version.clone());
            stats.module_versions.insert(m.clone(), cfg.version.clone());
        }
        Ok(AliyunDevice {
            client_id: format!("{}.{}", cfg.product_key, dn),
            pk: cfg.product_key.clone(),
            dn,
            ctx,
            versions,
            stats: StatsCell::new(stats),
            rng,
            silent,
            next_id: 0,
            running: HashMap::new(),
            ask_on_connect: false,
        })
    }

    pub(crate) fn cells(&self) -> Vec<StatsCell> {
        vec![self.stats.clone()]
    }

    pub(crate) fn id(&self) -> DeviceId {
        self.stats.update(|s| s.id.clone())
    }

    /// Has a secret, so logs in with its own signature on a connection of its own.
    pub(crate) fn signs_its_login(&self) -> bool {
        self.ctx.logins.secret(&self.pk, &self.dn).is_some()
    }

    /// A signed login when its secret is known, else a plain one.
    fn login(&self) -> Login {
        match self.ctx.logins.secret(&self.pk, &self.dn) {
            Some(secret) => alibaba_login(&self.pk, &self.dn, secret, now_millis()),
            None => Login::plain(self.client_id.clone()),
        }
    }

    fn topic(&self, kind: &str) -> String {
        match kind {
            "get" | "get_reply" => {
                format!("/sys/{}/{}/thing/ota/firmware/{kind}", self.pk, self.dn)
            }
            _ => format!("/ota/device/{kind}/{}/{}", self.pk, self.dn),
        }
    }

    fn next_id(&mut self) -> String {
        self.next_id += 1;
        self.next_id.to_string()
    }

    /// Runs the unit on its own connection, or on `shared` (see `hub.rs`).
    pub(crate) async fn run(mut self, shared: Option<Shared>) {
        let login = self.login();
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
                    self.subscribe_and_ask(&link);
                }
                Some(msg) = inbox.recv() => self.on_message(&link, *msg, &mut job_chan, &mut jobs),
                Some((module, ev)) = job_chan.recv() => {
                    if self.on_job(&link, module, ev) {
                        link.go_offline();
                        jobs.abort_all();
                        self.running.clear();
                        self.stats.update(|s| s.state = DeviceState::Offline);
                        back_online = Some(Box::pin(tokio::time::sleep(self.ctx.behaviour.offline_for)));
                    }
                }
                () = crate::sim::tick(&mut pull) => {
                    if self.running.is_empty() && !self.silent {
                        self.ask_all(&link);
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

    /// Reports every module's version; subscribes (and asks) first unless `subscribe_now` is
    /// false (strict: some SDKs report before they subscribe, see [`Self::subscribe_and_ask`]).
    fn on_connected(&mut self, link: &Link, subscribe_now: bool) {
        let idle = self.running.is_empty();
        self.stats.update(|s| {
            s.connects += 1;
            if idle {
                s.state = DeviceState::Idle;
            }
        });
        if subscribe_now {
            link.subscribe(&[self.topic("upgrade"), self.topic("get_reply")]);
        }
        let versions: Vec<_> = self.versions.clone().into_iter().collect();
        for (module, version) in versions {
            self.inform(link, module.as_deref(), &version);
        }
        if subscribe_now {
            self.ask_if_due(link);
        }
    }

    /// The late subscription of a strict device, then the request it would have made.
    fn subscribe_and_ask(&mut self, link: &Link) {
        link.subscribe(&[self.topic("upgrade"), self.topic("get_reply")]);
        self.ask_if_due(link);
    }

    fn ask_if_due(&mut self, link: &Link) {
        if !self.silent && (self.ctx.behaviour.pull || self.ask_on_connect) {
            self.ask_all(link);
        }
        self.ask_on_connect = false;
    }

    fn inform(&mut self, link: &Link, module: Option<&str>, version: &str) {
        let mut params = json!({ "version": version });
        if let Some(m) = module {
            params["module"] = json!(m);
        }
        let msg = json!({ "id": self.next_id(), "params": params });
        link.publish(&self.topic("inform"), &msg);
    }

    /// `thing.ota.firmware.get` for every module.
    fn ask_all(&mut self, link: &Link) {
        let modules: Vec<Option<String>> = self.versions.keys().cloned().collect();
        for module in modules {
            let msg = json!({
                "id": self.next_id(),
                "version": "1.0",
                "params": { "module": module.as_deref().unwrap_or(DEFAULT_MODULE) },
                "method": "thing.ota.firmware.get",
            });
            link.publish(&self.topic("get"), &msg);
            self.stats.update(|s| s.gets_sent += 1);
        }
    }

    fn on_message(
        &mut self,
        link: &Link,
        msg: Inbound,
        job_chan: &mut upgrade::JobChannel<Option<String>>,
        jobs: &mut JoinSet<()>,
    ) {
        let is_push = msg.topic == self.topic("upgrade");
        if !is_push && msg.topic != self.topic("get_reply") {
            return;
        }
        let broken = self.ctx.strict.then(|| match parse_object(&msg.payload) {
            Ok(m) => strict_problem(&m, !is_push),
            Err(why) => Some(why),
        });
        if let Some(Some(why)) = broken {
            tracing::debug!(device = %self.dn, %why, "strict Alibaba device dropped a broken notice");
            self.stats.update(|s| {
                s.broken_notices += 1;
                s.notices_ignored += 1;
            });
            return;
        }
        let parsed = if is_push {
            parse_push(&msg.payload)
        } else {
            parse_get_reply(&msg.payload)
        };
        if self.silent {
            self.stats.update(|s| s.notices_received += 1);
            return;
        }
        match parsed {
            Ok(None) => self.stats.update(|s| s.nothing_pending += 1),
            Ok(Some(offer)) => self.start(link, offer, job_chan, jobs),
            Err(why) => {
                tracing::debug!(device = %self.dn, %why, "simulated Alibaba device ignored a notice");
                self.stats.update(|s| s.notices_ignored += 1);
            }
        }
    }

    fn start(
        &mut self,
        link: &Link,
        offer: Offer,
        job_chan: &mut upgrade::JobChannel<Option<String>>,
        jobs: &mut JoinSet<()>,
    ) {
        self.stats.update(|s| s.notices_received += 1);
        if self.running.contains_key(&offer.module) {
            // A device runs at most one upgrade per module; the repeat is dropped.
            self.stats.update(|s| s.notices_ignored += 1);
            return;
        }
        if !self.versions.contains_key(&offer.module) {
            self.progress(
                link,
                offer.module.as_deref(),
                "-1",
                "upgrade failed: no such module",
            );
            self.stats.update(|s| {
                s.upgrades_failed += 1;
                s.state = DeviceState::Failed { code: -1 };
            });
            return;
        }
        let fault = Fault::roll(&self.ctx.behaviour.faults, &mut self.rng);
        let file = FileToFetch {
            url: offer.url,
            expected: offer.expected,
        };
        let job = Job::new(vec![file], fault, &self.ctx.behaviour, &self.ctx.http);
        self.running.insert(
            offer.module.clone(),
            Running {
                version: offer.version,
                bytes: 0,
            },
        );
        self.stats.update(|s| {
            s.downloads_started += 1;
            s.state = DeviceState::Downloading { percent: 0 };
        });
        jobs.spawn(upgrade::run(job, offer.module, job_chan.sender()));
    }

    fn progress(&mut self, link: &Link, module: Option<&str>, step: &str, desc: &str) {
        let mut params = json!({ "step": step, "desc": desc });
        if let Some(m) = module {
            params["module"] = json!(m);
        }
        let msg = json!({ "id": self.next_id(), "params": params });
        link.publish(&self.topic("progress"), &msg);
        self.stats.update(|s| s.progress_sent += 1);
    }

    /// Applies one job event; returns true when the device must drop off the network.
    fn on_job(&mut self, link: &Link, module: Option<String>, ev: JobEvent) -> bool {
        match ev {
            JobEvent::Bytes(total) => {
                if let Some(r) = self.running.get_mut(&module) {
                    let delta = total.saturating_sub(r.bytes);
                    r.bytes = total;
                    self.stats.update(|s| s.bytes_downloaded += delta);
                }
                false
            }
            JobEvent::Progress {
                phase: Phase::Download,
                percent,
            } => {
                self.progress(link, module.as_deref(), &percent.to_string(), "downloading");
                self.stats
                    .update(|s| s.state = DeviceState::Downloading { percent });
                false
            }
            JobEvent::Progress {
                phase: Phase::Install,
                ..
            } => {
                self.stats.update(|s| s.state = DeviceState::Installing);
                false
            }
            JobEvent::Finished(outcome) => self.finish(link, module, outcome),
        }
    }

    fn finish(&mut self, link: &Link, module: Option<String>, outcome: Outcome) -> bool {
        let Some(running) = self.running.remove(&module) else {
            return false;
        };
        let (code, desc) = match outcome {
            Outcome::Installed => {
                self.inform(link, module.as_deref(), &running.version);
                self.stats.update(|s| {
                    match &module {
                        Some(m) => {
                            s.module_versions.insert(m.clone(), running.version.clone());
                        }
                        None => s.version = running.version.clone(),
                    }
                    s.downloads_completed += 1;
                    s.upgrades_succeeded += 1;
                    s.state = DeviceState::Idle;
                });
                self.versions.insert(module, running.version);
                return false;
            }
            Outcome::WentOffline => return true,
            Outcome::DownloadFailed(why) => (-2, format!("download failed: {why}")),
            Outcome::VerifyFailed(why) => (-3, format!("verify failed: {why}")),
            Outcome::FlashFailed => {
                self.stats.update(|s| s.downloads_completed += 1);
                (-4, "flash write failed".to_owned())
            }
        };
        self.progress(link, module.as_deref(), &code.to_string(), &desc);
        self.stats.update(|s| {
            s.upgrades_failed += 1;
            s.state = DeviceState::Failed { code };
        });
        false
    }
}

impl SimUnit for AliyunDevice {
    fn ids(&self) -> Vec<DeviceId> {
        vec![self.id()]
    }

    fn cells(&self) -> Vec<StatsCell> {
        AliyunDevice::cells(self)
    }

    /// A device with a secret signs its own login, so it keeps a connection of its own; only
    /// on an open broker do devices share.
    fn may_share(&self) -> bool {
        !self.signs_its_login()
    }

    fn start(self, shared: Option<Shared>) -> impl Future<Output = ()> + Send + 'static {
        self.run(shared)
    }
}

/// Link Kit's signed login over plain TCP (`securemode=3`).
fn alibaba_login(pk: &str, dn: &str, secret: &str, timestamp: u64) -> Login {
    let cid = format!("{pk}&{dn}");
    let content = format!("clientId{cid}deviceName{dn}productKey{pk}timestamp{timestamp}");
    let password = match hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mut mac) => {
            mac.update(content.as_bytes());
            hex::encode(mac.finalize().into_bytes())
        }
        // HMAC takes keys of any length; keep the device going with a login the broker refuses.
        Err(_) => String::new(),
    };
    Login {
        client_id: format!("{cid}|securemode=3,signmethod=hmacsha256,timestamp={timestamp}|"),
        username: Some(format!("{dn}&{pk}")),
        password: Some(password),
    }
}

fn parse_object(payload: &[u8]) -> Result<Map<String, Value>, String> {
    if payload.len() > MAX_NOTICE_BYTES {
        return Err(format!("{} bytes is larger than any notice", payload.len()));
    }
    match serde_json::from_slice(payload) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err("not a JSON object".into()),
        Err(e) => Err(format!("not JSON: {e}")),
    }
}

/// Reads a push on `/ota/device/upgrade/{pk}/{dn}`: `code` must be "1000".
pub(crate) fn parse_push(payload: &[u8]) -> Result<Option<Offer>, String> {
    let msg = parse_object(payload)?;
    let code_ok = match msg.get("code") {
        Some(Value::String(c)) => c == "1000",
        Some(Value::Number(n)) => n.as_u64() == Some(1000),
        _ => false,
    };
    if !code_ok {
        return Err("code is not \"1000\"".into());
    }
    match msg.get("data") {
        Some(Value::Object(data)) => parse_offer(data).map(Some),
        _ => Err("data is missing or not an object".into()),
    }
}

/// Reads a `get_reply`: `data` with the push fields, or `{}` when nothing is pending.
pub(crate) fn parse_get_reply(payload: &[u8]) -> Result<Option<Offer>, String> {
    let msg = parse_object(payload)?;
    match msg.get("data") {
        Some(Value::Object(data)) if data.is_empty() => Ok(None),
        Some(Value::Object(data)) => parse_offer(data).map(Some),
        _ => Err("data is missing or not an object".into()),
    }
}

fn required_str<'a>(data: &'a Map<String, Value>, key: &str) -> Result<&'a str, String> {
    match data.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(_) => Err(format!("{key} is empty or not a string")),
        None => Err(format!("{key} is missing")),
    }
}

/// The notice's `data`. Like the device SDKs, every field is required and non-empty, except
/// `md5`, which the platform fills only when `signMethod` is Md5, and `module`.
fn parse_offer(data: &Map<String, Value>) -> Result<Offer, String> {
    let size = data
        .get("size")
        .and_then(Value::as_u64)
        .ok_or("size is missing or not a non-negative integer")?;
    let version = required_str(data, "version")?;
    let url = required_str(data, "url")?;
    let method = required_str(data, "signMethod")?;
    let sign = required_str(data, "sign")?;
    let md5 = match data.get("md5") {
        None => None,
        Some(_) => Some(required_str(data, "md5")?),
    };
    let mut expected = Expected {
        size,
        ..Expected::default()
    };
    if method.eq_ignore_ascii_case("md5") {
        let md5 = md5.ok_or("md5 is missing although signMethod is Md5")?;
        if !md5.eq_ignore_ascii_case(sign) {
            return Err("md5 and sign differ although signMethod is Md5".into());
        }
        expected.md5 = Some(sign.to_owned());
    } else if method.eq_ignore_ascii_case("sha256") {
        expected.sha256 = Some(sign.to_owned());
        expected.md5 = md5.map(str::to_owned);
    } else {
        return Err(format!("signMethod {method:?} is neither Md5 nor SHA256"));
    }
    let module = match data.get("module") {
        None => None,
        Some(Value::String(m)) if m.is_empty() || m == DEFAULT_MODULE => None,
        Some(Value::String(m)) => Some(m.clone()),
        Some(_) => return Err("module is not a string".into()),
    };
    Ok(Offer {
        version: version.to_owned(),
        url: url.to_owned(),
        expected,
        module,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::credentials::{Authenticator, SecretTable, UserTable};
    use crate::access::rules::Identity;
    use crate::sim::SimLogins;

    #[test]
    fn the_signature_matches_link_kits_scheme() {
        // The console's verifier, fed by an independent signer: a wrong secret is refused.
        let login = alibaba_login("a1pk", "dev-1", "s3cret", 1_700_000_000_000);
        assert!(login.client_id.starts_with("a1pk&dev-1|securemode=3,"));
        let mut table = SecretTable::default();
        table.insert("a1pk", "dev-1", "other").unwrap();
        let auth = Authenticator {
            console: crate::access::credentials::ConsoleCredentials::generate(),
            secrets: table,
            users: UserTable::default(),
        };
        assert!(
            auth.authenticate(
                &login.client_id,
                login.username.as_deref(),
                login.password.as_deref().map(str::as_bytes),
            )
            .is_err()
        );
    }

    #[test]
    fn provisioned_devices_sign_logins_the_console_accepts() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = SimConfig {
            units: vec![UnitSpec::of(&FACTORY, 2).unwrap()],
            ..SimConfig::default()
        };
        let (logins, added) = SimLogins::provision(dir.path(), &cfg).unwrap();
        assert_eq!(added, 2);
        let dn = device_name(&cfg, 1);
        assert_eq!(dn, "sim-ali-0002");
        let secret = logins.secret(&cfg.product_key, &dn).unwrap();
        let login = alibaba_login(&cfg.product_key, &dn, secret, now_millis());
        let auth = Authenticator::load(dir.path()).unwrap();
        let who = auth
            .authenticate(
                &login.client_id,
                login.username.as_deref(),
                login.password.as_deref().map(str::as_bytes),
            )
            .unwrap();
        let id = DeviceId::aliyun(&cfg.product_key, &dn).unwrap();
        assert_eq!(who, Identity::Device(id));
    }

    const MD5: &str = "83254ac96e141affb8aa42cbfec90000";

    fn push(data: Value) -> Vec<u8> {
        json!({"code":"1000","data":data,"id":1568864790381u64,"message":"success"})
            .to_string()
            .into_bytes()
    }

    #[test]
    fn documented_push_is_read() {
        let offer = parse_push(&push(json!({
            "size": 11472299, "sign": MD5, "version": "2-0-0",
            "url": "http://127.0.0.1/x.zip", "signMethod": "Md5", "md5": MD5
        })))
        .unwrap()
        .unwrap();
        assert_eq!(offer.version, "2-0-0");
        assert_eq!(offer.expected.size, 11472299);
        assert_eq!(offer.expected.md5.as_deref(), Some(MD5));
        assert_eq!(offer.module, None);
    }

    #[test]
    fn sign_method_is_case_insensitive_and_sha256_needs_no_md5() {
        let offer = parse_push(&push(json!({
            "size": 1, "sign": "ab", "version": "2", "url": "http://h/f",
            "signMethod": "sha256", "module": "MCU"
        })))
        .unwrap()
        .unwrap();
        assert_eq!(offer.expected.sha256.as_deref(), Some("ab"));
        assert_eq!(offer.module.as_deref(), Some("MCU"));
        let upper = push(json!({
            "size": 1, "sign": MD5, "version": "2", "url": "http://h/f",
            "signMethod": "MD5", "md5": MD5
        }));
        assert!(parse_push(&upper).is_ok());
    }

    #[test]
    fn missing_or_empty_fields_are_refused() {
        let full = json!({
            "size": 1, "sign": MD5, "version": "2", "url": "http://h/f",
            "signMethod": "Md5", "md5": MD5
        });
        for key in ["size", "sign", "version", "url", "signMethod", "md5"] {
            let mut d = full.clone();
            d.as_object_mut().unwrap().remove(key);
            assert!(parse_push(&push(d)).is_err(), "without {key}");
            let mut e = full.clone();
            e[key] = json!("");
            assert!(parse_push(&push(e)).is_err(), "empty {key}");
        }
        let wrong_code = json!({"code":"9999","data":full,"id":1,"message":"x"});
        assert!(parse_push(wrong_code.to_string().as_bytes()).is_err());
        assert!(parse_push(b"[1]").is_err());
        assert!(parse_push(&vec![b' '; MAX_NOTICE_BYTES + 1]).is_err());
    }

    #[test]
    fn empty_get_reply_means_nothing_pending() {
        let reply = json!({"id":"1","code":200,"data":{},"message":"success"});
        assert_eq!(parse_get_reply(reply.to_string().as_bytes()), Ok(None));
    }
}

// What a strict device stack refuses (protocols/notes.md; see `crate::sim::strict`).

/// Every `data` field of an Alibaba upgrade push or non-empty `get_reply`.
const ALIYUN_DATA: &[&str] = &["size", "version", "url", "signMethod", "sign", "md5"];
/// An Alibaba push (`get_reply: false`) or `get_reply`. A `get_reply` whose `data` is `{}` is
/// the documented "nothing pending" and is not broken.
fn strict_problem(msg: &Map<String, Value>, get_reply: bool) -> Option<String> {
    if msg.get("message").and_then(Value::as_str) != Some("success") {
        return Some("message is not exactly \"success\"".into());
    }
    if msg.get("id").is_none_or(strict::empty) {
        return Some("id is missing".into());
    }
    let data = match msg.get("data") {
        Some(Value::Object(d)) => d,
        _ => return Some("data is missing or not an object".into()),
    };
    if get_reply && data.is_empty() {
        return None;
    }
    if let Some(why) = strict::fields_problem(data, ALIYUN_DATA, "data") {
        return Some(why);
    }
    match data.get("md5").and_then(Value::as_str) {
        Some(md5) if strict::is_lower_hex(md5, 32) => None,
        _ => Some("data: md5 is not 32 lowercase hex digits".into()),
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

    fn ali_push() -> Value {
        json!({"code": "1000", "id": 1, "message": "success", "data": {
            "size": 10, "version": "2.0", "url": "http://h/f", "signMethod": "SHA256",
            "sign": "ab", "md5": MD5}})
    }

    #[test]
    fn aliyun_needs_every_field_md5_and_success() {
        assert_eq!(strict_problem(&obj(ali_push()), false), None);
        for key in ["size", "version", "url", "signMethod", "sign", "md5"] {
            let mut m = ali_push();
            m["data"].as_object_mut().unwrap().remove(key);
            assert!(strict_problem(&obj(m), false).is_some(), "without {key}");
            let mut m = ali_push();
            m["data"][key] = json!("");
            assert!(strict_problem(&obj(m), false).is_some(), "empty {key}");
        }
        let mut m = ali_push();
        m["message"] = json!("Success");
        assert!(strict_problem(&obj(m), false).is_some());
        let mut m = ali_push();
        m["data"]["md5"] = json!(MD5.to_uppercase());
        assert!(strict_problem(&obj(m), false).is_some(), "uppercase md5");
        let mut m = ali_push();
        m["data"]["size"] = json!(0);
        assert!(strict_problem(&obj(m), false).is_some(), "size 0");
        let mut m = ali_push();
        m["data"]["module"] = json!("");
        assert!(
            strict_problem(&obj(m), false).is_some(),
            "empty optional field"
        );
        // The documented "nothing pending" is fine in a get_reply, not in a push.
        let nothing = json!({"id": "1", "code": 200, "data": {}, "message": "success"});
        assert_eq!(strict_problem(&obj(nothing.clone()), true), None);
        assert!(strict_problem(&obj(nothing), false).is_some());
    }
}
