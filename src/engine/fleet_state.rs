//! What the engine knows of the fleet: the device registry ([`Fleet`]), which records changed
//! since the inventory was last written, the last message from or about each device, and the
//! last version each device reported in this run.
//!
//! Rules it keeps: the registry holds at most [`crate::fleet::MAX_DEVICES`] devices (known
//! devices keep being heard, new names are refused); a gateway speaks only for its own
//! sub-devices (see `admit`); only records that changed are written to the inventory, each once
//! per flush; the version memory is bounded like the registry (a full map takes no new devices,
//! only newer reports of those it has).

use std::collections::{HashMap, HashSet};

use super::inventory::{assumed_reachable, from_inventory, to_inventory};
use super::snapshot::DeviceRow;
use crate::device_id::{DeviceId, DialectId};
use crate::fleet::{DeviceRecord, Fleet, devices_named};
use crate::protocol::{Event, SubDevices, VersionReport, registry};
use crate::rollout::DeviceSnapshot;
use crate::store::InventoryDevice;

/// Devices whose last version report is kept for resumed campaigns (the registry's own limit is
/// lower; this only bounds the map if that changes).
const MAX_HEARD_VERSIONS: usize = crate::fleet::MAX_DEVICES;

#[derive(Default)]
pub(super) struct FleetState {
    fleet: Fleet,
    /// Discovered or changed since the inventory was last written.
    inventory_dirty: HashSet<DeviceId>,
    /// Topic of the last message from or about each device ("in …" / "out …").
    last_message: HashMap<DeviceId, String>,
    /// The last version each device reported in this run, for campaigns resumed after the
    /// report came: a persistent session delivers what devices said while the console was down
    /// as soon as it connects, before `rollout --resume` has put the campaign back to work.
    heard_versions: HashMap<DeviceId, VersionReport>,
    /// Rows whose record or last message changed since [`FleetState::take_row_changes`].
    rows_changed: RowChanges,
}

/// Which device rows changed: a few, or (after a restore) possibly all.
#[derive(Debug)]
pub(super) enum RowChanges {
    Some(HashSet<DeviceId>),
    All,
}

impl Default for RowChanges {
    fn default() -> Self {
        RowChanges::Some(HashSet::new())
    }
}

impl RowChanges {
    fn note(&mut self, device: DeviceId) {
        if let RowChanges::Some(ids) = self {
            ids.insert(device);
        }
    }
}

impl FleetState {
    /// Puts the inventory's devices back (not heard by this run yet).
    pub(super) fn restore(&mut self, devices: Vec<InventoryDevice>) {
        for device in devices {
            self.fleet.restore(from_inventory(device));
        }
        self.rows_changed = RowChanges::All;
    }

