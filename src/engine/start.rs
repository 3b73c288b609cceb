//! Starting the engine: open the store, start the broker / link / firmware server as configured,
//! restore the inventory and campaign history, then spawn the engine task.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, watch};

use super::config::{BrokerChoice, EmbeddedAccess, EngineConfig, FirmwareSource};
use super::error::{EngineError, StartError};
use super::handle::EngineHandle;
use super::io::{Io, IoParts};
use super::library::Library;
use super::publisher::Publisher;
use super::runner::Runner;
use super::snapshot::{BrokerGuard, Snapshot};
use crate::access::credentials::ConsoleCredentials;
use crate::firmware::FirmwareStore;
use crate::fleet::inspector::Inspector;
use crate::i18n::tr;
use crate::private_fs;
use crate::protocol;
use crate::rollout::lock::{LOCK_FILTER, lock_topic};
use crate::store::Store;
use crate::transport::broker::{BrokerSettings, EmbeddedBroker};
use crate::transport::http::FirmwareServer;
use crate::transport::mqtt::{BrokerUrl, Inbound, LinkOptions, LinkState, MqttLink, Will};

/// Raw messages the inspector keeps.
const INSPECTOR_CAPACITY: usize = 20_000;
/// Commands waiting for the engine (the UI sends a handful per second at most).
const COMMAND_QUEUE: usize = 256;
/// Outgoing messages that may wait while the broker is away.
const OUTGOING_QUEUE: usize = 100_000;

/// Opens the database, created 0600 so that SQLite gives its `-wal` and `-shm` files the same
/// mode; an older, looser one is tightened.
fn open_private_store(db_path: &std::path::Path) -> Result<Store, StartError> {
    if let Err(e) = private_fs::private_file(db_path, b"") {
        // Opening says best what is wrong with the place (read-only, missing folder...).
        tracing::debug!("cannot pre-create {}: {e}", db_path.display());
    }
    let store = Store::open(db_path).map_err(StartError::Store)?;
    for suffix in ["", "-wal", "-shm"] {
        let mut name = db_path.as_os_str().to_owned();
        name.push(suffix);
        let file = std::path::Path::new(&name);
        if let Err(e) = private_fs::tighten_if_present(file) {
            tracing::warn!("cannot make {} private: {e}", file.display());
        }
    }
    Ok(store)
}

/// Starts the engine on the current tokio runtime.
pub async fn start(config: EngineConfig) -> Result<EngineHandle, EngineError> {
    private_fs::create_private_dir(&config.data_dir).map_err(|error| StartError::DataDir {
        path: config.data_dir.clone(),
        error,
    })?;
    // After the database: a read-only place is reported by it, saying what it cannot write.
    let store = open_private_store(&config.db_path)?;
    if let Err(e) = private_fs::tighten_dir(&config.data_dir) {
        tracing::warn!(
            "cannot make the data directory {} private: {e}",
            config.data_dir.display()
        );
    }
    let packages = FirmwareStore::in_data_dir(&config.data_dir);
    // Imports that died with an earlier run leave partial files; they would only take space.
    if let Err(e) = packages.remove_stale_temps() {
        tracing::warn!("{e}");
    }

    let inspector = Arc::new(Mutex::new(Inspector::new(INSPECTOR_CAPACITY)));
    let (io, inbound, broker_url) = open_io(&config, inspector.clone()).await?;

    let (snapshot_tx, snapshot_rx) = watch::channel(Arc::new(Snapshot {
        broker_guard: io.broker_guard(),
        ..Snapshot::empty(io.broker_label().to_owned())
    }));
    let (command_tx, command_rx) = mpsc::channel(COMMAND_QUEUE);
    let (import_tx, import_rx) = super::library::channel();
    let waker = Arc::new(Mutex::new(None));
    let mut runner = Runner::new(
        store,
        io,
        Library::new(packages, import_tx),
        Publisher::new(snapshot_tx, waker.clone()),
    );
    runner.restore(config.resume_unfinished);

    tokio::spawn(runner.run(command_rx, inbound, import_rx));
    Ok(EngineHandle {
        commands: command_tx,
        snapshot: snapshot_rx,
        inspector,
        waker,
        broker_url,
        data_dir: config.data_dir.clone(),
    })
}

