//! A payload template read backwards, for the simulated devices of a dialect file: where each
//! `{{field}}` lands in the JSON the console sends (a JSON pointer, and the literal text around
//! it when it shares a string with other text) and which literal values make a message of this
//! kind, so a device can recognise a notice and take its values out of it.
//!
//! Owns: [`Layout`] (built once per template from its text: each placeholder replaced by a
//! marker and the result parsed) and reading a received message by it. It is the device's own
//! reading of the file, independent of how the console fills templates (`template.rs`'s
//! `render`) or decodes reports (`codec.rs`): a notice the console gets wrong fails here as it
//! would on a device. Pure; never panics on a received message.

use crate::i18n::tr;
use serde_json::Value;

use super::template::{Field, PayloadTemplate, Piece};

/// Numbers standing for bare placeholders (`{{size}}`, `{{timestamp}}`, …) while the layout
/// is found: far from any value a template writes as a literal.
const NUMBER_MARKER_BASE: u64 = 7_340_000_000_000_000;

/// One run of a string value holding placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Bit {
    Lit(String),
    Field(Field),
}

/// Where a field's value is in a message.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Spot {
    pointer: String,
    /// `None`: the whole value (a bare number, or a string that is just the field); else the
    /// string at `pointer`, made of these runs.
    text: Option<Vec<Bit>>,
}

/// How one kind of message the console sends is laid out.
#[derive(Debug, Clone)]
pub(super) struct Layout {
    spots: Vec<(Field, Spot)>,
    /// Values the template writes literally, by pointer: they tell this kind of message apart.
    literals: Vec<(String, Value)>,
}

/// The values a received message carries, by field.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Read {
    values: Vec<(Field, String)>,
}

impl Read {
    /// The field's value as text (a number as its digits); `None` if the layout does not place
    /// the field or the message does not have it.
    pub fn get(&self, field: Field) -> Option<&str> {
        self.values
            .iter()
            .find(|(f, _)| *f == field)
            .map(|(_, v)| v.as_str())
    }
}

impl Layout {
    /// The layout of `template`; `Err` says why it cannot be read backwards (it never happens
    /// for a template that passed the load-time checks).
    pub fn of(template: &PayloadTemplate) -> Result<Layout, String> {
        let fields: Vec<Field> = template.fields().collect();
        let number = |f: Field| {
            let index = fields.iter().position(|x| *x == f).unwrap_or_default();
            NUMBER_MARKER_BASE + index as u64
        };
        let mut text = String::new();
        let mut in_string = false;
        for piece in template.pieces() {
            match piece {
                Piece::Text(t) => {
                    let mut escaped = false;
                    for c in t.chars() {
                        if in_string && escaped {
                            escaped = false;
                        } else if in_string && c == '\\' {
                            escaped = true;
                        } else if c == '"' {
                            in_string = !in_string;
                        }
                    }
                    text.push_str(t);
                }
                Piece::Field(f) if in_string => text.push_str(&text_marker(*f)),
                Piece::Field(f) => text.push_str(&number(*f).to_string()),
            }
        }
        let parsed: Value =
            serde_json::from_str(&text).map_err(|e| tr!("error.template.not_json", why = e))?;
        let mut layout = Layout {
            spots: Vec::new(),
            literals: Vec::new(),
        };
        layout.walk(&parsed, String::new(), &fields, &number);
        Ok(layout)
    }

    fn walk(&mut self, v: &Value, at: String, fields: &[Field], number: &dyn Fn(Field) -> u64) {
        match v {
            Value::Object(map) if !map.is_empty() => {
                for (key, child) in map {
                    let key = key.replace('~', "~0").replace('/', "~1");
                    self.walk(child, format!("{at}/{key}"), fields, number);
                }
            }
            Value::Array(items) if !items.is_empty() => {
                for (i, child) in items.iter().enumerate() {
                    self.walk(child, format!("{at}/{i}"), fields, number);
                }
            }
            Value::Number(n) => match fields.iter().find(|f| n.as_u64() == Some(number(**f))) {
                Some(f) => self.place(*f, at, None),
                None => self.literals.push((at, v.clone())),
            },
            Value::String(s) => {
                let bits = split_markers(s, fields);
                let placed: Vec<Field> = bits
                    .iter()
                    .filter_map(|b| match b {
                        Bit::Field(f) => Some(*f),
                        Bit::Lit(_) => None,
                    })
                    .collect();
                match (placed.as_slice(), bits.len()) {
                    ([], _) => self.literals.push((at, v.clone())),
                    ([only], 1) => self.place(*only, at, None),
                    _ => {
                        for f in placed {
                            self.place(f, at.clone(), Some(bits.clone()));
                        }
                    }
                }
            }
            _ => self.literals.push((at, v.clone())),
        }
    }

    /// Records where `field` is; a field written twice is read where it first appears.
    fn place(&mut self, field: Field, pointer: String, text: Option<Vec<Bit>>) {
        if !self.spots.iter().any(|(f, _)| *f == field) {
            self.spots.push((field, Spot { pointer, text }));
        }
    }

    /// Whether the template places `field` somewhere a device can read it back.
    pub fn places(&self, field: Field) -> bool {
        self.spots.iter().any(|(f, _)| *f == field)
    }

    /// Whether `message` is of this kind: every literal of the template has its value.
    pub fn matches(&self, message: &Value) -> bool {
        self.literals
            .iter()
            .all(|(at, want)| message.pointer(at).is_some_and(|got| same(want, got)))
    }

