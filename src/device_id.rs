//! `DeviceId`: the one canonical name of a device (and optionally one of its firmware modules)
//! used everywhere: UI, CLI, reports, database.
//!
//! Text forms: `aliyun:{productKey}/{deviceName}`, `fogcloud:{productKey}/{deviceName}`,
//! `dji:{sn}`, each optionally followed by `#{module}`.
//!
//! Every segment here ends up inside an MQTT topic we publish to, and arrives from the network,
//! so construction validates it: a name containing `/`, `+`, `#` or NUL could otherwise steer a
//! publish onto someone else's topic.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest segment we accept, in bytes. Real product keys, device names and serial numbers are
/// far shorter; the limit bounds what a hostile message can make us store and echo.
pub const MAX_SEGMENT_BYTES: usize = 128;

/// The three device dialects the console speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    /// Alibaba Cloud IoT OTA topics.
    Aliyun,
    /// MXCHIP FogCloud `thing/up|down/ota` methods.
    #[serde(rename = "fogcloud")]
    FogCloud,
    /// DJI Cloud API docks and drones.
    Dji,
}

impl Dialect {
    pub const ALL: [Dialect; 3] = [Dialect::Aliyun, Dialect::FogCloud, Dialect::Dji];

    /// The prefix used in the canonical text form.
    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::Aliyun => "aliyun",
            Dialect::FogCloud => "fogcloud",
            Dialect::Dji => "dji",
        }
    }

    /// A human name for UI labels.
    pub fn label(self) -> &'static str {
        match self {
            Dialect::Aliyun => "Alibaba Cloud IoT",
            Dialect::FogCloud => "MXCHIP FogCloud",
            Dialect::Dji => "DJI Cloud API",
        }
    }
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Dialect {
    type Err = DeviceIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "aliyun" => Ok(Dialect::Aliyun),
            "fogcloud" => Ok(Dialect::FogCloud),
            "dji" => Ok(Dialect::Dji),
            _ => Err(DeviceIdError::UnknownDialect(s.chars().take(32).collect())),
        }
    }
}

