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

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;

pub use campaigns::CampaignRow;
pub use inventory::InventoryDevice;
pub use journal::JournalEntry;
pub use packages::PackageRecord;

use crate::rollout::{CampaignId, Timestamp, Transition};

/// How long a write waits for another connection's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("could not open the database at {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "the database schema is version {found}, newer than this build knows ({known}); upgrade ota-console"
    )]
    SchemaTooNew { found: i64, known: i64 },
    #[error("stored {what} is unreadable: {detail}")]
    Corrupt { what: &'static str, detail: String },
    #[error("campaign {0} does not exist")]
    NoSuchCampaign(CampaignId),
    #[error("campaign {0} already exists")]
    CampaignExists(CampaignId),
    #[error("package {0} is not in the database; save the package before creating a campaign")]
    NoSuchPackage(String),
    #[error("value for {what} does not fit the database: {detail}")]
    OutOfRange { what: &'static str, detail: String },
    #[error("integrity check failed: {}", .0.join("; "))]
    Integrity(Vec<String>),
}

/// The console's database.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
}

impl Store {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let conn = Connection::open(path).map_err(|source| StoreError::Open {
            path: path.display().to_string(),
            source,
        })?;
        Self::setup(conn, true)
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

/// Timestamps are stored as integer milliseconds.
fn ts_to_sql(t: Timestamp) -> Result<i64, StoreError> {
    i64::try_from(t.as_millis()).map_err(|_| StoreError::OutOfRange {
        what: "timestamp",
        detail: format!("{} ms", t.as_millis()),
    })
}

fn ts_from_sql(what: &'static str, ms: i64) -> Result<Timestamp, StoreError> {
    u64::try_from(ms)
        .map(Timestamp::from_millis)
        .map_err(|_| StoreError::Corrupt {
            what,
            detail: format!("negative timestamp {ms}"),
        })
}

fn opt_ts_from_sql(what: &'static str, ms: Option<i64>) -> Result<Option<Timestamp>, StoreError> {
    ms.map(|ms| ts_from_sql(what, ms)).transpose()
}

fn opt_ts_to_sql(t: Option<Timestamp>) -> Result<Option<i64>, StoreError> {
    t.map(ts_to_sql).transpose()
}

fn corrupt(what: &'static str, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        what,
        detail: detail.to_string(),
    }
}

#[cfg(test)]
mod tests {
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
        assert!(Store::open(&path).is_err());
    }
}
