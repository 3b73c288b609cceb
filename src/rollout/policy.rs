//! `Policy`: the operator's knobs for one campaign (waves, rate, concurrency, timeouts, retries,
//! abort threshold, version filter, notice acknowledgement and settle delay) and their
//! validation. Plain data, serialised as JSON into the
//! store; it never looks at devices or time itself.

use crate::i18n::tr;
use serde::{Deserialize, Serialize};

use super::{MAX_TARGETS, RolloutError};

/// How big the first (canary) wave is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CanarySize {
    /// This many devices (at least one when there is any device to upgrade).
    Count(u32),
    /// This percentage of the devices to upgrade, rounded up (at least one).
    Percent(u8),
}

/// At most `per_minute` notices per minute, as a token bucket that holds at most `burst`
/// notices and refills at `per_minute` per 60 s on the injected clock. With `burst = 1` the
/// notices are spaced evenly, so any half-open 60 s window holds at most `per_minute` of them;
/// a larger burst lets the first `burst` go out at once. A rate of 1,200/min or more is spaced
/// in grains of 50 ms rather than notice by notice, within the same minute
/// (`rollout::rate::PACING_GRAIN_MS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RateLimit {
    pub per_minute: u32,
    pub burst: u32,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self {
            per_minute: 60,
            burst: 1,
        }
    }
}

/// Stop noticing new devices when more than `failure_percent` % of the judged devices failed,
/// once at least `min_finished` devices were judged. Judged = succeeded, or failed / rejected /
/// timed out with no retry left; skipped and canceled devices do not count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AbortThreshold {
    pub failure_percent: u8,
    pub min_finished: u32,
}

impl Default for AbortThreshold {
    fn default() -> Self {
        Self {
            failure_percent: 20,
            min_finished: 5,
        }
    }
}

/// Everything the operator chooses about how a campaign proceeds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Policy {
    /// The first wave.
    pub canary: CanarySize,
    /// Devices per wave after the canary; 0 = all the rest in one wave.
    pub wave_size: u32,
    /// The next wave opens by itself once this percentage of the current wave's devices
    /// succeeded (skipped and canceled devices are not counted in the wave's size). 100 means
    /// every device of the wave must have succeeded. The operator can always open the next wave
    /// with `AdvanceWave`.
    pub success_threshold_percent: u8,
    pub rate: RateLimit,
    /// Devices in flight (noticed, downloading, installing) at once.
    pub max_in_flight: u32,
    /// From the notice to the target version reported, per attempt.
    pub device_timeout_secs: u64,
    /// How many times a failed or timed-out device is noticed again (a rejecting device never
    /// is). The first notice is not a retry: a device gets at most `1 + retries` notices.
    pub retries: u32,
    /// Wait between a failure and the next notice to the same device.
    pub retry_interval_secs: u64,
    /// `None` disables the abort threshold.
    pub abort: Option<AbortThreshold>,
    /// When not empty, only devices currently on one of these versions are upgraded; the others
    /// are skipped with a reason. A device whose version is unknown waits until it reports one.
    pub only_from_versions: Vec<String>,
    /// Dialects answered by reply ([`crate::protocol::Acknowledgement::ByReply`], DJI
    /// `ota_create`): how long to wait for the reply. (`dji_reply_timeout_ms` in campaigns
    /// stored before it applied to any such dialect.)
    #[serde(alias = "dji_reply_timeout_ms")]
    pub reply_timeout_ms: u64,
    /// Dialects answered by reply: how many times the request is re-sent (same task key, fresh
    /// exchange id where the dialect wants one) without a reply.
    #[serde(alias = "dji_resends")]
    pub reply_resends: u32,
    /// Dialects acknowledged by the first report: a notice that gets no answer (no progress, no
    /// version report) within this many milliseconds is re-sent (a device that published its
    /// version before it subscribed lost it). Dialects answered by reply have their own wait.
    pub ack_window_ms: u64,
    /// Dialects acknowledged by the first report: how many times an unanswered notice is
    /// re-sent (0 = never; the device timeout alone decides then).
    pub ack_resends: u32,
    /// Each re-send waits this many times longer than the one before (1 = evenly spaced).
    pub ack_backoff: u32,
    /// A device that comes online (heard for the first time, or back after being away) is
    /// noticed no sooner than this many milliseconds later, so that it has subscribed.
    pub settle_ms: u64,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            canary: CanarySize::Count(1),
            wave_size: 0,
            success_threshold_percent: 100,
            rate: RateLimit::default(),
            max_in_flight: 10,
            device_timeout_secs: 30 * 60,
            retries: 1,
            retry_interval_secs: 60,
            abort: Some(AbortThreshold::default()),
            only_from_versions: Vec::new(),
            reply_timeout_ms: 3_000,
            reply_resends: 2,
            // Re-sent at +10 s, +30 s and +70 s: a device heard nothing about is noticed again
            // within seconds, well before the 30-minute timeout; a device that is merely slow
            // to start a large download answers within the first window anyway.
            ack_window_ms: 10_000,
            ack_resends: 3,
            ack_backoff: 2,
            // Device SDKs subscribe within a few hundred milliseconds of their first publish.
            settle_ms: 2_000,
        }
    }
}

