//! In-memory copies of offered firmware files for the HTTP server.
//!
//! Owns: loading a file once per offer, the server-wide memory budget, and a body that hands out
//! zero-copy slices of the copy. A rollout sends the same file to hundreds of devices at once;
//! from memory each frame is a reference-counted slice instead of a read through tokio's
//! blocking pool plus two buffer copies (measured: see `benches/http.rs`).
//! Files over the limit stream from disk through one read-only descriptor per offer, shared by
//! all its downloads (positional reads, `DiskBody`): 10,000 downloads then cost 10,000 sockets,
//! not 20,000 descriptors, and each holds at most one chunk in memory.
//! Must never: decide HTTP semantics (tower-http's `ServeFile` does; the caller only swaps the
//! body bytes when ServeFile's status, length and range agree with the copy), or exceed the
//! budget (larger files stream from disk as before).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::sync::OnceCell;

/// Files larger than this always stream from disk.
pub(crate) const MAX_CACHED_FILE_BYTES: u64 = 64 * 1024 * 1024;
/// Memory all cached copies of one server may use together.
pub(crate) const CACHE_BUDGET_BYTES: u64 = 512 * 1024 * 1024;

/// Bytes reserved by cached copies, shared by all offers of one server.
#[derive(Debug)]
pub(crate) struct Budget {
    used: AtomicU64,
    limit: u64,
}

impl Budget {
    pub(crate) fn new(limit: u64) -> Budget {
        Budget {
            used: AtomicU64::new(0),
            limit,
        }
    }

    pub(crate) fn try_reserve(&self, bytes: u64) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|total| *total <= self.limit)
            })
            .is_ok()
    }

    pub(crate) fn release(&self, bytes: u64) {
        let _ = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                Some(used.saturating_sub(bytes))
            });
    }

    #[cfg(test)]
    fn used(&self) -> u64 {
        self.used.load(Ordering::Acquire)
    }
}

/// The in-memory copy of one offered file, loaded on first use. `None` once loading was refused
/// (too large, over budget, unreadable): then the file streams from disk.
pub(crate) struct CachedFile {
    path: PathBuf,
    slot: OnceCell<Option<Bytes>>,
    budget: Arc<Budget>,
    reserved: AtomicU64,
    /// The descriptor downloads from disk share, and the file's length, opened on first use.
    disk: OnceCell<Option<(Arc<std::fs::File>, u64)>>,
}

impl CachedFile {
    pub(crate) fn new(path: PathBuf, budget: Arc<Budget>) -> CachedFile {
        CachedFile {
            path,
            slot: OnceCell::new(),
            budget,
            reserved: AtomicU64::new(0),
            disk: OnceCell::new(),
        }
    }

    /// The file opened once for all downloads that stream it from disk, with its length;
    /// `None` when it cannot be opened (the caller then lets ServeFile open it).
    pub(crate) async fn shared_handle(&self) -> Option<(Arc<std::fs::File>, u64)> {
        self.disk
            .get_or_init(|| async {
                if !cfg!(unix) {
                    return None;
                }
                let path = self.path.clone();
                tokio::task::spawn_blocking(move || {
                    let file = std::fs::File::open(path).ok()?;
                    let len = file.metadata().ok()?.len();
                    Some((Arc::new(file), len))
                })
                .await
                .ok()
                .flatten()
            })
            .await
            .clone()
    }

    /// The file's bytes, if it is (or can now be) held in memory.
    pub(crate) async fn get(&self) -> Option<Bytes> {
        self.slot.get_or_init(|| self.load()).await.clone()
    }

    async fn load(&self) -> Option<Bytes> {
        let len = tokio::fs::metadata(&self.path).await.ok()?.len();
        if len > MAX_CACHED_FILE_BYTES || !self.budget.try_reserve(len) {
            return None;
        }
        let path = self.path.clone();
        let read = tokio::task::spawn_blocking(move || read_exact_len(&path, len)).await;
        match read {
            Ok(Some(content)) => {
                self.reserved.store(len, Ordering::Release);
                Some(content)
            }
            _ => {
                self.budget.release(len);
                None
            }
        }
    }
}

