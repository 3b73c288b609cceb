//! The read-only picture of everything the engine knows, published after each change.
//! Cheap to share (`Arc`); never mutated after it is published.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;

use crate::device_id::{DeviceId, DialectId};
use crate::firmware::StoredPackage;
use crate::fleet::DeviceRecord;
use crate::rollout::{CampaignSnapshot, CampaignSpec, DeviceSnapshot};
use crate::transport::http::ServedStats;
use crate::transport::mqtt::LinkState;

/// Message counters since start, and the recent rate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Traffic {
    pub received: u64,
    pub published: u64,
    /// Messages the engine meant to publish that the link could not take (its outgoing queue
    /// full, the message too large): lost unless the campaign sends them again.
    pub not_sent: u64,
    /// Messages refused by the decoders.
    pub rejected: u64,
    /// Progress reports taken in: one per device a progress message is about (a gateway's
    /// batch of its sub-devices' progress counts each entry), as the simulator counts them.
    pub progress: u64,
    /// Campaign notices published (first sends, retries and re-sends), without the protocol's
    /// answers and replies.
    pub notices: u64,
    /// Received messages per second over the last few seconds.
    pub received_per_sec: f64,
}

/// Who may use the broker the console is on, as far as the console knows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BrokerGuard {
    /// An external broker: its own configuration decides.
    #[default]
    External,
    /// The embedded broker admits only known credentials, each limited to its own topics.
    Secure,
    /// The embedded broker admits anyone (`--open-broker`, or the demo on loopback).
    Open,
}

/// One line of the device table.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceRow {
    pub record: DeviceRecord,
    /// Topic and time of the last message from or about it.
    pub last_message: Option<String>,
    /// Where it stands in the newest campaign that targets it.
    pub rollout: Option<DeviceSnapshot>,
}

/// The device table, sorted by device id: a persistent vector, so a snapshot shares every row
/// that did not change with the one before it (cloning it copies no row; the engine changes a
/// row in O(log n)).
pub type DeviceRows = imbl::Vector<Arc<DeviceRow>>;

/// The ids of the rows that changed at each of the last few revisions (at most
/// [`RowChangeLog::MAX_REVISIONS`] revisions and [`RowChangeLog::MAX_IDS`] ids, so it stays small
/// to clone into every snapshot). A reader that skipped revisions (a hidden window, a frame
/// slower than the engine) still patches; one that fell further behind rebuilds once.
#[derive(Debug, Clone, Default)]
pub struct RowChangeLog {
    /// Every change after this revision is in `entries` (`None`: nothing is known).
    complete_after: Option<u64>,
    /// The revision last recorded.
    latest: u64,
    /// Oldest first: a revision and the rows that changed from the revision before it.
    entries: VecDeque<(u64, Arc<[DeviceId]>)>,
    ids: usize,
}

impl RowChangeLog {
    pub const MAX_REVISIONS: usize = 64;
    pub const MAX_IDS: usize = 200_000;

    /// Records what changed at `revision` (one more than the last recorded): `changed` names
    /// every row that differs from the revision before, `None` says any may have.
    pub fn record(&mut self, revision: u64, changed: Option<Arc<[DeviceId]>>) {
        let follows = self.latest.checked_add(1) == Some(revision) && self.complete_after.is_some();
        self.latest = revision;
        match changed {
            Some(ids) if follows => {
                self.ids += ids.len();
                self.entries.push_back((revision, ids));
            }
            Some(ids) => {
                // Nothing known before: the log starts at this revision's predecessor.
                self.entries.clear();
                self.ids = ids.len();
                self.entries.push_back((revision, ids));
                self.complete_after = Some(revision.saturating_sub(1));
            }
            None => {
                self.entries.clear();
                self.ids = 0;
                self.complete_after = Some(revision);
            }
        }
        while self.entries.len() > Self::MAX_REVISIONS || self.ids > Self::MAX_IDS {
            let Some((oldest, ids)) = self.entries.pop_front() else {
                break;
            };
            self.ids -= ids.len();
            self.complete_after = Some(oldest);
        }
    }

    /// The rows that changed after `revision` up to the latest one, sorted and each once;
    /// `None` when the log does not reach back that far (then anything may have changed).
    pub fn since(&self, revision: u64) -> Option<Vec<DeviceId>> {
        if revision > self.latest || self.complete_after.is_none_or(|after| revision < after) {
            return None;
        }
        let mut ids: Vec<DeviceId> = self
            .entries
            .iter()
            .filter(|(at, _)| *at > revision)
            .flat_map(|(_, ids)| ids.iter().cloned())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        Some(ids)
    }
}

