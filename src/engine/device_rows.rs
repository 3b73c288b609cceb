//! The device table of the snapshot, kept up to date change by change: a persistent vector of
//! rows sorted by device id ([`DeviceRows`]), so publishing after k device changes costs
//! O(k log n) and the window gets the whole table by cloning a pointer.
//!
//! Rules it keeps: the rows are exactly what a full rebuild from the fleet and the live
//! campaigns gives (one per known device, sorted by id, each with its standing in the newest
//! live campaign that targets it); a change it is not told of row by row (a restore, a campaign
//! becoming live or leaving) makes it rebuild everything once.

use std::sync::Arc;

use super::campaigns::Campaigns;
use super::fleet_state::{FleetState, RowChanges};
use super::snapshot::DeviceRows;
use crate::device_id::DeviceId;
use crate::rollout::{CampaignId, DeviceSnapshot};

#[derive(Default)]
pub(super) struct RowCache {
    rows: DeviceRows,
    /// The live campaigns the rows' standings were read from, in order; `None` before the first
    /// build.
    live: Option<Vec<CampaignId>>,
}

impl RowCache {
    /// Brings the rows up to date with `fleet` and `campaigns` (taking what changed from both)
    /// and returns them (a cheap clone sharing every row) with the ids of the rows that changed
    /// (`None` when all were rebuilt).
    pub(super) fn refresh(
        &mut self,
        fleet: &mut FleetState,
        campaigns: &mut Campaigns,
    ) -> (DeviceRows, Option<Arc<[DeviceId]>>) {
        let fleet_changes = fleet.take_row_changes();
        let campaign_changes = campaigns.take_changed();
        let live: Vec<CampaignId> = campaigns.live().iter().map(|l| l.campaign().id()).collect();
        let changed = match fleet_changes {
            RowChanges::Some(ids) if self.live.as_ref() == Some(&live) => ids,
            RowChanges::Some(_) | RowChanges::All => {
                self.rows = fleet
                    .rows(|id| standing(campaigns, id))
                    .into_iter()
                    .map(Arc::new)
                    .collect();
                self.live = Some(live);
                return (self.rows.clone(), None);
            }
        };
        let mut changed = changed;
        changed.extend(campaign_changes.iter().map(DeviceId::device));
        let changed: Arc<[DeviceId]> = changed.into_iter().collect();
        self.patch(fleet, campaigns, &changed);
        (self.rows.clone(), Some(changed))
    }

    fn patch(&mut self, fleet: &FleetState, campaigns: &Campaigns, changed: &[DeviceId]) {
        for id in changed {
            let found = self.rows.binary_search_by(|row| row.record.id.cmp(id));
            match (fleet.row(id, standing(campaigns, id)), found) {
                (Some(row), Ok(at)) => {
                    self.rows.set(at, Arc::new(row));
                }
                (Some(row), Err(at)) => self.rows.insert(at, Arc::new(row)),
                // The registry forgets no device; a row without a record goes with it.
                (None, Ok(at)) => {
                    self.rows.remove(at);
                }
                (None, Err(_)) => {}
            }
        }
    }
}

