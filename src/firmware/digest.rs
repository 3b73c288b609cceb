//! One-pass hashing: reads a firmware file once and produces its size, MD5, SHA-256 and FogCloud
//! checksum, optionally copying the bytes to a sink (the store's temp file) in the same pass.
//!
//! Threading: the calling thread reads fixed-size chunks into pooled buffers and hands each chunk
//! (an `Arc`, no copy) to two named threads over bounded channels: `fw-md5` (MD5 alone, the
//! slowest digest at ~410 MiB/s) and `fw-sha256` (SHA-256 with SHA-NI plus the checksum). The
//! whole job therefore costs about one MD5 of the file. Buffers return to the pool when the last
//! holder drops them, which also bounds memory to `BUFFERS` chunks.
//! This module never decides where files live (that is `store`) and never prints.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, sync_channel};
use std::thread::{self, JoinHandle};

use md5::{Digest as _, Md5};
use sha2::Sha256;

use super::cancel::CancelToken;
use super::checksum::FogChecksum;
use super::error::{FirmwareError, IoAction};
use super::package::FirmwarePackage;

/// Default bytes per read. Large enough that per-chunk overhead (channel hops, progress calls)
/// is negligible, small enough that the pool stays a few MiB and progress moves smoothly.
pub const DEFAULT_CHUNK_SIZE: usize = 2 * 1024 * 1024;

/// Default largest file accepted as a firmware package.
pub const DEFAULT_MAX_SIZE: u64 = 8 * 1024 * 1024 * 1024;

/// Buffers in flight. Lets the reader run a few chunks ahead of the slower MD5 thread.
const BUFFERS: usize = 6;

/// Progress callback: `(bytes_done, bytes_total)`. Called on the thread that hashes, after each
/// chunk; `bytes_done` never decreases and the last call has `bytes_done == bytes_total`.
pub type Progress<'a> = &'a mut dyn FnMut(u64, u64);

/// Tuning and limits for one hashing job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashOptions {
    /// Bytes per read (at least 1).
    pub chunk_size: usize,
    /// Files larger than this fail with `FirmwareError::TooLarge`.
    pub max_size: u64,
}

impl Default for HashOptions {
    fn default() -> Self {
        Self {
            chunk_size: DEFAULT_CHUNK_SIZE,
            max_size: DEFAULT_MAX_SIZE,
        }
    }
}

/// Hashes the file at `path` with default options.
pub fn hash_file(
    path: &Path,
    progress: Progress<'_>,
    cancel: &CancelToken,
) -> Result<FirmwarePackage, FirmwareError> {
    hash_file_with(path, HashOptions::default(), progress, cancel)
}

/// Hashes the file at `path`.
pub fn hash_file_with(
    path: &Path,
    options: HashOptions,
    progress: Progress<'_>,
    cancel: &CancelToken,
) -> Result<FirmwarePackage, FirmwareError> {
    let (mut file, size_hint) = open_source(path, options.max_size)?;
    let source = Source {
        reader: &mut file,
        path,
        size_hint,
    };
    hash_stream(source, None, options, progress, cancel)
}

/// Opens a file to hash and checks its size against the limit before any byte is read.
pub(crate) fn open_source(path: &Path, max_size: u64) -> Result<(File, u64), FirmwareError> {
    let file = File::open(path).map_err(|e| FirmwareError::io(IoAction::Open, path, e))?;
    let meta = file
        .metadata()
        .map_err(|e| FirmwareError::io(IoAction::ReadMetadata, path, e))?;
    if meta.is_dir() {
        let e = io::Error::new(io::ErrorKind::IsADirectory, "is a directory");
        return Err(FirmwareError::io(IoAction::Read, path, e));
    }
    if meta.len() > max_size {
        return Err(FirmwareError::TooLarge {
            path: path.to_path_buf(),
            limit: max_size,
        });
    }
    Ok((file, meta.len()))
}

