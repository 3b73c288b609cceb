//! Fleet registry cost: memory per device for 10,000 devices, and the rate at which decoded
//! progress events are applied (1,000,000 events, one core).
//!
//! Run: `cargo bench --no-default-features --bench fleet`

#![expect(
    unsafe_code,
    reason = "the counting global allocator measures the registry's heap bytes; it only forwards to `System`"
)]
#![expect(
    clippy::unwrap_used,
    reason = "a benchmark's set-up that fails has nothing to measure: it stops with a message"
)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Instant;

use ota_console::device_id::DeviceId;
use ota_console::fleet::Fleet;
use ota_console::protocol::{Event, Phase, ProgressReport, TaskRef, UpgradeStatus, VersionReport};

/// Counts live heap bytes, so the registry's memory is measured, not estimated.
struct Counting;

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE_BYTES.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const DEVICES: usize = 10_000;
const EVENTS: usize = 1_000_000;

fn device(i: usize) -> DeviceId {
    match i % 3 {
        0 => DeviceId::aliyun("a1ProductKey01", &format!("device-{i:06}")).unwrap(),
        1 => DeviceId::fogcloud("12097812", &format!("{i:08}")).unwrap(),
        _ => DeviceId::dji(&format!("4TADKAQ{i:07}")).unwrap(),
    }
}

fn main() {
    let ids: Vec<DeviceId> = (0..DEVICES).map(device).collect();
    let announce: Vec<Event> = ids
        .iter()
        .map(|id| {
            Event::Version(VersionReport {
                device: id.clone(),
                version: "1.0.0".into(),
                gateway: None,
            })
        })
        .collect();
    let progress: Vec<Event> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            Event::Progress(ProgressReport {
                device: id.clone(),
                task: TaskRef::Key(i.to_string()),
                status: UpgradeStatus::InProgress,
                phase: Phase::Download,
                percent: Some((i % 100) as u8),
                percent_clamped: false,
                desc: None,
                gateway: None,
            })
        })
        .collect();

    let before = LIVE_BYTES.load(Ordering::Relaxed);
    let mut fleet = Fleet::new();
    for (t, e) in announce.iter().enumerate() {
        fleet.apply(e, t as i64);
    }
    // One progress each so every record carries its last-progress slot too.
    for (t, e) in progress.iter().enumerate() {
        fleet.apply(e, t as i64);
    }
    let bytes = LIVE_BYTES.load(Ordering::Relaxed) - before;
    println!(
        "memory: {} devices, {} bytes live, {:.0} bytes/device (aim: < 4096)",
        fleet.len(),
        bytes,
        bytes as f64 / DEVICES as f64
    );

    let mut best = f64::MAX;
    for _ in 0..5 {
        let start = Instant::now();
        let mut now = 1_000_000i64;
        for i in 0..EVENTS {
            now += 1;
            std::hint::black_box(fleet.apply(&progress[i % DEVICES], now));
        }
        best = best.min(start.elapsed().as_secs_f64());
    }
    println!(
        "apply: {EVENTS} progress events on {DEVICES} devices in {:.3} s (best of 5) = {:.0} events/s (aim: > 1,000,000)",
        best,
        EVENTS as f64 / best
    );
}
