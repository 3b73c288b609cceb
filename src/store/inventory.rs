//! The `devices` table: every device the console has heard of, with its gateway, its versions
//! per module and when it was last seen, so the fleet view survives a restart.

use std::collections::BTreeMap;

use rusqlite::params;

use super::sql::{Store, StoreError, corrupt, opt_ts_from_sql, opt_ts_to_sql};
use crate::device_id::DeviceId;
use crate::rollout::Timestamp;

/// One known device (without module: modules are keys of `versions`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryDevice {
    pub id: DeviceId,
    /// FogCloud gateway or DJI dock it reports through.
    pub gateway: Option<DeviceId>,
    /// Module → version; the default module is `"default"`.
    pub versions: BTreeMap<String, String>,
    pub last_seen: Option<Timestamp>,
}

impl Store {
    /// Inserts or replaces one device's row.
    pub fn upsert_device(&mut self, device: &InventoryDevice) -> Result<(), StoreError> {
        self.upsert_devices(std::slice::from_ref(device))
    }

    /// Inserts or replaces many rows in one transaction (a burst of discoveries, one fsync).
    pub fn upsert_devices(&mut self, devices: &[InventoryDevice]) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        {
            let mut stmt = tx.prepare(
                "INSERT INTO devices (id, dialect, gateway, versions, last_seen)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (id) DO UPDATE SET dialect = excluded.dialect,
                     gateway = excluded.gateway, versions = excluded.versions,
                     last_seen = excluded.last_seen",
            )?;
            for d in devices {
                let versions = serde_json::to_string(&d.versions)
                    .map_err(|e| corrupt("device versions", e))?;
                stmt.execute(params![
                    d.id.device().to_string(),
                    d.id.dialect().as_str(),
                    d.gateway.as_ref().map(|g| g.to_string()),
                    versions,
                    opt_ts_to_sql(d.last_seen)?,
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Every known device, ordered by id.
    pub fn load_inventory(&self) -> Result<Vec<InventoryDevice>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, gateway, versions, last_seen FROM devices ORDER BY id")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Option<String>>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Option<i64>>(3)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, gateway, versions, last_seen) = row?;
            out.push(InventoryDevice {
                id: id.parse().map_err(|e| corrupt("device id", e))?,
                gateway: gateway
                    .map(|g| g.parse())
                    .transpose()
                    .map_err(|e| corrupt("device gateway", e))?,
                versions: serde_json::from_str(&versions)
                    .map_err(|e| corrupt("device versions", e))?,
                last_seen: opt_ts_from_sql("device last_seen", last_seen)?,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inventory_upserts_and_loads() {
        let mut store = Store::open_in_memory().unwrap();
        let dock: DeviceId = "dji:DOCK1".parse().unwrap();
        let mut drone = InventoryDevice {
            id: "dji:DRONE1".parse().unwrap(),
            gateway: Some(dock.clone()),
            versions: BTreeMap::from([("default".to_owned(), "1.0".to_owned())]),
            last_seen: Some(Timestamp::from_millis(5)),
        };
        let dock_row = InventoryDevice {
            id: dock,
            gateway: None,
            versions: BTreeMap::new(),
            last_seen: None,
        };
        store
            .upsert_devices(&[drone.clone(), dock_row.clone()])
            .unwrap();
        drone.versions.insert("default".into(), "2.0".into());
        drone.last_seen = Some(Timestamp::from_millis(9));
        store.upsert_device(&drone).unwrap();
        assert_eq!(store.load_inventory().unwrap(), vec![dock_row, drone]);
    }
}
