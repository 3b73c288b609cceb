//! The AWS IoT Jobs device MQTT API, read and written: the requests a thing publishes under
//! `$aws/things/{thingName}/jobs/`, the answers on their `/accepted` and `/rejected` topics and
//! the `notify` / `notify-next` events, as AWS's public reference ("Jobs device MQTT API
//! operations" in the AWS IoT developer guide) and its device SDKs (`awsiot/iotjobs.py` of
//! aws-iot-device-sdk-python-v2, whose model classes name every field) define them.
//!
//! What a thing publishes (each answered on `…/accepted` or `…/rejected`):
//! - `jobs/get` (GetPendingJobExecutions): `{clientToken}` → `{inProgressJobs, queuedJobs,
//!   timestamp, clientToken}`, lists of JobExecutionSummary `{jobId, queuedAt, startedAt,
//!   lastUpdatedAt, versionNumber, executionNumber}`.
//! - `jobs/start-next` (StartNextPendingJobExecution): `{statusDetails, stepTimeoutInMinutes,
//!   clientToken}` → `{execution, timestamp, clientToken}`; no `execution` when nothing is
//!   pending.
//! - `jobs/{jobId}/get` (DescribeJobExecution, `$next` for the next pending one):
//!   `{executionNumber, includeJobDocument, clientToken}` → `{execution, timestamp,
//!   clientToken}`.
//! - `jobs/{jobId}/update` (UpdateJobExecution): `{status, statusDetails, expectedVersion,
//!   executionNumber, includeJobExecutionState, includeJobDocument, stepTimeoutInMinutes,
//!   clientToken}` → `{executionState: {status, statusDetails, versionNumber}, jobDocument,
//!   timestamp, clientToken}` (each of the first two only when asked for).
//!
//! A JobExecution (`execution`, and `notify-next`'s) is `{jobId, thingName, jobDocument,
//! status, statusDetails, queuedAt, startedAt, lastUpdatedAt, versionNumber,
//! executionNumber}`; times are epoch seconds, `statusDetails` a string → string map,
//! `versionNumber` counts accepted changes (a request's `expectedVersion` must equal it),
//! `executionNumber` names the execution of a job on a thing. A rejection is `{code, message,
//! clientToken, timestamp, executionState}` with `code` one of InvalidTopic, InvalidJson,
//! InvalidRequest, InvalidStateTransition, ResourceNotFound, VersionMismatch, InternalError,
//! RequestThrottled, TerminalStateReached. `clientToken` (at most 64 characters) is echoed
//! in every answer. `thingName` is `[a-zA-Z0-9:_-]{1,128}`, a `jobId` `[a-zA-Z0-9_-]{1,64}`.
//!
//! The console's own conventions, for devices written for this bench (README, "AWS IoT Jobs"):
//! the job document carries the firmware as `{"operation": "ota", "version", "url", "size",
//! "sha256", "md5", "fileName"}`, or in the campaign's own template (`document.rs`); in `statusDetails` a device may report `progress` (percent,
//! "0".."100", a trailing `%` allowed; `percent` is read too), `step` (`download`/`install`),
//! `version` (the firmware it now runs; with SUCCEEDED the policy's proof of success) and
//! `reason` (why it failed or refused, shown in the report). Status mapping: IN_PROGRESS →
//! downloading / installing, SUCCEEDED → done (succeeded once the version is known),
//! FAILED / REMOVED / TIMED_OUT → failed, REJECTED → rejected, with the codes of the
//! dialect's error table.
//!
//! Pure: no state (the per-thing executions are `jobs.rs`'s), no clock (times come in), never
//! panics on what a device sends.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::{FAILED, ID, REJECTED, REMOVED, TIMED_OUT, document, failure};
use crate::device_id::DeviceId;
use crate::protocol::fields::{self, Object};
use crate::protocol::{
    DecodeError, EncodeError, Event, FirmwareGet, MsgId, Notice, Outbound, Phase, ProgressReport,
    TaskRef, UpgradeNotice, UpgradeStatus, VersionReport,
};

