//! What every table file of the store shares: [`Store`] (one connection), [`StoreError`], and
//! the conversions of timestamps and the "unreadable row" error. A leaf of `store/`, so the
//! table files (`campaigns`, `journal`, …) and `mod.rs`, which calls them, form no cycle.

use std::io;
use std::path::{Path, PathBuf};

use rusqlite::Connection;

use crate::rollout::{CampaignId, Timestamp};

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
    /// The database file, or the directory SQLite keeps its `-wal` and `-shm` files in, cannot
    /// be written (read-only mount, permissions). `place` is the one that refused.
    #[error("cannot write the database {}: {}{cause}", path.display(), place_note(path, place))]
    NotWritable {
        path: PathBuf,
        place: PathBuf,
        cause: io::Error,
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
    pub(super) conn: Connection,
}

/// What `NotWritable` says before the OS error when the directory, not the file, refused.
fn place_note(path: &Path, place: &Path) -> String {
    if place == path {
        String::new()
    } else {
        format!(
            "its directory {} does not accept new files (SQLite keeps its -wal and -shm files \
             there): ",
            place.display()
        )
    }
}

/// Timestamps are stored as integer milliseconds.
pub(super) fn ts_to_sql(t: Timestamp) -> Result<i64, StoreError> {
    i64::try_from(t.as_millis()).map_err(|_| StoreError::OutOfRange {
        what: "timestamp",
        detail: format!("{} ms", t.as_millis()),
    })
}

pub(super) fn ts_from_sql(what: &'static str, ms: i64) -> Result<Timestamp, StoreError> {
    u64::try_from(ms)
        .map(Timestamp::from_millis)
        .map_err(|_| StoreError::Corrupt {
            what,
            detail: format!("negative timestamp {ms}"),
        })
}

pub(super) fn opt_ts_from_sql(
    what: &'static str,
    ms: Option<i64>,
) -> Result<Option<Timestamp>, StoreError> {
    ms.map(|ms| ts_from_sql(what, ms)).transpose()
}

pub(super) fn opt_ts_to_sql(t: Option<Timestamp>) -> Result<Option<i64>, StoreError> {
    t.map(ts_to_sql).transpose()
}

pub(super) fn corrupt(what: &'static str, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        what,
        detail: detail.to_string(),
    }
}
