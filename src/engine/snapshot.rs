//! The read-only picture of everything the engine knows, published after each change.
//! Cheap to share (`Arc`); never mutated after it is published.

use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;

use crate::device_id::DialectId;
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
    pub devices: Arc<Vec<DeviceRow>>,
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
            devices: Arc::new(Vec::new()),
            packages: Vec::new(),
            import: None,
            campaigns: Vec::new(),
            alerts: Vec::new(),
        }
    }
}
