//! A fleet run end to end: a mixed fleet of simulated devices upgraded by `ota-console rollout`
//! through a real Mosquitto, each device reporting its download progress every 10 s, until the
//! report is written. Nothing may be lost, every device must succeed; the console's peak memory
//! and the wall time from its start to its report are what is measured.
//!
//! Layout: three kinds of process, so each one's memory and CPU are its own: Mosquitto (a free
//! 127.0.0.1 port, unbounded queues), the simulated fleet (`ota-console sim --json`, one
//! process per 50,000 devices, 50 units per MQTT connection) and the console (`ota-console
//! rollout --all`, embedded firmware server, its own data dir). The fleet mixes the dialects:
//! 40 % Alibaba, 20 % plain FogCloud, 30 % FogCloud gateway sub-devices (gateways of 99),
//! 9 % AWS IoT things, 1 % DJI docks with their drones.
//!
//! "Zero messages lost", counted at both ends (the console's counters are the `traffic` of its
//! JSON report, taken when the campaign ended; the simulators' are their final totals):
//! - every MQTT message a simulated device published was acknowledged by Mosquitto (QoS 1
//!   PUBACK): published = acknowledged, none dropped for want of a queue;
//! - every progress report the devices sent reached the console: the simulators' count of
//!   progress reports (one per device a message reports on) = the console's;
//! - every upgrade notice the console sent reached its device: the console's notices = the
//!   notices the simulated devices received;
//! - the console refused no message, and its link queued every message it meant to send.
//!
//! "Every device succeeded": the report names exactly the devices of the fleet, each
//! `succeeded`, and the simulators count as many upgrades done.
//!
//! Run: `cargo bench --no-default-features --bench fleet_run` (5,000 devices), and the full
//! size with `-- --full` (100,000) or `-- --devices N`. Knobs (environment):
//! `FLEET_RUN_DEVICES`, `FLEET_RUN_DOWNLOAD_SECS` (25: how long each paced download lasts),
//! `FLEET_RUN_PROGRESS_SECS` (10), `FLEET_RUN_FIRMWARE_BYTES` (65536),
//! `FLEET_RUN_CONCURRENCY` (devices, at most 10,000: downloads at once),
//! `FLEET_RUN_RATE` (60000 notices a minute). Exit 1 when a check fails.
//!
//! Must never: guess a figure. Every number printed is read from a counter, `/proc` or a file.

#![expect(
    clippy::expect_used,
    reason = "a benchmark's set-up that fails has nothing to measure: it stops with a message"
)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, ExitCode, ExitStatus, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use ota_console::testing::mosquitto::{Mosquitto, free_port};
use ota_console::testing::sim_fleet::{Guarded, SimProcess, cpu_secs, sim_sum};
use serde_json::Value;

const TARGET_VERSION: &str = "2.0.0";
/// Devices per simulator process: its MQTT connections plus one HTTP connection per running
/// download stay under a 20,000 open-file limit.
const DEVICES_PER_SIM: usize = 50_000;
/// Units (a device, a gateway with its subs, a dock with its drone) per MQTT connection.
const PER_CONNECTION: usize = 50;
const SUBS_PER_GATEWAY: usize = 99;
const FULL_SIZE: usize = 100_000;
/// Connections the console publishes on (`--publish-connections`).
const PUBLISH_CONNECTIONS: u16 = 8;
/// The console's memory aim at full size.
const AIM_KIB: u64 = 1024 * 1024;

#[derive(Debug, Clone)]
struct Knobs {
    devices: usize,
    download_secs: f64,
    progress_secs: f64,
    firmware_bytes: u64,
    concurrency: usize,
    rate_per_min: u32,
}

