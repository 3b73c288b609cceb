//! `DeviceId`: the one canonical name of a device (and optionally one of its firmware modules)
//! used everywhere: UI, CLI, reports, database.
//!
//! Text forms: `{dialect}:{key}/{name}` or `{dialect}:{name}` as the dialect's [`IdShape`] says
//! (e.g. `aliyun:{productKey}/{deviceName}`, `dji:{sn}`), each optionally followed by
//! `#{module}`. Parsing the text needs the dialect registry (`crate::protocol::registry`, which
//! implements `FromStr` and `Deserialize`); this module depends on nothing.
//!
//! Every segment here ends up inside an MQTT topic we publish to, and arrives from the network,
//! so construction validates it: a name containing `/`, `+`, `#` or NUL could otherwise steer a
//! publish onto someone else's topic.

use std::fmt;
use std::sync::Arc;

use serde::{Serialize, Serializer};

/// Longest segment we accept, in bytes. Real product keys, device names and serial numbers are
/// far shorter; the limit bounds what a hostile message can make us store and echo.
pub const MAX_SEGMENT_BYTES: usize = 128;

/// Which dialect a device speaks: a cheap `Copy` handle on the dialect's identity. The dialects
/// themselves (codec, capabilities) live in `crate::protocol` and are listed in its registry; this
/// module only knows their names and the shape of their device ids, so it depends on nothing.
///
/// Equality, order and hashing go by `rank` (the registry's order: built-ins first, in the order
/// the registry lists them; user dialects after), so sorting by dialect is stable and cheap.
#[derive(Clone, Copy)]
pub struct DialectId(&'static DialectIdent);

/// The identity of one dialect: what its device ids look like.
#[derive(Debug)]
pub struct DialectIdent {
    /// Position in the registry; unique.
    pub rank: u16,
    /// The prefix of the canonical text form (`{prefix}:…`), lowercase.
    pub prefix: &'static str,
    /// A human name for UI labels.
    pub label: &'static str,
    pub shape: IdShape,
}

/// How a device id of a dialect is built, with the names its segments have in the dialect's own
/// documents (used in error messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdShape {
    /// `{prefix}:{name}` (e.g. a serial number).
    Name { name: &'static str },
    /// `{prefix}:{key}/{name}` (e.g. product key and device name).
    KeyAndName {
        key: &'static str,
        name: &'static str,
    },
}

impl DialectId {
    /// The handle of a dialect identity (the registry makes one per dialect).
    pub const fn new(ident: &'static DialectIdent) -> Self {
        DialectId(ident)
    }

    /// The prefix used in the canonical text form.
    pub fn as_str(self) -> &'static str {
        self.0.prefix
    }

    /// A human name for UI labels.
    pub fn label(self) -> &'static str {
        self.0.label
    }

    pub fn rank(self) -> u16 {
        self.0.rank
    }

    pub fn shape(self) -> IdShape {
        self.0.shape
    }
}

impl PartialEq for DialectId {
    fn eq(&self, other: &Self) -> bool {
        self.0.rank == other.0.rank
    }
}

impl Eq for DialectId {}

impl PartialOrd for DialectId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for DialectId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.rank.cmp(&other.0.rank)
    }
}

impl std::hash::Hash for DialectId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.rank.hash(state);
    }
}

impl fmt::Debug for DialectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.prefix)
    }
}

impl fmt::Display for DialectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for DialectId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// Why a device id or one of its segments was refused. Its words (`Display`) are in
/// `terms::ids`: this module is a leaf and speaks through no other. `what` and `expected` name
/// an id's segments (`product key`, `device name`) and stay as they are in every language.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceIdError {
    Empty {
        what: &'static str,
    },
    TooLong {
        what: &'static str,
        len: usize,
    },
    ForbiddenChar {
        what: &'static str,
        found: char,
    },
    UnknownDialect {
        name: String,
        known: String,
    },
    Shape {
        dialect: &'static str,
        expected: &'static str,
    },
    Malformed(String),
}

impl std::error::Error for DeviceIdError {}

/// A validated topic segment: non-empty, at most [`MAX_SEGMENT_BYTES`], free of `/ + #` and NUL.
/// Shared, not copied, when an id is cloned: snapshots, campaign lines and selections hold the
/// ids of up to 100,000 devices each.
#[derive(Debug, Clone)]
pub struct Segment(Arc<str>);

// Two clones of one id compare by pointer, without reading the text: walking a fleet's rows
// beside a campaign's devices (ids cloned from the same records) touches no string.
impl PartialEq for Segment {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0 == other.0
    }
}

impl Eq for Segment {}

