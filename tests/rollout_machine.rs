//! Black-box tests of the rollout state machine on a fake clock: waves, rate, concurrency,
//! timeouts, retries, abort, pause/resume/cancel, version filter, offline devices, FirmwareGet,
//! DJI reply handling, FogCloud task ids, percent monotonicity, success rules, and resume from
//! the store. Every Persist action is applied to an in-memory store, and every test ends by
//! checking that the store holds exactly the campaign's state.

// Test code throughout: clippy's allow-unwrap-in-tests (clippy.toml) goes by `cfg(test)`.
#![cfg(test)]

use std::path::PathBuf;

use ota_console::device_id::DeviceId;
use ota_console::protocol::{
    Event, ExchangeReply, FirmwareGet, FirmwareOffer, MsgId, Phase, ProgressReport, TaskRef,
    UpgradeStatus, VersionReport, aliyun, dji as dji_dialect,
};
use ota_console::rollout::{
    AbortThreshold, Action, Campaign, CampaignId, CampaignSpec, CampaignState, CanarySize, Change,
    DeviceSnapshot, DeviceStatus, DialectSettings, Input, LogLevel, NoticeRoute, Policy, RateLimit,
    SequentialIds, Target, Timestamp, UpgradeOrder,
};
use ota_console::store::{PackageRecord, Store};

const TARGET: &str = "2.0";

fn offer() -> FirmwareOffer {
    ota_console::testing::offer(TARGET)
}

/// A policy that gets out of the way: one wave, no rate or concurrency limit worth noting.
fn open_policy() -> Policy {
    Policy {
        canary: CanarySize::Percent(100),
        wave_size: 0,
        rate: RateLimit {
            per_minute: 6000,
            burst: 1000,
        },
        max_in_flight: 1000,
        retries: 0,
        abort: None,
        // The ack window and the settle delay have their own tests (with the defaults); here
        // they would only add re-sends and delays to timelines written without them.
        ack_resends: 0,
        settle_ms: 0,
        ..Policy::default()
    }
}

fn ali(n: usize) -> DeviceId {
    DeviceId::aliyun("pk", &format!("dev{n}")).unwrap()
}

fn fog(n: usize) -> DeviceId {
    DeviceId::fogcloud("pk", &format!("dev{n}")).unwrap()
}

fn dji(n: usize) -> DeviceId {
    DeviceId::dji(&format!("SN{n}")).unwrap()
}

fn target(device: DeviceId, version: Option<&str>, online: bool) -> Target {
    Target {
        device,
        version: version.map(str::to_owned),
        online,
        heard_at: None,
    }
}

fn on_v1(devices: impl IntoIterator<Item = DeviceId>) -> Vec<Target> {
    devices
        .into_iter()
        .map(|d| target(d, Some("1.0"), true))
        .collect()
}

struct Harness {
    campaign: Campaign,
    store: Store,
    ids: SequentialIds,
    now: u64,
}

impl Harness {
    fn new(policy: Policy, targets: Vec<Target>) -> Self {
        let spec = CampaignSpec {
            name: "test".into(),
            offer: offer(),
            module: None,
            settings: DialectSettings::default(),
            policy,
        };
        let mut store = Store::open_in_memory().unwrap();
        store
            .save_package(&PackageRecord {
                sha256: offer().sha256,
                file_name: "fw.bin".into(),
                size: 3,
                md5: offer().md5,
                checksum: offer().checksum,
                store_path: PathBuf::from("/tmp/none"),
                imported_at: Timestamp::from_millis(0),
            })
            .unwrap();
        let id = store.next_campaign_id().unwrap();
        let campaign = Campaign::new(id, spec, targets, Timestamp::from_millis(0)).unwrap();
        store.create_campaign(&campaign.persisted()).unwrap();
        Harness {
            campaign,
            store,
            ids: SequentialIds::new(),
            now: 0,
        }
    }

    fn started(policy: Policy, targets: Vec<Target>) -> (Self, Vec<Action>) {
        let mut h = Harness::new(policy, targets);
        let actions = h.run(Input::Start);
        (h, actions)
    }

    /// Feeds one input at the current time, checks the ordering contract and persists.
    fn run(&mut self, input: Input) -> Vec<Action> {
        let actions = self
            .campaign
            .handle(input, Timestamp::from_millis(self.now), &mut self.ids);
        check_persist_first(&actions);
        for action in &actions {
            if let Action::Persist(t) = action {
                self.store.apply(t).unwrap();
            }
        }
        actions
    }

    /// Moves the clock to `ms` and ticks.
    fn at(&mut self, ms: u64) -> Vec<Action> {
        self.now = ms;
        self.run(Input::Tick)
    }

    fn event(&mut self, event: Event) -> Vec<Action> {
        self.run(Input::Event(event))
    }

    fn status(&self, device: &DeviceId) -> DeviceStatus {
        self.campaign.device(device).unwrap().status
    }

    fn succeed(&mut self, device: &DeviceId) -> Vec<Action> {
        self.event(version(device, TARGET))
    }

    /// The store must hold exactly what the campaign holds.
    fn check_store(&self) {
        let loaded = self.store.load_campaign(self.campaign.id()).unwrap();
        assert_eq!(loaded, self.campaign.persisted());
        self.store.integrity_check().unwrap();
    }
}

/// Every first notice is preceded, in the same batch, by the Persist of its `noticed` record.
fn check_persist_first(actions: &[Action]) {
    for (i, action) in actions.iter().enumerate() {
        let order = match action {
            Action::SendUpgrade(o) if !o.resend => o,
            Action::ReplyFirmwareGet {
                pending: Some(o), ..
            } if !o.resend => o,
            _ => continue,
        };
        let persisted = actions[..i].iter().any(|a| match a {
            Action::Persist(t) => match &t.change {
                Change::Device { record, .. } => {
                    record.device == order.device
                        && record.status == DeviceStatus::Noticed
                        && record.attempts == order.attempt
                }
                _ => false,
            },
            _ => false,
        });
        assert!(
            persisted,
            "notice to {} went out before its transition was persisted",
            order.device
        );
    }
}

fn sends(actions: &[Action]) -> Vec<UpgradeOrder> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::SendUpgrade(o) => Some(o.clone()),
            _ => None,
        })
        .collect()
}

fn first_sends(actions: &[Action]) -> Vec<DeviceId> {
    sends(actions)
        .into_iter()
        .filter(|o| !o.resend)
        .map(|o| o.device)
        .collect()
}

fn logs(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Log { message, .. } => Some(message.to_string()),
            _ => None,
        })
        .collect()
}

fn state_changes(actions: &[Action]) -> Vec<(CampaignState, CampaignState)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::CampaignStateChanged { from, to } => Some((*from, *to)),
            _ => None,
        })
        .collect()
}

fn version(device: &DeviceId, v: &str) -> Event {
    Event::Version(VersionReport {
        device: device.clone(),
        version: v.into(),
        gateway: None,
    })
}

fn progress(
    device: &DeviceId,
    task: TaskRef,
    status: UpgradeStatus,
    phase: Phase,
    percent: Option<u8>,
) -> Event {
    Event::Progress(ProgressReport {
        device: device.clone(),
        task,
        status,
        phase,
        percent,
        percent_clamped: false,
        desc: None,
        gateway: None,
    })
}

fn ali_progress(device: &DeviceId, percent: u8) -> Event {
    progress(
        device,
        TaskRef::None,
        UpgradeStatus::InProgress,
        Phase::Unspecified,
        Some(percent),
    )
}

fn firmware_get(device: &DeviceId) -> Event {
    Event::FirmwareGet(FirmwareGet {
        device: device.clone(),
        id: MsgId::Str("7".into()),
    })
}

fn service_reply(bid: &str, tid: &str, result: i64, status: Option<UpgradeStatus>) -> Event {
    Event::Reply(ExchangeReply {
        gateway: dji(0),
        request: "ota_create".into(),
        exchange_id: tid.into(),
        task: TaskRef::Key(bid.into()),
        failure: (result != 0).then(|| dji_dialect::failure(result)),
        status,
    })
}

/// The DJI `bid` and `tid` of an order: its task key and exchange id.
#[derive(Debug, Clone)]
struct Exchange {
    bid: String,
    tid: String,
}

fn dji_exchange(order: &UpgradeOrder) -> Option<Exchange> {
    let TaskRef::Key(bid) = &order.task else {
        return None;
    };
    Some(Exchange {
        bid: bid.clone(),
        tid: order.exchange_id.clone()?,
    })
}

#[test]
fn canary_then_waves_gated_by_success_and_advanced_by_the_operator() {
    let devices: Vec<DeviceId> = (0..10).map(ali).collect();
    let policy = Policy {
        canary: CanarySize::Count(2),
        wave_size: 4,
        ..open_policy()
    };
    let (mut h, start) = Harness::started(policy, on_v1(devices.clone()));
    assert_eq!(first_sends(&start), devices[..2].to_vec());
    assert_eq!(h.campaign.snapshot().waves.count, 3);

    assert!(
        first_sends(&h.succeed(&devices[0])).is_empty(),
        "half the canary is not enough"
    );
    let wave2 = h.succeed(&devices[1]);
    assert_eq!(first_sends(&wave2), devices[2..6].to_vec());
    assert_eq!(h.campaign.snapshot().waves.current, Some(1));

    // Wave 2: three succeed, one fails for good: the wave is finished but below 100 %.
    for d in &devices[2..5] {
        h.succeed(d);
    }
    let failed = h.event(progress(
        &devices[5],
        TaskRef::None,
        UpgradeStatus::Failed(aliyun::failure(-4)),
        Phase::Unspecified,
        None,
    ));
    assert_eq!(h.status(&devices[5]), DeviceStatus::Failed);
    assert!(first_sends(&failed).is_empty());
    assert!(
        logs(&failed)
            .iter()
            .any(|l| l.contains("waits for the operator")),
        "{:?}",
        logs(&failed)
    );
    assert!(h.campaign.snapshot().waves.blocked);
    assert!(first_sends(&h.at(600_000)).is_empty());

    let advanced = h.run(Input::AdvanceWave);
    assert_eq!(first_sends(&advanced), devices[6..].to_vec());
    assert!(!h.campaign.snapshot().waves.blocked);
    let no_more = h.run(Input::AdvanceWave);
    assert!(logs(&no_more).iter().any(|l| l.contains("already open")));
    h.check_store();
}

