//! The AWS IoT Jobs service as the console plays it: the job executions of each thing, their
//! versions and states, and the answers that need them. The dialect's [`Service`] (see
//! `protocol/service.rs`).
//!
//! Owns: one execution per (thing, job id), created when a campaign's notice reaches the thing
//! (pushed: `notify-next`; or pulled: the answer to `start-next`, `get`, `$next/get`); the
//! transitions a thing may make (QUEUED / IN_PROGRESS → IN_PROGRESS, SUCCEEDED, FAILED,
//! REJECTED, REMOVED; nothing out of a terminal state: InvalidStateTransition), `versionNumber`
//! (+1 on each accepted change; an `expectedVersion` that differs is a VersionMismatch),
//! `executionNumber` (1: a retry of the campaign is a new job id), the step timer
//! (`stepTimeoutInMinutes` of `start-next` / `update`; an execution not updated in time is
//! TIMED_OUT when the thing is next heard), `clientToken` echoes, and `notify` / `notify-next`
//! when a thing's pending executions change.
//!
//! The campaigns decide what is pending: a pull is answered through them (the request becomes
//! an `Event::FirmwareGet`, their `Notice::FirmwareGetReply` names the pending upgrade or
//! none), and an execution they no longer name when the thing asks is CANCELED (a canceled
//! campaign, a superseded attempt).
//!
//! After a console restart the executions are rebuilt, not read back: the campaigns are
//! restored from the database, so an execution comes back when its notice is re-sent or its
//! thing asks; an update naming a job id the service does not hold is taken at the device's
//! word when the id has the shape of the console's task keys (a UUID: it may be one issued
//! before the restart; its `expectedVersion`, if any, becomes the version), and its events go
//! to the campaigns, whose task keys decide whether it is theirs. Any other unknown job id is
//! ResourceNotFound.

use std::collections::HashMap;

use serde_json::json;

use super::SUCCESS;
use super::codec::{
    self, Details, ErrorCode, Execution, Incoming, JobRef, PullKind, Request, Status, Update,
};
use crate::device_id::DeviceId;
use crate::protocol::{
    DecodeError, EncodeError, Event, Notice, Outbound, Served, Service, TaskRef, UpgradeNotice,
};

/// Terminal executions kept per thing (for `{jobId}/get` and late updates); older ones go.
const KEEP_TERMINAL: usize = 8;
/// Things held in all (a request from a thing the service holds nothing for makes no entry
/// beyond this).
const MAX_THINGS: usize = 200_000;
/// Executions held in all, so that devices inventing job ids cannot grow the service.
const MAX_EXECUTIONS: usize = 200_000;

/// One execution and what the console knows about it beyond the API's fields.
#[derive(Debug, Clone)]
struct Held {
    execution: Execution,
    /// The campaign takes SUCCEEDED as proof of this version (notice setting `aws-success`).
    trusted_version: Option<String>,
    /// When the step timer runs out (epoch ms).
    step_deadline_ms: Option<i64>,
    /// When the execution times out whatever the step timer says: the campaign's device
    /// timeout from the notice (the API's `inProgressTimeoutInMinutes`, which the campaign's
    /// policy sets here). Epoch ms.
    deadline_ms: Option<i64>,
    /// Rebuilt after a restart: the version the thing last saw is unknown, so its first
    /// `expectedVersion` is taken as the version.
    rebuilt: bool,
}

#[derive(Debug, Default)]
struct Thing {
    /// In queue order.
    executions: Vec<Held>,
    /// The last `start-next`'s details and step timer, for its answer.
    start_next: Option<(Option<Details>, Option<i64>)>,
}

impl Thing {
    fn pending(&self) -> impl Iterator<Item = &Held> {
        self.executions
            .iter()
            .filter(|h| !h.execution.status.is_terminal())
    }

    fn find(&self, job_id: &str) -> Option<usize> {
        self.executions
            .iter()
            .position(|h| h.execution.job_id == job_id)
    }

