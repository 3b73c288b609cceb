//! End to end with a device stack nobody on the project wrote: Alibaba's official Python device
//! SDK (Link Kit, `aliyun-iot-linkkit` from PyPI, pinned in `tests/sdk/requirements.txt`) under a
//! thin device app (`tests/sdk/aliyun_device.py`), upgraded by the real `ota-console rollout`
//! through the embedded broker and the console's own firmware server, all on loopback ports
//! picked by the system.
//!
//! The SDK runs in the Python environment `scripts/dev test` creates (`.venv/`), whose
//! interpreter is named by `OTA_TEST_PYTHON`. Without one these tests fail and say how to get
//! it: they never pass without having driven the SDK.

// Test code throughout: clippy's allow-unwrap-in-tests (clippy.toml) goes by `cfg(test)`.
#![cfg(test)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ota_console::access::credentials::{ConsoleCredentials, SECRETS_FILE, SecretTable};
use ota_console::protocol::registry;
use ota_console::testing::console::{Console, rollout_args, set_flag};
use ota_console::testing::firmware_file;
use ota_console::testing::sdk_device::{DEVICE_WAIT, SdkDevice};
use ota_console::transport::broker::{Attempt, BrokerEvent, BrokerSettings, EmbeddedBroker};
use serde_json::Value;

/// Product key of the bench devices (Alibaba product keys are 11 characters).
const PK: &str = "a1SdkBench0";

/// The interpreter of the venv holding the SDK: `OTA_TEST_PYTHON`, else `.venv/` in the
/// checkout. Fails the test, with the way to install it, when there is none or it lacks the SDK.
fn sdk_python() -> PathBuf {
    const HOW: &str = "run the tests with `scripts/dev test` (it creates .venv/ from \
        tests/sdk/requirements.txt and sets OTA_TEST_PYTHON), or create it yourself: \
        python3 -m venv .venv && .venv/bin/pip install -r tests/sdk/requirements.txt, \
        then OTA_TEST_PYTHON=$PWD/.venv/bin/python cargo test --test sdk_aliyun";
    let python = match std::env::var_os("OTA_TEST_PYTHON") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => {
            let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
            assert!(
                venv.exists(),
                "Alibaba's Python device SDK is needed and OTA_TEST_PYTHON is not set and \
                 {} does not exist: {HOW}",
                venv.display()
            );
            venv
        }
    };
    let probe = Command::new(&python)
        .args(["-c", "import linkkit.linkkit, paho.mqtt.client"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}; {HOW}", python.display()));
    assert!(
        probe.status.success(),
        "{} cannot import the SDK ({}): {HOW}",
        python.display(),
        String::from_utf8_lossy(&probe.stderr).trim()
    );
    python
}

/// Starts the app as device `name` on `version`; `extra` are more options of the app.
fn start_device(
    python: &Path,
    broker: SocketAddr,
    name: &str,
    version: &str,
    dir: &Path,
    extra: &[&str],
) -> SdkDevice {
    let work_dir = dir.join(name);
    std::fs::create_dir_all(&work_dir).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/aliyun_device.py");
    let mut command = Command::new(python);
    command
        .arg(script)
        .args(["--host", &broker.ip().to_string()])
        .args(["--port", &broker.port().to_string()])
        .args(["--product-key", PK, "--device-name", name])
        .args(["--version", version])
        .arg("--work-dir")
        .arg(&work_dir)
        .args(extra);
    SdkDevice::spawn(name, command)
}

/// The DeviceSecret of the bench device `name` (as the Alibaba console's export would give it).
fn secret_of(name: &str) -> String {
    format!("{name}-secret-0123456789abcdef")
}

