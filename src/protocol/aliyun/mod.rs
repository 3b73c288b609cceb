//! Alibaba Cloud IoT OTA as a [`Dialect`]: its identity (`aliyun:{productKey}/{deviceName}`), what
//! it can do, its notice setting (`signMethod`) and its failure steps. The codec is `codec.rs`; its
//! simulated device, an independent reading of the same documents, is `sim.rs`.

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
    Acknowledgement, CancelSupport, Capabilities, Choice, DecodeError, Dialect, EncodeError,
    ErrorCode, ErrorTable, Event, Failure, FailureValues, KeyScope, KeySource, NothingPending,
    Notice, NoticeSetting, OfferField, Outbound, Presence, Pull, Samples, SettingKind,
    SettingValues, SubDevices, Subject, TaskKeySpec,
};

const IDENT: DialectIdent = DialectIdent {
    rank: 0,
    prefix: "aliyun",
    label: "Alibaba Cloud IoT",
    shape: IdShape::KeyAndName {
        key: "productKey",
        name: "deviceName",
    },
};

/// The dialect's handle.
pub const ID: DialectId = DialectId::new(&IDENT);

/// The dialect, as the registry lists it.
pub static DIALECT: Aliyun = Aliyun;

pub struct Aliyun;

const CAPABILITIES: Capabilities = Capabilities {
    task_key: TaskKeySpec {
        source: KeySource::None,
        scope: KeyScope::Device,
    },
    ack: Acknowledgement::ByFirstReport,
    one_upgrade_per_gateway: false,
    progress_subject: Subject::Device,
    pull: Pull::Supported {
        nothing_pending: NothingPending::EmptyReply,
    },
    presence: Presence::AnnouncesOnConnect,
    sub_devices: SubDevices::None,
    cancel: CancelSupport::Withdraws,
    offer_fields: &[
        OfferField::Url,
        OfferField::Size,
        OfferField::Md5,
        OfferField::Sha256,
        OfferField::Version,
    ],
};

/// `signMethod`: which digest the notice's `sign` carries (`md5` is always sent too).
pub const SIGN_METHOD: NoticeSetting = NoticeSetting {
    key: "sign_method",
    label: "Alibaba signMethod",
    help: "Digest in Alibaba notices' sign field (md5 is always sent too): md5 or sha256",
    cli_flag: "sign-method",
    legacy_key: Some("sign_method"),
    kind: SettingKind::Choice(&[
        Choice {
            value: "md5",
            label: "MD5",
            aliases: &["Md5"],
        },
        Choice {
            value: "sha256",
            label: "SHA256",
            aliases: &["Sha256", "sha-256"],
        },
    ]),
    default: "md5",
};

const SETTINGS: &[NoticeSetting] = &[SIGN_METHOD];

/// Progress `step` values -1..-4 (the Alibaba device SDKs' failure steps, also FogCloud's -1).
pub const ERRORS: ErrorTable = ErrorTable {
    fields: &["step"],
    failures: FailureValues::Negative,
    label: "step",
    codes: &[
        ErrorCode {
            code: -1,
            text: "upgrade failed",
        },
        ErrorCode {
            code: -2,
            text: "download failed",
        },
        ErrorCode {
            code: -3,
            text: "verification failed (digest or signature)",
        },
        ErrorCode {
            code: -4,
            text: "writing to flash failed",
        },
    ],
    format: "{text}",
    unknown: "upgrade failed (step {code})",
};

impl Dialect for Aliyun {
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
}

impl DeviceId {
    /// An Alibaba device: `aliyun:{productKey}/{deviceName}`.
    pub fn aliyun(product_key: &str, device_name: &str) -> Result<Self, DeviceIdError> {
        DeviceId::new(ID, Some(product_key), device_name)
    }
}

/// The failure a progress `step` of -1..-4 reports.
pub fn failure(step: i64) -> Failure {
    ERRORS.failure(ID, step)
}

/// Settings that choose `method` for the notices' `sign`.
pub fn settings(method: SignMethod) -> SettingValues {
    let mut values = SettingValues::default();
    values.0.insert(
        SIGN_METHOD.key.to_owned(),
        sign_method_setting(method).to_owned(),
    );
    values
}

/// The [`SIGN_METHOD`] choice value of `method`.
pub fn sign_method_setting(method: SignMethod) -> &'static str {
    match method {
        SignMethod::Md5 => "md5",
        SignMethod::Sha256 => "sha256",
    }
}
