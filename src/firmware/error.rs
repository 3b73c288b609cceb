//! `FirmwareError`: everything that can go wrong while hashing, importing or reading a firmware
//! package. Owns only the error type; it never decides how an error is shown to the operator.

use std::io;
use std::path::PathBuf;

/// Why a firmware operation failed. Every variant names the file or digest it is about.
#[derive(Debug, thiserror::Error)]
pub enum FirmwareError {
    /// An I/O call failed; `action` says what we were doing ("read", "create temp file in", ...).
    /// The OS error is part of the message (not a `source`), so it is printed exactly once
    /// both by `to_string()` and by anyhow's `{:#}` chain.
    #[error("cannot {action} {}: {cause}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        cause: io::Error,
    },
    /// Writing into the package store failed (read-only mount, disk full, permissions, ...);
    /// the temp file of the import is gone and nothing new is stored.
    #[error("cannot write the firmware store {}: {cause}", dir.display())]
    StoreWrite { dir: PathBuf, cause: io::Error },
    /// The caller's `CancelToken` was triggered; nothing was kept.
    #[error("canceled")]
    Canceled,
    /// The file is bigger than the configured limit (checked before and while reading).
    #[error("{} is larger than the {limit}-byte limit for a firmware package", path.display())]
    TooLarge { path: PathBuf, limit: u64 },
    /// A store name that is not a SHA-256 in lowercase hex (64 characters of `0-9a-f`).
    #[error("{0:?} is not a SHA-256 digest (64 lowercase hex characters)")]
    BadDigest(String),
    /// No package with this digest is in the store.
    #[error("no firmware package {sha256} in the store")]
    NotStored { sha256: String },
    /// A stored file no longer hashes to its name.
    #[error("stored package {expected} is corrupt: its content hashes to {actual}")]
    Corrupt { expected: String, actual: String },
    /// The metadata file kept beside a stored package could not be read back.
    #[error("metadata {} is unreadable: {cause}", path.display())]
    BadMetadata {
        path: PathBuf,
        cause: serde_json::Error,
    },
    /// A hashing thread could not be started or died; a bug or resource exhaustion, not bad input.
    #[error("hashing thread failed: {0}")]
    Worker(String),
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
