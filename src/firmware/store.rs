//! `FirmwareStore`: a content-addressed directory holding an immutable copy of every imported
//! firmware file as `<dir>/<sha256>` (read-only, 0444), with its `FirmwarePackage` beside it as
//! `<sha256>.json`. Import copies and hashes in one pass into a temp file in the same directory,
//! fsyncs and renames it without clobbering, so a file under a digest name is always complete
//! and editing or deleting the original afterwards changes nothing.
//! Never accepts a name that is not 64 lowercase hex digits (no path traversal), never
//! overwrites a stored file, and never leaves a temp file behind on error or cancel. Temp files
//! a crash left behind (`.import-*`, untouched for a minute and not locked by a live import) are
//! swept before each import, so a full disk is not kept full by a dead import.
//! Also owns `default_data_dir`, the root of everything ota-console keeps on disk.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tempfile::{NamedTempFile, TempPath};

use super::cancel::CancelToken;
use super::digest::{self, HashOptions, Progress, Sink, Source};
use super::error::{FirmwareError, IoAction};
use super::package::{FirmwarePackage, is_sha256_hex};

/// Largest metadata file we read back; ours are a few hundred bytes.
const MAX_METADATA_BYTES: u64 = 64 * 1024;

/// Prefix of in-progress imports; never a valid digest name, so never served or listed.
const TEMP_PREFIX: &str = ".import-";

/// A temp file untouched for this long (and not locked) was left by a crash: a live import
/// writes to its temp file continuously and renames it within moments of the last write.
const STALE_TEMP_AGE: Duration = Duration::from_secs(60);

/// A package in the store: its digests and the path of its immutable copy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredPackage {
    pub package: FirmwarePackage,
    /// `<store dir>/<sha256>`.
    pub path: PathBuf,
}

/// A content-addressed firmware directory. Cheap to clone; holds no open files.
#[derive(Debug, Clone)]
pub struct FirmwareStore {
    dir: PathBuf,
    options: HashOptions,
}

