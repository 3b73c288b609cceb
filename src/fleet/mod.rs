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

/// All known devices, keyed by the device id without module.
#[derive(Debug, Default)]
pub struct Fleet {
    devices: HashMap<DeviceId, DeviceRecord>,
}

impl Fleet {
    pub fn new() -> Self {
        Self::default()
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
            Event::ServiceReply(r) => self.touch(&r.gateway, None, now_ms).1,
            Event::DjiOtherEvent { gateway, .. } => self.touch(gateway, None, now_ms).1,
            Event::DjiCompatibility {
                device,
                compatible_status,
            } => {
                let (record, applied) = self.touch(device, None, now_ms);
                record.compatible_status = Some(*compatible_status);
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
        // DJI progress arrives on the gateway's topic and names the upgrade only by bid; the
        // rollout maps it to the device, so here it only proves the gateway is alive.
        let (record, applied) = self.touch(&p.device, p.gateway.as_ref(), now_ms);
        if !matches!(p.task, crate::protocol::TaskRef::Bid(_)) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{DjiAck, DjiDevice, Phase, TaskRef, UpgradeStatus};

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
                gateway_info: DjiDevice {
                    sn: "DOCK".into(),
                    device_type: None,
                    sub_type: None,
                    index: None,
                    thing_version: None,
                },
                sub_devices: subs,
                sub_device_info: vec![],
                ack: DjiAck {
                    gateway: dock.clone(),
                    method: "update_topo".into(),
                    tid: "t".into(),
                    bid: "b".into(),
                },
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
                ack: None,
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
        fleet.apply(&report(dock.clone(), TaskRef::Bid("b".into())), 1);
        assert!(fleet.get(&dock).unwrap().last_progress.is_none());
    }
}
