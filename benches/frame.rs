//! Frame cost of the window with a fleet reporting progress, in the table view and in the tile
//! view: CPU time per frame (egui pass + tessellation, what the UI thread does before the GPU
//! upload) and the process's resident memory.
//!
//! Runs the real `ConsoleView` (every panel of the window) on a synthetic engine snapshot, at a
//! simulated 60 frames per second: each frame 1/60 of a second's updates change their rows and
//! campaign lines and a new snapshot revision is published the way the engine does it (the
//! persistent device table patched row by row, the changed ids in the snapshot's change log,
//! the window handed a clone of it) — a revision every frame, more often than the engine's ten
//! a second. No window, no GPU.
//!
//! Measured: the table (the default view: grouped under gateways, sorted by device), the table
//! sorted by progress (rows move every frame), the tiles; the frame that shows a filter or sort
//! change (a full filter and sort of the fleet) for each of a list of changes; "select not on
//! version" over the whole fleet, and the table's frames with all of it selected.
//!
//! `cargo bench --bench frame` (release); `DEVICES=100000` sets the fleet (default 10,000),
//! `UPDATES=n` the progress updates per second (default 10,000), `ONLY=filters` only the filter
//! changes and the selection, `IDS=parsed` campaign lines whose ids were parsed apart from the
//! rows' (as after a restart, when both come from the database) instead of sharing them. Prints
//! median, p95 and max per view.

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
use ota_console::ui::filter::{self, DeviceFilter, SelectionOp, Sort, SortColumn, StatusFilter};
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

