//! The topic templates a dialect file holds (`acme/{key}/{name}/ota`, each placeholder a whole
//! level), parsed once when the file is loaded. Its JSON payload templates are the shared
//! [`json_template`](crate::protocol::json_template) (re-exported here for the file's modules).

use crate::access::rules::Part;
use crate::device_id::DeviceId;
use crate::i18n::tr;
pub(super) use crate::protocol::json_template::{Field, PayloadTemplate, Piece, Values};

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
                "" => {
                    return Err(tr!(
                        "error.dialect_file.topic.empty_level",
                        topic = format!("{text:?}")
                    ));
                }
                _ if level.contains(['{', '}']) => {
                    return Err(tr!(
                        "error.dialect_file.topic.partial_placeholder",
                        level = format!("{level:?}")
                    ));
                }
                _ if level.contains(['+', '#', '\0']) => {
                    return Err(tr!(
                        "error.dialect_file.topic.wildcard",
                        level = format!("{level:?}")
                    ));
                }
                _ => Level::Lit(leak(level)),
            };
            levels.push(parsed);
        }
        match levels.first() {
            Some(Level::Lit(first)) if !first.starts_with('$') => {}
            _ => {
                return Err(tr!(
                    "error.dialect_file.topic.first_level",
                    topic = format!("{text:?}")
                ));
            }
        }
        if names != 1 {
            return Err(tr!(
                "error.dialect_file.topic.name_once",
                topic = format!("{text:?}")
            ));
        }
        match (has_key, keys) {
            (true, 1) | (false, 0) => {}
            (true, _) => {
                return Err(tr!(
                    "error.dialect_file.topic.key_once",
                    topic = format!("{text:?}")
                ));
            }
            (false, _) => {
                return Err(tr!(
                    "error.dialect_file.topic.no_key",
                    topic = format!("{text:?}")
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
}
