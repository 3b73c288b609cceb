//! Preparing a resume before the engine starts: the one place outside the running engine that
//! reads a stored campaign, so that the CLI never opens the database behind the engine's back.
//!
//! Owns: reading the link a stored campaign's devices were told, deciding from the firmware
//! configuration whether its downloads move (`--public-url` or an external `--url` names
//! another address: the stored offer is rewritten, on the record) or whether the firmware
//! server comes back at the devices' port (`--http-bind` on port 0), and reporting both so the
//! caller can tell the operator. Must never: change an explicit bind port, or move a campaign
//! to a URL that [`super::validate_download_url`] refuses.

use super::config::{EngineConfig, FirmwareSource};
use super::download_url::DownloadUrlError;
use crate::i18n::tr;
use crate::rollout::CampaignId;
use crate::store::{Store, StoreError};
use crate::transport::http::OfferUrl;

/// What [`prepare_resume`] found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumeInfo {
    /// The link the campaign's devices were told (a link of our firmware server).
    pub told: OfferUrl,
    /// The URL the stored campaign was moved to, when the operator named another address.
    pub moved_to: Option<String>,
}

/// Why a campaign's downloads could not be moved before resuming it.
#[derive(Debug, thiserror::Error)]
pub enum ResumeError {
    #[error("{}", tr!("error.resume.not_moved", campaign = campaign, url = url, why = error))]
    BadUrl {
        campaign: CampaignId,
        url: String,
        error: DownloadUrlError,
    },
    #[error("{}", tr!("error.resume.not_moved", campaign = campaign, url = url, why = error))]
    NotMoved {
        campaign: CampaignId,
        url: String,
        error: StoreError,
    },
}

/// Readies `config` to resume campaign `id`: when its devices were told a link of our firmware
/// server, either moves the stored campaign's downloads to the address the operator named, or
/// brings the firmware server back at the port the devices know. `Ok(None)` when there is
/// nothing to prepare (no database, no such campaign, or an external download URL): the engine
/// then says what is wrong, if anything, when the campaign is resumed.
pub fn prepare_resume(
    config: &mut EngineConfig,
    id: CampaignId,
) -> Result<Option<ResumeInfo>, ResumeError> {
    let Some(told) = told_link_of(&config.db_path, id) else {
        return Ok(None);
    };
    let moved_to = moved_to(&config.firmware, &told);
    match &moved_to {
        Some(url) => move_downloads(&config.db_path, id, url)?,
        None => come_back_at(&mut config.firmware, &told),
    }
    Ok(Some(ResumeInfo { told, moved_to }))
}

/// The download base of campaign `id`, read from the database before the engine opens it.
/// `None` when there is nothing to read (the engine then says what is wrong with the campaign).
/// Only a link whose base is the server's own address (no proxy path) names where the server
/// must listen again.
fn told_link_of(db: &std::path::Path, id: CampaignId) -> Option<OfferUrl> {
    if !db.exists() {
        return None;
    }
    let campaign = Store::open(db).ok()?.load_campaign(id).ok()?;
    told_link(&campaign.spec.offer.url)
}

/// The stored offer `url` as a link of our firmware server at its own address.
fn told_link(url: &str) -> Option<OfferUrl> {
    OfferUrl::parse(url).filter(OfferUrl::base_is_origin)
}

/// Where a resume moves the campaign's downloads to: the operator named another address for
/// devices to download from (`--public-url`, or an external `--url`) than the one they were
/// told. `None` when nothing says the server moved.
fn moved_to(firmware: &FirmwareSource, told: &OfferUrl) -> Option<String> {
    let url = match firmware {
        FirmwareSource::Embedded {
            public_base: Some(base),
            ..
        } => {
            // The token and file name stay: the package is served under the same path.
            told.rebased(base).to_string()
        }
        FirmwareSource::ExternalUrl(url) => url.clone(),
        FirmwareSource::Embedded { .. } | FirmwareSource::Disabled => return None,
    };
    (url != told.to_string()).then_some(url)
}

/// Points the stored campaign at `url` before the engine resumes it: notices from now on
/// carry it. Devices told the old link keep it; one that can no longer download from there
/// fails or times out and is noticed again, with the new link.
fn move_downloads(db: &std::path::Path, id: CampaignId, url: &str) -> Result<(), ResumeError> {
    super::validate_download_url(url).map_err(|error| ResumeError::BadUrl {
        campaign: id,
        url: url.to_owned(),
        error,
    })?;
    Store::open(db)
        .and_then(|mut store| store.move_offer_url(id, url, super::wall_clock_now()))
        .map_err(|error| ResumeError::NotMoved {
            campaign: id,
            url: url.to_owned(),
            error,
        })
}