impl Knobs {
    fn from_env_and_args() -> Result<Knobs, String> {
        let mut devices: usize = env_or("FLEET_RUN_DEVICES", 5_000)?;
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--full" => devices = FULL_SIZE,
                "--devices" => {
                    devices = args
                        .next()
                        .and_then(|v| v.parse().ok())
                        .ok_or("--devices needs a number")?;
                }
                // What `cargo bench` passes to every bench binary.
                "--bench" => {}
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        let knobs = Knobs {
            devices,
            download_secs: env_or("FLEET_RUN_DOWNLOAD_SECS", 25.0)?,
            progress_secs: env_or("FLEET_RUN_PROGRESS_SECS", 10.0)?,
            firmware_bytes: env_or("FLEET_RUN_FIRMWARE_BYTES", 65_536)?,
            concurrency: env_or("FLEET_RUN_CONCURRENCY", devices.min(10_000))?,
            rate_per_min: env_or("FLEET_RUN_RATE", 60_000)?,
        };
        if knobs.devices < 400 || knobs.concurrency == 0 || knobs.download_secs <= 0.0 {
            return Err(format!(
                "need at least 400 devices, a concurrency and a download time: {knobs:?}"
            ));
        }
        Ok(knobs)
    }

    /// Per-device bandwidth so that a download lasts `download_secs`.
    fn bandwidth(&self) -> u64 {
        ((self.firmware_bytes as f64 / self.download_secs).ceil() as u64).max(1)
    }

    fn sim_procs(&self) -> usize {
        self.devices.div_ceil(DEVICES_PER_SIM)
    }