#[test]
fn a_lower_threshold_opens_the_next_wave_before_everyone_succeeded() {
    let devices: Vec<DeviceId> = (0..6).map(ali).collect();
    let policy = Policy {
        canary: CanarySize::Count(4),
        wave_size: 2,
        success_threshold_percent: 50,
        ..open_policy()
    };
    let (mut h, start) = Harness::started(policy, on_v1(devices.clone()));
    assert_eq!(first_sends(&start).len(), 4);
    assert!(first_sends(&h.succeed(&devices[0])).is_empty());
    assert_eq!(first_sends(&h.succeed(&devices[1])), devices[4..].to_vec());
    h.check_store();
}

#[test]
fn rate_limit_spaces_notices_on_the_injected_clock() {
    let devices: Vec<DeviceId> = (0..4).map(ali).collect();
    let policy = Policy {
        rate: RateLimit {
            per_minute: 6,
            burst: 1,
        },
        ..open_policy()
    };
    let (mut h, start) = Harness::started(policy, on_v1(devices.clone()));
    assert_eq!(first_sends(&start), vec![devices[0].clone()]);
    assert_eq!(
        h.campaign.next_deadline(),
        Some(Timestamp::from_millis(10_000))
    );
    assert!(first_sends(&h.at(9_999)).is_empty());
    assert_eq!(first_sends(&h.at(10_000)), vec![devices[1].clone()]);
    // A late tick sends one, not a catch-up burst.
    assert_eq!(first_sends(&h.at(45_000)), vec![devices[2].clone()]);
    assert_eq!(first_sends(&h.at(50_000)), vec![]);
    assert_eq!(first_sends(&h.at(55_000)), vec![devices[3].clone()]);
    h.check_store();
}

#[test]
fn a_fast_rate_is_not_held_to_one_notice_per_turn() {
    // Issue #14's policy: 60,000 a minute, evenly spaced (burst 1). Every engine turn costs a
    // commit of a few milliseconds, so each tick comes that much after its deadline: the
    // notices must still go out at the rate, not one per turn.
    let devices: Vec<DeviceId> = (0..1000).map(ali).collect();
    let policy = Policy {
        rate: RateLimit {
            per_minute: 60_000,
            burst: 1,
        },
        ..open_policy()
    };
    let (mut h, start) = Harness::started(policy, on_v1(devices.clone()));
    let mut noticed = first_sends(&start);
    let mut turns = 0;
    while noticed.len() < devices.len() {
        let due = h.campaign.next_deadline().expect("a token is awaited");
        let late = due.as_millis().max(h.now) + 5;
        noticed.extend(first_sends(&h.at(late)));
        turns += 1;
        assert!(
            turns <= 1000,
            "{} noticed after {turns} turns",
            noticed.len()
        );
    }
    assert_eq!(noticed, devices, "in target order, each once");
    assert!(h.now <= 1_050, "the last notice at {} ms", h.now);
    h.check_store();
}

#[test]
fn concurrency_caps_devices_in_flight() {
    let devices: Vec<DeviceId> = (0..5).map(ali).collect();
    let policy = Policy {
        max_in_flight: 2,
        ..open_policy()
    };
    let (mut h, start) = Harness::started(policy, on_v1(devices.clone()));
    assert_eq!(first_sends(&start), devices[..2].to_vec());
    assert!(first_sends(&h.event(ali_progress(&devices[0], 50))).is_empty());
    assert!(first_sends(&h.at(1_000)).is_empty());
    assert_eq!(
        first_sends(&h.succeed(&devices[0])),
        vec![devices[2].clone()]
    );
    assert_eq!(h.campaign.counts().in_flight(), 2);
    h.check_store();
}

#[test]
fn hundred_percent_without_a_version_report_times_out() {
    let d = ali(0);
    let policy = Policy {
        device_timeout_secs: 60,
        ..open_policy()
    };
    let (mut h, _) = Harness::started(policy, on_v1([d.clone()]));
    h.now = 5_000;
    h.event(ali_progress(&d, 100));
    assert_eq!(h.status(&d), DeviceStatus::Installing);
    assert_eq!(
        h.campaign.next_deadline(),
        Some(Timestamp::from_millis(60_000))
    );
    h.at(59_999);
    assert_eq!(h.status(&d), DeviceStatus::Installing);
    let done = h.at(60_000);
    assert_eq!(h.status(&d), DeviceStatus::TimedOut);
    let error = h
        .campaign
        .device(&d)
        .unwrap()
        .error
        .clone()
        .unwrap()
        .to_string();
    assert!(error.contains("100 %"), "{error}");
    assert_eq!(
        state_changes(&done),
        vec![(CampaignState::Running, CampaignState::Completed)]
    );
    h.check_store();
}

#[test]
fn a_failed_device_is_retried_after_the_interval_and_recovers() {
    let d = ali(0);
    let policy = Policy {
        retries: 1,
        retry_interval_secs: 30,
        ..open_policy()
    };
    let (mut h, _) = Harness::started(policy, on_v1([d.clone()]));
    h.now = 1_000;
    h.event(progress(
        &d,
        TaskRef::None,
        UpgradeStatus::Failed(aliyun::failure(-2)),
        Phase::Unspecified,
        None,
    ));
    let rec = h.campaign.device(&d).unwrap().clone();
    assert_eq!(rec.status, DeviceStatus::Pending, "waiting for its retry");
    assert_eq!(rec.code.map(|c| c.code), Some(-2));
    assert_eq!(rec.attempts, 1);
    assert_eq!(
        h.campaign.next_deadline(),
        Some(Timestamp::from_millis(31_000))
    );
    assert!(first_sends(&h.at(30_999)).is_empty());
    let retry = sends(&h.at(31_000));
    assert_eq!(retry.len(), 1);
    assert_eq!(retry[0].attempt, 2);
    assert!(!retry[0].resend);
    h.succeed(&d);
    let rec = h.campaign.device(&d).unwrap();
    assert_eq!(
        (rec.status, rec.attempts, rec.error.clone()),
        (DeviceStatus::Succeeded, 2, None)
    );
    let journal = h.store.device_journal(h.campaign.id(), &d).unwrap();
    let path: Vec<&str> = journal.iter().map(|e| e.to.as_str()).collect();
    assert_eq!(
        path,
        ["noticed", "failed", "pending", "noticed", "succeeded"]
    );
    h.check_store();
}

#[test]
fn a_rejecting_device_is_never_retried() {
    let d = dji(1);
    let policy = Policy {
        retries: 3,
        retry_interval_secs: 1,
        ..open_policy()
    };
    let (mut h, start) = Harness::started(policy, on_v1([d.clone()]));
    let bid = dji_exchange(&sends(&start)[0]).unwrap().bid;
    h.event(progress(
        &dji(0),
        TaskRef::Key(bid),
        UpgradeStatus::Rejected(dji_dialect::failure(312015)),
        Phase::Unspecified,
        None,
    ));
    let rec = h.campaign.device(&d).unwrap().clone();
    assert_eq!(
        (rec.status, rec.code.map(|c| c.code)),
        (DeviceStatus::Rejected, Some(312015))
    );
    assert!(sends(&h.at(100_000)).is_empty());
    assert_eq!(h.campaign.state(), CampaignState::Completed);
    assert_eq!(h.campaign.next_deadline(), None);
    h.check_store();
}

#[test]
fn abort_waits_for_the_minimum_then_stops_new_notices() {
    let devices: Vec<DeviceId> = (0..8).map(ali).collect();
    let policy = Policy {
        max_in_flight: 3,
        abort: Some(AbortThreshold {
            failure_percent: 50,
            min_finished: 3,
        }),
        ..open_policy()
    };
    let (mut h, start) = Harness::started(policy, on_v1(devices.clone()));
    assert_eq!(first_sends(&start).len(), 3);
    let fail = |d: &DeviceId| {
        progress(
            d,
            TaskRef::None,
            UpgradeStatus::Failed(aliyun::failure(-1)),
            Phase::Unspecified,
            None,
        )
    };
    // Two failures out of two judged: 100 %, but fewer than three finished: keep going.
    let a = h.event(fail(&devices[0]));
    assert_eq!(first_sends(&a), vec![devices[3].clone()]);
    let b = h.event(fail(&devices[1]));
    assert_eq!(first_sends(&b), vec![devices[4].clone()]);
    assert_eq!(h.campaign.state(), CampaignState::Running);
    // Third judged device: 2 of 3 failed > 50 %: aborted, nothing more is sent.
    let c = h.succeed(&devices[2]);
    assert!(first_sends(&c).is_empty());
    assert_eq!(
        state_changes(&c),
        vec![(CampaignState::Running, CampaignState::Aborted)]
    );
    for d in &devices[5..] {
        assert_eq!(h.status(d), DeviceStatus::Canceled);
    }
    // Devices in flight are still followed to their end.
    h.succeed(&devices[3]);
    assert_eq!(h.status(&devices[3]), DeviceStatus::Succeeded);
    assert!(first_sends(&h.at(10_000_000)).is_empty());
    assert_eq!(h.campaign.state(), CampaignState::Aborted);
    h.check_store();
}