/// The bounds [`Policy::validate`] enforces, written once: the window's editors and the CLI's
/// flag mapping read them from [`LIMITS`] so that they offer exactly what validation accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyLimits {
    /// Longest value of any duration knob, in seconds. A week: anything longer is a typo (and
    /// keeps millisecond arithmetic far from overflow).
    pub max_duration_secs: u64,
    /// Shortest device timeout, in seconds (0 would time every device out at once).
    pub min_device_timeout_secs: u64,
    /// Shortest acknowledgement window: under 100 ms a notice is re-sent before any device
    /// could answer.
    pub min_ack_window_ms: u64,
    /// More re-sends or a steeper backoff only flood a device that is gone.
    pub max_ack_resends: u32,
    pub max_ack_backoff: u32,
    /// Longest settle delay, in milliseconds.
    pub max_settle_ms: u64,
    /// Longest accepted entry of `only_from_versions`, in bytes, and how many entries.
    pub max_version_bytes: usize,
    pub max_only_from: usize,
    /// Largest device count worth offering (canary, wave, concurrency, rate, burst, devices
    /// judged before aborting): a campaign targets at most [`MAX_TARGETS`] devices, so a larger
    /// count changes nothing. Editors stop here; `validate` does not need to.
    pub max_devices: u32,
}

/// The one set of policy limits.
pub const LIMITS: PolicyLimits = PolicyLimits {
    max_duration_secs: 7 * 24 * 3600,
    min_device_timeout_secs: 1,
    min_ack_window_ms: 100,
    max_ack_resends: 20,
    max_ack_backoff: 10,
    max_settle_ms: 10 * 60 * 1000,
    max_version_bytes: 128,
    max_only_from: 1_000,
    max_devices: 100_000,
};

// The editors' device bound is the campaign's target bound (`MAX_TARGETS` is a `usize`).
const _: () = assert!(LIMITS.max_devices as usize == MAX_TARGETS);

const MIN_ACK_WINDOW_MS: u64 = LIMITS.min_ack_window_ms;
const MAX_ACK_RESENDS: u32 = LIMITS.max_ack_resends;
const MAX_ACK_BACKOFF: u32 = LIMITS.max_ack_backoff;
const MAX_SETTLE_MS: u64 = LIMITS.max_settle_ms;
const MAX_VERSION_BYTES: usize = LIMITS.max_version_bytes;
const MAX_ONLY_FROM: usize = LIMITS.max_only_from;
const MAX_DURATION_SECS: u64 = LIMITS.max_duration_secs;