/// What the console subscribes to. Topics beginning with `$` are not matched by a leading
/// wildcard (MQTT 3.1.1 §4.7.2), so each request topic is named from `$aws` on.
pub const SUBSCRIPTIONS: &[&str] = &[
    "$aws/things/+/jobs/get",
    "$aws/things/+/jobs/start-next",
    "$aws/things/+/jobs/+/get",
    "$aws/things/+/jobs/+/update",
];

/// Longest `clientToken` the API accepts.
pub const MAX_CLIENT_TOKEN: usize = 64;
/// Longest `jobId`.
pub const MAX_JOB_ID: usize = 64;
/// Longest thing name.
pub const MAX_THING_NAME: usize = 128;
/// At most this many `statusDetails` entries are kept (the API's own limit is not published
/// in the reference; a hostile device must not make us store thousands).
pub const MAX_DETAILS: usize = 32;
/// Longest `statusDetails` key and value.
const MAX_DETAIL_KEY: usize = 128;
const MAX_DETAIL_VALUE: usize = 1024;

/// `statusDetails`.
pub type Details = BTreeMap<String, String>;

/// Whether `topic` is one of the Jobs API's: claimed by shape so that a malformed request
/// gets a precise error.
pub fn owns_topic(topic: &str) -> bool {
    topic
        .strip_prefix("$aws/things/")
        .and_then(|rest| rest.split_once('/'))
        .is_some_and(|(_, rest)| rest.starts_with("jobs/"))
}

/// An execution's status (`JobExecutionStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Queued,
    InProgress,
    Succeeded,
    Failed,
    Rejected,
    TimedOut,
    Removed,
    Canceled,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "QUEUED",
            Status::InProgress => "IN_PROGRESS",
            Status::Succeeded => "SUCCEEDED",
            Status::Failed => "FAILED",
            Status::Rejected => "REJECTED",
            Status::TimedOut => "TIMED_OUT",
            Status::Removed => "REMOVED",
            Status::Canceled => "CANCELED",
        }
    }

    pub fn parse(text: &str) -> Option<Status> {
        Some(match text {
            "QUEUED" => Status::Queued,
            "IN_PROGRESS" => Status::InProgress,
            "SUCCEEDED" => Status::Succeeded,
            "FAILED" => Status::Failed,
            "REJECTED" => Status::Rejected,
            "TIMED_OUT" => Status::TimedOut,
            "REMOVED" => Status::Removed,
            "CANCELED" => Status::Canceled,
            _ => return None,
        })
    }

    pub fn is_terminal(self) -> bool {
        !matches!(self, Status::Queued | Status::InProgress)
    }
}

/// A rejection's `code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidTopic,
    InvalidJson,
    InvalidRequest,
    InvalidStateTransition,
    ResourceNotFound,
    VersionMismatch,
    InternalError,
    RequestThrottled,
    TerminalStateReached,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidTopic => "InvalidTopic",
            ErrorCode::InvalidJson => "InvalidJson",
            ErrorCode::InvalidRequest => "InvalidRequest",
            ErrorCode::InvalidStateTransition => "InvalidStateTransition",
            ErrorCode::ResourceNotFound => "ResourceNotFound",
            ErrorCode::VersionMismatch => "VersionMismatch",
            ErrorCode::InternalError => "InternalError",
            ErrorCode::RequestThrottled => "RequestThrottled",
            ErrorCode::TerminalStateReached => "TerminalStateReached",
        }
    }
}

/// Which execution a describe names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobRef {
    /// `$next`: the next pending execution.
    Next,
    Id(String),
}

/// One request of a thing.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    GetPending,
    StartNext {
        status_details: Option<Details>,
        step_timeout_minutes: Option<i64>,
    },
    Describe {
        job: JobRef,
        execution_number: Option<i64>,
        include_job_document: bool,
    },
    Update(Update),
}

/// An UpdateJobExecution request.
#[derive(Debug, Clone, PartialEq)]
pub struct Update {
    pub job_id: String,
    pub status: Status,
    pub status_details: Option<Details>,
    pub expected_version: Option<i64>,
    pub execution_number: Option<i64>,
    pub include_execution_state: bool,
    pub include_job_document: bool,
    pub step_timeout_minutes: Option<i64>,
}