#[test]
fn pause_resume_and_cancel() {
    let devices: Vec<DeviceId> = (0..4).map(ali).collect();
    let policy = Policy {
        max_in_flight: 1,
        ..open_policy()
    };
    let (mut h, start) = Harness::started(policy, on_v1(devices.clone()));
    assert_eq!(first_sends(&start), vec![devices[0].clone()]);
    let paused = h.run(Input::Pause);
    assert_eq!(
        state_changes(&paused),
        vec![(CampaignState::Running, CampaignState::Paused)]
    );
    // The device in flight still finishes, but its freed slot is not used while paused.
    assert!(first_sends(&h.succeed(&devices[0])).is_empty());
    assert!(first_sends(&h.at(100_000)).is_empty());
    assert_eq!(h.status(&devices[0]), DeviceStatus::Succeeded);
    assert!(
        logs(&h.run(Input::Pause))
            .iter()
            .any(|l| l.contains("cannot pause"))
    );

    let resumed = h.run(Input::Resume);
    assert_eq!(first_sends(&resumed), vec![devices[1].clone()]);
    let canceled = h.run(Input::Cancel);
    assert_eq!(
        state_changes(&canceled),
        vec![(CampaignState::Running, CampaignState::Canceled)]
    );
    assert_eq!(
        h.status(&devices[1]),
        DeviceStatus::Noticed,
        "in flight: still followed"
    );
    assert_eq!(h.status(&devices[2]), DeviceStatus::Canceled);
    assert_eq!(h.status(&devices[3]), DeviceStatus::Canceled);
    h.succeed(&devices[1]);
    assert_eq!(h.status(&devices[1]), DeviceStatus::Succeeded);
    assert!(
        logs(&h.run(Input::Resume))
            .iter()
            .any(|l| l.contains("cannot resume"))
    );
    assert!(first_sends(&h.at(1_000_000)).is_empty());
    h.check_store();
}

#[test]
fn version_filter_skips_on_target_and_not_from_listed_versions() {
    let on_target = ali(0);
    let other = ali(1);
    let unknown = ali(2);
    let listed = ali(3);
    let policy = Policy {
        only_from_versions: vec!["1.0".into()],
        ..open_policy()
    };
    let (mut h, start) = Harness::started(
        policy,
        vec![
            target(on_target.clone(), Some(TARGET), true),
            target(other.clone(), Some("1.5"), true),
            target(unknown.clone(), None, true),
            target(listed.clone(), Some("1.0"), true),
        ],
    );
    assert_eq!(first_sends(&start), vec![listed.clone()]);
    assert_eq!(h.status(&on_target), DeviceStatus::Skipped);
    let skipped_other = h.campaign.device(&other).unwrap().clone();
    assert_eq!(skipped_other.status, DeviceStatus::Skipped);
    assert!(skipped_other.error.unwrap().to_string().contains("1.5"));
    assert_eq!(
        h.status(&unknown),
        DeviceStatus::Pending,
        "waits for its version"
    );
    assert_eq!(
        first_sends(&h.event(version(&unknown, "1.0"))),
        vec![unknown.clone()]
    );
    let snapshot = serde_json::to_value(h.campaign.snapshot()).unwrap();
    assert_eq!(snapshot["counts"]["skipped"], 2);
    assert_eq!(snapshot["devices"][0]["status"], "skipped");
    h.check_store();
}

#[test]
fn an_offline_device_is_noticed_when_it_is_seen() {
    let d = ali(0);
    let (mut h, start) =
        Harness::started(open_policy(), vec![target(d.clone(), Some("1.0"), false)]);
    assert!(first_sends(&start).is_empty());
    assert!(first_sends(&h.at(60_000)).is_empty());
    let seen = h.run(Input::Seen {
        device: d.clone(),
        online: true,
    });
    assert_eq!(first_sends(&seen), vec![d.clone()]);
    // It drops off before acting on the notice and comes back: the notice is re-sent.
    h.run(Input::Seen {
        device: d.clone(),
        online: false,
    });
    let back = h.run(Input::Seen {
        device: d.clone(),
        online: true,
    });
    let again = sends(&back);
    assert_eq!(again.len(), 1);
    assert!(again[0].resend);
    assert_eq!(again[0].attempt, 1);
    h.check_store();
}

#[test]
fn firmware_get_is_answered_with_the_pending_notice_or_nothing() {
    let devices: Vec<DeviceId> = (0..3).map(ali).collect();
    let policy = Policy {
        canary: CanarySize::Count(2),
        wave_size: 1,
        ..open_policy()
    };
    let mut targets = on_v1(devices.clone());
    targets[1].online = false;
    let (mut h, start) = Harness::started(policy, targets);
    assert_eq!(first_sends(&start), vec![devices[0].clone()]);

    let in_flight = h.event(firmware_get(&devices[0]));
    match in_flight.as_slice() {
        [
            Action::ReplyFirmwareGet {
                request,
                pending: Some(order),
            },
        ] => {
            assert_eq!(request.device, devices[0]);
            assert_eq!(order.attempt, 1);
        }
        other => panic!("unexpected {other:?}"),
    }
    // Its turn has come but it was offline: the notice travels in the reply, not twice.
    let now_due = h.event(firmware_get(&devices[1]));
    assert!(sends(&now_due).is_empty(), "{now_due:?}");
    assert!(matches!(
        now_due.last(),
        Some(Action::ReplyFirmwareGet { pending: Some(o), .. }) if o.device == devices[1] && !o.resend
    ));
    assert_eq!(h.status(&devices[1]), DeviceStatus::Noticed);
    // Wave 2 is not open yet: nothing pending.
    let later = h.event(firmware_get(&devices[2]));
    assert!(matches!(
        later.as_slice(),
        [Action::ReplyFirmwareGet { pending: None, .. }]
    ));
    // Not a target: the campaign says nothing (the engine answers).
    assert!(h.event(firmware_get(&ali(99))).is_empty());
    h.check_store();
}

#[test]
fn dji_without_services_reply_is_resent_twice_with_fresh_tids_then_fails() {
    let d = dji(1);
    let (mut h, start) = Harness::started(open_policy(), on_v1([d.clone()]));
    let first = dji_exchange(&sends(&start)[0]).unwrap();
    assert_ne!(first.bid, first.tid);
    assert_eq!(
        h.campaign.next_deadline(),
        Some(Timestamp::from_millis(3_000))
    );
    let r1 = sends(&h.at(3_000));
    let r2 = sends(&h.at(6_000));
    for resend in [&r1, &r2] {
        assert_eq!(resend.len(), 1);
        assert!(resend[0].resend);
        assert_eq!(resend[0].attempt, 1);
        assert_eq!(dji_exchange(&resend[0]).unwrap().bid, first.bid);
    }
    let tids = [
        first.tid.clone(),
        dji_exchange(&r1[0]).unwrap().tid,
        dji_exchange(&r2[0]).unwrap().tid,
    ];
    assert!(tids[0] != tids[1] && tids[1] != tids[2] && tids[0] != tids[2]);
    assert!(sends(&h.at(8_999)).is_empty());
    h.at(9_000);
    let rec = h.campaign.device(&d).unwrap();
    assert_eq!(rec.status, DeviceStatus::Failed);
    assert!(
        rec.error.as_ref().unwrap().to_string().contains("no reply"),
        "{:?}",
        rec.error
    );
    h.check_store();
}

#[test]
fn dji_reply_stops_resends_progress_matches_by_bid_and_ok_needs_the_version() {
    let d = dji(1);
    let (mut h, start) = Harness::started(open_policy(), on_v1([d.clone()]));
    let ex = dji_exchange(&sends(&start)[0]).unwrap();
    h.now = 1_000;
    h.event(service_reply(
        &ex.bid,
        &ex.tid,
        0,
        Some(UpgradeStatus::InProgress),
    ));
    assert!(sends(&h.at(10_000)).is_empty(), "a reply came: no resend");
    // Progress for an unknown bid is not ours.
    h.event(progress(
        &dji(0),
        TaskRef::Key("other".into()),
        UpgradeStatus::Ok,
        Phase::Unspecified,
        Some(100),
    ));
    assert_eq!(h.status(&d), DeviceStatus::Noticed);
    h.event(progress(
        &dji(0),
        TaskRef::Key(ex.bid.clone()),
        UpgradeStatus::InProgress,
        Phase::Download,
        Some(40),
    ));
    assert_eq!(h.status(&d), DeviceStatus::Downloading);
    h.event(progress(
        &dji(0),
        TaskRef::Key(ex.bid.clone()),
        UpgradeStatus::Ok,
        Phase::Install,
        Some(100),
    ));
    assert_eq!(
        h.status(&d),
        DeviceStatus::Installing,
        "ok alone is not success"
    );
    h.event(version(&d, "1.0"));
    assert_eq!(h.status(&d), DeviceStatus::Installing);
    h.succeed(&d);
    assert_eq!(h.status(&d), DeviceStatus::Succeeded);
    assert_eq!(
        h.campaign.device(&d).unwrap().to_version.as_deref(),
        Some(TARGET)
    );

    // The notice the engine builds from the order carries the campaign's offer and the bid.
    let order = sends(&start)[0].clone();
    let route = NoticeRoute {
        gateway: Some(dji(0)),
        msg_id: 1,
        timestamp_ms: 5,
        download_url: None,
    };
    let notice = h.campaign.build_notice(&order, &route);
    assert_eq!(notice.offer, offer());
    // A per-device link from the engine replaces the URL and nothing else of the offer.
    let own = "http://10.0.0.2:8080/fw/0123456789abcdef0123456789abcdef/fw.bin";
    let routed = NoticeRoute {
        download_url: Some(own.into()),
        ..route.clone()
    };
    let personal = h.campaign.build_notice(&order, &routed);
    assert_eq!(
        personal.offer,
        ota_console::protocol::FirmwareOffer {
            url: own.into(),
            ..offer()
        }
    );
    assert_eq!(personal.address, notice.address);
    assert_eq!(notice.address.gateway, Some(dji(0)));
    assert_eq!(notice.address.task, TaskRef::Key(ex.bid.clone()));
    assert_eq!(notice.address.exchange_id, Some(ex.tid.clone()));
    h.check_store();
}

