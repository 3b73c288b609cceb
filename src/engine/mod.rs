//! The engine: the one task that owns the fleet registry, the running campaigns, the store and
//! the I/O edge (MQTT link, embedded broker, firmware server).
//!
//! The window and the headless commands drive it the same way: they send [`Command`]s through an
//! [`EngineHandle`] (bounded channel, `try_send`, never blocking a UI thread) and read the latest
//! [`Snapshot`] (a `watch` of an `Arc`), plus the raw-message inspector. The engine calls the
//! waker it was given whenever the snapshot changed, so a GUI repaints only when needed.
//!
//! Flow of one device message: `transport::mqtt` → [`crate::protocol::decode`] →
//! `FleetState::admit` / `apply` → campaigns (`rollout::Campaign::handle`) → actions: persist
//! (store) first, then publish → snapshot + waker.
//!
//! Never: blocks on the UI, holds a lock across an await, or lets one device's bad message
//! affect another device.
//!
//! # Parts
//! The engine task (`runner/`) owns a few components. Each is one file (or folder) whose
//! fields are private, whose methods keep its rules, and whose module doc states them:
//! - `alerts.rs` — `Alerts`: what the operator is told; bounded, each logged at its level.
//! - `publisher.rs` — `Publisher`: the snapshot `watch`, the waker, the dirty mark; the
//!   revision strictly increases and the waker runs after each publish.
//! - `traffic.rs` — `TrafficMeter`: message counters, the receive rate, bytes served, broker
//!   refusals, and the log's rate limit for refusals (per topic and kind).
//! - `library.rs` — `Library`: the package store and library; one import at a time.
//! - `io.rs` — `Io`: the MQTT link and its session, the embedded broker, the firmware server
//!   or external URL, the per-device download links, the inspector; every publish is in the
//!   inspector, a lost session is told once.
//! - `fleet_state.rs` — `FleetState`: the device registry, the inventory's dirty set, last
//!   messages, versions heard; a gateway speaks only for its own sub-devices.
//! - `campaigns/` — `Campaigns`: the live campaigns, the history, the group-commit outbox and
//!   the message ids; every `Persist` is durable before what it causes is sent, and a halted
//!   campaign is neither driven nor heard from (both checks in this one type).
//!
//! `runner/` (`Runner`) is the only owner; it lends each component what it changes as
//! arguments (`campaigns::Env` for driving a campaign). `view.rs` builds the [`Snapshot`] from
//! the components' read views, never from the runner.
//!
//! # Which way the imports go
//! No file under `engine/` imports one that imports it back:
//! `start` → `runner` → `view` → the components → value files (`command`, `error`, `snapshot`,
//! `clock`, `config`, `downloads`, `download_url`, `inventory`, `session_id`, `handle`).
//! Among the components: `campaigns` → `fleet_state`, `io`, `library`, `alerts`; `io` →
//! `fleet_state`; `library` → `alerts`; `alerts`, `publisher`, `traffic` and `fleet_state`
//! use value files only. The children of `runner/` and `campaigns/` that hold `impl` blocks
//! name their parent's type (`super::Runner`, `super::Campaigns`); a parent imports nothing
//! from such a child. This file only declares the modules and re-exports the public API (a
//! path through a re-export leads to the file that defines the item).
//! `tests/architecture.rs` (`no_module_cycle_inside_engine`) keeps the graph acyclic.

mod alerts;
mod campaign_lock;
mod campaigns;
mod clock;
mod command;
mod config;
mod device_rows;
mod download_url;
mod downloads;
mod error;
mod fleet_state;
mod handle;
mod inventory;
mod io;
mod library;
#[cfg(feature = "test-support")]
pub mod publish_bench;
mod publisher;
mod resume;
mod runner;
mod session_id;
mod snapshot;
mod start;
mod traffic;
mod view;

pub use crate::transport::http::OfferUrl;
/// The link's value types the window shows and edits (URL, options, state): re-exported so that
/// the UI depends on the engine only, never on `transport` directly.
pub use crate::transport::mqtt::{
    BrokerUrl, BrokerUrlError, LinkOptions, LinkState, MAX_PUBLISH_CONNECTIONS, generate_client_id,
};
pub use clock::wall_clock_now;
pub use command::{CampaignRequest, Command};
pub use config::{BrokerChoice, EmbeddedAccess, EngineConfig, FirmwareSource};
pub use download_url::{DownloadUrlError, MAX_DOWNLOAD_URL_BYTES, validate_download_url};
pub use error::{CommandError, DownloadsError, EngineError, StartError};
pub use handle::{EngineHandle, Waker};
pub use resume::{ResumeError, ResumeInfo, prepare_resume};
pub use session_id::{CLIENT_ID_FILE, SessionClaim, SessionIdError, claim as claim_session};
pub use snapshot::{
    Alert, AlertLevel, BrokerGuard, CampaignView, DeviceRow, DeviceRows, ImportProgress,
    RowChangeLog, Snapshot, TimelinePoint, Traffic,
};
pub use start::start;
