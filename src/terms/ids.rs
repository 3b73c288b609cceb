//! [`DeviceIdError`] in words of the language in force: `device_id` is a leaf that depends on
//! no other module, so its error's `Display` lives here. The segment names it carries
//! (`product key`, `device name`) and the shapes a dialect expects are data, shown as they are.

use std::fmt;

use crate::device_id::{DeviceIdError, MAX_SEGMENT_BYTES};
use crate::i18n::tr;

impl fmt::Display for DeviceIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            DeviceIdError::Empty { what } => tr!("error.device_id.empty", what = what),
            DeviceIdError::TooLong { what, len } => tr!(
                "error.device_id.too_long",
                what = what,
                len = len,
                max = MAX_SEGMENT_BYTES
            ),
            DeviceIdError::ForbiddenChar { what, found } => tr!(
                "error.device_id.forbidden_char",
                what = what,
                found = format!("{found:?}")
            ),
            DeviceIdError::UnknownDialect { name, known } => tr!(
                "error.device_id.unknown_dialect",
                name = format!("{name:?}"),
                known = known
            ),
            DeviceIdError::Shape { dialect, expected } => tr!(
                "error.device_id.shape",
                dialect = dialect,
                expected = expected
            ),
            DeviceIdError::Malformed(text) => {
                tr!("error.device_id.malformed", id = format!("{text:?}"))
            }
        };
        f.write_str(&text)
    }
}