#[test]
fn dji_error_result_fails_with_its_code() {
    let d = dji(1);
    let (mut h, start) = Harness::started(open_policy(), on_v1([d.clone()]));
    let ex = dji_exchange(&sends(&start)[0]).unwrap();
    h.event(service_reply(&ex.bid, &ex.tid, 312704, None));
    let rec = h.campaign.device(&d).unwrap();
    assert_eq!(
        (rec.status, rec.code.map(|c| c.code)),
        (DeviceStatus::Failed, Some(312704))
    );
    h.check_store();
}

/// A reply that comes after the re-send: the first send started the upgrade, so the dock answers
/// the re-send "already upgrading" (312014). The device stays in flight under its bid and
/// succeeds; the same answer to a first send is a rejection.
#[test]
fn dji_already_upgrading_after_a_resend_awaits_the_first_send() {
    let d = dji(1);
    let (mut h, start) = Harness::started(open_policy(), on_v1([d.clone()]));
    let first = dji_exchange(&sends(&start)[0]).unwrap();
    let resent = dji_exchange(&sends(&h.at(3_000))[0]).unwrap();
    h.now = 3_500;
    h.event(service_reply(
        &first.bid,
        &first.tid,
        0,
        Some(UpgradeStatus::InProgress),
    ));
    h.event(service_reply(
        &resent.bid,
        &resent.tid,
        312_014,
        Some(UpgradeStatus::Rejected(dji_dialect::failure(312_014))),
    ));
    assert_eq!(h.status(&d), DeviceStatus::Noticed);
    assert!(
        sends(&h.at(10_000)).is_empty(),
        "answered: no more re-sends"
    );
    h.event(progress(
        &dji(0),
        TaskRef::Key(first.bid.clone()),
        UpgradeStatus::InProgress,
        Phase::Download,
        Some(40),
    ));
    assert_eq!(h.status(&d), DeviceStatus::Downloading);
    h.succeed(&d);
    assert_eq!(h.status(&d), DeviceStatus::Succeeded);
    h.check_store();

    // Not re-sent: the same answer refuses the upgrade.
    let d = dji(2);
    let (mut h, start) = Harness::started(open_policy(), on_v1([d.clone()]));
    let ex = dji_exchange(&sends(&start)[0]).unwrap();
    h.event(service_reply(
        &ex.bid,
        &ex.tid,
        312_014,
        Some(UpgradeStatus::Rejected(dji_dialect::failure(312_014))),
    ));
    assert_eq!(h.status(&d), DeviceStatus::Rejected);
    h.check_store();
}

/// Task keys of different dialects may be equal: a FogCloud counter "1" and a DJI bid "1"
/// (which anyone who may publish on a dock's topic can send). One dialect's report must never
/// reach another dialect's device.
#[test]
fn a_task_key_of_another_dialect_never_reaches_a_device() {
    let f = fog(1);
    let d = dji(1);
    let (mut h, start) = Harness::started(open_policy(), on_v1([f.clone(), d.clone()]));
    let fog_key = sends(&start)
        .iter()
        .find(|o| o.device == f)
        .map(|o| o.task.clone())
        .unwrap();
    let TaskRef::Key(fog_key) = fog_key else {
        panic!("FogCloud notices carry a task key")
    };
    for status in [
        UpgradeStatus::Failed(dji_dialect::failure(312016)),
        UpgradeStatus::Rejected(dji_dialect::failure(312015)),
    ] {
        h.event(progress(
            &dji(0),
            TaskRef::Key(fog_key.clone()),
            status,
            Phase::Unspecified,
            None,
        ));
        assert_eq!(h.status(&f), DeviceStatus::Noticed);
    }
    h.event(service_reply(&fog_key, "t", 312704, None));
    assert_eq!(h.status(&f), DeviceStatus::Noticed);
    assert_eq!(h.status(&d), DeviceStatus::Noticed);
    h.check_store();
}

#[test]
fn fogcloud_progress_with_a_foreign_or_stale_task_id_is_ignored() {
    let a = fog(1);
    let b = fog(2);
    let policy = Policy {
        retries: 1,
        retry_interval_secs: 1,
        ..open_policy()
    };
    let (mut h, start) = Harness::started(policy, on_v1([a.clone(), b.clone()]));
    let orders = sends(&start);
    let task_of = |d: &DeviceId| {
        orders
            .iter()
            .find(|o| &o.device == d)
            .map(|o| o.task.clone())
            .unwrap()
    };
    let (task_a, task_b) = (task_of(&a), task_of(&b));
    assert_ne!(task_a, task_b);
    let foreign = h.event(progress(
        &a,
        task_b.clone(),
        UpgradeStatus::InProgress,
        Phase::Unspecified,
        Some(70),
    ));
    assert_eq!(h.status(&a), DeviceStatus::Noticed);
    assert_eq!(h.status(&b), DeviceStatus::Noticed);
    assert!(
        logs(&foreign).iter().any(|l| l.contains("another device")),
        "{foreign:?}"
    );
    // A fails; its retry gets a new task id; a late report on the old one is ignored.
    h.event(progress(
        &a,
        task_a.clone(),
        UpgradeStatus::Failed(aliyun::failure(-1)),
        Phase::Unspecified,
        None,
    ));
    let retry = sends(&h.at(1_000));
    assert_eq!(retry.len(), 1);
    assert_ne!(retry[0].task, task_a);
    let stale = h.event(progress(
        &a,
        task_a,
        UpgradeStatus::InProgress,
        Phase::Unspecified,
        Some(50),
    ));
    assert!(
        logs(&stale).iter().any(|l| l.contains("earlier attempt")),
        "{stale:?}"
    );
    assert_eq!(h.status(&a), DeviceStatus::Noticed);
    h.event(progress(
        &a,
        retry[0].task.clone(),
        UpgradeStatus::InProgress,
        Phase::Unspecified,
        Some(50),
    ));
    assert_eq!(h.status(&a), DeviceStatus::Downloading);
    h.check_store();
}

#[test]
fn percent_never_goes_backwards_and_clamping_is_logged() {
    let d = ali(0);
    let (mut h, _) = Harness::started(open_policy(), on_v1([d.clone()]));
    h.event(ali_progress(&d, 50));
    h.event(ali_progress(&d, 30));
    assert_eq!(h.campaign.device(&d).unwrap().percent, 50);
    let clamped = h.event(Event::Progress(ProgressReport {
        device: d.clone(),
        task: TaskRef::None,
        status: UpgradeStatus::InProgress,
        phase: Phase::Unspecified,
        percent: Some(100),
        percent_clamped: true,
        desc: None,
        gateway: None,
    }));
    assert!(clamped.iter().any(|a| matches!(a, Action::Log { level: LogLevel::Info, message, .. } if message.to_string().contains("clamped"))));
    assert_eq!(h.campaign.device(&d).unwrap().percent, 100);
    h.event(ali_progress(&d, 10));
    assert_eq!(h.campaign.device(&d).unwrap().percent, 100);
    h.check_store();
}

#[test]
fn success_needs_a_notice_then_the_target_version() {
    let devices: Vec<DeviceId> = (0..2).map(ali).collect();
    let policy = Policy {
        canary: CanarySize::Count(1),
        wave_size: 1,
        ..open_policy()
    };
    let (mut h, _) = Harness::started(policy, on_v1(devices.clone()));
    let later = &devices[1];
    // Not noticed yet: claims change nothing.
    h.event(progress(
        later,
        TaskRef::None,
        UpgradeStatus::Ok,
        Phase::Unspecified,
        Some(100),
    ));
    h.event(ali_progress(later, 100));
    assert_eq!(h.status(later), DeviceStatus::Pending);
    h.succeed(later);
    assert_eq!(
        h.status(later),
        DeviceStatus::Pending,
        "a version report without a notice is not success"
    );
    // Noticed device: the old version is not success, the target version is.
    let first = &devices[0];
    h.event(version(first, "1.0"));
    assert_eq!(h.status(first), DeviceStatus::Noticed);
    // The second device reported the target version itself, so its wave skips it.
    h.succeed(first);
    assert_eq!(h.status(first), DeviceStatus::Succeeded);
    assert_eq!(h.status(later), DeviceStatus::Skipped);
    assert_eq!(h.campaign.state(), CampaignState::Completed);
    h.check_store();
}

