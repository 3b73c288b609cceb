//! One device's record in the fleet registry. Kept small on purpose: no raw messages here.

use serde::Serialize;

use crate::device_id::{DeviceId, DialectId};
use crate::protocol::{Phase, ProgressReport, UpgradeStatus};

/// The last progress a device reported, as the device said it (the rollout keeps its own
/// per-campaign view).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastProgress {
    pub status: UpgradeStatus,
    pub phase: Phase,
    pub percent: Option<u8>,
    pub at_ms: i64,
}

impl LastProgress {
    pub fn from_report(p: &ProgressReport, now_ms: i64) -> Self {
        Self {
            status: p.status.clone(),
            phase: p.phase,
            percent: p.percent,
            at_ms: now_ms,
        }
    }
}

/// Everything known about one device.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceRecord {
    pub id: DeviceId,
    /// The gateway this device reports through (FogCloud gateway, DJI dock).
    pub gateway: Option<DeviceId>,
    /// Module → version; the default module is stored under `"default"`. A short vector, not a
    /// map: devices have one to three modules and this keeps a record small.
    pub versions: Vec<(String, String)>,
    pub online: bool,
    /// When the device was last heard (this run), or when an earlier run last heard it for a
    /// device only remembered from the inventory; 0 when never known.
    pub last_seen_ms: i64,
    /// Whether this console heard the device (or its gateway reported it) since it started.
    /// `false` for a device only remembered from the inventory: it may be long gone, so
    /// `rollout --all` and "select all" leave it out unless asked.
    pub heard_since_start: bool,
    #[serde(skip)]
    pub last_progress: Option<LastProgress>,
    /// Numeric properties the device's dialect reports ([`crate::protocol::Event::Attribute`],
    /// e.g. a DJI dock's `compatible_status`), latest value per name. A boxed slice, not a
    /// vector: most devices have none, and a record is kept per device.
    pub attributes: Box<[(&'static str, i64)]>,
}

/// The key under which the default module's version is stored and shown.
pub const DEFAULT_MODULE: &str = "default";

impl DeviceRecord {
    pub fn new(id: DeviceId, now_ms: i64) -> Self {
        Self {
            id,
            gateway: None,
            versions: Vec::new(),
            online: true,
            last_seen_ms: now_ms,
            heard_since_start: true,
            last_progress: None,
            attributes: Box::default(),
        }
    }

    /// The device's dialect (from its id).
    pub fn dialect(&self) -> DialectId {
        self.id.dialect()
    }

    pub fn mark_seen(&mut self, now_ms: i64) {
        self.online = true;
        self.heard_since_start = true;
        self.last_seen_ms = self.last_seen_ms.max(now_ms);
    }

    /// When this console last heard the device, `None` when it has not heard it since it started.
    pub fn heard_at_ms(&self) -> Option<i64> {
        self.heard_since_start.then_some(self.last_seen_ms)
    }

    /// The version of `module` (`None` = default module).
    pub fn version(&self, module: Option<&str>) -> Option<&str> {
        let key = module.unwrap_or(DEFAULT_MODULE);
        self.versions
            .iter()
            .find(|(m, _)| m == key)
            .map(|(_, v)| v.as_str())
    }

    /// Records a version; returns whether it changed.
    pub fn set_version(&mut self, module: Option<&str>, version: &str) -> bool {
        let key = module.unwrap_or(DEFAULT_MODULE);
        match self.versions.iter_mut().find(|(m, _)| m == key) {
            Some((_, v)) if v == version => false,
            Some((_, v)) => {
                *v = version.to_owned();
                true
            }
            None => {
                self.versions.push((key.to_owned(), version.to_owned()));
                self.versions.sort();
                true
            }
        }
    }
}