/// Succeeded / failed / in flight at one moment, for the campaign plot.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TimelinePoint {
    pub at_ms: i64,
    pub succeeded: usize,
    pub failed: usize,
    pub in_flight: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct CampaignView {
    pub snapshot: CampaignSnapshot,
    /// What was rolled out and how: the offer (URL and digests), module, policy, dialect options.
    pub spec: CampaignSpec,
    /// Dialects among its targets (some cannot recall a notice on cancel:
    /// [`crate::protocol::CancelSupport`]).
    pub dialects: Vec<DialectId>,
    pub timeline: Vec<TimelinePoint>,
    /// Estimated seconds to completion, when running: the recent finishing rate for the devices
    /// still moving, the deadlines and retries of silent ones.
    pub eta_secs: Option<u64>,
    /// Whether the engine is driving it now (false: history only).
    pub live: bool,
    /// Why the engine stopped driving it mid-way (the database refused a write): nothing more
    /// is sent until it is resumed after a restart.
    pub halted: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImportProgress {
    pub file: PathBuf,
    pub done_bytes: u64,
    pub total_bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertLevel {
    Info,
    Warning,
    Error,
}

/// A message for the operator (broker refused, port taken, file unreadable, device error...).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    pub at_ms: i64,
    pub level: AlertLevel,
    pub text: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    /// Increases with every published change.
    pub revision: u64,
    pub link: LinkState,
    /// "embedded broker on 0.0.0.0:1883" or the external URL.
    pub broker: String,
    /// Whether the embedded broker is secured or open.
    pub broker_guard: BrokerGuard,
    /// Logins, publishes and subscriptions the embedded broker refused since start.
    pub broker_refusals: u64,
    /// Where devices download packages from (base URL of the embedded server, or the external
    /// URL).
    pub firmware_base: Option<String>,
    /// What the embedded firmware server sent, per package and per client: download progress
    /// seen from the server, also for devices that report none.
    pub served: Option<ServedStats>,
    pub traffic: Traffic,
    /// Sorted by device id.
    pub devices: DeviceRows,
    /// Which rows changed in each of the last revisions: a reader that derived something from
    /// an earlier snapshot patches it with [`RowChangeLog::since`] instead of redoing it.
    #[serde(skip)]
    pub row_changes: RowChangeLog,
    /// The package library, newest first.
    pub packages: Vec<StoredPackage>,
    /// The import under way.
    pub import: Option<ImportProgress>,
    /// Newest first; live ones and history from the database.
    pub campaigns: Vec<CampaignView>,
    /// Newest last, bounded.
    pub alerts: Vec<Alert>,
}

impl Snapshot {
    /// The picture before the engine has done anything.
    pub fn empty(broker: String) -> Self {
        Self {
            revision: 0,
            link: LinkState::Connecting,
            broker,
            broker_guard: BrokerGuard::default(),
            broker_refusals: 0,
            firmware_base: None,
            served: None,
            traffic: Traffic::default(),
            devices: DeviceRows::new(),
            row_changes: RowChangeLog::default(),
            packages: Vec::new(),
            import: None,
            campaigns: Vec::new(),
            alerts: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(names: &[&str]) -> Arc<[DeviceId]> {
        names
            .iter()
            .map(|n| DeviceId::dji(n).unwrap())
            .collect::<Vec<_>>()
            .into()
    }

    fn names(ids: Option<Vec<DeviceId>>) -> Option<Vec<String>> {
        ids.map(|ids| ids.iter().map(|i| i.name().to_owned()).collect())
    }

    #[test]
    fn the_log_unites_the_changes_after_a_revision_and_knows_where_it_stops() {
        let mut log = RowChangeLog::default();
        assert_eq!(log.since(0), None, "nothing recorded");
        log.record(1, None);
        log.record(2, Some(ids(&["B", "A"])));
        log.record(3, Some(ids(&["C", "A"])));
        assert_eq!(names(log.since(3)), Some(vec![]));
        assert_eq!(names(log.since(2)), Some(vec!["A".into(), "C".into()]));
        assert_eq!(
            names(log.since(1)),
            Some(vec!["A".into(), "B".into(), "C".into()])
        );
        assert_eq!(log.since(0), None, "revision 1 rebuilt everything");
        assert_eq!(log.since(4), None, "a revision not yet published");
        // A rebuild forgets what came before.
        log.record(4, None);
        assert_eq!(log.since(3), None);
        assert_eq!(names(log.since(4)), Some(vec![]));
        // A gap in the revisions too.
        log.record(6, Some(ids(&["D"])));
        assert_eq!(log.since(4), None);
        assert_eq!(names(log.since(5)), Some(vec!["D".into()]));
    }

    #[test]
    fn the_log_keeps_a_bounded_number_of_revisions() {
        let mut log = RowChangeLog::default();
        log.record(1, None);
        let last = 1 + RowChangeLog::MAX_REVISIONS as u64 + 10;
        for revision in 2..=last {
            log.record(revision, Some(ids(&["A"])));
        }
        assert_eq!(log.entries.len(), RowChangeLog::MAX_REVISIONS);
        let oldest = last - RowChangeLog::MAX_REVISIONS as u64;
        assert_eq!(names(log.since(oldest)), Some(vec!["A".into()]));
        assert_eq!(log.since(oldest - 1), None);
    }
}
