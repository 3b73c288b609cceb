//! Hostile clients against the firmware HTTP server, over raw TCP so that nothing (unlike
//! reqwest) normalises what is sent: unknown tokens, path traversal in every encoding, absurd
//! Range headers, a request head that never ends (slow-loris) and a burst of 1,000 concurrent
//! downloads. Throughout, a secret file lies next to the offered one and no byte of it (or of any
//! other file) may ever be returned: a 200/206 body is always the offered file or a slice of it.
//!
//! Everything binds 127.0.0.1:0; every wait is bounded.

// Test code throughout: clippy's allow-unwrap-in-tests (clippy.toml) goes by `cfg(test)`.
#![cfg(test)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ota_console::transport::http::FirmwareServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);
const KEY: &str = "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8";
/// The server's `HEADER_READ_TIMEOUT` (src/transport/http.rs): a request head must be complete
/// within it.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// What the secret file contains; must never appear in a response.
const SECRET: &[u8] = b"TOP-SECRET-7f3a9c-DO-NOT-SERVE";
const FILE_NAME: &str = "fw-1.2.3.bin";

struct Fixture {
    server: FirmwareServer,
    addr: SocketAddr,
    token: String,
    content: Vec<u8>,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    // Bytes 0..=250 in a pattern that never spells the secret.
    let content: Vec<u8> = (0..4096u32).map(|i| (i * 7 % 251) as u8).collect();
    let path = dir.path().join("stored-object");
    std::fs::write(&path, &content).unwrap();
    // Next to the offered file, and one level up: both unreachable.
    std::fs::write(dir.path().join("secret"), SECRET).unwrap();
    std::fs::write(dir.path().join("ota-console.db"), SECRET).unwrap();
    let server = FirmwareServer::start("127.0.0.1:0".parse().unwrap(), None)
        .await
        .unwrap();
    let url = server.offer(path, FILE_NAME, KEY);
    let token = url.split('/').nth(4).unwrap().to_owned();
    let addr = server.local_addr();
    Fixture {
        server,
        addr,
        token,
        content,
        _dir: dir,
    }
}

/// A parsed raw response.
#[derive(Debug)]
struct Raw {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Raw {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }
}

