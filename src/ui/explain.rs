//! Error codes in raw device messages, explained for the inspector: Alibaba / FogCloud upgrade
//! steps -1..-4 and DJI 312xxx result codes, using the protocol modules' own tables so the
//! inspector and the rollout never disagree. Pure; never decides anything about a device.

use serde_json::Value;

use crate::protocol::{aliyun, dji};

/// JSON nesting we look into; device payloads are two or three levels deep.
const MAX_DEPTH: usize = 8;
/// Explanations listed per message; a payload full of codes is hostile or broken.
const MAX_EXPLANATIONS: usize = 8;

/// One line per error code found in `payload` (JSON text), e.g.
/// `step -3: verification failed (digest or signature)`. Empty when none or not JSON.
pub fn explain_payload(payload: &str) -> Vec<String> {
    let Ok(value) = serde_json::from_str::<Value>(payload) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    walk(&value, 0, &mut out);
    out.truncate(MAX_EXPLANATIONS);
    out
}

/// The explanation of a device-side code as the rollout stores it (step or DJI result).
pub fn explain_code(code: i64) -> Option<String> {
    if let Some(text) = aliyun::describe_step(code) {
        return Some(format!("step {code}: {text}"));
    }
    dji::error_meaning(code).map(|text| format!("DJI {code}: {text}"))
}

fn walk(value: &Value, depth: usize, out: &mut Vec<String>) {
    if depth > MAX_DEPTH || out.len() >= MAX_EXPLANATIONS {
        return;
    }
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                if let Some(line) = explain_field(key, v) {
                    if !out.contains(&line) {
                        out.push(line);
                    }
                }
                walk(v, depth + 1, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| walk(v, depth + 1, out)),
        _ => {}
    }
}

fn explain_field(key: &str, value: &Value) -> Option<String> {
    let code = value
        .as_i64()
        .or_else(|| value.as_str().and_then(|s| s.trim().parse().ok()))?;
    match key {
        "step" => aliyun::describe_step(code).map(|t| format!("step {code}: {t}")),
        "result" | "code" if code != 0 => Some(match dji::error_meaning(code) {
            Some(t) => format!("DJI {code}: {t}"),
            None => format!("{key} {code}: not a documented error code"),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alibaba_and_fogcloud_steps() {
        let ali = r#"{"id":"1","params":{"step":"-3","desc":"md5 mismatch","module":"MCU"}}"#;
        assert_eq!(
            explain_payload(ali),
            ["step -3: verification failed (digest or signature)"]
        );
        let fog = r#"{"method":"thing.up.ota","params":{"step":-1,"desc":"OTA升级失败,请求不到升级包信息。"}}"#;
        assert_eq!(explain_payload(fog), ["step -1: upgrade failed"]);
        // A positive step is progress, not an error.
        assert!(explain_payload(r#"{"params":{"step":"45"}}"#).is_empty());
    }

    #[test]
    fn dji_results() {
        let reply = r#"{"tid":"t","bid":"b","method":"ota_create","data":{"result":312015}}"#;
        assert_eq!(
            explain_payload(reply),
            ["DJI 312015: the aircraft is in flight; upgrade after it lands"]
        );
        assert!(explain_payload(r#"{"data":{"result":0}}"#).is_empty());
        assert_eq!(
            explain_payload(r#"{"data":{"result":7}}"#),
            ["result 7: not a documented error code"]
        );
        assert_eq!(
            explain_code(312704).as_deref(),
            Some("DJI 312704: aircraft battery below 20%; charge it and retry")
        );
        assert_eq!(
            explain_code(-2).as_deref(),
            Some("step -2: download failed")
        );
        assert_eq!(explain_code(5), None);
    }

    #[test]
    fn not_json_or_too_deep_is_quiet() {
        assert!(explain_payload("not json").is_empty());
        let deep = format!(
            "{}{}{}",
            r#"{"a":"#.repeat(20),
            r#"{"step":-2}"#,
            "}".repeat(20)
        );
        assert!(explain_payload(&deep).is_empty());
        let many: Vec<String> = (0..20)
            .map(|i| format!(r#"{{"result":{}}}"#, 312000 + i))
            .collect();
        assert_eq!(
            explain_payload(&format!("[{}]", many.join(","))).len(),
            MAX_EXPLANATIONS
        );
    }
}
