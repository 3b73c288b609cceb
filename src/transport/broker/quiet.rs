//! When the broker last delivered something to a client, so a console that is about to exit can
//! let the broker finish delivering what it published last (the reply to a device's final
//! report) instead of cutting it off with the process.
//!
//! MQTT gives a publisher no word of delivery to subscribers; the gate is the one place that
//! sees bytes leave for clients. "Quiet" is a pause in those writes, bounded by a deadline.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The time of the gate's last write to any client.
#[derive(Debug)]
pub(super) struct Deliveries {
    since: Instant,
    /// Milliseconds after `since` of the last write (0: none yet).
    last_ms: AtomicU64,
}

impl Deliveries {
    pub(super) fn new() -> Deliveries {
        Deliveries {
            since: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    /// A write to a client just happened.
    pub(super) fn delivered(&self) {
        let ms = u64::try_from(self.since.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms.max(1), Ordering::Relaxed);
    }

    /// How long ago the last write was, as of `now` (`None`: never).
    fn idle_at(&self, now: Instant) -> Option<Duration> {
        match self.last_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(
                now.saturating_duration_since(self.since)
                    .saturating_sub(Duration::from_millis(ms)),
            ),
        }
    }

    /// Waits until nothing was written to a client for `quiet`, counted from the call at the
    /// earliest (what the caller just published may not have been written yet), or `limit`
    /// passed.
    pub(super) async fn wait_quiet(&self, quiet: Duration, limit: Duration) {
        let called = Instant::now();
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let now = Instant::now();
            let since_call = now.saturating_duration_since(called);
            let idle = self.idle_at(now).map_or(since_call, |i| i.min(since_call));
            if idle >= quiet {
                return;
            }
            let wake = (tokio::time::Instant::now() + (quiet - idle)).min(deadline);
            if wake >= deadline {
                tokio::time::sleep_until(deadline).await;
                return;
            }
            tokio::time::sleep_until(wake).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_counts_from_the_last_write() {
        let d = Deliveries::new();
        assert_eq!(d.idle_at(Instant::now()), None);
        d.delivered();
        let later = Instant::now() + Duration::from_millis(500);
        let idle = d.idle_at(later).unwrap_or_default();
        assert!(idle >= Duration::from_millis(400), "{idle:?}");
        assert!(idle <= Duration::from_millis(500), "{idle:?}");
    }

    #[tokio::test]
    async fn the_quiet_is_counted_from_the_call_at_the_earliest() {
        let d = Deliveries::new();
        d.delivered();
        // A write long before the call does not make the broker quiet at once: what the
        // caller just published may not have been written yet.
        let start = Instant::now();
        d.wait_quiet(Duration::from_millis(100), Duration::from_secs(2))
            .await;
        let waited = start.elapsed();
        assert!(waited >= Duration::from_millis(100), "{waited:?}");
        assert!(waited < Duration::from_secs(2), "{waited:?}");
    }

    #[tokio::test]
    async fn a_broker_that_keeps_writing_is_waited_for_until_the_limit() {
        let d = std::sync::Arc::new(Deliveries::new());
        let writer = d.clone();
        let busy = tokio::spawn(async move {
            loop {
                writer.delivered();
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        let start = Instant::now();
        d.wait_quiet(Duration::from_millis(100), Duration::from_millis(300))
            .await;
        busy.abort();
        assert!(start.elapsed() >= Duration::from_millis(300));
    }
}
