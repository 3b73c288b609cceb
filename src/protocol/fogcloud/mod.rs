//! MXCHIP FogCloud OTA as a [`Dialect`]: its identity (`fogcloud:{product_key}/{device_name}`),
//! what it can do (gateways with sub-devices, task ids) and its failure step. The codec is
//! `codec.rs`; its simulated devices and gateways, an independent reading of the same documents,
//! are `sim.rs`.

mod codec;
mod routes;
mod samples;
pub mod sim;

pub use self::codec::*;
/// The dialect's simulator (its devices are in `sim.rs`).
pub use self::sim::FACTORY as SIMULATOR;
use crate::access::rules::TopicRoute;
use crate::device_id::{DeviceId, DeviceIdError, DialectId, DialectIdent, IdShape};
use crate::protocol::{
    Acknowledgement, CancelSupport, Capabilities, DecodeError, Dialect, EncodeError, ErrorCode,
    ErrorTable, Event, Failure, FailureValues, KeyScope, KeySource, NothingPending, Notice,
    OfferField, Outbound, Presence, Pull, Samples, SubDevices, Subject, TaskKeySpec,
};

const IDENT: DialectIdent = DialectIdent {
    rank: 1,
    prefix: "fogcloud",
    label: "MXCHIP FogCloud",
    shape: IdShape::KeyAndName {
        key: "product_key",
        name: "device_name",
    },
};

/// The dialect's handle.
pub const ID: DialectId = DialectId::new(&IDENT);

/// The dialect, as the registry lists it.
pub static DIALECT: FogCloud = FogCloud;

pub struct FogCloud;

const CAPABILITIES: Capabilities = Capabilities {
    task_key: TaskKeySpec {
        source: KeySource::Counter,
        scope: KeyScope::Device,
    },
    ack: Acknowledgement::ByFirstReport,
    one_upgrade_per_gateway: false,
    progress_subject: Subject::Device,
    // notes.md: the document defines no empty reply to `firmware.get`.
    pull: Pull::Supported {
        nothing_pending: NothingPending::Silence,
    },
    presence: Presence::AnnouncesOnConnect,
    sub_devices: SubDevices::ThroughGateway {
        publish_in_own_name: false,
    },
    cancel: CancelSupport::Withdraws,
    offer_fields: &[
        OfferField::Url,
        OfferField::Size,
        OfferField::Md5,
        OfferField::Checksum,
        OfferField::Version,
        OfferField::Description,
    ],
};

/// Progress `step` -1, the one failure FogCloud devices report.
pub const ERRORS: ErrorTable = ErrorTable {
    fields: &["step"],
    failures: FailureValues::Negative,
    label: "step",
    codes: &[ErrorCode {
        code: -1,
        text: "upgrade failed",
    }],
    format: "{text}",
    unknown: "upgrade failed (step {code})",
};

impl Dialect for FogCloud {
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
}

impl DeviceId {
    /// A FogCloud device: `fogcloud:{product_key}/{device_name}`.
    pub fn fogcloud(product_key: &str, device_name: &str) -> Result<Self, DeviceIdError> {
        DeviceId::new(ID, Some(product_key), device_name)
    }
}

/// The failure a progress `step` of -1 reports.
pub fn failure(step: i64) -> Failure {
    ERRORS.failure(ID, step)
}
