//! The job document an execution carries: the console's own shape (`{"operation": "ota",
//! "version", "url", "size", "sha256", "md5", "fileName"}`, the codec's module doc) or, for
//! devices that expect their own, the operator's template, the dialect's `document` notice
//! setting. A template is a JSON object with `{{field}}` placeholders (the shared
//! [`json_template`](crate::protocol::json_template)), checked when it is given: unknown
//! placeholders, and text that would not be a JSON object once filled in, are refused then,
//! never when a thing asks for its job.

use serde_json::{Value, json};

use crate::protocol::json_template::{Field, PayloadTemplate, Values, sample_values};
use crate::protocol::{
    EncodeError, KeySource, NoticeSetting, SettingKind, TextSetting, UpgradeNotice,
};

/// The operator's job document template; empty = the console's own document.
pub const DOCUMENT: NoticeSetting = NoticeSetting {
    key: "document",
    label: "Job document template",
    help: "A JSON object sent as the AWS IoT job document instead of the console's own \
           {\"operation\":\"ota\",…}, for devices that expect their own shape. Placeholders: \
           {{url}} {{size}} {{sha256}} {{md5}} {{checksum}} {{version}} {{file_name}} \
           {{description}} {{task_id}} (the job id) {{name}} (the thing); text ones go inside \
           quotes. On the command line: a FILE holding the template.",
    cli_flag: "aws-job-document",
    legacy_key: None,
    kind: SettingKind::Text(TextSetting {
        validate,
        multiline: true,
    }),
    default: "",
};

/// Largest template accepted (a job document is at most 32 KiB at AWS).
const MAX_TEMPLATE_BYTES: usize = 32 * 1024;

fn allowed(field: Field) -> bool {
    matches!(
        field,
        Field::Url
            | Field::Size
            | Field::Md5
            | Field::Sha256
            | Field::Checksum
            | Field::Version
            | Field::FileName
            | Field::Description
            | Field::TaskId
            | Field::Name
    )
}

fn validate(text: &str) -> Result<(), String> {
    parse(text).map(|_| ())
}

/// Parses a template and renders it with sample values that would break JSON wherever a text
/// placeholder stood outside quotes, so that what it renders is always a JSON object.
pub fn parse(text: &str) -> Result<PayloadTemplate, String> {
    if text.len() > MAX_TEMPLATE_BYTES {
        return Err(format!(
            "the template has {} bytes, at most {MAX_TEMPLATE_BYTES} are sent as a job document",
            text.len()
        ));
    }
    let template = PayloadTemplate::parse(text, &allowed)?;
    for sample in sample_values(false, KeySource::Uuid) {
        let out = template.render(&sample.as_values());
        match serde_json::from_str::<Value>(&out) {
            Ok(Value::Object(_)) => {}
            Ok(_) => return Err("the job document must be a JSON object: { … }".to_owned()),
            Err(e) => {
                // Sample values hold no raw newline, so the rendered line is the template's.
                let shown: String = out
                    .lines()
                    .nth(e.line().saturating_sub(1))
                    .unwrap_or_default()
                    .trim()
                    .chars()
                    .take(120)
                    .collect();
                return Err(format!(
                    "line {}: not valid JSON once filled in ({e}): {shown} (text placeholders go inside quotes: \"{{{{version}}}}\")",
                    e.line()
                ));
            }
        }
    }
    Ok(template)
}

