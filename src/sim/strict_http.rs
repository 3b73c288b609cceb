//! The download client of a strict simulated device (`SimConfig::strict`): a minimal HTTP/1.1
//! GET over a plain TCP socket, written the way embedded device SDKs write theirs.
//!
//! Owns: the request line and headers such a client sends (`Range: bytes=0-` on the first try),
//! reading the response head, and reading exactly `Content-Length` body bytes into the
//! download's [`Sink`]. Like those SDKs it looks headers up by their exact, case-sensitive names
//! (`Content-Length`, `Content-Range`), needs `Content-Length`, refuses chunked bodies, and
//! checks nothing of the status line beyond 200/206. That is what makes it catch a server that
//! answers `content-length: 1000`, which lenient clients such as reqwest accept.
//!
//! Must never: wait without a bound (every connect and read has a timeout), or hold more than
//! one read buffer and the response head in memory (the body goes to the sink, which stops one
//! byte past the announced size).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::download::{DownloadError, Flow, Sink};

/// Largest response head accepted; embedded clients use a fixed buffer of about this size.
const MAX_HEAD_BYTES: usize = 8 * 1024;
/// Header lines parsed at most (a fixed table, as in those clients).
const MAX_HEADERS: usize = 32;
/// One socket read.
const READ_BYTES: usize = 16 * 1024;

/// What the response head says about the body.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Head {
    status: u16,
    content_length: u64,
    /// Bytes of the head, i.e. where the body starts in the buffer.
    len: usize,
}

/// Downloads `url` into `sink`. The caller's [`Sink::finish`] judges whether the body was
/// complete.
pub(crate) async fn get<F: FnMut(u64)>(
    url: &str,
    connect_timeout: Duration,
    read_timeout: Duration,
    sink: &mut Sink<'_, F>,
) -> Result<(), DownloadError> {
    let refused = |why: String| DownloadError::Refused {
        url: url.to_owned(),
        why,
    };
    let io = |source| DownloadError::Io {
        url: url.to_owned(),
        source,
    };
    let stalled = |waited| DownloadError::Stalled {
        url: url.to_owned(),
        waited,
    };
    let target = Target::parse(url).map_err(refused)?;
    let mut stream = tokio::time::timeout(connect_timeout, TcpStream::connect(&target.authority))
        .await
        .map_err(|_| stalled(connect_timeout))?
        .map_err(io)?;
    // The whole file, asked as a range from its first byte: SDKs that can resume always send
    // a Range header, so the server must answer it with 206 and the full length.
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: ota-console-sim-strict/1\r\n\
         Range: bytes=0-\r\nConnection: close\r\n\r\n",
        target.path, target.host
    );
    tokio::time::timeout(read_timeout, stream.write_all(request.as_bytes()))
        .await
        .map_err(|_| stalled(read_timeout))?
        .map_err(io)?;

    let mut buf = vec![0u8; READ_BYTES.max(MAX_HEAD_BYTES)];
    let mut filled = 0usize;
    let head = loop {
        if let Some(head) = parse_head(buf.get(..filled).unwrap_or_default()).map_err(refused)? {
            break head;
        }
        let Some(free) = buf
            .get_mut(filled..MAX_HEAD_BYTES)
            .filter(|f| !f.is_empty())
        else {
            return Err(refused(format!(
                "the response head is longer than {MAX_HEAD_BYTES} bytes"
            )));
        };
        let n = tokio::time::timeout(read_timeout, stream.read(free))
            .await
            .map_err(|_| stalled(read_timeout))?
            .map_err(io)?;
        if n == 0 {
            return Err(refused(
                "the connection closed inside the response head".into(),
            ));
        }
        filled += n;
    };
    if head.status != 200 && head.status != 206 {
        return Err(DownloadError::Status {
            url: url.to_owned(),
            status: head.status,
        });
    }

    // Exactly Content-Length bytes, and never more than the sink takes.
    let mut remaining = head.content_length.min(sink.room());
    let early = buf.get(head.len..filled).unwrap_or_default();
    let early = early
        .get(
            ..usize::try_from(remaining)
                .unwrap_or(usize::MAX)
                .min(early.len()),
        )
        .unwrap_or_default();
    if !early.is_empty() {
        remaining -= early.len() as u64;
        if sink.take(early).await? == Flow::Enough {
            return Ok(());
        }
    }
    while remaining > 0 {
        let want = usize::try_from(remaining).map_or(buf.len(), |r| r.min(buf.len()));
        let chunk = buf.get_mut(..want).unwrap_or_default();
        let n = tokio::time::timeout(read_timeout, stream.read(chunk))
            .await
            .map_err(|_| stalled(read_timeout))?
            .map_err(io)?;
        if n == 0 {
            // The server closed early; the sink reports the shortfall.
            return Ok(());
        }
        remaining -= n as u64;
        if sink.take(buf.get(..n).unwrap_or_default()).await? == Flow::Enough {
            return Ok(());
        }
    }
    Ok(())
}

