//! Mapping between the fleet's in-memory records and the store's inventory rows.

use crate::device_id::DialectId;
use crate::fleet::DeviceRecord;
use crate::protocol::{Presence, registry};
use crate::rollout::Timestamp;
use crate::store::InventoryDevice;

pub(super) fn to_inventory(record: &DeviceRecord) -> InventoryDevice {
    InventoryDevice {
        id: record.id.clone(),
        gateway: record.gateway.clone(),
        versions: record.versions.iter().cloned().collect(),
        last_seen: u64::try_from(record.last_seen_ms)
            .ok()
            .map(Timestamp::from_millis),
    }
}

/// A device from the inventory, not heard by this run yet (`heard_since_start` false until it
/// speaks). Alibaba and FogCloud devices say
/// nothing about presence (they announce once, at connect), so they count as reachable until
/// a notice to them times out; DJI docks report constantly, so theirs wait to be seen.
pub(super) fn from_inventory(device: InventoryDevice) -> DeviceRecord {
    let last_seen_ms = device
        .last_seen
        .and_then(|t| i64::try_from(t.as_millis()).ok())
        .unwrap_or(0);
    let mut record = DeviceRecord::new(device.id, last_seen_ms);
    record.gateway = device.gateway;
    record.versions = device.versions.into_iter().collect();
    record.online = assumed_reachable(record.dialect());
    record.heard_since_start = false;
    record
}

/// Whether a device we have no fresh word from should be treated as reachable.
pub(super) fn assumed_reachable(dialect: DialectId) -> bool {
    // Devices that report all the time are reachable only once heard in this run.
    registry::capabilities(dialect).presence == Presence::AnnouncesOnConnect
}
