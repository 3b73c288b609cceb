//! A simulated device's firmware download: the bytes an HTTP client (`fetch.rs`) receives,
//! paced to a bandwidth cap, digests computed while they stream past, and the verification a
//! real device does before flashing.
//!
//! Owns: pacing, the one-pass MD5 / SHA-256 / FogCloud byte-sum, size and digest checks, and the
//! injected "broken connection" and "corrupted bytes" faults (corruption changes the hashed bytes,
//! so the real verification is what notices it). Must never: keep the firmware in memory or on
//! disk (the bytes are hashed and dropped), or read more than the announced size.

use std::time::Duration;

use md5::{Digest, Md5};
use sha2::Sha256;
use tokio::time::Instant;

/// Bytes paced at a time, so progress and the cap stay smooth whatever chunk size the server
/// and TCP hand us.
const PACE_SLICE_BYTES: usize = 4096;

/// Why a download did not deliver the whole file.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error("cannot fetch {url}: {source}")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("no bytes from {url} for {waited:?}")]
    Stalled { url: String, waited: Duration },
    #[error("the server closed the download after {got} of {expected} bytes")]
    Truncated { got: u64, expected: u64 },
    #[error("the download broke off after {at} bytes (injected fault)")]
    Interrupted { at: u64 },
    #[error("cannot fetch {url}: {source}")]
    Io {
        url: String,
        #[source]
        source: std::io::Error,
    },
    /// The strict client could not use the response (what an embedded SDK would refuse).
    #[error("cannot use the answer of {url}: {why}")]
    Refused { url: String, why: String },
}

/// Why a downloaded file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the file is {got} bytes, the notice announced {expected}")]
    Size { expected: u64, got: u64 },
    #[error("{kind} of the file is {got}, the notice announced {expected}")]
    Digest {
        kind: &'static str,
        expected: String,
        got: String,
    },
}

/// What the notice says the file must be.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Expected {
    pub size: u64,
    pub md5: Option<String>,
    pub sha256: Option<String>,
    /// FogCloud byte-sum, 8 hex digits of the little-endian u32.
    pub checksum: Option<String>,
}

/// What actually arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fetched {
    /// Bytes received; stops one past the announced size when the server sends too much.
    pub len: u64,
    pub md5: String,
    pub sha256: Option<String>,
    pub checksum: String,
}

/// Injected faults the transfer itself acts out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct TransferFaults {
    /// Stop after this many bytes as if the connection broke.
    pub break_at: Option<u64>,
    /// Flip the bits of the first byte before hashing, as a corrupted transfer would.
    pub corrupt: bool,
}

/// Paces a byte stream to `rate` bytes per second: each slice may pass once the time its
/// bytes are worth has elapsed since the start.
#[derive(Debug)]
pub(crate) struct Pacer {
    rate: u64,
    start: Instant,
    passed: u64,
}

impl Pacer {
    pub(crate) fn new(rate_bytes_per_sec: u64) -> Pacer {
        Pacer {
            rate: rate_bytes_per_sec.max(1),
            start: Instant::now(),
            passed: 0,
        }
    }

    pub(crate) async fn pass(&mut self, bytes: u64) {
        self.passed = self.passed.saturating_add(bytes);
        let due = Duration::from_secs_f64(self.passed as f64 / self.rate as f64);
        tokio::time::sleep_until(self.start + due).await;
    }
}

/// FogCloud's checksum: the wrapping u32 sum of all bytes, little-endian, lowercase hex.
pub(crate) fn checksum_hex(sum: u32) -> String {
    hex::encode(sum.to_le_bytes())
}

/// Streaming digests over the bytes of one file.
struct Digests {
    md5: Md5,
    sha256: Option<Sha256>,
    sum: u32,
    len: u64,
}

impl Digests {
    fn new(with_sha256: bool) -> Digests {
        Digests {
            md5: Md5::new(),
            sha256: with_sha256.then(Sha256::new),
            sum: 0,
            len: 0,
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        self.md5.update(bytes);
        if let Some(sha) = &mut self.sha256 {
            sha.update(bytes);
        }
        self.sum = bytes
            .iter()
            .fold(self.sum, |acc, b| acc.wrapping_add(u32::from(*b)));
        self.len += bytes.len() as u64;
    }

    fn finish(self) -> Fetched {
        Fetched {
            len: self.len,
            md5: hex::encode(self.md5.finalize()),
            sha256: self.sha256.map(|s| hex::encode(s.finalize())),
            checksum: checksum_hex(self.sum),
        }
    }
}

/// Whether the body reader should go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    More,
    /// One byte past the announced size arrived: verification will refuse the file, reading
    /// on would only cost memory and time.
    Enough,
}

/// Where body bytes go, whichever client read them: pacing, injected faults, digests and the
/// progress callback. Holds nothing of the body itself.
pub(crate) struct Sink<'a, F> {
    expected: &'a Expected,
    pacer: Option<Pacer>,
    digests: Digests,
    faults: TransferFaults,
    corrupt_pending: bool,
    on_bytes: F,
}

impl<'a, F: FnMut(u64)> Sink<'a, F> {
    pub(crate) fn new(
        expected: &'a Expected,
        bandwidth_bytes_per_sec: Option<u64>,
        faults: TransferFaults,
        on_bytes: F,
    ) -> Self {
        Sink {
            expected,
            pacer: bandwidth_bytes_per_sec.map(Pacer::new),
            digests: Digests::new(expected.sha256.is_some()),
            faults,
            corrupt_pending: faults.corrupt,
            on_bytes,
        }
    }

