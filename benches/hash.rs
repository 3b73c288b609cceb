//! Benchmark: our one-pass hash (MD5 + SHA-256 + FogCloud checksum) against `md5sum` and
//! `sha256sum` on the same warm 1 GiB file, in the same run. Prints the median wall time of each
//! as MiB/s and the ratio ours/md5sum (target: at most 1.1).
//!
//! `cargo bench --no-default-features --bench hash`. Environment: `OTA_HASH_BENCH_MIB` (file size,
//! default 1024), `OTA_HASH_BENCH_REPS` (default 5), `OTA_HASH_BENCH_DIR` (default /var/tmp, a
//! disk-backed directory; the file is deleted afterwards). Never runs as part of `cargo test`.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use ota_console::firmware::{CancelToken, hash_file};

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

    let (mut md5sum, mut sha256sum, mut ours) = (Vec::new(), Vec::new(), Vec::new());
    for rep in 1..=reps {
        let (t_md5, md5) = run_tool("md5sum", &path);
        let (t_sha, sha) = run_tool("sha256sum", &path);
        let start = Instant::now();
        let package = hash_file(&path, &mut |_, _| {}, &CancelToken::new()).expect("our hash");
        let t_ours = start.elapsed();
        assert_eq!(package.md5, md5, "MD5 differs from md5sum");
        assert_eq!(package.sha256, sha, "SHA-256 differs from sha256sum");
        assert_eq!(package.size, bytes);
        eprintln!(
            "rep {rep}/{reps}: md5sum {:.2}s  sha256sum {:.2}s  ours {:.2}s",
            t_md5.as_secs_f64(),
            t_sha.as_secs_f64(),
            t_ours.as_secs_f64()
        );
        md5sum.push(t_md5);
        sha256sum.push(t_sha);
        ours.push(t_ours);
    }

    let (m, s, o) = (median(md5sum), median(sha256sum), median(ours));
    println!("file: {mib} MiB, {reps} repetitions, median wall time");
    println!(
        "md5sum               {:8.1} MiB/s  {:.3} s",
        mib_per_s(bytes, m),
        m.as_secs_f64()
    );
    println!(
        "sha256sum            {:8.1} MiB/s  {:.3} s",
        mib_per_s(bytes, s),
        s.as_secs_f64()
    );
    println!(
        "ota-console (3 digests) {:5.1} MiB/s  {:.3} s",
        mib_per_s(bytes, o),
        o.as_secs_f64()
    );
    println!(
        "ratio ours/md5sum: {:.3} (target <= 1.1)",
        o.as_secs_f64() / m.as_secs_f64()
    );
}
