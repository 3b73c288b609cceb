//! Firmware download throughput: 100 concurrent downloads of a 16 MiB file from our
//! `FirmwareServer` versus nginx (sendfile) on the same machine in the same run.
//!
//! Run: `cargo bench --no-default-features --bench http`. Needs nginx (`apt-get install -y
//! nginx`); the bench starts it with its own temp config on a free 127.0.0.1 port (`daemon off`)
//! and kills it at the end. Prints aggregate MiB/s for both and the ratio ours/nginx.

#![expect(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "a benchmark's set-up that fails has nothing to measure: it stops with a message"
)]

use std::time::{Duration, Instant};

use ota_console::transport::http::FirmwareServer;

#[path = "support/nginx.rs"]
mod nginx;
use nginx::Nginx;

const FILE_BYTES: usize = 16 * 1024 * 1024;
const CLIENTS: usize = 100;
const ROUNDS: usize = 3;
const KEY: &str = "bench-package";

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let www = dir.path().join("www");
    std::fs::create_dir(&www).expect("www dir");
    let file = www.join("fw.bin");
    let content: Vec<u8> = (0..FILE_BYTES).map(|i| (i % 251) as u8).collect();
    std::fs::write(&file, &content).expect("write test file");

    let mut nginx = Nginx::start(dir.path(), &www, 4096);
    println!("nginx (pid {}) on port {}", nginx.pid(), nginx.port);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let server = FirmwareServer::start("127.0.0.1:0".parse().unwrap(), None)
            .await
            .expect("firmware server");
        let ours_url = server.offer(file.clone(), "fw.bin", KEY);
        let nginx_url = format!("http://127.0.0.1:{}/fw.bin", nginx.port);
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(CLIENTS)
            .timeout(Duration::from_secs(120))
            .build()
            .expect("http client");

        // Warm the page cache and both servers once.
        download_all(&client, &ours_url, 4).await;
        download_all(&client, &nginx_url, 4).await;

        let mut ours = Vec::new();
        let mut theirs = Vec::new();
        for round in 0..ROUNDS {
            // Alternate the order so neither side always runs on a warmer machine.
            let (a, b) = if round % 2 == 0 {
                let a = measure(&client, &ours_url).await;
                (a, measure(&client, &nginx_url).await)
            } else {
                let b = measure(&client, &nginx_url).await;
                (measure(&client, &ours_url).await, b)
            };
            println!("round {round}: ours {a:8.1} MiB/s   nginx {b:8.1} MiB/s");
            ours.push(a);
            theirs.push(b);
        }
        let stats = server.stats();
        let expected = ((ROUNDS * CLIENTS + 4) * FILE_BYTES) as u64;
        assert_eq!(
            stats.bytes_by_package.get(KEY).copied(),
            Some(expected),
            "byte counter must match what clients downloaded"
        );
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let (a, b) = (median(&mut ours), median(&mut theirs));
        println!(
            "{CLIENTS} concurrent downloads of {} MiB, median of {ROUNDS} rounds:",
            FILE_BYTES >> 20
        );
        println!("  ota-console FirmwareServer: {a:8.1} MiB/s");
        println!("  nginx (sendfile):           {b:8.1} MiB/s");
        println!("  ratio ours/nginx:           {:8.2}", a / b);
    });
    nginx.stop();
}

/// Aggregate MiB/s of `CLIENTS` simultaneous full downloads.
async fn measure(client: &reqwest::Client, url: &str) -> f64 {
    let started = Instant::now();
    let bytes = download_all(client, url, CLIENTS).await;
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(bytes, (CLIENTS * FILE_BYTES) as u64);
    bytes as f64 / (1024.0 * 1024.0) / secs
}

async fn download_all(client: &reqwest::Client, url: &str, clients: usize) -> u64 {
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let client = client.clone();
            let url = url.to_owned();
            tokio::spawn(async move {
                let mut response = client.get(&url).send().await.expect("request");
                assert!(response.status().is_success(), "{}", response.status());
                let mut got = 0u64;
                while let Some(chunk) = response.chunk().await.expect("body") {
                    got += chunk.len() as u64;
                }
                assert_eq!(got, FILE_BYTES as u64);
                got
            })
        })
        .collect();
    let mut total = 0;
    for task in tasks {
        total += task.await.expect("download task");
    }
    total
}
