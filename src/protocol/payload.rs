//! The first checks on a payload from the network, shared by every codec: its size, JSON
//! parsing within bounds, and shortening text for logs.

use super::error::{DecodeError, MAX_PAYLOAD_BYTES};

/// Parses a payload as JSON after the size check, mapping errors to [`DecodeError`].
pub(crate) fn parse_json(payload: &[u8]) -> Result<serde_json::Value, DecodeError> {
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(DecodeError::TooLarge { len: payload.len() });
    }
    // serde_json refuses nesting deeper than 128 levels, so hostile depth cannot overflow the
    // stack.
    serde_json::from_slice(payload).map_err(|e| DecodeError::Json(e.to_string()))
}

/// Topics and texts from the network are shortened before they go into errors and logs.
pub(crate) fn truncate_for_log(text: &str) -> String {
    const MAX_CHARS: usize = 200;
    if text.chars().count() <= MAX_CHARS {
        text.to_owned()
    } else {
        let mut s: String = text.chars().take(MAX_CHARS).collect();
        s.push('…');
        s
    }
}
