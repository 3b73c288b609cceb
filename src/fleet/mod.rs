//! The fleet registry: every device the console has heard of, fed by decoded protocol events.
//!
//! Owns identity, dialect, gateway (parent), module → version, online / last seen and the last
//! progress a device reported. Raw messages live in [`inspector`], not here, so a device record
//! stays small (the registry must hold tens of thousands of devices in a few KiB each).
//! Never does I/O; the engine calls [`Fleet::apply`] for every decoded event.

pub mod inspector;
mod record;

pub use record::{DeviceRecord, LastProgress};

use std::collections::HashMap;

use crate::device_id::DeviceId;
use crate::protocol::{Event, ProgressReport, Topology, VersionReport};

/// What applying one event changed, so callers can skip work when nothing did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Applied {
    /// A device not seen before was added.
    pub discovered: bool,
    /// A reported version changed (or appeared).
    pub version_changed: bool,
}

/// Devices the registry takes in at most. Any client on the broker can name new devices at
/// will; beyond this, messages about devices not yet known are refused (the fleets this console
/// serves are far smaller, and a campaign holds at most [`crate::rollout::MAX_TARGETS`]).
pub const MAX_DEVICES: usize = 200_000;

/// All known devices, keyed by the device id without module.
#[derive(Debug)]
pub struct Fleet {
    devices: HashMap<DeviceId, DeviceRecord>,
    limit: usize,
}

impl Default for Fleet {
    fn default() -> Self {
        Self::with_limit(MAX_DEVICES)
    }
}

impl Fleet {
    pub fn new() -> Self {
        Self::default()
    }

    /// A registry that takes in at most `limit` devices from events (restored ones always fit).
    pub fn with_limit(limit: usize) -> Self {
        Self {
            devices: HashMap::new(),
            limit,
        }
    }

    /// Whether applying `event` keeps the registry within its limit (it names no device not
    /// known yet, or there is room for them).
    pub fn admits(&self, event: &Event) -> bool {
        let mut unknown: Vec<DeviceId> = devices_named(event)
            .map(DeviceId::device)
            .filter(|id| !self.devices.contains_key(id))
            .collect();
        unknown.sort();
        unknown.dedup();
        self.devices.len().saturating_add(unknown.len()) <= self.limit
    }

    pub fn len(&self) -> usize {
        self.devices.len()
    }

    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }

    /// The record of a device (module in `id` is ignored).
    pub fn get(&self, id: &DeviceId) -> Option<&DeviceRecord> {
        if id.module().is_some() {
            self.devices.get(&id.device())
        } else {
            self.devices.get(id)
        }
    }

    /// All records, in no particular order.
    pub fn records(&self) -> impl Iterator<Item = &DeviceRecord> {
        self.devices.values()
    }

    /// All records, sorted by id so listings are stable.
    pub fn sorted(&self) -> Vec<&DeviceRecord> {
        let mut all: Vec<&DeviceRecord> = self.devices.values().collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }

    /// Restores a record from the inventory (database) without marking it seen now.
    pub fn restore(&mut self, record: DeviceRecord) {
        self.devices.insert(record.id.clone(), record);
    }

    /// Applies one decoded event observed at `now_ms` (milliseconds since the Unix epoch).
    pub fn apply(&mut self, event: &Event, now_ms: i64) -> Applied {
        match event {
            Event::Version(v) => self.apply_version(v, now_ms),
            Event::Progress(p) => self.apply_progress(p, now_ms),
            Event::Topology(t) => self.apply_topology(t, now_ms),
            Event::FirmwareGet(g) => self.touch(&g.device, None, now_ms).1,
            Event::Reply(r) => self.touch(&r.gateway, None, now_ms).1,
            // An answer is ours to send; the events of the same message say what the device did.
            Event::Answer(_) => Applied::default(),
            Event::Heard { device, .. } => self.touch(device, None, now_ms).1,
            Event::Attribute {
                device,
                name,
                value,
            } => {
                let (record, applied) = self.touch(device, None, now_ms);
                match record.attributes.iter_mut().find(|(n, _)| n == name) {
                    Some((_, v)) => *v = *value,
                    // A name new to the device: rare (a dialect reports a fixed few).
                    None => {
                        let mut attributes = std::mem::take(&mut record.attributes).into_vec();
                        attributes.push((name, *value));
                        record.attributes = attributes.into_boxed_slice();
                    }
                }
                applied
            }
        }
    }

    fn apply_version(&mut self, v: &VersionReport, now_ms: i64) -> Applied {
        let (record, mut applied) = self.touch(&v.device, v.gateway.as_ref(), now_ms);
        applied.version_changed = record.set_version(v.device.module(), &v.version);
        applied
    }

    fn apply_progress(&mut self, p: &ProgressReport, now_ms: i64) -> Applied {
        // Progress sent by a gateway in its own name names the upgrade only by its key (DJI
        // `bid`); the rollout maps it to the device, so here it only proves the gateway is alive.
        let (record, applied) = self.touch(&p.device, p.gateway.as_ref(), now_ms);
        let subject = crate::protocol::registry::capabilities(p.device.dialect()).progress_subject;
        if subject == crate::protocol::Subject::Device {
            record.last_progress = Some(LastProgress::from_report(p, now_ms));
        }
        applied
    }

    fn apply_topology(&mut self, t: &Topology, now_ms: i64) -> Applied {
        let (_, mut applied) = self.touch(&t.gateway, None, now_ms);
        // Sub-devices that the gateway no longer lists went offline (DJI: drone left the dock).
        for record in self.devices.values_mut() {
            if record.gateway.as_ref() == Some(&t.gateway) && !t.sub_devices.contains(&record.id) {
                record.online = false;
            }
        }
        for sub in &t.sub_devices {
            let (_, sub_applied) = self.touch(sub, Some(&t.gateway), now_ms);
            applied.discovered |= sub_applied.discovered;
        }
        applied
    }

    /// Marks a device (and the gateway it came through) seen, creating records as needed.
    fn touch(
        &mut self,
        id: &DeviceId,
        gateway: Option<&DeviceId>,
        now_ms: i64,
    ) -> (&mut DeviceRecord, Applied) {
        let mut applied = Applied::default();
        if let Some(gw) = gateway {
            let gw = gw.device();
            applied.discovered |= self.touch_one(&gw, None, now_ms);
        }
        let key = id.device();
        applied.discovered |= self.touch_one(&key, gateway, now_ms);
        let record = self
            .devices
            .get_mut(&key)
            .unwrap_or_else(|| unreachable!("touch_one inserted {key}"));
        (record, applied)
    }

    fn touch_one(&mut self, key: &DeviceId, gateway: Option<&DeviceId>, now_ms: i64) -> bool {
        match self.devices.get_mut(key) {
            Some(record) => {
                record.mark_seen(now_ms);
                if let Some(gw) = gateway {
                    record.gateway = Some(gw.device());
                }
                false
            }
            None => {
                let mut record = DeviceRecord::new(key.clone(), now_ms);
                record.gateway = gateway.map(DeviceId::device);
                self.devices.insert(key.clone(), record);
                true
            }
        }
    }
}