#[test]
fn retry_failed_requeues_after_completion_and_publish_failure_costs_no_attempt() {
    let d = ali(0);
    let policy = Policy {
        retry_interval_secs: 5,
        ..open_policy()
    };
    let (mut h, start) = Harness::started(policy, on_v1([d.clone()]));
    let order = sends(&start)[0].clone();
    h.run(Input::PublishFailed {
        device: d.clone(),
        attempt: order.attempt,
        error: "not connected".into(),
    });
    let rec = h.campaign.device(&d).unwrap().clone();
    assert_eq!((rec.status, rec.attempts), (DeviceStatus::Pending, 0));
    let again = sends(&h.at(5_000));
    assert_eq!(again[0].attempt, 1);
    h.event(progress(
        &d,
        TaskRef::None,
        UpgradeStatus::Failed(aliyun::failure(-3)),
        Phase::Unspecified,
        None,
    ));
    assert_eq!(h.status(&d), DeviceStatus::Failed, "retries: 0");
    assert_eq!(h.campaign.state(), CampaignState::Completed);
    let requeued = h.run(Input::RetryFailed);
    assert_eq!(
        state_changes(&requeued),
        vec![(CampaignState::Completed, CampaignState::Running)]
    );
    assert_eq!(first_sends(&requeued), vec![d.clone()]);
    assert_eq!(h.campaign.device(&d).unwrap().attempts, 2);
    h.succeed(&d);
    assert_eq!(h.campaign.state(), CampaignState::Completed);
    h.check_store();
}

#[test]
fn resume_from_the_store_keeps_succeeded_and_in_flight_devices() {
    let devices: Vec<DeviceId> = (0..3).map(ali).collect();
    let policy = Policy {
        max_in_flight: 2,
        device_timeout_secs: 100,
        ..open_policy()
    };
    let (mut h, start) = Harness::started(policy, on_v1(devices.clone()));
    assert_eq!(first_sends(&start), devices[..2].to_vec());
    h.now = 10_000;
    h.succeed(&devices[0]);
    assert_eq!(h.status(&devices[2]), DeviceStatus::Noticed);
    h.now = 20_000;
    h.event(ali_progress(&devices[1], 40));
    h.check_store();

    // The console restarts.
    let loaded = h.store.load_campaign(h.campaign.id()).unwrap();
    let mut resumed = Campaign::resume(loaded, Timestamp::from_millis(30_000), &|_| true).unwrap();
    assert_eq!(resumed.snapshot().devices, h.campaign.snapshot().devices);
    let mut ids = SequentialIds::new();
    let actions = resumed.handle(Input::Tick, Timestamp::from_millis(30_000), &mut ids);
    // Only the device still `noticed` hears its notice again (it may never have left before
    // the restart), as a re-send of the same attempt: no new attempt, and never to the device
    // that succeeded or the one downloading.
    let again = sends(&actions);
    assert_eq!(again.len(), 1, "{actions:?}");
    assert_eq!(again[0].device, devices[2]);
    assert!(again[0].resend && again[0].attempt == 1);
    assert!(first_sends(&actions).is_empty());
    let later = resumed.handle(Input::Tick, Timestamp::from_millis(31_000), &mut ids);
    assert!(sends(&later).is_empty(), "re-sent once: {later:?}");
    assert_eq!(resumed.device(&devices[1]).unwrap().percent, 40);
    // Device 1 keeps its original deadline (noticed at 0, timeout 100 s).
    assert_eq!(
        resumed.next_deadline(),
        Some(Timestamp::from_millis(100_000))
    );
    resumed.handle(Input::Tick, Timestamp::from_millis(100_000), &mut ids);
    assert_eq!(
        resumed.device(&devices[1]).unwrap().status,
        DeviceStatus::TimedOut
    );
    assert_eq!(
        resumed.device(&devices[0]).unwrap().status,
        DeviceStatus::Succeeded
    );
}

#[test]
fn the_same_inputs_give_the_same_actions() {
    let script = |h: &mut Harness| {
        let mut all = h.run(Input::Start);
        all.extend(h.at(3_000));
        all.extend(h.event(ali_progress(&ali(0), 20)));
        all.extend(h.at(9_000));
        all.extend(h.succeed(&ali(0)));
        all.extend(h.at(200_000));
        all
    };
    let targets = || {
        let mut t = on_v1((0..3).map(ali));
        t.push(target(dji(1), Some("1.0"), true));
        t.push(target(fog(1), Some("1.0"), true));
        t
    };
    let policy = Policy {
        rate: RateLimit {
            per_minute: 20,
            burst: 2,
        },
        ..open_policy()
    };
    let mut a = Harness::new(policy.clone(), targets());
    let mut b = Harness::new(policy, targets());
    assert_eq!(
        format!("{:?}", script(&mut a)),
        format!("{:?}", script(&mut b))
    );
}

#[test]
fn campaign_ids_and_bad_input_are_handled() {
    let spec = CampaignSpec {
        name: "x".into(),
        offer: offer(),
        module: Some("bad/module".into()),
        settings: DialectSettings::default(),
        policy: Policy::default(),
    };
    let err = Campaign::new(
        CampaignId(1),
        spec.clone(),
        on_v1([ali(0)]),
        Timestamp::from_millis(0),
    )
    .unwrap_err();
    assert!(err.to_string().contains("module"), "{err}");
    let spec = CampaignSpec {
        module: None,
        ..spec
    };
    assert!(
        Campaign::new(
            CampaignId(1),
            spec.clone(),
            vec![],
            Timestamp::from_millis(0)
        )
        .is_err()
    );
    // Duplicates collapse to one device.
    let c = Campaign::new(
        CampaignId(1),
        spec,
        on_v1([ali(0), ali(0)]),
        Timestamp::from_millis(0),
    )
    .unwrap();
    assert_eq!(c.devices().len(), 1);
}

/// Found by the property test: a retry that came due while the device was offline must not be
/// re-armed by an unrelated row update, or `next_deadline` points at the past forever and the
/// engine spins.
#[test]
fn a_due_timer_is_not_re_armed_by_an_unrelated_change() {
    let d = fog(1);
    let policy = Policy {
        device_timeout_secs: 50,
        retries: 1,
        retry_interval_secs: 10,
        ..open_policy()
    };
    let (mut h, _) = Harness::started(policy, on_v1([d.clone()]));
    h.now = 25_000;
    h.run(Input::Seen {
        device: d.clone(),
        online: false,
    });
    h.at(50_000);
    assert_eq!(
        h.status(&d),
        DeviceStatus::Pending,
        "timed out, waiting for its retry"
    );
    assert!(
        first_sends(&h.at(60_000)).is_empty(),
        "offline at its retry time"
    );
    h.run(Input::Pause);
    h.event(version(&d, "1.0"));
    assert!(
        h.campaign
            .next_deadline()
            .is_none_or(|t| t.as_millis() > 60_000)
    );
    // Resuming with the device back online sends the retry.
    assert_eq!(first_sends(&h.run(Input::Resume)), vec![d.clone()]);
    h.check_store();
}

/// `open_policy` with the shipped acknowledgement and settle defaults (10 s window, 3 re-sends,
/// backoff ×2, settle 2 s).
fn with_default_acks() -> Policy {
    let d = Policy::default();
    Policy {
        ack_window_ms: d.ack_window_ms,
        ack_resends: d.ack_resends,
        ack_backoff: d.ack_backoff,
        settle_ms: d.settle_ms,
        ..open_policy()
    }
}

#[test]
fn an_unanswered_notice_is_resent_with_backoff_well_before_the_timeout() {
    let devices = vec![ali(0), fog(0)];
    let (mut h, start) = Harness::started(with_default_acks(), on_v1(devices.clone()));
    let first = sends(&start);
    assert_eq!(first_sends(&start), devices);
    assert_eq!(
        h.campaign.next_deadline(),
        Some(Timestamp::from_millis(10_000))
    );
    assert!(sends(&h.at(9_999)).is_empty());
    // Re-sent at +10 s, +30 s, +70 s: the same attempt and FogCloud task_id each time.
    for (at, n) in [(10_000, 1), (30_000, 2), (70_000, 3)] {
        let actions = h.at(at);
        let again = sends(&actions);
        assert_eq!(again.len(), 2, "at {at}: {actions:?}");
        for (resent, original) in again.iter().zip(&first) {
            assert!(resent.resend && resent.attempt == 1, "{resent:?}");
            assert_eq!(resent.task, original.task);
        }
        let what_next = if n < 3 {
            format!("re-sent ({} more if unanswered", 3 - n)
        } else {
            "re-sent (the last re-send".to_owned()
        };
        assert!(
            logs(&actions).iter().any(|l| l.contains(&what_next)),
            "{actions:?}"
        );
        let snap = h.campaign.snapshot();
        assert!(snap.devices.iter().all(|d| d.resends == n));
    }
    let snap = h.campaign.snapshot();
    assert!(snap.devices.iter().all(|d| d.next_resend_at.is_none()));
    // After the last re-send only the device timeout is left (30 minutes after the notice).
    assert_eq!(
        h.campaign.next_deadline(),
        Some(Timestamp::from_millis(30 * 60 * 1000))
    );
    assert!(sends(&h.at(1_000_000)).is_empty());
    assert!(devices.iter().all(|d| h.status(d) == DeviceStatus::Noticed));
    h.check_store();
}

