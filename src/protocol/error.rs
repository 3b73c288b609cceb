//! Why a message could not be decoded (and the size limit every decoder applies first) or a
//! notice encoded.

use crate::device_id::{DeviceId, DeviceIdError};
use crate::i18n::tr;

/// Largest payload any decoder will parse. Real OTA messages are well under 4 KiB.
pub const MAX_PAYLOAD_BYTES: usize = 256 * 1024;

/// Why an inbound message was refused. Each variant says what was wrong, for the log.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    #[error("{}", tr!("error.decode.too_large", len = len, max = MAX_PAYLOAD_BYTES))]
    TooLarge { len: usize },
    #[error("{}", tr!("error.decode.unknown_topic", topic = format!("{_0:?}")))]
    UnknownTopic(String),
    #[error("{}", tr!("error.decode.bad_identity", why = _0))]
    BadIdentity(#[from] DeviceIdError),
    #[error("{}", tr!("error.decode.json", why = _0))]
    Json(String),
    #[error("{}", tr!("error.decode.missing_field", field = _0))]
    MissingField(&'static str),
    #[error("{}", tr!("error.decode.wrong_type", field = field, expected = expected))]
    WrongType {
        field: &'static str,
        expected: &'static str,
    },
    #[error("{}", tr!("error.decode.bad_value", field = field, detail = detail))]
    BadValue { field: &'static str, detail: String },
    #[error("{}", tr!("error.decode.unknown_method", method = format!("{_0:?}")))]
    UnknownMethod(String),
}

/// Why a notice could not be encoded (a caller bug or a mismatched dialect, never device data).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EncodeError {
    #[error("{}", tr!("error.encode.dialect_mismatch", device = device))]
    DialectMismatch { device: DeviceId },
    #[error("{0}")]
    Invalid(String),
}
