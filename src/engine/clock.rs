//! The engine's clock: wall-clock milliseconds for the rollout state machine, advanced by tokio's
//! clock so that tests under `tokio::time::pause()` move campaign time without sleeping.

use tokio::time::Instant;

use crate::rollout::Timestamp;

/// The wall clock now, as the rollout state machine counts time (0 before 1970).
pub fn wall_clock_now() -> Timestamp {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    Timestamp::from_millis(ms)
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Clock {
    base_wall_ms: u64,
    base: Instant,
}

impl Clock {
    pub(super) fn new() -> Self {
        Self {
            base_wall_ms: wall_clock_now().as_millis(),
            base: Instant::now(),
        }
    }

    pub(super) fn now(&self) -> Timestamp {
        let elapsed = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        Timestamp::from_millis(self.base_wall_ms.saturating_add(elapsed))
    }

    pub(super) fn now_ms(&self) -> i64 {
        i64::try_from(self.now().as_millis()).unwrap_or(i64::MAX)
    }

    /// The tokio instant at which the clock reads `at` (now, if `at` has passed).
    pub(super) fn instant_of(&self, at: Timestamp) -> Instant {
        let offset = at.as_millis().saturating_sub(self.base_wall_ms);
        self.base + std::time::Duration::from_millis(offset)
    }
}
