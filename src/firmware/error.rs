//! `FirmwareError`: everything that can go wrong while hashing, importing or reading a firmware
//! package. Owns only the error type; it never decides how an error is shown to the operator.

use std::io;
use std::path::{Path, PathBuf};

use crate::i18n::{self, tr};

/// Why a firmware operation failed. Every variant names the file or digest it is about.
#[derive(Debug, thiserror::Error)]
pub enum FirmwareError {
    /// An I/O call failed; `action` says what we were doing ("read", "create temp file in", ...).
    /// The OS error is part of the message (not a `source`), so it is printed exactly once
    /// both by `to_string()` and by anyhow's `{:#}` chain.
    #[error("{}", io_words(action, path, cause))]
    Io {
        action: &'static str,
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

/// "cannot read FILE: why": the action in words of the language in force (the actions are
/// the store's own, a fixed set; one not listed reads as in English).
fn io_words(action: &str, path: &Path, cause: &io::Error) -> String {
    let path = path.display();
    let why = i18n::io_error(cause);
    if i18n::lang() == i18n::Lang::En {
        return format!("cannot {action} {path}: {why}");
    }
    let action = match action {
        "open" => tr!("firmware.action.open"),
        "read" => tr!("firmware.action.read"),
        "read metadata of" => tr!("firmware.action.read_metadata"),
        "write" => tr!("firmware.action.write"),
        "list" => tr!("firmware.action.list"),
        "resolve" => tr!("firmware.action.resolve"),
        "create store directory" => tr!("firmware.action.create_store_directory"),
        _ => action.to_owned(),
    };
    tr!("firmware.io", action = action, path = path, why = why)
}

impl FirmwareError {
    /// Wraps an `io::Error` with what we were doing and on which path.
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, cause: io::Error) -> Self {
        Self::Io {
            action,
            path: path.into(),
            cause,
        }
    }
}
