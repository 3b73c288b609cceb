//! Bandwidth shaping for the firmware server (`--max-bandwidth`): a cap on the bytes per second
//! the server sends across all its clients, so that a rollout does not saturate a site's uplink.
//!
//! Owns: the [`Bandwidth`] setting (parsed from `50MB/s`, `200Mbit/s`, …), the shared pacer
//! (a token bucket kept as a "theoretical arrival time", GCRA) and the response body that waits
//! for it. Each connection asks for one quantum at a time and the pacer hands out send times in
//! the order asked, so clients that keep reading share the cap about equally (round robin by
//! quantum). The pacer itself is pure (times are passed in), the body reads tokio's clock, so
//! both are testable without sleeping.
//! Must never: delay or cut a byte when no cap is set (the server then does not wrap bodies at
//! all), or reorder bytes of one response.

use crate::i18n::tr;
use std::fmt;
use std::future::Future;
use std::num::NonZeroU64;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

/// Bytes per second, more than zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Bandwidth(NonZeroU64);

impl Bandwidth {
    pub fn bytes_per_second(bytes: NonZeroU64) -> Bandwidth {
        Bandwidth(bytes)
    }

    pub fn as_bytes_per_second(self) -> u64 {
        self.0.get()
    }
}

/// Why a bandwidth text was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", tr!("error.bandwidth", text = format!("{_0:?}")))]
pub struct BandwidthError(String);

impl FromStr for Bandwidth {
    type Err = BandwidthError;

    /// `<number><unit>[/s]`: units `B`, `kB`/`KB`, `MB`, `GB`, `KiB`, `MiB`, `GiB` (bytes) and
    /// `bit`, `kbit`, `Mbit`, `Gbit` (bits; also `bps`, `kbps`, `Mbps`, `Gbps`). A bare number is
    /// bytes per second. Fractions are allowed (`1.5MB/s`).
    fn from_str(text: &str) -> Result<Bandwidth, BandwidthError> {
        let err = || BandwidthError(text.to_owned());
        let trimmed = text.trim();
        let per_second = trimmed
            .strip_suffix("/s")
            .or_else(|| trimmed.strip_suffix("/sec"))
            .unwrap_or(trimmed)
            .trim_end();
        let split = per_second
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(per_second.len());
        let (number, unit) = per_second.split_at(split);
        let number: f64 = number.parse().map_err(|_| err())?;
        let (scale, bits) = match unit.trim() {
            "" | "B" => (1.0, false),
            "kB" | "KB" => (1e3, false),
            "MB" => (1e6, false),
            "GB" => (1e9, false),
            "KiB" => (1024.0, false),
            "MiB" => (1024.0 * 1024.0, false),
            "GiB" => (1024.0 * 1024.0 * 1024.0, false),
            "bit" | "bps" => (1.0, true),
            "kbit" | "Kbit" | "kbps" | "Kbps" => (1e3, true),
            "Mbit" | "Mbps" => (1e6, true),
            "Gbit" | "Gbps" => (1e9, true),
            _ => return Err(err()),
        };
        let bytes = number * scale / if bits { 8.0 } else { 1.0 };
        if !bytes.is_finite() || bytes < 1.0 || bytes > u64::MAX as f64 {
            return Err(err());
        }
        NonZeroU64::new(bytes.round() as u64)
            .map(Bandwidth)
            .ok_or_else(err)
    }
}

impl fmt::Display for Bandwidth {
    /// Decimal megabytes (or kilobytes, or bytes) per second, as operators write them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bytes = self.0.get();
        if bytes >= 1_000_000 {
            write!(f, "{}MB/s", bytes as f64 / 1e6)
        } else if bytes >= 1_000 {
            write!(f, "{}kB/s", bytes as f64 / 1e3)
        } else {
            write!(f, "{bytes}B/s")
        }
    }
}

/// Smallest and largest piece a connection asks the pacer for: small enough that many clients
/// interleave finely, large enough that a fast cap needs few wake-ups.
const MIN_QUANTUM: u64 = 4 * 1024;
const MAX_QUANTUM: u64 = 256 * 1024;
/// Pieces per second the cap is split into at most (one every 20 ms).
const QUANTA_PER_SECOND: u64 = 50;

/// The token bucket of one server, as a pure state machine over times since its start.
///
/// `reserve` books the next `bytes` and returns when they may be sent: bookings are served in
/// the order made, each after the previous one's share of the cap. Up to one quantum may go
/// early (the bucket's depth), so an idle server starts at once. Over any interval `T` the
/// bookings sent within it total at most `rate × T + 2 quanta`.
#[derive(Debug, Clone)]
pub struct Pacer {
    rate: u64,
    quantum: u64,
    /// When the cap is used up by what is booked so far (theoretical arrival time).
    booked_until: Duration,
}

impl Pacer {
    pub fn new(rate: Bandwidth) -> Pacer {
        let rate = rate.as_bytes_per_second();
        Pacer {
            rate,
            quantum: (rate / QUANTA_PER_SECOND).clamp(MIN_QUANTUM, MAX_QUANTUM),
            booked_until: Duration::ZERO,
        }
    }

