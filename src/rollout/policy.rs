//! `Policy`: the operator's knobs for one campaign (waves, rate, concurrency, timeouts, retries,
//! abort threshold, version filter) and their validation. Plain data, serialised as JSON into the
//! store; it never looks at devices or time itself.

use serde::{Deserialize, Serialize};

use super::RolloutError;

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
/// a larger burst lets the first `burst` go out at once.
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
    /// DJI: how long to wait for the `services_reply` to `ota_create`.
    pub dji_reply_timeout_ms: u64,
    /// DJI: how many times `ota_create` is re-sent (fresh tid, same bid) without a reply.
    pub dji_resends: u32,
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
            dji_reply_timeout_ms: 3_000,
            dji_resends: 2,
        }
    }
}

/// Longest accepted entry of `only_from_versions`, and how many entries.
const MAX_VERSION_BYTES: usize = 128;
const MAX_ONLY_FROM: usize = 1_000;
/// A week: anything longer is a typo (and keeps millisecond arithmetic far from overflow).
const MAX_DURATION_SECS: u64 = 7 * 24 * 3600;

impl Policy {
    /// Refuses values that would stall or break a campaign, naming the field.
    pub fn validate(&self) -> Result<(), RolloutError> {
        let bad = |field: &'static str, detail: String| {
            Err(RolloutError::InvalidPolicy { field, detail })
        };
        match self.canary {
            CanarySize::Count(0) => return bad("canary", "a canary of 0 devices".into()),
            CanarySize::Percent(p) if p == 0 || p > 100 => {
                return bad("canary", format!("{p} % is not within 1..=100"));
            }
            _ => {}
        }
        if self.success_threshold_percent > 100 {
            return bad(
                "success_threshold_percent",
                format!("{} is above 100", self.success_threshold_percent),
            );
        }
        if self.rate.per_minute == 0 || self.rate.burst == 0 {
            return bad("rate", "per_minute and burst must be at least 1".into());
        }
        if self.max_in_flight == 0 {
            return bad("max_in_flight", "must be at least 1".into());
        }
        for (field, secs) in [
            ("device_timeout_secs", self.device_timeout_secs),
            ("retry_interval_secs", self.retry_interval_secs),
            ("dji_reply_timeout_ms", self.dji_reply_timeout_ms / 1000),
        ] {
            if secs > MAX_DURATION_SECS {
                return bad(field, format!("{secs} s is longer than a week"));
            }
        }
        if self.device_timeout_secs == 0 {
            return bad("device_timeout_secs", "must be at least 1".into());
        }
        if self.dji_reply_timeout_ms == 0 {
            return bad("dji_reply_timeout_ms", "must be at least 1".into());
        }
        if let Some(abort) = self.abort {
            if abort.failure_percent > 100 {
                return bad(
                    "abort.failure_percent",
                    format!("{} is above 100", abort.failure_percent),
                );
            }
        }
        if self.only_from_versions.len() > MAX_ONLY_FROM {
            return bad(
                "only_from_versions",
                format!("more than {MAX_ONLY_FROM} entries"),
            );
        }
        if let Some(v) = self
            .only_from_versions
            .iter()
            .find(|v| v.is_empty() || v.len() > MAX_VERSION_BYTES)
        {
            return bad(
                "only_from_versions",
                format!("entry {v:?} is empty or longer than {MAX_VERSION_BYTES} bytes"),
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }

    #[test]
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