/// The embedded broker with its secure default on a loopback port, knowing the secrets of the
/// bench devices `sdk-1`..`sdk-9` from an Alibaba CSV export imported into `dir`: every SDK
/// device of these tests logs in with its real signature.
fn secure_broker(dir: &Path) -> EmbeddedBroker {
    let csv = dir.join("alibaba-export.csv");
    let mut rows = String::from("ProductKey,DeviceName,DeviceSecret\n");
    let names = (1..=9).map(|i| format!("sdk-{i}"));
    for name in names.chain(["sdk-late".to_owned()]) {
        rows.push_str(&format!("{PK},{name},{}\n", secret_of(&name)));
    }
    std::fs::write(&csv, rows).unwrap();
    SecretTable::import(dir, &csv).unwrap();
    EmbeddedBroker::start(BrokerSettings::secure(
        "127.0.0.1:0".parse().unwrap(),
        dir.to_path_buf(),
        registry::topic_routes(),
    ))
    .unwrap()
}

/// The console logs in to the secured broker with its own credentials (from the data directory
/// the broker reads).
fn log_in_as_console(args: &mut Vec<String>, dir: &Path) {
    let console = ConsoleCredentials::load_or_create(dir).unwrap();
    args.extend(["--username".to_owned(), console.username]);
    args.extend(["--password".to_owned(), console.password]);
}

/// Starts `n` SDK devices on version 1.0.0 and waits until each has subscribed to its upgrade
/// topic and reported its version, as a device does at boot.
fn boot_devices(python: &Path, broker: &EmbeddedBroker, dir: &Path, n: usize) -> Vec<SdkDevice> {
    let mut devices: Vec<SdkDevice> = (1..=n)
        .map(|i| {
            let name = format!("sdk-{i}");
            start_device(
                python,
                broker.local_addr(),
                &name,
                "1.0.0",
                dir,
                &["--device-secret", &secret_of(&name)],
            )
        })
        .collect();
    for d in &mut devices {
        assert_eq!(d.expect("connected")["rc"], 0);
        d.expect("subscribed");
        assert_eq!(d.expect("reported")["version"], "1.0.0");
    }
    devices
}

/// Starts `ota-console rollout` of a 64 KiB firmware as 2.0.0 to `devices`, with a JSON report
/// written to `dir/report.json`. The devices are watched while it runs, so a device that goes
/// wrong fails the test with what the SDK said rather than with a console that never finishes.
fn start_rollout(
    broker: &EmbeddedBroker,
    dir: &Path,
    devices: &[SdkDevice],
    extra: &[&str],
) -> Console {
    let fw = firmware_file(dir, 64 * 1024);
    let mut args = rollout_args(&format!("mqtt://{}", broker.local_addr()), dir, &fw);
    log_in_as_console(&mut args, dir);
    for d in devices {
        args.push("--target".into());
        args.push(format!("aliyun:{PK}/{}", d.name()));
    }
    args.extend(["--wave", "100%", "--report"].map(String::from));
    args.push(dir.join("report.json").display().to_string());
    args.extend(extra.iter().map(|s| s.to_string()));
    Console::spawn(&args, dir)
}

/// Waits (bounded) for the console to exit: its exit code, its report and its stderr.
fn finish(console: Console, dir: &Path) -> (i32, Value, Vec<String>) {
    let (code, lines) = console.wait();
    let text = std::fs::read_to_string(dir.join("report.json"))
        .unwrap_or_else(|e| panic!("no report ({e}); console said {lines:#?}"));
    (code, serde_json::from_str(&text).unwrap(), lines)
}

/// The package the console announced (`fw.bin: SIZE bytes, md5 M, sha256 S`).
fn announced_package(console: &mut Console) -> Value {
    let line = console.expect_line("fw.bin: ");
    let words: Vec<&str> = line.split_whitespace().collect();
    let after = |key: &str| {
        let at = words
            .iter()
            .position(|w| *w == key)
            .unwrap_or_else(|| panic!("{line}"));
        words
            .get(at + 1)
            .map(|w| w.trim_end_matches(','))
            .unwrap_or_default()
            .to_owned()
    };
    serde_json::json!({
        "size": words.get(1).and_then(|n| n.parse::<u64>().ok()),
        "md5": after("md5"),
        "sha256": after("sha256"),
    })
}

