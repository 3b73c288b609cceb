//! The firmware server over HTTPS with the site CA's certificate: downloads with Range from a
//! client that trusts the site CA (tokio-rustls and raw HTTP/1.1, as an embedded client does),
//! the `https://` URLs it announces, and plain HTTP sent to the TLS port failing on its own
//! while downloads go on. Everything on 127.0.0.1 with ephemeral ports; every wait bounded.

// Test code throughout: clippy's allow-unwrap-in-tests (clippy.toml) goes by `cfg(test)`.
#![cfg(test)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ota_console::access::site_ca::SiteCa;
use ota_console::access::tls::{ClientCerts, server_config};
use ota_console::transport::http::{FirmwareServer, HttpError};
use rustls::RootCertStore;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

const WAIT: Duration = Duration::from_secs(10);
const KEY: &str = "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8";

struct Fixture {
    server: FirmwareServer,
    ca: SiteCa,
    _dir: tempfile::TempDir,
    files: PathBuf,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let ca = SiteCa::load_or_create(&dir.path().join("data")).unwrap();
    let identity = ca
        .issue_server(&["127.0.0.1".to_owned(), "localhost".to_owned()])
        .unwrap();
    let tls = server_config(&identity, ClientCerts::NotAsked).unwrap();
    let server = FirmwareServer::start_with_tls("127.0.0.1:0".parse().unwrap(), None, Some(tls))
        .await
        .unwrap();
    let files = dir.path().join("files");
    std::fs::create_dir(&files).unwrap();
    Fixture {
        server,
        ca,
        _dir: dir,
        files,
    }
}

impl Fixture {
    /// Offers `len` bytes of a pattern; returns the URL and the bytes.
    fn offer(&self, name: &str, len: usize) -> (String, Vec<u8>) {
        let content: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        let path = self.files.join(name);
        std::fs::write(&path, &content).unwrap();
        (self.server.offer(path, name, KEY), content)
    }

    fn target<'a>(&self, url: &'a str) -> &'a str {
        url.strip_prefix(&self.server.public_base()).unwrap()
    }

    async fn connect(&self) -> TlsStream<TcpStream> {
        connect_trusting(&self.ca, self.server.local_addr())
            .await
            .unwrap()
    }
}

async fn connect_trusting(ca: &SiteCa, addr: SocketAddr) -> std::io::Result<TlsStream<TcpStream>> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.certificate()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = timeout(WAIT, TcpStream::connect(addr))
        .await
        .expect("connects")?;
    timeout(
        WAIT,
        TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp),
    )
    .await
    .expect("handshake finishes")
}

struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 GET on a kept-alive connection; the body is read by its Content-Length.
async fn get<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    target: &str,
    range: Option<&str>,
) -> Answer {
    timeout(WAIT, async {
        let range = range.map_or(String::new(), |r| format!("Range: {r}\r\n"));
        let request = format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n{range}\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        stream.flush().await.unwrap();
        let mut buffer = Vec::new();
        let head_len = loop {
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed before the response head");
            buffer.extend_from_slice(&chunk[..n]);
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut response = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(len) = response.parse(&buffer).unwrap() {
                break len;
            }
        };
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut headers);
        response.parse(&buffer).unwrap();
        let status = response.code.unwrap();
        let headers: Vec<(String, String)> = response
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_owned(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect();
        let length: usize = headers
            .iter()
            .find(|(n, _)| n == "Content-Length")
            .map(|(_, v)| v.parse().unwrap())
            .expect("an exact Content-Length");
        let mut body = buffer.split_off(head_len);
        while body.len() < length {
            let mut chunk = vec![0u8; 64 * 1024];
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed in the body");
            body.extend_from_slice(&chunk[..n]);
        }
        assert_eq!(body.len(), length, "nothing beyond the body");
        Answer {
            status,
            headers,
            body,
        }
    })
    .await
    .expect("response received")
}

#[tokio::test]
async fn https_downloads_whole_and_by_range_from_a_client_trusting_the_site_ca() {
    let f = fixture().await;
    let base = f.server.public_base();
    let port = f.server.local_addr().port();
    assert_eq!(base, format!("https://127.0.0.1:{port}"));
    let (url, content) = f.offer("fw-1.2.3.bin", 1000);
    assert!(url.starts_with(&format!("{base}/fw/")), "{url}");

    // One kept-alive connection, several requests, as a resuming device does.
    let mut tls = f.connect().await;
    let whole = get(&mut tls, f.target(&url), None).await;
    assert_eq!(whole.status, 200);
    assert_eq!(whole.body, content);
    assert_eq!(
        whole.header("Content-Type"),
        Some("application/octet-stream")
    );
    let part = get(&mut tls, f.target(&url), Some("bytes=100-199")).await;
    assert_eq!(part.status, 206);
    assert_eq!(part.header("Content-Range"), Some("bytes 100-199/1000"));
    assert_eq!(part.body, &content[100..200]);
    let tail = get(&mut tls, f.target(&url), Some("bytes=900-")).await;
    assert_eq!(tail.status, 206);
    assert_eq!(tail.body, &content[900..]);
    let beyond = get(&mut tls, f.target(&url), Some("bytes=5000-")).await;
    assert_eq!(beyond.status, 416);
    let unknown = get(&mut tls, "/fw/00000000000000000000000000000000/x.bin", None).await;
    assert_eq!(unknown.status, 404);
    drop(tls);

    // Larger than the in-memory cache's chunking: streamed through TLS by range too.
    let (big_url, big) = f.offer("big.bin", 3 * 1024 * 1024 + 17);
    let mut tls = f.connect().await;
    let ranged = get(&mut tls, f.target(&big_url), Some("bytes=1048570-3145739")).await;
    assert_eq!(ranged.status, 206);
    assert_eq!(ranged.body, &big[1_048_570..3_145_740]);
    let stats = f.server.stats();
    let expected = 1000 + 100 + 100 + (3_145_740 - 1_048_570);
    assert_eq!(stats.total_bytes, expected as u64);
}

