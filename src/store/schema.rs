//! The database schema as an ordered list of migrations, applied in order and recorded in
//! SQLite's `user_version` (migration *n* sets it to *n*). Never edit a migration that has
//! shipped: append a new one.

use rusqlite::Connection;

use super::sql::StoreError;

/// Migration *i* (0-based) brings the schema from version *i* to *i + 1*.
pub const MIGRATIONS: &[&str] = &[
    // 1: the first schema.
    r#"
    CREATE TABLE packages (
        sha256      TEXT PRIMARY KEY NOT NULL CHECK (length(sha256) = 64),
        file_name   TEXT NOT NULL,
        size        INTEGER NOT NULL CHECK (size >= 0),
        md5         TEXT NOT NULL,
        checksum    TEXT NOT NULL,
        store_path  TEXT NOT NULL,
        imported_at INTEGER NOT NULL
    ) STRICT;

    CREATE TABLE campaigns (
        id              INTEGER PRIMARY KEY NOT NULL,
        name            TEXT NOT NULL,
        package         TEXT NOT NULL REFERENCES packages(sha256),
        version         TEXT NOT NULL,
        module          TEXT,
        dialect_options TEXT NOT NULL,
        policy          TEXT NOT NULL,
        offer           TEXT NOT NULL,
        state           TEXT NOT NULL,
        current_wave    INTEGER,
        created_at      INTEGER NOT NULL,
        started_at      INTEGER,
        finished_at     INTEGER
    ) STRICT;

    CREATE TABLE campaign_devices (
        campaign          INTEGER NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
        device            TEXT NOT NULL,
        position          INTEGER NOT NULL,
        wave              INTEGER,
        status            TEXT NOT NULL,
        from_version      TEXT,
        to_version        TEXT,
        percent           INTEGER NOT NULL DEFAULT 0 CHECK (percent BETWEEN 0 AND 100),
        attempts          INTEGER NOT NULL DEFAULT 0,
        round_start       INTEGER NOT NULL DEFAULT 0,
        error             TEXT,
        code              INTEGER,
        task_id           TEXT,
        bid               TEXT,
        tid               TEXT,
        last_outcome      TEXT,
        noticed_at        INTEGER,
        deadline_at       INTEGER,
        retry_at          INTEGER,
        reply_deadline_at INTEGER,
        resends_left      INTEGER,
        PRIMARY KEY (campaign, device)
    ) STRICT;
    CREATE UNIQUE INDEX campaign_devices_by_position ON campaign_devices(campaign, position);

    CREATE TABLE transitions (
        id          INTEGER PRIMARY KEY NOT NULL,
        campaign    INTEGER NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
        device      TEXT,
        from_status TEXT NOT NULL,
        to_status   TEXT NOT NULL,
        detail      TEXT NOT NULL,
        at          INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX transitions_by_campaign ON transitions(campaign, id);

    CREATE TABLE devices (
        id        TEXT PRIMARY KEY NOT NULL,
        dialect   TEXT NOT NULL,
        gateway   TEXT,
        versions  TEXT NOT NULL DEFAULT '{}',
        last_seen INTEGER
    ) STRICT;
    "#,
    // 2: how many times each device's notice was re-sent for want of an answer (the ack window
    // of Alibaba / FogCloud notices, DJI's reply wait), for the window and the report.
    r#"
    ALTER TABLE campaign_devices ADD COLUMN resends INTEGER NOT NULL DEFAULT 0;
    "#,
];

/// The schema version this build writes.
pub fn current_version() -> i64 {
    i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX)
}

pub fn version(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn.query_row("PRAGMA user_version", [], |row| row.get(0))?)
}

/// Applies every migration the database has not seen, each in its own transaction with its
/// version bump, so a crash leaves the database at a whole version.
pub fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let found = version(conn)?;
    let known = current_version();
    if found > known {
        return Err(StoreError::SchemaTooNew { found, known });
    }
    if found < 0 {
        return Err(StoreError::Corrupt {
            what: "user_version",
            detail: format!("{found} is negative"),
        });
    }
    for (index, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(found).unwrap_or(0))
    {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        // PRAGMA takes no bound parameters; the value is our own integer.
        tx.execute_batch(&format!("PRAGMA user_version = {}", index + 1))?;
        tx.commit()?;
    }
    Ok(())
}
