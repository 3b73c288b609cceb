//! Frame cost of the window with a fleet reporting progress, in the table view and in the tile
//! view: CPU time per frame (egui pass + tessellation, what the UI thread does before the GPU
//! upload) and the process's resident memory.
//!
//! Runs the real `ConsoleView` (every panel of the window) on a synthetic engine snapshot, at a
//! simulated 60 frames per second: each frame 1/60 of a second's updates change their rows and
//! campaign lines and a new snapshot revision is published the way the engine does it (the
//! persistent device table patched row by row, the window handed a clone of it).
//! No window, no GPU.
//!
//! `cargo bench --bench frame` (release); `DEVICES=100000` sets the fleet (default 10,000),
//! `UPDATES=n` the progress updates per second (default 10,000). Prints median, p95 and max per
//! view.

#![expect(
    clippy::expect_used,
    reason = "a benchmark's set-up that fails has nothing to measure: it stops with a message"
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use ota_console::device_id::DeviceId;
use ota_console::engine::{CampaignView, DeviceRow, Snapshot, TimelinePoint};
use ota_console::fleet::DeviceRecord;
use ota_console::protocol::FirmwareOffer;
use ota_console::rollout::{
    CampaignId, CampaignSnapshot, CampaignSpec, CampaignState, Counts, DeviceLines, DeviceSnapshot,
    DeviceStatus, DialectSettings, Policy, Timestamp, WaveSnapshot,
};
use ota_console::transport::mqtt::LinkState;
use ota_console::ui::settings::DeviceView;
use ota_console::ui::{CjkFonts, ConsoleView, Settings};

/// A positive count from the environment, or `default`.
fn env_count(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v
            .replace(['_', ','], "")
            .parse()
            .ok()
            .filter(|&n: &usize| n > 0)
            .unwrap_or_else(|| panic!("{name}={v}: not a positive count")),
        Err(_) => default,
    }
}
const FPS: usize = 60;
const WARMUP_FRAMES: usize = 30;
const MEASURED_FRAMES: usize = 600;
const NOW_MS: i64 = 1_800_000_000_000;

fn device_id(i: usize) -> DeviceId {
    match i % 4 {
        0 | 1 => DeviceId::aliyun("a1BenchPk", &format!("dev-{i:05}")),
        2 => DeviceId::fogcloud("12097812", &format!("fog-{i:05}")),
        _ => DeviceId::dji(&format!("SN{i:08}")),
    }
    .expect("valid bench id")
}

fn status_for(step: u64) -> (DeviceStatus, u8) {
    match step % 30 {
        0 => (DeviceStatus::Pending, 0),
        s @ 1..=15 => (DeviceStatus::Downloading, (s * 6) as u8),
        s @ 16..=27 => (DeviceStatus::Installing, ((s - 15) * 8) as u8),
        28 => (DeviceStatus::Succeeded, 100),
        _ => (DeviceStatus::Failed, 40),
    }
}

fn line(id: &DeviceId, step: u64) -> DeviceSnapshot {
    let (status, percent) = status_for(step);
    DeviceSnapshot {
        id: id.clone(),
        status,
        from_version: Some("1.0.0".into()),
        to_version: None,
        percent,
        attempts: 1,
        wave: Some(0),
        error: (status == DeviceStatus::Failed)
            .then(|| "upgrade failed: OTA升级失败,请求不到升级包信息。".into()),
        code: (status == DeviceStatus::Failed).then_some(-1),
        retry_at: None,
        resends: 0,
        next_resend_at: None,
    }
}

fn snapshot(devices: usize) -> Snapshot {
    let mut rows = Vec::with_capacity(devices);
    for i in 0..devices {
        let id = device_id(i);
        let mut record = DeviceRecord::new(id.clone(), NOW_MS);
        record.set_version(None, "1.0.0");
        // Every 8th FogCloud device is a sub-device of the FogCloud device before it.
        if i % 4 == 2 && i % 32 == 10 {
            record.gateway = Some(device_id(i - 8));
        }
        rows.push(DeviceRow {
            last_message: Some(format!(
                "/ota/device/progress/a1BenchPk/dev-{i:05} at 12:00:00"
            )),
            rollout: Some(line(&id, i as u64)),
            record,
        });
    }
    rows.sort_by(|a, b| a.record.id.cmp(&b.record.id));
    let lines: DeviceLines = rows
        .iter()
        .filter_map(|r| r.rollout.clone().map(Arc::new))
        .collect();
    let counts = Counts::from_statuses(lines.iter().map(|l| l.status));
    let offer = FirmwareOffer {
        url: "http://127.0.0.1:8080/fw".into(),
        size: 1 << 20,
        md5: "0".repeat(32),
        sha256: "1".repeat(64),
        checksum: "00000000".into(),
        description: String::new(),
        ..ota_console::testing::offer("2.0.0")
    };
    let campaign = CampaignView {
        snapshot: CampaignSnapshot {
            id: CampaignId(1),
            name: "bench".into(),
            state: CampaignState::Running,
            target_version: "2.0.0".into(),
            module: None,
            package_sha256: "1".repeat(64),
            waves: WaveSnapshot {
                current: Some(0),
                count: 1,
                blocked: false,
            },
            counts,
            created_at: Timestamp::from_millis(0),
            started_at: Some(Timestamp::from_millis(0)),
            finished_at: None,
            devices: lines,
        },
        spec: CampaignSpec {
            name: "bench".into(),
            offer,
            module: None,
            settings: DialectSettings::default(),
            policy: Policy::default(),
        },
        dialects: Vec::new(),
        timeline: (0..600)
            .map(|s| TimelinePoint {
                at_ms: s * 1000,
                succeeded: s as usize * 10,
                failed: s as usize,
                in_flight: 1000,
            })
            .collect(),
        eta_secs: Some(600),
        live: true,
        halted: None,
    };
    let mut snap = Snapshot::empty("embedded broker on 0.0.0.0:1883".into());
    snap.link = LinkState::Connected;
    snap.firmware_base = Some("http://192.168.1.10:8080".into());
    snap.devices = rows.into_iter().map(Arc::new).collect();
    snap.campaigns = vec![campaign];
    snap
}