impl Drop for CachedFile {
    fn drop(&mut self) {
        self.budget.release(self.reserved.load(Ordering::Acquire));
    }
}

/// Reads the whole file if it still has the length measured before (stored files are
/// immutable; a mismatch means someone changed it, and then we do not cache it).
fn read_exact_len(path: &Path, len: u64) -> Option<Bytes> {
    let content = std::fs::read(path).ok()?;
    (content.len() as u64 == len).then(|| Bytes::from(content))
}

/// A response body that yields `rest` in slices of at most `chunk` bytes, without copying.
pub(crate) struct SliceBody {
    rest: Bytes,
    chunk: usize,
}

impl SliceBody {
    pub(crate) fn new(content: Bytes, chunk: usize) -> SliceBody {
        SliceBody {
            rest: content,
            chunk: chunk.max(1),
        }
    }
}

impl HttpBody for SliceBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.rest.is_empty() {
            return Poll::Ready(None);
        }
        let take = self.chunk.min(self.rest.len());
        let frame = self.rest.split_to(take);
        Poll::Ready(Some(Ok(Frame::data(frame))))
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.rest.len() as u64)
    }
}

/// The read size for the next chunk of a [`DiskBody`], asked before each read: the server sizes
/// it by the connections open now, so buffers shrink as a wave of downloads grows.
pub(crate) type ChunkSize = Arc<dyn Fn() -> usize + Send + Sync>;

/// A response body that reads `range` of a shared file in chunks, one positional read at a
/// time on tokio's blocking pool (as `tokio::fs` does), so a connection holds at most one chunk
/// and no descriptor of its own. Chunk memory is reserved from the server's stream budget until
/// the chunk is dropped (written to the socket); when the budget is spent a read takes only the
/// floor, so all chunks together stay below the budget plus one floor per connection, however
/// long slow clients hold their chunk.
pub(crate) struct DiskBody {
    file: Arc<std::fs::File>,
    next: u64,
    end: u64,
    chunk: ChunkSize,
    budget: Arc<Budget>,
    floor: usize,
    reading: Option<tokio::task::JoinHandle<std::io::Result<Bytes>>>,
}

impl DiskBody {
    pub(crate) fn new(
        file: Arc<std::fs::File>,
        range: std::ops::Range<usize>,
        chunk: ChunkSize,
        budget: Arc<Budget>,
        floor: usize,
    ) -> DiskBody {
        DiskBody {
            file,
            next: range.start as u64,
            end: range.end as u64,
            chunk,
            budget,
            floor: floor.max(1),
            reading: None,
        }
    }
}

/// A chunk read from disk, holding its reservation of the stream budget while it lives.
struct BudgetedChunk {
    bytes: Vec<u8>,
    budget: Arc<Budget>,
    reserved: u64,
}

impl AsRef<[u8]> for BudgetedChunk {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

impl Drop for BudgetedChunk {
    fn drop(&mut self) {
        self.budget.release(self.reserved);
    }
}

#[cfg(unix)]
fn read_at(file: &std::fs::File, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, offset)?;
    Ok(buf)
}

/// Off Unix `shared_handle` gives no handle, so no `DiskBody` is made.
#[cfg(not(unix))]
fn read_at(_file: &std::fs::File, _offset: u64, _len: usize) -> std::io::Result<Vec<u8>> {
    Err(std::io::Error::from(std::io::ErrorKind::Unsupported))
}