/// Where a request came from and what it asks.
#[derive(Debug, Clone, PartialEq)]
pub struct Incoming {
    pub thing: String,
    pub device: DeviceId,
    /// The answer topics' stem: `$aws/things/{thing}/jobs/{get|start-next|{jobId}/get|…}`.
    pub stem: String,
    pub client_token: Option<String>,
    pub request: Request,
}

/// A request that cannot be served as sent, and how the API rejects it. `stem` is `None` when
/// the topic itself is not a Jobs request topic (nothing to answer on).
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub thing: Option<String>,
    pub stem: Option<String>,
    pub client_token: Option<String>,
    pub code: ErrorCode,
    pub message: String,
    pub cause: DecodeError,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    GetPending,
    StartNext,
    Describe,
    Update,
}

fn unknown_topic(topic: &str) -> DecodeError {
    DecodeError::UnknownTopic(crate::protocol::truncate_for_log(topic))
}

/// A thing name as the API allows it.
pub fn valid_thing_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_THING_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'-'))
}

/// A job id as the API allows it.
pub fn valid_job_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_JOB_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
}

/// The thing, the kind of request and the job id a request topic names.
fn parse_topic(topic: &str) -> Result<(&str, Kind, Option<&str>), DecodeError> {
    let (thing, kind, job) = match fields::topic_segments::<5>(topic) {
        Some(["$aws", "things", thing, "jobs", "get"]) => (thing, Kind::GetPending, None),
        Some(["$aws", "things", thing, "jobs", "start-next"]) => (thing, Kind::StartNext, None),
        _ => match fields::topic_segments::<6>(topic) {
            Some(["$aws", "things", thing, "jobs", job, "get"]) => {
                (thing, Kind::Describe, Some(job))
            }
            Some(["$aws", "things", thing, "jobs", job, "update"]) => {
                (thing, Kind::Update, Some(job))
            }
            _ => return Err(unknown_topic(topic)),
        },
    };
    if !valid_thing_name(thing) {
        return Err(DecodeError::BadValue {
            field: "thingName",
            detail: "a thing name is 1 to 128 of [a-zA-Z0-9:_-]".into(),
        });
    }
    Ok((thing, kind, job))
}

/// Reads one request. A refusal says how the API answers it (when it can be answered).
pub fn parse_request(topic: &str, payload: &[u8]) -> Result<Incoming, Box<Refusal>> {
    let refuse = |thing: Option<&str>, stem: Option<String>, code, cause: DecodeError| {
        Box::new(Refusal {
            thing: thing.map(str::to_owned),
            stem,
            client_token: None,
            code,
            // On the wire: English whatever the operator reads (the error's words are
            // translated for the inspector).
            message: crate::i18n::in_english(|| cause.to_string()),
            cause,
        })
    };
    let (thing, kind, job) = match parse_topic(topic) {
        Ok(parsed) => parsed,
        Err(cause) => return Err(refuse(None, None, ErrorCode::InvalidTopic, cause)),
    };
    let stem = topic.to_owned();
    let device = DeviceId::new(ID, None, thing)
        .map_err(|e| refuse(None, None, ErrorCode::InvalidTopic, e.into()))?;
    let root = match crate::protocol::parse_json(payload) {
        Ok(v) => v,
        Err(cause) => {
            return Err(refuse(
                Some(thing),
                Some(stem),
                ErrorCode::InvalidJson,
                cause,
            ));
        }
    };
    // An empty payload is `{}` for the SDKs' requests with no field set.
    let empty = Map::new();
    let obj = match &root {
        Value::Object(o) => o,
        Value::Null => &empty,
        _ => {
            let cause = DecodeError::WrongType {
                field: "(payload)",
                expected: "an object",
            };
            return Err(refuse(
                Some(thing),
                Some(stem),
                ErrorCode::InvalidJson,
                cause,
            ));
        }
    };
    let client_token = match client_token(obj) {
        Ok(t) => t,
        Err(cause) => {
            return Err(refuse(
                Some(thing),
                Some(stem),
                ErrorCode::InvalidRequest,
                cause,
            ));
        }
    };
    let request = read_request(kind, job, obj).map_err(|(code, cause)| {
        let mut r = refuse(Some(thing), Some(stem.clone()), code, cause);
        r.client_token.clone_from(&client_token);
        r
    })?;
    Ok(Incoming {
        thing: thing.to_owned(),
        device,
        stem,
        client_token,
        request,
    })
}

