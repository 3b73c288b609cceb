//! The engine's traffic meter: messages received, published and refused, the receive rate,
//! the bytes the firmware server has sent, and the refusals of the embedded broker's gate.
//!
//! Rules it keeps: counters only grow; the rate is taken over the last few seconds of samples
//! (at most six); the process log hears of refusals at most once per (topic, kind) per minute
//! and then as a count ([`RefusalLog`]), so a device repeating a bad message, or a client
//! guessing passwords, cannot flood it (the inspector still records each).

use std::collections::{HashMap, VecDeque};

use tokio::time::Instant;

use super::snapshot::Traffic;

/// Samples of the received counter the rate is taken over (one per housekeeping second).
const RATE_SAMPLES: usize = 6;

#[derive(Debug, Default)]
pub(super) struct TrafficMeter {
    counts: Traffic,
    /// (when, messages received by then), newest last.
    rate_window: VecDeque<(Instant, u64)>,
    /// Bytes the firmware server had sent at the last look (downloads make the snapshot dirty).
    served_bytes: u64,
    /// Refusals the embedded broker reported (see `broker_guard.rs`).
    broker_refusals: u64,
    /// Rate limit for the log of refused device messages and broker refusals.
    refusals: RefusalLog,
}

impl TrafficMeter {
    pub(super) fn received(&mut self) {
        self.counts.received += 1;
    }

    pub(super) fn published(&mut self) {
        self.counts.published += 1;
    }

    /// A message the link could not take.
    pub(super) fn not_sent(&mut self) {
        self.counts.not_sent += 1;
    }

    /// A progress report about one device was taken in.
    pub(super) fn progress(&mut self) {
        self.counts.progress += 1;
    }

    /// A campaign notice was published (counted in `published` too).
    pub(super) fn notice(&mut self) {
        self.counts.notices += 1;
    }

    /// A device message was refused: counted, and whether the log should hear of it.
    pub(super) fn refused(&mut self, topic: &str, kind: &'static str, now_ms: i64) -> LogDecision {
        self.counts.rejected += 1;
        self.refusals.note(topic, kind, now_ms)
    }

    /// The embedded broker's gate refused something (`key`: who and where); counted, and
    /// whether the operator should hear of it.
    pub(super) fn broker_refused(
        &mut self,
        key: &str,
        what: &'static str,
        now_ms: i64,
    ) -> LogDecision {
        self.broker_refusals += 1;
        self.refusals.note(key, what, now_ms)
    }

    /// Takes a sample of the receive rate and notes the firmware server's total (when there is
    /// one); returns whether either changed what the snapshot shows.
    pub(super) fn housekeeping(&mut self, now: Instant, served_total: Option<u64>) -> bool {
        let mut changed = self.update_rate(now);
        if let Some(total) = served_total
            && total != self.served_bytes
        {
            self.served_bytes = total;
            changed = true;
        }
        changed
    }

    fn update_rate(&mut self, now: Instant) -> bool {
        self.rate_window.push_back((now, self.counts.received));
        while self.rate_window.len() > RATE_SAMPLES {
            self.rate_window.pop_front();
        }
        if let (Some((t0, n0)), Some((t1, n1))) =
            (self.rate_window.front(), self.rate_window.back())
        {
            let secs = t1.duration_since(*t0).as_secs_f64();
            let rate = if secs > 0.0 {
                (n1 - n0) as f64 / secs
            } else {
                0.0
            };
            if (rate - self.counts.received_per_sec).abs() > f64::EPSILON {
                self.counts.received_per_sec = rate;
                return true;
            }
        }
        false
    }

    pub(super) fn counts(&self) -> Traffic {
        self.counts
    }

    pub(super) fn broker_refusals(&self) -> u64 {
        self.broker_refusals
    }
}

/// How long a (topic, kind) is logged once and then only counted.
const REFUSAL_LOG_WINDOW_MS: i64 = 60_000;
/// Distinct (topic, kind) pairs tracked; beyond that (a device varying its topic), refusals share
/// one catch-all entry, so the log stays bounded and so does this table.
const REFUSAL_LOG_MAX_KEYS: usize = 1_024;

/// Whether to write a refusal to the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LogDecision {
    /// Log it; `suppressed` refusals like it were not logged in the window before.
    Log {
        suppressed: u64,
    },
    Suppress,
}