    /// Cancels every pending execution but the one at `keep`: the campaigns no longer name
    /// them (a canceled campaign, an attempt superseded by a retry with a new job id).
    fn withdraw_others(&mut self, keep: Option<usize>, now_ms: i64) {
        for (i, h) in self.executions.iter_mut().enumerate() {
            if Some(i) != keep && !h.execution.status.is_terminal() {
                h.execution.status = Status::Canceled;
                h.execution.version += 1;
                h.execution.last_updated_at = now_ms.div_euclid(1000);
            }
        }
    }

    /// Drops the oldest terminal executions beyond [`KEEP_TERMINAL`].
    fn trim(&mut self) {
        let terminal = self
            .executions
            .iter()
            .filter(|h| h.execution.status.is_terminal())
            .count();
        let mut excess = terminal.saturating_sub(KEEP_TERMINAL);
        self.executions.retain(|h| {
            if excess > 0 && h.execution.status.is_terminal() {
                excess -= 1;
                false
            } else {
                true
            }
        });
    }
}

/// The Jobs service of one engine.
#[derive(Debug, Default)]
pub struct Jobs {
    things: HashMap<String, Thing>,
}

impl Jobs {
    fn held(&self) -> usize {
        self.things.values().map(|t| t.executions.len()).sum()
    }

    /// `notify-next` and `notify` for `thing`.
    fn notify(&self, thing: &str, now_ms: i64) -> Vec<Outbound> {
        let Some(t) = self.things.get(thing) else {
            return Vec::new();
        };
        let next = t.pending().next().map(|h| &h.execution);
        vec![
            codec::notify_next(thing, next, now_ms),
            codec::notify(thing, t.pending().map(|h| &h.execution), now_ms),
        ]
    }

    /// Executions whose step timer ran out become TIMED_OUT; their events and notifications.
    fn expire(&mut self, thing: &str, device: &DeviceId, now_ms: i64, served: &mut Served) {
        let Some(t) = self.things.get_mut(thing) else {
            return;
        };
        let mut expired = false;
        for h in &mut t.executions {
            let due = [h.step_deadline_ms, h.deadline_ms]
                .into_iter()
                .flatten()
                .any(|d| d <= now_ms);
            if due && !h.execution.status.is_terminal() {
                h.execution.status = Status::TimedOut;
                h.execution.version += 1;
                h.execution.last_updated_at = now_ms.div_euclid(1000);
                h.step_deadline_ms = None;
                h.deadline_ms = None;
                expired = true;
                served.events.extend(codec::update_events(
                    device,
                    &h.execution.job_id,
                    Status::TimedOut,
                    &h.execution.status_details,
                    None,
                ));
            }
        }
        if expired {
            served.replies.extend(self.notify(thing, now_ms));
        }
    }

    fn describe(
        &self,
        incoming: &Incoming,
        job: &str,
        number: Option<i64>,
        doc: bool,
        now_ms: i64,
    ) -> Outbound {
        let token = incoming.client_token.as_deref();
        let found = self
            .things
            .get(&incoming.thing)
            .and_then(|t| t.find(job).and_then(|i| t.executions.get(i)))
            .filter(|h| number.is_none_or(|n| n == h.execution.execution_number));
        match found {
            None => codec::rejected(
                &incoming.stem,
                ErrorCode::ResourceNotFound,
                &format!("no execution of job {job} for thing {}", incoming.thing),
                token,
                None,
                now_ms,
            ),
            Some(h) if h.execution.status.is_terminal() => codec::rejected(
                &incoming.stem,
                ErrorCode::TerminalStateReached,
                &format!("job {job} is {}", h.execution.status.as_str()),
                token,
                Some(h.execution.state()),
                now_ms,
            ),
            Some(h) => codec::accepted(
                &incoming.stem,
                json!({
                    "execution": h.execution.to_json(doc),
                    "timestamp": now_ms.div_euclid(1000),
                }),
                token,
            ),
        }
    }