/// The line of `device` in the newest live campaign that targets it (a module-qualified target
/// stands for its device).
fn standing<'a>(campaigns: &'a Campaigns, device: &DeviceId) -> Option<&'a DeviceSnapshot> {
    campaigns
        .live()
        .iter()
        .filter_map(|l| Some((l.campaign().id(), l.campaign().line(device)?)))
        .max_by_key(|(id, _)| *id)
        .map(|(_, line)| line.as_ref())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::protocol::{
        Event, MemberInfo, Phase, ProgressReport, TaskRef, Topology, UpgradeStatus, VersionReport,
    };
    use crate::store::InventoryDevice;

    /// What can happen to the fleet between two publishes.
    #[derive(Debug, Clone)]
    enum Op {
        Version {
            dev: u8,
            version: u8,
            gateway: Option<u8>,
        },
        Progress {
            dev: u8,
            percent: u8,
        },
        Topology {
            gateway: u8,
            subs: Vec<u8>,
        },
        Heard {
            dev: u8,
        },
        Message {
            dev: u8,
            module: bool,
        },
        Restore {
            dev: u8,
        },
        Publish,
    }

    fn op() -> impl Strategy<Value = Op> {
        let dev = 0u8..12;
        prop_oneof![
            (dev.clone(), 0u8..3, proptest::option::of(0u8..3)).prop_map(
                |(dev, version, gateway)| {
                    Op::Version {
                        dev,
                        version,
                        gateway,
                    }
                }
            ),
            (dev.clone(), 0u8..=100).prop_map(|(dev, percent)| Op::Progress { dev, percent }),
            (0u8..3, proptest::collection::vec(3u8..12, 0..4))
                .prop_map(|(gateway, subs)| Op::Topology { gateway, subs }),
            dev.clone().prop_map(|dev| Op::Heard { dev }),
            (dev.clone(), any::<bool>()).prop_map(|(dev, module)| Op::Message { dev, module }),
            dev.prop_map(|dev| Op::Restore { dev }),
            Just(Op::Publish),
        ]
    }

    /// FogCloud ids: a dialect with gateways and sub-devices.
    fn id(n: u8) -> DeviceId {
        DeviceId::fogcloud("pk", &format!("d{n:02}")).unwrap()
    }

    fn apply(fleet: &mut FleetState, op: &Op, now_ms: i64) {
        let event = match op {
            Op::Version {
                dev,
                version,
                gateway,
            } => Event::Version(VersionReport {
                device: id(*dev),
                version: format!("1.{version}"),
                gateway: gateway.map(id).filter(|g| *g != id(*dev)),
            }),
            Op::Progress { dev, percent } => Event::Progress(ProgressReport {
                device: id(*dev),
                task: TaskRef::None,
                status: UpgradeStatus::InProgress,
                phase: Phase::Download,
                percent: Some(*percent),
                percent_clamped: false,
                desc: None,
                gateway: None,
            }),
            Op::Topology { gateway, subs } => Event::Topology(Topology {
                gateway: id(*gateway),
                gateway_info: member(*gateway),
                sub_devices: subs.iter().map(|&s| id(s)).collect(),
                sub_device_info: subs.iter().map(|&s| member(s)).collect(),
            }),
            Op::Heard { dev } => Event::Heard {
                device: id(*dev),
                what: "ping".into(),
            },
            Op::Message { dev, module } => {
                let device = if *module {
                    id(*dev).with_module(Some("mcu")).unwrap()
                } else {
                    id(*dev)
                };
                fleet.note_message(&device, format!("in topic {now_ms}"));
                return;
            }
            Op::Restore { dev } => {
                fleet.restore(vec![InventoryDevice {
                    id: id(*dev),
                    gateway: None,
                    versions: [("default".to_owned(), "0.9".to_owned())].into(),
                    last_seen: None,
                }]);
                return;
            }
            Op::Publish => return,
        };
        fleet.apply(&event, now_ms);
    }

    fn member(n: u8) -> MemberInfo {
        MemberInfo {
            name: format!("d{n:02}"),
            device_type: None,
            sub_type: None,
            index: None,
            thing_version: None,
        }
    }

    fn shown(rows: &DeviceRows) -> Vec<String> {
        rows.iter().map(|r| format!("{r:?}")).collect()
    }

    proptest! {
        /// After any sequence of fleet changes, with publishes anywhere in it, the patched
        /// table is the one a full rebuild gives.
        #[test]
        fn patched_rows_equal_a_full_rebuild(ops in proptest::collection::vec(op(), 1..60)) {
            let mut fleet = FleetState::default();
            let mut campaigns = Campaigns::new(0);
            let mut cache = RowCache::default();
            for (t, op) in ops.iter().enumerate() {
                apply(&mut fleet, op, 1_000 + t as i64);
                if matches!(op, Op::Publish) {
                    let (rows, _) = cache.refresh(&mut fleet, &mut campaigns);
                    let rebuilt: DeviceRows =
                        fleet.rows(|_| None).into_iter().map(Arc::new).collect();
                    prop_assert_eq!(shown(&rows), shown(&rebuilt));
                }
            }
            let (rows, _) = cache.refresh(&mut fleet, &mut campaigns);
            let rebuilt: DeviceRows = fleet.rows(|_| None).into_iter().map(Arc::new).collect();
            prop_assert_eq!(shown(&rows), shown(&rebuilt));
        }
    }

    /// The first publish builds the table; later ones touch only the rows that changed (the
    /// others are the very same `Arc`s).
    #[test]
    fn a_publish_replaces_only_the_rows_that_changed() {
        let mut fleet = FleetState::default();
        let mut campaigns = Campaigns::new(0);
        let mut cache = RowCache::default();
        for n in 0..10 {
            apply(&mut fleet, &Op::Heard { dev: n }, 1);
        }
        let (first, _) = cache.refresh(&mut fleet, &mut campaigns);
        apply(
            &mut fleet,
            &Op::Progress {
                dev: 4,
                percent: 50,
            },
            2,
        );
        let (second, changed) = cache.refresh(&mut fleet, &mut campaigns);
        let replaced: Vec<String> = first
            .iter()
            .zip(second.iter())
            .filter(|(a, b)| !Arc::ptr_eq(a, b))
            .map(|(_, b)| b.record.id.to_string())
            .collect();
        assert_eq!(replaced, vec![id(4).to_string()]);
        assert_eq!(changed.as_deref(), Some(&[id(4)][..]));
    }
}