fn client_token(obj: &Object) -> Result<Option<String>, DecodeError> {
    let Some(token) = fields::optional_token(obj, "clientToken", "clientToken")? else {
        return Ok(None);
    };
    if token.chars().count() > MAX_CLIENT_TOKEN {
        return Err(DecodeError::BadValue {
            field: "clientToken",
            detail: format!("at most {MAX_CLIENT_TOKEN} characters"),
        });
    }
    Ok(Some(token.to_owned()))
}

type Invalid = (ErrorCode, DecodeError);

fn invalid(cause: DecodeError) -> Invalid {
    (ErrorCode::InvalidRequest, cause)
}

fn read_request(kind: Kind, job: Option<&str>, obj: &Object) -> Result<Request, Invalid> {
    match kind {
        Kind::GetPending => Ok(Request::GetPending),
        Kind::StartNext => Ok(Request::StartNext {
            status_details: status_details(obj).map_err(invalid)?,
            step_timeout_minutes: step_timeout(obj).map_err(invalid)?,
        }),
        Kind::Describe => {
            let job = match job.unwrap_or_default() {
                "$next" => JobRef::Next,
                id => JobRef::Id(job_id(id)?),
            };
            Ok(Request::Describe {
                job,
                execution_number: optional_int(obj, "executionNumber").map_err(invalid)?,
                include_job_document: flag(obj, "includeJobDocument", true).map_err(invalid)?,
            })
        }
        Kind::Update => {
            let job_id = job_id(job.unwrap_or_default())?;
            let raw = fields::required_token(obj, "status", "status").map_err(invalid)?;
            let status = Status::parse(raw).ok_or_else(|| {
                invalid(DecodeError::BadValue {
                    field: "status",
                    detail: format!("{} is no job execution status", fields::short(raw)),
                })
            })?;
            Ok(Request::Update(Update {
                job_id,
                status,
                status_details: status_details(obj).map_err(invalid)?,
                expected_version: optional_int(obj, "expectedVersion").map_err(invalid)?,
                execution_number: optional_int(obj, "executionNumber").map_err(invalid)?,
                include_execution_state: flag(obj, "includeJobExecutionState", false)
                    .map_err(invalid)?,
                include_job_document: flag(obj, "includeJobDocument", false).map_err(invalid)?,
                step_timeout_minutes: step_timeout(obj).map_err(invalid)?,
            }))
        }
    }
}

fn job_id(id: &str) -> Result<String, Invalid> {
    if valid_job_id(id) {
        Ok(id.to_owned())
    } else {
        Err((
            ErrorCode::InvalidTopic,
            DecodeError::BadValue {
                field: "jobId",
                detail: "a job id is 1 to 64 of [a-zA-Z0-9_-] ($next only for get)".into(),
            },
        ))
    }
}

fn optional_int(obj: &Object, key: &'static str) -> Result<Option<i64>, DecodeError> {
    fields::optional(obj, key)
        .map(|v| fields::exact_int(v, key))
        .transpose()
}

fn flag(obj: &Object, key: &'static str, default: bool) -> Result<bool, DecodeError> {
    match fields::optional(obj, key) {
        None => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(DecodeError::WrongType {
            field: key,
            expected: "a boolean",
        }),
    }
}

/// `stepTimeoutInMinutes`: 1 to 10080 (seven days), or -1 to clear (the API's range).
fn step_timeout(obj: &Object) -> Result<Option<i64>, DecodeError> {
    let minutes = optional_int(obj, "stepTimeoutInMinutes")?;
    match minutes {
        Some(m) if m != -1 && !(1..=10_080).contains(&m) => Err(DecodeError::BadValue {
            field: "stepTimeoutInMinutes",
            detail: format!("{m}; 1 to 10080, or -1"),
        }),
        _ => Ok(minutes),
    }
}