impl FirmwareStore {
    /// A store rooted at `dir`. Nothing is touched on disk until the first import.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            options: HashOptions::default(),
        }
    }

    /// The store inside ota-console's data directory: `<data_dir>/firmware`.
    pub fn in_data_dir(data_dir: &Path) -> Self {
        Self::new(data_dir.join("firmware"))
    }

    /// Overrides chunk size and the size limit (default 8 GiB).
    pub fn with_options(mut self, options: HashOptions) -> Self {
        self.options = options;
        self
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Copies `src` into the store while hashing it, in one read of `src`.
    ///
    /// Importing the same content twice keeps the first copy (and its metadata) and returns the
    /// same path; the returned package carries `src`'s file name.
    pub fn import(
        &self,
        src: &Path,
        progress: Progress<'_>,
        cancel: &CancelToken,
    ) -> Result<StoredPackage, FirmwareError> {
        let (mut file, size_hint) = digest::open_source(src, self.options.max_size)?;
        fs::create_dir_all(&self.dir)
            .map_err(|e| FirmwareError::io(IoAction::CreateStoreDirectory, &self.dir, e))?;
        if let Err(e) = self.remove_stale_temps() {
            // Only space is lost; the import itself may still fit.
            tracing::warn!("{}", crate::i18n::tr!("firmware.sweep_temps", why = e));
        }
        let mut temp = self.temp_file()?;
        let temp_path = temp.path().to_path_buf();
        let source = Source {
            reader: &mut file,
            path: src,
            size_hint,
        };
        let sink = Sink {
            writer: temp.as_file_mut(),
            path: &temp_path,
        };
        // Any error from here on drops `temp`, which deletes it.
        let package = digest::hash_stream(source, Some(sink), self.options, progress, cancel)
            .map_err(|e| self.sink_error(e, &temp_path))?;
        self.seal(temp.as_file())?;
        let wrote_metadata = self.write_metadata_if_missing(&package)?;
        let path = self.data_path(&package.sha256);
        if let Err(e) = self.persist(temp, &path) {
            if wrote_metadata && !path.exists() {
                // Metadata without its data file would describe a package that is not there.
                let _ = fs::remove_file(self.metadata_path(&package.sha256));
            }
            return Err(e);
        }
        Ok(StoredPackage { package, path })
    }

    /// Deletes temp files a crashed import left behind: those untouched for a minute that no
    /// live import (of any process) holds locked. Returns how many were removed.
    pub fn remove_stale_temps(&self) -> Result<usize, FirmwareError> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(FirmwareError::io(IoAction::List, &self.dir, e)),
        };
        let mut removed = 0;
        for entry in entries {
            let entry = entry.map_err(|e| FirmwareError::io(IoAction::List, &self.dir, e))?;
            let is_temp = entry
                .file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(TEMP_PREFIX));
            if !is_temp {
                continue;
            }
            let path = entry.path();
            // Held open (and locked) until the file is gone, so no import can adopt it meanwhile.
            let Some(_lock) = abandoned(&path) else {
                continue;
            };
            match fs::remove_file(&path) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(self.write_error(e)),
            }
        }
        Ok(removed)
    }

    /// The path a digest is stored under (whether or not it is stored).
    pub fn path_of(&self, sha256: &str) -> Result<PathBuf, FirmwareError> {
        check_name(sha256)?;
        Ok(self.data_path(sha256))
    }

    /// Whether a package with this digest is stored.
    pub fn contains(&self, sha256: &str) -> Result<bool, FirmwareError> {
        let path = self.path_of(sha256)?;
        Ok(path.is_file())
    }

    /// Opens a stored package for reading.
    pub fn open(&self, sha256: &str) -> Result<File, FirmwareError> {
        let path = self.path_of(sha256)?;
        File::open(&path).map_err(|e| not_stored_or_io(e, sha256, IoAction::Open, &path))
    }

    /// The package stored under `sha256`, from its metadata (no re-hash). A stored file whose
    /// metadata was lost is re-hashed and named after its digest.
    pub fn get(&self, sha256: &str) -> Result<StoredPackage, FirmwareError> {
        let path = self.path_of(sha256)?;
        fs::metadata(&path)
            .map_err(|e| not_stored_or_io(e, sha256, IoAction::ReadMetadata, &path))?;
        match self.read_metadata(sha256)? {
            Some(package) => Ok(StoredPackage { package, path }),
            None => self.verify(sha256, &mut |_, _| {}, &CancelToken::new()),
        }
    }

    /// Re-hashes a stored file; `FirmwareError::Corrupt` when it no longer matches its name.
    pub fn verify(
        &self,
        sha256: &str,
        progress: Progress<'_>,
        cancel: &CancelToken,
    ) -> Result<StoredPackage, FirmwareError> {
        let path = self.path_of(sha256)?;
        let (mut file, size_hint) = match digest::open_source(&path, self.options.max_size) {
            Err(FirmwareError::Io { cause, action, .. })
                if cause.kind() == io::ErrorKind::NotFound =>
            {
                return Err(not_stored_or_io(cause, sha256, action, &path));
            }
            other => other?,
        };
        let source = Source {
            reader: &mut file,
            path: &path,
            size_hint,
        };
        let mut package = digest::hash_stream(source, None, self.options, progress, cancel)?;
        if package.sha256 != sha256 {
            return Err(FirmwareError::Corrupt {
                expected: sha256.to_owned(),
                actual: package.sha256,
            });
        }
        package.file_name = match self.read_metadata(sha256) {
            Ok(Some(meta)) => meta.file_name,
            _ => sha256.to_owned(),
        };
        Ok(StoredPackage { package, path })
    }

    /// Every stored package, sorted by file name then digest. Temp files and stray names are
    /// skipped.
    pub fn list(&self) -> Result<Vec<StoredPackage>, FirmwareError> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(FirmwareError::io(IoAction::List, &self.dir, e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| FirmwareError::io(IoAction::List, &self.dir, e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str().filter(|n| is_sha256_hex(n)) else {
                continue;
            };
            out.push(self.get(name)?);
        }
        out.sort_by(|a, b| {
            (&a.package.file_name, &a.package.sha256)
                .cmp(&(&b.package.file_name, &b.package.sha256))
        });
        Ok(out)
    }

    fn data_path(&self, sha256: &str) -> PathBuf {
        self.dir.join(sha256)
    }

    fn metadata_path(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}.json"))
    }

    /// A new temp file (deleted when dropped), locked so that no sweep of another process takes
    /// it for a crash's. Created here rather than by `tempfile::Builder`, whose errors carry the
    /// random temp name instead of the plain OS error.
    fn temp_file(&self) -> Result<NamedTempFile, FirmwareError> {
        let name = format!("{TEMP_PREFIX}{}", uuid::Uuid::new_v4().simple());
        let path = self.dir.join(name);
        let mut options = File::options();
        options.read(true).write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(&path).map_err(|e| self.write_error(e))?;
        // Best effort: where locks are unsupported, the age rule alone protects the file.
        let _ = try_lock(&file);
        match TempPath::try_from_path(&path) {
            Ok(temp_path) => Ok(NamedTempFile::from_parts(file, temp_path)),
            Err(e) => {
                // Only when the working directory is gone (relative store path).
                let _ = fs::remove_file(&path);
                Err(FirmwareError::io(IoAction::Resolve, path, e))
            }
        }
    }

    /// Writing into the store failed: the message names the store, not a temp file's name.
    fn write_error(&self, cause: io::Error) -> FirmwareError {
        FirmwareError::StoreWrite {
            dir: self.dir.clone(),
            cause,
        }
    }

    /// A failed write to the temp file is a store failure; read errors stay about the source.
    fn sink_error(&self, e: FirmwareError, temp_path: &Path) -> FirmwareError {
        match e {
            FirmwareError::Io { path, cause, .. } if path == temp_path => self.write_error(cause),
            other => other,
        }
    }

    /// Flushes a finished temp file to disk and makes it read-only before it gets its final
    /// name.
    fn seal(&self, file: &File) -> Result<(), FirmwareError> {
        file.sync_all().map_err(|e| self.write_error(e))?;
        read_only(file)
            .and_then(|p| file.set_permissions(p))
            .map_err(|e| self.write_error(e))
    }

    /// Renames the sealed temp file to `path` unless something is already there (an earlier
    /// import of the same bytes, possibly a concurrent one): then the temp file is dropped.
    fn persist(&self, temp: NamedTempFile, path: &Path) -> Result<(), FirmwareError> {
        if path.exists() {
            return Ok(());
        }
        match temp.persist_noclobber(path) {
            Ok(_) => {}
            Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(self.write_error(e.error)),
        }
        sync_dir(&self.dir).map_err(|e| self.write_error(e))
    }

    /// Written before the data file, so a data file always has its metadata; the first import's
    /// metadata wins (same digests; only the file name could differ). `true` when written now.
    fn write_metadata_if_missing(&self, package: &FirmwarePackage) -> Result<bool, FirmwareError> {
        let path = self.metadata_path(&package.sha256);
        if path.exists() {
            return Ok(false);
        }
        let json = serde_json::to_vec_pretty(package).map_err(|e| FirmwareError::BadMetadata {
            path: path.clone(),
            cause: e,
        })?;
        let mut temp = self.temp_file()?;
        temp.as_file_mut()
            .write_all(&json)
            .map_err(|e| self.write_error(e))?;
        self.seal(temp.as_file())?;
        self.persist(temp, &path)?;
        Ok(true)
    }

    fn read_metadata(&self, sha256: &str) -> Result<Option<FirmwarePackage>, FirmwareError> {
        let path = self.metadata_path(sha256);
        let mut text = String::new();
        match File::open(&path) {
            Ok(f) => f
                .take(MAX_METADATA_BYTES)
                .read_to_string(&mut text)
                .map_err(|e| FirmwareError::io(IoAction::Read, &path, e))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(FirmwareError::io(IoAction::Open, &path, e)),
        };
        let package: FirmwarePackage =
            serde_json::from_str(&text).map_err(|e| FirmwareError::BadMetadata {
                path: path.clone(),
                cause: e,
            })?;
        if package.sha256 != sha256 {
            let e = <serde_json::Error as serde::de::Error>::custom(format!(
                "it describes {} instead",
                package.sha256
            ));
            return Err(FirmwareError::BadMetadata { path, cause: e });
        }
        Ok(Some(package))
    }
}

