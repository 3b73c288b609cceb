//! The I/O edge: everything that touches a socket lives here.
//!
//! - [`broker`]: the embedded MQTT broker: a private rumqttd behind a gate of ours that
//!   authenticates clients and enforces the dialects' topic rules (secure mode), or only frames
//!   and forwards (open mode).
//! - [`mqtt`]: the MQTT client link, an actor owning the rumqttc event loop.
//! - [`http`]: the firmware HTTP server devices download packages from (`file_cache`: its
//!   in-memory copies of offered files).
//! - [`shaping`]: the firmware server's optional cap on bytes per second (`--max-bandwidth`).
//! - [`download_token`]: the per-device download links of campaigns and the key they come from.
//!
//! Nothing here decodes payloads or decides about devices: payloads go in and out as bytes (see
//! `protocol` for codecs, `engine` for decisions). The broker's gate decides only who may connect
//! and use which topic, by asking `access`.

pub mod broker;
pub mod download_token;
mod file_cache;
pub mod http;
pub mod mqtt;
pub mod shaping;
