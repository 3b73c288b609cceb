//! The rollout panel: the policy (canary and waves, rate, concurrency, timeout, retries, abort
//! threshold, version filter) with the defaults of `rollout::Policy`, the start confirmation
//! that names the device count and the version, the campaign controls (pause, resume, cancel,
//! retry failed, next wave), the per-status summary with a stacked bar and the succeeded /
//! failed / in-flight plot (pause, resume, cancel and the ETA are in `summary_strip`). Builds the `CampaignRequest`; the engine validates and runs it.

use std::collections::BTreeSet;

use egui::{RichText, Ui};
use egui_plot::{Legend, Line, Plot};

use super::action::UiAction;
use super::firmware_panel::FirmwareForm;
use super::format;
use super::theme;
use super::widgets;
use crate::device_id::DeviceId;
use crate::engine::{CampaignRequest, CampaignView, Snapshot};
use crate::i18n::tr;
use crate::rollout::{AbortThreshold, CampaignId, CanarySize, DeviceStatus, LIMITS, Policy};

/// The panel's own state besides the persisted policy.
#[derive(Debug, Default)]
pub struct RolloutForm {
    /// The campaign shown; `None` = the newest live one, else the newest.
    pub focus: Option<CampaignId>,
    /// A start waiting for the operator's confirmation.
    pub confirm: Option<Box<CampaignRequest>>,
    /// `only_from_versions`, comma separated, as typed.
    pub only_from: String,
    /// Fold the policy away this frame (a campaign has just started).
    pub fold_policy: bool,
}

/// The campaign the panel shows.
pub fn focused(campaigns: &[CampaignView], focus: Option<CampaignId>) -> Option<&CampaignView> {
    match focus {
        Some(id) => campaigns.iter().find(|c| c.snapshot.id == id),
        None => campaigns
            .iter()
            .find(|c| c.live)
            .or_else(|| campaigns.first()),
    }
}

