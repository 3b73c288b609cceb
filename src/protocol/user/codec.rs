//! The codec of a dialect described in a file: messages decoded by the file's topic templates
//! and JSON pointers, notices encoded from its payload templates. Pure; never panics on device
//! input (every value read through a pointer is type-checked and bounded by `fields`).

use serde_json::Value;

use super::spec::{Failing, Pointer, Spec};
use super::template::{TopicTemplate, Values};
use crate::device_id::{DeviceId, DialectId};
use crate::protocol::fields;
use crate::protocol::{
    DecodeError, EncodeError, Event, FirmwareGet, MsgId, Notice, Outbound, Phase, ProgressReport,
    TaskRef, UpgradeNotice, UpgradeStatus, VersionReport,
};

/// The device a topic of `template` names, if it has the template's shape.
fn device_of(
    id: DialectId,
    template: &TopicTemplate,
    topic: &str,
) -> Option<Result<DeviceId, DecodeError>> {
    let (key, name) = template.bind(topic)?;
    Some(DeviceId::new(id, key, name).map_err(DecodeError::from))
}

fn with_module(
    device: DeviceId,
    message: &Value,
    pointer: Option<Pointer>,
) -> Result<DeviceId, DecodeError> {
    let Some(pointer) = pointer else {
        return Ok(device);
    };
    match message.pointer(pointer) {
        None | Some(Value::Null) => Ok(device),
        Some(v) => {
            let module = fields::token(v, pointer)?;
            Ok(device.with_module((!module.is_empty()).then_some(module))?)
        }
    }
}

impl Spec {
    pub(super) fn decode(
        &self,
        id: DialectId,
        topic: &str,
        payload: &[u8],
    ) -> Result<Vec<Event>, DecodeError> {
        let message = fields_json(payload)?;
        let mut events = Vec::new();
        let mut topic_known = false;
        let applies = |t: &TopicTemplate, when: &Option<super::spec::When>| {
            device_of(id, t, topic).map(|d| (d, when.as_ref().is_none_or(|w| w.holds(&message))))
        };

        if let Some((device, holds)) = applies(&self.announce.topic, &self.announce.when) {
            topic_known = true;
            if holds {
                let device = with_module(device?, &message, self.announce.module)?;
                let version = read_version(&message, self.announce.version)?;
                events.push(Event::Version(VersionReport {
                    device,
                    version,
                    gateway: None,
                }));
            }
        }
        if let Some((device, holds)) = applies(&self.progress.topic, &self.progress.when) {
            topic_known = true;
            if holds {
                events.push(Event::Progress(self.progress(id, device?, &message)?));
            }
        }
        if let Some(pull) = &self.pull
            && let Some((device, holds)) = applies(&pull.topic, &pull.when)
        {
            topic_known = true;
            if holds {
                let device = with_module(device?, &message, pull.module)?;
                let msg_id = match pull.id.and_then(|p| message.pointer(p)) {
                    Some(v) => fields::msg_id(v, pull.id.unwrap_or_default())?,
                    None => MsgId::Num(0),
                };
                events.push(Event::FirmwareGet(FirmwareGet { device, id: msg_id }));
            }
        }
        if !topic_known {
            return Err(DecodeError::UnknownTopic(
                crate::protocol::truncate_for_log(topic),
            ));
        }
        if events.is_empty() {
            return Err(DecodeError::BadValue {
                field: "when",
                detail: "the message matches no kind the dialect file describes on this topic"
                    .into(),
            });
        }
        Ok(events)
    }

    fn progress(
        &self,
        id: DialectId,
        device: DeviceId,
        message: &Value,
    ) -> Result<ProgressReport, DecodeError> {
        let p = &self.progress;
        let device = with_module(device, message, p.module)?;
        let task = match (self.task_key, p.task.and_then(|t| message.pointer(t))) {
            (crate::protocol::KeySource::None, _) | (_, None) => TaskRef::None,
            (_, Some(Value::Number(n))) => TaskRef::Key(n.to_string()),
            (_, Some(v)) => TaskRef::Key(fields::token(v, p.task.unwrap_or_default())?.to_owned()),
        };
        let failure = match message.pointer(p.failure.field) {
            None | Some(Value::Null) => None,
            Some(v) => self.failure_code(v, p.failure.field)?,
        };
        let desc = match p.text.and_then(|t| message.pointer(t)) {
            Some(Value::String(s)) => Some(s.chars().take(fields::MAX_DESC_CHARS).collect()),
            _ => None,
        };
        let (status, percent, clamped) = match failure {
            Some(code) => (
                UpgradeStatus::Failed(self.errors.failure(id, code)),
                None,
                false,
            ),
            None => {
                let (percent, clamped) = match p.percent.and_then(|ptr| message.pointer(ptr)) {
                    None | Some(Value::Null) => (None, false),
                    Some(v) => {
                        let raw = fields::saturating_int(v, p.percent.unwrap_or_default())?;
                        let (pc, c) = fields::clamp_percent(raw);
                        (Some(pc), c)
                    }
                };
                (UpgradeStatus::InProgress, percent, clamped)
            }
        };
        Ok(ProgressReport {
            device,
            task,
            status,
            phase: Phase::Unspecified,
            percent,
            percent_clamped: clamped,
            desc,
            gateway: None,
        })
    }

