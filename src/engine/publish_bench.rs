//! The engine's publish path without its sockets and database, for `benches/snapshot.rs`
//! (feature `test-support`): a fleet of n devices, one live campaign over all of them with some
//! in flight, progress reports applied as an inbound turn applies them (fleet, then campaign),
//! and a publish as the runner does it (the device table patched by [`RowCache`], the campaign
//! views). [`PublishBench::rebuild`] does what a publish cost before the table was persistent
//! (every row and every campaign line built again), so both are measured in one run.

use std::collections::HashMap;
use std::sync::Arc;

use super::campaigns::Campaigns;
use super::device_rows::RowCache;
use super::fleet_state::FleetState;
use super::snapshot::{CampaignView, DeviceRow, DeviceRows};
use crate::device_id::DeviceId;
use crate::protocol::{Event, Services, VersionReport};
use crate::rollout::{
    Action, Campaign, CampaignId, CampaignSpec, CanarySize, DeviceSnapshot, DialectSettings, Input,
    Policy, RateLimit, Target, Timestamp,
};

pub struct PublishBench {
    fleet: FleetState,
    campaigns: Campaigns,
    rows: RowCache,
    /// The devices in flight.
    in_flight: Vec<DeviceId>,
    next: usize,
    /// The engine clock, in microseconds: reports arrive at the rate given to `new`.
    now_us: u64,
    us_per_report: u64,
    services: Services,
    refused: usize,
    /// The last publish, held until the next one replaces it, as the engine's `watch` holds the
    /// last snapshot: the next publish then copies the parts of the table it shares.
    published: Option<(DeviceRows, Vec<CampaignView>)>,
}

/// Errors setting the bench up (a campaign the rollout refuses).
#[derive(Debug, thiserror::Error)]
#[error("the bench campaign: {0}")]
pub struct BenchError(String);

impl PublishBench {
    /// `devices` Alibaba devices on 1.0.0, all targeted by one campaign to 2.0.0, of which
    /// `in_flight` are noticed (their reports change rows), reporting `per_sec` times a second
    /// in all; published once.
    pub fn new(
        devices: usize,
        in_flight: usize,
        per_sec: usize,
    ) -> Result<PublishBench, BenchError> {
        let mut fleet = FleetState::default();
        let ids: Vec<DeviceId> = (0..devices)
            .map(|i| DeviceId::aliyun("a1BenchPk", &format!("dev-{i:06}")))
            .collect::<Result<_, _>>()
            .map_err(|e| BenchError(e.to_string()))?;
        for (t, id) in ids.iter().enumerate() {
            let report = Event::Version(VersionReport {
                device: id.clone(),
                version: "1.0.0".into(),
                gateway: None,
            });
            fleet.apply(&report, t as i64);
        }
        let in_flight = in_flight.clamp(1, devices.max(1));
        let cap = u32::try_from(in_flight).unwrap_or(u32::MAX);
        let policy = Policy {
            canary: CanarySize::Percent(100),
            wave_size: 0,
            rate: RateLimit {
                per_minute: cap,
                burst: cap,
            },
            max_in_flight: cap,
            retries: 0,
            abort: None,
            ack_resends: 0,
            settle_ms: 0,
            device_timeout_secs: 24 * 3600,
            ..Policy::default()
        };
        let spec = CampaignSpec {
            name: "bench".into(),
            offer: crate::testing::offer("2.0.0"),
            module: None,
            settings: DialectSettings::default(),
            policy,
        };
        let targets = ids
            .iter()
            .map(|id| Target {
                device: id.clone(),
                version: Some("1.0.0".into()),
                online: true,
                heard_at: Some(Timestamp::from_millis(1)),
            })
            .collect();
        let now = Timestamp::from_millis(1_000);
        let campaign = Campaign::new(CampaignId(1), spec, targets, now)
            .map_err(|e| BenchError(e.to_string()))?;
        let mut campaigns = Campaigns::new(0);
        let idx = campaigns.add_undriven(campaign);
        let actions = campaigns.handle_undriven(idx, Input::Start, now);
        let in_flight: Vec<DeviceId> = actions
            .into_iter()
            .filter_map(|a| match a {
                Action::SendUpgrade(order) => Some(order.device),
                _ => None,
            })
            .collect();
        if in_flight.is_empty() {
            return Err(BenchError("no device was noticed".into()));
        }
        let mut bench = PublishBench {
            fleet,
            campaigns,
            rows: RowCache::default(),
            in_flight,
            next: 0,
            now_us: 2_000_000,
            us_per_report: 1_000_000 / u64::try_from(per_sec.max(1)).unwrap_or(u64::MAX),
            services: Services::for_registered(),
            refused: 0,
            published: None,
        };
        bench.publish();
        Ok(bench)
    }

