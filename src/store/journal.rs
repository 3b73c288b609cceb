//! The `transitions` journal: applying a [`Transition`] (the device or campaign row it changes
//! plus one journal line for every status change) and reading the history back.

use rusqlite::{Transaction, params};

use super::campaigns::write_device;
use super::sql::{Store, StoreError, corrupt, ts_from_sql, ts_to_sql};
use crate::device_id::DeviceId;
use crate::rollout::{CampaignId, Change, Note, Timestamp, Transition};

/// One line of a campaign's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalEntry {
    pub campaign: CampaignId,
    /// `None` for a campaign-level line (state change, wave opened).
    pub device: Option<DeviceId>,
    /// Device status or campaign state names, as in the snapshot.
    pub from: String,
    pub to: String,
    /// Worded when shown; a line written before notes were typed is a [`Note::Text`].
    pub detail: Note,
    pub at: Timestamp,
}

/// Writes one transition inside the caller's transaction.
pub(super) fn apply(tx: &Transaction<'_>, t: &Transition) -> Result<(), StoreError> {
    let at = ts_to_sql(t.at)?;
    match &t.change {
        Change::Device {
            from,
            record,
            detail,
        } => {
            write_device(tx, t.campaign, record)?;
            insert_line(
                tx,
                t.campaign,
                Some(&record.device),
                from.as_str(),
                record.status.as_str(),
                &detail.to_stored(),
                at,
            )
        }
        Change::Update { record } => write_device(tx, t.campaign, record),
        Change::Campaign {
            from,
            to,
            current_wave,
            detail,
        } => {
            let changed = tx.execute(
                "UPDATE campaigns SET state = ?2, current_wave = ?3,
                     started_at = CASE WHEN ?2 = 'running' THEN COALESCE(started_at, ?4) ELSE started_at END,
                     finished_at = CASE WHEN ?5 THEN COALESCE(finished_at, ?4) ELSE NULL END
                 WHERE id = ?1",
                params![t.campaign.0, to.as_str(), current_wave.map(i64::from), at, to.is_finished()],
            )?;
            if changed == 0 {
                return Err(StoreError::NoSuchCampaign(t.campaign));
            }
            insert_line(
                tx,
                t.campaign,
                None,
                from.as_str(),
                to.as_str(),
                &detail.to_stored(),
                at,
            )
        }
    }
}

fn insert_line(
    tx: &Transaction<'_>,
    campaign: CampaignId,
    device: Option<&DeviceId>,
    from: &str,
    to: &str,
    detail: &str,
    at: i64,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO transitions (campaign, device, from_status, to_status, detail, at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        campaign.0,
        device.map(|d| d.to_string()),
        from,
        to,
        detail,
        at
    ])?;
    Ok(())
}

impl Store {
    /// A campaign's whole history in the order it happened.
    pub fn journal(&self, campaign: CampaignId) -> Result<Vec<JournalEntry>, StoreError> {
        self.journal_query(campaign, None)
    }

    /// One device's history in a campaign.
    pub fn device_journal(
        &self,
        campaign: CampaignId,
        device: &DeviceId,
    ) -> Result<Vec<JournalEntry>, StoreError> {
        self.journal_query(campaign, Some(device))
    }

