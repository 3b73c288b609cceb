//! The seam every device dialect plugs into: the [`Dialect`] trait (its codec) and the data that
//! says what the dialect can do ([`Capabilities`], [`NoticeSetting`]s, its [`ErrorTable`], its
//! topics for the broker's authorization), the [`Samples`] the conformance suite
//! (tests/conformance.rs) and the fuzz target check it with, and its simulated devices
//! ([`crate::sim::SimFactory`], implemented in `<dialect>/sim.rs`; the one edge between the
//! two modules is `protocol` → `sim`, never back).
//!
//! The rollout state machine, the engine, the window and the CLI never name a dialect: they ask
//! these questions of the device's dialect, found through `super::registry`. A new dialect
//! answers them in its own module and is listed once in the registry.

use super::error::{DecodeError, EncodeError};
use super::event::{Event, EventKind, Failure};
use super::notice::Notice;
use super::service::Service;
use super::settings::NoticeSetting;
use crate::access::rules::TopicRoute;
use crate::device_id::DialectId;
use crate::sim::SimFactory;
use crate::wire::Outbound;

/// One device dialect. Implementations are stateless `'static` values; every method is pure
/// (no I/O, no clock, no randomness: the caller passes ids and times in).
pub trait Dialect: Send + Sync + 'static {
    fn id(&self) -> DialectId;

    /// The wildcard topics the console subscribes to for this dialect.
    fn subscriptions(&self) -> &[&'static str];

    /// Whether an inbound topic is one of this dialect's, by its shape alone. No two dialects
    /// own the same topic (the registry's tests check it on every subscription).
    fn owns_topic(&self, topic: &str) -> bool;

    /// One inbound message into the events it carries. The registry has already refused
    /// payloads over [`super::MAX_PAYLOAD_BYTES`].
    fn decode(&self, topic: &str, payload: &[u8]) -> Result<Vec<Event>, DecodeError>;

    /// One notice for a device of this dialect into the message to publish.
    fn encode(&self, notice: &Notice) -> Result<Outbound, EncodeError>;

    fn capabilities(&self) -> &'static Capabilities;

    /// Per-campaign choices that shape this dialect's notices (shown in the window's firmware
    /// form and as CLI flags).
    fn notice_settings(&self) -> &'static [NoticeSetting] {
        &[]
    }

    /// The failure codes its devices report, with what they mean.
    fn errors(&self) -> &'static ErrorTable;

    /// Every topic of the dialect, which way it flows and whose segments it carries: what the
    /// broker lets a device publish and subscribe to (`registry::topic_routes` gathers them).
    fn topic_routes(&self) -> &'static [TopicRoute];

    /// Example devices and messages of the dialect, from its document. The conformance suite
    /// checks the codec, the routes and the capabilities against them; the fuzz target starts
    /// from their topics.
    fn samples(&self) -> &'static Samples;

    /// Its simulated devices (for `ota-console sim`, the demo, tests). Every built-in dialect
    /// and every dialect file has them and the conformance suite requires them (its end-to-end
    /// run uses them); `None` only for a dialect registered by an embedder without one.
    fn sim(&self) -> Option<&'static dyn SimFactory> {
        None
    }

    /// For a protocol whose server side keeps state between messages (records with version
    /// numbers, states that refuse transitions): a fresh [`Service`] for one engine, which
    /// then decodes this dialect's messages and encodes its notices instead of
    /// [`Dialect::decode`] / [`Dialect::encode`] (see `service.rs`). Those two stay the pure,
    /// stateless reading of the same messages (what the conformance suite and the fuzz target
    /// check). `None` (the default): the codec alone serves the dialect.
    fn service(&self) -> Option<Box<dyn Service>> {
        None
    }
}

/// Example devices and uplink messages of one dialect, from its protocol document (and
/// notes.md where the document shows no example).
#[derive(Debug)]
pub struct Samples {
    /// A device of the dialect (text form, e.g. `aliyun:a1pk/dev01`) that connects itself.
    pub device: &'static str,
    /// For a dialect with sub-devices ([`SubDevices::ThroughGateway`]): a sub-device and the
    /// gateway it is attached to (text forms).
    pub sub_device: Option<(&'static str, &'static str)>,
    /// Messages devices send, with what each decodes to. Together they include at least one
    /// reported failure.
    pub uplink: &'static [Sample],
}

/// One uplink message and the kinds of the events it decodes to, in order.
#[derive(Debug)]
pub struct Sample {
    /// Where it comes from (a file of tests/golden/, or the notes.md shape it follows).
    pub name: &'static str,
    pub topic: &'static str,
    pub payload: &'static str,
    pub events: &'static [EventKind],
}

/// What a dialect can do, as data the rest of the console asks for.
#[derive(Debug)]
pub struct Capabilities {
    pub task_key: TaskKeySpec,
    pub ack: Acknowledgement,
    /// A gateway runs one upgrade at a time: while one of its devices upgrades, a notice for
    /// another of them waits (a DJI dock answers a second `ota_create` with an error).
    pub one_upgrade_per_gateway: bool,
    /// Whose id a progress report carries.
    pub progress_subject: Subject,
    pub pull: Pull,
    pub presence: Presence,
    pub sub_devices: SubDevices,
    pub cancel: CancelSupport,
    /// The offer's fields that reach the device.
    pub offer_fields: &'static [OfferField],
}