fn status_details(obj: &Object) -> Result<Option<Details>, DecodeError> {
    let Some(value) = fields::optional(obj, "statusDetails") else {
        return Ok(None);
    };
    let map = fields::as_object(value, "statusDetails")?;
    if map.len() > MAX_DETAILS {
        return Err(DecodeError::BadValue {
            field: "statusDetails",
            detail: format!("{} entries; at most {MAX_DETAILS}", map.len()),
        });
    }
    let mut details = Details::new();
    for (key, value) in map {
        let Some(text) = value.as_str() else {
            return Err(DecodeError::WrongType {
                field: "statusDetails",
                expected: "an object of strings",
            });
        };
        if key.is_empty() || key.len() > MAX_DETAIL_KEY || text.len() > MAX_DETAIL_VALUE {
            return Err(DecodeError::BadValue {
                field: "statusDetails",
                detail: format!(
                    "keys are 1 to {MAX_DETAIL_KEY} bytes, values at most {MAX_DETAIL_VALUE}"
                ),
            });
        }
        details.insert(key.clone(), text.to_owned());
    }
    Ok(Some(details))
}

// ------------------------------------------------------------------ what the console learns

/// The [`FirmwareGet`] id of a request answered through the campaigns (get, start-next,
/// `$next/get`): which request it was and its `clientToken`, so that the reply can be written
/// by [`encode`] alone.
pub fn pull_id(stem_kind: PullKind, client_token: Option<&str>) -> MsgId {
    MsgId::Str(format!(
        "{} {}",
        stem_kind.as_str(),
        client_token.unwrap_or_default()
    ))
}

/// The requests that ask for the thing's pending work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullKind {
    GetPending,
    StartNext,
    DescribeNext,
}

impl PullKind {
    fn as_str(self) -> &'static str {
        match self {
            PullKind::GetPending => "get",
            PullKind::StartNext => "start-next",
            PullKind::DescribeNext => "$next/get",
        }
    }

    /// The request and client token a [`pull_id`] carries.
    pub fn from_id(id: &MsgId) -> Option<(PullKind, Option<&str>)> {
        let MsgId::Str(text) = id else { return None };
        let (kind, token) = text.split_once(' ')?;
        let kind = match kind {
            "get" => PullKind::GetPending,
            "start-next" => PullKind::StartNext,
            "$next/get" => PullKind::DescribeNext,
            _ => return None,
        };
        Some((kind, (!token.is_empty()).then_some(token)))
    }
}

impl Incoming {
    /// The pull this request is, if it is one.
    pub fn pull(&self) -> Option<FirmwareGet> {
        let kind = match &self.request {
            Request::GetPending => PullKind::GetPending,
            Request::StartNext { .. } => PullKind::StartNext,
            Request::Describe {
                job: JobRef::Next, ..
            } => PullKind::DescribeNext,
            _ => return None,
        };
        Some(FirmwareGet {
            device: self.device.clone(),
            id: pull_id(kind, self.client_token.as_deref()),
        })
    }
}

impl Incoming {
    /// A pull's events: the request, then the version the thing says it runs when its
    /// `start-next` carries `statusDetails.version` (the Jobs API has no version report of its
    /// own; after the request, so that the campaign sees the thing asking before its version).
    pub fn pull_events(&self, get: FirmwareGet) -> Vec<Event> {
        let mut events = vec![Event::FirmwareGet(get)];
        if let Request::StartNext {
            status_details: Some(details),
            ..
        } = &self.request
            && let Some(version) = reported_version(details)
        {
            events.push(Event::Version(VersionReport {
                device: self.device.clone(),
                version: version.to_owned(),
                gateway: None,
            }));
        }
        events
    }
}

fn reported_version(details: &Details) -> Option<&str> {
    details
        .get("version")
        .filter(|v| !v.trim().is_empty() && v.len() <= fields::MAX_TOKEN_BYTES)
        .map(String::as_str)
}

