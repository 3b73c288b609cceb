//! The `packages` table: one row per imported firmware file, keyed by its SHA-256. The bytes
//! live in the firmware store on disk; this row only says where and what they are.

use std::path::PathBuf;

use rusqlite::{OptionalExtension, params};

use super::sql::{Store, StoreError, corrupt, ts_from_sql, ts_to_sql};
use crate::rollout::Timestamp;

/// One imported firmware file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageRecord {
    /// Lowercase hex, the primary key.
    pub sha256: String,
    pub file_name: String,
    pub size: u64,
    pub md5: String,
    /// FogCloud additive checksum.
    pub checksum: String,
    /// Where the firmware store keeps the bytes.
    pub store_path: PathBuf,
    pub imported_at: Timestamp,
}

impl Store {
    /// Records a package; importing the same content again keeps the first row and returns
    /// `false`.
    pub fn save_package(&mut self, package: &PackageRecord) -> Result<bool, StoreError> {
        let size = i64::try_from(package.size).map_err(|_| StoreError::OutOfRange {
            what: "package size",
            detail: format!("{} bytes", package.size),
        })?;
        let inserted = self.conn.execute(
            "INSERT INTO packages (sha256, file_name, size, md5, checksum, store_path, imported_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (sha256) DO NOTHING",
            params![
                package.sha256,
                package.file_name,
                size,
                package.md5,
                package.checksum,
                package.store_path.to_string_lossy(),
                ts_to_sql(package.imported_at)?,
            ],
        )?;
        Ok(inserted == 1)
    }

    pub fn package(&self, sha256: &str) -> Result<Option<PackageRecord>, StoreError> {
        let row = self
            .conn
            .query_row(
                "SELECT sha256, file_name, size, md5, checksum, store_path, imported_at
                 FROM packages WHERE sha256 = ?1",
                [sha256],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, String>(5)?,
                        r.get::<_, i64>(6)?,
                    ))
                },
            )
            .optional()?;
        row.map(
            |(sha256, file_name, size, md5, checksum, path, imported_at)| {
                Ok(PackageRecord {
                    sha256,
                    file_name,
                    size: u64::try_from(size).map_err(|_| corrupt("package size", size))?,
                    md5,
                    checksum,
                    store_path: PathBuf::from(path),
                    imported_at: ts_from_sql("package imported_at", imported_at)?,
                })
            },
        )
        .transpose()
    }

    /// Every package, newest import first.
    pub fn list_packages(&self) -> Result<Vec<PackageRecord>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT sha256 FROM packages ORDER BY imported_at DESC, sha256")?;
        let keys = stmt
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        keys.iter()
            .filter_map(|k| self.package(k).transpose())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> PackageRecord {
        PackageRecord {
            sha256: "a".repeat(64),
            file_name: "fw-2.0.bin".into(),
            size: 1234,
            md5: "b".repeat(32),
            checksum: "06000000".into(),
            store_path: PathBuf::from("/data/firmware/aaaa"),
            imported_at: Timestamp::from_millis(1_700_000_000_000),
        }
    }

    #[test]
    fn packages_round_trip_and_dedupe() {
        let mut store = Store::open_in_memory().unwrap();
        assert!(store.save_package(&sample()).unwrap());
        assert!(!store.save_package(&sample()).unwrap());
        assert_eq!(store.package(&"a".repeat(64)).unwrap(), Some(sample()));
        assert_eq!(store.package(&"c".repeat(64)).unwrap(), None);
        assert_eq!(store.list_packages().unwrap(), vec![sample()]);
    }

    #[test]
    fn a_malformed_key_is_refused_by_the_schema() {
        let mut store = Store::open_in_memory().unwrap();
        let bad = PackageRecord {
            sha256: "short".into(),
            ..sample()
        };
        assert!(store.save_package(&bad).is_err());
    }
}
