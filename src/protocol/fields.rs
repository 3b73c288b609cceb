//! Typed, bounded access to the fields of an inbound JSON payload and to the segments of an
//! inbound topic, shared by the three dialect codecs.
//!
//! Owns the "liberal in what we accept" rules that are the same in every dialect: `null` counts
//! as absent, integers may arrive as numbers or as strings, huge numbers saturate or are refused
//! instead of wrapping. Every error names the field (as the dialect spells its path, e.g.
//! `params.step`). Nothing here panics or allocates more than the input it was given.

use serde_json::{Map, Number, Value};

use super::{DecodeError, MsgId};

pub(crate) type Object = Map<String, Value>;

/// Longest id, tid, bid, task id, method, version or other short token we accept. Real ones are
/// under 40 bytes; the bound keeps a hostile device from making us store and echo megabytes.
pub(crate) const MAX_TOKEN_BYTES: usize = 128;

/// Free text (`desc`) is cut to this many characters rather than refused: it is only shown.
pub(crate) const MAX_DESC_CHARS: usize = 1000;

/// Splits `topic` into exactly `N` `/`-separated segments, or `None` when it has another count.
/// Allocation-free, so a topic of a million slashes costs nothing.
pub(crate) fn topic_segments<const N: usize>(topic: &str) -> Option<[&str; N]> {
    let mut out = [""; N];
    let mut parts = topic.split('/');
    for slot in out.iter_mut() {
        *slot = parts.next()?;
    }
    match parts.next() {
        Some(_) => None,
        None => Some(out),
    }
}

pub(crate) fn as_object<'a>(
    value: &'a Value,
    field: &'static str,
) -> Result<&'a Object, DecodeError> {
    value.as_object().ok_or(DecodeError::WrongType {
        field,
        expected: "an object",
    })
}

/// The value under `key`; `null` counts as absent.
pub(crate) fn optional<'a>(obj: &'a Object, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !v.is_null())
}

pub(crate) fn required<'a>(
    obj: &'a Object,
    key: &str,
    field: &'static str,
) -> Result<&'a Value, DecodeError> {
    optional(obj, key).ok_or(DecodeError::MissingField(field))
}

pub(crate) fn required_object<'a>(
    obj: &'a Object,
    key: &str,
    field: &'static str,
) -> Result<&'a Object, DecodeError> {
    as_object(required(obj, key, field)?, field)
}

/// A string of at most [`MAX_TOKEN_BYTES`] (it may be empty; callers decide).
pub(crate) fn token<'a>(value: &'a Value, field: &'static str) -> Result<&'a str, DecodeError> {
    let s = value.as_str().ok_or(DecodeError::WrongType {
        field,
        expected: "a string",
    })?;
    if s.len() > MAX_TOKEN_BYTES {
        return Err(DecodeError::BadValue {
            field,
            detail: format!("{} bytes long, at most {MAX_TOKEN_BYTES} allowed", s.len()),
        });
    }
    Ok(s)
}

pub(crate) fn required_token<'a>(
    obj: &'a Object,
    key: &str,
    field: &'static str,
) -> Result<&'a str, DecodeError> {
    token(required(obj, key, field)?, field)
}

pub(crate) fn optional_token<'a>(
    obj: &'a Object,
    key: &str,
    field: &'static str,
) -> Result<Option<&'a str>, DecodeError> {
    optional(obj, key).map(|v| token(v, field)).transpose()
}

/// A reported firmware version: a non-empty string.
pub(crate) fn version(obj: &Object, key: &str, field: &'static str) -> Result<String, DecodeError> {
    let v = required_token(obj, key, field)?;
    if v.trim().is_empty() {
        return Err(DecodeError::BadValue {
            field,
            detail: "empty version".into(),
        });
    }
    Ok(v.to_owned())
}

/// Free text, cut to [`MAX_DESC_CHARS`] characters.
pub(crate) fn desc(
    obj: &Object,
    key: &str,
    field: &'static str,
) -> Result<Option<String>, DecodeError> {
    let Some(value) = optional(obj, key) else {
        return Ok(None);
    };
    let s = value.as_str().ok_or(DecodeError::WrongType {
        field,
        expected: "a string",
    })?;
    Ok(Some(s.chars().take(MAX_DESC_CHARS).collect()))
}

const INTEGER: &str = "an integer (number or string)";