/// "1.0, 1.1 ,," → ["1.0", "1.1"].
pub fn parse_versions(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Why no request can be built for the selected devices yet (`None`: one can). Asked every
/// frame, so it copies nothing: the selection may hold 100,000 devices.
pub fn request_blocker(
    form: &FirmwareForm,
    snap: &Snapshot,
    selection: &BTreeSet<DeviceId>,
) -> Option<String> {
    if let Some(missing) = form.missing(&snap.packages) {
        return Some(missing);
    }
    if form.chosen(&snap.packages).is_none() {
        return Some(tr!("ui.firmware.choose_package"));
    }
    selection
        .is_empty()
        .then(|| tr!("ui.rollout.select_devices"))
}

/// The request for the selected devices, or why there is none yet.
pub fn build_request(
    form: &FirmwareForm,
    snap: &Snapshot,
    policy: &Policy,
    selection: &BTreeSet<DeviceId>,
) -> Result<CampaignRequest, String> {
    if let Some(why) = request_blocker(form, snap, selection) {
        return Err(why);
    }
    let stored = form
        .chosen(&snap.packages)
        .ok_or_else(|| tr!("ui.firmware.choose_package"))?;
    let module = Some(form.module.trim()).filter(|m| !m.is_empty() && *m != "default");
    Ok(CampaignRequest {
        name: form.name.trim().to_owned(),
        package_sha256: stored.package.sha256.clone(),
        version: form.version.trim().to_owned(),
        module: module.map(str::to_owned),
        description: form.description.trim().to_owned(),
        targets: selection.iter().cloned().collect(),
        policy: policy.clone(),
        settings: form.settings.clone(),
        download_url: form.download_url(),
    })
}

/// What the confirmation says.
pub fn confirm_text(request: &CampaignRequest) -> String {
    let n = request.targets.len();
    let module = request
        .module
        .as_deref()
        .map(|m| tr!("ui.rollout.module", module = m))
        .unwrap_or_default();
    if n == 1 {
        tr!(
            "ui.rollout.confirm_one",
            version = request.version,
            module = module
        )
    } else {
        tr!(
            "ui.rollout.confirm",
            count = n,
            version = request.version,
            module = module
        )
    }
}

/// One sentence describing how the campaign will proceed, for the confirmation.
pub fn policy_summary(p: &Policy) -> String {
    let canary = match p.canary {
        CanarySize::Count(1) => tr!("ui.rollout.canary_one"),
        CanarySize::Count(n) => tr!("ui.rollout.canary_count", count = n),
        CanarySize::Percent(pct) => tr!("ui.rollout.canary_percent", percent = pct),
    };
    let waves = match p.wave_size {
        0 => tr!("ui.rollout.all_the_rest"),
        n => tr!("ui.rollout.waves_of", count = n),
    };
    let abort = match p.abort {
        Some(a) => tr!("ui.rollout.stop_above", percent = a.failure_percent),
        None => tr!("ui.rollout.never_stop"),
    };
    let retries = if p.retries == 1 {
        tr!("ui.rollout.one_retry")
    } else {
        tr!("ui.rollout.n_retries", count = p.retries)
    };
    tr!(
        "ui.rollout.policy_summary",
        canary = canary,
        waves = waves,
        rate = p.rate.per_minute,
        in_flight = p.max_in_flight,
        timeout = format::duration_secs(p.device_timeout_secs),
        retries = retries,
        abort = abort
    )
}

pub fn rollout_panel_ui(
    ui: &mut Ui,
    snap: &Snapshot,
    firmware: &FirmwareForm,
    policy: &mut Policy,
    selection: &BTreeSet<DeviceId>,
    form: &mut RolloutForm,
    actions: &mut Vec<UiAction>,
) {
    ui.heading(tr!("ui.rollout.heading"));
    // Once a campaign starts the policy folds away: its outcome matters now, not the form.
    egui::CollapsingHeader::new(tr!("ui.rollout.policy"))
        .id_salt("policy")
        .default_open(false)
        .open(std::mem::take(&mut form.fold_policy).then_some(false))
        .show(ui, |ui| policy_ui(ui, policy, form));
    // The request (a copy of the selection) is built on the click, not every frame.
    ui.horizontal(|ui| match request_blocker(firmware, snap, selection) {
        None => {
            let label = tr!("ui.rollout.start_selected", count = selection.len());
            if ui.button(label).clicked() {
                match build_request(firmware, snap, policy, selection) {
                    Ok(request) => form.confirm = Some(Box::new(request)),
                    Err(why) => {
                        ui.weak(why);
                    }
                }
            }
        }
        Some(why) => {
            ui.add_enabled(false, egui::Button::new(tr!("ui.rollout.start")));
            ui.weak(why);
        }
    });
    confirm_modal_ui(ui, form, actions);
    ui.separator();
    campaign_picker_ui(ui, &snap.campaigns, form);
    if let Some(view) = focused(&snap.campaigns, form.focus) {
        campaign_ui(ui, view, snap, actions);
    }
}

/// Editor bounds that are the window's choice, not policy limits (`Policy::validate` accepts
/// more): a hundred retries or a ten-minute acknowledgement window is already far past useful.
const MAX_OFFERED_RETRIES: u32 = 100;
const MAX_OFFERED_ACK_WINDOW_MS: u64 = 10 * 60 * 1000;

#[expect(
    clippy::too_many_lines,
    reason = "one egui grid with a row per policy field; split up, the rows of one grid would \
              sit in several functions"
)]
fn policy_ui(ui: &mut Ui, policy: &mut Policy, form: &mut RolloutForm) {
    let devices = LIMITS.max_devices;
    let longest = LIMITS.max_duration_secs;
    egui::Grid::new("policy").num_columns(2).show(ui, |ui| {
        let canary_label = ui.label(tr!("ui.rollout.canary")).id;
        ui.horizontal(|ui| {
            let mut percent = matches!(policy.canary, CanarySize::Percent(_));
            if ui
                .checkbox(&mut percent, tr!("ui.rollout.as_percent"))
                .changed()
            {
                policy.canary = if percent {
                    CanarySize::Percent(5)
                } else {
                    CanarySize::Count(1)
                };
            }
            match &mut policy.canary {
                CanarySize::Count(n) => ui.add(
                    egui::DragValue::new(n)
                        .range(1..=devices)
                        .suffix(tr!("ui.rollout.devices_suffix")),
                ),
                CanarySize::Percent(p) => {
                    ui.add(egui::DragValue::new(p).range(1..=100).suffix(" %"))
                }
            }
            .labelled_by(canary_label);
        });
        ui.end_row();
        widgets::number_row_ui(
            ui,
            &tr!("ui.rollout.wave_size"),
            &mut policy.wave_size,
            0..=devices,
            &tr!("ui.rollout.devices_suffix"),
        );
        widgets::number_row_ui(
            ui,
            &tr!("ui.rollout.next_wave_at"),
            &mut policy.success_threshold_percent,
            0..=100,
            &tr!("ui.rollout.pct_succeeded"),
        );
        widgets::number_row_ui(
            ui,
            &tr!("ui.rollout.rate"),
            &mut policy.rate.per_minute,
            1..=devices,
            &tr!("ui.rollout.per_min"),
        );
        widgets::number_row_ui(
            ui,
            &tr!("ui.rollout.burst"),
            &mut policy.rate.burst,
            1..=devices,
            &tr!("ui.rollout.notices_suffix"),
        );
        widgets::number_row_ui(
            ui,
            &tr!("ui.rollout.concurrency"),
            &mut policy.max_in_flight,
            1..=devices,
            &tr!("ui.rollout.in_flight_suffix"),
        );
        widgets::number_row_ui(
            ui,
            &tr!("ui.rollout.device_timeout"),
            &mut policy.device_timeout_secs,
            LIMITS.min_device_timeout_secs..=longest,
            " s",
        );
        widgets::number_row_ui(
            ui,
            &tr!("ui.rollout.retries"),
            &mut policy.retries,
            0..=MAX_OFFERED_RETRIES,
            "",
        );
        widgets::number_row_ui(
            ui,
            &tr!("ui.rollout.retry_after"),
            &mut policy.retry_interval_secs,
            0..=longest,
            " s",
        );
        // Dialects acknowledged by first report: an unanswered notice is re-sent (those
        // acknowledged by reply keep their own reply wait).
        widgets::number_row_ui(
            ui,
            &tr!("ui.rollout.resend_after"),
            &mut policy.ack_window_ms,
            LIMITS.min_ack_window_ms..=MAX_OFFERED_ACK_WINDOW_MS,
            " ms",
        );
        widgets::number_row_ui(
            ui,
            &tr!("ui.rollout.resends"),
            &mut policy.ack_resends,
            0..=LIMITS.max_ack_resends,
            "",
        );
        widgets::number_row_ui(
            ui,
            &tr!("ui.rollout.each_wait"),
            &mut policy.ack_backoff,
            1..=LIMITS.max_ack_backoff,
            "",
        );
        widgets::number_row_ui(
            ui,
            &tr!("ui.rollout.settle"),
            &mut policy.settle_ms,
            0..=LIMITS.max_settle_ms,
            " ms",
        );
        ui.label(tr!("ui.rollout.abort"));
        let mut on = policy.abort.is_some();
        if ui.checkbox(&mut on, tr!("ui.rollout.stop_when")).changed() {
            policy.abort = on.then(AbortThreshold::default);
        }
        ui.end_row();
        if let Some(abort) = &mut policy.abort {
            widgets::number_row_ui(
                ui,
                &tr!("ui.rollout.abort_above"),
                &mut abort.failure_percent,
                0..=100,
                &tr!("ui.rollout.pct_failed"),
            );
            widgets::number_row_ui(
                ui,
                &tr!("ui.rollout.once_judged"),
                &mut abort.min_finished,
                0..=devices,
                &tr!("ui.rollout.devices_suffix"),
            );
        }
        if form.only_from.is_empty() && !policy.only_from_versions.is_empty() {
            form.only_from = policy.only_from_versions.join(", ");
        }
        if widgets::text_row_ui(
            ui,
            &tr!("ui.rollout.only_from"),
            &mut form.only_from,
            &tr!("ui.rollout.any_version"),
        ) {
            policy.only_from_versions = parse_versions(&form.only_from);
        }
    });
    if ui.small_button(tr!("ui.rollout.reset")).clicked() {
        *policy = Policy::default();
        form.only_from.clear();
    }
}

