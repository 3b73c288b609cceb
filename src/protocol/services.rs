//! [`Services`]: the engine's one route for decoding device messages and encoding notices.
//! For each registered dialect with a stateful [`Service`] (`service.rs`) it holds that
//! dialect's service for this engine and goes through it; every other dialect is served by its
//! stateless codec. Separate from `service.rs` because it asks the registry, which lists the
//! dialects, which implement the trait: one file each way keeps the module graph acyclic.

use std::collections::HashMap;

use super::error::{DecodeError, EncodeError, MAX_PAYLOAD_BYTES};
use super::event::TaskRef;
use super::notice::Notice;
use super::payload::truncate_for_log;
use super::registry;
use super::service::{Served, Service};
use crate::device_id::{DeviceId, DialectId};
use crate::wire::Outbound;

/// The services of every registered dialect that has one: the engine's single route for
/// decoding and encoding, falling back to the stateless codecs for the other dialects.
#[derive(Default)]
pub struct Services {
    by_dialect: HashMap<DialectId, Box<dyn Service>>,
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Services")
            .field("dialects", &self.by_dialect.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Services {
    /// A fresh service for every registered dialect that has one.
    pub fn for_registered() -> Services {
        let by_dialect = registry::all()
            .into_iter()
            .filter_map(|d| d.service().map(|s| (d.id(), s)))
            .collect();
        Services { by_dialect }
    }

    /// Decodes one inbound message: by the service of the topic's dialect when it has one,
    /// else by its codec (no replies then).
    pub fn decode(
        &mut self,
        topic: &str,
        payload: &[u8],
        now_ms: i64,
    ) -> Result<Served, DecodeError> {
        if payload.len() > MAX_PAYLOAD_BYTES {
            return Err(DecodeError::TooLarge { len: payload.len() });
        }
        let Some(dialect) = registry::dialect_of_topic(topic) else {
            return Err(DecodeError::UnknownTopic(truncate_for_log(topic)));
        };
        match self.by_dialect.get_mut(&dialect.id()) {
            Some(service) => service.inbound(topic, payload, now_ms),
            None => Ok(Served {
                events: dialect.decode(topic, payload)?,
                replies: Vec::new(),
            }),
        }
    }

    /// What tells `device` that the notice of `task` was withdrawn: its dialect's service's
    /// messages, nothing for a dialect without one (its devices simply hear no more).
    pub fn withdraw(&mut self, device: &DeviceId, task: &TaskRef, now_ms: i64) -> Vec<Outbound> {
        match self.by_dialect.get_mut(&device.dialect()) {
            Some(service) => service.withdraw(device, task, now_ms),
            None => Vec::new(),
        }
    }

    /// Encodes one notice: through the service of the device's dialect when it has one, else
    /// by its codec (one message).
    pub fn encode(&mut self, notice: &Notice, now_ms: i64) -> Result<Vec<Outbound>, EncodeError> {
        let dialect = notice.device().dialect();
        match self.by_dialect.get_mut(&dialect) {
            Some(service) => service.outbound(notice, now_ms),
            None => registry::get(dialect).encode(notice).map(|out| vec![out]),
        }
    }
}
