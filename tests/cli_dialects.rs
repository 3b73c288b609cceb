//! Dialect files through the real binary: `--dialect-file` and the data dir's `dialects/`
//! folder are registered before the command line is built (the rollout's flags and id forms
//! come from the registry), a broken file is reported with file:line:field, and a dialect no
//! built-in resembles (tests/dialects/widget.toml) upgrades devices end to end through
//! `ota-console rollout`.
//!
//! The widget devices here are written for this test from the file's layout alone (today's
//! simulator has no devices for dialect files: they come with the simulator seam).

// Test code throughout: clippy's allow-unwrap-in-tests (clippy.toml) goes by `cfg(test)`.
#![cfg(test)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use ota_console::testing::console::{Console, console_binary, rollout_args};
use ota_console::testing::firmware_file;
use ota_console::transport::broker::{BrokerSettings, EmbeddedBroker};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{Value, json};

fn widget_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dialects/widget.toml")
}

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

/// A widget bench unit, from tests/dialects/widget.toml: says hello with its version, takes a
/// `flash` from its inbox, downloads the artifact, reports progress with the job id, then says
/// hello with the new version — or, with `fail`, reports `E_CRC`.
async fn widget(broker: std::net::SocketAddr, serial: &'static str, fail: bool) {
    let mut options = MqttOptions::new(
        format!("widget-{serial}"),
        broker.ip().to_string(),
        broker.port(),
    );
    options.set_keep_alive(Duration::from_secs(5));
    let (client, mut events) = AsyncClient::new(options, 32);
    let up = format!("bench/widgets/{serial}/events");
    client
        .subscribe(format!("bench/widgets/{serial}/inbox"), QoS::AtLeastOnce)
        .await
        .unwrap();
    let say = |v: Value| {
        let (client, up) = (client.clone(), up.clone());
        async move {
            client
                .publish(up, QoS::AtLeastOnce, false, v.to_string())
                .await
                .unwrap();
        }
    };
    say(json!({"type": "hello", "build": {"semver": "1.0.0"}})).await;
    loop {
        let publish = match events.poll().await {
            Ok(Event::Incoming(Packet::Publish(p))) => p,
            Ok(_) => continue,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let v: Value = serde_json::from_slice(&publish.payload).unwrap();
        if v["type"] != "flash" {
            continue;
        }
        let job = v["job"].as_str().unwrap().to_owned();
        let artifact = &v["artifact"];
        let image = reqwest::get(artifact["href"].as_str().unwrap())
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(Some(image.len() as u64), artifact["length"].as_u64());
        say(json!({"type": "flash-state", "flash": {"job": job, "done": 50}})).await;
        if fail {
            say(json!({"type": "flash-state",
                "flash": {"job": job, "result": "E_CRC", "why": "crc mismatch at 0x400"}}))
            .await;
        } else {
            say(json!({"type": "flash-state", "flash": {"job": job, "done": 100}})).await;
            say(json!({"type": "hello", "build": {"semver": artifact["semver"]}})).await;
        }
    }
}

async fn rollout_of_widgets(fail: bool) -> (i32, Value, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let broker =
        EmbeddedBroker::start(BrokerSettings::open("127.0.0.1:0".parse().unwrap())).unwrap();
    let fw = firmware_file(dir.path(), 30_000);
    let report = dir.path().join("report.json");
    let mut args = vec![
        "--dialect-file".to_owned(),
        widget_file().display().to_string(),
    ];
    args.extend(rollout_args(
        &format!("mqtt://{}", broker.local_addr()),
        dir.path(),
        &fw,
    ));
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
    if fail {
        // Every attempt fails the same way: one is enough.
        args.extend(["--retries", "0"].map(String::from));
    }
    let mut console = Console::spawn(&args, dir.path());
    console.expect_line("listening for devices");
    let addr = broker.local_addr();
    let devices = [
        tokio::spawn(widget(addr, "W-0001", fail)),
        tokio::spawn(widget(addr, "W-0002", fail)),
    ];
    let (code, lines) = tokio::task::spawn_blocking(move || console.wait())
        .await
        .unwrap();
    for d in devices {
        d.abort();
    }
    let report = std::fs::read_to_string(&report)
        .map(|t| serde_json::from_str(&t).unwrap())
        .unwrap_or(Value::Null);
    (code, report, lines)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_of_a_dialect_file_upgrade_and_fail_through_the_cli() {
    let (code, report, lines) = rollout_of_widgets(false).await;
    assert_eq!(code, 0, "{lines:#?}");
    let devices = report["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 2, "{devices:#?}");
    for d in devices {
        assert!(d["id"].as_str().unwrap().starts_with("widget:W-000"), "{d}");
        assert_eq!(d["status"], "succeeded", "{d}");
        assert_eq!(d["to_version"], "2.0.0", "{d}");
    }

    let (code, report, lines) = rollout_of_widgets(true).await;
    assert_eq!(code, 1, "{lines:#?}");
    for d in report["devices"].as_array().unwrap() {
        assert_eq!(d["status"], "failed", "{d}");
        assert_eq!(d["code"], 12, "{d}");
        let error = d["error"].as_str().unwrap_or_default();
        assert!(error.contains("image checksum wrong"), "{d}");
    }
}