    /// How long the console listens before it chooses its targets: the fleet starts after it
    /// listens and must have announced itself by then.
    fn discover_secs(&self) -> u64 {
        20 + self.devices as u64 / 2_000
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

/// The units of one simulator process of `count` devices: `(flag, value)`.
fn fleet_mix(count: usize) -> Vec<(&'static str, usize)> {
    let docks = count / 200;
    let gateways = count * 30 / 100 / (SUBS_PER_GATEWAY + 1);
    let aws = count * 9 / 100;
    let fogcloud = count * 20 / 100;
    let aliyun = count - 2 * docks - gateways * (SUBS_PER_GATEWAY + 1) - aws - fogcloud;
    vec![
        ("aliyun", aliyun),
        ("fogcloud", fogcloud),
        ("fogcloud-gateways", gateways),
        ("subs", SUBS_PER_GATEWAY),
        ("aws", aws),
        ("dji-docks", docks),
    ]
}

fn main() -> ExitCode {
    let knobs = match Knobs::from_env_and_args() {
        Ok(k) => k,
        Err(e) => {
            eprintln!("fleet_run: {e}");
            return ExitCode::from(2);
        }
    };
    let failures = run(&knobs);
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        println!("FAILED:");
        for f in failures {
            println!("  - {f}");
        }
        ExitCode::from(1)
    }
}

#[expect(
    clippy::too_many_lines,
    reason = "the whole run in order: processes, the measured rollout, the counts and checks"
)]
fn run(knobs: &Knobs) -> Vec<String> {
    let dir = tempfile::tempdir().expect("temp dir");
    let load_before = loadavg();
    println!(
        "fleet_run: {} devices in {} simulator process(es), {} units per MQTT connection; \
         downloads of {} bytes at {} B/s (~{:.0} s), progress every {} s; concurrency {}, \
         rate {}/min; load average {load_before}",
        knobs.devices,
        knobs.sim_procs(),
        PER_CONNECTION,
        knobs.firmware_bytes,
        knobs.bandwidth(),
        knobs.download_secs,
        knobs.progress_secs,
        knobs.concurrency,
        knobs.rate_per_min,
    );
    let broker = Mosquitto::start(
        dir.path(),
        free_port(),
        "allow_anonymous true\nmax_connections -1",
    );
    let firmware = ota_console::testing::firmware_file(
        dir.path(),
        usize::try_from(knobs.firmware_bytes).expect("a firmware size this machine can hold"),
    );
    let report_path = dir.path().join("report.json");

    let started = Instant::now();
    let mut console = start_console(knobs, &broker.url(), dir.path(), &firmware, &report_path);
    let pid = console.child.0.id();
    console.wait_line("listening for devices", Duration::from_secs(60));
    let sims = start_sims(knobs, &broker.url(), dir.path());
    let targets_line = console.wait_line(
        "target device(s)",
        Duration::from_secs(knobs.discover_secs() + 120),
    );
    let chosen = Instant::now();
    println!(
        "console chose its targets {:.1} s after it started: {targets_line}",
        started.elapsed().as_secs_f64()
    );

    // The rollout: sampled every second, a line every 10 s.
    let limit = Duration::from_secs(600 + (knobs.devices as u64 / 20));
    let mut peak_kib = 0u64;
    let mut last_line = Instant::now();
    let sim_pids: Vec<u32> = sims.iter().map(|s| s.child.0.id()).collect();
    println!(
        "{:>6} {:>9} {:>9} {:>8} {:>8} {:>8} {:>10} {:>9} {:>8}",
        "t(s)",
        "RSS(MiB)",
        "HWM(MiB)",
        "cpu con",
        "cpu mosq",
        "cpu sims",
        "progress",
        "upgraded",
        "load1"
    );
    let mut console_cpu = 0.0f64;
    let status: ExitStatus = loop {
        peak_kib = peak_kib.max(proc_kib(pid, "VmHWM:").unwrap_or(0));
        console_cpu = console_cpu.max(cpu_secs(&pid.to_string()));
        if let Some(status) = console.child.0.try_wait().expect("wait") {
            break status;
        }
        if chosen.elapsed() > limit {
            println!("the rollout did not end within {limit:?}; stopping the console");
            console.child.interrupt();
            break console.child.0.wait().expect("wait");
        }
        if last_line.elapsed() >= Duration::from_secs(10) {
            last_line = Instant::now();
            println!(
                "{:>6.0} {:>9.1} {:>9.1} {:>8.1} {:>8.1} {:>8.1} {:>10} {:>9} {:>8}",
                chosen.elapsed().as_secs_f64(),
                proc_kib(pid, "VmRSS:").unwrap_or(0) as f64 / 1024.0,
                peak_kib as f64 / 1024.0,
                cpu_secs(&pid.to_string()),
                cpu_secs(&broker.child.id().to_string()),
                sim_pids
                    .iter()
                    .map(|&p| cpu_secs(&p.to_string()))
                    .sum::<f64>(),
                sim_sum(&sims, "progress_sent", false),
                sim_sum(&sims, "upgrades_succeeded", false),
                loadavg().split_whitespace().next().unwrap_or("?"),
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let wall_from_start = started.elapsed();
    let wall_from_targets = chosen.elapsed();
    drop(console);
    let others_cpu = format!(
        "Mosquitto {:.1} s, simulators {:.1} s",
        cpu_secs(&broker.child.id().to_string()),
        sim_pids
            .iter()
            .map(|&p| cpu_secs(&p.to_string()))
            .sum::<f64>()
    );

    let sim_totals = stop_sims(sims);
    let load_after = loadavg();
    let mut failures = Vec::new();
    let report: Value = match std::fs::read_to_string(&report_path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
    {
        Some(r) => r,
        None => {
            failures.push(format!(
                "the console wrote no report (exit {status}); its log: {}",
                dir.path().join("console.log").display()
            ));
            Value::Null
        }
    };
    let devices = report["devices"].as_array().cloned().unwrap_or_default();
    let succeeded = devices
        .iter()
        .filter(|d| d["status"] == "succeeded")
        .count();
    let traffic = &report["traffic"];
    let console_count = |field: &str| traffic[field].as_u64().unwrap_or(0);

    println!();
    println!("== fleet_run result ==");
    println!(
        "console exit {status}; report: {} targets, {succeeded} succeeded (state {})",
        devices.len(),
        report["campaign"]["state"]
    );
    println!(
        "devices: {} simulated in {}/{} processes stopped cleanly, {} upgraded by their own \
         account, {} MQTT connects",
        sim_totals.get("devices"),
        sim_totals.stopped,
        sim_totals.procs,
        sim_totals.get("upgrades_succeeded"),
        sim_totals.get("connects"),
    );
    let lines = [
        (
            "MQTT messages the devices published / Mosquitto acknowledged / could not queue",
            sim_totals.get("messages_published"),
            sim_totals.get("messages_acked"),
            Some(sim_totals.get("messages_dropped")),
        ),
        (
            "progress reports the devices sent / the console took in",
            sim_totals.get("progress_sent"),
            console_count("progress"),
            None,
        ),
        (
            "upgrade notices the console sent / the devices received",
            console_count("notices"),
            sim_totals.get("notices_received"),
            None,
        ),
    ];
    for (what, a, b, c) in lines {
        match c {
            Some(c) => println!("{what}: {a} / {b} / {c}"),
            None => println!("{what}: {a} / {b}"),
        }
        if a != b || c.is_some_and(|c| c > 0) {
            failures.push(format!(
                "{what}: {a} / {b}{}",
                c.map_or(String::new(), |c| format!(" / {c}"))
            ));
        }
    }
    println!(
        "console: took in {} device messages, published {} (notices, answers, replies), \
         could not queue {}, refused {}",
        console_count("received"),
        console_count("published"),
        console_count("not_sent"),
        console_count("rejected"),
    );
    if console_count("not_sent") > 0 {
        failures.push(format!(
            "the console's link could not queue {} messages",
            console_count("not_sent")
        ));
    }
    if console_count("rejected") > 0 {
        failures.push(format!(
            "the console refused {} messages",
            console_count("rejected")
        ));
    }
    if devices.len() != knobs.devices {
        failures.push(format!(
            "the console targeted {} of {} devices",
            devices.len(),
            knobs.devices
        ));
    }
    if succeeded != knobs.devices {
        failures.push(format!(
            "{succeeded} of {} devices succeeded",
            knobs.devices
        ));
    }
    if sim_totals.get("upgrades_succeeded") != knobs.devices as u64 {
        failures.push(format!(
            "the devices count {} upgrades done",
            sim_totals.get("upgrades_succeeded")
        ));
    }
    if sim_totals.stopped != sim_totals.procs {
        failures.push("a simulator process gave no final totals".into());
    }
    if !status.success() {
        failures.push(format!("the console exited with {status}"));
    }
    println!(
        "wall time: console start -> report {:.1} s (targets chosen -> report {:.1} s, \
         discovery {} s)",
        wall_from_start.as_secs_f64(),
        wall_from_targets.as_secs_f64(),
        knobs.discover_secs()
    );
    println!(
        "console peak memory (VmHWM): {:.1} MiB ({:.2} KiB per device){}; CPU: console {console_cpu:.1} s, {others_cpu}",
        peak_kib as f64 / 1024.0,
        peak_kib as f64 / knobs.devices as f64,
        if knobs.devices >= FULL_SIZE {
            if peak_kib <= AIM_KIB {
                ", within the 1 GiB aim"
            } else {
                ", ABOVE the 1 GiB aim"
            }
        } else {
            ""
        }
    );
    println!("load average before {load_before}, after {load_after}");
    if !failures.is_empty() {
        // The logs (console, simulators, Mosquitto) and the database, to find out why.
        println!("kept for inspection: {}", dir.keep().display());
    }
    failures
}

// ---------------------------------------------------------------------------------------------
// Processes

/// `ota-console rollout`, its stderr lines (also copied to `console.log`).
struct Console {
    child: Guarded,
    lines: Receiver<String>,
}

impl Console {
    fn wait_line(&mut self, needle: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => panic!("the console never printed {needle:?} (see console.log)"),
            }
        }
    }
}

fn start_console(
    knobs: &Knobs,
    broker: &str,
    dir: &Path,
    firmware: &Path,
    report: &Path,
) -> Console {
    let timeout_secs = 120.0 + 3.0 * knobs.download_secs;
    let mut child = Command::new(env!("CARGO_BIN_EXE_ota-console"))
        .args(["rollout", "--broker", broker, "--http-bind", "127.0.0.1:0"])
        .args(["--firmware", &firmware.display().to_string()])
        .args(["--version", TARGET_VERSION, "--campaign", "fleet-run"])
        .args([
            "--all",
            "--discover-for",
            &format!("{}s", knobs.discover_secs()),
        ])
        .args(["--canary", "10", "--wave", "100%"])
        // Mosquitto reads one packet per connection per turn: the answers to 100,000 devices'
        // reports need more than one connection to keep up in a burst.
        .args(["--publish-connections", &PUBLISH_CONNECTIONS.to_string()])
        .args(["--rate", &format!("{}/min", knobs.rate_per_min)])
        .args(["--concurrency", &knobs.concurrency.to_string()])
        .args([
            "--max-connections",
            &(knobs.concurrency + 1_000).to_string(),
        ])
        .args(["--device-timeout", &format!("{timeout_secs:.0}s")])
        // A device's first report comes a progress period after its notice: the window to
        // answer a notice is longer than that, as an operator sets it for such devices.
        .args([
            "--ack-window",
            &format!("{:.0}s", knobs.progress_secs * 2.5),
        ])
        .args(["--no-abort", "--report", &report.display().to_string()])
        .env("OTA_CONSOLE_DATA_DIR", dir)
        .env("LC_ALL", "C")
        .env("LANG", "C")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("console starts");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, lines) = std::sync::mpsc::channel();
    let mut log = std::fs::File::create(dir.join("console.log")).expect("console log");
    std::thread::spawn(move || {
        use std::io::Write;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = writeln!(log, "{line}");
            let _ = tx.send(line);
        }
    });
    Console {
        child: Guarded(child),
        lines,
    }
}