/// Where the bytes come from; `path` is only for messages and the package's file name.
pub(crate) struct Source<'a> {
    pub reader: &'a mut dyn Read,
    pub path: &'a Path,
    /// Expected size, for progress; the real size is what the reader yields.
    pub size_hint: u64,
}

/// Where a copy of the bytes goes; `path` is only for messages.
pub(crate) struct Sink<'a> {
    pub writer: &'a mut dyn Write,
    pub path: &'a Path,
}

/// Reads `source` once, feeding both hashing threads and the optional sink.
pub(crate) fn hash_stream(
    source: Source<'_>,
    sink: Option<Sink<'_>>,
    options: HashOptions,
    progress: Progress<'_>,
    cancel: &CancelToken,
) -> Result<FirmwarePackage, FirmwareError> {
    let file_name = source
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (md5_tx, md5_rx) = sync_channel::<Arc<Chunk>>(BUFFERS);
    let (sha_tx, sha_rx) = sync_channel::<Arc<Chunk>>(BUFFERS);
    let md5_thread = spawn_named("fw-md5", move || md5_worker(md5_rx))?;
    let sha_thread = match spawn_named("fw-sha256", move || sha_worker(sha_rx)) {
        Ok(handle) => handle,
        Err(e) => {
            drop(md5_tx);
            let _ = md5_thread.join();
            return Err(e);
        }
    };
    let fed = feed(source, sink, options, progress, cancel, [md5_tx, sha_tx]);
    // The senders are gone now, so both threads finish their queue and return.
    let md5 = join(md5_thread);
    let sha = join(sha_thread);
    let size = fed?;
    let md5 = md5?;
    let (sha256, checksum) = sha?;
    Ok(FirmwarePackage {
        file_name,
        size,
        md5,
        sha256,
        checksum: checksum.to_hex(),
    })
}

/// The reader loop. Returns the number of bytes read; dropping `workers` on return is what
/// tells the hashing threads that the stream ended.
fn feed(
    source: Source<'_>,
    mut sink: Option<Sink<'_>>,
    options: HashOptions,
    progress: Progress<'_>,
    cancel: &CancelToken,
    workers: [SyncSender<Arc<Chunk>>; 2],
) -> Result<u64, FirmwareError> {
    let mut pool = Pool::new(options.chunk_size.max(1));
    let mut done: u64 = 0;
    loop {
        if cancel.is_canceled() {
            return Err(FirmwareError::Canceled);
        }
        let mut buf = pool.take();
        let len = fill(source.reader, &mut buf)
            .map_err(|e| FirmwareError::io(IoAction::Read, source.path, e))?;
        if len == 0 {
            break;
        }
        done = done.saturating_add(len as u64);
        if done > options.max_size {
            return Err(FirmwareError::TooLarge {
                path: source.path.to_path_buf(),
                limit: options.max_size,
            });
        }
        let chunk = Arc::new(pool.chunk(buf, len));
        for worker in &workers {
            worker
                .send(Arc::clone(&chunk))
                .map_err(|_| FirmwareError::Worker("a hashing thread stopped early".into()))?;
        }
        if let Some(sink) = sink.as_mut() {
            sink.writer
                .write_all(chunk.bytes())
                .map_err(|e| FirmwareError::io(IoAction::Write, sink.path, e))?;
        }
        drop(chunk);
        progress(done, done.max(source.size_hint));
        if len < options.chunk_size {
            // A short fill only happens at end of file; skip the extra empty read.
            break;
        }
    }
    if done != source.size_hint {
        // The file changed size while we read it: end the progress at what we really hashed.
        progress(done, done);
    } else if done == 0 {
        progress(0, 0);
    }
    Ok(done)
}

/// Reads until `buf` is full or the reader is at end of file.
fn fill(reader: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while let Some(rest) = buf.get_mut(filled..) {
        if rest.is_empty() {
            break;
        }
        match reader.read(rest) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled.min(buf.len()))
}

