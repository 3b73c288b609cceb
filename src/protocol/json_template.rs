//! JSON payload templates with `{{field}}` placeholders (`{"url": "{{url}}", "size":
//! {{size}}}`): parsed once, filled in for each notice, and checked by rendering with sample
//! values that would break JSON wherever a text placeholder stood outside quotes. Dialect files
//! (`user/`) use them for every payload; a built-in dialect may offer one as a notice setting
//! (AWS IoT Jobs' job document).
//!
//! Values are inserted as JSON: text fields are escaped as the content of a JSON string (so
//! `"{{description}}"` stays one valid string whatever the operator typed), numbers bare.

use crate::device_id::{DeviceId, DialectId, DialectIdent, IdShape};
use crate::i18n::tr;
use crate::protocol::{FirmwareOffer, KeySource, MsgId};

/// A `{{…}}` placeholder of a payload template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Field {
    Url,
    Size,
    Md5,
    Sha256,
    Checksum,
    Version,
    FileName,
    Module,
    TaskId,
    Description,
    Name,
    Key,
    Timestamp,
    MsgId,
    RequestId,
}

impl Field {
    const ALL: [(&'static str, Field); 15] = [
        ("url", Field::Url),
        ("size", Field::Size),
        ("md5", Field::Md5),
        ("sha256", Field::Sha256),
        ("checksum", Field::Checksum),
        ("version", Field::Version),
        ("file_name", Field::FileName),
        ("module", Field::Module),
        ("task_id", Field::TaskId),
        ("description", Field::Description),
        ("name", Field::Name),
        ("key", Field::Key),
        ("timestamp", Field::Timestamp),
        ("msg_id", Field::MsgId),
        ("request_id", Field::RequestId),
    ];

    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, f)| *f == self)
            .map_or("?", |(n, _)| n)
    }

    /// The fields only a notice offering firmware has (the offer and its task key): not
    /// usable in the "nothing pending" reply.
    pub fn is_offer(self) -> bool {
        matches!(
            self,
            Field::Url
                | Field::Size
                | Field::Md5
                | Field::Sha256
                | Field::Checksum
                | Field::Version
                | Field::FileName
                | Field::Description
                | Field::TaskId
        )
    }
}

/// A run of a payload template: literal text, or a placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Piece {
    Text(String),
    Field(Field),
}

/// A JSON payload with `{{field}}` placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PayloadTemplate {
    pieces: Vec<Piece>,
}

/// What fills a payload template.
pub(crate) struct Values<'a> {
    pub device: &'a DeviceId,
    pub offer: Option<&'a FirmwareOffer>,
    pub task: &'a str,
    pub timestamp_ms: i64,
    pub msg_id: i64,
    pub request_id: Option<&'a MsgId>,
}

impl PayloadTemplate {
    /// Parses `text`; a placeholder not in `allowed` is refused (naming it).
    pub fn parse(text: &str, allowed: &dyn Fn(Field) -> bool) -> Result<PayloadTemplate, String> {
        let mut pieces = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                pieces.push(Piece::Text(rest[..start].to_owned()));
            }
            let after = &rest[start + 2..];
            let end = after.find("}}").ok_or_else(|| {
                tr!(
                    "error.template.unclosed",
                    text = format!("{:?}", short(&rest[start..]))
                )
            })?;
            let name = after[..end].trim();
            let field = Field::ALL
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, f)| *f)
                .ok_or_else(|| {
                    let known: Vec<&str> = Field::ALL.iter().map(|(n, _)| *n).collect();
                    tr!(
                        "error.template.unknown_placeholder",
                        name = name,
                        known = known.join(", ")
                    )
                })?;
            if !allowed(field) {
                return Err(tr!("error.template.not_here", name = name));
            }
            pieces.push(Piece::Field(field));
            rest = &after[end + 2..];
        }
        // A `}}` left in the text is JSON's business (nested objects close with it).
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_owned()));
        }
        Ok(PayloadTemplate { pieces })
    }

    /// The placeholders used, in order of appearance.
    pub fn fields(&self) -> impl Iterator<Item = Field> + '_ {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Field(f) => Some(*f),
            Piece::Text(_) => None,
        })
    }

    /// The template as written: text and placeholders in order (the simulated devices read
    /// notices by it, `layout.rs`).
    pub fn pieces(&self) -> &[Piece] {
        &self.pieces
    }

    pub fn uses(&self, field: Field) -> bool {
        self.fields().any(|f| f == field)
    }

    /// The payload for `values` (a JSON text if the template passed the load-time check).
    pub fn render(&self, v: &Values<'_>) -> String {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Field(f) => out.push_str(&value_of(*f, v)),
            }
        }
        out
    }
}

/// The JSON text one placeholder becomes: escaped string content for text, bare numbers, and
/// the request id as sent (a number, or a string with its quotes).
fn value_of(field: Field, v: &Values<'_>) -> String {
    let offer = |pick: fn(&FirmwareOffer) -> &str| v.offer.map(pick).unwrap_or_default();
    let text = match field {
        Field::Size => return v.offer.map_or(0, |o| o.size).to_string(),
        Field::Timestamp => return v.timestamp_ms.to_string(),
        Field::MsgId => return v.msg_id.to_string(),
        Field::RequestId => {
            return match v.request_id {
                Some(MsgId::Num(n)) => n.to_string(),
                Some(MsgId::Str(s)) => json_string(s),
                None => "null".to_owned(),
            };
        }
        Field::Url => offer(|o| &o.url),
        Field::Md5 => offer(|o| &o.md5),
        Field::Sha256 => offer(|o| &o.sha256),
        Field::Checksum => offer(|o| &o.checksum),
        Field::Version => offer(|o| &o.version),
        Field::FileName => offer(|o| &o.file_name),
        Field::Description => offer(|o| &o.description),
        Field::Module => v.device.module().unwrap_or_default(),
        Field::TaskId => v.task,
        Field::Name => v.device.name(),
        Field::Key => v.device.product_key().unwrap_or_default(),
    };
    let quoted = json_string(text);
    // Strip the quotes serde_json added: the template supplies its own.
    quoted
        .get(1..quoted.len().saturating_sub(1))
        .unwrap_or_default()
        .to_owned()
}

