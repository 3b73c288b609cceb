//! On-demand measurement of what a simulated device costs: a fleet of FogCloud devices and
//! gateways against a real Mosquitto (a separate process, so this process's memory is the
//! simulator's alone), waiting until a raw observer on the broker has seen every device report
//! its version, then printing resident memory per device and the time it took.
//!
//! Run (release; sizes from the environment, small by default):
//! `SIM_SCALE_DEVICES=100000 cargo test --release --no-default-features --test sim_scale -- --ignored --nocapture`
//! - `SIM_SCALE_DEVICES` (2,000): devices in all, sub-devices included.
//! - `SIM_SCALE_PER_CONNECTION` (50): units (a device, a gateway with its subs) per connection;
//!   1 is one connection each, as before `per_connection` existed.
//! - `SIM_SCALE_SUBS` (99): sub-devices per gateway.
//! - `SIM_SCALE_PLAIN_PERCENT` (10): share of the devices that are plain FogCloud devices; the
//!   rest are gateways and their sub-devices.

// Test code throughout: clippy's allow-unwrap-in-tests (clippy.toml) goes by `cfg(test)`.
#![cfg(test)]

use std::collections::HashSet;
use std::time::{Duration, Instant};

use ota_console::sim::{SimConfig, SimFleet};
use ota_console::testing::mosquitto::{Mosquitto, free_port};
use ota_console::testing::sim_units;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::Value;
use tokio::sync::watch;

const PK: &str = "a1Scale";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}={v} is not a number"))
        })
        .unwrap_or(default)
}

/// Resident memory of this process in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// User + system CPU seconds of this process (USER_HZ is 100 in /proc).
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0
}

/// Counts the distinct devices whose version report (`version.post` on the device's own topic,
/// or an entry of a gateway's `sub.version.post`) reached the broker.
async fn observe_reports(port: u16) -> watch::Receiver<usize> {
    let mut opts = MqttOptions::new("scale-observer", "127.0.0.1", port);
    opts.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut ev) = AsyncClient::new(opts, 64);
    client
        .subscribe("fogcloud/+/+/thing/up/ota", QoS::AtMostOnce)
        .await
        .unwrap();
    let (tx, rx) = watch::channel(0);
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let _client = client;
        let mut ready = Some(ready_tx);
        let mut seen: HashSet<String> = HashSet::new();
        loop {
            match ev.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    if let Some(r) = ready.take() {
                        let _ = r.send(());
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let v: Value = serde_json::from_slice(&p.payload).unwrap_or(Value::Null);
                    match v["method"].as_str() {
                        Some("version.post") => {
                            if let Some(dn) = p.topic.split('/').nth(2) {
                                seen.insert(dn.to_owned());
                            }
                        }
                        Some("sub.version.post") => {
                            for e in v["params"].as_array().into_iter().flatten() {
                                if let Some(dn) = e["identity"]["device_name"].as_str() {
                                    seen.insert(dn.to_owned());
                                }
                            }
                        }
                        _ => {}
                    }
                    tx.send_replace(seen.len());
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(15), ready_rx)
        .await
        .unwrap()
        .unwrap();
    rx
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "scale measurement; run on demand (see the module doc)"]
async fn memory_per_simulated_device() {
    let devices = env_usize("SIM_SCALE_DEVICES", 2_000);
    let per = env_usize("SIM_SCALE_PER_CONNECTION", 50);
    let subs = env_usize("SIM_SCALE_SUBS", 99);
    let plain_percent = env_usize("SIM_SCALE_PLAIN_PERCENT", 10).min(100);
    let gateways = (devices - devices * plain_percent / 100) / (subs + 1);
    let plain = devices - gateways * (subs + 1);
    let connections = plain.div_ceil(per) + gateways.div_ceil(per);

    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(
        dir.path(),
        free_port(),
        "allow_anonymous true\nmax_connections -1",
    );
    let mut reported = observe_reports(broker.port).await;
    let rss_before = rss_kib();
    let cpu_before = cpu_secs();
    let t0 = Instant::now();
    let fleet = SimFleet::start(SimConfig {
        broker_url: format!("mqtt://127.0.0.1:{}", broker.port),
        units: sim_units(&[
            ("fogcloud", plain),
            ("fogcloud-gateways", gateways),
            ("subs", subs.max(1)),
        ]),
        product_key: PK.to_owned(),
        name_prefix: "scale".to_owned(),
        per_connection: per,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let started = t0.elapsed();
    let limit = Duration::from_secs(env_usize("SIM_SCALE_TIMEOUT_SECS", 600) as u64);
    let all = tokio::time::timeout(limit, reported.wait_for(|n| *n >= devices))
        .await
        .is_ok();
    let heard = *reported.borrow();
    assert!(
        all,
        "only {heard} of {devices} devices reported within {limit:?}"
    );
    let up = t0.elapsed();
    let cpu_up = cpu_secs() - cpu_before;
    let rss_up = rss_kib();
    let cpu_idle0 = cpu_secs();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let idle = (cpu_secs() - cpu_idle0) / 5.0;
    let rss_idle = rss_kib();
    let stats = fleet.stats();
    let t = stats.totals();
    let reconnects: u64 = stats
        .devices
        .iter()
        .map(|d| d.connects.saturating_sub(1))
        .sum();
    let grown = rss_idle.saturating_sub(rss_before);
    println!(
        "sim scale: {devices} devices ({plain} plain FogCloud, {gateways} gateways x {subs} subs) \
         on {connections} connections ({per} units each); built in {started:.2?}, all reported \
         after {up:.2?} (cpu {cpu_up:.1} s); RSS {} MiB before, {} MiB all reported, {} MiB \
         after 5 s idle: {:.2} KiB per device; idle cpu {:.1} % of a core; published {} acked {} \
         dropped {} reconnects {reconnects}",
        rss_before / 1024,
        rss_up / 1024,
        rss_idle / 1024,
        grown as f64 / devices as f64,
        idle * 100.0,
        t.messages_published,
        t.messages_acked,
        t.messages_dropped,
    );
    assert_eq!(stats.devices.len(), devices);
    assert_eq!(t.messages_dropped, 0);
    fleet.shutdown().await;
    drop(broker);
}