/// What an update says about the upgrade: its progress, and for SUCCEEDED the version the
/// device reports (or, when `trusted` names one, that version: the campaign chose to take the
/// status as proof).
pub fn update_events(
    device: &DeviceId,
    job_id: &str,
    status: Status,
    details: &Details,
    trusted: Option<&str>,
) -> Vec<Event> {
    let reason = reason(details);
    let (status, percent, phase) = match status {
        Status::Queued => return Vec::new(),
        Status::InProgress => {
            let percent = details
                .get("progress")
                .or_else(|| details.get("percent"))
                .and_then(|p| parse_percent(p));
            (UpgradeStatus::InProgress, percent, phase(details))
        }
        Status::Succeeded => (UpgradeStatus::Ok, Some((100, false)), Phase::Unspecified),
        Status::Failed => (UpgradeStatus::Failed(failure(FAILED)), None, phase(details)),
        Status::Rejected => (
            UpgradeStatus::Rejected(failure(REJECTED)),
            None,
            Phase::Unspecified,
        ),
        Status::TimedOut => (
            UpgradeStatus::Failed(failure(TIMED_OUT)),
            None,
            phase(details),
        ),
        Status::Removed => (
            UpgradeStatus::Failed(failure(REMOVED)),
            None,
            Phase::Unspecified,
        ),
        Status::Canceled => (UpgradeStatus::Canceled, None, Phase::Unspecified),
    };
    let succeeded = status == UpgradeStatus::Ok;
    let mut events = vec![Event::Progress(ProgressReport {
        device: device.clone(),
        task: TaskRef::Key(job_id.to_owned()),
        status,
        phase,
        percent: percent.map(|(p, _)| p),
        percent_clamped: percent.is_some_and(|(_, c)| c),
        desc: reason,
        gateway: None,
    })];
    let version = reported_version(details).or(trusted);
    if succeeded && let Some(version) = version {
        events.push(Event::Version(VersionReport {
            device: device.clone(),
            version: version.to_owned(),
            gateway: None,
        }));
    }
    events
}

/// The failure text a device gave: `reason`, else every detail but the progress keys.
fn reason(details: &Details) -> Option<String> {
    if let Some(reason) = details.get("reason") {
        return Some(reason.chars().take(fields::MAX_DESC_CHARS).collect());
    }
    let rest: Vec<String> = details
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "progress" | "percent" | "step" | "version"))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    (!rest.is_empty()).then(|| {
        rest.join(", ")
            .chars()
            .take(fields::MAX_DESC_CHARS)
            .collect()
    })
}

fn phase(details: &Details) -> Phase {
    match details
        .get("step")
        .map(|s| s.to_ascii_lowercase())
        .as_deref()
    {
        Some("download" | "downloading") => Phase::Download,
        Some("install" | "installing" | "verify" | "flash" | "apply") => Phase::Install,
        _ => Phase::Unspecified,
    }
}

/// `"42"`, `"42%"`, `"42.5"` → 42 (clamped to 0..=100, and whether it was).
fn parse_percent(text: &str) -> Option<(u8, bool)> {
    let number: f64 = text.trim().trim_end_matches('%').trim().parse().ok()?;
    if !number.is_finite() {
        return None;
    }
    #[expect(
        clippy::cast_possible_truncation,
        reason = "clamped to -1..=101 first, so the value fits"
    )]
    let whole = number.clamp(-1.0, 101.0) as i64;
    Some(fields::clamp_percent(whole))
}

// ------------------------------------------------------------------ what the console writes

/// One job execution as the service holds it (and writes it in answers).
#[derive(Debug, Clone, PartialEq)]
pub struct Execution {
    pub job_id: String,
    pub thing: String,
    pub document: Value,
    pub status: Status,
    pub status_details: Details,
    /// Epoch seconds.
    pub queued_at: i64,
    pub started_at: Option<i64>,
    pub last_updated_at: i64,
    pub version: i64,
    pub execution_number: i64,
}