fn json_string(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

fn short(s: &str) -> String {
    s.chars().take(40).collect()
}

pub(crate) struct SampleValues {
    device: DeviceId,
    offer: FirmwareOffer,
    task: &'static str,
    request_id: MsgId,
}

impl SampleValues {
    pub(crate) fn as_values(&self) -> Values<'_> {
        Values {
            device: &self.device,
            offer: Some(&self.offer),
            task: self.task,
            timestamp_ms: 1_700_000_000_000,
            msg_id: 42,
            request_id: Some(&self.request_id),
        }
    }
}

/// Two sets of values: awkward text (quotes, backslashes, a newline) with a module, a numeric
/// request id; and empty text without a module, a text request id.
pub(crate) fn sample_values(has_key: bool, task_key: KeySource) -> Vec<SampleValues> {
    // Devices of a stand-in identity with the file's id shape: templates only read the parts,
    // and the file's own identity is not made yet (its rank is decided at registration).
    static KEYED: DialectIdent = DialectIdent {
        rank: u16::MAX,
        prefix: "sample",
        label: "sample",
        shape: IdShape::KeyAndName {
            key: "key",
            name: "name",
        },
    };
    static NAMED: DialectIdent = DialectIdent {
        rank: u16::MAX,
        prefix: "sample",
        label: "sample",
        shape: IdShape::Name { name: "name" },
    };
    let id = DialectId::new(if has_key { &KEYED } else { &NAMED });
    // Quotes are valid in a device id segment, so they test the escaping of {{name}} too.
    let device = |key: &str, name: &str, module: Option<&str>| {
        DeviceId::new(id, has_key.then_some(key), name)
            .and_then(|d| d.with_module(module))
            .ok()
    };
    let task = match task_key {
        KeySource::None => "",
        KeySource::Counter => "7",
        KeySource::Uuid => "0f8fad5b-d9cb-469f-a165-70867728950e",
    };
    let awkward = FirmwareOffer {
        version: "1.2.3-\"rc\"\\".into(),
        url: "http://127.0.0.1/images/a \"b\".bin".into(),
        size: 1_048_576,
        md5: "0123456789abcdef0123456789abcdef".into(),
        sha256: "f0".repeat(32),
        checksum: "5a5b5c5d".into(),
        file_name: "fw \"1\".bin".into(),
        description: "line\nsay \"hi\" \\".into(),
    };
    let empty = FirmwareOffer {
        version: String::new(),
        url: String::new(),
        size: 0,
        md5: String::new(),
        sha256: String::new(),
        checksum: String::new(),
        file_name: String::new(),
        description: String::new(),
    };
    let mut out = Vec::new();
    if let Some(d) = device("lab\"1", "unit\"1", Some("mcu\"1")) {
        out.push(SampleValues {
            device: d,
            offer: awkward,
            task,
            request_id: MsgId::Num(42),
        });
    }
    if let Some(d) = device("k", "n", None) {
        out.push(SampleValues {
            device: d,
            offer: empty,
            task,
            request_id: MsgId::Str("req-\"1\"".into()),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_templates_escape_text_and_refuse_unknown_placeholders() {
        let t = PayloadTemplate::parse(
            r#"{"d":"{{description}}","n":{{size}},"r":{{request_id}}}"#,
            &|_| true,
        )
        .unwrap();
        let device: DeviceId = "aliyun:pk/dn".parse().unwrap();
        let offer = FirmwareOffer {
            version: "1".into(),
            url: "u".into(),
            size: 12,
            md5: String::new(),
            sha256: String::new(),
            checksum: String::new(),
            file_name: String::new(),
            description: "say \"hi\" \\ \n".into(),
        };
        let id = MsgId::Str("a\"b".into());
        let out = t.render(&Values {
            device: &device,
            offer: Some(&offer),
            task: "",
            timestamp_ms: 0,
            msg_id: 0,
            request_id: Some(&id),
        });
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["d"], "say \"hi\" \\ \n");
        assert_eq!(v["n"], 12);
        assert_eq!(v["r"], "a\"b");
        let err = PayloadTemplate::parse("{{colour}}", &|_| true).unwrap_err();
        assert!(err.contains("unknown placeholder {{colour}}"), "{err}");
        let err = PayloadTemplate::parse("{{url", &|_| true).unwrap_err();
        assert!(err.contains("without"), "{err}");
        let err = PayloadTemplate::parse("{{url}}", &|f| !f.is_offer()).unwrap_err();
        assert!(err.contains("not available"), "{err}");
    }

    #[test]
    fn both_sample_value_sets_exist_for_both_id_shapes() {
        // An empty list would let every template through unchecked.
        for has_key in [true, false] {
            let sets = sample_values(has_key, KeySource::Uuid);
            assert_eq!(sets.len(), 2, "has_key {has_key}");
            assert_eq!(sets[0].device.product_key().is_some(), has_key);
            assert_eq!(sets[0].device.module(), Some("mcu\"1"));
        }
    }
}