fn start_sims(knobs: &Knobs, broker: &str, dir: &Path) -> Vec<SimProcess> {
    let procs = knobs.sim_procs();
    (0..procs)
        .map(|i| {
            let count = knobs.devices / procs + usize::from(i < knobs.devices % procs);
            let log = std::fs::File::create(dir.join(format!("sim-{i}.log"))).expect("sim log");
            let mut command = Command::new(env!("CARGO_BIN_EXE_ota-console"));
            command
                .args(["sim", "--broker", broker, "--json", "--summary-secs", "1"])
                .args(["--per-connection", &PER_CONNECTION.to_string()])
                .args(["--name-prefix", &format!("fr{i}")])
                .args(["--seed", &(i + 1).to_string()])
                .args(["--bandwidth", &knobs.bandwidth().to_string()])
                .args(["--install-secs", "1"])
                .args(["--progress-secs", &knobs.progress_secs.to_string()]);
            for (flag, n) in fleet_mix(count) {
                command.arg(format!("--{flag}")).arg(n.to_string());
            }
            SimProcess::spawn(command.env("RUST_LOG", "warn").stderr(Stdio::from(log)))
        })
        .collect()
}

/// The simulators' final totals, summed.
struct SimTotals {
    totals: serde_json::Map<String, Value>,
    stopped: usize,
    procs: usize,
}

