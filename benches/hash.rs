//! Benchmark: our one-pass hash (MD5 + SHA-256 + FogCloud checksum) against `md5sum` and
//! `sha256sum` on the same warm 1 GiB file, in the same run. Prints the median wall time of each
//! as MiB/s and the ratio ours/md5sum (target: at most 1.1).
//!
//! `cargo bench --no-default-features --bench hash`. Environment: `OTA_HASH_BENCH_MIB` (file size,
//! default 1024), `OTA_HASH_BENCH_REPS` (default 5), `OTA_HASH_BENCH_DIR` (default /var/tmp, a
//! disk-backed directory; the file is deleted afterwards), `OTA_HASH_BENCH_CHUNKS_KIB` (see
//! `chunk_sweep`). Never runs as part of `cargo test`.

#![expect(
    clippy::expect_used,
    reason = "a benchmark's set-up that fails has nothing to measure: it stops with a message"
)]

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use md5::{Digest as _, Md5};
use ota_console::firmware::{CancelToken, HashOptions, fog_checksum, hash_file, hash_file_with};
use sha2::Sha256;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// xorshift64*: incompressible enough that no layer can shortcut it, and fast to produce.
fn write_random_file(path: &Path, bytes: u64) -> std::io::Result<()> {
    let mut out = BufWriter::with_capacity(4 << 20, File::create(path)?);
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut block = vec![0u8; 4 << 20];
    let mut left = bytes;
    while left > 0 {
        for word in block.chunks_exact_mut(8) {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            word.copy_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
        }
        let n = left.min(block.len() as u64) as usize;
        out.write_all(&block[..n])?;
        left -= n as u64;
    }
    out.into_inner().map_err(|e| e.into_error())?.sync_all()
}

fn warm_page_cache(path: &Path) -> std::io::Result<()> {
    let mut f = File::open(path)?;
    let mut buf = vec![0u8; 4 << 20];
    while f.read(&mut buf)? > 0 {}
    Ok(())
}

/// Runs an external digest tool, returns its wall time and the digest it printed.
fn run_tool(tool: &str, path: &Path) -> (Duration, String) {
    let start = Instant::now();
    let out = Command::new(tool)
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {tool}: {e}"));
    let elapsed = start.elapsed();
    assert!(out.status.success(), "{tool} failed: {:?}", out.status);
    let text = String::from_utf8_lossy(&out.stdout);
    let digest = text
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned();
    (elapsed, digest)
}

/// CPU seconds (user + system) from a /proc stat file.
fn stat_cpu_seconds(stat_path: &str) -> (f64, f64) {
    let ticks = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .parse::<f64>()
                .ok()
        })
        .unwrap_or(100.0);
    let stat = std::fs::read_to_string(stat_path).unwrap_or_default();
    let after_comm = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let field = |i: usize| {
        after_comm
            .split_whitespace()
            .nth(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
            / ticks
    };
    // After the command name: state is field 0, utime 11, stime 12, cutime 13, cstime 14.
    (field(11) + field(12), field(13) + field(14))
}

/// CPU seconds of this process (all threads) and of its waited-for children. Lets a noisy,
/// shared machine be told apart from a slow pipeline.
fn cpu_seconds() -> (f64, f64) {
    stat_cpu_seconds("/proc/self/stat")
}