/// Devices keep the URL they were given (in-flight downloads resume from it, retries repeat
/// it), so a resumed campaign's firmware server must answer there. `--http-bind` on port 0
/// asks for any free port: take the one the devices know. An explicit port is the operator's
/// choice and is left alone; the engine refuses the resume if the devices' URL cannot be
/// served from it ([`super::CommandError::offer_not_servable`]), and the caller says what to
/// pass instead.
fn come_back_at(firmware: &mut FirmwareSource, told: &OfferUrl) {
    if let (
        FirmwareSource::Embedded {
            bind,
            public_base: None,
            tls: None,
        },
        Some(port),
    ) = (firmware, told.port())
        && bind.port() == 0
    {
        bind.set_port(port);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn the_download_base_is_read_from_our_offer_links() {
        let token = TOKEN;
        let url = format!("http://10.0.0.2:41234/fw/{token}/fw%201.bin");
        let told = told_link(&url).unwrap();
        assert_eq!(told.base(), "http://10.0.0.2:41234");
        assert_eq!(told.port(), Some(41234));
        assert_eq!(told.to_string(), url);
        let v6 = told_link(&format!("http://[::1]:8080/fw/{token}/a")).unwrap();
        assert_eq!((v6.base(), v6.port()), ("http://[::1]:8080", Some(8080)));
        let no_port = told_link(&format!("https://fw.example.test/fw/{token}/a"));
        assert_eq!(no_port.unwrap().port(), None);
        let bare_v6 = told_link(&format!("http://[::1]/fw/{token}/a"));
        assert_eq!(bare_v6.unwrap().port(), None);
        assert_eq!(told_link("https://cdn.example.test/x.bin"), None);
        assert_eq!(told_link("ftp://x:21/fw/a/b"), None);
        assert_eq!(told_link(&format!("http://a/b/fw/{token}/y")), None);
        assert_eq!(told_link("http://a:1/fw/not-a-token/y"), None);
    }

    #[test]
    fn only_any_free_port_is_replaced_by_the_devices_port() {
        let told = told_link(&format!("http://127.0.0.1:41234/fw/{TOKEN}/f")).unwrap();
        let embedded = |bind: &str, public_base: Option<&str>| FirmwareSource::Embedded {
            bind: bind.parse().unwrap(),
            public_base: public_base.map(str::to_owned),
            tls: None,
        };
        let bind_of = |source: &FirmwareSource| match source {
            FirmwareSource::Embedded { bind, .. } => bind.to_string(),
            other => panic!("{other:?}"),
        };
        let mut any = embedded("127.0.0.1:0", None);
        come_back_at(&mut any, &told);
        assert_eq!(bind_of(&any), "127.0.0.1:41234");
        let mut explicit = embedded("0.0.0.0:9000", None);
        come_back_at(&mut explicit, &told);
        assert_eq!(bind_of(&explicit), "0.0.0.0:9000");
        let mut proxied = embedded("127.0.0.1:0", Some("https://fw.example.test"));
        come_back_at(&mut proxied, &told);
        assert_eq!(bind_of(&proxied), "127.0.0.1:0");
        let mut external = FirmwareSource::ExternalUrl("https://cdn.example.test/x".into());
        come_back_at(&mut external, &told);
        assert!(matches!(external, FirmwareSource::ExternalUrl(_)));
    }

    #[test]
    fn a_public_url_or_an_external_url_moves_the_downloads() {
        let told = told_link(&format!("http://10.0.0.2:8080/fw/{TOKEN}/fw.bin")).unwrap();
        let embedded = |public_base: Option<&str>| FirmwareSource::Embedded {
            bind: "0.0.0.0:8080".parse().unwrap(),
            public_base: public_base.map(str::to_owned),
            tls: None,
        };
        assert_eq!(moved_to(&embedded(None), &told), None);
        assert_eq!(
            moved_to(&embedded(Some("http://10.0.0.2:8080/")), &told),
            None
        );
        assert_eq!(
            moved_to(&embedded(Some("http://10.0.0.7:9000")), &told),
            Some(format!("http://10.0.0.7:9000/fw/{TOKEN}/fw.bin"))
        );
        let cdn = FirmwareSource::ExternalUrl("https://cdn.example.test/fw.bin".into());
        assert_eq!(
            moved_to(&cdn, &told).as_deref(),
            Some("https://cdn.example.test/fw.bin")
        );
        assert_eq!(moved_to(&FirmwareSource::Disabled, &told), None);
    }

    /// Stores campaign 1 whose devices were told `url`, in the database of `config`.
    fn store_campaign(config: &EngineConfig, url: &str) -> CampaignId {
        use crate::protocol::FirmwareOffer;
        use crate::rollout::{Campaign, CampaignSpec, DialectSettings, Policy, Target, Timestamp};
        use crate::store::PackageRecord;
        let mut store = Store::open(&config.db_path).unwrap();
        store
            .save_package(&PackageRecord {
                sha256: "f".repeat(64),
                file_name: "fw.bin".into(),
                size: 1,
                md5: "0".repeat(32),
                checksum: "01000000".into(),
                store_path: std::path::PathBuf::from("/x"),
                imported_at: Timestamp::from_millis(0),
            })
            .unwrap();
        let spec = CampaignSpec {
            name: "c".into(),
            offer: FirmwareOffer {
                version: "2.0".into(),
                url: url.into(),
                size: 1,
                md5: "0".repeat(32),
                sha256: "f".repeat(64),
                checksum: "01000000".into(),
                file_name: "fw.bin".into(),
                description: String::new(),
            },
            module: None,
            settings: DialectSettings::default(),
            policy: Policy::default(),
        };
        let target = Target {
            device: "aliyun:pk/a".parse().unwrap(),
            version: Some("1.0".into()),
            online: true,
            heard_at: None,
        };
        let id = store.next_campaign_id().unwrap();
        let campaign = Campaign::new(id, spec, vec![target], Timestamp::from_millis(1)).unwrap();
        store.create_campaign(&campaign.persisted()).unwrap();
        id
    }

    fn config_in(dir: &std::path::Path) -> EngineConfig {
        EngineConfig::embedded(
            "127.0.0.1:0".parse().unwrap(),
            "127.0.0.1:0".parse().unwrap(),
            dir.to_path_buf(),
        )
    }

    #[test]
    fn a_resume_comes_back_at_the_told_port_or_moves_the_stored_downloads() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = config_in(dir.path());
        // No database yet: nothing to prepare, and none is created.
        assert_eq!(prepare_resume(&mut config, CampaignId(1)).unwrap(), None);
        assert!(!config.db_path.exists());

        let told = format!("http://127.0.0.1:41234/fw/{TOKEN}/fw.bin");
        let id = store_campaign(&config, &told);
        let info = prepare_resume(&mut config, id).unwrap().unwrap();
        assert_eq!(info.told.to_string(), told);
        assert_eq!(info.moved_to, None);
        assert!(matches!(
            &config.firmware,
            FirmwareSource::Embedded { bind, .. } if bind.port() == 41234
        ));

        // Another public base: the stored offer moves there, on the record.
        let mut moved = config_in(dir.path());
        if let FirmwareSource::Embedded { public_base, .. } = &mut moved.firmware {
            *public_base = Some("http://10.0.0.7:9000/".into());
        }
        let info = prepare_resume(&mut moved, id).unwrap().unwrap();
        let new_url = format!("http://10.0.0.7:9000/fw/{TOKEN}/fw.bin");
        assert_eq!(info.moved_to.as_deref(), Some(new_url.as_str()));
        let stored = Store::open(&moved.db_path)
            .unwrap()
            .load_campaign(id)
            .unwrap();
        assert_eq!(stored.spec.offer.url, new_url);

        // A URL the devices could not be given is refused, and nothing is moved.
        let mut bad = config_in(dir.path());
        bad.firmware = FirmwareSource::ExternalUrl("ftp://cdn.example.test/fw.bin".into());
        let err = prepare_resume(&mut bad, id).unwrap_err();
        assert!(matches!(err, ResumeError::BadUrl { .. }), "{err}");
        assert!(
            err.to_string()
                .starts_with(&format!("cannot move campaign {id}'s downloads to ftp://")),
            "{err}"
        );
        let stored = Store::open(&bad.db_path)
            .unwrap()
            .load_campaign(id)
            .unwrap();
        assert_eq!(stored.spec.offer.url, new_url);
    }
}