impl SimTotals {
    fn get(&self, field: &str) -> u64 {
        self.totals.get(field).and_then(Value::as_u64).unwrap_or(0)
    }
}

/// Lets the devices' last messages settle (their counters unchanged for 3 s, bounded), stops
/// the simulators with Ctrl-C and sums their final totals.
fn stop_sims(sims: Vec<SimProcess>) -> SimTotals {
    let fields = ["messages_published", "messages_acked", "progress_sent"];
    let snapshot = |sims: &[SimProcess]| -> Vec<u64> {
        fields.iter().map(|f| sim_sum(sims, f, false)).collect()
    };
    let started = Instant::now();
    let mut last = snapshot(&sims);
    let mut stable_since = Instant::now();
    while started.elapsed() < Duration::from_secs(60)
        && stable_since.elapsed() < Duration::from_secs(3)
    {
        std::thread::sleep(Duration::from_millis(250));
        let now = snapshot(&sims);
        if now != last {
            last = now;
            stable_since = Instant::now();
        }
    }
    for sim in &sims {
        sim.child.interrupt();
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    for sim in &sims {
        while !sim.has_stopped() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let mut totals = serde_json::Map::new();
    let mut stopped = 0;
    for sim in &sims {
        let Some(t) = sim.final_totals() else {
            continue;
        };
        stopped += 1;
        for (k, v) in t {
            if let Some(n) = v.as_u64() {
                let sum = totals.get(&k).and_then(Value::as_u64).unwrap_or(0) + n;
                totals.insert(k, Value::from(sum));
            }
        }
    }
    SimTotals {
        totals,
        stopped,
        procs: sims.len(),
    }
}

// ---------------------------------------------------------------------------------------------
// /proc

/// A `kB` line of `/proc/PID/status` (`VmRSS:`, `VmHWM:`).
fn proc_kib(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}