/// One frame's worth of updates: the next `updates / 60` devices report new progress; their
/// rows and campaign lines are replaced as the engine does (a new `Arc` in the persistent
/// vectors), and the window gets the new snapshot.
fn advance(snap: &mut Snapshot, frame: usize, updates: usize) {
    let devices = snap.devices.len();
    let per_frame = (updates / FPS).clamp(1, devices);
    let start = (frame * per_frame) % devices;
    let step = (frame * per_frame / devices) as u64 + 1;
    let mut changed = Vec::with_capacity(per_frame);
    for i in (start..start + per_frame).map(|i| i % devices) {
        let Some(old) = snap.devices.get(i) else {
            continue;
        };
        let mut row = DeviceRow::clone(old);
        let rollout = line(&row.record.id, i as u64 + step);
        if let Some(c) = snap.campaigns.first_mut() {
            c.snapshot.devices.set(i, Arc::new(rollout.clone()));
        }
        row.rollout = Some(rollout);
        row.record.last_seen_ms = NOW_MS + frame as i64 * 16;
        changed.push(row.record.id.clone());
        snap.devices.set(i, Arc::new(row));
    }
    changed.sort();
    changed.dedup();
    snap.revision += 1;
    snap.row_changes.record(snap.revision, Some(changed.into()));
    snap.traffic.received += per_frame as u64;
    snap.traffic.received_per_sec = updates as f64;
}

fn resident_mib() -> Option<f64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: f64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096.0 / (1024.0 * 1024.0))
}

fn run(view_kind: DeviceView, snap: &mut Snapshot, updates: usize) -> Vec<Duration> {
    let ctx = egui::Context::default();
    CjkFonts::bundled_only().install(&ctx);
    let settings = Settings {
        view: view_kind,
        ..Settings::default()
    };
    let mut view = ConsoleView::new(settings, false);
    let mut times = Vec::with_capacity(MEASURED_FRAMES);
    for frame in 0..WARMUP_FRAMES + MEASURED_FRAMES {
        advance(snap, frame, updates);
        // The engine's handoff: the window reads an `Arc` of the snapshot, its device table
        // shared with the engine's copy.
        let shown = Arc::new(snap.clone());
        let input = egui::RawInput {
            screen_rect: Some(egui::Rect::from_min_size(
                egui::Pos2::ZERO,
                egui::vec2(1600.0, 1000.0),
            )),
            time: Some(frame as f64 / FPS as f64),
            ..Default::default()
        };
        let started = Instant::now();
        let mut output = ctx.run_ui(input, |ui| {
            let actions = view.ui(ui, &shown, &[], &[], NOW_MS);
            assert!(actions.is_empty());
        });
        let primitives =
            ctx.tessellate(std::mem::take(&mut output.shapes), output.pixels_per_point);
        let elapsed = started.elapsed();
        std::hint::black_box(primitives);
        output.textures_delta.clear();
        if frame >= WARMUP_FRAMES {
            times.push(elapsed);
        }
    }
    times
}

fn report(name: &str, devices: usize, mut times: Vec<Duration>) {
    times.sort();
    let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
    println!(
        "{name:<6} {devices} devices, {} frames: median {:.2} ms, p95 {:.2} ms, max {:.2} ms",
        times.len(),
        at(0.5).as_secs_f64() * 1e3,
        at(0.95).as_secs_f64() * 1e3,
        at(1.0).as_secs_f64() * 1e3,
    );
}

fn main() {
    let devices = env_count("DEVICES", 10_000);
    let updates = env_count("UPDATES", 10_000);
    println!("{devices} devices, {updates} progress updates per second");
    let before = resident_mib();
    let mut snap = snapshot(devices);
    let with_snapshot = resident_mib();
    let table = run(DeviceView::Table, &mut snap, updates);
    report("table", devices, table);
    let tiles = run(DeviceView::Tiles, &mut snap, updates);
    report("tiles", devices, tiles);
    if let (Some(a), Some(b), Some(c)) = (before, with_snapshot, resident_mib()) {
        println!(
            "resident memory: {a:.1} MiB at start, {b:.1} MiB with the {devices}-device snapshot, {c:.1} MiB after both runs"
        );
    }
}