impl Execution {
    /// A new execution of `notice`'s job, queued at `now_ms`.
    pub fn queued(
        notice: &UpgradeNotice,
        job_id: &str,
        now_ms: i64,
    ) -> Result<Execution, EncodeError> {
        let now = now_ms.div_euclid(1000);
        Ok(Execution {
            job_id: job_id.to_owned(),
            thing: notice.device.name().to_owned(),
            document: document::render(notice, job_id)?,
            status: Status::Queued,
            status_details: Details::new(),
            queued_at: now,
            started_at: None,
            last_updated_at: now,
            version: 1,
            execution_number: 1,
        })
    }

    /// `JobExecution`.
    pub fn to_json(&self, include_document: bool) -> Value {
        let mut v = json!({
            "jobId": self.job_id,
            "thingName": self.thing,
            "status": self.status.as_str(),
            "statusDetails": self.status_details,
            "queuedAt": self.queued_at,
            "lastUpdatedAt": self.last_updated_at,
            "versionNumber": self.version,
            "executionNumber": self.execution_number,
        });
        if let Some(started) = self.started_at {
            v["startedAt"] = json!(started);
        }
        if include_document {
            v["jobDocument"] = self.document.clone();
        }
        v
    }

    /// `JobExecutionSummary`.
    pub fn summary(&self) -> Value {
        let mut v = json!({
            "jobId": self.job_id,
            "queuedAt": self.queued_at,
            "lastUpdatedAt": self.last_updated_at,
            "versionNumber": self.version,
            "executionNumber": self.execution_number,
        });
        if let Some(started) = self.started_at {
            v["startedAt"] = json!(started);
        }
        v
    }

    /// `JobExecutionState`, as updates and rejections carry it.
    pub fn state(&self) -> Value {
        json!({
            "status": self.status.as_str(),
            "statusDetails": self.status_details,
            "versionNumber": self.version,
        })
    }
}

/// The job id of a notice: its task key (a UUID).
pub fn job_id_of(notice: &UpgradeNotice) -> Result<&str, EncodeError> {
    match &notice.address.task {
        TaskRef::Key(key) if valid_job_id(key) => Ok(key),
        other => Err(EncodeError::Invalid(format!(
            "an AWS job needs a job id of 1 to 64 of [a-zA-Z0-9_-], the campaign gave {other:?}"
        ))),
    }
}

fn jobs_topic(thing: &str, rest: &str) -> String {
    format!("$aws/things/{thing}/jobs/{rest}")
}

fn message(topic: String, payload: &Value) -> Outbound {
    Outbound {
        topic,
        payload: payload.to_string().into_bytes(),
    }
}

fn with_token(mut payload: Value, client_token: Option<&str>) -> Value {
    if let Some(token) = client_token {
        payload["clientToken"] = json!(token);
    }
    payload
}

/// `…/accepted` of a request whose topic is `stem`.
pub fn accepted(stem: &str, payload: Value, client_token: Option<&str>) -> Outbound {
    message(
        format!("{stem}/accepted"),
        &with_token(payload, client_token),
    )
}

/// `…/rejected` of a request whose topic is `stem`.
pub fn rejected(
    stem: &str,
    code: ErrorCode,
    text: &str,
    client_token: Option<&str>,
    state: Option<Value>,
    now_ms: i64,
) -> Outbound {
    let mut payload = json!({
        "code": code.as_str(),
        "message": text,
        "timestamp": now_ms.div_euclid(1000),
    });
    if let Some(state) = state {
        payload["executionState"] = state;
    }
    message(
        format!("{stem}/rejected"),
        &with_token(payload, client_token),
    )
}

/// `notify-next`: the thing's next pending execution (with its document), or none.
pub fn notify_next(thing: &str, next: Option<&Execution>, now_ms: i64) -> Outbound {
    let mut payload = json!({ "timestamp": now_ms.div_euclid(1000) });
    if let Some(execution) = next {
        payload["execution"] = execution.to_json(true);
    }
    message(jobs_topic(thing, "notify-next"), &payload)
}

/// `notify`: the thing's pending executions by status.
pub fn notify<'a>(
    thing: &str,
    pending: impl Iterator<Item = &'a Execution>,
    now_ms: i64,
) -> Outbound {
    let mut jobs: Map<String, Value> = Map::new();
    for e in pending {
        let list = jobs
            .entry(e.status.as_str())
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(items) = list {
            items.push(e.summary());
        }
    }
    message(
        jobs_topic(thing, "notify"),
        &json!({ "timestamp": now_ms.div_euclid(1000), "jobs": jobs }),
    )
}

