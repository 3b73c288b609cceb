//! The engine's edge: the MQTT link and its session, the embedded broker (when the console runs
//! one), the firmware server or the external download URL, the per-device download links, and
//! the raw-message inspector.
//!
//! Rules it keeps: every publish, failed or not, is recorded in the inspector (with the error's
//! words); offers are made only through [`OfferUrl`] links this server can serve (or the
//! operator's URL, unchanged); a session the broker did not keep is told to the operator once
//! per loss, and a session absent at start once, when the first campaign in flight can suffer
//! from it; the client id's lock is held for as long as the engine runs.

use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{broadcast, watch};

use super::downloads::{Downloads, KeySlot};
use super::error::{CommandError, DownloadsError};
use super::fleet_state::FleetState;
use super::session_id::SessionClaim;
use super::snapshot::BrokerGuard;
use crate::device_id::DeviceId;
use crate::firmware::{FirmwareError, StoredPackage};
use crate::fleet::inspector::{Direction, Inspector};
use crate::i18n::tr;
use crate::protocol::Outbound;
use crate::rollout::Campaign;
use crate::transport::broker::{BrokerEvent, EmbeddedBroker};
use crate::transport::http::{DownloadGrant, FirmwareServer, OfferUrl, ServedStats};
use crate::transport::mqtt::{LinkError, LinkState, MqttLink, SessionNews};

/// How long the end of a run waits for the link to hand over what was queued (its own drain is
/// bounded shorter; this covers a stuck socket).
const LINK_STOP_LIMIT: std::time::Duration = std::time::Duration::from_secs(5);
/// How long the end of a run waits for the embedded broker to deliver the last messages.
const BROKER_QUIET_LIMIT: std::time::Duration = std::time::Duration::from_secs(2);

/// What start-up made of the I/O edge, handed to [`Io::new`].
pub(super) struct IoParts {
    pub(super) link: MqttLink,
    pub(super) http: Option<FirmwareServer>,
    /// The per-device download links' key (with the embedded firmware server only).
    pub(super) download_key: Option<KeySlot>,
    pub(super) external_url: Option<String>,
    pub(super) firmware_base: Option<String>,
    pub(super) inspector: Arc<Mutex<Inspector>>,
    pub(super) session: SessionClaim,
    pub(super) broker: Option<EmbeddedBroker>,
    pub(super) broker_label: String,
    pub(super) broker_guard: BrokerGuard,
}

pub(super) struct Io {
    link: MqttLink,
    http: Option<FirmwareServer>,
    download_key: Option<KeySlot>,
    external_url: Option<String>,
    firmware_base: Option<String>,
    inspector: Arc<Mutex<Inspector>>,
    /// What the link last said about the MQTT session (`None` before the engine looked).
    session_seen: Option<SessionNews>,
    /// The first ConnAck of this run found no kept session, and no campaign in flight has been
    /// told yet (a campaign resumed later, as `rollout --resume` does, is told then).
    session_absent_untold: bool,
    /// Keeps the client id's lock: no other console on this data directory takes the session.
    session: SessionClaim,
    /// The embedded broker, when the console runs one (told the gateways the fleet learns, so
    /// a DJI dock may publish its drone's state).
    broker: Option<EmbeddedBroker>,
    /// What its gate refused (see `broker_guard.rs`); `None` with an external broker.
    broker_events: Option<broadcast::Receiver<BrokerEvent>>,
    broker_label: String,
    broker_guard: BrokerGuard,
}

impl Io {
    pub(super) fn new(parts: IoParts) -> Io {
        Io {
            broker_events: parts.broker.as_ref().map(EmbeddedBroker::events),
            link: parts.link,
            http: parts.http,
            download_key: parts.download_key,
            external_url: parts.external_url,
            firmware_base: parts.firmware_base,
            inspector: parts.inspector,
            session_seen: None,
            session_absent_untold: false,
            session: parts.session,
            broker: parts.broker,
            broker_label: parts.broker_label,
            broker_guard: parts.broker_guard,
        }
    }

    /// The sentence for the operator when start-up fell back to a clean session.
    pub(super) fn session_warning(&self) -> Option<String> {
        self.session.warning.clone()
    }

    /// Publishes one message and records it in the inspector.
    pub(super) fn publish(
        &self,
        out: Outbound,
        about: Option<DeviceId>,
        now_ms: i64,
    ) -> Result<(), LinkError> {
        let result = self.link.publish(out.clone());
        // The inspector and the log keep the words; the caller gets the typed error.
        let error = result.as_ref().err().map(ToString::to_string);
        if let Some(e) = &error {
            tracing::warn!(topic = %out.topic, error = %e, "publish failed");
        }
        self.inspect(
            now_ms,
            Direction::Out,
            &out.topic,
            &out.payload,
            about,
            error,
        );
        result
    }

