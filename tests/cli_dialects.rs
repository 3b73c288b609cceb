//! Dialect files through the real binary: `--dialect-file` and the data dir's `dialects/`
//! folder are registered before the command line is built (the rollout's flags and id forms
//! come from the registry), a broken file is reported with file:line:field, and a dialect no
//! built-in resembles (tests/dialects/widget.toml) upgrades the devices `ota-console sim`
//! simulates from the same file end to end through `ota-console rollout`, and reports their
//! failures in the file's words.

// Test code throughout: clippy's allow-unwrap-in-tests (clippy.toml) goes by `cfg(test)`.
#![cfg(test)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Instant;

use ota_console::testing::console::{Console, WAIT_FOR_CONSOLE, console_binary, rollout_args};
use ota_console::testing::firmware_file;
use ota_console::testing::widget::widget_file;
use ota_console::transport::broker::{BrokerSettings, EmbeddedBroker};
use serde_json::Value;

fn run(args: &[&str], data_dir: &Path) -> Output {
    Command::new(console_binary())
        .args(args)
        .env("OTA_CONSOLE_DATA_DIR", data_dir)
        .env("RUST_LOG", "warn")
        .output()
        .expect("the console runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn a_dialect_file_given_on_the_command_line_shapes_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = widget_file();
    let file = file.to_str().unwrap();
    // Without the file the id form is unknown; with it, `--target` lists it.
    let out = run(&["--dialect-file", file, "rollout", "--help"], dir.path());
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("widget:serial"),
        "{}",
        text(&out.stdout)
    );
    let out = run(&["rollout", "--help"], dir.path());
    assert!(!text(&out.stdout).contains("widget:serial"));
    // `=` spelling, after the subcommand (the flag is global).
    let out = run(
        &["rollout", &format!("--dialect-file={file}"), "--help"],
        dir.path(),
    );
    assert!(
        text(&out.stdout).contains("widget:serial"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn a_broken_dialect_file_stops_a_command_naming_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.toml");
    let src = std::fs::read_to_string(widget_file())
        .unwrap()
        .replace("\"length\": {{size}}", "\"length\": {{size}");
    std::fs::write(&broken, &src).unwrap();
    let line = src[..src.find("payload = '''").unwrap()]
        .matches('\n')
        .count()
        + 1;
    let fw = firmware_file(dir.path(), 1000);
    let out = run(
        &[
            "--dialect-file",
            broken.to_str().unwrap(),
            "hash",
            fw.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    let want = format!("{}:{line}: notice.payload: ", broken.display());
    assert!(stderr.contains(&want), "want {want:?} in {stderr}");
}

#[test]
fn the_dialects_folder_loads_its_files_and_skips_a_broken_one() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("dialects");
    std::fs::create_dir(&folder).unwrap();
    std::fs::copy(widget_file(), folder.join("widget.toml")).unwrap();
    std::fs::write(
        folder.join("a-broken.toml"),
        "[dialect]\nprefix = \"Bad Prefix\"\n",
    )
    .unwrap();
    let out = run(&["rollout", "--help"], dir.path());
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("widget:serial"));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("dialect file skipped") && stderr.contains("a-broken.toml:"),
        "{stderr}"
    );
}

/// `ota-console sim` as a child process, its JSON lines read on a thread; killed when dropped.
struct Sim {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Sim {
    fn spawn(args: &[String], data_dir: &Path) -> Sim {
        let mut child = Command::new(console_binary())
            .args(args)
            .env("OTA_CONSOLE_DATA_DIR", data_dir)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the simulator starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Sim {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits (bounded) for a JSON line for which `done` holds, and returns it.
    fn wait_for(&mut self, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT_FOR_CONSOLE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if let Ok(v) = serde_json::from_str::<Value>(&line)
                        && done(&v)
                    {
                        return v;
                    }
                }
                Err(e) => panic!(
                    "the simulator never showed {what} ({e}); it is {:?}; it printed {:#?}",
                    self.child.try_wait(),
                    self.seen
                ),
            }
        }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Two widget devices simulated by `ota-console sim --dialect-file widget.toml --widget 2`
/// (with `faults`, e.g. `--fail-verify 1`), upgraded by `ota-console rollout`, both real
/// processes on an embedded broker; the exit code, the report and the rollout's lines, and the
/// simulator's last totals.
async fn rollout_of_widgets(faults: &[&str]) -> (i32, Value, Vec<String>, Value) {
    let dir = tempfile::tempdir().unwrap();
    let broker =
        EmbeddedBroker::start(BrokerSettings::open("127.0.0.1:0".parse().unwrap())).unwrap();
    let broker_url = format!("mqtt://{}", broker.local_addr());
    let widget = widget_file().display().to_string();
    let mut sim_args: Vec<String> = [
        "--dialect-file",
        &widget,
        "sim",
        "--broker",
        &broker_url,
        "--widget",
        "2",
        "--install-secs",
        "0.2",
        "--summary-secs",
        "0.2",
        "--json",
    ]
    .map(String::from)
    .to_vec();
    sim_args.extend(faults.iter().map(|f| f.to_string()));
    let fw = firmware_file(dir.path(), 30_000);
    let report = dir.path().join("report.json");
    let mut args = vec!["--dialect-file".to_owned(), widget];
    args.extend(rollout_args(&broker_url, dir.path(), &fw));
    args.extend(
        [
            "--all",
            "--dialect",
            "widget",
            "--discover-for",
            "3s",
            "--wave",
            "100%",
            "--report",
        ]
        .map(String::from),
    );
    args.push(report.display().to_string());
    if !faults.is_empty() {
        // Every attempt fails the same way: one is enough.
        args.extend(["--retries", "0"].map(String::from));
    }
    let mut console = Console::spawn(&args, dir.path());
    // Devices announce when they connect: the console listens first.
    console.expect_line("listening for devices");
    let mut sim = Sim::spawn(&sim_args, dir.path());
    sim.wait_for("both devices connected", |v| {
        v["totals"]["devices"] == 2 && v["totals"]["connected"] == 2
    });

    let (code, lines) = tokio::task::spawn_blocking(move || console.wait())
        .await
        .unwrap();
    // What the devices themselves counted once the rollout is over.
    let ended = if faults.is_empty() {
        "upgrades_succeeded"
    } else {
        "upgrades_failed"
    };
    let totals = sim.wait_for("both devices done", |v| v["totals"][ended] == 2)["totals"].clone();
    let report = std::fs::read_to_string(&report)
        .map(|t| serde_json::from_str(&t).unwrap())
        .unwrap_or(Value::Null);
    (code, report, lines, totals)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_devices_of_a_dialect_file_upgrade_and_fail_through_the_cli() {
    let (code, report, lines, totals) = rollout_of_widgets(&[]).await;
    assert_eq!(code, 0, "{lines:#?}");
    let devices = report["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 2, "{devices:#?}");
    for d in devices {
        assert!(
            d["id"]
                .as_str()
                .unwrap()
                .starts_with("widget:sim-widget-000"),
            "{d}"
        );
        assert_eq!(d["status"], "succeeded", "{d}");
        assert_eq!(d["to_version"], "2.0.0", "{d}");
    }
    assert_eq!(totals["broken_notices"], 0, "{totals}");

    // A corrupted image: the devices' own checksum check refuses it and they report the value
    // the file marks `sim = "verify"`, with their reason as the failure text.
    let (code, report, lines, _) = rollout_of_widgets(&["--fail-verify", "1"]).await;
    assert_eq!(code, 1, "{lines:#?}");
    let devices = report["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 2, "{devices:#?}");
    for d in devices {
        assert_eq!(d["status"], "failed", "{d}");
        assert_eq!(d["code"], 12, "{d}");
        let error = d["error"].as_str().unwrap_or_default();
        assert!(error.contains("image checksum wrong"), "{d}");
        assert!(
            error.contains("checksum of the file is "),
            "the device's reason: {d}"
        );
    }

    // A download that breaks off: the value marked `sim = "download"`.
    let (code, report, lines, _) = rollout_of_widgets(&["--fail-download", "1"]).await;
    assert_eq!(code, 1, "{lines:#?}");
    for d in report["devices"].as_array().unwrap() {
        assert_eq!(d["status"], "failed", "{d}");
        assert_eq!(d["code"], 14, "{d}");
        let error = d["error"].as_str().unwrap_or_default();
        assert!(error.contains("artifact transfer broke off"), "{d}");
        assert!(
            error.contains("broke off after 15000 bytes"),
            "the device's reason: {d}"
        );
    }
}