fn md5_worker(rx: Receiver<Arc<Chunk>>) -> String {
    let mut md5 = Md5::new();
    for chunk in rx {
        md5.update(chunk.bytes());
    }
    hex::encode(md5.finalize())
}

fn sha_worker(rx: Receiver<Arc<Chunk>>) -> (String, FogChecksum) {
    let mut sha = Sha256::new();
    let mut checksum = FogChecksum::new();
    for chunk in rx {
        sha.update(chunk.bytes());
        checksum.update(chunk.bytes());
    }
    (hex::encode(sha.finalize()), checksum)
}

fn spawn_named<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<JoinHandle<T>, FirmwareError> {
    thread::Builder::new()
        .name(name.to_owned())
        .spawn(f)
        .map_err(|e| FirmwareError::Worker(format!("cannot start {name}: {e}")))
}

fn join<T>(handle: JoinHandle<T>) -> Result<T, FirmwareError> {
    let name = handle
        .thread()
        .name()
        .unwrap_or("hashing thread")
        .to_owned();
    handle
        .join()
        .map_err(|_| FirmwareError::Worker(format!("{name} panicked")))
}

/// A filled buffer shared by the reader and both hashing threads. Dropping the last reference
/// gives the allocation back to the pool instead of freeing it.
struct Chunk {
    data: Vec<u8>,
    len: usize,
    home: SyncSender<Vec<u8>>,
}

impl Chunk {
    fn bytes(&self) -> &[u8] {
        self.data.get(..self.len).unwrap_or(&self.data)
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        // The pool's channel holds all BUFFERS buffers, so this never finds it full; when the
        // reader is already gone the buffer is simply freed.
        let _ = self.home.try_send(std::mem::take(&mut self.data));
    }
}

/// At most `BUFFERS` chunk buffers, allocated lazily so a tiny file costs one buffer.
struct Pool {
    chunk_size: usize,
    allocated: usize,
    home: SyncSender<Vec<u8>>,
    returned: Receiver<Vec<u8>>,
}

impl Pool {
    fn new(chunk_size: usize) -> Self {
        let (home, returned) = sync_channel(BUFFERS);
        Self {
            chunk_size,
            allocated: 0,
            home,
            returned,
        }
    }

    /// A free buffer: a returned one, a new one while under the cap, else waits for a return.
    fn take(&mut self) -> Vec<u8> {
        match self.returned.try_recv() {
            Ok(buf) => return buf,
            Err(TryRecvError::Empty | TryRecvError::Disconnected) => {}
        }
        if self.allocated < BUFFERS {
            self.allocated += 1;
            return vec![0; self.chunk_size];
        }
        // `self.home` keeps the channel connected, so this only waits for a hashing thread to
        // release a chunk; the threads never block on us while holding one.
        self.returned
            .recv()
            .unwrap_or_else(|_| vec![0; self.chunk_size])
    }

    fn chunk(&self, data: Vec<u8>, len: usize) -> Chunk {
        Chunk {
            data,
            len,
            home: self.home.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    const MD5_EMPTY: &str = "d41d8cd98f00b204e9800998ecf8427e";
    const SHA_EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn write_temp(dir: &tempfile::TempDir, name: &str, data: &[u8]) -> std::path::PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, data).unwrap();
        path
    }

    fn hash_bytes(data: &[u8], options: HashOptions) -> FirmwarePackage {
        let dir = tempfile::tempdir().unwrap();
        let path = write_temp(&dir, "fw.bin", data);
        hash_file_with(&path, options, &mut |_, _| {}, &CancelToken::new()).unwrap()
    }

    fn small_chunks() -> HashOptions {
        HashOptions {
            chunk_size: 4096,
            ..HashOptions::default()
        }
    }