    /// Publishes one retained message (the campaign lock's claim; empty clears it) and records
    /// it in the inspector.
    pub(super) fn publish_retained(&self, out: Outbound, now_ms: i64) -> Result<(), LinkError> {
        let result = self.link.publish_retained(out.clone());
        let error = result.as_ref().err().map(ToString::to_string);
        if let Some(e) = &error {
            tracing::warn!(topic = %out.topic, error = %e, "publish failed");
        }
        self.inspect(
            now_ms,
            Direction::Out,
            &out.topic,
            &out.payload,
            None,
            error,
        );
        result
    }

    /// The MQTT client id the link connects with (the campaign lock's console id).
    pub(super) fn client_id(&self) -> &str {
        self.link.client_id()
    }

    /// Records one message (or refused attempt) in the inspector.
    pub(super) fn inspect(
        &self,
        at_ms: i64,
        direction: Direction,
        topic: &str,
        payload: &[u8],
        about: Option<DeviceId>,
        error: Option<String>,
    ) -> u64 {
        self.inspector
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .record(at_ms, direction, topic, payload, about, error)
    }

    /// The link's state as it changes.
    pub(super) fn link_states(&self) -> watch::Receiver<LinkState> {
        self.link.state()
    }

    /// What the link learns of its MQTT session, as it changes.
    pub(super) fn session_changes(&self) -> watch::Receiver<SessionNews> {
        self.link.session()
    }

    pub(super) fn link_state(&self) -> LinkState {
        self.link.state().borrow().clone()
    }

    pub(super) fn is_connected(&self) -> bool {
        *self.link.state().borrow() == LinkState::Connected
    }

    /// Stops the link at the end of the run: what was queued reaches the broker first, and our
    /// own broker gets a moment to deliver it before the process may exit.
    pub(super) async fn shutdown(&self) {
        self.link.shutdown();
        if tokio::time::timeout(LINK_STOP_LIMIT, self.link.stopped())
            .await
            .is_err()
        {
            tracing::warn!("the MQTT link did not stop in time; closing anyway");
        }
        if let Some(broker) = &self.broker {
            broker.quiesce(BROKER_QUIET_LIMIT).await;
        }
    }

    /// Takes in what the link says about the session; returns the warning for the operator,
    /// if this news calls for one. `in_flight`: devices campaigns are waiting to hear from.
    pub(super) fn session_news(&mut self, news: SessionNews, in_flight: usize) -> Option<String> {
        let before = self.session_seen.replace(news).unwrap_or_default();
        if !news.persistent || news.connacks == before.connacks {
            return None;
        }
        if news.lost > before.lost {
            Some(tr!("engine.session_lost", id = self.link.client_id()))
        } else if before.connacks == 0 && !news.present {
            self.session_absent_untold = true;
            self.session_absent_warning(in_flight)
        } else {
            None
        }
    }

    /// The warning for a resumed campaign with devices in flight (`in_flight`), on a run whose
    /// session the broker had not kept: whatever its devices said while the console was away
    /// is gone. Given once.
    pub(super) fn session_absent_warning(&mut self, in_flight: usize) -> Option<String> {
        if !self.session_absent_untold || in_flight == 0 {
            return None;
        }
        self.session_absent_untold = false;
        Some(tr!("engine.session_absent", id = self.link.client_id()))
    }

    /// The next event of the embedded broker; never resolves without one.
    pub(super) async fn next_broker_event(&mut self) -> BrokerEvent {
        next_event(&mut self.broker_events).await
    }

    /// Tells the embedded broker that `device` is attached to `gateway` (a DJI dock may publish
    /// its drone's `state` and `osd`).
    pub(super) fn set_gateway(&self, device: &DeviceId, gateway: &DeviceId) {
        if let Some(broker) = &self.broker {
            broker.set_gateway(device, Some(gateway));
        }
    }

    /// Tells the embedded broker which gateway each known device belongs to: the inventory's at
    /// start, then each topology a gateway reports.
    pub(super) fn tell_broker_gateways(&self, fleet: &FleetState) {
        let Some(broker) = &self.broker else {
            return;
        };
        for record in fleet.sorted() {
            if let Some(gateway) = &record.gateway {
                broker.set_gateway(&record.id, Some(gateway));
            }
        }
    }

    /// The offer's URL: the console's `--url` as it is, or a campaign link of the embedded
    /// server, from which each device's own link is derived (see `downloads`).
    pub(super) fn offer_url(
        &self,
        stored: &StoredPackage,
    ) -> Result<(String, Downloads), CommandError> {
        if let Some(url) = &self.external_url {
            return Ok((url.clone(), Downloads::AsOffered));
        }
        match &self.http {
            Some(http) => Ok((
                http.campaign_url(&stored.package.file_name),
                Downloads::PerDevice { granted: true },
            )),
            None => Err(CommandError::NoFirmwareSource),
        }
    }