    /// An update: checked against the execution, applied, answered; its events.
    fn update(&mut self, incoming: &Incoming, update: &Update, now_ms: i64, served: &mut Served) {
        let token = incoming.client_token.as_deref();
        let reject = |code, text: String, state| {
            codec::rejected(&incoming.stem, code, &text, token, state, now_ms)
        };
        if matches!(
            update.status,
            Status::Queued | Status::TimedOut | Status::Canceled
        ) {
            served.replies.push(reject(
                ErrorCode::InvalidStateTransition,
                format!("a device cannot set {}", update.status.as_str()),
                None,
            ));
            return;
        }
        let Some(idx) = self.find_or_adopt(incoming, update, now_ms) else {
            served.replies.push(reject(
                ErrorCode::ResourceNotFound,
                format!(
                    "no execution of job {} for thing {}",
                    update.job_id, incoming.thing
                ),
                None,
            ));
            return;
        };
        let Some(thing) = self.things.get_mut(&incoming.thing) else {
            return;
        };
        let Some(held) = thing.executions.get_mut(idx) else {
            return;
        };
        if let Some((code, text, state)) = refusal(held, update) {
            served.replies.push(reject(code, text, state));
            return;
        }
        apply(held, update, now_ms);
        let e = &held.execution;
        let mut answer = json!({ "timestamp": now_ms.div_euclid(1000) });
        if update.include_execution_state {
            answer["executionState"] = e.state();
        }
        if update.include_job_document {
            answer["jobDocument"] = e.document.clone();
        }
        served
            .replies
            .push(codec::accepted(&incoming.stem, answer, token));
        served.events.extend(codec::update_events(
            &incoming.device,
            &e.job_id,
            e.status,
            &e.status_details,
            held.trusted_version.as_deref(),
        ));
        if e.status.is_terminal() {
            thing.trim();
            served.replies.extend(self.notify(&incoming.thing, now_ms));
        }
    }

    /// The index of the execution an update names, adopting one that may be from before a
    /// restart (see the module doc); `None`: no such execution.
    fn find_or_adopt(
        &mut self,
        incoming: &Incoming,
        update: &Update,
        now_ms: i64,
    ) -> Option<usize> {
        if let Some(i) = self
            .things
            .get(&incoming.thing)
            .and_then(|t| t.find(&update.job_id))
        {
            return Some(i);
        }
        // Only an id that may be the console's own makes the service hold something new.
        if !uuid_shaped(&update.job_id) || self.held() >= MAX_EXECUTIONS {
            return None;
        }
        let thing = self.things.entry(incoming.thing.clone()).or_default();
        let now = now_ms.div_euclid(1000);
        thing.executions.push(Held {
            execution: Execution {
                job_id: update.job_id.clone(),
                thing: incoming.thing.clone(),
                document: json!({}),
                status: Status::InProgress,
                status_details: Details::new(),
                queued_at: now,
                started_at: Some(now),
                last_updated_at: now,
                version: update.expected_version.unwrap_or(1),
                execution_number: update.execution_number.unwrap_or(1),
            },
            trusted_version: None,
            step_deadline_ms: None,
            deadline_ms: None,
            rebuilt: true,
        });
        Some(thing.executions.len() - 1)
    }

    /// The execution of `notice`'s job for its thing, created queued when new; its index.
    fn hold(
        &mut self,
        notice: &UpgradeNotice,
        now_ms: i64,
        rebuilt: bool,
    ) -> Result<usize, EncodeError> {
        let job_id = codec::job_id_of(notice)?;
        let thing = self
            .things
            .entry(notice.device.name().to_owned())
            .or_default();
        if let Some(i) = thing.find(job_id) {
            return Ok(i);
        }
        let trusted = notice.settings.value_of(&SUCCESS) == "status";
        thing.executions.push(Held {
            execution: Execution::queued(notice, job_id, now_ms),
            trusted_version: trusted.then(|| notice.offer.version.clone()),
            step_deadline_ms: None,
            deadline_ms: notice
                .address
                .device_timeout_ms
                .and_then(|t| i64::try_from(t).ok())
                .map(|t| now_ms.saturating_add(t)),
            rebuilt,
        });
        Ok(thing.executions.len() - 1)
    }