fn report_device<'a>(report: &'a Value, name: &str) -> &'a Value {
    let id = format!("aliyun:{PK}/{name}");
    report["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == id.as_str())
        .unwrap_or_else(|| panic!("{id} is not in the report {report:#}"))
}

/// What every SDK notice must carry, checked on what the SDK handed the app: the digest the
/// notice names in the spelling the SDK compares, and the exact size.
fn check_notice(notice: &Value, package: &Value, sign_method: &str, digest_key: &str) {
    assert_eq!(notice["version"], "2.0.0", "{notice}");
    assert_eq!(notice["signMethod"], sign_method, "{notice}");
    assert_eq!(notice["sign"], package[digest_key], "{notice}");
    assert_eq!(notice["size"], package["size"], "{notice}");
    assert!(
        notice["url"]
            .as_str()
            .is_some_and(|u| u.starts_with("http://127.0.0.1:")),
        "{notice}"
    );
}

fn upgrades_with(sign_method_arg: &str, sign_method_wire: &str, digest_key: &str, n: usize) {
    let python = sdk_python();
    let dir = tempfile::tempdir().unwrap();
    let broker = secure_broker(dir.path());
    let mut devices = boot_devices(&python, &broker, dir.path(), n);

    // No retries: a device that fails ends the run at once, with what the SDK said.
    let mut console = start_rollout(
        &broker,
        dir.path(),
        &devices,
        &["--sign-method", sign_method_arg, "--retries", "0"],
    );
    let package = announced_package(&mut console);
    for d in &mut devices {
        let notice = d.expect("notice");
        check_notice(&notice, &package, sign_method_wire, digest_key);
        let downloaded = d.expect("downloaded");
        assert_eq!(downloaded["rc"], "SUCCESS", "{downloaded}");
        assert_eq!(downloaded["bytes"], package["size"], "{downloaded}");
        assert_eq!(d.expect("upgraded")["version"], "2.0.0");
        let errors: Vec<&Value> = d
            .drain()
            .iter()
            .filter(|e| e["event"] == "sdk_error")
            .collect();
        assert!(errors.is_empty(), "the SDK logged errors: {errors:#?}");
    }
    let (code, report, lines) = finish(console, dir.path());
    for key in ["size", "md5", "sha256"] {
        assert_eq!(
            report["campaign"]["package"][key], package[key],
            "{report:#}"
        );
    }
    for d in &devices {
        let entry = report_device(&report, d.name());
        assert_eq!(entry["status"], "succeeded", "{entry}");
        assert_eq!(entry["to_version"], "2.0.0", "{entry}");
        assert_eq!(entry["percent"], 100, "{entry}");
        assert_eq!(entry["attempts"], 1, "{entry}");
    }
    assert_eq!(code, 0, "{lines:#?}");
    assert_eq!(report["campaign"]["state"], "completed", "{report:#}");
}

#[test]
fn sdk_devices_upgrade_with_md5_notices() {
    upgrades_with("md5", "Md5", "md5", 2);
}

#[test]
fn sdk_device_upgrades_with_sha256_notices() {
    upgrades_with("sha256", "SHA256", "sha256", 1);
}

/// A firmware URL (`--url`) serving other bytes than the file the console hashed, as a stale
/// mirror does: served with an exact Content-Length, the same size, but another content.
fn serve_wrong_firmware(size: usize) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            // Read the request head; the content does not depend on it.
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).is_ok_and(|n| n == 1) {
                head.push(byte[0]);
            }
            let body = vec![0x5a_u8; size];
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\
                 Content-Length: {size}\r\nConnection: close\r\n\r\n"
            );
            let _ = stream.write_all(&body);
        }
    });
    addr
}

