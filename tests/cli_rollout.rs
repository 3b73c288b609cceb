//! The real `ota-console rollout` binary against a broker started here, with a simulated fleet in
//! this process: exit codes, the JSON report's shape, and resuming after `kill -9`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ota_console::device_id::{DeviceId, Dialect};
use ota_console::sim::{Behaviour, DeviceState, SimConfig, SimFleet};
use ota_console::store::Store;
use ota_console::transport::broker::EmbeddedBroker;

const WAIT: Duration = Duration::from_secs(90);

struct Console {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Console {
    fn spawn(args: &[String], data_dir: &Path) -> Console {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ota-console"))
            .args(args)
            .env("OTA_CONSOLE_DATA_DIR", data_dir)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("console starts");
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Console {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits (bounded) for a stderr line containing `needle` and returns it.
    fn expect_line(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!("no line with {needle:?}; saw {:#?}", self.seen),
            }
        }
    }

    fn wait(mut self) -> (i32, Vec<String>) {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                self.seen.extend(self.lines.try_iter());
                return (status.code().unwrap_or(-1), self.seen);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("console did not finish; saw {:#?}", self.seen);
            }
            self.seen.extend(self.lines.try_iter());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn firmware(dir: &Path, size: usize) -> std::path::PathBuf {
    let path = dir.join("fw.bin");
    let bytes: Vec<u8> = (0..size).map(|i| (i % 253) as u8).collect();
    std::fs::write(&path, bytes).unwrap();
    path
}

fn base_args(broker: &EmbeddedBroker, dir: &Path, fw: &Path) -> Vec<String> {
    [
        "rollout",
        "--broker",
        &format!("mqtt://{}", broker.local_addr()),
        "--http-bind",
        "127.0.0.1:0",
        "--db",
        &dir.join("console.db").display().to_string(),
        "--firmware",
        &fw.display().to_string(),
        "--version",
        "2.0.0",
        "--rate",
        "6000/min",
        "--device-timeout",
        "30s",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn sim(broker: &EmbeddedBroker, behaviour: Behaviour) -> SimConfig {
    SimConfig {
        broker_url: format!("mqtt://{}", broker.local_addr()),
        version: "1.0.0".into(),
        behaviour,
        ..SimConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_all_writes_a_report_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let broker = EmbeddedBroker::start("127.0.0.1:0".parse().unwrap()).unwrap();
    let fw = firmware(dir.path(), 100_000);
    let report = dir.path().join("report.json");
    let mut args = base_args(&broker, dir.path(), &fw);
    args.extend(
        [
            "--all",
            "--dialect",
            "aliyun",
            "--dialect",
            "fogcloud",
            "--discover-for",
            "3s",
            "--wave",
            "100%",
            "--concurrency",
            "100",
            "--report",
        ]
        .map(String::from),
    );
    args.push(report.display().to_string());
    let mut console = Console::spawn(&args, dir.path());
    console.expect_line("listening for devices");
    let fleet = SimFleet::start(SimConfig {
        aliyun: 3,
        fogcloud: 1,
        fogcloud_gateways: 1,
        subs_per_gateway: 2,
        ..sim(
            &broker,
            Behaviour {
                install: Duration::from_millis(100),
                ..Behaviour::default()
            },
        )
    })
    .await
    .unwrap();
    let (code, lines) = tokio::task::spawn_blocking(move || console.wait())
        .await
        .unwrap();
    assert_eq!(code, 0, "{lines:#?}");

    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let campaign = &report["campaign"];
    assert!(campaign["id"].is_i64());
    assert_eq!(campaign["version"], "2.0.0");
    assert_eq!(campaign["state"], "completed");
    assert_eq!(campaign["package"]["size"], 100_000);
    assert_eq!(campaign["package"]["md5"].as_str().unwrap().len(), 32);
    assert_eq!(campaign["package"]["sha256"].as_str().unwrap().len(), 64);
    assert!(campaign["policy"].is_object());
    assert!(campaign["started_at"].is_u64() && campaign["finished_at"].is_u64());
    let devices = report["devices"].as_array().unwrap();
    // 3 Alibaba + 1 FogCloud + 1 gateway + 2 sub-devices
    assert_eq!(devices.len(), 7, "{devices:#?}");
    for d in devices {
        for key in [
            "id",
            "status",
            "from_version",
            "to_version",
            "percent",
            "attempts",
            "error",
            "code",
        ] {
            assert!(d.get(key).is_some(), "{key} missing in {d}");
        }
        assert_eq!(d["status"], "succeeded", "{d}");
        assert_eq!(d["from_version"], "1.0.0");
        assert_eq!(d["to_version"], "2.0.0");
        assert_eq!(d["percent"], 100);
        assert_eq!(d["attempts"], 1);
        assert!(d["error"].is_null() && d["code"].is_null());
        let id: DeviceId = d["id"].as_str().unwrap().parse().unwrap();
        assert_eq!(fleet.stats().get(&id).unwrap().version, "2.0.0");
    }
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_devices_give_exit_code_one() {
    let dir = tempfile::tempdir().unwrap();
    let broker = EmbeddedBroker::start("127.0.0.1:0".parse().unwrap()).unwrap();
    let fw = firmware(dir.path(), 20_000);
    let mut behaviour = Behaviour {
        install: Duration::from_millis(50),
        ..Behaviour::default()
    };
    behaviour.faults.verify = 1.0;
    let mut args = base_args(&broker, dir.path(), &fw);
    args.extend(
        [
            "--all",
            "--discover-for",
            "2s",
            "--wave",
            "100%",
            "--retries",
            "0",
            "--no-abort",
        ]
        .map(String::from),
    );
    let mut console = Console::spawn(&args, dir.path());
    console.expect_line("listening for devices");
    let fleet = SimFleet::start(SimConfig {
        aliyun: 2,
        ..sim(&broker, behaviour)
    })
    .await
    .unwrap();
    let (code, lines) = tokio::task::spawn_blocking(move || console.wait())
        .await
        .unwrap();
    assert_eq!(code, 1, "{lines:#?}");
    assert!(lines.iter().any(|l| l.contains("2 failed")), "{lines:#?}");
    fleet.shutdown().await;
}

#[test]
fn bad_usage_exits_two_with_a_reason() {
    let out = Command::new(env!("CARGO_BIN_EXE_ota-console"))
        .args([
            "rollout",
            "--firmware",
            "x.bin",
            "--version",
            "1",
            "--target",
            "aliyun:bad",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("aliyun:bad"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_after_kill_never_notices_a_succeeded_device_twice() {
    let dir = tempfile::tempdir().unwrap();
    let broker = EmbeddedBroker::start("127.0.0.1:0".parse().unwrap()).unwrap();
    let fw = firmware(dir.path(), 300_000);
    let db = dir.path().join("console.db");
    // Devices keep the URL they were given, so the resumed console serves on the same address.
    let http_bind = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let mut args = base_args(&broker, dir.path(), &fw);
    let bind_at = args.iter().position(|a| a == "--http-bind").unwrap() + 1;
    args[bind_at] = http_bind.clone();
    // A device whose download dies with the console is decided by its timeout, then retried:
    // keep both short so that path, too, finishes within the test's bound.
    let timeout_at = args.iter().position(|a| a == "--device-timeout").unwrap() + 1;
    args[timeout_at] = "5s".into();
    args.extend(["--retry-interval", "1s", "--retries", "3"].map(String::from));
    // One device at a time, each taking a while: a kill lands mid-rollout.
    args.extend(
        [
            "--all",
            "--dialect",
            "aliyun",
            "--discover-for",
            "2s",
            "--wave",
            "100%",
            "--concurrency",
            "1",
        ]
        .map(String::from),
    );
    let mut console = Console::spawn(&args, dir.path());
    console.expect_line("listening for devices");
    let fleet = SimFleet::start(SimConfig {
        aliyun: 5,
        ..sim(
            &broker,
            Behaviour {
                install: Duration::from_millis(300),
                bandwidth_bytes_per_sec: Some(600_000),
                ..Behaviour::default()
            },
        )
    })
    .await
    .unwrap();
    let line = console.expect_line("running");
    let campaign_id: i64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no campaign id in {line:?}"));

    // Kill -9 once two devices succeeded and a third is mid-download: the hardest moment, as
    // that download dies with the console and only its timeout can decide it after the resume.
    let deadline = Instant::now() + WAIT;
    loop {
        let stats = fleet.stats();
        let done = stats
            .devices
            .iter()
            .filter(|d| d.version == "2.0.0")
            .count();
        let downloading = stats
            .devices
            .iter()
            .any(|d| matches!(d.state, DeviceState::Downloading { .. }));
        if done >= 2 && downloading {
            break;
        }
        assert!(Instant::now() < deadline, "no progress before the kill");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    console.child.kill().unwrap(); // SIGKILL
    let _ = console.child.wait();
    let succeeded_before: Vec<DeviceId> = fleet
        .stats()
        .devices
        .iter()
        .filter(|d| d.version == "2.0.0")
        .map(|d| d.id.clone())
        .collect();
    assert!(
        succeeded_before.len() < 5,
        "the kill came too late to test anything"
    );
    Store::open(&db).unwrap().integrity_check().unwrap();

    let resume = vec![
        "rollout".to_string(),
        "--broker".into(),
        format!("mqtt://{}", broker.local_addr()),
        "--http-bind".into(),
        http_bind,
        "--db".into(),
        db.display().to_string(),
        "--resume".into(),
        campaign_id.to_string(),
    ];
    let console = Console::spawn(&resume, dir.path());
    let (code, lines) = tokio::task::spawn_blocking(move || console.wait())
        .await
        .unwrap();
    assert_eq!(code, 0, "{lines:#?}");
    let stats = fleet.stats();
    for d in &stats.devices {
        assert_eq!(d.id.dialect(), Dialect::Aliyun);
        assert_eq!(d.version, "2.0.0", "{d:?}");
    }
    for id in succeeded_before {
        let d = stats.get(&id).unwrap();
        assert_eq!(
            d.notices_received, 1,
            "succeeded device {id} was noticed again: {d:?}"
        );
    }
    Store::open(&db).unwrap().integrity_check().unwrap();
    fleet.shutdown().await;
}
