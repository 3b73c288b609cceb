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

    /// Waits until nothing was written to a client for `quiet`, or `limit` passed.
    pub(super) async fn wait_quiet(&self, quiet: Duration, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let idle = self.idle_at(Instant::now()).unwrap_or(Duration::MAX);
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

    #[tokio::test(start_paused = true)]
    async fn a_broker_that_never_delivered_is_quiet_at_once() {
        let d = Deliveries::new();
        let start = tokio::time::Instant::now();
        d.wait_quiet(Duration::from_millis(100), Duration::from_secs(2))
            .await;
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}
