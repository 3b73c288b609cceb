//! `FirmwareError`: everything that can go wrong while hashing, importing or reading a firmware
//! package. Owns only the error type; it never decides how an error is shown to the operator.

use std::io;
use std::path::{Path, PathBuf};

use crate::i18n::{self, tr};

/// Why a firmware operation failed. Every variant names the file or digest it is about.
#[derive(Debug, thiserror::Error)]
pub enum FirmwareError {
    /// An I/O call failed; `action` says what we were doing (read, list, ...).
    /// The OS error is part of the message (not a `source`), so it is printed exactly once
    /// both by `to_string()` and by anyhow's `{:#}` chain.
    #[error("{}", io_words(action, path, cause))]
    Io {
        action: IoAction,
        path: PathBuf,
        cause: io::Error,
    },
    /// Writing into the package store failed (read-only mount, disk full, permissions, ...);
    /// the temp file of the import is gone and nothing new is stored.
    #[error("{}", tr!("firmware.store_write", dir = dir.display(), why = i18n::io_error(cause)))]
    StoreWrite { dir: PathBuf, cause: io::Error },
    /// The caller's `CancelToken` was triggered; nothing was kept.
    #[error("{}", tr!("firmware.canceled"))]
    Canceled,
    /// The file is bigger than the configured limit (checked before and while reading).
    #[error("{}", tr!("firmware.too_large", path = path.display(), limit = limit))]
    TooLarge { path: PathBuf, limit: u64 },
    /// A store name that is not a SHA-256 in lowercase hex (64 characters of `0-9a-f`).
    #[error("{}", tr!("firmware.bad_digest", digest = format!("{_0:?}")))]
    BadDigest(String),
    /// No package with this digest is in the store.
    #[error("{}", tr!("firmware.not_stored", sha256 = sha256))]
    NotStored { sha256: String },
    /// A stored file no longer hashes to its name.
    #[error("{}", tr!("firmware.corrupt", expected = expected, actual = actual))]
    Corrupt { expected: String, actual: String },
    /// The metadata file kept beside a stored package could not be read back.
    #[error("{}", tr!("firmware.bad_metadata", path = path.display(), why = cause))]
    BadMetadata {
        path: PathBuf,
        cause: serde_json::Error,
    },
    /// A hashing thread could not be started or died; a bug or resource exhaustion, not bad input.
    #[error("{}", tr!("firmware.worker", why = _0))]
    Worker(String),
}

/// What the store was doing when an I/O call failed: the store's own, fixed set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoAction {
    Open,
    Read,
    ReadMetadata,
    Write,
    List,
    Resolve,
    CreateStoreDirectory,
}

impl IoAction {
    /// The action in words of the language in force ("read", "读取").
    fn words(self) -> String {
        match self {
            IoAction::Open => tr!("firmware.action.open"),
            IoAction::Read => tr!("firmware.action.read"),
            IoAction::ReadMetadata => tr!("firmware.action.read_metadata"),
            IoAction::Write => tr!("firmware.action.write"),
            IoAction::List => tr!("firmware.action.list"),
            IoAction::Resolve => tr!("firmware.action.resolve"),
            IoAction::CreateStoreDirectory => tr!("firmware.action.create_store_directory"),
        }
    }
}

/// "cannot read FILE: why" in the language in force.
fn io_words(action: &IoAction, path: &Path, cause: &io::Error) -> String {
    tr!(
        "firmware.io",
        action = action.words(),
        path = path.display(),
        why = i18n::io_error(cause)
    )
}

impl FirmwareError {
    /// Wraps an `io::Error` with what we were doing and on which path.
    pub(crate) fn io(action: IoAction, path: impl Into<PathBuf>, cause: io::Error) -> Self {
        Self::Io {
            action,
            path: path.into(),
            cause,
        }
    }
}
