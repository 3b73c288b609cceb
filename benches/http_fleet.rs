//! Firmware server memory at fleet scale: 10,000 concurrent downloads on loopback whose clients
//! read slowly (each reads the first 64 KiB, checks it, then stops reading and keeps the
//! connection), against nginx (sendfile) doing the same in the same run.
//!
//! Our server runs in a child process (this bench binary re-started with `OTA_HTTP_FLEET_SERVE`)
//! so that its resident memory is measured alone, without the 10,000 clients. Two files: one
//! the server keeps in memory (16 MiB: one shared copy) and one streamed from disk (96 MiB,
//! above the 64 MiB in-memory limit: per-connection read buffers). Prints the server's RSS idle
//! and with all clients held, per connection, and the kernel's TCP buffer memory.
//!
//! Run: `cargo bench --no-default-features --bench http_fleet` (release). Clients:
//! `OTA_BENCH_HTTP_CLIENTS` (default 10,000). Needs nginx and an open-file limit of about twice
//! the clients (the clients live in this process).

#![expect(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "a benchmark's set-up that fails has nothing to measure: it stops with a message"
)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ota_console::transport::http::FirmwareServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

#[path = "support/nginx.rs"]
mod nginx;
use nginx::Nginx;

const SERVE_ENV: &str = "OTA_HTTP_FLEET_SERVE";
const CACHED_BYTES: usize = 16 * 1024 * 1024;
const DISK_BYTES: usize = 96 * 1024 * 1024;
/// What each client reads (and checks) before it stops reading.
const PREFIX: usize = 64 * 1024;
/// Each client's receive buffer: small, so the bytes it does not read stay on the server side.
const CLIENT_RCVBUF: u32 = 16 * 1024;
/// Connections being opened at once (the accept queue is 1,024 deep).
const CONNECTING: usize = 256;
/// Time for the server to fill what it can into the stalled connections before measuring.
const SETTLE: Duration = Duration::from_secs(3);

fn main() {
    if let Ok(path) = std::env::var(SERVE_ENV) {
        serve(Path::new(&path));
        return;
    }
    let clients: usize = std::env::var("OTA_BENCH_HTTP_CLIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let www = dir.path().join("www");
    std::fs::create_dir(&www).expect("www dir");
    for (name, len) in [("cached.bin", CACHED_BYTES), ("disk.bin", DISK_BYTES)] {
        let content: Vec<u8> = (0..len).map(byte_at).collect();
        std::fs::write(www.join(name), content).expect("write test file");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");

    let mut rows = Vec::new();
    for name in ["cached.bin", "disk.bin"] {
        let mut child = OurServer::start(&www.join(name));
        let pid = child.child.id();
        let len = std::fs::metadata(www.join(name)).unwrap().len() as usize;
        rows.push(runtime.block_on(measure(
            &format!("ota-console {name} (cap {})", child.cap),
            child.addr,
            &child.path,
            len,
            clients,
            || rss_of(&[pid]),
        )));
        child.stop();
    }
    let mut nginx = Nginx::start(dir.path(), &www, clients + 1024);
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, nginx.port));
    for name in ["cached.bin", "disk.bin"] {
        let len = std::fs::metadata(www.join(name)).unwrap().len() as usize;
        let master = nginx.pid();
        rows.push(runtime.block_on(measure(
            &format!("nginx {name}"),
            addr,
            &format!("/{name}"),
            len,
            clients,
            || rss_of(&with_children(master)),
        )));
    }
    nginx.stop();

    println!();
    println!(
        "{clients} concurrent slow downloads (each reads {} KiB, then stalls), server RSS:",
        PREFIX / 1024
    );
    println!(
        "  {:<42} {:>9} {:>9} {:>10} {:>12}",
        "server / file", "idle MiB", "held MiB", "KiB/conn", "kernel TCP MiB"
    );
    for row in &rows {
        println!(
            "  {:<42} {:>9.1} {:>9.1} {:>10.1} {:>12.1}",
            row.label,
            mib(row.idle),
            mib(row.held),
            (row.held.saturating_sub(row.idle)) as f64 / 1024.0 / clients as f64,
            mib(row.kernel),
        );
    }
    let ours = rows.iter().take(2).map(|r| r.held).max().unwrap_or(0);
    let theirs = rows.iter().skip(2).map(|r| r.held).max().unwrap_or(1);
    println!(
        "  ratio of peak held RSS ours/nginx: {:.2}",
        ours as f64 / theirs as f64
    );
}