    /// Serves a resumed campaign's package again at the links its devices were given (derived
    /// again from the same key: the same links), so that devices noticed before the restart
    /// can still download (and resume with Range requests). A finished campaign's links stay
    /// ended (they come back if it runs again). `package`: the stored package by SHA-256.
    pub(super) fn serve_again(
        &mut self,
        campaign: &Campaign,
        package: impl FnOnce(&str) -> Result<StoredPackage, FirmwareError>,
    ) -> Result<Downloads, CommandError> {
        let (Some(_), None) = (&self.http, &self.external_url) else {
            return Ok(Downloads::AsOffered);
        };
        if OfferUrl::parse(&campaign.spec().offer.url).is_none() {
            // The campaign was given an external download URL: nothing of ours to serve.
            return Ok(Downloads::AsOffered);
        }
        if campaign.state().is_finished() {
            return Ok(Downloads::PerDevice { granted: false });
        }
        self.load_download_key()
            .and_then(|()| self.grant_downloads(campaign, package))
            .map_err(|error| CommandError::ServeAgain {
                campaign: campaign.id(),
                error,
            })?;
        Ok(Downloads::PerDevice { granted: true })
    }

    /// Reads (or makes) the link key, once.
    pub(super) fn load_download_key(&mut self) -> Result<(), DownloadsError> {
        match &mut self.download_key {
            Some(slot) => slot.load(),
            None => Err(DownloadsError::NoServer),
        }
    }

    /// Serves `campaign`'s package to each of its targets under the target's own token.
    /// Refused (with the server's reason) when its link is not one this server can serve.
    /// Needs [`Io::load_download_key`] first. `package`: the stored package by SHA-256.
    pub(super) fn grant_downloads(
        &self,
        campaign: &Campaign,
        package: impl FnOnce(&str) -> Result<StoredPackage, FirmwareError>,
    ) -> Result<(), DownloadsError> {
        let key = self.download_key.as_ref().and_then(KeySlot::key);
        let (Some(http), Some(key)) = (&self.http, key) else {
            return Err(DownloadsError::NoServer);
        };
        let spec = campaign.spec();
        let id = campaign.id().0;
        let told = OfferUrl::parse(&spec.offer.url)
            .ok_or_else(|| DownloadsError::NotOurLink(spec.offer.url.clone()))?;
        let stored = package(&spec.offer.sha256).map_err(DownloadsError::PackageGone)?;
        let devices = campaign
            .devices()
            .iter()
            .map(|rec| {
                let device = rec.device.to_string();
                (key.device_token(id, told.token(), &device), device)
            })
            .collect();
        http.grant(DownloadGrant {
            campaign: id,
            campaign_url: spec.offer.url.clone(),
            file_path: stored.path.clone(),
            file_name: stored.package.file_name.clone(),
            package_key: stored.package.sha256.clone(),
            devices,
        })
        .map_err(|error| DownloadsError::NotServable {
            told: Box::new(told),
            error: Box::new(error),
        })
    }

    /// Ends campaign `campaign`'s links on the embedded server (if there is one).
    pub(super) fn revoke(&self, campaign: i64) {
        if let Some(http) = &self.http {
            http.revoke(campaign);
        }
    }

    /// The link `device` is told in `campaign`'s notices when its devices download per device:
    /// its own link, or `None` when there is no key (or the offer is not our link).
    pub(super) fn device_url(&self, campaign: &Campaign, device: &DeviceId) -> Option<String> {
        let key = self.download_key.as_ref()?.key()?;
        let told = OfferUrl::parse(&campaign.spec().offer.url)?;
        let own = key.device_url(campaign.id().0, &told, &device.to_string());
        Some(own.to_string())
    }

    /// What the firmware server sent, per package and client.
    pub(super) fn served(&self) -> Option<ServedStats> {
        self.http.as_ref().map(FirmwareServer::stats)
    }

    /// Bytes the firmware server sent in all.
    pub(super) fn served_total(&self) -> Option<u64> {
        self.http.as_ref().map(FirmwareServer::total_bytes)
    }

    pub(super) fn broker_label(&self) -> &str {
        &self.broker_label
    }

    pub(super) fn broker_guard(&self) -> BrokerGuard {
        self.broker_guard
    }

    pub(super) fn firmware_base(&self) -> Option<&String> {
        self.firmware_base.as_ref()
    }
}

/// The next event of the embedded broker; never resolves without one (external broker, or the
/// channel closed). Events lost to a full channel are skipped: the counter still has them.
async fn next_event(events: &mut Option<broadcast::Receiver<BrokerEvent>>) -> BrokerEvent {
    loop {
        let Some(rx) = events.as_mut() else {
            return std::future::pending().await;
        };
        match rx.recv().await {
            Ok(event) => return event,
            Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => *events = None,
        }
    }
}