/// Single-threaded speed of each digest on an in-memory buffer, to see where time goes: wall
/// clock and this thread's CPU time (the latter is immune to other load on the machine).
fn components() {
    let data: Vec<u8> = (0..256u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mib = data.len() as f64 / (1024.0 * 1024.0);
    let time = |name: &str, f: &dyn Fn() -> String| {
        let (cpu_before, _) = stat_cpu_seconds("/proc/thread-self/stat");
        let start = Instant::now();
        let out = f();
        let wall = start.elapsed().as_secs_f64();
        let (cpu_after, _) = stat_cpu_seconds("/proc/thread-self/stat");
        let cpu = (cpu_after - cpu_before).max(0.01);
        println!(
            "  {name:<18} {:8.1} MiB/s wall, {:8.1} MiB/s cpu  ({out:.8}...)",
            mib / wall,
            mib / cpu
        );
    };
    println!("in-memory, one thread, {mib} MiB:");
    for _ in 0..2 {
        time("md-5", &|| hex::encode(Md5::digest(&data)));
    }
    time("sha2 SHA-256", &|| hex::encode(Sha256::digest(&data)));
    time("FogCloud checksum", &|| fog_checksum(&data));
}

/// `OTA_HASH_BENCH_CHUNKS_KIB=256,1024,4096`: our pipeline at each chunk size (wall and
/// process CPU, median of the repetitions), to tune `DEFAULT_CHUNK_SIZE`.
fn chunk_sweep(path: &Path, bytes: u64, reps: u64) {
    let Ok(list) = std::env::var("OTA_HASH_BENCH_CHUNKS_KIB") else {
        return;
    };
    for kib in list
        .split(',')
        .filter_map(|v| v.trim().parse::<usize>().ok())
    {
        let options = HashOptions {
            chunk_size: kib * 1024,
            ..HashOptions::default()
        };
        let (mut walls, mut cpus) = (Vec::new(), Vec::new());
        for _ in 0..reps {
            let (cpu_before, _) = cpu_seconds();
            let start = Instant::now();
            hash_file_with(path, options, &mut |_, _| {}, &CancelToken::new()).expect("our hash");
            walls.push(start.elapsed());
            cpus.push(cpu_seconds().0 - cpu_before);
        }
        let wall = median(walls);
        println!(
            "chunk {kib:>5} KiB: {:8.1} MiB/s  {:.3} s wall, {:.2} s cpu",
            mib_per_s(bytes, wall),
            wall.as_secs_f64(),
            median_f64(cpus)
        );
    }
}

fn min(times: &[Duration]) -> Duration {
    times.iter().copied().min().unwrap_or_default()
}

fn median_f64(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn mib_per_s(bytes: u64, t: Duration) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / t.as_secs_f64()
}

fn main() {
    let mib = env_u64("OTA_HASH_BENCH_MIB", 1024);
    let reps = env_u64("OTA_HASH_BENCH_REPS", 5).max(1);
    let base = std::env::var("OTA_HASH_BENCH_DIR").unwrap_or_else(|_| "/var/tmp".into());
    let dir = tempfile::Builder::new()
        .prefix("ota-hash-bench-")
        .tempdir_in(&base)
        .expect("temp dir for the benchmark file");
    let path = dir.path().join("firmware.bin");
    let bytes = mib * 1024 * 1024;

    eprintln!(
        "writing {mib} MiB of pseudo-random bytes to {}",
        path.display()
    );
    write_random_file(&path, bytes).expect("write benchmark file");
    warm_page_cache(&path).expect("read benchmark file");

    components();
    chunk_sweep(&path, bytes, reps);
    let (mut md5sum, mut sha256sum, mut ours) = (Vec::new(), Vec::new(), Vec::new());
    let (mut cpu_md5sum, mut cpu_ours) = (Vec::new(), Vec::new());
    for rep in 1..=reps {
        let (_, children_before) = cpu_seconds();
        let (t_md5, md5) = run_tool("md5sum", &path);
        let (_, children_after) = cpu_seconds();
        let (t_sha, sha) = run_tool("sha256sum", &path);
        let (self_before, _) = cpu_seconds();
        let start = Instant::now();
        let package = hash_file(&path, &mut |_, _| {}, &CancelToken::new()).expect("our hash");
        let t_ours = start.elapsed();
        let (self_after, _) = cpu_seconds();
        cpu_md5sum.push(children_after - children_before);
        cpu_ours.push(self_after - self_before);
        assert_eq!(package.md5, md5, "MD5 differs from md5sum");
        assert_eq!(package.sha256, sha, "SHA-256 differs from sha256sum");
        assert_eq!(package.size, bytes);
        eprintln!(
            "rep {rep}/{reps}: md5sum {:.2}s (cpu {:.2}s)  sha256sum {:.2}s  ours {:.2}s (cpu {:.2}s)",
            t_md5.as_secs_f64(),
            children_after - children_before,
            t_sha.as_secs_f64(),
            t_ours.as_secs_f64(),
            self_after - self_before
        );
        md5sum.push(t_md5);
        sha256sum.push(t_sha);
        ours.push(t_ours);
    }

    let (m_min, o_min) = (min(&md5sum), min(&ours));
    let (m, s, o) = (median(md5sum), median(sha256sum), median(ours));
    println!("file: {mib} MiB, {reps} repetitions, median wall time");
    for (name, t) in [
        ("md5sum", m),
        ("sha256sum", s),
        ("ota-console (3 digests)", o),
    ] {
        println!(
            "{name:<24} {:8.1} MiB/s  {:.3} s",
            mib_per_s(bytes, t),
            t.as_secs_f64()
        );
    }
    println!(
        "cpu seconds (median): md5sum {:.2}, ours {:.2} (all threads)",
        median_f64(cpu_md5sum),
        median_f64(cpu_ours)
    );
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average at the end: {}", load.trim());
    println!(
        "best of {reps}: md5sum {:.3} s, ours {:.3} s, ratio {:.3}",
        m_min.as_secs_f64(),
        o_min.as_secs_f64(),
        o_min.as_secs_f64() / m_min.as_secs_f64()
    );
    println!(
        "median ratio ours/md5sum: {:.3} (target <= 1.1)",
        o.as_secs_f64() / m.as_secs_f64()
    );
}