    /// Keeps the events the fleet may take: none in which a gateway speaks for a device it does
    /// not own, none that would add a device to a full registry. Returns the events kept and,
    /// when something was refused, the kind of refusal (for the log's rate limit) and why.
    pub(super) fn admit(&self, events: Vec<Event>) -> (Vec<Event>, Option<(&'static str, String)>) {
        let (events, foreign) = self.drop_foreign_claims(events);
        let (events, overflow) = self.drop_unknown_when_full(events);
        let refusal = match (foreign, overflow) {
            (Some(why), _) => Some(("foreign sub-device", why)),
            (None, Some(why)) => Some(("registry full", why)),
            (None, None) => None,
        };
        (events, refusal)
    }

    /// Removes the events in which a gateway speaks for a device it does not own: a FogCloud
    /// `sub.*` entry or a DJI topology entry naming a device that the fleet knows elsewhere (see
    /// `foreign_claim`), or a gateway listing itself. Any client on the broker can publish on a
    /// gateway topic, and the fleet routes notices through the gateway it last heard of, so
    /// accepting such a claim would let one gateway fail, "upgrade" or capture another's
    /// devices. A sub-device whose gateway is offline may move (re-pairing is legitimate).
    /// Returns the events kept and, when something was removed, why.
    fn drop_foreign_claims(&self, events: Vec<Event>) -> (Vec<Event>, Option<String>) {
        let mut refused = None;
        let mut kept = Vec::with_capacity(events.len());
        for mut event in events {
            let claim = match &event {
                Event::Version(v) => v.gateway.as_ref().map(|gw| (&v.device, gw)),
                Event::Progress(p) => p.gateway.as_ref().map(|gw| (&p.device, gw)),
                _ => None,
            };
            if let Some(why) = claim.and_then(|(device, gw)| self.foreign_claim(device, gw)) {
                refused.get_or_insert(why);
                continue;
            }
            if let Event::Topology(t) = &mut event {
                let gateway = t.gateway.clone();
                let mut keep = t
                    .sub_devices
                    .iter()
                    .map(|sub| match self.foreign_claim(sub, &gateway) {
                        Some(why) => {
                            refused.get_or_insert(why);
                            false
                        }
                        None => true,
                    })
                    .collect::<Vec<bool>>()
                    .into_iter();
                let mut keep_info = keep.clone();
                t.sub_devices.retain(|_| keep.next().unwrap_or(false));
                t.sub_device_info
                    .retain(|_| keep_info.next().unwrap_or(false));
            }
            kept.push(event);
        }
        (kept, refused)
    }

    /// Removes the events that would add devices to a registry already holding
    /// [`crate::fleet::MAX_DEVICES`]: known devices keep being heard, new names are refused.
    /// A message not wholly taken is not answered either ([`Event::Answer`]): the device sends
    /// it again, and it is taken once there is room (a DJI dock re-sends an `update_topo` until
    /// it gets its `status_reply`).
    fn drop_unknown_when_full(&self, events: Vec<Event>) -> (Vec<Event>, Option<String>) {
        let mut refused = None;
        let mut kept: Vec<Event> = events
            .into_iter()
            .filter(|event| {
                let admitted = self.fleet.admits(event);
                if !admitted {
                    refused = Some(format!(
                        "the device registry is full ({} devices): {} is not added",
                        self.fleet.len(),
                        event.device()
                    ));
                }
                admitted
            })
            .collect();
        if refused.is_some() {
            kept.retain(|event| !matches!(event, Event::Answer(_)));
        }
        (kept, refused)
    }

    /// Why `gateway` may not report for `device`, if it may not: the device is the gateway
    /// itself, or the fleet knows it connected through another gateway (or, FogCloud, directly)
    /// and that link is alive. Devices not heard of yet may be claimed: that is how sub-devices
    /// are discovered.
    fn foreign_claim(&self, device: &DeviceId, gateway: &DeviceId) -> Option<String> {
        let (device, gateway) = (device.device(), gateway.device());
        if device == gateway {
            return Some(format!("{gateway} lists itself as its own sub-device"));
        }
        let record = self.fleet.get(&device)?;
        match &record.gateway {
            Some(owner) if *owner == gateway => None,
            Some(owner) => self
                .fleet
                .get(owner)
                .is_some_and(|r| r.online)
                .then(|| format!("{device} is attached to {owner}, not to {gateway}")),
            // A sub-device that publishes under its own id (a DJI drone, through its dock) says
            // nothing about its gateway by being heard directly; one that never publishes
            // itself (FogCloud) and did is directly connected.
            None if publishes_in_own_name(device.dialect()) => None,
            None => record
                .online
                .then(|| format!("{device} is connected directly, not through {gateway}")),
        }
    }

    /// Applies one admitted event: the record changes, and what changed is remembered for the
    /// inventory (a sub-device's version report also concerns its gateway).
    pub(super) fn apply(&mut self, event: &Event, now_ms: i64) {
        if let Event::Topology(t) = event {
            // The gateway's former sub-devices may go offline: the fleet scans for them too.
            let gateway = t.gateway.device();
            for record in self.fleet.records() {
                if record.gateway.as_ref() == Some(&gateway) {
                    self.rows_changed.note(record.id.clone());
                }
            }
        }
        for device in devices_named(event) {
            self.rows_changed.note(device.device());
        }
        let applied = self.fleet.apply(event, now_ms);
        if applied.discovered || applied.version_changed {
            self.inventory_dirty.insert(event.device().device());
            if let Event::Version(v) = event
                && let Some(gw) = &v.gateway
            {
                self.inventory_dirty.insert(gw.device());
            }
        }
        if let Event::Version(v) = event {
            self.note_version_heard(v);
        }
    }

    /// Remembers `report` for campaigns resumed later (bounded: a full map takes no new
    /// devices, only newer reports of those it has).
    fn note_version_heard(&mut self, report: &VersionReport) {
        if self.heard_versions.len() < MAX_HEARD_VERSIONS
            || self.heard_versions.contains_key(&report.device)
        {
            self.heard_versions
                .insert(report.device.clone(), report.clone());
        }
    }

    /// The last version `device` reported in this run.
    pub(super) fn version_heard(&self, device: &DeviceId) -> Option<&VersionReport> {
        self.heard_versions.get(device)
    }

    /// Notes the last message from or about `device` (its row shows it).
    pub(super) fn note_message(&mut self, device: &DeviceId, text: String) {
        self.last_message.insert(device.device(), text);
        self.rows_changed.note(device.device());
    }

    pub(super) fn get(&self, device: &DeviceId) -> Option<&DeviceRecord> {
        self.fleet.get(device)
    }

    /// Sorted by device id.
    pub(super) fn sorted(&self) -> Vec<&DeviceRecord> {
        self.fleet.sorted()
    }

    /// The gateway `device` was last heard through.
    pub(super) fn gateway_of(&self, device: &DeviceId) -> Option<DeviceId> {
        self.fleet.get(device).and_then(|r| r.gateway.clone())
    }

    /// Whether `device` is to be treated as reachable: as last heard, or, never heard, as its
    /// dialect's presence says.
    pub(super) fn reachable(&self, device: &DeviceId) -> bool {
        self.fleet
            .get(device)
            .map_or_else(|| assumed_reachable(device.dialect()), |r| r.online)
    }

    /// The records that changed since the last call, for the inventory.
    pub(super) fn take_dirty(&mut self) -> Vec<InventoryDevice> {
        if self.inventory_dirty.is_empty() {
            return Vec::new();
        }
        let fleet = &self.fleet;
        self.inventory_dirty
            .drain()
            .filter_map(|id| fleet.get(&id).map(to_inventory))
            .collect()
    }

    /// The rows changed since the last call.
    pub(super) fn take_row_changes(&mut self) -> RowChanges {
        std::mem::take(&mut self.rows_changed)
    }

    /// The row of `device` (no module), with its standing in the newest campaign that targets
    /// it; `None` for a device the fleet does not know.
    pub(super) fn row(
        &self,
        device: &DeviceId,
        standing: Option<&DeviceSnapshot>,
    ) -> Option<DeviceRow> {
        let record = self.fleet.get(device)?;
        Some(DeviceRow {
            last_message: self.last_message.get(&record.id).cloned(),
            rollout: standing.cloned(),
            record: record.clone(),
        })
    }

    /// One row per device, with its standing in the newest campaign that targets it.
    pub(super) fn rows<'a>(
        &self,
        standing: impl Fn(&DeviceId) -> Option<&'a DeviceSnapshot>,
    ) -> Vec<DeviceRow> {
        self.fleet
            .sorted()
            .into_iter()
            .map(|record| DeviceRow {
                last_message: self.last_message.get(&record.id).cloned(),
                rollout: standing(&record.id).cloned(),
                record: record.clone(),
            })
            .collect()
    }
}

