//! DJI Cloud API docks and drones as a [`Dialect`]: its identity (`dji:{sn}`), what it can do
//! (`ota_create` answered by `services_reply`, one upgrade per dock, progress from the dock), its
//! notice setting (`firmware_upgrade_type`) and its error codes. The codec is `codec.rs`;
//! its simulated dock and drone, an independent reading of the same documents, are `sim.rs`.

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
    ErrorCode, ErrorTable, Event, Failure, FailureValues, KeyScope, KeySource, Notice,
    NoticeSetting, OfferField, Outbound, Presence, Pull, ReplySpec, Samples, SettingKind,
    SettingValues, SubDevices, Subject, TaskKeySpec,
};

const IDENT: DialectIdent = DialectIdent {
    rank: 2,
    prefix: "dji",
    label: "DJI Cloud API",
    shape: IdShape::Name { name: "sn" },
};

/// The dialect's handle.
pub const ID: DialectId = DialectId::new(&IDENT);

/// The dialect, as the registry lists it.
pub static DIALECT: Dji = Dji;

pub struct Dji;

const CAPABILITIES: Capabilities = Capabilities {
    task_key: TaskKeySpec {
        source: KeySource::Uuid,
        // `ota_progress` arrives on the dock's topic and names the upgrade by `bid` only.
        scope: KeyScope::Global,
    },
    ack: Acknowledgement::ByReply(ReplySpec {
        request: "ota_create",
        fresh_exchange_per_send: true,
        already_running: Some(312014),
    }),
    // A dock answers a second `ota_create` while one runs with 312014.
    one_upgrade_per_gateway: true,
    progress_subject: Subject::Gateway,
    // DJI devices never ask for firmware.
    pull: Pull::Unsupported,
    presence: Presence::Continuous,
    sub_devices: SubDevices::ThroughGateway {
        publish_in_own_name: true,
    },
    cancel: CancelSupport::CannotRecall {
        note: "DJI docks cannot recall an ota_create: cancel stops new notices only",
        detail: "The DJI Cloud API has no way to withdraw an upgrade a dock already \
                 accepted; those devices finish (or fail) on their own.",
    },
    offer_fields: &[
        OfferField::Url,
        OfferField::Size,
        OfferField::Md5,
        OfferField::Version,
        OfferField::FileName,
    ],
};

/// `firmware_upgrade_type` of `ota_create`.
pub const UPGRADE_TYPE: NoticeSetting = NoticeSetting {
    key: "upgrade_type",
    label: "DJI upgrade type",
    help: "DJI firmware_upgrade_type: normal (3) or consistency (2)",
    cli_flag: "dji-upgrade-type",
    legacy_key: Some("dji_upgrade_type"),
    kind: SettingKind::Choice(&[
        Choice {
            value: "normal",
            label: "normal upgrade",
            aliases: &[],
        },
        Choice {
            value: "consistency",
            label: "consistency upgrade",
            aliases: &[],
        },
    ]),
    default: "normal",
};

const SETTINGS: &[NoticeSetting] = &[UPGRADE_TYPE];

/// DJI firmware-upgrade error codes. Source: the `FirmwareErrorCodeEnum` of DJI's Cloud API sample
/// server (DJI-Cloud-API-Demo, `cloud-sdk/.../cloudapi/firmware/FirmwareErrorCodeEnum.java`); the
/// wording is ours. 312014, 312015, 312022, 312027 and 312704 are also in our notes.
const CODES: &[ErrorCode] = &[
    ErrorCode {
        code: 312001,
        text: "consistency upgrade triggered, but the device did not ask for one",
    },
    ErrorCode {
        code: 312002,
        text: "upgrade failed while preparing (stage 1); try again",
    },
    ErrorCode {
        code: 312003,
        text: "upgrade failed: package verification failed; try again",
    },
    ErrorCode {
        code: 312004,
        text: "upgrade failed while preparing (stage 2); try again",
    },
    ErrorCode {
        code: 312010,
        text: "the upgrade request does not match the API",
    },
    ErrorCode {
        code: 312012,
        text: "invalid upgrade parameters",
    },
    ErrorCode {
        code: 312013,
        text: "upgrade command failed on the device; try again",
    },
    ErrorCode {
        code: 312014,
        text: "the device is already upgrading",
    },
    ErrorCode {
        code: 312015,
        text: "the aircraft is in flight; upgrade after it lands",
    },
    ErrorCode {
        code: 312016,
        text: "transmission error between dock and aircraft; restart both and retry",
    },
    ErrorCode {
        code: 312017,
        text: "version check failed",
    },
    ErrorCode {
        code: 312018,
        text: "upgrade command failed on the device; try again",
    },
    ErrorCode {
        code: 312019,
        text: "upgrade command failed on the device; try again",
    },
    ErrorCode {
        code: 312020,
        text: "upgrade command failed on the device; try again",
    },
    ErrorCode {
        code: 312021,
        text: "upgrade command failed on the device; try again",
    },
    ErrorCode {
        code: 312022,
        text: "aircraft is powered off or not linked to the dock",
    },
    ErrorCode {
        code: 312023,
        text: "dock driving rods could not reset (emergency stop pressed or rods stuck); aircraft cannot be upgraded",
    },
    ErrorCode {
        code: 312024,
        text: "upgrade command failed on the device; try again",
    },
    ErrorCode {
        code: 312025,
        text: "failed to delete the old firmware package",
    },
    ErrorCode {
        code: 312026,
        text: "failed to decompress the offline upgrade package",
    },
    ErrorCode {
        code: 312027,
        text: "no aircraft detected in the dock",
    },
    ErrorCode {
        code: 312028,
        text: "the device restarted during the upgrade",
    },
    ErrorCode {
        code: 312029,
        text: "the device is restarting; cannot upgrade now",
    },
    ErrorCode {
        code: 312030,
        text: "aircraft enhanced (4G) transmission is on; turn it off and retry",
    },
    ErrorCode {
        code: 312704,
        text: "aircraft battery below 20%; charge it and retry",
    },
];

/// `result` codes of `services_reply` and `ota_progress`.
pub const ERRORS: ErrorTable = ErrorTable {
    fields: &["result", "code"],
    failures: FailureValues::NonZero,
    label: "DJI",
    codes: CODES,
    format: "DJI error {code}: {text}",
    unknown: "DJI error {code}",
};

impl Dialect for Dji {
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
    /// A DJI dock or drone: `dji:{sn}`.
    pub fn dji(sn: &str) -> Result<Self, DeviceIdError> {
        DeviceId::new(ID, None, sn)
    }
}

/// The failure a `result` code reports.
pub fn failure(code: i64) -> Failure {
    ERRORS.failure(ID, code)
}

/// Settings that choose `upgrade_type` for `ota_create`.
pub fn settings(upgrade_type: DjiUpgradeType) -> SettingValues {
    let mut values = SettingValues::default();
    values.0.insert(
        UPGRADE_TYPE.key.to_owned(),
        upgrade_type.setting().to_owned(),
    );
    values
}
