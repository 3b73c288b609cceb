//! AWS IoT Jobs as a [`Dialect`], served by the console on any broker: its identity
//! (`aws:{thingName}`), what it can do (a job execution per target whose job id is the task
//! key, pulls through `start-next` / `get` / `$next/get`, progress in `statusDetails`), its
//! notice setting (what proves success), its error table (the terminal statuses), and the one
//! stateful part, the Jobs service itself (`jobs.rs`, behind `Dialect::service`). The codec is
//! `codec.rs` (the API's shapes, in its module doc); the simulated things, an independent
//! reading of the same API, are `sim.rs`.

mod codec;
mod jobs;
mod routes;
mod samples;
pub mod sim;

pub use self::codec::{
    Details, ErrorCode as JobsErrorCode, Execution, SUBSCRIPTIONS, Status, decode, encode,
    owns_topic, valid_job_id, valid_thing_name,
};
pub use self::jobs::Jobs;
/// The dialect's simulator (its things are in `sim.rs`).
pub use self::sim::FACTORY as SIMULATOR;
use crate::access::rules::TopicRoute;
use crate::device_id::{DeviceId, DeviceIdError, DialectId, DialectIdent, IdShape};
use crate::protocol::{
    Acknowledgement, CancelSupport, Capabilities, Choice, DecodeError, Dialect, EncodeError,
    ErrorCode, ErrorTable, Event, Failure, FailureValues, KeyScope, KeySource, NothingPending,
    Notice, NoticeSetting, OfferField, Outbound, Presence, Pull, Samples, Service, SubDevices,
    Subject, TaskKeySpec,
};

const IDENT: DialectIdent = DialectIdent {
    rank: 3,
    prefix: "aws",
    label: "AWS IoT Jobs",
    shape: IdShape::Name { name: "thingName" },
};

/// The dialect's handle.
pub const ID: DialectId = DialectId::new(&IDENT);

/// The dialect, as the registry lists it.
pub static DIALECT: Aws = Aws;

pub struct Aws;

const CAPABILITIES: Capabilities = Capabilities {
    task_key: TaskKeySpec {
        // The job id: `[a-zA-Z0-9_-]{1,64}`, which a UUID is.
        source: KeySource::Uuid,
        // Every request topic names the thing.
        scope: KeyScope::Device,
    },
    // `notify-next` has no reply: the thing's first update (or `start-next`) answers it.
    ack: Acknowledgement::ByFirstReport,
    one_upgrade_per_gateway: false,
    progress_subject: Subject::Device,
    // `start-next` and `$next/get` with nothing pending are accepted without an execution.
    pull: Pull::Supported {
        nothing_pending: NothingPending::EmptyReply,
    },
    // Things subscribe and ask for their next job when they connect.
    presence: Presence::AnnouncesOnConnect,
    sub_devices: SubDevices::None,
    // An execution the campaign withdraws is CANCELED when its thing next asks.
    cancel: CancelSupport::Withdraws,
    offer_fields: &[
        OfferField::Url,
        OfferField::Size,
        OfferField::Md5,
        OfferField::Sha256,
        OfferField::Version,
        OfferField::FileName,
    ],
};

/// What proves an upgrade succeeded: the target version in `statusDetails.version` of the
/// SUCCEEDED update (as every other dialect's success is the version the device reports), or
/// the status alone, for devices that report no version.
pub const SUCCESS: NoticeSetting = NoticeSetting {
    key: "success",
    label: "AWS success proof",
    help: "What proves an AWS IoT Jobs upgrade: the target version in statusDetails.version of \
           the SUCCEEDED update (version), or SUCCEEDED alone (status)",
    cli_flag: "aws-success",
    legacy_key: None,
    choices: &[
        Choice {
            value: "version",
            label: "SUCCEEDED with the new version",
            aliases: &[],
        },
        Choice {
            value: "status",
            label: "SUCCEEDED alone",
            aliases: &[],
        },
    ],
    default: "version",
};

const SETTINGS: &[NoticeSetting] = &[SUCCESS];

/// Codes of the failures a job execution ends in (the API names statuses, not numbers: these
/// are the console's).
pub const FAILED: i64 = 1;
pub const REJECTED: i64 = 2;
pub const TIMED_OUT: i64 = 3;
pub const REMOVED: i64 = 4;

/// The terminal statuses that are failures.
pub const ERRORS: ErrorTable = ErrorTable {
    fields: &["status"],
    failures: FailureValues::NonZero,
    label: "AWS job execution",
    codes: &[
        ErrorCode {
            code: FAILED,
            text: "FAILED: the device reports the job failed",
        },
        ErrorCode {
            code: REJECTED,
            text: "REJECTED: the device refused the job",
        },
        ErrorCode {
            code: TIMED_OUT,
            text: "TIMED_OUT: no update within the step timeout",
        },
        ErrorCode {
            code: REMOVED,
            text: "REMOVED: the job execution was removed",
        },
    ],
    format: "job execution {text}",
    unknown: "job execution failed (code {code})",
};

impl Dialect for Aws {
    fn id(&self) -> DialectId {
        ID
    }

    fn subscriptions(&self) -> &[&'static str] {
        SUBSCRIPTIONS
    }

    fn owns_topic(&self, topic: &str) -> bool {
        owns_topic(topic)
    }

    fn decode(&self, topic: &str, payload: &[u8]) -> Result<Vec<Event>, DecodeError> {
        decode(topic, payload)
    }

    fn encode(&self, notice: &Notice) -> Result<Outbound, EncodeError> {
        encode(notice)
    }

    fn capabilities(&self) -> &'static Capabilities {
        &CAPABILITIES
    }

    fn notice_settings(&self) -> &'static [NoticeSetting] {
        SETTINGS
    }

    fn errors(&self) -> &'static ErrorTable {
        &ERRORS
    }

    fn topic_routes(&self) -> &'static [TopicRoute] {
        routes::ROUTES
    }

    fn samples(&self) -> &'static Samples {
        &samples::SAMPLES
    }

    fn sim(&self) -> Option<&'static dyn crate::sim::SimFactory> {
        Some(&SIMULATOR)
    }

    fn service(&self) -> Option<Box<dyn Service>> {
        Some(Box::new(Jobs::default()))
    }
}

impl DeviceId {
    /// An AWS IoT thing: `aws:{thingName}`.
    pub fn aws(thing: &str) -> Result<Self, DeviceIdError> {
        DeviceId::new(ID, None, thing)
    }
}

/// The failure of one of the codes above.
pub fn failure(code: i64) -> Failure {
    ERRORS.failure(ID, code)
}
