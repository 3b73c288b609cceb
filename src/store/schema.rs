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
    // 3: a device's task is named the same way for every dialect: the task key it was issued
    // (FogCloud `task_id`, DJI `bid`) and the exchange id of the latest request (DJI `tid`);
    // a failure code is stored with the dialect whose table explains it (until now always the
    // device's: the prefix of its id).
    r#"
    ALTER TABLE campaign_devices ADD COLUMN task_key TEXT;
    ALTER TABLE campaign_devices ADD COLUMN exchange_id TEXT;
    ALTER TABLE campaign_devices ADD COLUMN code_dialect TEXT;
    UPDATE campaign_devices SET task_key = coalesce(task_id, bid), exchange_id = tid;
    UPDATE campaign_devices SET code_dialect = substr(device, 1, instr(device, ':') - 1)
        WHERE code IS NOT NULL;
    ALTER TABLE campaign_devices DROP COLUMN task_id;
    ALTER TABLE campaign_devices DROP COLUMN bid;
    ALTER TABLE campaign_devices DROP COLUMN tid;
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

#[cfg(test)]
mod tests {
    use rusqlite::Connection;
    use serde_json::json;

    use super::MIGRATIONS;
    use crate::protocol::{aliyun, dji, fogcloud};
    use crate::rollout::{CampaignId, FailureCode, Policy, TaskRecord};
    use crate::store::Store;

    /// A database written by a build at schema version 2: per-dialect task columns, flat
    /// notice settings and DJI-named policy keys.
    fn version_2_database(path: &std::path::Path) {
        let mut conn = Connection::open(path).unwrap();
        for (i, sql) in MIGRATIONS.iter().take(2).enumerate() {
            let tx = conn.transaction().unwrap();
            tx.execute_batch(sql).unwrap();
            tx.execute_batch(&format!("PRAGMA user_version = {}", i + 1))
                .unwrap();
            tx.commit().unwrap();
        }
        let mut policy = serde_json::to_value(Policy::default()).unwrap();
        let policy = policy.as_object_mut().unwrap();
        policy.remove("reply_timeout_ms");
        policy.remove("reply_resends");
        policy.insert("dji_reply_timeout_ms".into(), json!(4_500));
        policy.insert("dji_resends".into(), json!(5));
        let offer = json!({"version": "2.0", "url": "http://127.0.0.1/fw/x", "size": 3,
            "md5": "aa", "sha256": "b".repeat(64), "checksum": "00000003", "file_name": "x",
            "description": ""});
        let sha = "b".repeat(64);
        conn.execute(
            "INSERT INTO packages VALUES (?1, 'x', 3, 'aa', '00000003', '/nowhere', 0)",
            [&sha],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO campaigns (id, name, package, version, module, dialect_options, policy,
                 offer, state, current_wave, created_at)
             VALUES (1, 'old', ?1, '2.0', NULL, ?2, ?3, ?4, 'running', 0, 0)",
            [
                sha,
                json!({"sign_method": "Sha256", "dji_upgrade_type": "consistency"}).to_string(),
                serde_json::Value::Object(policy.clone()).to_string(),
                offer.to_string(),
            ],
        )
        .unwrap();
        for (position, (device, task_id, bid, tid)) in [
            ("aliyun:pk/a", None, None, None),
            ("fogcloud:pk/f", Some("7"), None, None),
            ("dji:DOCK", None, Some("bid-1"), Some("tid-1")),
        ]
        .into_iter()
        .enumerate()
        {
            conn.execute(
                "INSERT INTO campaign_devices (campaign, device, position, wave, status, task_id,
                     bid, tid, code)
                 VALUES (1, ?1, ?2, 0, 'noticed', ?3, ?4, ?5, ?6)",
                rusqlite::params![device, position, task_id, bid, tid, bid.map(|_| -2)],
            )
            .unwrap();
        }
    }

    #[test]
    fn version_2_campaigns_keep_their_tasks_settings_and_policy() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        version_2_database(&path);
        let store = Store::open(&path).unwrap();
        let campaign = store.load_campaign(CampaignId(1)).unwrap();
        let tasks: Vec<TaskRecord> = campaign.devices.iter().map(|d| d.task.clone()).collect();
        assert_eq!(
            tasks,
            [
                TaskRecord::default(),
                TaskRecord {
                    key: Some("7".into()),
                    exchange: None
                },
                TaskRecord {
                    key: Some("bid-1".into()),
                    exchange: Some("tid-1".into())
                },
            ]
        );
        // A stored code keeps its dialect: DJI's -2, not Alibaba's step.
        let codes: Vec<Option<FailureCode>> = campaign.devices.iter().map(|d| d.code).collect();
        let dji_code = FailureCode {
            dialect: dji::ID,
            code: -2,
        };
        assert_eq!(codes, [None, None, Some(dji_code)]);
        let settings = &campaign.spec.settings;
        assert_eq!(settings.value(aliyun::ID, &aliyun::SIGN_METHOD), "sha256");
        assert_eq!(settings.value(dji::ID, &dji::UPGRADE_TYPE), "consistency");
        assert!(settings.for_dialect(fogcloud::ID).0.is_empty());
        assert_eq!(
            (
                campaign.spec.policy.reply_timeout_ms,
                campaign.spec.policy.reply_resends
            ),
            (4_500, 5)
        );
    }
}
