//! Operator commands: import a package, start / resume / steer campaigns. Each is checked here
//! and refused with a sentence the UI can show, never a panic.

use std::path::PathBuf;

use super::Runner;
use crate::device_id::DeviceId;
use crate::engine::campaigns::set_gateways_from;
use crate::engine::command::{CampaignRequest, Command, Reply};
use crate::engine::downloads::Downloads;
use crate::engine::error::CommandError;
use crate::engine::library::save_package;
use crate::engine::snapshot::AlertLevel;
use crate::firmware::StoredPackage;
use crate::fleet::DeviceRecord;
use crate::i18n::tr;
use crate::protocol::FirmwareOffer;
use crate::rollout::{Campaign, CampaignId, CampaignSpec, CampaignState, Input, Target, Timestamp};

impl Runner {
    pub(super) fn on_command(&mut self, command: Command) {
        match command {
            Command::ImportFirmware { path, reply } => self.start_import(path, reply),
            Command::CancelImport => self.library.cancel_import(),
            Command::StartCampaign { request, reply } => self.claim_and_start(*request, reply),
            Command::ResumeCampaign { id, reply } => self.claim_and_resume(id, reply),
            Command::Pause(id) => self.steer(id, Input::Pause),
            Command::Resume(id) => self.steer(id, Input::Resume),
            Command::Cancel(id) => self.steer(id, Input::Cancel),
            Command::RetryFailed(id) => self.steer(id, Input::RetryFailed),
            Command::AdvanceWave(id) => self.steer(id, Input::AdvanceWave),
            Command::DismissAlerts => self.alerts.clear(),
            // Handled by the loop.
            Command::Shutdown => {}
        }
    }

    /// Starts an import; refused while another runs (one import at a time).
    fn start_import(&mut self, path: PathBuf, reply: Option<Reply<StoredPackage>>) {
        match self.library.start_import(path, reply) {
            Ok(()) => self.publisher.mark(),
            Err(reply) => {
                let refused = CommandError::ImportRunning;
                self.alert(AlertLevel::Warning, refused.to_string());
                if let Some(reply) = reply {
                    let _ = reply.send(Err(refused));
                }
            }
        }
    }

    pub(super) fn answer<T>(&mut self, reply: Option<Reply<T>>, result: Result<T, CommandError>) {
        if let Err(e) = &result {
            // A caller waiting for the reply says it itself (the CLI, once); the window reads
            // the alert either way.
            if reply.is_some() {
                self.alerts
                    .keep(AlertLevel::Error, e.to_string(), self.clock.now_ms());
            } else {
                self.alert(AlertLevel::Error, e.to_string());
            }
        }
        if let Some(reply) = reply {
            let _ = reply.send(result);
        }
    }

    fn steer(&mut self, id: CampaignId, input: Input) {
        match self.campaigns.position(id) {
            Some(idx) => self.drive(idx, input),
            None => self.alert(
                AlertLevel::Warning,
                tr!("engine.alert.not_running", id = id),
            ),
        }
    }

    /// The campaign's name: the operator's, or derived from the package and version. Also its
    /// key in the campaign lock.
    pub(super) fn campaign_name(&self, request: &CampaignRequest) -> Result<String, CommandError> {
        if !request.name.trim().is_empty() {
            return Ok(request.name.trim().to_owned());
        }
        let stored = self
            .library
            .get(&request.package_sha256)
            .map_err(CommandError::UnknownPackage)?;
        Ok(format!(
            "{} to {}",
            stored.package.file_name,
            request.version.trim()
        ))
    }

    pub(super) fn start_campaign(
        &mut self,
        request: CampaignRequest,
    ) -> Result<CampaignId, CommandError> {
        let stored = self
            .library
            .get(&request.package_sha256)
            .map_err(CommandError::UnknownPackage)?;
        save_package(&mut self.store, &stored, self.clock.now())
            .map_err(CommandError::PackageNotRecorded)?;
        let module = request.module.clone().filter(|m| !m.trim().is_empty());
        let targets = self.targets_for(&request.targets, module.as_deref())?;
        let (url, downloads) = match &request.download_url {
            Some(url) => {
                crate::engine::download_url::validate_download_url(url)
                    .map_err(CommandError::BadDownloadUrl)?;
                (url.clone(), Downloads::AsOffered)
            }
            None => self.io.offer_url(&stored)?,
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
        let name = self.campaign_name(&request)?;
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
            self.io
                .load_download_key()
                .and_then(|()| {
                    self.io
                        .grant_downloads(&campaign, |sha| self.library.get(sha))
                })
                .map_err(CommandError::Downloads)?;
        }
        if let Err(e) = self.store.create_campaign(&campaign.persisted()) {
            self.io.revoke(id.0);
            return Err(CommandError::NotRecorded(e));
        }
        let idx = self.add_live(campaign, downloads);
        self.drive(idx, Input::Start);
        self.campaigns.record_timeline(idx, self.clock.now_ms());
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
            if let Some(campaign) = self.campaigns.busy_with(&device) {
                return Err(CommandError::TargetBusy { campaign, device });
            }
            let record = self.fleet.get(&device);
            targets.push(Target {
                version: record.and_then(|r| r.version(module).map(str::to_owned)),
                online: self.fleet.reachable(&device),
                heard_at: record
                    .and_then(DeviceRecord::heard_at_ms)
                    .and_then(|ms| u64::try_from(ms).ok())
                    .map(Timestamp::from_millis),
                device,
            });
        }
        Ok(targets)
    }

    /// Picks a stored campaign up where it was.
    pub(super) fn resume_campaign(&mut self, id: CampaignId) -> Result<CampaignId, CommandError> {
        if self.campaigns.position(id).is_some() {
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
        let is_online = |d: &DeviceId| fleet.reachable(d);
        let mut campaign =
            Campaign::resume(persisted, self.clock.now(), &is_online).map_err(|error| {
                CommandError::NotResumable {
                    campaign: id,
                    error,
                }
            })?;
        let downloads = self
            .io
            .serve_again(&campaign, |sha| self.library.get(sha))?;
        self.tell_gateways(&mut campaign);
        self.campaigns.forget_history(id);
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
        self.campaigns.record_timeline(idx, self.clock.now_ms());
        Ok(id)
    }

    /// The fleet's topology, so the campaign upgrades one device per gateway at a time where
    /// the dialect says so.
    fn tell_gateways(&self, campaign: &mut Campaign) {
        set_gateways_from(&self.fleet, campaign);
    }

    /// After a topology change (a drone joined or left a dock).
    pub(super) fn refresh_gateways(&mut self) {
        self.campaigns.refresh_gateways(&self.fleet);
    }
}
