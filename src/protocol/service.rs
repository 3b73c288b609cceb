//! The one seam for dialects whose protocol has the console play a stateful service rather than
//! send notices and read reports: a [`Service`] (made by the dialect's `Dialect::service`) holds
//! what the protocol says the server remembers between messages (e.g. records with version
//! numbers that requests must name, states that refuse some transitions) and answers requests
//! from it. `services.rs` holds the engine's set of them (`Services`), one per dialect that has
//! one.
//!
//! Why a seam and not more codec: a codec is pure and stateless (`(topic, bytes)` → events,
//! notice → `(topic, bytes)`), which cannot say "version 3 was expected, you sent 2". The
//! service keeps the codec's rules (no I/O, no clock, no randomness: `now_ms` comes in) and is
//! tested without sockets; the engine only routes through it and never learns which dialect
//! it serves.
//!
//! Flow: an inbound message of such a dialect goes to [`Service::inbound`] instead of the
//! codec's `decode`, which returns its events (handled like any decoded event) and the answers
//! to publish now; every notice for a device of the dialect goes through [`Service::outbound`]
//! instead of `encode`, which may publish several messages (and none) and updates its state.
//! The campaigns stay the source of truth about what is pending: a device that asks for its
//! work is answered through the usual pull (`Event::FirmwareGet` → `Notice::FirmwareGetReply`).

use super::error::{DecodeError, EncodeError};
use super::event::{Event, TaskRef};
use super::notice::Notice;
use crate::device_id::DeviceId;
use crate::wire::Outbound;

/// What a service makes of one inbound message.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Served {
    /// The events it carries, handled like a codec's.
    pub events: Vec<Event>,
    /// Answers to publish now, in order (before the events are handled).
    pub replies: Vec<Outbound>,
}

/// The state a dialect's protocol keeps on the server side, for one engine. Deterministic:
/// the same messages and times give the same answers.
pub trait Service: Send {
    /// One message a device published on a topic of the service's dialect (the size limit is
    /// already checked).
    fn inbound(&mut self, topic: &str, payload: &[u8], now_ms: i64) -> Result<Served, DecodeError>;

    /// One notice the console sends to a device of the dialect: the messages to publish for it
    /// (possibly none: a reply the protocol defines no message for).
    fn outbound(&mut self, notice: &Notice, now_ms: i64) -> Result<Vec<Outbound>, EncodeError>;

    /// A notice the campaign withdrew before the device acted on it (the campaign was canceled
    /// or aborted): what tells the device (none by default).
    fn withdraw(&mut self, device: &DeviceId, task: &TaskRef, now_ms: i64) -> Vec<Outbound> {
        let _ = (device, task, now_ms);
        Vec::new()
    }
}
