//! The real `ota-console rollout` running its own embedded broker ends when the last device has
//! finished; the answers to those last reports must still reach the devices. AWS IoT Jobs
//! things wait for `…/update/accepted` of their final SUCCEEDED (AWS's SDK samples do): a
//! console that exits with the answer still queued, or with its broker still delivering it,
//! leaves the thing unsure whether its success was recorded.

// Test code throughout: clippy's allow-unwrap-in-tests (clippy.toml) goes by `cfg(test)`.
#![cfg(test)]

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use ota_console::testing::console::console_binary;
use ota_console::testing::firmware_file;
use ota_console::testing::mosquitto::free_port;
use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};
use serde_json::{Value, json};
use tokio::sync::Barrier;

const THINGS: usize = 8;
/// Bounds every wait of a thing: connect, its job, the last answer.
const WAIT: Duration = Duration::from_secs(60);

/// One AWS thing that takes its job, reports IN_PROGRESS, waits at `barrier` until every thing
/// is there (so the final reports arrive together and the console ends right after answering
/// them), reports SUCCEEDED and returns whether that report was answered.
async fn thing(port: u16, name: String, barrier: Arc<Barrier>) -> Result<(), String> {
    let mut options = MqttOptions::new(name.clone(), "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(30));
    let (client, mut events) = AsyncClient::new(options, 64);
    let base = format!("$aws/things/{name}/jobs");
    for topic in [
        format!("{base}/notify-next"),
        format!("{base}/start-next/accepted"),
        format!("{base}/+/update/accepted"),
    ] {
        client
            .subscribe(topic, QoS::AtLeastOnce)
            .await
            .map_err(|e| e.to_string())?;
    }
    let start_next = |token: &str| {
        (
            format!("{base}/start-next"),
            json!({ "clientToken": token }),
        )
    };
    let (topic, body) = start_next("boot");
    client
        .publish(topic, QoS::AtLeastOnce, false, body.to_string())
        .await
        .map_err(|e| e.to_string())?;
    let mut job: Option<(String, i64)> = None;
    loop {
        let event = match events.poll().await {
            Ok(event) => event,
            // The console's broker may not listen yet: rumqttc reconnects on the next poll.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Event::Incoming(Incoming::Publish(publish)) = event else {
            continue;
        };
        let body: Value = serde_json::from_slice(&publish.payload).map_err(|e| e.to_string())?;
        let topic = publish.topic.as_str();
        if topic.ends_with("/notify-next") && body.get("execution").is_some() && job.is_none() {
            let (topic, body) = start_next("wake");
            client
                .publish(topic, QoS::AtLeastOnce, false, body.to_string())
                .await
                .map_err(|e| e.to_string())?;
        } else if topic.ends_with("/start-next/accepted") && job.is_none() {
            let Some(execution) = body.get("execution") else {
                continue;
            };
            let id = execution["jobId"].as_str().unwrap_or_default().to_owned();
            let version = execution["versionNumber"].as_i64().unwrap_or(1);
            let update = json!({
                "status": "IN_PROGRESS",
                "statusDetails": { "progress": "50" },
                "expectedVersion": version,
                "includeJobExecutionState": true,
                "clientToken": "working",
            });
            client
                .publish(
                    format!("{base}/{id}/update"),
                    QoS::AtLeastOnce,
                    false,
                    update.to_string(),
                )
                .await
                .map_err(|e| e.to_string())?;
            job = Some((id, version));
        } else if topic.ends_with("/update/accepted") {
            let Some((id, _)) = &job else { continue };
            match body["clientToken"].as_str() {
                Some("working") => {
                    let version = body["executionState"]["versionNumber"]
                        .as_i64()
                        .ok_or("no versionNumber in the answer")?;
                    barrier.wait().await;
                    let done = json!({
                        "status": "SUCCEEDED",
                        "statusDetails": { "version": "2.0.0", "progress": "100" },
                        "expectedVersion": version,
                        "includeJobExecutionState": true,
                        "clientToken": "done",
                    });
                    client
                        .publish(
                            format!("{base}/{id}/update"),
                            QoS::AtLeastOnce,
                            false,
                            done.to_string(),
                        )
                        .await
                        .map_err(|e| e.to_string())?;
                }
                Some("done") => return Ok(()),
                _ => {}
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_answers_to_the_last_reports_reach_the_devices_before_rollout_exits() {
    let dir = tempfile::tempdir().unwrap();
    let fw = firmware_file(dir.path(), 4096);
    let port = free_port();
    let http = free_port();
    let mut args: Vec<String> = [
        "rollout",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--open-broker",
        "--http-bind",
        &format!("127.0.0.1:{http}"),
        "--public-url",
        &format!("http://127.0.0.1:{http}"),
        "--data-dir",
        &dir.path().join("data").display().to_string(),
        "--firmware",
        &fw.display().to_string(),
        "--version",
        "2.0.0",
        "--rate",
        "6000/min",
        "--device-timeout",
        "60s",
        "--wave",
        "100%",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let names: Vec<String> = (0..THINGS).map(|i| format!("last-reply-{i}")).collect();
    for name in &names {
        args.push("--target".into());
        args.push(format!("aws:{name}"));
    }
    let mut rollout = tokio::process::Command::new(console_binary())
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let barrier = Arc::new(Barrier::new(THINGS));
    let things: Vec<_> = names
        .iter()
        .map(|name| tokio::spawn(thing(port, name.clone(), barrier.clone())))
        .collect();
    let status = tokio::time::timeout(WAIT, rollout.wait())
        .await
        .expect("rollout ends")
        .unwrap();
    let mut unanswered = Vec::new();
    for (name, thing) in names.iter().zip(things) {
        // The console has exited: an answer still on its way is there now or never.
        match tokio::time::timeout(Duration::from_secs(5), thing).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => unanswered.push(format!("{name}: {e}")),
            Ok(Err(e)) => unanswered.push(format!("{name}: {e}")),
            Err(_) => unanswered.push(format!("{name}: no answer to its SUCCEEDED")),
        }
    }
    let mut stderr = String::new();
    if let Some(mut pipe) = rollout.stderr.take() {
        use tokio::io::AsyncReadExt;
        let _ = pipe.read_to_string(&mut stderr).await;
    }
    assert!(status.success(), "rollout failed: {stderr}");
    assert!(unanswered.is_empty(), "{unanswered:?}\n{stderr}");
}