/// Where to connect and what to ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    /// `host:port` for the connect (IPv6 in brackets).
    authority: String,
    /// The `Host` header: the host as written in the URL, with the port when it was given.
    host: String,
    /// Path and query, percent-encoded as in the URL.
    path: String,
}

impl Target {
    fn parse(url: &str) -> Result<Target, String> {
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("bad URL: {e}"))?;
        if parsed.scheme() != "http" {
            return Err(format!(
                "the strict client speaks plain http only, not {}",
                parsed.scheme()
            ));
        }
        let host = parsed
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or("the URL names no host")?;
        let port = parsed.port().unwrap_or(80);
        let mut path = parsed.path().to_owned();
        if let Some(query) = parsed.query() {
            path.push('?');
            path.push_str(query);
        }
        Ok(Target {
            authority: format!("{host}:{port}"),
            host: match parsed.port() {
                Some(p) => format!("{host}:{p}"),
                None => host.to_owned(),
            },
            path,
        })
    }
}

/// Parses the response head at the start of `bytes`; `None` while it is incomplete.
fn parse_head(bytes: &[u8]) -> Result<Option<Head>, String> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let len = match response.parse(bytes) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("malformed response head: {e}")),
    };
    let status = response.code.unwrap_or(0);
    // Exact names only: `content-length` is not found, as in the SDKs this stands for.
    let exact = |name: &str| {
        response
            .headers
            .iter()
            .find(|h| h.name == name)
            .map(|h| String::from_utf8_lossy(h.value).trim().to_owned())
    };
    // Chunked bodies are refused whatever the spelling: such a client has no decoder.
    if response
        .headers
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case("Transfer-Encoding"))
    {
        return Err("a Transfer-Encoding (chunked) body; a Content-Length is required".into());
    }
    if status != 200 && status != 206 {
        // Not a body to read; the caller reports the status.
        return Ok(Some(Head {
            status,
            content_length: 0,
            len,
        }));
    }
    let content_length = exact("Content-Length")
        .ok_or("no `Content-Length` header (looked up by its exact name)")?
        .parse::<u64>()
        .map_err(|_| "`Content-Length` is not a number".to_owned())?;
    if status == 206 {
        let range = exact("Content-Range")
            .ok_or("a 206 without a `Content-Range` header (looked up by its exact name)")?;
        let (first, last) = range
            .strip_prefix("bytes ")
            .and_then(|r| r.split_once('/'))
            .and_then(|(span, _total)| span.split_once('-'))
            .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)))
            .ok_or_else(|| format!("unreadable `Content-Range: {range}`"))?;
        if first != 0 || last.checked_sub(first).map(|d| d + 1) != Some(content_length) {
            return Err(format!(
                "`Content-Range: {range}` is not the asked range from byte 0 with \
                 `Content-Length: {content_length}`"
            ));
        }
    }
    Ok(Some(Head {
        status,
        content_length,
        len,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::download::{self, Expected, TransferFaults};
    use crate::sim::fetch::{self, HttpClient};
    use crate::transport::http::FirmwareServer;

    const WAIT: Duration = Duration::from_secs(10);

    fn strict() -> HttpClient {
        HttpClient::Strict {
            connect_timeout: WAIT,
        }
    }

    fn expected(content: &[u8]) -> Expected {
        use md5::Digest;
        Expected {
            size: content.len() as u64,
            md5: Some(hex::encode(md5::Md5::digest(content))),
            sha256: None,
            checksum: None,
        }
    }

    async fn fetch(url: &str, expected: &Expected) -> Result<download::Fetched, DownloadError> {
        tokio::time::timeout(
            WAIT * 2,
            fetch::fetch(
                &strict(),
                url,
                expected,
                None,
                WAIT,
                TransferFaults::default(),
                |_| {},
            ),
        )
        .await
        .expect("the download ends")
    }

    #[tokio::test]
    async fn downloads_from_the_firmware_server() {
        let dir = tempfile::tempdir().unwrap();
        // Larger than one read and than the head buffer, not a multiple of either.
        let content: Vec<u8> = (0..100_003u32).map(|i| (i * 7 % 251) as u8).collect();
        let path = dir.path().join("fw");
        std::fs::write(&path, &content).unwrap();
        let server = FirmwareServer::start("127.0.0.1:0".parse().unwrap(), None)
            .await
            .unwrap();
        let url = server.offer(path, "fw 1.bin", "key");
        let want = expected(&content);
        let mut seen = 0;
        let fetched = fetch::fetch(
            &strict(),
            &url,
            &want,
            None,
            WAIT,
            TransferFaults::default(),
            |n| seen = n,
        )
        .await
        .unwrap();
        assert_eq!(fetched.len, content.len() as u64);
        assert_eq!(seen, content.len() as u64);
        download::verify(&fetched, &want).unwrap();
        assert_eq!(server.stats().total_bytes, content.len() as u64);

        let missing = url.replace("fw%201.bin", "other.bin");
        assert!(matches!(
            fetch(&missing, &want).await,
            Err(DownloadError::Status { status: 404, .. })
        ));
    }

    /// Answers every connection once with `head` then `body`, and returns the URL and the
    /// request heads received.
    async fn raw_server(
        head: String,
        body: Vec<u8>,
    ) -> (String, tokio::sync::mpsc::UnboundedReceiver<String>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut request = Vec::new();
                let mut byte = [0u8; 1];
                while !request.ends_with(b"\r\n\r\n") && request.len() < 4096 {
                    match socket.read(&mut byte).await {
                        Ok(1) => request.push(byte[0]),
                        _ => break,
                    }
                }
                let _ = tx.send(String::from_utf8_lossy(&request).into_owned());
                let _ = socket.write_all(head.as_bytes()).await;
                let _ = socket.write_all(&body).await;
                let _ = socket.shutdown().await;
            }
        });
        (format!("http://{addr}/fw/abc/fw.bin?x=1"), rx)
    }

    /// Finding 1 of issue #11: a server that writes `content-length` in lower case makes an
    /// embedded client download nothing.
    #[tokio::test]
    async fn lower_case_content_length_fails_the_download() {
        let content = vec![5u8; 1000];
        let (url, mut requests) = raw_server(
            "HTTP/1.1 200 OK\r\ncontent-length: 1000\r\ncontent-type: application/octet-stream\r\n\r\n"
                .to_owned(),
            content.clone(),
        )
        .await;
        let err = fetch(&url, &expected(&content)).await.unwrap_err();
        assert!(
            matches!(&err, DownloadError::Refused { why, .. } if why.contains("Content-Length")),
            "{err}"
        );
        let request = requests.recv().await.unwrap();
        assert!(
            request.starts_with("GET /fw/abc/fw.bin?x=1 HTTP/1.1\r\n"),
            "{request}"
        );
        assert!(request.contains("\r\nRange: bytes=0-\r\n"), "{request}");
        assert!(request.contains("\r\nHost: 127.0.0.1:"), "{request}");

        // The same answer with the exact name downloads, and the relaxed client took both.
        let (good, _) = raw_server(
            "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n".to_owned(),
            content.clone(),
        )
        .await;
        fetch(&good, &expected(&content)).await.unwrap();
        let relaxed = HttpClient::Relaxed(reqwest::Client::builder().no_proxy().build().unwrap());
        let fetched = fetch::fetch(
            &relaxed,
            &url,
            &expected(&content),
            None,
            WAIT,
            TransferFaults::default(),
            |_| {},
        )
        .await
        .unwrap();
        assert_eq!(fetched.len, 1000);
    }

    #[tokio::test]
    async fn chunked_and_inconsistent_answers_are_refused() {
        let content = vec![1u8; 10];
        let cases = [
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_owned(),
            "HTTP/1.1 206 Partial Content\r\nContent-Length: 10\r\n\r\n".to_owned(),
            "HTTP/1.1 206 Partial Content\r\nContent-Length: 10\r\n\
             Content-Range: bytes 5-14/15\r\n\r\n"
                .to_owned(),
            "HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n".to_owned(),
            format!("HTTP/1.1 200 OK\r\nX-Pad: {}\r\n\r\n", "a".repeat(9000)),
        ];
        for head in cases {
            let (url, _) = raw_server(head.clone(), content.clone()).await;
            let err = fetch(&url, &expected(&content)).await.unwrap_err();
            assert!(
                matches!(err, DownloadError::Refused { .. }),
                "{head}: {err}"
            );
        }
        // A 206 of the whole file is what the server must send.
        let (url, _) = raw_server(
            "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-9/10\r\n\
             Content-Length: 10\r\n\r\n"
                .to_owned(),
            content.clone(),
        )
        .await;
        assert_eq!(fetch(&url, &expected(&content)).await.unwrap().len, 10);
    }

    #[tokio::test]
    async fn short_and_long_bodies_are_bounded() {
        let content = vec![9u8; 100];
        // The server closes after 40 of the 100 bytes it announced.
        let (url, _) = raw_server(
            "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n".to_owned(),
            content[..40].to_vec(),
        )
        .await;
        assert!(matches!(
            fetch(&url, &expected(&content)).await,
            Err(DownloadError::Truncated {
                got: 40,
                expected: 100
            })
        ));
        // A server announcing and sending far more than the notice said: read stops one byte
        // past the announced size and verification refuses the file.
        let (url, _) = raw_server(
            "HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n".to_owned(),
            vec![9u8; 1_000_000],
        )
        .await;
        let fetched = fetch(&url, &expected(&content)).await.unwrap();
        assert_eq!(fetched.len, 101);
        assert!(download::verify(&fetched, &expected(&content)).is_err());
    }

    #[tokio::test]
    async fn a_silent_server_is_a_stall() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/fw.bin", listener.local_addr().unwrap());
        let hold = tokio::spawn(async move {
            let accepted = listener.accept().await;
            std::future::pending::<()>().await;
            drop(accepted);
        });
        let want = expected(b"abc");
        let err = fetch::fetch(
            &strict(),
            &url,
            &want,
            None,
            Duration::from_millis(300),
            TransferFaults::default(),
            |_| {},
        )
        .await
        .unwrap_err();
        assert!(matches!(err, DownloadError::Stalled { .. }), "{err}");
        hold.abort();
    }

    #[test]
    fn targets_keep_the_url_as_written() {
        let t = Target::parse("http://[::1]:8080/fw/a%20b.bin?q=1").unwrap();
        assert_eq!(t.authority, "[::1]:8080");
        assert_eq!(t.host, "[::1]:8080");
        assert_eq!(t.path, "/fw/a%20b.bin?q=1");
        let t = Target::parse("http://fw.example/x").unwrap();
        assert_eq!(
            (t.authority.as_str(), t.host.as_str()),
            ("fw.example:80", "fw.example")
        );
        assert!(Target::parse("https://fw.example/x").is_err());
        assert!(Target::parse("not a url").is_err());
    }
}
