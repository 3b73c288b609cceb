//! What the embedded broker tells the rest of the console: refusals, for the log, the window and
//! the inspector.
//!
//! Owns: [`BrokerEvent`], [`BrokerRefusal`] and the hub that counts refusals, logs each one and
//! broadcasts it. Must never block the gate: a slow or absent receiver loses events, never
//! delays a client.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::broadcast;

/// Events kept for a lagging receiver.
const EVENT_BUFFER: usize = 1024;

/// What a client tried that was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// To connect (no, unknown or wrong credentials, back-off, unsupported protocol).
    Connect,
    /// To publish on `topic`.
    Publish { topic: String },
    /// To subscribe to `filter`.
    Subscribe { filter: String },
    /// To connect with a Last Will on `topic`.
    Will { topic: String },
}

impl std::fmt::Display for Attempt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Attempt::Connect => f.write_str("connect"),
            Attempt::Publish { topic } => write!(f, "publish on {topic:?}"),
            Attempt::Subscribe { filter } => write!(f, "subscribe to {filter:?}"),
            Attempt::Will { topic } => write!(f, "connect with a Will on {topic:?}"),
        }
    }
}

/// One refused attempt, with who tried it and why it was refused.
#[derive(Debug, Clone)]
pub struct BrokerRefusal {
    /// Unix time in milliseconds.
    pub at_ms: i64,
    pub remote: SocketAddr,
    pub client_id: String,
    /// The user name the client gave, if any.
    pub username: Option<String>,
    /// Who the client authenticated as (`None` before or without authentication).
    pub identity: Option<String>,
    pub attempt: Attempt,
    pub reason: String,
}

impl std::fmt::Display for BrokerRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "refused {} from {}", self.attempt, self.remote)?;
        match (&self.identity, &self.username) {
            (Some(who), _) => write!(f, " ({who})")?,
            (None, Some(user)) => write!(f, " (user {user:?})")?,
            (None, None) => {}
        }
        write!(f, ": {}", self.reason)
    }
}

/// What the broker reports.
#[derive(Debug, Clone)]
pub enum BrokerEvent {
    Refused(BrokerRefusal),
}

/// Refusals logged at WARN level per second over all connections; the rest go to DEBUG (a
/// port scan or a password spray across many connections must not flood the process log).
const LOUD_PER_SECOND: u64 = 20;

/// Counts, logs and broadcasts events.
pub(super) struct Events {
    tx: broadcast::Sender<BrokerEvent>,
    refusals: AtomicU64,
    /// The second (Unix) of the current WARN budget, and the refusals logged loud in it.
    loud_second: AtomicU64,
    loud_in_second: AtomicU64,
}

impl Events {
    pub(super) fn new() -> Events {
        Events {
            tx: broadcast::channel(EVENT_BUFFER).0,
            refusals: AtomicU64::new(0),
            loud_second: AtomicU64::new(0),
            loud_in_second: AtomicU64::new(0),
        }
    }

    /// Whether this second's WARN budget has room (approximate under races: it is a log).
    fn loud_budget(&self) -> bool {
        let second = u64::try_from(now_ms() / 1000).unwrap_or(0);
        if self.loud_second.swap(second, Ordering::Relaxed) != second {
            self.loud_in_second.store(0, Ordering::Relaxed);
        }
        self.loud_in_second.fetch_add(1, Ordering::Relaxed) < LOUD_PER_SECOND
    }

    /// Counts, logs (WARN) and broadcasts a refusal.
    pub(super) fn refused(&self, refusal: BrokerRefusal) {
        self.refused_with(refusal, true);
    }

    pub(super) fn subscribe(&self) -> broadcast::Receiver<BrokerEvent> {
        self.tx.subscribe()
    }

    pub(super) fn refusal_count(&self) -> u64 {
        self.refusals.load(Ordering::Relaxed)
    }

    /// Counts and broadcasts a refusal, and logs it at WARN level when `loud` (a connection
    /// that keeps trying forbidden topics is logged at DEBUG after its first few, so it cannot
    /// flood the log; every refusal is still counted and broadcast).
    pub(super) fn refused_with(&self, refusal: BrokerRefusal, loud: bool) {
        self.refusals.fetch_add(1, Ordering::Relaxed);
        if loud && self.loud_budget() {
            tracing::warn!(target: "ota_console::broker", "{refusal}");
        } else {
            tracing::debug!(target: "ota_console::broker", "{refusal}");
        }
        // No receiver is not an error: the count and the log still have it.
        let _ = self.tx.send(BrokerEvent::Refused(refusal));
    }
}

/// Now, as Unix milliseconds.
pub(super) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_of_refusals_gets_a_bounded_warn_budget_per_second() {
        let events = Events::new();
        let loud = (0..1_000).filter(|_| events.loud_budget()).count();
        // All in (at most) two seconds of wall time: at most two budgets.
        assert!(
            (LOUD_PER_SECOND as usize..=2 * LOUD_PER_SECOND as usize).contains(&loud),
            "{loud}"
        );
    }

    #[test]
    fn refusals_are_counted_broadcast_and_said_in_words() {
        let events = Events::new();
        let mut rx = events.subscribe();
        let refusal = BrokerRefusal {
            at_ms: now_ms(),
            remote: "10.0.0.9:5555".parse().unwrap(),
            client_id: "c".into(),
            username: Some("pump".into()),
            identity: None,
            attempt: Attempt::Subscribe { filter: "#".into() },
            reason: "only the console may subscribe with wildcards (\"#\")".into(),
        };
        events.refused(refusal.clone());
        assert_eq!(events.refusal_count(), 1);
        let BrokerEvent::Refused(got) = rx.try_recv().unwrap();
        assert_eq!(got.attempt, refusal.attempt);
        assert_eq!(
            got.to_string(),
            "refused subscribe to \"#\" from 10.0.0.9:5555 (user \"pump\"): only the console may \
             subscribe with wildcards (\"#\")"
        );
        // Without receivers the refusal is still counted.
        drop(rx);
        events.refused(refusal);
        assert_eq!(events.refusal_count(), 2);
    }
}
