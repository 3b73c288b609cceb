//! The wait between reconnect attempts.

use std::time::Duration;

const FIRST_RETRY: Duration = Duration::from_millis(200);
// Short, because what devices report between the broker's return and our resubscription is
// lost (no session survives a broker restart): one client retrying every few seconds costs the
// broker nothing.
const MAX_RETRY: Duration = Duration::from_secs(4);

/// Exponential backoff between reconnect attempts: 200 ms doubling to 4 s, reset on ConnAck.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Backoff {
    attempt: u32,
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            attempt: 0,
            next: FIRST_RETRY,
        }
    }
}

impl Backoff {
    /// The attempt number and delay before the next attempt.
    pub(super) fn fail(&mut self) -> (u32, Duration) {
        self.attempt = self.attempt.saturating_add(1);
        let delay = self.next;
        self.next = (self.next * 2).min(MAX_RETRY);
        (self.attempt, delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_and_resets() {
        let mut b = Backoff::default();
        let delays: Vec<_> = (0..10).map(|_| b.fail().1.as_millis()).collect();
        assert_eq!(
            delays,
            [200, 400, 800, 1600, 3200, 4000, 4000, 4000, 4000, 4000]
        );
        assert_eq!(b.attempt, 10);
        b = Backoff::default();
        assert_eq!(b.fail(), (1, FIRST_RETRY));
    }
}
