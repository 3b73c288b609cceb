//! The notice rate limiter: a token bucket on the injected clock, in exact integer arithmetic
//! (no floats, so the same inputs always give the same schedule). It only counts; it never
//! decides who gets the token.
//!
//! A fast rate is paced in grains of [`PACING_GRAIN_MS`], not one notice at a time. The engine
//! feeds a tick when the next token is due, but a turn costs at least one fsynced commit (~5 ms
//! on a virtual disk, more under load): with a bucket of one, one notice per turn was all that
//! went out, whatever the rate (60,000/min gave ~200 notices per second, issue #14). So the
//! bucket holds at least what the rate accrues in one grain, and a turn sends what came due
//! while the previous one was committing. To keep the promise of [`RateLimit`] (no half-open
//! minute holds more than `per_minute + burst - 1`), the refill is lowered by the tokens the
//! grain adds to the bucket: at 60,000/min that is 59,951/min, 0.08 % slower in the long run.
//! Below 1,200/min a grain holds less than one token and nothing changes.

use super::Timestamp;
use super::policy::RateLimit;

/// One token is this many units. Refilling `per_minute` units per millisecond then gives exactly
/// `per_minute` tokens per 60 000 ms.
const UNITS_PER_TOKEN: u64 = 60_000;

/// The bucket holds at least the tokens the rate accrues in this many milliseconds: what one
/// engine turn may have to catch up on (see the module documentation).
pub const PACING_GRAIN_MS: u64 = 50;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenBucket {
    /// The refill, tokens per minute: the limit's rate less what the grain adds to the bucket.
    per_minute: u64,
    capacity_units: u64,
    units: u64,
    last: Timestamp,
}

impl TokenBucket {
    /// A full bucket at `now`.
    pub fn new(limit: RateLimit, now: Timestamp) -> Self {
        let rate = u64::from(limit.per_minute.max(1));
        let burst = u64::from(limit.burst.max(1));
        let grain = rate * PACING_GRAIN_MS / 60_000;
        // Below `rate` whatever the grain (it is under a minute), so the refill stays positive.
        let extra = grain.saturating_sub(burst);
        let capacity_units = (burst + extra) * UNITS_PER_TOKEN;
        Self {
            per_minute: rate - extra,
            capacity_units,
            units: capacity_units,
            last: now,
        }
    }

    fn refill(&mut self, now: Timestamp) {
        // A clock that steps back must not mint tokens or panic.
        let elapsed = now.as_millis().saturating_sub(self.last.as_millis());
        self.units = self
            .units
            .saturating_add(elapsed.saturating_mul(self.per_minute))
            .min(self.capacity_units);
        self.last = self.last.max(now);
    }

    /// Takes one token if there is one.
    pub fn try_take(&mut self, now: Timestamp) -> bool {
        self.refill(now);
        if self.units >= UNITS_PER_TOKEN {
            self.units -= UNITS_PER_TOKEN;
            true
        } else {
            false
        }
    }