fn byte_at(i: usize) -> u8 {
    (i % 251) as u8
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

struct Row {
    label: String,
    idle: u64,
    held: u64,
    kernel: u64,
}

/// Warms the server with one full download, then holds `clients` stalled downloads and reads
/// the resident memory `rss` reports.
async fn measure(
    label: &str,
    addr: SocketAddr,
    path: &str,
    len: usize,
    clients: usize,
    rss: impl Fn() -> u64,
) -> Row {
    let warm = open(addr, path, 0).await;
    read_checked(warm, len).await;
    let idle = rss();
    let kernel_before = kernel_tcp_bytes();
    let started = Instant::now();
    let gate = Arc::new(tokio::sync::Semaphore::new(CONNECTING));
    let tasks: Vec<_> = (0..clients)
        .map(|i| {
            let gate = gate.clone();
            let path = path.to_owned();
            tokio::spawn(async move {
                let permit = gate.acquire_owned().await.expect("gate");
                let stream = open(addr, &path, i).await;
                drop(permit);
                read_checked(stream, PREFIX.min(len)).await
            })
        })
        .collect();
    let mut held = Vec::with_capacity(clients);
    for task in tasks {
        held.push(task.await.expect("client"));
    }
    let connected = started.elapsed();
    tokio::time::sleep(SETTLE).await;
    let row = Row {
        label: label.to_owned(),
        idle,
        held: rss(),
        kernel: kernel_tcp_bytes().saturating_sub(kernel_before),
    };
    println!(
        "{label}: {clients} clients connected and read their first {} KiB in {:.1} s; RSS {:.1} -> {:.1} MiB",
        PREFIX / 1024,
        connected.as_secs_f64(),
        mib(row.idle),
        mib(row.held)
    );
    drop(held);
    row
}

/// A keep-alive `GET` from its own loopback source address (so 10,000 connections do not run
/// out of ports), with a small receive buffer.
async fn open(addr: SocketAddr, path: &str, i: usize) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    let source = Ipv4Addr::new(127, 0, 1 + (i / 250 % 200) as u8, 1 + (i % 250) as u8);
    socket
        .bind(SocketAddr::new(IpAddr::V4(source), 0))
        .expect("bind client");
    socket.set_recv_buffer_size(CLIENT_RCVBUF).expect("rcvbuf");
    let mut stream = tokio::time::timeout(Duration::from_secs(60), socket.connect(addr))
        .await
        .expect("connect in time")
        .expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("request");
    stream
}

/// Reads the head and the first `want` body bytes, checks them, returns the stream (unread).
async fn read_checked(mut stream: TcpStream, want: usize) -> TcpStream {
    let mut raw = Vec::with_capacity(want + 1024);
    let mut buf = vec![0u8; 16 * 1024];
    let body_start = loop {
        let n = stream.read(&mut buf).await.expect("read head");
        assert!(n > 0, "closed within the head");
        raw.extend_from_slice(&buf[..n]);
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            assert!(raw.starts_with(b"HTTP/1.1 200"), "not a 200");
            break end + 4;
        }
    };
    while raw.len() < body_start + want {
        let n = stream.read(&mut buf).await.expect("read body");
        assert!(n > 0, "closed within the body");
        raw.extend_from_slice(&buf[..n]);
    }
    let body = &raw[body_start..body_start + want];
    assert!(
        body.iter().enumerate().all(|(i, b)| *b == byte_at(i)),
        "body bytes differ"
    );
    stream
}

/// Resident memory of the processes together (VmRSS).
fn rss_of(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .filter_map(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map(|kib| kib * 1024)
        .sum()
}

/// `pid` and its direct children (nginx's workers).
fn with_children(pid: u32) -> Vec<u32> {
    let mut pids = vec![pid];
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        // `pid (comm) state ppid …`: the name may hold spaces, so read after its `)`.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(pid) {
            pids.push(child);
        }
    }
    pids
}

/// The kernel's memory in TCP socket buffers, all sockets of the machine (`/proc/net/sockstat`).
fn kernel_tcp_bytes() -> u64 {
    let sockstat = std::fs::read_to_string("/proc/net/sockstat").unwrap_or_default();
    sockstat
        .lines()
        .find(|l| l.starts_with("TCP:"))
        .and_then(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            let at = fields.iter().position(|f| *f == "mem")?;
            fields.get(at + 1)?.parse::<u64>().ok()
        })
        .map_or(0, |pages| pages * 4096)
}

/// Our server in a child process, serving one file.
struct OurServer {
    child: Child,
    addr: SocketAddr,
    path: String,
    cap: usize,
}

impl OurServer {
    fn start(file: &Path) -> OurServer {
        let mut child = Command::new(std::env::current_exe().expect("bench binary"))
            .env(SERVE_ENV, file)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("server process starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("server announces itself");
        let mut words = line.split_whitespace();
        let url = words.next().expect("URL");
        let cap = words.next().and_then(|c| c.parse().ok()).expect("cap");
        let rest = url.strip_prefix("http://").expect("http URL");
        let (authority, path) = rest.split_at(rest.find('/').expect("path"));
        OurServer {
            child,
            addr: authority.parse().expect("address"),
            path: path.to_owned(),
            cap,
        }
    }

    /// Closing its stdin ends the server process.
    fn stop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// The child's side: serve `file` until stdin closes.
fn serve(file: &Path) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let server = FirmwareServer::start((Ipv4Addr::LOCALHOST, 0).into(), None)
            .await
            .expect("firmware server");
        let url = server.offer(file.to_path_buf(), "fw.bin", "bench-package");
        println!("{url} {}", server.max_connections());
        std::io::stdout().flush().expect("stdout");
        tokio::task::spawn_blocking(|| {
            let mut sink = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut sink);
        })
        .await
        .expect("stdin watcher");
    });
}
