//! How a simulated device fetches firmware over HTTP: with a forgiving client (reqwest) or the
//! minimal client of an embedded SDK (`strict_http.rs`), both feeding the same paced, verifying
//! [`Sink`] of `download.rs`.
//!
//! Owns: the choice of client and the relaxed client's read loop. Must never: verify or pace
//! bytes itself (the sink does).

use std::time::Duration;

use super::download::{DownloadError, Expected, Fetched, Flow, Sink, TransferFaults};

/// How a simulated device speaks HTTP when it downloads firmware.
#[derive(Debug, Clone)]
pub(crate) enum HttpClient {
    /// reqwest: a complete, forgiving client (header names in any case, chunked bodies).
    Relaxed(reqwest::Client),
    /// The minimal HTTP/1.1 client of an embedded device SDK ([`super::strict_http`]): exact
    /// header names, `Content-Length` required, no chunked bodies.
    Strict { connect_timeout: Duration },
}

/// Downloads `url`, calling `on_bytes(received_so_far)` after every paced slice.
pub(crate) async fn fetch(
    client: &HttpClient,
    url: &str,
    expected: &Expected,
    bandwidth_bytes_per_sec: Option<u64>,
    stall_timeout: Duration,
    faults: TransferFaults,
    on_bytes: impl FnMut(u64),
) -> Result<Fetched, DownloadError> {
    let mut sink = Sink::new(expected, bandwidth_bytes_per_sec, faults, on_bytes);
    match client {
        HttpClient::Relaxed(client) => fetch_relaxed(client, url, stall_timeout, &mut sink).await?,
        HttpClient::Strict { connect_timeout } => {
            super::strict_http::get(url, *connect_timeout, stall_timeout, &mut sink).await?;
        }
    }
    sink.finish()
}

async fn fetch_relaxed<F: FnMut(u64)>(
    client: &reqwest::Client,
    url: &str,
    stall_timeout: Duration,
    sink: &mut Sink<'_, F>,
) -> Result<(), DownloadError> {
    let http = |source| DownloadError::Http {
        url: url.to_owned(),
        source,
    };
    let mut response = tokio::time::timeout(stall_timeout, client.get(url).send())
        .await
        .map_err(|_| DownloadError::Stalled {
            url: url.to_owned(),
            waited: stall_timeout,
        })?
        .map_err(http)?;
    if !response.status().is_success() {
        return Err(DownloadError::Status {
            url: url.to_owned(),
            status: response.status().as_u16(),
        });
    }
    loop {
        let chunk = tokio::time::timeout(stall_timeout, response.chunk())
            .await
            .map_err(|_| DownloadError::Stalled {
                url: url.to_owned(),
                waited: stall_timeout,
            })?
            .map_err(http)?;
        let Some(chunk) = chunk else { return Ok(()) };
        if sink.take(&chunk).await? == Flow::Enough {
            return Ok(());
        }
    }
}
