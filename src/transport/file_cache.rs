//! In-memory copies of offered firmware files for the HTTP server.
//!
//! Owns: loading a file once per offer, the server-wide memory budget, and a body that hands out
//! zero-copy slices of the copy. A rollout sends the same file to hundreds of devices at once;
//! from memory each frame is a reference-counted slice instead of a read through tokio's
//! blocking pool plus two buffer copies (measured: see `benches/http.rs`).
//! Must never: decide HTTP semantics (tower-http's `ServeFile` does; the caller only swaps the
//! body bytes when ServeFile's status, length and range agree with the copy), or exceed the
//! budget (larger files stream from disk as before).

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

    fn try_reserve(&self, bytes: u64) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|total| *total <= self.limit)
            })
            .is_ok()
    }

    fn release(&self, bytes: u64) {
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
}

impl CachedFile {
    pub(crate) fn new(path: PathBuf, budget: Arc<Budget>) -> CachedFile {
        CachedFile {
            path,
            slot: OnceCell::new(),
            budget,
            reserved: AtomicU64::new(0),
        }
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
