//! A device for `tests/dialects/widget.toml`, the tests' dialect file: written from the file's
//! layout alone, with the MQTT client directly (today's simulator has no devices for dialect
//! files; they come with the simulator seam). Used by tests/cli_dialects.rs and tests/ui.rs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{Value, json};

/// The tests' dialect file.
pub fn widget_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dialects/widget.toml")
}

/// Registers the tests' dialect file once per test binary.
pub fn register_widget() {
    static ONCE: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    ONCE.get_or_init(|| {
        crate::protocol::user::register_file(&widget_file())
            .unwrap_or_else(|e| panic!("the tests' dialect file loads: {e}"));
    });
}

/// One widget bench unit on the broker at `broker`: says hello with version 1.0.0, takes a
/// `flash` from its inbox, downloads the artifact (checking its length), reports progress with
/// the job id, then says hello with the new version — or, with `fail`, reports `E_CRC`. Runs
/// until its task is aborted.
pub async fn widget_device(broker: SocketAddr, serial: &'static str, fail: bool) {
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
        .expect("the widget subscribes");
    let say = |v: Value| {
        let (client, up) = (client.clone(), up.clone());
        async move {
            client
                .publish(up, QoS::AtLeastOnce, false, v.to_string())
                .await
                .expect("the widget publishes");
        }
    };
    say(json!({"type": "hello", "build": {"semver": "1.0.0"}})).await;
    loop {
        let publish = match events.poll().await {
            Ok(Event::Incoming(Packet::Publish(p))) => p,
            Ok(_) => continue,
            Err(_) => {
                // rumqttc reconnects on the next poll; wait a little so a dead broker is not
                // polled in a tight loop.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(v) = serde_json::from_slice::<Value>(&publish.payload) else {
            continue;
        };
        if v["type"] != "flash" {
            continue;
        }
        let job = v["job"].as_str().unwrap_or_default().to_owned();
        let artifact = &v["artifact"];
        let href = artifact["href"].as_str().unwrap_or_default();
        let image = match reqwest::get(href).await {
            Ok(response) => response.bytes().await.unwrap_or_default(),
            Err(e) => panic!("the widget downloads {href}: {e}"),
        };
        assert_eq!(
            Some(image.len() as u64),
            artifact["length"].as_u64(),
            "{href}"
        );
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
