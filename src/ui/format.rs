//! How numbers and times read in the window: sizes, ages, durations, rates. Pure functions,
//! unit-tested; never reads the clock itself (callers pass `now`).

use crate::i18n::tr;

/// `1536` → "1.5 KiB".
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A duration in whole seconds as "45 s", "3 min 20 s", "2 h 05 min".
pub fn duration_secs(secs: u64) -> String {
    match secs {
        0..=59 => tr!("ui.format.secs", s = secs),
        60..=3599 => tr!(
            "ui.format.min_secs",
            m = secs / 60,
            s = format!("{:02}", secs % 60)
        ),
        _ => tr!(
            "ui.format.hours_min",
            h = secs / 3600,
            m = format!("{:02}", (secs % 3600) / 60)
        ),
    }
}

/// How long ago `then_ms` was, seen from `now_ms` ("just now" within a second; a clock that
/// went backwards reads as "just now" too).
pub fn age(now_ms: i64, then_ms: i64) -> String {
    let secs = now_ms.saturating_sub(then_ms) / 1000;
    if secs <= 0 {
        tr!("ui.format.just_now")
    } else {
        tr!(
            "ui.format.ago",
            duration = duration_secs(secs.unsigned_abs())
        )
    }
}

/// How the window marks a device not heard since the console started (only remembered from an
/// earlier run).
pub fn not_heard() -> String {
    tr!("ui.format.not_heard")
}

/// When a device was last heard, for the "Last heard" column: "12 s ago" when this console
/// heard it; otherwise the mark, with when an earlier run last heard it if it did.
pub fn last_heard(now_ms: i64, last_seen_ms: i64, heard_since_start: bool) -> String {
    if heard_since_start {
        age(now_ms, last_seen_ms)
    } else if last_seen_ms > 0 {
        tr!(
            "ui.format.not_heard_before",
            age = age(now_ms, last_seen_ms)
        )
    } else {
        not_heard()
    }
}

/// Messages per second with one decimal below 10 and none above.
pub fn rate(per_sec: f64) -> String {
    if !per_sec.is_finite() || per_sec <= 0.0 {
        tr!("ui.format.rate", rate = 0)
    } else if per_sec < 10.0 {
        tr!("ui.format.rate", rate = format!("{per_sec:.1}"))
    } else {
        tr!("ui.format.rate", rate = format!("{per_sec:.0}"))
    }
}

/// A wall-clock time of day (UTC) for the log views: "14:03:07".
pub fn clock_utc(at_ms: i64) -> String {
    let secs = at_ms.div_euclid(1000).rem_euclid(86_400);
    format!(
        "{:02}:{:02}:{:02}",
        secs / 3600,
        (secs % 3600) / 60,
        secs % 60
    )
}

/// `done` of `total` as a fraction in 0..=1 (0 when the total is unknown).
pub fn fraction(done: u64, total: u64) -> f32 {
    if total == 0 {
        0.0
    } else {
        (done.min(total) as f64 / total as f64) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(5 * 1024 * 1024), "5.0 MiB");
        assert_eq!(bytes(u64::MAX), "16777216.0 TiB");
    }

    #[test]
    fn durations_and_ages() {
        assert_eq!(duration_secs(0), "0 s");
        assert_eq!(duration_secs(200), "3 min 20 s");
        assert_eq!(duration_secs(7500), "2 h 05 min");
        assert_eq!(age(10_000, 9_500), "just now");
        assert_eq!(age(10_000, 20_000), "just now");
        assert_eq!(age(70_000, 5_000), "1 min 05 s ago");
        assert_eq!(age(i64::MAX, i64::MIN), "2562047788015 h 12 min ago");
    }

    #[test]
    fn last_heard_marks_devices_not_heard_since_the_start() {
        assert_eq!(last_heard(22_000, 10_000, true), "12 s ago");
        assert_eq!(
            last_heard(70_000, 5_000, false),
            "not heard since start (before: 1 min 05 s ago)"
        );
        assert_eq!(last_heard(70_000, 0, false), "not heard since start");
    }

    #[test]
    fn rates_clock_and_fractions() {
        assert_eq!(rate(0.0), "0 msg/s");
        assert_eq!(rate(f64::NAN), "0 msg/s");
        assert_eq!(rate(2.34), "2.3 msg/s");
        assert_eq!(rate(1234.4), "1234 msg/s");
        assert_eq!(
            clock_utc(((14 * 3600 + 3 * 60 + 7) * 1000) + 999),
            "14:03:07"
        );
        assert_eq!(clock_utc(-1000), "23:59:59");
        assert_eq!(fraction(5, 10), 0.5);
        assert_eq!(fraction(20, 10), 1.0);
        assert_eq!(fraction(1, 0), 0.0);
    }
}
