//! Mapping between the fleet's in-memory records and the store's inventory rows.

use crate::fleet::DeviceRecord;
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

/// A device from the inventory: known, but not seen by this run yet (so not online).
pub(super) fn from_inventory(device: InventoryDevice) -> DeviceRecord {
    let last_seen_ms = device
        .last_seen
        .and_then(|t| i64::try_from(t.as_millis()).ok())
        .unwrap_or(0);
    let mut record = DeviceRecord::new(device.id, last_seen_ms);
    record.gateway = device.gateway;
    record.versions = device.versions.into_iter().collect();
    record.online = false;
    record
}