/// The answer to a pull: `get` lists, `start-next` and `$next/get` the execution (none when
/// nothing is pending).
pub fn pull_answer(
    thing: &str,
    kind: PullKind,
    client_token: Option<&str>,
    pending: &[&Execution],
    now_ms: i64,
) -> Outbound {
    let now = now_ms.div_euclid(1000);
    let (rest, payload) = match kind {
        PullKind::GetPending => {
            let list = |status: Status| -> Vec<Value> {
                pending
                    .iter()
                    .filter(|e| e.status == status)
                    .map(|e| e.summary())
                    .collect()
            };
            (
                "get",
                json!({
                    "inProgressJobs": list(Status::InProgress),
                    "queuedJobs": list(Status::Queued),
                    "timestamp": now,
                }),
            )
        }
        PullKind::StartNext | PullKind::DescribeNext => {
            let mut payload = json!({ "timestamp": now });
            if let Some(next) = pending.first() {
                payload["execution"] = next.to_json(true);
            }
            let rest = if kind == PullKind::StartNext {
                "start-next"
            } else {
                "$next/get"
            };
            (rest, payload)
        }
    };
    accepted(&jobs_topic(thing, rest), payload, client_token)
}

// ------------------------------------------------------------------ the stateless codec

/// Decodes one request without the service's state: what it says about the device (the
/// service in `jobs.rs` adds the answers and the checks that need state).
pub fn decode(topic: &str, payload: &[u8]) -> Result<Vec<Event>, DecodeError> {
    let incoming = parse_request(topic, payload).map_err(|r| r.cause)?;
    if let Some(get) = incoming.pull() {
        return Ok(incoming.pull_events(get));
    }
    Ok(match &incoming.request {
        Request::Update(update) => update_events(
            &incoming.device,
            &update.job_id,
            update.status,
            update.status_details.as_ref().unwrap_or(&Details::new()),
            None,
        ),
        _ => vec![Event::Heard {
            device: incoming.device,
            what: "jobs describe".into(),
        }],
    })
}

fn thing_of(device: &DeviceId) -> Result<&str, EncodeError> {
    if device.dialect() != ID {
        return Err(EncodeError::DialectMismatch {
            device: device.clone(),
        });
    }
    Ok(device.name())
}

/// Encodes a notice as a fresh service would: an upgrade is a new queued execution told by
/// `notify-next`; a pull reply carries the notice's execution (started, for `start-next`).
pub fn encode(notice: &Notice) -> Result<Outbound, EncodeError> {
    match notice {
        Notice::Upgrade(n) => {
            let thing = thing_of(&n.device)?;
            let execution = Execution::queued(n, job_id_of(n)?, n.address.timestamp_ms)?;
            Ok(notify_next(thing, Some(&execution), n.address.timestamp_ms))
        }
        Notice::FirmwareGetReply { request, pending } => {
            let thing = thing_of(&request.device)?;
            let (kind, token) = PullKind::from_id(&request.id).ok_or_else(|| {
                EncodeError::Invalid(format!("{:?} is no AWS Jobs request", request.id))
            })?;
            let now_ms = pending.as_ref().map_or(0, |n| n.address.timestamp_ms);
            let execution = match pending {
                Some(n) => {
                    let mut e = Execution::queued(n, job_id_of(n)?, now_ms)?;
                    if kind == PullKind::StartNext {
                        e.status = Status::InProgress;
                        e.started_at = Some(e.queued_at);
                        e.version += 1;
                    }
                    Some(e)
                }
                None => None,
            };
            let pending: Vec<&Execution> = execution.iter().collect();
            Ok(pull_answer(thing, kind, token, &pending, now_ms))
        }
        Notice::Answer { answer, .. } => Err(EncodeError::Invalid(format!(
            "AWS IoT Jobs defines no answer {:?}",
            answer.channel
        ))),
    }
}
