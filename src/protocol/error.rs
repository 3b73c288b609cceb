//! Why a message could not be decoded (and the size limit every decoder applies first) or a
//! notice encoded.

use crate::device_id::{DeviceId, DeviceIdError};

/// Largest payload any decoder will parse. Real OTA messages are well under 4 KiB.
pub const MAX_PAYLOAD_BYTES: usize = 256 * 1024;

/// Why an inbound message was refused. Each variant says what was wrong, for the log.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    #[error("payload is {len} bytes; at most {MAX_PAYLOAD_BYTES} are accepted")]
    TooLarge { len: usize },
    #[error("topic {0:?} is not an OTA topic of any dialect")]
    UnknownTopic(String),
    #[error("bad device identity: {0}")]
    BadIdentity(#[from] DeviceIdError),
    #[error("payload is not valid JSON: {0}")]
    Json(String),
    #[error("field `{0}` is missing")]
    MissingField(&'static str),
    #[error("field `{field}` should be {expected}")]
    WrongType {
        field: &'static str,
        expected: &'static str,
    },
    #[error("field `{field}` has an invalid value: {detail}")]
    BadValue { field: &'static str, detail: String },
    #[error("unknown method {0:?}")]
    UnknownMethod(String),
}

/// Why a notice could not be encoded (a caller bug or a mismatched dialect, never device data).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EncodeError {
    #[error("notice for {device} cannot be encoded by another dialect")]
    DialectMismatch { device: DeviceId },
    #[error("{0}")]
    Invalid(String),
}