    /// The failure code the failure field's value reports, if it is a failure.
    fn failure_code(&self, value: &Value, field: Pointer) -> Result<Option<i64>, DecodeError> {
        let f = &self.progress.failure;
        if let Some((_, code)) = f.codes.iter().find(|(v, _)| same_value(v, value)) {
            return Ok(Some(*code));
        }
        let numeric = match value {
            Value::Number(_) => Some(fields::saturating_int(value, field)?),
            // A number sent as text is the same number; other text is a state, not a failure.
            Value::String(s) => s.trim().parse::<i64>().ok(),
            Value::Bool(_) => None,
            _ => {
                return Err(DecodeError::WrongType {
                    field,
                    expected: "a number or a string",
                });
            }
        };
        Ok(numeric.filter(|n| match f.failing {
            Failing::Listed => false,
            Failing::Negative => *n < 0,
            Failing::NonZero => *n != 0,
        }))
    }

    pub(super) fn encode(&self, id: DialectId, notice: &Notice) -> Result<Outbound, EncodeError> {
        let device = notice.device();
        if device.dialect() != id {
            return Err(EncodeError::DialectMismatch {
                device: device.clone(),
            });
        }
        let (topic, payload) = match notice {
            Notice::Upgrade(n) => (
                self.notice.topic.render(&n.device),
                self.notice.payload.render(&values(n, None)),
            ),
            Notice::FirmwareGetReply { request, pending } => {
                let pull = self.pull.as_ref().ok_or_else(|| {
                    EncodeError::Invalid(format!("dialect {id} defines no pull request"))
                })?;
                let topic = pull.reply_topic.render(&request.device);
                match (pending, &pull.nothing) {
                    (Some(n), _) => (topic, pull.reply.render(&values(n, Some(&request.id)))),
                    (None, Some(nothing)) => (
                        topic,
                        nothing.render(&Values {
                            device: &request.device,
                            offer: None,
                            task: "",
                            timestamp_ms: 0,
                            msg_id: 0,
                            request_id: Some(&request.id),
                        }),
                    ),
                    (None, None) => {
                        return Err(EncodeError::Invalid(format!(
                            "dialect {id} defines no \"nothing pending\" reply"
                        )));
                    }
                }
            }
            Notice::Answer { answer, .. } => {
                return Err(EncodeError::Invalid(format!(
                    "dialect {id} asks for no answers (got {:?})",
                    answer.channel
                )));
            }
        };
        // The template was checked at load; this guards against a value no sample foresaw.
        serde_json::from_str::<Value>(&payload)
            .map_err(|e| EncodeError::Invalid(format!("dialect {id}: payload is not JSON: {e}")))?;
        Ok(Outbound {
            topic,
            payload: payload.into_bytes(),
        })
    }
}

fn values<'a>(n: &'a UpgradeNotice, request_id: Option<&'a MsgId>) -> Values<'a> {
    let task = match &n.address.task {
        TaskRef::Key(k) => k.as_str(),
        TaskRef::None => "",
    };
    Values {
        device: &n.device,
        offer: Some(&n.offer),
        task,
        timestamp_ms: n.address.timestamp_ms,
        msg_id: n.address.msg_id,
        request_id,
    }
}

fn fields_json(payload: &[u8]) -> Result<Value, DecodeError> {
    crate::protocol::parse_json(payload)
}

/// A listed failure value matches the same number however the device wrote it (`3`, `3.0`).
fn same_value(listed: &Value, got: &Value) -> bool {
    match (listed, got) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        _ => listed == got,
    }
}

fn read_version(message: &Value, pointer: Pointer) -> Result<String, DecodeError> {
    let value = message
        .pointer(pointer)
        .ok_or(DecodeError::MissingField(pointer))?;
    let text = match value {
        Value::Number(n) => n.to_string(),
        v => fields::token(v, pointer)?.to_owned(),
    };
    if text.trim().is_empty() {
        return Err(DecodeError::BadValue {
            field: pointer,
            detail: "empty version".into(),
        });
    }
    Ok(text)
}
