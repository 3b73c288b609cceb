//! Dialects described in a file (TOML) and registered at run time: a lab's own small MQTT OTA
//! protocol, treated like a built-in dialect without a build.
//!
//! Owns: [`UserDialect`] (the [`Dialect`] trait over a validated file), loading a file or a
//! folder of them ([`register_file`], [`register_dir`]) into `registry::register`, and the record
//! of what was loaded or refused ([`loaded`]) that the window and the CLI show. The format and
//! its checks are `spec.rs`, templates `template.rs`, the codec `codec.rs`; the file's simulated
//! devices are `sim.rs` (`ota-console sim --{prefix} N`), which read notices through
//! `layout.rs` (a payload template read backwards), never through the codec.
//!
//! What such a dialect can do is fixed: device ids `{prefix}:{name}` or `{prefix}:{key}/{name}`,
//! no gateways, acknowledgement by the first report, presence announced on connect, success =
//! the target version reported, task keys none / counter / UUID scoped to the device.

mod codec;
mod error;
mod layout;
mod sim;
mod spec;
mod template;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use serde_json::Value;

pub use self::error::LoadError;
use self::spec::{Ctx, Spec};
use self::template::{TopicTemplate, leak};
use super::registry;
use crate::access::rules::{Part, TopicRoute};
use crate::device_id::{DeviceId, DialectId, DialectIdent, IdShape};
use crate::i18n::tr;
use crate::protocol::{
    Acknowledgement, CancelSupport, Capabilities, DecodeError, Dialect, EncodeError, ErrorTable,
    Event, EventKind, KeyScope, KeySource, NothingPending, Notice, OfferField, Outbound, Presence,
    Pull, Sample, Samples, SubDevices, Subject, TaskKeySpec,
};

/// The folder of the data dir whose `*.toml` files are loaded at start.
pub const DIALECTS_FOLDER: &str = "dialects";

/// Largest dialect file read (a complete one is a few KiB).
const MAX_FILE_BYTES: u64 = 256 * 1024;

/// A dialect described by a file.
pub struct UserDialect {
    id: DialectId,
    file: String,
    spec: Spec,
    subscriptions: &'static [&'static str],
    routes: &'static [TopicRoute],
    capabilities: &'static Capabilities,
    samples: &'static Samples,
    sim: &'static sim::UserSim,
}

impl std::fmt::Debug for UserDialect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "UserDialect({} from {})", self.id, self.file)
    }
}

impl Dialect for UserDialect {
    fn id(&self) -> DialectId {
        self.id
    }

    fn subscriptions(&self) -> &[&'static str] {
        self.subscriptions
    }

    fn owns_topic(&self, topic: &str) -> bool {
        self.templates().any(|t| t.bind(topic).is_some())
    }

    fn decode(&self, topic: &str, payload: &[u8]) -> Result<Vec<Event>, DecodeError> {
        self.spec.decode(self.id, topic, payload)
    }

    fn encode(&self, notice: &Notice) -> Result<Outbound, EncodeError> {
        self.spec.encode(self.id, notice)
    }

    fn capabilities(&self) -> &'static Capabilities {
        self.capabilities
    }

    fn errors(&self) -> &'static ErrorTable {
        self.spec.errors
    }

    fn topic_routes(&self) -> &'static [TopicRoute] {
        self.routes
    }

    fn samples(&self) -> &'static Samples {
        self.samples
    }

    fn sim(&self) -> Option<&'static dyn crate::sim::SimFactory> {
        Some(self.sim)
    }
}