    /// The values of every placed field that `message` has. A string that does not have the
    /// template's literal text around its fields gives none of them.
    pub fn read(&self, message: &Value) -> Read {
        let mut values = Vec::new();
        for (field, spot) in &self.spots {
            let Some(v) = message.pointer(&spot.pointer) else {
                continue;
            };
            let whole = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => continue,
            };
            match &spot.text {
                None => values.push((*field, whole)),
                Some(bits) => {
                    if let Some(found) = take_apart(bits, &whole)
                        .and_then(|parts| parts.into_iter().find(|(f, _)| f == field))
                    {
                        values.push(found);
                    }
                }
            }
        }
        Read { values }
    }
}

fn text_marker(f: Field) -> String {
    format!("@@ota-sim:{}@@", f.name())
}

/// `s` as runs of literal text and the placeholders whose markers it holds.
fn split_markers(s: &str, fields: &[Field]) -> Vec<Bit> {
    let mut bits = Vec::new();
    let mut rest = s;
    loop {
        let next = fields
            .iter()
            .filter_map(|f| rest.find(&text_marker(*f)).map(|at| (at, *f)))
            .min_by_key(|(at, _)| *at);
        let Some((at, f)) = next else { break };
        if at > 0 {
            bits.push(Bit::Lit(rest[..at].to_owned()));
        }
        bits.push(Bit::Field(f));
        rest = &rest[at + text_marker(f).len()..];
    }
    if !rest.is_empty() {
        bits.push(Bit::Lit(rest.to_owned()));
    }
    bits
}

/// The fields' values in `s`, written as `bits` say: each field runs up to the next literal
/// (the last literal closes the string). Two fields with nothing between them cannot be told
/// apart: the first takes all.
fn take_apart(bits: &[Bit], s: &str) -> Option<Vec<(Field, String)>> {
    let mut out = Vec::new();
    let mut rest = s;
    for (i, bit) in bits.iter().enumerate() {
        match bit {
            Bit::Lit(lit) => rest = rest.strip_prefix(lit.as_str())?,
            Bit::Field(f) => {
                let end = match bits.get(i + 1) {
                    Some(Bit::Lit(lit)) if i + 2 == bits.len() => rest.rfind(lit.as_str())?,
                    Some(Bit::Lit(lit)) => rest.find(lit.as_str())?,
                    Some(Bit::Field(_)) | None => rest.len(),
                };
                out.push((*f, rest[..end].to_owned()));
                rest = &rest[end..];
            }
        }
    }
    rest.is_empty().then_some(out)
}

/// Literal numbers match however they are written (`3`, `3.0`).
fn same(want: &Value, got: &Value) -> bool {
    match (want, got) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        _ => want == got,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn layout(text: &str) -> Layout {
        Layout::of(&PayloadTemplate::parse(text, &|_| true).unwrap()).unwrap()
    }

    #[test]
    fn fields_are_found_bare_whole_and_inside_text() {
        let l = layout(
            r#"{"cmd": "go", "n": 3, "img": {"href": "{{url}}", "len": {{size}},
                "tag": "v{{version}}-{{module}}.bin", "ok": true, "x/y": ["{{md5}}"]},
                "req": {{request_id}}, "esc": "a \"{{sha256}}\" b"}"#,
        );
        for f in [
            Field::Url,
            Field::Size,
            Field::Version,
            Field::Module,
            Field::Md5,
            Field::RequestId,
            Field::Sha256,
        ] {
            assert!(l.places(f), "{f:?}");
        }
        assert!(!l.places(Field::Checksum));
        let msg = json!({"cmd": "go", "n": 3.0, "img": {"href": "http://h/f", "len": 42,
            "tag": "v2.0+rc1-mcu.bin", "ok": true, "x/y": ["abc"]}, "req": "r-1",
            "esc": "a \"f0f0\" b"});
        assert!(l.matches(&msg));
        let read = l.read(&msg);
        assert_eq!(read.get(Field::Url), Some("http://h/f"));
        assert_eq!(read.get(Field::Size), Some("42"));
        assert_eq!(
            read.get(Field::Version),
            Some("2.0+rc1"),
            "up to the next literal"
        );
        assert_eq!(read.get(Field::Module), Some("mcu"));
        assert_eq!(read.get(Field::Md5), Some("abc"));
        assert_eq!(read.get(Field::RequestId), Some("r-1"));
        assert_eq!(read.get(Field::Sha256), Some("f0f0"));
        // A different literal: another kind of message.
        let other = json!({"cmd": "stop", "n": 3});
        assert!(!l.matches(&other));
        assert_eq!(l.read(&other).get(Field::Url), None);
        // Text that lacks the literal around the field gives no value.
        let mut bad = msg;
        bad["img"]["tag"] = json!("2.0");
        assert_eq!(l.read(&bad).get(Field::Version), None);
    }

    #[test]
    fn a_template_with_no_fields_is_all_literals() {
        let l = layout(r#"{ "type": "no-flash", "seq": {{request_id}} }"#);
        assert!(l.matches(&json!({"type": "no-flash", "seq": 9})));
        assert!(!l.matches(&json!({"type": "flash", "seq": 9})));
        assert!(!l.matches(&json!({"seq": 9})));
        assert_eq!(
            l.read(&json!({"type": "no-flash", "seq": 9}))
                .get(Field::RequestId),
            Some("9")
        );
    }
}
