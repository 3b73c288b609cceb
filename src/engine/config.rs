//! What the engine connects to and where it keeps its data, decided once at start.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use crate::device_id::DialectId;
use crate::transport::mqtt::LinkOptions;

/// Which MQTT broker devices and the console meet on.
#[derive(Debug, Clone)]
pub enum BrokerChoice {
    /// Start the embedded broker on this address and connect to it.
    Embedded {
        listen: SocketAddr,
        access: EmbeddedAccess,
        /// MQTT over TLS on a second address, with the same logins and rules.
        tls: Option<crate::transport::broker::BrokerTls>,
    },
    /// Connect to an existing broker.
    External(LinkOptions),
}

/// Who may use the embedded broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EmbeddedAccess {
    /// Only clients with credentials of the data directory (the console's own, imported Alibaba
    /// device secrets, `mqtt-users.txt`), each limited to its own topics.
    #[default]
    Secure,
    /// Anyone who reaches the port may publish and subscribe to anything (`--open-broker`, or
    /// `--demo` on loopback). Logged at start and shown as a warning in the window.
    Open,
}

/// Where devices download firmware from.
#[derive(Debug, Clone)]
pub enum FirmwareSource {
    /// The embedded HTTP server, bound to `bind`, announced to devices as `public_base`
    /// (default: derived from the bound address). With `tls` it serves HTTPS only, and the
    /// derived base is `https://` (e.g. a configuration from `access::tls::server_config`).
    Embedded {
        bind: SocketAddr,
        public_base: Option<String>,
        tls: Option<Arc<rustls::ServerConfig>>,
    },
    /// An existing URL that serves the package; no local server.
    ExternalUrl(String),
    /// No firmware is offered (e.g. `devices` only listens).
    Disabled,
}

#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub broker: BrokerChoice,
    pub firmware: FirmwareSource,
    /// Holds `packages/` (the content-addressed store).
    pub data_dir: PathBuf,
    /// The SQLite database (default `<data_dir>/ota-console.db`).
    pub db_path: PathBuf,
    /// Dialects whose topics are subscribed.
    pub dialects: Vec<DialectId>,
    /// Pick up campaigns that were running when the console stopped (the window does; the
    /// `rollout` command resumes only the one named by `--resume`).
    pub resume_unfinished: bool,
    /// Claim the data directory's persistent MQTT session (the window and `rollout` do). A
    /// command that only looks (`devices`) connects with a clean session under a temporary id,
    /// so it never takes what the broker kept for a rollout to resume.
    pub keep_session: bool,
    /// Connection and bandwidth caps of the embedded firmware server (`--max-connections`,
    /// `--max-bandwidth`); unused with an external URL.
    pub firmware_server: crate::transport::http::ServerOptions,
}

impl EngineConfig {
    /// Embedded broker and firmware server on the given addresses, data under `data_dir`.
    pub fn embedded(listen: SocketAddr, http_bind: SocketAddr, data_dir: PathBuf) -> Self {
        Self {
            broker: BrokerChoice::Embedded {
                listen,
                access: EmbeddedAccess::Secure,
                tls: None,
            },
            firmware: FirmwareSource::Embedded {
                bind: http_bind,
                public_base: None,
                tls: None,
            },
            db_path: data_dir.join("ota-console.db"),
            data_dir,
            dialects: crate::protocol::registry::ids(),
            resume_unfinished: false,
            keep_session: true,
            firmware_server: crate::transport::http::ServerOptions::default(),
        }
    }

    /// The same configuration with an embedded broker open to anyone (tests and demos whose
    /// subject is not access control).
    pub fn with_open_broker(mut self) -> Self {
        if let BrokerChoice::Embedded { access, .. } = &mut self.broker {
            *access = EmbeddedAccess::Open;
        }
        self
    }
}
