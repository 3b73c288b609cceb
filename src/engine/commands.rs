//! Operator commands: import a package, start / resume / steer campaigns. Each is checked here
//! and refused with a sentence the UI can show, never a panic.

use super::command::{CampaignRequest, Command, Reply};
use super::live::Downloads;
use super::runner::Runner;
use super::snapshot::AlertLevel;
use crate::device_id::DeviceId;
use crate::firmware::StoredPackage;
use crate::fleet::{DeviceRecord, Fleet};
use crate::protocol::FirmwareOffer;
use crate::rollout::{Campaign, CampaignId, CampaignSpec, CampaignState, Input, Target, Timestamp};
use crate::store::PackageRecord;

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

    fn answer<T>(&mut self, reply: Option<Reply<T>>, result: Result<T, String>) {
        if let Err(e) = &result {
            self.alert(AlertLevel::Error, e.clone());
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

    fn start_campaign(&mut self, request: CampaignRequest) -> Result<CampaignId, String> {
        let stored = self
            .packages
            .get(&request.package_sha256)
            .map_err(|e| format!("cannot start the rollout: {e}"))?;
        self.save_package(&stored)?;
        let module = request.module.clone().filter(|m| !m.trim().is_empty());
        let targets = self.targets_for(&request.targets, module.as_deref())?;
        let (url, downloads) = match &request.download_url {
            Some(url) => {
                super::validate_download_url(url)
                    .map_err(|e| format!("cannot start the rollout: {e}"))?;
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
            .map_err(|e| format!("cannot start the rollout: {e}"))?;
        let mut campaign = Campaign::new(id, spec, targets, self.clock.now())
            .map_err(|e| format!("cannot start the rollout: {e}"))?;
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
                .map_err(|e| format!("cannot start the rollout: {e}"))?;
        }
        if let Err(e) = self.store.create_campaign(&campaign.persisted()) {
            if let Some(http) = &self.http {
                http.revoke(id.0);
            }
            return Err(format!("cannot start the rollout: {e}"));
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
    ) -> Result<Vec<Target>, String> {
        if devices.is_empty() {
            return Err("cannot start the rollout: no target devices selected".into());
        }
        let mut targets = Vec::with_capacity(devices.len());
        for device in devices {
            let device = device
                .device()
                .with_module(module)
                .map_err(|e| format!("cannot start the rollout: {e}"))?;
            if let Some(idx) = self.campaign_for(&device) {
                return Err(format!(
                    "cannot start the rollout: {device} is already in campaign {}",
                    self.live[idx].campaign.id()
                ));
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
    fn offer_url(&self, stored: &StoredPackage) -> Result<(String, Downloads), String> {
        if let Some(url) = &self.external_url {
            return Ok((url.clone(), Downloads::AsOffered));
        }
        match &self.http {
            Some(http) => Ok((
                http.campaign_url(&stored.package.file_name),
                Downloads::PerDevice { granted: true },
            )),
            None => Err("cannot start the rollout: no firmware server and no --url".into()),
        }
    }

    pub(super) fn save_package(&mut self, stored: &StoredPackage) -> Result<(), String> {
        let record = PackageRecord {
            sha256: stored.package.sha256.clone(),
            file_name: stored.package.file_name.clone(),
            size: stored.package.size,
            md5: stored.package.md5.clone(),
            checksum: stored.package.checksum.clone(),
            store_path: stored.path.clone(),
            imported_at: self.clock.now(),
        };
        self.store
            .save_package(&record)
            .map(|_| ())
            .map_err(|e| format!("cannot record the package in the database: {e}"))
    }

    /// Picks a stored campaign up where it was.
    pub(super) fn resume_campaign(&mut self, id: CampaignId) -> Result<CampaignId, String> {
        if self.live.iter().any(|l| l.campaign.id() == id) {
            return Ok(id);
        }
        let persisted = self
            .store
            .load_campaign(id)
            .map_err(|e| format!("cannot resume campaign {id}: {e}"))?;
        let fleet = &self.fleet;
        let is_online = |d: &DeviceId| {
            fleet.get(d).map_or_else(
                || super::inventory::assumed_reachable(d.dialect()),
                |r| r.online,
            )
        };
        let mut campaign = Campaign::resume(persisted, self.clock.now(), &is_online)
            .map_err(|e| format!("cannot resume campaign {id}: {e}"))?;
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

    /// The fleet's topology, so the campaign upgrades one device per DJI dock at a time.
    fn tell_gateways(&self, campaign: &mut Campaign) {
        set_gateways_from(&self.fleet, campaign);
    }

    /// After a topology change (a drone joined or left a dock).
    pub(super) fn refresh_gateways(&mut self) {
        for live in &mut self.live {
            if live.dialects.contains(&crate::device_id::Dialect::Dji) {
                set_gateways_from(&self.fleet, &mut live.campaign);
            }
        }
    }

    /// Serves a resumed campaign's package again at the links its devices were given (derived
    /// again from the same key: the same links), so that devices noticed before the restart
    /// can still download (and resume with Range requests). A finished campaign's links stay
    /// ended (they come back if it runs again).
    fn serve_again(&mut self, campaign: &Campaign) -> Result<Downloads, String> {
        let (Some(_), None) = (&self.http, &self.external_url) else {
            return Ok(Downloads::AsOffered);
        };
        if !looks_like_our_offer(&campaign.spec().offer.url) {
            // The campaign was given an external download URL: nothing of ours to serve.
            return Ok(Downloads::AsOffered);
        }
        if campaign.state().is_finished() {
            return Ok(Downloads::PerDevice { granted: false });
        }
        self.load_download_key()
            .and_then(|()| self.grant_downloads(campaign))
            .map_err(|e| format!("cannot serve the package again: {e}"))?;
        Ok(Downloads::PerDevice { granted: true })
    }
}

/// Whether `url` has the shape of a link made by `FirmwareServer::offer` (`…/fw/<32 hex>/name`).
/// Such a link is served again on resume (and refused if this server cannot serve it); any
/// other URL was an operator's external download URL.
fn looks_like_our_offer(url: &str) -> bool {
    url.split("/fw/").skip(1).any(|rest| {
        rest.split_once('/')
            .is_some_and(|(token, _)| crate::transport::http::is_offer_token(token))
    })
}

/// Each DJI target's dock, as the fleet's topology has it.
fn set_gateways_from(fleet: &Fleet, campaign: &mut Campaign) {
    campaign.set_gateways(&|d: &DeviceId| fleet.get(d).and_then(|r| r.gateway.clone()));
}

#[cfg(test)]
mod tests {
    use super::looks_like_our_offer;

    #[test]
    fn our_offer_links_are_told_from_external_urls() {
        let token = "0123456789abcdef0123456789ABCDEF";
        assert!(looks_like_our_offer(&format!(
            "http://10.0.0.2:8080/fw/{token}/fw%201.bin"
        )));
        assert!(!looks_like_our_offer(
            "https://cdn.example.test/fw/2.0.0/fw.bin"
        ));
        assert!(!looks_like_our_offer("https://cdn.example.test/fw.bin"));
        assert!(!looks_like_our_offer(&format!("http://x/fw/{token}")));
    }
}