impl UserDialect {
    /// Validates the dialect file `file` (its name, for errors) with text `src`, giving it
    /// `rank`. Does not register it.
    pub fn parse(file: &str, src: &str, rank: u16) -> Result<UserDialect, LoadError> {
        let ctx = Ctx { file, src };
        let spec = spec::parse(&ctx)?;
        let shape = match spec.key_name {
            Some(key) => IdShape::KeyAndName {
                key,
                name: spec.name_name,
            },
            None => IdShape::Name {
                name: spec.name_name,
            },
        };
        let ident: &'static DialectIdent = Box::leak(Box::new(DialectIdent {
            rank,
            prefix: spec.prefix,
            label: spec.label,
            shape,
        }));
        let id = DialectId::new(ident);

        let topic_lines = spec.topic_lines.clone();
        let line_of = move |field: &str| {
            topic_lines
                .iter()
                .find(|(f, _, _)| *f == field)
                .map_or(1, |(_, _, line)| *line)
        };
        // A topic the device both publishes and subscribes to would be refused by the broker
        // one way or the other.
        for up in spec.uplinks() {
            for down in spec.downlinks() {
                if up.overlaps(down) {
                    return Err(LoadError::Invalid {
                        file: file.to_owned(),
                        line: line_of("notice.topic"),
                        field: "notice.topic".into(),
                        message: tr!(
                            "error.dialect_file.down_up_overlap",
                            down = format!("{:?}", down.text),
                            up = format!("{:?}", up.text)
                        ),
                    });
                }
            }
        }

        let subscriptions: Vec<&'static str> =
            spec.uplinks().iter().map(|t| leak(&t.filter())).collect();
        let mut routes: Vec<TopicRoute> = spec
            .uplinks()
            .iter()
            .map(|t| TopicRoute::up(t.parts))
            .collect();
        routes.extend(spec.downlinks().iter().map(|t| TopicRoute::down(t.parts)));
        let pull = match &spec.pull {
            None => Pull::Unsupported,
            Some(p) => Pull::Supported {
                nothing_pending: if p.nothing.is_some() {
                    NothingPending::EmptyReply
                } else {
                    NothingPending::Silence
                },
            },
        };
        let capabilities = Capabilities {
            task_key: TaskKeySpec {
                source: spec.task_key,
                scope: KeyScope::Device,
            },
            ack: Acknowledgement::ByFirstReport,
            one_upgrade_per_gateway: false,
            progress_subject: Subject::Device,
            pull,
            presence: Presence::AnnouncesOnConnect,
            sub_devices: SubDevices::None,
            cancel: CancelSupport::Withdraws,
            offer_fields: Box::leak(offer_fields(&spec).into_boxed_slice()),
        };
        let samples = samples(&spec, id, file, &line_of)?;
        let sim: &'static sim::UserSim = Box::leak(Box::new(sim::UserSim::new(id, file, &spec)));
        let dialect = UserDialect {
            sim,
            id,
            file: file.to_owned(),
            subscriptions: Box::leak(subscriptions.into_boxed_slice()),
            routes: Box::leak(routes.into_boxed_slice()),
            capabilities: Box::leak(Box::new(capabilities)),
            samples,
            spec,
        };
        dialect.check_samples(&line_of)?;
        Ok(dialect)
    }

    /// The file the dialect was loaded from.
    pub fn file(&self) -> &str {
        &self.file
    }

    fn templates(&self) -> impl Iterator<Item = &TopicTemplate> {
        self.spec.uplinks().into_iter().chain(self.spec.downlinks())
    }

    /// The file's own examples decode as the file says: a pointer that shadows another (`/a`
    /// and `/a/b`) or a `when` that never holds shows here, at load.
    fn check_samples(&self, line_of: &dyn Fn(&str) -> usize) -> Result<(), LoadError> {
        for s in self.samples.uplink {
            let kinds: Result<Vec<EventKind>, String> = self
                .decode(s.topic, s.payload.as_bytes())
                .map(|events| events.iter().map(Event::kind).collect())
                .map_err(|e| e.to_string());
            if kinds.as_deref() != Ok(s.events) {
                let section = s.name.split(' ').next().unwrap_or_default();
                let field = format!("{section}.topic");
                return Err(LoadError::Invalid {
                    file: self.file.clone(),
                    line: line_of(&field),
                    field: section.to_owned(),
                    message: tr!(
                        "error.dialect_file.pointers_overlap",
                        payload = s.payload,
                        kinds = format!("{kinds:?}"),
                        expected = format!("{:?}", s.events)
                    ),
                });
            }
        }
        Ok(())
    }

    /// Refuses a dialect whose topics another registered dialect owns, or that owns theirs.
    fn check_against_registered(&self) -> Result<(), LoadError> {
        for other in registry::all() {
            for t in self.templates() {
                let probe = t.fill_probe();
                if other.owns_topic(&probe) {
                    let (field, line) = self.field_of(t);
                    return Err(LoadError::Invalid {
                        file: self.file.clone(),
                        line,
                        field,
                        message: tr!(
                            "error.dialect_file.topic_of_other",
                            topic = format!("{:?}", t.text),
                            dialect = other.id(),
                            probe = format!("{probe:?}")
                        ),
                    });
                }
            }
            let theirs = other
                .subscriptions()
                .iter()
                .map(|f| f.replace(['+', '#'], "x"))
                .chain(other.topic_routes().iter().map(|r| route_probe(r.parts)));
            for topic in theirs {
                if let Some(t) = self.templates().find(|t| t.bind(&topic).is_some()) {
                    let (field, line) = self.field_of(t);
                    return Err(LoadError::Invalid {
                        file: self.file.clone(),
                        line,
                        field,
                        message: tr!(
                            "error.dialect_file.takes_topic",
                            topic = format!("{:?}", t.text),
                            other_topic = format!("{topic:?}"),
                            dialect = other.id()
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    fn field_of(&self, t: &TopicTemplate) -> (String, usize) {
        self.spec
            .topic_lines
            .iter()
            .find(|(_, text, _)| text == t.text)
            .map_or(("(topics)".to_owned(), 1), |(f, _, l)| {
                ((*f).to_owned(), *l)
            })
    }
}

/// A topic of a route, every placeholder level `x`.
fn route_probe(parts: &[Part]) -> String {
    let levels: Vec<&str> = parts
        .iter()
        .map(|p| match p {
            Part::Lit(s) => s,
            Part::Answer => "accepted",
            Part::Key | Part::Name | Part::JobId => "x",
        })
        .collect();
    levels.join("/")
}

fn offer_fields(spec: &Spec) -> Vec<OfferField> {
    use self::template::Field;
    let map = [
        (Field::Url, OfferField::Url),
        (Field::Size, OfferField::Size),
        (Field::Md5, OfferField::Md5),
        (Field::Sha256, OfferField::Sha256),
        (Field::Checksum, OfferField::Checksum),
        (Field::Version, OfferField::Version),
        (Field::FileName, OfferField::FileName),
        (Field::Description, OfferField::Description),
    ];
    map.iter()
        .filter(|(f, _)| spec.notice.payload.uses(*f))
        .map(|(_, o)| *o)
        .collect()
}

/// Example messages built from the file itself: an announce, a progress, a failure with the
/// first listed value, and a pull request if the dialect has one. They serve the conformance
/// suite and the fuzz target like a built-in's golden samples, and are checked at load.
fn samples(
    spec: &Spec,
    id: DialectId,
    file: &str,
    line_of: &dyn Fn(&str) -> usize,
) -> Result<&'static Samples, LoadError> {
    let (key, name) = ("lab-1", "unit-1");
    let device =
        DeviceId::new(id, spec.key_name.map(|_| key), name).map_err(|e| LoadError::Invalid {
            file: file.to_owned(),
            line: line_of("announce.topic"),
            field: "device".into(),
            message: e.to_string(),
        })?;
    let task = match spec.task_key {
        KeySource::None => None,
        KeySource::Counter => Some("7"),
        KeySource::Uuid => Some("0f8fad5b-d9cb-469f-a165-70867728950e"),
    };
    let mut uplink = Vec::new();
    let mut add = |name: &str,
                   topic: &TopicTemplate,
                   mut message: Value,
                   when: &Option<spec::When>,
                   events: &'static [EventKind]| {
        if let Some(w) = when {
            set_pointer(&mut message, w.pointer, w.equals.clone());
        }
        uplink.push(Sample {
            name: leak(name),
            topic: leak(&topic.render(&device)),
            payload: leak(&message.to_string()),
            events,
        });
    };

    let a = &spec.announce;
    let mut m = Value::Null;
    set_pointer(&mut m, a.version, Value::String("1.0.0".into()));
    add(
        "announce (version 1.0.0)",
        &a.topic,
        m,
        &a.when,
        &[EventKind::Version],
    );

    let p = &spec.progress;
    let base = || {
        let mut m = Value::Null;
        if let (Some(ptr), Some(task)) = (p.task, task) {
            set_pointer(&mut m, ptr, Value::String(task.into()));
        }
        m
    };
    let mut m = base();
    if let Some(ptr) = p.percent {
        set_pointer(&mut m, ptr, Value::from(50));
    }
    add(
        "progress (50%)",
        &p.topic,
        m,
        &p.when,
        &[EventKind::Progress],
    );

    let mut m = base();
    if let Some(ptr) = p.percent.filter(|ptr| *ptr != p.failure.field) {
        set_pointer(&mut m, ptr, Value::from(30));
    }
    if let Some((value, _)) = p.failure.codes.first() {
        set_pointer(&mut m, p.failure.field, value.clone());
    }
    if let Some(ptr) = p.text {
        set_pointer(&mut m, ptr, Value::String("sample failure text".into()));
    }
    add(
        "progress (a failure, the first listed value)",
        &p.topic,
        m,
        &p.when,
        &[EventKind::Progress],
    );

    if let Some(pl) = &spec.pull {
        let mut m = Value::Null;
        if let Some(ptr) = pl.id {
            set_pointer(&mut m, ptr, Value::from(42));
        }
        add(
            "pull (a request)",
            &pl.topic,
            m,
            &pl.when,
            &[EventKind::FirmwareGet],
        );
    }
    let device = leak(&device.to_string());
    Ok(Box::leak(Box::new(Samples {
        device,
        sub_device: None,
        uplink: Box::leak(uplink.into_boxed_slice()),
    })))
}

/// Sets the value at JSON pointer `pointer`, making objects on the way (a message where other
/// pointers already put a non-object is overwritten; the load-time decode of the samples then
/// shows the clash).
fn set_pointer(root: &mut Value, pointer: &str, value: Value) {
    let mut at = root;
    for token in pointer.split('/').skip(1) {
        let key = token.replace("~1", "/").replace("~0", "~");
        if !at.is_object() {
            *at = Value::Object(serde_json::Map::new());
        }
        let Value::Object(map) = at else { return };
        at = map.entry(key).or_insert(Value::Null);
    }
    *at = value;
}

// ---------------------------------------------------------------- loading and registering

/// One file the console tried to load, and what came of it.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub file: PathBuf,
    pub outcome: Result<DialectId, LoadError>,
}

/// Every load attempt of this process, in order (the window lists them).
static LOADED: Mutex<Vec<Loaded>> = Mutex::new(Vec::new());

/// Loads one at a time: a dialect's rank is the next free one when it is registered.
static LOADING: Mutex<()> = Mutex::new(());

/// What was loaded or refused so far.
pub fn loaded() -> Vec<Loaded> {
    LOADED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
}

/// One line per load attempt, for the window and `--help`-style listings:
/// `acme (ACME lab boards) from /path/acme.toml` or the error.
pub fn describe_loaded() -> Vec<String> {
    loaded()
        .into_iter()
        .map(|l| match l.outcome {
            Ok(id) => format!("{id} ({}) from {}", id.label(), l.file.display()),
            Err(e) => format!("not loaded: {e}"),
        })
        .collect()
}

/// Loads, validates and registers the dialect file at `path`. A file already registered (the
/// same path, e.g. given with `--dialect-file` and in the dialects folder) is not loaded twice.
pub fn register_file(path: &Path) -> Result<DialectId, LoadError> {
    let _one_at_a_time = LOADING.lock().unwrap_or_else(PoisonError::into_inner);
    let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    if let Some(Ok(id)) = loaded()
        .into_iter()
        .find(|l| l.file == canonical && l.outcome.is_ok())
        .map(|l| l.outcome)
    {
        return Ok(id);
    }
    let outcome = read(path).and_then(|src| register_locked(&path.display().to_string(), &src));
    LOADED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(Loaded {
            file: canonical,
            outcome: outcome.clone(),
        });
    outcome
}

/// Registers a dialect from text (`file` names it in errors); for tests and embedders.
pub fn register_source(file: &str, src: &str) -> Result<DialectId, LoadError> {
    let _one_at_a_time = LOADING.lock().unwrap_or_else(PoisonError::into_inner);
    register_locked(file, src)
}

fn register_locked(file: &str, src: &str) -> Result<DialectId, LoadError> {
    let dialect = UserDialect::parse(file, src, registry::next_user_rank())?;
    dialect.check_against_registered()?;
    // Registered dialects live as long as the process.
    let dialect: &'static UserDialect = Box::leak(Box::new(dialect));
    registry::register(dialect).map_err(|e| LoadError::Registry {
        file: file.to_owned(),
        message: e.to_string(),
    })
}

fn read(path: &Path) -> Result<String, LoadError> {
    let err = |message: String| LoadError::Read {
        file: path.display().to_string(),
        message,
    };
    let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(err(format!(
            "{} bytes; a dialect file has at most {MAX_FILE_BYTES}",
            meta.len()
        )));
    }
    std::fs::read_to_string(path).map_err(|e| err(e.to_string()))
}

/// Registers every `*.toml` file of `dir` (in name order); a broken file is refused with its
/// error and the others still load. A missing folder loads nothing.
pub fn register_dir(dir: &Path) -> Vec<Result<DialectId, LoadError>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml") && p.is_file())
        .collect();
    files.sort();
    files.iter().map(|f| register_file(f)).collect()
}