/// The temp file at `path`, opened and locked, when it was left by a crash: untouched for
/// `STALE_TEMP_AGE` and not locked by a live import. `None` when in use or unknowable.
fn abandoned(path: &Path) -> Option<File> {
    let file = File::open(path).ok()?;
    let modified = file.metadata().and_then(|m| m.modified()).ok()?;
    let idle = SystemTime::now().duration_since(modified).ok()?;
    if idle < STALE_TEMP_AGE {
        return None;
    }
    match try_lock(&file) {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
        // Locked now, or locks unsupported here: the age rule decides.
        _ => Some(file),
    }
}

/// An exclusive advisory lock, released when the file is closed (also by a crash).
fn try_lock(file: &File) -> io::Result<()> {
    #[cfg(unix)]
    {
        rustix::fs::flock(file, rustix::fs::FlockOperation::NonBlockingLockExclusive)
            .map_err(io::Error::from)
    }
    #[cfg(not(unix))]
    {
        let _ = file;
        Ok(())
    }
}

fn read_only(file: &File) -> io::Result<fs::Permissions> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = file;
        Ok(fs::Permissions::from_mode(0o444))
    }
    #[cfg(not(unix))]
    {
        let mut p = file.metadata()?.permissions();
        p.set_readonly(true);
        Ok(p)
    }
}