#[test]
fn an_answered_notice_is_not_resent_and_dji_keeps_its_own_reply_wait() {
    let (a, b, f) = (ali(0), ali(1), fog(2));
    let (mut h, start) = Harness::started(
        with_default_acks(),
        on_v1([a.clone(), b.clone(), f.clone()]),
    );
    let fog_task = sends(&start)
        .into_iter()
        .find(|o| o.device == f)
        .unwrap()
        .task;
    h.now = 5_000;
    h.event(ali_progress(&a, 10));
    // Its old version without progress: it has just (re)connected and may have missed the
    // notice, which goes again once it has settled (2 s), not at the window's end.
    h.event(version(&b, "1.0"));
    h.event(progress(
        &f,
        fog_task,
        UpgradeStatus::InProgress,
        Phase::Unspecified,
        Some(5),
    ));
    assert!(sends(&h.at(6_999)).is_empty());
    let settled: Vec<DeviceId> = sends(&h.at(7_000)).into_iter().map(|o| o.device).collect();
    assert_eq!(settled, vec![b.clone()]);
    h.now = 8_000;
    h.event(ali_progress(&b, 1));
    assert!(sends(&h.at(10_000)).is_empty());
    assert!(sends(&h.at(100_000)).is_empty());
    for quiet in [&a, &f] {
        assert_eq!(h.campaign.device(quiet).unwrap().resends, 0);
    }
    assert_eq!(h.campaign.device(&b).unwrap().resends, 1);
    h.check_store();

    // DJI: only its own services_reply wait (3 s, 2 re-sends), not the ack window on top.
    let d = dji(3);
    let (mut h, _) = Harness::started(with_default_acks(), on_v1([d.clone()]));
    let dji_sends: Vec<u64> = [3_000, 6_000, 9_000, 10_000, 30_000, 70_000]
        .into_iter()
        .filter(|&t| !sends(&h.at(t)).is_empty())
        .collect();
    assert_eq!(dji_sends, vec![3_000, 6_000]);
    assert_eq!(h.status(&d), DeviceStatus::Failed);
    assert_eq!(h.campaign.device(&d).unwrap().resends, 2);
    h.check_store();
}

#[test]
fn the_ack_wait_survives_a_restart() {
    let a = ali(0);
    let (mut h, _) = Harness::started(with_default_acks(), on_v1([a.clone()]));
    assert_eq!(sends(&h.at(10_000)).len(), 1);
    h.check_store();
    let loaded = h.store.load_campaign(h.campaign.id()).unwrap();
    let stored = loaded.devices[0].clone();
    assert_eq!(stored.resends, 1);
    assert_eq!(
        stored
            .reply_wait
            .map(|w| (w.deadline_at.as_millis(), w.resends_left)),
        Some((30_000, 2))
    );
    let mut resumed = Campaign::resume(loaded, Timestamp::from_millis(12_000), &|_| true).unwrap();
    let mut ids = SequentialIds::new();
    // No re-send at the resume: the stored ack wait covers a notice that may never have left,
    // and gives what the broker kept for the console's session time to arrive first.
    assert!(
        sends(&resumed.handle(Input::Tick, Timestamp::from_millis(12_000), &mut ids)).is_empty()
    );
    assert_eq!(
        resumed.next_deadline(),
        Some(Timestamp::from_millis(30_000))
    );
    let again = sends(&resumed.handle(Input::Tick, Timestamp::from_millis(30_000), &mut ids));
    assert_eq!(again.len(), 1);
    assert_eq!(resumed.device(&a).unwrap().resends, 2);
}

/// A device still `noticed` when the console died, which succeeded while it was down: its
/// report arrives from the console's persistent session just after the resume. With settling on
/// it must not get a second notice; a device that stays silent gets its re-send `settle_ms` on.
#[test]
fn a_resume_waits_for_kept_reports_before_re_sending() {
    let (a, b) = (ali(0), ali(1));
    let mut policy = with_default_acks();
    policy.ack_resends = 0;
    let (h, start) = Harness::started(policy, on_v1([a.clone(), b.clone()]));
    assert_eq!(sends(&start).len(), 2);
    h.check_store();
    let loaded = h.store.load_campaign(h.campaign.id()).unwrap();
    let mut resumed = Campaign::resume(loaded, Timestamp::from_millis(60_000), &|_| true).unwrap();
    let mut ids = SequentialIds::new();
    assert!(
        sends(&resumed.handle(Input::Tick, Timestamp::from_millis(60_000), &mut ids)).is_empty()
    );
    let report = version(&a, TARGET);
    let actions = resumed.handle(
        Input::Event(report),
        Timestamp::from_millis(60_500),
        &mut ids,
    );
    assert!(sends(&actions).is_empty(), "{actions:?}");
    assert_eq!(resumed.device(&a).unwrap().status, DeviceStatus::Succeeded);
    let later = sends(&resumed.handle(Input::Tick, Timestamp::from_millis(62_000), &mut ids));
    assert_eq!(
        later.iter().map(|o| o.device.clone()).collect::<Vec<_>>(),
        vec![b.clone()]
    );
    assert!(
        sends(&resumed.handle(Input::Tick, Timestamp::from_millis(600_000), &mut ids)).is_empty()
    );
    assert_eq!(resumed.device(&a).unwrap().resends, 0);
}

#[test]
fn a_device_heard_for_the_first_time_is_noticed_after_the_settle_delay() {
    let (a, f) = (ali(0), fog(1));
    let (mut h, start) = Harness::started(
        with_default_acks(),
        vec![
            target(a.clone(), Some("1.0"), false),
            target(f.clone(), Some("1.0"), false),
        ],
    );
    assert!(sends(&start).is_empty());
    h.now = 60_000;
    // Its first report: it may not have subscribed yet.
    assert!(first_sends(&h.event(version(&a, "1.0"))).is_empty());
    h.now = 60_500;
    assert!(
        first_sends(&h.run(Input::Seen {
            device: f.clone(),
            online: true
        }))
        .is_empty()
    );
    assert_eq!(
        h.campaign.next_deadline(),
        Some(Timestamp::from_millis(62_000))
    );
    assert!(first_sends(&h.at(61_999)).is_empty());
    assert_eq!(first_sends(&h.at(62_000)), vec![a.clone()]);
    assert_eq!(first_sends(&h.at(62_500)), vec![f.clone()]);
    // And the ack window follows from the notice.
    assert_eq!(
        h.campaign.next_deadline(),
        Some(Timestamp::from_millis(72_000))
    );
    h.check_store();
}

/// As the engine builds targets: Alibaba and FogCloud devices are assumed online, so their
/// first report is not a "came back" and must start the settle delay by itself.
#[test]
fn a_pending_device_whose_report_lets_it_be_noticed_waits_the_settle_delay() {
    let (a, f) = (ali(0), fog(1));
    let mut policy = with_default_acks();
    policy.only_from_versions = vec!["1.0".into()];
    let (mut h, start) = Harness::started(
        policy,
        vec![target(a.clone(), None, true), target(f.clone(), None, true)],
    );
    // Version unknown: they wait for a report.
    assert!(sends(&start).is_empty());
    h.now = 5_000;
    assert!(first_sends(&h.event(version(&a, "1.0"))).is_empty());
    assert!(first_sends(&h.event(version(&f, "1.0"))).is_empty());
    assert!(first_sends(&h.at(6_999)).is_empty());
    assert_eq!(first_sends(&h.at(7_000)), vec![a.clone(), f.clone()]);
    h.check_store();
}

#[test]
fn a_device_heard_just_before_the_start_is_noticed_once_it_has_settled() {
    let (a, d, old) = (ali(0), dji(1), fog(2));
    let mut h = Harness::new(
        with_default_acks(),
        on_v1([a.clone(), d.clone(), old.clone()]),
    );
    h.now = 10_000;
    // Heard 500 ms ago (maybe before it subscribed), a DJI dock just as recently (it has its
    // own reply wait), and a device heard 5 s ago.
    h.campaign.note_heard(&a, Timestamp::from_millis(9_500));
    h.campaign.note_heard(&d, Timestamp::from_millis(9_500));
    h.campaign.note_heard(&old, Timestamp::from_millis(5_000));
    let start = h.run(Input::Start);
    assert_eq!(first_sends(&start), vec![d.clone(), old.clone()]);
    assert_eq!(
        h.campaign.next_deadline(),
        Some(Timestamp::from_millis(11_500))
    );
    assert!(first_sends(&h.at(11_499)).is_empty());
    assert_eq!(first_sends(&h.at(11_500)), vec![a.clone()]);
    h.check_store();
}

#[test]
fn a_fogcloud_pull_is_answered_at_once_with_the_full_notice() {
    // A rate of 1 per minute: the scheduler reaches device 1 only at 60 s.
    let policy = Policy {
        rate: RateLimit {
            per_minute: 1,
            burst: 1,
        },
        ..with_default_acks()
    };
    let devices = vec![fog(0), fog(1)];
    let (mut h, start) = Harness::started(policy, on_v1(devices.clone()));
    assert_eq!(first_sends(&start), vec![devices[0].clone()]);
    h.now = 1_000;
    let pulled = h.event(firmware_get(&devices[1]));
    assert!(sends(&pulled).is_empty(), "{pulled:?}");
    let replies: Vec<_> = pulled
        .iter()
        .filter_map(|a| match a {
            Action::ReplyFirmwareGet { request, pending } => Some((request, pending)),
            _ => None,
        })
        .collect();
    match replies.as_slice() {
        [(request, Some(order))] => {
            assert_eq!(
                request.id,
                MsgId::Str("7".into()),
                "the request's id is kept"
            );
            assert_eq!(order.device, devices[1]);
            assert!(!order.resend && order.attempt == 1);
            assert!(matches!(&order.task, TaskRef::Key(t) if !t.is_empty()));
        }
        other => panic!("expected one reply with the notice: {other:?}"),
    }
    assert_eq!(h.status(&devices[1]), DeviceStatus::Noticed);
    // It counts as the notice: no new attempt goes to it when the next token comes.
    assert!(first_sends(&h.at(60_000)).is_empty());
    h.check_store();
}

