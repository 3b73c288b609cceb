//! Load: thousands of simulated devices report download progress at a fixed rate through a real
//! Mosquitto while one rollout runs over all of them; the console must receive every message the
//! broker acknowledged, finish the rollout, and keep its memory flat.
//!
//! Layout: Mosquitto and the simulated devices run as their own processes (`ota-console sim
//! --json`, several of them: each device holds an MQTT connection and, while its paced download
//! lasts, an HTTP connection, so one process per 5,000 devices stays under a 20,000 fd limit);
//! the console engine (external broker, embedded firmware server, SQLite store) runs in this
//! process, so this process's RSS and CPU time are the console's.
//!
//! Counted: messages the devices published and the broker acknowledged (QoS 1 PUBACKs, from the
//! simulators' final totals) against messages the console took in (`traffic.received`); loss =
//! acknowledged - received must be 0, otherwise the bench exits with 1. Also sampled every
//! `LOAD_SAMPLE_SECS`: the console's VmRSS (first / min / max / last and the least-squares slope
//! over the steady window, when every device is downloading and none has finished), CPU time of
//! the console, Mosquitto and the simulators (ratios, since the machine is shared), msgs/s.
//!
//! Knobs (environment): `LOAD_DEVICES` (10000), `LOAD_SECS` (600: how long each download lasts),
//! `LOAD_RATE_HZ` (1: progress reports per device per second), `LOAD_SIM_PROCS` (one per 5,000
//! devices), `LOAD_FIRMWARE_BYTES` (65536), `LOAD_RAMP_SECS` (60: notices are spread over this),
//! `LOAD_SAMPLE_SECS` (10). Run:
//! `cargo bench --no-default-features --bench load` (or `LOAD_DEVICES=1000 LOAD_SECS=60 ...`).
//!
//! Must never: count anything twice or guess a figure: every number printed is read from a
//! counter, `/proc` or the database.

#![expect(
    clippy::expect_used,
    reason = "a benchmark's set-up that fails has nothing to measure: it stops with a message"
)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use ota_console::engine::{
    self, BrokerChoice, CampaignRequest, EngineConfig, EngineHandle, FirmwareSource, Snapshot,
};
use ota_console::rollout::{CanarySize, DialectSettings, Policy, RateLimit};
use ota_console::testing::sim_fleet::{Guarded, SimProcess, cpu_secs, sim_sum};
use ota_console::transport::mqtt::LinkOptions;

const TARGET_VERSION: &str = "2.0.0";
/// Devices per simulator process: two fds each (MQTT + the paced HTTP download) under 20,000.
const DEVICES_PER_SIM: usize = 5_000;

/// What to run, from the environment.
#[derive(Debug, Clone)]
struct Knobs {
    devices: usize,
    download: Duration,
    rate_hz: f64,
    sim_procs: usize,
    firmware_bytes: u64,
    ramp: Duration,
    sample_every: Duration,
}

impl Knobs {
    fn from_env() -> Result<Knobs, String> {
        let devices: usize = env_or("LOAD_DEVICES", 10_000)?;
        let knobs = Knobs {
            devices,
            download: Duration::from_secs_f64(env_or("LOAD_SECS", 600.0)?),
            rate_hz: env_or("LOAD_RATE_HZ", 1.0)?,
            sim_procs: env_or("LOAD_SIM_PROCS", devices.div_ceil(DEVICES_PER_SIM).max(1))?,
            firmware_bytes: env_or("LOAD_FIRMWARE_BYTES", 65_536)?,
            ramp: Duration::from_secs_f64(env_or("LOAD_RAMP_SECS", 60.0)?),
            sample_every: Duration::from_secs_f64(env_or("LOAD_SAMPLE_SECS", 10.0)?),
        };
        if knobs.devices == 0 || knobs.sim_procs == 0 || knobs.sim_procs > knobs.devices {
            return Err(format!("bad device / process counts: {knobs:?}"));
        }
        if knobs.rate_hz <= 0.0 || knobs.download.is_zero() || knobs.sample_every.is_zero() {
            return Err(format!(
                "rate, duration and sample period must be > 0: {knobs:?}"
            ));
        }
        Ok(knobs)
    }

