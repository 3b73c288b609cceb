//! What each simulated device has done so far, readable at any time by tests, the CLI and the
//! GUI demo through [`super::SimFleet::stats`].
//!
//! Owns: the per-device counters and state, shared between a device's task (writer) and
//! readers behind a short-lived `std::sync::Mutex`. Must never: hold a lock across an `.await`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::device_id::{DeviceId, DialectId};

/// Where a simulated device stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum DeviceState {
    /// Waiting for the broker to accept the connection.
    Connecting,
    /// Connected, no upgrade running.
    Idle,
    Downloading {
        percent: u8,
    },
    Installing,
    /// The last upgrade failed with this device-side code (Alibaba step, FogCloud -1, DJI result).
    Failed {
        code: i64,
    },
    /// The last DJI `ota_create` was refused with this code.
    Rejected {
        code: i64,
    },
    /// Dropped off the network on purpose (`offline_mid_download`); comes back by itself.
    Offline,
}

/// One device's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceStats {
    pub id: DeviceId,
    /// Firmware version of the default module.
    pub version: String,
    /// Versions of extra modules (Alibaba `--module`), by module name.
    pub module_versions: BTreeMap<String, String>,
    pub state: DeviceState,
    /// Picked as silent at start: reports its version, never answers notices.
    pub silent: bool,
    /// MQTT connections accepted by the broker (more than one after reconnects).
    pub connects: u64,
    /// Upgrade notices / `ota_create` calls / non-empty get replies addressed to this device.
    pub notices_received: u64,
    /// Notices ignored because they were malformed or for an upgrade already running.
    pub notices_ignored: u64,
    /// Under `strict`: notices ignored because a field was missing or empty (also counted in
    /// `notices_ignored`), as the strictest device SDKs drop them.
    pub broken_notices: u64,
    /// Firmware requests sent (Alibaba `thing.ota.firmware.get`, FogCloud `firmware.get`).
    pub gets_sent: u64,
    /// Get replies that said nothing is pending.
    pub nothing_pending: u64,
    /// Progress messages published (Alibaba progress, FogCloud `upgrade.post` entries, DJI
    /// `ota_progress` events).
    pub progress_sent: u64,
    pub downloads_started: u64,
    pub downloads_completed: u64,
    pub bytes_downloaded: u64,
    pub upgrades_succeeded: u64,
    pub upgrades_failed: u64,
    pub rejections: u64,
    /// DJI replies (`status_reply`, `events_reply`) that did not arrive within the reply timeout.
    pub missing_replies: u64,
    /// Messages that could not be published (connection down, client queue full) or
    /// received messages dropped because the device's inbox was full.
    pub messages_dropped: u64,
    /// Messages handed to the MQTT client for publishing (QoS 1), every kind together.
    pub messages_published: u64,
    /// PUBACKs the broker sent for them: the messages the broker has certainly taken.
    pub messages_acked: u64,
}

impl DeviceStats {
    pub(crate) fn new(id: DeviceId, version: &str) -> DeviceStats {
        DeviceStats {
            id,
            version: version.to_owned(),
            module_versions: BTreeMap::new(),
            state: DeviceState::Connecting,
            silent: false,
            connects: 0,
            notices_received: 0,
            notices_ignored: 0,
            broken_notices: 0,
            gets_sent: 0,
            nothing_pending: 0,
            progress_sent: 0,
            downloads_started: 0,
            downloads_completed: 0,
            bytes_downloaded: 0,
            upgrades_succeeded: 0,
            upgrades_failed: 0,
            rejections: 0,
            missing_replies: 0,
            messages_dropped: 0,
            messages_published: 0,
            messages_acked: 0,
        }
    }
}

/// A device's record as shared between its task and readers.
#[derive(Debug, Clone)]
pub(crate) struct StatsCell(Arc<Mutex<DeviceStats>>);

impl StatsCell {
    pub(crate) fn new(stats: DeviceStats) -> StatsCell {
        StatsCell(Arc::new(Mutex::new(stats)))
    }

