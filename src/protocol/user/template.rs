//! The two kinds of template a dialect file holds: topic templates (`acme/{key}/{name}/ota`,
//! each placeholder a whole level) and JSON payload templates (`{"url": "{{url}}", "size":
//! {{size}}}`), parsed once when the file is loaded and filled in for each notice.
//!
//! Payload values are inserted as JSON: text fields are escaped as the content of a JSON string
//! (so `"{{description}}"` stays one valid string whatever the operator typed), numbers bare.
//! Whether a template makes valid JSON is checked at load by rendering it with sample values
//! (see `spec.rs`), not here.

use crate::access::rules::Part;
use crate::device_id::DeviceId;
use crate::protocol::{FirmwareOffer, MsgId};

/// One level of a topic template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Level {
    Lit(&'static str),
    Key,
    Name,
}

/// A topic with `{key}` and `{name}` levels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct TopicTemplate {
    pub text: &'static str,
    levels: Vec<Level>,
    /// The same levels as the broker's rules take them.
    pub parts: &'static [Part],
}

impl TopicTemplate {
    /// Parses `text`; `has_key` says whether the dialect's device ids have a key (then `{key}`
    /// must appear, else it must not).
    pub fn parse(text: &str, has_key: bool) -> Result<TopicTemplate, String> {
        let mut levels = Vec::new();
        let (mut keys, mut names) = (0, 0);
        for level in text.split('/') {
            let parsed = match level {
                "{key}" => {
                    keys += 1;
                    Level::Key
                }
                "{name}" => {
                    names += 1;
                    Level::Name
                }
                "" => return Err(format!("topic {text:?} has an empty level")),
                _ if level.contains(['{', '}']) => {
                    return Err(format!(
                        "level {level:?}: a placeholder must be a whole level, {{key}} or {{name}}"
                    ));
                }
                _ if level.contains(['+', '#', '\0']) => {
                    return Err(format!(
                        "level {level:?}: wildcards are derived from the placeholders, not written"
                    ));
                }
                _ => Level::Lit(leak(level)),
            };
            levels.push(parsed);
        }
        match levels.first() {
            Some(Level::Lit(first)) if !first.starts_with('$') => {}
            _ => {
                return Err(format!(
                    "topic {text:?} must start with a literal level (not a placeholder, not `$…`)"
                ));
            }
        }
        if names != 1 {
            return Err(format!("topic {text:?} needs {{name}} exactly once"));
        }
        match (has_key, keys) {
            (true, 1) | (false, 0) => {}
            (true, _) => return Err(format!("topic {text:?} needs {{key}} exactly once")),
            (false, _) => {
                return Err(format!(
                    "topic {text:?} has {{key}}, but the device has no key (set device.key)"
                ));
            }
        }
        let parts: Vec<Part> = levels
            .iter()
            .map(|l| match *l {
                Level::Lit(s) => Part::Lit(s),
                Level::Key => Part::Key,
                Level::Name => Part::Name,
            })
            .collect();
        Ok(TopicTemplate {
            text: leak(text),
            levels,
            parts: Box::leak(parts.into_boxed_slice()),
        })
    }

    /// The key and name `topic` carries, if it has this template's shape (the levels are not
    /// validated here: `DeviceId::new` does).
    pub fn bind<'t>(&self, topic: &'t str) -> Option<(Option<&'t str>, &'t str)> {
        let mut key = None;
        let mut name = None;
        let mut given = topic.split('/');
        for level in &self.levels {
            let actual = given.next()?;
            match *level {
                Level::Lit(lit) if lit == actual => {}
                Level::Lit(_) => return None,
                Level::Key => key = Some(actual),
                Level::Name => name = Some(actual),
            }
        }
        if given.next().is_some() {
            return None;
        }
        Some((key, name?))
    }

    /// The topic of `device`.
    pub fn render(&self, device: &DeviceId) -> String {
        self.fill(device.product_key().unwrap_or_default(), device.name())
    }

    /// The subscription filter: `+` for every placeholder.
    pub fn filter(&self) -> String {
        self.fill("+", "+")
    }

    /// A topic of this shape, every placeholder `x` (to ask other dialects whether it is theirs).
    pub fn fill_probe(&self) -> String {
        self.fill("x", "x")
    }

    /// Whether some topic has both shapes.
    pub fn overlaps(&self, other: &TopicTemplate) -> bool {
        self.levels.len() == other.levels.len()
            && self
                .levels
                .iter()
                .zip(&other.levels)
                .all(|pair| match pair {
                    (Level::Lit(a), Level::Lit(b)) => a == b,
                    _ => true,
                })
    }

    fn fill(&self, key: &str, name: &str) -> String {
        let levels: Vec<&str> = self
            .levels
            .iter()
            .map(|l| match *l {
                Level::Lit(s) => s,
                Level::Key => key,
                Level::Name => name,
            })
            .collect();
        levels.join("/")
    }
}

/// A `{{…}}` placeholder of a payload template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Field {
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
pub(super) enum Piece {
    Text(String),
    Field(Field),
}

/// A JSON payload with `{{field}}` placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PayloadTemplate {
    pieces: Vec<Piece>,
}

/// What fills a payload template.
pub(super) struct Values<'a> {
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
            let end = after
                .find("}}")
                .ok_or_else(|| format!("`{{{{` without `}}}}` in {:?}", short(&rest[start..])))?;
            let name = after[..end].trim();
            let field = Field::ALL
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, f)| *f)
                .ok_or_else(|| {
                    let known: Vec<&str> = Field::ALL.iter().map(|(n, _)| *n).collect();
                    format!(
                        "unknown placeholder {{{{{name}}}}} (known: {})",
                        known.join(", ")
                    )
                })?;
            if !allowed(field) {
                return Err(format!("placeholder {{{{{name}}}}} is not available here"));
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

/// Dialect files are loaded a few times per run and their dialects live as long as the
/// process (the registry never drops one), so their text is given `'static` lifetime once.
pub(super) fn leak(s: &str) -> &'static str {
    Box::leak(s.to_owned().into_boxed_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_templates_bind_render_and_refuse_bad_shapes() {
        let t = TopicTemplate::parse("acme/{key}/{name}/ota", true).unwrap();
        assert_eq!(t.bind("acme/lab/u1/ota"), Some((Some("lab"), "u1")));
        assert_eq!(t.bind("acme/lab/u1/ota/x"), None);
        assert_eq!(t.bind("acme/lab/u1"), None);
        assert_eq!(t.bind("other/lab/u1/ota"), None);
        assert_eq!(t.filter(), "acme/+/+/ota");
        for (bad, has_key, why) in [
            ("acme/{name}/ota", true, "{key}"),
            ("acme/{key}/{name}", false, "no key"),
            ("acme/x{name}", false, "whole level"),
            ("acme/+/{name}", false, "wildcards"),
            ("{name}/ota", false, "literal"),
            ("$sys/{name}", false, "literal"),
            ("acme//{name}", false, "empty level"),
            ("acme/{name}/{name}", false, "exactly once"),
            ("acme/{serial}", false, "placeholder"),
        ] {
            let err = TopicTemplate::parse(bad, has_key).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

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
}