    /// The largest piece one booking should carry.
    pub fn quantum(&self) -> usize {
        usize::try_from(self.quantum).unwrap_or(usize::MAX)
    }

    /// Books `bytes` at `now` (time since the pacer's start) and returns the time they may be
    /// sent at (`<= now`: at once).
    pub fn reserve(&mut self, now: Duration, bytes: u64) -> Duration {
        let start = self.booked_until.max(now);
        self.booked_until = start + self.duration_of(bytes);
        start.saturating_sub(self.duration_of(self.quantum))
    }

    /// How long the cap takes for `bytes`, rounded up to the nanosecond.
    fn duration_of(&self, bytes: u64) -> Duration {
        let nanos = (u128::from(bytes) * 1_000_000_000).div_ceil(u128::from(self.rate));
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

/// A [`Pacer`] shared by all connections of one server, on tokio's clock.
#[derive(Debug)]
pub struct SharedPacer {
    started: Instant,
    pacer: Mutex<Pacer>,
    quantum: usize,
}

impl SharedPacer {
    pub fn new(rate: Bandwidth) -> Arc<SharedPacer> {
        let pacer = Pacer::new(rate);
        Arc::new(SharedPacer {
            started: Instant::now(),
            quantum: pacer.quantum(),
            pacer: Mutex::new(pacer),
        })
    }

    /// Books `bytes` now; returns when they may be sent.
    fn reserve(&self, bytes: usize) -> Instant {
        let now = Instant::now();
        let at = self
            .pacer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .reserve(now - self.started, bytes as u64);
        self.started + at
    }
}

/// A response body whose data frames leave no faster than the shared pacer allows: each frame
/// is cut into quanta (zero-copy slices), each booked and then held until its time.
pub struct ShapedBody<B> {
    inner: B,
    pacer: Arc<SharedPacer>,
    /// Bytes of the inner body not yet booked.
    pending: Bytes,
    /// A booked piece and the wait before it may go.
    held: Option<(Bytes, Pin<Box<Sleep>>)>,
}

impl<B> ShapedBody<B> {
    pub fn new(inner: B, pacer: Arc<SharedPacer>) -> ShapedBody<B> {
        ShapedBody {
            inner,
            pacer,
            pending: Bytes::new(),
            held: None,
        }
    }

    fn buffered(&self) -> u64 {
        let held = self.held.as_ref().map_or(0, |(piece, _)| piece.len());
        (self.pending.len() + held) as u64
    }
}

impl<B> HttpBody for ShapedBody<B>
where
    B: HttpBody + Unpin,
    B::Data: Buf,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        loop {
            if let Some((_, wait)) = &mut self.held {
                if wait.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                let piece = self.held.take().map(|(piece, _)| piece).unwrap_or_default();
                return Poll::Ready(Some(Ok(Frame::data(piece))));
            }
            if self.pending.is_empty() {
                match Pin::new(&mut self.inner).poll_frame(cx) {
                    Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                        Ok(mut data) => {
                            self.pending = data.copy_to_bytes(data.remaining());
                            if self.pending.is_empty() {
                                continue;
                            }
                        }
                        // Trailers are not data: they pass unshaped (a file has none).
                        Err(frame) => {
                            return Poll::Ready(Some(Ok(
                                frame.map_data(|mut d| d.copy_to_bytes(d.remaining()))
                            )));
                        }
                    },
                    Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                    Poll::Ready(None) => return Poll::Ready(None),
                    Poll::Pending => return Poll::Pending,
                }
            }
            let take = self.pacer.quantum.min(self.pending.len());
            let piece = self.pending.split_to(take);
            let at = self.pacer.reserve(piece.len());
            if at <= Instant::now() {
                return Poll::Ready(Some(Ok(Frame::data(piece))));
            }
            self.held = Some((piece, Box::pin(tokio::time::sleep_until(at))));
        }
    }

    fn is_end_stream(&self) -> bool {
        self.buffered() == 0 && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let inner = self.inner.size_hint();
        let buffered = self.buffered();
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower().saturating_add(buffered));
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper.saturating_add(buffered));
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bw(text: &str) -> u64 {
        text.parse::<Bandwidth>().unwrap().as_bytes_per_second()
    }

    #[test]
    fn bandwidths_parse_in_bytes_and_bits() {
        assert_eq!(bw("50MB/s"), 50_000_000);
        assert_eq!(bw("200Mbit/s"), 25_000_000);
        assert_eq!(bw("10MiB/s"), 10 * 1024 * 1024);
        assert_eq!(bw("1Gbit/s"), 125_000_000);
        assert_eq!(bw("1.5 MB/s"), 1_500_000);
        assert_eq!(bw("800kbps"), 100_000);
        assert_eq!(bw("4096"), 4096);
        for bad in [
            "",
            "fast",
            "0MB/s",
            "-5MB/s",
            "5 parsecs/s",
            "0.1B/s",
            "MB/s",
        ] {
            assert!(bad.parse::<Bandwidth>().is_err(), "{bad}");
        }
        assert_eq!("50MB/s".parse::<Bandwidth>().unwrap().to_string(), "50MB/s");
    }

    #[test]
    fn quanta_follow_the_rate_within_bounds() {
        assert_eq!(Pacer::new("1MB/s".parse().unwrap()).quantum(), 20_000);
        assert_eq!(Pacer::new("1kB/s".parse().unwrap()).quantum(), 4096);
        assert_eq!(Pacer::new("1GB/s".parse().unwrap()).quantum(), 256 * 1024);
    }

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn an_idle_pacer_sends_at_once_then_spaces_bookings_by_the_rate() {
        // 1 MB/s: quantum 20,000 bytes = 20 ms of the cap.
        let mut pacer = Pacer::new("1MB/s".parse().unwrap());
        let now = 1000 * MS;
        // The first two quanta go at once (one ahead is the bucket's depth), then 20 ms apart.
        assert!(pacer.reserve(now, 20_000) <= now);
        assert_eq!(pacer.reserve(now, 20_000), now);
        assert_eq!(pacer.reserve(now, 20_000), now + 20 * MS);
        assert_eq!(pacer.reserve(now, 10_000), now + 40 * MS);
        assert_eq!(pacer.reserve(now, 20_000), now + 50 * MS);
        // After a pause the bucket holds no more than its depth: no burst of saved-up credit.
        let later = now + 10_000 * MS;
        assert_eq!(pacer.reserve(later, 20_000), later - 20 * MS);
        assert_eq!(pacer.reserve(later, 20_000), later);
    }

    #[test]
    fn bookings_never_exceed_the_rate_over_any_window() {
        // Many clients booking in turn at arbitrary times: what may be sent by time t is at
        // most rate × t plus two quanta, and with clients always waiting the cap is used fully.
        let rate = 2_000_000u64;
        let mut pacer = Pacer::new(Bandwidth::bytes_per_second(NonZeroU64::new(rate).unwrap()));
        let quantum = pacer.quantum() as u64;
        let mut sends: Vec<(Duration, u64)> = Vec::new();
        let mut clients: Vec<Duration> = vec![Duration::ZERO; 7];
        for step in 0..5_000u64 {
            let client = (step * 5 % 7) as usize;
            let bytes = 1 + (step * 7919) % quantum;
            let at = pacer.reserve(clients[client], bytes);
            let send = at.max(clients[client]);
            sends.push((send, bytes));
            clients[client] = send;
        }
        sends.sort();
        let mut total = 0u64;
        for (at, bytes) in &sends {
            total += bytes;
            let allowed = (rate as f64 * at.as_secs_f64()) as u64 + 2 * quantum;
            assert!(
                total <= allowed,
                "{total} bytes by {at:?}, allowed {allowed}"
            );
        }
        let last = sends.last().unwrap().0.as_secs_f64();
        let achieved = total as f64 / last;
        assert!(achieved > rate as f64 * 0.95, "{achieved} of {rate}");
    }

    #[test]
    fn waiting_clients_take_turns() {
        // Three connections that each book their next quantum as soon as the last one went:
        // the send times interleave, so none is starved by another.
        let mut pacer = Pacer::new("1MB/s".parse().unwrap());
        let quantum = pacer.quantum() as u64;
        let mut next = [Duration::ZERO; 3];
        let mut order = Vec::new();
        for _ in 0..30 {
            let client = (0..3).min_by_key(|&c| next[c]).unwrap();
            let at = pacer.reserve(next[client], quantum).max(next[client]);
            order.push(client);
            next[client] = at + MS;
        }
        for turn in order.chunks(3).skip(1) {
            let mut seen = turn.to_vec();
            seen.sort_unstable();
            assert_eq!(seen, vec![0, 1, 2], "{order:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_shaped_body_yields_all_bytes_at_the_capped_rate() {
        let content = Bytes::from((0..200_000u32).map(|i| i as u8).collect::<Vec<_>>());
        let inner = axum::body::Body::from(content.clone());
        let pacer = SharedPacer::new("100kB/s".parse().unwrap());
        let mut body = ShapedBody::new(inner, pacer);
        assert_eq!(body.size_hint().exact(), Some(200_000));
        let started = Instant::now();
        let mut got = Vec::new();
        while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
        {
            let data = frame.unwrap().into_data().unwrap();
            assert!(data.len() <= 4096);
            got.extend_from_slice(&data);
        }
        assert_eq!(got, content);
        assert!(body.is_end_stream());
        // 200 kB at 100 kB/s, less the two quanta that may go at once.
        let took = started.elapsed();
        let least = Duration::from_secs_f64((200_000.0 - 2.0 * 4096.0) / 100_000.0);
        assert!(took >= least, "{took:?}");
        assert!(took <= Duration::from_secs(2), "{took:?}");
    }
}