impl HttpBody for DiskBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Some(reading) = &mut self.reading {
            let read = match Pin::new(reading).poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(read) => read,
            };
            self.reading = None;
            return Poll::Ready(Some(match read {
                Ok(Ok(bytes)) => {
                    self.next += bytes.len() as u64;
                    Ok(Frame::data(bytes))
                }
                Ok(Err(e)) => Err(e),
                Err(e) => Err(std::io::Error::other(e)),
            }));
        }
        if self.next >= self.end {
            return Poll::Ready(None);
        }
        let left = usize::try_from(self.end - self.next).unwrap_or(usize::MAX);
        let wanted = left.min((self.chunk)().max(1));
        let (len, reserved) = if self.budget.try_reserve(wanted as u64) {
            (wanted, wanted as u64)
        } else {
            (wanted.min(self.floor), 0)
        };
        let (file, offset, budget) = (self.file.clone(), self.next, self.budget.clone());
        self.reading = Some(tokio::task::spawn_blocking(move || {
            // Made before reading so a failed read gives the reservation back too.
            let mut chunk = BudgetedChunk {
                bytes: Vec::new(),
                budget,
                reserved,
            };
            chunk.bytes = read_at(&file, offset, len)?;
            Ok(Bytes::from_owner(chunk))
        }));
        self.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.next >= self.end
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.end.saturating_sub(self.next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn files_load_once_within_the_budget_and_release_it() {
        let dir = tempfile::tempdir().unwrap();
        let small = dir.path().join("small");
        std::fs::write(&small, vec![1u8; 1000]).unwrap();
        let budget = Arc::new(Budget::new(1500));
        let first = CachedFile::new(small.clone(), budget.clone());
        assert_eq!(first.get().await.unwrap().len(), 1000);
        assert_eq!(budget.used(), 1000);
        // A second copy does not fit the remaining 500 bytes: it streams from disk.
        let second = CachedFile::new(small, budget.clone());
        assert!(second.get().await.is_none());
        drop(first);
        assert_eq!(budget.used(), 0);
    }

    #[tokio::test]
    async fn missing_files_are_not_cached() {
        let budget = Arc::new(Budget::new(CACHE_BUDGET_BYTES));
        let cached = CachedFile::new("/nonexistent/x".into(), budget.clone());
        assert!(cached.get().await.is_none());
        assert_eq!(budget.used(), 0);
    }

    #[tokio::test]
    async fn disk_bodies_read_their_range_through_one_shared_descriptor() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        let content: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &content).unwrap();
        let cached = CachedFile::new(path, Arc::new(Budget::new(0)));
        let (file, len) = cached.shared_handle().await.unwrap();
        assert_eq!(len, 100_000);
        let (again, _) = cached.shared_handle().await.unwrap();
        assert!(Arc::ptr_eq(&file, &again), "one descriptor per file");
        for range in [0..100_000, 1_000..1_001, 99_000..100_000] {
            let budget = Arc::new(Budget::new(8192));
            let mut body = DiskBody::new(
                file.clone(),
                range.clone(),
                Arc::new(|| 4096),
                budget.clone(),
                1000,
            );
            assert_eq!(body.size_hint().exact(), Some(range.len() as u64));
            let mut got = Vec::new();
            let mut held = Vec::new();
            while let Some(frame) =
                std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
            {
                let data = frame.unwrap().into_data().unwrap();
                assert!(data.len() <= 4096);
                got.extend_from_slice(&data);
                held.push(data);
            }
            assert!(got == content[range.clone()], "{range:?}");
            // Two chunks fit the budget; the rest were read at the floor while they were held.
            assert!(held.iter().skip(2).all(|c| c.len() <= 1000), "{range:?}");
            held.clear();
            assert_eq!(
                budget.used(),
                0,
                "dropped chunks give their reservation back"
            );
            assert!(body.is_end_stream());
        }
    }

    #[test]
    fn slice_body_yields_all_bytes_in_chunks() {
        let content = Bytes::from((0..10u8).collect::<Vec<_>>());
        let mut body = SliceBody::new(content.clone(), 4);
        assert_eq!(body.size_hint().exact(), Some(10));
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut got = Vec::new();
        while let Poll::Ready(Some(Ok(frame))) = Pin::new(&mut body).poll_frame(&mut cx) {
            let data = frame.into_data().unwrap();
            assert!(data.len() <= 4);
            got.extend_from_slice(&data);
        }
        assert_eq!(got, content);
        assert!(body.is_end_stream());
    }
}