/// The job document of `notice`'s execution `job_id`: its campaign's template filled in, or
/// the console's own shape when the campaign gave none.
pub fn render(notice: &UpgradeNotice, job_id: &str) -> Result<Value, EncodeError> {
    let text = notice.settings.text_of(&DOCUMENT);
    if text.trim().is_empty() {
        let offer = &notice.offer;
        return Ok(json!({
            "operation": "ota",
            "version": offer.version,
            "url": offer.url,
            "size": offer.size,
            "sha256": offer.sha256,
            "md5": offer.md5,
            "fileName": offer.file_name,
        }));
    }
    let invalid = |e: String| EncodeError::Invalid(format!("the job document template: {e}"));
    let out = parse(text).map_err(invalid)?.render(&Values {
        device: &notice.device,
        offer: Some(&notice.offer),
        task: job_id,
        timestamp_ms: notice.address.timestamp_ms,
        msg_id: notice.address.msg_id,
        request_id: None,
    });
    serde_json::from_str(&out).map_err(|e| invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device_id::DeviceId;
    use crate::protocol::{FirmwareOffer, NoticeAddress, SettingValues, TaskRef};

    const JOB: &str = "5f2c8e4a-1b3d-4c6e-9a7f-0d2b4c6e8a10";

    fn notice(template: Option<&str>) -> UpgradeNotice {
        let mut settings = SettingValues::default();
        if let Some(t) = template {
            settings.0.insert(DOCUMENT.key.to_owned(), t.to_owned());
        }
        UpgradeNotice {
            device: DeviceId::aws("pump-7").unwrap(),
            offer: FirmwareOffer {
                version: "2.0.0".into(),
                url: "http://127.0.0.1:1/fw".into(),
                size: 10,
                md5: "m5".into(),
                sha256: "s256".into(),
                checksum: "c".into(),
                file_name: "fw.bin".into(),
                description: "say \"hi\"\nnow".into(),
            },
            address: NoticeAddress {
                timestamp_ms: 1_700_000_000_000,
                task: TaskRef::Key(JOB.into()),
                ..NoticeAddress::default()
            },
            settings,
        }
    }

    #[test]
    fn every_placeholder_is_filled_in_as_json() {
        let template = r#"{
  "ota": {"image": "{{url}}", "bytes": {{size}}, "digest": {"sha256": "{{sha256}}", "md5": "{{md5}}"},
          "crc": "{{checksum}}", "target": "{{version}}", "file": "{{file_name}}"},
  "note": "{{description}}", "job": "{{task_id}}", "thing": "{{name}}", "fixed": [1, true]
}"#;
        assert_eq!(validate(template), Ok(()));
        let doc = render(&notice(Some(template)), JOB).unwrap();
        assert_eq!(
            doc,
            json!({
                "ota": {"image": "http://127.0.0.1:1/fw", "bytes": 10,
                        "digest": {"sha256": "s256", "md5": "m5"},
                        "crc": "c", "target": "2.0.0", "file": "fw.bin"},
                "note": "say \"hi\"\nnow", "job": JOB, "thing": "pump-7", "fixed": [1, true]
            })
        );
    }

    #[test]
    fn no_template_is_the_consoles_own_document() {
        for template in [None, Some(""), Some("  \n")] {
            assert_eq!(
                render(&notice(template), JOB).unwrap(),
                json!({
                    "operation": "ota", "version": "2.0.0", "url": "http://127.0.0.1:1/fw",
                    "size": 10, "sha256": "s256", "md5": "m5", "fileName": "fw.bin"
                }),
                "{template:?}"
            );
        }
    }

    #[test]
    fn templates_that_cannot_make_a_json_object_are_refused_in_words() {
        for (bad, why) in [
            // A text placeholder outside quotes, on the second line.
            ("{\n \"v\": {{version}}\n}", "line 2: not valid JSON"),
            ("{\"u\": \"{{url}}\",}", "line 1: not valid JSON"),
            ("[\"{{url}}\"]", "must be a JSON object"),
            ("\"{{url}}\"", "must be a JSON object"),
            ("{\"c\": \"{{colour}}\"}", "unknown placeholder {{colour}}"),
            ("{\"k\": \"{{key}}\"}", "{{key}} is not available"),
            ("{\"m\": \"{{module}}\"}", "{{module}} is not available"),
            ("{\"u\": \"{{url\"}", "without"),
        ] {
            let err = validate(bad).unwrap_err();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
        let huge = format!("{{\"x\": \"{}\"}}", "a".repeat(MAX_TEMPLATE_BYTES));
        assert!(validate(&huge).unwrap_err().contains("at most"));
        // A stored template that no longer passes is not sent: the built-in document is.
        let doc = render(&notice(Some("{\"v\": {{version}}}")), JOB).unwrap();
        assert_eq!(doc["operation"], "ota");
    }
}