#[tokio::test]
async fn plain_http_on_the_tls_port_fails_alone_and_downloads_go_on() {
    let f = fixture().await;
    let (url, content) = f.offer("fw.bin", 200_000);
    let addr = f.server.local_addr();

    // A TLS download is under way (head and part of the body read) ...
    let mut tls = f.connect().await;
    let first = get(&mut tls, f.target(&url), Some("bytes=0-99")).await;
    assert_eq!(first.body, &content[..100]);

    // ... when a client speaks plain HTTP to the same port: it is told so in a 400, never
    // given the file, and the connection ends within the wait.
    let raw = timeout(WAIT, async {
        let mut plain = TcpStream::connect(addr).await.unwrap();
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: dev\r\n\r\n",
            f.target(&url)
        );
        plain.write_all(request.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        plain.read_to_end(&mut answer).await.unwrap();
        String::from_utf8(answer).unwrap()
    })
    .await
    .expect("the plain-HTTP connection is closed by the server");
    assert!(raw.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{raw:?}");
    assert!(raw.contains("\r\nContent-Length: 51\r\n"), "{raw:?}");
    assert!(
        raw.ends_with("\r\n\r\nThis port serves HTTPS only: use the https:// URL.\n"),
        "{raw:?}"
    );
    // A client that starts with neither TLS nor HTTP only loses its own connection.
    let garbage = timeout(WAIT, async {
        let mut other = TcpStream::connect(addr).await.unwrap();
        other.write_all(&[0x00; 64]).await.unwrap();
        let mut answer = Vec::new();
        let _ = other.read_to_end(&mut answer).await; // a reset ends it as well as a close
        answer
    })
    .await
    .expect("the garbage connection is closed by the server");
    assert!(!garbage.starts_with(b"HTTP/"), "{garbage:?}");

    // The running connection and new ones keep working.
    let rest = get(&mut tls, f.target(&url), Some("bytes=100-")).await;
    assert_eq!(rest.status, 206);
    assert_eq!(rest.body, &content[100..]);
    let mut again = f.connect().await;
    let whole = get(&mut again, f.target(&url), None).await;
    assert_eq!(whole.body, content);
    drop(tls);
    drop(again);

    // Every connection, the refused one included, gives its slot back.
    timeout(WAIT, async {
        while f.server.stats().active_connections != 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("no connection left open");
    let stats = f.server.stats();
    assert_eq!(stats.total_bytes, 2 * 200_000);
    assert_eq!(
        stats.requests, 4,
        "three downloads and the plain-HTTP request"
    );
}

#[tokio::test]
async fn a_client_that_does_not_trust_the_site_ca_gets_no_connection() {
    let f = fixture().await;
    let other_dir = tempfile::tempdir().unwrap();
    let other = SiteCa::load_or_create(other_dir.path()).unwrap();
    let refused = connect_trusting(&other, f.server.local_addr()).await;
    let err = refused.expect_err("an unknown issuer is refused");
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");
}

#[tokio::test]
async fn the_public_base_of_an_https_server_is_https() {
    let dir = tempfile::tempdir().unwrap();
    let ca = SiteCa::load_or_create(dir.path()).unwrap();
    let identity = ca.issue_server(&["fw.site.lan".to_owned()]).unwrap();
    let tls = server_config(&identity, ClientCerts::NotAsked).unwrap();
    let bind: SocketAddr = "127.0.0.1:0".parse().unwrap();

    let err = FirmwareServer::start_with_tls(
        bind,
        Some("http://fw.site.lan:8443".into()),
        Some(tls.clone()),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, HttpError::PlainBaseWithTls(_)), "{err:?}");
    assert!(err.to_string().contains("https://"), "{err}");

    let server =
        FirmwareServer::start_with_tls(bind, Some("https://fw.site.lan:8443/".into()), Some(tls))
            .await
            .unwrap();
    assert_eq!(server.public_base(), "https://fw.site.lan:8443");
    let path = dir.path().join("f");
    std::fs::write(&path, b"x").unwrap();
    let url = server.offer(path, "f.bin", KEY);
    assert!(url.starts_with("https://fw.site.lan:8443/fw/"), "{url}");

    // Without TLS an https:// base stays allowed (a TLS proxy in front), and http:// is derived.
    let plain = FirmwareServer::start(bind, None).await.unwrap();
    assert!(plain.public_base().starts_with("http://127.0.0.1:"));
}

/// A client that opens the TLS port and never starts the handshake holds its connection slot
/// only for the header timeout (10 s), as a plain-HTTP client that sends no request does.
/// Paused clock: the runtime jumps to the next timer whenever every task waits.
#[tokio::test(start_paused = true)]
async fn a_silent_client_is_closed_after_the_header_timeout() {
    let f = fixture().await;
    let started = tokio::time::Instant::now();
    let mut silent = TcpStream::connect(f.server.local_addr()).await.unwrap();
    let mut answer = Vec::new();
    let read = timeout(Duration::from_secs(120), silent.read_to_end(&mut answer))
        .await
        .expect("the server closes the connection");
    let waited = started.elapsed();
    assert!(read.is_ok() || answer.is_empty());
    assert!(
        (Duration::from_secs(10)..Duration::from_secs(30)).contains(&waited),
        "{waited:?}"
    );
    timeout(Duration::from_secs(5), async {
        while f.server.stats().active_connections != 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("its slot is given back");
}