/// An exact integer: a JSON integer, an integral float, or a string holding one. Values outside
/// `i64` are refused (an error code or id that does not fit is not one we can echo or look up).
pub(crate) fn exact_int(value: &Value, field: &'static str) -> Result<i64, DecodeError> {
    let out_of_range = |shown: String| DecodeError::BadValue {
        field,
        detail: format!("{shown} is not a 64-bit integer"),
    };
    match value {
        Value::Number(n) => number_exact(n).ok_or_else(|| out_of_range(n.to_string())),
        Value::String(s) => {
            let t = s.trim();
            t.parse::<i64>().map_err(|_| out_of_range(short(t)))
        }
        _ => Err(DecodeError::WrongType {
            field,
            expected: INTEGER,
        }),
    }
}

/// An integer where only the range matters (a percentage or progress step): as
/// [`exact_int`], but fractions are cut and values beyond `i64` saturate, so the caller's clamp
/// sees them as "too large" instead of the message being lost.
pub(crate) fn saturating_int(value: &Value, field: &'static str) -> Result<i64, DecodeError> {
    let bad = |shown: String| DecodeError::BadValue {
        field,
        detail: format!("{shown} is not a number"),
    };
    match value {
        Value::Number(n) => number_saturating(n).ok_or_else(|| bad(n.to_string())),
        Value::String(s) => {
            let t = s.trim();
            if let Ok(i) = t.parse::<i64>() {
                return Ok(i);
            }
            match t.parse::<f64>() {
                Ok(f) if f.is_finite() => Ok(f.trunc() as i64),
                _ => Err(bad(short(t))),
            }
        }
        _ => Err(DecodeError::WrongType {
            field,
            expected: INTEGER,
        }),
    }
}

fn number_exact(n: &Number) -> Option<i64> {
    if let Some(i) = n.as_i64() {
        return Some(i);
    }
    if n.is_u64() {
        return None;
    }
    let f = n.as_f64()?;
    // 2^63 is exactly representable; anything at or past it does not fit.
    let fits = f.is_finite() && f.fract() == 0.0 && f >= -(2f64.powi(63)) && f < 2f64.powi(63);
    fits.then_some(f as i64)
}

fn number_saturating(n: &Number) -> Option<i64> {
    if let Some(i) = n.as_i64() {
        return Some(i);
    }
    if n.is_u64() {
        return Some(i64::MAX);
    }
    let f = n.as_f64()?;
    // `as` saturates at the i64 bounds; non-finite values cannot come out of serde_json.
    f.is_finite().then_some(f.trunc() as i64)
}

/// A value that is 1 / `true` / `"1"` (DJI `need_reply`). Anything else, including a malformed
/// value, is "no": a missing ack only costs the device a resend.
pub(crate) fn is_one(value: Option<&Value>) -> bool {
    match value {
        Some(Value::Bool(b)) => *b,
        Some(v) => exact_int(v, "need_reply") == Ok(1),
        None => false,
    }
}

/// A message id as sent (number or string), to be echoed in a reply.
pub(crate) fn msg_id(value: &Value, field: &'static str) -> Result<MsgId, DecodeError> {
    match value {
        Value::String(_) => Ok(MsgId::Str(token(value, field)?.to_owned())),
        Value::Number(n) => n.as_i64().map(MsgId::Num).ok_or(DecodeError::BadValue {
            field,
            detail: format!("{n} is not a 64-bit integer"),
        }),
        _ => Err(DecodeError::WrongType {
            field,
            expected: "a number or a string",
        }),
    }
}

/// A percentage clamped to 0..=100, and whether clamping was needed.
pub(crate) fn clamp_percent(raw: i64) -> (u8, bool) {
    let clamped = raw.clamp(0, 100);
    // In 0..=100 after the clamp, so the conversion cannot fail.
    (u8::try_from(clamped).unwrap_or(100), clamped != raw)
}