/// Makes a rename durable: on Linux the new directory entry survives a crash only once the
/// directory itself is synced.
fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir).and_then(|d| d.sync_all())
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

fn check_name(sha256: &str) -> Result<(), FirmwareError> {
    if is_sha256_hex(sha256) {
        Ok(())
    } else {
        Err(FirmwareError::BadDigest(sha256.to_owned()))
    }
}

fn not_stored_or_io(e: io::Error, sha256: &str, action: IoAction, path: &Path) -> FirmwareError {
    if e.kind() == io::ErrorKind::NotFound {
        FirmwareError::NotStored {
            sha256: sha256.to_owned(),
        }
    } else {
        FirmwareError::io(action, path, e)
    }
}

/// Where ota-console keeps its data: `$OTA_CONSOLE_DATA_DIR`, else `$XDG_DATA_HOME/ota-console`,
/// else `$HOME/.local/share/ota-console`, else `./ota-console-data` (no home at all).
pub fn default_data_dir() -> PathBuf {
    data_dir_from(|name| std::env::var_os(name))
}

fn data_dir_from(var: impl Fn(&str) -> Option<OsString>) -> PathBuf {
    // Empty values count as unset; a relative XDG_DATA_HOME is invalid per the XDG spec.
    let set = |name: &str| var(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = set("OTA_CONSOLE_DATA_DIR") {
        return dir;
    }
    if let Some(xdg) = set("XDG_DATA_HOME").filter(|p| p.is_absolute()) {
        return xdg.join("ota-console");
    }
    match set("HOME") {
        Some(home) => home.join(".local/share/ota-console"),
        None => PathBuf::from("ota-console-data"),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::firmware::digest::hash_file;

    const ABC_SHA: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    struct Fixture {
        _root: tempfile::TempDir,
        src_dir: PathBuf,
        store: FirmwareStore,
    }

    fn fixture() -> Fixture {
        let root = tempfile::tempdir().unwrap();
        let src_dir = root.path().join("src");
        fs::create_dir(&src_dir).unwrap();
        let store = FirmwareStore::new(root.path().join("store")).with_options(HashOptions {
            chunk_size: 4096,
            ..HashOptions::default()
        });
        Fixture {
            _root: root,
            src_dir,
            store,
        }
    }

    impl Fixture {
        fn source(&self, name: &str, data: &[u8]) -> PathBuf {
            let path = self.src_dir.join(name);
            fs::write(&path, data).unwrap();
            path
        }

        fn import(&self, path: &Path) -> Result<StoredPackage, FirmwareError> {
            self.store.import(path, &mut |_, _| {}, &CancelToken::new())
        }

        fn store_entries(&self) -> Vec<String> {
            let mut names: Vec<String> = fs::read_dir(self.store.dir())
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        }
    }

    fn data(len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| (i.wrapping_mul(31) ^ (i >> 9)) as u8)
            .collect()
    }

    #[test]
    fn import_copies_under_the_sha256_read_only() {
        let fx = fixture();
        let bytes = data(10_000);
        let src = fx.source("fw-1.2.bin", &bytes);
        let mut last = (0, 0);
        let stored = fx
            .store
            .import(&src, &mut |d, t| last = (d, t), &CancelToken::new())
            .unwrap();
        let expected = hash_file(&src, &mut |_, _| {}, &CancelToken::new()).unwrap();
        assert_eq!(stored.package, expected);
        assert_eq!(last, (10_000, 10_000));
        assert_eq!(stored.path, fx.store.dir().join(&expected.sha256));
        assert_eq!(fs::read(&stored.path).unwrap(), bytes);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&stored.path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o444);
        }
        // Only the data file and its metadata: no temp file left behind.
        let sha = &expected.sha256;
        assert_eq!(fx.store_entries(), vec![sha.clone(), format!("{sha}.json")]);
        assert_eq!(fx.store.get(sha).unwrap(), stored);
        assert!(fx.store.contains(sha).unwrap());
    }

    #[test]
    fn import_is_idempotent() {
        let fx = fixture();
        let first = fx.import(&fx.source("a.bin", b"abc")).unwrap();
        let second = fx.import(&fx.source("b.bin", b"abc")).unwrap();
        assert_eq!(first.path, second.path);
        assert_eq!(first.package.sha256, ABC_SHA);
        assert_eq!(second.package.file_name, "b.bin");
        // The first import's metadata is kept.
        assert_eq!(fx.store.get(ABC_SHA).unwrap().package.file_name, "a.bin");
        assert_eq!(
            fx.store_entries(),
            vec![ABC_SHA.to_owned(), format!("{ABC_SHA}.json")]
        );
    }

    #[test]
    fn editing_or_deleting_the_original_leaves_the_copy_intact() {
        let fx = fixture();
        let bytes = data(9_000);
        let src = fx.source("fw.bin", &bytes);
        let stored = fx.import(&src).unwrap();
        fs::write(&src, b"tampered").unwrap();
        assert_eq!(fs::read(&stored.path).unwrap(), bytes);
        fs::remove_file(&src).unwrap();
        let verified = fx
            .store
            .verify(&stored.package.sha256, &mut |_, _| {}, &CancelToken::new())
            .unwrap();
        assert_eq!(verified, stored.clone_with_name("fw.bin"));
        let mut read_back = Vec::new();
        fx.store
            .open(&stored.package.sha256)
            .unwrap()
            .read_to_end(&mut read_back)
            .unwrap();
        assert_eq!(read_back, bytes);
    }

    impl StoredPackage {
        fn clone_with_name(&self, name: &str) -> Self {
            let mut out = self.clone();
            out.package.file_name = name.to_owned();
            out
        }
    }

    #[test]
    fn verify_detects_a_modified_copy() {
        let fx = fixture();
        let stored = fx.import(&fx.source("fw.bin", b"abc")).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&stored.path, fs::Permissions::from_mode(0o644)).unwrap();
        }
        fs::write(&stored.path, b"abd").unwrap();
        let err = fx
            .store
            .verify(ABC_SHA, &mut |_, _| {}, &CancelToken::new())
            .unwrap_err();
        assert!(matches!(err, FirmwareError::Corrupt { .. }), "{err:?}");
    }

    #[test]
    fn unwritable_store_dir_is_a_clear_error() {
        let fx = fixture();
        // A regular file where the store's parent directory should be: fails even for root.
        let blocker = fx.src_dir.join("not-a-dir");
        fs::write(&blocker, b"").unwrap();
        let store = FirmwareStore::new(blocker.join("store"));
        let src = fx.source("fw.bin", b"abc");
        let err = store
            .import(&src, &mut |_, _| {}, &CancelToken::new())
            .unwrap_err();
        assert!(
            matches!(
                err,
                FirmwareError::Io {
                    action: IoAction::CreateStoreDirectory,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("not-a-dir/store"), "{err}");
    }

    fn age(path: &Path, by: Duration) {
        let file = File::options().write(true).open(path).unwrap();
        file.set_modified(SystemTime::now() - by).unwrap();
    }

    #[test]
    fn only_dead_temp_files_are_swept() {
        let fx = fixture();
        assert_eq!(fx.store.remove_stale_temps().unwrap(), 0, "missing dir");
        fx.import(&fx.source("fw.bin", b"abc")).unwrap();
        let dir = fx.store.dir();
        for name in [
            ".import-crashed",
            ".import-fresh",
            ".import-locked",
            "stray",
        ] {
            fs::write(dir.join(name), b"partial").unwrap();
        }
        let hours = Duration::from_secs(7200);
        for name in [".import-crashed", ".import-locked", "stray"] {
            age(&dir.join(name), hours);
        }
        // A live import of another process holds its temp file locked, however long it idles.
        let live = File::open(dir.join(".import-locked")).unwrap();
        try_lock(&live).unwrap();
        assert_eq!(fx.store.remove_stale_temps().unwrap(), 1);
        let mut expected = vec![
            ".import-fresh".to_owned(),
            ".import-locked".to_owned(),
            ABC_SHA.to_owned(),
            format!("{ABC_SHA}.json"),
            "stray".to_owned(),
        ];
        assert_eq!(fx.store_entries(), expected);
        // Its process died: the lock is gone with it.
        drop(live);
        assert_eq!(fx.store.remove_stale_temps().unwrap(), 1);
        expected.remove(1);
        assert_eq!(fx.store_entries(), expected);
    }

    #[test]
    fn an_import_locks_its_temp_file_against_sweeps() {
        let fx = fixture();
        fs::create_dir_all(fx.store.dir()).unwrap();
        let temp = fx.store.temp_file().unwrap();
        temp.as_file()
            .set_modified(SystemTime::now() - Duration::from_secs(7200))
            .unwrap();
        assert_eq!(fx.store.remove_stale_temps().unwrap(), 0);
        assert!(temp.path().exists());
        let path = temp.path().to_path_buf();
        drop(temp);
        assert!(!path.exists(), "a dropped temp file is deleted");
    }

    #[test]
    fn store_write_errors_name_the_store_and_the_os_reason_only() {
        let fx = fixture();
        // No directory to create the temp file in: the plain OS error, no temp file name.
        let err = fx.store.temp_file().unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "cannot write the firmware store {}: {}",
                fx.store.dir().display(),
                io::Error::from_raw_os_error(2)
            )
        );
        let temp_path = fx.store.dir().join(".import-x");
        let full = io::Error::from(io::ErrorKind::StorageFull);
        let err = fx.store.sink_error(
            FirmwareError::io(IoAction::Write, &temp_path, full),
            &temp_path,
        );
        assert!(matches!(err, FirmwareError::StoreWrite { .. }), "{err:?}");
        assert!(!err.to_string().contains(".import-x"), "{err}");
        // A read error stays about the source file.
        let src = fx.src_dir.join("fw.bin");
        let err = fx.store.sink_error(
            FirmwareError::io(IoAction::Read, &src, io::Error::other("bad sector")),
            &temp_path,
        );
        assert!(err.to_string().contains("fw.bin"), "{err}");
    }

    #[test]
    fn canceled_import_leaves_nothing() {
        let fx = fixture();
        let src = fx.source("big.bin", &data(100_000));
        let cancel = CancelToken::new();
        let err = fx
            .store
            .import(&src, &mut |_, _| cancel.cancel(), &cancel)
            .unwrap_err();
        assert!(matches!(err, FirmwareError::Canceled), "{err:?}");
        assert!(fx.store_entries().is_empty(), "{:?}", fx.store_entries());
    }

    #[test]
    fn missing_source_is_an_error_with_its_path() {
        let fx = fixture();
        let err = fx.import(&fx.src_dir.join("nope.bin")).unwrap_err();
        assert!(err.to_string().contains("nope.bin"), "{err}");
    }

    #[test]
    fn bad_names_are_rejected() {
        let fx = fixture();
        fx.import(&fx.source("fw.bin", b"abc")).unwrap();
        let upper = ABC_SHA.to_uppercase();
        let json = format!("{ABC_SHA}.json");
        for bad in ["../../etc/passwd", "", &ABC_SHA[1..], &upper, &json, "/"] {
            assert!(
                matches!(fx.store.path_of(bad), Err(FirmwareError::BadDigest(_))),
                "{bad}"
            );
            assert!(
                matches!(fx.store.open(bad), Err(FirmwareError::BadDigest(_))),
                "{bad}"
            );
            assert!(
                matches!(fx.store.get(bad), Err(FirmwareError::BadDigest(_))),
                "{bad}"
            );
            let verified = fx.store.verify(bad, &mut |_, _| {}, &CancelToken::new());
            assert!(
                matches!(verified, Err(FirmwareError::BadDigest(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn unknown_digest_is_not_stored() {
        let fx = fixture();
        let other = "0".repeat(64);
        assert!(matches!(
            fx.store.get(&other),
            Err(FirmwareError::NotStored { .. })
        ));
        assert!(matches!(
            fx.store.open(&other),
            Err(FirmwareError::NotStored { .. })
        ));
        let verified = fx.store.verify(&other, &mut |_, _| {}, &CancelToken::new());
        assert!(
            matches!(verified, Err(FirmwareError::NotStored { .. })),
            "{verified:?}"
        );
        assert!(!fx.store.contains(&other).unwrap());
    }

    #[test]
    fn get_without_metadata_rehashes() {
        let fx = fixture();
        let stored = fx.import(&fx.source("fw.bin", b"abc")).unwrap();
        fs::remove_file(fx.store.dir().join(format!("{ABC_SHA}.json"))).unwrap();
        let got = fx.store.get(ABC_SHA).unwrap();
        assert_eq!(got, stored.clone_with_name(ABC_SHA));
    }

    #[test]
    fn list_is_sorted_and_skips_strays() {
        let fx = fixture();
        assert!(
            fx.store.list().unwrap().is_empty(),
            "missing dir lists as empty"
        );
        fx.import(&fx.source("b.bin", b"second")).unwrap();
        fx.import(&fx.source("a.bin", b"first")).unwrap();
        fs::write(fx.store.dir().join(".import-leftover"), b"x").unwrap();
        let names: Vec<String> = fx
            .store
            .list()
            .unwrap()
            .into_iter()
            .map(|s| s.package.file_name)
            .collect();
        assert_eq!(names, vec!["a.bin", "b.bin"]);
    }

    #[test]
    fn data_dir_precedence() {
        let env = |pairs: &[(&str, &str)]| {
            let map: HashMap<String, OsString> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), OsString::from(v)))
                .collect();
            data_dir_from(move |k| map.get(k).cloned())
        };
        let all = [
            ("OTA_CONSOLE_DATA_DIR", "/data/ota"),
            ("XDG_DATA_HOME", "/xdg"),
            ("HOME", "/home/op"),
        ];
        assert_eq!(env(&all), PathBuf::from("/data/ota"));
        assert_eq!(env(&all[1..]), PathBuf::from("/xdg/ota-console"));
        assert_eq!(
            env(&all[2..]),
            PathBuf::from("/home/op/.local/share/ota-console")
        );
        // Empty and relative values are ignored.
        assert_eq!(
            env(&[
                ("OTA_CONSOLE_DATA_DIR", ""),
                ("XDG_DATA_HOME", "rel"),
                ("HOME", "/h")
            ]),
            PathBuf::from("/h/.local/share/ota-console")
        );
        assert_eq!(env(&[]), PathBuf::from("ota-console-data"));
    }
}
