//! The `campaigns` and `campaign_devices` tables: creating a campaign with its device rows,
//! loading everything [`crate::rollout::Campaign::resume`] needs, listing campaigns with their
//! counts, per-device outcomes for reports, and moving a campaign's download URL when the
//! operator moved the firmware server.

use rusqlite::{Row, Transaction, params};

use super::sql::{
    Store, StoreError, corrupt, opt_ts_from_sql, opt_ts_to_sql, ts_from_sql, ts_to_sql,
};
use crate::device_id::DeviceId;
use crate::protocol::FirmwareOffer;
use crate::rollout::{
    CampaignId, CampaignSpec, CampaignState, Counts, DeviceStatus, FailureCode, Note,
    PersistedCampaign, ReplyWait, TargetRecord, TaskRecord, Timestamp,
};

/// A campaign in the list view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CampaignRow {
    pub id: CampaignId,
    pub name: String,
    /// Package SHA-256.
    pub package: String,
    pub version: String,
    pub module: Option<String>,
    pub state: CampaignState,
    pub created_at: Timestamp,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    pub counts: Counts,
}

pub(super) const DEVICE_COLUMNS: &str = "device, position, wave, status, from_version, to_version, percent, \
     attempts, round_start, error, code, code_dialect, task_key, exchange_id, last_outcome, noticed_at, deadline_at, retry_at, \
     reply_deadline_at, resends_left, resends";

fn to_u32(what: &'static str, v: i64) -> Result<u32, StoreError> {
    u32::try_from(v).map_err(|_| corrupt(what, format!("{v} is out of range")))
}

fn opt_to_u32(what: &'static str, v: Option<i64>) -> Result<Option<u32>, StoreError> {
    v.map(|v| to_u32(what, v)).transpose()
}

/// Inserts or updates one device row.
pub(super) fn write_device(
    tx: &Transaction<'_>,
    campaign: CampaignId,
    rec: &TargetRecord,
) -> Result<(), StoreError> {
    let (reply_deadline, resends_left) = match rec.reply_wait {
        Some(w) => (
            Some(ts_to_sql(w.deadline_at)?),
            Some(i64::from(w.resends_left)),
        ),
        None => (None, None),
    };
    let sql = format!(
        "INSERT INTO campaign_devices (campaign, {DEVICE_COLUMNS})
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22)
         ON CONFLICT (campaign, device) DO UPDATE SET position = excluded.position, wave = excluded.wave,
             status = excluded.status, from_version = excluded.from_version, to_version = excluded.to_version,
             percent = excluded.percent, attempts = excluded.attempts, round_start = excluded.round_start,
             error = excluded.error, code = excluded.code, code_dialect = excluded.code_dialect,
             task_key = excluded.task_key,
             exchange_id = excluded.exchange_id, last_outcome = excluded.last_outcome, noticed_at = excluded.noticed_at,
             deadline_at = excluded.deadline_at, retry_at = excluded.retry_at,
             reply_deadline_at = excluded.reply_deadline_at, resends_left = excluded.resends_left,
             resends = excluded.resends"
    );
    tx.prepare_cached(&sql)?.execute(params![
        campaign.0,
        rec.device.to_string(),
        i64::from(rec.position),
        rec.wave.map(i64::from),
        rec.status.as_str(),
        rec.from_version,
        rec.to_version,
        i64::from(rec.percent.min(100)),
        i64::from(rec.attempts),
        i64::from(rec.round_start),
        rec.error.as_ref().map(Note::to_stored),
        rec.code.map(|c| c.code),
        rec.code.map(|c| c.dialect.as_str()),
        rec.task.key,
        rec.task.exchange,
        rec.last_outcome.map(DeviceStatus::as_str),
        opt_ts_to_sql(rec.noticed_at)?,
        opt_ts_to_sql(rec.deadline_at)?,
        opt_ts_to_sql(rec.retry_at)?,
        reply_deadline,
        resends_left,
        i64::from(rec.resends),
    ])?;
    Ok(())
}

/// The raw columns of one device row, converted after the row borrow ends.
struct DeviceRowSql {
    device: String,
    position: i64,
    wave: Option<i64>,
    status: String,
    from_version: Option<String>,
    to_version: Option<String>,
    percent: i64,
    attempts: i64,
    round_start: i64,
    error: Option<String>,
    code: Option<i64>,
    code_dialect: Option<String>,
    task_key: Option<String>,
    exchange_id: Option<String>,
    last_outcome: Option<String>,
    noticed_at: Option<i64>,
    deadline_at: Option<i64>,
    retry_at: Option<i64>,
    reply_deadline_at: Option<i64>,
    resends_left: Option<i64>,
    resends: i64,
}

