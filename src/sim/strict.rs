//! What a strict device stack refuses: notices with a missing or empty field, read as the
//! C SDKs read them (protocols/notes.md: "Device SDKs treat every field of the notice as
//! required and non-empty"). Used by the simulated devices under `SimConfig::strict`; a notice
//! refused here is ignored and counted in `broken_notices`.
//!
//! Owns: the checks every dialect's strict reading shares (each dialect's simulated device,
//! `protocol/<dialect>/sim.rs`, keeps its own field lists and `strict_problem`). Pure: no I/O,
//! never panics on input. Each check returns `Some(why)` for a broken notice and `None` for a
//! good one.

use serde_json::{Map, Value};

/// Why `value` is not a usable field value: null, an empty string, an empty object or array,
/// or (for sizes) zero.
pub(crate) fn empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.trim().is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::Bool(_) | Value::Number(_) => false,
    }
}

/// Every field in `required` present and non-empty, and no field at all empty (an SDK that
/// copies every string it finds treats an empty optional one as broken too).
pub(crate) fn fields_problem(
    obj: &Map<String, Value>,
    required: &[&str],
    what: &str,
) -> Option<String> {
    if let Some(missing) = required.iter().find(|k| !obj.contains_key(**k)) {
        return Some(format!("{what}: {missing} is missing"));
    }
    if let Some((key, _)) = obj.iter().find(|(_, v)| empty(v)) {
        return Some(format!("{what}: {key} is empty"));
    }
    for size in ["size", "file_size"] {
        if obj
            .get(size)
            .is_some_and(|v| v.as_u64().is_none_or(|n| n == 0))
        {
            return Some(format!("{what}: {size} is not a positive integer"));
        }
    }
    None
}

pub(crate) fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn missing_empty_and_zero_fields_are_problems() {
        let obj = |v: Value| match v {
            Value::Object(m) => m,
            other => panic!("{other}"),
        };
        let good = obj(json!({"a": "x", "size": 3, "flag": false}));
        assert_eq!(fields_problem(&good, &["a", "size"], "p"), None);
        let missing = fields_problem(&good, &["b"], "p").unwrap();
        assert_eq!(missing, "p: b is missing");
        let blank = obj(json!({"a": " ", "size": 3}));
        assert_eq!(
            fields_problem(&blank, &["size"], "p").unwrap(),
            "p: a is empty"
        );
        let zero = obj(json!({"file_size": 0}));
        assert!(
            fields_problem(&zero, &[], "p")
                .unwrap()
                .contains("file_size")
        );
        assert!(empty(&json!([])) && empty(&json!({})) && empty(&Value::Null));
        assert!(is_lower_hex("0a", 2) && !is_lower_hex("0A", 2) && !is_lower_hex("0a", 3));
    }
}
