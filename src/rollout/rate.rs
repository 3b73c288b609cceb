//! The notice rate limiter: a token bucket on the injected clock, in exact integer arithmetic
//! (no floats, so the same inputs always give the same schedule). It only counts; it never
//! decides who gets the token.

use super::Timestamp;
use super::policy::RateLimit;

/// One token is this many units. Refilling `per_minute` units per millisecond then gives exactly
/// `per_minute` tokens per 60 000 ms.
const UNITS_PER_TOKEN: u64 = 60_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenBucket {
    per_minute: u64,
    capacity_units: u64,
    units: u64,
    last: Timestamp,
}

impl TokenBucket {
    /// A full bucket at `now`.
    pub fn new(limit: RateLimit, now: Timestamp) -> Self {
        let capacity_units = u64::from(limit.burst.max(1)) * UNITS_PER_TOKEN;
        Self {
            per_minute: u64::from(limit.per_minute.max(1)),
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