    fn journal_query(
        &self,
        campaign: CampaignId,
        device: Option<&DeviceId>,
    ) -> Result<Vec<JournalEntry>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT device, from_status, to_status, detail, at FROM transitions
             WHERE campaign = ?1 AND (?2 IS NULL OR device = ?2) ORDER BY id",
        )?;
        let rows = stmt.query_map(params![campaign.0, device.map(|d| d.to_string())], |r| {
            Ok((
                r.get::<_, Option<String>>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, i64>(4)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (device, from, to, detail, at) = row?;
            out.push(JournalEntry {
                campaign,
                device: device
                    .map(|d| d.parse())
                    .transpose()
                    .map_err(|e| corrupt("journal device", e))?,
                from,
                to,
                detail: Note::from_stored(&detail),
                at: ts_from_sql("journal at", at)?,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::protocol::FirmwareOffer;
    use crate::rollout::{
        Campaign, CampaignSpec, CampaignState, DeviceStatus, DialectSettings, Policy,
        SequentialIds, Target,
    };
    use crate::store::{PackageRecord, StoreError};

    fn offer() -> FirmwareOffer {
        FirmwareOffer {
            version: "2.0".into(),
            url: "http://127.0.0.1:1/f".into(),
            size: 1,
            md5: "0".repeat(32),
            sha256: "f".repeat(64),
            checksum: "01000000".into(),
            file_name: "f".into(),
            description: String::new(),
        }
    }

    fn campaign(id: i64) -> Campaign {
        campaign_with(id, DialectSettings::default())
    }

    fn campaign_with(id: i64, settings: DialectSettings) -> Campaign {
        let spec = CampaignSpec {
            name: "c".into(),
            offer: offer(),
            module: Some("MCU".into()),
            settings,
            policy: Policy::default(),
        };
        let targets = ["aliyun:pk/a", "aliyun:pk/b"]
            .iter()
            .map(|d| Target {
                device: d.parse().unwrap(),
                version: Some("1.0".into()),
                online: true,
                heard_at: None,
            })
            .collect();
        Campaign::new(CampaignId(id), spec, targets, Timestamp::from_millis(1)).unwrap()
    }

    #[test]
    fn a_campaigns_text_settings_are_stored_with_it() {
        use crate::protocol::aws;
        let mut store = store_with_package();
        let template = "{\"image\": \"{{url}}\", \"bytes\": {{size}}}";
        let mut settings = DialectSettings::default();
        settings.set(aws::ID, &aws::DOCUMENT, template).unwrap();
        let c = campaign_with(1, settings);
        store.create_campaign(&c.persisted()).unwrap();
        let loaded = store.load_campaign(CampaignId(1)).unwrap();
        assert_eq!(loaded, c.persisted());
        assert_eq!(
            loaded
                .spec
                .settings
                .for_dialect(aws::ID)
                .text_of(&aws::DOCUMENT),
            template
        );
    }

    fn store_with_package() -> Store {
        let mut store = Store::open_in_memory().unwrap();
        store
            .save_package(&PackageRecord {
                sha256: "f".repeat(64),
                file_name: "f".into(),
                size: 1,
                md5: "0".repeat(32),
                checksum: "01000000".into(),
                store_path: PathBuf::from("/x"),
                imported_at: Timestamp::from_millis(0),
            })
            .unwrap();
        store
    }

    #[test]
    fn transitions_round_trip_through_the_journal() {
        let mut store = store_with_package();
        let mut c = campaign(1);
        store.create_campaign(&c.persisted()).unwrap();
        assert!(matches!(
            store.create_campaign(&c.persisted()),
            Err(StoreError::CampaignExists(CampaignId(1)))
        ));
        let actions = c.handle(
            crate::rollout::Input::Start,
            Timestamp::from_millis(5),
            &mut SequentialIds::new(),
        );
        let transitions: Vec<Transition> = actions
            .into_iter()
            .filter_map(|a| match a {
                crate::rollout::Action::Persist(t) => Some(*t),
                _ => None,
            })
            .collect();
        store.apply_all(&transitions).unwrap();
        assert_eq!(store.load_campaign(CampaignId(1)).unwrap(), c.persisted());

        let journal = store.journal(CampaignId(1)).unwrap();
        assert_eq!(journal[0].device, None);
        assert_eq!(
            (journal[0].from.as_str(), journal[0].to.as_str()),
            ("draft", "running")
        );
        let device: DeviceId = "aliyun:pk/a#MCU".parse().unwrap();
        let lines = store.device_journal(CampaignId(1), &device).unwrap();
        assert_eq!(lines.len(), 1);
        assert_eq!(
            (lines[0].from.as_str(), lines[0].to.as_str()),
            ("pending", "noticed")
        );
        assert_eq!(lines[0].at, Timestamp::from_millis(5));

        let rows = store.list_campaigns().unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].state, CampaignState::Running);
        assert_eq!(rows[0].started_at, Some(Timestamp::from_millis(5)));
        assert_eq!(rows[0].counts.get(DeviceStatus::Noticed), 1);
        assert_eq!(rows[0].counts.total, 2);
        assert_eq!(store.unfinished_campaigns().unwrap(), vec![CampaignId(1)]);
        assert_eq!(store.next_campaign_id().unwrap(), CampaignId(2));
    }

    #[test]
    fn moving_the_offer_url_keeps_everything_else_and_is_journaled() {
        let mut store = store_with_package();
        let c = campaign(1);
        store.create_campaign(&c.persisted()).unwrap();
        let url = "http://10.0.0.9:8080/fw/0123456789abcdef0123456789abcdef/f";
        store
            .move_offer_url(CampaignId(1), url, Timestamp::from_millis(9))
            .unwrap();
        let mut expected = c.persisted();
        expected.spec.offer.url = url.into();
        assert_eq!(store.load_campaign(CampaignId(1)).unwrap(), expected);
        let journal = store.journal(CampaignId(1)).unwrap();
        assert_eq!(journal.len(), 1);
        assert_eq!(journal[0].device, None);
        assert_eq!(
            (journal[0].from.as_str(), journal[0].to.as_str()),
            ("draft", "draft")
        );
        assert_eq!(
            journal[0].detail.to_string(),
            format!("download URL moved from http://127.0.0.1:1/f to {url}")
        );
        assert!(matches!(
            store.move_offer_url(CampaignId(2), url, Timestamp::from_millis(9)),
            Err(StoreError::NoSuchCampaign(CampaignId(2)))
        ));
    }

    #[test]
    fn a_transition_for_a_missing_campaign_changes_nothing() {
        let mut store = store_with_package();
        let c = campaign(1);
        store.create_campaign(&c.persisted()).unwrap();
        let good = Transition {
            campaign: CampaignId(1),
            at: Timestamp::from_millis(2),
            change: Change::Campaign {
                from: CampaignState::Draft,
                to: CampaignState::Canceled,
                current_wave: None,
                detail: "x".into(),
            },
        };
        let bad = Transition {
            campaign: CampaignId(9),
            ..good.clone()
        };
        assert!(matches!(
            store.apply_all(&[good, bad]),
            Err(StoreError::NoSuchCampaign(CampaignId(9)))
        ));
        // All or nothing: the good half was rolled back.
        assert_eq!(
            store.load_campaign(CampaignId(1)).unwrap().state,
            CampaignState::Draft
        );
        assert!(store.journal(CampaignId(1)).unwrap().is_empty());
        assert!(matches!(
            store.load_campaign(CampaignId(9)),
            Err(StoreError::NoSuchCampaign(_))
        ));
    }

    #[test]
    fn a_campaign_needs_its_package() {
        let mut store = Store::open_in_memory().unwrap();
        assert!(matches!(
            store.create_campaign(&campaign(1).persisted()),
            Err(StoreError::NoSuchPackage(_))
        ));
    }

    #[test]
    fn integrity_check_reports_dangling_rows() {
        let store = store_with_package();
        store.integrity_check().unwrap();
        store
            .conn
            .execute_batch(
                "PRAGMA foreign_keys = OFF;
                 INSERT INTO transitions (campaign, device, from_status, to_status, detail, at)
                 VALUES (42, NULL, 'draft', 'running', '', 0);
                 PRAGMA foreign_keys = ON;",
            )
            .unwrap();
        match store.integrity_check() {
            Err(StoreError::Integrity(problems)) => {
                assert!(problems[0].contains("transitions"), "{problems:?}");
            }
            other => panic!("expected an integrity error, got {other:?}"),
        }
    }
}