    /// Bytes the sink still accepts before it answers [`Flow::Enough`]: the announced size
    /// plus one (so an oversized file is noticed), at most.
    pub(crate) fn room(&self) -> u64 {
        self.expected
            .size
            .saturating_add(1)
            .saturating_sub(self.digests.len)
    }

    /// Takes the next body bytes, paced slice by slice.
    pub(crate) async fn take(&mut self, chunk: &[u8]) -> Result<Flow, DownloadError> {
        for slice in chunk.chunks(PACE_SLICE_BYTES) {
            // A server sending more than announced is a verification failure, not a reason to
            // keep reading: stop one byte past the announced size. An injected break stops
            // exactly at its byte, so the progress before it is the same on every run.
            let mut room = self.room();
            if let Some(at) = self.faults.break_at {
                if self.digests.len >= at {
                    return Err(DownloadError::Interrupted {
                        at: self.digests.len,
                    });
                }
                room = room.min(at - self.digests.len);
            }
            let take = slice.len().min(usize::try_from(room).unwrap_or(usize::MAX));
            let slice = slice.get(..take).unwrap_or_default();
            if let Some(p) = &mut self.pacer {
                p.pass(slice.len() as u64).await;
            }
            if self.corrupt_pending
                && let Some((first, rest)) = slice.split_first()
            {
                self.digests.update(&[!*first]);
                self.digests.update(rest);
                self.corrupt_pending = false;
            } else {
                self.digests.update(slice);
            }
            (self.on_bytes)(self.digests.len);
            if self.faults.break_at == Some(self.digests.len) {
                return Err(DownloadError::Interrupted {
                    at: self.digests.len,
                });
            }
            if self.digests.len > self.expected.size {
                return Ok(Flow::Enough);
            }
        }
        Ok(Flow::More)
    }

    /// The end of the body: short of the announced size is a broken download.
    pub(crate) fn finish(self) -> Result<Fetched, DownloadError> {
        if self.digests.len < self.expected.size {
            return Err(DownloadError::Truncated {
                got: self.digests.len,
                expected: self.expected.size,
            });
        }
        Ok(self.digests.finish())
    }
}

/// The checks a device makes before flashing: size, then every digest the notice carried.
pub(crate) fn verify(fetched: &Fetched, expected: &Expected) -> Result<(), VerifyError> {
    if fetched.len != expected.size {
        return Err(VerifyError::Size {
            expected: expected.size,
            got: fetched.len,
        });
    }
    let checks = [
        ("MD5", expected.md5.as_deref(), Some(fetched.md5.as_str())),
        (
            "SHA-256",
            expected.sha256.as_deref(),
            fetched.sha256.as_deref(),
        ),
        (
            "checksum",
            expected.checksum.as_deref(),
            Some(fetched.checksum.as_str()),
        ),
    ];
    for (kind, want, got) in checks {
        let Some(want) = want else { continue };
        let got = got.unwrap_or_default();
        if !want.eq_ignore_ascii_case(got) {
            return Err(VerifyError::Digest {
                kind,
                expected: want.to_owned(),
                got: got.to_owned(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_is_little_endian_wrapping_sum() {
        let mut d = Digests::new(false);
        d.update(&[1, 2, 3]);
        assert_eq!(d.finish().checksum, "06000000");
        let mut d = Digests::new(false);
        d.update(&[0xff; 0x0101]);
        // 257 * 255 = 65535 = 0x0000ffff
        assert_eq!(d.finish().checksum, "ffff0000");
        assert_eq!(checksum_hex(u32::MAX.wrapping_add(2)), "01000000");
    }

    #[test]
    fn digests_match_known_values() {
        let mut d = Digests::new(true);
        d.update(b"abc");
        let f = d.finish();
        assert_eq!(f.md5, "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(
            f.sha256.as_deref(),
            Some("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        );
    }

    fn fetched(len: u64) -> Fetched {
        Fetched {
            len,
            md5: "900150983cd24fb0d6963f7d28e17f72".into(),
            sha256: None,
            checksum: "26010000".into(),
        }
    }

    #[test]
    fn verify_checks_size_then_digests() {
        let ok = Expected {
            size: 3,
            md5: Some("900150983CD24FB0D6963F7D28E17F72".into()),
            sha256: None,
            checksum: Some("26010000".into()),
        };
        assert_eq!(verify(&fetched(3), &ok), Ok(()));
        assert!(matches!(
            verify(&fetched(4), &ok),
            Err(VerifyError::Size {
                expected: 3,
                got: 4
            })
        ));
        let bad_sum = Expected {
            checksum: Some("00000000".into()),
            ..ok.clone()
        };
        assert!(matches!(
            verify(&fetched(3), &bad_sum),
            Err(VerifyError::Digest {
                kind: "checksum",
                ..
            })
        ));
        // A SHA-256 the device could not compute is a mismatch, never a pass.
        let want_sha = Expected {
            sha256: Some("00".into()),
            ..ok
        };
        assert!(verify(&fetched(3), &want_sha).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn pacer_holds_the_rate() {
        let start = Instant::now();
        let mut pacer = Pacer::new(1000);
        for _ in 0..10 {
            pacer.pass(500).await;
        }
        let took = start.elapsed();
        assert!(
            took >= Duration::from_secs(5) && took < Duration::from_millis(5100),
            "{took:?}"
        );
    }
}