fn confirm_modal_ui(ui: &mut Ui, form: &mut RolloutForm, actions: &mut Vec<UiAction>) {
    let Some(request) = &form.confirm else {
        return;
    };
    let text = confirm_text(request);
    let mut decision = None;
    let modal = egui::Modal::new(egui::Id::unique("confirm-start")).show(ui.ctx(), |ui| {
        ui.heading(tr!("ui.rollout.start"));
        ui.label(RichText::new(&text).strong());
        ui.label(policy_summary(&request.policy));
        if let Some(url) = &request.download_url {
            ui.label(tr!("ui.rollout.download_from", url = url));
        }
        ui.horizontal(|ui| {
            if ui.button(tr!("ui.rollout.confirm_start")).clicked() {
                decision = Some(true);
            }
            if ui.button(tr!("ui.rollout.back")).clicked() {
                decision = Some(false);
            }
        });
    });
    if modal.should_close() && decision.is_none() {
        decision = Some(false);
    }
    match decision {
        Some(true) => {
            if let Some(request) = form.confirm.take() {
                actions.push(UiAction::StartCampaign(request));
                form.focus = None;
            }
        }
        Some(false) => form.confirm = None,
        None => {}
    }
}

fn campaign_title(view: &CampaignView) -> String {
    let s = &view.snapshot;
    let name = if s.name.is_empty() {
        tr!("ui.strip.to_version", version = s.target_version)
    } else {
        s.name.clone()
    };
    format!(
        "#{} {name} ({})",
        s.id,
        crate::terms::states::campaign_state(s.state)
    )
}

