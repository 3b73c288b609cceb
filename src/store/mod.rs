//! SQLite persistence: firmware packages, campaigns with their per-device rows and the journal
//! of every transition, and the device inventory. It stores what the rollout state machine and
//! the engine hand it and reads it back; it never decides anything about a rollout.
//!
//! # Durability
//!
//! The database runs in WAL mode with `synchronous = FULL`: when [`Store::apply`] returns, the
//! transition is in the WAL *and* the WAL was fsynced, so it survives a power cut, not only a
//! crash of the process. `NORMAL` would be faster but can lose the last transactions on power
//! loss, and the rollout contract is "a transition is durable before the notice it causes goes
//! out" (otherwise a restart could notice a device twice). The cost is one fsync per
//! transaction: batch a burst of transitions with [`Store::apply_all`] (one transaction, one
//! fsync).
//!
//! # Layout
//! - `schema`: ordered migrations, tracked in `PRAGMA user_version`.
//! - `packages`: imported firmware files.
//! - `campaigns`: campaign rows and per-device rows, loading for resume, listing.
//! - `journal`: applying [`Transition`]s and reading the transition history.
//! - `inventory`: the known devices.
//!
//! One `Store` is one connection; it is `Send` but not `Sync`: the engine task owns it.

mod campaigns;
mod inventory;
mod journal;
mod packages;
pub mod schema;
mod sql;

use std::io;
use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, MAIN_DB};

pub use campaigns::CampaignRow;
pub use inventory::InventoryDevice;
pub use journal::JournalEntry;
pub use packages::PackageRecord;
pub use sql::{Store, StoreError};

use crate::rollout::Transition;

/// How long a write waits for another connection's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

impl Store {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    /// A database that cannot be written is refused here, not at the first transition:
    /// `StoreError::NotWritable` says which file or directory refused and why.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        // The file's mode alone says nothing for root or on a read-only mount: SQLite quietly
        // falls back to read-only, which `is_readonly` reveals.
        let opened =
            Connection::open(path).and_then(|conn| conn.is_readonly(MAIN_DB).map(|ro| (conn, ro)));
        let conn = match opened {
            Ok((conn, false)) => conn,
            Ok((_, true)) => {
                return Err(
                    not_writable(path).unwrap_or_else(|| StoreError::NotWritable {
                        path: path.to_path_buf(),
                        place: path.to_path_buf(),
                        cause: io::Error::other("SQLite could only open it read-only"),
                    }),
                );
            }
            Err(source) => return Err(open_error(path, source)),
        };
        Self::setup(conn, true).map_err(|e| match e {
            StoreError::Sqlite(source) => open_error(path, source),
            other => other,
        })
    }

    /// A private in-memory database (tests, `--demo`).
    pub fn open_in_memory() -> Result<Store, StoreError> {
        Self::setup(Connection::open_in_memory()?, false)
    }

    fn setup(conn: Connection, wal: bool) -> Result<Store, StoreError> {
        conn.busy_timeout(BUSY_TIMEOUT)?;
        if wal {
            let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(StoreError::Corrupt {
                    what: "journal mode",
                    detail: format!("SQLite kept {mode:?} instead of switching to WAL"),
                });
            }
        }
        conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")?;
        let mut store = Store { conn };
        schema::migrate(&mut store.conn)?;
        Ok(store)
    }

    /// The schema version of the open database.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        schema::version(&self.conn)
    }

    /// Runs `PRAGMA integrity_check` and `foreign_key_check`; `Ok` when both find nothing.
    pub fn integrity_check(&self) -> Result<(), StoreError> {
        let mut problems = Vec::new();
        let mut stmt = self.conn.prepare("PRAGMA integrity_check")?;
        let rows = stmt.query_map([], |row| row.get::<_, String>(0))?;
        for row in rows {
            let line = row?;
            if line != "ok" {
                problems.push(line);
            }
        }
        let mut stmt = self.conn.prepare("PRAGMA foreign_key_check")?;
        let rows = stmt.query_map([], |row| {
            Ok(format!(
                "row {} of {} points at a missing {}",
                row.get::<_, Option<i64>>(1)?.unwrap_or_default(),
                row.get::<_, String>(0)?,
                row.get::<_, String>(2)?
            ))
        })?;
        for row in rows {
            problems.push(row?);
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(StoreError::Integrity(problems))
        }
    }

    /// Makes one transition durable (see the module documentation).
    pub fn apply(&mut self, transition: &Transition) -> Result<(), StoreError> {
        self.apply_all(std::slice::from_ref(transition))
    }

    /// Makes several transitions durable in one transaction: all or none.
    pub fn apply_all(&mut self, transitions: &[Transition]) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        for t in transitions {
            journal::apply(&tx, t)?;
        }
        tx.commit()?;
        Ok(())
    }
}