#[test]
fn sdk_digest_mismatch_fails_the_device_with_the_verification_step() {
    let python = sdk_python();
    let dir = tempfile::tempdir().unwrap();
    let broker = secure_broker(dir.path());
    let mut devices = boot_devices(&python, &broker, dir.path(), 1);
    let mirror = serve_wrong_firmware(64 * 1024);
    let url = format!("http://{mirror}/fw.bin");

    let mut console = start_rollout(
        &broker,
        dir.path(),
        &devices,
        &["--url", &url, "--retries", "0", "--no-abort"],
    );
    let package = announced_package(&mut console);

    let d = &mut devices[0];
    let notice = d.expect("notice");
    assert_eq!(notice["url"], url.as_str());
    assert_eq!(notice["sign"], package["md5"]);
    assert_eq!(d.expect("downloaded")["rc"], "OTA_DIGEST_MISMATCH");
    let failed = d.expect("failed");
    assert_eq!(failed["step"], -3, "{failed}");
    let (code, report, lines) = finish(console, dir.path());
    let entry = report_device(&report, d.name());
    assert_eq!(entry["status"], "failed", "{entry}");
    assert_eq!(entry["code"], -3, "{entry}");
    let error = entry["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("verification") && error.contains("OTA_DIGEST_MISMATCH"),
        "{entry}"
    );
    assert_eq!(code, 1, "{lines:#?}");
}

#[test]
fn sdk_download_failure_fails_the_device_with_the_download_step() {
    let python = sdk_python();
    let dir = tempfile::tempdir().unwrap();
    let broker = secure_broker(dir.path());
    let mut devices = boot_devices(&python, &broker, dir.path(), 1);
    // A port that was free a moment ago and has nobody listening: connection refused.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let url = format!("http://{closed}/fw.bin");

    let console = start_rollout(
        &broker,
        dir.path(),
        &devices,
        &["--url", &url, "--retries", "0", "--no-abort"],
    );

    let d = &mut devices[0];
    assert_eq!(d.expect("notice")["url"], url.as_str());
    assert_eq!(d.expect("downloaded")["rc"], "OTA_INVALID_URL");
    assert_eq!(d.expect("failed")["step"], -2);
    let (code, report, lines) = finish(console, dir.path());
    let entry = report_device(&report, d.name());
    assert_eq!(entry["status"], "failed", "{entry}");
    assert_eq!(entry["code"], -2, "{entry}");
    assert!(
        entry["error"]
            .as_str()
            .is_some_and(|e| e.contains("download failed") && e.contains("OTA_INVALID_URL")),
        "{entry}"
    );
    assert_eq!(code, 1, "{lines:#?}");
}