#[test]
fn a_pull_takes_a_concurrency_slot_and_fogcloud_gets_silence_when_nothing_is_pending() {
    let policy = Policy {
        max_in_flight: 2,
        rate: RateLimit {
            per_minute: 1,
            burst: 1,
        },
        ..with_default_acks()
    };
    let devices: Vec<DeviceId> = (0..3).map(fog).collect();
    let (mut h, _) = Harness::started(policy, on_v1(devices.clone()));
    h.now = 1_000;
    let answered = h.event(firmware_get(&devices[1]));
    assert!(matches!(
        answered.last(),
        Some(Action::ReplyFirmwareGet {
            pending: Some(_),
            ..
        })
    ));
    assert_eq!(h.campaign.counts().in_flight(), 2);
    // The cap is full: the third device's pull gets nothing at all (no empty firmware.post).
    let silent = h.event(firmware_get(&devices[2]));
    assert!(
        !silent
            .iter()
            .any(|a| matches!(a, Action::ReplyFirmwareGet { .. } | Action::SendUpgrade(_))),
        "{silent:?}"
    );
    assert_eq!(h.status(&devices[2]), DeviceStatus::Pending);
    // A slot frees: the push goes out as usual.
    h.now = 61_000;
    assert_eq!(
        first_sends(&h.succeed(&devices[0])),
        vec![devices[2].clone()]
    );
    h.check_store();
}

#[test]
fn a_fogcloud_pull_before_its_wave_opens_gets_no_reply_and_alibaba_gets_nothing_pending() {
    let policy = Policy {
        canary: CanarySize::Count(2),
        wave_size: 2,
        ..with_default_acks()
    };
    let devices = vec![fog(0), ali(1), fog(2), ali(3)];
    let (mut h, start) = Harness::started(policy, on_v1(devices.clone()));
    assert_eq!(first_sends(&start), devices[..2].to_vec());
    let fog_later = h.event(firmware_get(&devices[2]));
    assert!(
        !fog_later
            .iter()
            .any(|a| matches!(a, Action::ReplyFirmwareGet { .. })),
        "{fog_later:?}"
    );
    let ali_later = h.event(firmware_get(&devices[3]));
    assert!(matches!(
        ali_later.as_slice(),
        [Action::ReplyFirmwareGet { pending: None, .. }]
    ));
    h.check_store();
}

#[test]
fn a_device_that_asks_while_settling_is_answered_at_once() {
    let f = fog(0);
    let (mut h, _) = Harness::started(
        with_default_acks(),
        vec![target(f.clone(), Some("1.0"), false)],
    );
    h.now = 5_000;
    assert!(first_sends(&h.event(version(&f, "1.0"))).is_empty());
    h.now = 5_100;
    let asked = h.event(firmware_get(&f));
    assert!(matches!(
        asked.last(),
        Some(Action::ReplyFirmwareGet { pending: Some(o), .. }) if !o.resend
    ));
    assert!(sends(&h.at(7_000)).is_empty(), "noticed once");
    h.check_store();
}

