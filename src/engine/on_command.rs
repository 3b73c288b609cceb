//! Operator commands: import a package, start / resume / steer campaigns. Each is checked here
//! and refused with a sentence the UI can show, never a panic.

use super::command::{CampaignRequest, Command, Reply};
use super::error::CommandError;
use super::live::Downloads;
use super::runner::Runner;
use super::snapshot::AlertLevel;
use crate::device_id::DeviceId;
use crate::firmware::StoredPackage;
use crate::fleet::{DeviceRecord, Fleet};
use crate::protocol::FirmwareOffer;
use crate::rollout::{Campaign, CampaignId, CampaignSpec, CampaignState, Input, Target, Timestamp};
use crate::store::{PackageRecord, StoreError};
use crate::transport::http::OfferUrl;

impl Runner {
    pub(super) fn on_command(&mut self, command: Command) {
        match command {
            Command::ImportFirmware { path, reply } => self.start_import(path, reply),
            Command::CancelImport => {
                if let Some(job) = &self.import {
                    job.cancel.cancel();
                }
            }
            Command::StartCampaign { request, reply } => {
                let result = self.start_campaign(*request);
                self.answer(reply, result);
            }
            Command::ResumeCampaign { id, reply } => {
                let result = self.resume_campaign(id);
                self.answer(reply, result);
            }
            Command::Pause(id) => self.steer(id, Input::Pause),
            Command::Resume(id) => self.steer(id, Input::Resume),
            Command::Cancel(id) => self.steer(id, Input::Cancel),
            Command::RetryFailed(id) => self.steer(id, Input::RetryFailed),
            Command::AdvanceWave(id) => self.steer(id, Input::AdvanceWave),
            Command::DismissAlerts => {
                self.alerts.clear();
                self.dirty = true;
            }
            // Handled by the loop.
            Command::Shutdown => {}
        }
    }

    fn answer<T>(&mut self, reply: Option<Reply<T>>, result: Result<T, CommandError>) {
        if let Err(e) = &result {
            self.alert(AlertLevel::Error, e.to_string());
        }
        if let Some(reply) = reply {
            let _ = reply.send(result);
        }
    }

    fn steer(&mut self, id: CampaignId, input: Input) {
        match self.live.iter().position(|l| l.campaign.id() == id) {
            Some(idx) => self.drive(idx, input),
            None => self.alert(
                AlertLevel::Warning,
                format!("campaign {id} is not running in this console"),
            ),
        }
    }

    fn start_campaign(&mut self, request: CampaignRequest) -> Result<CampaignId, CommandError> {
        let stored = self
            .packages
            .get(&request.package_sha256)
            .map_err(CommandError::UnknownPackage)?;
        self.save_package(&stored)
            .map_err(CommandError::PackageNotRecorded)?;
        let module = request.module.clone().filter(|m| !m.trim().is_empty());
        let targets = self.targets_for(&request.targets, module.as_deref())?;
        let (url, downloads) = match &request.download_url {
            Some(url) => {
                super::validate_download_url(url).map_err(CommandError::BadDownloadUrl)?;
                (url.clone(), Downloads::AsOffered)
            }
            None => self.offer_url(&stored)?,
        };
        let offer = FirmwareOffer {
            version: request.version.trim().to_owned(),
            url,
            size: stored.package.size,
            md5: stored.package.md5.clone(),
            sha256: stored.package.sha256.clone(),
            checksum: stored.package.checksum.clone(),
            file_name: stored.package.file_name.clone(),
            description: request.description.clone(),
        };
        let name = if request.name.trim().is_empty() {
            format!("{} to {}", stored.package.file_name, offer.version)
        } else {
            request.name.trim().to_owned()
        };
        let spec = CampaignSpec {
            name,
            offer,
            module,
            settings: request.settings,
            policy: request.policy,
        };
        let id = self
            .store
            .next_campaign_id()
            .map_err(CommandError::NotRecorded)?;
        let mut campaign =
            Campaign::new(id, spec, targets, self.clock.now()).map_err(CommandError::Rollout)?;
        self.tell_gateways(&mut campaign);
        // A device heard a moment ago may have reported before it subscribed: let it settle.
        for device in &request.targets {
            if let Some(record) = self.fleet.get(device)
                && let Ok(heard) = u64::try_from(record.last_seen_ms)
            {
                campaign.note_heard(device, Timestamp::from_millis(heard));
            }
        }
        if downloads != Downloads::AsOffered {
            self.load_download_key()
                .and_then(|()| self.grant_downloads(&campaign))
                .map_err(CommandError::Downloads)?;
        }
        if let Err(e) = self.store.create_campaign(&campaign.persisted()) {
            if let Some(http) = &self.http {
                http.revoke(id.0);
            }
            return Err(CommandError::NotRecorded(e));
        }
        let idx = self.add_live(campaign, downloads);
        self.drive(idx, Input::Start);
        self.live[idx].record_timeline(self.clock.now_ms());
        Ok(id)
    }

