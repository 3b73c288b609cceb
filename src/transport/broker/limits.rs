//! The embedded broker's limits, shared by the gate, the internal rumqttd and the start-up in
//! `mod.rs` (a leaf, so that those files do not depend on each other through `mod.rs`).

use std::time::Duration;

/// Largest MQTT packet the embedded broker accepts. Larger than anything we decode, so that a
/// hostile oversized message reaches our decoder (which refuses it with a clear reason) instead of
/// the broker silently killing the sender's connection.
pub const MAX_PACKET_BYTES: usize = 16 * 1024 * 1024 + 64 * 1024;

/// Connections the embedded broker admits (simulated fleets reach 20 000 devices).
pub const MAX_CONNECTIONS: usize = 25_000;

/// How long [`super::EmbeddedBroker::start`] waits for rumqttd to accept TCP connections.
pub(super) const READY_TIMEOUT: Duration = Duration::from_secs(5);
