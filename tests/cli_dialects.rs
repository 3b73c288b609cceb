//! Dialect files through the real binary: `--dialect-file` and the data dir's `dialects/`
//! folder are registered before the command line is built (the rollout's flags and id forms
//! come from the registry), a broken file is reported with file:line:field, and a dialect no
//! built-in resembles (tests/dialects/widget.toml) upgrades devices end to end through
//! `ota-console rollout`.
//!
//! The widget devices are `testing::widget`'s, written from the file's layout alone (today's
//! simulator has no devices for dialect files: they come with the simulator seam).

// Test code throughout: clippy's allow-unwrap-in-tests (clippy.toml) goes by `cfg(test)`.
#![cfg(test)]

use std::path::Path;
use std::process::{Command, Output};

use ota_console::testing::console::{Console, console_binary, rollout_args};
use ota_console::testing::firmware_file;
use ota_console::testing::widget::{widget_device, widget_file};
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
        tokio::spawn(widget_device(addr, "W-0001", fail)),
        tokio::spawn(widget_device(addr, "W-0002", fail)),
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