/// Every device (and gateway) an event would create a record for.
/// The devices (as named, module included) whose records applying `event` may create or touch;
/// a topology event also takes sub-devices of its gateway offline that it no longer lists.
pub fn devices_named(event: &Event) -> Box<dyn Iterator<Item = &DeviceId> + '_> {
    match event {
        Event::Version(v) => Box::new(std::iter::once(&v.device).chain(v.gateway.as_ref())),
        Event::Progress(p) => Box::new(std::iter::once(&p.device).chain(p.gateway.as_ref())),
        Event::Topology(t) => Box::new(std::iter::once(&t.gateway).chain(t.sub_devices.iter())),
        Event::FirmwareGet(g) => Box::new(std::iter::once(&g.device)),
        Event::Reply(r) => Box::new(std::iter::once(&r.gateway)),
        Event::Answer(_) => Box::new(std::iter::empty()),
        Event::Heard { device, .. } | Event::Attribute { device, .. } => {
            Box::new(std::iter::once(device))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{MemberInfo, Phase, TaskRef, UpgradeStatus};

    fn ali(dn: &str) -> DeviceId {
        DeviceId::aliyun("pk", dn).unwrap()
    }

    fn version(device: DeviceId, v: &str) -> Event {
        Event::Version(VersionReport {
            device,
            version: v.into(),
            gateway: None,
        })
    }

    #[test]
    fn a_full_registry_admits_known_devices_only() {
        let mut fleet = Fleet::with_limit(2);
        assert!(fleet.admits(&version(ali("d1"), "1.0")));
        fleet.apply(&version(ali("d1"), "1.0"), 10);
        fleet.apply(&version(ali("d2"), "1.0"), 10);
        assert!(!fleet.admits(&version(ali("d3"), "1.0")));
        // Known devices, any module, keep reporting.
        let mcu = ali("d1").with_module(Some("MCU")).unwrap();
        assert!(fleet.admits(&version(mcu, "2.0")));
        // A gateway event counts every sub-device it would add.
        let gw = DeviceId::fogcloud("gpk", "gw").unwrap();
        let sub_of = |dn: &str| {
            Event::Version(VersionReport {
                device: DeviceId::fogcloud("spk", dn).unwrap(),
                version: "1".into(),
                gateway: Some(gw.clone()),
            })
        };
        let mut roomy = Fleet::with_limit(3);
        roomy.apply(&version(ali("d1"), "1.0"), 10);
        assert!(roomy.admits(&sub_of("s1")), "gateway + sub-device = 2 new");
        roomy.apply(&sub_of("s1"), 10);
        assert!(!roomy.admits(&sub_of("s2")));
        assert_eq!(roomy.len(), 3);
    }

    #[test]
    fn version_reports_discover_and_track_modules() {
        let mut fleet = Fleet::new();
        let a = fleet.apply(&version(ali("d1"), "1.0"), 10);
        assert!(a.discovered && a.version_changed);
        let mcu = ali("d1").with_module(Some("MCU")).unwrap();
        let a = fleet.apply(&version(mcu, "2.0"), 20);
        assert!(!a.discovered && a.version_changed);
        let a = fleet.apply(&version(ali("d1"), "1.0"), 30);
        assert!(!a.version_changed);
        let rec = fleet.get(&ali("d1")).unwrap();
        assert_eq!(rec.version(None), Some("1.0"));
        assert_eq!(rec.version(Some("MCU")), Some("2.0"));
        assert_eq!(rec.last_seen_ms, 30);
        assert_eq!(fleet.len(), 1);
    }

    #[test]
    fn a_restored_device_is_not_heard_until_it_speaks() {
        let mut fleet = Fleet::new();
        let mut remembered = DeviceRecord::new(ali("old"), 500);
        remembered.heard_since_start = false;
        fleet.restore(remembered);
        let old = fleet.get(&ali("old")).unwrap();
        assert!(!old.heard_since_start);
        assert_eq!(old.heard_at_ms(), None);
        assert_eq!(old.last_seen_ms, 500, "the earlier run's last word is kept");
        fleet.apply(&version(ali("new"), "1.0"), 900);
        assert_eq!(fleet.get(&ali("new")).unwrap().heard_at_ms(), Some(900));
        fleet.apply(&version(ali("old"), "1.0"), 1_000);
        assert_eq!(fleet.get(&ali("old")).unwrap().heard_at_ms(), Some(1_000));
    }

    #[test]
    fn sub_devices_link_to_their_gateway() {
        let mut fleet = Fleet::new();
        let gw = DeviceId::fogcloud("gpk", "gw").unwrap();
        let sub = DeviceId::fogcloud("spk", "s1").unwrap();
        fleet.apply(
            &Event::Version(VersionReport {
                device: sub.clone(),
                version: "1".into(),
                gateway: Some(gw.clone()),
            }),
            5,
        );
        assert_eq!(fleet.len(), 2);
        assert_eq!(fleet.get(&sub).unwrap().gateway.as_ref(), Some(&gw));
        assert_eq!(fleet.get(&gw).unwrap().gateway, None);
    }

    #[test]
    fn empty_topology_marks_drone_offline() {
        let mut fleet = Fleet::new();
        let dock = DeviceId::dji("DOCK").unwrap();
        let drone = DeviceId::dji("DRONE").unwrap();
        let topo = |subs: Vec<DeviceId>| {
            Event::Topology(Topology {
                gateway: dock.clone(),
                gateway_info: MemberInfo {
                    name: "DOCK".into(),
                    device_type: None,
                    sub_type: None,
                    index: None,
                    thing_version: None,
                },
                sub_devices: subs,
                sub_device_info: vec![],
            })
        };
        assert!(fleet.apply(&topo(vec![drone.clone()]), 1).discovered);
        assert!(fleet.get(&drone).unwrap().online);
        fleet.apply(&topo(vec![]), 2);
        assert!(!fleet.get(&drone).unwrap().online);
        assert!(fleet.get(&dock).unwrap().online);
        fleet.apply(&topo(vec![drone.clone()]), 3);
        assert!(fleet.get(&drone).unwrap().online);
    }

    #[test]
    fn progress_is_remembered_but_dji_progress_only_touches_the_gateway() {
        let mut fleet = Fleet::new();
        let report = |device: DeviceId, task: TaskRef| {
            Event::Progress(ProgressReport {
                device,
                task,
                status: UpgradeStatus::InProgress,
                phase: Phase::Download,
                percent: Some(40),
                percent_clamped: false,
                desc: None,
                gateway: None,
            })
        };
        fleet.apply(&report(ali("d"), TaskRef::None), 1);
        assert_eq!(
            fleet
                .get(&ali("d"))
                .unwrap()
                .last_progress
                .as_ref()
                .unwrap()
                .percent,
            Some(40)
        );
        let dock = DeviceId::dji("DOCK").unwrap();
        fleet.apply(&report(dock.clone(), TaskRef::Key("b".into())), 1);
        assert!(fleet.get(&dock).unwrap().last_progress.is_none());
    }
}