    /// Applies `f` under the lock. A panicked writer cannot leave the counters inconsistent in a
    /// way that matters, so a poisoned lock is used as is.
    pub(crate) fn update<R>(&self, f: impl FnOnce(&mut DeviceStats) -> R) -> R {
        let mut guard = self.0.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard)
    }

    pub(crate) fn snapshot(&self) -> DeviceStats {
        self.update(|s| s.clone())
    }
}

/// Every device's record at one moment, sorted by device id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SimStats {
    pub devices: Vec<DeviceStats>,
}

/// Sums over a [`SimStats`], for one-line summaries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SimTotals {
    pub devices: usize,
    pub connected: usize,
    pub idle: usize,
    pub downloading: usize,
    pub installing: usize,
    pub failed: usize,
    pub rejected: usize,
    pub offline: usize,
    pub notices_received: u64,
    /// Notices strict devices refused for a missing or empty field.
    pub broken_notices: u64,
    pub upgrades_succeeded: u64,
    pub upgrades_failed: u64,
    pub missing_replies: u64,
    pub messages_dropped: u64,
    /// Progress messages published, all devices together.
    pub progress_sent: u64,
    pub messages_published: u64,
    pub messages_acked: u64,
    /// Connections accepted by the broker, reconnects included.
    pub connects: u64,
}

impl SimStats {
    pub fn get(&self, id: &DeviceId) -> Option<&DeviceStats> {
        self.devices
            .binary_search_by(|d| d.id.cmp(id))
            .ok()
            .and_then(|i| self.devices.get(i))
    }

    pub fn of_dialect(&self, dialect: DialectId) -> impl Iterator<Item = &DeviceStats> {
        self.devices
            .iter()
            .filter(move |d| d.id.dialect() == dialect)
    }

    pub fn totals(&self) -> SimTotals {
        let mut t = SimTotals {
            devices: self.devices.len(),
            ..SimTotals::default()
        };
        for d in &self.devices {
            if d.connects > 0 && d.state != DeviceState::Offline {
                t.connected += 1;
            }
            match d.state {
                DeviceState::Connecting => {}
                DeviceState::Idle => t.idle += 1,
                DeviceState::Downloading { .. } => t.downloading += 1,
                DeviceState::Installing => t.installing += 1,
                DeviceState::Failed { .. } => t.failed += 1,
                DeviceState::Rejected { .. } => t.rejected += 1,
                DeviceState::Offline => t.offline += 1,
            }
            t.notices_received += d.notices_received;
            t.broken_notices += d.broken_notices;
            t.upgrades_succeeded += d.upgrades_succeeded;
            t.upgrades_failed += d.upgrades_failed;
            t.missing_replies += d.missing_replies;
            t.messages_dropped += d.messages_dropped;
            t.progress_sent += d.progress_sent;
            t.messages_published += d.messages_published;
            t.messages_acked += d.messages_acked;
            t.connects += d.connects;
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_and_totals() {
        let mut a = DeviceStats::new(DeviceId::dji("A").unwrap(), "1");
        a.state = DeviceState::Idle;
        a.connects = 1;
        a.upgrades_succeeded = 2;
        let mut b = DeviceStats::new(DeviceId::dji("B").unwrap(), "1");
        b.state = DeviceState::Failed { code: -3 };
        b.messages_published = 5;
        b.messages_acked = 4;
        b.progress_sent = 3;
        let stats = SimStats {
            devices: vec![a, b],
        };
        assert_eq!(
            stats.get(&DeviceId::dji("B").unwrap()).unwrap().state,
            DeviceState::Failed { code: -3 }
        );
        assert!(stats.get(&DeviceId::dji("C").unwrap()).is_none());
        let t = stats.totals();
        assert_eq!((t.devices, t.connected, t.idle, t.failed), (2, 1, 1, 1));
        assert_eq!(t.upgrades_succeeded, 2);
        assert_eq!((t.messages_published, t.messages_acked), (5, 4));
        assert_eq!((t.progress_sent, t.connects), (3, 1));
    }
}
