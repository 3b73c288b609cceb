//! One campaign the engine is driving: its state machine, the dialects among its targets, its
//! timeline for the plot, where its devices download from, and whether it was halted. Read by
//! anyone in the engine; changed only by [`super::Campaigns`] (the mutators are private to
//! `campaigns/`), so a halted campaign cannot be driven from elsewhere.

use std::cell::Cell;

use crate::device_id::DialectId;
use crate::engine::downloads::Downloads;
use crate::engine::snapshot::TimelinePoint;
use crate::rollout::Campaign;

/// Timeline points kept per campaign; older halves are thinned out beyond this.
const MAX_TIMELINE_POINTS: usize = 2_000;

pub(in crate::engine) struct LiveCampaign {
    campaign: Campaign,
    /// Dialects among its targets.
    dialects: Vec<DialectId>,
    timeline: Vec<TimelinePoint>,
    /// The store refused a write (why): nothing more is sent for this campaign.
    halted: Option<String>,
    /// Where its devices download from (see `downloads`).
    downloads: Downloads,
    /// The last ETA reckoned for the snapshot, and when (engine clock, ms): reckoning reads
    /// every device, so the view keeps it for a while (a `Cell`: the view reads campaigns
    /// through shared references).
    eta_memo: Cell<Option<(u64, Option<u64>)>>,
}

/// The dialects among a campaign's targets, sorted.
pub(in crate::engine) fn dialects_of(campaign: &Campaign) -> Vec<DialectId> {
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
    /// `downloads`: already granted by the caller when per device.
    pub(super) fn new(campaign: Campaign, downloads: Downloads) -> Self {
        Self {
            dialects: dialects_of(&campaign),
            campaign,
            timeline: Vec::new(),
            halted: None,
            downloads,
            eta_memo: Cell::new(None),
        }
    }

    pub(in crate::engine) fn campaign(&self) -> &Campaign {
        &self.campaign
    }

    /// For [`super::Campaigns`] only: driving goes through its halted check.
    pub(super) fn campaign_mut(&mut self) -> &mut Campaign {
        &mut self.campaign
    }

    /// Dialects among its targets, sorted.
    pub(in crate::engine) fn dialects(&self) -> &[DialectId] {
        &self.dialects
    }

    pub(in crate::engine) fn timeline(&self) -> &[TimelinePoint] {
        &self.timeline
    }

    /// The last ETA reckoned and when (see `eta_memo`).
    pub(in crate::engine) fn eta_memo(&self) -> Option<(u64, Option<u64>)> {
        self.eta_memo.get()
    }

    pub(in crate::engine) fn remember_eta(&self, at_ms: u64, eta: Option<u64>) {
        self.eta_memo.set(Some((at_ms, eta)));
    }

    /// Why the engine stopped driving it (the database refused a write), if it did.
    pub(in crate::engine) fn halted(&self) -> Option<&String> {
        self.halted.as_ref()
    }

    pub(super) fn is_halted(&self) -> bool {
        self.halted.is_some()
    }

    /// Stops it for good in this run: nothing more is driven or sent.
    pub(super) fn halt(&mut self, why: String) {
        self.halted = Some(why);
    }

    pub(super) fn downloads(&self) -> Downloads {
        self.downloads
    }

    pub(super) fn set_downloads(&mut self, downloads: Downloads) {
        self.downloads = downloads;
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