// By text, as equality goes (two equal segments may be two allocations).
impl std::hash::Hash for Segment {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl PartialOrd for Segment {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Segment {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        if Arc::ptr_eq(&self.0, &other.0) {
            return std::cmp::Ordering::Equal;
        }
        self.0.cmp(&other.0)
    }
}

impl Segment {
    /// Validates `value` as the segment called `what` (used in the error message).
    pub fn new(what: &'static str, value: &str) -> Result<Self, DeviceIdError> {
        if value.is_empty() {
            return Err(DeviceIdError::Empty { what });
        }
        if value.len() > MAX_SEGMENT_BYTES {
            return Err(DeviceIdError::TooLong {
                what,
                len: value.len(),
            });
        }
        if let Some(found) = value
            .chars()
            .find(|&c| matches!(c, '/' | '+' | '#' | '\0') || c.is_control() || is_invisible(c))
        {
            return Err(DeviceIdError::ForbiddenChar { what, found });
        }
        Ok(Segment(Arc::from(value)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Bidirectional overrides, zero-width and other invisible format characters: a device named
/// with them could render as another device's name in the window and in reports.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{061C}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}'
            | '\u{FEFF}'
    )
}

impl fmt::Display for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A device, or one firmware module of a device.
///
/// `product_key` is the first segment of a [`IdShape::KeyAndName`] id (`None` for
/// [`IdShape::Name`]); `name` the device's own name or serial number.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceId {
    dialect: DialectId,
    product_key: Option<Segment>,
    name: Segment,
    module: Option<Segment>,
}

impl DeviceId {
    /// A device of `dialect`; `key` must be given exactly when the dialect's ids have one.
    pub fn new(dialect: DialectId, key: Option<&str>, name: &str) -> Result<Self, DeviceIdError> {
        let (product_key, name) = match (dialect.shape(), key) {
            (
                IdShape::KeyAndName {
                    key: what,
                    name: name_what,
                },
                Some(key),
            ) => (
                Some(Segment::new(what, key)?),
                Segment::new(name_what, name)?,
            ),
            (IdShape::Name { name: what }, None) => (None, Segment::new(what, name)?),
            (IdShape::KeyAndName { .. }, None) => {
                return Err(DeviceIdError::Shape {
                    dialect: dialect.as_str(),
                    expected: "a key and a name",
                });
            }
            (IdShape::Name { .. }, Some(_)) => {
                return Err(DeviceIdError::Shape {
                    dialect: dialect.as_str(),
                    expected: "a name without a key",
                });
            }
        };
        Ok(Self {
            dialect,
            product_key,
            name,
            module: None,
        })
    }

    /// Parses the part after `{prefix}:` of a device id of `dialect` (with an optional
    /// `#module`). The registry finds the dialect from the prefix (`crate::protocol::registry`).
    pub fn parse_after_prefix(dialect: DialectId, text: &str) -> Result<Self, DeviceIdError> {
        let malformed = || {
            DeviceIdError::Malformed(format!(
                "{dialect}:{}",
                text.chars().take(300).collect::<String>()
            ))
        };
        let (rest, module) = match text.split_once('#') {
            Some((r, m)) => (r, Some(m)),
            None => (text, None),
        };
        if module == Some("") {
            return Err(DeviceIdError::Empty { what: "module" });
        }
        let id = match dialect.shape() {
            IdShape::KeyAndName { .. } => {
                let (key, name) = rest.split_once('/').ok_or_else(malformed)?;
                DeviceId::new(dialect, Some(key), name)?
            }
            IdShape::Name { .. } => DeviceId::new(dialect, None, rest)?,
        };
        match module {
            // `#default` would not round-trip, so it is spelled by leaving the module out.
            Some(m) if is_default_module(m) => Err(malformed()),
            m => id.with_module(m),
        }
    }

    /// The same device with `module` named (`None` or `"default"` clear it: the default
    /// module is the device's own firmware).
    pub fn with_module(mut self, module: Option<&str>) -> Result<Self, DeviceIdError> {
        self.module = match module {
            None => None,
            Some(m) if is_default_module(m) => None,
            Some(m) => Some(Segment::new("module", m)?),
        };
        Ok(self)
    }

    /// The device itself, without a module.
    pub fn device(&self) -> DeviceId {
        DeviceId {
            module: None,
            ..self.clone()
        }
    }

    pub fn dialect(&self) -> DialectId {
        self.dialect
    }

    /// The key segment of a key-and-name id; `None` for name-only ids.
    pub fn product_key(&self) -> Option<&str> {
        self.product_key.as_ref().map(Segment::as_str)
    }

    /// The device's name or serial number.
    pub fn name(&self) -> &str {
        self.name.as_str()
    }

    /// The firmware module, `None` for the default module.
    pub fn module(&self) -> Option<&str> {
        self.module.as_ref().map(Segment::as_str)
    }
}

/// Alibaba leaves `module` out for the default module; FogCloud writes `"default"`.
pub fn is_default_module(module: &str) -> bool {
    module.is_empty() || module == "default"
}

impl DeviceId {
    /// Appends the canonical form (as `Display` writes it) to `out`, without the formatting
    /// machinery: the device filter writes every id of a 100,000-device fleet per change.
    pub fn push_to(&self, out: &mut String) {
        out.push_str(self.dialect.as_str());
        out.push(':');
        if let Some(pk) = &self.product_key {
            out.push_str(pk.as_str());
            out.push('/');
        }
        out.push_str(self.name.as_str());
        if let Some(m) = &self.module {
            out.push('#');
            out.push_str(m.as_str());
        }
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.dialect)?;
        if let Some(pk) = &self.product_key {
            write!(f, "{pk}/")?;
        }
        write!(f, "{}", self.name)?;
        if let Some(m) = &self.module {
            write!(f, "#{m}")?;
        }
        Ok(())
    }
}

impl Serialize for DeviceId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}
