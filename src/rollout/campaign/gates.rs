//! Waves: `Start` (skips, the wave plan ordered by when devices were last heard), the gate that
//! opens the next wave once the current one reached the success threshold, and opening a wave.
//! (`rollout::waves` plans the sizes and defines the tally; this is the campaign's side.)

use super::Campaign;
use super::effects::{log, refuse};
use crate::rollout::device::{self, Step};
use crate::rollout::note::{Command, Note};
use crate::rollout::record::{CampaignState, DeviceStatus};
use crate::rollout::waves::{self, WaveTally};
use crate::rollout::{Action, LogLevel};

impl Campaign {
    pub(super) fn start(&mut self, out: &mut Vec<Action>) {
        if self.state != CampaignState::Draft {
            refuse(out, Command::Start, self.state);
            return;
        }
        self.started_at = Some(self.now);
        for idx in 0..self.devices.len() {
            let reason = self.devices.get(idx).and_then(|rec| {
                device::skip_reason(rec, &self.spec.offer.version, &self.spec.policy)
            });
            if let Some(reason) = reason {
                self.update(idx, out, |rec, _| device::skip(rec, reason));
            }
        }
        let mut eligible: Vec<usize> = (0..self.devices.len())
            .filter(|&i| {
                self.devices
                    .get(i)
                    .is_some_and(|r| r.status == DeviceStatus::Pending)
            })
            .collect();
        // The canary and the early waves take the devices heard most recently: a device not
        // heard since the console started may be gone, and one that times out in the canary
        // holds every later wave behind the gate. Ties (and the never-heard, last) keep the
        // operator's order.
        eligible.sort_by_key(|&i| {
            let heard = self.heard_at.get(i).copied().flatten();
            (std::cmp::Reverse(heard), i)
        });
        let sizes = waves::plan_sizes(eligible.len(), &self.spec.policy);
        self.wave_members = Vec::with_capacity(sizes.len());
        self.wave_tallies = vec![WaveTally::default(); sizes.len()];
        let mut rest = eligible.as_slice();
        for size in &sizes {
            let (members, tail) = rest.split_at((*size).min(rest.len()));
            self.wave_members.push(members.to_vec());
            rest = tail;
        }
        self.current_wave = (!sizes.is_empty()).then_some(0);
        self.set_state(
            CampaignState::Running,
            Note::Started {
                devices: eligible.len(),
                waves: sizes.clone(),
            },
            out,
        );
        for (wave, members) in self.wave_members.clone().into_iter().enumerate() {
            let wave = u32::try_from(wave).unwrap_or(u32::MAX);
            for idx in members {
                self.update(idx, out, |rec, _| {
                    rec.wave = Some(wave);
                    Step::default()
                });
            }
        }
    }

    fn tally(&self, wave: u32) -> WaveTally {
        self.wave_tallies
            .get(wave as usize)
            .copied()
            .unwrap_or_default()
    }

    pub(super) fn current_wave_blocked(&self) -> bool {
        let Some(w) = self.current_wave else {
            return false;
        };
        let has_next = (w as usize) + 1 < self.wave_members.len();
        has_next
            && self
                .tally(w)
                .blocked(self.spec.policy.success_threshold_percent)
    }

    pub(super) fn open_ready_waves(&mut self, out: &mut Vec<Action>) {
        if self.state != CampaignState::Running {
            return;
        }
        let threshold = self.spec.policy.success_threshold_percent;
        while let Some(w) = self.current_wave {
            if (w as usize) + 1 >= self.wave_members.len() {
                break;
            }
            let tally = self.tally(w);
            if tally.gate_met(threshold) {
                let detail = Note::WaveGateMet {
                    wave: w + 1,
                    succeeded: tally.succeeded,
                    eligible: tally.eligible(),
                    threshold,
                };
                self.open_wave(w + 1, detail, out);
            } else {
                if tally.blocked(threshold) && self.blocked_wave_logged != Some(w) {
                    self.blocked_wave_logged = Some(w);
                    let message = Note::WaveBlocked {
                        wave: w + 1,
                        succeeded: tally.succeeded,
                        eligible: tally.eligible(),
                        threshold,
                    };
                    log(out, None, LogLevel::Warn, message);
                }
                break;
            }
        }
    }

    pub(super) fn open_wave(&mut self, wave: u32, why: Note, out: &mut Vec<Action>) {
        self.current_wave = Some(wave);
        let opened = Note::WaveOpened {
            wave: wave + 1,
            total: self.wave_members.len(),
            why: Box::new(why),
        };
        self.persist_campaign(self.state, opened.clone(), out);
        log(out, None, LogLevel::Info, opened);
        let members = self
            .wave_members
            .get(wave as usize)
            .cloned()
            .unwrap_or_default();
        for idx in members {
            self.refresh_queue(idx);
            let reason = self
                .devices
                .get(idx)
                .filter(|rec| rec.status == DeviceStatus::Pending)
                .and_then(|rec| {
                    device::skip_reason(rec, &self.spec.offer.version, &self.spec.policy)
                });
            if let Some(reason) = reason {
                self.update(idx, out, |rec, _| device::skip(rec, reason));
            }
        }
    }
}