fn campaign_picker_ui(ui: &mut Ui, campaigns: &[CampaignView], form: &mut RolloutForm) {
    if campaigns.is_empty() {
        ui.weak(tr!("ui.rollout.no_campaign"));
        return;
    }
    let shown = focused(campaigns, form.focus)
        .map(campaign_title)
        .unwrap_or_default();
    egui::ComboBox::new("campaign-picker", tr!("ui.rollout.campaign"))
        .selected_text(shown)
        .width(240.0)
        .show_ui(ui, |ui| {
            ui.selectable_value(&mut form.focus, None, tr!("ui.rollout.newest_running"));
            for c in campaigns {
                ui.selectable_value(&mut form.focus, Some(c.snapshot.id), campaign_title(c));
            }
        });
}

/// Server-side download progress of a campaign's package: bytes sent against what every target
/// downloading it once would take.
fn served_for(snap: &Snapshot, view: &CampaignView) -> Option<String> {
    let sent = *snap
        .served
        .as_ref()?
        .bytes_by_package
        .get(&view.spec.offer.sha256)?;
    let whole = view
        .spec
        .offer
        .size
        .saturating_mul(view.snapshot.counts.total as u64);
    Some(tr!(
        "ui.rollout.served",
        sent = format::bytes(sent),
        whole = format::bytes(whole),
        percent = format!("{:.0}", format::fraction(sent, whole) * 100.0)
    ))
}

fn campaign_ui(ui: &mut Ui, view: &CampaignView, snap: &Snapshot, actions: &mut Vec<UiAction>) {
    let s = &view.snapshot;
    let id = s.id;
    ui.horizontal_wrapped(|ui| {
        ui.label(
            RichText::new(tr!(
                "ui.rollout.campaign_state",
                id = id,
                state = crate::terms::states::campaign_state(s.state)
            ))
            .strong(),
        );
        if let Some(current) = s.waves.current {
            ui.label(tr!(
                "ui.strip.wave",
                wave = current + 1,
                count = s.waves.count
            ));
        }
        if s.waves.blocked {
            ui.colored_label(theme::WARN, tr!("ui.rollout.wave_below"));
        }
    });
    if let Some(why) = &view.halted {
        ui.colored_label(theme::BAD, tr!("ui.strip.halted", why = why));
    }
    // Pause, resume, cancel and the ETA are in the summary strip, always in sight.
    ui.horizontal_wrapped(|ui| {
        let live = view.live;
        if live && s.counts.failures() > 0 && ui.button(tr!("ui.rollout.retry_failed")).clicked() {
            actions.push(UiAction::RetryFailed(id));
        }
        let more_waves = s.waves.current.is_some_and(|c| c + 1 < s.waves.count);
        if live
            && !s.state.is_finished()
            && more_waves
            && ui.button(tr!("ui.rollout.next_wave")).clicked()
        {
            actions.push(UiAction::AdvanceWave(id));
        }
    });
    let done = s.counts.succeeded + s.counts.failures() + s.counts.canceled + s.counts.skipped;
    let percent = (done * 100).checked_div(s.counts.total).unwrap_or(0);
    ui.label(tr!(
        "ui.rollout.finished",
        done = done,
        total = s.counts.total,
        percent = percent,
        succeeded = s.counts.succeeded
    ));
    widgets::stacked_bar_ui(ui, &s.counts);
    if let Some(sent) = served_for(snap, view) {
        ui.label(sent).on_hover_text(tr!("ui.rollout.served_hover"));
    }
    timeline_plot_ui(ui, view);
}