    /// Per-device bandwidth so that the download lasts `download`.
    fn bandwidth(&self) -> u64 {
        ((self.firmware_bytes as f64 / self.download.as_secs_f64()).ceil() as u64).max(1)
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> Result<T, String> {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .map_err(|_| format!("{name}={v:?} is not valid")),
        Err(_) => Ok(default),
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let knobs = match Knobs::from_env() {
        Ok(k) => k,
        Err(e) => {
            eprintln!("load bench: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    match runtime.block_on(run(knobs)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failures) => {
            println!("FAILED:");
            for f in failures {
                println!("  - {f}");
            }
            ExitCode::from(1)
        }
    }
}

async fn run(knobs: Knobs) -> Result<(), Vec<String>> {
    let dir = tempfile::tempdir().expect("temp dir");
    println!(
        "load: {} devices in {} simulator process(es), progress at {} Hz, downloads of {} bytes \
         at {} B/s (~{:.0} s), notices spread over {:.0} s; fd limit {}; load average {}",
        knobs.devices,
        knobs.sim_procs,
        knobs.rate_hz,
        knobs.firmware_bytes,
        knobs.bandwidth(),
        knobs.download.as_secs_f64(),
        knobs.ramp.as_secs_f64(),
        fd_limit(),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    let mosquitto = Mosquitto::start(dir.path());
    let handle = start_console(dir.path(), &mosquitto.url()).await;
    let firmware = ota_console::testing::firmware_file(
        dir.path(),
        usize::try_from(knobs.firmware_bytes).expect("a firmware size this machine can hold"),
    );
    let package = handle
        .import_firmware(firmware)
        .await
        .expect("firmware import");

    let sims = start_sims(&knobs, &mosquitto.url(), dir.path());
    let discovery = Instant::now();
    let targets = discover(&handle, knobs.devices).await;
    println!(
        "all {} devices announced to the console in {:.1} s",
        targets.len(),
        discovery.elapsed().as_secs_f64()
    );

    let per_minute = ((knobs.devices as f64 * 60.0) / knobs.ramp.as_secs_f64().max(1.0)).ceil();
    let policy = Policy {
        canary: CanarySize::Percent(100),
        wave_size: 0,
        rate: RateLimit {
            per_minute: per_minute as u32,
            burst: (per_minute as u32 / 60).max(1),
        },
        max_in_flight: knobs.devices as u32,
        device_timeout_secs: (knobs.ramp + knobs.download).as_secs() + 600,
        retries: 0,
        retry_interval_secs: 1,
        abort: None,
        ..Policy::default()
    };
    let campaign = handle
        .start_campaign(CampaignRequest {
            name: "load".into(),
            package_sha256: package.package.sha256.clone(),
            version: TARGET_VERSION.into(),
            module: None,
            description: "load bench".into(),
            targets,
            policy,
            settings: DialectSettings::default(),
            download_url: None,
        })
        .await
        .expect("campaign starts");
    let samples = watch_rollout(&knobs, &handle, campaign, &mosquitto, &sims).await;

    let (sim_totals, received) = settle_and_stop(&handle, sims).await;
    let snap = handle.snapshot();
    let transitions = count_transitions(&dir.path().join("ota-console.db"));
    report(&knobs, &samples, &sim_totals, received, &snap, transitions)
}

// ---------------------------------------------------------------------------------------------
// Processes

struct Mosquitto {
    child: Guarded,
    port: u16,
}

impl Mosquitto {
    /// Mosquitto on a free 127.0.0.1 port with an unbounded queue per client (its default of
    /// 1,000 silently drops QoS 1 messages to a slow subscriber, which is what we count).
    fn start(dir: &Path) -> Mosquitto {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let conf = dir.join("mosquitto.conf");
        let log = dir.join("mosquitto.log");
        std::fs::write(
            &conf,
            format!(
                "user root\nlistener {port} 127.0.0.1\nallow_anonymous true\n\
                 max_queued_messages 0\npersistent_client_expiration 1d\n\
                 persistence false\nlog_dest file {}\n\
                 log_type error\nlog_type warning\n",
                log.display()
            ),
        )
        .expect("mosquitto.conf");
        let binary = ["/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .unwrap_or("mosquitto");
        let child = Command::new(binary)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto starts (apt-get install -y mosquitto)");
        let mut m = Mosquitto {
            child: Guarded(child),
            port,
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let started = Instant::now();
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Ok(Some(status)) = m.child.0.try_wait() {
                panic!(
                    "mosquitto exited with {status}: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "mosquitto never listened"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        m
    }

    fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    fn pid(&self) -> u32 {
        self.child.0.id()
    }
}

fn start_sims(knobs: &Knobs, broker: &str, dir: &Path) -> Vec<SimProcess> {
    let progress_secs = 1.0 / knobs.rate_hz;
    (0..knobs.sim_procs)
        .map(|i| {
            // Split as evenly as possible.
            let count =
                knobs.devices / knobs.sim_procs + usize::from(i < knobs.devices % knobs.sim_procs);
            let log = std::fs::File::create(dir.join(format!("sim-{i}.log"))).expect("sim log");
            SimProcess::spawn(
                Command::new(env!("CARGO_BIN_EXE_ota-console"))
                    .args(["sim", "--broker", broker, "--json", "--summary-secs", "1"])
                    .args(["--aliyun", &count.to_string()])
                    .args(["--name-prefix", &format!("ld{i}")])
                    .args(["--seed", &(i + 1).to_string()])
                    .args(["--bandwidth", &knobs.bandwidth().to_string()])
                    .args(["--install-secs", "1"])
                    .args(["--progress-secs", &progress_secs.to_string()])
                    .env("RUST_LOG", "warn")
                    .stderr(Stdio::from(log)),
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Console

async fn start_console(dir: &Path, broker: &str) -> EngineHandle {
    let config = EngineConfig {
        broker: BrokerChoice::External(LinkOptions::new(broker.parse().expect("broker URL"))),
        firmware: FirmwareSource::Embedded {
            bind: "127.0.0.1:0".parse().expect("addr"),
            public_base: None,
            tls: None,
        },
        data_dir: dir.to_path_buf(),
        db_path: dir.join("ota-console.db"),
        dialects: vec![ota_console::protocol::aliyun::ID],
        resume_unfinished: false,
        keep_session: true,
        firmware_server: Default::default(),
    };
    let handle = engine::start(config).await.expect("console starts");
    handle
        .wait_connected(Duration::from_secs(30))
        .await
        .expect("console connects to mosquitto");
    handle
}

/// Waits until the console knows every device and its version; returns their ids.
async fn discover(handle: &EngineHandle, devices: usize) -> Vec<ota_console::device_id::DeviceId> {
    let limit = Duration::from_secs(120 + devices as u64 / 50);
    let started = Instant::now();
    let mut last_print = Instant::now();
    loop {
        let snap = handle.snapshot();
        let known = snap
            .devices
            .iter()
            .filter(|r| r.record.version(None).is_some())
            .count();
        if known >= devices {
            return snap.devices.iter().map(|r| r.record.id.clone()).collect();
        }
        assert!(
            started.elapsed() < limit,
            "only {known} of {devices} devices announced within {limit:?}"
        );
        if last_print.elapsed() >= Duration::from_secs(10) {
            println!("  discovery: {known}/{devices}");
            last_print = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Sampling

#[derive(Debug, Clone, Copy)]
struct Sample {
    /// Seconds since the campaign started.
    t: f64,
    rss_kib: u64,
    console_cpu: f64,
    mosquitto_cpu: f64,
    sims_cpu: f64,
    received: u64,
    acked: u64,
    progress_sent: u64,
    downloading: usize,
    finished: usize,
    http_conns: u64,
}

fn take_sample(
    t: f64,
    snap: &Snapshot,
    campaign: ota_console::rollout::CampaignId,
    mosquitto: &Mosquitto,
    sims: &[SimProcess],
) -> Sample {
    let counts = snap
        .campaigns
        .iter()
        .find(|c| c.snapshot.id == campaign)
        .map(|c| c.snapshot.counts)
        .unwrap_or_default();
    Sample {
        t,
        rss_kib: vm_rss_kib("self").unwrap_or(0),
        console_cpu: cpu_secs("self"),
        mosquitto_cpu: cpu_secs(&mosquitto.pid().to_string()),
        sims_cpu: sims
            .iter()
            .map(|s| cpu_secs(&s.child.0.id().to_string()))
            .sum(),
        received: snap.traffic.received,
        acked: sim_sum(sims, "messages_acked", false),
        progress_sent: sim_sum(sims, "progress_sent", false),
        downloading: counts.downloading,
        finished: counts.succeeded + counts.failures() + counts.canceled + counts.skipped,
        http_conns: snap.served.as_ref().map_or(0, |s| s.active_connections),
    }
}

/// Samples until the campaign is over (bounded), printing one line per sample.
async fn watch_rollout(
    knobs: &Knobs,
    handle: &EngineHandle,
    campaign: ota_console::rollout::CampaignId,
    mosquitto: &Mosquitto,
    sims: &[SimProcess],
) -> Vec<Sample> {
    let started = Instant::now();
    let limit = knobs.ramp + knobs.download + Duration::from_secs(300);
    let mut samples = Vec::new();
    let mut next = Instant::now();
    println!(
        "{:>6} {:>9} {:>8} {:>8} {:>8} {:>11} {:>11} {:>7} {:>6} {:>6} {:>6}",
        "t(s)",
        "RSS(MiB)",
        "cpu con",
        "cpu mosq",
        "cpu sims",
        "received",
        "acked",
        "msg/s",
        "dl",
        "done",
        "http"
    );
    loop {
        let snap = handle.snapshot();
        let s = take_sample(
            started.elapsed().as_secs_f64(),
            &snap,
            campaign,
            mosquitto,
            sims,
        );
        let rate = samples.last().map_or(0.0, |p: &Sample| {
            (s.received - p.received) as f64 / (s.t - p.t).max(1e-9)
        });
        println!(
            "{:>6.0} {:>9.1} {:>8.1} {:>8.1} {:>8.1} {:>11} {:>11} {:>7.0} {:>6} {:>6} {:>6}",
            s.t,
            s.rss_kib as f64 / 1024.0,
            s.console_cpu,
            s.mosquitto_cpu,
            s.sims_cpu,
            s.received,
            s.acked,
            rate,
            s.downloading,
            s.finished,
            s.http_conns
        );
        samples.push(s);
        let over = snap.campaigns.iter().any(|c| {
            c.snapshot.id == campaign
                && c.snapshot.state.is_finished()
                && c.snapshot.counts.in_flight() == 0
        });
        if over {
            return samples;
        }
        if started.elapsed() > limit {
            println!("the rollout did not finish within {limit:?}; reporting what ran");
            return samples;
        }
        next += knobs.sample_every;
        tokio::time::sleep_until(next.into()).await;
    }
}

/// Waits (bounded) for the console to have taken in everything the devices sent, stops the
/// simulators and returns their final totals and the console's final received count.
async fn settle_and_stop(handle: &EngineHandle, sims: Vec<SimProcess>) -> (SimTotals, u64) {
    // The simulators print every second: equality, or no change for 10 s, ends the wait.
    let started = Instant::now();
    let mut last = (u64::MAX, u64::MAX);
    let mut stable_since = Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        let now = (
            sim_sum(&sims, "messages_acked", false),
            handle.snapshot().traffic.received,
        );
        if now.0 == now.1 && now.0 > 0 {
            break;
        }
        if now != last {
            last = now;
            stable_since = Instant::now();
        } else if stable_since.elapsed() > Duration::from_secs(10) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for sim in &sims {
        sim.child.interrupt();
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    for sim in &sims {
        while !sim.has_stopped() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let totals = SimTotals {
        published: sim_sum(&sims, "messages_published", true),
        acked: sim_sum(&sims, "messages_acked", true),
        dropped: sim_sum(&sims, "messages_dropped", true),
        progress: sim_sum(&sims, "progress_sent", true),
        connects: sim_sum(&sims, "connects", true),
        upgraded: sim_sum(&sims, "upgrades_succeeded", true),
        devices: sim_sum(&sims, "devices", true),
        stopped: sims.iter().filter(|s| s.has_stopped()).count(),
        procs: sims.len(),
    };
    // Whatever was still in the console's inbound queue is counted once it is taken in.
    let mut received = handle.snapshot().traffic.received;
    let until = Instant::now() + Duration::from_secs(10);
    while received < totals.acked && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(200)).await;
        received = handle.snapshot().traffic.received;
    }
    drop(sims);
    (totals, received)
}

/// The simulators' final totals, summed.
#[derive(Debug, Default)]
struct SimTotals {
    published: u64,
    acked: u64,
    dropped: u64,
    progress: u64,
    connects: u64,
    upgraded: u64,
    devices: u64,
    stopped: usize,
    procs: usize,
}

fn count_transitions(db: &Path) -> Option<i64> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .ok()?;
    conn.query_row("SELECT count(*) FROM transitions", [], |r| r.get(0))
        .ok()
}

// ---------------------------------------------------------------------------------------------
// Report

fn report(
    knobs: &Knobs,
    samples: &[Sample],
    sims: &SimTotals,
    received: u64,
    snap: &Snapshot,
    transitions: Option<i64>,
) -> Result<(), Vec<String>> {
    let mut failures = Vec::new();
    let campaign = snap.campaigns.first();
    let counts = campaign.map(|c| c.snapshot.counts).unwrap_or_default();
    println!();
    println!("== load result ==");
    println!(
        "devices {} (simulators report {} in {}/{} processes stopped cleanly, {} upgraded \
         by their own account), MQTT connects {}",
        knobs.devices, sims.devices, sims.stopped, sims.procs, sims.upgraded, sims.connects
    );
    println!(
        "rollout: {} succeeded, {} failed, {} timed out, {} rejected, {} canceled, {} still in \
         flight (state {})",
        counts.succeeded,
        counts.failed,
        counts.timed_out,
        counts.rejected,
        counts.canceled,
        counts.in_flight(),
        campaign.map_or("none".to_owned(), |c| c.snapshot.state.to_string())
    );
    println!(
        "devices published {} (progress {}), broker acknowledged {}, could not queue {}",
        sims.published, sims.progress, sims.acked, sims.dropped
    );
    let loss = sims.acked as i64 - received as i64;
    println!(
        "console received {received}: loss = acknowledged - received = {loss}{}",
        if loss < 0 {
            " (more received than acknowledged: QoS 1 duplicates after a reconnect)"
        } else {
            ""
        }
    );
    println!(
        "console published {} notices/replies, refused {} messages; transitions persisted: {}",
        snap.traffic.published,
        snap.traffic.rejected,
        transitions.map_or("?".to_owned(), |n| n.to_string())
    );
    if loss != 0 {
        failures.push(format!(
            "{loss} messages acknowledged by the broker were not received"
        ));
    }
    if sims.stopped != sims.procs {
        failures.push(format!(
            "only {} of {} simulator processes reported final totals",
            sims.stopped, sims.procs
        ));
    }
    if counts.succeeded != knobs.devices {
        failures.push(format!(
            "{} of {} devices succeeded",
            counts.succeeded, knobs.devices
        ));
    }
    if sims.connects != knobs.devices as u64 {
        println!(
            "note: {} MQTT connects for {} devices (reconnects happened)",
            sims.connects, knobs.devices
        );
    }
    for alert in snap
        .alerts
        .iter()
        .filter(|a| a.level != engine::AlertLevel::Info)
    {
        println!("console alert: {:?} {}", alert.level, alert.text);
    }
    rates_and_cpu(samples);
    if let Err(e) = memory(samples) {
        failures.push(e);
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures)
    }
}

/// The steady window: every device downloading (plus 30 s to settle) until the first finishes.
fn steady(samples: &[Sample]) -> &[Sample] {
    let total = samples
        .iter()
        .map(|s| s.downloading + s.finished)
        .max()
        .unwrap_or(0);
    let all_in = samples
        .iter()
        .find(|s| total > 0 && s.downloading == total)
        .map(|s| s.t + 30.0);
    let first_done = samples.iter().find(|s| s.finished > 0).map(|s| s.t);
    let (Some(from), Some(to)) = (all_in, first_done) else {
        return samples;
    };
    let window: Vec<usize> = (0..samples.len())
        .filter(|&i| samples[i].t >= from && samples[i].t < to)
        .collect();
    match (window.first(), window.last()) {
        (Some(&a), Some(&b)) if b >= a + 2 => &samples[a..=b],
        _ => samples,
    }
}

fn rates_and_cpu(samples: &[Sample]) {
    let window = steady(samples);
    let (Some(first), Some(last)) = (window.first(), window.last()) else {
        return;
    };
    let secs = (last.t - first.t).max(1e-9);
    println!(
        "steady window {:.0}-{:.0} s ({} samples): console took in {:.0} msg/s, devices sent \
         {:.0} progress msg/s",
        first.t,
        last.t,
        window.len(),
        (last.received - first.received) as f64 / secs,
        (last.progress_sent - first.progress_sent) as f64 / secs
    );
    let console = last.console_cpu - first.console_cpu;
    let mosquitto = last.mosquitto_cpu - first.mosquitto_cpu;
    let sims = last.sims_cpu - first.sims_cpu;
    println!(
        "CPU in the steady window: console {:.1} s ({:.0} % of a core), mosquitto {:.1} s \
         ({:.0} %), simulators {:.1} s ({:.0} %); console/mosquitto = {:.2}",
        console,
        100.0 * console / secs,
        mosquitto,
        100.0 * mosquitto / secs,
        sims,
        100.0 * sims / secs,
        console / mosquitto.max(1e-9)
    );
    if let (Some(a), Some(b)) = (samples.first(), samples.last()) {
        println!(
            "CPU over the whole rollout ({:.0} s): console {:.1} s, mosquitto {:.1} s, \
             simulators {:.1} s; console/mosquitto = {:.2}",
            b.t - a.t,
            b.console_cpu - a.console_cpu,
            b.mosquitto_cpu - a.mosquitto_cpu,
            b.sims_cpu - a.sims_cpu,
            (b.console_cpu - a.console_cpu) / (b.mosquitto_cpu - a.mosquitto_cpu).max(1e-9)
        );
    }
}

/// Prints the RSS figures; an error when the steady window shows growth (more than 5 % of the
/// mean and more than 8 MiB projected over the window).
fn memory(samples: &[Sample]) -> Result<(), String> {
    let mib = |kib: f64| kib / 1024.0;
    let rss: Vec<f64> = samples.iter().map(|s| s.rss_kib as f64).collect();
    let (Some(first), Some(last)) = (rss.first(), rss.last()) else {
        return Err("no memory samples".into());
    };
    let min = rss.iter().copied().fold(f64::INFINITY, f64::min);
    let max = rss.iter().copied().fold(0.0, f64::max);
    println!(
        "console RSS (MiB): first {:.1}, min {:.1}, max {:.1}, last {:.1}",
        mib(*first),
        mib(min),
        mib(max),
        mib(*last)
    );
    let window = steady(samples);
    let points: Vec<(f64, f64)> = window.iter().map(|s| (s.t, s.rss_kib as f64)).collect();
    let Some((slope, mean)) = least_squares(&points) else {
        return Err("too few samples for a memory trend".into());
    };
    let span = points.last().map_or(0.0, |p| p.0) - points.first().map_or(0.0, |p| p.0);
    let growth = slope * span;
    println!(
        "console RSS trend in the steady window: {:+.3} MiB/min ({:+.1} MiB over {:.0} s, mean \
         {:.1} MiB)",
        mib(slope * 60.0),
        mib(growth),
        span,
        mib(mean)
    );
    if growth > 0.05 * mean && mib(growth) > 8.0 {
        Err(format!(
            "console memory grows: {:+.1} MiB over the {:.0} s steady window",
            mib(growth),
            span
        ))
    } else {
        println!("memory: flat");
        Ok(())
    }
}

/// Slope (per second) and mean of y, by least squares; `None` with fewer than 3 points.
fn least_squares(points: &[(f64, f64)]) -> Option<(f64, f64)> {
    if points.len() < 3 {
        return None;
    }
    let n = points.len() as f64;
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    (sxx > 0.0).then(|| (sxy / sxx, my))
}

// ---------------------------------------------------------------------------------------------
// /proc

fn vm_rss_kib(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn fd_limit() -> String {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| {
            l.lines()
                .find(|l| l.starts_with("Max open files"))
                .map(|l| {
                    l.split_whitespace()
                        .skip(3)
                        .take(2)
                        .collect::<Vec<_>>()
                        .join("/")
                })
        })
        .unwrap_or_else(|| "?".into())
}
