//! The I/O edge: everything that touches a socket lives here.
//!
//! - [`broker`]: the embedded MQTT broker (rumqttd) for demos, simulation and tests.
//! - [`mqtt`]: the MQTT client link, an actor owning the rumqttc event loop.
//! - [`http`]: the firmware HTTP server devices download packages from (`file_cache`: its
//!   in-memory copies of offered files).
//! - [`download_token`]: the per-device download links of campaigns and the key they come from.
//!
//! Nothing here decodes or decides: payloads go in and out as bytes (see `protocol` for codecs,
//! `engine` for decisions).

pub mod broker;
pub mod download_token;
mod file_cache;
pub mod http;
pub mod mqtt;