fn timeline_plot_ui(ui: &mut Ui, view: &CampaignView) {
    let Some(first) = view.timeline.first() else {
        return;
    };
    let start = first.at_ms;
    let series = |pick: fn(&crate::engine::TimelinePoint) -> usize| -> Vec<[f64; 2]> {
        view.timeline
            .iter()
            .map(|p| [(p.at_ms - start) as f64 / 1000.0, pick(p) as f64])
            .collect()
    };
    Plot::new(("timeline", view.snapshot.id.0))
        .height(150.0)
        .legend(Legend::default())
        .allow_drag(false)
        .allow_zoom(false)
        .allow_scroll(false)
        .include_y(0.0)
        .show(ui, |plot| {
            plot.line(
                Line::new(
                    crate::terms::states::device_status(DeviceStatus::Succeeded),
                    series(|p| p.succeeded),
                )
                .color(theme::status_color(DeviceStatus::Succeeded)),
            );
            plot.line(
                Line::new(
                    crate::terms::states::device_status(DeviceStatus::Failed),
                    series(|p| p.failed),
                )
                .color(theme::status_color(DeviceStatus::Failed)),
            );
            plot.line(
                Line::new(tr!("ui.filter.in_flight"), series(|p| p.in_flight))
                    .color(theme::status_color(DeviceStatus::Downloading)),
            );
        });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firmware::{FirmwarePackage, StoredPackage};

    #[test]
    fn policy_reads_as_a_sentence() {
        assert_eq!(
            policy_summary(&Policy::default()),
            "A canary of 1 device, then all the rest; at most 60 notices a minute and 10 devices in flight; \
             30 min 00 s timeout, 1 retry; stop above 20 % failed."
        );
        let p = Policy {
            canary: CanarySize::Percent(5),
            wave_size: 50,
            retries: 0,
            abort: None,
            ..Policy::default()
        };
        assert!(policy_summary(&p).starts_with("A canary of 5 %, then waves of 50;"));
        assert!(policy_summary(&p).ends_with("0 retries; never stop on failures."));
    }

    #[test]
    fn versions_list_parses_loosely() {
        assert_eq!(parse_versions(" 1.0, 1.1 ,,"), ["1.0", "1.1"]);
        assert!(parse_versions("").is_empty());
    }

    #[test]
    fn request_needs_package_version_and_devices_and_confirm_names_them() {
        let mut snap = Snapshot::empty("b".into());
        let policy = Policy::default();
        let mut form = FirmwareForm::default();
        let mut sel = BTreeSet::new();
        assert_eq!(
            build_request(&form, &snap, &policy, &sel).unwrap_err(),
            "choose or import a firmware package"
        );
        snap.packages.push(StoredPackage {
            package: FirmwarePackage {
                file_name: "fw.bin".into(),
                size: 1,
                md5: "m".into(),
                sha256: "s".into(),
                checksum: "c".into(),
            },
            path: "p".into(),
        });
        form.sync_with(&snap.packages);
        assert_eq!(
            build_request(&form, &snap, &policy, &sel).unwrap_err(),
            "enter the target version"
        );
        form.version = " 2.0 ".into();
        assert_eq!(
            build_request(&form, &snap, &policy, &sel).unwrap_err(),
            "select the devices to upgrade"
        );
        sel.insert("dji:SN1".parse().unwrap());
        sel.insert("aliyun:pk/a".parse().unwrap());
        form.module = "default".into();
        let req = build_request(&form, &snap, &policy, &sel).unwrap();
        assert_eq!(req.version, "2.0");
        assert_eq!(req.module, None);
        assert_eq!(req.package_sha256, "s");
        assert_eq!(req.download_url, None);
        assert_eq!(confirm_text(&req), "Upgrade 2 devices to version 2.0?");
        form.module = "MCU".into();
        sel.remove(&"dji:SN1".parse().unwrap());
        let req = build_request(&form, &snap, &policy, &sel).unwrap();
        assert_eq!(
            confirm_text(&req),
            "Upgrade 1 device to version 2.0 (module MCU)?"
        );
        form.download = super::super::firmware_panel::DownloadChoice::External;
        form.external_url = "https://cdn.example.test/fw.bin".into();
        let req = build_request(&form, &snap, &policy, &sel).unwrap();
        assert_eq!(
            req.download_url.as_deref(),
            Some("https://cdn.example.test/fw.bin")
        );
    }
}
