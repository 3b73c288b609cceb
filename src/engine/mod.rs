//! The engine: the one task that owns the fleet registry, the running campaigns, the store and
//! the I/O edge (MQTT link, embedded broker, firmware server).
//!
//! The window and the headless commands drive it the same way: they send [`Command`]s through an
//! [`EngineHandle`] (bounded channel, `try_send`, never blocking a UI thread) and read the latest
//! [`Snapshot`] (a `watch` of an `Arc`), plus the raw-message inspector. The engine calls the
//! waker it was given whenever the snapshot changed, so a GUI repaints only when needed.
//!
//! Flow of one device message: `transport::mqtt` → [`crate::protocol::decode`] →
//! [`crate::fleet::Fleet::apply`] → campaigns (`rollout::Campaign::handle`) → actions: persist
//! (store) first, then publish → snapshot + waker.
//!
//! Never: blocks on the UI, holds a lock across an await, or lets one device's bad message
//! affect another device.

mod alerts;
mod broker_guard;
mod clock;
mod command;
mod config;
mod download_url;
mod downloads;
mod error;
mod fleet_state;
mod handle;
mod inbound;
mod inventory;
mod io;
mod library;
mod links;
mod live;
mod on_command;
mod outbox;
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
    BrokerUrl, BrokerUrlError, LinkOptions, LinkState, generate_client_id,
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
    Alert, AlertLevel, BrokerGuard, CampaignView, DeviceRow, ImportProgress, Snapshot,
    TimelinePoint, Traffic,
};
pub use start::start;
