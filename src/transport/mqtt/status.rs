//! What the link tells its handles: where it stands ([`LinkState`]), what the broker said of
//! the session ([`SessionNews`]), each publish received ([`Inbound`]), and the counters the
//! actor and the handles share.

use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::Duration;

use bytes::Bytes;

/// Where the link stands, for the status bar and for tests.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum LinkState {
    Connecting,
    Connected,
    Reconnecting {
        reason: String,
        attempt: u32,
        retry_in: Duration,
    },
    /// The link gave up (the broker refused our credentials or identity) or was shut down.
    Failed {
        reason: String,
    },
}

/// What the broker said about the session at each ConnAck. Followed through a `watch`
/// (`MqttLink::session`), so a consumer never misses a lost session even when several
/// reconnects happen between two looks: `lost` only grows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionNews {
    /// ConnAcks received since the link started.
    pub connacks: u64,
    /// Whether the last ConnAck said the broker had kept our session.
    pub present: bool,
    /// Reconnects after which the broker no longer had the session this link had opened (it
    /// restarted without persistence, expired it, or the link asked for a clean one): what was
    /// published to us meanwhile is gone.
    pub lost: u64,
    /// The link asks for a persistent session (`clean_session = false`).
    pub persistent: bool,
}

/// One publish received from the broker, undecoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inbound {
    pub topic: String,
    pub payload: Bytes,
}

/// Shared between handles and the actor.
#[derive(Default)]
pub(super) struct Counters {
    pub(super) received: AtomicU64,
    pub(super) queued: AtomicU64,
    pub(super) published: AtomicU64,
    pub(super) dropped: AtomicU64,
    pub(super) reconnects: AtomicU64,
    pub(super) sessions_lost: AtomicU64,
    /// Publishes the actor holds outside the handle's channel (carried over a failed
    /// connection, or waiting for room in the inflight window).
    pub(super) carried: AtomicU64,
    pub(super) stopped: AtomicBool,
}