/// Why opening `path` failed: a write probe names the file or directory that refuses writes
/// (SQLite only says "unable to open database file"), else SQLite's own error.
fn open_error(path: &Path, source: rusqlite::Error) -> StoreError {
    not_writable(path).unwrap_or_else(|| StoreError::Open {
        path: path.display().to_string(),
        cause: source,
    })
}

/// Probes what SQLite needs to write: the file itself when it exists, and its directory (for
/// the file, and the `-wal` and `-shm` files beside it). `None` when both accept writes.
fn not_writable(path: &Path) -> Option<StoreError> {
    let refused = |place: &Path, cause: io::Error| StoreError::NotWritable {
        path: path.to_path_buf(),
        place: place.to_path_buf(),
        cause,
    };
    match std::fs::OpenOptions::new().write(true).open(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Some(refused(path, e)),
        _ => {}
    }
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    // Unnamed and gone when dropped: the probe leaves nothing in the directory.
    tempfile::tempfile_in(dir).err().map(|e| refused(dir, e))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn fresh_database_is_migrated_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.db");
        {
            let store = Store::open(&path).unwrap();
            assert_eq!(store.schema_version().unwrap(), schema::current_version());
            store.integrity_check().unwrap();
            let mode: String = store
                .conn
                .query_row("PRAGMA journal_mode", [], |r| r.get(0))
                .unwrap();
            assert_eq!(mode, "wal");
            let fk: i64 = store
                .conn
                .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
                .unwrap();
            assert_eq!(fk, 1);
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), schema::current_version());
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("future.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch("PRAGMA user_version = 999").unwrap();
        }
        match Store::open(&path) {
            Err(StoreError::SchemaTooNew { found: 999, .. }) => {}
            other => panic!("expected SchemaTooNew, got {other:?}"),
        }
    }

    #[test]
    fn a_file_that_is_not_a_database_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("junk.db");
        std::fs::write(&path, vec![0x42u8; 8192]).unwrap();
        let err = Store::open(&path).unwrap_err();
        assert!(err.to_string().contains("junk.db"), "{err}");
    }

    // Read-only mounts are covered by tests/disk_faults.rs; these refusals hold even for root.
    #[test]
    fn an_unwritable_path_is_named_with_the_os_reason() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("not-a-dir");
        std::fs::write(&blocker, b"").unwrap();
        let path = blocker.join("console.db");
        let err = Store::open(&path).unwrap_err();
        assert!(matches!(err, StoreError::NotWritable { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!(
                "cannot write the database {}: {}",
                path.display(),
                io::Error::from_raw_os_error(20)
            )
        );
        let err = Store::open(dir.path()).unwrap_err();
        assert!(matches!(err, StoreError::NotWritable { .. }), "{err:?}");
    }

    #[test]
    fn a_refusing_directory_is_named_as_such() {
        let err = StoreError::NotWritable {
            path: PathBuf::from("/data/ota-console.db"),
            place: PathBuf::from("/data"),
            cause: io::Error::from_raw_os_error(30),
        };
        assert_eq!(
            err.to_string(),
            format!(
                "cannot write the database /data/ota-console.db: its directory /data does not \
                 accept new files (SQLite keeps its -wal and -shm files there): {}",
                io::Error::from_raw_os_error(30)
            )
        );
    }
}