/// How the console names one upgrade of one device towards the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskKeySpec {
    pub source: KeySource,
    pub scope: KeyScope,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    /// No key: a device runs at most one upgrade per module, so device+module is the task.
    None,
    /// A number the campaign counts up, unique per device upgrade within the campaign.
    Counter,
    /// A random UUID per device upgrade.
    Uuid,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyScope {
    /// Reports carry the device's own id beside the key.
    Device,
    /// Reports name only the key (and the gateway they came through): every campaign that
    /// targets devices of the dialect is offered the report, and the key decides.
    Global,
}

/// How a device shows it received a notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acknowledgement {
    /// Its first progress or version report answers the notice. The policy's ack window and
    /// re-sends apply; after a resume or an outage the notice is settled or re-sent.
    ByFirstReport,
    /// An explicit reply to the request; the dialect's own wait and re-sends apply, and no
    /// reply fails the attempt.
    ByReply(ReplySpec),
}

impl Acknowledgement {
    pub fn by_first_report(&self) -> bool {
        matches!(self, Acknowledgement::ByFirstReport)
    }
}

/// The request/reply exchange of an [`Acknowledgement::ByReply`] dialect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplySpec {
    /// The request's name, as logs and the window show it (e.g. `ota_create`).
    pub request: &'static str,
    /// Each re-send carries a new exchange id (the key stays).
    pub fresh_exchange_per_send: bool,
    /// The result a device answers to a request while an upgrade already runs on it. Answering
    /// a re-send so means the first send got through (its reply came late or was lost): the
    /// device stays in flight under the same key instead of being refused.
    pub already_running: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    /// The device itself (with its module).
    Device,
    /// The gateway the device is attached to; the task key names the device's upgrade. Such a
    /// report says nothing about the device's own link.
    Gateway,
}

/// Whether devices may ask for their pending upgrade.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pull {
    Unsupported,
    Supported { nothing_pending: NothingPending },
}

impl Pull {
    /// Whether a device that asks while nothing is pending gets a reply (else: silence).
    pub fn replies_nothing_pending(self) -> bool {
        self == Pull::Supported {
            nothing_pending: NothingPending::EmptyReply,
        }
    }
}

/// How the dialect says "nothing pending" to a device that asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NothingPending {
    /// A reply without firmware.
    EmptyReply,
    /// No reply at all (the dialect defines no empty reply).
    Silence,
}

/// How the console knows a device is there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    /// Devices announce themselves when they connect (their version), so one known from the
    /// inventory is assumed reachable until the broker says otherwise.
    AnnouncesOnConnect,
    /// Devices report all the time: one not heard in this run is not reachable.
    Continuous,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubDevices {
    None,
    ThroughGateway {
        /// A sub-device also publishes under its own id (through its gateway's connection), so
        /// hearing it directly says nothing about which gateway it is attached to.
        publish_in_own_name: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelSupport {
    /// Cancelling a campaign withdraws notices not yet acted on.
    Withdraws,
    /// A notice, once accepted, cannot be recalled: `note` is shown beside Cancel, `detail` on
    /// hover.
    CannotRecall {
        note: &'static str,
        detail: &'static str,
    },
}

/// A field of the offer that a notice carries to the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OfferField {
    Url,
    Size,
    Md5,
    Sha256,
    Checksum,
    Version,
    FileName,
    Description,
}

/// The failure codes of a dialect and their meaning.
#[derive(Debug)]
pub struct ErrorTable {
    /// JSON keys of the dialect's messages that carry such a code (the inspector explains them).
    pub fields: &'static [&'static str],
    /// Which values of those fields are failures; the others are progress or success and need
    /// no explanation.
    pub failures: FailureValues,
    /// How an explained code is introduced: `{label} {code}: {meaning}` (e.g. `step -3: …`).
    pub label: &'static str,
    pub codes: &'static [ErrorCode],
    /// How a failure reads: `{code}` and `{text}` are replaced; `unknown` is used when the code
    /// is not in the table.
    pub format: &'static str,
    pub unknown: &'static str,
}

/// Which values of an [`ErrorTable`]'s fields report a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureValues {
    /// Negative values (the field counts progress upwards otherwise).
    Negative,
    /// Any value but 0 (0 is success).
    NonZero,
}

impl FailureValues {
    pub fn contains(self, value: i64) -> bool {
        match self {
            FailureValues::Negative => value < 0,
            FailureValues::NonZero => value != 0,
        }
    }
}

#[derive(Debug)]
pub struct ErrorCode {
    pub code: i64,
    pub text: &'static str,
}

impl ErrorTable {
    /// The meaning of `code`, if the table has it.
    pub fn meaning(&self, code: i64) -> Option<&'static str> {
        self.codes.iter().find(|c| c.code == code).map(|c| c.text)
    }

    /// A sentence for the window, logs and reports.
    pub fn describe(&self, code: i64) -> String {
        let (pattern, text) = match self.meaning(code) {
            Some(text) => (self.format, text),
            None => (self.unknown, ""),
        };
        pattern
            .replace("{code}", &code.to_string())
            .replace("{text}", text)
    }

    /// A [`Failure`] of dialect `dialect` with this table's wording.
    pub fn failure(&self, dialect: DialectId, code: i64) -> Failure {
        Failure { dialect, code }
    }
}
