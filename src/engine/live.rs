//! Campaigns the engine is driving: feeding them inputs and carrying out their actions in
//! order — every `Persist` is durable before the notice it causes is published.

use crate::device_id::{DeviceId, DialectId};
use crate::protocol::{self, Notice};
use crate::rollout::{Action, Campaign, Input, LogLevel, NoticeRoute, UpgradeOrder};

use super::downloads::Downloads;
use super::outbox::Pending;
use super::runner::Runner;
use super::snapshot::{AlertLevel, TimelinePoint};

/// Timeline points kept per campaign; older halves are thinned out beyond this.
const MAX_TIMELINE_POINTS: usize = 2_000;

pub(super) struct LiveCampaign {
    pub(super) campaign: Campaign,
    /// Dialects among its targets.
    pub(super) dialects: Vec<DialectId>,
    pub(super) timeline: Vec<TimelinePoint>,
    /// The store refused a write (why): nothing more is sent for this campaign.
    pub(super) halted: Option<String>,
    /// Where its devices download from (see `downloads`).
    pub(super) downloads: Downloads,
}

/// The dialects among a campaign's targets, sorted.
pub(super) fn dialects_of(campaign: &Campaign) -> Vec<DialectId> {
    let mut dialects: Vec<DialectId> = campaign
        .devices()
        .iter()
        .map(|d| d.device.dialect())
        .collect();
    dialects.sort();
    dialects.dedup();
    dialects
}

impl LiveCampaign {
    pub(super) fn new(campaign: Campaign) -> Self {
        Self {
            dialects: dialects_of(&campaign),
            campaign,
            timeline: Vec::new(),
            halted: None,
            downloads: Downloads::AsOffered,
        }
    }

    /// Adds a timeline point if the counts moved (or a minute passed); returns whether it did.
    pub(super) fn record_timeline(&mut self, now_ms: i64) -> bool {
        let counts = self.campaign.counts();
        let point = TimelinePoint {
            at_ms: now_ms,
            succeeded: counts.succeeded,
            failed: counts.failures(),
            in_flight: counts.in_flight(),
        };
        let unchanged = self.timeline.last().is_some_and(|last| {
            last.succeeded == point.succeeded
                && last.failed == point.failed
                && last.in_flight == point.in_flight
                && now_ms - last.at_ms < 60_000
        });
        if unchanged
            || (self.campaign.state().is_finished()
                && counts.in_flight() == 0
                && !self.timeline.is_empty())
        {
            return false;
        }
        if self.timeline.len() >= MAX_TIMELINE_POINTS {
            // Keep the shape of the whole rollout: drop every other point of the older half.
            let half = self.timeline.len() / 2;
            let mut i = 0;
            self.timeline.retain(|_| {
                i += 1;
                i > half || i % 2 == 0
            });
        }
        self.timeline.push(point);
        true
    }
}

impl Runner {
    /// Starts driving a campaign; one that begins while the broker is away learns it first.
    /// `downloads`: already granted by the caller when per device.
    pub(super) fn add_live(&mut self, campaign: Campaign, downloads: Downloads) -> usize {
        self.live.push(LiveCampaign {
            downloads,
            ..LiveCampaign::new(campaign)
        });
        let idx = self.live.len() - 1;
        if !self.io.is_connected() {
            self.drive(idx, Input::BrokerLost);
        }
        idx
    }

    /// Feeds one input to campaign `idx` and carries out what it asks.
    pub(super) fn drive(&mut self, idx: usize, input: Input) {
        let now = self.clock.now();
        let Some(live) = self.live.get_mut(idx) else {
            return;
        };
        if live.halted.is_some() {
            return;
        }
        let actions = live.campaign.handle(input, now, &mut self.ids);
        if !actions.is_empty() {
            self.publisher.mark();
        }
        self.execute(idx, actions);
    }

    /// Lets every campaign fire its due timers.
    pub(super) fn tick_campaigns(&mut self) {
        let now = self.clock.now();
        for idx in 0..self.live.len() {
            let due = self.live[idx]
                .campaign
                .next_deadline()
                .is_some_and(|at| at <= now);
            if due {
                self.drive(idx, Input::Tick);
            }
        }
    }

    /// Carries out a campaign's actions: transitions and the messages they cause go to the
    /// outbox (committed, then published, at the end of the turn); the rest happens now.
    fn execute(&mut self, idx: usize, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Persist(t) => self.outbox.persist(t),
                Action::SendUpgrade(order) => {
                    let notice = Notice::Upgrade(self.notice_for(idx, &order));
                    self.queue_send(idx, &notice, order.device, Some(order.attempt));
                }
                Action::ReplyFirmwareGet { request, pending } => {
                    let device = request.device.clone();
                    let pending = pending.map(|order| self.notice_for(idx, &order));
                    let notice = Notice::FirmwareGetReply { request, pending };
                    // A lost reply is not fatal: the device asks again.
                    self.queue_send(idx, &notice, device, None);
                }
                Action::CampaignStateChanged { from, to } => {
                    let id = self.live[idx].campaign.id();
                    self.alert(AlertLevel::Info, format!("campaign {id}: {from}, now {to}"));
                    // The campaign's state is already `to`: its links end (or come back) now.
                    self.sync_downloads(idx);
                }
                Action::Log {
                    device,
                    level,
                    message,
                } => match device {
                    Some(device) => match level {
                        LogLevel::Info => tracing::info!(device = %device, "{message}"),
                        LogLevel::Warn => tracing::warn!(device = %device, "{message}"),
                    },
                    // About the whole campaign: the operator should see it, not only the log.
                    None => {
                        let id = self.live[idx].campaign.id();
                        let level = match level {
                            LogLevel::Info => AlertLevel::Info,
                            LogLevel::Warn => AlertLevel::Warning,
                        };
                        self.alert(level, format!("campaign {id}: {message}"));
                    }
                },
            }
        }
    }

    fn queue_send(&mut self, idx: usize, notice: &Notice, device: DeviceId, attempt: Option<u32>) {
        match protocol::encode(notice) {
            Ok(out) => self.outbox.send(Pending {
                campaign: idx,
                out,
                device,
                attempt,
            }),
            Err(e) => {
                let error = format!("cannot encode the notice for {device}: {e}");
                self.alert(AlertLevel::Error, error.clone());
                if let Some(attempt) = attempt {
                    self.drive(
                        idx,
                        Input::PublishFailed {
                            device,
                            attempt,
                            error,
                        },
                    );
                }
            }
        }
    }

    /// The notice for an order, routed through the device's gateway when it has one.
    fn notice_for(&mut self, idx: usize, order: &UpgradeOrder) -> protocol::UpgradeNotice {
        let route = NoticeRoute {
            gateway: self.gateway_of(&order.device),
            msg_id: self.next_msg_id(),
            timestamp_ms: self.clock.now_ms(),
            download_url: self.download_url_for(idx, &order.device),
        };
        self.live[idx].campaign.build_notice(order, &route)
    }

    fn gateway_of(&self, device: &DeviceId) -> Option<DeviceId> {
        self.fleet.get(device).and_then(|r| r.gateway.clone())
    }
}