    /// When the next token will be there (`now` if one is there already).
    pub fn next_token_at(&self, now: Timestamp) -> Timestamp {
        let mut probe = self.clone();
        probe.refill(now);
        if probe.units >= UNITS_PER_TOKEN {
            return now.max(probe.last);
        }
        let missing = UNITS_PER_TOKEN - probe.units;
        probe.last.plus_ms(missing.div_ceil(probe.per_minute))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    #[test]
    fn burst_then_even_spacing() {
        let mut b = TokenBucket::new(
            RateLimit {
                per_minute: 6,
                burst: 2,
            },
            at(0),
        );
        assert!(b.try_take(at(0)));
        assert!(b.try_take(at(0)));
        assert!(!b.try_take(at(0)));
        assert_eq!(b.next_token_at(at(0)), at(10_000));
        assert!(!b.try_take(at(9_999)));
        assert!(b.try_take(at(10_000)));
        assert_eq!(b.next_token_at(at(10_000)), at(20_000));
    }

    #[test]
    fn never_more_than_per_minute_in_a_window_with_burst_one() {
        let mut b = TokenBucket::new(
            RateLimit {
                per_minute: 7,
                burst: 1,
            },
            at(0),
        );
        let mut sent = Vec::new();
        for ms in (0..600_000).step_by(100) {
            if b.try_take(at(ms)) {
                sent.push(ms);
            }
        }
        for (i, &start) in sent.iter().enumerate() {
            let in_window = sent[i..]
                .iter()
                .take_while(|&&t| t < start + 60_000)
                .count();
            assert!(
                in_window <= 7,
                "{in_window} notices in the minute from {start}"
            );
        }
        assert!(sent.len() >= 69, "{}", sent.len());
    }

    /// Takes every token there is at each of `turns`; the instants of the notices.
    fn drain_at(b: &mut TokenBucket, turns: impl IntoIterator<Item = u64>) -> Vec<u64> {
        let mut sent = Vec::new();
        for ms in turns {
            while b.try_take(at(ms)) {
                sent.push(ms);
            }
        }
        sent
    }

    /// The most notices any half-open 60 s window holds.
    fn busiest_minute(sent: &[u64]) -> usize {
        let mut most = 0;
        let mut end = 0;
        for (i, &start) in sent.iter().enumerate() {
            while end < sent.len() && sent[end] < start + 60_000 {
                end += 1;
            }
            most = most.max(end - i);
        }
        most
    }

    #[test]
    fn a_fast_rate_catches_up_what_accrued_during_a_slow_turn() {
        let limit = RateLimit {
            per_minute: 60_000,
            burst: 1,
        };
        let mut b = TokenBucket::new(limit, at(0));
        // A full bucket holds one grain's worth: 50 ms at 1,000 per second.
        assert_eq!(drain_at(&mut b, [0]).len(), 50);
        assert_eq!(
            b.next_token_at(at(0)),
            at(2),
            "59,951 a minute: a token per 1.0008 ms"
        );
        // Turns 7 ms apart (a commit each) still send about seven notices each.
        let sent = drain_at(&mut b, (1..=100).map(|t| t * 7));
        assert!((695..=700).contains(&sent.len()), "{}", sent.len());
        // A turn that comes a second late finds one grain, not a second's worth.
        assert_eq!(drain_at(&mut b, [1_700]).len(), 50);
    }

    #[test]
    fn a_fast_rate_keeps_every_minute_within_the_limit() {
        for (per_minute, burst) in [(60_000, 1), (60_000, 20), (12_000, 1), (2_400, 3)] {
            let limit = RateLimit { per_minute, burst };
            let mut b = TokenBucket::new(limit, at(0));
            // Turns every 3 ms for a while, then a pause that fills the bucket, then turns again:
            // the pause's full bucket is what could push a minute over.
            let turns = (0..40_000)
                .step_by(3)
                .chain(100_000..100_001)
                .chain((100_001..400_000).step_by(3));
            let sent = drain_at(&mut b, turns);
            let most = busiest_minute(&sent);
            let limit = per_minute as usize + burst as usize - 1;
            assert!(
                most <= limit,
                "{per_minute}/min burst {burst}: {most} in a minute"
            );
            // And the limit is nearly reached: the lowered refill costs less than 0.1 %.
            assert!(
                most * 1000 >= limit * 999,
                "{per_minute}/min burst {burst}: {most}"
            );
        }
    }

    #[test]
    fn a_slow_rate_is_paced_one_token_at_a_time() {
        // 1,199/min accrues less than one token per grain: the bucket stays the burst.
        let mut b = TokenBucket::new(
            RateLimit {
                per_minute: 1_199,
                burst: 1,
            },
            at(0),
        );
        assert_eq!(drain_at(&mut b, [0, 10_000]).len(), 2);
    }

    #[test]
    fn clock_stepping_back_mints_nothing() {
        let mut b = TokenBucket::new(
            RateLimit {
                per_minute: 1,
                burst: 1,
            },
            at(100_000),
        );
        assert!(b.try_take(at(100_000)));
        assert!(!b.try_take(at(0)));
        assert!(!b.try_take(at(159_999)));
        assert!(b.try_take(at(160_000)));
    }
}