fn parse(bytes: &[u8]) -> Raw {
    let split = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(bytes.len(), |p| p + 4);
    let head = String::from_utf8_lossy(&bytes[..split]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Raw {
        status,
        head,
        body: bytes[split..].to_vec(),
    }
}

/// Sends `request` verbatim and reads until the server closes.
async fn raw(addr: SocketAddr, request: &[u8]) -> Raw {
    let bytes = timeout(WAIT, async {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(request).await.unwrap();
        let mut response = Vec::new();
        // A reset after the response is sent is fine; what was read counts.
        let _ = stream.read_to_end(&mut response).await;
        response
    })
    .await
    .expect("the server answers and closes");
    parse(&bytes)
}

async fn get(addr: SocketAddr, target: &[u8], extra_headers: &str) -> Raw {
    let mut request = b"GET ".to_vec();
    request.extend_from_slice(target);
    request.extend_from_slice(
        format!(" HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra_headers}Connection: close\r\n\r\n")
            .as_bytes(),
    );
    raw(addr, &request).await
}

/// The invariant of every response: nothing of another file, and a success body is the offered
/// file or exactly the slice its Content-Range names.
fn assert_only_offered_bytes(f: &Fixture, what: &str, r: &Raw) {
    assert!(
        !r.body.windows(SECRET.len()).any(|w| w == SECRET)
            && !r.head.as_bytes().windows(SECRET.len()).any(|w| w == SECRET),
        "{what}: the secret leaked:\n{}",
        r.head
    );
    match r.status {
        200 => assert_eq!(r.body, f.content, "{what}: 200 with another body"),
        206 => {
            let range = r.header("content-range").unwrap_or_default();
            if let Some(spec) = range
                .strip_prefix("bytes ")
                .and_then(|s| s.split_once('/'))
                .and_then(|(r, _)| r.split_once('-'))
            {
                let (start, end): (usize, usize) =
                    (spec.0.parse().unwrap(), spec.1.parse().unwrap());
                assert_eq!(
                    r.body,
                    f.content[start..=end],
                    "{what}: 206 body is not the slice it names"
                );
            } else {
                // multipart/byteranges: every part must be a slice of the file; at least the
                // secret check above holds, and no part may be longer than the file.
                assert!(
                    r.body.len() < f.content.len() * 4 + 64 * 1024,
                    "{what}: multipart body of {} bytes",
                    r.body.len()
                );
            }
        }
        _ => {}
    }
}

#[tokio::test]
async fn unknown_or_mangled_tokens_are_404() {
    let f = fixture().await;
    let t = &f.token;
    let upper = t.to_uppercase();
    let targets = [
        format!("/fw/{}/{FILE_NAME}", "0".repeat(32)),
        format!("/fw/{}/{FILE_NAME}", "f".repeat(32)),
        format!("/fw/{upper}/{FILE_NAME}"),
        format!("/fw/{}/{FILE_NAME}", &t[..31]),
        format!("/fw/{t}0/{FILE_NAME}"),
        format!("/fw//{FILE_NAME}"),
        format!("/fw/{t}/"),
        format!("/fw/{t}"),
        format!("/fw/{t}/FW-1.2.3.BIN"),
        format!("/fw/{t}/other.bin"),
        format!("/fw/{t}/{FILE_NAME}/"),
        format!("/fw/{t}/{FILE_NAME}/x"),
        format!("/fw/{}/{FILE_NAME}", "x".repeat(10_000)),
        "/fw/".to_owned(),
        "/".to_owned(),
        "/fw".to_owned(),
        "*".to_owned(),
    ];
    for target in &targets {
        let r = get(f.addr, target.as_bytes(), "").await;
        assert!(
            matches!(r.status, 400 | 404 | 405 | 414 | 431),
            "{target} -> {}\n{}",
            r.status,
            r.head
        );
        assert_only_offered_bytes(&f, target, &r);
    }
    // The real URL still works after all that.
    let r = get(f.addr, format!("/fw/{t}/{FILE_NAME}").as_bytes(), "").await;
    assert_eq!(r.status, 200);
    assert_only_offered_bytes(&f, "real URL", &r);
}

#[tokio::test]
async fn traversal_in_every_encoding_never_leaves_the_offer() {
    let f = fixture().await;
    let t = &f.token;
    let targets: Vec<Vec<u8>> = [
        "/fw/../secret".to_owned(),
        "/fw/../../etc/passwd".to_owned(),
        format!("/fw/{t}/../secret"),
        format!("/fw/{t}/../../secret"),
        format!("/fw/{t}/%2e%2e/secret"),
        format!("/fw/{t}/%2E%2E%2Fsecret"),
        format!("/fw/{t}/..%2fsecret"),
        format!("/fw/{t}/..%2Fsecret"),
        format!("/fw/{t}/%2e%2e%2f%2e%2e%2fsecret"),
        format!("/fw/{t}/%252e%252e%252fsecret"),
        format!("/fw/{t}/%25252e%25252e/secret"),
        format!("/fw/{t}/..%5csecret"),
        format!("/fw/{t}/..\\secret"),
        format!("/fw/{t}\\..\\secret"),
        format!("/fw/{t}/%c0%ae%c0%ae/secret"),
        format!("/fw/{t}/%2fsecret"),
        format!("/fw/{t}//secret"),
        format!("/fw/{t}/%2f%2e%2e%2fsecret"),
        format!("/fw/{t}/{FILE_NAME}/../secret"),
        format!("/fw/{t}/{FILE_NAME}/..%2fsecret"),
        format!("/fw/{t}/{FILE_NAME};/../secret"),
        format!("/fw/{t}/{FILE_NAME}%00"),
        format!("/fw/{t}/{FILE_NAME}%00.txt"),
        format!("/fw/{t}/secret%00{FILE_NAME}"),
        format!("/fw/{t}/./secret"),
        format!("/fw/{t}/.%2fsecret"),
        "/secret".to_owned(),
        "//secret".to_owned(),
        "/tmp/secret".to_owned(),
        "/etc/passwd".to_owned(),
        "/proc/self/environ".to_owned(),
        "http://127.0.0.1/../secret".to_owned(),
        "http://127.0.0.1/etc/passwd".to_owned(),
        format!("http://127.0.0.1/fw/{t}/../secret"),
        "file:///etc/passwd".to_owned(),
        "C:\\Windows\\win.ini".to_owned(),
        "\\\\server\\share\\secret".to_owned(),
    ]
    .into_iter()
    .map(String::into_bytes)
    .chain([
        // A raw NUL and raw non-UTF-8 bytes in the request target.
        format!("/fw/{t}/{FILE_NAME}\0../secret").into_bytes(),
        [format!("/fw/{t}/").as_bytes(), b"\xff\xfe/../secret"].concat(),
    ])
    .collect();
    for target in &targets {
        let what = String::from_utf8_lossy(target).into_owned();
        let r = get(f.addr, target, "").await;
        assert!(
            matches!(r.status, 400 | 404),
            "{what} -> {}\n{}",
            r.status,
            r.head
        );
        assert_only_offered_bytes(&f, &what, &r);
    }
    // A query string cannot select another file: at most it is ignored and the offer served.
    let target = format!("/fw/{t}/{FILE_NAME}?file=../secret");
    let r = get(f.addr, target.as_bytes(), "").await;
    assert!(matches!(r.status, 200 | 400 | 404), "{}", r.status);
    assert_only_offered_bytes(&f, &target, &r);
}

#[tokio::test]
async fn absurd_range_headers_give_the_file_a_slice_or_an_error() {
    let f = fixture().await;
    let target = format!("/fw/{}/{FILE_NAME}", f.token);
    let many: String = (0..1000)
        .map(|i| format!("{}-{}", i * 4, i * 4 + 1))
        .collect::<Vec<_>>()
        .join(",");
    let overlapping: String = vec!["0-4095"; 200].join(",");
    let ranges = [
        "bytes=99999999999999999999-".to_owned(),
        "bytes=0-99999999999999999999".to_owned(),
        "bytes=-99999999999999999999".to_owned(),
        "bytes=18446744073709551615-".to_owned(),
        "bytes=0-18446744073709551615".to_owned(),
        "bytes=18446744073709551614-18446744073709551615".to_owned(),
        "bytes=5-1".to_owned(),
        "bytes=-0".to_owned(),
        "bytes=0--1".to_owned(),
        "bytes=--1".to_owned(),
        "bytes=-".to_owned(),
        "bytes=".to_owned(),
        "bytes".to_owned(),
        "bytes=4096-".to_owned(),
        "bytes=4095-".to_owned(),
        "bytes=4000-9999".to_owned(),
        "bytes=-1".to_owned(),
        "bytes=-5000".to_owned(),
        "bytes=0-0".to_owned(),
        "bytes=1.5-2".to_owned(),
        "bytes=0x10-0x20".to_owned(),
        "bytes= 1 - 2 ".to_owned(),
        "bytes=1-2;bytes=3-4".to_owned(),
        "items=0-10".to_owned(),
        "garbage".to_owned(),
        "bytes=\u{7f}".to_owned(),
        format!("bytes={many}"),
        format!("bytes={overlapping}"),
        "bytes=0-1,5-1,-0".to_owned(),
    ];
    for range in &ranges {
        let r = get(f.addr, target.as_bytes(), &format!("Range: {range}\r\n")).await;
        let shown: String = range.chars().take(60).collect();
        assert!(
            matches!(r.status, 200 | 206 | 400 | 416 | 431),
            "Range {shown} -> {}\n{}",
            r.status,
            r.head
        );
        assert_only_offered_bytes(&f, &shown, &r);
    }
    // Raw bytes that are not even a header value.
    let r = raw(
        f.addr,
        [
            format!("GET {target} HTTP/1.1\r\nHost: x\r\nRange: bytes=").as_bytes(),
            b"\xff\x00-1\r\nConnection: close\r\n\r\n",
        ]
        .concat()
        .as_slice(),
    )
    .await;
    assert_only_offered_bytes(&f, "binary Range", &r);
    // Still serving.
    let r = get(f.addr, target.as_bytes(), "Range: bytes=10-19\r\n").await;
    assert_eq!(r.status, 206, "{}", r.head);
    assert_eq!(r.body, f.content[10..20]);
}

/// How long the server took to close a connection on which `feed` keeps writing (or not).
async fn time_to_close(addr: SocketAddr, first: &'static [u8], trickle: bool) -> Duration {
    let started = Instant::now();
    let bound = HEADER_READ_TIMEOUT + Duration::from_secs(5);
    timeout(bound, async {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(first).await.unwrap();
        let mut buf = [0u8; 1024];
        loop {
            tokio::select! {
                read = stream.read(&mut buf) => match read {
                    // Closed (a 408 or nothing before it).
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                },
                _ = tokio::time::sleep(Duration::from_millis(300)), if trickle => {
                    if stream.write_all(b"a").await.is_err() {
                        return;
                    }
                }
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("connection still open after {bound:?} (trickle: {trickle})"));
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_that_never_ends_is_cut_off() {
    let f = fixture().await;
    let (trickled, silent, half_line) = tokio::join!(
        // Slow-loris: a header line that grows by one byte every 300 ms, forever.
        time_to_close(
            f.addr,
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ",
            true
        ),
        // Connect and say nothing.
        time_to_close(f.addr, b"", false),
        // Half a request line, then silence.
        time_to_close(f.addr, b"GET /fw/", false),
    );
    for (what, took) in [
        ("trickled header", trickled),
        ("silent client", silent),
        ("half a request line", half_line),
    ] {
        assert!(
            took <= HEADER_READ_TIMEOUT + Duration::from_secs(3),
            "{what}: closed after {took:?}"
        );
    }
    // The server is still there.
    let r = get(
        f.addr,
        format!("/fw/{}/{FILE_NAME}", f.token).as_bytes(),
        "",
    )
    .await;
    assert_eq!(r.status, 200);
    println!("closed after: trickled {trickled:?}, silent {silent:?}, half line {half_line:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_downloads_succeed_or_are_refused_cleanly() {
    let f = fixture().await;
    let request = format!(
        "GET /fw/{}/{FILE_NAME} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
        f.token
    );
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..1000 {
        let request = request.clone();
        let addr = f.addr;
        tasks.spawn(async move {
            let mut stream = match TcpStream::connect(addr).await {
                Ok(s) => s,
                Err(e) => return Err(format!("connect: {e}")),
            };
            stream
                .write_all(request.as_bytes())
                .await
                .map_err(|e| format!("write: {e}"))?;
            let mut response = Vec::new();
            stream
                .read_to_end(&mut response)
                .await
                .map_err(|e| format!("read: {e}"))?;
            Ok(parse(&response))
        });
    }
    let mut ok = 0;
    let mut refused = Vec::new();
    timeout(Duration::from_secs(40), async {
        while let Some(done) = tasks.join_next().await {
            match done.unwrap() {
                Ok(r) => {
                    assert_only_offered_bytes(&f, "concurrent GET", &r);
                    if r.status == 200 {
                        ok += 1;
                    } else {
                        // A clean refusal is an HTTP error status, never a partial body.
                        assert!(matches!(r.status, 429 | 503), "{}", r.head);
                        refused.push(format!("HTTP {}", r.status));
                    }
                }
                Err(e) => refused.push(e),
            }
        }
    })
    .await
    .expect("1,000 downloads finish within 40 s");
    assert_eq!(ok + refused.len(), 1000);
    // Everything is far below the connection cap, so nothing should have been refused at all.
    assert_eq!(ok, 1000, "refused: {refused:?}");
    let stats = f.server.stats();
    assert!(
        stats.total_bytes >= 1000 * f.content.len() as u64,
        "{stats:?}"
    );
    let r = get(
        f.addr,
        format!("/fw/{}/{FILE_NAME}", f.token).as_bytes(),
        "",
    )
    .await;
    assert_eq!(r.status, 200);
    assert_only_offered_bytes(&f, "GET afterwards", &r);
    println!(
        "1,000 concurrent GETs of {} bytes: {ok} ok in {:?}",
        f.content.len(),
        started.elapsed()
    );
}