    /// Answers a pull with what the campaigns say is pending (`pending`), after making the
    /// service agree: the execution of the pending notice exists (and is started, for
    /// `start-next`); every other pending execution of the thing was withdrawn: CANCELED.
    fn pull_reply(
        &mut self,
        device: &DeviceId,
        id: &crate::protocol::MsgId,
        pending: Option<&UpgradeNotice>,
        now_ms: i64,
    ) -> Result<Vec<Outbound>, EncodeError> {
        let (kind, token) = PullKind::from_id(id)
            .ok_or_else(|| EncodeError::Invalid(format!("{id:?} is no AWS Jobs request")))?;
        let thing_name = device.name().to_owned();
        let keep = match pending {
            Some(n) => Some(self.hold(n, now_ms, true)?),
            None => None,
        };
        let Some(thing) = self.things.get_mut(&thing_name) else {
            // Nothing held, nothing pending: the empty answer.
            return Ok(vec![codec::pull_answer(
                &thing_name,
                kind,
                token,
                &[],
                now_ms,
            )]);
        };
        let now = now_ms.div_euclid(1000);
        thing.withdraw_others(keep, now_ms);
        let start = thing.start_next.take();
        if kind == PullKind::StartNext
            && let Some(h) = keep.and_then(|i| thing.executions.get_mut(i))
        {
            let (details, step) = start.unwrap_or_default();
            let e = &mut h.execution;
            let mut changed = false;
            if e.status == Status::Queued {
                e.status = Status::InProgress;
                e.started_at = Some(now);
                changed = true;
            }
            if let Some(details) = details {
                e.status_details = details;
                changed = true;
            }
            if changed {
                e.version += 1;
                e.last_updated_at = now;
            }
            match step {
                Some(-1) => h.step_deadline_ms = None,
                Some(m) => {
                    h.step_deadline_ms = Some(now_ms.saturating_add(m.saturating_mul(60_000)))
                }
                None => {}
            }
        }
        thing.trim();
        let pending: Vec<&Execution> = thing.pending().map(|h| &h.execution).collect();
        let answer = codec::pull_answer(&thing_name, kind, token, &pending, now_ms);
        if thing.executions.is_empty() {
            // A thing that only asked leaves nothing behind.
            self.things.remove(&thing_name);
        }
        Ok(vec![answer])
    }
}

/// Why `update` cannot be applied to `held`: the rejection's code, message and execution
/// state. A rebuilt execution takes the update's `expectedVersion` first.
fn refusal(
    held: &mut Held,
    update: &Update,
) -> Option<(ErrorCode, String, Option<serde_json::Value>)> {
    let e = &mut held.execution;
    if update
        .execution_number
        .is_some_and(|n| n != e.execution_number)
    {
        let text = format!(
            "job {} has no execution number {:?}",
            e.job_id, update.execution_number
        );
        return Some((ErrorCode::ResourceNotFound, text, None));
    }
    if e.status.is_terminal() {
        let text = format!("job {} is already {}", e.job_id, e.status.as_str());
        return Some((ErrorCode::InvalidStateTransition, text, Some(e.state())));
    }
    if held.rebuilt {
        if let Some(v) = update.expected_version {
            e.version = v;
        }
        held.rebuilt = false;
    }
    match update.expected_version {
        Some(expected) if expected != e.version => {
            let text = format!(
                "expected version {expected}, the execution is at {}",
                e.version
            );
            Some((ErrorCode::VersionMismatch, text, Some(e.state())))
        }
        _ => None,
    }
}

/// Applies an accepted update: status, details, version, times, step timer.
fn apply(held: &mut Held, update: &Update, now_ms: i64) {
    let now = now_ms.div_euclid(1000);
    let e = &mut held.execution;
    if e.started_at.is_none() {
        e.started_at = Some(now);
    }
    e.status = update.status;
    if let Some(details) = &update.status_details {
        e.status_details.clone_from(details);
    }
    e.version += 1;
    e.last_updated_at = now;
    match update.step_timeout_minutes {
        Some(-1) => held.step_deadline_ms = None,
        Some(m) => held.step_deadline_ms = Some(now_ms.saturating_add(m.saturating_mul(60_000))),
        None => {}
    }
    if e.status.is_terminal() {
        held.step_deadline_ms = None;
    }
}

