//! The engine's snapshot publish at fleet scale: the time one publish takes after a fixed
//! number of device changes, at 10,000 and at 100,000 devices, and the engine's CPU for one
//! second of 10,000 progress reports (ten publishes a second, as the engine paces them).
//!
//! Runs the engine's own publish path (`ota_console::engine::publish_bench`: the fleet, one live
//! campaign over every device, the persistent device table) without sockets or database, and
//! beside it what a publish cost before the table was persistent (every row and campaign line
//! rebuilt), so one run gives both.
//!
//! `cargo bench --no-default-features --bench snapshot`; `DEVICES=10000,100000` the fleets,
//! `CHANGES=1000` the reports between two publishes, `RATE=10000` the reports per second.

#![expect(
    clippy::expect_used,
    reason = "a benchmark's set-up that fails has nothing to measure: it stops with a message"
)]

use std::time::{Duration, Instant};

use ota_console::engine::publish_bench::PublishBench;

/// Publishes measured per fleet.
const ROUNDS: usize = 40;
/// Reports in flight at once (the devices whose reports change rows).
const IN_FLIGHT: usize = 10_000;
/// Publishes per second, as the engine paces them (`PUBLISH_INTERVAL`).
const PUBLISHES_PER_SEC: usize = 10;

fn env_list(name: &str, default: &[usize]) -> Vec<usize> {
    match std::env::var(name) {
        Ok(v) => v
            .split(',')
            .map(|n| {
                n.trim()
                    .replace('_', "")
                    .parse()
                    .ok()
                    .filter(|&n: &usize| n > 0)
                    .unwrap_or_else(|| panic!("{name}={v}: not a list of positive counts"))
            })
            .collect(),
        Err(_) => default.to_vec(),
    }
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

struct Figures {
    devices: usize,
    publish: Duration,
    rebuild: Duration,
    cpu_per_sec: Duration,
    /// Of `cpu_per_sec`, the reports (decode, fleet, campaign) without the publishes.
    cpu_per_sec_reports: Duration,
    cpu_per_sec_rebuild: Duration,
}

fn measure(devices: usize, changes: usize, rate: usize) -> Figures {
    let mut bench = PublishBench::new(devices, IN_FLIGHT.min(devices), rate)
        .expect("the bench campaign starts");
    assert!(
        bench.agrees_with_rebuild(),
        "the patched table differs from a full rebuild"
    );
    let mut publish = Vec::with_capacity(ROUNDS);
    let mut rebuild = Vec::with_capacity(ROUNDS);
    // Reports and publishes alternate as in the engine. The rebuilds run in a loop of their own:
    // one between two publishes would evict from the caches what the engine's publishes keep.
    for _ in 0..ROUNDS {
        bench.progress(changes);
        let started = Instant::now();
        std::hint::black_box(bench.publish());
        publish.push(started.elapsed());
    }
    for _ in 0..ROUNDS {
        bench.progress(changes);
        let started = Instant::now();
        std::hint::black_box(bench.rebuild());
        rebuild.push(started.elapsed());
    }
    assert!(
        bench.agrees_with_rebuild(),
        "the patched table differs from a full rebuild"
    );
    assert_eq!(
        bench.refused(),
        0,
        "the dialect refused the bench's reports"
    );
    assert!(
        bench.lines_in_progress() > 0,
        "the reports did not reach the campaign"
    );
    // One second of reports at `rate`, published ten times: the work an engine turn does with
    // them (fleet, campaign, publish), without decoding, the store or the broker.
    let per_publish = rate / PUBLISHES_PER_SEC;
    let mut second = Vec::new();
    let mut second_reports = Vec::new();
    let mut second_rebuild = Vec::new();
    for _ in 0..5 {
        let mut reports = Duration::ZERO;
        let started = Instant::now();
        for _ in 0..PUBLISHES_PER_SEC {
            let at = Instant::now();
            bench.progress(per_publish);
            reports += at.elapsed();
            std::hint::black_box(bench.publish());
        }
        second.push(started.elapsed());
        second_reports.push(reports);
        let started = Instant::now();
        for _ in 0..PUBLISHES_PER_SEC {
            bench.progress(per_publish);
            std::hint::black_box(bench.rebuild());
        }
        second_rebuild.push(started.elapsed());
    }
    Figures {
        devices,
        publish: median(publish),
        rebuild: median(rebuild),
        cpu_per_sec: median(second),
        cpu_per_sec_reports: median(second_reports),
        cpu_per_sec_rebuild: median(second_rebuild),
    }
}

fn main() {
    let fleets = env_list("DEVICES", &[10_000, 100_000]);
    let changes = env_list("CHANGES", &[1_000])[0];
    let rate = env_list("RATE", &[10_000])[0];
    println!(
        "publish after {changes} device changes (median of {ROUNDS}); engine CPU for 1 s of {rate} progress reports, {PUBLISHES_PER_SEC} publishes"
    );
    let mut all = Vec::new();
    for &devices in &fleets {
        let f = measure(devices, changes, rate);
        println!(
            "{:>7} devices: publish {:.3} ms (full rebuild {:.3} ms, {:.0}x); CPU per second {:.1} ms, of which reports {:.1} ms (with full rebuilds {:.1} ms)",
            f.devices,
            ms(f.publish),
            ms(f.rebuild),
            ms(f.rebuild) / ms(f.publish),
            ms(f.cpu_per_sec),
            ms(f.cpu_per_sec_reports),
            ms(f.cpu_per_sec_rebuild),
        );
        all.push(f);
    }
    if let (Some(small), Some(large)) = (all.first(), all.last())
        && all.len() > 1
    {
        println!(
            "publish at {} vs {} devices: {:.2}x (aim: within 1.5x); full rebuild {:.1}x",
            large.devices,
            small.devices,
            ms(large.publish) / ms(small.publish),
            ms(large.rebuild) / ms(small.rebuild),
        );
    }
}
