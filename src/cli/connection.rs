//! The connection options shared by the window and every command that talks to devices:
//! which broker (embedded or external, TLS, credentials), which firmware server, where data lives.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use clap::builder::TypedValueParser;

use crate::engine::{
    BrokerChoice, EmbeddedAccess, EngineConfig, EngineError, EngineHandle, FirmwareSource,
    LinkState,
};
use crate::i18n::tr;
use crate::transport::broker::BrokerTls;
use crate::transport::http::{DEFAULT_MAX_CONNECTIONS, ServerOptions};
use crate::transport::mqtt::{BrokerUrl, LinkOptions};
use crate::transport::shaping::Bandwidth;

/// Where to reach devices and how to serve them firmware.
#[derive(Debug, Clone, Args)]
pub struct ConnectionArgs {
    /// An external MQTT 3.1.1 broker, `mqtt://host:port` or `mqtts://host:port`. Without it an
    /// embedded broker is started on `--listen`.
    #[arg(long, value_name = "URL")]
    pub broker: Option<String>,

    /// Address of the embedded broker (when no `--broker` is given).
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:1883")]
    pub listen: SocketAddr,

    /// Let anyone who reaches the embedded broker publish and subscribe to anything (no
    /// credentials, no topic rules). Without it the embedded broker admits only the console and
    /// devices with credentials in the data directory, each limited to its own topics.
    #[arg(long, conflicts_with = "broker")]
    pub open_broker: bool,

    #[command(flatten)]
    pub tls: super::tls::TlsArgs,

    /// MQTT user name.
    #[arg(long, value_name = "NAME")]
    pub username: Option<String>,

    /// MQTT password. Prefer the environment variable, which does not show in `ps`.
    #[arg(
        long,
        env = "OTA_MQTT_PASSWORD",
        hide_env_values = true,
        value_name = "PASSWORD"
    )]
    pub password: Option<String>,

    /// MQTT client id, with a persistent session under it (default: one generated for the data
    /// directory and kept in it, so the broker keeps what devices report while the console is
    /// away; a second console on the same data directory gets a temporary clean session).
    #[arg(long, value_name = "ID")]
    pub client_id: Option<String>,

    /// MQTT keep-alive in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub keep_alive: u64,

    /// Connections to `--broker` that the console publishes on (1 to 9). Mosquitto reads one
    /// packet per connection per turn, so a console answering tens of thousands of devices at
    /// once needs several; the others use the client id with `-1`, `-2`, … appended.
    #[arg(long, value_name = "N", default_value_t = 1, requires = "broker",
        value_parser = clap::value_parser!(u16).range(1..=9))]
    pub publish_connections: u16,

    /// CA certificate (PEM) that signed the broker's certificate, for `mqtts://`.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,

    /// Client certificate (PEM) for mutual TLS.
    #[arg(long, value_name = "FILE", requires = "client_key")]
    pub client_cert: Option<PathBuf>,

    /// Client private key (PEM) for mutual TLS.
    #[arg(long, value_name = "FILE", requires = "client_cert")]
    pub client_key: Option<PathBuf>,

    /// Address of the embedded firmware HTTP server.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:8080")]
    pub http_bind: SocketAddr,

    /// Base URL devices use to reach the firmware server (default: the bound address, or this
    /// machine's LAN address when bound to 0.0.0.0).
    #[arg(long, value_name = "BASE")]
    pub public_url: Option<String>,

    /// Most simultaneous downloads from the embedded firmware server; further devices wait in
    /// the accept queue. Lowered at start (with a warning) when the open-file limit is lower.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_CONNECTIONS,
        value_parser = clap::value_parser!(u32).range(1..).map(|n| n as usize))]
    pub max_connections: usize,

    /// Cap on what the embedded firmware server sends per second, all devices together, so a
    /// rollout does not saturate the site's uplink: e.g. `50MB/s`, `10MiB/s`, `200Mbit/s`
    /// (default: no cap).
    #[arg(long, value_name = "RATE")]
    pub max_bandwidth: Option<Bandwidth>,

    /// Use this existing download URL for the firmware instead of the embedded server.
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,

    /// SQLite database (default: in the data directory).
    #[arg(long, value_name = "PATH")]
    pub db: Option<PathBuf>,

    /// Where packages and the database live (default: $OTA_CONSOLE_DATA_DIR, else the XDG data dir).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