    #[test]
    fn empty_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_temp(&dir, "empty.bin", b"");
        let mut calls = Vec::new();
        let p = hash_file(&path, &mut |d, t| calls.push((d, t)), &CancelToken::new()).unwrap();
        assert_eq!(p.file_name, "empty.bin");
        assert_eq!(p.size, 0);
        assert_eq!(p.md5, MD5_EMPTY);
        assert_eq!(p.sha256, SHA_EMPTY);
        assert_eq!(p.checksum, "00000000");
        assert_eq!(calls.last(), Some(&(0, 0)));
    }

    #[test]
    fn one_byte() {
        let p = hash_bytes(b"a", HashOptions::default());
        assert_eq!(p.size, 1);
        assert_eq!(p.md5, "0cc175b9c0f1b6a831c399e269772661");
        assert_eq!(
            p.sha256,
            "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb"
        );
        assert_eq!(p.checksum, "61000000");
    }

    #[test]
    fn abc_vectors() {
        let p = hash_bytes(b"abc", HashOptions::default());
        assert_eq!(p.md5, "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(
            p.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        // 97 + 98 + 99 = 294 = 0x126
        assert_eq!(p.checksum, "26010000");
    }

    #[test]
    fn fogcloud_example() {
        let p = hash_bytes(&[1, 2, 3], HashOptions::default());
        assert_eq!(p.size, 3);
        assert_eq!(p.checksum, "06000000");
    }

    #[test]
    fn million_a_over_many_uneven_chunks() {
        // 1_000_000 is not a multiple of 4096: the last chunk is short.
        let data = vec![b'a'; 1_000_000];
        let dir = tempfile::tempdir().unwrap();
        let path = write_temp(&dir, "a.bin", &data);
        let mut calls = Vec::new();
        let p = hash_file_with(
            &path,
            small_chunks(),
            &mut |d, t| calls.push((d, t)),
            &CancelToken::new(),
        )
        .unwrap();
        assert_eq!(p.size, 1_000_000);
        assert_eq!(p.md5, "7707d6ae4e027c70eea2a935c2296f21");
        assert_eq!(
            p.sha256,
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"
        );
        // 97 * 1e6 = 97_000_000 = 0x05c8_1a40
        assert_eq!(p.checksum, "401ac805");
        assert!(calls.len() >= 1_000_000 / 4096);
        assert!(
            calls.windows(2).all(|w| w[0].0 <= w[1].0),
            "progress went backwards"
        );
        assert!(calls.iter().all(|&(d, t)| d <= t && t == 1_000_000));
        assert_eq!(calls.last(), Some(&(1_000_000, 1_000_000)));
    }

    #[test]
    fn chunk_multiple_and_odd_sizes_match_one_shot_digests() {
        let data: Vec<u8> = (0..3 * 4096u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8)
            .collect();
        for len in [4095, 4096, 4097, 2 * 4096, 3 * 4096] {
            let slice = &data[..len];
            let p = hash_bytes(slice, small_chunks());
            assert_eq!(p.size, len as u64);
            assert_eq!(p.md5, hex::encode(Md5::digest(slice)), "len {len}");
            assert_eq!(p.sha256, hex::encode(Sha256::digest(slice)), "len {len}");
            assert_eq!(
                p.checksum,
                crate::firmware::fog_checksum(slice),
                "len {len}"
            );
        }
    }

    #[test]
    fn canceled_midway() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_temp(&dir, "big.bin", &vec![7u8; 100_000]);
        let cancel = CancelToken::new();
        let mut calls = 0;
        let result = hash_file_with(
            &path,
            small_chunks(),
            &mut |_, _| {
                calls += 1;
                cancel.cancel();
            },
            &cancel,
        );
        assert!(matches!(result, Err(FirmwareError::Canceled)), "{result:?}");
        assert_eq!(calls, 1);
    }

    #[test]
    fn canceled_before_start() {
        let cancel = CancelToken::new();
        cancel.cancel();
        let dir = tempfile::tempdir().unwrap();
        let path = write_temp(&dir, "fw.bin", b"abc");
        let result = hash_file(&path, &mut |_, _| {}, &cancel);
        assert!(matches!(result, Err(FirmwareError::Canceled)), "{result:?}");
    }

    #[test]
    fn too_large_before_reading() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_temp(&dir, "fw.bin", &[0; 11]);
        let options = HashOptions {
            max_size: 10,
            ..HashOptions::default()
        };
        let err = hash_file_with(&path, options, &mut |_, _| {}, &CancelToken::new()).unwrap_err();
        assert!(
            matches!(err, FirmwareError::TooLarge { limit: 10, .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("fw.bin"));
    }

    #[test]
    fn too_large_while_reading() {
        // A source that yields more than it announced (a growing file) is stopped at the limit.
        let mut reader = Cursor::new(vec![0u8; 100]);
        let source = Source {
            reader: &mut reader,
            path: Path::new("growing.bin"),
            size_hint: 0,
        };
        let options = HashOptions {
            chunk_size: 16,
            max_size: 50,
        };
        let err =
            hash_stream(source, None, options, &mut |_, _| {}, &CancelToken::new()).unwrap_err();
        assert!(
            matches!(err, FirmwareError::TooLarge { limit: 50, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn missing_file_names_the_path() {
        let err = hash_file(
            Path::new("/nonexistent/ota/fw.bin"),
            &mut |_, _| {},
            &CancelToken::new(),
        )
        .unwrap_err();
        assert!(matches!(err, FirmwareError::Io { .. }), "{err:?}");
        assert!(err.to_string().contains("/nonexistent/ota/fw.bin"), "{err}");
    }

    #[test]
    fn directory_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let err = hash_file(dir.path(), &mut |_, _| {}, &CancelToken::new()).unwrap_err();
        assert!(matches!(err, FirmwareError::Io { .. }), "{err:?}");
    }

    struct FailingReader {
        left: usize,
    }

    impl Read for FailingReader {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.left == 0 {
                return Err(io::Error::other("device unplugged"));
            }
            let n = buf.len().min(self.left);
            buf[..n].fill(1);
            self.left -= n;
            Ok(n)
        }
    }

    #[test]
    fn read_error_midway() {
        let mut reader = FailingReader { left: 10_000 };
        let source = Source {
            reader: &mut reader,
            path: Path::new("usb/fw.bin"),
            size_hint: 20_000,
        };
        let err = hash_stream(
            source,
            None,
            small_chunks(),
            &mut |_, _| {},
            &CancelToken::new(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("usb/fw.bin"), "{err}");
        assert!(err.to_string().contains("device unplugged"), "{err}");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn full_disk_while_copying() {
        let mut reader = Cursor::new(vec![5u8; 10_000]);
        let mut full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let source = Source {
            reader: &mut reader,
            path: Path::new("fw.bin"),
            size_hint: 10_000,
        };
        let sink = Sink {
            writer: &mut full,
            path: Path::new("/dev/full"),
        };
        let err = hash_stream(
            source,
            Some(sink),
            small_chunks(),
            &mut |_, _| {},
            &CancelToken::new(),
        )
        .unwrap_err();
        match &err {
            FirmwareError::Io { action, cause, .. } => {
                assert_eq!(*action, IoAction::Write);
                assert_eq!(cause.kind(), io::ErrorKind::StorageFull);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(err.to_string().contains("/dev/full"), "{err}");
    }

    #[test]
    fn sink_receives_an_exact_copy() {
        let data: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
        let mut reader = Cursor::new(data.clone());
        let mut copy = Vec::new();
        let source = Source {
            reader: &mut reader,
            path: Path::new("fw.bin"),
            size_hint: data.len() as u64,
        };
        let sink = Sink {
            writer: &mut copy,
            path: Path::new("copy"),
        };
        let p = hash_stream(
            source,
            Some(sink),
            small_chunks(),
            &mut |_, _| {},
            &CancelToken::new(),
        )
        .unwrap();
        assert_eq!(copy, data);
        assert_eq!(p.sha256, hex::encode(Sha256::digest(&data)));
    }
}