impl DeviceRowSql {
    fn read(r: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(DeviceRowSql {
            device: r.get(0)?,
            position: r.get(1)?,
            wave: r.get(2)?,
            status: r.get(3)?,
            from_version: r.get(4)?,
            to_version: r.get(5)?,
            percent: r.get(6)?,
            attempts: r.get(7)?,
            round_start: r.get(8)?,
            error: r.get(9)?,
            code: r.get(10)?,
            code_dialect: r.get(11)?,
            task_key: r.get(12)?,
            exchange_id: r.get(13)?,
            last_outcome: r.get(14)?,
            noticed_at: r.get(15)?,
            deadline_at: r.get(16)?,
            retry_at: r.get(17)?,
            reply_deadline_at: r.get(18)?,
            resends_left: r.get(19)?,
            resends: r.get(20)?,
        })
    }

    fn into_record(self) -> Result<TargetRecord, StoreError> {
        let task = TaskRecord {
            key: self.task_key,
            exchange: self.exchange_id,
        };
        let reply_wait = match (self.reply_deadline_at, self.resends_left) {
            (Some(d), Some(n)) => Some(ReplyWait {
                deadline_at: ts_from_sql("reply_deadline_at", d)?,
                resends_left: to_u32("resends_left", n)?,
            }),
            (None, None) => None,
            _ => {
                return Err(corrupt(
                    "device reply wait",
                    format!("{}: half set", self.device),
                ));
            }
        };
        let device: DeviceId = self.device.parse().map_err(|e| corrupt("device id", e))?;
        Ok(TargetRecord {
            position: to_u32("position", self.position)?,
            wave: opt_to_u32("wave", self.wave)?,
            status: self
                .status
                .parse()
                .map_err(|e| corrupt("device status", e))?,
            from_version: self.from_version,
            to_version: self.to_version,
            percent: u8::try_from(self.percent)
                .ok()
                .filter(|p| *p <= 100)
                .ok_or_else(|| corrupt("percent", self.percent))?,
            attempts: to_u32("attempts", self.attempts)?,
            round_start: to_u32("round_start", self.round_start)?,
            // A note, or a sentence written before notes were typed.
            error: self.error.as_deref().map(Note::from_stored),
            code: self.code.map(|code| FailureCode {
                // Rows written before codes carried their dialect hold codes of the device's.
                dialect: self
                    .code_dialect
                    .as_deref()
                    .and_then(|d| d.parse().ok())
                    .unwrap_or(device.dialect()),
                code,
            }),
            device,
            task,
            last_outcome: self
                .last_outcome
                .map(|s| s.parse())
                .transpose()
                .map_err(|e| corrupt("last_outcome", e))?,
            noticed_at: opt_ts_from_sql("noticed_at", self.noticed_at)?,
            deadline_at: opt_ts_from_sql("deadline_at", self.deadline_at)?,
            retry_at: opt_ts_from_sql("retry_at", self.retry_at)?,
            reply_wait,
            resends: to_u32("resends", self.resends)?,
        })
    }
}

fn json<T: serde::Serialize>(what: &'static str, value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| corrupt(what, e))
}

fn from_json<T: serde::de::DeserializeOwned>(
    what: &'static str,
    text: &str,
) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| corrupt(what, e))
}

impl Store {
    /// The id for the next campaign (one more than the largest so far).
    pub fn next_campaign_id(&self) -> Result<CampaignId, StoreError> {
        let max: i64 =
            self.conn
                .query_row("SELECT COALESCE(MAX(id), 0) FROM campaigns", [], |r| {
                    r.get(0)
                })?;
        Ok(CampaignId(max.saturating_add(1)))
    }