/// The id a campaign line of row `i` carries: the row's own, or with `IDS=parsed` one parsed
/// apart (equal, but sharing no text).
fn line_id(id: &DeviceId, i: usize) -> DeviceId {
    if std::env::var("IDS").is_ok_and(|v| v == "parsed") {
        device_id(i)
    } else {
        id.clone()
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
            rollout: Some(line(&line_id(&id, i), i as u64)),
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
        // A campaign keeps the ids its lines were made with.
        let id = row.rollout.as_ref().map_or(&row.record.id, |l| &l.id);
        let rollout = line(id, i as u64 + step);
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

/// The window on its own egui context, drawing `snap` as it advances by `updates` a second.
struct Window {
    ctx: egui::Context,
    view: ConsoleView,
    frame: usize,
}

impl Window {
    fn new(settings: Settings) -> Window {
        let ctx = egui::Context::default();
        CjkFonts::bundled_only().install(&ctx);
        Window {
            ctx,
            view: ConsoleView::new(settings, false),
            frame: 0,
        }
    }

    /// One frame: 1/60 s of updates published, then the window's pass and tessellation, timed.
    fn frame(&mut self, snap: &mut Snapshot, updates: usize) -> Duration {
        advance(snap, self.frame, updates);
        // The engine's handoff: the window reads an `Arc` of the snapshot, its device table
        // shared with the engine's copy.
        let shown = Arc::new(snap.clone());
        let input = egui::RawInput {
            screen_rect: Some(egui::Rect::from_min_size(
                egui::Pos2::ZERO,
                egui::vec2(1600.0, 1000.0),
            )),
            time: Some(self.frame as f64 / FPS as f64),
            ..Default::default()
        };
        self.frame += 1;
        let view = &mut self.view;
        let started = Instant::now();
        let mut output = self.ctx.run_ui(input, |ui| {
            let actions = view.ui(ui, &shown, &[], &[], NOW_MS);
            assert!(actions.is_empty());
        });
        let primitives = self
            .ctx
            .tessellate(std::mem::take(&mut output.shapes), output.pixels_per_point);
        let elapsed = started.elapsed();
        std::hint::black_box(primitives);
        output.textures_delta.clear();
        elapsed
    }

    /// `WARMUP_FRAMES`, then `MEASURED_FRAMES` timed.
    fn frames(&mut self, snap: &mut Snapshot, updates: usize) -> Vec<Duration> {
        for _ in 0..WARMUP_FRAMES {
            self.frame(snap, updates);
        }
        (0..MEASURED_FRAMES)
            .map(|_| self.frame(snap, updates))
            .collect()
    }
}

fn run(settings: Settings, snap: &mut Snapshot, updates: usize) -> Vec<Duration> {
    Window::new(settings).frames(snap, updates)
}

/// The operator changes the filter or the sort: the frame that shows the new order (a full
/// filter and sort of the fleet) is timed, for each change in turn.
fn filter_changes(snap: &mut Snapshot, updates: usize) -> Vec<(String, Duration)> {
    let mut window = Window::new(Settings::default());
    for _ in 0..WARMUP_FRAMES {
        window.frame(snap, updates);
    }
    let text = |t: &str| DeviceFilter {
        text: t.into(),
        ..DeviceFilter::default()
    };
    let sorted = |column, ascending| Sort { column, ascending };
    let changes: Vec<(&str, DeviceFilter, Sort)> = vec![
        ("text \"dev-0004\"", text("dev-0004"), Sort::default()),
        ("text \"fog\"", text("fog"), Sort::default()),
        ("text \"nothing\"", text("nothing"), Sort::default()),
        (
            "status failures",
            DeviceFilter {
                status: StatusFilter::Failures,
                ..DeviceFilter::default()
            },
            Sort::default(),
        ),
        (
            "version 1.0.0",
            DeviceFilter {
                version: "1.0.0".into(),
                ..DeviceFilter::default()
            },
            Sort::default(),
        ),
        ("clear", DeviceFilter::default(), Sort::default()),
        (
            "sort target",
            DeviceFilter::default(),
            sorted(SortColumn::Target, true),
        ),
        (
            "sort progress desc",
            DeviceFilter::default(),
            sorted(SortColumn::Progress, false),
        ),
        (
            "sort last message",
            DeviceFilter::default(),
            sorted(SortColumn::LastMessage, true),
        ),
        (
            "sort last heard",
            DeviceFilter::default(),
            sorted(SortColumn::LastSeen, false),
        ),
        (
            "sort status",
            DeviceFilter::default(),
            sorted(SortColumn::Status, true),
        ),
        ("sort device", DeviceFilter::default(), Sort::default()),
    ];
    // Each change measured in three rounds of the whole list; its median is reported.
    let mut times: Vec<(String, Vec<Duration>)> = changes
        .iter()
        .map(|(name, ..)| ((*name).to_owned(), Vec::new()))
        .collect();
    for _ in 0..FILTER_ROUNDS {
        for ((_, filter, sort), (_, took)) in changes.iter().zip(&mut times) {
            window.view.settings.filter = filter.clone();
            window.view.settings.sort = *sort;
            took.push(window.frame(snap, updates));
            if std::env::var("ONLY").is_ok_and(|v| v == "filters") {
                // Where a change's frame goes: the order alone, and the two counts beside it.
                let targets = filter::targets_by_device(&snap.campaigns);
                let t0 = Instant::now();
                let visible = filter::visible_rows(&snap.devices, filter, *sort, true, &targets);
                let t1 = Instant::now();
                let _ = filter::not_heard_shown(&snap.devices, &visible);
                let t2 = Instant::now();
                let _ = filter::Groups::of(&snap.devices);
                let t3 = Instant::now();
                println!(
                    "    order {:.1} ms, not heard {:.1} ms, groups {:.1} ms",
                    ms(t1 - t0),
                    ms(t2 - t1),
                    ms(t3 - t2)
                );
            }
            // A few frames of the new order before the next change.
            for _ in 0..5 {
                window.frame(snap, updates);
            }
        }
    }
    times
        .into_iter()
        .map(|(name, mut took)| {
            took.sort();
            (name, took[took.len() / 2])
        })
        .collect()
}

/// Rounds of the filter changes (the median of each change is reported).
const FILTER_ROUNDS: usize = 3;

/// "Select not on version X" over the whole fleet: the selection's cost, then the frames that
/// show the fleet with every device selected.
fn select_not_on_version(snap: &mut Snapshot, updates: usize) -> (Duration, usize, Vec<Duration>) {
    let mut window = Window::new(Settings::default());
    for _ in 0..WARMUP_FRAMES {
        window.frame(snap, updates);
    }
    let started = Instant::now();
    filter::apply_selection(
        &mut window.view.selection,
        &SelectionOp::NotOnVersion("2.0.0".into()),
        &snap.devices,
        &[],
    );
    let took = started.elapsed();
    let selected = window.view.selection.len();
    (took, selected, window.frames(snap, updates))
}

fn report(name: &str, devices: usize, mut times: Vec<Duration>) {
    times.sort();
    let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
    println!(
        "{name:<26} {devices} devices, {} frames: median {:.2} ms, p95 {:.2} ms, max {:.2} ms",
        times.len(),
        at(0.5).as_secs_f64() * 1e3,
        at(0.95).as_secs_f64() * 1e3,
        at(1.0).as_secs_f64() * 1e3,
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let devices = env_count("DEVICES", 10_000);
    let updates = env_count("UPDATES", 10_000);
    println!("{devices} devices, {updates} progress updates per second");
    let before = resident_mib();
    let mut snap = snapshot(devices);
    let with_snapshot = resident_mib();
    if std::env::var("ONLY").is_ok_and(|v| v == "filters") {
        filters_and_selection(&mut snap, devices, updates);
        return;
    }
    let table = run(Settings::default(), &mut snap, updates);
    report("table", devices, table);
    let by_progress = run(
        Settings {
            sort: Sort {
                column: SortColumn::Progress,
                ascending: false,
            },
            ..Settings::default()
        },
        &mut snap,
        updates,
    );
    report("table sorted by progress", devices, by_progress);
    let tiles = run(
        Settings {
            view: DeviceView::Tiles,
            ..Settings::default()
        },
        &mut snap,
        updates,
    );
    report("tiles", devices, tiles);
    tile_forms(&mut snap, devices, updates);
    filters_and_selection(&mut snap, devices, updates);
    if let (Some(a), Some(b), Some(c)) = (before, with_snapshot, resident_mib()) {
        println!(
            "resident memory: {a:.1} MiB at start, {b:.1} MiB with the {devices}-device snapshot, {c:.1} MiB after the runs"
        );
    }
}

/// The filter and sort changes, then "select not on version" and the frames after it.
fn filters_and_selection(snap: &mut Snapshot, devices: usize, updates: usize) {
    let changes = filter_changes(snap, updates);
    for (name, took) in &changes {
        println!("  filter change {name:<22} {:.1} ms", ms(*took));
    }
    if let Some((name, slowest)) = changes.iter().max_by_key(|(_, t)| *t) {
        println!(
            "filter change at {devices} devices: slowest {:.1} ms ({name}; aim: at most 50 ms)",
            ms(*slowest)
        );
    }
    let (took, selected, frames) = select_not_on_version(snap, updates);
    println!(
        "select not on version 2.0.0: {selected} devices selected in {:.1} ms",
        ms(took)
    );
    report("table with all selected", devices, frames);
}

// The tile view's two forms (the wall's part of this benchmark): "tiles" above is the form the
// window picks by default (the wall above `ui::wall::WALL_ABOVE` shown devices, cards below);
// here each form on its own, whatever the count.
fn tile_forms(snap: &mut Snapshot, devices: usize, updates: usize) {
    use ota_console::ui::settings::TileForm;
    let by_status = Sort {
        column: SortColumn::Status,
        ascending: true,
    };
    // Sorted by status, every report that changes a status moves its device to another block.
    for (name, form, sort) in [
        ("wall", TileForm::Wall, Sort::default()),
        ("wall sorted by status", TileForm::Wall, by_status),
        ("cards", TileForm::Cards, Sort::default()),
    ] {
        let settings = Settings {
            view: DeviceView::Tiles,
            tile_form: form,
            sort,
            ..Settings::default()
        };
        report(name, devices, run(settings, snap, updates));
    }
}