    /// The campaign's targets with what the fleet knows of them. A device+module already in an
    /// unfinished campaign is refused: two campaigns would fight over it.
    fn targets_for(
        &self,
        devices: &[DeviceId],
        module: Option<&str>,
    ) -> Result<Vec<Target>, CommandError> {
        if devices.is_empty() {
            return Err(CommandError::NoTargets);
        }
        let mut targets = Vec::with_capacity(devices.len());
        for device in devices {
            let device = device
                .device()
                .with_module(module)
                .map_err(CommandError::BadModule)?;
            if let Some(idx) = self.campaign_for(&device) {
                return Err(CommandError::TargetBusy {
                    campaign: self.live[idx].campaign.id(),
                    device,
                });
            }
            let record = self.fleet.get(&device);
            targets.push(Target {
                version: record.and_then(|r| r.version(module).map(str::to_owned)),
                online: record.map_or_else(
                    || super::inventory::assumed_reachable(device.dialect()),
                    |r| r.online,
                ),
                heard_at: record
                    .and_then(DeviceRecord::heard_at_ms)
                    .and_then(|ms| u64::try_from(ms).ok())
                    .map(Timestamp::from_millis),
                device,
            });
        }
        Ok(targets)
    }

    /// The offer's URL: the console's `--url` as it is, or a campaign link of the embedded
    /// server, from which each device's own link is derived (see `downloads`).
    fn offer_url(&self, stored: &StoredPackage) -> Result<(String, Downloads), CommandError> {
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

    pub(super) fn save_package(&mut self, stored: &StoredPackage) -> Result<(), StoreError> {
        let record = PackageRecord {
            sha256: stored.package.sha256.clone(),
            file_name: stored.package.file_name.clone(),
            size: stored.package.size,
            md5: stored.package.md5.clone(),
            checksum: stored.package.checksum.clone(),
            store_path: stored.path.clone(),
            imported_at: self.clock.now(),
        };
        self.store.save_package(&record).map(|_| ())
    }

    /// Picks a stored campaign up where it was.
    pub(super) fn resume_campaign(&mut self, id: CampaignId) -> Result<CampaignId, CommandError> {
        if self.live.iter().any(|l| l.campaign.id() == id) {
            return Ok(id);
        }
        let persisted = self
            .store
            .load_campaign(id)
            .map_err(|error| CommandError::NotStored {
                campaign: id,
                error,
            })?;
        let fleet = &self.fleet;
        let is_online = |d: &DeviceId| {
            fleet.get(d).map_or_else(
                || super::inventory::assumed_reachable(d.dialect()),
                |r| r.online,
            )
        };
        let mut campaign =
            Campaign::resume(persisted, self.clock.now(), &is_online).map_err(|error| {
                CommandError::NotResumable {
                    campaign: id,
                    error,
                }
            })?;
        let downloads = self.serve_again(&campaign)?;
        self.tell_gateways(&mut campaign);
        self.history.retain(|h| h.snapshot.id != id);
        // A campaign recorded but killed before its start transition is still a draft.
        let first = if campaign.state() == CampaignState::Draft {
            Input::Start
        } else {
            Input::Tick
        };
        let idx = self.add_live(campaign, downloads);
        self.drive(idx, first);
        self.replay_versions_heard(idx);
        self.tell_session_absent();
        self.live[idx].record_timeline(self.clock.now_ms());
        Ok(id)
    }

    /// The fleet's topology, so the campaign upgrades one device per gateway at a time where
    /// the dialect says so.
    fn tell_gateways(&self, campaign: &mut Campaign) {
        set_gateways_from(&self.fleet, campaign);
    }

    /// After a topology change (a drone joined or left a dock).
    pub(super) fn refresh_gateways(&mut self) {
        for live in &mut self.live {
            if live.campaign.has_gateway_limits() {
                set_gateways_from(&self.fleet, &mut live.campaign);
            }
        }
    }

    /// Serves a resumed campaign's package again at the links its devices were given (derived
    /// again from the same key: the same links), so that devices noticed before the restart
    /// can still download (and resume with Range requests). A finished campaign's links stay
    /// ended (they come back if it runs again).
    fn serve_again(&mut self, campaign: &Campaign) -> Result<Downloads, CommandError> {
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
            .and_then(|()| self.grant_downloads(campaign))
            .map_err(|error| CommandError::ServeAgain {
                campaign: campaign.id(),
                error,
            })?;
        Ok(Downloads::PerDevice { granted: true })
    }
}

/// The gateway of each target of a one-upgrade-per-gateway dialect (e.g. a DJI drone's dock), as
/// the fleet's topology has it.
fn set_gateways_from(fleet: &Fleet, campaign: &mut Campaign) {
    campaign.set_gateways(&|d: &DeviceId| fleet.get(d).and_then(|r| r.gateway.clone()));
}