/// Rate-limits the log of refused messages: the first of each (topic, kind) per minute is logged,
/// the rest counted and reported with the next logged one. The inspector still records each.
#[derive(Debug, Default)]
struct RefusalLog {
    /// (topic, kind) → (start of its window, refusals suppressed in it).
    windows: HashMap<(String, &'static str), (i64, u64)>,
}

impl RefusalLog {
    fn note(&mut self, topic: &str, kind: &'static str, now_ms: i64) -> LogDecision {
        let mut key = (topic.to_owned(), kind);
        if !self.windows.contains_key(&key) && self.windows.len() >= REFUSAL_LOG_MAX_KEYS {
            self.windows
                .retain(|_, (start, _)| now_ms - *start < REFUSAL_LOG_WINDOW_MS);
            if self.windows.len() >= REFUSAL_LOG_MAX_KEYS {
                key = ("(many topics)".to_owned(), "any");
            }
        }
        match self.windows.get_mut(&key) {
            Some((start, suppressed)) if now_ms - *start < REFUSAL_LOG_WINDOW_MS => {
                *suppressed += 1;
                LogDecision::Suppress
            }
            Some((start, suppressed)) => {
                let before = std::mem::take(suppressed);
                *start = now_ms;
                LogDecision::Log { suppressed: before }
            }
            None => {
                self.windows.insert(key, (now_ms, 0));
                LogDecision::Log { suppressed: 0 }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_refusal_per_topic_and_kind_per_minute_is_logged_then_counted() {
        let mut log = RefusalLog::default();
        assert_eq!(
            log.note("t", "not JSON", 0),
            LogDecision::Log { suppressed: 0 }
        );
        for i in 1..=5 {
            assert_eq!(log.note("t", "not JSON", i * 1_000), LogDecision::Suppress);
        }
        // Another kind or topic has its own window.
        assert_eq!(
            log.note("t", "too large", 1),
            LogDecision::Log { suppressed: 0 }
        );
        assert_eq!(
            log.note("u", "not JSON", 1),
            LogDecision::Log { suppressed: 0 }
        );
        // A minute later: logged again, with the count of what was held back.
        assert_eq!(
            log.note("t", "not JSON", 60_000),
            LogDecision::Log { suppressed: 5 }
        );
        assert_eq!(log.note("t", "not JSON", 60_001), LogDecision::Suppress);
    }

    #[test]
    fn the_rate_is_taken_over_the_last_samples_and_refusals_are_counted() {
        let mut meter = TrafficMeter::default();
        let start = Instant::now();
        assert!(!meter.housekeeping(start, None));
        for _ in 0..10 {
            meter.received();
        }
        assert!(meter.housekeeping(start + std::time::Duration::from_secs(2), Some(5)));
        assert!((meter.counts().received_per_sec - 5.0).abs() < 1e-9);
        assert!(!meter.housekeeping(start + std::time::Duration::from_secs(2), Some(5)));
        assert_eq!(
            meter.refused("t", "not JSON", 0),
            LogDecision::Log { suppressed: 0 }
        );
        assert_eq!(meter.refused("t", "not JSON", 1), LogDecision::Suppress);
        assert_eq!(meter.counts().rejected, 2);
        assert_eq!(
            meter.broker_refused("10.0.0.9 login x", "login", 0),
            LogDecision::Log { suppressed: 0 }
        );
        assert_eq!(meter.broker_refusals(), 1);
    }

    #[test]
    fn the_table_stays_bounded_when_every_topic_differs() {
        let mut log = RefusalLog::default();
        let mut logged = 0;
        for i in 0..10_000 {
            if log.note(&format!("topic/{i}"), "not JSON", 0) != LogDecision::Suppress {
                logged += 1;
            }
        }
        assert!(log.windows.len() <= REFUSAL_LOG_MAX_KEYS + 1);
        assert_eq!(logged, REFUSAL_LOG_MAX_KEYS + 1);
        // Once the windows expire, room is made again.
        assert_eq!(
            log.note("fresh", "not JSON", REFUSAL_LOG_WINDOW_MS),
            LogDecision::Log { suppressed: 0 }
        );
    }
}