impl Policy {
    /// Refuses values that would stall or break a campaign, naming the field.
    pub fn validate(&self) -> Result<(), RolloutError> {
        let bad = |field: &'static str, detail: String| {
            Err(RolloutError::InvalidPolicy { field, detail })
        };
        match self.canary {
            CanarySize::Count(0) => return bad("canary", tr!("error.policy.canary_zero")),
            CanarySize::Percent(p) if p == 0 || p > 100 => {
                return bad("canary", tr!("error.policy.percent_range", value = p));
            }
            _ => {}
        }
        if self.success_threshold_percent > 100 {
            return bad(
                "success_threshold_percent",
                tr!(
                    "error.policy.above_100",
                    value = self.success_threshold_percent
                ),
            );
        }
        if self.rate.per_minute == 0 || self.rate.burst == 0 {
            return bad("rate", tr!("error.policy.rate_zero"));
        }
        if self.max_in_flight == 0 {
            return bad("max_in_flight", tr!("error.policy.at_least", min = 1));
        }
        self.validate_timing()?;
        if let Some(abort) = self.abort
            && abort.failure_percent > 100
        {
            return bad(
                "abort.failure_percent",
                tr!("error.policy.above_100", value = abort.failure_percent),
            );
        }
        if self.only_from_versions.len() > MAX_ONLY_FROM {
            return bad(
                "only_from_versions",
                tr!("error.policy.too_many_entries", max = MAX_ONLY_FROM),
            );
        }
        if let Some(v) = self
            .only_from_versions
            .iter()
            .find(|v| v.is_empty() || v.len() > MAX_VERSION_BYTES)
        {
            return bad(
                "only_from_versions",
                tr!(
                    "error.policy.bad_entry",
                    entry = format!("{v:?}"),
                    max = MAX_VERSION_BYTES
                ),
            );
        }
        Ok(())
    }

    /// The waits and re-sends: none so long that a campaign stalls, none so short that it
    /// floods.
    fn validate_timing(&self) -> Result<(), RolloutError> {
        let bad = |field: &'static str, detail: String| {
            Err(RolloutError::InvalidPolicy { field, detail })
        };
        for (field, secs) in [
            ("device_timeout_secs", self.device_timeout_secs),
            ("retry_interval_secs", self.retry_interval_secs),
            ("reply_timeout_ms", self.reply_timeout_ms / 1000),
            ("ack_window_ms", self.ack_window_ms / 1000),
        ] {
            if secs > MAX_DURATION_SECS {
                return bad(field, tr!("error.policy.over_a_week", secs = secs));
            }
        }
        if self.device_timeout_secs < LIMITS.min_device_timeout_secs {
            return bad(
                "device_timeout_secs",
                tr!(
                    "error.policy.at_least",
                    min = LIMITS.min_device_timeout_secs
                ),
            );
        }
        if self.reply_timeout_ms == 0 {
            return bad("reply_timeout_ms", tr!("error.policy.at_least", min = 1));
        }
        if self.ack_window_ms < MIN_ACK_WINDOW_MS {
            return bad(
                "ack_window_ms",
                tr!(
                    "error.policy.shorter_ms",
                    value = self.ack_window_ms,
                    min = MIN_ACK_WINDOW_MS
                ),
            );
        }
        if self.ack_resends > MAX_ACK_RESENDS {
            return bad(
                "ack_resends",
                tr!(
                    "error.policy.more_than",
                    value = self.ack_resends,
                    max = MAX_ACK_RESENDS
                ),
            );
        }
        if self.ack_backoff == 0 || self.ack_backoff > MAX_ACK_BACKOFF {
            return bad(
                "ack_backoff",
                tr!(
                    "error.policy.not_within",
                    value = self.ack_backoff,
                    max = MAX_ACK_BACKOFF
                ),
            );
        }
        if self.settle_ms > MAX_SETTLE_MS {
            return bad(
                "settle_ms",
                tr!(
                    "error.policy.longer_ms",
                    value = self.settle_ms,
                    max = MAX_SETTLE_MS
                ),
            );
        }
        Ok(())
    }

    pub fn device_timeout_ms(&self) -> u64 {
        self.device_timeout_secs.saturating_mul(1000)
    }

    pub fn retry_interval_ms(&self) -> u64 {
        self.retry_interval_secs.saturating_mul(1000)
    }

    /// How long to wait for an answer after the notice was sent `resends_done` times beyond
    /// the first: `ack_window_ms × ack_backoff^resends_done`, saturating.
    pub fn ack_wait_ms(&self, resends_done: u32) -> u64 {
        let factor = u64::from(self.ack_backoff.max(1)).saturating_pow(resends_done);
        self.ack_window_ms.saturating_mul(factor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The editors offer `LIMITS` as their range ends: each end must validate, and one step
    /// past it must not, so the window and the CLI never offer what validation refuses.
    #[test]
    fn limits_are_what_validate_enforces() {
        type Edit = fn(&mut Policy, bool);
        let edges: [(&str, Edit); 7] = [
            ("device_timeout_secs", |p, past| {
                p.device_timeout_secs = LIMITS.min_device_timeout_secs - u64::from(past);
            }),
            ("device_timeout_secs", |p, past| {
                p.device_timeout_secs = LIMITS.max_duration_secs + u64::from(past);
            }),
            ("retry_interval_secs", |p, past| {
                p.retry_interval_secs = LIMITS.max_duration_secs + u64::from(past);
            }),
            ("ack_window_ms", |p, past| {
                p.ack_window_ms = LIMITS.min_ack_window_ms - u64::from(past);
            }),
            ("ack_resends", |p, past| {
                p.ack_resends = LIMITS.max_ack_resends + u32::from(past);
            }),
            ("ack_backoff", |p, past| {
                p.ack_backoff = LIMITS.max_ack_backoff + u32::from(past);
            }),
            ("settle_ms", |p, past| {
                p.settle_ms = LIMITS.max_settle_ms + u64::from(past);
            }),
        ];
        for (field, edit) in edges {
            let mut at = Policy::default();
            edit(&mut at, false);
            assert!(at.validate().is_ok(), "{field} at its limit is refused");
            let mut past = Policy::default();
            edit(&mut past, true);
            match past.validate() {
                Err(RolloutError::InvalidPolicy { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field} past its limit: {other:?}"),
            }
        }
    }

    #[test]
    fn defaults_are_valid_and_partial_json_fills_in() {
        Policy::default().validate().unwrap();
        let p: Policy = serde_json::from_str(r#"{"wave_size":5,"rate":{"per_minute":6}}"#).unwrap();
        assert_eq!(p.wave_size, 5);
        assert_eq!(p.rate.per_minute, 6);
        assert_eq!(p.rate.burst, 1);
        assert_eq!(p.max_in_flight, Policy::default().max_in_flight);
        let back: Policy = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        assert_eq!(back, p);
        // A policy stored before the acknowledgement knobs existed gets the defaults.
        assert_eq!(p.ack_window_ms, 10_000);
        assert_eq!((p.ack_resends, p.ack_backoff, p.settle_ms), (3, 2, 2_000));
    }

    #[test]
    fn ack_waits_grow_by_the_backoff() {
        let p = Policy::default();
        let waits: Vec<u64> = (0..4).map(|n| p.ack_wait_ms(n)).collect();
        assert_eq!(waits, [10_000, 20_000, 40_000, 80_000]);
        // The three default re-sends all go out long before the 30-minute timeout.
        assert!(waits.iter().take(3).sum::<u64>() < p.device_timeout_ms() / 10);
        let flat = Policy {
            ack_backoff: 1,
            ..Policy::default()
        };
        assert_eq!(flat.ack_wait_ms(5), 10_000);
        let huge = Policy {
            ack_window_ms: u64::MAX / 2,
            ack_backoff: 10,
            ..Policy::default()
        };
        assert_eq!(huge.ack_wait_ms(20), u64::MAX);
    }

    #[test]
    #[expect(
        clippy::too_many_lines,
        reason = "a table of cases, one per policy field"
    )]
    fn bad_values_name_the_field() {
        let cases: Vec<(Policy, &str)> = vec![
            (
                Policy {
                    canary: CanarySize::Count(0),
                    ..Policy::default()
                },
                "canary",
            ),
            (
                Policy {
                    canary: CanarySize::Percent(101),
                    ..Policy::default()
                },
                "canary",
            ),
            (
                Policy {
                    success_threshold_percent: 101,
                    ..Policy::default()
                },
                "success_threshold_percent",
            ),
            (
                Policy {
                    rate: RateLimit {
                        per_minute: 0,
                        burst: 1,
                    },
                    ..Policy::default()
                },
                "rate",
            ),
            (
                Policy {
                    max_in_flight: 0,
                    ..Policy::default()
                },
                "max_in_flight",
            ),
            (
                Policy {
                    device_timeout_secs: 0,
                    ..Policy::default()
                },
                "device_timeout_secs",
            ),
            (
                Policy {
                    ack_window_ms: 10,
                    ..Policy::default()
                },
                "ack_window_ms",
            ),
            (
                Policy {
                    ack_resends: 21,
                    ..Policy::default()
                },
                "ack_resends",
            ),
            (
                Policy {
                    ack_backoff: 0,
                    ..Policy::default()
                },
                "ack_backoff",
            ),
            (
                Policy {
                    settle_ms: u64::MAX,
                    ..Policy::default()
                },
                "settle_ms",
            ),
            (
                Policy {
                    retry_interval_secs: u64::MAX,
                    ..Policy::default()
                },
                "retry_interval_secs",
            ),
            (
                Policy {
                    abort: Some(AbortThreshold {
                        failure_percent: 150,
                        min_finished: 1,
                    }),
                    ..Policy::default()
                },
                "abort.failure_percent",
            ),
            (
                Policy {
                    only_from_versions: vec![String::new()],
                    ..Policy::default()
                },
                "only_from_versions",
            ),
        ];
        for (policy, field) in cases {
            let err = policy.validate().unwrap_err();
            assert!(err.to_string().contains(field), "{err} should name {field}");
        }
    }
}