/// Why a device id or one of its segments was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceIdError {
    #[error("{what} is empty")]
    Empty { what: &'static str },
    #[error("{what} is {len} bytes long; at most {MAX_SEGMENT_BYTES} are allowed")]
    TooLong { what: &'static str, len: usize },
    #[error("{what} contains {found:?}, which is not allowed in an MQTT topic segment")]
    ForbiddenChar { what: &'static str, found: char },
    #[error("unknown dialect {0:?} (expected aliyun, fogcloud or dji)")]
    UnknownDialect(String),
    #[error("device id {0:?} is not of the form dialect:name (e.g. aliyun:pk/dn, dji:SN)")]
    Malformed(String),
}

/// A validated topic segment: non-empty, at most [`MAX_SEGMENT_BYTES`], free of `/ + #` and NUL.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Segment(String);

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
        Ok(Segment(value.to_owned()))
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
/// For DJI `product_key` is `None` and `name` is the serial number.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceId {
    dialect: Dialect,
    product_key: Option<Segment>,
    name: Segment,
    module: Option<Segment>,
}

impl DeviceId {
    pub fn aliyun(product_key: &str, device_name: &str) -> Result<Self, DeviceIdError> {
        Ok(Self {
            dialect: Dialect::Aliyun,
            product_key: Some(Segment::new("productKey", product_key)?),
            name: Segment::new("deviceName", device_name)?,
            module: None,
        })
    }

    pub fn fogcloud(product_key: &str, device_name: &str) -> Result<Self, DeviceIdError> {
        Ok(Self {
            dialect: Dialect::FogCloud,
            product_key: Some(Segment::new("product_key", product_key)?),
            name: Segment::new("device_name", device_name)?,
            module: None,
        })
    }

    pub fn dji(sn: &str) -> Result<Self, DeviceIdError> {
        Ok(Self {
            dialect: Dialect::Dji,
            product_key: None,
            name: Segment::new("sn", sn)?,
            module: None,
        })
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

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Alibaba/FogCloud product key; `None` for DJI.
    pub fn product_key(&self) -> Option<&str> {
        self.product_key.as_ref().map(Segment::as_str)
    }

    /// Device name (Alibaba, FogCloud) or serial number (DJI).
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

impl FromStr for DeviceId {
    type Err = DeviceIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let malformed = || DeviceIdError::Malformed(s.chars().take(300).collect());
        let (dialect, rest) = s.split_once(':').ok_or_else(malformed)?;
        let dialect: Dialect = dialect.parse()?;
        let (rest, module) = match rest.split_once('#') {
            Some((r, m)) => (r, Some(m)),
            None => (rest, None),
        };
        if module == Some("") {
            return Err(DeviceIdError::Empty { what: "module" });
        }
        let id = match dialect {
            Dialect::Aliyun | Dialect::FogCloud => {
                let (pk, dn) = rest.split_once('/').ok_or_else(malformed)?;
                if dialect == Dialect::Aliyun {
                    DeviceId::aliyun(pk, dn)?
                } else {
                    DeviceId::fogcloud(pk, dn)?
                }
            }
            Dialect::Dji => DeviceId::dji(rest)?,
        };
        match module {
            // `#default` would not round-trip, so it is spelled by leaving the module out.
            Some(m) if is_default_module(m) => Err(malformed()),
            m => id.with_module(m),
        }
    }
}

impl Serialize for DeviceId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DeviceId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_forms_round_trip() {
        for text in [
            "aliyun:a1B2c3/dev-01",
            "fogcloud:12097812/00000001",
            "dji:4TADKAQ000002J",
            "aliyun:pk/dn#MCU",
            "dji:1581F5BK#camera",
            "fogcloud:pk/设备一号",
        ] {
            let id: DeviceId = text.parse().unwrap();
            assert_eq!(id.to_string(), text);
            let json = serde_json::to_string(&id).unwrap();
            assert_eq!(serde_json::from_str::<DeviceId>(&json).unwrap(), id);
        }
    }

    #[test]
    fn parts_are_exposed() {
        let id: DeviceId = "aliyun:pk/dn#MCU".parse().unwrap();
        assert_eq!(id.dialect(), Dialect::Aliyun);
        assert_eq!(id.product_key(), Some("pk"));
        assert_eq!(id.name(), "dn");
        assert_eq!(id.module(), Some("MCU"));
        assert_eq!(id.device().to_string(), "aliyun:pk/dn");
        let dji = DeviceId::dji("SN1").unwrap();
        assert_eq!(dji.product_key(), None);
    }

    #[test]
    fn default_module_is_no_module() {
        let id = DeviceId::dji("SN")
            .unwrap()
            .with_module(Some("default"))
            .unwrap();
        assert_eq!(id.module(), None);
        assert!("dji:SN#default".parse::<DeviceId>().is_err());
    }

    #[test]
    fn hostile_segments_are_rejected() {
        let long = "x".repeat(MAX_SEGMENT_BYTES + 1);
        for (pk, dn) in [
            ("", "dn"),
            ("pk", ""),
            ("p+k", "dn"),
            ("pk", "d#n"),
            ("pk", "a/b"),
            ("pk", "nul\0"),
            (long.as_str(), "dn"),
        ] {
            assert!(DeviceId::aliyun(pk, dn).is_err(), "{pk:?}/{dn:?}");
            assert!(DeviceId::fogcloud(pk, dn).is_err(), "{pk:?}/{dn:?}");
        }
        assert!(DeviceId::dji(&"x".repeat(MAX_SEGMENT_BYTES)).is_ok());
        assert!(DeviceId::dji("a/b").is_err());
        let err = DeviceId::dji("+").unwrap_err();
        assert!(err.to_string().contains("not allowed"), "{err}");
    }

    #[test]
    fn names_that_could_pose_as_another_device_are_rejected() {
        // "pump-7" shown right-to-left, or with a zero-width space, looks like another device.
        for dn in [
            "pump\u{202E}7-",
            "pump\u{200B}-7",
            "\u{2067}pump-7",
            "\u{FEFF}pump-7",
        ] {
            let err = DeviceId::aliyun("pk", dn).unwrap_err();
            assert!(matches!(err, DeviceIdError::ForbiddenChar { .. }), "{dn:?}");
        }
        // Non-ASCII letters are fine: device names in Chinese exist.
        assert!(DeviceId::aliyun("pk", "水泵-7").is_ok());
        assert!(DeviceId::aliyun("pk", "pump_7@lab.a:b").is_ok());
    }

    #[test]
    fn malformed_texts_are_rejected() {
        for text in [
            "",
            "aliyun",
            "aliyun:pk",
            "aliyun:pk/dn/x",
            "mqtt:pk/dn",
            "dji:",
            "dji:sn#",
            "dji:a/b",
            "fogcloud:pk/dn#m/x",
        ] {
            assert!(text.parse::<DeviceId>().is_err(), "{text:?}");
        }
    }
}
