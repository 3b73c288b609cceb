//! ota-console: pushes firmware over MQTT to fleets of devices and shows where every device stands.
//!
//! # Layout
//! - [`access`]: broker authentication and topic authorization (rules from the dialects'
//!   topic layouts, Alibaba signatures, credentials, back-off, Mosquitto files).
//! - [`cli`]: the headless commands (`rollout`, `sim`, `devices`, `hash`, `broker`,
//!   `broker-config`).
//! - [`device_id`]: `DeviceId`, the canonical name of a device (and module) everywhere.
//! - [`firmware`]: one-pass package digests (MD5, SHA-256, FogCloud checksum) and the content-addressed store.
//! - [`engine`]: the task that owns fleet, campaigns, store and I/O; `Command` in, `Snapshot` out.
//! - [`fleet`]: the registry of discovered devices and the raw-message inspector ring.
//! - [`host`]: this host's LAN address (a leaf, for the firmware server and the site CA).
//! - [`i18n`]: the console's words in English and Simplified Chinese (`locales/`, `tr!`).
//! - [`report`]: campaign reports (JSON and CSV), shared by the CLI and the window.
//! - [`private_fs`]: folders 0700 and files 0600 for what holds inventory and broker settings.
//! - [`protocol`]: pure codecs for the four built-in dialects (Alibaba, FogCloud, DJI, AWS IoT
//!   Jobs, whose service side is `protocol::Service`), and dialects
//!   described in a file and registered at run time (`protocol::user`).
//! - [`rollout`]: the pure, deterministic campaign state machine: `(input, now) -> actions`.
//! - [`store`]: SQLite persistence: packages, campaigns, the transition journal, the inventory.
//! - [`sim`]: simulated device fleets (Alibaba, FogCloud with gateways, DJI docks, AWS things) for
//!   tests and demos.
//! - [`terms`]: dialect labels, settings and error meanings, states, in the operator's language.
//! - [`time`]: `Timestamp`, milliseconds since the epoch (a leaf; `rollout` re-exports it).
//! - [`transport`]: the I/O edge: embedded MQTT broker, MQTT client link, firmware HTTP server.
//! - `ui` (feature `gui`): the desktop window (eframe): panels, CJK fonts, theme, persisted settings.
//! - [`wire`]: `Outbound`, an encoded message ready to publish (a leaf; `protocol` re-exports it).
//! - `testing` (feature `test-support`, on for tests and benches only): the fixtures they share.

#![forbid(unsafe_code)]

// The console's texts (`locales/*.toml`), compiled in; `i18n::tr!` looks them up.
rust_i18n::i18n!("locales", fallback = "en");

pub mod access;
pub mod cli;
pub mod device_id;
pub mod engine;
pub mod firmware;
pub mod fleet;
pub mod host;
pub mod i18n;
pub mod private_fs;
pub mod protocol;
pub mod report;
pub mod rollout;
pub mod sim;
pub mod store;
pub mod terms;
#[cfg(feature = "test-support")]
#[expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test support panics on a failed set-up, with a message, as the tests it serves do"
)]
pub mod testing;
pub mod time;
pub mod transport;
#[cfg(feature = "gui")]
pub mod ui;
pub mod wire;
