//! What every table file of the store shares: [`Store`] (one connection), [`StoreError`], and
//! the conversions of timestamps and the "unreadable row" error. A leaf of `store/`, so the
//! table files (`campaigns`, `journal`, …) and `mod.rs`, which calls them, form no cycle.

use std::io;
use std::path::{Path, PathBuf};

use rusqlite::Connection;

use crate::i18n::{self, tr};

use crate::rollout::{CampaignId, Timestamp};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{}", tr!("error.store.sqlite", why = _0))]
    Sqlite(#[from] rusqlite::Error),
    #[error("{}", tr!("error.store.open", path = path, why = cause))]
    Open {
        path: String,
        cause: rusqlite::Error,
    },
    /// The database file, or the directory SQLite keeps its `-wal` and `-shm` files in, cannot
    /// be written (read-only mount, permissions). `place` is the one that refused.
    #[error("{}", tr!("error.store.not_writable", path = path.display(), place = place_note(path, place), why = i18n::io_error(cause)))]
    NotWritable {
        path: PathBuf,
        place: PathBuf,
        cause: io::Error,
    },
    #[error("{}", tr!("error.store.schema_too_new", found = found, known = known))]
    SchemaTooNew { found: i64, known: i64 },
    #[error("{}", tr!("error.store.corrupt", what = what, detail = detail))]
    Corrupt { what: &'static str, detail: String },
    #[error("{}", tr!("error.store.no_such_campaign", id = _0))]
    NoSuchCampaign(CampaignId),
    #[error("{}", tr!("error.store.campaign_exists", id = _0))]
    CampaignExists(CampaignId),
    #[error("{}", tr!("error.store.no_such_package", sha256 = _0))]
    NoSuchPackage(String),
    #[error("{}", tr!("error.store.out_of_range", what = what, detail = detail))]
    OutOfRange { what: &'static str, detail: String },
    #[error("{}", tr!("error.store.integrity", problems = _0.join("; ")))]
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
        tr!("error.store.dir_not_writable", dir = place.display())
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