/// Whether sub-devices of `dialect` publish under their own id through their gateway.
fn publishes_in_own_name(dialect: DialectId) -> bool {
    matches!(
        registry::capabilities(dialect).sub_devices,
        SubDevices::ThroughGateway {
            publish_in_own_name: true
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> DeviceId {
        s.parse().expect("a valid device id")
    }

    fn version(device: &DeviceId, version: &str) -> Event {
        Event::Version(VersionReport {
            device: device.clone(),
            version: version.to_owned(),
            gateway: None,
        })
    }

    /// A full registry refuses an unknown dock's topology; its `status_reply` must not go out
    /// either, or the dock would never send the topology again once there is room.
    #[test]
    fn a_message_refused_for_a_full_registry_is_not_answered() {
        let mut state = FleetState {
            fleet: Fleet::with_limit(1),
            ..FleetState::default()
        };
        state.apply(&version(&id("aliyun:pk/d1"), "1.0"), 1);
        let topology = serde_json::json!({"tid": "t", "bid": "b", "timestamp": 1,
            "method": "update_topo", "data": {"sub_devices": [{"sn": "DRONE1"}]}});
        let events =
            crate::protocol::decode("sys/product/DOCK9/status", topology.to_string().as_bytes())
                .expect("a valid update_topo");
        assert!(events.iter().any(|e| matches!(e, Event::Answer(_))));
        let (kept, refusal) = state.admit(events);
        assert!(kept.is_empty(), "{kept:?}");
        assert!(matches!(refusal, Some(("registry full", _))), "{refusal:?}");
        assert_eq!(state.fleet.len(), 1);
    }

    #[test]
    fn only_records_that_changed_are_written_and_each_once() {
        let mut fleet = FleetState::default();
        let device = id("aliyun:pk/d1");
        fleet.apply(&version(&device, "1.0"), 1);
        let written: Vec<DeviceId> = fleet.take_dirty().into_iter().map(|d| d.id).collect();
        assert_eq!(written, vec![device.clone()]);
        assert!(fleet.take_dirty().is_empty());
        // The same version again changes nothing; a new one does.
        fleet.apply(&version(&device, "1.0"), 2);
        assert!(fleet.take_dirty().is_empty());
        fleet.apply(&version(&device, "1.1"), 3);
        assert_eq!(fleet.take_dirty().len(), 1);
        assert_eq!(
            fleet.version_heard(&device).map(|r| r.version.as_str()),
            Some("1.1")
        );
    }

    #[test]
    fn a_message_about_a_module_shows_on_its_device_row() {
        let mut fleet = FleetState::default();
        let device = id("aliyun:pk/d1");
        fleet.apply(&version(&device, "1.0"), 1);
        fleet.note_message(&id("aliyun:pk/d1#mcu"), "out upgrade".to_owned());
        let rows = fleet.rows(|_| None);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].last_message.as_deref(), Some("out upgrade"));
    }
}