/// A device that boots after the rollout started (never heard, so the console assumed an Alibaba
/// device reachable and published its notice to nobody) connects, reports 1.0.0 and must then get
/// its notice within 30 s, with the default 30-minute device timeout. `report_first`: the device
/// reports before it subscribes, so a notice sent the instant it is heard is lost too.
///
/// Ignored until the lost-notice re-send of issue #11 lands: today the console treats the
/// never-heard target as already online (`engine::inventory::assumed_reachable`), so its first
/// version report is not a "came back online" (`Campaign::set_online`) and nothing is re-sent;
/// the device waits for the device timeout plus the retry interval (31 minutes by default).
fn late_boot(report_first: bool) {
    let python = sdk_python();
    let dir = tempfile::tempdir().unwrap();
    let broker = secure_broker(dir.path());
    let fw = firmware_file(dir.path(), 64 * 1024);
    let report = dir.path().join("report.json");
    let mut args = rollout_args(&format!("mqtt://{}", broker.local_addr()), dir.path(), &fw);
    set_flag(&mut args, "--device-timeout", "30m");
    log_in_as_console(&mut args, dir.path());
    args.extend(["--target", &format!("aliyun:{PK}/sdk-late"), "--report"].map(String::from));
    args.push(report.display().to_string());
    let mut console = Console::spawn(&args, dir.path());
    console.campaign_id();
    let secret = secret_of("sdk-late");
    let mut extra = vec!["--device-secret", secret.as_str()];
    if report_first {
        extra.push("--report-before-subscribe");
    }
    let mut device = start_device(
        &python,
        broker.local_addr(),
        "sdk-late",
        "1.0.0",
        dir.path(),
        &extra,
    );
    device.expect("reported");
    let heard = Instant::now();
    let upgraded = device.expect_within("upgraded", Duration::from_secs(30));
    assert_eq!(upgraded["version"], "2.0.0");
    eprintln!("upgraded {:?} after its first report", heard.elapsed());
    let (code, lines) = console.wait();
    assert_eq!(code, 0, "{lines:#?}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(report_device(&report, "sdk-late")["status"], "succeeded");
}

#[test]
fn sdk_device_booting_after_the_rollout_started_is_upgraded_within_30s() {
    late_boot(false);
}

#[test]
fn sdk_device_reporting_before_subscribing_after_the_start_is_upgraded_within_30s() {
    late_boot(true);
}

/// Waits (bounded) until the broker has refused a login of `username`; returns the reason.
fn wait_login_refused(
    events: &mut tokio::sync::broadcast::Receiver<BrokerEvent>,
    username: &str,
) -> String {
    let deadline = Instant::now() + DEVICE_WAIT;
    loop {
        match events.try_recv() {
            Ok(BrokerEvent::Refused(r))
                if r.attempt == Attempt::Connect && r.username.as_deref() == Some(username) =>
            {
                return r.reason;
            }
            Ok(_) | Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) => {}
            Err(_) => {
                assert!(
                    Instant::now() < deadline,
                    "no refused login of {username} within {DEVICE_WAIT:?}"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// The secure embedded broker checks the SDK's own signature against the imported secret table:
/// the device with its secret connects, subscribes to its upgrade topic and reports its version;
/// the same SDK signing with a wrong secret is refused and never subscribes.
#[test]
fn sdk_device_logs_in_to_the_secure_broker_with_its_secret_only() {
    let python = sdk_python();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(
        data.join(SECRETS_FILE),
        format!("ProductKey,DeviceName,DeviceSecret\n{PK},sdk-ok,bench-device-secret\n{PK},sdk-bad,bench-device-secret\n"),
    )
    .unwrap();
    let broker = EmbeddedBroker::start(BrokerSettings::secure(
        "127.0.0.1:0".parse().unwrap(),
        data,
        registry::topic_routes(),
    ))
    .unwrap();
    let mut events = broker.events();

    let mut ok = start_device(
        &python,
        broker.local_addr(),
        "sdk-ok",
        "1.0.0",
        dir.path(),
        &[],
    );
    assert_eq!(ok.expect("connected")["rc"], 0);
    assert_eq!(
        ok.expect("subscribed")["granted_qos"],
        serde_json::json!([1])
    );
    assert_eq!(ok.expect("reported")["version"], "1.0.0");

    let mut bad = start_device(
        &python,
        broker.local_addr(),
        "sdk-bad",
        "1.0.0",
        dir.path(),
        &["--device-secret", "not-the-secret"],
    );
    let reason = wait_login_refused(&mut events, &format!("sdk-bad&{PK}"));
    assert!(reason.contains("signature"), "{reason}");
    assert!(
        !bad.drain()
            .iter()
            .any(|e| e["event"] == "subscribed" || (e["event"] == "connected" && e["rc"] == 0)),
        "the wrong secret got in: {:#?}",
        bad.drain()
    );
    // The honest device was never refused anything.
    let refused_ok = std::iter::from_fn(|| events.try_recv().ok())
        .filter_map(|BrokerEvent::Refused(r)| r.username)
        .any(|u| u == format!("sdk-ok&{PK}"));
    assert!(!refused_ok);
}