/// Device text quoted in an error message, shortened.
pub(crate) fn short(text: &str) -> String {
    super::truncate_for_log(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn topic_segments_need_the_exact_count() {
        assert_eq!(topic_segments::<3>("a/b/c"), Some(["a", "b", "c"]));
        assert_eq!(topic_segments::<3>("a/b"), None);
        assert_eq!(topic_segments::<3>("a/b/c/d"), None);
        assert_eq!(topic_segments::<3>("//"), Some(["", "", ""]));
        assert_eq!(topic_segments::<1>(""), Some([""]));
    }

    #[test]
    fn exact_int_accepts_numbers_and_strings_and_refuses_overflow() {
        assert_eq!(exact_int(&json!(312015), "f"), Ok(312015));
        assert_eq!(exact_int(&json!(" -7 "), "f"), Ok(-7));
        assert_eq!(exact_int(&json!(3.0), "f"), Ok(3));
        for bad in [
            json!(3.5),
            json!(1e300),
            json!(u64::MAX),
            json!("x"),
            json!(""),
        ] {
            assert!(
                matches!(
                    exact_int(&bad, "f"),
                    Err(DecodeError::BadValue { field: "f", .. })
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            exact_int(&json!([1]), "f"),
            Err(DecodeError::WrongType { field: "f", .. })
        ));
    }

    #[test]
    fn saturating_int_saturates_and_cuts_fractions() {
        assert_eq!(saturating_int(&json!(1e300), "f"), Ok(i64::MAX));
        assert_eq!(saturating_int(&json!(-1e300), "f"), Ok(i64::MIN));
        assert_eq!(saturating_int(&json!(u64::MAX), "f"), Ok(i64::MAX));
        assert_eq!(
            saturating_int(&json!("99999999999999999999999"), "f"),
            Ok(i64::MAX)
        );
        assert_eq!(saturating_int(&json!("42.9"), "f"), Ok(42));
        assert_eq!(saturating_int(&json!("-1"), "f"), Ok(-1));
        for bad in ["inf", "NaN", "abc", ""] {
            assert!(
                matches!(
                    saturating_int(&json!(bad), "f"),
                    Err(DecodeError::BadValue { .. })
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            saturating_int(&json!(null), "f"),
            Err(DecodeError::WrongType { .. })
        ));
    }

    #[test]
    fn tokens_are_bounded_and_typed() {
        let long = "x".repeat(MAX_TOKEN_BYTES + 1);
        assert!(matches!(
            token(&json!(long), "t"),
            Err(DecodeError::BadValue { field: "t", .. })
        ));
        assert!(matches!(
            token(&json!(1), "t"),
            Err(DecodeError::WrongType { field: "t", .. })
        ));
        assert_eq!(token(&json!("ok"), "t"), Ok("ok"));
    }

    #[test]
    fn null_is_absent() {
        let obj = json!({"a": null, "b": 1});
        let obj = obj.as_object().unwrap();
        assert_eq!(optional(obj, "a"), None);
        assert_eq!(required(obj, "a", "a"), Err(DecodeError::MissingField("a")));
        assert!(required(obj, "b", "b").is_ok());
    }

    #[test]
    fn versions_must_be_non_empty_strings() {
        let obj = json!({"v": " ", "n": 1, "ok": "1-0-0"});
        let obj = obj.as_object().unwrap();
        assert!(matches!(
            version(obj, "v", "v"),
            Err(DecodeError::BadValue { .. })
        ));
        assert!(matches!(
            version(obj, "n", "n"),
            Err(DecodeError::WrongType { .. })
        ));
        assert_eq!(version(obj, "ok", "ok").unwrap(), "1-0-0");
    }

    #[test]
    fn desc_is_cut_not_refused() {
        let obj = json!({"d": "é".repeat(MAX_DESC_CHARS + 5), "n": 5});
        let obj = obj.as_object().unwrap();
        assert_eq!(
            desc(obj, "d", "d").unwrap().unwrap().chars().count(),
            MAX_DESC_CHARS
        );
        assert!(matches!(
            desc(obj, "n", "n"),
            Err(DecodeError::WrongType { .. })
        ));
        assert_eq!(desc(obj, "missing", "m"), Ok(None));
    }

    #[test]
    fn msg_ids_keep_their_type() {
        assert_eq!(msg_id(&json!(7), "id"), Ok(MsgId::Num(7)));
        assert_eq!(msg_id(&json!("7"), "id"), Ok(MsgId::Str("7".into())));
        assert!(matches!(
            msg_id(&json!(1.5), "id"),
            Err(DecodeError::BadValue { .. })
        ));
        assert!(matches!(
            msg_id(&json!(u64::MAX), "id"),
            Err(DecodeError::BadValue { .. })
        ));
        assert!(matches!(
            msg_id(&json!({}), "id"),
            Err(DecodeError::WrongType { .. })
        ));
    }

    #[test]
    fn need_reply_forms() {
        assert!(is_one(Some(&json!(1))));
        assert!(is_one(Some(&json!("1"))));
        assert!(is_one(Some(&json!(true))));
        assert!(!is_one(Some(&json!(0))));
        assert!(!is_one(Some(&json!("yes"))));
        assert!(!is_one(None));
    }

    #[test]
    fn percent_clamps() {
        assert_eq!(clamp_percent(50), (50, false));
        assert_eq!(clamp_percent(0), (0, false));
        assert_eq!(clamp_percent(100), (100, false));
        assert_eq!(clamp_percent(101), (100, true));
        assert_eq!(clamp_percent(i64::MIN), (0, true));
    }
}