/// The I/O edge as configured: the embedded broker (or the external one's options), the MQTT
/// session claimed for the data directory, the link (waited for when the broker is our own),
/// and the firmware server or external download URL. Returns it with the link's inbound
/// messages and the broker's `mqtt://host:port`.
async fn open_io(
    config: &EngineConfig,
    inspector: Arc<Mutex<Inspector>>,
) -> Result<(Io, mpsc::Receiver<Inbound>, String), EngineError> {
    let (broker, mut link_options, broker_label) = connect_options(config)?;
    let broker_guard = match &config.broker {
        BrokerChoice::Embedded {
            access: EmbeddedAccess::Open,
            ..
        } => BrokerGuard::Open,
        BrokerChoice::Embedded {
            access: EmbeddedAccess::Secure,
            ..
        } => BrokerGuard::Secure,
        BrokerChoice::External(_) => BrokerGuard::External,
    };
    // One persistent session per data directory (or per id asked for), held while we run.
    let session = if config.keep_session {
        super::session_id::claim(&config.data_dir, link_options.client_id.as_deref())
            .map_err(StartError::Session)?
    } else {
        super::session_id::SessionClaim::transient()
    };
    link_options.client_id = Some(session.client_id.clone());
    link_options.clean_session = session.clean_session;
    // A console that dies gives up its campaigns: the broker clears its claims (rollout::lock).
    link_options.will = Some(Box::new(Will {
        topic: lock_topic(&session.client_id),
        payload: Vec::new(),
        retain: true,
    }));
    let broker_url = format!(
        "{}://{}:{}",
        if link_options.url.tls() {
            "mqtts"
        } else {
            "mqtt"
        },
        link_options.url.host(),
        link_options.url.port()
    );
    let (link, inbound) = MqttLink::start(link_options).map_err(StartError::Link)?;
    if broker.is_some() {
        // Our own broker answers at once; waiting until we listen means no device that
        // connects after `start` returns can announce itself unheard.
        wait_until_listening(&link).await?;
    }

    let (http, external_url) = match &config.firmware {
        FirmwareSource::Embedded {
            bind,
            public_base,
            tls,
        } => {
            let server = FirmwareServer::start_with_options(
                *bind,
                public_base.clone(),
                tls.clone(),
                config.firmware_server,
            )
            .await
            .map_err(StartError::Http)?;
            (Some(server), None)
        }
        FirmwareSource::ExternalUrl(url) => (None, Some(url.clone())),
        FirmwareSource::Disabled => (None, None),
    };
    let download_key = http
        .as_ref()
        .map(|_| super::downloads::KeySlot::new(config.data_dir.clone()));
    let firmware_base = http
        .as_ref()
        .map(FirmwareServer::public_base)
        .or_else(|| external_url.clone());
    let io = Io::new(IoParts {
        link,
        http,
        download_key,
        external_url,
        firmware_base,
        inspector,
        session,
        broker,
        broker_label,
        broker_guard,
    });
    Ok((io, inbound, broker_url))
}

/// How long start-up waits for the link to the embedded broker to be subscribed.
const EMBEDDED_LINK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

async fn wait_until_listening(link: &MqttLink) -> Result<(), EngineError> {
    let mut state = link.state();
    let connected = tokio::time::timeout(
        EMBEDDED_LINK_TIMEOUT,
        state.wait_for(|s| matches!(s, LinkState::Connected | LinkState::Failed { .. })),
    )
    .await;
    match connected {
        Ok(Ok(s)) if *s == LinkState::Connected => Ok(()),
        Ok(Ok(s)) => Err(StartError::EmbeddedLinkFailed(s.clone())),
        Ok(Err(_)) => Err(StartError::EmbeddedLinkStopped),
        Err(_) => Err(StartError::EmbeddedLinkTimeout(EMBEDDED_LINK_TIMEOUT)),
    }
    .map_err(EngineError::from)
}

/// The embedded broker (if chosen) and the options to reach the broker in use.
fn connect_options(
    config: &EngineConfig,
) -> Result<(Option<EmbeddedBroker>, LinkOptions, String), EngineError> {
    let subscriptions: Vec<String> = config
        .dialects
        .iter()
        .flat_map(|d| protocol::subscriptions(*d).iter().map(|s| (*s).to_owned()))
        .collect();
    let (broker, mut options, label) = match &config.broker {
        BrokerChoice::Embedded {
            listen,
            access,
            tls,
        } => {
            let mut settings = match access {
                EmbeddedAccess::Secure => BrokerSettings::secure(
                    *listen,
                    config.data_dir.clone(),
                    protocol::registry::topic_routes(),
                ),
                EmbeddedAccess::Open => BrokerSettings::open(*listen),
            };
            settings.tls = tls.clone();
            let broker = EmbeddedBroker::start(settings).map_err(StartError::Broker)?;
            let addr = broker.local_addr();
            if broker.is_open() {
                tracing::warn!(
                    %addr,
                    "the embedded broker is OPEN: anyone who reaches it may publish and subscribe \
                     to anything (--open-broker or the demo)"
                );
            }
            let url = BrokerUrl::plain(loopback_for(addr).to_string(), addr.port());
            let label = match broker.tls_addr() {
                Some(tls) => tr!("engine.embedded_broker_tls", addr = addr, tls = tls),
                None => tr!("engine.embedded_broker", addr = addr),
            };
            let mut options = LinkOptions::new(url);
            // The console logs in to its own broker like any client (an open one ignores it).
            let console = ConsoleCredentials::load_or_create(&config.data_dir)
                .map_err(StartError::Credentials)?;
            options.username = Some(console.username);
            options.password = Some(console.password);
            (Some(broker), options, label)
        }
        BrokerChoice::External(options) => {
            let label = format!(
                "{}://{}:{}",
                if options.url.tls() { "mqtts" } else { "mqtt" },
                options.url.host(),
                options.url.port()
            );
            (None, options.clone(), label)
        }
    };
    options.subscriptions = subscriptions;
    // Every console's claims, retained ones first (the campaign lock, `rollout::lock`).
    options.subscriptions.push(LOCK_FILTER.to_owned());
    options.max_queued = options.max_queued.max(OUTGOING_QUEUE);
    Ok((broker, options, label))
}

/// The address the console itself uses to reach a broker listening on `addr`.
fn loopback_for(addr: SocketAddr) -> IpAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    }
}