    /// Stores a new campaign and all its device rows in one transaction. Its package must have
    /// been saved first.
    pub fn create_campaign(&mut self, campaign: &PersistedCampaign) -> Result<(), StoreError> {
        let spec = &campaign.spec;
        let tx = self.conn.transaction()?;
        let package_known: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM packages WHERE sha256 = ?1)",
            [&spec.offer.sha256],
            |r| r.get(0),
        )?;
        if !package_known {
            return Err(StoreError::NoSuchPackage(spec.offer.sha256.clone()));
        }
        let exists: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM campaigns WHERE id = ?1)",
            [campaign.id.0],
            |r| r.get(0),
        )?;
        if exists {
            return Err(StoreError::CampaignExists(campaign.id));
        }
        tx.execute(
            "INSERT INTO campaigns (id, name, package, version, module, dialect_options, policy, offer, state,
                 current_wave, created_at, started_at, finished_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            params![
                campaign.id.0,
                spec.name,
                spec.offer.sha256,
                spec.offer.version,
                spec.module,
                json("dialect options", &spec.settings)?,
                json("policy", &spec.policy)?,
                json("offer", &spec.offer)?,
                campaign.state.as_str(),
                campaign.current_wave.map(i64::from),
                ts_to_sql(campaign.created_at)?,
                opt_ts_to_sql(campaign.started_at)?,
                opt_ts_to_sql(campaign.finished_at)?,
            ],
        )?;
        for rec in &campaign.devices {
            write_device(&tx, campaign.id, rec)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Points a stored campaign's offer at another download URL (the operator moved the
    /// firmware server), with a journal line saying from where to where, in one transaction.
    /// Devices noticed before keep the URL they were given; notices from now on carry this one.
    pub fn move_offer_url(
        &mut self,
        id: CampaignId,
        url: &str,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        let (offer, state) = tx
            .query_row(
                "SELECT offer, state FROM campaigns WHERE id = ?1",
                [id.0],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)),
            )
            .map_err(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => StoreError::NoSuchCampaign(id),
                e => e.into(),
            })?;
        let mut offer: FirmwareOffer = from_json("offer", &offer)?;
        let old = std::mem::replace(&mut offer.url, url.to_owned());
        tx.execute(
            "UPDATE campaigns SET offer = ?1 WHERE id = ?2",
            params![json("offer", &offer)?, id.0],
        )?;
        tx.execute(
            "INSERT INTO transitions (campaign, device, from_status, to_status, detail, at)
             VALUES (?1, NULL, ?2, ?2, ?3, ?4)",
            params![
                id.0,
                state,
                Note::UrlMoved {
                    from: old,
                    to: url.to_owned(),
                }
                .to_stored(),
                ts_to_sql(at)?
            ],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Everything `Campaign::resume` needs.
    pub fn load_campaign(&self, id: CampaignId) -> Result<PersistedCampaign, StoreError> {
        let row = self
            .conn
            .query_row(
                "SELECT name, module, dialect_options, policy, offer, state, current_wave, created_at,
                     started_at, finished_at
                 FROM campaigns WHERE id = ?1",
                [id.0],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, Option<String>>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, String>(5)?,
                        r.get::<_, Option<i64>>(6)?,
                        r.get::<_, i64>(7)?,
                        r.get::<_, Option<i64>>(8)?,
                        r.get::<_, Option<i64>>(9)?,
                    ))
                },
            )
            .map_err(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => StoreError::NoSuchCampaign(id),
                e => e.into(),
            })?;
        let (name, module, settings, policy, offer, state, wave, created, started, finished) = row;
        let spec = CampaignSpec {
            name,
            offer: from_json("offer", &offer)?,
            module,
            settings: from_json("dialect options", &settings)?,
            policy: from_json("policy", &policy)?,
        };
        Ok(PersistedCampaign {
            id,
            spec,
            state: state.parse().map_err(|e| corrupt("campaign state", e))?,
            current_wave: opt_to_u32("current_wave", wave)?,
            created_at: ts_from_sql("created_at", created)?,
            started_at: opt_ts_from_sql("started_at", started)?,
            finished_at: opt_ts_from_sql("finished_at", finished)?,
            devices: self.device_outcomes(id)?,
        })
    }

    /// Per-device rows of a campaign, in target order.
    pub fn device_outcomes(&self, id: CampaignId) -> Result<Vec<TargetRecord>, StoreError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {DEVICE_COLUMNS} FROM campaign_devices WHERE campaign = ?1 ORDER BY position"
        ))?;
        let rows = stmt.query_map([id.0], DeviceRowSql::read)?;
        let mut out = Vec::new();
        for row in rows {
            out.push(row?.into_record()?);
        }
        Ok(out)
    }

    /// Every campaign, newest first, with its counts per status.
    pub fn list_campaigns(&self) -> Result<Vec<CampaignRow>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT id, name, package, version, module, state, created_at, started_at, finished_at
             FROM campaigns ORDER BY id DESC",
        )?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, Option<String>>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, i64>(6)?,
                    r.get::<_, Option<i64>>(7)?,
                    r.get::<_, Option<i64>>(8)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let mut out = Vec::with_capacity(rows.len());
        for (id, name, package, version, module, state, created, started, finished) in rows {
            let id = CampaignId(id);
            out.push(CampaignRow {
                id,
                name,
                package,
                version,
                module,
                state: state.parse().map_err(|e| corrupt("campaign state", e))?,
                created_at: ts_from_sql("created_at", created)?,
                started_at: opt_ts_from_sql("started_at", started)?,
                finished_at: opt_ts_from_sql("finished_at", finished)?,
                counts: self.campaign_counts(id)?,
            });
        }
        Ok(out)
    }

    /// Campaigns to resume at start-up: draft, running or paused.
    pub fn unfinished_campaigns(&self) -> Result<Vec<CampaignId>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT id FROM campaigns WHERE state IN ('draft', 'running', 'paused') ORDER BY id",
        )?;
        let ids = stmt
            .query_map([], |r| r.get::<_, i64>(0))?
            .map(|r| r.map(CampaignId))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ids)
    }

    fn campaign_counts(&self, id: CampaignId) -> Result<Counts, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT status, COUNT(*) FROM campaign_devices WHERE campaign = ?1 GROUP BY status",
        )?;
        let rows = stmt.query_map([id.0], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
        })?;
        let mut counts = Counts::default();
        for row in rows {
            let (status, n) = row?;
            let status: DeviceStatus = status.parse().map_err(|e| corrupt("device status", e))?;
            counts.add_n(status, usize::try_from(n).unwrap_or(0));
        }
        Ok(counts)
    }
}
