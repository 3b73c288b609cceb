//! Secrets, black-box: the real `ota-console rollout`, logging at `trace` (every crate, rumqttc's
//! packet logs included), authenticates to a Mosquitto that checks its password and rolls out to
//! a simulated fleet. The password must appear in no byte it prints or writes (log, report,
//! database, WAL), and what it writes is private: data folder 0700, database files 0600.

// Test code throughout: clippy's allow-unwrap-in-tests (clippy.toml) goes by `cfg(test)`.
#![cfg(test)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ota_console::sim::{Behaviour, SimConfig, SimFleet};
use ota_console::testing::console::rollout_args;
use ota_console::testing::firmware_file;
use ota_console::testing::mosquitto::{Mosquitto, free_port};
use ota_console::testing::sim_units;

const PASSWORD: &str = "pw-Zq81-never-printed";
const WAIT: Duration = Duration::from_secs(90);

fn password_file(dir: &Path) -> PathBuf {
    let passwd = dir.join("passwd");
    let status = Command::new("mosquitto_passwd")
        .args(["-b", "-c"])
        .arg(&passwd)
        .args(["console", PASSWORD])
        .status()
        .expect("mosquitto_passwd runs (package mosquitto)");
    assert!(status.success());
    passwd
}

/// Waits (bounded) until `file` contains `needle`.
fn wait_for_text(file: &Path, needle: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        if text.contains(needle) {
            return;
        }
        assert!(Instant::now() < deadline, "no {needle:?} in:\n{text}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_password_is_in_no_log_report_or_file_and_files_are_private() {
    let dir = tempfile::tempdir().unwrap();
    let passwd = password_file(dir.path());
    // Devices connect anonymously; a client that names a user must give its password.
    let broker = Mosquitto::start(
        dir.path(),
        free_port(),
        &format!("allow_anonymous true\npassword_file {}", passwd.display()),
    );
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let data = dir.path().join("data");
    let fw = firmware_file(&work, 50_000);
    let report = work.join("report.json");
    let log = work.join("console.log");
    let mut args = rollout_args(&broker.url(), &work, &fw);
    args.extend(
        [
            "--username",
            "console",
            "--all",
            "--discover-for",
            "2s",
            "--wave",
            "100%",
            "--report",
            &report.display().to_string(),
        ]
        .map(String::from),
    );
    let log_file = std::fs::File::create(&log).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ota-console"))
        .args(&args)
        .env("OTA_MQTT_PASSWORD", PASSWORD)
        .env("OTA_CONSOLE_DATA_DIR", &data)
        .env("RUST_LOG", "trace")
        .stdout(log_file.try_clone().unwrap())
        .stderr(log_file)
        .stdin(Stdio::null())
        .spawn()
        .expect("console starts");
    wait_for_text(&log, "listening for devices");
    let fleet = SimFleet::start(SimConfig {
        broker_url: broker.url(),
        version: "1.0.0".into(),
        units: sim_units(&[("aliyun", 2)]),
        behaviour: Behaviour {
            install: Duration::from_millis(100),
            ..Behaviour::default()
        },
        // Devices download like embedded SDKs: exact header names, Content-Length required.
        strict: true,
        ..SimConfig::default()
    })
    .await
    .expect("simulated fleet starts");
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "console did not finish:\n{}",
                std::fs::read_to_string(&log).unwrap()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(status.code(), Some(0), "{text}");
    fleet.shutdown().await;

    // The log really is verbose (MQTT packets and all), so a leak would have shown.
    let verbose = text
        .lines()
        .filter(|l| l.contains("DEBUG") || l.contains("TRACE"))
        .count();
    assert!(verbose >= 3, "only {verbose} debug lines:\n{text}");
    assert!(text.contains("rumqttc"), "{text}");
    assert!(
        !text.contains('\u{1b}'),
        "colour codes in a log file:\n{text}"
    );
    assert!(text.contains("2 succeeded"), "{text}");
    let mut checked = Vec::new();
    for file in files_under(&work).into_iter().chain(files_under(&data)) {
        let bytes = std::fs::read(&file).unwrap();
        assert!(
            !contains(&bytes, PASSWORD.as_bytes()),
            "the password is in {}",
            file.display()
        );
        checked.push(file);
    }
    assert!(checked.contains(&report) && checked.contains(&work.join("console.db")));

    assert_eq!(mode(&data), 0o700, "data folder");
    for name in ["console.db", "console.db-wal", "console.db-shm"] {
        let path = work.join(name);
        if path.exists() {
            assert_eq!(mode(&path), 0o600, "{name}");
        }
    }
    assert_eq!(mode(&work.join("console.db")), 0o600);
}