mod properties {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    #[derive(Debug, Clone)]
    enum Op {
        Advance(u64),
        Version {
            dev: usize,
            target: bool,
        },
        Progress {
            dev: usize,
            kind: u8,
            percent: u8,
            stale: bool,
        },
        Reply {
            dev: usize,
            result: i64,
        },
        Get {
            dev: usize,
        },
        Seen {
            dev: usize,
            online: bool,
        },
        Command(u8),
        PublishFailed {
            dev: usize,
        },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u64..40_000).prop_map(Op::Advance),
            3 => (0usize..9, any::<bool>()).prop_map(|(dev, target)| Op::Version { dev, target }),
            5 => (0usize..9, 0u8..6, 0u8..=100, any::<bool>())
                .prop_map(|(dev, kind, percent, stale)| Op::Progress { dev, kind, percent, stale }),
            2 => (0usize..9, prop_oneof![Just(0i64), Just(312015i64)]).prop_map(|(dev, result)| Op::Reply { dev, result }),
            1 => (0usize..9).prop_map(|dev| Op::Get { dev }),
            1 => (0usize..9, any::<bool>()).prop_map(|(dev, online)| Op::Seen { dev, online }),
            1 => (0u8..5).prop_map(Op::Command),
            1 => (0usize..9).prop_map(|dev| Op::PublishFailed { dev }),
        ]
    }

    fn device(i: usize) -> DeviceId {
        match i % 3 {
            0 => ali(i),
            1 => fog(i),
            _ => dji(i),
        }
    }

    fn input_for(op: &Op, h: &mut Harness, orders: &HashMap<DeviceId, UpgradeOrder>) -> Input {
        let stale = UpgradeOrder {
            device: ali(0),
            attempt: 1,
            task: TaskRef::Key("999999".into()),
            exchange_id: None,
            resend: false,
        };
        match op {
            Op::Advance(ms) => {
                h.now += ms;
                Input::Tick
            }
            Op::Version { dev, target } => {
                Input::Event(version(&device(*dev), if *target { TARGET } else { "1.0" }))
            }
            Op::Progress {
                dev,
                kind,
                percent,
                stale: use_stale,
            } => {
                let d = device(*dev);
                let order = if *use_stale {
                    &stale
                } else {
                    orders.get(&d).unwrap_or(&stale)
                };
                let status = match kind {
                    0 | 1 => UpgradeStatus::InProgress,
                    2 => UpgradeStatus::Ok,
                    3 => UpgradeStatus::Failed(aliyun::failure(-1)),
                    4 => UpgradeStatus::Rejected(dji_dialect::failure(312014)),
                    _ => UpgradeStatus::Timeout,
                };
                let phase = if *kind == 1 {
                    Phase::Install
                } else {
                    Phase::Download
                };
                let (from, task) = match &order.task {
                    TaskRef::Key(b) if d.dialect() == dji_dialect::ID => {
                        (dji(0), TaskRef::Key(b.clone()))
                    }
                    t if d.dialect() == aliyun::ID => (
                        d.clone(),
                        if *use_stale { TaskRef::None } else { t.clone() },
                    ),
                    t => (d.clone(), t.clone()),
                };
                Input::Event(progress(&from, task, status, phase, Some(*percent)))
            }
            Op::Reply { dev, result } => {
                let d = device(*dev);
                match orders.get(&d).and_then(dji_exchange) {
                    Some(ex) => Input::Event(service_reply(&ex.bid, &ex.tid, *result, None)),
                    None => Input::Tick,
                }
            }
            Op::Get { dev } => Input::Event(firmware_get(&device(*dev))),
            Op::Seen { dev, online } => Input::Seen {
                device: device(*dev),
                online: *online,
            },
            Op::Command(c) => match c {
                0 => Input::Pause,
                1 => Input::Resume,
                2 => Input::AdvanceWave,
                3 => Input::RetryFailed,
                _ => Input::Cancel,
            },
            Op::PublishFailed { dev } => {
                let d = device(*dev);
                let attempt = orders.get(&d).map_or(1, |o| o.attempt);
                Input::PublishFailed {
                    device: d,
                    attempt,
                    error: "broker down".into(),
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        /// Whatever happens: counts match the records, the concurrency cap and the rate hold,
        /// nobody succeeds without a notice, the engine is never asked to spin, and the store
        /// holds exactly the campaign's state.
        #[test]
        fn invariants_hold_under_any_input_sequence(ops in proptest::collection::vec(op(), 1..80)) {
            let policy = Policy {
                canary: CanarySize::Count(2),
                wave_size: 3,
                success_threshold_percent: 60,
                rate: RateLimit { per_minute: 12, burst: 2 },
                max_in_flight: 3,
                device_timeout_secs: 50,
                retries: 1,
                retry_interval_secs: 10,
                abort: Some(AbortThreshold { failure_percent: 70, min_finished: 4 }),
                ..Policy::default()
            };
            let targets: Vec<Target> = (0..9).map(|i| target(device(i), Some("1.0"), i != 4)).collect();
            let (mut h, start) = Harness::started(policy.clone(), targets);
            let mut orders: HashMap<DeviceId, UpgradeOrder> = HashMap::new();
            let mut notice_times: Vec<u64> = Vec::new();
            let mut record = |actions: &[Action], now: u64, orders: &mut HashMap<DeviceId, UpgradeOrder>| {
                for a in actions {
                    let order = match a {
                        Action::SendUpgrade(o) => o,
                        Action::ReplyFirmwareGet { pending: Some(o), .. } => o,
                        _ => continue,
                    };
                    if !order.resend {
                        notice_times.push(now);
                    }
                    orders.insert(order.device.clone(), order.clone());
                }
            };
            record(&start, 0, &mut orders);
            let lines_of = |c: &Campaign| -> Vec<DeviceSnapshot> {
                c.devices().iter().map(DeviceSnapshot::from).collect()
            };
            h.campaign.take_changed();
            let mut shown_before = lines_of(&h.campaign);
            for op in &ops {
                let input = input_for(op, &mut h, &orders);
                let actions = h.run(input);
                record(&actions, h.now, &mut orders);
                // The snapshot's persistent lines are what a rebuild from the records gives,
                // and every line that differs from the last look is among the changes told.
                let rebuilt = lines_of(&h.campaign);
                let kept: Vec<DeviceSnapshot> =
                    h.campaign.snapshot().devices.iter().map(|l| DeviceSnapshot::clone(l)).collect();
                prop_assert_eq!(&kept, &rebuilt);
                let changed = h.campaign.take_changed();
                for (before, now) in shown_before.iter().zip(&rebuilt) {
                    prop_assert!(before == now || changed.contains(&now.id), "{} changed untold", now.id);
                }
                let mut unique = changed.clone();
                unique.sort();
                unique.dedup();
                prop_assert_eq!(unique.len(), changed.len(), "a change told twice: {:?}", changed);
                shown_before = rebuilt;
                let c = &h.campaign;
                let recount = ota_console::rollout::Counts::from_statuses(c.devices().iter().map(|d| d.status));
                prop_assert_eq!(c.counts(), recount);
                prop_assert!(c.counts().in_flight() <= policy.max_in_flight as usize);
                for d in c.devices() {
                    prop_assert!(d.status != DeviceStatus::Succeeded || d.attempts > 0, "{} succeeded unnoticed", d.device);
                    prop_assert!(d.percent <= 100);
                }
                if let Some(deadline) = c.next_deadline() {
                    prop_assert!(deadline.as_millis() > h.now, "deadline {deadline} not after now {}", h.now);
                }
            }
            for (i, &t) in notice_times.iter().enumerate() {
                let in_minute = notice_times[i..].iter().take_while(|&&u| u < t + 60_000).count();
                prop_assert!(in_minute <= 12 + 2, "{in_minute} notices in the minute from {t}");
            }
            h.check_store();
        }
    }
}

#[test]
fn a_dock_and_its_drone_are_upgraded_one_after_the_other() {
    let (dock, drone, other_dock) = (dji(1), dji(2), dji(3));
    let mut h = Harness::new(
        open_policy(),
        on_v1([dock.clone(), drone.clone(), other_dock.clone()]),
    );
    let (d1, d2) = (dock.clone(), drone.clone());
    h.campaign
        .set_gateways(&move |d: &DeviceId| (d == &d2).then(|| d1.clone()));
    let start = h.run(Input::Start);
    // The first device of each dock goes out; the drone waits for its dock.
    assert_eq!(first_sends(&start), vec![dock.clone(), other_dock.clone()]);
    assert_eq!(h.status(&drone), DeviceStatus::Pending);
    // The dock finishes: now its drone's turn.
    let after = h.succeed(&dock);
    assert_eq!(first_sends(&after), vec![drone.clone()]);
    h.succeed(&drone);
    h.succeed(&other_dock);
    assert_eq!(h.campaign.state(), CampaignState::Completed);
    h.check_store();
}

#[test]
fn a_broker_outage_longer_than_the_timeout_times_out_nobody() {
    let (a, b, c) = (ali(0), ali(1), ali(2));
    let policy = Policy {
        device_timeout_secs: 60,
        max_in_flight: 2,
        ..open_policy()
    };
    let (mut h, start) = Harness::started(policy, on_v1([a.clone(), b.clone(), c.clone()]));
    assert_eq!(first_sends(&start), vec![a.clone(), b.clone()]);
    h.now = 10_000;
    h.event(ali_progress(&a, 40));

    // The console's link dies at 20 s and stays down for 100 s, well past both deadlines.
    h.now = 20_000;
    let lost = h.run(Input::BrokerLost);
    assert!(
        logs(&lost)
            .iter()
            .any(|l| l.contains("broker link is down"))
    );
    assert_eq!(h.campaign.next_deadline(), None, "timers held while deaf");
    assert!(h.at(61_000).is_empty() && h.at(119_999).is_empty());
    assert_eq!(h.status(&a), DeviceStatus::Downloading);
    assert_eq!(h.status(&b), DeviceStatus::Noticed);
    // A slot that frees up while deaf sends nothing: the notice would only queue.
    h.now = 100_000;
    h.succeed(&a);
    assert_eq!(h.status(&a), DeviceStatus::Succeeded);
    assert_eq!(h.campaign.device(&c).unwrap().status, DeviceStatus::Pending);

    h.now = 120_000;
    let back = h.run(Input::BrokerBack);
    // b never showed a sign of life: its notice may have been lost in the outage.
    let resent: Vec<_> = sends(&back).into_iter().filter(|o| o.resend).collect();
    assert_eq!(resent.len(), 1);
    assert_eq!(resent[0].device, b);
    assert!(
        logs(&back).iter().any(|l| l.contains("back after 100.0 s")),
        "{:?}",
        logs(&back)
    );
    assert_eq!(first_sends(&back), vec![c.clone()], "held notice goes out");
    // b was noticed at 0 with a 60 s timeout; 100 s of outage move it to 160 s.
    assert_eq!(
        h.campaign.device(&b).unwrap().deadline_at,
        Some(Timestamp::from_millis(160_000))
    );
    h.at(159_999);
    assert_eq!(h.status(&b), DeviceStatus::Noticed);
    h.at(160_000);
    assert_eq!(
        h.status(&b),
        DeviceStatus::TimedOut,
        "its own silence counts"
    );
    h.now = 170_000;
    h.succeed(&c);
    assert_eq!(h.campaign.counts().succeeded, 2);
    h.check_store();
}

#[test]
fn a_broker_outage_holds_dji_resends_and_retries() {
    let (d, a) = (dji(1), ali(0));
    let policy = Policy {
        retries: 1,
        retry_interval_secs: 10,
        ..open_policy()
    };
    let (mut h, start) = Harness::started(policy, on_v1([d.clone(), a.clone()]));
    assert_eq!(sends(&start).len(), 2);
    h.now = 1_000;
    h.event(progress(
        &a,
        TaskRef::None,
        UpgradeStatus::Failed(aliyun::failure(-2)),
        Phase::Unspecified,
        None,
    ));
    assert_eq!(h.status(&a), DeviceStatus::Pending);
    h.now = 2_000;
    h.run(Input::BrokerLost);
    // The DJI reply wait (3 s) and the retry (11 s) both fall inside the outage.
    assert!(sends(&h.at(30_000)).is_empty());
    h.now = 32_000;
    let back = h.run(Input::BrokerBack);
    // The retry was due during the outage: it goes out now. The reply wait moved by 30 s.
    assert_eq!(first_sends(&back), vec![a.clone()]);
    assert_eq!(
        h.campaign
            .device(&d)
            .unwrap()
            .reply_wait
            .unwrap()
            .deadline_at,
        Timestamp::from_millis(33_000)
    );
    assert!(sends(&h.at(32_999)).is_empty());
    let resend = sends(&h.at(33_000));
    assert_eq!(resend.len(), 1);
    assert!(resend[0].resend && resend[0].device == d);
    h.check_store();
}

#[test]
fn a_campaign_started_while_the_broker_is_away_waits_for_it() {
    let a = ali(0);
    let mut h = Harness::new(open_policy(), on_v1([a.clone()]));
    h.run(Input::BrokerLost);
    assert!(sends(&h.run(Input::Start)).is_empty());
    h.now = 5_000;
    assert_eq!(first_sends(&h.run(Input::BrokerBack)), vec![a.clone()]);
    assert_eq!(
        h.campaign.device(&a).unwrap().deadline_at,
        Some(Timestamp::from_millis(5_000 + 30 * 60 * 1000))
    );
    h.check_store();
}

/// Which wave each device was put in, in the order of `devices`.
fn waves_of(h: &Harness, devices: &[DeviceId]) -> Vec<Option<u32>> {
    devices
        .iter()
        .map(|d| h.campaign.device(d).unwrap().wave)
        .collect()
}

#[test]
fn the_canary_and_early_waves_take_the_devices_heard_most_recently() {
    // Seven Alibaba devices, all assumed reachable (as remembered ones are); the engine heard
    // dev1, dev3 and dev4 before creating the campaign (at 100, 300 and 200 ms), dev0, dev2,
    // dev5 and dev6 only remembered. Before the start, dev2 connects (at 1 s) and dev5 reports
    // its version (at 1.5 s).
    let devices: Vec<DeviceId> = (0..7).map(ali).collect();
    let heard = [None, Some(100), None, Some(300), Some(200), None, None];
    let targets = devices
        .iter()
        .zip(heard)
        .map(|(d, at)| Target {
            heard_at: at.map(Timestamp::from_millis),
            ..target(d.clone(), Some("1.0"), true)
        })
        .collect();
    let policy = Policy {
        canary: CanarySize::Count(2),
        wave_size: 2,
        ..open_policy()
    };
    let mut h = Harness::new(policy.clone(), targets);
    h.now = 1_000;
    h.run(Input::Seen {
        device: devices[2].clone(),
        online: true,
    });
    h.now = 1_500;
    h.event(version(&devices[5], "1.0"));
    h.now = 2_000;
    let started = h.run(Input::Start);
    let mut canary = first_sends(&started);
    canary.sort();
    assert_eq!(canary, vec![devices[2].clone(), devices[5].clone()]);
    // dev5 (1.5 s) and dev2 (1 s) are the canary; then dev3 (300 ms), dev4 (200 ms); then dev1
    // (100 ms) and the first never-heard one in target order; the last never-heard one last.
    assert_eq!(
        waves_of(&h, &devices),
        [
            Some(2),
            Some(2),
            Some(0),
            Some(1),
            Some(1),
            Some(0),
            Some(3)
        ]
    );
    h.check_store();

    // Deterministic: the same inputs at the same times cut the same waves.
    let mut again = Harness::new(
        policy,
        devices
            .iter()
            .zip(heard)
            .map(|(d, at)| Target {
                heard_at: at.map(Timestamp::from_millis),
                ..target(d.clone(), Some("1.0"), true)
            })
            .collect(),
    );
    again.now = 1_000;
    again.run(Input::Seen {
        device: devices[2].clone(),
        online: true,
    });
    again.now = 1_500;
    again.event(version(&devices[5], "1.0"));
    again.now = 2_000;
    again.run(Input::Start);
    assert_eq!(waves_of(&again, &devices), waves_of(&h, &devices));
}