    /// Devices in flight (those whose reports change rows).
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// `k` progress reports from the devices in flight, in turn, each as an inbound turn takes
    /// it: its topic and JSON decoded by the dialect (`protocol::Services`), admitted by the
    /// fleet, noted as the row's last message, applied to the fleet and fed to the campaign
    /// (no socket, no inspector, no store, no notices).
    pub fn progress(&mut self, k: usize) {
        let idx = 0;
        for _ in 0..k {
            let Some(device) = self.in_flight.get(self.next % self.in_flight.len()) else {
                return;
            };
            self.next += 1;
            self.now_us += self.us_per_report;
            let percent = self.next / self.in_flight.len() % 99 + 1;
            let topic = format!(
                "/ota/device/progress/{}/{}",
                device.product_key().unwrap_or_default(),
                device.name()
            );
            let payload = format!(
                "{{\"id\":{},\"params\":{{\"step\":\"{percent}\",\"desc\":\"downloading\"}}}}",
                self.next
            );
            let now_ms = self.now_us / 1_000;
            let now_ms_i = i64::try_from(now_ms).unwrap_or(i64::MAX);
            let Ok(served) = self.services.decode(&topic, payload.as_bytes(), now_ms_i) else {
                self.refused += 1;
                continue;
            };
            let (events, _) = self.fleet.admit(served.events);
            if let Some(first) = events.first() {
                let about = first.device().clone();
                self.fleet.note_message(&about, format!("in {topic}"));
            }
            let now = Timestamp::from_millis(now_ms);
            for event in events {
                self.fleet.apply(&event, now_ms_i);
                self.campaigns
                    .handle_undriven(idx, Input::Event(event), now);
            }
        }
    }

    /// Campaign lines that show download progress: the reports reached the campaign.
    pub fn lines_in_progress(&self) -> usize {
        self.campaigns
            .live()
            .iter()
            .flat_map(|l| l.campaign().devices())
            .filter(|r| r.percent > 0)
            .count()
    }

    /// Reports the dialect refused (none, when the bench's messages are right).
    pub fn refused(&self) -> usize {
        self.refused
    }

    /// A publish as the runner does it: the device table brought up to date, the campaign
    /// views built, the last publish replaced (and dropped, unless the caller still holds it).
    pub fn publish(&mut self) -> &(DeviceRows, Vec<CampaignView>) {
        let (rows, _) = self.rows.refresh(&mut self.fleet, &mut self.campaigns);
        let views = super::view::campaign_views(&self.campaigns, self.now_us / 1_000);
        self.published.insert((rows, views))
    }

    /// What a publish built before the table was persistent: every row, with its standing
    /// looked up in a map of every line of the live campaigns, and every campaign line.
    pub fn rebuild(&self) -> (Vec<DeviceRow>, Vec<DeviceSnapshot>) {
        let lines: Vec<DeviceSnapshot> = self
            .campaigns
            .live()
            .iter()
            .flat_map(|l| l.campaign().devices().iter().map(DeviceSnapshot::from))
            .collect();
        let standing: HashMap<DeviceId, &DeviceSnapshot> =
            lines.iter().map(|d| (d.id.device(), d)).collect();
        let rows = self.fleet.rows(|id| standing.get(id).copied());
        (rows, lines)
    }

    /// The patched table and a full rebuild show the same rows (the bench checks it once).
    pub fn agrees_with_rebuild(&mut self) -> bool {
        let rows = self.publish().0.clone();
        let (rebuilt, _) = self.rebuild();
        rows.len() == rebuilt.len()
            && rows
                .iter()
                .zip(&rebuilt)
                .all(|(a, b)| format!("{:?}", Arc::as_ref(a)) == format!("{b:?}"))
    }
}
