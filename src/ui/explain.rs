//! Error codes in raw device messages and stored failures, explained for the inspector, the
//! device table and the history. The codes and their meaning are each dialect's own
//! [`ErrorTable`] (the same the rollout words its failures with), so the window and the rollout
//! never disagree and a new dialect is explained without code here. Pure; never decides
//! anything about a device.

use serde_json::Value;

use crate::device_id::DialectId;
use crate::i18n::tr;
use crate::protocol::{ErrorTable, registry};

/// JSON nesting we look into; device payloads are two or three levels deep.
const MAX_DEPTH: usize = 8;
/// Explanations listed per message; a payload full of codes is hostile or broken.
const MAX_EXPLANATIONS: usize = 8;

/// One line per failure code found in `payload` (JSON text), e.g.
/// `step -3: verification failed (digest or signature)`. Empty when none or not JSON.
///
/// `dialect` is the message's dialect when known (from its topic or device); without it every
/// dialect's table is asked, and a code only some of them know takes their explanations.
pub fn explain_payload(payload: &str, dialect: Option<DialectId>) -> Vec<String> {
    let Ok(value) = serde_json::from_str::<Value>(payload) else {
        return Vec::new();
    };
    let tables: Vec<Table> = match dialect {
        Some(id) => vec![(id, registry::get(id).errors())],
        None => registry::all()
            .into_iter()
            .map(|d| (d.id(), d.errors()))
            .collect(),
    };
    let mut out = Vec::new();
    walk(&tables, &value, 0, &mut out);
    out.truncate(MAX_EXPLANATIONS);
    out
}

/// The explanation of a failure code as the rollout stores it for a device of `dialect`;
/// `None` when the dialect's table does not know the code.
pub fn explain_code(dialect: DialectId, code: i64) -> Option<String> {
    line(&(dialect, registry::get(dialect).errors()), code)
}

/// A dialect's error table, with the dialect its words are looked up for.
type Table = (DialectId, &'static ErrorTable);

/// `label code: meaning` (the label is the JSON field, kept as the device sends it), in the
/// language in force; `None` when the table does not know the code.
fn line(&(id, table): &Table, code: i64) -> Option<String> {
    crate::terms::dialect::meaning(id, table, code)
        .map(|text| format!("{} {code}: {text}", table.label))
}

fn walk(tables: &[Table], value: &Value, depth: usize, out: &mut Vec<String>) {
    if depth > MAX_DEPTH || out.len() >= MAX_EXPLANATIONS {
        return;
    }
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                for line in explain_field(tables, key, v) {
                    if !out.contains(&line) {
                        out.push(line);
                    }
                }
                walk(tables, v, depth + 1, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| walk(tables, v, depth + 1, out)),
        _ => {}
    }
}

/// The explanations of one field by the tables that carry codes in `key`: those that know the
/// code, else one line saying no table documents it. Values that are not failures (progress,
/// success) say nothing.
fn explain_field(tables: &[Table], key: &str, value: &Value) -> Vec<String> {
    let Some(code) = value
        .as_i64()
        .or_else(|| value.as_str().and_then(|s| s.trim().parse().ok()))
    else {
        return Vec::new();
    };
    let mut relevant = tables
        .iter()
        .filter(|(_, t)| t.fields.contains(&key) && t.failures.contains(code))
        .peekable();
    if relevant.peek().is_none() {
        return Vec::new();
    }
    let known: Vec<String> = relevant.filter_map(|t| line(t, code)).collect();
    if known.is_empty() {
        vec![tr!("ui.explain.undocumented", key = key, code = code)]
    } else {
        known
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{aliyun, dji, fogcloud};

    #[test]
    fn alibaba_and_fogcloud_steps() {
        let ali = r#"{"id":"1","params":{"step":"-3","desc":"md5 mismatch","module":"MCU"}}"#;
        for dialect in [None, Some(aliyun::ID)] {
            assert_eq!(
                explain_payload(ali, dialect),
                ["step -3: verification failed (digest or signature)"]
            );
        }
        let fog = r#"{"method":"thing.up.ota","params":{"step":-1,"desc":"OTA升级失败,请求不到升级包信息。"}}"#;
        for dialect in [None, Some(fogcloud::ID)] {
            assert_eq!(explain_payload(fog, dialect), ["step -1: upgrade failed"]);
        }
        // A positive step is progress, not an error.
        assert!(explain_payload(r#"{"params":{"step":"45"}}"#, None).is_empty());
        // FogCloud devices report -1 only: with the dialect known, -3 is not theirs.
        assert_eq!(
            explain_payload(ali, Some(fogcloud::ID)),
            ["step -3: not a documented error code"]
        );
        // A DJI message's fields are result codes: a `step` there is not one.
        assert!(explain_payload(ali, Some(dji::ID)).is_empty());
    }

    #[test]
    fn dji_results() {
        let reply = r#"{"tid":"t","bid":"b","method":"ota_create","data":{"result":312015}}"#;
        for dialect in [None, Some(dji::ID)] {
            assert_eq!(
                explain_payload(reply, dialect),
                ["DJI 312015: the aircraft is in flight; upgrade after it lands"]
            );
        }
        assert!(explain_payload(r#"{"data":{"result":0}}"#, None).is_empty());
        assert_eq!(
            explain_payload(r#"{"data":{"result":7}}"#, None),
            ["result 7: not a documented error code"]
        );
        assert_eq!(
            explain_code(dji::ID, 312704).as_deref(),
            Some("DJI 312704: aircraft battery below 20%; charge it and retry")
        );
        assert_eq!(
            explain_code(aliyun::ID, -2).as_deref(),
            Some("step -2: download failed")
        );
        assert_eq!(explain_code(dji::ID, 5), None);
    }

    #[test]
    fn a_stored_code_is_explained_by_its_own_dialect() {
        // The same number means different things, or nothing, in different dialects.
        assert_eq!(explain_code(dji::ID, -2), None);
        assert_eq!(explain_code(fogcloud::ID, -2), None);
        assert_eq!(explain_code(aliyun::ID, 312015), None);
        assert_eq!(
            explain_code(fogcloud::ID, -1).as_deref(),
            Some("step -1: upgrade failed")
        );
    }

    #[test]
    fn every_dialects_codes_are_explained_with_its_table() {
        for d in registry::all() {
            let table = d.errors();
            for entry in table.codes {
                let line = explain_code(d.id(), entry.code).unwrap();
                assert!(line.ends_with(entry.text), "{line}");
                assert!(line.starts_with(table.label), "{line}");
                let field = table.fields.first().unwrap();
                let payload = format!(r#"{{"{field}":{}}}"#, entry.code);
                assert!(
                    explain_payload(&payload, Some(d.id())).contains(&line),
                    "{payload}"
                );
            }
        }
    }

    #[test]
    fn not_json_or_too_deep_is_quiet() {
        assert!(explain_payload("not json", None).is_empty());
        let deep = format!(
            "{}{}{}",
            r#"{"a":"#.repeat(20),
            r#"{"step":-2}"#,
            "}".repeat(20)
        );
        assert!(explain_payload(&deep, None).is_empty());
        let many: Vec<String> = (0..20)
            .map(|i| format!(r#"{{"result":{}}}"#, 312000 + i))
            .collect();
        assert_eq!(
            explain_payload(&format!("[{}]", many.join(",")), None).len(),
            MAX_EXPLANATIONS
        );
    }
}