/// `8-4-4-4-12` hexadecimal digits: the shape of the console's task keys.
fn uuid_shaped(id: &str) -> bool {
    let groups: Vec<&str> = id.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

impl Service for Jobs {
    fn inbound(&mut self, topic: &str, payload: &[u8], now_ms: i64) -> Result<Served, DecodeError> {
        let incoming = match codec::parse_request(topic, payload) {
            Ok(incoming) => incoming,
            Err(refusal) => {
                // A request the API answers with a rejection is answered; the console's
                // inspector still sees why (the rejection is what it published).
                let (Some(stem), Some(_)) = (&refusal.stem, &refusal.thing) else {
                    return Err(refusal.cause);
                };
                let out = codec::rejected(
                    stem,
                    refusal.code,
                    &refusal.message,
                    refusal.client_token.as_deref(),
                    None,
                    now_ms,
                );
                return Ok(Served {
                    events: Vec::new(),
                    replies: vec![out],
                });
            }
        };
        let mut served = Served::default();
        self.expire(&incoming.thing, &incoming.device, now_ms, &mut served);
        if let Some(get) = incoming.pull() {
            if let Request::StartNext {
                status_details,
                step_timeout_minutes,
            } = &incoming.request
            {
                // Kept for the answer; a thing the service has never heard of gets an entry
                // only while there is room (its answer is then given without the details).
                if self.things.contains_key(&incoming.thing) || self.things.len() < MAX_THINGS {
                    let thing = self.things.entry(incoming.thing.clone()).or_default();
                    thing.start_next = Some((status_details.clone(), *step_timeout_minutes));
                }
            }
            served.events.extend(incoming.pull_events(get));
            return Ok(served);
        }
        match &incoming.request {
            Request::Describe {
                job: JobRef::Id(job),
                execution_number,
                include_job_document,
            } => {
                let out = self.describe(
                    &incoming,
                    job,
                    *execution_number,
                    *include_job_document,
                    now_ms,
                );
                served.replies.push(out);
                served.events.push(Event::Heard {
                    device: incoming.device.clone(),
                    what: "jobs describe".into(),
                });
            }
            Request::Update(update) => self.update(&incoming, update, now_ms, &mut served),
            // Pulls were answered above.
            Request::GetPending | Request::StartNext { .. } | Request::Describe { .. } => {}
        }
        Ok(served)
    }

    fn outbound(&mut self, notice: &Notice, now_ms: i64) -> Result<Vec<Outbound>, EncodeError> {
        match notice {
            Notice::Upgrade(n) => {
                if n.device.dialect() != super::ID {
                    return Err(EncodeError::DialectMismatch {
                        device: n.device.clone(),
                    });
                }
                let keep = self.hold(n, now_ms, false)?;
                if let Some(thing) = self.things.get_mut(n.device.name()) {
                    thing.withdraw_others(Some(keep), now_ms);
                    thing.trim();
                }
                Ok(self.notify(n.device.name(), now_ms))
            }
            Notice::FirmwareGetReply { request, pending } => {
                self.pull_reply(&request.device, &request.id, pending.as_ref(), now_ms)
            }
            Notice::Answer { .. } => codec::encode(notice).map(|out| vec![out]),
        }
    }

    /// A canceled or aborted campaign's notice: its execution is CANCELED if the thing has not
    /// started it (as CancelJob without `force` leaves IN_PROGRESS executions alone), and the
    /// thing is told by `notify-next` / `notify`.
    fn withdraw(&mut self, device: &DeviceId, task: &TaskRef, now_ms: i64) -> Vec<Outbound> {
        let TaskRef::Key(job_id) = task else {
            return Vec::new();
        };
        let Some(thing) = self.things.get_mut(device.name()) else {
            return Vec::new();
        };
        let Some(h) = thing
            .executions
            .iter_mut()
            .find(|h| &h.execution.job_id == job_id && h.execution.status == Status::Queued)
        else {
            return Vec::new();
        };
        h.execution.status = Status::Canceled;
        h.execution.version += 1;
        h.execution.last_updated_at = now_ms.div_euclid(1000);
        self.notify(device.name(), now_ms)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::protocol::{
        FirmwareGet, FirmwareOffer, NoticeAddress, SettingValues, TaskRef, UpgradeStatus,
    };

    const JOB: &str = "5f2c8e4a-1b3d-4c6e-9a7f-0d2b4c6e8a10";
    const T0: i64 = 1_700_000_000_000;

    fn thing() -> DeviceId {
        DeviceId::aws("pump-7").unwrap()
    }

    fn notice(job: &str) -> UpgradeNotice {
        UpgradeNotice {
            device: thing(),
            offer: FirmwareOffer {
                version: "2.0.0".into(),
                url: "http://127.0.0.1:1/fw".into(),
                size: 10,
                md5: "m".into(),
                sha256: "s".into(),
                checksum: "c".into(),
                file_name: "fw.bin".into(),
                description: String::new(),
            },
            address: NoticeAddress {
                timestamp_ms: T0,
                task: TaskRef::Key(job.into()),
                ..NoticeAddress::default()
            },
            settings: SettingValues::default(),
        }
    }

    fn json(out: &Outbound) -> Value {
        serde_json::from_slice(&out.payload).unwrap()
    }

    fn request(jobs: &mut Jobs, rest: &str, body: &str, now_ms: i64) -> Served {
        let topic = format!("$aws/things/pump-7/jobs/{rest}");
        jobs.inbound(&topic, body.as_bytes(), now_ms).unwrap()
    }

    /// Runs a pull through "the campaigns", which say `pending` is pending.
    fn pull(jobs: &mut Jobs, rest: &str, body: &str, pending: Option<&str>) -> Value {
        let served = request(jobs, rest, body, T0);
        let Some(Event::FirmwareGet(get)) = served.events.first().cloned() else {
            panic!("{served:?}")
        };
        let reply = Notice::FirmwareGetReply {
            request: FirmwareGet { ..get },
            pending: pending.map(notice),
        };
        let outs = jobs.outbound(&reply, T0).unwrap();
        assert_eq!(outs.len(), 1);
        assert_eq!(
            outs[0].topic,
            format!("$aws/things/pump-7/jobs/{rest}/accepted")
        );
        json(&outs[0])
    }

    #[test]
    fn a_notice_queues_an_execution_told_by_notify_next() {
        let mut jobs = Jobs::default();
        let outs = jobs.outbound(&Notice::Upgrade(notice(JOB)), T0).unwrap();
        let next = json(&outs[0]);
        assert_eq!(outs[0].topic, "$aws/things/pump-7/jobs/notify-next");
        assert_eq!(next["execution"]["jobId"], JOB);
        assert_eq!(next["execution"]["status"], "QUEUED");
        assert_eq!(next["execution"]["versionNumber"], 1);
        assert_eq!(next["execution"]["jobDocument"]["sha256"], "s");
        assert_eq!(next["timestamp"], T0 / 1000);
        assert_eq!(outs[1].topic, "$aws/things/pump-7/jobs/notify");
        assert_eq!(json(&outs[1])["jobs"]["QUEUED"][0]["jobId"], JOB);
        // A re-send keeps the execution as it is.
        jobs.outbound(&Notice::Upgrade(notice(JOB)), T0 + 5)
            .unwrap();
        assert_eq!(jobs.held(), 1);
    }

    #[test]
    fn start_next_starts_it_and_updates_are_versioned_and_echoed() {
        let mut jobs = Jobs::default();
        jobs.outbound(&Notice::Upgrade(notice(JOB)), T0).unwrap();
        let started = pull(
            &mut jobs,
            "start-next",
            r#"{"clientToken":"c1","statusDetails":{"step":"download"}}"#,
            Some(JOB),
        );
        assert_eq!(started["clientToken"], "c1");
        assert_eq!(started["execution"]["status"], "IN_PROGRESS");
        assert_eq!(started["execution"]["versionNumber"], 2);
        assert_eq!(started["execution"]["statusDetails"]["step"], "download");

        let stale = request(
            &mut jobs,
            &format!("{JOB}/update"),
            r#"{"status":"IN_PROGRESS","expectedVersion":1,"clientToken":"c2"}"#,
            T0,
        );
        assert!(stale.events.is_empty());
        let refused = json(&stale.replies[0]);
        assert!(stale.replies[0].topic.ends_with("/update/rejected"));
        assert_eq!(refused["code"], "VersionMismatch");
        assert_eq!(refused["clientToken"], "c2");
        assert_eq!(refused["executionState"]["versionNumber"], 2);

        let ok = request(
            &mut jobs,
            &format!("{JOB}/update"),
            r#"{"status":"IN_PROGRESS","expectedVersion":2,"includeJobExecutionState":true,"statusDetails":{"step":"download","progress":"40"}}"#,
            T0,
        );
        let answer = json(&ok.replies[0]);
        assert!(ok.replies[0].topic.ends_with("/update/accepted"));
        assert_eq!(answer["executionState"]["versionNumber"], 3);
        assert!(
            answer.get("clientToken").is_none(),
            "none sent, none echoed"
        );
        let Event::Progress(p) = &ok.events[0] else {
            panic!("{ok:?}")
        };
        assert_eq!(
            (p.status.clone(), p.percent),
            (UpgradeStatus::InProgress, Some(40))
        );
        assert_eq!(p.task, TaskRef::Key(JOB.into()));

        let done = request(
            &mut jobs,
            &format!("{JOB}/update"),
            r#"{"status":"SUCCEEDED","statusDetails":{"version":"2.0.0"}}"#,
            T0,
        );
        assert_eq!(done.events.len(), 2, "progress and the version: {done:?}");
        // Terminal: notify-next says nothing is next.
        let next = done
            .replies
            .iter()
            .find(|o| o.topic.ends_with("/notify-next"))
            .unwrap();
        assert!(json(next).get("execution").is_none());

        let again = request(
            &mut jobs,
            &format!("{JOB}/update"),
            r#"{"status":"FAILED"}"#,
            T0,
        );
        assert_eq!(json(&again.replies[0])["code"], "InvalidStateTransition");
        let describe = request(&mut jobs, &format!("{JOB}/get"), "{}", T0);
        assert_eq!(json(&describe.replies[0])["code"], "TerminalStateReached");
    }

    #[test]
    fn unknown_jobs_and_bad_requests_are_rejected_as_the_api_says() {
        let mut jobs = Jobs::default();
        let unknown = request(&mut jobs, "job-1/update", r#"{"status":"IN_PROGRESS"}"#, T0);
        assert_eq!(json(&unknown.replies[0])["code"], "ResourceNotFound");
        let describe = request(&mut jobs, "job-1/get", r#"{"clientToken":"d"}"#, T0);
        assert_eq!(json(&describe.replies[0])["code"], "ResourceNotFound");
        assert_eq!(json(&describe.replies[0])["clientToken"], "d");
        let bad = request(&mut jobs, "start-next", "{not json", T0);
        assert_eq!(
            bad.replies[0].topic,
            "$aws/things/pump-7/jobs/start-next/rejected"
        );
        assert_eq!(json(&bad.replies[0])["code"], "InvalidJson");
        let status = request(&mut jobs, "job-1/update", r#"{"status":"DONE"}"#, T0);
        assert_eq!(json(&status.replies[0])["code"], "InvalidRequest");
        let queued = request(&mut jobs, "job-1/update", r#"{"status":"QUEUED"}"#, T0);
        assert_eq!(json(&queued.replies[0])["code"], "InvalidStateTransition");
        // A topic outside the API is no request to answer.
        assert!(
            jobs.inbound("$aws/things/pump-7/jobs/a/b/c", b"{}", T0)
                .is_err()
        );
    }

    #[test]
    fn after_a_restart_an_update_of_a_task_key_shaped_job_is_taken_at_the_things_word() {
        let mut jobs = Jobs::default();
        let served = request(
            &mut jobs,
            &format!("{JOB}/update"),
            r#"{"status":"IN_PROGRESS","expectedVersion":5,"includeJobExecutionState":true}"#,
            T0,
        );
        assert_eq!(
            json(&served.replies[0])["executionState"]["versionNumber"],
            6
        );
        assert!(matches!(served.events[0], Event::Progress(_)));
    }

    #[test]
    fn a_withdrawn_execution_is_canceled_when_its_thing_asks() {
        let mut jobs = Jobs::default();
        jobs.outbound(&Notice::Upgrade(notice(JOB)), T0).unwrap();
        let answer = pull(&mut jobs, "start-next", "{}", None);
        assert!(answer.get("execution").is_none(), "{answer}");
        let describe = request(&mut jobs, &format!("{JOB}/get"), "{}", T0);
        let refused = json(&describe.replies[0]);
        assert_eq!(refused["executionState"]["status"], "CANCELED");
        let listed = pull(&mut jobs, "get", r#"{"clientToken":"l"}"#, None);
        assert_eq!(listed["queuedJobs"], serde_json::json!([]));
        assert_eq!(listed["clientToken"], "l");
    }

    #[test]
    fn the_campaigns_device_timeout_times_the_execution_out_and_a_retry_replaces_it() {
        let mut jobs = Jobs::default();
        let mut n = notice(JOB);
        n.address.device_timeout_ms = Some(30_000);
        jobs.outbound(&Notice::Upgrade(n), T0).unwrap();
        let in_time = request(
            &mut jobs,
            &format!("{JOB}/update"),
            r#"{"status":"IN_PROGRESS"}"#,
            T0 + 29_000,
        );
        assert!(in_time.replies[0].topic.ends_with("/accepted"));
        let late = request(
            &mut jobs,
            &format!("{JOB}/update"),
            r#"{"status":"IN_PROGRESS"}"#,
            T0 + 31_000,
        );
        assert!(
            late.replies
                .iter()
                .any(|o| json(o)["code"] == "InvalidStateTransition")
        );

        // A retry's new job id cancels what is still pending of the old one.
        let retry = "0a2c8e4a-1b3d-4c6e-9a7f-0d2b4c6e8a11";
        let mut jobs = Jobs::default();
        jobs.outbound(&Notice::Upgrade(notice(JOB)), T0).unwrap();
        let outs = jobs.outbound(&Notice::Upgrade(notice(retry)), T0).unwrap();
        assert_eq!(json(&outs[0])["execution"]["jobId"], retry);
        let old = request(&mut jobs, &format!("{JOB}/get"), "{}", T0);
        assert_eq!(
            json(&old.replies[0])["executionState"]["status"],
            "CANCELED"
        );
    }

    #[test]
    fn a_withdrawn_notice_cancels_a_queued_execution_at_once() {
        let mut jobs = Jobs::default();
        jobs.outbound(&Notice::Upgrade(notice(JOB)), T0).unwrap();
        let outs = jobs.withdraw(&thing(), &TaskRef::Key(JOB.into()), T0);
        let next = outs
            .iter()
            .find(|o| o.topic.ends_with("/notify-next"))
            .unwrap();
        assert!(json(next).get("execution").is_none(), "nothing is next");
        // Started executions are left to finish; unknown ones change nothing.
        let mut jobs = Jobs::default();
        jobs.outbound(&Notice::Upgrade(notice(JOB)), T0).unwrap();
        pull(&mut jobs, "start-next", "{}", Some(JOB));
        assert!(
            jobs.withdraw(&thing(), &TaskRef::Key(JOB.into()), T0)
                .is_empty()
        );
        assert!(jobs.withdraw(&thing(), &TaskRef::None, T0).is_empty());
    }

    #[test]
    fn a_step_timer_that_runs_out_times_the_execution_out() {
        let mut jobs = Jobs::default();
        jobs.outbound(&Notice::Upgrade(notice(JOB)), T0).unwrap();
        pull(
            &mut jobs,
            "start-next",
            r#"{"stepTimeoutInMinutes":1}"#,
            Some(JOB),
        );
        let late = request(
            &mut jobs,
            &format!("{JOB}/update"),
            r#"{"status":"IN_PROGRESS"}"#,
            T0 + 61_000,
        );
        let Some(Event::Progress(p)) = late.events.first() else {
            panic!("{late:?}")
        };
        assert!(matches!(p.status, UpgradeStatus::Failed(f) if f.code == super::super::TIMED_OUT));
        let answer = late
            .replies
            .iter()
            .find(|o| o.topic.ends_with("/update/rejected"))
            .unwrap();
        assert_eq!(json(answer)["code"], "InvalidStateTransition");
    }
}