impl ConnectionArgs {
    /// The engine configuration these options describe. Errors are usage errors (exit code 2).
    pub fn engine_config(&self) -> anyhow::Result<EngineConfig> {
        let data_dir = self
            .data_dir
            .clone()
            .unwrap_or_else(crate::firmware::default_data_dir);
        if self.broker.is_some() && self.tls.tls_listen.is_some() {
            bail!(tr!("cli.connection.tls_listen_with_broker"));
        }
        if self.url.is_some() && self.tls.https {
            bail!(tr!("cli.connection.https_with_url"));
        }
        let public_host = self.public_url.as_deref().and_then(super::tls::url_host);
        let tls = self.tls.setup(&data_dir, public_host)?;
        let broker = match &self.broker {
            None => BrokerChoice::Embedded {
                listen: self.listen,
                access: if self.open_broker {
                    EmbeddedAccess::Open
                } else {
                    EmbeddedAccess::Secure
                },
                tls: tls
                    .broker
                    .map(|(listen, server)| BrokerTls { listen, server }),
            },
            Some(url) => {
                let url: BrokerUrl = url.parse().with_context(|| format!("--broker {url:?}"))?;
                let mut options = LinkOptions::new(url);
                options.client_id = self.client_id.clone();
                options.username = self.username.clone();
                options.password = self.password.clone();
                options.keep_alive_secs = self.keep_alive;
                options.publish_connections = self.publish_connections;
                options.ca_file = self.ca.clone();
                options.client_cert = self.client_cert.clone();
                options.client_key = self.client_key.clone();
                log_in_to_own_broker(&mut options, &data_dir);
                BrokerChoice::External(options)
            }
        };
        let firmware = match &self.url {
            Some(url) => {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    bail!(tr!("cli.connection.bad_url", url = format!("{url:?}")));
                }
                FirmwareSource::ExternalUrl(url.clone())
            }
            None => FirmwareSource::Embedded {
                bind: self.http_bind,
                public_base: self.public_url.clone(),
                tls: tls.https.clone(),
            },
        };
        Ok(EngineConfig {
            broker,
            firmware,
            db_path: self
                .db
                .clone()
                .unwrap_or_else(|| data_dir.join("ota-console.db")),
            data_dir,
            dialects: crate::protocol::registry::ids(),
            resume_unfinished: false,
            keep_session: true,
            firmware_server: ServerOptions {
                max_connections: self.max_connections,
                max_bandwidth: self.max_bandwidth,
            },
        })
    }
}

/// Waits (at most `timeout`) until the engine's link to the broker is up. When the first
/// attempt fails, one status line says what the command waits for; why it failed is said once,
/// in the error when the wait ends (the engine does not log a link that was never up).
pub async fn wait_for_broker(
    handle: &EngineHandle,
    timeout: std::time::Duration,
) -> Result<(), EngineError> {
    let announce = async {
        let mut watch = handle.watch();
        loop {
            let retrying = matches!(
                watch.borrow_and_update().link,
                LinkState::Reconnecting { .. }
            );
            if retrying {
                eprintln!(
                    "{}",
                    tr!(
                        "cli.connection.waiting",
                        broker = handle.broker_url(),
                        waited = humantime::format_duration(timeout)
                    )
                );
                break;
            }
            if watch.changed().await.is_err() {
                break;
            }
        }
        std::future::pending::<()>().await;
    };
    tokio::select! {
        connected = handle.wait_connected(timeout) => connected,
        () = announce => Ok(()),
    }
}

/// A broker on this machine (loopback) is usually `ota-console broker` on the same data
/// directory: without `--username`, the console logs in with its own credentials from there.
/// Never for a broker elsewhere (they would be handed to a stranger), nor when the file does
/// not exist (nothing is created for it).
fn log_in_to_own_broker(options: &mut LinkOptions, data_dir: &std::path::Path) {
    if options.username.is_some() {
        return;
    }
    let host = options
        .url
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    let file = data_dir.join(crate::access::credentials::CONSOLE_FILE);
    if !loopback || !file.exists() {
        return;
    }
    match crate::access::credentials::ConsoleCredentials::load(&file) {
        Ok(console) => {
            options.username = Some(console.username);
            options.password = Some(console.password);
        }
        Err(e) => tracing::warn!("{}", tr!("cli.connection.no_console_login", why = e)),
    }
}
